"""fit / evaluate / predict on data given batch by batch (pynn/batch_sources.py): generators,
iterables read again each epoch, PyDataset (Keras' PyDataset/Sequence) and, when installed,
a PyTorch DataLoader; the same results as the arrays those batches come from."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import AVAILABLE

import pynn
from pynn.batch_sources import BatchSource, PyDataset, is_batch_source

BACKENDS = [b for b in ("cpu", "numpy", "cuda", "cupy") if b in AVAILABLE]


def _data(rng, n=150, features=6):
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return x, y


def _model(backend, features=6, seed=4, built=True):
    pynn.set_seed(seed)
    first = [pynn.Input((features,))] if built else []
    model = pynn.Sequential(first + [pynn.Dense(9, activation="tanh"),
                                     pynn.Dense(2, activation="softmax")])
    model.compile(pynn.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
    return model


def _batches(x, y, size, w=None):
    for i in range(0, len(x), size):
        yield (x[i:i + size], y[i:i + size]) if w is None else \
            (x[i:i + size], y[i:i + size], w[i:i + size])


class Batches(PyDataset):
    def __init__(self, x, y, size, w=None):
        super().__init__()
        self.x, self.y, self.w, self.size = x, y, w, size
        self.epoch_ends = 0
        self.read = []

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        self.read.append(i)
        s = slice(i * self.size, (i + 1) * self.size)
        return (self.x[s], self.y[s]) if self.w is None else (self.x[s], self.y[s], self.w[s])

    def on_epoch_end(self):
        self.epoch_ends += 1


class Reiterable:
    """An iterable read again each epoch (what a DataLoader is)."""

    def __init__(self, x, y, size):
        self.x, self.y, self.size, self.passes = x, y, size, 0

    def __iter__(self):
        self.passes += 1
        return _batches(self.x, self.y, self.size)


class SizedIterator:
    """An iterator that also has a length (as a PyTorch DataLoader's iterator has)."""

    def __init__(self, batches):
        self.batches, self.n = iter(batches), len(batches)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.batches)

    def __len__(self):
        return self.n


def _assert_same_training(a, b):
    np.testing.assert_allclose(a.history.history["loss"], b.history.history["loss"], rtol=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["generator", "pydataset", "iterable"])
def test_batches_train_as_the_arrays_they_come_from(rng, backend, kind):
    x, y = _data(rng)
    epochs, size = 3, 32
    steps = -(-len(x) // size)
    arrays = _model(backend)
    arrays.fit(x, y, batch_size=size, epochs=epochs, shuffle=False, verbose=0)
    given = _model(backend)
    if kind == "generator":  # one stream for all epochs: steps_per_epoch shares it out
        def stream():
            while True:
                yield from _batches(x, y, size)
        given.fit(stream(), steps_per_epoch=steps, epochs=epochs, verbose=0)
    elif kind == "pydataset":
        source = Batches(x, y, size)
        given.fit(source, epochs=epochs, verbose=0, shuffle=False)
        assert source.epoch_ends == epochs and source.read == list(range(steps)) * epochs
    else:
        source = Reiterable(x, y, size)
        given.fit(source, epochs=epochs, verbose=0)
        assert source.passes == epochs
    _assert_same_training(given, arrays)
    assert given.history.history["accuracy"] == pytest.approx(
        arrays.history.history["accuracy"])
    if backend == "cpu":
        assert given.engine_reason is None  # each batch a step of the C++ engine


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_and_class_weights_and_validation(rng, backend):
    x, y = _data(rng)
    w = rng.uniform(0.1, 2, len(x)).astype(np.float32)
    xv, yv = _data(rng, 40)
    arrays = _model(backend)
    arrays.fit(x, y, batch_size=25, epochs=2, shuffle=False, sample_weight=w, verbose=0,
               validation_data=(xv, yv))
    given = _model(backend)
    given.fit(Batches(x, y, 25, w), epochs=2, verbose=0, validation_data=Batches(xv, yv, 16),
              shuffle=False)
    _assert_same_training(given, arrays)
    np.testing.assert_allclose(given.history.history["val_loss"],
                               arrays.history.history["val_loss"], rtol=1e-5)
    weighted = _model(backend)
    weighted.fit(x, y, batch_size=25, epochs=1, shuffle=False, verbose=0,
                 class_weight={0: 1.0, 1: 3.0})
    by_batch = _model(backend)
    by_batch.fit(Batches(x, y, 25), epochs=1, verbose=0, class_weight={0: 1.0, 1: 3.0},
                 shuffle=False)
    _assert_same_training(by_batch, weighted)
    # validation batches bounded by validation_steps: the first 2 of 3
    bounded = _model(backend)
    bounded.fit(Batches(x, y, 25), epochs=1, verbose=0, validation_data=Batches(xv, yv, 16),
                validation_steps=2)
    assert bounded.history.history["val_loss"][0] == pytest.approx(
        bounded.evaluate(xv[:32], yv[:32], batch_size=16)[0], rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_and_predict_take_batches(rng, backend):
    x, y = _data(rng)
    model = _model(backend)
    model.fit(x, y, epochs=1, verbose=0)
    source = Batches(x, y, 40)
    np.testing.assert_allclose(model.evaluate(source), model.evaluate(x, y), rtol=1e-6)
    assert source.epoch_ends == 1
    np.testing.assert_allclose(model.evaluate(_batches(x, y, 40), steps=2),
                               model.evaluate(x[:80], y[:80]), rtol=1e-6)
    np.testing.assert_allclose(model.predict(source), model.predict(x), rtol=1e-6)
    bare = (x[i:i + 40] for i in range(0, len(x), 40))  # x alone per batch
    np.testing.assert_allclose(model.predict(bare), model.predict(x), rtol=1e-6)
    np.testing.assert_allclose(model.predict(Batches(x, y, 40), steps=1), model.predict(x[:40]),
                               rtol=1e-6)


def test_an_unbuilt_model_is_built_by_the_first_batch(rng):
    x, y = _data(rng)
    model = _model(BACKENDS[0], built=False)
    stream = _batches(x, y, 50)
    model.fit(stream, epochs=1, verbose=0)
    assert model.built and model.input_shape == (6,)
    assert next(stream, None) is None  # the first batch, read to build, was trained on too
    assert model.optimizer.iterations == 3
    untouched = _batches(x, y, 50)
    _model(BACKENDS[0], built=False).fit(untouched, epochs=2, initial_epoch=2, verbose=0)
    assert next(untouched) is not None  # no epoch to run: nothing read


def test_a_generator_that_runs_out_stops_training_with_a_warning(rng):
    x, y = _data(rng)
    model = _model(BACKENDS[0])
    begun = []
    cb = pynn.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: begun.append(e))
    with pytest.warns(UserWarning, match=r"ran out after 1 epoch\(s\).*read once"):
        history = model.fit(_batches(x, y, 50), epochs=3, verbose=0, callbacks=[cb])
    assert len(history.epoch) == 1 and model.optimizer.iterations == 3
    # the second epoch was begun (its callbacks run before its data is read, as Keras'),
    # found empty, and not logged (Keras logs it with the first epoch's values)
    assert begun == [0, 1]
    model = _model(BACKENDS[0])
    with pytest.warns(UserWarning, match="ran out after 1 of this epoch's 2 batches"):
        history = model.fit(_batches(x, y, 50), steps_per_epoch=2, epochs=5, verbose=0)
    assert len(history.epoch) == 2 and model.optimizer.iterations == 3
    with pytest.raises(ValueError, match="gave no batches"):
        _model(BACKENDS[0]).fit(iter([]), epochs=2, verbose=0)


def test_steps_per_epoch_continues_where_the_last_epoch_stopped(rng):
    """As Keras: shorter epochs take the next batches, not the first ones again."""
    x, y = _data(rng, n=80)
    source = Batches(x, y, 20)  # 4 batches
    _model(BACKENDS[0]).fit(source, steps_per_epoch=2, epochs=4, verbose=0, shuffle=False)
    assert source.read == [0, 1, 2, 3, 0, 1, 2, 3] and source.epoch_ends == 4
    loader = Reiterable(x, y, 20)
    model = _model(BACKENDS[0])
    model.fit(loader, steps_per_epoch=3, epochs=4, verbose=0)  # 4 batches a pass
    assert model.optimizer.iterations == 3 + 1 + 3 + 1 and loader.passes == 2  # as Keras
    # an iterable shorter than steps_per_epoch: each epoch one pass, every epoch runs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = _model(BACKENDS[0]).fit(Reiterable(x, y, 20), steps_per_epoch=5, epochs=3,
                                          verbose=0)
    assert len(history.epoch) == 3


def test_steps_per_epoch_up_to_the_datasets_length_is_what_callbacks_see(rng):
    """steps_per_epoch equal to the dataset's length is allowed (only more is refused), and
    callbacks' params["steps"] is steps_per_epoch, not the dataset's length."""
    x, y = _data(rng, n=80)
    source = Batches(x, y, 20)  # 4 batches
    history = _model(BACKENDS[0]).fit(source, steps_per_epoch=4, epochs=2, verbose=0,
                                      shuffle=False)
    assert source.read == [0, 1, 2, 3] * 2 and history.params["steps"] == 4
    history = _model(BACKENDS[0]).fit(Batches(x, y, 20), steps_per_epoch=2, epochs=2,
                                      verbose=0)
    assert history.params["steps"] == 2


def test_callbacks_see_steps_as_a_python_int(rng):
    """numpy steps reached callbacks' params as numpy integers: json.dumps(params), as a
    logging callback writes them, failed."""
    import json

    x, y = _data(rng, n=80)
    params = []

    class Params(pynn.callbacks.Callback):
        def on_train_begin(self, logs=None):
            params.append(json.dumps(self.params))

        def on_test_begin(self, logs=None):
            params.append(json.dumps(self.params))

    model = _model(BACKENDS[0])
    model.fit(Batches(x, y, 20), steps_per_epoch=np.int64(2), callbacks=[Params()], verbose=0)
    model.evaluate(Batches(x, y, 20), steps=np.int64(2), callbacks=[Params()], verbose=0)
    assert [json.loads(p)["steps"] for p in params] == [2, 2]


def test_a_pydataset_is_shuffled_by_batch_each_epoch(rng):
    x, y = _data(rng, n=160)

    class Logged(Batches):
        def on_epoch_begin(self):
            self.read.append("begin")

    source = Logged(x, y, 20)  # 8 batches
    pynn.set_seed(8)
    _model(BACKENDS[0]).fit(source, epochs=3, verbose=0)  # shuffle=True by default
    epochs = [source.read[i + 1:i + 9] for i in range(0, 27, 9)]
    assert [source.read[i] for i in range(0, 27, 9)] == ["begin"] * 3
    assert all(sorted(e) == list(range(8)) for e in epochs)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]


def test_a_shuffled_dataset_is_indexed_with_python_ints(rng):
    """__getitem__ received numpy integers (Keras passes ints): a dataset that checks
    isinstance(index, int), or keys a dict by it, broke."""
    x, y = _data(rng, n=80)

    class Strict(Batches):
        def __getitem__(self, i):
            assert type(i) is int, type(i)
            return super().__getitem__(i)

    source = Strict(x, y, 20)
    _model(BACKENDS[0]).fit(source, epochs=2, verbose=0, shuffle=True)
    assert sorted(source.read) == sorted([0, 1, 2, 3] * 2)


def test_validation_from_a_generator_is_the_same_each_epoch(rng):
    x, y = _data(rng)
    xv, yv = _data(rng, 60)
    model = _model(BACKENDS[0])
    history = model.fit(Batches(x, y, 30), epochs=3, verbose=0,
                        validation_data=_batches(xv, yv, 20))  # read once, kept
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(xv, yv)[0],
                                                            rel=1e-6)
    model = _model(BACKENDS[0])
    history = model.fit(Batches(x, y, 30), epochs=3, verbose=0, validation_steps=2,
                        validation_data=_batches(xv, yv, 20))
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(xv[:40], yv[:40])[0], rel=1e-6)


def test_validation_kept_from_a_generator_that_refills_one_array(rng):
    """A generator writing each batch into the same arrays (a common pattern): the kept
    batches are copies, so later epochs validate on all of them, not the last one repeated."""
    x, y = _data(rng)
    xv, yv = _data(rng, 60)

    def refilled():
        bx, by = np.empty((20, xv.shape[1]), np.float32), np.empty(20, np.int64)
        for i in range(0, 60, 20):
            bx[:], by[:] = xv[i:i + 20], yv[i:i + 20]
            yield bx, by

    model = _model(BACKENDS[0])
    history = model.fit(Batches(x, y, 30), epochs=3, verbose=0, validation_data=refilled())
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(xv, yv)[0],
                                                            rel=1e-6)


def test_steps_past_the_end_of_the_data_warn(rng):
    """Keras 3 warns when evaluate's or predict's steps (or fit's validation_steps) ask for
    more batches than the data gives; pynn read what there was in silence."""
    x, y = _data(rng, 60)
    model = _model(BACKENDS[0])
    with pytest.warns(UserWarning, match=r"evaluate: the data ran out after 3 of the 5 "
                                         r"batches asked for \(steps\)"):
        model.evaluate(_batches(x, y, 20), steps=5)
    with pytest.warns(UserWarning, match=r"predict: the data ran out after 3 of the 5"):
        assert len(model.predict(_batches(x, y, 20), steps=5)) == 60
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=3, verbose=0, validation_data=_batches(x, y, 20),
                  validation_steps=4)
    messages = [str(w.message) for w in seen]
    assert messages.count("validation: the data ran out after 3 of the 4 batches asked for "
                          "(validation_steps)") == 1  # (once, not each epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.evaluate(_batches(x, y, 20), steps=3)  # as many as asked for


def test_validation_from_an_iterator_with_a_length_is_the_same_each_epoch(rng):
    """An iterator with __len__ (a DataLoader's) is read once and its batches kept, as any
    iterator: read as an iterable, validation ran on the first epoch only."""
    x, y = _data(rng, n=80)
    xv, yv = _data(rng, 40)
    validation = SizedIterator([(xv[:20], yv[:20]), (xv[20:], yv[20:])])
    model = _model(BACKENDS[0])
    history = model.fit(Batches(x, y, 20), epochs=3, verbose=0, validation_data=validation)
    assert len(history.history["val_loss"]) == 3
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(xv, yv, verbose=0)[0], rel=1e-6)


def test_what_is_data_and_what_gives_batches(rng):
    import array
    import collections

    x, y = _data(rng)
    for data in (range(5), array.array("d", [1.0, 2.0]), memoryview(b"ab"), bytearray(b"ab"),
                 collections.deque([1.0, 2.0]), {1.0, 2.0}, {"a": 1}.values(), [(x, y)],
                 (x, y), x, np.float32(1),
                 collections.UserList([1.0, 2.0])):  # sized, indexable, no on_epoch_end
        assert not is_batch_source(data), type(data)

    class DuckSequence:  # Keras' Sequence without pynn: indexable, with on_epoch_end
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return x, y

        def on_epoch_end(self):
            pass

    class IndexableIterator(SizedIterator):  # an iterator first, though it can be indexed
        def __getitem__(self, i):
            return (x, y)[i]

    halves = [(x[:75], y[:75]), (x[75:], y[75:])]
    for source in (_batches(x, y, 10), Batches(x, y, 10), Reiterable(x, y, 10), DuckSequence(),
                   map(lambda i: (x, y), range(2)), IndexableIterator(halves)):
        assert is_batch_source(source), type(source)
    assert _model(BACKENDS[0]).predict(collections.deque(x.tolist())).shape == (len(x), 2)
    assert _model(BACKENDS[0]).predict(IndexableIterator(halves)).shape == (len(x), 2)


def test_fits_other_arguments_with_batches(rng, capsys):
    x, y = _data(rng)
    model = _model(BACKENDS[0])
    with pytest.warns(UserWarning, match="batch_size=8 is ignored"):
        model.fit(Batches(x, y, 25), batch_size=8, epochs=1, verbose=0)  # Keras ignores it
    assert model.optimizer.iterations == 6
    frozen = _model(BACKENDS[0])
    frozen.layers[1].trainable = False
    calls = []
    cb = pynn.callbacks.LambdaCallback(on_train_begin=lambda logs: calls.append("begin"))
    sub = type("Sub", (pynn.Dense,), {})  # a subclass: not the engine's
    odd = pynn.Sequential([pynn.Input((6,)), sub(2, activation="softmax")])
    odd.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="native engine cannot train this model"):
        odd.fit(Batches(x, y, 25), engine="native", callbacks=[cb], verbose=0)
    assert not calls  # refused before training began


def test_callbacks_see_each_batch_and_can_stop(rng):
    x, y = _data(rng)
    seen = []
    model = _model(BACKENDS[0])

    def on_batch_end(batch, logs):
        seen.append((batch, set(logs)))
        if len(seen) == 5:
            model.stop_training = True

    cb = pynn.callbacks.LambdaCallback(on_train_batch_end=on_batch_end)
    history = model.fit(Batches(x, y, 20), epochs=3, verbose=0, callbacks=[cb])
    assert [b for b, _ in seen] == [0, 1, 2, 3, 4]
    assert seen[0][1] == {"loss", "accuracy"}
    assert len(history.epoch) == 1 and model.optimizer.iterations == 5
    stopper = pynn.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10)
    model = _model(BACKENDS[0])
    assert len(model.fit(Batches(x, y, 20), epochs=6, verbose=0,
                         callbacks=[stopper]).epoch) == 2


def test_pytorch_dataloader(rng):
    torch = pytest.importorskip("torch")
    x, y = _data(rng)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
        batch_size=32, shuffle=False)
    given, arrays = _model(BACKENDS[0]), _model(BACKENDS[0])
    given.fit(loader, epochs=2, verbose=0)
    arrays.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    _assert_same_training(given, arrays)
    np.testing.assert_allclose(given.predict(loader), given.predict(x), rtol=1e-6)


def test_progress_without_a_known_length(rng, capsys):
    x, y = _data(rng)
    model = _model(BACKENDS[0])
    model.fit(_batches(x, y, 50), epochs=1, verbose=2)
    assert "Epoch 1/1" in capsys.readouterr().out


@pytest.mark.parametrize("call,match", [
    (lambda m, s, x, y: m.fit(s, y), "y must be None"),
    (lambda m, s, x, y: m.fit(s, sample_weight=np.ones(len(x))), "sample_weight must be None"),
    (lambda m, s, x, y: m.fit(s, validation_split=0.2), "validation_split needs arrays"),
    (lambda m, s, x, y: m.fit(s, steps_per_epoch=0), "steps_per_epoch must be a positive"),
    (lambda m, s, x, y: m.fit(s, steps_per_epoch=9), "more than the dataset's 8 batches"),
    (lambda m, s, x, y: m.fit(s, engine="fast"), "engine must be"),
    (lambda m, s, x, y: m.fit(s, validation_data=[1, 2, 3, 4]), "validation_data must be"),
    (lambda m, s, x, y: m.evaluate(s, y), "y must be None"),
    (lambda m, s, x, y: m.predict(s, batch_size=4), "batch_size must be None"),
    (lambda m, s, x, y: m.fit(iter([(x[:5],)])), "a batch has no targets"),
    (lambda m, s, x, y: m.fit(iter([(x[:0], y[:0])])), "x is empty"),
    (lambda m, s, x, y: m.fit(iter([(x, y, None, None)])), "of 4 items"),
    (lambda m, s, x, y: m.fit(iter([x[:5]])), "must be a tuple"),
    (lambda m, s, x, y: m.evaluate(iter([x[:5]])), "evaluate: a batch must be a tuple"),
    (lambda m, s, x, y: m.fit(iter([(x[:5], y[:4])])), "different numbers of samples"),
    (lambda m, s, x, y: m.fit(iter([(x[:5, :3], y[:5])])), "x"),
    (lambda m, s, x, y: m.evaluate(iter([])), "gave no batches"),
    (lambda m, s, x, y: m.predict(iter([])), "gave no batches"),
    (lambda m, s, x, y: m.fit(Batches(x[:0], y[:0], 20)), "gave no batches"),  # len() 0
])
def test_bad_batches_are_named(rng, call, match):
    x, y = _data(rng)
    model = _model(BACKENDS[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty source also warns that it ran out
        with pytest.raises(ValueError, match=match):
            call(model, Batches(x, y, 20), x, y)


def test_a_dataset_with_a_bad_length_is_named(rng):
    class Broken(PyDataset):
        def __len__(self):
            return 2.5

    with pytest.raises((TypeError, ValueError)):
        _model(BACKENDS[0]).fit(Broken(), epochs=1, verbose=0)
    with pytest.raises(NotImplementedError, match="must define __getitem__"):
        type("Half", (PyDataset,), {"__len__": lambda self: 1})()[0]


def test_a_pydataset_run_resumes_with_backup_and_restore(rng, tmp_path):
    """An unbuilt model reads a batch to build itself before the callbacks begin: that
    pass's order came from the new run's seed, not the restored one (the resumed epoch
    trained on another order)."""
    x, y = _data(rng, n=120)

    class Crash(Exception):
        pass

    def crash(epoch, logs):
        if epoch == 1:
            raise Crash()

    def run(callbacks, seed=2):
        model = _model(BACKENDS[0], seed=seed, built=False)
        model.fit(Batches(x, y, 20), epochs=4, verbose=0, callbacks=callbacks)
        return model

    whole = run([])
    with pytest.raises(Crash):
        run([pynn.callbacks.BackupAndRestore(tmp_path),
             pynn.callbacks.LambdaCallback(on_epoch_end=crash)])
    resumed = run([pynn.callbacks.BackupAndRestore(tmp_path)], seed=9)
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)


class _Endless(pynn.utils.PyDataset):
    """Keras 3's endless PyDataset: num_batches None, no __len__; batch i from seed i."""

    def __init__(self, seen, **kw):
        super().__init__(**kw)
        self.seen = seen

    @property
    def num_batches(self):
        return None

    def __getitem__(self, i):
        self.seen.append(i)
        x = np.random.default_rng(i).normal(size=(4, 3)).astype(np.float32)
        return x, x[:, :1]


class _DuckEndless:
    """The same without pynn's base (as Keras' own PyDataset subclass is to pynn)."""

    num_batches = None

    def __getitem__(self, i):
        x = np.random.default_rng(i).normal(size=(4, 3)).astype(np.float32)
        return x, x[:, :1]

    def on_epoch_end(self):
        pass


def test_an_endless_pydataset_reads_on_across_epochs_as_keras_3():
    seen = []
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    h = model.fit(_Endless(seen), epochs=2, steps_per_epoch=3, verbose=0)
    assert seen == [0, 1, 2, 3, 4, 5] and len(h.history["loss"]) == 2  # (Keras: the same)
    del seen[:]
    model.evaluate(_Endless(seen), steps=2, verbose=0)
    assert seen == [0, 1]
    assert model.predict(_DuckEndless(), steps=2, verbose=0).shape == (8, 1)
    model.fit(_DuckEndless(), epochs=1, steps_per_epoch=2, verbose=0)
    for call in (lambda: model.fit(_Endless([]), epochs=1, verbose=0),
                 lambda: model.predict(_DuckEndless(), verbose=0)):
        with pytest.raises(ValueError, match="the dataset is endless .*: give"):
            call()


def test_a_batch_source_refuses_what_gives_no_batches_at_once():
    """BatchSource (public in pynn.batch_sources) refused a non-iterable only when read."""
    with pytest.raises(TypeError, match="fit: cannot read batches from int"):
        BatchSource(5)


def test_parallel_loading_arguments_are_taken_with_a_warning():
    """Keras' workers/use_multiprocessing are accepted for ported code, but pynn reads the
    batches in the training thread: asking for more than one worker says so."""
    with pytest.warns(UserWarning, match="workers=4 .*no parallel loading"):
        PyDataset(workers=4)
    with pytest.warns(UserWarning, match="use_multiprocessing=True"):
        PyDataset(use_multiprocessing=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PyDataset(workers=1, max_queue_size=5)


def test_bounded_validation_batches_start_over_each_epoch(rng):
    # validation_steps=2 of a 4-batch PyDataset: batches 0 and 1 every epoch (the same
    # validation set each time), not a pass continued across epochs
    x, y = _data(rng)
    xv, yv = _data(rng, 64)
    validation = Batches(xv, yv, 16)
    model = _model(BACKENDS[0])
    history = model.fit(x, y, epochs=3, verbose=0, validation_data=validation,
                        validation_steps=2)
    assert validation.read == [0, 1] * 3
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(xv[:32], yv[:32], batch_size=16)[0], rel=1e-6)


def test_on_epoch_begin_runs_before_the_epochs_data_is_read(rng):
    # A DataLoader's sampler fixes its order when iterated: PyTorch code calls
    # sampler.set_epoch(epoch) from on_epoch_begin; pynn read each epoch's first batch
    # first, so every epoch trained in the previous epoch's order
    x, y = _data(rng, n=40)

    class EpochSeeded(Reiterable):
        epoch = -1

        def __iter__(self):
            self.used = getattr(self, "used", []) + [self.epoch]
            return super().__iter__()

    loader = EpochSeeded(x, y, 10)
    model = _model(BACKENDS[0])
    setter = pynn.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: setattr(loader, "epoch", epoch))
    model.fit(loader, epochs=3, verbose=0, callbacks=[setter])
    assert loader.used == [0, 1, 2]
    # a PyDataset's own on_epoch_begin runs after the callbacks' (as Keras')
    order = []

    class Data(pynn.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return x[i * 10:(i + 1) * 10], y[i * 10:(i + 1) * 10]

        def on_epoch_begin(self):
            order.append("dataset")

    log = pynn.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: order.append("callback"))
    _model(BACKENDS[0]).fit(Data(), epochs=2, verbose=0, callbacks=[log])
    assert order == ["callback", "dataset"] * 2


def test_a_validation_generator_stopped_early_still_validates_on_the_same_batches(rng):
    """Its batches were kept only once a validation read them all: one a test batch hook
    stopped (stop_evaluating) kept none, and the next validations went on with the
    generator's later batches (epoch 2 on batches 0-1, epoch 3 on 2-3)."""
    x, y = _data(rng, n=64)
    read, seen = [], []

    def validation():
        for i in range(4):
            read.append(i)
            yield x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]

    class StopFirstValidation(pynn.callbacks.Callback):
        def on_test_batch_begin(self, batch, logs=None):
            seen.append(batch)

        def on_test_batch_end(self, batch, logs=None):
            if len(seen) == 2:
                self.model.stop_evaluating = True

    model = _model("numpy")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_data=validation(),
              callbacks=[StopFirstValidation()])
    assert read == [0, 1, 2, 3]  # read once
    assert seen == [0, 1, 0, 1, 2, 3, 0, 1, 2, 3]  # the second and third: all four


@pytest.mark.parametrize("what", ["fit", "predict"])
def test_a_batch_given_as_a_list_of_rows_is_not_read_as_x_and_y(rng, what):
    """[[1.0], [2.0]] was read as x [1.0] and y [2.0]: predict gave one value for two rows,
    fit trained one sample, without a word."""
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    rows = [[1.0], [2.0], [3.0], [4.0]]
    if what == "predict":
        got = model.predict(iter([rows[:2], rows[2:]]))
        np.testing.assert_allclose(got, model.predict(np.array(rows)), rtol=1e-6)
    else:
        with pytest.raises(ValueError, match="a batch given as a list is read as .* only when "
                                             "it holds arrays; this one holds list items"):
            model.fit(iter([rows[:2]]), verbose=0)
        assert model.optimizer.iterations == 0
    arrays = [np.array(rows[:2]), np.array([[1.0], [2.0]])]  # a list of arrays: (x, y)
    if what == "fit":
        model.fit(iter([arrays]), verbose=0)
        assert model.optimizer.iterations == 1


@pytest.mark.parametrize("with_len", [False, True])
def test_a_dataset_declaring_num_batches_gives_that_many(rng, with_len):
    """Keras 3 reads num_batches batches: a dataset defining it without __len__ was taken
    for data ("x must be numeric"), and one whose __len__ said more gave __len__'s."""
    x, _ = _data(rng, n=40)

    class Declared:
        num_batches = 2

        def __getitem__(self, i):
            return x[i * 5:(i + 1) * 5]

        def on_epoch_end(self):
            pass

    if with_len:
        Declared.__len__ = lambda self: 8
    model = _model("numpy")
    assert is_batch_source(Declared())
    np.testing.assert_allclose(model.predict(Declared()), model.predict(x[:10]), rtol=1e-6)


def test_a_dataset_that_shrinks_gives_its_new_count_of_batches(rng):
    """Its on_epoch_end dropping batches, __getitem__ past the new end raised mid-fit."""
    x, y = _data(rng, n=50)

    class Shrinking(Batches):
        def __len__(self):
            return 2 if self.epoch_ends else 5

    data = Shrinking(x, y, 10)
    model = _model("numpy")
    history = model.fit(data, epochs=3, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 3
    assert data.read == [0, 1, 2, 3, 4, 0, 1, 0, 1] and model.optimizer.iterations == 9

    class Dipping(Batches):  # (5 batches, then 2, then 5 again: each epoch its count)
        def __len__(self):
            return 2 if self.epoch_ends == 1 else 5

    data = Dipping(x, y, 10)
    model.fit(data, epochs=3, verbose=0, shuffle=False)
    assert data.read == [0, 1, 2, 3, 4, 0, 1, 0, 1, 2, 3, 4]


def test_errors_in_validation_batches_say_they_come_from_validation(rng):
    x, y = _data(rng, n=40)
    model = _model("numpy")
    with pytest.raises(ValueError, match="validation x has 2 features"):
        model.fit(x, y, epochs=1, verbose=0,
                  validation_data=Batches(x[:, :2], y, 10))
    with pytest.raises(ValueError, match="validation_data: .*label 6 is out of range"):
        model.fit(x, y, epochs=1, verbose=0,
                  validation_data=Batches(x, np.full(40, 6), 10))
