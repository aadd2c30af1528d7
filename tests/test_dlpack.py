"""Array-likes in: DLPack producers are read without a copy; lists and tuples convert."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn.data import host_array


class DLPackOnly:
    """Exposes only the DLPack protocol (like a CPU torch.Tensor), over a numpy buffer."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_dlpack_input_is_zero_copy_and_predicts_like_numpy():
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    wrapped = DLPackOnly(x)
    assert np.shares_memory(host_array(wrapped), x)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    np.testing.assert_array_equal(model.predict(wrapped), model.predict(x))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(wrapped, np.zeros((6, 2)), verbose=0)


def test_torch_tensor_if_installed():
    torch = pytest.importorskip("torch")
    t = torch.randn(5, 3)
    assert np.shares_memory(host_array(t), t.numpy())
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    np.testing.assert_array_equal(model.predict(t), model.predict(t.numpy()))


def test_lists_and_tuples():
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    assert model.predict([[1, 2], [3, 4]]).shape == (2, 1)
    assert model.predict(((1.0, 2.0),)).shape == (1, 1)


def test_a_tensor_of_a_dtype_numpy_lacks_is_named():
    torch = pytest.importorskip("torch")
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    if not hasattr(torch, "float8_e4m3fn"):  # (bfloat16 is read as float32 now)
        pytest.skip("this PyTorch has no float8 dtype")
    with pytest.raises(TypeError, match=r"dtype torch.float8_e4m3fn.*x.float\(\).cpu\(\)"):
        model.predict(torch.ones(2, 3, dtype=torch.float8_e4m3fn))  # a raw "unsupported"
