"""Rescaling: Keras' preprocessing layer x * scale + offset (pixels in [0, 255] to [0, 1]
with scale=1/255), in training and at inference, with no weights."""

from __future__ import annotations

import numpy as np

from .base import Layer


def _factor(name, value):
    """A number, or per-feature numbers (a sequence or 1-D array, or one of shape (1, n): the
    last axis's size, or one), as floats; Keras' description of a numpy array
    ({"class_name": "__numpy__"}) too."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        value = (value.get("config") or {}).get("value")
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"Rescaling: {name} must be a number or per-feature numbers, got "
                        f"{value!r}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"Rescaling: {name} must be a number or per-feature numbers, got "
                        f"{value!r}") from None
    if array.ndim > 1 and all(d == 1 for d in array.shape[:-1]):
        array = array.reshape(-1)  # (1, n), as Keras broadcasts it over (batch, n)
    if array.ndim > 1 or array.size == 0:
        raise ValueError(f"Rescaling: {name} must be a number or a 1-D sequence of "
                         f"per-feature numbers, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"Rescaling: {name} must be finite, got {value!r}")
    return float(array) if array.ndim == 0 else tuple(float(v) for v in array)


class Rescaling(Layer):
    """x * scale + offset (Keras' Rescaling, computed so, in floatx), in training and at
    inference. scale, offset: numbers, or per-feature numbers broadcast over the last axis
    (its size, or one). No weights; the input's gradient is dy * scale. The native engine
    runs it as the first layer (before the first Dense); elsewhere it trains layer by
    layer."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset

    def __setattr__(self, name, value):
        if name in ("scale", "offset"):  # set later too: checked as at first
            value = _factor(name, value)
            built = self.__dict__.get("input_shape")
            if built:
                self._check_features(name, value, built[-1])
        super().__setattr__(name, value)

    def _check_features(self, name, value, features):
        if isinstance(value, tuple) and len(value) not in (1, features):
            raise ValueError(f"Rescaling {self.name!r}: {name} has {len(value)} values for "
                             f"inputs of {features} features on the last axis")

    def build(self, input_shape, backend=None, dtype=None):
        super().build(input_shape, backend, dtype)
        for name in ("scale", "offset"):
            self._check_features(name, getattr(self, name), self.input_shape[-1]
                                 if self.input_shape else 1)

    def _array(self, value, like):
        return self.backend.asarray(np.asarray(value), like.dtype) if isinstance(value, tuple) \
            else like.dtype.type(value)

    def forward(self, x, training=False, logits=False):
        return x * self._array(self.scale, x) + self._array(self.offset, x)

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy * self._array(self.scale, dy) if need_input_grad else None

    def get_config(self):
        value = {n: list(v) if isinstance(v, tuple) else v
                 for n, v in (("scale", self.scale), ("offset", self.offset))}
        return {**super().get_config(), **value}
