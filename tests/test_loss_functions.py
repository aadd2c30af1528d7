"""Keras' loss functions (keras.losses.binary_crossentropy, ...): each sample's loss, as the
class with reduction "none" and as Keras computes it; given to compile (or as a
functools.partial with options), they train as their class does."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import NATIVE, import_keras

import pynn
from pynn import losses as L

FUNCTIONS = ["binary_crossentropy", "categorical_crossentropy",
             "sparse_categorical_crossentropy", "binary_focal_crossentropy",
             "categorical_focal_crossentropy", "huber", "cosine_similarity",
             "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
             "mean_squared_logarithmic_error", "kl_divergence", "log_cosh", "poisson", "hinge",
             "squared_hinge", "categorical_hinge"]


def _data(rng, name, shape=(7, 3)):
    probs = rng.uniform(0.05, 0.95, shape)
    if name == "sparse_categorical_crossentropy":
        return rng.integers(0, shape[-1], shape[:-1]), probs / probs.sum(-1, keepdims=True)
    if name in ("categorical_crossentropy", "categorical_focal_crossentropy",
                "categorical_hinge", "kl_divergence"):
        return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])], \
            probs / probs.sum(-1, keepdims=True)
    if name in ("binary_crossentropy", "binary_focal_crossentropy", "hinge",
                "squared_hinge"):
        return rng.integers(0, 2, shape).astype(float), probs
    return rng.uniform(0.1, 2, shape), rng.uniform(0.1, 2, shape)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("shape", [(7, 3), (1, 2), (4, 2, 5)])
def test_each_samples_loss_as_the_class_gives_it(rng, name, shape):
    fn = getattr(L, name)
    y, p = _data(rng, name, shape)
    got = fn(y, p)
    assert np.shape(got) == shape[:-1]
    np.testing.assert_allclose(got, fn.loss_class(reduction="none")(y, p), rtol=1e-12)


def test_options_are_the_classes():
    y = np.array([0, 2])
    z = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    np.testing.assert_allclose(L.sparse_categorical_crossentropy(y, z, from_logits=True),
                               L.SparseCategoricalCrossentropy(from_logits=True,
                                                               reduction="none")(y, z))
    np.testing.assert_allclose(L.huber(z, z * 3, delta=0.5),
                               L.Huber(0.5, reduction="none")(z, z * 3))
    with pytest.raises(TypeError, match=r"huber\(\): got an unexpected keyword argument "
                                        r"'from_logits'; it takes \(y_true, y_pred, delta\)"):
        L.huber(z, z, from_logits=True)


def test_compile_takes_them_and_their_partials(rng):
    x = rng.normal(size=(32, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 32)
    histories = []
    for loss in ("sparse_categorical_crossentropy", L.sparse_categorical_crossentropy,
                 functools.partial(L.sparse_categorical_crossentropy, from_logits=False)):
        pynn.set_seed(2)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax")])
        model.compile("sgd", loss=loss, metrics=[L.sparse_categorical_crossentropy])
        assert type(model.loss) is L.SparseCategoricalCrossentropy
        history = model.fit(x, labels, epochs=2, batch_size=8, verbose=0).history
        assert model.engine_reason is None or not NATIVE
        histories.append(history)
    assert histories[0]["loss"] == histories[1]["loss"] == histories[2]["loss"]
    np.testing.assert_allclose(histories[1]["sparse_categorical_crossentropy"],
                               histories[1]["loss"], rtol=1e-5)
    partial = functools.partial(L.categorical_crossentropy, from_logits=True)
    assert L.get(partial).from_logits
    with pytest.raises(ValueError, match="takes no option"):
        L.get(functools.partial(L.mean_squared_error, delta=2.0))
    with pytest.raises(ValueError, match="by keyword only"):
        L.get(functools.partial(L.huber, np.zeros(2)))

    def mine(y_true, y_pred):
        return ((y_true - y_pred) ** 2).mean(-1)

    with pytest.raises(ValueError, match="cannot use the function 'mine' as a loss"):
        L.get(mine)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_as_keras_computes_them(rng, name):
    keras = import_keras()
    y, p = _data(rng, name, (6, 4))
    np.testing.assert_allclose(getattr(L, name)(y, p),
                               keras.ops.convert_to_numpy(getattr(keras.losses, name)(y, p)),
                               rtol=1e-5, atol=1e-6)


def test_options_by_position_and_one_vector_as_keras():
    z = np.array([[2.0, 0.5, -1.0]])
    np.testing.assert_allclose(L.huber(z, z * 3, 0.5), L.huber(z, z * 3, delta=0.5))
    np.testing.assert_allclose(L.categorical_crossentropy([[0, 0, 1.0]], z, True),
                               L.categorical_crossentropy([[0, 0, 1.0]], z, from_logits=True))
    with pytest.raises(TypeError, match=r"huber\(\): .*it takes \(y_true, y_pred, delta\)"):
        L.huber(z, z, 0.5, 2.0)
    # one vector: one sample's loss over its last axis (Keras'), not a loss per value
    assert np.ndim(L.mean_squared_error([1.0, 2.0], [1.5, 2.0])) == 0
    assert L.binary_crossentropy(1.0, 0.7) == pytest.approx(-np.log(0.7), rel=1e-6)
    assert L.mean_squared_error([1.0, 2.0], [1.5, 2.0]) == pytest.approx(0.125)


def test_as_metrics_they_are_their_named_metrics_and_save(rng, tmp_path):
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy",
                  metrics=[L.mean_absolute_error, L.log_cosh, L.categorical_crossentropy])
    y = np.eye(2)[rng.integers(0, 2, 16)]
    history = model.fit(rng.normal(size=(16, 3)), y, epochs=1, verbose=0).history
    assert list(history) == ["loss", "mean_absolute_error", "logcosh",
                             "categorical_crossentropy"]
    model.save(tmp_path / "m.npz")
    assert pynn.load_model(tmp_path / "m.npz").metrics_names == list(history)
    assert pynn.models.clone_model(model).metrics_names == list(history)
    for fn in (L.huber, L.binary_focal_crossentropy, L.categorical_focal_crossentropy):
        model.compile("sgd", "categorical_crossentropy", metrics=[fn])  # (the loss averaged)
        model.fit(rng.normal(size=(16, 3)), y, epochs=1, verbose=0)
        model.save(tmp_path / "h.npz")
        assert pynn.load_model(tmp_path / "h.npz").metrics_names == ["loss", fn.__name__]
        assert pynn.models.clone_model(model).metrics_names == ["loss", fn.__name__]
