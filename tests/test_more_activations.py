"""Keras 3's other activations (silu/swish, softplus, softsign, selu, relu6, hard_sigmoid,
hard_silu/hard_swish, mish): the numpy reference against the textbook formulas in float64,
the C++ kernels' accuracy in ulps, special values, the names Keras uses, and the native
engine running them. (Every activation is also checked against the reference on awkward
shapes in test_cpu_kernels.py, by finite differences in test_gradients.py, in the engine in
test_engine.py, on the GPU backends' Python code in test_gpu_backends_on_host.py and in ONNX
export in test_onnx.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import (AVAILABLE, erfc64, exact_gelu, import_keras, onnx_outputs,
                      requires_backend)

import pynn
from pynn.backend import get_backend

NEW = ("silu", "softplus", "softsign", "selu", "relu6", "hard_sigmoid", "hard_silu", "mish")
ALPHA, SCALE = 1.6732632423543772, 1.0507009873554805  # Keras' selu constants


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def textbook(name, z):
    """Keras 3's definitions (keras/src/ops/nn.py), written the plain way, in float64."""
    with np.errstate(over="ignore"):
        return {"silu": lambda: z * _sigmoid(z),
                "softplus": lambda: np.logaddexp(z, 0),
                "softsign": lambda: z / (1 + np.abs(z)),
                "selu": lambda: SCALE * np.where(z > 0, z, ALPHA * np.expm1(np.minimum(z, 0))),
                "relu6": lambda: np.clip(z, 0, 6),
                "hard_sigmoid": lambda: np.clip(z + 3, 0, 6) / 6,
                "hard_silu": lambda: z * np.clip(z + 3, 0, 6) / 6,
                "mish": lambda: z * np.tanh(np.logaddexp(z, 0))}[name]()


def textbook_derivative(name, z):
    with np.errstate(over="ignore"):
        s = _sigmoid(z)
        t = np.tanh(np.logaddexp(z, 0))
        return {"silu": s * (1 + z * (1 - s)),
                "softplus": s,
                "softsign": 1 / (1 + np.abs(z)) ** 2,
                "selu": SCALE * np.where(z > 0, 1, ALPHA * np.exp(np.minimum(z, 0))),
                "relu6": ((z > 0) & (z < 6)).astype(float),
                "hard_sigmoid": np.where((z > -3) & (z < 3), 1 / 6, 0),
                "hard_silu": np.where(z < -3, 0, np.where(z > 3, 1, (2 * z + 3) / 6)),
                "mish": t + z * (1 - t * t) * s}[name]


def _inputs(rng):
    """Away from the kinks of relu6/hard_* (their derivative is one-sided there)."""
    z = np.concatenate([rng.normal(size=3001) * scale for scale in (1e-6, 0.3, 2, 9, 40)])
    kinks = np.array([-3.0, 0.0, 3.0, 6.0])
    return z[np.abs(z[:, None] - kinks).min(axis=1) > 1e-3]


@pytest.mark.parametrize("name", NEW)
def test_the_reference_is_kerass_formula(rng, name):
    ref = get_backend("numpy")
    z = _inputs(rng)
    y = ref.activation_forward(name, z, 0.0)
    # atol: z / 6 + 1/2 against (z + 3) / 6 cancel differently just inside z = -3
    np.testing.assert_allclose(y, textbook(name, z), rtol=1e-13, atol=1e-15)
    dz = ref.activation_backward(name, 0.0, z, y, np.ones_like(z))
    np.testing.assert_allclose(dz, textbook_derivative(name, z), rtol=1e-9, atol=1e-12)


def _ulps(y, ref):
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    return np.abs(y.astype(np.float64) - ref) / spacing


@requires_backend("cpu")
@pytest.mark.parametrize("name", ["silu", "softplus", "softsign", "selu", "mish"])
def test_the_kernels_are_within_a_few_ulp(rng, name):
    """pynn's own exp/log1p (csrc/math/activations.h) against float64; results in float32's
    normal range (a sigmoid below it keeps fewer bits, in NumPy too)."""
    z = np.concatenate([rng.normal(size=20011) * scale for scale in (1e-30, 1e-6, 0.05, 0.5,
                                                                     2, 8, 40)]
                       + [rng.uniform(-87, 110, 20011)]).astype(np.float32)
    z = z[z > -87]  # exp(z) a normal float32
    z64 = z.astype(np.float64)
    cpu = get_backend("cpu")
    want = textbook(name, z64)
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    y = cpu.activation_forward(name, z, 0.0)
    err = _ulps(y[normal], want[normal])
    # sigmoid's ~3 ulp, then products and (mish) a ratio: the worst seen in 14M inputs was
    # 3.1 (silu) and 4.3 (mish)
    bound = {"silu": 3.5, "mish": 5}.get(name, 3)
    assert err.max() <= bound, (z[normal][err.argmax()], err.max())
    # the derivative in absolute terms: it crosses zero (silu, mish), and softsign's is
    # written in y, whose rounding near +-1 costs ~1e-7
    dz = cpu.activation_backward(name, 0.0, z, y, np.ones_like(z))
    d_want = textbook_derivative(name, z64)
    d_err = np.abs(dz - d_want) / np.maximum(1, np.abs(d_want))
    assert d_err.max() <= 2.5e-7, (z[d_err.argmax()], d_err.max())


@requires_backend("cpu")
@pytest.mark.parametrize("name", NEW)
def test_special_values_agree_with_the_reference(name):
    z = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38, 88.8, -88.8,
                  -103.0, -104.5, -3.0, 3.0, 6.0], dtype=np.float32)
    cpu, ref = get_backend("cpu"), get_backend("numpy")
    with np.errstate(all="ignore"):
        y, y_ref = cpu.activation_forward(name, z, 0.0), ref.activation_forward(name, z, 0.0)
        np.testing.assert_allclose(y, y_ref, rtol=3e-7, atol=1e-37, equal_nan=True)
        finite = np.isfinite(z)  # the derivative of a finite input is finite
        dz = cpu.activation_backward(name, 0.0, z[finite], y[finite], np.ones(finite.sum(),
                                                                               np.float32))
        dz_ref = ref.activation_backward(name, 0.0, z[finite], y_ref[finite],
                                         np.ones(finite.sum(), np.float32))
    assert np.isfinite(dz).all()
    np.testing.assert_allclose(dz, dz_ref, rtol=1e-6, atol=1e-7)
    assert np.isnan(y[0])


def _gelu_derivative(z):
    return 0.5 * erfc64(-z / math.sqrt(2)) + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_gelu_is_the_exact_form_to_float32s_accuracy(rng, backend):
    """gelu is z Phi(z), as in Keras 3 and PyTorch (it was the tanh approximation, up to 5e-4
    apart). The kernel goes through erfc, so the tail keeps its digits where 1 + erf(z/sqrt 2)
    cancels (PyTorch's float32 loses all of them below z = -5); the reference (NumPy) is
    exact in float64."""
    if backend not in AVAILABLE:
        pytest.skip(f"backend {backend!r} unavailable: {pynn.available_backends()[backend]}")
    b = get_backend(backend)
    z = np.concatenate([rng.normal(size=20011) * scale
                        for scale in (1e-30, 1e-6, 0.05, 0.5, 2, 4, 8, 40)]).astype(np.float32)
    z64 = z.astype(np.float64)
    want = exact_gelu(z64)
    if backend == "numpy":
        np.testing.assert_allclose(b.activation_forward("gelu", z64, 0.0), want, rtol=1e-12,
                                   atol=1e-300)  # (SciPy's erfc and math.erfc: 2e-13 apart)
        np.testing.assert_allclose(
            b.activation_backward("gelu", 0.0, z64, None, np.ones_like(z64)),
            _gelu_derivative(z64), rtol=1e-12, atol=1e-15)
        return
    y = b.activation_forward("gelu", z, 0.0).astype(np.float64)
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    rel = np.abs(y - want)[normal] / np.abs(want[normal])
    # measured (1.4M inputs): 5e-7 above z = -2, 1.2e-6 to -5, 3.9e-6 to -9, 7.6e-6 below
    for low, bound in ((-2, 1e-6), (-5, 2.5e-6), (-9, 8e-6), (-np.inf, 1.6e-5)):
        inside = z64[normal] >= low
        assert rel[inside].max() <= bound, (low, rel[inside].max())
    dz = b.activation_backward("gelu", 0.0, z, y.astype(np.float32), np.ones_like(z))
    assert np.abs(dz - _gelu_derivative(z64)).max() <= 5e-7  # (measured 2.4e-7)
    # the tanh form is its own name now: files from before load with it (test_saving.py)
    tanh_form = b.activation_forward("gelu_tanh", z, 0.0).astype(np.float64)
    assert np.abs(tanh_form - want).max() > 1e-4


def test_pytorchs_functions_agree(rng):
    """The same functions in PyTorch (its hardsigmoid/hardswish are Keras 3's), forward and
    autograd derivative, when PyTorch is installed."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    fns = {"silu": F.silu, "softplus": F.softplus, "softsign": F.softsign, "selu": F.selu,
           "relu6": F.relu6, "hard_sigmoid": F.hardsigmoid, "hard_silu": F.hardswish,
           "mish": F.mish, "gelu": F.gelu}
    z = _inputs(rng)
    for backend in ("numpy", "cpu") if "cpu" in AVAILABLE else ("numpy",):
        b = get_backend(backend)
        for name, fn in fns.items():
            t = torch.tensor(z.astype(np.float32), requires_grad=True)
            fn(t).sum().backward()
            zz = z.astype(np.float32)
            y = b.activation_forward(name, zz, 0.0)
            np.testing.assert_allclose(y, fn(t).detach().numpy(), rtol=2e-6, atol=2e-6,
                                       err_msg=f"{backend} {name}")
            dz = b.activation_backward(name, 0.0, zz, y, np.ones_like(zz))
            np.testing.assert_allclose(dz, t.grad.numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{backend} {name}'")


def test_kerass_functions_agree(rng):
    """Keras 3 itself, when installed (on PyTorch where TensorFlow is absent)."""
    keras = import_keras()
    z = _inputs(rng).astype(np.float32)
    for name in (*NEW, "gelu"):
        theirs = keras.ops.convert_to_numpy(getattr(keras.activations, name)(z))
        for backend in ("numpy", "cpu") if "cpu" in AVAILABLE else ("numpy",):
            np.testing.assert_allclose(get_backend(backend).activation_forward(name, z, 0.0),
                                       theirs, rtol=2e-6, atol=2e-6,
                                       err_msg=f"{backend} {name}")
    for alias in ("swish", "hard_swish"):
        theirs = keras.ops.convert_to_numpy(keras.activations.get(alias)(z))
        np.testing.assert_allclose(pynn.activations.get(alias)(z), theirs, rtol=2e-6,
                                   atol=2e-6, err_msg=alias)


def test_kerass_names():
    acts = pynn.activations
    assert acts.get("swish") == acts.Spec("silu") == acts.swish == acts.silu
    assert acts.get("hard_swish") == acts.Spec("hard_swish") == acts.hard_silu
    assert pynn.Dense(3, activation="swish").get_config()["activation"] == "silu"
    assert acts.get({"name": "hard_swish"}).name == "hard_silu"
    with pytest.raises(ValueError, match="sigmoid takes no parameter, got 0.5"):
        acts.Spec("sigmoid", 0.5)
    # a file from before the refusal: the parameter was stored and never used
    with pytest.warns(UserWarning, match="'mish' takes no parameter; the saved 2.0 is ignored"):
        assert acts.get({"name": "mish", "param": 2.0}) == acts.mish
    with pytest.raises(ValueError, match="unknown activation 'swish2'.*hard_swish"):
        acts.get("swish2")
    z = np.linspace(-5, 5, 11, dtype=np.float32)
    np.testing.assert_allclose(acts.hard_sigmoid(z), np.clip(z + 3, 0, 6) / 6, atol=1e-7)


def test_kerass_keyword_arguments_of_the_functions(rng):
    # keras.activations.relu(x, negative_slope=, max_value=, threshold=), leaky_relu's
    # negative_slope, elu's alpha, softmax's axis, gelu's approximate: ported code calls them
    acts = pynn.activations
    x = rng.normal(0, 4, (5, 7)).astype(np.float32)
    x[0, :5] = [-10, -5, 0, 5, 10]
    x64 = x.astype(np.float64)

    def keras_relu(slope=0.0, cap=None, threshold=0.0):  # Keras 3's ReLU.static_call
        y = np.where(x64 > threshold, x64, 0) if threshold else np.maximum(x64, 0)
        if cap is not None:
            y = np.clip(y, 0, cap)
        return y - slope * np.maximum(threshold - x64, 0)

    np.testing.assert_array_equal(acts.relu(x[0, :5], threshold=5.0), [0, 0, 0, 0, 10])
    for slope, cap, threshold in [(0.5, None, 0.0), (0.0, 5.0, 0.0), (0.0, None, 5.0),
                                  (0.0, None, -2.0), (0.3, 6, 1.0), (0.1, 4, 0.0),
                                  (0.0, 3, -2.0)]:
        got = acts.relu(x, negative_slope=slope, max_value=cap, threshold=threshold)
        assert got.dtype == np.float32 and got.shape == x.shape
        np.testing.assert_allclose(got, keras_relu(slope, cap, threshold), rtol=1e-6,
                                   atol=1e-6, err_msg=f"{slope} {cap} {threshold}")
    np.testing.assert_allclose(acts.leaky_relu(x, negative_slope=0.1),
                               np.where(x64 > 0, x64, 0.1 * x64), rtol=1e-6)
    np.testing.assert_allclose(acts.elu(x, alpha=0.5),
                               np.where(x64 > 0, x64, 0.5 * np.expm1(x64)), rtol=1e-5, atol=1e-7)
    for axis in (0, -2, 1):
        e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
        np.testing.assert_allclose(acts.softmax(x, axis=axis), e / e.sum(axis=axis, keepdims=True),
                                   rtol=1e-5, atol=1e-7, err_msg=str(axis))
    np.testing.assert_array_equal(acts.gelu(x, approximate=True), acts.gelu_tanh(x))
    np.testing.assert_array_equal(acts.gelu(x, approximate=False), acts.gelu(x))
    with pytest.raises(TypeError, match="tanh: unexpected keyword argument.*alpha.*no keyword"):
        acts.tanh(x, alpha=1.0)
    with pytest.raises(TypeError, match="slope.*relu takes negative_slope, max_value, threshold"):
        acts.relu(x, slope=1.0)
    with pytest.raises(ValueError, match="softmax: axis must be an integer axis of the 2-d"):
        acts.softmax(x, axis=2)


@requires_backend("cpu")
def test_the_native_engine_runs_them_and_saves_them(rng, tmp_path):
    x = rng.normal(size=(96, 5)).astype(np.float32)
    y = (x[:, :1] * x[:, 1:2] > 0).astype(np.float32)
    results = {}
    for backend in ("cpu", "numpy"):
        pynn.set_seed(3)
        model = pynn.Sequential([pynn.Input((5,))] + [pynn.Dense(6, activation=a) for a in NEW]
                                + [pynn.Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", backend=backend)
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
        results[backend] = (history.history["loss"], model.predict(x))
        if backend == "cpu":
            assert model.engine_reason is None  # the C++ engine trained it
            model.save(tmp_path / "m.npz")
            loaded = pynn.load_model(tmp_path / "m.npz")
            assert [layer.activation.name for layer in loaded.layers[1:-1]] == list(NEW)
            np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_allclose(results["cpu"][0], results["numpy"][0], rtol=1e-4)
    np.testing.assert_allclose(results["cpu"][1], results["numpy"][1], rtol=1e-4, atol=1e-5)


def test_an_older_file_with_an_unused_parameter_loads(rng):
    """Older pynn saved Spec("gelu", 0.5) as {"name": "gelu", "param": 0.5} and ignored the
    parameter: such a config (what load_model reads) builds, with a warning, the same model."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="gelu")])
    config = model.get_config()
    layer = next(c for c in config["layers"] if c["config"].get("activation") == "gelu")
    layer["config"]["activation"] = {"name": "gelu", "param": 0.5}
    with pytest.warns(UserWarning, match="'gelu' takes no parameter; the saved 0.5 is ignored"):
        loaded = pynn.Sequential.from_config(config)
    loaded.set_weights(model.get_weights())
    x = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_hard_sigmoid_keeps_its_bits_just_above_minus_three(backend):
    """z / 6 + 1/2 cancelled there (25% off one float above -3); relu6(z + 3) / 6 is exact."""
    if backend not in AVAILABLE:
        pytest.skip(f"backend {backend!r} unavailable: {pynn.available_backends()[backend]}")
    b = get_backend(backend)
    z = np.nextafter(np.float32(-3), np.float32(0)) + np.arange(64, dtype=np.float32) * \
        np.float32(2.4e-7)
    z64 = z.astype(np.float64)
    np.testing.assert_allclose(b.activation_forward("hard_sigmoid", z, 0.0),
                               np.clip(z64 + 3, 0, 6) / 6, rtol=2e-7, atol=0)
    np.testing.assert_allclose(b.activation_forward("hard_silu", z, 0.0),
                               z64 * np.clip(z64 + 3, 0, 6) / 6, rtol=3e-7, atol=0)
    three, zero = np.float32(3), np.float32(0)
    edges = np.array([-three, np.nextafter(-three, zero), np.nextafter(three, zero), three])
    y = b.activation_forward("hard_silu", edges, 0.0)
    np.testing.assert_allclose(b.activation_backward("hard_silu", 0.0, edges, y,
                                                     np.ones(4, np.float32)),
                               [0.0, -0.5, 1.5, 1.0], atol=1e-6)  # Keras 3's at the kinks


@pytest.mark.parametrize("floatx", ["float32", "float64"])
def test_onnx_graphs_keep_relative_accuracy_in_the_tails(floatx):
    """The exported graphs against predict over the tails and the kinks, relatively: x *
    Sigmoid(x), Log(1 + Exp(-|x|)) and HardSigmoid's alpha x + beta were off by up to 8x,
    100% and 25% there (within an absolute 1e-5)."""
    z = np.concatenate([np.linspace(-40, 40, 2001), -np.logspace(-8, 1.5, 200),
                        np.float32(-3) + np.arange(8) * np.float32(2.4e-7)]).reshape(-1, 1)
    previous = pynn.floatx()
    pynn.set_floatx(floatx)
    try:
        for name in ("silu", "softplus", "mish", "hard_sigmoid", "hard_silu", "softsign"):
            model = pynn.Sequential([pynn.Input((1,)), pynn.Activation(name)])
            x = z.astype(floatx)
            got, want = onnx_outputs(model, x), model.predict(x)
            np.testing.assert_allclose(got, want, rtol=1e-6 if floatx == "float32" else 1e-14,
                                       atol=1e-37, err_msg=name)
    finally:
        pynn.set_floatx(previous)


@pytest.mark.parametrize("name", ["leaky_relu", "elu"])
@pytest.mark.parametrize("param, error", [(-0.1, ValueError), (float("inf"), ValueError),
                                          (float("nan"), ValueError), (1e39, ValueError),
                                          (10**400, ValueError),
                                          (True, TypeError), ("0.1", TypeError),
                                          (None, None), (np.float32(0.5), None), (3, None)])
def test_a_parameter_is_a_finite_number(name, param, error):
    """An infinite slope made leaky_relu(0) NaN (0 * inf) and 1e39 is inf in the kernels'
    float32; True passed for 1.0 and '0.1' met Python's own '>=' error."""
    if error is not None:
        with pytest.raises(error, match=f"{name} parameter must be a"):
            pynn.activations.Spec(name, param)
        return
    spec = pynn.activations.Spec(name, param)
    assert type(spec.param) is float and np.isfinite(spec.param)
    z = np.array([[-2.0], [0.0], [3.0]], np.float32)
    got = pynn.ops.gemm(z, np.ones((1, 1), np.float32), activation=spec)
    assert np.isfinite(got).all() and got[1, 0] == 0.0


@pytest.mark.parametrize("backend", sorted(AVAILABLE & {"numpy", "cpu"}))
def test_softmax_of_no_classes_is_empty_on_every_backend(backend):
    """The numpy backend failed with numpy's 'zero-size array to reduction operation
    maximum' where the cpu kernels give an empty result."""
    previous = pynn.get_backend().name
    try:
        pynn.set_backend(backend)
        layer = pynn.layers.Softmax()
        assert np.asarray(layer(np.ones((3, 0), np.float32))).shape == (3, 0)
    finally:
        pynn.set_backend(previous)
    assert pynn.activations.softmax(np.ones((3, 0))).shape == (3, 0)


def test_the_reference_gelu_tanh_keeps_its_digits_in_the_far_left_tail(rng):
    """0.5 z (1 + tanh(u)) cancelled in the numpy reference below z = -5 (-1.6e-7 for
    -1.1e-8 at z = -5.4 in float32); written as z sigmoid(2u) it keeps them."""
    c = math.sqrt(2 / math.pi)
    z = np.concatenate([rng.uniform(-40, -3, 4001), rng.normal(size=4001) * 2,
                        [-1e30, -3e38, -10.5, 10.5, 1e30]])  # (beyond -10: the clip's tail)
    u2 = 2 * c * (z + 0.044715 * z ** 3)
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-u2))
    ref = get_backend("numpy")
    # (atol: the reference's exp(-2u) overflows below z ~ -13, where pynn's keeps subnormals)
    np.testing.assert_allclose(ref.activation_forward("gelu_tanh", z, 0.0), z * s, rtol=1e-12,
                               atol=1e-300)
    d_want = s + z * s * (1 - s) * 2 * c * (1 + 3 * 0.044715 * z * z)
    np.testing.assert_allclose(ref.activation_backward("gelu_tanh", 0.0, z, None,
                                                       np.ones_like(z)), d_want, rtol=1e-10,
                               atol=1e-300)
    z32 = z.astype(np.float32)
    y32 = ref.activation_forward("gelu_tanh", z32, 0.0)
    w = z32.astype(np.float64)
    with np.errstate(over="ignore"):
        want32 = w / (1 + np.exp(-2 * c * (w + 0.044715 * w ** 3)))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, want32, rtol=2e-5, atol=1e-38)
