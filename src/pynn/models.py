"""Keras' `keras.models` names: `Sequential`, `load_model`, `save_model`, `clone_model`,
`model_from_json`."""

from __future__ import annotations

from .model import Sequential
from .saving import load_model, model_from_json

__all__ = ["Sequential", "clone_model", "load_model", "model_from_json", "save_model"]


def save_model(model, filepath, overwrite=True):
    """model.save(filepath, overwrite) (Keras' function form)."""
    model.save(filepath, overwrite=overwrite)


def clone_model(model):
    """A new model with the same layers' settings and freshly initialized weights; a
    compiled model's clone is compiled alike (as Keras 3): a new optimizer of the same
    settings (no state), the same loss and metrics, on the same backend."""
    if not isinstance(model, Sequential):
        raise TypeError(f"clone_model: expected a pynn Sequential model, got "
                        f"{type(model).__name__}")
    from .custom_objects import custom_object_scope
    from .saving import _compile_arguments, compile_settings, user_objects

    objects = user_objects(model)
    clone = Sequential.from_config(model.get_config(), custom_objects=objects)
    if model.compiled and model.optimizer is not None and model.loss is not None:
        with custom_object_scope(objects), \
                model.optimizer.function_rate_aside() as rate_function:
            arguments = _compile_arguments(compile_settings(model))
        if rate_function is not None:  # a function of the step: the same one
            arguments["optimizer"].learning_rate = rate_function
        clone.compile(**arguments, backend=model.backend.name)
    return clone
