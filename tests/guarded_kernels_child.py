"""Child process of test_cpu_kernels.py::test_kernels_never_touch_memory_outside_their_arrays:
every element-wise kernel, optimizer update, dropout, the native training step and the native
predict (single rows too) on arrays that end, or start, against an inaccessible page, for
every ISA this CPU runs, 1 and 2 threads. One element too far is a segfault (the parent reports
the exit status); results are compared loosely with numpy so a kernel that skips work fails
too. Prints the number of cases run."""

from __future__ import annotations

import sys

import numpy as np

from guarded_memory import guarded, guarded_copy

import pynn
import pynn._C as C

rng = np.random.default_rng()
cases = 0


def g(x, at):
    return guarded_copy(np.asarray(x), at)


def elementwise(rows, cols, at):
    z = g(rng.standard_normal((rows, cols), dtype=np.float32), at)
    dy = g(rng.standard_normal((rows, cols), dtype=np.float32), at)
    for code in range(7):
        y = guarded((rows, cols), at=at)
        C.activation_forward(code, 0.1, z, y)
        dz = guarded((rows, cols), at=at)
        C.activation_backward(code, 0.1, z, y, dy, dz)
    assert np.allclose(y, np.tanh(z), atol=1e-5)
    sm = guarded((rows, cols), at=at)
    C.softmax_forward(z, sm)
    assert np.allclose(sm.sum(axis=1), 1, atol=1e-5)
    C.softmax_backward(sm, dy, guarded((rows, cols), at=at))
    bias = guarded((cols,), at=at)
    C.bias_grad(dz, bias)
    assert np.allclose(bias, dz.astype(np.float64).sum(axis=0), rtol=1e-4, atol=1e-4)
    labels = g(rng.integers(0, cols, rows).astype(np.int32), at)
    C.softmax_xent_sparse(z, labels, guarded((rows, cols), at=at), 1.0)
    C.softmax_xent_dense(z, sm, guarded((rows, cols), at=at), 1.0)
    target = g(rng.random((rows, cols), dtype=np.float32), at)
    for loss in (C.mse_loss, C.mae_loss):
        loss(z, target, guarded((rows, cols), at=at), 1.0)
    C.huber_loss(z, target, guarded((rows, cols), at=at), 1.0, 1.0)
    C.bce_loss(z, target, guarded((rows, cols), at=at), True, 1e-7, 1.0)
    mask = guarded((rows, cols), at=at)
    C.dropout_apply(None, mask, 0.5, 7, 1)
    C.dropout_apply(z, guarded((rows, cols), at=at), 0.5, 7, 1)


def optimizers(n, at):
    w, grad = g(rng.standard_normal(n, dtype=np.float32), at), g(rng.standard_normal(n, dtype=np.float32), at)
    s1, s2 = g(np.abs(rng.standard_normal(n, dtype=np.float32)), at), guarded((n,), at=at)
    before = w.copy()
    C.sgd_update(w, grad, s1, 0.1, 0.9, True)
    C.adam_update(w, grad, s1, s2, 1e-3, 0.9, 0.999, 1e-7, 0.01, 3)
    C.rmsprop_update(w, grad, s2, s1, 1e-3, 0.9, 0.5, 1e-7)
    C.adagrad_update(w, grad, s2, 0.01, 1e-7)
    assert not np.array_equal(w, before)


def model_paths(n_in, rows, at):
    model = pynn.Sequential([pynn.layers.Dense(33, activation="relu", input_shape=(n_in,)),
                             pynn.layers.Dropout(0.2),
                             pynn.layers.Dense(5, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = g(rng.standard_normal((rows, n_in), dtype=np.float32), at)
    y = g(rng.integers(0, 5, rows).astype(np.int32), at)
    model.fit(x, y, epochs=1, batch_size=7, verbose=0)
    full = model.predict(x)
    for i in (0, rows - 1):
        row = g(x[i:i + 1], at)
        assert np.allclose(model.predict(row), full[i:i + 1], atol=1e-5)


for isa in [i for i in ("generic", "avx2", "avx512") if C.cpu_supports_isa(i)]:
    C.set_gemm_isa(isa)
    for threads in (1, 2):
        C.set_num_threads(threads)
        for at in ("end", "start"):
            for rows, cols in [(1, 1), (1, 7), (3, 9), (17, 33), (5, 129), (2, 1031)]:
                elementwise(rows, cols, at)
                cases += 1
            for n in (1, 7, 9, 33, 1031, 70001):
                optimizers(n, at)
                cases += 1
            for n_in, rows in [(1, 1), (17, 3), (31, 20), (300, 9)]:
                model_paths(n_in, rows, at)
                cases += 1
print(cases)
sys.exit(0)
