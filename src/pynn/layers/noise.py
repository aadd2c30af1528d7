"""Keras' noise regularization layers: in training, GaussianNoise adds N(0, stddev) noise,
GaussianDropout multiplies by N(1, sqrt(rate / (1 - rate))) noise (N(mean, standard
deviation)) and AlphaDropout sets values to SELU's negative saturation; at inference all three
are the identity. The noise of a training pass is a function
of the layer's seed and step (NumPy's generator on the host, copied to the backend), so runs
are reproducible and resumable as Dropout's. They train layer by layer (the native engine
skips them only at inference)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .dropout import RandomLayer


class _NoiseLayer(RandomLayer):
    def _generator(self):
        """This pass's generator (a function of seed and step); the next pass draws anew."""
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        return rng

    def _normal(self, x):
        """Standard normal draws of x's shape and dtype for this pass, on x's backend."""
        return self.backend.asarray(self._generator().standard_normal(x.shape), x.dtype)


def _check_unit(owner, name, value, upper_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            0 <= value < 1 if upper_open else 0 <= value <= 1):
        raise ValueError(f"{owner}: {name} must be in [0, {'1)' if upper_open else '1]'}, got "
                         f"{value!r}")
    return float(value)


class GaussianNoise(_NoiseLayer):
    """In training x + N(0, stddev) noise (0 <= stddev <= 1, Keras' range); the identity at
    inference. seed: the noise's seed, an integer in [0, 2**64) (default: drawn from pynn's
    generator, so pynn.set_seed reproduces runs); saved with the model, and each training
    pass draws the noise of its step (the optimizer's count), so a resumed run continues the
    same noise."""

    def __init__(self, stddev, seed=None, **kwargs):
        _check_unit("GaussianNoise", "stddev", stddev)  # (before a seed is drawn)
        super().__init__(seed, **kwargs)
        self.stddev = stddev

    def __setattr__(self, name, value):
        if name == "stddev":  # set later too: checked as at first (-5 gave no noise)
            value = _check_unit("GaussianNoise", "stddev", value)
        super().__setattr__(name, value)

    def forward(self, x, training=False, logits=False):
        if training and self.stddev > 0:
            return x + self._normal(x) * x.dtype.type(self.stddev)
        return x

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy if need_input_grad else None

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


class _ScalingNoise(_NoiseLayer):
    """A noise layer of a `rate` in [0, 1) whose training pass (_noisy) scales x by a factor
    per value, kept in _cache, and adds a constant: its gradient is that factor. Rate 0 and
    inference leave x as it is."""

    def __init__(self, rate, seed=None, **kwargs):
        _check_unit(type(self).__name__, "rate", rate, upper_open=True)  # (before the seed)
        super().__init__(seed, **kwargs)
        self.rate = rate

    def __setattr__(self, name, value):
        if name == "rate":  # set later too: checked as at first (1.0 divided by zero)
            value = _check_unit(type(self).__name__, "rate", value, upper_open=True)
        super().__setattr__(name, value)

    def forward(self, x, training=False, logits=False):
        if not training:  # (a training step's noise, pending on another thread, stays)
            return x
        self._cache = None
        return x if self.rate == 0 else self._noisy(x)

    def _noisy(self, x):
        raise NotImplementedError

    def backward(self, dy, need_input_grad=True, logits=False):
        factor, self._cache = self._cache, None
        if not need_input_grad:
            return None
        return dy if factor is None else dy * factor

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class GaussianDropout(_ScalingNoise):
    """In training x * N(1, sqrt(rate / (1 - rate))) noise (0 <= rate < 1): dropout's mean
    and variance without zeros; the identity at inference. seed: as GaussianNoise's (an
    integer in [0, 2**64), default drawn from pynn's generator; saved with the model)."""

    def _noisy(self, x):
        stddev = x.dtype.type(math.sqrt(self.rate / (1 - self.rate)))
        self._cache = 1 + self._normal(x) * stddev
        return x * self._cache


# SELU's constants (Klambauer et al. 2017), as Keras' AlphaDropout spells them
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


class AlphaDropout(_ScalingNoise):
    """Keras' AlphaDropout, dropout for SELU networks: in training each value is set, with
    probability `rate` (0 <= rate < 1), to SELU's negative saturation -alpha * scale, and the
    result is scaled and shifted so that inputs of mean 0 and variance 1 keep them; the
    identity at inference. seed: as Dropout's (an integer in [0, 2**64), default drawn from
    pynn's generator; saved with the model). noise_shape (Keras' masks shared along axes) is
    not supported: anything but None raises NotImplementedError."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):  # Keras' order
        if noise_shape is not None:  # refused, not ignored: masks shared along axes differ
            raise NotImplementedError(f"AlphaDropout: noise_shape={noise_shape!r} is not "
                                      f"supported by pynn (each value is dropped on its own)")
        super().__init__(rate, seed, **kwargs)

    def _noisy(self, x):
        rate = self.rate
        # kept values become a * x + b, dropped ones a * alpha' + b (Keras' formula)
        saturation = -_SELU_ALPHA * _SELU_SCALE
        a = ((1 - rate) * (1 + rate * saturation ** 2)) ** -0.5
        b = -a * saturation * rate
        kept = self.backend.asarray(self._generator().random(x.shape) >= rate, x.dtype)
        t = x.dtype.type
        self._cache = kept * t(a)  # (a kept value is a * x + b, rounded as Keras rounds it)
        return x * self._cache + (t(b) + (1 - kept) * t(a * saturation))

