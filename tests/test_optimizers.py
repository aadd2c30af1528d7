"""Each optimizer's update against a step computed by hand (Python floats, Keras' formulas),
on every available backend, and the learning rate's checks and run-time changes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pynn
from pynn import optimizers
from pynn.layers import Parameter
from conftest import AVAILABLE, NATIVE, requires_native


def _param(backend, w, g):
    p = Parameter("w", backend.asarray(np.array(w), np.float64 if backend.supports_float64
                                       else np.float32), backend)
    p.grad = backend.asarray(np.array(g), p.value.dtype)
    return p


def _run(opt, backend_name, w, grads):
    b = pynn.get_backend(backend_name)
    p = _param(b, w, grads[0])
    for g in grads:
        p.grad = b.asarray(np.array(g), p.value.dtype)
        opt.apply([p])
    return b.to_numpy(p.value).astype(np.float64)


W0 = [0.5, -1.0, 2.0]
GRADS = [[0.1, -0.2, 0.3], [0.4, 0.0, -0.5], [-0.3, 0.2, 0.1]]
BACKENDS = sorted(AVAILABLE & {"numpy", "cpu", "cuda", "cupy"})


def _hand_sgd(lr, momentum, nesterov):
    out = []
    for i, w in enumerate(W0):
        v = 0.0
        for g in (gs[i] for gs in GRADS):
            if momentum == 0:
                w -= lr * g
                continue
            v = momentum * v - lr * g
            w = w + momentum * v - lr * g if nesterov else w + v
        out.append(w)
    return out


def _hand_adam(lr, b1, b2, eps, wd=0.0):
    out = []
    for i, w in enumerate(W0):
        m = v = 0.0
        for t, g in enumerate((gs[i] for gs in GRADS), start=1):
            w -= lr * wd * w
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            w -= lr_t * m / (math.sqrt(v) + eps)
        out.append(w)
    return out


def _hand_rmsprop(lr, rho, momentum, eps):
    out = []
    for i, w in enumerate(W0):
        v = mom = 0.0
        for g in (gs[i] for gs in GRADS):
            v = rho * v + (1 - rho) * g * g
            inc = lr * g / math.sqrt(v + eps)
            if momentum:
                mom = momentum * mom + inc
                w -= mom
            else:
                w -= inc
        out.append(w)
    return out


def _hand_adagrad(lr, init, eps):
    out = []
    for i, w in enumerate(W0):
        acc = init
        for g in (gs[i] for gs in GRADS):
            acc += g * g
            w -= lr * g / math.sqrt(acc + eps)
        out.append(w)
    return out


def _hand_amsgrad(lr, b1, b2, eps):
    out = []
    for i, w in enumerate(W0):
        m = v = v_hat = 0.0
        for t, g in enumerate((gs[i] for gs in GRADS), start=1):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            v_hat = max(v_hat, v)
            w -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (math.sqrt(v_hat) + eps)
        out.append(w)
    return out


def _hand_nadam(lr, b1, b2, eps, wd=0.0):
    # Keras 3's nadam.py: a u_product variable multiplied by this step's mu before the update
    out = []
    for i, w in enumerate(W0):
        m = v = 0.0
        u_product = 1.0
        for t, g in enumerate((gs[i] for gs in GRADS), start=1):
            w -= lr * wd * w
            u_t = b1 * (1 - 0.5 * 0.96 ** t)
            u_t1 = b1 * (1 - 0.5 * 0.96 ** (t + 1))
            u_product *= u_t
            m += (g - m) * (1 - b1)
            v += (g * g - v) * (1 - b2)
            m_hat = u_t1 * m / (1 - u_product * u_t1) + (1 - u_t) * g / (1 - u_product)
            w -= m_hat * lr / (math.sqrt(v / (1 - b2 ** t)) + eps)
        out.append(w)
    return out


def _hand_adamax(lr, b1, b2, eps):
    out = []
    for i, w in enumerate(W0):
        m = u = 0.0
        for t, g in enumerate((gs[i] for gs in GRADS), start=1):
            m += (g - m) * (1 - b1)
            u = max(b2 * u, abs(g))
            w -= lr * m / ((1 - b1 ** t) * (u + eps))
        out.append(w)
    return out


def _hand_lion(lr, b1, b2, wd=0.0):
    out = []
    for i, w in enumerate(W0):
        m = 0.0
        for g in (gs[i] for gs in GRADS):
            w -= lr * wd * w
            c = b1 * m + (1 - b1) * g
            w -= lr * ((c > 0) - (c < 0))
            m = b2 * m + (1 - b2) * g
        out.append(w)
    return out


def _hand_adadelta(lr, rho, eps):
    out = []
    for i, w in enumerate(W0):
        acc_g = acc_d = 0.0
        for g in (gs[i] for gs in GRADS):
            acc_g = rho * acc_g + (1 - rho) * g * g
            d = -math.sqrt(acc_d + eps) * g / math.sqrt(acc_g + eps)
            acc_d = rho * acc_d + (1 - rho) * d * d
            w += lr * d
        out.append(w)
    return out


def _hand_lamb(lr, b1, b2, eps):
    # one tensor: the trust ratio ||w|| / ||step|| is taken over all of W0
    w, m, v = list(W0), [0.0] * 3, [0.0] * 3
    for t, gs in enumerate(GRADS, start=1):
        step = []
        for i, g in enumerate(gs):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            step.append(m[i] / (1 - b1 ** t) / (math.sqrt(v[i] / (1 - b2 ** t)) + eps))
        ratio = math.sqrt(sum(x * x for x in w)) / math.sqrt(sum(s * s for s in step))
        w = [wi - lr * ratio * si for wi, si in zip(w, step)]
    return w


CASES = [
    (lambda: optimizers.SGD(0.1), _hand_sgd(0.1, 0.0, False)),
    (lambda: optimizers.SGD(0.1, momentum=0.9), _hand_sgd(0.1, 0.9, False)),
    (lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True), _hand_sgd(0.1, 0.9, True)),
    (lambda: optimizers.Adam(0.01), _hand_adam(0.01, 0.9, 0.999, 1e-7)),
    (lambda: optimizers.AdamW(0.01, weight_decay=0.1), _hand_adam(0.01, 0.9, 0.999, 1e-7, 0.1)),
    (lambda: optimizers.RMSprop(0.01), _hand_rmsprop(0.01, 0.9, 0.0, 1e-7)),
    (lambda: optimizers.RMSprop(0.01, momentum=0.5), _hand_rmsprop(0.01, 0.9, 0.5, 1e-7)),
    (lambda: optimizers.Adagrad(0.1), _hand_adagrad(0.1, 0.1, 1e-7)),
    (lambda: optimizers.Adam(0.01, amsgrad=True), _hand_amsgrad(0.01, 0.9, 0.999, 1e-7)),
    (lambda: optimizers.Nadam(0.01), _hand_nadam(0.01, 0.9, 0.999, 1e-7)),
    (lambda: optimizers.Nadam(0.02, beta_1=0.8, beta_2=0.9, epsilon=1e-3, weight_decay=0.5),
     _hand_nadam(0.02, 0.8, 0.9, 1e-3, 0.5)),
    (lambda: optimizers.Adamax(0.01), _hand_adamax(0.01, 0.9, 0.999, 1e-7)),
    (lambda: optimizers.Lion(0.01), _hand_lion(0.01, 0.9, 0.99)),
    (lambda: optimizers.Lion(0.01, beta_1=0.5, beta_2=0.9, weight_decay=2.0),
     _hand_lion(0.01, 0.5, 0.9, 2.0)),
    (lambda: optimizers.Adadelta(1.0), _hand_adadelta(1.0, 0.95, 1e-7)),
    (lambda: optimizers.Lamb(0.01), _hand_lamb(0.01, 0.9, 0.999, 1e-7)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_update_matches_hand_computed(backend, case):
    make, expected = CASES[case]
    got = _run(make(), backend, list(W0), GRADS)
    tol = 1e-12 if pynn.get_backend(backend).supports_float64 else 1e-6
    np.testing.assert_allclose(got, expected, rtol=tol * 10, atol=tol)


@pytest.mark.parametrize("name,cls", [("sgd", optimizers.SGD), ("adam", optimizers.Adam),
                                      ("adamw", optimizers.AdamW), ("rmsprop", optimizers.RMSprop),
                                      ("adagrad", optimizers.Adagrad),
                                      ("nadam", optimizers.Nadam), ("adamax", optimizers.Adamax),
                                      ("lion", optimizers.Lion),
                                      ("adadelta", optimizers.Adadelta),
                                      ("lamb", optimizers.Lamb)])
def test_by_name(name, cls):
    assert type(optimizers.get(name)) is cls
    assert type(optimizers.get(name.upper())) is cls


@pytest.mark.parametrize("bad", [-0.1, float("inf"), float("nan"), "fast", None])
def test_bad_learning_rate(bad):
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.Adam(learning_rate=bad)
    opt = optimizers.SGD()
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = bad


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="momentum"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="beta_1"):
        optimizers.Adam(beta_1=1.0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        optimizers.get("adamax2")


def test_learning_rate_settable_during_training():
    """A callback halving the rate each epoch: the optimizer sees the new value."""
    pynn.set_seed(0)
    x = np.linspace(-1, 1, 64).reshape(-1, 1)
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    seen = []

    class Halve(pynn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.model.optimizer.learning_rate)
            self.model.optimizer.learning_rate = self.model.optimizer.learning_rate / 2

    model.fit(x, 3 * x, epochs=3, verbose=0, callbacks=[Halve()])
    assert seen == [0.1, 0.05, 0.025]
    assert model.optimizer.learning_rate == 0.0125


def test_learning_rate_as_keras_variables_are_used():
    # Keras code sets and reads the rate through variable methods; they raised AttributeError.
    opt = optimizers.Adam(0.01)
    opt.learning_rate.assign(1e-4)
    assert opt.learning_rate == 1e-4 and opt.learning_rate.numpy() == 1e-4
    assert type(opt.learning_rate.numpy()) is float
    for value in (np.array(0.02), np.float32(0.5), np.array([0.3])[0]):  # 0-d was refused
        opt.learning_rate = value
        assert opt.learning_rate == float(value)
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = np.array([0.1, 0.2])
    import copy
    import pickle
    assert type(pickle.loads(pickle.dumps(opt.learning_rate))) is float
    assert type(copy.deepcopy(opt.learning_rate)) is float


@pytest.mark.parametrize("opt", [optimizers.SGD(0.01), optimizers.RMSprop(0.01),
                                 optimizers.Adagrad(0.01)])
def test_float32_updates_stay_float32_on_the_numpy_backend(rng, opt):
    # The user-facing rate (a float subclass) reached the update: numpy then computed the
    # float32 update in float64 (5.8x slower on a 2000x2000 weight; other bits than the
    # C++ kernels) and CuPy refused the scalar.
    from pynn.layers.base import Parameter

    b = pynn.get_backend("numpy")
    w = rng.normal(size=1000).astype(np.float32)
    p = Parameter("w", w.copy(), b)
    p.grad = rng.normal(size=1000).astype(np.float32)
    opt.apply([p])
    assert p.value.dtype == np.float32
    if isinstance(opt, optimizers.SGD):
        np.testing.assert_array_equal(p.value, w - np.float32(0.01) * p.grad)


def test_a_kept_learning_rate_does_not_keep_its_optimizer():
    import gc
    import weakref

    opt = optimizers.Adam(0.01)
    rate, ref = opt.learning_rate, weakref.ref(opt)
    del opt
    gc.collect()
    assert ref() is None and rate == 0.01
    with pytest.raises(RuntimeError, match="gone"):
        rate.assign(0.1)


def test_a_number_does_not_silently_replace_a_schedule():
    opt = optimizers.SGD(pynn.schedules.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="schedule"):
        opt.learning_rate = 0.1
    with pytest.raises(TypeError, match="schedule"):
        opt.learning_rate.assign(0.1)
    assert opt.has_schedule
    opt.learning_rate = pynn.schedules.ExponentialDecay(0.2, 10, 0.5)  # another schedule: yes
    assert opt.learning_rate == 0.2


def test_an_optimizer_trains_one_model():
    """Its state belongs to one model's weights: a second live model is refused with a clear
    error; once the first is gone the optimizer starts afresh, never reusing the state of a
    freed weight whose id a new one happens to get."""
    import gc

    def model():
        m = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3)])
        return m

    opt = pynn.optimizers.Adam(learning_rate=0.01)
    first = model()
    first.compile(optimizer=opt, loss="mse")
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 3))
    first.fit(x, y, epochs=2, verbose=0)
    assert opt.iterations > 0
    with pytest.raises(ValueError, match="already trains another model"):
        model().compile(optimizer=opt, loss="mse")
    first.compile(optimizer=opt, loss="mse")  # the same model again is fine
    del first
    gc.collect()
    second = model()
    second.compile(optimizer=opt, loss="mse")
    assert opt.iterations == 0
    assert all(opt.state_of(p) is None for p in second.params)


def test_an_optimizer_is_released_when_its_model_is_recompiled_with_another():
    """It stayed owned until the first model was garbage-collected."""
    opt = pynn.optimizers.Adam(learning_rate=0.01)
    first = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3)])
    first.compile(optimizer=opt, loss="mse")
    first.fit(np.ones((8, 4), np.float32), np.zeros((8, 3)), verbose=0)
    first.compile(optimizer="sgd", loss="mse")
    second = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3)])
    second.compile(optimizer=opt, loss="mse")
    assert opt.iterations == 0  # starts afresh with its new model
    with pytest.raises(ValueError, match="already trains another model"):
        first.compile(optimizer=opt, loss="mse")  # now second's


def test_state_lookup_checks_the_parameter_itself():
    opt = pynn.optimizers.Adam()
    backend = pynn.get_backend("numpy")
    p = Parameter("w", np.zeros(3, np.float32), backend)
    opt.set_state_of(p, {"m": np.ones(3), "v": np.ones(3)})
    impostor = Parameter("w", np.zeros(3, np.float32), backend)
    opt._state[id(impostor)] = opt._state.pop(id(p))  # what id reuse after a free looks like
    assert opt.state_of(impostor) is None


def test_infinite_hyper_parameters_are_refused():
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite"):
            pynn.optimizers.Adam(learning_rate=bad)
        with pytest.raises(ValueError, match="finite"):
            pynn.optimizers.SGD(clipnorm=bad)


def test_state_follows_the_weights_dtype_after_set_floatx():
    """Trained in float64, then in float32 again: the optimizer's slots follow the weights'
    dtype, so the native engine (float32) takes the model as the layer path does."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)), rng.normal(size=(32, 1))
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(8, activation="relu"), pynn.Dense(1)])
    previous = pynn.floatx()
    try:
        pynn.set_floatx("float64")
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, epochs=1, verbose=0)
        pynn.set_floatx("float32")
        model.fit(x, y, epochs=1, verbose=0)
    finally:
        pynn.set_floatx(previous)
    assert {v.dtype for p in model.params for v in model.optimizer.state_of(p).values()} \
        == {np.dtype(np.float32)}


def test_a_refused_recompile_keeps_the_optimizer_owned():
    """The release happened before the new optimizer was refused: a third model could then
    take (and reset) the optimizer the first still trains with."""
    opt1, opt2 = pynn.optimizers.Adam(), pynn.optimizers.Adam()
    a = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    b = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    a.compile(optimizer=opt1, loss="mse")
    b.compile(optimizer=opt2, loss="mse")
    with pytest.raises(ValueError, match="already trains another model"):
        a.compile(optimizer=opt2, loss="mse")
    assert a.optimizer is opt1
    with pytest.raises(ValueError, match="already trains another model"):
        pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)]).compile(optimizer=opt1, loss="mse")


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
def test_adam_weight_decay_is_adamw_as_in_keras_3(engine, rng):
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = x @ rng.normal(size=(3, 2)).astype(np.float32)
    trained = []
    for opt in (pynn.optimizers.Adam(0.01, weight_decay=0.05),
                pynn.optimizers.AdamW(0.01, weight_decay=0.05), pynn.optimizers.Adam(0.01)):
        pynn.set_seed(7)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="tanh"),
                                 pynn.Dense(2)])
        model.compile(optimizer=opt, loss="mse")
        model.fit(x, y, epochs=3, batch_size=8, verbose=0, engine=engine, shuffle=False)
        trained.append(model.get_weights())
    for a, b in zip(trained[0], trained[1]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(trained[0], trained[2]))
    assert pynn.optimizers.Adam().get_config().get("weight_decay") is None
    restored = pynn.optimizers.Adam(**pynn.optimizers.Adam(weight_decay=0.05).get_config())
    assert restored.weight_decay == 0.05
    with pytest.raises(ValueError, match="weight_decay"):
        pynn.optimizers.Adam(weight_decay=-1)
    with pytest.raises(ValueError, match="weight_decay"):
        pynn.optimizers.AdamW(weight_decay=None)


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adagrad"])
def test_every_optimizer_takes_keras_3s_decoupled_weight_decay(name, rng):
    # Keras 3: w -= lr * weight_decay * w before each update (a base-class argument)
    cls = type(pynn.optimizers.get(name))
    w = rng.normal(size=5).astype(np.float32)
    g = rng.normal(size=5).astype(np.float32)
    numpy = pynn.get_backend("numpy")
    decayed = _param(numpy, w.copy(), g.copy())
    plain = _param(numpy, (w - w * np.float32(0.1 * 0.3)).copy(), g.copy())
    cls(0.1, weight_decay=0.3).apply([decayed])
    cls(0.1).apply([plain])
    # atol: RMSprop's step is ~0.32 whatever g, so a weight near it ends near 0, where the
    # two float32 roundings of w * 0.03 differ relatively
    np.testing.assert_allclose(decayed.value, plain.value, rtol=1e-6, atol=1e-7)
    x = rng.normal(size=(24, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile(cls(0.01, weight_decay=0.1), "mse")
    history = model.fit(x, x[:, :2], epochs=1, verbose=0)
    assert history.params["engine"] == "layers"  # the native engine has Adam's alone
    if NATIVE:  # (without pynn._C the reason is that it is missing)
        assert "weight_decay on" in pynn.engine.unsupported_reason(model, for_training=True)
    assert cls(weight_decay=0.1).get_config()["weight_decay"] == 0.1
    assert cls.__name__ in repr(cls(weight_decay=0.1))


def test_keras_3_optimizer_arguments():
    adam = pynn.optimizers.Adam(amsgrad=False, name="my_adam")
    assert adam.name == "my_adam" and adam.get_config()["name"] == "my_adam"
    assert pynn.optimizers.Adam().name == "adam" and pynn.optimizers.SGD().name == "SGD"
    assert "name" not in pynn.optimizers.Adam().get_config()
    assert pynn.optimizers.Adam(amsgrad=True).get_config()["amsgrad"] is True
    with pytest.raises(TypeError, match="amsgrad must be True or False"):
        pynn.optimizers.Adam(amsgrad="yes")
    assert pynn.optimizers.RMSprop(use_ema=True).get_config()["use_ema"] is True
    with pytest.raises(NotImplementedError, match="is not supported by pynn"):
        pynn.optimizers.RMSprop(loss_scale_factor=128.0)


ALL_OPTIMIZERS = [type(optimizers.get(name)) for name in optimizers.NAMES]


@pytest.mark.parametrize("cls", ALL_OPTIMIZERS, ids=lambda c: c.__name__)
def test_weight_decay_set_to_none_is_no_decay(cls, rng):
    """Keras' "no decay" is None; set after construction (a callback), training failed with
    a different TypeError per path (a float times None, the kernels' and the engine's)."""
    x = rng.normal(size=(24, 3)).astype(np.float32)
    y = x[:, :2] * 2
    paths = [(b, e) for b, e in [("cpu", "auto"), ("cpu", "layers"), ("numpy", "auto")]
             if b in AVAILABLE]

    def run(backend, engine, none):
        pynn.set_seed(4)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="tanh"),
                                 pynn.Dense(2)])
        # (the reference: built without decay; AdamW's and Muon's default is 0.004)
        optimizer = cls(0.5 if cls is optimizers.Adadelta else 0.01, weight_decay=0.0)
        if none:
            optimizer.weight_decay = 0.1
            optimizer.weight_decay = None
            assert optimizer.weight_decay == 0.0
        model.compile(optimizer=optimizer, loss="mse", backend=backend)
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, engine=engine, shuffle=False)
        return model.get_weights()

    for backend, engine in paths:
        for a, b in zip(run(backend, engine, True), run(backend, engine, False)):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        cls().weight_decay = -0.1


@pytest.mark.parametrize("engine", ["native", "layers"])
def test_a_keras_learning_rate_function_of_no_argument(engine, rng):
    """Keras documents learning_rate as a float, a schedule or "a callable that takes no
    arguments": pynn called it with the step, a TypeError inside fit."""
    if "cpu" not in AVAILABLE:
        pytest.skip("the cpu backend is not built here")
    x = rng.normal(size=(32, 3)).astype(np.float32)
    rate = {"now": 0.02}

    def run(learning_rate):
        pynn.set_seed(1)
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
        model.compile(optimizer=optimizers.Adam(learning_rate), loss="mse", backend="cpu")
        halve = pynn.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: rate.update(now=rate["now"] / 2))
        model.fit(x, x[:, :2], epochs=3, batch_size=8, verbose=0, engine=engine,
                  shuffle=False, callbacks=[halve])
        return model

    keras_style = run(lambda: rate["now"])  # read at each step, as Keras does
    assert keras_style.history.params["engine"] == engine
    by_step = run(lambda step: 0.02 / 2 ** (step // 4))  # 4 steps an epoch
    for a, b in zip(keras_style.get_weights(), by_step.get_weights()):
        np.testing.assert_array_equal(a, b)
    # one reading the optimizer's step count sees each step's (the native engine, which
    # runs many steps a call, gave all of a call's steps its first count)
    counting = optimizers.Adam()
    counting.learning_rate = lambda: 0.02 / (1 + int(counting.iterations))
    by_count = run(lambda step: 0.02 / (1 + step))
    pynn.set_seed(1)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile(optimizer=counting, loss="mse", backend="cpu")
    model.fit(x, x[:, :2], epochs=3, batch_size=8, verbose=0, engine=engine, shuffle=False)
    for a, b in zip(model.get_weights(), by_count.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert counting.training_steps == 12
    opt = optimizers.SGD(lambda: 0.03)
    assert opt.has_schedule and opt.learning_rate == 0.03
    p = _param(pynn.get_backend("numpy"), [1.0], [1.0])
    opt.apply([p])
    np.testing.assert_allclose(p.value, [0.97])
    assert optimizers.SGD(lambda step=0: 0.1 * (step + 1)).learning_rate == 0.1  # the step
    with pytest.raises(TypeError, match="takes the step .* or no argument"):
        optimizers.SGD(lambda step, scale: 0.1)


def test_a_keras_style_custom_optimizer_is_refused_by_name():
    """Keras' custom optimizers define update_step(gradient, variable, learning_rate), which
    pynn never calls: a subclass of SGD trained as plain SGD, silently; one of the base
    class failed with an AttributeError about pynn's private _update."""
    class HalfSGD(optimizers.SGD):
        def update_step(self, gradient, variable, learning_rate):
            variable.assign(variable - 0.5 * learning_rate * gradient)

    class MyOpt(optimizers.Optimizer):
        def __init__(self, learning_rate=0.01, **kwargs):
            super().__init__(learning_rate, **kwargs)

        def update_step(self, gradient, variable, learning_rate):
            variable.assign(variable - learning_rate * gradient)

    class Nothing(optimizers.Optimizer):
        def __init__(self, learning_rate=0.01):
            super().__init__(learning_rate)

    class Both(HalfSGD):  # written for both libraries: pynn calls its _update
        def _update(self, b, w, g, s, lr):
            w -= 0.5 * lr * g

    for opt in (HalfSGD(0.1), MyOpt(0.1)):
        model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
        with pytest.raises(TypeError, match=f"{type(opt).__name__} defines update_step.*"
                                            r"Keras' hook, which pynn does not call: a pynn "
                                            r"optimizer defines _update\(self, b, w, g, s, lr\)"):
            model.compile(optimizer=opt, loss="mse")
        with pytest.raises(TypeError, match="update_step"):
            optimizers.get(opt)
    with pytest.raises(TypeError, match=r"Nothing does not define the update: a pynn "
                                        r"optimizer defines _update\(self, b, w, g, s, lr\)"):
        pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)]).compile(Nothing(), "mse")
    with pytest.raises(TypeError, match="Nothing does not define the update"):
        Nothing().apply([_param(pynn.get_backend("numpy"), [1.0], [1.0])])  # without compile
    p = _param(pynn.get_backend("numpy"), [1.0], [1.0])
    optimizers.get(Both(0.2)).apply([p])
    np.testing.assert_allclose(p.value, [0.9])


def test_an_update_step_of_a_classs_own_is_not_kerass_hook():
    # a helper named update_step (not Keras' (gradient, variable, learning_rate)), or a
    # class with its own apply(), trained before the Keras-hook check and still does
    class LoggingAdam(pynn.optimizers.Adam):
        def update_step(self):  # a helper of its own
            return "logged"

    class OwnApply(pynn.optimizers.SGD):
        def update_step(self, gradient, variable, learning_rate):
            variable -= learning_rate * gradient

        def apply(self, params):
            for p in params:
                self.update_step(p.grad, p.value, self.learning_rate)

    for opt in (LoggingAdam(), OwnApply(0.1)):
        model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
        model.compile(opt, "mse")
        before = model.get_weights()[0].copy()
        model.fit(np.ones((4, 2), np.float32), np.zeros(4, np.float32), verbose=0,
                  engine="layers")
        assert not np.array_equal(model.get_weights()[0], before)

    class KerasStyle(pynn.optimizers.SGD):
        def update_step(self, gradient, variable, learning_rate):
            pass

    with pytest.raises(TypeError, match="defines update_step.*Keras' hook"):
        pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)]).compile(KerasStyle(), "mse")


def test_iterations_and_keras2_arguments_are_checked():
    # (a user-level review) opt.iterations = -5 ran the schedules' rates backwards and
    # failed in a kernel at the next step; Keras 2's decay and lr failed on a bare TypeError
    opt = pynn.optimizers.Adam()
    for bad in (-5, 2.7, "x", True):
        with pytest.raises(ValueError, match="iterations: expected a count >= 0"):
            opt.iterations = bad
    opt.iterations = np.int64(3)
    assert int(opt.iterations) == 3
    with pytest.raises(ValueError, match="iterations: expected a count >= 0"):
        opt.iterations.assign(-1)
    keras2 = {"class_name": "Adam", "config": {"learning_rate": 0.01, "decay": 0.0}}
    assert pynn.optimizers.deserialize(keras2).learning_rate == 0.01  # (Keras 2's files)
    with pytest.raises(ValueError, match=r"decay=0.001 is Keras 2's time decay.*"
                                         r"InverseTimeDecay\(rate, 1, 0.001\)"):
        pynn.optimizers.SGD(decay=0.001)
    with pytest.raises(TypeError, match="lr is Keras 2's name; pass learning_rate="):
        pynn.optimizers.RMSprop(lr=0.1)
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['foo'\]"):
        pynn.optimizers.Adam(foo=1)
    for boundaries in (["a"], [None], [float("nan")], [True]):
        with pytest.raises(ValueError, match="boundaries must be finite numbers"):
            pynn.optimizers.schedules.PiecewiseConstantDecay(boundaries, [0.1, 0.2])


# Arguments every optimizer takes, checked elsewhere: the rate and the step count by their
# properties, clipping and weight decay by Optimizer.__setattr__'s own rules, the moving
# average's two settings when fit starts (Keras checks them with use_ema only), the name.
_SHARED = {"learning_rate", "name", "clipnorm", "clipvalue", "global_clipnorm", "weight_decay",
           "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
           "gradient_accumulation_steps"}


@pytest.mark.parametrize("cls", ALL_OPTIMIZERS, ids=lambda c: c.__name__)
def test_every_hyperparameter_is_checked_when_set_later(cls):
    """A hyperparameter set after construction (by a callback, or by hand) is checked as the
    constructor checks it: beta_1 = 1.5 set mid-fit diverged silently, momentum = "0.9" failed
    inside a kernel."""
    optimizer = cls()
    config = optimizer.get_config()
    own = set(config) - _SHARED
    assert own <= set(cls._checks), f"unchecked: {own - set(cls._checks)}"
    for name in own:
        kept = getattr(optimizer, name)
        for bad in ("0.9", -1e9, float("nan")):
            try:
                cls(**{name: bad})
            except (TypeError, ValueError) as refused:
                with pytest.raises(type(refused)):
                    setattr(optimizer, name, bad)
                assert getattr(optimizer, name) == kept  # (left as it was)
            else:  # (what the constructor takes, a later setting takes too)
                setattr(optimizer, name, bad)
                setattr(optimizer, name, kept)
        setattr(optimizer, name, config[name])  # its own value, given again: taken
        assert cls(**{name: config[name]}).get_config()[name] == config[name]


def test_a_hyperparameter_set_later_is_checked_by_class():
    sgd, rmsprop = optimizers.SGD(), optimizers.RMSprop()
    sgd.momentum = 1.0  # Keras' SGD takes [0, 1], its RMSprop [0, 1)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        rmsprop.momentum = 1.0
    adam = optimizers.Adam()
    with pytest.raises(ValueError, match=r"beta_1 must be in \[0, 1\)"):
        adam.beta_1 = 1.5
    with pytest.raises(TypeError, match="amsgrad must be True or False"):
        adam.amsgrad = "yes"
    adam.beta_1 = np.float32(0.5)  # numpy numbers: kept as floats
    assert type(adam.beta_1) is float and adam.beta_1 == 0.5
    with pytest.raises(ValueError, match=r"beta_1 must be in \(0, 1\]"):
        optimizers.Lion().beta_1 = 1.5


def test_the_shared_settings_are_checked_when_set_later_too():
    adam = optimizers.Adam(use_ema=True)
    for name, bad in (("ema_momentum", 1.5), ("ema_momentum", "0.9"),
                      ("ema_overwrite_frequency", -3)):
        with pytest.raises(ValueError, match=name):
            setattr(adam, name, bad)
    assert adam.ema_momentum == 0.99 and adam.ema_overwrite_frequency is None
    plain = optimizers.Adam()
    plain.ema_momentum = 1.5  # (checked with use_ema only, as Keras)
    with pytest.raises(ValueError, match="ema_momentum"):
        plain.use_ema = True
    assert plain.use_ema is False
    with pytest.raises(TypeError, match="name must be a string"):
        plain.name = 5
    with pytest.raises(NotImplementedError, match="loss_scale_factor"):
        plain.loss_scale_factor = 128
    clipped = optimizers.Adam(clipnorm=1.0)
    with pytest.raises(ValueError, match="set clipnorm to None first"):
        clipped.clipvalue = 0.5
    clipped.clipnorm = None
    clipped.clipvalue = 0.5
    assert clipped.clipvalue == 0.5
    plain.beta_1 = np.array(0.5)  # (a 0-d array, as learning_rate takes)
    assert plain.beta_1 == 0.5 and type(plain.beta_1) is float
