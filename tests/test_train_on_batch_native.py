"""train_on_batch in the native engine (kept between calls): the layer path's results within
float32 rounding, one engine for a run of calls, and every change between calls followed."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest

import pynn
from conftest import requires_backend, run_python
from pynn import engine as engine_mod
from pynn.model import _SourceTrainer

pytestmark = requires_backend("cpu")


def _model(seed=5, optimizer="adam"):
    pynn.set_seed(seed)
    model = pynn.Sequential([pynn.Input((7,)), pynn.Dense(12, activation="relu"),
                             pynn.Dense(4, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend="cpu")
    return model


def _layer_path(model):
    model._batch_trainer = _SourceTrainer(model, "layers", None)
    return model


def _batches(rng, sizes=(16, 16, 9, 16, 30)):
    return [(rng.normal(size=(n, 7)).astype(np.float32), rng.integers(0, 4, size=n),
             rng.uniform(0.5, 2.0, size=n)) for n in sizes]


def test_native_steps_match_the_layer_path(rng):
    native, layers = _model(), _layer_path(_model())
    for i, (x, y, w) in enumerate(_batches(rng)):
        kwargs = {"sample_weight": w} if i % 2 else {"class_weight": {0: 2.0, 3: 0.5}}
        got = native.train_on_batch(x, y, return_dict=True, **kwargs)
        want = layers.train_on_batch(x, y, return_dict=True, **kwargs)
        assert native.engine_reason is None and layers.engine_reason is not None
        assert got.keys() == want.keys()
        for k in got:
            assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-6), k
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert native.optimizer.training_steps == layers.optimizer.training_steps == 5


def test_one_engine_serves_a_run_of_calls(rng, monkeypatch):
    built = []
    real = engine_mod.NativeEngine.__init__

    def counting(self, model, batch_size):
        built.append(batch_size)
        real(self, model, batch_size)

    monkeypatch.setattr(engine_mod.NativeEngine, "__init__", counting)
    model = _model()
    for x, y, _ in _batches(rng, (16, 16, 9, 16)):
        model.train_on_batch(x, y)
    assert built == [16]
    x, y, _ = _batches(rng, (40,))[0]
    model.train_on_batch(x, y)  # larger than any batch before: buffers for 40 rows
    assert built == [16, 40]


def test_changes_between_calls_are_followed(rng):
    model = _model()
    (x, y, _), *rest = _batches(rng)
    model.train_on_batch(x, y)
    frozen = model.layers[1].get_weights()
    model.layers[1].trainable = False  # frozen between two calls
    model.train_on_batch(x, y)
    for a, b in zip(frozen, model.layers[1].get_weights()):
        np.testing.assert_array_equal(a, b)
    model.layers[1].trainable = True
    new = [np.full_like(w, 0.01) for w in model.get_weights()]
    model.set_weights(new)  # the next step starts from these
    twin = _layer_path(_model())
    twin.set_weights(new)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="cpu")
    twin.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", backend="cpu")
    for xb, yb, _ in rest:
        assert model.train_on_batch(xb, yb) == pytest.approx(twin.train_on_batch(xb, yb),
                                                             rel=1e-5)
        assert model.engine_reason is None
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_and_train_on_batch_share_the_optimizer_state(rng):
    # Adam's moments and step count carry from train_on_batch to fit and back, natively
    # as through the layers.
    x = rng.normal(size=(64, 7)).astype(np.float32)
    y = rng.integers(0, 4, size=64)
    native, layers = _model(), _layer_path(_model())
    for m, engine in ((native, "auto"), (layers, "layers")):
        m.train_on_batch(x[:16], y[:16])
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, engine=engine)
        m.train_on_batch(x[16:32], y[16:32])
    assert native.optimizer.training_steps == layers.optimizer.training_steps == 6
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_model_the_engine_cannot_run_steps_through_the_layers(rng):
    model = pynn.Sequential([pynn.Input((7,)), pynn.Dense(5), pynn.layers.PReLU(),
                             pynn.Dense(2)])
    model.compile(optimizer="adam", loss="mse", metrics=["auc"], backend="cpu")
    x, _, _ = _batches(rng, (10,))[0]
    loss = model.train_on_batch(x, np.eye(2)[rng.integers(0, 2, 10)])  # (AUC: one-hot)
    assert np.isfinite(loss[0]) and model.engine_reason is not None


def test_a_copy_steps_its_own_model(rng):
    model = _model()
    (x, y, _), (x2, y2, _) = _batches(rng, (16, 16))
    model.train_on_batch(x, y)
    twin = copy.copy(model)
    assert "_batch_trainer" not in twin.__dict__
    twin.train_on_batch(x2, y2)
    assert twin._batch_trainer.model is twin and model._batch_trainer.model is model


def test_a_huge_batch_leaves_no_engine_behind(rng):
    model = _model()
    x = rng.normal(size=(5000, 7)).astype(np.float32)
    model.train_on_batch(x, rng.integers(0, 4, size=5000))
    assert model.engine_reason is None and model._batch_trainer is None  # buffers freed
    model.train_on_batch(x[:16], rng.integers(0, 4, size=16))
    assert model._batch_trainer.capacity == 16


def _logs_match(got, want):
    assert got.keys() == want.keys()
    for k in got:
        assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-6), k


def test_compile_again_with_the_same_optimizer_and_loss_builds_afresh(rng):
    """compile() with the same optimizer and loss objects kept the engine built for the
    old metrics (logged under the new names) and kept it on the numpy backend."""
    native, layers = _model(), _layer_path(_model())
    (x, y, _), *rest = _batches(rng, (16, 16, 16, 16))
    native.train_on_batch(x, y)
    layers.train_on_batch(x, y)
    for metrics, backend in ((["sparse_categorical_crossentropy"], "cpu"), ([], "cpu"),
                             (["accuracy", "sparse_top_k_categorical_accuracy"], "numpy")):
        for m in (native, layers):
            m.compile(optimizer=m.optimizer, loss=m.loss, metrics=metrics, backend=backend)
        _layer_path(layers)
        xb, yb, _ = rest.pop()
        _logs_match(native.train_on_batch(xb, yb, return_dict=True),
                    layers.train_on_batch(xb, yb, return_dict=True))
    assert "numpy" in native.engine_reason  # not the C++ engine on the numpy backend
    for a, b in zip(native.get_weights(), layers.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_model_the_engine_can_run_again_leaves_the_layer_path(rng):
    """Once train_on_batch had taken the layer path it kept it for good, even after the
    option the engine lacks was unset or the layer it lacks removed."""
    model = _model()
    (x, y, _), (x2, y2, _), (x3, y3, _) = _batches(rng, (16, 16, 16))
    model.optimizer.gradient_accumulation_steps = 2
    model.train_on_batch(x, y)
    assert model.engine_reason is not None and model._batch_trainer.native is None
    model.optimizer.gradient_accumulation_steps = None  # (settings_version moves)
    model.train_on_batch(x2, y2)
    assert model.engine_reason is None and model._batch_trainer.native is not None
    # the layer list alone changes: a layer the engine lacks is popped
    model.add(pynn.LayerNormalization())
    model.train_on_batch(x3, y3)
    assert model.engine_reason is not None and model._batch_trainer.native is None
    model.pop()
    model.train_on_batch(x3, y3)
    assert model.engine_reason is None and model._batch_trainer.native is not None


def test_a_numpy_scalar_loss_setting_changed_between_calls(rng):
    """Huber's delta set to one numpy float, then another, was not seen: the engine kept
    the first."""
    def model(layers):
        pynn.set_seed(4)
        m = pynn.Sequential([pynn.Input((7,)), pynn.Dense(6, activation="tanh"),
                             pynn.Dense(2)])
        loss = pynn.losses.Huber()
        loss.delta = np.float64(rng.uniform(1.0, 2.0))
        m.compile(optimizer="adam", loss=loss, backend="cpu")
        return _layer_path(m) if layers else m

    delta = np.float64(rng.uniform(0.01, 0.05))
    native, layers = model(False), model(True)
    layers.loss.delta = native.loss.delta
    x = rng.normal(size=(16, 7)).astype(np.float32)
    y = 3.0 * rng.normal(size=(16, 2)).astype(np.float32)
    for m in (native, layers):
        m.train_on_batch(x, y)
        m.loss.delta = delta
    for _ in range(2):
        assert native.train_on_batch(x, y) == pytest.approx(layers.train_on_batch(x, y),
                                                            rel=1e-5)
    assert native.engine_reason is None


def test_a_call_during_another_threads_step_is_refused(rng, monkeypatch):
    """A thread calling while another rebuilt the engine for a larger batch took the old,
    smaller engine (its capacity was raised first): the C++ engine refused the batch. One
    thread trains a model at a time now: the other's call is refused by name, and the
    model is the first thread's."""
    model = _model()
    (x, y, _), (big_x, big_y, _) = _batches(rng, (16, 40))
    model.train_on_batch(x, y)
    real = engine_mod.NativeEngine.__init__
    errors, threads = [], []

    def call(bx, by):
        try:
            model.train_on_batch(bx, by)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            errors.append(exc)

    def building(self, model_, batch_size):
        if not threads:  # another thread with a batch as large, while this one builds
            threads.append(threading.Thread(target=call, args=(big_x, big_y)))
            threads[0].start()
            threads[0].join(timeout=30)  # (a lock would make it wait for this build)
        real(self, model_, batch_size)

    monkeypatch.setattr(engine_mod.NativeEngine, "__init__", building)
    call(big_x, big_y)
    threads[0].join()
    assert [str(e) for e in errors] == ["train_on_batch: another thread is training this "
                                        "model (fit or train_on_batch); train a model from "
                                        "one thread at a time"]
    assert model.optimizer.training_steps == 2
    model.train_on_batch(big_x, big_y)  # the rebuilt engine takes the larger batch
    assert model.optimizer.training_steps == 3


_FORK_CHILD = """
import os, threading, time, numpy as np, pynn
rng = np.random.default_rng(0)
x = rng.normal(size=(2048, 256)).astype(np.float32)
y = rng.integers(0, 10, 2048)
m = pynn.Sequential([pynn.Input((256,)), pynn.Dense(512, activation="relu"),
                     pynn.Dense(10, activation="softmax")])
m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
m.train_on_batch(x, y)
assert m.engine_reason is None
{parent_thread}
time.sleep(0.2)
for _ in range(5):
    pid = os.fork()
    if pid == 0:
        {child}
        os._exit(0)
    for _ in range(300):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9); os.waitpid(pid, 0); print("child hung"); os._exit(1)
    if os.waitstatus_to_exitcode(status) != 0:
        print("child got", os.waitstatus_to_exitcode(status)); os._exit(1)
os._exit(0)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
@pytest.mark.parametrize("parent_thread,child", [
    # train_on_batch's engine came with its C++ lock held by a parent thread's step, a
    # thread the child does not have: its first train_on_batch waited for ever
    ("threading.Thread(target=lambda: [m.train_on_batch(x, y) for _ in iter(int, 1)], "
     "daemon=True).start()",
     "assert np.isfinite(m.train_on_batch(x[:64], y[:64]))"),
    # a fit running in a parent thread counted in the child too: compile() there was
    # refused as "called during fit"
    ("threading.Thread(target=lambda: m.fit(x, y, epochs=10**6, verbose=0), "
     "daemon=True).start()",
     "m.compile(optimizer='sgd', loss='sparse_categorical_crossentropy')"),
], ids=["train_on_batch", "fit"])
def test_a_forked_child_is_free_of_its_parents_threads(parent_thread, child):
    code = _FORK_CHILD.format(parent_thread=parent_thread, child=child)
    out = run_python(code, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
