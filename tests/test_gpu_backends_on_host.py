"""The `cupy` and `cuda` backends' Python code on a machine without a GPU: CuPy's rules
enforced on host memory (fake_cupy.py), pynn._C's kernels standing in for pynn._cuda's.

Every training feature runs here on both, and must give the numpy backend's results; a NumPy
array handed where CuPy takes device arrays (or the reverse) fails as it would on a GPU. The
real kernels' arithmetic is tested on a GPU by test_cuda_backend.py and test_parity.py.
"""

from __future__ import annotations

import sys

import fake_cuda_module
import fake_cupy
import numpy as np
import pytest
from conftest import requires_backend

import pynn

pytestmark = requires_backend("cpu")  # the fake pynn._cuda runs pynn._C's kernels


@pytest.fixture
def gpu_backends(monkeypatch):
    """{'cupy': ..., 'cuda': ...} backends on fake device arrays, registered under their
    names as on a GPU machine (set_backend('cuda'), unpickling, finding an array's backend)."""
    import pynn._C

    from pynn.backend.cuda_backend import CudaBackend
    from pynn.backend.cupy_backend import CupyBackend

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.make_fake_cupy())
    cuda_module = fake_cuda_module.make_fake_cuda_module(pynn._C)
    backends = {"cupy": CupyBackend(), "cuda": CudaBackend(cuda_module)}
    # a registry of the test's own: backends created meanwhile are forgotten after it
    monkeypatch.setattr(pynn.backend, "_instances", {**pynn.backend._instances, **backends})
    previous = pynn.get_backend()
    yield backends
    pynn.set_backend(previous)


def test_the_fake_refuses_what_cupy_refuses():
    cp = fake_cupy.make_fake_cupy()
    a = cp.asarray(np.ones((3, 2), np.float32))
    host = np.ones((3, 2), np.float32)
    for mixed in (lambda: np.asarray(a), lambda: a + host, lambda: host * a,
                  lambda: cp.concatenate([a, host]), lambda: np.concatenate([a, host]),
                  lambda: a * [1.0, 2.0], lambda: cp.exp(host)):
        with pytest.raises(TypeError, match="Unsupported type|Implicit conversion"):
            mixed()
    total = a.sum()
    assert isinstance(total, cp.ndarray) and total.shape == ()  # stays on the device
    assert float(total) == 6.0
    assert np.array_equal(cp.asnumpy(a + a), 2 * host)


@pytest.mark.parametrize("name", ["cupy", "cuda"])
@pytest.mark.parametrize("activation", [None, "relu", pynn.activations.Spec("elu", 0.5)])
def test_ops_gemm_shortcut_for_device_arrays_is_the_general_path(gpu_backends, name, rng,
                                                                 activation):
    """The backend's own C-contiguous float32 arrays go straight to its GEMM
    (ops._own_float32_call); host values and a strided device view take the general path:
    the same values."""
    backend = gpu_backends[name]
    cp = backend.xp
    a = rng.normal(size=(5, 3)).astype(np.float32)
    b = rng.normal(size=(4, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    previous = pynn.get_backend()
    pynn.set_backend(backend)
    try:
        da, db, dbias = cp.asarray(a), cp.asarray(b), cp.asarray(bias)
        assert pynn.ops._own_float32_call(backend, da, db, False, True, dbias, activation, 2.0,
                                          0.0, None) is not None
        fast = pynn.ops.gemm(da, db, trans_b=True, bias=dbias, activation=activation, alpha=2.0)
        assert isinstance(fast, cp.ndarray)
        strided = cp.asarray(np.ascontiguousarray(b.T)).T  # (4, 3), not C-contiguous
        assert pynn.ops._own_float32_call(backend, da, strided, False, True, dbias, activation,
                                          2.0, 0.0, None) is None
        for general in (pynn.ops.gemm(a, b, trans_b=True, bias=bias, activation=activation,
                                      alpha=2.0),
                        pynn.ops.gemm(da, strided, trans_b=True, bias=dbias,
                                      activation=activation, alpha=2.0)):
            np.testing.assert_allclose(cp.asnumpy(fast), cp.asnumpy(general), rtol=1e-6,
                                       atol=1e-7)
    finally:
        pynn.set_backend(previous)


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_ops_gemm_on_the_gpu_backends(gpu_backends, name, rng):
    backend = gpu_backends[name]
    cp = backend.xp
    a = rng.normal(size=(5, 3)).astype(np.float32)
    b = rng.normal(size=(4, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    want = np.maximum(a @ b.T + bias, 0)
    previous = pynn.get_backend()
    pynn.set_backend(backend)
    try:
        for operands, bias_as in (((a, b), bias), ((cp.asarray(a), cp.asarray(b)), bias),
                                  ((a.tolist(), cp.asarray(b)), fake_cupy.ForeignGpuTensor(bias)),
                                  ((np.asfortranarray(a), b), cp.asarray(bias))):
            got = pynn.ops.gemm(*operands, trans_b=True, bias=bias_as, activation="relu")
            assert isinstance(got, cp.ndarray)  # the backend's own array, on its device
            np.testing.assert_allclose(cp.asnumpy(got), want, rtol=1e-5, atol=1e-6)
        out = cp.zeros((5, 4), dtype=np.float32)
        assert pynn.ops.gemm(a, b, trans_b=True, out=out) is out
        np.testing.assert_allclose(cp.asnumpy(out), a @ b.T, rtol=1e-5, atol=1e-6)
        with pytest.raises(TypeError, match="out must be an array of the current backend"):
            pynn.ops.gemm(a, b, trans_b=True, out=np.zeros((5, 4), np.float32))
    finally:
        pynn.set_backend(previous)


def test_ops_gemm_names_a_gpu_array_on_a_host_backend(gpu_backends):
    device_array = gpu_backends["cupy"].xp.ones((2, 2), dtype=np.float32)
    with pytest.raises(TypeError, match="a is a GPU array .* runs in host memory"):
        pynn.ops.gemm(device_array, np.ones((2, 2), np.float32))


def _device_input_run(backend, x, y, w, x_val, y_val, device):
    """fit/evaluate/predict/train_on_batch with every array given on the device (device=True)
    or on the host; the results as host values."""
    cp = backend.xp
    put = cp.asarray if device else (lambda a: a)
    pynn.set_seed(5)
    model = _mlp(x.shape[1], 3, "softmax")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend=backend)
    history = model.fit(put(x), put(y), epochs=2, batch_size=8, verbose=0,
                        sample_weight=put(w), validation_data=(put(x_val), put(y_val)))
    split = model.fit(put(x), put(y), epochs=1, batch_size=8, verbose=0, validation_split=0.25)
    return {"history": history.history, "split": split.history,
            "batch": model.train_on_batch(put(x[:9]), put(y[:9])),
            "evaluate": model.evaluate(put(x_val), put(y_val), sample_weight=put(w[:20])),
            "predict": model.predict(put(x)), "call": model(put(x[:3])),
            "training_call": model(put(x[:3]), training=True),
            "weights": model.get_weights()}


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_device_arrays_are_taken_as_inputs(gpu_backends, name, rng):
    backend = gpu_backends[name]
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    w = rng.uniform(0.5, 1.5, size=40)
    x_val, y_val = x[:20] + 0.1, y[:20]
    on_host = _device_input_run(backend, x, y, w, x_val, y_val, device=False)
    on_device = _device_input_run(backend, x, y, w, x_val, y_val, device=True)
    _assert_close(on_device, on_host)


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_device_inputs_are_not_copied(gpu_backends, name, rng, monkeypatch):
    backend = gpu_backends[name]
    cp = backend.xp
    x = cp.asarray(rng.normal(size=(30, 4)).astype(np.float32))
    foreign = fake_cupy.ForeignGpuTensor(rng.normal(size=(30, 4)).astype(np.float32))
    gathered_from = []
    take_rows = type(backend).take_rows
    monkeypatch.setattr(type(backend), "take_rows",
                        lambda self, a, index: gathered_from.append(a) or take_rows(self, a,
                                                                                    index))
    model = _mlp(4, 1, None)
    model.compile("sgd", "mse", backend=backend)
    for data in (x, foreign):
        gathered_from.clear()
        model.fit(data, np.zeros(30), epochs=1, batch_size=10, verbose=0)
        host = data._a if isinstance(data, cp.ndarray) else data._host
        assert gathered_from and all(np.shares_memory(a._a, host) for a in gathered_from[::2])


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_gpu_arrays_of_other_libraries_and_devices(gpu_backends, name, rng):
    backend = gpu_backends[name]
    cp = backend.xp
    x = rng.normal(size=(6, 3)).astype(np.float32)
    model = _mlp(3, 1, None)
    model.compile("sgd", "mse", backend=backend)
    want = model.predict(x)
    numba_like = fake_cupy.CudaInterfaceArray(x)  # no DLPack: taken through its interface
    np.testing.assert_allclose(model.predict(numba_like), want, rtol=1e-6)
    assert np.shares_memory(model._gpu_array(numba_like, "x")._a, numba_like._host)
    np.testing.assert_allclose(model.predict(fake_cupy.ForeignGpuTensor(x)), want, rtol=1e-6)
    elsewhere = cp.ndarray(x.copy(), device_id=1)
    with pytest.raises(ValueError, match=r"x is on GPU 1 but pynn runs on GPU 0"):
        model.predict(elsewhere)
    with pytest.raises(ValueError, match=r"validation x is on GPU 1"):
        model.fit(x, np.zeros(6), validation_data=(elsewhere, np.zeros(6)), verbose=0)


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_device_inputs_are_checked_on_the_device(gpu_backends, name):
    backend = gpu_backends[name]
    cp = backend.xp
    model = _mlp(3, 1, None)
    model.compile("sgd", "mse", backend=backend)
    x64 = cp.asarray(np.arange(12, dtype=np.float64).reshape(4, 3) / 7)
    np.testing.assert_allclose(model.predict(x64), model.predict(x64.get()), rtol=1e-6)
    bad = x64.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="x contains 1 NaN or infinite"):
        model.predict(bad)
    with pytest.raises(ValueError, match="x holds 4 value.* beyond float32's range"):
        model.fit(x64 * cp.asarray(np.array([1, 1e300, 1])), np.zeros(4), verbose=0)
    with pytest.raises(ValueError, match="expects 3"):
        model.predict(cp.zeros((2, 4)))
    with pytest.raises(TypeError, match="must be real"):  # CuPy has no text arrays
        model.predict(cp.asarray(np.ones((2, 3), np.complex64)))
    with pytest.raises(ValueError, match="different numbers of samples"):
        model.fit(x64, cp.zeros(3), verbose=0)


def test_a_gpu_array_on_a_host_backend_is_named(gpu_backends):
    device_x = gpu_backends["cupy"].xp.ones((2, 3), dtype=np.float32)
    model = _mlp(3, 1, None)
    model.compile("sgd", "mse", backend="cpu")
    for call in (lambda: model.predict(device_x), lambda: model.fit(device_x, np.zeros(2)),
                 lambda: model.fit(np.ones((2, 3)), device_x[:, 0]),
                 lambda: model.predict(fake_cupy.ForeignGpuTensor(np.ones((2, 3))))):
        with pytest.raises(TypeError, match=r"is a GPU array \(fake_cupy.*'cpu', the "
                                            r"backend in use, runs in host memory"):
            call()


def _data(rng, n=97, features=7, classes=4):
    x = rng.normal(size=(n, features)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    return x, labels


def _run(backend, scenario, rng_seed):
    """The scenario's results on `backend` as numpy values, from one fixed seed."""
    pynn.set_seed(11)
    return scenario(backend, np.random.default_rng(rng_seed))


def _mlp(features, out, out_act, hidden="relu", **dense):
    return pynn.Sequential([pynn.Input((features,)), pynn.Dense(13, activation=hidden, **dense),
                            pynn.Dense(9, activation=hidden),
                            pynn.Dense(out, activation=out_act)])


def _fit_results(model, history, x):
    return {"history": history.history, "weights": model.get_weights(),
            "predict": model.predict(x)}


def scenario_losses_and_optimizers(backend, rng):
    out = {}
    x, labels = _data(rng)
    targets = {"sparse_categorical_crossentropy": (labels, 4, "softmax", "adam"),
               "categorical_crossentropy": (np.eye(4)[labels], 4, "softmax", "rmsprop"),
               "binary_crossentropy": ((labels % 2).astype(np.float32), 1, "sigmoid", "sgd"),
               "mse": (x[:, :2] * 2, 2, None, "adagrad"),
               "huber": (x[:, :2] * 2, 2, "linear", "adamw"),
               "mae": (x[:, :1], 1, None, "sgd")}
    for i, (loss, (y, out_dim, act, opt)) in enumerate(targets.items()):
        hidden = ("relu", "tanh", "gelu", "elu", "leaky_relu", "sigmoid")[i]
        model = _mlp(x.shape[1], out_dim, act, hidden)
        optimizer = pynn.optimizers.get(opt)
        if opt == "sgd":
            optimizer = pynn.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
        model.compile(optimizer, loss, backend=backend)
        out[loss] = _fit_results(model, model.fit(x, y, epochs=2, batch_size=13, verbose=0), x)
    return out


def scenario_more_optimizers(backend, rng):
    """Keras 3's other optimizers (their fused kernels with weight decay; AMSGrad's slot)."""
    out = {}
    x, labels = _data(rng)
    for opt in (pynn.optimizers.Nadam(0.01, weight_decay=0.05), pynn.optimizers.Adamax(0.01),
                # Lion's +-lr steps at a rounding-level argument of its sign may differ
                # between backends: a rate below the comparison's tolerance (its kernel is
                # checked in test_cpu_kernels.py / test_cuda_backend.py)
                pynn.optimizers.Lion(2e-5, weight_decay=0.3), pynn.optimizers.Adadelta(1.0),
                pynn.optimizers.Adam(0.01, amsgrad=True), pynn.optimizers.Lamb(0.01),
                pynn.optimizers.Ftrl(0.1, l1_regularization_strength=0.001),
                pynn.optimizers.Adafactor(0.05, gradient_accumulation_steps=2),
                pynn.optimizers.Muon(0.01)):
        model = _mlp(x.shape[1], 4, "softmax")
        model.compile(opt, "sparse_categorical_crossentropy", backend=backend)
        out[type(opt).__name__ + str(getattr(opt, "amsgrad", ""))] = _fit_results(
            model, model.fit(x, labels, epochs=2, batch_size=13, verbose=0), x)
    return out


def scenario_more_activations(backend, rng):
    """Keras 3's other activations, hidden (in the Dense epilogue) and as Activation layers,
    with LayerNormalization and RMSNormalization between."""
    out = {}
    x, labels = _data(rng)
    for first, second in (("silu", "mish"), ("softplus", "softsign"), ("selu", "relu6"),
                          ("hard_sigmoid", "hard_silu")):
        model = pynn.Sequential([pynn.Input((x.shape[1],)), pynn.Dense(11, activation=first),
                                 pynn.layers.LayerNormalization(), pynn.Dense(7),
                                 pynn.Activation(second), pynn.layers.RMSNormalization(),
                                 pynn.Dense(4, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy", backend=backend)
        out[first] = _fit_results(model, model.fit(x, labels, epochs=2, batch_size=13,
                                                   verbose=0), x)
    return out


def scenario_batch_sources(backend, rng):
    """Data given batch by batch (a generator; validation, evaluate and predict from
    iterables), each batch converted to device arrays as it comes; an adapted
    Normalization first."""
    x, labels = _data(rng)
    model = _mlp(x.shape[1], 4, "softmax")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend=backend)

    def batches(count=None):
        for i in range(0, len(x) if count is None else count, 16):
            yield x[i:i + 16], labels[i:i + 16]

    norm = pynn.layers.Normalization()
    norm.adapt(x)
    model = pynn.Sequential([pynn.Input((x.shape[1],)), norm] + model.layers[1:])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend=backend)

    history = model.fit(batches(), epochs=1, verbose=0, validation_data=batches(48))
    return {"history": history.history, "weights": model.get_weights(),
            "evaluate": model.evaluate(batches()), "predict": model.predict(batches())}


def scenario_regularization_and_stability(backend, rng):
    x, labels = _data(rng)
    model = pynn.Sequential([
        pynn.Input((x.shape[1],)),
        pynn.Dense(16, activation="relu", kernel_regularizer=pynn.regularizers.l1_l2(1e-3, 1e-2),
                   bias_regularizer="l2"),
        pynn.Dropout(0.3), pynn.BatchNormalization(), pynn.Dense(8), pynn.Activation("tanh"),
        pynn.Dropout(0.1), pynn.Dense(4, activation="softmax")])
    schedule = pynn.schedules.CosineDecay(0.01, decay_steps=20)
    model.compile(pynn.optimizers.Adam(schedule, global_clipnorm=1.0),
                  "sparse_categorical_crossentropy", backend=backend)
    history = model.fit(x, labels, epochs=3, batch_size=16, verbose=0)
    model2 = _mlp(x.shape[1], 4, "softmax")
    model2.compile(pynn.optimizers.SGD(0.1, clipvalue=0.01),
                   "sparse_categorical_crossentropy", backend=backend)
    history2 = model2.fit(x, labels, epochs=2, batch_size=10, verbose=0)
    return {"dropout_bn": _fit_results(model, history, x),
            "clipvalue": _fit_results(model2, history2, x)}


def scenario_weights_metrics_validation(backend, rng):
    x, labels = _data(rng, n=120)
    x_val, labels_val = _data(rng, n=31)
    weights = rng.uniform(0.1, 2.0, size=len(x))
    model = _mlp(x.shape[1], 4, "softmax")
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["accuracy", "precision", "recall", "f1", "auc",
                           pynn.metrics.Precision(name="p_obj")], backend=backend)
    history = model.fit(x, labels, epochs=2, batch_size=17, verbose=0, sample_weight=weights,
                        validation_data=(x_val, labels_val), shuffle=True)
    binary = _mlp(x.shape[1], 1, "sigmoid")
    binary.compile(pynn.optimizers.RMSprop(clipnorm=0.5), "binary_crossentropy", metrics=["accuracy", "auc"],
                   backend=backend)
    history2 = binary.fit(x, labels % 2, epochs=2, batch_size=17, verbose=0,
                          class_weight={0: 1.0, 1: 3.0}, validation_split=0.25)
    regression = _mlp(x.shape[1], 2, None)
    regression.compile("adam", "mse", metrics=["mae", "rmse", "r2"], backend=backend)
    history3 = regression.fit(x.astype(np.float64), x[:, :2] + 1, epochs=2, batch_size=32,
                              verbose=0, validation_split=0.2)
    return {"multiclass": _fit_results(model, history, x),
            "evaluate": model.evaluate(x_val, labels_val, return_dict=True, batch_size=8),
            "binary": _fit_results(binary, history2, x),
            "regression": _fit_results(regression, history3, x),
            "regression_eval": regression.evaluate(x, x[:, :2] + 1, sample_weight=weights)}


def scenario_callbacks(backend, rng, tmp_path_factory=None):
    import tempfile
    x, labels = _data(rng, n=80)
    model = _mlp(x.shape[1], 4, "softmax")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend=backend)
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = [
            pynn.callbacks.EarlyStopping("val_loss", patience=1, restore_best_weights=True),
            pynn.callbacks.ModelCheckpoint(f"{tmp}/best.npz", save_best_only=True),
            pynn.callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=0),
            pynn.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.9),
            pynn.callbacks.CSVLogger(f"{tmp}/log.csv"), pynn.callbacks.TerminateOnNaN()]
        history = model.fit(x, labels, epochs=6, batch_size=8, verbose=0, validation_split=0.3,
                            callbacks=callbacks)
        best = pynn.load_model(f"{tmp}/best.npz")
        with open(f"{tmp}/log.csv") as f:
            log = f.read().splitlines()[0]
    return {"fit": _fit_results(model, history, x), "checkpoint": best.get_weights(),
            "log_header": log}


def scenario_streaming_freezing_files(backend, rng):
    import tempfile
    x, labels = _data(rng, n=90)
    model = _mlp(x.shape[1], 4, "softmax")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend=backend)
    logs = [model.train_on_batch(x[i:i + 30], labels[i:i + 30], return_dict=True)
            for i in range(0, 90, 30)]
    logs.append(model.test_on_batch(x[:30], labels[:30], return_dict=True))
    on_batch = model.predict_on_batch(x[:5])
    called = np.asarray(model(x[:4], training=False))
    model.layers[1].trainable = False  # layers[0] is the InputLayer
    frozen = model.layers[1].get_weights()
    history = model.fit(x, labels, epochs=2, batch_size=16, verbose=0)
    assert frozen and all(np.array_equal(a, b)
                          for a, b in zip(frozen, model.layers[1].get_weights()))
    with tempfile.TemporaryDirectory() as tmp:
        model.save(f"{tmp}/m.npz")
        model.save(f"{tmp}/m.h5")
        model.save_weights(f"{tmp}/w.npz")
        previous = pynn.get_backend()
        pynn.set_backend(backend)  # a model is loaded onto the current backend
        try:
            loaded = pynn.load_model(f"{tmp}/m.npz")
            loaded_h5 = pynn.load_model(f"{tmp}/m.h5")
        finally:
            pynn.set_backend(previous)
        assert loaded.backend is pynn.get_backend(backend)
        resumed = loaded.fit(x, labels, epochs=1, batch_size=16, verbose=0)
        fresh = _mlp(x.shape[1], 4, "softmax")
        fresh.compile("adam", "sparse_categorical_crossentropy", backend=backend)
        fresh.load_weights(f"{tmp}/w.npz")
        head = pynn.Sequential(loaded_h5.layers[:-1] + [pynn.Dense(2, activation="softmax")])
        head.compile("adam", "sparse_categorical_crossentropy", backend=backend)
        head_history = head.fit(x, labels % 2, epochs=1, batch_size=16, verbose=0)
    return {"logs": logs, "on_batch": on_batch, "called": called,
            "fit": _fit_results(model, history, x),
            "resumed": _fit_results(loaded, resumed, x), "h5": loaded_h5.predict(x),
            "weights_file": fresh.predict(x), "head": _fit_results(head, head_history, x)}


def scenario_shapes_and_dtypes(backend, rng):
    images = rng.normal(size=(40, 3, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=40)
    model = pynn.Sequential([pynn.Input((3, 5)), pynn.Flatten(), pynn.Dense(6, activation="relu"),
                             pynn.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", backend=backend)
    history = model.fit(images, labels, epochs=2, batch_size=7, verbose=0)
    ints = rng.integers(0, 5, size=(40, 4))
    small = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1)])
    small.compile("sgd", "mse", backend=backend)
    history2 = small.fit(ints, ints.sum(axis=1) * 0.1, epochs=2, batch_size=40, verbose=0)
    return {"flatten": _fit_results(model, history, images),
            "ints": _fit_results(small, history2, ints.astype(np.float32)),
            "uint8_predict": small.predict(ints.astype(np.uint8))}


def scenario_more_layers_and_losses(backend, rng):
    """PReLU (shared along an axis), AlphaDropout, Reshape and the categorical focal loss:
    array operations on the backend's arrays."""
    x, labels = _data(rng, n=60, features=12)
    model = pynn.Sequential([pynn.Input((12,)), pynn.Reshape((3, 4)), pynn.Dense(5, "tanh"),
                             pynn.PReLU(shared_axes=[1]), pynn.AlphaDropout(0.1),
                             pynn.Reshape((-1,)), pynn.Dense(4, activation="softmax")])
    model.compile("adam", pynn.losses.CategoricalFocalCrossentropy(alpha=[1, 2, 0.5, 1]),
                  backend=backend)
    history = model.fit(x, np.eye(4)[labels], epochs=2, batch_size=9, verbose=0)
    return _fit_results(model, history, x)


def scenario_float64(backend, rng):
    x, labels = _data(rng, n=50)
    pynn.set_floatx("float64")
    try:
        model = _mlp(x.shape[1], 4, "softmax")
        model.compile("adam", "sparse_categorical_crossentropy", backend=backend)
        history = model.fit(x, labels, epochs=2, batch_size=9, verbose=0)
        return _fit_results(model, history, x)
    finally:
        pynn.set_floatx("float32")


SCENARIOS = [scenario_losses_and_optimizers, scenario_more_optimizers,
             scenario_more_activations, scenario_batch_sources,
             scenario_regularization_and_stability,
             scenario_weights_metrics_validation, scenario_callbacks,
             scenario_streaming_freezing_files, scenario_shapes_and_dtypes,
             scenario_more_layers_and_losses, scenario_float64]


def _assert_close(got, want, path="result"):
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for key in want:
            _assert_close(got[key], want[key], f"{path}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, str):
        assert got == want, path
    else:
        assert isinstance(got, (float, int, np.ndarray, np.generic)), \
            f"{path}: a {type(got).__name__} came back, not a host value"
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4, err_msg=path)


@pytest.mark.parametrize("name", ["cupy", "cuda"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__[9:])
def test_gpu_backend_matches_numpy(gpu_backends, name, scenario):
    seed = np.random.SeedSequence().entropy % 2**32
    print(f"data seed {seed}")
    want = _run("numpy", scenario, seed)
    got = _run(gpu_backends[name], scenario, seed)
    _assert_close(got, want)
    if name == "cuda":  # float32 work went through the kernels, not CuPy's reference code
        calls = set(gpu_backends["cuda"]._kernels.calls)
        if scenario is scenario_float64:
            assert not calls
        elif scenario is scenario_more_optimizers:
            assert {"nadam_update", "adamax_update", "lion_update", "adadelta_update",
                    "adam_update"} <= calls
        else:
            assert {"bias_activation", "bias_grad", "activation_backward"} <= calls


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_a_layer_shared_with_a_host_model_keeps_its_gpu_model_savable(gpu_backends, name,
                                                                       rng, tmp_path):
    import copy
    x, labels = _data(rng, n=40)
    base = _mlp(x.shape[1], 4, "softmax")
    base.compile("adam", "sparse_categorical_crossentropy", backend=name)
    base.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    head = pynn.Sequential(base.layers[:-1] + [pynn.Dense(2, activation="softmax")])
    head.compile("adam", "sparse_categorical_crossentropy", backend="cpu")  # moves the shared
    base.save(tmp_path / "base.npz")  # base's Adam slots stayed on the GPU: saved all the same
    twin = copy.deepcopy(base)
    loaded = pynn.load_model(tmp_path / "base.npz")
    for got in (twin, loaded):
        _assert_close(got.get_weights(), base.get_weights())
        for p, q in zip(got.params, base.params):
            for slot, value in got.optimizer.state_of(p).items():
                np.testing.assert_array_equal(pynn.backend.to_host(value),
                                              pynn.backend.to_host(base.optimizer.state_of(q)[slot]))
    base.fit(x, labels, epochs=1, batch_size=8, verbose=0)  # and it trains on its GPU again
    assert isinstance(base.params[0].value, gpu_backends[name].xp.ndarray)


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_weights_layers_and_functions_take_device_arrays(gpu_backends, name, rng):
    backend = gpu_backends[name]
    cp = backend.xp
    model = _mlp(3, 2, "softmax")
    model.compile("sgd", "categorical_crossentropy", backend=backend)
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights([cp.asarray(w) for w in weights])
    _assert_close(model.get_weights(), weights)
    kernel = model.layers[1].params[0]
    kernel.assign(kernel.value * 0.5)  # Keras' var.assign(var * 0.5), on the device
    np.testing.assert_allclose(kernel.numpy(), weights[0] * 0.5)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(model.layers[1](cp.asarray(x)), model.layers[1](x), rtol=1e-6)
    pynn.set_backend(backend)  # pynn.ops runs on the current backend
    np.testing.assert_allclose(model.predict(pynn.ops.gemm(
        fake_cupy.ForeignGpuTensor(x), cp.asarray(np.eye(3, dtype=np.float32)))),
        model.predict(x), rtol=1e-6)  # another library's GPU array in ops.gemm
    y_true = np.eye(2)[rng.integers(0, 2, size=30)]
    y_pred = rng.uniform(0.01, 1, size=(30, 2))
    y_pred /= y_pred.sum(axis=1, keepdims=True)
    d_true, d_pred = cp.asarray(y_true), cp.asarray(y_pred)
    for fn in (pynn.metrics.f1_score, pynn.metrics.precision, pynn.metrics.recall,
               pynn.metrics.roc_auc, pynn.metrics.categorical_accuracy,
               pynn.metrics.mean_squared_error, pynn.metrics.r2_score,
               pynn.metrics.root_mean_squared_error, pynn.losses.CategoricalCrossentropy(),
               pynn.metrics.Precision(), pynn.metrics.AUC()):
        assert fn(d_true, d_pred) == pytest.approx(
            type(fn)()(y_true, y_pred) if isinstance(fn, pynn.metrics.Metric)
            else fn(y_true, y_pred), rel=1e-6)
    assert pynn.metrics.sparse_categorical_accuracy(cp.asarray(y_true.argmax(1)), d_pred) == \
        pynn.metrics.sparse_categorical_accuracy(y_true.argmax(1), y_pred)
    activated = pynn.activations.gelu(cp.asarray(x))  # a custom layer's forward, on the GPU
    assert isinstance(activated, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(activated), pynn.activations.gelu(x), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_a_custom_layer_that_leaves_the_gpu_is_named(gpu_backends, name):
    class HostForward(pynn.layers.Layer):
        def forward(self, x, training=False, logits=False):
            return np.zeros(x.shape, np.float32)  # the bug: a host array

        def backward(self, dy, need_input_grad=True, logits=False):
            return dy

    class HostGradient(pynn.layers.Dense):
        def backward(self, dy, need_input_grad=True, logits=False):
            dx = super().backward(dy, need_input_grad, logits)
            self.params[1].grad = np.zeros(self.params[1].shape, np.float32)  # the bug
            return dx

    x = np.ones((4, 5), np.float32)
    model = pynn.Sequential([pynn.Input((5,)), HostForward(name="culprit"),
                             pynn.Dense(2, name="innocent")])
    model.compile("sgd", "mse", backend=name)
    with pytest.raises(TypeError, match=r"layer 'culprit' \(HostForward.forward\): its output "
                                        r"is a numpy.ndarray, not an array of the"):
        model.predict(x)
    model = pynn.Sequential([pynn.Input((5,)), HostGradient(3, name="culprit"),
                             pynn.Dense(2)])
    model.compile("sgd", "mse", backend=name)
    with pytest.raises(TypeError, match=r"layer 'culprit' \(HostGradient.backward\): "
                                        r"culprit/bias.grad is a numpy.ndarray"):
        model.fit(x, np.zeros((4, 2)), verbose=0)


@pytest.mark.parametrize("name", ["cupy", "cuda"])
def test_a_custom_loss_returning_a_device_sum_logs_floats(gpu_backends, name):
    class DeviceSumMSE(pynn.losses.Loss):
        name = "device_sum_mse"

        def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
            d = y_pred - y_true
            return (d * d).sum(), 2 * d * scale  # the sum left a 0-d device array

    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(2)])
    model.compile("sgd", DeviceSumMSE(), backend=name)
    x = np.ones((8, 5), np.float32)
    history = model.fit(x, np.zeros((8, 2)), epochs=2, verbose=0)
    assert all(type(v) is float for v in history.history["loss"])
    assert type(model.evaluate(x, np.zeros((8, 2)))) is float
    assert type(model.train_on_batch(x, np.zeros((8, 2)))) is float


def test_which_arrays_count_as_gpu_arrays():
    class Exported:
        def __init__(self, device_type):
            self.device_type = device_type

        def __dlpack_device__(self):
            return (self.device_type, 0)

    # CPU, CUDA pinned host and ROCm pinned host memory are host memory NumPy reads
    assert [pynn.backend.is_gpu_array(Exported(t)) for t in (1, 2, 3, 10, 11, 13)] == \
        [False, True, False, True, False, True]
    assert not pynn.backend.is_gpu_array(np.ones(2))
    assert pynn.backend.is_gpu_array(fake_cupy.CudaInterfaceArray(np.ones(2)))


def test_gpu_arrays_reach_the_host_functions_without_a_registered_backend(gpu_backends,
                                                                         monkeypatch):
    cp = gpu_backends["cupy"].xp
    y_true, y_pred = np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.4, 0.3])
    want = pynn.metrics.f1_score(y_true, y_pred)
    for device_y_pred in (fake_cupy.ForeignGpuTensor(y_pred), cp.asarray(y_pred)):
        monkeypatch.setattr(pynn.backend, "_instances", {})  # no GPU backend created yet
        assert pynn.metrics.f1_score(y_true, device_y_pred) == want
        assert pynn.losses.BinaryCrossentropy()(y_true, device_y_pred) == pytest.approx(
            pynn.losses.BinaryCrossentropy()(y_true, y_pred))


def test_a_model_on_an_unregistered_gpu_backend_saves_and_copies(gpu_backends, monkeypatch,
                                                                  tmp_path, rng):
    import copy

    from pynn.backend.cupy_backend import CupyBackend
    x, labels = _data(rng, n=30)
    monkeypatch.setattr(pynn.backend, "_instances", {})
    model = _mlp(x.shape[1], 4, "softmax")
    model.compile("adam", "sparse_categorical_crossentropy", backend=CupyBackend())
    model.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.npz")
    _assert_close(copy.deepcopy(model).get_weights(), model.get_weights())
    assert pynn.load_model(tmp_path / "m.npz").optimizer.iterations == 4


@pytest.mark.parametrize("name", ["numpy", "cpu", "cuda"])
def test_a_custom_loss_summing_to_a_one_element_array_trains(gpu_backends, name):
    class OneElementSum(pynn.losses.Loss):
        name = "one_element_sum"

        def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
            d = y_pred - y_true
            return (d * d).sum(axis=(0, 1)).reshape(1), 2 * d * scale

    class TwoNumbers(OneElementSum):
        def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
            d = y_pred - y_true
            return (d * d).sum(axis=0), 2 * d * scale

    x = np.ones((8, 5), np.float32)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(2)])
    model.compile("sgd", OneElementSum(), backend=gpu_backends.get(name, name))
    history = model.fit(x, np.zeros((8, 2)), epochs=2, verbose=0)
    assert all(type(v) is float for v in history.history["loss"])
    model.compile("sgd", TwoNumbers(), backend=gpu_backends.get(name, name))
    with pytest.raises(TypeError, match=r"loss TwoNumbers: its sum must be one number, got "
                                        r"a \w+ of shape \(2,\)"):
        model.fit(x, np.zeros((8, 2)), verbose=0)

