"""Keras 3's activity_regularizer (any layer): its penalty of the layer's outputs, over the
batch size, joins the training and evaluation loss, and its gradient the backward pass, the
output layer's too when its softmax/sigmoid is fused with the cross-entropy; by finite
differences, against the formula, and through configs and model files."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from conftest import NATIVE
from gradcheck import assert_close_grad, numeric_grad
from pynn import regularizers


def _model(last_activation="softmax", loss="sparse_categorical_crossentropy", units=3):
    model = pynn.Sequential([
        pynn.Input((4,)),
        pynn.Dense(5, activation="tanh", activity_regularizer=regularizers.L1L2(0.03, 0.02)),
        pynn.layers.LayerNormalization(activity_regularizer="l2"),
        pynn.Dense(units, activation=last_activation,
                   activity_regularizer=regularizers.L2(0.07))])
    model.compile(optimizer="sgd", loss=loss)
    model._prepare_compiled()
    return model


def _penalty(model, x):
    """The activity penalties by hand: each regularized layer's outputs, layer by layer."""
    total, out = 0.0, x
    for layer in model.layers[1:]:
        out = layer(out)
        reg = layer.activity_regularizer
        total += (reg.l1 * np.abs(out).sum() + reg.l2 * (out * out).sum()) / len(x)
    return total


@pytest.mark.parametrize("case", [("softmax", "sparse_categorical_crossentropy", 3),
                                  ("sigmoid", "binary_crossentropy", 1),
                                  ("linear", "mse", 2)])
def test_gradients_by_finite_differences(float64_numpy, rng, case):
    """The fused softmax/sigmoid output layers too (their penalty is of the probabilities,
    its gradient taken back through the activation)."""
    model = _model(*case)
    n = int(rng.integers(3, 9))
    x = rng.normal(size=(n, 4))
    y = {"sparse_categorical_crossentropy": rng.integers(0, 3, n),
         "binary_crossentropy": rng.integers(0, 2, (n, 1)).astype(np.float64),
         "mse": rng.normal(size=(n, 2))}[case[1]]
    loss, _ = model._compute_gradients(x, y)
    plain = model.loss(y, model.predict(x, verbose=0))
    assert loss == pytest.approx(plain + _penalty(model, x), rel=1e-10)

    def f():
        activity = []
        out = model._forward(x, training=False, logits=model._fused, activity=activity)
        return model._loss_and_grad(out, y)[0] + model._activity_loss(activity, n)
    for p in model.trainable_params:
        assert_close_grad(p.grad, numeric_grad(f, p.value), what=p.name)


def test_evaluate_fit_and_the_engines(rng):
    x = rng.normal(size=(24, 4)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    model = _model()
    plain = model.loss(y, model.predict(x, verbose=0))
    assert model.evaluate(x, y, batch_size=24, verbose=0) == pytest.approx(
        plain + _penalty(model, x), rel=1e-5)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 2
    if NATIVE:
        assert model.engine_reason == ("layer 'dense' has an activity_regularizer (the engine "
                                       "has none)").replace("'dense'", repr(model.layers[1].name))
    for layer in model.layers[1:]:
        layer.activity_regularizer = None
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    if NATIVE:
        assert model.engine_reason is None


def test_set_after_build_configs_and_files(rng, tmp_path):
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    assert "activity_regularizer" not in model.layers[1].get_config()  # (None: left out)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    before = model.evaluate(x, y, verbose=0)
    model.layers[1].activity_regularizer = "l1"  # a name, as the constructor takes
    out = model.predict(x, verbose=0)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        before + 0.01 * np.abs(out).sum() / 6, rel=1e-5)
    config = model.layers[1].get_config()
    assert config["activity_regularizer"]["class_name"] == "L1"
    model.save(tmp_path / "m.npz")
    back = pynn.load_model(tmp_path / "m.npz")
    assert back.layers[1].activity_regularizer == regularizers.L1(0.01)
    assert back.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))
    keras_config = {"module": "keras.regularizers", "class_name": "L2",
                    "config": {"l2": 0.5}, "registered_name": None}
    assert pynn.Dense(2, activity_regularizer=keras_config).activity_regularizer == \
        regularizers.L2(0.5)
    with pytest.raises(ValueError, match="unknown regularizer"):
        pynn.Dense(2, activity_regularizer="l3")


def test_activity_regularization_layer(float64_numpy, rng, tmp_path):
    """Keras' ActivityRegularization(l1, l2): the identity, its inputs penalised; by finite
    differences, in configs and files, and left out of ONNX and predict's engine."""
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(5, activation="tanh"),
                             pynn.ActivityRegularization(l1=0.03, l2=0.05), pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model._prepare_compiled()
    n = int(rng.integers(2, 9))
    x, y = rng.normal(size=(n, 4)), rng.normal(size=(n, 2))
    loss, _ = model._compute_gradients(x, y)
    hidden = model.layers[1](x)
    penalty = (0.03 * np.abs(hidden).sum() + 0.05 * (hidden * hidden).sum()) / n
    assert loss == pytest.approx(model.loss(y, model.predict(x, verbose=0)) + penalty,
                                 rel=1e-10)

    def f():
        activity = []
        out = model._forward(x, training=False, logits=False, activity=activity)
        return model._loss_and_grad(out, y)[0] + model._activity_loss(activity, n)
    for p in model.trainable_params:
        assert_close_grad(p.grad, numeric_grad(f, p.value), what=p.name)
    config = model.layers[2].get_config()
    assert config["l1"] == 0.03 and config["l2"] == 0.05
    assert "activity_regularizer" not in config
    model.save(tmp_path / "m.npz")
    back = pynn.load_model(tmp_path / "m.npz")
    assert back.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))
    np.testing.assert_array_equal(model.layers[2](x[:, :4]), x[:, :4])  # the identity
    with pytest.raises(ValueError, match="l1 must be a number >= 0"):
        pynn.ActivityRegularization(l1=-1)
    layer = back.layers[2]  # l1/l2 are the penalty in use, as files keep it
    layer.l2 = 0.5
    assert layer.activity_regularizer == regularizers.L1L2(0.03, 0.5)
    layer.activity_regularizer = regularizers.L2(0.2)
    assert (layer.l1, layer.l2) == (0.0, 0.2)
    assert layer.get_config()["l2"] == 0.2
    with pytest.raises(ValueError, match="l1 must be a number >= 0"):
        layer.l1 = -3
