"""GPU arrays as inputs on a real GPU (test_gpu_backends_on_host.py checks the same code on
the host with a stand-in for CuPy): the cuda and cupy backends take CuPy arrays without a
copy, and PyTorch CUDA tensors through DLPack; fit, evaluate and predict give what NumPy
inputs give. Marked `cuda`, skipped without a GPU (scripts/gpu_check.sh runs them)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_backend

import pynn

pytestmark = [pytest.mark.cuda, requires_backend("cuda"), requires_backend("cupy")]


def _host(a):
    import cupy

    return cupy.asnumpy(a) if isinstance(a, cupy.ndarray) else np.asarray(a)


@pytest.mark.parametrize("name", ["cuda", "cupy"])
def test_cupy_inputs_are_taken_without_a_copy(rng, name):
    import cupy

    backend = pynn.get_backend(name)
    x = cupy.asarray(rng.normal(size=(17, 5)).astype(np.float32))
    assert cupy.may_share_memory(backend.asarray(x, np.float32), x)
    wide = cupy.asarray(rng.normal(size=(17, 5)))  # float64: converted on the device
    converted = backend.asarray(wide, np.float32)
    assert isinstance(converted, cupy.ndarray) and converted.dtype == np.float32
    np.testing.assert_array_equal(_host(converted), _host(wide).astype(np.float32))


@pytest.mark.parametrize("name", ["cuda", "cupy"])
def test_gpu_inputs_train_and_predict_like_numpy_ones(rng, name):
    import cupy

    x = rng.normal(size=(33, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=33)

    def model():
        pynn.set_seed(3)
        m = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8, activation="relu"),
                             pynn.Dense(3, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=name)
        m.shuffle_seed = 1
        return m

    host, device = model(), model()
    h_host = host.fit(x, y, epochs=2, batch_size=8, verbose=0).history
    h_device = device.fit(cupy.asarray(x), cupy.asarray(y), epochs=2, batch_size=8,
                          verbose=0).history
    for key in h_host:
        np.testing.assert_allclose(h_device[key], h_host[key], rtol=1e-5, atol=1e-6)
    want = _host(host.predict(x, verbose=0))
    np.testing.assert_allclose(_host(device.predict(cupy.asarray(x), verbose=0)), want,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(device.evaluate(cupy.asarray(x), cupy.asarray(y), verbose=0),
                               host.evaluate(x, y, verbose=0), rtol=1e-5, atol=1e-6)
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():  # a PyTorch CUDA tensor, through DLPack
        tensor = torch.from_numpy(x).cuda()
        np.testing.assert_allclose(_host(device.predict(tensor, verbose=0)), want, rtol=1e-5,
                                   atol=1e-6)
