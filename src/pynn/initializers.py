"""Weight initializers with Keras' names ('glorot_uniform' or 'GlorotUniform', as Keras takes
either). Each draws on the host from pynn's seeded generator (`pynn.set_seed`), so a run is
reproducible on every backend; the layer then moves the array. Fans follow Keras for a Dense
kernel (in, out): fan_in = in, fan_out = out.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import config
from . import custom_objects as _custom


def _fans(shape):
    if len(shape) == 0:  # a scalar weight: fans of 1, as Keras
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _number(owner, name, value, least=None):
    """A finite real argument (>= least when given), as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or (least is not None and value < least):
        more = "" if least is None else f" >= {least:g}"
        raise ValueError(f"{owner}: {name} must be a finite number{more}, got {value!r}")
    return float(value)


def _truncated_unit_normal(rng, shape):
    """Unit normal draws, each beyond two standard deviations drawn again (Keras' truncation)."""
    w = np.asarray(rng.normal(0.0, 1.0, size=shape))
    bad = np.abs(w) > 2
    while bad.any():
        w[bad] = rng.normal(0.0, 1.0, size=int(bad.sum()))
        bad = np.abs(w) > 2
    return w


def _float_dtype(initializer, dtype):
    """dtype, a float type: random values cast to integers were zeros, silently (Keras
    refuses integer dtypes for its random initializers too)."""
    kind = np.dtype(dtype)
    if kind.kind != "f":
        raise ValueError(f"{type(initializer).__name__}: draws floating-point values; "
                         f"expected a float dtype, got {kind}")
    return kind


class Initializer(_custom.AutoConfig):
    """Base class: an initializer is called as `initializer(shape, dtype)` and returns a new
    numpy array (a layer then moves it to its backend). A subclass of your own defines
    `__call__` and, if its constructor takes arguments, `get_config`."""

    def __call__(self, shape, dtype="float32"):
        """A new numpy array of `shape` (a tuple of ints) and `dtype` holding the initial
        values."""
        raise NotImplementedError

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {}

    @classmethod
    def from_config(cls, config):
        """The initializer get_config describes (Keras' from_config)."""
        return cls(**config)

    def clone(self):
        """A new initializer of the same settings (Keras' clone)."""
        return type(self).from_config(self.get_config())


class _Seeded(Initializer):
    """A random initializer. seed=None draws from pynn's generator (pynn.set_seed); an
    integer seed in [0, 2**64) gives the same values at every call for the same shape, as in
    Keras 3."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(
                seed, (int, np.integer)) or not 0 <= seed < 2**64):
            raise ValueError(f"{type(self).__name__}: seed must be None or an integer in "
                             f"[0, 2**64), got {seed!r}")
        self.seed = None if seed is None else int(seed)

    def _rng(self):
        return config.rng() if self.seed is None else np.random.default_rng(self.seed)

    def get_config(self):
        return {} if self.seed is None else {"seed": self.seed}


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    """Every element equal to `value`."""

    def __init__(self, value=0.0):
        # a one-element array too (Keras code writes Constant(np.log([pos / neg])))
        try:  # (a numeric string, as float() took before)
            array = np.asarray(float(value) if isinstance(value, str) else value)
        except ValueError:
            array = np.asarray(None)
        if array.size != 1 or array.dtype.kind not in "biuf":
            raise ValueError(f"Constant: value must be one number, got {value!r:.60}")
        self.value = float(array.reshape(()))

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(_Seeded):
    """Normal(mean, stddev) draws (from pynn's seeded generator unless seed= is given)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        owner = type(self).__name__
        self.mean = _number(owner, "mean", mean)
        self.stddev = _number(owner, "stddev", stddev, least=0)

    def __call__(self, shape, dtype="float32"):
        return self._rng().normal(self.mean, self.stddev, size=shape).astype(
            _float_dtype(self, dtype))

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class RandomUniform(_Seeded):
    """Uniform(minval, maxval) draws (from pynn's seeded generator unless seed= is given)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = _number("RandomUniform", "minval", minval)
        self.maxval = _number("RandomUniform", "maxval", maxval)

    def __call__(self, shape, dtype="float32"):
        # minval above maxval: between the two, as Keras draws it
        low, high = sorted((self.minval, self.maxval))
        return self._rng().uniform(low, high, size=shape).astype(_float_dtype(self, dtype))

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class TruncatedNormal(_Seeded):
    """Normal(mean, stddev) draws, each more than two stddev from the mean drawn again (Keras';
    the spread is then about 0.88 stddev, not rescaled). seed: None draws from pynn's seeded
    generator; an integer gives the same values at every call."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        owner = type(self).__name__
        self.mean = _number(owner, "mean", mean)
        self.stddev = _number(owner, "stddev", stddev, least=0)

    def __call__(self, shape, dtype="float32"):
        w = _truncated_unit_normal(self._rng(), shape)
        return (self.mean + self.stddev * w).astype(_float_dtype(self, dtype))

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class Orthogonal(_Seeded):
    """An orthogonal matrix times `gain` (Keras 3): the Q of a normal matrix's QR, its columns'
    signs those of R's diagonal (so Q is uniformly distributed), for the shape flattened to
    (prod(shape[:-1]), shape[-1]); rows or columns orthonormal, whichever are fewer; shapes of
    two or more axes only. seed: None draws from pynn's seeded generator; an integer gives
    the same matrix at every call."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = float(gain)

    def __call__(self, shape, dtype="float32"):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: the shape must have 2 or more dimensions, got "
                             f"{shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = self._rng().normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.where(np.diag(r) < 0, -1.0, 1.0)  # not np.sign: a 0 would zero a column
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(_float_dtype(self, dtype))

    def get_config(self):
        return {"gain": self.gain, **super().get_config()}


class Identity(Initializer):
    """`gain` times the identity matrix (ones on the diagonal of a non-square one); 2-D shapes
    only."""

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def __call__(self, shape, dtype="float32"):
        shape = tuple(shape)
        if len(shape) != 2:
            raise ValueError(f"Identity: the shape must be 2-D (a matrix), got {shape}")
        return (self.gain * np.eye(*shape)).astype(dtype)

    def get_config(self):
        return {"gain": self.gain}


def _default_axes(owner, input_axes, output_axes):
    """Keras 3.15's fan axes, which its configs carry: only the default (None: the fans of
    the shape's last two axes) is taken."""
    if input_axes is not None or output_axes is not None:
        raise NotImplementedError(f"{owner}: input_axes/output_axes other than None (the "
                                  f"last two axes' fans) are not supported")


class VarianceScaling(_Seeded):
    """Keras' VarianceScaling: draws of variance scale / max(1, fan). `mode` picks the fan:
    "fan_in" (default), "fan_out" or "fan_avg" (their mean); for a Dense kernel (in, out)
    fan_in is in and fan_out is out. `distribution`: "truncated_normal" (default; cut at two
    standard deviations and rescaled so the variance is kept, as Keras), "untruncated_normal"
    or "uniform" (in +-sqrt(3 * variance)). seed: None draws from pynn's seeded generator; an
    integer gives the same values at every call."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        super().__init__(seed)
        _default_axes(type(self).__name__, input_axes, output_axes)
        if isinstance(distribution, str):  # (Keras lowercases it; "normal" is Keras 2's
            distribution = distribution.lower()  # name of the truncated normal)
            distribution = "truncated_normal" if distribution == "normal" else distribution
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not scale > 0 \
                or not math.isfinite(scale):
            raise ValueError(f"VarianceScaling: scale must be a positive number, got "
                             f"{scale!r}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: mode must be fan_in, fan_out or fan_avg, got "
                             f"{mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"VarianceScaling: unknown distribution {distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = _fans(tuple(shape))
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            w = rng.uniform(-limit, limit, size=shape)
        elif self.distribution == "untruncated_normal":
            w = rng.normal(0.0, math.sqrt(variance), size=shape)
        else:
            # Normal truncated at two standard deviations, rescaled to keep the variance
            # (0.8796... is the std of a unit normal truncated to [-2, 2]), as Keras does.
            std = math.sqrt(variance) / 0.87962566103423978
            w = _truncated_unit_normal(rng, shape) * std
        return w.astype(_float_dtype(self, dtype))

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **super().get_config()}


class _Preset(VarianceScaling):
    """A named VarianceScaling whose settings are fixed by its class (seed= alone: None draws
    from pynn's seeded generator, an integer gives the same values at every call)."""

    preset = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(*self.preset, seed=seed, input_axes=input_axes,
                         output_axes=output_axes)

    def get_config(self):
        return {} if self.seed is None else {"seed": self.seed}


class GlorotUniform(_Preset):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)) (Xavier uniform), Keras' default kernel
    initializer. seed: None draws from pynn's seeded generator; an integer gives the same
    values at every call."""

    preset = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Preset):
    """Truncated normal with variance 2 / (fan_in + fan_out) (Xavier normal). seed: None
    draws from pynn's seeded generator; an integer gives the same values at every call."""

    preset = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_Preset):
    """Uniform in +-sqrt(6 / fan_in), for ReLU layers. seed: None draws from pynn's seeded
    generator; an integer gives the same values at every call."""

    preset = (2.0, "fan_in", "uniform")


class HeNormal(_Preset):
    """Truncated normal with variance 2 / fan_in, for ReLU layers. seed: None draws from
    pynn's seeded generator; an integer gives the same values at every call."""

    preset = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    """Uniform in +-sqrt(3 / fan_in), for SELU layers. seed: None draws from pynn's seeded
    generator; an integer gives the same values at every call."""

    preset = (1.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    """Truncated normal with variance 1 / fan_in, for SELU layers. seed: None draws from
    pynn's seeded generator; an integer gives the same values at every call."""

    preset = (1.0, "fan_in", "truncated_normal")


class FunctionInitializer(Initializer):
    """A plain function `fn(shape, dtype=None)` used as an initializer (Keras takes one as
    `kernel_initializer=fn`): its values are checked for shape and copied, since the function
    may return an array it keeps. A model file names it by the function's name; loading finds
    it through custom_objects={name: fn}, as any function of your own."""

    def __init__(self, fn):
        if not callable(fn):
            raise ValueError(f"FunctionInitializer: {fn!r} is not callable")
        self.fn = fn

    def __call__(self, shape, dtype="float32"):
        name = getattr(self.fn, "__name__", repr(self.fn))
        values = self.fn(tuple(shape), dtype=dtype)
        try:
            array = np.array(values, dtype=dtype)  # a copy: the weight owns its values
        except (TypeError, ValueError) as exc:
            raise ValueError(f"initializer {name!r} returned {type(values).__name__}, not "
                             f"numbers of dtype {dtype} ({exc})") from None
        if array.shape != tuple(shape):
            raise ValueError(f"initializer {name!r} returned an array of shape {array.shape} "
                             f"for a weight of shape {tuple(shape)}")
        return array

    def get_config(self):
        return {}

    def clone(self):
        return FunctionInitializer(self.fn)


_BY_NAME = {
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "random_normal": RandomNormal, "random_uniform": RandomUniform,
    "truncated_normal": TruncatedNormal, "orthogonal": Orthogonal, "identity": Identity,
    "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform, "xavier_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal, "xavier_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
}
_CLASS_NAMES = {cls.__name__: cls for cls in _BY_NAME.values()}
# Keras 3's own class names for these two (its files name them so)
_CLASS_NAMES.update(OrthogonalInitializer=Orthogonal, IdentityInitializer=Identity)

# Keras 3 exports each class under its name in snake case too (keras.initializers.he_normal
# is HeNormal: he_normal(seed=1) makes one)
zeros, ones, constant = Zeros, Ones, Constant
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
orthogonal, identity, variance_scaling = Orthogonal, Identity, VarianceScaling
glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal = (
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal)
OrthogonalInitializer, IdentityInitializer = Orthogonal, Identity


def get(identifier) -> Initializer:
    """An Initializer from a name ('glorot_uniform', 'he_normal', 'HeNormal', ...), a config
    dict, an Initializer or an Initializer class, or a function fn(shape, dtype=None); None
    is Keras' default for a weight, glorot_uniform (Keras 3's add_weight: its layers given
    bias_initializer=None draw the bias so)."""
    if identifier is None:
        return GlorotUniform()
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Initializer) and \
            identifier is not Initializer:  # (the base draws nothing)
        return identifier()  # a class, as Keras takes it (kernel_initializer=HeNormal)
    if isinstance(identifier, str):
        # Keras takes either form: 'he_normal' or its class name 'HeNormal'
        cls = _CLASS_NAMES.get(identifier) or _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown initializer {identifier!r}; known: {', '.join(_BY_NAME)} "
                             f"(or their class names, 'HeNormal')")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        found = _custom.find(identifier, _CLASS_NAMES.get, "initializer")
        if not isinstance(found, type):  # a function of the user's (serialize)
            return FunctionInitializer(found)
        return found(**_custom.config_of(identifier, "initializer"))
    if callable(identifier) and not isinstance(identifier, type):
        return FunctionInitializer(identifier)  # Keras' fn(shape, dtype=None)
    raise ValueError(f"cannot interpret {identifier!r} as an initializer (a name, an "
                     f"Initializer instance or class, or a function fn(shape, dtype=None))")


def serialize(init: Initializer) -> dict:
    """The {'class_name', 'config'} dict that `get` turns back into the initializer (a
    function by its name, found again through custom_objects)."""
    if type(init) is FunctionInitializer:
        spec = {"class_name": getattr(init.fn, "__name__", "<function>"), "config": {},
                "custom": True}
        registered = _custom.registered_name(init.fn)
        return spec if registered is None else {**spec, "registered_name": registered}
    return _custom.describe(init)


def deserialize(config, custom_objects=None):
    """The initializer a config (serialize's, or Keras') or a name describes, a class of your own
    from custom_objects={name: class} (Keras' deserialize)."""
    return _custom.deserialize_with(get, config, custom_objects, "initializer")
