"""`pynn train|predict|bench` through a real subprocess: outputs, files, help and exit codes."""

from __future__ import annotations

import json
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


@pytest.fixture
def blobs_csv(tmp_path):
    """Three well-separated classes, labelled 3/5/7, plus a target column last."""
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [6, 6], [0, 6]])
    labels = np.repeat([3, 5, 7], 40)
    x = centers[np.repeat([0, 1, 2], 40)] + rng.normal(scale=0.5, size=(120, 2))
    rows = [(a, b, c) for (a, b), c in zip(x.round(4), labels)]
    return write_csv(tmp_path / "blobs.csv", ["f1", "f2", "label"], rows), labels


def test_train_then_predict_classification(tmp_path, blobs_csv):
    path, labels = blobs_csv
    model = tmp_path / "model.npz"
    out = run_cli("train", "--data", path, "--target", "label", "--layers", "16",
                  "--epochs", "30", "--out", model, "--seed", "0", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "classify 'label'" in out.stdout and "3 classes" in out.stdout
    meta = json.loads((tmp_path / "model.npz.columns.json").read_text())
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


def test_task_option_overrides_the_guess(tmp_path, blobs_csv):
    path, _ = blobs_csv
    out = run_cli("train", "--data", path, "--target", "label", "--task", "regress",
                  "--epochs", "1", "--out", tmp_path / "m.npz", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "regress 'label'" in out.stdout
    assert pynn.load_model(tmp_path / "m.npz").output_shape == (1,)


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


@pytest.mark.parametrize("case, message", [
    ("missing_file", "no such file"),
    ("missing_target", "has no column 'nope'"),
    ("non_numeric", "column 'b' holds a non-numeric, missing or infinite value on line 3"),
    ("infinite_rate", "--learning-rate must be a finite number > 0"),
    ("no_target_arg", "--target COLUMN is required"),
    ("npz_without_y", "must hold arrays 'x' and 'y'"),
    # float32's range: the column's spread overflowed and its weights were silently 0
    ("beyond_float32", "holds 1 value(s) beyond float32's range"),
    ("npz_beyond_float32", "holds 1 value(s) beyond float32's range"),
    ("unnamed_column", "column(s) [3] have no name in the header row (a trailing comma"),
])
def test_train_errors_exit_2_without_traceback(tmp_path, case, message):
    good = write_csv(tmp_path / "good.csv", ["a", "b"], [(1, 0), (2, 1)])
    bad = write_csv(tmp_path / "bad.csv", ["a", "b"], [(1, 0), (2, "x")])
    np.savez(tmp_path / "xonly.npz", x=np.zeros((4, 2)))
    huge = write_csv(tmp_path / "huge.csv", ["a", "b", "c"], [(1, 1e300, 0), (2, 3, 1)])
    np.savez(tmp_path / "huge.npz", x=[[1.0], [-1e39]], y=[0.0, 1.0])
    trailing = write_csv(tmp_path / "trailing.csv", ["a", "b", ""], [(1, 0, ""), (2, 1, "")])
    args = {"missing_file": ["--data", tmp_path / "none.csv", "--target", "b"],
            "missing_target": ["--data", good, "--target", "nope"],
            "non_numeric": ["--data", bad, "--target", "b"],
            "no_target_arg": ["--data", good],
            "npz_without_y": ["--data", tmp_path / "xonly.npz"],
            "beyond_float32": ["--data", huge, "--target", "c"],
            "npz_beyond_float32": ["--data", tmp_path / "huge.npz"],
            "unnamed_column": ["--data", trailing, "--target", "b"],
            "infinite_rate": ["--data", good, "--target", "b", "--learning-rate", "inf"]}[case]
    out = run_cli("train", *args, "--out", tmp_path / "m.npz")
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
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


def test_bench_prints_rates():
    out = run_cli("bench")
    assert out.returncode == 0, out.stderr
    assert "GFLOP/s" in out.stdout and "samples/s" in out.stdout


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
