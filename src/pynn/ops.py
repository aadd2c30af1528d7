"""Array operations on the current backend, for users and benchmarks."""

from __future__ import annotations

import numbers

import numpy as np

from . import activations as act_mod
from . import backend as _backend_mod
from . import config
from .backend import backend_array, get_backend, is_gpu_array
from .backend.kernel_calls import ACTIVATION_CODES
from .data import _numeric, all_finite, converted, overflow_error


_ndarray = np.ndarray  # (a global: one lookup less in gemm's plainest call)


def gemm(a, b, trans_a=False, trans_b=False, bias=None, activation=None, alpha=1.0, beta=0.0,
         out=None):
    """activation(alpha * op(a) @ op(b) + beta * out + bias) on the current backend.

    op(x) is x.T when trans_x. bias has length op(b).shape[1]. With out= the result is written
    there (and beta may be non-zero); otherwise a new array is returned.

    activation: an element-wise one fused into the result (a name or Spec; not softmax).
    The computation's dtype: on the numpy backend the operands' (float64 for float64 or
    mixed ones); on the cpu backend float32, its kernels' type (float64 or mixed operands
    are converted and the result is float32), except for float64 operands in a float64
    session (pynn.set_floatx), computed in float64 with numpy. bias is taken in that dtype,
    and out must have it. Under pynn.set_matmul_precision('high') the cpu backend's float32
    products may run as bf16x3 on AMX tiles (pynn.precision).
    """
    if bias is None and activation is None and out is None and type(a) is _ndarray and \
            type(b) is _ndarray and (trans_a is False or trans_a is True) and \
            (trans_b is False or trans_b is True):
        # The plainest call on the cpu backend, its arrays' dtype, shape and strides checked
        # in C++ only: ~0.2 us of Python, not ~0.9 (a 8x8x8 product lost to numpy.matmul's
        # 0.9 us); what the binding refuses takes the paths below.
        backend = _backend_mod._current
        if backend is not None and backend.name == "cpu" and type(alpha) is float and \
                alpha == 1.0 and type(beta) is float and beta == 0.0:
            try:
                return backend._C.gemm(a, b, trans_a, trans_b)
            except (TypeError, ValueError):
                pass
    backend = get_backend()
    result = _own_float32_call(backend, a, b, trans_a, trans_b, bias, activation, alpha, beta,
                               out)
    if result is not None:
        return result
    trans_a, trans_b = _flag("trans_a", trans_a), _flag("trans_b", trans_b)
    alpha, beta = _scalar("alpha", alpha), _scalar("beta", beta)
    spec = act_mod.get(activation)
    if spec.name == "softmax":
        raise ValueError("gemm: softmax is not an element-wise epilogue; apply it afterwards")
    # beside a float64 operand others are taken in float64 (numpy's promotion: an int64's
    # digits kept), else in the session's floatx
    wide = _is_float64(a) or _is_float64(b)
    a_arr, b_arr = _matrix(backend, a, "a", wide), _matrix(backend, b, "b", wide)
    if a_arr.dtype != b_arr.dtype:  # float32 with float64: computed in float64
        a_arr, b_arr = a_arr.astype(np.float64, copy=False), b_arr.astype(np.float64, copy=False)
    m, k = a_arr.shape[::-1] if trans_a else a_arr.shape
    k2, n = b_arr.shape[::-1] if trans_b else b_arr.shape
    if k != k2:
        raise ValueError(f"gemm: inner dimensions differ: op(a) is ({m}, {k}), op(b) is "
                         f"({k2}, {n})")
    if bias is not None:
        if is_gpu_array(bias):
            bias = _operand(backend, bias, "bias")
        else:  # host values straight in the op's dtype; finite ones beyond its range refused
            bias = _in_dtype(_numeric(bias, "gemm: bias"), a_arr.dtype, "bias")
        bias = backend.asarray(bias, a_arr.dtype)
        if bias.shape != (n,):
            raise ValueError(f"gemm: bias must have shape ({n},), got {bias.shape}")
    if out is not None:
        if not isinstance(out, backend.xp.ndarray):
            raise TypeError(f"gemm: out must be an array of the current backend "
                            f"({backend.name!r}: {backend.xp.__name__}.ndarray), got "
                            f"{type(out).__module__}.{type(out).__name__}")
        if tuple(out.shape) != (m, n):
            raise ValueError(f"gemm: out must have shape ({m}, {n}), got {tuple(out.shape)}")
        if out.dtype != a_arr.dtype:
            raise TypeError(f"gemm: out must have the computation's dtype {a_arr.dtype}, got "
                            f"{out.dtype}")
        # The kernels write out while still reading the operands: an operand that shares
        # memory with out is read from a copy (numpy.matmul does the same).
        shares = getattr(backend.xp, "may_share_memory", None)
        if shares is not None:
            a_arr = a_arr.copy() if shares(out, a_arr) else a_arr
            b_arr = b_arr.copy() if shares(out, b_arr) else b_arr
            bias = bias.copy() if bias is not None and shares(out, bias) else bias
    if beta != 0.0 and out is None:
        raise ValueError("gemm: beta != 0 needs out=")
    return backend.gemm(a_arr, b_arr, trans_a, trans_b, bias, spec.name, spec.param, alpha,
                        beta, out)


# Each kernel activation's name, code and default parameter by its own name (act_mod.get
# takes ~0.7 us; None is linear).
_PLAIN_ACTIVATIONS = {None: ("linear", 0, 0.0),
                      **{name: (name, code, act_mod.get(name).param)
                         for name, code in ACTIVATION_CODES.items()}}


def _own_float32_call(backend, a, b, trans_a, trans_b, bias, activation, alpha, beta, out):
    """The common call straight to the backend's GEMM: its own float32 matrices (NumPy ones
    on the cpu backend, CuPy ones, C-contiguous, on the GPU backends), an optional float32
    bias of the same kind, no out=. ~1 us of Python instead of the general path's ~5, so
    small products do not lose to numpy.matmul (~0.7 us at 8x8x8). None when anything needs
    the general path's conversions or checks, which then give the same result or the error."""
    cpu = backend.name == "cpu"
    if cpu:
        own = np.ndarray
    elif backend.name in ("cuda", "cupy"):
        own = backend.xp.ndarray
    else:
        return None
    if not (out is None and type(a) is own and type(b) is own and a.dtype == np.float32
            and b.dtype == np.float32 and a.ndim == 2 and b.ndim == 2
            and ((a.strides[1] == 4 and b.strides[1] == 4) if cpu
                 else (a.flags.c_contiguous and b.flags.c_contiguous))
            and type(trans_a) is bool and type(trans_b) is bool
            and type(alpha) in (float, int) and type(beta) in (float, int) and beta == 0):
        return None
    n = b.shape[0] if trans_b else b.shape[1]
    if (a.shape[0] if trans_a else a.shape[1]) != (b.shape[1] if trans_b else b.shape[0]):
        return None
    if bias is not None and not (type(bias) is own and bias.dtype == np.float32
                                 and bias.shape == (n,) and bias.flags.c_contiguous):
        return None
    name = code = param = None
    if activation is None or type(activation) is str:  # (a name as it is: no lookup)
        name, code, param = _PLAIN_ACTIVATIONS.get(activation, (None, None, None))
    if name is None:
        spec = act_mod.get(activation)
        if spec.name == "softmax":
            return None
        name, code, param = spec.name, ACTIVATION_CODES[spec.name], spec.param
    if cpu:  # (the cpu backend's gemm, whose checks the conditions above are)
        try:
            return backend._C.gemm(a, b, trans_a, trans_b, float(alpha), 0.0, None, bias, code,
                                   param)
        except ValueError:  # rows it cannot address (x[::-1], misaligned data): the general
            return None     # path copies them
    return backend.gemm(a, b, trans_a, trans_b, bias, name, param, float(alpha), 0.0, None)


def _flag(name, value):
    if isinstance(value, (str, bytes)):  # bool("no") is True
        raise TypeError(f"gemm: {name} must be True or False, got {value!r}")
    return bool(value)


def _scalar(name, value):
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()  # a 0-d array, a torch scalar
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"gemm: {name} must be a real number, got {value!r}")
    return float(value)


def _is_float64(x):
    """Whether x is of float64 or wider (a long double): computed in float64 where asked."""
    dtype = getattr(x, "dtype", None)
    return isinstance(dtype, np.dtype) and dtype.kind == "f" and dtype.itemsize >= 8


def _operand(backend, x, name, wide=False):
    """x as a float array on the backend's device: its own arrays as they are, other GPU
    arrays through DLPack, anything else as NumPy converts it (other dtypes in float64 where
    wide, else in the session's floatx); refused unless of real numbers (text, objects,
    complex) and unmasked."""
    if is_gpu_array(x):  # zero-copy on a GPU backend, else a TypeError
        x = backend_array(x, backend, name)
    elif isinstance(x, np.ma.MaskedArray):  # its masked entries would be multiplied
        raise TypeError(f"gemm: {name} is a masked array; pynn uses no masks: pass "
                        f"{name}.filled(value) with the value masked entries should take")
    elif not isinstance(x, (np.ndarray, backend.xp.ndarray)):
        # real numbers (_numeric refuses the rest), lists in the session's floatx
        x = _in_dtype(_numeric(x, f"gemm: {name}"), np.dtype(config.floatx()), name)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"gemm: {name} must hold real numbers, got dtype {x.dtype}")
    if x.dtype.kind == "f" and x.dtype.itemsize in (4, 8):  # (a byte-swapped one: native)
        return x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))
    # (a long double's finite values beyond the target's range refused, as float64's are)
    return _in_dtype(x, np.dtype(np.float64 if wide else config.floatx()), name)


def _matrix(backend, x, name, wide=False):
    """A 2-D operand on the backend's device (host arrays copied there by a GPU backend)."""
    if isinstance(x, numbers.Number) or getattr(x, "ndim", None) == 0:
        raise ValueError(f"gemm: {name} must be 2-D, got a scalar")
    arr = _operand(backend, x, name, wide)
    if arr.ndim != 2:
        raise ValueError(f"gemm: {name} must be 2-D, got shape {arr.shape}")
    if arr.dtype == np.float64 and backend.name == "cpu" and config.floatx() != "float64":
        arr = _in_dtype(arr, np.dtype(np.float32), name)
    return backend.asarray(arr, arr.dtype)  # contiguous, on the device; no copy if it is


def _in_dtype(arr, dtype, name):
    """arr cast to dtype; finite values that become inf (1e300 in float32) refused by name."""
    if arr.dtype == dtype:
        return arr
    source, arr = arr, converted(arr, dtype)
    if not all_finite(arr):  # (only here: a cast pass already, the check one more)
        error = overflow_error(source, arr, f"gemm: {name}")
        if error is not None:
            raise error
    return arr


def __getattr__(name):
    # keras.ops' functions (sqrt, mean, ...) in a metric or loss of your own; numpy's name
    # suggested only where numpy has one (no np.cast, np.one_hot, np.convert_to_numpy)
    use = (f"numpy (np.{name})" if not name.startswith("_") and hasattr(np, name)
           else "numpy's counterpart")
    raise AttributeError(f"module 'pynn.ops' has no attribute {name!r}: it holds pynn's "
                         f"kernels (gemm); a metric function of yours gets NumPy arrays: use "
                         f"{use} where Keras code has keras.ops.{name}")
