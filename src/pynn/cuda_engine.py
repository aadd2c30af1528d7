"""The CUDA training engine: whole mini-batch steps on the GPU with no Python per batch.

pynn._cuda.DenseEngine (csrc/cuda/engine.cpp) runs a chunk of batches from C++: it gathers
each shuffled batch on the device, runs the forward GEMMs (cuBLAS) with the bias and
activation kernels, the fused loss and gradient, the backward GEMMs and bias gradients and the
optimizer's fused update, reading the losses back once per chunk. fit and train_on_batch use
it by default on the cuda backend for stacks of Dense layers (an Activation after a linear
Dense folds in; a softmax or sigmoid output fuses with its cross-entropy) with the
cross-entropies, binary cross-entropy on logits or a sigmoid, MSE, MAE or Huber; SGD
(momentum, nesterov), Adam or AdamW (amsgrad too); frozen layers, learning-rate schedules and
sparse accuracy; Dropout of the inputs or after a hidden layer (once it has run on a GPU:
DROPOUT_RUN_ON_A_GPU below). Anything else (normalization, regularizers, clipping, moving
averages, sample or class weights, other optimizers or metrics) trains layer by layer, and
`unsupported_reason` says why (fit(verbose=...) prints it). The kernels are the cuda backend's
own, so both paths compute the same steps to float32 rounding (tests/test_cuda_engine.py, on
a GPU).
"""

from __future__ import annotations

import numpy as np

from . import config, losses, metrics, optimizers
from .backend.kernel_calls import ACTIVATION_CODES
from .engine import NativeEngine, _dense_stack, _loss_kind, _loss_reason, _rows

# Dropout in the engine (of the inputs, after a hidden layer: csrc/cuda/dropout.cu, the layer
# path's masks) is checked on the host stand-ins (tests/test_cuda_engine_host_code.py) and
# waits for its first GPU run (tests/test_cuda_engine.py): until then a model with dropout
# trains layer by layer on `cuda`, and the tests set this.
DROPOUT_RUN_ON_A_GPU = False

_KINDS = ("softmax_xent_sparse", "softmax_xent_dense", "mse", "mae", "huber", "bce_logits")
_FUSED = ("softmax_xent_sparse", "softmax_xent_dense", "bce_logits")  # output act in the loss
_OPTIMIZERS = {optimizers.SGD: "sgd", optimizers.Adam: "adam", optimizers.AdamW: "adam"}


def unsupported_reason(model, for_training=True, weighted=False):
    """None when the CUDA engine can train this compiled model on the cuda backend, else
    why not (fit then trains layer by layer)."""
    if not for_training:
        return "predict on the GPU runs layer by layer"
    module = getattr(model.backend, "_cuda", None)
    if not hasattr(module, "DenseEngine"):
        return "pynn._cuda has no DenseEngine (built without it)"
    why = _blas_reason(model.backend)
    if why:
        return why
    if config.floatx() != "float32":
        return "floatx is not float32"
    if weighted:
        return CudaEngine.weights_refused
    stack = _dense_stack(model, True)
    if isinstance(stack, str):
        return stack
    if stack.input_bn is not None or any(s.bn is not None for s in stack):
        return "normalization or rescaling (the cuda engine has none)"
    if not DROPOUT_RUN_ON_A_GPU and stack.dropouts():
        return "dropout (the cuda engine's has not yet run on a GPU)"
    for stage in stack:
        if stage.act.name not in ACTIVATION_CODES and stage is not stack[-1]:
            return f"activation {stage.act.name} in layer {stage.dense.name!r}"
        if stage.dense.regularized():
            return f"a regularizer on layer {stage.dense.name!r}"
        params = [p for p in stage.dense.params if not p.statistic]
        if any(p.trainable != stage.dense.trainable for p in params):
            return f"layer {stage.dense.name!r} has weights frozen one by one (param.trainable)"
    last = stack[-1].act.name
    loss = model.loss
    why = _loss_reason(loss, last, "the cuda engine")
    if why is not None:
        return why
    if loss.reduction not in losses._MEAN_REDUCTIONS:
        return f"loss reduction {loss.reduction!r} (the cuda engine takes the batch's mean)"
    kind = _loss_kind(loss, last)
    if kind not in _KINDS:  # ("bce": probabilities from another output than a sigmoid)
        return f"loss {type(loss).__name__} with a {last} output"
    if kind not in _FUSED and last not in ACTIVATION_CODES:
        return f"a {last} output with loss {type(loss).__name__}"
    opt = model.optimizer
    if type(opt) not in _OPTIMIZERS:
        return f"optimizer {type(opt).__name__} (the cuda engine has SGD, Adam and AdamW)"
    if opt.clipping[0] is not None or opt.use_ema or opt.gradient_accumulation_steps:
        return "gradient clipping, use_ema or gradient accumulation"
    if opt.weight_decay and not opt._fuses_weight_decay:
        return f"weight_decay on {type(opt).__name__}"
    for _, fn in model._metrics:
        if not (fn is metrics.sparse_categorical_accuracy and kind == "softmax_xent_sparse"):
            what = getattr(fn, "__name__", None) or getattr(fn, "name", type(fn).__name__)
            return f"metric {what} (the cuda engine computes sparse accuracy only)"
    return None


def _blas_reason(backend):
    """Why cuBLAS cannot be used, or ''. CuPy loads its cuBLAS when asked for a handle; the
    engine then opens the same library by name."""
    try:
        backend.xp.cuda.device.get_cublas_handle()
    except Exception as exc:  # noqa: BLE001 - any failure is a reason to train by layers
        return f"cuBLAS is unavailable through CuPy ({exc})"
    return backend._cuda.blas_unavailable_reason()


class CudaEngine(NativeEngine):
    """A pynn._cuda.DenseEngine bound to a model's weights and optimizer state."""

    weights_refused = "sample or class weights (the cuda engine takes unweighted batches)"
    # its chunk's losses come back at its end: fit hands TerminateOnNaN one batch a chunk
    stops_on_nonfinite_loss = False

    def __init__(self, model, batch_size):
        version = config.settings_version()  # first: a change made meanwhile is noticed
        backend = model.backend
        stack = _dense_stack(model, True)
        dense = [s.dense for s in stack]
        acts = [s.act for s in stack]
        loss, opt = model.loss, model.optimizer
        self._take_loss(loss)
        self.kind = _loss_kind(loss, acts[-1].name)
        codes = [0 if a.name not in ACTIVATION_CODES else ACTIVATION_CODES[a.name]
                 for a in acts]  # (an output softmax is fused: its code is not used)
        sizes = [int(dense[0].kernel.shape[0])] + [d.units for d in dense]  # (not its
        # input_shape: a Dense shared with a model of other leading axes keeps that one)
        trainable = [d.trainable for d in dense]

        def slots(p):
            return opt.slot_arrays(p) if p.trainable else []
        count_hits = bool(model._metrics)  # (only sparse accuracy gets here)
        self.device = dense[0].kernel.value.device.id  # (the weights' GPU: the engine's)
        args = (sizes, codes, [float(a.param) for a in acts], [d.kernel.value for d in dense],
                [d.bias.value if d.use_bias else None for d in dense], trainable,
                [slots(d.kernel) for d in dense],
                [slots(d.bias) if d.use_bias else [] for d in dense], self.kind,
                _OPTIMIZERS[type(opt)], int(batch_size), bool(getattr(opt, "amsgrad", False)),
                bool(getattr(opt, "momentum", 0.0)), count_hits, self.device)
        drops = stack.dropouts()

        def build():
            engine = backend._cuda.DenseEngine(*args)
            for i, drop in drops:  # (each allocates its masked values' buffer)
                engine.set_dropout(i, drop.rate, drop.seed)
            return engine
        try:
            self.engine = build()
        except RuntimeError as exc:  # the engine's buffers come from cudaMalloc, not CuPy's
            if "out of memory" not in str(exc):  # pool: free what the pool keeps, once
                raise
            backend.xp.get_default_memory_pool().free_all_blocks()
            self.engine = build()
        self.dropouts = [drop for _, drop in drops]
        self.backend = backend
        self.params = [p for d in dense for p in d.params]
        self.bn_params = []
        self.optimizer = opt
        self.loss_param = float(loss.delta) if self.kind == "huber" else 0.0
        self.per_row = 1 if self.kind.startswith("softmax") else sizes[-1]  # loss terms a row
        self.out_dim = sizes[-1]
        self.max_batch = int(batch_size)
        self.needs_outputs = False
        self.metric_names = [name for name, _ in model._metrics]
        self._remember_settings(model, version)

    def matches(self, model):
        """As NativeEngine's, and False once the optimizer clips, averages or accumulates
        (options a callback may set mid-fit without a rebuild the CPU engine needs: it reads
        them each call; this engine has none of them, so fit asks again and trains by
        layers)."""
        opt = model.optimizer
        if opt is not self.optimizer or opt.clipping[0] is not None or opt.use_ema or \
                opt.gradient_accumulation_steps:
            return False
        return super().matches(model)

    def train(self, x, y, order, first, last, batch_size, sample_weight=None, outputs=None,
              stop_on_nonfinite_loss=False):
        """Runs batches [first, last) of the epoch; returns (n, 1 + metrics) per-batch logs:
        the mean loss, then the accuracy for each metric asked for. It runs every batch
        (stops_on_nonfinite_loss is False: fit asks it for one batch at a time instead)."""
        if stop_on_nonfinite_loss:
            raise ValueError("the cuda engine runs a chunk's batches whatever their losses")
        if sample_weight is not None or outputs is not None:
            raise ValueError("the cuda engine trains unweighted batches and hands back no "
                             "outputs")
        opt = self.optimizer
        count = last - first
        lr = (opt.scheduled_rates(opt.training_steps, count) if opt.has_schedule
              else [opt.rate()])
        xp = self.backend.xp
        if self.kind == "softmax_xent_sparse":
            if y.dtype not in (np.int32, np.int64):
                y = y.astype(np.int64)
        else:
            y = y.reshape(len(y), -1).astype(np.float32, copy=False)
        x, y = xp.ascontiguousarray(_rows(x)), xp.ascontiguousarray(y)  # (no copy: as fit's)
        if x.device.id != self.device or y.device.id != self.device:
            raise ValueError(f"the data is on GPU {x.device.id} (targets {y.device.id}), the "
                             f"model's weights on GPU {self.device}")
        order = np.ascontiguousarray(order, dtype=np.int64)
        try:
            logs = self._train(x, self._loss_targets(y), order, first, last, batch_size, lr)
        except IndexError as exc:
            if str(exc).startswith("labels"):  # out of range: every step of the chunk ran
                self._count_steps(count)
            raise
        self._count_steps(count)
        rows = logs[:, 1]
        out = np.empty((count, 1 + len(self.metric_names)))
        out[:, 0] = logs[:, 0] / (rows * self.per_row)
        out[:, 1:] = (logs[:, 2] / rows)[:, None]
        return out

    def _train(self, x, y, order, first, last, batch_size, lr):
        opt = self.optimizer
        return self.engine.train(
            x, y, order, first, last, batch_size, lr, getattr(opt, "beta_1", 0.9),
            getattr(opt, "beta_2", 0.999), getattr(opt, "epsilon", 1e-7),
            getattr(opt, "weight_decay", 0.0), getattr(opt, "momentum", 0.0),
            bool(getattr(opt, "nesterov", False)), bool(getattr(opt, "amsgrad", False)),
            self.loss_param, opt.training_steps, self.backend._stream())

    def predict(self, x, checked=False):
        raise NotImplementedError("the cuda engine trains; predict runs layer by layer")
