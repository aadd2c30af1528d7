"""Model.export (Keras 3's name for exporting for inference): ONNX, pynn's one format,
checked by running the file in onnxruntime against model.predict."""

from __future__ import annotations

import numpy as np
import pytest

import pynn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _model():
    pynn.set_seed(3)
    return pynn.Sequential([pynn.Input((6,)), pynn.Dense(8, activation="tanh"),
                            pynn.Dense(3, activation="softmax")])


def test_export_writes_onnx_that_predicts_as_the_model(tmp_path, rng, capsys):
    model = _model()
    x = rng.normal(size=(11, 6)).astype(np.float32)
    proto = model.export(tmp_path / "m.onnx", format="onnx", verbose=True)
    assert isinstance(proto, onnx.ModelProto)
    assert "m.onnx" in capsys.readouterr().out
    session = ort.InferenceSession(str(tmp_path / "m.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert np.abs(session.run(["output"], {"input": x})[0] - model.predict(x)).max() < 1e-5
    model.export(tmp_path / "quiet.onnx")  # format defaults to pynn's one format
    assert capsys.readouterr().out == ""
    assert onnx.load(str(tmp_path / "quiet.onnx")) == proto


def test_export_passes_the_opset_on(tmp_path):
    model = _model()
    newest = onnx.defs.onnx_opset_version()
    proto = model.export(tmp_path / "m.onnx", opset_version=newest)
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {newest}
    with pytest.raises(ValueError, match="opset must be an integer from 13"):
        model.export(tmp_path / "old.onnx", opset_version=12)


@pytest.mark.parametrize("fmt", ["tf_saved_model", "openvino", "litert"])
def test_keras_other_formats_are_named_as_unsupported(tmp_path, fmt):
    with pytest.raises(NotImplementedError, match="ONNX only"):
        _model().export(tmp_path / "m", format=fmt)
    assert not list(tmp_path.iterdir())


def test_bad_format_and_input_signature_are_refused(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="format must be 'onnx'"):
        model.export(tmp_path / "m.onnx", format="ONNX2")
    with pytest.raises(TypeError, match="format must be a string"):
        model.export(tmp_path / "m.onnx", format=None)
    with pytest.raises(NotImplementedError, match=r"takes \(batch, \*\(6,\)\)"):
        model.export(tmp_path / "m.onnx", input_signature=[(None, 6)])
    assert not list(tmp_path.iterdir())
