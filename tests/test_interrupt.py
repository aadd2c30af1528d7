"""Ctrl-C during fit: the step in progress finishes, the model keeps the last completed
step's weights, callbacks get on_train_end, history keeps the finished epochs, and fit
raises KeyboardInterrupt."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

import pynn
from pynn.callbacks import Callback, LambdaCallback


def _model():
    pynn.set_seed(4)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(8, activation="relu"), pynn.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
Y = X.sum(axis=1)


@pytest.mark.parametrize("engine", ["layers", "native"])
def test_ctrl_c_stops_after_the_current_step(engine):
    if engine == "native" and pynn.engine.unsupported_reason(_model()) is not None:
        pytest.skip("native engine unavailable")
    ended = []

    def press_ctrl_c(batch, logs):
        if len(model.history.epoch) == 1 and batch == 3:
            os.kill(os.getpid(), signal.SIGINT)

    class End(Callback):
        def on_train_end(self, logs=None):
            ended.append(True)

    model = _model()
    with pytest.raises(KeyboardInterrupt, match="interrupted after 12 steps"):
        model.fit(X, Y, epochs=5, batch_size=8, verbose=0, engine=engine,
                  callbacks=[LambdaCallback(on_train_batch_end=press_ctrl_c), End()])
    assert ended == [True]
    assert len(model.history.history["loss"]) == 1  # the finished epoch only
    assert model.optimizer.iterations == 8 + 4

    # The same 12 steps without an interrupt give exactly these weights.
    reference = _model()

    def stop(batch, logs):
        if len(reference.history.epoch) == 1 and batch == 3:
            reference.stop_training = True

    reference.fit(X, Y, epochs=5, batch_size=8, verbose=0, engine=engine,
                  callbacks=[LambdaCallback(on_train_batch_end=stop)])
    assert reference.optimizer.iterations == 12
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The handler is gone again (Python's, or train_on_batch's, which raises at once
    # outside a step) and training can go on.
    assert signal.getsignal(signal.SIGINT) in (signal.default_int_handler,
                                               pynn.interrupts._steps_handler)
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0, engine=engine)
    assert model.optimizer.iterations == 20


def test_ctrl_c_at_an_epoch_end_begins_no_other_epoch():
    # The next epoch's on_epoch_begin ran (a LearningRateScheduler stepped once more than the
    # epochs trained, so a resumed run started from the wrong rate).
    began = []
    model = _model()
    callbacks = [LambdaCallback(on_epoch_begin=lambda epoch, logs: began.append(epoch),
                                on_epoch_end=lambda epoch, logs: epoch == 0
                                and os.kill(os.getpid(), signal.SIGINT)),
                 pynn.callbacks.LearningRateScheduler(lambda epoch, lr: 0.5 ** epoch * 0.01)]
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, epochs=3, batch_size=8, verbose=0, callbacks=callbacks)
    assert began == [0]
    assert model.history.epoch == [0]
    assert model.optimizer.learning_rate == 0.01


@pytest.mark.parametrize("prelu", [False, True])  # the native engine, the layer path
def test_ctrl_c_during_train_on_batch_is_raised_after_the_step(prelu):
    """A SIGINT during the C++ step was raised before the step count was advanced (the
    weights of step k + 1, the count k: Adam's corrections and Dropout masks one behind
    after), and on the layer path between two weights' updates."""
    def make():
        model = _model() if not prelu else None
        if prelu:
            pynn.set_seed(4)
            model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(8), pynn.layers.PReLU(),
                                     pynn.Dense(1)])
            model.compile(optimizer="adam", loss="mse")
        return model

    model, reference = make(), make()
    for m in (model, reference):
        m.train_on_batch(X[:16], Y[:16])
    trainer = model._batch_trainer
    step = trainer.step

    def interrupted_step(*args):
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came in the middle of it
        return step(*args)

    trainer.step = interrupted_step
    with pytest.raises(KeyboardInterrupt):
        model.train_on_batch(X[16:32], Y[16:32])
    reference.train_on_batch(X[16:32], Y[16:32])
    assert model.optimizer.training_steps == reference.optimizer.training_steps == 2
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    trainer.step = step
    model.train_on_batch(X[32:48], Y[32:48])  # trains on, no interrupt left pending
    assert model.optimizer.training_steps == 3


def test_two_threads_do_not_train_one_model_at_once():
    """Their steps interleaved matched no order of them (Adam's step counts read twice):
    the second is refused; the thread training may train again (a fit's callback)."""
    import threading

    model = _model()
    inside, leave = threading.Event(), threading.Event()

    def train():
        with model._training("fit"):
            inside.set()
            leave.wait(10)

    worker = threading.Thread(target=train)
    worker.start()
    inside.wait(10)
    try:
        with pytest.raises(RuntimeError, match="another thread is training this model"):
            model.train_on_batch(X[:8], Y[:8])
        with pytest.raises(RuntimeError, match="another thread is training this model"):
            model.fit(X, Y, epochs=1, verbose=0)
    finally:
        leave.set()
        worker.join()
    calls = []
    again = LambdaCallback(on_batch_end=lambda b, logs: calls.append(
        model.train_on_batch(X[:8], Y[:8])) if not calls else None)
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0, callbacks=[again])
    assert len(calls) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_process_forked_during_fit_takes_ctrl_c_at_once():
    """A child forked during fit (a DataLoader's workers, a callback's pool) inherited fit's
    handler: its first Ctrl-C only printed "finishing the current step" and it ran on."""
    results = []

    def fork_and_interrupt(epoch, logs):
        pid = os.fork()
        if pid == 0:  # the child: Ctrl-C must interrupt it now
            code = 3
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(2)  # (fit's deferring handler: only a message, then the sleep)
            except KeyboardInterrupt:
                code = 0
            finally:
                os._exit(code)
        results.append(os.waitpid(pid, 0)[1])

    model = _model()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0,
              callbacks=[LambdaCallback(on_epoch_begin=fork_and_interrupt)])
    assert [os.waitstatus_to_exitcode(status) for status in results] == [0]
    # the parent's fit still defers its own Ctrl-C, and puts the handler back after
    assert signal.getsignal(signal.SIGINT) in (signal.default_int_handler,
                                               pynn.interrupts._steps_handler)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_process_forked_in_a_train_on_batch_step_takes_ctrl_c_at_once():
    """A child forked inside a step (by a metric of the user's) that went on out of the step
    counted it out twice: -1 steps 'in progress', and its first Ctrl-C was held back."""
    forks = []

    def forking_metric(y_true, y_pred):
        if not forks:
            forks.append(os.fork())
        return 0.0

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=[forking_metric])
    model.train_on_batch(X[:8], Y[:8])
    if forks[0] == 0:  # the child, out of the step
        code = 3
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(2)
        except KeyboardInterrupt:
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(forks[0], 0)[1]) == 0
