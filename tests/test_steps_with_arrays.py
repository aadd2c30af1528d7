"""steps_per_epoch, validation_steps and steps with arrays, as Keras 3 reads them: an epoch
takes the next batches of the pass over x that the last epoch began and ends early where the
pass ends; without a batch size the steps share the samples out."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import AVAILABLE, import_keras

import pynn

BACKENDS = [b for b in ("cpu", "numpy", "cuda", "cupy") if b in AVAILABLE]


def _data(rng, n=150, features=6):
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] > 0).astype(np.int64)
    return x, y


def _model(backend, features=6):
    pynn.set_seed(11)
    model = pynn.Sequential([pynn.Input((features,)), pynn.Dense(8, activation="relu"),
                             pynn.Dense(2, activation="softmax")])
    model.compile(pynn.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
    return model


class _BatchesPerEpoch(pynn.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.counts = []

    def on_epoch_begin(self, epoch, logs=None):
        self.counts.append(0)

    def on_train_batch_end(self, batch, logs=None):
        assert batch == self.counts[-1]  # numbered within the epoch
        self.counts[-1] += 1


def _max_diff(a, b):
    return max(float(np.abs(p - q).max()) for p, q in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("engine", ["auto", "layers"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_epochs_share_a_pass_out(rng, backend, engine, shuffle):
    x, y = _data(rng)  # 5 batches of 32 a pass: epochs of 2, 2, 1, 2, 2, 1
    counter = _BatchesPerEpoch()
    stepped = _model(backend)
    history = stepped.fit(x, y, batch_size=32, steps_per_epoch=2, epochs=6, verbose=0,
                          shuffle=shuffle, engine=engine, callbacks=[counter])
    assert counter.counts == [2, 2, 1, 2, 2, 1]
    assert history.params["steps"] == 2 and len(history.history["loss"]) == 6
    assert stepped.optimizer.iterations == 10
    # two passes in six epochs train as two whole epochs: the same batches in the same order
    whole = _model(backend)
    whole.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=shuffle, engine=engine)
    assert _max_diff(stepped, whole) <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_epochs_logs_are_their_own_batches(rng, backend):
    x, y = _data(rng)
    stepped = _model(backend)
    history = stepped.fit(x, y, batch_size=50, steps_per_epoch=2, epochs=2, verbose=0,
                          shuffle=False)
    # epoch 2 trained the last 50 samples alone: its loss is theirs, before each step
    replay = _model(backend)
    replay.fit(x[:100], y[:100], batch_size=50, epochs=1, verbose=0, shuffle=False)
    loss, accuracy = replay.train_on_batch(x[100:], y[100:])
    np.testing.assert_allclose(history.history["loss"][1], loss, rtol=1e-5)
    np.testing.assert_allclose(history.history["accuracy"][1], accuracy, rtol=1e-6)
    assert _max_diff(stepped, replay) <= 1e-6


def test_without_a_batch_size_the_steps_share_the_samples_out(rng):
    x, y = _data(rng)
    counter = _BatchesPerEpoch()
    stepped = _model(BACKENDS[0])  # (each fit right after set_seed: the same shuffles)
    stepped.fit(x, y, steps_per_epoch=3, epochs=2, verbose=0, callbacks=[counter])
    sized = _model(BACKENDS[0])
    sized.fit(x, y, batch_size=50, epochs=2, verbose=0)
    assert counter.counts == [3, 3]
    assert _max_diff(stepped, sized) <= 1e-6
    counter.counts.clear()  # 7 steps of 150 samples: batches of 22, the last of 18
    _model(BACKENDS[0]).fit(x, y, steps_per_epoch=7, epochs=1, verbose=0, callbacks=[counter])
    assert counter.counts == [7]


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_and_predict_read_the_first_steps_batches(rng, backend):
    x, y = _data(rng)
    model = _model(backend)
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=32, steps=2),
                               model.evaluate(x[:64], y[:64], batch_size=32), rtol=1e-6)
    w = rng.uniform(0.5, 2.0, size=len(x))
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=40, steps=3, sample_weight=w),
                               model.evaluate(x[:120], y[:120], batch_size=40,
                                              sample_weight=w[:120]), rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(x, y, steps=4), model.evaluate(x, y), rtol=1e-6)
    np.testing.assert_array_equal(model.predict(x, batch_size=32, steps=2), model.predict(x[:64]))
    assert model.predict(x, steps=3).shape == (150, 2)
    assert model.predict(x.tolist(), batch_size=100, steps=1).shape == (100, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_steps_bound_the_validation_batches(rng, backend):
    x, y = _data(rng)
    xv, yv = _data(rng, n=90)
    model = _model(backend)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, validation_data=(xv, yv),
                        validation_steps=2)  # two batches of the fit's 32
    np.testing.assert_allclose(history.history["val_loss"][0],
                               model.evaluate(xv[:64], yv[:64])[0], rtol=1e-6)
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, validation_data=(xv, yv),
                        validation_steps=2, validation_batch_size=20)
    np.testing.assert_allclose(history.history["val_loss"][0],
                               model.evaluate(xv[:40], yv[:40])[0], rtol=1e-6)
    history = model.fit(x, y, epochs=1, verbose=0, validation_split=0.2, validation_steps=2)
    np.testing.assert_allclose(history.history["val_loss"][0],  # shared out: all 30
                               model.evaluate(x[120:], y[120:])[0], rtol=1e-6)
    # with the training data batch by batch too (refused: "validation_steps is for
    # validation_data given batch by batch"); its batch size is its own: the steps share
    # the validation samples out, unless validation_batch_size says
    batches = ((x[i:i + 32], y[i:i + 32]) for i in range(0, 150, 32))
    history = model.fit(batches, epochs=1, verbose=0, validation_data=(xv, yv),
                        validation_steps=2)
    np.testing.assert_allclose(history.history["val_loss"][0],
                               model.evaluate(xv, yv)[0], rtol=1e-6)
    batches = ((x[i:i + 32], y[i:i + 32]) for i in range(0, 150, 32))
    history = model.fit(batches, epochs=1, verbose=0, validation_data=(xv, yv),
                        validation_steps=2, validation_batch_size=20)
    np.testing.assert_allclose(history.history["val_loss"][0],
                               model.evaluate(xv[:40], yv[:40])[0], rtol=1e-6)


@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: m.fit(x, y, batch_size=32, steps_per_epoch=6),
     "steps_per_epoch=6 is more than the 5 batches of 32 in the 150 training samples"),
    (lambda m, x, y: m.fit(x, y, steps_per_epoch=0), "steps_per_epoch must be a positive"),
    (lambda m, x, y: m.fit(x, y, steps_per_epoch=2.0), "steps_per_epoch must be a positive"),
    (lambda m, x, y: m.fit(x, y, validation_steps=2), "validation_steps needs validation data"),
    (lambda m, x, y: m.fit(x, y, batch_size=32, validation_data=(x, y), validation_steps=6),
     "validation_steps=6 is more than the 5 batches of 32 in the 150 validation samples"),
    (lambda m, x, y: m.evaluate(x, y, batch_size=32, steps=6), "steps=6 is more than the 5"),
    (lambda m, x, y: m.predict(x, steps=-1), "steps must be a positive"),
    (lambda m, x, y: m.predict(x, steps=True), "steps must be a positive"),
])
def test_bad_steps_are_named(rng, call, match):
    x, y = _data(rng)
    model = _model(BACKENDS[0])
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=match):
        call(model, x, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing trained


def test_batches_per_epoch_as_keras(rng):
    keras = import_keras()
    x, y = _data(rng)
    km = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, activation="softmax")])
    km.compile("adam", "sparse_categorical_crossentropy")
    counts = []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            counts.append(0)

        def on_train_batch_end(self, batch, logs=None):
            counts[-1] += 1

    for kwargs in (dict(batch_size=32, steps_per_epoch=2, epochs=6),
                   dict(batch_size=16, steps_per_epoch=4, epochs=5),
                   dict(steps_per_epoch=7, epochs=2)):
        counts.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.fit(x, y, verbose=0, callbacks=[Count()], **kwargs)
        counter = _BatchesPerEpoch()
        _model(BACKENDS[0]).fit(x, y, verbose=0, callbacks=[counter], **kwargs)
        assert counter.counts == counts, kwargs


class _Crash(Exception):
    pass


@pytest.mark.parametrize("shuffle", [True, False])
def test_backup_and_restore_resumes_a_pass_where_it_was(rng, tmp_path, shuffle):
    """A run crashed mid-pass (2 of 5 batches an epoch: after epoch 2 the pass is 4 batches
    in) resumes with its pass and order, ending as an uninterrupted run (it began a new pass:
    other batches, other weights)."""
    x, y = _data(rng)
    fit = dict(batch_size=32, steps_per_epoch=2, epochs=6, verbose=0, shuffle=shuffle)
    whole = _model(BACKENDS[0])
    whole.fit(x, y, **fit)

    def crash(epoch, logs):
        if epoch == 1:
            raise _Crash()

    backup = tmp_path / "backup"
    first = _model(BACKENDS[0])
    with pytest.raises(_Crash):
        first.fit(x, y, **fit, callbacks=[pynn.callbacks.BackupAndRestore(backup),
                                          pynn.callbacks.LambdaCallback(on_epoch_end=crash)])
    counter = _BatchesPerEpoch()
    resumed = _model(BACKENDS[0])
    history = resumed.fit(x, y, **fit, callbacks=[pynn.callbacks.BackupAndRestore(backup),
                                                  counter])
    assert history.epoch == [2, 3, 4, 5] and counter.counts == [1, 2, 2, 1]
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_an_endless_dataset_validates_arrays_with_validation_steps(rng):
    x, y = _data(rng)
    read = []

    class Endless(pynn.PyDataset):
        num_batches = None

        def __getitem__(self, i):
            read.append(i)
            j = (i * 16) % len(x)
            return x[j:j + 16], y[j:j + 16]

    history = _model(BACKENDS[0]).fit(x, y, epochs=2, verbose=0, validation_data=Endless(),
                                      validation_steps=2)
    assert len(history.history["val_loss"]) == 2 and len(read) == 4


def test_steps_read_only_the_rows_they_take(rng):
    """predict/evaluate(steps=) slice a numpy x before converting it (a large float64 x was
    converted whole, and its later rows checked: a NaN there failed the call)."""
    x, y = _data(rng)
    x64 = x.astype(np.float64)
    x64[100:] = np.nan
    model = _model(BACKENDS[0])
    np.testing.assert_array_equal(model.predict(x64, batch_size=50, steps=2),
                                  model.predict(x[:100]))
    np.testing.assert_allclose(model.evaluate(x64, y, batch_size=50, steps=2),
                               model.evaluate(x[:100], y[:100]), rtol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        model.predict(x64, batch_size=50, steps=3)


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_run_resumed_with_initial_epoch_continues_its_pass(rng, tmp_path, shuffle):
    """fit(initial_epoch=) after a save and load trains as the uninterrupted run, with
    steps_per_epoch too (it began a new pass: 142 of 1438 random split runs differed)."""
    x, y = _data(rng)
    fit = dict(batch_size=32, steps_per_epoch=2, verbose=0, shuffle=shuffle)
    whole = _model(BACKENDS[0])
    losses = whole.fit(x, y, epochs=5, **fit).history["loss"]
    first = _model(BACKENDS[0])
    first.fit(x, y, epochs=2, **fit)
    first.save(tmp_path / "m.npz")
    resumed = pynn.load_model(tmp_path / "m.npz")
    counter = _BatchesPerEpoch()
    history = resumed.fit(x, y, epochs=5, initial_epoch=2, callbacks=[counter], **fit)
    assert counter.counts == [1, 2, 2]
    np.testing.assert_array_equal(history.history["loss"], losses[2:])
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)
