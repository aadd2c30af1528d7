"""What `fit` shows: a tqdm bar per epoch in a terminal or a Jupyter notebook (verbose=1)
that gives way, when the epoch ends, to the epoch's line with every metric (a bar cuts its
metrics at the terminal's width); only those lines when the output is not a terminal or
verbose=2 (log files never fill with per-step lines); nothing with verbose=0.
"""

from __future__ import annotations

import sys
import time


def logs_line(logs):
    """'loss: 0.1234 - accuracy: 0.9000': how fit and evaluate print logs."""
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class EpochProgress:
    def __init__(self, verbose, epochs, steps, stream=None):
        if verbose not in (0, 1, 2, "auto"):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
        self.stream = stream or sys.stdout
        if verbose == "auto":
            verbose = 1
        # Jupyter's output stream is no tty but renders the bar's carriage returns
        interactive = verbose == 1 and (getattr(self.stream, "isatty", lambda: False)()
                                        or type(self.stream).__module__.startswith("ipykernel"))
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
                                   unit="batch", file=self.stream, leave=False,
                                   dynamic_ncols=True)

    @property
    def per_batch(self):
        """Whether batch_end does anything (a bar is drawn): fit may skip it otherwise."""
        return self._bar is not None

    def batch_end(self, step, running_logs):
        """Called after each batch; cheap unless the bar is due for a redraw."""
        if self._bar is not None:
            self._bar.update(1)
            if self._bar.n == self.steps or time.perf_counter() - self._bar.last_print_t > 0.1:
                self._bar.set_postfix_str(logs_line(running_logs), refresh=False)

    def epoch_end(self, epoch, logs):
        elapsed = time.perf_counter() - self._start
        if self._bar is not None:
            self._bar.close()  # erased: the line below has every metric, validation's too
            self._bar = None
        if self.mode:
            print(f"Epoch {epoch + 1}/{self.epochs} - {elapsed:.1f}s - {logs_line(logs)}",
                  file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
