"""Dense: y = activation(x @ kernel + bias), kernel (in, out), bias (out,), as in Keras.

The forward pass is one GEMM with the bias and activation fused into its epilogue. For the
backward pass it keeps x and y (and the pre-activation z only where the activation's
derivative needs it: activations.NEEDS_PRE_ACTIVATION): dz = dy * f'(.), d kernel = x^T dz,
d bias = column sums of dz, dx = dz kernel^T (skipped for the first layer).
"""

from __future__ import annotations

import numbers
import warnings

from .. import activations as act_mod
from .. import config
from .. import constraints, initializers, regularizers
from .base import Layer, as_flag, keras_build_arguments



class Dense(Layer):
    """A fully connected layer: y = activation(x @ kernel + bias), kernel (inputs, units),
    bias (units,), as Keras' Dense.

    units: the output width. activation: a name ('relu', ...), a pynn.activations.Spec, or
    None (linear). use_bias: whether to add a bias. kernel_initializer / bias_initializer:
    a name ('glorot_uniform', 'zeros', ...) or a pynn.initializers object.
    kernel_regularizer / bias_regularizer: None, a name ('l1', 'l2', 'l1_l2') or a
    pynn.regularizers object, its penalty added to the loss. kernel_constraint /
    bias_constraint: None, a name ('max_norm', 'non_neg', 'unit_norm', 'min_max_norm') or a
    pynn.constraints object, projecting the weight after each update. Also the base Layer's name,
    trainable, input_shape / input_dim (dtype is accepted for Keras' sake; pynn's float
    type is global: pynn.set_floatx). Inputs are (batch, features), or (batch, ...,
    features), where the layer applies to the last axis as Keras' Dense does (each position
    of a sequence alike); for images put a Flatten first."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        # (Keras' order: a constraint given ninth is the kernel's)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f"Dense: units must be a positive integer, got {units!r}")
        self.units = int(units)  # numpy integers too
        self.activation = act_mod.get(activation)
        # Keras warns too; not again each time a file rebuilds the layer (save, load, copy)
        if self.units == 1 and self.activation.name == "softmax" and \
                not config.loading_weights_now():
            warnings.warn(f"Dense {self.name!r}: a softmax over 1 unit always outputs 1.0, so "
                          f"the layer learns nothing; for two classes use one 'sigmoid' unit "
                          f"(binary_crossentropy) or 2 softmax units", UserWarning, stacklevel=2)
        self.use_bias = as_flag(f"Dense {self.name!r}", "use_bias", use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.kernel = self.bias = None
        self._cache = None

    def build(self, input_shape, backend=None, dtype=None):
        input_shape, backend, dtype = keras_build_arguments(input_shape, backend, dtype)
        super().build(input_shape, backend, dtype)
        self._params = []
        fan_in = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", None, backend, dtype, shape=(fan_in, self.units),
                                      initializer=self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", None, backend, dtype, shape=(self.units,),
                                        initializer=self.bias_initializer)

    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:-1], self.units)

    @property
    def output_activation(self):
        """The activation's name: a loss may take the pre-activations instead (softmax or
        sigmoid with its cross-entropy, computed from logits)."""
        return self.activation.name

    def forward(self, x, training=False, logits=False):
        b = self.backend
        bias = self.bias.value if self.use_bias else None
        act = self.activation
        lead = x.shape[:-1]  # (batch, ...): more axes are rows too, as Keras applies Dense
        x = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x  # to the last axis
        if logits or act.name in act_mod.NEEDS_PRE_ACTIVATION:
            z = b.gemm(x, self.kernel.value, bias=bias)
            y = z if logits else b.activation_forward(act.name, z, act.param)
        else:
            z = None
            y = b.gemm(x, self.kernel.value, bias=bias, activation=act.name, act_param=act.param)
        if training:
            self._cache = (x, z, y, lead)
        return y.reshape(*lead, self.units) if len(lead) > 1 else y

    def backward(self, dy, need_input_grad=True, logits=False):
        if self._cache is None:
            raise RuntimeError(f"Dense {self.name!r}: backward called without a training forward")
        b = self.backend
        x, z, y, lead = self._cache
        self._cache = None
        if len(lead) > 1:
            dy = dy.reshape(-1, self.units)
        act = self.activation
        if logits or act.name == "linear":
            dz = dy
        else:
            dz = b.activation_backward(act.name, act.param, z, y, dy)
        # each weight by its own flag (a frozen kernel left its trainable bias untrained, or
        # stepping on a gradient left from an earlier run); a frozen one keeps no gradient
        self.kernel.grad = b.gemm(x, dz, trans_a=True) if self.kernel.trainable else None
        if self.use_bias:
            self.bias.grad = b.bias_grad(dz) if self.bias.trainable else None
        if need_input_grad:
            dx = b.gemm(dz, self.kernel.value, trans_b=True)
            return dx.reshape(*lead, dx.shape[-1]) if len(lead) > 1 else dx
        return None

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": self.activation.get_config(), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint)}

    def regularized(self):
        """[(parameter, regularizer)] for the penalties this layer adds to the loss."""
        pairs = [(self.kernel, self.kernel_regularizer)]
        if self.use_bias:
            pairs.append((self.bias, self.bias_regularizer))
        # and those of weights a subclass added with add_weight(regularizer=)
        return [(p, r) for p, r in pairs if r is not None] + super().regularized()
