"""Normalisation of each sample (each position of a sequence) over its own features, the same
in training and inference, as Keras' layers: LayerNormalization, y = (x - mean) / sqrt(var +
epsilon) * gamma + beta, and RMSNormalization, y = x / sqrt(mean(x^2) + epsilon) * scale.
They run on every backend through its array operations, and in the native engine (the cpu
backend) where it runs a BatchNormalization: on the inputs, or before or after a hidden
Dense's activation (not with a penalty on their weights, nor on multi-axis samples)."""

from __future__ import annotations

import numbers

import numpy as np

from .. import constraints, initializers, regularizers
from .base import Layer, as_flag, check_last_axis, keras_build_arguments, last_axis


def _check(owner, axis, epsilon):
    """(axis, epsilon), checked."""
    axis = last_axis(owner, axis, "normalises")
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or \
            not 0 < epsilon < float("inf"):
        raise ValueError(f"{owner}: epsilon must be a finite number > 0, got {epsilon!r}")
    return axis, float(epsilon)


def _row_mean(xp, a, acc):
    """a.mean(axis=-1, keepdims=True, dtype=acc): for NumPy its sum divided by the count, as
    numpy's mean computes it (same bits) without its Python wrapper (~4 us a call on the
    small batches these layers see); other array modules through their own mean."""
    if xp is np:
        return np.add.reduce(a, axis=-1, dtype=acc, keepdims=True) / a.shape[-1]
    return a.mean(axis=-1, keepdims=True, dtype=acc)


def _column_sum(xp, a, acc):
    """a.sum(axis=0, dtype=acc) (numpy's without its Python wrapper)."""
    if xp is np:
        return np.add.reduce(a, axis=0, dtype=acc)
    return a.sum(axis=0, dtype=acc)


class _RowNormalization(Layer):
    """x_hat = (x - row mean, when centred) / sqrt(row mean of squares + epsilon), then
    times the gain and plus the shift where they exist (the subclasses' weights)."""

    centred = True
    axis_by_index = True

    def _gain_and_shift(self):
        raise NotImplementedError

    def forward(self, x, training=False, logits=False):
        xp = self.backend.xp
        # row statistics summed in double for float32 (as BatchNormalization's): a float32
        # sum drifts for features far from zero
        acc = "float64" if x.dtype == "float32" else x.dtype
        d = x - _row_mean(xp, x, acc) if self.centred else x
        # squares in the accumulator's type: float32's overflow past |x| ~ 1.8e19 (the
        # uncentred RMSNormalization squares x itself), as the engine's do not
        inv = (1 / xp.sqrt(_row_mean(xp, xp.multiply(d, d, dtype=acc), acc) + self.epsilon))
        inv = inv.astype(x.dtype)
        x_hat = d.astype(x.dtype, copy=False) * inv
        gain, shift = self._gain_and_shift()
        y = x_hat if gain is None else x_hat * gain.value
        if shift is not None:
            y = y + shift.value
        if training:  # (inference leaves a training step's pending on another thread alone)
            self._cache = (x_hat, inv)
        return y.astype(x.dtype, copy=False)

    def backward(self, dy, need_input_grad=True, logits=False):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__} {self.name!r}: backward without a "
                               f"training forward")
        x_hat, inv = self._cache
        self._cache = None
        xp = self.backend.xp
        acc = "float64" if dy.dtype == "float32" else dy.dtype
        rows = (-1, dy.shape[-1])
        gain, shift = self._gain_and_shift()
        if gain is not None and gain.trainable:
            gain.grad = _column_sum(xp, (dy * x_hat).reshape(rows), acc).astype(dy.dtype)
        if shift is not None and shift.trainable:
            shift.grad = _column_sum(xp, dy.reshape(rows), acc).astype(dy.dtype)
        if not need_input_grad:
            return None
        g = dy if gain is None else dy * gain.value
        # through the row's statistics, as batch normalisation's over the batch:
        # inv * (g - mean(g) - x_hat mean(g x_hat)), without mean(g) when not centred
        mean_gx = _row_mean(xp, g * x_hat, acc).astype(g.dtype)
        dx = g - x_hat * mean_gx
        if self.centred:
            dx = dx - _row_mean(xp, g, acc).astype(g.dtype)
        return (inv * dx).astype(dy.dtype, copy=False)


class LayerNormalization(_RowNormalization):
    """Keras' LayerNormalization over the last axis (`axis=-1`, or that axis' index: 1 for
    (batch, features) inputs; another raises ValueError): epsilon (1e-3), center / scale
    (whether beta / gamma exist).
    beta_initializer ("zeros") and gamma_initializer ("ones"): any initializer name, config
    or object (pynn.initializers), for the weights' starting values. beta_regularizer and
    gamma_regularizer (None): a penalty on the weight (pynn.regularizers, e.g. "l2") added to
    the loss while it trains. beta_constraint and gamma_constraint (None): a projection
    after each update (pynn.constraints, e.g. "non_neg"). All saved with the model. Keras 3 deprecated
    `rms_scaling=True` (it scaled by the variance, not the root mean square): it raises
    ValueError; use RMSNormalization."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, *,
                 rms_scaling=False, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.epsilon = _check("LayerNormalization", axis, epsilon)
        if as_flag(self.name, "rms_scaling", rms_scaling):
            raise ValueError("LayerNormalization: rms_scaling=True is deprecated in Keras 3 "
                             "(it scales by the variance, not the root mean square) and not "
                             "supported; use pynn.layers.RMSNormalization")
        self.center = as_flag(self.name, "center", center)
        self.scale = as_flag(self.name, "scale", scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = self.beta = None

    def build(self, input_shape, backend=None, dtype=None):
        input_shape, backend, dtype = keras_build_arguments(input_shape, backend, dtype)
        check_last_axis(f"LayerNormalization {self.name!r}", self.axis, input_shape,
                        "normalises")
        super().build(input_shape, backend, dtype)
        self._params, self._weight_regularizers = [], []
        n = (int(input_shape[-1]),)
        if self.scale:
            self.gamma = self.add_weight("gamma", None, backend, dtype, shape=n,
                                         initializer=self.gamma_initializer)
        if self.center:
            self.beta = self.add_weight("beta", None, backend, dtype, shape=n,
                                        initializer=self.beta_initializer)

    def _gain_and_shift(self):
        return self.gamma, self.beta

    def regularized(self):
        """[(parameter, regularizer)]: gamma's and beta's penalties as the layer's attributes
        say now (set after build too, as Dense's), and those of a subclass's add_weight."""
        pairs = [(self.gamma, self.gamma_regularizer), (self.beta, self.beta_regularizer)]
        return [(p, r) for p, r in pairs if p is not None and r is not None] + \
            super().regularized()

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": constraints.serialize(self.beta_constraint),
                "gamma_constraint": constraints.serialize(self.gamma_constraint)}


class RMSNormalization(_RowNormalization):
    """Keras' RMSNormalization over the last axis: x / sqrt(mean(x^2) + epsilon) * scale
    (epsilon 1e-6, a learnt `scale` per feature starting at 1), no centring; axis=-1 or
    the last axis' index (another raises ValueError)."""

    centred = False

    def __init__(self, axis=-1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.epsilon = _check("RMSNormalization", axis, epsilon)
        self.scale = None

    def build(self, input_shape, backend=None, dtype=None):
        input_shape, backend, dtype = keras_build_arguments(input_shape, backend, dtype)
        check_last_axis(f"RMSNormalization {self.name!r}", self.axis, input_shape,
                        "normalises")
        super().build(input_shape, backend, dtype)
        self._params = []
        self.scale = self.add_weight("scale", None, backend, dtype,
                                     shape=(int(input_shape[-1]),), initializer=initializers.Ones())

    def _gain_and_shift(self):
        return self.scale, None

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}
