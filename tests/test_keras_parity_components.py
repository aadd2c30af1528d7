"""Keras 3 parity of components: metrics named by the string given to compile, Keras' metric
classes (BinaryAccuracy, ...), F1Score(threshold=None), label smoothing and `reduction=` on the
losses, CamelCase initializer names, TruncatedNormal, Orthogonal and Identity. Values are
checked against float64 NumPy or scikit-learn, not against pynn's own functions."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from conftest import import_keras, requires_backend, requires_native

import pynn
from pynn import engine as engine_mod
from pynn import initializers as I
from pynn import losses as L
from pynn import metrics as M

skm = pytest.importorskip("sklearn.metrics")
cpu = requires_backend("cpu")


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _binary_model(seed, metrics, outputs=1):
    data = np.random.default_rng(seed)
    x = data.normal(size=(80, 6)).astype(np.float32)
    y = (x[:, :outputs] + 0.7 * data.normal(size=(80, outputs)) > 0).astype(np.float32)
    pynn.set_seed(3)
    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(outputs, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=metrics, backend="cpu")
    return model, x, y


# ---- 1. a metric given as a Keras class name keeps that name -------------------------------
@cpu
def test_keras_class_name_strings_name_their_metric(rng, tmp_path):
    """Keras 3's compile names a metric given as a string by that string: 'AUC' logs AUC and
    val_AUC (pynn logged auc); lower-case names already kept theirs."""
    names = ["AUC", "Precision", "BinaryAccuracy", "BinaryCrossentropy", "auc", "recall"]
    model, x, y = _binary_model(int(rng.integers(2**32)), names)
    h = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    assert set(h.history) == {"loss", *names, "val_loss", *(f"val_{n}" for n in names)}
    assert model.metrics_names == ["loss", *names]
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    assert list(logs) == ["loss", *names]
    p = model.predict(x, verbose=0).astype(np.float64)
    assert logs["AUC"] == pytest.approx(skm.roc_auc_score(y.ravel(), p.ravel()), abs=1e-9)
    assert logs["AUC"] == logs["auc"]
    assert logs["Precision"] == pytest.approx(
        skm.precision_score(y.ravel(), p.ravel() > 0.5, zero_division=0))
    assert logs["BinaryAccuracy"] == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    bce = -np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    assert logs["BinaryCrossentropy"] == pytest.approx(bce, rel=1e-5)
    # a saved model keeps the strings, so its logs keep the names
    model.save(tmp_path / "m.npz")
    assert list(pynn.load_model(tmp_path / "m.npz").evaluate(x, y, return_dict=True,
                                                             verbose=0)) == ["loss", *names]


@cpu
def test_keras_regression_metric_names(rng):
    data = np.random.default_rng(int(rng.integers(2**32)))
    x = data.normal(size=(64, 4)).astype(np.float32)
    y = (x @ data.normal(size=(4, 2)) + 0.3 * data.normal(size=(64, 2))).astype(np.float32)
    names = ["RootMeanSquaredError", "R2Score", "MeanSquaredError", "MeanAbsoluteError", "mse"]
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2)])
    model.compile(optimizer="adam", loss="mse", metrics=names, backend="cpu")
    h = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    assert set(h.history) == {"loss", *names, "val_loss", *(f"val_{n}" for n in names)}
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    err = model.predict(x, verbose=0).astype(np.float64) - y
    assert logs["RootMeanSquaredError"] == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-5)
    assert logs["MeanSquaredError"] == pytest.approx(np.mean(err ** 2), rel=1e-5)
    assert logs["MeanAbsoluteError"] == pytest.approx(np.mean(np.abs(err)), rel=1e-5)
    assert logs["R2Score"] == pytest.approx(skm.r2_score(y, y + err), rel=1e-5)


# ---- 2. Keras' metric classes --------------------------------------------------------------
CLASSES = [  # class, Keras' default name, float64 reference, case
    (M.BinaryAccuracy, "binary_accuracy",
     lambda y, p: np.mean((p > 0.5) == (y > 0.5)), "binary"),
    (M.CategoricalAccuracy, "categorical_accuracy",
     lambda y, p: np.mean(y.argmax(-1) == p.argmax(-1)), "onehot"),
    (M.SparseCategoricalAccuracy, "sparse_categorical_accuracy",
     lambda y, p: np.mean(y.ravel() == p.argmax(-1)), "labels"),
    (M.MeanSquaredError, "mean_squared_error", lambda y, p: np.mean((p - y) ** 2), "real"),
    (M.MeanAbsoluteError, "mean_absolute_error", lambda y, p: np.mean(np.abs(p - y)), "real"),
] if hasattr(M, "MeanAbsoluteError") and hasattr(M, "BinaryAccuracy") else []  # (collects
# without them: test_keras_metric_classes_exist then says what is missing)


def _case(rng, kind, n):
    if kind == "binary":
        return (rng.random((n, 3)) < 0.4).astype(np.float32), rng.random((n, 3))
    if kind == "real":
        return rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    labels = rng.integers(0, 4, n)
    p = _softmax(rng.normal(size=(n, 4)))
    return (np.eye(4)[labels] if kind == "onehot" else labels.reshape(-1, 1)), p


def test_keras_metric_classes_exist():
    for name in ("BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
                 "MeanSquaredError", "MeanAbsoluteError"):
        assert issubclass(getattr(M, name), M.Metric), name
        assert name in M.__all__


@pytest.mark.parametrize("cls,name,reference,kind", CLASSES,
                         ids=[c[1] for c in CLASSES])
def test_keras_metric_classes_accumulate_and_round_trip(rng, cls, name, reference, kind):
    m = cls()
    assert m.name == name and m.get_config()["name"] == name
    assert m.direction == ("up" if "accuracy" in name else "down")
    y1, p1 = _case(rng, kind, 37)
    y2, p2 = _case(rng, kind, 21)
    m.update_state(y1, p1)
    m.update_state(y2, p2)
    y, p = np.concatenate([y1, y2]), np.concatenate([p1, p2])
    assert m.result() == pytest.approx(reference(y.astype(np.float64), p), rel=1e-12)
    m.reset_state()
    assert np.isnan(m.result())
    again = M.deserialize(M.serialize(cls(name="mine")))
    assert type(again) is cls and again.name == "mine"
    assert type(pickle.loads(pickle.dumps(cls()))) is cls


def test_binary_accuracy_threshold(rng):
    y, p = _case(rng, "binary", 50)
    m = M.BinaryAccuracy(threshold=0.7)
    m.update_state(y, p)
    assert m.result() == pytest.approx(np.mean((p > 0.7) == (y > 0.5)))
    again = M.deserialize(M.serialize(m))
    assert again.threshold == 0.7 and again.get_config() == m.get_config()
    again = pickle.loads(pickle.dumps(m))
    again.reset_state()
    again.update_state(y, p)
    assert again.result() == m.result()
    for bad in (-0.1, 1.5, "x"):
        with pytest.raises(ValueError, match="threshold must be in"):
            M.BinaryAccuracy(threshold=bad)


def _native_engines(monkeypatch):
    made = []
    init = engine_mod.NativeEngine.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)
    monkeypatch.setattr(engine_mod.NativeEngine, "__init__", spy)
    return made


def _classifier(seed, loss, metrics, outputs=3):
    data = np.random.default_rng(seed)
    x = data.normal(size=(96, 5)).astype(np.float32)
    labels = (x[:, :outputs] + 0.5 * data.normal(size=(96, outputs))).argmax(1)
    pynn.set_seed(5)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8, activation="tanh"),
                             pynn.Dense(outputs, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss=loss, metrics=metrics,
                  backend="cpu")
    y = labels if loss.startswith("sparse") else np.eye(outputs)[labels].astype(np.float32)
    return model, x, y


@cpu
@pytest.mark.parametrize("loss,metrics", [
    ("categorical_crossentropy", lambda: [M.CategoricalAccuracy(), M.MeanSquaredError(),
                                          M.MeanAbsoluteError()]),
    ("sparse_categorical_crossentropy", lambda: [M.SparseCategoricalAccuracy()]),
])
def test_metric_classes_run_in_the_native_engine(rng, monkeypatch, loss, metrics):
    """As the names do: computed in C++ (no outputs handed back), the layer path's values."""
    seed = int(rng.integers(2**32))
    made = _native_engines(monkeypatch)
    histories = {}
    for engine in ("native", "layers"):
        model, x, y = _classifier(seed, loss, metrics())
        h = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0,
                      engine=engine)
        histories[engine] = h.history
    assert made and not made[0].needs_outputs
    assert len(made[0].metric_names) == len(metrics())
    names = [m.name for m in metrics()]
    assert set(histories["native"]) == {"loss", *names, "val_loss",
                                        *(f"val_{n}" for n in names)}
    for key, values in histories["native"].items():
        atol = 1.01 / 24 if key.endswith("accuracy") else 1e-5  # a float32 near-tie may flip
        np.testing.assert_allclose(values, histories["layers"][key], rtol=1e-3, atol=atol,
                                   err_msg=key)


@cpu
def test_metric_classes_compile_evaluate_save_and_load(rng, tmp_path):
    metrics = [M.BinaryAccuracy(), M.BinaryAccuracy(name="acc70", threshold=0.7),
               M.MeanSquaredError(), M.MeanAbsoluteError(), M.F1Score(threshold=None)]
    model, x, y = _binary_model(int(rng.integers(2**32)), metrics, outputs=1)
    h = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    names = ["binary_accuracy", "acc70", "mean_squared_error", "mean_absolute_error",
             "f1_score"]
    assert set(h.history) == {"loss", *names, "val_loss", *(f"val_{n}" for n in names)}
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    p = model.predict(x, verbose=0).astype(np.float64)
    assert logs["binary_accuracy"] == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))
    assert logs["acc70"] == pytest.approx(np.mean((p > 0.7) == (y > 0.5)))
    assert logs["mean_squared_error"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-5)
    assert logs["mean_absolute_error"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)
    assert logs["f1_score"] == pytest.approx(skm.f1_score(y.ravel(), p.ravel() > 0.5,
                                                          zero_division=0))
    for path in (tmp_path / "m.npz", tmp_path / "m.pkl"):
        if path.suffix == ".npz":
            model.save(path)
            loaded = pynn.load_model(path)
        else:
            loaded = pickle.loads(pickle.dumps(model))
        assert [type(m) for m in loaded._metric_specs] == [type(m) for m in metrics]
        assert loaded._metric_specs[1].threshold == 0.7
        assert loaded._metric_specs[4].threshold is None
        again = loaded.evaluate(x, y, return_dict=True, verbose=0)
        assert again.keys() == logs.keys()
        np.testing.assert_allclose(list(again.values()), list(logs.values()), rtol=1e-6)


def test_f1score_threshold_none_is_argmax_or_one_half(rng):
    """Keras' default F1Score(threshold=None) raised TypeError."""
    m = M.F1Score(threshold=None)
    assert m.threshold is None and m.get_config()["threshold"] is None
    labels = rng.integers(0, 4, 90)
    p = _softmax(rng.normal(size=(90, 4)) + np.eye(4)[labels])
    m.update_state(labels, p)
    want = skm.f1_score(labels, p.argmax(1), average=None, zero_division=0,
                        labels=np.arange(4))  # average=None: one per class
    assert m.result() == pytest.approx(want)
    y, s = rng.integers(0, 2, 70), rng.random(70)
    m = M.F1Score(threshold=None)
    m.update_state(y, s)
    assert m.result() == pytest.approx([skm.f1_score(y, s > 0.5, zero_division=0)])
    assert M.deserialize(M.serialize(m)).threshold is None
    for cls in (M.Precision, M.Recall):  # Keras' Precision(thresholds=None) means 0.5 too
        m = cls(threshold=None)
        m.update_state(y, s)
        ref = skm.precision_score if cls is M.Precision else skm.recall_score
        assert m.result() == pytest.approx(ref(y, s > 0.5, zero_division=0))
    with pytest.raises(ValueError, match="threshold must be in"):
        M.F1Score(threshold=2.0)


# ---- 3. losses: label smoothing and reduction ----------------------------------------------
def _bce_reference(y, p, from_logits):
    """Keras' binary cross-entropy, float64: mean over the outputs, then over the batch."""
    if from_logits:
        return np.mean(np.logaddexp(0.0, p) - y * p)
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def _cce_reference(y, p, from_logits):
    """Keras' categorical cross-entropy, float64 (probabilities normalised per row)."""
    if from_logits:
        z = p - p.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    else:
        logp = np.log(np.clip(p / p.sum(-1, keepdims=True), 1e-7, 1 - 1e-7))
    return -np.mean(np.sum(y * logp, axis=-1))


def _numeric_grad(f, p, h=1e-6):
    g = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        step = np.zeros_like(p)
        step[i] = h
        g[i] = (f(p + step) - f(p - step)) / (2 * h)
    return g


def _loss_case(rng, kind, from_logits, n=7, c=4):
    """Targets and predictions that favour them (so smoothing the targets raises the loss)."""
    if kind == "binary":
        y = (rng.random((n, c)) < 0.5).astype(np.float64)
        if from_logits:
            return y, (2 * y - 1) * rng.uniform(0.2, 3.0, size=(n, c))
        return y, np.where(y > 0, rng.uniform(0.55, 0.95, (n, c)), rng.uniform(0.05, 0.45, (n, c)))
    y = np.eye(c)[rng.integers(0, c, n)]
    if from_logits:
        return y, rng.uniform(-2, 2, size=(n, c)) + 4.5 * y
    return y, rng.uniform(0.05, 1.0, size=(n, c)) + y  # unnormalised, as a user's layer may


SMOOTHED = [(L.BinaryCrossentropy, "binary", _bce_reference),
            (L.CategoricalCrossentropy, "categorical", _cce_reference)]


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("cls,kind,reference", SMOOTHED, ids=["binary", "categorical"])
def test_label_smoothing_value_and_gradient(rng, float64_numpy, cls, kind, reference,
                                            from_logits):
    ls = float(rng.uniform(0.05, 0.5))
    loss = cls(from_logits=from_logits, label_smoothing=ls)
    assert loss.label_smoothing == ls
    y, p = _loss_case(rng, kind, from_logits)
    c = y.shape[1]
    smooth = y * (1 - ls) + (0.5 * ls if kind == "binary" else ls / c)  # Keras 3's formulas
    want = reference(smooth, p, from_logits)
    assert abs(want - reference(y, p, from_logits)) > 1e-3  # the smoothing matters here
    assert loss(y, p) == pytest.approx(want, rel=1e-12)  # a standalone call smooths too
    np.testing.assert_array_equal(loss.prepare_targets(y, (c,), np.float64), y)  # labels kept
    prepared = loss.prepare_targets(y, (c,), np.float64)
    np.testing.assert_allclose(loss.smooth_targets(prepared), smooth, rtol=1e-15)
    want_grad = _numeric_grad(lambda q: reference(smooth, q, from_logits), p)
    value, grad = loss.value_and_grad(float64_numpy, p, prepared)  # (it smooths the batch)
    assert value == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-9)
    if not from_logits:  # the fused path (a softmax/sigmoid output) from its logits
        z = np.log(p) if kind == "categorical" else np.log(p / (1 - p))
        value, grad = loss.logits_value_and_grad(float64_numpy, z, prepared)
        assert value == pytest.approx(reference(smooth, z, True), rel=1e-10)
        np.testing.assert_allclose(grad, _numeric_grad(lambda q: reference(smooth, q, True), z),
                                   rtol=1e-6, atol=1e-9)


@cpu
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("cls,kind,reference", SMOOTHED, ids=["binary", "categorical"])
def test_label_smoothing_on_the_cpu_backend(rng, cls, kind, reference, from_logits):
    b = pynn.get_backend("cpu")
    loss = cls(from_logits=from_logits, label_smoothing=0.3)
    y, p = _loss_case(rng, kind, from_logits, n=33, c=5)
    prepared = loss.prepare_targets(y, (5,), np.float32)
    smooth = y * 0.7 + (0.15 if kind == "binary" else 0.3 / 5)
    value, grad = loss.value_and_grad(b, b.asarray(p, np.float32), b.asarray(prepared,
                                                                             np.float32))
    p32 = p.astype(np.float32).astype(np.float64)
    assert value == pytest.approx(reference(smooth, p32, from_logits), rel=1e-5)
    want_grad = _numeric_grad(lambda q: reference(smooth, q, from_logits), p32)
    np.testing.assert_allclose(b.to_numpy(grad), want_grad, rtol=1e-4, atol=1e-6)


def test_label_smoothing_checks_and_round_trip():
    for cls in (L.BinaryCrossentropy, L.CategoricalCrossentropy):
        assert cls().label_smoothing == 0.0 and cls().get_config()["label_smoothing"] == 0.0
        loss = cls(from_logits=True, label_smoothing=0.25)
        again = L.get(L.serialize(loss))
        assert type(again) is cls and again.get_config() == loss.get_config()
        assert again.label_smoothing == 0.25 and again.from_logits
        assert cls(label_smoothing=1).label_smoothing == 1.0  # [0, 1] inclusive
        for bad in (-0.01, 1.01, float("nan"), "x", None):
            with pytest.raises(ValueError, match="label_smoothing must be in"):
                cls(label_smoothing=bad)
    # targets outside [0, 1] are refused before smoothing could hide them
    with pytest.raises(ValueError, match="targets must lie in"):
        L.BinaryCrossentropy(label_smoothing=0.5)(np.array([[1.6]]), np.array([[0.5]]))
    with pytest.raises(TypeError):  # integer labels: Keras has no smoothing there either
        L.SparseCategoricalCrossentropy(label_smoothing=0.1)
    assert L.SparseCategoricalCrossentropy(from_logits=True).get_config() == {"from_logits": True}


@pytest.mark.parametrize("cls", [L.MeanSquaredError, L.MeanAbsoluteError, L.Huber,
                                 L.BinaryCrossentropy, L.CategoricalCrossentropy,
                                 L.SparseCategoricalCrossentropy])
def test_losses_take_keras_reductions_and_refuse_others(cls):
    # (what each does: test_loss_reductions.py)
    for reduction in ("sum_over_batch_size", "sum", "none", None, "mean",
                      "mean_with_sample_weight"):
        assert cls(reduction=reduction).reduction == reduction
    for other in ("auto", "Sum", "batch"):
        with pytest.raises(ValueError, match="reduction must be one of"):
            cls(reduction=other)


def _smoothed_model(seed, loss, outputs):
    data = np.random.default_rng(seed)
    x = data.normal(size=(120, 6)).astype(np.float32)
    labels = (x[:, :max(outputs, 2)] + 0.5 * data.normal(size=(120, max(outputs, 2)))).argmax(1)
    y = (labels.reshape(-1, 1) if outputs == 1 else np.eye(outputs)[labels]).astype(np.float32)
    pynn.set_seed(7)
    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(10, activation="relu"),
                             pynn.Dense(outputs, activation="sigmoid" if outputs == 1
                                        else "softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.02), loss=loss, metrics=["accuracy"],
                  backend="cpu")
    return model, x, y


@cpu
@pytest.mark.parametrize("cls,outputs,reference", [
    (L.CategoricalCrossentropy, 3, _cce_reference), (L.BinaryCrossentropy, 1, _bce_reference)],
    ids=["categorical", "binary"])
def test_label_smoothing_trains_natively_as_on_the_layer_path(rng, tmp_path, cls, outputs,
                                                              reference):
    seed = int(rng.integers(2**32))
    runs = {}
    for engine in ("native", "layers"):
        model, x, y = _smoothed_model(seed, cls(label_smoothing=0.2), outputs)
        h = model.fit(x, y, epochs=4, batch_size=8, validation_split=0.25, verbose=0,
                      engine=engine)
        assert h.params["engine"] == engine
        runs[engine] = model, h.history
    (native, h_native), (layers, h_layers) = runs["native"], runs["layers"]
    assert h_native.keys() == h_layers.keys()
    for key in h_native:
        atol = 1.01 / 30 if key.endswith("accuracy") else 1e-5  # a float32 near-tie may flip
        np.testing.assert_allclose(h_native[key], h_layers[key], rtol=1e-3, atol=atol,
                                   err_msg=key)
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert h_native["loss"][-1] < h_native["loss"][0]
    # the loss is the smoothed one, smoothed once
    p = native.predict(x, verbose=0).astype(np.float64)
    smooth = y * 0.8 + (0.1 if outputs == 1 else 0.2 / outputs)
    logs = native.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(reference(smooth, p, False), rel=1e-4)
    # accuracy is read from the labels as given (their argmax / > 0.5 is the smoothed ones')
    assert logs["accuracy"] == pytest.approx(
        np.mean(p.argmax(1) == y.argmax(1)) if outputs > 1 else np.mean((p > 0.5) == (y > 0.5)))
    native.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert type(loaded.loss) is cls and loaded.loss.label_smoothing == 0.2
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(logs, rel=1e-6)


# ---- 4. initializers -----------------------------------------------------------------------
INITIALIZERS = ["Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "VarianceScaling",
                "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
                "LecunNormal", "TruncatedNormal", "Orthogonal", "Identity"]


@pytest.mark.parametrize("name", INITIALIZERS)
def test_initializers_by_class_name_and_snake_case(name):
    cls = getattr(I, name)
    assert type(I.get(name)) is cls
    snake = "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name).lstrip("_")
    assert type(I.get(snake)) is cls
    again = I.get(I.serialize(I.get(name)))
    assert type(again) is cls and again.get_config() == I.get(name).get_config()
    layer = pynn.Dense(4, kernel_initializer=name)
    assert type(layer.kernel_initializer) is cls
    # Keras 3's module attributes in snake case are the classes (he_normal(seed=1)), and a
    # class itself is taken as Keras takes it
    assert getattr(I, snake) is cls and type(I.get(cls)) is cls
    assert type(pynn.Dense(2, kernel_initializer=cls).kernel_initializer) is cls


def test_kerass_initializer_module_names_are_all_there():
    keras = import_keras()
    public = {n for n in dir(keras.initializers) if not n.startswith("_")}
    pynn_leaves_out = {"STFT", "STFTInitializer", "stft", "deserialize", "serialize", "get",
                       "Initializer"}
    missing = sorted(n for n in public - pynn_leaves_out if not hasattr(I, n))
    assert not missing
    assert I.OrthogonalInitializer is I.Orthogonal and I.IdentityInitializer is I.Identity
    np.testing.assert_array_equal(I.he_normal(seed=3)((4, 5)), I.HeNormal(seed=3)((4, 5)))


def test_unknown_initializer_names_still_fail():
    for bad in ("HeNormalX", "he-normal", "Initializer"):
        with pytest.raises(ValueError, match="unknown initializer"):
            I.get(bad)
    with pytest.raises(ValueError, match="cannot interpret"):  # (the base draws nothing)
        I.get(I.Initializer)


def test_a_function_is_an_initializer_as_in_keras(tmp_path):
    # Keras takes kernel_initializer=fn with fn(shape, dtype=None); its array is copied (the
    # function may keep it), its shape checked, and a file names it for custom_objects
    kept = np.arange(12, dtype=np.float32).reshape(3, 4)
    calls = []

    def from_table(shape, dtype=None):
        calls.append((shape, dtype))
        return kept

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, kernel_initializer=from_table)])
    assert calls == [((3, 4), "float32")]
    np.testing.assert_array_equal(model.get_weights()[0], kept)
    kept[:] = -1  # the function's array changes: the weight does not
    assert model.get_weights()[0][0, 1] == 1
    kept[:] = np.arange(12).reshape(3, 4)
    model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="custom_objects=.'from_table'"):
        pynn.load_model(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz", custom_objects={"from_table": from_table})
    assert loaded.layers[-1].kernel_initializer.fn is from_table
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
    with pytest.raises(ValueError, match=r"'from_table' returned an array of shape \(3, 4\) "
                                         r"for a weight of shape \(5, 4\)"):
        pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, kernel_initializer=from_table)])
    with pytest.raises(ValueError, match="'<lambda>' returned str"):
        pynn.Sequential([pynn.Input((3,)),
                         pynn.Dense(2, bias_initializer=lambda shape, dtype=None: "x")])
    ones = pynn.Sequential([pynn.Input((2,)), pynn.Dense(
        2, kernel_initializer=lambda shape, dtype=None: np.ones(shape))])
    np.testing.assert_array_equal(ones.get_weights()[0], np.ones((2, 2)))
    with pytest.raises(ValueError, match="cannot save.*a lambda lacks; define it with def"):
        ones.save(tmp_path / "lambda.npz")
    # a regularizer function cannot be differentiated here: said, not "cannot interpret"
    with pytest.raises(ValueError, match="no autodiff.*Regularizer subclass"):
        pynn.Dense(2, kernel_regularizer=lambda w: 0.01 * (w ** 2).sum())


def _seeded_behaviour(make, shape):
    """seed= repeats values and leaves pynn's generator alone; seed=None draws from it."""
    state = pynn.config.rng().bit_generator.state
    first = make(seed=11)(shape)
    assert pynn.config.rng().bit_generator.state == state
    np.testing.assert_array_equal(make(seed=11)(shape), first)
    assert not np.array_equal(make(seed=12)(shape), first)
    pynn.set_seed(4)
    a = make()(shape)
    assert not np.array_equal(make()(shape), a)
    pynn.set_seed(4)
    np.testing.assert_array_equal(make()(shape), a)
    return first


def test_truncated_normal(rng):
    scipy_stats = pytest.importorskip("scipy.stats")
    mean, std = float(rng.normal()), float(rng.uniform(0.01, 2))
    init = I.TruncatedNormal(mean=mean, stddev=std, seed=int(rng.integers(2**32)))
    w = init((400, 500), "float64")
    assert w.shape == (400, 500) and w.dtype == np.float64
    assert np.abs(w - mean).max() <= 2 * std
    # Keras' truncation is not rescaled: the spread of a unit normal cut at +-2, 0.8796
    assert w.std() == pytest.approx(0.8796256610342398 * std, rel=0.01)
    assert w.mean() == pytest.approx(mean, abs=0.01 * std)
    sample = w.ravel()[:20000]
    assert scipy_stats.kstest(sample, scipy_stats.truncnorm(-2, 2, loc=mean,
                                                            scale=std).cdf).pvalue > 1e-4
    assert I.TruncatedNormal()((10,)).dtype == np.float32
    assert I.TruncatedNormal().get_config() == {"mean": 0.0, "stddev": 0.05}
    _seeded_behaviour(lambda seed=None: I.TruncatedNormal(0.5, 0.1, seed=seed), (30, 20))
    again = I.get(I.serialize(I.TruncatedNormal(0.5, 0.1, seed=9)))
    np.testing.assert_array_equal(again((30, 20)), I.TruncatedNormal(0.5, 0.1, seed=9)((30, 20)))
    assert type(I.get("truncated_normal")) is I.TruncatedNormal


@pytest.mark.parametrize("shape", [(40, 12), (12, 40), (9, 9), (3, 4, 10), (2, 3, 4, 5)])
def test_orthogonal(rng, shape):
    gain = float(rng.uniform(0.5, 2))
    seed = int(rng.integers(2**32))
    w = I.Orthogonal(gain=gain, seed=seed)(shape, "float64")
    assert w.shape == shape and w.dtype == np.float64
    flat = w.reshape(-1, shape[-1])
    rows, cols = flat.shape
    small = flat if rows >= cols else flat.T  # its columns are orthonormal (times gain)
    np.testing.assert_allclose(small.T @ small, gain ** 2 * np.eye(min(rows, cols)),
                               atol=1e-12)
    # Keras 3: Q of a standard normal matrix's QR, the R it pairs with having a positive
    # diagonal; that R = Q^T A is upper triangular is checked, not recomputed by a QR
    a = np.random.default_rng(seed).normal(size=(max(rows, cols), min(rows, cols)))
    r = small.T @ a / gain
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-10)
    assert (np.diag(r) > 0).all()
    np.testing.assert_allclose(small @ r, gain * a, atol=1e-10)


def test_orthogonal_is_seeded_saved_and_refuses_vectors(tmp_path):
    _seeded_behaviour(lambda seed=None: I.Orthogonal(seed=seed), (8, 6))
    init = I.Orthogonal(gain=1.5, seed=3)
    assert init.get_config() == {"gain": 1.5, "seed": 3}
    assert I.Orthogonal().get_config() == {"gain": 1.0}
    np.testing.assert_array_equal(I.get(I.serialize(init))((8, 6)), init((8, 6)))
    assert init((8, 6)).dtype == np.float32
    with pytest.raises(ValueError, match="2 or more dimensions"):
        I.Orthogonal()((5,))
    model = pynn.Sequential([pynn.Input((8,)), pynn.Dense(6, kernel_initializer=init)])
    np.testing.assert_array_equal(model.get_weights()[0], init((8, 6)))
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz").layers[-1].kernel_initializer
    assert type(loaded) is I.Orthogonal and loaded.get_config() == init.get_config()
    keras_file = {"class_name": "OrthogonalInitializer", "config": {"gain": 2.0, "seed": 1}}
    assert I.get(keras_file).get_config() == {"gain": 2.0, "seed": 1}


@pytest.mark.parametrize("shape", [(4, 4), (3, 6), (6, 3)])
def test_identity(shape):
    np.testing.assert_array_equal(I.Identity()(shape), np.eye(*shape))
    w = I.Identity(gain=0.25)(shape, "float64")
    assert w.dtype == np.float64
    np.testing.assert_array_equal(w, 0.25 * np.eye(*shape))
    again = I.get(I.serialize(I.Identity(gain=0.25)))
    assert type(again) is I.Identity and again.get_config() == {"gain": 0.25}
    assert I.get({"class_name": "IdentityInitializer", "config": {"gain": 3.0}}).gain == 3.0


def test_identity_refuses_other_than_matrices():
    for shape in ((4,), (2, 2, 2)):
        with pytest.raises(ValueError, match="2-D"):
            I.Identity()(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(5, kernel_initializer="identity")])
    np.testing.assert_array_equal(model.get_weights()[0], np.eye(5))


def test_label_smoothing_leaves_class_weights_their_labels(rng):
    # class weights are read from the labels as given, then the loss smooths its targets
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    runs = []
    for ls, class_weight in ((0.2, {0: 1.0, 1: 3.0}), (0.2, None)):
        pynn.set_seed(3)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1, activation="sigmoid")])
        model.compile("sgd", pynn.losses.BinaryCrossentropy(label_smoothing=ls))
        runs.append(model.fit(x, y, epochs=2, batch_size=8, verbose=0,
                              class_weight=class_weight).history["loss"])
    assert runs[0] != runs[1]  # the weights applied (a ValueError before)


# ---- from a mutation audit: behaviour the other tests let change --------------------------
@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_label_smoothing_trains_as_on_smoothed_targets(rng, engine):
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    runs = []
    for loss, targets in ((L.BinaryCrossentropy(label_smoothing=0.4), y),
                          (L.BinaryCrossentropy(), y * 0.6 + 0.2)):
        pynn.set_seed(1)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1, activation="sigmoid")])
        model.compile(pynn.optimizers.SGD(0.5), loss)
        runs.append(model.fit(x, targets, epochs=3, batch_size=16, shuffle=False, verbose=0,
                              engine=engine).history["loss"])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-6)


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
@pytest.mark.parametrize("cls,outputs", [(L.CategoricalCrossentropy, 3),
                                         (L.BinaryCrossentropy, 1)], ids=["cce", "bce"])
def test_label_smoothing_is_the_losss_own_the_metrics_read_the_labels(rng, engine, cls,
                                                                        outputs):
    """As Keras, the loss smooths its targets and the metrics see the labels as given (they
    saw the smoothed targets: an MSE against them, a hinge metric refusing 0.1)."""
    x = rng.normal(size=(24, 4)).astype(np.float32)
    labels = rng.integers(0, max(outputs, 2), 24)
    y = np.eye(outputs)[labels] if outputs > 1 else labels[:, None].astype(np.float64)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(
        outputs, activation="softmax" if outputs > 1 else "sigmoid")])
    loss = cls(label_smoothing=0.3)
    model.compile("sgd", loss, metrics=["mse", "accuracy", pynn.metrics.Hinge()])

    def mse(p):
        return np.mean((p.astype(np.float64) - y) ** 2)

    before = model.predict(x, verbose=0)
    h = model.fit(x, y, epochs=1, batch_size=24, validation_data=(x, y), verbose=0,
                  engine=engine).history  # one batch: its metrics are of `before`
    after = model.predict(x, verbose=0)
    assert h["mse"][0] == pytest.approx(mse(before), rel=1e-5)
    assert h["hinge"][0] == pytest.approx(pynn.metrics.Hinge()(y, before), rel=1e-5)
    assert h["loss"][0] == pytest.approx(loss(y, before), rel=1e-5)  # (smoothed)
    assert h["val_mse"][0] == pytest.approx(mse(after), rel=1e-5)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["mse"] == pytest.approx(mse(after), rel=1e-5)
    assert logs["loss"] == pytest.approx(loss(y, after), rel=1e-5)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["mse"] == pytest.approx(mse(after), rel=1e-5)
    # metrics the engine computes itself get the labels as given too, and another batch's
    # targets are smoothed afresh (not the first batch's, kept)
    model.compile("sgd", loss, metrics=["mse"])
    other = y[::-1].copy()
    before = model.predict(x, verbose=0)
    logs = model.fit(x, other, epochs=1, batch_size=24, verbose=0, engine=engine).history
    assert logs["mse"][0] == pytest.approx(np.mean((before.astype(np.float64) - other) ** 2),
                                           rel=1e-5)
    model.train_on_batch(x, y)  # (train_on_batch keeps its engine for the next call)
    before = model.predict(x, verbose=0)
    assert model.train_on_batch(x, other, return_dict=True)["loss"] == pytest.approx(
        loss(other, before), rel=1e-5)


def test_probability_cross_entropy_clips_at_kerass_epsilon():
    # log(1e-7): Keras' clip of the probabilities (a wrong class predicted with certainty)
    assert L.CategoricalCrossentropy()(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == \
        pytest.approx(-np.log(1e-7), rel=1e-5)
    assert L.BinaryCrossentropy()(np.array([[1.0]]), np.array([[0.0]])) == \
        pytest.approx(-np.log(1e-7), rel=1e-5)


def test_unit_interval_arguments_take_their_end_points():
    assert L.BinaryCrossentropy(label_smoothing=1.0).label_smoothing == 1.0
    assert pynn.metrics.BinaryAccuracy(threshold=1.0).threshold == 1.0
    assert pynn.metrics.BinaryAccuracy(threshold=0.0).threshold == 0.0


@pytest.mark.parametrize("make,shape,limit,kind", [
    # (uniform: the largest |w| is the limit; normal: the standard deviation)
    (lambda: I.GlorotUniform(seed=1), (300, 100), np.sqrt(6 / 400), "uniform"),
    (lambda: I.HeUniform(seed=1), (300, 100), np.sqrt(6 / 300), "uniform"),
    (lambda: I.LecunUniform(seed=1), (300, 100), np.sqrt(3 / 300), "uniform"),
    # a kernel of 3 dimensions: its fans count the receptive field (3)
    (lambda: I.GlorotUniform(seed=1), (3, 200, 100), np.sqrt(6 / 900), "uniform"),
    (lambda: I.HeNormal(seed=1), (400, 400), np.sqrt(2 / 400), "normal"),
    (lambda: I.GlorotNormal(seed=1), (300, 500), np.sqrt(2 / 800), "normal"),
    (lambda: I.LecunNormal(seed=1), (400, 400), np.sqrt(1 / 400), "normal"),
    (lambda: I.VarianceScaling(2.0, "fan_avg", "uniform", seed=1), (300, 100),
     np.sqrt(3 * 2.0 / 200), "uniform"),
])
def test_initializers_draw_kerass_distributions(make, shape, limit, kind):
    w = np.asarray(make()(shape), dtype=np.float64)
    if kind == "uniform":
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
        assert abs(w.std() - limit / np.sqrt(3)) < 0.02 * limit
    else:  # a normal truncated at 2 standard deviations, rescaled to the std asked for
        assert abs(w.std() - limit) < 0.02 * limit
        assert np.abs(w).max() <= 2 * limit / 0.87962566103423978 + 1e-12


def test_truncated_normal_is_cut_at_two_standard_deviations():
    w = np.asarray(I.TruncatedNormal(stddev=1.0, seed=0)((100000,)))
    assert np.abs(w).max() <= 2.0 and np.abs(w).max() > 1.99
    for seed in range(300):  # small draws too (their first redraw test is the same)
        assert np.abs(np.asarray(I.TruncatedNormal(stddev=1.0, seed=seed)((10,)))).max() <= 2


def test_keras_initializer_and_regularizer_calls_port():
    """Calls a ported Keras 3 program makes: initializer configs carrying Keras 3.15's
    input_axes/output_axes (None), VarianceScaling(distribution="normal") (Keras 2's name of
    the truncated normal) or a capitalised name, from_config and clone, calling a regularizer
    on a weight, and None for a regularizer's default factor."""
    from pynn import regularizers as R

    he = I.get({"class_name": "HeNormal",
                "config": {"seed": 1, "input_axes": None, "output_axes": None}})
    np.testing.assert_array_equal(he((4, 3)), I.HeNormal(seed=1)((4, 3)))
    with pytest.raises(NotImplementedError, match="input_axes/output_axes other than None"):
        I.VarianceScaling(input_axes=[0])
    normal = I.VarianceScaling(2.0, "fan_in", "normal", seed=5)
    assert normal.distribution == "truncated_normal"
    assert abs(normal((400, 300)).std() - np.sqrt(2.0 / 400)) < 0.003
    assert I.VarianceScaling(distribution="Uniform").distribution == "uniform"
    init = I.RandomUniform(-0.2, 0.3, seed=7)
    np.testing.assert_array_equal(I.RandomUniform.from_config(init.get_config())((3, 2)),
                                  init.clone()((3, 2)))
    w = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    assert R.L2(0.1)(w) == pytest.approx(0.1 * float((w * w).sum()))
    assert R.L1L2(0.1, 0.2)(w) == pytest.approx(0.1 * float(np.abs(w).sum())
                                                 + 0.2 * float((w * w).sum()))
    assert R.L2(None).l2 == 0.01 and R.L1(None).l1 == 0.01
    assert R.L1L2(None, 0.2).get_config() == {"l1": 0.0, "l2": 0.2}
    assert R.L1L2.from_config({"l1": 0.1, "l2": 0.2}) == R.L1L2(0.1, 0.2)


def test_names_stored_by_a_layer_of_your_own_stay_names():
    # layer.kernel_regularizer = "l2" is converted on pynn's layers (and subclasses of
    # them); a layer of your own that keeps a name (for its own get_config, or resolved in
    # build) keeps it as it stored it
    class Own(pynn.layers.Layer):
        def __init__(self, kernel_initializer="he_normal", **kwargs):
            super().__init__(**kwargs)
            self.kernel_initializer = kernel_initializer
            self.bias_initializer = "my_ramp"  # a name of its own, resolved later

        def get_config(self):
            return {**super().get_config(), "kernel_initializer": self.kernel_initializer}

        def forward(self, x, training=False, logits=False):
            return x

    own = Own()
    assert own.kernel_initializer == "he_normal" and own.bias_initializer == "my_ramp"
    model = pynn.Sequential([pynn.Input((2,)), own])
    import copy

    copy.deepcopy(model)  # (its config is JSON)

    class MyDense(pynn.Dense):
        pass

    layer = MyDense(2)
    layer.kernel_regularizer = "l2"
    assert layer.kernel_regularizer == pynn.regularizers.L2(0.01)


def test_a_function_initializer_clones():
    def table(shape, dtype=None):
        return np.arange(np.prod(shape)).reshape(shape)

    init = I.get(table)
    np.testing.assert_array_equal(init.clone()((2, 2)), init((2, 2)))


@requires_native
@pytest.mark.parametrize("cls", [L.CategoricalCrossentropy, L.BinaryCrossentropy])
def test_label_smoothing_of_a_refilled_target_buffer(rng, cls):
    """A generator refilling one target array (and train_on_batch given one): the native
    engine smoothed a target array once and kept it by identity, so every later batch
    trained on the first batch's targets; the layer path and fresh arrays did not."""
    x = rng.normal(size=(48, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 48)
    y = np.eye(3)[labels] if cls is L.CategoricalCrossentropy else \
        (rng.random((48, 3)) > 0.5).astype(np.float64)

    def refilled():
        xb, yb = np.empty((8, 4), np.float32), np.empty((8, 3), np.float32)  # (as trained)
        for i in range(0, 48, 8):
            xb[:], yb[:] = x[i:i + 8], y[i:i + 8]
            yield xb, yb

    runs = {}
    for engine in ("native", "layers"):
        pynn.set_seed(4)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax"
                                 if cls is L.CategoricalCrossentropy else "sigmoid")])
        model.compile(pynn.optimizers.SGD(0.5), cls(label_smoothing=0.3))
        model.fit(refilled(), epochs=1, verbose=0, engine=engine)
        assert model.history.params["engine"] == engine
        runs[engine] = model.get_weights()
    for a, b in zip(runs["native"], runs["layers"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: pynn.initializers.HeNormal(seed=0),
                                  lambda: pynn.initializers.GlorotUniform(seed=0),
                                  lambda: pynn.initializers.RandomNormal(seed=0),
                                  lambda: pynn.initializers.RandomUniform(seed=0),
                                  lambda: pynn.initializers.TruncatedNormal(seed=0),
                                  lambda: pynn.initializers.Orthogonal(seed=0)])
def test_random_initializers_refuse_integer_dtypes(make):
    """Random values cast to int32 were all zeros, silently; Keras refuses such a dtype."""
    init = make()
    with pytest.raises(ValueError, match="expected a float dtype, got int32"):
        init((4, 3), dtype="int32")
    for dtype in ("float32", np.float64):
        values = init((4, 3), dtype=dtype)
        assert values.dtype == np.dtype(dtype) and np.any(values != 0)
    assert np.array_equal(pynn.initializers.Zeros()((2, 2), dtype="int32"), np.zeros((2, 2)))


def test_a_spec_without_config_arguments_and_a_scalar_operand():
    """{'class_name': ..., 'config': None} met Python's 'argument after ** must be a
    mapping'; ops.gemm called a scalar operand 'shape (1,)'."""
    assert isinstance(pynn.initializers.get({"class_name": "HeNormal", "config": None}),
                      pynn.initializers.HeNormal)
    assert pynn.optimizers.get({"class_name": "Adam", "config": None}).learning_rate == 0.001
    assert isinstance(pynn.metrics.deserialize({"class_name": "AUC", "config": None}),
                      pynn.metrics.AUC)
    with pytest.raises(TypeError, match="initializer 'HeNormal': its config must be a dict"):
        pynn.initializers.get({"class_name": "HeNormal", "config": [1]})
    one = np.ones((1, 1), np.float32)
    for scalar in (2.0, np.float32(2), np.array(2.0)):
        with pytest.raises(ValueError, match="b must be 2-D, got a scalar"):
            pynn.ops.gemm(one, scalar)
