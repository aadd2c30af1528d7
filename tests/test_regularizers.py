"""kernel/bias regularizers: the penalty joins the loss and exactly 2*l2*w (l1*sign(w)) the
gradient; configs round-trip; the native engine runs L1/L2 (tests/test_native_fit.py compares
it with the layer path) and leaves custom penalties to the layer path."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import regularizers
from gradcheck import assert_close_grad, numeric_grad


def _model(reg, bias_reg=None):
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, kernel_regularizer=reg,
                                                          bias_regularizer=bias_reg),
                             pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model._prepare_compiled()
    return model


def test_l2_changes_gradient_by_exactly_2_lambda_w(float64_numpy, rng):
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    plain, reg = _model(None), _model(regularizers.L2(0.05))
    reg.set_weights(plain.get_weights())
    loss0, _ = plain._compute_gradients(x, y)
    loss1, _ = reg._compute_gradients(x, y)
    w = plain.layers[1].kernel.value
    assert np.isclose(loss1 - loss0, 0.05 * (w * w).sum())
    np.testing.assert_allclose(reg.layers[1].kernel.grad - plain.layers[1].kernel.grad,
                               2 * 0.05 * w, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(reg.layers[1].bias.grad, plain.layers[1].bias.grad)


@pytest.mark.parametrize("reg", [regularizers.L1(0.03), regularizers.L1L2(0.02, 0.04)])
def test_penalty_gradients_by_finite_differences(float64_numpy, rng, reg):
    model = _model(reg, bias_reg=regularizers.L2(0.1))
    model.layers[1].bias.value[...] = rng.normal(size=4)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 1))
    model._compute_gradients(x, y)
    for p in model.layers[1].params:
        def f():
            out = model._forward(x, training=False, logits=False)
            return model._loss_and_grad(out, y)[0] + model._regularization()
        assert_close_grad(p.grad, numeric_grad(f, p.value), what=p.name)


def test_evaluate_includes_penalty_and_config_roundtrip(tmp_path):
    model = _model("l2")
    x, y = np.ones((4, 3)), np.zeros(4)
    plain_loss = model.loss(y, model.predict(x))
    assert model.evaluate(x, y) > plain_loss
    clone = pynn.Sequential.from_config(model.get_config())
    assert clone.layers[1].kernel_regularizer == regularizers.L2(0.01)
    if pynn.available_backends()["cpu"] is None:
        model.compile(optimizer="sgd", loss="mse", backend="cpu")
        assert pynn.engine.unsupported_reason(model) is None  # L1/L2 run natively
        model.layers[1].kernel_regularizer = Halved()
        assert "custom regularizer Halved" in pynn.engine.unsupported_reason(model)


class Halved(regularizers.Regularizer):
    """A penalty the native engine does not know: it must fall back."""

    def penalty(self, xp, w):
        return 0.5 * super().penalty(xp, w)


def test_bad_regularizers():
    with pytest.raises(ValueError, match="l2"):
        regularizers.L2(-1)
    with pytest.raises(ValueError, match="unknown regularizer"):
        pynn.Dense(2, kernel_regularizer="l3")


def test_named_l1_l2_penalises_and_keras_3s_l1l2_says_it_does_not():
    """'l1_l2' (a name Keras 3 refuses) is 0.01 for both; Keras 3's l1_l2() function is its
    L1L2 class, 0 and 0 by default, as pynn's; the name 'L1L2' is that class (it warns)."""
    reg = pynn.regularizers.get("l1_l2")
    assert (reg.l1, reg.l2) == (0.01, 0.01)
    assert pynn.Dense(2, kernel_regularizer="l1_l2").kernel_regularizer == \
        pynn.regularizers.l1_l2(0.01, 0.01)
    bare = pynn.regularizers.l1_l2()
    assert (bare.l1, bare.l2) == (0.0, 0.0)
    for name in ("L1L2", "l1l2"):
        with pytest.warns(UserWarning, match="penalises nothing"):
            reg = pynn.regularizers.get(name)
        assert (reg.l1, reg.l2) == (0.0, 0.0)


def test_keras_3_regularizer_defaults():
    from conftest import import_keras

    keras = import_keras()
    for ours, theirs in [(pynn.regularizers.l1(), keras.regularizers.l1()),
                         (pynn.regularizers.l2(), keras.regularizers.l2()),
                         (pynn.regularizers.l1_l2(), keras.regularizers.l1_l2()),
                         (pynn.regularizers.L1L2(), keras.regularizers.get("L1L2"))]:
        for key, value in theirs.get_config().items():
            assert getattr(ours, key) == pytest.approx(value), (ours, key)


@pytest.mark.parametrize("engine", ["native", "layers"])
def test_a_frozen_weights_penalty_is_not_in_the_loss(rng, engine):
    """Keras 3 adds the penalties of trainable weights only: a frozen base's L2 (it cannot
    change) was part of every reported loss, on both engines."""
    from conftest import AVAILABLE

    if engine == "native" and "cpu" not in AVAILABLE:
        pytest.skip("no cpu backend")
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.normal(size=(40, 1)).astype(np.float32)

    def model(regularizer):
        pynn.set_seed(6)
        m = pynn.Sequential([pynn.Input((4,)),
                             pynn.Dense(5, activation="tanh", kernel_regularizer=regularizer,
                                        bias_regularizer=regularizer),
                             pynn.Dense(1)])
        m.compile("sgd", "mse", backend="cpu" if engine == "native" else "numpy")
        return m

    frozen, plain = model(regularizers.l2(0.5)), model(None)
    frozen.layers[1].trainable = False
    plain.layers[1].trainable = False
    a = frozen.fit(x, y, epochs=2, batch_size=8, verbose=0, engine=engine,
                   shuffle=False).history["loss"]
    b = plain.fit(x, y, epochs=2, batch_size=8, verbose=0, engine=engine,
                  shuffle=False).history["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert frozen.evaluate(x, y) == pytest.approx(plain.evaluate(x, y), rel=1e-6)
    frozen.layers[1].trainable = True  # trainable again: its penalty counts again
    kernel = frozen.layers[1].kernel.numpy().astype(np.float64)
    bias = frozen.layers[1].bias.numpy().astype(np.float64)
    assert frozen.evaluate(x, y) == pytest.approx(
        plain.evaluate(x, y) + 0.5 * ((kernel ** 2).sum() + (bias ** 2).sum()), rel=1e-5)
    frozen.layers[1].kernel.trainable = False  # one weight frozen: the other's penalty
    assert frozen.evaluate(x, y) == pytest.approx(plain.evaluate(x, y) + 0.5 * (bias ** 2).sum(),
                                                  rel=1e-5)


def test_default_factors_are_kerass(rng):
    from conftest import import_keras

    keras = import_keras()
    w = rng.normal(size=(5, 4)).astype(np.float32)
    for ours, theirs in ((regularizers.L1(), keras.regularizers.L1()),
                         (regularizers.L2(), keras.regularizers.L2())):
        assert ours.penalty(np, w) == pytest.approx(float(theirs(w)), rel=1e-5)
    assert regularizers.L2().penalty(np, np.ones(10)) == pytest.approx(0.1)


def test_model_losses_are_the_penalties_the_loss_adds(rng):
    """Keras' model.losses / layer.losses (code reads the regularization from them): one
    number per trainable regularized weight, of its current value; a frozen one has none."""
    model = pynn.Sequential([
        pynn.Input((4,)),
        pynn.Dense(3, kernel_regularizer=pynn.regularizers.L2(0.1), bias_regularizer="l1"),
        pynn.Dense(1, kernel_regularizer=pynn.regularizers.L1L2(0.01, 0.02))])
    model.set_weights([rng.normal(size=w.shape) for w in model.get_weights()])
    k1, b1, k2, _ = model.get_weights()
    want = [0.1 * np.sum(k1 ** 2), 0.01 * np.sum(np.abs(b1)),
            0.01 * np.sum(np.abs(k2)) + 0.02 * np.sum(k2 ** 2)]
    np.testing.assert_allclose(model.losses, want, rtol=1e-5)
    assert model.layers[1].losses == model.losses[:2]
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = rng.normal(size=(10, 1)).astype(np.float32)
    model.compile("sgd", "mse")
    mse = np.mean((model.predict(x, verbose=0).astype(np.float64) - y) ** 2)
    assert model.evaluate(x, y) == pytest.approx(mse + sum(model.losses), rel=1e-5)
    model.layers[2].trainable = False
    np.testing.assert_allclose(model.losses, want[:2], rtol=1e-5)
    assert pynn.Sequential([pynn.Input((2,)), pynn.Dense(2)]).losses == []


@pytest.mark.parametrize("make", [lambda: pynn.regularizers.L1(0.5),
                                  lambda: pynn.regularizers.L2(0.5),
                                  lambda: pynn.regularizers.L1L2(0.5, 0.25)])
def test_a_regularizer_takes_a_list_as_keras(make):
    """L2(0.5)([1.0, 2.0]) was a TypeError (a list times itself); L1 took it."""
    reg, w = make(), [1.0, -2.0]
    assert reg(w) == pytest.approx(reg(np.array(w)))
    assert reg(w) > 0


def test_penalties_of_weights_whose_squares_pass_float32():
    """l2 * sum(w^2) of float32 weights of 3e20 is 1.8e39: squared in float32 it was inf
    (TerminateOnNaN stopped the layer path where the native engine went on)."""
    w = np.full((2, 3), 3e20, np.float32)
    assert regularizers.L2(0.01).penalty(np, w) == pytest.approx(0.01 * 6 * 9e40, rel=1e-6)
    assert regularizers.L1(0.5).penalty(np, w) == pytest.approx(0.5 * 6 * 3e20, rel=1e-6)
