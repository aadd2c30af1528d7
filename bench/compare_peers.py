"""pynn against PyTorch, scikit-learn and Keras on the BENCHMARKS.md workloads, in one run.

    env -u OPENBLAS_CORETYPE python bench/compare_peers.py            # all workloads, all peers
    python bench/compare_peers.py --workloads tabular_small --libs pynn torch

Each library trains its own model for --epochs epochs (Adam 1e-3, same batch, float32); the
first epoch is the warm-up; the later ones are timed, alternating between libraries. Prints
samples/s (median over timed epochs), pynn's ratio to each peer, the fraction of the compute
limit (2 cores x measured FMA peak), each library's final training loss (PyTorch and Keras
start from pynn's initial weights, see peers.py), and single-row predict latency.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from common import machine_line, numpy_blas, time_call
from peers import TRAINERS, available
from workloads import WORKLOADS, make_data


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    p.add_argument("--libs", nargs="+", default=list(TRAINERS))
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    libs = [lib for lib in args.libs if available(lib)]
    skipped = sorted(set(args.libs) - set(libs))

    import pynn
    from pynn import _C

    peak = _C.fma_peak_gflops(_C.gemm_isa() if _C.gemm_isa() != "generic" else "avx2", 0.3)
    cores = os.cpu_count()
    print(f"machine: {machine_line()}; numpy BLAS: {numpy_blas()}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"pynn {pynn.__version__}: ISA {_C.gemm_isa()}, {_C.num_threads()} threads; "
          f"FMA peak {peak:.0f} GFLOP/s per core; not installed: {skipped or 'none'}")
    for name in args.workloads:
        w = WORKLOADS[name]
        x, y = make_data(w)
        trainers = {lib: TRAINERS[lib](w, x, y) for lib in libs}
        times = {lib: [] for lib in libs}
        losses = {}
        for epoch in range(args.epochs):
            for lib, t in trainers.items():
                # Let the previous library's spinning worker threads (OpenBLAS, OpenMP) go to
                # sleep, so no library is timed while another one's threads hold a core.
                time.sleep(1.0)
                t0 = time.perf_counter()
                losses[lib] = t.epoch()
                if epoch > 0:
                    times[lib].append(time.perf_counter() - t0)
        rate = {lib: w.samples / statistics.median(times[lib]) for lib in libs}
        row = x[:1].copy()
        latency = {lib: time_call(lambda: trainers[lib].predict_one(row), 0.2) for lib in libs}
        limit = cores * peak * 1e9 / w.train_flop_per_sample
        peers = [lib for lib in libs if not lib.startswith("pynn")]
        best = max(peers, key=lambda l: rate[l]) if peers else None
        print(f"\n### {name}: {w.samples} samples, {'-'.join(map(str, w.layers))}, batch "
              f"{w.batch}, {args.epochs} epochs (compute limit ~{limit:,.0f} samples/s)")
        print("| library | samples/s | pynn / this | % of compute limit | final loss | "
              "predict(1 row) |")
        print("|---|---|---|---|---|---|")
        for lib in libs:
            ratio = rate["pynn"] / rate[lib] if "pynn" in rate else float("nan")
            print(f"| {lib} | {rate[lib]:,.0f} | {ratio:.2f} | {100 * rate[lib] / limit:.1f}% | "
                  f"{losses[lib]:.4f} | {latency[lib] * 1e6:,.1f} us |", flush=True)
        if best and "pynn" in rate:
            print(f"pynn vs best peer ({best}): {rate['pynn'] / rate[best]:.2f}x samples/s; "
                  f"loss {losses['pynn']:.4f} vs {losses[best]:.4f}")
        if "torch" in losses and "pynn" in losses:
            # Same initial weights and Adam settings (peers.py): a gap here is arithmetic.
            print(f"final loss pynn vs torch: {100 * (losses['pynn'] / losses['torch'] - 1):+.1f}%")


if __name__ == "__main__":
    main()
