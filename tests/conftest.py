"""Shared fixtures: backends, float64 reference mode, fresh random inputs every run."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn.backend import available_backends

AVAILABLE = {name for name, why in available_backends().items() if why is None}


def _fake_gpu_backends():
    """PYNN_TEST_FAKE_GPU=1: the cupy and cuda backends on tests/fake_cupy.py's stand-in
    (CuPy's rules on host memory, pynn._C's kernels behind the CUDA bindings' checks), so
    every test over the available backends runs on them here too. Not on a real GPU."""
    import sys

    import fake_cuda_module
    import pynn._C

    from pynn.backend.cuda_backend import CudaBackend
    from pynn.backend.cupy_backend import CupyBackend

    # with the CUDA engine's stand-in: fit on `cuda` takes the engine by default, as on a GPU
    sys.modules["cupy"], cuda_module = fake_cuda_module.make_fake_gpu(pynn._C)
    pynn.backend._instances.update(cupy=CupyBackend(), cuda=CudaBackend(cuda_module))
    AVAILABLE.update(("cupy", "cuda"))


FAKE_GPU = os.environ.get("PYNN_TEST_FAKE_GPU") == "1" and "cuda" not in AVAILABLE
if FAKE_GPU:
    _fake_gpu_backends()


def pytest_collection_modifyitems(config, items):
    if FAKE_GPU:  # the `cuda` tests are the real GPU's (kernels, engine, streams)
        skip = pytest.mark.skip(reason="needs a real GPU (PYNN_TEST_FAKE_GPU runs the fakes)")
        for item in items:
            if item.get_closest_marker("cuda") is not None:
                item.add_marker(skip)


def pytest_report_header(config):
    info = pynn.info()
    return [f"pynn backends available: {sorted(AVAILABLE)}; default {info['backend']}",
            f"pynn cpu: {info['cpu']}"]


def run_python(code, env=None, timeout=None):
    """Runs `code` in a fresh interpreter (this one's executable), output captured as text."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}thr")
def threads(request):
    """The C++ kernels on 1, then on 2 threads (the previous count restored after)."""
    _C = pytest.importorskip("pynn._C")
    previous = _C.num_threads()
    _C.set_num_threads(request.param)
    assert _C.num_threads() == request.param
    yield request.param
    _C.set_num_threads(previous)


@pytest.fixture
def float64_floatx():
    """A float64 session (pynn.set_floatx) for the test, on the current backend."""
    previous = pynn.floatx()
    pynn.set_floatx("float64")
    yield
    pynn.set_floatx(previous)


@pytest.fixture
def highest_precision():
    """Float32 products for the test ('highest'), whatever PYNN_MATMUL_PRECISION set."""
    previous = pynn.get_matmul_precision()
    pynn.set_matmul_precision("highest")
    yield
    pynn.set_matmul_precision(previous)


@pytest.fixture
def rng():
    """A fresh generator each run; the seed is printed on failure, and PYNN_TEST_SEED=<seed>
    replays it."""
    replay = os.environ.get("PYNN_TEST_SEED")
    seed = int(replay) if replay else np.random.SeedSequence().entropy % (2**32)
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def float64_numpy():
    """Reference mode for gradient checks: numpy backend, float64 weights and data."""
    previous_backend = pynn.get_backend()
    previous_floatx = pynn.floatx()
    pynn.set_backend("numpy")
    pynn.set_floatx("float64")
    yield pynn.get_backend("numpy")
    pynn.set_floatx(previous_floatx)
    pynn.set_backend(previous_backend.name)


@pytest.fixture
def numpy_backend():
    previous = pynn.get_backend()
    pynn.set_backend("numpy")
    yield pynn.get_backend("numpy")
    pynn.set_backend(previous.name)


def requires_backend(name):
    return pytest.mark.skipif(name not in AVAILABLE, reason=f"backend {name!r} unavailable: "
                              f"{available_backends()[name]}")


# The native Dense engine (pynn.engine over pynn._C.DenseEngine): absent where the package was
# installed without its compiled extension (the pure-NumPy fallback).
NATIVE = pynn.engine._native_module() is not None
requires_native = pytest.mark.skipif(
    not NATIVE, reason="the native engine needs the compiled extension pynn._C: "
    f"{available_backends()['cpu'] or 'it has no DenseEngine'}")


def import_keras():
    """Keras 3 for the comparisons with it, or a skip when it is not installed. Keras picks
    TensorFlow unless told; with PyTorch alone installed (as on the developers' machines) it
    runs on PyTorch."""
    import importlib.util

    if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None \
            and importlib.util.find_spec("torch") is not None:
        os.environ["KERAS_BACKEND"] = "torch"
    return pytest.importorskip("keras")


erfc64 = np.vectorize(math.erfc, otypes=[np.float64])


def exact_gelu(z):
    """gelu's exact form, z Phi(z), in float64 (Keras 3's and PyTorch's default)."""
    return z * 0.5 * erfc64(-z / math.sqrt(2))


def onnx_outputs(model, x):
    """model exported to ONNX (in memory) and run on x in onnxruntime; a skip when onnx or
    onnxruntime is not installed."""
    import io

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    buffer = io.BytesIO()
    pynn.onnx.export(model, buffer)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def assert_trained_alike(native, layers, h_native, h_layers, n, n_val=0):
    """Two models trained on n samples (n_val more held out for validation), one in a native
    engine and one layer by layer: the same logs, weights and step count to float32
    rounding."""
    assert h_native.keys() == h_layers.keys()
    for key in h_native:
        # Accuracy counts argmaxes: float32 rounding may flip one near-tie among an epoch's
        # predictions (seen once in ~40 runs); the weights below must still agree.
        count = n_val if key.startswith("val_") else n
        atol = 1.01 / count if key.endswith("accuracy") else 1e-5
        np.testing.assert_allclose(h_native[key], h_layers[key], rtol=1e-3, atol=atol,
                                   err_msg=key)
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert native.optimizer.iterations == layers.optimizer.iterations


def optimizer_steps(backend, opt, w0, grads):
    """A weight w0 on `backend` after opt.apply with each gradient in turn: (the Parameter,
    the backend)."""
    b = pynn.get_backend(backend)
    p = pynn.layers.Parameter("w", b.asarray(w0.copy(), np.float32), b)
    for g in grads:
        p.grad = b.asarray(g, np.float32)
        opt.apply([p])
    return p, b

