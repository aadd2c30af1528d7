"""Keras' activation layers by class: ReLU, LeakyReLU, ELU and Softmax, with Keras 3's
arguments and defaults (LeakyReLU's negative slope is 0.3 as a layer, 0.2 as a function, as
in Keras). Each is an Activation, trained by the native engine as one."""

from __future__ import annotations

import numbers
import warnings

from .. import activations as act_mod
from .activation import Activation
from .base import check_last_axis, keras_build_arguments, last_axis


def _number(owner, name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0 or \
            value == float("inf"):
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class _KerasActivation(Activation):
    """An Activation configured by Keras' arguments (its config holds them, not the
    activation's spec)."""

    def _keras_arguments(self):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {**config, **self._keras_arguments()}


class ReLU(_KerasActivation):
    """Keras' ReLU layer: max(x, 0); `negative_slope` makes it leaky, `max_value=6` caps it
    (relu6), one or the other. A threshold other than 0, other caps and a capped leaky ReLU
    have no pynn kernel: refused."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(_relu_spec(max_value, negative_slope, threshold), **kwargs)
        self._arguments = (max_value, negative_slope, threshold)

    # Keras' attributes; setting one sets the activation computed (and what files store)
    max_value = property(lambda self: _number("ReLU", "max_value", self._arguments[0], True),
                         lambda self, v: self._set(0, v), doc="The cap (6 or None).")
    negative_slope = property(lambda self: float(self._arguments[1]),
                              lambda self, v: self._set(1, v), doc="The slope below 0.")
    threshold = property(lambda self: float(self._arguments[2]),
                         lambda self, v: self._set(2, v), doc="Where it switches (0).")

    def _set(self, i, value):
        arguments = list(self._arguments)
        arguments[i] = value
        self.activation = _relu_spec(*arguments)  # checked first
        self._arguments = tuple(arguments)

    def _keras_arguments(self):
        return {"max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold}


def _relu_spec(max_value, negative_slope, threshold):
    max_value = _number("ReLU", "max_value", max_value, allow_none=True)
    slope = _number("ReLU", "negative_slope", negative_slope)
    threshold = _number("ReLU", "threshold", threshold)
    if threshold != 0:
        raise ValueError(f"ReLU: threshold={threshold:g} is not supported (pynn's relu kernels "
                         f"switch at 0)")
    if max_value is not None and (max_value != 6 or slope != 0):
        raise ValueError(f"ReLU: max_value={max_value:g}"
                         f"{f' with negative_slope={slope:g}' if slope else ''} is not "
                         f"supported; max_value=6 alone is relu6")
    return (act_mod.relu6 if max_value is not None else
            act_mod.leaky_relu_with(slope) if slope else act_mod.relu)


class LeakyReLU(_KerasActivation):
    """Keras' LeakyReLU layer: x, or negative_slope * x below 0 (default 0.3, Keras'; the
    older `alpha=` is taken with Keras' deprecation warning)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("LeakyReLU: argument `alpha` is deprecated (Keras 3); use "
                          "`negative_slope`", UserWarning, stacklevel=2)
        super().__init__(act_mod.leaky_relu_with(
            _number("LeakyReLU", "negative_slope", negative_slope)), **kwargs)

    @property
    def negative_slope(self):
        """The slope below 0 (setting it sets the activation)."""
        return self.activation.param

    @negative_slope.setter
    def negative_slope(self, value):
        self.activation = act_mod.leaky_relu_with(_number("LeakyReLU", "negative_slope", value))

    def _keras_arguments(self):
        return {"negative_slope": self.negative_slope}


class ELU(_KerasActivation):
    """Keras' ELU layer: x, or alpha * (exp(x) - 1) below 0 (default alpha 1.0)."""

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(act_mod.elu_with(_number("ELU", "alpha", alpha)), **kwargs)

    @property
    def alpha(self):
        """The scale below 0 (setting it sets the activation)."""
        return self.activation.param

    @alpha.setter
    def alpha(self, value):
        self.activation = act_mod.elu_with(_number("ELU", "alpha", value))

    def _keras_arguments(self):
        return {"alpha": self.alpha}


class Softmax(_KerasActivation):
    """Keras' Softmax layer over the last axis (`axis=-1`, or that axis' index: 1 for
    (batch, features) inputs)."""

    def __init__(self, axis=-1, **kwargs):
        axis = last_axis("Softmax", axis, "computes softmax over")
        super().__init__(act_mod.softmax, **kwargs)
        self.axis = axis

    axis_by_index = True

    def build(self, input_shape, backend=None, dtype=None):
        input_shape, backend, dtype = keras_build_arguments(input_shape, backend, dtype)
        check_last_axis(f"Softmax {self.name!r}", self.axis, input_shape,
                        "computes softmax over")
        super().build(input_shape, backend, dtype)

    def _keras_arguments(self):
        return {"axis": self.axis}


# The activation layers the native engine and the ONNX exporter know (exact types: a
# user's subclass may compute something else).
ACTIVATION_LAYERS = (Activation, ReLU, LeakyReLU, ELU, Softmax)
