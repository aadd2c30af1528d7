"""Training callbacks: EarlyStopping, ModelCheckpoint, LearningRateScheduler, ReduceLROnPlateau,
CSVLogger, and History.plot. Scripted monitor values come from a LambdaCallback that overwrites
the epoch's logs before the callback under test reads them (callbacks run in list order)."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from conftest import AVAILABLE, requires_native

import pynn
from pynn.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)


def _model(lr=0.01):
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(3, activation="tanh"), pynn.Dense(1)])
    model.compile(optimizer=pynn.optimizers.SGD(lr), loss="mse", metrics=["mae"])
    return model


def _data(n=32):
    x = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    return x, x.sum(axis=1)


def _script(values, key="val_loss", stamp_weights=False):
    """Overwrites logs[key] with values[epoch]; optionally sets every weight to the epoch
    number, so the weights of any epoch can be recognised afterwards."""

    def on_epoch_end(epoch, logs):
        logs[key] = values[epoch]
        if stamp_weights:
            model = script.model
            model.set_weights([np.full(w.shape, float(epoch)) for w in model.get_weights()])

    script = LambdaCallback(on_epoch_end=on_epoch_end)
    return script


def _fit(model, callbacks, epochs, **kwargs):
    x, y = _data()
    return model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=callbacks,
                     **kwargs)


# ---- EarlyStopping --------------------------------------------------------------------------
@pytest.mark.parametrize("values,kwargs,stopped,best", [
    # improves at epochs 0, 1; patience 2 runs out at epoch 3
    ([1.0, 0.9, 0.95, 0.93, 0.8, 0.7], dict(patience=2), 3, 1),
    # patience 0: the first epoch without improvement stops
    ([1.0, 0.9, 0.95, 0.8], dict(patience=0), 2, 1),
    # an improvement smaller than min_delta does not count
    ([1.0, 0.99, 0.98, 0.97], dict(patience=1, min_delta=0.05), 1, 0),
    # epochs before start_from_epoch are not watched
    ([1.0, 2.0, 3.0, 4.0, 5.0], dict(patience=1, start_from_epoch=2), 3, 2),
    # improvements that do not beat the baseline keep counting towards patience
    ([0.9, 0.8, 0.85, 0.7], dict(patience=2, baseline=0.5), 2, 1),
])
def test_early_stopping_stops_at_the_right_epoch(values, kwargs, stopped, best):
    es = EarlyStopping(**kwargs)
    h = _fit(_model(), [_script(values), es], epochs=len(values))
    assert h.epoch == list(range(stopped + 1))
    assert es.stopped_epoch == stopped and es.best_epoch == best
    assert es.best == values[best]


def test_early_stopping_without_baseline_would_continue():
    es = EarlyStopping(patience=2)
    h = _fit(_model(), [_script([0.9, 0.8, 0.85, 0.7]), es], epochs=4)
    assert len(h.epoch) == 4 and es.stopped_epoch == 0


def test_a_nan_first_value_is_not_the_best():
    """A deliberate difference from Keras 3, whose first value becomes the reference even
    when NaN (then nothing improves on it and training stops after `patience` epochs of
    real improvement): here NaN never improves, and the first finite value does."""
    values = [float("nan"), 1.0, 0.9, 0.8, 0.7, 0.6]
    es = EarlyStopping(patience=2)
    h = _fit(_model(), [_script(values), es], epochs=len(values))
    assert len(h.epoch) == len(values) and es.stopped_epoch == 0 and es.best == 0.6


def test_a_first_infinite_value_is_the_reference_as_in_keras(tmp_path):
    """Keras 3 starts from no reference: a first value of inf is the best so far. From a
    start of inf it counted as an epoch without improvement, so patience ran out an epoch
    early (EarlyStopping stopped, ReduceLROnPlateau cut the rate, a checkpoint was not
    written)."""
    inf = float("inf")
    es = EarlyStopping(patience=2)
    h = _fit(_model(), [_script([inf, inf, 5.0, 4.0]), es], epochs=4)
    assert len(h.epoch) == 4 and es.stopped_epoch == 0 and es.best == 4.0
    model = _model(lr=0.1)
    plateau = ReduceLROnPlateau(factor=0.1, patience=2)
    _fit(model, [_script([inf, inf, 5.0]), plateau], epochs=3)
    assert model.optimizer.rate() == pytest.approx(0.1)
    checkpoint = ModelCheckpoint(str(tmp_path / "ck-{epoch}.npz"), save_best_only=True,
                                 save_weights_only=True)
    _fit(_model(), [_script([inf, 3.0]), checkpoint], epochs=2)
    assert sorted(os.listdir(tmp_path)) == ["ck-1.npz", "ck-2.npz"]


def test_a_first_nan_value_counts_as_an_epoch_without_improvement():
    model = _model(lr=0.1)
    plateau = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=-0.0)
    _fit(model, [_script([float("nan"), 1.0, 0.9]), plateau], epochs=3)
    assert model.optimizer.rate() == pytest.approx(0.05)  # cut once, after the NaN
    assert ReduceLROnPlateau(min_delta=-0.01).min_delta == 0.01  # Keras' abs, as EarlyStopping


def test_early_stopping_max_mode_from_the_name():
    es = EarlyStopping(monitor="val_accuracy", patience=1)
    h = _fit(_model(), [_script([0.5, 0.7, 0.6, 0.9], key="val_accuracy"), es], epochs=4)
    assert h.epoch == [0, 1, 2] and es.best == 0.7
    es = EarlyStopping(monitor="val_accuracy", patience=1, mode="min")
    h = _fit(_model(), [_script([0.5, 0.7, 0.6, 0.9], key="val_accuracy"), es], epochs=4)
    assert h.epoch == [0, 1]


@pytest.mark.parametrize("values,epochs,best", [
    ([1.0, 0.5, 0.7, 0.8, 0.9], 5, 1),  # stops early at epoch 3
    ([1.0, 0.5, 0.7], 3, 1),  # runs out of epochs first: still restored (pynn)
    ([1.0, 0.9, 0.8], 3, 2),  # the last epoch is the best
])
def test_early_stopping_restores_the_best_weights(values, epochs, best):
    model = _model()
    es = EarlyStopping(patience=2, restore_best_weights=True)
    _fit(model, [_script(values, stamp_weights=True), es], epochs=epochs)
    for w in model.get_weights():
        np.testing.assert_array_equal(w, np.full(w.shape, float(best)))


def test_early_stopping_on_a_real_metric_and_missing_key_warns():
    model = _model()
    x, y = _data()
    es = EarlyStopping(monitor="loss", patience=0)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[es])  # loss exists: no warning
    with pytest.warns(RuntimeWarning, match="'val_loss'.*available keys: loss, mae") as got:
        h = model.fit(x, y, epochs=2, verbose=0, callbacks=[EarlyStopping()])
    assert len(h.epoch) == 2  # no crash, no stop
    assert {w.filename for w in got} == {__file__}  # points at the fit call, not at pynn


@pytest.mark.parametrize("kwargs,match", [
    (dict(patience=-1), "patience must be an integer >= 0"),
    (dict(patience=1.5), "patience"),
    (dict(mode="minimum"), "mode must be 'auto', 'min' or 'max'"),
    (dict(min_delta=float("nan")), "min_delta must be a number"),
    (dict(start_from_epoch=-2), "start_from_epoch"),
])
def test_early_stopping_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


# ---- ModelCheckpoint ------------------------------------------------------------------------
def test_checkpoint_every_epoch_with_formatted_names(tmp_path):
    model = _model()
    x, y = _data()
    path = tmp_path / "ckpt" / "w-{epoch:02d}-{val_loss:.2f}.npz"  # the folder is created
    h = model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_data=(x, y),
                  callbacks=[ModelCheckpoint(path, save_weights_only=True)])
    names = sorted(os.listdir(tmp_path / "ckpt"))
    assert names == [f"w-{e + 1:02d}-{v:.2f}.npz" for e, v in enumerate(h.history["val_loss"])]
    other = _model()
    other.load_weights(tmp_path / "ckpt" / names[-1])
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_best_only_writes_on_improvement(tmp_path):
    model = _model()
    values = [1.0, 1.2, 0.8, 0.8, 0.5]
    written = []

    def record(epoch, logs):
        written.append(sorted(os.listdir(tmp_path)))

    cb = ModelCheckpoint(str(tmp_path / "best-{epoch}.npz"), save_best_only=True,
                         save_weights_only=True)
    _fit(model, [_script(values), cb, LambdaCallback(on_epoch_end=record)], epochs=5)
    assert written[-1] == ["best-1.npz", "best-3.npz", "best-5.npz"]
    assert written[1] == ["best-1.npz"]  # epoch 2 was worse: nothing new
    # a fixed name holds the weights of the best epoch
    fixed = tmp_path / "fixed" / "best.npz"
    _fit(_model(), [_script([1.0, 2.0, 0.5, 0.7], stamp_weights=True),
                    ModelCheckpoint(fixed, save_best_only=True, save_weights_only=True)],
         epochs=4)
    reloaded = _model()
    reloaded.load_weights(fixed)
    assert all((w == 2.0).all() for w in reloaded.get_weights())  # epoch 2 (0-based), best
    assert not list(fixed.parent.glob(".pynn-*"))  # atomic writes leave no temporaries


def test_checkpoint_whole_model_or_weights(tmp_path):
    model = _model()
    path = tmp_path / "model-{epoch}.npz"
    _fit(model, [ModelCheckpoint(path, monitor="loss")], epochs=2)
    saved = tmp_path / "model-2.npz"
    assert saved.exists() and saved.stat().st_size > 0
    if hasattr(model, "save"):
        restored = pynn.load_model(saved)
        x, _ = _data()
        np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    else:  # until whole-model saving exists, the weights are written
        other = _model()
        other.load_weights(saved)


def test_checkpoint_missing_key_warns_and_bad_format_names_the_keys(tmp_path):
    with pytest.warns(RuntimeWarning, match="available keys"):
        _fit(_model(), [ModelCheckpoint(tmp_path / "w.npz", save_best_only=True)], epochs=1)
    assert (tmp_path / "w.npz").exists()  # and saved, as Keras 3 does
    with pytest.raises(KeyError, match="cannot format filepath.*val_acc.*loss, mae"):
        _fit(_model(), [ModelCheckpoint(tmp_path / "{val_acc}.npz")], epochs=1)
    with pytest.raises(ValueError, match="mode"):
        ModelCheckpoint(tmp_path / "w.npz", mode="best")
    for bad in ("batch", 0, True, 2.5):
        with pytest.raises(ValueError, match="save_freq"):
            ModelCheckpoint(tmp_path / "w.npz", save_freq=bad)


# ---- learning rate --------------------------------------------------------------------------
def _lr_recorder(model, rates):
    """Records the learning rate at the end of each epoch (after the callback under test)."""
    return LambdaCallback(on_epoch_end=lambda epoch, logs: rates.append(
        model.optimizer.learning_rate))


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    model = _model(lr=0.1)
    rates, seen = [], []
    sched = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch > 0 else lr)
    _fit(model, [sched, _lr_recorder(model, rates)], epochs=4)
    assert rates == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    # the one-argument form, and the epoch numbers it is given
    sched = LearningRateScheduler(lambda epoch: seen.append(epoch) or 0.01 * (epoch + 1))
    rates.clear()
    _fit(model, [sched, _lr_recorder(model, rates)], epochs=3, initial_epoch=1)
    assert seen == [1, 2] and rates == pytest.approx([0.02, 0.03])


def test_learning_rate_scheduler_changes_training():
    """The rate a schedule sets is the one the update uses (layer and native paths)."""
    x, y = _data()
    results = []
    for callbacks in ([], [LearningRateScheduler(lambda epoch, lr: 0.05)]):
        pynn.set_seed(3)
        model = _model(lr=0.01 if callbacks else 0.05)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False, callbacks=callbacks)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_learning_rate_scheduler_bad_schedule():
    with pytest.raises(ValueError, match="callable"):
        LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="returned -1.*>= 0"):
        _fit(_model(), [LearningRateScheduler(lambda epoch, lr: -1)], epochs=1)


def test_a_zero_rate_from_a_scheduler_freezes_that_epoch():
    """0 is a learning rate (a warm-up's first epoch, as in Keras): that epoch leaves the
    weights unchanged, the next one trains."""
    model = _model(lr=0.1)
    weights = []
    keep = LambdaCallback(on_epoch_end=lambda epoch, logs: weights.append(model.get_weights()))
    before = model.get_weights()
    h = _fit(model, [LearningRateScheduler(lambda epoch: 0.0 if epoch == 0 else 0.1), keep],
             epochs=2)
    for a, b in zip(weights[0], before):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(weights[1], before))
    assert h.history["learning_rate"] == [0.0, 0.1]


def test_lr_callbacks_refuse_an_optimizer_with_a_schedule_before_training():
    model = _model()
    model.compile(optimizer=pynn.optimizers.SGD(lambda step: 0.01), loss="mse")
    for callback in (LearningRateScheduler(lambda epoch, lr: 0.1), ReduceLROnPlateau()):
        with pytest.raises(TypeError, match="comes from a schedule"):
            _fit(model, [callback], epochs=2)
        assert model.optimizer.iterations == 0  # refused at on_train_begin, not epochs later


def test_lr_callbacks_log_the_epochs_rate():
    """As Keras 3: the rate each epoch trained with goes into the logs, so History and a
    CSVLogger listed after the callback record it."""
    model = _model(lr=1.0)
    plateau = ReduceLROnPlateau(factor=0.5, patience=0)
    h = _fit(model, [_script([1.0] * 3), plateau], epochs=3)
    assert h.history["learning_rate"] == [1.0, 1.0, 0.5]  # reduced after epochs 1 and 2
    assert model.optimizer.learning_rate == 0.25


def test_reduce_lr_on_plateau_follows_keras():
    model = _model(lr=1.0)
    rates = []
    plateau = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1)
    _fit(model, [_script([1.0] * 7), plateau, _lr_recorder(model, rates)], epochs=7)
    assert rates == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125])


def test_reduce_lr_on_plateau_min_lr_min_delta_and_improvement():
    model = _model(lr=1.0)
    rates = []
    plateau = ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.05, min_delta=0.01)
    # 0.995 is not better than 1.0 by more than min_delta; 0.5 is
    script = _script([1.0, 0.995, 0.5, 0.6, 0.6, 0.6])
    _fit(model, [script, plateau, _lr_recorder(model, rates)], epochs=6)
    assert rates == pytest.approx([1.0, 0.1, 0.1, 0.05, 0.05, 0.05])


@pytest.mark.parametrize("kwargs,match", [
    (dict(factor=1.0), "factor must be in \\(0, 1\\)"),
    (dict(factor=2), "factor"), (dict(factor=0), "factor"),
    (dict(patience=-1), "patience"), (dict(cooldown=-1), "cooldown"),
    (dict(min_lr=-1e-3), "min_lr"), (dict(mode="lowest"), "mode"),
])
def test_reduce_lr_on_plateau_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReduceLROnPlateau(**kwargs)


def test_reduce_lr_on_plateau_missing_key_warns():
    model = _model(lr=1.0)
    with pytest.warns(RuntimeWarning, match="'val_mae'.*available keys: learning_rate, loss, mae"):
        _fit(model, [ReduceLROnPlateau(monitor="val_mae", patience=0)], epochs=2)
    assert model.optimizer.learning_rate == 1.0


# ---- CSVLogger ------------------------------------------------------------------------------
def _rows(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_csv_logger_writes_header_and_one_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    x, y = _data()
    lines_during = []
    model = _model()
    h = model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_data=(x, y),
                  callbacks=[CSVLogger(path), LambdaCallback(
                      on_epoch_end=lambda e, logs: lines_during.append(len(_rows(path))))])
    rows = _rows(path)
    assert rows[0] == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert len(rows) == 4 and lines_during == [2, 3, 4]  # flushed every epoch
    for epoch, row in enumerate(rows[1:]):
        assert int(row[0]) == epoch
        for key, value in zip(rows[0][1:], row[1:]):
            assert float(value) == h.history[key][epoch]  # repr round-trips exactly
    # append: no second header; without append the file starts over
    model.fit(x, y, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[CSVLogger(path, append=True)])
    rows = _rows(path)
    assert len(rows) == 6 and [r[0] for r in rows[1:]] == ["0", "1", "2", "0", "1"]
    model.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";")])
    columns = ["epoch", "loss", "mae", "val_loss", "val_mae"]  # (Keras': "NA" there)
    assert _rows(path, ";") == [columns, _rows(path, ";")[1]]
    assert _rows(path, ";")[1][3:] == ["NA", "NA"]
    appended = tmp_path / "new.csv"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(appended, append=True)])
    assert _rows(appended)[0] == columns  # a new file still gets a header
    with pytest.raises(ValueError, match="separator"):
        CSVLogger(path, separator=";;")


# ---- History.plot ---------------------------------------------------------------------------
def test_history_plot_saves_a_png(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    x, y = _data()
    h = _model().fit(x, y, epochs=3, verbose=0, validation_split=0.25)
    path = tmp_path / "history.png"
    fig = h.plot(path)
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "mae"]
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)  # training and validation
    assert h.plot() is not None  # no path: just the figure
    many = pynn.callbacks.History()
    many.epoch = [0, 1]
    many.history = {k: [1.0, 0.5] for k in ["loss", "a", "b", "c", "val_loss", "val_c", "lr"]}
    assert [ax.get_title() for ax in many.plot().axes] == ["loss", "a", "b", "c", "lr"]
    with pytest.raises(ValueError, match="empty"):
        pynn.callbacks.History().plot()


def test_history_plot_without_matplotlib(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    h = pynn.callbacks.History()
    h.history = {"loss": [1.0]}
    h.epoch = [0]
    with pytest.raises(ImportError, match="pip install matplotlib"):
        h.plot()


def test_model_checkpoint_refuses_an_unsavable_model_before_training(tmp_path):
    """A whole-model checkpoint of a model that cannot be saved (a metric object, a plain
    function as learning rate) fails at the start of fit, before any epoch is spent."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer=pynn.optimizers.SGD(learning_rate=lambda step: 0.01), loss="mse")
    epochs = []
    with pytest.raises(ValueError):
        model.fit(np.zeros((4, 3)), np.zeros(4), epochs=2, verbose=0,
                  callbacks=[pynn.callbacks.LambdaCallback(
                                 on_epoch_end=lambda e, logs: epochs.append(e)),
                             pynn.callbacks.ModelCheckpoint(str(tmp_path / "m.npz"))])
    assert epochs == [] and not (tmp_path / "m.npz").exists()
    # weights only: nothing to describe, it trains and saves
    model.fit(np.zeros((4, 3)), np.zeros(4), epochs=1, verbose=0,
              callbacks=[pynn.callbacks.ModelCheckpoint(str(tmp_path / "w.npz"),
                                                        save_weights_only=True,
                                                        monitor="loss")])
    assert (tmp_path / "w.npz").exists()


# ---- Keras 3 conventions found by a migration pass ------------------------------------------
def _classifier(metrics):
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(4, activation="tanh"),
                             pynn.Dense(1, activation="sigmoid")])
    model.compile(optimizer=pynn.optimizers.SGD(0.01), loss="binary_crossentropy",
                  metrics=metrics)
    x, t = _data(40)
    return model, x, (t > 0).astype(np.float32)


class _KerasStyleScore(pynn.metrics.Metric):
    """A user's metric with Keras' private direction attribute."""
    _direction = "up"

    def reset_state(self):
        self.total = 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total += 1.0

    def result(self):
        return self.total


@pytest.mark.parametrize("metric", [lambda: pynn.metrics.AUC(name="roc"),
                                    lambda: pynn.metrics.Precision(name="prec"),
                                    lambda: _KerasStyleScore(name="score")])
def test_auto_mode_takes_a_renamed_metrics_own_direction(metric):
    m = metric()
    model, x, y = _classifier([m])
    key = f"val_{m.name}"
    rising = [0.5, 0.6, 0.7, 0.8, 0.9]
    stop = EarlyStopping(monitor=key, patience=0)
    model.fit(x, y, epochs=5, validation_split=0.25, verbose=0,
              callbacks=[_script(rising, key), stop])
    assert stop.stopped_epoch == 0 and len(model.history.epoch) == 5  # every epoch improved
    assert stop.best == 0.9


@pytest.mark.parametrize("make", [lambda k, d: EarlyStopping(monitor=k),
                                  lambda k, d: ReduceLROnPlateau(monitor=k),
                                  lambda k, d: ModelCheckpoint(str(d / "m.npz"), monitor=k,
                                                               save_best_only=True)])
def test_auto_mode_refuses_a_value_of_unknown_direction(make, tmp_path):
    model, x, y = _classifier([])
    with pytest.raises(ValueError, match="mode='min' or mode='max'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[make("val_custom", tmp_path)])
    assert not any(tmp_path.iterdir())


def test_known_names_keep_their_direction_without_a_model():
    assert EarlyStopping(monitor="val_accuracy")._monitor.maximize is True
    assert EarlyStopping(monitor="val_mean_absolute_error")._monitor.maximize is False
    assert EarlyStopping(monitor="my_loss", mode="max")._monitor.maximize is True


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
def test_model_trainable_false_freezes_every_layer(engine):
    model, x, y = _classifier([])
    model.trainable = False
    assert model.trainable is False and model.trainable_weights == []
    before = model.get_weights()
    model.fit(x, y, epochs=2, verbose=0, engine=engine)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.trainable = True
    assert model.trainable is True and len(model.trainable_weights) == 4
    with_dropout = pynn.Sequential([pynn.Input((2,)), pynn.Dense(3), pynn.Dropout(0.5)])
    with_dropout.layers[1].trainable = False  # every layer with weights frozen by hand
    assert with_dropout.trainable is False
    model.fit(x, y, epochs=1, verbose=0, engine=engine)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def _stopper(hook, when):
    def stop(*args):
        if hook == "on_train_begin" or args[0] == when:
            stopper.model.stop_training = True
    stopper = LambdaCallback(**{hook: stop})
    return stopper


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
@pytest.mark.parametrize("hook,epochs_run", [("on_train_begin", 1), ("on_epoch_begin", 2)])
def test_stop_training_before_an_epoch_still_logs_whole_epochs(engine, hook, epochs_run):
    # Keras reads stop_training after a batch: the epoch runs one batch and logs completely.
    model, x, y = _classifier(["accuracy"])
    steps = 3  # 30 training rows (validation takes 10), batch 10
    h = model.fit(x, y, epochs=4, batch_size=10, validation_split=0.25, verbose=0,
                  engine=engine, callbacks=[_stopper(hook, 1)])
    assert h.epoch == list(range(epochs_run))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(h.history[key]) == epochs_run, key
        assert np.all(np.isfinite(h.history[key]))
    assert model.optimizer.iterations == (epochs_run - 1) * steps + 1


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
def test_stop_before_an_epoch_runs_one_batch_on_both_engines(engine):
    # Without batch hooks the native engine runs chunks of ~steps/20 batches: a stop asked
    # for at epoch begin must still run one batch only.
    model, _, _ = _classifier([])
    x = np.random.default_rng().normal(size=(600, 2)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.float32)
    model.fit(x, y, epochs=3, batch_size=10, verbose=0, engine=engine,
              callbacks=[_stopper("on_epoch_begin", 1)])
    assert model.optimizer.iterations == 60 + 1


def test_function_metric_may_state_its_direction():
    def closeness(y_true, y_pred):
        return float(-np.abs(y_true - y_pred).mean())
    closeness.direction = "up"
    model, x, y = _classifier([closeness])
    stop = EarlyStopping(monitor="closeness", patience=0)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[_script([1, 2, 3, 4], "closeness"), stop])
    assert stop.stopped_epoch == 0 and stop.best == 4


def test_costly_metrics_are_not_recomputed_over_the_epoch_every_batch(monkeypatch):
    # An exact AUC so far sorts everything seen: once per batch made an epoch quadratic.
    calls = []
    original = pynn.metrics.AUC.result
    monkeypatch.setattr(pynn.metrics.AUC, "result",
                        lambda self: calls.append(1) or original(self))
    model, x, y = _classifier(["auc"])
    seen = []
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[
        pynn.callbacks.TerminateOnNaN(),
        LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs["auc"]))])
    assert len(seen) == 20 and all(0.0 <= v <= 1.0 or np.isnan(v) for v in seen)
    assert len(calls) <= 4  # the epochs' ends, not 20 batches


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
def test_keras_older_batch_hook_names_run(engine):
    seen = []

    class Legacy(pynn.callbacks.Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, sorted(logs)))

    lam = []
    model, x, y = _classifier([])
    model.fit(x, y, epochs=2, batch_size=10, verbose=0, engine=engine,
              callbacks=[Legacy(), LambdaCallback(on_batch_end=lambda b, logs: lam.append(b))])
    assert [s for s in seen if s[0] == "begin"] == [("begin", b) for b in range(4)] * 2
    assert [s for s in seen if s[0] == "end"] == [("end", b, ["loss"]) for b in range(4)] * 2
    assert lam == list(range(4)) * 2


def test_on_train_end_gets_the_last_epochs_logs():
    got = []
    model, x, y = _classifier(["accuracy"])
    h = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0,
                  callbacks=[LambdaCallback(on_train_end=lambda logs: got.append(dict(logs)))])
    assert set(got[0]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert got[0]["val_loss"] == h.history["val_loss"][-1]


@pytest.mark.parametrize("suffix,magic", [(".svg", b"<?xml"), (".pdf", b"%PDF"),
                                          ("", b"\x89PNG")])
def test_history_plot_writes_the_format_its_suffix_names(tmp_path, suffix, magic):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    x, y = _data()
    h = _model().fit(x, y, epochs=2, verbose=0)
    path = tmp_path / f"history{suffix}"
    h.plot(path)
    assert path.read_bytes()[:len(magic)] == magic  # PNG bytes went into every file
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no ".png" appended
    other = tmp_path / "run_lr0.01"  # a dot, but no format: a PNG as named
    h.plot(other)
    assert other.read_bytes()[:4] == b"\x89PNG"


def test_history_plot_puts_validation_points_at_their_epochs():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    x, y = _data()
    h = _model().fit(x, y, epochs=5, verbose=0, validation_split=0.25, validation_freq=2)
    lines = {line.get_label(): line for line in h.plot().axes[0].get_lines()}
    assert list(lines["train"].get_xdata()) == [1, 2, 3, 4, 5]
    assert list(lines["validation"].get_xdata()) == [2, 4]


@pytest.mark.parametrize("engine", [pytest.param("native", marks=requires_native), "layers"])
def test_batch_logs_are_the_epochs_means_so_far(engine):
    # Keras 3: batch logs aggregate the epoch up to that batch; the last equals the epoch's.
    seen = []
    model, x, y = _classifier(["accuracy", "precision"])
    h = model.fit(x, y, epochs=2, batch_size=7, verbose=0, engine=engine, callbacks=[
        LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(dict(logs)))])
    steps = -(-len(x) // 7)
    assert len(seen) == 2 * steps
    for epoch in range(2):
        last = seen[(epoch + 1) * steps - 1]
        for key in ("loss", "accuracy", "precision"):
            assert last[key] == pytest.approx(h.history[key][epoch], rel=1e-6), key


def test_test_and_predict_hooks_run_as_in_keras():
    calls = []

    class Recorder(Callback):
        def on_test_begin(self, logs=None):
            calls.append(("test_begin", dict(logs or {})))

        def on_test_batch_end(self, batch, logs=None):
            calls.append(("test_batch_end", batch, sorted(logs)))

        def on_test_end(self, logs=None):
            calls.append(("test_end", sorted(logs)))

        def on_predict_batch_end(self, batch, logs=None):
            calls.append(("predict_batch_end", batch, logs["outputs"].shape))

        def on_predict_end(self, logs=None):
            calls.append(("predict_end",))

    model = _model()
    x, y = _data(40)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, validation_split=0.25,
              validation_batch_size=4, callbacks=[Recorder()])
    per_epoch = [("test_begin", {})] + [("test_batch_end", b, ["loss", "mae"])
                                        for b in range(3)] + [("test_end", ["loss", "mae"])]
    assert calls == per_epoch * 2  # 10 validation rows in batches of 4, each epoch
    calls.clear()
    model.evaluate(x, y, batch_size=16, callbacks=[Recorder()])
    assert calls == [("test_begin", {})] + [("test_batch_end", b, ["loss", "mae"])
                                            for b in range(3)] + [("test_end", ["loss", "mae"])]
    calls.clear()
    out = model.predict(x, batch_size=16, callbacks=[Recorder()])
    np.testing.assert_allclose(out, model.predict(x), rtol=1e-6)
    assert calls == [("predict_batch_end", 0, (16, 1)), ("predict_batch_end", 1, (16, 1)),
                     ("predict_batch_end", 2, (8, 1)), ("predict_end",)]
    with pytest.raises(TypeError, match="must be pynn.callbacks.Callback"):
        model.evaluate(x, y, callbacks=[print])
    seen = []  # a LambdaCallback's hooks, and one callback given alone, as fit takes it
    lam = LambdaCallback(on_test_batch_end=lambda batch, logs: seen.append(("test", batch)),
                         on_predict_batch_end=lambda batch, logs: seen.append(("pred", batch)))
    model.evaluate(x, y, batch_size=32, callbacks=lam)
    model.predict(x, batch_size=32, callbacks=lam)
    model.fit(x, y, epochs=1, verbose=0, validation_split=0.25, callbacks=lam)
    assert seen == [("test", 0), ("test", 1), ("pred", 0), ("pred", 1), ("test", 0)]
    seen.clear()  # fit's validation in fit's batches where test batch hooks see them (Keras;
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, validation_split=0.25,  # was one)
              callbacks=lam)
    assert seen == [("test", 0), ("test", 1), ("test", 2)]
    assert model.predict(x[:0], callbacks=lam).shape == (0, 1)  # empty, as without
    # (in Keras' batches of 32 where test batch hooks see them: the mean in other order)
    assert model.evaluate(x, y, callbacks=Recorder()) == pytest.approx(model.evaluate(x, y),
                                                                        rel=1e-6)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("backend", [b for b in ("cpu", "numpy", "cuda", "cupy") if b in AVAILABLE])
def test_backup_and_restore_resumes_a_crashed_run_where_it_stopped(rng, tmp_path, backend):
    """Keras' BackupAndRestore: a run that crashed after epoch 2 of 5, fitted again with the
    same callback, restores the backup and runs epochs 3-5, ending with the weights of an
    uninterrupted run (same optimizer state, step count, shuffle orders and masks)."""
    x = rng.normal(size=(90, 4)).astype(np.float32)
    y = (x[:, :1] - x[:, 1:2] > 0).astype(np.float32)

    def model(seed):
        pynn.set_seed(seed)
        m = pynn.Sequential([pynn.Input((4,)), pynn.Dense(8, activation="relu"),
                             pynn.Dropout(0.2), pynn.Dense(1, activation="sigmoid")])
        m.compile("adam", "binary_crossentropy", backend=backend)
        return m

    whole = model(1)
    whole.fit(x, y, epochs=5, batch_size=16, verbose=0)
    backup = tmp_path / "backup"

    def crash(epoch, logs):
        if epoch == 1:
            raise _Crash()

    first = model(1)
    with pytest.raises(_Crash):
        first.fit(x, y, epochs=5, batch_size=16, verbose=0,
                  callbacks=[pynn.callbacks.BackupAndRestore(backup),
                             pynn.callbacks.LambdaCallback(on_epoch_end=crash)])
    assert [p.name for p in backup.glob("backup-*")] == ["backup-epoch-2.npz"]
    resumed = model(99)  # a new process: other initial weights, restored from the backup
    history = resumed.fit(x, y, epochs=5, batch_size=16, verbose=0,
                          callbacks=[pynn.callbacks.BackupAndRestore(backup)])
    assert history.epoch == [2, 3, 4]
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert resumed.optimizer.iterations == whole.optimizer.iterations
    # finished: the backup is deleted, and the folder the crashed run made with it
    assert not backup.exists()


def test_backup_and_restore_keeps_or_refuses(rng, tmp_path):
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.normal(size=(20, 1)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[pynn.callbacks.BackupAndRestore(tmp_path, delete_checkpoint=False)])
    assert [p.name for p in tmp_path.iterdir()] == ["backup-epoch-2.npz"]
    other = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    other.compile("sgd", "mse")
    with pytest.raises(ValueError, match="is the backup of another model"):
        other.fit(x, np.hstack([y, y]), epochs=3, verbose=0,
                  callbacks=[pynn.callbacks.BackupAndRestore(tmp_path)])
    with pytest.raises(ValueError, match="only save_freq='epoch'"):
        pynn.callbacks.BackupAndRestore(tmp_path, save_freq=10)
    cb = pynn.callbacks.BackupAndRestore(tmp_path / "b")
    cb.set_model(model)
    cb.set_params({"epochs": 5})
    cb.on_train_begin()
    cb.on_epoch_end(0)
    cb.on_train_end()  # an interrupted fit (1 of 5 epochs) keeps its backup
    assert [p.name for p in (tmp_path / "b").glob("backup-*")] == ["backup-epoch-1.npz"]


class _Doubling(pynn.layers.Layer):
    """A layer of the user's own (the backup must load without custom_objects)."""

    def forward(self, x, training=False, logits=False):
        return x * 2

    def backward(self, dy, need_input_grad=True, logits=False):
        return dy * 2


def test_backup_and_restore_brings_back_the_rate_and_the_users_layers(rng, tmp_path):
    """A rate lowered by a callback is part of the backup (Keras restores it), and a
    model with a custom layer resumes without custom_objects; a backup at `epochs` means
    done (deleted, not re-read by every later fit); a failed on_train_begin leaves no resume
    point for the next fit."""
    x = rng.normal(size=(60, 3)).astype(np.float32)
    y = rng.normal(size=(60, 1)).astype(np.float32)

    def model():
        pynn.set_seed(4)
        m = pynn.Sequential([pynn.Input((3,)), _Doubling(), pynn.Dense(1)])
        m.compile(pynn.optimizers.Adam(1e-3), "mse")
        return m

    def reduce():  # halves the rate it finds each epoch (no state of its own to restore)
        return pynn.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)

    whole = model()
    whole.fit(x, y, epochs=4, batch_size=20, verbose=0, callbacks=[reduce()], shuffle=False)

    def crash(epoch, logs):
        if epoch == 1:
            raise _Crash()

    with pytest.raises(_Crash):
        model().fit(x, y, epochs=4, batch_size=20, verbose=0, shuffle=False,
                    callbacks=[reduce(), pynn.callbacks.BackupAndRestore(tmp_path),
                               pynn.callbacks.LambdaCallback(on_epoch_end=crash)])
    resumed = model()
    resumed.fit(x, y, epochs=4, batch_size=20, verbose=0, shuffle=False,
                callbacks=[reduce(), pynn.callbacks.BackupAndRestore(tmp_path)])
    assert resumed.optimizer.learning_rate == whole.optimizer.learning_rate
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
    # a backup written at the last epoch (a later callback failed there): done, deleted
    with pytest.raises(_Crash):
        model().fit(x, y, epochs=2, verbose=0, callbacks=[
            pynn.callbacks.BackupAndRestore(tmp_path),
            pynn.callbacks.LambdaCallback(on_epoch_end=crash)])
    assert [p.name for p in tmp_path.iterdir()] == ["backup-epoch-2.npz"]
    done = model()
    assert done.fit(x, y, epochs=2, verbose=0,
                    callbacks=[pynn.callbacks.BackupAndRestore(tmp_path)]).epoch == []
    assert not list(tmp_path.iterdir())
    # a resume point set by a backup whose fit then failed is not used by the next fit
    with pytest.raises(_Crash):
        model().fit(x, y, epochs=4, verbose=0, callbacks=[
            pynn.callbacks.BackupAndRestore(tmp_path),
            pynn.callbacks.LambdaCallback(on_epoch_end=crash)])
    failing = model()
    with pytest.raises(_Crash):
        failing.fit(x, y, epochs=4, verbose=0, callbacks=[
            pynn.callbacks.BackupAndRestore(tmp_path),
            pynn.callbacks.LambdaCallback(on_train_begin=lambda logs: crash(1, logs))])
    assert failing.fit(x, y, epochs=3, verbose=0).epoch == [0, 1, 2]


# (from a mutation audit: each of these failed on a mutant the other tests let through)
def test_early_stopping_max_mode_needs_min_delta_of_gain():
    es = EarlyStopping(monitor="val_accuracy", min_delta=0.05, patience=1)
    h = _fit(_model(), [_script([0.50, 0.51, 0.52, 0.53], key="val_accuracy"), es], epochs=4)
    assert h.epoch == [0, 1] and es.best == 0.50  # gains of 0.01 are no improvement


def test_early_stopping_restores_the_first_epoch_when_none_is_measurable():
    # a NaN every epoch: nothing improves, the first epoch's weights are the ones kept
    model = _model()
    es = EarlyStopping(patience=5, restore_best_weights=True)
    _fit(model, [_script([np.nan] * 3, stamp_weights=True), es], epochs=3)
    for w in model.get_weights():
        np.testing.assert_array_equal(w, np.zeros(w.shape))


def test_a_custom_crossentropy_metric_is_minimised_in_auto_mode():
    es = EarlyStopping(monitor="val_my_crossentropy", patience=0)
    h = _fit(_model(), [_script([1.0, 0.5, 0.4], key="val_my_crossentropy"), es], epochs=3)
    assert h.epoch == [0, 1, 2] and es.best == 0.4


def test_checkpoint_best_only_keeps_its_best_across_fits(tmp_path):
    # as Keras' (its best is set once, in __init__): a later fit's worse epoch writes nothing
    path = tmp_path / "best.npz"
    cb = ModelCheckpoint(path, save_best_only=True, save_weights_only=True)
    _fit(_model(), [_script([0.1], stamp_weights=True), cb], epochs=1)
    _fit(_model(), [_script([0.5, 0.7], stamp_weights=True), cb], epochs=2)
    reloaded = _model()
    reloaded.load_weights(path)
    assert cb.best == 0.1 and all((w == 0.0).all() for w in reloaded.get_weights())
    model = _model()
    model.set_weights([np.full(w.shape, 7.0) for w in model.get_weights()])
    _fit(model, [_script([0.05, 0.9], stamp_weights=True), cb], epochs=2)
    reloaded.load_weights(path)
    assert cb.best == 0.05 and all((w == 0.0).all() for w in reloaded.get_weights())


def _scripted_fit(values, callbacks, lr=0.1, key="loss"):
    """A fit whose logs[key] reads values epoch by epoch; the learning rates it logged."""
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile(pynn.optimizers.SGD(lr), "mse")
    history = model.fit(np.ones((4, 1)), np.ones(4), epochs=len(values), verbose=0,
                        callbacks=[_script(values, key=key)] + callbacks)
    return model, [round(v, 6) for v in history.history.get("learning_rate", [])]


def test_reduce_lr_on_plateau_counts_patience_as_keras():
    # an improvement resets the wait; a reduction resets it too; min_delta 1e-4 by default
    _, rates = _scripted_fit([1.0, 1.1, 0.9, 1.0, 1.0], [ReduceLROnPlateau(
        monitor="loss", patience=2, factor=0.5, min_delta=0)])
    assert rates[-1] == 0.1  # (0.9 improved at epoch 2: only 2 epochs without since)
    model, rates = _scripted_fit([1.0] * 5, [ReduceLROnPlateau(monitor="loss", patience=2,
                                                               factor=0.5)])
    # (each epoch logs the rate it trained with; a reduction follows at its end)
    assert rates == [0.1, 0.1, 0.1, 0.05, 0.05] and model.optimizer.rate() == 0.025
    model, _ = _scripted_fit([1.0, 0.99995, 0.9999, 0.99985], [ReduceLROnPlateau(
        monitor="loss", patience=1, factor=0.5)])
    assert model.optimizer.rate() == pytest.approx(0.025)  # gains below 1e-4 do not count


def test_backups_and_checkpoints_follow_their_options(tmp_path):
    backup = tmp_path / "made" / "bk"
    es = EarlyStopping(monitor="loss", patience=1)
    _scripted_fit([1.0, 2.0, 3.0, 4.0, 5.0], [es, pynn.callbacks.BackupAndRestore(backup)])
    assert es.stopped_epoch == 1 and not backup.exists()  # a stopped run is done: removed
    best = tmp_path / "best.npz"
    _scripted_fit([5.0], [ModelCheckpoint(best, monitor="loss", save_best_only=True,
                                          initial_value_threshold=1e-9)])
    assert not best.exists()  # no better than the threshold given


def test_metric_and_hook_names_are_read_as_keras(tmp_path):
    def auc(y_true, y_pred):
        return float(np.mean(y_pred))

    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=[auc])
    es = EarlyStopping(monitor="auc")  # a function named auc: higher is better
    history = model.fit(np.ones((4, 1)), np.ones(4), epochs=1, verbose=0, callbacks=[es])
    assert es.best == history.history["auc"][0]
    with pytest.raises(ValueError, match="on_epoch_ned"):
        LambdaCallback(on_epoch_ned=lambda epoch, logs: None)
    with pytest.raises(TypeError, match="raise_error"):
        pynn.callbacks.TerminateOnNaN(raise_error=2)


def test_lambda_callback_takes_none_for_a_hook_as_keras():
    # Keras' LambdaCallback(on_train_begin=None, ...): each hook's default; None was set as
    # the hook and fit failed with "'NoneType' object is not callable"
    seen = []
    cb = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch),
                        on_train_begin=None, on_train_batch_end=None)
    assert not pynn.callbacks.defines_hook(cb, "on_train_batch_end")  # no per-batch calls
    x, y = _data()
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[cb])
    assert seen == [0, 1]
    with pytest.raises(TypeError, match="on_epoch_end must be a function or None, got 3"):
        LambdaCallback(on_epoch_end=3)


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_batch_hooks_get_logs_by_keyword_as_keras(engine):
    # Keras calls callback.on_train_batch_end(batch, logs=logs): a hook written
    # (self, batch, **kwargs) failed here with "takes 2 positional arguments but 3 were given"
    class KeywordHooks(pynn.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_train_batch_end(self, batch, **kwargs):
            self.seen.append(("train", batch, sorted(kwargs["logs"])))

        def on_test_batch_end(self, batch, **kwargs):
            self.seen.append(("test", batch, sorted(kwargs["logs"])))

        def on_predict_batch_end(self, batch, **kwargs):
            self.seen.append(("predict", batch, sorted(kwargs["logs"])))

    x, y = _data(32)
    model = _model()
    cb = KeywordHooks()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[cb], engine=engine)
    model.evaluate(x, y, batch_size=16, callbacks=[cb])
    model.predict(x, batch_size=16, callbacks=[cb])
    assert cb.seen == [("train", 0, ["loss", "mae"]), ("train", 1, ["loss", "mae"]),
                       ("test", 0, ["loss", "mae"]), ("test", 1, ["loss", "mae"]),
                       ("predict", 0, ["outputs"]), ("predict", 1, ["outputs"])]

    class OldNames(pynn.callbacks.Callback):  # on_batch_end, Keras' older name
        def __init__(self):
            super().__init__()
            self.batches = []

        def on_batch_end(self, batch, logs=None):
            self.batches.append((batch, sorted(logs)))

    old = OldNames()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[old], engine=engine)
    assert old.batches == [(0, ["loss", "mae"]), (1, ["loss", "mae"])]


def test_stop_evaluating_and_stop_predicting_from_a_batch_hook():
    # Keras 3's model.stop_evaluating / stop_predicting: evaluate and predict ran every
    # batch regardless
    class StopAfterFirst(pynn.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.test_batches = self.predict_batches = 0

        def on_test_batch_end(self, batch, logs=None):
            self.test_batches += 1
            self.model.stop_evaluating = True

        def on_predict_batch_end(self, batch, logs=None):
            self.predict_batches += 1
            self.model.stop_predicting = True

    x, y = _data(64)
    model = _model()
    cb = StopAfterFirst()
    logs = model.evaluate(x, y, batch_size=8, callbacks=[cb], return_dict=True)
    want = model.evaluate(x[:8], y[:8], return_dict=True)  # the first batch's values
    assert cb.test_batches == 1 and logs == pytest.approx(want)
    out = model.predict(x, batch_size=8, callbacks=[cb])
    assert cb.predict_batches == 1
    np.testing.assert_array_equal(out, model.predict(x[:8]))
    # from batches given one by one too, and the next call starts afresh
    assert model.predict(iter([x[:8], x[8:16]]), callbacks=[cb]).shape == (8, 1)
    assert len(model.predict(x, batch_size=8)) == 64
    model.evaluate(iter([(x[:8], y[:8]), (x[8:], y[8:])]), callbacks=[cb])
    assert cb.test_batches == 2
    # validation inside fit stops too, and fit itself goes on
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, validation_data=(x, y),
                        callbacks=[cb])
    assert len(history.epoch) == 2 and cb.test_batches == 4


def test_model_metrics_are_the_compiled_metric_objects():
    # a callback resetting `for m in self.model.metrics: m.reset_state()` (Keras) failed
    # with AttributeError
    assert pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)]).metrics == []  # not compiled
    model = _model()
    x, y = _data()
    model.fit(x, y, epochs=1, verbose=0)
    metrics = model.metrics
    assert [m.name for m in metrics] == ["mae"] and metrics is not model.metrics
    for m in metrics:
        m.reset_state()
    assert np.isnan(metrics[0].result()) or metrics[0].result() == 0


def test_evaluate_with_test_batch_hooks_takes_kerass_batches_of_32():
    seen = []
    cb = LambdaCallback(on_test_batch_end=lambda batch, logs: seen.append(batch))
    params = {}

    class Params(pynn.callbacks.Callback):
        def on_test_begin(self, logs=None):
            params.update(self.params)

    x, y = _data(256)
    _model().evaluate(x, y, callbacks=[cb, Params()])
    assert seen == list(range(8)) and params["steps"] == 8


def test_validation_freq_as_a_list_of_epochs():
    # Keras 3 validates after the listed epochs (counted from 1); pynn refused a list
    x, y = _data()
    history = _model().fit(x, y, epochs=4, verbose=0, validation_data=(x, y),
                           validation_freq=[1, 3])
    assert len(history.history["val_loss"]) == 2 and len(history.history["loss"]) == 4
    for bad in ([0, 2], [1.5], "1", [True]):
        with pytest.raises(ValueError, match="validation_freq must be a positive integer or "
                                             "a list of epochs"):
            _model().fit(x, y, epochs=1, verbose=0, validation_data=(x, y),
                         validation_freq=bad)


@pytest.mark.parametrize("verbose", ["0", -1, 3, "silent"])
def test_evaluate_and_predict_check_verbose_as_fit_does(verbose):
    x, y = _data()
    model = _model()
    for call in (lambda: model.evaluate(x, y, verbose=verbose),
                 lambda: model.predict(x, verbose=verbose)):
        with pytest.raises(ValueError, match="verbose must be 0, 1, 2 or 'auto'"):
            call()


def test_batch_hooks_whose_logs_parameter_has_another_name_still_run():
    # logs= by keyword (Keras') broke hooks written (batch, log) or lambda b, l: ..., which
    # pynn called positionally before: those still get it positionally
    seen = []

    class OwnNames(pynn.callbacks.Callback):
        def on_train_batch_end(self, batch, log=None):
            seen.append(("train", batch, sorted(log)))

        def on_batch_begin(self, batch, batch_logs=None):  # through on_train_batch_begin
            seen.append(("begin", batch))

    lam = LambdaCallback(on_predict_batch_end=lambda b, l: seen.append(("predict", b)))
    x, y = _data(16)
    model = _model()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[OwnNames()])
    model.predict(x, batch_size=16, callbacks=[lam])
    assert seen == [("begin", 0), ("train", 0, ["loss", "mae"]), ("predict", 0)]


@pytest.mark.parametrize("callbacks", ["foo", ["foo"], [EarlyStopping], 5, [None],
                                       {"cb": EarlyStopping()}])
@pytest.mark.parametrize("call", ["fit", "fit validated", "evaluate", "predict"])
def test_what_is_not_a_callback_is_named_before_anything_runs(callbacks, call):
    """A string among the callbacks was an AttributeError ('str' object has no attribute
    'on_test_batch_begin'), raised by the validation batch size's choice."""
    model = _model()
    x, y = _data()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(TypeError, match="callbacks must be"):
        if call == "fit":
            model.fit(x, y, epochs=1, verbose=0, callbacks=callbacks)
        elif call == "fit validated":
            model.fit(x, y, epochs=1, verbose=0, callbacks=callbacks, validation_split=0.25)
        elif call == "evaluate":
            model.evaluate(x, y, callbacks=callbacks)
        else:
            model.predict(x, callbacks=callbacks)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.training_steps == 0


def test_callback_list_runs_a_training_loop_of_your_own_as_in_keras():
    """Keras 3's CallbackList(callbacks, add_history=, model=, **params) and its hooks, for
    a loop over train_on_batch (it took (callbacks, model, params) and had call() only)."""
    x, y = _data()
    model = _model(lr=0.05)
    seen = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, dict(logs))),
                            on_train_batch_end=lambda batch, logs: seen.append(batch))
    stop = EarlyStopping(monitor="loss", patience=0)
    callbacks = pynn.callbacks.CallbackList([record, stop], add_history=True, model=model,
                                            epochs=5, steps=4, verbose=0)
    assert len(callbacks) == 3 and record.params == {"epochs": 5, "steps": 4, "verbose": 0}
    assert record.model is model and stop.model is model
    values = iter([1.0, 0.5, 0.7, 0.1, 0.05])  # EarlyStopping stops after the third epoch
    callbacks.on_train_begin()
    for epoch in range(5):
        callbacks.on_epoch_begin(epoch)
        for step in range(4):
            callbacks.on_train_batch_begin(step)
            logs = model.train_on_batch(x[step::4], y[step::4], return_dict=True)
            callbacks.on_train_batch_end(step, logs)
        logs["loss"] = next(values)
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)
    assert epoch == 2 and stop.stopped_epoch == 2
    assert model.history.history["loss"] == [1.0, 0.5, 0.7]  # the History it added
    assert seen[:4] == [0, 1, 2, 3] and seen[4][0] == 0
    history = model.history
    assert pynn.callbacks.CallbackList([history], add_history=True).callbacks == [history]


def test_a_callback_list_given_to_fit_runs_its_callbacks(tmp_path):
    epochs = []
    inner = LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch))
    callbacks = pynn.callbacks.CallbackList([inner])
    callbacks.append(CSVLogger(str(tmp_path / "log.csv")))
    _fit(_model(), callbacks, epochs=2)
    _fit(_model(), [callbacks], epochs=1)
    assert epochs == [0, 1, 0]
    assert len(open(tmp_path / "log.csv").read().splitlines()) == 2  # header, one epoch
    with pytest.raises(NotImplementedError, match=r"add_progbar=True\): pynn has no progress"):
        pynn.callbacks.CallbackList([], add_progbar=True)
    with pytest.raises(TypeError, match="Callback objects, got 'csv'"):
        callbacks.append("csv")


# ---- settings changed after construction, batch checkpoints, rates near min_lr, CSV rows ----
def test_monitor_settings_set_after_construction_are_followed(tmp_path):
    rising = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    stop = EarlyStopping(patience=1)
    stop.monitor, stop.mode = "val_score", "max"
    _fit(_model(), [_script(rising, "val_score"), stop], epochs=6)
    assert stop.best == 0.95 and stop.stopped_epoch == 0
    stop.min_delta = 0.2  # each rise is smaller: no improvement after the first
    _fit(_model(), [_script(rising, "val_score"), stop], epochs=6)
    assert stop.best == 0.5 and stop.stopped_epoch == 1
    plateau = ReduceLROnPlateau(patience=1, factor=0.5)
    plateau.monitor, plateau.mode = "val_score", "max"
    model = _model()
    _fit(model, [_script(rising, "val_score"), plateau], epochs=6)
    assert model.optimizer.rate() == pytest.approx(model.optimizer.get_config()["learning_rate"])
    checkpoint = ModelCheckpoint(tmp_path / "e{epoch}.npz", save_best_only=True)
    checkpoint.monitor, checkpoint.mode = "val_score", "max"
    _fit(_model(), [_script(rising, "val_score"), checkpoint], epochs=6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"e{i}.npz" for i in range(1, 7)]
    unknown = EarlyStopping()
    unknown.monitor = "val_score"  # (mode auto cannot tell its direction: refused)
    with pytest.raises(ValueError, match="cannot tell whether 'val_score'"):
        _fit(_model(), [_script(rising, "val_score"), unknown], epochs=1)


@pytest.mark.parametrize("engine", ["auto", "layers"])
def test_checkpoint_every_n_batches(tmp_path, engine):
    x, y = _data()  # (batches of 8: 5 an epoch)
    checkpoint = ModelCheckpoint(tmp_path / "e{epoch}-b{batch}.npz", save_weights_only=True,
                                 save_freq=3)
    seen = []
    model = _model()
    weights_after = LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append([w.copy() for w in
                                                            model.get_weights()]))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, engine=engine,
              callbacks=[checkpoint, weights_after])
    steps = len(seen) // 2
    names = sorted(p.name for p in tmp_path.iterdir())
    # every third batch counted across epochs, as Keras: batches 3 and 6 (the next epoch's 1st)
    expected = [(i // steps + 1, i % steps + 1) for i in range(2, 2 * steps, 3)]
    assert names == sorted(f"e{e}-b{b}.npz" for e, b in expected)
    for (epoch, batch) in expected:
        other = _model()
        other.load_weights(tmp_path / f"e{epoch}-b{batch}.npz")
        for a, b in zip(other.get_weights(), seen[(epoch - 1) * steps + batch - 1]):
            np.testing.assert_array_equal(a, b)


def test_checkpoint_every_n_batches_counts_across_fit_calls(tmp_path):
    # the count restarted at each fit: a loop of one-epoch fits of 4 batches with
    # save_freq=3 saved batch 3 of every fit (the same file), Keras batches 3, 2, 1, 3, ...
    x, y = _data()
    checkpoint = ModelCheckpoint(tmp_path / "f{fit}-b{batch}.npz", save_weights_only=True,
                                 save_freq=3)
    model = _model()
    for fit in range(3):
        checkpoint.filepath = str(tmp_path / f"f{fit}-b{{batch}}.npz")
        model.fit(x[:32], y[:32], epochs=1, batch_size=8, verbose=0, callbacks=[checkpoint])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f0-b3.npz", "f1-b2.npz",
                                                          "f2-b1.npz", "f2-b4.npz"]


def test_an_epoch_checkpoint_costs_no_batch_calls(tmp_path):
    from pynn.callbacks import defines_hook

    assert not defines_hook(ModelCheckpoint(tmp_path / "w.npz"), "on_train_batch_end")
    assert defines_hook(ModelCheckpoint(tmp_path / "w.npz", save_freq=2), "on_train_batch_end")

    class Mine(ModelCheckpoint):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)

    assert defines_hook(Mine(tmp_path / "w.npz"), "on_train_batch_end")


def test_plateau_stops_reducing_at_min_lr_as_float32_does(capsys):
    model = _model()
    model.compile(pynn.optimizers.SGD(0.1), "mse")
    plateau = ReduceLROnPlateau(monitor="val_score", mode="max", patience=1, factor=0.1,
                                min_lr=0.001, cooldown=2, verbose=1)
    _fit(model, [_script([0.5] * 12, "val_score"), plateau], epochs=12)
    lines = [line for line in capsys.readouterr().out.splitlines() if "reducing" in line]
    assert [line.split()[-1] for line in lines] == ["0.01", "0.001"]  # then no 2e-19 "step"
    with pytest.raises(TypeError, match="epsilon is Keras 2's name of min_delta"):
        ReduceLROnPlateau(epsilon=1e-3)
    with pytest.raises(TypeError, match="unexpected arguments"):
        ReduceLROnPlateau(cool_down=3)


def test_csv_logger_writes_arrays_on_one_line_and_follows_an_appended_files_columns(tmp_path):
    path = tmp_path / "log.csv"
    per_class = _script([np.array([0.25, 0.5]), np.array([0.75, 1.0])], "f1")
    _fit(_model(), [per_class, CSVLogger(path)], epochs=2)
    rows = _rows(path)
    assert len(rows) == 3 and rows[1][rows[0].index("f1")] == "[0.25, 0.5]"
    with pytest.warns(RuntimeWarning, match="no column for extra"):
        _fit(_model(), [_script([1.0], "extra"), CSVLogger(path, append=True)], epochs=1)
    appended = _rows(path)
    assert len(appended) == 4 and all(len(row) == len(rows[0]) for row in appended)
    assert appended[3][rows[0].index("f1")] == "NA"


def test_a_checkpoint_subclasss_on_batch_end_still_runs(tmp_path):
    calls = []

    class Counting(ModelCheckpoint):
        def on_batch_end(self, batch, logs=None):  # (Keras' older name of the hook)
            calls.append(batch)

    _fit(_model(), [Counting(tmp_path / "w.npz")], epochs=2)
    assert calls == [0, 1, 2, 3] * 2 and (tmp_path / "w.npz").exists()
