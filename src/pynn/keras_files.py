"""Keras 3 files read into pynn: a `.keras` model archive (`pynn.load_model`) and a
`.weights.h5` weights file (`model.load_weights`), so a model trained with Keras predicts
and trains on pynn's kernels.

A `.keras` file is a zip of config.json (the architecture and compile settings),
metadata.json and model.weights.h5. pynn reads a Sequential model of the layers it has (by
their Keras class names and configs: Dense, Dropout, BatchNormalization, ...), its weights,
and with compile=True its compile settings (optimizer, loss, metrics); the optimizer starts
afresh (Keras' slot variables and step count are not read). Other models (functional or
subclassed ones, a nested model, a layer pynn lacks) are refused by name.

Keras' weights file keys a Sequential's layers by class, not by name: `layers/dense`,
`layers/dense_1`, `layers/batch_normalization`, ... in order, each layer's variables as
`vars/0`, `vars/1`, ... in the layer's own order (pynn's layers keep Keras' order). The HDF5
part is read by pynn.archive's checks (no links to other files, no compressed or external
data) and needs h5py (pynn's `h5` extra).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile

from .archive import open_keras_weights

_CONFIG, _WEIGHTS = "config.json", "model.weights.h5"
_MAX_CONFIG = 64 << 20  # bytes: an architecture description, not data
_DEFLATE_MAX_RATIO = 1032  # deflate's largest expansion (a zip bomb's tell)


def is_keras_archive(target):
    """Whether target (a path or a seekable binary file object) is a Keras `.keras` zip."""
    try:
        if isinstance(target, (str, os.PathLike)):
            if not zipfile.is_zipfile(target):
                return False
            with zipfile.ZipFile(target) as z:
                names = set(z.namelist())
        else:
            at = target.tell()
            try:
                with zipfile.ZipFile(target) as z:
                    names = set(z.namelist())
            finally:
                target.seek(at)
    except (OSError, zipfile.BadZipFile, ValueError, AttributeError):
        return False
    return _CONFIG in names and _WEIGHTS in names and not any(n.endswith(".npy")
                                                              for n in names)


def is_keras_weights(target):
    """Whether target (a path or a seekable binary file object) is an HDF5 file of Keras
    layer weights (a `layers` group, no pynn description)."""
    from .archive import _HDF5_MAGIC, META_KEY, file_head
    from .saving import _h5py

    stream = not isinstance(target, (str, os.PathLike))
    try:
        if not file_head(target).startswith(_HDF5_MAGIC):
            return False
        at = target.tell() if stream else 0
        try:
            with _h5py().File(target, "r") as f:
                return META_KEY not in f.attrs and "layers" in f
        finally:
            if stream:
                target.seek(at)
    except (OSError, ValueError, AttributeError, RuntimeError, KeyError, ImportError):
        return False


def load_model(target, where, custom_objects=None, compile=True):
    """The Sequential model of a Keras `.keras` archive, its weights and (compile=True) its
    compile settings."""
    with zipfile.ZipFile(target) as z:
        config = _json_member(z, _CONFIG, where)
        weights = _member(z, _WEIGHTS, where, limit=None)
    if not isinstance(config, dict):
        raise ValueError(f"{where!r}: its {_CONFIG} is not a Keras model description")
    model = _model_from_config(config, where, custom_objects)
    with open_keras_weights(io.BytesIO(weights), f"{where} ({_WEIGHTS})") as arrays:
        assign_weights(model, arrays)
    settings = config.get("compile_config")
    if compile and settings:
        _compile(model, settings, where)
    return model


def load_weights(model, target, where):
    """A Keras weights file (.weights.h5), or a .keras archive's weights, into `model`."""
    if is_keras_archive(target):
        with zipfile.ZipFile(target) as z:
            source, where = io.BytesIO(_member(z, _WEIGHTS, where, limit=None)), \
                f"{where} ({_WEIGHTS})"
    else:
        source = target
    if not model.built:
        raise ValueError(f"build the model (or give it an Input) before loading the Keras "
                         f"weights of {where!r}: they do not say the input shape")
    with open_keras_weights(source, where) as arrays:
        assign_weights(model, arrays)


def assign_weights(model, arrays):
    """Each layer's `vars/i` under its Keras key into the model, every count and shape
    checked before any is written."""
    keys, counts = [], {}
    for layer in model._compute_layers:
        key = _snake_case(type(layer).__name__)
        counts[key] = counts.get(key, -1) + 1
        keys.append(key if counts[key] == 0 else f"{key}_{counts[key]}")
    by_layer = {}
    for name in arrays.names():
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "layers" or parts[2] != "vars":
            continue  # the optimizer's variables (not read) and anything else
        by_layer.setdefault(parts[1], []).append(name)
    unknown = sorted(set(by_layer) - set(keys))
    if unknown:
        raise ValueError(f"{arrays.where!r} holds weights of layers {unknown} that the model "
                         f"lacks (its layers are keyed {keys}: Keras keys them by class, in "
                         f"order)")
    values = []
    for layer, key in zip(model._compute_layers, keys):
        names = by_layer.get(key, [])
        expected = [tuple(w.shape) for w in layer.get_weights()]
        order = [f"layers/{key}/vars/{i}" for i in range(len(names))]
        if sorted(names) != sorted(order):
            raise ValueError(f"{arrays.where!r}: layer {layer.name!r} ({key}) has variables "
                             f"{sorted(names)}, not vars/0 to vars/{len(names) - 1}")
        if type(layer).__name__ == "Normalization":
            if not names and getattr(layer, "_given", None) is not None:
                continue  # Normalization(mean=, variance=): Keras keeps them in the config
            # Keras' adapted Normalization keeps its count as a third variable; pynn's not
            order = order[:len(expected)] if len(order) == len(expected) + 1 else order
        if len(order) != len(expected):
            raise ValueError(f"{arrays.where!r}: layer {layer.name!r} ({key}) has "
                             f"{len(expected)} weights in the model, the file {len(names)}")
        shapes = [tuple(arrays.shape_of(n)) for n in order]
        if shapes != expected:
            raise ValueError(f"{arrays.where!r}: layer {layer.name!r} ({key}) has weights of "
                             f"shapes {expected}, the file {shapes}")
        values.append((layer, [arrays[n] for n in order]))
    for layer, arrays_of_layer in values:
        if arrays_of_layer:
            layer.set_weights(arrays_of_layer)


def _model_from_config(config, where, custom_objects):
    from .model import Sequential

    kind = config.get("class_name")
    if kind != "Sequential":
        raise ValueError(f"{where!r} holds a Keras {kind} model; pynn reads Sequential "
                         f"models only")
    body = config.get("config")
    entries = body.get("layers") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where!r}: its {_CONFIG} lists no layers")
    layers = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise ValueError(f"{where!r}: layer {i} of its {_CONFIG} is not a layer "
                             f"description")
        layers.append(_layer_entry(entry, i, where))
    try:
        model = Sequential.from_config({"name": body.get("name"), "layers": layers},
                                       custom_objects)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{where!r}: its Keras model does not translate to pynn: "
                         f"{exc}") from None
    shape = _build_shape(entries[0])
    if not model.built and shape is not None:
        model.build(shape)
    return model


def _layer_entry(entry, i, where):
    """A Keras layer description as pynn's from_config takes it: an InputLayer's batch
    shape as a sample shape; a model inside the model refused."""
    kind, config = entry.get("class_name"), entry["config"]
    if kind in ("Sequential", "Functional", "Model"):
        raise ValueError(f"{where!r}: layer {i} is a nested Keras {kind} model; pynn reads "
                         f"a flat Sequential of layers")
    if kind == "InputLayer":
        shape = config.get("batch_shape") or config.get("batch_input_shape")
        if not isinstance(shape, list) or len(shape) < 2 or None in shape[1:]:
            raise ValueError(f"{where!r}: its InputLayer has batch shape {shape!r}; pynn "
                             f"needs every axis but the batch axis sized")
        if config.get("sparse") or config.get("ragged"):
            raise ValueError(f"{where!r}: its InputLayer takes sparse or ragged tensors; "
                             f"pynn takes dense arrays")
        config = {"shape": shape[1:], "name": config.get("name")}
    return {"class_name": kind, "config": config}


def _build_shape(first):
    """The input shape a Keras model without an InputLayer was built for (its first
    layer's build_config), or None."""
    build = first.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    if first.get("class_name") == "InputLayer" or not isinstance(shape, list):
        return None
    return tuple(shape)


def _compile(model, settings, where):
    from . import optimizers

    def metrics(specs):
        return None if specs is None else [_metric(m) for m in specs]

    try:
        model.compile(optimizer=optimizers.get(settings.get("optimizer") or "rmsprop"),
                      loss=settings.get("loss"), metrics=metrics(settings.get("metrics")),
                      weighted_metrics=metrics(settings.get("weighted_metrics")),
                      loss_weights=settings.get("loss_weights"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where!r}: its Keras compile settings do not translate to pynn "
                         f"({exc}); load it with compile=False and compile it yourself") \
            from None


def _metric(spec):
    """A metric as Keras' compile_config holds it: a name as it is; an object's description
    ({"class_name", "config"}) as pynn's metric class of that name, from its config."""
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
    return cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)


def _member(z, name, where, limit):
    info = z.getinfo(name)
    if limit is not None and info.file_size > limit:
        raise ValueError(f"{where!r}: its {name} declares {info.file_size:,} bytes, more than "
                         f"a model description holds")
    # what the zip directory claims is the author's word: bounded by the stored bytes
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"{where!r}: its {name} uses compression method "
                         f"{info.compress_type}; pynn reads stored or deflated members")
    if info.file_size > (1 if info.compress_type == zipfile.ZIP_STORED
                         else _DEFLATE_MAX_RATIO) * max(info.compress_size, 1):
        raise ValueError(f"{where!r}: its {name} declares {info.file_size:,} bytes from "
                         f"{info.compress_size:,}, beyond what compression gives")
    with z.open(name) as f:
        data = f.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ValueError(f"{where!r}: its {name} holds other than the {info.file_size:,} "
                         f"bytes it declares")
    return data


def _json_member(z, name, where):
    try:
        return json.loads(_member(z, name, where, _MAX_CONFIG).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if str(exc).startswith(repr(where)):
            raise
        raise ValueError(f"{where!r}: its {name} is not valid JSON ({exc})") from None


def _snake_case(name):
    """Keras' key for a layer class (BatchNormalization -> batch_normalization, PReLU ->
    p_re_lu): words split before each capital that starts a lower-case run, and between a
    lower-case letter and a capital."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


__all__ = ["assign_weights", "is_keras_archive", "is_keras_weights", "load_model",
           "load_weights"]
