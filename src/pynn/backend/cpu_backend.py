"""The `cpu` backend: the C++ kernels of pynn._C on float32 NumPy arrays.

Anything not overridden here falls through to the NumPy reference (same arrays, same
contract), so the backend is complete at every stage; tests compare each override with it.
"""

from __future__ import annotations

import numpy as np

from .numpy_backend import NumpyBackend

# Codes of csrc/include/pynn/common.h's Activation enum.
ACTIVATION_CODES = {"linear": 0, "relu": 1, "leaky_relu": 2, "elu": 3, "gelu": 4,
                    "sigmoid": 5, "tanh": 6}


class CpuBackend(NumpyBackend):
    name = "cpu"
    supports_float64 = False

    def __init__(self, module):
        super().__init__(xp=np)
        self._C = module

    def _native(self, *arrays):
        """True when every array is float32 (the kernels' type); float64 goes to numpy."""
        return all(a is None or a.dtype == np.float32 for a in arrays)

    def dropout_mask(self, shape, rate, dtype, seed, step):
        if np.dtype(dtype) != np.float32:
            return super().dropout_mask(shape, rate, dtype, seed, step)
        mask = np.empty(shape, dtype=np.float32)
        self._C.dropout_apply(None, mask, rate, int(seed), int(step))
        return mask

    # ---- dense algebra ------------------------------------------------------------------
    def gemm(self, a, b, trans_a=False, trans_b=False, bias=None, activation="linear",
             act_param=0.0, alpha=1.0, beta=0.0, out=None):
        if activation == "softmax" or not self._native(a, b, bias, out):
            return super().gemm(a, b, trans_a, trans_b, bias, activation, act_param, alpha,
                                beta, out)
        return self._C.gemm(a, b, trans_a, trans_b, alpha, beta, out, bias,
                            ACTIVATION_CODES[activation], act_param)

    def bias_grad(self, dz):
        if not self._native(dz) or dz.ndim != 2:
            return super().bias_grad(dz)
        out = np.empty(dz.shape[1], dtype=np.float32)
        self._C.bias_grad(np.ascontiguousarray(dz), out)
        return out

    # ---- activations --------------------------------------------------------------------
    def activation_forward(self, name, z, param=0.0):
        if name == "softmax":
            return self.softmax_forward(z)
        if not self._native(z):
            return super().activation_forward(name, z, param)
        z = np.ascontiguousarray(z)
        y = np.empty_like(z)
        self._C.activation_forward(ACTIVATION_CODES[name], param, z, y)
        return y

    def activation_backward(self, name, param, z, y, dy):
        if name == "softmax":
            return self.softmax_backward(y, dy)
        if not self._native(z, y, dy):
            return super().activation_backward(name, param, z, y, dy)
        dz = np.empty_like(dy)
        self._C.activation_backward(ACTIVATION_CODES[name], param,
                                    None if z is None else np.ascontiguousarray(z),
                                    np.ascontiguousarray(y), np.ascontiguousarray(dy), dz)
        return dz

    def softmax_forward(self, z):
        if not self._native(z) or z.ndim != 2:
            return super().softmax_forward(z)
        z = np.ascontiguousarray(z)
        y = np.empty_like(z)
        self._C.softmax_forward(z, y)
        return y

    def softmax_backward(self, y, dy):
        if not self._native(y, dy) or y.ndim != 2:
            return super().softmax_backward(y, dy)
        dz = np.empty_like(dy)
        self._C.softmax_backward(np.ascontiguousarray(y), np.ascontiguousarray(dy), dz)
        return dz

    # ---- losses -------------------------------------------------------------------------
    def softmax_cross_entropy(self, logits, targets, sparse, grad_scale, sample_weight=None):
        if not self._native(logits) or logits.ndim != 2 or sample_weight is not None:
            return super().softmax_cross_entropy(logits, targets, sparse, grad_scale,
                                                 sample_weight)
        logits = np.ascontiguousarray(logits)
        grad = np.empty_like(logits)
        if sparse:
            labels = np.ascontiguousarray(targets, dtype=np.int32)
            loss = self._C.softmax_xent_sparse(logits, labels, grad, grad_scale)
        else:
            loss = self._C.softmax_xent_dense(logits, np.ascontiguousarray(targets, np.float32),
                                              grad, grad_scale)
        return float(loss), grad

    def regression_loss(self, kind, pred, target, grad_scale, delta=1.0, sample_weight=None):
        if not self._native(pred, target) or sample_weight is not None:
            return super().regression_loss(kind, pred, target, grad_scale, delta, sample_weight)
        pred, target = np.ascontiguousarray(pred), np.ascontiguousarray(target)
        grad = np.empty_like(pred)
        if kind == "mse":
            loss = self._C.mse_loss(pred, target, grad, grad_scale)
        elif kind == "mae":
            loss = self._C.mae_loss(pred, target, grad, grad_scale)
        elif kind == "huber":
            loss = self._C.huber_loss(pred, target, grad, delta, grad_scale)
        else:
            raise ValueError(f"unknown regression loss {kind!r}")
        return float(loss), grad

    def binary_cross_entropy(self, pred, target, from_logits, eps, grad_scale,
                             sample_weight=None):
        if not self._native(pred, target) or sample_weight is not None:
            return super().binary_cross_entropy(pred, target, from_logits, eps, grad_scale,
                                                sample_weight)
        pred, target = np.ascontiguousarray(pred), np.ascontiguousarray(target)
        grad = np.empty_like(pred)
        loss = self._C.bce_loss(pred, target, grad, from_logits, eps, grad_scale)
        return float(loss), grad

    # ---- optimizers ---------------------------------------------------------------------
    def sgd_update(self, w, g, velocity, lr, momentum, nesterov):
        if not self._native(w, g, velocity):
            return super().sgd_update(w, g, velocity, lr, momentum, nesterov)
        self._C.sgd_update(w, np.ascontiguousarray(g), velocity, lr, momentum, nesterov)

    def adam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
        if not self._native(w, g, m, v):
            return super().adam_update(w, g, m, v, lr, beta1, beta2, eps, weight_decay, step)
        self._C.adam_update(w, np.ascontiguousarray(g), m, v, lr, beta1, beta2, eps,
                            weight_decay, step)

    def rmsprop_update(self, w, g, velocity, momentum_buf, lr, rho, momentum, eps):
        if not self._native(w, g, velocity, momentum_buf):
            return super().rmsprop_update(w, g, velocity, momentum_buf, lr, rho, momentum, eps)
        self._C.rmsprop_update(w, np.ascontiguousarray(g), velocity, momentum_buf, lr, rho,
                               momentum, eps)

    def adagrad_update(self, w, g, accumulator, lr, eps):
        if not self._native(w, g, accumulator):
            return super().adagrad_update(w, g, accumulator, lr, eps)
        self._C.adagrad_update(w, np.ascontiguousarray(g), accumulator, lr, eps)
