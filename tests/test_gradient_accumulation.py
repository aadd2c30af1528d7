"""Keras 3's `gradient_accumulation_steps=k` on every optimizer: the weights change every k-th
step, by the mean of the k steps' gradients (clipped, decayed and averaged as Keras does).
Against Keras 3 itself, by hand, against one k-times larger batch, with files and backups."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from conftest import AVAILABLE, import_keras, optimizer_steps, requires_backend
from pynn import optimizers, schedules

BACKENDS = sorted(AVAILABLE & {"numpy", "cpu", "cuda", "cupy"})


def _keras_and_pynn(keras, name, kwargs):
    theirs_kwargs, ours_kwargs = dict(kwargs), dict(kwargs)
    rate = kwargs.get("learning_rate")
    if isinstance(rate, tuple):  # an ExponentialDecay's (initial, decay_steps, decay_rate)
        theirs_kwargs["learning_rate"] = keras.optimizers.schedules.ExponentialDecay(*rate)
        ours_kwargs["learning_rate"] = schedules.ExponentialDecay(*rate)
    theirs = getattr(keras.optimizers, name)(**theirs_kwargs)
    return theirs, getattr(optimizers, name)(**ours_kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,kwargs", [
    ("Adam", {"learning_rate": 0.01, "gradient_accumulation_steps": 3}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.5, "nesterov": True,
             "gradient_accumulation_steps": 2, "use_ema": True, "ema_momentum": 0.7,
             "ema_overwrite_frequency": 2}),
    ("Nadam", {"learning_rate": 0.01, "gradient_accumulation_steps": 2, "clipnorm": 0.5}),
    ("AdamW", {"learning_rate": (0.1, 2, 0.5), "gradient_accumulation_steps": 3,
               "weight_decay": 0.1}),
    ("Adagrad", {"learning_rate": 0.1, "gradient_accumulation_steps": 4,
                 "global_clipnorm": 1.0, "use_ema": True}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.3, "gradient_accumulation_steps": 2,
                 "clipvalue": 0.4}),
    ("Adadelta", {"learning_rate": 1.0, "gradient_accumulation_steps": 2}),
    ("Adafactor", {"learning_rate": 0.05, "gradient_accumulation_steps": 2}),  # (slots of
    ("Ftrl", {"learning_rate": 0.1, "gradient_accumulation_steps": 3}),        # own shapes)
])
def test_same_weights_and_state_as_keras_3(rng, backend, name, kwargs):
    keras = import_keras()
    w0 = rng.normal(size=(4, 3)).astype(np.float32)
    grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(11)]
    var = keras.Variable(w0)
    theirs, ours = _keras_and_pynn(keras, name, kwargs)
    for g in grads:
        theirs.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    p, b = optimizer_steps(backend, ours, w0, grads)
    assert int(ours.iterations) == int(keras.ops.convert_to_numpy(theirs.iterations))
    assert ours.training_steps == 11
    np.testing.assert_allclose(b.to_numpy(p.value), keras.ops.convert_to_numpy(var),
                               rtol=1e-5, atol=1e-6)
    sums = keras.ops.convert_to_numpy(theirs._accumulated_gradients[0])
    np.testing.assert_allclose(b.to_numpy(ours.state_of(p)["gradient_accumulator"]), sums,
                               rtol=1e-5, atol=1e-6)
    if kwargs.get("use_ema"):
        average = keras.ops.convert_to_numpy(theirs._model_variables_moving_average[0])
        np.testing.assert_allclose(b.to_numpy(ours.state_of(p)["average"]), average,
                                   rtol=1e-5, atol=1e-6)
    assert ours.get_config()["gradient_accumulation_steps"] == kwargs[
        "gradient_accumulation_steps"]


def test_by_hand():
    w0 = np.array([1.0, -2.0], np.float32)
    g = [np.array(v, np.float32) for v in ([0.5, 1.0], [1.5, -1.0], [4.0, 2.0])]
    opt = optimizers.SGD(0.1, gradient_accumulation_steps=2)
    p = pynn.layers.Parameter("w", w0.copy(), pynn.get_backend("numpy"))
    p.grad = g[0].copy()
    opt.apply([p])
    np.testing.assert_array_equal(p.value, w0)  # the first of two steps: no change
    np.testing.assert_array_equal(opt.state_of(p)["gradient_accumulator"], g[0])
    assert (opt.training_steps, opt.iterations) == (1, 0)
    for grad in g[1:]:
        p.grad = grad.copy()
        opt.apply([p])
    np.testing.assert_allclose(p.value, w0 - 0.1 * (g[0] + g[1]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(opt.state_of(p)["gradient_accumulator"], g[2])
    assert (opt.training_steps, opt.iterations) == (3, 1)
    opt.iterations.assign(3)  # Keras' update count: the next step starts a window
    assert opt.training_steps == 6 and opt.iterations.numpy() == 3


@pytest.mark.parametrize("value", [1, -2, 2.5, True, "2"])
def test_bad_values_are_refused(value):
    with pytest.raises(ValueError, match="gradient_accumulation_steps must be an integer >= 2"):
        optimizers.Adam(gradient_accumulation_steps=value)
    opt = optimizers.Adam()
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        opt.gradient_accumulation_steps = value


@pytest.mark.parametrize("value", [None, 0])
def test_none_and_0_accumulate_nothing(value):
    opt = optimizers.SGD(0.5, gradient_accumulation_steps=value)
    assert opt.gradient_accumulation_steps is None
    assert "gradient_accumulation_steps" not in opt.get_config()
    p, _ = optimizer_steps("numpy", opt, np.ones(2, np.float32), [np.ones(2, np.float32)])
    np.testing.assert_allclose(p.value, [0.5, 0.5])
    assert set(opt.state_of(p)) == set()


def _regression(rng, n=96):
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = np.stack([x[:, 0] - 2 * x[:, 1], np.tanh(x[:, 2] * x[:, 3])], axis=1)
    return x, y.astype(np.float32)


def _model(opt, backend):
    pynn.set_seed(3)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8, activation="tanh"),
                             pynn.Dense(2)])
    model.compile(opt, "mse", backend=backend)
    return model


# Adam's, AdamW's and Lamb's epsilon 1e-3 (not 1e-7 or 1e-6): a first step is lr * sign(g)
# wherever |g| >> epsilon, so a gradient component that is float32 rounding noise moved by up
# to lr between the two runs (Adam: 1.4e-5 after 12 steps, 2 datasets in 1000, CI failed on
# one; Lamb 2.6e-6). With 1e-3, in 4000 datasets: Adam and AdamW 1.8e-7 at most, Lamb 9e-7.
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [
    lambda k: optimizers.Adam(0.01, epsilon=1e-3, gradient_accumulation_steps=k),
    lambda k: optimizers.SGD(0.05, momentum=0.9, nesterov=True, clipnorm=0.3,
                             gradient_accumulation_steps=k),
    lambda k: optimizers.RMSprop(0.01, global_clipnorm=0.5, gradient_accumulation_steps=k),
    lambda k: optimizers.AdamW(0.01, weight_decay=0.05, amsgrad=True, epsilon=1e-3,
                               gradient_accumulation_steps=k),
    lambda k: optimizers.Lamb(0.01, epsilon=1e-3, gradient_accumulation_steps=k),
], ids=["adam", "sgd", "rmsprop", "adamw", "lamb"])
def test_k_batches_accumulated_train_as_one_k_times_larger_batch(rng, backend, make):
    # the mean squared error of a batch is the mean of its k equal parts' means
    x, y = _regression(rng)
    big = _model(make(None), backend)
    big.fit(x, y, epochs=3, batch_size=24, shuffle=False, verbose=0)
    small = _model(make(3), backend)
    history = small.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    assert history.params["engine"] == "layers"
    assert small.optimizer.iterations == big.optimizer.iterations == 12
    for a, b in zip(small.get_weights(), big.get_weights()):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@requires_backend("cpu")
def test_the_native_engine_leaves_it_to_the_layers_and_says_why(rng):
    x, y = _regression(rng, 16)
    model = _model(optimizers.Adam(gradient_accumulation_steps=2), "cpu")
    assert "gradient_accumulation_steps" in pynn.engine.unsupported_reason(model)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        model.fit(x, y, epochs=1, verbose=0, engine="native")
    assert model.fit(x, y, epochs=1, batch_size=4, verbose=0).params["engine"] == "layers"
    model.optimizer.gradient_accumulation_steps = None
    history = model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert history.params["engine"] == "native"
    assert "gradient_accumulator" not in model.optimizer.state_of(model.layers[1].kernel)


class _SwitchOn(pynn.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.model.optimizer.gradient_accumulation_steps = 2


@requires_backend("cpu")
def test_turned_on_mid_fit_the_engine_hands_over(rng):
    x, y = _regression(rng, 32)
    model = _model(optimizers.SGD(0.1), "cpu")
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[_SwitchOn()])
    # epoch 0: 4 steps, 4 updates; then 8 steps, 4 updates
    assert model.optimizer.training_steps == 12 and model.optimizer.iterations == 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_saved_model_resumes_mid_window_bit_for_bit(tmp_path, rng, backend):
    x, y = _regression(rng, 40)
    batches = [(x[i:i + 5], y[i:i + 5]) for i in range(0, 40, 5)]
    model = _model(optimizers.Nadam(0.01, gradient_accumulation_steps=3, use_ema=True),
                   backend)
    for bx, by in batches[:4]:  # one update and one step of the next window
        model.train_on_batch(bx, by)
    model.save(tmp_path / "m.npz")
    previous = pynn.get_backend().name
    pynn.set_backend(backend)  # (load_model builds on the current backend)
    try:
        loaded = pynn.load_model(tmp_path / "m.npz")
    finally:
        pynn.set_backend(previous)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert (loaded.optimizer.training_steps, loaded.optimizer.iterations) == (4, 1)
    for bx, by in batches[4:]:
        assert model.train_on_batch(bx, by) == loaded.train_on_batch(bx, by)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backup_resumes_the_window_in_progress(tmp_path, rng, backend):
    x, y = _regression(rng, 40)  # 5 steps an epoch with k = 2: windows cross epochs

    def run(epochs, path):
        model = _model(optimizers.Adam(0.01, gradient_accumulation_steps=2), backend)
        backup = pynn.callbacks.BackupAndRestore(path, delete_checkpoint=False)
        model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=[backup])
        return model

    run(1, tmp_path / "b")
    resumed = run(3, tmp_path / "b")
    whole = run(3, tmp_path / "whole")
    assert resumed.optimizer.training_steps == whole.optimizer.training_steps == 15
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
