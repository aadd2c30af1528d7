"""Keras 3's `use_ema` on every optimizer: a moving average of each trainable weight, updated
after each step (the weight itself at the first step), written into the weights every
`ema_overwrite_frequency` steps and when fit ends. Against Keras 3 itself, by hand, on both
engines, with files, callbacks and bad arguments."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import pynn
from conftest import AVAILABLE, import_keras, optimizer_steps, requires_backend
from pynn import optimizers


@pytest.mark.parametrize("backend", sorted(AVAILABLE & {"numpy", "cpu", "cuda", "cupy"}))
@pytest.mark.parametrize("name,kwargs", [
    ("Adam", {"use_ema": True}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.5, "use_ema": True, "ema_momentum": 0.7,
             "ema_overwrite_frequency": 3}),
    ("Adagrad", {"learning_rate": 0.1, "use_ema": True, "ema_momentum": 0.5}),
    ("Nadam", {"learning_rate": 0.01, "use_ema": True, "ema_momentum": 0.0,
               "ema_overwrite_frequency": 1}),
])
def test_same_averages_and_weights_as_keras_3(rng, backend, name, kwargs):
    keras = import_keras()
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(7)]
    var = keras.Variable(w0)
    theirs = getattr(keras.optimizers, name)(**kwargs)
    for g in grads:
        theirs.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    ours = getattr(optimizers, name)(**kwargs)
    p, b = optimizer_steps(backend, ours, w0, grads)
    average = keras.ops.convert_to_numpy(theirs._model_variables_moving_average[0])
    np.testing.assert_allclose(b.to_numpy(p.value), keras.ops.convert_to_numpy(var), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(b.to_numpy(ours.state_of(p)["average"]), average, rtol=1e-5,
                               atol=1e-6)
    theirs.finalize_variable_values([var])
    ours.finalize_variable_values([p])
    np.testing.assert_allclose(b.to_numpy(p.value), average, rtol=1e-5, atol=1e-6)
    config = ours.get_config()
    for key in ("use_ema", "ema_momentum", "ema_overwrite_frequency"):
        assert config[key] == theirs.get_config()[key], key


def test_the_average_by_hand():
    w0, grads = np.array([1.0, -2.0]), [np.array([0.5, 0.5]), np.array([-1.0, 2.0]),
                                        np.array([0.25, 0.0])]
    opt = optimizers.SGD(0.1, use_ema=True, ema_momentum=0.8, ema_overwrite_frequency=2)
    p, b = optimizer_steps("numpy", opt, w0, grads)
    w1 = w0 - 0.1 * grads[0]
    avg1 = w1  # the first step: momentum 0
    w2 = w1 - 0.1 * grads[1]
    avg2 = 0.8 * avg1 + 0.2 * w2
    w2 = avg2  # step 2: overwritten
    w3 = w2 - 0.1 * grads[2]
    avg3 = 0.8 * avg2 + 0.2 * w3
    np.testing.assert_allclose(p.value, w3, rtol=1e-6)
    np.testing.assert_allclose(opt.state_of(p)["average"], avg3, rtol=1e-6)


def _data(rng, n=120):
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] - x[:, 1] > 0).astype(np.int32)


def _model(opt, frozen=False):
    pynn.set_seed(2)
    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(10, activation="relu",
                                                          trainable=not frozen),
                             pynn.BatchNormalization(), pynn.Dense(2, activation="softmax")])
    # (numpy where the package was installed without pynn._C: the tests of the cpu backend or
    # the native engine skip there)
    model.compile(opt, "sparse_categorical_crossentropy",
                  backend="cpu" if "cpu" in AVAILABLE else "numpy")
    return model


@requires_backend("cpu")
@pytest.mark.parametrize("frozen", [False, True])
def test_both_engines_average_and_finish_with_the_averages(rng, frozen):
    x, y = _data(rng)
    runs = {}
    for engine in ("auto", "layers"):
        model = _model(optimizers.Lion(3e-4, use_ema=True, ema_momentum=0.9,
                                       ema_overwrite_frequency=5), frozen)
        kernel0 = model.layers[1].kernel.value.copy()
        history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, engine=engine)
        assert history.params["engine"] == ("native" if engine == "auto" else "layers")
        for layer in model.layers:
            for p in layer.params:
                state = model.optimizer.state_of(p)
                if p.trainable:  # fit ended: each trainable weight is its average
                    np.testing.assert_array_equal(p.value, state["average"])
                else:
                    assert state is None or "average" not in state
        if frozen:
            np.testing.assert_array_equal(model.layers[1].kernel.value, kernel0)
        runs[engine] = model.get_weights()
    for a, b in zip(runs["auto"], runs["layers"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@requires_backend("cpu")
def test_without_ema_the_weights_are_the_last_steps(rng):
    x, y = _data(rng)
    ema = _model(optimizers.Adam(0.01, use_ema=True))
    plain = _model(optimizers.Adam(0.01))
    ema.fit(x, y, epochs=2, batch_size=16, verbose=0)
    plain.fit(x, y, epochs=2, batch_size=16, verbose=0)
    kernel = ema.layers[1].kernel
    # the averages lag the weights: the two models differ only through fit's last write
    assert not np.allclose(kernel.value, plain.layers[1].kernel.value, atol=1e-4)
    assert plain.optimizer.state_of(plain.layers[1].kernel).keys() == {"m", "v"}
    # Keras writes the averages whenever epochs > 0, also when a resumed fit has no epoch
    # left (BackupAndRestore after the last epoch)
    ema.set_weights([w + 1 for w in ema.get_weights()])
    ema.fit(x, y, epochs=2, initial_epoch=2, verbose=0)
    np.testing.assert_array_equal(kernel.value, ema.optimizer.state_of(kernel)["average"])


@requires_backend("cpu")
def test_restore_best_weights_comes_after_the_averages(rng):
    # Keras writes the averages before on_train_end, where EarlyStopping restores its best
    x, y = _data(rng)
    model = _model(optimizers.Adam(0.05, use_ema=True))
    best = {}

    class Keep(pynn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs["loss"] <= best.get("loss", np.inf):
                best.update(loss=logs["loss"], weights=self.model.get_weights())

    stop = pynn.callbacks.EarlyStopping(monitor="loss", patience=50, restore_best_weights=True)
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[Keep(), stop])
    for a, b in zip(model.get_weights(), best["weights"]):
        np.testing.assert_array_equal(a, b)


@requires_backend("cpu")
@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_a_resume_with_use_ema_from_a_backup_without_averages(tmp_path, rng, engine):
    # the engine made the averages (copies of the weights) before on_train_begin restored
    # the backup's weights: they start from the restored weights, as on the layer path
    x, y = _data(rng)
    first = _model(optimizers.Adam(0.01))
    backup = pynn.callbacks.BackupAndRestore(tmp_path / "b", delete_checkpoint=False)
    first.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[backup])
    results = {}
    for path in ("auto", "layers"):
        shutil.copytree(tmp_path / "b", tmp_path / path)  # the same backup for each
        model = _model(optimizers.Adam(0.01, use_ema=True))
        backup = pynn.callbacks.BackupAndRestore(tmp_path / path)
        history = model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[backup],
                            engine=path if path == "layers" else engine)
        assert history.epoch == [2, 3]
        results[path] = model.get_weights()
    for a, b in zip(results["auto"], results["layers"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_use_ema_off_drops_the_average_so_on_again_starts_afresh():
    opt = optimizers.SGD(0.1, use_ema=True)
    p, _ = optimizer_steps("numpy", opt, np.ones(2, np.float32), [np.ones(2, np.float32)] * 3)
    opt.use_ema = False
    opt.apply([p])
    assert "average" not in opt.state_of(p)
    opt.use_ema = True
    before = p.value.copy()
    opt.apply([p])
    np.testing.assert_allclose(opt.state_of(p)["average"], 0.99 * before + 0.01 * p.value,
                               rtol=1e-6)


@requires_backend("cpu")
def test_the_average_is_saved_and_training_resumes_bit_for_bit(tmp_path, rng):
    x, y = _data(rng)
    model = _model(optimizers.RMSprop(0.01, use_ema=True, ema_overwrite_frequency=4))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    kernel, kernel2 = model.layers[1].kernel, loaded.layers[1].kernel
    np.testing.assert_array_equal(loaded.optimizer.state_of(kernel2)["average"],
                                  model.optimizer.state_of(kernel)["average"])
    pynn.set_seed(4)
    h1 = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    pynn.set_seed(4)
    h2 = loaded.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert h1.history == h2.history
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_turned_on_mid_training_the_average_starts_at_the_weights():
    w0 = np.array([1.0, 2.0], np.float32)
    opt = optimizers.Adagrad(0.1)
    p, _ = optimizer_steps("numpy", opt, w0, [np.ones(2, np.float32)] * 2)
    opt.use_ema = True
    before = p.value.copy()
    opt.apply([p])
    after = p.value.copy()
    # not Adagrad's accumulator start (0.1) nor zero: the weight, then one step of averaging
    np.testing.assert_allclose(opt.state_of(p)["average"], 0.99 * before + 0.01 * after,
                               rtol=1e-6)


@pytest.mark.parametrize("kwargs,error,words", [
    ({"use_ema": True, "ema_momentum": 1.5}, ValueError, r"ema_momentum must be in \[0, 1\]"),
    ({"use_ema": True, "ema_momentum": -0.1}, ValueError, "ema_momentum must be >= 0"),
    ({"use_ema": True, "ema_overwrite_frequency": -1}, ValueError, "integer >= 1, or 0 or"),
    ({"use_ema": True, "ema_overwrite_frequency": 2.5}, ValueError, "integer >= 1, or 0 or"),
    ({"use_ema": True, "ema_overwrite_frequency": True}, ValueError, "integer >= 1, or 0 or"),
    ({"use_ema": "yes"}, TypeError, "use_ema must be True or False"),
])
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        optimizers.Adam(**kwargs)
    # as Keras, checked only with use_ema; turned on later, checked then (before, a bad one
    # failed in the next step, after the weights had moved)
    opt = optimizers.Adam(**{**kwargs, "use_ema": False})
    if kwargs["use_ema"] is True:
        with pytest.raises(error, match=words):
            opt.use_ema = True
        assert opt.use_ema is False


def test_a_frequency_of_0_or_beyond_any_step_is_never(rng):
    w0, grads = np.ones(3, np.float32), [rng.normal(size=3).astype(np.float32)] * 4
    plain = optimizers.SGD(0.1, use_ema=True)
    p, _ = optimizer_steps("numpy", plain, w0, grads)
    for frequency in (0, 10**400):
        opt = optimizers.SGD(0.1, use_ema=True, ema_overwrite_frequency=frequency)
        q, _ = optimizer_steps("numpy", opt, w0, grads)
        np.testing.assert_array_equal(q.value, p.value)
        assert opt.get_config()["ema_overwrite_frequency"] == frequency


@requires_backend("cpu")
def test_the_engine_takes_any_frequency_and_a_tiny_momentum(rng):
    # 10**400 overflowed the engine's int64; a momentum that rounds to 0 in float32 still
    # has its velocity slot (the engine took the average from it)
    x, y = _data(rng)
    for opt in (lambda: optimizers.Adam(0.01, use_ema=True, ema_overwrite_frequency=10**400),
                lambda: optimizers.SGD(0.1, momentum=1e-46, use_ema=True),
                lambda: optimizers.RMSprop(0.01, momentum=1e-46, use_ema=True)):
        runs = {}
        for engine in ("auto", "layers"):
            model = _model(opt())
            history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, engine=engine)
            assert history.params["engine"] == ("native" if engine == "auto" else "layers")
            runs[engine] = model.get_weights()
        for a, b in zip(runs["auto"], runs["layers"]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@requires_backend("cpu")
def test_the_engine_asks_for_the_average_slot(rng):
    from pynn import _C

    eng = _C.DenseEngine([3, 2], [0], [0.0], [True], "mse", 0.0, "lion", 4)
    params = [np.zeros((3, 2), np.float32), np.zeros(2, np.float32)]
    eng.bind(params, [True], [[np.zeros_like(p)] for p in params])
    x, y = rng.normal(size=(4, 3)).astype(np.float32), np.zeros((4, 2), np.float32)
    hyper = {"lr": 0.1, "beta_1": 0.9, "beta_2": 0.99, "use_ema": True}
    with pytest.raises(ValueError, match=r"lion needs \[m, average\], got 1 slot"):
        eng.train(x, y, np.arange(4, dtype=np.int64), 0, 1, 4, hyper, 0, [])
    sgd = _C.DenseEngine([3, 2], [0], [0.0], [True], "mse", 0.0, "sgd", 4)
    sgd.bind(params, [True], [[], []])
    with pytest.raises(ValueError, match=r"sgd needs \[average\], got 0 slot"):
        sgd.train(x, y, np.arange(4, dtype=np.int64), 0, 1, 4, {"lr": 0.1, "use_ema": True},
                  0, [])
    with pytest.raises(ValueError, match="ema_overwrite_frequency"):
        eng.train(x, y, np.arange(4, dtype=np.int64), 0, 1, 4,
                  {**hyper, "ema_overwrite_frequency": 1.5}, 0, [])


# ---- SwapEMAWeights ----------------------------------------------------------------------------
def _with_averages(model):
    """The model's weights with each trainable one's moving average in its place."""
    return [model.optimizer.state_of(p)["average"].copy() if p.trainable else p.numpy()
            for p in model.params]


def _evaluated_on(model, weights, x, y):
    kept = model.get_weights()
    model.set_weights(weights)
    try:
        return model.evaluate(x, y, verbose=0)
    finally:
        model.set_weights(kept)


@requires_backend("cpu")
@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_swap_ema_weights_validates_on_the_averages_and_trains_on(rng, engine):
    x, y = _data(rng)
    xv, yv = _data(rng, n=40)
    runs = []
    for swap in (False, True):
        model = _model(optimizers.Adam(0.02, use_ema=True, ema_momentum=0.8))
        wanted = []

        class Expect(pynn.callbacks.Callback):  # (before SwapEMAWeights: training weights)
            def on_epoch_end(self, epoch, logs=None):
                assert not np.array_equal(self.model.get_weights()[0],
                                          _with_averages(self.model)[0])
                wanted.append(_evaluated_on(self.model, _with_averages(self.model), xv, yv))

        callbacks = [Expect()] + ([pynn.callbacks.SwapEMAWeights()] if swap else [])
        history = model.fit(x, y, epochs=3, batch_size=16, validation_data=(xv, yv),
                            callbacks=callbacks, verbose=0, engine=engine)
        if swap:
            np.testing.assert_allclose(history.history["val_loss"], wanted, rtol=1e-6)
        else:  # (without it the validation ran on the training weights)
            assert not np.allclose(history.history["val_loss"], wanted, rtol=1e-6)
        runs.append((history.history["loss"], model.get_weights()))
    assert runs[0][0] == runs[1][0]  # the training itself is untouched
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


@requires_backend("cpu")
def test_swap_ema_weights_in_evaluate_and_predict_puts_the_weights_back(rng):
    x, y = _data(rng)
    model = _model(optimizers.Adam(0.05, use_ema=True, ema_momentum=0.5))
    for start in range(0, 64, 16):  # steps without fit's final write of the averages
        model.train_on_batch(x[start:start + 16], y[start:start + 16])
    weights, averaged = model.get_weights(), _with_averages(model)
    swap = pynn.callbacks.SwapEMAWeights()
    assert model.evaluate(x, y, verbose=0, callbacks=[swap]) == pytest.approx(
        _evaluated_on(model, averaged, x, y), rel=1e-6)
    got = model.predict(x, verbose=0, callbacks=[swap])
    for a, b in zip(model.get_weights(), weights):  # (Keras 3 leaves the averages in)
        np.testing.assert_array_equal(a, b)
    model.set_weights(averaged)
    np.testing.assert_array_equal(got, model.predict(x, verbose=0))


@requires_backend("cpu")
def test_swap_ema_weights_in_a_fit_without_validation(rng):
    """Nothing to swap in (no validation): on_train_end raised AttributeError after the
    training, and fit's History was lost."""
    x, y = _data(rng)
    model = _model(optimizers.SGD(0.05, use_ema=True))
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                        callbacks=[pynn.callbacks.SwapEMAWeights()])
    assert len(history.history["loss"]) == 2


@requires_backend("cpu")
@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_swap_on_epoch_holds_the_averages_between_epochs(rng, engine, tmp_path):
    x, y = _data(rng)
    runs, seen = [], []

    class After(pynn.callbacks.Callback):  # (after SwapEMAWeights: the averages)
        def on_epoch_end(self, epoch, logs=None):
            for a, b in zip(self.model.get_weights(), _with_averages(self.model)):
                np.testing.assert_array_equal(a, b)
            seen.append(epoch)

    for callbacks in ([], [pynn.callbacks.SwapEMAWeights(swap_on_epoch=True), After(),
                           pynn.callbacks.ModelCheckpoint(tmp_path / "m.npz",
                                                          monitor="loss"),
                           pynn.callbacks.EarlyStopping(monitor="loss", patience=0,
                                                        min_delta=10)]):
        model = _model(optimizers.Adam(0.02, use_ema=True, ema_momentum=0.8))
        history = model.fit(x, y, epochs=3, batch_size=16, callbacks=callbacks, verbose=0,
                            engine=engine)
        runs.append((history.history["loss"], model.get_weights(), _with_averages(model)))
    # the checkpoint holds the averages; EarlyStopping ended fit after 2 epochs (no
    # improvement of 10), and the model ended with its averages all the same
    assert seen == [0, 1] and runs[1][0] == runs[0][0][:2]
    saved = pynn.load_model(tmp_path / "m.npz")
    for a, b in zip(saved.get_weights(), runs[1][1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(runs[1][1], runs[1][2]):
        np.testing.assert_array_equal(a, b)


def test_swap_ema_weights_needs_use_ema(rng):
    x, y = _data(rng, n=16)
    model = _model(optimizers.Adam(0.01))
    model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="SwapEMAWeights must be used when `use_ema=True`"):
        model.evaluate(x, y, verbose=0, callbacks=[pynn.callbacks.SwapEMAWeights()])
    with pytest.raises(TypeError, match="swap_on_epoch must be True or False"):
        pynn.callbacks.SwapEMAWeights(swap_on_epoch="no")


@requires_backend("cpu")
def test_swap_ema_weights_puts_the_training_weights_back_when_a_call_fails(rng):
    x, y = _data(rng)
    model = _model(optimizers.Adam(0.05, use_ema=True, ema_momentum=0.5))
    for start in range(0, 64, 16):
        model.train_on_batch(x[start:start + 16], y[start:start + 16])
    weights = model.get_weights()
    swap = pynn.callbacks.SwapEMAWeights()
    with pytest.raises(ValueError):  # bad data after the swap-in
        model.predict(np.zeros((5, 3), np.float32), callbacks=[swap])
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)

    class Boom(pynn.callbacks.Callback):
        def on_test_begin(self, logs=None):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):  # another callback fails, mid-fit
        model.fit(x, y, epochs=1, validation_data=(x, y), callbacks=[swap, Boom()], verbose=0)
    trained = model.get_weights()
    assert not np.array_equal(trained[0], _with_averages(model)[0])  # the training weights
    # the same callback, reused: its next swap starts from the training weights
    swap.set_model(model)
    swap.on_test_begin()
    for a, b in zip(model.get_weights(), _with_averages(model)):
        np.testing.assert_array_equal(a, b)
    swap.on_test_end()
    for a, b in zip(model.get_weights(), trained):
        np.testing.assert_array_equal(a, b)


@requires_backend("cpu")
def test_swap_on_epoch_gives_back_the_training_weights_after_a_ctrl_c(rng):
    # Ctrl-C at an epoch's end: fit writes no averages, and the model keeps the last step's
    # weights, as without the callback (they waited in it)
    import os
    import signal

    x, y = _data(rng)
    results = []
    for extra in ([], [pynn.callbacks.SwapEMAWeights(swap_on_epoch=True)]):
        model = _model(optimizers.Adam(0.02, use_ema=True, ema_momentum=0.8))
        stop = pynn.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epoch == 1 and
                                             os.kill(os.getpid(), signal.SIGINT))
        with pytest.raises(KeyboardInterrupt):
            model.fit(x, y, epochs=3, batch_size=16, callbacks=extra + [stop], verbose=0)
        results.append(model.get_weights())
    assert not np.array_equal(results[0][0], _with_averages(model)[0])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@requires_backend("cpu")
def test_a_backup_holds_the_training_weights_behind_a_swap(rng, tmp_path):
    # BackupAndRestore after SwapEMAWeights(swap_on_epoch=True): the backup is of the
    # training weights, so a resumed run ends as an uninterrupted one
    x, y = _data(rng)

    def run(epochs, callbacks):
        model = _model(optimizers.Adam(0.02, use_ema=True, ema_momentum=0.8))
        model.fit(x, y, epochs=epochs, batch_size=16, callbacks=callbacks, verbose=0)
        return model

    whole = run(3, [pynn.callbacks.SwapEMAWeights(swap_on_epoch=True)])

    class Crash(pynn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("crash")

    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError, match="crash"):
        run(3, [pynn.callbacks.SwapEMAWeights(swap_on_epoch=True),
                pynn.callbacks.BackupAndRestore(backup), Crash()])
    resumed = run(3, [pynn.callbacks.SwapEMAWeights(swap_on_epoch=True),
                      pynn.callbacks.BackupAndRestore(backup)])
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


@requires_backend("cpu")
def test_swap_on_epoch_survives_an_evaluate_with_the_same_callback(rng):
    # a callback after the swap evaluates with the same SwapEMAWeights: the training
    # weights still come back at the next epoch's start
    x, y = _data(rng)
    runs = []
    for probe in (False, True):
        model = _model(optimizers.Adam(0.02, use_ema=True, ema_momentum=0.8))
        swap = pynn.callbacks.SwapEMAWeights(swap_on_epoch=True)
        extra = [pynn.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: model.evaluate(
            x, y, callbacks=[swap], verbose=0))] if probe else []
        history = model.fit(x, y, epochs=3, batch_size=16, callbacks=[swap] + extra,
                            verbose=0)
        runs.append((history.history["loss"], model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


@requires_backend("cpu")
def test_a_layer_frozen_later_keeps_its_weights_under_ema(rng):
    x, y = _data(rng)
    model = _model(optimizers.SGD(0.1, use_ema=True))
    model.fit(x, y, epochs=1, verbose=0)
    model.train_on_batch(x[:16], y[:16])  # (its weights now differ from their averages)
    model.layers[1].trainable = False
    frozen = model.layers[1].get_weights()
    model.fit(x, y, epochs=1, verbose=0)  # fit's end writes no average into a frozen weight
    for a, b in zip(frozen, model.layers[1].get_weights()):
        np.testing.assert_array_equal(a, b)
