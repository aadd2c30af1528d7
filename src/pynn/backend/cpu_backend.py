"""The `cpu` backend: the C++ kernels of pynn._C on float32 NumPy arrays.

The kernel calls shared with the cuda backend are in kernel_calls.py; here are the ones only
pynn._C has (GEMM with its fused epilogue, the regression losses, dropout masks). Anything
not taken by a kernel falls through to the NumPy reference (same arrays, same contract), so
the backend is complete at every stage; tests compare each override with it.
"""

from __future__ import annotations

import numpy as np

from .kernel_calls import ACTIVATION_CODES, KernelCalls
from .numpy_backend import NumpyBackend

__all__ = ["ACTIVATION_CODES", "CpuBackend"]


class CpuBackend(KernelCalls, NumpyBackend):
    name = "cpu"
    supports_float64 = False

    def __init__(self, module):
        super().__init__(xp=np)
        self._C = self._kernels = module

    def dropout_mask(self, shape, rate, dtype, seed, step):
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
        # the kernel reads rows of unit stride (any row stride): a user layer's view (x[:,
        # ::-1], a Fortran-ordered array) is copied once
        if a.ndim and a.strides[-1] != a.itemsize:
            a = np.ascontiguousarray(a)
        if b.ndim and b.strides[-1] != b.itemsize:
            b = np.ascontiguousarray(b)
        return self._C.gemm(a, b, trans_a, trans_b, alpha, beta, out, bias,
                            ACTIVATION_CODES[activation], act_param)

    def _regression(self, kind, pred, target, grad, delta, grad_scale):
        if kind == "huber":
            return self._C.huber_loss(pred, target, grad, delta, grad_scale)
        return getattr(self._C, f"{kind}_loss")(pred, target, grad, grad_scale)
