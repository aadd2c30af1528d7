"""pynn against PyTorch, scikit-learn and Keras on the BENCHMARKS.md workloads, in one run.

    env -u OPENBLAS_CORETYPE python bench/compare_peers.py            # all workloads, all peers
    python bench/compare_peers.py --workloads tabular_small --libs pynn torch

Each library trains its own model for --epochs epochs (Adam 1e-3, same batch, float32), in a
process of its own (bench/isolated.py); the first epoch is the warm-up; the later ones are
timed, alternating between libraries. Prints samples/s (median over timed epochs), pynn's
ratio to each peer, the fraction of the compute limit (2 cores x measured FMA peak), each
library's final training loss (PyTorch and Keras start from pynn's initial weights, see
peers.py; each shuffles its own way, which moves wide_mlp's by up to ~8%: loss_parity.py
compares pynn's and PyTorch's under one order), single-row predict latency and inference
throughput in calls of 1024 rows. A library that fails gets a row saying so (its traceback
goes to stderr) and the others go on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from importlib import metadata

from common import machine_line, numpy_blas, warm_heap
from isolated import IsolatedTrainer, LibraryFailed
from peers import TRAINERS, available, keras_backend
from workloads import WORKLOADS


BLOCK = 1024  # rows per predict call for the inference throughput (BENCHMARKS.md)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    # (keras-jax, keras-tensorflow, keras-torch: Keras on that backend, when asked for)
    p.add_argument("--libs", nargs="+", default=[lib for lib in TRAINERS
                                                 if not lib.startswith("keras-")])
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    warm_heap()  # every library's temporaries as in a warm process
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
    if "keras" in libs:
        print(f"keras {metadata.version('keras')} on {keras_backend()}")
    for name in args.workloads:
        w = WORKLOADS[name]
        trainers, failed = {}, {}
        for lib in libs:
            try:
                trainers[lib] = IsolatedTrainer(lib, name)
            except LibraryFailed as e:
                failed[lib] = str(e)
        times = {lib: [] for lib in trainers}
        losses = {}
        for epoch in range(args.epochs):
            for lib, t in list(trainers.items()):
                # Let the previous library's spinning worker threads (OpenBLAS, OpenMP) go to
                # sleep, so no library is timed while another one's threads hold a core.
                time.sleep(1.0)
                try:
                    seconds, losses[lib] = t.epoch()
                except LibraryFailed as e:
                    failed[lib] = str(e)
                    trainers.pop(lib).close()
                    continue
                if epoch > 0:
                    times[lib].append(seconds)
        latency, throughput, predict_failed = {}, {}, {}
        for lib, t in trainers.items():
            try:  # (each after a second's rest, as the epochs: the last epoch's library's
                # spinning threads held a core while the first library's single row was timed)
                time.sleep(1.0)
                latency[lib] = t.predict_seconds(1, 0.2)
                time.sleep(1.0)
                throughput[lib] = BLOCK / t.predict_seconds(BLOCK, 0.2)
            except LibraryFailed as e:  # its training numbers stand; the cells say failed
                predict_failed[lib] = str(e)
            t.close()
        ran = [lib for lib in libs if lib in trainers and times[lib]]
        rate = {lib: w.samples / statistics.median(times[lib]) for lib in ran}
        limit = cores * peak * 1e9 / w.train_flop_per_sample
        peers = [lib for lib in ran if not lib.startswith("pynn")]
        best = max(peers, key=rate.get) if peers else None
        print(f"\n### {name}: {w.samples} samples, {'-'.join(map(str, w.layers))}, batch "
              f"{w.batch}, {args.epochs} epochs (compute limit ~{limit:,.0f} samples/s)")
        print("| library | samples/s | pynn / this | % of compute limit | final loss | "
              f"predict(1 row) | predict({BLOCK} rows), samples/s |")
        print("|---|---|---|---|---|---|---|")
        for lib in libs:
            if lib not in rate:
                cell = ("failed: " + failed[lib].strip().splitlines()[-1] if lib in failed
                        else "no timed epoch (--epochs 1: the first is the warm-up)")
                print(f"| {lib} | {cell} | | | | | |", flush=True)
                continue
            ratio = rate["pynn"] / rate[lib] if "pynn" in rate else float("nan")
            one_row = f"{latency[lib] * 1e6:,.1f} us" if lib in latency else "failed"
            block = f"{throughput[lib]:,.0f}" if lib in throughput else "failed"
            print(f"| {lib} | {rate[lib]:,.0f} | {ratio:.2f} | {100 * rate[lib] / limit:.1f}% | "
                  f"{losses[lib]:.4f} | {one_row} | {block} |", flush=True)
        for lib, why in {**failed, **predict_failed}.items():
            print(f"\n{why}", file=sys.stderr)
        if best and "pynn" in rate:
            print(f"pynn vs best peer ({best}): {rate['pynn'] / rate[best]:.2f}x samples/s; "
                  f"loss {losses['pynn']:.4f} vs {losses[best]:.4f}")
        if "torch" in losses and "pynn" in losses:
            # Same initial weights and Adam settings (peers.py), but each library's own
            # shuffle: the gap holds the order's effect too (loss_parity.py removes it).
            print(f"final loss pynn vs torch: {100 * (losses['pynn'] / losses['torch'] - 1):+.1f}% "
                  f"(own shuffles; the same order: loss_parity.py)")


if __name__ == "__main__":
    main()
