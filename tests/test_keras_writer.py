"""pynn models saved as Keras 3 `.keras` archives (pynn.keras_writer): the archive laid out
as Keras writes its own (members, config.json's descriptions, the weights file's keys), a
lossless round trip through pynn for every model a .npz holds, the no-h5py error, and
checkpoints; where Keras is installed, Keras loads pynn's file, predicts the same and
trains on from the saved optimizer state as pynn does."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import pynn
from conftest import import_keras
from pynn import keras_files, saving

L = pynn.layers


@pytest.fixture
def h5py():
    return pytest.importorskip("h5py")


def _members(path):
    """(config.json, metadata.json, {dataset path: array} of model.weights.h5, {group:
    its "name" attribute}) of an archive, after checking its members are Keras' three,
    stored."""
    import h5py

    with zipfile.ZipFile(path) as z:
        assert [i.filename for i in z.infolist()] == ["metadata.json", "config.json",
                                                      "model.weights.h5"]
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
        config, metadata = json.loads(z.read("config.json")), json.loads(z.read("metadata.json"))
        weights = z.read("model.weights.h5")
    arrays = {}
    with h5py.File(io.BytesIO(weights), "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
        names = {name: f[name].attrs.get("name") for name in ("vars", "layers/dense/vars",
                                                               "optimizer/vars") if name in f}
    return config, metadata, arrays, names


def _mlp(optimizer="adam", dropout=0.0, rows=5):
    model = pynn.Sequential([pynn.Input((rows,)), pynn.Dense(6, activation="tanh"),
                             L.BatchNormalization(), L.Dropout(dropout),
                             pynn.Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _data(rng, n=24, rows=5):
    return rng.normal(size=(n, rows)).astype(np.float32), rng.integers(0, 3, n)


def _assert_same_state(a, b):
    """Two models alike in everything a file carries: weights, configs, compile settings,
    optimizer state and step count, shuffle seed."""
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert a.get_config() == b.get_config()
    assert [p.trainable for p in a.params] == [p.trainable for p in b.params]
    assert a.shuffle_seed == b.shuffle_seed
    assert a.compiled == b.compiled
    if a.compiled:
        assert saving.compile_settings(a) == saving.compile_settings(b)
        assert a.optimizer.training_steps == b.optimizer.training_steps
        for p, q in zip(a.params, b.params):
            sa, sb = a.optimizer.state_of(p) or {}, b.optimizer.state_of(q) or {}
            assert sa.keys() == sb.keys()
            for slot in sa:
                np.testing.assert_array_equal(np.asarray(sa[slot]), np.asarray(sb[slot]))


def _as_npz_does(model, tmp_path, x, y, custom_objects=None):
    """model saved as .keras and as .npz loads back the same from both, and both train on
    exactly as the model does."""
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.npz")
    assert keras_files.keras_kind(str(tmp_path / "m.keras")) == "archive"
    from_keras = pynn.load_model(tmp_path / "m.keras", custom_objects=custom_objects)
    from_npz = pynn.load_model(tmp_path / "m.npz", custom_objects=custom_objects)
    _assert_same_state(from_keras, model)
    _assert_same_state(from_keras, from_npz)
    np.testing.assert_array_equal(from_keras.predict(x), model.predict(x))
    if model.compiled:
        for m in (model, from_keras):
            pynn.set_seed(5)
            m.fit(x, y, epochs=1, batch_size=8, verbose=0)
        _assert_same_state(from_keras, model)
    return from_keras


def test_save_writes_keras_layout(tmp_path, rng, h5py):
    """What `model.save("m.keras")` writes is Keras 3's archive (it was pynn's .npz under a
    .keras name): config.json as Keras describes a Sequential, weights keyed as Keras keys
    them, Adam's state as Keras' optimizer variables."""
    x, y = _data(rng)
    model = _mlp(pynn.optimizers.Adam(0.01))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    config, metadata, arrays, names = _members(tmp_path / "m.keras")
    assert metadata["keras_version"].startswith("3.")
    assert (config["module"], config["class_name"], config["registered_name"]) == (
        "keras", "Sequential", None)
    assert config["build_config"] == {"input_shape": [None, 5]}
    layers = config["config"]["layers"]
    assert [(e["module"], e["class_name"]) for e in layers] == [
        ("keras.layers", "InputLayer"), ("keras.layers", "Dense"),
        ("keras.layers", "BatchNormalization"), ("keras.layers", "Dropout"),
        ("keras.layers", "Dense")]
    assert layers[0]["config"]["batch_shape"] == [None, 5]
    dense = layers[1]
    assert dense["build_config"] == {"input_shape": [None, 5]}
    assert "input_shape" not in dense["config"]
    assert dense["config"]["kernel_initializer"] == {
        "module": "keras.initializers", "class_name": "GlorotUniform", "config": {},
        "registered_name": None}
    assert dense["config"]["dtype"]["class_name"] == "DTypePolicy"
    compiled = config["compile_config"]
    assert compiled["optimizer"]["module"] == "keras.optimizers"
    assert compiled["optimizer"]["class_name"] == "Adam"
    assert compiled["optimizer"]["config"]["learning_rate"] == 0.01
    assert compiled["loss"]["class_name"] == "SparseCategoricalCrossentropy"
    assert compiled["metrics"] == ["accuracy"]
    # the weights: layers by class key, the optimizer's variables in Keras' order
    weights = model.get_weights()
    for key, first in (("dense", 0), ("batch_normalization", 2), ("dense_1", 6)):
        count = 4 if key == "batch_normalization" else 2
        for i in range(count):
            np.testing.assert_array_equal(arrays[f"layers/{key}/vars/{i}"], weights[first + i])
    assert names == {"vars": model.name, "layers/dense/vars": model.layers[1].name,
                     "optimizer/vars": "adam"}  # (the names a process gave them)
    opt = model.optimizer
    assert int(arrays["optimizer/vars/0"]) == opt.training_steps == 6
    assert arrays["optimizer/vars/1"] == np.float32(0.01)
    trainable = [p for p in model.params if p.trainable]
    assert len([k for k in arrays if k.startswith("optimizer/")]) == 2 + 2 * len(trainable)
    for i, p in enumerate(trainable):  # Keras' Adam: each weight's momentum, then velocity
        np.testing.assert_array_equal(arrays[f"optimizer/vars/{2 + 2 * i}"],
                                      opt.state_of(p)["m"])
        np.testing.assert_array_equal(arrays[f"optimizer/vars/{3 + 2 * i}"],
                                      opt.state_of(p)["v"])
    assert not [k for k in arrays if k.startswith("pynn/")]  # each array once


@pytest.mark.parametrize("optimizer, dropout", [
    (pynn.optimizers.Adam(0.01, amsgrad=True), 0.0),
    (pynn.optimizers.SGD(0.05, momentum=0.9, nesterov=True), 0.3),
    (pynn.optimizers.RMSprop(centered=True, momentum=0.5), 0.0),
    (pynn.optimizers.Nadam(use_ema=True, gradient_accumulation_steps=2), 0.0),
    (pynn.optimizers.Adafactor(), 0.0),  # no Keras layout: its slots in the pynn group
    (pynn.optimizers.SGD(pynn.schedules.ExponentialDecay(0.1, 3, 0.5)), 0.0)])
def test_round_trip_resumes_bit_for_bit(tmp_path, rng, optimizer, dropout, h5py):
    x, y = _data(rng)
    model = _mlp(optimizer, dropout)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    _as_npz_does(model, tmp_path, x, y)
    for save in (pynn.models.save_model, saving.save_model):  # the functions do too
        save(model, tmp_path / "f.keras")
        assert keras_files.keras_kind(str(tmp_path / "f.keras")) == "archive"
        (tmp_path / "f.keras").unlink()


class _Scale(L.Layer):
    """A layer of the user's: x * s * k, one weight s."""

    def __init__(self, k=2.0, **kwargs):
        super().__init__(**kwargs)
        self.k = k

    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        self.s = self.add_weight((input_shape[-1],), "ones", name="s")

    def forward(self, x, training=False, logits=False):
        self._x = x
        return x * self.s.value * self.k

    def backward(self, dy, need_input_grad=True, logits=False):
        self.s.grad = (dy * self._x * self.k).sum(axis=0)
        return dy * self.s.value * self.k

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class _HalfMSE(pynn.losses.MeanSquaredError):
    """A loss of the user's."""


def _max_error(y_true, y_pred):
    return np.abs(y_true - y_pred).max(axis=-1)


def test_models_only_pynn_describes_round_trip(tmp_path, rng, h5py):
    """Components of the user's, layers and settings Keras keeps elsewhere or not at all:
    all come back as from a .npz; what Keras has no place for lies in the `pynn` group."""
    x, y = rng.normal(size=(24, 5)).astype(np.float32), rng.normal(size=(24, 2))
    adapted = L.Normalization(axis=None)
    adapted.adapt(x)
    model = pynn.Sequential([pynn.Input((5,)), adapted,
                             L.Normalization(mean=0.5, variance=[1, 2, 3, 4, 5]),
                             pynn.Dense(4, activation=pynn.activations.leaky_relu_with(0.1),
                                        kernel_regularizer=pynn.regularizers.L2(0.01)),
                             _Scale(1.5), L.RMSNormalization(), pynn.Dense(2)])
    model.compile(pynn.optimizers.Adam(0.01), _HalfMSE(), metrics=[_max_error, "rmse"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.layers[3].params[1].trainable = False  # frozen alone: no Keras form
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    objects = {"_Scale": _Scale, "_HalfMSE": _HalfMSE, "_max_error": _max_error}
    want = model.predict(x)
    _as_npz_does(model, tmp_path, x, y, custom_objects=objects)
    config, _, arrays, _ = _members(tmp_path / "m.keras")
    assert sorted(k for k in arrays if k.startswith("pynn/")) == [
        "pynn/layer1.mean", "pynn/layer1.variance", "pynn/layer2.mean", "pynn/layer2.variance"]
    assert [arrays[f"layers/normalization/vars/{i}"].shape for i in range(3)] == [(), (), ()]
    assert "layers/normalization_1/vars/0" not in arrays  # Keras keeps given ones in config
    layers = config["config"]["layers"]
    assert layers[4]["module"] == __name__ and layers[4]["registered_name"] == "_Scale"
    assert layers[3]["config"]["activation"]["class_name"] == "LeakyReLU"
    assert config["compile_config"]["loss"]["registered_name"] == "_HalfMSE"
    with pytest.raises(ValueError, match="_Scale.*custom_objects"):
        pynn.load_model(tmp_path / "m.keras")
    uncompiled = pynn.load_model(tmp_path / "m.keras", custom_objects=objects, compile=False)
    assert not uncompiled.compiled
    np.testing.assert_array_equal(uncompiled.predict(x), want)


def test_load_weights_of_a_pynn_archive_acts_as_npz(tmp_path, rng, h5py):
    """load_weights reads pynn's description: an unbuilt model is built for the saved input
    shape, and skip_mismatch works (Keras' own archives need a built, matching model)."""
    x, _ = _data(rng)
    model = _mlp()
    model.build((None, 5))
    model.save(tmp_path / "m.keras")
    _members(tmp_path / "m.keras")  # Keras' archive
    fresh = pynn.Sequential([pynn.Dense(6, activation="tanh"), L.BatchNormalization(),
                             L.Dropout(0.0), pynn.Dense(3, activation="softmax")])
    fresh.load_weights(tmp_path / "m.keras")
    np.testing.assert_array_equal(fresh.predict(x), model.predict(x))
    other = pynn.Sequential([pynn.Input((5,)), pynn.Dense(6), L.BatchNormalization(),
                             pynn.Dense(2)])
    with pytest.warns(UserWarning, match="skip_mismatch left layers"):
        assert other.load_weights(tmp_path / "m.keras", skip_mismatch=True) == [
            other.layers[3].name]


def _rewritten(source, target, change):
    """target: the archive source with change(config.json's dict) made."""
    with zipfile.ZipFile(source) as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config)
    with zipfile.ZipFile(target, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return target


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(pynn="junk"), "is not a pynn file"),
    (lambda c: c["pynn"].update(format_version=99), "format version 99"),
    (lambda c: c["pynn"]["layers"][1]["weights"][0].update(key="layers/dense/vars/9"),
     "lacks the array 'layers/dense/vars/9'"),
    (lambda c: c["pynn"]["layers"][1]["weights"][0].update(key="layers/dense/vars/1"),
     r"the file has shape \(6,\), the model \(5, 6\)"),
    (lambda c: c["pynn"]["config"].update(layers={}), "no layer list"),
])
def test_a_damaged_pynn_description_is_refused_by_name(tmp_path, rng, change, message, h5py):
    model = _mlp()
    model.save(tmp_path / "m.keras")
    path = _rewritten(tmp_path / "m.keras", tmp_path / "bad.keras", change)
    with pytest.raises(ValueError, match=f"bad.keras.*{message}"):
        pynn.load_model(path)


def test_keras_optimizer_state_is_read(tmp_path, rng, h5py):
    """An archive without pynn's description (as Keras writes one) gives pynn its
    optimizer's slots and step count from Keras' variables (they started afresh)."""
    x, y = _data(rng)
    for optimizer in (pynn.optimizers.Adam(0.01), pynn.optimizers.SGD(0.1, momentum=0.9)):
        model = _mlp(optimizer)
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        model.save(tmp_path / "m.keras")
        _rewritten(tmp_path / "m.keras", tmp_path / "k.keras",
                   lambda config: config.pop("pynn"))
        loaded = pynn.load_model(tmp_path / "k.keras")
        assert loaded.optimizer.training_steps == 6
        for m in (model, loaded):
            m.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        for a, b in zip(loaded.get_weights(), model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_without_h5py_saving_keras_is_an_import_error(tmp_path, rng, monkeypatch):
    """Never a half-written or .npz file under the .keras name; what to do is said."""
    def missing():
        raise ImportError("HDF5 weights files need h5py")

    x, y = _data(rng)
    model = _mlp()
    model.fit(x, y, epochs=1, verbose=0)
    monkeypatch.setattr(saving, "_h5py", missing)
    message = r"needs h5py: pip install 'pynn\[h5\]', or save the model as \.npz"
    for save in (model.save, lambda path: pynn.models.save_model(model, path)):
        with pytest.raises(ImportError, match=message):
            save(tmp_path / "m.keras")
        assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.keras").write_bytes(b"old")
    with pytest.raises(ImportError, match=message):
        model.save(tmp_path / "old.keras")
    assert (tmp_path / "old.keras").read_bytes() == b"old"
    before = model.get_weights()
    checkpoint = pynn.callbacks.ModelCheckpoint(str(tmp_path / "ck-{epoch}.keras"))
    with pytest.raises(ImportError, match=message):  # before training, not after an epoch
        model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))
    model.save(tmp_path / "m.npz")  # .npz needs no h5py
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "old.keras"]


def test_overwrite_file_objects_and_unbuilt_models(tmp_path, rng, h5py):
    x, y = _data(rng)
    model = _mlp()
    unbuilt = pynn.Sequential([pynn.Dense(2)])
    with pytest.raises(ValueError, match="no weights yet"):
        unbuilt.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    first = (tmp_path / "m.keras").read_bytes()
    assert first.startswith(b"PK") and keras_files.keras_kind(str(tmp_path / "m.keras")) \
        == "archive"
    with pytest.raises(FileExistsError, match="overwrite=False"):
        model.save(tmp_path / "m.keras", overwrite=False)
    assert (tmp_path / "m.keras").read_bytes() == first
    model.save(tmp_path / "m.keras", overwrite=True)
    buffer = io.BytesIO()
    model.save(buffer)  # a binary file object gets .npz, as before
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as z:
        assert "__pynn__.npy" in z.namelist()
    np.testing.assert_array_equal(pynn.load_model(io.BytesIO(buffer.getvalue())).predict(x),
                                  model.predict(x))


def test_a_checkpoint_to_a_keras_path_writes_archives(tmp_path, rng, h5py):
    x, y = _data(rng)
    model = _mlp()
    checkpoint = pynn.callbacks.ModelCheckpoint(str(tmp_path / "ck-{epoch}.keras"),
                                                monitor="loss")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[checkpoint])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck-1.keras", "ck-2.keras"]
    for name in ("ck-1.keras", "ck-2.keras"):
        _members(tmp_path / name)
    _assert_same_state(pynn.load_model(tmp_path / "ck-2.keras"), model)


# ---- with Keras ---------------------------------------------------------------------------

def test_keras_loads_pynns_archive_and_predicts_the_same(tmp_path, rng, h5py):
    keras = import_keras()
    x = rng.normal(size=(16, 6)).astype(np.float32)
    y = (rng.random((16, 3)) > 0.5).astype(np.float32)
    norm = L.Normalization()
    norm.adapt(x)
    model = pynn.Sequential([
        pynn.Input((6,)), norm, pynn.Dense(8, activation="relu", kernel_initializer="he_normal",
                                           kernel_regularizer=pynn.regularizers.L2(1e-3)),
        L.BatchNormalization(), L.LayerNormalization(), L.PReLU(), L.Dropout(0.2),
        L.GaussianNoise(0.1), L.GaussianDropout(0.1), L.AlphaDropout(0.1),
        L.ReLU(max_value=6.0), L.LeakyReLU(0.2), L.ELU(), L.Activation("swish"),
        L.Reshape((2, 4)), L.Flatten(), L.RMSNormalization(),
        L.Normalization(mean=0.1, variance=2.0),
        pynn.Dense(3, activation=pynn.activations.elu_with(0.5)), L.Softmax()])
    schedule = pynn.schedules.ExponentialDecay(0.01, 10, 0.9)
    model.compile(pynn.optimizers.Adam(schedule, beta_1=0.8), "binary_crossentropy",
                  metrics=["accuracy", pynn.metrics.Precision(threshold=0.3), "rmse"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), model.predict(x),
                               rtol=1e-5, atol=1e-6)
    assert [type(layer).__name__ for layer in loaded.layers] == [
        type(layer).__name__ for layer in model.layers[1:]]
    opt = loaded.optimizer
    assert type(opt).__name__ == "Adam" and opt.beta_1 == 0.8
    assert type(opt.learning_rate).__name__ != "Variable"
    assert int(opt.iterations) == model.optimizer.iterations
    assert float(opt._learning_rate(opt.iterations)) == pytest.approx(
        model.optimizer.learning_rate, rel=1e-6)
    assert type(loaded.loss).__name__ == "BinaryCrossentropy"
    logs = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert {"accuracy", "precision", "rmse"} <= logs.keys()
    assert logs["loss"] == pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-4)


@pytest.mark.parametrize("optimizer", [
    pynn.optimizers.Adam(0.01), pynn.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    pynn.optimizers.RMSprop(0.01, momentum=0.5, use_ema=True,
                            gradient_accumulation_steps=2)])
def test_keras_continues_training_as_pynn_does(tmp_path, rng, optimizer, h5py):
    """The optimizer's slots and step count in Keras' layout: Keras trains on from them as
    pynn does (a fresh Keras optimizer would not)."""
    keras = import_keras()
    x, y = rng.normal(size=(16, 5)).astype(np.float32), rng.normal(size=(16, 2))
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4, activation="tanh"),
                             L.BatchNormalization(), pynn.Dense(2)])
    model.compile(optimizer, "mse")
    model.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert int(loaded.optimizer.iterations) == model.optimizer.iterations
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    loaded.fit(x, y.astype(np.float32), epochs=3, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-6)


def test_keras_loads_components_of_your_own_by_their_names(tmp_path, rng, h5py):
    keras = import_keras()
    x, y = rng.normal(size=(8, 5)).astype(np.float32), rng.normal(size=(8, 2))
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(4), _Scale(1.5), pynn.Dense(2)])
    model.compile("sgd", _HalfMSE())
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")

    class KerasScale(keras.layers.Layer):
        def __init__(self, k=2.0, **kwargs):
            super().__init__(**kwargs)
            self.k = k

        def build(self, input_shape):
            self.s = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs):
            return inputs * self.s * self.k

    class KerasHalfMSE(keras.losses.MeanSquaredError):
        pass

    KerasScale.__name__ = "_Scale"  # Keras keys a layer's weights by its class name

    loaded = keras.saving.load_model(tmp_path / "m.keras", custom_objects={
        "_Scale": KerasScale, "_HalfMSE": KerasHalfMSE})
    assert loaded.layers[1].k == 1.5 and isinstance(loaded.loss, KerasHalfMSE)
    np.testing.assert_allclose(np.asarray(loaded.predict(x, verbose=0)), model.predict(x),
                               rtol=1e-5, atol=1e-6)


def test_a_keras_trained_model_trains_on_in_pynn_as_in_keras(tmp_path, rng, h5py):
    """Keras' optimizer variables are read (its state started afresh in pynn)."""
    keras = import_keras()
    x, y = rng.normal(size=(16, 5)).astype(np.float32), rng.normal(size=(16, 2))
    y = y.astype(np.float32)
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh"),
                               keras.layers.Dense(2)])
    theirs.compile(keras.optimizers.Adam(0.01), "mse")
    theirs.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    theirs.save(tmp_path / "k.keras")
    ours = pynn.load_model(tmp_path / "k.keras")
    assert ours.optimizer.training_steps == 3
    theirs.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    ours.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)


def test_gelu_tanh_is_written_as_kerass_gelu_with_a_warning(tmp_path, h5py):
    """Keras names no tanh form of gelu (a name it lacks would fail its load): the file says
    "gelu", its exact form, with a warning; pynn reads its own gelu_tanh back."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="gelu_tanh"),
                             pynn.Dense(2, activation="gelu")])
    with pytest.warns(UserWarning, match="Keras has no name for gelu_tanh"):
        model.save(tmp_path / "m.keras")
    config = _members(tmp_path / "m.keras")[0]
    assert [e["config"]["activation"] for e in config["config"]["layers"][1:]] == \
        ["gelu", "gelu"]
    loaded = pynn.load_model(tmp_path / "m.keras")
    assert [layer.activation.name for layer in loaded.layers[1:]] == ["gelu_tanh", "gelu"]


# ---- a review of the writer and reader side by side with Keras -----------------------------
def _compiled_metrics(path):
    return json.loads(zipfile.ZipFile(path).read("config.json"))["compile_config"]["metrics"]


def test_metrics_are_written_as_they_mean_in_pynn(tmp_path, rng, h5py):
    """Keras would read them otherwise: pynn's functions that are Metric objects (Keras has
    no `precision` function: its load failed), "accuracy" of several sigmoid outputs (Keras:
    categorical), F1 of one output (Keras' threshold None: the argmax)."""
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy",
                  metrics=["accuracy", pynn.metrics.precision, pynn.metrics.roc_auc])
    model.save(tmp_path / "m.keras")
    accuracy, precision, auc = _compiled_metrics(tmp_path / "m.keras")
    assert (accuracy["class_name"], accuracy["config"]) == (
        "BinaryAccuracy", {"name": "accuracy", "threshold": 0.5})
    assert (precision["class_name"], precision["config"]["name"]) == ("Precision", "precision")
    assert (auc["class_name"], auc["config"]["name"]) == ("AUC", "roc_auc")
    assert auc["config"]["from_logits"] is False
    # on logits: pynn's AUC ranks them as they are, Keras' thresholds them in [0, 1]
    logits = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1)])
    logits.compile("adam", pynn.losses.BinaryCrossentropy(from_logits=True), metrics=["auc"])
    logits.save(tmp_path / "logits.keras")
    (auc,) = _compiled_metrics(tmp_path / "logits.keras")
    assert auc["class_name"] == "AUC" and auc["config"]["from_logits"] is True
    one = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1, activation="sigmoid")])
    one.compile("adam", "binary_crossentropy", metrics=["f1_score", "accuracy"])
    one.save(tmp_path / "one.keras")
    f1, plain = _compiled_metrics(tmp_path / "one.keras")
    assert f1["class_name"] == "F1Score" and f1["config"]["threshold"] == 0.5
    assert plain == "accuracy"  # (Keras reads one output's as binary too)
    one.compile("adam", "binary_crossentropy", metrics=[
        pynn.metrics.Precision(thresholds=0.3), pynn.metrics.MeanMetricWrapper(
            pynn.metrics.mean_absolute_error, name="wrapped", direction="down")])
    one.save(tmp_path / "one.keras")
    precision, wrapped = _compiled_metrics(tmp_path / "one.keras")
    assert precision["config"]["thresholds"] == 0.3  # (Keras' name; multilabel is pynn's)
    assert "threshold" not in precision["config"] and "multilabel" not in precision["config"]
    assert wrapped["config"] == {"fn": {"module": "builtins", "class_name": "function",
                                        "config": "mean_absolute_error",
                                        "registered_name": "function"}, "name": "wrapped"}
    # and Keras' own "accuracy" of several sigmoid outputs reads as Keras computes it
    _rewritten(tmp_path / "m.keras", tmp_path / "k.keras", lambda c: (
        c.pop("pynn"), c["compile_config"].update(metrics=["accuracy"])))
    loaded = pynn.load_model(tmp_path / "k.keras")
    assert type(loaded.metrics[0]) is pynn.metrics.CategoricalAccuracy
    assert loaded.metrics[0].name == "accuracy"


def test_what_keras_cannot_read_is_written_as_it_can(tmp_path, h5py):
    """Seeds inside initializers in uint32 (2**40 failed Keras' load), names without "/"
    (Keras refuses them); pynn's own description keeps both."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(
        2, name="a/b", kernel_initializer=pynn.initializers.HeNormal(seed=2**40 + 5)),
        L.Dropout(0.5, seed=2**40 + 7)], name="m/1")
    model.save(tmp_path / "m.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))
    dense = config["config"]["layers"][1]["config"]
    assert dense["kernel_initializer"]["config"]["seed"] == 5
    assert config["config"]["layers"][2]["config"]["seed"] == 7
    assert dense["name"] == "a_b" and config["config"]["name"] == "m_1"
    loaded = pynn.load_model(tmp_path / "m.keras")
    assert loaded.name == "m/1" and loaded.layers[1].name == "a/b"
    assert loaded.layers[1].kernel_initializer.seed == 2**40 + 5


def test_a_description_no_file_holds_is_refused_before_writing(tmp_path, h5py):
    """A .keras written and then refused by load_model (config.json over what a model
    description holds): refused at save, as the .npz is, nothing written."""
    model = pynn.Sequential([pynn.Input((700_000,)), L.Normalization(
        mean=np.full(700_000, 0.123456789), variance=np.full(700_000, 1.23456789))])
    for name in ("m.keras", "m.npz"):
        with pytest.raises(ValueError, match="description has .* characters, more than"):
            model.save(tmp_path / name)
    assert not list(tmp_path.iterdir())


def test_weights_are_not_saved_under_a_keras_name(tmp_path, rng):
    """A .keras name holds a whole model (Keras refuses weights under it too): save_weights
    and a weights-only checkpoint wrote an .npz there, which load_model then refused."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="a .keras file holds a whole model"):
        model.save_weights(tmp_path / "w.keras")
    checkpoint = pynn.callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch}.keras"),
                                                save_weights_only=True)
    with pytest.raises(ValueError, match="a .keras file holds a whole model"):
        model.fit(np.ones((4, 3)), np.ones((4, 2)), callbacks=[checkpoint], verbose=0)
    assert not list(tmp_path.iterdir()) and model.optimizer.training_steps == 0


def test_keras_archives_that_do_not_fit_are_named(tmp_path, rng, h5py):
    """The reader's answers to damaged or mismatched Keras-layout archives: the optimizer's
    state dropped with a warning (it was silent), a step count past int64 dropped, a bad
    dtype a ValueError naming the file (an AttributeError), missing members and truncation
    named as .keras problems (the .npz reader's messages), a setting pynn lacks naming the
    file; a deflated weights member loads."""
    x, y = _data(rng)
    model = _mlp(pynn.optimizers.Adam(0.01))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")

    def frozen(config):  # weights frozen since: fewer slots than the file's
        config.pop("pynn")
        config["config"]["layers"][1]["config"]["trainable"] = False

    _rewritten(tmp_path / "m.keras", tmp_path / "frozen.keras", frozen)
    with pytest.warns(UserWarning, match="optimizer variables do not fit .* starts afresh"):
        assert pynn.load_model(tmp_path / "frozen.keras").optimizer.training_steps == 0

    def bad_dtype(config):
        config.pop("pynn")
        config["config"]["layers"][1]["config"]["dtype"] = {"config": 7}

    _rewritten(tmp_path / "m.keras", tmp_path / "dtype.keras", bad_dtype)
    with pytest.raises(ValueError, match=r"dtype\.keras.*does not translate"):
        pynn.load_model(tmp_path / "dtype.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        members = {name: z.read(name) for name in z.namelist()}
    for missing in ("config.json", "model.weights.h5"):
        with zipfile.ZipFile(tmp_path / "part.keras", "w") as z:
            for name, data in members.items():
                if name != missing:
                    z.writestr(name, data)
        with pytest.raises(ValueError, match=f"a .keras archive without its {missing}"):
            pynn.load_model(tmp_path / "part.keras")
    whole = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ValueError, match="not a readable .keras file"):
        pynn.load_model(tmp_path / "cut.keras")
    with zipfile.ZipFile(tmp_path / "deflated.keras", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    np.testing.assert_array_equal(pynn.load_model(tmp_path / "deflated.keras").predict(x),
                                  model.predict(x))


def test_a_crafted_keras_layer_size_costs_nothing_before_it_is_refused(tmp_path, rng, h5py,
                                                                       monkeypatch):
    """A Keras-layout file declaring Dense(units=2**20) on 256 inputs with small weights:
    the model was built with drawn weights first (3 GiB, 14 s) before the shapes were
    compared; zeros cost nothing until written, and no initializer draws."""
    model = pynn.Sequential([pynn.Input((256,)), pynn.Dense(4)])
    model.save(tmp_path / "m.keras")

    def huge(config):
        config.pop("pynn")
        config["config"]["layers"][1]["config"]["units"] = 2**20

    _rewritten(tmp_path / "m.keras", tmp_path / "huge.keras", huge)
    drawn = []
    draw = pynn.initializers.VarianceScaling.__call__
    monkeypatch.setattr(pynn.initializers.VarianceScaling, "__call__",
                        lambda self, shape, *a, **k: drawn.append(shape) or draw(self, shape,
                                                                                *a, **k))
    with pytest.raises(ValueError, match=r"huge\.keras"):
        pynn.load_model(tmp_path / "huge.keras")
    assert drawn == []


def test_weights_h5_is_kerass_layout(tmp_path, rng, h5py):
    """save_weights("m.weights.h5"), the name Keras requires, wrote pynn's own layout, which
    Keras' load_weights read as no weights; it is Keras' now (layers/<key>/vars/<i>), with
    pynn's description beside, so pynn loads it as its own .h5 (an unbuilt model built from
    it, skip_mismatch)."""
    x, y = _data(rng)
    model = _mlp()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5", "r") as f:
        paths = set()
        f.visititems(lambda name, item: paths.add(name)
                     if isinstance(item, h5py.Dataset) else None)
        assert "__pynn__" in f.attrs
    assert paths == {f"layers/dense/vars/{i}" for i in range(2)} | {
        f"layers/batch_normalization/vars/{i}" for i in range(4)} | {
        f"layers/dense_1/vars/{i}" for i in range(2)}
    unbuilt = pynn.Sequential([pynn.Dense(6, activation="tanh"), L.BatchNormalization(),
                               L.Dropout(0.0), pynn.Dense(3, activation="softmax")])
    unbuilt.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(unbuilt.predict(x), model.predict(x))
    other = pynn.Sequential([pynn.Input((5,)), pynn.Dense(6, activation="tanh"),
                             L.BatchNormalization(), L.Dropout(0.0), pynn.Dense(4)])
    with pytest.warns(UserWarning, match="left layers .* unloaded"):
        other.load_weights(tmp_path / "m.weights.h5", skip_mismatch=True)
    np.testing.assert_array_equal(other.get_weights()[0], model.get_weights()[0])


def test_keras_loads_pynns_weights_h5(tmp_path, rng, h5py):
    keras = import_keras()
    x, y = _data(rng)
    model = _mlp()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save_weights(tmp_path / "m.weights.h5")
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh"),
                               keras.layers.BatchNormalization(), keras.layers.Dropout(0.0),
                               keras.layers.Dense(3, activation="softmax")])
    theirs.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), model.predict(x),
                               rtol=1e-5, atol=1e-6)


_O = pynn.optimizers
# Keras 3.15's optimizer.variables after a step of a Dense(3 -> 2), in pynn's slot names
# (recorded with Keras: its momentum/velocity are Adam's m/v, SGD's momentum pynn's
# velocity, Adamax's norm its u, Adadelta's accumulated_delta_var its accumulated_delta,
# Nadam's last variable its momentum product)
_KERAS_ORDER = [
    (lambda: _O.SGD(0.1), ["iteration", "learning_rate"]),
    (lambda: _O.SGD(0.1, momentum=0.9), ["iteration", "learning_rate", "k velocity",
                                          "b velocity"]),
    (lambda: _O.Adam(amsgrad=True), ["iteration", "learning_rate", "k m", "k v", "b m", "b v",
                                     "k v_hat", "b v_hat"]),
    (lambda: _O.RMSprop(momentum=0.5, centered=True),
     ["iteration", "learning_rate", "k velocity", "b velocity", "k momentum", "b momentum",
      "k average_gradient", "b average_gradient"]),
    (lambda: _O.Ftrl(), ["iteration", "learning_rate", "k accumulator", "k linear",
                         "b accumulator", "b linear"]),
    (lambda: _O.Nadam(), ["iteration", "learning_rate", "k m", "k v", "b m", "b v",
                          "u_product"]),
    (lambda: _O.Adam(use_ema=True, gradient_accumulation_steps=2),
     ["iteration", "learning_rate", "k average", "b average", "k gradient_accumulator",
      "b gradient_accumulator", "k m", "k v", "b m", "b v"]),
    (lambda: _O.Adam(pynn.schedules.ExponentialDecay(0.1, 10, 0.9)),
     ["iteration", "k m", "k v", "b m", "b v"]),
    (lambda: _O.Adadelta(), ["iteration", "learning_rate", "k accumulated_grad",
                             "k accumulated_delta", "b accumulated_grad",
                             "b accumulated_delta"]),
    (lambda: _O.Adamax(), ["iteration", "learning_rate", "k m", "k u", "b m", "b u"]),
    (lambda: _O.Lion(), ["iteration", "learning_rate", "k m", "b m"]),
    (lambda: _O.Adagrad(), ["iteration", "learning_rate", "k accumulator", "b accumulator"]),
]


@pytest.mark.parametrize("make, order", _KERAS_ORDER, ids=lambda v: getattr(v, "__name__", ""))
def test_the_optimizer_layout_is_kerass_order(make, order):
    """Keras reads its optimizer's variables by position: pynn's slots must lie in Keras'
    build order (a swapped pair, a missing EMA or accumulator group, a learning rate kept for
    a schedule trained on from the wrong state; the Keras-gated tests see it, CI has no
    Keras)."""
    frozen = pynn.Dense(4, trainable=False)  # (Keras keeps no slots for a frozen layer)
    model = pynn.Sequential([pynn.Input((3,)), frozen, pynn.Dense(2)])
    model.compile(make(), "mse")
    kernel, bias = model.layers[2].params
    names = {id(kernel): "k", id(bias): "b"}
    layout = keras_files.optimizer_layout(model)
    assert [item if isinstance(item, str) else f"{names[id(item[0])]} {item[1]}"
            for item in layout] == order


def test_nadams_momentum_product_is_kerass(tmp_path, rng, h5py):
    """Keras keeps Nadam's product of beta_1 (1 - 0.96^t / 2) over the steps, multiplied
    step by step in the weights' float type; the file holds the product of the steps taken,
    and the learning rate as a number."""
    x, y = _data(rng)
    model = _mlp(pynn.optimizers.Nadam(0.01, beta_1=0.8))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # 3 steps
    model.save(tmp_path / "m.keras")
    arrays = _members(tmp_path / "m.keras")[2]
    product = np.float32(1)
    for t in range(1, 4):
        product = product * np.float32(0.8 * (1 - 0.5 * 0.96 ** t))
    assert arrays["optimizer/vars/1"] == np.float32(0.01)
    last = max(int(k.rsplit("/", 1)[1]) for k in arrays if k.startswith("optimizer/vars/"))
    assert arrays[f"optimizer/vars/{last}"] == product


def test_a_damaged_archive_is_refused_by_load_weights_too(tmp_path, rng, h5py):
    """load_weights reads a pynn-written archive's description as load_model does: checked
    (a format from a newer pynn refused by name), and Keras-layout optimizer variables of
    the wrong shape are not restored (a warning, the optimizer afresh)."""
    model = _mlp()
    model.save(tmp_path / "m.keras")
    _rewritten(tmp_path / "m.keras", tmp_path / "newer.keras",
               lambda c: c["pynn"].update(format_version=99))
    with pytest.raises(ValueError, match=r"newer\.keras.*format version 99"):
        _mlp().load_weights(tmp_path / "newer.keras")
    x, y = _data(rng)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(members["config.json"])
    config.pop("pynn")
    members["config.json"] = json.dumps(config)
    weights = io.BytesIO(members["model.weights.h5"])
    with h5py.File(weights, "r+") as f:  # a slot of another shape than its weight's
        slot = f["optimizer/vars/2"][()]
        del f["optimizer/vars/2"]
        f.create_dataset("optimizer/vars/2", data=np.zeros(slot.size + 1, slot.dtype))
    members["model.weights.h5"] = weights.getvalue()
    with zipfile.ZipFile(tmp_path / "slot.keras", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.warns(UserWarning, match="optimizer variables do not fit"):
        assert pynn.load_model(tmp_path / "slot.keras").optimizer.training_steps == 0


def test_registered_components_carry_their_registered_name(tmp_path):
    """Keras finds a component of your own by its registered name ("package>name")."""
    from pynn.custom_objects import _registered

    @pynn.saving.register_keras_serializable(package="mine")
    class Twice(pynn.layers.Layer):
        def forward(self, x, training=False, logits=False):
            return 2 * x

    try:
        pynn.Sequential([pynn.Input((2,)), Twice()]).save(tmp_path / "m.keras")
    finally:
        _registered.clear()
    entry = json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))[
        "config"]["layers"][1]
    assert (entry["class_name"], entry["registered_name"]) == ("Twice", "mine>Twice")
