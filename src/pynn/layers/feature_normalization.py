"""Normalization: Keras' feature standardisation layer, (x - mean) / max(sqrt(variance), 1e-7)
per feature, with the statistics from `adapt(data)` (or given). Nothing in it trains: mean
and variance are statistics, saved with the model. `invert=True` undoes a standardisation
(for targets standardised the same way)."""

from __future__ import annotations

import numbers

import numpy as np

from .. import config
from .. import data as data_mod
from ..backend import to_host
from .base import Layer, as_flag, check_last_axis, keras_build_arguments, last_axis

EPSILON = 1e-7  # keras.backend.epsilon(): the least standard deviation divided by


class Normalization(Layer):
    """Standardises each feature (the last axis): (x - mean) / max(sqrt(variance), 1e-7),
    as Keras' Normalization. `layer.adapt(x)` takes mean and variance from data (an array,
    or a generator/iterable of arrays or (x, ...) batches), or give `mean=` and `variance=`
    (a number each, or one per feature). `axis=-1` (Keras' default, or the last axis'
    index: 1 for (batch, features) inputs) standardises each feature, `axis=None` all
    values with one mean and variance; other axes are refused.
    `invert=True` undoes the standardisation instead: x * max(sqrt(variance), 1e-7) + mean
    (e.g. predictions back to the scale of targets standardised with the same statistics).
    The native engine runs it (as a frozen normalisation of the inputs) as the model's first
    layer, without invert=True (a model with such a layer trains layer by layer)."""

    axis_by_index = True

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        if axis in ((), []):  # Keras' own config writes axis=None so
            axis = None
        self.axis = None if axis is None else last_axis(
            "Normalization", axis, "standardises each feature (or with axis=None all values "
            "together) along")
        if (mean is None) != (variance is None):
            raise ValueError("Normalization: give both mean and variance, or neither (and "
                             "call adapt)")
        self.invert = as_flag(f"Normalization {self.name!r}", "invert", invert)
        self._given = None if mean is None else (_statistic("mean", mean),
                                                 _statistic("variance", variance))
        if self._given is not None and (self._given[1] < 0).any():
            raise ValueError("Normalization: variance must be >= 0")
        if self.axis is None and self._given is not None and \
                any(s.size != 1 for s in self._given):  # (it standardised per feature)
            raise ValueError(f"Normalization(axis=None) standardises all values together: "
                             f"give one mean and one variance, got shapes "
                             f"{self._given[0].shape} and {self._given[1].shape}")
        self.mean = self.variance = None

    def build(self, input_shape, backend=None, dtype=None):
        input_shape, backend, dtype = keras_build_arguments(input_shape, backend, dtype)
        if self.axis is not None:
            check_last_axis(f"Normalization {self.name!r}", self.axis, input_shape,
                            "standardises each feature along")
        super().build(input_shape, backend, dtype)
        self._params = []
        n = int(input_shape[-1])
        if config.loading_weights_now():  # the file's values replace them: zeros that cost no
            # memory until written (Layer.initial_values), so a file declaring a huge input
            # costs nothing before its arrays are found not to match
            mean, variance = np.zeros(n, dtype=dtype), np.zeros(n, dtype=dtype)
        elif self._given is None:
            mean, variance = np.zeros(n), np.ones(n)
        else:
            try:
                mean, variance = (np.array(np.broadcast_to(s, (n,))) for s in self._given)
            except ValueError:
                raise ValueError(f"Normalization {self.name!r}: mean and variance must be "
                                 f"one number or {n} (one per feature), got shapes "
                                 f"{self._given[0].shape} and {self._given[1].shape}") from None
        self.mean = self.add_weight("mean", mean, backend, dtype, statistic=True)
        self.variance = self.add_weight("variance", variance, backend, dtype, statistic=True)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def adapt(self, data, batch_size=None, steps=None):
        """Mean and variance of each feature over data's samples (and any middle axes), in
        float64, as Keras' adapt. data: an array-like (batch_size: rows read at a time) or
        a generator/iterable of batches (x or (x, ...)); steps bounds the batches read. 1-D
        data is one feature per sample, as fit reads it (Keras reads it as one sample of
        that many features, whose variance is 0)."""
        from ..batch_sources import BatchSource, is_batch_source

        if is_batch_source(data):
            batches = (x for x, _, _ in BatchSource(data, steps, "steps", "predict").batches())
        else:
            if steps is not None:
                raise ValueError("Normalization.adapt: steps is for data given batch by batch")
            if data is None:
                raise TypeError("Normalization.adapt: data is None; pass an array of samples")
            arr = data_mod.host_array(data) if not hasattr(data, "shape") else data
            size = data_mod.check_batch_size(batch_size, 1 << 14)
            batches = (arr[i:i + size] for i in range(0, max(len(arr), 1), size))
        count, mean, m2, sample_shape = 0, None, None, None
        for batch in batches:
            x = to_host(batch)
            if x.dtype.kind not in "biuf":  # text ('1.5') parsed, complex parts dropped
                raise TypeError(f"Normalization.adapt: the data must be real numbers, got "
                                f"dtype {x.dtype}")
            x = np.asarray(x, dtype=np.float64)
            if x.ndim == 0 or x.size == 0:
                continue
            if not np.isfinite(x).all():
                raise ValueError("Normalization.adapt: the data contain NaN or infinity")
            x = x.reshape(-1, 1) if x.ndim == 1 else x  # one feature per sample, as fit's
            if sample_shape is not None and x.shape[1:] != sample_shape:
                raise ValueError(f"Normalization.adapt: batches of samples of shape "
                                 f"{sample_shape} and {x.shape[1:]}")
            sample_shape = x.shape[1:]
            x = x.reshape(-1, 1 if self.axis is None else x.shape[-1])
            # Chan et al.'s merge of (count, mean, sum of squared deviations): one pass over
            # data that may not fit in memory, without the cancellation of E[x^2] - E[x]^2
            n, batch_mean = x.shape[0], x.mean(axis=0)
            batch_m2 = ((x - batch_mean) ** 2).sum(axis=0)
            if mean is None:
                count, mean, m2 = n, batch_mean, batch_m2
            else:
                delta = batch_mean - mean
                total = count + n
                mean = mean + delta * (n / total)
                m2 = m2 + batch_m2 + delta ** 2 * (count * n / total)
                count = total
        if mean is None:
            raise ValueError("Normalization.adapt: the data have no samples")
        if self.mean is None:
            from ..backend import get_backend
            from ..config import floatx

            self.build(sample_shape, get_backend(), floatx())
        elif tuple(self.input_shape) != sample_shape:
            raise ValueError(f"Normalization {self.name!r} takes samples of shape "
                             f"{tuple(self.input_shape)}, the data have {sample_shape}")
        n = self.mean.shape[0]
        # new arrays (not in place): an engine bound to the old statistics sees the change
        backend = self.mean.backend
        # (copies: a broadcast view is read-only, which set_weights then could not write)
        self.mean.value = backend.asarray(np.array(np.broadcast_to(mean, (n,))),
                                          self.mean.value.dtype)
        self.variance.value = backend.asarray(np.array(np.broadcast_to(m2 / count, (n,))),
                                              self.variance.value.dtype)
        self._given = None

    def _scale(self):
        xp = self.backend.xp
        return xp.maximum(xp.sqrt(self.variance.value), EPSILON).astype(self.variance.value.dtype)

    def forward(self, x, training=False, logits=False):
        scale = self._scale()
        if self.invert:
            return x * scale + self.mean.value
        return (x - self.mean.value) / scale

    def backward(self, dy, need_input_grad=True, logits=False):
        if not need_input_grad:
            return None
        scale = self._scale()
        return dy * scale if self.invert else dy / scale

    def get_config(self):
        config = {**super().get_config(), "axis": self.axis, "invert": self.invert}
        if self._given is not None:  # as Keras: what was given (adapt forgets it)
            config["mean"], config["variance"] = (s.tolist() for s in self._given)
        return config


def _statistic(name, value):
    try:
        array = np.asarray(to_host(value), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"Normalization: {name} must be numbers, got {value!r}") from None
    if array.ndim > 1 or not np.isfinite(array).all() or isinstance(value, (str, bytes)) or \
            (array.ndim == 0 and not isinstance(value, (numbers.Real, np.ndarray))):
        raise ValueError(f"Normalization: {name} must be a finite number or one per "
                         f"feature, got {value!r}")
    return array
