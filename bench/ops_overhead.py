"""Call overhead of pynn.ops.gemm at small sizes against numpy.matmul (and against numpy's
two-pass bias + ReLU), on the cpu backend: best of 7 rounds of 5000 calls, us per call.

    python bench/ops_overhead.py
"""

from __future__ import annotations

import timeit

import numpy as np

import pynn


def main():
    pynn.set_backend("cpu")
    rng = np.random.default_rng(0)
    print("| M x K x N | numpy.matmul | ops.gemm | np.maximum(a @ b + bias, 0) "
          "| ops.gemm(bias, 'relu') |")
    print("|---|---|---|---|---|")
    for m, k, n in [(1, 1, 1), (8, 8, 8), (32, 64, 64)]:
        a = rng.random((m, k), dtype=np.float32)
        b = rng.random((k, n), dtype=np.float32)
        bias = rng.random(n, dtype=np.float32)
        fns = [lambda: np.matmul(a, b), lambda: pynn.ops.gemm(a, b),
               lambda: np.maximum(a @ b + bias, 0),
               lambda: pynn.ops.gemm(a, b, bias=bias, activation="relu")]
        us = [min(timeit.repeat(fn, number=5000, repeat=7)) / 5000 * 1e6 for fn in fns]
        print(f"| {m}x{k}x{n} | " + " | ".join(f"{t:.2f}" for t in us) + " |")


if __name__ == "__main__":
    main()
