"""Activation: applies an activation function to its input, as a layer of its own."""

from __future__ import annotations

import numbers
import warnings

from .. import activations as act_mod
from .base import Layer, sample_shape


class Activation(Layer):
    """An activation as a layer of its own: y = activation(x), the same names and Specs as
    Dense's activation= ('relu', 'softmax', pynn.activations.Spec("leaky_relu", 0.1), ...)."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = act_mod.get(activation)
        self._cache = None

    @property
    def output_activation(self):
        """The activation's name: a loss may take the pre-activations instead (softmax or
        sigmoid with its cross-entropy, computed from logits)."""
        return self.activation.name

    def forward(self, x, training=False, logits=False):
        if logits:
            y = x
        else:
            y = self.backend.activation_forward(self.activation.name, x, self.activation.param)
        if training:
            self._cache = (x, y)
        return y

    def backward(self, dy, need_input_grad=True, logits=False):
        if self._cache is None:
            raise RuntimeError(f"Activation {self.name!r}: backward without a training forward")
        x, y = self._cache
        self._cache = None
        if logits or not need_input_grad:
            return dy if need_input_grad else None
        a = self.activation
        return self.backend.activation_backward(a.name, a.param, x, y, dy)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation.get_config()}


class InputLayer(Layer):
    """Declares the input shape (without the batch axis); computes nothing. Made by `Input`;
    the shape is given once, as `shape`, Keras' `batch_shape` (batch axis first, its size
    ignored) or the older `input_shape`. batch_size is checked (a positive integer) and
    otherwise unused: any batch size runs. dtype must be the session's floatx if given."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None,
                 input_shape=None, sparse=None, ragged=None, input_tensor=None, optional=False,
                 **kwargs):
        if isinstance(sparse, (tuple, list)):  # Input(shape, batch_size, dtype, batch_shape)
            raise TypeError(f"Input: sparse={sparse!r}; the fourth argument is Keras' sparse "
                            f"(its order): give batch_shape= by keyword")
        for name, value in (("sparse", sparse), ("ragged", ragged), ("optional", optional)):
            if value not in (None, False):  # (Keras' defaults taken: False, or None)
                raise NotImplementedError(f"Input: {name}={value!r} is not supported (pynn "
                                          f"takes dense float arrays)")
        if input_tensor is not None:
            raise NotImplementedError("Input: input_tensor (a backend tensor to wrap) is not "
                                      "supported; pynn.Input(shape) declares the inputs")
        # Keras' other spellings of the shape: batch_shape (batch axis first) and the
        # older input_shape; batch_size is taken and unused (any batch size runs)
        given = [s for s in (shape, batch_shape, input_shape) if s is not None]
        if len(given) != 1:
            raise ValueError("Input: give the sample shape once: shape=(features,) (or "
                             "batch_shape=(None, features))")
        if batch_shape is not None:
            if isinstance(batch_shape, numbers.Integral) or len(batch_shape) < 2:
                raise ValueError(f"Input: batch_shape has the batch axis first, e.g. "
                                 f"(None, 3); got {batch_shape!r}")
            shape = tuple(batch_shape)[1:]
        shape = given[0] if batch_shape is None else shape
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
                batch_size, numbers.Integral) or batch_size < 1):
            raise ValueError(f"Input: batch_size must be a positive integer, got "
                             f"{batch_size!r}")
        kwargs["dtype"] = dtype
        shape = sample_shape("Input", shape)
        kwargs.setdefault("input_shape", shape)
        super().__init__(**kwargs)

    @property
    def shape(self):
        """The input's shape, batch axis first (None), as Keras' Input(...).shape."""
        return None if self.input_shape is None else (None, *self.input_shape)

    @property
    def ndim(self):
        """The number of axes of shape, the batch axis included, as Keras' Input(...).ndim."""
        shape = self.shape
        return None if shape is None else len(shape)

    def __getattr__(self, name):
        # (only for names the layer lacks) model.layers[0] is the Input in pynn, unlike
        # Keras 3: code written for Keras reaches for the first Dense's weights there
        if name in ("kernel", "bias", "units", "activation", "gamma", "beta"):
            raise AttributeError(f"{type(self).__name__} {self.name!r} has no {name}: "
                                 f"model.layers starts with the Input in pynn (unlike Keras "
                                 f"3), so the first Dense is model.layers[1]")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def trainable(self):
        """The Input has no weights: freezing it freezes nothing (and warns, since Keras 3
        code that froze model.layers[0] meant the first Dense, which here is
        model.layers[1])."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        Layer.trainable.fset(self, value)
        if not self._trainable:
            warnings.warn(f"layer {self.name!r} is the model's Input and has no weights: "
                          f"freezing it freezes nothing. In pynn model.layers starts with "
                          f"the Input (unlike Keras 3), so the first Dense is "
                          f"model.layers[1]", UserWarning, stacklevel=3)  # (via __setattr__)

    def forward(self, x, training=False, logits=False):
        return x

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy

    def get_config(self):
        config = super().get_config()
        config["shape"] = config.pop("input_shape")
        return config


def Input(shape=None, batch_size=None, dtype=None, sparse=None, ragged=None, batch_shape=None,
          name=None, tensor=None, optional=False):
    """Keras' `Input(shape=...)`: the first element of a Sequential declaring the input shape
    without the batch axis (a number n is (n,)), or batch_shape=(None, ...) with it (its
    batch size ignored). batch_size: accepted as in Keras (a positive integer) and unused,
    since the model runs any batch size. dtype, if given, must be the session's floatx.
    name: the layer's name (default "input_layer", numbered when taken, as Keras').
    sparse, ragged, tensor, optional: Keras' defaults are taken, others refused. Returns
    the InputLayer, which is model.layers[0] (its `shape` is Keras' (None, ...)), or
    which layers are called on in Keras' functional form (pynn.Model)."""
    return InputLayer(shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape,
                      name=name, sparse=sparse, ragged=ragged, input_tensor=tensor,
                      optional=optional)
