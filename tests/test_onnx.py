"""ONNX export checked by running the file in onnxruntime against model.predict."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from conftest import exact_gelu

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from pynn import onnx as pynn_onnx  # noqa: E402


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


@pytest.mark.parametrize("activation", list(pynn.activations.NAMES))
def test_every_activation(tmp_path, rng, activation):
    pynn.set_seed(0)
    model = pynn.Sequential([pynn.Input((7,)), pynn.Dense(9, activation=activation),
                             pynn.Dense(4, use_bias=False), pynn.Activation(activation)])
    x = rng.normal(size=(13, 7)).astype(np.float32)
    pynn_onnx.export(model, tmp_path / "m.onnx")
    got, want = _run(tmp_path / "m.onnx", x), model.predict(x)
    if activation == "exponential":  # (values in the thousands: relative)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    else:
        assert np.abs(got - want).max() < 1e-5


@pytest.mark.parametrize("activation", ["sigmoid", "silu"])
def test_sigmoid_tails_match_predict(tmp_path, activation):
    """onnxruntime's float Sigmoid gives 0 at -20 where pynn (and the exact value) give
    2.06e-9, and is off by more than 1e-3 relative below -10.25."""
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1, activation=activation,
                                                          kernel_initializer="ones")])
    x = np.linspace(-30, 30, 121, dtype=np.float32).reshape(-1, 1)
    pynn_onnx.export(model, tmp_path / "s.onnx")
    got, want = _run(tmp_path / "s.onnx", x), model.predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-30)


def test_trained_model_with_dropout_and_batchnorm(tmp_path, rng):
    pynn.set_seed(1)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(16, activation="relu"),
                             pynn.Dropout(0.3), pynn.BatchNormalization(),
                             pynn.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.normal(size=(64, 5)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, size=64), epochs=3, batch_size=16, verbose=0)
    pynn_onnx.export(model, tmp_path / "t.onnx")
    assert np.abs(_run(tmp_path / "t.onnx", x) - model.predict(x)).max() < 1e-5
    assert _run(tmp_path / "t.onnx", x[:1]).shape == (1, 3)  # any batch size


def test_unsupported_layer_and_unbuilt_model(tmp_path):
    class Custom(pynn.layers.Layer):
        def forward(self, x, training=False, logits=False):
            return x

    class DoubledDense(pynn.Dense):  # a built-in's subclass computes something else
        def forward(self, x, training=False, logits=False):
            return 2 * super().forward(x, training, logits)

    with pytest.raises(ValueError, match="no ONNX equivalent"):
        pynn_onnx.export(pynn.Sequential([pynn.Input((2,)), Custom()]), tmp_path / "c.onnx")
    with pytest.raises(ValueError, match="no ONNX equivalent"):
        pynn_onnx.export(pynn.Sequential([pynn.Input((2,)), DoubledDense(3)]),
                         tmp_path / "d.onnx")
    with pytest.raises(ValueError, match="build the model"):
        pynn_onnx.export(pynn.Sequential([pynn.Dense(2)]), tmp_path / "u.onnx")
    # a graph under a model file's name: load_model then failed with a zip-file message
    built = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    for name in ("m.keras", "m.weights.h5", "m.H5", "m.npz"):
        with pytest.raises(ValueError, match="goes under a .onnx name"):
            built.export(tmp_path / name)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("activation", list(pynn.activations.NAMES))
def test_float64_model_exports_in_float64(tmp_path, rng, activation):
    """It was declared FLOAT with its weights rounded: float64 inputs failed in onnxruntime
    (which also lacks double LeakyRelu and Elu kernels: those are built from basic ops)."""
    previous = pynn.floatx()
    pynn.set_floatx("float64")
    try:
        model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(5, activation=activation),
                                 pynn.BatchNormalization(epsilon=0.1), pynn.Dense(2),
                                 pynn.Activation(activation)])
        bn = model.layers[2]  # trained-looking statistics: the epsilon counts
        bn.set_weights([rng.uniform(0.5, 2, 5), rng.normal(size=5), rng.normal(size=5),
                        rng.uniform(0.01, 0.1, 5)])
        x = rng.normal(size=(7, 6))
        expected = model.predict(x)
        proto = pynn_onnx.export(model, tmp_path / "m64.onnx")
    finally:
        pynn.set_floatx(previous)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    got = _run(tmp_path / "m64.onnx", x)
    assert got.dtype == np.float64
    # float32 weights would differ by ~1e-7, the BatchNormalization operator's float32
    # epsilon by ~1e-9 (folded into Mul/Add now); onnxruntime's tanh gelu by up to ~4e-7 (now
    # built from basic operators in double)
    if activation == "gelu":
        bound = _float_gelu_error_bound(model, x)
        assert np.all(np.abs(got - expected) <= bound), (got - expected, bound)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_float64_gelu_keeps_values_beyond_float32s_range(tmp_path, rng):
    """The float Gelu of a float64 graph turned 1e39 into inf; above 10 gelu(x) is x, and
    below -10 it is under 1e-22 in size (onnxruntime's float Gelu gives 0 there: the atol
    was 1e-80, and a draw in [-20, -10], about one run in 60, failed)."""
    previous = pynn.floatx()
    pynn.set_floatx("float64")
    try:
        model = pynn.Sequential([pynn.Input((1,)), pynn.Activation("gelu")])
        big = 10.0 ** rng.uniform(1, 300, 20)
        x = np.concatenate([big, -big, [10.0, 10.0 + 1e-9, -20.0, 3e38, 4e38]])[:, None]
        expected = model.predict(x)
        pynn_onnx.export(model, tmp_path / "g.onnx")
    finally:
        pynn.set_floatx(previous)
    got = _run(tmp_path / "g.onnx", x)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-22)


@pytest.mark.parametrize("activation", ["elu", "selu"])
def test_elu_and_selu_keep_their_digits_near_zero(tmp_path, activation):
    # onnxruntime's Elu and Selu compute exp(x) - 1: 1e-2 relative error at x = -1e-6
    model = pynn.Sequential([pynn.Input((1,)), pynn.Activation(activation)])
    x = -np.logspace(-9, 1.5, 200, dtype=np.float32)[:, None]
    x = np.concatenate([x, -x, [[0.0], [-80.0]]]).astype(np.float32)
    pynn_onnx.export(model, tmp_path / "e.onnx")
    np.testing.assert_allclose(_run(tmp_path / "e.onnx", x), model.predict(x), rtol=1e-6,
                               atol=0)


def _float_gelu_error_bound(model, x):
    """How far the exported float64 model may be from pynn's with its exact gelus computed in
    float32 (onnxruntime has no double Erf): each gelu within 2e-7 |input| (the input's
    rounding to float32 and onnxruntime's float Gelu, within 1.2e-7 |input| over [-8, 8]),
    carried through BatchNormalization's scale, the second Dense's weights and the last gelu
    (slope under 1.13), doubled. The error grows with the activations: a fixed 2e-7 (relative
    and absolute) failed 35 random models in 1000; the errors stay under 0.23 of this bound
    in 2000, which the tanh form's 1e-4-sized differences would pass far beyond."""
    dense1, batch_norm, dense2 = (layer for layer in model.layers if layer.get_weights())
    kernel1, bias1 = dense1.get_weights()
    gamma, beta, mean, variance = batch_norm.get_weights()
    kernel2, bias2 = dense2.get_weights()
    first_inputs = x @ kernel1 + bias1
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    hidden = exact_gelu(first_inputs)
    second_inputs = ((hidden - mean) * scale + beta) @ kernel2 + bias2
    hidden_error = 2e-7 * np.abs(first_inputs) * np.abs(scale)
    return 2 * (1.13 * hidden_error @ np.abs(kernel2) + 2e-7 * np.abs(second_inputs))


@pytest.mark.parametrize("floatx", ["float32", "float64"])
def test_leaky_relu_keeps_a_slope_other_than_the_default(tmp_path, rng, floatx):
    """The other export tests used the slope 0.2 (leaky_relu's default): a slope exported as
    0.2 whatever the model's (float32's LeakyRelu alpha, float64's Where/Mul) went unnoticed."""
    previous = pynn.floatx()
    pynn.set_floatx(floatx)
    try:
        pynn.set_seed(0)
        model = pynn.Sequential([
            pynn.Input((5,)), pynn.Dense(7, activation=pynn.activations.Spec("leaky_relu", 0.05)),
            pynn.Dense(4), pynn.layers.LeakyReLU(0.7)])
        x = rng.normal(size=(9, 5)).astype(floatx)
        expected = model.predict(x)
        pynn_onnx.export(model, tmp_path / "leaky.onnx")
    finally:
        pynn.set_floatx(previous)
    assert (expected < 0).any()  # the last slope matters
    tol = 1e-5 if floatx == "float32" else 1e-12
    np.testing.assert_allclose(_run(tmp_path / "leaky.onnx", x), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("batch", [1, 7])
def test_multi_axis_samples_declare_their_output_shape(tmp_path, rng, batch):
    """(batch, 3, 4) samples through an Activation: the declared output shape is the one the
    graph computes (it said (batch, 12)), at any batch size."""
    model = pynn.Sequential([pynn.Input((3, 4)), pynn.Activation("tanh")])
    proto = pynn_onnx.export(model, tmp_path / "a.onnx")
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 4]
    x = rng.normal(size=(batch, 3, 4)).astype(np.float32)
    got = _run(tmp_path / "a.onnx", x)
    assert got.shape == (batch, 3, 4)
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-6, atol=1e-6)
    onnx.checker.check_model(onnx.shape_inference.infer_shapes(proto), full_check=True)


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("activation", [a for a in pynn.activations.NAMES
                                        if not a.startswith("gelu")])
def test_older_opsets_for_models_without_gelu(tmp_path, rng, opset, activation):
    pynn.set_seed(2)
    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(8, activation=activation),
                             pynn.BatchNormalization(), pynn.Dense(3, activation="softmax")])
    x = rng.normal(size=(11, 6)).astype(np.float32)
    pynn_onnx.export(model, tmp_path / "m.onnx", opset=np.int64(opset))  # numpy ints too
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == opset
    assert np.abs(_run(tmp_path / "m.onnx", x) - model.predict(x)).max() < 1e-5


def test_default_opset_is_the_lowest_the_model_needs(tmp_path):
    """The most runtimes load it: 13 without gelu, 20 with (it was always 20); an opset newer
    than the installed onnx knows wrote a file onnxruntime refused."""
    plain = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="relu")])
    gelu = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="gelu")])
    proto = pynn_onnx.export(plain, tmp_path / "p.onnx")
    assert proto.opset_import[0].version == 13
    assert proto.ir_version == 7  # opset 13's; the installed onnx's own is newer
    assert onnx.load(str(tmp_path / "p.onnx")).ir_version == 7
    assert pynn_onnx.export(gelu, tmp_path / "g.onnx").opset_import[0].version == 20
    newest = onnx.defs.onnx_opset_version()
    with pytest.raises(ValueError, match=f"to {newest} \\(the newest this onnx"):
        pynn_onnx.export(plain, tmp_path / "n.onnx", opset=newest + 1)
    assert not (tmp_path / "n.onnx").exists()


@pytest.mark.parametrize("opset,match", [(19, "uses gelu"), (12, "from 13"), (13.0, "from 13"),
                                         ("20", "from 13")])
def test_opset_too_old_for_the_model_is_refused(tmp_path, opset, match):
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="gelu")])
    with pytest.raises(ValueError, match=match):
        pynn_onnx.export(model, tmp_path / "g.onnx", opset=opset)
    assert not (tmp_path / "g.onnx").exists()


def test_arguments_swapped_are_named(tmp_path):
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    with pytest.raises(TypeError, match="first argument must be a pynn model, got PosixPath"):
        pynn_onnx.export(tmp_path / "m.onnx", model)


def test_export_to_a_file_object(tmp_path, rng):
    """save() takes file objects; export raised TypeError for a BytesIO."""
    import io

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="tanh")])
    x = rng.normal(size=(5, 3)).astype(np.float32)
    buffer = io.BytesIO()
    pynn_onnx.export(model, buffer)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(["output"], {"input": x})[0] - model.predict(x)).max() < 1e-6
    with open(tmp_path / "m.onnx", "wb") as f:
        pynn_onnx.export(model, f)
    assert np.abs(_run(tmp_path / "m.onnx", x) - model.predict(x)).max() < 1e-6
    with pytest.raises(TypeError, match="text file object"):
        pynn_onnx.export(model, io.StringIO())


def test_normalization_with_a_tiny_variance(rng):
    # a variance below 1e-14 divides by 1e-7 (Keras' floor of the standard deviation)
    model = pynn.Sequential([pynn.Input((2,)), pynn.Normalization(mean=[0.0, 0.0],
                                                                  variance=[1.0, 1e-8])])
    x = np.array([[1.0, 1e-4], [2.0, -3e-4]], np.float32)
    np.testing.assert_allclose(model.predict(x), [[1.0, 1.0], [2.0, -3.0]], rtol=1e-5)
    import io

    ort = pytest.importorskip("onnxruntime")
    buffer = io.BytesIO()
    pynn_onnx.export(model, buffer)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x), rtol=1e-5)


def test_batchnorm_of_sequences_normalises_the_last_axis(tmp_path, rng):
    # ONNX's BatchNormalization normalises axis 1; pynn's (Keras') the last: sequence
    # inputs take the broadcasting Mul/Add form.
    model = pynn.Sequential([pynn.Input((5, 4)), pynn.Dense(6), pynn.BatchNormalization(),
                             pynn.Flatten(), pynn.Dense(2)])
    model.layers[2].set_weights([rng.uniform(0.5, 2, 6), rng.normal(size=6), rng.normal(size=6),
                                 rng.uniform(0.1, 2, 6)])
    x = rng.normal(size=(3, 5, 4)).astype(np.float32)
    pynn_onnx.export(model, tmp_path / "seq.onnx")
    np.testing.assert_allclose(_run(tmp_path / "seq.onnx", x), model.predict(x), rtol=1e-5,
                               atol=1e-5)


def test_a_dense_shared_from_a_flat_model_exports_for_sequences(rng, tmp_path):
    """A Dense built for (8,) and shared with a (5, 8) model: the export went by its own
    input_shape and wrote Gemm, which takes rank 2 only (onnxruntime refused the file)."""
    dense = pynn.Dense(4, activation="tanh")
    pynn.Sequential([pynn.Input((8,)), dense])
    model = pynn.Sequential([pynn.Input((5, 8)), dense, pynn.layers.LayerNormalization()])
    x = rng.normal(size=(3, 5, 8)).astype(np.float32)
    pynn_onnx.export(model, tmp_path / "m.onnx")
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), model.predict(x), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("offset", [0.0, 100.0, 1e4])
def test_layer_normalization_of_inputs_with_a_common_offset(rng, tmp_path, offset):
    # the mean as a float32 product lost the values' differences: 3e-3 off at 1e4
    model = pynn.Sequential([pynn.Input((2, 17)), pynn.layers.LayerNormalization(),
                             pynn.layers.RMSNormalization()])
    x = (offset + rng.normal(size=(5, 2, 17))).astype(np.float32)
    mean = x.astype(np.float64).mean(axis=-1, keepdims=True)
    centred = x - mean
    exact = centred / np.sqrt((centred ** 2).mean(axis=-1, keepdims=True) + 1e-3)
    exact /= np.sqrt((exact ** 2).mean(axis=-1, keepdims=True) + 1e-6)
    pynn_onnx.export(model, tmp_path / "ln.onnx")
    np.testing.assert_allclose(_run(tmp_path / "ln.onnx", x), exact, atol=2e-6)
    np.testing.assert_allclose(model.predict(x), exact, atol=2e-6)


def test_a_file_object_in_the_wrong_mode_is_named(tmp_path):
    """A file opened 'rb' passed the check (it has a write method) and failed inside with a
    bare UnsupportedOperation: write."""
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    (tmp_path / "m.onnx").write_bytes(b"")
    with open(tmp_path / "m.onnx", "rb") as f:
        for write in (lambda: pynn_onnx.export(model, f), lambda: model.save(f)):
            with pytest.raises(TypeError, match="is not open for writing .open it 'wb'."):
                write()
    with open(tmp_path / "m.onnx", "wb") as f:
        with pytest.raises(TypeError, match="is not open for reading .open it 'rb'."):
            pynn.load_model(f)


@pytest.mark.parametrize("name", ["m.onnx", "m.weights.h5", "M.ONNX"])
def test_a_whole_model_is_not_saved_under_another_files_name(tmp_path, name):
    """model.save('m.onnx') and `pynn train --out m.onnx` wrote a pynn .npz there, which
    onnxruntime cannot read; a .weights.h5 name got a whole model (Keras refuses both)."""
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    match = "holds weights only" if "weights" in name else "model.export"
    with pytest.raises(ValueError, match=match):
        model.save(tmp_path / name)
    with pytest.raises(ValueError, match=match):  # a checkpoint says so before training
        model.fit(np.ones((4, 2)), np.ones(4), verbose=0,
                  callbacks=[pynn.callbacks.ModelCheckpoint(str(tmp_path / name))])
    assert model.optimizer.iterations == 0 and not list(tmp_path.iterdir())


def test_layer_names_cannot_collide_in_the_graph(tmp_path, rng):
    """A Dense 'd' with elu and a PReLU 'd_elu' both named an initializer 'd_elu_alpha' in a
    float64 graph: onnx's own ValidationError ("not unique")."""
    previous = pynn.floatx()
    pynn.set_floatx("float64")
    try:
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(5, name="d", activation="elu"),
                                 pynn.layers.PReLU(name="d_elu"), pynn.Dense(2, name="d_z")])
        x = rng.normal(size=(4, 3))
        pynn_onnx.export(model, tmp_path / "n.onnx")
        np.testing.assert_allclose(_run(tmp_path / "n.onnx", x), model.predict(x), rtol=1e-6)
    finally:
        pynn.set_floatx(previous)
