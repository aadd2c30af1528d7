"""Arrays that sit against an inaccessible page, so a kernel that reads or writes one element
past their end (or before their start) crashes at once instead of touching its neighbours
unnoticed. Linux/POSIX only (mmap + mprotect); used from a subprocess, where the crash becomes
an exit status the test can report."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap

import numpy as np

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_keep_alive = []  # the mappings live as long as the process: arrays view them


def guarded(shape, dtype=np.float32, at="end"):
    """A zero-filled C-contiguous array whose last byte (at="end") or first byte (at="start")
    is next to a PROT_NONE page."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    page = mmap.PAGESIZE
    data_pages = -(-max(nbytes, 1) // page)
    buf = mmap.mmap(-1, (data_pages + 2) * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    for guard in (base, base + (data_pages + 1) * page):
        if _libc.mprotect(guard, page, 0) != 0:  # PROT_NONE
            raise OSError(ctypes.get_errno(), "mprotect failed")
    _keep_alive.append(buf)
    offset = page if at == "start" else (data_pages + 1) * page - nbytes
    return np.frombuffer(buf, dtype, count=count, offset=offset).reshape(shape)


def guarded_copy(x, at="end"):
    out = guarded(x.shape, x.dtype, at)
    out[...] = x
    return out
