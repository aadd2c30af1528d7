"""What fit prints: a tqdm bar per epoch on a terminal, one line per epoch elsewhere (log files
must not fill with per-step lines), nothing with verbose=0."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest

from pynn.progress import EpochProgress, _per_step


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(verbose, stream, epochs=2, steps=5, done=None):
    progress = EpochProgress(verbose, epochs, steps, stream=stream)
    for epoch in range(epochs):
        progress.epoch_begin(epoch)
        done = steps if done is None else done
        for step in range(done):
            progress.batch_end(step, {"loss": 1.0 / (step + 1)})
        progress.epoch_end(epoch, {"loss": 0.25, "val_loss": 0.5}, done)
    progress.close()
    return stream.getvalue()


@pytest.mark.parametrize("verbose", [1, 2, "auto"])
def test_one_line_per_epoch_when_not_a_terminal(verbose):
    out = _run(verbose, io.StringIO())
    assert "\r" not in out
    lines = out.splitlines()
    # Keras' verbose=2 line (batches done of the epoch's, seconds, time per step), the
    # epoch in front
    assert len(lines) == 2
    assert re.fullmatch(r"Epoch 2/2 - 5/5 - \d+\.\ds - \d+(s|ms|us)/step - "
                        r"loss: 0\.2500 - val_loss: 0\.5000", lines[1]), lines[1]
    # an epoch a callback stopped after 3 batches; a generator of unknown length
    assert " - 3/5 - " in _run(2, io.StringIO(), done=3)
    assert re.match(r"Epoch 1/2 - 5 - ", _run(2, io.StringIO(), steps=None, done=5))


@pytest.mark.parametrize("seconds, shown", [(2.4, "2s/step"), (0.0123, "12ms/step"),
                                            (0.000274, "274us/step")])
def test_time_per_step_in_kerass_units(seconds, shown):
    assert _per_step(seconds) == shown


def test_a_bar_on_a_terminal():
    pytest.importorskip("tqdm")  # a dependency of pynn: present wherever pynn is installed
    out = _run(1, Terminal())
    assert "\r" in out and "Epoch 2/2" in out and "/5" in out
    assert out.count("loss: 0.2500 - val_loss: 0.5000\n") == 2  # each epoch ends in its line
    assert _run(2, Terminal()).count("\n") == 2  # verbose=2: lines even on a terminal


def test_a_narrow_terminal_still_shows_every_metric():
    # The bar cut its metrics at the terminal's width, so validation's never showed.
    pytest.importorskip("tqdm")
    pty = pytest.importorskip("pty")
    import fcntl
    import os
    import select
    import struct
    import termios

    master, replica = pty.openpty()
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    logs = {"loss": 0.25, "accuracy": 0.75, "val_loss": 0.5, "val_accuracy": 0.625}
    with os.fdopen(replica, "w") as stream:
        progress = EpochProgress(1, 1, 50, stream=stream)
        assert progress.mode == "bar"
        progress.epoch_begin(0)
        for step in range(50):
            progress.batch_end(step, logs)
        progress.epoch_end(0, logs)
        progress.close()
        stream.flush()
        out = b""
        while select.select([master], [], [], 0.5)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            out += chunk
    os.close(master)
    assert "val_accuracy: 0.6250" in out.decode(errors="replace")


def test_a_jupyter_output_stream_gets_the_bar():
    OutStream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})
    assert EpochProgress(1, 1, 1, stream=OutStream()).mode == ("bar" if _has_tqdm() else "line")


def _has_tqdm():
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_terminal_without_tqdm_gets_lines(monkeypatch):
    """An install without dependencies: fit still trains and reports (it raised
    ModuleNotFoundError after on_train_begin had already run)."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    out = _run(1, Terminal())
    assert "\r" not in out and len(out.splitlines()) == 2


def test_quiet_and_bad_verbose():
    assert _run(0, Terminal()) == ""
    with pytest.raises(ValueError, match="verbose must be 0, 1, 2 or 'auto'"):
        EpochProgress(3, 1, 1)


def test_a_terminal_gets_the_bar_for_auto_and_1_and_a_line_for_2(monkeypatch):
    """(tqdm stood in for: the decision is pynn's, and the test failed where tqdm was not
    installed, as in a fresh `pip install ".[test]"`.)"""
    import types

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=object))

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert EpochProgress("auto", 1, 10, stream=Terminal()).mode == "bar"
    assert EpochProgress(1, 1, 10, stream=Terminal()).mode == "bar"
    assert EpochProgress(2, 1, 10, stream=Terminal()).mode == "line"
    assert EpochProgress(1, 1, 10, stream=io.StringIO()).mode == "line"  # a log file


def test_small_values_print_as_keras_does():
    from pynn.progress import logs_line

    assert logs_line({"loss": 8.6102e-07, "mae": 7.461e-4, "acc": 0.5, "val_loss": 0.0012}) == \
        "loss: 8.6102e-07 - mae: 7.4610e-04 - acc: 0.5000 - val_loss: 0.0012"  # (0.0000 before)


def test_the_bar_shows_the_running_metrics():
    """The postfix was set only when perf_counter() - tqdm's last_print_t (a time.time())
    exceeded 0.1, never: the bar showed no loss while the epoch ran."""
    pytest.importorskip("tqdm")
    import time

    stream = Terminal()
    progress = EpochProgress(1, 1, 4, stream=stream)
    progress.epoch_begin(0)
    for step in range(3):
        time.sleep(0.12)  # past tqdm's 0.1 s between redraws
        progress.batch_end(step, {"loss": 0.5 + step})
    assert "loss: 1.5000" in stream.getvalue() or "loss: 2.5000" in stream.getvalue()
    progress.close()


def test_the_epoch_line_shows_what_callbacks_log(capsys):
    """Printed before the callbacks' on_epoch_end, the line lacked what they add (Keras
    prints it last: ReduceLROnPlateau's learning_rate)."""
    import numpy as np

    import pynn

    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 2)), np.ones(8), epochs=1, verbose=2,
              callbacks=[pynn.callbacks.ReduceLROnPlateau(monitor="loss")])
    assert "learning_rate: 0.0100" in capsys.readouterr().out


def test_an_array_a_callback_logged_prints_as_its_mean(rng):
    """Per-class scores logged as an array crashed the epoch line ("truth value of an array
    ... is ambiguous"): Keras prints the mean; text and empty arrays print as they are."""
    from pynn.progress import logs_line

    scores = rng.uniform(0.2, 0.8, size=3)
    line = logs_line({"loss": 0.5, "per_class": scores, "note": "warm", "none": np.array([])})
    assert f"per_class: {scores.mean():.4f}" in line
    assert "note: warm" in line and "none: []" in line


def test_model_checkpoint_says_when_the_monitored_value_did_not_improve(tmp_path, rng,
                                                                        capsys):
    import pynn

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    checkpoint = pynn.callbacks.ModelCheckpoint(tmp_path / "best.npz", monitor="loss",
                                                mode="max", save_best_only=True, verbose=1)
    x, y = rng.normal(size=(32, 3)), rng.normal(size=32)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    best = checkpoint.best
    checkpoint.best = float("inf")  # nothing beats it in mode max
    model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "Epoch 1: loss did not improve from inf" and best != float("inf")
