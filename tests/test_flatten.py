"""Flatten: multi-axis samples (e.g. images) into a Dense stack, on every path: shapes and
errors, its gradient, the native engine against the layer path, predict of single rows,
saving, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from conftest import AVAILABLE
from gradcheck import assert_close_grad, numeric_grad
from pynn import engine as engine_mod


def _model(hidden="relu", out=3):
    return pynn.Sequential([pynn.Input((4, 5)), pynn.Flatten(),
                            pynn.Dense(7, activation=hidden),
                            pynn.Dense(out, activation="softmax")])


def test_shapes_summary_and_bad_inputs():
    model = _model()
    assert model.output_shape == (3,) and model.layers[2].input_shape == (20,)
    assert pynn.Flatten().compute_output_shape((2, 3, 4)) == (24,)
    lines = []
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.summary(print_fn=lines.append)
    assert "flatten" in lines[0] and "(None, 20)" in lines[0]
    for bad in (np.zeros((2, 20)), np.zeros((2, 4, 6)), np.zeros((2, 5, 4))):
        with pytest.raises(ValueError, match=r"shape \(samples, 4, 5\)"):
            model.predict(bad)
    # without the Flatten, Dense applies to the last axis (Keras'): (None, 4, 3)
    assert pynn.Sequential([pynn.Input((4, 5)), pynn.Dense(3)]).output_shape == (4, 3)


def test_gradient(float64_numpy, rng):
    b = float64_numpy
    layer = pynn.Flatten()
    layer.build((3, 4), b, "float64")
    x = rng.normal(size=(2, 3, 4))
    r = rng.normal(size=(2, 12))

    def f():
        return float((layer.forward(x) * r).sum())

    assert layer.forward(x).shape == (2, 12)
    assert_close_grad(layer.backward(r), numeric_grad(f, x), what="d x")


@pytest.mark.skipif("cpu" not in AVAILABLE, reason="the native engine needs pynn._C")
def test_native_engine_matches_layer_path_and_predicts_rows(rng):
    x = rng.normal(size=(90, 4, 5)).astype(np.float32)
    y = rng.integers(0, 3, 90)
    runs = {}
    for engine in ("native", "layers"):
        pynn.set_seed(4)
        model = _model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], backend="cpu")
        assert engine_mod.unsupported_reason(model) is None
        runs[engine] = (model, model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                                         engine=engine).history)
    (native, h_native), (layers, h_layers) = runs["native"], runs["layers"]
    np.testing.assert_allclose(h_native["loss"], h_layers["loss"], rtol=1e-4)
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    full = native.predict(x)
    np.testing.assert_allclose(full, native._forward(x, training=False, logits=False),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(native.predict(x[3:4]), full[3:4])
    np.testing.assert_array_equal(native.predict(np.asfortranarray(x[:5])), full[:5])


def test_built_from_data_and_saved(tmp_path, rng):
    model = pynn.Sequential([pynn.Flatten(), pynn.Dense(2)])  # no input shape: from x
    model.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(12, 2, 3)).astype(np.float32)
    model.fit(x, rng.normal(size=(12, 2)), epochs=1, verbose=0)
    assert model.input_shape == (2, 3)
    model.save(tmp_path / "m.npz")
    again = pynn.load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_onnx_export(tmp_path, rng):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _model(hidden="gelu")
    x = rng.normal(size=(6, 4, 5)).astype(np.float32)
    pynn.onnx.export(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, model.predict(x), atol=1e-5)
