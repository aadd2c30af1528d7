"""Layers, one family per file."""

from .activation import Activation, Input, InputLayer
from .base import Layer, Parameter
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNormalization
from .reshape import Flatten

_REGISTRY = {cls.__name__: cls for cls in (Dense, Activation, Dropout, BatchNormalization,
                                            Flatten, InputLayer)}


def get_class(name, custom_objects=None):
    """The layer class called `name` (registered layers and `custom_objects` only)."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if name not in _REGISTRY:
        raise ValueError(f"unknown layer class {name!r}; known: {', '.join(_REGISTRY)}; a "
                         f"custom layer needs custom_objects={{{name!r}: {name}}}")
    return _REGISTRY[name]


__all__ = ["Activation", "BatchNormalization", "Dense", "Dropout", "Flatten", "Input",
           "InputLayer", "Layer", "Parameter", "get_class"]
