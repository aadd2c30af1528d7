"""Layers, one family per file."""

from ..custom_objects import in_scope
from .activation import Activation, Input, InputLayer
from .base import Layer, Parameter
from .dense import Dense
from .dropout import Dropout
from .normalization import BatchNormalization
from .reshape import Flatten

_REGISTRY = {cls.__name__: cls for cls in (Dense, Activation, Dropout, BatchNormalization,
                                            Flatten, InputLayer)}


def get_class(name, custom_objects=None, custom=False):
    """The layer class called `name`: from `custom_objects` (or an enclosing
    custom_object_scope), else a registered layer unless the file marked it a user's
    (`custom`)."""
    objects = {**in_scope(), **(custom_objects or {})}
    if name in objects:
        return objects[name]
    if custom or name not in _REGISTRY:
        raise ValueError(f"unknown layer class {name!r}; known: {', '.join(_REGISTRY)}; a "
                         f"custom layer needs custom_objects={{{name!r}: {name}}}")
    return _REGISTRY[name]


__all__ = ["Activation", "BatchNormalization", "Dense", "Dropout", "Flatten", "Input",
           "InputLayer", "Layer", "Parameter", "get_class"]
