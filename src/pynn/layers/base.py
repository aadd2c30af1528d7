"""Layer and Parameter: what every layer shares.

A layer is built once its input shape is known (`build`), holds its weights as Parameters on
the model's backend, and runs `forward(x, training)` / `backward(dy)` through the backend
contract only. A layer's shapes exclude the batch axis (Keras' Layer.build includes it);
Sequential.build takes Keras' shape, batch axis first.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import numbers
import re
import threading
from collections import defaultdict

import numpy as np

from .. import config
from ..custom_objects import AutoConfig, is_custom
from ..array_like import add_array_operators
from ..backend import backend_array, get_backend, is_gpu_array, to_host
from ..data import all_finite

_name_counters: dict[str, int] = defaultdict(int)  # prefix -> names given
_name_lock = threading.Lock()  # layers made on several threads get distinct names


_scratch_names = threading.local()  # a private copy of the counters: layer_names_untouched

_computing = threading.local()  # the user's layer whose forward runs on this thread


def forward_of(layer, x, **kwargs):
    """layer.forward(x, **kwargs) of a user's layer, its add_weight refused meanwhile: a
    weight made while computing trained, but a file's model, rebuilt by build, lacked it."""
    outer = getattr(_computing, "layer", None)
    _computing.layer = layer
    try:
        return layer.forward(x, **kwargs)
    finally:
        _computing.layer = outer


def stored_shape(shape, expected):
    """The shape a file or array gives for a weight (or slot) of shape `expected`, as pynn
    reads it: (1,) is () for a scalar weight, which pynn stored so before 2026-12-05."""
    shape = tuple(shape)
    return () if shape == (1,) and tuple(expected) == () else shape


@contextlib.contextmanager
def layer_names_untouched():
    """Layers made inside (on this thread) take no automatic names from later ones (a trial
    rebuild at every save turned the next Dense into dense_4): they count on a private copy,
    so other threads' names are neither repeated nor undone."""
    previous = getattr(_scratch_names, "counters", None)
    with _name_lock:
        _scratch_names.counters = defaultdict(
            int, previous if previous is not None else _name_counters)
    try:
        yield
    finally:
        _scratch_names.counters = previous


def snake_case(name):
    """A class name as Keras 3 names its layers, and keys them in its weights files:
    LeakyReLU -> leaky_re_lu, ELU -> elu."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def as_flag(owner, name, value):
    """A True/False argument. Text is refused: bool("false") is True (a hand-edited or
    crafted model file's "false" made a layer trainable)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def as_bool(owner, name, value):
    """A flag Keras 3 takes as a boolean only (trainable): None, 0.5 or [] were read as a
    truth value (trainable=None froze the layer silently). numpy's bool is one."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def sample_shape(owner, shape, what="shape"):
    """A sample shape (no batch axis) as a tuple of positive integers; a bare integer n is
    (n,). Anything else is refused, as Input refuses it: "45" was read digit by digit as
    (4, 5), 4.7 truncated to 4, (None, 4) failed inside int()."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        dims = (shape,)
    elif isinstance(shape, (str, bytes)) or not np.iterable(shape):
        dims = ()
    else:
        dims = tuple(shape)
    if not dims or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1
                       for d in dims):
        raise ValueError(f"{owner}: {what} must be positive integers, got {shape!r}")
    return tuple(int(d) for d in dims)  # numpy integers too


def as_shape(shape):
    """A shape as a tuple; a bare number n is (n,), as Input(n) takes it."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        return (shape,)
    return tuple(shape)


def reset_names():
    """Layer names start afresh (dense, dense_1, ... again): Keras' clear_session."""
    with _name_lock:
        _name_counters.clear()


def unique_name(prefix):
    counters = getattr(_scratch_names, "counters", None)  # inside layer_names_untouched
    with _name_lock:
        counters = _name_counters if counters is None else counters
        n = counters[prefix]
        counters[prefix] = n + 1
    return prefix if n == 0 else f"{prefix}_{n}"


def _keras_name(name, default):
    """A property of one of Keras' layer attributes that pynn derives (`default(layer)`),
    unless the layer stores its own value under that name."""
    def get(layer):
        own = layer.__dict__
        return own[name] if name in own else default(layer)

    def put(layer, value):
        layer.__dict__[name] = value

    return property(get, put, doc=f"Keras' layer.{name} (a value set on the layer stays)")


def keras_build_arguments(input_shape, backend, dtype):
    """build()'s arguments, from Keras' build(input_shape) too: no backend given, a leading
    None (the batch axis) is dropped and the layer is built on the current backend in
    floatx."""
    if backend is None:
        from ..backend import get_backend
        from ..config import floatx

        shape = tuple(input_shape)
        input_shape = shape[1:] if shape and shape[0] is None else shape
        backend, dtype = get_backend(), (floatx() if dtype is None else dtype)
    return input_shape, backend, dtype


def last_axis(owner, axis, computes="computes over"):
    """Keras' axis of a layer pynn computes over the last axis: -1, or that axis' index
    counted from the batch axis (1 for (batch, features) inputs; checked at build by
    check_last_axis), also as a one-item list."""
    if isinstance(axis, (list, tuple)) and len(axis) == 1:
        axis = axis[0]
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or \
            not (axis == -1 or axis >= 1):
        raise ValueError(f"{owner}: axis={axis!r} is not supported; pynn {computes} the last "
                         f"axis: axis=-1, or its index (1 for (batch, features) inputs)")
    return int(axis)


def check_last_axis(owner, axis, input_shape, computes="computes over"):
    """At build: a positive axis must be the last of inputs of input_shape (no batch axis)."""
    if axis not in (-1, len(input_shape)):
        dims = ", ".join(str(d) for d in input_shape)
        raise ValueError(f"{owner}: axis={axis} is not the last axis of inputs of shape "
                         f"(batch, {dims}); pynn {computes} the last axis (axis=-1 or "
                         f"{len(input_shape)})")


# Attributes of pynn's own bookkeeping, not layers the user's layer holds (its constructor
# arguments, for a config: a layer passed in and not kept is not held)
_NOT_HELD = frozenset({"_constructor_arguments", "_inner_layers", "_tracked_from"})


def _held_layers(layer, skip=frozenset(), models=None):
    """The Layer objects layer holds in its attributes, directly or in lists, tuples and
    dicts, each once, in attribute order; none whose id is in `skip`. The pynn models it
    holds so are appended to `models` when a list is given."""
    from ..model import Sequential

    found, seen, containers = [], set(skip), set()

    def take(value):
        if isinstance(value, Layer):
            if id(value) not in seen:
                seen.add(id(value))
                found.append(value)
        elif isinstance(value, Sequential):
            if models is not None:
                models.append(value)
        elif isinstance(value, (list, tuple, dict)) and id(value) not in containers:
            containers.add(id(value))  # (a list holding itself, or shared by attributes)
            for item in (value.values() if isinstance(value, dict) else value):
                take(item)

    for name, value in vars(layer).items():
        if name not in _NOT_HELD:
            take(value)
    return found


def _held_trainable(p, layer):
    """Weight p's flag as the layers that hold it say, from `layer` down to the one whose
    own weight it is: trainable only if each of them is (and p no statistic)."""
    flag = not p.statistic
    while layer is not None:
        flag = flag and layer.trainable
        layer = next((source for q, source in layer.__dict__.get("_tracked_from", ())
                      if q is p), None)
    return flag


class Parameter:
    """One weight array with its gradient. `value` lives on `backend`.

    It reads as its array, as a Keras variable: `kernel * 2`, `abs(kernel)`, `kernel[0]`,
    `np.asarray(kernel)` and `kernel.shape` / `kernel.dtype` give NumPy values (new arrays:
    writing to them leaves the weight alone until they are assigned back). `assign(values)`
    overwrites the weight, and so do the in-place operators: `layer.kernel += 1` (also -=,
    *=, /=, ...) updates the weight's values where they are, so the model computes with them
    (as `assign`; a plain `layer.kernel = array` is refused: the layer would keep computing
    with the old weight)."""

    __slots__ = ("name", "value", "grad", "trainable", "backend", "statistic", "constraint")

    def __init__(self, name, value, backend, trainable=True, statistic=False, constraint=None):
        self.name = name
        self.value = value
        self.grad = None
        # projects the values after each optimizer update (pynn.constraints; set through the
        # layer's *_constraint attribute or add_weight(constraint=))
        self.constraint = constraint
        # A statistic (BatchNormalization's moving mean/variance) is updated by its layer,
        # never by an optimizer, so it never counts as trainable.
        self.statistic = statistic
        self.trainable = trainable and not statistic
        self.backend = backend

    @property
    def shape(self):
        """The weight's shape (a tuple)."""
        return tuple(self.value.shape)

    @property
    def dtype(self):
        """The weight's dtype (a numpy dtype: compares equal to "float32")."""
        return np.dtype(self.value.dtype)

    @property
    def ndim(self):
        """The weight's number of axes."""
        return len(self.value.shape)

    @property
    def path(self):
        """Keras 3's variable path: the weight's name (pynn's is already "layer/weight")."""
        return self.name

    def numpy(self):
        """A numpy copy of the weight's values (from the GPU too)."""
        return np.array(self.backend.to_numpy(self.value), copy=True)

    def __repr__(self):  # (as Keras' variables show themselves)
        values = np.array2string(np.asarray(self.backend.to_numpy(self.value)), threshold=12,
                                 edgeitems=2, separator=", ").replace("\n", "")
        return (f"<Parameter name={self.name}, shape={self.shape}, dtype={self.dtype}, "
                f"trainable={self.trainable}, value={values}>")

    def __getitem__(self, key):
        # a copy, as Keras' variable[0] is a new tensor (a view would write into the weight)
        item = self.backend.to_numpy(self.value)[key]
        return item.copy() if isinstance(item, np.ndarray) else item

    # As a Keras variable: np.array(layer.kernel), np.round(kernel, 2) and kernel * 2 read
    # the values (np.array of the object gave a 0-d object array, silently); a copy, as
    # Keras' (the host backends' to_numpy is the weight array itself: writes to the result
    # would change the model), unless copy=False asks for the buffer
    def __array__(self, dtype=None, copy=None):
        values = np.asarray(self.backend.to_numpy(self.value), dtype=dtype)
        return values if copy is False else np.array(values, copy=True)

    def checked(self, array, owner="set_weights"):
        """array as a host array of this parameter's shape and dtype; a clear error for a
        wrong shape or non-real values (strings, complex numbers lose or break data)."""
        array = np.asarray(to_host(array, self.backend))  # GPU arrays too
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{owner}: weight {self.name!r} must hold real numbers, got "
                             f"dtype {array.dtype}")
        array = array.reshape(stored_shape(array.shape, self.shape))
        if array.shape != self.shape:
            raise ValueError(f"{owner}: weight {self.name!r}: expected shape {self.shape}, got "
                             f"{array.shape}")
        if not config.check_finite() or array.dtype == self.value.dtype:
            return array.astype(self.value.dtype, copy=False)
        # finite values beyond the weight's range (1e300 into float32): refused as in
        # inputs and targets, not stored as inf (numpy's own warning then says nothing more);
        # NaN and inf given are taken as they are
        with np.errstate(over="ignore"):
            values = array.astype(self.value.dtype)
        if array.dtype.kind == "f" and not all_finite(values):
            lost = np.isfinite(array) & ~np.isfinite(values)
            if lost.any():
                raise ValueError(f"{owner}: weight {self.name!r} holds {int(lost.sum())} "
                                 f"value(s) beyond {values.dtype.name}'s range (+-"
                                 f"{np.finfo(values.dtype).max:.3g}), largest magnitude "
                                 f"{float(np.abs(array[lost]).max()):.3g}")
        return values

    def assign(self, array):
        """Overwrite the values in place with `array` (same shape; converted to the weight's
        dtype), as Keras' variable.assign."""
        self.value[...] = self.backend.asarray(self.checked(array), self.value.dtype)

    def assign_add(self, delta):
        """Keras' variable.assign_add: the values plus delta, in place."""
        self += delta

    def assign_sub(self, delta):
        """Keras' variable.assign_sub: the values minus delta, in place."""
        self -= delta

    def __setstate__(self, state):
        # (a weight pickled before constraints existed holds no "constraint": None)
        object.__setattr__(self, "constraint", None)
        _, slots = state if isinstance(state, tuple) else (state, None)
        for name, value in (slots or {}).items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        # What a native engine binds: a new array (not `value *= m`, which rebinds the same
        # one) or the flag.
        changed = name in ("trainable", "constraint") or (
            name == "value" and value is not getattr(self, "value", None))
        object.__setattr__(self, name, value)
        if changed:
            config.settings_changed()

    def to_backend(self, backend, dtype):
        """Move the values to `backend` in `dtype` (compile(backend=) and set_floatx do
        this); a weight of integers or booleans (a counter, a mask) keeps its type, exact."""
        if self.value.dtype.kind != "f":
            dtype = self.value.dtype
        if backend is not self.backend or self.value.dtype != np.dtype(dtype):
            self.value = backend.asarray(self.backend.to_numpy(self.value), dtype)
            self.backend = backend
            self.grad = None


# Layer attributes a native training engine is built from (see Layer.__setattr__).
ENGINE_SETTINGS = ("_trainable", "activation", "kernel_regularizer", "bias_regularizer",
                   "gamma_regularizer", "beta_regularizer", "alpha_regularizer",
                   "activity_regularizer",
                   "use_bias", "rate", "seed", "momentum", "epsilon", "center", "scale",
                   "invert", "offset")
_ENGINE_SETTINGS = frozenset(ENGINE_SETTINGS)
# Flags that decide which weights a layer has: fixed once it is built
_WEIGHT_FLAGS = frozenset({"use_bias", "center", "scale"})


# Keras layer arguments taken at their default None (in hand-written or Keras-written
# configs): weight constraints of layers without those weights, LoRA
_KERAS_NONE_ARGUMENTS = frozenset({"kernel_constraint", "bias_constraint", "beta_constraint",
                                   "gamma_constraint", "lora_rank", "lora_alpha",
                                   "quantization_config"})


# Arithmetic and ordering on a weight's values, giving numpy arrays (as Keras variables
# take `kernel * 2`; no copy first: the results are new arrays); equality stays identity
# (weights are dict keys by identity). `kernel += 1` assigns in place: rebinding the
# attribute to the sum left the model on the old weight.
add_array_operators(Parameter, lambda p: p.backend.to_numpy(p.value),
                    unary=("neg", "pos", "abs"), assign=Parameter.assign)

def _check_layer_dtype(name, dtype, kind="layer"):
    """A layer's dtype= is accepted when it is the session's floatx (as Keras code often
    spells it out); another one would be silently ignored, so it is refused."""
    policy = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else None
    try:  # a Keras 3 config's DTypePolicy {"class_name": "DTypePolicy", "config": {"name"}}
        same = np.dtype(policy or dtype) == np.dtype(config.floatx())
    except (TypeError, ValueError):  # a policy name such as "mixed_float16", or no dtype
        same = False
    if not same:
        wanted = policy or dtype
        try:
            advice = (f"pynn.set_floatx({np.dtype(wanted).name!r}) computes in it"
                      if np.dtype(wanted) in (np.float32, np.float64) else
                      f"floatx may be float32 or float64 (pynn.set_floatx); inputs of "
                      f"{np.dtype(wanted).name} are converted to it")
        except (TypeError, ValueError):  # a policy name ("mixed_float16"): no such dtype
            advice = "floatx may be float32 or float64 (pynn.set_floatx)"
        raise ValueError(f"{kind} {name!r}: dtype={dtype!r}: pynn computes every {kind} in "
                         f"the session's floatx ({config.floatx()}): {advice}; or leave "
                         f"dtype out")


def _pynn_layer_below(cls):
    """Whether a layer class is, or extends, one of pynn's layers (not the bare base)."""
    return any(k is not Layer and issubclass(k, Layer) and not is_custom(k)
               for k in cls.__mro__)


def _keywords_taken(fn, names):
    """The names among `names` that fn takes as keywords (all of them with **kwargs, or
    when its signature cannot be read)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return names
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return names
    return tuple(n for n in names if n in params and
                 params[n].kind in (params[n].POSITIONAL_OR_KEYWORD, params[n].KEYWORD_ONLY))


def _passing_taken(cls, method, flag):
    """cls.<method> as pynn calls it, method(a, <flag>=..., logits=...), on a layer of your
    own whose method leaves out the flag or logits (forward(x, training) or forward(x), as
    Keras' call(x)): each passed only where taken. logits=True (the model's last layer, its
    loss taking pre-activations) cannot be left out: refused by name."""
    fn = vars(cls)[method]
    taken = _keywords_taken(fn, (flag, "logits"))
    if len(taken) == 2 or not inspect.isfunction(fn):
        return fn

    @functools.wraps(fn)
    def call(self, a, *args, **kwargs):
        if kwargs.get("logits") and "logits" not in taken:
            raise TypeError(f"{cls.__name__}.{method}{inspect.signature(fn)} takes no logits, "
                            f"but the model asks its last layer {self.name!r} for logits (its "
                            f"output_activation with the loss's cross-entropy); pynn runs "
                            f"forward(x, training, logits) and backward(dy, need_input_grad, "
                            f"logits): add logits=False (see pynn.layers.Layer)")
        for name in (flag, "logits"):
            if name not in taken:
                kwargs.pop(name, None)
        return fn(self, a, *args, **kwargs)

    return call


def _tracking_after(build):
    """A layer of yours' build(), which tracks the layers it holds when it returns (the
    outermost call of a chain of subclasses' builds): built directly (holder.build(shape)),
    not by a model or a call, it tracked nothing, where Keras tracks them as they are set."""
    if not inspect.isfunction(build):
        return build

    @functools.wraps(build)
    def tracked(self, *args, **kwargs):
        # the depth of this layer's build() calls on this thread: kept outside the layer, so
        # a copy taken during its build (deepcopy, pickle) carries none of it
        depths = _build_depths.__dict__.setdefault("depths", {})
        depths[id(self)] = depths.get(id(self), 0) + 1
        try:
            result = build(self, *args, **kwargs)
        finally:
            depths[id(self)] -= 1
            outermost = not depths[id(self)]
            if outermost:
                del depths[id(self)]
        if outermost:
            if not self.built and args:  # built once build returns, as Keras marks it (a
                Layer.build(self, *args[:3])  # direct layer.build((None, 3)) stayed unbuilt)
            self._track_held_layers(strict=False)
        return result

    return tracked


_build_depths = threading.local()
_trainable_walk = threading.local()  # the layers a trainable setter reached, while it runs


def _tracks(holder, layer):
    """Whether `holder` took `layer` when it tracked what it holds (at any depth)."""
    seen, stack = set(), [holder]
    while stack:
        for inner in stack.pop().__dict__.get("_inner_layers", ()):
            if inner is layer:
                return True
            if id(inner) not in seen:
                seen.add(id(inner))
                stack.append(inner)
    return False


class KerasAttribute:
    """A computed attribute of Keras' (layer.output, model.input, ...) that an object may set
    for itself (a layer of one's own keeping self.output): what it set is what it reads."""

    def __init__(self, compute):
        self.compute, self.__doc__ = compute, compute.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        own = obj.__dict__.get(self.name, _NOT_SET)
        return self.compute(obj) if own is _NOT_SET else own

    def __set__(self, obj, value):
        obj.__dict__[self.name] = value

    def __delete__(self, obj):
        if obj.__dict__.pop(self.name, _NOT_SET) is _NOT_SET:
            raise AttributeError(self.name)


_NOT_SET = object()


class Layer(AutoConfig):
    """Base class of every layer."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for method, flag in (("forward", "training"), ("backward", "need_input_grad")):
            if method in vars(cls):
                setattr(cls, method, _passing_taken(cls, method, flag))
        if "build" in vars(cls) and not cls.__module__.startswith("pynn."):
            cls.build = _tracking_after(vars(cls)["build"])

    def __setattr__(self, name, value):
        if name == "activation" and _pynn_layer_below(type(self)):
            # "relu" or None as in pynn's constructors: a Spec; a layer of your own keeps
            # what it stores (a function of its own)
            from .. import activations

            value = activations.get(value)
        elif isinstance(self.__dict__.get(name), Parameter) and \
                not isinstance(value, Parameter):
            raise TypeError(f"{type(self).__name__} {self.name!r}: {name} is the weight "
                            f"{self.__dict__[name].name!r}: assigning a "
                            f"{type(value).__name__} over it would leave the layer computing "
                            f"with the old weight; write its values with layer.{name}.assign("
                            f"values) or in place (layer.{name} += ...)")
        elif isinstance(value, str) and name.endswith(("_regularizer", "_initializer")) and \
                _pynn_layer_below(type(self)):
            # layer.kernel_regularizer = "l2" on pynn's layers (Dense, BatchNormalization...),
            # as their constructors take it (a str crashed fit and save); a layer of your own
            # keeps what it stores
            from .. import initializers, regularizers

            value = (regularizers if name.endswith("_regularizer") else initializers).get(value)
        elif name.endswith("_constraint") and _pynn_layer_below(type(self)):
            # a name, a config or an object, as the constructors take it; set after build
            # too, on the weight it names (kernel_constraint: kernel), as a regularizer is
            from .. import constraints

            value = constraints.get(value)
            weight = self.__dict__.get(name[:-len("_constraint")])
            if isinstance(weight, Parameter):
                if value is not None:
                    value.check_shape(weight.shape, weight.name)
                weight.constraint = value
        elif name in _WEIGHT_FLAGS and self.__dict__.get("built"):
            old = self.__dict__.get(name)
            if type(old) is bool and isinstance(value, (bool, np.bool_, int)) \
                    and bool(value) != old:  # (the weights it adds or drops exist, or not)
                raise ValueError(f"{type(self).__name__} {self.name!r}: {name} cannot change "
                                 f"once the layer is built; make a new layer with "
                                 f"{name}={bool(value)}")
        object.__setattr__(self, name, value)
        if name in _ENGINE_SETTINGS:
            config.settings_changed()

    def __init__(self, name=None, trainable=True, input_shape=None, input_dim=None, dtype=None,
                 activity_regularizer=None, **keras_defaults):
        for key, value in keras_defaults.items():  # Keras' arguments pynn has no use for
            if key == "autocast":  # (Keras' base-layer config writes it: pynn has one
                as_bool(type(self).__name__, key, value)  # floatx, inputs cast to it)
                continue
            if key not in _KERAS_NONE_ARGUMENTS:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                                f"{key!r}")
            if value is not None:
                raise NotImplementedError(f"{type(self).__name__}: {key}={value!r} is not "
                                          f"supported by pynn (only Keras' default, None)")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self._trainable = as_bool(self.name, "trainable", trainable)
        if dtype is not None:  # Keras' per-layer dtype (policy): pynn has one floatx
            _check_layer_dtype(self.name, dtype)
        owner = f"{type(self).__name__} {self.name!r}"
        if input_dim is not None and input_shape is not None:  # (Keras 3 refuses it too)
            raise ValueError(f"{owner}: give input_shape or input_dim, not both (got "
                             f"input_shape={input_shape!r}, input_dim={input_dim!r})")
        if input_dim is not None:
            if isinstance(input_dim, bool) or not isinstance(input_dim, numbers.Integral) or \
                    input_dim < 1:
                raise ValueError(f"{owner}: input_dim must be a positive integer, got "
                                 f"{input_dim!r}")
            input_shape = (int(input_dim),)
        self.input_shape = (sample_shape(owner, input_shape, "input_shape")
                            if input_shape is not None else None)
        # get_config names a given input shape, not one a model's build set (as Keras: a
        # layer rebuilt from its config in another model took its old shape, and warned)
        self._input_shape_given = input_shape is not None
        from .. import regularizers

        # Keras 3's: a penalty of the layer's outputs, over the batch size, joins the loss
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.built = False
        self.backend = None
        self._params: list[Parameter] = []
        self._weight_regularizers = []  # (parameter, regularizer) from add_weight
        self._cache = None  # what forward(training=True) keeps for backward

    def clear_cache(self):
        """Drop what the last forward(training=True) kept for backward."""
        self._cache = None

    # ---- building ---------------------------------------------------------------------------
    def build(self, input_shape, backend=None, dtype=None):
        """Create the weights for inputs of `input_shape` (no batch axis). Keras' form,
        build(input_shape) with the batch axis as None ((None, 3)), builds a layer of pynn's
        on the current backend in floatx (then set_weights, as Keras code does)."""
        keras_call = backend is None
        input_shape, backend, dtype = keras_build_arguments(input_shape, backend, dtype)
        self.input_shape = tuple(input_shape)
        if not (keras_call and self.__dict__.get("backend") is not None):
            self.backend = backend  # (a Keras-form build a model runs keeps the model's)
        self.built = True

    def _build_marked(self, input_shape, backend, dtype):
        """build(), then the layer marked built even when a user's build() skipped
        super().build(...) (as Keras marks it; it was built again at every call)."""
        keras_form = False
        try:  # Keras' build(input_shape) failed inside with "takes 2 positional arguments"
            inspect.signature(self.build).bind(input_shape, backend, dtype)
        except TypeError:
            try:
                inspect.signature(self.build).bind(input_shape)
                keras_form = True
            except TypeError:
                raise TypeError(f"{type(self).__name__}.build{inspect.signature(self.build)}: "
                                f"pynn calls build(input_shape, backend, dtype) (or Keras' "
                                f"build(input_shape)), and runs forward(x, training, logits) "
                                f"and backward(dy, need_input_grad, logits) (see "
                                f"pynn.layers.Layer)") from None
        except ValueError:  # (no signature to read: called as it is)
            pass
        if keras_form:
            # Keras' build(input_shape): the shape with the batch axis, as Keras calls it,
            # the backend set first (its add_weight makes the weights there), `built` left
            # False until it returns (Keras' `if self.built: return` guard)
            self.backend = backend
            self.build((None, *input_shape))
        else:
            self.build(input_shape, backend, dtype)
        if not self.built:
            Layer.build(self, input_shape, backend, dtype)
        self._track_held_layers(strict=False)  # (a model tracks again, knowing its layers)

    def _track_held_layers(self, exclude=frozenset(), strict=True, _holders=frozenset()):
        """The layers a layer of yours holds (attributes, lists, tuples, dict values), as
        Keras tracks them: each tracks its own first, then their weights become this
        layer's too, after its own (trained, saved, frozen and moved with it; their
        regularizers' penalties join the loss), each once. Built alone (layer(x)) it tracks
        all it holds; a model tracks again when it builds, excluding its own layers and those
        an earlier layer took (a layer holding one, as a tied-weights decoder its encoder,
        shares weights the model trains once): the weights tracked before are let go first,
        so a weight is one layer's in each model. A held layer holding this one back is no
        cycle (_holders). strict (a model's build): a held layer left unbuilt is refused
        (its weights would not exist yet), as is one with an activity regularizer (applied
        to a model's own layers only). Returns every layer taken, at any depth."""
        holders = _holders | {id(self)}
        models = []
        held = [layer for layer in _held_layers(self, exclude | holders, models)
                if strict or layer.built]
        if strict and models:  # its weights would be no one's: untrained, unsaved, silently
            raise ValueError(f"layer {self.name!r} holds model {models[0].name!r}: pynn "
                             f"tracks the weights of layers a layer holds, not of models; "
                             f"hold its layers ({self.name}.block = model.layers) and run "
                             f"them in forward/backward, or add them to the outer model")
        taken = []
        for layer in held:
            if not layer.built:
                raise ValueError(f"layer {self.name!r} holds layer {layer.name!r}, which is "
                                 f"not built: build it in {self.name!r}'s build() "
                                 f"({layer.name}.build(shape, backend, dtype)), so its "
                                 f"weights exist to be tracked")
            if strict and layer.__dict__.get("activity_regularizer") is not None:
                raise ValueError(f"layer {layer.name!r} inside layer {self.name!r} has an "
                                 f"activity_regularizer, which pynn applies to a model's own "
                                 f"layers only: give it to {self.name!r} or to a layer of the "
                                 f"model")
            taken += [layer, *layer._track_held_layers(exclude, strict, holders)]
        # [(weight, the layer it came from)]: pairs, not ids, so a copy (deepcopy, pickle)
        # knows its own copies as tracked
        before = self.__dict__.get("_tracked_from", [])
        was_tracked = {id(p) for p, _ in before}
        params = [p for p in self._params if id(p) not in was_tracked]  # its own
        known, tracked = {id(p) for p in params}, []
        for layer in held:
            for p in layer._params:
                if id(p) not in known:
                    known.add(id(p))
                    tracked.append((p, layer))
                    params.append(p)
                    p.trainable = p.trainable and self._trainable and not p.statistic
        for p, layer in before:  # let go: the flags down to the layer that owns it
            if id(p) not in known:
                p.trainable = _held_trainable(p, layer)
        self._tracked_from = tracked
        if [id(p) for p in params] != [id(p) for p in self._params]:
            config.settings_changed()  # (a model built before re-tracks at its next step)
        self._params[:] = params
        self._inner_layers = held
        return taken

    def _build_for(self, input_shape, backend, dtype):
        """Builds the layer for samples of `input_shape` as a model does: one with weights
        keeps them for the same inputs, or (Dense, the normalisations) the same last axis
        under other leading axes, as layer(x) takes and Keras shares a layer across sequence
        lengths, and refuses others; one without weights is built afresh."""
        if self.built and self.input_shape == input_shape:
            return
        if self.built and self.params:
            if not self._takes_samples(input_shape):
                raise ValueError(f"layer {self.name!r} was built for inputs "
                                 f"{self.input_shape}, not {input_shape}")
        else:
            self._build_marked(input_shape, backend, dtype)

    def compute_output_shape(self, input_shape):
        """The shape of one output sample for one input sample of `input_shape` (neither has
        the batch axis); the input's shape unless the layer changes it."""
        return tuple(input_shape)

    def add_weight(self, *args, shape=None, initializer=None, dtype=None, trainable=True,
                   autocast=True, regularizer=None, constraint=None, aggregation="none",
                   overwrite_with_gradient=False, name=None, array=None, backend=None,
                   statistic=False):
        """A weight, Keras 3's way: add_weight(shape, initializer, dtype, ..., name=), of
        `shape` drawn by `initializer` (default "glorot_uniform", "zeros" for an integer
        dtype); or pynn's, from its initial values: add_weight(name, array, backend, dtype,
        statistic) (a name first selects this order). backend: default the layer's (call
        super().build first); dtype: default floatx (a model converts its weights to floatx
        when it compiles, but for one of integers or booleans, which keeps its dtype and is
        never trained). trainable=False (or statistic=True): the optimizer never updates
        it, whatever the layer's trainable flag (a moving statistic, a fixed mask).
        regularizer: its penalty joins the loss (through regularized()). constraint (a
        pynn.constraints name or object): projects the weight after each optimizer update.
        Keras' autocast and aggregation have no effect (one floatx, one device);
        overwrite_with_gradient is taken at its default only."""
        from .. import constraints, initializers, regularizers

        order = ("name", "array", "backend", "dtype", "statistic") \
            if args and isinstance(args[0], str) else ("shape", "initializer", "dtype")
        if len(args) > len(order):
            raise TypeError(f"add_weight() takes at most {len(order)} positional arguments "
                            f"({', '.join(order)}), got {len(args)}")
        given = {"name": name, "array": array, "backend": backend, "dtype": dtype,
                 "statistic": statistic, "shape": shape, "initializer": initializer}
        for key, value in zip(order, args):
            if given[key] is not None and given[key] is not False:
                raise TypeError(f"add_weight: {key} given both by position and by name")
            given[key] = value
        name, array, backend, dtype, statistic, shape, initializer = given.values()
        if constraint is None and _pynn_layer_below(type(self)) and isinstance(name, str):
            # pynn's layers keep their weights' constraints as attributes (kernel_constraint)
            constraint = self.__dict__.get(f"{name}_constraint")
        constraint = constraints.get(constraint)  # (a bad one named before anything is made)
        if overwrite_with_gradient:
            raise NotImplementedError("add_weight: overwrite_with_gradient=True is not "
                                      "supported by pynn (only Keras' default, False)")
        if aggregation not in (None, "none", "mean", "sum", "only_first_replica"):
            raise ValueError(f"add_weight: aggregation must be one of None, 'none', 'mean', "
                             f"'sum', 'only_first_replica', got {aggregation!r}")
        as_flag("add_weight", "autocast", autocast)
        name = name or f"weight_{len(self._params)}"
        if not isinstance(name, str) or "/" in name:  # (Keras 3 refuses it too): files key a
            # weight by the name after the layer's "/", so "a/w" and "b/w" would collide
            raise ValueError(f"add_weight: name must be a string without '/', got {name!r}")
        if getattr(_computing, "layer", None) is self:
            raise ValueError(f"layer {self.name!r}: add_weight({name!r}) inside forward: "
                             f"create weights in build(input_shape, backend, dtype) (a model "
                             f"loaded from a file is rebuilt by build, without this one)")
        backend = backend or self.backend or get_backend()
        dtype = dtype or config.floatx()
        if np.dtype(dtype).kind != "f":  # integers (a counter) or booleans: never trained
            trainable = False              # (Keras takes no gradient of them either)
        if (array is None) == (shape is None):
            raise TypeError(f"add_weight({name!r}): give the initial values (array) or a "
                            f"shape, not both or neither")
        fresh = False  # an array nobody else holds: the weight takes it without a copy
        if shape is not None:
            if initializer is None:  # Keras 3's default
                initializer = "glorot_uniform" if np.dtype(dtype).kind == "f" else "zeros"
            init = initializers.get(initializer)
            array = self.initial_values(init, tuple(as_shape(shape)), dtype)
            # new arrays: the zeros of a load, what pynn's own initializers make (a user's
            # initializer may return one it keeps)
            fresh = config.loading_weights_now() or type(init).__module__ == "pynn.initializers"
        elif isinstance(array, tuple) and all(isinstance(v, int) for v in array):
            raise TypeError(f"add_weight({name!r}): {array} is taken as values, not a shape: "
                            f"pass shape={array} for a weight of that shape")
        path, taken, k = f"{self.name}/{name}", {q.name for q in self._params}, 1
        while path in taken:  # a second weight of one name (Keras takes it): files key
            path, k = f"{self.name}/{name}_{k}", k + 1  # weights by name, so one of its own
        value = backend.asarray(array, dtype)
        if not fresh and _same_memory(value, array):
            # A weight owns its values (a Keras variable does): the caller's float32 array
            # (one given to two layers, an initializer's cached array) was kept by
            # reference, silently shared. While loading, the file's values are written in
            # next: zeros, unwritten pages until then (a copy would touch all of it).
            value = backend.xp.zeros(value.shape, value.dtype) if config.loading_weights_now() \
                else value.copy()
        if constraint is not None:
            constraint.check_shape(value.shape, path)
        p = Parameter(path, value, backend, trainable=self._trainable,
                      statistic=statistic or not trainable, constraint=constraint)
        self._params.append(p)
        if regularizer is not None:
            self._weight_regularizers.append((p, regularizers.get(regularizer)))
        return p

    @staticmethod
    def initial_values(initializer, shape, dtype):
        """A new weight's values from `initializer`. While a model is rebuilt from a file
        (pynn.config.loading_weights) the file's values replace them: zeros then, drawn from
        nothing and costing no memory until written (calloc'd pages), so a file declaring
        huge layers costs nothing before its arrays are found not to match."""
        if config.loading_weights_now():
            return np.zeros(shape, dtype=dtype)
        return initializer(shape, dtype)

    def to_backend(self, backend, dtype):
        """Move the layer's weights to `backend` in `dtype` (and the layers it holds)."""
        self.backend = backend
        for layer in self.__dict__.get("_inner_layers", ()):
            layer.to_backend(backend, dtype)
        for p in self._params:
            p.to_backend(backend, dtype)

    # ---- weights ------------------------------------------------------------------------------
    @property
    def params(self) -> list[Parameter]:
        """The layer's weights as Parameters, trainable or not, in get_weights order."""
        return self._params

    @property
    def weights(self) -> list[Parameter]:
        """Keras' name for the layer's weights (Parameters: .name, .shape, .numpy()); a new
        list each time, as Keras' (editing it leaves the layer as it was)."""
        return list(self._params)

    @property
    def trainable_weights(self) -> list[Parameter]:
        """The weights an optimizer updates (the layer trainable, the weight not frozen or a
        statistic)."""
        return [p for p in self._params if p.trainable]

    @property
    def non_trainable_weights(self) -> list[Parameter]:
        """The weights no optimizer updates (frozen ones, moving statistics)."""
        return [p for p in self._params if not p.trainable]

    # Keras 3's names: the three lists, the dtype (the session's floatx: Keras' variable and
    # compute dtypes, one here), the path (the layer's name); a layer of yours may store
    # its own value under one of these names (self.dtype = dtype in build, as before)
    variables = _keras_name("variables", lambda layer: layer.weights)
    trainable_variables = _keras_name("trainable_variables",
                                      lambda layer: layer.trainable_weights)
    non_trainable_variables = _keras_name("non_trainable_variables",
                                          lambda layer: layer.non_trainable_weights)
    dtype = _keras_name("dtype", lambda layer: config.floatx())
    compute_dtype = _keras_name("compute_dtype", lambda layer: config.floatx())
    variable_dtype = _keras_name("variable_dtype", lambda layer: config.floatx())
    path = _keras_name("path", lambda layer: layer.name)

    @property
    def trainable(self):
        """Whether fit updates the layer's weights: False freezes them (bit-identical after
        fit, counted as non-trainable by summary); takes effect without compiling again.
        Setting it sets, as Keras' setter, the flag of every layer this one holds, at any
        depth (built or not, tracked in this model or another), each once however many
        paths reach it, through each one's own setter (a subclass's override runs); a
        layer that tracks this one (its holder, held back by a reference) is not set."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        value = as_bool(self.name, "trainable", value)
        walk = getattr(_trainable_walk, "seen", None)
        outermost = walk is None
        if outermost:
            walk = _trainable_walk.seen = {id(self)}
        try:
            self._trainable = value
            for layer in _held_layers(self, walk):
                if id(layer) not in walk and not _tracks(layer, self):
                    walk.add(id(layer))
                    layer.trainable = value
            for p in self._params:
                p.trainable = value and not p.statistic
        finally:
            if outermost:
                _trainable_walk.seen = None

    def count_params(self):
        """The number of weight values (trainable or not); refused before the layer is
        built, as Keras (0 would pass for an answer)."""
        if not self.built:
            raise ValueError(f"count_params: layer {self.name!r} has no weights yet: it is "
                             f"built with its model (or by calling it on an array)")
        return int(sum(int(np.prod(p.shape)) for p in self._params))

    def get_weights(self):
        """The weights as numpy arrays (copies), in the layer's order (Dense: kernel, bias)."""
        return [p.numpy() for p in self._params]

    def set_weights(self, weights):
        """Replace every weight from a list of arrays in get_weights' order; each is checked
        (shape) before any is assigned."""
        weights = list(weights)
        if len(weights) != len(self._params):
            raise ValueError(f"layer {self.name!r} has {len(self._params)} weight arrays, "
                             f"got {len(weights)}")
        # every array checked and converted before any is assigned: all or nothing
        arrays = [p.checked(w, f"layer {self.name!r}") for p, w in zip(self._params, weights)]
        for p, w in zip(self._params, arrays):
            p.assign(w)

    def regularized(self):
        """[(parameter, regularizer)] whose penalties join the loss: those add_weight was
        given, and those of the layers this one holds; none by default."""
        pairs = list(self._weight_regularizers)
        seen = {id(p) for p, _ in pairs}
        for layer in self.__dict__.get("_inner_layers", ()):  # each weight's penalty once
            for p, reg in layer.regularized():
                if id(p) not in seen:
                    seen.add(id(p))
                    pairs.append((p, reg))
        return pairs

    @property
    def losses(self):
        """The penalties the loss adds for this layer, as numbers (Keras' layer.losses): one
        per trainable weight with a regularizer, of its current value."""
        return [float(reg.penalty(p.backend.xp, p.value)) for p, reg in self.regularized()
                if p.trainable]

    # ---- computation ------------------------------------------------------------------------
    # The activation a loss may absorb (softmax/sigmoid with cross-entropy); None if none.
    output_activation = None

    def forward(self, x, training=False, logits=False):
        """The layer's output for the batch x (a backend array). training: as in a training
        step (dropout active, batch statistics), keeping what backward needs; logits: the
        layer is the model's last and its loss takes pre-activations (output_activation),
        so return those."""
        raise NotImplementedError(f"layer {self.name!r} ({type(self).__name__}) defines no "
                                  f"forward(x, training, logits)")

    def backward(self, dy, need_input_grad=True, logits=False):
        """Gradients of the parameters (into .grad) and, if asked, of the input."""
        raise NotImplementedError(f"layer {self.name!r} ({type(self).__name__}) defines no "
                                  f"backward(dy, need_input_grad, logits): it can predict but "
                                  f"not train")

    # ---- config ---------------------------------------------------------------------------
    def get_config(self):
        """The constructor arguments that rebuild the layer (cls(**config)), as JSON-able
        values: what model files store."""
        config = {"name": self.name, "trainable": self.trainable}
        if self.input_shape is not None and self.__dict__.get("_input_shape_given", True):
            config["input_shape"] = list(self.input_shape)
        activity = self.__dict__.get("activity_regularizer")
        if activity is not None:  # (only then, as Keras)
            from .. import regularizers

            config["activity_regularizer"] = regularizers.serialize(activity)
        return config

    @classmethod
    def from_config(cls, config):
        """The layer that get_config describes."""
        return cls(**config)

    @KerasAttribute
    def output(self):
        """Keras' layer.output, for pynn.Model(model.input, layer.output): the layer's
        output tensor in the functional definition it was first called in, else in the
        first model it was built in (functional.layer_output)."""
        from .. import functional

        return functional.layer_output(self)

    def __call__(self, x, training=False):
        """The layer on an array (built on first use; GPU arrays stay on a GPU backend):
        inference, or with training=True as in a training step (dropout active, batch
        statistics), as Keras' layer(x, training)."""
        from ..data import as_layer_input
        from . import ELEMENTWISE_LAYERS

        if not isinstance(x, np.ndarray):
            from .. import functional

            if isinstance(x, (list, tuple)) and len(x) == 1 and functional.is_symbolic(x[0]):
                x = x[0]  # ([tensor], as Keras takes a list of one)
            if functional.is_symbolic(x):  # Keras' functional form: Dense(64)(Input((784,)))
                return functional.call_layer(self, x, training)
            if type(x).__name__ == "KerasTensor":
                raise TypeError(f"layer {self.name!r} was called on a Keras tensor "
                                f"(keras.Input): pynn's layers are called on pynn.Input(...) "
                                f"to define a model, or on arrays")
        if isinstance(x, Layer):
            raise TypeError(f"layer {self.name!r} was called on the layer {x.name!r}: a "
                            f"layer is called on arrays, or on pynn.Input(...) (or another "
                            f"layer's output) to define a model")
        backend = self.backend or get_backend()
        x = as_layer_input(backend_array(x, backend, "x") if is_gpu_array(x) else x,
                           f"layer {self.name!r}: x",
                           1 if isinstance(self, ELEMENTWISE_LAYERS) else 2)
        if training and x.shape[0] == 0:  # (batch statistics of nothing:
            raise ValueError(f"layer {self.name!r}: a training call needs samples, got "
                             f"shape {tuple(x.shape)}")  # NaN moving statistics)
        dtype = config.floatx()
        if not self.built:
            self._build_marked(x.shape[1:], backend, dtype)
        # (a layer without weights takes any shape, but a last axis given by index its rank)
        elif not self.params and not self._takes_rank(x.shape[1:]):
            check_last_axis(f"{type(self).__name__} {self.name!r}", self.axis,
                            tuple(x.shape[1:]))
        elif self.params:  # (a layer without weights takes any shape, as Keras')
            self._check_call_shape(x.shape)
            if self.params[0].value.dtype != dtype:  # built in another floatx: its weights
                self.to_backend(self.backend, dtype)  # follow, as a model's do at next use
        x = backend.asarray(x, dtype)
        y = forward_of(self, x, training=bool(training)) if is_custom(type(self)) else \
            self.forward(x, training=bool(training))
        if training:
            self._cache = None  # no backward follows (inference leaves a pending one alone)
        y = backend.to_numpy(y)
        # a layer passing its input on (Dropout at inference, Flatten) gave the caller's
        # array or a view of it: a new one, as Keras'
        return y.copy() if isinstance(x, np.ndarray) and np.may_share_memory(y, x) else y

    def _on_last_axis(self):
        """Whether the layer works on the last axis only (Dense, the normalisations): built,
        it takes samples with any leading axes before that axis's size."""
        from . import LAST_AXIS_LAYERS

        return isinstance(self, LAST_AXIS_LAYERS) and bool(getattr(self, "input_shape", None))

    # Layers taking Keras' axis by its index too (axis=1 of (batch, features) inputs): a
    # positive axis is their inputs' rank
    axis_by_index = False

    def _takes_rank(self, sample_shape):
        """Whether samples of sample_shape have the rank a last axis given by index names."""
        axis = self.__dict__.get("axis") if type(self).axis_by_index else None
        return not (isinstance(axis, int) and axis > 0 and len(sample_shape) != axis)

    def _takes_samples(self, sample_shape):
        """Whether this layer, as built, takes samples of sample_shape: its input shape, or
        (on the last axis) other leading axes before that axis's size. Never broadcast (a
        (N, 1) column spread over 4 features)."""
        if not self._takes_rank(sample_shape):
            return False
        built = getattr(self, "input_shape", None)
        if built is None or tuple(sample_shape) == tuple(built):
            return True
        return self._on_last_axis() and len(sample_shape) >= 1 and \
            tuple(sample_shape)[-1] == tuple(built)[-1]

    def _check_call_shape(self, shape):
        """layer(x) on a built layer with weights: x's samples as _takes_samples says."""
        if self._takes_samples(tuple(shape[1:])):
            return
        built = self.input_shape
        want = "(batch, " + ", ".join(map(str, built)) + ")"
        if self._on_last_axis():
            want += f" (or (batch, ..., {built[-1]}))"
        raise ValueError(f"layer {self.name!r} ({type(self).__name__}) was built for inputs "
                         f"of shape {want}, got shape {tuple(shape)}")

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


def _same_memory(value, array):
    """Whether the backend array `value` is, or views, the caller's `array`."""
    if value is array:
        return True
    return isinstance(value, np.ndarray) and isinstance(array, np.ndarray) and \
        np.may_share_memory(value, array)

