"""pynn files: one .npz holding arrays plus a JSON description, never a pickle.

Two kinds share one layout. A weights file (`save_weights`) has `__pynn__`, a JSON string
(format name and version, pynn version, and per layer its name, class and weight shapes), and
`layer{i}.{weight}`, the arrays in layer order. A model file (`model.save`) adds the model's
config (layers and their arguments), the compile settings, and the optimizer's step count and
state arrays (`opt.{param index}.{slot}`), so `load_model` rebuilds a model that predicts and
goes on training exactly like the saved one. Loading never unpickles and never evaluates a
string; layer classes come only from pynn's registry or `custom_objects`; it reads only the
arrays the description names, each checked against the bytes its member holds, and never
data kept outside the file (pynn.archive), so files from anyone load safely.

`model.save` to a path ending in .keras writes a Keras 3 archive instead (pynn.keras_writer):
Keras' own description of the model and its weights, which Keras loads, holding this
description too (its array keys those of the archive's HDF5 weights file), which pynn loads.

Files are written atomically: to a temporary file in the same directory, flushed and
fsynced, then renamed over the target, so an interrupted save never leaves a truncated file.
A binary file object (io.BytesIO, an open file, a cloud storage stream) works in place of a
path: saving writes .npz to it as it is, loading reads either format. Components of the
user's own load through custom_objects (pynn.custom_objects).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import secrets
import stat
import threading
import warnings

import numpy as np

from . import keras_files, keras_writer
from .custom_objects import (custom_object_scope, get_custom_objects,  # keras.saving's
                             register_keras_serializable)
from .archive import META_KEY, open_archive
from .backend import to_host
from .layers.base import stored_shape

FORMAT = "pynn-weights"
MODEL_FORMAT = "pynn-model"
# 2: "gelu" is the exact (erf) form; version 1's "gelu", its tanh approximation, loads as
# "gelu_tanh"
FORMAT_VERSION = 2
_MAX_DESCRIPTION = 1 << 24  # characters: a description of 10,000 layers takes ~2 million


def atomic_write(filepath, write):
    """Call write(fileobj) on a temporary file, then move it to filepath in one step. A
    symlink is followed (its target is replaced, the link kept). A stream (is_stream) is
    written through in append mode, as a shell's redirection left it (/dev/stdout may be a
    pipe, or a log file opened with >>: replacing it would lose the log), in one write of
    the whole file made in memory (the writers seek back to patch headers, which append
    mode would turn into appends: a corrupt file)."""
    filepath = os.fspath(filepath)
    if is_stream(filepath):
        buffer = io.BytesIO()
        write(buffer)
        with open(filepath, "ab") as f:
            f.write(buffer.getbuffer())
        return
    if filepath.endswith(os.sep) or (os.altsep and filepath.endswith(os.altsep)):
        raise IsADirectoryError(f"{filepath!r} names a directory (it ends in a separator); "
                                f"give a file name")
    target = os.path.realpath(filepath)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory {directory!r} does not exist")
    if os.path.exists(target) and not os.access(target, os.W_OK):  # as open(filepath, "wb")
        raise PermissionError(errno.EACCES, "the file is read-only", filepath)
    try:
        fd, tmp = _new_temporary(directory)
    except OSError as exc:  # named by the user's path, not the temporary's
        raise type(exc)(exc.errno, f"{exc.strerror} (cannot create a file in {directory!r})",
                        filepath) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(target):  # keep the replaced file's permissions
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except BaseException:  # KeyboardInterrupt included: never leave the temporary behind
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# A process's file descriptors by name: what the shell set up, whatever file it is.
_DESCRIPTOR_PATH = re.compile(r"/dev/(std(in|out|err)|fd/\d+)|/proc/(self|thread-self|\d+)/fd/\d+")


def is_stream(filepath):
    """Whether filepath is written through rather than replaced: it exists and is no regular
    file (a FIFO, a terminal, /dev/null), or names a process's file descriptor (/dev/stdout,
    /dev/fd/N, /proc/self/fd/N). A regular file elsewhere under /dev (/dev/shm's RAM disk)
    is replaced like any other: zip and HDF5 writers seek back, which append mode defeats."""
    path = os.path.abspath(os.fspath(filepath))
    if _DESCRIPTOR_PATH.fullmatch(path):
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)  # follows links, /proc's included
    except (FileNotFoundError, NotADirectoryError):
        return False


def _new_temporary(directory):
    """(fd, path) of a new file created with mode 0666 so the umask applies as for open()
    (mkstemp's 0600 would hide the result from others; reading the umask means setting it,
    which races with other threads)."""
    while True:
        path = os.path.join(directory, f".pynn-{secrets.token_hex(8)}.tmp")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue


def _weight_key(layer_index, param_name):
    return f"layer{layer_index}.{param_name.rsplit('/', 1)[-1]}"


def _weight_arrays(model):
    """({key: array}, per-layer description) of every weight, trainable or not."""
    arrays, layers = {}, []
    for i, layer in enumerate(model.layers):
        entry = {"name": layer.name, "class": type(layer).__name__, "weights": []}
        for p in layer.params:
            key = base = _weight_key(i, p.name)
            k = 1
            while key in arrays:  # two weights of one name in a layer (a layer of your own
                key, k = f"{base}_{k}", k + 1  # listing its inner layers' weights)
            arrays[key] = p.numpy()
            entry["weights"].append({"key": key, "shape": list(p.shape),
                                     "trainable": bool(p.trainable)})
        layers.append(entry)
    return arrays, layers


def _meta(kind, layers, **extra):
    from . import __version__

    return {"format": kind, "format_version": FORMAT_VERSION, "pynn_version": __version__,
            "layers": layers, **extra}


def _is_h5(filepath):
    return os.fspath(filepath).lower().endswith((".h5", ".hdf5"))


def _path_ending(filepath, suffix):
    """Whether filepath is a path (a str; a file object takes .npz) ending in suffix, in any
    case."""
    return isinstance(filepath, str) and filepath.lower().endswith(suffix)


def _is_keras_weights(filepath):
    """Whether weights saving writes Keras 3's weights layout: a path ending in
    .weights.h5, the name Keras gives (and requires of) its weights files."""
    return _path_ending(filepath, ".weights.h5")


def is_keras(filepath):
    """Whether model saving writes a Keras 3 archive to filepath: a path ending in .keras
    (a file object takes .npz)."""
    return _path_ending(filepath, ".keras")


def _is_file_object(target):
    return hasattr(target, "read") or hasattr(target, "write")


def as_target(target):
    """A path as str (bytes and os.PathLike decoded as the file system does), anything else
    (a file object, or what _check_target refuses) as it is."""
    return os.fsdecode(target) if isinstance(target, (bytes, os.PathLike)) else target


def _check_target(target, mode):
    """A path, or a binary file object for `mode` ('rb'/'wb'); TypeError otherwise."""
    if _is_file_object(target):
        if isinstance(target, io.TextIOBase):
            raise TypeError(f"{where(target)} is a text file object: open it in binary mode "
                            f"({mode!r})")
        method = "read" if mode == "rb" else "write"
        if not hasattr(target, method):
            raise TypeError(f"{where(target)} is a file object without {method}()")
        able = getattr(target, "readable" if mode == "rb" else "writable", None)
        try:
            refused = callable(able) and not able()
        except ValueError:  # a closed file
            raise ValueError(f"{where(target)} is closed") from None
        if refused:  # (a file opened "rb" has a write() that fails: UnsupportedOperation)
            raise TypeError(f"{where(target)} is not open for "
                            f"{'reading' if mode == 'rb' else 'writing'} (open it {mode!r})")
        return
    if not isinstance(target, (str, bytes, os.PathLike)):
        raise TypeError(f"filepath must be a path (str or os.PathLike) or a binary file object, "
                        f"got {type(target).__name__}")


def _read_through(filepath):
    """A path that is no regular file (/dev/stdin, a FIFO: it reads once) as a file object
    of its bytes, named by the path; anything else as it is. Loading reads a file more than
    once (its kind, then its contents)."""
    if isinstance(filepath, str) and is_stream(filepath) and os.path.exists(filepath) and \
            not os.path.isdir(filepath):
        with open(filepath, "rb") as f:
            buffer = io.BytesIO(f.read())
        buffer.name = filepath
        return buffer
    return filepath


def where(target):
    """How messages name a file: its path, or a file object's name."""
    if _is_file_object(target):
        name = getattr(target, "name", None)
        return f"<file object {name}>" if isinstance(name, str) else \
            f"<{type(target).__name__} file object>"
    return os.fspath(target)


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("HDF5 weights files need h5py: pip install 'pynn[h5]'") from exc
    return h5py


def check_weights_name(filepath):
    """ValueError for weights saved under a .keras name (Keras refuses it too): pynn.load_model
    and Keras would read a model there."""
    if is_keras(as_target(filepath)):
        raise ValueError(f"{os.fsdecode(filepath)!r}: a .keras file holds a whole model "
                         f"(model.save); save weights as .weights.h5, .h5 or .npz")


def check_model_name(filepath):
    """ValueError for a whole model saved under a name that says another kind of file: a
    .weights.h5 (Keras refuses it too: weights only) or an .onnx (a graph, model.export);
    pynn wrote a .npz there, which neither Keras nor onnxruntime reads."""
    name = as_target(filepath)
    if not isinstance(name, str):
        return
    if name.lower().endswith(".weights.h5"):
        raise ValueError(f"{name!r}: a .weights.h5 file holds weights only "
                         f"(model.save_weights); save the model as .keras, .h5 or .npz")
    if name.lower().endswith(".onnx"):
        raise ValueError(f"{name!r}: an .onnx file is a graph for other runtimes: "
                         f"model.export(path, format='onnx'); save the model as .keras, .h5 "
                         f"or .npz")


def check_overwrite(filepath, overwrite):
    """FileExistsError for an existing file when overwrite is False (Keras asks instead)."""
    if not overwrite and isinstance(filepath, (str, bytes, os.PathLike)) and \
            os.path.exists(filepath):
        raise FileExistsError(f"{os.fsdecode(filepath)} exists and overwrite=False")


def save_weights(model, filepath, overwrite=True):
    """Every weight to one file: .npz (default), or HDF5 when the name ends in .h5/.hdf5,
    in Keras 3's layout for a .weights.h5 name (Keras' load_weights reads it; pynn's
    description beside); Keras' saving.save_weights's arguments. A .keras name is refused:
    such a file holds a whole model (model.save)."""
    check_weights_name(filepath)
    check_overwrite(filepath, overwrite)
    filepath = as_target(filepath)
    model._layers_tracked()  # (strictly: a holder tracked elsewhere since, or refused)
    if not model.built:
        raise ValueError("the model has no weights yet: build it (fit, build or an Input) first")
    arrays, layers = _weight_arrays(model)
    # the input shape: an unbuilt model loading the file is built for it
    meta = _meta(FORMAT, layers, input_shape=list(model.input_shape))
    if _is_keras_weights(filepath):  # Keras 3's layout, which Keras' load_weights reads
        keras_writer.save_weights(model, filepath, meta, arrays)
        return
    _write(filepath, arrays, json.dumps(meta))


def check_description_size(text, limit=_MAX_DESCRIPTION, what="pynn file"):
    """What loading refuses is not written: a description (JSON text) longer than a file
    holds raises ValueError."""
    if len(text) > limit:
        raise ValueError(f"cannot save the model: its description has {len(text):,} "
                         f"characters, more than the {limit:,} a {what} holds (a "
                         f"get_config() returning data? keep data in weights)")


def _write(filepath, arrays, meta):
    """arrays and the JSON description `meta` to .npz, or HDF5 when the name ends in
    .h5/.hdf5 (the same names: one dataset per array, the description as an attribute)."""
    _check_target(filepath, "wb")
    check_description_size(meta)
    if _is_file_object(filepath):  # the caller's stream: .npz, in one write() (zip needs
        buffer = io.BytesIO()  # to seek back; a socket, gzip or write-only stream cannot)
        np.savez(buffer, **{**arrays, META_KEY: np.array(meta)})
        filepath.write(buffer.getvalue())
        return
    if _is_h5(filepath):
        h5py = _h5py()

        def write_h5(f):  # to the temporary file object, renamed into place
            try:
                with h5py.File(f, "w") as h5:
                    h5.attrs[META_KEY] = meta
                    for key, array in arrays.items():
                        h5.create_dataset(key, data=array)
            except SystemError as exc:  # h5py's file-object driver wraps the write's OSError
                cause = exc.__cause__ or exc.__context__  # (a full disk) in a SystemError
                while cause is not None and not isinstance(cause, OSError):
                    cause = cause.__cause__ or cause.__context__
                if cause is None:
                    raise
                raise OSError(cause.errno, cause.strerror) from exc

        atomic_write(filepath, write_h5)
        return
    arrays = {**arrays, META_KEY: np.array(meta)}
    atomic_write(filepath, lambda f: np.savez(f, **arrays))


def _metric_names(given):
    from . import metrics

    specs = [metrics.serialize(m) for m in given]
    for m, spec in zip(given, specs):
        if spec is None:
            raise ValueError(f"cannot save metric {m!r}: a file names a metric by its name, "
                             f"its Metric class or its function's name (a lambda has none); "
                             f"compile with one of those or save_weights instead")
    return specs


# ids of the models whose files this thread writes with their metrics given by name only
_METRIC_NAMES_ONLY = threading.local()


@contextlib.contextmanager
def metric_names_only(model):
    """While in it, this thread's files of `model` keep only the metrics compile was given
    by name (pickling carries the others as objects). The model itself is not changed: its
    specs set aside for the time raced with other threads' evaluate and fit, which then
    rebuilt their metrics without the objects, and with a second copy made meanwhile, which
    put the shortened list back for good."""
    previous = getattr(_METRIC_NAMES_ONLY, "ids", frozenset())
    _METRIC_NAMES_ONLY.ids = previous | {id(model)}
    try:
        yield
    finally:
        _METRIC_NAMES_ONLY.ids = previous


def _saved_metrics(model, given):
    if id(model) in getattr(_METRIC_NAMES_ONLY, "ids", ()):
        return [m for m in given if isinstance(m, str)]
    return list(given)


def compile_settings(model):
    """A compiled model's compile() arguments as a file saves them (weighted_metrics only
    when there are some: files without them load in older pynn)."""
    from . import losses, optimizers

    settings = {"optimizer": optimizers.serialize(model.optimizer),
                "loss": losses.serialize(model.loss),
                "metrics": _metric_names(_saved_metrics(model, model._metric_specs))}
    weighted = _saved_metrics(model, getattr(model, "_weighted_metric_specs", []))
    if weighted:
        settings["weighted_metrics"] = _metric_names(weighted)
    return settings


def user_objects(model):
    """{name: class or function} of the user's own components in the model (layers,
    initializers, regularizers, loss, optimizer and its schedule, metrics): what load_model
    needs as custom_objects, and what pickling carries by reference."""
    from . import metrics
    from .custom_objects import is_custom
    from .constraints import Constraint
    from .initializers import FunctionInitializer, Initializer
    from .regularizers import Regularizer

    found = [type(layer) for layer in model.layers]
    for layer in model.layers:  # the initializers, regularizers, constraints a config names
        found += [v.fn if type(v) is FunctionInitializer else type(v)
                  for v in vars(layer).values()
                  if isinstance(v, (Initializer, Regularizer, Constraint))]
        found += [type(p.constraint) for p in layer.params if p.constraint is not None]
    if model.compiled:
        found += [type(model.loss), type(model.optimizer)]
        found.append(type(getattr(model.optimizer, "_schedule", None)))
        for m in [*model._metric_specs, *getattr(model, "_weighted_metric_specs", [])]:
            found.append(m if isinstance(m, type) or not hasattr(m, "update_state") else type(m))
            if type(m) is metrics.MeanMetricWrapper:  # (a file names its function)
                found.append(m.fn)
    # only what a file names by a __name__ (not a functools.partial, a callable object)
    return {obj.__name__: obj for obj in found
            if isinstance(getattr(obj, "__name__", None), str) and obj.__name__.isidentifier()
            and is_custom(obj) and obj.__module__ != "builtins"}  # (a lambda has no name)


def _description(model):
    """The model file's JSON description of the model (not the weights' shapes), checked by
    rebuilding everything in it as load_model will, with the model's own classes as
    custom_objects: a component whose get_config() cannot rebuild it, or a value JSON cannot
    hold, is refused before anything is written (such files saved and never loaded)."""
    model._check_layer_class_names("save", ValueError)
    extra = {"config": model.get_config()}
    if model.compiled:
        extra["compile"] = compile_settings(model)
    try:
        text = json.dumps(extra, default=_json_value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot save the model: a get_config() returned what JSON cannot "
                         f"hold ({exc})") from None
    _trial_load(json.loads(text), user_objects(model))
    return extra


def _json_value(value):
    """numpy scalars and arrays a get_config() returned, as JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON")


def _compile_arguments(settings):
    """compile()'s optimizer, loss and metrics rebuilt from a file's compile settings (user
    classes from the enclosing custom-object scope)."""
    from . import losses, metrics, optimizers

    return {"optimizer": optimizers.get(settings["optimizer"]),
            "loss": losses.get(settings["loss"]),
            "metrics": [metrics.deserialize(m) for m in settings["metrics"]] or None,
            "weighted_metrics": [metrics.deserialize(m)
                                 for m in settings.get("weighted_metrics", [])] or None}


def _trial_load(extra, objects):
    from .config import loading_weights, rng_untouched
    from .custom_objects import custom_object_scope, file_marks
    from .layers.base import layer_names_untouched
    from .model import Sequential

    def rebuild(config):
        with custom_object_scope(objects), file_marks(True), rng_untouched(), \
                layer_names_untouched(), loading_weights():
            Sequential.from_config(config)
            if "compile" in extra:
                _compile_arguments(extra["compile"])

    # Without the input shape nothing is built: no weights drawn (16 ms a save for a 2M-weight
    # model, every epoch of a ModelCheckpoint), the same classes and arguments checked.
    unbuilt = {**extra["config"], "layers": [
        {**entry, "config": {k: v for k, v in entry["config"].items() if k != "input_shape"}}
        for entry in extra["config"]["layers"] if entry["class_name"] != "InputLayer"]}
    try:
        try:
            rebuild(unbuilt)
        except Exception:  # noqa: BLE001 - a user layer whose __init__ requires input_shape
            if unbuilt == extra["config"]:
                raise
            rebuild(extra["config"])  # as load_model will: built, weights drawn
    except Exception as exc:  # noqa: BLE001 - whatever load_model would meet
        # (the hint only where the model has components of the user's own: a renamed layer
        # clashing with another was blamed on get_config)
        hint = ("; a component of your own needs a get_config() that returns its __init__ "
                "arguments") if objects else ""
        raise ValueError(f"cannot save the model: it would not load back ({exc}){hint}") \
            from exc


def check_savable(model, filepath=None):
    """Raises what save_model would about the model's description (layers, optimizer, loss,
    metrics) and, given the filepath, its format (a .keras file needs h5py), without
    writing: a ModelCheckpoint fails before training, not after an epoch."""
    if filepath is not None:
        check_model_name(filepath)
        if is_keras(os.fsdecode(filepath)):
            keras_writer.require_h5py(filepath)
    _description(model)


def save_model(model, filepath, overwrite=True, *, allow_unbuilt=False):
    """The whole model: architecture, weights, compile settings and optimizer state, in
    .npz (default), HDF5 when the name ends in .h5/.hdf5, or a Keras 3 archive when it ends
    in .keras (pynn.keras_writer: Keras' config.json and model.weights.h5, which
    keras.saving.load_model loads, compiled, with the optimizer's state where Keras has the
    same variables; pynn's own description beside them, so pynn.load_model loads it as
    losslessly as a .npz; needs h5py: ImportError without). A binary file object gets .npz.
    overwrite=False refuses an existing file (Keras' saving.save_model's arguments).
    (allow_unbuilt: for pickling, which keeps a model without weights yet as such.)"""
    check_model_name(filepath)
    check_overwrite(filepath, overwrite)
    model._layers_tracked()  # (strictly: a holder tracked elsewhere since, or refused)
    filepath = as_target(filepath)
    if not model.built and not allow_unbuilt:
        raise ValueError("the model has no weights yet: build it (fit, build or an Input) first")
    extra = _description(model)  # loadable, or refused before writing
    arrays, layers = _weight_arrays(model)
    if model.compiled:
        opt = model.optimizer
        slots = []
        active = opt._active_slots()  # not one an option turned off mid-training left
        for i, p in enumerate(model.params):
            state = opt.state_of(p)
            for slot, value in (state or {}).items():
                if slot not in active:
                    continue
                key = f"opt.{i}.{slot}"
                arrays[key] = np.array(to_host(value, p.backend), copy=True)  # or another's
                slots.append({"param": i, "slot": slot, "key": key})
        extra["optimizer_state"] = {"iterations": opt.training_steps, "slots": slots}
    if model.shuffle_seed is not None:  # with the step count, the next epoch's order
        extra["shuffle_seed"] = model.shuffle_seed
    columns = getattr(model, "_frame_columns", None)  # (a DataFrame's names: still checked)
    if columns is not None and all(isinstance(c, str) for c in columns):
        extra["input_columns"] = list(columns)
    # custom_marks: a component without the "custom" mark is pynn's (custom_objects.find)
    meta = _meta(MODEL_FORMAT, layers, custom_marks=True, **extra)
    if is_keras(filepath):  # Keras 3's archive, holding this description and these arrays
        keras_writer.save(model, filepath, meta, arrays)
        return
    _write(filepath, arrays, json.dumps(meta, default=_json_value))


def model_to_bytes(model):
    """A model file's bytes (what pickling a model carries), made in memory: no temporary
    file, so pickling works on a read-only file system."""
    buffer = io.BytesIO()
    save_model(model, buffer, allow_unbuilt=True)
    return buffer.getvalue()


def model_from_bytes(data, custom_objects=None):
    """The model whose file bytes model_to_bytes gave (unpickling a model)."""
    return load_model(io.BytesIO(data), custom_objects)


def model_to_json(model, **kwargs):
    """Keras' model.to_json(): the architecture as JSON text, without weights or compile
    settings; json.dumps keyword arguments (indent=2) pass through."""
    from . import __version__

    model._check_layer_class_names("to_json", ValueError)
    spec = {"class_name": "Sequential", "config": model.get_config(), "custom_marks": True,
            "format_version": FORMAT_VERSION, "pynn_version": __version__}
    try:
        return json.dumps(spec, default=_json_value, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"to_json: a get_config() returned what JSON cannot hold ({exc})") \
            from None


def model_from_json(json_string, custom_objects=None):
    """The model that to_json described (Keras' model_from_json): its layers with fresh
    weights, not compiled. custom_objects: {name: class} for your own components."""
    from .custom_objects import custom_object_scope, file_marks
    from .model import Sequential

    try:
        spec = json.loads(json_string)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model_from_json: not JSON text ({exc})") from None
    config = spec.get("config") if isinstance(spec, dict) else None
    keras_functional = isinstance(config, dict) and spec.get("class_name") == "Functional" \
        and str(spec.get("module", "")).startswith("keras")  # (read below, if a chain)
    if not keras_functional and (not isinstance(config, dict) or
                                 spec.get("class_name") != "Sequential" or
                                 not isinstance(config.get("layers"), list)):
        if isinstance(spec, dict) and str(spec.get("keras_version", "")).startswith("2."):
            raise ValueError(f"model_from_json: Keras {spec['keras_version']}'s (tf.keras') "
                             f"JSON of a {spec.get('class_name')} model; pynn reads Keras "
                             f"3's and its own (save the model with Keras 3, or rebuild it "
                             f"as a Sequential)")
        raise ValueError("model_from_json: expected the JSON of a Sequential's to_json(), "
                         "{'class_name': 'Sequential', 'config': {'layers': [...]}} (or "
                         "Keras' of a Sequential or a chain of layers)")
    if str(spec.get("module", "")).startswith("keras"):  # Keras 3's to_json: read as a
        #                                                   .keras file's config
        with custom_object_scope(custom_objects):
            return keras_files.model_from_config(spec, "model_from_json", custom_objects)[0]
    with _description_errors("model_from_json", "model"):
        version = spec.get("format_version", 1)
        if not isinstance(version, int) or version < 2:  # pynn's JSON before version 2
            config = _gelu_was_tanh(config)
        try:
            with custom_object_scope(custom_objects), \
                    file_marks(spec.get("custom_marks") is True):
                return Sequential.from_config(config, custom_objects)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"model_from_json: a layer's arguments are invalid: {exc}") \
                from exc


def _gelu_was_tanh(config):
    """A model description from before format version 2, whose activation "gelu" was gelu's
    tanh approximation: the same model, its "gelu" now named "gelu_tanh" ("gelu" is the exact
    form, as in Keras and PyTorch)."""
    def renamed(key, value):
        if key == "activation" and value == "gelu":
            return "gelu_tanh"
        if key == "activation" and isinstance(value, dict) and value.get("name") == "gelu":
            return {**value, "name": "gelu_tanh"}
        return _gelu_was_tanh(value)

    if isinstance(config, dict):
        return {key: renamed(key, value) for key, value in config.items()}
    if isinstance(config, list):
        return [_gelu_was_tanh(value) for value in config]
    return config


def _refuse_other_keras_files(filepath, kind, action):
    """Keras files (keras_files.keras_kind: kind) pynn does not read as asked, named with
    what to do (their lack of a pynn description said nothing of it)."""
    if kind == "legacy":
        raise ValueError(f"{where(filepath)!r} is a legacy Keras HDF5 model file (tf.keras "
                         f"2's format, which Keras 3 still writes to .h5 paths); pynn reads "
                         f"Keras 3's .keras files: load it with Keras and save it as .keras "
                         f"(or save_weights to a .weights.h5)")
    if action == "load_model" and kind == "weights":
        raise ValueError(f"{where(filepath)!r} holds a Keras model's weights, not the model: "
                         f"build the model in pynn and call model.load_weights on it")


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Rebuild a model saved with `model.save`: same layers, weights, optimizer and state.
    filepath: the path of a model file (.npz, or .h5), or a binary file object to read it
    from. custom_objects: {name: class or function} for the components of your own (layers,
    losses, optimizers, initializers, regularizers, schedules, metrics), as in Keras.
    compile: True (default) compiles the model as it was saved (optimizer with its state
    and step count, loss, metrics); False returns it uncompiled, as Keras: the layers and
    weights only, ready to predict, to be compiled before fit or evaluate (the saved
    optimizer state is not read). A model saved uncompiled loads uncompiled either way. The
    model is rebuilt on the current backend (pynn.set_backend), in the current floatx;
    compile(backend=...) moves it. safe_mode: Keras' flag against code in files, accepted and
    unused; pynn's files hold none (never a pickle or a lambda), so every load is safe.
    A `.keras` file pynn wrote (model.save("m.keras")) loads exactly as its .npz would; a
    Keras 3 `.keras` file of a Sequential model loads too (pynn.keras_files: its layers,
    weights and compile settings, and the optimizer's state and step count where Keras
    keeps the variables pynn's optimizer has; otherwise it starts afresh)."""
    filepath = _read_through(as_target(filepath))
    kind = keras_files.keras_kind(filepath)
    if kind == "archive":
        return keras_files.load_model(filepath, where(filepath), custom_objects, compile)
    _refuse_other_keras_files(filepath, kind, "load_model")
    with read_arrays(filepath) as arrays:
        with _description_errors(where(filepath), "model"):
            return _rebuild(arrays, where(filepath), custom_objects, compile)


@contextlib.contextmanager
def _description_errors(filepath, what):
    """A crafted or damaged description (a list where a dict belongs, a number beyond any
    size, nesting past the recursion limit) raises ValueError naming the file, as every
    other problem with a file does, not whatever Python tripped on."""
    try:
        yield
    except (TypeError, KeyError, AttributeError, IndexError, OverflowError,
            RecursionError) as exc:
        raise ValueError(f"{filepath!r}: the {what} description is invalid "
                         f"({type(exc).__name__}: {exc})") from exc


def rebuild_described(arrays, meta, filepath, custom_objects, compile):
    """The model a pynn description (meta, e.g. a pynn-written .keras archive's) and the
    arrays it names (an Archive) describe, as load_model rebuilds a .npz's."""
    with _description_errors(filepath, "model"):
        meta = check_meta(meta, filepath, kinds=(MODEL_FORMAT,))
        return _rebuild(arrays, filepath, custom_objects, compile, meta)


def _rebuild(arrays, filepath, custom_objects, compile, meta=None):
    from .config import loading_weights, rng_untouched
    from .custom_objects import custom_object_scope, file_marks
    from .model import Sequential

    if meta is None:
        meta = read_meta(arrays, filepath, kinds=(MODEL_FORMAT,))
    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError(f"{filepath!r}: the model description has no layer list")
    marked = meta.get("custom_marks") is True  # unmarked components are pynn's
    if meta["format_version"] < 2:
        config = _gelu_was_tanh(config)
    try:
        # the initial weights drawn here are overwritten below
        with file_marks(marked), rng_untouched(), loading_weights():
            model = Sequential.from_config(config, custom_objects)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{filepath!r}: a layer's saved arguments are invalid: {exc}") from exc
    except MemoryError as exc:  # layers declared beyond any memory (units=2**40)
        raise ValueError(f"{filepath!r} declares layers too large to build ({exc})") from exc
    except NotImplementedError as exc:  # a setting pynn lacks (a constraint): name the file
        raise NotImplementedError(f"{filepath!r}: {exc}") from exc
    except ValueError as exc:  # name the file (a units of 10**4000: numpy's "dimension")
        if repr(filepath) in str(exc):
            raise
        raise ValueError(f"{filepath!r}: {exc}") from exc
    _assign_weights(model, arrays, meta, filepath, user_depth=3)  # user, load_model, _rebuild
    _restore_frozen_weights(model, meta)
    columns = meta.get("input_columns")
    if isinstance(columns, list) and all(isinstance(c, str) for c in columns):
        model._frame_columns = columns  # (the DataFrame columns fit read, by name)
    settings = meta.get("compile")
    if compile and settings:
        with custom_object_scope(custom_objects), file_marks(marked):
            try:
                model.compile(**_compile_arguments(settings))
            except ValueError as exc:  # an unknown optimizer, loss or metric: name the file
                raise ValueError(f"{filepath!r}: its compile settings: {exc}") from exc
        state = meta.get("optimizer_state", {})
        opt = model.optimizer
        params = model.params
        expected = opt._active_slots()
        # Every entry checked before any array is read: one (weight, slot) each, of the
        # weight's shape and a float dtype (300 copies of a slot, or a string dtype of the
        # right shape, were each read in full first).
        plan, seen, keys = [], set(), set()
        for entry in state.get("slots", []):
            i, slot, key = entry["param"], entry["slot"], entry["key"]
            if not (isinstance(i, int) and 0 <= i < len(params)) or slot not in expected or \
                    not isinstance(key, str) or key not in arrays or (i, slot) in seen or \
                    key in keys:
                raise ValueError(f"{filepath!r}: optimizer state entry {entry!r} is invalid")
            seen.add((i, slot))
            keys.add(key)
            p = params[i]
            _check_declared(arrays, key, p, filepath, f"optimizer slot {slot!r} of {p.name!r}",
                            shape=opt.slot_shape(slot, p.shape))
            plan.append((i, slot, key))
        restored = {}
        for i, slot, key in plan:
            p = params[i]
            restored.setdefault(i, {})[slot] = p.backend.asarray(  # (see stored_shape)
                arrays[key], p.value.dtype).reshape(opt.slot_shape(slot, p.shape))
        for i, slots in restored.items():
            # A slot missing (an option turned on while the weight was frozen) starts as
            # in memory: as at step 0
            p = params[i]
            opt.set_state_of(p, {s: slots[s] if s in slots else
                                 opt._initial_slot(s, p.backend, p.value)
                                 for s in opt._slot_names(p, saved=slots)})
        iterations = state.get("iterations", 0)
        if isinstance(iterations, bool) or not isinstance(iterations, int) \
                or not 0 <= iterations < 2**63:
            raise ValueError(f"{filepath!r}: the optimizer's step count {iterations!r} is not "
                             f"a count")
        opt.training_steps = iterations
    seed = meta.get("shuffle_seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError(f"{filepath!r}: shuffle_seed {seed!r} is not a 64-bit seed")
        model.shuffle_seed = seed
    return model


def read_arrays(filepath):
    """The Archive (pynn.archive) of an .npz or .h5 file, or of a binary file object: its
    arrays read, checked, when asked for. Use it in a `with` block."""
    _check_target(filepath, "rb")
    if _is_file_object(filepath):
        data = filepath.read()
        where_, source = where(filepath), io.BytesIO(data)
        if not data:
            raise ValueError(f"{where_} has nothing left to read (at its end: seek(0) after "
                             f"writing or reading it?)")
    else:
        where_ = source = os.fspath(filepath)
        if not os.path.exists(source):
            raise FileNotFoundError(f"no such file: {source!r}")
    return open_archive(source, where_)


def read_meta(arrays, filepath, kinds=(FORMAT, MODEL_FORMAT)):
    """The checked JSON description of a pynn file (`kinds` it may be); ValueError otherwise."""
    if META_KEY not in arrays:
        raise ValueError(f"{filepath!r} is not a pynn file (no {META_KEY} entry)")
    shape, dtype = arrays.declared(META_KEY)  # one string, of a sane size, before reading
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * _MAX_DESCRIPTION:
        raise ValueError(f"{filepath!r}: its description is not one string of at most "
                         f"{_MAX_DESCRIPTION:,} characters (shape {shape}, dtype {dtype})")
    try:
        meta = json.loads(str(arrays[META_KEY]))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit integer
        raise ValueError(f"{filepath!r}: its description is not valid JSON ({exc})") from exc
    return check_meta(meta, filepath, kinds)


def check_meta(meta, filepath, kinds=(FORMAT, MODEL_FORMAT)):
    """meta, a pynn file's description (read_meta's, or a .keras archive's), checked: a
    format and version this pynn reads, a layer list; ValueError otherwise."""
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, MODEL_FORMAT):
        raise ValueError(f"{filepath!r} is not a pynn file")
    if meta["format"] not in kinds:
        raise ValueError(f"{filepath!r} is a weights file, not a whole model: build the model "
                         f"and call model.load_weights instead")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{filepath!r}: format version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise ValueError(f"{filepath!r} has format version {version!r}; this pynn reads up to "
                         f"{FORMAT_VERSION}: upgrade pynn")
    if not isinstance(meta.get("layers"), list):
        raise ValueError(f"{filepath!r}: the description lists no layers")
    return meta


def load_weights(model, filepath, skip_mismatch=False):
    """Weights from a weights or model file into `model`, after checking every shape.

    skip_mismatch=True loads the layers whose weights match and leaves the others untouched
    (returning their names); otherwise any mismatch raises and nothing is loaded. A
    `.keras` file pynn wrote loads as its .npz would; a Keras 3 weights file
    (`.weights.h5`) or a `.keras` file Keras wrote loads into a built model whose layers
    match its own (pynn.keras_files).
    """
    filepath = _read_through(as_target(filepath))
    kind = keras_files.keras_kind(filepath)
    _refuse_other_keras_files(filepath, kind, "load_weights")
    # a .keras archive pynn wrote: its description, read as a .npz's
    described = keras_files.read_described(filepath, where(filepath)) \
        if kind == "archive" else None
    if kind in ("archive", "weights") and described is None:
        return keras_files.load_weights(model, filepath, where(filepath), kind, skip_mismatch)
    meta, arrays = described or (None, read_arrays(filepath))
    with arrays, _description_errors(where(filepath), "weights"):
        filepath = where(filepath)  # for the messages below
        meta = read_meta(arrays, filepath) if meta is None else check_meta(meta, filepath)
        saved = [l for l in meta["layers"] if l["weights"]]
        if model.built:
            # user -> Sequential.load_weights -> here -> _assign_weights
            return _assign_weights(model, arrays, meta, filepath, skip_mismatch, user_depth=3)
        input_shape = _saved_input_shape(meta, filepath)
        if input_shape is None:  # a weights file of an older pynn: the first kernel's rows
            from .layers import Dense

            key = saved[0]["weights"][0].get("key") if saved else None
            shape = arrays.shape_of(key) if isinstance(key, str) and key in arrays else ()
            first = model._compute_layers[0] if model._compute_layers else None
            if len(shape) != 2 or not isinstance(first, Dense):  # (a Reshape or a Flatten
                # first takes another shape than its kernel's rows)
                raise ValueError("build the model (or give it an Input) before loading "
                                 "weights")
            input_shape = (shape[0],)
        # Built for the file's input shape (its weights start as zeros, costing nothing
        # until written), and unbuilt again if the file does not fit.
        before = _unbuilt_state(model)
        try:
            from .config import loading_weights

            # (skip_mismatch leaves some layers as built: they need real initial values)
            try:
                with loading_weights() if not skip_mismatch else contextlib.nullcontext():
                    model._ensure_built(input_shape)
            except MemoryError as exc:  # (an input shape beyond any memory: 2**40)
                raise ValueError(f"{filepath!r}: the model built for the file's input shape "
                                 f"{list(input_shape)} is too large ({exc})") from exc
            except ValueError as exc:  # name the file (numpy's "array is too big")
                if repr(filepath) in str(exc):
                    raise
                raise ValueError(f"{filepath!r}: building the model for the file's input "
                                 f"shape {list(input_shape)}: {exc}") from exc
            return _assign_weights(model, arrays, meta, filepath, skip_mismatch, user_depth=3)
        except BaseException:
            _restore_state(before)
            raise


def _saved_input_shape(meta, filepath):
    """The input shape of the model a file was saved from (a weights file's "input_shape",
    a model file's first layer's), or None (a weights file of an older pynn)."""
    shape = meta.get("input_shape")
    if shape is None and isinstance(meta.get("config"), dict):
        layers = meta["config"].get("layers") or [{}]
        config = layers[0].get("config", {}) if isinstance(layers[0], dict) else {}
        shape = config.get("shape", config.get("input_shape"))
    if shape is None:
        return None
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"{filepath!r}: the file's input shape {shape!r} is not a list of "
                         f"sizes")
    return tuple(shape)


def _unbuilt_state(model):
    """What building changes in a model and its layers (_saved_state)."""
    return _saved_state((model, *model.layers))


def _saved_state(objects):
    """The objects' attributes, and the contents of their lists (restored into the same list
    objects, which callers may hold), for _restore_state."""
    def saved(obj):
        return {k: (v, list(v) if isinstance(v, list) else None) for k, v in vars(obj).items()}
    return [(obj, saved(obj)) for obj in objects]


def _restore_state(state):
    for obj, attributes in state:
        vars(obj).clear()
        for name, (value, contents) in attributes.items():
            if contents is not None:
                value[:] = contents
            vars(obj)[name] = value


def _layers_with_weights(model, meta):
    """(the model's layers that have weights, the file's entries that have weights): paired
    in order."""
    return ([l for l in model.layers if l.params],
            [l for l in meta["layers"] if l.get("weights")])


def _restore_frozen_weights(model, meta):
    """A weight frozen on its own (param.trainable = False in a trainable layer) stays so;
    the layer's own flag comes back with its config."""
    for layer, entry in zip(*_layers_with_weights(model, meta)):
        for p, w in zip(layer.params, entry["weights"]):
            if w.get("trainable") is False and p.trainable:
                p.trainable = False


def _assign_weights(model, arrays, meta, filepath, skip_mismatch=False, user_depth=2):
    """Checks every saved weight against the model, then assigns them all (or raises).
    user_depth: how many frames above this one the user's call is, for warnings."""
    ours, saved = _layers_with_weights(model, meta)
    if len(saved) != len(ours) and not skip_mismatch:
        raise ValueError(f"{filepath!r} holds weights for {len(saved)} layers, the model has "
                         f"{len(ours)} layers with weights")
    pairs, unused = list(zip(ours, saved)), []
    if skip_mismatch:
        pairs, unused = _pairs_to_skip(ours, saved, arrays, filepath)
    plan, skipped = [], []
    for layer, entry in pairs:
        try:
            if entry is None:
                raise ValueError(f"{filepath!r} holds no weights for layer {layer.name!r}")
            plan += _layer_plan(layer, entry, arrays, filepath)
        except ValueError:
            if not skip_mismatch:
                raise
            skipped.append(layer.name)
    warn_skipped(filepath, skipped, unused, user_depth + 1)
    _warn_if_narrowed(plan, filepath, user_depth + 2)
    for p, array in plan:  # every check passed: nothing is half-loaded
        p.assign(array)
    return skipped


def _pairs_to_skip(ours, saved, arrays, filepath):
    """skip_mismatch's (layer, file entry or None) pairs and the names of the file's layers
    left over: by position when every layer fits its place (what the strict load loads,
    skip_mismatch never loads less or otherwise), else as Keras pairs them, by class and
    order (the second Dense with the file's second Dense; a subclass of a saved class
    counts as that class): by position, a layer inserted (a BatchNormalization) shifted
    every later one onto another's weights, all skipped."""
    if len(ours) == len(saved):
        try:  # (shapes and names only: the caller reads the arrays)
            for layer, entry in zip(ours, saved):
                _layer_fits(layer, entry, arrays, filepath)
            return list(zip(ours, saved)), []
        except ValueError:
            pass
    kinds = [entry.get("class") for entry in saved]
    if not all(isinstance(kind, str) for kind in kinds):  # an older file: by position
        return (list(zip(ours, saved)) + [(layer, None) for layer in ours[len(saved):]],
                [entry.get("name") for entry in saved[len(ours):]])
    known = set(kinds)

    def kind(layer):  # the saved class it is or extends, else its own
        return next((k.__name__ for k in type(layer).__mro__ if k.__name__ in known),
                    type(layer).__name__)

    theirs = dict(zip(keras_files.layer_keys(saved, kinds), saved))
    keys = keras_files.layer_keys(ours, [kind(layer) for layer in ours])
    pairs = [(layer, theirs.pop(key, None)) for layer, key in zip(ours, keys)]
    return pairs, [entry.get("name") for entry in theirs.values()]


def warn_skipped(where, skipped, unused, stacklevel):
    """skip_mismatch's warning (as Keras': skipping is allowed, not silent) naming the
    model's layers left unloaded and the file's layers that have no layer here."""
    if skipped or unused:
        warnings.warn(f"{where!r}: skip_mismatch left layers {skipped} unloaded"
                      + (f"; the file's weights of layers {unused} have no layer here"
                         if unused else ""), UserWarning, stacklevel=stacklevel + 1)


def _warn_if_narrowed(plan, filepath, stacklevel):
    """pynn's float type is global (pynn.set_floatx) and models follow it: float64 weights
    loaded in a float32 session are rounded, which deserves a word."""
    for p, array in plan:
        if array.dtype.kind == "f" and array.dtype.itemsize > p.value.dtype.itemsize:
            keep = (f" (pynn.set_floatx({array.dtype.name!r}) before loading keeps them)"
                    if array.dtype.name in ("float32", "float64") else "")  # floatx's choices
            warnings.warn(f"{filepath!r} holds {array.dtype} weights; they load as "
                          f"{p.value.dtype}{keep}", UserWarning, stacklevel=stacklevel)
            return


def _layer_plan(layer, entry, arrays, filepath):
    """[(parameter, its array from the file)] for a layer (_layer_fits' checks first)."""
    return [(p, arrays[key]) for p, key in _layer_fits(layer, entry, arrays, filepath)]


def _layer_fits(layer, entry, arrays, filepath):
    """[(parameter, the file's key of its array)] when the file's entry fits the layer
    (counts, names, declared shapes), else ValueError; no array is read."""
    weights = entry["weights"]
    if len(weights) != len(layer.params):
        raise ValueError(f"{filepath!r}: layer {layer.name!r}: the file has {len(weights)} "
                         f"weight arrays (layer {entry.get('name')!r}), the model "
                         f"{len(layer.params)}")
    # Another class's weights of the same shapes (a Normalization's mean and variance as a
    # LayerNormalization's gamma and beta) are refused, as Keras does: by their names, so
    # a subclass of the saved class (weights named alike) still loads
    theirs = [str(w.get("key")).split(".", 1)[-1] for w in weights]
    ours = [p.name.rsplit("/", 1)[-1] for p in layer.params]
    if entry.get("class") != type(layer).__name__ and theirs != ours:
        raise ValueError(f"{filepath!r}: layer {layer.name!r} ({type(layer).__name__}, "
                         f"weights {ours}) would get the weights {theirs} of a "
                         f"{entry.get('class')} (layer {entry.get('name')!r})")
    plan = []
    for p, w in zip(layer.params, weights):
        key = w.get("key")
        if not isinstance(key, str) or key not in arrays:
            raise ValueError(f"{filepath!r} lacks the array {key!r}")
        _check_declared(arrays, key, p, filepath,
                        f"layer {layer.name!r}, weight {p.name.rsplit('/', 1)[-1]!r}")
        plan.append((p, key))
    return plan


def _check_declared(arrays, key, p, filepath, what, shape=None):
    """The array `key` is for the weight p (or one of its optimizer slots, of that shape):
    its declared shape and float dtype are checked before it is read, so no file makes
    loading read more than the model's weights."""
    expected = p.shape if shape is None else shape
    declared, dtype = arrays.declared(key)
    declared = stored_shape(declared, expected)
    if declared != expected:
        raise ValueError(f"{filepath!r}: {what}: the file has shape {tuple(declared)}, the "
                         f"model {expected}")
    # (a weight of integers, a counter, reads numbers: pynn stored counters as floats
    # before 2026-12-05; an optimizer slot always floats)
    integers = shape is None and np.dtype(p.value.dtype).kind in "biu"
    if integers and (dtype.kind not in "biuf" or dtype.itemsize > 8):
        raise ValueError(f"{filepath!r}: {what}: array {key!r} has dtype {dtype}, expected "
                         f"numbers")
    if not integers and (dtype.kind != "f" or dtype.itemsize > 16):
        raise ValueError(f"{filepath!r}: {what}: array {key!r} has dtype {dtype}, expected "
                         f"floats")


__all__ = ["custom_object_scope", "get_custom_objects", "load_model", "load_weights",
           "register_keras_serializable", "save_model", "save_weights"]
