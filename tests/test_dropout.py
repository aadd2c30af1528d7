"""Dropout: inverted scaling, off at inference, seeded, exact gradient, counter-based masks
identical on every backend, in a model (native engine and layer path)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import pynn
from conftest import requires_backend


def _layer(rate, backend="numpy"):
    layer = pynn.Dropout(rate)
    layer.build((1000,), pynn.get_backend(backend), "float32")
    return layer


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_scales_and_zeroes(rate):
    pynn.set_seed(0)
    x = np.ones((200, 1000), np.float32)
    y = _layer(rate).forward(x, training=True)
    kept = y != 0
    assert abs(kept.mean() - (1 - rate)) < 0.01
    np.testing.assert_allclose(y[kept], 1 / (1 - rate), rtol=1e-6)
    assert abs(y.mean() - 1) < 0.03  # expectation preserved


def test_identity_at_inference_and_in_predict():
    x = np.random.default_rng(0).normal(size=(5, 1000)).astype(np.float32)
    assert _layer(0.5).forward(x, training=False) is x
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(8), pynn.Dropout(0.5), pynn.Dense(2)])
    xs = x[:, :4]
    np.testing.assert_allclose(model.predict(xs), model.predict(xs))
    np.testing.assert_allclose(model.predict(xs), model._forward(xs, training=False,
                                                                 logits=False), rtol=1e-5)


def test_gradient_uses_the_same_mask(rng):
    layer = _layer(0.3)
    x = rng.normal(size=(4, 1000)).astype(np.float32)
    y = layer.forward(x, training=True)
    mask = y / np.where(x == 0, 1, x)
    dy = rng.normal(size=y.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(dy), dy * mask, rtol=1e-6)


def test_seeded_masks_reproduce():
    x = np.ones((3, 1000), np.float32)
    pynn.set_seed(7)
    a = _layer(0.5).forward(x, training=True)
    pynn.set_seed(7)
    b = _layer(0.5).forward(x, training=True)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rate", [-0.1, 1.0, "half", True])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        pynn.Dropout(rate)


@pytest.mark.parametrize("rate", [-0.1, 1.0, "0.5", None])
def test_a_rate_set_later_is_checked_as_the_constructors(rate):
    """dropout.rate = "0.5" failed in the next training pass with a raw TypeError of the
    binding's arguments."""
    layer = pynn.Dropout(0.1, seed=1)
    with pytest.raises(ValueError, match=r"Dropout: rate must be in \[0, 1\), got "):
        layer.rate = rate
    assert layer.rate == 0.1
    layer.rate = np.float32(0.5)
    assert type(layer.rate) is float and layer.rate == 0.5
    assert (layer(np.ones((4, 50), np.float32), training=True) == 0).any()


def test_model_with_dropout_trains_natively_and_keeps_its_seed():
    pynn.set_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(32, activation="relu"),
                             pynn.Dropout(0.2, seed=5), pynn.Dense(2, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h = model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    assert h.history["accuracy"][-1] > 0.9
    assert model.evaluate(x, y)[1] > 0.9
    if CPU:
        assert pynn.engine.unsupported_reason(model) is None
    assert model.layers[2].step == model.optimizer.iterations == 20 * 8
    clone = pynn.Sequential.from_config(model.get_config())
    assert (clone.layers[2].rate, clone.layers[2].seed) == (0.2, 5)


CPU = pynn.available_backends()["cpu"] is None
SHAPES = [(1, 1), (3, 17), (17, 129), (129, 10), (257, 33)]


def _isas():
    if not CPU:
        return []
    from pynn import _C
    return [isa for isa in ("generic", "avx2", "avx512") if _C.cpu_supports_isa(isa)]


@pytest.fixture
def isa(request):
    from pynn import _C
    previous = _C.gemm_isa()
    _C.set_gemm_isa(request.param)
    yield request.param
    _C.set_gemm_isa(previous)


@pytest.mark.skipif(not CPU, reason="pynn._C not built")
@pytest.mark.parametrize("isa", _isas(), indirect=True)
@pytest.mark.parametrize("shape", SHAPES + [(5, 70001)])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.77, 1 - 2**-40])
def test_every_backend_draws_the_same_mask(rng, isa, shape, rate):
    # The C++ kernel (portable and AVX2 loops, threaded above 64K elements) against the
    # vectorised numpy reference, bit for bit; rate 1 - 2^-40 keeps nothing.
    seed, step = int(rng.integers(0, 2**64, dtype=np.uint64)), int(rng.integers(0, 10**6))
    ref = pynn.get_backend("numpy").dropout_mask(shape, rate, np.dtype(np.float32), seed, step)
    cpu = pynn.get_backend("cpu").dropout_mask(shape, rate, np.dtype(np.float32), seed, step)
    np.testing.assert_array_equal(cpu, ref)
    ref64 = pynn.get_backend("numpy").dropout_mask(shape, rate, np.dtype(np.float64), seed,
                                                   step)
    np.testing.assert_array_equal(ref64 != 0, ref != 0)
    np.testing.assert_allclose(ref64[ref64 != 0], 1 / (1 - rate), rtol=1e-15)


def test_masks_depend_on_seed_and_step_only():
    numpy = pynn.get_backend("numpy")
    f32 = np.dtype(np.float32)
    a = numpy.dropout_mask((64, 64), 0.5, f32, 1, 0)
    np.testing.assert_array_equal(a, numpy.dropout_mask((64, 64), 0.5, f32, 1, 0))
    for other in (numpy.dropout_mask((64, 64), 0.5, f32, 2, 0),
                  numpy.dropout_mask((64, 64), 0.5, f32, 1, 1)):
        # independent masks agree on about half the elements
        assert 0.4 < np.mean((a != 0) == (other != 0)) < 0.6
    # neighbouring elements and steps are not correlated
    big = numpy.dropout_mask((400, 1000), 0.3, f32, 9, 3) != 0
    assert abs(big.mean() - 0.7) < 0.005
    assert abs(np.corrcoef(big[:, :-1].ravel(), big[:, 1:].ravel())[0, 1]) < 0.01


@pytest.mark.skipif(not CPU, reason="pynn._C not built")
def test_native_dropout_kernel_applies_and_checks(rng):
    from pynn import _C
    x = rng.normal(size=(7, 13)).astype(np.float32)
    mask = pynn.get_backend("numpy").dropout_mask(x.shape, 0.25, x.dtype, 3, 4)
    out = np.empty_like(x)
    _C.dropout_apply(x, out, 0.25, 3, 4)
    np.testing.assert_array_equal(out, x * mask)
    _C.dropout_apply(x, x, 0.25, 3, 4)  # in place
    np.testing.assert_array_equal(x, out)
    with pytest.raises(ValueError, match="rate"):
        _C.dropout_apply(None, out, 1.0, 3, 4)
    with pytest.raises(ValueError, match="shape"):
        _C.dropout_apply(x, np.empty((7, 12), np.float32), 0.25, 3, 4)
    with pytest.raises(TypeError, match="float32"):
        _C.dropout_apply(None, np.empty(3), 0.25, 3, 4)


@pytest.mark.parametrize("layers,words", [
    (lambda: [pynn.Dropout(0.5), pynn.BatchNormalization(), pynn.Dense(3)], "after the inputs'"),
    (lambda: [pynn.Dropout(0.5), pynn.Dropout(0.2), pynn.Dense(3)], "in a row"),
    (lambda: [pynn.Dense(3), pynn.Dropout(0.5)], "after the output"),
    # rate 0 too: the layer path does not fuse the loss with the output activation then
    (lambda: [pynn.Dense(3, activation="sigmoid"), pynn.Dropout(0.0)], "after the output"),
    (lambda: [pynn.Dense(3), pynn.Dropout(0.5), pynn.Dropout(0.2), pynn.Dense(2)], "in a row"),
    (lambda: [pynn.Dense(3), pynn.Dropout(0.5), pynn.Activation("relu"), pynn.Dense(2)],
     "Activation"),
])
def test_dropout_placements_the_engine_does_not_take_fall_back_visibly(layers, words):
    model = pynn.Sequential([pynn.Input((4,))] + layers())
    model.compile(optimizer="adam", loss="mse", backend="cpu" if CPU else "numpy")
    reason = pynn.engine.unsupported_reason(model)
    # (without pynn._C every model falls back, the reason being that it is missing)
    assert reason is not None and (words in reason or not CPU)
    model.fit(np.ones((8, 4)), np.ones((8, model.output_shape[0])), verbose=0)  # still trains


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "x", True])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        pynn.Dropout(0.5, seed=seed)


def test_calling_the_model_in_training_mode():
    """model(x, training=True), as Keras: dropout active (zeros and 1/(1-rate) scaling),
    while model(x) and model(x, training=False) are predict."""
    model = pynn.Sequential([pynn.Input((50,)), pynn.Dropout(0.5)])
    x = np.ones((40, 50), np.float32)
    np.testing.assert_array_equal(model(x), x)
    np.testing.assert_array_equal(model(x, training=False), x)
    out = model(x, training=True)
    assert set(np.unique(out)) == {0.0, 2.0}
    assert 0.3 < (out == 0).mean() < 0.7


def test_calling_a_layer_in_training_mode():
    # Keras' layer(x, training=True) (MC dropout on a single layer) was a TypeError.
    layer = pynn.Dropout(0.5, seed=3)
    x = np.ones((40, 50), np.float32)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)
    out = layer(x, training=True)
    assert set(np.unique(out)) == {0.0, 2.0}
    assert not np.array_equal(out, layer(x, training=True))  # a fresh mask each call
    assert layer._cache is None  # nothing kept for a backward that never comes
    dense = pynn.Dense(3)
    dense(x)
    dense.forward(dense.backend.asarray(x, np.float32), training=True)
    pending = dense._cache
    dense(x)  # inference between a training forward and its backward leaves it alone
    assert dense._cache is pending


@pytest.mark.parametrize("backend", ["numpy", pytest.param("cpu", marks=requires_backend("cpu"))])
def test_dropout_after_a_softmax_output_keeps_training_finite(rng, backend):
    # A dropped-out probability row sums to 0: the loss took 0/0 and every weight became NaN.
    x = rng.normal(size=(150, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8, activation="relu"),
                             pynn.Dense(2, activation="softmax"), pynn.Dropout(0.5, seed=2)])
    model.compile("adam", "sparse_categorical_crossentropy", backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        h = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.all(np.isfinite(h.history["loss"]))
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_a_zero_probability_row_counts_as_clipped_with_no_gradient():
    from pynn import losses
    p = np.array([[0.0, 0.0], [0.25, 0.75]])
    loss = losses.CategoricalCrossentropy()
    total, grad = loss._sum_and_grad(pynn.get_backend("numpy"), p, np.array([[1.0, 0.0]] * 2), 1.0)
    assert total == pytest.approx(-np.log(1e-7) - np.log(0.25))
    np.testing.assert_array_equal(grad[0], 0.0)
    assert np.all(np.isfinite(grad))
