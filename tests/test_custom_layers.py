"""The extension API as a researcher meets it: a layer of one's own (Keras-style add_weight,
fixed weights, gradients), and the errors a mistake in one gives."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

import pynn
from conftest import AVAILABLE, requires_backend
from gradcheck import assert_close_grad, numeric_grad


class ScaledDense(pynn.layers.Layer):
    """x @ W * s + b with a trainable scalar s and a fixed (non-trainable) column mask."""

    def __init__(self, units, **kw):
        super().__init__(**kw)
        self.units = units

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.w = self.add_weight("w", shape=(input_shape[0], self.units),
                                 initializer="glorot_uniform")
        self.s = self.add_weight("s", shape=(1,), initializer="ones")
        self.b = self.add_weight("b", shape=(self.units,), initializer="zeros")
        mask = (np.arange(self.units) % 2).astype(dtype)
        self.mask = self.add_weight("mask", mask, trainable=False)

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def forward(self, x, training=False, logits=False):
        self.x = x
        self.z = x @ self.w.value
        return self.z * self.s.value * self.mask.value + self.b.value

    def backward(self, dy, need_input_grad=True, logits=False):
        g = dy * self.mask.value
        self.w.grad = self.x.T @ (g * self.s.value)
        self.s.grad = np.array([(g * self.z).sum()], dtype=dy.dtype)
        self.b.grad = dy.sum(axis=0)
        return (g * self.s.value) @ self.w.value.T if need_input_grad else None

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_keras_style_add_weight_and_gradients(float64_numpy, rng):
    layer = ScaledDense(4)
    model = pynn.Sequential([pynn.Input((3,)), layer, pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    assert [p.shape for p in layer.params] == [(3, 4), (1,), (4,), (4,)]
    assert [p.trainable for p in layer.params] == [True, True, True, False]
    assert layer.s.numpy().tolist() == [1.0] and layer.w.value.dtype == np.float64
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    prepared = model.loss.prepare_targets(y, (2,), np.float64)

    def loss():
        return model._loss_and_grad(model._forward(x, training=False, logits=False),
                                    prepared)[0]

    model._compute_gradients(x, prepared)  # the .grad of every weight, no update
    for p in (layer.w, layer.s, layer.b):
        assert_close_grad(p.grad, numeric_grad(loss, p.value), what=p.name)


def test_a_weight_added_non_trainable_stays_fixed(rng):
    """A fixed mask became trainable after layer.trainable = False, then True (Keras keeps a
    weight made non-trainable so)."""
    layer = ScaledDense(4)
    model = pynn.Sequential([pynn.Input((3,)), layer, pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    layer.trainable = False
    layer.trainable = True
    model.trainable = False
    model.trainable = True
    assert not layer.mask.trainable and layer.w.trainable
    mask = layer.mask.numpy()
    model.fit(rng.normal(size=(8, 3)), rng.normal(size=8), epochs=2, verbose=0)
    np.testing.assert_array_equal(layer.mask.numpy(), mask)


def test_add_weight_name_optional_and_regularizer(rng):
    class Penalised(pynn.layers.Layer):
        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.w = self.add_weight(shape=(input_shape[0],), initializer="ones",
                                     regularizer=pynn.regularizers.L2(0.5))

        def forward(self, x, training=False, logits=False):
            self.x = x
            return x * self.w.value

        def backward(self, dy, need_input_grad=True, logits=False):
            self.w.grad = (dy * self.x).sum(axis=0)
            return dy * self.w.value

    layer = Penalised()
    model = pynn.Sequential([pynn.Input((3,)), layer])
    model.compile(optimizer="sgd", loss="mse")
    assert layer.w.name.endswith("/weight_0")
    x = np.zeros((4, 3), np.float32)  # the data term is 0: the loss is the penalty alone
    assert model.evaluate(x, np.zeros((4, 3))) == pytest.approx(0.5 * 3)


def test_add_weight_refuses_a_shape_given_as_values():
    """add_weight('w', (4, 3), backend, dtype) made a weight of shape (2,) holding [4, 3]."""
    layer = pynn.layers.Layer()
    with pytest.raises(TypeError, match=r"\(4, 3\) is taken as values.*shape=\(4, 3\)"):
        layer.add_weight("w", (4, 3), pynn.get_backend(), "float32")
    with pytest.raises(TypeError, match="not both or neither"):
        layer.add_weight("w")
    assert layer.add_weight("v", np.array([4.0, 3.0])).shape == (2,)  # values, as arrays


def test_add_weight_takes_kerass_3_signature(rng):
    """Keras 3's add_weight(shape, initializer, dtype, ..., constraint=None, name=): the shape
    first was refused as a name, initializer=None and constraint=None failed."""
    layer = pynn.layers.Layer()
    ones = layer.add_weight((3, 2), "ones")
    assert ones.shape == (3, 2) and ones.name == f"{layer.name}/weight_0"
    assert (ones.numpy() == 1).all()
    named = layer.add_weight(shape=[2], initializer=None, dtype="float32", trainable=False,
                             autocast=True, regularizer=None, constraint=None,
                             aggregation="none", overwrite_with_gradient=False, name="w")
    assert named.name.endswith("/w") and not named.trainable and named.value.dtype == np.float32
    pynn.set_seed(int(rng.integers(1 << 30)))
    drawn = layer.add_weight((50, 40)).numpy()  # glorot_uniform, as Keras' default
    limit = np.sqrt(6 / 90)
    assert np.abs(drawn).max() <= limit and drawn.std() > limit / 3
    assert (layer.add_weight((3,), None, "int32").numpy() == 0).all()  # "zeros" for integers
    assert layer.add_weight("old", shape=(2,), initializer="ones").name.endswith("/old")
    with pytest.raises(ValueError, match="unknown constraint 'nonneg'"):
        layer.add_weight((2,), constraint="nonneg")
    with pytest.raises(NotImplementedError, match="overwrite_with_gradient=True"):
        layer.add_weight((2,), overwrite_with_gradient=True)
    with pytest.raises(TypeError, match="shape given both by position and by name"):
        layer.add_weight((2,), shape=(3,))
    with pytest.raises(TypeError, match="at most 3 positional arguments"):
        layer.add_weight((2,), "ones", "float32", "w")


class _NoBackward(pynn.layers.Layer):
    def forward(self, x, training=False, logits=False):
        return x * 2


class _NoneBackward(_NoBackward):
    def backward(self, dy, need_input_grad=True, logits=False):
        return None


class _Broken(_NoBackward):
    def forward(self, x, training=False, logits=False):
        return x @ np.ones((7, 7), dtype=x.dtype)  # the wrong inner size


@pytest.mark.parametrize("layer, error, message", [
    (_NoBackward(name="twice"), NotImplementedError,
     "layer 'twice' \\(_NoBackward\\) defines no backward.*can predict but not train"),
    (_NoneBackward(name="lazy"), TypeError,
     "layer 'lazy' \\(_NoneBackward\\): backward returned None.*need_input_grad=True"),
])
def test_mistakes_in_a_layer_name_it(rng, layer, error, message):
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(3), layer, pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert model.predict(np.ones((2, 3))).shape == (2, 1)
    with pytest.raises(error, match=message):
        model.fit(rng.normal(size=(4, 3)), rng.normal(size=4), epochs=1, verbose=0)


class _Twice(pynn.layers.Layer):
    def forward(self, x, training=False, logits=False):
        return x * 2

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy * 2


class _TwiceWithoutLogits(pynn.layers.Layer):
    def forward(self, x, training=False):
        return x * 2

    def backward(self, dy, need_input_grad=True):
        return dy * 2


class _TwiceBare(pynn.layers.Layer):  # as Keras' call(x)
    def forward(self, x):
        return x * 2

    def backward(self, dy):
        return dy * 2


@pytest.mark.parametrize("cls", [_TwiceWithoutLogits, _TwiceBare])
def test_a_forward_without_logits_or_training_trains(rng, cls):
    """forward(x, training) ran on its own, but fit crashed with a bare TypeError about
    'logits': each keyword is passed where the layer takes it."""
    x, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 1))
    ours = pynn.Sequential([pynn.Input((3,)), pynn.Dense(3), cls(), pynn.Dense(1)])
    full = pynn.Sequential([pynn.Input((3,)), pynn.Dense(3), _Twice(), pynn.Dense(1)])
    full.set_weights(ours.get_weights())
    for model in (ours, full):
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, y, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(ours.get_weights(), full.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_array_equal(cls()(x), (x * 2).astype(np.float32))


def test_a_last_layer_without_logits_is_named_when_its_loss_needs_them(rng):
    class Soft(pynn.Dense):
        def forward(self, x, training=False):
            return super().forward(x, training)

    model = pynn.Sequential([pynn.Input((3,)), Soft(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(TypeError, match=r"Soft.forward\(self, x, training=False\) takes no "
                                        r"logits, but the model asks its last layer"):
        model.fit(rng.normal(size=(8, 3)), np.eye(2)[rng.integers(0, 2, 8)], verbose=0)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_an_error_inside_a_layer_says_which_layer():
    model = pynn.Sequential([pynn.Input((3,)), _Broken(name="broken"), pynn.Dense(1)])
    with pytest.raises(ValueError) as info:
        model.predict(np.ones((2, 3)))
    assert "(raised in layer 'broken', _Broken.forward)" in info.value.__notes__


def test_a_keras_style_loss_is_refused_at_compile():
    """A Loss subclass with only Keras' call() passed compile and failed inside fit with an
    AttributeError on '_sum_and_grad'."""
    class KerasStyle(pynn.losses.Loss):
        def call(self, y_true, y_pred):
            return ((y_true - y_pred) ** 2).mean()

    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    with pytest.raises(TypeError, match="defines _sum_and_grad.*no autodiff"):
        model.compile(optimizer="sgd", loss=KerasStyle())


def test_engine_reason_names_an_asked_layer_path(rng):
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = rng.normal(size=(4, 2)), rng.normal(size=4)
    model.fit(x, y, epochs=1, verbose=0)
    if model.engine_reason is None:  # the native engine ran (compiled here)
        model.fit(x, y, epochs=1, verbose=0, engine="layers")
        assert model.engine_reason == "engine='layers' was asked for"


def test_add_weight_regularizer_on_a_dense_subclass(rng):
    """Dense.regularized() replaced the base's list: a subclass's add_weight(regularizer=)
    penalty never joined the loss."""
    class MyDense(pynn.Dense):
        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.extra = self.add_weight("extra", shape=(3,), initializer="ones",
                                         regularizer=pynn.regularizers.L2(10.0))

    layer = MyDense(1, kernel_initializer="zeros")
    model = pynn.Sequential([pynn.Input((2,)), layer])
    model.compile(optimizer="sgd", loss="mse")
    assert [r.l2 for _, r in layer.regularized()] == [10.0]
    assert model.evaluate(np.zeros((4, 2)), np.zeros(4)) == pytest.approx(30.0)


# ---- from a model/layer API audit ------------------------------------------------------------
class _Affine(pynn.layers.Layer):
    """x * a + b, its two weights named alike (Keras takes that)."""

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.a = self.add_weight("w", shape=input_shape, initializer="ones")
        self.b = self.add_weight("w", shape=input_shape, initializer="zeros")

    def forward(self, x, training=False, logits=False):
        self.x = x
        return x * self.a.value + self.b.value

    def backward(self, dy, need_input_grad=True, logits=False):
        self.a.grad = (dy * self.x).sum(axis=0)
        self.b.grad = dy.sum(axis=0)
        return dy * self.a.value


def test_two_weights_named_alike_keep_their_values_through_files_and_copies(tmp_path):
    import copy

    model = pynn.Sequential([pynn.Input((3,)), _Affine()])
    model.layers[1].set_weights([np.full(3, 2.0), np.full(3, 5.0)])
    assert [p.name.split("/")[1] for p in model.layers[1].params] == ["w", "w_1"]
    model.save(tmp_path / "m.npz")
    model.save_weights(tmp_path / "w.npz")
    copies = [pynn.load_model(tmp_path / "m.npz", custom_objects={"_Affine": _Affine}),
              copy.deepcopy(model)]
    twin = pynn.Sequential([pynn.Input((3,)), _Affine()])
    twin.load_weights(tmp_path / "w.npz")
    for other in copies + [twin]:  # (the second overwrote the first: 5, 5)
        a, b = other.layers[1].get_weights()
        np.testing.assert_array_equal(a, 2.0)
        np.testing.assert_array_equal(b, 5.0)


class _NoSuperBuild(pynn.layers.Layer):
    def build(self, input_shape, backend, dtype):  # super().build(...) forgotten
        self.w = self.add_weight("w", shape=input_shape, initializer="ones", backend=backend,
                                 trainable=False)  # (its backward sets no gradient)

    def forward(self, x, training=False, logits=False):
        return x * self.w.value

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy * self.w.value


def test_a_build_without_super_is_marked_built_once(rng):
    # (it was built again on every call: four copies of its weight after a predict and a fit)
    model = pynn.Sequential([pynn.Input((4,)), _NoSuperBuild(), pynn.Dense(1)])
    model.compile("sgd", "mse")
    x = rng.normal(size=(8, 4)).astype(np.float32)
    model.predict(x, verbose=0)
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    assert len(model.layers[1].params) == 1 and model.layers[1].built
    assert len(model.weights) == 3


def test_a_layer_called_on_its_own_is_built_once_without_super(rng):
    # (called directly, layer(x) built it again on every call, as a model did before)
    layer = _NoSuperBuild()
    x = rng.normal(size=(3, 4)).astype(np.float32)
    layer(x)
    layer.w.assign(np.full(4, 2.0, np.float32))
    np.testing.assert_array_equal(layer(x), 2 * x)
    assert layer.built and len(layer.params) == 1


class _BadGradient(pynn.layers.Layer):
    def __init__(self, mode, **kw):
        super().__init__(**kw)
        self.mode = mode

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.s = self.add_weight("s", shape=input_shape, initializer="ones")

    def forward(self, x, training=False, logits=False):
        self.x = x
        return x * self.s.value

    def backward(self, dy, need_input_grad=True, logits=False):
        self.s.grad = (dy * self.x).sum(axis=0)
        if self.mode == "weight":
            self.s.grad = self.s.grad[:1]  # broadcast silently on the numpy backend
        if self.mode == "input":
            return (dy * self.s.value)[:, :1]
        if self.mode == "list":
            return (dy * self.s.value).tolist()
        return dy * self.s.value


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("mode, words", [
    ("weight", r"_bad_gradient\S*/s.grad has shape \(1,\); it must have \(4,\)"),
    ("input", r"backward's gradient of its input has shape \(8, 1\); it must have \(8, 4\)"),
    ("list", "backward's gradient of its input is a list, not an array")])
def test_a_gradient_of_the_wrong_shape_names_the_layer(rng, backend, mode, words):
    from conftest import AVAILABLE

    if backend not in AVAILABLE:
        pytest.skip(f"backend {backend} unavailable")
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(4), _BadGradient(mode),
                             pynn.Dense(1)])
    model.compile("sgd", "mse", backend=backend)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    with pytest.raises((ValueError, TypeError), match=words):
        model.fit(x, x[:, :1], epochs=1, verbose=0, engine="layers")


class _WrongLossGradient(pynn.losses.Loss):
    name = "wrong"

    def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
        d = y_pred - y_true
        return float((d * d).sum()), (2 * d * scale).ravel()  # flattened: wrong shape


def test_a_losss_gradient_of_the_wrong_shape_names_the_loss(rng):
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(2)])
    model.compile("sgd", _WrongLossGradient())
    x = rng.normal(size=(8, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"loss _WrongLossGradient: the gradient of the loss "
                                         r"has shape \(16,\); it must have \(8, 2\)"):
        model.fit(x, x[:, :2], epochs=1, verbose=0)


class _Reverse(pynn.layers.Layer):
    def forward(self, x, training=False, logits=False):
        return x[..., ::-1]  # a view of negative stride

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy[..., ::-1]


@requires_backend("cpu")
def test_a_layer_returning_a_strided_view_feeds_the_next_dense(rng):
    x = rng.normal(size=(8, 4)).astype(np.float32)
    results = []
    for backend in ("numpy", "cpu"):
        pynn.set_seed(2)
        model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(4), _Reverse(), pynn.Dense(1)])
        model.compile("sgd", "mse", backend=backend)
        model.fit(x, x[:, :1], epochs=2, batch_size=4, verbose=0)
        results.append(model.predict(x, verbose=0))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


class _Widen(pynn.layers.Layer):
    """Doubles the features without declaring it (no compute_output_shape)."""

    def forward(self, x, training=False, logits=False):
        return np.concatenate([x, x], axis=1)


@pytest.mark.parametrize("between", [False, True])
def test_an_undeclared_output_shape_is_named_by_its_layer(rng, between):
    """A layer of the user's widening its samples without compute_output_shape: the layers
    after it were built for the declared shape. Named when the next layer failed; with an
    element-wise layer between them, the error came later, blaming the targets."""
    relu = [pynn.layers.ReLU()] if between else []
    model = pynn.Sequential([pynn.Input((4,)), _Widen(), *relu, pynn.Dense(1)])
    model.compile("sgd", "mse")
    x = rng.normal(size=(3, 4)).astype(np.float32)
    for call in (lambda: model.predict(x, verbose=0),
                 lambda: model.fit(x, np.zeros((3, 1)), verbose=0)):
        with pytest.raises(ValueError, match=r"layer '_+widen\w*' \(_Widen\) returned samples "
                                             r"of shape \(8,\), but its compute_output_shape "
                                             r"says \(4,\)"):
            call()


class _Noisy(pynn.layers.RandomLayer):
    def forward(self, x, training=False, logits=False):
        return x


def test_a_user_random_layer_keeps_its_seed_in_files(tmp_path):
    model = pynn.Sequential([pynn.Input((2,)), _Noisy(seed=123), pynn.Dense(1)])
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz", custom_objects={"_Noisy": _Noisy})
    assert loaded.layers[1].seed == 123


def test_keras_names_for_custom_code():
    assert pynn.utils.custom_object_scope is pynn.custom_objects.custom_object_scope
    config = pynn.Dense(3).get_config()
    assert pynn.Dense.from_config({**config, "quantization_config": None}).units == 3
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    with pytest.raises(TypeError, match="index must be an integer"):
        model.get_layer(index=True)


class _PairDense(pynn.layers.Layer):
    """Passes (x @ W, x) on: a tuple, whose gradient is a tuple too."""

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.w = self.add_weight("w", shape=(input_shape[0], input_shape[0]))

    def forward(self, x, training=False, logits=False):
        self.x = x
        return (x @ self.w.value, x)

    def backward(self, dy, need_input_grad=True, logits=False):
        a, c = dy
        self.w.grad = self.x.T @ a
        return a @ self.w.value.T + c


class _Unpair(pynn.layers.Layer):
    def forward(self, x, training=False, logits=False):
        return x[0] + x[1]

    def backward(self, dy, need_input_grad=True, logits=False):
        return (dy, dy)


class _ScalarScale(pynn.layers.Layer):
    """x * t for a (1,) weight t whose gradient comes as a 0-d array."""

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.t = self.add_weight("t", shape=(1,), initializer="ones")

    def forward(self, x, training=False, logits=False):
        self.x = x
        return x * self.t.value

    def backward(self, dy, need_input_grad=True, logits=False):
        self.t.grad = (dy * self.x).sum()  # 0-d: the weight's size, another shape
        return dy * self.t.value


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_legitimate_custom_gradients_still_train(rng, backend):
    from conftest import AVAILABLE

    if backend not in AVAILABLE:
        pytest.skip(f"backend {backend} unavailable")
    x = rng.normal(size=(8, 5)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(5), _PairDense(), _Unpair(),
                             _ScalarScale(), pynn.Dense(1)])
    model.compile("sgd", "mse", backend=backend)
    t0 = model.layers[4].t.numpy().copy()
    h = model.fit(x, x[:, :1], epochs=2, verbose=0, engine="layers")
    assert np.isfinite(h.history["loss"]).all() and model.layers[4].t.numpy() != t0


class _FixedSeedNoise(pynn.layers.RandomLayer):
    def __init__(self, **kw):
        super().__init__(seed=1234, **kw)  # a seed of its own: its constructor takes none

    def forward(self, x, training=False, logits=False):
        return x


def test_a_random_layer_fixing_its_own_seed_saves_and_copies(tmp_path):
    import copy

    model = pynn.Sequential([pynn.Input((2,)), _FixedSeedNoise(), pynn.Dense(1)])
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz",
                             custom_objects={"_FixedSeedNoise": _FixedSeedNoise})
    assert loaded.layers[1].seed == copy.deepcopy(model).layers[1].seed == 1234


def test_a_users_optimizer_with_an_accumulator_slot(rng):
    class SumOfSquares(pynn.optimizers.Optimizer):
        slots = ("accumulator",)

        def __init__(self, learning_rate=0.1, **kw):
            super().__init__(learning_rate, **kw)

        def _update(self, b, w, g, s, lr):
            s["accumulator"] += g * g
            w -= lr * g / (np.sqrt(s["accumulator"]) + 1e-7)

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(SumOfSquares(), "mse", backend="numpy")
    x = rng.normal(size=(6, 3)).astype(np.float32)
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    slot = model.optimizer.state_of(model.layers[1].kernel)["accumulator"]
    assert (slot > 0).all()  # started at 0 (Adagrad's start is its own)


def test_a_weight_name_with_a_slash_is_refused():
    """Files key a weight by its name after the layer's "/": "a/w" and "b/w" collided, one
    silently loading as the other (Keras 3 refuses "/" in a name too)."""
    class TwoScales(pynn.layers.Layer):
        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.add_weight("a/scale", shape=(2,), initializer="ones")

        def forward(self, x, training=False, logits=False):
            return x

    with pytest.raises(ValueError, match="name must be a string without '/', got 'a/scale'"):
        pynn.Sequential([pynn.Input((2,)), TwoScales()])



def test_a_weight_owns_its_values():
    """add_weight kept a float32 array it was given by reference: two layers given one array
    (or an initializer's cached one) shared their weights, and training one moved the other
    and the caller's array."""
    init = np.ones(3, np.float32)

    class Scale(pynn.layers.Layer):
        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.w = self.add_weight("w", init)

        def forward(self, x, training=False, logits=False):
            self._x = x
            return x * self.w.value

        def backward(self, dy, need_input_grad=True, logits=False):
            self.w.grad = (dy * self._x).sum(axis=0)
            return dy * self.w.value

    trained = pynn.Sequential([pynn.Input((3,)), Scale()])
    other = pynn.Sequential([pynn.Input((3,)), Scale()])
    trained.compile(optimizer="sgd", loss="mse")
    trained.fit(np.ones((8, 3), np.float32), np.zeros((8, 3), np.float32), epochs=2, verbose=0)
    assert not np.array_equal(trained.layers[1].w.numpy(), init)
    np.testing.assert_array_equal(other.layers[1].w.numpy(), np.ones(3))
    np.testing.assert_array_equal(init, np.ones(3))
    cached = np.full((3, 2), 0.5, np.float32)

    class Cached(pynn.initializers.Initializer):  # (returns the same array every time)
        def __call__(self, shape, dtype="float32"):
            return cached

    dense = pynn.Dense(2, kernel_initializer=Cached())
    pynn.Sequential([pynn.Input((3,)), dense])
    assert not np.shares_memory(dense.kernel.numpy(), cached)


def test_a_keras_style_build_is_taken(rng):
    """Keras' build(self, input_shape) was refused (the most common Keras habit); it is
    called as Keras calls it, with the batch axis (None, ...), after the backend and float
    type are set, so its add_weight makes the weights there. A build that takes neither
    form is refused by name."""
    seen = []

    class Linear(pynn.layers.Layer):
        def build(self, input_shape):  # Keras' signature
            seen.append(input_shape)
            self.w = self.add_weight(shape=(input_shape[-1], 2), initializer="ones",
                                     name="w")

        def compute_output_shape(self, input_shape):
            return (2,)

        def forward(self, x, training=False, logits=False):
            self._x = x
            return x @ self.w.value

        def backward(self, dy, need_input_grad=True, logits=False):
            self.w.grad = self._x.T @ dy
            return dy @ self.w.value.T

    x = rng.normal(size=(6, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), Linear(name="lin")])
    assert seen == [(None, 3)] and model.get_layer("lin").w.shape == (3, 2)
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ np.ones((3, 2)), rtol=1e-6)
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((6, 2)), verbose=0)
    assert not np.array_equal(model.get_layer("lin").w.numpy(), np.ones((3, 2)))

    class Odd(Linear):
        def build(self, input_shape, backend, dtype, extra):
            pass

    with pytest.raises(TypeError, match=r"Odd.build\(input_shape, backend, dtype, extra\): "
                                        r"pynn calls build\(input_shape, backend, dtype\) "
                                        r"\(or Keras' build\(input_shape\)\)"):
        pynn.Sequential([pynn.Input((3,)), Odd()])


def test_a_layer_with_keras_call_alone_is_refused_when_added():
    """It was taken, the next Dense built for its input's width (summary showed it), and
    predict failed with "defines no forward"."""
    class Pairs(pynn.layers.Layer):
        def call(self, x):
            return x[:, :2] * 2.0

    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(6)])
    with pytest.raises(TypeError, match=r"'pairs.*' \(Pairs\) defines no forward\(x, "
                                        r"training, logits\) \(it defines Keras' call\(\)"):
        model.add(Pairs())
    with pytest.raises(TypeError, match=r"defines no forward\(x, training, logits\): pynn"):
        pynn.Sequential([pynn.layers.Layer()])
    assert len(model.layers) == 2


def test_a_layer_of_your_own_keeps_the_activation_it_stores(rng):
    """Keras' custom layers keep a function in self.activation: pynn converted it as a
    Dense's activation name and refused it."""
    class Scale(pynn.layers.Layer):
        def __init__(self, activation=None, **kwargs):
            super().__init__(**kwargs)
            self.activation = activation

        def forward(self, x, training=False, logits=False):
            return self.activation(x * 2) if callable(self.activation) else x * 2

    x = rng.normal(size=(4, 3)).astype(np.float32)
    layer = Scale(np.tanh)
    assert layer.activation is np.tanh
    np.testing.assert_allclose(layer(x), np.tanh(x * 2), rtol=1e-6)
    assert Scale("relu").activation == "relu"  # kept as given
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.layers[1].activation = "tanh"  # pynn's own layers still convert a name
    assert model.layers[1].activation == pynn.activations.Spec("tanh")


def test_built_layers_and_trained_optimizers_copy_and_pickle(rng):
    """copy.deepcopy and pickle of a built layer, a weight or a trained optimizer failed on
    the backend's array module (TypeError: cannot pickle 'module' object); a copied trained
    optimizer was refused by another model as "already trains another model"."""
    import copy
    import pickle

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="mse")
    model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), verbose=0)
    dense = model.layers[1]
    for twin in (copy.deepcopy(dense), pickle.loads(pickle.dumps(dense))):
        np.testing.assert_array_equal(twin.kernel.numpy(), dense.kernel.numpy())
        assert not np.shares_memory(twin.kernel.numpy(), dense.kernel.numpy())
        assert twin.backend is dense.backend  # (this process's backend, by name)
    np.testing.assert_array_equal(copy.deepcopy(dense.kernel).numpy(), dense.kernel.numpy())
    optimizer = copy.deepcopy(model.optimizer)
    other = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    other.compile(optimizer=optimizer, loss="mse")
    other.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), verbose=0)
    again = pynn.optimizers.Adam.from_config(model.optimizer.get_config())
    assert again.get_config() == model.optimizer.get_config()


_SHARED_INIT = np.ones(3, np.float32)


class _FromShared(pynn.layers.Layer):
    """A custom layer whose weight starts from one module-level array."""

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.w = self.add_weight("w", _SHARED_INIT)

    def forward(self, x, training=False, logits=False):
        return x * self.w.value


def test_layers_loaded_from_one_initial_array_keep_their_own_values():
    """Rebuilt to load (deepcopy, load_model, unpickling), add_weight kept the given array
    itself: two such layers then shared it, and the file's values were written into the
    module's array (both copies ending with the second layer's values)."""
    import copy

    model = pynn.Sequential([pynn.Input((3,)), _FromShared(), _FromShared()])
    model.layers[1].w.assign(np.full(3, 2.0, np.float32))
    model.layers[2].w.assign(np.full(3, 5.0, np.float32))
    twin = copy.deepcopy(model)
    np.testing.assert_array_equal(twin.layers[1].w.numpy(), np.full(3, 2.0))
    np.testing.assert_array_equal(twin.layers[2].w.numpy(), np.full(3, 5.0))
    np.testing.assert_array_equal(_SHARED_INIT, np.ones(3))



def test_building_takes_its_own_initial_values_without_a_copy():
    """pynn's initializers make new arrays, which a weight takes as they are (a copy at
    build held each weight twice for a moment: +64 MB for a 4096 x 4096 kernel); a weight's
    array handed to another layer's add_weight is copied all the same."""
    import tracemalloc

    tracemalloc.start()
    dense = pynn.Dense(2048, kernel_initializer="zeros", use_bias=False)
    pynn.Sequential([pynn.Input((2048,)), dense])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.3 * dense.kernel.numpy().nbytes, peak

    class Borrow(pynn.layers.Layer):
        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.w = self.add_weight("w", dense.kernel.value)

        def forward(self, x, training=False, logits=False):
            return x

    borrow = Borrow()
    pynn.Sequential([pynn.Input((3,)), borrow])
    assert not np.shares_memory(borrow.w.numpy(), dense.kernel.numpy())

    class KeepsStart(pynn.layers.Layer):  # the public initial_values: its result is the
        def build(self, input_shape, backend, dtype):  # caller's to keep, so copied
            super().build(input_shape, backend, dtype)
            self.start = self.initial_values(pynn.initializers.get("ones"), (3,), dtype)
            self.k = self.add_weight("k", self.start)

        def forward(self, x, training=False, logits=False):
            return x

    keeps = KeepsStart()
    pynn.Sequential([pynn.Input((3,)), keeps])
    assert not np.shares_memory(keeps.start, keeps.k.numpy())


def test_keras_methods_over_pynn_classes_are_refused_not_ignored():
    """A subclass of a pynn layer, loss or regularizer overriding only Keras' method (call,
    __call__) was silently ignored: Dense's outputs not doubled, plain MSE trained, no
    penalty (or an AttributeError mid-fit where __init__ skipped the base's)."""
    class DoubledDense(pynn.layers.Dense):
        def call(self, inputs):
            return super().call(inputs) * 2.0

    class ScaledMSE(pynn.losses.MeanSquaredError):
        def call(self, y_true, y_pred):
            return 10.0 * super().call(y_true, y_pred)

    class KerasRegularizer(pynn.regularizers.Regularizer):
        def __init__(self, strength):
            self.strength = strength

        def __call__(self, x):
            return self.strength * np.sum(np.square(x))

    with pytest.raises(TypeError, match=r"overrides Keras' call\(\), which pynn does not run"):
        pynn.Sequential([pynn.Input((3,)), DoubledDense(1)])
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    with pytest.raises(TypeError, match=r"ScaledMSE: a pynn loss defines _sum_and_grad"):
        model.compile("sgd", ScaledMSE())
    with pytest.raises(TypeError, match=r"KerasRegularizer: a pynn regularizer gives its "
                                        r"penalty and gradient"):
        pynn.layers.Dense(2, kernel_regularizer=KerasRegularizer(1.0))

    class Both(pynn.layers.Dense):  # call() beside pynn's own methods: pynn's run
        def forward(self, x, training=False, logits=False):
            return 2.0 * super().forward(x, training, logits)

        def backward(self, dy, need_input_grad=True, logits=False):
            return super().backward(2.0 * dy, need_input_grad, logits)

        def call(self, x):
            return self.forward(x)

    model = pynn.Sequential([pynn.Input((3,)), Both(1, kernel_initializer="ones")])
    np.testing.assert_allclose(model.predict(np.ones((1, 3))), [[6.0]])


# ---- mistakes in a layer of one's own (a user-level review, 2026-12-05) -----------------------
class _Mistaken(pynn.layers.Layer):
    """A scale layer whose forward or backward makes the mistake `mode` names."""

    def __init__(self, mode="", **kw):
        super().__init__(**kw)
        self.mode = mode

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.k = self.add_weight("k", shape=(input_shape[0], 3), initializer="ones")
        self.b = self.add_weight("b", shape=(3,), initializer="zeros")
        self.calls = 0

    def compute_output_shape(self, input_shape):
        return (3,)

    def forward(self, x, training=False, logits=False):
        if self.mode == "in place":
            x *= 2
        self.x = x
        y = x @ self.k.value + self.b.value
        if self.mode == "batch mean":
            return y.mean(axis=0, keepdims=True)
        if self.mode == "list":
            return list(y)
        if self.mode == "float64":
            return y.astype(np.float64)
        return y

    def backward(self, dy, need_input_grad=True, logits=False):
        self.calls += 1
        grad = self.x.T @ dy
        if self.mode == "transposed":
            grad = grad.T.copy()
        if self.mode == "flat":
            grad = grad.ravel()
        self.k.grad = grad
        if self.mode != "no bias":
            self.b.grad = dy.sum(axis=0)
        return dy @ self.k.value.T


def _mistaken_model(mode, last=True):
    layers = [pynn.Input((4,)), _Mistaken(mode)] + ([] if last else [pynn.Dense(2)])
    model = pynn.Sequential(layers)
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_a_layers_outputs_are_checked_for_rows_type_and_float_type(rng):
    x = rng.normal(size=(5, 4)).astype(np.float32)
    # a mean over the batch axis: predict gave rows of uninitialised memory
    model = _mistaken_model("batch mean")
    for call in (lambda: model.predict(x), lambda: model(x),
                 lambda: model.fit(x, np.zeros((5, 3)), verbose=0)):
        with pytest.raises(ValueError, match=r"_mistaken.*forward returned \(1, 3\) for "
                                             r"inputs \(5, 4\): one output row per input"):
            call()
    # a list: broadcast into (5, 5, 3) as the output, or blamed on the next layer
    with pytest.raises(TypeError, match=r"forward returned a list, not an array, as the "
                                        r"model's output"):
        _mistaken_model("list").predict(x)
    with pytest.raises(TypeError, match=r"as the next layer's input \(layer 'dense"):
        _mistaken_model("list", last=False).predict(x)
    # float64 results spread to the model's outputs: the model's float type, as Keras
    model = _mistaken_model("float64")
    assert model.predict(x).dtype == np.float32 and model(x).dtype == np.float32


def test_a_layer_writing_into_its_input_leaves_the_callers_data_alone(rng):
    x = rng.normal(size=(6, 4)).astype(np.float32)
    kept = x.copy()
    model = _mistaken_model("in place")
    for call in (lambda: model.predict(x), lambda: model(x), lambda: model.evaluate(
            x, np.zeros((6, 3))), lambda: model(x, training=True)):
        call()  # the layer writes into its own copy (predict's raised numpy's read-only error)
    np.testing.assert_array_equal(x, kept)
    for shuffle in (False, True):
        model.fit(x, np.zeros((6, 3)), verbose=0, shuffle=shuffle)
        np.testing.assert_array_equal(x, kept)


def test_weight_gradients_of_the_wrong_shape_or_missing_are_named(rng):
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.normal(size=(8, 3)).astype(np.float32) + 5
    # the right size in a transposed shape was reshaped: the values scrambled
    with pytest.raises(ValueError, match=r"k.grad has shape \(3, 4\); it must have \(4, 3\)"):
        _mistaken_model("transposed").fit(x, y, verbose=0)
    # a flat gradient takes the weight's shape in C order, as before
    flat, plain = _mistaken_model("flat"), _mistaken_model("")
    plain.set_weights(flat.get_weights())
    flat.train_on_batch(x, y)
    plain.train_on_batch(x, y)
    np.testing.assert_array_equal(flat.get_weights()[0], plain.get_weights()[0])
    # a forgotten one: the bias silently stayed 0
    model = _mistaken_model("no bias")
    with pytest.warns(UserWarning, match=r"weight\(s\) \['_+mistaken.*/b'\]: they are not "
                                         r"updated"):
        model.fit(x, y, epochs=2, verbose=0)
    assert not model.layers[1].b.numpy().any()


class _Scale(pynn.layers.Layer):
    """x times a trainable scalar weight of shape ()."""

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.s = self.add_weight(shape=(), initializer="ones", name="s")

    def forward(self, x, training=False, logits=False):
        self.x = x
        return x * self.s.value

    def backward(self, dy, need_input_grad=True, logits=False):
        self.s.grad = (dy * self.x).sum()
        return dy * self.s.value


def test_a_scalar_weight_keeps_its_shape(rng):
    model = pynn.Sequential([pynn.Input((3,)), _Scale()])
    model.compile(optimizer="adam", loss="mse")
    x = rng.normal(size=(16, 3)).astype(np.float32)
    model.fit(x, 2 * x, epochs=2, verbose=0)
    assert model.layers[1].s.shape == () and [w.shape for w in model.get_weights()] == [()]
    assert float(model.layers[1].s.numpy()) > 1  # trained towards 2


def test_a_weight_of_integers_keeps_its_type_through_compile_training_and_files(tmp_path):
    # it became float32 at compile (a counter inexact past 2**24) and files refused integers
    class Counter(pynn.layers.Layer):
        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.n = self.add_weight(shape=(), dtype="int64", initializer="zeros", name="n")

        def forward(self, x, training=False, logits=False):
            if training:
                self.n.value[...] += len(x)
            return x

        def backward(self, dy, need_input_grad=True, logits=False):
            return dy

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(3), Counter()])
    model.compile(optimizer="adam", loss="mse")
    counter = model.layers[2]
    assert counter.n.dtype == np.int64 and not counter.n.trainable  # (never trained)
    x = np.ones((8, 3), np.float32)
    model.fit(x, x, epochs=2, batch_size=4, verbose=0)
    pynn.set_floatx("float64")
    try:
        model.compile(optimizer="adam", loss="mse")
        assert counter.n.dtype == np.int64 and counter.n.numpy() == 16
    finally:
        pynn.set_floatx("float32")
    model.compile(optimizer="adam", loss="mse")  # (the Dense back in float32)
    for name in ("c.npz", "c.keras"):
        model.save(tmp_path / name)
        loaded = pynn.load_model(tmp_path / name, custom_objects={"Counter": Counter})
        n = loaded.layers[2].n
        assert n.dtype == np.int64 and n.numpy() == 16


def test_a_weight_made_inside_forward_is_refused(rng):
    # it trained, saved, and the file did not load: the model rebuilt by build lacked it
    class Lazy(pynn.layers.Layer):
        def forward(self, x, training=False, logits=False):
            if not hasattr(self, "w"):
                self.w = self.add_weight(shape=(x.shape[-1],), initializer="ones", name="w")
            return x * self.w.value

    x = rng.normal(size=(4, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), Lazy()])
    for call in (lambda: model.predict(x), lambda: Lazy()(x)):
        with pytest.raises(ValueError, match=r"add_weight\('w'\) inside forward: create "
                                             r"weights in build"):
            call()
    ScaledDense(2)(x)  # (build's add_weight, called by a layer call: as before)


def test_gradients_a_layer_keeps_across_steps_still_train(rng):
    # clearing the gradients before each layer's backward (tried, not kept) lost a tied
    # weight's share set by a later layer and left a buffer written in place (out=) empty
    class InPlaceGrad(_Mistaken):
        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.k.grad = np.zeros_like(self.k.value)  # a buffer of its own

        def backward(self, dy, need_input_grad=True, logits=False):
            np.matmul(self.x.T, dy, out=self.k.grad)  # written in place each step
            self.b.grad = dy.sum(axis=0)
            return dy @ self.k.value.T

    model = pynn.Sequential([pynn.Input((4,)), InPlaceGrad()])
    model.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.normal(size=(16, 3)).astype(np.float32)
    losses = model.fit(x, y, epochs=4, verbose=0).history["loss"]
    assert losses[-1] < losses[0]


def test_files_of_scalar_weights_stored_as_one_value_load(tmp_path, rng):
    # pynn stored add_weight(shape=()) as (1,) before 2026-12-05 (its slots too): such
    # files must still load, and training resumes on them
    import io
    import zipfile

    x = rng.normal(size=(16, 3)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), _Scale(), pynn.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x[:, :1], epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "new.npz")
    with zipfile.ZipFile(tmp_path / "new.npz") as src, \
            zipfile.ZipFile(tmp_path / "old.npz", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(".npy"):
                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.shape == () and array.dtype.kind == "f":  # the weight, its slots
                    buffer = io.BytesIO()
                    np.save(buffer, array.reshape(1))
                    data = buffer.getvalue()
            dst.writestr(item, data)
    for name in ("new.npz", "old.npz"):
        loaded = pynn.load_model(tmp_path / name, custom_objects={"_Scale": _Scale})
        assert loaded.layers[1].s.shape == ()
        loaded.fit(x, x[:, :1], epochs=1, batch_size=4, verbose=0, shuffle=False)
        if name == "new.npz":
            want = loaded.get_weights()
    np.testing.assert_array_equal(loaded.get_weights()[0], want[0])
    model.layers[1].s.assign(np.full(1, 2.0))  # set_weights of an old get_weights() list
    assert model.layers[1].s.numpy() == 2.0


class _Block(pynn.layers.Layer):
    """Two Dense layers held as attributes, as Keras' guide composes layers."""

    def __init__(self, units=3, **kw):
        super().__init__(**kw)
        self.units = units
        self.inner = [pynn.layers.Dense(units, activation="tanh", kernel_regularizer="l2"),
                      pynn.layers.Dense(units)]

    def build(self, input_shape, backend=None, dtype=None):
        super().build(input_shape, backend, dtype)
        self.inner[0].build(input_shape, backend, dtype)
        self.inner[1].build((self.units,), backend, dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def forward(self, x, training=False, logits=False):
        return self.inner[1].forward(self.inner[0].forward(x, training), training)

    def backward(self, dy, need_input_grad=True, logits=False):
        return self.inner[0].backward(self.inner[1].backward(dy), need_input_grad)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_a_layer_made_of_layers_trains_saves_and_freezes_their_weights(rng, tmp_path):
    """Its inner layers' weights were not the model's: fit trained nothing and files lost
    them, silently. Keras tracks layers held in attributes; so does pynn now."""
    x = rng.normal(size=(48, 4)).astype(np.float32)
    y = np.tanh(x[:, :3] * 2)
    model = pynn.Sequential([pynn.Input((4,)), _Block(3), pynn.layers.Dense(1)])
    block = model.layers[1]
    assert model.count_params() == 4 * 3 + 3 + 3 * 3 + 3 + 3 + 1
    assert [p.name for p in block.weights] == [p.name for layer in block.inner
                                               for p in layer.weights]
    model.compile(optimizer="adam", loss="mse")
    before = block.get_weights()
    model.fit(x, y[:, :1], epochs=3, batch_size=16, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, block.get_weights()))
    # the inner kernel's l2 penalty joins the loss
    penalty = 0.01 * np.sum(block.inner[0].get_weights()[0].astype(np.float64) ** 2)
    assert sum(model.losses) == pytest.approx(penalty, rel=1e-5)
    model.save(tmp_path / "m.npz")
    loaded = pynn.load_model(tmp_path / "m.npz", custom_objects={"_Block": _Block})
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    block.trainable = False
    frozen = block.get_weights()
    model.fit(x, y[:, :1], epochs=1, verbose=0)
    for a, b in zip(frozen, block.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.count_params() - sum(np.prod(p.shape) for p in model.trainable_weights) == \
        sum(w.size for w in frozen)


class _DenseTranspose(pynn.layers.Layer):
    """A tied-weights decoder: the encoder's kernel, transposed, and a bias of its own."""

    def __init__(self, dense, **kw):
        super().__init__(**kw)
        self.dense = dense

    def build(self, input_shape, backend=None, dtype=None):
        super().build(input_shape, backend, dtype)
        self.b = self.add_weight(shape=(self.dense.input_shape[-1],), initializer="zeros",
                                 name="b")

    def compute_output_shape(self, input_shape):
        return self.dense.input_shape

    def forward(self, x, training=False, logits=False):
        self._x = x
        return x @ self.dense.kernel.value.T + self.b.value

    def backward(self, dy, need_input_grad=True, logits=False):
        # (the kernel's gradient is the encoder's: a Dense sets its grad, it does not add)
        self.b.grad = dy.sum(axis=0)
        return dy @ self.dense.kernel.value


def test_a_layer_sharing_weights_with_the_models_own_counts_them_once(rng):
    """A tied-weights autoencoder (Keras' example) was refused by the tracking's first form:
    the model trains the encoder's kernel, once; the decoder adds its bias alone."""
    encoder = pynn.layers.Dense(2)
    model = pynn.Sequential([pynn.Input((4,)), encoder, _DenseTranspose(encoder)])
    assert model.count_params() == 4 * 2 + 2 + 4  # as Keras counts it
    assert len(model.layers[2].weights) == 1 and len(model.weights) == 3
    x = rng.normal(size=(32, 4)).astype(np.float32)
    model.compile(optimizer=pynn.optimizers.SGD(0.01), loss="mse")
    before = model.layers[1].get_weights()[0]
    model.fit(x, x, epochs=1, batch_size=32, verbose=0, engine="layers")
    assert not np.array_equal(before, model.layers[1].get_weights()[0])


def test_what_a_layer_holds_is_tracked_once_whatever_the_path(rng):
    """Cases the tracking's first form got wrong: a back-reference (RecursionError), a layer
    reached by two paths (its penalty counted twice), a layer passed to the constructor and
    not kept (pynn's config bookkeeping held it), two blocks sharing one layer, a layer of
    the model held before the model built it; an unbuilt layer held is refused."""
    inner = pynn.layers.Dense(3, kernel_regularizer="l2")

    class Holder(pynn.layers.Layer):
        def __init__(self, held, keep=True, **kw):
            super().__init__(**kw)
            if keep:
                self.held = held
                self.again = {"same": held}  # a second path to it
                held.parent = self  # a back-reference

        def build(self, input_shape, backend=None, dtype=None):
            super().build(input_shape, backend, dtype)
            held = self.__dict__.get("held")
            if held is not None and not held.built:
                held.build(input_shape, backend, dtype)

        def forward(self, x, training=False, logits=False):
            return x

        def backward(self, dy, need_input_grad=True, logits=False):
            return dy

    model = pynn.Sequential([pynn.Input((3,)), Holder(inner), Holder(inner)])
    assert model.count_params() == 3 * 3 + 3  # shared by both holders: once
    penalty = 0.01 * np.sum(inner.get_weights()[0].astype(np.float64) ** 2)
    assert sum(model.losses) == pytest.approx(penalty, rel=1e-6)
    # a layer passed and not kept is not held (its config bookkeeping keeps it)
    assert pynn.Sequential([pynn.Input((3,)), Holder(pynn.layers.Dense(2), keep=False)]) \
        .count_params() == 0
    later = pynn.layers.Dropout(0.5)  # a layer of the model, built after its holder
    pynn.Sequential([pynn.Input((3,)), _Peek(later), later])

    class Unbuilt(_Peek):
        pass

    with pytest.raises(ValueError, match="holds layer 'dense.*', which is not built: build "
                                         "it in"):
        pynn.Sequential([pynn.Input((4,)), Unbuilt(pynn.layers.Dense(2))])


class _Wrap(pynn.layers.Layer):
    """Holds one Dense, built in its build()."""

    def __init__(self, inner=None, **kw):
        super().__init__(**kw)
        self.inner = inner if inner is not None else pynn.layers.Dense(3)

    def build(self, input_shape, backend=None, dtype=None):
        super().build(input_shape, backend, dtype)
        if not self.inner.built:
            self.inner.build(input_shape, backend, dtype)

    def compute_output_shape(self, input_shape):
        return self.inner.compute_output_shape(input_shape)

    def forward(self, x, training=False, logits=False):
        return self.inner.forward(x, training)

    def backward(self, dy, need_input_grad=True, logits=False):
        return self.inner.backward(dy, need_input_grad)


class _Peek(pynn.layers.Layer):
    """Holds another layer (reads it) and passes its input on."""

    def __init__(self, other, **kw):
        super().__init__(**kw)
        self.other = other

    def forward(self, x, training=False, logits=False):
        return x

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy


def test_tracking_follows_each_model_and_reaches_every_depth(rng):
    """The review of the tracking's second form: a holder built in a second model kept the
    weights it took there (a weight trained twice a step in the first); a holder called on
    an array tracked nothing; a holder inside a holder owned nothing of its own."""
    x = rng.normal(size=(8, 4)).astype(np.float32)
    encoder = pynn.layers.Dense(1, kernel_initializer="ones")

    peek = _Peek(encoder)  # holds a layer of model A
    model_a = pynn.Sequential([pynn.Input((4,)), encoder, peek])
    model_a.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
    pynn.Sequential([pynn.Input((1,)), peek])  # built in another model: there it takes them
    assert len(peek.weights) == 2
    assert len(model_a.get_weights()) == 2 and model_a.count_params() == 5  # A's again
    assert peek.weights == []  # in model A, the encoder's
    start = encoder.get_weights()[0].copy()
    y = rng.normal(size=(8, 1)).astype(np.float32)
    model_a.fit(x, y, epochs=1, batch_size=8, verbose=0)
    once = pynn.Sequential([pynn.Input((4,)), pynn.layers.Dense(1, kernel_initializer="ones")])
    once.compile(optimizer=pynn.optimizers.SGD(0.1), loss="mse")
    once.fit(x, y, epochs=1, batch_size=8, verbose=0)  # (the kernel moved once, not twice)
    np.testing.assert_allclose(encoder.get_weights()[0] - start,
                               once.get_weights()[0] - 1.0, rtol=1e-5, atol=1e-7)
    alone = _Wrap()
    alone(x)  # eagerly: Keras tracks too
    assert len(alone.weights) == 2
    outer = _Wrap(_Wrap(pynn.layers.Dense(2)))
    model = pynn.Sequential([pynn.Input((4,)), outer, pynn.layers.Dense(1)])
    middle = outer.inner
    assert len(middle.weights) == 2 and len(outer.weights) == 2 and len(model.weights) == 4
    middle.trainable = False
    assert len(model.trainable_weights) == 2


def test_a_holder_shared_by_two_models_leaves_counts_and_flags_right(rng):
    """After another model re-tracked a shared holder: count_params, summary and losses
    read its stale weights (20 params for 10, a penalty twice), and the weights it let go
    stayed frozen after the holder was unfrozen (never trained again)."""
    dense = pynn.layers.Dense(2, kernel_regularizer="l2")

    peek = _Peek(dense)
    model_a = pynn.Sequential([pynn.Input((4,)), dense, peek])
    model_a.compile(optimizer="sgd", loss="mse")
    model_b = pynn.Sequential([pynn.Input((2,)), peek])  # there, peek owns dense's weights
    assert model_a.count_params() == 10 and len(model_a.losses) == 1
    peek.trainable = False
    model_b.get_weights()  # peek takes dense's weights again, frozen with it
    model_a.get_weights()  # and lets them go
    peek.trainable = True
    assert [p.name for p in model_a.trainable_weights] == [p.name for p in dense.weights]
    before = dense.get_weights()[0].copy()
    model_a.train_on_batch(rng.normal(size=(4, 4)), rng.normal(size=(4, 2)))
    assert not np.array_equal(before, dense.get_weights()[0])


def test_a_weight_let_go_keeps_its_owners_frozen_flag_and_a_refused_holder_stays_readable(
        rng):
    """Reviews of the tracking's third form: a weight let go took the flag of the holder it
    came from, unfreezing a frozen layer held deeper (fit then trained it); and once a
    holder was refused, every read of model.layers raised (no pop to mend it)."""
    inner = pynn.layers.Dense(2)
    inner.trainable = False
    middle = _Wrap(inner)
    middle(np.zeros((1, 2), np.float32))
    outer = _Peek(middle)
    pynn.Sequential([pynn.Input((2,)), outer])  # there, outer owns inner's weights
    model = pynn.Sequential([pynn.Input((2,)), middle, outer])  # here, middle is the model's
    assert [p.trainable for p in inner.weights] == [False, False]
    assert model.trainable_weights == []
    holder = _Wrap()
    model = pynn.Sequential([pynn.Input((3,)), holder, pynn.layers.Dense(1)])
    holder.extra = pynn.layers.Dense(5)  # held, never built
    pynn.Sequential([pynn.Input((3,)), _Wrap()])  # (moves the settings counter)
    assert len(model.layers) == 3 and model.get_layer(index=1) is holder
    with pytest.raises(ValueError, match="holds layer 'dense.*', which is not built"):
        model.get_weights()
    with pytest.raises(ValueError, match="holds layer 'dense.*', which is not built"):
        model.count_params()
    del holder.extra
    assert len(model.get_weights()) == 4


def test_a_layer_holding_a_model_is_refused_by_name(rng):
    """A layer holding a pynn model (Keras tracks a model as a layer) had none of its
    weights: fit trained none of them, files lost them, silently."""
    inner = pynn.Sequential([pynn.Input((2,)), pynn.layers.Dense(2)], name="encoder")
    holder = _Peek({"blocks": [inner]}, name="outer")
    refused = ("layer 'outer' holds model 'encoder': pynn tracks the weights of layers a "
               "layer holds, not of models")
    with pytest.raises(ValueError, match=refused):
        pynn.Sequential([pynn.Input((2,)), holder])
    holder.other = None
    model = pynn.Sequential([pynn.Input((2,)), holder])
    holder.other = inner  # held after the model was built: refused at its next step
    assert len(model.layers) == 2  # (read leniently)
    with pytest.raises(ValueError, match=refused):
        model.compile("sgd", "mse")
    holder.other = inner.layers  # its layers instead: tracked
    model.compile("sgd", "mse")
    assert model.count_params() == 6


def test_freezing_a_holder_sets_the_flags_of_the_layers_it_holds():
    """As Keras' trainable setter: the held layers' own flags follow (they stayed True while
    their weights were frozen), at every depth, a layer of the model held too (Keras' tied
    layer is the holder's sublayer), and before anything is built; a back-reference is no
    cycle."""
    deep = pynn.layers.Dense(2)
    middle = _Wrap(deep)
    shared = pynn.layers.Dense(2)
    outer = _Wrap(middle)
    outer.tied = shared
    shared.back = outer  # (a back-reference)
    model = pynn.Sequential([pynn.Input((2,)), shared, outer])
    outer.trainable = False
    assert not middle.trainable and not deep.trainable and not shared.trainable
    assert model.trainable_weights == []
    outer.trainable = True
    assert middle.trainable and deep.trainable and shared.trainable
    assert len(model.trainable_weights) == 4
    early = _Wrap()  # frozen before it is built (the review's case)
    early.trainable = False
    assert not early.inner.trainable
    pynn.Sequential([pynn.Input((2,)), early])
    assert not any(p.trainable for p in early.weights)


class _WrapMore(_Wrap):
    """A subclass whose build() holds one more layer, after its parent's build()."""

    def build(self, input_shape, backend=None, dtype=None):
        super().build(input_shape, backend, dtype)
        self.more = pynn.layers.Dense(3)
        self.more.build(input_shape, backend, dtype)


class _WrapSnapshot(_Wrap):
    """Keeps a copy of itself taken in the middle of its build()."""

    def build(self, input_shape, backend=None, dtype=None):
        self.copies.append(copy.deepcopy(self))
        super().build(input_shape, backend, dtype)


def test_a_holder_built_directly_tracks_what_it_holds(rng):
    """holder.build(shape) called by the user (no model, no call) tracked nothing: its
    weights were its own only, as Keras' are not (it tracks layers as they are set)."""
    holder = _Wrap()
    holder.build((4,))
    assert holder.weights == holder.inner.weights and holder.count_params() == 15
    chained = _WrapMore()
    chained.build((4,))  # tracked once its outermost build returns: both layers
    assert chained.weights == chained.inner.weights + chained.more.weights
    copied = []
    snapshot = _WrapSnapshot()
    snapshot.copies = copied
    snapshot.build((4,))  # a copy made inside its build() tracks at its own build
    twin = copied[0]
    twin.build((4,))
    assert twin.weights == twin.inner.weights and len(twin.weights) == 2
    x = rng.normal(size=(2, 4)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((4,)), chained])
    assert model.count_params() == 30
    np.testing.assert_allclose(model.predict(x, verbose=0), chained.inner.forward(x),
                               rtol=1e-6)


class _Doubling(pynn.layers.Layer):
    """Doubles its input in place: a mistake."""

    def forward(self, x, training=False):
        x *= 2.0
        return x

    def backward(self, dy, need_input_grad=True):
        return dy * 2.0


class _DoublingAnew(_Doubling):
    def forward(self, x, training=False):
        return x * 2.0


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("first", [True, False])
def test_a_layer_writing_into_its_input_writes_into_its_own_copy(rng, first, backend):
    """After a layer, the write went through: the sigmoid's output it keeps for its backward
    changed and its gradients were wrong, silently; as the first layer, fit's batch copy
    took it and evaluate/predict raised numpy's 'output array is read-only'. Each layer of
    yours gets its own copy of its input: the same numbers as computing a new array."""
    if backend not in AVAILABLE:
        pytest.skip(f"backend {backend!r} unavailable")
    pynn.set_backend(backend)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    results = []
    for cls in (_Doubling, _DoublingAnew):
        pynn.set_seed(0)
        before = [] if first else [pynn.Dense(4, activation="sigmoid")]
        model = pynn.Sequential([pynn.Input((5,)), *before, cls(),
                                 pynn.Dense(2, activation="softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy")
        loss, grads = model.compute_gradients(x, y)
        results.append([loss, *grads, model.predict(x, verbose=0), model.evaluate(x, y),
                        *model.fit(x, y, epochs=2, verbose=0, shuffle=False).history["loss"],
                        *model.get_weights()])
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)


class _Node(pynn.layers.Layer):
    """Passes its input on; keeps what a test gives it."""

    def forward(self, x, training=False):
        return x

    def backward(self, dy, need_input_grad=True):
        return dy


class _Flagged(_Node):
    """Its own trainable setter also sets a flag of its own (as a BatchNorm-like layer)."""

    @pynn.layers.Layer.trainable.setter
    def trainable(self, value):
        pynn.layers.Layer.trainable.fset(self, value)
        self.update_stats = bool(value)


def test_the_trainable_setter_reaches_each_layer_once_and_not_back_up():
    """The setter's walk was one visit per path (9 blocks sharing their list: 7 s, each
    more x10); a child holding its holder back froze the holder and its siblings; a held
    layer's own setter (a subclass's override) did not run."""
    blocks = [_Node() for _ in range(40)]
    for block in blocks:
        block.siblings = blocks
    root = _Node()
    root.blocks = blocks
    root.trainable = False  # (seconds per block before: this would not end)
    assert not any(block.trainable for block in blocks)
    looped = _Node()
    looped.items = []
    looped.items.append(looped.items)  # a list holding itself
    looped.trainable = False
    parent = _Wrap(_Node())
    parent.sibling = pynn.layers.Dense(2)
    parent.sibling.build((3,))
    parent.inner.parent = parent  # a back-reference
    parent.flagged = _Flagged()
    parent.flagged.build((3,))
    pynn.Sequential([pynn.Input((3,)), parent])  # (parent tracks what it holds)
    parent.inner.trainable = False
    assert parent.trainable and parent.sibling.trainable and not parent.inner.trainable
    parent.trainable = False
    assert not parent.sibling.trainable and parent.flagged.update_stats is False


class _Pair(_Node):
    """Hands the next layer a tuple (or list) of its sigmoid, which it keeps."""

    def __init__(self, container=tuple, **kw):
        super().__init__(**kw)
        self.container = container

    def forward(self, x, training=False):
        self.s = 1 / (1 + np.exp(-x))
        return self.container((self.s, self.s))

    def backward(self, dy, need_input_grad=True):
        return dy * self.s * (1 - self.s)


class _TripleFirst(_Node):
    def forward(self, x, training=False):
        first, _ = x
        first *= 3
        return first + 0


@pytest.mark.parametrize("container", [tuple, list])
def test_a_write_into_a_tuple_of_arrays_goes_into_copies(rng, container):
    x = rng.normal(size=(4, 3)).astype(np.float32)
    pair = _Pair(container)
    model = pynn.Sequential([pynn.Input((3,)), pair, _TripleFirst(), pynn.Dense(2)])
    model(x, training=True)
    np.testing.assert_allclose(pair.s, 1 / (1 + np.exp(-x)), rtol=1e-6)


class _KerasLinear(pynn.layers.Layer):
    """Keras' habits: build(input_shape) with the `if self.built: return` guard."""

    def build(self, input_shape):
        if self.built:
            return
        self.seen_backend = self.backend
        self.w = self.add_weight(shape=(input_shape[-1], 2), initializer="zeros", name="w")

    def compute_output_shape(self, input_shape):
        return (2,)

    def forward(self, x, training=False, logits=False):
        return x @ self.w.value


def test_a_keras_style_build_is_built_as_keras_marks_it(tmp_path, rng):
    """The review of the first form: `built` was True inside build (Keras' guard skipped the
    weights; Dense's use_bias could not be set there), a failed eager build left the layer
    built, and a direct layer.build((None, 3)) left it unbuilt (the model built it again:
    two weights, the set values lost, a file that would not load)."""
    x = np.ones((1, 3), np.float32)
    direct = _KerasLinear(name="q")
    direct.build((None, 3))
    assert direct.built and direct.count_params() == 6
    direct.set_weights([np.ones((3, 2))])
    model = pynn.Sequential([pynn.Input((3,)), direct])
    assert [w.name for w in model.weights] == ["q/w"]
    np.testing.assert_array_equal(model.predict(x, verbose=0), [[3.0, 3.0]])
    model.save(tmp_path / "q.npz")
    again = pynn.load_model(tmp_path / "q.npz", custom_objects={"_KerasLinear": _KerasLinear})
    np.testing.assert_array_equal(again.predict(x, verbose=0), [[3.0, 3.0]])
    calls = []

    class Failing(_KerasLinear):
        def build(self, input_shape):
            calls.append(input_shape)
            if len(calls) == 1:
                raise RuntimeError("the first build fails")
            super().build(input_shape)

    failing = Failing()
    with pytest.raises(RuntimeError, match="the first build fails"):
        failing(x)
    assert not failing.built
    np.testing.assert_array_equal(failing(x), [[0.0, 0.0]])

    class NoBias(pynn.layers.Dense):
        def build(self, input_shape):
            self.use_bias = input_shape[-1] > 5  # (refused: 'cannot change once built')
            super().build(input_shape)

    assert [w.name for w in pynn.Sequential([pynn.Input((3,)), NoBias(2, name="nb")]).weights] \
        == ["nb/kernel"]
    if "numpy" in AVAILABLE and "cpu" in AVAILABLE:  # the model's backend, set first
        pynn.set_backend("cpu")
        layer = _KerasLinear()
        model = pynn.Sequential([layer])
        model.compile("sgd", "mse", backend="numpy")
        model.predict(np.ones((2, 3)), verbose=0)
        assert layer.seen_backend.name == "numpy"
