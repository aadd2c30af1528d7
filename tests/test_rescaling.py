"""Rescaling (Keras' x * scale + offset) and Identity against float64 references, finite
differences and Keras 3; natively trained as the first layer, identical to the layer path;
in files and ONNX; misuse named."""

from __future__ import annotations

import sys

import fake_cupy
import numpy as np
import pytest
from conftest import AVAILABLE, import_keras, onnx_outputs, requires_native
from gradcheck import assert_close_grad, numeric_grad

import pynn
from pynn.layers import Identity, Rescaling

BACKENDS = [b for b in ("cpu", "numpy", "cuda", "cupy") if b in AVAILABLE]


def _factors(rng, features, per_feature):
    if not per_feature:
        return float(rng.uniform(-2, 2)), float(rng.normal())
    scale = rng.uniform(-2, 2, features)
    offset = rng.normal(size=1 if features > 1 and rng.random() < 0.3 else features)
    return list(scale), list(offset)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 17), (5, 129), (4, 2, 7)])
@pytest.mark.parametrize("per_feature", [False, True])
def test_forward_against_float64(rng, backend, shape, per_feature):
    scale, offset = _factors(rng, shape[-1], per_feature)
    model = pynn.Sequential([pynn.Input(shape[1:]), Rescaling(scale, offset=offset),
                             Identity()])
    model.compile(loss="mse", backend=backend)
    x = rng.normal(size=shape).astype(np.float32) * 100
    want = x.astype(np.float64) * np.asarray(scale) + np.asarray(offset)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4), (1, 1)])
@pytest.mark.parametrize("per_feature", [False, True])
def test_gradients(float64_numpy, rng, shape, per_feature):
    layer = Rescaling(*_factors(rng, shape[-1], per_feature))
    layer.build(shape[1:], float64_numpy, "float64")
    x, r = rng.normal(size=shape), rng.normal(size=shape)

    def f():
        return float((Identity().forward(layer.forward(x)) * r).sum())

    layer.forward(x, training=True)
    assert_close_grad(layer.backward(Identity().backward(r)), numeric_grad(f, x), what="d x")
    assert layer.backward(r, need_input_grad=False) is None


def test_the_gpu_backends_compute_the_same(rng, monkeypatch):
    from pynn.backend.cupy_backend import CupyBackend

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.make_fake_cupy())
    x, dy = rng.normal(size=(2, 7, 5)).astype(np.float32)
    results, scale = [], list(rng.uniform(-1, 1, 5))
    for backend in (pynn.get_backend("numpy"), CupyBackend()):
        layer = Rescaling(scale, 0.5)
        layer.build((5,), backend, np.float32)
        y = layer.forward(backend.asarray(x, np.float32), training=True)
        dx = layer.backward(backend.asarray(dy, np.float32))
        results.append([backend.to_numpy(a) for a in (y, dx)])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_array_equal(got, want)


def _model(rescaling):
    return pynn.Sequential([pynn.Input((6,)), rescaling, Identity(),
                            pynn.Dense(8, activation="relu"), Identity(),
                            pynn.Dense(3, activation="softmax")])


@requires_native
def test_the_native_engine_trains_it_first_as_the_layer_path_does(rng):
    x = (rng.random((96, 6)) * 255).astype(np.float32)
    y = rng.integers(0, 3, 96)
    scale, offset = list(rng.uniform(0.5, 2, 6) / 255), -0.5

    class Rescale(pynn.callbacks.Callback):  # a setting changed mid-fit is followed
        def on_epoch_end(self, epoch, logs=None):
            self.model.layers[1].scale = 1 / 255

    runs = {}
    for engine in ("native", "layers"):
        pynn.set_seed(5)
        model = _model(Rescaling(scale, offset))
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, epochs=3, batch_size=16, engine=engine, verbose=0,
                            callbacks=[Rescale()])
        runs[engine] = (history.history["loss"], model.get_weights(), model.predict(x))
        if engine == "native":
            assert model.engine_reason is None
    np.testing.assert_allclose(runs["native"][0], runs["layers"][0], rtol=1e-5)
    for a, b in zip(runs["native"][1], runs["layers"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(runs["native"][2], runs["layers"][2], rtol=1e-4, atol=1e-6)
    # predict's kept engine follows a changed setting
    model.layers[1].offset = 3.0
    hidden = model.layers[3](x[:4] / np.float32(255) + np.float32(3))
    np.testing.assert_allclose(model.predict(x[:4]), model.layers[5](hidden), rtol=1e-5,
                               atol=1e-6)
    images = x.reshape(96, 2, 3)
    for first in ("rescaling", "flatten"):  # (2, 3) samples: the same either way

        def image_model():
            pynn.set_seed(6)
            flatten = pynn.Flatten()
            if first == "rescaling":  # per feature of the last axis
                head = [Rescaling([1.0, -2.0, 0.5], offset=[0.0, 1.0, 2.0]), flatten]
            else:
                head = [flatten, Rescaling([1.0, -2.0, 0.5] * 2, offset=[0.0, 1.0, 2.0] * 2)]
            model = pynn.Sequential([pynn.Input((2, 3)), *head,
                                     pynn.Dense(3, activation="softmax")])
            model.compile("adam", "sparse_categorical_crossentropy")
            return model

        runs = []
        for engine in ("native", "layers"):
            model = image_model()
            runs.append(model.fit(images, y, epochs=2, batch_size=16, verbose=0,
                                  engine=engine, shuffle=False).history["loss"])
            if engine == "native":
                assert model.engine_reason is None
                dense = model.layers[3]
                want = dense(images[:5].reshape(5, 6) * np.float32([1, -2, 0.5] * 2) +
                             np.float32([0, 1, 2] * 2))
                np.testing.assert_allclose(model.predict(images[:5]), want, rtol=1e-5,
                                           atol=1e-6)
        np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)
    later = pynn.Sequential([pynn.Input((6,)), pynn.Dense(6), Rescaling(2.0),
                             pynn.Dense(3)])
    later.compile("adam", "mse")
    later.fit(x, rng.normal(size=(96, 3)), epochs=1, verbose=0)
    assert "Rescaling" in later.engine_reason  # after a Dense: layer by layer


def test_files_keras_and_onnx(rng, tmp_path):
    model = _model(Rescaling([0.5, 1, 2, -1, 1, 1], offset=0.25))
    x = rng.normal(size=(9, 6)).astype(np.float32)
    want = model.predict(x)
    for name in ("m.npz", "m.keras"):
        model.save(tmp_path / name)
        loaded = pynn.load_model(tmp_path / name)
        assert [type(l).__name__ for l in loaded.layers] == \
            [type(l).__name__ for l in model.layers]
        np.testing.assert_array_equal(loaded.predict(x), want)
    np.testing.assert_allclose(onnx_outputs(model, x), want, rtol=1e-5, atol=1e-6)


def test_keras_reads_pynns_file_and_pynn_reads_kerass(rng, tmp_path):
    keras = import_keras()
    model = _model(Rescaling([0.5, 1, 2, -1, 1, 1], offset=0.25))
    x = rng.normal(size=(9, 6)).astype(np.float32)
    want = model.predict(x)
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), want, rtol=1e-5,
                               atol=1e-6)
    mine = keras.Sequential([keras.Input((3,)),
                             keras.layers.Rescaling(np.array([1.0, 2.0, 3.0]), offset=0.5)])
    mine.save(tmp_path / "k.keras")  # (Keras writes a numpy scale as "__numpy__")
    np.testing.assert_allclose(pynn.load_model(tmp_path / "k.keras").predict(x[:, :3]),
                               x[:, :3] * [1, 2, 3] + 0.5, rtol=1e-6)


def test_identity_returns_a_new_array_of_the_same_values(rng):
    x = rng.normal(size=(4, 3)).astype(np.float32)
    y = Identity()(x)
    np.testing.assert_array_equal(y, x)
    assert not np.may_share_memory(y, x)


@pytest.mark.parametrize("scale, error, message", [
    (True, TypeError, "scale must be a number or per-feature numbers, got True"),
    ("2", TypeError, "scale must be a number"),
    (float("nan"), ValueError, "scale must be finite"),
    ([[1.0], [2.0]], ValueError, r"1-D sequence of per-feature numbers, got shape \(2, 1\)"),
    ([], ValueError, "got shape"),
])
def test_misuse_is_named(scale, error, message):
    with pytest.raises(error, match=message):
        Rescaling(scale)
    layer = Rescaling(1.0)
    with pytest.raises(error, match=message):
        layer.scale = scale
    assert layer.scale == 1.0


def test_per_feature_factors_must_fit_the_features():
    with pytest.raises(ValueError, match="scale has 2 values for inputs of 3 features"):
        pynn.Sequential([pynn.Input((3,)), Rescaling([1.0, 2.0])])
    model = pynn.Sequential([pynn.Input((3,)), Rescaling(1.0)])
    with pytest.raises(ValueError, match="offset has 2 values for inputs of 3 features"):
        model.layers[1].offset = [1.0, 2.0]
    model.layers[1].scale = np.array([[1.0, 2.0, 3.0]])  # (1, n): per feature, as Keras
    assert model.layers[1].scale == (1.0, 2.0, 3.0)
    model.layers[1].scale = 1.0
    model.layers[1].offset = [1.0]  # one value: every feature
    np.testing.assert_array_equal(model.predict(np.zeros((1, 3), np.float32)), [[1, 1, 1]])


def test_kerass_layer_agrees(rng):
    keras = import_keras()
    x = rng.normal(size=(5, 4)).astype(np.float32) * 50
    for args in ((1 / 255,), (1 / 127.5, -1.0), ([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0])):
        ours, theirs = Rescaling(*args), keras.layers.Rescaling(*args)
        np.testing.assert_array_equal(ours(x), keras.ops.convert_to_numpy(theirs(x)))
        config = theirs.get_config()
        assert Rescaling.from_config({k: config[k] for k in ("name", "scale", "offset")})\
            .get_config() == {**ours.get_config(), "name": config["name"]}
