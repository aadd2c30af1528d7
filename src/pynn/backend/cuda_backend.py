"""The `cuda` backend: pynn._cuda's kernels on CuPy device arrays, float32.

GEMMs go to cuBLAS through CuPy's matmul (transposes are passed as flags, not copied) with the
Dense epilogue (bias + activation) in one pynn kernel after it; activations, softmax, the
fused losses and the optimizer updates are pynn's own kernels (csrc/cuda/), launched on
CuPy's current stream. Anything not overridden (float64, sample weights, dropout masks) falls
through to the CuPy reference code of the `cupy` backend, so the backend is complete at every
stage; tests compare each override with the numpy reference.
"""

from __future__ import annotations

import numpy as np

from .cpu_backend import ACTIVATION_CODES
from .cupy_backend import CupyBackend


class CudaBackend(CupyBackend):
    name = "cuda"
    supports_float64 = True  # through the CuPy reference path

    def __init__(self, module):
        super().__init__()
        self._cuda = module

    def _stream(self):
        return self.xp.cuda.get_current_stream().ptr

    def _native(self, *arrays):
        """True when every array is a float32 CuPy array (the kernels' type)."""
        return all(a is None or (isinstance(a, self.xp.ndarray) and a.dtype == np.float32)
                   for a in arrays)

    def _c(self, a):
        return self.xp.ascontiguousarray(a)

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
        code = ACTIVATION_CODES[activation]
        if bias is not None or code != 0:
            self._cuda.bias_activation(z, None if bias is None else self._c(bias), code,
                                       act_param, self._stream())
        if out is not None and z is not out:
            out[...] = z
            return out
        return z

    def bias_grad(self, dz):
        if not self._native(dz) or dz.ndim != 2:
            return super().bias_grad(dz)
        out = self.xp.empty(dz.shape[1], dtype=np.float32)
        self._cuda.bias_grad(self._c(dz), out, self._stream())
        return out

    # ---- activations --------------------------------------------------------------------
    def activation_forward(self, name, z, param=0.0):
        if name == "softmax":
            return self.softmax_forward(z)
        if not self._native(z):
            return super().activation_forward(name, z, param)
        z = self._c(z)
        y = self.xp.empty_like(z)
        self._cuda.activation_forward(ACTIVATION_CODES[name], param, z, y, self._stream())
        return y

    def activation_backward(self, name, param, z, y, dy):
        if name == "softmax":
            return self.softmax_backward(y, dy)
        if not self._native(z, y, dy):
            return super().activation_backward(name, param, z, y, dy)
        dz = self.xp.empty(dy.shape, dtype=np.float32)
        self._cuda.activation_backward(ACTIVATION_CODES[name], param,
                                       None if z is None else self._c(z), self._c(y),
                                       self._c(dy), dz, self._stream())
        return dz

    def softmax_forward(self, z):
        if not self._native(z) or z.ndim != 2:
            return super().softmax_forward(z)
        z = self._c(z)
        y = self.xp.empty_like(z)
        self._cuda.softmax_forward(z, y, self._stream())
        return y

    def softmax_backward(self, y, dy):
        if not self._native(y, dy) or y.ndim != 2:
            return super().softmax_backward(y, dy)
        dz = self.xp.empty(dy.shape, dtype=np.float32)
        self._cuda.softmax_backward(self._c(y), self._c(dy), dz, self._stream())
        return dz

    # ---- losses -------------------------------------------------------------------------
    def softmax_cross_entropy(self, logits, targets, sparse, grad_scale, sample_weight=None):
        if not self._native(logits) or logits.ndim != 2 or sample_weight is not None:
            return super().softmax_cross_entropy(logits, targets, sparse, grad_scale,
                                                 sample_weight)
        logits = self._c(logits)
        grad = self.xp.empty_like(logits)
        targets = self.xp.asarray(targets)
        if sparse:
            labels = self.xp.ascontiguousarray(targets, dtype=np.int32)
            loss = self._cuda.softmax_xent_sparse(logits, labels, grad, grad_scale,
                                                  self._stream())
        else:
            loss = self._cuda.softmax_xent_dense(
                logits, self.xp.ascontiguousarray(targets, dtype=np.float32), grad, grad_scale,
                self._stream())
        return float(loss), grad

    def regression_loss(self, kind, pred, target, grad_scale, delta=1.0, sample_weight=None):
        if not self._native(pred, target) or sample_weight is not None:
            return super().regression_loss(kind, pred, target, grad_scale, delta, sample_weight)
        pred, target = self._c(pred), self._c(target)
        grad = self.xp.empty_like(pred)
        loss = self._cuda.regression_loss(kind, pred, target, grad, delta, grad_scale,
                                          self._stream())
        return float(loss), grad

    def binary_cross_entropy(self, pred, target, from_logits, eps, grad_scale,
                             sample_weight=None):
        if not self._native(pred, target) or sample_weight is not None:
            return super().binary_cross_entropy(pred, target, from_logits, eps, grad_scale,
                                                sample_weight)
        pred, target = self._c(pred), self._c(target)
        grad = self.xp.empty_like(pred)
        loss = self._cuda.bce_loss(pred, target, grad, from_logits, eps, grad_scale,
                                   self._stream())
        return float(loss), grad

    # ---- optimizers ---------------------------------------------------------------------
    def sgd_update(self, w, g, velocity, lr, momentum, nesterov):
        if not self._native(w, g, velocity) or not w.flags.c_contiguous:
            return super().sgd_update(w, g, velocity, lr, momentum, nesterov)
        self._cuda.sgd_update(w, self._c(g), velocity, lr, momentum, nesterov, self._stream())

    def adam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
        if not self._native(w, g, m, v) or not w.flags.c_contiguous:
            return super().adam_update(w, g, m, v, lr, beta1, beta2, eps, weight_decay, step)
        self._cuda.adam_update(w, self._c(g), m, v, lr, beta1, beta2, eps, weight_decay, step,
                               self._stream())

    def rmsprop_update(self, w, g, velocity, momentum_buf, lr, rho, momentum, eps):
        if not self._native(w, g, velocity, momentum_buf) or not w.flags.c_contiguous:
            return super().rmsprop_update(w, g, velocity, momentum_buf, lr, rho, momentum, eps)
        self._cuda.rmsprop_update(w, self._c(g), velocity, momentum_buf, lr, rho, momentum, eps,
                                  self._stream())

    def adagrad_update(self, w, g, accumulator, lr, eps):
        if not self._native(w, g, accumulator) or not w.flags.c_contiguous:
            return super().adagrad_update(w, g, accumulator, lr, eps)
        self._cuda.adagrad_update(w, self._c(g), accumulator, lr, eps, self._stream())
