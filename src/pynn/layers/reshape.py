"""Flatten: (batch, d1, d2, ...) -> (batch, d1 * d2 * ...), row-major, as Keras' Flatten."""

from __future__ import annotations

import math

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
