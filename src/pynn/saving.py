"""Weights files: one .npz holding every weight array plus a JSON description, never a pickle.

Layout: `__pynn__` is a JSON string (format name and version, pynn version, and per layer its
name, class and weight shapes); `layer{i}.{weight}` are the arrays, in layer order. Files are
written atomically: to a temporary file in the same directory, flushed and fsynced, then
renamed over the target, so an interrupted save never leaves a truncated file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "pynn-weights"
FORMAT_VERSION = 1
META_KEY = "__pynn__"


def atomic_write(filepath, write):
    """Call write(fileobj) on a temporary file, then move it to filepath in one step."""
    filepath = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory {directory!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pynn-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:  # KeyboardInterrupt included: never leave the temporary behind
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _weight_key(layer_index, param_name):
    return f"layer{layer_index}.{param_name.rsplit('/', 1)[-1]}"


def save_weights(model, filepath):
    if not model.built:
        raise ValueError("the model has no weights yet: build it (fit, build or an Input) first")
    from . import __version__

    arrays, layers = {}, []
    for i, layer in enumerate(model.layers):
        entry = {"name": layer.name, "class": type(layer).__name__, "weights": []}
        for p in layer.params:
            key = _weight_key(i, p.name)
            arrays[key] = p.numpy()
            entry["weights"].append({"key": key, "shape": list(p.shape)})
        layers.append(entry)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "pynn_version": __version__,
            "layers": layers}
    arrays[META_KEY] = np.array(json.dumps(meta))
    atomic_write(filepath, lambda f: np.savez(f, **arrays))


def read_npz(filepath):
    """{name: array} of an .npz file, refusing pickles; clear errors for bad files."""
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"no such file: {filepath!r}")
    try:
        with np.load(filepath, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(f"{filepath!r} holds pickled objects; pynn never loads pickles") \
                from exc
        raise ValueError(f"{filepath!r} is not a valid .npz file: {exc}") from exc
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{filepath!r} is not a readable .npz file (truncated or corrupt?): "
                         f"{exc}") from exc


def read_meta(arrays, filepath):
    if META_KEY not in arrays:
        raise ValueError(f"{filepath!r} is not a pynn file (no {META_KEY} entry)")
    try:
        meta = json.loads(str(arrays[META_KEY]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{filepath!r}: its description is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{filepath!r} is not a pynn weights file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{filepath!r} has format version {version!r}; this pynn reads up to "
                         f"{FORMAT_VERSION}: upgrade pynn")
    return meta


def load_weights(model, filepath):
    arrays = read_npz(filepath)
    meta = read_meta(arrays, filepath)
    saved = [l for l in meta["layers"] if l["weights"]]
    if not model.built:
        first = saved[0]["weights"][0]["shape"] if saved else None
        if first is None or len(first) != 2:
            raise ValueError("build the model (or give it an Input) before loading weights")
        model._ensure_built(first[0])
    ours = [l for l in model.layers if l.params]
    if len(saved) != len(ours):
        raise ValueError(f"{filepath!r} holds weights for {len(saved)} layers, the model has "
                         f"{len(ours)} layers with weights")
    plan = []
    for layer, entry in zip(ours, saved):
        if len(entry["weights"]) != len(layer.params):
            raise ValueError(f"layer {layer.name!r}: the file has {len(entry['weights'])} weight "
                             f"arrays (layer {entry['name']!r}), the model {len(layer.params)}")
        for p, w in zip(layer.params, entry["weights"]):
            array = arrays.get(w["key"])
            if array is None:
                raise ValueError(f"{filepath!r} lacks the array {w['key']!r}")
            if array.shape != p.shape:
                raise ValueError(f"layer {layer.name!r}, weight {p.name.rsplit('/', 1)[-1]!r}: "
                                 f"the file has shape {array.shape}, the model {p.shape}")
            if not np.issubdtype(array.dtype, np.floating):
                raise ValueError(f"{filepath!r}: array {w['key']!r} has dtype {array.dtype}, "
                                 f"expected floats")
            plan.append((p, array))
    for p, array in plan:  # every check passed: nothing is half-loaded
        p.assign(array)
