"""The finiteness check fit, evaluate and predict run on their data: the C++ kernel's one
threaded pass (pynn._C.all_finite) against numpy's np.isfinite, and pynn.data.all_finite's
choice between it and numpy's min/max for arrays the kernel cannot read."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import pynn
from conftest import requires_backend
from pynn import data

try:
    from pynn import _C
except ImportError:  # installed without it: the tests of pynn.data's numpy path still run
    _C = None
requires_C = pytest.mark.skipif(_C is None, reason="needs the compiled extension pynn._C: "
                                f"{pynn.available_backends()['cpu']}")
NON_FINITE = [np.nan, np.inf, -np.inf]
# awkward sizes, and ones past the kernels' 65536-element inline limit (several chunks)
SIZES = [1, 3, 17, 129, 65536, 65537, 200003]


@requires_C
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_the_kernel_finds_one_non_finite_number_anywhere(rng, threads, dtype, n):
    x = rng.standard_normal(n).astype(dtype) * 1e3
    assert _C.all_finite(x) is True
    # first, last, and a random place (in the last chunk as often as in the first)
    for where in {0, n - 1, int(rng.integers(n))}:
        for bad in NON_FINITE:
            y = x.copy()
            y[where] = bad
            assert _C.all_finite(y) is False, (where, bad)
            assert _C.all_finite(y.reshape(1, n)) is False  # any shape


@requires_C
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernel_calls_every_finite_extreme_finite(threads, dtype):
    info = np.finfo(dtype)
    x = np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0, 0.0,
                  -info.smallest_subnormal, np.nextafter(info.max, 0)], dtype)
    assert _C.all_finite(np.tile(x, 9001))
    assert _C.all_finite(np.empty(0, dtype))


@requires_C
@pytest.mark.parametrize("dtype,bits", [
    (np.float32, [0x7FC00001, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0xFF800000]),
    (np.float64, [0x7FF8000000000001, 0xFFF8000000000000, 0x7FF0000000000001,
                  0xFFFFFFFFFFFFFFFF, 0xFFF0000000000000])])
def test_the_kernel_finds_every_nan_payload_and_sign(rng, dtype, bits):
    # not just numpy's default NaN: signalling and negative NaNs, all-ones, -inf
    for b in np.array(bits, np.uint32 if dtype == np.float32 else np.uint64).view(dtype):
        y = rng.standard_normal(1000).astype(dtype)
        y[int(rng.integers(1000))] = b
        assert not np.isfinite(y).all() and not _C.all_finite(y)


@requires_C
def test_the_kernel_binding_refuses_what_it_cannot_read():
    with pytest.raises(TypeError, match="float32"):
        _C.all_finite(np.zeros(4, np.float16))
    with pytest.raises(TypeError, match="float32"):
        _C.all_finite(np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.all_finite(np.zeros((4, 4), np.float32)[:, ::2])


@pytest.mark.parametrize("make", [
    lambda x: x,                                              # the kernel
    lambda x: x.astype(np.float64),                           # the kernel, float64
    lambda x: x.reshape(-1, 7)[:, ::2],                       # strided: numpy's passes
    lambda x: x.astype(">f4"),                                # big-endian: numpy's passes
    lambda x: x.astype(np.float16),                           # float16: numpy's passes
], ids=["float32", "float64", "strided", "big-endian", "float16"])
def test_data_all_finite_agrees_with_numpy_on_every_layout(rng, make):
    x = rng.standard_normal(7 * 20011).astype(np.float32)
    assert data.all_finite(make(x)) is True
    for bad in NON_FINITE:
        y = x.copy()
        y[int(rng.integers(0, y.size // 7)) * 7] = bad  # kept by the strided view too
        arr = make(y)
        assert data.all_finite(arr) is bool(np.isfinite(arr).all()) is False


@pytest.mark.parametrize("empty", [np.zeros(0, np.float16), np.zeros((0, 3), ">f8")],
                         ids=["float16", "big-endian"])
def test_data_all_finite_of_empty_arrays_off_the_kernels_path(empty):
    """numpy's min/max of an empty array raised ValueError. (An empty strided view is
    C-contiguous: the kernel's.)"""
    assert data.all_finite(empty) is True


@requires_backend("cpu")
def test_fit_evaluate_and_predict_refuse_a_nan_far_into_large_data(rng):
    model = pynn.Sequential([pynn.Input((8,)), pynn.Dense(3)])
    model.compile(optimizer="sgd", loss="mse", backend="cpu")
    x = rng.standard_normal((30011, 8)).astype(np.float32)
    y = rng.standard_normal((30011, 3)).astype(np.float32)
    x[-1, -1] = np.nan
    for call in (lambda: model.fit(x, y, epochs=1, verbose=0),
                 lambda: model.evaluate(x, y, verbose=0), lambda: model.predict(x)):
        with pytest.raises(ValueError, match="1 NaN or infinite"):
            call()


@requires_C
def test_data_all_finite_takes_the_kernel_where_it_can(monkeypatch):
    calls = []
    real = _C.all_finite
    monkeypatch.setattr(_C, "all_finite", lambda a: calls.append(a.dtype) or real(a))
    x = np.ones((40, 3), np.float32)
    assert data.all_finite(x) and data.all_finite(x.astype(np.float64))
    assert calls == [np.float32, np.float64]
    for other in (x[:, ::2], x.astype(">f4"), x.astype(np.float16),
                  np.ma.masked_array(x, mask=np.eye(40, 3, dtype=bool))):
        assert data.all_finite(other)
    assert len(calls) == 2  # numpy's passes for what the kernel cannot read as numpy would
    masked = np.ma.masked_array([1.0, np.nan, 2.0], mask=[0, 1, 0])
    assert data.all_finite(masked)  # a masked NaN is not data (min/max skip it)


@requires_C
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpickled_arrays_are_read_as_their_dtype(rng, dtype):
    # An unpickled array's dtype is equal to numpy's canonical one but another object: the
    # bindings compared by identity and refused it ("expected dtype float32, got float32").
    x = pickle.loads(pickle.dumps(rng.standard_normal((6, 4)).astype(dtype)))
    assert x.dtype is not np.dtype(dtype) and x.dtype == dtype
    assert _C.all_finite(x) and data.all_finite(x)
    if dtype == np.float32:
        np.testing.assert_allclose(_C.gemm(x, x.T.copy()), x @ x.T, rtol=1e-5, atol=1e-5)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", backend="cpu")
    model.fit(x, np.zeros((6, 2)), verbose=0)
    assert model.predict(x).shape == (6, 2)
    x[3, 2] = np.nan
    bad = pickle.loads(pickle.dumps(x))
    for call in (lambda: model.predict(bad), lambda: model.fit(bad, np.zeros((6, 2)), verbose=0)):
        with pytest.raises(ValueError, match="1 NaN or infinite"):
            call()


@requires_backend("cpu")
def test_predict_with_a_built_engine_still_refuses_nan_on_its_full_path(rng):
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(3, activation="relu")])
    model.compile(optimizer="sgd", loss="mse", backend="cpu")
    x = rng.standard_normal((100, 5)).astype(np.float32)
    model.predict(x, batch_size=16)  # builds the native predict engine
    assert model._predict_cache is not None
    x[57, 1] = np.inf
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        model.predict(x, batch_size=16)  # batched: the full path, not the lean one
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        model.predict(x.astype(np.float64))  # converted first


@requires_backend("cpu")
def test_predict_reads_the_finiteness_setting_once(rng, monkeypatch):
    # Another thread turning the check off and on while predict converts x must not let
    # unchecked rows through the native path, which trusts that conversion's check.
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(3)])
    model.compile(optimizer="sgd", loss="mse", backend="cpu")
    x = rng.standard_normal((100, 5)).astype(np.float32)
    model.predict(x, batch_size=16)
    real = data.as_inputs

    def toggling(*args, **kwargs):
        pynn.config.set_check_finite(False)
        try:
            return real(*args, **kwargs)
        finally:
            pynn.config.set_check_finite(True)

    monkeypatch.setattr(data, "as_inputs", toggling)
    x[9, 4] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        model.predict(x, batch_size=16)
