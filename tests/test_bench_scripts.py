"""The bench/ scripts that drive pynn._C directly still speak its current binding (a new
activation once shifted the codes engine_bench.py had written in, and it stopped running)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import pynn

try:
    from pynn import _C
except ImportError:  # installed without it: the tests that drive it skip, the others run
    _C = None
requires_C = pytest.mark.skipif(_C is None, reason="needs the compiled extension pynn._C: "
                                f"{pynn.available_backends()['cpu']}")

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name):
    path = BENCH / f"{name}.py"
    if not path.exists():  # an installed package tested without its checkout
        pytest.skip(f"{path} is not here")
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@requires_C
@pytest.mark.parametrize("loss", ["softmax_xent_sparse", "mse"])
def test_engine_bench_builds_and_trains_its_engine(loss):
    eb = load("engine_bench")
    rng = np.random.default_rng()
    sizes, n, batch = [7, 5, 3], 23, 4
    eng = eb.build(sizes, loss, batch, rng)
    x = rng.normal(size=(n, sizes[0])).astype(np.float32)
    if loss == "mse":
        y = rng.normal(size=(n, sizes[-1])).astype(np.float32)
    else:
        y = rng.integers(0, sizes[-1], n).astype(np.int32)
    out = np.empty((n, sizes[-1]), np.float32)
    eng.predict(x, out)
    before = out.copy()
    seconds, steps = eb.epoch_seconds(eng, x, y, batch, 2, 0, 0)
    assert steps == -(-n // batch) and seconds > 0
    eng.predict(x, out)
    assert np.isfinite(out).all() and not np.array_equal(out, before)  # it trained
    if loss != "mse":  # the softmax head: rows of probabilities
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@requires_C
def test_engine_bench_codes_are_the_engines():
    eb = load("engine_bench")
    assert eb.SOFTMAX_CODE == _C.activation_count


@pytest.fixture
def isolated():
    """bench/isolated.py imported by name (a spawned child imports its target by the module's
    name, so the bench directory goes on sys.path, which the child inherits)."""
    import sys

    if not (BENCH / "isolated.py").exists():
        pytest.skip("bench/ is not here")
    sys.path.insert(0, str(BENCH))
    try:
        import isolated

        yield isolated
    finally:
        sys.path.remove(str(BENCH))


@requires_C  # (bench/peers.py's pynn trains on the cpu backend)
def test_a_peer_trains_in_a_process_of_its_own(isolated):
    import os

    t = isolated.IsolatedTrainer("pynn", "tabular_small")
    try:
        pid = t._proc.pid
        assert pid != os.getpid() and t._proc.is_alive()
        first, second = t.epoch(), t.epoch()
        for seconds, loss in (first, second):
            assert seconds > 0 and np.isfinite(loss)
        assert second[1] < first[1]  # the same model trained on
        assert t.predict_seconds(1, 0.01) > 0 and t.predict_seconds(1024, 0.01) > 0
    finally:
        t.close()
    assert not t._proc.is_alive()


def test_a_peer_that_fails_raises_with_its_traceback(isolated):
    import multiprocessing

    with pytest.raises(isolated.LibraryFailed, match="no-such-lib failed:(.|\n)*KeyError"):
        isolated.IsolatedTrainer("no-such-lib", "tabular_small")
    assert not multiprocessing.active_children()  # reaped, no zombie


@requires_C  # (bench/peers.py's pynn trains on the cpu backend)
def test_a_peer_that_does_not_answer_in_time_is_killed(isolated):
    t = isolated.IsolatedTrainer("pynn", "tabular_small")
    t.timeout = 1e-4  # an epoch takes far longer
    with pytest.raises(isolated.LibraryFailed, match=r"pynn: no answer in 0 s \(killed\)"):
        t.epoch()
    t.close()
    assert not t._proc.is_alive()


@requires_C  # (bench/peers.py's pynn trains on the cpu backend)
def test_a_peer_whose_process_died_is_named(isolated):
    t = isolated.IsolatedTrainer("pynn", "tabular_small")
    t._proc.kill()
    t._proc.join(10)
    with pytest.raises(isolated.LibraryFailed, match="pynn: its process died"):
        t.epoch()
    t.close()


def test_keras_runs_on_the_first_installed_backend_unless_told(monkeypatch):
    import os

    peers = load("peers")
    installed = set()
    monkeypatch.setattr(peers.importlib.util, "find_spec",
                        lambda name: object() if name in installed else None)
    # set, then removed: monkeypatch then puts back what was there before the test (unset
    # too), whatever keras_backend() writes into the environment meanwhile
    monkeypatch.setenv("KERAS_BACKEND", "none")
    monkeypatch.delenv("KERAS_BACKEND")
    assert peers.keras_backend() is None and not peers.available("keras")
    installed.update({"keras", "torch", "tensorflow"})
    assert peers.keras_backend() == "tensorflow"  # set for Keras' import, in the children too
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    del os.environ["KERAS_BACKEND"]
    installed.add("jax")
    assert peers.keras_backend() == "jax" and peers.available("keras")
    os.environ["KERAS_BACKEND"] = "torch"  # the user's choice stands
    assert peers.keras_backend() == "torch"
    # Keras on a named backend, each in its own process: available when both are installed
    assert {f"keras-{b}" for b in peers.KERAS_BACKENDS} <= set(peers.TRAINERS)
    assert peers.available("keras-jax") and peers.available("keras-torch")
    installed.discard("jax")
    assert not peers.available("keras-jax")
