"""Keras' `keras.models` names: `Model` (the functional form), `Sequential`, `load_model`,
`save_model`, `clone_model`, `model_from_json`."""

from __future__ import annotations

from .functional import Model
from .model import Sequential
from .saving import load_model, model_from_json

__all__ = ["Model", "Sequential", "clone_model", "load_model", "model_from_json", "save_model"]


def save_model(model, filepath, overwrite=True):
    """model.save(filepath, overwrite) (Keras' function form)."""
    model.save(filepath, overwrite=overwrite)


def clone_model(model, input_tensors=None, clone_function=None, call_function=None,
                recursive=False):
    """A new model with the same layers' settings and freshly initialized weights; a
    compiled model's clone is compiled alike (as Keras 3): a new optimizer of the same
    settings (no state), the same loss and metrics, on the same backend.

    clone_function (Keras'): called with each layer but the Input, it returns the clone's
    layer: a new one (e.g. `type(layer).from_config({**layer.get_config(), ...})` with
    settings changed) or the layer itself, then shared by both models. recursive: no
    effect (a Sequential's layers hold no models); input_tensors and call_function belong
    to Keras' functional API, which pynn has not."""
    if not isinstance(model, Sequential):
        raise TypeError(f"clone_model: expected a pynn Sequential model, got "
                        f"{type(model).__name__}")
    for name, value in (("input_tensors", input_tensors), ("call_function", call_function)):
        if value is not None:
            raise NotImplementedError(f"clone_model: {name} belongs to Keras' functional "
                                      f"API, which pynn has not (a Sequential's clone takes "
                                      f"its inputs as the model does)")
    if clone_function is not None and not callable(clone_function):
        raise TypeError(f"clone_model: clone_function must be callable (a layer -> its "
                        f"clone's layer), got {clone_function!r}")
    from .custom_objects import custom_object_scope
    from .layers import InputLayer, Layer
    from .saving import _compile_arguments, compile_settings, user_objects

    objects = user_objects(model)
    if clone_function is None:
        clone = Sequential.from_config(model.get_config(), custom_objects=objects)
    else:
        layers = []
        for layer in model.layers:
            made = (InputLayer.from_config(layer.get_config()) if type(layer) is InputLayer
                    else clone_function(layer))
            if not isinstance(made, Layer):
                raise TypeError(f"clone_model: clone_function returned {made!r} for layer "
                                f"{layer.name!r}, not a pynn layer")
            layers.append(made)
        clone = Sequential(layers, name=model.name)
        if model.built and not clone.built:  # (built lazily: its layers name no input)
            clone.build((None, *model.input_shape))
    if model.compiled and model.optimizer is not None and model.loss is not None:
        with custom_object_scope(objects), \
                model.optimizer.function_rate_aside() as rate_function:
            arguments = _compile_arguments(compile_settings(model))
        if rate_function is not None:  # a function of the step: the same one
            arguments["optimizer"].learning_rate = rate_function
        clone.compile(**arguments, backend=model.backend.name)
    return clone
