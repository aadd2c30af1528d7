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
    """The number of threads pynn's C++ kernels run with (1 without the extension): the
    count set, or fewer where the system refused to start some (said on stderr then)."""
    module = _native()
    return module.running_threads() if module is not None else 1


def _threadpoolctl_controller(threadpoolctl):
    """A threadpoolctl controller for pynn's pool: threadpool_info() lists it (user_api
    "pynn") and threadpool_limits() limits it, as it does OpenBLAS and OpenMP."""

    class PynnController(threadpoolctl.LibController):
        user_api = "pynn"
        internal_api = "pynn"
        filename_prefixes = ("_c.",)  # pynn/_C.cpython-*.so, lowercased; other _C modules
        check_symbols = ("pynn_get_num_threads", "pynn_set_num_threads")  # (torch's) lack these

        def get_num_threads(self):
            get = getattr(self.dynlib, "pynn_get_num_threads", None)
            return get() if get is not None else None

        def set_num_threads(self, num_threads):
            set_ = getattr(self.dynlib, "pynn_set_num_threads", None)
            if set_ is not None:
                set_(min(max(int(num_threads), 1), MAX_THREADS))

        def get_version(self):
            from . import __version__

            return __version__

    return PynnController


def register_with_threadpoolctl() -> bool:
    """Register pynn's pool with threadpoolctl when it is installed (>= 3.0, which has
    `register`); import pynn does this. Returns whether it did."""
    import importlib.util

    if importlib.util.find_spec("threadpoolctl") is None:
        return False
    if _native() is None:  # threadpoolctl lists loaded libraries: load the pool's one now
        return False
    try:
        import threadpoolctl

        threadpoolctl.register(_threadpoolctl_controller(threadpoolctl))
    except Exception:  # noqa: BLE001 - an old or broken threadpoolctl must not break import pynn
        return False
    return True
