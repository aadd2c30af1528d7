"""Arrays that may live on a GPU: telling them apart, taking them onto a backend's device
without a copy, and copying them to the host. One place for every entry point that accepts
user arrays (fit/predict inputs, pynn.ops, weights, metrics, losses, activations)."""

from __future__ import annotations

import numpy as np

# DLPack device types NumPy reads directly: CPU, CUDA pinned host, ROCm pinned host memory.
_HOST_DEVICES = (1, 3, 11)


def is_gpu_array(x):
    """True for an array in GPU memory: its DLPack device is not host memory (CuPy, PyTorch
    CUDA, JAX on a GPU), or it has only the CUDA array interface (Numba)."""
    if isinstance(x, np.ndarray):
        return False
    device = getattr(x, "__dlpack_device__", None)
    if device is not None:
        try:
            return device()[0] not in _HOST_DEVICES
        except Exception:  # a broken or unusual export: decided below
            pass
    return hasattr(x, "__cuda_array_interface__")


def array_module(a):
    """The array module of `a`: cupy for a GPU array, else numpy."""
    if is_gpu_array(a):
        import cupy

        return cupy
    return np


def backend_array(a, backend, name):
    """A GPU array `a` as `backend`'s own array, zero-copy (through DLPack or the CUDA array
    interface unless it is one already); a TypeError naming the ways out when `backend`
    runs on the host, a ValueError when `a` is on another GPU than the current one."""
    kind = f"{type(a).__module__.partition('.')[0]}.{type(a).__name__}"
    if backend.xp is np:
        raise TypeError(f"{name} is a GPU array ({kind}) and {backend.name!r}, the backend in "
                        f"use, runs in host memory: pass a NumPy array ({name}.get() for "
                        f"CuPy, .cpu().numpy() for PyTorch), or run on a GPU backend "
                        f"(model.compile(..., device='gpu'); for pynn.ops, "
                        f"pynn.set_backend('cuda'))")
    xp = backend.xp
    if not isinstance(a, xp.ndarray):
        try:  # DLPack, or the CUDA array interface alone (Numba): both zero-copy
            a = xp.from_dlpack(a) if hasattr(a, "__dlpack__") else xp.asarray(a)
        except Exception as exc:
            raise TypeError(f"{name} ({kind}) could not be taken from the GPU: {exc}") \
                from None
    device = getattr(getattr(a, "device", None), "id", None)
    current = xp.cuda.runtime.getDevice()
    if device is not None and device != current:  # kernels run on the current device
        raise ValueError(f"{name} is on GPU {device} but pynn runs on GPU {current} (the "
                         f"current device): copy it there (with cupy.cuda.Device({current}): "
                         f"cupy.asarray({name})) or run under cupy.cuda.Device({device})")
    return a


_unavailable_here: set[str] = set()  # GPU backends that failed to start in this process


def gpu_backend_of(a):
    """The GPU backend whose own array `a` is (a CuPy array), else None; created if none in
    use yet is (a CuPy array given before any model ran on the GPU)."""
    from . import _instances, get_backend

    if not is_gpu_array(a):
        return None
    for backend in list(_instances.values()):
        if backend.xp is not np and isinstance(a, backend.xp.ndarray):
            return backend
    for name in ("cuda", "cupy"):
        if name in _unavailable_here:
            continue
        try:
            backend = get_backend(name)
        except (RuntimeError, ImportError):
            _unavailable_here.add(name)  # asked once: not per metric call
            continue
        if isinstance(a, backend.xp.ndarray):
            return backend
    return None


def detached(a):
    """A PyTorch tensor as plain values: without its graph when it requires grad (an
    nn.Linear's weight; numpy refuses it), and with a lazy negation or conjugation applied
    (t.conj().imag: DLPack hands over the raw values, signs dropped); anything else as is."""
    if getattr(a, "requires_grad", False) is True and hasattr(a, "detach"):
        a = a.detach()
    if hasattr(a, "resolve_neg") and hasattr(a, "resolve_conj"):
        a = a.resolve_conj().resolve_neg()
    return a


def to_host(a, backend=None):
    """Any array as a NumPy array (copied only from a GPU): `backend`'s own, another GPU
    backend's, any GPU array (DLPack's host copy, or CuPy's .get()), or anything NumPy
    converts. For values that may not be on the backend their owner names (the optimizer
    slots of a weight another model has since moved) and for the functions that compute
    on the host (metrics, losses, set_weights)."""
    if isinstance(a, np.ndarray):
        return a
    if backend is not None and backend.xp is not np and isinstance(a, backend.xp.ndarray):
        return backend.to_numpy(a)
    a = detached(a)
    if not is_gpu_array(a):
        return np.asarray(a)
    owner = gpu_backend_of(a)
    if owner is not None:
        return owner.to_numpy(a)
    try:  # DLPack 1.0 producers copy to the host on request (CuPy 14, recent PyTorch)
        return np.from_dlpack(a, device="cpu", copy=True)
    except Exception:
        pass
    get = getattr(a, "get", None)  # CuPy (and CuPy-like arrays)
    if callable(get):
        return get()
    raise TypeError(f"a GPU array ({type(a).__module__}.{type(a).__name__}) could not be "
                    f"copied to the host: pass a NumPy array (.cpu().numpy() for PyTorch)")
