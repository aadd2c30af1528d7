"""Optimizers with Keras 3's names, defaults and update formulas.

An optimizer keeps per-parameter state arrays (on the parameter's backend) and applies one
fused update per parameter through the backend contract. `learning_rate` is a number, a
schedule (pynn.schedules), a function of the step or a function of no argument (Keras');
a number can be changed at any time, also during `fit` (a callback may set
`model.optimizer.learning_rate`). Gradients can be clipped first, as in Keras: `clipvalue`
element-wise, `clipnorm` per tensor by its L2 norm, `global_clipnorm` all tensors together
by their joint norm; one of them, as in Keras 3 (ValueError otherwise; a file saved when
pynn took clipvalue beside a norm, applying the norm alone, loads with the norm alone and a
warning); 0 or None is no clipping, as in Keras. Every optimizer takes Keras 3's decoupled
`weight_decay` (w -= lr * weight_decay * w before the update; None or 0: none), which
`exclude_from_weight_decay` keeps off chosen weights.

An optimizer of your own subclasses Optimizer (or one of pynn's), names its per-weight
state arrays in the class attribute `slots` and defines `_update(self, b, w, g, s, lr)`:
update the weight array w in place from its gradient g, its slots s ({name: array} with
w's shape) and the rate lr, with numpy-style operations (b: the weight's backend, b.xp its
array module). Keras' update_step(gradient, variable, learning_rate) is not called by pynn
(compile refuses a class defining it instead of _update).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import math
import numbers
import re
import sys
import threading
import warnings
import weakref

import numpy as np

from . import config, constraints, schedules  # schedules: also keras.optimizers.schedules' place
from . import custom_objects as _custom
from .data import sum_of
from .schedules import LearningRateSchedule


def _check_real(name, value):
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()  # (a 0-d array, as the learning rate takes)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value \
            or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_positive(name, value, allow_zero=False):
    value = _check_real(name, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_rate(name, value):
    """A learning rate: a number >= 0 that float32 weights can take (1e39 would be inf)."""
    value = _check_positive(name, value, allow_zero=True)
    if value > FLOAT32_MAX:
        raise ValueError(f"{name} must be at most float32's largest number "
                         f"({FLOAT32_MAX:.4g}), got {value:g}")
    return value


def _check_clipping(name, value):
    """A clipping bound: a number > 0, or 0 for no clipping (Keras' `if self.clipnorm and
    self.clipnorm > 0`: Keras configs may hold it)."""
    value = _check_real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be > 0 (0 or None: no clipping), got {value}")
    return value


def _check_fraction(name, value, closed=False):
    """value in [0, 1), or with closed in [0, 1] (Keras' momenta)."""
    value = _check_positive(name, value, allow_zero=True)
    if value > 1 if closed else value >= 1:
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value}")
    return value


def _check_lion_beta_1(name, value):
    """Lion's beta_1, in (0, 1] as Keras' (1 steps by the sign of the momentum alone)."""
    value = _check_positive(name, value)
    if value > 1:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


def _check_at_most_zero(name, value):
    value = _check_real(name, value)
    if value > 0:
        raise ValueError(f"{name} must be <= 0, got {value}")
    return value


def _check_below_zero(name, value):
    value = _check_real(name, value)
    if value >= 0:  # (Adafactor's 1 - t^decay would not stay in [0, 1))
        raise ValueError(f"{name} must be < 0, got {value}")
    return value


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _gradient_array(grad, weight, to_host):
    """A gradient given for weight, copied onto the weight's backend in its dtype; its shape
    must be the weight's (never broadcast), its numbers real."""
    xp, dtype = weight.backend.xp, weight.value.dtype
    kind = getattr(getattr(grad, "dtype", None), "kind", None)
    if kind is None:
        try:
            kind = np.asarray(to_host(grad)).dtype.kind
        except (TypeError, ValueError):
            kind = "O"
    if kind not in "biuf":  # (text parsed as numbers, complex numbers cut to their real part)
        raise TypeError(f"apply_gradients: the gradient of {weight.name!r} must be an array of "
                        f"real numbers, got {type(grad).__name__} of kind {kind!r}")
    g = np.array(to_host(grad), dtype=dtype) if xp is np else xp.array(grad, dtype=dtype)
    if g.shape != weight.value.shape:  # (never broadcast: a (3,) grad of a (2, 3) weight)
        raise ValueError(f"apply_gradients: the gradient of {weight.name!r} has shape "
                         f"{g.shape}, the weight {weight.value.shape}")
    return g


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_, numbers.Integral)) or value not in (0, 1):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _patterns(name, value):
    """A list of regular expressions (text), each compiled once to check it."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a list of regular expressions (text), got {value!r}")
    try:
        patterns = list(value)
    except TypeError:
        raise TypeError(f"{name} must be a list of regular expressions (text), got "
                        f"{value!r}") from None
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"{name} must be a list of regular expressions (text), got "
                            f"{pattern!r} in it")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{name}: {pattern!r} is not a regular expression ({exc})") \
                from None
    return patterns


def _check_name(name, value):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    return value


def _no_loss_scale(name, value):
    if value is not None:  # a Keras 3 option pynn lacks: refused, not ignored
        raise NotImplementedError(f"{name}={value!r} is not supported by pynn (leave it at "
                                  f"None)")
    return value


def _checked_ema(momentum, frequency):
    """use_ema's two settings, checked (Keras checks them with use_ema only)."""
    _check_fraction("ema_momentum", momentum, closed=True)
    if frequency is not None and (isinstance(frequency, bool) or
                                  not isinstance(frequency, numbers.Integral) or
                                  frequency < 0):
        raise ValueError(f"ema_overwrite_frequency must be an integer >= 1, or 0 or None "
                         f"(never), got {frequency!r}")


_CLIPPING = ("clipnorm", "clipvalue", "global_clipnorm")


def _or_none(check):
    """check, letting None (off) through."""
    return lambda name, value: None if value is None else check(name, value)


_FRACTION = _check_fraction  # [0, 1)
_MOMENTUM = functools.partial(_check_fraction, closed=True)  # Keras' momenta: [0, 1]
_AT_LEAST_ZERO = functools.partial(_check_positive, allow_zero=True)


def _takes_no_step(function):
    """Whether a learning-rate function is Keras' kind, called with no arguments, rather
    than pynn's function of the step (also what one callable either way is taken for); a
    TypeError naming the problem for a callable that takes neither."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # (some builtins have none: called with the step)
        return False
    try:
        signature.bind(0)
        return False
    except TypeError:
        pass
    try:
        signature.bind()
        return True
    except TypeError:
        raise TypeError(f"learning_rate: a function for the rate takes the step (pynn's "
                        f"schedules) or no argument (Keras'), got {function!r} taking "
                        f"{signature}") from None


_RATES_ASIDE = threading.local()  # ids of the optimizers whose rate function is set aside


class _LearningRate(float):
    """optimizer.learning_rate for the user: a float that also answers Keras' variable calls,
    so `optimizer.learning_rate.assign(1e-4)` and `.numpy()` work as in Keras. pynn's own
    code uses plain floats (`Optimizer.rate()`): a float subclass made numpy compute float32
    updates in float64, and CuPy refuses it as a scalar."""

    def __new__(cls, value, optimizer):
        rate = super().__new__(cls, value)
        rate._optimizer = weakref.ref(optimizer)  # a kept rate must not keep the state alive
        return rate

    def assign(self, value):
        optimizer = self._optimizer()
        if optimizer is None:
            raise RuntimeError("assign: the optimizer this learning rate belonged to is gone")
        optimizer.learning_rate = value

    def numpy(self):
        return float(self)

    def __reduce__(self):  # copies and pickles are plain floats
        return float, (float(self),)


class _StepCount(int):
    """optimizer.iterations: an int with Keras' variable methods numpy() and assign(n)
    (which sets the optimizer's count, e.g. to restart bias correction)."""

    def numpy(self):
        return int(self)

    def assign(self, value):
        self._owner.iterations = value  # (checked there)

    def __reduce__(self):
        return int, (int(self),)


def _sum_of_squares(g):
    """sum(g^2), again in float64 when float32 overflowed (a gradient of 1e20: the clipping
    then zeroed the step; the native engine sums in double)."""
    return sum_of(lambda a: a * a, g)


def _constrain(params):
    """Keras 3's last act of a step: each weight with a constraint projected by it (also on
    an accumulating step, which leaves the weights as they were)."""
    for p in params:
        if p.constraint is not None:
            constraints.apply(p)


def _check_keras2_arguments(owner, arguments):
    """Keras 2's optimizer arguments: decay 0 (what Keras 2 configs hold) is taken, as Keras
    3 does; any other decay, lr and unknown names are refused by name (Keras 3 ignores a
    decay with a warning: it trains otherwise than the file's model)."""
    arguments = dict(arguments)
    decay = arguments.pop("decay", None)
    if decay not in (None, 0, 0.0):
        raise ValueError(f"{owner}: decay={decay!r} is Keras 2's time decay, gone in Keras 3 "
                         f"and pynn: learning_rate=pynn.optimizers.schedules."
                         f"InverseTimeDecay(rate, 1, {decay!r}) decays the same way")
    if "lr" in arguments:
        raise TypeError(f"{owner}: lr is Keras 2's name; pass learning_rate=")
    if arguments:
        raise TypeError(f"{owner}: unexpected argument(s) {sorted(arguments)}")


class Optimizer(_custom.AutoConfig):
    """Base class: subclasses name their state slots and implement `_update` (see the
    module docstring).

    learning_rate (each class has Keras' default) is a number >= 0, a pynn.schedules
    schedule, a function of the step or a function of no argument (Keras'). After its own
    arguments every optimizer takes Keras 3's shared ones, by keyword: `clipnorm`,
    `clipvalue`, `global_clipnorm` (at most one, 0 or None: off; see the module docstring),
    `weight_decay` (decoupled: w -= lr * weight_decay * w before the update; None: 0),
    `name` (Keras' default name if None), `use_ema` with `ema_momentum` (0.99)
    and `ema_overwrite_frequency` (a moving average of the weights, written into them every
    that many updates and when fit ends; None or 0: only when fit ends),
    `gradient_accumulation_steps` (None, or k >= 2: update every k-th step with the mean of
    the k gradients); `loss_scale_factor` is accepted for Keras compatibility and must stay
    None (NotImplementedError otherwise)."""

    slots: tuple[str, ...] = ()
    _fuses_weight_decay = False  # Adam's update applies it in the same pass
    weight_decay = 0.0  # (class defaults: optimizers pickled before these existed load)
    use_ema, ema_momentum, ema_overwrite_frequency = False, 0.99, None
    name = None
    _accumulation_steps = None
    # Each class's own hyperparameters and their checks, applied whenever one is set (in
    # __init__, or later by a callback or by hand: beta_1 = 1.5 set mid-fit diverged); a
    # subclass's table adds to its bases' (__init_subclass__).
    _checks: dict = {"use_ema": _check_flag, "name": _check_name,
                     "loss_scale_factor": _no_loss_scale}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        checks = {}
        for klass in reversed(cls.__mro__):
            checks.update(vars(klass).get("_checks", {}))
        cls._checks = checks

    def __init__(self, learning_rate, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 weight_decay=None, name=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, **keras2):
        _check_keras2_arguments(type(self).__name__, keras2)
        self.learning_rate = learning_rate
        self.training_steps = 0  # apply() calls; Keras' optimizer.iterations counts updates
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._state = {}  # id(param) -> (param, {slot: array}); the param guards against a
        #                   freed parameter's id being reused by a new one
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("only one of clipnorm, clipvalue and global_clipnorm can be set "
                             "(as in Keras 3)")
        # (checked by __setattr__: 0 is off, as in Keras)
        self.clipnorm, self.clipvalue = clipnorm, clipvalue
        self.global_clipnorm = global_clipnorm
        # Keras 3's decoupled weight decay, an argument of every optimizer: w -= lr * wd * w
        # before the update (None: 0, by __setattr__)
        self.weight_decay = weight_decay
        self.name = self._default_name() if name is None or name == "" else name
        try:
            _no_loss_scale("loss_scale_factor", loss_scale_factor)
        except NotImplementedError as exc:
            raise NotImplementedError(f"{type(self).__name__}: {exc}") from None
        # Keras 3's moving average of the weights: updated after each step, written into the
        # weights every ema_overwrite_frequency steps and when fit ends (the two checked with
        # use_ema only, as Keras, by __setattr__; a frequency of 0 or None: never)
        self.ema_momentum, self.ema_overwrite_frequency = ema_momentum, ema_overwrite_frequency
        self.use_ema = use_ema

    def _check_ema(self):
        _checked_ema(self.ema_momentum, self.ema_overwrite_frequency)

    def __setattr__(self, name, value):
        # Checked when set after construction too (a callback turning clipping off with 0,
        # Keras' weight_decay=None): such values crashed or silently stopped training
        check = self._checks.get(name)
        if check is not None:
            value = check(name, value)
        elif name in _CLIPPING and value is not None:
            value = _check_clipping(name, value)
            others = [c for c in _CLIPPING if c != name and self.__dict__.get(c)]
            if value and others:  # (the constructor's rule; set later, one was ignored)
                raise ValueError(f"only one of clipnorm, clipvalue and global_clipnorm can be "
                                 f"set (as in Keras 3): set {others[0]} to None first")
        elif name == "weight_decay":
            value = (0.0 if value is None else
                     _check_positive("weight_decay", value, allow_zero=True))
        if name in ("use_ema", "ema_momentum", "ema_overwrite_frequency"):
            settings = {"use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                        "ema_overwrite_frequency": self.ema_overwrite_frequency, name: value}
            if settings["use_ema"]:  # (checked before it is set: a bad one failed mid-step)
                _checked_ema(settings["ema_momentum"], settings["ema_overwrite_frequency"])
        object.__setattr__(self, name, value)
        # set mid-fit: a native engine that lacks the decay must leave; one built for other
        # slots (amsgrad's v_hat, SGD's velocity) must be rebuilt
        if name in ("weight_decay", "amsgrad", "momentum", "use_ema", "centered"):
            config.settings_changed()

    @property
    def training_steps(self):
        """The number of steps taken (apply calls; Keras' internal `_iterations`): the
        schedules' step, and what dropout masks and shuffling follow. Equal to `iterations`
        unless gradients are accumulated."""
        d = self.__dict__  # ("iterations": optimizers pickled before it was a property)
        return d["_iterations"] if "_iterations" in d else d.get("iterations", 0)

    @training_steps.setter
    def training_steps(self, value):
        self._iterations = int(value)

    @property
    def iterations(self):
        """The number of completed update steps (an int with Keras' .numpy()): with
        gradient_accumulation_steps k, training_steps // k, as in Keras."""
        count = _StepCount(self.training_steps // (self.gradient_accumulation_steps or 1))
        count._owner = self
        return count

    @iterations.setter
    def iterations(self, value):
        count = np.asarray(value) if not isinstance(value, (bool, str)) else None
        if count is None or count.ndim or count.dtype.kind not in "iuf" or \
                not np.isfinite(count) or count != np.floor(count) or count < 0:
            # (-5 made the schedules' rates run backwards and the next step fail in a
            # kernel; 2.7 became 2)
            raise ValueError(f"iterations: expected a count >= 0, got {value!r}")
        self.training_steps = int(count) * (self.gradient_accumulation_steps or 1)

    def _update_count(self):
        """int(self.iterations), read by the updates once per weight (without making a
        _StepCount each time)."""
        return self.training_steps // (self.gradient_accumulation_steps or 1)

    @property
    def gradient_accumulation_steps(self):
        """Keras 3's gradient accumulation: None, or k >= 2: the weights change every k-th
        step, by the mean of the k steps' gradients (kept in the slot
        "gradient_accumulator")."""
        return self._accumulation_steps

    @gradient_accumulation_steps.setter
    def gradient_accumulation_steps(self, value):
        if value is not None and (isinstance(value, bool) or
                                  not isinstance(value, numbers.Integral) or
                                  (value != 0 and value < 2)):
            raise ValueError(f"gradient_accumulation_steps must be an integer >= 2, or None "
                             f"(Keras' 0 too: no accumulation), got {value!r}")
        self._accumulation_steps = None if value is None or value == 0 else int(value)
        config.settings_changed()  # the native engine updates every step: it must leave

    @property
    def learning_rate(self):
        """The rate the next update uses (a schedule evaluated at the current step): a float
        with Keras' variable methods `assign(value)` and `numpy()`."""
        return _LearningRate(self.rate(), self)

    def rate(self):
        """The rate the next update uses, a plain float."""
        if self._schedule is not None:
            return self._scheduled_rate(self.training_steps)  # (Keras: steps, not updates)
        return self._learning_rate

    def _scheduled_rate(self, step):
        # Keras' learning_rate callable takes no arguments (pynn's functions take the step)
        rate = (self._schedule() if self.__dict__.get("_rate_takes_no_step")
                else self._schedule(step))
        if getattr(rate, "shape", None) == ():  # a 0-d array (np.where, a Keras schedule's)
            rate = rate.item()
        return _check_rate("learning_rate (from the schedule)", rate)

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, LearningRateSchedule) or (callable(value) and
                                                       not isinstance(value, numbers.Real)):
            no_step = (not isinstance(value, LearningRateSchedule)
                       and _takes_no_step(value))
            self._schedule, self._learning_rate = value, None
            self._rate_takes_no_step = no_step
            return
        if getattr(self, "_schedule", None) is not None:  # as Keras: not silently dropped
            raise TypeError("this optimizer's learning rate is a schedule: it cannot be set "
                            "to a number (as in Keras); create the optimizer with a float "
                            "learning_rate, or set another schedule")
        if getattr(value, "shape", None) == ():  # numpy 0-d arrays, torch scalars
            value = value.item()
        # 0 is a rate (a warm-up's start, a decay's end), as in Keras
        self._schedule, self._learning_rate = None, _check_rate("learning_rate", value)

    @contextlib.contextmanager
    def function_rate_aside(self):
        """While in it, a learning rate that is a plain function of the step (which no file
        can hold) is set aside for the rate it gives now; yields the function (None
        without). Pickling, clone_model and BackupAndRestore carry it by other means."""
        function = self._schedule
        if function is None or isinstance(function, LearningRateSchedule):
            yield None
            return
        # a mark of this thread's, read by get_config: the optimizer itself is not changed
        # (another thread may be training with it)
        previous = getattr(_RATES_ASIDE, "ids", frozenset())
        _RATES_ASIDE.ids = previous | {id(self)}
        try:
            yield function
        finally:
            _RATES_ASIDE.ids = previous

    @property
    def has_schedule(self):
        """Whether the learning rate is a schedule (or a function of the step) rather than a
        number."""
        return self._schedule is not None

    def scheduled_rates(self, first_step, count):
        """The schedule's rates for steps first_step .. first_step + count - 1 (the native
        engine runs several steps per call)."""
        if not self.__dict__.get("_rate_takes_no_step"):
            return [self._scheduled_rate(step) for step in range(first_step, first_step + count)]
        # Keras' function of no argument reads the optimizer (its iterations): each call
        # sees the step count its step has, as on the layer path (all saw the first)
        start = self.training_steps
        try:
            rates = []
            for step in range(first_step, first_step + count):
                self.training_steps = step
                rates.append(self._scheduled_rate(step))
            return rates
        finally:
            self.training_steps = start

    @property
    def clips(self):
        """Whether gradients are clipped (clipnorm, clipvalue or global_clipnorm)."""
        return self.clipping[0] is not None

    @property
    def clipping(self):
        """(option, value) of the clipping that applies (at most one; 0 is off, as in
        Keras); (None, None) without."""
        for option in ("clipnorm", "global_clipnorm", "clipvalue"):
            value = getattr(self, option)
            if value:  # (None or 0: off)
                return option, value
        return None, None

    @classmethod
    def from_config(cls, config):
        """The optimizer get_config describes (Keras' from_config): the same settings, no
        state."""
        return _from_config(cls, config)

    def __copy__(self):
        # Held by a model: copy.copy shares the state dict, so it keeps that model too (a
        # copy free for another model would have that model's first fit prune this one's
        # moments). Held by none: a copy of its own, as a deep copy (two models compiled
        # with copies of one fresh optimizer shared, and pruned, each other's state).
        owner = self.__dict__.get("_owner")
        if owner is None or owner() is None or self.__dict__.get("_released", False):
            return copy.deepcopy(self)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __getstate__(self):
        # A deep copy or a pickle is an optimizer of no model yet (compile may take it): the
        # one whose weights it trained is not part of it (a deep-copied trained Adam was
        # refused as "already trains another model")
        state = self.__dict__.copy()
        state.pop("_owner", None)
        state.pop("_released", None)
        state.pop("_decay_off", None)  # (apply's, for one weight)
        return state

    def get_config(self):
        """The constructor arguments (learning rate or its schedule's description, clipping,
        weight decay, the optimizer's own): what model files store."""
        if self._schedule is None:
            rate = self._learning_rate
        elif id(self) in getattr(_RATES_ASIDE, "ids", ()):  # (function_rate_aside)
            rate = self.rate()
        else:
            rate = _schedule_config(self._schedule)
        config = {"learning_rate": rate}
        # one clipping at most, which the constructor takes back (two may be set after
        # construction): the one that applies, else one set to 0 (off)
        options = [key for key in ("clipnorm", "global_clipnorm", "clipvalue")
                   if getattr(self, key) is not None]
        option = self.clipping[0] or (options[0] if options else None)
        if option is not None:
            config[option] = getattr(self, option)
        if self.weight_decay:
            config["weight_decay"] = self.weight_decay
        if self.use_ema:
            config.update(use_ema=True, ema_momentum=self.ema_momentum,
                          ema_overwrite_frequency=self.ema_overwrite_frequency)
        if self.gradient_accumulation_steps:
            config["gradient_accumulation_steps"] = self.gradient_accumulation_steps
        if self.name is not None and self.name != self._default_name():
            config["name"] = self.name
        return config

    @classmethod
    def _default_name(cls):
        return _DEFAULT_NAMES.get(cls.__name__, cls.__name__.lower())

    def state_of(self, param):
        """param's slots {name: array}, or None before its first update."""
        entry = self._state.get(id(param))
        return entry[1] if entry is not None and entry[0] is param else None

    def set_state_of(self, param, slots):
        """Set param's slots {name: backend array} (load_model restores them this way)."""
        self._state[id(param)] = (param, slots)

    def keep_only(self, params):
        """Forget the state of every weight not in `params` (the model's weights now)."""
        live = {id(p): p for p in params}
        for key in [k for k, (p, _) in self._state.items() if live.get(k) is not p]:
            del self._state[key]

    def _slots_for(self, param, active=None):
        """param's slots, made or brought in line with the options; active: the
        _active_slots() of this step, when the caller has them."""
        if active is None:
            active = self._active_slots()
        state = self.state_of(param)
        if state is None:
            b = param.backend
            state = {s: self._initial_slot(s, b, param.value) for s in active}
            self.set_state_of(param, state)
        else:
            dtype = param.value.dtype
            for name, slot in state.items():  # the weights changed dtype (set_floatx)
                if slot.dtype != dtype:
                    state[name] = slot.astype(dtype)
            # An option turned on mid-training (amsgrad, momentum, use_ema): its slot starts
            # as at step 0; turned off: its slot goes (on again later, it starts afresh, as
            # in a model saved and loaded meanwhile)
            if len(state) != len(active) or any(name not in state for name in active):
                for name in active:
                    if name not in state:
                        state[name] = self._initial_slot(name, param.backend, param.value)
                for name in [n for n in state if n not in active]:
                    del state[name]
        return state

    def _slot_names(self, param, saved=None):
        """The slots `param` has: _active_slots() for every weight (Muon's matrices keep
        fewer); saved: the slot names a file holds for it, when it is being loaded."""
        return self._active_slots()

    def slot_arrays(self, param):
        """param's active slots as a list, in _active_slots' order (the native engine reads
        them by position; a slot added mid-training is last in the dict)."""
        state = self._slots_for(param)
        return [state[name] for name in self._active_slots()]

    def _optimizer_slots(self):
        """The slots the update itself uses (with its options, e.g. SGD's momentum)."""
        return self.slots

    def _active_slots(self):
        """Every slot of a weight: the update's, then the moving average with use_ema, then
        the gradients' sum with gradient accumulation."""
        return (self._optimizer_slots() + (("average",) if self.use_ema else ())
                + (("gradient_accumulator",) if self.gradient_accumulation_steps else ()))

    def slot_shape(self, slot, shape):
        """The shape of a weight's slot: the weight's (Adafactor's factored moments differ)."""
        return tuple(shape)

    def _initial_slot(self, slot, backend, value):
        if slot == "average":  # Keras' first step makes it the weight (momentum 0 then)
            return value.copy()
        start = backend.zeros(self.slot_shape(slot, value.shape), value.dtype)
        if slot == "accumulator":  # Adagrad's and Ftrl's sums of squares (a user's: 0)
            start += getattr(self, "initial_accumulator_value", 0.0)
        return start

    def apply(self, params, trainable_variables=None):
        """One step: update every trainable parameter of `params` from its .grad, in place.
        Keras' forms: apply(grads, trainable_variables) is apply_gradients(zip(grads,
        trainable_variables)); apply(grads) takes the weights of the model this optimizer
        trains (model.trainable_weights, in order)."""
        from .layers.base import Parameter

        if trainable_variables is None:
            params = list(params)
            if all(isinstance(p, Parameter) for p in params):
                return self._apply(params)
            model = self._model()
            if model is None:
                raise TypeError("apply(grads): this optimizer trains no model yet, so give the "
                                "weights too: apply(grads, model.trainable_weights)")
            trainable_variables = model.trainable_weights
        grads, weights = list(params), list(trainable_variables)
        if len(grads) != len(weights):
            raise ValueError(f"apply: {len(grads)} gradients for {len(weights)} weights")
        return self.apply_gradients(zip(grads, weights))

    def _model(self):
        """The model this optimizer trains (compile made it its), or None."""
        owner = self.__dict__.get("_owner")
        return owner() if owner is not None else None

    def apply_gradients(self, grads_and_vars):
        """Keras' step on gradients you give (a training loop of your own, with
        model.compute_gradients): pairs (gradient, weight), each weight one of the trainable
        weights of the model this optimizer trains (model.trainable_weights; any model's
        before compile gave it one) and its gradient an array of numbers of the weight's
        shape (None: skipped with a warning, as Keras; all None is refused). The gradients
        are copied; clipping, weight decay, gradient accumulation, the moving average and
        constraints apply as in fit. Returns iterations (updates: every k-th call with
        gradient accumulation k)."""
        from .backend.arrays import to_host
        from .layers.base import Parameter

        model = self._model()
        lock = model._training_lock("apply_gradients") if model is not None else None
        try:
            ours = None if model is None else {id(p) for p in model.params}
            steps, seen, missing = [], set(), []
            for i, pair in enumerate(grads_and_vars):
                try:
                    grad, weight = pair
                except (TypeError, ValueError):
                    raise TypeError(f"apply_gradients: item {i} is not a (gradient, weight) "
                                    f"pair, got {pair!r}") from None
                if not isinstance(weight, Parameter):
                    raise TypeError(f"apply_gradients: item {i}'s weight is a "
                                    f"{type(weight).__name__}, not a model's weight (a pynn "
                                    f"Parameter, as model.trainable_weights gives; pynn "
                                    f"updates those in place)")
                if ours is not None and id(weight) not in ours:  # (Keras: unknown variable)
                    raise ValueError(f"apply_gradients: weight {weight.name!r} is not one of "
                                     f"the model's this optimizer trains; give each model "
                                     f"its own optimizer")
                if weight.statistic:
                    raise ValueError(f"apply_gradients: weight {weight.name!r} is a statistic "
                                     f"(a moving mean or variance), which no gradient trains")
                if not weight.trainable:  # (apply would skip it silently)
                    raise ValueError(f"apply_gradients: weight {weight.name!r} is frozen "
                                     f"(trainable=False); set its trainable to train it")
                if id(weight) in seen:
                    raise ValueError(f"apply_gradients: weight {weight.name!r} is given twice")
                seen.add(id(weight))
                if grad is None:
                    missing.append(weight.name)
                    continue
                steps.append((weight, _gradient_array(grad, weight, to_host)))
            if not steps:
                raise ValueError("apply_gradients: no gradients provided for any weight")
            if missing:
                warnings.warn(f"apply_gradients: no gradients for {', '.join(missing)}; those "
                              f"weights stay as they are", RuntimeWarning, stacklevel=2)
            kept = [(w, w.grad) for w, _ in steps]  # (the layers' own gradient buffers)
            try:
                for w, g in steps:
                    w.grad = g
                weights = [w for w, _ in steps]
                # (a subclass with an apply() of its own steps through it, as fit's)
                if type(self).apply is not Optimizer.apply:
                    self.apply(weights)
                else:
                    self._apply(weights)
            finally:
                for w, grad in kept:
                    w.grad = grad
            return self.iterations
        finally:
            if lock is not None:
                lock.release()

    def _apply(self, params):
        lr = self.rate()  # before the step counter moves, as Keras evaluates schedules
        self.training_steps += 1
        active = [p for p in params if p.trainable and p.grad is not None]
        if self.gradient_accumulation_steps and not self._accumulate(active):
            if self.use_ema:  # (Keras averages after every step, updated or not)
                self._update_averages(active)
            _constrain(active)
            return
        if self.clips:
            self._clip([p.grad for p in active])
        decay = lr * self.weight_decay if not self._fuses_weight_decay else 0.0
        excludes = self.__dict__.get("_decay_exclusions") is not None
        slots = self._active_slots()  # (the same for every weight of the step)
        # (a subclass's own _slots_for(param) is called as it was written)
        own = type(self)._slots_for is not Optimizer._slots_for
        for p in active:
            kept_out = excludes and not self._decays(p)
            if decay and not kept_out:
                p.value -= p.value * p.value.dtype.type(decay)
            state = self._slots_for(p) if own else self._slots_for(p, slots)
            if kept_out and self._fuses_weight_decay:
                self.__dict__["_decay_off"] = True  # read by _fused_decay
                try:
                    self._update(p.backend, p.value, p.grad, state, lr)
                finally:
                    del self.__dict__["_decay_off"]
            else:
                self._update(p.backend, p.value, p.grad, state, lr)
        if self.use_ema:
            self._update_averages(active)
        _constrain(active)

    def _fused_decay(self):
        """The weight decay an update that applies it itself (_fuses_weight_decay) gives the
        weight apply() is updating: 0 for one exclude_from_weight_decay keeps out."""
        return 0.0 if self.__dict__.get("_decay_off") else self.weight_decay

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras 3's: keep weights out of the weight decay. var_list: weights (pynn
        Parameters, e.g. model.layers[1].bias); var_names: regular expressions searched for
        in each weight's own name (as Keras' variable.name: "kernel", "bias", "gamma", not
        the layer's name), so a word matches as a part of it: var_names=["bias"] keeps every
        bias out. A call replaces the previous one's choice (neither: every weight decays).
        Not in get_config or model files, as in Keras. Fit trains layer by layer while it
        keeps a weight of the model out of a decay (the native engines decay every weight
        alike)."""
        from .layers.base import Parameter

        if isinstance(var_list, Parameter):
            var_list = [var_list]
        try:
            params = [] if var_list is None else list(var_list)
        except TypeError:
            raise TypeError(f"exclude_from_weight_decay: var_list must be a list of weights "
                            f"(pynn Parameters), got {var_list!r}") from None
        for param in params:
            if not isinstance(param, Parameter):
                raise TypeError(f"exclude_from_weight_decay: var_list takes weights (pynn "
                                f"Parameters, e.g. layer.bias), got {param!r} in it; names "
                                f"go in var_names")
        names = _patterns("var_names", var_names)
        # the weights themselves are held: their ids cannot be reused by new ones
        self._decay_exclusions = None if not params and not names else (
            tuple(params), frozenset(map(id, params)),
            re.compile("|".join(names)) if names else None)
        config.settings_changed()  # a native engine decaying every weight must leave

    def _decays(self, param):
        """Whether the weight decay applies to param (exclude_from_weight_decay)."""
        exclusions = self.__dict__.get("_decay_exclusions")
        if exclusions is None:
            return True
        _, ids, pattern = exclusions
        if id(param) in ids:
            return False
        return pattern is None or pattern.search(param.name.rsplit("/", 1)[-1]) is None

    def _update(self, b, w, g, s, lr):
        """Update the weight array w in place from its gradient g, its slots s and the rate
        lr (b: the weight's backend): what a subclass defines."""
        _check_hooks(type(self))  # (used without compile: what is missing is named)
        raise NotImplementedError(f"{type(self).__name__} does not define {_UPDATE_HOOK}")

    def _accumulate(self, params):
        """Keras 3's gradient accumulation: False while a step's gradients are added to the
        sums; True at every k-th step, each .grad then (its own + the sum) / k and the sums
        zeroed."""
        k = self.gradient_accumulation_steps
        update = self.training_steps % k == 0
        for p in params:
            total = self._slots_for(p)["gradient_accumulator"]
            if update:
                p.grad += total
                p.grad /= p.grad.dtype.type(k)
                total[...] = 0
            else:
                total += p.grad
        return update

    def _update_averages(self, params):
        """Keras 3's use_ema after a step: average = m average + (1 - m) w, m = 0 until the
        first update is done; when ema_overwrite_frequency divides the update count after
        the step, the weights become their averages."""
        self._check_ema()  # (also when use_ema was set after construction)
        updates_before = (self.training_steps - 1) // (self.gradient_accumulation_steps or 1)
        m = 0.0 if updates_before == 0 else self.ema_momentum
        overwrite = (bool(self.ema_overwrite_frequency)
                     and (updates_before + 1) % self.ema_overwrite_frequency == 0)
        for p in params:
            average = self._slots_for(p)["average"]
            t = p.value.dtype.type
            average *= t(m)
            average += t(1 - m) * p.value
            if overwrite:
                p.value[...] = average

    def finalize_variable_values(self, params):
        """With use_ema, each trainable weight takes its moving average (Keras 3 calls this
        when fit ends, as pynn's fit does)."""
        if not self.use_ema:
            return
        for p in params:
            state = self.state_of(p) if p.trainable else None
            if state is not None and "average" in state:
                p.value[...] = state["average"]

    def _clip(self, grads):
        option, limit = self.clipping
        if option == "clipvalue":
            for g in grads:
                g.clip(-limit, limit, out=g)
        elif option == "clipnorm":
            for g in grads:
                norm = math.sqrt(_sum_of_squares(g))
                if norm > limit:
                    g *= limit / norm
        elif option == "global_clipnorm":
            norm = math.sqrt(sum(_sum_of_squares(g) for g in grads))
            if norm > limit:
                for g in grads:
                    g *= limit / norm

    def reset(self):
        """Forget every slot and the step count: the next step starts as the first."""
        self._state = {}  # a new dict: a native engine bound to the old slots notices
        self.training_steps = 0
        config.settings_changed()

    def __repr__(self):
        try:
            config = self.get_config()
        except ValueError:  # a plain function as learning rate cannot be serialised
            config = {"learning_rate": self._schedule}
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (Keras 3's formula): `momentum`
    in [0, 1], as Keras (0.0: plain w -= lr * g; else a `velocity` slot, v = momentum * v -
    lr * g, w += v); `nesterov=True` steps by momentum * v - lr * g instead (Nesterov momentum; no
    effect without momentum). learning_rate defaults to 0.01."""

    _checks = {"momentum": _MOMENTUM, "nesterov": _check_flag}

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum, self.nesterov = momentum, nesterov

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _optimizer_slots(self):
        return ("velocity",) if self.momentum else ()

    def _update(self, b, w, g, s, lr):
        b.sgd_update(w, g, s.get("velocity"), lr, self.momentum, self.nesterov)


class _MomentOptimizer(Optimizer):
    """The optimizers built on Adam's two moment estimates (Adam, Nadam, Adamax, Lamb): their
    shared arguments beta_1 (0.9), beta_2 (0.999), each in [0, 1), and epsilon (1e-7), with
    Keras' defaults; learning_rate defaults to 0.001."""

    slots = ("m", "v")
    _checks = {"beta_1": _FRACTION, "beta_2": _FRACTION, "epsilon": _check_positive}

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Adam(_MomentOptimizer):
    """Adam (Kingma and Ba) with Keras' bias-corrected step size: learning_rate (0.001),
    beta_1 (0.9) and beta_2 (0.999), the decay rates of the gradients' first and second
    moment estimates, epsilon (1e-7) added to the root of the second; `amsgrad=True` divides
    by the largest second moment seen so far (AMSGrad, a third slot `v_hat`)."""

    _fuses_weight_decay = True
    amsgrad = False  # (optimizers pickled before it existed load)
    _checks = {"amsgrad": _check_flag}

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, **kwargs)
        self.amsgrad = amsgrad

    def get_config(self):
        return {**super().get_config(), "amsgrad": self.amsgrad}

    def _optimizer_slots(self):
        return ("m", "v", "v_hat") if self.amsgrad else self.slots

    def _update(self, b, w, g, s, lr):
        b.adam_update(w, g, s["m"], s["v"], lr, self.beta_1, self.beta_2,
                      self.epsilon, self._fused_decay(), self._update_count(),
                      s["v_hat"] if self.amsgrad else None)


class AdamW(Adam):
    """Adam with decoupled weight decay: w -= lr * weight_decay * w before the Adam step.
    Adam's arguments, with weight_decay second and 0.004 by default (Keras'; None is
    refused)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a number >= 0, got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad,
                         weight_decay=weight_decay, **kwargs)

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    """RMSprop: divide by a moving root mean square of the gradients, decayed by `rho` (0.9),
    plus `epsilon` (1e-7) under the root; `momentum` (0.0, in [0, 1)) adds a momentum slot.
    centered=True (Keras') divides by the gradients' moving variance instead (a third
    slot, their moving mean): array operations, trained layer by layer. learning_rate
    defaults to 0.001."""

    centered = False
    _checks = {"rho": _FRACTION, "momentum": _FRACTION, "epsilon": _check_positive,
               "centered": _check_flag}

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon = rho, momentum, epsilon
        self.centered = centered

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}

    def _optimizer_slots(self):
        return (("velocity",) + (("momentum",) if self.momentum else ())
                + (("average_gradient",) if self.centered else ()))

    def _update(self, b, w, g, s, lr):
        if self.centered:
            b.rmsprop_centered_update(w, g, s["velocity"], s["average_gradient"],
                                      s.get("momentum"), lr, self.rho, self.momentum,
                                      self.epsilon)
        else:
            b.rmsprop_update(w, g, s["velocity"], s.get("momentum"), lr, self.rho,
                             self.momentum, self.epsilon)


class Adagrad(Optimizer):
    """Adagrad: divide by the root of the accumulated squared gradients, which start at
    `initial_accumulator_value` (0.1), plus `epsilon` (1e-7) under the root. learning_rate
    defaults to 0.001."""

    slots = ("accumulator",)
    _checks = {"initial_accumulator_value": _AT_LEAST_ZERO, "epsilon": _check_positive}

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}

    def _update(self, b, w, g, s, lr):
        b.adagrad_update(w, g, s["accumulator"], lr, self.epsilon)


class Nadam(_MomentOptimizer):
    """Adam with Nesterov momentum (Dozat), with Keras 3's momentum schedule
    beta_1 * (1 - 0.5 * 0.96^t). Adam's arguments without amsgrad: learning_rate (0.001),
    beta_1 (0.9), beta_2 (0.999), epsilon (1e-7)."""

    _fuses_weight_decay = True

    def _update(self, b, w, g, s, lr):
        b.nadam_update(w, g, s["m"], s["v"], lr, self.beta_1, self.beta_2, self.epsilon,
                       self._fused_decay(), self._update_count())


class Adamax(_MomentOptimizer):
    """Adam's variant on the infinity norm: divides by u = max(beta_2 * u, |g|) plus epsilon.
    Adam's arguments without amsgrad: learning_rate (0.001), beta_1 (0.9), beta_2 (0.999),
    epsilon (1e-7)."""

    slots = ("m", "u")
    _fuses_weight_decay = True

    def _update(self, b, w, g, s, lr):
        b.adamax_update(w, g, s["m"], s["u"], lr, self.beta_1, self.beta_2, self.epsilon,
                        self._fused_decay(), self._update_count())


class Lion(Optimizer):
    """Lion (Chen et al.): steps of lr * sign(beta_1 * m + (1 - beta_1) * g), one slot m,
    then m = beta_2 * m + (1 - beta_2) * g; beta_1 (0.9) in (0, 1], beta_2 (0.99) in [0, 1),
    learning_rate 0.001. Its steps are larger than Adam's: the usual rate is 3-10x smaller,
    the weight decay larger."""

    slots = ("m",)
    _fuses_weight_decay = True

    _checks = {"beta_1": _check_lion_beta_1, "beta_2": _FRACTION}

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2 = beta_1, beta_2

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}

    def _update(self, b, w, g, s, lr):
        b.lion_update(w, g, s["m"], lr, self.beta_1, self.beta_2, self._fused_decay())


class Adadelta(Optimizer):
    """Adadelta (Zeiler): steps scaled by the ratio of the running root mean squares of the
    past steps and of the gradients, both decayed by `rho` (0.95), `epsilon` (1e-7) under
    each root; learning_rate defaults to 0.001 (Keras')."""

    slots = ("accumulated_grad", "accumulated_delta")
    _fuses_weight_decay = True

    _checks = {"rho": _FRACTION, "epsilon": _check_positive}

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.epsilon = rho, epsilon

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}

    def _update(self, b, w, g, s, lr):
        b.adadelta_update(w, g, s["accumulated_grad"], s["accumulated_delta"], lr, self.rho,
                          self.epsilon, self._fused_decay())


class Lamb(_MomentOptimizer):
    """Lamb (You et al.; Keras 3's formula): Adam's bias-corrected step scaled per tensor by
    ||w|| / ||step||, for large batches. Adam's arguments without amsgrad: learning_rate
    (0.001), beta_1 (0.9), beta_2 (0.999), epsilon (1e-7). Its weight decay is Keras'
    decoupled one, applied before the step. Array operations on every backend; fit trains
    it layer by layer."""

    def _update(self, b, w, g, s, lr):
        b.lamb_update(w, g, s["m"], s["v"], lr, self.beta_1, self.beta_2, self.epsilon,
                      self._update_count())


class Ftrl(Optimizer):
    """Ftrl, follow the regularized leader (McMahan et al.; Keras 3's formula), for sparse
    linear models: its L1 strength sets weights to exactly 0. Keras 3's arguments and
    defaults: learning_rate (0.001, > 0 at every step), learning_rate_power (-0.5, <= 0),
    initial_accumulator_value (0.1), l1_regularization_strength,
    l2_regularization_strength, l2_shrinkage_regularization_strength and beta (each 0.0,
    >= 0). Array operations on every backend; fit trains it layer by layer."""

    slots = ("accumulator", "linear")
    _checks = {"learning_rate_power": _check_at_most_zero,
               **dict.fromkeys(("initial_accumulator_value", "l1_regularization_strength",
                                "l2_regularization_strength",
                                "l2_shrinkage_regularization_strength", "beta"),
                               _AT_LEAST_ZERO)}

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5,
                 initial_accumulator_value=0.1, l1_regularization_strength=0.0,
                 l2_regularization_strength=0.0, l2_shrinkage_regularization_strength=0.0,
                 beta=0.0, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.learning_rate_power = learning_rate_power
        self.initial_accumulator_value = initial_accumulator_value
        self.l1_regularization_strength = l1_regularization_strength
        self.l2_regularization_strength = l2_regularization_strength
        self.l2_shrinkage_regularization_strength = l2_shrinkage_regularization_strength
        self.beta = beta

    def get_config(self):
        return {**super().get_config(), "learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "l2_shrinkage_regularization_strength":
                    self.l2_shrinkage_regularization_strength,
                "beta": self.beta}

    def _update(self, b, w, g, s, lr):
        if lr <= 0:  # (Keras' weights would turn to NaN)
            raise ValueError(f"Ftrl divides by the learning rate: it must be > 0, got {lr}")
        b.ftrl_update(w, g, s["accumulator"], s["linear"], lr, self.learning_rate_power,
                      self.l1_regularization_strength, self.l2_regularization_strength,
                      self.l2_shrinkage_regularization_strength, self.beta)


class Adafactor(Optimizer):
    """Adafactor (Shazeer and Stern; Keras 3's formula): a weight matrix's second moments
    kept as row and column means, steps of min(lr, 1/sqrt(t)) times the weights' RMS,
    clipped by the update's RMS. Keras 3's arguments and defaults: learning_rate (0.001),
    beta_2_decay (-0.8, < 0: the second moments' decay 1 - t^beta_2_decay), epsilon_1
    (1e-30, added to the squared gradients), epsilon_2 (1e-3, the least weight RMS a step
    scales by), clip_threshold (1.0). As in Keras 3, `relative_step` changes nothing (the
    step is relative in either case). Array operations on every backend; fit trains it layer
    by layer."""

    slots = ("r", "c", "v")
    _checks = {"beta_2_decay": _check_below_zero, "epsilon_1": _check_positive,
               "epsilon_2": _AT_LEAST_ZERO, "clip_threshold": _check_positive,
               "relative_step": _check_flag}

    def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30,
                 epsilon_2=1e-3, clip_threshold=1.0, relative_step=True, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_2_decay, self.epsilon_1, self.epsilon_2 = beta_2_decay, epsilon_1, epsilon_2
        self.clip_threshold, self.relative_step = clip_threshold, relative_step

    def get_config(self):
        return {**super().get_config(), "beta_2_decay": self.beta_2_decay,
                "epsilon_1": self.epsilon_1, "epsilon_2": self.epsilon_2,
                "clip_threshold": self.clip_threshold, "relative_step": self.relative_step}

    def slot_shape(self, slot, shape):
        if slot not in ("r", "c"):
            return tuple(shape)
        if len(shape) < 2:  # (unused: such a weight keeps v)
            return ()
        return tuple(shape[:-1]) if slot == "r" else tuple(shape[:-2]) + tuple(shape[-1:])

    def _update(self, b, w, g, s, lr):
        b.adafactor_update(w, g, s["r"], s["c"], s["v"], lr, self._update_count(),
                           self.beta_2_decay, self.epsilon_1, self.epsilon_2,
                           self.clip_threshold)


class Muon(Optimizer):
    """Muon (Jordan et al. 2024; Keras 3's formula): a weight matrix steps by its
    orthogonalised momentum, ns_steps (5) Newton-Schulz iterations with coefficients
    muon_a, muon_b, muon_c, scaled by sqrt(max(rows, columns)) * rms_rate (0.2; None: not
    scaled), so that Adam's learning rate and weight decay fit (Moonlight); momentum (0.95)
    with nesterov (True). Every other weight (a bias, a normalisation's scale, a matrix whose
    path matches a regular expression of exclude_layers) takes AdamW's step: adam_beta_1
    (0.9), adam_beta_2 (0.999), epsilon (1e-7), learning_rate * adam_lr_ratio (1). A
    weight's path is Keras': the model's name, the layer's, the weight's
    ("sequential/dense/kernel"). Weight decay, before the step as Keras':
    w -= learning_rate * weight_decay (0.004) * w for the matrices, adam_weight_decay
    (0.004) for the rest (None: none). exclude_embeddings (True) sends weights with
    "embedding" in their path to AdamW, as Keras. Array operations on every backend; fit
    trains it layer by layer."""

    slots = ("momentum", "velocity")  # a matrix's Muon step keeps the momentum alone
    _fuses_weight_decay = True  # each weight's own decay, in _update
    _checks = {"adam_beta_1": _FRACTION, "adam_beta_2": _FRACTION,
               "adam_weight_decay": _or_none(_AT_LEAST_ZERO), "epsilon": _AT_LEAST_ZERO,
               "exclude_layers": _patterns,
               "exclude_embeddings": _check_flag,
               "muon_a": _check_real, "muon_b": _check_real, "muon_c": _check_real,
               "adam_lr_ratio": _AT_LEAST_ZERO, "momentum": _MOMENTUM,
               "ns_steps": _check_count, "nesterov": _check_flag,
               "rms_rate": _or_none(_AT_LEAST_ZERO)}

    def __init__(self, learning_rate=0.001, adam_beta_1=0.9, adam_beta_2=0.999,
                 adam_weight_decay=0.004, epsilon=1e-7, weight_decay=0.004, *,
                 exclude_layers=None, exclude_embeddings=True, muon_a=3.4445, muon_b=-4.7750,
                 muon_c=2.0315, adam_lr_ratio=1, momentum=0.95, ns_steps=5, nesterov=True,
                 rms_rate=0.2, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)
        self._no_weight_decay = weight_decay is None  # (Keras' config keeps the None)
        self.adam_beta_1, self.adam_beta_2 = adam_beta_1, adam_beta_2
        self.adam_weight_decay, self.epsilon = adam_weight_decay, epsilon
        self.exclude_layers, self.exclude_embeddings = exclude_layers, exclude_embeddings
        self.muon_a, self.muon_b, self.muon_c = muon_a, muon_b, muon_c
        self.adam_lr_ratio, self.momentum, self.ns_steps = adam_lr_ratio, momentum, ns_steps
        self.nesterov, self.rms_rate = nesterov, rms_rate

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)  # (set below, where Keras puts it)
        return {**config, "adam_beta_1": self.adam_beta_1, "adam_beta_2": self.adam_beta_2,
                "adam_weight_decay": self.adam_weight_decay, "epsilon": self.epsilon,
                "weight_decay": None if self._no_weight_decay and not self.weight_decay
                else self.weight_decay,
                "exclude_layers": self.exclude_layers,
                "exclude_embeddings": self.exclude_embeddings, "muon_a": self.muon_a,
                "muon_b": self.muon_b, "muon_c": self.muon_c,
                "adam_lr_ratio": self.adam_lr_ratio, "momentum": self.momentum,
                "ns_steps": self.ns_steps, "nesterov": self.nesterov, "rms_rate": self.rms_rate}

    def _takes_adamw(self, param):
        """Keras' rule: AdamW for every weight but a matrix, and for the matrices whose path
        names an embedding or matches exclude_layers."""
        if len(param.shape) != 2:
            return True
        model = getattr(self, "_owner", lambda: None)()
        path = f"{model.name}/{param.name}" if model is not None else param.name
        return ((self.exclude_embeddings and "embedding" in path.lower()) or
                any(re.search(pattern, path) for pattern in self.exclude_layers))

    def _slot_names(self, param, saved=None):
        # A weight's kind is decided when it is first seen (as Keras decides at build) and
        # then kept: its state (or a file's) says which (a matrix's Muon step keeps no
        # velocity); a changed exclude_layers or model name does not turn a Muon momentum
        # into Adam's first moment
        known = set(saved) if saved is not None else set(self.state_of(param) or ())
        adamw = "velocity" in known if "momentum" in known else self._takes_adamw(param)
        active = self._active_slots()
        return active if adamw else tuple(slot for slot in active if slot != "velocity")

    def _slots_for(self, param, active=None):
        return super()._slots_for(param, self._slot_names(param))

    def _update(self, b, w, g, s, lr):
        t = w.dtype.type
        adamw = "velocity" in s
        decay = self.adam_weight_decay if adamw else self.weight_decay
        if self.__dict__.get("_decay_off"):  # kept out by exclude_from_weight_decay
            decay = 0.0
        if decay:
            w -= w * t(lr * decay)
        m = s["momentum"]
        if adamw:
            step = self._update_count()
            alpha = lr * self.adam_lr_ratio * math.sqrt(1 - self.adam_beta_2 ** step) / (
                1 - self.adam_beta_1 ** step)
            v = s["velocity"]
            m += (g - m) * t(1 - self.adam_beta_1)
            v += (g * g - v) * t(1 - self.adam_beta_2)
            w -= (m * t(alpha)) / (b.xp.sqrt(v) + t(self.epsilon))
            return
        m *= t(self.momentum)
        m += g
        update = self._orthogonalised(g + t(self.momentum) * m if self.nesterov else m)
        if self.rms_rate is not None:
            update *= t(math.sqrt(max(w.shape)) * self.rms_rate)
        w -= update * t(lr)

    def _orthogonalised(self, x):
        """Newton-Schulz's quintic iteration towards U V^T of x's SVD (as Keras': roughly,
        not converged), on the wider orientation."""
        t = x.dtype.type
        tall = x.shape[0] > x.shape[1]
        if tall:
            x = x.T
        x = x / (t(math.sqrt(float((x * x).sum(dtype=np.float64)))) + t(1e-7))
        for _ in range(self.ns_steps):
            a = x @ x.T
            x = t(self.muon_a) * x + (t(self.muon_b) * a + t(self.muon_c) * (a @ a)) @ x
        return x.T if tall else x


# Keras 3's default optimizer names.
_DEFAULT_NAMES = {"SGD": "SGD", "Adam": "adam", "AdamW": "adamw", "RMSprop": "rmsprop",
                  "Adagrad": "adagrad", "Nadam": "nadam", "Adamax": "adamax", "Lion": "lion",
                  "Adadelta": "adadelta", "Lamb": "lamb", "Ftrl": "ftrl",
                  "Adafactor": "adafactor", "Muon": "muon"}


# `from pynn.optimizers.schedules import ExponentialDecay`, Keras' import, finds the module
sys.modules[__name__ + ".schedules"] = schedules

_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
            "nadam": Nadam, "adamax": Adamax, "lion": Lion, "adadelta": Adadelta, "lamb": Lamb,
            "ftrl": Ftrl, "adafactor": Adafactor, "muon": Muon}
NAMES = tuple(_BY_NAME)  # what `get` takes by name (any case)


_UPDATE_HOOK = ("_update(self, b, w, g, s, lr), updating the weight array w in place from "
                "its gradient g, its slots s ({name: array}, named by the class attribute "
                "`slots`) and the rate lr (see pynn.optimizers' docstring)")


def _is_kerass_update_step(method):
    """Whether an update_step is Keras' hook, (gradient, variable, learning_rate), rather
    than a helper of the class's own that happens to have the name."""
    try:
        parameters = list(inspect.signature(method).parameters.values())[1:]  # (self)
    except (TypeError, ValueError):
        return True
    return len(parameters) == 3 and all(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def _check_hooks(cls):
    """A TypeError for an optimizer class pynn cannot train with: one written for Keras,
    whose update_step(gradient, variable, learning_rate) pynn would never call (a subclass
    of a pynn optimizer trained as its parent, silently), or one without _update. A class
    defining both (for both libraries) is fine, as is one with an apply() of its own."""
    if not isinstance(cls, type) or not issubclass(cls, Optimizer):
        return  # (custom_objects' factory function: its result is checked by compile)
    if cls.apply is not Optimizer.apply:  # it updates the weights its own way
        return
    mro = cls.__mro__
    keras_hook = next((i for i, c in enumerate(mro) if "update_step" in vars(c)
                       and _is_kerass_update_step(vars(c)["update_step"])), None)
    own_hook = next((i for i, c in enumerate(mro) if "_update" in vars(c)
                     and c is not Optimizer), None)
    if keras_hook is not None and (own_hook is None or keras_hook < own_hook):
        raise TypeError(f"{cls.__name__} defines update_step(gradient, variable, "
                        f"learning_rate), Keras' hook, which pynn does not call: a pynn "
                        f"optimizer defines {_UPDATE_HOOK}")
    if own_hook is None:
        raise TypeError(f"{cls.__name__} does not define the update: a pynn optimizer "
                        f"defines {_UPDATE_HOOK}")


def get(identifier) -> Optimizer:
    """An optimizer from a name ('adam', 'sgd', ...), a config dict or an Optimizer."""
    if isinstance(identifier, Optimizer):
        _check_hooks(type(identifier))
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; known: {', '.join(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _custom.find(identifier, lambda name: _BY_NAME.get(name.lower()), "optimizer")
        _check_hooks(cls)
        return _from_config(cls, _custom.config_of(identifier, "optimizer"))
    raise ValueError(f"cannot interpret {identifier!r} as an optimizer (a name, or an "
                     f"Optimizer instance)")


def serialize(opt: Optimizer) -> dict:
    """The {'class_name', 'config'} dict that `get` turns back into the optimizer."""
    return _custom.describe(opt)


def _from_config(cls, config):
    """The optimizer of class cls that get_config's description gives (get of a dict,
    from_config): a schedule's description rebuilt."""
    config = dict(config)
    lr = config.get("learning_rate")
    if isinstance(lr, dict):
        from . import schedules

        config["learning_rate"] = schedules.deserialize(lr)
    if config.get("clipvalue") is not None and (config.get("clipnorm") is not None or
                                               config.get("global_clipnorm") is not None):
        # written by a pynn that took both and applied the norm alone: that is kept
        import warnings

        warnings.warn("this optimizer was saved with clipvalue beside a norm clipping, "
                      "of which pynn applied the norm alone; it loads with the norm "
                      "alone (one clipping at a time, as Keras 3)", UserWarning,
                      stacklevel=3)
        config.pop("clipvalue")
    return cls(**config)


def _schedule_config(schedule):
    if isinstance(schedule, LearningRateSchedule):
        return _custom.describe(schedule)
    raise ValueError(f"cannot serialise the learning-rate function {schedule!r}; use a "
                     f"pynn.schedules class to save it")


def deserialize(config, custom_objects=None):
    """The optimizer a config (serialize's, or Keras') or a name describes, a class of your own
    from custom_objects={name: class} (Keras' deserialize)."""
    return _custom.deserialize_with(get, config, custom_objects, "optimizer")
