"""Online learning (train_on_batch, partial_fit keep optimizer state) and fine-tuning
(freeze, reload, new head)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import pynn
from conftest import NATIVE


def _data(seed, n=600):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(int) + (x[:, 3] > 0.8)
    return x, y


def _model():
    pynn.set_seed(0)
    model = pynn.Sequential([pynn.Input((8,)), pynn.Dense(32, activation="relu"),
                             pynn.Dense(3, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_stream_of_chunks_matches_fit_on_everything():
    x, y = _data(1)
    x_test, y_test = _data(2)
    whole = _model()
    whole.fit(x, y, epochs=5, batch_size=32, verbose=0)
    streamed = _model()
    for _ in range(5):
        for start in range(0, len(x), 100):  # the data arrives in chunks of 100
            streamed.partial_fit(x[start:start + 100], y[start:start + 100], batch_size=32)
    acc_whole = whole.evaluate(x_test, y_test)[1]
    acc_stream = streamed.evaluate(x_test, y_test)[1]
    assert acc_stream > 0.85 and abs(acc_stream - acc_whole) < 0.05
    assert streamed.optimizer.iterations == 5 * 6 * 4  # state carried across every call


def test_train_on_batch_keeps_optimizer_state():
    x, y = _data(3, n=64)
    model = _model()
    for i in range(1, 4):
        model.train_on_batch(x, y)
        assert model.optimizer.iterations == i
    m = model.optimizer.state_of(model.layers[1].kernel)["m"]
    assert np.abs(m).sum() > 0  # the first moment persists between calls


def test_fine_tune_frozen_base_new_head(tmp_path):
    x, y = _data(4)
    base = _model()
    base.fit(x, y, epochs=3, batch_size=32, verbose=0)
    base.save_weights(tmp_path / "base.npz")

    # Reload the base, freeze it, replace the head with a binary one, train on a new task.
    tuned = _model()
    tuned.load_weights(tmp_path / "base.npz")
    hidden = tuned.layers[1]
    hidden.trainable = False
    frozen = hidden.get_weights()
    new = pynn.Sequential([tuned.layers[0], hidden, pynn.Dense(1, activation="sigmoid")])
    new.compile(optimizer=pynn.optimizers.Adam(0.01), loss="binary_crossentropy",
                metrics=["accuracy"])
    lines = []
    new.summary(print_fn=lines.append)
    assert "Non-trainable params: 288" in lines[0]  # 8*32 + 32 frozen
    y2 = (x[:, 0] - x[:, 2] > 0).astype(np.float32)  # a related task the base features serve
    new.fit(x, y2, epochs=10, batch_size=32, verbose=0)
    for a, b in zip(frozen, hidden.get_weights()):
        np.testing.assert_array_equal(a, b)  # bit-identical after training
    assert new.evaluate(x, y2)[1] > 0.85


def _unfreeze_run(engine, hook):
    """Epoch hook: the first Dense starts frozen, is unfrozen after epoch 0, and the batch
    normalisation is frozen then. Batch hook: the first Dense is frozen after batch 2."""
    import pytest

    pytest.importorskip("pynn._C")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(96, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    pynn.set_seed(6)
    dense = pynn.Dense(8, activation="tanh", trainable=hook == "batch")
    bn = pynn.BatchNormalization()
    model = pynn.Sequential([pynn.Input((4,)), dense, bn, pynn.Dense(2, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  backend="cpu")
    seen = {}

    def on_epoch_end(epoch, logs):
        if epoch == 0:
            dense.trainable, bn.trainable = True, False
            seen["bn"] = [w.copy() for w in bn.get_weights()]

    def on_batch_end(batch, logs):
        if batch == 2 and "dense" not in seen:
            dense.trainable = False
            seen["dense"] = [w.copy() for w in dense.get_weights()]

    callback = (pynn.callbacks.LambdaCallback(on_epoch_end=on_epoch_end) if hook == "epoch"
                else pynn.callbacks.LambdaCallback(on_train_batch_end=on_batch_end))
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, engine=engine,
              callbacks=[callback])
    return model, seen


@pytest.mark.parametrize("hook", ["epoch", "batch"])
def test_trainable_changed_mid_fit_by_a_callback(hook):
    """Gradual unfreezing (or freezing) from a callback takes effect at once on both engines
    (the native engine was built once per fit and kept training what it was built with)."""
    (native, seen), (layers, _) = _unfreeze_run("native", hook), _unfreeze_run("layers", hook)
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    if hook == "epoch":  # the frozen normalisation's statistics and gamma/beta stay put
        for a, b in zip(native.layers[2].get_weights(), seen["bn"]):
            np.testing.assert_array_equal(a, b)
        assert native.optimizer.iterations == 18
    else:
        for a, b in zip(native.layers[1].get_weights(), seen["dense"]):
            np.testing.assert_array_equal(a, b)


def _regularizer_run(engine):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    pynn.set_seed(9)
    dense = pynn.Dense(8, activation="tanh", kernel_regularizer=pynn.regularizers.L2(1e-4))
    model = pynn.Sequential([pynn.Input((4,)), dense, pynn.Dense(2, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  backend="cpu")

    def stronger(epoch, logs):
        dense.kernel_regularizer.l2 = 1.0  # changed in place, not replaced

    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, engine=engine,
              callbacks=[pynn.callbacks.LambdaCallback(on_epoch_end=stronger)])
    return model


def test_a_regularizer_changed_in_place_mid_fit():
    pytest.importorskip("pynn._C")
    native, layers = _regularizer_run("native"), _regularizer_run("layers")
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_weight_frozen_on_its_own_trains_on_the_layer_path():
    """The engine freezes whole layers: a kernel frozen with its bias trainable diverged."""
    pytest.importorskip("pynn._C")
    x = np.random.default_rng(3).normal(size=(32, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4), pynn.Dense(1)])
    model.compile(optimizer="adam", loss="mse", backend="cpu")
    model.layers[1].kernel.trainable = False
    kernel = model.layers[1].kernel.numpy()
    model.fit(x, x.sum(axis=1), epochs=2, batch_size=8, verbose=0)
    assert "frozen one by one" in model.engine_reason
    np.testing.assert_array_equal(model.layers[1].kernel.numpy(), kernel)
    assert not np.array_equal(model.layers[1].bias.numpy(), 0)


def test_unrelated_activity_during_fit_does_not_rebuild_the_engine(monkeypatch):
    """Building layers or running a batch normalisation in training mode elsewhere moves
    the change counter; with batch hooks the engine is re-checked, not rebuilt."""
    pytest.importorskip("pynn._C")
    from pynn import engine

    built = []
    original = engine.NativeEngine.__init__
    monkeypatch.setattr(engine.NativeEngine, "__init__",
                        lambda self, *a, **k: built.append(1) or original(self, *a, **k))
    other = pynn.Sequential([pynn.Input((3,)), pynn.BatchNormalization()])
    x = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)

    def busy(batch, logs):
        pynn.Dense(2, kernel_regularizer=pynn.regularizers.L2(0.1))
        other(x, training=True)

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4), pynn.Dense(1)])
    model.compile(optimizer="adam", loss="mse", backend="cpu")
    model.fit(x, x.sum(axis=1), epochs=2, batch_size=8, verbose=0,
              callbacks=[pynn.callbacks.LambdaCallback(on_train_batch_end=busy)])
    assert len(built) == 1


def _reseed_run(engine, change):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    pynn.set_seed(5)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(8, activation="tanh"),
                             pynn.Dropout(0.3, seed=1), pynn.Dense(2, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  backend="cpu")

    def on_epoch_end(epoch, logs):
        if change == "seed":
            model.layers[2].seed = 99
        else:
            model.optimizer.reset()

    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, engine=engine,
              callbacks=[pynn.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)])
    return model


@pytest.mark.parametrize("change", ["seed", "optimizer reset"])
def test_dropout_seed_and_optimizer_reset_mid_fit(change):
    pytest.importorskip("pynn._C")
    native, layers = _reseed_run("native", change), _reseed_run("layers", change)
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_replacing_heads_without_compile_keeps_no_dead_optimizer_state(rng):
    """The optimizer kept each popped layer's weights and Adam slots (keyed by the weight),
    ~3.5 MB a swap in a worker replacing heads of a long-lived model; compile() released them,
    a plain pop()/add() did not."""
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = rng.normal(size=(32, 2)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, activation="relu"), pynn.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    for _ in range(5):
        model.pop()
        model.add(pynn.Dense(2))
        model.fit(x, y, epochs=1, verbose=0)
        model.pop()
        model.add(pynn.Dense(2))
        model.train_on_batch(x, y)
    live = {id(p) for p in model.params}
    assert set(model.optimizer._state) == live  # only the current weights' state
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before  # and it still trains


def test_calling_the_model_in_training_mode_keeps_no_caches(rng):
    """model(x, training=True) left every layer's backward cache (~25x the input) in place
    until the next training step."""
    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(8, activation="relu"),
                             pynn.BatchNormalization(), pynn.Dropout(0.5), pynn.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    out = model(rng.normal(size=(50, 6)), training=True)
    assert out.shape == (50, 3)
    assert all(layer._cache is None for layer in model.layers)


@pytest.mark.parametrize("engine", ["native", "layers"])
def test_a_frozen_kernel_leaves_its_bias_training(rng, engine):
    """kernel.trainable = False left the bias (still trainable) untrained, or stepping on a
    gradient left from an earlier run every step; as in Keras each weight follows its flag."""
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.normal(size=(40, 2)).astype(np.float32)
    pynn.set_seed(2)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="tanh"), pynn.Dense(2)])
    model.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, epochs=1, batch_size=40, verbose=0, engine="layers")  # leaves .grad
    dense = model.layers[1]
    dense.kernel.trainable = False
    kernel, bias = (w.astype(np.float64) for w in dense.get_weights())
    w2, b2 = (w.astype(np.float64) for w in model.layers[2].get_weights())
    model.fit(x, y, epochs=1, batch_size=40, verbose=0, shuffle=False,
              engine="auto" if engine == "native" else "layers")
    np.testing.assert_array_equal(dense.kernel.numpy(), kernel.astype(np.float32))
    # one full-batch SGD step on the bias, by hand in float64
    h = np.tanh(x @ kernel + bias)
    d_out = 2 * (h @ w2 + b2 - y) / y.size
    grad_b = ((d_out @ w2.T) * (1 - h * h)).sum(axis=0)
    np.testing.assert_allclose(dense.bias.numpy(), bias - 0.1 * grad_b, rtol=1e-4, atol=1e-6)


def test_the_engine_keeps_no_optimizer_state_for_frozen_layers(rng):
    x = rng.normal(size=(64, 10)).astype(np.float32)
    y = rng.normal(size=(64, 1)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((10,)), pynn.Dense(64, activation="relu"),
                             pynn.Dense(64, activation="relu"), pynn.Dense(1)])
    model.layers[1].trainable = model.layers[2].trainable = False
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=2, verbose=0)
    if NATIVE:  # (without pynn._C the layer path trains it: it keeps none either)
        assert model.engine_reason is None  # trained natively
    frozen = {id(p) for layer in model.layers[1:3] for p in layer.params}
    assert not frozen & set(model.optimizer._state)
    assert len(model.optimizer._state) == 2  # the head's kernel and bias


def test_a_model_inside_a_model_names_the_way_to_reuse_its_layers(rng):
    base = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="relu")])
    with pytest.raises(TypeError, match=r"a model is not a layer in pynn.*\.layers \+ \[head\]"):
        pynn.Sequential([base, pynn.Dense(1)])
    model = pynn.Sequential(base.layers + [pynn.Dense(1)])  # the way it names
    assert model.layers[1] is base.layers[1]
    # a model after the first element: its layers without its Input (the way named was
    # refused: "an Input can only be the first element")
    head = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2), pynn.Dense(1)])
    with pytest.raises(TypeError, match=r"Sequential\(\[\.\.\., \*sequential_?\d*\.layers\[1:\]\]\)"):
        pynn.Sequential([*base.layers, head])
    joined = pynn.Sequential([*base.layers, *head.layers[1:]])  # the way it names
    assert joined.layers[2:] == head.layers[1:]
    assert joined.predict(rng.normal(size=(2, 4)), verbose=0).shape == (2, 1)


def test_load_weights_refuses_to_guess_a_flatten_models_input(tmp_path):
    # A weights file records its model's input shape: an unbuilt Flatten model is built for
    # (4, 5); one without it (an older pynn's) is refused (the first kernel says (20,))
    import json

    model = pynn.Sequential([pynn.Input((4, 5)), pynn.Flatten(), pynn.Dense(3)])
    model.save_weights(tmp_path / "w.npz")
    fresh = pynn.Sequential([pynn.Flatten(), pynn.Dense(3)])
    fresh.load_weights(tmp_path / "w.npz")
    assert fresh.input_shape == (4, 5)
    arrays = dict(np.load(tmp_path / "w.npz"))
    meta = json.loads(str(arrays["__pynn__"]))
    del meta["input_shape"]
    arrays["__pynn__"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    fresh = pynn.Sequential([pynn.Flatten(), pynn.Dense(3)])
    with pytest.raises(ValueError, match="build the model"):
        fresh.load_weights(tmp_path / "old.npz")  # it built for (20,), not (4, 5)
    assert not fresh.built


def test_freezing_the_input_warns_that_it_freezes_nothing():
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4), pynn.Dense(2)])
    with pytest.warns(UserWarning, match=r"'input_layer\w*' is the model's Input and has no "
                                         r"weights.*first Dense is model.layers\[1\]"):
        for layer in model.layers[:2]:  # Keras 3 code meaning the first two Dense layers
            layer.trainable = False
    assert model.layers[1].trainable is False and model.layers[2].trainable is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.trainable = False  # the whole model: nothing to warn about
        loaded = pynn.Sequential.from_config(model.get_config())  # nor in a loaded one
        assert not loaded.layers[0].trainable
        model.layers[0].trainable = True
        model.trainable = True
    assert all(layer.trainable for layer in model.layers)


def test_train_on_batch_follows_what_changed_between_calls(rng):
    """train_on_batch prepares the model (metric objects, the optimizer's live state, the
    weights' dtype) only when something it reads changed since the last call: each change
    below must reach the next call."""
    x = rng.normal(size=(16, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=16)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, activation="relu"),
                             pynn.Dense(3, activation="softmax")])
    opt, loss = pynn.optimizers.Adam(0.01), pynn.losses.SparseCategoricalCrossentropy()
    model.compile(opt, loss)
    assert isinstance(model.train_on_batch(x, labels), float)
    for _ in range(2):  # the same optimizer and loss objects, metrics added, then again
        model.compile(opt, loss, metrics=["accuracy"])
        before = float(np.mean(model.predict(x).argmax(axis=1) == labels))
        logs = model.train_on_batch(x, labels, return_dict=True)
        assert set(logs) == {"loss", "accuracy"}
        assert logs["accuracy"] == pytest.approx(before)  # (the logs are before the step)
    sgd = pynn.optimizers.SGD(0.1)
    model.optimizer = sgd
    model.train_on_batch(x, labels)
    assert set(sgd._state) == {id(p) for p in model.params if p.trainable}
    model.pop()
    model.add(pynn.Dense(3, activation="softmax"))
    model.train_on_batch(x, labels)
    assert set(sgd._state) == {id(p) for p in model.params}  # the popped layer's is gone
    pynn.set_floatx("float64")
    try:
        model.train_on_batch(x.astype(np.float64), labels)
        assert all(w.dtype == np.float64 for w in model.get_weights())
    finally:
        pynn.set_floatx("float32")


def test_a_layer_popped_and_added_back_before_training_keeps_its_state(rng):
    """summary(), metrics or evaluate between pop() and add() of the same layer dropped its
    Adam slots (predict did not): the optimizer forgets weights only when a step follows
    without them, so the run equals the one never popped."""
    x = rng.normal(size=(24, 5)).astype(np.float32)
    y = rng.normal(size=(24, 2)).astype(np.float32)

    def trained():
        pynn.set_seed(7)
        model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, activation="relu"),
                                 pynn.Dense(2)])
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
        return model

    kept = trained()
    head = kept.pop()
    kept.summary(print_fn=lambda line: None)
    assert kept.metrics_names
    kept.add(head)
    kept.evaluate(x, y, verbose=0)
    kept.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    plain = trained()
    plain.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(kept.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
