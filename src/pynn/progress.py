"""What `fit` shows: a tqdm bar per epoch in a terminal or a Jupyter notebook (verbose=1)
that gives way, when the epoch ends, to the epoch's line with every metric (a bar cuts its
metrics at the terminal's width); only those lines when the output is not a terminal or
verbose=2 (log files never fill with per-step lines); nothing with verbose=0.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def logs_line(logs):
    """'loss: 0.1234 - accuracy: 0.9000': how fit and evaluate print logs; values of at most
    1e-3 in magnitude in Keras' exponent form ('loss: 8.6102e-07', not 'loss: 0.0000')."""
    return " - ".join(f"{k}: {_number(v)}" for k, v in logs.items())


def _number(v):
    try:
        if np.ndim(v) and np.size(v):  # an array a callback logged (per-class scores): its
            v = float(np.mean(v))      # mean, as Keras prints it (it crashed the line)
        return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"
    except (TypeError, ValueError):  # (a value a callback logged that is no number)
        return str(v)


def _per_step(seconds):
    """'3s/step', '12ms/step', '274us/step' (Keras' units)."""
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def check_verbose(verbose):
    """verbose as fit, evaluate and predict take it: 0, 1, 2 or 'auto'."""
    if verbose not in (0, 1, 2, "auto"):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")


class EpochProgress:
    def __init__(self, verbose, epochs, steps, stream=None):
        check_verbose(verbose)
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
        self._postfix_at = 0.0  # perf_counter of the bar's last metrics
        self._elapsed = None

    def epoch_begin(self, epoch):
        self._start = time.perf_counter()
        self._elapsed = None
        if self.mode == "bar":
            self._bar = self._tqdm(total=self.steps, desc=f"Epoch {epoch + 1}/{self.epochs}",
                                   unit="batch", file=self.stream, leave=False,
                                   dynamic_ncols=True)

    @property
    def per_batch(self):
        """Whether batch_end does anything (a bar is drawn): fit may skip it otherwise."""
        return self._bar is not None

    def batch_end(self, step, running_logs):
        """Called after each batch; cheap unless the bar is due for a redraw. The running
        metrics go in before the bar's update, whose redraw shows them (compared with
        tqdm's own last_print_t, a time.time(), this perf_counter never was due: the bar
        showed no metrics)."""
        if self._bar is not None:
            now = time.perf_counter()
            if now - self._postfix_at > 0.1 or self._bar.n + 1 == self.steps:
                self._bar.set_postfix_str(logs_line(running_logs), refresh=False)
                self._postfix_at = now
            self._bar.update(1)

    def end_bar(self):
        """The epoch's bar gives way (erased: the epoch's line has every metric, validation's
        too), before the callbacks' on_epoch_end may print."""
        if self._elapsed is None:
            self._elapsed = time.perf_counter() - self._start
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def epoch_end(self, epoch, logs, steps_done=None):
        """The epoch's line, after the callbacks (as Keras prints last: what they log, such
        as learning_rate, shows): 'Epoch 2/5 - 25/25 - 0.3s - 12ms/step - loss: ...', the
        batches the epoch ran of its steps (Keras' verbose=2 line, the epoch in front)."""
        self.end_bar()
        if self.mode:
            head = f"Epoch {epoch + 1}/{self.epochs}"
            if steps_done:
                head += f" - {steps_done}/{self.steps}" if self.steps else f" - {steps_done}"
            head += f" - {self._elapsed:.1f}s"
            if steps_done:
                head += f" - {_per_step(self._elapsed / steps_done)}"
            print(f"{head} - {logs_line(logs)}", file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
