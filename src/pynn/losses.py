"""Losses, with Keras 3's names, formulas and reductions. The per-sample loss of an
element-wise loss is the mean over the last axis; losses of a distribution or a vector per
sample (cross-entropies, KL divergence, categorical hinge, cosine similarity) sum over the last
axis instead, as in Keras. `reduction=` then reduces those per-sample losses (per position, for
predictions (N, T, ..., outputs)), each times its sample weight: "sum_over_batch_size" (Keras'
default; "mean" is the same) divides their sum by their count, "sum" does not divide,
"mean_with_sample_weight" divides by the sum of the weights (unweighted: the count; a zero sum
gives 0, as Keras' divide_no_nan), and "none" (or None) returns them, one per sample: for a
standalone call only, since a model trains on one number.

Targets are checked and shaped once per `fit`, not per batch (`prepare_targets`): a target of
shape (N,) against predictions (N, 1) is reshaped deliberately, as Keras does, and any other
shape mismatch raises instead of broadcasting silently. Softmax + cross-entropy and sigmoid +
binary cross-entropy are computed from logits (log-sum-exp), never log(0): a model whose
output activation is softmax/sigmoid hands the loss its logits (see `fused_activation`). That
is what Keras 3 does on TensorFlow (its default backend); on JAX and PyTorch Keras clips the
probabilities to [1e-7, 1 - 1e-7] instead, so where an output saturates (a logit of 20 on the
wrong class) Keras there reports at most -log(1e-7) = 16.1 and passes no gradient, while
pynn reports the true loss (20) and its gradient. The metrics of those names (metrics=
["binary_crossentropy"]) see only the probabilities and clip as Keras does.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers

import numpy as np

from . import config
from . import custom_objects as _custom
from .data import check_unit_interval, converted, overflow_error


_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean")
_REDUCTIONS = _MEAN_REDUCTIONS + ("sum", "mean_with_sample_weight", "none")


def _value_count(y_pred):
    """How many per-sample losses predictions (N, ..., outputs) have: one per sample, or
    per position of a sequence."""
    return y_pred.size // y_pred.shape[-1] if y_pred.shape[-1] else y_pred.shape[0]


def _sums_as(loss, cls):
    """Whether loss sums as cls's _sum_and_grad does (a subclass of yours may not)."""
    return type(loss)._sum_and_grad is cls._sum_and_grad


class Loss(_custom.AutoConfig):
    """Base class of losses. `loss(y_true, y_pred)` gives the loss of numpy arrays, reduced
    as `reduction` says (by default their mean).

    pynn has no autodiff, so a loss of your own gives its gradient too: subclass Loss (or a
    pynn loss) and implement `_sum_and_grad(self, backend, y_pred, y_true, scale,
    sample_weight=None)` returning `(a sum as a float, gradient of that sum * scale)` for
    backend arrays. The mean is that sum divided by `_count(y_pred)`: Loss's counts every
    element (y_pred.size), so an element-wise loss sums over every element (Keras' mean of
    the per-sample means over the last axis); a loss of one value per sample (summed over
    the last axis, as the cross-entropies) overrides `_count` to return the samples
    (y_pred.size // y_pred.shape[-1]); the other reductions follow from these two (and
    reduction='none' calls _sum_and_grad once per sample). `backend.xp` is numpy or cupy;
    y_true comes
    prepared: shape of y_pred, the model's dtype; sample_weight, when given, weighs each
    sample's loss and its gradient row). Set `name` for the logs and get_config for files;
    `_logits_sum_and_grad` (same contract on pre-activations) lets a model fuse
    `fused_activation` into the loss, as the cross-entropies do."""

    name = "loss"
    # The output activation this loss can absorb: the model then feeds it pre-activations.
    fused_activation: str | None = None
    # How a standalone call reads 1-D predictions (Keras reduces over the last axis): one
    # output per sample for element-wise losses, None where it needs a class axis.
    one_d_predictions = "samples"

    def __setattr__(self, name, value):
        changed = name in self.__dict__
        object.__setattr__(self, name, value)
        if changed:  # (delta, epsilon, label_smoothing... set mid-fit: the engine holds them)
            config.settings_changed()

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        # (reduction first, as Keras' built-in losses; Keras' base Loss takes the name
        # first, which the check of a subclass's reduction names)
        if name is not None:  # Keras' name (messages; saved with the loss)
            if not isinstance(name, str):
                raise TypeError(f"{self.name}: name must be a string, got {name!r}")
            self.name = name
        if dtype is not None:  # would be ignored: the loss follows the model's outputs
            from .layers.base import _check_layer_dtype

            _check_layer_dtype(self.name, dtype, "loss")
        try:
            self.reduction = reduction
        except ValueError as exc:
            if type(self).__module__ == __name__ or not isinstance(reduction, str) or \
                    name is not None:
                raise
            raise ValueError(f"{exc} (pynn's Loss takes reduction first, as Keras' built-in "
                             f"losses do; Keras' base class takes the name first: give "
                             f"name= by keyword)") from None

    @property
    def reduction(self):
        """How the per-sample losses become the loss (Keras' reduction; see the module's
        docstring). Checked when set: an unknown one is refused rather than averaged."""
        return self.__dict__.get("_reduction", "sum_over_batch_size")

    @reduction.setter
    def reduction(self, value):
        if not (value is None or isinstance(value, str) and value in _REDUCTIONS):
            raise ValueError(f"{self.name}: reduction must be one of "
                             f"{', '.join(map(repr, _REDUCTIONS))} or None, got {value!r}")
        self._reduction = value

    def _per_sample(self):
        """Whether a call gives one loss per sample (reduction 'none' or None)."""
        return self.reduction in (None, "none")

    def _check_trains(self, what=None):
        """Raises unless this loss reduces to one number, as a model's loss is (training,
        evaluating); what: the call to name first."""
        if self._per_sample():
            raise ValueError(f"{what + ': ' if what else ''}loss {self.name} has reduction="
                             f"{self.reduction!r}, one loss per sample, but a model's loss is "
                             f"one number: use 'sum_over_batch_size' (the mean, Keras' "
                             f"default), 'sum' or 'mean_with_sample_weight'")

    def get_config(self):
        """The constructor arguments (what model files store): the loss's settings, and a
        pynn loss's name where it is not the class's own (as Keras', from_config(get_config())
        gives it back)."""
        config = self._settings()
        if not _custom.is_custom(type(self)):  # (a class of your own: its get_config says)
            if self.name != type(self).name:
                config["name"] = self.name
            if self.reduction != "sum_over_batch_size":
                config["reduction"] = self.reduction
        return config

    def _settings(self):
        """The arguments besides name that rebuild this loss (a pynn loss's own)."""
        return {}

    @classmethod
    def from_config(cls, config):
        """The loss get_config describes (Keras' from_config)."""
        return cls(**config)

    def smooth_targets(self, y):
        """The targets the loss trains on, from prepared ones: label smoothing where the loss
        has it, applied by value_and_grad to each batch (class weights and the metrics read
        the labels as given, as Keras')."""
        return y

    @property
    def fuses_activation(self):
        """Whether the model may feed this loss pre-activations (fused_activation's inputs):
        only where its logits formula is at least as derived as its probability formula. A
        subclass that overrides _sum_and_grad alone (a focal loss on a cross-entropy) computes
        something else than the inherited logits formula, so it gets probabilities."""
        if self.fused_activation is None:
            return False
        sums, logits = (next((c for c in type(self).__mro__ if name in vars(c)), None)
                        for name in ("_sum_and_grad", "_logits_sum_and_grad"))
        return sums is not None and logits is not None and issubclass(logits, sums)

    # ---- targets --------------------------------------------------------------------------
    def prepare_targets(self, y, output_shape, dtype):
        """y as an array of predictions' shape (N, *output_shape), checked; raises ValueError."""
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":  # (complex: a cast would drop the imaginary parts)
            raise TypeError(f"{self.name}: targets must be numeric and real, got dtype "
                            f"{y.dtype}")
        expected = (y.shape[0],) + tuple(output_shape) if y.ndim else None
        if expected is not None and y.ndim == 1 and expected == (y.shape[0], 1):
            y = y.reshape(-1, 1)  # (N,) against (N, 1): Keras' deliberate reshape
        if y.shape != expected:
            hint = "reshape the targets"
            if expected is not None and len(expected) == 2 and expected[1] > 1 and \
                    y.shape in ((y.shape[0],), (y.shape[0], 1)) and y.dtype.kind in "biu":
                hint = (f"integer class labels? one-hot them "
                        f"(pynn.utils.to_categorical(y, {expected[1]}))")
                if isinstance(self, CategoricalCrossentropy):
                    hint = (f"for integer class labels use "
                            f"loss='sparse_categorical_crossentropy', or one-hot targets "
                            f"(pynn.utils.to_categorical(y, {expected[1]}))")
            raise ValueError(f"{self.name}: targets have shape {y.shape} but the model's "
                             f"predictions have shape {expected}; {hint} "
                             f"(pynn never broadcasts targets silently)")
        source, y = y, converted(y, dtype)
        if config.check_finite() and not np.isfinite(y).all():
            raise overflow_error(source, y, f"{self.name}: targets") or ValueError(
                f"{self.name}: targets contain NaN or infinity")
        return y

    # ---- values ---------------------------------------------------------------------------
    def value_and_grad(self, backend, y_pred, y_true, sample_weight=None):
        """(loss, d loss / d y_pred) on backend arrays of prepared targets, reduced as
        `reduction` says (by default the weighted sum over the unweighted count); one weight
        per sample, or per position of (N, T, ..., outputs) predictions. Label smoothing is
        applied here, to the batch: metrics read the targets as given."""
        return self._reduced(self._sum_and_grad, backend, y_pred, y_true, sample_weight)

    def logits_value_and_grad(self, backend, logits, y_true, sample_weight=None):
        """(loss, d loss / d logits) when the output activation was fused away."""
        return self._reduced(self._logits_sum_and_grad, backend, logits, y_true,
                             sample_weight)

    def _reduced(self, fn, backend, y_pred, y_true, sample_weight):
        n = self._count(y_pred) if self.__dict__.get("_reduction") in _MEAN_REDUCTIONS else \
            self._divisor(y_pred, sample_weight)  # (the mean: no more calls a step)
        total, grad = _by_weighted_rows(fn, backend, y_pred, self.smooth_targets(y_true),
                                        1.0 / n if n else 0.0, sample_weight)
        return (total / n if n else 0.0), grad

    def _divisor(self, y_pred, sample_weight=None):
        """What the reduction divides a batch's weighted sum of losses by (as _sum_and_grad
        sums: over elements for an element-wise loss): their count by default, one
        per-sample loss's count of elements for 'sum', and for 'mean_with_sample_weight' the
        weights' sum, each weight counted for every loss it weighs (a weighted mean; Keras
        sums the weights as given, which differs for one number, or one weight per sample
        of a sequence). Raises for 'none': training needs one number."""
        count, reduction = self._count(y_pred), self.reduction
        if reduction in _MEAN_REDUCTIONS or (reduction == "mean_with_sample_weight" and
                                              sample_weight is None):
            return count
        self._check_trains()
        values = _value_count(y_pred)
        each = count / values  # (the elements a per-sample loss averages)
        if reduction == "sum":
            return each
        return each * float(sample_weight.sum()) * (values / sample_weight.size)

    def _count(self, y_pred):
        return y_pred.size  # element-wise losses: mean over every element

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss of predictions (computed by the numpy reference backend; GPU arrays are
        copied to the host), Keras' argument order. sample_weight, as Keras': a number for
        every sample, one per sample ((N,) or (N, 1)) or one per position of (N, T, ...,
        outputs) predictions; the weighted sum over the unweighted count. 1-D predictions
        are N samples, as a model's (N, 1) outputs (Keras reads them as one sample)."""
        from .backend import get_backend, to_host

        y_true, y_pred = to_host(y_true), to_host(y_pred)  # GPU arrays: computed on the host
        if y_pred.dtype.kind not in "biuf":  # (a cast drops a complex number's imaginary part)
            raise TypeError(f"{self.name}: predictions must be real numbers, got dtype "
                            f"{y_pred.dtype}")
        dtype = np.float64 if y_pred.dtype == np.float64 else np.float32
        y_pred = np.ascontiguousarray(y_pred, dtype=dtype)
        positions = y_pred.shape[:-1] if y_pred.ndim != 1 or \
            self.one_d_predictions != "samples" else y_pred.shape  # (of reduction 'none')
        if y_pred.ndim == 1 and self.one_d_predictions == "samples":
            y_pred = y_pred.reshape(-1, 1)  # y_true (N,) pairs with it as in a model
        elif y_pred.ndim == 1 and self.one_d_predictions == "classes":
            y_pred = y_pred.reshape(1, -1)  # one sample's class probabilities
            y_true = np.reshape(y_true, (1, -1)) if np.ndim(y_true) == 1 else y_true
        if y_pred.ndim < 2:
            raise ValueError(f"{self.name}: predictions must be (batch, outputs), got shape "
                             f"{y_pred.shape}")
        if np.ndim(y_true) == 0 or np.shape(y_true)[0] != y_pred.shape[0]:
            raise ValueError(f"{self.name}: targets have shape {np.shape(y_true)} but the "
                             f"predictions have shape {y_pred.shape}")
        if y_pred.shape[0] == 0:  # (a mean over no samples)
            raise ValueError(f"{self.name}: no samples (predictions of shape "
                             f"{y_pred.shape})")
        y_true = self.prepare_targets(y_true, y_pred.shape[1:], dtype)
        w = None if sample_weight is None else \
            _call_weights(self.name, to_host(sample_weight), y_pred.shape[:-1], dtype)
        if self._per_sample():
            values = self._per_sample_losses(get_backend("numpy"), y_pred, y_true, w)
            return values.reshape(positions)
        return self.value_and_grad(get_backend("numpy"), y_pred, y_true, w)[0]

    def _per_sample_losses(self, backend, y_pred, y_true, sample_weight):
        """Each sample's (or position's) loss times its weight, as an array of y_pred's
        dtype and shape but the last axis: reduction 'none'."""
        y_true = self.smooth_targets(y_true)
        if getattr(self, "ignore_class", None) is not None:  # (Keras: weighs them 0)
            y_true, sample_weight = self._ignoring(backend, y_true, sample_weight,
                                                   y_pred.dtype)
        positions, outputs = y_pred.shape[:-1], y_pred.shape[-1]
        rows = math.prod(positions)
        p = y_pred.reshape(rows, outputs)
        t = y_true.reshape(rows) if y_true.ndim < y_pred.ndim else y_true.reshape(rows, outputs)
        count = self._count(p)
        values = np.asarray(self._row_losses(backend, p, t), dtype=np.float64)
        values = (values * (rows / count) if count else values).reshape(positions)
        if sample_weight is not None:
            values = values * sample_weight.reshape(sample_weight.shape + (1,) *
                                                    (values.ndim - sample_weight.ndim))
        return values.astype(y_pred.dtype)

    def _row_losses(self, backend, y_pred, y_true):
        """The loss sum of each row of predictions (rows, outputs) as _sum_and_grad sums
        it (targets: (rows, outputs), or (rows,) labels): one call a row for a loss of your
        own; pynn's losses take all rows at once."""
        return [self._sum_and_grad(backend, y_pred[i:i + 1], y_true[i:i + 1], 1.0)[0]
                for i in range(y_pred.shape[0])]

    def __repr__(self):
        return f"{type(self).__name__}()"


class _AlongLastAxis:
    """Keras' `axis` of a loss pynn computes along the predictions' last axis: -1, or that
    axis counted from the front (axis=1 for (N, classes) outputs, as Keras code often
    writes it), checked against the predictions when the targets are prepared. Any other
    axis is refused, not ignored."""

    axis = -1  # (class default: objects pickled before it existed load)

    def _take_axis(self, axis):
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{self.name}: axis must be an int, got {axis!r}")
        if axis != -1 and axis < 1:  # the batch axis, or one before the last
            raise NotImplementedError(f"{self.name}: axis={axis!r}: pynn computes "
                                      f"{self.name} along the last axis of the predictions "
                                      f"(axis=-1) only")
        self.axis = int(axis)

    def _axis_config(self):
        return {} if self.axis == -1 else {"axis": self.axis}

    def _check_axis(self, output_shape):
        if self.axis not in (-1, len(output_shape)):
            raise ValueError(f"{self.name}: axis={self.axis} is not the last axis of "
                             f"predictions (N, {', '.join(map(str, output_shape))}); pynn "
                             f"computes it along each sample's last axis (axis=-1)")

    def prepare_targets(self, y, output_shape, dtype):
        self._check_axis(output_shape)
        return super().prepare_targets(y, output_shape, dtype)


def _flag(owner, name, value):
    """A True/False argument; text is refused (bool("false") is True: from_logits="no"
    trained on logits)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def _call_weights(name, w, positions, dtype):
    """A loss call's sample_weight, checked, as an array of shape (N,) or `positions`."""
    w = np.asarray(w)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name}: sample_weight must be real numbers, got dtype {w.dtype}")
    if w.ndim == 0:  # (Keras: a number weighs every sample)
        w = np.full(positions[:1], w)
    elif w.shape in ((positions[0], 1), (*positions, 1)):
        w = w[..., 0]
    if w.shape not in (positions[:1], positions):
        each = f" or {positions}, one per position" if len(positions) > 1 else ""
        raise ValueError(f"{name}: sample_weight must have shape ({positions[0]},), one per "
                         f"sample{each}, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"{name}: sample_weight must be finite")
    return np.ascontiguousarray(w, dtype=dtype)


def _by_weighted_rows(fn, backend, y_pred, y_true, scale, sample_weight):
    """fn(backend, y_pred, y_true, scale, sample_weight), on rows of outputs (N * T * ...,
    outputs) for predictions (N, T, ..., outputs) that have a weight per position or a
    class label per position (each row its position's label and weight; a sample's weight
    repeated over its positions), the gradient reshaped back. A loss's _sum_and_grad thus
    sees (rows, outputs) then, else the predictions as they are."""
    labels = y_true.ndim < y_pred.ndim  # sparse: a class index per position
    per_position = sample_weight is not None and sample_weight.ndim > 1
    if y_pred.ndim <= 2 or not (labels or per_position):
        return fn(backend, y_pred, y_true, scale, sample_weight)
    rows = y_pred.size // y_pred.shape[-1]
    weights = sample_weight
    if weights is not None:
        weights = weights.reshape(rows) if per_position else \
            backend.xp.repeat(weights, rows // y_pred.shape[0])
    total, grad = fn(backend, y_pred.reshape(rows, -1),
                     y_true.reshape(rows) if labels else y_true.reshape(rows, -1), scale,
                     weights)
    return total, grad.reshape(y_pred.shape)


class _Regression(Loss):
    """An element-wise loss of the backends' regression kernels (kind: 'mse', 'mae' or
    'huber')."""

    kind = "mse"
    delta = 1.0

    def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
        return backend.regression_loss(self.kind, y_pred, y_true, scale, delta=self.delta,
                                       sample_weight=sample_weight)

    def _row_losses(self, backend, y_pred, y_true):
        if not _sums_as(self, _Regression):
            return super()._row_losses(backend, y_pred, y_true)
        return backend.regression_elements(self.kind, y_pred, y_true, self.delta)[0].sum(-1)


class MeanSquaredError(_Regression):
    """mean((y_pred - y_true)^2) over every element."""

    name = "mean_squared_error"
    kind = "mse"


class MeanAbsoluteError(_Regression):
    """mean(|y_pred - y_true|) over every element."""

    name = "mean_absolute_error"
    kind = "mae"


class Huber(_Regression):
    """Quadratic within `delta` of the target, linear beyond: robust to outliers."""

    name = "huber_loss"  # Keras' (a metric of this loss object logs under it)
    kind = "huber"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not delta > 0:
            raise ValueError(f"huber: delta must be a number > 0, got {delta!r}")
        self.delta = float(delta)

    def _settings(self):
        return {"delta": self.delta}


class _BinaryTargets:
    """The targets of the binary losses: probabilities of independent labels, in [0, 1];
    label_smoothing=ls trains on y * (1 - ls) + 0.5 * ls (Keras 3)."""

    label_smoothing = 0.0  # (class default: objects pickled before it existed load)

    def prepare_targets(self, y, output_shape, dtype):
        y = super().prepare_targets(y, output_shape, dtype)
        _check_range(self.name, y, 0, 1, "probabilities")
        return y

    def smooth_targets(self, y):
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return y


class BinaryCrossentropy(_AlongLastAxis, _BinaryTargets, Loss):
    """Cross-entropy of independent 0/1 targets; probabilities (clipped to [1e-7, 1 - 1e-7]) or
    logits. label_smoothing=ls trains on targets y * (1 - ls) + 0.5 * ls (Keras 3). Keras'
    axis: the last one only (_AlongLastAxis)."""
    name = "binary_crossentropy"
    epsilon = 1e-7  # Keras' clip of probabilities

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self._take_axis(axis)
        self.from_logits = _flag(self.name, "from_logits", from_logits)
        self.label_smoothing = check_unit_interval(self.name, "label_smoothing",
                                                   label_smoothing)
        self.fused_activation = None if self.from_logits else "sigmoid"

    def _settings(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                **self._axis_config()}

    def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
        return backend.binary_cross_entropy(y_pred, y_true, self.from_logits, self.epsilon, scale,
                                            sample_weight)

    def _row_losses(self, backend, y_pred, y_true):
        if not _sums_as(self, BinaryCrossentropy):
            return super()._row_losses(backend, y_pred, y_true)
        return backend.binary_cross_entropy_elements(y_pred, y_true, self.from_logits,
                                                     self.epsilon)[0].sum(-1)

    def _logits_sum_and_grad(self, backend, logits, y_true, scale, sample_weight=None):
        return backend.binary_cross_entropy(logits, y_true, True, self.epsilon, scale,
                                            sample_weight)


class _ClassRows:
    """A loss of a distribution over the classes of the last axis: label smoothing spreads
    over those classes, and one output is refused (its softmax is always 1.0)."""

    label_smoothing = 0.0  # (class default: objects pickled before it existed load)

    def smooth_targets(self, y):
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + self.label_smoothing / y.shape[-1]
        return y

    def _check_classes(self, output_shape):
        """One output is one class: its softmax is 1.0, the loss 0 and accuracy 1, while
        nothing trains (a binary model given this loss)."""
        if tuple(output_shape)[-1:] == (1,):
            raise ValueError(f"{self.name} needs 2 or more outputs (one per class), the model "
                             f"has 1: for two classes use one sigmoid output with "
                             f"binary_crossentropy, or 2 softmax outputs")


class CategoricalCrossentropy(_AlongLastAxis, _ClassRows, Loss):
    """Targets are one-hot (or probability) rows; predictions are probabilities or logits.
    label_smoothing=ls trains on targets y * (1 - ls) + ls / classes (Keras 3). Keras' axis:
    the last one only (_AlongLastAxis)."""

    name = "categorical_crossentropy"
    one_d_predictions = "classes"
    sparse = False

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self._take_axis(axis)
        self.from_logits = _flag(self.name, "from_logits", from_logits)
        self.label_smoothing = check_unit_interval(self.name, "label_smoothing",
                                                   label_smoothing)
        self.fused_activation = None if self.from_logits else "softmax"

    def _settings(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                **self._axis_config()}

    def prepare_targets(self, y, output_shape, dtype):
        self._check_classes(output_shape)
        return super().prepare_targets(y, output_shape, dtype)

    def _count(self, y_pred):
        # One loss per class distribution: per sample, or per (sample, step) for sequences
        # (N, T, classes), whose mean is over N * T positions as in Keras and PyTorch.
        return _value_count(y_pred)

    def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
        if self.from_logits:
            return self._logits_sum_and_grad(backend, y_pred, y_true, scale, sample_weight)
        loss, grad = self._probability_elements(backend, y_pred, y_true)
        return _weighted_sum(loss, grad, sample_weight, scale, y_pred.dtype)

    def _row_losses(self, backend, y_pred, y_true):
        if not _sums_as(self, CategoricalCrossentropy):
            return super()._row_losses(backend, y_pred, y_true)
        if self.from_logits:
            return backend.softmax_cross_entropy_elements(y_pred, y_true, self.sparse)[0]
        return self._probability_elements(backend, y_pred, y_true)[0]

    def _probability_elements(self, backend, y_pred, y_true):
        """(loss of each row, its gradient) of probabilities from an unfused model (say
        softmax inside another layer): logs of the clipped probabilities, Keras' formula;
        d/dp of -sum t log p is -t / p."""
        xp = backend.xp
        eps = 1e-7
        # A row of zeros (a Dropout after the softmax dropped all of it) counts as clipped
        # probabilities, -log(eps) with no gradient, instead of 0/0 poisoning the weights.
        s = y_pred.sum(axis=-1, keepdims=True)
        normalised = s > 0
        s = xp.where(normalised, s, 1)
        p = y_pred / s
        pc = xp.clip(p, eps, 1 - eps)
        onehot = self._dense_targets(backend, y_true, y_pred.shape[1], y_pred.dtype)
        loss = -(onehot * xp.log(pc)).sum(axis=-1)
        inside = (p > eps) & (p < 1 - eps)
        dp = xp.where(inside, -onehot / pc, 0)
        # through the normalisation, where there was one
        return loss, (dp - xp.where(normalised, (dp * p).sum(axis=-1, keepdims=True), 0)) / s

    def _dense_targets(self, backend, y_true, classes, dtype):
        return y_true

    def _logits_sum_and_grad(self, backend, logits, y_true, scale, sample_weight=None):
        return backend.softmax_cross_entropy(logits, y_true, self.sparse, scale, sample_weight)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Targets are integer class indices, shape (N,) or (N, 1); for predictions of a class
    per position (N, T, ..., classes), (N, T, ...) (or with a trailing 1), as Keras.
    ignore_class (Keras'; PyTorch's ignore_index): a label (such as -1 for padding) whose
    positions count for nothing: the loss is the mean over the other positions of the batch
    (0 when none is left); metrics see the labels as given. Layer by layer. Keras' axis: the
    last one only (_AlongLastAxis)."""

    name = "sparse_categorical_crossentropy"
    sparse = True
    one_d_predictions = None  # (batch, classes) only
    label_smoothing = 0.0  # none, as in Keras (smoothed labels are not integers)
    ignore_class = None

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 axis=-1, name=None, dtype=None):  # (Keras' order of the keywords)
        Loss.__init__(self, reduction=reduction, name=name, dtype=dtype)
        self._take_axis(axis)
        self.from_logits = _flag(self.name, "from_logits", from_logits)
        self.fused_activation = None if self.from_logits else "softmax"
        if ignore_class is not None and (isinstance(ignore_class, bool) or
                                         not isinstance(ignore_class, numbers.Integral)):
            raise TypeError(f"{self.name}: ignore_class must be an integer label or None, got "
                            f"{ignore_class!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def _settings(self):
        config = {"from_logits": self.from_logits, **self._axis_config()}
        if self.ignore_class is not None:
            config["ignore_class"] = self.ignore_class
        return config

    def value_and_grad(self, backend, y_pred, y_true, sample_weight=None):
        if self.ignore_class is not None:
            y_true, sample_weight = self._ignoring(backend, y_true, sample_weight, y_pred.dtype)
        return super().value_and_grad(backend, y_pred, y_true, sample_weight)

    def logits_value_and_grad(self, backend, logits, y_true, sample_weight=None):
        if self.ignore_class is not None:
            y_true, sample_weight = self._ignoring(backend, y_true, sample_weight, logits.dtype)
        return super().logits_value_and_grad(backend, logits, y_true, sample_weight)

    def _ignoring(self, backend, y_true, sample_weight, dtype):
        """Keras 3's mask as weights: 0 at the ignored positions, positions / valid ones
        elsewhere for a mean (1 for the other reductions), times any sample weights; and a
        valid label (0) in the ignored places."""
        xp = backend.xp
        valid = y_true != self.ignore_class
        count = int(valid.sum())
        spread = (valid.size / count if count else 0.0) if \
            self.reduction in _MEAN_REDUCTIONS else 1.0
        weight = valid.astype(dtype) * dtype.type(spread)
        if sample_weight is not None:
            weight *= sample_weight.reshape(sample_weight.shape + (1,) * (weight.ndim -
                                                                          sample_weight.ndim))
        return xp.where(valid, y_true, 0).astype(y_true.dtype), weight

    def prepare_targets(self, y, output_shape, dtype):  # (labels: not the base's shapes)
        self._check_axis(output_shape)
        self._check_classes(output_shape)
        y = np.asarray(y)
        positions = tuple(output_shape)[:-1]  # () for (N, classes) predictions
        if y.ndim == 2 + len(positions) and y.shape[-1] == 1:
            y = y[..., 0]
        if y.shape[1:] != positions:
            shape = ", ".join(["N", *map(str, positions)])
            raise ValueError(f"{self.name}: targets must be class indices of shape ({shape}"
                             f"{',' if not positions else ''}) or ({shape}, 1), got shape "
                             f"{y.shape}")
        if y.dtype == bool:  # two classes, False/True as 0/1 (as x and one-hot targets take)
            y = y.astype(np.int8)
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
            raise TypeError(f"{self.name}: labels must be integers, got dtype {y.dtype}")
        if np.issubdtype(y.dtype, np.floating):
            if not np.isfinite(y).all():
                raise ValueError(f"{self.name}: labels must be whole numbers, got "
                                 f"{y[~np.isfinite(y)][0]}")
            if (y != np.round(y)).any():
                raise ValueError(f"{self.name}: labels must be whole numbers, got "
                                 f"{y[y != np.round(y)][0]}")
        classes = int(output_shape[-1])
        labels = y if self.ignore_class is None else y[y != self.ignore_class]
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            bad = labels[(labels < 0) | (labels >= classes)][0].item()
            raise ValueError(f"{self.name}: label {bad} is out of range for {classes} classes "
                             f"(labels must be in [0, {classes - 1}])")
        return np.ascontiguousarray(y, dtype=np.int32)

    def _dense_targets(self, backend, y_true, classes, dtype):
        xp = backend.xp
        onehot = xp.zeros((y_true.shape[0], classes), dtype=dtype)
        onehot[xp.arange(y_true.shape[0]), y_true] = 1
        return onehot



# ---- Keras 3's other losses: Keras' formulas written with backend.xp, so every backend
# (numpy, cpu, cupy, cuda) runs them; the native engine does not (it falls back to layers).
def _weighted_sum(loss, grad, sample_weight, scale, dtype):
    """(sum of the losses, gradient * scale), each sample's losses and gradient rows scaled by
    its weight; the gradient keeps the predictions' dtype."""
    if sample_weight is not None:
        loss = loss * sample_weight.reshape((-1,) + (1,) * (loss.ndim - 1))
        grad = grad * sample_weight.reshape((-1,) + (1,) * (grad.ndim - 1))
    return float(loss.sum()), (grad * scale).astype(dtype, copy=False)


def _check_range(name, y, low, high, why):
    """Raises unless every target lies in [low, high] (None: unbounded)."""
    if y.size and (low is not None and y.min() < low or high is not None and y.max() > high):
        raise ValueError(f"{name}: targets must lie in [{low}, {'inf' if high is None else high}]"
                         f" ({why}), got values in [{y.min()}, {y.max()}]")


class _FormulaLoss(Loss):
    """A loss of each element, averaged over all of them (Keras: the mean over the last axis,
    then over the samples). Subclasses give `_elements(xp, y_pred, y_true)`: the loss of each
    element and its derivative with respect to y_pred, in xp's array operations."""

    epsilon = 1e-7  # keras.backend.epsilon()

    def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
        loss, grad = self._elements(backend.xp, y_pred, y_true)
        return _weighted_sum(loss, grad, sample_weight, scale, y_pred.dtype)

    def _row_losses(self, backend, y_pred, y_true):
        if not _sums_as(self, _FormulaLoss):
            return super()._row_losses(backend, y_pred, y_true)
        loss = self._elements(backend.xp, y_pred, y_true)[0]
        return loss.sum(axis=-1) if loss.ndim > 1 else loss  # (a _RowLoss's: per row)


class _RowLoss(_FormulaLoss):
    """A loss of each vector along the last axis (Keras sums over it), averaged over the
    vectors: `_elements` gives the loss per vector (the last axis reduced) and the gradient."""

    one_d_predictions = "classes"  # a standalone 1-D call is one sample's row, as in Keras

    def _count(self, y_pred):
        return _value_count(y_pred)


class MeanAbsolutePercentageError(_FormulaLoss):
    """100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7)): a target of 0 is divided by
    Keras' epsilon, so its error weighs 1e9 times |y_pred| (finite)."""

    name = "mean_absolute_percentage_error"

    def _elements(self, xp, y_pred, y_true):
        scale = 100.0 / xp.maximum(xp.abs(y_true), self.epsilon)
        d = y_pred - y_true
        return xp.abs(d) * scale, xp.sign(d) * scale


class MeanSquaredLogarithmicError(_FormulaLoss):
    """mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))^2). Targets must be
    >= 0 (Keras clips negative ones to 1e-7 silently); predictions below 1e-7 count as 1e-7,
    with no gradient, as in Keras."""

    name = "mean_squared_logarithmic_error"

    def prepare_targets(self, y, output_shape, dtype):
        y = super().prepare_targets(y, output_shape, dtype)
        _check_range(self.name, y, 0, None, "the loss compares log(1 + y)")
        return y

    def _elements(self, xp, y_pred, y_true):
        p = xp.maximum(y_pred, self.epsilon)
        d = xp.log1p(p) - xp.log1p(xp.maximum(y_true, self.epsilon))
        return d * d, (y_pred > self.epsilon) * (2 * d / (p + 1))


class LogCosh(_FormulaLoss):
    """mean(log(cosh(y_pred - y_true))): about x^2 / 2 for small errors x, |x| - log 2 for
    large ones. Computed as x + softplus(-2x) - log 2 (Keras' form), which never overflows."""

    name = "log_cosh"

    def _elements(self, xp, y_pred, y_true):
        x = y_pred - y_true
        softplus = xp.maximum(-2 * x, 0) + xp.log1p(xp.exp(-2 * xp.abs(x)))
        return x + softplus - math.log(2.0), xp.tanh(x)


def _check_hinge_labels(name, y):
    bad = (y != 1) & (y != 0) & (y != -1)
    if bad.any():
        raise ValueError(f"{name}: targets must be -1 or 1 (or 0/1 labels, read as -1/1 as in "
                         f"Keras), got {y[bad][0].item()}")
    if (y == 0).any() and (y == -1).any():
        raise ValueError(f"{name}: targets mix -1 and 0 labels; give -1/1 or 0/1 labels")


class Hinge(_FormulaLoss):
    """mean(max(1 - y_true * y_pred, 0)) for labels -1/1; 0/1 labels are read as -1/1, as
    Keras does (pynn refuses other targets, which Keras would take as they are). y_pred is a
    score (a linear output), not a probability."""

    name = "hinge"

    def prepare_targets(self, y, output_shape, dtype):
        y = super().prepare_targets(y, output_shape, dtype)
        _check_hinge_labels(self.name, y)
        return y

    def _margins(self, xp, y_pred, y_true):
        t = xp.where(y_true == 0, y_true - 1, y_true)  # 0/1 labels -> -1/1 (keeps the dtype)
        return t, 1 - t * y_pred

    def _elements(self, xp, y_pred, y_true):
        t, margin = self._margins(xp, y_pred, y_true)
        return xp.maximum(margin, 0), -t * (margin > 0)


class SquaredHinge(Hinge):
    """mean(max(1 - y_true * y_pred, 0)^2), labels as Hinge's."""

    name = "squared_hinge"

    def _elements(self, xp, y_pred, y_true):
        t, margin = self._margins(xp, y_pred, y_true)
        m = xp.maximum(margin, 0)
        return m * m, -2 * t * m


class CategoricalHinge(_RowLoss):
    """max(neg - pos + 1, 0) per sample, with pos = sum(y_true * y_pred) and neg =
    max((1 - y_true) * y_pred): one-hot targets and a score per class."""

    name = "categorical_hinge"

    def _elements(self, xp, y_pred, y_true):
        pos = (y_true * y_pred).sum(axis=-1)
        others = (1 - y_true) * y_pred
        best = others.argmax(axis=-1)  # neg's class (the first of ties: a subgradient)
        margin = others.max(axis=-1) - pos + 1
        first = xp.arange(y_pred.shape[-1]) == best[..., None]
        grad = (margin > 0)[..., None] * ((1 - y_true) * first - y_true)
        return xp.maximum(margin, 0), grad


class KLDivergence(_RowLoss):
    """sum(y_true * log(y_true / y_pred)) per sample, both clipped to [1e-7, 1] as in Keras
    (predictions outside get no gradient). Targets must lie in [0, 1] (Keras would clip
    them)."""

    name = "kl_divergence"

    def prepare_targets(self, y, output_shape, dtype):
        y = super().prepare_targets(y, output_shape, dtype)
        _check_range(self.name, y, 0, 1, "probabilities")
        return y

    def _elements(self, xp, y_pred, y_true):
        t = xp.clip(y_true, self.epsilon, 1)
        p = xp.clip(y_pred, self.epsilon, 1)
        inside = (y_pred >= self.epsilon) & (y_pred <= 1)
        return (t * xp.log(t / p)).sum(axis=-1), inside * (-t / p)


class Poisson(_FormulaLoss):
    """mean(y_pred - y_true * log(y_pred + 1e-7)): y_pred is a rate, so keep it positive with
    the output activation; a prediction below -1e-7 gives NaN, as in Keras. Targets are
    counts or rates: >= 0."""

    name = "poisson"

    def prepare_targets(self, y, output_shape, dtype):
        y = super().prepare_targets(y, output_shape, dtype)
        _check_range(self.name, y, 0, None, "counts or rates")
        return y

    def _elements(self, xp, y_pred, y_true):
        p = y_pred + self.epsilon
        return y_pred - y_true * xp.log(p), 1 - y_true / p


class BinaryFocalCrossentropy(_AlongLastAxis, _BinaryTargets, _FormulaLoss):
    """Binary cross-entropy scaled by (1 - p_t)^gamma, p_t the probability given to the true
    label (Lin et al.; Keras 3's formula): confident right answers weigh little, so rare
    positives count more. apply_class_balancing weighs positives by alpha, negatives by
    1 - alpha; label_smoothing as BinaryCrossentropy's; probabilities are clipped to
    [1e-7, 1 - 1e-7] inside the cross-entropy (not in p_t), as in Keras; logits are taken
    exactly (Keras' value saturates beyond about +-17)."""

    name = "binary_focal_crossentropy"

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                 label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self._take_axis(-1 if axis is None else axis)
        self.apply_class_balancing = _flag(self.name, "apply_class_balancing",
                                           apply_class_balancing)
        self.alpha = check_unit_interval(self.name, "alpha", alpha)
        self.gamma = _check_gamma(self.name, gamma)
        self.from_logits = _flag(self.name, "from_logits", from_logits)
        self.label_smoothing = check_unit_interval(self.name, "label_smoothing",
                                                   label_smoothing)

    def _settings(self):
        return {"apply_class_balancing": self.apply_class_balancing, "alpha": self.alpha,
                "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, **self._axis_config()}

    def _elements(self, xp, y_pred, y_true):
        y, g = y_true, self.gamma
        if self.from_logits:
            z = y_pred
            e = xp.exp(-xp.abs(z))  # a stable sigmoid and cross-entropy of logits
            p = xp.where(z >= 0, 1 / (1 + e), e / (1 + e))
            bce = xp.maximum(z, 0) - z * y + xp.log1p(e)
            dbce = p - y  # d bce / d z
            dp = p * (1 - p)  # d p / d z
        else:
            p = y_pred
            pc = xp.clip(p, self.epsilon, 1 - self.epsilon)
            bce = -(y * xp.log(pc) + (1 - y) * xp.log(1 - pc))
            inside = (p > self.epsilon) & (p < 1 - self.epsilon)
            dbce = xp.where(inside, (pc - y) / (pc * (1 - pc)), 0)
            dp = 1
        q = 1 - (y * p + (1 - y) * (1 - p))  # 1 - p_t
        factor = q ** g
        # d factor / d p = -g q^(g-1) (2y - 1); 0 where q = 0 (and for g = 0)
        # (q^(g-1) of a positive stand-in where q = 0: no divide-by-zero warning for g < 1)
        dfactor = xp.where(q > 0, -g * xp.where(q > 0, q, 1) ** (g - 1) * (2 * y - 1), 0) \
            if g else 0
        loss = factor * bce
        grad = dfactor * dp * bce + factor * dbce
        if self.apply_class_balancing:
            weight = self.alpha * y + (1 - self.alpha) * (1 - y)
            loss, grad = weight * loss, weight * grad
        return loss, grad


def _check_gamma(name, gamma):
    """A focal loss's focusing exponent: a finite number >= 0 (0: the plain cross-entropy)."""
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not gamma >= 0 \
            or not math.isfinite(gamma):
        raise ValueError(f"{name}: gamma must be a finite number >= 0, got {gamma!r}")
    return float(gamma)


def _class_weights(name, alpha):
    """CategoricalFocalCrossentropy's alpha: a finite number >= 0 for every class, or a list
    of one per class (Keras': inverse class frequencies, say)."""
    many = not isinstance(alpha, numbers.Real)
    try:
        values = np.asarray(alpha, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.array(np.nan)
    if isinstance(alpha, (bool, np.bool_, str)) or values.ndim != int(many) or \
            not values.size or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{name}: alpha must be a finite number >= 0 or a list of them (one "
                         f"per class), got {alpha!r}")
    return [float(v) for v in values] if many else float(values)


class CategoricalFocalCrossentropy(_AlongLastAxis, _ClassRows, _RowLoss):
    """Categorical cross-entropy with each class's term scaled by alpha * (1 - p)^gamma
    (Lin et al.; Keras 3's formula): confident right answers weigh little, so hard and rare
    classes count more. alpha (0.25): one factor for every class, or a list of one per
    class; gamma (2.0) >= 0 (0 with alpha 1: the categorical cross-entropy). Targets are
    one-hot (or probability) rows; label_smoothing as CategoricalCrossentropy's. As in
    Keras, probabilities are normalised to sum to 1 and clipped to [1e-7, 1 - 1e-7]
    (clipped ones get no gradient); from_logits=True takes a softmax first. The softmax is
    not fused into this loss: a softmax output layer hands it probabilities."""

    name = "categorical_focal_crossentropy"

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                 axis=-1, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self._take_axis(-1 if axis is None else axis)
        self.alpha = _class_weights(self.name, alpha)
        self.gamma = _check_gamma(self.name, gamma)
        self.from_logits = _flag(self.name, "from_logits", from_logits)
        self.label_smoothing = check_unit_interval(self.name, "label_smoothing",
                                                   label_smoothing)

    def _settings(self):
        return {"alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, **self._axis_config()}

    def prepare_targets(self, y, output_shape, dtype):
        self._check_classes(output_shape)
        classes = tuple(output_shape)[-1:]
        if isinstance(self.alpha, list) and (len(self.alpha),) != classes:
            raise ValueError(f"{self.name}: alpha has {len(self.alpha)} values, one per "
                             f"class, but the model has {classes[0] if classes else 0} "
                             f"outputs")
        return super().prepare_targets(y, output_shape, dtype)

    def _elements(self, xp, y_pred, y_true):
        eps, g = self.epsilon, self.gamma
        if self.from_logits:
            e = xp.exp(y_pred - y_pred.max(axis=-1, keepdims=True))
            q = e / e.sum(axis=-1, keepdims=True)
            total = None
        else:  # normalised to sum to 1 (a row of zeros: no probabilities, no gradient)
            total = y_pred.sum(axis=-1, keepdims=True)
            total = xp.where(total > 0, total, 1)
            q = y_pred / total
        o = xp.clip(q, eps, 1 - eps)
        alpha = self.alpha if not isinstance(self.alpha, list) else \
            xp.asarray(self.alpha, dtype=y_pred.dtype)
        factor, log_o = (1 - o) ** g, xp.log(o)
        loss = -(alpha * factor * y_true * log_o).sum(axis=-1)
        # d/do of -alpha t (1 - o)^g log o, where o is not clipped; (1 - o >= eps > 0)
        dfactor = -g * (1 - o) ** (g - 1) if g else 0
        inside = (q > eps) & (q < 1 - eps)
        dq = xp.where(inside, -alpha * y_true * (dfactor * log_o + factor / o), 0)
        through = dq - (dq * q).sum(axis=-1, keepdims=True)  # the normalisation's Jacobian
        grad = q * through if self.from_logits else through / total
        return loss, grad


class CosineSimilarity(_AlongLastAxis, _RowLoss):
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred)) per sample, along the last axis (the
    only `axis` pynn takes: _AlongLastAxis): -1 when they point the same way. A vector's
    norm is taken as at least 1e-7 (Keras' l2 normalisation), so a zero vector gives 0, not
    NaN."""

    name = "cosine_similarity"

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self._take_axis(axis)

    def _settings(self):
        return {"axis": self.axis}

    def __repr__(self):
        return f"CosineSimilarity(axis={self.axis})"

    def prepare_targets(self, y, output_shape, dtype):
        if tuple(output_shape)[-1:] == (1,):
            raise ValueError(f"{self.name} needs 2 or more outputs per vector, the model has "
                             f"1: one number normalises to +-1, whose gradient is 0")
        return super().prepare_targets(y, output_shape, dtype)

    def _elements(self, xp, y_pred, y_true):
        p_norm = xp.sqrt((y_pred * y_pred).sum(axis=-1, keepdims=True))
        p_div = xp.maximum(p_norm, self.epsilon)
        p = y_pred / p_div
        t = y_true / xp.maximum(xp.sqrt((y_true * y_true).sum(axis=-1, keepdims=True)),
                                self.epsilon)
        cos = (t * p).sum(axis=-1, keepdims=True)
        # d(-t . y/|y|)/dy = -(t - cos * y/|y|) / |y|; below epsilon the norm is a constant
        grad = -(t - (p_norm > self.epsilon) * cos * p) / p_div
        return -cos[..., 0], grad


class _HalfPoissonLogLink(Loss):
    """scikit-learn's 'poisson' loss (pynn.sklearn.MLPRegressor(loss='poisson')) on the
    network's raw outputs z (its log-link: the prediction is exp(z)): exp(z) - y z +
    y log y - y per element (half the Poisson deviance), gradient exp(z) - y, averaged over
    every element."""

    name = "half_poisson_log_link"

    def prepare_targets(self, y, output_shape, dtype):
        y = super().prepare_targets(y, output_shape, dtype)
        if y.size and y.min() < 0:
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        return y

    def _sum_and_grad(self, backend, y_pred, y_true, scale, sample_weight=None):
        xp = backend.xp
        rate = xp.exp(y_pred)
        y_log_y = xp.where(y_true > 0, y_true * xp.log(xp.where(y_true > 0, y_true, 1)), 0)
        loss = rate - y_true * y_pred + y_log_y - y_true
        grad = rate - y_true
        if sample_weight is not None:
            w = sample_weight.reshape(-1, 1)
            loss, grad = loss * w, grad * w
        return float(loss.sum(dtype=np.float64)), (grad * scale).astype(y_pred.dtype)


_ALIASES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mape": MeanAbsolutePercentageError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "log_cosh": LogCosh, "logcosh": LogCosh,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "kl_divergence": KLDivergence, "kld": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "poisson": Poisson,
    "cosine_similarity": CosineSimilarity,
    "binary_focal_crossentropy": BinaryFocalCrossentropy,
    "categorical_focal_crossentropy": CategoricalFocalCrossentropy,
}


_CLASSES = {cls.__name__: cls for cls in set(_ALIASES.values())}
_CLASSES[_HalfPoissonLogLink.__name__] = _HalfPoissonLogLink  # (a saved estimator's)


def _pynn_class(name):
    """pynn's loss class for a file's (or a hand-written config's) name: 'MeanSquaredError',
    'mse'."""
    return _CLASSES.get(name) or _ALIASES.get(name.lower())


def get(identifier) -> Loss:
    """A Loss from a name ('mse', 'sparse_categorical_crossentropy', ...) or a Loss."""
    if isinstance(identifier, Loss):
        # a Keras-style call() alone, or over a pynn loss (whose own sum it would not change)
        if not hasattr(identifier, "_sum_and_grad") or _custom.keras_method_only(
                type(identifier), "call", ("_sum_and_grad", "_logits_sum_and_grad")):
            raise TypeError(f"{type(identifier).__name__}: a pynn loss defines "
                            f"_sum_and_grad(backend, y_pred, y_true, scale, sample_weight) "
                            f"returning (sum of the losses, gradient * scale), as "
                            f"pynn.losses.MeanSquaredError does; pynn has no autodiff for "
                            f"a call()")
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):  # Keras takes classes
        return get(identifier())
    if isinstance(identifier, str):
        cls = _pynn_class(identifier)  # 'mse', or Keras' class name 'MeanSquaredError'
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; known: {', '.join(sorted(_ALIASES))}")
        return cls()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return _custom.rebuild(identifier, _pynn_class, "loss")
    from_function = _from_function(identifier) if callable(identifier) else None
    if from_function is not None:  # loss=pynn.losses.binary_crossentropy, as Keras takes it
        return from_function
    if callable(identifier):  # a function of one's own: pynn would need its gradient
        raise ValueError(f"cannot use the function {getattr(identifier, '__name__', identifier)!r}"
                         f" as a loss: pynn has no autodiff, so a loss of your own is a "
                         f"pynn.losses.Loss subclass giving its value and gradient "
                         f"(_sum_and_grad, as pynn.losses.MeanSquaredError does)")
    raise ValueError(f"cannot interpret {identifier!r} as a loss (a name, a Loss, or a "
                     f"Loss subclass's instance for a loss of your own)")


def serialize(loss: Loss) -> dict:
    """The {'class_name', 'config'} dict that `get` turns back into the loss (a name given
    to a pynn loss included)."""
    return _custom.describe(loss)


def _function_form(name, cls, options):
    """Keras' function form of the loss `cls`: name(y_true, y_pred, **options), the loss of
    each sample (the class with reduction "none"; options the class's own arguments), and
    compile(loss=name) (or a functools.partial of it) trains with cls(**options)."""
    def loss_function(y_true, y_pred, *args, **kwargs):
        try:
            given = loss_function.__signature__.bind(y_true, y_pred, *args, **kwargs).arguments
        except TypeError as exc:
            raise TypeError(f"{name}(): {exc}; it takes (y_true, y_pred"
                            f"{''.join(', ' + o for o in options)})") from None
        loss = cls(reduction="none", **{k: v for k, v in given.items()
                                        if k not in ("y_true", "y_pred")})
        y_true, y_pred = (a if hasattr(a, "ndim") else np.asarray(a) for a in (y_true, y_pred))
        if y_pred.ndim == 0:  # one number: one sample's one output
            return loss(y_true.reshape(1, 1), y_pred.reshape(1, 1))[0]
        if y_pred.ndim == 1:  # Keras reduces the last axis: one vector is one sample
            return loss(y_true[None], y_pred[None])[0]
        return loss(y_true, y_pred)

    defaults = inspect.signature(cls).parameters
    loss_function.__name__ = loss_function.__qualname__ = name
    loss_function.__module__ = __name__
    loss_function.__doc__ = (f"Keras' {name}(y_true, y_pred{''.join(', ' + o for o in options)})"
                             f": each sample's {cls.__name__} (reduction 'none'); as a "
                             f"compile() loss, {cls.__name__}({', '.join(options)}).")
    loss_function.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
         for n in ("y_true", "y_pred")] +
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           default=defaults[n].default) for n in options])
    loss_function.loss_class, loss_function.options = cls, tuple(options)
    return loss_function


_CROSSENTROPY_OPTIONS = ("from_logits", "label_smoothing", "axis")
binary_crossentropy = _function_form("binary_crossentropy", BinaryCrossentropy,
                                     _CROSSENTROPY_OPTIONS)
categorical_crossentropy = _function_form("categorical_crossentropy", CategoricalCrossentropy,
                                          _CROSSENTROPY_OPTIONS)
sparse_categorical_crossentropy = _function_form(
    "sparse_categorical_crossentropy", SparseCategoricalCrossentropy,
    ("from_logits", "ignore_class", "axis"))
binary_focal_crossentropy = _function_form(
    "binary_focal_crossentropy", BinaryFocalCrossentropy,
    ("apply_class_balancing", "alpha", "gamma") + _CROSSENTROPY_OPTIONS)
categorical_focal_crossentropy = _function_form(
    "categorical_focal_crossentropy", CategoricalFocalCrossentropy,
    ("alpha", "gamma") + _CROSSENTROPY_OPTIONS)
huber = _function_form("huber", Huber, ("delta",))
cosine_similarity = _function_form("cosine_similarity", CosineSimilarity, ("axis",))
mean_squared_error = _function_form("mean_squared_error", MeanSquaredError, ())
mean_absolute_error = _function_form("mean_absolute_error", MeanAbsoluteError, ())
mean_absolute_percentage_error = _function_form("mean_absolute_percentage_error",
                                                MeanAbsolutePercentageError, ())
mean_squared_logarithmic_error = _function_form("mean_squared_logarithmic_error",
                                                MeanSquaredLogarithmicError, ())
kl_divergence = _function_form("kl_divergence", KLDivergence, ())
log_cosh = _function_form("log_cosh", LogCosh, ())
poisson = _function_form("poisson", Poisson, ())
hinge = _function_form("hinge", Hinge, ())
squared_hinge = _function_form("squared_hinge", SquaredHinge, ())
categorical_hinge = _function_form("categorical_hinge", CategoricalHinge, ())


def is_function_form(fn):
    """Whether fn is one of the Keras loss functions above (binary_crossentropy, ...)."""
    return hasattr(fn, "loss_class") and globals().get(getattr(fn, "__name__", None)) is fn


def _from_function(identifier):
    """The Loss that one of the function forms above (or a functools.partial of one, its
    options by keyword) stands for in compile(), else None."""
    fn, given = identifier, {}
    if isinstance(identifier, functools.partial):
        fn, given = identifier.func, dict(identifier.keywords)
        if identifier.args:
            raise ValueError(f"a partial of the loss function {fn.__name__!r} gives options "
                             f"by keyword only, got {identifier.args!r}")
    if not is_function_form(fn):
        return None
    unknown = sorted(set(given) - set(fn.options))
    if unknown:
        raise ValueError(f"the loss function {fn.__name__!r} takes no option(s) {unknown}")
    return fn.loss_class(**given)


def deserialize(config, custom_objects=None):
    """The loss a config (serialize's, or Keras') or a name describes, a class of your own
    from custom_objects={name: class} (Keras' deserialize)."""
    if isinstance(config, dict) and config.get("class_name") == "function" and \
            isinstance(config.get("config"), str):  # Keras' serialize of a loss function
        config = config["config"]
    return _custom.deserialize_with(get, config, custom_objects, "loss")
