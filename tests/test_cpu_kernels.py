"""The C++ element-wise, loss and optimizer kernels against the numpy float64 reference, on
fresh random inputs of awkward sizes (1, 3, 17, 129, non-multiples of the vector width)."""

from __future__ import annotations

import math

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import requires_backend
from kernel_cases import OPTIMIZER_CASES, SHAPES, opt_state, ref64
from pynn.activations import NAMES
from pynn.backend import get_backend

pytestmark = requires_backend("cpu")

REF = get_backend("numpy")


@pytest.fixture
def cpu():
    return get_backend("cpu")


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", NAMES)
def test_activation_forward_backward(cpu, rng, shape, act):
    z = f32(rng.normal(size=shape) * 3)
    param = {"leaky_relu": 0.2, "elu": 1.0}.get(act, 0.0)
    y = cpu.activation_forward(act, z, param)
    y_ref = ref64(REF.activation_forward, act, z, param)
    np.testing.assert_allclose(y, y_ref, rtol=2e-6, atol=2e-6)
    dy = f32(rng.normal(size=shape))
    dz = cpu.activation_backward(act, param, z, y, dy)
    # The reference gets the same float32 y, so relu's mask agrees exactly.
    dz_ref = ref64(REF.activation_backward, act, param, z, y, dy)
    np.testing.assert_allclose(dz, dz_ref, rtol=1e-5, atol=1e-5)
    assert dz.dtype == np.float32 and y.dtype == np.float32


@pytest.mark.parametrize("act,param", [("elu", 0.5), ("elu", 2.5), ("leaky_relu", 0.01),
                                       ("leaky_relu", 0.7)])
def test_activations_at_other_parameters(cpu, rng, act, param):
    # (elu's backward at alpha 1 cannot tell alpha from 1)
    z = f32(rng.normal(size=(17, 9)) * 3)
    dy = f32(rng.normal(size=z.shape))
    y = cpu.activation_forward(act, z, param)
    np.testing.assert_allclose(y, ref64(REF.activation_forward, act, z, param), rtol=2e-6,
                               atol=2e-6)
    dz = cpu.activation_backward(act, param, z, y, dy)
    np.testing.assert_allclose(dz, ref64(REF.activation_backward, act, param, z, y, dy),
                               rtol=1e-5, atol=1e-5)


def _ulps(y, ref):
    """|y - ref| in units of float32's spacing at ref (the least denormal below that)."""
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    return np.abs(y.astype(np.float64) - ref) / np.maximum(spacing, 2.0 ** -149)


def test_exp_based_activations_within_three_ulp(cpu, rng):
    # tanh, sigmoid and elu use pynn's own vectorised exp/expm1 (libm made them a call per
    # element): within 3 ulp of float64 over float32's range, denormal results included.
    z = f32(np.concatenate([rng.normal(size=20011) * scale for scale in (1e-30, 1e-6, 0.05,
                                                                          0.5, 2, 8, 40)]
                           + [rng.uniform(-110, 110, 20011)]))
    z64 = z.astype(np.float64)
    refs = {"tanh": np.tanh(z64), "sigmoid": 1 / (1 + np.exp(-z64)),
            "elu": np.where(z64 > 0, z64, np.expm1(np.minimum(z64, 0)))}
    finite = np.abs(z) < 88.5  # exponential: below float32's overflow (inf beyond, below)
    z_exp = np.concatenate([z[finite], f32(rng.uniform(87, 88.72, 20011))])
    for act, ref, inputs in [(act, ref, z) for act, ref in refs.items()] + [
            ("exponential", np.exp(z_exp.astype(np.float64)), z_exp)]:
        err = _ulps(cpu.activation_forward(act, inputs, 1.0), ref)
        assert err.max() <= 3, (act, inputs[err.argmax()], err.max())


def test_exp_based_activations_at_special_values(cpu):
    z = f32([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 3e38, -3e38, 88.8, -88.8,
             -103.0, -104.5])
    with np.errstate(all="ignore"):
        for act, ref in (("tanh", np.tanh(z)), ("elu", np.where(z > 0, z, np.expm1(z))),
                         ("sigmoid", 1 / (1 + np.exp(-z.astype(np.float64)))),
                         ("exponential", np.exp(z.astype(np.float64)))):
            y = cpu.activation_forward(act, z, 1.0)
            np.testing.assert_array_equal(np.signbit(y[3:7]), np.signbit(ref[3:7]),
                                          err_msg=act)  # -0 stays -0
            np.testing.assert_allclose(y, ref.astype(np.float32), rtol=3e-7, atol=0,
                                       equal_nan=True, err_msg=act)


def test_activation_loops_give_the_same_bits_on_every_isa(rng):
    # SSE2 and AVX2 copies of each loop run the same IEEE operations (-ffp-contract=off).
    isas = [isa for isa in ("generic", "avx2", "avx512") if _C_module().cpu_supports_isa(isa)]
    if len(isas) < 2:
        pytest.skip("this CPU runs one instruction set")
    z = f32(rng.normal(size=4099) * 6)
    dy = f32(rng.normal(size=z.size))
    previous = _C_module().gemm_isa()
    results = {}
    try:
        for isa in isas:
            _C_module().set_gemm_isa(isa)
            b = get_backend("cpu")
            results[isa] = [out for act in NAMES if act != "softmax"
                            for y in [b.activation_forward(act, z, 0.7)]
                            for out in (y, b.activation_backward(act, 0.7, z, y, dy))]
    finally:
        _C_module().set_gemm_isa(previous)
    for isa in isas[1:]:
        for a, b in zip(results[isas[0]], results[isa]):
            np.testing.assert_array_equal(a, b, err_msg=isa)


def _C_module():
    return pytest.importorskip("pynn._C")


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_activation_gradients_at_extreme_inputs(backend):
    """Finite, and the limits, far out: gelu's z*z overflowed into 0 * inf = NaN beyond
    |z| = 1.8e19 (the forward was fine); every activation, float32's whole range."""
    b = get_backend(backend)
    z = f32([-3e38, -1e20, -1e19, -11.0, -10.0, -1.0, 0.0, 1.0, 10.0, 11.0, 1e19, 1e20, 3e38])
    dy = np.ones_like(z)
    for act in NAMES:
        if act == "softmax":
            continue
        param = {"leaky_relu": 0.2, "elu": 1.0}.get(act, 0.0)
        y = b.activation_forward(act, z, param)
        dz = b.activation_backward(act, param, z, y, dy)
        if act == "exponential":  # (its own output: inf beyond float32's range, as exp)
            np.testing.assert_array_equal(dz, y)
            assert np.isinf(y[-3:]).all() and np.isfinite(y[:-3]).all()
            continue
        assert np.isfinite(dz).all(), (act, dz)
    y = b.activation_forward("gelu", z, 0.0)
    dz = b.activation_backward("gelu", 0.0, z, y, dy)
    np.testing.assert_array_equal(dz[[0, 1, 2, -3, -2, -1]], [0, 0, 0, 1, 1, 1])
    inside = np.abs(z) <= 11
    np.testing.assert_allclose(dz[inside], ref64(REF.activation_backward, "gelu", 0.0, z, y,
                                                 dy)[inside], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("classes", [17, 1000, 10000])
def test_softmax_of_many_classes_within_ten_ulp(cpu, rng, classes):
    # The row's sum was a float: its error (54 ulp at 10,000 classes) scaled the whole row.
    # (Logits of unit spread: z - max is rounded in float32, an error exp magnifies with it.)
    z = f32(rng.normal(size=(20, classes)))
    y = cpu.activation_forward("softmax", z, 0.0)
    z64 = z.astype(np.float64)
    ref = np.exp(z64 - z64.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    assert _ulps(y, ref).max() <= 10


def test_softmax_extreme_logits(cpu):
    z = f32([[1000, 0, -1000], [-1000, -1000, -1000], [88, 89, 90]])
    y = cpu.softmax_forward(z)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, REF.softmax_forward(z.astype(np.float64)), atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
def test_bias_grad(cpu, rng, shape):
    dz = f32(rng.normal(size=shape))
    np.testing.assert_allclose(cpu.bias_grad(dz), dz.astype(np.float64).sum(axis=0),
                               rtol=1e-5, atol=1e-4 * np.sqrt(shape[0]))


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (129, 10), (5, 1000), (257, 3)])
@pytest.mark.parametrize("sparse", [True, False])
def test_softmax_cross_entropy(cpu, rng, shape, sparse):
    logits = f32(rng.normal(size=shape) * 5)
    labels = rng.integers(0, shape[1], size=shape[0])
    targets = labels.astype(np.int32) if sparse else f32(np.eye(shape[1])[labels])
    scale = 1.0 / shape[0]
    loss, grad = cpu.softmax_cross_entropy(logits, targets, sparse, scale)
    ref_targets = targets if sparse else targets.astype(np.float64)
    loss_ref, grad_ref = REF.softmax_cross_entropy(logits.astype(np.float64), ref_targets,
                                                   sparse, scale)
    assert np.isclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-7)


def test_softmax_cross_entropy_extreme_and_bad_labels(cpu):
    logits = f32([[1000, -1000], [-1000, 1000]])
    loss, grad = cpu.softmax_cross_entropy(logits, np.array([1, 1], np.int32), True, 1.0)
    assert np.isfinite(loss) and np.isclose(loss, 2000, rtol=1e-6)
    assert np.isfinite(grad).all()
    with pytest.raises(ValueError, match="2"):
        cpu.softmax_cross_entropy(logits, np.array([0, 2], np.int32), True, 1.0)


@pytest.mark.parametrize("sparse", [True, False])
def test_logits_beyond_float32_apart_on_every_host_backend(cpu, sparse):
    """Logits 4e38 apart (more than float32 holds): the reference (numpy backend) shifted
    them to -inf in float32 and gave NaN (0 * log 0) or inf, where the kernel is exact."""
    logits = f32([[2e38, -2e38], [-2e38, 2e38], [1.0, -1.0]])
    labels = np.array([0, 0, 1], np.int32)
    targets = labels if sparse else f32(np.eye(2)[labels])
    want = 4e38 + math.log1p(math.exp(2.0))  # the second row's, plus the third's
    for backend in (cpu, REF):
        loss, grad = backend.softmax_cross_entropy(logits, targets, sparse, 1.0)
        assert loss == pytest.approx(want, rel=1e-6) and np.isfinite(grad).all()
        assert grad.dtype == np.float32
        np.testing.assert_allclose(grad, [[0, 0], [-1, 1], [0.88079708, -0.88079708]],
                                   atol=1e-7)


@pytest.mark.parametrize("sparse", [True, False])
def test_softmax_cross_entropy_of_huge_equal_logits(cpu, sparse):
    # log(classes) for equal logits of any size: m + log s lost log s once |m| > 1e15.
    for cols in (2, 3, 17):
        logits = f32(np.array([[-3e30] * cols, [2e38] * cols, [1e20] * cols]))
        labels = np.array([0, cols - 1, 1], np.int32)
        targets = labels if sparse else f32(np.eye(cols)[labels])
        for backend in (cpu, REF):
            loss, _ = backend.softmax_cross_entropy(logits, targets, sparse, 1.0)
            assert np.isclose(loss, 3 * np.log(cols), rtol=1e-6), (backend.name, cols, loss)


@pytest.mark.parametrize("n", [1, 3, 17, 129, 100003])
@pytest.mark.parametrize("kind", ["mse", "mae", "huber"])
def test_regression_losses(cpu, rng, n, kind):
    pred, target = f32(rng.normal(size=(n, 1)) * 2), f32(rng.normal(size=(n, 1)))
    loss, grad = cpu.regression_loss(kind, pred, target, 1.0 / n, delta=1.0)
    loss_ref, grad_ref = REF.regression_loss(kind, pred.astype(np.float64),
                                             target.astype(np.float64), 1.0 / n, delta=1.0)
    assert np.isclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-7 / n)


@pytest.mark.parametrize("kind", ["mse", "mae", "huber"])
def test_regression_loss_keeps_a_nan_error(cpu, kind):
    """A NaN prediction gives a NaN gradient, as numpy's sign(NaN) (MAE's was 0 and Huber's
    -delta: the NaN sample trained as a finite one with the finite check off)."""
    pred, target = f32([[np.nan], [1.5], [0.0], [-3.0]]), f32(np.zeros((4, 1)))
    for backend in (cpu, REF):
        loss, grad = backend.regression_loss(kind, pred, target, 0.25, delta=1.0)
        assert np.isnan(loss), backend.name
        assert np.isnan(grad[0, 0]) and np.isfinite(grad[1:]).all(), (backend.name, grad)


def test_regression_losses_add_up_beyond_float32(cpu):
    """The losses are summed in float64 on both backends: (2.5e19)^2 is beyond float32
    (the reference gave inf where the kernel gave the value)."""
    pred, target = f32([[2.5e19], [-2.5e19], [0.0]]), f32(np.zeros((3, 1)))
    for kind, expected in (("mse", (pred.astype(np.float64) ** 2).sum()),
                           ("huber", (np.abs(pred.astype(np.float64)) - 0.5).sum())):
        for backend in (cpu, REF):
            loss, _ = backend.regression_loss(kind, pred, target, 1.0, delta=1.0)
            assert np.isclose(loss, expected, rtol=1e-6), (backend.name, kind, loss)
    big = f32(np.full((4, 1), 3e38))  # each term within float32, their sum beyond it
    for backend in (cpu, REF):
        loss, _ = backend.regression_loss("mae", big, f32(np.zeros((4, 1))), 1.0)
        assert np.isclose(loss, 4 * float(big[0, 0]), rtol=1e-6), backend.name


@pytest.mark.parametrize("n", [1, 3, 17, 129, 100003])
@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_cross_entropy(cpu, rng, n, from_logits):
    # Probabilities stay clear of the clip bound 1 - 1e-7, which float32 rounds below the
    # float64 reference's (test_bce_probabilities_clipped uses exact values).
    pred = f32(rng.normal(size=(n, 1)) * 4) if from_logits \
        else f32(rng.uniform(0, 1 - 1e-6, (n, 1)))
    target = f32(rng.integers(0, 2, size=(n, 1)))
    loss, grad = cpu.binary_cross_entropy(pred, target, from_logits, 1e-7, 1.0 / n)
    loss_ref, grad_ref = REF.binary_cross_entropy(pred.astype(np.float64),
                                                  target.astype(np.float64), from_logits,
                                                  1e-7, 1.0 / n)
    assert np.isclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-4, atol=1e-6 / n)


def test_bce_probabilities_clipped(cpu):
    # Keras clips probabilities to [eps, 1 - eps]; the clip has zero gradient outside.
    pred, target = f32([[0.0], [1.0], [0.5]]), f32([[0.0], [1.0], [1.0]])
    loss, grad = cpu.binary_cross_entropy(pred, target, False, 1e-7, 0.5)
    assert np.isclose(loss, np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(grad, [[0.0], [0.0], [-1.0]], atol=1e-6)


def test_loss_kernels_where_their_formulas_switch(cpu, rng):
    """Probabilities exactly at BCE's clip bounds (float32's 1e-7 and 1 - 1e-7) get no
    gradient, as in the reference; MAE's exact ties get sign(0) = 0; soft targets whose rows
    do not sum to 1 give p * sum(t) - t."""
    eps = np.float32(1e-7)
    p, t = f32([[eps], [np.float32(1) - eps], [0.5]]), f32([[1], [0], [1]])
    _, grad = cpu.binary_cross_entropy(p, t, False, 1e-7, 1.0)
    _, want = REF.binary_cross_entropy(p, t, False, 1e-7, 1.0)
    np.testing.assert_array_equal(grad[:2], 0)
    np.testing.assert_allclose(grad, want, rtol=1e-6)
    pred = f32(rng.normal(size=(9, 2)))
    target = pred.copy()
    target[::2] += 1
    _, grad = cpu.regression_loss("mae", pred, target, 1.0)
    assert not grad[1::2].any()
    np.testing.assert_array_equal(grad, REF.regression_loss("mae", pred, target, 1.0)[1])
    logits, soft = f32(rng.normal(size=(5, 4)) * 2), f32(rng.uniform(0, 1, size=(5, 4)))
    loss, grad = cpu.softmax_cross_entropy(logits, soft, False, 0.2)
    loss_ref, grad_ref = REF.softmax_cross_entropy(logits.astype(np.float64),
                                                   soft.astype(np.float64), False, 0.2)
    assert np.isclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-7)


def test_loss_and_bias_grad_bindings_check_their_sizes(cpu):
    C = cpu._C
    with pytest.raises(ValueError, match=r"target: expected shape \(10,\)"):
        C.mse_loss(f32(np.ones(10)), f32(np.ones(5)), f32(np.zeros(10)), 1.0)
    with pytest.raises(ValueError, match="out: expected length .* = 8"):
        C.bias_grad(f32(np.ones((4, 8))), f32(np.zeros(3)))


def _shape_misuses(rng):
    """Calls of the backend contract (base.py) with an array of the wrong shape, which the
    numpy backend broadcast (a sparse (N, 1) column counted every row N times)."""
    y, w = f32(rng.uniform(0.1, 0.9, (3, 4))), f32(rng.normal(size=(2, 3)))
    return {
        r"dy: expected shape \(3, 4\) \(the shape of y\)":
            lambda b: b.softmax_backward(y, f32(np.ones((3, 1)))),
        r"dy: expected shape \(3, 4\)":
            lambda b: b.activation_backward("relu", 0.0, None, y, f32(np.ones(4))),
        r"targets: expected shape \(3, 4\) \(the shape of logits\)":
            lambda b: b.softmax_cross_entropy(y, f32(np.ones((3, 1))), False, 1.0),
        r"labels: expected": lambda b: b.softmax_cross_entropy(
            y, np.array([[0], [1], [2]], np.int32), True, 1.0),
        r"g: expected shape \(2, 3\) \(the shape of w\)":
            lambda b: b.sgd_update(w.copy(), f32(np.ones(3)), None, 0.1, 0.0, False),
        r"v: expected shape \(2, 3\)": lambda b: b.adam_update(
            w.copy(), w.copy(), np.zeros_like(w), np.zeros(3, np.float32), 0.1, 0.9, 0.999,
            1e-7, 0.0, 1),
        r"unknown activation 'nope'": lambda b: b.activation_forward("nope", y),
        r"rate: expected a dropout rate in \[0, 1\), got 1.0":
            lambda b: b.dropout_mask((2, 2), 1.0, np.float32, 0, 0),
        r"seed: expected an integer in \[0, 2\*\*64\), got -1":
            lambda b: b.dropout_mask((2, 2), 0.5, np.float32, -1, 0),
    }


@pytest.mark.parametrize("name", ["numpy", "cpu"])
def test_both_backends_refuse_the_same_misuses_by_name(rng, name):
    backend = get_backend(name)
    for message, call in _shape_misuses(rng).items():
        with pytest.raises(ValueError, match=message):
            call(backend)


def test_misaligned_contiguous_arrays_reach_the_kernels_as_copies(cpu, rng):
    """np.frombuffer at an odd offset: contiguous but not 4-byte aligned, which the kernels
    refuse ("z: array data is not aligned"); the numpy backend took them."""
    import pynn

    def misaligned(a):
        raw = np.zeros(a.nbytes + 1, np.uint8)
        view = np.frombuffer(raw.data, a.dtype, a.size, offset=1).reshape(a.shape)
        view[...] = a
        assert view.flags.c_contiguous and not view.flags.aligned
        return view

    z, t = f32(rng.normal(size=(8, 3))), f32(rng.uniform(size=(8, 3)))
    np.testing.assert_array_equal(cpu.activation_forward("tanh", misaligned(z)),
                                  cpu.activation_forward("tanh", z))
    for sparse, targets in ((False, t), (True, np.arange(8, dtype=np.int32) % 3)):
        got = cpu.softmax_cross_entropy(misaligned(z), misaligned(targets), sparse, 1.0)
        want = cpu.softmax_cross_entropy(z, targets, sparse, 1.0)
        assert got[0] == want[0]
        np.testing.assert_array_equal(got[1], want[1])
    previous = pynn.get_backend().name
    try:
        pynn.set_backend("cpu")
        layer = pynn.layers.Activation("tanh")
        np.testing.assert_allclose(np.asarray(layer(misaligned(z))), np.tanh(z), rtol=1e-6)
        model = pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(3, activation="softmax")])
        model.compile(loss="categorical_crossentropy", optimizer="sgd")
        assert model.evaluate(misaligned(z), misaligned(t), verbose=0) == \
            model.evaluate(z, t, verbose=0)
    finally:
        pynn.set_backend(previous)


def test_bce_extreme_logits(cpu):
    pred = f32([[1000], [-1000], [0]])
    loss, grad = cpu.binary_cross_entropy(pred, f32([[0], [1], [1]]), True, 1e-7, 1.0)
    assert np.isclose(loss, 2000 + np.log(2), rtol=1e-6)
    np.testing.assert_allclose(grad, [[1], [-1], [-0.5]], atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 17, 129, 100003])
@pytest.mark.parametrize("name", sorted(OPTIMIZER_CASES))
def test_optimizer_updates(cpu, rng, n, name):
    state64 = opt_state(rng, n)
    state32 = [f32(a) for a in state64]
    OPTIMIZER_CASES[name](cpu, *state32)
    OPTIMIZER_CASES[name](REF, *state64)
    for got, want in zip(state32, state64):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", ["dtype", "shape", "noncontig", "readonly"])
def test_kernel_bindings_reject_bad_arrays(cpu, bad):
    C = cpu._C
    z = np.zeros((4, 3), np.float32)
    out = np.zeros((4, 3), np.float32)
    if bad == "dtype":
        with pytest.raises(TypeError, match="float32"):
            C.activation_forward(1, 0.0, z.astype(np.float64), out)
    elif bad == "shape":
        with pytest.raises(ValueError, match="shape"):
            C.activation_forward(1, 0.0, z, np.zeros((4, 2), np.float32))
    elif bad == "noncontig":
        with pytest.raises(ValueError, match="contiguous"):
            C.activation_forward(1, 0.0, np.zeros((4, 6), np.float32)[:, ::2], out)
    else:
        out.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            C.activation_forward(1, 0.0, z, out)
    with pytest.raises(ValueError, match="step"):
        w = np.zeros(3, np.float32)
        C.adam_update(w, w.copy(), w.copy(), w.copy(), 0.1, 0.9, 0.999, 1e-7, 0.0, 0)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=100, deadline=None)
@given(rows=st.integers(0, 20), cols=st.integers(0, 20), out_rows=st.integers(0, 20),
       dtype=st.sampled_from([np.float32, np.float32, np.float64, np.int32]),
       layout=st.sampled_from(["c", "f", "strided"]), label_shift=st.integers(-2, 2))
def test_fuzz_kernel_bindings_never_crash(rows, cols, out_rows, dtype, layout, label_shift):
    """Random shapes/dtypes/layouts into the element-wise bindings: a result or an exception."""
    C = get_backend("cpu")._C
    rng = np.random.default_rng(rows * 31 + cols)
    z = rng.standard_normal((rows, cols)).astype(dtype)
    if layout == "f":
        z = np.asfortranarray(z)
    elif layout == "strided":
        z = np.repeat(z, 2, axis=1)[:, ::2]
    out = np.zeros((out_rows, cols), np.float32)
    labels = (np.arange(rows) % max(cols, 1) + label_shift).astype(np.int32)
    calls = [
        lambda: C.activation_forward(1, 0.0, z, out),
        lambda: C.softmax_forward(z, out),
        lambda: C.bias_grad(z, np.zeros(cols, np.float32)),
        lambda: C.softmax_xent_sparse(z, labels, out, 1.0),
        lambda: C.mse_loss(z, z, out, 1.0),
        lambda: C.adam_update(out, z, out.copy(), out.copy(), 0.1, 0.9, 0.999, 1e-7, 0.0, 1),
    ]
    for call in calls:
        try:
            call()
        except (ValueError, TypeError) as exc:
            assert str(exc)


def _cpu_isas():
    try:
        from pynn import _C
    except ImportError:  # installed without it: every test here skips (pytestmark)
        return ["generic"]
    return [isa for isa in ("generic", "avx2", "avx512") if _C.cpu_supports_isa(isa)]


@pytest.mark.parametrize("isa", _cpu_isas())
@pytest.mark.parametrize("n", [1, 7, 8, 9, 23, 65537, 100003])
@pytest.mark.parametrize("name", sorted(OPTIMIZER_CASES))
def test_optimizer_updates_each_isa(cpu, rng, isa, n, name):
    """The optimizer loops follow the GEMM's ISA choice (generic, or AVX2 + FMA for avx2 and
    avx512): each one against the float64 reference, on sizes around the 8-float vector and
    the parallel cutoff, with guard elements after every array that must stay untouched (the
    vector tail uses masked loads/stores)."""
    C = cpu._C
    previous = C.gemm_isa()
    state64 = opt_state(rng, n)
    padded = [f32(np.concatenate([a, np.full(9, 7.0)])) for a in state64]
    state32 = [p[:n] for p in padded]
    try:
        C.set_gemm_isa(isa)
        OPTIMIZER_CASES[name](cpu, *state32)
    finally:
        C.set_gemm_isa(previous)
    OPTIMIZER_CASES[name](REF, *state64)
    for got, want, p in zip(state32, state64, padded):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert (p[n:] == np.float32(7.0)).all()


def test_kernels_never_touch_memory_outside_their_arrays():
    """Vector tails, masked loads and the native engine's row reads stay inside every array:
    guarded_kernels_child.py runs each kernel, the native fit and predict on arrays against
    an inaccessible page (one element too far is a segfault, seen here as the exit status)."""
    here = os.path.dirname(__file__)
    out = subprocess.run([sys.executable, os.path.join(here, "guarded_kernels_child.py")],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             filter(None, [here, os.environ.get("PYTHONPATH")]))})
    assert out.returncode == 0, f"exit status {out.returncode} (-11: segfault)\n{out.stderr}"
    assert int(out.stdout) == len(_cpu_isas()) * 2 * 2 * (6 + 6 + 4)


# ---- from a C++ mutation audit (round 2): cases the other tests let change ------------------
@pytest.mark.parametrize("isa", _cpu_isas())
def test_lion_passes_a_nan_gradient_on(cpu, isa):
    # sign(NaN) is NaN in numpy: the weight becomes NaN (TerminateOnNaN can see it), not 0
    C = cpu._C
    previous = C.gemm_isa()
    w, g, m = np.ones(9, np.float32), np.zeros(9, np.float32), np.zeros(9, np.float32)
    g[3] = np.nan
    try:
        C.set_gemm_isa(isa)
        cpu.lion_update(w, g, m, 0.01, 0.9, 0.99, 0.0)
    finally:
        C.set_gemm_isa(previous)
    assert np.isnan(w[3]) and np.isfinite(np.delete(w, 3)).all()


def test_nadam_late_steps_with_a_long_memory(cpu, rng):
    # late steps with beta_1 near 1 (the momentum schedule's product comes from a table)
    for step in (150, 500, 2000):
        w, g = f32(rng.normal(size=16)), f32(rng.normal(size=16))
        m, v = f32(rng.normal(size=16) * 0.1), f32(np.abs(rng.normal(size=16)) * 0.1)
        ours, want = [a.copy() for a in (w, m, v)], [a.copy() for a in (w, m, v)]
        cpu.nadam_update(ours[0], g, ours[1], ours[2], 0.01, 0.999, 0.999, 1e-7, 0.0, step)
        REF.nadam_update(want[0], g.copy(), want[1], want[2], 0.01, 0.999, 0.999, 1e-7, 0.0,
                         step)  # (in float32 too: the same roundings)
        np.testing.assert_allclose(ours[0], want[0], rtol=1e-6, atol=1e-7)


def test_dropout_masks_are_the_references_bit_for_bit(cpu):
    # the scale 1 / (1 - rate) rounded as the reference rounds it, for any rate
    for rate in (0.1, 0.15, 0.25, 0.42, 0.5, 0.71):
        np.testing.assert_array_equal(cpu.dropout_mask((64, 33), rate, np.float32, 7, 3),
                                      REF.dropout_mask((64, 33), rate, np.float32, 7, 3))


def test_leaky_relu_slope_at_zero_and_below(cpu):
    z = f32([-1.0, -1e-45, -0.0, 0.0, 1.0])  # (0.2 * -1e-45 rounds to -0)
    dy = np.ones_like(z)
    got = cpu.activation_backward("leaky_relu", 0.2, z, cpu.activation_forward(
        "leaky_relu", z, 0.2), dy)
    want = REF.activation_backward("leaky_relu", 0.2, z, REF.activation_forward(
        "leaky_relu", z, 0.2), dy)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, [0.2, 0.2, 0.2, 0.2, 1.0], rtol=1e-7)


def test_dense_softmax_cross_entropy_with_the_largest_logit_last(cpu):
    logits = f32([[0.0, 1.0, 100.0], [100.0, 0.0, 1.0], [0.0, 0.0, 90.0]])
    targets = f32([[0, 0, 1], [1, 0, 0], [1, 0, 0]])
    loss, grad = cpu.softmax_cross_entropy(logits, targets, False, 1.0)
    loss_ref, grad_ref = REF.softmax_cross_entropy(logits.astype(np.float64),
                                                   targets.astype(np.float64), False, 1.0)
    assert np.isfinite(loss) and np.isclose(loss, loss_ref, rtol=1e-6)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-6, atol=1e-7)


def test_optimizer_bindings_refuse_overlapping_arrays(cpu):
    C = cpu._C
    buf = np.arange(1, 34, dtype=np.float32)
    with pytest.raises(ValueError, match="w and g: expected separate buffers"):
        C.sgd_update(buf[1:17], buf[0:16], None, 0.5, 0.0, False)


def test_tails_far_out_keep_their_relative_precision(cpu):
    # softplus' gradient sigmoid(z) ~ e^z for z << 0 (from y: -expm1(-y), not 1 - exp(-y));
    # the logit cross-entropy's log1p(e^-|x|) for confident right answers (not log(1 + .))
    z = f32([-30.0, -20.0, -17.0, -12.0, -5.0])
    y = REF.activation_forward("softplus", z, 0.0)
    np.testing.assert_allclose(cpu.activation_backward("softplus", 0.0, z, y, np.ones_like(z)),
                               REF.activation_backward("softplus", 0.0, z, y, np.ones_like(z)),
                               rtol=1e-5, atol=0)
    x, t = f32([[18.0, -20.0, 25.0, 16.5]]), f32([[1.0, 0.0, 1.0, 1.0]])
    want = np.log1p(np.exp(-np.abs(x.astype(np.float64)))).sum()
    assert cpu.binary_cross_entropy(x, t, True, 1e-7, 1.0)[0] == pytest.approx(want, rel=1e-5)


def test_sparse_cross_entropy_binding_checks_the_labels_length(cpu):
    logits, d = np.zeros((4, 3), np.float32), np.empty((4, 3), np.float32)
    for labels in (np.array([0, 1, 2, 0, 1], np.int32), np.array([0, 1], np.int32)):
        with pytest.raises(ValueError, match="labels"):
            cpu._C.softmax_xent_sparse(logits, labels, d, 1.0)


@pytest.mark.parametrize("name", ["cpu", "numpy"])
def test_activations_keep_a_0d_arrays_shape(name):
    backend = get_backend(name)
    z = np.array(0.5, np.float32)
    y = backend.activation_forward("tanh", z)
    assert y.shape == () and y == pytest.approx(np.tanh(0.5))
    dz = backend.activation_backward("tanh", 0.0, z, y, np.ones_like(z))
    assert dz.shape == () and dz == pytest.approx(1 - np.tanh(0.5) ** 2, rel=1e-6)


@pytest.mark.parametrize("name", ["cpu", "numpy"])
def test_sparse_labels_are_never_wrapped_or_truncated(name):
    """Labels that a cast to int32 would wrap (2**32 + 1 -> 1) or truncate (1.9 -> 1), and
    negative ones (numpy indexing from the end), are refused by both backends."""
    backend = get_backend(name)
    logits = np.zeros((2, 4), np.float32)
    for labels in (np.array([2**32 + 1, 1]), np.array([-1, 1]), np.array([1, 4], np.uint64)):
        with pytest.raises(ValueError, match="out of range for 4 classes"):
            backend.softmax_cross_entropy(logits, labels, True, 1.0)
    with pytest.raises(TypeError, match="integer class indices, got dtype float32"):
        backend.softmax_cross_entropy(logits, np.array([1.9, 1.0], np.float32), True, 1.0)
    loss, _ = backend.softmax_cross_entropy(logits, np.array([3, 0], np.int64), True, 1.0)
    assert loss == pytest.approx(2 * np.log(4), rel=1e-6)


@pytest.mark.parametrize("name", ["cpu", "numpy"])
def test_element_wise_losses_never_broadcast_the_target(name):
    backend = get_backend(name)
    pred, target = np.full((4, 1), 0.5, np.float32), np.full(4, 0.5, np.float32)
    for call in (lambda: backend.regression_loss("mse", pred, target, 1.0),
                 lambda: backend.regression_loss("huber", pred, target, 1.0),
                 lambda: backend.binary_cross_entropy(pred, target, False, 1e-7, 1.0)):
        with pytest.raises(ValueError, match=r"target: expected shape \(4, 1\)"):
            call()
