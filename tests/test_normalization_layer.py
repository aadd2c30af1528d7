"""Normalization (Keras' feature standardisation): adapt against float64 statistics, the
formula, Keras 3 itself, the native engine, files, ONNX, gradients and misuse."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AVAILABLE, import_keras, onnx_outputs
from gradcheck import assert_close_grad, numeric_grad

import pynn
from pynn.layers import Normalization


def _features(rng, n=333):
    scale, shift = np.array([1, 10, 0.1, 3, 0]), np.array([0, 50, -2, 7, 4])
    return (rng.normal(size=(n, 5)) * scale + shift).astype(np.float32)  # a constant column


@pytest.mark.parametrize("n", [1, 3, 17, 129])
def test_adapt_gives_the_float64_statistics(rng, n):
    x = _features(rng, n)
    layer = Normalization()
    layer.adapt(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(layer.mean.numpy(), x64.mean(axis=0).astype(np.float32),
                               rtol=1e-6)
    np.testing.assert_allclose(layer.variance.numpy(), x64.var(axis=0).astype(np.float32),
                               rtol=1e-5, atol=1e-12)
    by_batches = Normalization()
    by_batches.adapt(x, batch_size=2)  # merged pairwise: the same statistics
    np.testing.assert_allclose(by_batches.variance.numpy(), layer.variance.numpy(), rtol=1e-6)
    from_generator = Normalization()
    from_generator.adapt(x[i:i + 7] for i in range(0, n, 7))
    np.testing.assert_allclose(from_generator.mean.numpy(), layer.mean.numpy(), rtol=1e-6)


def test_the_formula_and_its_inverse(rng):
    x = _features(rng)
    layer = Normalization()
    layer.adapt(x)
    mean, var = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)
    want = (x - mean) / np.maximum(np.sqrt(var), 1e-7)
    got = pynn.Sequential([pynn.Input((5,)), layer]).predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(got[:, 4] == 0)  # the constant feature
    inverse = Normalization(mean=layer.mean.numpy(), variance=layer.variance.numpy(),
                            invert=True)
    np.testing.assert_allclose(pynn.Sequential([pynn.Input((5,)), inverse]).predict(got), x,
                               rtol=1e-5, atol=1e-4)
    pooled = Normalization(axis=None)  # one mean and variance for every value
    pooled.adapt(x)
    np.testing.assert_allclose(pooled.mean.numpy(), np.full(5, x.astype(np.float64).mean()),
                               rtol=1e-6)
    one_feature = Normalization()  # 1-D data: one feature per sample, as fit reads it
    one_feature.adapt(x[:, 1])
    assert one_feature.mean.shape == (1,)
    sequences = Normalization()  # (N, T, features): statistics over N and T
    sequences.adapt(x[:330].reshape(110, 3, 5))
    np.testing.assert_allclose(sequences.mean.numpy(), x[:330].astype(np.float64).mean(0),
                               rtol=1e-6)


def test_kerass_normalization_agrees(rng):
    keras = import_keras()
    x = _features(rng)
    ours, theirs = Normalization(), keras.layers.Normalization()
    ours.adapt(x)
    theirs.adapt(x)
    np.testing.assert_allclose(ours.mean.numpy(), keras.ops.convert_to_numpy(theirs.mean)[0],
                               rtol=1e-5)
    np.testing.assert_allclose(pynn.Sequential([pynn.Input((5,)), ours]).predict(x),
                               keras.ops.convert_to_numpy(theirs(x)), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif("cpu" not in AVAILABLE, reason="no cpu backend")
def test_the_native_engine_trains_through_it(rng):
    x = _features(rng)
    y = (x[:, :1] * 0.1 + x[:, 1:2] * 0.01).astype(np.float32)
    results = {}
    for engine in ("native", "layers"):
        pynn.set_seed(1)
        norm = Normalization()
        norm.adapt(x)
        model = pynn.Sequential([pynn.Input((5,)), norm, pynn.Dense(16, activation="relu"),
                                 pynn.Dense(1)])
        model.compile("adam", "mse", backend="cpu")
        history = model.fit(x, y, epochs=3, batch_size=32, verbose=0, engine=engine)
        results[engine] = history.history["loss"], model.predict(x)
    assert model.layers[1].mean.trainable is False
    np.testing.assert_allclose(results["native"][0], results["layers"][0], rtol=1e-5)
    np.testing.assert_allclose(results["native"][1], results["layers"][1], rtol=1e-4, atol=1e-6)
    before = model.predict(x)
    model.layers[1].adapt(x * 2)  # new statistics: predict's engine sees them
    assert not np.allclose(model.predict(x), before)
    inverted = pynn.Sequential([pynn.Input((5,)), Normalization(mean=0, variance=1,
                                                                invert=True), pynn.Dense(1)])
    inverted.compile("sgd", "mse", backend="cpu")
    inverted.fit(x, y, epochs=1, verbose=0)
    assert "invert=True" in inverted.engine_reason


def test_gradient(float64_numpy, rng):
    layer = Normalization(mean=[1.0, -2.0, 0.5], variance=[4.0, 0.25, 1e-3])
    layer.build((3,), float64_numpy, "float64")
    x, r = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))

    def f():
        return float((layer.forward(x) * r).sum())

    layer.forward(x, training=True)
    assert_close_grad(layer.backward(r), numeric_grad(f, x), rtol=1e-5, what="d x")


def test_files_and_onnx(rng, tmp_path):
    x = _features(rng)
    norm = Normalization()
    norm.adapt(x)
    model = pynn.Sequential([pynn.Input((5,)), norm, pynn.Dense(3)])
    assert [w.shape for w in norm.get_weights()] == [(5,), (5,)]
    assert norm.count_params() == 10 and not norm.trainable_weights
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    given = Normalization(mean=2.0, variance=[1, 2, 3, 4, 5])
    clone = pynn.layers.get_class("Normalization").from_config(given.get_config())
    assert clone.get_config()["variance"] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(onnx_outputs(model, x), model.predict(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda axis: pynn.layers.LayerNormalization(axis=axis),
    lambda axis: pynn.layers.RMSNormalization(axis=axis),
    lambda axis: pynn.layers.Softmax(axis=axis),
    lambda axis: Normalization(axis=axis, mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0])])
def test_the_last_axis_by_its_index_as_keras(rng, make, tmp_path):
    """axis=1 of (batch, features) inputs, Keras' way too of naming the last axis, was
    refused by these layers (BatchNormalization took it); another axis is refused at build."""
    x = rng.normal(size=(5, 3)).astype(np.float32)
    for axis in (1, [1]):
        model = pynn.Sequential([pynn.Input((3,)), make(axis)])
        np.testing.assert_array_equal(model.predict(x, verbose=0),
                                      pynn.Sequential([pynn.Input((3,)), make(-1)]).predict(
                                          x, verbose=0))
        assert model.layers[1].get_config()["axis"] == 1
        model.save(tmp_path / "m.npz")
        assert pynn.load_model(tmp_path / "m.npz").layers[1].get_config()["axis"] == 1
    with pytest.raises(ValueError, match="axis=1 is not the last axis of inputs of shape "
                                         "\\(batch, 2, 3\\)"):
        pynn.Sequential([pynn.Input((2, 3)), make(1)])
    with pytest.raises(ValueError, match="axis=0 is not supported"):
        make(0)
    # built for (batch, 3), then given (batch, 2, 3): its axis 1 is no longer the last (it
    # computed over axis 2, silently)
    layer = make(1)
    layer(x)
    with pytest.raises(ValueError, match="axis=1 is not the last axis|was built for inputs"):
        layer(x.reshape(5, 1, 3))
    with pytest.raises(ValueError, match="axis=1 is not the last axis|was built for inputs"):
        pynn.Sequential([pynn.Input((1, 3)), layer])
    weightless = pynn.layers.LayerNormalization(axis=1, center=False, scale=False)
    weightless(x)
    with pytest.raises(ValueError, match="axis=1 is not the last axis"):
        weightless(x.reshape(5, 1, 3))


def test_misuse_is_named(rng):
    with pytest.raises(ValueError, match="axis=0 is not supported"):
        Normalization(axis=0)
    with pytest.raises(ValueError, match="both mean and variance"):
        Normalization(mean=1.0)
    with pytest.raises(ValueError, match="variance must be >= 0"):
        Normalization(mean=0.0, variance=-1.0)
    with pytest.raises(ValueError, match="mean must be numbers"):
        Normalization(mean="a", variance=1.0)
    with pytest.raises(ValueError, match="one number or 5"):
        pynn.Sequential([pynn.Input((5,)), Normalization(mean=[1, 2], variance=[1, 2])])
    layer = Normalization()
    with pytest.raises(ValueError, match="NaN or infinity"):
        layer.adapt(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="no samples"):
        layer.adapt(np.zeros((0, 3)))
    layer.adapt(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"takes samples of shape \(3,\), the data have"):
        layer.adapt(np.ones((4, 2)))


@pytest.mark.skipif("cpu" not in AVAILABLE, reason="no cpu backend")
def test_the_engine_divides_by_kerass_least_deviation(rng):
    """max(sqrt(variance), 1e-7), not sqrt(variance + 1e-14): features with a deviation near
    1e-7 (lengths in metres) were off by up to 29% in the engine."""
    for std in (1e-7, 3e-7, 3e-5):
        x = (rng.normal(size=(300, 3)) * std + 1).astype(np.float32)
        norm = Normalization()
        norm.adapt(x)
        model = pynn.Sequential([pynn.Input((3,)), norm, pynn.Dense(
            3, use_bias=False, kernel_initializer="identity")])  # the engine needs a Dense
        model.compile("sgd", "mse", backend="cpu")
        assert pynn.engine.unsupported_reason(model, for_training=False) is None
        want = (x.astype(np.float64) - norm.mean.numpy()) / np.maximum(
            np.sqrt(norm.variance.numpy().astype(np.float64)), 1e-7)
        np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-5)


def test_later_changes_are_seen(rng):
    x = _features(rng)
    norm = Normalization(mean=[1.0, 2.0, 3.0, 4.0, 5.0], variance=1.0)
    model = pynn.Sequential([pynn.Input((5,)), norm])
    assert model.predict(x[:2]) == pytest.approx(x[:2] - [1, 2, 3, 4, 5], abs=1e-5)
    norm.invert = True  # predict's cached engine took the layer as it was
    np.testing.assert_allclose(model.predict(x[:2]), x[:2] + [1, 2, 3, 4, 5], rtol=1e-6)
    config = norm.get_config()  # a built layer still describes what was given, as Keras
    assert config["mean"] == [1.0, 2.0, 3.0, 4.0, 5.0] and config["variance"] == 1.0
    previous = pynn.floatx()
    pynn.set_floatx("float64")
    try:
        adapted = Normalization()
        adapted.adapt(x)
        adapted.set_weights([np.zeros(5), np.ones(5)])  # was a read-only view in float64
        assert adapted.mean.value.flags.writeable
    finally:
        pynn.set_floatx(previous)


def test_adapted_statistics_replace_the_given_ones_in_files():
    layer = Normalization(mean=0.0, variance=1.0)
    layer.adapt(np.array([[1.0], [3.0]]))
    config = layer.get_config()
    assert "mean" not in config and "variance" not in config  # (the weights hold them now)
    model = pynn.Sequential([pynn.Input((1,)), layer])
    rebuilt = pynn.models.model_from_json(model.to_json())
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_allclose(rebuilt.predict(np.array([[3.0]])), [[1.0]], rtol=1e-5)


def test_axis_none_takes_one_mean_and_variance():
    # per-feature statistics under axis=None were taken and applied per feature (Keras
    # refuses them)
    with pytest.raises(ValueError, match=r"axis=None\) standardises all values together: "
                                         r"give one mean and one variance, got shapes \(3,\)"):
        pynn.Normalization(axis=None, mean=[1, 2, 3], variance=[1, 4, 9])
    layer = pynn.Normalization(axis=None, mean=2.0, variance=4.0)
    np.testing.assert_allclose(layer(np.array([[2.0, 4.0, 6.0]], np.float32)), [[0, 1, 2]])
