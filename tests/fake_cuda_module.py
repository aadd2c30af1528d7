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


def make_fake_dense_engine(cpu_module):
    """A stand-in for pynn._cuda.DenseEngine with the binding's arguments (bind_cuda_engine.cpp),
    stepping as csrc/cuda/engine.cpp does, on the host arrays behind fake device arrays (numpy
    float32 GEMMs, pynn._C's kernels): it checks the Python glue (cuda_engine.py: what it passes,
    in which order, how it reads the logs back), not the CUDA code, which a GPU tests."""
    from pynn.backend.kernel_calls import ACTIVATION_CODES

    linear = ACTIVATION_CODES["linear"]
    fused = ("softmax_xent_sparse", "softmax_xent_dense", "bce_logits")

    class DenseEngine:
        def __init__(self, sizes, activations, activation_params, weights, biases, trainable,
                     weight_slots, bias_slots, loss, optimizer, batch_size, amsgrad, momentum,
                     count_hits, device):
            if not isinstance(device, int) or device < 0:
                raise ValueError("device: expected a CUDA device number >= 0")
            if loss not in fused + ("mse", "mae", "huber") or optimizer not in ("sgd", "adam"):
                raise ValueError(f"DenseEngine: unknown loss {loss!r} or optimizer {optimizer!r}")
            need = (3 if amsgrad else 2) if optimizer == "adam" else int(momentum)
            self.layers = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                w = _kernel_array(weights[i], "weights")
                if w.shape != (a, b):
                    raise ValueError(f"layer {i} kernel: expected shape {(a, b)}, got {w.shape}")
                bias = _kernel_array(biases[i], "bias")
                slots = [[_kernel_array(s, "slot") for s in group]
                         for group in (weight_slots[i], bias_slots[i])]
                if trainable[i] and (len(slots[0]) < need or
                                     (bias is not None and len(slots[1]) < need)):
                    raise ValueError(f"layer {i}: the optimizer needs {need} slots")
                self.layers.append((w, bias, activations[i], activation_params[i], trainable[i],
                                    *slots))
            self.loss, self.optimizer, self.max_batch = loss, optimizer, batch_size
            if count_hits and loss != "softmax_xent_sparse":
                raise ValueError("DenseEngine: accuracy is counted with sparse labels only")
            self.count_hits, self.out_dim = count_hits, sizes[-1]
            self.momentum = optimizer == "sgd" and bool(momentum)
            self.amsgrad = optimizer == "adam" and bool(amsgrad)
            self.drops = {}  # layer (-1: the inputs) -> (rate, seed)

        def set_dropout(self, layer, rate, seed):
            if not -1 <= layer < len(self.layers) - 1:
                raise ValueError(f"DenseEngine.set_dropout: layer must be in [-1, "
                                 f"{len(self.layers) - 1}), got {layer}")
            if not 0 <= rate < 1:
                raise ValueError(f"DenseEngine.set_dropout: rate must be in [0, 1), got {rate}")
            self.drops[layer] = (rate, seed)

        def _drop(self, layer, a, step):
            """a * the mask of layer's dropout at this step (a itself without one)."""
            rate, seed = self.drops.get(layer, (0.0, 0))
            if rate == 0:
                return a
            out = np.empty_like(a)
            cpu_module.dropout_apply(a, out, rate, seed, step)
            return out

        def train(self, x, y, order, first, last, batch_size, lr, beta1, beta2, epsilon,
                  weight_decay, momentum, nesterov, amsgrad, loss_param, step0, stream):
            if not isinstance(stream, int) or not 1 <= batch_size <= self.max_batch:
                raise ValueError("DenseEngine.train: bad stream or batch size")
            if not (isinstance(order, np.ndarray) and order.dtype == np.int64):
                raise TypeError("order: expected a C-contiguous 1-D int64 numpy array")
            if len(lr) not in (1, last - first):
                raise ValueError("DenseEngine.train: expected one learning rate, or one per step")
            if momentum != 0 and not self.momentum:
                raise ValueError("momentum: this engine was built without the velocity slots")
            if amsgrad and not self.amsgrad:
                raise ValueError("amsgrad: this engine was built without the v_hat slots")
            x = _kernel_array(x, "x")
            sparse = self.loss == "softmax_xent_sparse"
            want = (len(x),) if sparse else (len(x), self.out_dim)
            if tuple(y.shape) != want:
                raise ValueError(f"y: expected shape {want}, got {tuple(y.shape)}")
            if sparse:
                if y.dtype not in (np.int32, np.int64) or not y._a.flags.c_contiguous:
                    raise TypeError("y: expected int32 or int64 labels")
                y = y._a
                rows = order[first * batch_size:last * batch_size]
                if ((y[rows] < 0) | (y[rows] >= self.out_dim)).any():
                    # (the CUDA engine runs the chunk, then says so; here it stops first)
                    raise IndexError(f"labels: expected class labels in [0, {self.out_dim}), "
                                     f"got an out-of-range label")
            else:
                y = _kernel_array(y, "y")
            logs = []
            for i in range(last - first):
                idx = order[(first + i) * batch_size:(first + i + 1) * batch_size]
                rate = lr[0] if len(lr) == 1 else lr[i]
                logs.append(self._step(x[idx], y[idx], rate, step0 + i + 1, beta1, beta2,
                                       epsilon, weight_decay, momentum, nesterov, amsgrad,
                                       loss_param))
            return np.array(logs, dtype=np.float64).reshape(-1, 3)

        def _step(self, a, y, lr, t, beta1, beta2, eps, wd, momentum, nesterov, amsgrad, delta):
            rows = len(a)
            inputs, zs, ys = [], [], []
            a = self._drop(-1, a, t - 1)  # (the masks of the optimizer's steps before this)
            for i, (w, b, act, param, *_) in enumerate(self.layers):
                inputs.append(a)
                z = a @ w + (b if b is not None else 0)
                z = z.astype(np.float32)
                y_act = np.empty_like(z)
                cpu_module.activation_forward(act, param, z, y_act)
                zs.append(z)
                ys.append(y_act)
                a = self._drop(i, y_act, t - 1)
            top = self.layers[-1]
            logits = zs[-1]
            dz = np.empty_like(logits)
            hits = 0
            if self.loss == "softmax_xent_sparse":
                labels = np.ascontiguousarray(y, dtype=np.int32)
                total = cpu_module.softmax_xent_sparse(logits, labels, dz, 1.0 / rows)
                hits = int((logits.argmax(axis=1) == labels).sum()) if self.count_hits else 0
            elif self.loss == "softmax_xent_dense":
                total = cpu_module.softmax_xent_dense(logits, y, dz, 1.0 / rows)
            elif self.loss == "bce_logits":
                total = cpu_module.bce_loss(logits.ravel(), y.ravel(), dz.ravel(), True, 0.0,
                                            1.0 / logits.size)
            else:
                pred = ys[-1]
                scale = 1.0 / pred.size
                if self.loss == "huber":
                    total = cpu_module.huber_loss(pred, y, dz, delta, scale)
                else:
                    total = getattr(cpu_module, f"{self.loss}_loss")(pred, y, dz, scale)
                if top[2] != linear:
                    cpu_module.activation_backward(top[2], top[3], logits, pred, dz, dz)
            grads = [None] * len(self.layers)
            lowest = min((i for i, layer in enumerate(self.layers) if layer[4]),
                         default=len(self.layers))
            for i in range(len(self.layers) - 1, lowest - 1, -1):
                w, b, *_ = self.layers[i]
                grads[i] = ((inputs[i].T @ dz).astype(np.float32), dz.sum(axis=0, dtype=np.float32))
                if i == lowest:
                    break
                da = self._drop(i - 1, (dz @ w.T).astype(np.float32), t - 1)
                below = self.layers[i - 1]
                if below[2] != linear:
                    cpu_module.activation_backward(below[2], below[3], zs[i - 1], ys[i - 1], da,
                                                   da)
                dz = da
            for i, (w, b, act, param, trainable, w_slots, b_slots) in enumerate(self.layers):
                if not trainable:
                    continue
                for value, grad, slots in ((w, grads[i][0], w_slots), (b, grads[i][1], b_slots)):
                    if value is None:
                        continue
                    if self.optimizer == "sgd":
                        cpu_module.sgd_update(value, grad, slots[0] if momentum else None, lr,
                                              momentum, nesterov)
                    else:
                        cpu_module.adam_update(value, grad, slots[0], slots[1], lr, beta1, beta2,
                                               eps, wd, t, slots[2] if amsgrad else None)
            return total, rows, hits

    return DenseEngine


def make_fake_gpu(cpu_module):
    """(cupy, pynn._cuda) as a GPU machine has them, faked: fake_cupy (with a cuBLAS handle)
    and the CUDA module with its training engine's stand-in, which fit on `cuda` then takes
    by default."""
    import fake_cupy

    cupy = fake_cupy.make_fake_cupy()
    cupy.cuda.device = types.SimpleNamespace(get_cublas_handle=lambda: 1)
    module = make_fake_cuda_module(cpu_module)
    module.DenseEngine = make_fake_dense_engine(cpu_module)
    module.blas_unavailable_reason = lambda: ""
    return cupy, module
