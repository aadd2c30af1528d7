"""Weight constraints (pynn.constraints): Keras' formulas against float64 references on
awkward shapes, applied after each optimizer update (and only then), on every layer that
takes one, kept by model files; the engines leave a constrained model to the layer path."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from conftest import AVAILABLE, NATIVE, assert_trained_alike, requires_native
from pynn import constraints as C

EPS = 1e-7  # Keras' backend.epsilon()


def _norms(w, axis):
    axes = tuple(axis) if isinstance(axis, list) else axis
    return np.sqrt((w.astype(np.float64) ** 2).sum(axis=axes, keepdims=True))


def _reference(constraint, w):
    """Keras' formula in float64."""
    w64 = w.astype(np.float64)
    if isinstance(constraint, C.NonNeg):
        return np.maximum(w64, 0)
    n = _norms(w, constraint.axis)
    if isinstance(constraint, C.UnitNorm):
        return w64 / (EPS + n)
    if isinstance(constraint, C.MaxNorm):
        desired = np.clip(n, 0, constraint.max_value)
    else:
        r = constraint.rate
        desired = r * np.clip(n, constraint.min_value, constraint.max_value) + (1 - r) * n
    return w64 * desired / (EPS + n)


class HalfNonNeg(C.Constraint):
    """A user's constraint, its argument kept by Keras' automatic get_config."""

    def __init__(self, factor=0.5):
        self.factor = factor

    def __call__(self, w):
        return np.maximum(w, 0) * self.factor


_SHAPES = [(1,), (3,), (17, 1), (1, 17), (3, 129), (129, 3), (5, 3, 4)]


@pytest.mark.parametrize("shape", _SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_each_constraint_matches_kerass_formula(rng, shape, dtype):
    w = (rng.normal(size=shape) * rng.uniform(0.1, 5)).astype(dtype)
    axes = [0, -1] + ([1, [0, 1]] if len(shape) > 1 else [])
    made = [C.NonNeg()]
    for axis in axes:
        made += [C.MaxNorm(float(rng.uniform(0.2, 3)), axis=axis), C.UnitNorm(axis=axis),
                 C.MinMaxNorm(0.5, 1.5, float(rng.uniform(0.1, 1)), axis=axis)]
    tol = 2e-6 if dtype == "float32" else 1e-13
    for constraint in made:
        got = constraint(w)
        assert got.dtype == w.dtype and got.shape == w.shape, constraint
        np.testing.assert_allclose(got, _reference(constraint, w), rtol=tol, atol=tol,
                                   err_msg=repr(constraint))


def test_projection_properties(rng):
    """What each is for: norms at most max_value (the small ones untouched), unit norms,
    norms within [min, max] at rate 1, no negative value; a zero vector stays zero."""
    w = rng.normal(size=(40, 9)).astype(np.float32) * np.linspace(0.01, 3, 9, dtype=np.float32)
    w[:, 4] = 0
    n = np.linalg.norm(w, axis=0)
    capped = C.MaxNorm(1.0)(w)
    assert np.linalg.norm(capped, axis=0).max() <= 1.0 + 1e-6
    small = (n < 1.0) & (n > 0.05)  # (scaled by n / (eps + n): 1 - 2e-6 at n = 0.05)
    np.testing.assert_allclose(capped[:, small], w[:, small], rtol=1e-5)
    assert (capped[:, 4] == 0).all() and np.isfinite(capped).all()
    unit = C.UnitNorm()(w)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=0)[n > 0], 1, rtol=1e-5)
    within = np.linalg.norm(C.MinMaxNorm(0.5, 2.0)(w), axis=0)[n > 0]
    assert within.min() >= 0.5 - 1e-5 and within.max() <= 2.0 + 1e-5
    assert C.NonNeg()(w - 1).min() == 0


def test_get_names_configs_and_refusals():
    assert C.get(None) is None
    for name, cls in [("max_norm", C.MaxNorm), ("MaxNorm", C.MaxNorm), ("non_neg", C.NonNeg),
                      ("unit_norm", C.UnitNorm), ("min_max_norm", C.MinMaxNorm)]:
        assert type(C.get(name)) is cls
    assert C.get(C.MaxNorm) == C.MaxNorm()  # a class: its defaults, as Keras
    same = C.MinMaxNorm(0.1, 0.9, 0.5, axis=[0, 1])
    assert C.get(same) is same
    assert C.get(C.serialize(same)) == same
    keras_written = {"module": "keras.constraints", "class_name": "MaxNorm",
                     "config": {"max_value": 3, "axis": 0}, "registered_name": None}
    assert C.get(keras_written) == C.MaxNorm(3)
    assert C.max_norm is C.MaxNorm and C.non_neg is C.NonNeg  # Keras' aliases
    with pytest.raises(ValueError, match="unknown constraint 'maxnorm'"):
        C.get("maxnorm")
    with pytest.raises(ValueError, match="Constraint subclass"):
        C.get(lambda w: w)
    with pytest.raises(ValueError, match="cannot interpret 3"):
        C.get(3)
    with pytest.raises(ValueError, match="unknown constraint class 'Mine'"):
        C.get({"class_name": "Mine", "config": {}})
    with pytest.raises(ValueError, match="max_value must be a number >= 0"):
        C.MaxNorm(-1)
    with pytest.raises(ValueError, match="max_value .* is below min_value"):
        C.MinMaxNorm(2.0, 1.0)
    with pytest.raises(ValueError, match="axis must be an integer, a list of integers or None"):
        C.UnitNorm(axis="0")
    with pytest.raises(ValueError, match="repeats an axis"):
        C.MaxNorm(axis=[0, 0])


def test_an_axis_the_weight_lacks_is_named_when_the_layer_is_built(rng):
    layer = pynn.Dense(3, kernel_constraint=C.MaxNorm(axis=2))
    with pytest.raises(ValueError, match=r"MaxNorm\(axis=2\) on weight 'dense.*/kernel' of "
                                         r"shape \(4, 3\): axis 2 is out of range"):
        layer(rng.normal(size=(2, 4)))
    built = pynn.Dense(3)
    built(rng.normal(size=(2, 4)))
    with pytest.raises(ValueError, match="axis -2 is out of range"):
        built.bias_constraint = C.UnitNorm(axis=-2)
    with pytest.raises(ValueError, match=r"shape \(4, 3\) names an axis twice"):
        built.kernel_constraint = C.MaxNorm(axis=[0, -2])
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        C.MaxNorm(1.0, axis=2)(rng.normal(size=(4, 3)))  # called directly, as Keras code does


def _model(**dense_args):
    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(5, activation="tanh", **dense_args),
                             pynn.Dense(2)])
    model.compile(optimizer=pynn.optimizers.SGD(0.3), loss="mse")
    return model


@pytest.mark.parametrize("backend", sorted({"numpy", "cpu"} & AVAILABLE))
def test_a_step_is_the_update_then_the_projection(rng, backend):
    """One train_on_batch of a constrained model = the unconstrained step, then Keras'
    formula on the updated weights (the initial weights are not projected before)."""
    previous = pynn.get_backend().name
    pynn.set_backend(backend)
    try:
        x, y = rng.normal(size=(8, 6)), rng.normal(size=(8, 2)) * 5
        constraint = C.MaxNorm(0.4)
        plain, constrained = _model(), _model(kernel_constraint=constraint,
                                              bias_constraint="non_neg")
        start = [w * 3 for w in plain.get_weights()]  # norms above 0.4
        plain.set_weights(start)
        constrained.set_weights(start)
        plain.train_on_batch(x, y)
        constrained.train_on_batch(x, y)
        kernel, bias = plain.get_weights()[:2]
        got = constrained.get_weights()
        np.testing.assert_allclose(got[0], _reference(constraint, kernel), rtol=2e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(got[1], np.maximum(bias, 0), atol=1e-7)
        for a, b in zip(got[2:], plain.get_weights()[2:]):  # the next layer: unconstrained
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    finally:
        pynn.set_backend(previous)


def test_fit_keeps_the_constraint_set_before_or_after_build(rng):
    x = rng.normal(size=(96, 6)).astype(np.float32) * 3
    y = np.stack([x[:, 0] * 4, -x[:, 1] * 4], axis=1)
    model = _model(kernel_constraint=C.MaxNorm(0.5))
    model.layers[2].kernel_constraint = "non_neg"  # (after build, as a regularizer)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert np.linalg.norm(model.layers[1].kernel.numpy(), axis=0).max() <= 0.5 + 1e-6
    assert model.layers[2].kernel.numpy().min() >= 0
    model.layers[1].kernel_constraint = None
    model.layers[2].kernel_constraint = None
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.linalg.norm(model.layers[1].kernel.numpy(), axis=0).max() > 0.5


_NATIVE_CASES = [
    dict(kernel_constraint=C.MaxNorm(0.6)),
    dict(kernel_constraint=C.MaxNorm(0.6, axis=1), bias_constraint=C.MaxNorm(0.3)),
    dict(kernel_constraint=C.MinMaxNorm(0.4, 0.8, 0.6, axis=[0, 1]), bias_constraint="non_neg"),
    dict(kernel_constraint=C.UnitNorm(axis=-2), bias_constraint=C.UnitNorm(axis=-1)),
    dict(kernel_constraint="non_neg"),
]


@requires_native
@pytest.mark.parametrize("case", range(len(_NATIVE_CASES)))
@pytest.mark.parametrize("optimizer", ["adam", "sgd_ema_global_clip"])
def test_the_native_engine_projects_dense_weights_as_the_layer_path(rng, case, optimizer):
    x = rng.normal(size=(83, 6)).astype(np.float32) * 3
    y = (x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 1)
    seed = int(rng.integers(1 << 30))

    def make():
        pynn.set_seed(seed)
        # (tanh, not relu: a pre-activation within float32 rounding of 0 took relu's other
        # side in one of the two runs, and Adam at 0.05 made that 1e-3 apart; seen once)
        model = pynn.Sequential([pynn.Input((6,)),
                                 pynn.Dense(17, activation="tanh", **_NATIVE_CASES[case]),
                                 pynn.Dense(3, activation="softmax",
                                            kernel_constraint=C.MaxNorm(1.3))])
        opt = pynn.optimizers.Adam(0.05) if optimizer == "adam" else pynn.optimizers.SGD(
            0.2, momentum=0.5, use_ema=True, ema_overwrite_frequency=3, global_clipnorm=1.0)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    native, layers = make(), make()
    h_native = native.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False).history
    assert native.engine_reason is None
    h_layers = layers.fit(x, y, epochs=3, batch_size=16, verbose=0, shuffle=False,
                          engine="layers").history
    assert_trained_alike(native, layers, h_native, h_layers, len(x))
    if optimizer == "adam":  # (fit ends on use_ema's averages, unprojected, as in Keras)
        assert np.linalg.norm(native.layers[2].kernel.numpy(), axis=0).max() <= 1.3 + 1e-5


@requires_native
def test_the_native_engine_leaves_what_it_cannot_project_to_the_layer_path(rng):
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.normal(size=(40, 2)).astype(np.float32)
    model = _model(kernel_constraint=HalfNonNeg())
    model.fit(x, y, epochs=1, verbose=0)
    assert "weight 'dense" in model.engine_reason and "HalfNonNeg(" in model.engine_reason
    assert model.layers[1].kernel.numpy().min() >= 0
    model.layers[1].kernel_constraint = C.MaxNorm(0.5)
    model.fit(x, y, epochs=1, verbose=0)
    assert model.engine_reason is None  # now pynn's own: projected natively
    assert np.linalg.norm(model.layers[1].kernel.numpy(), axis=0).max() <= 0.5 + 1e-6
    model.layers[1].kernel_constraint.max_value = 0.2  # changed in place: a new engine
    model.fit(x, y, epochs=1, verbose=0)
    assert np.linalg.norm(model.layers[1].kernel.numpy(), axis=0).max() <= 0.2 + 1e-6
    normalized = pynn.Sequential([pynn.Input((6,)), pynn.Dense(4),
                                  pynn.BatchNormalization(gamma_constraint="non_neg"),
                                  pynn.Dense(2)])
    normalized.compile(optimizer="adam", loss="mse")
    normalized.fit(x, y, epochs=1, verbose=0)
    assert "'batch_normalization" in normalized.engine_reason
    assert "pynn's own on Dense kernels and biases" in normalized.engine_reason


def test_constraints_on_normalization_prelu_and_add_weight(rng):
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = rng.normal(size=(64, 4)).astype(np.float32) * 10

    class Scaled(pynn.layers.Layer):
        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.scale = self.add_weight((input_shape[-1],), "ones",
                                         constraint=C.MinMaxNorm(0.0, 0.5))

        def forward(self, x, training=False):
            self._x = x
            return x * self.scale.value

        def backward(self, dy, need_input_grad=True):
            self.scale.grad = (dy * self._x).sum(axis=0)
            return dy * self.scale.value

    model = pynn.Sequential([
        pynn.Input((4,)), pynn.BatchNormalization(gamma_constraint=C.UnitNorm()),
        pynn.layers.LayerNormalization(beta_constraint=C.MaxNorm(0.1)),
        pynn.PReLU(alpha_constraint="non_neg", alpha_initializer="ones"), Scaled()])
    model.compile(optimizer=pynn.optimizers.Adam(0.1), loss="mse")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    bn, ln, prelu, scaled = model.layers[1:]
    np.testing.assert_allclose(np.linalg.norm(bn.gamma.numpy()), 1, rtol=1e-5)
    assert np.linalg.norm(ln.beta.numpy()) <= 0.1 + 1e-6
    assert prelu.alpha.numpy().min() >= 0
    assert np.linalg.norm(scaled.scale.numpy()) <= 0.5 + 1e-6
    assert bn.moving_variance.constraint is None  # (statistics are not trained)


def test_every_step_of_gradient_accumulation_projects(rng):
    """Keras projects after each apply, an accumulating one too (the weights as they were:
    the first step projects the initial weights)."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, kernel_constraint="unit_norm")])
    model.compile(optimizer=pynn.optimizers.SGD(0.1, gradient_accumulation_steps=3),
                  loss="mse")
    start = model.get_weights()
    model.train_on_batch(rng.normal(size=(4, 3)), rng.normal(size=(4, 2)))
    np.testing.assert_allclose(model.get_weights()[0], _reference(C.UnitNorm(), start[0]),
                               rtol=2e-5, atol=1e-7)
    np.testing.assert_array_equal(model.get_weights()[1], start[1])


@pytest.mark.parametrize("suffix", [".npz", ".keras"])
def test_model_files_keep_the_constraints(rng, tmp_path, suffix):
    if suffix == ".keras":
        pytest.importorskip("h5py")
    model = pynn.Sequential([pynn.Input((4,)),
                             pynn.Dense(3, kernel_constraint=C.MinMaxNorm(0.1, 0.7, 0.5,
                                                                          axis=[0]),
                                        bias_constraint=HalfNonNeg(0.25))])
    model.compile(optimizer="sgd", loss="mse")
    path = tmp_path / f"m{suffix}"
    model.save(path)
    with pytest.raises(ValueError, match="unknown constraint class 'HalfNonNeg'"):
        pynn.load_model(path)
    back = pynn.load_model(path, custom_objects={"HalfNonNeg": HalfNonNeg})
    dense = back.layers[1]
    assert dense.kernel.constraint == C.MinMaxNorm(0.1, 0.7, 0.5, axis=[0])
    assert type(dense.bias.constraint) is HalfNonNeg and dense.bias.constraint.factor == 0.25
    clone = pynn.models.clone_model(model)
    assert clone.layers[1].kernel_constraint == model.layers[1].kernel_constraint
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    model.train_on_batch(x, y)
    back.set_weights(pynn.load_model(path, custom_objects={"HalfNonNeg": HalfNonNeg})
                     .get_weights())
    back.train_on_batch(x, y)
    for a, b in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_projection_of_the_wrong_shape_is_named(rng):
    class Broken(C.Constraint):
        def __call__(self, w):
            return w.sum()  # a scalar: would broadcast over the whole weight

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, kernel_constraint=Broken())])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"returned an array of shape \(\), not the "
                                         r"weight's \(3, 2\)"):
        model.train_on_batch(rng.normal(size=(4, 3)), rng.normal(size=(4, 2)))


@requires_native
def test_the_engines_set_constraint_refuses_bad_arguments():
    engine = pynn.engine._native_module().DenseEngine(
        [4, 5, 3], [1, 0], [0.0, 0.0], [True, False], "mse", 0.0, "sgd", 8)
    engine.set_constraint(0, False, 1, 0, max_value=2.0)
    engine.set_constraint(0, True, 4, 2)
    for args, kwargs, match in [
            ((2, False, 1, 0), {}, r"layer must be in \[0, 2\), got 2"),
            ((-1, False, 1, 0), {}, "layer must be in"),
            ((1, True, 1, 0), {}, "layer 1 has no bias"),
            ((0, False, 5, 0), {}, "unknown kind 5"),
            ((0, False, 1, 3), {}, "unknown axis 3"),
            ((0, False, 1, 0), {"max_value": -1.0}, "values must be >= 0"),
            ((0, False, 2, 0), {"rate": float("nan")}, "values must be >= 0"),
            ((0, False, 2, 0), {"min_value": 2.0, "max_value": 1.0}, "min_value 2.0+ is above"),
            ((0, False, 1, 0), {"epsilon": float("inf")}, "epsilon must be finite")]:
        with pytest.raises(ValueError, match=match):
            engine.set_constraint(*args, **kwargs)


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_unbounded_changed_and_whole_weight_constraints(rng, engine):
    """MaxNorm(inf) (Keras takes it: no bound) and axis=None (one norm of the whole weight)
    train on either path; an axis or bound changed after construction is checked again when
    training starts, not mapped silently."""
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.normal(size=(40, 2)).astype(np.float32) * 3
    unbounded = _model(kernel_constraint=C.MaxNorm(float("inf")),
                       bias_constraint=C.MinMaxNorm(0.0, float("inf")))
    unbounded.fit(x, y, epochs=1, verbose=0, engine=engine)
    whole = _model(kernel_constraint=C.MaxNorm(0.5, axis=None))
    whole.fit(x, y, epochs=2, verbose=0, engine=engine)
    assert np.linalg.norm(whole.layers[1].kernel.numpy()) <= 0.5 + 1e-6
    if engine == "auto" and NATIVE:
        assert unbounded.engine_reason is None and whole.engine_reason is None
    constraint = C.MaxNorm(1.0)
    with pytest.raises(ValueError, match="axis must be an integer"):
        constraint.axis = "1"
    with pytest.raises(ValueError, match="max_value must be a number >= 0"):
        constraint.max_value = float("nan")
    moved = _model(kernel_constraint=constraint)
    constraint.axis = 2  # (a weight of 2 axes: out of range, on either path)
    with pytest.raises(ValueError, match=r"MaxNorm\(axis=2\) on weight '.*kernel' of shape "
                                         r"\(6, 5\): axis 2 is out of range"):
        moved.fit(x, y, epochs=1, verbose=0, engine=engine)
    bounds = C.MinMaxNorm(0.5, 1.0)
    crossed = _model(kernel_constraint=bounds)
    bounds.min_value = 2.0
    with pytest.raises(ValueError, match=r"max_value \(1.0\) is below min_value \(2.0\)"):
        crossed.fit(x, y, epochs=1, verbose=0, engine=engine)


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_norms_of_huge_float32_weights_do_not_overflow(rng, engine):
    """Keras squares float32 weights in float32: 1e20 squared is inf, and MaxNorm zeroed
    the column (MinMaxNorm made NaN); the norms are taken in float64 on both paths."""
    model = _model(kernel_constraint=C.MaxNorm(2.0))
    kernel = model.layers[1].kernel.numpy()
    kernel[0, 0] = 1e20
    model.layers[1].kernel.assign(kernel)
    model.compile(optimizer=pynn.optimizers.SGD(0.0), loss="mse")
    model.fit(rng.normal(size=(8, 6)), rng.normal(size=(8, 2)), epochs=1, verbose=0,
              engine=engine)
    column = model.layers[1].kernel.numpy()[:, 0]
    np.testing.assert_allclose(np.linalg.norm(column), 2.0, rtol=1e-6)
    assert column[0] == pytest.approx(2.0, rel=1e-6)


def test_equal_constraints_have_no_hash_and_old_weights_load_without_one():
    assert C.MaxNorm(2) == C.MaxNorm(2) and C.MaxNorm(2) != C.MaxNorm(3)
    with pytest.raises(TypeError, match="unhashable"):
        hash(C.MaxNorm(2))
    # a Parameter pickled before constraints existed: its slots hold no "constraint"
    backend = pynn.get_backend()
    weight = pynn.layers.Parameter("w", backend.asarray(np.ones(3), np.float32), backend)
    _, _, state = weight.__reduce_ex__(2)[:3]
    old = (state[0], {k: v for k, v in state[1].items() if k != "constraint"})
    restored = pynn.layers.Parameter.__new__(pynn.layers.Parameter)
    restored.__setstate__(old)
    assert restored.constraint is None and restored.name == "w"
