"""The CUDA training engine's Python side (pynn/cuda_engine.py, the fit and train_on_batch
wiring) on a machine without a GPU: the `cuda` backend on fake_cupy's arrays, with
fake_cuda_module's DenseEngine (the binding's arguments, engine.cpp's steps in NumPy and
pynn._C's kernels) in place of the CUDA one. What it passes (weights, slots in order, rates,
step counts) and how it reads the logs back must give the layer path's training; the CUDA code
itself is tested on a GPU by test_cuda_engine.py."""

from __future__ import annotations

import sys
import types

import fake_cuda_module
import fake_cupy
import numpy as np
import pytest
from conftest import requires_backend
from test_cuda_engine import (CONFIGS, _data, _model, engine_and_layers_agree,
                              train_on_batch_twins)

import pynn
from pynn import cuda_engine

pytestmark = requires_backend("cpu")  # the fakes run pynn._C's kernels


@pytest.fixture
def cuda_backend(monkeypatch):
    import pynn._C

    from pynn.backend.cuda_backend import CudaBackend

    cupy = fake_cupy.make_fake_cupy()
    cupy.cuda.device = types.SimpleNamespace(get_cublas_handle=lambda: 1)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    module = fake_cuda_module.make_fake_cuda_module(pynn._C)
    module.DenseEngine = fake_cuda_module.make_fake_dense_engine(pynn._C)
    module.blas_unavailable_reason = lambda: ""
    backend = CudaBackend(module)
    monkeypatch.setattr(pynn.backend, "_instances", {**pynn.backend._instances, "cuda": backend})
    previous = pynn.get_backend()
    yield backend
    pynn.set_backend(previous)


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{c[1]}-{c[2]}" for c in CONFIGS])
@pytest.mark.parametrize("variant", ["plain", "frozen", "schedule"])
def test_engine_glue_matches_layer_path(cuda_backend, rng, config, variant):
    engine_and_layers_agree(rng, config, variant)


def test_the_engine_runs_when_asked_for_until_checked_on_a_gpu(cuda_backend, rng, monkeypatch):
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=40)
    model = _model(config)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert "fit(engine='native')" in model.engine_reason
    lines = []
    model.summary(print_fn=lines.append)
    assert "Training engine: layers" in lines[0]
    monkeypatch.setattr(cuda_engine, "BY_DEFAULT", True)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert model.engine_reason is None
    lines = []
    model.summary(print_fn=lines.append)
    assert "Training engine: native (whole steps in C++ and CUDA)" in lines[0]


def test_train_on_batch_and_weighted_batches(cuda_backend, rng, monkeypatch):
    monkeypatch.setattr(cuda_engine, "BY_DEFAULT", True)
    native, layers, x, y = train_on_batch_twins(rng)
    # a weighted batch goes through the layers (the engine takes unweighted ones), as it
    # does in fit, where engine='native' is refused
    w = rng.uniform(0.5, 2.0, size=8)
    a = native.train_on_batch(x[:8], y[:8], sample_weight=w)
    b = layers._train_step(*(layers.backend.asarray(v, np.float32) for v in (x[:8], y[:8], w)))[0]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    native.fit(x, y, epochs=1, batch_size=8, verbose=0, sample_weight=np.ones(40))
    assert "sample or class weights" in native.engine_reason
    with pytest.raises(ValueError, match="sample or class weights"):
        native.fit(x, y, epochs=1, verbose=0, sample_weight=np.ones(40), engine="native")


def test_what_the_engine_does_not_run_is_named(cuda_backend, rng):
    x, y = _data(rng, "sparse_categorical_crossentropy", 5, n=30)
    cases = {
        "dropout": [pynn.Dense(8, activation="relu"), pynn.Dropout(0.5),
                    pynn.Dense(5, activation="softmax")],
        "regularizer": [pynn.Dense(8, kernel_regularizer=pynn.regularizers.L2(0.1)),
                        pynn.Dense(5, activation="softmax")],
    }
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
                                                                       monkeypatch):
    """A generator's weighted batch: engine='native' says why it cannot train it; 'auto'
    trains that batch layer by layer (a chunk the engine cannot run is not dropped)."""
    config = CONFIGS[0]
    x, y = _data(rng, config[1], config[3], n=24)
    w = rng.uniform(0.5, 2.0, size=24)

    def batches():
        for i in range(0, 24, 8):
            yield x[i:i + 8], y[i:i + 8], w[i:i + 8]

    model = _model(config)
    with pytest.raises(ValueError, match="sample or class weights"):
        model.fit(batches(), epochs=1, verbose=0, engine="native")
    monkeypatch.setattr(cuda_engine, "BY_DEFAULT", True)
    weighted, layers = _model(config), _model(config)
    h = weighted.fit(batches(), epochs=1, verbose=0).history
    h_layers = layers.fit(batches(), epochs=1, verbose=0, engine="layers").history
    np.testing.assert_allclose(h["loss"], h_layers["loss"], rtol=1e-5)


def test_clipping_set_mid_fit_leaves_the_engine(cuda_backend, rng, monkeypatch):
    """The engine has no clipping: a callback turning it on mid-fit sends the rest of the fit
    through the layers (it trained on unclipped before), as the layer path throughout."""
    monkeypatch.setattr(cuda_engine, "BY_DEFAULT", True)
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


def test_weighted_batches_and_ignore_class_are_named(cuda_backend, rng, monkeypatch):
    monkeypatch.setattr(cuda_engine, "BY_DEFAULT", True)
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
