"""When the native engine can train a model, and how it is driven.

The native engine (pynn._C.DenseEngine, csrc/cpu/engine.cpp) runs whole mini-batch steps in
C++: forward with fused bias + activation, loss, backward and the optimizer update, with no
Python per batch. It takes stacks of Dense layers on the cpu backend in float32: an
Activation right after a linear Dense folds into it; a BatchNormalization, LayerNormalization
or RMSNormalization of the inputs, or before or after a hidden layer's activation (a
Normalization or Rescaling of the inputs too; an Identity anywhere is skipped), and a
Dropout of the inputs (after their normalisation) or at a hidden layer's end run inside the
step (the dropout with the layer path's counter-based masks); L1/L2 weight penalties join
loss and gradients. With the losses and optimizers of this package, gradient clipping,
sample/class weights and any metric (accuracy, MSE and MAE computed in C++; others updated in
Python from the outputs the engine hands back per batch). Anything else trains layer by
layer; `unsupported_reason` says why.
"""

from __future__ import annotations

import numbers
import os
import weakref

import numpy as np

from . import config, constraints, losses, metrics, optimizers, regularizers
from .layers import (ACTIVATION_LAYERS, ActivityRegularization, AlphaDropout,
                     BatchNormalization, Dense, Dropout,
                     Flatten, GaussianDropout, GaussianNoise, Identity, InputLayer,
                     LayerNormalization, Normalization, Rescaling, Reshape, RMSNormalization)
from .layers.feature_normalization import EPSILON
from .layers.base import ENGINE_SETTINGS
from .backend.cpu_backend import ACTIVATION_CODES
from .backend.numpy_backend import dropout_key, splitmix64

_SOFTMAX_CODE = len(ACTIVATION_CODES)  # engine.h's kSoftmax: the code after the activations
_METRIC_NAMES = {
    metrics.sparse_categorical_accuracy: "sparse_accuracy",
    metrics.categorical_accuracy: "categorical_accuracy",
    metrics.binary_accuracy: "binary_accuracy",
    metrics.mean_squared_error: "mse",
    metrics.mean_absolute_error: "mae",
}
_REGULARIZERS = (regularizers.Regularizer, regularizers.L1, regularizers.L2,
                 regularizers.L1L2)  # l1 * sum|w| + l2 * sum w^2 exactly
_OPTIMIZERS = {optimizers.SGD: "sgd", optimizers.Adam: "adam", optimizers.AdamW: "adam",
               optimizers.RMSprop: "rmsprop", optimizers.Adagrad: "adagrad",
               optimizers.Nadam: "nadam", optimizers.Adamax: "adamax", optimizers.Lion: "lion",
               optimizers.Adadelta: "adadelta"}


def _native_module():
    try:
        from . import _C
    except ImportError:
        return None
    return _C if hasattr(_C, "DenseEngine") else None


# What the engine runs in a Dense's normalisation slot (before or after its activation):
# batch statistics, or each row's own (layer / RMS normalisation).
_NORMALISATIONS = (BatchNormalization, LayerNormalization, RMSNormalization)


class _Stage:
    """One engine layer: a Dense, its activation, an optional normalisation (_NORMALISATIONS:
    before the activation when `bn_pre`, else after it) and an optional Dropout at the end."""

    def __init__(self, dense):
        self.dense, self.act = dense, dense.activation
        self.bn, self.bn_pre, self.dropout = None, False, None

    def take(self, layer):
        """Folds `layer` (the next one in the model) into this stage: None, else why not."""
        what = f"{type(layer).__name__} {layer.name!r}"
        if type(layer) not in (*ACTIVATION_LAYERS, *_NORMALISATIONS):
            return f"layer {what} is not supported natively"
        if self.dropout is not None:  # the engine runs a stage's dropout last
            return (f"{what} after a Dropout (the native engine runs a Dense's normalization "
                    f"and activation before its dropout: put the Dropout after them)")
        if type(layer) in ACTIVATION_LAYERS:
            # After a linear Dense, or between a normalisation and the activation it feeds.
            if self.act.name != "linear" or (self.bn is not None and not self.bn_pre):
                return f"{what} after another activation"
            self.act = layer.activation
            return None
        if self.bn is not None:
            return f"{what} after another normalization"
        self.bn, self.bn_pre = layer, self.act.name == "linear"
        return None


class _Stack(list):
    """The stages, and the normalisation (_NORMALISATIONS or a Normalization) and Dropout of
    the model's inputs (None without one; the dropout follows the normalisation)."""

    input_bn = None
    input_dropout = None

    def dropouts(self):
        """(engine layer, Dropout) for each dropout: -1 the inputs', i after stage i."""
        return [(i, d) for i, d in [(-1, self.input_dropout)] +
                [(i, s.dropout) for i, s in enumerate(self)] if d is not None]


def _sample_shapes(model):
    """The sample shape each layer receives in this model (a layer shared with a model of
    other sequence lengths keeps its own input_shape), None where not yet known."""
    shapes, shape = [], model.input_shape
    for layer in model.layers:
        shapes.append(shape if shape is not None else layer.input_shape)
        shape = None if shapes[-1] is None else layer.compute_output_shape(shapes[-1])
    return shapes


def _dense_stack(model, for_training=True):
    """A _Stack of _Stages covering the model's layers, or a reason string. Dropout is the
    identity at inference, so the forward pass for predict skips it; rate 0 is the identity
    too. Layers are matched by exact type: a subclass may override what the engine would
    compute (forward, backward), so it takes the layer path."""
    stack = _Stack()
    for layer, sample in zip(model.layers, _sample_shapes(model)):
        if type(layer) in (InputLayer, Identity):
            continue
        if (type(layer) is Flatten or type(layer) is Reshape and len(layer.target_shape) == 1) \
                and not stack and stack.input_dropout is None and \
                type(stack.input_bn) in (type(None), Rescaling):
            continue  # the engine reads each sample as one row (C order) anyway (a
            #           Rescaling, element by element, the same before or after)
        if type(layer) in (*_NORMALISATIONS, Normalization, Rescaling) and not stack \
                and stack.input_bn is None:
            if stack.input_dropout is not None:
                return (f"normalization after the inputs' dropout (layer {layer.name!r})")
            if type(layer) is Normalization and layer.invert:
                return f"Normalization {layer.name!r} with invert=True"
            if len(sample or ()) != 1 and not (type(layer) is Rescaling and sample):
                return (f"{type(layer).__name__} {layer.name!r} of multi-axis (or not yet "
                        f"known) samples")
            stack.input_bn = layer  # normalises (or rescales) the inputs
            continue
        if type(layer) in (GaussianNoise, GaussianDropout, AlphaDropout,
                           ActivityRegularization) and not for_training:
            continue  # the identity at inference (trained layer by layer)
        if type(layer) is Dropout:
            if not for_training or layer.rate == 0:
                continue
            if not stack:
                if stack.input_dropout is not None:
                    return f"two dropout layers in a row ({layer.name!r})"
                stack.input_dropout = layer  # drops inputs (after their normalisation)
                continue
            if stack[-1].dropout is not None:
                return f"two dropout layers in a row ({layer.name!r})"
            stack[-1].dropout = layer
        elif type(layer) is Dense:
            if sample is not None and len(sample) > 1:
                return (f"Dense {layer.name!r} on inputs of shape (batch, "
                        f"{', '.join(map(str, sample))}): the engine takes "
                        f"(batch, features)")
            stack.append(_Stage(layer))
        elif not stack:
            where = (" here, before the first Dense"
                     if type(layer) in (*ACTIVATION_LAYERS, *_NORMALISATIONS, Flatten)
                     else "")
            return f"layer {type(layer).__name__} {layer.name!r} is not supported natively{where}"
        else:
            reason = stack[-1].take(layer)
            if reason is not None:
                return reason
    if not stack:
        return "the model has no Dense layers"
    if for_training and type(model.layers[-1]) is Dropout:
        # Even at rate 0: the layer path then computes the loss on the (dropout's) outputs,
        # not fused with the output activation, which the engine would do.
        return f"dropout after the output layer ({model.layers[-1].name!r})"
    for stage in stack[:-1]:
        if stage.act.name == "softmax":
            return f"softmax inside the network (layer {stage.dense.name!r})"
    last = stack[-1]
    if last.dropout is not None:
        return f"dropout after the output layer ({last.dropout.name!r})"
    if last.bn is not None:
        return f"normalization in the output layer ({last.bn.name!r})"
    return stack


_LOSSES = (losses.CategoricalCrossentropy, losses.SparseCategoricalCrossentropy,
           losses.BinaryCrossentropy, losses.MeanSquaredError, losses.MeanAbsoluteError,
           losses.Huber)


def _loss_kind(loss, last_act):
    """The engine's loss name for this loss and output activation, or None. Exact types, as
    for layers: a user's subclass may compute something else."""
    if type(loss) in (losses.CategoricalCrossentropy, losses.SparseCategoricalCrossentropy):
        if last_act in ("softmax", "linear") and (last_act == "softmax") != loss.from_logits:
            return "softmax_xent_sparse" if loss.sparse else "softmax_xent_dense"
        return None
    if type(loss) is losses.BinaryCrossentropy:
        if last_act in ("sigmoid", "linear") and (last_act == "sigmoid") != loss.from_logits:
            return "bce_logits"
        return None if loss.from_logits or last_act == "softmax" else "bce"
    if last_act == "softmax":
        return None
    return {losses.MeanSquaredError: "mse", losses.MeanAbsoluteError: "mae",
            losses.Huber: "huber"}.get(type(loss))


def _loss_reason(loss, last_act, engine="the engine"):
    """Why `engine` cannot compute this loss after this output activation, or None."""
    if type(loss) not in _LOSSES:
        if type(loss).__module__ == losses.__name__:
            return (f"loss {type(loss).__name__} ({engine} has MSE, MAE, Huber and the "
                    f"cross-entropies)")
        return (f"loss {type(loss).__name__} is not pynn's own class (a subclass may compute "
                f"something else)")
    if getattr(loss, "ignore_class", None) is not None:
        return f"loss {loss.name} with ignore_class"
    if _loss_kind(loss, last_act) is None:
        return f"loss {loss.name} with a {last_act} output"
    return None


def unsupported_reason(model, for_training=True, weighted=False):
    """None when the native engine can run this (compiled) model, else why not. weighted:
    whether the batches carry sample weights (the cuda engine takes none)."""
    if getattr(model.backend, "name", None) == "cuda":
        from . import cuda_engine

        why = (_decay_exclusion_reason(model) or _constraint_reason(model)
               or _activity_reason(model)) if for_training else None
        return why or cuda_engine.unsupported_reason(model, for_training, weighted)
    if _native_module() is None:
        return "pynn._C (with its DenseEngine) is not available"
    if model.backend is None or model.backend.name != "cpu":
        return f"the backend is {getattr(model.backend, 'name', None)!r}, not 'cpu'"
    if config.floatx() != "float32":
        return "floatx is not float32"
    stack = _dense_stack(model, for_training)
    if isinstance(stack, str):
        return stack
    if not for_training:
        return None
    why = _loss_reason(model.loss, stack[-1].act.name)
    if why is not None:
        return why
    if type(model.optimizer) not in _OPTIMIZERS:
        return f"optimizer {type(model.optimizer).__name__}"
    if getattr(model.optimizer, "centered", False):
        return "RMSprop(centered=True) (the engine's RMSprop is not centered)"
    if model.optimizer.gradient_accumulation_steps:
        return "gradient_accumulation_steps (the engine updates the weights at every step)"
    if model.optimizer.weight_decay and not model.optimizer._fuses_weight_decay:
        return (f"weight_decay on {type(model.optimizer).__name__} (the engine decays "
                f"with the Adam family, Lion and Adadelta)")
    why = (_decay_exclusion_reason(model) or _constraint_reason(model, stack)
           or _activity_reason(model))
    if why is not None:
        return why
    for layer in model.layers:
        if any(p.trainable != layer.trainable for p in layer.params if not p.statistic):
            return f"layer {layer.name!r} has weights frozen one by one (param.trainable)"
        for param, reg in layer.regularized():
            if type(layer) is not Dense:
                return f"a regularizer on {type(layer).__name__} layer {layer.name!r}"
            if type(reg) not in _REGULARIZERS:
                return f"custom regularizer {type(reg).__name__} on {param.name!r}"
    return None


def _decay_exclusion_reason(model):
    """Why the engines cannot train with this optimizer: exclude_from_weight_decay keeps a
    trainable weight of the model out of its weight decay (they decay every weight alike);
    None otherwise."""
    opt = model.optimizer
    if not getattr(opt, "weight_decay", 0.0) or \
            getattr(opt, "_decay_exclusions", None) is None:
        return None
    for param in model.trainable_params:
        if not opt._decays(param):
            return (f"exclude_from_weight_decay keeps {param.name!r} out of the weight decay "
                    f"(the engine decays every weight alike)")
    return None


def _activity_reason(model):
    """Why the engines cannot train this model: a layer penalises its outputs (an
    activity_regularizer; they have none); None otherwise."""
    for layer in model.layers:
        if getattr(layer, "activity_regularizer", None) is not None:
            return (f"layer {layer.name!r} has an activity_regularizer (the engine has "
                    f"none)")
    return None


# pynn's constraints the native engine applies, by exact type (a subclass may project
# otherwise), as its set_constraint's kind
_CONSTRAINT_KINDS = {constraints.MaxNorm: 1, constraints.MinMaxNorm: 2,
                     constraints.UnitNorm: 3, constraints.NonNeg: 4}


def _constraint_reason(model, stack=None):
    """Why an engine cannot train this model's constrained weights: the cuda engine (stack
    None) projects none; the native one pynn's own constraints on its Dense weights. None
    when it can."""
    dense = set() if stack is None else {id(p) for s in stack for p in s.dense.params}
    for param in model.trainable_params:
        c = param.constraint
        if c is None:
            continue
        if id(param) not in dense or type(c) not in _CONSTRAINT_KINDS:
            what = ("the native engine applies pynn's own on Dense kernels and biases"
                    if stack is not None else "the cuda engine applies none")
            return f"weight {param.name!r} has a constraint ({c!r}; {what})"
    return None


def _native_constraint(param):
    """set_constraint's arguments (kind, axis, min_value, max_value, rate) for a Dense
    weight's constraint (checked by _constraint_reason): its norms per column (0) or row
    (1) of a kernel, or over the whole weight (2; a bias's)."""
    c = param.constraint
    c.check_shape(param.shape, param.name)  # (its axis and numbers as set since)
    axes = set(c.axes(param.ndim)) if hasattr(c, "axes") else {0}  # (NonNeg: no norms)
    axis = 2 if param.ndim == 1 or len(axes) == 2 else (0 if axes == {0} else 1)
    return (_CONSTRAINT_KINDS[type(c)], axis, float(getattr(c, "min_value", 0.0)),
            float(getattr(c, "max_value", 0.0)), float(getattr(c, "rate", 1.0)))


def _rows(x):
    """Multi-axis samples (a leading Flatten) as the (N, features) rows the engine reads; a
    view when x is C-contiguous."""
    return x.reshape(len(x), -1) if getattr(x, "ndim", 2) > 2 else x


def training_engine(model, batch_size):
    """The engine that trains this model on its backend (unsupported_reason said None)."""
    if model.backend.name == "cuda":
        from .cuda_engine import CudaEngine

        return CudaEngine(model, batch_size)
    return NativeEngine(model, batch_size)


class NativeEngine:
    """A DenseEngine bound to a model's weights (and optimizer state when training)."""

    weights_refused = None  # why it refuses weighted batches (it takes them)
    stops_on_nonfinite_loss = True  # train(stop_on_nonfinite_loss=True) stops in a chunk

    def __init__(self, model, batch_size, training=True):
        version = config.settings_version()  # first: a change made meanwhile is noticed
        _C = _native_module()
        stack = _dense_stack(model, training)
        dense = [stage.dense for stage in stack]
        acts = [stage.act for stage in stack]
        self.dropouts = [d for _, d in stack.dropouts()]
        sizes = [int(dense[0].kernel.shape[0])] + [d.units for d in dense]  # (not its
        # input_shape: a Dense shared with a model of other leading axes keeps that one)
        codes = [_SOFTMAX_CODE if a.name == "softmax" else ACTIVATION_CODES[a.name] for a in acts]
        if training:
            loss = model.loss
            loss._check_trains()  # (reduction='none' set mid-fit)
            kind = _loss_kind(loss, acts[-1].name)
            loss_param = loss.delta if kind == "huber" else getattr(loss, "epsilon", 0.0)
            opt = model.optimizer
            opt_name = _OPTIMIZERS[type(opt)]
        else:
            kind, loss_param, opt, opt_name = "mse", 0.0, None, "sgd"
            if acts[-1].name == "softmax":
                kind = "softmax_xent_dense"
        self.params = [p for d in dense for p in d.params]
        self.engine = _C.DenseEngine(sizes, codes, [a.param for a in acts],
                                     [d.use_bias for d in dense], kind, float(loss_param),
                                     opt_name, int(batch_size), training=training)
        if training and model.loss.reduction not in losses._MEAN_REDUCTIONS:
            self.engine.set_reduction(model.loss.reduction)  # ('mean' is the default's name)
        self.max_batch = int(batch_size)  # the most rows its buffers hold
        self.bn_params = []  # the arrays set_batchnorm bound (predict checks they remain)
        stages = []
        if stack.input_bn is not None or stack.input_dropout is not None:
            stages.append((-1, None, stack.input_dropout, stack.input_bn, False))
        stages += [(i, s.dense, s.dropout, s.bn, s.bn_pre) for i, s in enumerate(stack)]
        for i, layer, drop, bn, bn_pre in stages:
            if drop is not None:
                self.engine.set_dropout(i, drop.rate, drop.seed)
            if layer is not None and training and layer.regularized():
                # the trainable weights' penalties only, as Keras 3 and the layer path
                k = layer.kernel_regularizer if layer.kernel.trainable else None
                b = layer.bias_regularizer if layer.use_bias and layer.bias.trainable else None
                self.engine.set_regularizer(i, k.l1 if k else 0.0, k.l2 if k else 0.0,
                                            b.l1 if b else 0.0, b.l2 if b else 0.0)
            for bias, p in enumerate((layer.kernel, layer.bias) if layer is not None else ()):
                if training and p is not None and p.trainable and p.constraint is not None:
                    self.engine.set_constraint(i, bool(bias), *_native_constraint(p),
                                               epsilon=config.epsilon())
            if bn is not None:
                gamma, beta, mean, variance, momentum, epsilon, floor, trains = \
                    _normalisation(bn, training, sizes[0])
                per_row = type(bn) in (LayerNormalization, RMSNormalization)

                def slots(p):
                    if not (trains and p is not None):
                        return []
                    return opt.slot_arrays(p)

                def value(p):  # (a Parameter's array, or a Rescaling's own: the binding
                    return None if p is None else getattr(p, "value", p)  # keeps it)
                self.engine.set_batchnorm(
                    i, bn_pre, momentum, epsilon, trains, value(gamma), value(beta),
                    value(mean), value(variance), slots(gamma), slots(beta), floor,
                    per_row=per_row, centred=type(bn) is not RMSNormalization)
                self.bn_params += [p for p in (gamma, beta, mean, variance)
                                   if p is not None and not isinstance(p, np.ndarray)]
        if opt is None:
            state = [[] for _ in self.params]
        else:
            # no slots for frozen weights (the layer path makes none either: a frozen base
            # held twice its size in zero Adam state, and saved it)
            state = [opt.slot_arrays(p) if p.trainable else []
                     for p in self.params]
        self.engine.bind([p.value for p in self.params], [d.trainable for d in dense], state)
        # Built-in per-sample metrics run in C++; with any other metric (precision, AUC, a
        # user function...) the engine hands back each batch's outputs and Python updates
        # every metric from them, exactly as the layer path does.
        # Integer labels pair with sparse accuracy only (and it with them); any other pairing
        # goes through Python, whose metric names the shapes that do not match. With label
        # smoothing the engine gets the smoothed targets and the metrics, in Python, the
        # labels as given.
        sparse = training and kind == "softmax_xent_sparse"
        self._take_loss(model.loss if training else None)
        builtin = not (self.smoothing and model._metrics) and all(
            fn in _METRIC_NAMES and (_METRIC_NAMES[fn] == "sparse_accuracy") == sparse
            for _, fn in model._metrics)
        self.needs_outputs = training and not builtin
        self.metric_names = ([_METRIC_NAMES[fn] for _, fn in model._metrics]
                             if training and builtin else [])
        self.optimizer = opt
        self.out_dim = sizes[-1]
        self._remember_settings(model, version, training)

    def _take_loss(self, loss):
        """The loss whose label smoothing _loss_targets applies (none: predicting)."""
        self.loss = loss
        self.smoothing = bool(getattr(loss, "label_smoothing", 0.0))

    def _loss_targets(self, y):
        """The targets the engine's loss trains on: y smoothed where the loss smooths labels,
        at every call (a cache keyed by the array trained a generator's refilled buffer, or
        train_on_batch's, on its first batch's targets); the engine's settings key holds the
        smoothing, so a change mid-fit builds a new engine."""
        return self.loss.smooth_targets(y) if self.smoothing else y

    def _remember_settings(self, model, version, training=True):
        """What `matches` compares with: the settings counter `version` read before the
        engine was built, the layers, the settings."""
        self.settings_version = version
        self.layers_seen = list(model.layers)
        # The objects are held so that their ids, part of the key, cannot be reused.
        self.settings = _engine_settings(model) if training else []
        self.settings_key = _settings_key(self.settings)

    def matches(self, model):
        """False once a callback changed what this engine was built from (a layer frozen or
        unfrozen, an activation, rate, seed or regularizer changed, a weight array replaced,
        a layer added, the optimizer swapped or reset): fit then builds a new engine, so both
        engines follow mid-fit changes alike. First a counter such changes bump and the layer
        list (0.1 us); only when they moved, the model is read again (a few us), since the
        counter also moves for other models and for new layers."""
        version = config.settings_version()
        if version == self.settings_version and model.layers == self.layers_seen:
            return True
        if _settings_key(_engine_settings(model)) != self.settings_key:
            return False
        self.settings_version, self.layers_seen = version, list(model.layers)
        return True

    def hyper(self):
        opt = self.optimizer
        return {"lr": opt.rate(), "momentum": getattr(opt, "momentum", 0.0),
                "nesterov": getattr(opt, "nesterov", False),
                "amsgrad": getattr(opt, "amsgrad", False),
                "beta_1": getattr(opt, "beta_1", 0.9), "beta_2": getattr(opt, "beta_2", 0.999),
                "rho": getattr(opt, "rho", 0.9), "epsilon": getattr(opt, "epsilon", 1e-7),
                "weight_decay": getattr(opt, "weight_decay", 0.0),
                **self._ema_hyper(opt),
                # the one clipping that applies (Keras' order), the others off
                **{k: (opt.clipping[1] if opt.clipping[0] == k else 0.0)
                   for k in ("clipvalue", "clipnorm", "global_clipnorm")}}

    @staticmethod
    def _ema_hyper(opt):
        if not opt.use_ema:
            return {}
        opt._check_ema()  # (use_ema may have been set after construction)
        # a frequency beyond any step count is never (the engine takes int64)
        return {"use_ema": True, "ema_momentum": opt.ema_momentum,
                "ema_overwrite_frequency": min(opt.ema_overwrite_frequency or 0, 2**62)}

    def train(self, x, y, order, first, last, batch_size, sample_weight=None, outputs=None,
              stop_on_nonfinite_loss=False):
        """Runs batches [first, last) of the epoch; returns (n, 1 + metrics) per-batch logs.
        sample_weight: float32 (N,) or None, one weight per row of x; outputs: float32
        (rows of the batches, out) or None, filled with the batches' model outputs.
        stop_on_nonfinite_loss: stop after the first batch whose loss is NaN or infinite
        (TerminateOnNaN's stop, in the chunk): fewer rows then."""
        hyper = self.hyper()
        if stop_on_nonfinite_loss:
            hyper["stop_on_nonfinite_loss"] = 1.0
        if self.optimizer.has_schedule:  # a scheduled rate changes every step: one per batch
            hyper["lr_steps"] = self.optimizer.scheduled_rates(self.optimizer.training_steps,
                                                               last - first)
        logs = self.engine.train(_rows(x), self._loss_targets(y), order, first, last,
                                 batch_size, hyper,
                                 self.optimizer.training_steps, self.metric_names,
                                 sample_weight, outputs)
        self._count_steps(len(logs))
        return logs

    def _count_steps(self, count):
        """The optimizer's step count after `count` steps, and the Dropout layers' (their
        masks continue from it on the layer path)."""
        self.optimizer.training_steps += count
        for drop in self.dropouts:
            drop.step = self.optimizer.training_steps

    def predict(self, x, checked=False):
        """The outputs for x; checked=True when the caller has already found x finite."""
        out = np.empty((len(x), self.out_dim), dtype=np.float32)
        self.engine.predict(_rows(x), out, not checked)
        return out


def _normalisation(layer, training, features):
    """What the engine's normalisation takes from a BatchNormalization (gamma, beta, moving
    mean and variance, momentum, epsilon, the least standard deviation (none), whether it
    trains), from a Normalization (a frozen one without gamma and beta, dividing by
    max(sqrt(variance), 1e-7) as Keras'), from a LayerNormalization / RMSNormalization
    (its gain and shift, no moving statistics) or from a Rescaling of `features` inputs (a
    frozen one of mean 0 and variance 1: (x - 0) / 1 * scale + offset, x * scale + offset
    to the bit)."""
    if type(layer) is Rescaling:
        def per_feature(value):  # (along the last axis of each sample, read as one row)
            last = np.float32(value).reshape(-1)
            return np.array(np.tile(last, features // last.size)
                            if last.size > 1 else np.broadcast_to(last, (features,)))
        return (per_feature(layer.scale), per_feature(layer.offset), per_feature(0.0),
                per_feature(1.0), 0.0, 0.0, EPSILON, False)
    if type(layer) is Normalization:
        return None, None, layer.mean, layer.variance, 0.0, 0.0, EPSILON, False
    trains = bool(training and layer.trainable)
    if type(layer) is LayerNormalization:
        return layer.gamma, layer.beta, None, None, 0.0, layer.epsilon, 0.0, trains
    if type(layer) is RMSNormalization:
        return layer.scale, None, None, None, 0.0, layer.epsilon, 0.0, trains
    return (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance, layer.momentum,
            layer.epsilon, 0.0, trains)


def _engine_settings(model):
    """What a training engine is built from: the optimizer (and its state dict), the loss,
    each layer with its settings, regularizer factors, weight arrays and trainable flags."""
    optimizer = model.optimizer
    exclusions = getattr(optimizer, "_decay_exclusions", None)
    # weight_decay: set mid-fit on an optimizer whose decay the engine lacks, it must leave
    # the slots it updates: an option set mid-fit (amsgrad, momentum) may add one
    # exclude_from_weight_decay's choice (by identity), and whether it meets a decay
    items = [optimizer, getattr(optimizer, "_state", None), model.loss,
             bool(getattr(optimizer, "weight_decay", 0.0))
             and not getattr(optimizer, "_fuses_weight_decay", False),
             tuple(optimizer._active_slots()) if optimizer is not None else None,
             exclusions, exclusions is not None and bool(getattr(optimizer, "weight_decay",
                                                                  0.0))]
    # the loss's numbers (Huber's delta, label_smoothing... set in place mid-fit; a numpy
    # float too, which _settings_key reads by value)
    items += [v for _, v in sorted(getattr(model.loss, "__dict__", {}).items())
              if isinstance(v, numbers.Real)]
    items.append(getattr(model.loss, "reduction", None))  # (a string, or None)
    for layer in model.layers:
        attributes = vars(layer)
        items.append(layer)
        items += map(attributes.get, ENGINE_SETTINGS)
        for name in ("kernel_regularizer", "bias_regularizer"):
            reg = attributes.get(name)
            if reg is not None:
                items += [getattr(reg, "l1", None), getattr(reg, "l2", None)]
        for p in layer._params:  # (a constraint by its arguments: changed in place too)
            items += [p.value, p.trainable,
                      None if p.constraint is None else repr(p.constraint)]
    return items


def _settings_key(items):
    """Numbers (numpy's too), strings and flags by value, everything else by identity."""
    return tuple(x if x is None or type(x) in (bool, int, float, str) else
                 float(x) if isinstance(x, numbers.Real) else id(x) for x in items)


# A forked child inherits the predict engines with their locks as they were at the fork: held,
# if another thread of the parent was predicting (the child then waited for ever). The child
# builds its own; the inherited ones are kept, never used or freed (freeing a held lock is
# undefined).
_predict_engines = weakref.WeakSet()
_inherited_at_fork = []


def _drop_predict_engines_in_child():
    for engine in list(_predict_engines):
        _inherited_at_fork.append(engine.engine)
        engine.engine = None  # describes() is False: the model builds a new one
    _predict_engines.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_predict_engines_in_child)


_IS, _EQUALS, _SAME_ITEMS = 0, 1, 2  # how a PredictEngine guard compares (C++: guards_hold)


class PredictEngine(NativeEngine):
    """The native forward pass of a model, remembering what it was built for so predict can
    reuse it after a check of a few identities (the weights are bound by reference)."""

    def __init__(self, model, max_batch):
        super().__init__(model, max_batch, training=False)
        _predict_engines.add(self)
        self.backend = model.backend
        self.sample_shape = tuple(model.input_shape)
        layers = list(model.layers)
        bound = self.params + self.bn_params
        # What the engine was built for, as guards its describes() and model.predict's
        # one-call path check in C++ (~0.3 us, a third of Python loops'): (owner, attribute,
        # expected, how), owner None the model asked about; how _IS: `is`, _EQUALS: `==`,
        # _SAME_ITEMS: the same objects in order. Sequential's own list of layers, not the
        # `layers` property's copy (0.2 us); the activations of the layers that have one (the
        # Input has none: its guard would never hold); settings read when the engine was
        # built (the arrays are bound by reference).
        from .model import Sequential  # (model imports this module)

        settings = {BatchNormalization: ("epsilon",), LayerNormalization: ("epsilon",),
                    RMSNormalization: ("epsilon",), Normalization: ("invert",),
                    Rescaling: ("scale", "offset")}
        self.guards = ((None, "backend", self.backend, _IS),
                       (config, "_FLOATX", "float32", _EQUALS),
                       (None, "_layers" if type(model).layers is Sequential.layers else "layers",
                        layers, _SAME_ITEMS),
                       *((layer, "activation", layer.activation, _IS) for layer in layers
                         if hasattr(layer, "activation")),
                       *((layer, name, getattr(layer, name), _EQUALS) for layer in layers
                         for name in settings.get(type(layer), ())),
                       *((p, "value", p.value, _IS) for p in bound))
        # model.predict's one-call path also needs inputs checked for NaN and infinity
        self.call_guards = self.guards + ((config, "_CHECK_FINITE", True, _IS),)

    def predict(self, x, checked=False):
        # The binding sees rows of n_features values; (N, 16) or (N, 2, 8) would pass that
        # for (4, 4) samples, so the whole sample shape is checked here (a shapeless x, e.g.
        # a list, fails too: the caller's full path converts it or names the problem).
        shape = getattr(x, "shape", None)
        if shape is None or tuple(shape[1:]) != self.sample_shape:
            raise ValueError("not an array of this model's samples")
        out = np.empty((len(x), self.out_dim), dtype=np.float32)  # NativeEngine.predict's
        self.engine.predict(_rows(x), out, not checked)  # body: a call less for one row
        return out

    def describes(self, model):
        """True while the model has the layers, activations, settings and weight arrays bound
        here (and floatx is float32): this runs on every predict call."""
        return self.engine is not None and self.engine.guards_hold(model, self.guards)


def epoch_order(n, shuffle, seed, step, batch_size=None):
    """The epoch's sample order: range(n), or a shuffle keyed by the model's shuffle seed and
    the optimizer's step at the epoch's start (as Dropout masks are), so a run resumed from a
    saved model shuffles as the uninterrupted run did; in C++ when compiled, else its Python
    twin (the same order either way). shuffle='batch' (Keras'): the batches of batch_size in
    order, the samples within each shuffled."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    seed = dropout_key(int(seed), int(step))
    if shuffle == "batch":
        keys = np.random.default_rng(seed).random(n)
        return np.lexsort((keys, np.arange(n) // batch_size)).astype(np.int64)
    _C = _native_module()
    if _C is not None:
        return _C.shuffled_order(n, seed)
    return shuffled_order(n, seed)


_M64 = (1 << 64) - 1


def lemire_threshold(bound):
    """C++'s (0 - bound) % bound on uint64, i.e. 2**64 mod bound: below it a draw is rejected
    (Python's (-bound) % bound is 0)."""
    return ((1 << 64) - bound) % bound


def shuffled_order(n, seed):
    """The C++ shuffled_order (csrc/cpu/engine.cpp) in Python: Fisher-Yates driven by
    xoshiro256** seeded through splitmix64, Lemire's unbiased bounded draws. A seeded run must
    not depend on whether the extension was built (numpy's permutation gave another order).
    A few microseconds a sample: only where nothing is compiled."""
    state, words = seed & _M64, []
    for _ in range(4):
        state, word = splitmix64(state)
        words.append(word)
    s0, s1, s2, s3 = words
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        bound = i + 1
        while True:
            x = (s1 * 5) & _M64
            r = ((((x << 7) | (x >> 57)) & _M64) * 9) & _M64  # rotl(s1 * 5, 7) * 9
            t = (s1 << 17) & _M64
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = ((s3 << 45) | (s3 >> 19)) & _M64
            m = r * bound
            if (m & _M64) >= bound or (m & _M64) >= lemire_threshold(bound):
                break
        j = m >> 64
        order[i], order[j] = order[j], order[i]
    return np.array(order, dtype=np.int64)
