"""The CUDA training engine (pynn/cuda_engine.py, csrc/cuda/engine.cpp) against the cuda
backend's layer path: the same losses, metrics and weights within float32 rounding for each
loss, output, optimizer and option it runs; the fallbacks are visible. They need a GPU:
marked `cuda`, skipped without one (scripts/gpu_check.sh runs them on a lent GPU)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import pynn
from conftest import assert_trained_alike, requires_backend

pytestmark = [pytest.mark.cuda, requires_backend("cuda")]

opts = pynn.optimizers
CONFIGS = [  # hidden activation, loss, output activation, outputs, optimizer, metrics
    ("relu", "sparse_categorical_crossentropy", "softmax", 5, opts.Adam, ["accuracy"]),
    ("tanh", "categorical_crossentropy", "softmax", 3,
     functools.partial(opts.SGD, momentum=0.9, nesterov=True), []),
    ("gelu", "mse", None, 2, functools.partial(opts.AdamW, amsgrad=True), []),
    ("elu", "huber", "sigmoid", 1, opts.SGD, []),
    ("leaky_relu", "mae", "tanh", 3, functools.partial(opts.SGD, momentum=0.5), []),
    ("sigmoid", "binary_crossentropy", "sigmoid", 1, opts.Adam, []),
    ("relu", "sparse_categorical_crossentropy", None, 4, opts.Adam, ["accuracy"]),  # logits
]


def _data(rng, loss, out_dim, n=203, features=11):
    x = rng.normal(size=(n, features)).astype(np.float32)
    if loss == "sparse_categorical_crossentropy":
        return x, rng.integers(0, out_dim, size=n)
    if loss == "categorical_crossentropy":
        return x, np.eye(out_dim)[rng.integers(0, out_dim, size=n)]
    if loss == "binary_crossentropy":
        return x, rng.integers(0, 2, size=(n, out_dim))
    return x, rng.normal(size=(n, out_dim)).astype(np.float32)


def _model(config, frozen=False, schedule=False, features=11):
    hidden, loss, out_act, out_dim, opt_cls, metrics = config
    pynn.set_seed(11)
    model = pynn.Sequential([pynn.Input((features,)), pynn.Dense(16, activation=hidden),
                             pynn.Dense(7, activation=hidden),
                             pynn.Dense(out_dim, activation=out_act)])
    if frozen:
        model.layers[1].trainable = False
    rate = pynn.schedules.ExponentialDecay(0.02, decay_steps=7, decay_rate=0.5) \
        if schedule else 0.01
    if loss == "sparse_categorical_crossentropy" and out_act is None:
        loss = pynn.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=opt_cls(learning_rate=rate), loss=loss, metrics=metrics,
                  backend="cuda")
    model.shuffle_seed = 5
    return model


def layer_step(model, x, y, w=None):
    """One optimizer step of the layer path on a batch (targets prepared as train_on_batch
    prepares them, float arrays as float32): the batch's loss before the step."""
    y = model.loss.prepare_targets(y, model.output_shape, np.float32)
    arrays = [x, y] + ([] if w is None else [w])
    return model._train_step(*(model.backend.asarray(v, np.float32 if v.dtype.kind == "f"
                                                     else v.dtype) for v in arrays))[0]


def _compare(native, layers, h_native, h_layers, n):
    assert native.engine_reason is None and layers.engine_reason is not None
    assert_trained_alike(native, layers, h_native, h_layers, n)


def engine_and_layers_agree(rng, config, variant="plain", n=203, batch=17, epochs=3,
                            loss=None):
    """`epochs` of the config's model (with `loss`, a Loss, if given) in the engine and layer
    by layer: the same."""
    x, y = _data(rng, config[1], config[3], n=n)
    runs = {}
    for engine in ("native", "layers"):
        model = _model(config, frozen=variant == "frozen", schedule=variant == "schedule")
        if loss is not None:
            model.compile(optimizer=model.optimizer, loss=loss, backend="cuda")
        # 17 rows a batch: a short last batch
        h = model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0, engine=engine)
        runs[engine] = model, h.history
    _compare(runs["native"][0], runs["layers"][0], runs["native"][1], runs["layers"][1],
             len(x))


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[1]}-{c[2]}" for c in CONFIGS])
@pytest.mark.parametrize("variant", ["plain", "frozen", "schedule"])
def test_engine_matches_layer_path(rng, config, variant):
    engine_and_layers_agree(rng, config, variant)


@pytest.mark.parametrize("variant", ["plain", "schedule"])
def test_chunks_of_several_steps(rng, variant):
    """600 rows of 8: 75 steps an epoch, so fit hands the engine 3 steps a call (the tests
    above run one-step calls): the per-step rates and the step count within a call."""
    engine_and_layers_agree(rng, CONFIGS[0], variant, n=600, batch=8)


@pytest.mark.parametrize("n,features,batch", [(1, 1, 1), (3, 3, 2), (129, 17, 129),
                                              (1000, 33, 64)])
def test_awkward_sizes(rng, n, features, batch):
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=n, features=features)
    runs = {}
    for engine in ("native", "layers"):
        model = _model(config, features=features)
        runs[engine] = model, model.fit(x, y, epochs=2, batch_size=batch, verbose=0,
                                        engine=engine).history
    _compare(runs["native"][0], runs["layers"][0], runs["native"][1], runs["layers"][1], n)


@pytest.mark.parametrize("config", [
    ("tanh", "sparse_categorical_crossentropy", "softmax", 5,
     functools.partial(opts.Adam, epsilon=1e-3), ["accuracy"]),
    CONFIGS[1],
    ("gelu", "mse", None, 2, functools.partial(opts.AdamW, amsgrad=True, epsilon=1e-3), []),
], ids=["adam", "sgd-nesterov", "adamw-amsgrad"])
def test_a_kernel_of_several_update_blocks(rng, config):
    """300 inputs x 16: the first kernel spans three blocks of the engine's one optimizer
    launch (2048 elements each, the last a part); every element must be updated once.
    Smooth activations and Adam's epsilon at 1e-3: among 4800 gradients one near 0 would
    take a whole step of the sign its rounding gave it (a kink of ReLU, the same)."""
    x, y = _data(rng, config[1], config[3], n=90, features=300)
    runs = {}
    for engine in ("native", "layers"):
        model = _model(config, features=300)
        runs[engine] = model, model.fit(x, y, epochs=2, batch_size=32, verbose=0,
                                        engine=engine).history
    _compare(runs["native"][0], runs["layers"][0], runs["native"][1], runs["layers"][1], 90)


def test_data_on_the_device_and_progress_per_batch(rng):
    """CuPy inputs are taken as they are; a bar (verbose=1) takes the logs batch by batch."""
    import cupy

    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3])
    native = _model(config)
    h_native = native.fit(cupy.asarray(x), cupy.asarray(y), epochs=2, batch_size=10,
                          verbose=1, engine="native").history
    layers = _model(config)
    h_layers = layers.fit(x, y, epochs=2, batch_size=10, verbose=0, engine="layers").history
    _compare(native, layers, h_native, h_layers, len(x))


def dropout_agrees(rng, monkeypatch, loss="sparse_categorical_crossentropy"):
    """Dropout in the engine (of the inputs; after a hidden layer's activation, a linear
    one's too): the layer path's masks, step by step, through the gradients below them;
    the Dropout layers' step counts follow the optimizer's, so a later fit on the layer path
    continues the masks; train_on_batch alike."""
    monkeypatch.setattr(pynn.cuda_engine, "DROPOUT_RUN_ON_A_GPU", True)
    sparse = loss == "sparse_categorical_crossentropy"
    x, y = _data(rng, loss, 4, n=70)

    def make():
        pynn.set_seed(9)
        model = pynn.Sequential([pynn.Input((11,)), pynn.Dropout(0.2, seed=3),
                                 pynn.Dense(16, activation="tanh"), pynn.Dropout(0.5, seed=4),
                                 pynn.Dense(9), pynn.Dropout(0.3, seed=2**63 + 1),
                                 pynn.Dense(4, activation="softmax" if sparse else None)])
        model.compile(optimizer=opts.SGD(0.05, momentum=0.9) if sparse else opts.Adam(0.01),
                      loss=loss, metrics=["accuracy"] if sparse else [], backend="cuda")
        model.shuffle_seed = 4
        return model

    runs = {}
    for engine in ("native", "layers"):
        model = make()
        runs[engine] = model, model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                                        engine=engine).history
        steps = model.optimizer.iterations
        assert [layer.step for layer in model.layers if type(layer) is pynn.Dropout] == \
            [steps] * 3
    _compare(runs["native"][0], runs["layers"][0], runs["native"][1], runs["layers"][1],
             len(x))
    for model, _ in runs.values():  # the masks continue where the engine left them
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, engine="layers")
    native, layers = runs["native"][0], runs["layers"][0]
    for i in range(0, 32, 16):  # then steps of train_on_batch (the engine) and of the layers
        a = native.train_on_batch(x[i:i + 16], y[i:i + 16])
        b = layer_step(layers, x[i:i + 16], y[i:i + 16])
        np.testing.assert_allclose(np.atleast_1d(a)[0], b, rtol=1e-4, atol=1e-6)
    assert native.engine_reason is None
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "mse"])
def test_dropout_in_the_engine(rng, monkeypatch, loss):
    dropout_agrees(rng, monkeypatch, loss)


def bias_free_and_frozen_agree(rng):
    """Layers without a bias (the optimizer's table holds their kernels alone) and a model
    with nothing to train (no table, no update launch): the engine trains as the layers."""
    x, y = _data(rng, "sparse_categorical_crossentropy", 4, n=50)

    def make(frozen):
        pynn.set_seed(3)
        model = pynn.Sequential([pynn.Input((11,)),
                                 pynn.Dense(16, activation="gelu", use_bias=False),
                                 pynn.Dense(9, activation="tanh"),
                                 pynn.Dense(4, activation="softmax", use_bias=False)])
        for layer in model.layers[1:] if frozen else []:
            layer.trainable = False
        model.compile(optimizer=opts.Adam(0.01), loss="sparse_categorical_crossentropy",
                      backend="cuda")
        model.shuffle_seed = 2
        return model

    for frozen in (False, True):
        runs = {}
        for engine in ("native", "layers"):
            model = make(frozen)
            before = model.get_weights()
            runs[engine] = model, model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                                            engine=engine).history
        _compare(runs["native"][0], runs["layers"][0], runs["native"][1], runs["layers"][1],
                 len(x))
        if frozen:
            for a, b in zip(runs["native"][0].get_weights(), before):
                np.testing.assert_array_equal(a, b)


def test_layers_without_bias_and_a_model_with_nothing_to_train(rng):
    bias_free_and_frozen_agree(rng)


def train_on_batch_twins(rng):
    """Two models, one stepped by train_on_batch (the CUDA engine, when it runs by default),
    one by the layer path's step, after the same five batches: (engine's, layers', x, y)."""
    config = CONFIGS[2]
    x, y = _data(rng, config[1], config[3], n=40)
    native, layers = _model(config), _model(config)
    for i in range(0, 40, 8):
        a = native.train_on_batch(x[i:i + 8], y[i:i + 8])
        b = layer_step(layers, x[i:i + 8], y[i:i + 8])
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert isinstance(native._batch_trainer.native, pynn.cuda_engine.CudaEngine)
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    return native, layers, x, y


def test_train_on_batch_runs_in_the_engine(rng):
    train_on_batch_twins(rng)


def test_summary_names_the_engine_and_fallbacks_are_visible(rng):
    config = CONFIGS[0]
    model = _model(config)
    lines = []
    model.summary(print_fn=lines.append)
    assert "Training engine: native (whole steps in C++ and CUDA)" in lines[0]
    x, y = _data(rng, config[1], config[3], n=30)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, sample_weight=np.ones(30))
    assert "sample or class weights" in model.engine_reason
    normalised = pynn.Sequential([pynn.Input((11,)), pynn.Dense(8, activation="relu"),
                                  pynn.layers.LayerNormalization(),
                                  pynn.Dense(5, activation="softmax")])
    normalised.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                       backend="cuda")
    normalised.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert "normalization" in normalised.engine_reason
    lines = []
    normalised.summary(print_fn=lines.append)
    assert "native engine not used: normalization" in lines[0]
    with pytest.raises(ValueError, match="cannot train this model"):
        normalised.fit(x, y, epochs=1, verbose=0, engine="native")


def test_labels_out_of_range_are_refused(rng):
    import cupy

    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=20)
    y[7] = 5  # five classes: 0..4
    model = _model(config)
    with pytest.raises((ValueError, IndexError), match="label"):
        model.fit(cupy.asarray(x), cupy.asarray(y), epochs=1, batch_size=4, verbose=0,
                  engine="native")


def test_a_label_out_of_range_in_the_engine_is_named_and_counted(rng):
    """fit checks labels on the host; the engine's own check (on the device) names them, its
    zeroed gradient keeps the weights finite, and the steps it took are counted."""
    import cupy

    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=20)
    model = _model(config)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, engine="native")
    engine = pynn.cuda_engine.CudaEngine(model, 4)
    y[7] = 5  # five classes: 0..4
    before = int(model.optimizer.iterations)
    with pytest.raises(IndexError, match="labels"):
        engine.train(cupy.asarray(x), cupy.asarray(y), np.arange(20, dtype=np.int64), 0, 5, 4)
    assert int(model.optimizer.iterations) == before + 5
    assert all(np.isfinite(w).all() for w in model.get_weights())
