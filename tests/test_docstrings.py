"""Every public class and function of the API modules says what it is (the API reference is
rendered from these docstrings, see CONTRIBUTING.md)."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = ["pynn", "pynn.activations", "pynn.callbacks", "pynn.config", "pynn.initializers",
           "pynn.layers", "pynn.losses", "pynn.metrics", "pynn.ops", "pynn.optimizers",
           "pynn.regularizers", "pynn.schedules", "pynn.saving", "pynn.model", "pynn.onnx",
           "pynn.custom_objects"]


@pytest.mark.parametrize("name", MODULES)
def test_public_names_have_docstrings(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"module {name} has no docstring"
    missing = [key for key, obj in vars(module).items()
               if not key.startswith("_") and getattr(obj, "__module__", None) == name
               and (inspect.isclass(obj) or inspect.isfunction(obj)) and not obj.__doc__]
    assert not missing, f"{name}: no docstring on {missing}"
