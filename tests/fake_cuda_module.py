"""A stand-in for pynn._cuda on fake_cupy's arrays: each kernel checks its arguments as
csrc/bindings/cuda_arrays.h does (device arrays, dtype, C-contiguous) and runs the
same-named pynn._C kernel on the host memory behind them (both modules take the same
arguments, the CUDA one a trailing stream), so the `cuda` backend's calls are checked
against the real kernels' results. `calls` lists the kernels run."""

from __future__ import annotations

import types

import numpy as np
from fake_cupy import ndarray

_FLOAT_ARGS = {"labels": np.int32}


def _kernel_array(value, name):
    """A kernel argument as the CUDA bindings take it (csrc/bindings/cuda_arrays.h): a device
    array, float32 (int32 labels), C-contiguous; the host NumPy array behind it."""
    if value is None:
        return None
    if not isinstance(value, ndarray):
        raise TypeError(f"{name}: expected a CUDA device array, got {type(value).__name__}")
    want = _FLOAT_ARGS.get(name, np.float32)
    if value.dtype != want:
        raise TypeError(f"{name}: expected dtype {np.dtype(want).name}, got {value.dtype}")
    if not value._a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    return value._a


def make_fake_cuda_module(cpu_module):
    """A stand-in for pynn._cuda that runs `cpu_module`'s (pynn._C's) kernels on the host
    arrays behind fake device arrays, after the CUDA bindings' argument checks."""
    from pynn.backend.kernel_calls import ACTIVATION_CODES

    codes = {v: k for k, v in ACTIVATION_CODES.items()}
    module = types.SimpleNamespace(architectures="fake", calls=[])

    def kernel(name, arg_names):
        cpu_kernel = getattr(cpu_module, name)

        def call(*args):
            *args, stream = args
            if not isinstance(stream, int):
                raise TypeError(f"{name}: the last argument must be a stream pointer")
            module.calls.append(name)
            host = [_kernel_array(a, n) if n else a for a, n in zip(args, arg_names)]
            return cpu_kernel(*host)

        return call

    # The argument names of bind_cuda_kernels.cpp ('' for a scalar).
    signatures = {
        "activation_forward": ("", "", "z", "out"),
        "activation_backward": ("", "", "z", "y", "dy", "out"),
        "softmax_forward": ("z", "out"),
        "softmax_backward": ("y", "dy", "out"),
        "bias_grad": ("dz", "out"),
        "softmax_xent_sparse": ("logits", "labels", "dlogits", ""),
        "softmax_xent_dense": ("logits", "targets", "dlogits", ""),
        "bce_loss": ("pred", "target", "grad_out", "", "", ""),
        "sgd_update": ("w", "g", "vel", "", "", ""),
        "adam_update": ("w", "g", "m", "v", "", "", "", "", "", "", "v_hat"),
        "nadam_update": ("w", "g", "m", "v", "", "", "", "", "", ""),
        "adamax_update": ("w", "g", "m", "u", "", "", "", "", "", ""),
        "lion_update": ("w", "g", "m", "", "", "", ""),
        "adadelta_update": ("w", "g", "acc_grad", "acc_delta", "", "", "", ""),
        "rmsprop_update": ("w", "g", "vel", "mom", "", "", "", ""),
        "adagrad_update": ("w", "g", "acc", "", ""),
    }
    for name, arg_names in signatures.items():
        setattr(module, name, kernel(name, arg_names))

    def bias_activation(c, bias, act, param, stream):
        module.calls.append("bias_activation")
        z = _kernel_array(c, "c")
        b = _kernel_array(bias, "bias")
        if b is not None:
            z += b
        out = np.empty_like(z)
        cpu_module.activation_forward(act, param, z, out)
        z[...] = out
        return None

    def regression_loss(kind, pred, target, grad, delta, grad_scale, stream):
        module.calls.append("regression_loss")
        p, t, g = (_kernel_array(a, n) for a, n in ((pred, "pred"), (target, "target"),
                                                    (grad, "grad_out")))
        if kind == "huber":
            return cpu_module.huber_loss(p, t, g, delta, grad_scale)
        return getattr(cpu_module, f"{kind}_loss")(p, t, g, grad_scale)

    module.bias_activation = bias_activation
    module.regression_loss = regression_loss
    module.devices = lambda: {"error": "", "devices": [{"supported": True,
                                                      "compute_capability": "fake"}]}
    module.activation_names = codes
    return module
