"""What weight constraints cost a training step in the native engine: one 1024-1024-10
model per constraint on its hidden kernel (none, MaxNorm per column, per row, NonNeg),
Adam, batch 256, 4096 rows; the best of 5 epochs, alternated between the cases (the
machine's noise falls on all alike); milliseconds per step.

    python bench/constraint_cost.py
"""

from __future__ import annotations

import time

import numpy as np

import pynn
from pynn import constraints as C

CASES = {"none": None, "MaxNorm(2, axis=0)": lambda: C.MaxNorm(2.0),
         "MaxNorm(2, axis=1)": lambda: C.MaxNorm(2.0, axis=1), "NonNeg()": C.NonNeg}


def main(rows=4096, batch=256, rounds=5):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 1024)).astype(np.float32)
    y = rng.integers(0, 10, rows)
    models = {}
    for name, make in CASES.items():
        pynn.set_seed(0)
        model = pynn.Sequential([
            pynn.Input((1024,)),
            pynn.Dense(1024, activation="relu", kernel_constraint=make and make()),
            pynn.Dense(10, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x[:2 * batch], y[:2 * batch], epochs=1, batch_size=batch, verbose=0)
        models[name] = model
    best = dict.fromkeys(CASES, float("inf"))
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
            best[name] = min(best[name], time.perf_counter() - start)
    steps = -(-rows // batch)
    print("| kernel_constraint | ms/step | engine_reason |")
    print("|---|---|---|")
    for name, model in models.items():
        print(f"| {name} | {best[name] / steps * 1e3:.2f} | {model.engine_reason} |")


if __name__ == "__main__":
    main()
