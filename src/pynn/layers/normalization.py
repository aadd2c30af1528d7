"""BatchNormalization over the feature (last) axis, as in Keras: the statistics of each
feature over the batch and, for (batch, ..., features) inputs, every position.

Training: y = gamma * (x - mean_B) / sqrt(var_B + epsilon) + beta with the batch's mean and
(biased) variance, and moving_stat = momentum * moving_stat + (1 - momentum) * batch_stat.
Inference, and training of a frozen layer (trainable=False, Keras' fine-tuning rule): the
moving statistics instead. Weights in Keras' order: gamma, beta, moving_mean, moving_variance
(the last two are statistics: never trained, always saved).
"""

from __future__ import annotations

import numbers

from .. import constraints, initializers, regularizers
from .base import Layer, as_flag, keras_build_arguments


class BatchNormalization(Layer):
    """Batch normalization of each feature (the last axis) over the batch axis, and over
    the other axes of (batch, ..., features) inputs (e.g. every time step), as Keras'.

    In training: (x - batch mean) / sqrt(batch variance + epsilon) * gamma + beta, and the
    moving statistics move toward the batch's by (1 - momentum) each step; at inference (and
    in training while the layer is frozen) the moving statistics instead. momentum (0.99)
    and epsilon (1e-3) are Keras' defaults; center / scale: whether beta / gamma exist;
    axis: the features' (-1, or the last axis' index: 1 for (batch, features) inputs), first
    as in Keras' argument order. beta_initializer,
    gamma_initializer, moving_mean_initializer, moving_variance_initializer,
    beta_regularizer, gamma_regularizer: Keras' (a penalty trains layer by layer);
    beta_constraint, gamma_constraint: Keras' (pynn.constraints; layer by layer too).
    Keras 3's synchronized, renorm, renorm_clipping and renorm_momentum (its configs carry
    them) are taken at their defaults only (False, False, None, 0.99).
    Weights in Keras' order: gamma, beta, moving_mean, moving_variance."""

    axis_by_index = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, renorm=False, renorm_clipping=None,
                 renorm_momentum=0.99, synchronized=False, **kwargs):  # (Keras' order)
        for name, value, default in (("synchronized", synchronized, False),
                                     ("renorm", renorm, False),
                                     ("renorm_clipping", renorm_clipping, None),
                                     ("renorm_momentum", renorm_momentum, 0.99)):
            if value is not default and not (isinstance(value, numbers.Real) and
                                             value == default):  # refused, not ignored
                raise NotImplementedError(f"BatchNormalization: {name}={value!r} is not "
                                          f"supported by pynn (only Keras' default, "
                                          f"{default!r})")
        super().__init__(**kwargs)
        # Keras' initializers and penalties of the four weights (a penalty: layer by layer)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        # Keras' axis: the features'. -1, or the last axis counted from the batch axis (1 for
        # (batch, features), 2 for (batch, steps, features)), checked against the inputs in
        # build.
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or \
                not (axis == -1 or axis >= 1):
            raise ValueError(f"BatchNormalization: axis={axis!r}: pynn normalises the feature "
                             f"(last) axis: axis=-1, or its index (1 for (batch, features) "
                             f"inputs)")
        self.axis = int(axis)
        for name, value in (("momentum", momentum), ("epsilon", epsilon)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"BatchNormalization: {name} must be a number, got {value!r}")
        if not 0 <= momentum <= 1:  # (1: the moving statistics stay as they are, as Keras)
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1], got {momentum}")
        if not 0 < epsilon < float("inf"):
            raise ValueError(f"BatchNormalization: epsilon must be a finite number > 0, got "
                             f"{epsilon}")
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center = as_flag(self.name, "center", center)
        self.scale = as_flag(self.name, "scale", scale)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def build(self, input_shape, backend=None, dtype=None):
        input_shape, backend, dtype = keras_build_arguments(input_shape, backend, dtype)
        if self.axis not in (-1, len(input_shape)):
            raise ValueError(f"BatchNormalization {self.name!r}: axis={self.axis} is not the "
                             f"feature (last) axis of inputs of shape (batch, "
                             f"{', '.join(map(str, input_shape))}); pynn normalises the last "
                             f"axis (axis=-1 or {len(input_shape)})")
        super().build(input_shape, backend, dtype)
        self._params, self._weight_regularizers = [], []
        n = int(input_shape[-1])

        def weight(name, init, **kwargs):
            return self.add_weight(name, None, backend, dtype, shape=(n,), initializer=init,
                                   **kwargs)

        if self.scale:
            self.gamma = weight("gamma", self.gamma_initializer)
        if self.center:
            self.beta = weight("beta", self.beta_initializer)
        self.moving_mean = weight("moving_mean", self.moving_mean_initializer, statistic=True)
        self.moving_variance = weight("moving_variance", self.moving_variance_initializer,
                                      statistic=True)

    def forward(self, x, training=False, logits=False):
        # (batch, ..., features): every position of each feature is one more row of
        # statistics. The rows go to this class's own method, not self.forward: a subclass
        # wrapping forward must run once whatever the input's rank.
        rows = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x
        return BatchNormalization._forward_rows(self, rows, training).reshape(x.shape)

    def _forward_rows(self, x, training):
        use_batch = training and self.trainable
        if use_batch:
            # Sums in double, as the native engine (csrc/cpu/batchnorm.cpp): a float32 sum of
            # the rows drifted by several ulp for inputs far from zero (BatchNormalization on
            # raw features), 10x the engine's error at a mean/std of 1e3.
            xp = self.backend.xp
            acc = "float64" if x.dtype == "float32" else x.dtype
            mean = x.mean(axis=0, dtype=acc).astype(x.dtype)
            d = xp.subtract(x, mean, dtype=acc)  # one double temporary, squared in place
            xp.multiply(d, d, out=d)
            var = d.mean(axis=0).astype(x.dtype)
            m = self.momentum
            self.moving_mean.value *= m
            self.moving_mean.value += (1 - m) * mean
            self.moving_variance.value *= m
            self.moving_variance.value += (1 - m) * var
        else:
            mean, var = self.moving_mean.value, self.moving_variance.value
        inv_std = 1 / self.backend.xp.sqrt(var + self.epsilon)
        x_hat = (x - mean) * inv_std
        y = x_hat
        if self.scale:
            y = y * self.gamma.value
        if self.center:
            y = y + self.beta.value
        if training:  # (inference leaves a training step's pending on another thread alone)
            self._cache = (x_hat, inv_std, use_batch)
        return y.astype(x.dtype, copy=False)

    def backward(self, dy, need_input_grad=True, logits=False):
        if self._cache is None:
            raise RuntimeError(f"BatchNormalization {self.name!r}: backward without a "
                               f"training forward")
        rows = dy.reshape(-1, dy.shape[-1]) if dy.ndim > 2 else dy
        dx = BatchNormalization._backward_rows(self, rows, need_input_grad)
        return None if dx is None else dx.reshape(dy.shape)

    def _backward_rows(self, dy, need_input_grad):
        x_hat, inv_std, used_batch = self._cache
        self._cache = None
        # column sums in double, as the engine
        acc = "float64" if dy.dtype == "float32" else dy.dtype
        if self.scale and self.gamma.trainable:
            self.gamma.grad = (dy * x_hat).sum(axis=0, dtype=acc).astype(dy.dtype)
        if self.center and self.beta.trainable:
            self.beta.grad = dy.sum(axis=0, dtype=acc).astype(dy.dtype)
        if not need_input_grad:
            return None
        g = dy * self.gamma.value if self.scale else dy
        if not used_batch:  # moving statistics are constants
            return (g * inv_std).astype(dy.dtype, copy=False)
        # Through the batch mean and variance: dx = inv_std * (g - mean(g) - x_hat mean(g x_hat))
        mean_g = g.mean(axis=0, dtype=acc).astype(g.dtype)
        mean_gx = (g * x_hat).mean(axis=0, dtype=acc).astype(g.dtype)
        dx = inv_std * (g - mean_g - x_hat * mean_gx)
        return dx.astype(dy.dtype, copy=False)

    def regularized(self):
        """[(parameter, regularizer)]: gamma's and beta's penalties as the layer's attributes
        say now (set after build too, as Dense's; they were read once, at build), and those
        of weights a subclass added with add_weight(regularizer=)."""
        pairs = [(self.gamma, self.gamma_regularizer), (self.beta, self.beta_regularizer)]
        return [(p, r) for p, r in pairs if p is not None and r is not None] + \
            super().regularized()

    def get_config(self):
        config = {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                  "epsilon": self.epsilon, "center": self.center, "scale": self.scale}
        for name in ("beta_initializer", "gamma_initializer", "moving_mean_initializer",
                     "moving_variance_initializer"):
            config[name] = initializers.serialize(getattr(self, name))
        for name in ("beta_regularizer", "gamma_regularizer"):
            config[name] = regularizers.serialize(getattr(self, name))
        for name in ("beta_constraint", "gamma_constraint"):
            config[name] = constraints.serialize(getattr(self, name))
        return config

