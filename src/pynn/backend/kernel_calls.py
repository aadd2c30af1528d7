"""The backend methods that hand arrays to a compiled kernel module, written once for the
`cpu` backend (pynn._C on numpy arrays) and the `cuda` backend (pynn._cuda on CuPy arrays):
both modules take the same arguments in the same order, the CUDA one a trailing stream.

A mixin: a backend lists it before its array backend (NumpyBackend or CupyBackend), sets
`_kernels` to the module, and may override `_launch_args` (extra trailing arguments),
`_native` (which arrays the kernels take) and `_native_update` (which parameters the
optimizer kernels update in place). Anything the kernels do not take (other dtypes, sample
weights, ...) falls through to the array backend's reference code.
"""

from __future__ import annotations

import numpy as np

from .numpy_backend import c_array, class_indices

# Codes of csrc/include/pynn/common.h's Activation enum (as many as pynn._C.activation_count).
ACTIVATION_CODES = {"linear": 0, "relu": 1, "leaky_relu": 2, "elu": 3, "gelu_tanh": 4,
                    "sigmoid": 5, "tanh": 6, "silu": 7, "softplus": 8, "softsign": 9,
                    "selu": 10, "relu6": 11, "hard_sigmoid": 12, "hard_silu": 13, "mish": 14,
                    "gelu": 15, "exponential": 16}


_FLOAT32 = np.dtype(np.float32)


def activation_code(name):
    """The kernels' code for an element-wise activation (an unknown name refused as the numpy
    backend refuses it: ValueError, not a KeyError)."""
    code = ACTIVATION_CODES.get(name)
    if code is None:
        raise ValueError(f"unknown activation {name!r}")
    return code


class KernelCalls:
    _kernels = None

    def _launch_args(self):
        """Arguments appended to every kernel call (the CUDA stream); none by default."""
        return ()

    def _call(self, name, *args):
        return getattr(self._kernels, name)(*args, *self._launch_args())

    def _native(self, *arrays):
        """True when every array is float32 (the kernels' type)."""
        for a in arrays:  # (a loop, not all() over a generator: called ~30 times a step)
            if a is not None and a.dtype != _FLOAT32:
                return False
        return True

    def _native_update(self, w, *arrays):
        """True when the optimizer kernels can update w in place with these arrays."""
        return self._native(w, *arrays)

    def _c(self, a, dtype=None):
        """c_array(a), of a's shape: numpy's ascontiguousarray makes a 0-d array 1-d."""
        c = c_array(self.xp, a, dtype)
        return c if c.ndim == a.ndim else c.reshape(a.shape)

    # ---- reductions and activations ------------------------------------------------------
    def bias_grad(self, dz):
        if not self._native(dz) or dz.ndim != 2:
            return super().bias_grad(dz)
        out = self.xp.empty(dz.shape[1], dtype=np.float32)
        self._call("bias_grad", self._c(dz), out)
        return out

    def activation_forward(self, name, z, param=0.0):
        if name == "softmax":
            return self.softmax_forward(z)
        if not self._native(z):
            return super().activation_forward(name, z, param)
        z = self._c(z)
        y = self.xp.empty_like(z)
        self._call("activation_forward", activation_code(name), param, z, y)
        return y

    def activation_backward(self, name, param, z, y, dy):
        if name == "softmax":
            return self.softmax_backward(y, dy)
        if not self._native(z, y, dy):
            return super().activation_backward(name, param, z, y, dy)
        dz = self.xp.empty(dy.shape, dtype=np.float32)
        self._call("activation_backward", activation_code(name), param,
                   None if z is None else self._c(z), self._c(y), self._c(dy), dz)
        return dz

    def softmax_forward(self, z):
        if not self._native(z) or z.ndim != 2:
            return super().softmax_forward(z)
        z = self._c(z)
        y = self.xp.empty_like(z)
        self._call("softmax_forward", z, y)
        return y

    def softmax_backward(self, y, dy):
        if not self._native(y, dy) or y.ndim != 2:
            return super().softmax_backward(y, dy)
        dz = self.xp.empty(dy.shape, dtype=np.float32)
        self._call("softmax_backward", self._c(y), self._c(dy), dz)
        return dz

    # ---- losses -------------------------------------------------------------------------
    def softmax_cross_entropy(self, logits, targets, sparse, grad_scale, sample_weight=None):
        if not self._native(logits) or logits.ndim != 2 or sample_weight is not None:
            return super().softmax_cross_entropy(logits, targets, sparse, grad_scale,
                                                 sample_weight)
        xp = self.xp
        logits = self._c(logits)
        grad = xp.empty_like(logits)
        targets = xp.asarray(targets)
        if sparse:  # (the kernels check int32 labels' range themselves)
            labels = class_indices(xp, targets, logits.shape[1], host=False)
            loss = self._call("softmax_xent_sparse", logits, self._c(labels, np.int32), grad,
                              grad_scale)
        else:
            loss = self._call("softmax_xent_dense", logits, self._c(targets, np.float32), grad,
                              grad_scale)
        return float(loss), grad

    def regression_loss(self, kind, pred, target, grad_scale, delta=1.0, sample_weight=None):
        if not self._native(pred, target) or sample_weight is not None:
            return super().regression_loss(kind, pred, target, grad_scale, delta, sample_weight)
        if kind not in ("mse", "mae", "huber"):
            raise ValueError(f"unknown regression loss {kind!r}")
        pred, target = self._c(pred), self._c(target)
        grad = self.xp.empty_like(pred)
        return float(self._regression(kind, pred, target, grad, delta, grad_scale)), grad

    def _regression(self, kind, pred, target, grad, delta, grad_scale):
        """The loss sum of kind 'mse', 'mae' or 'huber', writing grad (module-specific)."""
        raise NotImplementedError

    def binary_cross_entropy(self, pred, target, from_logits, eps, grad_scale,
                             sample_weight=None):
        if not self._native(pred, target) or sample_weight is not None:
            return super().binary_cross_entropy(pred, target, from_logits, eps, grad_scale,
                                                sample_weight)
        pred, target = self._c(pred), self._c(target)
        grad = self.xp.empty_like(pred)
        loss = self._call("bce_loss", pred, target, grad, from_logits, eps, grad_scale)
        return float(loss), grad

    # ---- optimizers ---------------------------------------------------------------------
    def sgd_update(self, w, g, velocity, lr, momentum, nesterov):
        if not self._native_update(w, g, velocity):
            return super().sgd_update(w, g, velocity, lr, momentum, nesterov)
        self._call("sgd_update", w, self._c(g), velocity, lr, momentum, nesterov)

    def adam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step, v_hat=None):
        if not self._native_update(w, g, m, v, *([] if v_hat is None else [v_hat])):
            return super().adam_update(w, g, m, v, lr, beta1, beta2, eps, weight_decay, step,
                                       v_hat)
        self._call("adam_update", w, self._c(g), m, v, lr, beta1, beta2, eps, weight_decay, step,
                   v_hat)

    def nadam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
        if not self._native_update(w, g, m, v):
            return super().nadam_update(w, g, m, v, lr, beta1, beta2, eps, weight_decay, step)
        self._call("nadam_update", w, self._c(g), m, v, lr, beta1, beta2, eps, weight_decay,
                   step)

    def adamax_update(self, w, g, m, u, lr, beta1, beta2, eps, weight_decay, step):
        if not self._native_update(w, g, m, u):
            return super().adamax_update(w, g, m, u, lr, beta1, beta2, eps, weight_decay, step)
        self._call("adamax_update", w, self._c(g), m, u, lr, beta1, beta2, eps, weight_decay,
                   step)

    def lion_update(self, w, g, m, lr, beta1, beta2, weight_decay):
        if not self._native_update(w, g, m):
            return super().lion_update(w, g, m, lr, beta1, beta2, weight_decay)
        self._call("lion_update", w, self._c(g), m, lr, beta1, beta2, weight_decay)

    def adadelta_update(self, w, g, accumulated_grad, accumulated_delta, lr, rho, eps,
                        weight_decay):
        if not self._native_update(w, g, accumulated_grad, accumulated_delta):
            return super().adadelta_update(w, g, accumulated_grad, accumulated_delta, lr, rho,
                                           eps, weight_decay)
        self._call("adadelta_update", w, self._c(g), accumulated_grad, accumulated_delta, lr,
                   rho, eps, weight_decay)

    def rmsprop_update(self, w, g, velocity, momentum_buf, lr, rho, momentum, eps):
        if not self._native_update(w, g, velocity, momentum_buf):
            return super().rmsprop_update(w, g, velocity, momentum_buf, lr, rho, momentum, eps)
        self._call("rmsprop_update", w, self._c(g), velocity, momentum_buf, lr, rho, momentum,
                   eps)

    def adagrad_update(self, w, g, accumulator, lr, eps):
        if not self._native_update(w, g, accumulator):
            return super().adagrad_update(w, g, accumulator, lr, eps)
        self._call("adagrad_update", w, self._c(g), accumulator, lr, eps)
