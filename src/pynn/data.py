"""Checking and converting user data once, before any batch is made.

Inputs become C-contiguous float arrays of the model's dtype (a copy only when the dtype or
layout differs); every problem raises an exception that says what was expected and what came.
"""

from __future__ import annotations

import numpy as np

from . import config
from .backend.arrays import detached, is_gpu_array


def host_array(x):
    """x as a numpy array, zero-copy through DLPack for CPU tensors (PyTorch, JAX, ...)."""
    if isinstance(x, np.ndarray):
        return x
    x = detached(x)
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        try:
            return np.from_dlpack(x)
        except (BufferError, RuntimeError, TypeError, ValueError):
            pass  # not on the CPU, or a dtype numpy lacks: convert below
    return np.asarray(x)


def densified(a):
    """A scipy sparse matrix as its dense array (as Keras 3 takes it; mind the size of very
    wide data), float64 values already in a float32 session's dtype when they fit (a float64
    dense copy was twice the memory, and was then cast); anything else as is."""
    if type(a).__module__.startswith("scipy.sparse") and hasattr(a, "toarray"):
        narrow = np.dtype(config.floatx())
        if a.dtype.kind == "f" and a.dtype.itemsize > narrow.itemsize and a.nnz:
            a = a.tocsr(copy=True)  # repeated entries summed in float64 first, as toarray
            a.sum_duplicates()      # sums them (the caller's matrix untouched)
            if np.all(np.abs(a.data) <= np.finfo(narrow).max):  # (else named by the checks)
                a = a.astype(narrow)
        return a.toarray()
    dtype = getattr(a, "dtype", None)  # (numpy's own kinds first: str(dtype) costs ~4 us)
    if dtype is not None and getattr(dtype, "kind", "V") not in "biufcbOSUmM" and \
            str(dtype) in ("bfloat16", "torch.bfloat16"):
        # bfloat16 (ml_dtypes' for numpy and JAX, PyTorch's): numpy has no such number type,
        # and every bfloat16 is exactly a float32
        if hasattr(a, "float") and hasattr(a, "detach"):  # a tensor: float32, where it is
            return detached(a).float()
        return np.asarray(a, dtype=np.float32)
    return a


def _numeric(x, name, dtype=None):
    if x is None:
        raise ValueError(f"{name} is None; pass an array of shape (samples, features)")
    x = densified(x)
    if isinstance(x, dict):
        raise TypeError(f"{name} is a dict; pynn takes arrays (x, y), not dicts")
    if hasattr(x, "__next__") and not hasattr(x, "__array__"):
        raise TypeError(f"{name} is a {type(x).__name__}; this takes arrays (fit, evaluate "
                        f"and predict take a generator or dataset of batches as x)")
    if isinstance(x, np.ma.MaskedArray):  # its masked entries would be used as they are
        raise TypeError(f"{name} is a masked array; pynn uses no masks: pass "
                        f"{name}.filled(value) with the value masked entries should take")
    if _is_pandas(x):
        return _pandas_values(x, name, dtype)
    if is_gpu_array(x):  # the GPU backend's own array (Model took it zero-copy): checked there
        arr = x
    else:
        try:
            arr = host_array(x)
        except ValueError as exc:  # ragged nesting, such as a Keras-style (x, y) tuple
            raise ValueError(f"{name} is not a rectangular array ({exc}); pass the samples "
                             f"as one array, and targets separately: fit(x, y)") from None
        except TypeError as exc:  # a tensor of a dtype numpy lacks (torch.bfloat16)
            raise TypeError(f"{name} ({type(x).__name__} of dtype {getattr(x, 'dtype', '?')})"
                            f" cannot become a numpy array ({exc}); pass a float32 array in "
                            f"host memory (for a PyTorch tensor: x.float().cpu())") from None
    if arr.dtype.kind in "mM":  # numpy counts timedelta64 as a number: raw ticks, silently
        raise TypeError(f"{name} holds dates or durations (dtype {arr.dtype}); pynn takes "
                        f"numbers: convert them (e.g. to seconds) first")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    return arr


def frame_values(x, name="x", dtype=None):
    """A pandas DataFrame's or Series' values as a numpy array (checked as every input; a
    single-dtype frame's own memory where pandas allows), anything else as it is: predict
    and evaluate then convert them a piece at a time, as any numpy array (a frame was
    converted to the model's dtype whole: a second copy of the data). dtype: the model's,
    for a frame of several dtypes (made into it directly, not a float64 copy first)."""
    return _pandas_values(x, name, dtype) if _is_pandas(x) else x


def is_frame(x):
    """Whether x is a pandas DataFrame (its columns have names)."""
    return _is_pandas(x) and getattr(x, "ndim", 0) == 2 and hasattr(x, "columns")


def _is_pandas(x):
    return type(x).__module__.partition(".")[0] == "pandas" and hasattr(x, "to_numpy") \
        and hasattr(x, "dtypes")


def _pandas_values(x, name, dtype=None):
    """A DataFrame's (or Series') values, checked column by column: numbers and bools, numpy
    or pandas' nullable ones (pd.NA becomes NaN, which the finiteness check reports), and
    categories of numbers (their values). np.asarray made mixed or nullable frames object
    arrays, refused without naming the column. dtype (the model's, when known): columns of
    several numpy dtypes become it directly (their common float64 was a second copy) when
    their values fit in it."""
    frame = x.to_frame() if x.ndim == 1 else x
    dtypes = list(frame.dtypes)
    for column, column_dtype in zip(frame.columns, dtypes):
        kind = getattr(column_dtype, "kind", "O")
        if getattr(column_dtype, "name", "") == "category":
            kind = getattr(column_dtype.categories.dtype, "kind", "O")
        if kind not in "biuf":
            what = name if x.ndim == 1 else f"{name} column {column!r}"  # (a Series: x)
            raise TypeError(f"{what} has dtype {column_dtype}; pynn takes "
                            f"numbers: encode it (one-hot or codes for categories, numbers "
                            f"for dates) or drop it")
    if all(isinstance(d, np.dtype) for d in dtypes):  # plain numpy columns: their common type
        if dtype is not None and len(set(dtypes)) > 1 and _fits(frame, dtypes, dtype):
            # column by column into the model's dtype: pandas' to_numpy made a float64
            # copy (or its own temporaries) before the cast, two frame-sized copies
            arr = np.empty(frame.shape, dtype=dtype)
            for j in range(frame.shape[1]):
                arr[:, j] = frame.iloc[:, j].to_numpy()
        else:
            arr = frame.to_numpy(dtype=np.result_type(*dtypes) if dtypes else np.float64)
    else:
        arr = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    return arr[:, 0] if x.ndim == 1 else arr


def _fits(frame, dtypes, dtype):
    """Whether every float column's finite values fit in float dtype (else the float64 path
    names the values beyond its range)."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        return False
    top = np.finfo(dtype).max
    for column, column_dtype in zip(frame.columns, dtypes):
        if column_dtype.kind == "f" and column_dtype.itemsize > dtype.itemsize:
            if np.nanmax(np.abs(frame[column].to_numpy()), initial=0.0) > top:
                return False  # (an infinity too: the float64 path names it)
    return True


def as_inputs(x, dtype, sample_shape=None, name="x", any_rank=False, xp=np,
              check_finite=None):
    """x as a C-contiguous float array of shape (N, *sample_shape): (N, features) unless the
    model takes multi-axis samples (sample_shape of length > 1, or any_rank when its first
    layer is a Flatten not yet built); a 1-D x is one feature per sample when that fits.
    xp: the array module of x when it is a GPU backend's own array (cupy), else numpy.
    check_finite: whether to refuse NaN/inf (None: pynn.config's setting, read once; a
    caller that relies on the check passes the value it read)."""
    sample_shape = None if sample_shape is None else tuple(sample_shape)
    if (sample_shape is not None and len(sample_shape) > 1) or any_rank:
        return _as_sample_array(x, dtype, sample_shape, name, xp, check_finite)
    n_features = None if sample_shape is None else sample_shape[0]
    arr = _numeric(x, name, dtype)
    if arr.ndim == 1 and n_features in (None, 1):
        arr = arr.reshape(-1, 1)  # Keras' deliberate expansion of a 1-D input
    if arr.ndim == 1:  # one sample of n_features > 1: Keras refuses it too
        hint = (f"for one sample pass {name}[None] (or {name}.reshape(1, -1))"
                if arr.shape[0] == n_features else
                f"the model takes {n_features} features per sample")
        raise ValueError(f"{name} must have shape (samples, features), got shape {arr.shape}; "
                         f"{hint}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (samples, features), got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:  # before: 0 rows of it too
        raise ValueError(f"{name} has {arr.shape[1]} features per sample but the model expects "
                         f"{n_features} (input shape ({n_features},)); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if arr.shape[1] == 0:  # (an unbuilt model would be built for no inputs)
        raise ValueError(f"{name} has 0 features per sample (shape {arr.shape})")
    return _finished(arr, dtype, name, xp, check_finite)


def as_layer_input(x, name, min_ndim=2):
    """What layer(x) takes: a real numeric array of at least min_ndim axes (a GPU backend's
    array stays as it is); refused with a clear error."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":  # (the common case, at once)
        arr = x
    else:
        arr = _numeric(x, name)
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have shape (batch, features...), got shape "
                         f"{tuple(arr.shape)}; for one sample pass x[None]")
    return arr


def _as_sample_array(x, dtype, sample_shape, name, xp, check_finite=None):
    arr = _numeric(x, name, dtype)
    want = "(samples, ...)" if sample_shape is None else \
        "(samples, " + ", ".join(str(d) for d in sample_shape) + ")"
    if arr.ndim < 2 or (sample_shape is not None and arr.shape[1:] != sample_shape):
        raise ValueError(f"{name} must have shape {want}, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if 0 in arr.shape[1:]:
        raise ValueError(f"{name} has samples of no values (shape {arr.shape})")
    return _finished(arr, dtype, name, xp, check_finite)


def converted(arr, dtype, xp=np):
    """arr as a C-contiguous array of dtype. With the finiteness check on, numpy's overflow
    warning is silenced: the caller reports it by name (see overflow_error); with it off,
    numpy's warning is all the user hears of values that became inf (CuPy has no such
    warning: on a GPU they become inf silently)."""
    if not config.check_finite():
        return xp.ascontiguousarray(arr, dtype=dtype)
    with np.errstate(over="ignore"):
        return xp.ascontiguousarray(arr, dtype=dtype)


def _native_kernels():
    try:
        from . import _C
    except ImportError:  # the pure-numpy install
        return None
    return _C if hasattr(_C, "all_finite") else None


def all_finite(arr):
    """Whether arr holds no NaN or infinity. A contiguous float32/float64 array takes the C++
    kernel's one threaded pass (MNIST's 60000 x 784 floats: 8 ms instead of numpy's 21);
    otherwise min and max propagate NaN and show an infinity, so two passes with no
    temporary (np.isfinite(arr).all() makes a bool array of arr's size: 150 MiB for 200k
    MNIST rows)."""
    if arr.dtype.kind == "c" or not isinstance(arr, np.ndarray):  # cuTENSOR's min/max may
        return bool(np.isfinite(arr).all())  # drop a NaN; a GPU has the memory for a mask
    if arr.dtype.kind != "f" or arr.size == 0:
        return True
    if (arr.dtype in (np.float32, np.float64) and arr.dtype.isnative
            and arr.flags.c_contiguous and arr.flags.aligned
            and not isinstance(arr, np.ma.MaskedArray)):  # its min/max skip masked values
        native = _native_kernels()
        if native is not None:
            return bool(native.all_finite(arr))
    return bool(np.isfinite(arr.min()) and np.isfinite(arr.max()))


def sum_of(f, w):
    """sum(f(w)) as a float: in w's type (fast), again in float64 when that overflowed (a
    float32 value of 1e20 squared is inf; the native engine sums in double). For penalties
    and gradient norms, w on any backend."""
    with np.errstate(over="ignore"):  # (the overflow is redone, not reported)
        total = float(f(w).sum())
    if total == float("inf") and w.dtype.itemsize < 8:
        total = float(f(w.astype(np.float64)).sum())
    return total


def overflow_error(source, arr, name):
    """A ValueError when finite `source` values became inf in `arr`'s narrower dtype (1e39 in
    float32), else None: such data is not 'NaN or infinite', it needs rescaling."""
    if source.dtype.kind != "f" or not all_finite(source):
        return None
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    return ValueError(f"{name} holds {bad} value(s) beyond {arr.dtype.name}'s range "
                      f"(+-{np.finfo(arr.dtype).max:.3g}), largest magnitude "
                      f"{float(np.abs(source).max()):.3g}: rescale the data")


def _finished(arr, dtype, name, xp=np, check_finite=None):
    if check_finite is None:
        check_finite = config.check_finite()
    source, arr = arr, converted(arr, dtype, xp)
    if check_finite and not all_finite(arr):
        raise overflow_error(source, arr, name) or ValueError(
            f"{name} contains {int(np.count_nonzero(~np.isfinite(arr)))} NaN or infinite "
            f"value(s) (pynn.config.set_check_finite(False) lets them through)")
    return arr


def check_unit_interval(owner, name, value):
    """An argument as a float in [0, 1] (a threshold, a label smoothing); a ValueError naming
    its owner and itself otherwise (NaN and non-numbers included)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1], got {value!r}")
    return number


def check_batch_size(batch_size, default):
    if batch_size is None:
        return default
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)
