"""User classes and functions in model files: how a file names them, how loading finds them.

A model file names each component (layer, loss, optimizer, initializer, regularizer, metric)
by its class name, a metric function by its function name. pynn's own are found by that
name; a user's come from `custom_objects={name: class or function}` given to
`pynn.load_model` (or from an enclosing `custom_object_scope`), as in Keras. The file marks
a user's component ("custom": true), so one named like a pynn class is never rebuilt as
pynn's without a word.
"""

from __future__ import annotations

import contextlib
import threading

_local = threading.local()


def _stack():
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


@contextlib.contextmanager
def custom_object_scope(*objects):
    """Within it, loading finds these {name: class or function} (Keras' scope)."""
    merged = {}
    for mapping in objects:
        merged.update(mapping or {})
    _stack().append(merged)
    try:
        yield
    finally:
        _stack().pop()


def in_scope():
    """{name: object} of the enclosing scopes, the innermost winning."""
    merged = {}
    for mapping in _stack():
        merged.update(mapping)
    return merged


def is_custom(obj):
    """Whether a class or function is the user's (defined outside pynn)."""
    module = getattr(obj, "__module__", None) or ""
    return not (module == "pynn" or module.startswith("pynn."))


def describe(obj):
    """{"class_name", "config"} of a component, "custom": true for a user's class."""
    spec = {"class_name": type(obj).__name__, "config": obj.get_config()}
    if is_custom(type(obj)):
        spec["custom"] = True
    return spec


def find(spec, pynn_classes, kind):
    """The class a file's spec names: custom_objects first, else pynn's own (a user's class,
    "custom" in the file, must come from custom_objects)."""
    name = spec.get("class_name")
    objects = in_scope()
    if isinstance(name, str) and name in objects:
        return objects[name]
    if spec.get("custom") or pynn_classes.get(name) is None:
        raise ValueError(f"unknown {kind} class {name!r}: a {kind} of your own loads with "
                         f"load_model(..., custom_objects={{{name!r}: {name}}})")
    return pynn_classes[name]
