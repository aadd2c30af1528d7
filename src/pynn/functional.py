"""Keras' functional style of defining a model, for the models pynn builds:

    inputs = pynn.Input((784,))
    x = pynn.Dense(256, activation="relu")(inputs)
    outputs = pynn.Dense(10, activation="softmax")(x)
    model = pynn.Model(inputs, outputs)

Every pynn layer takes one input, so such a graph from one Input to one output is a chain of
layers: pynn.Model makes the Sequential of that chain (the same layer objects, so the same
weights). A model called on a symbolic tensor adds its layers to the chain, sharing them, as
a nested Keras model shares its weights.
"""

from __future__ import annotations

import abc
import weakref

from . import config
from .backend import get_backend
from .layers import InputLayer, Layer
from .layers.base import unique_name
from .model import Sequential

__all__ = ["Model", "SymbolicTensor"]


class SymbolicTensor:
    """What a layer called on an Input (or on another SymbolicTensor) returns, as Keras'
    KerasTensor: no values, the output's `shape` (batch axis first, None) and dtype, and
    the chain of layers that computes it from the Input."""

    def __init__(self, layer, source, sample_shape):
        self.layer = layer            # the layer whose output this is
        self.source = source          # what it was called on: an InputLayer or a tensor
        self.sample_shape = tuple(sample_shape)

    @property
    def shape(self):
        return (None, *self.sample_shape)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def dtype(self):
        return config.floatx()

    @property
    def name(self):
        return self.layer.name

    def chain(self):
        """(the Input, the layers from it to this tensor, in order)."""
        layers, node = [], self
        while isinstance(node, SymbolicTensor):
            layers.append(node.layer)
            node = node.source
        return node, layers[::-1]

    def __array__(self, *args, **kwargs):
        raise TypeError(f"a symbolic tensor (the output of layer {self.layer.name!r} in a "
                        f"model being defined) holds no values; pynn.Model(inputs, outputs) "
                        f"makes the model, which then runs on arrays")

    def __repr__(self):
        return f"<SymbolicTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


def is_symbolic(x):
    """Whether x stands for a functional definition's tensor: an Input or a layer's output."""
    return isinstance(x, (SymbolicTensor, InputLayer))


def sample_shape_of(x):
    return x.sample_shape if isinstance(x, SymbolicTensor) else x.input_shape


class _WeakRegistry:
    """object -> the values recorded for it, in order, holding none of them: keyed by id,
    since a layer of one's own may be unhashable (a dataclass); an entry goes with its
    object, a value when it goes. `first` is the earliest value still alive (Keras'
    layer.output is its first call's)."""

    def __init__(self):
        self._entries = {}

    def add(self, obj, value):
        key, entries = id(obj), self._entries
        entry = entries.get(key)
        if entry is None or entry[0]() is not obj:
            entry = entries[key] = (weakref.ref(obj, lambda _, key=key: entries.pop(key, None)),
                                    [])
        values = [ref for ref in entry[1] if ref() is not None]  # (the dead ones dropped)
        if not any(ref() is value for ref in values):
            values.append(weakref.ref(value))
        entry[1][:] = values

    def first(self, obj):
        entry = self._entries.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return None
        return next((v for v in (ref() for ref in list(entry[1])) if v is not None), None)


# layer.output (Keras': its first call's): the tensor of a layer's first call in a definition
# that still lives, else its output in the first model it was built in that still lives
_CALLED = _WeakRegistry()    # layer -> its SymbolicTensors
_BUILT_IN = _WeakRegistry()  # layer -> the Sequentials it was built in


def remember_model(model):
    """After a model's build: its layers' output may be read in it (layer.output)."""
    for layer in model._layers:
        _BUILT_IN.add(layer, model)


def model_input(model):
    """model.input: its Input, or for a model given its input shape otherwise (input_shape=
    on its first layer, or built) an Input of that shape kept for it, as Keras makes one."""
    layers = model._layers
    if layers and isinstance(layers[0], InputLayer):
        return layers[0]
    shape = model.input_shape
    if shape is None:
        raise AttributeError(f"model {model.name!r} does not know its input shape yet, and "
                             f"so has no defined input or output")
    kept = model.__dict__.get("_implicit_input")
    if kept is None or kept.input_shape != tuple(shape):
        # (named after the model: reading model.input takes no name from later Inputs)
        kept = model.__dict__["_implicit_input"] = InputLayer(shape=shape,
                                                              name=f"{model.name}_input")
    return kept


def model_output(model, upto=None):
    """The SymbolicTensor of the model's layers from its Input (up to the layer `upto`), for
    model.output and layer.output: shapes only, nothing built or recorded."""
    x = model_input(model)
    layers = [layer for layer in model._layers if layer is not x]
    end = next((i + 1 for i, layer in enumerate(layers) if layer is upto), len(layers))
    for layer in layers[:end]:
        try:
            x = SymbolicTensor(layer, x, layer.compute_output_shape(sample_shape_of(x)))
        except Exception as exc:  # (an AttributeError: hasattr says False)
            raise AttributeError(f"model {model.name!r}: layer {layer.name!r} gives no "
                                 f"output shape ({type(exc).__name__}: {exc})") from exc
    return x


def layer_output(layer):
    """layer.output: its first call's SymbolicTensor in a functional definition, or its
    output in the first model it was built in, from that model's Input (those still
    alive); an Input is its own."""
    if isinstance(layer, InputLayer):
        return layer
    tensor = _CALLED.first(layer)
    if tensor is not None:
        return tensor
    model = _BUILT_IN.first(layer)
    if model is not None and any(each is layer for each in model._layers):
        return model_output(model, upto=layer)
    raise AttributeError(f"layer {layer.name!r} has no output yet: it is known once the "
                         f"layer is called on pynn.Input(...) (or a layer's output), or built "
                         f"in a model")


def call_layer(layer, x, training):
    """layer(x) on a symbolic x: the layer built for x's samples (now, as Keras builds it, so
    a shape that does not fit fails at this line), and its output's SymbolicTensor."""
    if training:
        raise NotImplementedError(f"layer {layer.name!r}: a fixed training={training!r} in a "
                                  f"model's definition (pynn's layers run in the mode of the "
                                  f"call: fit trains, predict infers)")
    if isinstance(layer, InputLayer):
        raise TypeError(f"an Input ({layer.name!r}) is not called: it starts a model "
                        f"(pynn.Model(inputs, outputs)) or a Sequential")
    if type(layer).__call__ is not Layer.__call__:
        raise TypeError(f"layer {layer.name!r} ({type(layer).__name__}) overrides __call__, "
                        f"which a model does not run: pynn models run forward(x, training, "
                        f"logits)")
    shape = sample_shape_of(x)
    layer._build_for(shape, layer.backend or get_backend(), config.floatx())
    tensor = SymbolicTensor(layer, x, layer.compute_output_shape(shape))
    _CALLED.add(layer, tensor)
    return tensor


def call_model(model, x, training):
    """model(x) on a symbolic x: its layers (but its Input) called in turn, shared."""
    shape = sample_shape_of(x)
    if model.input_shape is not None and tuple(model.input_shape) != tuple(shape):
        raise ValueError(f"model {model.name!r} takes inputs of shape "
                         f"{(None, *model.input_shape)}, got a tensor of shape "
                         f"{(None, *shape)}")
    if not model._compute_layers:
        raise ValueError(f"model {model.name!r} has no layers to call")
    for layer in model._compute_layers:
        x = call_layer(layer, x, training)
    return x


def _one(what, value, kinds):
    """The one tensor in `value` (a tensor, or a list, tuple or dict of one)."""
    items = list(value.values()) if isinstance(value, dict) else \
        list(value) if isinstance(value, (list, tuple)) else [value]
    if len(items) != 1:
        raise NotImplementedError(f"Model: pynn models have one input and one output; got "
                                  f"{len(items)} {what}")
    if not isinstance(items[0], kinds):
        names = " or ".join(kind.__name__ for kind in kinds)
        raise TypeError(f"Model: {what} must be {names} (pynn.Input(...), and a layer "
                        f"called on it), got {items[0]!r}")
    return items[0]


def chain_model(inputs, outputs, name=None, trainable=True):
    """The Sequential of the layers that compute `outputs` from `inputs`."""
    source = _one("inputs", inputs, (InputLayer,))
    output = _one("outputs", outputs, (SymbolicTensor, InputLayer))
    if output is source:
        raise ValueError("Model: outputs is the Input itself; a model needs layers between")
    start, layers = output.chain() if isinstance(output, SymbolicTensor) else (output, [])
    if start is not source:
        raise ValueError(f"Model: outputs are not computed from inputs: they come from the "
                         f"Input {start.name!r}, not {source.name!r}")
    seen = set()
    for layer in layers:
        if id(layer) in seen:
            raise ValueError(f"Model: layer {layer.name!r} is called twice on the way to the "
                             f"outputs; a pynn model runs each layer once (a Keras model "
                             f"may reuse one)")
        seen.add(id(layer))
    return Sequential([source, *layers], name=name or unique_name("functional"),
                      trainable=trainable)


class Model(abc.ABC):
    """Keras' `Model(inputs, outputs, name=None, trainable=True)`, for a chain of layers from
    one Input to one output (any graph of pynn's layers is one): the Sequential of those
    layers, sharing them. isinstance(model, pynn.Model) holds for every pynn model, as
    Keras' Sequential is a Model. A model of one's own (a subclass with call() and
    train_step()) is Keras' subclassing API, which pynn has not: put layers of one's own in
    a Sequential (README: Custom layers)."""

    def __new__(cls, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        if kwargs:
            raise TypeError(f"Model: unexpected argument(s) {', '.join(sorted(kwargs))}")
        if inputs is None or outputs is None:
            raise TypeError("Model: give inputs and outputs (pynn has Keras' functional "
                            "form, Model(inputs, outputs), not a model subclassed from "
                            "Model; README: Custom layers)")
        return chain_model(inputs, outputs, name=name, trainable=trainable)

    @staticmethod
    def from_config(config, custom_objects=None):
        """The model get_config() described (Keras' Model.from_config): a Sequential's
        config, or Keras' of a Sequential or of a Functional chain."""
        return Sequential.from_config(config, custom_objects)

    def __init_subclass__(cls, **kwargs):
        raise TypeError(f"class {cls.__name__}(pynn.Model): pynn has no subclassed models "
                        f"(Keras' call() and train_step() of one's own); put layers of your "
                        f"own, with forward and backward, in a pynn.Sequential (README: "
                        f"Custom layers)")


Model.register(Sequential)
