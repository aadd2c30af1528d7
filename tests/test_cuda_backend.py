"""The cuda backend's kernels (pynn._cuda on CuPy arrays) against the numpy float64 reference,
on fresh random inputs of awkward sizes. They need a GPU: marked `cuda`, and skipped with the
reason (no _cuda, no CuPy, no device) where the cuda backend is unavailable. Whole training
runs against the numpy backend are in test_parity.py, which covers every available backend."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import requires_backend
from kernel_cases import OPTIMIZER_CASES, SHAPES, opt_state, ref64
from pynn.activations import NAMES
from pynn.backend import get_backend

pytestmark = [pytest.mark.cuda, requires_backend("cuda")]

REF = get_backend("numpy")


@pytest.fixture
def cuda():
    return get_backend("cuda")


def dev(backend, a, dtype=np.float32):
    return backend.xp.asarray(np.ascontiguousarray(a, dtype=dtype))


def host(backend, a):
    return backend.to_numpy(a)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("act", NAMES)
def test_activation_forward_backward(cuda, rng, shape, act):
    param = {"leaky_relu": 0.2, "elu": 1.0}.get(act, 0.0)
    z = rng.normal(0, 3, shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    y = host(cuda, cuda.activation_forward(act, dev(cuda, z), param))
    np.testing.assert_allclose(y, ref64(REF.activation_forward, act, z, param), rtol=2e-6,
                               atol=2e-6)
    dz = host(cuda, cuda.activation_backward(act, param, dev(cuda, z), dev(cuda, y),
                                             dev(cuda, dy)))
    np.testing.assert_allclose(dz, ref64(REF.activation_backward, act, param, z, y, dy),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 17, 129), (129, 3, 17), (64, 257, 33)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False),
                                             (True, True)])
@pytest.mark.parametrize("act", ["linear", "relu", "gelu", "tanh"])
def test_gemm_with_bias_and_activation(cuda, rng, m, k, n, trans_a, trans_b, act):
    a = rng.normal(size=(k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32)
    got = host(cuda, cuda.gemm(dev(cuda, a), dev(cuda, b), trans_a, trans_b,
                               bias=dev(cuda, bias), activation=act))
    want = ref64(REF.gemm, a, b, trans_a, trans_b, bias=bias.astype(np.float64),
                 activation=act)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_gemm_alpha_beta_out(cuda, rng):
    a, b = rng.normal(size=(17, 5)).astype(np.float32), rng.normal(size=(5, 9)).astype(np.float32)
    c = rng.normal(size=(17, 9)).astype(np.float32)
    out = dev(cuda, c)
    res = cuda.gemm(dev(cuda, a), dev(cuda, b), alpha=0.5, beta=2.0, out=out)
    assert res is out
    np.testing.assert_allclose(host(cuda, out), 0.5 * (a.astype(np.float64) @ b) + 2.0 * c,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="inner dimensions"):
        cuda.gemm(dev(cuda, a), dev(cuda, a))


@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_and_bias_grad(cuda, rng, shape):
    z = rng.normal(0, 5, shape).astype(np.float32)
    dy = rng.normal(size=shape).astype(np.float32)
    y = host(cuda, cuda.softmax_forward(dev(cuda, z)))
    np.testing.assert_allclose(y, ref64(REF.softmax_forward, z), rtol=1e-5, atol=1e-7)
    dz = host(cuda, cuda.softmax_backward(dev(cuda, y), dev(cuda, dy)))
    np.testing.assert_allclose(dz, ref64(REF.softmax_backward, y, dy), rtol=1e-5, atol=1e-6)
    db = host(cuda, cuda.bias_grad(dev(cuda, dy)))
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=0), rtol=1e-5,
                               atol=1e-5 * np.sqrt(shape[0]))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sparse", [True, False])
def test_softmax_cross_entropy(cuda, rng, shape, sparse):
    rows, cols = shape
    logits = rng.normal(0, 4, shape).astype(np.float32)
    if sparse:
        targets = rng.integers(0, cols, rows).astype(np.int32)
    else:
        targets = rng.dirichlet(np.ones(cols), rows).astype(np.float32)
    loss, grad = cuda.softmax_cross_entropy(dev(cuda, logits), dev(cuda, targets,
                                            targets.dtype), sparse, 1.0 / rows)
    loss_ref, grad_ref = REF.softmax_cross_entropy(
        logits.astype(np.float64), targets if sparse else targets.astype(np.float64), sparse,
        1.0 / rows)
    # A row whose label wins by far has loss log(1 + tiny): float32's absolute error of the
    # exp sum (~6e-8 per row) is what bounds it, not the relative one.
    assert np.isclose(loss, loss_ref, rtol=1e-5, atol=1e-6 * rows)
    np.testing.assert_allclose(host(cuda, grad), grad_ref, rtol=1e-5, atol=2e-7)


def test_softmax_cross_entropy_rejects_labels_out_of_range(cuda):
    logits = dev(cuda, np.zeros((3, 4)))
    labels = dev(cuda, [0, 4, 1], np.int32)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        cuda.softmax_cross_entropy(logits, labels, True, 1.0)


@pytest.mark.parametrize("n", [1, 3, 17, 129, 100003])
@pytest.mark.parametrize("kind", ["mse", "mae", "huber"])
def test_regression_losses(cuda, rng, n, kind):
    pred, target = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    loss, grad = cuda.regression_loss(kind, dev(cuda, pred), dev(cuda, target), 1.0 / n, 0.7)
    loss_ref, grad_ref = REF.regression_loss(kind, pred.astype(np.float64),
                                             target.astype(np.float64), 1.0 / n, 0.7)
    assert np.isclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(host(cuda, grad), grad_ref, rtol=1e-5, atol=1e-7 / n)


@pytest.mark.parametrize("n", [1, 3, 17, 129, 100003])
@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_cross_entropy(cuda, rng, n, from_logits):
    # Probabilities stay clear of the clip bound 1 - 1e-7, which float32 rounds below the
    # float64 reference's (the clip itself is tested on the CPU with exact values).
    pred = (rng.normal(0, 3, n) if from_logits
            else rng.uniform(0, 1 - 1e-6, n)).astype(np.float32)
    target = rng.integers(0, 2, n).astype(np.float32)
    loss, grad = cuda.binary_cross_entropy(dev(cuda, pred), dev(cuda, target), from_logits,
                                           1e-7, 1.0 / n)
    loss_ref, grad_ref = REF.binary_cross_entropy(pred.astype(np.float64),
                                                  target.astype(np.float64), from_logits,
                                                  1e-7, 1.0 / n)
    assert np.isclose(loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(host(cuda, grad), grad_ref, rtol=1e-4, atol=1e-6 / n)


@pytest.mark.parametrize("kind", ["mse", "mae", "huber", "bce", "bce_logits"])
def test_a_nan_prediction_gives_a_nan_loss_as_on_the_cpu(cuda, kind):
    """NaN stays NaN (fminf/fmaxf clipped a NaN probability to eps: a finite BCE, which
    TerminateOnNaN would miss); the CPU kernels and the numpy reference agree."""
    pred = np.array([np.nan, 0.3, 0.8], np.float32)
    target = np.array([1.0, 0.0, 1.0], np.float32)
    from pynn.backend import available_backends

    cpu = get_backend("cpu") if available_backends().get("cpu") is None else None
    for backend in [b for b in (cuda, REF, cpu) if b is not None]:
        p, t = (dev(cuda, pred), dev(cuda, target)) if backend is cuda else (pred, target)
        if kind.startswith("bce"):
            loss, grad = backend.binary_cross_entropy(p, t, kind == "bce_logits", 1e-7, 1.0)
        else:
            loss, grad = backend.regression_loss(kind, p, t, 1.0, 1.0)
        assert np.isnan(loss), (backend.name, kind)


@pytest.mark.parametrize("n", [1, 3, 17, 129, 100003])
@pytest.mark.parametrize("name", sorted(OPTIMIZER_CASES))
def test_optimizer_updates(cuda, rng, n, name):
    state64 = list(opt_state(rng, n))
    state_dev = [dev(cuda, a) for a in state64]
    OPTIMIZER_CASES[name](cuda, *state_dev)
    OPTIMIZER_CASES[name](REF, *state64)
    for got, want in zip(state_dev, state64):
        np.testing.assert_allclose(host(cuda, got), want, rtol=1e-5, atol=1e-6)

