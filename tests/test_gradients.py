"""Finite-difference gradient checks in float64 for every layer, activation and loss."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import losses
from pynn.activations import NAMES as ACTIVATIONS
from conftest import AVAILABLE
from gradcheck import assert_close_grad, numeric_grad


def _away_from_kinks(x):
    # relu/leaky_relu/elu/mae/huber have kinks at 0 (or +-delta): keep samples off them.
    return np.where(np.abs(x) < 0.05, np.sign(x + 1e-12) * 0.05 + x, x)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_gradients(float64_numpy, rng, activation, use_bias):
    b = float64_numpy
    layer = pynn.Dense(4, activation=activation, use_bias=use_bias)
    layer.build((3,), b, "float64")
    if use_bias:
        layer.bias.value[...] = rng.normal(size=4)
    r = rng.normal(size=(5, 4))
    # Pre-activations off the kinks (relu & co. at 0) so central differences are valid.
    while True:
        x = rng.normal(size=(5, 3))
        z = x @ layer.kernel.value + (layer.bias.value if use_bias else 0)
        if np.abs(z).min() > 1e-3:
            break

    def f():
        return float((layer.forward(x, training=False) * r).sum())

    layer.forward(x, training=True)
    dx = layer.backward(r)
    assert_close_grad(layer.kernel.grad, numeric_grad(f, layer.kernel.value), what="d kernel")
    if use_bias:
        assert_close_grad(layer.bias.grad, numeric_grad(f, layer.bias.value), what="d bias")
    assert_close_grad(dx, numeric_grad(f, x), what="d x")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_layer_gradients(float64_numpy, rng, activation):
    b = float64_numpy
    layer = pynn.Activation(activation)
    layer.build((6,), b, "float64")
    x = _away_from_kinks(rng.normal(size=(4, 6)) * 2)
    r = rng.normal(size=(4, 6))

    def f():
        return float((layer.forward(x) * r).sum())

    layer.forward(x, training=True)
    assert_close_grad(layer.backward(r), numeric_grad(f, x), what=f"d {activation}")


def _loss_cases(rng):
    """(loss, y_pred, y_true) with predictions in each loss's valid domain."""
    n, d = 6, 4
    # mixed with the uniform row: no probability below 0.025, where -log p curves so fast
    # that the central difference is off by more than the tolerance (p = 7.8e-5 failed once)
    probs = 0.9 * rng.dirichlet(np.ones(d), size=n) + 0.1 / d
    labels = rng.integers(0, d, size=n)
    onehot = np.eye(d)[labels]
    binary = rng.integers(0, 2, size=(n, 3)).astype(np.float64)
    return [
        (losses.MeanSquaredError(), rng.normal(size=(n, d)), rng.normal(size=(n, d))),
        (losses.MeanAbsoluteError(), _away_from_kinks(rng.normal(size=(n, d))), np.zeros((n, d))),
        (losses.Huber(delta=1.0), rng.normal(size=(n, d)) * 2, rng.normal(size=(n, d)) * 0.1),
        (losses.BinaryCrossentropy(), rng.uniform(0.05, 0.95, size=(n, 3)), binary),
        (losses.BinaryCrossentropy(from_logits=True), rng.normal(size=(n, 3)) * 3, binary),
        (losses.CategoricalCrossentropy(), probs, onehot),
        (losses.CategoricalCrossentropy(from_logits=True), rng.normal(size=(n, d)) * 3, onehot),
        (losses.SparseCategoricalCrossentropy(), probs, labels),
        (losses.SparseCategoricalCrossentropy(from_logits=True), rng.normal(size=(n, d)) * 3,
         labels),
        # outputs that are not probabilities (a linear or tanh output): rows that sum to
        # more than 0 are normalised, the others taken as they are - and so differentiated
        # (the normalisation's term was applied to those too)
        (losses.CategoricalCrossentropy(), _unnormalised(rng, labels, d), onehot),
        (losses.SparseCategoricalCrossentropy(), _unnormalised(rng, labels, d), labels),
    ]


def _unnormalised(rng, labels, d):
    rows = rng.uniform(0.2, 1.0, size=(len(labels), d))
    for i in range(0, len(labels), 2):  # every other row sums below zero
        rows[i] = -rng.uniform(1.0, 2.0, size=d)
        rows[i, labels[i]] = rng.uniform(0.1, 0.9)
    return rows


@pytest.mark.parametrize("case", range(11))
def test_loss_gradients(float64_numpy, rng, case):
    loss, y_pred, y_true = _loss_cases(rng)[case]
    b = float64_numpy
    y = loss.prepare_targets(y_true, y_pred.shape[1:], np.float64)
    value, grad = loss.value_and_grad(b, y_pred, y)
    assert np.isclose(value, loss(y_true, y_pred))

    def f():
        return loss.value_and_grad(b, y_pred, y)[0]

    assert_close_grad(grad, numeric_grad(f, y_pred), what=loss.name)


@pytest.mark.parametrize("loss_cls", [losses.CategoricalCrossentropy,
                                      losses.SparseCategoricalCrossentropy,
                                      losses.BinaryCrossentropy])
def test_fused_logits_gradients(float64_numpy, rng, loss_cls):
    """The logits path a softmax/sigmoid output takes: gradient and value vs the probabilities."""
    b = float64_numpy
    loss = loss_cls()
    n, d = 5, (1 if loss_cls is losses.BinaryCrossentropy else 4)
    # (* 2: the probabilities' loss clips at 1e-7, which logits 16 apart reach: with * 3 one
    # draw in a few hundred compared a clipped value)
    logits = rng.normal(size=(n, d)) * 2
    if loss_cls is losses.SparseCategoricalCrossentropy:
        y_true = rng.integers(0, d, size=n)
    elif loss_cls is losses.CategoricalCrossentropy:
        y_true = np.eye(d)[rng.integers(0, d, size=n)]
    else:
        y_true = rng.integers(0, 2, size=(n, 1)).astype(np.float64)
    y = loss.prepare_targets(y_true, (d,), np.float64)
    value, grad = loss.logits_value_and_grad(b, logits, y)
    probs = b.activation_forward(loss.fused_activation, logits)
    assert np.isclose(value, loss(y_true, probs), rtol=1e-6)

    def f():
        return loss.logits_value_and_grad(b, logits, y)[0]

    assert_close_grad(grad, numeric_grad(f, logits), what=f"{loss.name} from logits")


@pytest.mark.parametrize("head,loss", [
    ([pynn.Dense(3, activation="softmax")], "sparse_categorical_crossentropy"),
    ([pynn.Dense(3), pynn.Activation("softmax")], "categorical_crossentropy"),
    ([pynn.Dense(1, activation="sigmoid")], "binary_crossentropy"),
    ([pynn.Dense(2, activation="tanh")], "huber"),
    ([pynn.Dense(2, activation="softmax")], "mse"),
])
def test_model_gradients(float64_numpy, rng, head, loss):
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(5, activation="elu"), *head])
    model.compile(optimizer="sgd", loss=loss)
    model._prepare_compiled()
    n = 7
    x = rng.normal(size=(n, 4))
    out_dim = model.output_shape[0]
    if loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, out_dim, size=n)
    elif loss == "categorical_crossentropy":
        y = np.eye(out_dim)[rng.integers(0, out_dim, size=n)]
    elif loss == "binary_crossentropy":
        y = rng.integers(0, 2, size=n).astype(np.float64)
    else:
        y = rng.normal(size=(n, out_dim))
    y = model._targets(y, n)
    model._compute_gradients(x, y)
    for p in model.params:
        def f():
            out = model._forward(x, training=False, logits=model._fused)
            return model._loss_and_grad(out, y)[0]

        assert_close_grad(p.grad, numeric_grad(f, p.value), what=p.name)


@pytest.mark.parametrize("case", [0, 1, 2, 3, 4, 5, 6])  # every loss that takes (N, T, d)
@pytest.mark.parametrize("weighted", [False, True])
def test_sequence_losses_average_over_every_position(float64_numpy, rng, case, weighted):
    """Predictions (N, T, d): the loss is the mean over all N * T positions, exactly the loss
    of the (N * T, d) rows (Keras, PyTorch); a sample's weight covers its T positions. The
    cross-entropies counted N and were T times too large (gradient included)."""
    n, t = 3, 5
    draws = [_loss_cases(rng)[case] for _ in range(3)]  # 6 rows each; N * T = 15 needed
    loss = draws[0][0]
    pred = np.concatenate([c[1] for c in draws])[:n * t]
    true = np.concatenate([c[2] for c in draws])[:n * t]
    d = pred.shape[1]
    b = float64_numpy
    w = rng.uniform(0.1, 2, size=n) if weighted else None
    w_rows = None if w is None else np.repeat(w, t)
    flat_y = loss.prepare_targets(true, (d,), np.float64)
    flat_value, flat_grad = loss.value_and_grad(b, pred, flat_y, w_rows)
    seq_pred = pred.reshape(n, t, d)
    seq_y = loss.prepare_targets(true.reshape(n, t, d), (t, d), np.float64)
    value, grad = loss.value_and_grad(b, seq_pred, seq_y, w)
    assert np.isclose(value, flat_value, rtol=1e-12)
    np.testing.assert_allclose(grad.reshape(n * t, d), flat_grad, rtol=1e-12, atol=1e-15)
    if not weighted:
        assert np.isclose(loss(true.reshape(n, t, d), seq_pred), flat_value, rtol=1e-12)


@pytest.mark.parametrize("base", [losses.SparseCategoricalCrossentropy,
                                  losses.CategoricalCrossentropy, losses.BinaryCrossentropy])
@pytest.mark.parametrize("backend", sorted(AVAILABLE))
def test_a_subclass_probability_formula_is_used_not_the_fused_one(rng, base, backend):
    """A subclass overriding _sum_and_grad alone (a focal loss, say) was replaced by the
    inherited logits formula whenever the output activation fused away: it trained and
    evaluated plain cross-entropy, silently. Here: twice the cross-entropy."""
    class Twice(base):
        def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
            total, grad = super()._sum_and_grad(backend, y_pred, y_true, scale, sample_weight)
            return 2 * total, 2 * grad

    class TwiceBothWays(Twice):  # overrides the logits formula too: may fuse
        def _logits_sum_and_grad(self, backend, logits, y_true, scale, sample_weight=None):
            total, grad = super()._logits_sum_and_grad(backend, logits, y_true, scale,
                                                       sample_weight)
            return 2 * total, 2 * grad

    binary = base is losses.BinaryCrossentropy
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 2 if binary else 3, size=16)
    if base is losses.CategoricalCrossentropy:
        y = np.eye(3)[y]
    head = pynn.Dense(1, activation="sigmoid") if binary else pynn.Dense(3, activation="softmax")
    model = pynn.Sequential([pynn.Input((4,)), head])
    plain = {}
    for loss in (base(), Twice(), TwiceBothWays()):
        model.compile(optimizer="sgd", loss=loss, backend=backend)
        plain[type(loss).__name__] = model.evaluate(x, y)
        assert model._fused == (type(loss) is not Twice)
    assert plain["Twice"] == pytest.approx(2 * plain[base.__name__], rel=1e-5)
    assert plain["TwiceBothWays"] == pytest.approx(2 * plain[base.__name__], rel=1e-5)


def test_a_spec_without_parameter_takes_the_activations_default():
    """Spec("leaky_relu") had slope 0 (relu) and Spec("elu") alpha 0, unlike the names."""
    from pynn.activations import Spec

    assert Spec("leaky_relu") == pynn.activations.get("leaky_relu") == Spec("leaky_relu", 0.2)
    assert Spec("elu").param == 1.0 and Spec("relu").param == 0.0
    np.testing.assert_allclose(Spec("leaky_relu")(np.array([-1.0, 2.0])), [-0.2, 2.0])


@pytest.mark.parametrize("make", [
    lambda: pynn.layers.ReLU(negative_slope=0.1),
    lambda: pynn.layers.ReLU(max_value=6.0),  # relu6: its cap is a second kink
    lambda: pynn.layers.LeakyReLU(),  # the layer's own default slope, 0.3
    lambda: pynn.layers.LeakyReLU(negative_slope=0.05),
    lambda: pynn.layers.ELU(alpha=0.5),
    lambda: pynn.layers.Softmax(),
    lambda: pynn.Activation(pynn.activations.Spec("leaky_relu", 0.07)),
    lambda: pynn.Activation(pynn.activations.Spec("elu", 2.0)),
], ids=["relu-slope", "relu6", "leaky-default", "leaky-0.05", "elu-0.5", "softmax",
        "leaky-spec", "elu-spec"])
def test_activation_layers_with_their_parameters(float64_numpy, rng, make):
    """The activation layers at parameters other than the activation's default (the loop
    above builds each activation at its default only)."""
    layer = make()
    layer.build((6,), float64_numpy, "float64")
    x = rng.normal(size=(4, 6)) * 2
    x = _away_from_kinks(x) * 2.5  # (and from relu6's cap at 6: |x| < 6 is not ensured)
    x = np.where(np.abs(x - 6.0) < 0.05, x + 0.1, x)
    r = rng.normal(size=(4, 6))

    def f():
        return float((layer.forward(x) * r).sum())

    layer.forward(x, training=True)
    assert_close_grad(layer.backward(r), numeric_grad(f, x), what=type(layer).__name__)


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.75])
def test_dropout_gradients(float64_numpy, rng, rate):
    layer = pynn.layers.Dropout(rate, seed=11)
    layer.build((6,), float64_numpy, "float64")
    x = rng.normal(size=(5, 6))
    r = rng.normal(size=(5, 6))

    def f():  # the same mask each time: the step is put back
        layer.step = 0
        return float((layer.forward(x, training=True) * r).sum())

    f()
    assert_close_grad(layer.backward(r), numeric_grad(f, x), what=f"Dropout({rate})")


@pytest.mark.parametrize("loss", [losses.Huber(delta=0.3), losses.Huber(delta=2.5),
                                  losses._HalfPoissonLogLink()],
                         ids=["huber-0.3", "huber-2.5", "half-poisson"])
@pytest.mark.parametrize("weighted", [False, True])
def test_more_loss_gradients(float64_numpy, rng, loss, weighted):
    """Huber away from delta 1 (both sides of its kink), and MLPRegressor's Poisson loss on
    the log link, with and without sample weights."""
    y_pred = rng.normal(size=(6, 3)) * 2
    y_true = rng.poisson(2.0, size=(6, 3)).astype(np.float64) if "poisson" in loss.name \
        else rng.normal(size=(6, 3))
    if "huber" in loss.name:  # off the kinks at |error| = delta
        d = y_pred - y_true
        y_pred = np.where(np.abs(np.abs(d) - loss.delta) < 0.05, y_pred + 0.1, y_pred)
    w = rng.uniform(0.2, 2.0, size=6) if weighted else None
    y = loss.prepare_targets(y_true, y_pred.shape[1:], np.float64)
    value, grad = loss.value_and_grad(float64_numpy, y_pred, y, w)

    def f():
        return loss.value_and_grad(float64_numpy, y_pred, y, w)[0]

    assert_close_grad(grad, numeric_grad(f, y_pred), what=loss.name)
