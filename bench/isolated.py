"""A peers.py trainer in a process of its own, driven from the benchmark's process.

Libraries that bundle their own LLVM or OpenMP do not always share a process: Keras on JAX
and PyTorch in one process crashed in Triton's LLVM (a segfault in libtriton.so, mnist_mlp,
jax 0.10.2, torch 2.14.1), and one library's spinning worker threads can hold a core while
another is timed. Each library therefore trains in a spawned child that builds the workload's
data and its trainer itself (both are seeded: every child sees the same data and initial
weights); the child times its own epochs, so the pipe's round trip is not counted.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback


def _serve(lib, workload, conn):
    try:
        from common import time_call
        from peers import TRAINERS
        from workloads import WORKLOADS, make_data

        w = WORKLOADS[workload]
        x, y = make_data(w)
        trainer = TRAINERS[lib](w, x, y)
        conn.send(("ok", None))
        while True:
            command, arg = conn.recv()
            if command == "epoch":
                t0 = time.perf_counter()
                loss = trainer.epoch()
                conn.send(("ok", (time.perf_counter() - t0, float(loss))))
            elif command == "predict":
                n, min_time = arg
                rows = x[:n].copy()
                conn.send(("ok", time_call(lambda: trainer.predict_rows(rows), min_time)))
            else:
                return
    except BaseException:  # the parent reports it in the library's row
        conn.send(("error", traceback.format_exc()))


class LibraryFailed(RuntimeError):
    """The library's child process raised or died; the message says how."""


class IsolatedTrainer:
    """TRAINERS[lib] for WORKLOADS[workload], trained in a child process."""

    def __init__(self, lib, workload, timeout=1800.0):
        self.lib = lib
        self.timeout = timeout  # seconds a call may take before the library counts as hung
        ctx = multiprocessing.get_context("spawn")  # no inherited threads or library state
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(lib, workload, child), daemon=True)
        self._proc.start()
        child.close()
        try:
            self._call(None)  # the trainer is built (or its error raised) before any timing
        except LibraryFailed:
            self.close()  # (reaps the child)
            raise

    def _call(self, command, arg=None):
        try:
            if command is not None:
                self._conn.send((command, arg))
            if not self._conn.poll(self.timeout):
                self._proc.kill()
                raise LibraryFailed(f"{self.lib}: no answer in {self.timeout:.0f} s (killed)")
            status, value = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            raise LibraryFailed(f"{self.lib}: its process died (exit code "
                                f"{self._proc.exitcode})") from None
        if status == "error":
            raise LibraryFailed(f"{self.lib} failed:\n{value}")
        return value

    def epoch(self):
        """(seconds, mean training loss) of one epoch, timed in the child."""
        return self._call("epoch")

    def predict_seconds(self, n=1, min_time=0.2):
        """Seconds per predict of the workload's first n rows (after one untimed call),
        timed in the child."""
        return self._call("predict", (n, min_time))

    def close(self):
        """Ends the child (asked, then killed after 10 s) and reaps it."""
        if self._proc.is_alive():
            try:
                self._conn.send(("close", None))
            except OSError:
                pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()
