"""The package: compiled modules present, graceful fallback, info, CLI, Keras' names."""

from __future__ import annotations

import importlib
import math
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from conftest import FAKE_GPU

import pynn


def test_compiled_cpu_module_is_built_and_default():
    # An install from the README builds pynn._C; its absence is a packaging bug, not a skip.
    if os.environ.get("PYNN_ALLOW_NO_NATIVE") == "1":
        pytest.skip("PYNN_ALLOW_NO_NATIVE=1: running from a source tree without pynn._C")
    try:
        from pynn import _C
    except ImportError as e:
        _C, why = None, e
    if _C is None:  # (outside the except: the message alone, no chained traceback)
        pytest.fail(f"the compiled extension pynn._C is missing ({why}): the build did not "
                    "make it. For a deliberate NumPy-only install (or a source tree without "
                    "it), set PYNN_ALLOW_NO_NATIVE=1 to skip this check.", pytrace=False)

    assert _C.build_info["version"] == pynn.__version__
    assert pynn.available_backends()["cpu"] is None
    if "PYNN_BACKEND" not in os.environ:
        assert pynn.info()["backend"] == "cpu"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or
                    not os.path.exists("/proc/cpuinfo"), reason="x86-64 Linux: cpuinfo flags")
def test_isa_support_matches_the_cpu_flags():
    """The GEMM offers avx2/avx512 exactly when the kernel reports them (cpuid + xgetbv
    agree with it on Linux); only a PYNN_EMULATE_AVX512 test build offers avx512 without."""
    _C = pytest.importorskip("pynn._C")
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    assert _C.cpu_supports_isa("generic")
    assert _C.cpu_supports_isa("avx2") == ({"avx2", "fma"} <= flags)
    if _C.build_info["avx512_emulated"]:
        assert _C.cpu_supports_isa("avx512") == _C.cpu_supports_isa("avx2")
    else:
        want = {"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags
        assert _C.cpu_supports_isa("avx512") == want


def test_cuda_module_matches_build_and_reports_devices():
    if FAKE_GPU:
        pytest.skip("reads the real CUDA setup (PYNN_TEST_FAKE_GPU stands in for CuPy)")
    try:
        from pynn import _C
    except ImportError:
        pytest.skip("pynn._C not built")
    built = _C.build_info["cuda_build"].startswith("built")
    if not built:
        with pytest.raises(ImportError):
            from pynn import _cuda  # noqa: F401
        assert "not" in pynn.available_backends()["cuda"] or "could not" in \
            pynn.available_backends()["cuda"]
        return
    from pynn import _cuda

    report = _cuda.devices()
    assert set(report) == {"runtime_version", "driver_version", "error", "devices"}
    assert report["runtime_version"] > 0
    if report["error"]:  # no GPU here: CUDA is off, with the reason in words
        assert pynn.available_backends()["cuda"]


def test_import_without_compiled_modules_falls_back_to_numpy():
    code = ("import sys; sys.modules['pynn._C'] = None; sys.modules['pynn._cuda'] = None\n"
            "import pynn, numpy as np\n"
            "info = pynn.info(); assert info['backend'] == 'numpy', info['backend']\n"
            "assert 'pynn._C' in info['backends']['cpu']\n"
            "m = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])\n"
            "m.compile(optimizer='sgd', loss='mse'); m.fit(np.ones((4, 2)), np.ones(4), verbose=0)\n"
            "print('ok')")
    env = {k: v for k, v in os.environ.items() if k != "PYNN_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_compiled_part_that_does_not_load_is_named_as_such(tmp_path):
    """A corrupt or mismatched pynn._C was reported as 'installed without its compiled part'."""
    import glob
    import shutil

    package = os.path.dirname(pynn.__file__)
    if not glob.glob(os.path.join(package, "_C.*")):
        pytest.skip("no compiled part in this installation")
    shutil.copytree(package, tmp_path / "pynn", ignore=shutil.ignore_patterns("__pycache__"))
    for so in glob.glob(str(tmp_path / "pynn" / "_C.*")):
        with open(so, "w") as f:
            f.write("not a shared library")
    env = {k: v for k, v in os.environ.items() if k != "PYNN_BACKEND"}
    # first on the path; what else the path held (numpy, in some setups) stays
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp_path), env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", "import pynn; print(pynn.info()['backends']"
                          "['cpu'])"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "the compiled part is there but does not load" in out.stdout


def test_the_pure_python_package_runs_from_a_zip(tmp_path):
    """Imported from a zip (zipapp, pex), without the compiled parts: the numpy backend runs
    and info names why cpu does not (listing the package's folder for a compiled file raised
    NotADirectoryError from the first model and from `pynn info`)."""
    import zipfile

    package = os.path.dirname(pynn.__file__)
    archive = tmp_path / "pynn.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for folder, dirs, files in os.walk(package):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    z.write(path, os.path.relpath(path, os.path.dirname(package)))
    env = {k: v for k, v in os.environ.items() if k != "PYNN_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(archive), env.get("PYTHONPATH")) if p)
    code = ("import pynn, numpy as np\n"
            "assert pynn.__file__.startswith(%r), pynn.__file__\n"
            "m = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])\n"
            "assert m.predict(np.ones((1, 3))).shape == (1, 2)\n"
            "assert pynn.get_backend().name == 'numpy'\n"
            "assert 'installed without its compiled part' in pynn.available_backends()['cpu']\n"
            "try:\n"
            "    pynn.set_backend('cpu')\n"
            "except RuntimeError as exc:\n"
            "    assert 'without its compiled part' in str(exc)\n"
            "print('ok')") % str(archive)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    info = subprocess.run([sys.executable, "-m", "pynn", "info"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert info.returncode == 0, info.stderr
    assert "backend in use: numpy" in info.stdout


def test_info_and_cli():
    d = pynn.info()
    assert d["version"] == pynn.__version__
    assert set(d["backends"]) == {"cpu", "cuda", "numpy", "cupy"}
    assert d["backends"]["numpy"] is None
    out = subprocess.run([sys.executable, "-m", "pynn", "info", "--json"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["version"] == pynn.__version__
    text = subprocess.run([sys.executable, "-m", "pynn", "info"], capture_output=True, text=True)
    assert "backend in use" in text.stdout and "cuda" in text.stdout


@pytest.mark.parametrize("requested", ["quantum", "cuda"])  # unknown; not runnable here
def test_a_pynn_backend_that_cannot_run_is_reported_not_a_traceback(requested):
    """pynn info crashed with a traceback (it is where a user looks to see why); the other
    commands print one line naming PYNN_BACKEND and exit 2."""
    pytest.importorskip("pynn._C")
    if requested == "cuda" and pynn.info()["backends"]["cuda"] is None:
        pytest.skip("a GPU runs the cuda backend here")
    env = {**os.environ, "PYNN_BACKEND": requested}
    out = subprocess.run([sys.executable, "-m", "pynn", "info"], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert f"backend in use: none: PYNN_BACKEND='{requested}'" in out.stdout
    assert "numpy  available" in out.stdout
    out = subprocess.run([sys.executable, "-m", "pynn", "bench"], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"pynn bench: error: PYNN_BACKEND='{requested}'" in out.stderr


def test_set_backend_switches_and_reports(numpy_backend):
    assert pynn.get_backend().name == "numpy"
    m = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    assert m.backend.name == "numpy"
    with pytest.raises(ValueError, match="unknown backend"):
        pynn.set_backend("quantum")
    with pytest.raises(TypeError, match="set_backend takes a backend's name .*got None"):
        pynn.set_backend(None)  # (it changed nothing, silently)
    assert pynn.get_backend().name == "numpy"
    m.compile(optimizer="sgd", loss="mse", backend=pynn.get_backend("numpy"))  # the object
    assert m.backend is pynn.get_backend("numpy")


def test_compile_device_picks_a_backend_on_that_device(monkeypatch):
    """device='cpu' keeps a CPU backend that is current and leaves a GPU one for the fastest
    CPU backend (it used to mean 'the current backend', a GPU one included)."""
    import pynn.backend as backends

    model = pynn.Sequential([pynn.Dense(1)])  # not built: nothing moves to the fake backend
    monkeypatch.setattr(backends, "_current", backends.get_backend("numpy"))
    model.compile(optimizer="sgd", loss="mse", device="cpu")
    assert model.backend.name == "numpy"

    class FakeGpu(backends.Backend):
        name = "cuda"

    monkeypatch.setattr(backends, "_current", FakeGpu())
    model.compile(optimizer="sgd", loss="mse", device="cpu")
    expected = "cpu" if backends.available_backends()["cpu"] is None else "numpy"
    assert model.backend.name == expected
    model.compile(optimizer="sgd", loss="mse", device="gpu")
    assert model.backend is backends._current
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        model.compile(optimizer="sgd", loss="mse", device="tpu")
    with pytest.raises(ValueError, match="not both"):
        model.compile(optimizer="sgd", loss="mse", device="cpu", backend="numpy")
    if all(backends.available_backends()[name] for name in ("cuda", "cupy")):
        monkeypatch.setattr(backends, "_current", backends.get_backend("numpy"))
        with pytest.raises(RuntimeError, match="no backend runs on device 'gpu' here"):
            model.compile(optimizer="sgd", loss="mse", device="gpu")


def test_optional_module_without_its_dependency(monkeypatch):
    """pynn.sklearn without scikit-learn: hasattr is False (an ImportError escaped hasattr),
    the attribute error and the import error say what to install."""
    for name in [m for m in sys.modules if m.split(".")[0] == "sklearn"] + ["sklearn"]:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import sklearn(.x)` fail
    monkeypatch.delitem(sys.modules, "pynn.sklearn", raising=False)
    monkeypatch.delattr(pynn, "sklearn", raising=False)
    assert not hasattr(pynn, "sklearn")
    with pytest.raises(AttributeError, match=r"pip install 'pynn\[sklearn\]'"):
        pynn.sklearn
    with pytest.raises(ImportError, match=r"pip install 'pynn\[sklearn\]'"):
        importlib.import_module("pynn.sklearn")


def test_keras_names_exist():
    for name in ["Sequential", "Dense", "Activation", "Input", "set_seed"]:
        assert hasattr(pynn, name)
    for name in ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Nadam", "Adamax", "Lion",
                 "Adadelta", "Lamb"]:
        assert hasattr(pynn.optimizers, name)
    for name in ["MeanSquaredError", "MeanAbsoluteError", "Huber", "BinaryCrossentropy",
                 "CategoricalCrossentropy", "SparseCategoricalCrossentropy"]:
        assert hasattr(pynn.losses, name)
    for name in ["GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
                 "LecunNormal", "Zeros", "Ones"]:
        assert hasattr(pynn.initializers, name)
    for name in ["Callback", "History", "TerminateOnNaN", "LambdaCallback"]:
        assert hasattr(pynn.callbacks, name)
    layer = pynn.Dense(7, activation="relu")
    assert layer.name.startswith("dense")
    for key in ("units", "activation", "use_bias", "kernel_initializer", "name"):
        assert key in layer.get_config()


@pytest.mark.parametrize("name,fan", [("glorot_uniform", "avg"), ("glorot_normal", "avg"),
                                      ("he_uniform", "in"), ("he_normal", "in"),
                                      ("lecun_uniform", "in"), ("lecun_normal", "in")])
def test_initializer_variance(name, fan):
    pynn.set_seed(0)
    fan_in, fan_out = 400, 100
    w = pynn.initializers.get(name)((fan_in, fan_out))
    scale = 2.0 if name.startswith("he") else 1.0
    n = (fan_in + fan_out) / 2 if fan == "avg" else fan_in
    assert w.shape == (fan_in, fan_out) and w.dtype == np.float32
    assert abs(w.var() / (scale / n) - 1) < 0.05
    assert abs(w.mean()) < 0.01
    assert (pynn.initializers.get("zeros")((2, 3)) == 0).all()
    assert (pynn.initializers.get("ones")((2,)) == 1).all()


@pytest.mark.parametrize("cls", ["GlorotUniform", "HeNormal", "RandomNormal", "RandomUniform",
                                 "VarianceScaling"])
def test_seeded_initializers_repeat_their_values(cls, tmp_path):
    init = pynn.initializers
    make = getattr(init, cls)
    state = pynn.config.rng().bit_generator.state
    first = make(seed=3)((50, 20))
    assert pynn.config.rng().bit_generator.state == state  # pynn's generator is left alone
    np.testing.assert_array_equal(first, make(seed=3)((50, 20)))  # as Keras 3: per call
    assert not np.array_equal(first, make(seed=4)((50, 20)))
    assert not np.array_equal(make()((50, 20)), make()((50, 20)))  # unseeded: fresh draws
    again = init.get(init.serialize(make(seed=np.uint64(3))))
    assert again.seed == 3 and again.get_config()["seed"] == 3
    np.testing.assert_array_equal(again((50, 20)), first)
    model = pynn.Sequential([pynn.Input((50,)), pynn.Dense(20, kernel_initializer=make(seed=3))])
    np.testing.assert_array_equal(model.get_weights()[0], first)
    model.save(tmp_path / "m.npz")
    assert pynn.load_model(tmp_path / "m.npz").layers[1].kernel_initializer.seed == 3
    for bad in (-1, 2**64, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed must be None or an integer"):
            make(seed=bad)


def test_activation_functions_on_arrays():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    a = pynn.activations
    np.testing.assert_allclose(a.relu(x), [0, 0, 0, 0.5, 2])
    np.testing.assert_allclose(a.leaky_relu(x), [-0.4, -0.1, 0, 0.5, 2])
    np.testing.assert_allclose(a.elu(x), [np.expm1(-2), np.expm1(-0.5), 0, 0.5, 2])
    np.testing.assert_allclose(a.sigmoid(x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(a.tanh(x), np.tanh(x))
    np.testing.assert_allclose(a.gelu(x), [0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x],
                               rtol=1e-6, atol=1e-30)  # exact: z Phi(z)
    np.testing.assert_allclose(a.gelu_tanh(x), 0.5 * x * (1 + np.tanh(
        np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))))
    s = a.softmax(np.array([[1000.0, 0.0, -1000.0]]))
    assert np.isfinite(s).all() and np.isclose(s.sum(), 1)
    np.testing.assert_allclose(a.sigmoid(np.array([-1000.0, 1000.0])), [0, 1])


def test_demo_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pynn", "demo", "--epochs", "3", "--out",
                          str(tmp_path / "digits.npz")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "test accuracy" in out.stdout and "reloaded predictions identical: True" in out.stdout
    assert "Epoch 3/3" in out.stdout  # one line per epoch when not a terminal
    assert (tmp_path / "digits.npz").exists()
