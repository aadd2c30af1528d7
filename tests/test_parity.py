"""Every available backend against the numpy reference: a whole training run gives the same
losses and weights (within float32 rounding), for each activation/loss family."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from conftest import AVAILABLE

FAST = sorted(AVAILABLE - {"numpy"})

CONFIGS = [
    ("relu", "sparse_categorical_crossentropy", "softmax", 4, "adam"),
    ("tanh", "categorical_crossentropy", "softmax", 3, "rmsprop"),
    ("gelu", "binary_crossentropy", "sigmoid", 1, "sgd"),
    ("elu", "mse", None, 2, "adagrad"),
    ("leaky_relu", "huber", "linear", 2, "adamw"),
    ("sigmoid", "mae", None, 1, "sgd"),
]


def _train(backend, hidden, loss, out_act, out_dim, opt, x, y):
    pynn.set_seed(7)
    model = pynn.Sequential([pynn.Input((x.shape[1],)), pynn.Dense(17, activation=hidden),
                             pynn.Dense(9, activation=hidden),
                             pynn.Dense(out_dim, activation=out_act)])
    optimizer = pynn.optimizers.get(opt)
    if opt == "sgd":
        optimizer = pynn.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    model.compile(optimizer=optimizer, loss=loss, backend=backend)
    history = model.fit(x, y, epochs=3, batch_size=13, verbose=0)
    return history.history["loss"], model.get_weights(), model.predict(x)


@pytest.mark.skipif(not FAST, reason="no compiled backend available")
@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("config", CONFIGS, ids=[c[1] for c in CONFIGS])
def test_training_matches_numpy(backend, config, rng):
    hidden, loss, out_act, out_dim, opt = config
    x = rng.normal(size=(101, 7)).astype(np.float32)
    if loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, out_dim, size=101)
    elif loss == "categorical_crossentropy":
        y = np.eye(out_dim)[rng.integers(0, out_dim, size=101)]
    elif loss == "binary_crossentropy":
        y = rng.integers(0, 2, size=101).astype(np.float32)
    else:
        y = rng.normal(size=(101, out_dim)).astype(np.float32)
    ref_loss, ref_w, ref_pred = _train("numpy", hidden, loss, out_act, out_dim, opt, x, y)
    got_loss, got_w, got_pred = _train(backend, hidden, loss, out_act, out_dim, opt, x, y)
    np.testing.assert_allclose(got_loss, ref_loss, rtol=2e-4)
    for a, b in zip(got_w, ref_w):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(got_pred, ref_pred, rtol=2e-3, atol=2e-4)
