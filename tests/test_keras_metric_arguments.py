"""Keras 3 metric API that a port meets: custom metrics written as Keras' guide writes them
(add_variable), Keras' keyword arguments of Precision/Recall/F1Score/AUC (PR AUC included),
the confusion counts, top-k accuracy and per-sample metric functions. Each behaviour is
checked against NumPy, scikit-learn or a hand value, and against Keras where it is installed."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from conftest import import_keras, requires_native

import pynn
from pynn import metrics as M

skm = pytest.importorskip("sklearn.metrics")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _classes(rng, n, c):
    labels = rng.integers(0, c, n)
    return labels, _softmax(rng.normal(size=(n, c)) + 1.2 * np.eye(c)[labels])


def _sk(fn, *args, **kwargs):
    with warnings.catch_warnings():  # ill-defined values: scikit-learn warns, both count 0
        warnings.simplefilter("ignore")
        return fn(*args, zero_division=0, **kwargs)


def _keras_result(metric, *batches):
    for y, p in batches:
        metric.update_state(np.asarray(y, np.float32), np.asarray(p, np.float32))
    result = np.asarray(metric.result(), dtype=np.float64)
    return float(result) if result.ndim == 0 else result  # (per class: F1Score(None))


# ---- 1. custom metrics as Keras' guide writes them ---------------------------------------
class CategoricalTruePositives(M.Metric):
    """keras.io, "Training & evaluation with the built-in methods", in NumPy."""

    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.argmax(y_pred, axis=1).reshape(-1, 1)
        values = (np.asarray(y_true).astype("int32").reshape(-1, 1) == y_pred)
        values = values.astype("float32")
        if sample_weight is not None:
            values = values * np.asarray(sample_weight, "float32").reshape(-1, 1)
        self.true_positives.assign_add(np.sum(values))

    def result(self):
        return self.true_positives.value

    def reset_state(self):
        self.true_positives.assign(0.0)


class TruePositiveRate(M.Metric):
    """Two variables, the base reset_state, a result computed from the variables."""

    def __init__(self, name="tp_rate", **kwargs):
        super().__init__(name=name, **kwargs)
        self.tp = self.add_variable(name="tp")
        self.pos = self.add_variable(shape=(), initializer="zeros", name="pos")

    def update_state(self, y_true, y_pred, sample_weight=None):
        t, p = np.ravel(y_true) > 0.5, np.ravel(y_pred) > 0.5
        self.tp.assign_add(np.sum(t & p))
        self.pos.assign(self.pos + np.sum(t))

    def result(self):
        return self.tp / self.pos


class PlainAttributes(M.Metric):
    """State in plain attributes, set by its own reset_state (as pynn always allowed)."""

    def reset_state(self):
        self.right = 0
        self.seen = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.right += int(np.sum(np.argmax(y_pred, axis=1) == np.ravel(y_true)))
        self.seen += len(y_pred)

    def result(self):
        return self.right / max(self.seen, 1)


def test_guide_metric_accumulates_resets_and_copies(rng):
    # super().__init__ called the subclass's reset_state before its variables existed:
    # AttributeError; and Metric had no add_variable.
    m = CategoricalTruePositives()
    assert m.name == "categorical_true_positives" and m.variables == [m.true_positives]
    labels, p = _classes(rng, 40, 3)
    m.update_state(labels[:25], p[:25])
    m.update_state(labels[25:], p[25:], sample_weight=None)
    want = np.sum(p.argmax(1) == labels)
    assert float(m.result()) == want
    fresh = M.fresh_copy(m)
    assert float(fresh.result()) == 0.0 and float(m.result()) == want  # its own variable
    m.reset_state()
    assert float(m.result()) == 0.0
    r = TruePositiveRate()
    y, s = rng.integers(0, 2, 30), rng.random(30)
    y[0] = 1
    r.update_state(y, s)
    assert float(r.result()) == pytest.approx(np.sum((y == 1) & (s > 0.5)) / np.sum(y))
    r.reset_state()  # the base one: every variable back to its initial value
    assert [float(v) for v in r.variables] == [0.0, 0.0]


def test_metric_variable_acts_as_its_array():
    m = M.Metric(name="holder")
    v = m.add_variable(shape=(2,), initializer=1.5, dtype="float32", name="v")
    ones = m.add_variable(shape=(), initializer="ones")
    assert v.dtype == np.float32 and v.shape == (2,) and v.name == "v"
    np.testing.assert_array_equal(np.asarray(v), [1.5, 1.5])
    v.assign([1.0, 2.0])
    v.assign_add(1.0)
    v.assign_sub(np.array([0.5, 0.5]))
    np.testing.assert_array_equal(v.numpy(), [1.5, 2.5])
    assert isinstance(v.value, np.ndarray)
    np.testing.assert_array_equal(v + 1, [2.5, 3.5])
    np.testing.assert_array_equal(1 - v, [-0.5, -1.5])
    np.testing.assert_array_equal(v * v, [2.25, 6.25])
    np.testing.assert_array_equal(v / ones, [1.5, 2.5])
    np.testing.assert_array_equal(v > 2, [False, True])
    np.testing.assert_array_equal(-v, [-1.5, -2.5])
    assert float(ones) == 1.0 and float(ones / (ones + ones)) == 0.5 and ones == 1
    ones += 2  # in place: the metric still holds this variable
    assert m.variables[1] is ones and float(ones) == 3.0
    m.reset_state()
    np.testing.assert_array_equal(v.numpy(), [1.5, 1.5])  # the initial value, not zeros
    assert float(ones) == 1.0
    with pytest.raises(ValueError, match=r"Metric.add_variable: initializer .*'glorot'"):
        m.add_variable(initializer="glorot")
    with pytest.raises(ValueError, match=r"variable 'v' has shape \(2,\)"):
        v.assign(np.zeros(3))


def test_subclasses_that_override_reset_state_work_before_any_reset(rng):
    """A subclass's own reset_state that needs what its __init__ makes later is skipped by
    the base __init__ (its AttributeError ignored): a subclass of pynn's Precision that
    overrides it (calling super) still accumulates from the start; one that keeps its state
    in plain attributes set by reset_state alone (pynn's earlier docs) works standalone."""
    class PlainState(M.Metric):
        def reset_state(self):
            self.total = 0.0

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.total += float(np.sum(y_pred))

        def result(self):
            return self.total

    plain = PlainState()
    plain.update_state([1.0], [2.5])
    assert plain.result() == 2.5

    class Counted(M.Precision):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.resets = 0

        def reset_state(self):
            super().reset_state()
            self.resets += 1

    y, s = rng.integers(0, 2, 40), rng.random(40)
    m = Counted()
    assert m.resets == 0
    assert m(y, s) == pytest.approx(_sk(skm.precision_score, y, s > 0.5))
    m.reset_state()
    assert m.resets == 1 and np.isnan(m.result())

    class OlderGuide(M.Metric):  # Keras 2's add_weight, in its argument order
        def __init__(self):
            super().__init__(name="older")
            self.total = self.add_weight((), None, "float32", "total")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.total.assign_add(np.sum(y_pred))

        def result(self):
            return self.total

    m = OlderGuide()
    m.update_state(y, s)
    assert m.total.name == "total" and float(m.result()) == pytest.approx(s.sum(), rel=1e-6)
    assert float(M.fresh_copy(m).result()) == 0.0 and float(m.result()) > 0


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
def test_guide_and_plain_metrics_in_compile_fit_and_evaluate(rng, engine):
    x = rng.normal(size=(90, 4)).astype(np.float32)
    y = np.digitize(x[:, 0], [-0.4, 0.4])
    x_val, y_val = x[:30], y[:30]
    pynn.set_seed(int(rng.integers(1 << 30)))
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax")])
    # SGD(0): the weights stay, so every epoch's counts are those of model.predict
    model.compile(optimizer=pynn.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy",
                  metrics=[CategoricalTruePositives(), PlainAttributes(name="plain")])
    history = model.fit(x, y, epochs=2, batch_size=16, validation_data=(x_val, y_val),
                        verbose=0, engine=engine).history
    right = model.predict(x, verbose=0).argmax(1) == y
    assert history["categorical_true_positives"] == [float(right.sum())] * 2
    assert history["val_categorical_true_positives"] == [float(right[:30].sum())] * 2
    np.testing.assert_allclose(history["plain"], right.mean())
    np.testing.assert_allclose(history["val_plain"], right[:30].mean())
    logs = model.evaluate(x, y, batch_size=7, return_dict=True, verbose=0)
    assert logs["categorical_true_positives"] == right.sum()
    assert logs["plain"] == pytest.approx(right.mean())
    plain = M.fresh_copy(PlainAttributes())
    plain.update_state(y, model.predict(x, verbose=0))
    assert plain.result() == pytest.approx(right.mean())


# ---- 2. Keras' keyword arguments -----------------------------------------------------------
def test_precision_and_recall_take_thresholds_class_id_and_refuse_top_k(rng):
    y, s = rng.integers(0, 2, 80), rng.random(80)
    for cls, ref in ((M.Precision, skm.precision_score), (M.Recall, skm.recall_score)):
        for thresholds in (0.3, [0.3], (0.3,)):
            m = cls(thresholds=thresholds)
            assert m(y, s) == pytest.approx(_sk(ref, y, s > 0.3)) and m.threshold == 0.3
        with pytest.raises(NotImplementedError, match=rf"{cls.__name__}: thresholds="):
            cls(thresholds=[0.3, 0.6])
        with pytest.raises(NotImplementedError, match=rf"{cls.__name__}: top_k=2"):
            cls(top_k=2)
        with pytest.raises(ValueError, match=rf"{cls.__name__}: class_id"):
            cls(class_id=-1)
        labels, p = _classes(rng, 120, 4)
        for k in range(4):
            want = _sk(ref, labels == k, p[:, k] > 0.4)
            for targets in (labels, labels.reshape(-1, 1), np.eye(4)[labels]):
                m = cls(thresholds=0.4, class_id=k)
                m.update_state(targets[:50], p[:50])
                m.update_state(targets[50:], p[50:])
                assert m.result() == pytest.approx(want), (cls, k, targets.shape)
        with pytest.raises(ValueError, match=r"class_id=4 needs predictions of shape \(N, C\)"):
            cls(class_id=4)(labels, p)


def test_precision_and_recall_class_id_match_keras(rng):
    keras = import_keras()
    labels, p = _classes(rng, 150, 3)
    onehot = np.eye(3)[labels]
    for cls in ("Precision", "Recall"):
        for k in range(3):
            want = _keras_result(getattr(keras.metrics, cls)(thresholds=0.35, class_id=k),
                                 (onehot, p))
            assert getattr(M, cls)(thresholds=0.35, class_id=k)(onehot, p) == \
                pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("average", [None, "macro", "micro", "weighted"])
def test_f1score_average_matches_sklearn(rng, average):
    for c in (3, 6):
        labels, p = _classes(rng, 200, c)
        labels[:3] = 0  # a rare class, so "weighted" differs from "macro"
        hard = p.argmax(1)
        present = np.union1d(labels, hard)  # sklearn's classes (pynn's macro)
        want = _sk(skm.f1_score, labels, hard, average=average or "macro", labels=present)
        # None: Keras' one value per class (every column, 0 for one never seen), and the
        # macro mean in the logs (which hold one number)
        per_class = _sk(skm.f1_score, labels, hard, average=None, labels=np.arange(c))
        for targets in (labels, np.eye(c)[labels]):
            m = M.F1Score(average=average)
            m.update_state(targets[:70], p[:70])
            m.update_state(targets[70:], p[70:])
            assert m._logged_result() == pytest.approx(want), average
            if average is None:
                assert m.result() == pytest.approx(per_class)
            else:
                assert m.result() == pytest.approx(want), average
        assert M.f1_score(labels, p, average=average) == pytest.approx(want)
    y, s = rng.integers(0, 2, 60), rng.random(60)  # one output: its class alone
    one = _sk(skm.f1_score, y, s > 0.5)
    assert M.F1Score(average=average)(y, s) == pytest.approx([one] if average is None else one)
    with pytest.raises(ValueError, match="F1Score: average must be one of"):
        M.F1Score(average="samples")


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_f1score_default_logs_the_macro_mean_of_its_classes(rng, engine):
    """F1Score() (Keras' average=None) gave the macro mean from result() too; Keras' is one
    value per class, and pynn's logs, one number per metric, take their macro mean."""
    x = rng.normal(size=(90, 5)).astype(np.float32)
    y = np.eye(3)[rng.integers(0, 3, 90)]
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(3, activation="softmax")])
    f1 = M.F1Score()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=[f1])
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, engine=engine)
    per_class = f1.result()
    hard = model.predict(x, verbose=0).argmax(1)
    want = _sk(skm.f1_score, y.argmax(1), hard, average=None, labels=np.arange(3))
    assert per_class.shape == (3,)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert f1.result() == pytest.approx(want)
    assert logs["f1_score"] == pytest.approx(_sk(skm.f1_score, y.argmax(1), hard,
                                                 average="macro",
                                                 labels=np.union1d(y.argmax(1), hard)))
    assert all(isinstance(v, float) for v in history.history["f1_score"])


def test_an_f1score_subclass_logs_its_own_result(rng):
    # the logs took F1Score's macro mean past a subclass's result()
    class Percent(M.F1Score):
        def result(self):
            return 100 * float(np.mean(super().result()))

    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.eye(3)[rng.integers(0, 3, 60)]
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax")])
    metric = Percent(name="pct")
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[metric])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["pct"] == pytest.approx(metric.result()) and logs["pct"] > 1

    class Clipped(M.F1Score):  # per class still: the logs take the macro mean, as F1Score's
        def result(self):
            return np.clip(super().result(), 0.0, 1.0)

    plain = M.F1Score(name="plain")
    model.compile(optimizer="sgd", loss="categorical_crossentropy",
                  metrics=[Clipped(name="clipped"), plain])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["clipped"] == logs["plain"]


def test_f1score_average_matches_keras(rng):
    keras = import_keras()
    labels, p = _classes(rng, 300, 4)
    onehot = np.eye(4)[labels]
    for average in (None, "macro", "micro", "weighted"):
        want = _keras_result(keras.metrics.F1Score(average=average), (onehot, p))
        assert M.F1Score(average=average, threshold=None)(onehot, p) == \
            pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.9])
def test_f1score_with_a_threshold_reads_every_output_as_keras(rng, threshold):
    # the argmax reading ignored the threshold (every threshold gave the same F1); and the
    # labels read at it are averaged per column as Keras and scikit-learn do, not pooled
    keras = import_keras()
    y = (rng.random((120, 4)) < 0.4).astype(np.float32)
    y[:4] = np.eye(4)  # every column has positives
    p = np.clip(y * 0.4 + rng.random((120, 4)) * 0.6, 0, 1).astype(np.float32)
    for average in ("macro", "micro", "weighted"):
        want = _keras_result(keras.metrics.F1Score(average=average, threshold=threshold),
                             (y[:50], p[:50]), (y[50:], p[50:]))
        ours = M.F1Score(average=average, threshold=threshold)
        ours.update_state(y[:50], p[:50])
        ours.update_state(y[50:], p[50:])
        assert ours.result() == pytest.approx(want, abs=1e-5), average
        assert M.f1_score(y, p, threshold=threshold, multilabel=True, average=average) == \
            pytest.approx(_sk(skm.f1_score, y, p > threshold, average=average), abs=1e-12)
    assert M.F1Score(threshold=threshold).get_config()["multilabel"] is True
    assert M.F1Score().get_config()["threshold"] is None  # the argmax reading by default
    y[:, 3] = 0  # a column without positives, never predicted: F1 0 in the macro mean
    p[:, 3] = np.minimum(p[:, 3], threshold * 0.9)
    want = _keras_result(keras.metrics.F1Score(average="macro", threshold=threshold), (y, p))
    assert M.F1Score(average="macro", threshold=threshold)(y, p) == pytest.approx(want,
                                                                                  abs=1e-5)
    assert M.f1_score(y, p, threshold=threshold, multilabel=True) == pytest.approx(
        _sk(skm.f1_score, y, p > threshold, average="macro"), abs=1e-12)


def test_an_f1score_from_an_older_file_keeps_its_reading(rng):
    # files stored every F1Score's threshold (0.5) before a threshold implied Keras' reading
    old = M.deserialize({"class_name": "F1Score", "config": {
        "name": "f1_score", "threshold": 0.5, "multilabel": None, "average": None}})
    labels, p = _classes(rng, 60, 3)
    assert old.multilabel is None
    assert old(labels, p) == pytest.approx(M.F1Score()(labels, p))  # the argmax reading
    new = M.deserialize(M.serialize(M.F1Score(threshold=0.5)))
    assert new.multilabel is True


def _pr_auc_reference(y, s):
    """Keras' interpolate_pr_auc transcribed to float64 NumPy, with a threshold at every
    distinct score (predicted positive when >= it) and one above them all."""
    y = np.asarray(y, np.float64)
    cuts = np.append(np.unique(s), np.inf)
    tp = np.array([y[s >= c].sum() for c in cuts])
    fp = np.array([(1 - y[s >= c]).sum() for c in cuts])
    fn = y.sum() - tp
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = np.divide(dtp, np.maximum(dp, 0), out=np.zeros_like(dtp), where=dp > 0)
    intercept = tp[1:] - slope * p[1:]
    ratio = np.ones_like(dtp)
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio[both] = p[:-1][both] / p[1:][both]
    total = tp[1:] + fn[1:]
    increment = slope * (dtp + intercept * np.log(ratio))
    return float(np.sum(np.divide(increment, total, out=np.zeros_like(total),
                                  where=total > 0)))


def test_pr_auc_equals_keras_formula_at_every_score(rng):
    for n in (5, 60, 400):
        y = rng.integers(0, 2, n)
        y[0], y[-1] = 0, 1
        for s in (rng.random(n), np.round(rng.random(n), 1)):  # distinct scores, then ties
            m = M.AUC(curve="PR")
            m.update_state(y[: n // 2], s[: n // 2])
            m.update_state(y[n // 2:], s[n // 2:])
            assert m.result() == pytest.approx(_pr_auc_reference(y, s), abs=1e-12)
    assert M.AUC(curve="pr")([0, 1, 0, 1], [0.1, 0.8, 0.3, 0.9]) == 1.0  # perfect ranking
    assert M.AUC(curve="PR")([1, 1, 1], [0.1, 0.8, 0.3]) == 1.0  # precision 1 throughout
    assert np.isnan(M.AUC(curve="PR")([0, 0], [0.1, 0.8]))  # no positive: undefined
    labels, p = _classes(rng, 300, 4)
    want = np.mean([_pr_auc_reference(labels == c, p[:, c]) for c in range(4)])
    for targets in (labels, np.eye(4)[labels]):  # one-vs-rest macro, as the ROC AUC
        assert M.AUC(curve="PR")(targets, p) == pytest.approx(want, abs=1e-12)
        assert M.AUC(curve="PR", multi_label=True)(targets, p) == pytest.approx(want)


def test_pr_auc_matches_keras_with_many_thresholds(rng):
    keras = import_keras()
    y = rng.integers(0, 2, 400)
    # scores on a grid of 0.01 fall on Keras' thresholds: the same curve (120 seeds: within
    # 3e-7); 400 continuous scores share some of its 20000 buckets, where Keras interpolates
    # (120 seeds: up to 2.8e-3 apart; pynn's value is the limit of finer thresholds)
    for s, tolerance in ((rng.random(400).astype(np.float32), 5e-3),
                         (np.round(rng.random(400), 2), 1e-5)):
        want = _keras_result(keras.metrics.AUC(curve="PR", num_thresholds=20000), (y, s))
        assert M.AUC(curve="PR")(y, s) == pytest.approx(want, abs=tolerance)
    labels, p = _classes(rng, 300, 3)
    onehot = np.eye(3)[labels]
    want = _keras_result(keras.metrics.AUC(curve="PR", num_thresholds=20000, multi_label=True),
                         (onehot, p))
    assert M.AUC(curve="PR")(labels, p) == pytest.approx(want, abs=1e-3)


def test_auc_multi_label_is_kerass_reading(rng):
    y = (rng.random((120, 3)) < 0.4).astype(np.float32)
    p = np.clip(0.4 * y + 0.6 * rng.random((120, 3)), 0, 1)
    per_label = skm.roc_auc_score(y, p, average="macro")  # each column, then their mean
    assert M.AUC(multi_label=True)(y, p) == pytest.approx(per_label, abs=1e-12)
    pooled = skm.roc_auc_score(y.ravel(), p.ravel())
    assert M.AUC(multi_label=False)(y, p) == pytest.approx(pooled, abs=1e-12)
    assert M.AUC(multilabel=True)(y, p) == pytest.approx(pooled, abs=1e-12)
    with pytest.raises(ValueError, match="AUC: give multi_label"):
        M.AUC(multi_label=True, multilabel=False)
    keras = import_keras()
    for multi_label, want in ((True, per_label), (False, pooled)):
        k = _keras_result(keras.metrics.AUC(num_thresholds=20000, multi_label=multi_label),
                          (y, p))
        assert k == pytest.approx(want, abs=1e-3)


def test_auc_accepts_kerass_other_arguments(rng):
    y = rng.integers(0, 2, 90)
    z = rng.normal(size=90) + y  # logits
    exact = skm.roc_auc_score(y, z)
    for kwargs in ({"num_thresholds": 7}, {"thresholds": [0.2, 0.5]}, {"from_logits": True},
                   {"summation_method": "interpolation", "num_labels": None},
                   {"num_labels": 1, "dtype": "float32", "name": "roc"}):
        assert M.AUC(**kwargs)(y, z) == pytest.approx(exact, abs=1e-12), kwargs
    assert M.AUC(curve="PR", from_logits=True)(y, z) == \
        pytest.approx(M.AUC(curve="PR")(y, 1 / (1 + np.exp(-z))), abs=1e-12)
    with pytest.raises(NotImplementedError, match="AUC: label_weights"):
        M.AUC(label_weights=[1.0, 2.0])
    with pytest.raises(NotImplementedError, match="AUC: summation_method='minoring'"):
        M.AUC(summation_method="minoring")
    with pytest.raises(NotImplementedError, match="AUC: curve='PRGAIN'"):
        M.AUC(curve="PRGAIN")
    with pytest.raises(ValueError, match="AUC: curve must be"):
        M.AUC(curve="DET")
    with pytest.raises(ValueError, match="AUC: num_thresholds must be an integer > 1"):
        M.AUC(num_thresholds=1)


# ---- 3. confusion counts -------------------------------------------------------------------
COUNTS = [("TruePositives", "true_positives", 1, 1), ("FalsePositives", "false_positives", 0, 1),
          ("TrueNegatives", "true_negatives", 0, 0), ("FalseNegatives", "false_negatives", 1, 0)]


def _count(y, p, target, predicted, threshold=0.5):
    return float(np.sum(((y > 0.5) == target) & ((p > threshold) == predicted)))


@pytest.mark.parametrize("cls,name,target,predicted", COUNTS, ids=[c[1] for c in COUNTS])
def test_counts_over_batches_match_numpy(rng, cls, name, target, predicted):
    cls = getattr(M, cls)
    y = (rng.random((70, 3)) < 0.4).astype(np.float32)
    p = rng.random((70, 3))
    p[:5] = 0.5  # exactly the threshold: negative
    m = cls()
    assert m.name == name and m.result() == 0.0
    m.update_state(y[:30], p[:30])
    m.update_state(y[30:], p[30:])
    assert m.result() == _count(y, p, target, predicted)
    assert cls(thresholds=[0.7])(y, p) == _count(y, p, target, predicted, 0.7)
    assert M.deserialize(M.serialize(cls(thresholds=0.7))).threshold == 0.7
    with pytest.raises(NotImplementedError, match=rf"{cls.__name__}: thresholds="):
        cls(thresholds=[0.3, 0.7])


def test_counts_match_keras(rng):
    keras = import_keras()
    y = (rng.random((50, 2)) < 0.5).astype(np.float32)
    p = rng.random((50, 2))
    for cls, _, _, _ in COUNTS:
        want = _keras_result(getattr(keras.metrics, cls)(thresholds=0.35), (y, p))
        assert getattr(M, cls)(thresholds=0.35)(y, p) == want


def test_counts_in_compile_fit_and_evaluate(rng):
    x = rng.normal(size=(80, 4)).astype(np.float32)
    y = (x[:, :2] + 0.5 * rng.normal(size=(80, 2)) > 0).astype(np.float32)
    pynn.set_seed(int(rng.integers(1 << 30)))
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2, activation="sigmoid")])
    model.compile(optimizer=pynn.optimizers.SGD(0.0), loss="binary_crossentropy",
                  metrics=[M.TruePositives(), "false_positives", "TrueNegatives",
                           M.FalseNegatives(thresholds=0.3)])
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25,
                        verbose=0).history
    p = model.predict(x, verbose=0)
    assert history["true_positives"] == [_count(y[:60], p[:60], 1, 1)] * 2
    assert history["val_TrueNegatives"] == [_count(y[60:], p[60:], 0, 0)] * 2
    logs = model.evaluate(x, y, batch_size=9, return_dict=True, verbose=0)
    assert logs == pytest.approx({"loss": logs["loss"], "true_positives": _count(y, p, 1, 1),
                                  "false_positives": _count(y, p, 0, 1),
                                  "TrueNegatives": _count(y, p, 0, 0),
                                  "false_negatives": _count(y, p, 1, 0, 0.3)})


# ---- 4. top-k accuracy ---------------------------------------------------------------------
def _top_k_reference(labels, p, k):
    """In the top k when fewer than k scores are strictly above the label's."""
    p = p.reshape(-1, p.shape[-1])
    mine = p[np.arange(len(p)), labels.reshape(-1)]
    return float(np.mean((p > mine[:, None]).sum(axis=1) < k))


def test_top_k_accuracy_functions_and_classes(rng):
    labels, p = _classes(rng, 90, 6)
    p[0] = p[0, 0]  # a row of ties: the label is in every top k
    for k in (1, 2, 5, 6, 9):
        want = _top_k_reference(labels, p, k)
        assert M.sparse_top_k_categorical_accuracy(labels, p, k=k) == want
        assert M.top_k_categorical_accuracy(np.eye(6)[labels], p, k=k) == want
        m = M.SparseTopKCategoricalAccuracy(k=k)
        m.update_state(labels[:40], p[:40])
        m.update_state(labels[40:].reshape(-1, 1), p[40:])
        assert m.result() == pytest.approx(want)
        assert M.TopKCategoricalAccuracy(k=k)(np.eye(6)[labels], p) == pytest.approx(want)
    distinct = _softmax(rng.normal(size=(50, 6)))
    sk_labels = rng.integers(0, 6, 50)
    assert M.sparse_top_k_categorical_accuracy(sk_labels, distinct, k=3) == pytest.approx(
        skm.top_k_accuracy_score(sk_labels, distinct, k=3, labels=np.arange(6)))
    seq_labels = rng.integers(0, 4, (8, 5))  # per position of a sequence
    seq = rng.random((8, 5, 4))
    assert M.sparse_top_k_categorical_accuracy(seq_labels, seq, k=2) == \
        _top_k_reference(seq_labels, seq, 2)
    assert M.TopKCategoricalAccuracy().name == "top_k_categorical_accuracy"
    assert M.SparseTopKCategoricalAccuracy().name == "sparse_top_k_categorical_accuracy"
    assert M.deserialize(M.serialize(M.TopKCategoricalAccuracy(k=3, name="t3"))).k == 3
    with pytest.raises(ValueError, match="TopKCategoricalAccuracy: k must be an integer"):
        M.TopKCategoricalAccuracy(k=0)
    # a label of no class (padding's) is a miss, as sparse accuracy's (it raised before)
    assert M.sparse_top_k_categorical_accuracy(np.array([0, 6]), p[:2], k=6) == 0.5


def test_top_k_accuracy_matches_keras(rng):
    keras = import_keras()
    labels, p = _classes(rng, 120, 7)
    for k in (1, 3, 5):
        want = _keras_result(keras.metrics.SparseTopKCategoricalAccuracy(k=k), (labels, p))
        assert M.SparseTopKCategoricalAccuracy(k=k)(labels, p) == pytest.approx(want)
        want = _keras_result(keras.metrics.TopKCategoricalAccuracy(k=k),
                             (np.eye(7)[labels], p))
        assert M.TopKCategoricalAccuracy(k=k)(np.eye(7)[labels], p) == pytest.approx(want)


def test_top_k_accuracy_by_name_in_compile(rng):
    x = rng.normal(size=(60, 4)).astype(np.float32)
    labels = rng.integers(0, 6, 60)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(6, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["sparse_top_k_categorical_accuracy", "SparseTopKCategoricalAccuracy",
                           M.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    model.fit(x, labels, epochs=1, batch_size=16, verbose=0)
    logs = model.evaluate(x, labels, batch_size=11, return_dict=True, verbose=0)
    p = model.predict(x, verbose=0)
    assert logs["sparse_top_k_categorical_accuracy"] == pytest.approx(
        _top_k_reference(labels, p, 5))
    assert logs["SparseTopKCategoricalAccuracy"] == \
        logs["sparse_top_k_categorical_accuracy"]
    assert logs["top2"] == pytest.approx(_top_k_reference(labels, p, 2))
    model.compile(optimizer="adam", loss="categorical_crossentropy",
                  metrics=["top_k_categorical_accuracy"])
    logs = model.evaluate(x, np.eye(6)[labels], return_dict=True, verbose=0)
    assert logs["top_k_categorical_accuracy"] == pytest.approx(_top_k_reference(labels, p, 5))


# ---- saving every new argument ------------------------------------------------------------
def test_new_arguments_survive_serialize_and_model_files(rng, tmp_path):
    metrics = [M.Precision(class_id=1, thresholds=0.4, name="p1"), M.Recall(class_id=2),
               M.F1Score(average="weighted", threshold=None),
               M.AUC(curve="PR", num_thresholds=50, from_logits=True, name="pr"),
               M.AUC(multi_label=True, num_labels=3, name="roc_per_label"),
               M.TruePositives(thresholds=0.3), M.TopKCategoricalAccuracy(k=2)]
    for m in metrics:
        again = M.deserialize(M.serialize(m))
        assert type(again) is type(m) and again.get_config() == m.get_config()
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.eye(3)[rng.integers(0, 3, 40)]
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=metrics)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert [m.get_config() for m in loaded._metric_specs] == [m.get_config() for m in metrics]
    assert loaded.evaluate(x, y, return_dict=True, verbose=0) == pytest.approx(
        model.evaluate(x, y, return_dict=True, verbose=0))
    assert copy.deepcopy(metrics[3]).curve == "PR"


# ---- 5. a metric function giving one value per sample --------------------------------------
def test_a_per_sample_metric_function_is_averaged(rng):
    y = rng.normal(size=(50, 2))
    p = rng.normal(size=(50, 2))
    m = M.MeanMetricWrapper(lambda t, q: np.mean(np.abs(t - q), axis=-1))
    m.update_state(y[:20], p[:20])
    m.update_state(y[20:], p[20:])
    assert m.result() == pytest.approx(np.mean(np.abs(y - p)))

    def per_sample_mae(y_true, y_pred):
        return np.mean(np.abs(y_true - y_pred), axis=-1)

    def wrong_length(y_true, y_pred):
        return np.zeros(3)

    x = rng.normal(size=(45, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", metrics=[per_sample_mae, "mae"])
    history = model.fit(x, y[:45], epochs=1, batch_size=8, verbose=0).history
    assert history["per_sample_mae"] == pytest.approx(history["mae"], rel=1e-5)
    logs = model.evaluate(x, y[:45], batch_size=7, return_dict=True, verbose=0)
    assert logs["per_sample_mae"] == pytest.approx(
        np.mean(np.abs(model.predict(x, verbose=0) - y[:45])), rel=1e-5)
    model.compile(optimizer="sgd", loss="mse", metrics=[wrong_length])
    with pytest.raises(TypeError, match="metric 'wrong_length' must give one number, got "
                                        r"array.*one per sample: 8 along axis 0"):
        model.fit(x, y[:45], batch_size=8, verbose=0)


def test_kerass_positional_habits_get_clear_errors_or_its_reading(rng):
    # thresholds= given on (N, C) outputs reads each output at it, as Keras (the argmax
    # reading would ignore it)
    y = np.eye(3)[rng.integers(0, 3, size=30)]
    p = rng.random((30, 3))
    for t in (0.1, 0.9):
        got = M.Precision(thresholds=t)(y, p)
        pred = p > t
        want = (pred & (y > 0.5)).sum() / max(pred.sum(), 1)
        assert got == pytest.approx(want)
    assert M.F1Score("macro").average == "macro"  # Keras' order: average first
    with pytest.raises(TypeError, match="name must be a string"):
        M.Precision(0.5, None, 2)  # Keras' (thresholds, top_k, class_id) order


# ---- R2Score's Keras arguments ------------------------------------------------------------
def _regression(rng, n=20):
    y = rng.normal(size=(n, 3)) * np.array([1.0, 10.0, 0.1])
    return y, y + rng.normal(size=(n, 3))


def _result(metric, *batches, **kwargs):
    for y, p in batches:
        metric.update_state(y, p, **kwargs)
    return metric.result()


def test_r2_score_takes_kerass_arguments_in_its_order(rng):
    """Keras' R2Score(class_aggregation, num_regressors, name, dtype): pynn's took the name
    first, so R2Score("variance_weighted_average") was the uniform R² named so, and both
    keywords were TypeErrors."""
    y, p = _regression(rng)
    w = rng.uniform(0, 2, len(y))
    m = M.R2Score("variance_weighted_average")
    assert m.name == "r2_score"
    assert _result(m, (y[:7], p[:7]), (y[7:], p[7:])) == pytest.approx(
        skm.r2_score(y, p, multioutput="variance_weighted"))
    assert _result(M.R2Score(class_aggregation="variance_weighted_average"), (y, p),
               sample_weight=w) == pytest.approx(
        skm.r2_score(y, p, sample_weight=w, multioutput="variance_weighted"))
    per_output = _result(M.R2Score(None), (y[:5], p[:5]), (y[5:], p[5:]))
    np.testing.assert_allclose(per_output, skm.r2_score(y, p, multioutput="raw_values"))
    uniform = skm.r2_score(y, p)
    assert _result(M.R2Score(), (y, p)) == pytest.approx(uniform)
    # adjusted R²: Keras' n is the number of target values seen (samples times outputs)
    n = y.size
    assert _result(M.R2Score(num_regressors=3), (y[:9], p[:9]), (y[9:], p[9:])) == \
        pytest.approx(1 - (1 - uniform) * (n - 1) / (n - 3 - 1))
    assert _result(M.R2Score("uniform_average", n - 2), (y, p)) == \
        pytest.approx(1 - (1 - uniform) * (n - 1))
    with pytest.warns(RuntimeWarning, match="plain R²"):  # no degree of freedom left
        assert _result(M.R2Score(num_regressors=n - 1), (y, p)) == pytest.approx(uniform)
    constant = np.ones((6, 2))  # no column varies: scikit-learn's uniform mean
    assert _result(M.R2Score("variance_weighted_average"), (constant, constant)) == 1.0
    with pytest.raises(ValueError, match=r"class_aggregation must be one of.*got 'r2'.*"
                                         r"R2Score\(name='r2'\)"):
        M.R2Score("r2")
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_regressors must be an integer >= 0"):
            M.R2Score(num_regressors=bad)
    assert M.R2Score(name="fit").name == "fit"
    m = M.R2Score("variance_weighted_average", 2, name="vw")
    again = M.deserialize(M.serialize(m))
    assert again.get_config() == m.get_config() == {
        "name": "vw", "class_aggregation": "variance_weighted_average", "num_regressors": 2}
    assert M.deserialize({"class_name": "R2Score", "config": {"name": "old"}}) \
        .class_aggregation == "uniform_average"  # a file from before the arguments
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(3)])
    with pytest.raises(ValueError, match="one R² per output"):
        model.compile("sgd", "mse", metrics=[M.R2Score(None)])


def test_r2_score_arguments_against_keras(rng):
    keras = import_keras()
    y, p = _regression(rng)
    for args, kwargs in ((("variance_weighted_average",), {}), ((None,), {}),
                         ((), {"num_regressors": 3}),
                         (("variance_weighted_average", 5), {})):
        ours = np.asarray(_result(M.R2Score(*args, **kwargs), (y[:8], p[:8]), (y[8:], p[8:])))
        theirs = keras.metrics.R2Score(*args, **kwargs)
        for part in (slice(0, 8), slice(8, None)):
            theirs.update_state(y[part].astype(np.float32), p[part].astype(np.float32))
        np.testing.assert_allclose(ours, np.asarray(theirs.result()), rtol=1e-4)


# ---- a threshold given to Precision/Recall ------------------------------------------------
def test_a_threshold_given_first_is_kerass_thresholds(rng):
    """Precision(0.7) is Keras' thresholds=0.7 (every output read at it), but was pynn's
    threshold, ignored for (N, C) outputs read by their argmax: a silently different
    metric. A threshold given now reads every output (multilabel=True unless given); given
    with multilabel=False, (N, C) outputs raise instead of ignoring it."""
    y = (rng.random((30, 4)) > 0.5).astype(np.float32)
    p = rng.random((30, 4)).astype(np.float32)
    hit, truth = p > 0.7, y > 0.5
    want = {M.Precision: (hit & truth).sum() / hit.sum(),
            M.Recall: (hit & truth).sum() / truth.sum()}
    for cls, value in want.items():
        for make in (lambda: cls(0.7), lambda: cls([0.7]), lambda: cls(threshold=0.7),
                     lambda: cls(thresholds=0.7)):
            m = make()
            assert m.multilabel is True
            assert _result(m, (y, p)) == pytest.approx(value)
        with pytest.raises(ValueError, match=r"threshold=0.7 would be ignored.*multilabel=True"):
            cls(0.7, multilabel=False).update_state(np.eye(4)[[0, 1, 2, 3]], p[:4])
        single = cls(0.7, multilabel=False)  # one output: the threshold reads it
        single.update_state(y[:, 0], p[:, 0])
        ref = skm.precision_score if cls is M.Precision else skm.recall_score
        assert single.result() == pytest.approx(_sk(ref, y[:, 0], p[:, 0] > 0.7))
        default = cls()  # none given: (N, C) outputs read as classes, as documented
        labels = rng.integers(0, 4, 30)
        default.update_state(np.eye(4)[labels], p)
        assert default.multilabel is None and default.result() == pytest.approx(
            _sk(ref, labels, p.argmax(1), average="macro",
                labels=np.union1d(labels, p.argmax(1))))
        assert cls(class_id=1, threshold=0.7, multilabel=False)(y, p) == pytest.approx(
            _sk(ref, y[:, 1], p[:, 1] > 0.7))  # class_id reads its column at the threshold
    with pytest.raises(ValueError, match="would be ignored"):
        M.F1Score(threshold=0.5, multilabel=False).update_state(np.eye(4)[[0, 1, 2, 3]], p[:4])
    with pytest.raises(TypeError, match="multilabel must be True, False or None.*top_k"):
        M.Precision(0.5, 1)  # Keras' (thresholds, top_k)


def test_a_threshold_given_survives_files_and_old_files_keep_their_reading(rng):
    y3 = np.eye(3)[[0, 1, 2, 1, 0, 2]]
    p3 = _softmax(rng.normal(size=(6, 3)))
    classes = M.precision(y3, p3)  # the class reading (argmax)
    pooled = M.precision(y3, p3, threshold=0.3, multilabel=True)
    for m, want in ((M.Precision(), classes), (M.Precision(0.3), pooled)):
        again = M.deserialize(M.serialize(m))
        assert again.get_config() == m.get_config()
        assert again(y3, p3) == pytest.approx(want)
    # a threshold with multilabel=False is refused where it would be ignored; from a file
    # (which older pynn wrote for such objects, reading classes) it reads the classes
    odd = M.Precision(threshold=0.3, multilabel=False, name="p")
    with pytest.raises(ValueError, match="would be ignored"):
        odd(y3, p3)
    assert M.deserialize(M.serialize(odd))(y3, p3) == pytest.approx(classes)
    assert M.Precision().get_config()["threshold"] is None  # the default, not a 0.5 given
    # files from before: every Precision stored a threshold (0.5 when none was given), read
    # (N, C) outputs as classes whatever it was, and load with that reading
    for stored, multilabel in ((0.5, None), (0.3, None), (0.5, False), (0.7, False)):
        old = M.deserialize({"class_name": "Precision", "config": {
            "name": "precision", "threshold": stored, "multilabel": multilabel,
            "class_id": None}})
        assert old.multilabel is multilabel and old.threshold == stored
        assert old(y3, p3) == pytest.approx(classes)


# ---- Keras' other metric names ------------------------------------------------------------
def test_kerass_other_metric_names_are_accepted_and_log_as_given(rng):
    """Keras 3's metrics.get takes "MSE", "MAE", "MAPE", "MSLE", "bce", "BCE" and
    "log_cosh_error" (and compile "Accuracy", "ACC"); pynn refused them. Keras logs a string
    metric under that string."""
    x = rng.normal(size=(24, 3)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1, activation="sigmoid")])
    aliases = {"MSE": "mse", "MAE": "mae", "MAPE": "mape", "MSLE": "msle",
               "bce": "binary_crossentropy", "BCE": "binary_crossentropy",
               "log_cosh_error": "logcosh", "Accuracy": "accuracy", "ACC": "accuracy"}
    model.compile("sgd", "binary_crossentropy", metrics=[*aliases, *dict.fromkeys(
        aliases.values())])
    logs = model.evaluate(x, y, return_dict=True)
    assert set(logs) == {"loss", *aliases, *aliases.values()}
    for alias, name in aliases.items():
        assert logs[alias] == pytest.approx(logs[name], rel=1e-6), alias


def test_accuracy_class_counts_exact_matches_as_keras(rng, tmp_path):
    """keras.metrics.Accuracy (exact equality, for label outputs) had no pynn counterpart."""
    y = rng.integers(0, 3, (40, 2)).astype(np.float32)
    p = rng.integers(0, 3, (40, 2)).astype(np.float32)
    w = rng.uniform(0, 1, 40)
    m = M.Accuracy()
    m.update_state(y[:15], p[:15], sample_weight=w[:15])
    m.update_state(y[15:], p[15:], sample_weight=w[15:])
    hits = (y == p).mean(axis=1)
    assert m.result() == pytest.approx(np.sum(w * hits) / np.sum(w))
    assert M.Accuracy()(y[:, 0], p[:, :1]) == pytest.approx(np.mean(y[:, 0] == p[:, 0]))
    with pytest.raises(ValueError, match="accuracy"):
        M.Accuracy()(y, p[:, :1])
    x = rng.normal(size=(30, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1, use_bias=False)])
    model.set_weights([np.array([[1.0], [0.0], [0.0]])])  # predicts x[:, 0] exactly
    model.compile(optimizer="sgd", loss="mse", metrics=[M.Accuracy(name="exact")])
    target = x[:, :1].copy()
    target[::3] += 1  # a third of the rows missed
    logs = model.evaluate(x, target, verbose=0, return_dict=True)
    assert logs["exact"] == pytest.approx(2 / 3)
    model.save(tmp_path / "m.npz")
    assert type(pynn.load_model(tmp_path / "m.npz")._metric_specs[0]) is M.Accuracy


def test_accuracy_class_matches_keras(rng):
    keras = import_keras()
    y = rng.integers(0, 2, (50, 3)).astype(np.float32)
    p = rng.integers(0, 2, (50, 3)).astype(np.float32)
    w = rng.uniform(0, 1, 50).astype(np.float32)
    ours, theirs = M.Accuracy(), keras.metrics.Accuracy()
    ours.update_state(y, p, sample_weight=w)
    theirs.update_state(y, p, sample_weight=w)
    assert ours.result() == pytest.approx(float(theirs.result()), rel=1e-6)
