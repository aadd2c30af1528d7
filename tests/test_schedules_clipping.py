"""Learning-rate schedules and gradient clipping, on every optimizer, with both engines."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pynn
from pynn import optimizers, schedules
from pynn.layers import Parameter

from conftest import AVAILABLE


def test_schedule_formulas():
    e = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert e(0) == 0.1 and math.isclose(e(10), 0.05) and math.isclose(e(5), 0.1 * 0.5 ** 0.5)
    s = schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True)
    assert s(9) == 0.1 and math.isclose(s(10), 0.05) and math.isclose(s(25), 0.025)
    p = schedules.PiecewiseConstantDecay([5, 10], [1.0, 0.5, 0.1])
    assert [p(0), p(5), p(6), p(10), p(11)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    c = schedules.CosineDecay(1.0, decay_steps=100, alpha=0.1)
    assert c(0) == 1.0 and math.isclose(c(50), 0.55) and math.isclose(c(100), 0.1)
    assert math.isclose(c(1000), 0.1)
    with pytest.raises(ValueError):
        schedules.PiecewiseConstantDecay([5], [1.0])
    with pytest.raises(ValueError):
        schedules.ExponentialDecay(-1, 10, 0.5)


def _param(w, g):
    b = pynn.get_backend("numpy")
    p = Parameter("w", np.array(w, dtype=np.float64), b)
    p.grad = np.array(g, dtype=np.float64)
    return p


def test_scheduled_sgd_uses_the_rate_of_each_step():
    opt = optimizers.SGD(learning_rate=lambda step: 0.1 * (step + 1))
    p = _param([1.0], [1.0])
    for _ in range(3):
        p.grad = np.array([1.0])
        opt.apply([p])
    assert math.isclose(p.value[0], 1.0 - 0.1 - 0.2 - 0.3)
    assert opt.has_schedule and math.isclose(opt.learning_rate, 0.4)
    with pytest.raises(TypeError, match="schedule"):  # as Keras: a number does not replace it
        opt.learning_rate = 0.5
    opt.learning_rate = lambda step: 0.5  # another schedule does
    assert opt.has_schedule and opt.learning_rate == 0.5


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_a_schedule_may_give_a_0d_array(engine):
    """np.where(...) or a Keras schedule's scalar tensor: taken as the number it holds, as a
    plain learning_rate is (it was refused as 'not a finite number')."""
    pynn.set_seed(2)
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    runs = []
    for rate in (lambda step: np.where(step < 2, 0.1, 0.01),
                 lambda step: 0.1 if step < 2 else 0.01):
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1, kernel_initializer="ones")])
        model.compile(optimizers.SGD(learning_rate=rate), "mse")
        model.fit(x, x[:, :1], epochs=2, batch_size=4, shuffle=False, verbose=0, engine=engine)
        runs.append(model.get_weights())
        assert model.optimizer.learning_rate == pytest.approx(0.01)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_clipvalue_clipnorm_global_clipnorm():
    p = _param([0.0, 0.0], [3.0, -4.0])
    optimizers.SGD(1.0, clipvalue=1.0).apply([p])
    np.testing.assert_allclose(p.value, [-1.0, 1.0])
    p = _param([0.0, 0.0], [3.0, -4.0])  # norm 5 -> 1
    optimizers.SGD(1.0, clipnorm=1.0).apply([p])
    np.testing.assert_allclose(p.value, [-0.6, 0.8])
    a, b = _param([0.0], [3.0]), _param([0.0], [4.0])  # joint norm 5 -> 2.5
    optimizers.SGD(1.0, global_clipnorm=2.5).apply([a, b])
    np.testing.assert_allclose([a.value[0], b.value[0]], [-1.5, -2.0])
    small = _param([0.0], [0.1])  # below the bound: untouched
    optimizers.SGD(1.0, clipnorm=1.0).apply([small])
    np.testing.assert_allclose(small.value, [-0.1])
    # Keras 3 refuses two clippings (both were applied in turn, then a norm won)
    for options in ({"clipnorm": 1.0, "global_clipnorm": 1.0}, {"clipvalue": 0.05,
                    "clipnorm": 0.06}, {"clipvalue": 0.05, "global_clipnorm": 0.06}):
        with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and "
                                             "global_clipnorm"):
            optimizers.SGD(1.0, **options)
    with pytest.raises(ValueError, match="clipvalue"):
        optimizers.Adam(clipvalue=-1.0)


@pytest.mark.parametrize("engine,backend", [("native", "cpu"), ("layers", "cpu"),
                                            ("layers", "numpy")])
def test_a_schedule_that_reaches_zero_trains_on_and_stops_moving(engine, backend):
    """CosineDecay's default alpha=0 ends at a rate of 0 (as Keras, a legal rate): training
    goes on past decay_steps, and the steps at rate 0 leave the weights as they were."""
    if backend not in AVAILABLE:
        pytest.skip(f"backend {backend!r} is not built here")
    x = np.random.default_rng().normal(size=(64, 3)).astype(np.float32)
    y = x.sum(axis=1)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="tanh"),
                             pynn.Dense(1)])
    model.compile(optimizer=optimizers.Adam(schedules.CosineDecay(0.05, decay_steps=8)),
                  loss="mse", backend=backend)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, engine=engine)  # 8 steps: down to 0
    assert model.optimizer.learning_rate == 0.0
    before = model.get_weights()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, engine=engine)
    assert model.optimizer.iterations == 24
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("engine", ["native", "layers"])
def test_schedule_in_fit_matches_between_engines(engine):
    pytest.importorskip("pynn._C")
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x.sum(axis=1)

    def run(engine):
        pynn.set_seed(5)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="relu"),
                                 pynn.Dense(1)])
        lr = schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5)
        model.compile(optimizer=optimizers.Adam(lr), loss="mse", backend="cpu")
        h = model.fit(x, y, epochs=2, batch_size=8, verbose=0, engine=engine)
        return h.history["loss"], model.get_weights(), model.optimizer

    losses, weights, opt = run(engine)
    ref_losses, ref_weights, _ = run("layers")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert opt.iterations == 16 and math.isclose(opt.learning_rate, 0.05 * 0.5 ** (16 / 3))


def test_a_schedule_runs_whole_chunks_natively(monkeypatch):
    # The engine took one call per batch under a schedule (up to ~1.8x on small models); now
    # each chunk's rates go down with it: a call per chunk, the layer path's results.
    pytest.importorskip("pynn._C")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 3)).astype(np.float32)
    y = x.sum(axis=1)
    calls = []
    train = pynn.engine.NativeEngine.train
    monkeypatch.setattr(pynn.engine.NativeEngine, "train",
                        lambda self, *a, **k: calls.append(1) or train(self, *a, **k))

    def run(engine):
        pynn.set_seed(5)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="relu"),
                                 pynn.Dense(1)])
        lr = schedules.CosineDecay(0.05, decay_steps=150, alpha=0.1)
        model.compile(optimizer=optimizers.SGD(lr, momentum=0.9), loss="mse", backend="cpu")
        h = model.fit(x, y, epochs=2, batch_size=8, verbose=0, engine=engine)
        return h.history["loss"], model.get_weights()

    losses, weights = run("native")
    assert len(calls) == 2 * 7  # 100 steps an epoch in chunks of 16 (no bar: at least 16)
    ref_losses, ref_weights = run("layers")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("engine", ["native", "layers"])
def test_global_clipnorm_bounds_the_step(engine):
    pytest.importorskip("pynn._C")
    pynn.set_seed(0)
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(3), pynn.Dense(1)])
    model.compile(optimizer=optimizers.SGD(1.0, global_clipnorm=0.01), loss="mse",
                  backend="cpu")
    before = model.get_weights()
    model.fit(np.full((4, 2), 100.0), np.full(4, -1e4), batch_size=4, epochs=1, verbose=0,
              engine=engine)
    step = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(model.get_weights(), before)))
    assert 0.01 - 1e-6 <= step <= 0.01 + 1e-6


CLIPS = [dict(clipvalue=0.05), dict(clipnorm=0.3), dict(global_clipnorm=0.5)]


@pytest.mark.parametrize("opt", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: "+".join(c))
def test_clipping_matches_between_engines(opt, clip):
    # Large targets so that every kind of clipping is active on most steps.
    pytest.importorskip("pynn._C")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(96, 5)).astype(np.float32)
    y = 20 * x[:, :2] @ np.array([[1.0, -2.0], [0.5, 1.0]]) + 5

    def run(engine, clip=clip):
        pynn.set_seed(2)
        model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8, activation="tanh"),
                                 pynn.Dense(6, activation="relu"), pynn.Dense(2)])
        optimizer = {"sgd": optimizers.SGD(0.01, momentum=0.5, **clip),
                     "adam": optimizers.Adam(0.01, **clip),
                     "rmsprop": optimizers.RMSprop(0.01, **clip)}[opt]
        model.compile(optimizer=optimizer, loss="mse", backend="cpu")
        # 48 steps: the native engine runs two batches per call
        h = model.fit(x, y, epochs=3, batch_size=2, verbose=0, engine=engine)
        return h.history["loss"], model.get_weights()

    losses, weights = run("native")
    ref_losses, ref_weights = run("layers")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    if len(clip) > 1:  # a norm beside clipvalue: the norm alone applies, on both engines
        norm_only = {k: v for k, v in clip.items() if k != "clipvalue"}
        for a, b in zip(weights, run("native", norm_only)[1]):
            np.testing.assert_array_equal(a, b)


def test_schedule_survives_save_and_load(tmp_path):
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer=optimizers.Adam(schedules.CosineDecay(0.1, 100), clipnorm=2.0),
                  loss="mse")
    model.fit(np.ones((8, 2)), np.ones(8), batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "s.npz")
    loaded = pynn.load_model(tmp_path / "s.npz")
    assert isinstance(loaded.optimizer._schedule, schedules.CosineDecay)
    assert loaded.optimizer.clipnorm == 2.0
    assert loaded.optimizer.learning_rate == model.optimizer.learning_rate


def test_piecewise_constant_zero_pauses_training_and_bad_pieces_are_named():
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    p = schedules.PiecewiseConstantDecay([1], [0.1, 0.0])  # lr 0 is valid (SGD(0.0) is)
    model.compile(optimizer=pynn.optimizers.SGD(p), loss="mse")
    x = np.random.default_rng().normal(size=(8, 2)).astype(np.float32)
    model.fit(x, x[:, :1], batch_size=4, epochs=1, verbose=0)  # steps 0, 1 (<= 1) at 0.1
    after = model.get_weights()
    model.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=0)  # steps 2.. at 0
    for a, b in zip(after, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="boundaries must not decrease"):
        schedules.PiecewiseConstantDecay([5, 3], [1.0, 0.5, 0.1])
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="values must be finite and >= 0"):
            schedules.PiecewiseConstantDecay([5], [1.0, bad])


@pytest.mark.parametrize("engine,backend", [("native", "cpu"), ("layers", "cpu"),
                                            ("layers", "numpy")])
@pytest.mark.parametrize("option", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_a_clipping_of_zero_is_no_clipping(engine, backend, option):
    """Keras 3 reads 0 as off (`if self.clipnorm and self.clipnorm > 0`): a callback turning
    clipping off with 0 stopped training on the layer path (every gradient clipped to 0),
    not in the native engine; the constructor refused 0, which Keras' configs may hold."""
    if backend not in AVAILABLE or (engine == "native" and "cpu" not in AVAILABLE):
        pytest.skip(f"backend {backend!r} is not built here")
    x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)

    def run(**clip):
        pynn.set_seed(3)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="tanh"),
                                 pynn.Dense(1)])
        optimizer = optimizers.Adam(0.01, **clip)
        model.compile(optimizer=optimizer, loss="mse", backend=backend)
        if clip:
            setattr(optimizer, option, 0.0)  # turned off after construction
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, engine=engine, shuffle=False)
        return model

    model, plain = run(**{option: 0.5}), run()
    assert model.optimizer.clipping == (None, None) and not model.optimizer.clips
    for a, b in zip(model.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    zero = optimizers.Adam(0.01, **{option: 0})  # as Keras' config may hold it
    assert getattr(zero, option) == 0.0 and not zero.clips
    assert optimizers.Adam.from_config(zero.get_config()).get_config()[option] == 0.0


def test_a_zero_clipping_saves_and_a_negative_one_is_refused(tmp_path):
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer=optimizers.SGD(0.1, clipvalue=0.5), loss="mse")
    model.optimizer.clipnorm = 0  # set beside the clipvalue: off, the clipvalue applies
    assert model.optimizer.clipping == ("clipvalue", 0.5)
    # (the constructor takes one clipping: the one that applies is written)
    assert model.optimizer.get_config()["clipvalue"] == 0.5
    assert "clipnorm" not in model.optimizer.get_config()
    model.optimizer.clipvalue = 0.0
    model.fit(np.ones((4, 2)), np.ones(4), epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")  # refused: the constructor took no 0
    loaded = pynn.load_model(tmp_path / "m.npz").optimizer
    assert not loaded.clips and (loaded.clipnorm, loaded.clipvalue) in [(0.0, None),
                                                                        (None, 0.0)]
    for option in ("clipnorm", "clipvalue", "global_clipnorm"):
        with pytest.raises(ValueError, match=f"{option} must be > 0 \\(0 or None: no "):
            optimizers.SGD(**{option: -1.0})
        with pytest.raises(ValueError, match=f"{option} must be > 0"):
            setattr(optimizers.SGD(), option, -1.0)  # a negative norm flipped the gradient
        with pytest.raises(ValueError, match=f"{option} must be a finite number"):
            setattr(optimizers.SGD(), option, "1")


@pytest.mark.parametrize("option", ["clipnorm", "global_clipnorm"])
def test_clipping_a_gradient_beyond_float32_squares(option):
    """A gradient of 1e20 (its square beyond float32): clipped to a step of norm lr, as the
    native engine does; squared in float32 the norm was inf and the step 0 (or NaN)."""
    b = pynn.get_backend("numpy")
    weight = Parameter("w", b.asarray(np.ones(4), np.float32), b)
    weight.grad = b.asarray(np.full(4, 1e20), np.float32)
    optimizers.SGD(0.5, **{option: 1.0}).apply([weight])
    np.testing.assert_allclose(weight.value, 1 - 0.5 * np.full(4, 0.5), rtol=1e-6)
