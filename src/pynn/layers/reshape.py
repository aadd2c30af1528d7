"""Flatten: (batch, d1, d2, ...) -> (batch, d1 * d2 * ...), row-major, as Keras' Flatten;
Reshape: (batch, ...) -> (batch, *target_shape), row-major, as Keras' Reshape; Identity: the
input as it is, as Keras' Identity."""

from __future__ import annotations

import math
import numbers

from .base import Layer


class Flatten(Layer):
    """Collapses every axis but the batch axis (C order), so image-shaped samples feed a
    Dense layer; no weights. Its backward restores the input's shape. data_format: Keras'
    argument; None or "channels_last" (the same flattening) only: "channels_first" would
    reorder the axes first, which pynn does not, so it raises NotImplementedError."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):  # Keras would reorder the axes first
            raise NotImplementedError(f"Flatten: data_format={data_format!r} is not supported "
                                      f"by pynn (samples flatten in C order, channels last)")

    def compute_output_shape(self, input_shape):
        if input_shape and input_shape[0] is None:  # Keras' form: the batch axis first
            return (None,) + self.compute_output_shape(tuple(input_shape)[1:])
        return (math.prod(int(d) for d in input_shape),)  # exact: int64 wrapped silently

    def forward(self, x, training=False, logits=False):
        if x.ndim < 2:
            raise ValueError(f"Flatten {self.name!r} expects inputs of shape (batch, ...), "
                             f"got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (-1 fails for 0 samples)

    def backward(self, dy, need_input_grad=True, logits=False):
        if not need_input_grad:
            return None
        return dy.reshape((dy.shape[0],) + tuple(self.input_shape))


class Reshape(Layer):
    """Keras' Reshape: each sample to `target_shape` (a tuple without the batch axis, as
    many values in C order; one entry may be -1, the size that makes the counts agree). No
    weights; its backward restores the input's shape. Trained layer by layer, except a
    leading Reshape to one axis, which the native engine reads as a Flatten."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        shape = (target_shape,) if isinstance(target_shape, numbers.Integral) else target_shape
        try:
            shape = tuple(shape)
        except TypeError:
            shape = None
        if not shape or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or
                            not (d >= 1 or d == -1) for d in shape) or \
                sum(d == -1 for d in shape) > 1:
            raise ValueError(f"Reshape: target_shape must be a tuple of sizes >= 1 (without "
                             f"the batch axis), at most one of them -1, got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in shape)

    def compute_output_shape(self, input_shape):
        if input_shape and input_shape[0] is None:  # Keras' form: the batch axis first
            return (None,) + self.compute_output_shape(tuple(input_shape)[1:])
        size = math.prod(int(d) for d in input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape and known and size % known == 0:
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if -1 not in self.target_shape and known == size:
            return self.target_shape
        raise ValueError(f"Reshape {self.name!r}: samples of shape {tuple(input_shape)} "
                         f"({size} values) cannot take the shape {self.target_shape}")

    def forward(self, x, training=False, logits=False):
        shape = self.compute_output_shape(x.shape[1:])
        return x.reshape((x.shape[0],) + shape)  # (-1 for the batch fails for 0 samples)

    def backward(self, dy, need_input_grad=True, logits=False):
        if not need_input_grad:
            return None
        return dy.reshape((dy.shape[0],) + tuple(self.input_shape))

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Identity(Layer):
    """Keras' Identity: the input as it is (a placeholder, e.g. for a layer switched off by
    a setting); no weights. The native engine skips it."""

    def forward(self, x, training=False, logits=False):
        return x

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy if need_input_grad else None
