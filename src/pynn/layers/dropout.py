"""Dropout: during training, zero each input with probability `rate` and scale the survivors by
1 / (1 - rate) (inverted dropout, so inference is the identity and needs no rescaling).

Masks are counter-based (csrc/math/dropout.h): the mask of a training step is a pure function
of the layer's `seed`, the step and the element's position, identical on every backend and in
the native engine. `seed` defaults to a draw from pynn's generator (so `pynn.set_seed` makes
runs reproducible) and is saved with the model; the model sets `step` to its optimizer's
iteration count before each training pass, so a resumed run continues the same masks.
"""

from __future__ import annotations

import inspect
import numbers

from .. import config
from .base import Layer


class RandomLayer(Layer):
    """A layer whose training passes draw random values from its `seed` and `step` (Dropout,
    GaussianNoise, GaussianDropout, AlphaDropout): the model sets `step` to its optimizer's
    count before each pass, so both training paths and a resumed run draw the same values.
    seed defaults to a draw from pynn's generator (pynn.set_seed reproduces runs) and is
    saved."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        if seed is None:
            seed = int(config.rng().integers(0, 2**63 - 1))
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
                or not 0 <= seed < 2**64:
            raise ValueError(f"{type(self).__name__}: seed must be an integer in [0, 2**64), "
                             f"got {seed!r}")
        self.seed = int(seed)
        self.step = 0  # training passes so far; each draws the values of its step

    def get_config(self):
        """The layer's settings with its seed (a subclass adds its own to these); not the
        seed of a subclass whose constructor takes none (it fixes its own)."""
        config = super().get_config()
        if "seed" in inspect.signature(type(self).__init__).parameters:
            config["seed"] = self.seed
        return config


def _rate(rate):
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
        raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r} (a rate of 1 would "
                         f"drop every value: the layer's output all zeros in training, nothing "
                         f"learned through it; Keras allows it, pynn refuses it)")
    return float(rate)


class Dropout(RandomLayer):
    """Inverted dropout: in training, each input is zeroed with probability `rate` (0 <= rate
    < 1) and the survivors scaled by 1 / (1 - rate); at inference the identity. seed: the
    masks' seed, an integer in [0, 2**64) (default: drawn from pynn's generator, so
    pynn.set_seed reproduces runs); saved with the model, and the step follows the
    optimizer's count, so a resumed run continues the same masks. noise_shape (Keras' masks
    shared along some axes) is not supported: anything but None raises
    NotImplementedError (every value gets its own mask entry)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):  # Keras' order
        if noise_shape is not None:  # refused, not ignored: masks shared along axes differ
            raise NotImplementedError(f"Dropout: noise_shape={noise_shape!r} is not supported "
                                      f"by pynn (each value gets its own mask entry)")
        _rate(rate)  # (before a seed is drawn)
        super().__init__(seed, **kwargs)
        self.rate = rate

    def __setattr__(self, name, value):
        if name == "rate":  # set later too (a schedule of its own): checked as at first
            value = _rate(value)
        super().__setattr__(name, value)

    def forward(self, x, training=False, logits=False):
        if not training:  # (a training step's mask, pending on another thread, stays)
            return x
        if self.rate == 0:
            self._cache = None
            return x
        mask = self.backend.dropout_mask(x.shape, self.rate, x.dtype, self.seed, self.step)
        self.step += 1
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
