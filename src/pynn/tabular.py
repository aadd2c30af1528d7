"""What `pynn train`, `pynn predict` and `pynn bench` do: tabular data from CSV/.npz into an MLP.

`train` standardises the features for training, then folds the scaling into the first Dense
layer (W / std, b - (mean / std) @ W), so the saved model takes raw feature values and needs
nothing else to predict (except for columns far from zero, below); regression targets are
standardised too and the last layer rescaled back (W * std_y, b * std_y + mean_y). Next to
the model it writes `<model>.columns.json`: the feature column names, the target name, the
task, (for classification) the class labels (numbers, or the sorted words of a text target
column) and the model file's SHA-256, which `predict` uses to pick the feature columns from a
CSV by name (a target column there is ignored), to turn output indices back into labels, and
to refuse a JSON file left from another model. A column whose values sit far from zero for
their spread (timestamps, IDs) would lose its information when predict casts it to float32:
such columns are centred in float64 before the cast, by offsets the JSON file keeps
("offsets"), and the model takes them centred: `pynn predict` subtracts them (it needs the
JSON file then), model.predict from Python takes x - offsets. A regression target far from
zero for its spread is kept the same way: the model gives y - "target_offset", which
`pynn predict` adds back in float64. Features from an .npz have no
names: predict then takes the CSV's columns by position, dropping a column named like the
target. Without the JSON file every column of the CSV is a feature, by position.

Every problem with the user's files raises UsageError, which the command line prints as one
line and exits with code 2.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time

import numpy as np

from .saving import atomic_write, check_model_name, is_stream

# A target's missing-value markers: pandas' default na_values, case and all (so "none", a
# severity level, is a label, as pandas reads it; "None" and "NaN" are gaps).
_MISSING = frozenset(("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                      "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                      "nan", "null"))
MAX_AUTO_CLASSES = 20  # integer targets with at most this many values count as classes


class UsageError(Exception):
    """A problem with the command line's inputs: reported without a traceback, exit code 2."""


def sidecar_path(model_path):
    return os.fspath(model_path) + ".columns.json"


def _sidecar_beside(out):
    """Whether a sidecar goes beside --out: not beside a device or a descriptor (/dev/null,
    /dev/stdout: it would land in /dev, which only root may write), but beside a FIFO."""
    import stat

    if not is_stream(out):
        return True
    try:
        return stat.S_ISFIFO(os.stat(out).st_mode) and \
            not os.path.realpath(os.fspath(out)).startswith(("/dev/", "/proc/"))
    except OSError:
        return False


def check_output_path(out, inputs=()):
    """Fail before any work (training can take long) when `out` cannot be written as a new
    file: a directory, a folder that does not exist, or one of the command's input files."""
    path = os.fspath(out)
    if os.path.isdir(path):
        raise UsageError(f"--out {path!r} is a directory; give a file name")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise UsageError(f"--out {path!r} names a directory (it ends in a separator); give a "
                         f"file name")
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


def _check_regular_file(path):
    """An input file the commands read (some more than once: a CSV's columns, then its
    rows): a missing one, and a pipe or device (`<(cat data.csv)`, /dev/stdin: "no such
    file" before), named."""
    if os.path.isfile(path):
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{path!r} is not a regular file (a pipe or device?): pynn reads "
                         f"its inputs more than once; save it to a file first")
    raise UsageError(f"no such file: {path!r}")


# ---- reading data -----------------------------------------------------------------------------
def _csv_rows(path):
    """A csv.reader over the file (UTF-8, a byte-order mark such as Excel writes dropped)."""
    _check_regular_file(path)
    # csv's default limit (131072 characters a field) refused files with long free-text
    # fields, even in columns never read; raised (process-wide, never lowered) to 2**31 - 1
    # (the most a C long holds everywhere)
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
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


def _number(text):
    """A CSV field's number (quotes and spaces around it are fine), True/False as 1/0 (pandas
    writes bool columns so), else None (text, or an empty field: a missing value)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':  # `1, "2"`: csv keeps a quote that
        text = text[1:-1].strip()                       # follows a space
    if text.lower() in ("true", "false"):
        return float(text.lower() == "true")
    if "_" in text or not text.isascii():  # Python's float reads 1_000 and Arabic-Indic
        return None                          # digits as numbers; a CSV's reader (pandas) as text
    try:
        return float(text)
    except ValueError:
        return None


def _csv_records(path, columns=None):
    """(column names, an iterator of (fields of `columns` as text, line number)) over a CSV
    file's data rows (default all columns, in that order)."""
    names = csv_columns(path)
    idx = [names.index(c) for c in (names if columns is None else columns)]

    def records():
        f, rows = _csv_rows(path)
        with f:
            try:
                next(rows)  # the header
                for row in rows:
                    # Only an empty line is skipped (or a blank one, when the header names
                    # several columns): a row of empty fields, as pandas writes an all-NaN row
                    # (",,"), is a row of missing values; skipping it would shift predict's
                    # output rows.
                    if not row or (len(names) > 1 and len(row) == 1 and not row[0].strip()):
                        continue
                    if len(row) != len(names):
                        raise UsageError(f"{path!r}: line {rows.line_num} has {len(row)} "
                                         f"fields, the header names {len(names)} columns")
                    yield [row[i] for i in idx], rows.line_num
            except (UnicodeDecodeError, csv.Error) as exc:
                raise UsageError(f"{path!r} is not a CSV text file: {exc}") from None
    return names, records()


def read_csv(path, columns=None, text_hint=""):
    """(column names, float array (rows, len(columns))) of a CSV file with a header row: the
    values of `columns` (default all), in that order. Only those must be numbers (or
    True/False); quoted numbers are fine; empty lines are skipped. text_hint: added to the
    error for a value that is text (not for a missing one). Converted row by row (a list of
    floats is smaller than the text it came from)."""
    names, values, _, _ = _read_numbers(path, columns, text_hint)
    return names, values


def _read_numbers(path, columns, text_hint="", text_columns=()):
    """read_csv's (names, values), and in the same pass each row's fields of `text_columns`
    as text, with the rows' line numbers (both [] without text_columns)."""
    names, records = _csv_records(path, columns if not text_columns
                                  else [*columns, *text_columns])
    columns = names if columns is None else list(columns)
    values, texts, lines = [], [], []
    for row, line in records:
        if text_columns:
            texts.append(row[len(columns):])
            lines.append(line)
            del row[len(columns):]
        try:  # plain numbers (the common row) in C; anything else field by field
            joined = "\x1f".join(row)  # (float reads 1_000 and other scripts' digits; a
            if "_" in joined or not joined.isascii():  # CSV reader does not)
                raise ValueError
            numbers = list(map(float, row))
            if not all(map(math.isfinite, numbers)):
                raise ValueError
        except ValueError:
            numbers = [_number(text) for text in row]
            for v, text, column in zip(numbers, row, columns):
                if v is None or not math.isfinite(v):
                    hint = text_hint if v is None and text.strip() else ""
                    raise UsageError(f"{_bad_value(path, column, line, text)}{hint}")
        values.append(numbers)
    if not values:
        raise UsageError(f"{path!r} has a header but no data rows")
    values = np.array(values, dtype=np.float64).reshape(len(values), len(columns))
    return names, values, texts, lines


def _bad_value(path, column, line, text):
    return UsageError(f"{path!r}: column {column!r} holds a non-numeric, missing or infinite "
                      f"value on line {line}: {text!r}")


def _target_values(path, target, task, texts, lines):
    """A CSV's target column from its fields (texts, on lines): floats when every value is a
    number (or True/False), else the values as text, class labels (cat, dog). A column mixing
    numbers and text is more likely a numeric one with a typo: with --task auto that is an
    error, with classify labels."""
    numbers = [_number(t) for t in texts]
    words = [i for i, (v, t) in enumerate(zip(numbers, texts)) if v is None and t.strip()]
    if not words:
        for v, t, line in zip(numbers, texts, lines):
            if v is None or not math.isfinite(v):
                raise _bad_value(path, target, line, t)
        return np.array(numbers, dtype=np.float64)
    first = words[0]
    if task == "regress":
        raise UsageError(f"{_bad_value(path, target, lines[first], texts[first])}; --task "
                         f"regress needs numbers")
    if task != "classify" and len(words) < len(texts):
        word_set = set(words)
        others = [i for i in range(len(texts)) if i not in word_set]
        if all(_is_missing(texts[i]) for i in others):  # text labels with gaps: name the gap
            raise _missing_label(path, target, lines[others[0]], texts[others[0]])
        raise UsageError(f"{_bad_value(path, target, lines[first], texts[first])} (if the "
                         f"column holds class labels, give --task classify)")
    for t, line in zip(texts, lines):
        if _is_missing(t):  # R's NA, pandas' NaN: no label, not a class
            raise _missing_label(path, target, line, t)
    return np.array([t.strip() for t in texts])  # labels: choose_task classifies them


def _is_missing(text):
    return text.strip() in _MISSING  # ("" among them: an empty field)


def _missing_label(path, target, line, text):
    return UsageError(f"{_bad_value(path, target, line, text)} (a missing class label: drop or "
                      f"fill that row)")


def load_training_data(path, target, drop=(), task="auto"):
    """(x, y, feature names, target name) from a CSV (target = a column name; the columns in
    `drop` are left out) or an .npz file (arrays 'x' and 'y', or 'x' and the array named by
    target). y is float64, or text labels (a CSV's non-numeric target, unless task says
    regress)."""
    _check_regular_file(path)
    if path.lower().endswith(".npz"):
        if drop:
            raise UsageError("--drop names CSV columns; an .npz file's features have no names")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one usage error
            # numpy takes any file that is no zip or .npy for a pickle, and advises loading it
            # "unsafely": never done here, so that advice is not passed on.
            why = ("pickled objects are never loaded" if "pickle" in str(exc).lower()
                   else str(exc))
            raise UsageError(f"{path!r} is not a readable .npz file ({why})") from None
        y_key = target if target in arrays else ("y" if target is None else None)
        if "x" not in arrays or y_key not in arrays:
            want = f"'x' and {target!r}" if target else "'x' and 'y'"
            raise UsageError(f"{path!r} must hold arrays {want}; it holds {sorted(arrays)}")
        x, y = arrays["x"], arrays[y_key]
        if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
            raise UsageError(f"{path!r}: 'x' and {y_key!r} must be numeric arrays")
        for key, array in (("x", x), (y_key, y)):
            if array.ndim == 0 or len(array) == 0:
                raise UsageError(f"{path!r}: {key!r} must hold one row per sample and at least "
                                 f"one sample, got shape {array.shape}")
        if x.size == 0:
            raise UsageError(f"{path!r}: 'x' has no feature columns (shape {x.shape})")
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
    unknown = [c for c in drop if c not in names]
    if unknown:
        raise UsageError(f"--drop: {path!r} has no column(s) {unknown}; its columns are "
                         f"{names}")
    if target in drop:
        raise UsageError(f"--drop names the target column {target!r}")
    features = [n for n in names if n != target and n not in drop]
    if not features:
        raise UsageError(f"{path!r} has no feature columns besides the target {target!r}"
                         + (f" and the dropped {list(drop)}" if drop else ""))
    # Dropped columns may hold anything (text IDs)
    _, x, texts, lines = _read_numbers(
        path, features, text_hint=" (an ID or other non-feature? leave it out with --drop "
                                  "COLUMN)", text_columns=[target])
    y = _target_values(path, target, task, [t[0] for t in texts], lines)
    _check_float32_range(path, x)
    if y.dtype.kind == "f":
        _check_float32_range(path, y)
    return x, y, features, target


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
    """'classify' or 'regress': as asked, else classes for text labels or few integer
    values."""
    if task in ("classify", "regress"):
        return task
    if y.dtype.kind == "U":  # text labels (load_training_data refused them for regress)
        return "classify"
    values = np.unique(y)
    integral = np.array_equal(values, np.round(values))
    return "classify" if integral and 2 <= len(values) <= MAX_AUTO_CLASSES else "regress"


# ---- training ---------------------------------------------------------------------------------
def _check_fits_in_memory(features, layers):
    """--layers whose weights, gradients and optimizer state (4 float32 arrays each) exceed
    the machine's memory: refused before any is made (the system killed the process)."""
    sizes = [features, *layers]
    weights = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    need = 16 * weights
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # (not on every system)
        return
    if need > memory:
        raise UsageError(f"--layers {','.join(map(str, layers))}: {weights:,} weights need "
                         f"about {need / 2**30:.1f} GiB with their gradients and optimizer "
                         f"state; this machine has {memory / 2**30:.1f} GiB")


def train(data, target, layers, epochs, out, task="auto", batch_size=32, seed=None,
          learning_rate=None, verbose=1, drop=(), print_fn=print, optimizer="adam"):
    """learning_rate None: the optimizer's Keras default (Adam's 0.001)."""
    import pynn

    def make_optimizer():
        cls = type(pynn.optimizers.get(optimizer))
        return cls() if learning_rate is None else cls(learning_rate)

    for path in (out, sidecar_path(out)) if _sidecar_beside(out) else (out,):
        check_output_path(path, inputs=[data])
    try:  # (before training: a .onnx or .weights.h5 name holds no pynn model)
        check_model_name(out)
    except ValueError as exc:
        raise UsageError(f"--out {exc}") from None
    if seed is not None:
        pynn.set_seed(seed)
    x, y, features, target = load_training_data(data, target, drop, task)
    task = choose_task(y, task)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0  # a constant column: leave it unscaled rather than divide by 0
    # The saved model takes raw values: its first layer is scaled by 1 / spread, which for a
    # spread of 1e-40 is beyond float32 (its weights were inf, its predictions NaN)
    tiny = np.flatnonzero(std < 1e-30)
    if tiny.size:
        names = [features[i] if features else int(i) for i in tiny]
        raise UsageError(f"feature(s) {names} vary by less than 1e-30: the saved model takes "
                         f"raw values, scaled by 1 / their spread, beyond float32's range; "
                         f"rescale them (or --drop them)")
    xs = ((x - mean) / std).astype(np.float32)
    meta = {"features": features, "target": target, "task": task}
    offsets = centring_offsets(x, std)
    if offsets.any():
        meta["offsets"] = offsets.tolist()
    _check_fits_in_memory(x.shape[1], layers)
    model = pynn.Sequential([pynn.Input((x.shape[1],))]
                            + [pynn.Dense(u, activation="relu") for u in layers])
    if task == "classify":
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise UsageError(f"target {target!r} has a single value; nothing to classify")
        if classes.dtype.kind == "f" and np.array_equal(classes, np.round(classes)):
            # Beyond 2**53 float64 has rounded the integers (distinct labels may have merged),
            # and beyond 2**63 int64 would wrap them: refused rather than stored wrong.
            if np.abs(classes).max() >= 2.0**53:
                raise UsageError(f"target {target!r} holds integer class labels of magnitude "
                                 f"2**53 or more, which float64 cannot hold exactly; renumber "
                                 f"them (or give --task regress if they are quantities)")
            classes = classes.astype(np.int64)  # CSV values are floats; labels 0, 1, not 0.0
        meta["classes"] = [c.item() for c in classes]
        model.add(pynn.Dense(len(classes), activation="softmax"))
        model.compile(optimizer=make_optimizer(), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        targets = codes.astype(np.int64)
    else:
        model.add(pynn.Dense(1))
        model.compile(optimizer=make_optimizer(), loss="mse")
        # Standardised targets train at any scale; the last layer is rescaled after training.
        y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
        targets = ((y - y_mean) / y_std).astype(np.float32)
        # a target far from zero for its spread (1e9 + small changes): the model's float32
        # bias would round its mean, so the model gives y - offset, added back in float64
        y_offset = float(centring_offsets(y.reshape(-1, 1).astype(np.float64),
                                          np.array([y_std]))[0])
        if y_offset:
            meta["target_offset"] = y_offset
    print_fn(f"{task} {target!r} from {x.shape[1]} features, {len(x)} samples"
             + (f", {len(meta['classes'])} classes" if task == "classify" else ""))
    if offsets.any():
        centred = [features[i] if features else int(i) for i in np.flatnonzero(offsets)]
        print_fn(f"feature(s) {centred} sit far from zero for their spread: float32 would "
                 f"round them, so the model takes x - offsets, the 'offsets' kept in "
                 f"{sidecar_path(out)} (`pynn predict` subtracts them; from Python, do the "
                 f"same before model.predict)")
    if meta.get("target_offset"):
        print_fn(f"target {target!r} sits far from zero for its spread: float32 would round "
                 f"it, so the model gives y - target_offset, kept in {sidecar_path(out)} "
                 f"(`pynn predict` adds it back; from Python, add it to model.predict)")
    history = model.fit(xs, targets, epochs=epochs, batch_size=batch_size, verbose=verbose)
    _fold_standardization(model, mean - offsets, std)
    if task == "regress":
        last = model._compute_layers[-1]
        kernel, bias = last.get_weights()
        last.set_weights([(kernel * y_std).astype(kernel.dtype),
                          (bias * y_std + (y_mean - y_offset)).astype(bias.dtype)])
    final_loss = history.history["loss"][-1] if history.history.get("loss") else 0.0
    if not np.isfinite(final_loss) or not all(np.isfinite(w).all() for w in model.get_weights()):
        # (a diverged run saved, `pynn predict` then gave every NaN row the first label)
        raise UsageError(f"training diverged (final loss {final_loss}, weights not all "
                         f"finite); no model saved: try a smaller --learning-rate")
    model.save(out)
    # The sidecar is written second: should that fail (a full disk), an older sidecar would
    # describe the new model (its class labels mapped to the wrong outputs). The model file's
    # hash in the sidecar lets predict tell. (A pipe as --out cannot be read back.)
    if not is_stream(out):
        meta["model_sha256"] = file_sha256(out)
    final = {k: round(v[-1], 6) for k, v in history.history.items()}
    scale = " (on standardised targets)" if task == "regress" else ""
    if _sidecar_beside(out):
        atomic_write(sidecar_path(out), lambda f: f.write(json.dumps(meta, indent=2).encode()))
        print_fn(f"saved {out} (and {sidecar_path(out)}); final epoch{scale}: {final}")
    else:
        print_fn(f"saved {out} (not {sidecar_path(out)}, beside a device or descriptor: "
                 f"`pynn predict` then knows none of its column names, classes or target "
                 f"offset; give --out a file to keep them); final epoch{scale}: {final}")
    return model


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fold_standardization(model, mean, std):
    """Make the first Dense layer take raw features (less the centring offsets, which `mean`
    has already lost): W' = W / std, b' = b - (mean / std) @ W."""
    first = model._compute_layers[0]
    kernel, bias = first.get_weights()
    first.set_weights([(kernel / std[:, None]).astype(kernel.dtype),
                       (bias - (mean / std) @ kernel).astype(bias.dtype)])


# ---- prediction -------------------------------------------------------------------------------
def predict(model_path, data, out=None, keep=(), proba=False, print_fn=print):
    """Predictions for a CSV's rows, as CSV: the columns in `keep` copied from the input
    first, then the target's (the class label; with proba, one probability per class). A
    model saved with float64 weights predicts in float64 (a float32 session rounded them,
    with a warning the command line could not act on)."""
    import pynn

    _check_regular_file(model_path)  # (before _file_floatx opens it: a FIFO would block)
    previous = pynn.floatx()
    pynn.set_floatx(_file_floatx(model_path))
    try:
        return _predict(model_path, data, out, keep, proba, print_fn)
    finally:
        pynn.set_floatx(previous)


def _file_floatx(model_path):
    """'float64' when the model file holds float64 weights, else 'float32' (also for a file
    that cannot be read: loading it says why)."""
    from .archive import META_KEY
    from .saving import read_arrays

    try:
        with read_arrays(model_path) as arrays:
            wide = any(arrays.declared(name)[1] == np.float64 for name in arrays.names()
                       if name != META_KEY)
    except (ValueError, OSError, ImportError):
        return "float32"
    return "float64" if wide else "float32"


def _predict(model_path, data, out, keep, proba, print_fn):
    import pynn

    if out is not None:
        check_output_path(out, inputs=[model_path, sidecar_path(model_path), data])
    try:
        model = pynn.load_model(model_path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if len(model.input_shape) != 1:
        raise UsageError(f"{model_path!r} takes samples of shape {model.input_shape}; a CSV "
                         f"row is one flat feature vector (use model.predict from Python)")
    n_features = model.input_shape[0]
    meta = None
    if os.path.isfile(sidecar_path(model_path)):
        meta = read_sidecar(model_path, n_features, math.prod(model.output_shape))
    if proba and (meta or {}).get("task") != "classify":
        why = ("a regression model" if meta is not None and meta.get("task") == "regress"
               else f"not known as one ({sidecar_path(model_path)!r}, which names its classes, "
               f"is missing or names no task)")
        raise UsageError(f"--proba needs a classification model; {model_path!r} is {why}")
    # Only the feature columns are read (others, the target's included, may hold anything).
    names = all_names = csv_columns(data)
    missing = [c for c in keep if c not in all_names]
    if missing:
        raise UsageError(f"--keep: {data!r} has no column(s) {missing}; its columns are "
                         f"{all_names}")
    if meta is not None and meta.get("features") is None and meta.get("target") in names:
        # Trained on an .npz: the features have no names, the target column is dropped.
        names = [n for n in names if n != meta["target"]]
    if meta is not None and meta.get("features") is not None:
        missing = [c for c in meta["features"] if c not in names]
        if missing:
            raise UsageError(f"{data!r} lacks the feature column(s) {missing} the model was "
                             f"trained on")
        features = meta["features"]
    else:
        if len(names) != n_features and keep:
            # by position, the columns kept for the output (an id) are not features unless
            # the count says they are
            names = [n for n in names if n not in keep]
        if len(names) != n_features:
            why = ("the model was trained on unnamed .npz features, taken by position"
                   if meta is not None else f"{sidecar_path(model_path)!r}, which names them, "
                   f"is missing")
            raise UsageError(f"{data!r} has {len(names)} feature columns, the model takes "
                             f"{n_features} ({why})")
        features = names
    _, x, kept, _ = _read_numbers(data, features, text_columns=keep)  # one pass for both
    offsets = (meta or {}).get("offsets")
    if offsets is not None:
        x = x - np.asarray(offsets, dtype=np.float64)  # in float64, before the float32 cast
    try:  # float64 in: predict names values beyond float32's range itself
        outputs = model.predict(x)
    except ValueError as exc:
        raise UsageError(f"{data!r}: {exc}") from None
    bad = np.flatnonzero(~np.isfinite(outputs.reshape(len(outputs), -1)).all(axis=1))
    if bad.size:  # (argmax gave a NaN row the first class label, confidently)
        rows = ", ".join(str(i + 1) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise UsageError(f"{data!r}: the model's outputs for {bad.size} row(s) (data rows "
                         f"{rows}) are NaN or infinite: its weights, or these inputs, overflow "
                         f"float32")
    target_offset = (meta or {}).get("target_offset")
    if target_offset is not None:  # in float64: the model gives y - target_offset
        outputs = outputs.astype(np.float64) + target_offset
    column = (meta or {}).get("target") or "prediction"
    outputs = outputs.reshape(len(outputs), -1)
    # str of a numpy scalar: the shortest text that reads back as the model's float32
    # (0.64016306, not tolist()'s double 0.6401630640029907)
    text_rows = [[str(v) for v in row] for row in outputs]
    preds = outputs.tolist()
    if proba:
        header = [f"{column}_{label}" for label in meta["classes"]]
    elif meta is not None and meta.get("task") == "classify":
        header, preds = [column], [[meta["classes"][i]] for i in np.argmax(outputs, axis=1)]
        text_rows = preds
    else:  # one column per output: a model saved from Python may have several
        header = ([column] if outputs.shape[1] == 1
                  else [f"{column}_{j}" for j in range(outputs.shape[1])])
    result = [row[0] for row in preds] if len(header) == 1 else preds
    if keep:
        header = list(keep) + header
        text_rows = [k + row for k, row in zip(kept, text_rows)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(text_rows)
    text = buffer.getvalue()
    if out is None:
        print_fn(text, end="")
    else:
        atomic_write(out, lambda f: f.write(text.encode()))
        if not is_stream(out):  # (--out /dev/stdout: the status line would join the CSV)
            print_fn(f"wrote {len(preds)} predictions to {out}")
    return result


def read_sidecar(model_path, n_features, n_outputs):
    """The JSON file `train` wrote next to the model, each field checked against the model (it
    may be edited, damaged or another model's): a UsageError naming the file and the field."""
    path = sidecar_path(model_path)
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read().decode("utf-8-sig"))
    except (OSError, ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, deep nesting
        raise UsageError(f"{path!r} is not a readable JSON file: {exc}") from None

    def invalid(field, expected):
        return UsageError(f"{path!r}: {field!r} must be {expected}")

    if not isinstance(meta, dict):
        raise UsageError(f"{path!r} must hold a JSON object, as `pynn train` writes, not a "
                         f"{type(meta).__name__}")
    digest = meta.get("model_sha256")  # absent from older versions' files
    if digest is not None:
        if not isinstance(digest, str):
            raise invalid("model_sha256", "the model file's SHA-256, as hex text")
        if digest.lower() != file_sha256(model_path):
            raise UsageError(f"{path!r} belongs to another model: its 'model_sha256' is not "
                             f"that of {os.fspath(model_path)!r} (was the model replaced, or "
                             f"writing this file interrupted?); train again")
    features = meta.get("features")
    if features is not None and not (isinstance(features, list) and len(features) == n_features
                                     and all(isinstance(c, str) for c in features)):
        raise invalid("features", f"a list of the {n_features} feature column names the model "
                                  f"takes (or null)")
    if not isinstance(meta.get("target"), (str, type(None))):
        raise invalid("target", "the target column's name (or null)")
    task = meta.get("task")
    if task not in ("classify", "regress", None):
        raise invalid("task", "'classify' or 'regress'")
    classes = meta.get("classes")
    if task == "classify" and not (isinstance(classes, list) and len(classes) == n_outputs
                                   and all(_is_label(c) for c in classes)):
        raise invalid("classes", f"a list of {n_outputs} class labels (text or numbers), one "
                                 f"per model output")
    offsets = meta.get("offsets")
    if offsets is not None and not (isinstance(offsets, list) and len(offsets) == n_features
                                    and all(_finite_number(v) for v in offsets)):
        raise invalid("offsets", f"{n_features} finite numbers, one per feature")
    target_offset = meta.get("target_offset")
    if target_offset is not None and not (_finite_number(target_offset) and task == "regress"
                                          and n_outputs == 1):
        raise invalid("target_offset", "a finite number, for a regression model's one output")
    return meta


def _finite_number(value):
    """A JSON number that is a finite float (not true/false, nor a 400-digit integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_label(value):
    return isinstance(value, str) or _finite_number(value)


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
    precision = f", matmul precision {pynn.get_matmul_precision()}" if name == "cpu" else ""
    print_fn(f"backend {name}, {threads}{precision}")
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
