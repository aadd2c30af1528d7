"""Metrics: the functions against scikit-learn, the stateful Metric API, and compile(metrics=)
giving whole-epoch / whole-set values (not means of per-batch values) in fit and evaluate."""

from __future__ import annotations

import functools
import importlib.util
import json
import warnings
import zipfile

import numpy as np
import pytest

import pynn
from pynn import engine as engine_mod
from pynn import metrics as M
from conftest import requires_native

skm = pytest.importorskip("sklearn.metrics")


def _sk(fn, *args, **kwargs):
    with warnings.catch_warnings():  # ill-defined precision etc.: sklearn warns, we count 0
        warnings.simplefilter("ignore")
        return fn(*args, zero_division=0, **kwargs)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _binary_case(rng, n):
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    p[rng.random(n) < 0.1] = 0.5  # ties, and exactly the threshold (negative, as > 0.5)
    return y, p


def _multiclass_case(rng, n, c):
    y = rng.integers(0, c, n)
    return y, _softmax(rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y])


@pytest.mark.parametrize("n", [1, 7, 200])
def test_binary_classification_matches_sklearn(rng, n):
    for _ in range(20):
        y, p = _binary_case(rng, n)
        hard = (p > 0.5).astype(int)
        for shape in [(n,), (n, 1)]:
            yy, pp = y.reshape(shape), p.reshape(shape)
            assert M.precision(yy, pp) == pytest.approx(_sk(skm.precision_score, y, hard))
            assert M.recall(yy, pp) == pytest.approx(_sk(skm.recall_score, y, hard))
            assert M.f1_score(yy, pp) == pytest.approx(_sk(skm.f1_score, y, hard))
        if 0 < y.sum() < n:
            assert M.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
        else:
            assert np.isnan(M.roc_auc(y, p))  # undefined with one class (sklearn raises)


def test_auc_of_nan_scores_is_nan(rng):
    """NaN has no rank: np.unique sorted it above every score, so a diverged model's NaN
    predictions scored AUC 1.0 (scikit-learn raises). Binary, one-vs-rest and the metric."""
    y = np.array([0, 1, 1, 0])
    assert np.isnan(M.roc_auc(y, [0.1, np.nan, 0.3, 0.2]))
    p = rng.dirichlet(np.ones(3), size=6)
    p[2, 1] = np.nan
    assert np.isnan(M.roc_auc(np.arange(6) % 3, p))
    metric = M.AUC()
    metric.update_state(y, np.array([0.1, 0.9, 0.8, 0.2]))
    metric.update_state(y, np.array([0.1, np.nan, 0.8, 0.2]))
    assert np.isnan(metric.result())
    assert M.roc_auc(y, [0.1, np.inf, 0.3, -np.inf]) == 1.0  # infinities still rank


@pytest.mark.parametrize("c", [2, 3, 7])
def test_multiclass_classification_matches_sklearn_macro(rng, c):
    for n in [5, 40, 300]:
        y, p = _multiclass_case(rng, n, c)
        hard = p.argmax(axis=1)
        for targets in [y, y.reshape(-1, 1), np.eye(c)[y]]:  # integer or one-hot labels
            assert M.precision(targets, p) == pytest.approx(
                _sk(skm.precision_score, y, hard, average="macro"))
            assert M.recall(targets, p) == pytest.approx(
                _sk(skm.recall_score, y, hard, average="macro"))
            assert M.f1_score(targets, p) == pytest.approx(
                _sk(skm.f1_score, y, hard, average="macro"))
        if len(np.unique(y)) == c:
            want = (skm.roc_auc_score(y, p[:, 1]) if c == 2 else
                    skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
            # two softmax columns: the mean of both one-vs-rest AUCs, each the binary AUC
            assert M.roc_auc(y, p) == pytest.approx(want, abs=1e-12)
            assert M.roc_auc(np.eye(c)[y], p) == pytest.approx(want, abs=1e-12)


def test_regression_matches_sklearn(rng):
    for shape in [(50,), (50, 1), (60, 3)]:
        y = rng.normal(3.0, 2.0, size=shape)
        p = y + rng.normal(size=shape)
        assert M.root_mean_squared_error(y, p) == pytest.approx(
            np.sqrt(skm.mean_squared_error(y, p)))
        assert M.r2_score(y, p) == pytest.approx(skm.r2_score(y, p))
        assert M.mean_squared_error(y, p) == pytest.approx(skm.mean_squared_error(y, p))
    # constant targets: sklearn's force_finite convention
    assert M.r2_score([2.0, 2.0, 2.0], [2.0, 2.0, 2.0]) == 1.0
    assert M.r2_score([2.0, 2.0, 2.0], [2.0, 3.0, 2.0]) == 0.0


def test_multilabel_pools_every_output():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]])
    p = np.array([[0.9, 0.2, 0.4], [0.6, 0.1, 0.8], [0.7, 0.3, 0.1]])
    assert M.precision(y, p, multilabel=True) == pytest.approx(
        skm.precision_score(y.ravel(), (p.ravel() > 0.5).astype(int)))
    assert M.roc_auc(y, p, multilabel=True) == pytest.approx(skm.roc_auc_score(y.ravel(),
                                                                               p.ravel()))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="labels must be integers in \\[0, 3\\)"):
        M.precision([0, 3], np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="expected integer labels"):
        M.recall(np.zeros((4, 2)), np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match="y_true has shape"):
        M.r2_score(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="threshold"):
        M.Precision(threshold=2)


@pytest.mark.parametrize("cls,fn,kind", [
    (M.Precision, M.precision, "binary"), (M.Recall, M.recall, "multi"),
    (functools.partial(M.F1Score, average="macro"), M.f1_score, "multi"),
    (functools.partial(M.F1Score, average="macro"), M.f1_score, "binary"),
    (M.AUC, M.roc_auc, "binary"), (M.AUC, M.roc_auc, "multi"),
    (M.RootMeanSquaredError, M.root_mean_squared_error, "reg"), (M.R2Score, M.r2_score, "reg"),
])
def test_stateful_metric_over_batches_equals_function_on_all(rng, cls, fn, kind):
    n = 257
    if kind == "binary":
        y, p = _binary_case(rng, n)
    elif kind == "multi":
        y, p = _multiclass_case(rng, n, 4)
    else:
        y = rng.normal(10.0, 3.0, size=(n, 2))
        p = y + rng.normal(size=(n, 2))
    metric = cls()
    cuts = np.sort(rng.choice(np.arange(1, n), size=6, replace=False))
    batch_values = []
    for a, b in zip([0, *cuts], [*cuts, n]):
        metric.update_state(y[a:b], p[a:b])
        batch_values.append(fn(y[a:b], p[a:b]))
    assert metric.result() == pytest.approx(fn(y, p), rel=1e-10)
    metric.reset_state()
    assert np.isnan(metric.result())
    assert metric(y, p) == pytest.approx(fn(y, p), rel=1e-10)  # Keras' __call__


def test_compile_names_and_objects():
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1, activation="sigmoid")])
    names = ["precision", "recall", "f1_score", "f1", "auc", "roc_auc", "rmse",
             "root_mean_squared_error", "r2", "r2_score", "accuracy", "mae"]
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[*names, M.Precision(name="prec_obj")])
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = (x[:, 0] > 0).astype(np.float32)
    logs = model.evaluate(x, y, return_dict=True)
    assert list(logs) == ["loss", *names, "prec_obj"]
    assert logs["prec_obj"] == logs["precision"]
    with pytest.raises(ValueError, match="unknown metric 'f2'.*precision"):
        model.compile(optimizer="sgd", loss="mse", metrics=["f2"])
        model.evaluate(x, y)


def _recording_model(loss, out_units, activation, metrics):
    """A model whose extra metric records exactly the (targets, predictions) of each batch."""
    batches = []

    def recorder(y_true, y_pred):
        batches.append((np.array(y_true), np.array(y_pred)))
        return 0.0

    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(6, activation="tanh"),
                             pynn.Dense(out_units, activation=activation)])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss=loss, metrics=[*metrics, recorder])
    return model, batches


CASES = [  # loss, output units, activation, metrics, function per metric
    ("binary_crossentropy", 1, "sigmoid", ["precision", "recall", "f1_score", "auc"],
     [M.precision, M.recall, M.f1_score, M.roc_auc]),
    ("sparse_categorical_crossentropy", 3, "softmax", ["precision", "recall", "f1", "auc"],
     [M.precision, M.recall, M.f1_score, M.roc_auc]),
    ("mse", 2, "linear", ["rmse", "r2", "mae"],
     [M.root_mean_squared_error, M.r2_score, M.mean_absolute_error]),
]


@pytest.mark.parametrize("loss,units,act,names,fns", CASES, ids=[c[0] for c in CASES])
def test_fit_history_holds_whole_epoch_values(rng, loss, units, act, names, fns):
    pynn.set_seed(int(rng.integers(1 << 30)))
    n = 203  # batches of 16 and a last one of 11
    x = rng.normal(size=(n, 4)).astype(np.float32)
    if loss == "mse":
        y = np.stack([x[:, 0] + x[:, 1], x[:, 2] * 2], axis=1).astype(np.float32)
    elif units == 1:
        y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(np.float32)
    else:
        y = np.digitize(x[:, 0] + 0.5 * rng.normal(size=n), [-0.5, 0.5])
    model, batches = _recording_model(loss, units, act, names)
    epochs = 3
    h = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    steps = -(-n // 16)
    assert len(batches) == epochs * steps
    for epoch in range(epochs):
        chunk = batches[epoch * steps:(epoch + 1) * steps]
        y_all = np.concatenate([b[0] for b in chunk])
        p_all = np.concatenate([b[1] for b in chunk])
        for name, fn in zip(names, fns):
            assert h.history[name][epoch] == pytest.approx(fn(y_all, p_all), rel=1e-9), name
    # evaluate: the whole set at once, whatever the batch size
    logs = model.evaluate(x, y, batch_size=13, return_dict=True)
    pred = model.predict(x)
    for name, fn in zip(names, fns):
        assert logs[name] == pytest.approx(fn(y, pred), rel=1e-5, abs=1e-6), name


def test_whole_epoch_differs_from_batch_mean():
    """Precision of the whole set is not the mean of per-batch precisions: the case this
    API exists for (batch 1: 1 of 1 predicted positives right; batch 2: 1 of 3)."""
    y = np.array([1, 0, 1, 0, 0, 0])
    p = np.array([0.9, 0.1, 0.9, 0.8, 0.7, 0.1])
    m = M.Precision()
    m.update_state(y[:2], p[:2])
    m.update_state(y[2:], p[2:])
    assert m.result() == pytest.approx(2 / 4)
    assert (M.precision(y[:2], p[:2]) + M.precision(y[2:], p[2:])) / 2 == pytest.approx(2 / 3)


def test_validation_metrics_are_whole_set_values(rng):
    pynn.set_seed(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 1] > 0).astype(np.float32)
    x_val, y_val = x[:37], y[:37]
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["auc", "f1_score"])
    seen = []

    def check(epoch, logs):
        pred = model.predict(x_val)
        seen.append(epoch)
        assert logs["val_auc"] == pytest.approx(M.roc_auc(y_val, pred), abs=1e-6)
        assert logs["val_f1_score"] == pytest.approx(M.f1_score(y_val, pred), abs=1e-6)

    model.fit(x, y, epochs=2, batch_size=10, validation_data=(x_val, y_val), verbose=0,
              callbacks=[pynn.callbacks.LambdaCallback(on_epoch_end=check)])
    assert seen == [0, 1]


def test_train_on_batch_reports_the_batch_values(rng):
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = rng.integers(0, 3, 30)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["f1_score", "accuracy"])
    before = model.predict(x)
    loss, f1, acc = model.train_on_batch(x, y)
    assert f1 == pytest.approx(M.f1_score(y, before), abs=1e-6)
    assert acc == pytest.approx(M.sparse_categorical_accuracy(y, before))


METRIC_CASES = [
    ("binary", "sigmoid", "binary_crossentropy", ["accuracy", "precision", "recall", "f1_score", "auc"]),
    ("classes", "softmax", "sparse_categorical_crossentropy", ["accuracy", "precision", "auc"]),
    ("regression", None, "mse", ["rmse", "r2", "mae"]),
]


@pytest.mark.parametrize("kind,act,loss,metrics", METRIC_CASES, ids=[c[0] for c in METRIC_CASES])
def test_every_metric_trains_natively_like_the_layer_path(rng, kind, act, loss, metrics):
    # Built-in per-sample metrics run in C++; with any other metric the engine hands back the
    # batches' outputs and every metric object is updated from them, as on the layer path.
    if engine_mod._native_module() is None:
        pytest.skip("pynn._C not built: the native engine is never used")
    x = rng.normal(size=(150, 4)).astype(np.float32)
    out = {"binary": 1, "classes": 3, "regression": 2}[kind]
    if kind == "binary":
        y = (x[:, 0] + 0.3 * rng.normal(size=150) > 0).astype(np.float32)[:, None]
    elif kind == "classes":
        y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    else:
        y = x[:, :2] * 2 + 0.1 * rng.normal(size=(150, 2))
    runs = {}
    for engine in ("native", "layers"):
        pynn.set_seed(6)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(8, activation="relu"),
                                 pynn.Dense(out, activation=act)])
        model.compile(optimizer="adam", loss=loss, metrics=metrics, backend="cpu")
        # 60 steps: three batches per native call, outputs sliced per batch
        runs[engine] = model.fit(x, y, epochs=3, batch_size=2, validation_split=0.2,
                                 verbose=0, engine=engine).history
    assert set(runs["native"]) == set(runs["layers"]) == {
        "loss", "val_loss", *metrics, *(f"val_{m}" for m in metrics)}
    for key, values in runs["layers"].items():
        np.testing.assert_allclose(runs["native"][key], values, rtol=1e-4, atol=1e-6,
                                   err_msg=key)


def test_user_metric_function_runs_natively(rng):
    if engine_mod._native_module() is None:
        pytest.skip("pynn._C not built: the native engine is never used")
    calls = []

    def max_error(y_true, y_pred):
        calls.append(len(y_true))
        return float(np.abs(y_true - y_pred).max())

    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=[max_error], backend="cpu")
    x = rng.normal(size=(50, 4)).astype(np.float32)
    h = model.fit(x, x[:, :1], epochs=1, batch_size=16, verbose=0, engine="native")
    assert calls == [16, 16, 16, 2] and "max_error" in h.history


@pytest.mark.parametrize("engine", ["auto", "layers"])
@pytest.mark.parametrize("call", ["fit", "generator", "train_on_batch"])
@pytest.mark.parametrize("metric", ["mse", pynn.metrics.RootMeanSquaredError(),
                                    pynn.losses.MeanAbsoluteError()])
def test_metric_names_are_checked_at_compile_and_pairings_before_training(engine, call,
                                                                          metric):
    """An unknown metric fails at compile; a metric that does not fit the labels fails the
    same way on both engines, naming the shapes (not the engine's internals), before any
    step (the error came from the metrics of the first chunk, the weights already moved)."""
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="unknown metric 'bogus'"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["bogus"])
    x = np.random.default_rng().normal(size=(64, 4)).astype(np.float32)
    y = np.arange(64) % 3
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", metric])
    with pytest.raises(ValueError, match=r"cannot take y: .*shape \(1,.* \(checked on its first "
                                         r"sample before training: targets of shape \(\) per "
                                         r"sample, model outputs \(3,\)\)"):
        if call == "fit":
            model.fit(x, y, epochs=1, batch_size=8, verbose=0, engine=engine)
        elif call == "generator":
            model.fit(((x[i:i + 8], y[i:i + 8]) for i in range(0, 64, 8)), epochs=1,
                      verbose=0, engine=engine)
        else:
            model.train_on_batch(x[:8], y[:8])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.training_steps == 0


class _KerasStyleAccuracy(pynn.metrics.Metric):
    """Written as a Keras user would: reset_state / update_state / result only."""

    def reset_state(self):
        self.right = self.seen = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.right += int((np.argmax(y_pred, axis=-1) == np.ravel(y_true)).sum())
        self.seen += len(y_true)

    def result(self):
        return self.right / max(self.seen, 1)


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
def test_a_keras_style_metric_subclass_in_fit_and_evaluate(rng, engine):
    """It crashed fit and evaluate (they called a private hook the subclass lacks). Its
    result() may be a numpy scalar: History holds floats."""
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[_KerasStyleAccuracy(name="my_acc"), "accuracy"])
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, engine=engine)
    np.testing.assert_allclose(history.history["my_acc"], history.history["accuracy"])
    logs = model.evaluate(x, y, return_dict=True)
    expected = np.mean(np.argmax(model.predict(x), axis=1) == y)
    assert logs["my_acc"] == pytest.approx(expected) == pytest.approx(logs["accuracy"])


def test_a_metric_that_gives_no_number_is_named():
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])

    def label(y_true, y_pred):
        return "abc"

    model.compile(optimizer="sgd", loss="mse", metrics=[label])
    with pytest.raises(TypeError, match="metric 'label' must give one number, got 'abc'"):
        model.fit(np.zeros((4, 2)), np.zeros(4), verbose=0)


def test_a_builtin_metric_subclass_calling_super(rng):
    """update_state overridden and calling super(): it recursed forever."""
    class LoudPrecision(pynn.metrics.Precision):
        calls = 0

        def update_state(self, y_true, y_pred, sample_weight=None):
            LoudPrecision.calls += 1
            super().update_state(y_true, y_pred)

    m = LoudPrecision()
    m.update_state(np.array([0, 1, 1]), np.array([0.2, 0.8, 0.3]))
    assert m.result() == 1.0 and LoudPrecision.calls == 1
    x = rng.normal(size=(32, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=[LoudPrecision()])
    history = model.fit(x, (x[:, 0] > 0).astype(np.float32), epochs=1, batch_size=8, verbose=0)
    assert isinstance(history.history["precision"][0], float)


def test_evaluate_from_a_callback_leaves_the_epochs_metric_objects_alone(rng):
    # evaluate() reset the compiled Metric objects the running epoch accumulated into, so
    # the epoch's precision and AUC covered only the batches after the call.
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=400) > 0).astype(np.float32)
    seen = []

    def run(evaluate_mid_epoch):
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1, activation="sigmoid")])
        model.compile(optimizer=pynn.optimizers.SGD(0.0), loss="binary_crossentropy",
                      metrics=[pynn.metrics.Precision(), pynn.metrics.AUC()])

        def on_batch_end(batch, logs):
            if evaluate_mid_epoch and batch == 5:
                seen.append(model.evaluate(x[:50], y[:50], return_dict=True))

        cb = pynn.callbacks.LambdaCallback(on_train_batch_end=on_batch_end)
        history = model.fit(x, y, epochs=1, batch_size=20, shuffle=False, verbose=0,
                            callbacks=[cb]).history
        return (history["precision"][0], history["auc"][0]), model

    (with_call, model), (without, _) = run(True), run(False)
    assert with_call == without
    # and the call itself measured its own data (the weights do not move: SGD(0))
    assert seen == [model.evaluate(x[:50], y[:50], return_dict=True)]


def test_evaluate_from_a_callback_with_a_metric_that_cannot_be_copied(rng):
    # evaluate() during fit copies the metric objects; one holding a lock cannot be copied
    # and is shared as before instead of failing the fit.
    import threading

    class Locked(pynn.metrics.Metric):
        def __init__(self):
            super().__init__(name="locked")
            self.lock = threading.Lock()

        def reset_state(self):
            self.total = 0.0

        def update_state(self, y_true, y_pred, sample_weight=None):
            with self.lock:
                self.total += float(np.sum(y_pred))

        def result(self):
            return self.total

    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.normal(size=40).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=[Locked()])
    seen = []
    cb = pynn.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: b == 1 and seen.append(model.evaluate(x, y)))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[cb])
    assert len(seen) == 1


def test_evaluate_from_several_threads_gives_each_its_own_metrics(rng):
    # Every evaluate accumulated into the model's metric objects: threads evaluating one
    # model at once mixed each other's batches into accuracy and AUC (the loss stayed right).
    import threading

    x = rng.normal(size=(4000, 6)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=4000) > 0).astype(np.float32)
    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(8, activation="relu"),
                             pynn.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy", "auc"])
    parts = [(x[:2000], y[:2000]), (x[2000:], y[2000:])]
    want = [model.evaluate(a, b, batch_size=50, return_dict=True) for a, b in parts]
    wrong = []

    def work(i):
        a, b = parts[i % 2]
        for _ in range(15):
            got = model.evaluate(a, b, batch_size=50, return_dict=True)
            if got != want[i % 2]:
                wrong.append((i, got))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def _multilabel_model(seed, metrics):
    data = np.random.default_rng(seed)  # the same data for the same seed
    x = data.normal(size=(60, 5)).astype(np.float32)
    y = (data.random(size=(60, 3)) < 0.4).astype(np.float32)
    pynn.set_seed(1)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(3, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=metrics)
    return model, x, y


def test_metric_objects_read_multilabel_outputs_as_their_names_do(rng):
    """Precision()/Recall()/F1Score()/AUC() objects took a multi-label model's outputs as
    classes (the argmax of multi-hot rows), while the same metrics named as strings pooled the
    labels as Keras does."""
    names = ["precision", "recall", "f1_score", "auc"]
    seed = int(rng.integers(2**32))
    model, x, y = _multilabel_model(seed, names)
    by_name = model.evaluate(x, y, return_dict=True)
    objects = [M.Precision(), M.Recall(), M.F1Score(), M.AUC()]
    model, x, y = _multilabel_model(seed, objects)
    by_object = model.evaluate(x, y, return_dict=True)
    p = model.predict(x, verbose=0)
    assert by_object == pytest.approx(by_name)
    assert by_object["auc"] == pytest.approx(skm.roc_auc_score(y.ravel(), p.ravel()))
    assert by_object["precision"] == pytest.approx(
        _sk(skm.precision_score, y.ravel(), p.ravel() > 0.5))
    # asked for explicitly, the multi-class reading stays available (of one-hot targets:
    # multi-hot rows are no class, and raise rather than read by their argmax)
    model, x, y = _multilabel_model(seed, [M.Precision(multilabel=False)])
    p = model.predict(x, verbose=0)
    with pytest.raises(ValueError, match="needs one-hot targets.*multilabel=True"):
        model.evaluate(x, y, return_dict=True)
    y = np.eye(3, dtype=np.float32)[y.argmax(1)]
    assert model.evaluate(x, y, return_dict=True)["precision"] == pytest.approx(
        _sk(skm.precision_score, y.argmax(1), p.argmax(1), average="macro",
            labels=np.union1d(y.argmax(1), p.argmax(1))))
    # outside compile an object reads (N, C) as classes, as the functions do by default
    m, y3, p3 = M.Precision(), np.eye(3)[[0, 1, 2, 1]], _softmax(rng.normal(size=(4, 3)))
    m.update_state(y3, p3)
    assert m.result() == M.precision(y3, p3)
    assert M.Precision(multilabel=None).get_config()["multilabel"] is None


def test_keras_metric_and_loss_names_are_accepted(rng):
    """Keras' class names as strings ('AUC', 'Precision', 'RootMeanSquaredError', ...), a
    loss named as a metric, a loss class and its class name: refused before."""
    model, x, y = _multilabel_model(int(rng.integers(2**32)), ["AUC", "Precision", "BinaryAccuracy",
                                          "binary_crossentropy"])
    logs = model.evaluate(x, y, return_dict=True)
    # logged under the string given, as Keras 3 names them
    assert set(logs) == {"loss", "AUC", "Precision", "BinaryAccuracy", "binary_crossentropy"}
    assert logs["binary_crossentropy"] == pytest.approx(logs["loss"], rel=1e-5)
    r = pynn.Sequential([pynn.Input((5,)), pynn.Dense(2)])
    for loss in ("MeanSquaredError", pynn.losses.MeanSquaredError):
        r.compile(optimizer="sgd", loss=loss, metrics=["RootMeanSquaredError", "R2Score"])
        assert isinstance(r.loss, pynn.losses.MeanSquaredError)
        logs = r.evaluate(x, y[:, :2], return_dict=True)
        assert logs["RootMeanSquaredError"] == pytest.approx(np.sqrt(logs["loss"]), rel=1e-5)

    def my_loss(y_true, y_pred):
        return ((y_true - y_pred) ** 2).mean()
    with pytest.raises(ValueError, match="'my_loss' as a loss: pynn has no autodiff"):
        r.compile(optimizer="sgd", loss=my_loss)


def test_edge_values_as_keras_computes_them(rng):
    # a prediction exactly at the threshold is 0 (y_pred > threshold), Keras' reading
    assert M.binary_accuracy(np.array([[0.0]]), np.array([[0.5]])) == 1.0
    assert M.binary_accuracy(np.array([[1.0]]), np.array([[0.5]])) == 0.0
    # MAPE divides by max(|y_true|, 1e-7)
    assert M.mean_absolute_percentage_error(np.array([[1e-4]]), np.array([[2e-4]])) == \
        pytest.approx(100.0)
    # one-vs-rest AUC over the classes with both labels: class 2 never occurs
    from sklearn.metrics import roc_auc_score

    y, p = np.array([0, 1, 0, 1, 1]), rng.dirichlet(np.ones(3), size=5)
    want = np.mean([roc_auc_score(y == c, p[:, c]) for c in (0, 1)])
    assert M.roc_auc(y, p) == pytest.approx(want)
    auc = M.AUC()
    auc.update_state(y, p)
    assert auc.result() == pytest.approx(want)


def test_accuracy_under_binary_cross_entropy_reads_every_output_as_a_label(rng):
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (rng.random((40, 3)) > 0.5).astype(np.float32)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
    logs = model.evaluate(x, y, return_dict=True)
    assert logs["accuracy"] == pytest.approx(M.binary_accuracy(y, model.predict(x)), rel=1e-6)


@pytest.mark.parametrize("loss", ["mse", "hinge", "binary_crossentropy"])
def test_accuracy_of_one_output_per_position_is_binary(rng, loss):
    """A sequence model with one sigmoid output per position, (N, T, 1): 'accuracy' took the
    width as T (the product of the output shape) and chose categorical accuracy, an argmax
    over one column, always 1.0; Keras reads the last axis and chooses binary accuracy."""
    x = rng.normal(size=(64, 5, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((5, 3)), pynn.Dense(1, activation="sigmoid")])
    model.compile("sgd", loss, metrics=["accuracy"])
    y = (rng.random((64, 5, 1)) > 0.5).astype(np.float32)
    if loss == "hinge":
        y = 2 * y - 1
    want = np.mean((model.predict(x) > 0.5) == (y > 0))
    logs = model.evaluate(x, y, return_dict=True)
    assert logs["accuracy"] == pytest.approx(want, rel=1e-6)
    assert want < 0.9  # (random labels: a wrong metric's 1.0 would show)


def test_label_metrics_of_one_output_per_position_pool_the_positions(rng):
    """(N, T, 1) sigmoid outputs under binary cross-entropy: precision, recall, F1 and AUC
    pool every position's label (as Keras); reading the last axis alone for them raised
    "predictions must have shape (N,) or (N, C)"."""
    x = rng.normal(size=(64, 6, 3)).astype(np.float32)
    y = (rng.random((64, 6, 1)) > 0.5).astype(np.float32)
    model = pynn.Sequential([pynn.Input((6, 3)), pynn.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=["precision", "recall", "accuracy"])
    logs = model.evaluate(x, y, return_dict=True)
    hit = model.predict(x) > 0.5
    truth = y > 0.5
    assert logs["precision"] == pytest.approx((hit & truth).sum() / hit.sum(), rel=1e-6)
    assert logs["recall"] == pytest.approx((hit & truth).sum() / truth.sum(), rel=1e-6)
    assert logs["accuracy"] == pytest.approx(np.mean(hit == truth), rel=1e-6)


def test_class_id_on_one_output_and_weighted_multilabel_f1_as_scikit_learn():
    from sklearn.metrics import f1_score

    p = M.Precision(class_id=0)  # one sigmoid output: class 0 is that output
    p.update_state(np.array([1, 0, 1, 1]), np.array([[0.9], [0.8], [0.2], [0.7]]))
    assert p.result() == pytest.approx(2 / 3)
    y = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0]])
    scores = np.array([[0.9, 0.6, 0.1], [0.2, 0.7, 0.6], [0.3, 0.1, 0.9], [0.8, 0.9, 0.2]])
    w = np.array([1.0, 2.0, 0.5, 3.0])
    assert M.f1_score(y, scores, multilabel=True, average="weighted", sample_weight=w) == \
        pytest.approx(f1_score(y, scores > 0.5, average="weighted", sample_weight=w))


_MEAN_METRICS = [  # (class, arguments, data kind) of pynn's per-sample mean metrics
    (M.BinaryAccuracy, {}, "binary"), (M.CategoricalAccuracy, {}, "one-hot"),
    (M.SparseCategoricalAccuracy, {}, "labels"), (M.TopKCategoricalAccuracy, {"k": 2}, "one-hot"),
    (M.SparseTopKCategoricalAccuracy, {"k": 2}, "labels"), (M.MeanSquaredError, {}, "binary"),
    (M.MeanAbsoluteError, {}, "binary"), (M.MeanAbsolutePercentageError, {}, "binary"),
    (M.MeanSquaredLogarithmicError, {}, "binary")]


def _targets(kind, rng, n, c=3):
    labels = rng.integers(0, c, n)
    return {"binary": (rng.random((n, c)) > 0.5).astype(np.float32),
            "one-hot": np.eye(c, dtype=np.float32)[labels], "labels": labels}[kind]


@pytest.mark.parametrize("case", _MEAN_METRICS, ids=lambda c: c[0].__name__)
def test_an_empty_batch_adds_nothing_to_a_mean_metric(rng, case):
    """A batch of 0 samples (a filtered or masked batch) made a mean metric NaN for good
    (np.mean of nothing, added at weight 0); Keras adds nothing."""
    cls, kwargs, kind = case
    y, p = _targets(kind, rng, 10), rng.random((10, 3)).astype(np.float32)
    want = cls(**kwargs)
    want.update_state(y, p)
    for weights in (None, np.zeros(0)):
        m = cls(**kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (no "mean of empty slice" either)
            m.update_state(y[:0], p[:0], sample_weight=weights)
            assert np.isnan(m.result())  # nothing seen yet
            m.update_state(y, p, sample_weight=None if weights is None else np.ones(10))
        assert m.result() == pytest.approx(want.result())
    with pytest.raises(ValueError, match="sample_weight"):  # still checked
        cls(**kwargs).update_state(y[:0], p[:0], sample_weight=np.ones(3))
    fn = M.MeanMetricWrapper(lambda t, q: float(np.mean(q)), name="mine")
    fn.update_state(y[:0], p[:0])  # a user's function is not asked about no samples
    fn.update_state(y, p)
    assert fn.result() == pytest.approx(float(np.mean(p)))


def test_multi_hot_targets_are_not_read_as_classes(rng):
    """AUC()/Precision()/Recall()/F1Score() read (N, C) outputs as classes and took the
    argmax of multi-hot (or all-zero) target rows as their class, silently: a class they are
    not. One-hot rows and soft labels (a distribution over the classes) still read."""
    p = _softmax(rng.normal(size=(6, 3)))
    multi_hot = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1], [1, 0, 0]])
    no_class = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    no_class[3] = 0
    for y in (multi_hot, no_class):
        for m in (M.AUC(), M.Precision(), M.Recall(), M.F1Score()):
            with pytest.raises(ValueError, match=r"needs one-hot targets.*multilabel=True"):
                m.update_state(y, p)
        with pytest.raises(ValueError, match="needs one-hot targets"):
            M.precision(y, p)
    one_hot = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    soft = 0.8 * one_hot + 0.2 / 3  # label-smoothed: the same classes
    m = M.Precision()
    m.update_state(soft, p)
    assert m.result() == pytest.approx(M.precision([0, 1, 2, 0, 1, 2], p))
    assert M.roc_auc(soft, p) == pytest.approx(M.roc_auc(one_hot, p))
    pooled = M.Precision(multilabel=True)  # multi-hot labels, read as labels
    pooled.update_state(multi_hot, p)
    hit = p > 0.5
    assert pooled.result() == pytest.approx((hit & (multi_hot > 0)).sum() / hit.sum())


def test_labels_read_per_output_need_one_shape(rng):
    """F1Score(threshold=0.5) (each output a label) given y_true (4, 3) and y_pred (3, 4)
    flattened both and paired the outputs of different samples; Keras raises."""
    y = (rng.random((4, 3)) > 0.5).astype(np.float32)
    p = rng.random((3, 4)).astype(np.float32)
    for m in (M.F1Score(threshold=0.5), M.Precision(multilabel=True), M.TruePositives(),
              M.AUC(multilabel=True)):
        with pytest.raises(ValueError, match=r"y_true has shape \(4, 3\), y_pred \(3, 4\)"):
            m.update_state(y, p)
    with pytest.raises(ValueError, match="one shape"):
        M.f1_score(y, p, multilabel=True)
    y1, p1 = np.array([1, 0, 1, 1]), np.array([[0.9], [0.8], [0.2], [0.7]])
    for yy, pp in ((y1, p1), (y1[:, None], p1[:, 0])):  # a trailing axis of 1 still reads
        assert M.f1_score(yy, pp, multilabel=True) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_top_k_ranks_a_nan_score_below_every_number():
    """np.partition ranked NaN above every score: a NaN in another class pushed the label out
    of the top 1, and a NaN label score was out even for k >= the number of classes. Keras'
    in_top_k (JAX) ranks a NaN label score below every number and NaN above nothing."""
    p = np.array([[np.nan, 0.1, 0.2], [0.1, np.nan, 0.2]], np.float32)
    labels = np.array([0, 2])
    for k, want in ((1, 0.5), (2, 0.5), (3, 1.0), (5, 1.0)):
        m = M.SparseTopKCategoricalAccuracy(k=k)
        m.update_state(labels, p)
        assert m.result() == want
        assert M.top_k_categorical_accuracy(np.eye(3)[labels], p, k=k) == want
    tied = np.array([[0.2, 0.5, 0.5, 0.1]])  # a score tied with the k-th still counts as in
    assert M.sparse_top_k_categorical_accuracy([2], tied, k=1) == 1.0
    assert M.sparse_top_k_categorical_accuracy([0], tied, k=2) == 0.0


def test_a_weight_per_output_weighs_each_output_or_is_refused(rng):
    """(N, C) weights on (N, C) outputs: BinaryAccuracy averaged the weights over the outputs
    (0.596 where Keras' value is 0.664, each output weighed by its own weight); the metrics
    whose value is a mean over the outputs (MSE...) accepted them silently where Keras
    raises."""
    y = (rng.random((6, 3)) > 0.5).astype(np.float32)
    p = rng.random((6, 3)).astype(np.float32)
    w = rng.uniform(0, 2, (6, 3))
    w[:, 0] = 0
    hits = (p > 0.5) == (y > 0.5)
    m = M.BinaryAccuracy()
    m.update_state(y, p, sample_weight=w)
    assert m.result() == pytest.approx(np.sum(w * hits) / np.sum(w))
    m = M.BinaryAccuracy(threshold=0.3)  # (a partial of the function)
    m.update_state(y, p, sample_weight=w)
    assert m.result() == pytest.approx(np.sum(w * ((p > 0.3) == (y > 0.5))) / np.sum(w))
    m = M.BinaryAccuracy()  # one weight per sample: each of its outputs weighs it
    m.update_state(y, p, sample_weight=w[:, 1])
    assert m.result() == pytest.approx(np.sum(w[:, 1:2] * hits) / (3 * np.sum(w[:, 1])))
    labels = rng.integers(0, 3, 6)
    for metric, target in ((M.MeanSquaredError(), y), (M.MeanAbsoluteError(), y),
                           (M.MeanAbsolutePercentageError(), y),
                           (M.MeanSquaredLogarithmicError(), y),
                           (M.CategoricalAccuracy(), np.eye(3)[labels]),
                           (M.SparseCategoricalAccuracy(), labels)):
        with pytest.raises(ValueError, match=r"sample_weight of shape \(6, 3\) has more axes"):
            metric.update_state(target, p, sample_weight=w)


def test_metric_objects_from_before_their_new_arguments_keep_their_reading():
    # a file stored Precision(threshold=0.7, multilabel=False) (classes by argmax for (N, C)
    # outputs, the threshold for single outputs): it evaluated, and must still; an R2Score
    # pickled before class_aggregation existed has no such attribute
    rng = np.random.default_rng(0)
    y = np.eye(3)[rng.integers(0, 3, 40)]
    p = rng.random((40, 3))
    old = M.deserialize({"class_name": "Precision",
                         "config": {"name": "precision", "threshold": 0.7,
                                    "multilabel": False}})
    old.update_state(y, p)
    plain = M.Precision()
    plain.update_state(y, p)
    assert old.result() == plain.result()
    r2 = M.R2Score()
    del r2.__dict__["class_aggregation"], r2.__dict__["num_regressors"]
    r2.update_state(rng.random((8, 1)), rng.random((8, 1)))
    assert np.isfinite(r2.result())


def test_per_position_weights_with_a_trailing_axis_of_one():
    # (N, T, 1) weights, as Keras takes them for sequence outputs, were refused by the
    # standalone metrics after per-output weighting came in; they read as (N, T)
    rng = np.random.default_rng(1)
    y = np.eye(4)[rng.integers(0, 4, (12, 5))]
    p = rng.random((12, 5, 4))
    w = rng.random((12, 5))
    for make in (M.CategoricalAccuracy, M.MeanSquaredError, M.MeanAbsoluteError,
                 lambda: M.TopKCategoricalAccuracy(k=2), M.BinaryAccuracy):
        a, b = make(), make()
        a.update_state(y, p, sample_weight=w)
        b.update_state(y, p, sample_weight=w[..., None])
        assert a.result() == pytest.approx(b.result(), rel=1e-12), type(a).__name__


def test_an_r2score_pickled_with_the_older_four_statistics_reads_on():
    rng = np.random.default_rng(2)
    y, p = rng.random((10, 2)), rng.random((10, 2))
    new = M.R2Score()
    new.update_state(y, p)
    old = M.R2Score()
    old.update_state(y, p)
    old._state = old._state[:4]  # (count, mean, squared deviations, squared errors)
    assert old.result() == pytest.approx(new.result())
    old.update_state(y[:5], p[:5])
    new.update_state(y[:5], p[:5])
    assert old.result() == pytest.approx(new.result())


def test_a_zero_dimensional_threshold_and_an_r2score_subclass_of_its_own():
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 2, 20), rng.random(20)
    a, b = M.Precision(threshold=np.array(0.3)), M.Precision(threshold=0.3)
    a.update_state(y, p)
    b.update_state(y, p)
    assert a.result() == b.result()

    class MyR2(M.R2Score):  # its __init__ takes the name alone, as before R2Score's arguments
        def __init__(self, name="myr2"):
            super().__init__(name=name)

    assert MyR2(**MyR2().get_config()).name == "myr2"
    assert M.R2Score(num_regressors=2).get_config() == {"name": "r2_score",
                                                         "num_regressors": 2}


def _doubled_error(y_true, y_pred):
    return 2 * np.abs(np.asarray(y_pred) - np.asarray(y_true)).mean(axis=-1)


def test_a_mean_metric_wrapper_of_a_named_function_is_saved(rng, tmp_path):
    """MeanMetricWrapper(fn, name=...) as Keras saves it: with its function (one of pynn's,
    or a def of your own loaded through custom_objects); a lambda is still refused."""
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = rng.normal(size=(12, 1)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1)])
    model.compile("adam", "mse", metrics=[
        pynn.metrics.MeanMetricWrapper(pynn.metrics.mean_absolute_error, name="wrapped"),
        pynn.metrics.MeanMetricWrapper(_doubled_error, name="doubled", direction="down")])
    model.fit(x, y, epochs=1, verbose=0)
    logs = model.evaluate(x, y, return_dict=True)
    model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="_doubled_error"):
        pynn.load_model(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz",
                             custom_objects={"_doubled_error": _doubled_error})
    assert loaded.evaluate(x, y, return_dict=True) == pytest.approx(logs, rel=1e-6)
    assert logs["doubled"] == pytest.approx(2 * logs["wrapped"], rel=1e-5)
    wrapped = [m for m in loaded._metric_objects if m.name == "doubled"][0]
    assert type(wrapped) is pynn.metrics.MeanMetricWrapper and wrapped.direction == "down"
    if importlib.util.find_spec("h5py") is not None:  # a .keras file: Keras' description
        model.save(tmp_path / "m.keras")  # of it, read as Keras writes one (pynn's dropped)
        with zipfile.ZipFile(tmp_path / "m.keras") as z:
            members = {name: z.read(name) for name in z.namelist()}
        config = json.loads(members["config.json"])
        config.pop("pynn")
        assert config["compile_config"]["metrics"][0]["config"]["fn"]["config"] == \
            "mean_absolute_error"
        members["config.json"] = json.dumps(config)
        with zipfile.ZipFile(tmp_path / "k.keras", "w") as z:
            for name, data in members.items():
                z.writestr(name, data)
        with pynn.utils.custom_object_scope({"_doubled_error": _doubled_error}):
            as_keras = pynn.load_model(tmp_path / "k.keras")
        assert as_keras.evaluate(x, y, return_dict=True) == pytest.approx(logs, rel=1e-6)
    model.compile("adam", "mse", metrics=[
        pynn.metrics.MeanMetricWrapper(lambda t, p: np.abs(p - t), name="anonymous")])
    with pytest.raises(ValueError, match="cannot save metric"):
        model.save(tmp_path / "n.npz")


def test_label_metrics_take_one_sample_of_shape_1_against_1_1():
    """(1,) targets and (1, 1) predictions: the trailing-axis rule read (1,) as () and refused
    them; n = 2 worked."""
    y, p = np.ones(1), np.full((1, 1), 0.7)
    assert M.precision(y, p) == 1.0 and M.recall(y, p) == 1.0 and M.f1_score(y, p) == 1.0
    metric = M.TruePositives()
    metric.update_state(y, p)
    assert metric.result() == 1.0
    assert M.precision(y, p, multilabel=True) == 1.0
    with pytest.raises(ValueError, match=r"y_true has shape \(2,\), y_pred \(1, 2\)"):
        M.precision(np.ones(2), np.full((1, 2), 0.7), multilabel=True)  # (one sample's two)


def test_sparse_accuracy_refuses_fractions_and_misses_padding(rng):
    n = int(rng.integers(2, 30))
    scores = rng.normal(size=(n, 3))
    labels = rng.integers(0, 3, n)
    assert M.sparse_categorical_accuracy(labels, scores) == \
        np.mean(scores.argmax(axis=1) == labels)
    wrong = labels.astype(np.float64)
    wrong[int(rng.integers(n))] = 1.5
    with pytest.raises(ValueError, match="labels must be integers .*got 1.5"):
        M.sparse_categorical_accuracy(wrong, scores)
    for padding in (-1, 255):  # padding's labels: misses, as in Keras
        padded = labels.copy()
        padded[0] = padding
        assert M.sparse_categorical_accuracy(padded, scores) == \
            np.mean(scores.argmax(axis=1) == padded)


def test_accuracy_beside_a_loss_ignoring_255(rng):
    """Segmentation's padding label 255 under ignore_class: the loss leaves it out, the
    accuracy counts it as a miss (Keras'); it was refused for a moment."""
    x = rng.normal(size=(12, 4, 3)).astype(np.float32)
    y = rng.integers(0, 3, (12, 4))
    y[:, -1] = 255
    model = pynn.Sequential([pynn.Input((4, 3)), pynn.Dense(3, activation="softmax")])
    model.compile("adam", pynn.losses.SparseCategoricalCrossentropy(ignore_class=255),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    _, accuracy = model.evaluate(x, y, verbose=0)
    hits = model.predict(x, verbose=0).argmax(axis=-1) == y
    assert hits[:, -1].sum() == 0 and accuracy == pytest.approx(hits.mean())


def test_cosine_similarity_metric_takes_one_output(rng):
    """The loss refuses one output (no gradient); the metric reports the signs' agreement,
    as Keras."""
    y = rng.normal(size=(7, 1))
    p = rng.normal(size=(7, 1))
    metric = M.CosineSimilarity()
    metric.update_state(y, p)
    assert metric.result() == pytest.approx(np.mean(np.sign(y) * np.sign(p)))
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile("sgd", "mse", metrics=["cosine_similarity"])
    x = rng.normal(size=(7, 2)).astype(np.float32)
    _, cosine = model.evaluate(x, y, verbose=0)
    predicted = model.predict(x, verbose=0)[:, 0]
    assert cosine == pytest.approx(np.mean(np.sign(y[:, 0]) * np.sign(predicted)))


@pytest.mark.parametrize("n,c", [(1, 3), (17, 3), (129, 5)])
def test_fbeta_score_matches_sklearn(rng, n, c):
    """Keras' FBetaScore (average, beta, threshold in its order): scikit-learn's fbeta_score
    for classes read by the argmax and for labels read at a threshold; beta=1 is F1Score's
    value to the bit."""
    y = rng.integers(0, c, n)
    p = rng.random((n, c))
    for average in ("macro", "micro", "weighted"):
        for beta in (0.5, 1.0, 2.0, float(rng.uniform(0.1, 4))):
            metric = M.FBetaScore(average, beta)
            metric.update_state(y[: n // 2], p[: n // 2])  # two batches
            metric.update_state(y[n // 2:], p[n // 2:])
            want = _sk(skm.fbeta_score, y, p.argmax(axis=1), beta=beta, average=average,
                       labels=np.unique(np.concatenate([y, p.argmax(axis=1)])))
            assert metric.result() == pytest.approx(want, abs=1e-12), (average, beta)
        f1 = M.F1Score(average=average)
        f1.update_state(y, p)
        one = M.FBetaScore(average, 1.0)
        one.update_state(y, p)
        assert one.result() == f1.result()
    labels = rng.integers(0, 2, (n, c))
    multi = M.FBetaScore("macro", 2.0, threshold=0.4)
    multi.update_state(labels, p)
    assert multi.result() == pytest.approx(
        _sk(skm.fbeta_score, labels, p > 0.4, beta=2.0, average="macro"), abs=1e-12)


def test_fbeta_score_arguments_names_and_files(rng, tmp_path):
    for beta in (0, -1, float("inf"), True, "2"):
        with pytest.raises(ValueError, match="beta must be a number > 0"):
            M.FBetaScore(beta=beta)
    assert isinstance(M.get("fbeta_score"), M.FBetaScore)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=[M.FBetaScore(beta=2.0, name="f2")])
    x, y = rng.normal(size=(20, 3)).astype(np.float32), rng.integers(0, 3, 20)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    want = _sk(skm.fbeta_score, y, model.predict(x, verbose=0).argmax(axis=1), beta=2.0,
               average="macro", labels=np.unique(np.concatenate(
                   [y, model.predict(x, verbose=0).argmax(axis=1)])))
    assert logs["f2"] == pytest.approx(want, abs=1e-12)
    model.save(tmp_path / "m.npz")
    back = pynn.load_model(tmp_path / "m.npz")
    assert back.evaluate(x, y, verbose=0, return_dict=True)["f2"] == logs["f2"]


def test_mean_and_sum_track_values_for_a_loop_of_your_own(rng):
    """Keras' Mean and Sum (loss trackers of a training loop): weighted over every call
    since reset_state; compile's metrics take targets and predictions, so they are refused
    there by name."""
    values = [rng.normal(size=int(rng.integers(1, 9))) for _ in range(3)]
    weights = [rng.uniform(0, 2, size=len(v)) for v in values]
    mean, total = M.Mean(name="loss"), M.Sum()
    assert np.isnan(mean.result()) and total.result() == 0
    for v, w in zip(values, weights):
        mean.update_state(v, sample_weight=w)
        total.update_state(v, w)
    v, w = np.concatenate(values), np.concatenate(weights)
    assert mean.result() == pytest.approx((v * w).sum() / w.sum(), rel=1e-12)
    assert total.result() == pytest.approx((v * w).sum(), rel=1e-12)
    assert mean(5.0) == pytest.approx(((v * w).sum() + 5) / (w.sum() + 1), rel=1e-12)
    per_row = M.Mean()
    per_row.update_state(np.ones((3, 2)) * [[1], [2], [3]], sample_weight=[1, 0, 1])
    assert per_row.result() == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"sample_weight of shape \(2,\) does not fit "
                                         r"values of shape \(3,\)"):
        M.Mean().update_state([1.0, 2.0, 3.0], sample_weight=[1, 2])
    mean.reset_state()
    assert np.isnan(mean.result())
    # as Keras: a sample (row) counts once, its values reduced first; weights per sample
    for updates, want in [([(np.ones((2, 4)), None), (np.zeros((2, 1)), None)], 0.5),
                          ([([1.0, 2.0, 3.0], 2.0), ([10.0], None)], 28 / 6),
                          ([([1.0, 2.0, 3.0], [[1.0], [1.0], [1.0]])], 2.0)]:
        keras_mean = M.Mean()
        for values, weight in updates:
            keras_mean.update_state(values, sample_weight=weight)
        assert keras_mean.result() == pytest.approx(want, rel=1e-12)
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile("sgd", "mse", metrics=[M.Mean()])
    with pytest.raises(TypeError, match="Mean reduces the values you give its update_state"):
        model.fit(np.ones((4, 2)), np.ones(4), verbose=0)


def _brute_at(y, s, w, constrained, maximised, value):
    """Every threshold, by brute force: predicted positive when the score is >= it (and
    one above every score); the best `maximised` rate where `constrained` >= value."""
    best = None
    for t in [np.inf, *np.unique(s)]:
        pred = s >= t
        tp = np.sum(w * (pred & (y > 0)))
        fp = np.sum(w * (pred & (y <= 0)))
        pos, neg = np.sum(w * (y > 0)), np.sum(w * (y <= 0))
        with np.errstate(invalid="ignore", divide="ignore"):  # (a rate it is not asked for)
            rates = {"recall": tp / pos, "precision": tp / (tp + fp) if tp + fp > 0 else 0.0,
                     "specificity": 1 - fp / neg}
        if rates[constrained] >= value:
            best = rates[maximised] if best is None else max(best, rates[maximised])
    return 0.0 if best is None else best


@pytest.mark.parametrize("n", [3, 17, 129])
def test_rates_at_a_constraint_match_a_brute_force_reference(rng, n):
    """Keras' PrecisionAtRecall, RecallAtPrecision, SensitivityAtSpecificity and
    SpecificityAtSensitivity, exact: a threshold at every distinct score (ties included),
    weighted, in two batches, and on a class_id's column."""
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]  # both classes
    s = np.round(rng.random(n), 1)  # ties
    w = rng.uniform(0.1, 2, n)
    for cls, rates in [(M.PrecisionAtRecall, ("recall", "precision")),
                       (M.RecallAtPrecision, ("precision", "recall")),
                       (M.SensitivityAtSpecificity, ("specificity", "recall")),
                       (M.SpecificityAtSensitivity, ("recall", "specificity"))]:
        for value in (0.0, 0.5, float(rng.uniform(0.3, 0.95)), 1.0):
            metric = cls(value)
            metric.update_state(y[: n // 2], s[: n // 2], sample_weight=w[: n // 2])
            metric.update_state(y[n // 2:], s[n // 2:], sample_weight=w[n // 2:])
            assert metric.result() == pytest.approx(_brute_at(y, s, w, *rates, value),
                                                    abs=1e-12), (cls.__name__, value)
    classes = rng.integers(0, 3, n)
    classes[0] = 2  # (column 2 has a positive: its recall is defined)
    one_hot = np.eye(3)[classes]
    scores = rng.random((n, 3))
    column = M.PrecisionAtRecall(0.5, class_id=2)
    column.update_state(one_hot, scores)
    assert column.result() == pytest.approx(
        _brute_at(one_hot[:, 2], scores[:, 2], np.ones(n), "recall", "precision", 0.5),
        abs=1e-12)
    pooled = M.RecallAtPrecision(0.4)
    pooled.update_state(one_hot, scores)  # every output one label, as Keras
    assert pooled.result() == pytest.approx(_brute_at(
        one_hot.ravel(), scores.ravel(), np.ones(3 * n), "precision", "recall", 0.4),
        abs=1e-12)


def test_rates_at_a_constraint_arguments_and_files(rng, tmp_path):
    with pytest.raises(ValueError, match="recall"):
        M.PrecisionAtRecall(1.5)
    with pytest.raises(ValueError, match="class_id must be an output's index"):
        M.RecallAtPrecision(0.5, class_id=-1)
    no_positive = M.PrecisionAtRecall(0.5)
    no_positive.update_state(np.zeros(4), rng.random(4))
    assert np.isnan(no_positive.result())  # recall undefined (Keras: 0)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy",
                  metrics=[M.PrecisionAtRecall(0.5, name="p_at_r"),
                           M.SpecificityAtSensitivity(0.8)])
    x, y = rng.normal(size=(40, 3)).astype(np.float32), rng.integers(0, 2, 40)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    p = model.predict(x, verbose=0)[:, 0]
    assert logs["p_at_r"] == pytest.approx(
        _brute_at(y, p, np.ones(40), "recall", "precision", 0.5), abs=1e-9)
    model.save(tmp_path / "m.npz")
    back = pynn.load_model(tmp_path / "m.npz")
    assert back.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(logs)


# ---- from a user-testing pass against Keras 3 ----------------------------------------------
class _Flipped(pynn.metrics.BinaryAccuracy):
    """A subclass counting otherwise: the accuracy of 1 - y_pred."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, 1 - np.asarray(y_pred), sample_weight)


class _Scaled(pynn.metrics.MeanSquaredError):
    def result(self):
        return 100 * super().result()


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_a_subclassed_metric_counts_its_own_way_on_every_path(engine, rng):
    """Overriding update_state or result of pynn's metric classes: the native engine logged
    the base class's value (its function's), silently."""
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    pynn.set_seed(3)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy",
                  metrics=[_Flipped(name="flip"), "accuracy", _Scaled(name="mse100")])
    logs = model.fit(x, y, epochs=1, batch_size=64, verbose=0, engine=engine,
                     shuffle=False).history
    p = model.predict(x)  # (after the step: compare the metrics of evaluate's pass too)
    evaluated = model.evaluate(x, y, return_dict=True)
    assert evaluated["flip"] == pytest.approx(1 - evaluated["accuracy"], abs=1e-12)
    assert evaluated["mse100"] == pytest.approx(100 * np.mean((p - y) ** 2), rel=1e-5)
    assert logs["flip"][0] == pytest.approx(1 - logs["accuracy"][0], abs=1e-12)


def test_metrics_from_config_and_get_of_a_config():
    for metric in (pynn.metrics.AUC(num_thresholds=50, name="auc50"),
                   pynn.metrics.Precision(thresholds=0.3), pynn.metrics.F1Score(),
                   pynn.metrics.Mean(name="m"), pynn.metrics.R2Score()):
        again = type(metric).from_config(metric.get_config())
        assert type(again) is type(metric) and again.get_config() == metric.get_config()
        got = pynn.metrics.get(pynn.metrics.serialize(metric))
        assert type(got) is type(metric) and got.get_config() == metric.get_config()


def test_mean_metric_wrapper_takes_kerass_arguments(tmp_path):
    M = pynn.metrics
    wrapped = M.MeanMetricWrapper(M.binary_accuracy, name="ba7", threshold=0.7)
    wrapped.update_state(np.array([[1.0], [1.0], [0.0], [0.0]]),
                         np.array([[0.8], [0.6], [0.1], [0.75]]))
    assert wrapped.result() == 0.5  # (0.6 and 0.75 on the wrong side of 0.7)
    assert M.MeanMetricWrapper(M.binary_accuracy, "ba", "float32").direction == "up"
    with pytest.raises(ValueError, match="dtype"):
        M.MeanMetricWrapper(M.binary_accuracy, "ba", "float16")
    assert M.MeanMetricWrapper(M.mean_squared_error).direction == "down"
    assert M.MeanMetricWrapper(pynn.losses.Huber()).direction == "down"
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=[wrapped])
    model.save(tmp_path / "m.npz")
    again = pynn.load_model(tmp_path / "m.npz").metrics
    kept = next(m for m in again if m.name == "ba7")
    assert kept.fn_kwargs == {"threshold": 0.7}


def test_sparse_top_k_counts_a_padding_label_as_a_miss():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    labels = np.array([2, -1, 0])
    metric = pynn.metrics.SparseTopKCategoricalAccuracy(k=2)
    metric.update_state(labels, scores)
    assert metric.result() == pytest.approx(2 / 3)  # (label -1: a miss, as accuracy's)
    with pytest.raises(ValueError, match="integer"):
        pynn.metrics.sparse_top_k_categorical_accuracy(np.array([0.5, 1, 2]), scores, k=2)


def test_mean_metric_wrapper_round_trips_and_takes_pynns_old_positional_direction():
    M = pynn.metrics
    wrapped = M.MeanMetricWrapper(M.top_k_categorical_accuracy, name="top3", k=3)
    again = M.MeanMetricWrapper.from_config(wrapped.get_config())
    assert again.name == "top3" and again.fn_kwargs == {"k": 3} and again.direction == "up"
    with pytest.warns(DeprecationWarning, match="direction by keyword"):
        old = M.MeanMetricWrapper(M.mean_absolute_error, "mine", "up")
    assert old.direction == "up"


def test_a_subclass_that_counts_as_its_base_stays_on_the_native_engine():
    class Defaults(pynn.metrics.BinaryAccuracy):  # (only other defaults)
        def __init__(self, name="acc", dtype=None):
            super().__init__(name=name, dtype=dtype)

    assert pynn.metrics.engine_function(Defaults()) is pynn.metrics.binary_accuracy
    assert pynn.metrics.engine_function(_Flipped()) is not pynn.metrics.binary_accuracy
