"""pytest-benchmark: one training epoch per library on the BENCHMARKS.md workloads.

    python -m pytest bench/test_bench_train.py --benchmark-only --benchmark-group-by=param:workload

Each library trains in a process of its own (isolated.py; the pipe's round trip, tens of
microseconds, is inside the timing). Compare within a group (same run). bench/compare_peers.py
prints the same as samples/s with ratios, final losses and predict latency and throughput.
"""

from __future__ import annotations

import time

import pytest

from isolated import IsolatedTrainer
from peers import TRAINERS, available
from workloads import WORKLOADS


@pytest.mark.parametrize("lib", [lib for lib in TRAINERS if not lib.startswith("keras-")])
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_train_epoch(benchmark, workload, lib):
    if not available(lib):
        pytest.skip(f"{lib} is not installed (pip install '.[bench]' and the peers)"
                    if lib != "pynn-high" else "pynn-high: no AMX here")
    w = WORKLOADS[workload]
    trainer = IsolatedTrainer(lib, workload)  # a process of its own, as compare_peers.py
    try:
        trainer.epoch()  # warm-up
        time.sleep(1.0)  # let other libraries' spinning threads sleep first
        benchmark.pedantic(trainer.epoch, rounds=2, iterations=1)
    finally:
        trainer.close()
    benchmark.extra_info["samples_per_s"] = w.samples / benchmark.stats["median"]
