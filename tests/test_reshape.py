"""Reshape (Keras'): target shapes with -1 resolved as Keras does, its gradient, a leading
Reshape to one axis trained natively as a Flatten, other places layer by layer, files, ONNX
and misuse."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AVAILABLE, import_keras, onnx_outputs
from gradcheck import assert_close_grad, numeric_grad

import pynn
from pynn import engine as engine_mod


@pytest.mark.parametrize("sample,target", [((12,), (3, 4)), ((12,), (-1, 2)), ((3, 4), (-1,)),
                                           ((2, 3, 5), (5, -1, 2)), ((1,), (1, 1, -1)),
                                           ((17,), (17, 1))])
def test_shapes_and_values_as_keras(rng, sample, target):
    keras = import_keras()
    x = rng.normal(size=(3, *sample)).astype(np.float32)
    ours, theirs = pynn.Reshape(target), keras.layers.Reshape(target)
    want = keras.ops.convert_to_numpy(theirs(x))
    got = ours(x)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert ours.compute_output_shape(sample) == tuple(theirs.compute_output_shape(
        (None, *sample))[1:])
    assert ours.get_config()["target_shape"] == list(theirs.get_config()["target_shape"])
    assert ours.name.startswith("reshape")
    np.testing.assert_array_equal(pynn.Reshape(target)(x[:0]), want[:0])  # 0 samples


def test_gradient(float64_numpy, rng):
    layer = pynn.Reshape((-1, 3))
    layer.build((2, 6), float64_numpy, "float64")
    x, r = rng.normal(size=(4, 2, 6)), rng.normal(size=(4, 4, 3))

    def f():
        return float((layer.forward(x) * r).sum())

    assert layer.forward(x).shape == (4, 4, 3)
    assert_close_grad(layer.backward(r), numeric_grad(f, x), what="d x")


def _model(first):
    return pynn.Sequential([pynn.Input((4, 5)), first, pynn.Dense(7, activation="relu"),
                            pynn.Dense(3, activation="softmax")])


@pytest.mark.skipif("cpu" not in AVAILABLE, reason="the native engine needs pynn._C")
def test_a_leading_flat_reshape_trains_natively_as_a_flatten(rng):
    x = rng.normal(size=(64, 4, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    runs = []
    for first in (pynn.Flatten(), pynn.Reshape((-1,)), pynn.Reshape((20,))):
        pynn.set_seed(4)
        model = _model(first)
        model.compile("adam", "sparse_categorical_crossentropy", backend="cpu")
        assert engine_mod.unsupported_reason(model) is None
        runs.append((model.fit(x, y, epochs=2, batch_size=16, verbose=0).history["loss"],
                     model.predict(x)))
    for losses, predictions in runs[1:]:
        assert losses == runs[0][0]
        np.testing.assert_array_equal(predictions, runs[0][1])


def test_other_reshapes_train_layer_by_layer_on_both_backends(rng, tmp_path):
    x = rng.normal(size=(48, 12)).astype(np.float32)
    y = rng.normal(size=(48, 2)).astype(np.float32)
    results = {}
    for backend in sorted(AVAILABLE & {"numpy", "cpu", "cuda", "cupy"}):
        pynn.set_seed(2)
        model = pynn.Sequential([pynn.Input((12,)), pynn.Reshape((3, -1)), pynn.Dense(5),
                                 pynn.Reshape((15,)), pynn.Dense(2)])
        model.compile("adam", "mse", backend=backend)
        results[backend] = model.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
        assert results[backend][-1] < results[backend][0]
        if backend == "cpu":  # trained layer by layer, saying why
            assert model.engine_reason.startswith("layer Reshape 'reshape")
    if len(results) == 2:
        np.testing.assert_allclose(results["cpu"], results["numpy"], rtol=1e-5)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert loaded.layers[1].target_shape == (3, -1)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_allclose(onnx_outputs(model, x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_an_unbuilt_model_takes_its_shape_from_the_data(rng):
    model = pynn.Sequential([pynn.Reshape((-1,)), pynn.Dense(2)])
    model.compile("sgd", "mse")
    model.fit(rng.normal(size=(8, 2, 3)), rng.normal(size=(8, 2)), verbose=0)
    assert model.input_shape == (2, 3) and model.layers[1].input_shape == (6,)


def test_misuse_is_named(rng):
    for bad in ((), (0, 4), (-1, -1), (2.5,), ("3",), (True,), None, (-2, 3)):
        with pytest.raises(ValueError, match="target_shape must be a tuple of sizes >= 1"):
            pynn.Reshape(bad)
    with pytest.raises(ValueError, match=r"samples of shape \(12,\) \(12 values\) cannot "
                                         r"take the shape \(5, -1\)"):
        pynn.Sequential([pynn.Input((12,)), pynn.Reshape((5, -1))])
    with pytest.raises(ValueError, match=r"cannot take the shape \(3, 5\)"):
        pynn.Reshape((3, 5))(rng.normal(size=(2, 12)))
    assert pynn.Reshape(6).target_shape == (6,)  # a bare number is one axis, as Input(6)
