"""Argument checks of every pynn._cuda entry point. They run wherever _cuda is built, also
without a GPU: each check must fail before any CUDA call, so the arrays here are objects that
only carry a __cuda_array_interface__ with a dummy pointer (never dereferenced). The kernels
themselves are tested on a GPU in test_cuda_backend.py."""

from __future__ import annotations

import numpy as np
import pytest

class FakeDeviceArray:
    """Only the interface: pynn._cuda must reject it before touching the (dummy) pointer."""

    def __init__(self, shape, typestr="<f4", strides=None, readonly=False, ptr=4096):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (ptr, readonly), "strides": strides,
                                         "version": 3}


@pytest.fixture
def _cuda():
    return pytest.importorskip("pynn._cuda", reason="pynn._cuda not built (no nvcc at build)")


def F(*shape, **kw):
    return FakeDeviceArray(shape, **kw)


BAD_CALLS = {
    "host array": (lambda c: c.activation_forward(1, 0.0, np.zeros(3, np.float32), F(3)),
                   TypeError, "__cuda_array_interface__"),
    "dtype": (lambda c: c.activation_forward(1, 0.0, F(3, typestr="<f8"), F(3)),
              TypeError, "float32"),
    "big endian": (lambda c: c.activation_forward(1, 0.0, F(3, typestr=">f4"), F(3)),
                   TypeError, "float32"),
    "shape": (lambda c: c.activation_forward(1, 0.0, F(3), F(4)), ValueError, "out"),
    "strides": (lambda c: c.softmax_forward(F(4, 6, strides=(4, 16)), F(4, 6)),
                ValueError, "C-contiguous"),
    "readonly out": (lambda c: c.softmax_forward(F(4, 6), F(4, 6, readonly=True)),
                     ValueError, "read-only"),
    "null pointer": (lambda c: c.softmax_forward(F(4, 6, ptr=0), F(4, 6)),
                     ValueError, "null device pointer"),
    "misaligned": (lambda c: c.softmax_forward(F(4, 6, ptr=4098), F(4, 6)),
                   ValueError, "aligned"),
    "ndim": (lambda c: c.softmax_forward(F(24), F(24)), ValueError, "2-d"),
    "act code": (lambda c: c.activation_forward(17, 0.0, F(3), F(3)), ValueError, "act"),
    "gelu without z": (lambda c: c.activation_backward(4, 0.0, None, F(3), F(3), F(3)),
                       ValueError, "pre-activation"),
    "bias shape": (lambda c: c.bias_activation(F(4, 6), F(5), 1, 0.0), ValueError, "bias"),
    "bias_grad out": (lambda c: c.bias_grad(F(4, 6), F(4)), ValueError, "out"),
    "label dtype": (lambda c: c.softmax_xent_sparse(F(4, 6), F(4, typestr="<i8"), F(4, 6), 1.0),
                    TypeError, "int32"),
    "label count": (lambda c: c.softmax_xent_sparse(F(4, 6), F(5, typestr="<i4"), F(4, 6), 1.0),
                    ValueError, "labels"),
    "dlogits is targets": (lambda c: c.softmax_xent_dense(F(4, 6), F(4, 6, ptr=8192),
                                                          F(4, 6, ptr=8192), 1.0),
                           ValueError, "targets"),
    "dlogits overlapping targets": (lambda c: c.softmax_xent_dense(F(4, 6), F(4, 6, ptr=8192),
                                                                   F(4, 6, ptr=8196), 1.0),
                                    ValueError, "may not overlap the targets"),
    "bias_grad out overlapping dz": (lambda c: c.bias_grad(F(4, 6), F(6, ptr=4100)),
                                     ValueError, "may not overlap dz"),
    "dlogits overlapping labels": (lambda c: c.softmax_xent_sparse(
        F(4, 6), F(4, typestr="<i4", ptr=8192), F(4, 6, ptr=8192), 1.0),
        ValueError, "may not overlap the labels"),
    "labels without classes": (lambda c: c.softmax_xent_sparse(F(4, 0), F(4, typestr="<i4"),
                                                               F(4, 0), 1.0),
                               ValueError, "no classes"),
    "loss kind": (lambda c: c.regression_loss("msle", F(3), F(3), F(3), 1.0, 1.0),
                  ValueError, "kind"),
    "huber delta": (lambda c: c.regression_loss("huber", F(3), F(3), F(3), 0.0, 1.0),
                    ValueError, "delta"),
    "bce eps": (lambda c: c.bce_loss(F(3), F(3), F(3), False, 0.7, 1.0), ValueError, "eps"),
    "adam step": (lambda c: c.adam_update(F(3), F(3, ptr=8192), F(3, ptr=12288),
                                          F(3, ptr=16384), 1e-3, 0.9, 0.999, 1e-7, 0.0, 0),
                  ValueError, "step"),
    "adam aliasing": (lambda c: c.adam_update(F(3), F(3, ptr=8192), F(3, ptr=12288),
                                              F(3, ptr=12288), 1e-3, 0.9, 0.999, 1e-7, 0.0, 1),
                      ValueError, "distinct"),
    "adam slot shape": (lambda c: c.adam_update(F(3), F(3, ptr=8192), F(4, ptr=12288),
                                                F(3, ptr=16384), 1e-3, 0.9, 0.999, 1e-7, 0.0, 1),
                        ValueError, "m"),
    "adam slots overlapping": (lambda c: c.adam_update(F(3), F(3, ptr=8192), F(3, ptr=12288),
                                                       F(3, ptr=12292), 1e-3, 0.9, 0.999, 1e-7,
                                                       0.0, 1),
                               ValueError, "non-overlapping"),
    "amsgrad v_hat aliasing m": (lambda c: c.adam_update(F(3), F(3, ptr=8192), F(3, ptr=12288),
                                                         F(3, ptr=16384), 1e-3, 0.9, 0.999,
                                                         1e-7, 0.0, 1, F(3, ptr=12288)),
                                 ValueError, "distinct"),
    "amsgrad v_hat shape": (lambda c: c.adam_update(F(3), F(3, ptr=8192), F(3, ptr=12288),
                                                    F(3, ptr=16384), 1e-3, 0.9, 0.999, 1e-7,
                                                    0.0, 1, F(2, ptr=20480)),
                            ValueError, "v_hat"),
    "nadam step": (lambda c: c.nadam_update(F(3), F(3, ptr=8192), F(3, ptr=12288),
                                            F(3, ptr=16384), 1e-3, 0.9, 0.999, 1e-7, 0.0, 0),
                   ValueError, "step"),
    "adamax slot dtype": (lambda c: c.adamax_update(F(3), F(3, ptr=8192), F(3, ptr=12288),
                                                    F(3, ptr=16384, typestr="<f8"), 1e-3, 0.9,
                                                    0.999, 1e-7, 0.0, 1),
                          TypeError, "float32"),
    "lion read-only slot": (lambda c: c.lion_update(F(3), F(3, ptr=8192),
                                                    F(3, ptr=12288, readonly=True), 1e-3, 0.9,
                                                    0.99, 0.0),
                            ValueError, "read-only"),
    "adadelta aliasing": (lambda c: c.adadelta_update(F(3), F(3, ptr=8192), F(3, ptr=12288),
                                                      F(3, ptr=12288), 1.0, 0.95, 1e-7, 0.0),
                          ValueError, "distinct"),
    "momentum without velocity": (lambda c: c.sgd_update(F(3), F(3, ptr=8192), None, 0.1, 0.9,
                                                         False),
                                  ValueError, "velocity"),
    "read-only weights": (lambda c: c.adagrad_update(F(3, readonly=True), F(3, ptr=8192),
                                                     F(3, ptr=12288), 0.1, 1e-7),
                          ValueError, "read-only"),
    # The training engine's constructor checks everything before its first CUDA call.
    "engine kernel shape": (lambda c: _engine(c, weights=[F(2, 3)]), ValueError,
                            r"layer 0 kernel: expected shape \(3, 2\)"),
    "engine kernel dtype": (lambda c: _engine(c, weights=[F(3, 2, typestr="<f8")]),
                            TypeError, "float32"),
    "engine bias shape": (lambda c: _engine(c, biases=[F(3)]), ValueError, "layer 0 bias"),
    "engine adam slots": (lambda c: _engine(c, weight_slots=[[F(3, 2)]]), ValueError,
                          "needs 2 slots"),
    "engine amsgrad slots": (lambda c: _engine(c, amsgrad=True), ValueError, "needs 3 slots"),
    "engine slot shape": (lambda c: _engine(c, weight_slots=[[F(3, 2), F(2, 3)]]), ValueError,
                          "kernel slot 1"),
    "engine read-only kernel": (lambda c: _engine(c, weights=[F(3, 2, readonly=True)]),
                                ValueError, "read-only"),
    "engine loss": (lambda c: _engine(c, loss="hinge"), ValueError, "unknown loss"),
    "engine optimizer": (lambda c: _engine(c, optimizer="lion"), ValueError,
                         "unknown optimizer"),
    "engine hits without labels": (lambda c: _engine(c, count_hits=True), ValueError,
                                   "sparse labels"),
    "engine sizes": (lambda c: _engine(c, sizes=[3, 2, 1]), ValueError, "one entry more"),
    "engine activation": (lambda c: _engine(c, activations=[99]), ValueError, "activation"),
    "engine device": (lambda c: _engine(c, device=-1), ValueError, "device"),
    # the optimizer kernels update each array in blocks of their own: shared memory races
    "engine slots sharing memory": (lambda c: _engine(c, weight_slots=[
        [F(3, 2, ptr=12288), F(3, 2, ptr=12292)]]), ValueError, r"arrays #1 and #2 overlap"),
    "engine bias inside the kernel": (lambda c: _engine(c, biases=[F(2, ptr=4100)]),
                                      ValueError, "must not share memory"),
}


def _engine(c, **changes):
    """pynn._cuda.DenseEngine for a 3 -> 2 layer (MSE, Adam) with `changes` to its arguments."""
    args = dict(sizes=[3, 2], activations=[0], activation_params=[0.0], weights=[F(3, 2)],
                biases=[F(2, ptr=8192)], trainable=[True],
                weight_slots=[[F(3, 2, ptr=12288), F(3, 2, ptr=16384)]],
                bias_slots=[[F(2, ptr=20480), F(2, ptr=24576)]], loss="mse",
                optimizer="adam", batch_size=4, amsgrad=False, momentum=False,
                count_hits=False, device=0)
    return c.DenseEngine(**{**args, **changes})


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_cuda_bindings_reject_bad_arrays_before_any_launch(_cuda, case):
    call, exc, words = BAD_CALLS[case]
    with pytest.raises(exc, match=words):
        call(_cuda)


@pytest.mark.parametrize("major,minor,archs,runs", [
    (9, 0, "80-real,90", True), (8, 6, "80-real", True), (8, 0, "86-real", False),
    (8, 9, "80", True), (12, 0, "90", True), (12, 0, "90-real", False),
    (9, 0, "90-virtual", True), (8, 0, "90-virtual", False),
    (9, 0, "90a", True), (9, 0, "90a-real", True), (8, 6, "90a", False), (10, 0, "90a", False),
    (10, 3, "100f", True), (10, 0, "103f", False), (12, 0, "100f", False),
    (9, 0, "native", True), (9, 0, "all-major", True), (7, 5, "", False),
    (9, 0, "99999999999", False)])
def test_the_architecture_list_is_read_as_cmake_writes_it(_cuda, major, minor, archs, runs):
    """'90a' on a 9.0 GPU was unsupported (compared as text with '90'), and 'native'/'all'
    raised from std::stoi (a ValueError out of devices())."""
    assert _cuda.arch_compiled(major, minor, archs) is runs

