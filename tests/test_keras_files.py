"""Keras 3 files into pynn (pynn.keras_files): a `.keras` archive through load_model, a
`.weights.h5` through load_weights. The archives here are written in Keras 3's layout by
hand (config.json as Keras 3.15 writes it, weights keyed by layer class), so the reading is
tested without Keras; a last test compares with Keras itself where it is installed."""

from __future__ import annotations

import copy
import io
import json
import zipfile

import numpy as np
import pytest

import pynn
from conftest import import_keras
from test_hostile_files import _patch_claimed_size

h5py = pytest.importorskip("h5py")


def _policy():
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
            "registered_name": None}


def _dense(name, units, activation, build_rows):
    return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
            "build_config": {"input_shape": [None, build_rows]},
            "config": {"name": name, "trainable": True, "dtype": _policy(), "units": units,
                       "activation": activation, "use_bias": True,
                       "kernel_initializer": {"module": "keras.initializers",
                                              "class_name": "GlorotUniform",
                                              "config": {"seed": None}, "registered_name": None},
                       "bias_initializer": {"module": "keras.initializers",
                                            "class_name": "Zeros", "config": {},
                                            "registered_name": None},
                       "kernel_regularizer": None, "bias_regularizer": None,
                       "kernel_constraint": None, "bias_constraint": None,
                       "quantization_config": None}}


def _batch_norm(name, build_rows):
    return {"module": "keras.layers", "class_name": "BatchNormalization",
            "registered_name": None, "build_config": {"input_shape": [None, build_rows]},
            "config": {"name": name, "trainable": True, "dtype": _policy(), "axis": -1,
                       "momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True,
                       "beta_initializer": {"module": "keras.initializers",
                                            "class_name": "Zeros", "config": {},
                                            "registered_name": None},
                       "gamma_initializer": {"module": "keras.initializers",
                                             "class_name": "Ones", "config": {},
                                             "registered_name": None},
                       "moving_mean_initializer": {"module": "keras.initializers",
                                                   "class_name": "Zeros", "config": {},
                                                   "registered_name": None},
                       "moving_variance_initializer": {"module": "keras.initializers",
                                                       "class_name": "Ones", "config": {},
                                                       "registered_name": None},
                       "beta_regularizer": None, "gamma_regularizer": None,
                       "beta_constraint": None, "gamma_constraint": None,
                       "synchronized": False, "renorm": False, "renorm_clipping": None,
                       "renorm_momentum": 0.99}}


def _config(layers, input_rows=5, compile_config=True):
    entries = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                "config": {"batch_shape": [None, input_rows], "dtype": "float32",
                           "sparse": False, "ragged": False, "name": "input_layer",
                           "optional": False}}] if input_rows else []
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "sequential", "trainable": True, "dtype": _policy(),
                         "layers": entries + layers},
              "build_config": {"input_shape": [None, input_rows]}}
    if compile_config:
        config["compile_config"] = {
            "optimizer": {"module": "keras.optimizers", "class_name": "Adam",
                          "config": {"name": "adam", "learning_rate": 0.002,
                                     "weight_decay": None, "clipnorm": None,
                                     "global_clipnorm": None, "clipvalue": None,
                                     "use_ema": False, "ema_momentum": 0.99,
                                     "ema_overwrite_frequency": None,
                                     "loss_scale_factor": None,
                                     "gradient_accumulation_steps": None, "beta_1": 0.9,
                                     "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False},
                          "registered_name": None},
            "loss": "sparse_categorical_crossentropy", "loss_weights": None,
            "metrics": ["accuracy"], "weighted_metrics": None, "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": True}
    return config


def _weights_file(target, weights):
    """Keras 3's weights layout: layers/<class key>/vars/<i>, and the optimizer's variables
    (which pynn does not read)."""
    with h5py.File(target, "w") as f:
        for key, arrays in weights.items():
            group = f.create_group(f"layers/{key}/vars")
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=a)
        f.create_dataset("optimizer/vars/0", data=np.int32(3))


def _archive(path, config, weights):
    h5 = io.BytesIO()
    _weights_file(h5, weights)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", h5.getvalue())
    return path


def _mlp(rng):
    """A Keras Sequential 5-8-(BatchNormalization)-(Dropout)-3 with random weights: its
    config, its weights by Keras key, and a float64 forward pass for inference."""
    w = {"dense": [rng.normal(size=(5, 8)), rng.normal(size=8)],
         "batch_normalization": [rng.uniform(0.5, 2, 8), rng.normal(size=8),
                                 rng.normal(size=8), rng.uniform(0.5, 2, 8)],
         "dense_1": [rng.normal(size=(8, 3)), rng.normal(size=3)]}
    w = {k: [a.astype(np.float32) for a in v] for k, v in w.items()}
    layers = [_dense("hidden", 8, "relu", 5), _batch_norm("batch_normalization", 8),
              {"module": "keras.layers", "class_name": "Dropout", "registered_name": None,
               "config": {"name": "dropout", "trainable": True, "dtype": _policy(),
                          "rate": 0.2, "seed": None, "noise_shape": None}},
              _dense("out", 3, "softmax", 8)]

    def forward(x):
        h = np.maximum(x @ w["dense"][0] + w["dense"][1], 0)
        gamma, beta, mean, var = (a.astype(np.float64) for a in w["batch_normalization"])
        h = (h - mean) / np.sqrt(var + 0.001) * gamma + beta
        z = h @ w["dense_1"][0] + w["dense_1"][1]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return layers, w, forward


def test_a_keras_archive_loads_with_its_weights_and_compile_settings(tmp_path, rng):
    layers, weights, forward = _mlp(rng)
    path = _archive(tmp_path / "m.keras", _config(layers), weights)
    model = pynn.load_model(path)
    assert [type(l).__name__ for l in model.layers] == [
        "InputLayer", "Dense", "BatchNormalization", "Dropout", "Dense"]
    assert model.layers[1].name == "hidden" and model.input_shape == (5,)
    x = rng.normal(size=(17, 5))
    np.testing.assert_allclose(model.predict(x), forward(x), rtol=1e-4, atol=1e-6)
    assert type(model.optimizer).__name__ == "Adam"
    assert model.optimizer.learning_rate == pytest.approx(0.002)
    assert model.optimizer.training_steps == 0  # Keras' slots are not read: afresh
    assert model.metrics_names == ["loss", "accuracy"]
    model.fit(x, rng.integers(0, 3, 17), epochs=1, verbose=0)  # trains on
    with open(path, "rb") as f:  # a binary file object too
        np.testing.assert_allclose(pynn.load_model(f, compile=False).predict(x), forward(x),
                                   rtol=1e-4, atol=1e-6)
    assert not pynn.load_model(path, compile=False).compiled


def test_model_from_json_reads_kerass_to_json(rng):
    """Keras 3's model.to_json() (its config, as a .keras file holds it): the model with
    fresh weights, as Keras' model_from_json gives it (InputLayer's 'sparse' was refused)."""
    layers, _, _ = _mlp(rng)
    text = json.dumps(_config(layers, compile_config=False))
    model = pynn.models.model_from_json(text)
    assert [type(layer).__name__ for layer in model.layers] == \
        ["InputLayer"] + [entry["class_name"] for entry in layers]
    assert model.built and model.input_shape == (5,) and not model.compiled
    assert pynn.models.model_from_json(model.to_json()).get_config() == model.get_config()
    functional = _functional(_config(layers, compile_config=False), [5, 8, 8, 8])
    chain = pynn.models.model_from_json(json.dumps(functional))
    assert [type(layer).__name__ for layer in chain.layers] == \
        ["InputLayer"] + [entry["class_name"] for entry in layers]
    with pytest.raises(ValueError, match="Keras 2.15.0's .tf.keras'. JSON"):
        pynn.models.model_from_json(json.dumps({"class_name": "Functional", "config": {
            "layers": []}, "keras_version": "2.15.0", "backend": "tensorflow"}))
    with pytest.raises(ValueError, match="model_from_json'*: its Keras model does not translate"):
        pynn.models.model_from_json(json.dumps(_config([_dense("d", 0, "relu", 5)],
                                                       compile_config=False)))


def test_a_model_without_an_input_is_built_for_its_first_layers_shape(tmp_path, rng):
    layers, weights, forward = _mlp(rng)
    path = _archive(tmp_path / "m.keras", _config(layers, input_rows=None), weights)
    model = pynn.load_model(path)
    assert model.built and model.input_shape == (5,)
    x = rng.normal(size=(3, 5))
    np.testing.assert_allclose(model.predict(x), forward(x), rtol=1e-4, atol=1e-6)


def test_keras_weights_load_into_a_matching_model(tmp_path, rng):
    layers, weights, forward = _mlp(rng)
    _weights_file(tmp_path / "m.weights.h5", weights)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8, activation="relu"),
                             pynn.layers.BatchNormalization(), pynn.layers.Dropout(0.2),
                             pynn.Dense(3, activation="softmax")])
    model.load_weights(tmp_path / "m.weights.h5")
    x = rng.normal(size=(4, 5))
    np.testing.assert_allclose(model.predict(x), forward(x), rtol=1e-4, atol=1e-6)
    other = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8), pynn.Dense(3)])
    model.load_weights(_archive(tmp_path / "m.keras", _config(layers), weights))  # .keras
    np.testing.assert_allclose(model.predict(x), forward(x), rtol=1e-4, atol=1e-6)
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"holds weights of layers \['batch_normalization'\]"):
        other.load_weights(tmp_path / "m.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(other.get_weights(), before))
    with pytest.raises(ValueError, match=r"build the model .* before loading the Keras"):
        pynn.Sequential([pynn.Dense(8)]).load_weights(tmp_path / "m.weights.h5")
    # skip_mismatch (Keras'): a new head of 4 classes keeps its own weights, the base loads
    new_head = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8, activation="relu"),
                                pynn.layers.BatchNormalization(), pynn.Dense(4)])
    head_before = new_head.layers[-1].get_weights()
    for path in (tmp_path / "m.weights.h5", tmp_path / "m.keras"):
        with pytest.warns(UserWarning, match=r"skip_mismatch left layers \['dense_.*'\] "
                                             r"unloaded"):
            skipped = new_head.load_weights(path, skip_mismatch=True)
        assert skipped == [new_head.layers[-1].name]
        np.testing.assert_array_equal(new_head.layers[1].kernel.numpy(), weights["dense"][0])
        np.testing.assert_array_equal(new_head.layers[2].get_weights()[0],
                                      weights["batch_normalization"][0])
        for a, b in zip(new_head.layers[-1].get_weights(), head_before):
            np.testing.assert_array_equal(a, b)
    with pytest.warns(UserWarning, match=r"the file's weights of layers "
                                         r"\['batch_normalization'\] have no layer here"):
        assert other.load_weights(tmp_path / "m.weights.h5", skip_mismatch=True) == []
    np.testing.assert_array_equal(other.layers[2].kernel.numpy(), weights["dense_1"][0])


@pytest.mark.parametrize("change, message", [
    (lambda w: w["dense_1"].pop(), r"layer 'out' \(dense_1\) has 2 weights in the model, "
                                   r"the file 1"),
    (lambda w: w["dense"].__setitem__(0, np.ones((4, 8), np.float32)),
     r"has weights of shapes \[\(5, 8\), \(8,\)\], the file \[\(4, 8\), \(8,\)\]"),
    (lambda w: w.__setitem__("dense_2", [np.ones((3, 3), np.float32)]),
     r"holds weights of layers \['dense_2'\] that the model lacks"),
])
def test_a_keras_file_that_does_not_fit_is_refused_by_name(tmp_path, rng, change, message):
    layers, weights, _ = _mlp(rng)
    change(weights)
    with pytest.raises(ValueError, match=message):
        pynn.load_model(_archive(tmp_path / "m.keras", _config(layers), weights))


def _tensor(name, shape):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None, *shape], "dtype": "float32",
                       "keras_history": [name, 0, 0]}}


def _functional(config, widths):
    """Keras 3's Functional description of the chain that a Sequential `config` describes
    (its layers' output widths given): each layer called once on the one before."""
    body = config["config"]
    entries = copy.deepcopy(body["layers"])
    for entry in entries:
        entry["name"] = entry["config"]["name"]
        entry["inbound_nodes"] = []
    for before, entry, width in zip(entries, entries[1:], widths):
        entry["inbound_nodes"] = [{"args": [_tensor(before["name"], (width,))],
                                   "kwargs": {}}]
    return {**config, "module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": "functional", "trainable": True, "layers": entries,
                       "input_layers": [entries[0]["name"], 0, 0],
                       "output_layers": [entries[-1]["name"], 0, 0]}}


def test_a_keras_functional_chain_loads_as_its_sequential(tmp_path, rng):
    layers, weights, forward = _mlp(rng)
    functional = _functional(_config(layers), [5, 8, 8, 8])
    model = pynn.load_model(_archive(tmp_path / "f.keras", functional, weights))
    assert [type(l).__name__ for l in model.layers] == [
        "InputLayer", "Dense", "BatchNormalization", "Dropout", "Dense"]
    assert model.name == "functional" and type(model.optimizer).__name__ == "Adam"
    x = rng.normal(size=(9, 5))
    np.testing.assert_allclose(model.predict(x), forward(x), rtol=1e-4, atol=1e-6)
    # as Keras writes them: training=False where a layer takes it (fit and predict override
    # it), mask=None
    functional["config"]["layers"][2]["inbound_nodes"][0]["kwargs"] = {"mask": None}
    functional["config"]["layers"][3]["inbound_nodes"][0]["kwargs"] = {"training": False}
    functional["config"]["input_layers"] = [["input_layer", 0, 0]]  # a list of one
    functional["config"]["output_layers"] = [["out", 0, 0]]
    model = pynn.load_model(_archive(tmp_path / "f.keras", functional, weights))
    np.testing.assert_allclose(model.predict(x), forward(x), rtol=1e-4, atol=1e-6)


def _changed(functional, change):
    changed = copy.deepcopy(functional)
    change(changed["config"])
    return changed


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(output_layers=[["out", 0, 0], ["hidden", 0, 0]]),
     r"of outputs \[\['out'.*one input and one output"),
    (lambda c: c.update(input_layers={"a": ["input_layer", 0, 0]}), "of inputs"),
    (lambda c: c["layers"][4]["inbound_nodes"].append(c["layers"][4]["inbound_nodes"][0]),
     "layer 'out' of its Functional model is called 2 times"),
    (lambda c: c["layers"][4]["inbound_nodes"][0]["args"].append(_tensor("hidden", (8,))),
     "layer 'out' of its Functional model is not called on one tensor"),
    (lambda c: c["layers"][3]["inbound_nodes"][0]["kwargs"].update(mask=[True]),
     "layer 'dropout' of its Functional model is called with mask"),
    (lambda c: c["layers"][1]["inbound_nodes"][0]["args"][0]["config"]["keras_history"]
     .__setitem__(0, "nowhere"), "refers to layer 'nowhere', which it does not describe"),
    (lambda c: c["layers"].append({**c["layers"][4], "name": "branch",
                                   "config": {**c["layers"][4]["config"], "name": "branch"}}),
     r"layers \['branch'\] of its Functional model are off the way"),
    (lambda c: c["layers"].insert(1, c["layers"].pop(2)), "out of the order they run in"),
    (lambda c: c["layers"][4].update(inbound_nodes=[[["dropout", 0, 0, {}]]]),
     "described in Keras 2's"),
    (lambda c: c["layers"][1]["inbound_nodes"][0]["args"][0]["config"]["keras_history"]
     .__setitem__(0, "out"), "form a loop"),
])
def test_a_keras_functional_model_that_is_not_a_chain_is_refused_by_name(tmp_path, rng,
                                                                         change, message):
    layers, weights, _ = _mlp(rng)
    functional = _changed(_functional(_config(layers), [5, 8, 8, 8]), change)
    with pytest.raises(ValueError, match=message):
        pynn.load_model(_archive(tmp_path / "f.keras", functional, weights))


def test_a_keras_functional_model_saved_by_keras_predicts_the_same_in_pynn(tmp_path, rng):
    keras = import_keras()
    L = keras.layers
    inputs = keras.Input((4, 3), name="pixels")
    x = L.Flatten()(inputs)
    x = L.Dense(16, activation="relu")(x)
    x = L.BatchNormalization()(x)
    x = L.Dropout(0.1)(x)
    outputs = L.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.normal(size=(32, 4, 3)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, 32), epochs=1, verbose=0)
    model.save(tmp_path / "k.keras")
    loaded = pynn.load_model(tmp_path / "k.keras")
    assert loaded.input_shape == (4, 3) and loaded.optimizer.training_steps == 1
    np.testing.assert_allclose(loaded.predict(x), np.asarray(model.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-6)
    branch = L.Dense(2)(inputs)  # a second output: not a chain
    keras.Model(inputs, [outputs, branch]).save(tmp_path / "two.keras")
    with pytest.raises(ValueError, match="one input and one output"):
        pynn.load_model(tmp_path / "two.keras")


def test_keras_models_pynn_cannot_read_are_refused_by_name(tmp_path, rng):
    layers, weights, _ = _mlp(rng)
    subclassed = {**_config(layers), "class_name": "MyModel"}
    with pytest.raises(ValueError, match="a Keras MyModel model; pynn reads Sequential models "
                                         "and Functional ones that are a chain"):
        pynn.load_model(_archive(tmp_path / "f.keras", subclassed, weights))
    nested = _config([{"module": "keras", "class_name": "Sequential", "config": {}}])
    with pytest.raises(ValueError, match="layer 1 is a nested Keras Sequential model"):
        pynn.load_model(_archive(tmp_path / "n.keras", nested, {}))
    conv = _config([{"module": "keras.layers", "class_name": "Conv2D",
                     "config": {"name": "conv2d", "filters": 4}}])
    with pytest.raises(ValueError, match="does not translate to pynn: Keras' Conv2D layer has "
                                         "no pynn counterpart"):
        pynn.load_model(_archive(tmp_path / "c.keras", conv, {}))
    sparse = _config(layers)
    sparse["config"]["layers"][0]["config"]["sparse"] = True
    with pytest.raises(ValueError, match="sparse or ragged"):
        pynn.load_model(_archive(tmp_path / "s.keras", sparse, weights))
    for dtype in ("int32", "float16", {"module": "keras", "class_name": "DTypePolicy",
                                       "config": {"name": "bfloat16"}}):
        # Keras casts the inputs to it (int32: 0.7 became 0); pynn read floats silently
        typed = _config(layers)
        typed["config"]["layers"][0]["config"]["dtype"] = dtype
        with pytest.warns(UserWarning, match="its InputLayer takes dtype '(int32|float16|bf)"):
            pynn.load_model(_archive(tmp_path / "t.keras", typed, weights))
    for dtype in ("float32", {"module": "keras", "class_name": "DTypePolicy",
                              "config": {"name": "float32"}}):
        typed["config"]["layers"][0]["config"]["dtype"] = dtype
        pynn.load_model(_archive(tmp_path / "t.keras", typed, weights))
    unknown_loss = _config(layers)
    unknown_loss["compile_config"]["loss"] = "no_such_loss"
    path = _archive(tmp_path / "l.keras", unknown_loss, weights)
    with pytest.raises(ValueError, match="compile settings do not translate.*compile=False"):
        pynn.load_model(path)
    assert pynn.load_model(path, compile=False).layers[1].name == "hidden"


def test_a_damaged_keras_archive_is_refused_by_name(tmp_path, rng):
    layers, weights, _ = _mlp(rng)
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("model.weights.h5", b"")
    with pytest.raises(ValueError, match="its config.json is not valid JSON"):
        pynn.load_model(path)
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):  # a claim of 4 GB
        _archive(path, _config(layers), weights)
        with zipfile.ZipFile(path) as z:
            members = {name: z.read(name) for name in z.namelist()}
        with zipfile.ZipFile(path, "w", compression=compression) as z:
            for name, data in members.items():
                z.writestr(name, data)
        _patch_claimed_size(path, "model.weights.h5", 0xFFFFFFF0)
        with pytest.raises(ValueError, match="its model.weights.h5 claims 4,294,967,280 "
                                             "bytes from .* more than its compression"):
            pynn.load_model(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(_config(layers)))
        z.writestr("model.weights.h5", b"not hdf5")
    with pytest.raises(ValueError, match="is not a Keras weights file"):
        pynn.load_model(path)


def test_metric_objects_of_a_keras_file_are_built_from_their_configs(tmp_path, rng):
    """compile(metrics=[keras.metrics.Precision(thresholds=0.3)]) saves the object's
    description, which pynn's metrics.get does not read (the file was refused)."""
    layers, weights, _ = _mlp(rng)
    config = _config(layers)
    config["compile_config"]["metrics"] = [
        {"module": "keras.metrics", "class_name": "Precision", "registered_name": None,
         "config": {"name": "precision", "dtype": "float32", "thresholds": 0.3, "top_k": None,
                    "class_id": None}}, "accuracy"]
    config["compile_config"]["weighted_metrics"] = [
        {"module": "keras.metrics", "class_name": "MeanSquaredError", "registered_name": None,
         "config": {"name": "mean_squared_error", "dtype": "float32"}}]
    model = pynn.load_model(_archive(tmp_path / "m.keras", config, weights))
    assert model.metrics_names == ["loss", "precision", "accuracy", "mean_squared_error"]
    assert model._metric_specs[0].threshold == 0.3
    config["compile_config"]["metrics"] = [{"class_name": "SpecificityAtSensitivity",
                                            "config": {"sensitivity": 0.5}}]
    assert pynn.load_model(_archive(tmp_path / "m.keras", config, weights))._metric_specs[
        0].value == 0.5
    config["compile_config"]["metrics"] = [{"class_name": "MeanIoU",
                                            "config": {"num_classes": 2}}]
    with pytest.raises(ValueError, match="'MeanIoU' has no pynn counterpart"):
        pynn.load_model(_archive(tmp_path / "m.keras", config, weights))


@pytest.mark.parametrize("dense_after", [True, False])
@pytest.mark.parametrize("axis", [-1, [-1], []])  # (Keras' config: [] for axis=None)
def test_a_normalization_given_its_mean_and_variance_keeps_them(tmp_path, rng, dense_after,
                                                                axis):
    """Keras keeps Normalization(mean=, variance=) in the config and writes no variables for
    it (the file was refused: "2 weights in the model, the file 0"; then, with the layer
    alone, loaded with a mean and variance of zeros, its outputs x / 1e-7)."""
    size = () if axis == [] else 5  # axis=None: one mean and variance for all values
    mean, variance = rng.normal(size=size), rng.uniform(0.5, 2, size=size)
    norm = {"module": "keras.layers", "class_name": "Normalization", "registered_name": None,
            "config": {"name": "normalization", "trainable": True, "dtype": _policy(),
                       "axis": axis, "invert": False, "mean": mean.tolist(),
                       "variance": variance.tolist()},
            "build_config": {"input_shape": [None, 5]}}
    kernel, bias = rng.normal(size=(5, 2)).astype(np.float32), np.zeros(2, np.float32)
    layers, weights = [norm], {"normalization": []}
    if dense_after:
        layers, weights = [norm, _dense("out", 2, "linear", 5)], {"dense": [kernel, bias]}
    config = _config(layers, compile_config=False)
    model = pynn.load_model(_archive(tmp_path / "n.keras", config, weights))
    x = rng.normal(size=(4, 5))
    want = (x - mean) / np.sqrt(variance)
    np.testing.assert_allclose(model.predict(x), want @ kernel if dense_after else want,
                               rtol=1e-4, atol=1e-5)
    if axis != []:  # statistics of another size: named, not numpy's broadcasting error
        norm["config"].update(mean=[0.0] * 3, variance=[1.0] * 3)
        with pytest.raises(ValueError, match=r"layer 'normalization' \(normalization\) is "
                                             r"given a mean and variance of shapes"):
            pynn.load_model(_archive(tmp_path / "w.keras", config, weights))


def test_keras_layer_keys():
    from pynn.layers.base import snake_case  # (the keys of a Keras weights file)

    assert [snake_case(n) for n in ("Dense", "BatchNormalization", "PReLU", "ReLU",
                                     "RMSNormalization", "LeakyReLU")] == [
        "dense", "batch_normalization", "p_re_lu", "re_lu", "rms_normalization", "leaky_re_lu"]


def test_a_model_saved_by_keras_predicts_the_same_in_pynn(tmp_path, rng):
    """With Keras installed: its own files, for the layers both have."""
    keras = import_keras()
    L = keras.layers
    model = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"),
                              L.BatchNormalization(), L.Dropout(0.1), L.Dense(8),
                              L.LayerNormalization(), L.PReLU(), L.Dense(4), L.LeakyReLU(0.1),
                              L.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.normal(size=(32, 6)).astype(np.float32)
    model.fit(x, rng.integers(0, 3, 32), epochs=1, verbose=0)
    model.save(tmp_path / "k.keras")
    model.save_weights(tmp_path / "k.weights.h5")
    want = np.asarray(model.predict(x, verbose=0))
    loaded = pynn.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(loaded.predict(x), want, rtol=1e-5, atol=1e-6)
    fresh = pynn.models.clone_model(loaded)
    fresh.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(fresh.predict(x), want, rtol=1e-5, atol=1e-6)


def test_what_keras_writes_for_one_output_and_functions_loads(tmp_path, rng):
    """Keras keeps compile's arguments as given: loss=["mse"], metrics=[["mae"]] or
    {"out": [...]}, and functions (keras.losses.huber) as {"class_name": "function"}; a
    Dense's activation may be a layer (LeakyReLU(0.05)); all were refused."""
    layers, weights, _ = _mlp(rng)
    layers[0]["config"]["activation"] = {"module": "keras.layers", "class_name": "LeakyReLU",
                                         "config": {"negative_slope": 0.05}}
    layers[3]["config"]["activation"] = {"module": "keras.layers", "class_name": "Softmax",
                                         "config": {"axis": -1}}
    function = {"module": "builtins", "class_name": "function", "registered_name": "function",
                "config": "mean_absolute_error"}
    for loss, metrics in ((["mse"], [["mae"]]), ({**function, "config": "huber"},
                                                  {"out": [function]})):
        config = _config(layers)
        config["compile_config"].update(loss=loss, metrics=metrics)
        model = pynn.load_model(_archive(tmp_path / "m.keras", config, weights))
        assert model.layers[1].activation == pynn.activations.Spec("leaky_relu", 0.05)
        assert model.layers[4].activation == pynn.activations.Spec("softmax")
        assert len(model.metrics_names) == 2


def test_keras_layers_of_your_own_and_unbuilt_layers_load(tmp_path, rng):
    """A layer of your own (Keras' base config writes autocast; the weights are keyed by
    the file's class name, not the pynn class's), and layers Keras had not built yet (an
    adapted Normalization before a Dense never called: no weights for it in the file)."""
    class PynnScale(pynn.layers.Layer):
        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.s = self.add_weight((input_shape[-1],), "ones", name="s")

        def forward(self, x, training=False, logits=False):
            return x * self.s.value

    mean = rng.normal(size=4)
    norm = {"class_name": "Normalization", "build_config": {"input_shape": [None, 4]},
            "config": {"name": "normalization", "axis": [1], "invert": False, "mean": None,
                       "variance": None}}
    scale = {"class_name": "Scale", "build_config": {"input_shape": [None, 4]},
             "config": {"name": "scale", "trainable": True, "dtype": _policy(),
                        "autocast": True}}
    dense = _dense("out", 2, "linear", 4)
    del dense["build_config"]
    config = _config([norm, scale, dense], input_rows=None, compile_config=False)
    config["config"]["layers"][0]["build_config"] = {"input_shape": [None, 4]}
    s = rng.uniform(1, 2, size=4).astype(np.float32)
    weights = {"normalization": [mean.astype(np.float32), np.ones(4, np.float32),
                                 np.int64(10)], "scale": [s]}
    path = _archive(tmp_path / "m.keras", config, weights)
    model = pynn.load_model(path, custom_objects={"Scale": PynnScale})
    np.testing.assert_array_equal(model.layers[1].s.numpy(), s)
    np.testing.assert_array_equal(model.layers[0].mean.numpy(), mean.astype(np.float32))
    assert model.layers[0].axis == -1 and model.predict(rng.normal(size=(2, 4))).shape == (2, 2)


@pytest.mark.parametrize("key", ["Scale", "mypkg>Scale"])
def test_a_registered_keras_layer_loads_by_either_name(tmp_path, rng, key):
    """Keras writes a registered class's 'package>Name' beside its class name, and its
    custom_objects take either; pynn took the class name only. A class name that is no
    identifier is named as a class, not as a lambda."""
    class PynnScale(pynn.layers.Layer):
        def forward(self, x, training=False, logits=False):
            return 2 * x

    scale = {"module": None, "class_name": "Scale", "registered_name": "mypkg>Scale",
             "config": {"name": "scale", "trainable": True, "dtype": _policy()}}
    path = _archive(tmp_path / "m.keras", _config([scale], input_rows=3, compile_config=False),
                    {})
    x = rng.normal(size=(2, 3))
    model = pynn.load_model(path, custom_objects={key: PynnScale})
    np.testing.assert_allclose(model.predict(x), 2 * x, rtol=1e-6)
    scale["class_name"] = "os.system"
    path = _archive(tmp_path / "d.keras", _config([scale], input_rows=3, compile_config=False),
                    {})
    with pytest.raises(ValueError, match=r"unknown layer class 'os.system': a layer of your "
                                         r"own loads with custom_objects=\{'os.system': "
                                         r"YourClass\}"):
        pynn.load_model(path)
    # a registered class of a pynn layer's name: the user's, as Keras looks up custom_objects
    # by the registered name first (pynn's Dropout was loaded, silently)
    scale.update(class_name="Dropout", registered_name="mypkg>Dropout")
    path = _archive(tmp_path / "r.keras", _config([scale], input_rows=3, compile_config=False),
                    {})
    model = pynn.load_model(path, custom_objects={"mypkg>Dropout": PynnScale})
    assert type(model.layers[-1]) is PynnScale


def test_a_keras_normalization_of_all_values_keeps_scalars(tmp_path, rng):
    """Normalization(axis=None): Keras writes axis () and scalar statistics."""
    norm = {"class_name": "Normalization", "build_config": {"input_shape": [None, 3]},
            "config": {"name": "normalization", "axis": [], "invert": False, "mean": None,
                       "variance": None}}
    config = _config([norm], input_rows=3, compile_config=False)
    path = _archive(tmp_path / "n.keras", config, {"normalization": [
        np.float32(2.0), np.float32(4.0), np.int64(7)]})
    x = rng.normal(size=(5, 3))
    np.testing.assert_allclose(pynn.load_model(path).predict(x), (x - 2) / 2, rtol=1e-5,
                               atol=1e-6)  # (x rounded to float32 near 2)


def test_other_keras_files_are_named_with_what_to_do(tmp_path, rng):
    # Keras 2's model file (its root's attributes), which Keras 3 still writes to .h5 paths
    # (named "a Keras 2 (tf.keras) file" before, its version 3.x)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(3)])
    for version in ("2.15.0", "3.15.0"):
        legacy = tmp_path / f"legacy-{version}.h5"
        with h5py.File(legacy, "w") as f:
            f.attrs["keras_version"] = version
            f.attrs["model_config"] = "{}"
            f.create_group("model_weights")
        for load in (pynn.load_model, model.load_weights):
            with pytest.raises(ValueError, match="a legacy Keras HDF5 model file .tf.keras 2's "
                                                 "format, which Keras 3 still writes to .h5 "
                                                 "paths.; pynn reads Keras 3's .keras files"):
                load(legacy)
    layers, weights, _ = _mlp(rng)
    _weights_file(tmp_path / "w.weights.h5", weights)
    with pytest.raises(ValueError, match="holds a Keras model's weights, not the model: "
                                         "build the model in pynn and call model.load_weights"):
        pynn.load_model(tmp_path / "w.weights.h5")
    constrained = _config(layers)
    constrained["config"]["layers"][1]["config"]["kernel_constraint"] = {
        "class_name": "MaxNormOfMine", "config": {"max_value": 2}}
    with pytest.raises(ValueError, match="unknown constraint class 'MaxNormOfMine'"):
        pynn.load_model(_archive(tmp_path / "c.keras", constrained, weights))
    path = _archive(tmp_path / "crc.keras", _config(layers), weights)
    data = bytearray(path.read_bytes())
    at = data.find(b"HDF") + 200  # a byte inside the weights member
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a readable .keras file .*BadZipFile"):
        pynn.load_model(path)


def test_sequential_from_config_reads_keras_get_config():
    """Sequential.from_config(keras_model.get_config()) failed on Keras' InputLayer
    ('unexpected keyword argument sparse') where model_from_json(keras_model.to_json())
    read the same model; Keras' dict holds tuples where its JSON holds lists."""
    config = _config([_dense("hidden", 3, "relu", 5), _dense("out", 2, "linear", 3)],
                     compile_config=False)["config"]
    config["layers"][0]["config"]["batch_shape"] = (None, 5)
    model = pynn.Sequential.from_config(config)
    assert [type(layer).__name__ for layer in model.layers] == ["InputLayer", "Dense", "Dense"]
    assert model.layers[1].activation.name == "relu" and model.layers[2].kernel.shape == (3, 2)


@pytest.mark.parametrize("optimizer", ["adafactor", "muon"])
def test_a_keras_file_of_an_optimizer_whose_state_pynn_cannot_read_says_so(tmp_path, rng,
                                                                           optimizer):
    keras = import_keras()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer, "mse")
    model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "k.keras")
    with pytest.warns(UserWarning, match=r"pynn reads no Keras state of (Adafactor|Muon): "
                                         r"the optimizer starts afresh"):
        loaded = pynn.load_model(tmp_path / "k.keras")
    assert loaded.optimizer.iterations == 0

