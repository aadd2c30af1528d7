"""The backend contract: the only operations layers, losses and optimizers may call.

Every backend implements the same methods on its own arrays (numpy arrays for `numpy` and
`cpu`, CuPy arrays for `cupy` and `cuda`). Shapes follow the row-major convention of Keras:
activations are (batch, features), a Dense kernel is (in, out). Methods that take `out=`
write into it and return it; the others return new arrays. A new backend is one new file.
"""

from __future__ import annotations


class Backend:
    """Base class. `name` identifies the backend; `xp` is its array module."""

    name = "abstract"
    xp = None
    supports_float64 = False

    # ---- arrays -----------------------------------------------------------------------
    def asarray(self, x, dtype):
        """x as a C-contiguous array of this backend with `dtype` (copy only if needed)."""
        raise NotImplementedError

    def to_numpy(self, a):
        raise NotImplementedError

    def zeros(self, shape, dtype):
        raise NotImplementedError

    def dropout_mask(self, shape, rate, dtype, seed, step):
        """Inverted-dropout mask: 0 with probability rate, else 1 / (1 - rate). A pure function
        of (seed, step, shape): every backend returns the same mask (csrc/math/dropout.h)."""
        raise NotImplementedError

    def take_rows(self, a, index):
        """a[index] for an integer index array (gathers one mini-batch)."""
        raise NotImplementedError

    # ---- dense algebra ----------------------------------------------------------------
    def gemm(self, a, b, trans_a=False, trans_b=False, bias=None, activation="linear",
             act_param=0.0, alpha=1.0, beta=0.0, out=None):
        """activation(alpha * op(a) @ op(b) + beta * out + bias)."""
        raise NotImplementedError

    def bias_grad(self, dz):
        """Column sums of a 2-D array: the gradient of a bias added to every row."""
        raise NotImplementedError

    # ---- activations ------------------------------------------------------------------
    def activation_forward(self, name, z, param=0.0):
        raise NotImplementedError

    def activation_backward(self, name, param, z, y, dy):
        """dz = dy * f'(z); y = f(z) is given so most derivatives need not recompute f."""
        raise NotImplementedError

    def softmax_forward(self, z):
        raise NotImplementedError

    def softmax_backward(self, y, dy):
        raise NotImplementedError

    # ---- losses: return (sum of losses as a Python float, gradient * grad_scale); with
    # sample_weight (one per row) each row's loss and gradient are scaled by its weight ------
    def softmax_cross_entropy(self, logits, targets, sparse, grad_scale, sample_weight=None):
        raise NotImplementedError

    def regression_loss(self, kind, pred, target, grad_scale, delta=1.0, sample_weight=None):
        """kind: 'mse', 'mae' or 'huber'."""
        raise NotImplementedError

    def binary_cross_entropy(self, pred, target, from_logits, eps, grad_scale,
                             sample_weight=None):
        raise NotImplementedError

    # ---- optimizers: update w (and state) in place -----------------------------------------
    def sgd_update(self, w, g, velocity, lr, momentum, nesterov):
        raise NotImplementedError

    def adam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step, v_hat=None):
        """v_hat: AMSGrad's running maximum of v (Adam(amsgrad=True)), or None."""
        raise NotImplementedError

    # Nadam, Adamax, Lion and Adadelta apply Keras 3's decoupled weight decay themselves
    # (w -= lr * weight_decay * w before the step), as adam_update does.
    def nadam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
        raise NotImplementedError

    def adamax_update(self, w, g, m, u, lr, beta1, beta2, eps, weight_decay, step):
        raise NotImplementedError

    def lion_update(self, w, g, m, lr, beta1, beta2, weight_decay):
        raise NotImplementedError

    def adadelta_update(self, w, g, accumulated_grad, accumulated_delta, lr, rho, eps,
                        weight_decay):
        raise NotImplementedError

    def lamb_update(self, w, g, m, v, lr, beta1, beta2, eps, step):
        """Lamb (per-tensor trust ratio): array operations on every backend (two norms per
        tensor make it more than one element-wise pass)."""
        raise NotImplementedError

    def ftrl_update(self, w, g, accumulator, linear, lr, lr_power, l1, l2, l2_shrinkage,
                    beta):
        """Ftrl (follow the regularized leader): array operations on every backend."""
        raise NotImplementedError

    def adafactor_update(self, w, g, r, c, v, lr, step, beta_2_decay, eps1, eps2,
                         clip_threshold):
        """Adafactor (factored second moments, steps relative to the weights' size): array
        operations on every backend (means over rows and columns, two norms per tensor)."""
        raise NotImplementedError

    def rmsprop_update(self, w, g, velocity, momentum_buf, lr, rho, momentum, eps):
        raise NotImplementedError

    def rmsprop_centered_update(self, w, g, velocity, average_gradient, momentum_buf, lr,
                                rho, momentum, eps):
        """RMSprop(centered=True): array operations on every backend."""
        raise NotImplementedError

    def adagrad_update(self, w, g, accumulator, lr, eps):
        raise NotImplementedError

    def __repr__(self):
        return f"<pynn backend {self.name!r}>"
