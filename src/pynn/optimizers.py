"""Optimizers with Keras 3's names, defaults and update formulas.

An optimizer keeps per-parameter state arrays (on the parameter's backend) and applies one
fused update per parameter through the backend contract. `learning_rate` can be changed at
any time, also during `fit` (a callback may set `model.optimizer.learning_rate`).
"""

from __future__ import annotations

import numbers


def _check_positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


def _check_fraction(name, value):
    value = _check_positive(name, value, allow_zero=True)
    if value >= 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


class Optimizer:
    """Base class: subclasses name their state slots and implement `_update`."""

    slots: tuple[str, ...] = ()

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate
        self.iterations = 0  # completed update steps
        self._state = {}  # id(param) -> {slot: array}

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = _check_positive("learning_rate", value)

    def get_config(self):
        return {"learning_rate": self.learning_rate}

    def _slots_for(self, param):
        state = self._state.get(id(param))
        if state is None:
            b = param.backend
            state = {s: self._initial_slot(s, b, param.value) for s in self._active_slots()}
            self._state[id(param)] = state
        return state

    def _active_slots(self):
        return self.slots

    def _initial_slot(self, slot, backend, value):
        return backend.zeros(value.shape, value.dtype)

    def apply(self, params):
        """One step: update every trainable parameter from its .grad, in place."""
        self.iterations += 1
        for p in params:
            if p.trainable and p.grad is not None:
                self._update(p.backend, p.value, p.grad, self._slots_for(p))

    def reset(self):
        self._state.clear()
        self.iterations = 0

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = _check_fraction("momentum", momentum)
        self.nesterov = bool(nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _active_slots(self):
        return ("velocity",) if self.momentum else ()

    def _update(self, b, w, g, s):
        b.sgd_update(w, g, s.get("velocity"), self.learning_rate, self.momentum, self.nesterov)


class Adam(Optimizer):
    slots = ("m", "v")
    weight_decay = 0.0

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1 = _check_fraction("beta_1", beta_1)
        self.beta_2 = _check_fraction("beta_2", beta_2)
        self.epsilon = _check_positive("epsilon", epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}

    def _update(self, b, w, g, s):
        b.adam_update(w, g, s["m"], s["v"], self.learning_rate, self.beta_1, self.beta_2,
                      self.epsilon, self.weight_decay, self.iterations)


class AdamW(Adam):
    """Adam with decoupled weight decay: w -= lr * weight_decay * w before the Adam step."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7):
        super().__init__(learning_rate, beta_1, beta_2, epsilon)
        self.weight_decay = _check_positive("weight_decay", weight_decay, allow_zero=True)

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7):
        super().__init__(learning_rate)
        self.rho = _check_fraction("rho", rho)
        self.momentum = _check_fraction("momentum", momentum)
        self.epsilon = _check_positive("epsilon", epsilon)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon}

    def _active_slots(self):
        return ("velocity", "momentum") if self.momentum else ("velocity",)

    def _update(self, b, w, g, s):
        b.rmsprop_update(w, g, s["velocity"], s.get("momentum"), self.learning_rate, self.rho,
                         self.momentum, self.epsilon)


class Adagrad(Optimizer):
    slots = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
        super().__init__(learning_rate)
        self.initial_accumulator_value = _check_positive(
            "initial_accumulator_value", initial_accumulator_value, allow_zero=True)
        self.epsilon = _check_positive("epsilon", epsilon)

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}

    def _initial_slot(self, slot, backend, value):
        acc = backend.zeros(value.shape, value.dtype)
        acc += self.initial_accumulator_value
        return acc

    def _update(self, b, w, g, s):
        b.adagrad_update(w, g, s["accumulator"], self.learning_rate, self.epsilon)


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def get(identifier) -> Optimizer:
    """An optimizer from a name ('adam', 'sgd', ...), a config dict or an Optimizer."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; known: {', '.join(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _BY_NAME.get(identifier["class_name"].lower())
        if cls is None:
            raise ValueError(f"unknown optimizer class {identifier['class_name']!r}")
        return cls(**identifier.get("config", {}))
    raise ValueError(f"cannot interpret {identifier!r} as an optimizer")


def serialize(opt: Optimizer) -> dict:
    return {"class_name": type(opt).__name__, "config": opt.get_config()}
