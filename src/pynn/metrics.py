"""Metrics: plain functions on arrays (`pynn.metrics.precision(y_true, y_pred)`), stateful
Metric objects (`reset_state`, `update_state`, `result`, as in Keras) and the names
`compile(metrics=[...])` accepts.

"accuracy" picks binary, categorical or sparse accuracy from the loss and the output shape
(binary for binary cross-entropy whatever the width, and for one output; Keras 3 reads
several outputs under binary cross-entropy as categorical, and regression targets as exact
matches: README). Accuracy, MSE and MAE are means over samples, so a batch-size-weighted mean of
per-batch values is exact. Precision, recall, F1, ROC AUC, RMSE and R² are not: averaging them
over batches gives a different (wrong) number, so their Metric objects accumulate sufficient
statistics (confusion counts, sums of squares, or for AUC the scores themselves) and `result()`
is the value over everything seen since `reset_state()`. `fit` resets them each epoch and
`evaluate` once, so History and evaluate report the metric of the whole epoch / data set.

Classification conventions (shared by the functions and the objects):
- predictions of shape (N,) or (N, 1) are binary probabilities, positive when > threshold
  (0.5); targets are positive when > 0.5;
- predictions of shape (N, C), C >= 2, are multi-class probabilities; the predicted class is
  the argmax; targets are integer labels (N,) / (N, 1) or one-hot (N, C) (or soft labels:
  rows of non-negative values summing to 1, read by their argmax); a multi-hot or all-zero
  target row raises ValueError (its argmax would be a class it is not: read such labels
  with multilabel=True);
- multi-class precision, recall and F1 are macro averages over classes, exactly as
  scikit-learn's `average="macro"`: the unweighted mean over the classes that occur in the
  targets or the predictions, an undefined per-class value (0/0) counting as 0; macro F1 is the
  mean of per-class F1 (not the F1 of macro precision and recall);
- `roc_auc` is exact (rank statistic, ties counted half, equal to scikit-learn's
  `roc_auc_score`), not Keras' 200-threshold approximation; for multi-class it is the
  one-vs-rest macro average over classes that have both positives and negatives; it is NaN when
  no class has both; `AUC(curve="PR")` is the area under the precision-recall curve by Keras'
  interpolation, with a threshold at every distinct score (the limit of Keras' value);
- the confusion counts (`TruePositives`, ...) read every output of every sample as one binary
  decision, as Keras' do; `top_k_categorical_accuracy` counts a score tied with the k-th
  highest as in the top k, and ranks a NaN score below every number (Keras' in_top_k on
  JAX); labels read one per output need targets and predictions of one shape (but for a
  trailing axis of 1);
- with `multilabel=True` (chosen by compile for binary cross-entropy with several outputs,
  for the names and for metric objects left at their default multilabel=None), every output
  is its own binary label and all of them are pooled (Keras' default, its AUC's
  multi_label=False).

Sample weights (`update_state(y_true, y_pred, sample_weight=)`, compile's
`weighted_metrics`, the functions' `sample_weight=`): one non-negative number per sample (or
per position of a sequence); each sample counts with its weight: weighted means, weighted
confusion counts (an output of a sample weighs the sample's weight), AUC over weighted
positive-negative pairs (scikit-learn's `roc_auc_score(sample_weight=)`), weighted RMSE and
R². An integer weight k counts a sample k times. A total weight of 0 gives NaN; a class
seen only with weight 0 counts as absent in a macro average. A weight per output ((N, C)
for (N, C) outputs) weighs each output where the metric has a value per output (the
confusion counts, `BinaryAccuracy`, as Keras'); a mean over the outputs (MSE, MAE, the
losses, the categorical accuracies) refuses it, as Keras does. An empty batch (0 samples)
adds nothing to a metric object, as in Keras.

Names: a metric given to compile as a string is logged under that string, as Keras 3 does
(`metrics=["AUC"]` logs `AUC` and `val_AUC`, `["mse"]` logs `mse`); a Metric object under its
`name` (Keras' default names: `AUC()` is `auc`, `BinaryAccuracy()` `binary_accuracy`).

Keras' arguments: Precision and Recall take `thresholds` (one number; first, as in Keras) and
`class_id`, F1Score `average`, AUC all of Keras' (see AUC), R2Score `class_aggregation` and
`num_regressors` (first, in Keras' order); what pynn cannot compute (several thresholds,
`top_k`, `label_weights`, ...) raises NotImplementedError naming the argument. A threshold
given to Precision, Recall or F1Score reads every output at it, as Keras (multilabel=True
unless given); with multilabel=False, (N, C) outputs read as classes would ignore it and
raise ValueError instead. A user's Metric subclass
may keep its state in `self.add_variable(...)` variables, as Keras' guide writes it.

Regression: `root_mean_squared_error` is the square root of the MSE over all elements (Keras);
`mape` and `msle` are Keras' formulas (epsilon 1e-7), means over every element as MSE;
`r2_score` is the mean over output columns of each column's R² (scikit-learn's and Keras'
"uniform_average"), 1.0 for a constant column predicted exactly and 0.0 otherwise;
`R2Score` also takes Keras' "variance_weighted_average", None (per column) and adjusted R².
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import numbers
import warnings
from collections.abc import Mapping

import numpy as np

from . import custom_objects as _custom
from . import losses as _losses
from .array_like import add_array_operators
from .backend import to_host
from .data import check_unit_interval


def _host(a):
    """a as a NumPy array (copied from a GPU), refused unless of real numbers: a cast to
    float would drop complex numbers' imaginary parts, and text labels ('1') would never
    equal a class number."""
    a = to_host(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"metrics take real numbers, got an array of {a.dtype}")
    return a


def _one_sample_if_numbers(y_true, y_pred):
    """A target and a prediction given as numbers (Keras takes them) as one sample of one
    output, as the weighted paths need a sample axis."""
    if np.ndim(y_pred) == 0:
        return np.reshape(_host(y_true), (1, 1)), np.reshape(_host(y_pred), (1, 1))
    return y_true, y_pred


def _samples(y_pred):
    """The batch's number of samples (a number is one sample)."""
    shape = np.shape(y_pred)
    return int(shape[0]) if shape else 1


def _pair(y_true, y_pred):
    y_true, y_pred = _host(y_true), _host(y_pred)
    if y_pred.ndim == 1:
        y_pred = y_pred.reshape(-1, 1)
    if y_true.ndim == 1 and y_pred.shape[1] == 1:
        y_true = y_true.reshape(-1, 1)
    return y_true, y_pred


# Each mean metric function is the mean of its values: one per output of each sample
# (_ELEMENTS, averaged over the outputs for a sample's value) or one per row of class scores
# (_ROWS). A weighted metric weighs each sample's value.
def _binary_hits(y_true, y_pred, threshold=0.5):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("binary_accuracy", y_true, y_pred)
    return (y_pred > threshold) == (y_true > 0.5)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Fraction of samples whose prediction > threshold agrees with target > 0.5."""
    return float(np.mean(_binary_hits(y_true, y_pred, threshold)))


def _exact_hits(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("accuracy", y_true, y_pred)
    return y_true == y_pred


def _exact_accuracy(y_true, y_pred):
    """Keras' Accuracy's function: the fraction of outputs equal to their targets."""
    return float(np.mean(_exact_hits(y_true, y_pred)))


def _categorical_hits(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("categorical_accuracy", y_true, y_pred)
    return np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)


def categorical_accuracy(y_true, y_pred):
    """Fraction of rows whose argmax agrees with the one-hot target's argmax."""
    return float(np.mean(_categorical_hits(y_true, y_pred)))


def _sparse_categorical_hits(y_true, y_pred):
    y_pred = _host(y_pred)
    y_true = _host(y_true).reshape(-1)
    rows = np.argmax(y_pred, axis=-1)
    if y_true.shape[0] != rows.size:
        raise ValueError(f"sparse_categorical_accuracy: {y_true.shape[0]} labels for "
                         f"{rows.size} predictions")
    # a fraction (1.5) counted as a miss, silently; a label of no class is padding's
    # (ignore_class=-1, 255) and stays a miss, as in Keras
    if y_true.size and y_true.dtype.kind == "f":
        bad = y_true != np.round(y_true)
        if bad.any():
            raise ValueError(f"sparse_categorical_accuracy: labels must be integers (class "
                             f"indices; one of no class, such as padding's, counts as a "
                             f"miss), got {y_true[bad][0]}")
    return rows == y_true.reshape(rows.shape)


def sparse_categorical_accuracy(y_true, y_pred):
    """Fraction of rows (class distributions along the last axis: per sample, or per
    position of a sequence) whose argmax equals the integer label (a label of no class, such
    as padding's, counts as a miss, as in Keras; a fraction is refused)."""
    return float(np.mean(_sparse_categorical_hits(y_true, y_pred)))


def _in_top_k(name, labels, y_pred, k):
    """Whether each row's (class scores along the last axis) label's score is among the k
    largest, shaped as the rows: fewer than k scores above it (Keras' in_top_k), so a score
    tied with the k-th largest counts as in, and a NaN score ranks below every number (as
    Keras' on JAX: a NaN label score is in only when k covers every other score)."""
    k = _check_k(name, k)
    if y_pred.ndim < 2:
        raise ValueError(f"{name}: predictions must have a class axis, got shape "
                         f"{y_pred.shape}")
    scores = y_pred.reshape(-1, y_pred.shape[-1])
    n, c = scores.shape
    labels = _true_classes(name, labels.reshape(-1), n, c)
    own = scores[np.arange(n), labels]
    own = np.where(np.isnan(own), -np.inf, own)
    above = np.count_nonzero(scores > own[:, None], axis=1)  # (NaN is above nothing)
    return (above < k).reshape(y_pred.shape[:-1])


def _check_k(owner, k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{owner}: k must be an integer >= 1, got {k!r}")
    return int(k)


def _top_k_hits(y_true, y_pred, k=5):
    y_true, y_pred = _host(y_true), _host(y_pred)
    _same_shape("top_k_categorical_accuracy", y_true, y_pred)
    return _in_top_k("top_k_categorical_accuracy", np.argmax(y_true, axis=-1), y_pred, k)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Fraction of rows whose one-hot target's class is among the k highest predictions."""
    return float(np.mean(_top_k_hits(y_true, y_pred, k)))


def _sparse_top_k_hits(y_true, y_pred, k=5):
    y_true, y_pred = _host(y_true), _host(y_pred)
    # a label of no class (padding's, ignore_class=-1) is a miss, as sparse accuracy's
    classes = y_pred.shape[-1] if y_pred.ndim >= 2 else 0
    outside = (y_true < 0) | (y_true >= classes) if y_true.dtype.kind in "iuf" else None
    if outside is None or not outside.any():
        return _in_top_k("sparse_top_k_categorical_accuracy", y_true, y_pred, k)
    hits = _in_top_k("sparse_top_k_categorical_accuracy", np.where(outside, 0, y_true),
                     y_pred, k)
    return hits & ~outside.reshape(hits.shape)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Fraction of rows whose integer label is among the k highest predictions."""
    return float(np.mean(_sparse_top_k_hits(y_true, y_pred, k)))


def _squared_errors(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("mean_squared_error", y_true, y_pred)
    return (y_pred.astype(np.float64) - y_true) ** 2


def mean_squared_error(y_true, y_pred):
    """mean((y_pred - y_true)^2)."""
    return float(np.mean(_squared_errors(y_true, y_pred)))


def _absolute_errors(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("mean_absolute_error", y_true, y_pred)
    return np.abs(y_pred.astype(np.float64) - y_true)


def mean_absolute_error(y_true, y_pred):
    """mean(|y_pred - y_true|)."""
    return float(np.mean(_absolute_errors(y_true, y_pred)))


def _absolute_relative_errors(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("mean_absolute_percentage_error", y_true, y_pred)
    y_true = y_true.astype(np.float64)
    return np.abs(y_true - y_pred) / np.maximum(np.abs(y_true), 1e-7)


def mean_absolute_percentage_error(y_true, y_pred):
    """100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7)) (Keras' MAPE)."""
    return float(100 * np.mean(_absolute_relative_errors(y_true, y_pred)))


def _squared_log_errors(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("mean_squared_logarithmic_error", y_true, y_pred)
    d = (np.log1p(np.maximum(y_pred.astype(np.float64), 1e-7))
         - np.log1p(np.maximum(y_true.astype(np.float64), 1e-7)))
    return d * d


def mean_squared_logarithmic_error(y_true, y_pred):
    """mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))^2) (Keras' MSLE)."""
    return float(np.mean(_squared_log_errors(y_true, y_pred)))


_ELEMENTS = {binary_accuracy: (_binary_hits, 1), _exact_accuracy: (_exact_hits, 1),
             mean_squared_error: (_squared_errors, 1),
             mean_absolute_error: (_absolute_errors, 1),
             mean_absolute_percentage_error: (_absolute_relative_errors, 100),
             mean_squared_logarithmic_error: (_squared_log_errors, 1)}  # (values, factor)
# Keras' binary_accuracy gives one value per output (its others a mean over the outputs), so a
# weight per output weighs each of them
_PER_OUTPUT = (binary_accuracy,)
_ROWS = {categorical_accuracy: _categorical_hits,
         sparse_categorical_accuracy: _sparse_categorical_hits,
         top_k_categorical_accuracy: _top_k_hits,
         sparse_top_k_categorical_accuracy: _sparse_top_k_hits}


def _sample_values(fn, y_true, y_pred, per_output=False):
    """The values whose mean is fn(y_true, y_pred) for pynn's mean metric functions (and
    their partials: a threshold, a k), one per sample or per position of a sequence (with
    per_output, one per output for the functions Keras computes per output); None for any
    other function."""
    base, keywords = ((fn.func, fn.keywords) if isinstance(fn, functools.partial)
                      and not fn.args else (fn, {}))
    try:
        elements, rows = _ELEMENTS.get(base), _ROWS.get(base)
    except TypeError:  # an unhashable callable object
        return None
    if elements is not None:
        values, factor = elements
        values = factor * values(y_true, y_pred, **keywords)
        return values if per_output and base in _PER_OUTPUT else np.mean(values, axis=-1)
    return None if rows is None else rows(y_true, y_pred, **keywords)


def _sample_weights(name, sample_weight, samples):
    """A metric's sample_weight, checked, as float64: a number for every sample, one per
    sample ((N,) or (N, 1)) or one per position of a sequence (N, T, ...)."""
    w = to_host(sample_weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name}: sample_weight must be real numbers, got dtype {w.dtype}")
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 0:  # (Keras: a number weighs every sample)
        w = np.full(samples, float(w))
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape[0] != samples:
        raise ValueError(f"{name}: sample_weight has shape {w.shape} for {samples} samples; "
                         f"give one weight per sample ({samples},)")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name}: sample_weight must be finite and non-negative")
    return w


def _spread(name, w, shape):
    """Weights of the leading axes of `shape` (a sample's, or a position's) repeated over
    the rest of it (a sample's outputs)."""
    if w.shape != tuple(shape[:w.ndim]):
        raise ValueError(f"{name}: sample_weight of shape {w.shape} does not fit outputs of "
                         f"shape {tuple(shape)}")
    return np.broadcast_to(w.reshape(w.shape + (1,) * (len(shape) - w.ndim)), shape)


def _weighted_mean_parts(name, values, w):
    """(sum of w * values, sum of w) of per-sample (or per-position, or per-output) values:
    values with more axes than the weights are averaged over the extra ones (Keras'
    reduction to the weights' rank); weights with more axes than the values are refused, as
    Keras refuses them (averaging them would weigh what the values already averaged)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:  # one value for the batch: every sample's
        return float(values) * float(np.sum(w)), float(np.sum(w))
    # weights with a trailing axis of 1 (Keras' per-position (N, T, 1)): a weight for each
    # output of that position, or the position's own
    if w.ndim == values.ndim and w.ndim > 1 and w.shape[-1] == 1:
        w = np.broadcast_to(w, w.shape[:-1] + values.shape[-1:])
    while values.ndim > w.ndim:
        values = values.mean(axis=-1)
    while w.ndim > max(values.ndim, 1) and w.shape[-1] == 1:
        w = w[..., 0]
    if w.ndim > values.ndim:
        raise ValueError(f"{name}: sample_weight of shape {w.shape} has more axes than the "
                         f"metric's values, shape {values.shape} (one per sample, or per "
                         f"position of a sequence, after the mean over the outputs); give one "
                         f"weight per sample ({values.shape[0]},)")
    w = _spread(name, w, values.shape)
    return float(np.sum(w * values)), float(np.sum(w))


def _same_shape(name, y_true, y_pred):
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true has shape {y_true.shape}, y_pred {y_pred.shape}")


# ---- classification helpers -----------------------------------------------------------------
def _same_label_shape(name, y_true, y_pred):
    """Labels read one per output: targets and predictions of one shape, but for a trailing
    axis of 1 on either ((N,) against (N, 1)). Only the sizes agreeing would pair the
    outputs of different samples once flattened."""
    def core(shape):  # (a 1-D (1,) is one sample's label, not a trailing axis)
        return shape[:-1] if len(shape) > 1 and shape[-1:] == (1,) else shape
    if core(y_true.shape) != core(y_pred.shape):
        raise ValueError(f"{name}: y_true has shape {y_true.shape}, y_pred {y_pred.shape}; "
                         f"labels read one per output need one shape")


def _labels(name, y_true, y_pred, threshold=0.5, multilabel=False, w=None):
    """(true labels, predicted labels, number of classes or None when binary, each label's
    weight or None) as int arrays (and float64 weights, from per-sample weights w)."""
    y_true, y_pred = _host(y_true), _host(y_pred)
    if multilabel or y_pred.ndim <= 1 or (y_pred.ndim == 2 and y_pred.shape[1] == 1):
        _same_label_shape(name, y_true, y_pred)
        return ((y_true.reshape(-1) > 0.5).astype(np.int64),
                (y_pred.reshape(-1) > threshold).astype(np.int64), None,
                None if w is None else _spread(name, w, y_pred.shape).reshape(-1))
    if y_pred.ndim != 2:
        raise ValueError(f"{name}: predictions must have shape (N,) or (N, C), got "
                         f"{y_pred.shape}")
    n, c = y_pred.shape
    return (_true_classes(name, y_true, n, c), np.argmax(y_pred, axis=1), c,
            None if w is None else _spread(name, w, (n,)))


def _true_classes(name, y_true, n, c):
    """Integer class labels from integer or one-hot targets for (n, c) predictions. A target
    row is a class's only as a distribution over the classes (one-hot, or soft labels read
    by their argmax as categorical accuracy reads them): multi-hot or all-zero rows are
    refused, which the argmax would read as one class."""
    if y_true.shape == (n, c):
        y = y_true.astype(np.float64)
        bad = np.flatnonzero((y < 0).any(axis=1) | ~np.isclose(y.sum(axis=1), 1.0, atol=1e-3))
        if bad.size:
            row = bad[0]
            raise ValueError(
                f"{name}: reading ({n}, {c}) outputs as classes needs one-hot targets (rows of "
                f"non-negative values summing to 1), but {bad.size} row(s) are not, the first "
                f"(row {row}) summing to {y[row].sum():g} with {np.count_nonzero(y[row] > 0.5)} "
                f"value(s) > 0.5; for multi-hot labels read every output as its own label: "
                f"multilabel=True (AUC: multi_label=True per label, or False pooled)")
        return np.argmax(y_true, axis=1)
    if y_true.size != n:
        raise ValueError(f"{name}: targets of shape {y_true.shape} for predictions of shape "
                         f"{(n, c)}; expected integer labels ({n},) or one-hot ({n}, {c})")
    labels = y_true.reshape(-1)
    if labels.size and (np.any(labels != np.round(labels)) or labels.min() < 0
                        or labels.max() >= c):
        raise ValueError(f"{name}: labels must be integers in [0, {c}), got values from "
                         f"{labels.min()} to {labels.max()}")
    return labels.astype(np.int64)


def _confusion(name, y_true, y_pred, threshold=0.5, multilabel=False, per_column=False,
               w=None):
    """Per-class (tp, fp, fn) counts; one class (the positive one) when binary. Labels read
    at the threshold are pooled into one class, or with per_column (F1's averages, as Keras'
    and scikit-learn's) counted per output column. With per-sample weights w (float64,
    checked) each label counts its sample's weight."""
    if multilabel and per_column:
        t, p = _host(y_true), _host(y_pred)
        if p.ndim == 2 and p.shape[1] > 1 and t.shape == p.shape:
            true, pred = (t > 0.5), (p > threshold)
            if w is not None:
                w = _spread(name, w, p.shape)
                return np.stack([np.sum(w * (true & pred), axis=0),
                                 np.sum(w * (pred & ~true), axis=0),
                                 np.sum(w * (true & ~pred), axis=0)], axis=1)
            tp = np.sum(true & pred, axis=0)
            return np.stack([tp, pred.sum(axis=0) - tp, true.sum(axis=0) - tp],
                            axis=1).astype(np.int64)
    true, pred, c, w = _labels(name, y_true, y_pred, threshold, multilabel, w)
    if c is None and w is not None:
        true, pred = true.astype(bool), pred.astype(bool)
        return np.array([[np.sum(w[true & pred]), np.sum(w[pred & ~true]),
                          np.sum(w[true & ~pred])]])
    if c is None:
        tp = np.sum(true & pred)
        return np.array([[tp, np.sum(pred) - tp, np.sum(true) - tp]], dtype=np.int64)
    if w is not None:
        hit = true == pred
        return np.stack([np.bincount(true[hit], w[hit], minlength=c),
                         np.bincount(pred[~hit], w[~hit], minlength=c),
                         np.bincount(true[~hit], w[~hit], minlength=c)], axis=1)
    tp = np.bincount(true[true == pred], minlength=c)
    fp = np.bincount(pred, minlength=c) - tp
    fn = np.bincount(true, minlength=c) - tp
    return np.stack([tp, fp, fn], axis=1).astype(np.int64)


def _ratio(num, den):
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)  # 0/0 counts as 0


def _macro(per_class, counts):
    present = counts.sum(axis=1) > 0  # the classes in targets or predictions (scikit-learn)
    return float(np.mean(per_class[present])) if present.any() else 0.0


def _precision_from(counts):
    tp, fp, _ = counts.T
    return _macro(_ratio(tp, tp + fp), counts)


def _recall_from(counts):
    tp, _, fn = counts.T
    return _macro(_ratio(tp, tp + fn), counts)


_AVERAGES = (None, "macro", "micro", "weighted")


def _f1_from(counts, average="macro", every_class=False, beta=1.0):
    """every_class: the macro mean over every row of counts (output columns read at a
    threshold, as Keras and scikit-learn: a column without positives or predictions counts
    0), else over the classes present in targets or predictions (scikit-learn's labels).
    beta != 1: F-beta, (1 + beta^2) tp / ((1 + beta^2) tp + beta^2 fn + fp)."""
    tp, fp, fn = counts.T
    if beta == 1.0:  # (F1's own expression: its bits as before)
        def score(tp, fp, fn):
            return _ratio(2 * tp, 2 * tp + fp + fn)
    else:
        b2 = beta * beta

        def score(tp, fp, fn):
            return _ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)
    if average == "micro":  # the score of the summed counts
        return float(score(tp.sum(), fp.sum(), fn.sum()))
    per_class = score(tp, fp, fn)
    if average == "per_class":  # (F1Score(average=None).result(), as Keras')
        return np.asarray(per_class, dtype=np.float64)
    if average == "weighted":  # by support: classes absent from the targets weigh nothing
        return float(np.sum(per_class * _ratio(tp + fn, np.sum(tp + fn))))
    return float(np.mean(per_class)) if every_class else _macro(per_class, counts)


def _optional_weights(name, sample_weight, y_pred):
    if sample_weight is None:
        return None
    return _sample_weights(name, sample_weight, _samples(y_pred))


def precision(y_true, y_pred, threshold=0.5, multilabel=False, sample_weight=None):
    """tp / (tp + fp); macro-averaged over classes for (N, C) predictions. sample_weight
    (one non-negative number per sample): each sample counts its weight."""
    w = _optional_weights("precision", sample_weight, y_pred)
    return _precision_from(_confusion("precision", y_true, y_pred, threshold, multilabel,
                                      w=w))


def recall(y_true, y_pred, threshold=0.5, multilabel=False, sample_weight=None):
    """tp / (tp + fn); macro-averaged over classes for (N, C) predictions; sample_weight as
    precision's."""
    w = _optional_weights("recall", sample_weight, y_pred)
    return _recall_from(_confusion("recall", y_true, y_pred, threshold, multilabel, w=w))


def f1_score(y_true, y_pred, threshold=0.5, multilabel=False, average="macro",
             sample_weight=None):
    """2 tp / (2 tp + fp + fn); for (N, C) predictions averaged over classes as
    scikit-learn's `average`: "macro" (None too), "micro" or "weighted" (by support);
    sample_weight as precision's."""
    _check_average("f1_score", average)
    w = _optional_weights("f1_score", sample_weight, y_pred)
    return _f1_from(_confusion("f1_score", y_true, y_pred, threshold, multilabel,
                               per_column=True, w=w), average, every_class=multilabel)


def _check_average(owner, average):
    if average not in _AVERAGES:
        raise ValueError(f"{owner}: average must be one of {_AVERAGES}, got {average!r}")
    return average


def _auc_scores(name, y_true, y_pred, multilabel=False, per_label=False, w=None):
    """(labels, scores, weights), copies (the AUC metric keeps them): binary 0/1 labels and
    1-D scores, class labels and (N, C) scores, or with `per_label` (Keras' multi_label=True)
    0/1 labels and scores both (N, C); the weights (from per-sample weights w) one per label
    of the first two, one per sample of the last, None without w."""
    y_true, y_pred = _host(y_true), _host(y_pred)
    y_pred = np.array(y_pred, dtype=np.result_type(y_pred.dtype, np.float32))
    if multilabel or y_pred.ndim <= 1 or (y_pred.ndim == 2 and y_pred.shape[1] == 1):
        _same_label_shape(name, y_true, y_pred)
        return ((y_true.reshape(-1) > 0.5).astype(np.int8), y_pred.reshape(-1),
                None if w is None else _spread(name, w, y_pred.shape).reshape(-1).copy())
    if per_label and y_true.shape == y_pred.shape and y_pred.ndim == 2:
        return ((y_true > 0.5).astype(np.int8), y_pred,  # integer labels: the class reading
                None if w is None else _spread(name, w, y_pred.shape[:1]).copy())
    if y_pred.ndim != 2:
        raise ValueError(f"{name}: predictions must have shape (N,) or (N, C), got "
                         f"{y_pred.shape}")
    n, c = y_pred.shape
    return (_true_classes(name, y_true, n, c), y_pred,
            None if w is None else _spread(name, w, (n,)).copy())


def _binary_auc(y, s, w):
    """Area under the ROC curve as the Mann-Whitney statistic (ties count half), each
    positive-negative pair weighing the product of their weights (w None: 1): exact."""
    _, groups = np.unique(s, return_inverse=True)  # tie groups, lowest score first
    groups, count = groups.reshape(-1), s.size and int(groups.max()) + 1
    weight = np.ones(s.size) if w is None else w
    pos = np.bincount(groups, weight * (y > 0), minlength=count)
    neg = np.bincount(groups, weight * (y <= 0), minlength=count)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")  # undefined with a single class
    below = np.cumsum(neg) - neg  # negative weight scored below each group
    return float(np.sum(pos * (below + neg / 2.0)) / (total_pos * total_neg))


def _binary_pr_auc(y, s, w):
    """Area under the precision-recall curve by Keras' interpolation (its
    `interpolate_pr_auc`, Davis & Goadrich 2006) with a threshold at every distinct score:
    the limit of Keras' AUC(curve="PR") as its thresholds get finer; with weights w (None:
    1) the counts are weighted, as Keras' (all > 0: _auc_from drops the labels weighing 0,
    which would be steps without predictions). NaN without positives (Keras gives 0)."""
    weight = np.ones(s.size) if w is None else w
    pos = float(np.sum(weight[y > 0]))
    if pos == 0:
        return float("nan")
    tp, p = _threshold_counts(y, s, weight)
    dtp, dp = np.diff(tp), np.diff(p)
    slope = dtp / dp  # dp > 0: every step adds a tie group
    intercept = tp[:-1] - slope * p[:-1]
    ratio = np.where(p[:-1] > 0, p[1:] / np.where(p[:-1] > 0, p[:-1], 1.0), 1.0)
    return float(np.sum(slope * (dtp + intercept * np.log(ratio))) / pos)


def _threshold_counts(y, s, weight):
    """(true positives, predicted positives) at "score >= each distinct score", from the
    highest down, after "none positive" (a leading 0): weighted counts, ties together."""
    if not s.size:
        return np.zeros(1), np.zeros(1)
    order = np.argsort(-s, kind="stable")
    s, y, weight = s[order], y[order] > 0, weight[order]
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)  # last of each tie group
    return (np.append(0.0, np.cumsum(weight * y)[ends]),
            np.append(0.0, np.cumsum(weight)[ends]))


def _ranked(y, s, w):
    """(labels, scores, weights) without the labels weighing 0 (not there: a padded
    position's NaN), or None when a score is NaN (no ranking)."""
    if w is not None and not np.all(w > 0):
        keep = w > 0
        y, s, w = y[keep], s[keep], w[keep]
    return None if np.isnan(s).any() else (y, s, w)


def _auc_from(y, s, curve="ROC", w=None):
    ranked = _ranked(y, s, w)
    if ranked is None:
        return float("nan")  # no ranking (np.unique put NaN above every score: AUC 1.0)
    y, s, w = ranked
    area = _binary_pr_auc if curve == "PR" else _binary_auc
    if s.ndim == 1:
        return area(y, s, w)
    per_class = [area(y[:, c] if y.ndim == 2 else y == c, s[:, c], w)
                 for c in range(s.shape[1])]
    defined = [a for a in per_class if a == a]
    return float(np.mean(defined)) if defined else float("nan")


def roc_auc(y_true, y_pred, multilabel=False, sample_weight=None):
    """Area under the ROC curve; one-vs-rest macro average for (N, C) probabilities.
    sample_weight (one non-negative number per sample): each positive-negative pair weighs
    the product of their samples' weights (scikit-learn's roc_auc_score)."""
    w = _optional_weights("roc_auc", sample_weight, y_pred)
    labels, scores, w = _auc_scores("roc_auc", y_true, y_pred, multilabel, w=w)
    return _auc_from(labels, scores, "ROC", w)


def _regression_pair(name, y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    if y_true.ndim == 1:
        y_true = y_true.reshape(-1, 1)
    _same_shape(name, y_true, y_pred)
    return y_true.astype(np.float64), y_pred.astype(np.float64)


def _squared_error_sums(name, y_true, y_pred, w=None):
    """[sum of squared errors, number of elements], each element weighing its sample's
    weight with per-sample weights w."""
    y_true, y_pred = _regression_pair(name, y_true, y_pred)
    if w is None:
        return np.array([np.sum((y_pred - y_true) ** 2), y_true.size], dtype=np.float64)
    w = _spread(name, w, y_true.shape)
    return np.array([np.sum(w * (y_pred - y_true) ** 2), np.sum(w)], dtype=np.float64)


def _root_mean(sums):
    return float(np.sqrt(sums[0] / sums[1])) if sums[1] else float("nan")


def root_mean_squared_error(y_true, y_pred, sample_weight=None):
    """sqrt(mean squared error) over all elements; sample_weight (one non-negative number
    per sample): each sample's elements weigh its weight."""
    w = _optional_weights("root_mean_squared_error", sample_weight, y_pred)
    return _root_mean(_squared_error_sums("root_mean_squared_error", y_true, y_pred, w))


def _r2_stats(y_true, y_pred, w=None):
    """Per column: count (total weight with per-sample weights w), mean of y, sum of
    squared deviations of y, sum of squared errors (weighted); and the number of target
    values (unweighted: Keras' n of the adjusted R²)."""
    if y_true.ndim != 2:  # Keras' R2Score refuses them too
        raise ValueError(f"r2_score takes (samples, outputs), got shape {y_true.shape}: "
                         f"an R² per position of a sequence is not defined here")
    if w is None:
        n = y_true.shape[0]
        mean = y_true.mean(axis=0) if n else np.zeros(y_true.shape[1])
        return (n, mean, ((y_true - mean) ** 2).sum(axis=0),
                ((y_true - y_pred) ** 2).sum(axis=0), y_true.size)
    w = _spread("r2_score", w, y_true.shape[:1])[:, None]
    n = float(np.sum(w))
    mean = np.sum(w * y_true, axis=0) / n if n > 0 else np.zeros(y_true.shape[1])
    return (n, mean, np.sum(w * (y_true - mean) ** 2, axis=0),
            np.sum(w * (y_true - y_pred) ** 2, axis=0), y_true.size)


def _r2_five(stats):
    """Stats with the count of target values: an R2Score pickled before it was counted has
    four (its count then taken as samples times columns; it had no num_regressors)."""
    if stats is not None and len(stats) == 4:
        return (*stats, float(stats[0]) * np.size(stats[1]))
    return stats


def _merge_r2(a, b):
    """Chan et al.'s pairwise update: numerically stable, unlike sum(y^2) - sum(y)^2 / n."""
    a = _r2_five(a)
    if a is None:
        return b
    values = a[4] + b[4]  # counted even at weight 0, as Keras counts them
    if a[0] == 0 or b[0] == 0:  # (weights of 0, or no samples: nothing else seen)
        return (*(b if a[0] == 0 else a)[:4], values)
    na, ma, m2a, sa, _ = a
    nb, mb, m2b, sb, _ = b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * nb / n, m2a + m2b + delta ** 2 * na * nb / n, sa + sb, values


_R2_AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")


def _r2_from(stats, class_aggregation="uniform_average", num_regressors=0):
    """The R² of the stats, Keras' R2Score's aggregation over the output columns (None: one
    per column, an array) and, with num_regressors p, its adjusted R² 1 - (1 - R²) (n - 1) /
    (n - p - 1), n the number of target values seen (Keras': samples times outputs); Keras
    falls back to the plain R² where n - p - 1 <= 0, with a warning, and so does pynn."""
    if stats is None or stats[0] == 0:
        return float("nan")
    _, _, ss_tot, ss_res, values = _r2_five(stats)
    per_column = np.where(ss_tot > 0, 1.0 - _ratio(ss_res, ss_tot),
                          np.where(ss_res == 0, 1.0, 0.0))  # constant targets: scikit-learn
    if class_aggregation is None:
        score = per_column
    elif class_aggregation == "variance_weighted_average" and np.sum(ss_tot) > 0:
        score = np.sum(ss_tot * per_column) / np.sum(ss_tot)
    else:  # uniform; or no column varies, where scikit-learn's variance weighting is uniform
        score = np.mean(per_column)
    if num_regressors:
        if num_regressors >= values - 1:
            warnings.warn(f"r2_score: num_regressors={num_regressors} leaves no degree of "
                          f"freedom for {values} target values; the plain R² is given "
                          f"(as Keras)", RuntimeWarning, stacklevel=3)
        else:
            score = 1.0 - (1.0 - score) * (values - 1) / (values - num_regressors - 1)
    return score if class_aggregation is None else float(score)


def r2_score(y_true, y_pred, sample_weight=None):
    """Coefficient of determination, averaged over output columns; sample_weight (one
    non-negative number per sample) weighs each sample's terms (scikit-learn's)."""
    w = _optional_weights("r2_score", sample_weight, y_pred)
    return _r2_from(_r2_stats(*_regression_pair("r2_score", y_true, y_pred), w))


# ---- stateful metrics -----------------------------------------------------------------------
class MetricVariable:
    """A metric's state variable, as `Metric.add_variable` makes it (Keras' metric
    variables): a NumPy array changed by `assign`, `assign_add` and `assign_sub`, read by
    `value`, `numpy()`, `float()` or `np.asarray`; arithmetic and comparisons act on the array
    (`self.tp / (self.tp + self.fp)` is a NumPy value)."""

    def __init__(self, initial, name=None):
        self.name = name
        self._initial = initial
        self._value = initial.copy()

    @property
    def value(self):
        """The current value (a NumPy array)."""
        return self._value

    @property
    def shape(self):
        """The variable's shape."""
        return self._value.shape

    @property
    def dtype(self):
        """The variable's NumPy dtype."""
        return self._value.dtype

    def numpy(self):
        """A copy of the current value."""
        return self._value.copy()

    def assign(self, value):
        """Set the value (broadcast to the variable's shape, cast to its dtype)."""
        value = _host(value)
        try:
            self._value = np.array(np.broadcast_to(value, self.shape), dtype=self.dtype)
        except ValueError:
            raise ValueError(f"variable {self.name!r} has shape {self.shape}, got a value of "
                             f"shape {np.shape(value)}") from None
        return self

    def assign_add(self, delta):
        """Add `delta` to the value."""
        return self.assign(self._value + _host(delta))

    def assign_sub(self, delta):
        """Subtract `delta` from the value."""
        return self.assign(self._value - _host(delta))

    def reset(self):
        """Back to the initial value."""
        return self.assign(self._initial)

    # `+=` updates the variable in place rather than rebinding the attribute to an array
    # (which reset_state would no longer reach)
    __iadd__, __isub__ = assign_add, assign_sub

    def __array__(self, dtype=None, copy=None):
        value = self._value if dtype is None else self._value.astype(dtype)
        return value.copy() if copy else value

    def __float__(self):
        return float(self._value)

    def __int__(self):
        return int(self._value)

    def __bool__(self):
        return bool(self._value)

    def __len__(self):
        return len(self._value)

    def __getitem__(self, index):
        return self._value[index]

    def __format__(self, spec):
        return format(self._value, spec)

    def __repr__(self):
        return f"<MetricVariable name={self.name!r} value={self._value!r}>"


add_array_operators(MetricVariable, lambda v: v._value,
                    comparisons=("lt", "le", "eq", "ne", "gt", "ge"), unary=("neg", "pos", "abs"))
MetricVariable.__hash__ = object.__hash__  # __eq__ compares values; identity still hashes


class Metric(_custom.AutoConfig):
    """A metric accumulated over many batches, with Keras' API:

        m = Precision(); m.update_state(y1, p1); m.update_state(y2, p2); m.result()

    equals precision(concat(y1, y2), concat(p1, p2)). A user's subclass defines
    update_state and result, as in Keras, keeping its state either in variables made in its
    __init__ by `self.add_variable(...)` (after `super().__init__(name=...)`; the base
    reset_state sets them back to their initial values) or in plain attributes that its own
    reset_state sets (fit and evaluate call reset_state before the first batch; the base
    __init__ calls it too, ignoring an AttributeError of a reset_state that needs what the
    subclass's __init__ makes after super().__init__). pynn's own
    metrics define `_batch_state` (the sufficient statistics of one batch), `_merge` and
    `_score` (the value of a state), which also give each batch's own value."""

    default_name = "metric"
    direction = None  # "up" or "down": which way is better (callbacks' mode="auto"), as Keras'
    costly_result = False  # result() needs all data seen (a sort): not recomputed per batch
    _variables = ()
    _state = None  # until reset_state: a subclass overriding it may not call it in __init__

    def __init__(self, name=None, dtype=None):  # dtype: Keras' argument; values are floats
        if name is not None and not isinstance(name, str):  # (Keras' arguments in pynn's
            raise TypeError(f"{type(self).__name__}: name must be a string, got {name!r}; "
                            f"give Keras' other arguments by keyword")  # positions)
        self.name = name or self.default_name
        # pynn's classes set their state up in reset_state, and so may a user's (as pynn's
        # docs showed); but a reset_state may also need what its __init__ makes after this
        # call (Keras' guide: its variables): that one is called by fit and evaluate
        if getattr(type(self).reset_state, "__module__", None) == __name__:
            self.reset_state()
        else:
            try:
                self.reset_state()
            except AttributeError:
                pass

    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation="sum",
                     name=None):
        """A state variable (Keras' Metric.add_variable): a MetricVariable of `shape`,
        starting at `initializer` ("zeros", "ones" or a number), of `dtype` (float64 by
        default); listed by `variables` and set back to its initial value by the base
        reset_state. `aggregation` (across devices in Keras) is accepted and unused."""
        owner = f"{type(self).__name__}.add_variable"
        dtype = np.dtype(dtype or np.float64)
        if initializer is None:  # Keras' add_weight default
            initializer = "zeros"
        fill = ({"zeros": 0, "ones": 1}.get(initializer.lower(), initializer)
                if isinstance(initializer, str) else initializer)
        try:
            initial = np.array(np.broadcast_to(np.asarray(fill, dtype=dtype), shape))
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: initializer must be 'zeros', 'ones' or a number for "
                             f"shape {shape!r}, got {initializer!r}") from None
        variable = MetricVariable(initial, name)
        self._variables = [*self._variables, variable]
        return variable

    def add_weight(self, shape=(), initializer=None, dtype=None, name=None):
        """Keras' other name for add_variable (in its argument order)."""
        return self.add_variable(shape, initializer, dtype, name=name)

    @property
    def variables(self):
        """The variables made by add_variable, in order."""
        return list(self._variables)

    def reset_state(self):
        """Forget every batch seen (fit calls it at each epoch's start, evaluate at its
        start); every variable back to its initial value."""
        self._state = None
        for variable in self._variables:
            variable.reset()

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch of targets and predictions. sample_weight (as Keras'): one
        non-negative number per sample ((N,) or (N, 1)), a number for all, or one per
        position of a sequence's outputs; each sample (each of its outputs) then counts
        with its weight, in a mean, a count, a confusion count, an AUC's pairs."""
        self._add_batch(y_true, y_pred, sample_weight)

    def result(self):
        """The metric over every batch since reset_state, a float (NaN before any)."""
        return self._score(self._state) if self._state is not None else float("nan")

    def _logged_result(self):
        """result() as the logs hold it: one number (F1Score(average=None)'s macro mean)."""
        return self.result()

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Update with one batch and return the result so far (as Keras' Metric.__call__)."""
        if sample_weight is None:
            self.update_state(y_true, y_pred)
        else:
            self.update_state(y_true, y_pred, sample_weight=sample_weight)
        return self.result()

    def _update(self, y_true, y_pred, sample_weight=None):
        """Adds a batch (weighted by sample_weight unless None); returns the metric of that
        batch alone, or for a Keras-style subclass its result so far (as Keras' batch logs
        show)."""
        if type(self).update_state is not Metric.update_state:
            if sample_weight is None:
                self.update_state(y_true, y_pred)
            else:
                _check_takes_weights(self)
                self.update_state(y_true, y_pred, sample_weight=sample_weight)
            return _number(self.name, self._logged_result())
        return self._add_batch(y_true, y_pred, sample_weight)

    def _add_batch(self, y_true, y_pred, sample_weight=None):
        """Merges a batch into the state; returns that batch's own value."""
        if sample_weight is None:  # (a subclass's _batch_state may take no weights)
            batch = self._batch_state(y_true, y_pred)
        else:
            y_true, y_pred = _one_sample_if_numbers(y_true, y_pred)
            batch = self._batch_state(y_true, y_pred, _sample_weights(
                self.name, sample_weight, _samples(y_pred)))
        self._state = batch if self._state is None else self._merge(self._state, batch)
        return self._score(batch)

    def _batch_state(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__}: a Metric subclass defines "
                                  f"reset_state, update_state and result")

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        """The metric get_config describes (Keras' from_config): cls(**config)."""
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={getattr(self, 'name', None)!r}>"


def _check_takes_weights(metric):
    """A user's update_state without sample_weight, as a weighted metric: said so, rather
    than Python's "unexpected keyword argument"."""
    try:
        parameters = inspect.signature(metric.update_state).parameters.values()
    except (TypeError, ValueError):
        return
    if not any(p.name == "sample_weight" or p.kind is p.VAR_KEYWORD for p in parameters):
        raise TypeError(f"metric {metric.name!r} is weighted (weighted_metrics), but its "
                        f"update_state takes no sample_weight: add sample_weight=None to "
                        f"its parameters, or give it to metrics=")


def _number(name, value, samples=None):
    """A metric's value as a float, or an error naming the metric. With `samples` (a batch's
    size), one value per sample (an array whose first axis is the batch) gives their mean,
    as Keras averages such a function."""
    try:
        values = np.asarray(_host(value), dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    if values is not None and samples is not None and values.ndim and \
            values.shape[0] == samples:
        return float(values.mean())
    if values is not None and values.size == 1:
        return float(values.reshape(()))
    per_sample = "" if samples is None else f" (or one per sample: {samples} along axis 0)"
    raise TypeError(f"metric {name!r} must give one number, got {value!r:.80}{per_sample}")


class _Reduce(Metric):
    """Keras' Sum and Mean: values reduced over every update_state(values, sample_weight)
    since reset_state, for a training loop of your own (a loss tracker); compile's metrics
    take (y_true, y_pred) and refuse it. As Keras', each sample (a row of (N, ...) values)
    counts once, its values first reduced to one (their mean for Mean, sum for Sum)."""

    _reduce = staticmethod(np.mean)

    def reset_state(self):
        self._total, self._count = 0.0, 0.0

    def update_state(self, values, sample_weight=None):
        """Add values (a number, or one row per sample); sample_weight: one per sample (or
        per value), or one for all."""
        v, w = _samplewise(type(self).__name__, values, sample_weight, self._reduce)
        self._total += float(v.sum())
        self._count += float(w.sum()) if w is not None else (v.shape[0] if v.ndim else 1)

    def __call__(self, values, sample_weight=None):
        """Update with values and return the result so far (Keras')."""
        self.update_state(values, sample_weight)
        return self.result()

    def _update(self, y_true, y_pred, sample_weight=None):
        raise TypeError(f"{type(self).__name__} reduces the values you give its "
                        f"update_state(values) in a loop of your own; compile(metrics=) "
                        f"takes metrics of targets and predictions")


def _samplewise(owner, values, sample_weight, reduce):
    """Keras' reduce_to_samplewise_values: (values, weights) one per sample, the values
    reduced over the axes the weights lack, weighted, then over the rest."""
    v = np.asarray(_host(values), dtype=np.float64)
    w = None
    if sample_weight is not None:
        w = np.asarray(_host(sample_weight), dtype=np.float64)
        if v.ndim == w.ndim + 1 and v.shape[-1:] == (1,):  # (Keras' same-rank rule)
            v = v[..., 0] if w.ndim != 1 else v
            w = w[..., None] if w.ndim == 1 else w
        elif w.ndim == v.ndim + 1 and w.shape[-1:] == (1,):
            w = w[..., 0] if v.ndim != 1 else w
            v = v[..., None] if v.ndim == 1 else v
        if v.ndim > w.ndim:
            v = reduce(v, axis=tuple(range(w.ndim, v.ndim)))
        try:
            w = np.broadcast_to(w, v.shape)
        except ValueError:
            raise ValueError(f"{owner}: sample_weight of shape {w.shape} does not fit values "
                             f"of shape {v.shape}") from None
        v = v * w
        if w.ndim > 1:
            w = reduce(w, axis=tuple(range(1, w.ndim)))
    if v.ndim > 1:
        v = reduce(v, axis=tuple(range(1, v.ndim)))
    return v, w


class Sum(_Reduce):
    """Keras' Sum: the (weighted) sum of every value given since reset_state."""

    default_name = "sum"
    _reduce = staticmethod(np.sum)

    def result(self):
        return self._total


class Mean(_Reduce):
    """Keras' Mean: the (weighted) mean of every value given since reset_state (NaN before
    any, where Keras gives 0), e.g. a loss tracker: tracker.update_state(loss) per step."""

    default_name = "mean"

    def result(self):
        return self._total / self._count if self._count else float("nan")


class MeanMetricWrapper(Metric):
    """A per-sample mean metric (accuracy, MSE, a user function fn(y_true, y_pred) -> the
    batch's mean, or one value per sample, which is averaged as Keras does): the mean of fn
    over the batches weighted by their sample counts, which equals fn on all of them for
    decomposable metrics. With sample weights, the weighted mean of the values (a user
    function's one per sample, or one for the batch weighing its total weight), as Keras'
    weighted Mean."""

    _total, _count = 0.0, 0

    def __init__(self, fn, name=None, dtype=None, *, direction=None, **kwargs):
        # (Keras' arguments: dtype the session's floatx or None; kwargs go to fn each call)
        if dtype in ("up", "down") and direction is None:  # pynn's third argument before
            warnings.warn("MeanMetricWrapper: the third argument is Keras' dtype; pass the "
                          "direction by keyword (direction='up')", DeprecationWarning,
                          stacklevel=2)
            dtype, direction = None, dtype
        if dtype is not None:
            from .layers.base import _check_layer_dtype

            _check_layer_dtype(name or getattr(fn, "__name__", "metric"), dtype, "metric")
        if direction not in (None, "up", "down"):
            raise ValueError(f"MeanMetricWrapper: direction must be 'up', 'down' or None, got "
                             f"{direction!r}")
        self.fn_kwargs = dict(kwargs)
        self.fn = functools.partial(fn, **kwargs) if kwargs else fn
        # A user's function may say which way is better: fn.direction = "up" or "down";
        # pynn's functions and losses know theirs (Keras: a loss is minimised)
        self.direction = direction or getattr(fn, "direction", None) or _direction_of(fn)
        if name is None and _is_loss(fn):  # a loss object: its name, as Keras logs it
            name = fn.name
        super().__init__(name or getattr(fn, "__name__", "metric"))

    def get_config(self):
        """The function (serialized), name, direction and fn's keyword arguments, as Keras'
        get_config gives them (a subclass: its own arguments)."""
        spec = serialize(self) if type(self) is MeanMetricWrapper else None
        return dict(spec["config"]) if spec else super().get_config()

    @classmethod
    def from_config(cls, config):
        if cls is not MeanMetricWrapper:
            return super().from_config(config)
        config = dict(config)
        fn = config.pop("fn", None)
        fn = deserialize(fn) if isinstance(fn, dict) else fn
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper.from_config: the config names no function "
                            f"(fn), got {fn!r}")
        return cls(fn, **config.pop("kwargs", None) or {}, **config)

    def reset_state(self):
        self._total = 0.0
        self._count = 0

    def _add_batch(self, y_true, y_pred, sample_weight=None):
        k = _samples(y_pred)
        if k == 0:  # nothing to add (Keras): its mean, NaN, would make the total NaN for good
            return self._check_empty(y_true, y_pred, sample_weight)
        if sample_weight is not None:
            y_true, y_pred = _one_sample_if_numbers(y_true, y_pred)
            return self._add_weighted(y_true, y_pred,
                                      _sample_weights(self.name, sample_weight, k))
        value = _number(self.name, _averaging(self.fn)(y_true, y_pred), k)
        self._total += value * k
        self._count += k
        return value

    def _check_empty(self, y_true, y_pred, sample_weight):
        """An empty batch's value, NaN, after the checks a batch gets: its weights, and for
        pynn's functions its shapes (a loss refuses to average no samples: not called, nor a
        user's function)."""
        if sample_weight is not None:
            _sample_weights(self.name, sample_weight, 0)
        with warnings.catch_warnings():  # (the mean of no outputs)
            warnings.simplefilter("ignore", RuntimeWarning)
            _sample_values(self.fn, y_true, y_pred)
        return float("nan")

    def _add_weighted(self, y_true, y_pred, w):
        """A batch's weighted mean (Keras' weighted Mean: sum(w * values) / sum(w)) added:
        pynn's functions give their values per sample (or per position), a loss its
        weighted value, a user's function what it returns (one value per sample, or one for
        the batch, weighing the batch's total weight; as Keras, it is not given the
        weights)."""
        fn, k = _averaging(self.fn), _samples(y_pred)
        values = _sample_values(fn, y_true, y_pred, per_output=True)
        if values is None and _is_loss(fn):  # its weighted sum over the unweighted count
            positions = _host(y_pred).shape[:-1] if np.ndim(y_pred) > 1 else (k,)
            spread = _spread(self.name, w, positions)
            total = _number(self.name, fn(y_true, y_pred, sample_weight=w)) * spread.size
            weight = float(np.sum(spread))
        else:
            if values is None:  # a user's function: per sample, or one for the batch
                value = fn(y_true, y_pred)
                try:
                    values = np.asarray(_host(value), dtype=np.float64)
                except (TypeError, ValueError):
                    values = None
                if values is None or (values.ndim and values.shape[0] != k):
                    values = _number(self.name, value, k)  # one number, or it raises
            total, weight = _weighted_mean_parts(self.name, values, w)
        self._total += total
        self._count += weight
        return total / weight if weight > 0 else float("nan")

    def result(self):
        return self._total / self._count if self._count else float("nan")


def _is_loss(fn):
    return isinstance(fn, _losses.Loss)


def _direction_of(fn):
    """Which way pynn's metric function (or a loss) is better: None for any other."""
    if _is_loss(fn):
        return "down"
    name = next((n for n, f in _FUNCTIONS.items() if f is fn), None)
    return None if name is None else "up" if name.endswith("accuracy") else "down"


def _averaging(fn):
    """fn, or for a loss of another reduction than the mean a copy of it that averages: a
    loss as a metric is the mean of its per-sample losses (its 'sum' would make the metric
    depend on the batch size, its 'none' is no one number)."""
    if _is_loss(fn) and fn.reduction not in _losses._MEAN_REDUCTIONS:
        fn = copy.copy(fn)
        fn.__dict__["_reduction"] = "sum_over_batch_size"  # (not a settings change)
    return fn


class _Wrapped(Metric):
    """A compile() metric wrapping `metric` under the log name `name`: every call goes to
    the metric."""

    def __init__(self, metric, name):
        self.metric = metric
        self.name = name

    @property
    def direction(self):
        return self.metric.direction

    @property
    def costly_result(self):
        return self.metric.costly_result

    def reset_state(self):
        self.metric.reset_state()

    def _update(self, y_true, y_pred, sample_weight=None):
        return self.metric._update(y_true, y_pred, sample_weight)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._update(y_true, y_pred, sample_weight)

    def result(self):
        return self.metric.result()

    def _logged_result(self):
        return self.metric._logged_result()


class _Renamed(_Wrapped):
    """A compile() metric logged under another name than its own: Keras' `name_1`, `name_2`
    for the second and third of one name (the user's object keeps its name)."""

    @property
    def fn(self):  # the native engine recognises pynn's metric functions by it
        return self.metric.fn


class _Weighted(_Wrapped):
    """A compile(weighted_metrics=...) metric: `metric`, updated with each batch's sample
    (and class) weights, logged under `name` (Keras': the metric's name, or "weighted_"
    before it where an unweighted metric has that name). No `fn`: the native engine's
    metrics weigh nothing."""


class _DefaultThreshold(float):
    """0.5 when not given: told apart from an explicit 0.5 by identity (help() shows 0.5)."""


_DEFAULT_THRESHOLD = _DefaultThreshold(0.5)


class _LabelMetric(Metric):
    """A classification metric whose reading of (N, C) outputs is `multilabel`: True pools
    every output as its own binary label, False takes them as C classes; None (the default)
    lets compile choose as it does for the metric's name (labels under binary cross-entropy
    with several outputs); an object never compiled takes classes, one compiled keeps its
    last model's reading."""

    _compiled_multilabel = False  # compile's choice for multilabel=None

    def __init__(self, multilabel=None, name=None):
        self.multilabel = None if multilabel is None else bool(multilabel)
        super().__init__(name)

    @property
    def _pooled(self):
        return self._compiled_multilabel if self.multilabel is None else self.multilabel


class _ConfusionMetric(_LabelMetric):
    class_id = None  # Keras' class_id: count that class's column alone (Precision, Recall)
    # A threshold given (not the default): it reads every output (multilabel=True unless
    # given, Keras' reading); with multilabel=False, (N, C) outputs read as classes would
    # ignore it, so they are refused rather than silently read by their argmax.
    _threshold_given = False

    def __init__(self, threshold=0.5, multilabel=None, name=None):
        # None is Keras' F1Score default: the argmax class for (N, C) outputs, which pynn's
        # multi-class reading takes anyway, and 0.5 for a single output or pooled labels.
        given = threshold is not None and threshold is not _DEFAULT_THRESHOLD
        self.threshold = (None if threshold is None else
                          check_unit_interval(type(self).__name__, "threshold", threshold))
        if given and multilabel is None:  # Keras' reading: each output at the threshold (the
            multilabel = True             # argmax of classes would ignore it)
        self._threshold_given = given
        super().__init__(multilabel, name)

    _per_column = False  # labels read at the threshold: pooled (Precision, Recall) or not

    def _batch_state(self, y_true, y_pred, w=None):
        threshold = 0.5 if self.threshold is None else self.threshold
        if self.class_id is not None:
            y_true, y_pred = _class_column(self.name, y_true, y_pred, self.class_id)
        elif self._threshold_given and not self._pooled and np.ndim(y_pred) >= 2 and \
                np.shape(y_pred)[-1] > 1:
            raise ValueError(
                f"{self.name}: threshold={self.threshold} would be ignored: multilabel=False "
                f"reads outputs of shape {np.shape(y_pred)} as classes (the argmax); leave the "
                f"threshold out, or give multilabel=True to read every output at it (Keras' "
                f"reading)")
        return _confusion(self.name, y_true, y_pred, threshold, self._pooled, self._per_column,
                          w)

    def _merge(self, a, b):
        if a.shape != b.shape:
            raise ValueError(f"{self.name}: a batch with {b.shape[0]} classes after batches "
                             f"with {a.shape[0]}; call reset_state() between data sets")
        return a + b

    def get_config(self):
        # the default threshold as None (a 0.5 given is Keras' reading: see deserialize)
        default = not self._threshold_given and self.threshold == 0.5
        return {"name": self.name, "threshold": None if default else self.threshold,
                "multilabel": self.multilabel}


def _class_column(name, y_true, y_pred, class_id):
    """Keras' class_id: that column of the targets (one-hot, or integer labels read as such)
    and of the predictions, as binary targets and scores."""
    y_true, y_pred = _host(y_true), _host(y_pred)
    if y_pred.ndim != 2 or class_id >= y_pred.shape[1]:
        raise ValueError(f"{name}: class_id={class_id} needs predictions of shape (N, C) with "
                         f"C > {class_id}, got {y_pred.shape}")
    n, c = y_pred.shape
    if y_true.shape == (n, c) or (c == 1 and y_true.size == n):
        return y_true.reshape(n, c)[:, class_id], y_pred[:, class_id]
    return _true_classes(name, y_true, n, c) == class_id, y_pred[:, class_id]


def _one_threshold(owner, thresholds):
    """Keras' `thresholds` (a number, or a list of one) as pynn's single threshold."""
    if isinstance(thresholds, np.ndarray) and thresholds.ndim == 0:  # np.array(0.3)
        return thresholds.item()
    if isinstance(thresholds, (list, tuple, np.ndarray)):
        if len(thresholds) != 1:
            raise NotImplementedError(f"{owner}: thresholds={thresholds!r}: pynn's metric takes "
                                      f"one threshold; make one metric per threshold")
        thresholds = thresholds[0]
    return thresholds


class _PrecisionOrRecall(_ConfusionMetric):
    """Keras' arguments on top of pynn's: `thresholds` (one number: the threshold),
    `class_id` (that class alone: its column of one-hot targets, or integer labels equal to
    it, against its column of the predictions > threshold; `multilabel` then plays no part);
    `top_k` is not supported."""

    def __init__(self, threshold=_DEFAULT_THRESHOLD, multilabel=None, name=None, *,
                 thresholds=None, top_k=None, class_id=None, dtype=None):
        owner = type(self).__name__
        if top_k is not None:
            raise NotImplementedError(f"{owner}: top_k={top_k!r} is not supported (pynn reads "
                                      f"the argmax class, or each output at the threshold)")
        if multilabel is not None and not isinstance(multilabel, (bool, np.bool_)):
            raise TypeError(f"{owner}: multilabel must be True, False or None, got "
                            f"{multilabel!r} (Keras' second argument, top_k, is not supported)")
        if threshold is not _DEFAULT_THRESHOLD and not isinstance(threshold, numbers.Real) \
                and threshold is not None:  # Keras' thresholds=[0.7] given first
            threshold = _one_threshold(owner, threshold)
        if thresholds is not None:
            thresholds = _one_threshold(owner, thresholds)
            if threshold is not _DEFAULT_THRESHOLD and threshold not in (None, thresholds):
                raise ValueError(f"{owner}: give threshold={threshold!r} or "
                                 f"thresholds={thresholds!r}, not both")
            threshold = thresholds
        if class_id is not None:
            if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)) \
                    or class_id < 0:
                raise ValueError(f"{owner}: class_id must be an integer >= 0, got "
                                 f"{class_id!r}")
            class_id = int(class_id)
        self.class_id = class_id
        super().__init__(threshold, multilabel, name)

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {**super().get_config(), "class_id": self.class_id}


class Precision(_PrecisionOrRecall):
    """Stateful precision over all batches seen since reset_state (macro over classes for
    several; Keras' `class_id=k`: class k's precision).

    threshold (0.5, in [0, 1]): a single output, or each output when read as labels, is
    predicted positive above it. Given (first, as Keras' `thresholds`, or as `threshold=` or
    Keras' `thresholds=`: one number, or a list of one), it reads every output at it, as
    Keras (multilabel=True unless given); left out, several outputs read as classes take the
    argmax; given with multilabel=False, (N, C) outputs raise ValueError (the argmax would
    ignore it). multilabel: None lets compile choose, True pools every output as its own
    binary label, False reads (N, C) outputs as C classes (targets one-hot or integer labels;
    multi-hot rows raise ValueError).
    class_id=k: class k alone (its column of one-hot targets, or integer labels equal to k,
    against its column of predictions > threshold). top_k raises NotImplementedError; dtype
    is accepted and unused. The module docstring has the details."""
    default_name = "precision"
    direction = "up"
    _score = staticmethod(_precision_from)


class Recall(_PrecisionOrRecall):
    """Stateful recall over all batches seen since reset_state (macro over classes for several;
    Keras' `class_id=k`: class k's recall).

    threshold, thresholds, multilabel, class_id, top_k and dtype: as Precision's (threshold
    0.5; one given, first as Keras' `thresholds` or by either name, reads every output at it;
    multilabel None lets compile choose; class_id=k: class k alone; top_k raises
    NotImplementedError)."""

    default_name = "recall"
    direction = "up"
    _score = staticmethod(_recall_from)


class F1Score(_ConfusionMetric):
    """F1 over all batches seen since reset_state. `average` is scikit-learn's: "macro" (the
    mean over classes, or over the output columns of labels read at a threshold), "micro"
    (the F1 of the summed counts) or "weighted" (the mean weighted by each class's support);
    Keras' default None: result() is one value per class (an array, as Keras'; a single
    output is one class), and compile's logs, which hold one number per metric, take their
    "macro" mean. A single output is one class: every average is its F1.
    threshold=None (the default, Keras') reads several outputs by their argmax class (Keras:
    the row's largest output) and a single output at 0.5 (Keras would count nearly every
    sample positive); a threshold given reads every output at it, as Keras (multilabel=True,
    unless given)."""

    default_name = "f1_score"
    direction = "up"
    _per_column = True

    def __init__(self, average=None, threshold=None, name=None, dtype=None, *,
                 multilabel=None):  # (Keras' order)
        if isinstance(threshold, (bool, np.bool_)):  # pynn's F1Score(threshold, multilabel)
            raise TypeError(f"F1Score: threshold={threshold!r}; F1Score takes Keras' order "
                            f"(average, threshold, name): give multilabel= by keyword")
        if isinstance(average, numbers.Real) and not isinstance(average, bool):
            # pynn's order before 2026-12-05 (threshold first): say so, not "unknown average"
            raise TypeError(f"F1Score: average={average!r}; F1Score takes Keras' order "
                            f"(average, threshold, name): give the threshold by keyword, "
                            f"F1Score(threshold={average!r})")
        self.average = _check_average(type(self).__name__, average)
        super().__init__(threshold, multilabel, name)  # a threshold given: Keras' reading

    beta = 1.0  # (FBetaScore's argument)

    def _score(self, counts):  # (each batch's logged value: None's the macro mean)
        return _f1_from(counts, self.average, every_class=self._pooled, beta=self.beta)

    def result(self):
        """The score over every batch since reset_state: a float, or with average=None
        one per class (Keras'; NaN before any batch)."""
        if self.average is None and self._state is not None:
            return _f1_from(self._state, "per_class", beta=self.beta)
        return super().result()

    def _logged_result(self):
        # a subclass's result() is what it logs, unless it is per class (average=None):
        # then, as F1Score's own, the macro mean
        if type(self).result is not F1Score.result:
            value = self.result()
            if np.ndim(value) == 0:
                return value
        return super().result()

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {**super().get_config(), "average": self.average}


class FBetaScore(F1Score):
    """Keras' FBetaScore: (1 + beta^2) tp / ((1 + beta^2) tp + beta^2 fn + fp), recall
    weighing beta times as much as precision (beta=2: F2), in Keras' argument order
    (average=None, beta=1.0, threshold=None); average, threshold and multilabel as
    F1Score's."""

    default_name = "fbeta_score"

    def __init__(self, average=None, beta=1.0, threshold=None, name=None, dtype=None, *,
                 multilabel=None):
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or \
                not 0 < beta < float("inf"):
            raise ValueError(f"FBetaScore: beta must be a number > 0, got {beta!r}")
        self.beta = float(beta)
        super().__init__(average, threshold, name, dtype, multilabel=multilabel)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


class AUC(_LabelMetric):
    """Exact area under the ROC curve (`curve="ROC"`, the rank statistic) or the
    precision-recall curve (`curve="PR"`: Keras' interpolation between the points at every
    distinct score, the limit of Keras' value as its thresholds get finer) over every sample
    seen; keeps a copy of the scores (N x outputs floats) and labels, since an exact AUC
    needs the full ranking. Multi-class outputs give the one-vs-rest macro average.

    Keras' arguments: `num_thresholds` (checked: an integer > 1), `thresholds`,
    `num_labels` and `dtype` are accepted for Keras compatibility (and saved) but unused:
    pynn computes the exact area, so nothing is discretised; `from_logits` is accepted and
    changes nothing (a sigmoid keeps the ranking); `multi_label=True` averages the AUC of
    each output column (multi-hot targets; a column holding one class only has no AUC and
    is left out of the mean, where Keras counts it as 0), `multi_label=False` pools every
    output as one
    label (pynn's multilabel=True), and left at None pynn's `multilabel` (or compile's
    choice) decides; `curve="PRGAIN"`, `label_weights` and `summation_method` other than
    "interpolation" raise NotImplementedError. The module docstring has the details."""

    default_name = "auc"
    direction = "up"
    costly_result = True
    _cached = None

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=None, num_labels=None,
                 label_weights=None, from_logits=False, multilabel=None):
        if isinstance(num_thresholds, bool) or \
                not isinstance(num_thresholds, (int, np.integer)) or num_thresholds < 2:
            raise ValueError(f"AUC: num_thresholds must be an integer > 1, got "
                             f"{num_thresholds!r}")
        self.curve = str(curve).upper()
        if self.curve == "PRGAIN":
            raise NotImplementedError("AUC: curve='PRGAIN' is not supported ('ROC' or 'PR')")
        if self.curve not in ("ROC", "PR"):
            raise ValueError(f"AUC: curve must be 'ROC' or 'PR', got {curve!r}")
        if str(summation_method).lower() != "interpolation":
            raise NotImplementedError(f"AUC: summation_method={summation_method!r} is not "
                                      f"supported (pynn's AUC is exact: 'interpolation')")
        if label_weights is not None:
            raise NotImplementedError("AUC: label_weights is not supported")
        if multi_label is not None and multilabel is not None:
            raise ValueError("AUC: give multi_label (Keras') or multilabel (pynn's), not both")
        self.num_thresholds = int(num_thresholds)
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.multi_label = None if multi_label is None else bool(multi_label)
        self.num_labels = num_labels
        self.from_logits = bool(from_logits)
        super().__init__(multilabel, name)

    @property
    def _pooled(self):
        if self.multi_label is not None:  # Keras: False pools, True takes each column
            return not self.multi_label
        return super()._pooled

    def reset_state(self):
        """Forget every batch seen (fit calls it at each epoch's start, evaluate at its
        start)."""
        self._state = None
        self._cached = None

    def _batch_state(self, y_true, y_pred, w=None):
        return [_auc_scores(self.name, y_true, y_pred, self._pooled, self.multi_label, w)]

    def _merge(self, a, b):
        if a[0][1].shape[1:] != b[0][1].shape[1:]:
            raise ValueError(f"{self.name}: batches of different output widths; call "
                             f"reset_state() between data sets")
        self._cached = None
        a.extend(b)  # in place: a + b copied the whole list each batch (quadratic in batches)
        return a

    def _score(self, chunks):
        if len(chunks) == 1:
            y, s, w = chunks[0]
            return self._of(y, s, w)
        if self._cached is None:  # the progress bar may ask often; concatenate once
            weighted = any(w is not None for _, _, w in chunks)
            self._cached = self._of(
                np.concatenate([y for y, _, _ in chunks]),
                np.concatenate([s for _, s, _ in chunks]),
                np.concatenate([np.ones(len(y)) if w is None else w for y, _, w in chunks])
                if weighted else None)
        return self._cached

    def _of(self, y, s, w):
        """The value of every sample seen: labels, scores and weights (None: 1)."""
        return _auc_from(y, s, self.curve, w)

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {"name": self.name, "multilabel": self.multilabel, "curve": self.curve,
                "num_thresholds": self.num_thresholds, "thresholds": self.thresholds,
                "multi_label": self.multi_label, "num_labels": self.num_labels,
                "from_logits": self.from_logits}


class _AtConstraint(AUC):
    """Keras' PrecisionAtRecall, RecallAtPrecision, SensitivityAtSpecificity and
    SpecificityAtSensitivity: the best of one rate over the thresholds at which another
    reaches `value`, exact (a threshold at every distinct score, and one above them all;
    Keras' num_thresholds is accepted and unused), every output pooled as one label (as
    Keras); class_id: that output column alone. 0 when no threshold reaches `value` (as
    Keras), NaN when a rate is undefined (no positives, or no negatives)."""

    _rates = ("", "")  # (the constrained rate, the maximised one)

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        owner = type(self).__name__
        value = check_unit_interval(owner, self._argument, value)
        if class_id is not None and (isinstance(class_id, bool) or
                                     not isinstance(class_id, (int, np.integer))
                                     or class_id < 0):
            raise ValueError(f"{owner}: class_id must be an output's index, got {class_id!r}")
        self.value = float(value)
        self.class_id = None if class_id is None else int(class_id)
        super().__init__(num_thresholds=num_thresholds, name=name, multilabel=True)

    @property
    def _pooled(self):
        return True

    def _batch_state(self, y_true, y_pred, w=None):
        if self.class_id is not None:
            y_true, y_pred = _host(y_true), _host(y_pred)
            if y_pred.ndim != 2 or self.class_id >= y_pred.shape[1]:
                raise ValueError(f"{self.name}: class_id {self.class_id} is not a column of "
                                 f"predictions of shape {y_pred.shape}")
            _same_shape(self.name, y_true, y_pred)
            y_true, y_pred = y_true[:, self.class_id], y_pred[:, self.class_id]
        return [_auc_scores(self.name, y_true, y_pred, True, False, w)]

    def _of(self, y, s, w):
        ranked = _ranked(y, s, w)
        if ranked is None:
            return float("nan")
        rates = _threshold_rates(*ranked)
        bound, best = (rates[name] for name in self._rates)
        if bound is None or best is None:
            return float("nan")
        ok = bound >= self.value
        return float(best[ok].max()) if ok.any() else 0.0

    def get_config(self):
        return {"name": self.name, self._argument: self.value,
                "num_thresholds": self.num_thresholds, "class_id": self.class_id}


def _threshold_rates(y, s, w):
    """Each rate at every threshold, from above every score (nothing predicted positive)
    down through each distinct score: recall (= sensitivity), precision (0 with nothing
    predicted), specificity; a rate whose denominator is 0 for all thresholds is None."""
    tp, predicted = _threshold_counts(y, s, np.ones(s.size) if w is None else w)
    fp = predicted - tp
    pos, neg = tp[-1], fp[-1]
    return {"recall": tp / pos if pos > 0 else None,
            "precision": _ratio(tp, predicted),
            "specificity": 1 - fp / neg if neg > 0 else None}


class PrecisionAtRecall(_AtConstraint):
    """Keras' PrecisionAtRecall(recall): the best precision at a recall of at least
    `recall` (see _AtConstraint)."""

    default_name = "precision_at_recall"
    _argument = "recall"
    _rates = ("recall", "precision")

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds, class_id, name, dtype)


class RecallAtPrecision(_AtConstraint):
    """Keras' RecallAtPrecision(precision): the best recall at a precision of at least
    `precision`."""

    default_name = "recall_at_precision"
    _argument = "precision"
    _rates = ("precision", "recall")

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds, class_id, name, dtype)


class SensitivityAtSpecificity(_AtConstraint):
    """Keras' SensitivityAtSpecificity(specificity): the best sensitivity (recall) at a
    specificity of at least `specificity`."""

    default_name = "sensitivity_at_specificity"
    _argument = "specificity"
    _rates = ("specificity", "recall")

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None,
                 dtype=None):
        super().__init__(specificity, num_thresholds, class_id, name, dtype)


class SpecificityAtSensitivity(_AtConstraint):
    """Keras' SpecificityAtSensitivity(sensitivity): the best specificity at a sensitivity
    (recall) of at least `sensitivity`."""

    default_name = "specificity_at_sensitivity"
    _argument = "sensitivity"
    _rates = ("recall", "specificity")

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None,
                 dtype=None):
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)


class _Count(Metric):
    """Keras' confusion-matrix counts: every entry (each output of each sample) is one binary
    decision, predicted positive when > the threshold (`thresholds`: one number, 0.5 by
    default), a target positive when > 0.5; the result is the count over every batch since
    reset_state, a float (0.0 before any)."""

    condition = None  # (target positive, predicted positive) of the entries counted

    def __init__(self, thresholds=None, name=None, dtype=None):  # Keras' order
        owner = type(self).__name__
        threshold = _one_threshold(owner, thresholds)
        self.threshold = 0.5 if threshold is None else check_unit_interval(owner, "thresholds",
                                                                           threshold)
        super().__init__(name, dtype)

    def reset_state(self):
        """Forget every batch seen: the count is 0 again."""
        self._state = 0.0

    def _batch_state(self, y_true, y_pred, w=None):
        true, pred, _, w = _labels(self.name, y_true, y_pred, self.threshold, True, w)
        target, predicted = self.condition
        counted = (true == target) & (pred == predicted)
        return float(np.count_nonzero(counted) if w is None else np.sum(w[counted]))

    def _merge(self, a, b):
        return a + b

    def _score(self, count):
        return count

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {"name": self.name, "thresholds": self.threshold}


class TruePositives(_Count):
    """Keras' TruePositives: the number of entries (each output of each sample) with target
    and prediction positive, over every batch since reset_state. thresholds: the one
    threshold (a number in [0, 1], or a list of one; 0.5 by default) above which an output
    is predicted positive; several raise NotImplementedError. Targets are positive above
    0.5. dtype is accepted and unused."""

    default_name = "true_positives"
    condition = (1, 1)


class FalsePositives(_Count):
    """Keras' FalsePositives: the number of entries (each output of each sample) predicted
    positive with a negative target, over every batch since reset_state. thresholds: as
    TruePositives' (one number in [0, 1], or a list of one; 0.5 by default)."""

    default_name = "false_positives"
    condition = (0, 1)


class TrueNegatives(_Count):
    """Keras' TrueNegatives: the number of entries (each output of each sample) with target
    and prediction negative, over every batch since reset_state. thresholds: as
    TruePositives' (one number in [0, 1], or a list of one; 0.5 by default)."""

    default_name = "true_negatives"
    condition = (0, 0)


class FalseNegatives(_Count):
    """Keras' FalseNegatives: the number of entries (each output of each sample) predicted
    negative with a positive target, over every batch since reset_state. thresholds: as
    TruePositives' (one number in [0, 1], or a list of one; 0.5 by default)."""

    default_name = "false_negatives"
    condition = (1, 0)


class RootMeanSquaredError(Metric):
    """Stateful sqrt of the mean squared error over all elements seen."""

    default_name = "root_mean_squared_error"
    direction = "down"

    def _batch_state(self, y_true, y_pred, w=None):
        return _squared_error_sums(self.name, y_true, y_pred, w)

    def _merge(self, a, b):
        return a + b

    _score = staticmethod(_root_mean)


class R2Score(Metric):
    """Stateful coefficient of determination, with Keras 3's arguments (in its order):
    class_aggregation "uniform_average" (the mean over output columns, as scikit-learn),
    "variance_weighted_average" (weighted by each column's sum of squared deviations; the
    plain mean when no column varies, as scikit-learn) or None (one R² per column: result()
    is an array, which compile's logs cannot hold); num_regressors p > 0 gives the adjusted
    R², 1 - (1 - R²) (n - 1) / (n - p - 1), n the number of target values seen (samples
    times outputs, as Keras counts them; the plain R², with a warning, where n - p - 1 <= 0).
    dtype is accepted and unused."""

    default_name = "r2_score"
    direction = "up"
    # (an R2Score pickled before these arguments existed has neither)
    class_aggregation = "uniform_average"
    num_regressors = 0

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name=None,
                 dtype=None):
        if class_aggregation not in _R2_AGGREGATIONS:
            hint = (f"; a name is given by keyword: R2Score(name={class_aggregation!r})"
                    if isinstance(class_aggregation, str) else "")
            raise ValueError(f"R2Score: class_aggregation must be one of {_R2_AGGREGATIONS}, "
                             f"got {class_aggregation!r}{hint}")
        if isinstance(num_regressors, bool) or \
                not isinstance(num_regressors, numbers.Integral) or num_regressors < 0:
            raise ValueError(f"R2Score: num_regressors must be an integer >= 0, got "
                             f"{num_regressors!r}")
        self.class_aggregation = class_aggregation
        self.num_regressors = int(num_regressors)
        super().__init__(name, dtype)

    def _batch_state(self, y_true, y_pred, w=None):
        return _r2_stats(*_regression_pair(self.name, y_true, y_pred), w)

    def _merge(self, a, b):
        if np.shape(a[1]) != np.shape(b[1]):
            raise ValueError(f"{self.name}: batches of different output widths; call "
                             f"reset_state() between data sets")
        return _merge_r2(a, b)

    def _score(self, stats):
        return _r2_from(stats, self.class_aggregation, self.num_regressors)

    def get_config(self):
        """The constructor arguments (what model files store)."""
        # the defaults left out, as before these arguments: a subclass whose __init__ takes
        # name alone still rebuilds from its config
        config = {"name": self.name}
        if self.class_aggregation != "uniform_average":
            config["class_aggregation"] = self.class_aggregation
        if self.num_regressors:
            config["num_regressors"] = self.num_regressors
        return config


class _MeanOf(MeanMetricWrapper):
    """One of pynn's per-sample metric functions as a Keras metric class: its `fn` is the
    function itself, which the native engine computes in C++ (see engine._METRIC_NAMES)."""

    function = None  # the metric function, set by each subclass
    up = True  # higher is better (accuracies), else lower (errors)

    def __init__(self, name=None, dtype=None):  # Keras' order: name, dtype
        super().__init__(type(self).function, name or self.default_name,
                         direction="up" if self.up else "down")

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {"name": self.name}


class BinaryAccuracy(_MeanOf):
    """Keras' BinaryAccuracy: the fraction of outputs whose prediction > threshold agrees with
    target > 0.5 (every output of a multi-output model counted)."""

    default_name = "binary_accuracy"
    function = staticmethod(binary_accuracy)

    def __init__(self, name=None, dtype=None, threshold=0.5):  # Keras' order
        self.threshold = check_unit_interval(type(self).__name__, "threshold", threshold)
        super().__init__(name, dtype)
        if self.threshold != 0.5:  # a partial pickles; the engine then leaves it to Python
            self.fn = functools.partial(binary_accuracy, threshold=self.threshold)

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {"name": self.name, "threshold": self.threshold}


class Accuracy(_MeanOf):
    """Keras' Accuracy: the fraction of predictions exactly equal to their targets, for a
    model whose outputs are labels (compile's "accuracy" string is another metric: the
    accuracy of the loss's kind, binary, categorical or sparse)."""

    default_name = "accuracy"
    function = staticmethod(_exact_accuracy)


class CategoricalAccuracy(_MeanOf):
    """Keras' CategoricalAccuracy: the fraction of rows whose argmax is the one-hot target's."""

    default_name = "categorical_accuracy"
    function = staticmethod(categorical_accuracy)


class SparseCategoricalAccuracy(_MeanOf):
    """Keras' SparseCategoricalAccuracy: the fraction of rows whose argmax is the integer
    label."""

    default_name = "sparse_categorical_accuracy"
    function = staticmethod(sparse_categorical_accuracy)


class _TopK(_MeanOf):
    def __init__(self, k=5, name=None, dtype=None):  # Keras' order
        self.k = _check_k(type(self).__name__, k)
        super().__init__(name, dtype)
        self.fn = functools.partial(type(self).function, k=self.k)  # a partial pickles

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {"name": self.name, "k": self.k}


class TopKCategoricalAccuracy(_TopK):
    """Keras' TopKCategoricalAccuracy: the fraction of rows whose one-hot target's class is
    among the k highest predictions (a tie with the k-th counts as in)."""

    default_name = "top_k_categorical_accuracy"
    function = staticmethod(top_k_categorical_accuracy)


class SparseTopKCategoricalAccuracy(_TopK):
    """Keras' SparseTopKCategoricalAccuracy: the fraction of rows whose integer label is among
    the k highest predictions (a tie with the k-th counts as in)."""

    default_name = "sparse_top_k_categorical_accuracy"
    function = staticmethod(sparse_top_k_categorical_accuracy)


class MeanSquaredError(_MeanOf):
    """Keras' MeanSquaredError metric: the mean squared error over every element seen."""

    default_name = "mean_squared_error"
    function = staticmethod(mean_squared_error)
    up = False


class MeanAbsoluteError(_MeanOf):
    """Keras' MeanAbsoluteError metric: the mean absolute error over every element seen."""

    default_name = "mean_absolute_error"
    function = staticmethod(mean_absolute_error)
    up = False


class MeanAbsolutePercentageError(_MeanOf):
    """Keras' MeanAbsolutePercentageError metric: the MAPE over every element seen."""

    default_name = "mean_absolute_percentage_error"
    function = staticmethod(mean_absolute_percentage_error)
    up = False


class MeanSquaredLogarithmicError(_MeanOf):
    """Keras' MeanSquaredLogarithmicError metric: the MSLE over every element seen."""

    default_name = "mean_squared_logarithmic_error"
    function = staticmethod(mean_squared_logarithmic_error)
    up = False


class _LossMean(MeanMetricWrapper):
    """A Keras metric class that is the mean of a loss over the samples seen: pynn's loss
    of that name (weighted as the loss weighs sample weights)."""

    up = False

    def __init__(self, name, options):
        self._options = options
        super().__init__(self._loss(**options), name or self.default_name,
                         direction="up" if self.up else "down")

    def _loss(self, **options):
        return getattr(_losses, type(self).__name__)(**options)

    def get_config(self):
        """The constructor arguments (what model files store)."""
        return {"name": self.name, **self._options}


def _axis_option(axis):
    """Keras' axis, handed to the loss (which takes the last axis only, checked against the
    predictions) unless it is the default."""
    return {} if isinstance(axis, int) and not isinstance(axis, bool) and axis == -1 \
        else {"axis": axis}


class BinaryCrossentropy(_LossMean):
    """Keras' BinaryCrossentropy metric: the mean binary cross-entropy of the samples seen
    (from_logits, label_smoothing as the loss's)."""

    default_name = "binary_crossentropy"

    def __init__(self, name=None, dtype=None, from_logits=False, label_smoothing=0):
        super().__init__(name, {"from_logits": from_logits, "label_smoothing": label_smoothing})


class CategoricalCrossentropy(_LossMean):
    """Keras' CategoricalCrossentropy metric: the mean cross-entropy of one-hot (or
    probability) targets; axis: the last one only (the loss's)."""

    default_name = "categorical_crossentropy"

    def __init__(self, name=None, dtype=None, from_logits=False, label_smoothing=0, axis=-1):
        super().__init__(name, {"from_logits": from_logits, "label_smoothing": label_smoothing,
                                **_axis_option(axis)})


class SparseCategoricalCrossentropy(_LossMean):
    """Keras' SparseCategoricalCrossentropy metric: the mean cross-entropy of integer labels;
    axis: the last one only (the loss's), ignore_class None only."""

    default_name = "sparse_categorical_crossentropy"

    def __init__(self, name=None, dtype=None, from_logits=False, ignore_class=None, axis=-1):
        if ignore_class is not None:  # refused, not approximated
            raise NotImplementedError(
                f"SparseCategoricalCrossentropy metric: ignore_class={ignore_class!r} is not "
                f"supported (the loss takes it; Keras' metric divides by every label, ignored "
                f"ones too, on some of its backends and not on others)")
        super().__init__(name, {"from_logits": from_logits, **_axis_option(axis)})


class Hinge(_LossMean):
    """Keras' Hinge metric: the mean hinge loss (0/1 labels read as -1/1)."""

    default_name = "hinge"

    def __init__(self, name=None, dtype=None):
        super().__init__(name, {})


class SquaredHinge(_LossMean):
    """Keras' SquaredHinge metric: the mean squared hinge loss."""

    default_name = "squared_hinge"

    def __init__(self, name=None, dtype=None):
        super().__init__(name, {})


class CategoricalHinge(_LossMean):
    """Keras' CategoricalHinge metric: the mean categorical hinge loss."""

    default_name = "categorical_hinge"

    def __init__(self, name=None, dtype=None):
        super().__init__(name, {})


class KLDivergence(_LossMean):
    """Keras' KLDivergence metric: the mean Kullback-Leibler divergence of the samples."""

    default_name = "kl_divergence"

    def __init__(self, name=None, dtype=None):
        super().__init__(name, {})


class Poisson(_LossMean):
    """Keras' Poisson metric: the mean Poisson loss of the samples."""

    default_name = "poisson"

    def __init__(self, name=None, dtype=None):
        super().__init__(name, {})


class LogCoshError(_LossMean):
    """Keras' LogCoshError metric: the mean log(cosh(y_pred - y_true)) (named "logcosh", as
    Keras names it)."""

    default_name = "logcosh"

    def __init__(self, name=None, dtype=None):
        super().__init__(name, {})

    def _loss(self, **options):
        return _losses.LogCosh(**options)


class CosineSimilarity(_LossMean):
    """Keras' CosineSimilarity metric: the mean cosine of the angle between target and
    prediction vectors (1 when they point the same way: the loss's value negated); axis: the
    last one only (the loss's)."""

    default_name = "cosine_similarity"
    up = True

    def __init__(self, name=None, dtype=None, axis=-1):
        super().__init__(name, _axis_option(axis))

    def _loss(self, **options):
        return _CosineAgreement(**options)


class _CosineAgreement(_losses.CosineSimilarity):
    """The cosine similarity loss negated: the agreement Keras' metric reports."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        return -super().__call__(y_true, y_pred, sample_weight)

    def prepare_targets(self, y, output_shape, dtype):
        # the loss refuses one output (its gradient is 0); the metric, which needs none,
        # reports the signs' agreement (+-1) as Keras does
        return super(_losses.CosineSimilarity, self).prepare_targets(y, output_shape, dtype)


# ---- names ----------------------------------------------------------------------------------
_FUNCTIONS = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error,
    "mape": mean_absolute_percentage_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "msle": mean_squared_logarithmic_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
}
_CLASSIFICATION = {  # name -> class taking (threshold?, multilabel)
    "precision": Precision, "recall": Recall, "f1_score": F1Score, "f1": F1Score,
    "fbeta_score": FBetaScore, "auc": AUC, "roc_auc": AUC,
}
_CROSSENTROPIES = ("binary_crossentropy", "categorical_crossentropy",
                   "sparse_categorical_crossentropy")
# other losses a metric may be named by (as their Keras loss functions are given)
_LOSSES_AS_METRICS = ("huber", "binary_focal_crossentropy", "categorical_focal_crossentropy")
_KERAS_NAMES = {  # Keras' metric classes named as strings -> pynn's name for the metric
    "AUC": "auc", "Precision": "precision", "Recall": "recall", "F1Score": "f1_score",
    "FBetaScore": "fbeta_score",
    "BinaryAccuracy": "binary_accuracy", "CategoricalAccuracy": "categorical_accuracy",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
    "MeanSquaredError": "mean_squared_error", "MeanAbsoluteError": "mean_absolute_error",
    "RootMeanSquaredError": "root_mean_squared_error", "R2Score": "r2_score",
    "MeanAbsolutePercentageError": "mean_absolute_percentage_error",
    "MeanSquaredLogarithmicError": "mean_squared_logarithmic_error",
    "BinaryCrossentropy": "binary_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "TopKCategoricalAccuracy": "top_k_categorical_accuracy",
    "SparseTopKCategoricalAccuracy": "sparse_top_k_categorical_accuracy",
    "TruePositives": "true_positives", "FalsePositives": "false_positives",
    "TrueNegatives": "true_negatives", "FalseNegatives": "false_negatives",
    "Hinge": "hinge", "SquaredHinge": "squared_hinge", "CategoricalHinge": "categorical_hinge",
    "KLDivergence": "kl_divergence", "Poisson": "poisson", "LogCoshError": "logcosh",
    "CosineSimilarity": "cosine_similarity",
    # Keras 3's other names (its metrics.get): "MSE" is its MeanSquaredError, "bce" its
    # BinaryCrossentropy, "log_cosh_error" the snake case of LogCoshError
    "MSE": "mse", "MAE": "mae", "MAPE": "mape", "MSLE": "msle",
    "bce": "binary_crossentropy", "BCE": "binary_crossentropy", "log_cosh_error": "logcosh",
}
_REGRESSION = {
    "rmse": RootMeanSquaredError, "root_mean_squared_error": RootMeanSquaredError,
    "r2": R2Score, "r2_score": R2Score,
}
_COUNTS = {cls.default_name: cls for cls in (TruePositives, FalsePositives, TrueNegatives,
                                             FalseNegatives)}
# Keras' names of its metrics that are a loss's mean (the cross-entropies: _CROSSENTROPIES)
_LOSS_METRICS = {cls.default_name: cls for cls in (Hinge, SquaredHinge, CategoricalHinge,
                                                   KLDivergence, Poisson, LogCoshError,
                                                   CosineSimilarity)}


# Losses of independent 0/1 labels: their several outputs are labels, not classes
_BINARY_LOSSES = ("binary_crossentropy", "binary_focal_crossentropy")


def accuracy_for(loss_name, output_dim):
    """The accuracy variant Keras would pick for this loss and output width."""
    if loss_name == "sparse_categorical_crossentropy":
        return sparse_categorical_accuracy
    if loss_name == "categorical_crossentropy":
        return categorical_accuracy
    if loss_name in _BINARY_LOSSES or output_dim == 1:
        return binary_accuracy
    return categorical_accuracy


def _stateful_for(fn):
    """pynn's function of a metric that is no mean over samples (precision, AUC, ...), as its
    Metric object with the function's defaults and name: the value over the whole epoch (a
    mean of the batches' values is another number) and, weighted, over weighted samples;
    None for any other function."""
    # the functions' threshold, 0.5, as the default (a threshold given reads every output)
    makers = {precision: lambda: Precision(multilabel=False, name="precision"),
              recall: lambda: Recall(multilabel=False, name="recall"),
              f1_score: lambda: F1Score(multilabel=False, average="macro", name="f1_score"),
              roc_auc: lambda: AUC(multilabel=False, name="roc_auc"),
              root_mean_squared_error: lambda: RootMeanSquaredError(
                  name="root_mean_squared_error"),
              r2_score: lambda: R2Score(name="r2_score")}
    try:
        maker = makers.get(fn)
    except TypeError:  # an unhashable callable object
        return None
    return None if maker is None else maker()


def get(identifier, loss_name=None, output_dim=1, last_axis=None):
    """The Metric object for a compile() metric: a name, a Metric, or a function
    fn(y_true, y_pred) -> float (a per-sample mean, averaged over batches by sample count) or
    one value per sample (averaged); pynn's own precision, recall, f1_score, roc_auc,
    root_mean_squared_error and r2_score are their Metric objects (values over all batches).
    loss_name and output_dim are the model's (compile passes them): 'accuracy' and the
    multi-label reading of precision/recall/F1/AUC depend on them. last_axis: the output's
    last axis when it differs from output_dim (the values per sample): 'accuracy' of a
    sequence's one output per position, (T, 1), is binary as in Keras."""
    # Sigmoid outputs under binary cross-entropy are independent labels (Keras pools them).
    multilabel = loss_name in _BINARY_LOSSES and output_dim > 1
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        identifier = identifier()
    if isinstance(identifier, Metric):
        if isinstance(identifier, _LabelMetric):  # for multilabel=None (the default)
            identifier._compiled_multilabel = multilabel
        if isinstance(identifier, R2Score) and identifier.class_aggregation is None:
            raise ValueError(f"{identifier.name}: R2Score(class_aggregation=None) gives one R² "
                             f"per output, and the logs hold one number per metric; give "
                             f"'uniform_average' or 'variance_weighted_average' to compile")
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:  # serialize's (a config)
        return get(deserialize(identifier), loss_name, output_dim, last_axis)
    if callable(identifier) and not isinstance(identifier, str):
        as_name = _loss_function_metric(identifier)
        if as_name is not None:  # metrics=[pynn.losses.mean_absolute_error]: its name's
            return get(as_name, loss_name, output_dim, last_axis)
        stateful = _stateful_for(identifier)
        return MeanMetricWrapper(identifier) if stateful is None else stateful
    if not isinstance(identifier, str):
        raise ValueError(f"cannot interpret {identifier!r} as a metric")
    # Keras 3 names a metric given as a string by that string: "AUC" logs AUC and val_AUC.
    name = identifier
    identifier = _KERAS_NAMES.get(identifier, identifier)  # Keras' class names: "AUC"
    if identifier in _CROSSENTROPIES + _LOSSES_AS_METRICS:  # a loss as a metric, its batch
        return MeanMetricWrapper(_losses.get(identifier), name)  # means averaged ("down")
    if identifier in _LOSS_METRICS:
        return _LOSS_METRICS[identifier](name=name)
    if identifier.lower() in ("accuracy", "acc"):  # Keras: "Accuracy", "ACC" too
        width = output_dim if last_axis is None else last_axis
        return MeanMetricWrapper(accuracy_for(loss_name, width), name)
    if identifier in _FUNCTIONS:  # (its direction: _direction_of's)
        return MeanMetricWrapper(_FUNCTIONS[identifier], name)
    if identifier in _CLASSIFICATION:
        return _CLASSIFICATION[identifier](multilabel=multilabel, name=name)
    if identifier in _REGRESSION:
        return _REGRESSION[identifier](name=name)
    if identifier in _COUNTS:
        return _COUNTS[identifier](name=name)
    known = ["accuracy", *_FUNCTIONS, *_CLASSIFICATION, *_REGRESSION, *_COUNTS,
             *_CROSSENTROPIES, *_LOSSES_AS_METRICS, *_LOSS_METRICS, *_KERAS_NAMES]
    raise ValueError(f"unknown metric {identifier!r}; known: {', '.join(known)}")


_SAVABLE = {cls.__name__: cls for cls in (Precision, Recall, F1Score, FBetaScore, AUC,
                                            PrecisionAtRecall, RecallAtPrecision,
                                            SensitivityAtSpecificity,
                                            SpecificityAtSensitivity,
                                            RootMeanSquaredError, R2Score, Accuracy,
                                            BinaryAccuracy,
                                            CategoricalAccuracy, SparseCategoricalAccuracy,
                                            MeanSquaredError, MeanAbsoluteError,
                                            MeanAbsolutePercentageError,
                                            MeanSquaredLogarithmicError,
                                            TopKCategoricalAccuracy,
                                            SparseTopKCategoricalAccuracy, *_COUNTS.values(),
                                            BinaryCrossentropy, CategoricalCrossentropy,
                                            SparseCategoricalCrossentropy,
                                            *_LOSS_METRICS.values(),
                                            Mean, Sum)}  # (Mean, Sum: for loops of yours)
# pynn's metric functions a file may name (a file never names anything else of this module)
_METRIC_FUNCTIONS = {fn.__name__: fn for fn in (*_FUNCTIONS.values(), precision, recall,
                                                 f1_score, roc_auc, root_mean_squared_error,
                                                 r2_score)}


_LOSS_FUNCTION_METRICS = {"log_cosh": "logcosh"}  # a loss function's metric name, where
#                                                   it differs from the function's


def _loss_function_metric(fn):
    """The metric name a Keras loss function stands for in compile(metrics=), which files
    save by name; None for another callable."""
    return _LOSS_FUNCTION_METRICS.get(fn.__name__, fn.__name__) \
        if _losses.is_function_form(fn) else None


def serialize(metric):
    """A compile() metric as saved in a model file: its name; {"class_name", "config"} for a
    Metric object (pynn's own classes, or a user's, loaded through custom_objects); a function
    by its name ({"function"}). None for what no file can name (a lambda, pynn's internal
    wrappers)."""
    if isinstance(metric, str):
        return metric
    as_name = _loss_function_metric(metric)
    if as_name is not None:  # pynn.losses.mean_absolute_error
        return as_name
    if isinstance(metric, type) and issubclass(metric, Metric):  # compile() takes classes
        metric = metric()
    if type(metric) is MeanMetricWrapper:  # (Keras' files keep its function too)
        kwargs = getattr(metric, "fn_kwargs", {})
        fn = serialize(metric.fn.func if kwargs else metric.fn)
        if not (isinstance(fn, dict) and "function" in fn):
            return None  # (a lambda, an object)
        config = {"fn": fn, "name": metric.name, "direction": metric.direction}
        return {"class_name": "MeanMetricWrapper",
                "config": {**config, **({"kwargs": kwargs} if kwargs else {})}}
    if isinstance(metric, Metric):
        cls = type(metric)
        if _custom.is_custom(cls) or _SAVABLE.get(cls.__name__) is cls:
            return _custom.describe(metric)
        return None
    name = getattr(metric, "__name__", None)
    if callable(metric) and isinstance(name, str) and name.isidentifier():
        if _METRIC_FUNCTIONS.get(name) is metric:
            return {"function": name}  # one of pynn's, say precision
        if _custom.is_custom(metric):
            registered = _custom.registered_name(metric)
            return {"function": name, "custom": True, **(
                {} if registered is None else {"registered_name": registered})}
    return None


def deserialize(spec):
    """The compile() metric a model file saved (see serialize)."""
    if isinstance(spec, str):
        return spec
    if not isinstance(spec, dict):
        raise ValueError(f"a saved metric is invalid: {spec!r}")
    if "function" in spec:
        name, objects = spec["function"], _custom.in_scope()
        if not spec.get("custom") and name in _METRIC_FUNCTIONS:
            return _METRIC_FUNCTIONS[name]
        registered = _custom.registered_object(name, spec.get("registered_name"))
        if registered is not None:  # (another package's may share the name)
            return registered
        if name in objects:
            return objects[name]
        raise ValueError(f"unknown metric function {name!r}: a metric of your own loads with "
                         f"load_model(..., custom_objects={{{name!r}: {name}}})")
    config = spec.get("config")
    if spec.get("class_name") == "MeanMetricWrapper" and not spec.get("custom") and \
            isinstance(config, dict) and isinstance(config.get("fn"), dict):
        return MeanMetricWrapper(deserialize(config["fn"]), config.get("name"),
                                 direction=config.get("direction"),
                                 **(config.get("kwargs") or {}))
    try:
        metric = _custom.rebuild(spec, _SAVABLE.get, "metric")
    except TypeError as exc:
        raise ValueError(f"a saved metric is invalid: {spec!r} ({exc})") from None
    config = spec.get("config") or {}
    threshold = config.get("threshold")
    if isinstance(metric, _ConfusionMetric) and threshold is not None and \
            "multilabel" in config and (config["multilabel"] is not True or threshold == 0.5):
        # a file from before a threshold implied Keras' reading (every F1Score, Precision and
        # Recall stored one, 0.5 when none was given): it keeps the reading it had (a 0.5
        # given, now stored with multilabel True or False, reads as the default did; a
        # threshold with multilabel=False, the classes' argmax for (N, C) outputs, too)
        metric.multilabel = config["multilabel"]
        metric._threshold_given = False
    return metric


def resolve(identifier, loss_name, output_dim):
    """(name for logs, function or Metric) for a compile() metric (kept for older callers;
    the function is what the native engine recognises)."""
    metric = get(identifier, loss_name, output_dim)
    return metric.name, getattr(metric, "fn", metric)


def engine_function(metric):
    """What the native engines may know a compiled metric by: its function where the
    accumulating metric is pynn's own class (whose values that function gives), else the
    metric itself (a subclass may count otherwise: its update_state or result of its own
    ran nowhere on the engine, which logged the base class's value)."""
    inner = accumulator(metric)
    own = next((c for c in type(inner).__mro__ if c.__module__ == __name__), None)
    # (a subclass that changes none of the counting is pynn's class: its defaults, say)
    same = own is not None and all(getattr(type(inner), name, None) is getattr(own, name, None)
                                   for name in _COUNTING)
    return getattr(metric, "fn", metric) if same else metric


# The methods whose override makes a metric count its own way.
_COUNTING = ("update_state", "result", "reset_state", "_update", "_add_batch",
             "_add_weighted", "_batch_state", "_merge", "_score")


def accumulator(metric):
    """The metric object whose state a compiled metric accumulates into (a wrapper's)."""
    while isinstance(metric, _Wrapped):
        metric = metric.metric
    return metric


def check_targets(metric, y_true, y_pred):
    """Runs a compiled metric's checks of targets against predictions, its state left
    alone: pynn's mean functions (and losses) through their values, pynn's other metrics
    through one batch's statistics. A user's own metric is not run (its code may count the
    calls, or do anything else)."""
    metric = accumulator(metric)
    if isinstance(metric, MeanMetricWrapper):
        if _is_loss(metric.fn) and type(metric.fn).__module__ == _losses.__name__:
            _averaging(metric.fn)(y_true, y_pred)
        else:
            _sample_values(metric.fn, y_true, y_pred)  # (None, uncalled, for a user's)
    elif type(metric).__module__ == __name__ and type(metric).update_state is Metric.update_state:
        metric._batch_state(y_true, y_pred)


def fresh_copy(metric):
    """A copy of `metric` with its own, empty state: for an evaluate() while an epoch is
    still accumulating into the original. pynn's own classes reset by assigning new state,
    so a shallow copy suffices (a deep one copied an epoch of AUC scores); a user's class may
    reset in place, so it is copied deeply, or, if it cannot be, shared as before."""
    if isinstance(metric, (_Weighted, _Renamed)):
        return type(metric)(fresh_copy(metric.metric), metric.name)
    if type(metric).__module__ == __name__ and not metric._variables:
        fresh = copy.copy(metric)
    else:
        try:
            fresh = copy.deepcopy(metric)
        except Exception:  # noqa: BLE001 - a lock, a file: share it (its results may mix)
            return metric
    fresh.reset_state()
    return fresh


def _takes_means(metric):
    """Whether metric is pynn's per-sample mean (its state a total and a count)."""
    kind = type(metric)
    return (isinstance(metric, MeanMetricWrapper) and kind._add_batch is
            MeanMetricWrapper._add_batch and kind.result is MeanMetricWrapper.result)


class EpochLogs(Mapping):
    """The loss and metrics of one epoch (or one evaluate), read as a mapping {name: value so
    far}: the loss and natively computed metrics as batch-size-weighted means, the Metric
    objects through their state (exact for non-decomposable metrics). Values are computed when
    read, so a progress bar that redraws a few times a second costs little."""

    def __init__(self, metrics, largest=math.inf):
        self.metrics = list(metrics)
        self.largest = largest  # the float type's largest value: a value beyond it reads inf
        # per-sample means computed natively join these metrics' own state, so an epoch whose
        # batches ran partly in the engine and partly through the layers (an option the
        # engine lacks set mid-epoch) reads one mean over all of them
        self._means = {m.name: m for m in self.metrics if _takes_means(m)}
        self.reset()

    def reset(self):
        self._sums = {}
        self._seen = 0
        for m in self.metrics:
            m.reset_state()

    def add_means(self, k, values):
        """A batch of k samples whose loss and metrics were computed elsewhere (natively)."""
        self._seen += k
        for key, v in values.items():
            metric = self._means.get(key)
            if metric is not None:
                metric._total += v * k
                metric._count += k
            else:
                self._sums[key] = self._sums.get(key, 0.0) + v * k

    def add_means_of_batches(self, ks, names, rows):
        """add_means for many batches at once: ks their sizes, rows[b, j] the mean of
        names[j] over batch b. The same sums, in the same order, to the bit (a running sum
        started from the total so far), without a Python step per batch."""
        ks = np.asarray(ks, dtype=np.int64)
        seen = int(ks.sum())
        self._seen += seen
        columns = dict(zip(names, range(len(names))))  # a repeated name: its last column
        for key, j in columns.items():
            metric = self._means.get(key)
            start = metric._total if metric is not None else self._sums.get(key, 0.0)
            if isinstance(start, float):  # (numpy's float64 too: the same arithmetic)
                total = float(np.cumsum(np.concatenate(([start], rows[:, j] * ks)))[-1])
            else:  # (a float32 total, say: its own rounding at each batch, as add_means)
                total = start
                for k, v in zip(ks.tolist(), rows[:, j].tolist()):
                    total += v * k
            if metric is not None:
                metric._total = total
                metric._count += seen
            else:
                self._sums[key] = total

    def update(self, k, loss, y_true, y_pred, sample_weight=None):
        """A batch of k samples: its loss, and predictions for the metrics (numpy arrays);
        sample_weight (numpy, or None) weighs the weighted metrics' samples. Returns the
        batch's own logs {loss, metric of this batch}."""
        self.add_means(k, {"loss": loss})
        return {"loss": loss, **{
            m.name: m._update(y_true, y_pred, sample_weight) if isinstance(m, _Weighted)
            else m._update(y_true, y_pred) for m in self.metrics}}

    def _names(self):
        if not self._seen:
            return []
        return list(dict.fromkeys([*self._sums, *(m.name for m in self.metrics)]))

    def __getitem__(self, key):
        if key in self._sums:
            if not self._seen:
                return float("nan")
            return self.in_range(self._sums[key] / self._seen)
        if self._seen:
            for m in self.metrics:
                if m.name == key:
                    return self.in_range(_number(m.name, m._logged_result()))
        raise KeyError(key)

    def in_range(self, value):
        """value, or +-inf beyond the float type's range (NaN stays)."""
        return math.copysign(math.inf, value) if abs(value) > self.largest else value

    def __iter__(self):
        return iter(self._names())

    def so_far(self, batch_logs):
        """Keras' batch logs: each value as the epoch's so far, except a metric whose result
        costs a pass over everything seen (AUC's sort), which gives `batch_logs`' value of the
        batch alone; recomputing it after every batch made an epoch quadratic in its size."""
        costly = {m.name for m in self.metrics if m.costly_result}
        return {k: batch_logs[k] if k in costly and k in batch_logs else self[k] for k in self}

    def __len__(self):
        return len(self._names())


__all__ = ["AUC", "Accuracy", "BinaryAccuracy", "BinaryCrossentropy", "CategoricalAccuracy", "Mean",
           "Sum", "CategoricalCrossentropy", "CategoricalHinge", "CosineSimilarity", "F1Score",
           "FBetaScore",
           "FalseNegatives", "FalsePositives", "Hinge", "KLDivergence", "LogCoshError",
           "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanMetricWrapper",
           "MeanSquaredError", "MeanSquaredLogarithmicError", "Metric", "MetricVariable",
           "Poisson", "Precision", "PrecisionAtRecall", "R2Score", "Recall",
           "RecallAtPrecision", "RootMeanSquaredError", "SensitivityAtSpecificity",
           "SpecificityAtSensitivity",
           "SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
           "SparseTopKCategoricalAccuracy", "SquaredHinge", "TopKCategoricalAccuracy",
           "TrueNegatives", "TruePositives", "binary_accuracy", "categorical_accuracy",
           "f1_score", "get", "mean_absolute_error", "mean_absolute_percentage_error",
           "mean_squared_error", "mean_squared_logarithmic_error", "precision", "r2_score",
           "recall", "roc_auc", "root_mean_squared_error", "sparse_categorical_accuracy",
           "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy"]
