"""What `pynn train`, `pynn predict` and `pynn bench` do: tabular data from CSV/.npz into an MLP.

`train` standardises the features for training, then folds the scaling into the first Dense
layer (W / std, b - (mean / std) @ W), so the saved model takes raw feature values and needs
nothing else to predict (except for columns far from zero, below); regression targets are
standardised too and the last layer rescaled back (W * std_y, b * std_y + mean_y). Next to
the model it writes `<model>.columns.json`: the feature column names, the target name, the
task and (for classification) the class labels, which `predict` uses to pick the feature
columns from a CSV by name (a target column there is ignored) and to turn output indices
back into labels. A column whose values sit far from zero for their spread (timestamps, IDs)
would lose its information when predict casts it to float32: such columns are centred in
float64 before the cast, by offsets the JSON file keeps ("offsets"), and the model takes them
centred: `pynn predict` subtracts them (it needs the JSON file then), model.predict from
Python takes x - offsets. Features from an .npz have no names: predict then takes the CSV's
columns by position, dropping a column named like the target.
Without the JSON file every column of the CSV is a feature, by position.

Every problem with the user's files raises UsageError, which the command line prints as one
line and exits with code 2.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time

import numpy as np

from .saving import atomic_write, is_stream

MAX_AUTO_CLASSES = 20  # integer targets with at most this many values count as classes


class UsageError(Exception):
    """A problem with the command line's inputs: reported without a traceback, exit code 2."""


def sidecar_path(model_path):
    return os.fspath(model_path) + ".columns.json"


def check_output_path(out, inputs=()):
    """Fail before any work (training can take long) when `out` cannot be written as a new
    file: a directory, a folder that does not exist, or one of the command's input files."""
    path = os.fspath(out)
    if os.path.isdir(path):
        raise UsageError(f"--out {path!r} is a directory; give a file name")
    if is_stream(path):  # /dev/stdout, a FIFO: written through (saving.atomic_write)
        if not os.access(path, os.W_OK):
            raise UsageError(f"--out {path!r} is not writable")
        return
    target = os.path.realpath(path)  # a symlink's target is replaced
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise UsageError(f"--out {path!r}: the directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK):  # the new file is made there, then renamed
        raise UsageError(f"--out {path!r}: the directory {folder!r} is not writable")
    for source in inputs:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise UsageError(f"--out {path!r} is the input file {os.fspath(source)!r}; writing "
                             f"would destroy it")


# ---- reading data -----------------------------------------------------------------------------
def _csv_rows(path):
    """A csv.reader over the file (UTF-8, a byte-order mark such as Excel writes dropped)."""
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path!r}")
    f = open(path, newline="", encoding="utf-8-sig")
    return f, csv.reader(f)


def csv_columns(path):
    """The column names of a CSV file's header row."""
    f, rows = _csv_rows(path)
    with f:
        try:
            header = next(rows, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UsageError(f"{path!r} is not a CSV text file: {exc}") from None
    if not header or not any(h.strip() for h in header):
        raise UsageError(f"{path!r} is empty or has no header row of column names")
    names = [h.strip() for h in header]
    dupes = sorted({n for n in names if n and names.count(n) > 1})
    if dupes:
        raise UsageError(f"{path!r}: duplicate column names {dupes}")
    return names


def read_csv(path, columns=None):
    """(column names, float array (rows, len(columns))) of a CSV file with a header row: the
    values of `columns` (default all), in that order. Only those must be numbers; quoted
    numbers are fine; blank lines are skipped."""
    names = csv_columns(path)
    columns = names if columns is None else list(columns)
    idx = [names.index(c) for c in columns]
    out = []
    f, rows = _csv_rows(path)
    with f:
        try:
            next(rows)  # the header
            for row in rows:
                if not row or not any(field.strip() for field in row):
                    continue
                if len(row) != len(names):
                    raise UsageError(f"{path!r}: line {rows.line_num} has {len(row)} fields, "
                                     f"the header names {len(names)} columns")
                values = []
                for i in idx:
                    try:
                        v = float(row[i].strip())
                    except ValueError:
                        v = float("nan")
                    if not math.isfinite(v):
                        raise UsageError(f"{path!r}: column {names[i]!r} holds a non-numeric, "
                                         f"missing or infinite value on line {rows.line_num}: "
                                         f"{row[i]!r}")
                    values.append(v)
                out.append(values)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UsageError(f"{path!r} is not a CSV text file: {exc}") from None
    if not out:
        raise UsageError(f"{path!r} has a header but no data rows")
    return names, np.array(out, dtype=np.float64).reshape(len(out), len(idx))


def load_training_data(path, target):
    """(x, y, feature names) from a CSV (target = a column name) or an .npz file (arrays
    'x' and 'y', or 'x' and the array named by target)."""
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path!r}")
    if path.lower().endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one usage error
            raise UsageError(f"{path!r} is not a readable .npz file: {exc}") from None
        y_key = target if target in arrays else ("y" if target is None else None)
        if "x" not in arrays or y_key not in arrays:
            want = f"'x' and {target!r}" if target else "'x' and 'y'"
            raise UsageError(f"{path!r} must hold arrays {want}; it holds {sorted(arrays)}")
        x, y = arrays["x"], arrays[y_key]
        if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
            raise UsageError(f"{path!r}: 'x' and {y_key!r} must be numeric arrays")
        x = x.reshape(len(x), -1).astype(np.float64)
        y = y.reshape(len(y), -1)
        if y.shape[1] != 1:
            raise UsageError(f"{path!r}: {y_key!r} must be one target per sample, got shape "
                             f"{arrays[y_key].shape}")
        if len(x) != len(y):
            raise UsageError(f"{path!r}: 'x' has {len(x)} rows, {y_key!r} {len(y)}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise UsageError(f"{path!r}: the data holds NaN or infinite values")
        _check_float32_range(path, x)
        _check_float32_range(path, y)
        return x, y[:, 0].astype(np.float64), None, y_key  # no names: columns by position
    if target is None:
        raise UsageError("--target COLUMN is required for CSV data")
    names = csv_columns(path)
    unnamed = [i + 1 for i, n in enumerate(names) if not n]
    if unnamed:  # predict finds features by name
        raise UsageError(f"{path!r}: column(s) {unnamed} have no name in the header row (a "
                         f"trailing comma, or an index written by pandas' to_csv?); name or "
                         f"remove them")
    if target not in names:
        raise UsageError(f"{path!r} has no column {target!r}; its columns are {names}")
    col = names.index(target)
    if len(names) < 2:
        raise UsageError(f"{path!r} has no feature columns besides the target {target!r}")
    _, values = read_csv(path)
    _check_float32_range(path, values)
    features = [n for i, n in enumerate(names) if i != col]
    return np.delete(values, col, axis=1), values[:, col], features, target


def _check_float32_range(path, values):
    """Training runs in float32 (and predict refuses such values): beyond its range a column's
    spread would be infinite and its weights zero, silently."""
    bad = int(np.count_nonzero(np.abs(values) > np.finfo(np.float32).max))
    if bad:
        raise UsageError(f"{path!r} holds {bad} value(s) beyond float32's range (magnitude "
                         f"above {np.finfo(np.float32).max:.4g})")


def centring_offsets(x, std):
    """Per column, the offset predict subtracts in float64 before the float32 cast: the mean
    where float32's rounding of the raw values (half an ulp, 2**-24 of the magnitude) exceeds
    1e-4 of the column's spread, else 0 (the model then takes the raw values)."""
    rounding = np.abs(x).max(axis=0) * 2.0**-24
    return np.where(rounding > 1e-4 * std, x.mean(axis=0), 0.0)


def choose_task(y, task):
    """'classify' or 'regress': as asked, else classes for few integer values."""
    if task in ("classify", "regress"):
        return task
    values = np.unique(y)
    integral = np.array_equal(values, np.round(values))
    return "classify" if integral and 2 <= len(values) <= MAX_AUTO_CLASSES else "regress"


# ---- training ---------------------------------------------------------------------------------
def train(data, target, layers, epochs, out, task="auto", batch_size=32, seed=None,
          learning_rate=1e-3, verbose=1, print_fn=print):
    import pynn

    for path in (out, sidecar_path(out)):
        check_output_path(path, inputs=[data])
    if seed is not None:
        pynn.set_seed(seed)
    x, y, features, target = load_training_data(data, target)
    task = choose_task(y, task)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0  # a constant column: leave it unscaled rather than divide by 0
    xs = ((x - mean) / std).astype(np.float32)
    meta = {"features": features, "target": target, "task": task}
    offsets = centring_offsets(x, std)
    if offsets.any():
        meta["offsets"] = offsets.tolist()
    model = pynn.Sequential([pynn.Input((x.shape[1],))]
                            + [pynn.Dense(u, activation="relu") for u in layers])
    if task == "classify":
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise UsageError(f"target {target!r} has a single value; nothing to classify")
        if np.array_equal(classes, np.round(classes)):
            classes = classes.astype(np.int64)  # CSV values are floats; labels 0, 1, not 0.0
        meta["classes"] = [c.item() for c in classes]
        model.add(pynn.Dense(len(classes), activation="softmax"))
        model.compile(optimizer=pynn.optimizers.Adam(learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        targets = codes.astype(np.int64)
    else:
        model.add(pynn.Dense(1))
        model.compile(optimizer=pynn.optimizers.Adam(learning_rate), loss="mse")
        # Standardised targets train at any scale; the last layer is rescaled after training.
        y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
        targets = ((y - y_mean) / y_std).astype(np.float32)
    print_fn(f"{task} {target!r} from {x.shape[1]} features, {len(x)} samples"
             + (f", {len(meta['classes'])} classes" if task == "classify" else ""))
    if offsets.any():
        centred = [features[i] if features else int(i) for i in np.flatnonzero(offsets)]
        print_fn(f"feature(s) {centred} sit far from zero for their spread: float32 would "
                 f"round them, so the model takes x - offsets, the 'offsets' kept in "
                 f"{sidecar_path(out)} (`pynn predict` subtracts them; from Python, do the "
                 f"same before model.predict)")
    history = model.fit(xs, targets, epochs=epochs, batch_size=batch_size, verbose=verbose)
    _fold_standardization(model, mean - offsets, std)
    if task == "regress":
        last = model._compute_layers[-1]
        kernel, bias = last.get_weights()
        last.set_weights([(kernel * y_std).astype(kernel.dtype),
                          (bias * y_std + y_mean).astype(bias.dtype)])
    model.save(out)
    atomic_write(sidecar_path(out), lambda f: f.write(json.dumps(meta, indent=2).encode()))
    final = {k: round(v[-1], 6) for k, v in history.history.items()}
    scale = " (on standardised targets)" if task == "regress" else ""
    print_fn(f"saved {out} (and {sidecar_path(out)}); final epoch{scale}: {final}")
    return model


def _fold_standardization(model, mean, std):
    """Make the first Dense layer take raw features (less the centring offsets, which `mean`
    has already lost): W' = W / std, b' = b - (mean / std) @ W."""
    first = model._compute_layers[0]
    kernel, bias = first.get_weights()
    first.set_weights([(kernel / std[:, None]).astype(kernel.dtype),
                       (bias - (mean / std) @ kernel).astype(bias.dtype)])


# ---- prediction -------------------------------------------------------------------------------
def predict(model_path, data, out=None, print_fn=print):
    import pynn

    if not os.path.isfile(model_path):
        raise UsageError(f"no such file: {model_path!r}")
    if out is not None:
        check_output_path(out, inputs=[model_path, sidecar_path(model_path), data])
    try:
        model = pynn.load_model(model_path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if len(model.input_shape) != 1:
        raise UsageError(f"{model_path!r} takes samples of shape {model.input_shape}; a CSV "
                         f"row is one flat feature vector (use model.predict from Python)")
    meta = None
    if os.path.isfile(sidecar_path(model_path)):
        try:
            with open(sidecar_path(model_path)) as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{sidecar_path(model_path)!r} is unreadable: {exc}") from None
    # Only the feature columns are read (others, the target's included, may hold anything).
    names = csv_columns(data)
    n_features = model.input_shape[0]
    if meta is not None and meta.get("features") is None and meta.get("target") in names:
        # Trained on an .npz: the features have no names, the target column is dropped.
        names = [n for n in names if n != meta["target"]]
    if meta is not None and meta.get("features") is not None:
        missing = [c for c in meta["features"] if c not in names]
        if missing:
            raise UsageError(f"{data!r} lacks the feature column(s) {missing} the model was "
                             f"trained on")
        features = meta["features"]
    elif len(names) != n_features:
        why = ("the model was trained on unnamed .npz features, taken by position"
               if meta is not None else f"{sidecar_path(model_path)!r}, which names them, is "
               f"missing")
        raise UsageError(f"{data!r} has {len(names)} feature columns, the model takes "
                         f"{n_features} ({why})")
    else:
        features = names
    _, x = read_csv(data, features)
    offsets = (meta or {}).get("offsets")
    if offsets is not None:
        offsets = np.asarray(offsets, dtype=np.float64) if isinstance(offsets, list) else None
        if offsets is None or offsets.shape != (x.shape[1],) or not np.isfinite(offsets).all():
            raise UsageError(f"{sidecar_path(model_path)!r}: 'offsets' must be "
                             f"{x.shape[1]} finite numbers, one per feature")
        x = x - offsets  # in float64, before predict's cast to float32
    try:  # float64 in: predict names values beyond float32's range itself
        outputs = model.predict(x)
    except ValueError as exc:
        raise UsageError(f"{data!r}: {exc}") from None
    column = (meta or {}).get("target") or "prediction"
    outputs = outputs.reshape(len(outputs), -1)
    if meta is not None and meta.get("task") == "classify":
        header, preds = [column], [[meta["classes"][i]] for i in np.argmax(outputs, axis=1)]
        text_rows = preds
    else:  # one column per output: a model saved from Python may have several
        header = ([column] if outputs.shape[1] == 1
                  else [f"{column}_{j}" for j in range(outputs.shape[1])])
        preds = outputs.tolist()
        # str of a numpy scalar: the shortest text that reads back as the model's float32
        # (0.64016306, not tolist()'s double 0.6401630640029907)
        text_rows = [[str(v) for v in row] for row in outputs]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(text_rows)
    text = buffer.getvalue()
    if out is None:
        print_fn(text, end="")
    else:
        atomic_write(out, lambda f: f.write(text.encode()))
        print_fn(f"wrote {len(preds)} predictions to {out}")
    return [row[0] for row in preds] if len(header) == 1 else preds


# ---- benchmark --------------------------------------------------------------------------------
def bench(print_fn=print):
    """A quick timing (a few seconds): one GEMM size and one training epoch of a tabular MLP."""
    import pynn

    rng = np.random.default_rng(0)
    n = 512
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    pynn.ops.gemm(a, b)  # warm up (threads, caches)
    reps, start = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - start < 0.5:
        pynn.ops.gemm(a, b)
        reps += 1
    seconds = (time.perf_counter() - start) / reps
    name = pynn.get_backend().name
    threads = (f"{pynn.get_num_threads()} thread(s)" if name == "cpu"
               else "numpy's BLAS threads" if name == "numpy" else "GPU")
    print_fn(f"backend {name}, {threads}")
    print_fn(f"gemm {n}x{n}x{n} float32: {seconds * 1e3:.2f} ms, "
             f"{2 * n ** 3 / seconds / 1e9:.1f} GFLOP/s")

    samples, features = 50_000, 32
    x = rng.standard_normal((samples, features), dtype=np.float32)
    y = (x[:, :4].sum(axis=1) > 0).astype(np.int64)
    pynn.set_seed(0)
    model = pynn.Sequential([pynn.Input((features,)), pynn.Dense(64, activation="relu"),
                             pynn.Dense(64, activation="relu"),
                             pynn.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)  # warm up
    start = time.perf_counter()
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    print_fn(f"train MLP {features}-64-64-2, batch 128, one epoch of {samples} samples: "
             f"{seconds:.2f} s, {samples / seconds:,.0f} samples/s")
    start = time.perf_counter()
    model.predict(x)
    seconds = time.perf_counter() - start
    print_fn(f"predict {samples} samples: {seconds * 1e3:.1f} ms, "
             f"{samples / seconds:,.0f} samples/s")
    return 0
