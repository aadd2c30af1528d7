"""The CUDA engine's C++ (csrc/cuda/engine.cpp and cublas.cpp, as built) on a machine
without a GPU: compiled with AddressSanitizer and UBSan against host stand-ins for the CUDA
runtime, the kernels and cuBLAS' column-major SGEMM (tests/cuda_host/), and driven through
one train() call per case. Its steps must give the numpy backend's layer path: the batch
gathers, the three GEMMs' mapping onto cuBLAS, the loss and activation gradients, the frozen
layers, the optimizers' step counts and rates, the logs; and its checks must refuse bad
rows, labels and batch sizes. The kernels themselves are tested on a GPU
(test_cuda_backend.py); the engine as a whole too (test_cuda_engine.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import pynn
from pynn.backend.kernel_calls import ACTIVATION_CODES

ROOT = Path(__file__).resolve().parent.parent
LOSSES = ["softmax_xent_sparse", "softmax_xent_dense", "mse", "mae", "huber", "bce_logits"]
KERAS_LOSS = {"softmax_xent_sparse": "sparse_categorical_crossentropy",
              "softmax_xent_dense": "categorical_crossentropy", "mse": "mse", "mae": "mae",
              "huber": "huber", "bce_logits": "binary_crossentropy"}


@pytest.fixture(scope="module")
def engine_binary(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:  # (the package's own build needs one: CI has it)
        pytest.skip("no C++ compiler")
    out = tmp_path_factory.mktemp("engine") / "engine_host"
    host = ROOT / "tests" / "cuda_host"
    cmd = [compiler, "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined",
           "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", f"-I{host}",
           f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'csrc' / 'include'}",
           str(ROOT / "csrc" / "cuda" / "engine.cpp"), str(host / "engine_main.cpp"),
           str(host / "mock_cuda.cpp"), "-Ddlopen=mock_dlopen", "-Ddlsym=mock_dlsym",
           "-Ddlerror=mock_dlerror", str(ROOT / "csrc" / "cuda" / "cublas.cpp"), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def _run(binary, tmp_path, layers, loss, opt, x, y, order, first, last, batch, lr, hyper,
         step0=0, count_hits=False, max_batch=None):
    """layers: [(kernel, bias or None, activation name, param, trainable, slots)], slots a
    list of (kernel slot, bias slot or None). Returns (logs, arrays after the call) or the
    error message (exit status 3)."""
    n_slots = len(next((s for *_, t, s in layers if t), []))
    sizes = [layers[0][0].shape[0]] + [k.shape[1] for k, *_ in layers]
    sparse = loss == "softmax_xent_sparse"
    head = [len(layers), LOSSES.index(loss), ["sgd", "adam"].index(opt),
            max_batch or batch, int(count_hits), len(x), x.shape[1], int(sparse), len(order),
            first, last, batch, len(lr), int(hyper.get("nesterov", False)),
            int(hyper.get("amsgrad", False)), step0, n_slots]
    parts = [np.array(head, np.int64),
             np.array([hyper.get("beta1", 0.9), hyper.get("beta2", 0.999),
                       hyper.get("eps", 1e-7), hyper.get("weight_decay", 0.0),
                       hyper.get("momentum", 0.0), hyper.get("loss_param", 0.0)]),
             np.array(sizes, np.int64),
             np.array([0 if a in ("softmax",) else ACTIVATION_CODES[a]
                       for _, _, a, *_ in layers], np.int64),
             np.array([int(t) for *_, t, _ in layers], np.int64),
             np.array([int(b is not None) for _, b, *_ in layers], np.int64),
             np.array([p for _, _, _, p, *_ in layers], np.float64)]
    order_of_arrays = []
    for kernel, bias, _, _, trainable, slots in layers:
        order_of_arrays += [kernel] + ([bias] if bias is not None else [])
        if trainable:
            for ks, bs in slots:
                order_of_arrays += [ks] + ([bs] if bias is not None else [])
    parts += [a.astype(np.float32) for a in order_of_arrays]
    parts += [x.astype(np.float32),
              y.astype(np.int64) if sparse else y.astype(np.float32),
              np.asarray(order, np.int64), np.asarray(lr, np.float32)]
    drops = dict((at + 1, (rate, seed)) for at, rate, seed in hyper.get("dropout", []))
    parts += [np.array([drops.get(i, (0.0, 0))[0] for i in range(len(layers) + 1)]),
              np.array([drops.get(i, (0.0, 0))[1] for i in range(len(layers) + 1)], np.uint64)]
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    with open(src, "wb") as f:
        for p in parts:
            f.write(np.ascontiguousarray(p).tobytes())
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0"}
    done = subprocess.run([str(binary), str(src), str(dst)], capture_output=True, text=True,
                          env=env)
    if done.returncode == 3:
        return done.stderr
    assert done.returncode == 0, done.stderr
    raw = dst.read_bytes()
    n = last - first
    logs = np.frombuffer(raw[:n * 24], np.float64).reshape(n, 3)
    arrays, at = [], n * 24
    for a in order_of_arrays:
        arrays.append(np.frombuffer(raw[at:at + a.size * 4], np.float32).reshape(a.shape))
        at += a.size * 4
    assert at == len(raw)
    return logs, arrays


CASES = {  # hidden activations (with params), output activation, loss, optimizer, options
    "sparse-adam-hits": (["relu", ("leaky_relu", 0.3)], "softmax", "softmax_xent_sparse",
                         "adam", {}),
    "dense-sgd-nesterov": (["elu", "tanh"], "softmax", "softmax_xent_dense", "sgd",
                           {"momentum": 0.9, "nesterov": True}),
    "mse-adamw-amsgrad": (["gelu", "silu"], "linear", "mse", "adam",
                          {"weight_decay": 0.01, "amsgrad": True}),
    "huber-sigmoid-sgd": (["selu", "mish"], "sigmoid", "huber", "sgd", {"loss_param": 0.7}),
    "mae-tanh-adam": (["softplus", "hard_silu"], "tanh", "mae", "adam", {}),
    "bce-logits-adam": (["relu", "sigmoid"], "sigmoid", "bce_logits", "adam", {}),
    "sparse-frozen-first": (["relu", "tanh"], "softmax", "softmax_xent_sparse", "adam",
                            {"frozen": 0}),
    "mse-frozen-middle": (["relu", "tanh"], "linear", "mse", "sgd",
                          {"frozen": 1, "momentum": 0.5}),
    # nothing to train: no optimizer table, no update launch; the losses still come back
    "all-frozen": (["relu", "tanh"], "softmax", "softmax_xent_sparse", "adam",
                   {"frozen": "all"}),
    # dropout of the inputs and after each hidden layer (a linear one too), the masks of
    # the optimizer's step (step0 7: not 0), through the gradients below them
    "dropout-everywhere": ([("elu", 1.0), "linear"], "softmax", "softmax_xent_sparse", "sgd",
                           {"dropout": [(-1, 0.2, 11), (0, 0.5, 2**63 + 5), (1, 0.3, 7)],
                            "step0": 7, "momentum": 0.9}),
    "dropout-frozen-first": (["tanh", "gelu"], "linear", "mse", "adam",
                             {"dropout": [(0, 0.25, 3)], "frozen": 0}),
    "mid-run-schedule": (["relu", "relu"], "softmax", "softmax_xent_sparse", "adam",
                         {"first": 2, "step0": 7, "schedule": True}),
    # kernels of more than one block of the optimizer's launch (2048 elements), with a tail;
    # smooth activations (with 61 units a pre-activation at ReLU's kink, its unit on in one
    # rounding and off in the other, came up in ~1 run in 150) and, for Adam, an epsilon
    # that keeps a gradient near 0 from a whole step whose sign is the rounding's
    "wide-adam-amsgrad": (["tanh", "gelu"], "softmax", "softmax_xent_sparse", "adam",
                          {"widths": [70, 61, 3], "amsgrad": True, "weight_decay": 0.02,
                           "eps": 1e-3}),
    "wide-sgd-momentum": (["gelu", "tanh"], "linear", "mse", "sgd",
                          {"widths": [70, 61, 3], "momentum": 0.8}),
}
WIDTHS = [7, 9, 5]


def _case(rng, name):
    hidden, out_act, loss, opt, options = CASES[name]
    outs = {"softmax_xent_sparse": 4, "softmax_xent_dense": 4, "bce_logits": 3}.get(loss, 2)
    sizes = options.get("widths", WIDTHS) + [outs]
    x = rng.normal(size=(23, sizes[0])).astype(np.float32)
    if loss == "softmax_xent_sparse":
        y = rng.integers(0, outs, size=23)
    elif loss == "softmax_xent_dense":
        y = np.eye(outs, dtype=np.float32)[rng.integers(0, outs, size=23)]
    elif loss == "bce_logits":
        y = rng.integers(0, 2, size=(23, outs)).astype(np.float32)
    else:
        y = rng.normal(size=(23, outs)).astype(np.float32)
    acts = [a if isinstance(a, tuple) else (a, {"leaky_relu": 0.2, "elu": 1.0}.get(a, 0.0))
            for a in hidden] + [(out_act, 0.0)]
    n_slots = (3 if options.get("amsgrad") else 2) if opt == "adam" else \
        int(bool(options.get("momentum")))
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        kernel = (rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32)
        bias = rng.normal(size=b).astype(np.float32) * 0.1 if i != 1 else None  # one without
        trainable = options.get("frozen") not in (i, "all")
        slots = [(np.zeros_like(kernel), None if bias is None else np.zeros_like(bias))
                 for _ in range(n_slots)]
        layers.append((kernel, bias, *acts[i], trainable, slots))
    return layers, loss, opt, options, x, y


def _dense(model):
    return [layer for layer in model.layers if isinstance(layer, pynn.Dense)]


def _reference(layers, loss, opt, options, x, y, order, first, last, batch, lr, step0):
    """The numpy backend's layer path over the same batches: (weights, slots, mean losses,
    hits)."""
    pynn.set_backend("numpy")
    drops = {at: pynn.Dropout(rate, seed=seed) for at, rate, seed in options.get("dropout", [])}
    stack = [pynn.Input((layers[0][0].shape[0],))] + ([drops[-1]] if -1 in drops else [])
    for i, (k, b, a, p, *_) in enumerate(layers):
        stack.append(pynn.Dense(k.shape[1], activation=pynn.activations.Spec(a, p)
                                if a == "leaky_relu" else a, use_bias=b is not None))
        stack += [drops[i]] if i in drops else []
    model = pynn.Sequential(stack)
    for drop in drops.values():
        drop.step = step0  # (fit sets it so: the masks of the optimizer's step)
    for layer, (k, b, _, _, trainable, _) in zip(_dense(model), layers):
        layer.kernel.value[...] = k
        if b is not None:
            layer.bias.value[...] = b
        layer.trainable = trainable
    loss_obj = pynn.losses.get(KERAS_LOSS[loss])
    if loss == "huber":
        loss_obj = pynn.losses.Huber(delta=options["loss_param"])
    if opt == "adam":
        optimizer = (pynn.optimizers.AdamW(lr[0], weight_decay=options["weight_decay"],
                                           amsgrad=options.get("amsgrad", False),
                                           epsilon=options.get("eps", 1e-7))
                     if options.get("weight_decay") else pynn.optimizers.Adam(lr[0]))
    else:
        optimizer = pynn.optimizers.SGD(lr[0], momentum=options.get("momentum", 0.0),
                                        nesterov=options.get("nesterov", False))
    model.compile(optimizer=optimizer, loss=loss_obj, backend="numpy")
    optimizer.training_steps = step0
    losses, hits = [], []
    for i, step in enumerate(range(first, last)):
        optimizer.learning_rate = lr[i] if len(lr) > 1 else lr[0]
        rows = order[step * batch:(step + 1) * batch]
        value, out = model._train_step(x[rows], model.loss.prepare_targets(
            y[rows], model.output_shape, np.float32))
        losses.append(value)
        hits.append(int((np.asarray(out).argmax(axis=1) == y[rows]).sum())
                    if loss == "softmax_xent_sparse" else 0)
    params = [p for layer in _dense(model) for p in layer.params]
    slots = {id(p): optimizer.slot_arrays(p) for p in params if p.trainable}
    return model, params, slots, np.array(losses), np.array(hits)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_engines_steps_are_the_layer_paths(engine_binary, tmp_path, rng, name):
    layers, loss, opt, options, x, y = _case(rng, name)
    order = rng.permutation(len(x))
    batch = 5  # 23 rows: four batches of 5 and one of 3
    first = options.get("first", 0)
    last = 5
    lr = [0.01 * (1 + 0.5 * i) for i in range(last - first)] if options.get("schedule") \
        else [0.02]
    step0 = options.get("step0", 0)
    logs, arrays = _run(engine_binary, tmp_path, layers, loss, opt, x, y, order, first, last,
                        batch, lr, options, step0=step0,
                        count_hits=loss == "softmax_xent_sparse")
    previous = pynn.get_backend()
    try:
        model, params, slots, losses, hits = _reference(layers, loss, opt, options, x, y,
                                                        order, first, last, batch, lr, step0)
    finally:
        pynn.set_backend(previous)
    rows = np.array([min(batch, len(x) - s * batch) for s in range(first, last)])
    assert np.array_equal(logs[:, 1], rows)
    per_row = 1 if loss.startswith("softmax") else layers[-1][0].shape[1]
    np.testing.assert_allclose(logs[:, 0] / (rows * per_row), losses, rtol=1e-4, atol=1e-6)
    if loss == "softmax_xent_sparse":
        np.testing.assert_array_equal(logs[:, 2], hits)
    got = iter(arrays)
    # atol 1e-4, a 200th of a step (lr 0.02): Adam scales a gradient near 0 (a flat stretch of
    # hard_silu) up to a whole step, so two roundings of it moved a weight by 2-3e-5 (about
    # 1 run in 700 at 1e-5); the slots, sums of gradients that cancel, to rtol 1e-3 (a few
    # runs in 10,000 were 0.5% apart at 1e-4). A wrong step is far outside both.
    for (kernel, bias, _, _, trainable, layer_slots), layer in zip(layers, _dense(model)):
        np.testing.assert_allclose(next(got), layer.kernel.value, rtol=1e-4, atol=1e-4)
        if bias is not None:
            np.testing.assert_allclose(next(got), layer.bias.value, rtol=1e-4, atol=1e-4)
        if not trainable:
            np.testing.assert_array_equal(layer.kernel.value, kernel)  # frozen: untouched
            continue
        want = [slots[id(layer.kernel)]] + ([slots[id(layer.bias)]] if bias is not None else [])
        for s in range(len(layer_slots)):
            for param_slots in want:
                np.testing.assert_allclose(next(got), param_slots[s], rtol=1e-3, atol=1e-6)
    assert next(got, None) is None


def test_the_engines_checks(engine_binary, tmp_path, rng):
    layers, loss, opt, options, x, y = _case(rng, "sparse-adam-hits")
    order = np.arange(len(x))
    run = lambda **kw: _run(engine_binary, tmp_path,  # noqa: E731
                            **{"layers": layers, "loss": loss, "opt": opt, "x": x, "y": y,
                               "order": order, "first": 0, "last": 5, "batch": 5,
                               "lr": [0.01], "hyper": options, "count_hits": True, **kw})
    bad = y.copy()
    bad[13] = 4  # four classes
    assert "labels: expected class labels in [0, 4)" in run(y=bad)
    assert "order holds row 23" in run(order=np.r_[order[:-1], 23])
    assert "batch size 6 is outside [1, 5]" in run(batch=6, max_batch=5)
    assert "beyond the order's rows" in run(last=6)
    assert "beyond the order's rows" in run(last=2**62)  # (last * batch wrapped negative)
    assert "one learning rate, or one per step" in run(lr=[0.1, 0.2])
