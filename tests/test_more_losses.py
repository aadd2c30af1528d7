"""Keras 3's other losses (MAPE, MSLE, log-cosh, hinges, KL divergence, Poisson, cosine
similarity, the focal cross-entropies): values against float64 NumPy references written
from Keras' formulas, finite-difference gradients, training on the numpy and cpu backends
(the native engine falls back), the fake CuPy backend, names and files, errors, and the
`mape`/`msle` metrics."""

from __future__ import annotations

import pickle
import sys

import fake_cupy
import numpy as np
import pytest
from conftest import import_keras, requires_backend
from gradcheck import assert_close_grad, numeric_grad

import pynn
from pynn import engine as engine_mod
from pynn import losses, metrics

EPS = 1e-7  # keras.backend.epsilon()


# ---- references: Keras 3's formulas (keras/src/losses/losses.py), per sample, in float64 ------
def _hinge_labels(t):
    # convert_binary_labels_to_hinge: 0/1 labels (all of them) become -1/1
    return 2 * t - 1 if np.isin(t, (0, 1)).all() else t


def _l2_normalize(x):
    # keras.ops.normalize(order=2): x * min(rsqrt(sum x^2), 1 / epsilon)
    with np.errstate(divide="ignore"):
        inv = 1 / np.sqrt((x * x).sum(axis=-1, keepdims=True))
    return x * np.minimum(inv, 1 / EPS)


def focal_reference(t, p, gamma=2.0, alpha=0.25, balance=False, logits=False,
                    smoothing=0.0):
    """Keras 3's binary_focal_crossentropy per sample (losses.py), in float64."""
    t = t * (1 - smoothing) + 0.5 * smoothing
    if logits:
        bce = np.logaddexp(0, p) - p * t
        p = 1 / (1 + np.exp(-p))
    else:
        pc = np.clip(p, EPS, 1 - EPS)
        bce = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
    focal = (1 - (t * p + (1 - t) * (1 - p))) ** gamma * bce
    if balance:
        focal = focal * (alpha * t + (1 - alpha) * (1 - t))
    return np.mean(focal, axis=-1)


def categorical_focal_reference(t, p, alpha=0.25, gamma=2.0, logits=False, smoothing=0.0):
    """Keras 3's categorical_focal_crossentropy per sample (losses.py), in float64."""
    t = t * (1 - smoothing) + smoothing / t.shape[-1]
    if logits:
        e = np.exp(p - p.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
    o = np.clip(p / p.sum(axis=-1, keepdims=True), EPS, 1 - EPS)
    return np.sum(np.asarray(alpha) * (1 - o) ** gamma * -t * np.log(o), axis=-1)


REFERENCES = {
    "mape": lambda t, p: 100 * np.mean(np.abs((t - p) / np.maximum(np.abs(t), EPS)), axis=-1),
    "msle": lambda t, p: np.mean((np.log(np.maximum(p, EPS) + 1)
                                  - np.log(np.maximum(t, EPS) + 1)) ** 2, axis=-1),
    "log_cosh": lambda t, p: np.mean((p - t) + np.logaddexp(0, -2 * (p - t)) - np.log(2),
                                     axis=-1),  # Keras' x + softplus(-2x) - log 2
    "hinge": lambda t, p: np.mean(np.maximum(1 - _hinge_labels(t) * p, 0), axis=-1),
    "squared_hinge": lambda t, p: np.mean(np.maximum(1 - _hinge_labels(t) * p, 0) ** 2, axis=-1),
    "categorical_hinge": lambda t, p: np.maximum(
        np.max((1 - t) * p, axis=-1) - np.sum(t * p, axis=-1) + 1, 0),
    "kl_divergence": lambda t, p: np.sum(
        np.clip(t, EPS, 1) * np.log(np.clip(t, EPS, 1) / np.clip(p, EPS, 1)), axis=-1),
    "poisson": lambda t, p: np.mean(p - t * np.log(p + EPS), axis=-1),
    "cosine_similarity": lambda t, p: -np.sum(_l2_normalize(t) * _l2_normalize(p), axis=-1),
    "binary_focal_crossentropy": focal_reference,
    "categorical_focal_crossentropy": categorical_focal_reference,
}

CLASSES = {"mape": losses.MeanAbsolutePercentageError,
           "msle": losses.MeanSquaredLogarithmicError, "log_cosh": losses.LogCosh,
           "hinge": losses.Hinge, "squared_hinge": losses.SquaredHinge,
           "categorical_hinge": losses.CategoricalHinge, "kl_divergence": losses.KLDivergence,
           "poisson": losses.Poisson, "cosine_similarity": losses.CosineSimilarity,
           "binary_focal_crossentropy": losses.BinaryFocalCrossentropy,
           "categorical_focal_crossentropy": losses.CategoricalFocalCrossentropy}
NAMES = list(CLASSES)


def _reference(name, t, p, w=None):
    """Keras' reduction: per-sample losses, weighted, summed over the batch size (every entry
    of the per-sample loss counts, as for (N, T, F) outputs)."""
    per_sample = REFERENCES[name](np.asarray(t, np.float64), np.asarray(p, np.float64))
    if w is not None:
        per_sample = per_sample * np.reshape(w, (-1,) + (1,) * (per_sample.ndim - 1))
    return per_sample.sum() / per_sample.size


def _away(x, kinks, gap=1e-3):
    """x with every value at least `gap` from each kink (finite differences need smoothness)."""
    x = x.copy()
    for k in kinks:
        near = np.abs(x - k) < gap
        x[near] = k + np.where(x[near] >= k, gap, -gap) * 3
    return x


def _data(name, rng, shape, smooth=False):
    """(y_true, y_pred) of `shape` in the loss's domain; smooth: away from kinks and clips."""
    d = shape[-1]
    normal = rng.normal(size=shape)
    if name == "mape":
        t = rng.normal(size=shape) * 3
        return t, t + _away(normal, [0]) if smooth else normal * 3  # smooth: y_pred != y_true
    if name == "msle":
        t = rng.uniform(0, 4, size=shape) * (rng.random(shape) > 0.2)  # some zeros
        p = rng.uniform(-1, 4, size=shape)  # some negatives: clipped to epsilon, as in Keras
        return t, _away(p, [0]) if smooth else p
    if name == "log_cosh":
        t, p = normal * 2, rng.normal(size=shape) * 2
        assert np.allclose(np.log(np.cosh(p - t)), REFERENCES["log_cosh"](t[..., None],
                                                                          p[..., None]))
        return t, p
    if name in ("hinge", "squared_hinge"):
        t = rng.integers(0, 2, size=shape).astype(np.float64)
        if rng.random() < 0.5:
            t = 2 * t - 1  # -1/1 labels as well as 0/1
        p = normal * 1.5
        return t, _away(p, [1, -1]) if smooth else p
    if name == "categorical_hinge":
        t = np.eye(d)[rng.integers(0, d, size=shape[:-1])]
        p = normal * 2
        while smooth:  # no margin at the hinge's kink, no tie for the largest other score
            others = np.sort((1 - t) * p, axis=-1)
            margin = others[..., -1] - (t * p).sum(axis=-1) + 1
            gap = others[..., -1] - others[..., -2] if d > 1 else np.ones(shape[:-1])
            if (np.abs(margin) > 1e-2).all() and (gap > 1e-2).all():
                break
            p = rng.normal(size=shape) * 2
        return t, p
    if name == "kl_divergence":
        t = rng.dirichlet(np.ones(d), size=shape[:-1]) * (rng.random(shape) > 0.2)
        p = rng.dirichlet(np.ones(d), size=shape[:-1])
        return t, np.clip(p, 1e-3, 1 - 1e-3) if smooth else p
    if name == "poisson":
        return rng.poisson(2.0, size=shape).astype(np.float64), rng.uniform(0.05, 5, size=shape)
    if name == "cosine_similarity":
        return rng.normal(size=shape), normal
    if name == "binary_focal_crossentropy":
        t = rng.integers(0, 2, size=shape).astype(np.float64)
        p = rng.uniform(0, 1, size=shape)
        return t, np.clip(p, 1e-3, 1 - 1e-3) if smooth else p
    if name == "categorical_focal_crossentropy":
        t = np.eye(d)[rng.integers(0, d, size=shape[:-1])]
        if smooth:  # positive scores that need normalising, none clipped
            return t, rng.uniform(0.05, 1, size=shape)
        return t, rng.dirichlet(np.ones(d), size=shape[:-1])
    raise AssertionError(name)


def _value_and_grad(loss, t, p, w=None, backend="numpy"):
    b = pynn.get_backend(backend) if isinstance(backend, str) else backend
    y = loss.prepare_targets(t, p.shape[1:], p.dtype)
    yd, pd = b.asarray(y, y.dtype), b.asarray(p, p.dtype)
    wd = None if w is None else b.asarray(w, p.dtype)
    value, grad = loss.value_and_grad(b, pd, yd, wd)
    return value, b.to_numpy(grad)


ONE_OUTPUT_REFUSED = ("cosine_similarity", "categorical_focal_crossentropy")


def _shapes(name):
    features = (3, 129) if name in ONE_OUTPUT_REFUSED else (1, 3, 129)
    return [(n, d) for n in (1, 3, 17) for d in features]


# ---- (1) values ----------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("name", NAMES)
def test_value_is_keras_formula(rng, name, weighted):
    loss = losses.get(name)
    for shape in _shapes(name):
        t, p = _data(name, rng, shape)
        w = rng.uniform(0, 3, size=shape[0]) if weighted else None
        want = _reference(name, t, p, w)
        value, grad = _value_and_grad(loss, t, p, w)  # float64 on the numpy backend
        assert isinstance(value, float) and grad.dtype == np.float64 and grad.shape == p.shape
        np.testing.assert_allclose(value, want, rtol=1e-10, atol=1e-12, err_msg=f"{shape}")
        # float32, as a model computes it: float32 gradients, the value to float32 rounding
        f32 = np.float32
        value32, grad32 = _value_and_grad(loss, t, p.astype(f32), w)
        assert grad32.dtype == f32
        w32 = None if w is None else w.astype(f32)
        want32 = _reference(name, t.astype(f32), p.astype(f32), w32)
        np.testing.assert_allclose(value32, want32, rtol=2e-5, atol=2e-5, err_msg=f"{shape}")
        if not weighted:  # the standalone call, Keras' argument order
            np.testing.assert_allclose(loss(t, p), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_sequence_outputs_average_over_every_position(rng, name):
    """(N, T, F) predictions: Keras reduces the last axis, then averages over N * T."""
    t, p = _data(name, rng, (4, 5, 3))
    w = rng.uniform(0, 2, size=4)
    value, _ = _value_and_grad(losses.get(name), t, p, w)
    np.testing.assert_allclose(value, _reference(name, t, p, w), rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_one_d_inputs_read_as_keras_does(rng, name):
    """A standalone 1-D call: one value per sample for the element-wise losses, one
    sample's vector for those that sum over the last axis."""
    t, p = _data(name, rng, (1, 6))
    row = name in ("categorical_hinge", "kl_divergence", "cosine_similarity",
                   "categorical_focal_crossentropy")
    want = _reference(name, t, p) if row else _reference(name, t.reshape(6, 1), p.reshape(6, 1))
    np.testing.assert_allclose(losses.get(name)(t[0], p[0]), want, rtol=1e-10)


def test_edge_inputs_stay_finite_where_keras_does():
    f32 = np.float32
    cases = [  # (loss, y_true, y_pred, Keras' value written out)
        ("mape", [[0.0, 2.0]], [[1e-3, 1.0]], 100 * (1e-3 / EPS + 0.5) / 2),
        ("msle", [[0.0, 1.0]], [[-5.0, 0.0]], np.log1p(1.0) ** 2 / 2),
        ("log_cosh", [[0.0, 0.0]], [[1e4, -1e4]], 1e4 - np.log(2)),
        ("kl_divergence", [[0.0, 1.0]], [[1.0, 0.0]], 1e-7 * np.log(1e-7) - np.log(1e-7)),
        ("poisson", [[0.0, 3.0]], [[0.0, 0.0]], -3 * np.log(EPS) / 2),
        ("cosine_similarity", [[0.0, 0.0], [1.0, 0.0]], [[1.0, 2.0], [0.0, 0.0]], 0.0),
        ("categorical_hinge", [[0.0, 1.0]], [[1e30, -1e30]], 2e30 + 1),
    ]
    for name, t, p, keras_value in cases:
        for dtype in (np.float64, f32):
            value, grad = _value_and_grad(losses.get(name), np.array(t), np.array(p, dtype))
            assert np.isfinite(value) and np.isfinite(grad).all(), (name, dtype)
            np.testing.assert_allclose(value, keras_value, rtol=1e-5, err_msg=name)
            np.testing.assert_allclose(value, _reference(name, t, p), rtol=1e-5, err_msg=name)
    # below epsilon MSLE's and KLD's predictions are clipped: no gradient there, as in Keras
    _, grad = _value_and_grad(losses.get("msle"), np.array([[1.0]]), np.array([[-2.0]]))
    assert grad[0, 0] == 0
    _, grad = _value_and_grad(losses.get("kld"), np.array([[1.0]]), np.array([[-0.5]]))
    assert grad[0, 0] == 0


# ---- (2) gradients -------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(float64_numpy, rng, name):
    loss = losses.get(name)
    shapes = [(3, 4), (1, 2) if name in ONE_OUTPUT_REFUSED else (1, 1), (2, 3, 3)]
    for shape in shapes:
        t, p = _data(name, rng, shape, smooth=True)
        for w in (None, rng.uniform(0.2, 2, size=shape[0])):
            y = loss.prepare_targets(t, shape[1:], np.float64)
            value, grad = loss.value_and_grad(float64_numpy, p, y, w)

            def f(p=p, y=y, w=w):
                return loss.value_and_grad(float64_numpy, p, y, w)[0]

            assert_close_grad(grad, numeric_grad(f, p), rtol=1e-5, atol=1e-8,
                              what=f"{name} {shape} weighted={w is not None}")


def test_the_gradients_of_every_loss_are_not_zero(rng):
    """(a gradient check passes for a loss whose value and gradient are both wrong constants
    only if the value is constant too; this pins that each gradient moves)"""
    for name in NAMES:
        t, p = _data(name, rng, (5, 3), smooth=True)
        _, grad = _value_and_grad(losses.get(name), t, p)
        assert np.abs(grad).max() > 1e-4, name


# ---- (3) training, backends, the native engine's fall-back ---------------------------------
def _task(name, rng, n=64):
    """(x, y, output units, output activation) of a learnable task for the loss."""
    x = rng.normal(size=(n, 5)).astype(np.float32)
    w = rng.normal(size=(5, 3)) / np.sqrt(5)
    z = x @ w
    if name == "mape":
        return x, 2 + np.abs(z[:, :1]), 1, "linear"
    if name == "msle":
        return x, np.exp(z[:, :2]), 2, "linear"
    if name == "log_cosh":
        return x, z[:, :2], 2, "linear"
    if name in ("hinge", "squared_hinge"):
        return x, (z[:, :1] > 0).astype(np.float64), 1, "linear"
    if name == "categorical_hinge":
        return x, np.eye(3)[z.argmax(axis=1)], 3, "linear"
    if name == "kl_divergence":
        e = np.exp(2 * z)
        return x, e / e.sum(axis=1, keepdims=True), 3, "softmax"
    if name == "poisson":
        return x, rng.poisson(1 / (1 + np.exp(-z[:, :1]))).astype(np.float64), 1, "sigmoid"
    if name == "cosine_similarity":
        return x, z, 3, "linear"
    if name == "binary_focal_crossentropy":
        return x, (z[:, :2] > 0.3).astype(np.float64), 2, "sigmoid"
    if name == "categorical_focal_crossentropy":
        return x, np.eye(3)[z.argmax(axis=1)], 3, "softmax"
    raise AssertionError(name)


def _train(name, backend, x, y, units, act, w):
    pynn.set_seed(5)
    model = pynn.Sequential([pynn.Input((x.shape[1],)), pynn.Dense(8, activation="tanh"),
                             pynn.Dense(units, activation=act)])
    model.compile(pynn.optimizers.Adam(0.02), losses.get(name), backend=backend)
    before = model.evaluate(x, y, sample_weight=w)
    history = model.fit(x, y, sample_weight=w, epochs=5, batch_size=16, shuffle=False,
                        verbose=0)
    return model, before, history.history["loss"]


@requires_backend("cpu")
@pytest.mark.parametrize("name", NAMES)
def test_fit_on_numpy_and_cpu_gives_the_same_losses(rng, name):
    x, y, units, act = _task(name, rng)
    w = rng.uniform(0.5, 1.5, size=len(x))
    runs = {}
    for backend in ("numpy", "cpu"):
        model, before, history = _train(name, backend, x, y, units, act, w)
        after = model.evaluate(x, y, sample_weight=w)
        assert all(np.isfinite(history)) and after < before, (backend, before, history, after)
        # evaluate is the reference formula on the model's predictions (weights included)
        np.testing.assert_allclose(after, _reference(name, y, model.predict(x), w),
                                   rtol=2e-5, atol=1e-6)
        runs[backend] = history, model.predict(x)
    np.testing.assert_allclose(runs["cpu"][0], runs["numpy"][0], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(runs["cpu"][1], runs["numpy"][1], rtol=2e-3, atol=2e-4)


@requires_backend("cpu")
@pytest.mark.parametrize("name", NAMES)
def test_the_native_engine_falls_back_visibly(rng, name):
    x, y, units, act = _task(name, rng, n=8)
    model = pynn.Sequential([pynn.Input((x.shape[1],)), pynn.Dense(units, activation=act)])
    model.compile("sgd", losses.get(name), backend="cpu")
    reason = engine_mod.unsupported_reason(model)
    assert reason == f"loss {type(model.loss).__name__} (the engine has MSE, MAE, Huber and " \
        "the cross-entropies)"
    lines = []
    model.summary(print_fn=lines.append)
    assert "Training engine: layers (native engine not used: " in lines[0]
    with pytest.raises(ValueError, match="native engine cannot train this model"):
        model.fit(x, y, verbose=0, engine="native")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.engine_reason == reason
    # the same model with MSE does run natively: the loss alone made it fall back
    model.compile("sgd", "mse", backend="cpu")
    if act != "softmax":  # (the engine takes softmax with the cross-entropies only)
        assert engine_mod.unsupported_reason(model) is None


@pytest.fixture
def fake_cupy_backend(monkeypatch):
    from pynn.backend.cupy_backend import CupyBackend

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.make_fake_cupy())
    return CupyBackend()


@pytest.mark.parametrize("name", NAMES)
def test_losses_run_on_gpu_arrays(fake_cupy_backend, rng, name):
    """CuPy arrays (CuPy's rules on the host): the losses use backend.xp, never NumPy, and give
    the numpy backend's values and gradients."""
    t, p = _data(name, rng, (7, 3))
    w = rng.uniform(0, 2, size=7)
    loss = losses.get(name)
    for dtype in (np.float32, np.float64):
        value, grad = _value_and_grad(loss, t, p.astype(dtype), w, backend=fake_cupy_backend)
        want_value, want_grad = _value_and_grad(loss, t, p.astype(dtype), w)
        assert type(value) is float and grad.dtype == dtype
        np.testing.assert_allclose(value, want_value, rtol=1e-6)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-12)


# ---- (4) names, configs, files -------------------------------------------------------------
ALIASES = {
    "mape": losses.MeanAbsolutePercentageError,
    "mean_absolute_percentage_error": losses.MeanAbsolutePercentageError,
    "MAPE": losses.MeanAbsolutePercentageError,
    "msle": losses.MeanSquaredLogarithmicError,
    "mean_squared_logarithmic_error": losses.MeanSquaredLogarithmicError,
    "MSLE": losses.MeanSquaredLogarithmicError,
    "log_cosh": losses.LogCosh, "logcosh": losses.LogCosh,
    "hinge": losses.Hinge, "squared_hinge": losses.SquaredHinge,
    "categorical_hinge": losses.CategoricalHinge,
    "kl_divergence": losses.KLDivergence, "kld": losses.KLDivergence,
    "KLD": losses.KLDivergence, "kullback_leibler_divergence": losses.KLDivergence,
    "poisson": losses.Poisson, "cosine_similarity": losses.CosineSimilarity,
    "categorical_focal_crossentropy": losses.CategoricalFocalCrossentropy,
    "CategoricalFocalCrossentropy": losses.CategoricalFocalCrossentropy,
}
KERAS_NAMES = {  # each class's Keras 3 default `name`
    losses.MeanAbsolutePercentageError: "mean_absolute_percentage_error",
    losses.MeanSquaredLogarithmicError: "mean_squared_logarithmic_error",
    losses.LogCosh: "log_cosh", losses.Hinge: "hinge", losses.SquaredHinge: "squared_hinge",
    losses.CategoricalHinge: "categorical_hinge", losses.KLDivergence: "kl_divergence",
    losses.Poisson: "poisson", losses.CosineSimilarity: "cosine_similarity",
    losses.CategoricalFocalCrossentropy: "categorical_focal_crossentropy",
}


@pytest.mark.parametrize("alias", ALIASES)
def test_names_classes_and_configs_round_trip(alias):
    cls = ALIASES[alias]
    loss = losses.get(alias)
    assert type(loss) is cls and loss.name == KERAS_NAMES[cls]
    assert type(losses.get(cls.__name__)) is cls and type(losses.get(cls)) is cls
    spec = losses.serialize(loss)
    assert spec["class_name"] == cls.__name__ and "custom" not in spec
    twin = losses.get(spec)
    assert type(twin) is cls and twin.get_config() == loss.get_config()
    assert type(pickle.loads(pickle.dumps(loss))) is cls
    with pytest.raises(ValueError, match="reduction must be one of"):
        cls(reduction="total")
    assert losses.get(losses.serialize(cls(reduction="sum"))).reduction == "sum"
    # Keras' idiom: from_config(get_config()), a name given included (it had no from_config)
    named = cls(name="mine")
    again = cls.from_config(named.get_config())
    assert type(again) is cls and again.name == "mine"
    assert again.get_config() == named.get_config() and "name" not in loss.get_config()


def test_loss_arguments_take_keras_positions_and_are_checked():
    assert losses.BinaryCrossentropy(True, 0.1, -1).get_config() == {
        "from_logits": True, "label_smoothing": 0.1}
    assert losses.Huber(2.0, "sum_over_batch_size", "h").name == "h"
    assert losses.CosineSimilarity(-1, "sum_over_batch_size").get_config() == {"axis": -1}
    assert losses.SparseCategoricalCrossentropy(True, 3).get_config()["ignore_class"] == 3
    for delta in ("1", True, 0, -1.0, float("nan"), None):  # ('1': a bare '>' TypeError)
        with pytest.raises(ValueError, match="delta must be a number > 0"):
            losses.Huber(delta)


def test_cosine_similarity_keeps_its_axis():
    loss = losses.CosineSimilarity(axis=1)
    assert loss.get_config() == {"axis": 1} and repr(loss) == "CosineSimilarity(axis=1)"
    twin = losses.get(losses.serialize(loss))
    assert type(twin) is losses.CosineSimilarity and twin.axis == 1
    assert losses.get({"class_name": "CosineSimilarity", "config": {}}).axis == -1
    t, p = np.array([[1.0, 2.0, 2.0]]), np.array([[2.0, 4.0, 4.0]])
    assert loss(t, p) == pytest.approx(-1.0) == losses.CosineSimilarity()(t, p)


@pytest.mark.parametrize("ext", ["npz", "h5"])
@pytest.mark.parametrize("name", NAMES)
def test_a_compiled_model_saves_and_loads_with_the_loss(tmp_path, rng, name, ext):
    if ext == "h5":
        pytest.importorskip("h5py")
    x, y, units, act = _task(name, rng, n=16)
    model = pynn.Sequential([pynn.Input((x.shape[1],)), pynn.Dense(units, activation=act)])
    loss = losses.CosineSimilarity(axis=1) if name == "cosine_similarity" else name
    model.compile("adam", loss)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / f"m.{ext}")
    loaded = pynn.load_model(tmp_path / f"m.{ext}")
    assert type(loaded.loss) is CLASSES[name]
    assert loaded.loss.get_config() == model.loss.get_config()
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)
    twin = pickle.loads(pickle.dumps(model))
    assert type(twin.loss) is CLASSES[name]
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)  # and trains on


# ---- (5) bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("name,targets,message", [
    ("hinge", [[0.5], [1.0]], r"hinge: targets must be -1 or 1 .*got 0\.5"),
    ("squared_hinge", [[2.0], [1.0]], r"squared_hinge: targets must be -1 or 1 .*got 2"),
    ("hinge", [[-1.0], [0.0]], r"hinge: targets mix -1 and 0"),
    ("msle", [[-0.5], [1.0]], r"mean_squared_logarithmic_error: targets must lie in \[0, inf\]"),
    ("poisson", [[-1.0], [1.0]], r"poisson: targets must lie in \[0, inf\] \(counts"),
    ("kld", [[1.5], [0.0]], r"kl_divergence: targets must lie in \[0, 1\]"),
    ("mape", [[np.nan], [1.0]], r"NaN"),
])
def test_bad_targets_are_named(name, targets, message):
    loss = losses.get(name)
    with pytest.raises(ValueError, match=message):
        loss(np.array(targets), np.ones((2, 1)))
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile("sgd", loss)
    with pytest.raises(ValueError, match=message):
        model.fit(np.ones((2, 2)), np.array(targets), verbose=0)


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_shapes_are_refused(name):
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(3, activation="sigmoid")])
    model.compile("sgd", name)
    with pytest.raises(ValueError, match=r"targets have shape \(4, 2\) but the model's "
                                         r"predictions have shape \(4, 3\)"):
        model.fit(np.ones((4, 2)), np.zeros((4, 2)), verbose=0)
    with pytest.raises(ValueError, match="targets have shape"):
        losses.get(name)(np.zeros((5, 3)), np.zeros((4, 3)))


def test_cosine_similarity_refuses_what_it_cannot_compare():
    one = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    one.compile("sgd", "cosine_similarity")
    with pytest.raises(ValueError, match="cosine_similarity needs 2 or more outputs"):
        one.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(3)])
    model.compile("sgd", losses.CosineSimilarity(axis=2))
    with pytest.raises(ValueError, match=r"axis=2 is not the last axis .*axis=-1"):
        model.fit(np.ones((4, 2)), np.ones((4, 3)), verbose=0)
    for axis in ("1", 1.0, True):
        with pytest.raises(TypeError, match="axis must be an int"):
            losses.CosineSimilarity(axis=axis)
    for axis in (0, -2):  # the batch axis, or one before the last
        with pytest.raises(NotImplementedError, match="last axis"):
            losses.CosineSimilarity(axis=axis)


def test_hinge_reads_zero_one_labels_as_keras_does(rng):
    p = rng.normal(size=(6, 2))
    t01 = rng.integers(0, 2, size=(6, 2)).astype(np.float64)
    for name in ("hinge", "squared_hinge"):
        loss = losses.get(name)
        assert loss(t01, p) == pytest.approx(loss(2 * t01 - 1, p), rel=1e-12)
        literal = np.maximum(1 - t01 * p, 0) ** (2 if name == "squared_hinge" else 1)
        assert loss(t01, p) != pytest.approx(literal.mean())  # 0 is not taken as a label 0
    # class weights read the 0/1 labels as given (the loss converts them itself)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.integers(0, 2, size=(20, 1))
    runs = []
    for kw in ({"class_weight": {0: 2.0, 1: 0.5}}, {"sample_weight": np.where(y[:, 0], 0.5, 2.0)}):
        pynn.set_seed(1)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
        model.compile("sgd", "hinge")
        runs.append(model.fit(x, y, epochs=2, batch_size=5, shuffle=False, verbose=0,
                              **kw).history["loss"])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-6)
    # all-ones batches are the same labels either way; bool labels are 0/1
    assert losses.Hinge()(np.ones((3, 1), bool), p[:3, :1]) == pytest.approx(
        np.maximum(1 - p[:3, 0], 0).mean())


# ---- metrics -------------------------------------------------------------------------------
def test_mape_and_msle_metrics_have_keras_names_and_values(rng):
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = np.abs(rng.normal(size=(30, 2))) + 0.5
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2)])
    model.compile("sgd", "mse", metrics=["mape", "msle", metrics.MeanAbsolutePercentageError(),
                                         "MeanSquaredLogarithmicError"])
    history = model.fit(x, y, epochs=1, batch_size=7, verbose=0).history
    assert list(history) == ["loss", "mape", "msle", "mean_absolute_percentage_error",
                             "MeanSquaredLogarithmicError"]
    logs = model.evaluate(x, y, batch_size=7, return_dict=True)
    p = model.predict(x)
    for key, name in [("mape", "mape"), ("msle", "msle"),
                      ("mean_absolute_percentage_error", "mape"),
                      ("MeanSquaredLogarithmicError", "msle")]:
        np.testing.assert_allclose(logs[key], _reference(name, y, p), rtol=1e-5)
    assert metrics.mean_absolute_percentage_error(y, p) == pytest.approx(
        losses.get("mape")(y, p), rel=1e-5)
    assert metrics.mean_squared_logarithmic_error(y, p) == pytest.approx(
        losses.get("msle")(y, p), rel=1e-5)
    for name in ("mape", "msle", "mean_absolute_percentage_error"):
        assert metrics.get(name).direction == "down"
        assert pynn.callbacks._higher_is_better(name, "auto", model) is False


def test_mape_metric_objects_save_and_load(tmp_path, rng):
    x = rng.normal(size=(12, 3)).astype(np.float32)
    y = rng.normal(size=(12, 1)) + 3
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mape", metrics=[metrics.MeanSquaredLogarithmicError(name="m"), "mape"])
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert loaded.metrics_names == model.metrics_names == ["loss", "m", "mape"]
    np.testing.assert_allclose(loaded.evaluate(x, y), model.evaluate(x, y), rtol=1e-6)


@requires_backend("cpu")
def test_mape_metric_on_the_native_engine(rng):
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = x[:, :1] * 2 + 5
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("adam", "mse", metrics=["mape", "msle"], backend="cpu")
    assert engine_mod.unsupported_reason(model) is None
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert model.engine_reason is None
    logs = model.evaluate(x, y, return_dict=True)
    np.testing.assert_allclose(logs["mape"], _reference("mape", y, model.predict(x)), rtol=1e-5)


# ---- Keras itself, where it is installed ---------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_against_keras(rng, name):
    keras = import_keras()
    keras_loss = keras.losses.get(
        {"mape": "MeanAbsolutePercentageError", "msle": "MeanSquaredLogarithmicError",
         "log_cosh": "LogCosh", "hinge": "Hinge", "squared_hinge": "SquaredHinge",
         "categorical_hinge": "CategoricalHinge", "kl_divergence": "KLDivergence",
         "poisson": "Poisson", "cosine_similarity": "CosineSimilarity",
         "binary_focal_crossentropy": "BinaryFocalCrossentropy",
         "categorical_focal_crossentropy": "CategoricalFocalCrossentropy"}[name])
    for shape in _shapes(name):
        t, p = _data(name, rng, shape)
        p = p.astype(np.float32)
        w = rng.uniform(0, 3, size=shape[0])
        want = float(keras_loss(t.astype(np.float32), p, sample_weight=w.astype(np.float32)))
        value, _ = _value_and_grad(losses.get(name), t, p, w)
        np.testing.assert_allclose(value, want, rtol=1e-4, atol=1e-5, err_msg=f"{shape}")


# ---- BinaryFocalCrossentropy's options ------------------------------------------------------
FOCAL_OPTIONS = [
    {},
    {"from_logits": True},
    {"apply_class_balancing": True, "alpha": 0.1, "gamma": 3.0},
    {"label_smoothing": 0.2, "gamma": 0.5},
    {"from_logits": True, "apply_class_balancing": True, "label_smoothing": 0.1},
    {"gamma": 0.0},
]


def _focal_reference(options, t, p):
    return focal_reference(t, p, gamma=options.get("gamma", 2.0),
                           alpha=options.get("alpha", 0.25),
                           balance=options.get("apply_class_balancing", False),
                           logits=options.get("from_logits", False),
                           smoothing=options.get("label_smoothing", 0.0)).mean()


def _focal_data(rng, shape, options):
    t = rng.integers(0, 2, size=shape).astype(np.float64)
    p = rng.normal(size=shape) * 3 if options.get("from_logits") else \
        rng.uniform(1e-3, 1 - 1e-3, size=shape)
    return t, p


@pytest.mark.parametrize("options", FOCAL_OPTIONS, ids=str)
def test_focal_options_values_and_gradients(float64_numpy, rng, options):
    loss = losses.BinaryFocalCrossentropy(**options)
    for shape in [(1, 1), (3, 4), (17, 3)]:
        t, p = _focal_data(rng, shape, options)
        y = loss.prepare_targets(t, shape[1:], np.float64)  # (value_and_grad smooths it)
        value, grad = loss.value_and_grad(float64_numpy, p, y)
        np.testing.assert_allclose(value, _focal_reference(options, t, p), rtol=1e-10)

        def f(p=p, y=y):
            return loss.value_and_grad(float64_numpy, p, y)[0]

        assert_close_grad(grad, numeric_grad(f, p), rtol=1e-5, atol=1e-8,
                          what=f"{options} {shape}")


def test_focal_with_gamma_0_is_binary_cross_entropy(rng):
    t, p = _focal_data(rng, (9, 2), {})
    focal = losses.BinaryFocalCrossentropy(gamma=0.0)
    np.testing.assert_allclose(focal(t, p), losses.BinaryCrossentropy()(t, p), rtol=1e-6)
    # with gamma the confident right answers weigh less: below BCE
    assert losses.BinaryFocalCrossentropy()(t, p) < losses.BinaryCrossentropy()(t, p)


@pytest.mark.parametrize("options", FOCAL_OPTIONS, ids=str)
def test_focal_options_against_keras(rng, options):
    keras = import_keras()
    t, p = _focal_data(rng, (16, 3), options)
    want = float(keras.losses.BinaryFocalCrossentropy(**options)(t.astype(np.float32),
                                                                 p.astype(np.float32)))
    got = losses.BinaryFocalCrossentropy(**options)(t, p.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    config = losses.BinaryFocalCrossentropy(**options).get_config()
    for key, value in config.items():
        assert keras.losses.BinaryFocalCrossentropy(**options).get_config()[key] == \
            pytest.approx(value), key


@pytest.mark.parametrize("kwargs,error,words", [
    ({"gamma": -1.0}, ValueError, "gamma must be a finite number >= 0"),
    ({"alpha": 1.5}, ValueError, "alpha"),
    ({"label_smoothing": 2.0}, ValueError, "label_smoothing"),
    ({"axis": 0}, NotImplementedError, "last axis"),
])
def test_focal_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        losses.BinaryFocalCrossentropy(**kwargs)


def test_focal_reads_metrics_as_labels_and_keeps_its_name(tmp_path, rng):
    # several sigmoid outputs under a focal loss are labels, as under binary cross-entropy,
    # whatever name= the loss object has
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, :3] > 0).astype(np.float32)
    results = []
    for loss in (losses.BinaryCrossentropy(), losses.BinaryFocalCrossentropy(name="focal")):
        pynn.set_seed(1)
        model = pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(3, activation="sigmoid")])
        model.compile("adam", loss, metrics=["accuracy", "precision", "AUC"])
        logs = model.evaluate(x, y, return_dict=True)
        results.append([logs[k] for k in ("accuracy", "precision", "AUC")])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6)
    model.save(tmp_path / "m.npz")
    assert pynn.load_model(tmp_path / "m.npz").loss.name == "focal"


def test_focal_with_gamma_below_1_warns_nothing_at_saturated_outputs():
    import warnings

    loss = losses.BinaryFocalCrossentropy(gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad = _value_and_grad(loss, np.array([[1.0, 0.0]]),
                                      np.array([[1.0, 0.0]], np.float32))
    assert np.isfinite(value) and np.all(np.isfinite(grad))


# ---- CategoricalFocalCrossentropy's options -------------------------------------------------
CATEGORICAL_FOCAL_OPTIONS = [
    {},
    {"from_logits": True},
    {"alpha": [0.2, 1.0, 3.0, 0.5], "gamma": 1.5},
    {"label_smoothing": 0.2, "gamma": 0.5},
    {"from_logits": True, "alpha": 1, "label_smoothing": 0.1, "gamma": 4.0},
    {"gamma": 0.0},
]


def _categorical_focal_data(rng, shape, options):
    t = np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
    p = rng.normal(size=shape) * 3 if options.get("from_logits") else \
        rng.uniform(0.05, 1, size=shape)
    return t, p


@pytest.mark.parametrize("options", CATEGORICAL_FOCAL_OPTIONS, ids=str)
def test_categorical_focal_options_values_and_gradients(float64_numpy, rng, options):
    loss = losses.CategoricalFocalCrossentropy(**options)
    for shape in [(1, 4), (3, 4), (17, 4), (2, 5, 4)]:
        t, p = _categorical_focal_data(rng, shape, options)
        y = loss.prepare_targets(t, shape[1:], np.float64)  # (value_and_grad smooths it)
        value, grad = loss.value_and_grad(float64_numpy, p, y)
        want = categorical_focal_reference(
            t, p, alpha=options.get("alpha", 0.25), gamma=options.get("gamma", 2.0),
            logits=options.get("from_logits", False),
            smoothing=options.get("label_smoothing", 0.0)).mean()
        np.testing.assert_allclose(value, want, rtol=1e-10)

        def f(p=p, y=y):
            return loss.value_and_grad(float64_numpy, p, y)[0]

        assert_close_grad(grad, numeric_grad(f, p), rtol=1e-5, atol=1e-8,
                          what=f"{options} {shape}")


def test_categorical_focal_with_gamma_0_and_alpha_1_is_the_cross_entropy(rng):
    t, p = _categorical_focal_data(rng, (9, 4), {})
    p = p / p.sum(axis=1, keepdims=True)
    focal = losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=0.0)
    np.testing.assert_allclose(focal(t, p), losses.CategoricalCrossentropy()(t, p), rtol=1e-6)
    # with gamma the confident right answers weigh less: below alpha * the cross-entropy
    assert losses.CategoricalFocalCrossentropy(alpha=1.0)(t, p) < focal(t, p)
    # a row of zeros (all of it dropped): clipped probabilities, finite, no gradient
    value, grad = _value_and_grad(focal, np.array([[0.0, 1.0]]), np.zeros((1, 2), np.float32))
    assert value == pytest.approx(-np.log(1e-7), rel=1e-5) and not grad.any()


@pytest.mark.parametrize("options", CATEGORICAL_FOCAL_OPTIONS, ids=str)
def test_categorical_focal_options_against_keras(rng, options):
    keras = import_keras()
    t, p = _categorical_focal_data(rng, (16, 4), options)
    w = rng.uniform(0, 2, 16)
    want = float(keras.losses.CategoricalFocalCrossentropy(**options)(
        t.astype(np.float32), p.astype(np.float32), sample_weight=w.astype(np.float32)))
    got = losses.CategoricalFocalCrossentropy(**options)(t, p.astype(np.float32), w)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    config = losses.CategoricalFocalCrossentropy(**options).get_config()
    for key, value in config.items():
        assert keras.losses.CategoricalFocalCrossentropy(**options).get_config()[key] == \
            pytest.approx(value), key


@pytest.mark.parametrize("kwargs,error,words", [
    ({"gamma": -1.0}, ValueError, "gamma must be a finite number >= 0"),
    ({"alpha": -0.5}, ValueError, "alpha must be a finite number >= 0 or a list"),
    ({"alpha": [0.5, np.nan]}, ValueError, "alpha must be a finite number >= 0 or a list"),
    ({"alpha": "0.5"}, ValueError, "alpha must be a finite number >= 0 or a list"),
    ({"alpha": [[1.0]]}, ValueError, "alpha must be a finite number >= 0 or a list"),
    ({"alpha": True}, ValueError, "alpha must be a finite number >= 0 or a list"),
    ({"label_smoothing": 2.0}, ValueError, "label_smoothing"),
    ({"axis": 0}, NotImplementedError, "last axis"),
    ({"from_logits": "no"}, TypeError, "from_logits must be True or False"),
])
def test_categorical_focal_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        losses.CategoricalFocalCrossentropy(**kwargs)


@pytest.mark.parametrize("make", [
    lambda: losses.BinaryCrossentropy(from_logits="False"),
    lambda: losses.CategoricalCrossentropy(from_logits="no"),
    lambda: losses.SparseCategoricalCrossentropy(from_logits=b"0"),
    lambda: losses.BinaryFocalCrossentropy(apply_class_balancing="false"),
    lambda: losses.BinaryFocalCrossentropy(from_logits="false")])
def test_flags_refuse_text(make):
    with pytest.raises(TypeError, match="must be True or False"):  # (bool("false") is True)
        make()


def test_categorical_focal_checks_the_model_it_trains():
    x, y = np.ones((4, 2), np.float32), np.eye(3)[[0, 1, 2, 0]]
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(3, activation="softmax")])
    model.compile("sgd", losses.CategoricalFocalCrossentropy(alpha=[1.0, 2.0]))
    with pytest.raises(ValueError, match="alpha has 2 values, one per class, but the model "
                                         "has 3 outputs"):
        model.fit(x, y, verbose=0)
    one = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1, activation="sigmoid")])
    one.compile("sgd", "categorical_focal_crossentropy")
    with pytest.raises(ValueError, match="needs 2 or more outputs"):
        one.fit(x, y[:, :1], verbose=0)
    # 'accuracy' under it is the categorical one (the arg-max), as Keras picks
    model.compile("adam", "categorical_focal_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    y = np.eye(3)[np.arange(40) % 3]
    logs = model.evaluate(x, y, return_dict=True)
    assert logs["accuracy"] == pytest.approx(
        np.mean(model.predict(x).argmax(axis=1) == y.argmax(axis=1)))


def test_cross_entropies_take_kerass_axis(rng):
    """Keras 3's BinaryCrossentropy, CategoricalCrossentropy and SparseCategoricalCrossentropy
    take axis=-1 (their focal variants and pynn's metrics did); pynn's raised TypeError.
    The last axis is the only one they compute: others are refused, not ignored (axis=1
    for (N, classes) outputs: test_a_loss_takes_the_last_axis_counted_from_the_front)."""
    labels = rng.integers(0, 3, 8)
    p = rng.dirichlet(np.ones(3), size=8)
    cases = ((losses.BinaryCrossentropy, (rng.random((8, 3)) > 0.5).astype(float)),
             (losses.CategoricalCrossentropy, np.eye(3)[labels]),
             (losses.SparseCategoricalCrossentropy, labels))
    for cls, y in cases:
        assert cls(axis=-1)(y, p) == cls()(y, p)
        for axis in (0, -2):
            with pytest.raises(NotImplementedError, match=r"axis=.*last axis .*\(axis=-1\) only"):
                cls(axis=axis)
        for axis in (None, True, 1.0):
            with pytest.raises(TypeError, match="axis must be an int"):
                cls(axis=axis)
        assert "axis" not in losses.serialize(cls(axis=-1))["config"]


def test_huber_is_named_as_keras():
    """Keras names its Huber loss "huber_loss" (its name as a metric in the logs); pynn's was
    "huber". Files store no name for a loss of its class's name, so they load either way."""
    assert losses.Huber().name == "huber_loss"
    assert losses.get("huber").name == losses.get("Huber").name == "huber_loss"
    assert "name" not in losses.serialize(losses.Huber(delta=2.0))["config"]
    old = losses.get({"class_name": "Huber", "config": {"delta": 2.0}})
    assert (old.name, old.delta) == ("huber_loss", 2.0)
    assert losses.get(losses.serialize(losses.Huber(name="huber"))).name == "huber"


_AXIS_LOSSES = [  # (loss class, targets for softmax-like (N, 3) predictions)
    (losses.CategoricalCrossentropy, lambda rng, n: np.eye(3)[rng.integers(0, 3, n)]),
    (losses.SparseCategoricalCrossentropy, lambda rng, n: rng.integers(0, 3, n)),
    (losses.BinaryCrossentropy, lambda rng, n: rng.integers(0, 2, (n, 3)).astype(float)),
    (losses.BinaryFocalCrossentropy, lambda rng, n: rng.integers(0, 2, (n, 3)).astype(float)),
    (losses.CategoricalFocalCrossentropy, lambda rng, n: np.eye(3)[rng.integers(0, 3, n)]),
    (losses.CosineSimilarity, lambda rng, n: rng.normal(size=(n, 3))),
]


@pytest.mark.parametrize("cls, targets", _AXIS_LOSSES, ids=lambda c: getattr(c, "__name__", ""))
def test_a_loss_takes_the_last_axis_counted_from_the_front(rng, cls, targets):
    """Keras code writes axis=1 for (N, classes) outputs: the same loss as axis=-1 there, kept
    in the loss's config; on (N, T, classes) outputs axis=1 is not the last axis: refused."""
    p = rng.uniform(0.05, 0.95, (7, 3))
    p /= p.sum(axis=1, keepdims=True)
    y = targets(rng, 7)
    loss = cls(axis=1)
    assert loss(y, p) == pytest.approx(cls()(y, p), rel=1e-6)
    assert loss.get_config()["axis"] == 1 and "axis" not in cls(axis=-1).get_config() or \
        cls is losses.CosineSimilarity
    assert losses.get(losses.serialize(loss)).axis == 1
    x = rng.normal(size=(7, 4)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax")])
    model.compile("sgd", loss)
    assert np.isfinite(model.fit(x, y, epochs=1, verbose=0).history["loss"][0])
    steps = pynn.Sequential([pynn.Input((2, 4)), pynn.Dense(3, activation="softmax")])
    steps.compile("sgd", cls(axis=1))
    y_steps = np.stack([y, y], axis=1)
    with pytest.raises(ValueError, match=r"axis=1 is not the last axis .*axis=-1"):
        steps.fit(np.stack([x, x], axis=1), y_steps, epochs=1, verbose=0)
    assert steps.get_weights()[0].shape == (4, 3)  # (refused before a step)
    for axis in (0, -2):
        with pytest.raises(NotImplementedError, match="last axis"):
            cls(axis=axis)
    if cls in (losses.BinaryFocalCrossentropy, losses.CategoricalFocalCrossentropy):
        assert cls(axis=None).axis == -1 and "axis" not in cls(axis=None).get_config()


def test_a_loss_metric_takes_the_last_axis_counted_from_the_front(rng):
    y = np.eye(4)[rng.integers(0, 4, 9)]
    p = rng.uniform(0.05, 0.95, (9, 4))
    for make in (metrics.CategoricalCrossentropy, metrics.CosineSimilarity):
        ones, last = make(axis=1), make()
        ones.update_state(y, p)
        last.update_state(y, p)
        assert float(ones.result()) == pytest.approx(float(last.result()), rel=1e-6)
        assert ones.get_config()["axis"] == 1
        again = metrics.deserialize(metrics.serialize(ones))
        again.update_state(y, p)
        assert float(again.result()) == pytest.approx(float(last.result()), rel=1e-6)
    labels = metrics.SparseCategoricalCrossentropy(axis=1)
    labels.update_state(y.argmax(axis=1), p)
    assert float(labels.result()) == pytest.approx(
        float(losses.SparseCategoricalCrossentropy()(y.argmax(axis=1), p)), rel=1e-6)
    with pytest.raises(ValueError, match="axis=1 is not the last axis"):
        metrics.CategoricalCrossentropy(axis=1).update_state(y[:, None], p[:, None])


def test_a_loss_of_your_own_that_names_itself_saves_and_copies(tmp_path, rng):
    # pynn's losses now write their name; a subclass calling super().__init__(name=...)
    # whose own constructor takes no name must not get it in its config
    import copy

    class Weighted(losses.MeanSquaredError):
        def __init__(self, w=1.0):
            super().__init__(name="weighted_mse")
            self.w = w

        def get_config(self):
            return {**super().get_config(), "w": self.w}

    loss = Weighted(3.0)
    assert loss.get_config() == {"w": 3.0}
    assert copy.deepcopy(loss).w == 3.0
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss=loss)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz", custom_objects={"Weighted": Weighted})
    assert loaded.loss.w == 3.0 and loaded.loss.name == "weighted_mse"
