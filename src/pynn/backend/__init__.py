"""The one place a backend is chosen.

Backends: `cpu` (the C++ extension pynn._C), `cuda` (pynn._cuda on CuPy arrays), `numpy` and
`cupy` (pure-array fallbacks; numpy is the reference). The default is `cpu` when built, else
`numpy` (the GPU backends only when asked for), or the `PYNN_BACKEND` environment variable;
`set_backend()` switches at run time.
A compiled module that is missing or broken never breaks `import pynn`: the reason is kept
and shown by `pynn.info()`.
"""

from __future__ import annotations

import importlib
import os

from .base import Backend
from .numpy_backend import NumpyBackend

_BACKEND_NAMES = ("cpu", "cuda", "numpy", "cupy")
_instances: dict[str, Backend] = {}
_unavailable: dict[str, str] = {}
_current: Backend | None = None


def _load_native(module):
    """Import pynn._C or pynn._cuda; return (module, None) or (None, reason)."""
    try:
        return importlib.import_module(f"pynn.{module}"), None
    except ImportError as exc:
        return None, f"pynn.{module} could not be imported ({exc})"


def _create(name: str) -> Backend:
    if name == "numpy":
        return NumpyBackend()
    if name == "cpu":
        _C, why = _load_native("_C")
        if _C is None:
            package = os.path.dirname(os.path.dirname(__file__))
            try:
                built = any(f.startswith("_C.") for f in os.listdir(package))
            except OSError:  # imported from a zip (zipapp, pex): no folder to look in
                built = False
            raise RuntimeError(why + ("; the compiled part is there but does not load (rebuild "
                                      "it: pip install --force-reinstall .)" if built else
                                      "; the package was installed without its compiled part"))
        from .cpu_backend import CpuBackend
        return CpuBackend(_C)
    if name in ("cuda", "cupy"):
        reason = cuda_unavailable_reason(name)
        if reason:
            raise RuntimeError(reason)
        if name == "cupy":
            from .cupy_backend import CupyBackend
            return CupyBackend()
        from .cuda_backend import CudaBackend
        return CudaBackend(_load_native("_cuda")[0])
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(_BACKEND_NAMES)}")


def cuda_unavailable_reason(name="cuda"):
    """None when the GPU backend `name` can run here, else why not (in words)."""
    if name == "cuda":
        _cuda, why = _load_native("_cuda")
        if _cuda is None:
            return why + " (build with nvcc available and PYNN_CUDA=AUTO or ON)"
        report = _cuda.devices()
        if report["error"]:
            return f"no usable CUDA device: {report['error']}"
        if not any(d["supported"] for d in report["devices"]):
            archs = ", ".join(d["compute_capability"] for d in report["devices"])
            return (f"pynn._cuda was built for architectures {_cuda.architectures}, not for this "
                    f"GPU (compute capability {archs}); rebuild with "
                    f"PYNN_CUDA_ARCHITECTURES=<arch> pip install .")
    try:
        cupy = importlib.import_module("cupy")
    except ImportError:
        return "CuPy is not installed (pip install 'pynn[cuda]')"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device found"
    except Exception as exc:  # CuPy raises its own CUDARuntimeError without a driver
        return f"no usable CUDA device: {exc}"
    return None


def get_backend(name: str | None = None) -> Backend:
    """The backend called `name` (or that Backend itself), or the current one when name is
    None."""
    if name is None:
        return _current if _current is not None else _choose_default()
    if isinstance(name, Backend):  # what get_backend() returned: compile(backend=...) too
        return name
    if not isinstance(name, str):
        raise TypeError(f"a backend is named by a string ('cpu', 'cuda', 'numpy', 'cupy'), "
                        f"got {name!r}")
    if name not in _instances:
        _instances[name] = _create(name)
    return _instances[name]


_DEVICE_BACKENDS = {"cpu": ("cpu", "numpy"), "gpu": ("cuda", "cupy"), "cuda": ("cuda", "cupy")}


def backend_for_device(device: str) -> Backend:
    """The backend that runs on `device` ('cpu', 'gpu' or 'cuda'): the current one if it
    runs there, else the fastest available there; an error naming why none can."""
    if not isinstance(device, str) or device not in _DEVICE_BACKENDS:
        raise ValueError(f"unknown device {device!r}; choose 'cpu' or 'gpu' (or 'cuda')")
    names = _DEVICE_BACKENDS[device]
    current = get_backend()
    if current.name in names:
        return current
    reasons = []
    for name in names:
        try:
            return get_backend(name)
        except RuntimeError as exc:
            reasons.append(f"{name}: {exc}")
    raise RuntimeError(f"no backend runs on device {device!r} here ({'; '.join(reasons)})")


def set_backend(name: str) -> Backend:
    """Make `name` the backend for models compiled from now on and for pynn.ops."""
    global _current
    if name is None:  # (get_backend(None) is the current one: set_backend changed nothing)
        raise TypeError("set_backend takes a backend's name ('cpu', 'cuda', 'numpy', "
                        "'cupy'), got None")
    _current = get_backend(name)
    return _current


def _choose_default() -> Backend:
    global _current
    requested = os.environ.get("PYNN_BACKEND")
    if requested:
        try:  # an explicit request fails loudly, naming where it came from
            _current = get_backend(requested)
        except (ValueError, RuntimeError) as exc:
            raise type(exc)(f"PYNN_BACKEND={requested!r}: {exc}") from exc
        return _current
    try:
        _current = get_backend("cpu")
    except RuntimeError as exc:
        _unavailable["cpu"] = str(exc)
        _current = get_backend("numpy")
    return _current


def available_backends() -> dict:
    """{name: None if usable else the reason it is not}."""
    out = {}
    for name in _BACKEND_NAMES:
        try:
            get_backend(name)
            out[name] = None
        except (RuntimeError, ImportError) as exc:
            out[name] = str(exc)
    return out


# After the registry they look up (arrays.py imports it lazily, inside its functions).
from .arrays import backend_array, gpu_backend_of, is_gpu_array, to_host  # noqa: E402, F401


# keras.backend's names that code ported from Keras calls (pynn.backend is pynn's backends)
def clear_session(free_memory=True):
    """keras.backend.clear_session: pynn.utils.clear_session."""
    from ..utils import clear_session as clear

    clear(free_memory)


def epsilon() -> float:
    """keras.backend.epsilon: pynn.config.epsilon()."""
    from ..config import epsilon as fuzz

    return fuzz()


def floatx() -> str:
    """keras.backend.floatx: pynn.floatx()."""
    from ..config import floatx as current

    return current()


def backend() -> str:
    """keras.backend.backend(): the name of pynn's current backend ('cpu', 'numpy', ...)."""
    return get_backend().name
