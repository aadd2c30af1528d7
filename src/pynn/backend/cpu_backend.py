"""The `cpu` backend: the C++ kernels of pynn._C on float32 NumPy arrays.

The kernel calls shared with the cuda backend are in kernel_calls.py; here are the ones only
pynn._C has (GEMM with its fused epilogue, the regression losses, dropout masks). Anything
not taken by a kernel falls through to the NumPy reference (same arrays, same contract), so
the backend is complete at every stage; tests compare each override with it.
"""

from __future__ import annotations

import numpy as np

from .kernel_calls import ACTIVATION_CODES, KernelCalls, activation_code
from .numpy_backend import NumpyBackend, c_array, check_dropout

__all__ = ["ACTIVATION_CODES", "CpuBackend"]


class CpuBackend(KernelCalls, NumpyBackend):
    name = "cpu"
    supports_float64 = False

    def __init__(self, module):
        super().__init__(xp=np)
        self._C = self._kernels = module

    def dropout_mask(self, shape, rate, dtype, seed, step):
        check_dropout(rate, seed, step)  # (pybind's TypeError for a negative seed)
        if np.dtype(dtype) != np.float32:
            return super().dropout_mask(shape, rate, dtype, seed, step)
        mask = np.empty(shape, dtype=np.float32)
        self._C.dropout_apply(None, mask, rate, int(seed), int(step))
        return mask

    def gemm(self, a, b, trans_a=False, trans_b=False, bias=None, activation="linear",
             act_param=0.0, alpha=1.0, beta=0.0, out=None):
        if activation == "softmax" or not self._native(a, b, bias, out):
            return super().gemm(a, b, trans_a, trans_b, bias, activation, act_param, alpha,
                                beta, out)
        # The kernels read rows of unit stride, any row stride: a view they cannot (x[:, ::-1],
        # x[::-1], a Fortran-ordered or broadcast array, misaligned data) is copied once.
        a, b = readable(a), readable(b)
        if bias is not None:
            bias = c_array(np, bias)
        if out is None or readable(out) is out:
            return self._C.gemm(a, b, trans_a, trans_b, alpha, beta, out, bias,
                                activation_code(activation), act_param)
        # An out they cannot write in place: the result goes through a copy into it.
        if out.ndim == 2 and not out.flags.writeable:
            raise ValueError("gemm: out is read-only")
        staged = self._C.gemm(a, b, trans_a, trans_b, alpha, beta, np.array(out, order="C"),
                              bias, activation_code(activation), act_param)
        out[...] = staged
        return out

    def _regression(self, kind, pred, target, grad, delta, grad_scale):
        if kind == "huber":
            return self._C.huber_loss(pred, target, grad, delta, grad_scale)
        return getattr(self._C, f"{kind}_loss")(pred, target, grad, grad_scale)


def readable(x):
    """x itself when the GEMM kernels can address it (a 2-D float32 array with rows of unit
    stride, each row starting at least one row after the previous, data aligned to 4 bytes);
    else a C-contiguous copy. Anything else (other ranks) is returned as it is, for the
    binding to refuse by name."""
    if x.ndim != 2:
        return x
    rows, cols = x.shape
    s0, s1 = x.strides
    if rows == 0 or cols == 0 or (
            x.flags.aligned and (cols == 1 or s1 == 4)
            and (rows == 1 or (s0 >= 4 * cols and s0 % 4 == 0))):
        return x
    return np.array(x, order="C")

