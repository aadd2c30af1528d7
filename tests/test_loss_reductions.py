"""Keras' loss reductions (`reduction=`): 'sum_over_batch_size' (the default) and 'mean',
'sum', 'mean_with_sample_weight' and 'none'. Standalone calls against float64 references of
the per-sample losses and against each loss's own one-sample calls, finite-difference
gradients of each reduction, training (the native engine against the layer path and the
fake GPU's refusal), compile's refusal of 'none', configs and files, a loss of each reduction
as a metric, and Keras itself where it is installed."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import import_keras, requires_native
from gradcheck import assert_close_grad, numeric_grad

import pynn
from pynn import losses

REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "mean_with_sample_weight", "none", None)
EPS = 1e-7


# ---- float64 references of the per-sample losses (Keras' formulas) ------------------------------
def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _bce(t, p):
    pc = np.clip(p, EPS, 1 - EPS)
    return -(t * np.log(pc) + (1 - t) * np.log(1 - pc))


REFERENCES = {  # name: (make the loss, targets kind, predictions kind, per-sample reference)
    "mse": (lambda **k: losses.MeanSquaredError(**k), "real", "real",
            lambda t, p: ((p - t) ** 2).mean(-1)),
    "mae": (lambda **k: losses.MeanAbsoluteError(**k), "real", "real",
            lambda t, p: np.abs(p - t).mean(-1)),
    "huber": (lambda **k: losses.Huber(delta=0.4, **k), "real", "real",
              lambda t, p: np.where(np.abs(p - t) <= 0.4, 0.5 * (p - t) ** 2,
                                    0.4 * (np.abs(p - t) - 0.2)).mean(-1)),
    "bce": (lambda **k: losses.BinaryCrossentropy(**k), "binary", "probability",
            lambda t, p: _bce(t, p).mean(-1)),
    "bce_logits": (lambda **k: losses.BinaryCrossentropy(from_logits=True, **k), "binary",
                   "real", lambda t, p: (np.logaddexp(0, p) - p * t).mean(-1)),
    "cce": (lambda **k: losses.CategoricalCrossentropy(**k), "onehot", "distribution",
            lambda t, p: -(t * np.log(np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)))
            .sum(-1)),
    "cce_logits": (lambda **k: losses.CategoricalCrossentropy(from_logits=True, **k),
                   "onehot", "real", lambda t, p: -(t * np.log(_softmax(p))).sum(-1)),
    "scce_logits": (lambda **k: losses.SparseCategoricalCrossentropy(from_logits=True, **k),
                    "labels", "real",
                    lambda t, p: -np.log(np.take_along_axis(_softmax(p), t[..., None],
                                                            -1)[..., 0])),
    "log_cosh": (lambda **k: losses.LogCosh(**k), "real", "real",
                 lambda t, p: np.log(np.cosh(p - t)).mean(-1)),
    "kl": (lambda **k: losses.KLDivergence(**k), "distribution", "distribution",
           lambda t, p: (np.clip(t, EPS, 1) * np.log(np.clip(t, EPS, 1) /
                                                     np.clip(p, EPS, 1))).sum(-1)),
}


def _data(rng, kind, shape, classes):
    if kind == "real":
        return rng.normal(size=shape)
    if kind == "binary":
        return (rng.random(shape) > 0.5).astype(np.float64)
    if kind == "probability":
        return rng.uniform(0.02, 0.98, size=shape)
    if kind == "distribution":
        return _softmax(rng.normal(size=shape))
    labels = rng.integers(0, classes, size=shape[:-1])
    return labels if kind == "labels" else np.eye(classes)[labels]


def _case(rng, name, shape):
    make, target_kind, prediction_kind, reference = REFERENCES[name]
    t = _data(rng, target_kind, shape, shape[-1])
    p = _data(rng, prediction_kind, shape, shape[-1])
    return make, t, p, reference(t, p)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("shape", [(1, 3), (17, 5), (6, 4, 3)])
def test_each_reduction_of_the_per_sample_losses(rng, name, shape):
    make, t, p, per_sample = _case(rng, name, shape)
    for weights in (None, rng.uniform(0, 2, size=shape[:1]), rng.uniform(0, 2, size=shape[:-1])):
        if weights is not None and weights.shape == shape[:1]:
            w = weights.reshape(weights.shape + (1,) * (per_sample.ndim - 1))
        else:
            w = 1.0 if weights is None else weights
        weighted = per_sample * w
        expected = {"sum_over_batch_size": weighted.mean(), "mean": weighted.mean(),
                    "sum": weighted.sum(),
                    "mean_with_sample_weight": weighted.sum() / np.broadcast_to(
                        w, per_sample.shape).sum()}
        for reduction in REDUCTIONS:
            got = make(reduction=reduction)(t, p, sample_weight=weights)
            if reduction in (None, "none"):
                assert isinstance(got, np.ndarray) and got.shape == shape[:-1]
                np.testing.assert_allclose(got, weighted, rtol=1e-5, atol=1e-6)
            else:
                assert isinstance(got, float)
                np.testing.assert_allclose(got, expected[reduction], rtol=1e-5, atol=1e-6)


# Every pynn loss: 'none' gives what a one-sample call of the default reduction gives (the
# vectorised per-sample path against the summing one), for each of its samples.
ALL_LOSSES = {
    "mse": ("real", "real"), "mae": ("real", "real"), "huber": ("real", "real"),
    "bce": ("binary", "probability"), "categorical_crossentropy": ("onehot", "distribution"),
    "sparse_categorical_crossentropy": ("labels", "distribution"),
    "mape": ("real", "real"), "msle": ("probability", "probability"),
    "log_cosh": ("real", "real"), "hinge": ("binary", "real"),
    "squared_hinge": ("binary", "real"), "categorical_hinge": ("onehot", "real"),
    "kl_divergence": ("distribution", "distribution"), "poisson": ("probability", "probability"),
    "cosine_similarity": ("real", "real"),
    "binary_focal_crossentropy": ("binary", "probability"),
    "categorical_focal_crossentropy": ("onehot", "distribution"),
}


@pytest.mark.parametrize("name, logits", [
    *((name, False) for name in sorted(ALL_LOSSES)),
    *((name, True) for name in sorted(ALL_LOSSES) if hasattr(losses.get(name), "from_logits"))])
def test_none_gives_each_samples_own_loss(rng, name, logits):
    loss = losses.get(name)
    config = {**loss.get_config(), **({"from_logits": True} if logits else {})}
    per_sample, whole = (type(loss)(**config, reduction=r) for r in ("none",
                                                                      "sum_over_batch_size"))
    target_kind, prediction_kind = ALL_LOSSES[name]
    n, classes = 9, 4
    t = _data(rng, target_kind, (n, classes), classes).astype(np.float32)
    p = _data(rng, "real" if logits else prediction_kind, (n, classes), classes).astype(
        np.float32)
    got = per_sample(t, p)
    assert got.shape == (n,) and got.dtype == np.float32
    np.testing.assert_allclose(got, [whole(t[i:i + 1], p[i:i + 1]) for i in range(n)],
                               rtol=2e-5, atol=1e-6)


def test_a_loss_of_your_own_gives_its_samples_one_call_each(rng):
    class Cubed(losses.Loss):
        name = "cubed"

        def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
            d = y_pred - y_true
            w = 1.0 if sample_weight is None else sample_weight[:, None]
            return float((w * d ** 3).sum()), (3 * w * d * d * scale).astype(y_pred.dtype)

    t, p = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(Cubed(reduction="none")(t, p), ((p - t) ** 3).mean(-1),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Cubed(reduction="sum")(t, p), ((p - t) ** 3).mean(-1).sum(),
                               rtol=1e-5)

    class MeanSquaredOther(losses.MeanSquaredError):  # its own sums, not the parent's
        def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
            return Cubed._sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight)

    np.testing.assert_allclose(MeanSquaredOther(reduction="none")(t, p),
                               ((p - t) ** 3).mean(-1), rtol=1e-5, atol=1e-6)


def test_ignore_class_counts_for_nothing_in_every_reduction(rng):
    n, steps, classes = 6, 5, 4
    logits = rng.normal(size=(n, steps, classes))
    labels = rng.integers(-1, classes, size=(n, steps))
    labels[0, 0] = 2  # (at least one valid label)
    weights = rng.uniform(0.5, 2, size=(n, steps))
    valid = labels != -1
    per_sample = -np.log(np.take_along_axis(_softmax(logits), np.where(valid, labels, 0)[..., None],
                                            -1)[..., 0]) * valid * weights
    make = lambda r: losses.SparseCategoricalCrossentropy(  # noqa: E731
        from_logits=True, ignore_class=-1, reduction=r)
    np.testing.assert_allclose(make("none")(labels, logits, sample_weight=weights), per_sample,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(make("sum")(labels, logits, weights), per_sample.sum(), rtol=1e-5)
    np.testing.assert_allclose(make("sum_over_batch_size")(labels, logits, weights),
                               per_sample.sum() / valid.sum(), rtol=1e-5)
    np.testing.assert_allclose(make("mean_with_sample_weight")(labels, logits, weights),
                               per_sample.sum() / (weights * valid).sum(), rtol=1e-5)


def test_zero_weights_give_zero_with_mean_with_sample_weight(rng):
    t, p = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    loss = losses.MeanSquaredError(reduction="mean_with_sample_weight")
    assert loss(t, p, sample_weight=np.zeros(4)) == 0.0  # (Keras' divide_no_nan)
    backend = pynn.get_backend("numpy")
    value, grad = loss.value_and_grad(backend, p, t, np.zeros(4))
    assert value == 0.0 and not grad.any()


@pytest.mark.parametrize("name", ["mse", "bce_logits", "cce_logits", "scce_logits", "kl"])
@pytest.mark.parametrize("reduction", ["sum", "mean_with_sample_weight", "mean"])
def test_gradient_of_each_reduction(rng, float64_numpy, name, reduction):
    make, t, p, _ = _case(rng, name, (5, 3))
    loss = make(reduction=reduction)
    w = rng.uniform(0.2, 2, size=5)
    value, grad = loss.value_and_grad(float64_numpy, p, t, w)
    numeric = numeric_grad(lambda: loss.value_and_grad(float64_numpy, p, t, w)[0], p)
    assert_close_grad(grad, numeric, rtol=1e-5, atol=1e-8)
    assert value == pytest.approx(loss(t, p, sample_weight=w), rel=1e-12)


# ---- settings, configs, files -----------------------------------------------------------------
def test_reductions_are_checked_when_given_and_when_set():
    for bad in ("average", "SUM", 0, "sum_over_batch"):
        with pytest.raises(ValueError, match="reduction must be one of"):
            losses.MeanSquaredError(reduction=bad)
    loss = losses.CategoricalCrossentropy(reduction="sum")
    assert loss.reduction == "sum"
    with pytest.raises(ValueError, match="reduction must be one of"):
        loss.reduction = "total"
    assert loss.reduction == "sum"
    loss.reduction = None
    assert loss.reduction is None and loss._per_sample()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_configs_keep_the_reduction(reduction):
    loss = losses.Huber(delta=2.0, reduction=reduction, name="robust")
    config = loss.get_config()
    assert ("reduction" in config) == (reduction != "sum_over_batch_size")
    again = losses.get(losses.serialize(loss))
    assert type(again) is losses.Huber and again.reduction == reduction
    assert again.delta == 2.0 and again.name == "robust"
    assert losses.Huber.from_config(config).reduction == reduction


@pytest.mark.parametrize("suffix", [".npz", ".keras", ".h5"])
def test_saved_model_keeps_its_losss_reduction(tmp_path, rng, suffix):
    if suffix != ".npz":
        pytest.importorskip("h5py")
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile(optimizer="sgd", loss=losses.MeanAbsoluteError(reduction="sum"))
    model.save(tmp_path / f"m{suffix}")
    loaded = pynn.load_model(tmp_path / f"m{suffix}")
    assert type(loaded.loss) is losses.MeanAbsoluteError and loaded.loss.reduction == "sum"
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)


# ---- training ------------------------------------------------------------------------------------
def test_compile_refuses_one_loss_per_sample():
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    for reduction in ("none", None):
        with pytest.raises(ValueError, match="a model's loss is one number"):
            model.compile(optimizer="sgd", loss=losses.MeanSquaredError(reduction=reduction))
    assert not model.compiled


def test_none_set_after_compile_is_refused_by_fit(rng):
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.loss.reduction = "none"
    before = [w.copy() for w in model.get_weights()]
    for engine in ("auto", "layers"):
        with pytest.raises(ValueError, match="a model's loss is one number"):
            model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), verbose=0, engine=engine)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def _trained(rng_seed, loss, engine, x, y, w, out):
    pynn.utils.set_random_seed(rng_seed)
    model = pynn.Sequential([pynn.Input((x.shape[1],)), pynn.Dense(16, activation="tanh"),
                             pynn.Dense(4, activation=out)])
    model.compile(optimizer=pynn.optimizers.SGD(0.002), loss=loss)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, sample_weight=w,
                        engine=engine, shuffle=False)
    return history.history["loss"], model.get_weights()


@requires_native
@pytest.mark.parametrize("loss, out", [("sparse_categorical_crossentropy", "softmax"),
                                       ("mse", "linear"), ("binary_crossentropy", "sigmoid"),
                                       ("huber", "linear")])
@pytest.mark.parametrize("reduction", ["sum", "mean_with_sample_weight", "mean"])
def test_engine_reduces_as_the_layer_path(rng, loss, out, reduction):
    n = 99
    x = rng.normal(size=(n, 7)).astype(np.float32)
    y = {"softmax": rng.integers(0, 4, n), "linear": rng.normal(size=(n, 4)),
         "sigmoid": (rng.random((n, 4)) > 0.5).astype(np.float32)}[out]
    seed = int(rng.integers(1 << 30))
    for w in (None, rng.uniform(0, 2, n), np.zeros(n)):
        runs = []
        for engine in ("native", "layers"):
            made = losses.get(loss)
            made.reduction = reduction
            runs.append(_trained(seed, made, engine, x, y, w, out))
        np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
        for a, b in zip(runs[0][1], runs[1][1]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        if w is not None and not w.any():  # nothing weighs: a loss of 0, nothing learnt
            assert runs[0][0] == [0.0, 0.0]


def test_sum_steps_batch_size_times_the_mean(rng):
    x = rng.normal(size=(32, 5))
    y = rng.normal(size=(32, 2))
    weights = {}
    for reduction, rate in (("sum", 0.01 / 32), ("sum_over_batch_size", 0.01)):
        pynn.utils.set_random_seed(7)
        model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(2)])
        model.compile(optimizer=pynn.optimizers.SGD(rate),
                      loss=losses.MeanSquaredError(reduction=reduction))
        model.fit(x, y, batch_size=32, epochs=3, verbose=0)
        weights[reduction] = model.get_weights()
    for a, b in zip(weights["sum"], weights["sum_over_batch_size"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_loss_of_each_reduction_as_a_metric_is_its_mean(rng):
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    w = rng.uniform(0.1, 2, 40)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse",
                  metrics=[losses.MeanAbsoluteError(reduction=r, name=f"mae_{r}")
                           for r in ("sum", "none", "mean_with_sample_weight")],
                  weighted_metrics=[losses.MeanAbsoluteError(reduction="sum", name="wmae")])
    logs = model.evaluate(x, y, batch_size=16, sample_weight=w, return_dict=True)
    mae = np.abs(model.predict(x) - y).mean(-1)
    for r in ("sum", "none", "mean_with_sample_weight"):
        assert logs[f"mae_{r}"] == pytest.approx(mae.mean(), rel=1e-5)
    assert logs["wmae"] == pytest.approx((w * mae).sum() / w.sum(), rel=1e-5)


def test_keras_reduces_as_pynn(rng):
    keras = import_keras()
    n, classes = 11, 4
    for name, kwargs in (("MeanSquaredError", {}), ("Huber", {"delta": 0.5}),
                         ("BinaryCrossentropy", {"from_logits": True}),
                         ("CategoricalCrossentropy", {}),
                         ("SparseCategoricalCrossentropy", {"from_logits": True}),
                         ("KLDivergence", {}), ("CosineSimilarity", {})):
        p = rng.normal(size=(n, classes)).astype(np.float32)
        if name in ("CategoricalCrossentropy", "KLDivergence"):
            p = _softmax(p).astype(np.float32)
        t = {"SparseCategoricalCrossentropy": rng.integers(0, classes, n),
             "BinaryCrossentropy": (rng.random((n, classes)) > 0.5).astype(np.float32),
             "CategoricalCrossentropy": np.eye(classes, dtype=np.float32)[
                 rng.integers(0, classes, n)],
             "KLDivergence": _softmax(rng.normal(size=(n, classes))).astype(np.float32)}.get(
                 name, rng.normal(size=(n, classes)).astype(np.float32))
        w = rng.uniform(0, 2, n).astype(np.float32)
        for reduction in REDUCTIONS:
            for sw in (None, w):
                ours = getattr(losses, name)(reduction=reduction, **kwargs)(t, p, sw)
                theirs = getattr(keras.losses, name)(reduction=reduction, **kwargs)(t, p, sw)
                np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(theirs),
                                           rtol=2e-5, atol=1e-6,
                                           err_msg=f"{name} {reduction} {sw is not None}")


class _SwitchReduction(pynn.callbacks.Callback):
    def __init__(self, reduction):
        super().__init__()
        self.reduction = reduction

    def on_epoch_end(self, epoch, logs=None):
        self.model.loss.reduction = self.reduction


@pytest.mark.parametrize("first, then", [("mean", "sum"), ("sum", "sum_over_batch_size"),
                                         ("sum", "mean_with_sample_weight")])
def test_a_reduction_changed_mid_fit_is_followed_by_both_paths(rng, first, then):
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    w = rng.uniform(0.1, 2, 50)
    runs = []
    for engine in ("auto", "layers"):
        pynn.utils.set_random_seed(5)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(6, activation="relu"),
                                 pynn.Dense(3, activation="softmax")])
        model.compile(optimizer=pynn.optimizers.SGD(0.01),
                      loss=losses.SparseCategoricalCrossentropy(reduction=first))
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, sample_weight=w,
                            shuffle=False, engine=engine, callbacks=[_SwitchReduction(then)])
        runs.append((history.history["loss"], model.get_weights()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_on_batch_follows_a_changed_reduction(rng):
    x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 2))
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2)])
    model.compile(optimizer=pynn.optimizers.SGD(0.0), loss="mse")  # (no step: same weights)
    mean = model.train_on_batch(x, y)
    model.loss.reduction = "sum"
    assert model.train_on_batch(x, y) == pytest.approx(16 * mean, rel=1e-5)
    assert model.test_on_batch(x, y) == pytest.approx(16 * mean, rel=1e-5)
    model.loss.reduction = "none"
    for engine in ("auto", "layers"):
        with pytest.raises(ValueError, match="a model's loss is one number"):
            model.fit(x, y, verbose=0, engine=engine)
    with pytest.raises(ValueError, match="a model's loss is one number"):
        model.train_on_batch(x, y)


@pytest.mark.parametrize("loss", [losses.MeanSquaredError(reduction="sum"),
                                  losses.MeanSquaredError(reduction="mean_with_sample_weight")])
def test_a_loss_that_depends_on_the_batches_is_evaluated_in_keras_batches(rng, loss):
    x, y = rng.normal(size=(100, 4)), rng.normal(size=(100, 2))
    w = rng.uniform(0.1, 2, 100)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2)])
    model.compile(optimizer=pynn.optimizers.SGD(0.0), loss=loss)
    assert model.evaluate(x, y, sample_weight=w) == pytest.approx(
        model.evaluate(x, y, sample_weight=w, batch_size=32), rel=1e-12)  # (Keras' default)
    history = model.fit(x, y, batch_size=20, epochs=1, verbose=0, sample_weight=w,
                        validation_data=(x, y, w), shuffle=False)
    assert history.history["val_loss"][0] == pytest.approx(
        model.evaluate(x, y, sample_weight=w, batch_size=20), rel=1e-6)  # (fit's batches)
    assert history.history["val_loss"][0] == pytest.approx(history.history["loss"][0],
                                                           rel=1e-5)
