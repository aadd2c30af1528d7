"""The `cuda` backend: pynn._cuda's kernels on CuPy device arrays, float32.

GEMMs go to cuBLAS through CuPy's matmul (transposes are passed as flags, not copied) with the
Dense epilogue (bias + activation) in one pynn kernel after it; activations, softmax, the
fused losses and the optimizer updates are pynn's own kernels (csrc/cuda/), launched on
CuPy's current stream through the calls shared with the cpu backend (kernel_calls.py). Anything not overridden (float64, sample weights, dropout masks) falls
through to the CuPy reference code of the `cupy` backend, so the backend is complete at every
stage; tests compare each override with the numpy reference.
"""

from __future__ import annotations

import numpy as np

from .cupy_backend import CupyBackend
from .kernel_calls import KernelCalls, activation_code


class CudaBackend(KernelCalls, CupyBackend):
    name = "cuda"
    supports_float64 = True  # through the CuPy reference path

    def __init__(self, module):
        super().__init__()
        self._cuda = self._kernels = module

    def _stream(self):
        return self.xp.cuda.get_current_stream().ptr

    def _launch_args(self):
        return (self._stream(),)

    def _native(self, *arrays):
        """True when every array is a float32 CuPy array (the kernels' type)."""
        return all(a is None or (isinstance(a, self.xp.ndarray) and a.dtype == np.float32)
                   for a in arrays)

    def _native_update(self, w, *arrays):
        # The bindings refuse a non-contiguous w; the CuPy reference updates it in place.
        return self._native(w, *arrays) and w.flags.c_contiguous

    # ---- dense algebra ------------------------------------------------------------------
    def gemm(self, a, b, trans_a=False, trans_b=False, bias=None, activation="linear",
             act_param=0.0, alpha=1.0, beta=0.0, out=None):
        if (activation == "softmax" or not self._native(a, b, bias, out)
                or a.ndim != 2 or b.ndim != 2):
            return super().gemm(a, b, trans_a, trans_b, bias, activation, act_param, alpha,
                                beta, out)
        opa = a.T if trans_a else a
        opb = b.T if trans_b else b
        if opa.shape[1] != opb.shape[0]:
            raise ValueError(f"gemm: inner dimensions differ: op(a) is {opa.shape}, "
                             f"op(b) is {opb.shape}")
        shape = (opa.shape[0], opb.shape[1])
        if out is not None and out.shape != shape:
            raise ValueError(f"gemm: out has shape {out.shape}, expected {shape}")
        if beta != 0.0 and out is None:
            raise ValueError("gemm: beta != 0 needs out=")
        if (out is not None and out.flags.c_contiguous and alpha == 1.0 and beta == 0.0
                and not self.xp.may_share_memory(out, a)
                and not self.xp.may_share_memory(out, b)):
            z = self.xp.matmul(opa, opb, out=out)
        else:
            z = self.xp.matmul(opa, opb)
            if alpha != 1.0:
                z *= np.float32(alpha)
            if beta != 0.0:
                z += np.float32(beta) * out
        code = activation_code(activation)
        if bias is not None or code != 0:
            self._cuda.bias_activation(z, None if bias is None else self._c(bias), code,
                                       act_param, self._stream())
        if out is not None and z is not out:
            out[...] = z
            return out
        return z

    def _regression(self, kind, pred, target, grad, delta, grad_scale):
        return self._call("regression_loss", kind, pred, target, grad, delta, grad_scale)
