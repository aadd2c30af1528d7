"""Keras' `keras.models` names: `Sequential`, `load_model`, `save_model`, `clone_model`."""

from __future__ import annotations

from .model import Sequential
from .saving import load_model

__all__ = ["Sequential", "clone_model", "load_model", "save_model"]


def save_model(model, filepath, overwrite=True):
    """model.save(filepath, overwrite) (Keras' function form)."""
    model.save(filepath, overwrite=overwrite)


def clone_model(model):
    """A new model with the same layers' settings and freshly initialized weights, not
    compiled (as Keras' clone_model)."""
    if not isinstance(model, Sequential):
        raise TypeError(f"clone_model: expected a pynn Sequential model, got "
                        f"{type(model).__name__}")
    from .saving import user_objects

    return Sequential.from_config(model.get_config(), custom_objects=user_objects(model))
