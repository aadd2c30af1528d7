"""Throughput of the native training engine (pynn._C.DenseEngine) on the BENCHMARKS.md
workloads, straight through the binding (no fit() overhead), and single-row predict latency.

    python bench/engine_bench.py [--threads 1 2] [--epochs 3] [--workloads mnist_mlp tabular_small]

Samples/s = rows / seconds of one full epoch (shuffle included, Python calling train in
chunks as fit does), median over epochs after a warm-up epoch. Data: random N(0, 1).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from pynn import _C
from pynn.backend.cpu_backend import ACTIVATION_CODES

# engine.h's kSoftmax is the code after the activations' (as pynn/engine.py passes it)
SOFTMAX_CODE = len(ACTIVATION_CODES)

WORKLOADS = {
    # name: (samples, sizes, batch, loss)
    "mnist_mlp": (60000, [784, 256, 256, 10], 128, "softmax_xent_sparse"),
    "tabular_small": (100000, [20, 64, 64, 1], 32, "mse"),
    "wide_mlp": (20000, [1024, 1024, 1024, 10], 256, "softmax_xent_sparse"),
}
ADAM = dict(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0)


def build(sizes, loss, batch, rng):
    L = len(sizes) - 1
    last = SOFTMAX_CODE if loss.startswith("softmax") else ACTIVATION_CODES["linear"]
    acts = [ACTIVATION_CODES["relu"]] * (L - 1) + [last]
    eng = _C.DenseEngine(sizes, acts, [0.0] * L, [True] * L, loss, 0.0, "adam", max(batch, 1024))
    params, state = [], []
    for i in range(L):
        lim = np.sqrt(6.0 / (sizes[i] + sizes[i + 1]))
        for shape in ((sizes[i], sizes[i + 1]), (sizes[i + 1],)):
            w = rng.uniform(-lim, lim, shape).astype(np.float32) if len(shape) == 2 else \
                np.zeros(shape, np.float32)
            params.append(w)
            state.append([np.zeros(shape, np.float32), np.zeros(shape, np.float32)])
    eng.bind(params, [True] * L, state)
    return eng


def epoch_seconds(eng, x, y, batch, chunk, seed, step):
    n = x.shape[0]
    steps = -(-n // batch)
    t0 = time.perf_counter()
    order = _C.shuffled_order(n, seed)
    for first in range(0, steps, chunk):
        last = min(first + chunk, steps)
        eng.train(x, y, order, first, last, batch, ADAM, step + first, [])
    return time.perf_counter() - t0, steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workloads", nargs="+", default=["mnist_mlp", "tabular_small"])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    prev = _C.num_threads()
    print(f"gemm isa {_C.gemm_isa()}, threads available {prev}")
    print("| workload | threads | samples/s | us/step | predict(1 row) us |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.workloads:
        n, sizes, batch, loss = WORKLOADS[name]
        x = rng.normal(0, 1, (n, sizes[0])).astype(np.float32)
        if loss == "softmax_xent_sparse":
            y = rng.integers(0, sizes[-1], n).astype(np.int32)
        else:
            y = rng.normal(0, 1, (n, sizes[-1])).astype(np.float32)
        for threads in args.threads:
            _C.set_num_threads(threads)
            eng = build(sizes, loss, batch, rng)
            steps = -(-n // batch)
            chunk = max(1, min(256, steps // 20))  # as fit() drives a progress bar
            times = []
            step = 0
            for e in range(args.epochs + 1):
                t, s = epoch_seconds(eng, x, y, batch, chunk, e, step)
                step += s
                if e:
                    times.append(t)
            t = statistics.median(times)
            x1 = x[:1].copy()
            out = np.empty((1, sizes[-1]), np.float32)
            for _ in range(2000):
                eng.predict(x1, out)
            reps = 20000
            lat = []
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(reps):
                    eng.predict(x1, out)
                lat.append((time.perf_counter() - t0) / reps * 1e6)
            print(f"| {name} | {threads} | {n / t:,.0f} | {t / steps * 1e6:.1f} | "
                  f"{min(lat):.2f} |", flush=True)
    _C.set_num_threads(prev)


if __name__ == "__main__":
    main()
