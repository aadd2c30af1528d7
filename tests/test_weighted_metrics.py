"""Weighted metrics: `Metric.update_state(..., sample_weight=)` and the metric functions'
`sample_weight` for every pynn metric, checked against scikit-learn's weighted metrics and
against repeating samples (an integer weight k counts a sample k times); and Keras'
`compile(weighted_metrics=)`: fit's sample and class weights, evaluate's and the
validation data's, Keras 3's names, on both engines, saved and copied with the model."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest
from conftest import import_keras, requires_native

import pynn
from pynn import metrics as M

skm = pytest.importorskip("sklearn.metrics")

SIZES = (1, 3, 17, 129)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _binary(rng, n):
    y = (rng.random(n) < 0.5).astype(np.float32)
    y[:2] = [0.0, 1.0][:n] if n >= 2 else y[:1]
    return y, np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1).astype(np.float32)


def _classes(rng, n, c):
    labels = rng.integers(0, c, n)
    return labels, _softmax(rng.normal(size=(n, c)) + np.eye(c)[labels]).astype(np.float32)


def _sk(fn, *args, **kwargs):
    with warnings.catch_warnings():  # ill-defined values: scikit-learn warns; both count 0
        warnings.simplefilter("ignore")
        return fn(*args, zero_division=0, **kwargs)


# ---- the functions and metric objects against scikit-learn ------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_weighted_binary_metrics_match_sklearn(rng, n):
    y, p = _binary(rng, n)
    w = rng.random(n) * 3
    pred = (p > 0.5).astype(int)
    assert M.precision(y, p, sample_weight=w) == pytest.approx(
        _sk(skm.precision_score, y, pred, sample_weight=w), abs=1e-12)
    assert M.recall(y, p, sample_weight=w) == pytest.approx(
        _sk(skm.recall_score, y, pred, sample_weight=w), abs=1e-12)
    assert M.f1_score(y, p, sample_weight=w) == pytest.approx(
        _sk(skm.f1_score, y, pred, sample_weight=w), abs=1e-12)
    if 0 < y.sum() < n:
        assert M.roc_auc(y, p, sample_weight=w) == pytest.approx(
            skm.roc_auc_score(y, p, sample_weight=w), abs=1e-12)
    acc = M.BinaryAccuracy()
    acc.update_state(y, p, sample_weight=w)
    assert acc.result() == pytest.approx(skm.accuracy_score(y, pred, sample_weight=w))


@pytest.mark.parametrize("n", [3, 17, 129])
@pytest.mark.parametrize("c", [3, 5])
def test_weighted_multiclass_metrics_match_sklearn(rng, n, c):
    labels, p = _classes(rng, n, c)
    w = rng.random(n) * 2
    pred = p.argmax(axis=1)
    every = np.unique(np.concatenate([labels, pred]))
    assert M.precision(labels, p, sample_weight=w) == pytest.approx(
        _sk(skm.precision_score, labels, pred, average="macro", labels=every,
            sample_weight=w), abs=1e-12)
    assert M.recall(labels, p, sample_weight=w) == pytest.approx(
        _sk(skm.recall_score, labels, pred, average="macro", labels=every,
            sample_weight=w), abs=1e-12)
    for average in ("macro", "micro", "weighted"):
        assert M.f1_score(labels, p, average=average, sample_weight=w) == pytest.approx(
            _sk(skm.f1_score, labels, pred, average=average, labels=every, sample_weight=w),
            abs=1e-12)
    for cls, name in ((M.CategoricalAccuracy, "onehot"), (M.SparseCategoricalAccuracy, "")):
        acc = cls()
        acc.update_state(np.eye(c)[labels] if name else labels, p, sample_weight=w)
        assert acc.result() == pytest.approx(skm.accuracy_score(labels, pred, sample_weight=w))
    top2 = M.SparseTopKCategoricalAccuracy(k=2)
    top2.update_state(labels, p, sample_weight=w)
    assert top2.result() == pytest.approx(
        skm.top_k_accuracy_score(labels, p, k=2, labels=np.arange(c), sample_weight=w))
    present = [k for k in range(c) if 0 < np.sum(labels == k) < n]
    if len(present) == c:  # scikit-learn's one-vs-rest needs every class
        assert M.roc_auc(labels, p, sample_weight=w) == pytest.approx(
            skm.roc_auc_score(labels, p, multi_class="ovr", average="macro",
                              sample_weight=w), abs=1e-12)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("outputs", [1, 3])
def test_weighted_regression_metrics_match_sklearn(rng, n, outputs):
    y = rng.normal(size=(n, outputs))
    p = y + rng.normal(size=(n, outputs))
    w = rng.random(n)
    assert M.root_mean_squared_error(y, p, sample_weight=w) == pytest.approx(
        np.sqrt(skm.mean_squared_error(y, p, sample_weight=w)), rel=1e-12)
    for cls, reference in ((M.MeanSquaredError, skm.mean_squared_error),
                           (M.MeanAbsoluteError, skm.mean_absolute_error)):
        m = cls()
        m.update_state(y, p, sample_weight=w)
        assert m.result() == pytest.approx(reference(y, p, sample_weight=w), rel=1e-12)
    if n > 1:
        assert M.r2_score(y, p, sample_weight=w) == pytest.approx(
            skm.r2_score(y, p, sample_weight=w), rel=1e-9, abs=1e-12)


# ---- weights as repeated samples, batches, edge weights -----------------------------------
def _every_metric(outputs):
    """Fresh metric objects for outputs of that width (1: binary; 4: classes)."""
    common = [M.Precision(), M.Recall(), M.F1Score(), M.AUC(), M.AUC(curve="PR"),
              M.RootMeanSquaredError(), M.MeanSquaredError(), M.MeanAbsoluteError(),
              M.MeanAbsolutePercentageError(), M.MeanSquaredLogarithmicError(),
              M.TruePositives(), M.FalsePositives(), M.TrueNegatives(), M.FalseNegatives()]
    if outputs == 1:
        return common + [M.BinaryAccuracy(), M.BinaryAccuracy(threshold=0.3), M.R2Score(),
                         M.MeanMetricWrapper(lambda t, p: np.abs(t - p).max(axis=1))]
    return common + [M.CategoricalAccuracy(), M.TopKCategoricalAccuracy(k=2),
                     M.F1Score(average="weighted"), M.F1Score(threshold=0.3),
                     M.Precision(class_id=1), M.AUC(multi_label=True), M.R2Score(),
                     M.MeanMetricWrapper(pynn.losses.CategoricalCrossentropy())]


def _targets_and_scores(rng, n, outputs):
    """(N, 1) binary targets and scores, or one-hot targets and class probabilities; the
    scores in float64 (a loss sums float32 batches in float32)."""
    if outputs == 1:
        y, p = _binary(rng, n)
        return y.reshape(-1, 1), p.reshape(-1, 1).astype(np.float64)
    labels, p = _classes(rng, n, outputs)
    return np.eye(outputs, dtype=np.float32)[labels], p.astype(np.float64)


@pytest.mark.parametrize("outputs", [1, 4])
@pytest.mark.parametrize("n", [3, 17, 129])
def test_integer_weights_count_samples_that_many_times(rng, outputs, n):
    y, p = _targets_and_scores(rng, n, outputs)
    w = rng.integers(0, 4, n)
    w[0] = 2
    repeated = np.repeat(np.arange(n), w)
    for weighted, plain in zip(_every_metric(outputs), _every_metric(outputs)):
        weighted.update_state(y, p, sample_weight=w)
        plain.update_state(y[repeated], p[repeated])
        assert weighted.result() == pytest.approx(plain.result(), rel=1e-9, abs=1e-12,
                                                  nan_ok=True), weighted.name


@pytest.mark.parametrize("outputs", [1, 4])
def test_weighted_batches_add_up_to_the_whole(rng, outputs):
    n = 129
    y, p = _targets_and_scores(rng, n, outputs)
    w = rng.random(n)
    for whole, pieces in zip(_every_metric(outputs), _every_metric(outputs)):
        whole.update_state(y, p, sample_weight=w)
        for a, b in ((0, 17), (17, 18), (18, 100), (100, n)):
            pieces.update_state(y[a:b], p[a:b], sample_weight=w[a:b])
        assert pieces.result() == pytest.approx(whole.result(), rel=1e-9, abs=1e-12,
                                                nan_ok=True), whole.name


def test_unit_weights_change_nothing_and_weights_count(rng):
    y, p = _binary(rng, 64)
    y, p = y.reshape(-1, 1), p.reshape(-1, 1)
    for weighted, plain in zip(_every_metric(1), _every_metric(1)):
        weighted.update_state(y, p, sample_weight=np.ones(64))
        plain.update_state(y, p)
        assert weighted.result() == pytest.approx(plain.result(), rel=1e-12, nan_ok=True)
    # weights that matter: the wrong half weighs nothing
    right = (p > 0.5) == (y > 0.5)
    acc = M.BinaryAccuracy()
    acc.update_state(y, p, sample_weight=right.astype(float))
    assert acc.result() == 1.0
    assert M.precision(y, p, sample_weight=right) in (0.0, 1.0)


def test_sequences_weigh_each_position(rng):
    n, t, c = 5, 7, 3
    labels = rng.integers(0, c, (n, t))
    p = _softmax(rng.normal(size=(n * t, c))).reshape(n, t, c)
    mask = (rng.random((n, t)) < 0.6).astype(float)
    acc = M.SparseCategoricalAccuracy()
    acc.update_state(labels, p, sample_weight=mask)
    hits = p.argmax(axis=-1) == labels
    assert acc.result() == pytest.approx(hits[mask > 0].mean())
    per_sample = rng.random(n)
    acc.reset_state()
    acc.update_state(labels, p, sample_weight=per_sample)
    assert acc.result() == pytest.approx(np.sum(per_sample[:, None] * hits)
                                         / np.sum(per_sample) / t)


def test_zero_total_weight_is_nan_and_bad_weights_are_named(rng):
    y, p = _binary(rng, 8)
    m = M.MeanAbsoluteError()
    m.update_state(y, p, sample_weight=np.zeros(8))
    assert np.isnan(m.result())
    m.update_state(y, p, sample_weight=np.ones(8))  # the zero-weight batch adds nothing
    assert m.result() == pytest.approx(np.mean(np.abs(y - p)))
    for metric in (M.Precision(), M.AUC(), M.MeanSquaredError(), M.R2Score()):
        with pytest.raises(ValueError, match="sample_weight"):
            metric.update_state(y, p, sample_weight=np.ones(7))
        with pytest.raises(ValueError, match="finite and non-negative"):
            metric.update_state(y, p, sample_weight=-np.ones(8))
        with pytest.raises(ValueError, match="finite and non-negative"):
            metric.update_state(y, p, sample_weight=np.full(8, np.nan))
        with pytest.raises(TypeError, match="sample_weight"):
            metric.update_state(y, p, sample_weight=np.array(["a"] * 8))
    scalar = M.BinaryAccuracy()
    scalar.update_state(y, p, sample_weight=2.0)  # a number weighs every sample (Keras)
    assert scalar.result() == pytest.approx(M.binary_accuracy(y, p))


# ---- compile(weighted_metrics=) ------------------------------------------------------------
def _model(units=1, act="sigmoid", loss="binary_crossentropy", metrics=None, weighted=None,
           seed=3):
    pynn.set_seed(seed)
    model = pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(8, activation="relu"),
                             pynn.layers.Dense(units, activation=act)])
    model.compile("sgd", loss, metrics=metrics, weighted_metrics=weighted)
    return model


def _data(rng, n=60):
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.float32)
    return x, y, rng.random(n).astype(np.float32) * 2


def test_weighted_metrics_names_as_keras_3(rng):
    x, y, w = _data(rng)
    model = _model(metrics=["mae", "accuracy"], weighted=["mae", "accuracy", M.AUC()])
    history = model.fit(x, y, sample_weight=w, epochs=1, batch_size=16, verbose=0,
                        validation_data=(x, y, w))
    assert sorted(history.history) == sorted(
        ["loss", "mae", "accuracy", "weighted_mae", "weighted_accuracy", "auc", "val_loss",
         "val_mae", "val_accuracy", "val_weighted_mae", "val_weighted_accuracy", "val_auc"])
    assert model.metrics_names == ["loss", "mae", "accuracy", "weighted_mae",
                                   "weighted_accuracy", "auc"]
    alone = _model(weighted=["mae"])
    assert alone.metrics_names == ["loss", "mae"]
    assert _model(weighted=["mae", "mae"]).metrics_names == ["loss", "mae", "mae_1"]
    shared = M.AUC()
    with pytest.raises(ValueError, match="given twice"):
        _model(metrics=[shared], weighted=[shared])
    with pytest.raises(TypeError, match="weighted_metrics must be a list"):
        _model(weighted="mae")


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
def test_weighted_metrics_weigh_evaluate_and_validation(rng, engine):
    x, y, w = _data(rng)
    model = _model(metrics=["mae", "auc"], weighted=["mae", "auc", "precision"])
    history = model.fit(x, y, sample_weight=w, epochs=2, batch_size=16, verbose=0,
                        validation_data=(x, y, w), engine=engine)
    p = model.predict(x)[:, 0]
    logs = model.evaluate(x, y, sample_weight=w, return_dict=True)
    assert logs["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-6)
    assert logs["weighted_mae"] == pytest.approx(np.sum(w * np.abs(p - y)) / np.sum(w),
                                                 rel=1e-6)
    assert logs["weighted_auc"] == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w),
                                                 abs=1e-9)
    assert logs["precision"] == pytest.approx(
        _sk(skm.precision_score, y, p > 0.5, sample_weight=w), abs=1e-9)
    assert logs["weighted_mae"] != pytest.approx(logs["mae"], rel=1e-6)
    # the last epoch's validation is this evaluate (no training after it)
    for key in ("mae", "weighted_mae", "weighted_auc", "precision"):
        assert history.history[f"val_{key}"][-1] == pytest.approx(logs[key], rel=1e-6)
    # without weights, the weighted metrics equal the unweighted ones
    plain = model.evaluate(x, y, return_dict=True)
    assert plain["weighted_mae"] == pytest.approx(plain["mae"])
    assert plain["weighted_auc"] == pytest.approx(plain["auc"])


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
def test_weighted_metrics_take_the_training_weights(rng, engine):
    """The epoch's weighted accuracy is the weighted mean of each batch's (computed with the
    weights before the step); class weights join the sample weights (Keras)."""
    x, y, w = _data(rng, 48)
    seen = []

    class Batches(pynn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(dict(logs))

    model = _model(metrics=["accuracy"], weighted=["accuracy"])
    history = model.fit(x, y, sample_weight=w, class_weight={0: 1.0, 1: 3.0}, epochs=1,
                        batch_size=48, shuffle=False, verbose=0, engine=engine,
                        callbacks=[Batches()])
    assert model.engine_reason is None if engine == "native" else True
    weights = w * np.where(y > 0, 3.0, 1.0)
    fresh = _model(metrics=["accuracy"], weighted=["accuracy"])  # same seed: same start
    hits = ((fresh.predict(x)[:, 0] > 0.5) == (y > 0.5))
    assert history.history["weighted_accuracy"][0] == pytest.approx(
        np.sum(weights * hits) / np.sum(weights))
    assert history.history["accuracy"][0] == pytest.approx(hits.mean())
    assert seen[0]["weighted_accuracy"] == history.history["weighted_accuracy"][0]


@requires_native
def test_engines_agree_on_weighted_metrics(rng):
    x, y, w = _data(rng, 100)
    results = []
    for engine in ("native", "layers"):
        model = _model(units=2, act="softmax", loss="sparse_categorical_crossentropy",
                       weighted=["accuracy", "f1_score", M.AUC(),
                                 M.SparseTopKCategoricalAccuracy(k=1)])
        history = model.fit(x, y.astype(int), sample_weight=w, epochs=2, batch_size=7,
                            verbose=0, engine=engine)
        results.append(history.history)
    for key in results[0]:
        np.testing.assert_allclose(results[0][key], results[1][key], rtol=1e-5, atol=1e-6)


def test_weighted_metrics_survive_save_pickle_and_clone(rng, tmp_path):
    x, y, w = _data(rng)
    model = _model(metrics=["mae"], weighted=["mae", M.AUC(curve="PR", name="pr")])
    model.fit(x, y, epochs=1, verbose=0)
    expected = model.evaluate(x, y, sample_weight=w, return_dict=True)
    model.save(tmp_path / "m.npz")
    copies = [pynn.load_model(tmp_path / "m.npz"), pickle.loads(pickle.dumps(model)),
              copy.deepcopy(model)]
    for other in copies:
        assert other.evaluate(x, y, sample_weight=w, return_dict=True) == pytest.approx(
            expected)
    clone = pynn.models.clone_model(model)
    assert clone.metrics_names == model.metrics_names == ["loss", "mae", "weighted_mae", "pr"]
    lambda_metric = _model(weighted=[lambda t, p: np.abs(t - p)])
    with pytest.raises(ValueError, match="cannot save metric"):
        lambda_metric.save(tmp_path / "l.npz")


def test_user_metrics_as_weighted_metrics(rng):
    x, y, w = _data(rng)

    def abs_error(y_true, y_pred):  # one value per sample: weighted as Keras' Mean
        return np.abs(y_true - y_pred)[:, 0]

    class WeightedSum(M.Metric):  # Keras' guide: update_state takes the weights
        def __init__(self, name="weighted_sum"):
            super().__init__(name=name)
            self.total = self.add_variable(name="total")

        def update_state(self, y_true, y_pred, sample_weight=None):
            weights = 1.0 if sample_weight is None else np.asarray(sample_weight)[:, None]
            self.total.assign_add(np.sum(weights * y_pred))

        def result(self):
            return self.total.value

    class Unweighted(M.Metric):
        def update_state(self, y_true, y_pred):
            self.seen = True

        def result(self):
            return 1.0

    with pytest.raises(TypeError, match="takes no sample_weight"):
        _model(weighted=[Unweighted(name="u")]).evaluate(x, y, sample_weight=w)
    model = _model(weighted=[abs_error, WeightedSum()])
    logs = model.evaluate(x, y, sample_weight=w, return_dict=True, batch_size=13)
    p = model.predict(x)
    assert logs["abs_error"] == pytest.approx(np.sum(w * np.abs(y - p[:, 0])) / np.sum(w),
                                              rel=1e-6)
    assert logs["weighted_sum"] == pytest.approx(np.sum(w * p[:, 0]), rel=1e-5)


def test_weighted_metrics_match_keras(rng):
    keras = import_keras()
    x, y, w = _data(rng, 50)
    model = _model(metrics=["mae", "accuracy"],
                   weighted=["mae", "accuracy", "binary_crossentropy", M.AUC()])
    model.fit(x, y, epochs=1, verbose=0)
    k = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
    k.set_weights(model.get_weights())
    k.compile("sgd", "binary_crossentropy", metrics=["mae", "accuracy"],
              weighted_metrics=["mae", "accuracy", "binary_crossentropy",
                                keras.metrics.AUC(num_thresholds=2000, name="auc")])
    ours = model.evaluate(x, y, sample_weight=w, return_dict=True)
    theirs = k.evaluate(x, y.reshape(-1, 1), sample_weight=w, return_dict=True, verbose=0)
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        # Keras' AUC sums over 2000 thresholds: close to the exact one only where the
        # scores spread (an untrained model's bunch near 0.5); scikit-learn's is exact
        tolerance = 2e-2 if key == "auc" else 1e-5
        assert ours[key] == pytest.approx(float(theirs[key]), rel=tolerance, abs=tolerance), key
    assert ours["auc"] == pytest.approx(
        skm.roc_auc_score(y, model.predict(x)[:, 0], sample_weight=w), abs=1e-9)


# ---- a review of the change's findings -----------------------------------------------------
def test_pynn_metric_functions_in_compile_are_whole_set_values(rng):
    """precision, recall, f1_score, roc_auc, RMSE and R² given as functions are their Metric
    objects: the value over all batches (a batch mean is another number), and weighted in
    weighted_metrics (they were weighed as one number per batch, unweighted)."""
    x, y, w = _data(rng, 90)
    model = _model(metrics=[M.precision, M.roc_auc], weighted=[M.precision, M.recall,
                                                                 M.f1_score, M.roc_auc])
    logs = model.evaluate(x, y, sample_weight=w, batch_size=7, return_dict=True)
    p = model.predict(x)[:, 0]
    assert logs["precision"] == pytest.approx(_sk(skm.precision_score, y, p > 0.5), abs=1e-9)
    assert logs["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
    for name, reference in (("precision", skm.precision_score), ("recall", skm.recall_score),
                            ("f1_score", skm.f1_score)):
        assert logs[f"weighted_{name}" if name == "precision" else name] == pytest.approx(
            _sk(reference, y, p > 0.5, sample_weight=w), abs=1e-9), name
    assert logs["weighted_roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, p, sample_weight=w), abs=1e-9)


def test_a_function_is_not_given_the_weights(rng):
    """As Keras' MeanMetricWrapper: a function is called without the weights (even with a
    sample_weight parameter) and its per-sample values are weighted by pynn."""
    x, y, w = _data(rng, 40)
    calls = []

    def per_sample(y_true, y_pred, sample_weight=None):
        calls.append(sample_weight)
        return np.abs(y_true.reshape(y_pred.shape) - y_pred)[:, 0]

    model = _model(weighted=[per_sample])
    logs = model.evaluate(x, y, sample_weight=w, batch_size=40, return_dict=True)
    p = model.predict(x)[:, 0]
    assert logs["per_sample"] == pytest.approx(np.sum(w * np.abs(y - p)) / np.sum(w),
                                               rel=1e-6)
    assert calls and all(c is None for c in calls)


def test_weighted_single_numbers_and_weightless_nan_scores():
    for metric in (M.BinaryAccuracy(), M.MeanSquaredError(), M.MeanAbsoluteError(),
                   M.RootMeanSquaredError(), M.Precision()):
        metric.update_state(1.0, 0.7, sample_weight=2.0)  # (an AxisError)
        assert metric.result() == pytest.approx(
            {"binary_accuracy": 1.0, "precision": 1.0, "mean_squared_error": 0.09}.get(
                metric.name, 0.3))
    y = np.array([0, 1, 0, 1, 1.0])
    p = np.array([0.1, 0.8, 0.4, 0.6, np.nan])
    w = np.array([1, 1, 1, 1, 0.0])  # the NaN weighs nothing: a padded position
    assert M.roc_auc(y, p, sample_weight=w) == 1.0
    assert M.AUC(curve="PR")(y, p, sample_weight=w) == 1.0
    assert np.isnan(M.roc_auc(y, p))


def test_unweighted_mape_keeps_its_formula(rng):
    y, p = rng.random(50) + 0.5, rng.random(50)
    ratio = np.abs(y - p) / np.maximum(np.abs(y), 1e-7)
    assert M.mean_absolute_percentage_error(y, p) == float(100 * np.mean(ratio))
