"""Ctrl-C during fit: the step in progress finishes, the model keeps the last completed
step's weights, callbacks get on_train_end, history keeps the finished epochs, and fit
raises KeyboardInterrupt."""

from __future__ import annotations

import os
import signal

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
    # The handler is gone again and training can go on.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
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
