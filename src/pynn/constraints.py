"""Weight constraints, Keras 3's: a projection the optimizer applies to a weight after each
of its updates (`Dense(kernel_constraint=MaxNorm(3))`), with Keras' formulas:

MaxNorm(max_value=2, axis=0):  w * clip(n, 0, max_value) / (eps + n)
MinMaxNorm(min_value=0, max_value=1, rate=1, axis=0):
                               w * (rate * clip(n, min, max) + (1 - rate) * n) / (eps + n)
UnitNorm(axis=0):              w / (eps + n)
NonNeg():                      max(w, 0)

n: the weight's Euclidean norms along `axis` (kept as an axis; axis 0 of a Dense kernel
(inputs, units): each unit's incoming weights), eps = 1e-7 (Keras' backend.epsilon()).
A constraint of your own subclasses Constraint and defines __call__(w) -> the projected
array, w being the weight's array on its backend (numpy; cupy on a GPU).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import config
from . import custom_objects as _custom


def _number(owner, name, value, low=0.0):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= low:
        raise ValueError(f"{owner}: {name} must be a number >= {low:g}, got {value!r}")
    return value


def _axis(owner, axis):
    """An int or a list of ints (Keras' axis of the norms)."""
    items = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not items or any(isinstance(a, bool) or not isinstance(a, numbers.Integral)
                        for a in items):
        raise ValueError(f"{owner}: axis must be an integer or a list of integers, got "
                         f"{axis!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"{owner}: axis {axis!r} repeats an axis")
    return [int(a) for a in items] if isinstance(axis, (list, tuple)) else int(axis)


def _xp(w):
    """The array module of w (numpy, or cupy for a GPU array)."""
    from .backend import is_gpu_array

    if is_gpu_array(w):
        import cupy

        return cupy
    return np


class Constraint(_custom.AutoConfig):
    """Base class: the identity. A subclass defines __call__(w), returning the projected
    weight (an array of w's shape), and get_config() for its arguments."""

    def __call__(self, w):
        return w

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        config.settings_changed()  # (an engine's choice depends on constraints)

    def check_shape(self, shape, weight):
        """A clear error now, when this constraint cannot apply to a weight of `shape`
        (named `weight`), rather than in the middle of a training step."""
        axis = getattr(self, "axis", None)
        if axis is None:
            return
        for a in axis if isinstance(axis, list) else [axis]:
            if not -len(shape) <= a < len(shape):
                raise ValueError(f"{type(self).__name__}(axis={axis!r}) on weight {weight!r} "
                                 f"of shape {tuple(shape)}: axis {a} is out of range")

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {}

    @classmethod
    def from_config(cls, config):
        """The constraint get_config describes (Keras' from_config)."""
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return id(self)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _norms(w, axis):
    xp = _xp(w)
    axes = tuple(axis) if isinstance(axis, list) else axis
    return xp, xp.sqrt((w * w).sum(axis=axes, keepdims=True))


def _scaled(w, xp, norms, desired):
    eps = w.dtype.type(config.epsilon())
    return (w * (desired / (eps + norms))).astype(w.dtype, copy=False)


class MaxNorm(Constraint):
    """Each weight vector along `axis` (a Dense kernel's axis 0: a unit's incoming
    weights) scaled down to a Euclidean norm of at most max_value (Keras' MaxNorm)."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = _number("MaxNorm", "max_value", max_value)
        self.axis = _axis("MaxNorm", axis)

    def __call__(self, w):
        xp, norms = _norms(w, self.axis)
        return _scaled(w, xp, norms, xp.clip(norms, 0, self.max_value))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    """Each weight vector's norm along `axis` moved towards [min_value, max_value]: to
    rate * clip(norm, min, max) + (1 - rate) * norm (rate 1: into the interval at once)."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = _number("MinMaxNorm", "min_value", min_value)
        self.max_value = _number("MinMaxNorm", "max_value", max_value)
        if self.max_value < self.min_value:
            raise ValueError(f"MinMaxNorm: max_value ({max_value!r}) is below min_value "
                             f"({min_value!r})")
        self.rate = _number("MinMaxNorm", "rate", rate)
        self.axis = _axis("MinMaxNorm", axis)

    def __call__(self, w):
        xp, norms = _norms(w, self.axis)
        rate = w.dtype.type(self.rate)
        desired = rate * xp.clip(norms, self.min_value, self.max_value) + (1 - rate) * norms
        return _scaled(w, xp, norms, desired)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


class UnitNorm(Constraint):
    """Each weight vector along `axis` scaled to norm 1 (Keras' UnitNorm)."""

    def __init__(self, axis=0):
        self.axis = _axis("UnitNorm", axis)

    def __call__(self, w):
        xp, norms = _norms(w, self.axis)
        return _scaled(w, xp, norms, w.dtype.type(1))

    def get_config(self):
        return {"axis": self.axis}


class NonNeg(Constraint):
    """Negative weights set to 0 (Keras' NonNeg)."""

    def __call__(self, w):
        return _xp(w).maximum(w, w.dtype.type(0))


# Keras' lower-case aliases are the classes themselves
max_norm, min_max_norm, unit_norm, non_neg = MaxNorm, MinMaxNorm, UnitNorm, NonNeg

_CLASSES = {cls.__name__: cls for cls in (Constraint, MaxNorm, MinMaxNorm, UnitNorm, NonNeg)}
_BY_NAME = {"constraint": Constraint, "max_norm": MaxNorm, "min_max_norm": MinMaxNorm,
            "unit_norm": UnitNorm, "non_neg": NonNeg}


def get(identifier):
    """A Constraint from None, a name ('max_norm' or 'MaxNorm', ...: its defaults), a config
    dict, a Constraint class or instance (Keras' constraints.get)."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Constraint):
        return identifier()
    if isinstance(identifier, str):
        cls = _CLASSES.get(identifier) or _BY_NAME.get(identifier)
        if cls is None:
            raise ValueError(f"unknown constraint {identifier!r}; known: "
                             f"{', '.join(sorted(_BY_NAME))} (or their class names)")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return _custom.rebuild(identifier,
                               lambda name: _CLASSES.get(name) or _BY_NAME.get(name),
                               "constraint")
    if callable(identifier) and not isinstance(identifier, type):
        # a function w -> projected w: what a file cannot name with its arguments
        raise ValueError(f"cannot use {getattr(identifier, '__name__', identifier)!r} as a "
                         f"constraint: write it as a pynn.constraints.Constraint subclass "
                         f"with __call__(w) (and get_config for its arguments), so a model "
                         f"file can name it")
    raise ValueError(f"cannot interpret {identifier!r} as a constraint (a name, a config "
                     f"dict or a Constraint)")


def serialize(constraint):
    """The {'class_name', 'config'} dict `get` turns back into the constraint (None stays
    None)."""
    return None if constraint is None else _custom.describe(constraint)


def apply(param):
    """Project the parameter's values with its constraint, in place (after an update)."""
    constraint = param.constraint
    w = param.value
    projected = constraint(w)
    if projected is w:
        return
    shape = tuple(getattr(projected, "shape", None) or np.shape(projected))
    if shape != tuple(w.shape):  # (a scalar would broadcast silently)
        raise ValueError(f"constraint {constraint!r} of weight {param.name!r} returned an "
                         f"array of shape {shape}, not the weight's {tuple(w.shape)}")
    w[...] = param.backend.asarray(projected, w.dtype)
