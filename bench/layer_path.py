"""Per-step time of the layer-by-layer path (what trains every model the native engine
cannot: LayerNormalization here) beside the native engine on the same model without it.

    python bench/layer_path.py [--repeats 5]

Each row: microseconds per training step (Adam, batch 32 for the tabular model, 128 for the
mnist-sized one, 20000 random samples), the median of `--repeats` timed epochs after a
warm-up epoch, all in one process so the ratios share the machine's phase.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import pynn

N = 20000


def model(kind, layer_norm):
    pynn.set_seed(0)
    rng = np.random.default_rng(0)
    if kind == "tabular":
        x = rng.standard_normal((N, 20)).astype(np.float32)
        y = (2 * x[:, :1] + x[:, 1:2] ** 2).astype(np.float32)
        sizes, out, loss, batch = [20, 64, 64], pynn.Dense(1), "mse", 32
    else:
        x = rng.random((N, 784), dtype=np.float32)
        y = rng.integers(0, 10, N)
        sizes, out, loss, batch = [784, 256, 256], pynn.Dense(10, activation="softmax"), \
            "sparse_categorical_crossentropy", 128
    layers = [pynn.Input((sizes[0],)), pynn.Dense(sizes[1], activation="relu")]
    if layer_norm:
        layers.append(pynn.LayerNormalization())
    layers += [pynn.Dense(sizes[2], activation="relu"), out]
    m = pynn.Sequential(layers)
    m.compile("adam", loss)
    return m, x, y, batch


def step_us(kind, layer_norm, engine, repeats):
    m, x, y, batch = model(kind, layer_norm)
    m.fit(x, y, batch_size=batch, epochs=1, verbose=0, engine=engine)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        m.fit(x, y, batch_size=batch, epochs=1, verbose=0, engine=engine)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / -(-N // batch) * 1e6, m.engine_reason


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| model | path | us/step |")
    print("|---|---|---|")
    for kind in ("tabular", "mnist"):
        for layer_norm, engine in ((True, "auto"), (False, "layers"), (False, "auto")):
            us, reason = step_us(kind, layer_norm, engine, args.repeats)
            path = "native engine" if reason is None else "layers"
            name = f"{kind}{' + LayerNorm' if layer_norm else ''}"
            print(f"| {name} | {path} | {us:.1f} |", flush=True)


if __name__ == "__main__":
    main()
