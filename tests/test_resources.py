"""Resources a long-running process must get back: the datasets fitted on are freed when
dropped (not only at Python's next full collection), a dropped model's optimizer trains the
next one, and BackupAndRestore removes the folder it made. From a helper's leak audit."""

from __future__ import annotations

import gc
import os
import weakref

import pytest

import pynn


@pytest.fixture
def no_cyclic_collection():
    """Only reference counting frees objects: a reference cycle shows as an object alive."""
    was_enabled = gc.isenabled()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


def _model(units=1):
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3), pynn.Dense(units)])
    model.compile("adam", "mse")
    return model


def test_an_optimizer_of_a_dropped_fitted_model_trains_a_new_one(rng, no_cyclic_collection):
    """A fitted model and its History refer to each other (as in Keras 3: history.model is
    the model, model.history the History), so a dropped one waits for the cyclic collector;
    its optimizer is not refused to the next model meanwhile ("already trains another")."""
    x, y = rng.random((64, 4)), rng.random((64, 1))
    optimizer = pynn.optimizers.Adam()
    for _ in range(3):
        model = _model()
        model.compile(optimizer, "mse")
        history = model.fit(x, y, verbose=0)
        assert history.model is model and model.history is history
        del model, history

    def fit_and_return_history():
        model = _model()
        return model.fit(x, y, verbose=0)

    kept = fit_and_return_history()
    assert kept.model.predict(x).shape == (64, 1)  # (Keras 3 keeps it too)


def test_a_dataset_fitted_on_is_freed_when_dropped(rng, no_cyclic_collection):
    x, y = rng.random((64, 4)), rng.random((64, 1))

    class Batches(pynn.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]

    model = _model()
    refs = []
    for shuffle in (True, False, True):
        data = Batches()
        model.fit(data, epochs=2, verbose=0, shuffle=shuffle)
        refs.append(weakref.ref(data))
        del data  # the shuffled order's closure over the batch source made a cycle
    assert not any(ref() is not None for ref in refs)


def test_backup_and_restore_removes_the_folder_it_made(rng, tmp_path):
    x, y = rng.random((16, 4)), rng.random((16, 1))
    made = tmp_path / "backup"
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[pynn.callbacks.BackupAndRestore(made)])
    assert not made.exists()
    mine = tmp_path / "mine"
    mine.mkdir()  # a folder of the user's stays
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[pynn.callbacks.BackupAndRestore(mine)])
    assert mine.is_dir() and not os.listdir(mine)


def test_a_resumed_run_leaves_a_backup_folder_of_the_users(rng, tmp_path):
    # The run that wrote into the user's folder crashed; the one that resumes (a new
    # callback, as in a new process) deletes the backup and leaves the folder.
    x, y = rng.random((16, 4)), rng.random((16, 1))

    class Crash(pynn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("crash")

    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(RuntimeError, match="crash"):
        _model().fit(x, y, epochs=4, verbose=0,
                     callbacks=[pynn.callbacks.BackupAndRestore(mine), Crash()])
    assert os.listdir(mine) == ["backup-epoch-2.npz"]
    history = _model().fit(x, y, epochs=4, verbose=0,
                           callbacks=[pynn.callbacks.BackupAndRestore(mine)])
    assert len(history.history["loss"]) == 2  # resumed after epoch 2
    assert mine.is_dir() and not os.listdir(mine)


def test_a_backup_folder_with_something_else_in_it_stays_and_stays_ours(rng, tmp_path):
    x, y = rng.random((16, 4)), rng.random((16, 1))
    made = tmp_path / "backup"

    class Stray(pynn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            (made / "notes.txt").write_text("mine")  # a file of the user's lands in it

    _model().fit(x, y, epochs=2, verbose=0,
                 callbacks=[pynn.callbacks.BackupAndRestore(made), Stray()])
    assert sorted(p.name for p in made.iterdir()) == [".made-by-backup-and-restore",
                                                       "notes.txt"]
    (made / "notes.txt").unlink()
    _model().fit(x, y, epochs=2, verbose=0, callbacks=[pynn.callbacks.BackupAndRestore(made)])
    assert not made.exists()  # still known as the callback's: removed once empty
