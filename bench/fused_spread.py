"""The spread of one GEMM bar over repeated runs: pynn's fused relu(A·B + bias) against numpy's
np.maximum(a @ b + bias, 0), one thread, measured as gemm_table.py measures it (the median of
interleaved rounds), `runs` times in one process, with the sorted ratios and their median.

    env -u OPENBLAS_CORETYPE python bench/fused_spread.py --runs 12
    env -u OPENBLAS_CORETYPE python bench/fused_spread.py --shape 128 784 256
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from common import blas_threads, interleaved, machine_line, warm_heap


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--shape", type=int, nargs=3, default=[256, 1024, 1024], metavar=("M", "K", "N"))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import pynn
    from pynn import _C

    pynn.set_num_threads(1)
    warm_heap()
    print(f"machine: {machine_line()}")
    m, k, n = args.shape
    rng = np.random.default_rng(0)
    ratios = []
    with blas_threads(1):
        for _ in range(args.runs):
            x = rng.standard_normal((m, k), dtype=np.float32)
            w = rng.standard_normal((k, n), dtype=np.float32)
            bias = rng.standard_normal(n, dtype=np.float32)
            t = interleaved({"pynn": lambda: _C.gemm(x, w, False, False, 1.0, 0.0, None, bias,
                                                     1, 0.0),
                             "numpy": lambda: np.maximum(x @ w + bias, 0)}, args.repeats)
            flops = 2.0 * m * k * n
            ratios.append(t["numpy"] / t["pynn"])
            g_pynn, g_numpy = flops / t["pynn"] / 1e9, flops / t["numpy"] / 1e9
            print(f"pynn {g_pynn:.1f} GFLOP/s, numpy {g_numpy:.1f} GFLOP/s, ratio "
                  f"{ratios[-1]:.3f}", flush=True)
    print(f"{m}x{k}x{n} ratios, sorted: {' '.join(f'{r:.2f}' for r in sorted(ratios))}; median "
          f"{statistics.median(ratios):.3f}; at or above 1.15: "
          f"{sum(r >= 1.15 for r in ratios)} of {len(ratios)}")


if __name__ == "__main__":
    main()
