"""Metrics: plain functions on arrays (`pynn.metrics.accuracy(y_true, y_pred)`) and the names
`compile(metrics=[...])` accepts. "accuracy" picks binary, categorical or sparse accuracy
from the loss and the output shape, as Keras does. Each function returns the mean over the
samples; `fit` averages them over an epoch weighted by batch size.
"""

from __future__ import annotations

import numpy as np


def _pair(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_pred.ndim == 1:
        y_pred = y_pred.reshape(-1, 1)
    if y_true.ndim == 1 and y_pred.shape[1] == 1:
        y_true = y_true.reshape(-1, 1)
    return y_true, y_pred


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("binary_accuracy", y_true, y_pred)
    return float(np.mean((y_pred > threshold) == (y_true > 0.5)))


def categorical_accuracy(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("categorical_accuracy", y_true, y_pred)
    return float(np.mean(np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)))


def sparse_categorical_accuracy(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true).reshape(-1)
    if y_true.shape[0] != y_pred.shape[0]:
        raise ValueError(f"sparse_categorical_accuracy: {y_true.shape[0]} labels for "
                         f"{y_pred.shape[0]} predictions")
    return float(np.mean(np.argmax(y_pred, axis=-1) == y_true))


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("mean_squared_error", y_true, y_pred)
    return float(np.mean((y_pred.astype(np.float64) - y_true) ** 2))


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _pair(y_true, y_pred)
    _same_shape("mean_absolute_error", y_true, y_pred)
    return float(np.mean(np.abs(y_pred.astype(np.float64) - y_true)))


def _same_shape(name, y_true, y_pred):
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true has shape {y_true.shape}, y_pred {y_pred.shape}")


_FUNCTIONS = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "mse": mean_squared_error, "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error, "mean_absolute_error": mean_absolute_error,
}


def accuracy_for(loss_name, output_dim):
    """The accuracy variant Keras would pick for this loss and output width."""
    if loss_name == "sparse_categorical_crossentropy":
        return sparse_categorical_accuracy
    if loss_name == "categorical_crossentropy":
        return categorical_accuracy
    if loss_name == "binary_crossentropy" or output_dim == 1:
        return binary_accuracy
    return categorical_accuracy


def resolve(identifier, loss_name, output_dim):
    """(name for logs, function(y_true, y_pred) -> float) for a compile() metric."""
    if callable(identifier) and not isinstance(identifier, str):
        return getattr(identifier, "__name__", "metric"), identifier
    if not isinstance(identifier, str):
        raise ValueError(f"cannot interpret {identifier!r} as a metric")
    if identifier in ("accuracy", "acc"):
        return identifier, accuracy_for(loss_name, output_dim)
    fn = _FUNCTIONS.get(identifier)
    if fn is None:
        raise ValueError(f"unknown metric {identifier!r}; known: accuracy, "
                         f"{', '.join(_FUNCTIONS)}")
    return identifier, fn
