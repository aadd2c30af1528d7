"""Dropout: inverted scaling, off at inference, seeded, exact gradient, in a model."""

from __future__ import annotations

import numpy as np
import pytest

import pynn


def _layer(rate, backend="numpy"):
    layer = pynn.Dropout(rate)
    layer.build((1000,), pynn.get_backend(backend), "float32")
    return layer


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_scales_and_zeroes(rate):
    pynn.set_seed(0)
    x = np.ones((200, 1000), np.float32)
    y = _layer(rate).forward(x, training=True)
    kept = y != 0
    assert abs(kept.mean() - (1 - rate)) < 0.01
    np.testing.assert_allclose(y[kept], 1 / (1 - rate), rtol=1e-6)
    assert abs(y.mean() - 1) < 0.03  # expectation preserved


def test_identity_at_inference_and_in_predict():
    x = np.random.default_rng(0).normal(size=(5, 1000)).astype(np.float32)
    assert _layer(0.5).forward(x, training=False) is x
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(8), pynn.Dropout(0.5), pynn.Dense(2)])
    xs = x[:, :4]
    np.testing.assert_allclose(model.predict(xs), model.predict(xs))
    np.testing.assert_allclose(model.predict(xs), model._forward(xs, training=False,
                                                                 logits=False), rtol=1e-5)


def test_gradient_uses_the_same_mask(rng):
    layer = _layer(0.3)
    x = rng.normal(size=(4, 1000)).astype(np.float32)
    y = layer.forward(x, training=True)
    mask = y / np.where(x == 0, 1, x)
    dy = rng.normal(size=y.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(dy), dy * mask, rtol=1e-6)


def test_seeded_masks_reproduce():
    x = np.ones((3, 1000), np.float32)
    pynn.set_seed(7)
    a = _layer(0.5).forward(x, training=True)
    pynn.set_seed(7)
    b = _layer(0.5).forward(x, training=True)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rate", [-0.1, 1.0, "half", True])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        pynn.Dropout(rate)


def test_model_with_dropout_trains_and_falls_back_visibly():
    pynn.set_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(32, activation="relu"),
                             pynn.Dropout(0.2), pynn.Dense(2, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h = model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    assert h.history["accuracy"][-1] > 0.9
    assert model.evaluate(x, y)[1] > 0.9
    if "cpu" in pynn.available_backends() and pynn.available_backends()["cpu"] is None:
        assert "Dropout" in pynn.engine.unsupported_reason(model)
    clone = pynn.Sequential.from_config(model.get_config())
    assert clone.layers[2].rate == 0.2
