"""The command line: `python -m pynn info|demo|train|predict|bench` (also installed as `pynn`).

Problems with the user's inputs (a missing file or column, non-numeric data) print one line,
`pynn <command>: error: ...`, and exit with code 2, as argparse does for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import optimizers

_PREDICT_HELP = """\
Predictions for the rows of a CSV file (with a header row). `pynn train` writes
<model>.columns.json next to the model; with it, the feature columns are picked from the CSV by
name (other columns, the target included, are ignored) and classes come back as their labels.
For a model trained on an .npz (its features have no names) the CSV's columns are the features
by position, a column named like the target dropped; without the JSON file every column is a
feature, by position. Output is a CSV with one column named after the target ('prediction'
without the JSON file; prediction_0, prediction_1, ... for a model with several outputs), one
row per input row (a row with a missing feature value is an error, not skipped). --keep id
copies input columns verbatim as the first output columns (a submission's id); --proba gives
a classifier's probabilities instead of the label, one column <target>_<label> per class.
The JSON file holds the model file's SHA-256: one left from another model is refused."""

_TRAIN_HELP = """\
Train an MLP on tabular data and save it with model.save (pynn.load_model reads it).
Data: a CSV with a header row (--target names the target column, --drop COL,... columns to
leave out, such as an ID or pandas' index; every other column is a feature and must be
numeric, True/False counting as 1/0) or an .npz holding arrays 'x' and 'y' (or 'x' and
--target). The task is classification when the target holds text labels (cat, dog: sorted,
they are the classes) or integer values with at most 20 distinct values, else regression,
unless --task says. Features (and regression targets) are standardised for training and the
scaling is folded into the first (and last) layer, so the saved model takes and gives raw
values, except columns far from zero for their spread (timestamps, IDs), which float32 would
round: the model takes those minus offsets (and gives a regression target far from zero
minus its offset). Also writes <out>.columns.json (feature names, target, task, class
labels, offsets, the model file's SHA-256) for `pynn predict`, which subtracts the offsets
(and adds the target's) in float64."""


def _layers(text):
    try:
        units = [int(u) for u in text.split(",") if u.strip()]
    except ValueError:
        units = None
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 64,64, got {text!r}")
    return units


def _int_at_least(minimum, expected):
    """An argparse type: an integer >= minimum, else an error naming what was `expected`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


def _columns(text):
    """An argparse type: comma-separated column names (spaces around each dropped)."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected column names like id,date, got {text!r}")
    return names


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "an integer >= 0")


def main(argv=None) -> int:
    """The `pynn` command (`python -m pynn`): argv without the program name (default
    sys.argv[1:]); returns the exit code (0, or 2 for a problem with the user's inputs).
    Standard output into a pipe whose reader left (`pynn info | head`) ends the command
    quietly with code 1."""
    real = sys.stdout
    sys.stdout = _Stdout(real)
    try:
        code = _run(argv)
        sys.stdout.flush()
        return code
    except _StdoutGone:
        if argv is None:  # the program itself: its exit's flush of stdout would fail too
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, real.fileno())
        return 1
    finally:
        sys.stdout = real


class _StdoutGone(Exception):
    """Standard output's reader left (not an OSError: the commands report those)."""


class _Stdout:
    """sys.stdout, its broken pipe told apart from other files' (a FIFO given as --out)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise _StdoutGone from None

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise _StdoutGone from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _run(argv):
    parser = argparse.ArgumentParser(prog="pynn", description="pynn neural networks")
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="version, backends, CPU ISA, threads, GPU")
    p_info.add_argument("--json", action="store_true", help="print as JSON")
    p_demo = sub.add_parser("demo", help="train an MLP on scikit-learn's digits, save, reload")
    p_demo.add_argument("--epochs", type=_non_negative, default=40, help="default 40")
    p_demo.add_argument("--backend", default=None, help="cpu, numpy, cuda or cupy")
    p_demo.add_argument("--out", default="pynn_digits.npz", help="where to save the weights")
    p_demo.add_argument("--seed", type=_non_negative, default=0)
    p_train = sub.add_parser("train", help="train an MLP on a CSV or .npz file and save it",
                             description=_TRAIN_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    p_train.add_argument("--data", required=True, help="training data: file.csv or file.npz")
    p_train.add_argument("--target", default=None,
                         help="the target column (CSV, required) or array (.npz; default 'y')")
    p_train.add_argument("--drop", type=_columns, action="extend", default=[],
                         metavar="COL[,COL...]",
                         help="CSV columns that are neither features nor the target (an ID)")
    p_train.add_argument("--layers", type=_layers, default=[64, 64],
                         help="hidden layer sizes, comma-separated (default 64,64)")
    p_train.add_argument("--epochs", type=_non_negative, default=20, help="default 20")
    p_train.add_argument("--out", default="model.npz", help="model file (default model.npz)")
    p_train.add_argument("--task", choices=["auto", "classify", "regress"], default="auto",
                         help="default auto: classify text labels, or integer targets with few "
                              "values")
    p_train.add_argument("--batch-size", type=_positive, default=32, help="default 32")
    p_train.add_argument("--optimizer", type=str.lower, choices=optimizers.NAMES, default="adam",
                         help="default adam")
    p_train.add_argument("--learning-rate", type=float, default=None,
                         help="default: the optimizer's (Keras'), 0.001 for adam")
    p_train.add_argument("--seed", type=_non_negative, default=None,
                         help="seed for reproducible training")
    p_train.add_argument("--quiet", action="store_true", help="no progress bar")
    p_predict = sub.add_parser("predict", help="predict the rows of a CSV file with a model",
                               description=_PREDICT_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    p_predict.add_argument("--model", required=True, help="a model file from `pynn train`")
    p_predict.add_argument("--data", required=True, help="a CSV file with a header row")
    p_predict.add_argument("--out", default=None, help="CSV to write (default: stdout)")
    p_predict.add_argument("--keep", type=_columns, action="extend", default=[],
                           metavar="COL[,COL...]",
                           help="input columns to copy as the first output columns (an ID)")
    p_predict.add_argument("--proba", action="store_true",
                           help="classifiers: one probability column per class, not the label")
    sub.add_parser("bench", help="a quick timing: one GEMM and one training epoch (seconds)",
                   description="Times a 512x512x512 float32 GEMM and one epoch of an MLP "
                               "on 50,000 synthetic tabular samples; prints GFLOP/s and "
                               "samples/s. Takes a few seconds.")
    args = parser.parse_args(argv)
    from . import backend, tabular

    try:
        if args.command == "info":
            from .info import format_info, info

            print(json.dumps(info(), indent=2, default=str) if args.json else format_info())
            sys.stdout.flush()  # (a full disk is said here, as for the other commands)
            return 0
        if args.command != "demo" or args.backend is None:
            try:  # PYNN_BACKEND may name one that cannot run here: one line, not a traceback
                backend.get_backend()
            except (ValueError, RuntimeError) as exc:
                raise tabular.UsageError(str(exc)) from None
        if args.command == "demo":
            from .demo import run_demo

            tabular.check_output_path(args.out)  # before training, as `train` does
            if args.backend is not None:
                try:
                    backend.get_backend(args.backend)
                except (ValueError, RuntimeError) as exc:  # unknown, or no GPU / CuPy here
                    raise tabular.UsageError(f"--backend: {exc}") from None
            return run_demo(epochs=args.epochs, backend=args.backend, out=args.out,
                            seed=args.seed)
        if args.command == "train":
            if args.learning_rate is not None and not \
                    0 < args.learning_rate <= optimizers.FLOAT32_MAX:  # (float32 weights)
                raise tabular.UsageError(f"--learning-rate must be a number > 0 and at most "
                                         f"{optimizers.FLOAT32_MAX:.4g}, got "
                                         f"{args.learning_rate}")
            tabular.train(args.data, args.target, args.layers, args.epochs, args.out,
                          task=args.task, batch_size=args.batch_size, seed=args.seed,
                          learning_rate=args.learning_rate, verbose=0 if args.quiet else 1,
                          drop=args.drop, optimizer=args.optimizer)
        elif args.command == "predict":
            tabular.predict(args.model, args.data, args.out, keep=args.keep,
                            proba=args.proba)
        elif args.command == "bench":
            tabular.bench()
    except (tabular.UsageError, OSError) as exc:  # a missing file, a full disk, no permission
        print(f"pynn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # one line, not fit's traceback (nothing was saved)
        print(f"pynn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
