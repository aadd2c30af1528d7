"""What `fit` shows: a tqdm bar per epoch in a terminal (verbose=1), one line per epoch when
the output is not a terminal or verbose=2 (log files never fill with per-step lines), and
nothing with verbose=0.
"""

from __future__ import annotations

import sys
import time


def _format(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class EpochProgress:
    def __init__(self, verbose, epochs, steps, stream=None):
        if verbose not in (0, 1, 2, "auto"):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
        self.stream = stream or sys.stdout
        if verbose == "auto":
            verbose = 1
        interactive = verbose == 1 and getattr(self.stream, "isatty", lambda: False)()
        self.mode = 0 if verbose == 0 else ("bar" if interactive else "line")
        self._tqdm = None
        if self.mode == "bar":
            try:  # a dependency, but an install without dependencies should still train
                from tqdm import tqdm
                self._tqdm = tqdm
            except ImportError:
                self.mode = "line"
        self.epochs, self.steps = epochs, steps
        self._bar = None

    def epoch_begin(self, epoch):
        self._start = time.perf_counter()
        if self.mode == "bar":
            self._bar = self._tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}",
                                   unit="batch", file=self.stream, leave=True,
                                   dynamic_ncols=True)

    def batch_end(self, step, running_logs):
        """Called after each batch; cheap unless the bar is due for a redraw."""
        if self._bar is not None:
            self._bar.update(1)
            if self._bar.n == self.steps or time.perf_counter() - self._bar.last_print_t > 0.1:
                self._bar.set_postfix_str(_format(running_logs), refresh=False)

    def epoch_end(self, epoch, logs):
        elapsed = time.perf_counter() - self._start
        if self._bar is not None:
            self._bar.set_postfix_str(_format(logs), refresh=True)
            self._bar.close()
            self._bar = None
        elif self.mode == "line":
            print(f"Epoch {epoch + 1}/{self.epochs} - {elapsed:.1f}s - {_format(logs)}",
                  file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
