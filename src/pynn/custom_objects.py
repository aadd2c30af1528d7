"""User classes and functions in model files: how a file names them, how loading finds them.

A model file names each component (layer, loss, optimizer, initializer, regularizer, metric)
by its class name, a metric function by its function name. pynn's own are found by that
name; a user's come from `custom_objects={name: class or function}` given to
`pynn.load_model` (or from an enclosing `custom_object_scope`), as in Keras. The file marks
a user's component ("custom": true), so one named like a pynn class is never rebuilt as
pynn's without a word; in files from before the mark (and configs written by hand) a name
given in custom_objects wins over pynn's, as it did.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import warnings

_local = threading.local()
_registered = {}  # register_keras_serializable's {name: class or function}, every thread's
_registered_as = {}  # {class or function: its "package>name"}, what files name it by


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


@contextlib.contextmanager
def file_marks(known):
    """Within it, `find` trusts the absence of a "custom" mark (a file that marks them)."""
    previous = getattr(_local, "marks", False)
    _local.marks = bool(known)
    try:
        yield
    finally:
        _local.marks = previous


def register_keras_serializable(package="Custom", name=None):
    """Keras' decorator: the class or function loads by its name without custom_objects
    (the registered ones are found under an enclosing scope's, which win)."""
    if not isinstance(package, str) or (name is not None and not isinstance(name, str)):
        raise TypeError(f"register_keras_serializable: package and name must be strings, "
                        f"got {package!r} and {name!r}")

    def register(obj):
        own = name or getattr(obj, "__name__", None)
        if not isinstance(own, str):
            raise TypeError(f"register_keras_serializable: {obj!r} has no __name__; give name=")
        key = f"{package}>{own}"
        _registered[own] = _registered[key] = obj
        _registered_as[obj] = key
        return obj

    return register


def registered_name(obj):
    """The "package>name" register_keras_serializable gave obj (a class or function), as a
    file names it, or None: two packages' classes of one name load as their own."""
    try:
        key = _registered_as.get(obj)
    except TypeError:  # (an unhashable object)
        return None
    return key if key is not None and _registered.get(key) is obj else None


def registered_object(name, registered):
    """What a file's registered name ("package>name", or None) finds, unless custom_objects
    or an enclosing scope gives `name`, which wins (as over registered objects); None then
    and for a name nothing registered."""
    if not isinstance(registered, str) or any(name in m for m in _stack()):
        return None
    return in_scope().get(registered)


def get_custom_objects():
    """The registered {name: class or function} (Keras' global dict: adding to it
    registers)."""
    return _registered


def in_scope():
    """{name: object} of the registered ones and the enclosing scopes, the innermost
    winning."""
    merged = dict(_registered)
    for mapping in _stack():
        merged.update(mapping)
    return merged


def is_custom(obj):
    """Whether a class or function is the user's (defined outside pynn)."""
    module = getattr(obj, "__module__", None) or ""
    return not (module == "pynn" or module.startswith("pynn."))


def keras_method_only(cls, keras_method, own):
    """Whether a user's class defines Keras' `keras_method` (call, __call__) without any of
    the methods pynn runs in its place (`own`): a subclass of a pynn class overriding only
    Keras' method would be ignored, silently."""
    def defined(name):
        return any(name in vars(k) for k in cls.__mro__ if is_custom(k))
    return defined(keras_method) and not any(defined(name) for name in own)


def describe(obj):
    """{"class_name", "config"} of a component, "custom": true for a user's class, and its
    "registered_name" where it was registered."""
    spec = {"class_name": type(obj).__name__, "config": obj.get_config()}
    if is_custom(type(obj)):
        spec["custom"] = True
        registered = registered_name(type(obj))
        if registered is not None:
            spec["registered_name"] = registered
    return spec


def config_of(spec, kind):
    """A spec's constructor arguments: its config, a dict (None or absent: none)."""
    config = spec.get("config")
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"{kind} {spec.get('class_name')!r}: its config must be a dict of "
                        f"arguments, got {config!r}")
    return config or {}


def deserialize_with(get, config, custom_objects, kind):
    """Keras' <module>.deserialize(config, custom_objects): the component a config (a dict as
    serialize and Keras write it, or a name) describes, a user's class found in
    custom_objects ({name: class})."""
    if config is None:  # (serialize(None)'s, as Keras)
        return None
    if not isinstance(config, (dict, str)):
        article = "an" if kind[0] in "aeiou" else "a"
        raise TypeError(f"deserialize: {article} {kind} is described by a config dict (or a "
                        f"name), got {config!r}")
    with custom_object_scope(custom_objects):
        return get(config)


class ByConfig:
    """A component equal to another of its class with the same get_config() (changeable,
    so without a hash, as a list), and shown by it: regularizers, constraints."""

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = None

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def rebuild(spec, pynn_class, kind):
    """The component a file's spec describes: its class (see find) called with its config."""
    return find(spec, pynn_class, kind)(**config_of(spec, kind))


def find(spec, pynn_class, kind):
    """The class a file's spec names. A user's ("custom") comes from custom_objects; an
    unmarked one is pynn's own (pynn_class(name), None if pynn has none) in a file that marks
    (file_marks), else custom_objects first (older files, hand-written configs)."""
    name = spec.get("class_name")
    objects = in_scope()
    registered = registered_object(name, spec.get("registered_name"))
    if spec.get("custom") and registered is not None:
        return registered  # (the class name alone may be another package's)
    if not spec.get("custom"):
        # a Keras file's registered class ('package>Name', which Keras looks up first in
        # custom_objects), before pynn's own of its class name (a 'mypkg>Dropout')
        key = spec.get("registered_name")
        if isinstance(key, str) and key in objects:
            return objects[key]
        cls = pynn_class(name) if isinstance(name, str) else None
        if cls is not None and (getattr(_local, "marks", False) or name not in objects):
            return cls
    if isinstance(name, str) and name in objects:
        return objects[name]
    if isinstance(name, str) and name.startswith("<"):  # '<lambda>'
        raise ValueError(f"unknown {kind} {name!r}: a file names a function of your own by "
                         f"its name, which a lambda lacks; define it with def (it then loads "
                         f"with custom_objects={{'its_name': its_name}})")
    article = "an" if kind[0] in "aeiou" else "a"
    value = name if isinstance(name, str) and name.isidentifier() else "YourClass"
    raise ValueError(f"unknown {kind} class {name!r}: {article} {kind} of your own loads with "
                     f"custom_objects={{{name!r}: {value}}} (load_model, model_from_json, "
                     f"from_config) or inside pynn.utils.custom_object_scope")


class AutoConfig:
    """Keras 3's automatic get_config for a class of your own that writes none: the
    arguments its constructor was called with join the config of the pynn class it extends
    (under their own names, where that config lacks them), so a model file, a copy or a
    clone rebuilds it with them (Times2(k=3.0) came back as Times2(k=1.0)). Only arguments
    a file gives back as they were (numbers, strings, None, lists and dicts of them): any
    other (a tuple, a function, an object) is left out with a warning, and comes back as its
    default; a class that writes its own get_config says itself what rebuilds it, as in
    Keras."""

    _auto_config = False  # set per class: a user's class that writes no get_config

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._auto_config = is_custom(cls) and not any(
            is_custom(k) and "get_config" in vars(k) and
            not getattr(vars(k)["get_config"], "_auto", False) for k in cls.__mro__)
        if cls._auto_config and "get_config" not in vars(cls):
            inherited = cls.get_config

            def get_config(self):
                try:
                    config = inherited(self)
                except AttributeError:  # the base's attributes never set (an __init__ of
                    config = {}         # its own without super().__init__(), as Keras')
                arguments = self.__dict__.get("_constructor_arguments") or {}
                return _taken_by(type(self), {**config,
                                              **_file_arguments(self, arguments, config)})

            get_config._auto = True
            get_config.__doc__ = inherited.__doc__
            cls.get_config = get_config

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        if cls._auto_config:
            arguments = _named_arguments(cls, obj, args, kwargs)
            if arguments is not None:
                obj.__dict__["_constructor_arguments"] = arguments
        return obj


def _taken_by(cls, config):
    """config without the base class's entries that cls's constructor does not take (it
    has no **kwargs): from_config could not rebuild it with them (SGD's learning_rate
    under a subclass of its own arguments), as Keras 3 drops them."""
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return config
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return config
    return {k: v for k, v in config.items() if k in parameters}


def _file_arguments(obj, arguments, config):
    """The constructor arguments config lacks that a file holds exactly (see AutoConfig);
    the others named in a warning."""
    kept = {}
    for name, value in arguments.items():
        if name in config:
            continue
        if _exact_in_json(value):
            kept[name] = value
        else:
            cls = type(obj).__name__
            warnings.warn(f"{cls}: its argument {name}={value!r:.60} does not come back from "
                          f"a model file as it is ({type(value).__name__}), so it is left "
                          f"out of {cls}'s config: it loads, copies and clones with its "
                          f"default; give {cls} a get_config() that returns it", UserWarning,
                          stacklevel=3)
    return kept


def _exact_in_json(value):
    """Whether JSON gives value back as it is (a tuple comes back a list)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if type(value) is list:
        return all(_exact_in_json(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _exact_in_json(v) for k, v in value.items())
    return False


def _named_arguments(cls, obj, args, kwargs):
    """{name: value} of a constructor call (its **kwargs spread), or None when it cannot be
    repeated by keywords (unnamed *args, or a call __init__ will refuse)."""
    try:
        signature = inspect.signature(cls.__init__)
        bound = signature.bind(obj, *args, **kwargs)
    except (TypeError, ValueError):
        return None
    named = {}
    for name, value in list(bound.arguments.items())[1:]:
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                return None
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[name] = value
    return named
