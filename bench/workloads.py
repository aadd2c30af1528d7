"""The training workloads of ../shared/BENCHMARKS.md: synthetic teacher data, fixed seeds.

X ~ N(0, 1) float32; targets from a fixed random tanh teacher plus noise (argmax for classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    name: str
    samples: int
    layers: tuple  # (in, hidden..., out)
    batch: int
    loss: str  # "xent" (softmax cross-entropy, integer labels) or "mse"

    @property
    def train_flop_per_sample(self):
        """~6 FLOP per weight per sample, less the first layer's input gradient (2 per weight)."""
        weights = [a * b for a, b in zip(self.layers[:-1], self.layers[1:])]
        return 6 * sum(weights) - 2 * weights[0]


WORKLOADS = {
    "mnist_mlp": Workload("mnist_mlp", 60000, (784, 256, 256, 10), 128, "xent"),
    "tabular_small": Workload("tabular_small", 100000, (20, 64, 64, 1), 32, "mse"),
    "wide_mlp": Workload("wide_mlp", 20000, (1024, 1024, 1024, 10), 256, "xent"),
}


def make_data(w: Workload, seed=0, samples=None):
    rng = np.random.default_rng(seed)
    n = samples or w.samples
    x = rng.standard_normal((n, w.layers[0]), dtype=np.float32)
    hidden = 64
    w1 = rng.standard_normal((w.layers[0], hidden)) / np.sqrt(w.layers[0])
    w2 = rng.standard_normal((hidden, w.layers[-1])) / np.sqrt(hidden)
    t = np.tanh(x @ w1) @ w2 + 0.1 * rng.standard_normal((n, w.layers[-1]))
    if w.loss == "xent":
        return x, t.argmax(axis=1).astype(np.int64)
    return x, t.astype(np.float32)
