"""The GEMMs of one mnist_mlp training step (batch 128, 784-256-256-10), timed one by one
through the binding into a preallocated output (as the engine calls them), with their share
of the machine's FMA peak: how close the native engine's step can get to the compute limit,
and what a second thread adds.

    python bench/step_gemms.py [--threads 1 2] [--batch 128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import pynn
from pynn import _C


def best_seconds(fn, reps=200, rounds=5):
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    B = args.batch
    # (name, M, K, N, trans_a, trans_b): forward, weight gradients X^T dZ, input gradients
    # dZ W^T (the first layer's is skipped by the engine).
    shapes = [("forward 1", B, 784, 256, False, False), ("forward 2", B, 256, 256, False, False),
              ("forward 3", B, 256, 10, False, False), ("dW 1", 784, B, 256, True, False),
              ("dW 2", 256, B, 256, True, False), ("dW 3", 256, B, 10, True, False),
              ("dX 3", B, 10, 256, False, True), ("dX 2", B, 256, 256, False, True)]
    peak = _C.fma_peak_gflops(_C.gemm_isa() if _C.gemm_isa() != "generic" else "avx2", 0.3)
    rng = np.random.default_rng(0)
    print(f"ISA {_C.gemm_isa()}, FMA peak {peak:.0f} GFLOP/s per core")
    print("| threads | GEMM | M x K x N | us | GFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|")
    for threads in args.threads:
        pynn.set_num_threads(threads)
        total = 0.0
        for name, M, K, N, ta, tb in shapes:
            a = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
            b = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
            out = np.empty((M, N), np.float32)
            dt = best_seconds(lambda: _C.gemm(a, b, ta, tb, 1.0, 0.0, out))
            total += dt
            gflops = 2 * M * K * N / dt / 1e9
            print(f"| {threads} | {name} | {M}x{K}x{N} | {dt * 1e6:.1f} | {gflops:.1f} | "
                  f"{100 * gflops / (peak * threads):.0f}% |")
        print(f"| {threads} | all | | {total * 1e6:.0f} | | -> at most {B / total:,.0f} "
              f"samples/s from the GEMMs alone |")


if __name__ == "__main__":
    main()
