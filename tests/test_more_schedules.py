"""PolynomialDecay, InverseTimeDecay, CosineDecay's warm-up and CosineDecayRestarts against
float64 transcriptions of Keras 3's formulas (keras/src/optimizers/schedules/
learning_rate_schedule.py); their configs, model files, and fit on both engines."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from conftest import AVAILABLE, import_keras

import pynn
from pynn import optimizers, schedules

# --- Keras 3's formulas, in float64 -------------------------------------------------------

def ref_polynomial(step, init, decay_steps, end=0.0001, power=1.0, cycle=False):
    if cycle:  # the first multiple of decay_steps >= step; 1 at step 0
        decay_steps = decay_steps * (1 if step == 0 else math.ceil(step / decay_steps))
    else:
        step = min(step, decay_steps)
    return (init - end) * (1 - step / decay_steps) ** power + end


def ref_inverse_time(step, init, decay_steps, rate, staircase=False):
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    return init / (1 + rate * p)


def ref_cosine(step, init, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    def decay(s, from_lr):
        return from_lr * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * s / decay_steps)) + alpha)

    if warmup_target is None:
        return decay(min(step, decay_steps), init)
    step = min(step, decay_steps + warmup_steps)
    if step < warmup_steps:
        return (warmup_target - init) * (step / warmup_steps) + init
    return decay(step - warmup_steps, warmup_target)


def ref_restarts(step, init, first, t_mul=2.0, m_mul=1.0, alpha=0.0):
    # Keras finds the period with a logarithm; here the periods are walked one by one
    start, length, restart = 0.0, float(first), 0
    while start + length <= step:
        start, length, restart = start + length, length * t_mul, restart + 1
    cosine = 0.5 * m_mul ** restart * (1 + math.cos(math.pi * (step - start) / length))
    return init * ((1 - alpha) * cosine + alpha)


def keras_restarts_literal(step, init, first, t_mul=2.0, m_mul=1.0, alpha=0.0):
    """Keras' CosineDecayRestarts.__call__ line by line (its logarithm included)."""
    fraction = step / first
    if t_mul == 1.0:
        i_restart = math.floor(fraction)
        fraction -= i_restart
    else:
        i_restart = math.floor(math.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
        sum_r = (1.0 - t_mul ** i_restart) / (1.0 - t_mul)
        fraction = (fraction - sum_r) / t_mul ** i_restart
    cosine = 0.5 * m_mul ** i_restart * (1.0 + math.cos(math.pi * fraction))
    return init * ((1 - alpha) * cosine + alpha)


def _case(schedule, reference, **kwargs):
    args = ",".join(f"{k}={v}" for k, v in kwargs.items())
    return pytest.param(schedule, functools.partial(reference, **kwargs),
                        id=f"{type(schedule).__name__}({args})")


CASES = [
    _case(schedules.PolynomialDecay(0.1, 10), ref_polynomial, init=0.1, decay_steps=10),
    _case(schedules.PolynomialDecay(0.1, 10, end_learning_rate=0.01, power=0.5),
          ref_polynomial, init=0.1, decay_steps=10, end=0.01, power=0.5),
    _case(schedules.PolynomialDecay(0.1, 10, 0.01, power=2.0, cycle=True), ref_polynomial,
          init=0.1, decay_steps=10, end=0.01, power=2.0, cycle=True),
    _case(schedules.PolynomialDecay(0.0, 8, 0.05, power=3.0), ref_polynomial,  # a ramp up
          init=0.0, decay_steps=8, end=0.05, power=3.0),
    _case(schedules.PolynomialDecay(0.2, 7, 0.0, cycle=True), ref_polynomial, init=0.2,
          decay_steps=7, end=0.0, cycle=True),
    _case(schedules.InverseTimeDecay(0.1, 5, 0.5), ref_inverse_time, init=0.1, decay_steps=5,
          rate=0.5),
    _case(schedules.InverseTimeDecay(0.1, 5, 2.0, staircase=True), ref_inverse_time,
          init=0.1, decay_steps=5, rate=2.0, staircase=True),
    _case(schedules.CosineDecay(0.1, 20, alpha=0.1), ref_cosine, init=0.1, decay_steps=20,
          alpha=0.1),
    _case(schedules.CosineDecay(0.0, 20, alpha=0.2, warmup_target=0.1, warmup_steps=5),
          ref_cosine, init=0.0, decay_steps=20, alpha=0.2, warmup_target=0.1, warmup_steps=5),
    _case(schedules.CosineDecay(0.05, 12, warmup_target=0.01, warmup_steps=3), ref_cosine,
          init=0.05, decay_steps=12, warmup_target=0.01, warmup_steps=3),  # a warm-down
    _case(schedules.CosineDecay(0.01, 20, warmup_target=0.1), ref_cosine, init=0.01,
          decay_steps=20, warmup_target=0.1),  # no warm-up steps: decays from the target
    _case(schedules.CosineDecayRestarts(0.1, 10), ref_restarts, init=0.1, first=10),
    _case(schedules.CosineDecayRestarts(0.1, 10, t_mul=1.0, m_mul=0.5, alpha=0.1),
          ref_restarts, init=0.1, first=10, t_mul=1.0, m_mul=0.5, alpha=0.1),
    _case(schedules.CosineDecayRestarts(0.1, 1, t_mul=3.0, m_mul=0.9), ref_restarts,
          init=0.1, first=1, t_mul=3.0, m_mul=0.9),
    _case(schedules.CosineDecayRestarts(0.1, 4, t_mul=1.5, m_mul=1.1, alpha=0.05),
          ref_restarts, init=0.1, first=4, t_mul=1.5, m_mul=1.1, alpha=0.05),
    _case(schedules.CosineDecayRestarts(0.1, 16, t_mul=0.5), ref_restarts, init=0.1,
          first=16, t_mul=0.5),
]

# 0, 1, each decay/period boundary and its neighbours up to ~2 cycles of t_mul=3, far beyond
STEPS = sorted(set(range(0, 130)) | {199, 200, 201, 363, 364, 365, 1093, 1094, 10_000,
                                     123_457, 10**7})


def _steps(schedule):
    if isinstance(schedule, schedules.CosineDecayRestarts) and schedule.t_mul < 1:
        return [s for s in STEPS if s < schedule.first_decay_steps / (1 - schedule.t_mul)]
    return STEPS


@pytest.mark.parametrize("schedule,reference", CASES)
def test_values_equal_keras_formula(schedule, reference):
    for step in _steps(schedule):
        assert math.isclose(schedule(step), reference(step), rel_tol=1e-12, abs_tol=1e-15), \
            step
        assert schedule(step) >= 0


def test_hand_computed_points():
    p = schedules.PolynomialDecay(0.1, 10, end_learning_rate=0.01)
    assert [p(0), p(10), p(1000)] == [0.1, 0.01, 0.01] and math.isclose(p(5), 0.055)
    c = schedules.PolynomialDecay(0.1, 10, 0.01, cycle=True)
    # the end at each multiple of decay_steps, then a restart decaying over the next multiple
    assert math.isclose(c(10), 0.01) and math.isclose(c(20), 0.01)
    assert math.isclose(c(11), 0.09 * (1 - 11 / 20) + 0.01) and math.isclose(c(0), 0.1)
    i = schedules.InverseTimeDecay(1.0, 4, 0.5, staircase=True)
    assert [i(0), i(3), i(4), i(8)] == [1.0, 1.0, 1 / 1.5, 0.5]
    w = schedules.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=4)
    assert [w(0), w(2), w(4), w(14), w(99)] == [0.0, 0.5, 1.0, 0.0, 0.0]
    assert math.isclose(w(9), 0.5)
    r = schedules.CosineDecayRestarts(1.0, 10, m_mul=0.5)  # periods [0, 10), [10, 30), [30, 70)
    assert [r(0), r(10), r(30), r(70)] == [1.0, 0.5, 0.25, 0.125]
    assert math.isclose(r(20), 0.25) and math.isclose(r(5), 0.5) and r(9) < 0.03


def _period_starts(first, t_mul, upto):
    starts, start, length = [], 0.0, float(first)
    while start <= upto and length >= 1e-6:  # t_mul < 1: the periods shrink to nothing
        starts.append(start)
        start, length = start + length, length * t_mul
    return starts


def test_restart_boundaries_are_period_starts():
    # t_mul=3, first 1 step: periods start at 0, 1, 4, 13, 40, 121, 364, ...; each start has
    # the period's full rate (Keras' logarithm misses some in float arithmetic: 121)
    r = schedules.CosineDecayRestarts(1.0, 1, t_mul=3.0, m_mul=0.5)
    starts = _period_starts(1, 3.0, 10**5)
    assert starts[:7] == [0, 1, 4, 13, 40, 121, 364]
    for restart, start in enumerate(starts):
        assert r(start) == 0.5 ** restart, start
        if restart >= 2:  # the step before is the end of the previous period: lower
            assert r(start - 1) < r(start), start
    r = schedules.CosineDecayRestarts(0.1, 4, t_mul=1.5)
    for start in (0, 4, 10, 19):  # 4 * (0, 1, 2.5, 4.75) steps
        assert r(start) == 0.1
    # starts whose sum rounds above the step (t_mul=1.1: period 3 starts at
    # 3.3100000000000005 first decay steps, step 331 at 3.31) are starts all the same
    r11 = schedules.CosineDecayRestarts(1.0, 100, t_mul=1.1)
    for start in (100, 210, 331):
        assert r11(start) == 1.0 and r11(start - 1) < 1e-3, start
    # elsewhere Keras' own logarithm gives the same values
    for r, first, t_mul in ((r, 4, 1.5), (schedules.CosineDecayRestarts(0.1, 1, 3.0), 1, 3.0)):
        starts = set(_period_starts(first, t_mul, 5000))
        for step in range(1, 5000, 3):
            if step not in starts:
                assert math.isclose(r(step), keras_restarts_literal(step, 0.1, first, t_mul),
                                    rel_tol=1e-9, abs_tol=1e-15), step


ARRAY_CASES = [param.values[0] for param in CASES] + [
    schedules.ExponentialDecay(0.1, 7, 0.5), schedules.ExponentialDecay(0.1, 7, 0.5, True),
    schedules.PiecewiseConstantDecay([3, 10, 10, 20.5], [1.0, 0.5, 0.4, 0.1, 0.01]),
    schedules.PiecewiseConstantDecay([], [0.3])]


@pytest.mark.parametrize("schedule", ARRAY_CASES, ids=lambda s: type(s).__name__)
def test_an_array_of_steps_gives_the_curve(schedule):
    """Keras' schedules take a tensor of steps (schedule(np.arange(n)) for a plot); pynn's
    failed on one ("truth value of an array is ambiguous") but InverseTimeDecay's."""
    steps = np.array(_steps(schedule))
    one_by_one = np.array([schedule(int(step)) for step in steps])
    curve = schedule(steps)
    assert isinstance(curve, np.ndarray) and curve.shape == steps.shape
    np.testing.assert_allclose(curve, one_by_one, rtol=1e-12, atol=1e-15)
    grid = schedule(steps[:12].reshape(3, 4).tolist())  # nested lists, as numpy takes
    np.testing.assert_allclose(grid, one_by_one[:12].reshape(3, 4), rtol=1e-12, atol=1e-15)
    # one step keeps the arithmetic the optimizers use: a float, as before
    assert type(schedule(7)) is float and type(schedule(np.int64(7))) is not np.ndarray


def test_an_array_past_shrinking_restarts_end_is_refused_by_name():
    r = schedules.CosineDecayRestarts(0.1, 16, t_mul=0.5)
    assert (r(np.arange(32)) >= 0).all()
    with pytest.raises(ValueError, match=r"t_mul=0\.5 < 1 has no rate from step 32.*got step "
                                         r"33$"):
        r(np.array([5, 33, 40]))


def test_keras_gives_the_same_curves_when_installed():
    # (not Keras' warm-up, which takes one step at a time, nor a cycle, whose float32
    # step / decay_steps can pass a multiple: Keras' PolynomialDecay(cycle=True) at 84 of 7)
    keras = import_keras()
    steps = np.arange(130)
    for schedule in [schedules.ExponentialDecay(0.1, 7, 0.5, staircase=True),
                     schedules.PiecewiseConstantDecay([3, 10], [1.0, 0.5, 0.1]),
                     schedules.PolynomialDecay(0.1, 10, power=0.5),
                     schedules.InverseTimeDecay(0.1, 5, 0.5, staircase=True),
                     schedules.CosineDecay(0.1, 20, alpha=0.1),
                     schedules.CosineDecayRestarts(0.1, 4, m_mul=0.8)]:
        theirs = getattr(keras.optimizers.schedules, type(schedule).__name__)(
            **schedule.get_config())
        np.testing.assert_allclose(schedule(steps), keras.ops.convert_to_numpy(theirs(steps)),
                                   rtol=1e-4, atol=1e-7)


def test_shrinking_restarts_end_with_a_named_error():
    r = schedules.CosineDecayRestarts(0.1, 16, t_mul=0.5)  # 16 + 8 + 4 + ... = 32 steps
    assert r(31) >= 0
    with pytest.raises(ValueError, match=r"t_mul=0\.5 < 1 has no rate from step 32"):
        r(32)


def test_keras_agrees_when_installed():
    keras = import_keras()
    ks = keras.optimizers.schedules
    for param in CASES:
        schedule = param.values[0]
        cls = getattr(ks, type(schedule).__name__)
        theirs = cls(**schedule.get_config())
        starts = set(_period_starts(schedule.first_decay_steps, schedule.t_mul, 200)) \
            if isinstance(schedule, schedules.CosineDecayRestarts) else set()
        for step in _steps(schedule)[:140]:
            if step in starts:
                continue  # a period's first step: float32 logarithms may miss it
            expected = float(keras.ops.convert_to_numpy(theirs(step)))
            assert math.isclose(schedule(step), expected, rel_tol=1e-5, abs_tol=1e-7), \
                (schedule, step)


# --- configs and model files --------------------------------------------------------------

def _values(schedule):
    return [schedule(step) for step in _steps(schedule)]


@pytest.mark.parametrize("schedule,reference", CASES)
def test_config_round_trip(schedule, reference):
    config = schedule.get_config()
    assert "name" not in config  # the default name is not written (older pynn loads it)
    again = type(schedule).from_config(config)
    assert again.get_config() == config and _values(again) == _values(schedule)
    spec = schedules.serialize(schedule)
    assert spec["class_name"] == type(schedule).__name__
    again = schedules.deserialize(spec)
    assert type(again) is type(schedule) and _values(again) == _values(schedule)


def test_names_are_kept_and_keras_configs_load():
    named = schedules.CosineDecay(0.0, 10, warmup_target=0.1, warmup_steps=2, name="warm")
    assert named.name == "warm" and named.get_config()["name"] == "warm"
    assert schedules.deserialize(schedules.serialize(named)).name == "warm"
    defaults = {schedules.ExponentialDecay(0.1, 1, 0.5): "ExponentialDecay",
                schedules.PiecewiseConstantDecay([1], [0.1, 0.01]): "PiecewiseConstant",
                schedules.PolynomialDecay(0.1, 1): "PolynomialDecay",
                schedules.InverseTimeDecay(0.1, 1, 0.5): "InverseTimeDecay",
                schedules.CosineDecay(0.1, 1): "CosineDecay",
                schedules.CosineDecayRestarts(0.1, 1): "SGDRDecay"}  # Keras' defaults
    for schedule, name in defaults.items():
        assert schedule.name == name
    # Keras writes every argument, the name included, and the module beside the class
    keras_spec = {"module": "keras.optimizers.schedules", "class_name": "CosineDecayRestarts",
                  "config": {"initial_learning_rate": 0.1, "first_decay_steps": 10,
                             "t_mul": 2.0, "m_mul": 0.5, "alpha": 0.0, "name": "SGDRDecay"},
                  "registered_name": None}
    opt = optimizers.get({"class_name": "SGD", "config": {"learning_rate": keras_spec}})
    assert isinstance(opt._schedule, schedules.CosineDecayRestarts)
    assert opt._schedule.m_mul == 0.5 and opt._schedule(10) == 0.05
    poly = {"class_name": "PolynomialDecay", "config": {
        "cycle": False, "decay_steps": 10000, "end_learning_rate": 0.01,
        "initial_learning_rate": 0.1, "name": None, "power": 0.5}}  # Keras' docstring's
    again = schedules.deserialize(poly)
    assert again.name is None and again.get_config()["name"] is None
    assert math.isclose(again(2500), 0.09 * 0.75 ** 0.5 + 0.01)


class _Halving(schedules.ExponentialDecay):  # a user's subclass whose __init__ has no name
    def __init__(self, initial_learning_rate, decay_steps):
        super().__init__(initial_learning_rate, decay_steps, 0.5)

    def get_config(self):
        config = super().get_config()
        del config["decay_rate"], config["staircase"]
        return config


def test_a_subclass_without_name_still_round_trips():
    again = _Halving.from_config(_Halving(0.1, 4).get_config())
    assert again(8) == 0.025 and "name" not in again.get_config()


@pytest.mark.parametrize("schedule,reference", CASES)
def test_model_file_keeps_the_schedule(schedule, reference, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)

    def model_with(schedule):
        pynn.set_seed(1)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="tanh"),
                                 pynn.Dense(1)])
        model.compile(optimizer=optimizers.Adam(schedule), loss="mse", backend="numpy")
        return model

    model = model_with(schedule)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)  # 6 steps
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    kept = loaded.optimizer._schedule
    assert type(kept) is type(schedule) and kept.get_config() == schedule.get_config()
    assert _values(kept) == _values(schedule)
    assert loaded.optimizer.iterations == 6
    assert loaded.optimizer.learning_rate == model.optimizer.learning_rate == schedule(6)
    # resumed training takes the uninterrupted run's steps (to rounding: numpy's matmul can
    # round differently for the loaded arrays' other memory alignment)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_named_schedule_survives_a_model_file(tmp_path):
    schedule = schedules.CosineDecayRestarts(0.1, 3, t_mul=1.0, name="sgdr")
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer=optimizers.SGD(schedule), loss="mse", backend="numpy")
    model.fit(np.ones((4, 2)), np.ones(4), batch_size=2, epochs=1, verbose=0)
    model.save(tmp_path / "n.npz")
    assert pynn.load_model(tmp_path / "n.npz").optimizer._schedule.name == "sgdr"


# --- in fit -------------------------------------------------------------------------------

FIT_SCHEDULES = [
    schedules.PolynomialDecay(0.1, 5, 0.01, power=2.0, cycle=True),
    schedules.InverseTimeDecay(0.1, 2, 1.0, staircase=True),
    schedules.CosineDecay(0.0, 6, alpha=0.1, warmup_target=0.1, warmup_steps=4),
    schedules.CosineDecayRestarts(0.1, 2, t_mul=2.0, m_mul=0.8, alpha=0.05),
]
FIT_IDS = [type(s).__name__ for s in FIT_SCHEDULES]
ENGINES = [("cpu", "native"), ("numpy", "layers")]


def _sgd_reference(x, y, w, b, rates, batch_size):
    """Plain SGD on a linear model with mse, in float64, update k at rates[k]."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    batches = len(x) // batch_size
    for k, lr in enumerate(rates):
        rows = slice((k % batches) * batch_size, (k % batches + 1) * batch_size)
        err = x[rows] @ w + b - y[rows]
        w = w - lr * 2 * x[rows].T @ err / (batch_size * y.shape[1])
        b = b - lr * 2 * err.sum(axis=0) / (batch_size * y.shape[1])
    return w, b


@pytest.mark.parametrize("backend,engine", ENGINES)
@pytest.mark.parametrize("schedule", FIT_SCHEDULES, ids=FIT_IDS)
def test_each_step_takes_its_scheduled_rate(schedule, backend, engine):
    if backend not in AVAILABLE:
        pytest.skip(f"backend {backend!r} is not built here")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    w0 = rng.normal(size=(3, 1)).astype(np.float32)
    b0 = np.zeros(1, dtype=np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer=optimizers.SGD(schedule), loss="mse", backend=backend)
    model.set_weights([w0, b0])
    model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0, engine=engine)
    assert model.optimizer.iterations == 16
    assert math.isclose(model.optimizer.learning_rate, schedule(16))
    w, b = model.get_weights()
    ref_w, ref_b = _sgd_reference(x, y, w0, b0, [schedule(k) for k in range(16)], 8)
    np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, ref_b, rtol=1e-5, atol=1e-6)
    # the check tells the rates apart: the steps' rates shifted by one give other weights
    shifted_w, _ = _sgd_reference(x, y, w0, b0, [schedule(k + 1) for k in range(16)], 8)
    assert not np.allclose(shifted_w, ref_w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("schedule", FIT_SCHEDULES, ids=FIT_IDS)
def test_native_cpu_and_numpy_fits_agree(schedule):
    if "cpu" not in AVAILABLE:
        pytest.skip("the cpu backend is not built here")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.tanh(x @ rng.normal(size=(4, 2))).astype(np.float32)

    def run(backend, engine):
        pynn.set_seed(3)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(8, activation="relu"),
                                 pynn.Dense(2)])
        opt = optimizers.Adam(schedules.deserialize(schedules.serialize(schedule)))
        model.compile(optimizer=opt, loss="mse", backend=backend)
        h = model.fit(x, y, batch_size=6, epochs=3, verbose=0, engine=engine)  # 30 steps
        assert opt.iterations == 30 and opt.learning_rate == schedule(30)
        return h.history["loss"], model.get_weights()

    losses, weights = run("cpu", "native")
    ref_losses, ref_weights = run("numpy", "layers")
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-4)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)


# --- arguments ----------------------------------------------------------------------------

BAD = [
    (lambda: schedules.PolynomialDecay(0.1, 0), "decay_steps"),
    (lambda: schedules.PolynomialDecay(0.1, -5), "decay_steps"),
    (lambda: schedules.PolynomialDecay(-0.1, 10), "initial_learning_rate"),
    (lambda: schedules.PolynomialDecay("0.1", 10), "initial_learning_rate"),
    (lambda: schedules.PolynomialDecay(0.1, 10, end_learning_rate=-1e-3), "end_learning_rate"),
    (lambda: schedules.PolynomialDecay(0.1, 10, power=-1.0), "power"),
    (lambda: schedules.PolynomialDecay(0.1, 10, power=float("nan")), "power"),
    (lambda: schedules.InverseTimeDecay(0.1, 10, -0.5), "decay_rate"),
    (lambda: schedules.InverseTimeDecay(0.1, float("inf"), 0.5), "decay_steps"),
    (lambda: schedules.InverseTimeDecay(0.0, 10, 0.5), "initial_learning_rate"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_target=-1.0), "warmup_target"),
    (lambda: schedules.CosineDecay(0.1, 10, warmup_target=0.0), "warmup_target"),
    (lambda: schedules.CosineDecay(0.0, 10, warmup_target=0.1, warmup_steps=-1),
     "warmup_steps"),
    (lambda: schedules.CosineDecay(0.0, 10), "initial_learning_rate"),  # no warm-up: > 0
    (lambda: schedules.CosineDecay(-0.1, 10, warmup_target=0.1), "initial_learning_rate"),
    (lambda: schedules.CosineDecay(0.1, 10, alpha=1.5), "alpha"),
    (lambda: schedules.CosineDecayRestarts(0.1, 0), "first_decay_steps"),
    (lambda: schedules.CosineDecayRestarts(0.1, 10, t_mul=0.0), "t_mul"),
    (lambda: schedules.CosineDecayRestarts(0.1, 10, t_mul=-2.0), "t_mul"),
    (lambda: schedules.CosineDecayRestarts(0.1, 10, m_mul=-1.0), "m_mul"),
    (lambda: schedules.CosineDecayRestarts(0.1, 10, alpha=-0.1), "alpha"),
    (lambda: schedules.CosineDecayRestarts(0.1, 10, name=5), "name"),
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), "decay_steps"),
    (lambda: schedules.ExponentialDecay(0.1, 10, float("inf")), "decay_rate"),
    (lambda: schedules.PiecewiseConstantDecay([1], [0.1, 0.01], name=["x"]), "name"),
]


@pytest.mark.parametrize("make,argument", BAD, ids=[f"{i}-{a}" for i, (_, a) in enumerate(BAD)])
def test_bad_arguments_are_named(make, argument):
    with pytest.raises(ValueError, match=rf"(?<![a-z_]){argument} must be"):
        make()


def test_zero_rates_where_keras_allows_them():
    # a warm-up from 0 (Keras' own example), a ramp from 0, a flat inverse-time decay
    assert schedules.CosineDecay(0.0, 10, warmup_target=0.1, warmup_steps=5)(0) == 0.0
    assert schedules.PolynomialDecay(0.0, 10, 0.1)(10) == 0.1
    assert schedules.InverseTimeDecay(0.1, 10, 0.0)(1000) == 0.1
    assert schedules.CosineDecayRestarts(0.1, 10, m_mul=0.0)(10) == 0.0
