"""Model-level checks of the native engine: fit(engine='native') gives the layer path's results
within float32 rounding, falls back visibly, and predict takes the native path."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import pynn
from conftest import assert_trained_alike, requires_backend
from pynn import engine as engine_mod

pytestmark = requires_backend("cpu")

CONFIGS = [
    ("relu", "sparse_categorical_crossentropy", "softmax", 5, pynn.optimizers.Adam, ["accuracy"]),
    ("tanh", "categorical_crossentropy", "softmax", 3, pynn.optimizers.RMSprop, ["accuracy"]),
    ("gelu", "binary_crossentropy", "sigmoid", 1, pynn.optimizers.SGD, ["accuracy"]),
    ("elu", "mse", None, 2, pynn.optimizers.Adagrad, ["mae"]),
    ("leaky_relu", "huber", "linear", 2, pynn.optimizers.AdamW, ["mse"]),
    ("sigmoid", "mae", "tanh", 1, pynn.optimizers.Adam, []),
    ("relu", "categorical_crossentropy", "softmax", 3,
     functools.partial(pynn.optimizers.Adam, amsgrad=True), ["accuracy"]),
    ("tanh", "mse", None, 2, functools.partial(pynn.optimizers.Nadam, weight_decay=0.01), []),
    ("elu", "binary_crossentropy", "sigmoid", 1, pynn.optimizers.Adamax, ["accuracy"]),
    ("relu", "sparse_categorical_crossentropy", "softmax", 4,
     functools.partial(pynn.optimizers.Adadelta, weight_decay=0.1), ["accuracy"]),
]


def _data(rng, loss, out_dim, n=203):
    x = rng.normal(size=(n, 11)).astype(np.float32)
    if loss == "sparse_categorical_crossentropy":
        return x, rng.integers(0, out_dim, size=n)
    if loss == "categorical_crossentropy":
        return x, np.eye(out_dim)[rng.integers(0, out_dim, size=n)]
    if loss == "binary_crossentropy":
        return x, rng.integers(0, 2, size=n)
    return x, rng.normal(size=(n, out_dim)).astype(np.float32)


def _fit(config, x, y, engine, variant="plain"):
    hidden, loss, out_act, out_dim, opt_cls, metrics = config
    pynn.set_seed(11)
    dropout = 0.4 if variant == "dropout" else 0.0
    regs = {}
    if variant == "regularized":
        regs = {"kernel_regularizer": pynn.regularizers.L1L2(1e-3, 1e-2),
                "bias_regularizer": pynn.regularizers.L2(0.05)}
    model = pynn.Sequential([pynn.Input((11,)), pynn.Dropout(dropout / 4),
                             pynn.Dense(16, activation=hidden, **regs),
                             pynn.Dropout(dropout), pynn.Dense(7, activation=hidden),
                             pynn.Dropout(dropout / 2),
                             pynn.Dense(out_dim, activation=out_act,
                                        kernel_regularizer=pynn.regularizers.L1(2e-3) if regs else None)])
    model.compile(optimizer=opt_cls(learning_rate=0.01), loss=loss, metrics=metrics,
                  backend="cpu")
    # 46 steps an epoch: fit runs the native engine two batches per call (steps // 20), so the
    # per-batch offsets inside a call (dropout step, Adam step, outputs) are exercised.
    h = model.fit(x, y, epochs=3, batch_size=4, validation_split=0.1, verbose=0,
                  engine=engine)
    return model, h.history


@pytest.mark.parametrize("variant", ["plain", "dropout", "regularized"])
@pytest.mark.parametrize("config", CONFIGS, ids=[c[1] for c in CONFIGS])
def test_native_matches_layer_path(rng, config, variant):
    # With dropout (of the inputs and two hidden layers) both paths draw the same
    # counter-based masks (the optimizer step is the counter), and the derivative of each
    # activation must see the output before its mask; L1/L2 penalties join the loss and the
    # gradients in both.
    x, y = _data(rng, config[1], config[3])
    native, h_native = _fit(config, x, y, "native", variant)
    layers, h_layers = _fit(config, x, y, "layers", variant)
    n_val = int(0.1 * len(x))
    assert_trained_alike(native, layers, h_native, h_layers, len(x) - n_val, n_val)


def test_native_is_used_and_predict_matches(rng):
    model = pynn.Sequential([pynn.Input((11,)), pynn.Dense(8, activation="relu"),
                             pynn.Dense(3), pynn.Activation("softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert engine_mod.unsupported_reason(model) is None
    lines = []
    model.summary(print_fn=lines.append)
    assert "Training engine: native" in lines[0]
    x = rng.normal(size=(50, 11)).astype(np.float32)
    native = model.predict(x)
    assert model._predict_cache is not None
    reference = model._forward(x, training=False, logits=False)  # layer-by-layer
    np.testing.assert_allclose(native, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(x[:1]), reference[:1], rtol=1e-5, atol=1e-6)
    model.set_weights([w * 2 for w in model.get_weights()])  # in place: same arrays, new values
    np.testing.assert_allclose(model.predict(x), model._forward(x, False, False), rtol=1e-5,
                               atol=1e-6)


def test_predict_follows_an_activation_assigned_after_it_ran(rng):
    """The kept predict engine checks each layer's activation (only the layers that have
    one: the Input's lookup raised inside getattr, a microsecond of every call)."""
    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(5, activation="relu"),
                             pynn.Dense(3), pynn.Activation("softmax")])
    x = rng.normal(size=(4, 6)).astype(np.float32)
    model.predict(x)
    for layer, name in ((model.layers[1], "tanh"), (model.layers[3], "sigmoid")):
        layer.activation = name
        np.testing.assert_allclose(model.predict(x), model._forward(x, False, False),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.predict(x[:1]), model._forward(x[:1], False, False),
                                   rtol=1e-5, atol=1e-6)


def test_samples_of_several_axes_not_in_a_numpy_array_predict_with_a_kept_engine(rng):
    """A 3-D memoryview (or an h5py Dataset) of (4, 4) samples failed with an AttributeError
    (no reshape) once a kept engine took the lean path; it works without one."""
    model = pynn.Sequential([pynn.Input((4, 4)), pynn.layers.Flatten(),
                             pynn.Dense(8, activation="relu"), pynn.Dense(3)])
    x = rng.normal(size=(3, 4, 4)).astype(np.float32)
    want = model.predict(x)  # keeps the engine
    assert model._predict_cache is not None
    np.testing.assert_array_equal(model.predict(memoryview(x)), want)


def test_a_few_float64_rows_take_the_lean_predict_path(rng):
    # numpy's default float64 (and a batch_size the rows fit in) went the full way: 42 us
    # for one row against 3 us in float32
    model = pynn.Sequential([pynn.Input((11,)), pynn.Dense(8, activation="relu"), pynn.Dense(3)])
    x = rng.normal(size=(5, 11))
    want = model.predict(x.astype(np.float32))
    cache = model._predict_cache
    calls = []
    lean = cache.predict
    cache.predict = lambda rows: calls.append(rows.dtype) or lean(rows)
    for rows, kwargs in ((x[:1], {}), (x, {}), (np.asfortranarray(x), {}), (x[::-1][::-1], {}),
                         (x[:1].astype(np.float32), {"batch_size": 1})):
        np.testing.assert_array_equal(model.predict(rows, **kwargs), want[:len(rows)])
    assert calls == [np.float32] * 5
    with pytest.raises(ValueError, match="float32"):  # beyond float32: the full path's error
        model.predict(np.full((1, 11), 1e300))
    # what the full path refuses, the lean one must not convert (strings became numbers,
    # complex numbers lost their imaginary part)
    with pytest.raises(TypeError, match="numeric"):
        model.predict(np.array([[str(v) for v in range(11)]]))
    with pytest.raises(TypeError, match="real"):
        model.predict(x[:1] + 1j)


def test_the_predict_engine_holds_no_training_buffers():
    # It was built as a training engine: a 1024-row input copy and the gradients, +202 MiB
    # for one predicted row of a 50,000-feature model (6 MiB of weights).
    import os

    if not os.path.exists("/proc/self/statm"):
        pytest.skip("resident memory is read from /proc here")

    def resident_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    model = pynn.Sequential([pynn.Input((50_000,)), pynn.Dense(32, activation="relu"),
                             pynn.Dense(10, activation="softmax")])
    x = np.ones((1, 50_000), np.float32)
    before = resident_mib()
    model.predict(x)
    assert model._predict_cache is not None
    assert resident_mib() - before < 50
    with pytest.raises(ValueError, match="predict only"):
        model._predict_cache.engine.train(x, np.zeros((1, 10), np.float32),
                                          np.zeros(1, np.int64), 0, 1, 1, {"lr": 0.1}, 0, [])


def test_unsupported_models_fall_back_visibly():
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax"),
                             pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    reason = engine_mod.unsupported_reason(model)
    assert reason and "softmax" in reason
    lines = []
    model.summary(print_fn=lines.append)
    assert "Training engine: layers (native engine not used: softmax" in lines[0]
    with pytest.raises(ValueError, match="native engine cannot train this model"):
        model.fit(np.zeros((4, 4)), np.zeros((4, 2)), verbose=0, engine="native")
    h = model.fit(np.zeros((4, 4)), np.zeros((4, 2)), verbose=0)  # auto: layer path
    assert len(h.history["loss"]) == 1 and model.engine_reason == reason
    with pytest.raises(ValueError, match="engine must be"):
        model.fit(np.zeros((4, 4)), np.zeros((4, 2)), verbose=0, engine="turbo")


@pytest.mark.parametrize("verbose", [1, 2])
def test_fit_says_when_it_trains_layer_by_layer(capsys, verbose):
    # A fall-back was seen only through model.engine_reason or summary(): fit said nothing.
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="softmax"),
                             pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", backend="cpu")
    model.fit(np.zeros((4, 4)), np.zeros((4, 2)), verbose=verbose)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("Training layer by layer, not in the native engine: "
                                   + model.engine_reason)
    for quiet in ({"verbose": 0}, {"verbose": 1, "engine": "layers"}):  # nothing to explain
        model.fit(np.zeros((4, 4)), np.zeros((4, 2)), **quiet)
        assert "layer by layer" not in capsys.readouterr().out
    native = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2)])
    native.compile(optimizer="sgd", loss="mse", backend="cpu")
    native.fit(np.zeros((4, 4)), np.zeros((4, 2)), verbose=verbose)
    assert "layer by layer" not in capsys.readouterr().out


@pytest.mark.parametrize("layers, reason", [
    (lambda: [pynn.Dense(8, activation="relu"), pynn.Dropout(0.2),
              pynn.BatchNormalization(), pynn.Dense(1)], "after a Dropout"),
    (lambda: [pynn.Dense(8, activation="relu"), pynn.Activation("tanh"), pynn.Dense(1)],
     "after another activation"),
    (lambda: [pynn.Dense(8), pynn.BatchNormalization(), pynn.BatchNormalization(),
              pynn.Dense(1)], "after another normalization"),
])
def test_fall_back_reasons_name_the_placement(layers, reason):
    # They said the layer type was "not supported natively", which it is elsewhere.
    model = pynn.Sequential([pynn.Input((4,)), *layers()])
    model.compile(optimizer="adam", loss="mse")
    assert reason in engine_mod.unsupported_reason(model)


def test_a_loss_subclass_is_named_as_the_fall_back_reason():
    class MyMSE(pynn.losses.MeanSquaredError):
        pass

    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1)])
    model.compile(optimizer="adam", loss=MyMSE())  # it said "loss mse with a linear output"
    assert "loss MyMSE is not pynn's own class" in engine_mod.unsupported_reason(model)


def test_batch_callbacks_see_every_batch_natively():
    seen = []
    cb = pynn.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((10, 2)), np.ones(10), batch_size=3, epochs=2, verbose=0, callbacks=[cb],
              engine="native")
    assert seen == [0, 1, 2, 3] * 2


def test_frozen_layer_unchanged_natively(rng):
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, activation="relu"), pynn.Dense(1)])
    model.layers[1].trainable = False
    model.compile(optimizer="adam", loss="mse")
    before = model.layers[1].get_weights()
    model.fit(rng.normal(size=(40, 5)), rng.normal(size=40), epochs=2, verbose=0,
              engine="native")
    for a, b in zip(before, model.layers[1].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_frozen_regularized_layer_counts_in_the_native_loss(rng):
    # A frozen layer's penalty is constant but still part of the loss (as in Keras).
    x, y = rng.normal(size=(64, 5)).astype(np.float32), rng.normal(size=(64, 1))
    runs = {}
    for engine in ("native", "layers"):
        pynn.set_seed(4)
        model = pynn.Sequential([
            pynn.Input((5,)),
            pynn.Dense(8, activation="tanh", kernel_regularizer="l2", trainable=False),
            pynn.Dense(1, kernel_regularizer=pynn.regularizers.L1(0.01))])
        model.compile(optimizer="adam", loss="mse", backend="cpu")
        frozen = [w.copy() for w in model.layers[1].get_weights()]
        runs[engine] = model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                                 engine=engine).history["loss"]
        for a, b in zip(frozen, model.layers[1].get_weights()):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(runs["native"], runs["layers"], rtol=1e-5)


@pytest.mark.parametrize("out_act,units", [("sigmoid", 1), (None, 1), ("relu", 1),
                                           ("softmax", 4), (None, 3)])
def test_a_row_predicts_the_same_alone_and_in_a_batch(rng, out_act, units):
    """A row's prediction does not depend on the batch around it (scikit-learn's subset
    invariance): the single-row path and the batched GEMMs give the same bits, also for a
    one-output layer (its matrix-vector path)."""
    model = pynn.Sequential([pynn.Input((23,)), pynn.Dense(40, activation="relu"),
                             pynn.Dense(17, activation="tanh"),
                             pynn.Dense(units, activation=out_act)])
    model.compile(optimizer="adam", loss="mse")
    x = rng.normal(size=(37, 23)).astype(np.float32)
    full = model.predict(x)
    for i in (0, 5, 36):
        np.testing.assert_array_equal(model.predict(x[i:i + 1]), full[i:i + 1])
    np.testing.assert_array_equal(model.predict(x[3:9]), full[3:9])


def test_subclassed_layers_and_losses_take_the_layer_path(rng):
    """The engine computes built-in layers and losses itself; a subclass may override that
    (here: a Dense scaling its output, a cross-entropy scaling the loss), so the model falls
    back to the layer path, visibly, and trains and predicts as its own methods say."""
    class ScaledDense(pynn.Dense):
        def forward(self, x, training=False, logits=False):
            return 2 * super().forward(x, training, logits)

        def backward(self, dy, need_input_grad=True, logits=False):
            return super().backward(2 * dy, need_input_grad, logits)

    class DoubledBCE(pynn.losses.BinaryCrossentropy):
        def value_and_grad(self, backend, y_pred, y_true, sample_weight=None):
            loss, grad = super().value_and_grad(backend, y_pred, y_true, sample_weight)
            return 2 * loss, 2 * grad

        def logits_value_and_grad(self, backend, z, y_true, sample_weight=None):
            loss, grad = super().logits_value_and_grad(backend, z, y_true, sample_weight)
            return 2 * loss, 2 * grad

    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    for first, loss in [(ScaledDense, "binary_crossentropy"), (pynn.Dense, DoubledBCE())]:
        def build():
            pynn.set_seed(3)
            m = pynn.Sequential([pynn.Input((4,)), first(8, activation="relu"),
                                 pynn.Dense(1, activation="sigmoid")])
            m.compile(optimizer="sgd", loss=loss)
            return m
        model = build()
        reason = engine_mod.unsupported_reason(model)
        assert reason is not None
        lines = []
        model.summary(print_fn=lines.append)
        assert "Training engine: layers" in lines[0]
        auto = model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False).history
        layers = build().fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False,
                             engine="layers").history
        assert auto["loss"] == layers["loss"]
        np.testing.assert_array_equal(model.predict(x),
                                      model._forward(x, training=False, logits=False))


def _both_engines(make, x, y, **fit):
    """{engine: (history, model)} of the same model fitted natively and layer by layer."""
    runs = {}
    for engine in ("native", "layers"):
        model = make()
        history = model.fit(x, y, verbose=0, shuffle=False, engine=engine, **fit)
        runs[engine] = (history.history, model)
    return runs


@pytest.mark.parametrize("sparse", [True, False])
def test_tied_outputs_count_the_first_class_as_numpy_does(rng, sparse):
    # a zero output layer ties every class: argmax takes the first (numpy's), on both paths
    x = rng.normal(size=(8, 3)).astype(np.float32)
    labels = np.zeros(8, np.int32)
    y = labels if sparse else np.eye(4, dtype=np.float32)[labels]

    def make():
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, kernel_initializer="zeros")])
        loss = (pynn.losses.SparseCategoricalCrossentropy if sparse else
                pynn.losses.CategoricalCrossentropy)(from_logits=True)
        model.compile(pynn.optimizers.SGD(0.0), loss, metrics=["accuracy"], backend="cpu")
        return model

    runs = _both_engines(make, x, y, epochs=1, batch_size=8)
    assert runs["native"][0]["accuracy"] == runs["layers"][0]["accuracy"] == [1.0]


@pytest.mark.parametrize("sparse", [True, False])
def test_accuracy_reads_the_probabilities_as_the_layers(rng, sparse):
    """Logits 1e-8 apart have one float32 softmax: its argmax is the first class, the
    logits' the larger one. The engine took the logits' (accuracy 1.0 where the layer path
    and Keras give 0.0)."""
    x = np.zeros((8, 2), np.float32)
    labels = np.ones(8, np.int32)
    y = labels if sparse else np.eye(3, dtype=np.float32)[labels]
    tiny = float(rng.uniform(1e-9, 1e-8))

    def make():
        model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(3, activation="softmax")])
        loss = "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
        model.compile(pynn.optimizers.SGD(0.0), loss, metrics=["accuracy"], backend="cpu")
        model.set_weights([np.zeros((2, 3), np.float32), np.array([0, tiny, 0], np.float32)])
        return model

    runs = _both_engines(make, x, y, epochs=1, batch_size=8)
    assert runs["native"][0]["accuracy"] == runs["layers"][0]["accuracy"] == [0.0]


def test_l1_penalty_of_weights_at_zero_as_the_layers(rng):
    # sign(0) = 0: an L1 penalty gives a weight at exactly 0 no push (biases start there)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.normal(size=(16, 2)).astype(np.float32)

    def make():
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(
            2, kernel_initializer="ones", bias_regularizer=pynn.regularizers.L1(0.5))])
        model.compile(pynn.optimizers.SGD(0.1), "mse", backend="cpu")
        return model

    runs = _both_engines(make, x, y, epochs=1, batch_size=16)
    np.testing.assert_allclose(runs["native"][1].layers[-1].bias.numpy(),
                               runs["layers"][1].layers[-1].bias.numpy(), rtol=1e-5, atol=1e-7)


def test_two_threads_gather_an_odd_batch_of_wide_rows(rng):
    # a batch of 33 rows of 1024 features is gathered by two threads: each row once
    x = rng.normal(size=(66, 1024)).astype(np.float32)
    y = rng.normal(size=(66, 1)).astype(np.float32)
    previous = pynn.get_num_threads()
    pynn.set_num_threads(2)
    try:
        def make():
            pynn.set_seed(1)
            model = pynn.Sequential([pynn.Input((1024,)), pynn.Dense(1)])
            model.compile(pynn.optimizers.SGD(1e-3), "mse", backend="cpu")
            return model

        runs = _both_engines(make, x, y, epochs=2, batch_size=33)
    finally:
        pynn.set_num_threads(previous)
    np.testing.assert_allclose(runs["native"][0]["loss"], runs["layers"][0]["loss"], rtol=1e-5)


def test_a_weight_frozen_on_its_own_stays_on_both_paths(rng):
    x = rng.normal(size=(32, 2)).astype(np.float32)
    y = x.sum(axis=1)
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile("sgd", "mse", backend="cpu")
    model.layers[1].kernel.trainable = False
    kernel = model.layers[1].kernel.numpy()
    bias = model.layers[1].bias.numpy()
    model.fit(x, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(model.layers[1].kernel.numpy(), kernel)
    assert not np.array_equal(model.layers[1].bias.numpy(), bias)
    assert model.engine_reason is not None  # (the engine freezes whole layers only)


@pytest.mark.parametrize("clip", [{"clipvalue": 1e-3}, {"clipnorm": 1e-3},
                                  {"global_clipnorm": 1e-2}])
def test_an_input_normalisations_gradients_are_clipped_natively(rng, clip):
    x = (rng.normal(size=(96, 6)) * 3 + 1).astype(np.float32)
    y = (x[:, 0] > 1).astype(int) + (x[:, 1] > 2)
    weights = {}
    for engine in ("native", "layers"):
        pynn.set_seed(4)
        model = pynn.Sequential([pynn.Input((6,)), pynn.BatchNormalization(momentum=0.8),
                                 pynn.Dense(12, activation="gelu"),
                                 pynn.Dense(3, activation="softmax")])
        model.compile(pynn.optimizers.Adam(0.01, **clip), "sparse_categorical_crossentropy",
                      backend="cpu")
        model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0, engine=engine)
        weights[engine] = model.get_weights()
    for a, b in zip(weights["native"], weights["layers"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("verbose", [0, 2])
def test_chunks_logged_at_once_equal_batch_by_batch_bit_for_bit(rng, monkeypatch, verbose,
                                                                 capsys):
    # With nothing looking at single batches (no batch hook, no bar), a native chunk's
    # losses and metrics join the epoch's logs in one step; a no-op batch hook makes fit
    # add them batch by batch: the logs and weights must agree to the bit.
    x = rng.normal(size=(203, 11)).astype(np.float32)  # a short last batch
    y = rng.integers(0, 4, size=203)
    w = rng.uniform(0.5, 2.0, size=203)

    def run(callbacks):
        pynn.set_seed(7)
        model = pynn.Sequential([pynn.Input((11,)), pynn.Dense(9, activation="relu"),
                                 pynn.Dense(4, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy", "sparse_categorical_accuracy"], backend="cpu")
        hist = model.fit(x, y, sample_weight=w, batch_size=16, epochs=3, verbose=verbose,
                         validation_split=0.2, callbacks=callbacks)
        assert model.engine_reason is None
        return hist.history, model.get_weights()

    per_batch = []
    real = pynn.metrics.EpochLogs.add_means

    def counting(self, k, values):
        if k in (16, 2):  # a training batch (validation's 41 rows are one evaluate batch)
            per_batch.append(k)
        return real(self, k, values)

    monkeypatch.setattr(pynn.metrics.EpochLogs, "add_means", counting)
    at_once, w_at_once = run([])
    assert per_batch == []  # no Python step per batch
    hooked, w_hooked = run([pynn.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: None)])
    assert len(per_batch) == 3 * 11  # 162 training rows in batches of 16
    assert at_once == hooked  # floats compared exactly
    for a, b in zip(w_at_once, w_hooked):
        np.testing.assert_array_equal(a, b)
    capsys.readouterr()


def test_logs_of_batches_added_at_once_are_the_running_sums(rng):
    # EpochLogs.add_means_of_batches against add_means one batch at a time, from a non-zero
    # total, with a name given twice (the last column counts, as a dict of the two would).
    logs_a = pynn.metrics.EpochLogs([])
    logs_b = pynn.metrics.EpochLogs([])
    logs_a.add_means(3, {"loss": 0.1, "m": 2.5})
    logs_b.add_means(3, {"loss": 0.1, "m": 2.5})
    ks = rng.integers(1, 40, size=57)
    rows = rng.normal(size=(57, 3)) * 10.0 ** rng.integers(-8, 8, size=(57, 3))
    for k, r in zip(ks, rows):
        logs_a.add_means(int(k), {"loss": float(r[0]), "m": float(r[2])})
    logs_b.add_means_of_batches(ks, ["loss", "m", "m"], rows)
    assert dict(logs_a) == dict(logs_b) and logs_a._seen == logs_b._seen


def test_logs_of_batches_added_at_once_to_a_float32_total(rng):
    """A metric whose running total is a float32 scalar got a float64 running sum from
    add_means_of_batches: not what adding the batches one by one gives."""
    class Float32Mean(pynn.metrics.MeanMetricWrapper):
        def reset_state(self):
            self._total, self._count = np.float32(0.0), 0

    def logs():
        metric = Float32Mean(pynn.metrics.mean_squared_error, name="m32")
        epoch_logs = pynn.metrics.EpochLogs([metric])
        assert epoch_logs._means == {"m32": metric}  # it takes the engine's means
        epoch_logs.add_means(3, {"loss": 0.1, "m32": 2.5})
        return epoch_logs

    logs_a, logs_b = logs(), logs()
    ks = rng.integers(1, 40, size=57)
    rows = rng.uniform(0.1, 3.0, size=(57, 2))
    for k, r in zip(ks, rows):
        logs_a.add_means(int(k), {"loss": float(r[0]), "m32": float(r[1])})
    logs_b.add_means_of_batches(ks, ["loss", "m32"], rows)
    assert dict(logs_a) == dict(logs_b) and logs_a._seen == logs_b._seen
    assert type(logs_a._means["m32"]._total) is type(logs_b._means["m32"]._total)


@pytest.mark.parametrize("width,calls", [(8, 3), (512, 20)])
def test_calls_into_the_engine_an_epoch(rng, monkeypatch, width, calls):
    """Without a bar or batch callbacks, cheap steps go 16 to a call (a call per batch cost
    as much as a small batch); steps of over ~50 MFLOP keep ~20 calls an epoch, so Ctrl-C
    (seen between calls) waits for little. 40 batches of 32 rows."""
    pytest.importorskip("pynn._C")
    calls_made = []
    train = pynn.engine.NativeEngine.train
    monkeypatch.setattr(pynn.engine.NativeEngine, "train",
                        lambda self, *a, **k: calls_made.append(1) or train(self, *a, **k))
    x = rng.normal(size=(1280, width)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((width,)), pynn.Dense(width, activation="relu"),
                             pynn.Dense(1)])
    model.compile("sgd", "mse", backend="cpu")
    model.fit(x, x[:, :1], epochs=1, batch_size=32, verbose=0)
    assert len(calls_made) == calls
