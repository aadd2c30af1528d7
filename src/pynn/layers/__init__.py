"""Layers, one family per file."""

from .. import custom_objects as _custom
from .activation import Activation, Input, InputLayer
from .activity_regularization import ActivityRegularization
from .activation_layers import ACTIVATION_LAYERS, ELU, LeakyReLU, ReLU, Softmax
from .base import Layer, Parameter
from .dense import Dense
from .dropout import Dropout, RandomLayer
from .feature_normalization import Normalization
from .layer_normalization import LayerNormalization, RMSNormalization
from .noise import AlphaDropout, GaussianDropout, GaussianNoise
from .normalization import BatchNormalization
from .prelu import PReLU
from .rescaling import Rescaling
from .reshape import Flatten, Identity, Reshape

# The layers that work on the last axis alone: they take (batch, ..., features) inputs
LAST_AXIS_LAYERS = (Dense, Dropout, GaussianNoise, GaussianDropout, AlphaDropout,
                    Normalization, LayerNormalization, RMSNormalization, *ACTIVATION_LAYERS)

# The layers that work element by element: they take inputs of any shape, 1-D included
ELEMENTWISE_LAYERS = (Activation, Dropout, GaussianNoise, GaussianDropout, AlphaDropout,
                      ActivityRegularization, Identity, *ACTIVATION_LAYERS)

_REGISTRY = {cls.__name__: cls for cls in (Dense, Dropout, AlphaDropout, GaussianDropout,
                                            ActivityRegularization,
                                            GaussianNoise, PReLU, BatchNormalization, Flatten,
                                            Reshape, Identity, Rescaling, InputLayer,
                                            LayerNormalization,
                                            Normalization, RMSNormalization, *ACTIVATION_LAYERS)}


def get_class(name, custom_objects=None, custom=False, registered_name=None):
    """The layer class called `name`: pynn's registered one, unless the file marked it a
    user's (`custom`); a user's from `custom_objects` (or an enclosing custom_object_scope),
    by its register_keras_serializable name where the file gives one."""
    with _custom.custom_object_scope(custom_objects):
        return _custom.find({"class_name": name, "custom": custom,
                             "registered_name": registered_name}, _REGISTRY.get, "layer")


def serialize(layer):
    """Keras' layers.serialize: the {'class_name', 'config'} dict (marked "custom" for a
    class of yours) that deserialize turns back into the layer, without its weights, as
    Keras'."""
    if not isinstance(layer, Layer):
        raise TypeError(f"serialize: expected a layer, got {type(layer).__name__}")
    return _custom.describe(layer)


def deserialize(config, custom_objects=None):
    """Keras' layers.deserialize: the (unbuilt) layer serialize's dict describes, or a Keras
    3 layer's ({'module', 'class_name', 'config', ...}); a class of yours from
    custom_objects ({name: class}) or registered."""
    if not (isinstance(config, dict) and isinstance(config.get("class_name"), str)
            and isinstance(config.get("config", {}), dict)):
        raise TypeError(f"deserialize: a layer is described by a dict with 'class_name' and "
                        f"'config' (as layers.serialize gives), got {config!r}")
    if str(config.get("module") or "").startswith("keras"):  # Keras' own description
        from ..keras_files import _layer_entry

        config = {**config, **_layer_entry(config, 0, "deserialize")}
    cls = get_class(config["class_name"], custom_objects, custom=config.get("custom", False),
                    registered_name=config.get("registered_name"))
    with _custom.custom_object_scope(custom_objects):  # (its initializers, regularizers)
        return cls.from_config(dict(config.get("config") or {}))


__all__ = ["ACTIVATION_LAYERS", "ELEMENTWISE_LAYERS", "LAST_AXIS_LAYERS", "Activation",
           "ActivityRegularization",
           "AlphaDropout", "BatchNormalization", "Dense", "Dropout", "ELU", "Flatten",
           "GaussianDropout", "GaussianNoise", "Identity", "Input", "InputLayer", "Layer",
           "LayerNormalization", "LeakyReLU", "Normalization", "Parameter", "PReLU",
           "RandomLayer", "ReLU", "Rescaling", "Reshape", "RMSNormalization", "Softmax",
           "deserialize", "get_class", "serialize"]


def __getattr__(name):
    # Keras layers pynn leaves out: a clearer AttributeError than the bare one
    if name == "Lambda":
        raise AttributeError("module 'pynn.layers' has no attribute 'Lambda': pynn has no "
                             "autodiff, so a function needs its gradient too: subclass "
                             "pynn.layers.Layer with forward and backward (README: Custom "
                             "layers)")
    if name.startswith(("Conv", "LSTM", "GRU", "SimpleRNN", "Embedding", "MaxPool",
                        "AveragePool", "GlobalAverage", "GlobalMax", "MultiHeadAttention")):
        raise AttributeError(f"module 'pynn.layers' has no attribute {name!r}: pynn builds "
                             f"dense networks (Dense, normalization, dropout and activation "
                             f"layers, Flatten)")
    raise AttributeError(f"module 'pynn.layers' has no attribute {name!r}")

