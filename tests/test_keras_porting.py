"""What code ported from Keras 3 guides and tutorials does (a porting audit's findings):
keras.utils, keras.models, keras.optimizers.schedules; a weight read as an array
(np.array(layer.kernel), kernel * 2); Constant of a one-element array; activation.__name__,
optimizer.iterations.numpy(); the hint for integer labels under categorical
cross-entropy."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import pynn
from conftest import import_keras


def test_utils_to_categorical_as_keras(rng):
    labels = rng.integers(0, 5, size=17)
    labels[0] = 4  # (without num_classes the largest label sets the width: ~2% of draws lack 4)
    want = np.eye(5)[labels]
    np.testing.assert_array_equal(pynn.utils.to_categorical(labels), want)
    np.testing.assert_array_equal(pynn.utils.to_categorical(labels.reshape(-1, 1), 7),
                                  np.eye(7)[labels])
    grid = labels[:16].reshape(4, 4)  # any shape: one more axis
    assert pynn.utils.to_categorical(grid, 5).shape == (4, 4, 5)
    assert pynn.utils.to_categorical(labels.astype(float)).dtype == np.float32
    keras = import_keras()
    np.testing.assert_array_equal(pynn.utils.to_categorical(labels, 6),
                                  keras.utils.to_categorical(labels, 6))


@pytest.mark.parametrize("labels,num_classes,error,words", [
    ([0, 3], 3, ValueError, "label 3 is out of range for num_classes=3"),
    ([0, -1], None, ValueError, "must be >= 0"),
    ([0.5, 1], None, ValueError, "must be integers"),
    (["a"], None, TypeError, "must be integers"),
    ([0, 1], 0, ValueError, "num_classes must be an integer >= 1"),
    # (cast to int64 first, these wrapped to negative labels: "must be >= 0")
    (np.array([2**63], np.uint64), 5, ValueError, "label 9223372036854775808 is out of range"),
    ([1e20], 5, ValueError, "label 100000000000000000000 is out of range"),
])
def test_to_categorical_refuses(labels, num_classes, error, words):
    with pytest.raises(error, match=words):
        pynn.utils.to_categorical(labels, num_classes)


def test_utils_and_models_names(tmp_path, rng):
    import random

    pynn.utils.set_random_seed(3)  # pynn's generator, and Python's and NumPy's (Keras')
    a = pynn.initializers.GlorotUniform()((4, 4))
    drawn = (random.random(), np.random.rand())
    pynn.set_seed(3)
    np.testing.assert_array_equal(a, pynn.initializers.GlorotUniform()((4, 4)))
    pynn.utils.set_random_seed(3)
    pynn.initializers.GlorotUniform()((4, 4))
    assert (random.random(), np.random.rand()) == drawn
    pynn.utils.set_random_seed(np.arange(4)[3])  # a numpy integer (random.seed refused it
    assert (random.random(), np.random.rand()) == drawn  # after pynn's was seeded)
    for bad in (2**32, -1, 1.5, "3"):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
            pynn.utils.set_random_seed(bad)
    assert pynn.utils.PyDataset is pynn.PyDataset is pynn.utils.Sequence
    assert pynn.optimizers.schedules.ExponentialDecay is pynn.schedules.ExponentialDecay
    model = pynn.models.Sequential([pynn.Input((3,)), pynn.layers.Dense(2, name="d")])
    model.compile("adam", "mse")
    x = rng.normal(size=(5, 3)).astype(np.float32)
    pynn.models.save_model(model, tmp_path / "m.npz")
    np.testing.assert_array_equal(pynn.models.load_model(tmp_path / "m.npz").predict(x),
                                  model.predict(x))
    model.fit(x, x[:, :2], epochs=2, verbose=0)
    clone = pynn.models.clone_model(model)  # same layers, fresh weights, compiled alike
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])
    assert clone.compiled and clone.optimizer is not model.optimizer  # (Keras 3)
    assert clone.optimizer.get_config() == model.optimizer.get_config()
    assert clone.optimizer.iterations == 0 and model.optimizer.iterations == 2
    assert type(clone.loss) is type(model.loss) and clone.backend is model.backend
    clone.fit(x, x[:, :2], epochs=1, verbose=0)
    with pytest.raises(TypeError, match="Sequential"):
        pynn.models.clone_model("model")

    class Scale(pynn.layers.Layer):  # a user's layer, never registered
        def forward(self, x, training=False, logits=False):
            return 2 * x

        def backward(self, dy, need_input_grad=True, logits=False):
            return 2 * dy

    custom = pynn.Sequential([pynn.Input((3,)), Scale(), pynn.layers.Dense(1)])
    twin = pynn.models.clone_model(custom)
    assert type(twin.layers[1]) is Scale and not twin.compiled


def test_kerass_import_of_the_schedules():
    from pynn.optimizers.schedules import ExponentialDecay

    assert ExponentialDecay is pynn.schedules.ExponentialDecay


def test_a_weight_reads_as_its_array(rng):
    model = pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(2)])
    kernel = model.layers[1].kernel
    values = kernel.numpy()
    assert np.array(kernel).shape == (3, 2)  # a 0-d object array before
    copied = np.array(kernel)  # a copy, as Keras' (it was the weights' own buffer)
    copied[:] = 7
    assert not np.any(kernel.numpy() == 7)
    np.testing.assert_array_equal(np.round(kernel, 2), np.round(values, 2))
    np.testing.assert_array_equal(kernel * 2, values * 2)
    np.testing.assert_array_equal(1 - kernel, 1 - values)
    np.testing.assert_array_equal(kernel @ np.ones(2), values @ np.ones(2))
    np.testing.assert_array_equal(-kernel, -values)
    np.testing.assert_array_equal(kernel > 0, values > 0)
    assert kernel == kernel and kernel != model.layers[1].bias  # identity, as before
    assert {kernel: 1}[kernel] == 1
    snapshot = np.asarray(kernel)  # a copy too: later changes of the weights do not show
    kernel.assign(values + 1)
    np.testing.assert_array_equal(snapshot, values)


def test_a_weight_indexes_and_takes_unary_operators_as_an_array(rng):
    """kernel[0], abs(kernel), +kernel and kernel.dtype failed (Keras' variables take
    them); the results are copies: writing to them leaves the weight alone."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(2)])
    kernel = model.layers[1].kernel
    values = rng.normal(size=(3, 2)).astype(np.float32)
    kernel.assign(values)
    np.testing.assert_array_equal(kernel[0], values[0])
    np.testing.assert_array_equal(kernel[:, 1], values[:, 1])
    assert kernel[1, 1] == values[1, 1]
    np.testing.assert_array_equal(abs(kernel), np.abs(values))
    np.testing.assert_array_equal(+kernel, values)
    assert kernel.dtype == np.float32 and kernel.dtype == "float32"
    for result in (kernel[0], +kernel, abs(kernel)):
        result[...] = 7
    np.testing.assert_array_equal(kernel.numpy(), values)


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_in_place_operators_update_the_weight(rng, engine):
    """layer.kernel += 1 rebound the attribute to a plain array: predict and fit went on
    with the old weight, later calls failed with AttributeError 'value'."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    dense = model.layers[1]
    kernel, x = dense.kernel, rng.normal(size=(4, 3)).astype(np.float32)
    before = model.predict(x)
    dense.kernel += 1.0
    assert dense.kernel is kernel and dense.weights[0] is kernel
    np.testing.assert_allclose(model.predict(x), before + x.sum(axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-5)
    values = kernel.numpy()
    dense.kernel *= 0.5
    dense.kernel -= np.ones((1, 2))  # broadcast, as numpy's
    np.testing.assert_allclose(kernel.numpy(), values * 0.5 - 1, rtol=1e-6)
    model.fit(x, np.zeros((4, 2)), epochs=1, verbose=0, engine=engine)
    assert dense.kernel is kernel and not np.allclose(kernel.numpy(), values * 0.5 - 1)
    with pytest.raises(ValueError, match=r"expected shape \(3, 2\), got \(5, 3, 2\)"):
        dense.kernel += np.ones((5, 3, 2))
    with pytest.raises(TypeError, match=r"kernel is the weight 'dense.*/kernel'.*\.assign"):
        dense.kernel = kernel.numpy() + 1  # a plain array over the weight: refused
    assert dense.kernel is kernel


def test_a_weight_has_kerass_variable_methods(rng):
    dense = pynn.layers.Dense(3, name="hidden")
    pynn.Sequential([pynn.Input((2,)), dense])
    kernel = dense.kernel
    assert kernel.ndim == 2 and kernel.path == "hidden/kernel"
    values, delta = kernel.numpy(), rng.normal(size=(2, 3))
    kernel.assign_add(delta)
    np.testing.assert_allclose(kernel.numpy(), values + delta, rtol=1e-6)
    kernel.assign_sub(delta)
    np.testing.assert_allclose(kernel.numpy(), values, rtol=1e-6, atol=1e-6)
    assert dense.kernel is kernel


def test_a_sequential_takes_trainable_as_a_boolean_only():
    with pytest.raises(TypeError, match="trainable must be True or False, got None"):
        pynn.Sequential([pynn.layers.Dense(2)], trainable=None)  # it froze every layer
    assert not pynn.Sequential([pynn.layers.Dense(2)], trainable=np.bool_(False)).trainable


def test_constant_takes_a_one_element_array():
    # the TensorFlow imbalanced-data tutorial's output bias
    init = pynn.initializers.Constant(np.log([25 / 975]))
    assert init.value == pytest.approx(np.log(25 / 975))
    assert pynn.initializers.Constant("0.5").value == 0.5  # a numeric string, as before
    with pytest.raises(ValueError, match="one number"):
        pynn.initializers.Constant(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="one number"):
        pynn.initializers.Constant("zero")


def test_activation_name_and_iterations_numpy(rng):
    model = pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(4, activation="relu")])
    assert model.layers[1].activation.__name__ == "relu"
    model.compile("adam", "categorical_crossentropy")
    x = rng.normal(size=(8, 3)).astype(np.float32)
    model.fit(x, np.eye(4)[np.arange(8) % 4], batch_size=4, verbose=0)
    steps = model.optimizer.iterations
    assert steps == 2 and steps.numpy() == 2 and isinstance(steps.numpy(), int)
    model.optimizer.iterations = 7  # still settable (a resumed count)
    assert model.optimizer.iterations == 7
    model.optimizer.iterations.assign(3)  # Keras' variable method
    assert model.optimizer.iterations == 3
    with pytest.raises(ValueError, match="count >= 0"):
        model.optimizer.iterations.assign(-1)
    with pytest.raises(ValueError, match=r"for integer class labels use "
                                         r"loss='sparse_categorical_crossentropy', or one-hot "
                                         r"targets \(pynn.utils.to_categorical\(y, 4\)\)"):
        model.fit(x, np.arange(8) % 4, verbose=0)


@pytest.mark.parametrize("module,name,words", [
    (pynn.callbacks, "TensorBoard", "CSVLogger"),
    (pynn.callbacks, "ProgbarLogger", "verbose"),
    (pynn.layers, "Lambda", "no autodiff"),
    (pynn.layers, "Conv2D", "dense networks"),
    (pynn.layers, "Embedding", "dense networks"),
    (pynn.callbacks, "NoSuchThing", "has no attribute 'NoSuchThing'$"),
])
def test_keras_names_pynn_leaves_out_say_what_to_use(module, name, words):
    with pytest.raises(AttributeError, match=words):
        getattr(module, name)
    assert not hasattr(module, name)


def test_the_integer_label_hint_fits_the_loss(rng):
    model = pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(4)])
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"integer class labels\? one-hot them"):
        model.fit(rng.normal(size=(8, 3)), np.arange(8) % 4, verbose=0)


def test_names_ported_keras_code_reaches_for(rng):
    """From porting Keras scripts: clear_session (every sweep), epsilon/floatx/backend(),
    None as an initializer (Keras' default: glorot_uniform), an activation given as a
    layer (LeakyReLU(0.2)); a layer called on a layer, keras.ops in a metric and the Input at
    model.layers[0] refused with what to do instead of a bare AttributeError."""
    pynn.layers.Dense(2)
    pynn.utils.clear_session()
    assert pynn.layers.Dense(2).name == "dense"
    pynn.backend.clear_session()
    assert pynn.layers.Dense(2).name == "dense"
    assert pynn.backend.epsilon() == pynn.config.epsilon() == 1e-7
    assert pynn.backend.floatx() == pynn.floatx()
    assert pynn.backend.backend() == pynn.get_backend().name
    dense = pynn.layers.Dense(3, bias_initializer=None,
                              activation=pynn.layers.LeakyReLU(negative_slope=0.2))
    pynn.Sequential([pynn.Input((4,)), dense])
    assert np.any(dense.bias.numpy() != 0)  # drawn, as Keras' add_weight default
    assert dense.activation == pynn.activations.Spec("leaky_relu", 0.2)
    x = rng.normal(size=(2, 4)).astype(np.float32)
    z = x @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(dense(x), np.where(z > 0, z, 0.2 * z), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="called on the layer 'd3': a layer is called on "
                                        "arrays, or on pynn.Input"):
        pynn.layers.Dense(2)(pynn.layers.Dense(3, name="d3"))
    with pytest.raises(AttributeError, match=r"use numpy \(np.sqrt\)"):
        pynn.ops.sqrt
    for name in ("cast", "one_hot", "convert_to_numpy"):  # numpy has none of these names
        with pytest.raises(AttributeError, match="use numpy's counterpart where Keras code"):
            getattr(pynn.ops, name)
    model = pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(2)])
    with pytest.raises(AttributeError, match=r"the first Dense is model.layers\[1\]"):
        model.layers[0].kernel
    with pytest.raises(AttributeError, match="'InputLayer' object has no attribute 'nope'"):
        model.layers[0].nope


class _Registered(pynn.layers.Layer):
    def __init__(self, k=2.0, **kwargs):
        super().__init__(**kwargs)
        self.k = k

    def forward(self, x, training=False, logits=False):
        return x * self.k


def test_register_keras_serializable_loads_without_custom_objects(tmp_path, rng):
    """Keras' decorator (keras.saving and keras.utils) was missing: the decorated module
    failed at import; registered classes load by name, a scope's objects winning."""
    from pynn.custom_objects import _registered

    try:
        registered = pynn.saving.register_keras_serializable(package="tests")(_Registered)
        assert registered is _Registered
        assert pynn.utils.get_custom_objects()["tests>_Registered"] is _Registered
        model = pynn.Sequential([pynn.Input((2,)), _Registered(3.0)])
        model.save(tmp_path / "m.npz")
        loaded = pynn.load_model(tmp_path / "m.npz")  # no custom_objects
        assert loaded.layers[1].k == 3.0
        x = rng.normal(size=(2, 2)).astype(np.float32)
        np.testing.assert_allclose(loaded.predict(x), 3 * x, rtol=1e-6)

        class Other(_Registered):
            pass

        with pynn.saving.custom_object_scope({"_Registered": Other}):
            assert type(pynn.load_model(tmp_path / "m.npz").layers[1]) is Other
    finally:
        _registered.clear()


def _scaled(package, factor, name=None):
    """A layer class called Scale registered under package (and name)."""
    @pynn.saving.register_keras_serializable(package=package, name=name)
    class Scale(pynn.layers.Layer):
        def forward(self, x, training=False, logits=False):
            return x * factor

    return Scale


def _double(y_true, y_pred):
    return 2 * np.mean(np.abs(y_pred - y_true), axis=-1)


def test_registered_names_tell_two_packages_classes_apart(tmp_path, rng):
    """Files name a registered class by its "package>name" too: two packages' Scale loaded
    as the last registered one (silently other outputs), and a class registered with name=
    did not load at all. A scope's objects still win."""
    from pynn.custom_objects import _registered

    try:
        pynn.saving.register_keras_serializable(package="fns")(_double)
        mine, theirs = _scaled("mine", 3.0), _scaled("theirs", -100.0)
        renamed = _scaled("renamed", 5.0, name="scale_layer")
        x = rng.normal(size=(2, 2)).astype(np.float32)
        for cls, factor in ((mine, 3.0), (theirs, -100.0), (renamed, 5.0)):
            model = pynn.Sequential([pynn.Input((2,)), cls()])
            model.compile("sgd", "mse", metrics=[pynn.metrics.MeanMetricWrapper(_double)])
            model.save(tmp_path / "m.npz")
            loaded = pynn.load_model(tmp_path / "m.npz")
            assert type(loaded.layers[1]) is cls and loaded.metrics[0].fn is _double
            np.testing.assert_allclose(loaded.predict(x), factor * x, rtol=1e-6)
        with pynn.saving.custom_object_scope({"Scale": mine}):
            assert type(pynn.load_model(tmp_path / "m.npz").layers[1]) is mine
    finally:
        _registered.clear()
    assert callable(pynn.losses.categorical_crossentropy)  # Keras' function form


@pytest.mark.parametrize("layer", [lambda: pynn.layers.Dense(3), pynn.layers.PReLU,
                                   pynn.layers.LayerNormalization,
                                   pynn.layers.BatchNormalization])
def test_a_layer_called_after_set_floatx_follows_it(rng, layer, float64_floatx):
    """Dense and PReLU built in float64 returned float64 in a float32 session (their weights
    kept), the normalisations float32: every layer's weights follow the session's floatx at
    the next call, as a model's do."""
    layer = layer()
    x = rng.normal(size=(4, 3))
    layer(x)
    pynn.set_floatx("float32")
    assert layer(x).dtype == np.float32
    assert all(w.dtype == np.float32 for w in layer.get_weights())
    pynn.set_floatx("float64")
    assert layer(x).dtype == np.float64 and layer.get_weights()[0].dtype == np.float64


def test_keras_positional_orders():
    """Keras' positional arguments land where Keras puts them (a constraint given ninth to
    Dense was the bias's), or are refused naming the keyword (Sequential's second argument,
    Keras' trainable; the base Loss's first, Keras' name)."""
    max_norm = pynn.constraints.MaxNorm(1.0)
    dense = pynn.layers.Dense(2, None, True, "glorot_uniform", "zeros", None, None, "l2",
                              max_norm)
    assert dense.kernel_constraint is max_norm and dense.bias_constraint is None
    assert isinstance(dense.activity_regularizer, pynn.regularizers.L2)
    norm = pynn.layers.BatchNormalization(-1, 0.9, 1e-3, True, True, "zeros", "ones", "zeros",
                                          "ones", "l2")
    assert norm.momentum == 0.9 and norm.beta_regularizer is not None
    with pytest.raises(TypeError, match="give trainable=False by keyword"):
        pynn.Sequential([pynn.Input((3,)), pynn.layers.Dense(2)], False)
    with pytest.raises(TypeError, match="name must be a string"):  # (as Keras and layers)
        pynn.Sequential([], 3)

    class Scaled(pynn.losses.Loss):
        def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
            raise NotImplementedError

    # pynn's base Loss takes reduction first (as Keras' built-in losses): Keras' base
    # class's name-first habit is named
    assert Scaled("sum").reduction == "sum" and Scaled(name="scaled").name == "scaled"
    with pytest.raises(ValueError, match="give name= by keyword"):
        Scaled("scaled")
    assert pynn.losses.MeanSquaredError("sum").reduction == "sum"
    assert pynn.losses.Huber(2.0, "sum", "h").name == "h"
    f1 = pynn.metrics.F1Score("micro", 0.4, "f")
    assert (f1.average, f1.threshold, f1.name) == ("micro", 0.4, "f")
    with pytest.raises(TypeError, match=r"give the threshold by keyword, "
                                        r"F1Score\(threshold=0.5\)"):
        pynn.metrics.F1Score(0.5)
    with pytest.raises(TypeError, match="give multilabel= by keyword"):
        pynn.metrics.F1Score(None, True)  # pynn's (threshold, multilabel) before
    keras = import_keras()
    for ours, theirs, count in ((pynn.layers.Dense, keras.layers.Dense, 10),
                                (pynn.layers.BatchNormalization,
                                 keras.layers.BatchNormalization, 13),
                                (pynn.losses.MeanSquaredError, keras.losses.MeanSquaredError, 3),
                                (pynn.Input, keras.Input, 9),
                                (pynn.metrics.F1Score, keras.metrics.F1Score, 4),
                                (pynn.metrics.FBetaScore, keras.metrics.FBetaScore, 5)):
        assert list(inspect.signature(ours).parameters)[:count] == \
            list(inspect.signature(theirs).parameters)[:count], ours


def test_kerass_input_arguments_and_shape():
    inputs = pynn.Input(shape=(4,), sparse=False, ragged=False, optional=False)
    assert inputs.shape == (None, 4)
    assert inputs.ndim == 2 and pynn.Input((3, 5)).ndim == 3  # (Keras' .ndim: missing)
    assert pynn.layers.Dense(2)(pynn.Input((3, 5))).ndim == 3
    for name in ("sparse", "ragged", "optional"):
        with pytest.raises(NotImplementedError, match=f"{name}=True is not supported"):
            pynn.Input((4,), **{name: True})
    with pytest.raises(NotImplementedError, match="input_tensor"):
        pynn.Input((4,), tensor=np.zeros((1, 4)))
    with pytest.raises(TypeError, match="give batch_shape= by keyword"):
        pynn.Input(None, None, None, (None, 4))  # pynn's order before: batch_shape fourth


def test_a_sequential_subclass_with_kerass_steps_is_refused():
    """Keras' train_step, call, ... in a Sequential's subclass: pynn's loops never call them
    (they were ignored silently)."""
    for method in ("train_step", "test_step", "predict_step", "call", "compute_loss"):
        with pytest.raises(TypeError, match=f"defines Keras' {method}, which pynn's fit"):
            type("Mine", (pynn.Sequential,), {method: lambda self, *args: None})

    class Logged(pynn.Sequential):  # pynn's own methods may be overridden
        def fit(self, *args, **kwargs):
            return super().fit(*args, **kwargs)

    assert isinstance(Logged([pynn.Input((2,)), pynn.layers.Dense(1)]), pynn.Model)


def test_build_without_a_shape_and_compute_output_shape():
    model = pynn.Sequential([pynn.Input((4, 3)), pynn.layers.Flatten(), pynn.layers.Dense(2)])
    model.build()  # Keras' build(input_shape=None): the Input's shape
    assert model.built
    assert model.compute_output_shape((None, 4, 3)) == (None, 2)
    assert model.compute_output_shape((7, 4, 3)) == (7, 2)
    with pytest.raises(ValueError, match=r"takes inputs of shape \(None, 4, 3\)"):
        model.compute_output_shape((None, 3, 3))
    with pytest.raises(ValueError, match="starts with the batch axis"):
        model.compute_output_shape((12,))
    with pytest.raises(ValueError, match="does not know its input shape yet"):
        pynn.Sequential([pynn.layers.Dense(2)]).build()
    keras = import_keras()
    theirs = keras.Sequential([keras.Input((4, 3)), keras.layers.Flatten(),
                               keras.layers.Dense(2)])
    assert tuple(theirs.compute_output_shape((7, 4, 3))) == (7, 2)
