"""Weight constraints, Keras 3's: a projection the optimizer applies to a weight after each
of its updates (`Dense(kernel_constraint=MaxNorm(3))`), with Keras' formulas:

MaxNorm(max_value=2, axis=0):  w * clip(n, 0, max_value) / (eps + n)
MinMaxNorm(min_value=0, max_value=1, rate=1, axis=0):
                               w * (rate * clip(n, min, max) + (1 - rate) * n) / (eps + n)
UnitNorm(axis=0):              w / (eps + n)
NonNeg():                      max(w, 0)

n: the weight's Euclidean norms along `axis` (kept as an axis; axis 0 of a Dense kernel
(inputs, units): each unit's incoming weights; None: one norm of the whole weight), eps =
1e-7 (Keras' backend.epsilon()).
A constraint of your own subclasses Constraint and defines __call__(w) -> the projected
array, w being the weight's array on its backend (numpy; cupy on a GPU).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import config
from . import custom_objects as _custom
from .backend.arrays import array_module


def _number(owner, name, value, low=0.0):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= low:
        raise ValueError(f"{owner}: {name} must be a number >= {low:g}, got {value!r}")
    return value


def _axis(owner, axis):
    """None (every axis: one norm), an int or a list of ints (Keras' axis of the norms)."""
    if axis is None:
        return None
    items = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if not items or any(isinstance(a, bool) or not isinstance(a, numbers.Integral)
                        for a in items):
        raise ValueError(f"{owner}: axis must be an integer, a list of integers or None, got "
                         f"{axis!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"{owner}: axis {axis!r} repeats an axis")
    return [int(a) for a in items] if isinstance(axis, (list, tuple)) else int(axis)


class Constraint(_custom.ByConfig, _custom.AutoConfig):
    """Base class: the identity. A subclass defines __call__(w), returning the projected
    weight (an array of w's shape), and get_config() for its arguments."""

    def __call__(self, w):
        return w

    def __setattr__(self, name, value):
        object.__setattr__(self, name, self._checked(name, value))
        config.settings_changed()  # (an engine's choice depends on constraints)

    def _checked(self, name, value):
        """An argument's value, checked (pynn's constraints check theirs, set later too)."""
        return value

    def check_shape(self, shape, weight):
        """A clear error now, when this constraint cannot apply to a weight of `shape`
        (named `weight`), rather than in the middle of a training step."""

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {}

    @classmethod
    def from_config(cls, config):
        """The constraint get_config describes (Keras' from_config)."""
        return cls(**config)


class _NormConstraint(Constraint):
    """The norm constraints: Euclidean norms along `axis`, each vector scaled by
    desired(norm) / (epsilon + norm). Squares of float32 weights that overflow are summed
    again in float64 (a value of 1e20 squared is beyond float32: Keras' zero or NaN
    there), as the native engine sums them."""

    _numbers = ()  # the arguments that are numbers >= 0

    def _checked(self, name, value):
        owner = type(self).__name__
        if name == "axis":
            return _axis(owner, value)
        if name in self._numbers:
            return _number(owner, name, value)
        return value

    def axes(self, ndim):
        """The axes of the norms on a weight of `ndim` axes, each in [0, ndim) (every one
        for axis=None); check_shape says whether they are its."""
        if self.axis is None:
            return list(range(ndim))
        return [a % ndim for a in (self.axis if isinstance(self.axis, list) else [self.axis])]

    def check_shape(self, shape, weight):
        axis = self.axis
        for a in [] if axis is None else axis if isinstance(axis, list) else [axis]:
            if not -len(shape) <= a < len(shape):
                raise ValueError(f"{type(self).__name__}(axis={axis!r}) on weight {weight!r} "
                                 f"of shape {tuple(shape)}: axis {a} is out of range")
        axes = self.axes(len(shape))
        if len(set(axes)) != len(axes):  # ([0, -2] of a matrix)
            raise ValueError(f"{type(self).__name__}(axis={axis!r}) on weight {weight!r} "
                             f"of shape {tuple(shape)} names an axis twice")

    def _desired(self, xp, norms):
        raise NotImplementedError

    def __call__(self, w):
        return w * self._scale(w, "w")

    def _project_in_place(self, w, weight):
        w *= self._scale(w, weight)  # (no weight-sized temporary: the optimizer's way)

    def _scale(self, w, weight):
        """Each vector's factor desired(n) / (eps + n), shaped to broadcast over w (the
        weight named `weight`: an axis it lacks is named, when called directly too)."""
        self.check_shape(w.shape, weight)
        xp = array_module(w)
        axes = self.axes(w.ndim)
        # the squares summed without a weight-sized temporary (einsum), in w's type; a
        # float32 sum that overflowed is summed again in float64 (rare: a copy costs more
        # than the update)
        letters = "abcdefghijklmnopqrstuvwxyz"[:w.ndim]
        kept = "".join(c for i, c in enumerate(letters) if i not in axes)
        squares = xp.einsum(f"{letters},{letters}->{kept}", w, w)
        if w.dtype.itemsize < 8 and bool(xp.isinf(squares).any()):
            wide = w.astype(np.float64)
            squares = xp.einsum(f"{letters},{letters}->{kept}", wide, wide)
        shape = [1 if i in axes else n for i, n in enumerate(w.shape)]
        norms = xp.sqrt(squares.astype(np.float64, copy=False)).reshape(shape)
        scale = self._desired(xp, norms) / (config.epsilon() + norms)
        return scale.astype(w.dtype, copy=False)


class MaxNorm(_NormConstraint):
    """Each weight vector along `axis` (a Dense kernel's axis 0: a unit's incoming
    weights; None: the whole weight) scaled down to a Euclidean norm of at most max_value
    (Keras' MaxNorm)."""

    _numbers = ("max_value",)

    def __init__(self, max_value=2, axis=0):
        self.max_value = max_value
        self.axis = axis

    def _desired(self, xp, norms):
        return xp.minimum(norms, self.max_value)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(_NormConstraint):
    """Each weight vector's norm along `axis` moved towards [min_value, max_value]: to
    rate * clip(norm, min, max) + (1 - rate) * norm (rate 1: into the interval at once)."""

    _numbers = ("min_value", "max_value", "rate")

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis
        self.check_shape((), None)  # (max below min: named now)

    def check_shape(self, shape, weight):
        if self.max_value < self.min_value:  # (set so later, or at once)
            raise ValueError(f"MinMaxNorm: max_value ({self.max_value!r}) is below min_value "
                             f"({self.min_value!r})")
        if weight is not None:
            super().check_shape(shape, weight)

    def _desired(self, xp, norms):
        return self.rate * xp.clip(norms, self.min_value, self.max_value) + \
            (1 - self.rate) * norms

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


class UnitNorm(_NormConstraint):
    """Each weight vector along `axis` scaled to norm 1 (Keras' UnitNorm)."""

    def __init__(self, axis=0):
        self.axis = axis

    def _desired(self, xp, norms):
        return 1.0

    def get_config(self):
        return {"axis": self.axis}


class NonNeg(Constraint):
    """Negative weights set to 0 (Keras' NonNeg)."""

    def __call__(self, w):
        return array_module(w).maximum(w, w.dtype.type(0))

    def _project_in_place(self, w, weight):
        array_module(w).maximum(w, w.dtype.type(0), out=w)


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


_OWN_CALLS = (_NormConstraint.__call__, NonNeg.__call__)


def apply(param):
    """Project the parameter's values with its constraint, in place (after an update)."""
    constraint = param.constraint
    w = param.value
    if type(constraint).__call__ in _OWN_CALLS:  # pynn's, not a subclass's projection
        constraint._project_in_place(w, param.name)  # (which checks the shape)
        return
    constraint.check_shape(w.shape, param.name)  # (its axis may have been set since)
    projected = constraint(w)
    if projected is w:
        return
    shape = tuple(getattr(projected, "shape", None) or np.shape(projected))
    if shape != tuple(w.shape):  # (a scalar would broadcast silently)
        raise ValueError(f"constraint {constraint!r} of weight {param.name!r} returned an "
                         f"array of shape {shape}, not the weight's {tuple(w.shape)}")
    w[...] = param.backend.asarray(projected, w.dtype)


def deserialize(config, custom_objects=None):
    """The constraint a config (serialize's, or Keras') or a name describes, a class of your own
    from custom_objects={name: class} (Keras' deserialize)."""
    return _custom.deserialize_with(get, config, custom_objects, "constraint")
