"""The CPU GEMM against numpy (float64) and its naive reference: every transpose case,
awkward sizes, leading dimensions, alpha/beta, the fused epilogue, every ISA this CPU runs,
1 and 2 threads; binding fuzzing; the thread pool across fork."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pynn
from conftest import AVAILABLE, requires_backend, run_python
from pynn.backend.cpu_backend import ACTIVATION_CODES

pytestmark = requires_backend("cpu")
_C = pytest.importorskip("pynn._C")

ISAS = [isa for isa in ("generic", "avx2", "avx512") if _C.cpu_supports_isa(isa)]
SIZES = [1, 2, 3, 7, 17, 31, 33, 64, 129, 257]
REF = pynn.get_backend("numpy")


@pytest.fixture(params=ISAS)
def isa(request):
    previous = _C.gemm_isa()
    _C.set_gemm_isa(request.param)
    yield request.param
    _C.set_gemm_isa(previous)


def reference(a, b, ta, tb, alpha=1.0, beta=0.0, c=None, bias=None, act="linear", param=0.0):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    z = alpha * ((a64.T if ta else a64) @ (b64.T if tb else b64))
    if beta:
        z += beta * c.astype(np.float64)
    if bias is not None:
        z += bias
    return REF.activation_forward(act, z, param)


def tolerance(k):
    return 1e-5 * np.sqrt(max(k, 1)) + 1e-6


def operands(rng, m, k, n, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    return a, b


def assert_fused_product(rng, a, b, ta, tb):
    """C = 0.5 op(a) op(b) - 1.5 C + bias, then ReLU (the store of every K slice: beta on the
    first, the bias and activation on the last) against the float64 reference."""
    m, k = a.shape[::-1] if ta else a.shape
    n = b.shape[0] if tb else b.shape[1]
    bias = rng.standard_normal(n).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    want = reference(a, b, ta, tb, 0.5, -1.5, c, bias, "relu")
    got = _C.gemm(a, b, ta, tb, 0.5, -1.5, c.copy(), bias, ACTIVATION_CODES["relu"], 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=tolerance(k) * np.sqrt(k),
                               err_msg=f"{m}x{k}x{n}")


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_all_sizes_and_transposes(rng, isa, threads, ta, tb):
    for m in SIZES:
        for n in SIZES:
            k = int(rng.choice(SIZES))
            a, b = operands(rng, m, k, n, ta, tb)
            got = _C.gemm(a, b, ta, tb)
            np.testing.assert_allclose(got, reference(a, b, ta, tb), rtol=tolerance(k),
                                       atol=tolerance(k) * np.sqrt(k), err_msg=f"{m}x{k}x{n}")


@pytest.mark.parametrize("m,k,n", [(128, 784, 256), (256, 1024, 1024), (32, 64, 64),
                                   (300, 500, 200), (1, 1000, 1), (1000, 1, 1000)])
def test_large_shapes(rng, isa, threads, m, k, n):
    for ta, tb in [(False, False), (False, True), (True, False)]:
        a, b = operands(rng, m, k, n, ta, tb)
        np.testing.assert_allclose(_C.gemm(a, b, ta, tb), reference(a, b, ta, tb),
                                   rtol=1e-4, atol=tolerance(k) * np.sqrt(k))


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_k_deeper_than_one_cache_block(rng, isa, threads, ta, tb):
    """K past several K slices of every ISA (KC 256-1024): the first slice applies beta, the
    later ones accumulate into C, the last applies bias and activation."""
    for m, k, n in [(13, 1025, 70), (29, 2081, 37)]:
        assert_fused_product(rng, *operands(rng, m, k, n, ta, tb), ta, tb)


@pytest.mark.parametrize("m,k,n,lda", [(100, 1024, 40, 1024), (29, 1000, 200, 2048),
                                       (128, 300, 250, 300), (97, 77, 320, 77)])
def test_packing_choices(rng, isa, threads, m, k, n, lda):
    """The shapes where the driver's packing choices turn: A rows a multiple of 4 KiB apart
    (packed whatever N for a 12-row tile: lda 1024 and 2048, K below lda), and M up to 128
    with narrow B (read in place by the avx512 kernel, packed by avx2's from M = 65), with
    beta, bias and ReLU (the store of every K slice)."""
    a = rng.standard_normal((m, lda), dtype=np.float32)[:, :k]
    b = rng.standard_normal((k, n), dtype=np.float32)
    assert_fused_product(rng, a, b, False, False)


@pytest.mark.parametrize("m,k,n,ta", [(200, 5, 300, False), (20, 50, 400, False),
                                      (12, 1025, 333, False), (145, 2100, 1100, False),
                                      (200, 64, 100, True), (200, 64, 100, False),
                                      (256, 1024, 1024, True)])
def test_b_packed_by_the_micro_kernels(rng, isa, threads, m, k, n, ta):
    """A row-major B packed strip by strip inside the avx512 tiles of the first row block
    (driver.cpp's run_rect): fewer rows than tiles to share them (K = 5), one full tile (M =
    12, 20: B packed for ldb > 320), several K slices and column panels, an edge strip, A
    packed, read in place and transposed; with beta, bias and ReLU. The other ISAs pack in a
    pass of their own: the same answers."""
    assert_fused_product(rng, *operands(rng, m, k, n, ta, False), ta, False)


@pytest.mark.parametrize("ldb", [1024, 2048])
def test_transposed_b_rows_4_kib_apart(rng, isa, threads, ldb):
    """A transposed B whose rows lie a multiple of 4 KiB apart is packed through an L1 tile
    of 32 columns (driver.cpp's transpose_rows_tiled): K below one tile, K with a ragged
    last tile, several K slices (K = 2045); full strips and an edge strip."""
    for m, k, n in [(50, 5, 33), (130, 37, 64), (20, 1000, 100), (140, ldb - 3, 70)]:
        b = rng.standard_normal((n, ldb), dtype=np.float32)[:, :k]
        a = rng.standard_normal((m, k), dtype=np.float32)
        np.testing.assert_allclose(_C.gemm(a, b, False, True), reference(a, b, False, True),
                                   rtol=1e-4, atol=tolerance(k) * np.sqrt(k),
                                   err_msg=f"{m}x{k}x{n}")


@pytest.mark.parametrize("act", list(ACTIVATION_CODES))
def test_epilogue_alpha_beta(rng, isa, threads, act):
    param = {"leaky_relu": 0.1, "elu": 0.7}.get(act, 0.0)
    for m, k, n in [(1, 1, 1), (3, 17, 5), (33, 129, 65), (130, 70, 47)]:
        a, b = operands(rng, m, k, n, False, False)
        bias = rng.standard_normal(n).astype(np.float32)
        c = rng.standard_normal((m, n)).astype(np.float32)
        want = reference(a, b, False, False, 0.5, -1.5, c, bias, act, param)
        got = _C.gemm(a, b, False, False, 0.5, -1.5, c.copy(), bias, ACTIVATION_CODES[act],
                      param)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        # beta = 0: out is write-only, NaN in it must not leak through
        out = np.full((m, n), np.nan, np.float32)
        _C.gemm(a, b, False, False, 1.0, 0.0, out, bias, ACTIVATION_CODES[act], param)
        np.testing.assert_allclose(out, reference(a, b, False, False, bias=bias, act=act,
                                                  param=param), rtol=1e-4, atol=1e-4)


def test_leading_dimensions(rng, isa, threads):
    """Row slices of bigger arrays (ld > cols) work without a copy, for a, b and out."""
    big_a = rng.standard_normal((40, 50), dtype=np.float32)
    big_b = rng.standard_normal((60, 70), dtype=np.float32)
    big_c = np.zeros((45, 80), np.float32)
    a, b = big_a[3:20, 5:38], big_b[1:34, 2:31]  # (17, 33) @ (33, 29)
    out = big_c[2:19, 7:36]
    _C.gemm(a, b, False, False, 1.0, 0.0, out)
    np.testing.assert_allclose(out, reference(a, b, False, False), rtol=1e-5, atol=1e-5)
    assert (big_c[:2] == 0).all() and (big_c[:, :7] == 0).all() and (big_c[:, 36:] == 0).all()


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("act", ["linear", "relu", "sigmoid"])
def test_single_output_column(rng, threads, ta, tb, act):
    """N = 1 (a one-output layer) takes a matrix-vector path: rows over 256-row blocks and
    threads, K past the 8-wide sums, strided columns of B and C, the whole epilogue."""
    for m, k in [(1, 1), (7, 9), (300, 257), (1000, 700)]:
        a, b = operands(rng, m, k, 1, ta, tb)
        if not tb:  # a strided column: every third element of a wider array
            b = np.repeat(b, 3, axis=1)[:, :1]
        bias = rng.standard_normal(1).astype(np.float32)
        big = rng.standard_normal((m, 4)).astype(np.float32)
        out = big[:, 2:3]  # ldc = 4
        c0 = out.copy()
        _C.gemm(a, b, ta, tb, 0.5, 2.0, out, bias, ACTIVATION_CODES[act], 0.0)
        want = reference(a, b, ta, tb, alpha=0.5, beta=2.0, c=c0, bias=bias, act=act)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=tolerance(k) * 4,
                                   err_msg=f"m={m} k={k}")


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_inner_dimension_one(rng, isa, ta, tb):
    """K = 1 (the input gradient of a one-output layer; a one-feature model's first layer)
    is an outer product: small ones take their own path, big threaded ones the tiles, and a
    row's result is the same bits on both (alpha 1, beta 0)."""
    for m, n in [(1, 1), (3, 17), (32, 64), (129, 33)]:
        a, b = operands(rng, m, 1, n, ta, tb)
        bias = rng.standard_normal(n).astype(np.float32)
        out = rng.standard_normal((m, n)).astype(np.float32)
        c0 = out.copy()
        _C.gemm(a, b, ta, tb, 0.5, 2.0, out, bias, ACTIVATION_CODES["tanh"], 0.0)
        want = reference(a, b, ta, tb, alpha=0.5, beta=2.0, c=c0, bias=bias, act="tanh")
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6, err_msg=f"m={m} n={n}")
    previous = _C.num_threads()
    try:
        _C.set_num_threads(2)
        x = rng.standard_normal((4000, 1)).astype(np.float32)
        w = rng.standard_normal((1, 96)).astype(np.float32)
        bias = rng.standard_normal(96).astype(np.float32)
        relu = ACTIVATION_CODES["relu"]
        big = _C.gemm(x, w, False, False, 1.0, 0.0, None, bias, relu, 0.0)
        small = _C.gemm(x[:10], w, False, False, 1.0, 0.0, None, bias, relu, 0.0)
        np.testing.assert_array_equal(small, big[:10])
    finally:
        _C.set_num_threads(previous)


def test_edge_tiles_write_only_their_block(rng, isa, threads):
    """Every edge-tile shape (rows and columns around the 6/12-row, 8/16/32-column tiles)
    stores exactly its m x n block of a bigger array: a store mask one lane too wide would
    overwrite the sentinel beside it (zero-padded strips make that extra lane 0 without bias,
    so the bias, beta and ReLU epilogue all run here)."""
    sentinel = np.float32(7.5)
    for m in (1, 5, 6, 7, 11, 12, 13, 25):
        for n in (1, 7, 8, 9, 15, 16, 17, 24, 29, 31, 32, 33, 47, 63, 65):
            k = int(rng.integers(1, 40))
            a, b = operands(rng, m, k, n, False, False)
            bias = rng.standard_normal(n).astype(np.float32) + 10  # lane past the end: > 0
            c0 = rng.standard_normal((m, n)).astype(np.float32)
            big = np.full((m + 4, n + 40), sentinel, np.float32)
            out = big[2:2 + m, 3:3 + n]
            out[...] = c0
            _C.gemm(a, b, False, False, 1.0, 0.5, out, bias, ACTIVATION_CODES["relu"], 0.0)
            want = reference(a, b, False, False, beta=0.5, c=c0, bias=bias, act="relu")
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=tolerance(k) * 10,
                                       err_msg=f"m={m} n={n} k={k}")
            out[...] = sentinel
            assert (big == sentinel).all(), f"m={m} n={n} k={k}: wrote outside its block"


def test_no_access_past_array_ends():
    """Masked loads and stores, edge strips and unpacked operands never touch memory outside
    a, b, bias or out: each array ends (or starts) against an inaccessible page, so one element
    too far is a segfault, caught here as the subprocess' exit status."""
    code = (
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from guarded_memory import guarded, guarded_copy\n"
        "import pynn._C as C\n"
        "rng = np.random.default_rng()\n"
        "count = 0\n"
        f"for isa in {ISAS!r}:\n"
        "    C.set_gemm_isa(isa)\n"
        "    for threads in (1, 2):\n"
        "        C.set_num_threads(threads)\n"
        "        for m, k, n in [(1, 1, 1), (1, 300, 17), (7, 3, 9), (13, 5, 33), (12, 16, 32),\n"
        "                        (25, 129, 47), (131, 7, 65), (3, 257, 1), (67, 300, 200)]:\n"
        "            for ta in (False, True):\n"
        "                for tb in (False, True):\n"
        "                    for at in ('end', 'start'):\n"
        "                        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)\n"
        "                        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)\n"
        "                        bias = rng.standard_normal(n, dtype=np.float32)\n"
        "                        c0 = rng.standard_normal((m, n), dtype=np.float32)\n"
        "                        ga, gb = guarded_copy(a, at), guarded_copy(b, at)\n"
        "                        gbias, out = guarded_copy(bias, at), guarded_copy(c0, at)\n"
        "                        C.gemm(ga, gb, ta, tb, 1.0, 0.5, out, gbias, 1, 0.0)\n"
        "                        want = np.maximum((a.T if ta else a).astype(np.float64)\n"
        "                                          @ (b.T if tb else b) + 0.5 * c0 + bias, 0)\n"
        "                        assert np.allclose(out, want, rtol=1e-4, atol=1e-3), (isa, m, k, n)\n"
        "                        out2 = guarded((m, n), at=at)\n"
        "                        C.gemm(ga, gb, ta, tb, 1.0, 0.0, out2)\n"
        "                        count += 1\n"
        "print(count)\n")
    out = run_python(code, timeout=600)
    assert out.returncode == 0, f"exit status {out.returncode} (-11: segfault)\n{out.stderr}"
    assert int(out.stdout) == len(ISAS) * 2 * 9 * 4 * 2


@pytest.mark.parametrize("m", [5, 128, 131, 784])
@pytest.mark.parametrize("ta", [False, True])
def test_a_row_does_not_depend_on_its_position(rng, isa, threads, m, ta):
    # Edge row strips run a shorter micro-kernel; each row must still sum in the same order
    # wherever it falls, so reordering samples reorders predictions bit for bit.
    k, n = 300, 40
    a = rng.normal(size=(m, k)).astype(np.float32)
    b = rng.normal(size=(k, n)).astype(np.float32)
    perm = rng.permutation(m)
    def run(x):
        return _C.gemm(np.ascontiguousarray(x.T) if ta else x, b, ta)
    np.testing.assert_array_equal(run(a[perm]), run(a)[perm])


@pytest.mark.parametrize("n", [2, 10, 16, 17])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_a_column_does_not_depend_on_the_columns_beside_it(rng, isa, threads, n, ta, tb):
    # A product of at most 16 columns runs a one-vector micro-kernel on AVX-512 (a 10-class
    # output layer); each element must still sum in the same order as in a wide product.
    m, k, wide = 131, 300, 40
    a, b = operands(rng, m, k, wide, ta, tb)
    bias = rng.standard_normal(wide).astype(np.float32)
    b_narrow = np.ascontiguousarray(b[:n] if tb else b[:, :n])
    relu = ACTIVATION_CODES["relu"]
    got = _C.gemm(a, b_narrow, ta, tb, 1.0, 0.0, None, bias[:n].copy(), relu, 0.0)
    want = _C.gemm(a, b, ta, tb, 1.0, 0.0, None, bias, relu, 0.0)[:, :n]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, reference(a, b_narrow, ta, tb, bias=bias[:n], act="relu"),
                               rtol=1e-5, atol=tolerance(k))


def test_matches_naive_reference(rng, isa):
    for m, k, n in [(5, 3, 7), (129, 17, 33)]:
        a, b = operands(rng, m, k, n, True, False)
        bias = rng.standard_normal(n).astype(np.float32)
        got = _C.gemm(a, b, True, False, 1.0, 0.0, None, bias, 4, 0.0)
        ref = _C.gemm_ref(a, b, True, False, 1.0, 0.0, None, bias, 4, 0.0)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_zero_sizes():
    a = np.zeros((0, 5), np.float32)
    assert _C.gemm(a, np.zeros((5, 3), np.float32)).shape == (0, 3)
    c = np.ones((2, 3), np.float32)
    out = _C.gemm(np.zeros((2, 0), np.float32), np.zeros((0, 3), np.float32), False, False,
                  1.0, 2.0, c, np.ones(3, np.float32))
    np.testing.assert_array_equal(out, np.full((2, 3), 3.0))


def test_binding_errors():
    a, b = np.zeros((3, 4), np.float32), np.zeros((5, 6), np.float32)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)|inner"):
        _C.gemm(a, b)
    with pytest.raises(TypeError, match="float32"):
        _C.gemm(a.astype(np.float64), np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="2-d"):
        _C.gemm(np.zeros(4, np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="stride"):
        _C.gemm(np.zeros((4, 3), np.float32).T, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="bias"):
        _C.gemm(a, np.zeros((4, 2), np.float32), False, False, 1.0, 0.0, None,
                np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="beta"):
        _C.gemm(a, np.zeros((4, 2), np.float32), False, False, 1.0, 1.0)
    with pytest.raises(ValueError):
        _C.gemm(a, np.zeros((4, 2), np.float32), False, False, 1.0, 0.0,
                np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="activation"):
        _C.gemm(a, np.zeros((4, 2), np.float32), False, False, 1.0, 0.0, None, None, 99)
    ro = np.zeros((3, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only|writ"):
        _C.gemm(a, np.zeros((4, 2), np.float32), False, False, 1.0, 0.0, ro)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(0, 40), k=st.integers(0, 40), n=st.integers(0, 40),
       k2=st.integers(0, 40), ta=st.booleans(), tb=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float32, np.float64, np.int32, np.float16]),
       layout=st.sampled_from(["c", "f", "strided", "misaligned", "sliced"]),
       with_bias=st.booleans(), bias_len=st.integers(0, 41))
def test_fuzz_bindings_never_crash(m, k, n, k2, ta, tb, dtype, layout, with_bias, bias_len):
    """Random shapes, dtypes and layouts: a correct result or a clear exception, never a crash."""
    rng = np.random.default_rng(m * 10007 + k * 101 + n)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k2) if tb else (k2, n)).astype(dtype)
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided":
        a = np.repeat(a, 2, axis=1)[:, ::2]
    elif layout == "misaligned" and a.size:
        raw = np.zeros(a.nbytes + 1, np.uint8)
        a = np.frombuffer(raw[1:1 + a.nbytes].data, dtype=a.dtype).reshape(a.shape)
    elif layout == "sliced":
        a = np.pad(a, ((0, 0), (0, 3)))[:, :a.shape[1]]
    bias = rng.standard_normal(bias_len).astype(np.float32) if with_bias else None
    try:
        got = _C.gemm(a, b, ta, tb, 1.0, 0.0, None, bias, 1, 0.0)
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message, not an empty error
        return
    assert a.dtype == np.float32 and b.dtype == np.float32 and k == k2
    want = reference(a, b, ta, tb, bias=bias, act="relu")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_isa_environment_switch():
    """PYNN_ISA forces the instruction set; an unsupported one warns and falls back."""
    code = "import pynn._C as C; print(C.gemm_isa())"
    for isa in ISAS:
        out = run_python(code, env={**os.environ, "PYNN_ISA": isa})
        assert out.stdout.strip() == isa, out.stderr
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                         text=True, env={**os.environ, "PYNN_ISA": "sse9"})
    assert out.stdout.strip() in ISAS and "sse9" in out.stderr
    with pytest.raises(ValueError, match="supported"):
        _C.set_gemm_isa("sse9")


def test_pool_survives_fork():
    """A forked child (multiprocessing's default) can run threaded kernels; no hang."""
    code = (
        "import os, sys, numpy as np, pynn._C as C\n"
        "C.set_num_threads(2)\n"
        "a = np.ones((512, 512), np.float32)\n"
        "C.gemm(a, a)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    r = C.gemm(a, a)\n"
        "    os._exit(0 if r[0, 0] == 512 and C.num_threads() == 2 else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert C.gemm(a, a)[0, 0] == 512\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n")
    out = run_python(code, timeout=120)
    assert out.returncode == 0, out.stderr


# The subprocess scripts counting the process's OS threads start alike
_THREAD_COUNT_PRELUDE = (
    "import os, threading, numpy as np, pynn._C as C\n"
    "def tasks(): return len(os.listdir('/proc/self/task'))\n"
    "base = tasks(); a = np.ones((512, 512), np.float32)\n")


def test_fewer_threads_stop_the_idle_workers():
    """set_num_threads(1) after 16 left the 15 workers (asleep) for good: at one thread the
    pool, which resizes at its next use, is never used again."""
    code = _THREAD_COUNT_PRELUDE + (
        "C.set_num_threads(16); C.gemm(a, a); grown = tasks()\n"
        "C.set_num_threads(1); assert C.gemm(a, a)[0, 0] == 512; one = tasks()\n"
        "C.set_num_threads(3); assert C.gemm(a, a)[0, 0] == 512; three = tasks()\n"
        "print(grown - base, one - base, three - base)\n")
    out = run_python(code, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["15", "0", "2"], out.stdout


def test_fewer_threads_asked_during_a_gemm_stop_the_workers():
    """set_num_threads(1) while another thread's GEMM held the pool could not shrink it, and
    at one thread the pool is never used again: its 15 workers stayed for good."""
    code = _THREAD_COUNT_PRELUDE + (
        "C.set_num_threads(16); C.gemm(a, a)\n"
        "stop = threading.Event(); busy = threading.Event()\n"
        "def loop():\n"
        "    while not stop.is_set():\n"
        "        C.gemm(a, a); busy.set()\n"
        "t = threading.Thread(target=loop); t.start(); busy.wait()\n"
        "for _ in range(200):\n"  # some of the calls land while a GEMM holds the pool
        "    C.set_num_threads(16); C.set_num_threads(1)\n"
        "stop.set(); t.join()\n"
        "import time\n"  # (a joined thread's OS thread may linger for a moment)
        "for _ in range(300):\n"
        "    if tasks() <= base: break\n"
        "    time.sleep(0.01)\n"
        "print(tasks() - base)\n")
    out = run_python(code, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"], out.stdout


_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")  # reserves terabytes: no RLIMIT_AS


@pytest.mark.skipif(_ASAN, reason="AddressSanitizer cannot run under an address-space limit")
@pytest.mark.parametrize("grow", [False, True])
def test_pool_runs_with_the_threads_the_system_starts(grow):
    """A worker the system refuses (here: no address space for more thread stacks, as a
    container's limits do) leaves the pool with the workers it has, said once on stderr; the
    first pool hung for ever (its constructor unwound under sleeping workers), a resized one
    failed every call."""
    limit_code = (
        "import resource, sys, threading, numpy as np, pynn._C as C\n"
        "a = np.ones((512, 512), np.float32)\n"
        f"if {grow}:\n"
        "    C.set_num_threads(2); C.gemm(a, a)\n"
        "size = [int(l.split()[1]) for l in open('/proc/self/status')\n"
        "        if l.startswith('VmSize')][0]\n"
        "limit = size * 1024 + (300 << 20)  # room for a few dozen 8 MiB stacks\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n")
    # Does this system refuse threads under that limit at all? (qemu user-mode emulation
    # reserves the guest's address space itself: there every thread starts.)
    probe = run_python(limit_code + (
        "stop = threading.Event(); n = 0\n"
        "try:\n"
        "    while n < 1100:\n"
        "        threading.Thread(target=stop.wait, daemon=True).start(); n += 1\n"
        "except RuntimeError:\n"
        "    pass\n"
        "stop.set(); print(n)\n"), timeout=120)
    if probe.returncode == 0 and probe.stdout.split() == ["1100"]:
        pytest.skip("this system starts every thread under the address-space limit")
    code = limit_code + (
        "C.set_num_threads(1024)\n"
        "for _ in range(3):\n"
        "    assert C.gemm(a, a)[0, 0] == 512\n"
        "import pynn\n"
        "print(C.num_threads(), C.running_threads() == pynn.get_num_threads() < 1024,\n"
        "      pynn.info()['cpu']['threads'] == pynn.get_num_threads())\n")
    try:
        out = run_python(code, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the thread pool hung when the system refused a thread")
    assert out.returncode == 0, out.stderr
    # the setting is kept; get_num_threads and info say what runs
    assert out.stdout.split() == ["1024", "True", "True"], out.stdout
    assert out.stderr.count("pynn: the system refused worker thread") == 1, out.stderr


def test_forked_child_predicts_while_a_parent_thread_was_predicting():
    """The child inherits the model's cached native engine with its lock held by a thread
    that does not exist there: it waited for ever; now it builds its own engine."""
    code = (
        "import os, sys, threading, time, numpy as np, pynn\n"
        "m = pynn.Sequential([pynn.Input((64,)), pynn.Dense(256, activation='relu'),\n"
        "                     pynn.Dense(10)])\n"
        "x = np.ones((512, 64), np.float32)\n"
        "want = m.predict(x[:10])\n"
        "threading.Thread(target=lambda: [m.predict(x) for _ in iter(int, 1)],\n"
        "                 daemon=True).start()\n"
        "for _ in range(5):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(0 if np.array_equal(m.predict(x[:10]), want) else 3)\n"
        "    for _ in range(300):\n"
        "        done, status = os.waitpid(pid, os.WNOHANG)\n"
        "        if done:\n"
        "            break\n"
        "        time.sleep(0.1)\n"
        "    else:\n"
        "        os.kill(pid, 9); os.waitpid(pid, 0); print('child hung'); os._exit(1)\n"
        "    if os.waitstatus_to_exitcode(status) != 0:\n"
        "        print('child got', os.waitstatus_to_exitcode(status)); os._exit(1)\n"
        "os._exit(0)\n")
    out = run_python(code, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_process_exits_cleanly_while_daemon_threads_run_kernels():
    """At exit CPython ends a daemon thread asking for the GIL with pthread_exit; through
    pybind11's noexcept GIL guard that unwind was std::terminate: the process aborted."""
    code = (
        "import threading, time, numpy as np, pynn\n"
        "x = np.random.rand(20000, 64).astype(np.float32)\n"
        "y = (x.sum(1) > 32).astype(np.float32)\n"
        "m = pynn.Sequential([pynn.Input((64,)), pynn.Dense(256, activation='relu'),\n"
        "                     pynn.Dense(1, activation='sigmoid')])\n"
        "m.compile(optimizer='adam', loss='binary_crossentropy')\n"
        "for work in (lambda: m.fit(x, y, epochs=1000, verbose=0),\n"
        "             lambda: [m.predict(x, verbose=0) for _ in iter(int, 1)],\n"
        "             lambda: [pynn.ops.gemm(x[:2000], x[:2000], trans_b=True)\n"
        "                      for _ in iter(int, 1)]):\n"
        "    threading.Thread(target=work, daemon=True).start()\n"
        "time.sleep(0.5)\n")
    out = run_python(code, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "terminate" not in out.stderr


def test_native_calls_from_destructors_at_exit_finish():
    # The finalizing thread waited for ever in the GIL guard's "interpreter is finalizing"
    # wait, which is meant for daemon threads: a __del__ predicting at exit hung the process.
    code = (
        "import numpy as np, pynn\n"
        "m = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3), pynn.Dense(1)])\n"
        "m.predict(np.ones((2, 4), np.float32))\n"
        "class AtExit:\n"
        "    def __del__(self):\n"
        "        print(self.m.predict(np.ones((1, 4), np.float32)).shape, flush=True)\n"
        "holder = AtExit()\n"
        "holder.m = m\n")
    out = run_python(code, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(1,", "1)"]


def test_set_num_threads_is_obeyed():
    previous = _C.num_threads()
    try:
        for n in (1, 3, np.int64(2)):  # numpy integers too (os.cpu_count-style arithmetic)
            pynn.set_num_threads(n)
            assert pynn.get_num_threads() == n
        for bad in (0, 2.0, True):
            with pytest.raises(ValueError, match="positive integer"):
                pynn.set_num_threads(bad)
        for big in (1025, 2**31, 10**6):  # 2**31 was pybind11's TypeError, 10**6 accepted
            with pytest.raises(ValueError, match="at most 1024"):
                pynn.set_num_threads(big)
        with pytest.raises(ValueError, match="1 <= n <= 1024"):
            _C.set_num_threads(2**31)
    finally:
        _C.set_num_threads(previous)


def _pynn_pools(threadpoolctl):
    return [lib for lib in threadpoolctl.threadpool_info() if lib["internal_api"] == "pynn"]


def test_threadpoolctl_lists_and_limits_the_pool():
    # scikit-learn and joblib limit nested parallelism through threadpoolctl: pynn's pool
    # must be one of the pools it sees, and obey its limits (it was invisible to them).
    threadpoolctl = pytest.importorskip("threadpoolctl")
    previous = _C.num_threads()
    try:
        _C.set_num_threads(2)
        pools = _pynn_pools(threadpoolctl)
        assert len(pools) == 1, pools  # only pynn's _C: other modules named _C lack the symbols
        assert pools[0]["user_api"] == "pynn" and pools[0]["num_threads"] == 2
        assert os.path.samefile(pools[0]["filepath"], _C.__file__)
        assert pools[0]["version"] == pynn.__version__
        with threadpoolctl.threadpool_limits(limits=1):
            assert pynn.get_num_threads() == 1
        assert pynn.get_num_threads() == 2  # restored on exit
        with threadpoolctl.threadpool_limits(limits={"pynn": 3}):
            assert pynn.get_num_threads() == 3
        with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
            assert pynn.get_num_threads() == 2  # a BLAS limit is not pynn's
        controller = threadpoolctl.ThreadpoolController().select(internal_api="pynn")
        for asked, got in ((0, 1), (-5, 1), (10**6, 1024), (2**40, 1024)):  # C gets a clamped int
            controller.lib_controllers[0].set_num_threads(asked)
            assert pynn.get_num_threads() == got
    finally:
        _C.set_num_threads(previous)


def test_threadpoolctl_sees_the_pool_whichever_is_imported_first():
    pytest.importorskip("threadpoolctl")
    for imports in ("threadpoolctl, pynn", "pynn, threadpoolctl"):
        code = (f"import {imports}\n"
                "with threadpoolctl.threadpool_limits(limits=1):\n"
                "    print(pynn.get_num_threads())\n"
                "print(pynn.get_num_threads())\n")
        out = run_python(code, env=_thread_env(PYNN_NUM_THREADS="2"), timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["1", "2"], imports


def _thread_env(**settings):
    """os.environ with only the given thread-count variables set."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYNN_NUM_THREADS", "OMP_NUM_THREADS")}
    return {**env, **settings}


@pytest.mark.parametrize("settings, want", [
    ({"PYNN_NUM_THREADS": "3"}, "3"),
    # joblib/loky workers, MKL, PyTorch: OMP_NUM_THREADS, when pynn's own is not set
    ({"OMP_NUM_THREADS": "3"}, "3"),
    ({"OMP_NUM_THREADS": "4,2"}, "4"),  # OpenMP's nesting list: the first level
    ({"PYNN_NUM_THREADS": "5", "OMP_NUM_THREADS": "1"}, "5"),
])
def test_num_threads_environment(settings, want):
    out = run_python("import pynn._C as C; print(C.num_threads())", env=_thread_env(**settings))
    assert out.stdout.strip() == want, out.stderr
    assert out.stderr == ""


@pytest.mark.parametrize("omp", ["abc", "0", "", "2000"])
def test_an_omp_value_pynn_cannot_take_is_skipped_quietly(omp):
    code = "import os, pynn._C as C; print(C.num_threads(), len(os.sched_getaffinity(0)))"
    out = run_python(code, env=_thread_env(OMP_NUM_THREADS=omp))
    threads, cpus = out.stdout.split()
    assert threads == cpus and out.stderr == ""  # another library's variable: no message


def test_a_pynn_typo_falls_back_to_omp_num_threads():
    out = run_python("import pynn._C as C; print(C.num_threads())",
                     env=_thread_env(PYNN_NUM_THREADS="abc", OMP_NUM_THREADS="3"))
    assert out.stdout.strip() == "3"
    assert "PYNN_NUM_THREADS=abc ignored" in out.stderr and "OMP_NUM_THREADS" in out.stderr


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1025", "2x", ""])
def test_num_threads_environment_typo_is_reported(bad):
    code = "import os, pynn._C as C; print(C.num_threads(), len(os.sched_getaffinity(0)))"
    out = run_python(code, env=_thread_env(PYNN_NUM_THREADS=bad))
    threads, cpus = out.stdout.split()
    assert threads == cpus  # the default, not the typo
    assert f"PYNN_NUM_THREADS={bad} ignored" in out.stderr


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("blocking", ["16,12,32", "7,5,3", "1,1,1", "nonsense", "0,0,0",
                                      "64,96,128junk", "9223372036854775807,12,16"])
def test_blocking_override_for_tuning(blocking, isa):
    """PYNN_GEMM_BLOCKING=kc,mc,nc (tuning experiments): small blocks split every loop into
    many blocks and stay correct; odd values are rounded to the micro-tile; malformed or
    huge ones (an overflow crashed the process) are ignored with a message."""
    code = ("import numpy as np, pynn\n"
            "rng = np.random.default_rng(0)\n"
            "for m, k, n in [(37, 53, 71), (1, 129, 17), (130, 3, 65)]:\n"
            "    a = rng.standard_normal((m, k), dtype=np.float32)\n"
            "    b = rng.standard_normal((k, n), dtype=np.float32)\n"
            "    ref = a.astype(np.float64) @ b\n"
            "    got = pynn.ops.gemm(a, b)\n"
            "    assert np.allclose(got, ref, rtol=1e-4, atol=1e-4), (m, k, n)\n"
            "print('ok')\n")
    out = run_python(code, env={**os.environ, "PYNN_GEMM_BLOCKING": blocking, "PYNN_ISA": isa},
                     timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
    valid = blocking in ("16,12,32", "7,5,3", "1,1,1")
    assert ("PYNN_GEMM_BLOCKING" in out.stderr) == (not valid), out.stderr
    if isa == ISAS[0]:  # an experiment's setting shows in pynn info
        info = subprocess.run([sys.executable, "-m", "pynn", "info"], capture_output=True,
                              text=True, env={**os.environ, "PYNN_GEMM_BLOCKING": blocking},
                              timeout=120)
        assert f"PYNN_GEMM_BLOCKING={blocking}" in info.stdout, info.stdout


def test_public_ops_gemm(rng):
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    bias = rng.standard_normal(4)
    got = pynn.ops.gemm(a, b, trans_b=True, bias=bias, activation="relu")
    np.testing.assert_allclose(got, np.maximum(a @ b.T + bias, 0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="inner"):
        pynn.ops.gemm(a, b)
    with pytest.raises(ValueError, match="bias"):
        pynn.ops.gemm(a, b, trans_b=True, bias=np.zeros(3))


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 17, 5), (33, 129, 17)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "elu",
                                        pynn.activations.Spec("leaky_relu", 0.05)])
def test_ops_gemm_float32_shortcut_is_the_general_path(rng, m, k, n, trans_a, trans_b,
                                                       activation):
    """float32 NumPy matrices go straight to the kernel (ops._own_float32_call); the same
    values as lists, a strided view or an integer flag take the general path: the same bits."""
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    fast = pynn.ops.gemm(a, b, trans_a, trans_b, bias=bias, activation=activation, alpha=0.5)
    assert pynn.ops._own_float32_call(pynn.get_backend(), a, b, trans_a, trans_b, bias,
                                      activation, 0.5, 0.0, None) is not None
    for general in (pynn.ops.gemm(a.tolist(), b.tolist(), int(trans_a), int(trans_b),
                                  bias=bias.tolist(), activation=activation, alpha=0.5),
                    pynn.ops.gemm(np.asfortranarray(a)[:, :], b, trans_a, trans_b, bias=bias,
                                  activation=activation, alpha=np.float32(0.5))):
        np.testing.assert_array_equal(fast, general)
    spec = pynn.activations.get(activation)
    want = pynn.get_backend("numpy").activation_forward(
        spec.name, 0.5 * (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
        + bias, spec.param)
    np.testing.assert_allclose(fast, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 17, 5), (33, 129, 17)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True), (False, True)])
def test_ops_gemm_plainest_call_is_the_general_path(rng, m, k, n, trans_a, trans_b):
    """gemm(a, b[, trans_a, trans_b]) of float32 NumPy matrices goes to the binding at once;
    what it refuses (float64, a view it cannot address, numpy flags, a 1-D operand, inner
    sizes that differ) takes the general path: the same bits, or that path's error."""
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    plain = pynn.ops.gemm(a, b, trans_a, trans_b)
    assert plain.dtype == np.float32 and plain.shape == (m, n)
    general = pynn.ops.gemm(a, b, np.bool_(trans_a), np.bool_(trans_b), alpha=1)
    np.testing.assert_array_equal(plain, general)
    reversed_rows = np.ascontiguousarray(a[::-1])[::-1]  # (a negative row stride)
    np.testing.assert_array_equal(pynn.ops.gemm(reversed_rows, b, trans_a, trans_b), plain)
    wide = pynn.ops.gemm(a.astype(np.float64), b.astype(np.float64), trans_a, trans_b)
    assert wide.dtype == (np.float64 if pynn.get_backend().name == "numpy" else np.float32)
    np.testing.assert_allclose(wide, plain, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        pynn.ops.gemm(a, b[:-1] if not trans_b else b[:, :-1], trans_a, trans_b)
    with pytest.raises(ValueError, match="2-d|matri|shape"):
        pynn.ops.gemm(a.reshape(-1), b)


def test_public_ops_gemm_keeps_float64_in_a_float64_session(rng):
    a, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 3))
    previous_backend, previous_floatx = pynn.get_backend().name, pynn.floatx()
    try:
        pynn.set_backend("cpu")
        assert pynn.ops.gemm(a, b).dtype == np.float32  # the fast kernels' type by default
        pynn.set_floatx("float64")
        got = pynn.ops.gemm(a, b, bias=np.ones(3), activation="tanh")
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, np.tanh(a @ b + 1), rtol=1e-12)  # not float32's 1e-7
        out = np.zeros((6, 3))
        pynn.ops.gemm(a, b, out=out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-12)
        assert pynn.ops.gemm([[0.1]], [[1.0]])[0, 0] == 0.1  # lists: the session's float64
        mixed = pynn.ops.gemm(a.astype(np.float32), b, out=np.zeros((6, 3)))
        assert mixed.dtype == np.float64
        with pytest.raises(TypeError, match="out must be an array of the current backend .*list"):
            pynn.ops.gemm(a, b, out=[[0.0] * 3] * 6)
    finally:
        pynn.set_floatx(previous_floatx)
        pynn.set_backend(previous_backend)


def test_relu_epilogue_propagates_nan(isa):
    """NaN must survive ReLU (as in numpy), or NaN weights would hide behind it."""
    a = np.ones((7, 5), np.float32)
    a[2, 3] = np.nan
    b = np.ones((5, 19), np.float32)
    out = _C.gemm(a, b, False, False, 1.0, 0.0, None, np.zeros(19, np.float32), 1, 0.0)
    assert np.isnan(out[2]).all() and np.isfinite(np.delete(out, 2, axis=0)).all()
    # the one-step (K = 1) and one-column (N = 1) paths too
    a, b = np.array([[np.nan], [1.0]], np.float32), np.array([[1.0, -1.0, 2.0]], np.float32)
    out = _C.gemm(a, b, False, False, 1.0, 0.0, None, np.zeros(3, np.float32), 1, 0.0)
    assert np.isnan(out[0]).all() and (out[1] == [1, 0, 2]).all()
    a = np.ones((3, 4), np.float32)
    a[1, 2] = np.nan
    out = _C.gemm(a, -np.ones((4, 1), np.float32), False, False, 1.0, 0.0, None,
                  np.zeros(1, np.float32), 1, 0.0)
    assert np.isnan(out[1, 0]) and (out[[0, 2], 0] == 0).all()
    act = np.array([np.nan, -1.0, 2.0], np.float32)
    y = np.empty_like(act)
    _C.activation_forward(1, 0.0, act, y)
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == 2


def test_public_gemm_out_may_be_an_operand(rng):
    """ops.gemm(out=) where out is also a or b (or bias): the kernels would overwrite what
    they still read, so such operands are read from a copy, as numpy.matmul does."""
    a = rng.standard_normal((64, 64), dtype=np.float32)
    b = rng.standard_normal((64, 64), dtype=np.float32)
    want = a.astype(np.float64) @ a
    c = a.copy()
    pynn.ops.gemm(c, c, out=c)
    np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-4)
    c = a.copy()
    pynn.ops.gemm(b, c, out=c, beta=1.0)
    np.testing.assert_allclose(c, b.astype(np.float64) @ a + a, rtol=1e-4, atol=1e-4)
    with pytest.raises(TypeError, match="dtype"):
        pynn.ops.gemm(a, b, out=np.zeros((64, 64), np.int64))


def _misaligned(x):
    """x's values in memory one byte off float32's alignment."""
    raw = np.zeros(x.nbytes + 1, np.uint8)
    view = np.frombuffer(raw.data, np.float32, x.size, offset=1).reshape(x.shape)
    view[...] = x
    assert not view.flags.aligned
    return view


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_ops_gemm_takes_any_view_its_kernels_cannot_address(rng, backend):
    """Reversed rows, broadcast and overlapping rows, misaligned data: copied for the
    kernels (whose binding refuses them), the same values as numpy on every backend."""
    from numpy.lib.stride_tricks import sliding_window_view
    k, n = 7, 5
    a = rng.standard_normal((6, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    views = {"a[::-1]": (a[::-1], b), "b[::-2]": (a, np.concatenate([b, b])[::-2]),
             "broadcast row": (np.broadcast_to(a[0], (6, k)), b),
             "overlapping rows": (sliding_window_view(rng.standard_normal(12, dtype=np.float32),
                                                      k), b),
             "misaligned": (_misaligned(a), _misaligned(b))}
    previous = pynn.get_backend().name
    try:
        pynn.set_backend(backend)
        for name, (x, w) in views.items():
            want = np.maximum(x.astype(np.float64) @ w + bias, 0)
            for bias_in in (bias, _misaligned(bias)):
                got = pynn.ops.gemm(x, w, bias=bias_in, activation="relu")
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
            got = pynn.get_backend().gemm(np.ascontiguousarray(x) if backend == "numpy" else x,
                                         w, bias=_misaligned(bias), activation="relu")
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
    finally:
        pynn.set_backend(previous)


def test_ops_gemm_on_the_numpy_backend_keeps_float64_digits(rng, numpy_backend):
    """Big-endian float64 operands (FITS, HDF5, network buffers) and an int64 beside a float64
    went through float32 first (1 + 1e-12 - 1 was 0; 16777217 became 16777216)."""
    a = 1 + rng.uniform(1e-12, 2e-12, size=(1, 1))
    got = pynn.ops.gemm(a.astype(">f8"), np.array([[1.0]], ">f8")) - 1
    assert got.dtype == np.float64 and got[0, 0] == a[0, 0] - 1
    big = np.array([[16777217 + int(rng.integers(0, 8)) * 2]], np.int64)
    for x, y in ((big, np.array([[1.0]])), (np.array([[1.0]]), big)):
        got = pynn.ops.gemm(x, y)
        assert got.dtype == np.float64 and got[0, 0] == float(big[0, 0])
    assert pynn.ops.gemm(big, big.astype(np.float32)).dtype == np.float32  # no float64 in


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_ops_gemm_refuses_masked_arrays(rng, backend):
    """The hidden values under a mask were multiplied (np.ma.dot leaves them out)."""
    a = np.ma.masked_array(rng.standard_normal((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
    previous = pynn.get_backend().name
    try:
        pynn.set_backend(backend)
        with pytest.raises(TypeError, match=r"gemm: a is a masked array; .*a.filled\(value\)"):
            pynn.ops.gemm(a, np.ones((3, 1)))
        with pytest.raises(TypeError, match="gemm: b is a masked array"):
            pynn.ops.gemm(np.ones((1, 2)), a)
    finally:
        pynn.set_backend(previous)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_ops_gemm_writes_into_an_out_of_any_layout(rng, backend):
    """out= Fortran-ordered, column-strided or with reversed rows: the result lands in the
    caller's array (beta reading what was there), never in a copy it cannot see."""
    a = rng.standard_normal((4, 6), dtype=np.float32)
    b = rng.standard_normal((6, 5), dtype=np.float32)
    c0 = rng.standard_normal((4, 5), dtype=np.float32)
    previous = pynn.get_backend().name
    try:
        pynn.set_backend(backend)
        for make in (np.asfortranarray, lambda c: np.repeat(c, 2, axis=1)[:, ::2],
                     lambda c: c[::-1].copy()[::-1]):
            out = make(c0.copy())
            got = pynn.ops.gemm(a, b, out=out, alpha=0.5, beta=2.0)
            assert got is out
            np.testing.assert_allclose(out, 0.5 * a.astype(np.float64) @ b + 2.0 * c0,
                                       rtol=1e-5, atol=1e-5)
        frozen = np.asfortranarray(c0.copy())
        frozen.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            pynn.ops.gemm(a, b, out=frozen)
    finally:
        pynn.set_backend(previous)


@pytest.mark.parametrize("backend", sorted(AVAILABLE & {"numpy", "cpu"}))
def test_ops_gemm_refuses_values_beyond_float32(backend):
    """A long double operand was cast silently (1e300 became inf), a float64 one refused."""
    a, b = np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)
    previous = pynn.get_backend().name
    try:
        pynn.set_backend(backend)
        with pytest.raises(ValueError, match="bias holds 1 value.*beyond float32"):
            pynn.ops.gemm(a, b, bias=np.array([1e300, 1.0]))
        for kind in (np.float64, np.longdouble):
            big = np.full((2, 3), 1e300, dtype=kind)
            if backend == "numpy":  # computed in float64 there: its range holds 1e300
                assert pynn.ops.gemm(big, b).dtype == np.float64
            else:
                with pytest.raises(ValueError, match="a holds 6 value.*beyond float32"):
                    pynn.ops.gemm(big, b)
        wide = pynn.ops.gemm(np.ones((2, 3), np.longdouble), b)
        assert wide.dtype == (np.float64 if backend == "numpy" else np.float32)
    finally:
        pynn.set_backend(previous)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS from /proc")
@pytest.mark.skipif(_ASAN, reason="AddressSanitizer keeps freed memory (its quarantine) in RSS")
def test_a_strided_column_copy_is_not_kept_at_its_largest(rng):
    """The one-column path copies a strided column of B to a per-thread buffer: it grew to
    the largest K seen and stayed for the thread's life (38 MB after one K = 1e7 call)."""
    _C = pytest.importorskip("pynn._C")

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

    k = 10_000_000
    a = rng.random((2, k), dtype=np.float32)
    b = rng.random((k, 2), dtype=np.float32)
    before = rss_mb()
    out = _C.gemm(a, b[:, :1])
    assert rss_mb() - before < 10
    reference = a.astype(np.float64) @ b[:, :1].astype(np.float64)
    np.testing.assert_allclose(out, reference, rtol=1e-3)


@pytest.mark.parametrize("alpha,k", [(0.0, 4), (1.0, 0)])
def test_no_product_still_gets_beta_and_the_epilogue(alpha, k):
    # alpha = 0 or K = 0: C = beta * C + bias through the activation; beta = 0 never reads
    # C (a NaN there stays out, as BLAS)
    a, b = np.ones((3, k), np.float32), np.ones((k, 5), np.float32)
    out = np.full((3, 5), np.nan, np.float32)
    _C.gemm(a, b, False, False, alpha, 0.0, out)
    np.testing.assert_array_equal(out, np.zeros((3, 5), np.float32))
    bias = np.array([-1.0, 0.5, 2.0, -3.0, 0.0], np.float32)
    for act, want in (("relu", np.maximum(bias, 0)), ("sigmoid", 1 / (1 + np.exp(-bias)))):
        out = np.empty((3, 5), np.float32)
        _C.gemm(a, b, False, False, alpha, 0.0, out, bias, ACTIVATION_CODES[act], 0.0)
        np.testing.assert_allclose(out, np.broadcast_to(want, (3, 5)), rtol=1e-6)


@pytest.mark.parametrize("m,k,n", [(3, 4, 5), (1, 7, 1), (40, 1, 33), (130, 66, 70)])
def test_alpha_zero_still_multiplies_so_nan_and_inf_show(isa, threads, m, k, n):
    """0 * op(a) @ op(b): NaN where the product has a NaN or inf, as numpy and the other
    backends give (BLAS would skip reading a and b); 0 elsewhere, beta and bias applied."""
    a, b = np.ones((m, k), np.float32), np.ones((k, n), np.float32)
    a[0, 0], b[k - 1, n - 1] = np.nan, np.inf
    with np.errstate(invalid="ignore"):
        want = 0.0 * (a.astype(np.float64) @ b) + 1.0
        got = _C.gemm(a, b, False, False, 0.0, 0.0, None, np.ones(n, np.float32), 0, 0.0)
        np.testing.assert_array_equal(got, want.astype(np.float32))
        numpy_backend = pynn.get_backend("numpy").gemm(a, b, alpha=0.0,
                                                       bias=np.ones(n, np.float32))
    np.testing.assert_array_equal(got, numpy_backend)
    assert np.isnan(got[0]).all() and np.isnan(got[:, n - 1]).all()


def test_strided_views_the_kernels_cannot_read_are_refused():
    from numpy.lib.stride_tricks import as_strided

    a, b = np.ones((4, 8), np.float32), np.arange(64, dtype=np.float32).reshape(8, 8)
    overlapping = as_strided(np.zeros(64, np.float32), (4, 8), (16, 4))  # rows 4 apart
    with pytest.raises(ValueError, match="out: row stride of 16 bytes"):
        _C.gemm(a, b, False, False, 1.0, 0.0, overlapping)
    with pytest.raises(ValueError, match="row stride of -32 bytes"):
        _C.gemm(a[::-1], b, False, False)
    two_columns = np.arange(24, dtype=np.float32).reshape(6, 4)[:, ::2]
    with pytest.raises(ValueError, match="expected unit stride along the last axis"):
        _C.gemm(two_columns, np.ones((2, 3), np.float32), False, False)
