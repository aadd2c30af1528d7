"""The reference backend: plain NumPy, float32 or float64, written to be obviously correct.

Every fast kernel (C++, CUDA) is tested against these functions. The formulas are Keras 3's;
keep them simple and readable rather than fast. `xp` is a parameter so the CuPy fallback can
reuse the same code on the GPU.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .base import Backend

_GELU_C = math.sqrt(2.0 / math.pi)
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805  # Keras' and PyTorch's
_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15


def _splitmix64_mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def splitmix64(state):
    """(next state, output) of one splitmix64 step: the C++ seeding of xoshiro256**
    (csrc/cpu/engine.cpp) and of dropout keys."""
    state = (state + _GOLDEN64) & _MASK64
    return state, _splitmix64_mix(state)


def dropout_key(seed, step):
    """The 64-bit key of one (seed, step): csrc/math/dropout.h's dropout_key."""
    return splitmix64(seed ^ ((step * _GOLDEN64) & _MASK64))[1]


def _fmix32(h, xp):
    h = h ^ (h >> xp.uint32(16))
    h = h * xp.uint32(0x85EBCA6B)
    h = h ^ (h >> xp.uint32(13))
    h = h * xp.uint32(0xC2B2AE35)
    return h ^ (h >> xp.uint32(16))


class NumpyBackend(Backend):
    name = "numpy"
    supports_float64 = True

    def __init__(self, xp=np):
        self.xp = xp

    # ---- arrays -------------------------------------------------------------------------
    def asarray(self, x, dtype):
        return c_array(self.xp, self.xp.asarray(x, dtype=dtype))  # (the cpu backend's too)

    def to_numpy(self, a):
        return np.asarray(a)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def take_rows(self, a, index):
        return a[index]

    def dropout_mask(self, shape, rate, dtype, seed, step):
        # csrc/math/dropout.h vectorised: 32-bit hashes of the element index under a key per
        # (seed, step); kept where the hash reaches ceil(rate * 2^32). uint32 products wrap.
        check_dropout(rate, seed, step)
        xp = self.xp
        dtype = np.dtype(dtype)
        key = dropout_key(int(seed), int(step))
        n = math.prod(shape)
        if n > 0xFFFFFFFF:
            raise ValueError(f"dropout: a mask covers at most 2^32 - 1 elements, got {n}")
        i = xp.arange(n, dtype=xp.uint32)
        h = _fmix32(i * xp.uint32(0x9E3779B9) + xp.uint32(key & 0xFFFFFFFF), xp)
        h = _fmix32(h ^ xp.uint32(key >> 32), xp)
        keep = h.astype(xp.uint64) >= math.ceil(rate * 2.0**32)
        scale = dtype.type(1) / dtype.type(1 - rate)
        return xp.where(keep, scale, dtype.type(0)).astype(dtype).reshape(shape)

    # ---- dense algebra ------------------------------------------------------------------
    def gemm(self, a, b, trans_a=False, trans_b=False, bias=None, activation="linear",
             act_param=0.0, alpha=1.0, beta=0.0, out=None):
        opa = a.T if trans_a else a
        opb = b.T if trans_b else b
        if opa.shape[1] != opb.shape[0]:
            raise ValueError(f"gemm: inner dimensions differ: op(a) is {opa.shape}, "
                             f"op(b) is {opb.shape}")
        z = opa @ opb
        if alpha != 1.0:
            z = z * alpha
        if beta != 0.0:
            if out is None:
                raise ValueError("gemm: beta != 0 needs out=")
            z = z + beta * out
        if bias is not None:
            z = z + bias
        y = self.activation_forward(activation, z, act_param) if activation != "linear" else z
        if out is not None:
            out[...] = y
            return out
        return self.xp.ascontiguousarray(y, dtype=np.result_type(a, b))

    def bias_grad(self, dz):
        return dz.sum(axis=0)

    # ---- activations --------------------------------------------------------------------
    def activation_forward(self, name, z, param=0.0):
        xp = self.xp
        if name == "linear":
            return z.copy()
        if name == "relu":
            return xp.maximum(z, 0).astype(z.dtype, copy=False)
        if name == "leaky_relu":
            return xp.where(z > 0, z, z * param).astype(z.dtype, copy=False)
        if name == "elu":
            return xp.where(z > 0, z, param * xp.expm1(xp.minimum(z, 0))).astype(z.dtype, copy=False)
        if name == "gelu":  # z Phi(z), Phi(z) = erfc(-z / sqrt 2) / 2 (no cancellation for z << 0)
            return (z * (0.5 * _erfc(xp, -z * _SQRT_HALF))).astype(z.dtype, copy=False)
        if name == "gelu_tanh":
            # (1 + tanh(u)) / 2 as sigmoid(2u): 1 + tanh lost every bit for z < -5. Clipped
            # where it is exact (sigmoid(2u) is 1 to float64 above 10 and 0 below -30);
            # z**3 overflowed with a warning
            zc = xp.clip(z, -30, 10)
            inner = _GELU_C * (zc + 0.044715 * zc ** 3)
            return (z * _sigmoid(xp, 2 * inner)).astype(z.dtype, copy=False)
        if name == "sigmoid":
            return _sigmoid(xp, z)
        if name == "tanh":
            return xp.tanh(z)
        if name == "softmax":
            return self.softmax_forward(z)
        if name == "silu":
            return z * _sigmoid(xp, z)
        if name == "softplus":
            return _softplus(xp, z)
        if name == "softsign":
            return z / (1 + xp.abs(z))
        if name == "selu":
            return xp.where(z > 0, _SELU_SCALE * z,
                            (_SELU_SCALE * _SELU_ALPHA) * xp.expm1(xp.minimum(z, 0))
                            ).astype(z.dtype, copy=False)
        if name == "relu6":
            return xp.minimum(xp.maximum(z, 0), 6).astype(z.dtype, copy=False)
        if name == "hard_sigmoid":
            return _hard_sigmoid(xp, z)
        if name == "hard_silu":
            return z * _hard_sigmoid(xp, z)
        if name == "mish":
            return z * _mish_parts(xp, z)[0]
        if name == "exponential":
            with np.errstate(over="ignore"):  # (inf beyond the dtype's range, as exp's)
                return xp.exp(z)
        raise ValueError(f"unknown activation {name!r}")

    def activation_backward(self, name, param, z, y, dy):
        xp = self.xp
        same_shape(z if y is None else y, dy, ("z" if y is None else "y", "dy"))
        if name == "linear":
            return dy.copy()
        if name == "relu":
            return dy * (y > 0)
        if name == "leaky_relu":
            return dy * xp.where(y > 0, 1, param).astype(dy.dtype, copy=False)
        if name == "elu":
            return dy * xp.where(y > 0, 1, y + param).astype(dy.dtype, copy=False)
        if name == "gelu":  # Phi(z) + z phi(z): 1 and 0 beyond |z| = 10 (as the kernels; z phi(z)
            zc = xp.clip(z, -10, 10)  # < 1e-21 there, and z*z overflows)
            d = 0.5 * _erfc(xp, -zc * _SQRT_HALF) + zc * (_INV_SQRT_2PI * xp.exp(-0.5 * zc * zc))
            d = xp.where(z > 10, 1, xp.where(z < -10, 0, d))
            return (dy * d).astype(dy.dtype, copy=False)
        if name == "gelu_tanh":
            z = xp.clip(z, -30, 10)  # exact (as the forward's); z*z overflowed into NaN
            z2 = z * z
            # (1 + t) / 2 = sigmoid(2u) and 1 - t^2 = 4 s (1 - s): no cancellation for z << 0
            u2 = 2 * _GELU_C * (z + 0.044715 * z2 * z)
            s = _sigmoid(xp, u2)
            d = s + 2 * z * s * _sigmoid(xp, -u2) * _GELU_C * (1 + 3 * 0.044715 * z2)
            return (dy * d).astype(dy.dtype, copy=False)
        if name == "sigmoid":
            return dy * y * (1 - y)
        if name == "tanh":
            return dy * (1 - y * y)
        if name == "softmax":
            return self.softmax_backward(y, dy)
        if name == "silu":
            e = xp.exp(-xp.abs(z))  # both sigmoids from one exp: 1 - sigmoid lost bits
            q = 1 / (1 + e)
            return dy * (xp.where(z >= 0, q, e * q) + z * (e * q * q))
        if name == "softplus":
            return dy * -xp.expm1(-y)  # sigmoid(z) = 1 - exp(-softplus(z))
        if name == "softsign":
            return dy * (1 - xp.abs(y)) ** 2  # 1 / (1 + |z|)^2
        if name == "selu":
            return dy * xp.where(y > 0, _SELU_SCALE, y + _SELU_SCALE * _SELU_ALPHA
                                 ).astype(dy.dtype, copy=False)
        if name == "relu6":
            return dy * ((y > 0) & (y < 6))
        if name == "hard_sigmoid":
            return dy * xp.where((y > 0) & (y < 1), 1 / 6, 0).astype(dy.dtype, copy=False)
        if name == "hard_silu":  # Keras 3's values at the kinks: 0 at -3, 1 at 3
            d = xp.where(z <= -3, 0, xp.where(z >= 3, 1, z * (1 / 3) + 0.5))
            return (dy * d).astype(dy.dtype, copy=False)
        if name == "mish":
            t, one_minus_t2, sig = _mish_parts(xp, z)
            return dy * (t + z * one_minus_t2 * sig)
        if name == "exponential":
            return dy * y
        raise ValueError(f"unknown activation {name!r}")

    def softmax_forward(self, z):
        if z.shape[-1] == 0:  # nothing to normalise (max has no identity), as the kernels
            return self.xp.empty_like(z)
        e = self.xp.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def softmax_backward(self, y, dy):
        same_shape(y, dy, ("y", "dy"))
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))

    # ---- losses -------------------------------------------------------------------------
    def softmax_cross_entropy(self, logits, targets, sparse, grad_scale, sample_weight=None):
        loss, grad = self.softmax_cross_entropy_elements(logits, targets, sparse)
        return _weighted(loss, grad, sample_weight, grad_scale, logits.dtype)

    def softmax_cross_entropy_elements(self, logits, targets, sparse):
        """(the loss of each row, float64; its unscaled gradient, float64): the reference's
        terms, which softmax_cross_entropy weighs and sums (a loss's reduction='none' reads
        them)."""
        xp = self.xp
        # in float64 (the reference): float32 logits 4e38 apart shifted to -inf, and a zero
        # target times log(0) made the loss NaN, where the kernels' is finite
        logits = logits.astype(xp.float64) if logits.dtype.itemsize < 8 else logits
        shifted = logits - logits.max(axis=-1, keepdims=True)
        lse = xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
        log_p = shifted - lse  # log-softmax: never log(0)
        p = xp.exp(log_p)
        if sparse:
            targets = class_indices(xp, targets, logits.shape[1], host=xp is np)
            if targets.shape != logits.shape[:1]:  # (an (N, 1) column broadcast to N x N)
                raise ValueError(f"labels: expected shape {tuple(logits.shape[:1])} (one per "
                                 f"row of logits), got {tuple(targets.shape)}")
            rows = xp.arange(logits.shape[0])
            loss = -log_p[rows, targets]
            grad = p
            grad[rows, targets] -= 1
        else:
            same_shape(logits, targets, ("logits", "targets"))
            loss = -(targets * log_p).sum(axis=-1)
            grad = p * targets.sum(axis=-1, keepdims=True) - targets
        return loss, grad

    def regression_loss(self, kind, pred, target, grad_scale, delta=1.0, sample_weight=None):
        loss, grad = self.regression_elements(kind, pred, target, delta)
        return _weighted(loss, grad, sample_weight, grad_scale, pred.dtype)

    def regression_elements(self, kind, pred, target, delta=1.0):
        """(the loss of each element, float64; its unscaled gradient) of regression_loss."""
        xp = self.xp
        same_shape(pred, target)
        d = pred - target
        d64 = d.astype(xp.float64)  # the losses in float64, as the kernels add them up:
        # (2.5e19)^2 is inf in float32
        if kind == "mse":
            return d64 * d64, 2 * d
        if kind == "mae":
            return xp.abs(d64), xp.sign(d)
        if kind == "huber":
            a = xp.abs(d64)
            small = a <= delta
            return (xp.where(small, 0.5 * d64 * d64, delta * (a - 0.5 * delta)),
                    xp.where(small, d, delta * xp.sign(d)))
        raise ValueError(f"unknown regression loss {kind!r}")

    def binary_cross_entropy(self, pred, target, from_logits, eps, grad_scale,
                             sample_weight=None):
        loss, grad = self.binary_cross_entropy_elements(pred, target, from_logits, eps)
        return _weighted(loss, grad, sample_weight, grad_scale, pred.dtype)

    def binary_cross_entropy_elements(self, pred, target, from_logits, eps):
        """(the loss of each element; its unscaled gradient) of binary_cross_entropy."""
        xp = self.xp
        same_shape(pred, target)
        if from_logits:
            x = pred
            loss = xp.maximum(x, 0) - x * target + xp.log1p(xp.exp(-xp.abs(x)))
            return loss, _sigmoid(xp, x) - target
        pc = xp.clip(pred, eps, 1 - eps)
        loss = -(target * xp.log(pc) + (1 - target) * xp.log(1 - pc))
        inside = (pred > eps) & (pred < 1 - eps)
        return loss, xp.where(inside, (pc - target) / (pc * (1 - pc)), 0)

    # ---- optimizers (Keras 3 formulas) ---------------------------------------------------
    def sgd_update(self, w, g, velocity, lr, momentum, nesterov):
        same_shapes(w, g=g, velocity=velocity)
        if momentum == 0:
            w -= lr * g
            return
        velocity *= momentum
        velocity -= lr * g
        if nesterov:
            w += momentum * velocity - lr * g
        else:
            w += velocity

    def adam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step, v_hat=None):
        same_shapes(w, g=g, m=m, v=v)
        xp = self.xp
        if weight_decay:
            w -= lr * weight_decay * w
        lr_t = lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
        m += (g - m) * (1 - beta1)
        v += (g * g - v) * (1 - beta2)
        if v_hat is not None:  # AMSGrad
            xp.maximum(v_hat, v, out=v_hat)
        w -= lr_t * m / (xp.sqrt(v if v_hat is None else v_hat) + eps)

    def nadam_update(self, w, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
        same_shapes(w, g=g, m=m, v=v)
        # Keras 3's Nadam: momentum schedule mu_i = b1 (1 - 0.5 * 0.96^i), its product over
        # the steps so far, bias-corrected second moment
        if weight_decay:
            w -= lr * weight_decay * w

        def mu(i):
            return beta1 * (1 - 0.5 * 0.96 ** i)
        product = beta1 ** step * _nadam_schedule_product(min(step, 900))
        m += (g - m) * (1 - beta1)
        v += (g * g - v) * (1 - beta2)
        m_hat = (mu(step + 1) * m / (1 - product * mu(step + 1))
                 + (1 - mu(step)) * g / (1 - product))
        w -= lr * m_hat / (self.xp.sqrt(v / (1 - beta2 ** step)) + eps)

    def adamax_update(self, w, g, m, u, lr, beta1, beta2, eps, weight_decay, step):
        same_shapes(w, g=g, m=m, u=u)
        xp = self.xp
        if weight_decay:
            w -= lr * weight_decay * w
        m += (g - m) * (1 - beta1)
        xp.maximum(beta2 * u, xp.abs(g), out=u)
        w -= lr * m / ((1 - beta1 ** step) * (u + eps))

    def lion_update(self, w, g, m, lr, beta1, beta2, weight_decay):
        same_shapes(w, g=g, m=m)
        if weight_decay:
            w -= lr * weight_decay * w
        w -= lr * self.xp.sign(beta1 * m + (1 - beta1) * g)
        m *= beta2
        m += (1 - beta2) * g

    def lamb_update(self, w, g, m, v, lr, beta1, beta2, eps, step):
        same_shapes(w, g=g, m=m, v=v)
        # Keras 3's Lamb: Adam's bias-corrected step, scaled by ||w|| / ||step|| (1 when
        # either norm is 0); the norms summed in float64
        xp = self.xp
        m += (g - m) * (1 - beta1)
        v += (g * g - v) * (1 - beta2)
        update = (m / (1 - beta1 ** step)) / (xp.sqrt(v / (1 - beta2 ** step)) + eps)
        w_norm = math.sqrt(float((w.astype(np.float64) ** 2).sum()))
        u_norm = math.sqrt(float((update.astype(np.float64) ** 2).sum()))
        ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        w -= (ratio * lr) * update

    def ftrl_update(self, w, g, accumulator, linear, lr, lr_power, l1, l2, l2_shrinkage,
                    beta):
        same_shapes(w, g=g, accumulator=accumulator, linear=linear)
        # Keras 3's Ftrl step for step: the weights are a function of `linear` (0 where the
        # L1 strength exceeds it), not an increment
        l2 = l2 + beta / (2.0 * lr)
        new_accumulator = accumulator + g * g
        linear += (g + (2 * l2_shrinkage) * w) - (
            (new_accumulator ** -lr_power - accumulator ** -lr_power) / lr) * w
        quadratic = new_accumulator ** -lr_power / lr + 2 * l2
        w[...] = (self.xp.clip(linear, -l1, l1) - linear) / quadratic
        accumulator[...] = new_accumulator

    def adafactor_update(self, w, g, r, c, v, lr, step, beta_2_decay, eps1, eps2,
                         clip_threshold):
        same_shapes(w, g=g, v=v)
        # Keras 3's Adafactor: a matrix's second moments kept as row and column means (v is
        # their outer product); smaller tensors keep v itself. The two norms in float64.
        def rms(a):
            return math.sqrt(float((a.astype(np.float64) ** 2).mean())) if a.size else 0.0

        rho = min(lr, 1 / math.sqrt(step))
        alpha = max(eps2, rms(w)) * rho
        squares = g * g + w.dtype.type(eps1)
        decay = 1 - float(step) ** beta_2_decay
        if w.ndim >= 2:
            r *= decay
            r += (1 - decay) * squares.mean(axis=-1)
            c *= decay
            c += (1 - decay) * squares.mean(axis=-2)
            v[...] = (r / r.mean(axis=-1, keepdims=True))[..., None] * c[..., None, :]
        else:
            v *= decay
            v += (1 - decay) * squares
        u = g / self.xp.sqrt(v)
        w -= (alpha / max(1.0, rms(u) / clip_threshold)) * u

    def adadelta_update(self, w, g, accumulated_grad, accumulated_delta, lr, rho, eps,
                        weight_decay):
        same_shapes(w, g=g, accumulated_grad=accumulated_grad,
                    accumulated_delta=accumulated_delta)
        xp = self.xp
        if weight_decay:
            w -= lr * weight_decay * w
        accumulated_grad *= rho
        accumulated_grad += (1 - rho) * g * g
        delta = xp.sqrt(accumulated_delta + eps) * g / xp.sqrt(accumulated_grad + eps)
        accumulated_delta *= rho
        accumulated_delta += (1 - rho) * delta * delta
        w -= lr * delta

    def rmsprop_update(self, w, g, velocity, momentum_buf, lr, rho, momentum, eps):
        same_shapes(w, g=g, velocity=velocity, momentum_buf=momentum_buf)
        self._rmsprop(w, g, velocity, None, momentum_buf, lr, rho, momentum, eps)

    def rmsprop_centered_update(self, w, g, velocity, average_gradient, momentum_buf, lr,
                                rho, momentum, eps):
        same_shapes(w, g=g, velocity=velocity, average_gradient=average_gradient,
                    momentum_buf=momentum_buf)
        self._rmsprop(w, g, velocity, average_gradient, momentum_buf, lr, rho, momentum, eps)

    def _rmsprop(self, w, g, velocity, average_gradient, momentum_buf, lr, rho, momentum,
                 eps):
        """Keras 3's RMSprop; centered (with average_gradient): the moving mean square less
        the square of the moving mean (the gradients' variance) under the root."""
        velocity *= rho
        velocity += (1 - rho) * g * g
        if average_gradient is None:
            denominator = velocity + eps
        else:
            average_gradient *= rho
            average_gradient += (1 - rho) * g
            denominator = velocity - average_gradient * average_gradient + eps
        increment = lr * g / self.xp.sqrt(denominator)
        if momentum > 0:
            momentum_buf *= momentum
            momentum_buf += increment
            w -= momentum_buf
        else:
            w -= increment

    def adagrad_update(self, w, g, accumulator, lr, eps):
        same_shapes(w, g=g, accumulator=accumulator)
        accumulator += g * g
        w -= lr * g / self.xp.sqrt(accumulator + eps)


@functools.lru_cache(maxsize=None)
def _nadam_schedule_product(step):
    """prod over i <= step of (1 - 0.5 * 0.96^i), Nadam's momentum schedule without its
    beta_1 factors; beyond i = 900 the factors are 1.0 in float64 (callers pass
    min(step, 900): at most 901 entries)."""
    return math.prod(1 - 0.5 * 0.96 ** i for i in range(1, min(step, 900) + 1))


def _weighted(loss, grad, sample_weight, grad_scale, dtype):
    """(sum of losses, gradient * grad_scale), each sample's row scaled by its weight."""
    if sample_weight is not None:
        w = sample_weight.reshape((-1,) + (1,) * (loss.ndim - 1))
        loss = loss * w
        grad = grad * w.reshape((-1,) + (1,) * (grad.ndim - 1))
    # summed in float64, as the kernels sum (a float32 sum of finite losses could overflow)
    return float(loss.sum(dtype=np.float64)), (grad * grad_scale).astype(dtype, copy=False)


def _erfc(xp, x):
    """erfc(x), exact to the float type: SciPy's (CuPy's on the GPU) where installed, else
    math.erfc element by element (NumPy has no erf; slower, for the reference backend's
    gelu without SciPy)."""
    if xp is not np:
        try:
            from cupyx.scipy.special import erfc
        except ImportError:  # (a CuPy without its SciPy part: through the host)
            return xp.asarray(_erfc(np, xp.asnumpy(x)), dtype=x.dtype)
        return erfc(x)
    try:
        from scipy.special import erfc
    except ImportError:
        return np.vectorize(math.erfc, otypes=[np.float64])(x).astype(x.dtype, copy=False)
    return erfc(x)


def _sigmoid(xp, z):
    # exp of non-positive numbers only, so nothing overflows.
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _softplus(xp, z):
    # log(1 + exp(z)) with exp of non-positive numbers only.
    return xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))


def _mish_parts(xp, z):
    # tanh(softplus(z)), 1 - its square and sigmoid(z) from e = exp(-|z|), as the C++ kernel
    # (csrc/math/activations.h): 1 - tanh^2 as a difference lost 1e-6 near z = 10.
    e = xp.exp(-xp.abs(z))
    neg = z <= 0
    n = xp.where(neg, e * (e + 2), 1 + 2 * e)
    d = xp.where(neg, n + 2, n + 2 * (e * e))
    g = 2 * e * (1 + e) / d
    one_minus_t2 = xp.where(neg, 4 * (n + 1) / (d * d), g * g)
    return n / d, one_minus_t2, xp.where(neg, e, 1) / (1 + e)


def _hard_sigmoid(xp, z):
    # Keras 3's relu6(z + 3) / 6: z + 3 is exact near -3, where z / 6 + 1/2 cancelled.
    return xp.clip(z + 3, 0, 6) / 6


def check_dropout(rate, seed, step):
    """A mask's arguments, refused as the C++ kernels refuse them (a rate of 1 divided by 0;
    negative seeds wrapped)."""
    if not 0 <= rate < 1:
        raise ValueError(f"rate: expected a dropout rate in [0, 1), got {rate!r}")
    for name, value in (("seed", seed), ("step", step)):
        if not 0 <= value < 2**64:
            raise ValueError(f"{name}: expected an integer in [0, 2**64), got {value!r}")


def c_array(xp, a, dtype=None):
    """a C-contiguous and aligned, in dtype (a copy only if needed): the C++ kernels refuse
    misaligned data, which np.frombuffer at an odd offset gives contiguous. (CuPy's arrays
    have no aligned flag: always aligned.)"""
    c = xp.ascontiguousarray(a, dtype=dtype)
    if c.ndim != getattr(a, "ndim", c.ndim):  # (a 0-d array came back 1-d: a scalar weight
        c = c.reshape(())                      # of shape () became (1,))
    return c if getattr(c.flags, "aligned", True) else c.copy()


def same_shape(pred, target, names=("pred", "target")):
    """The element-wise contract (losses' targets, backward passes' dy): target of pred's
    shape, never broadcast; the message as the C++ kernels'."""
    if pred.shape != target.shape:
        raise ValueError(f"{names[1]}: expected shape {tuple(pred.shape)} (the shape of "
                         f"{names[0]}), got {tuple(target.shape)}")


def same_shapes(w, **arrays):
    """The optimizer updates' contract: the gradient and every slot of w's shape."""
    for name, a in arrays.items():
        if a is not None:
            same_shape(w, a, ("w", name))


def class_indices(xp, targets, classes, host):
    """Sparse targets as integer class indices: other dtypes (1.9, a string) refused rather
    than truncated; any but int32 (whose range the kernels check) range-checked before a
    cast could wrap them (2**32 + 1 -> 1); host=True checks int32 too (negative ones would
    index from the end). On a GPU the check would wait for the device: int32 there is
    left to the kernels."""
    if targets.dtype.kind not in "iu":
        raise TypeError(f"softmax_cross_entropy: sparse targets must be integer class indices, "
                        f"got dtype {targets.dtype}")
    if targets.size and (host or targets.dtype != np.int32):
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= classes:
            raise ValueError(f"softmax_cross_entropy: label {low if low < 0 else high} is out "
                             f"of range for {classes} classes (labels must be in "
                             f"[0, {classes - 1}])")
    return targets

