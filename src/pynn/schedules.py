"""Learning-rate schedules (Keras' keras.optimizers.schedules): lr as a function of the
optimizer step (0 for the first update). Pass one as `learning_rate=` to any optimizer;
a plain function step -> lr works too.
"""

from __future__ import annotations

import math


class LearningRateSchedule:
    """Base class: schedule(step) -> learning rate for the update at that step (0-based)."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return dict(vars(self))


class ExponentialDecay(LearningRateSchedule):
    """initial_learning_rate * decay_rate ** (step / decay_steps); staircase floors the ratio
    (a step decay)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        if not initial_learning_rate > 0 or not decay_steps > 0 or not decay_rate > 0:
            raise ValueError("ExponentialDecay needs initial_learning_rate, decay_steps and "
                             f"decay_rate > 0, got {initial_learning_rate}, {decay_steps}, "
                             f"{decay_rate}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = float(decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[i] while step <= boundaries[i] (and values[-1] after the last boundary)."""

    def __init__(self, boundaries, values):
        boundaries, values = list(boundaries), [float(v) for v in values]
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

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


class CosineDecay(LearningRateSchedule):
    """Cosine from initial_learning_rate down to alpha * initial over decay_steps, then flat."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0):
        if not initial_learning_rate > 0 or not decay_steps > 0 or not 0 <= alpha <= 1:
            raise ValueError("CosineDecay needs initial_learning_rate > 0, decay_steps > 0 and "
                             f"0 <= alpha <= 1, got {initial_learning_rate}, {decay_steps}, "
                             f"{alpha}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = float(decay_steps)
        self.alpha = float(alpha)

    def __call__(self, step):
        frac = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * frac))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)
