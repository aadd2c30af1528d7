"""Dense on inputs with more axes (batch, T, ..., features): applied to the last axis, each
position alike, as Keras' Dense; with a class (or target) per position for the losses."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AVAILABLE, onnx_outputs
from gradcheck import assert_close_grad, numeric_grad

import pynn

BACKENDS = [b for b in ("cpu", "numpy", "cuda", "cupy") if b in AVAILABLE]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["relu", "gelu", "mish", "softmax"])
def test_each_position_alike(rng, backend, activation):
    previous = pynn.get_backend()
    pynn.set_backend(backend)
    try:
        _check_each_position_alike(rng, activation)
    finally:
        pynn.set_backend(previous)


def _check_each_position_alike(rng, activation):
    layer = pynn.Dense(7, activation=activation)
    model = pynn.Sequential([pynn.Input((3, 4, 5)), layer])
    assert model.output_shape == (3, 4, 7) and layer.kernel.shape == (5, 7)
    x = rng.normal(size=(6, 3, 4, 5)).astype(np.float32)
    flat = pynn.Sequential([pynn.Input((5,)), pynn.Dense(7, activation=activation)])
    flat.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(x), flat.predict(x.reshape(-1, 5))
                               .reshape(6, 3, 4, 7), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation", ["tanh", "silu", "linear"])
def test_gradients(float64_numpy, rng, activation):
    layer = pynn.Dense(4, activation=activation)
    layer.build((5, 3), float64_numpy, "float64")
    layer.bias.value[...] = rng.normal(size=4)
    x = rng.normal(size=(2, 5, 3))
    r = rng.normal(size=(2, 5, 4))

    def f():
        return float((layer.forward(x, training=False) * r).sum())

    layer.forward(x, training=True)
    dx = layer.backward(r)
    assert dx.shape == x.shape
    assert_close_grad(layer.kernel.grad, numeric_grad(f, layer.kernel.value), what="d kernel")
    assert_close_grad(layer.bias.grad, numeric_grad(f, layer.bias.value), what="d bias")
    assert_close_grad(dx, numeric_grad(f, x), what="d x")


def _tagger(backend, seed=2):
    pynn.set_seed(seed)
    model = pynn.Sequential([pynn.Input((6, 4)), pynn.Dense(9, activation="tanh"),
                             pynn.Dense(3, activation="softmax")])
    model.compile(pynn.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
    return model


def test_a_class_per_position(rng):
    x = rng.normal(size=(40, 6, 4)).astype(np.float32)
    labels = (x[..., 0] > 0).astype(np.int64) + (x[..., 1] > 1)
    w = rng.uniform(0.2, 2, 40)
    results = {}
    for backend in BACKENDS:
        model = _tagger(backend)
        history = model.fit(x, labels, epochs=3, batch_size=8, sample_weight=w, verbose=0)
        results[backend] = history.history["loss"], model.get_weights()
        if backend == "cpu":
            assert model.engine_reason == (f"Dense {model.layers[1].name!r} on inputs of shape "
                                           f"(batch, 6, 4): the engine takes (batch, features)")
        p = model.predict(x).astype(np.float64)
        assert p.shape == (40, 6, 3)
        nll = -np.log(np.take_along_axis(p, labels[..., None], -1)[..., 0])  # (40, 6)
        loss, acc = model.evaluate(x, labels)
        assert loss == pytest.approx(nll.mean(), rel=1e-5)  # over all 240 positions
        assert acc == pytest.approx(np.mean(p.argmax(-1) == labels))
        weighted = model.evaluate(x, labels, sample_weight=w)[0]
        assert weighted == pytest.approx((nll * w[:, None]).mean(), rel=1e-5)
        # the same labels one-hot, with categorical cross-entropy: the same loss
        model.compile(model.optimizer, "categorical_crossentropy")
        assert model.evaluate(x, np.eye(3)[labels]) == pytest.approx(loss, rel=1e-6)
    if len(results) == 2:
        np.testing.assert_allclose(results["cpu"][0], results["numpy"][0], rtol=1e-5)


def test_targets_and_weights_per_position_are_checked(rng):
    model = _tagger(BACKENDS[0])
    x = rng.normal(size=(4, 6, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=(4, 6))
    model.fit(x, labels[..., None], epochs=1, verbose=0)  # a trailing 1 is taken too
    with pytest.raises(ValueError, match=r"class indices of shape \(N, 6\) or \(N, 6, 1\), "
                                         r"got shape \(4,\)"):
        model.fit(x, labels[:, 0], verbose=0)
    with pytest.raises(ValueError, match="label 3 is out of range for 3 classes"):
        model.fit(x, np.full((4, 6), 3), verbose=0)
    with pytest.raises(ValueError, match=r"class_weight weighs each sample by its class.*"
                                         r"sample_weight of shape \(4, 6\)"):
        model.fit(x, labels, class_weight={0: 1.0, 1: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=r"shape \(4,\), one weight per sample or \(4, 6\), "
                                         r"one per position, got \(4, 5\)"):
        model.fit(x, labels, sample_weight=np.ones((4, 5)), verbose=0)
    model.fit(x, labels, sample_weight=np.ones((4, 1)), epochs=1, verbose=0)  # (N, 1): Keras'
    with pytest.raises(ValueError, match=r"r2_score takes \(samples, outputs\)"):
        pynn.metrics.r2_score(np.ones((4, 6, 2)), np.ones((4, 6, 2)))


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy",
                                  "mse"])
def test_a_weight_per_position_masks_padding(rng, loss):
    """Keras' way to leave a sequence's padding out: sample_weight (N, T). The labels at
    masked positions then change nothing, and the loss is Keras' weighted mean."""
    x = rng.normal(size=(30, 6, 4)).astype(np.float32)
    lengths = rng.integers(1, 7, size=30)
    mask = (np.arange(6) < lengths[:, None]).astype(np.float32)
    labels = rng.integers(0, 3, size=(30, 6))
    other = np.where(mask > 0, labels, (labels + 1) % 3)  # differs at the padding only
    sparse = loss.startswith("sparse")
    weights = []
    for y in (labels, other):
        model = _tagger(BACKENDS[0])
        model.compile(model.optimizer, loss)
        targets = y if sparse else np.eye(3)[y]
        model.fit(x, targets, sample_weight=mask[..., None] if loss == "mse" else mask,
                  epochs=2, batch_size=8, verbose=0)  # (N, T, 1) is taken too
        weights.append(model.get_weights())
        p = model.predict(x).astype(np.float64)
        per_position = -np.log(np.take_along_axis(p, y[..., None], -1)[..., 0]) \
            if loss != "mse" else ((p - np.eye(3)[y]) ** 2).mean(-1)
        assert model.evaluate(x, targets, sample_weight=mask) == pytest.approx(
            (per_position * mask).mean(), rel=1e-5)
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_an_unbuilt_model_takes_sequences(rng):
    model = pynn.Sequential([pynn.Dense(5, activation="relu"), pynn.Dense(2)])
    model.compile("adam", "mse")
    model.fit(rng.normal(size=(8, 4, 3)), rng.normal(size=(8, 4, 2)), epochs=1, verbose=0)
    assert model.input_shape == (4, 3) and model.output_shape == (4, 2)


def test_files_summary_and_onnx(rng, tmp_path):
    model = _tagger(BACKENDS[0])
    x = rng.normal(size=(5, 6, 4)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, size=(5, 6)), epochs=1, verbose=0)
    lines = []
    model.summary(print_fn=lines.append)
    assert "(None, 6, 9)" in lines[0] and "(None, 6, 3)" in lines[0]
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(pynn.load_model(tmp_path / "m.npz").predict(x),
                                  model.predict(x))
    np.testing.assert_allclose(onnx_outputs(model, x), model.predict(x), rtol=1e-5, atol=1e-6)
