"""Shared benchmark helpers: interleaved timing, machine description, FMA peak.

These machines are shared and noisy: compare implementations measured in the same run,
alternating between them, and report ratios (and the median of several repetitions).
"""

from __future__ import annotations

import os
import platform
import statistics
import time


def time_call(fn, min_time=0.05):
    """Seconds per call of fn(), from enough calls to fill min_time."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / n
        n = max(n * 2, int(n * min_time / max(dt, 1e-9)) + 1)


def warm_heap():
    """Lets numpy's temporaries stay in the heap, as in a process that has run a while: a
    fresh one's glibc maps each block over 128 KiB afresh and gives freed heap back past a
    2x larger trimming threshold, so every temporary faults its pages in again. Freeing one
    16 MiB block raises both thresholds (to it and twice it; glibc raises them for blocks
    of at most 32 MiB). Measured: a fresh process's np.maximum(a @ b + bias, 0) at
    256x1024x1024 ran 8-13% slower than a warm one's, which flattered pynn's fused GEMM
    (peers at their best: BENCHMARKS.md)."""
    import numpy as np

    block = np.ones(1 << 22, dtype=np.float32)
    del block


def interleaved(fns: dict, repeats=5, min_time=0.05, settle=0.25):
    """{name: median seconds per call}, the candidates measured in turn, `repeats` rounds.

    `settle` seconds of idleness precede each measurement: OpenBLAS' and OpenMP's workers
    spin for up to ~0.1 s after a call and would otherwise steal the core of whatever runs
    next (measured here: pynn's 2-thread GEMM right after numpy.matmul ran at 1-thread speed).
    """
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(settle)
            samples[name].append(time_call(fn, min_time))
    return {name: statistics.median(s) for name, s in samples.items()}


def timed_rounds(fns: dict, rounds, settle=0.1):
    """{name: [seconds of each call]}: every fn called once per round, in turn, after
    `settle` seconds of idleness (for calls long enough to time one by one, as epochs)."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return samples


def torch_bce_epoch(torch, net, optimizer, tx, ty, batch=128):
    """A plain PyTorch training epoch (shuffled batches, BCE on logits): the peer loop of the
    activation and optimizer benchmarks."""
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def epoch():
        perm = torch.randperm(len(tx))
        for i in range(0, len(tx), batch):
            idx = perm[i:i + batch]
            optimizer.zero_grad()
            loss_fn(net(tx[idx]), ty[idx]).backward()
            optimizer.step()
    return epoch


def machine_line():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def numpy_blas():
    """What numpy's BLAS is and which kernel it runs (threadpoolctl), for the record."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} "
                     f"({i.get('architecture')}, {i.get('num_threads')} threads)" for i in infos)


def blas_threads(n):
    """Context manager limiting numpy's BLAS to n threads."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")
