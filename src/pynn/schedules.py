"""Learning-rate schedules (Keras' keras.optimizers.schedules): lr as a function of the
optimizer step (0 for the first update). Pass one as `learning_rate=` to any optimizer;
a plain function step -> lr works too, as does Keras' function of no argument. Called
with an array of steps (schedule(np.arange(n)), as Keras' take a tensor), pynn's
schedules give the array of rates.
"""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from . import custom_objects as _custom


def _check(owner, name, value, low=0.0, strict=True, high=math.inf):
    """value as a float; a ValueError naming the argument unless it is a finite number in
    (low, high] ([low, high] unless strict): a schedule that can yield a negative, infinite
    or NaN rate is refused when made, not at the step that meets it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value < low or (strict and value == low) or value > high:
        bound = f"{'>' if strict else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf
                                                       else "")
        raise ValueError(f"{owner}: {name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _steps(step):
    """An array of steps (Keras' schedules take a tensor of them, as schedule(np.arange(n))
    for the curve) as float64, or None for one step, which keeps the scalar arithmetic the
    optimizers use."""
    if isinstance(step, numbers.Real) or np.ndim(step) == 0:
        return None
    return np.asarray(step, dtype=np.float64)


class LearningRateSchedule:
    """Base class: schedule(step) -> learning rate for the update at that step (0-based). A
    subclass of your own defines `__call__` and stores its constructor arguments as
    attributes (the base get_config returns them); load it through custom_objects."""

    def __call__(self, step):
        """The learning rate (a float) for the optimizer's update at `step` (0 for the first:
        the optimizer's step count before the update). pynn's schedules also take an array
        of steps (as Keras'), giving an array of rates."""
        raise NotImplementedError

    def get_config(self):
        """The constructor arguments (what model files store). `name` is left out while it is
        the class's default, so such files also load in pynn versions without `name=`."""
        config = dict(vars(self))
        for cls in type(self).__mro__:  # the nearest constructor that takes a name (a
            # subclass of yours without one still gets pynn's default, then dropped here)
            name = inspect.signature(cls.__init__).parameters.get("name")
            if name is not None:
                if config.get("name", name.default) == name.default:
                    config.pop("name", None)
                break
        return config

    @classmethod
    def from_config(cls, config):
        """The schedule get_config described."""
        return cls(**config)

    def _set_name(self, name):
        if name is not None and not isinstance(name, str):  # it goes into JSON model files
            raise ValueError(f"{type(self).__name__}: name must be a string or None, got "
                             f"{name!r}")
        self.name = name


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ** (step / decay_steps); staircase floors the ratio
    (a step decay)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        owner = "ExponentialDecay"
        self.initial_learning_rate = _check(owner, "initial_learning_rate",
                                            initial_learning_rate)
        self.decay_steps = _check(owner, "decay_steps", decay_steps)
        self.decay_rate = _check(owner, "decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self._set_name(name)

    def __call__(self, step):
        """The rate at `step` (0-based): initial_learning_rate * decay_rate **
        (step / decay_steps), the exponent floored with staircase."""
        steps = _steps(step)
        if steps is not None:
            p = steps / self.decay_steps
            return self.initial_learning_rate * self.decay_rate ** (
                np.floor(p) if self.staircase else p)
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[i] while step <= boundaries[i] (and values[-1] after the last boundary)."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        boundaries, values = list(boundaries), [float(v) for v in values]
        for b in boundaries:  # (a string failed at the first step, NaN was never reached)
            if isinstance(b, (bool, np.bool_)) or np.ndim(b) or \
                    not isinstance(b, (numbers.Real, np.ndarray)) or \
                    np.asarray(b).dtype.kind not in "iuf" or not math.isfinite(b):
                raise ValueError(f"PiecewiseConstantDecay: boundaries must be finite numbers "
                                 f"(steps), got {boundaries!r}")
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"PiecewiseConstantDecay needs len(values) == len(boundaries) + 1, "
                             f"got {len(values)} values for {len(boundaries)} boundaries")
        if any(b > c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"PiecewiseConstantDecay: boundaries must not decrease, got "
                             f"{boundaries}")
        if any(not 0 <= v < math.inf for v in values):  # 0 pauses training, as lr=0 does
            raise ValueError(f"PiecewiseConstantDecay: values must be finite and >= 0, got "
                             f"{values}")
        self.boundaries, self.values = boundaries, values
        self._set_name(name)

    def __call__(self, step):
        """The rate at `step` (0-based): values[i] for the first boundaries[i] >= step, or
        values[-1] after the last boundary."""
        steps = _steps(step)
        if steps is not None:  # (the first boundary >= step: the count of those below)
            return np.asarray(self.values)[np.searchsorted(self.boundaries, steps)]
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


class PolynomialDecay(LearningRateSchedule):
    """From initial_learning_rate to end_learning_rate over decay_steps along
    (1 - step / decay_steps) ** power, then flat. With cycle, the decay starts again after
    each decay_steps (over the first multiple of decay_steps >= step)."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001,
                 power=1.0, cycle=False, name="PolynomialDecay"):
        owner = "PolynomialDecay"
        # rates may be 0 and end may exceed initial (a ramp up), as in Keras
        self.initial_learning_rate = _check(owner, "initial_learning_rate",
                                            initial_learning_rate, strict=False)
        self.decay_steps = _check(owner, "decay_steps", decay_steps)
        self.end_learning_rate = _check(owner, "end_learning_rate", end_learning_rate,
                                        strict=False)
        self.power = _check(owner, "power", power, strict=False)  # < 0: an infinite end
        self.cycle = bool(cycle)
        self._set_name(name)

    def __call__(self, step):
        """The rate at `step` (0-based): the polynomial decay at step (end_learning_rate
        once step passes decay_steps, unless cycle)."""
        steps = _steps(step)
        if steps is not None:
            return self._decayed(steps)
        decay_steps = self.decay_steps
        if self.cycle:  # Keras: the multiplier is 1 at step 0 (ceil would give 0)
            decay_steps *= 1 if step == 0 else math.ceil(step / self.decay_steps)
        else:
            step = min(step, decay_steps)
        # min: a fractional decay_steps can round step / decay_steps just above 1, where a
        # fractional power of a negative number is complex
        p = min(step / decay_steps, 1.0)
        return ((self.initial_learning_rate - self.end_learning_rate) * (1 - p) ** self.power
                + self.end_learning_rate)

    def _decayed(self, steps):
        """__call__ on an array of steps."""
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps = decay_steps * np.where(steps == 0, 1.0,
                                                 np.ceil(steps / self.decay_steps))
        else:
            steps = np.minimum(steps, decay_steps)
        p = np.minimum(steps / decay_steps, 1.0)
        return ((self.initial_learning_rate - self.end_learning_rate) * (1 - p) ** self.power
                + self.end_learning_rate)


class InverseTimeDecay(LearningRateSchedule):
    """initial_learning_rate / (1 + decay_rate * step / decay_steps); staircase floors
    step / decay_steps."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        owner = "InverseTimeDecay"
        self.initial_learning_rate = _check(owner, "initial_learning_rate",
                                            initial_learning_rate)
        self.decay_steps = _check(owner, "decay_steps", decay_steps)
        # < 0 would reach a zero denominator, then negative rates; 0 is a constant rate
        self.decay_rate = _check(owner, "decay_rate", decay_rate, strict=False)
        self.staircase = bool(staircase)
        self._set_name(name)

    def __call__(self, step):
        """The rate at `step` (0-based): initial_learning_rate / (1 + decay_rate * step /
        decay_steps), step / decay_steps floored with staircase."""
        steps = _steps(step)
        if steps is not None:
            p = steps / self.decay_steps
            return self.initial_learning_rate / (1 + self.decay_rate * (
                np.floor(p) if self.staircase else p))
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1 + self.decay_rate * p)


def _cosine(fraction, alpha, cos=math.cos):
    return (1 - alpha) * 0.5 * (1 + cos(math.pi * fraction)) + alpha


class CosineDecay(LearningRateSchedule):
    """Cosine from initial_learning_rate down to alpha * initial over decay_steps, then flat.
    With warmup_target, first a linear warm-up from initial_learning_rate to warmup_target
    over warmup_steps, then the cosine from warmup_target down to alpha * warmup_target over
    decay_steps (without warmup_target, warmup_steps is ignored, as in Keras)."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        owner = "CosineDecay"
        # a warm-up may start at 0 (Keras' own example does)
        self.initial_learning_rate = _check(owner, "initial_learning_rate",
                                            initial_learning_rate,
                                            strict=warmup_target is None)
        self.decay_steps = _check(owner, "decay_steps", decay_steps)
        self.alpha = _check(owner, "alpha", alpha, strict=False, high=1.0)
        self._set_name(name)
        self.warmup_target = None if warmup_target is None else \
            _check(owner, "warmup_target", warmup_target)
        self.warmup_steps = _check(owner, "warmup_steps", warmup_steps, strict=False)

    def __call__(self, step):
        """The rate at `step` (0-based): on the warm-up line while step < warmup_steps (with
        warmup_target), then on the cosine; flat once the decay is over."""
        steps = _steps(step)
        if steps is not None:
            return self._decayed(steps)
        if self.warmup_target is None:
            frac = min(step, self.decay_steps) / self.decay_steps
            return self.initial_learning_rate * _cosine(frac, self.alpha)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            return ((self.warmup_target - self.initial_learning_rate) * step / self.warmup_steps
                    + self.initial_learning_rate)
        frac = (step - self.warmup_steps) / self.decay_steps
        return self.warmup_target * _cosine(frac, self.alpha)

    def _decayed(self, steps):
        """__call__ on an array of steps."""
        if self.warmup_target is None:
            frac = np.minimum(steps, self.decay_steps) / self.decay_steps
            return self.initial_learning_rate * _cosine(frac, self.alpha, np.cos)
        steps = np.minimum(steps, self.decay_steps + self.warmup_steps)
        warming = steps < self.warmup_steps
        # (where no step warms up, warmup_steps may be 0: no division by it)
        warmup = ((self.warmup_target - self.initial_learning_rate) * steps
                  / (self.warmup_steps or 1.0) + self.initial_learning_rate)
        frac = (steps - self.warmup_steps) / self.decay_steps
        return np.where(warming, warmup, self.warmup_target * _cosine(frac, self.alpha, np.cos))


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decays with warm restarts (SGDR): from initial_learning_rate to
    alpha * initial over first_decay_steps, then again over t_mul times as many steps with
    the cosine part m_mul times the previous one's (the floor alpha * initial stays), and so
    on."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0,
                 alpha=0.0, name="SGDRDecay"):
        owner = "CosineDecayRestarts"
        self.initial_learning_rate = _check(owner, "initial_learning_rate",
                                            initial_learning_rate)
        self.first_decay_steps = _check(owner, "first_decay_steps", first_decay_steps)
        self.t_mul = _check(owner, "t_mul", t_mul)
        self.m_mul = _check(owner, "m_mul", m_mul, strict=False)
        self.alpha = _check(owner, "alpha", alpha, strict=False, high=1.0)
        self._set_name(name)

    def _start(self, restart):
        """Where period `restart` starts, in units of first_decay_steps: 1 + t + ... ."""
        return (1 - self.t_mul ** restart) / (1 - self.t_mul)

    def __call__(self, step):
        """The rate at `step` (0-based), in the period it falls in. With t_mul < 1 the
        periods shrink and end: a step past their end raises ValueError (Keras gives
        NaN)."""
        steps = _steps(step)
        if steps is not None:
            return self._decayed(steps)
        fraction = step / self.first_decay_steps
        if self.t_mul == 1:
            restart = math.floor(fraction)
            fraction -= restart
        else:
            log_arg = 1 - fraction * (1 - self.t_mul)
            if log_arg <= 0:  # t_mul < 1: the periods shrink and end (Keras gives NaN there)
                raise ValueError(f"CosineDecayRestarts with t_mul={self.t_mul} < 1 has no rate "
                                 f"from step {self.first_decay_steps / (1 - self.t_mul):g} "
                                 f"on (its shrinking periods end there), got step {step}")
            restart = math.floor(math.log(log_arg) / math.log(self.t_mul))
            # the logarithm's rounding can put the first step of a period in the one before
            # (t_mul=3: step 121 * first_decay_steps), a jump from the period's lowest rate to
            # its highest: the starts settle it, to within their own rounding (t_mul=1.1:
            # period 3 starts at 3.3100000000000005 first decay steps, step 331 at 3.31)
            slack = 1e-12 * max(1.0, fraction)
            if self._start(restart + 1) <= fraction + slack:
                restart += 1
            elif restart > 0 and self._start(restart) > fraction + slack:
                restart -= 1
            fraction = max(0.0, fraction - self._start(restart)) / self.t_mul ** restart
        # as Keras: m_mul scales the cosine part only; alpha stays a fraction of the initial
        cosine = 0.5 * self.m_mul ** restart * (1 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)

    def _decayed(self, steps):
        """__call__ on an array of steps (the same periods, the same corrections)."""
        fraction = steps / self.first_decay_steps
        if self.t_mul == 1:
            restart = np.floor(fraction)
            fraction = fraction - restart
        else:
            log_arg = 1 - fraction * (1 - self.t_mul)
            if (log_arg <= 0).any():  # the scalar path's error, for the first such step
                bad = float(steps[log_arg <= 0][0])
                self(int(bad) if bad.is_integer() else bad)
            restart = np.floor(np.log(log_arg) / math.log(self.t_mul))
            slack = 1e-12 * np.maximum(1.0, fraction)
            later = self._start(restart + 1) <= fraction + slack
            earlier = ~later & (restart > 0) & (self._start(restart) > fraction + slack)
            restart = restart + later - earlier
            fraction = np.maximum(0.0, fraction - self._start(restart)) / self.t_mul ** restart
        cosine = 0.5 * self.m_mul ** restart * (1 + np.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)


def _pynn_class(name):
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, LearningRateSchedule) and \
            cls is not LearningRateSchedule:  # the base computes nothing
        return cls
    return None


def serialize(schedule):
    """{"class_name", "config"} of a schedule (as model files store it)."""
    return _custom.describe(schedule)


def deserialize(config, custom_objects=None):
    """The schedule `serialize` (or Keras' serialize) described; a schedule class of your own
    comes from custom_objects={name: class}."""
    with _custom.custom_object_scope(custom_objects):
        return _custom.rebuild(config, _pynn_class, "learning-rate schedule")


__all__ = ["CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay",
           "LearningRateSchedule", "PiecewiseConstantDecay", "PolynomialDecay", "deserialize",
           "serialize"]
