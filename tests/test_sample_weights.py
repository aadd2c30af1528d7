"""sample_weight and class_weight: Keras' weighted reduction, equivalences that pin it down,
and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import losses


@pytest.mark.parametrize("loss", [losses.MeanSquaredError(), losses.MeanAbsoluteError(),
                                  losses.Huber(), losses.BinaryCrossentropy(),
                                  losses.BinaryCrossentropy(from_logits=True),
                                  losses.CategoricalCrossentropy(),
                                  losses.SparseCategoricalCrossentropy(from_logits=True)])
def test_weighted_loss_is_weighted_mean_of_per_sample_losses(rng, loss):
    n, d = 6, 3
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        pred, y = rng.normal(size=(n, d)), rng.integers(0, d, size=n)
    elif isinstance(loss, losses.CategoricalCrossentropy):
        pred, y = rng.dirichlet(np.ones(d), size=n), np.eye(d)[rng.integers(0, d, size=n)]
    elif isinstance(loss, losses.BinaryCrossentropy) and not loss.from_logits:
        pred, y = rng.uniform(0.1, 0.9, size=(n, d)), rng.integers(0, 2, size=(n, d)) * 1.0
    else:
        pred, y = rng.normal(size=(n, d)), rng.integers(0, 2, size=(n, d)) * 1.0
    w = rng.uniform(0, 2, size=n)
    b = pynn.get_backend("numpy")
    yt = loss.prepare_targets(y, pred.shape[1:], np.float64)
    value, grad = loss.value_and_grad(b, pred, yt, w)
    per_sample = np.array([loss(y[i:i + 1], pred[i:i + 1]) for i in range(n)])
    assert np.isclose(value, (w * per_sample).sum() / n)
    _, plain = loss.value_and_grad(b, pred, yt)
    np.testing.assert_allclose(grad, plain * w[:, None], rtol=1e-12)


def _fit(**kw):
    pynn.set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    h = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False, **kw)
    return h.history["loss"], model.get_weights(), y


def test_unit_weights_change_nothing_and_class_weight_equals_sample_weight():
    plain, w_plain, y = _fit()
    ones, w_ones, _ = _fit(sample_weight=np.ones(40))
    np.testing.assert_allclose(ones, plain, rtol=1e-5)
    for a, b in zip(w_ones, w_plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    by_class, w_class, _ = _fit(class_weight={0: 0.5, 1: 3.0})
    by_sample, w_sample, _ = _fit(sample_weight=np.where(y == 1, 3.0, 0.5))
    np.testing.assert_allclose(by_class, by_sample, rtol=1e-6)
    for a, b in zip(w_class, w_sample):
        np.testing.assert_array_equal(a, b)
    zero, w_zero, _ = _fit(sample_weight=np.zeros(40))
    assert zero == [0.0, 0.0]


def test_bad_weights():
    with pytest.raises(ValueError, match=r"shape \(40,\)"):
        _fit(sample_weight=np.ones(39))
    with pytest.raises(ValueError, match="non-negative"):
        _fit(sample_weight=-np.ones(40))
    with pytest.raises(TypeError, match="dict"):
        _fit(class_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="class labels"):
        _fit(class_weight={"a": 1.0})



WEIGHTED_LOSSES = [("mse", None, 2), ("huber", "linear", 2), ("mae", None, 1),
                   ("binary_crossentropy", "sigmoid", 1), ("categorical_crossentropy", "softmax", 3),
                   ("sparse_categorical_crossentropy", "softmax", 3)]


WEIGHTED_CASES = [(*case, how) for case in WEIGHTED_LOSSES
                  for how in ("sample_weight", "class_weight")
                  if how == "sample_weight" or case[0].endswith("crossentropy")]


@pytest.mark.parametrize("loss,act,out,how", WEIGHTED_CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in WEIGHTED_CASES])
def test_weighted_training_matches_between_engines(loss, act, out, how):
    pytest.importorskip("pynn._C")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    labels = rng.integers(0, out if out > 1 else 2, size=90)
    if loss == "sparse_categorical_crossentropy":
        y = labels
    elif loss == "categorical_crossentropy":
        y = np.eye(out)[labels]
    elif loss == "binary_crossentropy":
        y = labels[:, None] * 1.0
    else:
        y = rng.normal(size=(90, out))
    kw = ({"sample_weight": rng.uniform(0, 3, size=90)} if how == "sample_weight"
          else {"class_weight": {0: 0.3, 1: 2.0, 2: 1.1}})
    runs = {}
    for engine in ("native", "layers"):
        pynn.set_seed(8)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(6, activation="tanh"),
                                 pynn.Dense(out, activation=act)])
        model.compile(optimizer="adam", loss=loss, backend="cpu")
        # 45 steps: the native engine runs two batches per call
        h = model.fit(x, y, epochs=3, batch_size=2, verbose=0, engine=engine, **kw)
        runs[engine] = h.history["loss"], model.get_weights()
    np.testing.assert_allclose(runs["native"][0], runs["layers"][0], rtol=1e-5)
    for a, b in zip(runs["native"][1], runs["layers"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_class_weight_needs_class_labels():
    """Fractional regression targets are not classes: class_weight refuses them; any
    integer labels (hinge's -1 and +1 too) are looked up, as Keras does."""
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((6, 2), np.float32)
    with pytest.raises(ValueError, match="class labels"):
        model.fit(x, np.array([0.5, 1.0] * 3), class_weight={2: 100.0}, epochs=1, verbose=0)
    model.fit(x, np.array([-1.0, 2.0] * 3), class_weight={2: 3.0}, epochs=1, verbose=0)
    model.fit(x, np.array([0.0, 2.0] * 3), class_weight={2: 3.0}, epochs=1, verbose=0)


def test_weights_in_evaluate_validation_and_single_batches():
    """Keras' signatures: evaluate(sample_weight=), validation_data=(x, y, w), validation_split
    splitting the weights too, test_on_batch / train_on_batch(sample_weight=), and
    predict_on_batch; each weighted loss is the weighted mean of the per-sample losses."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)).astype(np.float32), rng.normal(size=(40, 1))
    w = rng.uniform(0, 3, 40)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    per_sample = ((model.predict(x).astype(np.float64) - y) ** 2).ravel()
    np.testing.assert_allclose(model.evaluate(x, y, sample_weight=w, batch_size=7),
                               (per_sample * w).mean(), rtol=1e-5)
    np.testing.assert_allclose(model.test_on_batch(x, y, sample_weight=w),
                               (per_sample * w).mean(), rtol=1e-5)
    np.testing.assert_array_equal(model.predict_on_batch(x[:5]), model.predict(x[:5]))
    history = model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y, w)).history
    np.testing.assert_allclose(history["val_loss"][-1], model.evaluate(x, y, sample_weight=w),
                               rtol=1e-6)
    history = model.fit(x, y, sample_weight=w, epochs=1, verbose=0,
                        validation_split=0.25).history
    np.testing.assert_allclose(history["val_loss"][-1],
                               model.evaluate(x[30:], y[30:], sample_weight=w[30:]), rtol=1e-6)
    before = model.evaluate(x, y, sample_weight=w)
    np.testing.assert_allclose(model.train_on_batch(x, y, sample_weight=w), before, rtol=1e-5)
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y, w, w))


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_class_weight_weights_training_not_the_split_off_validation(engine):
    # Keras applies class_weight to the training data only; the split-off validation rows
    # keep just their sample_weight (val_loss was class-weighted, unlike evaluate's).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    w = rng.uniform(0.5, 2, 100)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    for sample_weight, val_weight in ((None, None), (w, w[-20:])):
        history = model.fit(x, y, class_weight={0: 1, 1: 3}, sample_weight=sample_weight,
                            validation_split=0.2, epochs=1, verbose=0, engine=engine).history
        np.testing.assert_allclose(
            history["val_loss"][-1],
            model.evaluate(x[-20:], y[-20:], sample_weight=val_weight, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_class_and_sample_weights_together_weigh_by_their_product(engine):
    # tf.keras 2's rule (Keras 3 refuses the pair), as the README says
    rng = np.random.default_rng()
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    w = rng.uniform(0.5, 2, 60)
    class_weight = {0: 1.0, 1: 3.0, 2: 0.5}
    runs = []
    for kwargs in ({"sample_weight": w, "class_weight": class_weight},
                   {"sample_weight": w * np.array([class_weight[c] for c in y])}):
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                            engine=engine, **kwargs).history
        runs.append((history["loss"], model.get_weights()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-6)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_sample_weight_must_be_numbers():
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    for bad in (["1", "2"], np.array([1 + 1j, 1])):
        with pytest.raises(TypeError, match="sample_weight must be numbers"):
            model.fit(np.zeros((2, 2)), np.zeros(2), sample_weight=bad, epochs=1, verbose=0)


def test_class_weight_on_multi_label_targets_warns(rng):
    """Multi-hot rows are weighted by their argmax's class alone (Keras' rule), silently
    before; per-label weighting is what a multi-label user likely means."""
    import warnings

    x = rng.normal(size=(20, 4)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    multi = np.zeros((20, 3), np.float32)
    multi[:, 1:] = 1
    with pytest.warns(UserWarning, match="multi-label targets.*argmax") as caught:
        model.fit(x, multi, class_weight={0: 1.0, 1: 2.0}, verbose=0)
    assert caught[0].filename == __file__  # points at the fit call
    onehot = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 20)]
    smoothed = onehot * 0.9 + 0.1 / 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, onehot, class_weight={0: 1.0, 1: 2.0}, verbose=0)
        model.fit(x, smoothed, class_weight={0: 1.0, 1: 2.0}, verbose=0)


def test_classes_left_out_of_class_weight_weigh_1(rng):
    x = rng.normal(size=(4, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 1])
    losses_ = []
    for weights in ({"class_weight": {0: 2.0}}, {"sample_weight": np.array([2.0, 1, 1, 1])}):
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(3, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy")
        losses_.append(model.train_on_batch(x, y, **weights))
    assert losses_[0] == pytest.approx(losses_[1], rel=1e-6)
