"""Sequential end to end: learning, Keras' API shape, history, save/load, callbacks."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

import pynn
from pynn.demo import build_model, load_digits_split
from conftest import NATIVE


def test_one_neuron_learns_a_line():
    pynn.set_seed(1)
    x = np.linspace(-2, 2, 200, dtype=np.float32)
    y = 5 * x + 1
    model = pynn.Sequential([pynn.Dense(1, input_shape=(1,))])
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=0.05), loss="mse")
    model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    kernel, bias = model.get_weights()
    assert kernel.shape == (1, 1) and bias.shape == (1,)
    assert abs(kernel[0, 0] - 5) < 0.05
    assert abs(bias[0] - 1) < 0.05
    assert abs(model.predict(np.array([[10.0]]))[0, 0] - 51) < 0.5


def test_mlp_learns_xor():
    pynn.set_seed(3)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0], dtype=np.float32)
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(8, activation="tanh"),
                             pynn.Dense(1, activation="sigmoid")])
    model.compile(optimizer=pynn.optimizers.Adam(0.05), loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=300, batch_size=4, verbose=0)
    assert history.history["accuracy"][-1] == 1.0
    assert history.history["loss"][-1] < 0.1
    np.testing.assert_array_equal(model.predict(x).reshape(-1) > 0.5, y > 0.5)


@pytest.mark.slow
def test_digits_mlp_reaches_97_percent(tmp_path):
    pynn.set_seed(0)
    x_train, y_train, x_test, y_test = load_digits_split(seed=0)
    model = build_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=40, batch_size=32, verbose=0)
    loss, acc = model.evaluate(x_test, y_test)
    assert acc >= 0.97, f"test accuracy {acc:.4f}"
    path = tmp_path / "digits.npz"
    model.save_weights(path)
    restored = build_model()
    restored.load_weights(path)
    np.testing.assert_array_equal(model.predict(x_test), restored.predict(x_test))


def test_fit_returns_history_with_keras_keys():
    pynn.set_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, activation="relu"),
                             pynn.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
    assert isinstance(h, pynn.callbacks.History)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values())
    assert h.epoch == [0, 1, 2]
    h2 = model.fit(x, y, epochs=2, validation_data=(x[:10], y[:10]), verbose=0)
    assert len(h2.history["val_loss"]) == 2
    # val_loss is the loss of evaluate() on the same data
    assert np.isclose(h2.history["val_loss"][-1], model.evaluate(x[:10], y[:10])[0], rtol=1e-5)


def test_validation_split_takes_the_last_samples():
    """Keras takes the last fraction before shuffling; training never sees it."""
    seen = []

    class Spy(pynn.callbacks.Callback):
        pass

    x = np.arange(10, dtype=np.float32).reshape(-1, 1)
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    original = model._train_step

    def spy(xb, yb, w=None):
        seen.extend(np.asarray(xb).reshape(-1).tolist())
        return original(xb, yb, w)

    model._train_step = spy
    model.fit(x, x, epochs=1, batch_size=3, validation_split=0.3, verbose=0, callbacks=[Spy()],
              engine="layers")
    assert sorted(seen) == list(range(7))


def test_evaluate_predict_train_on_batch_shapes():
    pynn.set_seed(0)
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [2.0], [-1.0]], dtype=np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    assert model.predict(x).shape == (20, 1)
    assert model.predict(x[:1]).shape == (1, 1)
    loss, mae = model.evaluate(x, y)
    assert loss > 0 and mae > 0
    assert set(model.evaluate(x, y, return_dict=True)) == {"loss", "mae"}
    before = model.evaluate(x, y)[0]
    step = model.train_on_batch(x, y)
    assert np.isclose(step[0], before, rtol=1e-5)  # loss before the step
    assert model.evaluate(x, y)[0] < before


def test_predict_in_batches_equals_whole():
    pynn.set_seed(0)
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="gelu")])
    np.testing.assert_allclose(model.predict(x, batch_size=7), model.predict(x), rtol=1e-6)


def test_get_set_weights_keras_shapes():
    model = pynn.Sequential([pynn.Input((784,)), pynn.Dense(256, activation="relu"),
                             pynn.Dense(10, use_bias=False)])
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(784, 256), (256,), (256, 10)]
    assert model.count_params() == 784 * 256 + 256 + 2560
    new = [np.full(s, 0.5, dtype=np.float32) for s in shapes]
    model.set_weights(new)
    assert all((w == 0.5).all() for w in model.get_weights())
    with pytest.raises(ValueError, match="expected shape"):
        model.set_weights([np.zeros((784, 255))] + new[1:])
    # the message lays out which layer takes which arrays, and what came
    names = [layer.name for layer in model.layers if layer.params]
    with pytest.raises(ValueError, match=rf"3 weight arrays \({names[0]} \(Dense\): kernel "
                       rf"\(784, 256\), bias \(256,\); {names[1]} \(Dense\): kernel "
                       rf"\(256, 10\)\), got 2 \(shapes \(784, 256\), \(256,\)\)"):
        model.set_weights(new[:2])
    with pytest.raises(ValueError, match=r"0 weight arrays \(not built yet"):
        pynn.Sequential([pynn.Dense(2)]).set_weights([np.zeros(2)])


@pytest.mark.parametrize("bad, message", [
    (np.array(["a", "b", "c"]), "must hold real numbers, got dtype <U1"),
    (np.ones(3, np.complex64), "must hold real numbers, got dtype complex64"),
    (np.ones(4), r"expected shape \(3,\), got \(4,\)"),
])
@pytest.mark.parametrize("target", ["model", "layer"])
def test_set_weights_is_all_or_nothing_and_names_the_weight(bad, message, target):
    """A bad last array used to fail after the others were assigned (a half-overwritten
    model); complex arrays lost their imaginary part with only a numpy warning."""
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(3), pynn.Dense(3)])
    before = model.get_weights()
    layer = model.layers[2]
    new = [np.full(w.shape, 7.0) for w in (before if target == "model" else before[2:])]
    new[-1] = bad
    with pytest.raises(ValueError, match=message) as info:
        (model if target == "model" else layer).set_weights(new)
    assert "bias" in str(info.value)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_input_shape_and_input_dim_and_lazy_build():
    a = pynn.Sequential([pynn.Dense(2, input_dim=3)])
    b = pynn.Sequential([pynn.Dense(2, input_shape=(3,))])
    assert a.built and b.built and a.output_shape == (2,)
    c = pynn.Sequential()
    c.add(pynn.Dense(2))
    assert not c.built
    c.predict(np.zeros((1, 5)))
    assert c.layers[0].kernel.shape == (5, 2)


@pytest.mark.parametrize("kwargs, words", [
    ({"input_shape": "45"}, "input_shape must be positive integers, got '45'"),  # was (4, 5)
    ({"input_shape": (4.5,)}, r"input_shape must be positive integers, got \(4.5,\)"),
    ({"input_shape": (0,)}, r"input_shape must be positive integers, got \(0,\)"),
    ({"input_shape": (None, 4)}, "input_shape must be positive integers"),  # int(None)
    ({"input_dim": 4.7}, "input_dim must be a positive integer, got 4.7"),  # was 4
    ({"input_dim": -2}, "input_dim must be a positive integer, got -2"),
    ({"input_shape": (4,), "input_dim": 5}, "give input_shape or input_dim, not both"),
])
def test_a_layers_input_shape_is_checked_as_inputs_is(kwargs, words):
    with pytest.raises(ValueError, match=words):
        pynn.Dense(3, **kwargs)
    with pytest.raises(ValueError, match="Input: shape must be positive integers, got 4.7"):
        pynn.Input(4.7)  # was a TypeError: 'float' object is not iterable
    assert pynn.Dense(3, input_shape=[np.int64(4), 2]).input_shape == (4, 2)


def test_summary_lists_layers_and_counts():
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="relu", name="hidden"),
                             pynn.Dense(1, name="out")])
    model.layers[2].trainable = False
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "hidden (Dense)" in text and "(None, 3)" in text and "15" in text
    assert "Total params: 19" in text
    assert "Trainable params: 15" in text and "Non-trainable params: 4" in text


def test_summary_of_a_compiled_model_without_layers():
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.pop()  # it raised "the model has no layers to train"
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 0" in lines[0]


def test_a_layer_add_refuses_is_not_kept(rng):
    dense = pynn.Dense(5)
    pynn.Sequential([pynn.Input((3,)), dense])  # built for 3 inputs
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2)])
    with pytest.raises(ValueError, match="built for inputs"):
        model.add(dense)
    assert len(model.layers) == 2  # it stayed, and predict failed naming engine parameters
    assert model.predict(rng.normal(size=(1, 4)), verbose=0).shape == (1, 2)
    model.add(pynn.Dense(5))  # the fixed cell, run again
    assert model.output_shape == (5,)


def test_set_seed_makes_runs_reproducible():
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x.sum(axis=1)

    def run():
        pynn.set_seed(42)
        m = pynn.Sequential([pynn.Input((3,)), pynn.Dense(8, activation="relu"), pynn.Dense(1)])
        m.compile(optimizer="adam", loss="mse")
        m.fit(x, y, epochs=2, batch_size=8, verbose=0)
        return m.get_weights()

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_save_load_weights_roundtrip(tmp_path):
    pynn.set_seed(0)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(5, activation="tanh"),
                             pynn.Dense(2, activation="softmax")])
    path = tmp_path / "w.npz"
    model.save_weights(path)
    other = pynn.Sequential([pynn.Input((4,)), pynn.Dense(5, activation="tanh"),
                             pynn.Dense(2, activation="softmax")])
    other.load_weights(path)
    x = np.random.default_rng(1).normal(size=(9, 4))
    np.testing.assert_array_equal(model.predict(x), other.predict(x))
    assert not list(tmp_path.glob(".pynn-*"))  # no temporary left behind


def test_load_weights_rejects_mismatches(tmp_path):
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(5), pynn.Dense(2)])
    path = tmp_path / "w.npz"
    model.save_weights(path)
    wrong = pynn.Sequential([pynn.Input((4,)), pynn.Dense(6), pynn.Dense(2)])
    before = wrong.get_weights()
    with pytest.raises(ValueError, match=r"dense.*kernel.*\(4, 5\).*\(4, 6\)"):
        wrong.load_weights(path)
    for a, b in zip(before, wrong.get_weights()):  # nothing half-loaded
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="2 layers with weights|3 layers"):
        pynn.Sequential([pynn.Input((4,)), pynn.Dense(5), pynn.Dense(2),
                         pynn.Dense(2)]).load_weights(path)


def test_load_weights_refuses_pickles_and_garbage(tmp_path):
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    pickled = tmp_path / "p.npz"
    np.savez(pickled, __pynn__=np.array("{}"), evil=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        model.load_weights(pickled)
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="npz"):
        model.load_weights(garbage)
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "missing.npz")
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a pynn file"):
        model.load_weights(plain)


def test_callbacks_hooks_and_stop_training():
    calls = []

    class Recorder(pynn.callbacks.Callback):
        def on_train_begin(self, logs=None): calls.append("train_begin")
        def on_epoch_begin(self, epoch, logs=None): calls.append(f"epoch_begin{epoch}")
        def on_train_batch_end(self, batch, logs=None): calls.append("batch")
        def on_epoch_end(self, epoch, logs=None):
            calls.append(f"epoch_end{epoch}")
            if epoch == 1:
                self.model.stop_training = True
        def on_train_end(self, logs=None): calls.append("train_end")

    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    h = model.fit(np.ones((4, 1)), np.ones(4), epochs=10, batch_size=2, verbose=0,
                  callbacks=[Recorder()])
    assert calls == ["train_begin", "epoch_begin0", "batch", "batch", "epoch_end0",
                     "epoch_begin1", "batch", "batch", "epoch_end1", "train_end"]
    assert len(h.history["loss"]) == 2


def test_terminate_on_nan_stops():
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile(optimizer=pynn.optimizers.SGD(1e30), loss="mse")
    h = model.fit(np.full((8, 1), 1e10), np.full(8, 1e10), epochs=50, batch_size=1, verbose=0,
                  callbacks=[pynn.callbacks.TerminateOnNaN()])
    assert len(h.history["loss"]) < 50


@pytest.mark.parametrize("engine", ["native", "layers"])
def test_terminate_on_nan_raise_error_as_keras(engine):
    """raise_error=True (Keras 3): a RuntimeError out of fit naming the batch; no
    on_train_end."""
    if engine == "native" and pynn.engine._native_module() is None:
        pytest.skip("native engine unavailable")
    ended = []
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile(optimizer=pynn.optimizers.SGD(1e30), loss="mse")
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch"):
        model.fit(np.full((8, 1), 1e10), np.full(8, 1e10), epochs=50, batch_size=1,
                  verbose=0, engine=engine,
                  callbacks=[pynn.callbacks.TerminateOnNaN(raise_error=True),
                             pynn.callbacks.LambdaCallback(
                                 on_train_end=lambda logs: ended.append(1))])
    assert not ended
    model.fit(np.ones((8, 1)), np.ones(8), verbose=0)  # the model is usable after it
    with pytest.raises(TypeError, match="raise_error must be True or False"):
        pynn.callbacks.TerminateOnNaN(raise_error="yes")


@pytest.mark.parametrize("engine", ["native", "layers"])
def test_terminate_on_nan_names_the_first_bad_batch_without_one_call_per_batch(
        capsys, monkeypatch, engine):
    # TerminateOnNaN's batch hook made the native engine run one batch per call (2x slower on
    # small models); it now reads each batch's logs after the chunk, naming the same batch.
    if engine == "native" and pynn.engine._native_module() is None:
        pytest.skip("native engine unavailable")
    x, y = np.linspace(1, 1e4, 400).reshape(-1, 1), np.full(400, 1e10)

    def run(callback):
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
        model.compile(optimizer=pynn.optimizers.SGD(3e-6), loss="mse")  # NaN after ~30 steps
        model.fit(x, y, epochs=3, batch_size=4, verbose=0, shuffle=False, engine=engine,
                  callbacks=[callback])
        return model

    losses = []  # an exact per-batch callback: where the loss first leaves float32's range
    run(pynn.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: losses.append(
        logs["loss"])))
    first_bad = next(i for i, v in enumerate(losses) if not abs(v) <= FLOAT32_MAX)
    calls = []
    train = pynn.engine.NativeEngine.train
    monkeypatch.setattr(pynn.engine.NativeEngine, "train",
                        lambda self, *a, **k: calls.append(1) or train(self, *a, **k))
    capsys.readouterr()
    model = run(pynn.callbacks.TerminateOnNaN())
    out = capsys.readouterr().out
    assert out.count("terminating training") == 1
    assert f"Batch {first_bad % 100}: invalid loss" in out
    assert len(model.history.history["loss"]) == first_bad // 100 + 1  # stopped in that epoch
    if engine == "native":
        assert len(calls) <= (first_bad // 5 + 1) and len(calls) < first_bad


FLOAT32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize("engine", ["native", "layers"])
def test_terminate_on_nan_stops_at_a_loss_beyond_float32s_range(engine):
    """A float32 model's loss of 1e42, summed in float64, counted as finite: training ran a
    step more than Keras' (whose float32 loss is inf there), leaving the weights infinite;
    and the logs (History too) held 1e42 where Keras' hold inf."""
    if engine == "native" and pynn.engine._native_module() is None:
        pytest.skip("native engine unavailable")
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(100, 4)) * 10).astype(np.float32)
    y = x[:, 0] * 10
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(6, activation="relu"),
                             pynn.Dense(1)])
    model.set_weights([rng.normal(size=(4, 6)) * 0.5, np.zeros(6),
                       rng.normal(size=(6, 1)) * 0.5, np.zeros(1)])
    model.compile(optimizer=pynn.optimizers.SGD(0.5), loss="mse")
    seen = []
    h = model.fit(x, y, epochs=3, batch_size=10, shuffle=False, verbose=0, engine=engine,
                  callbacks=[pynn.callbacks.TerminateOnNaN(), pynn.callbacks.LambdaCallback(
                      on_train_batch_end=lambda b, logs: seen.append(logs["loss"]))])
    assert np.isfinite(seen[:-1]).all() and max(map(abs, seen[:-1])) <= FLOAT32_MAX
    assert seen[-1] == np.inf and h.history["loss"] == [np.inf]  # beyond float32: inf
    assert int(model.optimizer.iterations) == len(seen)
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.parametrize("floatx", ["float32", "float64"])
def test_a_loss_or_metric_beyond_the_float_range_reads_inf_as_keras(floatx):
    """The loss read inf beyond float32's range while the same mean squared error as a
    metric read 1e52 (Keras: both inf); a float64 model keeps them finite."""
    previous = pynn.floatx()
    pynn.set_floatx(floatx)
    try:
        model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(
            1, kernel_initializer="zeros", bias_initializer=pynn.initializers.Constant(1e26))])
        model.compile("sgd", "mse", metrics=["mse", "mae"])
        logs = model.evaluate(np.ones((4, 1)), np.zeros((4, 1)), return_dict=True)
        batch = model.train_on_batch(np.ones((4, 1)), np.zeros((4, 1)), return_dict=True)
    finally:
        pynn.set_floatx(previous)
    for logs in (logs, batch):  # (train_on_batch's own logs too)
        if floatx == "float32":
            assert logs["loss"] == logs["mse"] == np.inf and logs["mae"] == pytest.approx(1e26)
        else:
            assert logs["loss"] == pytest.approx(1e52) and logs["mse"] == pytest.approx(1e52)


@pytest.mark.parametrize("raise_error", [False, True])
def test_terminate_on_nan_stops_both_engines_after_the_same_batch(raise_error):
    """The native engine ran the rest of its chunk after the bad batch (an epoch of 500
    batches in chunks of 25): more steps than the layers, other weights, and an epoch loss
    of NaN where the layers logged inf. It now stops its chunk there, as Keras its loop."""
    if pynn.engine._native_module() is None:
        pytest.skip("native engine unavailable")
    rng = np.random.default_rng()
    x = rng.normal(size=(2000, 6)).astype(np.float32)
    y = 1e3 * x.sum(axis=1, keepdims=True)
    y[int(rng.integers(16, 400))] = 1e30  # its batch's loss, or a later one's, not finite
    results = {}
    for engine in ("layers", "native"):
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(16, activation="relu"),
                                 pynn.Dense(1)])
        model.compile(optimizer=pynn.optimizers.SGD(1e-4), loss="mse")
        stop = pynn.callbacks.TerminateOnNaN(raise_error=raise_error)
        try:
            h = model.fit(x, y, epochs=3, batch_size=4, verbose=0, shuffle=False,
                          engine=engine, callbacks=[stop])
            logged = h.history["loss"]
        except RuntimeError as exc:
            assert raise_error
            logged = str(exc)
        results[engine] = (model.optimizer.iterations, logged, model.get_weights())
    (steps_l, logged_l, weights_l), (steps, logged, weights) = results.values()
    assert steps == steps_l < 500
    if raise_error:
        assert logged == logged_l and f"at batch {steps - 1}." in logged
    else:
        assert len(logged) == 1 and not abs(logged[0]) <= FLOAT32_MAX
        assert np.isnan(logged[0]) == np.isnan(logged_l[0])
    for a, b in zip(weights, weights_l):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_terminate_on_nan_subclass_with_its_own_hook_sees_each_batch_as_it_ends():
    # It inherited "reads the logs only" and was handed a chunk's batches after the chunk:
    # a subclass saving the last good weights saw the chunk's end state.
    seen = []

    class Recording(pynn.callbacks.TerminateOnNaN):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((batch, self.model.optimizer.iterations))
            super().on_train_batch_end(batch, logs)

    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((400, 1)), np.ones(400), batch_size=4, epochs=1, verbose=0,
              callbacks=[Recording()])
    assert seen == [(b, b + 1) for b in range(100)]
    declared = pynn.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: None)
    declared.reads_batch_logs_only = True  # an instance may declare it too
    from pynn.model import _reads_batch_logs_only
    assert _reads_batch_logs_only(declared)
    assert _reads_batch_logs_only(pynn.callbacks.TerminateOnNaN())
    assert not _reads_batch_logs_only(Recording())


def test_verbose_outputs(capsys):
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((40, 1)), np.ones(40), epochs=2, batch_size=4, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(np.ones((40, 1)), np.ones(40), epochs=2, batch_size=4, verbose=2)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("Epoch 1/2") and "loss:" in out[0]
    # verbose=1 but not a terminal (captured): one line per epoch, no per-step lines
    model.fit(np.ones((40, 1)), np.ones(40), epochs=3, batch_size=4, verbose=1)
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_config_roundtrip():
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="leaky_relu"),
                             pynn.Dense(2, activation=pynn.activations.Spec("elu", 0.5),
                                        kernel_initializer="he_normal", use_bias=False)])
    clone = pynn.Sequential.from_config(model.get_config())
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    assert clone.layers[2].activation == pynn.activations.Spec("elu", 0.5)
    assert not clone.layers[2].use_bias
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in model.get_weights()]


def test_a_model_without_an_input_shape_is_built_by_its_data():
    """No Input layer and no input_shape: fit, evaluate and train_on_batch build the model
    from the data, as Keras does (predict did already)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype(np.float32), rng.normal(size=(40, 2))
    for call in ("fit", "evaluate", "train_on_batch"):
        model = pynn.Sequential([pynn.Dense(8, activation="relu"), pynn.Dense(2)])
        model.compile(optimizer="adam", loss="mse")
        if call == "fit":
            model.fit(x, y, epochs=1, verbose=0)
        else:
            getattr(model, call)(x, y)
        assert model.input_shape == (5,) and model.output_shape == (2,)


class _Double(pynn.layers.Layer):
    def forward(self, x, training=False, logits=False):
        return x * 2

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy * 2 if need_input_grad else None


@pytest.mark.parametrize("first", [pynn.BatchNormalization, pynn.layers.PReLU, _Double])
def test_a_model_without_an_input_is_built_by_multi_axis_data_whatever_its_first_layer(
        rng, first):
    """BatchNormalization, PReLU or a layer of one's own first (no Input): fit refused
    (N, 3, 6) samples as "x must have shape (samples, features)"; Keras builds from them."""
    x, y = rng.normal(size=(16, 3, 6)), rng.normal(size=(16, 2))
    model = pynn.Sequential([first(), pynn.layers.Flatten(), pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.input_shape == (3, 6) and model.predict(x).shape == (16, 2)


def test_numpy_integers_as_sizes_and_a_single_callback():
    model = pynn.Sequential([pynn.Input((np.int64(4),)), pynn.Dense(np.int32(3))])
    model.compile(optimizer="sgd", loss="mse")
    assert model.output_shape == (3,) and type(model.layers[-1].units) is int
    history = pynn.callbacks.History()
    model.fit(np.zeros((8, 4), np.float32), np.zeros((8, 3)), epochs=2, verbose=0,
              callbacks=history)  # one callback, not in a list
    assert len(history.history["loss"]) == 2
    with pytest.raises(ValueError, match="initial_epoch"):
        model.fit(np.zeros((8, 4)), np.zeros((8, 3)), epochs=2, initial_epoch=-1, verbose=0)


@pytest.mark.parametrize("activation, loss", [
    ("softmax", pynn.losses.SparseCategoricalCrossentropy(from_logits=True)),
    ("sigmoid", pynn.losses.BinaryCrossentropy(from_logits=True)),
])
def test_from_logits_after_a_probability_output_warns(activation, loss):
    """As Keras: logits expected, probabilities given (trains silently into a poor model)."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation=activation)])
    with pytest.warns(UserWarning, match=f"from_logits=True, but the last layer ends in "
                                         f"{activation}"):
        model.compile(optimizer="adam", loss=loss)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)]).compile(optimizer="adam", loss=loss)


def test_keras_model_helpers(capsys):
    """get_layer, pop, weights lists, metrics_names, predict(verbose=1)."""
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, name="hidden"),
                             pynn.Dense(2, activation="softmax", name="out")])
    assert model.get_layer("hidden") is model.layers[1]
    assert model.get_layer(index=-1) is model.layers[2]
    with pytest.raises(ValueError, match="no layer named 'nope'.*'hidden', 'out'"):
        model.get_layer("nope")
    model.layers[1].trainable = False
    assert [p.name for p in model.weights] == ["hidden/kernel", "hidden/bias", "out/kernel",
                                              "out/bias"]
    assert [p.name for p in model.trainable_weights] == ["out/kernel", "out/bias"]
    assert [p.shape for p in model.non_trainable_weights] == [(4, 3), (3,)]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "mae"])
    assert model.metrics_names == ["loss", "accuracy", "mae"]  # the History keys
    out = model.predict(np.zeros((5, 4)), verbose=1)
    assert out.shape == (5, 2) and capsys.readouterr().out.startswith("5 samples - ")
    assert model.pop().name == "out" and model.output_shape == (3,)
    assert model.predict(np.zeros((2, 4))).shape == (2, 3)
    model.pop()
    with pytest.raises(ValueError, match="no layers to remove"):
        model.pop()


def test_build_takes_the_batch_axis_as_keras():
    """build((32, 8)) built 32x8 samples (a Dense then refused them, a Flatten made a
    256-input kernel); the first axis is the batch axis, None or a number."""
    for shape in [(32, 8), (None, 8), (8,)]:
        model = pynn.Sequential([pynn.Dense(4)])
        model.build(shape)
        assert model.layers[0].kernel.shape == (8, 4)
    image = pynn.Sequential([pynn.Flatten(), pynn.Dense(4)])
    image.build((16, 28, 28))
    assert image.layers[1].kernel.shape == (784, 4)
    with pytest.raises(ValueError, match="every axis but the batch axis needs a size"):
        pynn.Sequential([pynn.Dense(4)]).build((None, None))


def test_validation_freq_and_batch_size(rng):
    x = rng.normal(size=(40, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    seen = []
    h = model.fit(x, x.sum(axis=1), epochs=5, batch_size=8, validation_split=0.25,
                  validation_freq=2, validation_batch_size=3, verbose=0,
                  callbacks=[pynn.callbacks.LambdaCallback(
                      on_epoch_end=lambda epoch, logs: seen.append("val_loss" in logs))])
    assert seen == [False, True, False, True, False]  # after epochs 2 and 4, as Keras
    assert len(h.history["val_loss"]) == 2 and len(h.history["loss"]) == 5
    with pytest.raises(ValueError, match="validation_freq must be a positive integer"):
        model.fit(x, x.sum(axis=1), validation_split=0.25, validation_freq=0, verbose=0)


def test_assigned_activations_and_metric_names_are_checked():
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2), pynn.Dense(1)])
    model.layers[1].activation = "tanh"  # a name, as the constructor takes: converted
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(model.predict(x), np.tanh(x @ model.layers[1].kernel.numpy()
                                                         + model.layers[1].bias.numpy())
                               @ model.layers[2].kernel.numpy() + model.layers[2].bias.numpy(),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="unknown activation|activation"):
        model.layers[1].activation = "swoosh"

    class NoSuper(pynn.metrics.Metric):
        def __init__(self):
            pass

        def reset_state(self):
            pass

    with pytest.raises(TypeError, match=r"super\(\).__init__\(name=...\)"):
        model.compile(optimizer="sgd", loss="mse", metrics=[NoSuper()])


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_metrics_of_one_name_are_logged_as_name_1_name_2_as_in_keras(rng, engine):
    # Keras 3 logs the second and third metric of one name as name_1, name_2 (pynn refused
    # them); the user's objects keep their names, and a metric the user named "mae_1" is not
    # overwritten by a renamed one (Keras 3.15 loses it)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = rng.normal(size=(64, 1)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    a, b = pynn.metrics.MeanAbsoluteError(), pynn.metrics.MeanAbsoluteError()
    own = pynn.metrics.MeanAbsoluteError(name="mae_1")
    model.compile("sgd", "mse", metrics=["mae", "mae", own, a, b, "mae"],
                  weighted_metrics=["mae", "mae"])
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0, engine=engine,
                        validation_data=(x, y))
    names = ["mae", "mae_2", "mae_1", "mean_absolute_error", "mean_absolute_error_1", "mae_3",
             "weighted_mae", "weighted_mae_1"]
    assert list(history.history) == ["loss", *names, "val_loss", *(f"val_{n}" for n in names)]
    assert model.metrics_names == ["loss", *names]
    assert (a.name, b.name, own.name) == ("mean_absolute_error",) * 2 + ("mae_1",)
    values = model.evaluate(x, y, verbose=0, return_dict=True)
    want = float(np.mean(np.abs(model.predict(x, verbose=0) - y)))
    for name in names:  # each one computed, none left at zero or shared with another's state
        np.testing.assert_allclose(values[name], want, rtol=1e-5, err_msg=name)


def test_a_bare_number_is_a_one_axis_shape():
    # Input(3) took it; input_shape=3 and build(5) failed with "'int' object is not iterable".
    a = pynn.Sequential([pynn.Dense(4, input_shape=3), pynn.Dense(1)])
    assert a.input_shape == (3,) and a.built
    b = pynn.Sequential([pynn.Dense(2)])
    b.build(5)
    assert b.input_shape == (5,) and b.layers[0].kernel.shape == (5, 2)
    with pytest.raises(ValueError):
        pynn.Sequential([pynn.Dense(2)]).build((None, None))


def test_keras_weight_properties_of_layers_and_unbuilt_count_params():
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4), pynn.BatchNormalization()])
    dense, bn = model.layers[1], model.layers[2]
    assert [p.shape for p in dense.weights] == [(3, 4), (4,)]
    assert dense.trainable_weights == dense.weights and dense.non_trainable_weights == []
    assert len(bn.trainable_weights) == 2 and len(bn.non_trainable_weights) == 2  # moving stats
    dense.trainable = False
    assert dense.trainable_weights == [] and len(dense.non_trainable_weights) == 2
    assert model.count_params() == 3 * 4 + 4 + 4 * 4
    unbuilt = pynn.Sequential([pynn.Dense(2)])
    with pytest.raises(ValueError, match="no weights yet"):
        unbuilt.count_params()  # was 0
    lines = []
    unbuilt.summary(print_fn=lines.append)  # still describes an unbuilt model
    assert "Total params: 0" in lines[0]


@pytest.mark.parametrize("value", [None, 0, 0.5, []])
def test_trainable_must_be_a_boolean(value):
    """trainable=None (or 0.5, []) was read as a truth value: None froze the layer
    silently. Keras 3 refuses anything but a boolean."""
    with pytest.raises(TypeError, match=f"trainable must be True or False, got "
                                        f"{re.escape(repr(value))}"):
        pynn.Dense(2, trainable=value)
    layer = pynn.Dense(2)
    with pytest.raises(TypeError, match="trainable must be True or False"):
        layer.trainable = value
    assert layer.trainable is True
    layer.trainable = np.bool_(False)  # numpy's boolean is one
    assert layer.trainable is False and pynn.Dense(2, trainable=np.True_).trainable is True


@pytest.mark.parametrize("make", [lambda: pynn.Dropout(0.5), lambda: pynn.layers.GaussianNoise(0.1),
                                  lambda: pynn.layers.Flatten(),
                                  lambda: pynn.layers.Reshape((2, 2))])
def test_results_never_share_the_callers_array(rng, make):
    """predict, model(x) and layer(x) returned the caller's own array (or a view of it)
    through layers that pass it on: writing into the result changed x. Keras returns a new
    array."""
    x = rng.normal(size=(3, 4)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((4,)), make()])
    model.compile(optimizer="sgd", loss="mse")
    results = [model.predict(x), model(x), make()(x)]
    if not isinstance(model.layers[1], pynn.layers.RandomLayer):  # no noise in training
        results += [model(x, training=True), make()(x, training=True)]
    for result in results:
        assert not np.shares_memory(result, x)
        np.testing.assert_array_equal(result.reshape(x.shape), x)


def test_a_subclass_add_sees_each_constructor_layer():
    """Sequential(layers) appends directly for speed; a subclass's own add() (adding a
    Dropout after each Dense, say) is still called for each, as Keras does."""
    class WithDropout(pynn.Sequential):
        def add(self, layer):
            super().add(layer)
            if isinstance(layer, pynn.Dense):
                super().add(pynn.Dropout(0.1))

    model = WithDropout([pynn.Input((3,)), pynn.Dense(4), pynn.Dense(2)])
    assert [type(l).__name__ for l in model.layers] == [
        "InputLayer", "Dense", "Dropout", "Dense", "Dropout"]


# ---- from a mutation audit (round 2): behaviour the other tests let change ------------------
def _line(units=1, features=2, **compile_args):
    pynn.set_seed(0)
    model = pynn.Sequential([pynn.Input((features,)), pynn.Dense(units)])
    model.compile(**{"optimizer": "sgd", "loss": "mse", **compile_args})
    return model


def test_fit_defaults_and_empty_runs(rng):
    x, y = rng.normal(size=(100, 2)), rng.normal(size=100)
    model = _line()
    model.fit(x, y, verbose=0)  # Keras' default batch size: 32, so 4 steps
    assert model.optimizer.iterations == 4
    steps = []
    probe = pynn.callbacks.LambdaCallback(
        on_test_begin=lambda logs: steps.append(probe.params["steps"]))
    model.evaluate(x, y, batch_size=32, callbacks=[probe])
    assert steps == [4]  # ceil(100 / 32)
    history = _line().fit(x, y, epochs=0, verbose=0)  # nothing to do: an empty history
    assert history.history == {} and history.epoch == []
    with pytest.raises(ValueError, match="validation_split"):
        _line().fit(x, y, validation_split=1e-17, verbose=0)


def test_an_empty_fit_leaves_an_ema_models_weights_alone(rng):
    x, y = rng.normal(size=(16, 2)), rng.normal(size=16)
    model = _line(optimizer=pynn.optimizers.SGD(0.1, use_ema=True))
    model.fit(x, y, epochs=1, verbose=0)
    model.train_on_batch(x, y)  # (the weights now differ from their averages)
    before = model.get_weights()
    model.fit(x, y, epochs=0, verbose=0)  # Keras writes the averages only when epochs > 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_layer_lookup_trainability_and_summary_ranges():
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(3, name="a"), pynn.Dense(1, name="b")])
    with pytest.raises(ValueError):
        model.get_layer(name="a", index=1)
    model.layers[1].trainable = False
    assert model.trainable  # one trainable layer is enough (Keras: any)
    lines = []
    model.summary(print_fn=lines.append, layer_range=("a$", "a$"))  # (patterns: "a" alone
    # would match every name starting with it)
    text = "\n".join(lines)
    assert "a (Dense)" in text and "b (Dense)" not in text
    with pytest.raises(ValueError, match="Input"):
        model.add(pynn.Input((3,)))


def test_partial_fit_without_shuffling_keeps_the_order(rng):
    x, y = np.arange(8.0).reshape(-1, 1), np.arange(8.0)
    runs = []
    for train in (lambda m: m.partial_fit(x, y, batch_size=1, shuffle=False),
                  lambda m: m.fit(x, y, batch_size=1, shuffle=False, verbose=0)):
        model = _line(features=1, optimizer=pynn.optimizers.SGD(0.001))
        train(model)
        runs.append(model.get_weights())
        assert model.shuffle_seed is None
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_class_weight_takes_zero_and_ignored_labels(rng):
    x = rng.normal(size=(6, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(3, activation="softmax")])
    model.compile("sgd", pynn.losses.SparseCategoricalCrossentropy(ignore_class=-1))
    loss = model.train_on_batch(x, np.array([0, 1, 2, -1, 1, 0]), class_weight={0: 0.0, 1: 2.0})
    assert np.isfinite(loss)


def test_an_older_config_with_a_numeric_layer_name_loads_it_as_text():
    model = pynn.Sequential.from_config({"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"input_shape": [3]}},
        {"class_name": "Dense", "config": {"units": 2, "name": 7}}]})
    assert model.layers[-1].name == "7"


def test_compile_takes_a_neutral_loss_weight_and_refuses_the_rest():
    """Keras' loss_weights: the one output's weight 1 in any of its forms; another weight
    would change the loss and its gradients, so it is refused, never ignored."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    for neutral in (1, 1.0, [1.0], (1,), {"dense": 1.0}):
        model.compile(optimizer="sgd", loss="mse", loss_weights=neutral)
    with pytest.raises(NotImplementedError, match=r"loss_weights=\[0.5\]"):
        model.compile(optimizer="sgd", loss="mse", loss_weights=[0.5])
    with pytest.raises(ValueError, match="2 weights, but the model has one output"):
        model.compile(optimizer="sgd", loss="mse", loss_weights=[1.0, 1.0])
    with pytest.raises(TypeError, match="a number per output"):
        model.compile(optimizer="sgd", loss="mse", loss_weights=["1"])


def test_compile_takes_keras_per_output_forms_for_the_one_output(rng):
    """Keras 3 takes loss=[loss] and loss/metrics dicts keyed by the output's name (its last
    layer's) for a one-output model; pynn refused them ("cannot interpret", "must be a
    list")."""
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    logged = []
    for loss, metrics, weighted in (
            (["sparse_categorical_crossentropy"], ["accuracy"], None),
            ({"out": "sparse_categorical_crossentropy"}, {"out": ["accuracy"]}, None),
            ("sparse_categorical_crossentropy", {"out": "accuracy"}, {"out": ["accuracy"]}),
            ("sparse_categorical_crossentropy", ["accuracy"], ["accuracy"])):
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2, activation="softmax",
                                                              name="out")])
        model.compile(optimizer="sgd", loss=loss, metrics=metrics, weighted_metrics=weighted)
        assert model.loss.name == "sparse_categorical_crossentropy"
        logged.append(model.fit(x, y, epochs=1, verbose=0).history)
    assert logged[0] == logged[1] and logged[2] == logged[3]
    assert list(logged[2]) == ["loss", "accuracy", "weighted_accuracy"]
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2, name="out")])
    with pytest.raises(ValueError, match=r"loss given per output \(\['y'\]\), but the model "
                                         r"has one output, 'out': key it by that name"):
        model.compile(optimizer="sgd", loss={"y": "mse"})
    with pytest.raises(ValueError, match="metrics given per output"):
        model.compile(optimizer="sgd", loss="mse", metrics={"out": ["mae"], "y": ["mae"]})
    with pytest.raises(ValueError, match="2 losses given, but the model has one output"):
        model.compile(optimizer="sgd", loss=["mse", "mae"])
    with pytest.raises(ValueError, match="0 losses given"):
        model.compile(optimizer="sgd", loss=[])


def test_layers_and_weights_lists_are_copies():
    """model.layers and layer.weights handed out the model's own lists: appending to one
    skipped add()'s checks and changed the model (and every model built from that list)."""
    base = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4)])
    layers = base.layers
    layers.append(pynn.Dense(10))
    assert len(base.layers) == 2 and base.predict(np.ones((1, 3))).shape == (1, 4)
    bigger = pynn.Sequential(base.layers + [pynn.Dense(10)])
    assert len(base.layers) == 2 and bigger.predict(np.ones((1, 3))).shape == (1, 10)
    weights = base.layers[1].weights
    weights.clear()
    assert len(base.layers[1].weights) == 2
    twin = copy.copy(base)  # the same layers, its own list: add/pop apart
    twin.add(pynn.Dense(5))
    assert len(base.layers) == 2 and len(twin.layers) == 3


def test_a_refused_build_leaves_the_model_as_it_was():
    """build((None, 5)) on a model built for 3 features: the Dropout in front was rebuilt for
    5 before the Dense refused, and the model then took neither 3 nor 5 features."""
    model = pynn.Sequential([pynn.Dropout(0.1), pynn.Dense(2)])
    model.build((None, 3))
    with pytest.raises(ValueError, match=r"already configured for inputs of shape \(None, 3\)"):
        model.build((None, 5))
    assert model.input_shape == (3,)
    assert model.predict(np.ones((2, 3))).shape == (2, 2)


def test_a_layer_on_the_last_axis_is_shared_across_leading_axes(rng):
    """As layer(x) and Keras: a built Dense (or normalisation) joins a model whose samples
    have other leading axes (a sequence of another length) with its weights shared; the
    native engine, which takes (batch, features), leaves such a model to the layer path."""
    dense = pynn.Dense(4)
    x = rng.normal(size=(2, 3)).astype(np.float32)
    flat = dense(x)
    model = pynn.Sequential([pynn.Input((5, 3)), dense])
    seq = rng.normal(size=(2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(seq), seq @ dense.kernel.numpy()
                               + dense.bias.numpy(), rtol=1e-5, atol=1e-6)
    assert model.layers[1] is dense and flat.shape == (2, 4)
    norm = pynn.layers.LayerNormalization()
    norm(np.ones((2, 4), np.float32))
    assert pynn.Sequential([pynn.Input((6, 4)), norm]).predict(np.ones((1, 6, 4))).shape == \
        (1, 6, 4)
    with pytest.raises(ValueError, match=r"built for inputs \(3,\), not \(5, 2\)"):
        pynn.Sequential([pynn.Input((5, 2)), dense])


def test_add_and_pop_take_keras_rebuild():
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.add(pynn.Dense(4), rebuild=False)
    assert not model.built  # built at its next use
    assert model.predict(np.ones((1, 3))).shape == (1, 4) and model.built
    assert model.pop(rebuild=False).units == 4 and len(model.layers) == 2
    with pytest.raises(TypeError, match="rebuild must be True or False"):
        model.add(pynn.Dense(1), rebuild="no")
    assert len(model.layers) == 2


def test_a_shallow_copied_optimizer_still_belongs_to_its_model(rng):
    """copy.copy shares the optimizer's state: taken by another model, that model's first
    fit pruned the first one's moments. It is refused as the optimizer itself is."""
    first = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    first.compile(optimizer="adam", loss="mse")
    first.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), verbose=0)
    second = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    with pytest.raises(ValueError, match="already trains another model"):
        second.compile(optimizer=copy.copy(first.optimizer), loss="mse")
    # copies of an optimizer no model holds are optimizers of their own: no shared state
    base = pynn.optimizers.Adam(0.01)
    models = [pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)]) for _ in range(2)]
    for model in models:
        model.compile(optimizer=copy.copy(base), loss="mse")
    for model in models:
        model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), verbose=0)
    for model in models:  # each keeps its own moments (the other's fit pruned them)
        assert all(model.optimizer.state_of(p) is not None for p in model.params)


def test_a_dense_shared_across_sequence_and_flat_models_trains_in_both(rng):
    """Built in a (5, 8) model, then shared with an (8,) one: the native engine sized its
    first layer from the Dense's own input_shape, (5, 8), and refused the kernel."""
    dense = pynn.Dense(4)
    pynn.Sequential([pynn.Input((5, 8)), dense])
    flat = pynn.Sequential([pynn.Input((8,)), dense])
    flat.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(16, 8)).astype(np.float32)
    flat.fit(x, rng.normal(size=(16, 4)), verbose=0)
    if NATIVE:  # (without pynn._C the layer path trains it, saying so)
        assert flat.engine_reason is None  # the native engine trained it
    np.testing.assert_allclose(flat.predict(x), x @ dense.kernel.numpy() + dense.bias.numpy(),
                               rtol=1e-5, atol=1e-5)



def test_a_subclass_may_keep_its_own_metrics_attribute():
    # model.metrics became a property (Keras'); a subclass that set self.metrics failed
    class Tracked(pynn.Sequential):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.metrics = ["mine"]

    model = Tracked([pynn.Input((2,)), pynn.Dense(1)])
    model.compile("sgd", "mse", metrics=["mae"])
    assert model.metrics == ["mine"] and model.metrics_names == ["loss", "mae"]
