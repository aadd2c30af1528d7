"""The CUDA training engine's Python side (pynn/cuda_engine.py, the fit and train_on_batch
wiring) on a machine without a GPU: the `cuda` backend on fake_cupy's arrays, with
fake_cuda_module's DenseEngine (the binding's arguments, engine.cpp's steps in NumPy and
pynn._C's kernels) in place of the CUDA one. What it passes (weights, slots in order, rates,
step counts) and how it reads the logs back must give the layer path's training; the CUDA code
itself is tested on a GPU by test_cuda_engine.py."""

from __future__ import annotations

import sys

import fake_cuda_module
import fake_cupy
import numpy as np
import pytest
from conftest import requires_backend
from test_cuda_engine import (CONFIGS, _data, _model, bias_free_and_frozen_agree,
                              dropout_agrees, engine_and_layers_agree, layer_step,
                              train_on_batch_twins)

import pynn
from pynn import cuda_engine

pytestmark = requires_backend("cpu")  # the fakes run pynn._C's kernels


@pytest.fixture
def cuda_backend(monkeypatch):
    import pynn._C

    from pynn.backend.cuda_backend import CudaBackend

    cupy, module = fake_cuda_module.make_fake_gpu(pynn._C)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    backend = CudaBackend(module)
    monkeypatch.setattr(pynn.backend, "_instances", {**pynn.backend._instances, "cuda": backend})
    previous = pynn.get_backend()
    yield backend
    pynn.set_backend(previous)


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[1]}-{c[2]}" for c in CONFIGS])
@pytest.mark.parametrize("variant", ["plain", "frozen", "schedule"])
def test_engine_glue_matches_layer_path(cuda_backend, rng, config, variant):
    engine_and_layers_agree(rng, config, variant)


def test_fit_takes_the_engine_unless_told_otherwise(cuda_backend, rng, capsys):
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=40)
    model = _model(config)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert model.engine_reason is None
    lines = []
    model.summary(print_fn=lines.append)
    assert "Training engine: native (whole steps in C++ and CUDA)" in lines[0]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, engine="layers")
    assert model.engine_reason == "engine='layers' was asked for"
    # a model the engine cannot train says so when fit is verbose, as on the cpu backend
    model.fit(x, y, epochs=1, batch_size=8, verbose=2, sample_weight=np.ones(40))
    assert capsys.readouterr().out.splitlines()[0] == (
        "Training layer by layer, not in the native engine: " + model.engine_reason)
    assert "sample or class weights" in model.engine_reason


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_engine_glue_with_dropout(cuda_backend, rng, monkeypatch, loss):
    dropout_agrees(rng, monkeypatch, loss)


def test_engine_glue_without_biases_or_anything_to_train(cuda_backend, rng):
    bias_free_and_frozen_agree(rng)


def test_train_on_batch_and_weighted_batches(cuda_backend, rng):
    native, layers, x, y = train_on_batch_twins(rng)
    # a weighted batch goes through the layers (the engine takes unweighted ones), as it
    # does in fit, where engine='native' is refused
    w = rng.uniform(0.5, 2.0, size=8)
    a = native.train_on_batch(x[:8], y[:8], sample_weight=w)
    b = layer_step(layers, x[:8], y[:8], w)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    native.fit(x, y, epochs=1, batch_size=8, verbose=0, sample_weight=np.ones(40))
    assert "sample or class weights" in native.engine_reason
    with pytest.raises(ValueError, match="sample or class weights"):
        native.fit(x, y, epochs=1, verbose=0, sample_weight=np.ones(40), engine="native")


def test_what_the_engine_does_not_run_is_named(cuda_backend, rng):
    x, y = _data(rng, "sparse_categorical_crossentropy", 5, n=30)
    cases = {
        "normalization": [pynn.Dense(8, activation="relu"), pynn.layers.BatchNormalization(),
                          pynn.Dense(5, activation="softmax")],
        "regularizer": [pynn.Dense(8, kernel_regularizer=pynn.regularizers.L2(0.1)),
                        pynn.Dense(5, activation="softmax")],
    }
    if not cuda_engine.DROPOUT_RUN_ON_A_GPU:  # (the engine's dropout awaits a GPU run)
        cases["dropout \\(the cuda engine's has not yet run on a GPU\\)"] = [
            pynn.Dense(8, activation="relu"), pynn.Dropout(0.5),
            pynn.Dense(5, activation="softmax")]
    for why, layers in cases.items():
        model = pynn.Sequential([pynn.Input((11,)), *layers])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="cuda")
        with pytest.raises(ValueError, match=why):
            model.fit(x, y, epochs=1, verbose=0, engine="native")
    model = pynn.Sequential([pynn.Input((11,)), pynn.Dense(5, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="cuda")
    with pytest.raises(ValueError, match="optimizer RMSprop"):
        model.fit(x, y, epochs=1, verbose=0, engine="native")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["precision"], backend="cuda")
    with pytest.raises(ValueError, match="metric"):
        model.fit(x, y, epochs=1, verbose=0, engine="native")


def test_weighted_batches_from_a_source_are_refused_by_the_engine_alone(cuda_backend, rng,
                                                                       capsys):
    """A generator's weighted batch: engine='native' says why it cannot train it; 'auto'
    trains that batch layer by layer (a chunk the engine cannot run is not dropped) and a
    verbose fit says so, once."""
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=24)
    w = rng.uniform(0.5, 2.0, size=24)

    def batches():
        for i in range(0, 24, 8):
            yield x[i:i + 8], y[i:i + 8], w[i:i + 8]

    model = _model(config)
    with pytest.raises(ValueError, match="sample or class weights"):
        model.fit(batches(), epochs=1, verbose=0, engine="native")
    weighted, layers = _model(config), _model(config)
    h = weighted.fit(batches(), epochs=1, verbose=0).history
    h_layers = layers.fit(batches(), epochs=1, verbose=0, engine="layers").history
    np.testing.assert_allclose(h["loss"], h_layers["loss"], rtol=1e-5)
    assert "layer by layer" not in capsys.readouterr().out  # verbose=0: nothing said
    _model(config).fit(batches(), epochs=1, verbose=2)  # three weighted batches
    said = [line for line in capsys.readouterr().out.splitlines() if "layer by layer" in line]
    assert said == ["Training weighted batches layer by layer, not in the native engine: "
                    "sample or class weights (the cuda engine takes unweighted batches)"]


def test_clipping_set_mid_fit_leaves_the_engine(cuda_backend, rng):
    """The engine has no clipping: a callback turning it on mid-fit sends the rest of the fit
    through the layers (it trained on unclipped before), as the layer path throughout."""
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3])

    class ClipFromEpoch1(pynn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.model.optimizer.clipvalue = 0.001

    runs = {}
    for engine in ("auto", "layers"):
        model = _model(config)
        runs[engine] = model, model.fit(x, y, epochs=3, batch_size=17, verbose=0,
                                        engine=engine, callbacks=[ClipFromEpoch1()]).history
    assert "clipping" in runs["auto"][0].engine_reason
    np.testing.assert_allclose(runs["auto"][1]["loss"], runs["layers"][1]["loss"], rtol=1e-4)
    for a, b in zip(runs["auto"][0].get_weights(), runs["layers"][0].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_weighted_batches_and_ignore_class_are_named(cuda_backend, rng):
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=24)
    model = _model(config)
    model.train_on_batch(x[:8], y[:8], sample_weight=np.ones(8))
    assert "sample or class weights" in model.engine_reason

    def batches():
        for i in range(0, 24, 8):
            yield x[i:i + 8], y[i:i + 8]

    model.fit(batches(), epochs=1, verbose=0, class_weight={0: 2.0})
    assert "sample or class weights" in model.engine_reason
    model.compile(optimizer="adam", backend="cuda",
                  loss=pynn.losses.SparseCategoricalCrossentropy(ignore_class=0))
    with pytest.raises(ValueError, match="with ignore_class"):
        model.fit(x, y, epochs=1, verbose=0, engine="native")


# ---- from a mutation audit of cuda_engine.py: each of these failed one of its mutants ------

def _refused(rng, why, layers=None, loss="sparse_categorical_crossentropy", optimizer="adam",
             metrics=(), out=5, y=None, weighted_metrics=None):
    x, y0 = _data(rng, loss if isinstance(loss, str) else "mse", out, n=24)
    layers = layers or [pynn.Dense(8, activation="relu"), pynn.Dense(out, activation="softmax")]
    model = pynn.Sequential([pynn.Input((11,)), *layers])
    model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics), backend="cuda",
                  weighted_metrics=weighted_metrics)
    with pytest.raises(ValueError, match=why):
        model.fit(x, y0 if y is None else y, epochs=1, verbose=0, engine="native")


def test_a_loss_not_averaged_over_the_batch_is_refused(cuda_backend, rng):
    for reduction in ("sum", "mean_with_sample_weight"):
        _refused(rng, f"loss reduction '{reduction}'",
                 loss=pynn.losses.SparseCategoricalCrossentropy(reduction=reduction),
                 y=rng.integers(0, 5, 24))


def test_weights_frozen_one_by_one_are_refused(cuda_backend, rng):
    first = pynn.Dense(8, activation="relu")
    x, y = _data(rng, "sparse_categorical_crossentropy", 5, n=24)
    model = pynn.Sequential([pynn.Input((11,)), first, pynn.Dense(5, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", backend="cuda")
    first.kernel.trainable = False  # the bias still trains
    with pytest.raises(ValueError, match="frozen one by one"):
        model.fit(x, y, epochs=1, verbose=0, engine="native")


@pytest.mark.parametrize("case", ["hinge", "bce-on-relu", "ema", "accumulation",
                                  "sgd-weight-decay", "accuracy-without-labels",
                                  "weighted-metric"])
def test_what_the_engine_lacks_is_refused_by_name(cuda_backend, rng, case):
    opts = pynn.optimizers
    one = {"out": 1, "layers": [pynn.Dense(1, activation="tanh")]}
    cases = {
        "hinge": (r"loss Hinge \(the cuda engine has MSE",
                  {"loss": "hinge", "y": rng.choice([-1.0, 1.0], (24, 1)), **one}),
        # _loss_kind says "bce" (probabilities from a relu): no kind the engine has
        "bce-on-relu": ("BinaryCrossentropy with a relu output",
                        {"loss": "binary_crossentropy", "out": 1,
                         "layers": [pynn.Dense(1, activation="relu")]}),
        "ema": ("use_ema", {"optimizer": opts.Adam(use_ema=True)}),
        "accumulation": ("gradient accumulation",
                         {"optimizer": opts.Adam(gradient_accumulation_steps=2)}),
        "sgd-weight-decay": ("weight_decay on SGD", {"optimizer": opts.SGD(weight_decay=0.01)}),
        # (targets both take: one column of class 0; (N, 3) ones, which the metric cannot
        # read as labels, are refused before any engine is asked)
        "accuracy-without-labels": ("metric sparse_categorical_accuracy",
                                    {"loss": "mse", "y": np.zeros((24, 1)),
                                     "metrics": [pynn.metrics.sparse_categorical_accuracy],
                                     **one}),
        # (named by its logged name, not its wrapper's class, _Weighted)
        "weighted-metric": (r"metric \w*accuracy \(", {"weighted_metrics": ["accuracy"]}),
    }
    why, kwargs = cases[case]
    _refused(rng, why, **kwargs)


def test_predict_runs_layer_by_layer_on_cuda(cuda_backend, rng):
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=24)
    model = _model(config)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert model.engine_reason is None
    out = model.predict(x, verbose=0)
    ref = model.backend.to_numpy(model._forward(model.backend.asarray(x, np.float32),
                                                training=False, logits=False))
    np.testing.assert_allclose(out, ref, rtol=1e-6)


@pytest.mark.parametrize("variant", ["plain", "schedule"])
def test_chunks_of_several_steps_on_the_host(cuda_backend, rng, variant):
    engine_and_layers_agree(rng, CONFIGS[0], variant, n=600, batch=8)


def test_huber_delta_reaches_the_engine(cuda_backend, rng):
    engine_and_layers_agree(rng, ("elu", "huber", "sigmoid", 1, pynn.optimizers.SGD, []),
                            n=60, loss=pynn.losses.Huber(delta=0.2))


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[1]}-{c[2]}" for c in CONFIGS])
def test_each_config_in_two_epochs(cuda_backend, rng, config):
    """(the stand-in checks what the binding checks: the slots a momentum or AMSGrad needs,
    y's shape, accuracy with sparse labels only)"""
    engine_and_layers_agree(rng, config, n=60, epochs=2)


def _built_engine(rng):
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=16)
    model = _model(config)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, engine="native")
    return model, cuda_engine.CudaEngine(model, 4), x, y.astype(np.int32)


def test_train_checks_its_inputs_and_counts_a_failed_chunks_steps(cuda_backend, rng):
    model, engine, x, y = _built_engine(rng)
    xp, order = cuda_backend.xp, np.arange(16)
    with pytest.raises(ValueError, match="unweighted"):
        engine.train(xp.asarray(x), xp.asarray(y), order, 0, 4, 4,
                     sample_weight=xp.asarray(np.ones(16, np.float32)))
    with pytest.raises(ValueError, match="on GPU 1"):
        engine.train(fake_cupy.ndarray(x, device_id=1), xp.asarray(y), order, 0, 4, 4)
    before = int(model.optimizer.iterations)
    y[5] = 5  # five classes
    with pytest.raises(IndexError, match="labels"):  # (every step of the chunk was taken)
        engine.train(xp.asarray(x), xp.asarray(y), order, 0, 4, 4)
    assert int(model.optimizer.iterations) == before + 4


def test_frozen_layers_get_no_slots(cuda_backend, rng, monkeypatch):
    built = []

    class Recording(cuda_backend._cuda.DenseEngine):
        def __init__(self, *args):
            super().__init__(*args)
            built.append(args)

    monkeypatch.setattr(cuda_backend._cuda, "DenseEngine", Recording)
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=40)
    model = _model(config, frozen=True)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, engine="native")
    trainable, weight_slots, bias_slots = built[-1][5:8]
    assert trainable == [False, True, True]
    assert weight_slots[0] == [] and bias_slots[0] == []
    assert model.optimizer.state_of(model.layers[1].kernel) is None  # as the layer path


def test_the_engine_trains_on_smoothed_labels_as_the_layers(cuda_backend, rng):
    """The loss's label smoothing reaches the engine's targets (the metrics read the labels as
    given): the same steps as the layer path, which smooths each batch."""
    x, y = _data(rng, "categorical_crossentropy", 3, n=40)
    runs = []
    for engine in ("native", "layers"):
        pynn.set_seed(5)
        model = pynn.Sequential([pynn.Input((11,)), pynn.Dense(6, activation="tanh"),
                                 pynn.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", backend="cuda",
                      loss=pynn.losses.CategoricalCrossentropy(label_smoothing=0.3))
        h = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, engine=engine)
        assert h.params["engine"] == engine
        runs.append((model.get_weights(), h.history["loss"]))
    (native, native_loss), (layers, layers_loss) = runs
    np.testing.assert_allclose(native_loss, layers_loss, rtol=1e-5)
    for a, b in zip(native, layers):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # (the fakes' NumPy steps)
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_terminate_on_nan_stops_the_cuda_engine_after_the_bad_batch(cuda_backend, rng,
                                                                    monkeypatch):
    """The cuda engine hands its chunk's losses back at the chunk's end (it cannot stop
    inside one): for TerminateOnNaN fit runs it a batch a chunk, and it stops where the
    layers stop."""
    x = rng.normal(size=(800, 6)).astype(np.float32)
    y = 1e3 * x.sum(axis=1, keepdims=True)
    y[int(rng.integers(16, 200))] = 1e30  # its batch's loss, or a later one's, not finite
    calls = []
    train = cuda_engine.CudaEngine.train
    monkeypatch.setattr(cuda_engine.CudaEngine, "train", lambda self, x, y, order, first, last,
                        *a, **k: calls.append(last - first) or train(self, x, y, order, first,
                                                                     last, *a, **k))
    steps = {}
    for engine in ("layers", "native"):
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(16, activation="relu"),
                                 pynn.Dense(1)])
        model.compile(optimizer=pynn.optimizers.SGD(1e-4), loss="mse", backend="cuda")
        model.fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False, engine=engine,
                  callbacks=[pynn.callbacks.TerminateOnNaN()])
        steps[engine] = model.optimizer.iterations
    assert steps["native"] == steps["layers"] < 200 and set(calls) == {1}


def test_constraints_and_activity_penalties_train_layer_by_layer(cuda_backend, rng):
    """The CUDA engine projects no weight and penalises no output: such a model trains on
    the layer path (GPU arrays), which applies both."""
    x = rng.normal(size=(32, 5)).astype(np.float32) * 3
    y = rng.normal(size=(32, 2)).astype(np.float32) * 4
    pynn.set_backend("cuda")
    for arguments, words in [({"kernel_constraint": pynn.constraints.MaxNorm(0.4)},
                              "has a constraint (MaxNorm(max_value=0.4, axis=0); the cuda "
                              "engine applies none)"),
                             ({"activity_regularizer": "l2"}, "has an activity_regularizer")]:
        model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(6, activation="tanh",
                                                              **arguments), pynn.Dense(2)])
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        assert words in model.engine_reason
    constrained = pynn.Sequential([pynn.Input((5,)), pynn.Dense(
        6, kernel_constraint=pynn.constraints.MaxNorm(0.4))])
    constrained.compile(optimizer="adam", loss="mse")
    constrained.fit(x, y[:, :1].repeat(6, axis=1), epochs=2, batch_size=8, verbose=0)
    kernel = constrained.layers[1].kernel.numpy()
    assert np.linalg.norm(kernel, axis=0).max() <= 0.4 + 1e-6
