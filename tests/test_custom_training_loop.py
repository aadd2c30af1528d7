"""A training loop of your own: model.compute_gradients (one batch's loss and gradients,
nothing changed) and optimizer.apply_gradients / apply(grads, variables) (Keras' step on
given gradients). Gradients against finite differences, loops against train_on_batch's steps
(dropout, batch normalisation, clipping, weight decay, the moving average), and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import assert_close_grad, numeric_grad

import pynn


def _model(optimizer, dropout=True, seed=3):
    pynn.utils.set_random_seed(seed)
    layers = [pynn.Input((5,)), pynn.Dense(7, activation="tanh", kernel_regularizer="l2")]
    if dropout:
        layers += [pynn.layers.Dropout(0.3), pynn.layers.BatchNormalization()]
    model = pynn.Sequential(layers + [pynn.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


def test_gradients_are_the_losss_derivatives(float64_numpy, rng):
    model = _model("sgd", dropout=False)
    x, y = rng.normal(size=(9, 5)), rng.integers(0, 3, 9)
    w = rng.uniform(0.5, 2, 9)
    loss, grads = model.compute_gradients(x, y, sample_weight=w)
    assert loss == pytest.approx(model.evaluate(x, y, sample_weight=w), rel=1e-12)
    weights = model.trainable_weights
    assert [g.shape for g in grads] == [p.value.shape for p in weights]
    for p, g in zip(weights, grads):
        numeric = numeric_grad(lambda: model.compute_gradients(x, y, sample_weight=w)[0],
                               p.value)
        assert_close_grad(g, numeric, rtol=1e-6, atol=1e-9, what=p.name)


def test_computing_gradients_changes_nothing(rng):
    model = _model("adam")
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    model.train_on_batch(x, y)
    before, steps = [a.copy() for a in model.get_weights()], model.optimizer.iterations
    trainable = [p.value.copy() for p in model.trainable_weights]
    first = model.compute_gradients(x, y)
    again = model.compute_gradients(x, y)  # (fresh dropout masks: another loss)
    assert model.optimizer.iterations == steps and first[0] != again[0]
    for p, value in zip(model.trainable_weights, trainable):
        np.testing.assert_array_equal(p.value, value)
    for p, g in zip(model.trainable_weights, again[1]):  # the caller's copies
        assert p.grad is None or not np.shares_memory(p.grad, g)
    moving = [a for a, b in zip(model.get_weights(), before) if not np.array_equal(a, b)]
    assert moving  # BatchNormalization's moving statistics moved, as Keras' training=True


@pytest.mark.parametrize("optimizer", [
    lambda: pynn.optimizers.Adam(0.01, clipnorm=0.5),
    lambda: pynn.optimizers.SGD(0.05, momentum=0.9, weight_decay=0.01),
    lambda: pynn.optimizers.RMSprop(0.01, use_ema=True, ema_overwrite_frequency=3),
    lambda: pynn.optimizers.Adam(0.01, gradient_accumulation_steps=2)])
def test_a_loop_of_your_own_steps_as_train_on_batch(rng, optimizer):
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    ours, theirs = _model(optimizer()), _model(optimizer())
    for start in range(0, 40, 8):
        xb, yb = x[start:start + 8], y[start:start + 8]
        loss, grads = ours.compute_gradients(xb, yb)
        steps = ours.optimizer.apply_gradients(zip(grads, ours.trainable_weights))
        reference = theirs.train_on_batch(xb, yb)
        assert steps == ours.optimizer.iterations == theirs.optimizer.iterations
        assert loss == pytest.approx(reference, rel=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_kerass_apply_form_and_skipped_gradients(rng):
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    model = _model("sgd", dropout=False)
    _, grads = model.compute_gradients(x, y)
    weights = model.trainable_weights
    kept = weights[0].value.copy()
    grads[0] = None  # (Keras skips a missing gradient, and warns)
    with pytest.warns(RuntimeWarning, match="no gradients for"):
        model.optimizer.apply(grads, weights)
    np.testing.assert_array_equal(weights[0].value, kept)
    assert not np.array_equal(weights[1].value, grads[1])  # (the others stepped)
    assert model.optimizer.iterations == 1
    mine = [g.copy() for g in model.compute_gradients(x, y)[1]]
    before = [p.value.copy() for p in weights]
    model.optimizer.apply_gradients(zip(mine, weights))
    for g in mine:
        g[...] = 1e9  # the optimizer copied them: nothing of the step changes
    model.optimizer.apply_gradients((g * 0, p) for g, p in zip(mine, weights))
    for p, old, g in zip(weights, before, model.compute_gradients(x, y)[1]):
        assert np.isfinite(p.value).all() and np.abs(p.value - old).max() < 1


def test_bad_pairs_are_refused_before_any_step(rng):
    model = _model("adam", dropout=False)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    _, grads = model.compute_gradients(x, y)
    weights = model.trainable_weights
    opt = model.optimizer
    before = [p.value.copy() for p in weights]
    cases = [
        (TypeError, "not a \\(gradient, weight\\) pair", [grads[0]]),
        (TypeError, "not a model's weight", [(grads[0], weights[0].value)]),
        (ValueError, "has shape \\(7,\\), the weight \\(5, 7\\)", [(grads[1], weights[0])]),
        (ValueError, "given twice", [(grads[0], weights[0]), (grads[0], weights[0])]),
        (TypeError, "array of real numbers", [(["1", "2", "3"], weights[3])]),
        (TypeError, "array of real numbers", [(np.ones(3) * 1j, weights[3])]),
        (ValueError, "is not one of the model's",
         [(grads[0], _model("sgd", dropout=False).trainable_weights[0])]),
    ]
    for error, message, pairs in cases:
        with pytest.raises(error, match=message):
            opt.apply_gradients([(grads[1], weights[1])] + pairs)
    weights[0].trainable = False
    with pytest.raises(ValueError, match="is frozen"):
        opt.apply_gradients(zip(grads, weights[:1] + model.trainable_weights))
    assert opt.iterations == 0
    for p, old in zip(model.params, before):
        np.testing.assert_array_equal(p.value, old)


def test_compute_gradients_checks_its_data(rng):
    model = _model("adam", dropout=False)
    with pytest.raises(ValueError, match="label 3 is out of range"):
        model.compute_gradients(rng.normal(size=(4, 5)), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError):
        model.compute_gradients(rng.normal(size=(4, 6)), np.array([0, 1, 2, 0]))
    uncompiled = pynn.Sequential([pynn.Input((5,)), pynn.Dense(2)])
    with pytest.raises(RuntimeError, match="compile"):
        uncompiled.compute_gradients(rng.normal(size=(4, 5)), rng.normal(size=(4, 2)))


def test_random_layers_draw_afresh_for_each_batch_before_a_step(rng):
    model = _model("sgd")
    x, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)
    first, second = (model.compute_gradients(x, y)[0] for _ in range(2))
    assert first != second  # (micro-batches before one update: not one mask for all)
    other = pynn.optimizers.SGD(0.01)  # (another optimizer than the model's steps)
    losses = []
    for _ in range(3):
        loss, grads = model.compute_gradients(x, y)
        other.apply_gradients(zip(grads, model.trainable_weights))
        losses.append(loss)
    assert len(set(losses)) == 3 and model.optimizer.iterations == 0


def test_kerass_apply_of_gradients_alone_and_the_refusals(rng):
    model = _model("adam", dropout=False)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    _, grads = model.compute_gradients(x, y)
    assert model.optimizer.apply(grads) == 1  # (the weights of the model it trains)
    with pytest.raises(ValueError, match="4 gradients for 3 weights"):
        model.optimizer.apply(grads, model.trainable_weights[:3])
    with pytest.raises(ValueError, match="no gradients provided"):
        model.optimizer.apply_gradients([])
    with pytest.raises(ValueError, match="no gradients provided"):
        model.optimizer.apply_gradients((None, p) for p in model.trainable_weights)
    with pytest.raises(TypeError, match="trains no model yet"):
        pynn.optimizers.Adam().apply(grads)
    assert model.optimizer.iterations == 1
    bn = _model("adam")
    statistic = next(p for p in bn.params if p.statistic)
    with pytest.raises(ValueError, match="is a statistic"):
        bn.optimizer.apply_gradients([(np.zeros(statistic.value.shape), statistic)])


def test_a_subclass_with_an_apply_of_its_own_steps_through_it(rng):
    class Counting(pynn.optimizers.SGD):
        calls = 0

        def apply(self, params, trainable_variables=None):
            Counting.calls += 1
            return super().apply(params, trainable_variables)

    model = _model(Counting(0.1), dropout=False)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    _, grads = model.compute_gradients(x, y)
    model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
    assert Counting.calls == 1 and model.optimizer.iterations == 1


def test_apply_gradients_waits_for_no_other_threads_training(rng):
    import threading

    model = _model("sgd", dropout=False)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    _, grads = model.compute_gradients(x, y)
    held, release = threading.Event(), threading.Event()

    def train():  # (another thread's fit holds the model's training lock)
        lock = model._training_lock("fit")
        held.set()
        release.wait()
        lock.release()

    worker = threading.Thread(target=train)
    worker.start()
    held.wait()
    try:
        with pytest.raises(RuntimeError, match="another thread is training this model"):
            model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
    finally:
        release.set()
        worker.join()
    assert model.optimizer.apply_gradients(zip(grads, model.trainable_weights)) == 1
