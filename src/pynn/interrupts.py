"""Ctrl-C during fit: finish the steps in flight, then stop cleanly.

While training, the first SIGINT only sets a flag: the steps in progress complete (one on
the layer path; on the native engine the chunk of steps it runs between returns to Python:
with a progress bar at most 256 steps and a twentieth of an epoch, without one up to 16 cheap
steps, with a callback's batch hooks one), so the weights are those of the last completed
step, never half-updated; callbacks get on_train_end, and fit raises KeyboardInterrupt with
model.history holding the finished epochs. A second Ctrl-C interrupts as soon as control is
back in Python. Outside the main thread, or when the program has its own SIGINT handler,
nothing is changed.
"""

from __future__ import annotations

import signal
import sys
import threading


class DeferredInterrupt:
    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: finishing the current step (press Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
