"""Activation functions: names, parameters, and plain functions on arrays.

A layer stores an activation as a `Spec` (name + parameter), which the backend turns into a
kernel call (and the Dense layer into a GEMM epilogue). The functions below run the NumPy
reference on any array, for users and tests: `pynn.activations.relu(x)`.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np

# name -> default parameter (leaky_relu's negative slope and elu's alpha follow Keras 3; the
# others take none).
_DEFAULT_PARAMS = {"linear": 0.0, "relu": 0.0, "leaky_relu": 0.2, "elu": 1.0, "gelu": 0.0,
                   "gelu_tanh": 0.0, "sigmoid": 0.0, "tanh": 0.0, "softmax": 0.0, "silu": 0.0,
                   "softplus": 0.0, "softsign": 0.0, "selu": 0.0, "relu6": 0.0, "hard_sigmoid": 0.0,
                   "hard_silu": 0.0, "mish": 0.0, "exponential": 0.0}
NAMES = tuple(_DEFAULT_PARAMS)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Keras' other names for the same functions (a Spec keeps the first name).
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}
# Activations whose derivative is written in the pre-activation z, which training then keeps
# (the others' is written in their output y).
NEEDS_PRE_ACTIVATION = frozenset({"gelu", "gelu_tanh", "silu", "hard_silu", "mish",
                                  "softmax"})


@dataclass(frozen=True)
class Spec:
    """An activation by name with its one parameter (the negative slope for leaky_relu,
    default 0.2; alpha for elu, default 1.0; the others take none). Calling it applies the
    activation to an array: `Spec("leaky_relu", 0.1)(x)`, `pynn.activations.relu(x)`."""

    name: str
    param: float | None = None  # None: the activation's default (the name's meaning)

    def __post_init__(self):
        object.__setattr__(self, "name", ALIASES.get(self.name, self.name))
        if self.name not in _DEFAULT_PARAMS:
            raise ValueError(f"unknown activation {self.name!r}; known: "
                             f"{', '.join(NAMES + tuple(ALIASES))}")
        if self.param is None:  # Spec("leaky_relu") was a slope of 0: relu
            object.__setattr__(self, "param", _DEFAULT_PARAMS[self.name])
        if self.name in ("leaky_relu", "elu"):
            param = self.param
            if isinstance(param, bool) or not isinstance(param, numbers.Real):
                raise TypeError(f"{self.name} parameter must be a number, got {param!r}")
            # (the kernels take it in float32: 1e39 would be inf there, and 0 * inf NaN)
            if not (param >= 0 and param <= _FLOAT32_MAX):  # (NaN, inf, 10**400: False)
                raise ValueError(f"{self.name} parameter must be a finite number >= 0 (within "
                                 f"float32's range), got {param}")
            object.__setattr__(self, "param", float(param))
        elif self.param != _DEFAULT_PARAMS[self.name]:  # it would be stored, and ignored
            raise ValueError(f"{self.name} takes no parameter, got {self.param}")

    @property
    def __name__(self):  # as Keras' activation functions: layer.activation.__name__
        return self.name

    def get_config(self):
        """The name alone for the default parameter, else {'name', 'param'}."""
        if self.param == _DEFAULT_PARAMS[self.name]:
            return self.name
        return {"name": self.name, "param": self.param}

    def __call__(self, x, **options):
        """The activation of x: on the GPU, for a GPU backend's own array (a custom layer's
        forward), else by the numpy reference backend. Keras' keyword arguments are taken:
        leaky_relu's negative_slope, elu's alpha, relu's negative_slope, max_value and
        threshold, softmax's axis, gelu's approximate (True: the tanh form, gelu_tanh)."""
        from .backend import get_backend, gpu_backend_of

        backend = gpu_backend_of(x) or get_backend("numpy")
        if backend.xp is np:
            x = np.asarray(x)
        if x.dtype.kind not in "biuf":  # (a complex number's imaginary part would be dropped)
            raise TypeError(f"{self.name}: takes real numbers, got dtype {x.dtype}")
        x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
        if options:
            return self._with_options(backend.xp, x, options)
        return backend.activation_forward(self.name, x, self.param).reshape(x.shape)

    def _with_options(self, xp, x, options):
        """Keras' activation functions' keyword arguments (see __call__)."""
        known = {"leaky_relu": ("negative_slope",), "elu": ("alpha",),
                 "relu": ("negative_slope", "max_value", "threshold"), "softmax": ("axis",),
                 "gelu": ("approximate",)}.get(self.name, ())
        unknown = sorted(set(options) - set(known))
        if unknown:
            takes = f"takes {', '.join(known)}" if known else "takes no keyword arguments"
            raise TypeError(f"{self.name}: unexpected keyword argument(s) {', '.join(unknown)} "
                            f"({self.name} {takes})")
        if self.name in ("leaky_relu", "elu"):
            return Spec(self.name, float(options[known[0]]))(x)
        if self.name == "gelu":
            return Spec("gelu_tanh")(x) if options["approximate"] else self(x)
        if self.name == "softmax":
            axis = options["axis"]
            if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or \
                    not -x.ndim <= axis < x.ndim:
                raise ValueError(f"softmax: axis must be an integer axis of the "
                                 f"{x.ndim}-d input, got {axis!r}")
            return xp.moveaxis(self(xp.moveaxis(x, axis, -1)), -1, axis)
        # relu, as Keras 3's: x for x > threshold (else 0, or negative_slope (x - threshold)),
        # capped at max_value
        slope = float(options.get("negative_slope", 0.0))
        threshold = float(options.get("threshold", 0.0))
        cap = options.get("max_value")
        zero = x.dtype.type(0)
        y = xp.where(x > threshold, x, zero) if threshold else xp.maximum(x, zero)
        if cap is not None:
            y = xp.clip(y, zero, x.dtype.type(cap))
        if slope:
            y = y + xp.where(x > threshold, x.dtype.type(0), x.dtype.type(slope) * (x - threshold))
        return y


def get(identifier) -> Spec:
    """Spec from None (linear), a name, a {'name', 'param'} dict, a Spec or this module's
    functions."""
    if identifier is None:
        return Spec("linear")
    if isinstance(identifier, Spec):
        return identifier
    if isinstance(identifier, str):
        _not_a_custom_object(identifier)
        return Spec(identifier)
    if isinstance(identifier, dict) and "name" in identifier:  # a file's config
        _not_a_custom_object(identifier["name"])
        name, param = ALIASES.get(identifier["name"], identifier["name"]), identifier.get("param")
        if param is not None and name in _DEFAULT_PARAMS and name not in ("leaky_relu", "elu") \
                and float(param) != _DEFAULT_PARAMS[name]:
            # files written before a parameter was refused here kept it (never used): the
            # same model without it
            warnings.warn(f"activation {name!r} takes no parameter; the saved {param} is "
                          f"ignored, as it always was", UserWarning, stacklevel=2)
            param = None
        return Spec(name, None if param is None else float(param))
    from .layers import ACTIVATION_LAYERS  # (here: the layers import this module)
    from .layers.activation import Activation

    if isinstance(identifier, dict):  # a Keras file's description of such a layer
        cls = {c.__name__: c for c in ACTIVATION_LAYERS}.get(identifier.get("class_name"))
        if cls is not None:
            identifier = cls.from_config(identifier.get("config") or {})
    if isinstance(identifier, Activation):  # activation=LeakyReLU(0.2), as Keras takes it
        return identifier.activation
    raise ValueError(f"cannot interpret {identifier!r} as an activation; use a name "
                     f"({', '.join(NAMES + tuple(ALIASES))}) or pynn.activations.Spec(name, "
                     f"param)")


def serialize(activation):
    """Keras' activations.serialize: the activation's name, or {'name', 'param'} for another
    parameter than its default (what model files store), which deserialize and get take."""
    return get(activation).get_config()


def deserialize(config, custom_objects=None):
    """Keras' activations.deserialize: the activation (a Spec) a name or serialize's dict
    describes. pynn's activations are its own: one named in custom_objects is refused (it
    would be ignored)."""
    from .custom_objects import deserialize_with

    return deserialize_with(get, config, custom_objects, "activation")


def _not_a_custom_object(name):
    """Refuses an activation name given among the custom objects (custom_objects=, a scope,
    get_custom_objects()): Keras would use that function; pynn's activations are its own."""
    from .custom_objects import in_scope

    if isinstance(name, str) and name in in_scope():
        raise ValueError(f"activation {name!r} is given among the custom objects, but pynn's "
                         f"activations are its own (pynn has no autodiff: a function of "
                         f"yours needs its gradient too: a layer of yours with forward and "
                         f"backward)")


def leaky_relu_with(negative_slope: float) -> Spec:
    """A leaky_relu Spec with another negative slope."""
    return Spec("leaky_relu", float(negative_slope))


def elu_with(alpha: float) -> Spec:
    """An elu Spec with another alpha."""
    return Spec("elu", float(alpha))


def _documented(spec, doc):
    """spec with its own docstring (help(pynn.activations.relu) shows the formula, not
    Spec's class text); equality, hashing and pickling are unchanged."""
    object.__setattr__(spec, "__doc__", doc)
    return spec


linear = _documented(Spec("linear"), "linear(x) = x.")
relu = _documented(Spec("relu"), "relu(x) = max(x, 0).")
leaky_relu = _documented(
    Spec("leaky_relu", 0.2),
    "leaky_relu(x) = x for x > 0, else 0.2 x (Keras 3's slope; leaky_relu_with(s) for another).")
elu = _documented(
    Spec("elu", 1.0),
    "elu(x) = x for x > 0, else alpha (exp(x) - 1), alpha 1.0 (elu_with(a) for another).")
gelu = _documented(
    Spec("gelu"),
    "gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), Phi the standard normal distribution "
    "(Keras' and PyTorch's gelu; gelu(x, approximate=True) is gelu_tanh).")
gelu_tanh = _documented(
    Spec("gelu_tanh"),
    "gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))): gelu's tanh "
    "approximation (Keras' gelu(approximate=True), PyTorch's GELU(approximate='tanh'); "
    "pynn's 'gelu' before files of format version 2).")
sigmoid = _documented(Spec("sigmoid"), "sigmoid(x) = 1 / (1 + exp(-x)).")
tanh = _documented(Spec("tanh"), "tanh(x), the hyperbolic tangent.")
softmax = _documented(
    Spec("softmax"),
    "softmax(x) = exp(x) / sum(exp(x)) over the last axis (computed stably).")
silu = swish = _documented(Spec("silu"), "silu(x) = swish(x) = x sigmoid(x).")
softplus = _documented(
    Spec("softplus"),
    "softplus(x) = log(1 + exp(x)) (computed without overflow).")
softsign = _documented(Spec("softsign"), "softsign(x) = x / (1 + |x|).")
selu = _documented(
    Spec("selu"),
    "selu(x) = scale x for x > 0, else scale alpha (exp(x) - 1), Keras' constants (scale "
    "1.0507..., alpha 1.6733...).")
relu6 = _documented(Spec("relu6"), "relu6(x) = min(max(x, 0), 6).")
hard_sigmoid = _documented(Spec("hard_sigmoid"), "hard_sigmoid(x) = relu6(x + 3) / 6 (Keras 3's).")
hard_silu = hard_swish = _documented(
    Spec("hard_silu"),
    "hard_silu(x) = hard_swish(x) = x hard_sigmoid(x).")
mish = _documented(Spec("mish"), "mish(x) = x tanh(softplus(x)).")
exponential = _documented(
    Spec("exponential"),
    "exponential(x) = exp(x) (Keras'; inf beyond the float range): a positive output, as "
    "for counts or rates (with the Poisson loss).")
