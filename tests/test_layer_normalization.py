"""LayerNormalization and RMSNormalization against a float64 reference, finite differences,
Keras 3 and PyTorch, on both host backends, in files and in ONNX."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AVAILABLE, import_keras, onnx_outputs
from gradcheck import assert_close_grad, numeric_grad

import pynn
from pynn.layers import LayerNormalization, RMSNormalization

BACKENDS = [b for b in ("cpu", "numpy", "cuda", "cupy") if b in AVAILABLE]


def reference(x, centred, epsilon, gain=None, shift=None):
    x = x.astype(np.float64)
    d = x - x.mean(axis=-1, keepdims=True) if centred else x
    y = d / np.sqrt((d * d).mean(axis=-1, keepdims=True) + epsilon)
    return (y if gain is None else y * gain) + (0 if shift is None else shift)


@pytest.mark.parametrize("shape", [(1, 3), (3, 17), (5, 129), (4, 2, 7), (2, 1)])
@pytest.mark.parametrize("kind", ["layer", "layer_no_center", "rms"])
def test_forward_against_float64(rng, shape, kind):
    layer = {"layer": LayerNormalization(), "layer_no_center": LayerNormalization(center=False),
             "rms": RMSNormalization()}[kind]
    x = (rng.normal(size=shape) * 3 + rng.normal(size=shape[-1]) * 100).astype(np.float32)
    model = pynn.Sequential([pynn.Input(shape[1:]), layer])
    gain = rng.uniform(0.5, 2, shape[-1]).astype(np.float32)
    shift = rng.normal(size=shape[-1]).astype(np.float32)
    weights = [gain] if kind != "layer" else [gain, shift]
    layer.set_weights(weights)
    want = reference(x, kind != "rms", layer.epsilon, gain, shift if kind == "layer" else None)
    np.testing.assert_allclose(model.predict(x), want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("layer", [LayerNormalization(epsilon=0.01),
                                   LayerNormalization(scale=False), RMSNormalization(),
                                   RMSNormalization(epsilon=0.1)], ids=repr)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4)])
def test_gradients(float64_numpy, rng, layer, shape):
    layer.build(shape[1:], float64_numpy, "float64")
    for p in layer.params:
        p.value[...] = rng.normal(size=p.shape)
    x, r = rng.normal(size=shape), rng.normal(size=shape)

    def f():
        return float((layer.forward(x) * r).sum())

    layer.forward(x, training=True)
    dx = layer.backward(r)
    for p in layer.params:
        assert_close_grad(p.grad, numeric_grad(f, p.value), what=f"d {p.name}")
    assert_close_grad(dx, numeric_grad(f, x), what="d x")


def test_pytorch_agrees_with_values_and_gradients(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(6, 9)).astype(np.float32) * 4
    dy = rng.normal(size=(6, 9)).astype(np.float32)
    for layer, fn in ((LayerNormalization(epsilon=1e-3), lambda t, w, b: torch.nn.functional
                       .layer_norm(t, (9,), w, b, 1e-3)),
                      (RMSNormalization(), lambda t, w, b: torch.nn.functional
                       .rms_norm(t, (9,), w, 1e-6))):
        layer(x)  # built with the default backend
        gain = rng.uniform(0.5, 2, 9).astype(np.float32)
        layer.set_weights([gain] + ([np.zeros(9, np.float32)] if len(layer.params) == 2
                                    else []))
        t, w = torch.tensor(x, requires_grad=True), torch.tensor(gain, requires_grad=True)
        out = fn(t, w, torch.zeros(9))
        (out * torch.tensor(dy)).sum().backward()
        y = layer.forward(layer.backend.asarray(x, "float32"), training=True)
        dx = layer.backward(layer.backend.asarray(dy, "float32"))
        np.testing.assert_allclose(layer.backend.to_numpy(y), out.detach().numpy(),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer.backend.to_numpy(dx), t.grad.numpy(), rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(layer.backend.to_numpy(layer.params[0].grad),
                                   w.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_kerass_layers_agree(rng):
    keras = import_keras()
    x = (rng.normal(size=(8, 6)) * 5 + 20).astype(np.float32)
    for ours, theirs in ((LayerNormalization(), keras.layers.LayerNormalization()),
                         (RMSNormalization(), keras.layers.RMSNormalization())):
        got = pynn.Sequential([pynn.Input((6,)), ours]).predict(x)
        np.testing.assert_allclose(got, keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5,
                                   atol=1e-5)


def _normed(regularizer=None):
    return pynn.Sequential([pynn.Input((6,)), LayerNormalization(gamma_regularizer=regularizer),
                            pynn.Dense(8, activation="relu"), RMSNormalization(),
                            pynn.Dense(3, activation="softmax")])


def test_training_on_both_backends_and_files(rng, tmp_path):
    x = (rng.normal(size=(64, 6)) * [1, 10, 0.1, 3, 1, 1] + [0, 50, -2, 7, 0, 1]
         ).astype(np.float32)
    y = rng.integers(0, 3, 64)
    results = {}
    for backend in BACKENDS:
        pynn.set_seed(3)
        model = _normed("l2")
        model.compile("adam", "sparse_categorical_crossentropy", backend=backend)
        results[backend] = model.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]
        if backend == "cpu":  # a penalty on gamma: trained layer by layer, saying why
            assert "a regularizer on LayerNormalization layer" in model.engine_reason
    if len(results) == 2:
        np.testing.assert_allclose(results["cpu"], results["numpy"], rtol=1e-5)
    plain = _normed()  # the same weights without the penalty
    plain.compile("adam", "sparse_categorical_crossentropy", backend=BACKENDS[0])
    plain.set_weights(model.get_weights())
    gamma = model.layers[1].gamma.numpy().astype(np.float64)
    assert model.evaluate(x, y) == pytest.approx(plain.evaluate(x, y) + 0.01 * (gamma ** 2).sum(),
                                                 rel=1e-5)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6, atol=1e-7)
    assert loaded.layers[1].gamma_regularizer is not None
    assert loaded.layers[3].get_config()["epsilon"] == 1e-6


def test_a_penalty_set_after_build_counts_at_once(rng):
    """gamma_regularizer set on a built layer was ignored until the model was saved and
    loaded (read once, at build)."""
    x, y = rng.normal(size=(16, 6)).astype(np.float32), rng.integers(0, 3, 16)
    model = _normed()
    model.compile("sgd", "sparse_categorical_crossentropy")
    layer = model.layers[1]
    layer.gamma.assign(rng.normal(size=6))
    before = model.evaluate(x, y)
    layer.gamma_regularizer = pynn.regularizers.L2(0.5)
    gamma = layer.gamma.numpy().astype(np.float64)
    assert model.evaluate(x, y) == pytest.approx(before + 0.5 * (gamma ** 2).sum(), rel=1e-6)


@pytest.mark.parametrize("floatx", ["float32", "float64"])
def test_onnx(rng, floatx):
    previous = pynn.floatx()
    pynn.set_floatx(floatx)
    try:
        model = pynn.Sequential([pynn.Input((3, 6)), LayerNormalization(),
                                 pynn.Dense(4), RMSNormalization(), LayerNormalization(
                                     center=False)])
        for p in model.params:
            p.value[...] = rng.normal(size=p.shape)
        x = (rng.normal(size=(5, 3, 6)) * 4 + 9).astype(floatx)
        np.testing.assert_allclose(onnx_outputs(model, x), model.predict(x),
                                   rtol=1e-5 if floatx == "float32" else 1e-12, atol=1e-5)
    finally:
        pynn.set_floatx(previous)


def test_misuse_is_named():
    with pytest.raises(ValueError, match="axis=0 is not supported"):
        LayerNormalization(axis=0)
    with pytest.raises(ValueError, match="axis=1 is not the last axis of inputs of shape "
                                         "\\(batch, 2, 3\\)"):
        pynn.Sequential([pynn.Input((2, 3)), RMSNormalization(axis=1)])
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
        RMSNormalization(epsilon=0)
    with pytest.raises(ValueError, match="rms_scaling=True is deprecated.*RMSNormalization"):
        LayerNormalization(rms_scaling=True)


# The native engine runs them where it runs BatchNormalization: on the inputs, between a
# Dense and its activation, after the activation (before a dropout). Smooth activations, as
# test_batchnorm's engine models use (ReLU's kink makes two engines' rounding diverge).
ENGINE_MODELS = {
    "inputs": lambda: [LayerNormalization(), pynn.Dense(12, activation="elu"),
                       RMSNormalization(), pynn.Dense(3, activation="softmax")],
    "pre": lambda: [pynn.Dense(12, use_bias=False), LayerNormalization(),
                    pynn.Activation("elu"), pynn.Dense(7, activation="tanh"),
                    pynn.Dense(3, activation="softmax")],
    "post-dropout": lambda: [pynn.Dense(12, activation="gelu"), LayerNormalization(center=False),
                             pynn.Dropout(0.3), pynn.Dense(3, activation="softmax")],
    "rms-pre": lambda: [pynn.Dense(12), RMSNormalization(epsilon=1e-3),
                        pynn.Activation("sigmoid"), pynn.Dense(3, activation="softmax")],
    "frozen-clipped": lambda: [LayerNormalization(trainable=False),
                               pynn.Dense(12, activation="tanh"),
                               LayerNormalization(scale=False, center=False),
                               pynn.Dense(3, activation="softmax")],
}


@pytest.mark.parametrize("kind", sorted(ENGINE_MODELS))
def test_the_native_engine_trains_them_as_the_layer_path(rng, kind):
    pytest.importorskip("pynn._C")
    from conftest import assert_trained_alike

    x = (rng.normal(size=(300, 6)) * [1, 10, 0.1, 3, 1, 1] + [0, 50, -2, 7, 0, 1]
         ).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 3] > 7)
    gain_shift = [rng.uniform(0.5, 2, 6).astype(np.float32), rng.normal(size=6).astype(np.float32)]
    models, histories = {}, {}
    for engine in ("native", "layers"):
        pynn.set_seed(5)
        model = pynn.Sequential([pynn.Input((6,))] + ENGINE_MODELS[kind]())
        if kind == "frozen-clipped":  # a gain and shift that are not the identity
            model.layers[1].set_weights(gain_shift)
        opt = pynn.optimizers.Adam(0.01, global_clipnorm=0.5 if kind == "frozen-clipped"
                                   else None)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], backend="cpu")
        before = model.get_weights()
        histories[engine] = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2,
                                      verbose=0, engine=engine).history
        models[engine] = model
        if engine == "native":
            assert model.engine_reason is None  # it ran in the engine
        if kind == "frozen-clipped":  # the frozen gain and shift did not move
            for a, b in zip(model.layers[1].get_weights(), before[:2]):
                np.testing.assert_array_equal(a, b)
    assert_trained_alike(models["native"], models["layers"], histories["native"],
                         histories["layers"], 240, 60)
    native, layers = models["native"], models["layers"]
    np.testing.assert_allclose(native.predict(x), layers.predict(x), rtol=1e-4, atol=1e-6)
    for i in (0, 7):  # a row alone takes the batched path through the normalisation
        np.testing.assert_allclose(native.predict(x[i:i + 1]), native.predict(x)[i:i + 1],
                                   rtol=1e-5, atol=1e-7)


def test_the_engine_refuses_what_it_cannot_run_saying_why():
    pytest.importorskip("pynn._C")
    for layers, words in [
            ([pynn.Dense(3), LayerNormalization()], "normalization in the output layer"),
            ([pynn.Dense(3), LayerNormalization(), RMSNormalization(), pynn.Dense(2)],
             "after another normalization"),
            ([LayerNormalization(beta_regularizer="l2"), pynn.Dense(2)],
             "a regularizer on LayerNormalization")]:
        model = pynn.Sequential([pynn.Input((4,))] + layers)
        model.compile(optimizer="adam", loss="mse", backend="cpu")
        reason = pynn.engine.unsupported_reason(model)
        assert reason is not None and words in reason, reason


def test_a_changed_epsilon_reaches_the_engine(rng):
    pytest.importorskip("pynn._C")
    model = pynn.Sequential([pynn.Input((5,)), LayerNormalization(), pynn.Dense(2)])
    model.compile("adam", "mse", backend="cpu")
    x = rng.normal(size=(8, 5)).astype(np.float32) * 0.01  # epsilon dominates the variance
    before = model.predict(x)
    model.layers[1].epsilon = 1.0
    after = model.predict(x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, model(x), rtol=1e-5, atol=1e-6)  # the layer path's


def test_the_binding_checks_a_row_normalisation():
    _C = pytest.importorskip("pynn._C")
    eng = _C.DenseEngine([4, 3, 2], [0, 0], [0.0, 0.0], [True, True], "mse", 0.0, "sgd", 8)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="per_row .* keeps no moving statistics"):
        eng.set_batchnorm(0, True, 0.0, 1e-3, False, ones, None, zeros, ones.copy(), [], [],
                          per_row=True)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        eng.set_batchnorm(0, True, 0.0, 0.0, False, ones, None, None, None, [], [],
                          per_row=True)
    with pytest.raises(ValueError, match="per_row needs epsilon > 0 and no std_floor"):
        eng.set_batchnorm(0, True, 0.0, 1e-3, False, ones, None, None, None, [], [], 1e-7,
                          per_row=True)
    with pytest.raises(ValueError, match="batch normalization is centred"):
        eng.set_batchnorm(0, True, 0.99, 1e-3, False, ones, None, zeros, ones.copy(), [], [],
                          centred=False)
    eng.set_batchnorm(0, True, 0.0, 1e-3, False, ones, None, None, None, [], [], per_row=True)


def test_rms_of_inputs_beyond_float32_squares(rng):
    # The layer path squared float32 values (inf past |x| ~ 1.8e19, outputs 0); the engine
    # squares in double: both give the float64 reference.
    x = (rng.normal(size=(3, 4)) * 3e19).astype(np.float32)
    want = reference(x, False, 1e-6)
    for backend in sorted({"numpy", "cpu"} & AVAILABLE):
        model = pynn.Sequential([pynn.Input((4,)), RMSNormalization()])
        model.compile("sgd", "mse", backend=backend)
        np.testing.assert_allclose(model(x), want, rtol=1e-5)  # the layer path
        np.testing.assert_allclose(model.predict(x), want, rtol=1e-5)


def test_positional_arguments_follow_keras():
    # Keras' fifth is beta_initializer; pynn's was rms_scaling (a misleading flag error)
    layer = pynn.layers.LayerNormalization(-1, 1e-3, True, True, "ones")
    layer.build((4,), pynn.get_backend(), "float32")
    np.testing.assert_array_equal(layer.beta.numpy(), np.ones(4, np.float32))
