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

import os
import signal
import sys
import threading

# The DeferredInterrupts whose handler is installed now, outermost first.
_active = []


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
                and signal.getsignal(signal.SIGINT) in (signal.default_int_handler,
                                                        _steps_handler)):
            self._previous = signal.signal(signal.SIGINT, self._handler)
            _active.append(self)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
            if self in _active:
                _active.remove(self)
        return False


# train_on_batch's deferral, at almost no cost a step (installing and restoring a handler
# each call, as fit does once, took 7 us of a 47 us step): a handler that raises
# KeyboardInterrupt at once, as Python's default, unless a step is in progress, when it only
# notes the request; it replaces the default handler at the first step and stays.
_steps_in_progress = 0
_step_interrupted = False
_installed = False  # (getsignal costs ~2 us: asked until the handler is installed)


def _steps_handler(signum, frame):
    global _step_interrupted
    if _steps_in_progress and not _step_interrupted:
        _step_interrupted = True
        return
    raise KeyboardInterrupt


class StepGuard:
    """A Ctrl-C during one train_on_batch step is raised after it: the weights and the step
    count are then those of the finished step, never half-updated (in the main thread,
    while Python's default handler or this module's is installed)."""

    __slots__ = ("_active",)

    def __enter__(self):
        global _steps_in_progress, _installed
        self._active = False
        if threading.current_thread() is threading.main_thread():
            if not _installed and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                signal.signal(signal.SIGINT, _steps_handler)
                _installed = True
            # (another handler installed since, the program's or fit's: it decides, and the
            # count here changes nothing)
            if _installed:
                _steps_in_progress += 1
                self._active = True
        return self

    def __exit__(self, exc_type, exc, tb):
        global _steps_in_progress, _step_interrupted
        if self._active:  # (a child forked in a step has counted it out already)
            _steps_in_progress = max(0, _steps_in_progress - 1)
            if not _steps_in_progress and _step_interrupted:
                _step_interrupted = False
                if exc_type is None:
                    raise KeyboardInterrupt
        return False


def _handlers_back_in_child():
    # A process forked during fit (a DataLoader's workers, a callback's pool) inherited fit's
    # handler, and its first Ctrl-C only printed fit's message; it gets the program's own
    # back, and no step of the parent's is in progress in it.
    global _steps_in_progress, _step_interrupted
    _steps_in_progress, _step_interrupted = 0, False
    if _active:
        outermost = _active[0]._previous
        for deferral in _active:  # (a with block the child leaves changes nothing more)
            deferral._previous = None
        _active.clear()
        try:
            signal.signal(signal.SIGINT, outermost)
        except (ValueError, OSError):  # (not the main thread after all: left as it is)
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_handlers_back_in_child)
