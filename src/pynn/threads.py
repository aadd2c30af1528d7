"""Thread count of the C++ kernels (pynn's own pool; numpy/OpenBLAS keep theirs)."""

from __future__ import annotations

import numbers

MAX_THREADS = 1024  # the C++ pool's limit (csrc/include/pynn/threadpool.h)


def _native():
    try:
        from . import _C
    except ImportError:
        return None
    return _C


def set_num_threads(n: int) -> None:
    """Use n threads in the C++ kernels (1 <= n <= 1024). No effect on the numpy backend."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"number of threads must be a positive integer, got {n!r}")
    if n > MAX_THREADS:
        raise ValueError(f"number of threads must be at most {MAX_THREADS}, got {n}")
    module = _native()
    if module is not None:
        module.set_num_threads(int(n))


def get_num_threads() -> int:
    module = _native()
    return module.num_threads() if module is not None else 1
