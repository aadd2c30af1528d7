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

    def __reduce__(self):
        # Pickled and deep-copied by name (the reference a layer, a weight or an optimizer's
        # state holds): the instance holds its array module, which does not pickle
        # (copy.deepcopy of a built layer or a trained Adam failed); this process's comes back.
        return (_by_name, (self.name,))

    # ---- arrays -----------------------------------------------------------------------
    def asarray(self, x, dtype):
        """x as a C-contiguous array of this backend with `dtype` (copy only if needed)."""
        raise NotImplementedError

    def to_numpy(self, a):
        """`a` as a numpy array on the host: a copy from a GPU; on the host backends the array
        itself, not a copy (copy it before writing to it)."""
        raise NotImplementedError

    def zeros(self, shape, dtype):
        """A new array of this backend, of `shape` (a tuple) and `dtype`, filled with 0."""
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
        """y = f(z) as a new array of z's shape, f the activation `name` ('relu', 'gelu',
        ..., 'softmax' over the last axis); param: leaky_relu's slope or elu's alpha."""
        raise NotImplementedError

    def activation_backward(self, name, param, z, y, dy):
        """dz = dy * f'(z); y = f(z) is given so most derivatives need not recompute f."""
        raise NotImplementedError

    def softmax_forward(self, z):
        """Softmax of z over its last axis (each row of (batch, classes)), a new array."""
        raise NotImplementedError

    def softmax_backward(self, y, dy):
        """dz from the softmax output y and dy (same shape): y * (dy - sum(dy * y, last
        axis)), a new array."""
        raise NotImplementedError

    # ---- losses: return (sum of losses as a Python float, gradient * grad_scale); with
    # sample_weight (one per row) each row's loss and gradient are scaled by its weight ------
    def softmax_cross_entropy(self, logits, targets, sparse, grad_scale, sample_weight=None):
        """Cross-entropy of softmax(logits) (batch, classes) against targets: integer class
        labels (batch,) when sparse, else probabilities (batch, classes); the gradient is
        with respect to the logits."""
        raise NotImplementedError

    def regression_loss(self, kind, pred, target, grad_scale, delta=1.0, sample_weight=None):
        """Element-wise loss of pred against target (same shape), the gradient with respect
        to pred; kind: 'mse', 'mae' or 'huber' (delta: Huber's)."""
        raise NotImplementedError

    def binary_cross_entropy(self, pred, target, from_logits, eps, grad_scale,
                             sample_weight=None):
        """Element-wise binary cross-entropy of pred (probabilities clipped to [eps, 1 - eps],
        or logits if from_logits) against targets of the same shape; the gradient is with
        respect to pred (0 where the clip holds it), or to the logits."""
        raise NotImplementedError

    # ---- optimizers: update w (and state) in place, return None. g and every slot have w's
    # shape (Adafactor's r and c excepted); lr is the step's learning rate, a float --------
    def sgd_update(self, w, g, velocity, lr, momentum, nesterov):
        """SGD step of w by gradient g (same shape); velocity: the momentum slot (None when
        momentum is 0); nesterov: Nesterov momentum."""
        raise NotImplementedError

    def adam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step, v_hat=None):
        """Adam step of w by g (same shape), bias-corrected; m, v: the moment slots (w's
        shape); step: the update count, from 1; v_hat: AMSGrad's running maximum of v
        (Adam(amsgrad=True)), or None."""
        raise NotImplementedError

    # Nadam, Adamax, Lion and Adadelta apply Keras 3's decoupled weight decay themselves
    # (w -= lr * weight_decay * w before the step), as adam_update does.
    def nadam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
        """Nadam step of w by g; m, v: the moment slots (w's shape); step: the update count,
        from 1."""
        raise NotImplementedError

    def adamax_update(self, w, g, m, u, lr, beta1, beta2, eps, weight_decay, step):
        """Adamax step of w by g; m: the first moment, u: the infinity norm (w's shape);
        step: the update count, from 1."""
        raise NotImplementedError

    def lion_update(self, w, g, m, lr, beta1, beta2, weight_decay):
        """Lion step of w by g (the sign of the interpolated momentum); m: its momentum slot
        (w's shape)."""
        raise NotImplementedError

    def adadelta_update(self, w, g, accumulated_grad, accumulated_delta, lr, rho, eps,
                        weight_decay):
        """Adadelta step of w by g; accumulated_grad, accumulated_delta: the running means of
        squared gradients and of squared steps (w's shape)."""
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
        """RMSprop step of w by g; velocity: the moving mean square of g (w's shape);
        momentum_buf: the momentum slot (None when momentum is 0)."""
        raise NotImplementedError

    def rmsprop_centered_update(self, w, g, velocity, average_gradient, momentum_buf, lr,
                                rho, momentum, eps):
        """RMSprop(centered=True): array operations on every backend."""
        raise NotImplementedError

    def adagrad_update(self, w, g, accumulator, lr, eps):
        """Adagrad step of w by g; accumulator: the sum of squared gradients (w's shape)."""
        raise NotImplementedError

    def __repr__(self):
        return f"<pynn backend {self.name!r}>"


def _by_name(name):
    from . import get_backend

    return get_backend(name)

