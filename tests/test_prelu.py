"""PReLU (Keras' learnt-slope ReLU) against a float64 reference, finite differences and Keras
3, with shared axes, on both host backends, trained, frozen, regularized, in files and in
ONNX, and its misuse."""

from __future__ import annotations

import sys

import fake_cupy
import numpy as np
import pytest
from conftest import AVAILABLE, import_keras, onnx_outputs
from gradcheck import assert_close_grad, numeric_grad

import pynn
from pynn.layers import PReLU

BACKENDS = [b for b in ("cpu", "numpy", "cuda", "cupy") if b in AVAILABLE]


def reference(x, alpha):
    x = x.astype(np.float64)
    return np.where(x > 0, x, alpha.astype(np.float64) * x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,shared,alpha_shape", [
    ((1, 3), None, (3,)), ((3, 17), None, (17,)), ((5, 129), [1], (1,)),
    ((4, 2, 7), None, (2, 7)), ((4, 2, 7), [1], (1, 7)), ((4, 2, 7), 2, (2, 1)),
    ((3, 2, 3, 5), [1, 2], (1, 1, 5))])
def test_forward_against_float64(rng, backend, shape, shared, alpha_shape):
    layer = PReLU(shared_axes=shared)
    model = pynn.Sequential([pynn.Input(shape[1:]), layer])
    model.compile(loss="mse", backend=backend)
    assert layer.alpha.shape == alpha_shape
    alpha = rng.uniform(-0.5, 1.5, alpha_shape).astype(np.float32)
    layer.set_weights([alpha])
    x = rng.normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), reference(x, alpha), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(PReLU()(x), np.maximum(x, 0))  # alpha starts at 0: relu


@pytest.mark.parametrize("shape,shared", [((5, 4), None), ((3, 2, 4), [1]), ((3, 2, 4), [2]),
                                          ((2, 3, 4), [1, 2])])
def test_gradients(float64_numpy, rng, shape, shared):
    layer = PReLU(shared_axes=shared)
    layer.build(shape[1:], float64_numpy, "float64")
    layer.alpha.value[...] = rng.uniform(-0.5, 1.5, layer.alpha.shape)
    x, r = rng.normal(size=shape), rng.normal(size=shape)

    def f():
        return float((layer.forward(x) * r).sum())

    layer.forward(x, training=True)
    dx = layer.backward(r)
    assert_close_grad(layer.alpha.grad, numeric_grad(f, layer.alpha.value), what="d alpha")
    assert_close_grad(dx, numeric_grad(f, x), what="d x")


def test_the_gpu_backends_compute_the_same(rng, monkeypatch):
    from pynn.backend.cupy_backend import CupyBackend

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.make_fake_cupy())
    x, dy = rng.normal(size=(2, 6, 5, 3, 4)).astype(np.float32)
    alpha = rng.uniform(-1, 1, (1, 3, 4)).astype(np.float32)
    results = []
    for backend in (pynn.get_backend("numpy"), CupyBackend()):
        layer = PReLU(shared_axes=1)
        layer.build((5, 3, 4), backend, np.float32)
        layer.set_weights([alpha])
        y = layer.forward(backend.asarray(x, np.float32), training=True)
        dx = layer.backward(backend.asarray(dy, np.float32))
        results.append([backend.to_numpy(a) for a in (y, dx, layer.alpha.grad)])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_array_equal(got, want)


def test_kerass_layer_agrees(rng):
    keras = import_keras()
    x = rng.normal(size=(6, 3, 4)).astype(np.float32)
    for shared in (None, [1], [2]):
        ours, theirs = PReLU(shared_axes=shared), keras.layers.PReLU(shared_axes=shared)
        ours(x), theirs(x)  # built
        alpha = rng.uniform(-1, 1, ours.alpha.shape).astype(np.float32)
        assert tuple(theirs.get_weights()[0].shape) == ours.alpha.shape
        ours.set_weights([alpha])
        theirs.set_weights([alpha])
        np.testing.assert_allclose(ours(x), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-6,
                                   atol=1e-7)
        config, keras_config = ours.get_config(), theirs.get_config()
        assert config["shared_axes"] == keras_config["shared_axes"]
        assert config["alpha_constraint"] is None
    assert ours.name.startswith("p_re_lu") and theirs.name.startswith("p_re_lu")


def _model(regularizer=None, trainable=True):
    return pynn.Sequential([pynn.Input((6,)), pynn.Dense(8),
                            PReLU(alpha_initializer=pynn.initializers.Constant(0.25),
                                  alpha_regularizer=regularizer, trainable=trainable),
                            pynn.Dense(3, activation="softmax")])


def test_training_on_both_backends_files_and_onnx(rng, tmp_path):
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    results = {}
    for backend in BACKENDS:
        pynn.set_seed(3)
        model = _model("l2")
        model.compile("adam", "sparse_categorical_crossentropy", backend=backend)
        results[backend] = model.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
        if backend == "cpu":  # trained layer by layer, saying why
            assert "PReLU 'p_re_lu" in model.engine_reason
    if len(results) == 2:
        np.testing.assert_allclose(results["cpu"], results["numpy"], rtol=1e-5)
    alpha = model.layers[2].alpha.numpy().astype(np.float64)
    assert not np.allclose(alpha, 0.25)  # it learnt
    plain = _model()  # the same weights without the penalty
    plain.compile("adam", "sparse_categorical_crossentropy", backend=BACKENDS[0])
    plain.set_weights(model.get_weights())
    assert model.evaluate(x, y) == pytest.approx(plain.evaluate(x, y) + 0.01 * (alpha ** 2).sum(),
                                                 rel=1e-5)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6, atol=1e-7)
    assert loaded.layers[2].alpha_regularizer is not None
    np.testing.assert_allclose(onnx_outputs(model, x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_a_penalty_set_after_build_counts_at_once(rng):
    """alpha_regularizer set on a built layer was ignored until the model was saved and
    loaded (read once, at build)."""
    x, y = rng.normal(size=(16, 6)).astype(np.float32), rng.integers(0, 3, 16)
    model = _model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    layer = model.layers[2]
    layer.alpha.assign(rng.normal(size=8))
    before = model.evaluate(x, y)
    layer.alpha_regularizer = "l1"
    alpha = layer.alpha.numpy().astype(np.float64)
    assert model.evaluate(x, y) == pytest.approx(before + 0.01 * np.abs(alpha).sum(), rel=1e-6)


def test_a_frozen_slope_stays(rng):
    x = rng.normal(size=(32, 6)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    model = _model(trainable=False)
    model.compile("sgd", "sparse_categorical_crossentropy")
    kernel = model.layers[1].kernel.numpy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.layers[2].alpha.numpy(), np.full(8, 0.25, np.float32))
    assert not np.array_equal(model.layers[1].kernel.numpy(), kernel)  # the rest trained
    assert model.layers[2].count_params() == 8 and model.count_params() - 8 == sum(
        p.value.size for p in model.params if p.trainable)


def test_the_gradient_at_zero_is_kerass(rng):
    # Keras' relu(x) - alpha * relu(-x): no gradient at exactly 0, neither side's
    layer = PReLU(alpha_initializer=pynn.initializers.Constant(0.3))
    x = np.array([[0.0, -1.0, 2.0]], np.float32)
    layer(x)
    layer.forward(layer.backend.asarray(x, np.float32), training=True)
    dx = layer.backward(layer.backend.asarray(np.ones((1, 3)), np.float32))
    np.testing.assert_allclose(layer.backend.to_numpy(dx), [[0.0, 0.3, 1.0]], rtol=1e-6)


def test_float64_model_exports_to_onnx(rng):
    previous = pynn.floatx()
    pynn.set_floatx("float64")
    try:  # (onnxruntime has no double PRelu: pynn writes it from other operators)
        model = pynn.Sequential([pynn.Input((3, 4)), PReLU(shared_axes=[1]), pynn.Dense(2),
                                 PReLU()])
        for p in model.params:
            p.value[...] = rng.normal(size=p.shape)
        x = rng.normal(size=(5, 3, 4))
        np.testing.assert_allclose(onnx_outputs(model, x), model.predict(x), rtol=1e-12,
                                   atol=1e-12)
    finally:
        pynn.set_floatx(previous)


def test_shared_axes_keep_their_order_and_their_shape(rng):
    layer = PReLU(shared_axes=(2, 1))
    assert layer.get_config()["shared_axes"] == [2, 1]  # (as Keras' config)
    layer(rng.normal(size=(2, 3, 4, 5)))
    assert layer.alpha.shape == (1, 1, 5)
    layer.shared_axes = [2, 1]  # the same axes: taken
    with pytest.raises(ValueError, match="shared_axes cannot change once the layer is built"):
        layer.shared_axes = [1]


def test_misuse_is_named(rng):
    for shared in (0, -1, "1", [1, True], [], {1: 2}, {1}):
        with pytest.raises(ValueError, match="shared_axes must be an axis or a list of axes"):
            PReLU(shared_axes=shared)
    with pytest.raises(ValueError, match="shared axis 2 is not an axis of inputs \\(batch, 4\\)"):
        PReLU(shared_axes=2)(rng.normal(size=(3, 4)))
    with pytest.raises(ValueError, match="unknown constraint 'nonneg'"):
        PReLU(alpha_constraint="nonneg")
    layer = PReLU()
    layer(rng.normal(size=(3, 4)))
    with pytest.raises(ValueError, match="built for inputs of shape \\(batch, 4\\)"):
        layer(rng.normal(size=(3, 5)))
    with pytest.raises(RuntimeError, match="backward called without a training forward"):
        layer.backward(np.ones((3, 4), np.float32))
