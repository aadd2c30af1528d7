"""Keras' GaussianNoise, GaussianDropout and AlphaDropout: the noise's statistics, the identity at
inference, gradients, seeded and resumable draws, both engines' handling, files, ONNX and
bad arguments."""

from __future__ import annotations

import re
import sys

import fake_cupy
import numpy as np
import pytest
from conftest import AVAILABLE, NATIVE, import_keras, onnx_outputs
from gradcheck import assert_close_grad, numeric_grad

import pynn
from pynn.layers import AlphaDropout, GaussianDropout, GaussianNoise


def _built(layer, features, backend="numpy", dtype=np.float32):
    layer.build((features,), pynn.get_backend(backend), dtype)
    return layer


@pytest.mark.parametrize("backend", sorted(AVAILABLE & {"numpy", "cpu", "cuda", "cupy"}))
def test_the_noise_has_kerass_statistics(rng, backend):
    x = rng.normal(size=(400, 500)).astype(np.float32)
    b = pynn.get_backend(backend)
    noise = _built(GaussianNoise(0.3, seed=1), 500, backend)
    added = b.to_numpy(noise.forward(b.asarray(x, np.float32), training=True)) - x
    assert abs(added.mean()) < 0.003 and abs(added.std() - 0.3) < 0.003
    drop = _built(GaussianDropout(0.2, seed=2), 500, backend)
    factor = b.to_numpy(drop.forward(b.asarray(x, np.float32), training=True)) / x
    assert abs(factor.mean() - 1) < 0.003 and abs(factor.std() - 0.5) < 0.003  # sqrt(.2/.8)
    for layer in (noise, drop):  # inference, and a zero rate: the identity
        np.testing.assert_array_equal(b.to_numpy(layer.forward(b.asarray(x, np.float32))), x)
    quiet = _built(GaussianNoise(0.0), 500, backend)
    np.testing.assert_array_equal(
        b.to_numpy(quiet.forward(b.asarray(x, np.float32), training=True)), x)


@pytest.mark.parametrize("backend", sorted(AVAILABLE & {"numpy", "cpu", "cuda", "cupy"}))
@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_alpha_dropout_keeps_selus_mean_and_variance(rng, backend, rate):
    # Keras' constants, written out independently of pynn's
    saturation = -1.6732632423543772 * 1.0507009873554805
    a = ((1 - rate) * (1 + rate * saturation ** 2)) ** -0.5
    b = -a * saturation * rate
    x = rng.normal(size=(400, 500)).astype(np.float32)
    be = pynn.get_backend(backend)
    layer = _built(AlphaDropout(rate, seed=int(rng.integers(2**32))), 500, backend)
    y = be.to_numpy(layer.forward(be.asarray(x, np.float32), training=True))
    dropped = np.isclose(y, a * saturation + b, rtol=0, atol=1e-6)
    assert abs(dropped.mean() - rate) < 0.005
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] + b, rtol=1e-5, atol=1e-6)
    # SELU's fixed point kept (a bound 6 standard errors wide: 2e5 draws)
    assert abs(y.mean()) < 0.015 and abs(y.std() - 1) < 0.015
    np.testing.assert_array_equal(be.to_numpy(layer.forward(be.asarray(x, np.float32))), x)
    np.testing.assert_array_equal(_built(AlphaDropout(0.0), 500, backend).forward(x, True), x)


@pytest.mark.parametrize("kind", [GaussianDropout, AlphaDropout])
def test_draws_follow_seed_and_step_on_every_backend(rng, monkeypatch, kind):
    from pynn.backend.cupy_backend import CupyBackend

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.make_fake_cupy())
    x = rng.normal(size=(3, 7)).astype(np.float32)
    outs = []
    for backend in [pynn.get_backend("numpy"), CupyBackend()] + \
            ([pynn.get_backend("cpu")] if "cpu" in AVAILABLE else []):
        layer = kind(0.4, seed=9)
        layer.build((7,), backend, np.float32)
        layer.step = 5
        outs.append(backend.to_numpy(layer.forward(backend.asarray(x, np.float32), True)))
        assert layer.step == 6
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    again = _built(kind(0.4, seed=9), 7)
    again.step = 6  # the next step draws other noise
    assert not np.array_equal(again.forward(x, training=True), outs[0])


@pytest.mark.parametrize("make", [lambda: GaussianNoise(0.5, seed=3),
                                  lambda: GaussianDropout(0.3, seed=4),
                                  lambda: AlphaDropout(0.3, seed=5)])
def test_gradient_matches_finite_differences(float64_numpy, rng, make):
    x = rng.normal(size=(4, 6))
    w = rng.normal(size=(4, 6))
    layer = make()
    layer.build((6,), float64_numpy, np.float64)

    def f():  # the same draw each time: the step is put back
        layer.step = 0
        return float((layer.forward(x, training=True) * w).sum())

    f()
    grad = layer.backward(w)
    assert_close_grad(grad, numeric_grad(f, x), what=type(layer).__name__)


def _model(make, seed=0):
    pynn.set_seed(seed)  # (before the layer draws its seed)
    model = pynn.Sequential([pynn.Input((5,)), make(), pynn.layers.Dense(8, activation="relu"),
                             pynn.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("make", [lambda: GaussianNoise(0.2), lambda: GaussianDropout(0.3),
                                  lambda: AlphaDropout(0.2)])
def test_training_is_seeded_resumable_and_predict_is_native(tmp_path, rng, make):
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    first = _model(make)  # (each fit draws its shuffle seed from pynn's generator)
    h1 = first.fit(x, y, epochs=2, batch_size=16, verbose=0)
    second = _model(make)
    h2 = second.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert h1.history == h2.history  # pynn.set_seed draws the layers' seeds
    if NATIVE:  # (without pynn._C the reason is that it is missing)
        assert type(first.layers[1]).__name__ in first.engine_reason
    first.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    assert loaded.layers[1].get_config() == first.layers[1].get_config()
    pynn.set_seed(7)
    a = first.fit(x, y, epochs=1, batch_size=16, verbose=0).history
    pynn.set_seed(7)
    b = loaded.fit(x, y, epochs=1, batch_size=16, verbose=0).history
    assert a == b  # the noise continues from the saved step count
    if "cpu" in AVAILABLE:
        assert pynn.engine.unsupported_reason(first, for_training=False) is None
    np.testing.assert_allclose(first.predict(x), first._forward(x, training=False, logits=False),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: GaussianDropout(0.5), lambda: AlphaDropout(0.5)])
def test_exported_to_onnx_as_the_identity(rng, make):
    model = _model(make)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    np.testing.assert_allclose(onnx_outputs(model, x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_kerass_names_and_configs():
    keras = import_keras()
    for ours, theirs in ((GaussianNoise(0.1, seed=1), keras.layers.GaussianNoise(0.1, seed=1)),
                         (GaussianDropout(0.2, seed=1),
                          keras.layers.GaussianDropout(0.2, seed=1)),
                         (AlphaDropout(0.2, seed=1), keras.layers.AlphaDropout(0.2, seed=1))):
        assert re.sub(r"_\d+$", "", ours.name) == re.sub(r"_\d+$", "", theirs.name)
        for key in ("stddev", "rate", "seed"):
            if key in theirs.get_config():
                assert ours.get_config()[key] == theirs.get_config()[key], key


@pytest.mark.parametrize("call,words", [
    (lambda: GaussianNoise(1.5), r"stddev must be in \[0, 1\]"),
    (lambda: GaussianNoise(-0.1), r"stddev must be in \[0, 1\]"),
    (lambda: GaussianDropout(1.0), r"rate must be in \[0, 1\)"),
    (lambda: GaussianDropout("half"), "rate must be in"),
    (lambda: GaussianNoise(0.1, seed=-1), "seed must be an integer"),
    (lambda: AlphaDropout(1.0), r"rate must be in \[0, 1\)"),
    (lambda: AlphaDropout(None), "rate must be in"),
])
def test_bad_arguments(call, words):
    with pytest.raises(ValueError, match=words):
        call()
    layer = _built(AlphaDropout(0.1), 3)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        layer.rate = 1.5  # set after construction: refused as the constructor refuses it
    with pytest.raises(NotImplementedError, match="noise_shape"):
        AlphaDropout(0.1, noise_shape=(None, 1))


@pytest.mark.parametrize("make,name,bad,words", [
    (lambda: GaussianNoise(0.1, seed=1), "stddev", -5.0, r"stddev must be in \[0, 1\]"),
    (lambda: GaussianNoise(0.1, seed=1), "stddev", "0.5", r"stddev must be in \[0, 1\]"),
    (lambda: GaussianDropout(0.1, seed=1), "rate", 1.0, r"rate must be in \[0, 1\)"),
    (lambda: AlphaDropout(0.1, seed=1), "rate", float("nan"), r"rate must be in \[0, 1\)"),
])
def test_settings_changed_after_construction_are_checked(make, name, bad, words):
    """GaussianDropout.rate = 1.0 divided by zero in the next training pass, and
    GaussianNoise.stddev = -5 silently gave no noise: checked as the constructor checks."""
    layer = make()
    with pytest.raises(ValueError, match=words):
        setattr(layer, name, bad)
    assert getattr(layer, name) == 0.1
    setattr(layer, name, np.float32(0.5))  # a valid one is taken, as a float
    assert type(getattr(layer, name)) is float and getattr(layer, name) == 0.5
    x = np.ones((4, 3), np.float32)
    assert not np.array_equal(layer(x, training=True), x)
