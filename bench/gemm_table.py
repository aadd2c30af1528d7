"""GEMM GFLOP/s of pynn's cpu backend against numpy.matmul, in one run, as a Markdown table.

    python bench/gemm_table.py                    # 1 and 2 threads, every listed shape
    env -u OPENBLAS_CORETYPE python bench/gemm_table.py   # numpy at its best (see BENCHMARKS.md)
    PYNN_ISA=avx2 python bench/gemm_table.py --threads 1 --square 1024
    python bench/gemm_table.py --precision high   # bf16x3 on AMX (pynn.set_matmul_precision)

Shapes: ../shared/BENCHMARKS.md (square N, the MLP shapes in the three backprop transposes,
and the Dense forward with the fused bias + ReLU epilogue against np.maximum(a @ b + bias, 0)).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from common import blas_threads, interleaved, machine_line, numpy_blas, warm_heap

SQUARE = [128, 256, 512, 1024, 2048]
MLP = [(128, 784, 256), (256, 1024, 1024), (32, 64, 64)]
DENSE = [(128, 784, 256), (256, 1024, 1024)]


def operands(m, k, n, trans_a, trans_b, rng):
    a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
    return a, b


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--square", type=int, nargs="*", default=SQUARE)
    p.add_argument("--no-mlp", action="store_true")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--precision", choices=["highest", "high"], default=None,
                   help="pynn's matmul precision ('high': bf16x3 on AMX; default: as set)")
    args = p.parse_args()

    import pynn
    from pynn import _C

    if args.precision:
        pynn.set_matmul_precision(args.precision)

    rng = np.random.default_rng(0)
    warm_heap()
    print(f"machine: {machine_line()}")
    print(f"pynn ISA: {_C.gemm_isa()}, matmul precision {pynn.get_matmul_precision()} (AMX: "
          f"{'yes' if _C.amx_available() else 'no'}); numpy BLAS: {numpy_blas()}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    peaks = {isa: _C.fma_peak_gflops(isa, 0.3) for isa in ("avx2", "avx512")
             if _C.cpu_supports_isa(isa)}
    print("measured single-core FMA peak: " +
          ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    peak = peaks.get(_C.gemm_isa())
    print()
    print("| threads | op | M x K x N | pynn GFLOP/s | numpy GFLOP/s | pynn/numpy | pynn % of peak |")
    print("|---|---|---|---|---|---|---|")
    cases = [("A·B", n, n, n, False, False) for n in args.square]
    if not args.no_mlp:
        cases += [(name, m, k, n, ta, tb) for (m, k, n) in MLP
                  for name, ta, tb in (("A·B", False, False), ("A·Bᵀ", False, True),
                                       ("Aᵀ·B", True, False))]
    for threads in args.threads:
        pynn.set_num_threads(threads)
        with blas_threads(threads):
            for name, m, k, n, ta, tb in cases:
                a, b = operands(m, k, n, ta, tb, rng)
                opa, opb = (a.T if ta else a), (b.T if tb else b)
                t = interleaved({"pynn": lambda: _C.gemm(a, b, ta, tb),
                                 "numpy": lambda: np.matmul(opa, opb)}, args.repeats)
                report(threads, name, m, k, n, t, peak)
            if not args.no_mlp:
                for m, k, n in DENSE:
                    x, w = operands(m, k, n, False, False, rng)
                    bias = rng.standard_normal(n, dtype=np.float32)
                    t = interleaved({"pynn": lambda: _C.gemm(x, w, False, False, 1.0, 0.0, None,
                                                             bias, 1, 0.0),
                                     "numpy": lambda: np.maximum(x @ w + bias, 0)}, args.repeats)
                    report(threads, "relu(A·B+b)", m, k, n, t, peak)


def report(threads, name, m, k, n, t, peak):
    flops = 2.0 * m * k * n
    g_p, g_n = flops / t["pynn"] / 1e9, flops / t["numpy"] / 1e9
    frac = f"{100 * g_p / (peak * threads):.0f}%" if peak else "-"
    print(f"| {threads} | {name} | {m}x{k}x{n} | {g_p:.1f} | {g_n:.1f} | {g_p / g_n:.2f} | {frac} |",
          flush=True)


if __name__ == "__main__":
    main()
