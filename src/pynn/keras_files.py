"""Keras 3 files and pynn: a `.keras` model archive (read by `pynn.load_model`, written by
`model.save("m.keras")`) and a `.weights.h5` weights file (read by `model.load_weights`), so a
model trained with Keras predicts and trains on pynn's kernels, and one trained with pynn
loads in Keras.

A `.keras` file is a zip of config.json (the architecture and compile settings),
metadata.json and model.weights.h5. pynn reads a Sequential model (or a Functional one that
is a chain of layers, as pynn.Model makes) of the layers it has (by
their Keras class names and configs: Dense, Dropout, BatchNormalization, ...), its weights,
and with compile=True its compile settings (optimizer, loss, metrics) and the optimizer's
state and step count where Keras keeps the variables pynn's optimizer has (optimizer_layout:
SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Lion, Ftrl, Lamb; any other
starts afresh). Other models (functional ones of several inputs, outputs or branches,
subclassed ones, a nested model, a layer pynn lacks) are refused by name.

pynn writes the same layout (pynn.keras_writer): Keras' descriptions of the model and its
compile settings, the layers' variables and the optimizer's as Keras keys them, so
`keras.saving.load_model` loads the model, compiled, its optimizer state included. Beside
them config.json holds pynn's own description of the model under "pynn" (a key Keras does
not read), as pynn's .npz holds it; pynn.load_model reads that one, so a pynn-written .keras
loads in pynn exactly as its .npz would (custom objects, pynn-only settings and layers
included).

Keras' weights file keys a Sequential's layers by class, not by name: `layers/dense`,
`layers/dense_1`, `layers/batch_normalization`, ... in order, each layer's variables as
`vars/0`, `vars/1`, ... in the layer's own order (pynn's layers keep Keras' order), the
optimizer's as `optimizer/vars/0` (the step count), `/1` (the learning rate, when a number)
and then each slot of each trainable weight. The HDF5 part is read by pynn.archive's checks
(no links to other files, no compressed or external data) and needs h5py (pynn's `h5`
extra).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile

import numpy as np

from .archive import open_keras_weights, open_zip, zip_member_size
from .layers.base import snake_case, stored_shape

_CONFIG, _WEIGHTS, _METADATA = "config.json", "model.weights.h5", "metadata.json"
PYNN_KEY = "pynn"  # config.json's description of a model pynn wrote (keras_writer)
_MAX_CONFIG = 64 << 20  # bytes: an architecture description, not data


def keras_kind(target):
    """What Keras file target is (a path or a seekable binary file object, put back where it
    was), read once: "archive" (a Keras 3 `.keras` zip), "weights" (a Keras 3 weights HDF5:
    a `layers` group, no pynn description), "legacy" (a Keras 2 / tf.keras HDF5 file: its
    root carries `keras_version` or `model_config`), or None (anything else, pynn's files
    and unreadable ones included: reading them says why)."""
    from .archive import _HDF5_MAGIC, META_KEY, file_head
    from .saving import _h5py

    stream = not isinstance(target, (str, os.PathLike))
    try:
        head = file_head(target)
        at = target.tell() if stream else 0
        try:
            if head.startswith(b"PK"):
                try:
                    with zipfile.ZipFile(target) as z:
                        names = set(z.namelist())
                except (zipfile.BadZipFile, OSError, EOFError):  # truncated: a .keras by
                    return "archive" if _named_keras(target) else None  # name says why
                # one of Keras' members, none of numpy's: a .keras (one lacking a member
                # says so when read)
                return "archive" if names & {_CONFIG, _WEIGHTS, _METADATA} and not any(
                    n.endswith(".npy") for n in names) else None
            if head.startswith(_HDF5_MAGIC):
                with _h5py().File(target, "r") as f:
                    if "model_config" in f.attrs or "keras_version" in f.attrs:
                        return "legacy"
                    return "weights" if META_KEY not in f.attrs and "layers" in f else None
        finally:
            if stream:
                target.seek(at)
    except (OSError, ValueError, AttributeError, RuntimeError, KeyError, ImportError,
            zipfile.BadZipFile):
        return None
    return None


def _named_keras(target):
    name = target if isinstance(target, (str, os.PathLike)) else getattr(target, "name", "")
    return isinstance(name, (str, os.PathLike)) and os.fspath(name).lower().endswith(".keras")


def load_model(target, where, custom_objects=None, compile=True):
    """The Sequential model of a Keras `.keras` archive, its weights and (compile=True) its
    compile settings and optimizer state; one pynn wrote, as pynn's description in it says
    (exactly as its .npz would load)."""
    config, weights = _read_archive(target, where)
    if PYNN_KEY in config:
        from .saving import rebuild_described

        with _open_weights(weights, where) as arrays:
            return rebuild_described(arrays, config[PYNN_KEY], where, custom_objects,
                                     compile)
    from .config import loading_weights, rng_untouched

    with rng_untouched(), loading_weights():  # (zeros, costing nothing until written: a
        model, keys, unbuilt = model_from_config(config, where, custom_objects)  # crafted
    with _open_weights(weights, where) as arrays:                        # size does not cost)
        assign_weights(model, arrays, keys, unbuilt)
        _fresh_weights(model, unbuilt)
        settings = config.get("compile_config")
        if compile and settings:
            _compile(model, settings, where)
            if not restore_optimizer(model, arrays) and _has_slots(arrays):
                name = type(model.optimizer).__name__
                why = (f"pynn reads no Keras state of {name}" if optimizer_layout(model) is None
                       else f"its optimizer variables do not fit the model's {name} (another "
                            f"optimizer, or weights frozen since)")
                warnings.warn(f"{where!r}: {why}: the optimizer starts afresh, as Keras does "
                              f"with variables it cannot place", UserWarning, stacklevel=3)
    return model


def _has_slots(arrays):
    """Whether a Keras weights file holds an optimizer's slots: beyond its step count and
    rate (what an optimizer Keras never built, an untrained model's, saves)."""
    return sum(n.startswith("optimizer/vars/") for n in arrays.names()) > 2


def _fresh_weights(model, unbuilt):
    """The layers Keras had not built (no weights in the file) get their initial weights,
    drawn as at a first call (the model was built with zeros for the file's)."""
    for i in sorted(unbuilt):
        layer = model._compute_layers[i]
        if layer.params:
            fresh = type(layer).from_config(layer.get_config())
            fresh._build_marked(layer.input_shape, layer.backend, layer.params[0].value.dtype)
            layer.set_weights(fresh.get_weights())


def read_described(target, where):
    """(pynn's description of the model, the Archive of the weights file it names: use it
    in a `with` block) of a `.keras` archive pynn wrote; None for another's."""
    config, weights = _read_archive(target, where, pynn_written_only=True)
    return (config[PYNN_KEY], _open_weights(weights, where)) if PYNN_KEY in config else None


def _read_archive(target, where, pynn_written_only=False):
    """(config.json's description, model.weights.h5's contents: a file object, or None when
    pynn_written_only and pynn did not write the archive: not copied out) of a .keras
    archive."""
    try:
        with open_zip(target, where) as z:
            for name in (_CONFIG, _WEIGHTS):
                if name not in z.namelist():
                    raise ValueError(f"{where!r} is a .keras archive without its {name}")
            config = _json_member(z, _CONFIG, where)
            weights = _member(z, _WEIGHTS, where, limit=None) \
                if isinstance(config, dict) and (PYNN_KEY in config or not pynn_written_only) \
                else None
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as exc:  # (a bad CRC...)
        raise ValueError(f"{where!r} is not a readable .keras file (truncated or corrupt?): "
                         f"{type(exc).__name__}: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{where!r}: its {_CONFIG} is not a Keras model description")
    return config, weights


def _open_weights(data, where):
    return open_keras_weights(data, f"{where} ({_WEIGHTS})", owned=True)


def restore_optimizer(model, arrays):
    """Keras' optimizer variables (`optimizer/vars/<i>`) into the compiled model's
    optimizer, its slots and step count, where they are laid out as optimizer_layout says
    (the same optimizer and trainable weights; each shape checked first); True if so. Else
    the optimizer starts afresh (False), as Keras does with variables it cannot place."""
    layout = optimizer_layout(model)
    names = {n for n in arrays.names() if n.startswith("optimizer/vars/")}
    if layout is None or names != {f"optimizer/vars/{i}" for i in range(len(layout))}:
        return False
    slots = []
    for i, item in enumerate(layout):
        shape, dtype = arrays.declared(f"optimizer/vars/{i}")
        if isinstance(item, tuple):
            expected = model.optimizer.slot_shape(item[1], item[0].shape)
            if stored_shape(shape, expected) != tuple(expected) or dtype.kind != "f":
                return False
            slots.append((i, *item))
        elif tuple(shape) != () or (item == "iteration") != (dtype.kind in "iu"):
            return False
    steps = int(arrays["optimizer/vars/0"])
    if not 0 <= steps < 2**63:  # (the engines count in int64)
        return False
    opt = model.optimizer
    state = {}  # id(param) -> (param, {slot: array})
    for i, p, slot in slots:
        state.setdefault(id(p), (p, {}))[1][slot] = p.backend.asarray(  # (see stored_shape)
            arrays[f"optimizer/vars/{i}"], p.value.dtype).reshape(
                model.optimizer.slot_shape(slot, p.shape))
    for p, values in state.values():
        opt.set_state_of(p, values)
    # (the rate and Nadam's product: the config's rate, and pynn's from the step count)
    opt.training_steps = steps
    return True


def load_weights(model, target, where, kind, skip_mismatch=False):
    """A Keras weights file (.weights.h5), or a .keras archive's weights (keras_kind: kind),
    into `model`; with skip_mismatch (assign_weights') the names of the layers left
    unloaded."""
    if kind == "archive":
        with open_zip(target, where) as z:
            source, where = _member(z, _WEIGHTS, where, limit=None), f"{where} ({_WEIGHTS})"
    else:
        source = target
    if not model.built:
        raise ValueError(f"build the model (or give it an Input) before loading the Keras "
                         f"weights of {where!r}: they do not say the input shape")
    with open_keras_weights(source, where, owned=kind == "archive") as arrays:
        return assign_weights(model, arrays, skip_mismatch=skip_mismatch)


def assign_weights(model, arrays, kinds=None, unbuilt=(), skip_mismatch=False):
    """Each layer's `vars/i` under its Keras key into the model, every count and shape
    checked before any is written. kinds: the Keras class names of the model's layers (a
    file's, where a layer of your own has another class name in pynn), default their pynn
    ones; unbuilt: the indices of layers Keras had not built (no weights in the file: they
    keep pynn's fresh ones, as Keras builds them at the first call). skip_mismatch (Keras'
    load_weights argument): a layer whose weights the file lacks or holds in other counts
    or shapes keeps its own, and the file's weights of layers the model lacks are left,
    with a warning naming both; returns the names of the layers left unloaded."""
    keys = layer_keys(model._compute_layers, kinds)
    by_layer = {}
    for name in arrays.names():
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "layers" or parts[2] != "vars":
            continue  # the optimizer's variables (not read) and anything else
        by_layer.setdefault(parts[1], []).append(name)
    unknown = sorted(set(by_layer) - set(keys))
    if unknown and not skip_mismatch:
        raise ValueError(f"{arrays.where!r} holds weights of layers {unknown} that the model "
                         f"lacks (its layers are keyed {keys}: Keras keys them by class, in "
                         f"order)")
    values, skipped = [], []
    for i, (layer, key) in enumerate(zip(model._compute_layers, keys)):
        try:
            values += _layer_values(layer, key, by_layer.get(key, []), arrays, i in unbuilt)
        except ValueError:
            if not skip_mismatch:
                raise
            skipped.append(layer.name)
    from .callbacks import _user_stacklevel
    from .saving import warn_skipped

    warn_skipped(arrays.where, skipped, unknown, _user_stacklevel())
    for layer, arrays_of_layer in values:
        if arrays_of_layer:
            layer.set_weights(arrays_of_layer)
    return skipped


def _layer_values(layer, key, names, arrays, unbuilt):
    """[(layer, its arrays from the file: `names`)], [] for a layer Keras had not built
    (unbuilt, none in the file); ValueError for weights that do not fit the layer."""
    if not names and unbuilt:
        return []
    expected = [tuple(w.shape) for w in layer.get_weights()]
    order = [f"layers/{key}/vars/{i}" for i in range(len(names))]
    if sorted(names) != sorted(order):
        raise ValueError(f"{arrays.where!r}: layer {layer.name!r} ({key}) has variables "
                         f"{sorted(names)}, not vars/0 to vars/{len(names) - 1}")
    if type(layer).__name__ == "Normalization":
        if not names and getattr(layer, "_given", None) is not None:
            # Normalization(mean=, variance=): Keras keeps them in its config, and the
            # model was built for loading (zeros): set them with the file's weights
            try:
                return [(layer, [np.broadcast_to(s, e)
                                 for s, e in zip(layer._given, expected)])]
            except ValueError:
                raise ValueError(f"{arrays.where!r}: layer {layer.name!r} ({key}) is given "
                                 f"a mean and variance of shapes "
                                 f"{[s.shape for s in layer._given]} for weights of "
                                 f"shapes {expected}") from None
        # Keras' adapted Normalization keeps its count as a third variable; pynn's not
        order = order[:len(expected)] if len(order) == len(expected) + 1 else order
    if len(order) != len(expected):
        raise ValueError(f"{arrays.where!r}: layer {layer.name!r} ({key}) has "
                         f"{len(expected)} weights in the model, the file {len(names)}")
    shapes = [tuple(arrays.shape_of(n)) for n in order]
    if type(layer).__name__ == "Normalization" and layer.axis is None and \
            all(shape == () for shape in shapes):
        # Keras keeps axis=None's one mean and variance as scalars, pynn one per feature
        return [(layer, [np.full(e, arrays[n]) for e, n in zip(expected, order)])]
    if shapes != expected:
        raise ValueError(f"{arrays.where!r}: layer {layer.name!r} ({key}) has weights of "
                         f"shapes {expected}, the file {shapes}")
    return [(layer, [arrays[n] for n in order])]


def layer_keys(layers, kinds=None):
    """The keys Keras gives the layers' variables in its weights file: their class names
    (kinds, default the layers' own) in snake case, numbered from the second of a class on:
    dense, dense_1, batch_normalization, ..."""
    keys, counts = [], {}
    for i, layer in enumerate(layers):
        key = snake_case(kinds[i] if kinds else type(layer).__name__)
        counts[key] = counts.get(key, -1) + 1
        keys.append(key if counts[key] == 0 else f"{key}_{counts[key]}")
    return keys


def _adam(opt):
    return [("m", "v")] + ([("v_hat",)] if opt.amsgrad else [])


# Keras 3 builds an optimizer's slots group by group, each group one variable per trainable
# weight with the group's slots interleaved: pynn's slot names in that order (Keras' Adam
# "momentum" and "velocity" are pynn's m and v, SGD's "momentum" pynn's velocity, ...: the
# same formulas, so either trains on from the other's state)
_KERAS_SLOTS = {
    "SGD": lambda opt: [("velocity",)] if opt.momentum else [],
    "Adam": _adam,
    "AdamW": _adam,
    "RMSprop": lambda opt: [("velocity",)] + ([("momentum",)] if opt.momentum else []) + (
        [("average_gradient",)] if opt.centered else []),
    "Adagrad": lambda opt: [("accumulator",)],
    "Adadelta": lambda opt: [("accumulated_grad", "accumulated_delta")],
    "Adamax": lambda opt: [("m", "u")],
    "Nadam": lambda opt: [("m", "v")],
    "Lion": lambda opt: [("m",)],
    "Ftrl": lambda opt: [("accumulator", "linear")],
    "Lamb": lambda opt: [("m", "v")],
}


def optimizer_layout(model):
    """Keras 3's variables of the model's optimizer, in its order: "iteration",
    "learning_rate" (a number rate), (param, slot) per trainable weight and slot, Nadam's
    "u_product"; None where Keras keeps other ones (an optimizer of another class, or
    pynn's without Keras' layout)."""
    from . import optimizers

    opt = model.optimizer
    name = type(opt).__name__
    if name not in _KERAS_SLOTS or getattr(optimizers, name) is not type(opt):
        return None
    groups = (([("average",)] if opt.use_ema else []) +  # Keras' base class builds these
              ([("gradient_accumulator",)] if opt.gradient_accumulation_steps else []) +
              _KERAS_SLOTS[name](opt))
    # Keras trains the weights of trainable layers but statistics (it knows no weight
    # frozen alone)
    params = [p for layer in model._compute_layers if layer.trainable
              for p in layer.params if not p.statistic]
    layout = ["iteration"] + ([] if opt.has_schedule else ["learning_rate"])
    for group in groups:
        layout += [(p, slot) for p in params for slot in group]
    return layout + (["u_product"] if name == "Nadam" else [])


def model_from_config(config, where, custom_objects):
    """(the Sequential a Keras 3 model config describes, built where Keras had built it, its
    layers' Keras class names, the indices of layers Keras had not built); where names the
    source in messages."""
    from .model import Sequential

    kind = config.get("class_name")
    if kind not in ("Sequential", "Functional"):
        raise ValueError(f"{where!r} holds a Keras {kind} model; pynn reads Sequential "
                         f"models and Functional ones that are a chain of layers")
    body = config.get("config")
    entries = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where!r}: its {_CONFIG} lists no layers")
    if kind == "Functional":
        entries = _chain_entries(body, entries, where)
    layers = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise ValueError(f"{where!r}: layer {i} of its {_CONFIG} is not a layer "
                             f"description")
        layers.append(_layer_entry(entry, i, where))
    try:
        model = Sequential.from_config({"name": body.get("name"), "layers": layers},
                                       custom_objects)
        shape = _build_shape(entries[0])
        if not model.built and shape is not None:
            model.build(shape)
    except (TypeError, ValueError, KeyError, NotImplementedError, MemoryError,
            OverflowError, AttributeError) as exc:
        missing = re.match(r"unknown layer class '(\w+)'", str(exc))
        if missing and any(e.get("class_name") == missing[1] and
                           str(e.get("module", "")).startswith("keras") for e in entries):
            # one of Keras' own layers: "a layer of your own" misled
            name = missing[1]
            raise ValueError(f"{where!r}: its Keras model does not translate to pynn: Keras' "
                             f"{name} layer has no pynn counterpart (a pynn layer class of "
                             f"your own that computes it loads with custom_objects="
                             f"{{{name!r}: YourLayer}})") from None
        raise ValueError(f"{where!r}: its Keras model does not translate to pynn: "
                         f"{type(exc).__name__}: {exc}") from None
    computed = [e for e in entries if e.get("class_name") != "InputLayer"]
    kinds = [e.get("class_name") for e in computed]
    unbuilt = {i for i, e in enumerate(computed) if "build_config" not in e}
    return model, kinds, unbuilt


def _chain_entries(body, entries, where):
    """The layer descriptions of a Keras Functional model, from its Input to its output,
    when they are a chain (one input, each layer called once on the output of the one
    before, one output: what pynn.Model makes); refused by name otherwise."""
    def one_layer(refs, what):  # Keras 3: [name, 0, 0], or a list of those
        if isinstance(refs, list) and len(refs) == 1 and isinstance(refs[0], list):
            refs = refs[0]
        if not (isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str)):
            raise ValueError(f"{where!r}: a Keras Functional model of {what} {refs!r}; pynn "
                             f"reads one input and one output")
        return refs[0]

    def name_of(entry):
        return entry.get("name") or entry["config"].get("name") \
            if isinstance(entry, dict) and isinstance(entry.get("config"), dict) else None

    by_name = {name_of(e): e for e in entries}
    start = one_layer(body.get("input_layers"), "inputs")
    name, chain = one_layer(body.get("output_layers"), "outputs"), []
    while True:
        entry = by_name.get(name)
        if entry is None or len(chain) >= len(entries):
            raise ValueError(f"{where!r}: its Functional model refers to layer {name!r}, "
                             f"which it does not describe (or its layers form a loop)")
        chain.append(entry)
        if name == start:
            break
        nodes = entry.get("inbound_nodes")
        if isinstance(nodes, list) and nodes and isinstance(nodes[0], list):
            raise ValueError(f"{where!r}: its Functional model is described in Keras 2's "
                             f"(tf.keras') format; pynn reads Keras 3's (save it with Keras "
                             f"3, or rebuild it as a Sequential)")
        if not isinstance(nodes, list) or len(nodes) != 1:
            raise ValueError(f"{where!r}: layer {name!r} of its Functional model is called "
                             f"{len(nodes) if isinstance(nodes, list) else 'an unknown number of'} "
                             f"times; pynn reads a chain of layers, each called once")
        node = nodes[0] if isinstance(nodes[0], dict) else {}
        args, kwargs = node.get("args"), node.get("kwargs") or {}
        tensor = args[0] if isinstance(args, list) and len(args) == 1 else None
        if not (isinstance(tensor, dict) and tensor.get("class_name") == "__keras_tensor__"
                and isinstance(tensor.get("config"), dict)):
            raise ValueError(f"{where!r}: layer {name!r} of its Functional model is not "
                             f"called on one tensor; pynn reads a chain of layers, each "
                             f"called on the output of the one before")
        # (Keras records training=False for a layer that takes it, and its fit and predict
        # override what a node records; mask=None is no mask)
        given = sorted(k for k, v in kwargs.items() if v is not None and k != "training") \
            if isinstance(kwargs, dict) else [repr(kwargs)]
        if given:
            raise ValueError(f"{where!r}: layer {name!r} of its Functional model is called "
                             f"with {', '.join(given)}; pynn calls layers on their input "
                             f"alone")
        history = tensor["config"].get("keras_history")
        if not isinstance(history, list) or not history or not isinstance(history[0], str):
            raise ValueError(f"{where!r}: layer {name!r} of its Functional model is called "
                             f"on a tensor of no known layer")
        name = history[0]
    if chain[-1].get("class_name") != "InputLayer":
        raise ValueError(f"{where!r}: its Functional model starts at layer {start!r}, not an "
                         f"Input")
    left = [name_of(e) for e in entries if not any(e is c for c in chain)]
    if left:
        raise ValueError(f"{where!r}: layers {left} of its Functional model are off the way "
                         f"from its input to its output; pynn reads a chain of layers")
    chain.reverse()
    if any(a is not b for a, b in zip(chain, entries)):  # (Keras keys weights in its order)
        raise ValueError(f"{where!r}: its Functional model lists its layers out of the "
                         f"order they run in")
    return chain


def _layer_entry(entry, i, where):
    """A Keras layer description as pynn's from_config takes it: an InputLayer's batch
    shape as a sample shape; a model inside the model refused."""
    kind, config = entry.get("class_name"), entry["config"]
    if kind in ("Sequential", "Functional", "Model"):
        raise ValueError(f"{where!r}: layer {i} is a nested Keras {kind} model; pynn reads "
                         f"a flat Sequential of layers")
    if kind == "InputLayer":
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        if not isinstance(shape, (list, tuple)) or len(shape) < 2 or None in shape[1:]:
            raise ValueError(f"{where!r}: its InputLayer has batch shape {shape!r}; pynn "
                             f"needs every axis but the batch axis sized")
        if config.get("sparse") or config.get("ragged"):
            raise ValueError(f"{where!r}: its InputLayer takes sparse or ragged tensors; "
                             f"pynn takes dense arrays")
        dtype = config.get("dtype")
        if isinstance(dtype, dict):  # a DTypePolicy's description
            dtype = (dtype.get("config") or {}).get("name")
        if dtype not in (None, "float32", "float64"):
            # Keras casts the inputs to it (int32 truncates 0.7 to 0): pynn computes in floatx
            warnings.warn(f"{where!r}: its InputLayer takes dtype {dtype!r}, to which Keras "
                          f"casts the inputs; pynn reads them as floats (the same for "
                          f"inputs of that type's values)", UserWarning, stacklevel=4)
        config = {"shape": shape[1:], "name": config.get("name")}
    if kind == "Normalization" and isinstance(config.get("axis"), (list, tuple)):
        # Keras writes the axes kept: [rank - 1] of a built layer is the last axis
        build = entry.get("build_config") or {}
        rank = len(build.get("input_shape") or ())
        if rank >= 2 and list(config["axis"]) in ([rank - 1], [-1]):
            config = {**config, "axis": -1}
    spec = {"class_name": kind, "config": config}
    if isinstance(entry.get("registered_name"), str):  # a registered class's 'package>Name',
        spec["registered_name"] = entry["registered_name"]  # which custom_objects may use
    return spec


def _build_shape(first):
    """The input shape a Keras model without an InputLayer was built for (its first
    layer's build_config), or None."""
    build = first.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    if first.get("class_name") == "InputLayer" or not isinstance(shape, (list, tuple)):
        return None
    return tuple(shape)


def _compile(model, settings, where):
    from . import losses, metrics as metrics_mod, optimizers

    def metrics(specs):
        specs = _one_output(specs)
        if specs is None:
            return None
        specs = specs if isinstance(specs, list) else [specs]
        return [_accuracy_as_keras(_metric(m), loss) for m in specs]

    def _accuracy_as_keras(metric, loss):
        """Keras reads "accuracy" by the output's width alone: several outputs under binary
        cross-entropy are categorical there (pynn's "accuracy" reads them one by one)."""
        width = int(model.output_shape[-1]) if model.output_shape else 1
        if isinstance(metric, str) and metric.lower() in ("accuracy", "acc") and width > 1 \
                and metrics_mod.accuracy_for(type(loss).name, width) is \
                metrics_mod.binary_accuracy:
            return metrics_mod.CategoricalAccuracy(name=metric)
        return metric

    try:
        if not isinstance(settings, dict):
            raise ValueError(f"compile_config is a {type(settings).__name__}, not a dict")
        loss = losses.get(_function(_one_output(settings.get("loss"))))
        model.compile(optimizer=optimizers.get(settings.get("optimizer") or "rmsprop"),
                      loss=loss,
                      metrics=metrics(settings.get("metrics")),
                      weighted_metrics=metrics(settings.get("weighted_metrics")),
                      loss_weights=settings.get("loss_weights"))
    except (TypeError, ValueError, NotImplementedError, AttributeError, KeyError) as exc:
        raise ValueError(f"{where!r}: its Keras compile settings do not translate to pynn "
                         f"({exc}); load it with compile=False and compile it yourself") \
            from None


def _one_output(spec):
    """A single output's setting as Keras keeps what compile was given: ["mse"], [["mae"]]
    or {"out": [...]} for one output is the setting itself."""
    if isinstance(spec, dict) and "class_name" not in spec and len(spec) == 1:
        return next(iter(spec.values()))
    if isinstance(spec, list) and len(spec) == 1 and isinstance(spec[0], list):
        return spec[0]
    return spec


def _function(spec):
    """A loss or metric given as a Keras function: {"class_name": "function", "config":
    "mean_squared_error"} is that name; a one-item list of a loss is the loss."""
    if isinstance(spec, dict) and spec.get("class_name") == "function" and \
            isinstance(spec.get("config"), str):
        return spec["config"]
    if isinstance(spec, list) and len(spec) == 1:
        return _function(spec[0])
    return spec


def _metric(spec):
    """A metric as Keras' compile_config holds it: a name as it is; an object's description
    ({"class_name", "config"}) as pynn's metric class of that name, from its config."""
    spec = _function(spec)
    if not isinstance(spec, dict):
        return spec
    from . import metrics

    name = spec.get("class_name")
    cls = getattr(metrics, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, metrics.Metric)):
        raise ValueError(f"the Keras metric {name!r} has no pynn counterpart")
    config = spec.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"the Keras metric {name!r} has no config dict")
    if cls is metrics.MeanMetricWrapper:  # its function, as Keras describes one
        fn = _function(config.get("fn"))
        if not isinstance(fn, str):
            raise ValueError(f"the Keras metric {name!r} names no function")
        # (fn's keyword arguments sit beside name and dtype in Keras' config: k=1)
        kwargs = {k: v for k, v in config.items() if k not in ("name", "dtype", "fn") and
                  (v is None or isinstance(v, (bool, int, float, str)))}
        return metrics.MeanMetricWrapper(metrics.deserialize({"function": fn}),
                                         config.get("name"), **kwargs)
    return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)


def _member(z, name, where, limit):
    info = z.getinfo(name)
    if limit is not None and info.file_size > limit:
        raise ValueError(f"{where!r}: its {name} declares {info.file_size:,} bytes, more than "
                         f"a model description holds")
    zip_member_size(info, z.fp.seek(0, os.SEEK_END),
                    lambda why: ValueError(f"{where!r}: its {name} {why}"))
    # in memory up to 64 MiB, beyond in a temporary file: a small deflated member may
    # declare a large one (1000-fold), of which only the arrays named are read
    data = tempfile.SpooledTemporaryFile(max_size=64 << 20) if limit is None else io.BytesIO()
    with z.open(name) as f:
        shutil.copyfileobj(f, data, 1 << 20)
    if data.tell() != info.file_size:
        raise ValueError(f"{where!r}: its {name} holds other than the {info.file_size:,} "
                         f"bytes it declares")
    data.seek(0)
    return data


def _json_member(z, name, where):
    try:
        return json.loads(_member(z, name, where, _MAX_CONFIG).getvalue().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if str(exc).startswith(repr(where)):
            raise
        raise ValueError(f"{where!r}: its {name} is not valid JSON ({exc})") from None


__all__ = ["assign_weights", "keras_kind", "layer_keys", "load_model", "load_weights",
           "model_from_config", "optimizer_layout", "read_described", "restore_optimizer"]
