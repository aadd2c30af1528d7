"""Every public class, function, method (classmethods and staticmethods too) and property of
the API modules says what it is: the API reference is rendered from these docstrings by the
pdoc command in CONTRIBUTING.md, which must name every API module that pynn's __all__ does
not (pdoc renders only the submodules a package's __all__ lists)."""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re

import pytest

MODULES = ["pynn", "pynn.activations", "pynn.batch_sources", "pynn.callbacks", "pynn.config",
           "pynn.initializers", "pynn.layers", "pynn.losses", "pynn.metrics", "pynn.models",
           "pynn.ops", "pynn.optimizers", "pynn.regularizers", "pynn.schedules", "pynn.saving",
           "pynn.model", "pynn.onnx", "pynn.custom_objects", "pynn.sklearn", "pynn.info",
           "pynn.archive", "pynn.keras_files", "pynn.keras_writer", "pynn.utils"]
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _shown(module):
    """What pdoc renders of a module: its __all__, else its public names."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [k for k in vars(module) if not k.startswith("_")]
    return {k: getattr(module, k) for k in names if hasattr(module, k)}


@pytest.mark.parametrize("name", MODULES)
def test_public_names_have_docstrings(name):
    if name == "pynn.sklearn":
        pytest.importorskip("sklearn")
    module = importlib.import_module(name)
    assert module.__doc__, f"module {name} has no docstring"
    missing = []
    for key, obj in _shown(module).items():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or \
                not getattr(obj, "__module__", "").startswith("pynn"):
            continue
        if inspect.isclass(obj):
            if not vars(obj).get("__doc__"):  # its own: an inherited one describes the base
                missing.append(key)
            for attr, member in vars(obj).items():
                if attr.startswith("_") and attr != "__init__" or attr == "__init__" and \
                        not inspect.signature(obj).parameters:
                    continue
                documented = (inspect.isfunction(member) or
                              isinstance(member, (property, classmethod, staticmethod)))
                # getattr: a classmethod's bound method, a staticmethod's function (getdoc
                # then finds an overridden method's docstring on a base class too)
                if documented and not inspect.getdoc(getattr(obj, attr)) and \
                        attr != "__init__":
                    missing.append(f"{key}.{attr}")
        elif not obj.__doc__:
            missing.append(key)
    assert not missing, f"{name}: no docstring on {missing}"


def test_the_reference_command_names_every_api_module():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    command = re.search(r"^.*\bpdoc (pynn[^\n#]*)", text, re.M)
    assert command, "CONTRIBUTING.md has no pdoc command"
    named = set(command.group(1).split())
    pynn = importlib.import_module("pynn")
    # pdoc renders the submodules whose names pynn.__all__ lists (by name: pynn.info is
    # listed, though the attribute is the function); every other module is named
    expected = {"pynn"} | {name for name in MODULES
                          if name != "pynn" and name.split(".", 1)[1] not in pynn.__all__}
    assert expected <= named, f"the pdoc command leaves out {sorted(expected - named)}"


def test_each_activation_function_documents_its_formula():
    """help(pynn.activations.relu) showed the Spec class's text: each module-level
    activation carries its own formula."""
    from pynn import activations

    for name in activations.NAMES:
        spec = getattr(activations, name)
        assert spec.__doc__ != activations.Spec.__doc__ and spec.__doc__.startswith(name), name
    assert activations.swish.__doc__ == activations.silu.__doc__


@pytest.mark.parametrize("module,base", [("pynn.metrics", "Metric"),
                                         ("pynn.callbacks", "Callback"),
                                         ("pynn.layers", "Layer"),
                                         ("pynn.schedules", "LearningRateSchedule")])
def test_every_public_class_of_a_kind_is_in_all(module, base):
    """`from pynn.metrics import *` and the API pages go by __all__: ten loss-mean metrics the
    README names (LogCoshError, Poisson, ...) were left out of it."""
    mod = importlib.import_module(module)
    kind = getattr(mod, base)
    missing = [name for name, obj in vars(mod).items()
               if not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, kind)
               and obj.__module__.startswith(module) and name not in mod.__all__]
    assert not missing, f"{module}.__all__ lacks {missing}"
