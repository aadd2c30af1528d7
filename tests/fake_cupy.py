"""CuPy's rules on host memory, so the `cupy` and `cuda` backends' Python code runs (and is
tested) on machines without a GPU.

The GPU backends can only run where a GPU is; most of what can go wrong in them is not the
GPU's arithmetic but the Python around it: a NumPy array handed to CuPy, a device array
handed to NumPy, a 0-d device array where a float was meant. CuPy refuses each of those with
a TypeError; this module refuses them the same way, with NumPy doing the arithmetic:

- `ndarray` wraps a NumPy array and refuses implicit conversion to NumPy (`np.asarray(a)`,
  `np.concatenate([a, host])`) and arithmetic with NumPy arrays or lists, as CuPy does;
- reductions return 0-d device arrays, not NumPy scalars (CuPy's results stay on the device);
- `asarray`/`array` copy host data to the "device", `asnumpy` and `.get()` copy it back;
- other libraries' GPU arrays: `ForeignGpuTensor` (DLPack only, like PyTorch's) and
  `CudaInterfaceArray` (the CUDA array interface only, like Numba's).
fake_cuda_module.py stands in for pynn._cuda on these arrays.

What it cannot catch: anything about the GPU itself (kernels, streams, memory, DLPack
capsules' devices), and NumPy functions CuPy lacks (every NumPy function works here).
"""

from __future__ import annotations

import sys
import types

import numpy as np

_MESSAGE = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
            "construct a NumPy array explicitly.")


def _refuse(value):
    raise TypeError(f"Unsupported type {type(value)}")


def _device(value, host_scalars=False):
    """A value as CuPy's kernels take it: device arrays and scalars; NumPy arrays and
    sequences are refused (CuPy never copies host arrays implicitly; a 0-d one is read as a
    scalar only by comparisons)."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        if value.ndim == 0 and host_scalars:
            return value
        _refuse(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_device(v) for v in value)
    if isinstance(value, dict):
        return {k: _device(v) for k, v in value.items()}
    return value


def _index(key):
    """Index keys: device arrays, and (as CuPy allows) host integer/bool arrays and lists."""
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key


def _advanced(key):
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (ndarray, np.ndarray, list)) for k in keys)


def _wrap(result):
    if isinstance(result, np.ndarray):
        return ndarray(result)
    if isinstance(result, np.generic):
        return ndarray(np.asarray(result))
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, list):
        return [_wrap(r) for r in result]
    return result


class _Flags:
    def __init__(self, a):
        self.c_contiguous = a.flags.c_contiguous
        self.f_contiguous = a.flags.f_contiguous
        self.owndata = a.flags.owndata


class ndarray(np.lib.mixins.NDArrayOperatorsMixin):  # noqa: N801 (CuPy's name)
    """A device array: NumPy memory behind CuPy's interface."""

    __slots__ = ("_a", "_device_id")

    def __init__(self, a, device_id=0):
        assert isinstance(a, np.ndarray)
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_device_id", device_id)

    # ---- host conversion: explicit only ----------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_MESSAGE)

    def get(self, stream=None, order="C", out=None):
        return np.array(self._a, order=order, copy=True)

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __complex__(self):
        return complex(self._a)

    # ---- NumPy protocol: ufuncs and functions run on device arrays only ----------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.pop("out", None)
        comparison = ufunc in (np.equal, np.not_equal, np.less, np.less_equal, np.greater,
                               np.greater_equal)
        args = [_refuse(x) if isinstance(x, (list, tuple)) else _device(x, comparison)
                for x in inputs]
        kwargs = _device(kwargs)
        if out is not None:
            kwargs["out"] = tuple(_device(o) for o in out)
        with np.errstate(all="ignore"):  # CuPy has no floating-point error state
            result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_device(list(args)), **_device(kwargs)))

    # ---- array interface ------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    T = property(lambda self: ndarray(self._a.T))
    device = property(lambda self: _Device(self._device_id))
    real = property(lambda self: ndarray(self._a.real))
    base = property(lambda self: None if self._a.base is None else ndarray(self._a.base))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        # CuPy copies a host array in only for advanced (array) indices; with basic ones
        # (a[...] = host, a[0:2] = host) it fills, refusing non-scalars.
        if isinstance(value, (np.ndarray, list, tuple)) and np.ndim(value) > 0 and \
                not _advanced(key):
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._a[_index(key)] = value._a if isinstance(value, ndarray) else value

    def __getattr__(self, name):
        if name.startswith("__"):  # __array_interface__ & co. would hand NumPy the memory
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            out = kwargs.pop("out", None)
            if out is not None:
                attr(*_device(list(args)), out=_device(out), **_device(kwargs))
                return out
            return _wrap(attr(*_device(list(args)), **_device(kwargs)))

        return method

    def __setattr__(self, name, value):
        if name == "shape":
            self._a.shape = value
        else:
            raise AttributeError(name)

    def __repr__(self):
        return "fake_cupy." + repr(self._a)

    def __str__(self):  # CuPy prints (and formats) through a copy to the host
        return str(self._a)

    def __format__(self, spec):
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0: what CuPy reports, so host code knows to refuse it

    def __dlpack__(self, stream=None, **kwargs):
        raise BufferError("fake_cupy: a device array is not exported to the host")

    def __copy__(self):
        return ndarray(self._a.copy())

    def __reduce__(self):  # CuPy pickles through a host copy
        return (asarray, (self._a.copy(),))

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())


class _Device:
    def __init__(self, device_id):
        self.id = device_id


def _host_data(a, dtype):
    """Host data copied to the device: CuPy has no text or object arrays."""
    if isinstance(a, (list, tuple)) and any(isinstance(v, ndarray) for v in a):
        a = [v._a if isinstance(v, ndarray) else v for v in a]  # a list of device arrays
    out = np.array(a, dtype=dtype, copy=True)
    if out.dtype.char not in "?bhilqBHILQefdFD":
        raise ValueError("Unsupported dtype " + str(out.dtype))
    return out


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    if hasattr(a, "__cuda_array_interface__"):  # zero-copy, as CuPy takes Numba's arrays
        view = np.asarray(_InterfaceView(a.__cuda_array_interface__))
        return ndarray(view if dtype is None else view.astype(dtype, copy=False))
    return ndarray(np.asarray(_host_data(a, dtype), order=order or "K"))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    source = a._a if isinstance(a, ndarray) else _host_data(a, dtype)
    out = np.array(source, dtype=dtype, copy=True, order=order, ndmin=ndmin)
    if isinstance(a, ndarray) and not copy and out.dtype == a.dtype:
        return a
    return ndarray(out)


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):  # CuPy's takes device arrays only
        raise TypeError(f"Argument 'a' has incorrect type (expected cupy.ndarray, got "
                        f"{type(a).__name__})")
    out = np.ascontiguousarray(a._a, dtype=dtype)
    return a if out is a._a else ndarray(out)


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get(order=order)
    return np.asarray(a, order=order)


class _HostExport:
    """A fake GPU tensor's DLPack export as NumPy takes it (NumPy refuses CUDA devices)."""

    def __init__(self, tensor):
        self._tensor = tensor

    def __dlpack__(self, **kwargs):
        return self._tensor.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (1, 0)


def from_dlpack(x):
    """Zero-copy from another library's GPU array (here: a ForeignGpuTensor)."""
    if isinstance(x, ndarray):
        return x
    if x.__dlpack_device__()[0] != 2:
        raise BufferError("fake_cupy.from_dlpack: not a CUDA array")
    return ndarray(np.from_dlpack(_HostExport(x)))


class _InterfaceView:
    """The fake's 'device' pointers are host pointers: the CUDA interface read as NumPy's."""

    def __init__(self, interface):
        self.__array_interface__ = dict(interface, version=3)


class CudaInterfaceArray:
    """A GPU array with the CUDA array interface alone (Numba's device arrays)."""

    def __init__(self, host):
        self._host = np.ascontiguousarray(host)
        self.shape, self.dtype = self._host.shape, self._host.dtype
        self.__cuda_array_interface__ = dict(self._host.__array_interface__, version=3)


class ForeignGpuTensor:
    """Another library's GPU tensor (PyTorch CUDA, JAX): DLPack only, no CuPy interface."""

    def __init__(self, host):
        self._host = np.ascontiguousarray(host)
        self.shape, self.dtype = self._host.shape, self._host.dtype

    def __dlpack__(self, stream=None, **kwargs):
        return self._host.__dlpack__()

    def __dlpack_device__(self):
        return (2, 0)

    def __len__(self):
        return len(self._host)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("can't convert cuda tensor to numpy (use .cpu())")


def get_array_module(*arrays):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in arrays) else np


def may_share_memory(a, b, max_work=None):
    return np.may_share_memory(_device(a), _device(b))


class _Namespace(types.ModuleType):
    """NumPy's functions on device arrays (array arguments must be device arrays)."""

    def __init__(self, name, source):
        super().__init__(name)
        self._source = source

    def __getattr__(self, name):
        attr = getattr(self._source, name)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, constants
        return _Function(attr)


class _Function:
    """A NumPy function or ufunc (with its methods: add.at, maximum.reduce) on device
    arrays."""

    def __init__(self, function):
        self._function = function

    def __call__(self, *args, **kwargs):
        return _wrap(self._function(*_device(list(args)), **_device(kwargs)))

    def __getattr__(self, name):
        attr = getattr(self._function, name)
        return _Function(attr) if callable(attr) else attr


class _Stream:
    ptr = 0

    def synchronize(self):
        pass


def make_fake_cupy():
    """A module object standing in for `cupy` (install it in sys.modules['cupy'])."""
    module = _Namespace("cupy", np)
    for name in ("ndarray", "asarray", "array", "ascontiguousarray", "asnumpy",
                 "get_array_module", "may_share_memory", "from_dlpack"):
        setattr(module, name, globals()[name])
    module.linalg = _Namespace("cupy.linalg", np.linalg)
    cuda = types.SimpleNamespace()
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0)
    cuda.get_current_stream = lambda: _Stream()
    cuda.Stream = _Stream
    module.cuda = cuda
    return module
