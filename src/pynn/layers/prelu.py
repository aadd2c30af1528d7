"""PReLU: Keras' parametric ReLU, x above 0 and alpha * x below, with alpha a learnt weight
per input value (per sample position), or one per group of positions along `shared_axes`.

It trains layer by layer (the native engine has no kernel for a learnt slope: the model's
engine_reason says so); forward and backward are a few array operations on any backend.
"""

from __future__ import annotations

import numbers

from .. import constraints, initializers, regularizers
from .base import Layer, keras_build_arguments


def _shared_axes(value):
    """Keras' shared_axes: None, an axis or a list (or tuple) of axes (1 is the first after
    the batch axis), as a list in the given order (Keras' config keeps it)."""
    if value is None:
        return None
    axes = [value] if isinstance(value, numbers.Integral) else value
    if not isinstance(axes, (list, tuple)) or not axes or any(
            isinstance(a, bool) or not isinstance(a, numbers.Integral) or a < 1 for a in axes):
        raise ValueError(f"PReLU: shared_axes must be an axis or a list of axes >= 1 (axis 0 "
                         f"is the batch axis, always shared), got {value!r}")
    return [int(a) for a in axes]


class PReLU(Layer):
    """Keras' PReLU: f(x) = x for x > 0, alpha * x otherwise, with alpha learnt.

    alpha_initializer ("zeros", Keras'; the layer starts as a ReLU): any initializer name,
    config or object. alpha_regularizer (None): a penalty on alpha (e.g. "l2") added to the
    loss. shared_axes (None): axes of the input (1 = the first after the batch axis) along
    which one alpha is shared, e.g. shared_axes=[1] on (batch, steps, features) inputs
    learns one slope per feature. alpha's shape is the sample shape with 1 on the shared
    axes. alpha_constraint (None): a projection of alpha after each update
    (pynn.constraints, e.g. "non_neg")."""

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None,
                 alpha_constraint=None, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        self.shared_axes = shared_axes  # (checked by __setattr__)
        self.alpha = None

    def __setattr__(self, name, value):
        if name == "shared_axes":  # (alpha's shape follows from it)
            value = _shared_axes(value)
            if self.__dict__.get("built") and value != self.__dict__.get("shared_axes"):
                raise ValueError(f"PReLU {self.name!r}: shared_axes cannot change once the "
                                 f"layer is built (alpha has its shape); make a new layer")
        super().__setattr__(name, value)

    def build(self, input_shape, backend=None, dtype=None):
        input_shape, backend, dtype = keras_build_arguments(input_shape, backend, dtype)
        shape = [int(d) for d in input_shape]
        for axis in self.shared_axes or ():
            if axis > len(shape):
                raise ValueError(f"PReLU {self.name!r}: shared axis {axis} is not an axis of "
                                 f"inputs (batch, {', '.join(map(str, shape))}): the axes "
                                 f"after the batch axis are 1 to {len(shape)}")
            shape[axis - 1] = 1
        super().build(input_shape, backend, dtype)
        self._params, self._weight_regularizers = [], []
        self.alpha = self.add_weight("alpha", None, backend, dtype, shape=tuple(shape),
                                     initializer=self.alpha_initializer)

    def regularized(self):
        """[(alpha, its regularizer)] as the attribute says now (set after build too, as
        Dense's), and those of a subclass's add_weight(regularizer=)."""
        own = [(self.alpha, self.alpha_regularizer)] \
            if self.alpha is not None and self.alpha_regularizer is not None else []
        return own + super().regularized()

    def forward(self, x, training=False, logits=False):
        xp = self.backend.xp
        y = xp.where(x > 0, x, x * self.alpha.value)
        if training:  # (inference leaves a training step's pending on another thread alone)
            self._cache = x
        return y

    def backward(self, dy, need_input_grad=True, logits=False):
        x, self._cache = self._cache, None
        if x is None:
            raise RuntimeError(f"PReLU {self.name!r}: backward called without a training "
                               f"forward")
        xp = self.backend.xp
        alpha = self.alpha.value
        if self.alpha.trainable:
            # summed over the batch axis and the shared axes, in float64 for float32 (a sum
            # over every sample of a batch)
            shared = (0, *sorted(set(self.shared_axes or ())))
            acc = "float64" if dy.dtype == "float32" else dy.dtype
            grad = (dy * xp.minimum(x, 0)).sum(axis=shared, dtype=acc, keepdims=True)
            self.alpha.grad = grad.reshape(alpha.shape).astype(dy.dtype)
        if not need_input_grad:
            return None
        # 0 at x = 0, as Keras' relu(x) - alpha * relu(-x) under autodiff
        return xp.where(x > 0, dy, xp.where(x < 0, dy * alpha, 0).astype(dy.dtype, copy=False))

    def get_config(self):
        return {**super().get_config(),
                "alpha_initializer": initializers.serialize(self.alpha_initializer),
                "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
                "alpha_constraint": constraints.serialize(self.alpha_constraint),
                "shared_axes": self.shared_axes}
