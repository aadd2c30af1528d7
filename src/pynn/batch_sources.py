"""Data given batch by batch, as Keras takes it: a generator or any iterator of batches, an
iterable read again each epoch (a PyTorch DataLoader, a list of batches), or a `PyDataset`
(Keras' keras.utils.PyDataset / Sequence: `__len__` batches, `__getitem__(i)` the i-th,
`on_epoch_end()` after each epoch). A batch is `(x, y)` or `(x, y, sample_weight)` (a list
works too); for predict, `x` alone or such a tuple (y is then ignored).

fit, evaluate and predict take one in place of arrays; each batch is checked and converted
as it comes (its rows are the batch: batch_size is the source's), so data larger than memory
trains. `steps_per_epoch` / `validation_steps` / `steps` bound the batches read; without
them an epoch reads the whole source (until an iterator is exhausted).
"""

from __future__ import annotations

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
        self.workers, self.use_multiprocessing = workers, use_multiprocessing
        self.max_queue_size = max_queue_size

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__ (the number "
                                  f"of batches)")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) "
                                  f"(the batch at index)")

    def on_epoch_end(self):
        """Called after each epoch of fit (and after evaluate and predict)."""


_ARRAY_ATTRS = ("__array__", "__array_interface__", "__dlpack__", "__cuda_array_interface__")


def is_batch_source(x):
    """Whether x gives batches rather than being the data itself: an iterator, or an
    indexable or iterable object that is no array, list, tuple, string, dict or DataFrame."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, str, bytes, dict)) or \
            any(hasattr(x, attr) for attr in _ARRAY_ATTRS) or \
            type(x).__module__.startswith("pandas"):
        return False
    return isinstance(x, PyDataset) or hasattr(x, "__next__") or hasattr(x, "__iter__") or \
        (hasattr(x, "__getitem__") and hasattr(x, "__len__"))


def _check_steps(steps, name):
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {steps!r}")
    return int(steps)


class BatchSource:
    """A batch source read epoch by epoch: `batches()` yields up to `steps` batches as
    (x, y, sample_weight) tuples (y, sample_weight None when absent)."""

    def __init__(self, source, steps=None, steps_name="steps_per_epoch", what="fit"):
        self.source, self.what, self.steps_name = source, what, steps_name
        self.steps = _check_steps(steps, steps_name)
        self.indexed = isinstance(source, PyDataset) or (
            hasattr(source, "__getitem__") and hasattr(source, "__len__")
            and not hasattr(source, "__next__"))
        self.iterator = hasattr(source, "__next__")  # one stream over all the epochs
        if self.indexed:
            count = len(source)
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
                raise ValueError(f"len() of the dataset must be a non-negative integer, got "
                                 f"{count!r}")
            if self.steps is not None and self.steps > count:
                raise ValueError(f"{steps_name}={self.steps} is more than the dataset's "
                                 f"{count} batches")
            self.steps = count if self.steps is None else self.steps
        elif not self.iterator and not hasattr(source, "__iter__"):
            raise TypeError(f"{what}: cannot read batches from {type(source).__name__}")
        self.exhausted = False  # an epoch ended early: the source ran out

    def batches(self):
        """One epoch's batches, each (x, y, sample_weight)."""
        if self.indexed:
            items = (self.source[i] for i in range(self.steps))
        else:
            stream = self.source if self.iterator else iter(self.source)
            items = stream if self.steps is None else itertools.islice(stream, self.steps)
        count = 0
        for item in items:
            count += 1
            yield _unpack(item, self.what)
        if self.steps is not None and count < self.steps or count == 0:
            self.exhausted = True
            warnings.warn(f"{self.what}: the data ran out after {count} batch(es) of this "
                          f"epoch (expected {self.steps if self.steps is not None else 'some'});"
                          f" a generator is read once: give {self.steps_name} so that each "
                          f"epoch reads its share, or an iterable read again each epoch",
                          stacklevel=4)

    def epoch_end(self):
        """The source's on_epoch_end(), where it has one (PyDataset)."""
        if hasattr(self.source, "on_epoch_end"):
            self.source.on_epoch_end()


def _unpack(item, what):
    """(x, y, sample_weight) of one batch; predict also takes a bare x."""
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
