"""Keras 3's other optimizers: Nadam, Adamax, Lion, Adadelta and Adam's amsgrad. The kernels
are checked against the float64 reference in test_cpu_kernels.py (kernel_cases.py), the
updates against hand computations in test_optimizers.py and the native engine's steps in
test_engine.py; here: the same trajectories as Keras 3 itself, both engines, files, options
set mid-fit and the checks of bad arguments."""

from __future__ import annotations

import re

import numpy as np
import pytest

import pynn
from conftest import AVAILABLE, import_keras, requires_backend
from pynn import optimizers

CPU_OR_NUMPY = "cpu" if "cpu" in AVAILABLE else "numpy"  # (numpy: installed without pynn._C)

# (pynn factory, the Keras 3 class name, its keyword arguments)
KERAS_CASES = [
    ("Nadam", {}),
    ("Nadam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-4,
               "weight_decay": 0.3}),
    ("Adamax", {}),
    ("Adamax", {"learning_rate": 0.02, "beta_1": 0.5, "beta_2": 0.9, "weight_decay": 0.1}),
    ("Lion", {}),
    ("Lion", {"learning_rate": 0.003, "beta_1": 0.7, "beta_2": 0.95, "weight_decay": 1.0}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adadelta", {"learning_rate": 0.5, "rho": 0.8, "epsilon": 1e-5, "weight_decay": 0.2}),
    ("Lamb", {}),
    ("Lamb", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.9, "weight_decay": 0.1}),
    ("Adam", {"learning_rate": 0.1, "amsgrad": True}),
    ("AdamW", {"learning_rate": 0.05, "amsgrad": True, "weight_decay": 0.05}),
    ("RMSprop", {"learning_rate": 0.01, "centered": True}),
    ("RMSprop", {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5, "epsilon": 1e-4,
                 "centered": True, "weight_decay": 0.1}),
    ("Ftrl", {}),
    ("Ftrl", {"learning_rate": 0.1, "learning_rate_power": -0.7,
              "initial_accumulator_value": 0.2, "l1_regularization_strength": 0.01,
              "l2_regularization_strength": 0.1, "l2_shrinkage_regularization_strength": 0.05,
              "beta": 0.5, "weight_decay": 0.1}),
    ("Ftrl", {"learning_rate": 0.5, "learning_rate_power": 0.0,
              "initial_accumulator_value": 0.0, "l1_regularization_strength": 0.3}),
    ("Adafactor", {}),
    ("Adafactor", {"learning_rate": 1.0}),  # min(lr, 1 / sqrt(t)): the relative step
    ("Adafactor", {"learning_rate": 0.05, "beta_2_decay": -0.5, "epsilon_2": 1e-2,
                   "clip_threshold": 0.5, "relative_step": False, "weight_decay": 0.1}),
    ("Muon", {}),
    ("Muon", {"learning_rate": 0.05, "gradient_accumulation_steps": 3}),  # AdamW's step count
    ("Muon", {"learning_rate": 0.02, "nesterov": False, "weight_decay": 0.1, "momentum": 0.9,
              "rms_rate": None, "ns_steps": 3, "muon_a": 3.0, "muon_b": -3.2,
              "muon_c": 1.2}),
]


def _keras_trajectory(keras, name, kwargs, w0, grads):
    var = keras.Variable(w0)
    opt = getattr(keras.optimizers, name)(**kwargs)
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    return keras.ops.convert_to_numpy(var)


def _pynn_trajectory(backend, name, kwargs, w0, grads):
    b = pynn.get_backend(backend)
    p = pynn.layers.Parameter("w", b.asarray(w0.copy(), np.float32), b)
    opt = getattr(optimizers, name)(**kwargs)
    for g in grads:
        p.grad = b.asarray(g, np.float32)
        opt.apply([p])
    return b.to_numpy(p.value)


def _close_but_for_lion_ties(name, got, want, lr, rtol=2e-5, atol=1e-6):
    """Lion moves by +-lr: an argument of its sign within rounding of 0 may go either way in
    two float32 implementations, putting a weight 2 lr apart; one such weight is allowed."""
    apart = ~np.isclose(got, want, rtol=rtol, atol=atol)
    if name == "Lion":
        assert apart.sum() <= 1 and np.all(np.abs(got - want)[apart] <= 2 * lr * 12 + atol)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("backend", sorted(AVAILABLE & {"numpy", "cpu", "cuda", "cupy"}))
@pytest.mark.parametrize("case", range(len(KERAS_CASES)),
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(KERAS_CASES)])
def test_same_steps_as_keras_3(rng, backend, case):
    keras = import_keras()
    name, kwargs = KERAS_CASES[case]
    w0 = rng.normal(size=(7, 5)).astype(np.float32)
    # gradients of varied scale, some exactly 0, 12 steps (Nadam's schedule and Adamax's
    # bias correction move every step; AMSGrad's max matters once v falls)
    grads = [(rng.normal(size=(7, 5)) * rng.choice([0.0, 0.01, 1.0, 5.0], size=(7, 5)))
             .astype(np.float32) for _ in range(12)]
    want = _keras_trajectory(keras, name, kwargs, w0, grads)
    got = _pynn_trajectory(backend, name, kwargs, w0, grads)
    lr = kwargs.get("learning_rate", 0.001)
    # float32 roundings add up over the steps, in proportion to the step size (AMSGrad at
    # lr 0.1 ends ~6e-6 from Keras; without amsgrad it is 1.5e-4 or more away)
    _close_but_for_lion_ties(name, got, want, lr, atol=max(1e-6, 2e-4 * lr))


@pytest.mark.parametrize("backend", sorted(AVAILABLE & {"numpy", "cpu", "cuda", "cupy"}))
@pytest.mark.parametrize("shape", [(1,), (6,), (1, 1), (9, 1), (1, 4)])
@pytest.mark.parametrize("name", ["Adafactor", "Ftrl", "Muon"])
def test_same_steps_as_keras_3_on_vectors_and_thin_matrices(rng, backend, shape, name):
    # Adafactor keeps v itself for a vector; a matrix's row and column means of one element;
    # Muon steps a vector by AdamW, a matrix of one row or column by its orthogonalisation
    keras = import_keras()
    w0 = rng.normal(size=shape).astype(np.float32)
    grads = [rng.normal(size=shape).astype(np.float32) for _ in range(6)]
    kwargs = {"learning_rate": 0.1}
    want = _keras_trajectory(keras, name, kwargs, w0, grads)
    got = _pynn_trajectory(backend, name, kwargs, w0, grads)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_ftrl_by_hand_and_its_l1_zeroes_weights():
    # one step from w = 0.5, g = 1, accumulator 0.1, lr 0.1, lr_power -0.5, l1 = 0.01
    opt = optimizers.Ftrl(0.1, l1_regularization_strength=0.01)
    p = pynn.layers.Parameter("w", np.array([0.5, 0.5], np.float32), pynn.get_backend("numpy"))
    p.grad = np.array([1.0, 0.0], np.float32)
    opt.apply([p])
    linear = 1.0 - (np.sqrt(1.1) - np.sqrt(0.1)) / 0.1 * 0.5
    want = (np.clip(linear, -0.01, 0.01) - linear) / (np.sqrt(1.1) / 0.1)
    np.testing.assert_allclose(p.value[0], want, rtol=1e-5)
    assert p.value[1] == 0.0  # |linear| = 0 <= l1: exactly zero
    np.testing.assert_allclose(opt.state_of(p)["accumulator"], [1.1, 0.1], rtol=1e-6)
    with pytest.raises(ValueError, match="Ftrl divides by the learning rate"):
        opt.learning_rate = 0.0
        opt.apply([p])


def test_muons_adamw_weights_as_keras_3(rng):
    """Every weight but a matrix, and the matrices of exclude_layers, take AdamW's step with
    Muon's adam_* arguments (Keras matches the expressions against the weight's path)."""
    keras = import_keras()
    kwargs = {"learning_rate": 0.01, "adam_lr_ratio": 0.5, "adam_beta_1": 0.8,
              "adam_beta_2": 0.95, "adam_weight_decay": 0.2, "epsilon": 1e-5,
              "exclude_layers": ["^head"]}
    shapes = {"head_kernel": (6, 3), "body_kernel": (6, 3), "body_bias": (3,)}
    weights = {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
    grads = [{n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}
             for _ in range(8)]
    variables = {n: keras.Variable(w, name=n) for n, w in weights.items()}
    theirs = keras.optimizers.Muon(**kwargs)
    b = pynn.get_backend("numpy")
    params = {n: pynn.layers.Parameter(n, b.asarray(w.copy(), np.float32), b)
              for n, w in weights.items()}
    ours = optimizers.Muon(**kwargs)
    for step in grads:
        theirs.apply_gradients([(keras.ops.convert_to_tensor(step[n]), variables[n])
                                for n in shapes])
        for n, p in params.items():
            p.grad = b.asarray(step[n], np.float32)
        ours.apply(list(params.values()))
    for n in shapes:
        np.testing.assert_allclose(params[n].numpy(), keras.ops.convert_to_numpy(variables[n]),
                                   rtol=2e-5, atol=2e-6, err_msg=n)
    head = params["head_kernel"]  # AdamW's two moments; a Muon matrix its momentum alone
    assert set(ours.state_of(head)) == {"momentum", "velocity"}
    assert set(ours.state_of(params["body_kernel"])) == {"momentum"}


def test_muon_reads_kerass_weight_paths_and_checks_its_patterns(rng):
    """A weight's path is Keras' (model/layer/weight): exclude_layers matches it anywhere
    (re.search), and exclude_embeddings sends an 'embedding' path to AdamW."""
    x, y = _data(rng, n=32)
    for exclude, adamw in ((["^seq/out"], {"seq/out/kernel"}), (["t/ker"], {"seq/out/kernel"}),
                           ([], set()), (["hidden"], {"seq/hidden/kernel"})):
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((8,)), pynn.Dense(12, name="hidden"),
                                 pynn.Dense(3, activation="softmax", name="out")], name="seq")
        model.compile(optimizers.Muon(0.01, exclude_layers=exclude),
                      "sparse_categorical_crossentropy", backend=CPU_OR_NUMPY)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        for layer in model.layers[1:]:
            state = model.optimizer.state_of(layer.kernel)
            assert ("velocity" in state) == (f"seq/{layer.kernel.name}" in adamw), exclude
            assert "velocity" in model.optimizer.state_of(layer.bias)  # (not a matrix)
    b = pynn.get_backend("numpy")
    table = pynn.layers.Parameter("embedding/embeddings", b.asarray(np.ones((4, 3)),
                                                                    np.float32), b)
    for exclude_embeddings in (True, False):
        opt = optimizers.Muon(exclude_embeddings=exclude_embeddings)
        table.grad = b.asarray(rng.normal(size=(4, 3)), np.float32)
        opt.apply([table])
        assert ("velocity" in opt.state_of(table)) == exclude_embeddings
    assert optimizers.Muon(exclude_layers=(p for p in ["a", "b"])).exclude_layers == ["a", "b"]
    with pytest.raises(ValueError, match=r"exclude_layers: '\(' is not a regular expression"):
        optimizers.Muon(exclude_layers=["("])
    assert optimizers.Muon(weight_decay=None).get_config()["weight_decay"] is None


def test_muon_steps_a_zero_gradient_matrix_without_nan():
    b = pynn.get_backend("numpy")
    p = pynn.layers.Parameter("w", b.asarray(np.ones((3, 4)), np.float32), b)
    opt = optimizers.Muon(0.1, weight_decay=None)
    for _ in range(3):
        p.grad = b.asarray(np.zeros((3, 4)), np.float32)
        opt.apply([p])
    np.testing.assert_array_equal(p.numpy(), np.ones((3, 4), np.float32))


@requires_backend("cpu")
@pytest.mark.parametrize("make", [lambda: optimizers.Ftrl(0.5),
                                  lambda: optimizers.Adafactor(0.05, weight_decay=0.01),
                                  lambda: optimizers.RMSprop(0.01, centered=True),
                                  lambda: optimizers.Muon(0.01, exclude_layers=["dense_1"])])
def test_ftrl_adafactor_and_centered_rmsprop_train_layer_by_layer_and_resume_from_a_file(
        tmp_path, rng, make):
    x, y = _data(rng)
    model = _model(make())
    name = type(model.optimizer).__name__
    reason = pynn.engine.unsupported_reason(model, for_training=True)
    assert reason == f"optimizer {name}" or "centered" in reason
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert history.params["engine"] == "layers"
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    kernel = model.layers[1].kernel
    for slot, value in model.optimizer.state_of(kernel).items():
        np.testing.assert_array_equal(loaded.optimizer.state_of(loaded.layers[1].kernel)[slot],
                                      value)
    if name == "Adafactor":  # the factored moments: a row and a column mean
        assert model.optimizer.state_of(kernel)["r"].shape == (8,)
        assert model.optimizer.state_of(kernel)["c"].shape == (12,)
        assert model.optimizer.state_of(model.layers[1].bias)["r"].shape == ()
    pynn.set_seed(9)
    h1 = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    pynn.set_seed(9)
    h2 = loaded.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert h1.history == h2.history


@pytest.mark.parametrize("name", ["Ftrl", "Adafactor", "Muon"])
def test_ftrl_and_adafactor_keras_names_defaults_and_config(name):
    keras = import_keras()
    ours, theirs = getattr(optimizers, name)(), getattr(keras.optimizers, name)()
    assert re.fullmatch(ours.name + r"(_\d+)?", theirs.name)
    for key, value in ours.get_config().items():
        assert theirs.get_config()[key] == pytest.approx(value), key
    assert type(optimizers.get(name.lower())) is type(ours)


@pytest.mark.parametrize("name", ["Nadam", "Adamax", "Lion", "Adadelta"])
def test_keras_3_names_defaults_and_config(name):
    keras = import_keras()
    ours, theirs = getattr(optimizers, name)(), getattr(keras.optimizers, name)()
    assert re.fullmatch(ours.name + r"(_\d+)?", theirs.name)  # Keras numbers repeats
    config = ours.get_config()
    for key, value in config.items():
        assert theirs.get_config()[key] == pytest.approx(value), key
    again = optimizers.get(optimizers.serialize(getattr(optimizers, name)(0.01,
                                                                          weight_decay=0.2)))
    assert type(again) is type(ours) and again.get_config()["weight_decay"] == 0.2


def _data(rng, n=150):
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] ** 2 > 1).astype(np.int32) + (x[:, 2] > 0)


def _model(optimizer, seed=5):
    pynn.set_seed(seed)
    model = pynn.Sequential([pynn.Input((8,)), pynn.Dense(12, activation="tanh"),
                             pynn.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=CPU_OR_NUMPY)
    return model


@requires_backend("cpu")
@pytest.mark.parametrize("make", [lambda: optimizers.Nadam(0.01, weight_decay=0.1),
                                  lambda: optimizers.Adamax(0.01, weight_decay=0.1),
                                  lambda: optimizers.Lion(0.001, weight_decay=0.5),
                                  lambda: optimizers.Adadelta(1.0, weight_decay=0.1),
                                  lambda: optimizers.AdamW(0.01, amsgrad=True)])
def test_native_engine_trains_them_with_their_weight_decay(rng, make):
    x, y = _data(rng)
    native = _model(make())
    assert pynn.engine.unsupported_reason(native, for_training=True) is None
    h_native = native.fit(x, y, epochs=3, batch_size=16, verbose=0)
    layers = _model(make())
    h_layers = layers.fit(x, y, epochs=3, batch_size=16, verbose=0, engine="layers")
    assert h_native.params["engine"] == "native" and h_layers.params["engine"] == "layers"
    lr = native.optimizer.rate()
    if isinstance(native.optimizer, optimizers.Lion):
        # +-lr steps: a sign taken at a rounding-level argument may differ (see above)
        for a, b in zip(native.get_weights(), layers.get_weights()):
            _close_but_for_lion_ties("Lion", a.ravel(), b.ravel(), lr * 3, rtol=1e-3,
                                     atol=1e-4)
        np.testing.assert_allclose(h_native.history["loss"], h_layers.history["loss"],
                                   rtol=1e-3)
    else:
        np.testing.assert_allclose(h_native.history["loss"], h_layers.history["loss"],
                                   rtol=1e-4)
        for a, b in zip(native.get_weights(), layers.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    first = [w.copy() for w in native.get_weights()]
    # a further fit trains on (its loss need not fall: Adadelta at lr 1 with decay wanders)
    assert np.isfinite(native.fit(x, y, epochs=1, verbose=0).history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(first, native.get_weights()))


@requires_backend("cpu")
@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_amsgrad_or_momentum_turned_on_mid_fit_gets_its_slot(rng, engine):
    # Keras builds its slots once; here a callback may set amsgrad (or SGD's momentum) during
    # fit: the new slot starts at zero, as it would at step 0, and the engine is rebuilt
    x, y = _data(rng)
    results = []
    for opt, option, value in [(optimizers.Adam(0.01), "amsgrad", True),
                               (optimizers.SGD(0.05), "momentum", 0.9)]:
        model = _model(opt)
        turn_on = pynn.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs, o=opt: setattr(o, option, value) if epoch == 0
            else None)
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, engine=engine,
                            callbacks=[turn_on])
        assert history.params["engine"] == ("native" if engine == "auto" else "layers")
        slots = opt.state_of(model.layers[1].kernel)
        assert ("v_hat" if option == "amsgrad" else "velocity") in slots
        assert np.all(np.isfinite(history.history["loss"]))
        results.append(history.history["loss"])
    if engine == "layers":
        return
    for (opt, option, value), want in zip([(optimizers.Adam(0.01), "amsgrad", True),
                                           (optimizers.SGD(0.05), "momentum", 0.9)], results):
        model = _model(opt)
        turn_on = pynn.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs, o=opt: setattr(o, option, value) if epoch == 0
            else None)
        got = model.fit(x, y, epochs=3, batch_size=16, verbose=0, engine="layers",
                        callbacks=[turn_on]).history["loss"]
        np.testing.assert_allclose(got, want, rtol=1e-4)


@requires_backend("cpu")
def test_options_switched_mid_fit_agree_on_both_engines(rng):
    # amsgrad off (its v_hat is kept, unused), and amsgrad on beside use_ema (its v_hat comes
    # after the average in the slot dict: the engine takes the slots by name)
    x, y = _data(rng)
    for make, option, value in [
            (lambda: optimizers.Adam(0.05, beta_2=0.5, amsgrad=True), "amsgrad", False),
            (lambda: optimizers.Adam(0.05, beta_2=0.5, use_ema=True, ema_momentum=0.9),
             "amsgrad", True)]:
        results = {}
        for engine in ("auto", "layers"):
            opt = make()
            model = _model(opt)
            switch = pynn.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs, o=opt: setattr(o, option, value)
                if epoch == 0 else None)
            history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, engine=engine,
                                callbacks=[switch])
            results[engine] = history.history["loss"], model.get_weights()
        np.testing.assert_allclose(results["auto"][0], results["layers"][0], rtol=1e-4)
        for a, b in zip(results["auto"][1], results["layers"][1]):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_amsgrad_turned_off_steps_as_plain_adam():
    g = [np.array([10.0], np.float32), np.array([0.01], np.float32),
         np.array([0.01], np.float32)]
    switched, plain = optimizers.Adam(0.1, amsgrad=True), optimizers.Adam(0.1)
    b = pynn.get_backend("numpy")
    p = pynn.layers.Parameter("w", np.zeros(1, np.float32), b)
    q = pynn.layers.Parameter("w", np.zeros(1, np.float32), b)
    for step, grad in enumerate(g):
        if step == 1:
            switched.amsgrad = False
        p.grad, q.grad = grad.copy(), grad.copy()
        switched.apply([p])
        plain.apply([q])
    np.testing.assert_array_equal(p.value, q.value)


def test_a_model_whose_options_changed_mid_training_saves_and_loads(tmp_path, rng):
    import copy
    import pickle

    x, y = _data(rng)
    # amsgrad off after training: the file holds m and v (a v_hat is not Adam's now)
    model = _model(optimizers.Adam(0.01, amsgrad=True))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.optimizer.amsgrad = False
    # a layer frozen, then amsgrad on: its weights have no v_hat yet (they start at zero,
    # as they would in memory when the layer trains again)
    other = _model(optimizers.Adam(0.01))
    other.fit(x, y, epochs=1, batch_size=16, verbose=0)
    other.layers[1].trainable = False
    other.optimizer.amsgrad = True
    other.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for m in (model, other):
        m.save(tmp_path / "m.npz")
        for loaded in (pynn.load_model(tmp_path / "m.npz"), copy.deepcopy(m),
                       pickle.loads(pickle.dumps(m))):
            np.testing.assert_array_equal(loaded.predict(x), m.predict(x))
            kernel = loaded.layers[1].kernel
            assert list(loaded.optimizer.state_of(kernel)) == \
                list(loaded.optimizer._active_slots())
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert not np.any(loaded.optimizer.state_of(loaded.layers[1].kernel)["v_hat"])


@requires_backend("cpu")
def test_the_engine_refuses_a_negative_step_count(rng):
    model = _model("nadam")
    x, y = _data(rng)
    with pytest.raises(ValueError, match="iterations: expected a count >= 0"):
        model.optimizer.iterations = -10**12  # refused where it is set now
    model.optimizer.training_steps = -10**12  # crashed the engine's Nadam (a table read at
    with pytest.raises(ValueError, match="step"):  # -1e12): the engine checks it too
        model.fit(x, y, epochs=1, verbose=0)


def test_the_numpy_nadam_caches_901_products_at_most():
    from pynn.backend.numpy_backend import _nadam_schedule_product

    _nadam_schedule_product.cache_clear()  # (other tests' steps are not this test's)
    b = pynn.get_backend("numpy")
    w, g, m, v = (np.ones(2) for _ in range(4))
    for step in range(1, 2000):  # (a cache per step held 1999 products)
        b.nadam_update(w, g, m, v, 1e-3, 0.9, 0.999, 1e-7, 0.0, step)
    assert _nadam_schedule_product.cache_info().currsize <= 901


def test_amsgrads_slot_is_saved_and_restored(tmp_path, rng):
    x, y = _data(rng)
    model = _model(optimizers.Adam(0.02, amsgrad=True))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    kernel = model.layers[1].kernel
    v, v_hat = (model.optimizer.state_of(kernel)[k] for k in ("v", "v_hat"))
    assert np.all(v_hat >= v) and np.any(v_hat > v)  # the running max kept an older value
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert loaded.optimizer.amsgrad is True
    np.testing.assert_array_equal(loaded.optimizer.state_of(loaded.layers[1].kernel)["v_hat"],
                                  v_hat)


@pytest.mark.parametrize("call,error,words", [
    (lambda: optimizers.Lion(beta_1=0.0), ValueError, "beta_1 must be > 0"),
    (lambda: optimizers.Lion(beta_1=1.01), ValueError, r"beta_1 must be in \(0, 1\]"),
    (lambda: optimizers.Lion(beta_2=-0.1), ValueError, "beta_2"),
    (lambda: optimizers.Nadam(epsilon=0), ValueError, "epsilon must be > 0"),
    (lambda: optimizers.Adamax(beta_2=float("nan")), ValueError, "beta_2"),
    (lambda: optimizers.Adadelta(rho=1.5), ValueError, "rho must be in"),
    (lambda: optimizers.Adadelta(learning_rate="fast"), ValueError, "learning_rate"),
    (lambda: optimizers.AdamW(amsgrad=None), TypeError, "amsgrad must be True or False"),
    (lambda: optimizers.get("sophia"), ValueError, "unknown optimizer 'sophia'; known: .*ftrl"),
    (lambda: optimizers.Muon(ns_steps=-1), ValueError, "ns_steps must be an integer >= 0"),
    (lambda: optimizers.Muon(ns_steps=2.5), ValueError, "ns_steps must be an integer >= 0"),
    (lambda: optimizers.Muon(momentum=1.5), ValueError, "momentum"),
    (lambda: optimizers.Muon(adam_beta_2=1.0), ValueError, "adam_beta_2"),
    (lambda: optimizers.Muon(exclude_layers="head"), TypeError, "exclude_layers must be a list"),
    (lambda: optimizers.Muon(rms_rate=-1), ValueError, "rms_rate"),
    (lambda: optimizers.Muon(muon_a=float("nan")), ValueError, "muon_a"),
    (lambda: optimizers.Muon(0.01, 0.9, 0.999, 0.004, 1e-7, 0.004, 1.0), TypeError,
     "positional"),
    (lambda: optimizers.Ftrl(learning_rate_power=0.5), ValueError, "learning_rate_power"),
    (lambda: optimizers.Ftrl(initial_accumulator_value=-1), ValueError,
     "initial_accumulator_value must be >= 0"),
    (lambda: optimizers.Ftrl(l1_regularization_strength=-0.1), ValueError, "l1_regularization"),
    (lambda: optimizers.Ftrl(beta=float("nan")), ValueError, "beta must be a finite number"),
    (lambda: optimizers.Adafactor(beta_2_decay=0.5), ValueError, "beta_2_decay must be < 0"),
    (lambda: optimizers.Adafactor(epsilon_1=0), ValueError, "epsilon_1 must be > 0"),
    (lambda: optimizers.Adafactor(clip_threshold=-1), ValueError, "clip_threshold"),
    (lambda: optimizers.Adafactor(relative_step="no"), TypeError, "relative_step"),
    (lambda: optimizers.Lamb(beta_2=1.0), ValueError, r"beta_2 must be in \[0, 1\)"),
])
def test_bad_arguments(call, error, words):
    with pytest.raises(error, match=words):
        call()


@requires_backend("cpu")
def test_the_cpu_kernels_check_their_arrays():
    C = pynn.get_backend("cpu")._C
    w, g, m, v = (np.zeros(5, np.float32) for _ in range(4))
    with pytest.raises(ValueError, match="step"):
        C.nadam_update(w, g, m, v, 1e-3, 0.9, 0.999, 1e-7, 0.0, 0)
    with pytest.raises(ValueError, match="step"):
        C.adamax_update(w, g, m, v, 1e-3, 0.9, 0.999, 1e-7, 0.0, -3)
    with pytest.raises(ValueError, match="v_hat"):
        C.adam_update(w, g, m, v, 1e-3, 0.9, 0.999, 1e-7, 0.0, 1, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="v_hat"):
        C.adam_update(w, g, m, v, 1e-3, 0.9, 0.999, 1e-7, 0.0, 1, m)
    with pytest.raises(ValueError, match="accumulated_delta"):
        C.adadelta_update(w, g, m, m, 1.0, 0.95, 1e-7, 0.0)
    with pytest.raises(TypeError, match="float32"):
        C.lion_update(w, g, m.astype(np.float64), 1e-3, 0.9, 0.99, 0.0)
    readonly = np.zeros(5, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        C.lion_update(w, g, readonly, 1e-3, 0.9, 0.99, 0.0)


@requires_backend("cpu")
def test_the_engine_asks_for_amsgrads_third_slot(rng):
    from pynn import _C

    eng = _C.DenseEngine([3, 2], [0], [0.0], [True], "mse", 0.0, "adam", 4)
    params = [np.zeros((3, 2), np.float32), np.zeros(2, np.float32)]
    state = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    eng.bind(params, [True], state)
    x, y = rng.normal(size=(4, 3)).astype(np.float32), np.zeros((4, 2), np.float32)
    hyper = {"lr": 0.1, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": True}
    with pytest.raises(ValueError, match=r"amsgrad needs \[m, v, v_hat\], got 2 slot"):
        eng.train(x, y, np.arange(4, dtype=np.int64), 0, 1, 4, hyper, 0, [])
    with pytest.raises(ValueError, match=r"expected \[m, u\]"):
        _C.DenseEngine([3, 2], [0], [0.0], [True], "mse", 0.0, "adamax", 4).bind(
            params, [True], [[np.zeros_like(p)] for p in params])


@requires_backend("cpu")
def test_lamb_trains_layer_by_layer_and_names_why(rng):
    x, y = _data(rng)
    model = _model(optimizers.Lamb(0.01))
    assert pynn.engine.unsupported_reason(model, for_training=True) == "optimizer Lamb"
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert history.params["engine"] == "layers"
    assert history.history["loss"][-1] < history.history["loss"][0]


@requires_backend("cpu")
def test_centered_rmsprop_set_mid_fit_hands_over_to_the_layers_with_its_slot(rng):
    x, y = _data(rng)
    losses = {}
    for engine in ("auto", "layers"):
        opt = optimizers.RMSprop(0.01, momentum=0.5)
        model = _model(opt)
        turn_on = pynn.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs, o=opt: setattr(o, "centered", True)
            if epoch == 0 else None)
        losses[engine] = model.fit(x, y, epochs=3, batch_size=16, verbose=0, engine=engine,
                                   callbacks=[turn_on]).history["loss"]
        assert set(opt.state_of(model.layers[1].kernel)) == {"velocity", "momentum",
                                                             "average_gradient"}
    np.testing.assert_allclose(losses["auto"], losses["layers"], rtol=1e-4)


def test_lion_takes_kerass_whole_range_of_beta_1(rng):
    # Keras' Lion takes beta_1 in (0, 1]: 1 steps by the sign of the momentum alone
    keras = import_keras()
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(4)]
    kwargs = {"learning_rate": 0.01, "beta_1": 1.0}
    np.testing.assert_allclose(_pynn_trajectory("numpy", "Lion", kwargs, w0, grads),
                               _keras_trajectory(keras, "Lion", kwargs, w0, grads), atol=1e-6)


def test_muon_keeps_each_weights_kind_through_changes_and_files(rng, tmp_path):
    # a weight's kind (Muon's step or AdamW's) is decided when it is first seen, as Keras
    # decides at build: a later exclude_layers does not turn its Muon momentum into Adam's
    # first moment (a step 259 times too long), and a file keeps it
    x, y = _data(rng, n=32)
    pynn.set_seed(0)
    model = pynn.Sequential([pynn.Input((8,)), pynn.Dense(12, name="hidden"),
                             pynn.Dense(3, activation="softmax", name="out")], name="seq")
    model.compile(optimizers.Muon(0.01), "sparse_categorical_crossentropy",
                  backend=CPU_OR_NUMPY)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    kernel = model.layers[1].kernel
    model.optimizer.exclude_layers = ["hidden"]
    before = kernel.numpy()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert set(model.optimizer.state_of(kernel)) == {"momentum"}
    assert np.abs(kernel.numpy() - before).max() < 0.1
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert set(loaded.optimizer.state_of(loaded.layers[1].kernel)) == {"momentum"}
    assert set(loaded.optimizer.state_of(loaded.layers[1].bias)) == {"momentum", "velocity"}
    pynn.set_seed(3)
    h1 = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    pynn.set_seed(3)
    h2 = loaded.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert h1.history == h2.history


def _kernel_and_bias(backend="numpy"):
    b = pynn.get_backend(backend)
    kernel = pynn.layers.Parameter("dense/kernel", b.asarray(np.ones((2, 3)), np.float32), b)
    bias = pynn.layers.Parameter("dense/bias", b.asarray(np.ones(3), np.float32), b)
    for p in (kernel, bias):
        p.grad = b.zeros(p.value.shape, np.float32)  # no step: what moves is the decay
    return kernel, bias


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Nadam", "Adamax", "Lion",
                                  "Adadelta", "Lamb", "RMSprop", "Adagrad", "Muon"])
def test_exclude_from_weight_decay_keeps_the_named_weights_out(name):
    """Keras 3's exclude_from_weight_decay(var_list, var_names), the usual way to keep
    biases and normalisation scales out of AdamW's decay, did not exist."""
    cls = getattr(optimizers, name)
    extra = {"adam_weight_decay": 0.5} if name == "Muon" else {}  # (its bias' decay)
    for choice in ({"var_names": ["bias"]}, {"var_names": ["ia"]},  # a part of the name
                   {"var_list": "bias"}):
        opt = cls(0.1, weight_decay=0.5, **extra)
        kernel, bias = _kernel_and_bias()
        if "var_list" in choice:
            opt.exclude_from_weight_decay(var_list=[bias])
        else:
            opt.exclude_from_weight_decay(**choice)
        opt.apply([kernel, bias])
        np.testing.assert_array_equal(bias.value, 1.0)
        np.testing.assert_allclose(kernel.value, 1 - 0.1 * 0.5, rtol=1e-6)
    opt = cls(0.1, weight_decay=0.5, **extra)
    opt.exclude_from_weight_decay(var_names=["dense"])  # the weight's own name, as Keras
    opt.exclude_from_weight_decay()  # a call replaces the previous one's choice
    kernel, bias = _kernel_and_bias()
    opt.apply([kernel, bias])
    np.testing.assert_allclose(bias.value, 1 - 0.1 * 0.5, rtol=1e-6)
    assert "_decay_off" not in vars(opt)


@requires_backend("cpu")
@pytest.mark.parametrize("make", [lambda: optimizers.AdamW(0.05, weight_decay=0.3),
                                  lambda: optimizers.Nadam(0.01, weight_decay=0.3)])
def test_exclude_from_weight_decay_trains_layer_by_layer_and_mid_fit(rng, make):
    # the native engine decays every weight alike: with a weight kept out, fit trains by
    # layers and says why; set by a callback mid-fit, the engine leaves
    x, y = _data(rng)
    opt = make()
    opt.exclude_from_weight_decay(var_names=["bias"])
    model = _model(opt)
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert history.params["engine"] == "layers"
    assert "exclude_from_weight_decay keeps 'dense" in model.engine_reason
    opt.exclude_from_weight_decay(var_names=["no such weight"])  # none kept out
    assert model.fit(x, y, epochs=1, verbose=0).params["engine"] == "native"
    results = []
    for engine in ("auto", "layers"):
        opt = make()
        model = _model(opt)
        exclude = pynn.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs, o=opt: o.exclude_from_weight_decay(
                var_names=["bias"]) if epoch == 0 else None)
        model.fit(x, y, epochs=3, batch_size=16, verbose=0, engine=engine,
                  callbacks=[exclude])
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_exclude_from_weight_decay_as_keras_3(rng):
    keras = import_keras()
    x = rng.normal(size=(24, 5)).astype(np.float32)
    y = rng.normal(size=(24, 3)).astype(np.float32)
    w0 = [rng.normal(size=(5, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32),
          rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)]
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh"),
                               keras.layers.Dense(3)])
    opt = keras.optimizers.AdamW(0.05, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_list=[theirs.layers[1].kernel], var_names=["bias"])
    theirs.compile(optimizer=opt, loss="mse")
    theirs.set_weights(w0)
    theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    ours = pynn.Sequential([pynn.Input((5,)), pynn.Dense(6, activation="tanh"),
                            pynn.Dense(3)])
    opt = optimizers.AdamW(0.05, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_list=[ours.layers[2].kernel], var_names=["bias"])
    ours.compile(optimizer=opt, loss="mse")
    ours.set_weights(w0)
    ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_exclude_from_weight_decay_checks_its_arguments():
    opt = optimizers.AdamW()
    with pytest.raises(TypeError, match="var_list takes weights .* names go in var_names"):
        opt.exclude_from_weight_decay(var_list=["bias"])
    with pytest.raises(TypeError, match="var_names must be a list of regular expressions"):
        opt.exclude_from_weight_decay(var_names="bias")  # ("b|i|a|s" in Keras)
    with pytest.raises(ValueError, match="var_names: '\\[' is not a regular expression"):
        opt.exclude_from_weight_decay(var_names=["["])
    assert "var_names" not in opt.get_config()  # as Keras: not part of the config
