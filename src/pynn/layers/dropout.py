"""Dropout: during training, zero each input with probability `rate` and scale the survivors by
1 / (1 - rate) (inverted dropout, so inference is the identity and needs no rescaling).

Masks come from the backend's generator seeded by pynn.set_seed, so runs are reproducible.
"""

from __future__ import annotations

import numbers

from .base import Layer


class Dropout(Layer):
    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x, training=False, logits=False):
        if not training or self.rate == 0:
            self._cache = None
            return x
        mask = self.backend.dropout_mask(x.shape, self.rate, x.dtype)
        self._cache = mask
        return x * mask

    def backward(self, dy, need_input_grad=True, logits=False):
        mask = self._cache
        self._cache = None
        if not need_input_grad:
            return None
        return dy if mask is None else dy * mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}
