"""Callbacks with Keras' hook names, and History (what `fit` returns).

`fit` calls, in order: on_train_begin, then per epoch on_epoch_begin, per batch
on_train_batch_begin/on_train_batch_end, then on_epoch_end(epoch, logs) with the epoch's mean
loss, metrics and validation values, and finally on_train_end. A callback may set
`self.model.stop_training = True` to stop after the current batch (from a batch hook) or
epoch (from on_epoch_end). As in Keras, fit's validation calls on_test_begin, the test
batch hooks and on_test_end; evaluate(callbacks=) calls the test hooks, predict(callbacks=)
the predict hooks; a test or predict batch hook may set `self.model.stop_evaluating` or
`stop_predicting` (Keras 3). Batch hooks get `logs=` by keyword, as Keras passes it (a hook
whose parameter has another name gets it positionally). With data given batch by batch
(a generator, a DataLoader), on_epoch_begin runs before the epoch's data is read (a
sampler's set_epoch takes effect); an epoch that then finds the data run out is not logged
(no on_epoch_end; Keras logs it with the last epoch's values) and training stops with a
warning.

Training callbacks (EarlyStopping, ModelCheckpoint, BackupAndRestore, LearningRateScheduler,
ReduceLROnPlateau, CSVLogger) follow Keras 3's names, arguments and semantics; differences
are noted per class.
A monitored key missing from the logs gives a warning naming the keys there are, as in Keras.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import inspect
import math
import numbers
import os
import warnings
import weakref

import numpy as np


class Callback:
    """Base class of callbacks: override the Keras-named hooks you need; `self.model` is the
    model being trained, `self.params` {'epochs', 'steps', 'verbose', 'engine', 'validation'}
    of the fit call ({'epochs': 1, 'steps', 'verbose'} in evaluate and predict).

    `logs` is a dict: at an epoch's end the epoch's loss and metrics (and val_ ones); at a
    batch's end, as in Keras, the epoch's values so far (the loss a running mean, each metric
    over the samples of its batches up to this one), not that batch's alone, except AUC's:
    the batch's own, since its exact value so far would cost a sort of everything seen after
    every batch. `epoch` and `batch` count from 0. A callback that defines its own batch
    hooks makes the native engine return to Python after every batch (slower on small
    models). As in Keras, fit's validation calls the test hooks, and so do
    `evaluate(callbacks=...)` and `predict(callbacks=...)` their test and predict hooks."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        """Called by fit before training: the model the hooks act on."""
        self.model = model

    def set_params(self, params):
        """Called by fit before training ({'epochs', 'steps', 'verbose', 'engine',
        'validation'}), and by evaluate and predict ({'epochs': 1, 'steps', 'verbose'})."""
        self.params = params

    def on_train_begin(self, logs=None):
        """Before the first epoch."""

    def on_train_end(self, logs=None):
        """After the last epoch (also when training stopped early); logs: the last epoch's."""

    def on_epoch_begin(self, epoch, logs=None):
        """Before each epoch."""

    def on_epoch_end(self, epoch, logs=None):
        """After each epoch (and its validation): logs holds its loss, metrics, val_ ones."""

    # Keras' older batch hook names: the train-batch hooks call them, so a callback written
    # for either name runs.
    def on_batch_begin(self, batch, logs=None):
        """Keras' older name of on_train_batch_begin (which calls it)."""

    def on_batch_end(self, batch, logs=None):
        """Keras' older name of on_train_batch_end (which calls it)."""

    def on_train_batch_begin(self, batch, logs=None):
        """Before each training batch."""
        call_batch_hook(self.on_batch_begin, batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        """After each training batch: logs holds the epoch's loss and metrics so far (over
        its batches up to this one, as in Keras), not this batch's alone; AUC's is this
        batch's own."""
        call_batch_hook(self.on_batch_end, batch, logs)

    def on_test_begin(self, logs=None):
        """Before fit's validation, and before evaluate(callbacks=[...])."""

    def on_test_end(self, logs=None):
        """After fit's validation or an evaluate: logs holds its loss and metrics."""

    def on_test_batch_begin(self, batch, logs=None):
        """Before each validation or evaluate batch."""

    def on_test_batch_end(self, batch, logs=None):
        """After each validation or evaluate batch: logs holds the loss and metrics so far
        (as on_train_batch_end's; AUC's is this batch's own)."""

    def on_predict_begin(self, logs=None):
        """Before predict(callbacks=[...])."""

    def on_predict_end(self, logs=None):
        """After predict(callbacks=[...])."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Before each predict batch (predict then runs batch by batch)."""

    def on_predict_batch_end(self, batch, logs=None):
        """After each predict batch: logs {'outputs': that batch's outputs}."""


class History(Callback):
    """history.history: {'loss': [per epoch], 'val_loss': [...], metric names...}."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []
        self._key_epochs = {}  # key -> the epochs its values belong to (validation_freq)
        self._shift = None  # added to this fit's epochs in _key_epochs (None: not yet known)
        self._last = -1  # the last epoch recorded there

    def on_train_begin(self, logs=None):
        # As Keras 3: a History given to several fits keeps every fit's values (one curve
        # over all of them); only the epoch list starts again.
        self.epoch = []
        self._shift = None

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        if getattr(self, "_shift", None) is None:  # a later fit counting from 0 again plots
            # after the earlier ones; one resumed with initial_epoch where it left off
            self._shift = max(0, getattr(self, "_last", -1) + 1 - epoch)
        self._last = epoch + self._shift
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
            self._key_epochs.setdefault(k, []).append(self._last)
        if getattr(self, "model", None) is not None:  # (Keras 3: so after a fit run from a
            # callback, model.history is the outer one)
            self.model.history = self

    def _epochs_of(self, key):
        epochs = getattr(self, "_key_epochs", {}).get(key)  # a History filled by hand has none
        if epochs is None or len(epochs) != len(self.history[key]):
            epochs = self.epoch[-len(self.history[key]):]
        return epochs

    def __repr__(self):
        return f"<History epochs={len(self.epoch)} keys={list(self.history)}>"

    def plot(self, path=None):
        """One panel per quantity (loss first, then each metric), training and validation
        curves together; saves it to `path` when given, in the format its suffix names (.svg,
        .pdf, ...; PNG for any other name). Returns the matplotlib Figure.

        Builds a bare Figure (no pyplot): works without a display and leaves no global state;
        Jupyter still shows the returned figure."""
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib "
                              "(or pip install 'pynn[plot]')") from None
        if not self.history:
            raise ValueError("History.plot: nothing to plot; the history is empty (did fit run "
                             "for at least one epoch?)")
        bases = []
        for key in self.history:
            base = key[4:] if key.startswith("val_") else key
            if base not in bases:
                bases.append(base)
        if "loss" in bases:
            bases.insert(0, bases.pop(bases.index("loss")))
        cols = min(3, len(bases))  # rows of three panels keep many metrics readable
        rows = -(-len(bases) // cols)
        fig = Figure(figsize=(5 * cols, 3.6 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes[len(bases):]:
            ax.remove()
        for ax, base in zip(axes, bases):
            for key, label in ((base, "train"), (f"val_{base}", "validation")):
                values = self.history.get(key)
                if values is not None:
                    epochs = [e + 1 for e in self._epochs_of(key)]
                    ax.plot(epochs, values, marker="o" if len(values) < 30 else None,
                            label=label)
            ax.set_title(base)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
        if path is not None:
            # A suffix matplotlib knows names the format (.png, .svg, .pdf, ...); any other
            # name ("curve", "run_lr0.01") is a PNG written to exactly that path.
            path = os.fsdecode(path)
            suffix = os.path.splitext(path)[1][1:].lower()
            known = suffix in fig.canvas.get_supported_filetypes()
            fig.savefig(path, format=suffix if known else "png", dpi=100)
        return fig


class TerminateOnNaN(Callback):
    """Stops training as soon as a batch loss is NaN or infinite, or beyond the model's float
    type's range (a float32 model's loss of 1e45, summed in float64 here, is Keras' inf; the
    next step would leave its weights infinite). It only reads the batches'
    logs, so the CPU's native engine keeps running chunks of batches, and stops its chunk
    after the batch whose loss went bad (the CUDA engine, which hands its chunk's losses
    back at its end, runs a batch a chunk for it): training stops after the same batch on
    every engine.
    raise_error=True (Keras 3's): a RuntimeError instead, out of fit, with no on_train_end
    (a backup or checkpoint callback's state is left as it was)."""

    reads_batch_logs_only = True  # fit may hand it a chunk's batches after the chunk ran

    def __init__(self, raise_error=False):
        super().__init__()
        if not isinstance(raise_error, (bool, np.bool_, numbers.Integral)) or \
                raise_error not in (0, 1):
            raise TypeError(f"TerminateOnNaN: raise_error must be True or False, got "
                            f"{raise_error!r}")
        self.raise_error = bool(raise_error)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not abs(loss) <= self._largest() and \
                not self.model.stop_training:
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss "
                                   f"value: {loss}. Terminating training immediately.")
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True

    def _largest(self):
        """The largest finite loss of the model's float type (NaN compares false to it)."""
        from . import config

        return float(np.finfo(getattr(self.model, "_dtype", None) or config.floatx()).max)


class LambdaCallback(Callback):
    """A callback from plain functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...)."""

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise ValueError(f"LambdaCallback: unknown hook {name!r}")
            if fn is None:  # Keras' default for each hook: none
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be a function or None, got "
                                f"{fn!r}")
            setattr(self, name, fn)


# ---- monitoring helpers --------------------------------------------------------------------
_HIGHER_IS_BETTER = ("acc", "accuracy", "auc", "roc_auc", "precision", "recall", "f1",
                     "f1_score", "r2", "r2_score")


def _check_mode(owner, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode


_LOWER_IS_BETTER = ("mse", "mae", "rmse", "mape", "msle")


def _check_monitor(owner, monitor):
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"{owner}: monitor must be the name of a logged value ('val_loss', "
                        f"'accuracy', ...), got {monitor!r}")
    return monitor


def _higher_is_better(monitor, mode, model=None):
    """The direction of `monitor`: mode 'max'/'min', or for 'auto' (as Keras 3) the
    compiled metric of that name's own direction, else the name: accuracy, AUC, precision,
    recall, F1 and R² are maximised, losses and errors minimised; None when it cannot tell."""
    if mode != "auto":
        return mode == "max"
    name = monitor[4:] if monitor.startswith("val_") else monitor
    for metric in getattr(model, "_metric_objects", None) or ():
        direction = getattr(metric, "direction", None) or getattr(metric, "_direction", None)
        if getattr(metric, "name", None) == name and direction in ("up", "down"):
            return direction == "up"
    if name in _HIGHER_IS_BETTER or name.endswith("accuracy"):
        return True
    if name in _LOWER_IS_BETTER or name.endswith(("loss", "error", "crossentropy")):
        return False
    return None


def _check_count(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}: {name} must be an integer >= 0, got {value!r}")
    return int(value)


def _check_number(owner, name, value, low=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{owner}: {name} must be >= {low}, got {value}")
    return float(value)


def _user_stacklevel():
    """warnings.warn's stacklevel, from the function calling this one, of the first frame
    outside pynn: a callback's warning points at the user's fit() call, not at pynn."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = inspect.currentframe().f_back, 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _monitored(owner, monitor, logs):
    """logs[monitor] as a float, or None with a warning naming the keys the logs do have."""
    value = (logs or {}).get(monitor)
    if value is None:
        alike = [k for k in (logs or {}) if isinstance(monitor, str) and k.lower() ==
                 monitor.lower()]
        hint = (f" (did you mean {alike[0]!r}? a metric given as a string is logged under "
                f"that string, as in Keras 3)" if alike else "")
        warnings.warn(f"{owner} is conditioned on {monitor!r}, which is not in the logs{hint}; "
                      f"available keys: {', '.join(sorted(logs or {})) or '(none)'}",
                      RuntimeWarning, stacklevel=_user_stacklevel())
        return None
    return float(value)


class _Monitor:
    """Improvement test shared by the monitoring callbacks: better by more than min_delta."""

    def __init__(self, monitor, mode, min_delta):
        self.monitor, self.mode = monitor, mode
        self.maximize = _higher_is_better(monitor, mode)  # None: known once a model is bound
        self.min_delta = min_delta

    def bind(self, owner, model):
        """Resolves mode 'auto' with the model's compiled metrics; refuses a value whose
        direction it cannot tell rather than guess (a maximised metric minimised would stop
        training at its first improvement)."""
        maximize = _higher_is_better(self.monitor, self.mode, model)
        if maximize is None:
            raise ValueError(f"{owner}: cannot tell whether {self.monitor!r} should be "
                             f"minimised or maximised; pass mode='min' or mode='max'")
        self.maximize = maximize

    @classmethod
    def of(cls, owner, callback, min_delta):
        """The callback's test from its settings as they are when training starts (set
        after construction too: Keras reads them then), bound to its model."""
        test = cls(_check_monitor(owner, callback.monitor), _check_mode(owner, callback.mode),
                   abs(_check_number(owner, "min_delta", min_delta)))
        test.bind(owner, callback.model)
        return test

    def initial(self):
        """No reference yet (Keras 3's None): the first value improves, an infinite one too
        (from a start of inf, a first inf counted as an epoch without improvement)."""
        return None

    def improved(self, current, reference):
        # (Keras takes a first NaN as its best, after which nothing improves; here NaN never
        # improves, and the first value that is not NaN does)
        if reference is None:
            return current == current
        if self.maximize:
            return current - self.min_delta > reference
        return current + self.min_delta < reference


def _shown(best):
    """A best value as Keras prints it: None before the first."""
    return "None" if best is None else f"{best:.5f}"


def _check_optimizer(owner, model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(f"{owner} needs a compiled model with an optimizer")
    if getattr(optimizer, "has_schedule", False):  # setting a number would drop the schedule
        raise TypeError(f"{owner}: the optimizer's learning rate comes from a schedule "
                        f"({optimizer._schedule!r}) and cannot be set by a callback (as in "
                        f"Keras); give the optimizer a number")
    return optimizer


def _log_learning_rate(model, logs):
    """The epoch's rate in the logs (History, CSVLogger after this callback), as Keras 3."""
    if logs is not None:
        logs["learning_rate"] = model.optimizer.rate()


# ---- training callbacks ---------------------------------------------------------------------
class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved by more than `min_delta` for `patience`
    epochs (Keras 3 semantics; epochs before `start_from_epoch` are ignored; with `baseline`
    the patience counter only resets once the value beats the baseline).

    restore_best_weights=True puts back the weights of the best epoch when training ends,
    whether it stopped early or ran all its epochs (Keras restores only on stopping in some
    versions; pynn always does, so the model after fit is the best one seen).

    mode="auto" (here, in ModelCheckpoint and ReduceLROnPlateau) takes the direction of the
    compiled metric of that name (pynn's metrics know it; a Keras-style metric's `_direction`
    or a metric function's `direction` attribute, "up" or "down", say it), else the name's
    (accuracy, AUC, precision, recall, F1, R² up; losses and errors down); a name it cannot
    place is refused when fit starts: pass mode="min" or "max"."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        owner = "EarlyStopping"
        self.monitor = _check_monitor(type(self).__name__, monitor)
        self.min_delta = abs(_check_number(owner, "min_delta", min_delta))  # as Keras
        self.patience = _check_count(owner, "patience", patience)
        self.verbose = verbose
        self.mode = _check_mode(owner, mode)
        self.baseline = None if baseline is None else _check_number(owner, "baseline", baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _check_count(owner, "start_from_epoch", start_from_epoch)
        self._monitor = _Monitor(monitor, mode, self.min_delta)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = self._monitor.initial()
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self._monitor = _Monitor.of("EarlyStopping", self, self.min_delta)
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored("EarlyStopping", self.monitor, logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()  # never worse than nothing (Keras)
            self.best_epoch = epoch
        self.wait += 1
        if self._monitor.improved(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._monitor.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring the weights of epoch {self.best_epoch + 1}, the best one")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model after each epoch to `filepath`, which may hold format fields filled
    from the epoch (1-based, as Keras) and the logs: "ckpt-{epoch:02d}-{val_loss:.2f}.npz".

    Files are written atomically (a temporary file renamed into place). save_weights_only=True
    writes model.save_weights (an .npz of the weights); otherwise model.save (the whole model:
    a Keras 3 archive for a ".keras" path, which needs h5py, checked before training)
    when the model has it, and the weights file when it does not (whole-model files come with
    pynn's model saving). save_freq: "epoch", or an integer n, as Keras: after every n-th
    batch (counted across epochs), the path formatted with the epoch, the batch (1-based,
    {batch}) and the running batch logs (save_best_only then compares those)."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        owner = "ModelCheckpoint"
        self.filepath = os.fsdecode(filepath)
        self.monitor = _check_monitor(type(self).__name__, monitor)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _check_mode(owner, mode)
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(
                save_freq, numbers.Integral) or save_freq < 1):
            raise ValueError(f"{owner}: save_freq must be 'epoch' or a number of batches >= 1, "
                             f"got {save_freq!r}")
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self._epoch, self._batches_since_saving, self._last_batch = 0, 0, None
        self._monitor = _Monitor(monitor, mode, 0.0)
        self.initial_value_threshold = (None if initial_value_threshold is None else
                                        _check_number(owner, "initial_value_threshold",
                                                      initial_value_threshold))
        self.best = None

    def on_train_begin(self, logs=None):
        if not self.save_weights_only and hasattr(self.model, "save"):
            from .saving import check_savable

            check_savable(self.model, self.filepath)  # now, not after the first epoch's
        else:
            from .saving import check_weights_name

            check_weights_name(self.filepath)  # (weights under a .keras name: refused now)
        if self.save_best_only:  # the only use of the direction
            self._monitor = _Monitor.of("ModelCheckpoint", self, 0.0)
        # the batch count since the last save and the best value are kept across fit calls,
        # as Keras keeps them (a loop of one-epoch fits saves every save_freq batches)
        if self.best is None:
            self.best = (self.initial_value_threshold if self.initial_value_threshold
                         is not None else self._monitor.initial())

    def _path(self, epoch, logs, batch=None):
        fields = {} if batch is None else {"batch": batch + 1}
        try:
            return self.filepath.format(**{"epoch": epoch + 1, **fields, **(logs or {})})
        except (KeyError, IndexError, ValueError) as exc:
            raise KeyError(f"ModelCheckpoint: cannot format filepath {self.filepath!r} "
                           f"({type(exc).__name__}: {exc}); logs have "
                           f"{', '.join(sorted(logs or {})) or 'no keys'}") from None

    def _uses_hook(self, hook):
        """defines_hook's answer: the batch hook only saves with a batch save_freq (a
        subclass's own batch hook runs anyway); fit pays per-batch calls only then."""
        return hook != "on_train_batch_end" or self.save_freq != "epoch" or \
            type(self).on_train_batch_end is not ModelCheckpoint.on_train_batch_end or \
            type(self).on_batch_end is not Callback.on_batch_end

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)  # (a subclass's on_batch_end, Keras' old name)
        if self.save_freq == "epoch":
            return
        # batches seen since the last save, counted as Keras counts them (batch restarts at
        # 0 each epoch)
        seen = batch + 1 if self._last_batch is None or batch <= self._last_batch else \
            batch - self._last_batch
        self._batches_since_saving += seen
        self._last_batch = batch
        if self._batches_since_saving >= self.save_freq:
            self._batches_since_saving = 0
            self._save_checkpoint(self._epoch, logs, batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save_checkpoint(epoch, logs)

    def _save_checkpoint(self, epoch, logs, batch=None):
        if self.save_best_only:
            current = _monitored("ModelCheckpoint", self.monitor, logs)
            if current is not None and not self._monitor.improved(current, self.best):
                if self.verbose:  # (Keras' line, which log readers look for)
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from "
                          f"{_shown(self.best)}")
                return
        if self.save_best_only and current is not None:
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {_shown(self.best)} to "
                      f"{current:.5f}")
            self.best = current
        # (without the monitored value, after the warning, it saves, as Keras 3 does)
        path = self._path(epoch, logs, batch)
        self._save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved to {path}")

    def _save(self, path):
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        if not self.save_weights_only and hasattr(self.model, "save"):
            self.model.save(path)
        else:
            self.model.save_weights(path)


class BackupAndRestore(Callback):
    """Keras' fault tolerance: after each epoch the whole model (weights, optimizer state
    and step count, shuffle seed) is saved in `backup_dir`; a fit that finds a backup there
    restores it first and resumes at the epoch after it, so a run that crashed or was
    interrupted continues where it stopped (with the same batches and Dropout masks as an
    uninterrupted one). A fit that runs all its epochs (or is stopped by a callback) deletes
    the backup (delete_checkpoint=False keeps it), and backup_dir when this callback made it
    (a hidden marker file in it says so; parent folders it made stay). Each backup is
    written beside the previous one, removed after (what Keras' double_checkpoint asks,
    always). save_freq="epoch" only. Other callbacks' state (EarlyStopping's best) is not backed up,
    as in Keras."""

    _PREFIX, _SUFFIX = "backup-epoch-", ".npz"
    _MADE_HERE = ".made-by-backup-and-restore"  # in a backup_dir this callback created

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False,
                 delete_checkpoint=True):
        super().__init__()
        if save_freq != "epoch":
            raise ValueError(f"BackupAndRestore: only save_freq='epoch' is supported, got "
                             f"{save_freq!r}")
        self.backup_dir = os.fsdecode(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._last_epoch = self._restored = None

    def _backups(self):
        """[(epoch, path)] of the backups in backup_dir, oldest first."""
        found = []
        if os.path.isdir(self.backup_dir):
            for name in os.listdir(self.backup_dir):
                number = name[len(self._PREFIX):-len(self._SUFFIX)]
                if name.startswith(self._PREFIX) and name.endswith(self._SUFFIX) and \
                        number.isdigit():
                    found.append((int(number), os.path.join(self.backup_dir, name)))
        return sorted(found)

    def on_train_begin(self, logs=None):
        self._last_epoch = self._restored = None
        backups = self._backups()
        if not backups:
            return
        epoch, path = backups[-1]
        from .backend import to_host
        from .custom_objects import custom_object_scope
        from .saving import load_model, user_objects

        with custom_object_scope(user_objects(self.model)):  # the model's own classes
            saved = load_model(path)
        model = self.model
        shapes = [tuple(p.shape) for p in model.params]
        if [tuple(p.shape) for p in saved.params] != shapes or \
                type(saved.optimizer) is not type(model.optimizer):
            raise ValueError(f"BackupAndRestore: {path!r} is the backup of another model "
                             f"(weights {[tuple(p.shape) for p in saved.params]}, "
                             f"{type(saved.optimizer).__name__}); this one has {shapes}, "
                             f"{type(model.optimizer).__name__}: remove it or give another "
                             f"backup_dir")
        model.set_weights(saved.get_weights())
        optimizer = model.optimizer
        for p, q in zip(model.params, saved.params):
            # into the slot arrays in place: a native engine is bound to them (and may have
            # made slots before the weights were restored)
            state = saved.optimizer.state_of(q) or {}
            slots = optimizer._slots_for(p) if state else optimizer.state_of(p)
            if slots:
                for name, slot in slots.items():
                    if name in state:
                        value = p.backend.asarray(to_host(state[name], q.backend), slot.dtype)
                    else:  # (e.g. use_ema's average, made before the weights were restored)
                        value = optimizer._initial_slot(name, p.backend, p.value)
                    slot[...] = value
        optimizer.training_steps = saved.optimizer.training_steps
        if not (optimizer.has_schedule or saved.optimizer.has_schedule):
            # a rate a callback changed (ReduceLROnPlateau): Keras restores it too
            optimizer.learning_rate = saved.optimizer.learning_rate
        if saved.shuffle_seed is not None:
            model.shuffle_seed = saved.shuffle_seed
        for mine, theirs in zip(model.layers, saved.layers):  # Dropout's masks continue too
            if type(mine) is type(theirs) and getattr(theirs, "seed", None) is not None:
                mine.seed = theirs.seed
        self._restored = epoch
        model._resume_epoch = epoch  # fit starts there (as Keras, whatever initial_epoch)

    def on_epoch_end(self, epoch, logs=None):
        if not os.path.isdir(self.backup_dir):
            os.makedirs(self.backup_dir, exist_ok=True)
            # Removed with the last backup, also by the callback of a resumed run in another
            # process (hence a file, not a flag); a folder of the user's stays.
            open(os.path.join(self.backup_dir, self._MADE_HERE), "w").close()
        name = f"{self._PREFIX}{epoch + 1}{self._SUFFIX}"
        # (a learning rate that is a function of the step stays the model's own: a resume
        # restores the slots and step count into the optimizer, not its rate; fit runs only
        # compiled models, which have an optimizer)
        # (the weights training goes on from, also where SwapEMAWeights holds them back)
        with self.model.optimizer.function_rate_aside(), training_weights_in(self.model):
            self.model.save(os.path.join(self.backup_dir, name))  # atomic: a file or none
        for number, path in self._backups():
            if number != epoch + 1:
                os.remove(path)
        self._last_epoch = epoch

    def on_train_end(self, logs=None):
        # how far training got: the last epoch run, or the backup's when none ran (a backup
        # at or past `epochs`: nothing to do, done)
        reached = self._last_epoch + 1 if self._last_epoch is not None else self._restored
        finished = reached is not None and (reached >= self.params.get("epochs", 0) or
                                            self.model.stop_training)
        if self.delete_checkpoint and finished:
            for _, path in self._backups():
                os.remove(path)
            made_here = os.path.join(self.backup_dir, self._MADE_HERE)
            if os.path.exists(made_here):
                os.remove(made_here)
                try:
                    os.rmdir(self.backup_dir)  # only if empty: nothing of the user's goes
                except OSError:  # something else is in it now: the folder stays, still ours
                    open(made_here, "w").close()


class LearningRateScheduler(Callback):
    """Sets model.optimizer.learning_rate at the start of each epoch to
    schedule(epoch, lr) (epoch 0-based, lr the current rate); schedule(epoch) also works."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"LearningRateScheduler: schedule must be callable, got "
                             f"{schedule!r}")
        self.schedule = schedule
        self.verbose = verbose
        try:
            params = inspect.signature(schedule).parameters.values()
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                          p.POSITIONAL_OR_KEYWORD)]
            varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
            self._takes_lr = varargs or len(positional) >= 2
        except (TypeError, ValueError):  # builtins without a signature: Keras' calling form
            self._takes_lr = True

    def on_train_begin(self, logs=None):
        _check_optimizer("LearningRateScheduler", self.model)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = _check_optimizer("LearningRateScheduler", self.model)
        lr = optimizer.rate()
        new = self.schedule(epoch, lr) if self._takes_lr else self.schedule(epoch)
        if isinstance(new, bool) or not isinstance(new, numbers.Real) or not math.isfinite(new) \
                or new < 0:
            raise ValueError(f"LearningRateScheduler: schedule({epoch}) returned {new!r}; it "
                             f"must return a finite learning rate >= 0")
        optimizer.learning_rate = float(new)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new}")

    def on_epoch_end(self, epoch, logs=None):
        _log_learning_rate(self.model, logs)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` (down to `min_lr`) when `monitor` has not
    improved by more than `min_delta` for `patience` epochs, then waits `cooldown` epochs
    before counting again (Keras 3 semantics)."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **keras2):
        super().__init__()
        owner = "ReduceLROnPlateau"
        if "epsilon" in keras2:  # (Keras 3 ignores it silently: min_delta stayed 1e-4)
            raise TypeError(f"{owner}: epsilon is Keras 2's name of min_delta: pass "
                            f"min_delta={keras2['epsilon']!r}")
        if keras2:
            raise TypeError(f"{owner}: unexpected arguments {', '.join(sorted(keras2))}")
        self.factor = _check_number(owner, "factor", factor)
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"{owner}: factor must be in (0, 1) (it multiplies the learning "
                             f"rate), got {factor}")
        self.monitor = _check_monitor(type(self).__name__, monitor)
        self.patience = _check_count(owner, "patience", patience)
        self.verbose = verbose
        self.mode = _check_mode(owner, mode)
        self.min_delta = abs(_check_number(owner, "min_delta", min_delta))  # as Keras
        self.cooldown = _check_count(owner, "cooldown", cooldown)
        self.min_lr = _check_number(owner, "min_lr", min_lr, low=0)
        self._monitor = _Monitor(monitor, mode, self.min_delta)
        self._reset()

    def _reset(self):
        self.best = self._monitor.initial()
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        _check_optimizer("ReduceLROnPlateau", self.model)  # a schedule: refused now, not later
        self._monitor = _Monitor.of("ReduceLROnPlateau", self, self.min_delta)
        self._reset()

    def in_cooldown(self):
        """Whether the cooldown after the last reduction is still running (no reduction
        meanwhile)."""
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        _log_learning_rate(self.model, logs)
        current = _monitored("ReduceLROnPlateau", self.monitor, logs)
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._monitor.improved(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                optimizer = _check_optimizer("ReduceLROnPlateau", self.model)
                old = optimizer.rate()
                # in float32, as Keras' rate variable: 0.1 * 0.1 * 0.1 is just above a
                # min_lr of 0.001 in float64, and a reduction by 2e-19 restarted the cooldown
                if np.float32(old) > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    optimizer.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new:.6g}")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class SwapEMAWeights(Callback):
    """Keras 3's SwapEMAWeights, for an optimizer with use_ema=True: fit's validation,
    evaluate(callbacks=) and predict(callbacks=) run on the moving averages of the weights,
    and the training weights come back after. swap_on_epoch=True holds the averages in the
    model from each on_epoch_end to the next on_epoch_begin too, so the callbacks after this
    one (ModelCheckpoint, EarlyStopping) see and save them; a BackupAndRestore backup holds
    the training weights all the same (a resumed run trains on from them). The optimizer's
    averages are never overwritten (the training weights wait in this callback), so the
    model ends fit with them whenever fit writes them (Keras 3 exchanges the two, and leaves
    the averages in after predict). A call that fails while the averages are in (an error in
    another callback, bad data, Ctrl-C) puts the training weights back."""

    def __init__(self, swap_on_epoch=False):
        super().__init__()
        if isinstance(swap_on_epoch, (str, bytes)):  # (bool("false") is True)
            raise TypeError(f"SwapEMAWeights: swap_on_epoch must be True or False, got "
                            f"{swap_on_epoch!r}")
        self.swap_on_epoch = bool(swap_on_epoch)
        self._training_weights = None  # [(parameter, its training values)] while swapped
        self._swapped_model = None  # the model they belong to (none before a first swap)

    def _swap_in(self):
        self._swap_out()  # (a swap a failed call left behind: put back first)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not optimizer.use_ema:
            raise ValueError(f"SwapEMAWeights must be used when `use_ema=True` is set on the "
                             f"optimizer. Received: use_ema="
                             f"{getattr(optimizer, 'use_ema', None)}")
        saved = []
        for p in self.model.trainable_params:
            state = optimizer.state_of(p)  # (None before the first step: nothing averaged)
            if state is not None and "average" in state:
                saved.append((p, p.value.copy()))
                p.value[...] = state["average"]
        self._training_weights, self._swapped_model = saved, self.model
        swapped_in(self.model)[id(self)] = self

    def _swap_out(self):
        saved, self._training_weights = self._training_weights, None
        for p, values in saved or ():
            p.value[...] = values
        if saved is not None:  # (into the model it came from, should this one be another)
            swapped_in(self._swapped_model).pop(id(self), None)

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch:
            self._swap_out()

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_on_epoch:
            self._swap_in()

    def on_train_end(self, logs=None):
        if getattr(self.model, "_averages_written", False):
            # fit has just given the model its averages (finalize_variable_values): the
            # training weights kept since the last on_epoch_end are not put back
            self._training_weights = None
            if self._swapped_model is not None:  # (a fit without validation swapped none)
                swapped_in(self._swapped_model).pop(id(self), None)
        else:  # (a Ctrl-C, or use_ema off: the model keeps its training weights)
            self._swap_out()

    def on_test_begin(self, logs=None):
        self._swap_in()

    def on_test_end(self, logs=None):
        self._swap_out()

    def on_predict_begin(self, logs=None):
        self._swap_in()

    def on_predict_end(self, logs=None):
        self._swap_out()


_SWAPS = weakref.WeakKeyDictionary()  # model -> {id: SwapEMAWeights holding its weights}


def swapped_in(model):
    """{id: SwapEMAWeights} of the swaps holding `model`'s training weights now: fit,
    evaluate and predict put them back when they fail, BackupAndRestore while it saves."""
    return _SWAPS.setdefault(model, {})


def putting_weights_back_on_error(method):
    """fit, evaluate and predict: a failure (an error in a callback, bad data, Ctrl-C) puts
    back the training weights a SwapEMAWeights swapped out during the call."""

    @functools.wraps(method)
    def call(model, *args, **kwargs):
        # (no swap anywhere, the usual case: skip the weak lookup, a tenth of a one-row predict)
        before = set(_SWAPS.get(model, ())) if _SWAPS else ()
        try:
            return method(model, *args, **kwargs)
        except BaseException:
            for key, swap in list(_SWAPS.get(model, {}).items()):
                if key not in before:
                    swap._swap_out()
            raise

    return call


@contextlib.contextmanager
def training_weights_in(model):
    """The training weights in `model` for the block (a backup of the run), the averages
    swapped in again after."""
    swaps = list(swapped_in(model).values())
    for swap in swaps:
        swap._swap_out()
    try:
        yield
    finally:
        for swap in swaps:
            swap._swap_in()


class CSVLogger(Callback):
    """Writes one CSV row per epoch: `epoch` then the log keys in sorted order, with a val_
    column for each when the first epoch has none (as Keras: "NA" where an epoch has no
    value), a header first unless appending to a non-empty file, whose header's columns the
    rows then follow (a key it lacks is left out, with a warning: rows never shift under
    another header). An array value is written as a list on one line. The file is opened,
    written and closed each epoch, so every finished epoch is on disk even if training is
    interrupted."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}")
        self.filename = os.fsdecode(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys = None

    def on_train_begin(self, logs=None):
        self.keys = self._columns = None
        exists = os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._write_header = not (self.append and exists)
        if not self.append:
            open(self.filename, "w").close()  # start the file fresh, as Keras' mode "w"
        elif exists:
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f, delimiter=self.sep), [])
            if header[:1] == ["epoch"]:
                self._columns = header[1:]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(k.startswith("val_") for k in self.keys):
                # no validation (yet: validation_freq > 1): their columns now, as Keras 3
                self.keys += [f"val_{k}" for k in self.keys]
            if self._columns is not None:  # appending: the file's columns
                left_out = [k for k in self.keys if k not in self._columns and k in logs]
                if left_out:
                    warnings.warn(f"CSVLogger: {self.filename} has no column for "
                                  f"{', '.join(left_out)}; appending without them",
                                  RuntimeWarning, stacklevel=_user_stacklevel())
                self.keys = self._columns
        with open(self.filename, "a", newline="") as f:
            writer = csv.writer(f, delimiter=self.sep)
            if self._write_header:
                writer.writerow(["epoch", *self.keys])
                self._write_header = False
            writer.writerow([epoch, *(_csv_value(logs.get(k, "NA")) for k in self.keys)])
            f.flush()


def _csv_value(value):
    """A log value for a CSV field: an array (a per-class metric) as a list on one line."""
    if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
        return value
    return str(np.asarray(value).tolist())


_BY_KEYWORD = weakref.WeakKeyDictionary()  # a batch hook's function -> logs= by keyword?


def call_batch_hook(fn, batch, logs):
    """fn(batch, logs=logs), as Keras calls batch hooks (a hook written (self, batch,
    **kwargs) needs the keyword), or fn(batch, logs) for one whose parameter has another
    name ((batch, log), a LambdaCallback's lambda b, l: ...), as pynn called them before."""
    key = getattr(fn, "__func__", fn)
    keyword = _BY_KEYWORD.get(key)
    if keyword is None:
        try:
            parameters = inspect.signature(fn).parameters.values()
            keyword = any(p.name == "logs" or p.kind is p.VAR_KEYWORD for p in parameters)
        except (TypeError, ValueError):
            keyword = True
        try:
            _BY_KEYWORD[key] = keyword
        except TypeError:  # (a callable that takes no weak reference, or no hash)
            pass
    if keyword:
        fn(batch, logs=logs)
    else:
        fn(batch, logs)


def defines_hook(callback, hook):
    """Whether a callback does something in `hook`: a subclass method or a LambdaCallback's
    function (the base's are empty; per-batch calls cost, so they run only then)."""
    fn = getattr(callback, hook)
    if getattr(fn, "__func__", fn) is getattr(Callback, hook):
        return False
    uses = getattr(callback, "_uses_hook", None)  # (a pynn callback's hook in some settings)
    return uses is None or uses(hook)


def checked_callbacks(callbacks):
    """callbacks (an iterable) as a list, each a Callback; TypeError naming one that is not."""
    # a CallbackList among them (Keras' fit takes one) runs as its callbacks
    callbacks = [c for cb in callbacks for c in (cb.callbacks if isinstance(cb, CallbackList)
                                                  else [cb])]
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be pynn.callbacks.Callback objects, got {cb!r}")
    return callbacks


class CallbackList(Callback):
    """Keras 3's CallbackList: callbacks run as one, each hook called on every callback in
    order. What fit, evaluate and predict run; a training loop of your own over
    train_on_batch calls its hooks (on_train_begin(), on_epoch_begin(epoch),
    on_train_batch_end(step, logs), ...) as Keras' guides do. add_history=True adds a History
    (unless one is given), which sets model.history at each epoch's end; add_progbar=True is
    refused (pynn's progress bar is fit's own: verbose=1). model: given to every callback;
    **params: their params (epochs=, steps=, verbose=)."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        super().__init__()
        if add_progbar:
            raise NotImplementedError("CallbackList(add_progbar=True): pynn has no progress "
                                      "bar callback; fit(verbose=1) draws its own")
        self.callbacks = checked_callbacks([] if callbacks is None else
                                           [callbacks] if isinstance(callbacks, Callback)
                                           else callbacks)
        if add_history and not any(isinstance(cb, History) for cb in self.callbacks):
            self.callbacks.append(History())
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, callback):
        """One more callback, last (Keras')."""
        self.callbacks.extend(checked_callbacks([callback]))

    def set_model(self, model):
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        """Every callback's params (evaluate and predict know theirs once x is read)."""
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def call(self, hook, *args):
        """hook(*args) on every callback (a batch hook's logs passed as Keras does)."""
        if hook.endswith(("batch_begin", "batch_end")):  # Keras passes these logs=logs
            batch, logs = args
            for cb in self.callbacks:
                call_batch_hook(getattr(cb, hook), batch, logs)
            return
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def overrides(self, *hooks):
        """Whether any callback defines one of these hooks (defines_hook)."""
        return any(defines_hook(cb, hook) for cb in self.callbacks for hook in hooks)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)


def _list_hook(hook, batch=False, epoch=False):
    if batch:
        def run(self, batch, logs=None):
            self.call(hook, batch, logs)
    elif epoch:
        def run(self, epoch, logs=None):
            self.call(hook, epoch, logs)
    else:
        def run(self, logs=None):
            self.call(hook, logs)
    run.__name__ = hook
    run.__doc__ = f"{hook} on every callback."
    return run


for _hook in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
              "on_predict_begin", "on_predict_end"):
    setattr(CallbackList, _hook, _list_hook(_hook))
for _hook in ("on_epoch_begin", "on_epoch_end"):
    setattr(CallbackList, _hook, _list_hook(_hook, epoch=True))
for _hook in ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
              "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end"):
    setattr(CallbackList, _hook, _list_hook(_hook, batch=True))
# Keras' older names: the train-batch hooks (each callback's then calls its own old one)
CallbackList.on_batch_begin = CallbackList.on_train_batch_begin
CallbackList.on_batch_end = CallbackList.on_train_batch_end
del _hook


__all__ = ["BackupAndRestore", "CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History",
           "LambdaCallback", "LearningRateScheduler", "ModelCheckpoint", "ReduceLROnPlateau",
           "SwapEMAWeights", "TerminateOnNaN"]

# Keras callbacks pynn leaves out, with what to use instead (a clearer AttributeError).
_KERAS_ONLY = {
    "TensorBoard": "pynn writes no TensorBoard event files: log with CSVLogger(filename), or "
                   "draw model.history with History.plot()",
    "ProgbarLogger": "fit(verbose=1) shows pynn's progress bar itself (verbose=2: a line per "
                     "epoch)",
    "RemoteMonitor": "send the logs from a LambdaCallback(on_epoch_end=...) of your own",
}


def __getattr__(name):
    if name in _KERAS_ONLY:
        raise AttributeError(f"module 'pynn.callbacks' has no attribute {name!r}: "
                             f"{_KERAS_ONLY[name]}")
    raise AttributeError(f"module 'pynn.callbacks' has no attribute {name!r}")

