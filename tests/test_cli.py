"""`pynn train|predict|bench` through a real subprocess: outputs, files, help and exit codes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pynn


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pynn", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def write_csv(path, names, rows):
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")
    return path


def blobs(labels=(3, 5, 7)):
    """(features (120, 2), labels): three well-separated classes, 40 samples each."""
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [6, 6], [0, 6]])
    x = centers[np.repeat([0, 1, 2], 40)] + rng.normal(scale=0.5, size=(120, 2))
    return x.round(4), np.repeat(labels, 40)


@pytest.fixture
def blobs_csv(tmp_path):
    """Three well-separated classes, labelled 3/5/7, plus a target column last."""
    x, labels = blobs()
    rows = [(a, b, c) for (a, b), c in zip(x, labels)]
    return write_csv(tmp_path / "blobs.csv", ["f1", "f2", "label"], rows), labels


@pytest.fixture(scope="module")
def blobs_model(tmp_path_factory):
    """A model trained (briefly) on blobs_csv's data, for tests of predict's output."""
    folder = tmp_path_factory.mktemp("blobs_model")
    x, labels = blobs()
    path = write_csv(folder / "blobs.csv", ["f1", "f2", "label"],
                     [(a, b, c) for (a, b), c in zip(x, labels)])
    model = folder / "m.npz"
    out = run_cli("train", "--data", path, "--target", "label", "--layers", "8", "--epochs",
                  "1", "--out", model, "--seed", "0", "--quiet")
    assert out.returncode == 0, out.stderr
    return model


def test_train_then_predict_classification(tmp_path, blobs_csv):
    path, labels = blobs_csv
    model = tmp_path / "model.npz"
    out = run_cli("train", "--data", path, "--target", "label", "--layers", "16",
                  "--epochs", "30", "--out", model, "--seed", "0", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "classify 'label'" in out.stdout and "3 classes" in out.stdout
    meta = json.loads((tmp_path / "model.npz.columns.json").read_text())
    # The model file's hash: predict tells a sidecar left from another model
    assert meta.pop("model_sha256") == hashlib.sha256(model.read_bytes()).hexdigest()
    assert meta == {"features": ["f1", "f2"], "target": "label", "task": "classify",
                    "classes": [3, 5, 7]}
    assert pynn.load_model(model).output_shape == (3,)
    # The CSV still holds the target column: it is ignored, features are picked by name.
    preds_path = tmp_path / "preds.csv"
    out = run_cli("predict", "--model", model, "--data", path, "--out", preds_path)
    assert out.returncode == 0, out.stderr
    lines = preds_path.read_text().split()
    assert lines[0] == "label"
    assert (np.array(lines[1:], dtype=int) == labels).mean() > 0.95
    # Columns in another order, no target, to stdout.
    rows = np.loadtxt(path, delimiter=",", skiprows=1)[:5]
    swapped = write_csv(tmp_path / "swapped.csv", ["f2", "f1"], rows[:, [1, 0]])
    out = run_cli("predict", "--model", model, "--data", swapped)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["label"] + [str(v) for v in labels[:5]]


def test_train_regression_from_npz_saves_raw_scale_model(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3)) * [1, 10, 100] + [0, 50, -300]  # raw, unscaled features
    y = 1000 + 40 * x[:, 0] + 3 * x[:, 1] - 0.5 * x[:, 2]
    np.savez(tmp_path / "data.npz", x=x, price=y)
    model = tmp_path / "reg.npz"
    out = run_cli("train", "--data", tmp_path / "data.npz", "--target", "price", "--layers",
                  "32", "--epochs", "80", "--out", model, "--seed", "1", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "regress 'price'" in out.stdout
    pred = pynn.load_model(model).predict(x.astype(np.float32))[:, 0]
    assert np.abs(pred - y).mean() < 0.1 * y.std()  # feature/target scaling folded in
    # Unnamed .npz features: predict takes CSV columns by position, dropping the target.
    csv = write_csv(tmp_path / "new.csv", ["a", "price", "b", "c"],
                    [(r[0], 0.0, r[1], r[2]) for r in x[:4]])
    out = run_cli("predict", "--model", model, "--data", csv)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] == "price"
    np.testing.assert_allclose(np.array(lines[1:], dtype=float), pred[:4], rtol=1e-5)


def test_features_far_from_zero_are_centred_before_float32(tmp_path, rng):
    """Timestamps: float32 holds 1.7e9 + t to 128 s, so a model taking the raw values predicts
    from a handful of distinct inputs. train keeps such columns' offsets in the sidecar and
    predict subtracts them in float64; ordinary columns stay raw (no offset)."""
    t = 1.7e9 + rng.uniform(0, 600, 300)
    other = rng.normal(size=300)
    y = (t - 1.7e9) + 10 * other
    data = write_csv(tmp_path / "ts.csv", ["t", "other", "y"],
                     [(f"{a:.3f}", f"{b:.5f}", f"{c:.5f}") for a, b, c in zip(t, other, y)])
    model = tmp_path / "ts.npz"
    out = run_cli("train", "--data", data, "--target", "y", "--layers", "16", "--epochs", "60",
                  "--out", model, "--seed", "0", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "feature(s) ['t'] sit far from zero" in out.stdout
    offsets = json.loads((tmp_path / "ts.npz.columns.json").read_text())["offsets"]
    assert offsets[1] == 0 and abs(offsets[0] - t.mean()) < 1e-3
    out = run_cli("predict", "--model", model, "--data", data)
    assert out.returncode == 0, out.stderr
    pred = np.array(out.stdout.split()[1:], dtype=float)
    # Raw float32 timestamps gave an error of ~0.27 std here; centred, ~0.02
    assert np.sqrt(np.mean((pred - y) ** 2)) < 0.1 * y.std()
    meta = json.loads((tmp_path / "ts.npz.columns.json").read_text())
    meta["offsets"] = [1.0]
    (tmp_path / "ts.npz.columns.json").write_text(json.dumps(meta))
    out = run_cli("predict", "--model", model, "--data", data)
    assert out.returncode == 2 and "'offsets' must be 2 finite numbers" in out.stderr


def test_a_regression_target_far_from_zero_keeps_its_offset(tmp_path, rng):
    """y = 1e9 + small changes: folded into the last layer's float32 bias, the mean rounded
    to 64 and every prediction was 1e9 (no better than the mean). train keeps the offset in
    the sidecar and predict adds it back in float64."""
    a, b = rng.normal(size=(2, 300))
    y = 1e9 + 3 * a + b
    data = write_csv(tmp_path / "big.csv", ["a", "b", "y"],
                     [(f"{p:.6f}", f"{q:.6f}", f"{t:.4f}") for p, q, t in zip(a, b, y)])
    model = tmp_path / "big.npz"
    out = run_cli("train", "--data", data, "--target", "y", "--layers", "16", "--epochs", "40",
                  "--out", model, "--seed", "0", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "target 'y' sits far from zero" in out.stdout
    meta = json.loads((tmp_path / "big.npz.columns.json").read_text())
    assert abs(meta["target_offset"] - y.mean()) < 1e-3
    out = run_cli("predict", "--model", model, "--data", data)
    assert out.returncode == 0, out.stderr
    pred = np.array(out.stdout.split()[1:], dtype=float)
    assert np.sqrt(np.mean((pred - y) ** 2)) < 0.3 * y.std()  # (the mean alone: 1.0)
    meta["target_offset"] = "1e9"
    (tmp_path / "big.npz.columns.json").write_text(json.dumps(meta))
    out = run_cli("predict", "--model", model, "--data", data)
    assert out.returncode == 2 and "'target_offset' must be a finite number" in out.stderr


def test_task_option_overrides_the_guess(tmp_path, blobs_csv):
    path, _ = blobs_csv
    out = run_cli("train", "--data", path, "--target", "label", "--task", "regress",
                  "--epochs", "1", "--out", tmp_path / "m.npz", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "regress 'label'" in out.stdout
    assert pynn.load_model(tmp_path / "m.npz").output_shape == (1,)
    out = run_cli("predict", "--model", tmp_path / "m.npz", "--data", path, "--proba")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    model = str(tmp_path / "m.npz")
    assert f"--proba needs a classification model; {model!r} is a regression" in out.stderr


def test_predict_without_sidecar_needs_exact_columns(tmp_path, blobs_csv):
    path, _ = blobs_csv
    model = tmp_path / "m.npz"
    assert run_cli("train", "--data", path, "--target", "label", "--epochs", "1", "--out",
                   model, "--quiet").returncode == 0
    (tmp_path / "m.npz.columns.json").unlink()
    out = run_cli("predict", "--model", model, "--data", path)
    assert out.returncode == 2
    assert "has 3 feature columns, the model takes 2" in out.stderr
    features = write_csv(tmp_path / "x.csv", ["u", "v"], [(0, 0), (6, 6)])
    out = run_cli("predict", "--model", model, "--data", features)
    assert out.returncode == 0, out.stderr
    # No class labels without the sidecar: the three classes' probabilities, one column each
    header, *rows = out.stdout.split()
    assert header == "prediction_0,prediction_1,prediction_2"
    np.testing.assert_allclose([sum(map(float, r.split(","))) for r in rows], 1, rtol=1e-5)


def test_train_with_another_optimizer(tmp_path, blobs_csv):
    path, labels = blobs_csv
    model = tmp_path / "model.npz"
    out = run_cli("train", "--data", path, "--target", "label", "--layers", "8", "--epochs",
                  "2", "--out", model, "--seed", "0", "--quiet", "--optimizer", "Lion")
    assert out.returncode == 0, out.stderr
    optimizer = pynn.load_model(model).optimizer
    assert type(optimizer) is pynn.optimizers.Lion and optimizer.rate() == 0.001  # Keras'
    out = run_cli("train", "--data", path, "--target", "label", "--out", model,
                  "--optimizer", "sophia")
    assert out.returncode == 2 and "invalid choice: 'sophia'" in out.stderr and \
        "muon" in out.stderr


@pytest.mark.parametrize("case, message", [
    ("missing_file", "no such file"),
    ("missing_target", "has no column 'nope'"),
    ("non_numeric", ("column 'b' holds a non-numeric, missing or infinite value on line 3: "
                     "'x' (an ID or other non-feature? leave it out with --drop COLUMN)")),
    ("infinite_rate", "--learning-rate must be a number > 0"),
    # more weights than memory: the system killed the process (exit -9)
    ("layers_beyond_memory", "GiB with their gradients and optimizer state; this machine has"),
    ("no_target_arg", "--target COLUMN is required"),
    ("npz_without_y", "must hold arrays 'x' and 'y'"),
    # float32's range: the column's spread overflowed and its weights were silently 0
    ("beyond_float32", "holds 1 value(s) beyond float32's range"),
    ("npz_beyond_float32", "holds 1 value(s) beyond float32's range"),
    ("unnamed_column", "column(s) [3] have no name in the header row (a trailing comma"),
    # A target mixing numbers and text is more likely a typo than labels
    ("mixed_target", ("holds a non-numeric, missing or infinite value on line 3: 'x' (if "
                      "the column holds class labels, give --task classify)")),
    ("text_target_regress", "on line 2: 'cat'; --task regress needs numbers"),
    # R writes a missing label as NA: not a class
    ("text_target_na", "column 'b' holds a non-numeric, missing or infinite value on line 3: "
                       "'NA'"),
    # pandas writes an all-NaN row as ",,": a row of missing values, not a blank line
    ("row_of_empty_fields", ("column 'a' holds a non-numeric, missing or infinite value on "
                             "line 3: ''")),
    ("drop_unknown", "--drop: {good} has no column(s) ['nope']; its columns are ['a', 'b']"),
    ("drop_target", "--drop names the target column 'b'"),
    ("drop_every_feature", ("has no feature columns besides the target 'b' and the dropped "
                            "['a']")),
    ("drop_npz", "--drop names CSV columns; an .npz file's features have no names"),
    ("npz_scalar_x", "'x' must hold one row per sample and at least one sample, got shape ()"),
    ("npz_no_rows", ("'x' must hold one row per sample and at least one sample, got shape "
                     "(0, 3)")),
    ("npz_no_features", "'x' has no feature columns (shape (4, 0))"),
    ("npz_is_text", "is not a readable .npz file (pickled objects are never loaded)"),
    ("npz_object_array", "is not a readable .npz file (pickled objects are never loaded)"),
    # float64 rounds them (int64 would wrap those beyond 2**63-1): refused, not stored wrong
    ("npz_uint64_labels", "holds integer class labels of magnitude 2**53 or more"),
    ("npz_int64_labels", "holds integer class labels of magnitude 2**53 or more"),
])
def test_train_errors_exit_2_without_traceback(tmp_path, case, message):
    good = write_csv(tmp_path / "good.csv", ["a", "b"], [(1, 0), (2, 1)])
    bad = write_csv(tmp_path / "bad.csv", ["a", "b"], [(1, 0), (2, "x")])
    np.savez(tmp_path / "xonly.npz", x=np.zeros((4, 2)))
    huge = write_csv(tmp_path / "huge.csv", ["a", "b", "c"], [(1, 1e300, 0), (2, 3, 1)])
    np.savez(tmp_path / "huge.npz", x=[[1.0], [-1e39]], y=[0.0, 1.0])
    trailing = write_csv(tmp_path / "trailing.csv", ["a", "b", ""], [(1, 0, ""), (2, 1, "")])
    words = write_csv(tmp_path / "words.csv", ["a", "b"], [(1, "cat"), (2, "dog")])
    with_na = write_csv(tmp_path / "na.csv", ["a", "b"], [(1, "cat"), (2, "NA"), (3, "dog")])
    empty_row = write_csv(tmp_path / "empty_row.csv", ["a", "b"], [(1, 0), ("", ""), (2, 1)])
    np.savez(tmp_path / "scalar.npz", x=np.float64(1), y=np.float64(0))
    np.savez(tmp_path / "no_rows.npz", x=np.zeros((0, 3)), y=np.zeros(0))
    np.savez(tmp_path / "no_features.npz", x=np.zeros((4, 0)), y=np.arange(4))
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    np.savez(tmp_path / "object.npz", x=np.array([{}, 1], dtype=object), y=np.zeros(2))
    np.savez(tmp_path / "uint64.npz", x=np.arange(4.0)[:, None],
             y=np.array([2**63 + 1, 2**64 - 1] * 2, dtype=np.uint64))
    np.savez(tmp_path / "int64.npz", x=np.arange(4.0)[:, None],
             y=np.array([2**53 + 1, 2**53 + 3] * 2, dtype=np.int64))
    args = {"missing_file": ["--data", tmp_path / "none.csv", "--target", "b"],
            "missing_target": ["--data", good, "--target", "nope"],
            "non_numeric": ["--data", bad, "--target", "a"],
            "no_target_arg": ["--data", good],
            "npz_without_y": ["--data", tmp_path / "xonly.npz"],
            "beyond_float32": ["--data", huge, "--target", "c"],
            "npz_beyond_float32": ["--data", tmp_path / "huge.npz"],
            "unnamed_column": ["--data", trailing, "--target", "b"],
            "infinite_rate": ["--data", good, "--target", "b", "--learning-rate", "inf"],
            "layers_beyond_memory": ["--data", good, "--target", "b", "--layers",
                                     "100000,100000000"],
            "mixed_target": ["--data", bad, "--target", "b"],
            "text_target_regress": ["--data", words, "--target", "b", "--task", "regress"],
            "row_of_empty_fields": ["--data", empty_row, "--target", "b"],
            "text_target_na": ["--data", with_na, "--target", "b"],
            "drop_unknown": ["--data", good, "--target", "b", "--drop", "nope"],
            "drop_target": ["--data", good, "--target", "b", "--drop", "b"],
            "drop_every_feature": ["--data", good, "--target", "b", "--drop", "a"],
            "drop_npz": ["--data", tmp_path / "huge.npz", "--drop", "a"],
            "npz_scalar_x": ["--data", tmp_path / "scalar.npz"],
            "npz_no_rows": ["--data", tmp_path / "no_rows.npz"],
            "npz_no_features": ["--data", tmp_path / "no_features.npz"],
            "npz_is_text": ["--data", tmp_path / "text.npz"],
            "npz_object_array": ["--data", tmp_path / "object.npz"],
            "npz_uint64_labels": ["--data", tmp_path / "uint64.npz"],
            "npz_int64_labels": ["--data", tmp_path / "int64.npz"]}[case]
    out = run_cli("train", *args, "--out", tmp_path / "m.npz")
    assert out.returncode == 2
    assert message.format(good=repr(str(good))) in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "allow_pickle" not in out.stderr
    assert not (tmp_path / "m.npz").exists()


def test_predict_errors_exit_2(tmp_path, blobs_csv):
    path, _ = blobs_csv
    out = run_cli("predict", "--model", tmp_path / "none.npz", "--data", path)
    assert out.returncode == 2 and "no such file" in out.stderr
    model = tmp_path / "m.npz"
    assert run_cli("train", "--data", path, "--target", "label", "--epochs", "1", "--out",
                   model, "--quiet").returncode == 0
    other = write_csv(tmp_path / "other.csv", ["f1", "g"], [(1, 2)])
    out = run_cli("predict", "--model", model, "--data", other)
    assert out.returncode == 2 and "lacks the feature column(s) ['f2']" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args", [["--layers", "64,x"], ["--epochs", "-1"],
                                  ["--batch-size", "0"], ["--task", "cluster"]])
def test_bad_arguments_are_argparse_errors(tmp_path, args):
    out = run_cli("train", "--data", "d.csv", "--target", "y", *args, cwd=tmp_path)
    assert out.returncode == 2 and "error" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("command", ["train", "predict", "bench"])
def test_help(command):
    out = run_cli(command, "--help")
    assert out.returncode == 0
    assert f"usage: pynn {command}" in out.stdout
    for option in {"train": ["--drop"], "predict": ["--keep", "--proba"]}.get(command, []):
        assert option in out.stdout


def test_bench_prints_rates():
    out = run_cli("bench")
    assert out.returncode == 0, out.stderr
    assert "GFLOP/s" in out.stdout and "samples/s" in out.stdout
    if pynn.get_backend().name == "cpu":  # which products its GFLOP/s are of
        assert f"matmul precision {pynn.get_matmul_precision()}" in out.stdout


def test_bench_names_the_threads_that_ran(numpy_backend):
    """On the numpy backend it printed the C++ pool's size (or 1 without the extension),
    while numpy's BLAS ran on its own threads."""
    from pynn import tabular

    lines = []
    tabular.bench(print_fn=lambda text, **kw: lines.append(text))
    assert "backend numpy, numpy's BLAS threads" in lines


def test_predict_reads_only_the_feature_columns(tmp_path, blobs_csv):
    """Spreadsheet exports: a byte-order mark, quoted numbers, a blank target column and a
    text ID column (neither is a feature) all predict; a binary file is a clear error."""
    path, _ = blobs_csv
    model = tmp_path / "m.npz"
    assert run_cli("train", "--data", path, "--target", "label", "--epochs", "1", "--out",
                   model, "--quiet").returncode == 0
    names = open(path).readline().strip().split(",")
    features = [n for n in names if n != "label"]
    rows = [(f'"{0.5 * i}"', str(1.0 - i), "", f"id-{i}") for i in range(3)]
    export = tmp_path / "export.csv"
    export.write_text("\ufeff" + ",".join(features + ["label", "id"]) + "\n" +
                      "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    out = run_cli("predict", "--model", model, "--data", export)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 1 + len(rows)
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    out = run_cli("predict", "--model", model, "--data", tmp_path / "x.npy")
    assert out.returncode == 2 and "not a CSV text file" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("gap", ["NaN", "", "NA"])
def test_a_text_target_with_a_missing_label_names_the_gap(tmp_path, gap):
    # (it named the first label, 'cat', and suggested --task classify)
    data = write_csv(tmp_path / "t.csv", ["a", "y"], [(1, "cat"), (2, gap), (3, "dog")])
    out = run_cli("train", "--data", data, "--target", "y", "--out", tmp_path / "m.npz")
    assert out.returncode == 2
    assert f"on line 3: {gap!r} (a missing class label: drop or fill that row)" in out.stderr


def test_a_quoted_number_after_a_space_is_a_number_and_underscores_are_not():
    from pynn import tabular

    assert tabular._number(' "2.5"') == 2.5 and tabular._number('" 3 "') == 3.0
    assert tabular._number("1_000") is None  # text, as pandas reads it (float() took 1000)
    assert tabular._number('"') is None and tabular._number('""') is None
    # other scripts' digits are text too, as pandas reads them (float() took 12)
    assert tabular._number("\u0661\u0662") is None and tabular._number("\u00a012\u00a0") == 12


def test_other_scripts_digits_in_a_feature_are_refused_as_text(tmp_path):
    from pynn import tabular

    data = write_csv(tmp_path / "d.csv", ["a", "y"], [(1, 0), ("\u0661\u0662", 1), (3, 0)])
    with pytest.raises(tabular.UsageError, match=r"column 'a' holds a non-numeric.*line 3"):
        tabular.load_training_data(str(data), "y")


def test_a_target_word_is_missing_only_as_pandas_spells_a_gap(tmp_path):
    """none/mild/severe are three classes (pandas reads "none" as text); "None" is a gap."""
    from pynn import tabular

    rows = [(i, ("none", "mild", "severe")[i % 3]) for i in range(6)]
    data = write_csv(tmp_path / "d.csv", ["a", "severity"], rows)
    _, y, _, _ = tabular.load_training_data(str(data), "severity")
    assert sorted(set(y.tolist())) == ["mild", "none", "severe"]
    data = write_csv(tmp_path / "g.csv", ["a", "severity"], [*rows, (6, "None")])
    with pytest.raises(tabular.UsageError, match="a missing class label"):
        tabular.load_training_data(str(data), "severity")


def test_a_field_beyond_csvs_default_limit_is_read(tmp_path):
    """A free-text column with a field over 131072 characters (csv's default limit) in a
    dropped column: the file was refused as "not a CSV text file"."""
    from pynn import tabular

    note = "x" * 200_000
    rows = [(i % 2, float(i), note if i == 3 else "short") for i in range(8)]
    data = write_csv(tmp_path / "d.csv", ["y", "a", "note"], rows)
    x, y, names, _ = tabular.load_training_data(str(data), "y", drop=["note"])
    assert names == ["a"] and x[:, 0].tolist() == [float(i) for i in range(8)]


def test_output_path_is_checked_before_training(tmp_path, blobs_csv):
    """A directory, a missing folder or an input file as --out: one clear line, exit 2, before
    any training, and the input left intact."""
    path, _ = blobs_csv
    before = open(path).read()
    for out, message in [(tmp_path, "is a directory"),
                         (tmp_path / "no" / "m.npz", "does not exist"),
                         (path, "is the input file")]:
        res = run_cli("train", "--data", path, "--target", "label", "--out", out)
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and "samples" not in res.stdout  # nothing trained
    assert open(path).read() == before
    model = tmp_path / "m.npz"
    assert run_cli("train", "--data", path, "--target", "label", "--epochs", "1", "--out",
                   model, "--quiet").returncode == 0
    saved = model.read_bytes()
    for out, message in [(tmp_path, "is a directory"), (model, "is the input file"),
                         (path, "is the input file")]:
        res = run_cli("predict", "--model", model, "--data", path, "--out", out)
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    assert model.read_bytes() == saved and open(path).read() == before


def test_predict_writes_one_column_per_output(tmp_path, rng):
    """A model saved from Python with several outputs: a well-formed CSV, prediction_0..k-1,
    the same numbers as model.predict; the file is readable like one open() would create."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, activation="softmax")])
    model.save(tmp_path / "multi.npz")
    x = rng.normal(size=(5, 3)).round(3)
    data = write_csv(tmp_path / "x.csv", ["a", "b", "c"], x.tolist())
    out = tmp_path / "pred.csv"
    res = run_cli("predict", "--model", tmp_path / "multi.npz", "--data", data, "--out", out)
    assert res.returncode == 0, res.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "prediction_0,prediction_1,prediction_2,prediction_3"
    got = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    # float32 outputs as float32's shortest text (not 0.6401630640029907 for 0.64016306)
    assert all(str(np.float32(v)) == v for line in lines[1:] for v in line.split(","))
    np.testing.assert_allclose(got, model.predict(x.astype(np.float32)), rtol=1e-6)
    (tmp_path / "by_open").write_text("")
    mode = (tmp_path / "by_open").stat().st_mode & 0o777
    assert out.stat().st_mode & 0o777 == mode  # not the temporary file's 0600
    assert (tmp_path / "multi.npz").stat().st_mode & 0o777 == mode


def test_predict_refuses_a_model_with_multi_axis_samples(tmp_path):
    model = pynn.Sequential([pynn.Input((2, 3)), pynn.Flatten(), pynn.Dense(1)])
    model.save(tmp_path / "m.npz")
    data = write_csv(tmp_path / "x.csv", ["a", "b"], [(1, 2)])
    res = run_cli("predict", "--model", tmp_path / "m.npz", "--data", data)
    assert res.returncode == 2 and "takes samples of shape (2, 3)" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_predict_into_a_pipe_and_a_row_beyond_float32(tmp_path, blobs_csv):
    """--out a FIFO (what /dev/stdout may be; a real device is not used: a failing run as
    root would replace it) gets the CSV written through it, and stays a FIFO."""
    import os
    import threading

    path, _ = blobs_csv
    model = tmp_path / "m.npz"
    assert run_cli("train", "--data", path, "--target", "label", "--epochs", "1", "--out",
                   model, "--quiet").returncode == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo).read()), daemon=True)
    reader.start()
    res = run_cli("predict", "--model", model, "--data", path, "--out", fifo)
    reader.join(timeout=60)
    assert res.returncode == 0, res.stderr
    assert received and received[0].splitlines()[0] == "label" and not fifo.is_file()
    huge = write_csv(tmp_path / "huge.csv", ["f1", "f2"], [(1, 2), ("1e39", 3)])
    res = run_cli("predict", "--model", model, "--data", huge)
    assert res.returncode == 2 and "beyond float32's range" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "RuntimeWarning" not in res.stderr


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_train_into_a_device_writes_no_sidecar_into_dev(blobs_csv):
    """--out /dev/null wrote /dev/null.columns.json (as root; others were refused after
    training): no sidecar beside a device, and the line says what predict then lacks."""
    path, _ = blobs_csv
    sidecar = "/dev/null.columns.json"
    existed = os.path.exists(sidecar)
    try:
        res = run_cli("train", "--data", path, "--target", "label", "--epochs", "1", "--out",
                      "/dev/null")
        assert res.returncode == 0, res.stderr
        assert "not /dev/null.columns.json, beside a device" in res.stdout
        assert os.path.exists(sidecar) == existed
    finally:
        if not existed and os.path.isfile(sidecar):
            os.remove(sidecar)


def test_out_checks_a_pipe_itself_not_its_folder(tmp_path, monkeypatch):
    """A FIFO (or /dev/stdout) in a folder the user cannot write is a fine --out: it is
    written through, not replaced (non-root users were refused for /dev/stdout). The user
    is simulated through os.access (root may write anywhere; switching users needs an
    interpreter every user can run)."""
    import os

    from pynn import tabular

    os.mkfifo(tmp_path / "pipe")
    writable = {str(tmp_path / "pipe")}
    monkeypatch.setattr(os, "access", lambda path, mode: os.fspath(path) in writable)
    tabular.check_output_path(tmp_path / "pipe")
    with pytest.raises(tabular.UsageError, match="is not writable"):
        tabular.check_output_path(tmp_path / "new.csv")
    writable.clear()
    with pytest.raises(tabular.UsageError, match="pipe' is not writable"):
        tabular.check_output_path(tmp_path / "pipe")


@pytest.mark.parametrize("args,message", [
    (["--out", "{tmp}/missing/d.npz"], "does not exist"),
    (["--out", "{tmp}"], "is a directory"),
    (["--out", "{tmp}/newdir/"], "ends in a separator"),  # was refused after training
    (["--backend", "bogus"], "unknown backend 'bogus'"),
])
def test_demo_errors_exit_2_before_training(tmp_path, args, message):
    result = run_cli("demo", "--epochs", 1, *[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "Epoch" not in result.stdout  # refused before any training


def test_demo_epochs_must_be_a_non_negative_integer():
    result = run_cli("demo", "--epochs", -1)
    assert result.returncode == 2 and "an integer >= 0" in result.stderr


def read_csv_rows(text):
    return list(csv.reader(io.StringIO(text)))


def test_train_drop_leaves_columns_out(tmp_path):
    """A Kaggle train.csv's id, df.to_csv()'s named index: neither a feature nor the target
    (the text id would not even parse). predict ignores them: it picks features by name."""
    x, labels = blobs()
    rows = [(f"row-{i}", i, a, b, c) for i, ((a, b), c) in enumerate(zip(x, labels))]
    data = write_csv(tmp_path / "train.csv", ["id", "idx", "f1", "f2", "label"], rows)
    model = tmp_path / "m.npz"
    out = run_cli("train", "--data", data, "--target", "label", "--drop", "id", "--drop",
                  " idx", "--epochs", "1", "--out", model, "--quiet")
    assert out.returncode == 0, out.stderr
    assert "from 2 features, 120 samples" in out.stdout
    meta = json.loads((tmp_path / "m.npz.columns.json").read_text())
    assert meta["features"] == ["f1", "f2"]
    out = run_cli("predict", "--model", model, "--data", data)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 121
    out = run_cli("train", "--data", data, "--target", "label", "--drop", "id,idx,f2",
                  "--epochs", "1", "--out", model, "--quiet")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "m.npz.columns.json").read_text())["features"] == ["f1"]


def test_predict_keeps_rows_of_empty_fields(tmp_path, blobs_model):
    """One output row per input row: empty lines (and blank ones) are no rows, but a row of
    empty fields (pandas' all-NaN row, ",,") is a row with missing values, an error, never
    skipped (the predictions would shift against the input's rows)."""
    data = tmp_path / "x.csv"
    data.write_text("f1,f2\n1,2\n\n   \n3,4\n")
    out = run_cli("predict", "--model", blobs_model, "--data", data)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 3
    data.write_text("f1,f2\n1,2\n,\n3,4\n")
    out = run_cli("predict", "--model", blobs_model, "--data", data)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "column 'f1' holds a non-numeric, missing or infinite value on line 3: ''" in (
        out.stderr)


def test_predict_keep_and_proba(tmp_path, blobs_model):
    """A submission: --keep copies the id column verbatim (quoting kept valid), first;
    --proba writes each class's probability, <target>_<label>, instead of the label."""
    ids = ["a-1", " b,2 ", '"c"']
    data = tmp_path / "test.csv"
    data.write_text('id,f2,f1\na-1,0,0\n" b,2 ",6,6\n"""c""",6,0\n')
    out = run_cli("predict", "--model", blobs_model, "--data", data, "--keep", "id",
                  "--proba")
    assert out.returncode == 0, out.stderr
    header, *rows = read_csv_rows(out.stdout)
    assert header == ["id", "label_3", "label_5", "label_7"]
    assert [r[0] for r in rows] == ids
    probs = np.array([r[1:] for r in rows], dtype=float)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    model = pynn.load_model(blobs_model)
    np.testing.assert_allclose(probs, model.predict(np.array([[0, 0], [6, 6], [0, 6.0]])),
                               rtol=1e-5)
    out = run_cli("predict", "--model", blobs_model, "--data", data, "--keep", "f1,id")
    assert out.returncode == 0, out.stderr
    header, *rows = read_csv_rows(out.stdout)
    assert header == ["f1", "id", "label"] and [r[:2] for r in rows] == [
        ["0", ids[0]], ["6", ids[1]], ["0", ids[2]]]
    assert all(r[2] in ("3", "5", "7") for r in rows)
    out = run_cli("predict", "--model", blobs_model, "--data", data, "--keep", "id,nope")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--keep: " in out.stderr and "has no column(s) ['nope']" in out.stderr


@pytest.mark.parametrize("sidecar", [True, False])
def test_predict_keep_with_positional_features(tmp_path, sidecar):
    """A model trained on an .npz (features by position), or without its JSON file: a kept id
    column is not counted as a feature (it was, and the column count refused every such
    file); one the count needs stays a feature."""
    from pynn import tabular

    rng = np.random.default_rng()
    x = rng.standard_normal((40, 2))
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    model = tmp_path / "m.npz"
    out = run_cli("train", "--data", tmp_path / "d.npz", "--out", model, "--epochs", "1",
                  "--quiet")
    assert out.returncode == 0, out.stderr
    if not sidecar:
        (tmp_path / "m.npz.columns.json").unlink()
    features = [f"{float(a)!r},{float(b)!r}" for a, b in x[:3]]
    plain, with_id = tmp_path / "plain.csv", tmp_path / "with_id.csv"
    plain.write_text("a,b\n" + "".join(f"{row}\n" for row in features))
    with_id.write_text("id,a,b\n" + "".join(f"r{i},{row}\n" for i, row in enumerate(features)))
    lines = []

    def predict(data, keep=()):
        return tabular.predict(str(model), str(data), keep=keep,
                               print_fn=lambda text, end="": lines.append(text))

    expected = predict(plain)
    if not sidecar:  # the model's outputs themselves
        np.testing.assert_allclose(np.ravel(expected), np.ravel(pynn.load_model(model).predict(
            x[:3])), rtol=1e-6)
    assert predict(with_id, keep=["id"]) == expected
    header, *rows = read_csv_rows(lines[-1])
    assert header[0] == "id" and [r[0] for r in rows] == ["r0", "r1", "r2"]
    assert predict(plain, keep=["a"]) == expected  # a feature, and kept
    assert read_csv_rows(lines[-1])[0][0] == "a"


def test_text_class_labels_and_true_false(tmp_path):
    """A text target (cat, dog) is classified, its sorted labels the classes, and predict
    gives the labels back; True/False (pandas' bools) read as 1/0, features and target."""
    x, labels = blobs(["dog", "cat", "bird, small"])
    data = tmp_path / "animals.csv"
    data.write_text("f1,f2,animal\n" + "".join(f'{a},{b},"{c}"\n' for (a, b), c
                                               in zip(x, labels)))
    model = tmp_path / "m.npz"
    out = run_cli("train", "--data", data, "--target", "animal", "--layers", "16", "--epochs",
                  "30", "--out", model, "--seed", "0", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "classify 'animal'" in out.stdout and "3 classes" in out.stdout
    meta = json.loads((tmp_path / "m.npz.columns.json").read_text())
    assert meta["classes"] == ["bird, small", "cat", "dog"]
    out = run_cli("predict", "--model", model, "--data", data)
    assert out.returncode == 0, out.stderr
    header, *rows = read_csv_rows(out.stdout)
    assert header == ["animal"]
    assert np.mean([r[0] == c for r, c in zip(rows, labels)]) > 0.95
    # Numbers among the text: labels only when --task says so
    mixed = write_csv(tmp_path / "mixed.csv", ["a", "b"], [(1, 0), (2, "x"), (3, "x")])
    out = run_cli("train", "--data", mixed, "--target", "b", "--task", "classify",
                  "--epochs", "1", "--out", model, "--quiet")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "m.npz.columns.json").read_text())["classes"] == ["0", "x"]

    flags = write_csv(tmp_path / "flags.csv", ["f1", "flag", "survived"],
                      [(1, "True", "False"), (2, "false", "TRUE"), (3, "TRUE", "true"),
                       (4, "False", "False")])
    out = run_cli("train", "--data", flags, "--target", "survived", "--epochs", "1", "--out",
                  model, "--quiet")
    assert out.returncode == 0, out.stderr
    meta = json.loads((tmp_path / "m.npz.columns.json").read_text())
    assert meta["features"] == ["f1", "flag"] and meta["classes"] == [0, 1]
    out = run_cli("predict", "--model", model, "--data", flags)
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()[1:]) <= {"0", "1"}


def test_predict_refuses_another_models_sidecar(tmp_path, blobs_csv):
    """train renames the model into place, then writes the sidecar: should that fail (a full
    disk), the new model sat next to the old sidecar and predict mapped its outputs to the
    old class labels. The sidecar keeps the model file's SHA-256; one from older versions,
    without it, is still read."""
    path, _ = blobs_csv
    model, sidecar = tmp_path / "m.npz", tmp_path / "m.npz.columns.json"
    train = ["train", "--data", path, "--target", "label", "--epochs", "1", "--out", model,
             "--quiet"]
    assert run_cli(*train, "--layers", "8").returncode == 0
    old = sidecar.read_text()
    assert run_cli(*train, "--layers", "4").returncode == 0
    sidecar.write_text(old)  # as if writing the new one had failed
    out = run_cli("predict", "--model", model, "--data", path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{str(sidecar)!r} belongs to another model" in out.stderr
    meta = json.loads(old)
    del meta["model_sha256"]
    sidecar.write_text(json.dumps(meta))
    out = run_cli("predict", "--model", model, "--data", path)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("content, message", [
    ([1, 2], "must hold a JSON object, as `pynn train` writes, not a list"),
    pytest.param("features", "must hold a JSON object, as `pynn train` writes, not a str",
                 id="a_string"),
    ({"classes": [3, 5]}, "'classes' must be a list of 3 class labels"),
    ({"classes": {"3": 0, "5": 1, "7": 2}}, "'classes' must be a list of 3 class labels"),
    ({"classes": None}, "'classes' must be a list of 3 class labels"),
    ({"classes": [3, True, None]}, "'classes' must be a list of 3 class labels"),
    ({"features": 5}, "'features' must be a list of the 2 feature column names"),
    ({"features": "ab"}, "'features' must be a list of the 2 feature column names"),
    ({"features": ["f1", "f2", "f3"]}, "'features' must be a list of the 2 feature column"),
    ({"offsets": [{}, {}]}, "'offsets' must be 2 finite numbers, one per feature"),
    ({"offsets": [10**400, 0]}, "'offsets' must be 2 finite numbers, one per feature"),
    ({"target": 5}, "'target' must be the target column's name"),
    ({"target_offset": 3.0}, "'target_offset' must be a finite number, for a regression"),
    ({"task": "cluster"}, "'task' must be 'classify' or 'regress'"),
    ({"model_sha256": 5}, "'model_sha256' must be the model file's SHA-256"),
    ({"model_sha256": "0" * 64}, "belongs to another model"),
    pytest.param(b'{"target": "\xff"}', "is not a readable JSON file", id="not_utf8"),
    pytest.param(b"[" * 100_000, "is not a readable JSON file", id="deep_nesting"),
])
def test_predict_checks_the_sidecar(tmp_path, content, message):
    """The sidecar may be edited, damaged or another model's: each field is checked, and a
    problem is a UsageError naming the file and the field, not an AttributeError, IndexError,
    KeyError, TypeError, UnicodeDecodeError or RecursionError (nor, for features "ab", the
    columns ['a', 'b'])."""
    from pynn import tabular

    model = tmp_path / "m.npz"
    pynn.Sequential([pynn.Input((2,)), pynn.Dense(3, activation="softmax")]).save(model)
    data = write_csv(tmp_path / "x.csv", ["f1", "f2", "a", "b"], [(0, 1, 2, 3)])
    sidecar = tmp_path / "m.npz.columns.json"
    good = {"features": ["f1", "f2"], "target": "label", "task": "classify",
            "classes": [3, 5, 7], "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest()}
    sidecar.write_text(json.dumps(good))
    assert tabular.predict(str(model), str(data), print_fn=lambda *a, **k: None)[0] in (3, 5, 7)
    if isinstance(content, bytes):
        sidecar.write_bytes(content)
    else:  # a dict: fields changed in the good sidecar
        sidecar.write_text(json.dumps({**good, **content} if isinstance(content, dict)
                                      else content))
    with pytest.raises(tabular.UsageError) as info:
        tabular.predict(str(model), str(data), print_fn=lambda *a, **k: None)
    assert repr(str(sidecar)) in str(info.value) and message in str(info.value)


@pytest.mark.parametrize("command", ["info", "predict"])
def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path, command):
    """`pynn info | head` ended in a BrokenPipeError traceback."""
    args = ["info"]
    if command == "predict":
        data = write_csv(tmp_path / "d.csv", ["a", "b"], [(i, i % 2) for i in range(50)])
        assert run_cli("train", "--data", data, "--target", "b", "--epochs", "1", "--out",
                       tmp_path / "m.npz", "--quiet").returncode == 0
        args = ["predict", "--model", str(tmp_path / "m.npz"), "--data", str(data)]
    code = ("import os, sys\n"
            "r, w = os.pipe(); os.close(r); os.dup2(w, 1)  # a pipe nobody reads\n"
            "from pynn.cli import main\n"
            f"sys.exit(main({args!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and out.stderr == "", out.stderr


def test_main_called_in_process_leaves_standard_output_alone():
    """main() pointed the caller's fd 1 at /dev/null for good after a broken pipe; only the
    program itself (argv=None) does that, for its exit."""
    code = ("import os, sys\n"
            "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
            "from pynn.cli import main\n"
            "rc = main(['info'])\n"
            "print(rc, os.readlink('/proc/self/fd/1').startswith('pipe:'), file=sys.stderr)\n"
            "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stderr.split() == ["1", "True"], out.stderr


def test_files_the_cli_refuses(tmp_path):
    from pynn import tabular

    path = write_csv(tmp_path / "a.csv", ["a", "b"], [(1, 2), ("nan", 3)])
    with pytest.raises(tabular.UsageError):  # a missing value is named, not read as NaN
        tabular.read_csv(str(path))
    npz = tmp_path / "a.npz"
    np.savez(npz, x=np.ones((4, 2)), y=np.arange(4.0))
    with pytest.raises(tabular.UsageError, match="label"):  # not silently 'y'
        tabular.load_training_data(str(npz), "label")
    out = run_cli("train", "--data", "x.csv", "--target", "t", "--epochs", "ten")
    assert out.returncode == 2 and "--epochs: expected an integer >= 0, got 'ten'" in out.stderr


def test_a_sidecar_names_its_model_by_hash_in_either_case(tmp_path):
    from pynn import tabular

    path = write_csv(tmp_path / "a.csv", ["a", "t"], [(i, i % 2) for i in range(10)])
    model = tmp_path / "m.npz"
    out = run_cli("train", "--data", path, "--target", "t", "--layers", "4", "--epochs", "1",
                  "--out", model, "--seed", "0", "--quiet")
    assert out.returncode == 0, out.stderr
    sidecar = tabular.sidecar_path(str(model))
    meta = json.load(open(sidecar))
    digest = meta["model_sha256"]
    meta["model_sha256"] = digest.upper()  # hex digits in upper case: the same hash
    json.dump(meta, open(sidecar, "w"))
    out = run_cli("predict", "--model", model, "--data", path)
    assert out.returncode == 0, out.stderr
    meta["model_sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    json.dump(meta, open(sidecar, "w"))
    out = run_cli("predict", "--model", model, "--data", path)
    assert out.returncode == 2 and "another model" in out.stderr


def test_a_constant_regression_target_trains(tmp_path):
    from pynn import tabular

    path = write_csv(tmp_path / "a.csv", ["a", "t"], [(i, 5) for i in range(10)])
    model = tmp_path / "m.npz"
    tabular.train(str(path), "t", [4], 2, str(model), task="regress", verbose=0, seed=0,
                  print_fn=lambda *args, **kwargs: None)
    assert pynn.load_model(model).predict(np.arange(3.0).reshape(-1, 1)).shape == (3, 1)


def test_predict_keeps_a_float64_models_precision(tmp_path, rng):
    """A model saved in a float64 session was loaded in float32 by `pynn predict` (its
    outputs 1e-7 off, a warning the command line could not act on)."""
    from pynn import tabular

    previous = pynn.floatx()
    pynn.set_floatx("float64")
    try:
        model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(4, activation="tanh"),
                                 pynn.Dense(1)])
        model.save(tmp_path / "m.npz")
        x = rng.normal(size=(5, 2))
        want = model.predict(x)[:, 0]
    finally:
        pynn.set_floatx(previous)
    data = tmp_path / "x.csv"
    data.write_text("a,b\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in x))
    got = tabular.predict(str(tmp_path / "m.npz"), str(data),
                          print_fn=lambda text, end="": None)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert pynn.floatx() == previous  # the session's own afterwards


def test_nan_outputs_diverged_runs_and_tiny_features_are_refused(tmp_path, blobs_csv, blobs_model):
    """predict gave a row whose outputs were NaN the first class label (exit 0); train saved
    a diverged model (exit 0); features varying by 1e-40 gave a model of infinite weights
    (its first layer takes raw values, scaled by 1 / spread) reporting 100% accuracy."""
    model = pynn.load_model(blobs_model)
    kernel, bias = model.layers[1].get_weights()
    kernel[0, :] = 3e38  # inputs overflow float32 in its first layer (f1 = 10: inf)
    model.layers[1].set_weights([kernel, bias])
    model.save(tmp_path / "nan.npz")
    data = write_csv(tmp_path / "rows.csv", ["f1", "f2"], [(0.0, 1.0), (10.0, 2.0)])
    out = run_cli("predict", "--model", tmp_path / "nan.npz", "--data", data)
    assert out.returncode == 2, out.stdout
    assert "outputs for 1 row(s) (data rows 2) are NaN or infinite" in out.stderr
    path, _ = blobs_csv
    out = run_cli("train", "--data", path, "--target", "label", "--epochs", "3",
                  "--learning-rate", "1e30", "--out", tmp_path / "x.npz", "--quiet")
    assert out.returncode == 2 and "training diverged" in out.stderr, out.stderr
    assert not (tmp_path / "x.npz").exists()
    rng = np.random.default_rng()
    rows = [(a * 1e-40, b, int(b > 0)) for a, b in rng.normal(size=(60, 2))]
    tiny = write_csv(tmp_path / "tiny.csv", ["a", "b", "y"], rows)
    out = run_cli("train", "--data", tiny, "--target", "y", "--epochs", "1", "--out",
                  tmp_path / "t.npz", "--quiet")
    assert out.returncode == 2 and "feature(s) ['a'] vary by less than 1e-30" in out.stderr
    assert "Traceback" not in out.stderr


def test_ctrl_c_and_a_full_disk_are_one_line(tmp_path, monkeypatch, capsys):
    """Ctrl-C during train printed fit's 27-line traceback; `pynn info > /dev/full` a
    traceback where the other commands print one line and exit 2."""
    from pynn import cli, tabular

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("fit: interrupted after 3 steps")

    monkeypatch.setattr(tabular, "train", interrupted)
    assert cli.main(["train", "--data", "d.csv", "--target", "y", "--out",
                     str(tmp_path / "m.npz")]) == 130
    assert capsys.readouterr().err == "pynn train: interrupted\n"
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            out = subprocess.run([sys.executable, "-m", "pynn", "info"], stdout=full,
                                 stderr=subprocess.PIPE, text=True, timeout=120)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith("pynn info: error:")


def test_train_refuses_an_out_name_of_another_kind_of_file(tmp_path, blobs_csv):
    path, _ = blobs_csv
    for name in ("m.onnx", "m.weights.h5"):
        out = run_cli("train", "--data", path, "--target", "label", "--epochs", "1", "--out",
                      tmp_path / name, "--quiet")
        assert out.returncode == 2 and out.stderr.startswith("pynn train: error: --out "), \
            out.stderr
        assert not (tmp_path / name).exists()


@pytest.mark.skipif(not os.path.exists("/dev/stdout"), reason="needs /dev/stdout")
def test_predict_to_dev_stdout_writes_the_csv_alone(tmp_path, blobs_csv, blobs_model):
    path, _ = blobs_csv
    out = run_cli("predict", "--model", blobs_model, "--data", path, "--out", "/dev/stdout")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "label" and len(lines) == 121 and "wrote" not in out.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_a_pipe_as_input_is_named_not_missing(tmp_path):
    """`--data <(cat data.csv)` and a FIFO were "no such file" (they exist; pynn reads its
    inputs more than once)."""
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    for args in (["train", "--data", fifo, "--target", "y", "--out", tmp_path / "m.npz"],
                 ["predict", "--model", fifo, "--data", fifo]):
        out = run_cli(*args)
        assert out.returncode == 2 and "is not a regular file (a pipe or device?)" in \
            out.stderr, out.stderr
