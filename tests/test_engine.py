"""The native Dense training engine (pynn._C.DenseEngine, csrc/cpu/engine.cpp) against a pure
numpy float64 re-implementation of the same training step, written here from the formulas of
pynn/backend/numpy_backend.py and pynn/layers/dense.py + model.py: per-batch losses and
metrics, and the weights and optimizer slots after several batches, for every loss, several
activations, every optimizer, frozen layers and awkward sizes. Also predict, bad arguments and
shuffled_order. Fresh random inputs each run; the seed is printed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import pynn
from conftest import run_python

try:
    from pynn import _C
except ImportError:  # installed without it: only the tests of the Python side run
    _C = None
# the tests here that need no pynn._C (every other one drives it)
_PYTHON_SIDE = {"test_the_python_shuffles_rejection_threshold_is_cs"}


@pytest.fixture(autouse=True)
def _needs_the_extension(request):
    if _C is None and request.function.__name__ not in _PYTHON_SIDE:
        pytest.skip("needs the compiled extension pynn._C: "
                    f"{pynn.available_backends()['cpu']}")

(LIN, RELU, LEAKY, ELU, GELU_TANH, SIGMOID, TANH, SILU, SOFTPLUS, SOFTSIGN, SELU, RELU6,
 HARD_SIGMOID, HARD_SILU, MISH, GELU, EXPONENTIAL) = range(17)
SOFTMAX = 17  # the engine's code after the activations
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
FUSED = {"softmax_xent_sparse", "softmax_xent_dense", "bce_logits"}
GELU_C = math.sqrt(2.0 / math.pi)
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


# ---- float64 reference ------------------------------------------------------------------------

def act_f(code, z, p):
    if code == LIN:
        return z
    if code == RELU:
        return np.maximum(z, 0)
    if code == LEAKY:
        return np.where(z > 0, z, p * z)
    if code == ELU:
        return np.where(z > 0, z, p * np.expm1(np.minimum(z, 0)))
    if code == GELU:
        return z * 0.5 * _erfc(-z / math.sqrt(2))
    if code == GELU_TANH:
        return 0.5 * z * (1 + np.tanh(GELU_C * (z + 0.044715 * z**3)))
    if code == SIGMOID:
        return 1 / (1 + np.exp(-z))
    if code == TANH:
        return np.tanh(z)
    if code == SILU:
        return z / (1 + np.exp(-z))
    if code == SOFTPLUS:
        return np.logaddexp(z, 0)
    if code == SOFTSIGN:
        return z / (1 + np.abs(z))
    if code == SELU:
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))
    if code == RELU6:
        return np.clip(z, 0, 6)
    if code == HARD_SIGMOID:
        return np.clip(z + 3, 0, 6) / 6
    if code == HARD_SILU:
        return z * np.clip(z + 3, 0, 6) / 6
    if code == MISH:
        return z * np.tanh(np.logaddexp(z, 0))
    if code == EXPONENTIAL:
        return np.exp(z)
    if code == SOFTMAX:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise AssertionError(code)


def act_grad(code, z, y, p):
    if code == RELU:
        return (y > 0).astype(np.float64)
    if code == LEAKY:
        return np.where(y > 0, 1.0, p)
    if code == ELU:
        return np.where(y > 0, 1.0, y + p)
    if code == GELU:
        return 0.5 * _erfc(-z / math.sqrt(2)) + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    if code == GELU_TANH:
        t = np.tanh(GELU_C * (z + 0.044715 * z**3))
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * z * z)
    if code == SIGMOID:
        return y * (1 - y)
    if code == TANH:
        return 1 - y * y
    if code == EXPONENTIAL:
        return y
    sig = 1 / (1 + np.exp(-z))
    if code == SILU:
        return sig * (1 + z * (1 - sig))
    if code == SOFTPLUS:
        return sig
    if code == SOFTSIGN:
        return 1 / (1 + np.abs(z)) ** 2
    if code == SELU:
        return SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0)))
    if code == RELU6:
        return ((z > 0) & (z < 6)).astype(np.float64)
    if code == HARD_SIGMOID:
        return np.where((z > -3) & (z < 3), 1 / 6, 0.0)
    if code == HARD_SILU:
        return np.where(z < -3, 0.0, np.where(z > 3, 1.0, (2 * z + 3) / 6))
    if code == MISH:
        t = np.tanh(np.logaddexp(z, 0))
        return t + z * (1 - t * t) * sig
    return np.ones_like(y)


class NearKink(Exception):
    """The float64 reference met a value within rounding of a point where a derivative
    jumps (ReLU's 0, MAE's sign): float32 may have taken the other side (seen once: a
    leaky_relu input 3e-8 from 0 put its unit's gradient 5x apart, the first layer's Adam
    state 3%). check_against_reference then draws new data."""


# Where each activation's derivative jumps (ELU's is continuous at alpha = 1, as tested).
_KINKS = {RELU: (0.0,), LEAKY: (0.0,), SELU: (0.0,), RELU6: (0.0, 6.0),
          HARD_SIGMOID: (-3.0, 3.0), HARD_SILU: (-3.0, 3.0)}


def _refuse_kinks(code, z, p):
    kinks = _KINKS.get(code, ()) + ((0.0,) if code == ELU and p != 1.0 else ())
    if any(np.any(np.abs(z - k) < 1e-5) for k in kinks):
        raise NearKink


def ref_loss(kind, out, t, param):
    """(mean loss, d mean / d out): out are logits for the fused kinds."""
    B, C = out.shape
    if kind in ("softmax_xent_sparse", "softmax_xent_dense"):
        m = out.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(out - m).sum(axis=1, keepdims=True))
        p = np.exp(out - lse)
        if kind == "softmax_xent_sparse":
            onehot = np.zeros_like(out)
            onehot[np.arange(B), t] = 1
            return float((lse[:, 0] - out[np.arange(B), t]).sum() / B), (p - onehot) / B
        return float((t * (lse - out)).sum() / B), (p * t.sum(axis=1, keepdims=True) - t) / B
    n = out.size
    d = out - t
    if kind == "bce_logits":
        x = out
        loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        return float(loss.sum() / n), (1 / (1 + np.exp(-x)) - t) / n
    if kind == "bce":
        pc = np.clip(out, param, 1 - param)
        loss = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
        inside = (out > param) & (out < 1 - param)
        return float(loss.sum() / n), np.where(inside, (pc - t) / (pc * (1 - pc)), 0) / n
    if kind == "mse":
        return float((d * d).sum() / n), 2 * d / n
    if kind == "mae":
        if np.any(np.abs(d) < 1e-5):
            raise NearKink
        return float(np.abs(d).sum() / n), np.sign(d) / n
    if kind == "huber":
        a = np.abs(d)
        small = a <= param
        loss = np.where(small, 0.5 * d * d, param * (a - 0.5 * param))
        return float(loss.sum() / n), np.where(small, d, param * np.sign(d)) / n
    raise AssertionError(kind)


def ref_metric(name, pred, t, threshold=0.5):
    if name == "sparse_accuracy":
        return float(np.mean(pred.argmax(axis=1) == t))
    if name == "categorical_accuracy":
        return float(np.mean(pred.argmax(axis=1) == t.argmax(axis=1)))
    if name == "binary_accuracy":
        return float(np.mean((pred > threshold) == (t > 0.5)))
    if name == "mse":
        return float(np.mean((pred - t) ** 2))
    if name == "mae":
        return float(np.mean(np.abs(pred - t)))
    raise AssertionError(name)


def ref_update(opt, w, g, slots, h, step):
    """Keras 3 formulas (numpy_backend.py), float64, in place."""
    lr = h["lr"]
    if opt == "sgd":
        mom = h.get("momentum", 0.0)
        if mom == 0:
            w -= lr * g
        else:
            v = slots[0]
            v *= mom
            v -= lr * g
            w += (mom * v - lr * g) if h.get("nesterov", False) else v
    elif opt == "adam":
        b1, b2, eps, wd = h["beta_1"], h["beta_2"], h["epsilon"], h.get("weight_decay", 0.0)
        m, v = slots[:2]
        if wd:
            w -= lr * wd * w
        lr_t = lr * math.sqrt(1 - b2**step) / (1 - b1**step)
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        if h.get("amsgrad"):
            np.maximum(slots[2], v, out=slots[2])
            v = slots[2]
        w -= lr_t * m / (np.sqrt(v) + eps)
    elif opt == "nadam":
        b1, b2, eps = h["beta_1"], h["beta_2"], h["epsilon"]
        w -= lr * h.get("weight_decay", 0.0) * w
        m, v = slots
        mu = [b1 * (1 - 0.5 * 0.96 ** i) for i in range(1, step + 2)]  # mu[i - 1] is step i's
        product = math.prod(mu[:step])
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        m_hat = mu[step] * m / (1 - product * mu[step]) + (1 - mu[step - 1]) * g / (1 - product)
        w -= lr * m_hat / (np.sqrt(v / (1 - b2 ** step)) + eps)
    elif opt == "adamax":
        b1, b2, eps = h["beta_1"], h["beta_2"], h["epsilon"]
        w -= lr * h.get("weight_decay", 0.0) * w
        m, u = slots
        m += (g - m) * (1 - b1)
        u[...] = np.maximum(b2 * u, np.abs(g))
        w -= lr * m / ((1 - b1 ** step) * (u + eps))
    elif opt == "lion":
        b1, b2 = h["beta_1"], h["beta_2"]
        w -= lr * h.get("weight_decay", 0.0) * w
        m = slots[0]
        w -= lr * np.sign(b1 * m + (1 - b1) * g)
        m[...] = b2 * m + (1 - b2) * g
    elif opt == "adadelta":
        rho, eps = h["rho"], h["epsilon"]
        w -= lr * h.get("weight_decay", 0.0) * w
        acc_g, acc_d = slots
        acc_g[...] = rho * acc_g + (1 - rho) * g * g
        d = np.sqrt(acc_d + eps) * g / np.sqrt(acc_g + eps)
        acc_d[...] = rho * acc_d + (1 - rho) * d * d
        w -= lr * d
    elif opt == "rmsprop":
        rho, mom, eps = h["rho"], h.get("momentum", 0.0), h["epsilon"]
        vel = slots[0]
        vel *= rho
        vel += (1 - rho) * g * g
        inc = lr * g / np.sqrt(vel + eps)
        if mom > 0:
            slots[1] *= mom
            slots[1] += inc
            w -= slots[1]
        else:
            w -= inc
    elif opt == "adagrad":
        slots[0] += g * g
        w -= lr * g / np.sqrt(slots[0] + h["epsilon"])
    else:
        raise AssertionError(opt)


class RefModel:
    """The layer path in float64: params [W0, b0, ...] and slots, updated in place."""

    def __init__(self, cfg, params, state):
        self.cfg = cfg
        self.params = [p.astype(np.float64) for p in params]
        self.state = [[s.astype(np.float64) for s in st] for st in state]
        self.initial = [p.copy() for p in self.params]

    def layer_params(self):
        k = 0
        for use_b in self.cfg["use_bias"]:
            W = k
            b = k + 1 if use_b else None
            k += 2 if use_b else 1
            yield W, b

    def forward(self, x, training):
        cfg = self.cfg
        L = len(cfg["acts"])
        fused = cfg["loss"] in FUSED
        xs, zs = [x], []
        for i, (wi, bi) in enumerate(self.layer_params()):
            z = xs[-1] @ self.params[wi]
            if bi is not None:
                z = z + self.params[bi]
            code = cfg["acts"][i]
            y = z if (training and fused and i == L - 1) else act_f(code, z, cfg["act_params"][i])
            if training and not (fused and i == L - 1):
                _refuse_kinks(code, z, cfg["act_params"][i])
            zs.append(z)
            xs.append(y)
        return xs, zs

    def train(self, x, y, order, first, last, bs, h, step, metrics, trainable):
        cfg = self.cfg
        L = len(cfg["acts"])
        fused = cfg["loss"] in FUSED
        lp = list(self.layer_params())
        lowest = next((i for i in range(L) if trainable[i]), L)
        rows_out = []
        for b in range(first, last):
            idx = order[b * bs:(b + 1) * bs]
            X = x[idx].astype(np.float64)
            T = y[idx] if cfg["loss"] == "softmax_xent_sparse" else y[idx].astype(np.float64)
            xs, zs = self.forward(X, training=True)
            out = xs[-1]
            loss, g = ref_loss(cfg["loss"], out, T, cfg["loss_param"])
            last_act = cfg["acts"][-1]
            pred = act_f(last_act, out, cfg["act_params"][-1]) if fused else out
            row = [loss] + [ref_metric(m, pred, T) for m in metrics]
            rows_out.append(row)
            for i in range(L - 1, lowest - 1, -1):
                if not (fused and i == L - 1):
                    g = g * act_grad(cfg["acts"][i], zs[i], xs[i + 1], cfg["act_params"][i])
                wi, bi = lp[i]
                dW, db = xs[i].T @ g, g.sum(axis=0)
                g_prev = g @ self.params[wi].T if i > lowest else None
                if trainable[i]:
                    t = step + (b - first) + 1
                    ref_update(cfg["opt"], self.params[wi], dW, self.state[wi], h, t)
                    if bi is not None:
                        ref_update(cfg["opt"], self.params[bi], db, self.state[bi], h, t)
                g = g_prev
        return np.array(rows_out, dtype=np.float64).reshape(last - first, 1 + len(metrics))


# ---- building blocks --------------------------------------------------------------------------

HYPER = {
    "sgd": dict(lr=0.05, momentum=0.0, nesterov=False),
    "sgd_momentum": dict(lr=0.05, momentum=0.9, nesterov=False),
    "sgd_nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "adam": dict(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0),
    "adamw": dict(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.004),
    "rmsprop": dict(lr=1e-3, rho=0.9, momentum=0.0, epsilon=1e-7),
    "rmsprop_momentum": dict(lr=1e-3, rho=0.9, momentum=0.5, epsilon=1e-7),
    "adagrad": dict(lr=0.05, epsilon=1e-7),
    "adam_amsgrad": dict(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.01,
                         amsgrad=True),
    "nadam": dict(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
    "nadam_decay": dict(lr=3e-3, beta_1=0.8, beta_2=0.99, epsilon=1e-6, weight_decay=0.05),
    "adamax": dict(lr=2e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.01),
    "lion": dict(lr=1e-4, beta_1=0.9, beta_2=0.99, weight_decay=0.1),
    "adadelta": dict(lr=1.0, rho=0.95, epsilon=1e-6, weight_decay=0.01),
}


def opt_name(variant):
    return {"adamw": "adam"}.get(variant, variant.split("_")[0])


def n_slots(variant):
    h = HYPER[variant]
    opt = opt_name(variant)
    if opt == "sgd":
        return 1 if h["momentum"] else 0
    if opt == "rmsprop":
        return 2 if h["momentum"] else 1
    if opt == "adam":
        return 3 if h.get("amsgrad") else 2
    return {"adagrad": 1, "lion": 1, "nadam": 2, "adamax": 2, "adadelta": 2}[opt]


def make_engine(rng, sizes, acts, loss, variant="adam", use_bias=None, act_params=None,
                loss_param=0.0, max_batch=64, trainable=None):
    L = len(sizes) - 1
    use_bias = use_bias if use_bias is not None else [True] * L
    act_params = act_params if act_params is not None else \
        [0.2 if a == LEAKY else 1.0 if a == ELU else 0.0 for a in acts]
    trainable = trainable if trainable is not None else [True] * L
    cfg = dict(sizes=sizes, acts=acts, act_params=act_params, use_bias=use_bias, loss=loss,
               loss_param=loss_param, opt=opt_name(variant))
    eng = _C.DenseEngine(sizes, acts, act_params, use_bias, loss, loss_param, cfg["opt"], max_batch)
    params, state = [], []
    for i in range(L):
        fan_in = sizes[i]
        shapes = [(sizes[i], sizes[i + 1])] + ([(sizes[i + 1],)] if use_bias[i] else [])
        for j, shape in enumerate(shapes):
            scale = 1.0 / math.sqrt(fan_in) if j == 0 else 0.1
            params.append(np.ascontiguousarray(rng.normal(0, scale, shape), dtype=np.float32))
            init = 0.1 if cfg["opt"] == "adagrad" else 0.0
            state.append([np.full(shape, init, dtype=np.float32) for _ in range(n_slots(variant))])
    ref = RefModel(cfg, params, state)
    eng.bind(params, trainable, state)
    return eng, cfg, params, state, ref, trainable


def make_data(rng, n, sizes, loss):
    x = rng.normal(0, 1, (n, sizes[0])).astype(np.float32)
    C = sizes[-1]
    if loss == "softmax_xent_sparse":
        y = rng.integers(0, C, n).astype(np.int32)
    elif loss == "softmax_xent_dense":
        y = rng.random((n, C)).astype(np.float32) + 0.01
        y /= y.sum(axis=1, keepdims=True)
    elif loss in ("bce", "bce_logits"):
        y = rng.random((n, C)).astype(np.float32)
    else:
        y = rng.normal(0, 1, (n, C)).astype(np.float32)
    return x, np.ascontiguousarray(y)


def check_against_reference(rng, *args, **kwargs):
    """_check_against_reference with fresh data where the reference met a kink (NearKink;
    at most 5 draws, each one fresh)."""
    for attempt in range(5):
        try:
            return _check_against_reference(rng, *args, **kwargs)
        except NearKink:
            continue
    raise AssertionError("5 draws of data met a kink of the float64 reference")


def _check_against_reference(rng, sizes, acts, loss, variant, n, bs, metrics=(), chunks=None,
                             loss_param=0.0, use_bias=None, trainable=None, max_batch=None,
                             rtol=1e-4):
    eng, cfg, params, state, ref, trainable = make_engine(
        rng, sizes, acts, loss, variant, use_bias=use_bias, loss_param=loss_param,
        max_batch=max_batch or bs, trainable=trainable)
    x, y = make_data(rng, n, sizes, loss)
    order = rng.permutation(n).astype(np.int64)
    n_batches = -(-n // bs)
    h = HYPER[variant]
    chunks = chunks or [(0, n_batches)]
    got, want = [], []
    step = 7  # optimizer iterations already done (Adam's bias correction continues from here)
    for first, last in chunks:
        got.append(eng.train(x, y, order, first, last, bs, h, step, list(metrics)))
        want.append(ref.train(x, y, order, first, last, bs, h, step, list(metrics), trainable))
        step += last - first
    got, want = np.concatenate(got), np.concatenate(want)
    assert got.dtype == np.float64 and got.shape == (n_batches, 1 + len(metrics))
    assert np.isfinite(want).all(), "the reference itself overflowed: nothing is compared"
    if cfg["opt"] == "lion":
        # Lion moves each weight by +-lr: where float32 and float64 gradients put the sign's
        # argument on either side of 0, one weight may be 2 lr apart; allow a few such
        # weights, and their small effect on the losses
        for k, (p, r) in enumerate(zip(params, ref.params)):
            apart = ~np.isclose(p, r, rtol=rtol, atol=1e-6)
            assert apart.sum() <= max(1, p.size // 200), f"param {k}"
            assert np.all(np.abs(p - r) <= 2 * h["lr"] * n_batches + 1e-6), f"param {k}"
            r[apart] = p[apart]
        rtol = max(rtol, 1e-3)
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=rtol, atol=1e-6, err_msg="losses")
    for j in range(len(metrics)):
        # Accuracies are counts: float32 vs float64 may flip a borderline sample at most.
        np.testing.assert_allclose(got[:, 1 + j], want[:, 1 + j], rtol=rtol, atol=1e-5,
                                   err_msg=f"metric {metrics[j]}")
    # Weights: float32 rounding differences in a gradient that nearly cancels can be
    # amplified by the adaptive optimizers (Adam normalises the step size), so compare each
    # weight with a tolerance of rtol on the weight plus a small fraction of the total
    # movement of that tensor.
    for k, (p, r, p0) in enumerate(zip(params, ref.params, ref.initial)):
        moved = np.abs(r - p0).max()
        np.testing.assert_allclose(p, r, rtol=rtol, atol=1e-6 + 1e-3 * moved,
                                   err_msg=f"param {k}")
    for k, (st, rst) in enumerate(zip(state, ref.state)):
        for s, rs in zip(st, rst):
            np.testing.assert_allclose(s, rs, rtol=1e-3, atol=1e-6 + 1e-3 * np.abs(rs).max(),
                                       err_msg=f"state of param {k}")
    return eng, params


# ---- (a) training step against the reference ----------------------------------------------------

LOSS_CASES = [
    # (loss, last activation, loss_param, metrics)
    ("softmax_xent_sparse", SOFTMAX, 0.0, ["sparse_accuracy"]),
    ("softmax_xent_sparse", LIN, 0.0, ["sparse_accuracy"]),
    ("softmax_xent_dense", SOFTMAX, 0.0, ["categorical_accuracy", "mse", "mae"]),
    ("softmax_xent_dense", LIN, 0.0, ["categorical_accuracy"]),
    ("bce_logits", SIGMOID, 0.0, ["binary_accuracy", "mse"]),
    ("bce_logits", LIN, 0.0, ["binary_accuracy"]),
    ("bce", SIGMOID, 1e-7, ["binary_accuracy", "mae"]),
    ("mse", LIN, 0.0, ["mse", "mae"]),
    ("mse", TANH, 0.0, ["mae"]),
    ("mae", LIN, 0.0, ["mse"]),
    ("huber", ELU, 0.5, ["mae", "binary_accuracy"]),
]


@pytest.mark.parametrize("loss,last_act,loss_param,metrics", LOSS_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in LOSS_CASES])
@pytest.mark.parametrize("hidden", [RELU, GELU, TANH])
def test_losses_match_reference(rng, loss, last_act, loss_param, metrics, hidden):
    sizes = [13, 24, 17, 5 if "xent" in loss else 3]
    check_against_reference(rng, sizes, [hidden, LEAKY, last_act], loss, "adam", n=83, bs=17,
                            metrics=metrics, loss_param=loss_param)


@pytest.mark.parametrize("variant", list(HYPER))
def test_optimizers_match_reference(rng, variant):
    check_against_reference(rng, [9, 16, 4], [ELU, SOFTMAX], "softmax_xent_sparse", variant,
                            n=50, bs=8, metrics=["sparse_accuracy"], chunks=[(0, 3), (3, 7)])
    check_against_reference(rng, [7, 12, 10, 2], [SIGMOID, LIN, LIN], "mse", variant, n=40,
                            bs=16, metrics=["mse"])


def test_activation_codes_agree_with_the_python_side():
    from pynn.backend.kernel_calls import ACTIVATION_CODES
    from pynn.engine import _SOFTMAX_CODE

    assert _C.activation_count == len(ACTIVATION_CODES) == SOFTMAX == _SOFTMAX_CODE
    names = ["linear", "relu", "leaky_relu", "elu", "gelu_tanh", "sigmoid", "tanh", "silu",
             "softplus", "softsign", "selu", "relu6", "hard_sigmoid", "hard_silu", "mish",
             "gelu", "exponential"]
    assert [ACTIVATION_CODES[n] for n in names] == list(range(SOFTMAX))
    assert set(ACTIVATION_CODES) | {"softmax"} == set(pynn.activations.NAMES)


@pytest.mark.parametrize("act", range(SOFTMAX))
def test_hidden_activations(rng, act):
    # (exponential after tanh: exp of exp's sums overflowed, NaN against NaN compared)
    acts = [TANH, act, LIN] if act == EXPONENTIAL else [act, act, LIN]
    check_against_reference(rng, [6, 11, 9, 3], acts, "mse", "sgd_momentum", n=37,
                            bs=10, metrics=["mae"])


@pytest.mark.parametrize("n,bs", [(5, 1), (10, 3), (40, 17), (17, 17), (18, 17), (129, 64)])
def test_awkward_sizes(rng, n, bs):
    # 129 input features (one past a 128 multiple), a 1-wide output, short last batches.
    check_against_reference(rng, [129, 33, 1], [RELU, SIGMOID], "bce_logits", "adam", n=n, bs=bs,
                            metrics=["binary_accuracy"], max_batch=bs + 3)
    check_against_reference(rng, [3, 129, 7], [TANH, SOFTMAX], "softmax_xent_sparse", "rmsprop",
                            n=n, bs=bs, metrics=["sparse_accuracy"])


def test_no_bias_and_chunks(rng):
    check_against_reference(rng, [10, 20, 20, 4], [RELU, GELU, LIN], "huber", "adagrad", n=100,
                            bs=9, use_bias=[False, True, False], loss_param=1.0,
                            chunks=[(0, 1), (1, 1), (1, 5), (5, 12)])


@pytest.mark.parametrize("trainable", [[False, True, True], [True, False, True],
                                       [False, False, True], [True, True, False],
                                       [False, False, False]])
def test_frozen_layers(rng, trainable):
    eng, params = check_against_reference(rng, [8, 12, 10, 3], [RELU, TANH, SOFTMAX],
                                          "softmax_xent_sparse", "adam", n=30, bs=7,
                                          trainable=trainable)


def test_frozen_layers_unchanged(rng):
    eng, cfg, params, state, ref, tr = make_engine(rng, [5, 6, 2], [RELU, LIN], "mse", "adam",
                                                   trainable=[False, True])
    before = [p.copy() for p in params]
    x, y = make_data(rng, 20, [5, 6, 2], "mse")
    eng.train(x, y, np.arange(20, dtype=np.int64), 0, 4, 5, HYPER["adam"], 0, [])
    np.testing.assert_array_equal(params[0], before[0])
    np.testing.assert_array_equal(params[1], before[1])
    assert not np.array_equal(params[2], before[2])


def test_threads_agree(rng):
    # Same results with 1 and 2 threads (the kernels cut work independently of thread count;
    # the GEMM may split differently, so allow float32 rounding).
    prev = _C.num_threads()
    results = []
    try:
        for threads in (1, 2):
            _C.set_num_threads(threads)
            r = np.random.default_rng(1234)
            eng, cfg, params, state, ref, tr = make_engine(r, [64, 256, 256, 10],
                                                           [RELU, RELU, SOFTMAX],
                                                           "softmax_xent_sparse", "adam",
                                                           max_batch=128)
            x, y = make_data(r, 512, [64, 256, 256, 10], "softmax_xent_sparse")
            out = eng.train(x, y, np.arange(512, dtype=np.int64), 0, 4, 128, HYPER["adam"], 0,
                            ["sparse_accuracy"])
            results.append((out, [p.copy() for p in params]))
    finally:
        _C.set_num_threads(prev)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_train_checks_the_sample_weights_length(rng):
    eng, cfg, params, state, ref, tr = make_engine(rng, [5, 6, 2], [RELU, LIN], "mse", "adam")
    x, y = make_data(rng, 20, [5, 6, 2], "mse")
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(20,\)"):
        eng.train(x, y, np.arange(20, dtype=np.int64), 0, 4, 5, HYPER["adam"], 0, [],
                  np.ones(19, np.float32))


# ---- (b) predict ----------------------------------------------------------------------------

@pytest.mark.parametrize("acts,loss", [([RELU, RELU, SOFTMAX], "softmax_xent_sparse"),
                                       ([GELU, ELU, SIGMOID], "bce_logits"),
                                       ([TANH, LEAKY, LIN], "mse"),
                                       ([SIGMOID, GELU, TANH], "huber"),
                                       ([SILU, MISH, SOFTPLUS], "mse"),
                                       ([HARD_SILU, SELU, HARD_SIGMOID], "mse"),
                                       ([RELU6, SOFTSIGN, LIN], "mae")])
@pytest.mark.parametrize("n", [0, 1, 7, 64, 150])
def test_predict_matches_numpy(rng, acts, loss, n):
    sizes = [21, 30, 17, 4]
    eng, cfg, params, state, ref, tr = make_engine(rng, sizes, acts, loss, "sgd", max_batch=64,
                                                   loss_param=1.0 if loss == "huber" else 0.0)
    x = rng.normal(0, 1, (n, sizes[0])).astype(np.float32)
    out = np.full((n, sizes[-1]), np.nan, dtype=np.float32)
    assert eng.predict(x, out) is None
    want = ref.forward(x.astype(np.float64), training=False)[0][-1]
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 129, 70001])  # one row, a few, past the threaded check's chunk
def test_predict_refuses_non_finite_rows_unless_told_they_were_checked(rng, n):
    sizes = [3, 5, 2]
    eng, *_ = make_engine(rng, sizes, [RELU, LIN], "mse", "sgd", max_batch=64)
    x = rng.normal(0, 1, (n, sizes[0])).astype(np.float32)
    out = np.zeros((n, sizes[-1]), np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[-1, -1] = bad
        y[n // 2, 0] = bad
        count = int(np.count_nonzero(~np.isfinite(y)))  # 2 (one row: two of its features)
        with pytest.raises(ValueError, match=f"x contains {count} NaN or infinite value"):
            eng.predict(y, out)
        assert not out.any()  # refused before any row was written
        eng.predict(y, out, check_finite=False)  # the caller vouched for x: it runs
        assert np.isfinite(out[:-1][np.isfinite(y[:-1]).all(axis=1)]).all()
        out[:] = 0


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_predict_single_row_paths(rng, threads):
    # One row takes the engine's own single-row kernel (16-row bands with a short last band,
    # 32- and 8-column strips and scalar columns; the rows of big layers summed in slices
    # shared by the threads, their partial sums added after); it must agree with the
    # batched path.
    prev = _C.num_threads()
    _C.set_num_threads(threads)
    try:
        # Layers of more than 131072 weights (512 KiB) are split: 300 x 500 in 19 bands (the
        # last of 12 rows) summed in 8 slices; 17 x 7711, the narrowest split, one full band
        # and a one-row band, 7711 columns ending in 8-column strips and scalar ones; the
        # smaller layers run whole, down to ones narrower than a band and than one strip.
        for sizes, acts, loss in (([300, 500, 130, 9], [RELU, GELU, SOFTMAX], "softmax_xent_sparse"),
                                  ([300, 500, 130, 9], [TANH, ELU, LIN], "mse"),
                                  ([300, 200, 130, 9], [LEAKY, SIGMOID, SIGMOID], "bce_logits"),
                                  ([17, 7711, 5, 3], [RELU, TANH, LIN], "mse")):
            eng, cfg, params, state, ref, tr = make_engine(rng, sizes, acts, loss, "sgd",
                                                           use_bias=[True, False, True],
                                                           max_batch=16)
            x = rng.normal(0, 1, (5, sizes[0])).astype(np.float32)
            batched = np.empty((5, sizes[-1]), np.float32)
            eng.predict(x, batched)
            want = ref.forward(x.astype(np.float64), training=False)[0][-1]
            for i in range(5):
                one = np.empty((1, sizes[-1]), np.float32)
                eng.predict(x[i:i + 1], one)
                np.testing.assert_allclose(one[0], want[i], rtol=1e-4, atol=1e-6)
                np.testing.assert_allclose(one[0], batched[i], rtol=1e-4, atol=1e-6)
    finally:
        _C.set_num_threads(prev)


def test_a_single_rows_prediction_has_the_same_bits_with_any_number_of_threads(rng):
    # Big layers' rows are summed in slices fixed by the layer's shape, not by the thread
    # count (which split the sum differently on every machine size).
    prev = _C.num_threads()
    try:
        for sizes in ([784, 256, 10], [17, 7711, 5], [300, 500, 130, 9]):
            acts = [RELU] * (len(sizes) - 2) + [SOFTMAX]
            eng, *_ = make_engine(rng, sizes, acts, "softmax_xent_sparse", "sgd",
                                  max_batch=16)
            x = rng.normal(0, 1, (4, sizes[0])).astype(np.float32)
            seen = []
            for threads in (1, 2, 3, 5, 8, 13):
                _C.set_num_threads(threads)
                rows = np.empty((4, sizes[-1]), np.float32)
                for i in range(4):
                    eng.predict(x[i:i + 1], rows[i:i + 1])
                seen.append(rows)
            for rows in seen[1:]:
                np.testing.assert_array_equal(rows, seen[0])
    finally:
        _C.set_num_threads(prev)


def test_predict_after_training_sees_new_weights(rng):
    eng, cfg, params, state, ref, tr = make_engine(rng, [4, 8, 2], [RELU, LIN], "mse", "sgd")
    x, y = make_data(rng, 16, [4, 8, 2], "mse")
    eng.train(x, y, np.arange(16, dtype=np.int64), 0, 2, 8, HYPER["sgd"], 0, [])
    out = np.empty((16, 2), np.float32)
    eng.predict(x, out)
    want = np.maximum(x @ params[0] + params[1], 0) @ params[2] + params[3]
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss,last", [("softmax_xent_sparse", SOFTMAX), ("bce_logits", SIGMOID),
                                       ("mse", LIN)])
def test_train_hands_back_each_batchs_outputs_before_its_update(rng, loss, last):
    # outputs[batch rows] = what predict gave for those rows with the weights before the
    # batch's update (activation applied), batch after batch, last batch short.
    eng, cfg, params, state, ref, tr = make_engine(rng, [5, 7, 3], [TANH, last], loss, "adam")
    x, y = make_data(rng, 19, [5, 7, 3], loss)
    order = rng.permutation(19).astype(np.int64)
    outputs = np.full((19 - 4, 3), np.nan, np.float32)  # batches 1..3 of size 4: rows 4..18
    eng.train(x, y, order, 0, 1, 4, HYPER["adam"], 0, [])
    want = []
    for b in range(1, 5):
        before = np.empty((19, 3), np.float32)
        eng.predict(x, before)
        rows = order[b * 4:(b + 1) * 4]
        want.append(before[rows])
        eng.train(x, y, order, b, b + 1, 4, HYPER["adam"], b, [],
                  outputs=outputs[(b - 1) * 4:(b - 1) * 4 + len(rows)])
    np.testing.assert_allclose(outputs, np.concatenate(want), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"outputs: expected shape \(15, 3\)"):
        eng.train(x, y, order, 1, 5, 4, HYPER["adam"], 5, [], outputs=outputs[:14])
    with pytest.raises(ValueError, match="bound parameters"):
        eng.train(x, y, order, 0, 1, 4, HYPER["adam"], 5, [],
                  outputs=params[0].reshape(-1)[:12].reshape(4, 3))


def test_one_call_over_many_batches_equals_one_call_per_batch(rng):
    # Per-batch offsets inside a call (Adam's step, the dropout step, sample weights, the
    # outputs rows, batch normalisation's statistics) must give the same bits as calling
    # batch by batch, with every feature on at once.
    sizes = [5, 9, 7, 3]
    x, y = make_data(rng, 37, sizes, "softmax_xent_sparse")
    w = rng.uniform(0, 2, 37).astype(np.float32)
    order = rng.permutation(37).astype(np.int64)
    hyper = {**HYPER["adam"], "clipnorm": 0.5, "clipvalue": 0.2}
    runs = []
    for per_batch in (False, True):
        eng, cfg, params, state, ref, tr = make_engine(np.random.default_rng(5), sizes,
                                                       [TANH, RELU, SOFTMAX],
                                                       "softmax_xent_sparse", "adam", max_batch=8)
        eng.set_dropout(1, 0.3, 77)
        eng.set_dropout(-1, 0.2, 78)  # the inputs
        eng.set_regularizer(0, 1e-3, 1e-2, 0.0, 1e-2)
        bn = [np.ones(9, np.float32), np.zeros(9, np.float32), np.zeros(9, np.float32),
              np.ones(9, np.float32)]
        bn_slots = [[np.zeros(9, np.float32) for _ in range(2)] for _ in range(2)]
        eng.set_batchnorm(0, False, 0.9, 1e-3, True, *bn, bn_slots[0], bn_slots[1])
        outputs = np.full((37, 3), np.nan, np.float32)
        if per_batch:
            logs = np.concatenate([
                eng.train(x, y, order, b, b + 1, 8, hyper, b, ["sparse_accuracy"], w,
                          outputs[b * 8:min(37, (b + 1) * 8)]) for b in range(5)])
        else:
            logs = eng.train(x, y, order, 0, 5, 8, hyper, 0, ["sparse_accuracy"], w, outputs)
        arrays = [logs, outputs, *params, *(a for slots in state for a in slots), *bn,
                  *(a for slots in bn_slots for a in slots)]
        runs.append(arrays)
    assert len(runs[0]) == len(runs[1]) == 2 + 6 + 12 + 4 + 4
    for one_call, per_batch in zip(*runs):
        np.testing.assert_array_equal(one_call, per_batch)
    assert not np.isnan(runs[0][1]).any()  # every row of outputs was written


# ---- (c) bad arguments ------------------------------------------------------------------------

def test_set_dropout_errors(rng):
    eng, cfg, params, state, ref, tr = make_engine(rng, [4, 6, 3], [RELU, SOFTMAX],
                                                   "softmax_xent_sparse", "adam")
    for layer, rate, words in [(-2, 0.5, r"layer must be in \[-1, 1\)"),
                               (1, 0.5, "after the output layer"), (0, 1.0, "rate"),
                               (-1, -0.1, "rate"), (0, float("nan"), "rate")]:
        with pytest.raises(ValueError, match=words):
            eng.set_dropout(layer, rate, 1)
    x = rng.normal(size=(9, 4)).astype(np.float32)
    before, after = np.empty((9, 3), np.float32), np.empty((9, 3), np.float32)
    eng.predict(x, before)
    eng.set_dropout(-1, 0.5, 1)  # the inputs: training only, predict is unchanged
    eng.set_dropout(0, 0.0, 1)   # rate 0: none
    eng.predict(x, after)
    np.testing.assert_array_equal(after, before)

def test_set_batchnorm_errors(rng):
    eng, cfg, params, state, ref, tr = make_engine(rng, [4, 6, 3], [RELU, SOFTMAX],
                                                   "softmax_xent_sparse", "adam")
    ones, zeros = np.ones(6, np.float32), np.zeros(6, np.float32)
    ok = dict(layer=0, pre=True, momentum=0.99, epsilon=1e-3, trainable=True, gamma=ones,
              beta=zeros.copy(), moving_mean=zeros.copy(), moving_variance=ones.copy(),
              gamma_slots=[zeros.copy(), zeros.copy()], beta_slots=[zeros.copy(), zeros.copy()])
    for change, words in [(dict(layer=1), "after the output layer"), (dict(layer=5), "layer"),
                          (dict(gamma=np.ones(5, np.float32)), r"gamma: expected shape \(6,\)"),
                          (dict(moving_mean=None), "moving_mean: required"),
                          (dict(momentum=1.5), "momentum"), (dict(epsilon=0.0), "epsilon"),
                          (dict(beta_slots=[zeros.copy() for _ in range(5)]), "at most 4"),
                          (dict(beta=ones), "separate buffers")]:
        with pytest.raises(ValueError, match=words):
            eng.set_batchnorm(**{**ok, **change})
    eng.set_batchnorm(**{**ok, "gamma_slots": []})  # accepted here, refused when training:
    x, y = make_data(rng, 8, [4, 6, 3], "softmax_xent_sparse")
    with pytest.raises(ValueError, match="adam needs"):
        eng.train(x, y, np.arange(8, dtype=np.int64), 0, 1, 8, HYPER["adam"], 0, [])


def small(rng, loss="softmax_xent_sparse", variant="adam", last=SOFTMAX):
    eng, cfg, params, state, ref, tr = make_engine(rng, [4, 6, 3], [RELU, last], loss, variant,
                                                   max_batch=8)
    x, y = make_data(rng, 20, [4, 6, 3], loss)
    return eng, params, state, x, y, np.arange(20, dtype=np.int64)


def test_constructor_errors():
    ok = dict(sizes=[4, 5, 3], activations=[1, SOFTMAX], act_params=[0.0, 0.0],
              use_bias=[True, True],
              loss="softmax_xent_sparse", loss_param=0.0, optimizer="adam", max_batch=8)

    def build(**kw):
        a = {**ok, **kw}
        return _C.DenseEngine(a["sizes"], a["activations"], a["act_params"], a["use_bias"],
                              a["loss"], a["loss_param"], a["optimizer"], a["max_batch"])

    build()
    cases = [
        (dict(sizes=[4]), "sizes"),
        (dict(sizes=[4, 0, 3]), r"sizes\[1\]"),
        (dict(activations=[1]), "activations: expected 2"),
        (dict(activations=[1, SOFTMAX + 1]), r"activations\[1\]"),
        (dict(activations=[SOFTMAX, SOFTMAX]), "softmax .* last layer only"),
        (dict(act_params=[0.0]), "act_params"),
        (dict(use_bias=[True]), "use_bias"),
        (dict(loss="nll"), "unknown loss 'nll'"),
        (dict(optimizer="lbfgs"), "unknown optimizer 'lbfgs'"),
        (dict(max_batch=0), "max_batch"),
        (dict(activations=[1, 5]), "softmax or linear last layer"),
        (dict(loss="bce_logits"), "sigmoid or linear last layer"),
        (dict(loss="mse"), "softmax last layer is only supported"),
        (dict(loss="huber", activations=[1, 0], loss_param=0.0), "huber delta"),
        (dict(loss="bce", activations=[1, 5], loss_param=0.0), "clip epsilon"),
        # buffers of max_batch x width: 2**62 x 4 wrapped to an empty arena predict overran
        (dict(max_batch=2**62), "too large for any machine"),
        (dict(sizes=[2**62, 5, 3]), "too large for any machine"),
        (dict(sizes=[4, 2**50, 3], max_batch=1), "too large for any machine"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            build(**kw)


def test_train_before_bind():
    eng = _C.DenseEngine([2, 1], [0], [0.0], [True], "mse", 0.0, "sgd", 4)
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="bind"):
        eng.train(x, np.zeros((4, 1), np.float32), np.arange(4, dtype=np.int64), 0, 1, 4,
                  HYPER["sgd"], 0, [])
    with pytest.raises(ValueError, match="bind"):
        eng.predict(x, np.zeros((4, 1), np.float32))


def test_bind_errors(rng):
    eng, params, state, x, y, order = small(rng)
    tr = [True, True]
    with pytest.raises(ValueError, match="params: expected 4 arrays"):
        eng.bind(params[:3], tr, state)
    with pytest.raises(ValueError, match="trainable: expected 2"):
        eng.bind(params, [True], state)
    with pytest.raises(ValueError, match="state: expected 4"):
        eng.bind(params, tr, state[:3])
    with pytest.raises(ValueError, match=r"params\[2\] \(W1\): expected shape \(6, 3\)"):
        eng.bind(params[:2] + [params[2].T.copy()] + params[3:], tr, state)
    with pytest.raises(TypeError, match=r"params\[0\] \(W0\): expected dtype float32"):
        eng.bind([params[0].astype(np.float64)] + params[1:], tr, state)
    with pytest.raises(TypeError, match=r"params\[1\] \(b0\): expected a numpy array, got list"):
        eng.bind([params[0], list(params[1])] + params[2:], tr, state)
    with pytest.raises(ValueError, match="C-contiguous"):
        eng.bind([np.asfortranarray(params[0])] + params[1:], tr, state)
    ro = params[0].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        eng.bind([ro] + params[1:], tr, state)
    with pytest.raises(ValueError, match=r"state\[1\]: expected \[m, v\]"):
        eng.bind(params, tr, [state[0], state[1][:1]] + state[2:])
    with pytest.raises(ValueError, match=r"state\[3\]\[1\]: expected shape \(3,\)"):
        eng.bind(params, tr, state[:3] + [[state[3][0], np.zeros(4, np.float32)]])
    with pytest.raises(ValueError, match="must not share memory"):
        eng.bind(params, tr, [[state[0][0], state[0][0]]] + state[1:])
    with pytest.raises(ValueError, match="must not share memory"):
        eng.bind(params, tr, [[params[0], state[0][1]]] + state[1:])
    # Frozen layers may come without optimizer slots.
    eng.bind(params, [False, True], [[], []] + state[2:])
    eng.bind(params, tr, state)


def test_bind_finds_every_overlap_of_views_of_one_buffer(rng):
    """bind sorts the arrays' extents (an all-pairs check was quadratic in the layers): views
    of one buffer at random offsets, some overlapping, some nested, some touching, are
    refused exactly when two of them share memory (batch normalization's arrays too)."""
    sizes = [4, 6, 3]
    eng, _, params, state, _, tr = make_engine(rng, sizes, [RELU, SOFTMAX],
                                               "softmax_xent_sparse", "adam")
    shapes = [p.shape for p in params]
    bn = _C.DenseEngine(sizes, [RELU, SOFTMAX], [0.0, 0.0], [True, True],
                        "softmax_xent_sparse", 0.0, "adam", 8)
    bn_arrays = [np.ones(6, np.float32) for _ in range(4)]
    bn.set_batchnorm(0, False, 0.9, 1e-3, False, *bn_arrays, [], [])
    for trial in range(300):
        shape_list = [shp for shp in shapes for _ in range(3)]  # each param and its m, v
        sizes_flat = [int(np.prod(shp)) for shp in shape_list]
        buffer = np.zeros(sum(sizes_flat) + 40, np.float32)
        starts = rng.integers(0, buffer.size - max(sizes_flat), len(shape_list))
        if trial % 3 == 0:  # laid end to end (touching, not overlapping), then one moved
            starts = np.cumsum([0] + sizes_flat[:-1])
            if trial % 2:
                k = rng.integers(1, len(starts))
                starts[k] -= rng.integers(0, 2)
        views = [buffer[a:a + n].reshape(shp) for a, n, shp in zip(starts, sizes_flat,
                                                                  shape_list)]
        extents = [(a, a + n) for a, n in zip(starts, sizes_flat)]
        shared = any(a0 < b1 and b0 < a1 for i, (a0, a1) in enumerate(extents)
                     for (b0, b1) in extents[i + 1:])
        p = views[0::3]
        st = [[m, v] for m, v in zip(views[1::3], views[2::3])]
        if shared:
            with pytest.raises(ValueError, match="must not share memory"):
                eng.bind(p, tr, st)
        else:
            eng.bind(p, tr, st)
        if not shared:  # and against batch normalization's: b0 or a slot of it one of them
            bn.bind(p, tr, st)
            k = 3 + rng.integers(0, 3)  # views[3:6]: b0 (6,), its m and v
            views[k] = bn_arrays[rng.integers(0, 4)]
            with pytest.raises(ValueError, match="batch normalization array"):
                bn.bind(views[0::3], tr, [[m, v] for m, v in zip(views[1::3], views[2::3])])
    eng.bind(params, tr, state)


def test_train_errors_leave_weights_untouched(rng):
    eng, params, state, x, y, order = small(rng)
    h = HYPER["adam"]
    before = [p.copy() for p in params]
    cases = [
        (TypeError, "x: expected dtype float32", dict(x=x.astype(np.float64))),
        (ValueError, r"x: expected shape \(N, 4\)", dict(x=x[:, :3].copy())),
        (ValueError, "C-contiguous", dict(x=np.asfortranarray(x))),
        (TypeError, "x: expected a numpy array, got list", dict(x=x.tolist())),
        (TypeError, "y: expected int32 class labels", dict(y=y.astype(np.int64))),
        (ValueError, r"y: expected shape \(20,\)", dict(y=y[:10].copy())),
        (ValueError, r"y: expected class labels in \[0, 3\), got 3 at row 5",
         dict(y=np.where(np.arange(20) == 5, 3, y).astype(np.int32))),
        (ValueError, r"got -1 at row 19", dict(y=np.where(np.arange(20) == 19, -1, y).astype(np.int32))),
        (TypeError, "order: expected dtype int64", dict(order=order.astype(np.int32))),
        (ValueError, r"order: expected shape \(20,\)", dict(order=order[:5].copy())),
        (ValueError, r"order: expected row indices in \[0, 20\), got 20 at position 11",
         dict(order=np.where(np.arange(20) == 11, 20, order).astype(np.int64))),
        (ValueError, "got -3", dict(order=np.where(np.arange(20) == 0, -3, order).astype(np.int64))),
        (ValueError, "batch_size: 9 exceeds the engine's max_batch 8", dict(batch_size=9)),
        (ValueError, "batch_size: expected >= 1", dict(batch_size=0)),
        (ValueError, "first_batch/last_batch", dict(first=0, last=4)),
        (ValueError, "first_batch/last_batch", dict(first=2, last=1)),
        (ValueError, "first_batch/last_batch", dict(first=-1, last=1)),
        (ValueError, "missing key 'beta_1'", dict(hyper={"lr": 0.1, "beta_2": 0.9, "epsilon": 1e-7})),
        (TypeError, r"hyper\['lr'\]: expected a number", dict(hyper={**h, "lr": "fast"})),
        (ValueError, r"hyper\['lr_steps'\]: expected shape \(3,\)",
         dict(hyper={**h, "lr_steps": np.ones(2)})),
        (ValueError, "lr_steps must be finite", dict(hyper={**h, "lr_steps": [0.1, np.nan, 0.1]})),
        (ValueError, "unknown metric 'f1'", dict(metrics=["f1"])),
        (ValueError, "only sparse_accuracy", dict(metrics=["mse"])),
        (TypeError, "metrics: expected a list of str", dict(metrics=[3])),
    ]
    for exc, msg, kw in cases:
        a = dict(x=x, y=y, order=order, first=0, last=3, batch_size=8, hyper=h, metrics=[])
        a.update(kw)
        with pytest.raises(exc, match=msg):
            eng.train(a["x"], a["y"], a["order"], a["first"], a["last"], a["batch_size"],
                      a["hyper"], 0, a["metrics"])
        for p, b in zip(params, before):
            np.testing.assert_array_equal(p, b)
    # Labels outside the batches asked for are not looked at; empty ranges are fine.
    assert eng.train(x, y, order, 1, 1, 8, h, 0, []).shape == (0, 1)


def test_lr_steps_give_each_batch_its_rate(rng):
    # One call with a rate per batch equals one call per batch at that rate.
    seed = int(rng.integers(2**31))
    rates = [0.05, 0.01, 0.002]
    results = []
    for per_call in (True, False):
        eng, params, state, x, y, order = small(np.random.default_rng(seed), variant="sgd")
        if per_call:
            losses = [eng.train(x, y, order, b, b + 1, 8, {**HYPER["sgd"], "lr": r}, b, [])
                      for b, r in enumerate(rates)]
        else:
            losses = [eng.train(x, y, order, 0, 3, 8, {**HYPER["sgd"], "lr_steps": rates}, 0, [])]
        results.append((np.concatenate(losses), [p.copy() for p in params]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


def test_dense_targets_and_slots_errors(rng):
    eng, params, state, x, y, order = small(rng, loss="mse", variant="sgd", last=LIN)
    with pytest.raises(ValueError, match=r"y: expected shape \(20, 3\)"):
        eng.train(x, y[:, :2].copy(), order, 0, 1, 8, HYPER["sgd"], 0, [])
    with pytest.raises(TypeError, match="y: expected dtype float32"):
        eng.train(x, y.astype(np.float64), order, 0, 1, 8, HYPER["sgd"], 0, [])
    with pytest.raises(ValueError, match="sparse_accuracy needs integer labels"):
        eng.train(x, y, order, 0, 1, 8, HYPER["sgd"], 0, ["sparse_accuracy"])
    # sgd bound without velocity slots, then asked for momentum.
    with pytest.raises(ValueError, match="sgd with momentum needs"):
        eng.train(x, y, order, 0, 1, 8, HYPER["sgd_momentum"], 0, [])
    eng2, params2, state2, x2, y2, order2 = small(rng, loss="mse", variant="rmsprop", last=LIN)
    with pytest.raises(ValueError, match="rmsprop with momentum needs"):
        eng2.train(x2, y2, order2, 0, 1, 8, HYPER["rmsprop_momentum"], 0, [])


def test_predict_errors(rng):
    eng, params, state, x, y, order = small(rng)
    out = np.empty((20, 3), np.float32)
    with pytest.raises(ValueError, match=r"out: expected shape \(20, 3\)"):
        eng.predict(x, np.empty((20, 2), np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        eng.predict(x, np.empty((20, 3), np.float64))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        eng.predict(x.astype(np.float64), out)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 4\)"):
        eng.predict(x[:, :2].copy(), out)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        eng.predict(x, ro)
    with pytest.raises(ValueError, match="must not share memory"):
        eng.predict(x[:1], np.ndarray((1, 3), np.float32, buffer=params[0]))
    with pytest.raises(ValueError, match="must not share memory with x"):
        eng.predict(x[:1], np.ndarray((1, 3), np.float32, buffer=x))
    with pytest.raises(TypeError, match="out: expected a numpy array"):
        eng.predict(x, None)


# ---- (d) shuffled_order --------------------------------------------------------------------

def test_shuffled_order(rng):
    seed = int(rng.integers(0, 2**63))
    for n in (0, 1, 2, 17, 100_000):
        a = _C.shuffled_order(n, seed)
        assert a.dtype == np.int64 and a.shape == (n,)
        np.testing.assert_array_equal(np.sort(a), np.arange(n))
        np.testing.assert_array_equal(a, _C.shuffled_order(n, seed))
    b = _C.shuffled_order(1000, seed + 1)
    assert not np.array_equal(_C.shuffled_order(1000, seed), b)
    assert not np.array_equal(b, np.arange(1000))
    with pytest.raises(ValueError, match="n must be >= 0"):
        _C.shuffled_order(-1, 0)


def test_the_python_shuffle_is_the_same_order(rng, monkeypatch):
    """Where nothing is compiled, epoch_order's Python twin gives the C++ order: a seeded run
    on the numpy backend trained differently with and without the extension built."""
    from pynn import engine

    for n in (0, 1, 2, 3, 17, 5000):
        for seed in (0, 2**63 - 2, int(rng.integers(0, 2**63))):
            np.testing.assert_array_equal(engine.shuffled_order(n, seed),
                                          _C.shuffled_order(n, seed))

    def seeded_fit():
        pynn.set_seed(4)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="tanh"),
                                 pynn.Dense(1)])
        model.compile(optimizer="sgd", loss="mse", backend="numpy")
        x = np.arange(60, dtype=np.float32).reshape(20, 3) / 60
        model.fit(x, x[:, :1], epochs=3, batch_size=4, verbose=0)
        return model.get_weights()

    built = seeded_fit()
    monkeypatch.setattr(engine, "_native_module", lambda: None)
    for a, b in zip(seeded_fit(), built):
        np.testing.assert_array_equal(a, b)


def test_the_python_shuffles_rejection_threshold_is_cs():
    """C++'s (0 - bound) % bound on uint64 is 2**64 mod bound; Python's (-bound) % bound is 0,
    which accepted draws the C++ rejects (orders apart for n near 1e9)."""
    from pynn import engine

    for bound in (1, 2, 3, 1_000_003, 2**63 + 5):
        assert engine.lemire_threshold(bound) == 2**64 % bound
    assert engine.lemire_threshold(1_000_003) == 350_687


def test_shuffled_order_is_uniform_enough():
    # Each of the 6 orders of 3 items appears about equally often over many seeds.
    counts = {}
    for s in range(6000):
        key = tuple(_C.shuffled_order(3, s))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 6
    assert all(800 < c < 1200 for c in counts.values())


def test_train_refuses_outputs_that_share_memory_with_x(rng):
    eng = _C.DenseEngine([2, 1], [0], [0.0], [True], "mse", 0.0, "sgd", 4)
    eng.bind([np.ones((2, 1), np.float32), np.zeros(1, np.float32)], [True], [[], []])
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    with pytest.raises(ValueError, match="outputs: must not share memory with x"):
        eng.train(x, np.zeros((4, 1), np.float32), np.arange(4, dtype=np.int64), 0, 1, 4,
                  dict(lr=0.01, momentum=0.0, nesterov=False), 0, [],
                  outputs=np.ndarray((4, 1), np.float32, buffer=x))


def test_train_checks_the_ema_momentum_itself(rng):
    eng = _C.DenseEngine([2, 1], [0], [0.0], [True], "mse", 0.0, "sgd", 4)
    W, b = np.ones((2, 1), np.float32), np.zeros(1, np.float32)
    eng.bind([W, b], [True], [[np.zeros_like(W)], [np.zeros_like(b)]])
    with pytest.raises(ValueError, match="ema_momentum"):
        eng.train(np.ones((4, 2), np.float32), np.zeros((4, 1), np.float32),
                  np.arange(4, dtype=np.int64), 0, 1, 4,
                  dict(lr=0.01, momentum=0.0, nesterov=False, use_ema=1, ema_momentum=1.5), 1,
                  [])


def test_train_refuses_what_it_would_overwrite_or_misread(rng):
    """order, y and sample_weight sharing memory with what train writes (the bound arrays,
    batch normalization's, outputs) were read after being overwritten: out-of-range indices
    and labels (a segfault); a big-endian order was read as little-endian; a huge last batch
    sized the result (8 TiB) before the range was checked."""
    eng, params, state, x, y, order = small(rng)
    x, y, order = x[:8], y[:8], order[:8]  # one batch of 8: an int64 view of W0 holds 12
    h = HYPER["adam"]
    outputs = np.empty((8, 3), np.float32)
    with pytest.raises(ValueError, match="order: must not share memory"):
        eng.train(x, y, params[0].reshape(-1).view(np.int64)[:8], 0, 1, 8, h, 0, [])
    shared = np.zeros(16 + 24, np.float32)
    as_order = shared[:16].view(np.int64)
    as_order[:] = np.arange(8)
    with pytest.raises(ValueError, match="order: must not share memory"):
        eng.train(x, y, as_order, 0, 1, 8, h, 0, [], None, shared[:24].reshape(8, 3))
    labels = shared[:8].view(np.int32)
    labels[:] = y
    with pytest.raises(ValueError, match="outputs: must not share memory with y"):
        eng.train(x, labels, order, 0, 1, 8, h, 0, [], None, shared[4:28].reshape(8, 3))
    with pytest.raises(ValueError, match="sample_weight: must not share memory"):
        eng.train(x, y, order, 0, 1, 8, h, 0, [], state[0][0].reshape(-1)[:8])
    with pytest.raises(TypeError, match=r"order: expected dtype int64, got >i8"):
        eng.train(x, y, order.astype(">i8"), 0, 1, 8, h, 0, [])
    for first, last in ((0, 2**40), (-2**63, 2**63 - 1)):
        with pytest.raises(ValueError, match="first_batch/last_batch"):
            eng.train(x, y, order, first, last, 8, h, 0, [])
    eng.train(x, y, order, 0, 1, 8, h, 0, [], None, outputs)  # the same, apart: fine
    # a batch size past the rows: one batch of all of them (n + bs - 1 overflowed first)
    assert eng.train(x, y, order, 0, 1, 2**63 - 1, h, 0, []).shape == (1, 1)


def test_an_empty_batch_range_past_a_short_last_batch(rng):
    """first == last == the batch count with a short last batch (20 rows in 8s): the chunk's
    start, 24, lay past its end, 20 (a reversed copy range: std::length_error)."""
    eng, params, state, x, y, order = small(rng)
    assert eng.train(x, y, order, 3, 3, 8, HYPER["adam"], 0, []).shape == (0, 1)


def test_batch_normalizations_of_two_layers_are_separate_buffers():
    """Both are written in place each step: the inputs' moving mean given as layer 0's gamma
    was accepted and silently mixed into both (losses 5.1 instead of 0.33)."""
    eng = _C.DenseEngine([8, 8, 3], [RELU, 0], [0.0, 0.0], [True, True], "mse", 0.0, "sgd", 16)
    params = [np.zeros((8, 8), np.float32), np.zeros(8, np.float32),
              np.zeros((8, 3), np.float32), np.zeros(3, np.float32)]
    eng.bind(params, [True, True], [[], [], [], []])
    shared = np.zeros(8, np.float32)
    eng.set_batchnorm(-1, False, 0.5, 1e-3, True, None, None, shared, np.ones(8, np.float32),
                      [], [])
    with pytest.raises(ValueError, match="another layer's batch normalization arrays"):
        eng.set_batchnorm(0, False, 0.5, 1e-3, True, shared, np.zeros(8, np.float32),
                          np.zeros(8, np.float32), np.ones(8, np.float32), [], [])
    # a layer set again replaces its own arrays: no clash with itself
    eng.set_batchnorm(-1, False, 0.5, 1e-3, True, None, None, shared, np.ones(8, np.float32),
                      [], [])


def test_train_reads_only_the_order_and_labels_it_checked():
    """Another thread writing `order` while train runs without the GIL: an entry was checked,
    then read again for the gather, so an unchecked one (1 << 40) could be used (a segfault
    within ~20 s of such writes); train now copies the batches' order and labels first."""
    code = """
import threading, time, numpy as np, pynn._C as C
n, d, k = 4000, 32, 10
e = C.DenseEngine([d, 16, k], [1, 0], [0.0, 0.0], [True, True], "softmax_xent_sparse", 0.0,
                  "sgd", 256, True)
P = [np.full((d, 16), 0.01, np.float32), np.zeros(16, np.float32),
     np.full((16, k), 0.01, np.float32), np.zeros(k, np.float32)]
e.bind(P, [True, True], [[], [], [], []])
x = np.random.rand(n, d).astype(np.float32); y = np.random.randint(0, k, n).astype(np.int32)
order = np.arange(n, dtype=np.int64)
stop = False
def flip():
    while not stop:
        order[-1] = 1 << 40; y[7] = 1 << 30
        order[-1] = n - 1; y[7] = 3
threading.Thread(target=flip, daemon=True).start()
done = refused = 0
t0 = time.time()
while time.time() - t0 < 4:
    try:
        e.train(x, y, order, 0, (n + 255) // 256, 256, {"lr": 0.01}, 0, []); done += 1
    except ValueError:
        refused += 1
stop = True
print("ok", done + refused)
"""
    out = run_python(code, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok"), out.stdout


def test_sparse_cross_entropy_labels_may_share_memory_with_the_gradient(rng):
    """The labels were checked, then read while the gradient rows were written over them
    (class indices from float bit patterns: out-of-range writes); the kernel reads a copy."""
    logits = rng.random((4096, 2), dtype=np.float32)
    d = np.zeros((4096, 2), np.float32)
    labels = d.reshape(-1)[:4096].view(np.int32)
    labels[:] = rng.integers(0, 2, 4096)
    want_labels = labels.copy()
    want_d = np.empty_like(d)
    want = _C.softmax_xent_sparse(logits, want_labels, want_d, 1.0)
    got = _C.softmax_xent_sparse(logits, labels, d, 1.0)
    assert got == want
    np.testing.assert_array_equal(d, want_d)

