"""pynn models written as Keras 3 `.keras` archives: what `model.save("m.keras")`,
`pynn.save_model(model, "m.keras")` and a ModelCheckpoint to a `.keras` path write.

The archive is laid out as Keras 3 (3.15) writes its own: a zip of metadata.json,
config.json and model.weights.h5, stored uncompressed. config.json describes the
Sequential as Keras does: every object (layer, initializer, regularizer, optimizer,
schedule, loss, metric) as {"module", "class_name", "config", "registered_name"}, each
layer with its build_config, the model with its build_config and compile_config.
model.weights.h5 keys each layer's variables `layers/<class key>/vars/<i>` (as
pynn.keras_files reads them) and, where pynn's optimizer keeps the variables Keras' does
(keras_files.optimizer_layout: SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam,
Lion, Ftrl, Lamb, with use_ema and gradient_accumulation_steps too), the optimizer's state
as Keras keeps it: `optimizer/vars/0` the step count, `/1` the learning rate (when it is a
number), then each slot of each trainable weight in Keras' build order. So
`keras.saving.load_model` rebuilds the model, compiles it as pynn had it and trains on from
the same state. (Another optimizer, Adafactor or Muon, Keras starts afresh, with its
warning.) A component of your own is named as Keras names one (its module and registered
name): Keras loads it given a Keras class of that name in custom_objects.

Keras computes what pynn does but for gelu_tanh (Keras names no tanh form of gelu: it is
written as "gelu", the exact form, with a warning; they differ by up to 5e-4) and the seeds
of the random layers (Keras draws its own masks; pynn's 64-bit seeds are written modulo
2**32, Keras' range). Precision, Recall, F1Score and AUC lose pynn's multilabel argument:
Keras reads (N, C) outputs its own way, so on such outputs their values may differ from
pynn's.

Nothing pynn's .npz holds is lost. config.json also holds, under "pynn" (a key Keras does
not read), the description a pynn .npz holds: pynn's own configs and custom marks, the
compile settings, the optimizer's step count and which arrays hold its slots, the shuffle
seed. Arrays Keras keeps elsewhere or not at all (the statistics of a Normalization given
mean= and variance=, the slots of an optimizer Keras lays out otherwise) lie in the
weights file's `pynn` group, which Keras does not read. pynn.load_model reads that
description (keras_files.load_model), so a pynn-written .keras loads exactly as its .npz.

Writing needs h5py (pynn's `h5` extra).
"""

from __future__ import annotations

import datetime
import io
import json
import warnings
import zipfile

import numpy as np

from .callbacks import _user_stacklevel
from .keras_files import (_CONFIG, _MAX_CONFIG, _METADATA, _WEIGHTS, PYNN_KEY, layer_keys,
                          optimizer_layout)

KERAS_VERSION = "3.15.1"  # the Keras whose layout this follows (metadata.json says so)

# Where Keras finds the pynn components a config names, by the key naming them (a layer's
# "kernel_initializer": keras.initializers); a user's are found in their own module
_MODULES = {"initializer": "keras.initializers", "regularizer": "keras.regularizers",
            "constraint": "keras.constraints"}

# Activations with a parameter, which Keras writes as the layer of that name
_ACTIVATION_LAYERS = {"leaky_relu": ("LeakyReLU", "negative_slope"), "elu": ("ELU", "alpha")}


def require_h5py(filepath, what="a Keras .keras file", saved="the model"):
    """h5py, or ImportError saying what to do (before anything is written)."""
    from . import saving

    try:
        return saving._h5py()
    except ImportError as exc:
        raise ImportError(f"saving {filepath!r} as {what} needs h5py: pip install "
                          f"'pynn[h5]', or save {saved} as .npz") from exc


def save(model, filepath, meta, arrays):
    """The model as a Keras 3 archive at filepath (a path), written atomically. meta and
    arrays: the description and arrays saving.save_model makes for a .npz."""
    from . import __version__, saving

    h5py = require_h5py(filepath)
    datasets, groups, meta = _weights(model, meta, arrays)
    saving.check_description_size(json.dumps(meta, default=saving._json_value))
    config = _keras_model(model, meta, saving.user_objects(model))
    config[PYNN_KEY] = meta
    text = json.dumps(config, default=saving._json_value)
    saving.check_description_size(text, _MAX_CONFIG, f"{_CONFIG} (Keras' and pynn's "
                                  f"descriptions together)")
    members = {
        _METADATA: json.dumps({"keras_version": KERAS_VERSION, "pynn_version": __version__,
                               "date_saved": datetime.datetime.now().strftime(
                                   "%Y-%m-%d@%H:%M:%S")}),
        _CONFIG: text,
        _WEIGHTS: _h5_bytes(h5py, datasets, groups)}

    def write(f):
        with zipfile.ZipFile(f, "w") as z:  # stored, as Keras writes them
            for name, data in members.items():
                z.writestr(name, data)

    saving.atomic_write(filepath, write)


def save_weights(model, filepath, meta, arrays):
    """The weights as a Keras 3 weights file (`.weights.h5`) at filepath (a path), written
    atomically: the layers' variables keyed as Keras keys them (Keras' load_weights reads
    them), pynn's description as the root's attribute, its array keys those paths (pynn's
    load_weights reads it as its own .h5). meta and arrays: saving.save_weights's."""
    from . import saving
    from .archive import META_KEY

    h5py = require_h5py(filepath, "a Keras .weights.h5 file", "the weights")
    datasets, groups, meta = _weights(model, meta, arrays, optimizer=False)
    text = json.dumps(meta, default=saving._json_value)
    saving.check_description_size(text)
    data = _h5_bytes(h5py, datasets, groups, {META_KEY: text})
    saving.atomic_write(filepath, lambda f: f.write(data))


def _h5_bytes(h5py, datasets, groups, attributes=None):
    """The weights file: plain datasets (Keras' and pynn's readers take no other), and each
    Keras group's "name" attribute, as Keras writes them (and the root's attributes)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for path, name in groups.items():
            f.require_group(path).attrs["name"] = name
        for path, array in datasets.items():
            f.create_dataset(path, data=array)
        f.attrs.update(attributes or {})
    return buffer.getvalue()


def _weights(model, meta, arrays, optimizer=True):
    """({h5 path: array}, {Keras group: its object's name}, meta with the arrays' keys
    renamed to their paths): each array once, where Keras reads it, else under `pynn/`."""
    from .layers import InputLayer

    datasets, moved = {}, {}  # moved: .npz key -> h5 path
    groups = {"vars": model.name}
    keys = iter(layer_keys(model._compute_layers))
    for layer, entry in zip(model.layers, meta["layers"]):
        if isinstance(layer, InputLayer):
            continue
        base = f"layers/{next(keys)}/vars"
        groups[base] = layer.name
        own = [arrays[w["key"]] for w in entry["weights"]]
        variables, shared = _keras_variables(layer, own)
        for i, array in enumerate(variables):
            datasets[f"{base}/{i}"] = array
        if shared:
            moved.update((w["key"], f"{base}/{i}") for i, w in enumerate(entry["weights"]))
    if model.compiled and optimizer:
        groups["optimizer/vars"] = model.optimizer.name
        variables, slots = _optimizer_variables(model, meta, arrays)
        datasets.update(variables)
        moved.update(slots)
    for key, array in arrays.items():
        if key not in moved:
            moved[key] = f"{PYNN_KEY}/{key}"
            datasets[moved[key]] = array
    meta = {**meta, "layers": [{**entry, "weights": [{**w, "key": moved[w["key"]]}
                                                     for w in entry["weights"]]}
                               for entry in meta["layers"]]}
    if "optimizer_state" in meta:
        state = meta["optimizer_state"]
        meta["optimizer_state"] = {**state, "slots": [{**s, "key": moved[s["key"]]}
                                                      for s in state["slots"]]}
    return datasets, groups, meta


def _keras_variables(layer, weights):
    """(the arrays Keras keeps for the layer, its vars/0, /1, ...; whether they begin with
    the layer's own weights, which are then stored there once)."""
    from .layers import Normalization

    if not isinstance(layer, Normalization):
        return weights, True
    if layer._given is not None:  # Keras keeps given statistics in the config alone
        return [], False
    count = np.int64(0)  # Keras' adapt() count: pynn keeps none, and Keras reads none
    if layer.axis is None:  # Keras keeps axis=None's one mean and variance as scalars
        return [w.reshape(-1)[0] for w in weights] + [count], False
    return [*weights, count], True


def _optimizer_variables(model, meta, arrays):
    """({h5 path: array} of the optimizer's variables as Keras keeps them, {.npz key: h5
    path} of pynn's slots among them); nothing where Keras keeps other variables (Keras
    then starts its optimizer afresh, with a warning)."""
    from .backend import to_host

    layout = optimizer_layout(model)
    if layout is None:
        return {}, {}
    opt = model.optimizer
    index = {id(p): i for i, p in enumerate(model.params)}
    saved = {(s["param"], s["slot"]): s["key"] for s in meta["optimizer_state"]["slots"]}
    dtype = _float_type(model)
    variables, moved = {}, {}
    for n, item in enumerate(layout):
        path = f"optimizer/vars/{n}"
        if item == "iteration":
            value = np.int64(opt.training_steps)  # (Keras counts steps, as pynn)
        elif item == "learning_rate":
            value = np.array(opt.rate(), dtype)
        elif item == "u_product":
            value = _u_product(opt, dtype)
        else:
            p, slot = item
            key = saved.get((index[id(p)], slot))
            if key is not None:
                value, moved[key] = arrays[key], path
            else:  # no update yet: the slot as it starts
                value = to_host(opt._initial_slot(slot, p.backend, p.value), p.backend)
        variables[path] = value
    return variables, moved


def _u_product(opt, dtype):
    """Keras' Nadam keeps the product of its momentum schedule, which pynn computes."""
    kind = np.dtype(dtype).type  # (multiplied in the weights' type, step by step, as Keras)
    product = kind(1.0)
    for step in range(1, opt._update_count() + 1):
        product = product * kind(opt.beta_1 * (1.0 - 0.5 * 0.96 ** step))
    return np.array(product)


def _float_type(model):
    """The numpy float type of the model's weights (Keras' dtype policy)."""
    return np.dtype(model.params[0].value.dtype if model.params else "float32")


def _keras_model(model, meta, objects):
    """config.json's Keras description of the model (meta: pynn's)."""
    policy = {"module": "keras", "class_name": "DTypePolicy",
              "config": {"name": _float_type(model).name}, "registered_name": None}
    layers = [_keras_layer(layer, spec, policy, objects)
              for layer, spec in zip(model.layers, meta["config"]["layers"])]
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": _keras_name(meta["config"]["name"]), "trainable": True,
                         "dtype": policy, "layers": layers},
              "build_config": {"input_shape": [None, *model.input_shape]}}
    if "compile" in meta:
        config["compile_config"] = _keras_compile(meta["compile"], objects, model)
    return config


def _keras_layer(layer, spec, policy, objects):
    """A layer's Keras description from its pynn one (spec)."""
    config = dict(spec["config"])
    if spec["class_name"] == "InputLayer" and not spec.get("custom"):
        return _keras_object(spec, {"batch_shape": [None, *config["shape"]],
                                    "dtype": policy["config"]["name"], "sparse": False,
                                    "ragged": False, "name": _keras_name(config["name"]),
                                    "optional": False}, "keras.layers", objects)
    config.pop("input_shape", None)  # Keras takes it from build_config
    config["name"] = _keras_name(config["name"])
    config = {key: _keras_value(key, value, objects) for key, value in config.items()}
    entry = _keras_object(spec, {**config, "dtype": policy}, "keras.layers", objects)
    if layer.built:
        entry["build_config"] = {"input_shape": [None, *layer.input_shape]}
    return entry


def _keras_name(name):
    """A layer's or model's name as Keras takes one: no "/" (pynn's description keeps it)."""
    return name.replace("/", "_") if isinstance(name, str) else name


def _keras_seeds(config):
    """A component's config with its seed in Keras' range (uint32: bigger ones fail to load;
    pynn draws 64-bit seeds)."""
    seed = config.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return {**config, "seed": seed % 2**32}
    return config


def _keras_value(key, value, objects):
    """A layer config's value as Keras writes it: an activation, a seed, or a component (a
    "*_initializer", "*_regularizer" or "*_constraint" description)."""
    if key == "activation":
        if value == "gelu_tanh":  # Keras names no tanh form (its gelu's approximate=True)
            warnings.warn("Keras has no name for gelu_tanh, gelu's tanh approximation: the "
                          ".keras file names it 'gelu', which Keras computes exactly (up to "
                          "5e-4 apart); pynn reads gelu_tanh back", UserWarning,
                          stacklevel=_user_stacklevel())
            return "gelu"
        if isinstance(value, dict) and value.get("name") in _ACTIVATION_LAYERS:
            name, argument = _ACTIVATION_LAYERS[value["name"]]
            return _keras_object({"class_name": name}, {argument: value["param"]},
                                 "keras.layers", objects)
        return value
    if key == "seed":
        return _keras_seeds({"seed": value})["seed"]
    module = _MODULES.get(key.rsplit("_", 1)[-1])
    if module and isinstance(value, dict) and "class_name" in value:
        return _keras_object(value, _keras_seeds(value.get("config", {})), module, objects)
    return value


def _keras_object(spec, config, module, objects):
    """{"module", "class_name", "config", "registered_name"} of a component: pynn's under
    Keras' module, a user's (spec "custom") under its own with its registered name, as
    Keras writes its custom objects."""
    name = spec["class_name"]
    if not spec.get("custom"):
        return {"module": module, "class_name": name, "config": config,
                "registered_name": None}
    obj = objects.get(name)
    return {"module": getattr(obj, "__module__", None), "class_name": name,
            "config": config, "registered_name": _registered_name(obj, name)}


def _registered_name(obj, name):
    """register_keras_serializable's "package>name" of obj, else its name (Keras'
    get_registered_name)."""
    from .custom_objects import registered_name

    return registered_name(obj) or name


def _keras_compile(settings, objects, model):
    """compile_config as Keras writes it, from pynn's compile settings."""
    spec = settings["optimizer"]
    config = dict(spec["config"])
    if isinstance(config.get("learning_rate"), dict):
        rate = config["learning_rate"]
        config["learning_rate"] = _keras_object(rate, rate.get("config", {}),
                                                "keras.optimizers.schedules", objects)

    def metrics(specs):
        return [_keras_metric(m, objects, model) for m in specs] or None

    loss = settings["loss"]
    return {"optimizer": _keras_object(spec, config, "keras.optimizers", objects),
            "loss": _keras_object(loss, loss.get("config", {}), "keras.losses", objects),
            "loss_weights": None, "metrics": metrics(settings["metrics"]),
            "weighted_metrics": metrics(settings.get("weighted_metrics", [])),
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": "auto"}


def _keras_metric(spec, objects, model):
    """A compile() metric as Keras writes it, meaning what it means in pynn: a function's
    name as it is; a name of a pynn Metric class ("rmse", "precision") and pynn's functions
    that are Metric objects (precision, roc_auc: Keras has no such functions) as that
    object's description; "accuracy" where Keras would read it otherwise (binary
    cross-entropy's several outputs, read one by one in pynn) as BinaryAccuracy; a function
    as Keras' function description; a Metric object's description."""
    from . import metrics

    width = int(model.output_shape[-1]) if model.output_shape else 1
    if isinstance(spec, str):
        if spec.lower() in ("accuracy", "acc") and width > 1 and \
                metrics.accuracy_for(model._loss_kind, width) is metrics.binary_accuracy:
            return _keras_object({"class_name": "BinaryAccuracy"},
                                 {"name": spec, "threshold": 0.5}, "keras.metrics", objects)
        described = metrics.serialize(metrics.get(spec))
        if described is None or described.get("class_name") == "MeanMetricWrapper":
            return spec  # a function's mean (mse, accuracy): Keras' names
        spec = described
    if "function" in spec and not spec.get("custom"):
        stateful = metrics.serialize(metrics.get(metrics.deserialize(spec)))
        if stateful is not None and stateful.get("class_name") != "MeanMetricWrapper":
            spec = stateful  # (precision, roc_auc...: logged under the function's name)
    if "function" in spec:
        name = spec["function"]
        obj = objects.get(name) if spec.get("custom") else None
        return {"module": obj.__module__ if obj is not None else "builtins",
                "class_name": "function",
                "config": _registered_name(obj, name) if obj is not None else name,
                "registered_name": "function"}
    config = dict(spec.get("config", {}))
    if spec["class_name"] == "MeanMetricWrapper" and not spec.get("custom"):
        config.pop("direction", None)  # (pynn's: which way is better)
        config["fn"] = _keras_metric(config["fn"], objects, model)  # Keras' function's
    if not spec.get("custom"):  # pynn's own argument, multilabel, Keras lacks: it reads
        config.pop("multilabel", None)  # (N, C) outputs its own way
        if spec["class_name"] in ("Precision", "Recall") and "threshold" in config:
            config["thresholds"] = config.pop("threshold")  # (Keras' name)
        f_score = spec["class_name"] in ("F1Score", "FBetaScore")
        if f_score and config.get("average") is None:
            config["average"] = "macro"  # pynn logs None's macro mean; Keras, per class
        if f_score and config.get("threshold") is None and \
                width == 1:  # pynn reads one output at 0.5, Keras' None by its argmax
            config["threshold"] = 0.5
        if spec["class_name"] == "AUC" and getattr(model.loss, "from_logits", False):
            # pynn's AUC ranks the outputs, logits or not; Keras' thresholds them in [0, 1]
            config["from_logits"] = True
    return _keras_object(spec, config, "keras.metrics", objects)


__all__ = ["require_h5py", "save", "save_weights"]
