"""Keras' `keras.utils` names that dense-network code uses: `set_random_seed`,
`to_categorical`, `PyDataset` (and its older name `Sequence`), `custom_object_scope`."""

from __future__ import annotations

import numbers
import random

import numpy as np

from .batch_sources import PyDataset
from .config import set_seed
from .custom_objects import custom_object_scope, get_custom_objects, register_keras_serializable

Sequence = PyDataset  # Keras 3 keeps keras.utils.Sequence as PyDataset's alias

__all__ = ["PyDataset", "Sequence", "clear_session", "custom_object_scope",
           "get_custom_objects", "normalize", "pack_x_y_sample_weight",
           "register_keras_serializable", "set_random_seed", "to_categorical",
           "unpack_x_y_sample_weight"]


def clear_session(free_memory=True):
    """Keras' clear_session (keras.utils and keras.backend): layer names start afresh
    (dense, dense_1, ...), as in a new session; pynn keeps no graph or global model state
    beyond them. free_memory is taken and unused."""
    from .layers.base import reset_names

    reset_names()


def set_random_seed(seed):
    """As Keras': seeds pynn (weights, shuffling, dropout: pynn.set_seed), Python's `random`
    and NumPy's global generator (data built with np.random after it repeats too). seed:
    an integer in [0, 2**32), NumPy's too, checked before anything is seeded."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or \
            not 0 <= seed < 2**32:
        raise ValueError(f"set_random_seed: seed must be an integer in [0, 2**32), got "
                         f"{seed!r}")
    seed = int(seed)  # (random.seed refuses numpy's integers)
    set_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def to_categorical(x, num_classes=None):
    """One-hot rows (float32) for integer class labels, as Keras: labels of shape S give
    S + (num_classes,), a trailing axis of 1 dropped first; num_classes defaults to the
    largest label + 1."""
    labels = np.asarray(x)
    if labels.dtype.kind == "f":
        if labels.size and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
            raise ValueError("to_categorical: labels must be integers, got non-integer floats")
    elif labels.dtype.kind not in "biu":
        raise TypeError(f"to_categorical: labels must be integers, got dtype {labels.dtype}")
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    # the range in the labels' own type (a uint64 of 2**63 or a float of 1e20 wraps to a
    # negative int64), then the cast
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, -1)
    if low < 0:
        raise ValueError(f"to_categorical: labels must be >= 0, got {low}")
    if num_classes is None:
        num_classes = high + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"to_categorical: num_classes must be an integer >= 1, got "
                         f"{num_classes!r}")
    if high >= num_classes:
        raise ValueError(f"to_categorical: label {high} is out of range for "
                         f"num_classes={num_classes}")
    return np.eye(num_classes, dtype=np.float32)[labels.astype(np.int64)]


def normalize(x, axis=-1, order=2):
    """x divided by its `order`-norm along `axis` (a zero norm divides by 1; axis None: the
    last, as Keras'), a new array of x's shape, as Keras' normalize (numpy.linalg.norm's
    orders)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"normalize: expected numbers, got dtype {x.dtype}")
    axis = -1 if axis is None else axis
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or \
            not -max(x.ndim, 1) <= axis < max(x.ndim, 1):
        raise ValueError(f"normalize: axis must be an axis of x's {x.ndim}, got {axis!r}")
    norm = np.linalg.norm(x, order, axis, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


def unpack_x_y_sample_weight(data):
    """(x, y, sample_weight) from a batch x, (x,), (x, y) or (x, y, sample_weight) (a list
    read as a tuple), None for what it lacks, as Keras'."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) in (1, 2, 3):
        return (*data, *(None,) * (3 - len(data)))
    raise ValueError(f"a batch is x, (x,), (x, y) or (x, y, sample_weight); got a tuple of "
                     f"{len(data)}")


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """The batch fit reads: x alone (a tuple or list of inputs as (x,)), (x, y) or (x, y,
    sample_weight), as Keras'."""
    if y is None:
        return (x,) if isinstance(x, (tuple, list)) else x
    return (x, y) if sample_weight is None else (x, y, sample_weight)
