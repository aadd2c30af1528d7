"""Hypothesis fuzzing of fit/predict/evaluate with random shapes, dtypes and values: a result
or a clear ValueError/TypeError, never a crash; and the NaN check's opt-out."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pynn

DTYPES = [np.float32, np.float64, np.int64, np.int8, np.bool_, np.complex64, object, "U3"]


def _model(features, loss):
    pynn.set_seed(0)
    out = 3 if "categorical" in loss else 1
    act = "softmax" if "categorical" in loss else ("sigmoid" if loss == "binary_crossentropy"
                                                   else None)
    model = pynn.Sequential([pynn.Input((features,)), pynn.Dense(4, activation="relu"),
                             pynn.Dense(out, activation=act)])
    model.compile(optimizer="adam", loss=loss)
    return model


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 12), feats=st.integers(0, 6), model_feats=st.integers(1, 5),
       ndim=st.integers(0, 3), x_dtype=st.sampled_from(DTYPES),
       y_len=st.integers(0, 13), y_cols=st.integers(0, 4),
       loss=st.sampled_from(["mse", "binary_crossentropy", "sparse_categorical_crossentropy",
                             "categorical_crossentropy"]),
       special=st.sampled_from([None, np.nan, np.inf, 1e30, -5.0]),
       batch_size=st.sampled_from([None, 1, 3, 0, -1]))
def test_fit_predict_never_crash(n, feats, model_feats, ndim, x_dtype, y_len, y_cols, loss,
                                 special, batch_size):
    shape = {0: (), 1: (n,), 2: (n, feats), 3: (n, feats, 2)}[ndim]
    rng = np.random.default_rng(n * 131 + feats)
    try:
        x = rng.normal(size=shape).astype(x_dtype)
    except (TypeError, ValueError):
        x = np.zeros(shape, dtype=x_dtype)
    if special is not None and x.size and x.dtype.kind == "f":
        x.flat[0] = special
    y = rng.integers(0, 3, size=(y_len,) if y_cols == 0 else (y_len, y_cols)).astype(float)
    model = _model(model_feats, loss)
    for call in (lambda: model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0),
                 lambda: model.predict(x, batch_size=batch_size),
                 lambda: model.evaluate(x, y, batch_size=batch_size)):
        try:
            call()
        except (ValueError, TypeError) as exc:
            assert str(exc)


def test_check_finite_opt_out():
    model = _model(2, "mse")
    x = np.array([[np.nan, 1.0], [0.0, 1.0]], np.float32)
    with pytest.raises(ValueError, match="set_check_finite"):
        model.predict(x)
    pynn.config.set_check_finite(False)
    try:
        out = model.predict(x)
        assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
        model.fit(x, np.array([1.0, np.nan]), verbose=0)  # trains into NaN, as asked
    finally:
        pynn.config.set_check_finite(True)
    with pytest.raises(ValueError):
        model.predict(x)
