"""Data given batch by batch, as Keras takes it: a generator or any iterator of batches, an
iterable read again each epoch (a PyTorch DataLoader), or a `PyDataset` (Keras'
keras.utils.PyDataset / Sequence: `__len__` batches, `__getitem__(i)` the i-th,
`on_epoch_begin()` / `on_epoch_end()` around each epoch). A batch is `(x, y)` or `(x, y,
sample_weight)` (a list works too); for predict, `x` alone or such a tuple (y is then
ignored). Lists, tuples, ranges and arrays are data, not batches.

fit, evaluate and predict take one in place of arrays; each batch is checked and converted
as it comes (its rows are the batch: batch_size is the source's), so data larger than memory
trains. `steps_per_epoch` makes an epoch that many batches, continuing where the last epoch
stopped (as Keras); `validation_steps` / `steps` bound the batches read; without them an
epoch reads the whole source (until an iterator is exhausted).
"""
from __future__ import annotations

import collections
import collections.abc
import copy
import itertools
import warnings

import numpy as np

__all__ = ["BatchSource", "PyDataset", "is_batch_source"]


class PyDataset:
    """Base class for a dataset read batch by batch (Keras 3's keras.utils.PyDataset): define
    `__len__` (the number of batches) and `__getitem__(index)` (that batch: (x, y) or
    (x, y, sample_weight)), and optionally `on_epoch_end()` (say, to reshuffle). Keras'
    `workers`, `use_multiprocessing` and `max_queue_size` are accepted for ported code;
    pynn reads the batches in the training thread."""

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        if (isinstance(workers, int) and workers > 1) or use_multiprocessing:
            warnings.warn(f"{type(self).__name__}: workers={workers!r} and "
                          f"use_multiprocessing={use_multiprocessing!r} are taken for Keras "
                          f"code, but pynn reads the batches one by one in the training "
                          f"thread (no parallel loading)", UserWarning, stacklevel=2)
        self.workers, self.use_multiprocessing = workers, use_multiprocessing
        self.max_queue_size = max_queue_size

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__ (the number "
                                  f"of batches)")

    @property
    def num_batches(self):
        """The number of batches, len(self); an endless dataset (Keras 3's) overrides it to
        return None, and is read with steps_per_epoch (or steps) batches at a time."""
        return len(self)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) "
                                  f"(the batch at index)")

    def on_epoch_begin(self):
        """Called before each pass that fit, evaluate, predict or fit's validation begins
        (Keras 3)."""

    def on_epoch_end(self):
        """Called after each epoch of fit, and after evaluate's, predict's and validation's
        passes."""


_ARRAY_ATTRS = ("__array__", "__array_interface__", "__dlpack__", "__cuda_array_interface__",
                "shape")
# Containers of values, never of batches (fit took them as arrays before batch sources)
_VALUE_CONTAINERS = (np.ndarray, list, tuple, str, bytes, bytearray, dict, range,
                     collections.deque, collections.abc.Set, collections.abc.MappingView)


def is_batch_source(x):
    """Whether x gives batches rather than being the data itself: a PyDataset (or Keras'
    PyDataset/Sequence: indexable with on_epoch_end), an iterator (a generator), or an
    iterable that cannot be indexed (a PyTorch DataLoader). Arrays, lists, ranges, buffers,
    DataFrames and the like are data."""
    if x is None or isinstance(x, _VALUE_CONTAINERS) or \
            any(hasattr(x, attr) for attr in _ARRAY_ATTRS) or \
            type(x).__module__.startswith("pandas") or _is_buffer(x):
        return False
    if isinstance(x, PyDataset) or hasattr(x, "__next__") or _torch_iterable_dataset(x):
        return True
    if hasattr(x, "__getitem__"):
        return (hasattr(x, "__len__") or _num_batches(x) is not _UNDECLARED) \
            and hasattr(x, "on_epoch_end")
    return hasattr(x, "__iter__")


def _torch_iterable_dataset(x):
    """A PyTorch IterableDataset: iterated for its batches (its base class's __getitem__,
    which refuses, made it look indexable data)."""
    import sys

    data = sys.modules.get("torch.utils.data")  # (never imports torch itself)
    return data is not None and isinstance(x, data.IterableDataset)


_UNDECLARED = object()


def _num_batches(x):
    """A dataset's num_batches, as Keras 3 reads it: None for an endless one, else the number
    of batches (read that many, whatever __len__ says; a dataset may define num_batches
    alone); _UNDECLARED where it has none or it is no number (one that needs a missing
    __len__, as pynn's and Keras' default)."""
    if not hasattr(type(x), "num_batches"):
        return _UNDECLARED
    try:
        count = x.num_batches
    except Exception:  # noqa: BLE001 - the default's len(self), on a dataset without one
        return _UNDECLARED
    if count is None or isinstance(count, (int, np.integer)) and not isinstance(count, bool):
        return count
    return _UNDECLARED


def _is_buffer(x):
    try:
        memoryview(x)
    except TypeError:
        return False
    return True


def check_steps(steps, name):
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {steps!r}")
    return int(steps)


_END = object()


class BatchSource:
    """A batch source read epoch by epoch, as Keras reads one: `batches()` yields the next
    epoch's batches as (x, y, sample_weight) tuples (y, sample_weight None when absent).

    An epoch is `steps` batches (all of a pass when None) taken from where the last epoch
    stopped, and ends early when the pass does: a PyDataset or an iterable starts a new pass
    at the next epoch (a PyDataset's batches in `order(pass, batches)`'s order when given:
    fit's shuffle), an iterator is read once (`exhausted` then). `restart` (validation data):
    each epoch reads from the start instead, the same batches each time: a new pass, or for
    an iterator copies of its first epoch's batches kept and given again."""

    def __init__(self, source, steps=None, steps_name="steps_per_epoch", what="fit",
                 order=None, restart=False):
        self.source, self.what, self.steps_name = source, what, steps_name
        self.steps = check_steps(steps, steps_name)
        declared = _num_batches(source)
        endless = declared is None
        self.indexed = isinstance(source, PyDataset) or (
            hasattr(source, "__getitem__") and (hasattr(source, "__len__") or
                                                declared is not _UNDECLARED)
            and not hasattr(source, "__next__"))
        self.iterator = hasattr(source, "__next__")  # one stream over all the epochs
        self.endless = self.indexed and endless
        if self.endless:  # batches 0, 1, 2, ... continuing over the epochs (as Keras)
            if self.steps is None:
                raise ValueError(f"{what}: the dataset is endless (num_batches is None): "
                                 f"give {steps_name}, the batches to read")
            self.length = None
        elif self.indexed:
            count = len(source) if declared is _UNDECLARED else declared
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
                raise ValueError(f"len() of the dataset must be a non-negative integer, got "
                                 f"{count!r}")
            if self.steps is not None and self.steps > count:
                raise ValueError(f"{steps_name}={self.steps} is more than the dataset's "
                                 f"{count} batches")
            self.length = int(count)
        elif not self.iterator and not hasattr(source, "__iter__"):
            raise TypeError(f"{what}: cannot read batches from {type(source).__name__}")
        else:
            self.length = None
        self.order, self.restart = order, restart
        self.passes = 0
        self.exhausted = False  # an iterator ran out
        self.count = 0  # batches in the last epoch
        self._stream = None  # the pass being read
        self._kept = None
        self._warned = False  # (shortfall)

    @property
    def epoch_steps(self):
        """Batches an epoch reads (None: unknown), for callbacks' params and the bar."""
        return self.steps if self.steps is not None else self.length

    def _new_pass(self):
        if self.iterator:
            return self.source
        self.passes += 1
        if not self.indexed:
            return iter(self.source)
        if self.endless:  # one pass that never ends: no order to shuffle
            return (self.source[i] for i in itertools.count())
        # a dataset that shrank (its on_epoch_end dropped batches: __getitem__ past the new
        # end raised mid-fit) gives this pass its new count, never more than fit started with
        # (the epochs' count, as Keras reads it)
        now = _num_batches(self.source)
        try:
            now = len(self.source) if now is _UNDECLARED else now
        except Exception:  # noqa: BLE001 - (no length now: the one read at the start)
            now = self.length
        length = self.length
        if isinstance(now, (int, np.integer)) and not isinstance(now, bool) and 0 <= now:
            length = min(length, int(now))
        order = range(length) if self.order is None else self.order(self.passes, length)
        return (self.source[int(i)] for i in order)

    def batches(self):
        """The next epoch's batches, each (x, y, sample_weight)."""
        if self._kept is not None:
            yield from self._kept
            return
        if self.restart and not self.iterator:
            self._stream = None
        reader = self._read()
        if not (self.restart and self.iterator):
            yield from reader
            return
        # validation from a generator: read once, kept for the next epochs (copies: a
        # generator may refill one array every batch)
        kept, complete = [], False
        try:
            for batch in reader:
                kept.append(tuple(map(_snapshot, batch)))
                yield batch
            complete = True
        except GeneratorExit:
            # stopped early (a test batch hook's stop_evaluating): the rest of the batches
            # read now, or the next validation would go on with them in place of these
            for batch in reader:
                kept.append(tuple(map(_snapshot, batch)))
            complete = True
            raise
        finally:
            if complete:
                self._kept = kept

    def _read(self):
        """The batches of this epoch as the source gives them, unpacked."""
        self.count = 0
        fresh = False  # whether the pass being read began in this epoch
        while (self.steps is None or self.count < self.steps) and not self.exhausted:
            if self._stream is None:
                self._stream, fresh = self._new_pass(), True
            item = next(self._stream, _END)
            if item is _END:  # the pass ends, and with it the epoch
                self._stream = None
                self.exhausted = self.iterator
                if self.count == 0 and not fresh and not self.iterator:
                    continue  # the last epoch ended with the pass: this one takes a new one
                break
            self.count += 1
            yield _unpack(item, self.what)

    def shortfall(self):
        """What to warn of, once, when the last epoch's data ran out before `steps` batches
        (Keras 3: "your input ran out of data"); None otherwise."""
        if self.steps is None or self.count >= self.steps or self._warned:
            return None
        self._warned = True
        return (f"{self.what}: the data ran out after {self.count} of the {self.steps} "
                f"batches asked for ({self.steps_name})")

    def epoch_begin(self):
        """The source's on_epoch_begin(), where it has one (Keras 3's PyDataset)."""
        if hasattr(self.source, "on_epoch_begin"):
            self.source.on_epoch_begin()

    def epoch_end(self):
        """The source's on_epoch_end(), where it has one (PyDataset)."""
        if hasattr(self.source, "on_epoch_end"):
            self.source.on_epoch_end()


def _snapshot(part):
    """A copy of a batch's x, y or weights, kept for the next epochs' validation: the
    generator may write its next batch into the same array (a copy's failure keeps it)."""
    if part is None:
        return None
    if isinstance(part, np.ndarray):
        return part.copy()
    try:
        return copy.deepcopy(part)
    except Exception:  # (an object that cannot be copied: kept as it is)
        return part


def _unpack(item, what):
    """(x, y, sample_weight) of one batch; predict also takes a bare x."""
    if isinstance(item, list) and not all(i is None or hasattr(i, "shape") for i in item):
        # rows (numbers, lists), not (x, y[, w]) of arrays: [[1.0], [2.0]] was read as x
        # [1.0] and y [2.0], the rows' other samples dropped without a word
        if what == "predict":
            return item, None, None
        raise ValueError(f"{what}: a batch given as a list is read as (x, y) or (x, y, "
                         f"sample_weight) only when it holds arrays; this one holds "
                         f"{type(next(i for i in item if not hasattr(i, 'shape'))).__name__} "
                         f"items (rows?): give each batch as a tuple (x, y) of arrays")
    if isinstance(item, (tuple, list)):
        if not 1 <= len(item) <= 3:
            raise ValueError(f"{what}: a batch must be (x,), (x, y) or (x, y, sample_weight),"
                             f" got a {type(item).__name__} of {len(item)} items")
        x, y, w = (*item, None, None)[:3]
        return x, y, w
    if what == "predict":
        return item, None, None
    raise ValueError(f"{what}: a batch must be a tuple (x, y) or (x, y, sample_weight), got "
                     f"{type(item).__name__}")
