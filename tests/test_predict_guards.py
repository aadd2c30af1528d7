"""model.predict's one-call path: the kept predict engine's guards (what it was built for,
checked in C++ on every call) and predict_current, which predicts only for float32 rows as the
model takes them and leaves everything else to the checked path."""

from __future__ import annotations

import types

import numpy as np
import pytest

import pynn
from conftest import requires_backend
from pynn import config

pytestmark = requires_backend("cpu")

IS, EQUALS, SAME_ITEMS = 0, 1, 2


def _guards_hold(model, guards):
    return pynn._C.DenseEngine.guards_hold(model, tuple(guards))


def test_each_kind_of_guard_holds_only_while_its_attribute_does():
    value, items = object(), [object(), object()]
    owner = types.SimpleNamespace(a=value, b=2.5, c=list(items))
    model = types.SimpleNamespace(a=value)
    guards = [(owner, "a", value, IS), (owner, "b", 2.5, EQUALS), (owner, "c", items, SAME_ITEMS),
              (None, "a", value, IS)]  # None: the model asked about
    assert _guards_hold(model, guards)
    for change in (lambda: setattr(owner, "a", object()),  # an equal-looking other object
                   lambda: setattr(owner, "b", 2.0),
                   lambda: owner.c.reverse(), lambda: owner.c.append(items[0]),
                   lambda: setattr(owner, "c", iter(items)),  # not a list or tuple: never read
                   lambda: delattr(owner, "a"),  # gone: the guard fails, nothing raises
                   lambda: setattr(model, "a", None)):
        saved = dict(vars(owner)), dict(vars(model))
        change()
        assert not _guards_hold(model, guards)
        owner.__dict__.clear(), owner.__dict__.update(saved[0])
        owner.c = list(items)
        model.__dict__.clear(), model.__dict__.update(saved[1])
        assert _guards_hold(model, guards)
    assert _guards_hold(model, [])


def test_malformed_guards_raise_a_clear_error():
    owner = types.SimpleNamespace(a=1)
    with pytest.raises(TypeError, match="tuple"):
        pynn._C.DenseEngine.guards_hold(owner, [(owner, "a", 1, IS)])
    with pytest.raises(TypeError, match="owner, attribute, expected, how"):
        _guards_hold(owner, [(owner, "a", 1)])
    with pytest.raises(ValueError, match="how must be"):
        _guards_hold(owner, [(owner, "a", 1, 7)])
    with pytest.raises(TypeError):
        _guards_hold(owner, [(owner, 3, 1, IS)])  # an attribute name that is not a string


def _model(rng, sample_shape=(13,)):
    layers = [pynn.Input(sample_shape)]
    if len(sample_shape) > 1:
        layers.append(pynn.layers.Flatten())
    model = pynn.Sequential(layers + [pynn.Dense(17, activation="relu"),
                                      pynn.Dense(3, activation="softmax")])
    model.predict(rng.normal(size=(2,) + sample_shape).astype(np.float32))  # keeps an engine
    assert model._predict_cache is not None
    return model


def _current(model, x):
    cache = model._predict_cache
    return cache.engine.predict_current(x, model, cache.sample_shape, cache.call_guards)


@pytest.mark.parametrize("sample_shape", [(13,), (3, 5)])
@pytest.mark.parametrize("n", [1, 3, 129])
def test_float32_rows_as_the_model_takes_them_predict_in_one_call(rng, n, sample_shape):
    model = _model(rng, sample_shape)
    x = rng.normal(size=(n,) + sample_shape).astype(np.float32)
    out = _current(model, x)
    assert out.dtype == np.float32 and out.shape == (n, 3)
    np.testing.assert_array_equal(out, model._predict_cache.predict(x))  # the checked call
    np.testing.assert_allclose(out, model._forward(x.reshape(n, -1) if len(sample_shape) > 1
                                                   else x, False, False), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.predict(x), out)
    readonly = x.copy()
    readonly.flags.writeable = False  # read only: nothing is written to x
    np.testing.assert_array_equal(_current(model, readonly), out)


def test_everything_else_is_left_to_the_checked_path(rng):
    model = _model(rng)
    x = rng.normal(size=(4, 13)).astype(np.float32)
    want = model.predict(x)
    others = {
        "float64": x.astype(np.float64), "list": x.tolist(), "fortran": np.asfortranarray(x),
        "strided": np.repeat(x, 2, axis=0)[::2], "no rows": x[:0], "one sample": x[0],
        "features": x[:, :12].copy(), "3-d": x.reshape(4, 13, 1),
        "big-endian": x.astype(">f4"), "masked": np.ma.masked_array(x),
        "subclass": x.view(type("Sub", (np.ndarray,), {})),
        "misaligned": np.ndarray((4, 13), np.float32, np.zeros(4 * 13 * 4 + 1, np.uint8), 1),
    }
    for what, rows in others.items():
        assert _current(model, rows) is None, what
    np.testing.assert_array_equal(model.predict(others["fortran"]), want)
    np.testing.assert_array_equal(model.predict(others["strided"]), want)
    np.testing.assert_allclose(model.predict(others["float64"]), want, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(others["big-endian"]), want)


def test_non_finite_rows_raise_and_predict_names_them(rng):
    model = _model(rng)
    x = rng.normal(size=(5, 13)).astype(np.float32)
    x[3, 7] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        _current(model, x)
    with pytest.raises(ValueError, match="1 NaN or infinite"):  # the full path's count
        model.predict(x)
    config.set_check_finite(False)
    try:  # the check turned off: the guard fails, the layer path predicts NaN as asked
        assert _current(model, x) is None
        out = model.predict(x)
        assert np.isnan(out[3]).all() and np.isfinite(np.delete(out, 3, axis=0)).all()
    finally:
        config.set_check_finite(True)


def _reference(model, x):
    return model._forward(x, training=False, logits=False)


def test_predict_follows_every_change_of_what_the_engine_was_built_for(rng):
    x = rng.normal(size=(1, 13)).astype(np.float32)

    def replace_kernel(m):  # a new array bound to the weight, not values written in place
        p = m.layers[1].kernel
        p.value = p.value * 2

    def add_layer(m):
        m.add(pynn.Dense(2))

    def new_backend(m):
        m.compile(optimizer="sgd", loss="mse", backend="numpy")

    changes = {"activation": lambda m: setattr(m.layers[1], "activation", "tanh"),
               "kernel array": replace_kernel, "layer added": add_layer,
               "layer removed": lambda m: m.pop(), "backend": new_backend}
    for what, change in changes.items():
        model = _model(rng)
        before = model.predict(x)
        cache = model._predict_cache
        change(model)
        assert _current(model, x) is None, what
        assert not cache.describes(model), what
        after = model.predict(x)
        np.testing.assert_allclose(after, _reference(model, x), rtol=1e-5, atol=1e-6,
                                   err_msg=what)
        if what != "backend":  # (the same outputs, maybe to the bit, on another backend)
            assert after.shape != before.shape or not np.array_equal(after, before), what


def test_predict_follows_floatx_and_a_normalisations_epsilon(rng):
    x = rng.normal(size=(1, 13)).astype(np.float32)
    model = _model(rng)
    model.predict(x)
    config.set_floatx("float64")
    try:
        assert _current(model, x) is None
    finally:
        config.set_floatx("float32")
    assert _current(model, x) is not None

    model = pynn.Sequential([pynn.Input((13,)), pynn.Dense(6),
                             pynn.layers.BatchNormalization(), pynn.Dense(2)])
    model.predict(x)
    bn = model.layers[2]
    bn.moving_variance.assign(np.full(6, 1e-3, np.float32))
    assert _current(model, x) is not None  # in place: the engine reads the new values
    bn.epsilon = 0.5
    assert _current(model, x) is None
    np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=1e-5, atol=1e-6)


def test_a_subclass_with_its_own_layers_property_is_guarded_through_it(rng):
    class Logged(pynn.Sequential):
        reads = 0

        @property
        def layers(self):
            type(self).reads += 1
            return super().layers

    model = Logged([pynn.Input((13,)), pynn.Dense(4)])
    x = rng.normal(size=(1, 13)).astype(np.float32)
    model.predict(x)
    Logged.reads = 0
    first = _current(model, x)
    assert Logged.reads == 1 and first is not None  # the engine read the property
    model.add(pynn.Dense(2))
    assert _current(model, x) is None
    np.testing.assert_allclose(model.predict(x), _reference(model, x), rtol=1e-5, atol=1e-6)


def test_same_items_guards_take_any_sequence(rng):
    # a subclass's layers property giving a tuple failed the guard on every call: the
    # predict engine was rebuilt each time (53 us a row instead of 3.5)
    class TupleLayers(pynn.Sequential):
        @property
        def layers(self):
            return tuple(super().layers)

    model = TupleLayers([pynn.Input((13,)), pynn.Dense(4)])
    x = rng.normal(size=(1, 13)).astype(np.float32)
    model.predict(x)
    cache = model._predict_cache
    assert _current(model, x) is not None
    model.predict(x)
    assert model._predict_cache is cache  # kept, not rebuilt
    items = [object(), object()]
    owner = types.SimpleNamespace(c=tuple(items), d=iter(items), e=5)
    assert _guards_hold(owner, [(owner, "c", items, SAME_ITEMS)])
    assert not _guards_hold(owner, [(owner, "d", items, SAME_ITEMS)])  # an iterator: not read
    assert not _guards_hold(owner, [(owner, "e", items, SAME_ITEMS)])
    with pytest.raises(TypeError, match="list"):
        _guards_hold(owner, [(owner, "c", tuple(items), SAME_ITEMS)])
