"""One model used from several threads: inference while another thread trains layer by
layer, and the first predict of an unbuilt model from many threads at once."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import AVAILABLE

import pynn

BACKENDS = [b for b in ("cpu", "numpy", "cuda", "cupy") if b in AVAILABLE]

LAYERS_WITH_STATE = [
    lambda: pynn.Dropout(0.5, seed=3),
    lambda: pynn.GaussianDropout(0.3, seed=3),
    lambda: pynn.BatchNormalization(),
    lambda: pynn.LayerNormalization(),
    lambda: pynn.RMSNormalization(),
]


@pytest.mark.parametrize("make", LAYERS_WITH_STATE)
def test_inference_leaves_a_pending_backward_alone(rng, make):
    """A training forward keeps what its backward needs; an inference forward in between
    (another thread's evaluate) must not drop or replace it (Dropout's mask was dropped:
    its backward then passed the gradient through unmasked; the normalizations failed)."""
    x = rng.normal(size=(7, 5)).astype(np.float32)
    other = rng.normal(size=(3, 5)).astype(np.float32)
    dy = rng.normal(size=(7, 5)).astype(np.float32)
    grads = []
    for interleave in (False, True):
        pynn.set_seed(5)
        layer = make()
        layer.build((5,), pynn.backend.get_backend("numpy"), "float32")
        layer.forward(x, training=True)
        if interleave:
            layer.forward(other, training=False)
        grads.append(layer.backward(dy))
    np.testing.assert_array_equal(grads[0], grads[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_on_another_thread_during_a_layer_by_layer_fit(rng, backend):
    x = rng.normal(size=(256, 10)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def model():
        pynn.set_seed(8)
        m = pynn.Sequential([pynn.Input((10,)), pynn.Dense(16, activation="relu"),
                             pynn.Dropout(0.4), pynn.BatchNormalization(),
                             pynn.Dense(2, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy", backend=backend)
        return m

    alone = model()
    alone.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, engine="layers")
    shared = model()
    stop, errors = threading.Event(), []

    def evaluate_meanwhile():
        try:
            while not stop.is_set():
                shared.evaluate(x[:32], y[:32])
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    reader = threading.Thread(target=evaluate_meanwhile)
    reader.start()
    try:
        shared.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, engine="layers")
    finally:
        stop.set()
        reader.join()
    assert not errors, errors
    for a, b in zip(alone.get_weights(), shared.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_predict_from_many_threads_builds_once(rng, backend):
    x = rng.normal(size=(9, 64)).astype(np.float32)
    for _ in range(15):  # (a build long enough to overlap: 4 of 30 rounds failed before)
        model = pynn.Sequential([pynn.Dense(256, activation="relu"), pynn.LayerNormalization(),
                                 pynn.Dense(3)])  # no Input: the first call builds it
        model.compile("sgd", "mse", backend=backend)
        start = threading.Barrier(6)
        outputs, errors = [None] * 6, []

        def predict(i):
            start.wait()
            try:
                outputs[i] = model.predict(x)
            except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
                errors.append(exc)

        threads = [threading.Thread(target=predict, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        final = model.predict(x)  # the weights every thread used: built once
        for out in outputs:
            np.testing.assert_array_equal(out, final)


def test_a_build_waiting_on_another_threads_build_does_not_deadlock():
    """A user layer whose build() has a worker thread predict with another (unbuilt) model:
    one lock for every model's build hung for ever; each model has its own."""
    import subprocess
    import sys

    code = """
import concurrent.futures, numpy as np, pynn
helper = pynn.Sequential([pynn.Dense(2)])
helper.compile("sgd", "mse")

class Calls(pynn.layers.Layer):
    def build(self, input_shape, backend, dtype):
        super().build(input_shape, backend, dtype)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(helper.predict, np.ones((1, 3), np.float32)).result(timeout=20)

    def forward(self, x, training=False, logits=False):
        return x

model = pynn.Sequential([Calls(), pynn.Dense(1)])
model.compile("sgd", "mse")
print(model.predict(np.ones((2, 3), np.float32)).shape)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(2, 1)"


def _auc_model(rng, auc=None):
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = pynn.Sequential([pynn.Input((6,)), pynn.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["accuracy", auc or pynn.metrics.AUC()])
    return model, x, y


def test_copying_a_model_leaves_its_metrics_alone(rng, monkeypatch):
    """Pickling set the compiled metric objects aside on the model itself while it wrote the
    file: another thread's evaluate or fit meanwhile rebuilt its metrics without them, and
    a second copy made meanwhile put the shortened list back for good."""
    import copy

    import pynn.model

    model, x, y = _auc_model(rng)
    auc = model._metric_specs[1]
    seen = []
    pickled_bytes = pynn.model._pickled_bytes
    monkeypatch.setattr(pynn.model, "_pickled_bytes", lambda m: seen.append(
        list(m._metric_specs)) or pickled_bytes(m))
    twin = copy.deepcopy(model)
    assert seen == [["accuracy", auc]]  # what another thread saw during the copy
    assert model._metric_specs == ["accuracy", auc]
    assert sorted(twin.evaluate(x, y, return_dict=True)) == ["accuracy", "auc", "loss"]


@pytest.mark.parametrize("share", ["copy.copy", "one metric object"])
def test_evaluates_sharing_metric_objects_do_not_mix_their_batches(rng, share):
    """A copy.copy of a model shares its metric objects, as do two models compiled with the
    same one; each counted its evaluates apart, so two at once accumulated into one AUC."""
    import copy

    model, x, y = _auc_model(rng)
    other = copy.copy(model) if share == "copy.copy" else \
        _auc_model(rng, auc=model._metric_specs[1])[0]
    alone = other.evaluate(x[:20], y[:20], return_dict=True)
    model._prepare_compiled()
    with model._claimed_metrics() as claimed:  # an evaluate of model runs meanwhile
        assert claimed is None
        other._prepare_compiled()
        with other._claimed_metrics() as fresh:
            assert fresh is not None  # copies of its own
        assert other.evaluate(x[:20], y[:20], return_dict=True) == alone
