"""Keras' metric classes that are a loss's mean (BinaryCrossentropy, CategoricalCrossentropy,
SparseCategoricalCrossentropy, Hinge, SquaredHinge, CategoricalHinge, KLDivergence, Poisson,
LogCoshError, CosineSimilarity): values over several weighted batches against Keras 3
itself, their names as compile strings, which way is better, files and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import import_keras

import pynn
from pynn import metrics


def _batch(kind, rng, n, classes=4):
    """(y_true, y_pred) of a batch in the metric's domain."""
    if kind in ("binary", "hinge"):
        return (rng.integers(0, 2, size=(n, 3)).astype(np.float32),
                rng.uniform(0.01, 0.99, size=(n, 3)).astype(np.float32))
    p = rng.dirichlet(np.ones(classes), size=n).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    if kind == "sparse":
        return labels, p
    if kind == "categorical":
        return np.eye(classes, dtype=np.float32)[labels], p
    if kind == "distribution":
        return rng.dirichlet(np.ones(classes), size=n).astype(np.float32), p
    if kind == "counts":
        return (rng.poisson(2.0, size=(n, 2)).astype(np.float32),
                rng.uniform(0.1, 4, size=(n, 2)).astype(np.float32))
    return (rng.normal(size=(n, 3)).astype(np.float32),  # "real"
            rng.normal(size=(n, 3)).astype(np.float32))


CASES = [  # (class name, arguments, data kind)
    ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {"label_smoothing": 0.2}, "binary"),
    ("CategoricalCrossentropy", {}, "categorical"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.1}, "categorical"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("Hinge", {}, "hinge"),
    ("SquaredHinge", {}, "hinge"),
    ("CategoricalHinge", {}, "categorical"),
    ("KLDivergence", {}, "distribution"),
    ("Poisson", {}, "counts"),
    ("LogCoshError", {}, "real"),
    ("CosineSimilarity", {}, "real"),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[1] or ''}")
def test_values_over_batches_as_keras_3(rng, case, weighted):
    keras = import_keras()
    name, kwargs, kind = case
    ours, theirs = getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
    assert ours.name == theirs.name
    for n in (1, 7, 20):
        y, p = _batch(kind, rng, n)
        w = rng.uniform(0, 2, size=n).astype(np.float32) if weighted else None
        ours.update_state(y, p, sample_weight=w)
        theirs.update_state(y, p, sample_weight=w)
        np.testing.assert_allclose(ours.result(), float(theirs.result()), rtol=2e-5,
                                   atol=1e-6)
    ours.reset_state()
    y, p = _batch(kind, rng, 5)
    ours.update_state(y, p)  # a fresh start: this batch alone
    assert ours.result() == pytest.approx(float(getattr(keras.metrics, name)(**kwargs)(y, p)),
                                          rel=2e-5, abs=1e-6)


@pytest.mark.parametrize("name", ["hinge", "squared_hinge", "categorical_hinge",
                                  "kl_divergence", "poisson", "logcosh", "cosine_similarity",
                                  "KLDivergence", "CosineSimilarity", "LogCoshError"])
def test_compile_strings_log_under_their_names(rng, name):
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=32)]  # (in every one's domain)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(3, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", metrics=[name])
    history = model.fit(x, y, epochs=2, batch_size=8, validation_data=(x, y), verbose=0)
    assert name in history.history and f"val_{name}" in history.history
    cls = metrics._LOSS_METRICS[metrics._KERAS_NAMES.get(name, name)]
    want = cls()
    want.update_state(y, model.predict(x, verbose=0))
    assert history.history[f"val_{name}"][-1] == pytest.approx(want.result(), rel=1e-5)


def test_which_way_is_better():
    assert metrics.CosineSimilarity().direction == "up"
    for name, _, _ in CASES:
        if name != "CosineSimilarity":
            assert getattr(metrics, name)().direction == "down", name


def test_saved_and_loaded_with_their_arguments(rng, tmp_path):
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=(16, 1)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy",
                  metrics=[metrics.BinaryCrossentropy(name="smooth_bce", label_smoothing=0.3),
                           metrics.Hinge(), metrics.LogCoshError()])
    logs = model.evaluate(x, y, return_dict=True)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert loaded.evaluate(x, y, return_dict=True) == pytest.approx(logs, rel=1e-6)
    assert set(logs) == {"loss", "smooth_bce", "hinge", "logcosh"}
    assert logs["smooth_bce"] == pytest.approx(pynn.losses.BinaryCrossentropy(
        label_smoothing=0.3)(y, model.predict(x, verbose=0)), rel=1e-5)  # smoothed targets


def test_bad_arguments():
    for make in (lambda: metrics.CategoricalCrossentropy(axis=0),
                 lambda: metrics.SparseCategoricalCrossentropy(axis=-2),
                 lambda: metrics.CosineSimilarity(axis=0)):
        with pytest.raises(NotImplementedError, match="last axis"):
            make()
    with pytest.raises(ValueError, match="label_smoothing"):
        metrics.BinaryCrossentropy(label_smoothing=2)
    with pytest.raises(NotImplementedError, match="ignore_class=0 is not supported"):
        metrics.SparseCategoricalCrossentropy(ignore_class=0)
    with pytest.raises(ValueError, match="targets must lie in"):
        metrics.KLDivergence().update_state(np.array([[2.0, -1.0]]), np.array([[0.5, 0.5]]))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[1] or ''}")
def test_an_empty_batch_adds_nothing(rng, case):
    """A batch of 0 samples given to update_state raised the loss's "no samples"; Keras adds
    nothing. A loss called directly on no samples still raises."""
    name, kwargs, kind = case
    y, p = _batch(kind, rng, 9)
    want = getattr(metrics, name)(**kwargs)
    want.update_state(y, p)
    for weights in (None, np.zeros(0)):
        m = getattr(metrics, name)(**kwargs)
        m.update_state(y[:0], p[:0], sample_weight=weights)
        assert np.isnan(m.result())
        m.update_state(y, p)
        assert m.result() == pytest.approx(want.result())
    if not kwargs:  # the compile strings' metrics too
        compiled = metrics.get(want.name)
        compiled.update_state(y[:0], p[:0])
        compiled.update_state(y, p)
        assert compiled.result() == pytest.approx(want.result())
    with pytest.raises(ValueError, match="no samples"):
        want.fn(y[:0], p[:0])


def test_a_loss_object_as_a_metric_logs_under_its_name(rng):
    """compile(metrics=[a loss object]) logged it as "metric", "metric_1"; Keras 3 logs its
    name (Huber's "huber_loss", as Keras names it)."""
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = x[:, :1]
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", pynn.losses.Huber(),
                  metrics=[pynn.losses.Huber(), pynn.losses.MeanSquaredError(),
                           pynn.losses.MeanAbsoluteError(name="mine")])
    logs = model.evaluate(x, y, return_dict=True)
    assert set(logs) == {"loss", "huber_loss", "mean_squared_error", "mine"}
    assert logs["huber_loss"] == pytest.approx(logs["loss"], rel=1e-6)
    keras = import_keras()
    assert keras.losses.Huber().name == pynn.losses.Huber().name
