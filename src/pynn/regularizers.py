"""Weight penalties added to the loss, with Keras' names and formulas:
L1(l1): l1 * sum(|w|);  L2(l2): l2 * sum(w^2) (gradient 2 * l2 * w);  L1L2(l1, l2): both.
`Dense(kernel_regularizer="l2")` uses Keras' default factor 0.01, "l1" too; "l1_l2" (a name
Keras 3 refuses) 0.01 for both. Keras 3's l1_l2() is its L1L2 class, 0 and 0 by default (no
penalty), as here; so is the name "L1L2" (which warns).
"""

from __future__ import annotations

import numbers
import warnings

from . import config
from . import custom_objects as _custom
from .data import sum_of


def _factor(name, value, default=0.0):
    if value is None:  # (Keras takes None for the default factor)
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


class Regularizer(_custom.ByConfig, _custom.AutoConfig):
    """Base class: l1 * sum(|w|) + l2 * sum(w^2) and its gradient."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = _factor("l1", l1), _factor("l2", l2)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        config.settings_changed()  # a native engine holds l1 and l2

    def penalty(self, xp, w):
        """The penalty of the weight array w (a float); xp is the array module of w's
        backend (numpy or cupy). A regularizer of your own overrides penalty and
        add_gradient."""
        total = 0.0
        if self.l1:
            total += self.l1 * sum_of(xp.abs, w)
        if self.l2:  # (a float32 weight of 3e20 squared is summed in float64)
            total += self.l2 * sum_of(xp.square, w)
        return total

    def add_gradient(self, xp, w, grad):
        """grad += d penalty / d w, in place (sign(0) = 0 for the L1 kink)."""
        if self.l1:
            grad += self.l1 * xp.sign(w)
        if self.l2:
            grad += (2 * self.l2) * w

    def __call__(self, w):
        """The penalty of the weight array w, as Keras' regularizer(w) (a float)."""
        import numpy as np

        from .backend.arrays import array_module, is_gpu_array

        if not is_gpu_array(w) and not isinstance(w, np.ndarray):  # a list, a tensor: its
            w = np.asarray(w, dtype=np.float64)  # values (w * w of a list was a TypeError)
        return self.penalty(array_module(w), w)

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {"l1": self.l1, "l2": self.l2}

    @classmethod
    def from_config(cls, config):
        """The regularizer get_config describes (Keras' from_config)."""
        return cls(**config)


class L1(Regularizer):
    """l1 * sum(|w|)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=_factor("l1", l1, 0.01))

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum(w^2)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=_factor("l2", l2, 0.01))

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w^2)."""

    pass


def l1(l1=0.01):
    """L1 regularizer (Keras' function form)."""
    return L1(l1)


def l2(l2=0.01):
    """L2 regularizer (Keras' function form)."""
    return L2(l2)


def l1_l2(l1=0.0, l2=0.0):
    """L1L2 regularizer (Keras 3's l1_l2, its L1L2 class: no penalty unless given)."""
    return L1L2(l1, l2)


_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier):
    """A Regularizer from None, a name ('l1', 'l2', 'l1_l2': factors of 0.01 each, as
    Keras' l1() and l2()), a config dict or a Regularizer."""
    if isinstance(identifier, Regularizer) and _custom.keras_method_only(
            type(identifier), "__call__", ("penalty", "add_gradient")):
        # Keras' way: its __call__ is the penalty; pynn's training never calls it (no
        # penalty at all, or a missing l1 when __init__ skipped the base's)
        raise TypeError(f"{type(identifier).__name__}: a pynn regularizer gives its penalty "
                        f"and gradient, penalty(xp, w) and add_gradient(xp, w, grad), as "
                        f"pynn.regularizers.L1L2 does; pynn has no autodiff for __call__")
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        name = identifier.lower()
        if name == "l1l2":  # Keras 3's L1L2(): 0 and 0, no penalty; said rather than silent
            from .callbacks import _user_stacklevel

            warnings.warn(f"regularizer {identifier!r} is Keras 3's L1L2(), which penalises "
                          f"nothing; 'l1_l2' gives 0.01 for both, L1L2(l1, l2) your factors",
                          UserWarning, stacklevel=_user_stacklevel())
            return L1L2()
        make = {"l1": lambda: L1(0.01), "l2": lambda: L2(0.01),
                "l1_l2": lambda: L1L2(0.01, 0.01)}.get(name)
        if make is None:
            raise ValueError(f"unknown regularizer {identifier!r}; known: l1, l2, l1_l2")
        return make()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return _custom.rebuild(identifier, lambda name: _CLASSES.get(name) or _BY_NAME.get(name),
                               "regularizer")
    if callable(identifier) and not isinstance(identifier, type):
        # Keras' fn(w) -> penalty: pynn would need its gradient
        raise ValueError(f"cannot use the function {getattr(identifier, '__name__', identifier)!r}"
                         f" as a regularizer: pynn has no autodiff, so a regularizer of your own "
                         f"is a pynn.regularizers.Regularizer subclass giving its penalty and "
                         f"gradient (penalty and add_gradient)")
    raise ValueError(f"cannot interpret {identifier!r} as a regularizer (a name, or a "
                     f"Regularizer instance)")


def serialize(reg):
    """The {'class_name', 'config'} dict that `get` turns back into the regularizer (None stays
    None)."""
    return None if reg is None else _custom.describe(reg)


def deserialize(config, custom_objects=None):
    """The regularizer a config (serialize's, or Keras') or a name describes, a class of your own
    from custom_objects={name: class} (Keras' deserialize)."""
    return _custom.deserialize_with(get, config, custom_objects, "regularizer")
