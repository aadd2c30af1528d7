"""pynn.set_matmul_precision: 'high' (bf16x3 on AMX tiles) against the float64 product within
its error bound, every transpose, awkward sizes, the epilogue, 1 and 2 threads, values bf16
cannot carry; 'high' computing as 'highest' where AMX does not run; training under 'high';
the setting's API and environment variable."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import pynn
from conftest import requires_backend, run_python
from pynn.backend.cpu_backend import ACTIVATION_CODES

pytestmark = requires_backend("cpu")
_C = pytest.importorskip("pynn._C")

needs_amx = pytest.mark.skipif(not _C.amx_available(),
                               reason="no AMX here (CPU or OS): 'high' computes as 'highest', "
                                      "tested by test_high_computes_as_highest_without_amx")

# Past the AMX path's size threshold (2^22 multiply-adds, any thread count); edges
# of 1 row / column past a 32-tile, K not a multiple of 32 and several K slices.
SHAPES = [(129, 131, 257), (33, 2049, 65), (300, 47, 301), (64, 1024, 64), (1000, 33, 130),
          (600, 40, 1100)]  # (the last: two row chunks of the AMX loops, three column blocks)
TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]


@pytest.fixture(autouse=True)
def _restore_precision():
    previous = pynn.get_matmul_precision()
    yield
    pynn.set_matmul_precision(previous)


def operands(rng, m, k, n, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    a64, b64 = (a64.T if ta else a64), (b64.T if tb else b64)
    return a, b, a64 @ b64, np.abs(a64) @ np.abs(b64)


def bf16x3_bound(k, abs_product):
    """|error| of a bf16x3 dot product: each product within 3 * 2^-18 |a b| (the dropped
    lo*lo term and the splits' remainders), then 3K float32 additions."""
    return (2.0 ** -16 + 3 * k * 2.0 ** -24) * abs_product + 1e-30


@needs_amx
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_high_products_within_the_bf16x3_bound(rng, threads, m, k, n, ta, tb):
    a, b, want, scale = operands(rng, m, k, n, ta, tb)
    pynn.set_matmul_precision("high")
    got = _C.gemm(a, b, ta, tb)
    assert np.all(np.abs(got - want) <= bf16x3_bound(k, scale))
    # far tighter than one bf16 product (2^-9): every cross term is there
    assert np.max(np.abs(got - want) / scale) < 2.0 ** -13


@needs_amx
@pytest.mark.parametrize("size", [1e-19, 1e-18, 1e-17])
def test_tiny_products_keep_an_absolute_floor_of_two_to_minus_126(rng, size):
    # AMX flushes subnormal products (below 2^-126: all of a * b near 1e-19 squared) and
    # cross terms (products below ~2^-118): the bound holds with 2^-126 per product added
    a, b, want, scale = operands(rng, 64, 1100, 64, False, False)
    a, b, want, scale = a * np.float32(size), b * np.float32(size), want * size**2, scale * size**2
    pynn.set_matmul_precision("high")
    got = _C.gemm(a, b, False, False)
    err = np.abs(got - want)
    relative = (2.0 ** -16 + 3 * 1100 * 2.0 ** -24) * scale  # bf16x3_bound's, without its 1e-30
    assert np.all(err <= relative + 1100 * 2.0 ** -126)
    if size == 1e-17:  # products ~1e-34: no flush, the relative bound alone
        assert np.all(err <= relative)


@needs_amx
def test_high_runs_on_amx_and_highest_does_not(rng):
    a, b, want, scale = operands(rng, 256, 256, 256, False, False)
    pynn.set_matmul_precision("highest")
    highest = _C.gemm(a, b, False, False)
    pynn.set_matmul_precision("high")
    high = _C.gemm(a, b, False, False)
    assert not np.array_equal(high, highest)  # another path, other roundings
    assert np.all(np.abs(high - want) <= bf16x3_bound(256, scale))
    assert pynn.get_matmul_precision() == "high"


@needs_amx
@pytest.mark.parametrize("ta,tb", TRANSPOSES[:3])
@pytest.mark.parametrize("act", ["linear", "relu", "tanh", "sigmoid"])
def test_high_with_alpha_beta_bias_activation_and_row_slices(rng, threads, act, ta, tb):
    m, k, n = 130, 257, 131
    a, b, product, scale = operands(rng, m, k, n, ta, tb)
    bias = rng.standard_normal(n, dtype=np.float32)
    big = rng.standard_normal((m, n + 9), dtype=np.float32)
    full = big.copy()
    c0, out = big[:, 3:3 + n], full[:, 3:3 + n]  # out: a slice, ld > n
    pynn.set_matmul_precision("high")
    got = _C.gemm(a, b, ta, tb, -0.5, 2.0, out, bias, ACTIVATION_CODES[act], 0.0)
    assert got is out
    z = -0.5 * product + 2.0 * c0.astype(np.float64) + bias
    want = {"linear": z, "relu": np.maximum(z, 0), "tanh": np.tanh(z),
            "sigmoid": 1 / (1 + np.exp(-z))}[act]
    # these activations are 1-Lipschitz: the product's bound carries over, plus the
    # epilogue's own float32 roundings
    tol = 0.5 * bf16x3_bound(k, scale) + 4 * 2.0 ** -24 * (np.abs(z) + 1)
    assert np.all(np.abs(got - want) <= tol)
    np.testing.assert_array_equal(full[:, :3], big[:, :3])  # the columns beside: untouched
    np.testing.assert_array_equal(full[:, 3 + n:], big[:, 3 + n:])


@needs_amx
def test_high_with_beta_zero_never_reads_out(rng):
    a, b, want, scale = operands(rng, 128, 256, 160, False, False)
    out = np.full((128, 160), np.nan, np.float32)
    pynn.set_matmul_precision("high")
    _C.gemm(a, b, False, False, 1.0, 0.0, out)
    assert np.all(np.abs(out - want) <= bf16x3_bound(256, scale))


@needs_amx
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_blocks_with_inf_or_nan_take_float32_and_the_rest_amx(rng, threads, ta, tb):
    # inf and NaN meet 0 in a cross term (inf * 0 = NaN), 3.397e38's bf16 high part is inf:
    # a 32 x 32 block of C whose sums are not finite is computed by the float32 kernels (the
    # same bits as 'highest', NaN where it has NaN), the others on AMX; C (beta != 0) is read
    # by both as it was.
    m, k, n = 200, 300, 230
    a, b, _, _ = operands(rng, m, k, n, ta, tb)
    opa, opb = (a.T if ta else a), (b.T if tb else b)  # views: writing them writes a, b
    opa[3, 7] = np.inf  # row block 0
    opa[140, 9] = np.nan  # row block 4
    opa[70, 11] = 3.397e38  # row block 2
    opb[5, 190] = -np.inf  # column block 5
    c = rng.standard_normal((m, n), dtype=np.float32)
    pynn.set_matmul_precision("highest")
    highest = _C.gemm(a, b, ta, tb, 1.0, 0.5, c.copy())
    pynn.set_matmul_precision("high")
    got = _C.gemm(a, b, ta, tb, 1.0, 0.5, c.copy())
    rows = np.zeros(m, bool)
    for r in (3, 140, 70):
        rows[r // 32 * 32:r // 32 * 32 + 32] = True
    cols = np.zeros(n, bool)
    cols[160:192] = True
    fallback = rows[:, None] | cols[None, :]
    np.testing.assert_array_equal(got[fallback], highest[fallback])  # bits, NaN included
    assert np.isfinite(got[~fallback]).all()
    with np.errstate(invalid="ignore", over="ignore"):
        want = opa.astype(np.float64) @ opb.astype(np.float64) + 0.5 * c
        scale = np.abs(opa.astype(np.float64)) @ np.abs(opb.astype(np.float64))
    rest = ~fallback
    assert np.all(np.abs(got[rest] - want[rest]) <= bf16x3_bound(k, scale[rest]) + 1e-6)
    assert not np.array_equal(got[rest], highest[rest])  # those ran on AMX


@needs_amx
def test_products_that_overflow_give_inf_as_float32(rng):
    # 1e21 is finite in bf16 but its low part is negative: a_hi * b_lo overflows to -inf
    # beside a_hi * b_hi's +inf (NaN) where float32 gives +inf.
    a = np.full((128, 256), 1e21, np.float32)  # (past the AMX cut)
    b = np.full((256, 128), 1e21, np.float32)
    pynn.set_matmul_precision("high")
    with np.errstate(over="ignore"):
        got = _C.gemm(a, b, False, False)
    assert np.isposinf(got).all()


@needs_amx
def test_high_gives_the_same_bits_with_any_number_of_threads(rng):
    a, b, _, _ = operands(rng, 700, 300, 650, False, True)
    a[650, 3] = np.nan  # a float32 block among the AMX ones
    pynn.set_matmul_precision("high")
    previous = _C.num_threads()
    try:
        seen = []
        for n in (1, 2, 3, 5):
            _C.set_num_threads(n)
            seen.append(_C.gemm(a, b, False, True))
    finally:
        _C.set_num_threads(previous)
    for got in seen[1:]:
        np.testing.assert_array_equal(got, seen[0])


@needs_amx
@pytest.mark.parametrize("ta,tb", TRANSPOSES)
def test_high_reads_operands_with_leading_dimensions(rng, ta, tb):
    m, k, n = 130, 161, 259
    a_big = rng.standard_normal(((k, m + 7) if ta else (m, k + 7)), dtype=np.float32)
    b_big = rng.standard_normal(((n, k + 5) if tb else (k, n + 5)), dtype=np.float32)
    a = a_big[:, 2:2 + m] if ta else a_big[:, 2:2 + k]  # row slices: ld > width
    b = b_big[:, 1:1 + k] if tb else b_big[:, 1:1 + n]
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    a64, b64 = (a64.T if ta else a64), (b64.T if tb else b64)
    pynn.set_matmul_precision("high")
    got = _C.gemm(a, b, ta, tb)
    assert np.all(np.abs(got - a64 @ b64) <= bf16x3_bound(k, np.abs(a64) @ np.abs(b64)))


@needs_amx
def test_small_products_stay_float32_under_high(rng):
    a, b, _, _ = operands(rng, 32, 64, 64, False, False)  # far below the threshold
    pynn.set_matmul_precision("highest")
    highest = _C.gemm(a, b, False, False)
    pynn.set_matmul_precision("high")
    np.testing.assert_array_equal(_C.gemm(a, b, False, False), highest)


def test_high_computes_as_highest_without_amx(rng):
    # Where AMX does not run (another ISA forced, or no AMX here) 'high' is 'highest' to the bit.
    isas = [isa for isa in ("generic", "avx2") if _C.cpu_supports_isa(isa)]
    if not _C.amx_available():
        isas.append(_C.gemm_isa())
    previous = _C.gemm_isa()
    try:
        for isa in isas:
            _C.set_gemm_isa(isa)
            for ta, tb in TRANSPOSES:
                a, b, _, _ = operands(rng, 129, 131, 257, ta, tb)
                pynn.set_matmul_precision("highest")
                highest = _C.gemm(a, b, ta, tb)
                pynn.set_matmul_precision("high")
                np.testing.assert_array_equal(_C.gemm(a, b, ta, tb), highest)
    finally:
        _C.set_gemm_isa(previous)


def _trained(precision, x, y):
    pynn.set_matmul_precision(precision)
    pynn.set_seed(0)
    # tanh, not relu: no kink for a rounding difference to flip a unit's path at
    model = pynn.Sequential([pynn.Input((256,)), pynn.Dense(256, activation="tanh"),
                             pynn.Dense(256, activation="tanh"),
                             pynn.Dense(10, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  backend="cpu")
    start = model.get_weights()
    history = model.fit(x, y, batch_size=128, epochs=3, verbose=0, shuffle=False)
    return history.history["loss"], start, model.get_weights()


@needs_amx
def test_training_under_high_follows_highest(rng):
    x = rng.standard_normal((1024, 256), dtype=np.float32)
    y = (x[:, :10] @ rng.standard_normal((10, 10))).argmax(axis=1)
    loss_highest, start, w_highest = _trained("highest", x, y)
    loss_high, _, w_high = _trained("high", x, y)
    np.testing.assert_allclose(loss_high, loss_highest, rtol=1e-4)
    assert loss_high[-1] < 0.8 * loss_high[0]
    assert not np.array_equal(w_high[0], w_highest[0])  # the steps did run on AMX
    for wh, ws, w0 in zip(w_high, w_highest, start):
        moved = np.max(np.abs(ws - w0))  # the same steps, to 1% of how far they went
        np.testing.assert_allclose(wh, ws, atol=0.01 * moved)


@pytest.mark.parametrize("bad", ["medium", "HIGH", "", None, 1, ("high",)])
def test_bad_precision_names_the_choices(bad):
    before = pynn.get_matmul_precision()
    with pytest.raises(ValueError, match=r"matmul precision must be one of \('highest', 'high'\)"):
        pynn.set_matmul_precision(bad)
    with pytest.raises(ValueError, match="expected 'highest' or 'high'"):
        _C.set_matmul_precision("medium")
    assert pynn.get_matmul_precision() == before


def test_set_get_and_info():
    pynn.set_matmul_precision("high")
    assert pynn.get_matmul_precision() == _C.matmul_precision() == "high"
    cpu = pynn.info()["cpu"]
    assert cpu["matmul_precision"] == "high" and cpu["amx"] == _C.amx_available()
    pynn.set_matmul_precision("highest")
    assert pynn.get_matmul_precision() == "highest"


def _python(code, **env):
    """code in a fresh interpreter, PYNN_MATMUL_PRECISION unset unless env gives it."""
    environ = {k: v for k, v in os.environ.items() if k != "PYNN_MATMUL_PRECISION"}
    return run_python(code, env={**environ, **env}, timeout=120)


def test_environment_variable_sets_the_start_value():
    r = _python("import pynn; print(pynn.get_matmul_precision())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "highest"  # the default
    r = _python("import pynn; print(pynn.get_matmul_precision())", PYNN_MATMUL_PRECISION="high")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "high"
    r = _python("import pynn; print(pynn.get_matmul_precision())", PYNN_MATMUL_PRECISION="fast")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "highest"
    assert "PYNN_MATMUL_PRECISION=fast ignored: expected 'highest' or 'high'" in r.stderr


@needs_amx
@pytest.mark.skipif(sys.platform != "linux", reason="Linux's arch_prctl")
def test_the_tile_state_is_asked_for_at_the_first_high_product_only():
    # info() and amx_available() ask nothing of the OS (a granted tile state makes every
    # signal frame ~11 KiB larger); the first product under 'high' does.
    code = """if True:
        import ctypes, numpy as np, pynn
        from pynn import _C
        libc = ctypes.CDLL(None, use_errno=True)
        def granted():  # ARCH_GET_XCOMP_PERM: the state components this process may use
            mask = ctypes.c_uint64(0)
            assert libc.syscall(158, 0x1022, ctypes.byref(mask)) == 0, ctypes.get_errno()
            return bool(mask.value & (1 << 18))  # XTILEDATA
        pynn.info(); pynn.precision.amx_available()
        before = granted()
        pynn.set_matmul_precision("high")
        _C.gemm(np.ones((128, 256), np.float32), np.ones((256, 128), np.float32))
        print(before, granted())
    """
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True"]


@needs_amx
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_multiplies_on_amx_as_its_parent():
    # The child inherits the tile permission, not the parent's pool threads: its new workers
    # configure their tiles as the parent's did, and the products keep their bits.
    code = """if True:
        import os, sys, numpy as np, pynn
        from pynn import _C
        _C.set_num_threads(2)
        pynn.set_matmul_precision("high")
        rng = np.random.default_rng(5)
        a = rng.standard_normal((300, 400), dtype=np.float32)
        b = rng.standard_normal((400, 350), dtype=np.float32)
        want = _C.gemm(a, b)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if np.array_equal(_C.gemm(a, b), want) else 3)
        _, status = os.waitpid(pid, 0)
        assert np.array_equal(_C.gemm(a, b), want)
        sys.exit(os.waitstatus_to_exitcode(status))
    """
    r = _python(code)
    assert r.returncode == 0, (r.returncode, r.stderr)
