"""Keras' functional form (pynn.Model(inputs, outputs)) for chains of layers: the Sequential
of the same layer objects, built at each call as Keras builds them, with what cannot be a
chain refused by name."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import pynn
from conftest import NATIVE, import_keras


def _mlp_tensors(features=20):
    inputs = pynn.Input((features,))
    x = pynn.Dense(16, activation="relu")(inputs)
    x = pynn.Dropout(0.25)(x)
    outputs = pynn.Dense(3, activation="softmax")(x)
    return inputs, x, outputs


def test_a_chain_is_the_sequential_of_its_layers(rng):
    inputs, hidden, outputs = _mlp_tensors()
    assert hidden.shape == (None, 16) and outputs.shape == (None, 3)
    assert outputs.ndim == 2 and outputs.dtype == pynn.floatx()
    model = pynn.Model(inputs=inputs, outputs=outputs, name="mlp")
    assert type(model) is pynn.Sequential and model.name == "mlp"
    assert model.layers[0] is inputs
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Dense", "Dropout",
                                                        "Dense"]
    assert model.layers[3] is outputs.layer and model.built  # built at each call (Keras)
    assert model.count_params() == 20 * 16 + 16 + 16 * 3 + 3
    x = rng.normal(size=(7, 20)).astype(np.float32)
    by_layer = x
    for layer in model.layers[1:]:
        by_layer = layer(by_layer)
    np.testing.assert_allclose(model.predict(x, verbose=0), by_layer, rtol=1e-6, atol=1e-7)


def test_a_functional_model_trains_natively_and_saves(rng, tmp_path):
    inputs, _, outputs = _mlp_tensors()
    model = pynn.models.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.normal(size=(64, 20)).astype(np.float32)
    y = rng.integers(0, 3, size=64)
    before = model.get_weights()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert model.engine_reason is None or not NATIVE
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    model.save(tmp_path / "m.keras")
    loaded = pynn.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_shapes_follow_the_layers():
    inputs = pynn.Input((4, 7))
    flat = pynn.Flatten()(inputs)
    assert flat.shape == (None, 28)
    folded = pynn.Reshape((7, 4))(flat)
    assert folded.shape == (None, 7, 4)
    last = pynn.Dense(5)(folded)  # Dense on the last axis, as Keras
    assert last.shape == (None, 7, 5)
    assert pynn.Model(inputs, last).output_shape == (7, 5)


def test_models_made_from_one_input_share_their_layers(rng):
    """Keras' autoencoder idiom: the encoder is part of the whole model, trained with it."""
    inputs = pynn.Input((6,))
    code = pynn.Dense(2, activation="tanh")(inputs)
    decoded = pynn.Dense(6)(code)
    encoder = pynn.Model(inputs, code)
    autoencoder = pynn.Model(inputs, decoded)
    assert encoder.layers[1] is autoencoder.layers[1]
    x = rng.normal(size=(32, 6)).astype(np.float32)
    before = encoder.predict(x, verbose=0)
    autoencoder.compile("adam", "mse")
    autoencoder.fit(x, x, epochs=1, verbose=0)
    assert not np.array_equal(encoder.predict(x, verbose=0), before)


def test_a_model_called_on_a_tensor_adds_its_layers_shared(rng):
    base = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, activation="relu"),
                            pynn.Dense(3, activation="relu")])
    inputs = pynn.Input((5,))
    outputs = pynn.Dense(1)(base(inputs))
    model = pynn.Model(inputs, outputs)
    assert model.layers[1:3] == base.layers[1:]
    x = rng.normal(size=(9, 5)).astype(np.float32)
    head = model.layers[3]
    np.testing.assert_allclose(model.predict(x, verbose=0), head(base.predict(x, verbose=0)),
                               rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"takes inputs of shape \(None, 5\), got a tensor of "
                                         r"shape \(None, 6\)"):
        base(pynn.Input((6,)))


def test_a_head_on_a_models_output_shares_its_layers(rng):
    """Keras' transfer-learning idiom: Model(base.input, Dense(...)(base.output))."""
    base = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, activation="relu")])
    assert base.input is base.layers[0] and base.output.shape == (None, 4)
    model = pynn.Model(base.input, pynn.Dense(2)(base.output))
    assert model.layers[:2] == base.layers
    x = rng.normal(size=(3, 5)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               model.layers[2](base.predict(x, verbose=0)), rtol=1e-6)
    with pytest.raises(AttributeError, match="does not know its input shape yet"):
        pynn.Sequential([pynn.Dense(3)]).input
    with pytest.raises(AttributeError, match="has no layers after its Input"):
        pynn.Sequential([pynn.Input((3,))]).output


def test_a_layers_output_gives_a_feature_extractor(rng):
    """Keras' Model(model.input, model.get_layer(name).output), for a Sequential (the layer's
    output in the model it was last built in) and inside a definition."""
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, activation="relu", name="h"),
                             pynn.Dense(2)])
    features = pynn.Model(model.input, model.get_layer("h").output)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    np.testing.assert_array_equal(features.predict(x, verbose=0),
                                  model.layers[1](x))
    assert model.layers[0].output is model.layers[0]  # the Input is its own tensor
    inputs = pynn.Input((5,))
    hidden = pynn.Dense(3)(inputs)
    assert hidden.layer.output is hidden
    with pytest.raises(AttributeError, match="has no output yet"):
        pynn.Dense(3).output
    assert not hasattr(pynn.Dense(3), "output")

    class Keeps(pynn.layers.Layer):  # a layer of one's own may name an attribute output
        def forward(self, x, training=False, logits=False):
            self.output = x
            return x

        def backward(self, dy, need_input_grad=True, logits=False):
            return dy

    keeps = Keeps()
    keeps(x)
    np.testing.assert_array_equal(keeps.output, x)


def test_what_is_not_a_chain_is_refused_by_name():
    inputs, _, outputs = _mlp_tensors()
    other = pynn.Input((20,), name="other")
    with pytest.raises(ValueError, match="not computed from inputs: they come from the Input "
                                         f"'{inputs.name}', not 'other'"):
        pynn.Model(other, outputs)
    with pytest.raises(NotImplementedError, match="one input and one output; got 2 outputs"):
        pynn.Model(inputs, [outputs, outputs])
    with pytest.raises(NotImplementedError, match="got 2 inputs"):
        pynn.Model([inputs, other], outputs)
    model = pynn.Model([inputs], {"y": outputs})  # a list or dict of one is that one
    assert model.layers[-1] is outputs.layer
    with pytest.raises(ValueError, match="outputs is the Input itself"):
        pynn.Model(inputs, inputs)
    with pytest.raises(TypeError, match="inputs must be InputLayer"):
        pynn.Model(np.zeros((2, 20)), outputs)
    shared = pynn.Dense(4, name="shared")
    start = pynn.Input((4,))
    with pytest.raises(ValueError, match="layer 'shared' is called twice"):
        pynn.Model(start, shared(shared(start)))
    with pytest.raises(TypeError, match="give inputs and outputs"):
        pynn.Model()
    with pytest.raises(TypeError, match="unexpected argument"):
        pynn.Model(inputs, outputs, nope=1)
    with pytest.raises(NotImplementedError, match="a fixed training=True"):
        pynn.Dropout(0.5)(inputs, training=True)
    with pytest.raises(TypeError, match="holds no values"):
        np.asarray(outputs)
    with pytest.raises(TypeError, match="is not called"):
        pynn.Input((3,))(inputs)


def test_a_built_layer_refuses_other_inputs_at_the_call():
    dense = pynn.Dense(3)
    dense(pynn.Input((5,)))
    assert dense.built and dense.kernel.shape == (5, 3)
    with pytest.raises(ValueError, match=r"built for inputs \(5,\), not \(7,\)"):
        dense(pynn.Input((7,)))


def test_subclassed_models_are_refused_and_every_model_is_a_model():
    with pytest.raises(TypeError, match="pynn has no subclassed models"):
        class Mine(pynn.Model):  # noqa: F841 (the class statement itself is refused)
            pass
    assert isinstance(pynn.Sequential(), pynn.Model)
    assert issubclass(pynn.Sequential, pynn.models.Model)


def test_as_keras_builds_it(rng):
    keras = import_keras()
    layers = keras.layers
    k_in = keras.Input((4, 3))
    k_x = layers.Flatten()(k_in)
    k_x = layers.Dense(8, activation="relu")(k_x)
    k_out = layers.Dense(2)(k_x)
    k_model = keras.Model(k_in, k_out)
    p_in = pynn.Input((4, 3))
    p_x = pynn.Flatten()(p_in)
    p_x = pynn.Dense(8, activation="relu")(p_x)
    p_out = pynn.Dense(2)(p_x)
    p_model = pynn.Model(p_in, p_out)
    assert [tuple(t.shape) for t in (k_x, k_out)] == [p_x.shape, p_out.shape]
    p_model.set_weights(k_model.get_weights())
    with pytest.raises(TypeError, match="called on a Keras tensor"):
        pynn.Dense(2)(k_in)
    x = rng.normal(size=(5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(p_model.predict(x, verbose=0),
                               k_model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@dataclasses.dataclass(eq=True)
class _Scale(pynn.layers.Layer):  # unhashable (a dataclass with eq): no set or dict key
    factor: float = 2.0

    def __post_init__(self):
        super().__init__()

    def forward(self, x, training=False, logits=False):
        return x * self.factor

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy * self.factor


def test_layers_of_ones_own_keep_working(rng):
    """What layer.output's bookkeeping must not break (a review of the change): unhashable
    layers, a layer overriding __call__ inside a model, properties' own AttributeErrors, a
    mixin's __getattr__, subclasses setting output or inputs themselves."""
    model = pynn.Sequential([pynn.Input((3,)), _Scale(3.0), pynn.Dense(1)])
    model.compile("sgd", "mse")
    x = rng.normal(size=(8, 3)).astype(np.float32)
    model.fit(x, rng.normal(size=(8, 1)), epochs=1, verbose=0)
    assert model.layers[1].output.shape == (None, 3)

    class Calls(pynn.layers.Layer):
        def __call__(self, x, training=False):
            return super().__call__(x, training)

        def forward(self, x, training=False, logits=False):
            return x

        def backward(self, dy, need_input_grad=True, logits=False):
            return dy

    called = pynn.Sequential([pynn.Input((4,)), Calls(), pynn.Dense(2)])
    assert hasattr(called, "output") and hasattr(called.layers[2], "output")
    assert called.outputs[0].shape == (None, 2)

    class Mixin:
        def __getattr__(self, name):
            if name.startswith("cfg_"):
                return "mixin:" + name
            raise AttributeError(name)

    class WithMixin(pynn.layers.Layer, Mixin):
        pass

    class WithProperty(pynn.layers.Layer):
        @property
        def thing(self):
            return self._missing_attribute

    assert WithMixin().cfg_x == "mixin:cfg_x"
    with pytest.raises(AttributeError, match="_missing_attribute"):
        WithProperty().thing

    class Keeps(pynn.Sequential):
        def fit(self, *args, **kwargs):
            self.output, self.inputs = "mine", ["mine"]
            return super().fit(*args, **kwargs)

    keeps = Keeps([pynn.Input((3,)), pynn.Dense(1)])
    keeps.compile("sgd", "mse")
    keeps.fit(x, x[:, :1], verbose=0)
    assert keeps.output == "mine" and keeps.inputs == ["mine"]
    del keeps.output
    assert keeps.output.shape == (None, 1)


def test_a_layers_output_is_its_first_calls_as_in_keras(rng):
    """A layer called in two definitions: its output is the first's (while that one, or the
    first model it was built in, lives), whatever was read since."""
    inputs, hidden, other = pynn.Input((4,)), pynn.Dense(4, name="h"), pynn.Dense(4, name="a")
    first = pynn.Model(inputs, hidden(inputs))
    pynn.Model(inputs, hidden(other(inputs)))
    for _ in range(2):
        part = pynn.Model(first.input, first.get_layer("h").output)
        assert [layer.name for layer in part.layers[1:]] == ["h"]
        first.output  # (reading it changes nothing)
    base_in = pynn.Input((4,))
    base_hidden = pynn.Dense(8, name="h2")(base_in)
    base = pynn.Model(base_in, pynn.Dense(3)(base_hidden))
    new_in = pynn.Input((4,))
    pynn.Model(new_in, pynn.Dense(1)(base(new_in)))  # the base reused in a new model
    features = pynn.Model(base.input, base.get_layer("h2").output)
    assert features.layers[0] is base_in and features.layers[1].name == "h2"


def test_a_model_without_an_input_has_keras_implicit_one(rng):
    model = pynn.Sequential([pynn.Dense(4, input_shape=(3,), name="q"), pynn.Dense(2)])
    assert model.input is model.input and model.input.shape == (None, 3)
    features = pynn.Model(model.inputs, model.get_layer("q").output)
    x = rng.normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_allclose(features.predict(x, verbose=0), model.layers[0](x), rtol=1e-6)
    assert features.layers[1] is model.layers[0]
    config = features.get_config()
    assert pynn.Model.from_config(config).get_config() == config


def test_layer_output_follows_the_models_that_live(rng):
    """A layer's output falls back to a later model once its first one is gone, and is
    found by identity (equal layers of one's own are distinct layers); reading model.input
    names no Input."""
    base = pynn.Sequential([pynn.Input((4,)), pynn.Dense(8, name="feat")])
    full = pynn.Sequential([*base.layers, pynn.Dense(2)])
    del base
    import gc
    gc.collect()
    assert full.get_layer("feat").output.shape == (None, 8)
    first, second = _Scale(2.0), _Scale(2.0)
    assert first == second  # (a dataclass's equality)
    model = pynn.Sequential([pynn.Input((3,)), first, pynn.Dense(4), second, pynn.Dense(1)])
    assert second.output.layer is second and second.output.shape == (None, 4)
    part = pynn.Model(model.input, second.output)
    assert [type(layer).__name__ for layer in part.layers] == ["InputLayer", "_Scale",
                                                               "Dense", "_Scale"]
    pynn.utils.clear_session()
    implicit = pynn.Sequential([pynn.Dense(2, input_shape=(3,))], name="tiny")
    assert implicit.input.name == "tiny_input"  # (takes no name a later Input gets)
    assert pynn.Input((3,)).name == "input_layer"
    assert pynn.Dense(2)([pynn.Input((3,))]).shape == (None, 2)  # a list of one (Keras')

    odd = pynn.Sequential([pynn.Input((3,)), _Scale(), pynn.Dense(1)], name="odd")

    def no_shape(input_shape):
        raise NotImplementedError("no shape")

    odd.layers[1].compute_output_shape = no_shape  # (a layer of one's own that cannot say)
    assert not hasattr(odd, "output")  # (an AttributeError, not the layer's own error)
