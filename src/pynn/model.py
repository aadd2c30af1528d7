"""Sequential: a stack of layers with Keras' compile / fit / evaluate / predict.

The model runs on one backend (chosen at compile, default the current one). Data is checked
and converted once per call (pynn.data); each epoch shuffles an index and gathers one batch at
a time, so the data set is never copied per epoch. When the output activation is softmax or
sigmoid and the loss is the matching cross-entropy, the loss takes the logits directly
(log-sum-exp; never log(0)) and the activation's backward pass is skipped.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import itertools
import math
import numbers
import os
import re
import textwrap
import threading
import time
import warnings
import weakref

import numpy as np

from . import config, data
from . import engine as engine_mod
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from .backend import backend_array, backend_for_device, get_backend, is_gpu_array, to_host
from .backend.arrays import detached
from .batch_sources import BatchSource, check_steps, is_batch_source
from .callbacks import (Callback, CallbackList, History, TerminateOnNaN, _user_stacklevel,
                        checked_callbacks, defines_hook, putting_weights_back_on_error)
from .custom_objects import custom_object_scope, describe, is_custom, keras_method_only
from .engine import epoch_order
from .interrupts import DeferredInterrupt, StepGuard
from .layers import Flatten, Input, InputLayer, Layer, RandomLayer, Reshape, get_class
from .layers.base import (KerasAttribute, _keywords_taken, as_bool, as_flag, as_shape,
                          forward_of, unique_name)
from .progress import EpochProgress, check_verbose, logs_line

# compile()'s metric arguments and the attributes that keep them (as given)
_METRIC_SPECS = {"metrics": "_metric_specs", "weighted_metrics": "_weighted_metric_specs"}
_PREDICT_BATCH = 1024
_OWN_MASK_STEPS = 1 << 63  # compute_gradients' own draws: beyond any optimizer's step
_KEPT_BATCH_ROWS = 4096  # train_on_batch keeps its native engine for batches up to this
_PREDICT_PIECE = 16 << 20  # bytes of converted input predict holds at a time (beside x)
_METRIC_CLAIMS_LOCK = threading.Lock()  # guards _METRIC_CLAIMS and every model's _fits_running
# id(metric object) -> the fits and evaluates accumulating into it now. Counted by object, not
# by model: a copy.copy of a model, or another model compiled with the same metric objects,
# shares them (two evaluates mixed their batches into one AUC)
_METRIC_CLAIMS = {}
# The models whose per-process state a forked child resets (_reset_process_state_in_child): those
# with a build lock (_build_lock), a fit or evaluate counted, or train_on_batch's engine
_MODELS_WITH_PROCESS_STATE = weakref.WeakSet()


def _build_lock(model):
    """The model's own lock for building it: two threads' first predict built one model's
    layers together, each using weights the other was replacing (or not yet made). One lock
    per model: a user layer's build that waits on another thread building another model
    would deadlock on a lock shared by all."""
    lock = model.__dict__.get("_build_lock")
    if lock is None:
        lock = model.__dict__.setdefault("_build_lock", threading.RLock())  # (atomic)
        _MODELS_WITH_PROCESS_STATE.add(model)
    return lock


def _reset_process_state_in_child():
    # A forked child gets the locks and counters as they were: held and counting, if a parent
    # thread was in them (a fit there is none here: compile() was refused as "during fit"),
    # and train_on_batch's engine with its C++ lock held by a parent thread's step (the
    # child's first train_on_batch hung): the next call builds another.
    global _METRIC_CLAIMS_LOCK
    _METRIC_CLAIMS_LOCK = threading.Lock()
    _METRIC_CLAIMS.clear()
    for model in list(_MODELS_WITH_PROCESS_STATE):
        state = model.__dict__
        state["_build_lock"] = threading.RLock()
        state.pop("_train_lock", None)  # (held by a parent thread's step, maybe)
        state.pop("_fits_running", None)
        trainer = state.pop("_batch_trainer", None)
        if trainer is not None:  # kept, never used or freed (freeing a held lock is undefined)
            engine_mod._inherited_at_fork.append(trainer)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_process_state_in_child)


def _unbuilt_again_if_refused(method):
    """fit, evaluate, train_on_batch: a call that builds an unbuilt model from its x and
    then refuses the data (a y of another length, a bad sample weight) leaves the model
    unbuilt, as Keras does: built for a transposed x, the corrected call was refused."""
    @functools.wraps(method)
    def call(model, *args, **kwargs):
        state = None
        if not model.built:
            from .saving import _unbuilt_state

            state = _unbuilt_state(model)
        optimizer = model.optimizer
        steps = None if optimizer is None else optimizer.training_steps
        columns = model.__dict__.get("_frame_columns")
        try:
            return method(model, *args, **kwargs)
        except Exception:
            # (not once a step has trained the new weights: the frame's names then stay)
            if optimizer is model.optimizer and \
                    (optimizer is None or optimizer.training_steps == steps):
                model.__dict__["_frame_columns"] = columns
                if state is not None and model.built:
                    from .saving import _restore_state

                    _restore_state(state)
            raise

    return call


class Sequential:
    """A linear stack of layers with Keras' compile / fit / evaluate / predict.

    `Sequential([pynn.Input((20,)), pynn.Dense(64, activation="relu"), pynn.Dense(1)])`;
    layers: the list to start from (model.add appends more), name: the model's name,
    trainable=False: those layers frozen (model.trainable = False).
    `model(x)` is predict(x); `model(x, training=True)` runs the layers as in a training step
    without an optimizer step (BatchNormalization's moving statistics do move, as in
    Keras). Models pickle and copy.deepcopy (through the .npz format).
    Unlike Keras 3, an Input stays in model.layers (as layers[0])."""

    # Keras' Model methods a subclass overrides to change what fit, evaluate or predict
    # compute: pynn's loops run in C++ or through forward/backward, never these
    _KERAS_STEPS = ("call", "train_step", "test_step", "predict_step", "compute_loss",
                    "compute_metrics")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        overridden = [name for name in cls._KERAS_STEPS if name in vars(cls)]
        if overridden:
            raise TypeError(f"class {cls.__name__}(pynn.Sequential) defines Keras' "
                            f"{', '.join(overridden)}, which pynn's fit, evaluate and predict "
                            f"never call (they run the layers' forward and backward, or "
                            f"the native engine); put that computation in a layer of your "
                            f"own (README: Custom layers) or a loop of your own "
                            f"(model.compute_gradients, optimizer.apply_gradients)")

    def __init__(self, layers=None, name=None, *, trainable=True):
        if isinstance(name, (bool, np.bool_)):  # Keras' Sequential(layers, trainable) order
            raise TypeError(f"Sequential: name={name!r}; pynn's second argument is the name "
                            f"(Keras' is trainable): give trainable={name!r} by keyword")
        if name is not None and not isinstance(name, str):  # (as a layer's: files key by it)
            raise TypeError(f"Sequential: name must be a string, got {name!r}")
        trainable = as_bool("Sequential", "trainable", trainable)  # (None froze every layer)
        self.name = name or unique_name("sequential")
        self._layers: list[Layer] = []  # (the layers property hands out copies)
        self.backend = None
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self.stop_training = False
        self.stop_evaluating = self.stop_predicting = False  # set by a callback (Keras 3)
        self._metric_specs = []
        self._weighted_metric_specs = []
        self._metrics = []  # (name, function or Metric): what the native engine checks
        self._metric_objects = []  # pynn.metrics.Metric, accumulated over an epoch
        self._predict_cache = None
        self._frame_columns = None  # the DataFrame columns fit read last (predict checks them)
        self.history = None  # the History of the latest fit, kept if it is interrupted
        self.shuffle_seed = None  # drawn at the first shuffled fit; saved with the model
        self.engine_reason = None  # why the last fit did not use the native engine; None: it
        #                            did (or no fit yet)
        # as add() each, but the names checked through a set and the model built once: a
        # file's 16,000-layer description took 20 s (each add checked and built them all)
        if type(self).add is not Sequential.add:  # a subclass's own add() sees each layer
            for layer in layers or []:
                self.add(layer)
        else:
            names = set()
            for layer in layers or []:
                self._check_addable(layer, names)
                names.add(layer.name)
                self._layers.append(layer)
            if self._layers and self.input_shape is not None:
                self._build(self.input_shape)
        if not trainable:  # Keras' Sequential(trainable=False): every layer given frozen
            self.trainable = False

    # ---- structure --------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The model's layers, a new list each time (as Keras'): editing the list leaves the
        model as it was (appending to the model's own list skipped add()'s checks and
        building, and changed every model built from it); add() and pop() edit the model."""
        self._layers_tracked(strict=False)  # (what a holder of yours owns here)
        return list(self._layers)

    def add(self, layer, rebuild=True):
        """Append a layer (an Input only first); refused, it leaves the model as it was.
        rebuild=False (Keras 3's): the model is built at its next use, not now."""
        rebuild = as_flag("add", "rebuild", rebuild)
        self._check_addable(layer, {existing.name for existing in self._layers})
        self._layers.append(layer)
        config.settings_changed()  # (a holder of yours may own the layer's weights: re-track)
        if rebuild and self.input_shape is not None:  # Keras builds once the shape is known
            try:
                self._build(self.input_shape)
            except BaseException:  # a layer that does not fit is not kept (re-run cells)
                self._layers.pop()
                raise

    def _check_addable(self, layer, names):
        if isinstance(layer, Sequential):  # Keras nests models; pynn stacks their layers
            # (its Input, pynn's first layer, only where the new model starts)
            own = layer.layers
            tail = "[1:]" if names and own and isinstance(own[0], InputLayer) else ""
            example = (f"Sequential([..., *{layer.name}.layers{tail}])" if names else
                       f"Sequential({layer.name}.layers + [head])")
            raise TypeError(f"a model is not a layer in pynn: add its layers instead, e.g. "
                            f"{example} (they share the weights, as a nested Keras model "
                            f"does), or call it on a tensor in the functional form; the "
                            f"new model's layers are then its layers, not the model")
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a pynn layer, got {layer!r}")
        if type(layer).forward is Layer.forward and "forward" not in vars(layer):
            # (a Keras-style call() alone: the model was built for its input's shape, and
            # failed only at predict)
            keras = " (it defines Keras' call(), which pynn does not run)" \
                if callable(getattr(layer, "call", None)) else ""
            raise TypeError(f"layer {layer.name!r} ({type(layer).__name__}) defines no "
                            f"forward(x, training, logits){keras}: pynn has no autodiff, so a "
                            f"layer of your own gives forward and backward (README: Custom "
                            f"layers)")
        if keras_method_only(type(layer), "call", ("forward",)):
            # (a pynn layer's subclass, its call() ignored: Dense's outputs, not doubled)
            raise TypeError(f"layer {layer.name!r} ({type(layer).__name__}) overrides Keras' "
                            f"call(), which pynn does not run: it runs forward(x, training, "
                            f"logits) and backward(dy, need_input_grad, logits); pynn has no "
                            f"autodiff, so override those (README: Custom layers)")
        if isinstance(layer, InputLayer) and self.layers:
            raise ValueError("an Input can only be the first element of a Sequential model")
        if layer.name in names:
            raise ValueError(f"a layer named {layer.name!r} is already in the model")

    def __setattr__(self, name, value):
        # model.loss = "mae", model.optimizer = "sgd": as compile() takes them (a string
        # failed at the next fit with an AttributeError)
        if name == "loss" and value is not None and not isinstance(value, losses_mod.Loss):
            value = losses_mod.get(value)
        elif name == "optimizer":
            previous = self.__dict__.get("optimizer")
            if value is not None:
                value = self._own(optimizers_mod.get(value))  # may refuse: keep previous
            if previous is not None and previous is not value and \
                    getattr(previous, "_owner", lambda: None)() is self:
                previous._released = True  # another model may take it now (afresh)
        object.__setattr__(self, name, value)
        if name in ("optimizer", "loss"):  # a native engine is built with them
            config.settings_changed()

    def pop(self, rebuild=True):
        """Remove and return the last layer (Keras' Sequential.pop); an Input stays.
        rebuild (Keras 3's) is taken: the layers before keep their weights either way."""
        as_flag("pop", "rebuild", rebuild)
        if not self._compute_layers:
            raise ValueError("pop: the model has no layers to remove")
        shape = self.input_shape
        layer = self._layers.pop()
        config.settings_changed()  # (a holder of yours may own the layer's weights now)
        if not self._layers and shape is not None:  # the input shape stays, as Keras 3's
            self._layers.append(Input(shape))       # InputLayer (input_shape=, or built)
        return layer

    def get_layer(self, name=None, index=None):
        """The layer called `name`, or at `index` of model.layers (as Keras)."""
        if (name is None) == (index is None):
            raise ValueError("get_layer: give a name or an index (one of them)")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"get_layer: index must be an integer, got {index!r}")
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"get_layer: index {index} is out of range for "
                                 f"{len(self.layers)} layers")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; the layers are "
                         f"{[l.name for l in self.layers]}")

    @property
    def _compute_layers(self):
        return [l for l in self.layers if not isinstance(l, InputLayer)]

    @property
    def _fused(self):
        """Whether the loss takes the last layer's pre-activations (softmax or sigmoid with
        its cross-entropy, from logits): asked at every step, so a callback that changes the
        loss or the output activation mid-fit is followed (as the native engine does)."""
        # (asked ~6 times a batch: kept until a setting, the loss or the last layer changes)
        last = self.layers[-1] if self.layers else None
        key = (config.settings_version(), self.loss, last)
        cached = self.__dict__.get("_fused_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        layers = self._compute_layers
        fused = (self.loss is not None and bool(layers) and self.loss.fuses_activation
                 and layers[-1].output_activation == self.loss.fused_activation)
        self.__dict__["_fused_cache"] = (key, fused)
        return fused

    @property
    def input_shape(self):
        """The shape of one input sample, without the batch axis ((784,) where Keras says
        (None, 784)); None before the model knows it."""
        return self.layers[0].input_shape if self.layers else None

    @KerasAttribute
    def input(self):
        """The model's Input (Keras' model.input, in Keras' functional form: a layer called
        on it, or pynn.Model(model.input, ...)); a model declared without one has none."""
        from . import functional

        return functional.model_input(self)

    @KerasAttribute
    def output(self):
        """The output of the model's layers from its Input, as a symbolic tensor (Keras'
        model.output): `pynn.Model(base.input, pynn.Dense(10)(base.output))` puts a head on
        the model's layers, sharing them."""
        from . import functional

        x = functional.model_output(self)
        if isinstance(x, InputLayer):
            raise AttributeError(f"model {self.name!r} has no layers after its Input")
        return x

    @KerasAttribute
    def inputs(self):
        """[model.input], as Keras' list of a model's inputs."""
        return [self.input]

    @KerasAttribute
    def outputs(self):
        """[model.output], as Keras' list of a model's outputs."""
        return [self.output]

    @property
    def built(self):
        """Whether every layer has its weights (an Input, build(), or the first fit/predict)."""
        # (the flag after the layers': a layer is marked built before its build makes weights)
        layers = self._layers  # (not the copy model.layers hands out)
        return bool(layers) and all(layer.built for layer in layers) and \
            "_building" not in self.__dict__

    @property
    def output_shape(self):
        """The shape of one output sample, without the batch axis; None before the input
        shape is known."""
        shape = self.input_shape
        if shape is None:
            return None
        for layer in self._compute_layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def compute_output_shape(self, input_shape):
        """Keras' model.compute_output_shape: the output's shape for inputs of `input_shape`
        (batch axis first: (None, 784) -> (None, 10)), from the layers' own shapes."""
        try:
            shape = as_shape(input_shape)
        except TypeError:
            raise TypeError(f"compute_output_shape: expected a shape such as (None, "
                            f"features), got {input_shape!r}") from None
        if len(shape) < 2:
            raise ValueError(f"compute_output_shape: the shape starts with the batch axis, "
                             f"e.g. (None, features); got {input_shape!r}")
        batch, sample = shape[0], tuple(shape[1:])
        known, layers = self.input_shape, self._compute_layers
        if known is not None and tuple(known) != sample and not (
                layers and layers[0]._takes_samples(sample)):  # (Dense on sequences takes
            raise ValueError(f"compute_output_shape: the model takes inputs of shape "
                             f"{(None, *known)}, got {tuple(input_shape)}")
        for layer in layers:
            sample = layer.compute_output_shape(sample)
        return (batch, *sample)

    def build(self, input_shape=None):
        """Create the weights for inputs of `input_shape`, which starts with the batch axis
        as in Keras ((None, features), (32, 28, 28) for 28x28 samples); a 1-tuple
        (features,) or a bare number is the sample shape; None (Keras' default): the input
        shape the model knows. (model.input_shape and output_shape are sample shapes,
        without the batch axis.)"""
        if input_shape is None:
            if self.input_shape is None:
                raise ValueError("build: the model does not know its input shape yet; give "
                                 "one, e.g. build((None, features))")
            input_shape = (None, *self.input_shape)
        try:
            given = shape = as_shape(input_shape)
        except TypeError:
            raise TypeError(f"build: input_shape must be a shape such as (None, features), "
                            f"got {input_shape!r}") from None
        if len(shape) >= 2:
            shape = shape[1:]  # the batch axis, None or a number
        if None in shape:
            raise ValueError(f"build: every axis but the batch axis needs a size, got {given}")
        if not shape or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1
                            for d in shape):
            raise ValueError(f"build: the sizes must be positive integers, got {given!r}")
        shape = tuple(int(d) for d in shape)
        if (self.built or (self.layers and isinstance(self.layers[0], InputLayer))) and \
                shape != self.input_shape:  # (as Keras 3: the layers after would follow it)
            raise ValueError(f"build: the model is already configured for inputs of shape "
                             f"{(None, *self.input_shape)}; got {given}")
        self._build(shape)

    def _build(self, shape):
        with _build_lock(self):
            self.__dict__["_building"] = True
            try:
                self._build_layers(shape)
            finally:
                self.__dict__.pop("_building", None)

    def _build_layers(self, shape):
        if not self.layers:
            raise ValueError("the model has no layers; add some before building it")
        backend = self.backend or get_backend()
        self.backend = backend
        from .saving import _restore_state, _saved_state

        dtype = config.floatx()
        shape = tuple(int(d) for d in shape)
        # a refused shape leaves every layer as it was: a Dropout before the refusing layer
        # kept the new shape, a layer added unbuilt stayed marked built (the model took
        # neither after)
        before = _saved_state(self._layers)
        try:
            for i, layer in enumerate(self._layers):
                if i and not layer.built and layer.input_shape not in (None, shape):
                    # (Keras warns of input_shape= on any layer but the first)
                    warnings.warn(f"layer {layer.name!r} was given input_shape "
                                  f"{layer.input_shape}, but takes {shape} from the layer "
                                  f"before it: the given shape is ignored (it is the model's "
                                  f"input shape on its first layer only)", UserWarning,
                                  stacklevel=_user_stacklevel())
                layer._build_for(shape, backend, dtype)
                shape = layer.compute_output_shape(shape)
            self._track_layers()
        except BaseException:
            _restore_state(before)
            raise
        from . import functional

        functional.remember_model(self)  # (layer.output: in this model)

    def _track_layers(self, strict=True):
        """The layers yours hold: their weights are theirs (Layer._track_held_layers), each
        weight in one layer of this model: its own layers, and those an earlier layer took,
        excluded. Again where a holder was built since in another model (it took weights
        there that may be this model's own), or layers were added or popped: the settings
        counter says so. strict=False (reading model.layers): a holder's refusals are left
        to the next build or step, so the model can still be looked at and mended."""
        taken = {id(layer) for layer in self._layers}
        for layer in self._layers:
            taken.update(id(held) for held in layer._track_held_layers(taken, strict))
        # (a lenient tracking leaves the strict one, with its refusals, still to do)
        self.__dict__["_tracked_version"] = version = config.settings_version()
        if strict:
            self.__dict__["_strictly_tracked_version"] = version

    def _layers_tracked(self, strict=True):
        """_track_layers again if a holder may have been tracked since (another model built
        it), before anything reads the layers' weights."""
        key = "_strictly_tracked_version" if strict else "_tracked_version"
        if self.__dict__.get(key) != config.settings_version() and self.built:
            self._track_layers(strict)

    def _ensure_built(self, sample_shape):
        """Builds an unbuilt model for samples of this shape (its own input shape first)."""
        if not self.built:
            with _build_lock(self):
                if not self.built:  # (unless another thread built it meanwhile)
                    self._build(self.input_shape or tuple(sample_shape))

    @property
    def _dtype(self):
        return config.floatx()

    # ---- compile ------------------------------------------------------------------------------
    def _for_the_output(self, what, given, listed=False):
        """Keras' per-output forms of compile's loss and metrics for the one output: a
        one-item list of losses, or a dict keyed by the output's name (its last layer's)
        holding a loss or the output's metrics. listed: metrics (already a list otherwise;
        a dict's one metric becomes a list of it)."""
        if isinstance(given, dict) and "class_name" not in given:  # (not a loss's config)
            name = _output_name(self)
            if len(given) != 1 or (name is not None and name not in given):
                raise ValueError(f"compile: {what} given per output ({sorted(given)!r}), but "
                                 f"the model has one output, {name!r}: key it by that name, "
                                 f"or give it without the dict")
            given, = given.values()
            if listed and not isinstance(given, (list, tuple)):
                given = [given]
        elif not listed and isinstance(given, (list, tuple)):
            if len(given) != 1:
                raise ValueError(f"compile: {len(given)} losses given, but the model has one "
                                 f"output: give one loss")
            given, = given
        return given

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, backend=None, device=None,
                run_eagerly=False, jit_compile="auto", steps_per_execution=1,
                auto_scale_loss=True, weighted_metrics=None, loss_weights=None):
        """Choose optimizer, loss and metrics; `backend` (or device='cpu'/'gpu') picks where
        the model runs, default the current backend (pynn.set_backend). A device takes the
        current backend if it runs there, else the fastest one there (cpu before numpy, cuda
        before cupy). metrics are unweighted; weighted_metrics (Keras') are weighted by the
        sample and class weights of fit, and by those of evaluate and validation data, and
        are logged under their names, or "weighted_" and the name where a metric of
        `metrics` has it (Keras 3). run_eagerly, jit_compile, steps_per_execution and
        auto_scale_loss are Keras' execution settings, taken and unused (pynn has no graph
        to compile, and its native engine already runs many steps per call). loss_weights
        (Keras' weights of several outputs' losses): a pynn model has one output, and only
        the weight 1 (a number, a one-item list or dict) is taken; Keras' per-output forms
        of loss and metrics for that output are taken too (a one-item list of losses, dicts
        keyed by its name, the last layer's)."""
        _check_loss_weights(loss_weights)
        if getattr(self, "_fits_running", 0):  # (Keras 3 fails too, less clearly)
            raise RuntimeError("compile() was called during fit (from a callback or another "
                               "thread): the "
                               "running fit would keep training with its metrics half "
                               "replaced. Set model.optimizer, model.loss or an optimizer's "
                               "attributes instead (fit follows them), or compile after fit "
                               "returns")
        if isinstance(steps_per_execution, bool) or not isinstance(
                steps_per_execution, (int, np.integer)) or steps_per_execution < 1:
            raise ValueError(f"compile: steps_per_execution must be a positive integer, got "
                             f"{steps_per_execution!r}")
        loss = self._for_the_output("loss", loss)
        metrics = self._for_the_output("metrics", metrics, listed=True)
        weighted_metrics = self._for_the_output("weighted_metrics", weighted_metrics,
                                                listed=True)
        if loss is None:
            raise ValueError("compile: a loss is required, e.g. loss='mse'")
        if optimizer is None:
            raise ValueError("compile: an optimizer is required, e.g. optimizer='adam'")
        if device is not None:
            if backend is not None:
                raise ValueError(f"compile: give backend= or device=, not both (got "
                                 f"{backend!r} and {device!r})")
            new_backend = backend_for_device(device)
        else:
            new_backend = get_backend(backend)
        if config.floatx() == "float64" and not new_backend.supports_float64 \
                and new_backend.name not in ("cpu",):
            raise ValueError(f"backend {new_backend.name!r} runs float32 only")
        # Everything is checked before anything changes: a refused compile leaves the model
        # as it was (its trained optimizer too)
        for what, given in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if given is not None and not isinstance(given, (list, tuple)):
                raise TypeError(f"{what} must be a list, got {given!r}")
        loss = losses_mod.get(loss)
        loss._check_trains("compile")
        specs = (list(metrics or []), list(weighted_metrics or []))
        # unknown names, clashes fail here, not at the first fit
        self._compiled_metrics((1,), (*specs, type(loss).name))
        optimizer = optimizers_mod.get(optimizer)
        # train_on_batch's engine holds the old metrics and backend (the same optimizer and
        # loss objects given again would not tell it): the next call decides afresh
        self.__dict__.pop("_batch_trainer", None)
        self.__dict__.pop("_prepared_for", None)  # _metrics is emptied below
        self.optimizer = optimizer  # owned (or refused: another model's), the previous released
        self._to_backend(new_backend)  # (with the optimizer's slots, if it is the same one)
        self.loss = loss
        self._metric_specs, self._weighted_metric_specs = specs
        self._metrics = []
        self.compiled = True
        last = self._compute_layers[-1] if self._compute_layers else None
        if getattr(self.loss, "from_logits", False) and last is not None and \
                last.output_activation in ("softmax", "sigmoid"):
            warnings.warn(f"{self.loss.name} has from_logits=True, but the last layer ends in "
                          f"{last.output_activation}: its outputs are probabilities, not logits "
                          f"(was this intended?)", UserWarning, stacklevel=2)
        elif getattr(self.loss, "from_logits", True) is False and last is not None and \
                getattr(last, "output_activation", None) == "linear":
            # the reverse (Keras says neither): a cross-entropy of raw scores, whose loss
            # means nothing and whose rows of negative sum train nowhere useful
            warnings.warn(f"{self.loss.name} takes probabilities (from_logits=False), but the "
                          f"last layer's outputs are linear: not probabilities (give it "
                          f"activation='softmax' or 'sigmoid', or the loss from_logits=True)",
                          UserWarning, stacklevel=2)
        if self.input_shape is not None:
            self._build(self.input_shape)

    def _to_backend(self, backend):
        """The weights, and the optimizer's slots with them, onto `backend` (compile with
        another backend, a model unpickled where its backend runs)."""
        old, self.backend = self.backend, backend
        for layer in self.layers:
            if layer.built:
                layer.to_backend(backend, self._dtype)
        if self.optimizer is None or old is None or old is backend:
            return
        for p in self.params:
            slots = self.optimizer.state_of(p)
            if slots:
                # to_host: another model sharing the layer may have moved them
                self.optimizer.set_state_of(p, {k: backend.asarray(to_host(v, old), v.dtype)
                                                for k, v in slots.items()})

    def _own(self, optimizer):
        """An optimizer keeps per-weight state and a step count, so it trains one model (as
        in Keras); one whose model is gone, or was compiled with another optimizer, starts
        afresh with the next model."""
        owner = getattr(optimizer, "_owner", None)
        model = owner() if owner is not None else None
        released = getattr(optimizer, "_released", False)  # its model was recompiled
        if model is not None and model is not self and not released:
            # a fitted model the user dropped lives until Python's cyclic collection (it
            # and its History refer to each other, as in Keras): collect before refusing
            del model
            gc.collect()
            model = owner()
        if model is not None and model is not self and not released:
            raise ValueError(f"this {type(optimizer).__name__} already trains another model; "
                             f"give each model its own optimizer (e.g. a new "
                             f"pynn.optimizers.{type(optimizer).__name__}(...), or a name "
                             f"such as 'adam')")
        if owner is not None and model is not self:  # its model is gone or let it go
            optimizer.reset()
        optimizer._owner = weakref.ref(self)
        optimizer._released = False
        return optimizer

    def _compiled_metrics(self, out_shape, specs=None):
        """The Metric objects of compile's metrics, then its weighted metrics (each wrapped
        to take the batches' weights, under its log name), their names checked. specs:
        (metrics, weighted metrics, the loss's kind) to check before compile takes them."""
        objects, names = [], []
        plain, weighted, loss_kind = specs or (
            self._metric_specs, getattr(self, "_weighted_metric_specs", []), self._loss_kind)
        for i, m in enumerate([*plain, *weighted]):
            try:
                metric = metrics_mod.get(m, loss_kind, int(np.prod(out_shape)),
                                         last_axis=_last_axis(out_shape))
                name = getattr(metric, "name", None)
            except AttributeError:  # a Metric subclass whose __init__ skipped the base's
                name = None
            if not isinstance(name, str):
                raise TypeError(f"metric {m!r} has no name: a Metric subclass calls "
                                f"super().__init__(name=...) in its __init__")
            if any(metric is getattr(seen, "metric", seen) for seen in objects):
                raise ValueError(f"the metric object {m!r} is given twice (metrics and "
                                 f"weighted_metrics): give each its own object")
            if i >= len(plain):  # Keras 3's name for a weighted one
                unweighted = names[:len(plain)]
                name = f"weighted_{name}" if name in unweighted else name
                metric = metrics_mod._Weighted(metric, name)
            if name == "loss" or name.startswith("val_"):  # would overwrite a log entry
                raise ValueError(f"a metric is named {name!r}, which the logs use for the "
                                 f"loss or validation values; give it another name")
            names.append(name)
            objects.append(metric)
        # Keras' name_1, name_2... for the second and third of one name (History keys metrics
        # by name), never one a metric is given
        taken = set(names)
        for i, name in enumerate(names):
            if name in names[:i]:
                k = 1
                while f"{name}_{k}" in taken:
                    k += 1
                names[i] = f"{name}_{k}"
                taken.add(names[i])
                if isinstance(objects[i], metrics_mod._Weighted):
                    objects[i].name = names[i]
                else:
                    objects[i] = metrics_mod._Renamed(objects[i], names[i])
        return objects

    def _check_compiled(self):
        if not self.compiled:
            raise RuntimeError("the model must be compiled before training or evaluating; "
                               "call model.compile(optimizer, loss)")
        if self.optimizer is None or self.loss is None:  # set to None after compile()
            missing = "optimizer" if self.optimizer is None else "loss"
            raise RuntimeError(f"the model has no {missing}: set one (model.optimizer = "
                               f"'adam') or compile again")

    def _prepare_compiled(self, training=False):
        """Loss fusion, metric objects and the backend's weights, once the model is built
        (a model without an input shape is built by its first data, like Keras). Done again
        only when something it reads changed (a weight rebound, a layer's setting or floatx
        moves the settings counter): train_on_batch calls it every step. training: a step
        follows, for which the optimizer forgets the state of weights no longer in the
        model (a layer popped or replaced without compile: kept for as long as the
        optimizer lives, a head's Adam slots at each swap); not before (a summary between
        pop() and add() of the same layer kept its slots then, as Keras')."""
        self._check_compiled()
        if training:  # (reduction='none' set after compile; summary() may still show it)
            self.loss._check_trains()
        self._layers_tracked()
        key = (config.settings_version(), tuple(self.layers), self.optimizer, self.loss,
               self.backend, self._dtype, self._metric_specs, self._weighted_metric_specs)
        if training and self.__dict__.get("_trimmed_for") != key:
            self.optimizer.keep_only(self.params)
            self.__dict__["_trimmed_for"] = key
        if self.__dict__.get("_prepared_for") == key:
            return
        last = self._compute_layers[-1] if self._compute_layers else None
        if last is None:
            raise ValueError("the model has no layers to train")
        # ('accuracy' by the last axis: a sequence's (T, 1) outputs are one 0/1 output per
        # position, as Keras reads them; the width T took it for argmax over one column)
        self._metric_objects = self._compiled_metrics(tuple(self.output_shape))
        # The native engine knows a metric by its function; stateful metrics (precision,
        # AUC, ...) are not among them, so they keep training on the layer path.
        self._metrics = [(m.name, metrics_mod.engine_function(m)) for m in self._metric_objects]
        for layer in self.layers:
            layer.to_backend(self.backend, self._dtype)
        self.__dict__["_prepared_for"] = key

    def _check_metrics_take(self, y, name="y"):
        """compile's metrics run on y's first sample, their state untouched, before any
        step: one that cannot read these targets (integer labels for 'mse') fails before the
        weights move, not after the first batches trained. Once per compiled state and
        kind of targets."""
        if not self._metric_objects or not len(y):
            return
        key = (self.__dict__.get("_prepared_for"), y.shape[1:], y.dtype.str)
        if self.__dict__.get("_metrics_checked_for") == key:
            return
        out_shape = tuple(self.output_shape)
        y_true, y_pred = np.asarray(y[:1]), np.full((1, *out_shape), 0.5, self._dtype)
        for metric in self._metric_objects:
            try:
                metrics_mod.check_targets(metric, y_true, y_pred)
            except (TypeError, ValueError) as exc:
                kind = TypeError if isinstance(exc, TypeError) else ValueError
                raise kind(f"metric {metric.name!r} cannot take {name}: {exc} (checked on "
                           f"its first sample before training: targets of shape "
                           f"{y.shape[1:]} per sample, model outputs {out_shape})") from None
        self.__dict__["_metrics_checked_for"] = key

    # ---- data ---------------------------------------------------------------------------------
    def _unlisted(self, x):
        """Keras' [x] for the one input: x, an array of a batch's rank (else a list of rows)."""
        if isinstance(x, (list, tuple)) and len(x) == 1 and self.input_shape is not None and \
                getattr(x[0], "ndim", None) == len(self.input_shape) + 1 and \
                not isinstance(x[0], np.generic):
            return x[0]
        return x

    def _inputs(self, x, name="x", check_finite=None, record_columns=False):
        x = self._unlisted(x)
        self._check_columns(x, name, record_columns)
        layers = self._compute_layers
        # an unbuilt model takes samples of any shape, as Keras builds from the data: Flatten
        # and Reshape always; any other first layer (Dense, BatchNormalization, PReLU, a
        # layer of your own...) inputs of 3 or more axes (2-D ones: a 1-D x is a column)
        first = type(layers[0]) if layers else None
        any_rank = self.input_shape is None and (first in (Flatten, Reshape) or (
            getattr(x, "ndim", 2) or 2) > 2)
        xp = np
        if is_gpu_array(x):  # stays on the GPU: the backend's own array, zero-copy
            x, xp = self._gpu_array(x, name), self.backend.xp
        arr = data.as_inputs(x, self._dtype, self.input_shape, name, any_rank, xp, check_finite)
        self._ensure_built(arr.shape[1:])
        if isinstance(arr, np.ndarray) and arr.flags.writeable and \
                (arr is x or not arr.flags.owndata):
            # the caller's own memory, read only from here: a user's layer writing into its
            # input (x *= 2) changed the caller's data; numpy now names the write
            arr = arr.view()
            arr.flags.writeable = False
        return arr

    def _check_columns(self, x, name, record=False):
        """A DataFrame's column names against those of the frame the model was trained on
        (record: training on this frame; the first frame's names are kept, and training on
        another order is refused as predicting is): a frame is read by position, as Keras
        reads it, so the same columns in another order would mix the features up without a
        word. Training on an array lets the names go (the caller reads by position)."""
        if not data.is_frame(x):
            if record:  # trained on arrays now: no names to check
                self._frame_columns = None
            return
        columns = x.columns
        trained = getattr(self, "_frame_columns", None)  # (a model pickled before: None)
        same_names = trained is not None and sorted(map(str, columns)) == sorted(
            map(str, trained))
        if record and not same_names:  # (other names: another schema, taken as before)
            self._frame_columns = columns
            return
        # (a file's names: a list of text; NaN names equal too in pandas' comparison)
        same = list(columns) == trained if isinstance(trained, list) else \
            trained is None or columns.equals(trained)
        if not same:
            order = "in another order" if same_names else "with other names"
            raise ValueError(f"{name}'s columns come {order} than those the model was trained "
                             f"on: {_few(columns)} against {_few(trained)}; select them as "
                             f"trained ({name}[columns]), or pass {name}.to_numpy() to read "
                             f"them by position")

    def _gpu_array(self, a, name):
        """A GPU array as the model's backend's own array (zero-copy)."""
        return backend_array(a, self.backend if self.backend is not None else get_backend(),
                             name)

    def _host_values(self, a, name):
        """Targets and weights as host arrays: a GPU array is copied (once, small next to x)
        for the checks they need (label range, class weights); anything else as it is."""
        if is_gpu_array(a):
            b = self.backend if self.backend is not None else get_backend()
            return b.to_numpy(self._gpu_array(a, name))
        if isinstance(a, np.ma.MaskedArray):  # its masked entries would be used as they are
            raise TypeError(f"{name} is a masked array; pynn uses no masks: pass "
                            f"{name.split()[-1]}.filled(value) with the value masked entries "
                            f"should take (a zero sample weight leaves a sample out)")
        return detached(data.densified(data.frame_values(a, name)))

    def _targets(self, y, n, name="y"):
        if y is None:
            raise ValueError(f"{name} is None; pass the targets")
        if isinstance(y, (list, tuple)) and len(y) == 1 and \
                getattr(y[0], "shape", (None,))[:1] == (n,) and not isinstance(y[0], np.generic):
            y = y[0]  # Keras' [y]: the one output's targets (one sample's too: the same values)
        if isinstance(y, dict):  # Keras' {output name: targets}; a Sequential has one output
            raise TypeError(f"{name} is a dict; pynn takes the targets as one array")
        try:
            y_arr = np.asarray(self._host_values(y, name))
        except ValueError as exc:  # ragged nesting
            raise ValueError(f"{name} is not a rectangular array ({exc})") from None
        if y_arr.dtype.kind == "c":
            raise TypeError(f"{name} is complex ({y_arr.dtype}); targets must be real numbers")
        if y_arr.ndim == 0 or y_arr.shape[0] != n:
            raise ValueError(f"x and {name} have different numbers of samples: {n} and "
                             f"{y_arr.shape[0] if y_arr.ndim else 'a scalar'}")
        return self.loss.prepare_targets(y_arr, self.output_shape, self._dtype)

    # ---- forward / backward -------------------------------------------------------------------
    def _epoch_logs(self, metrics):
        """An epoch's (or evaluate's) logs of these metrics; a loss or metric beyond the
        model's float range reads as inf, as Keras' float32 values are (pynn's sums run in
        float64)."""
        return metrics_mod.EpochLogs(metrics, largest=float(np.finfo(self._dtype).max))

    def _forward(self, x, training, logits, input_shapes=None, activity=None):
        """The layers' outputs of x; input_shapes (a list): each layer's input shape is
        appended (backward checks its gradients against them); activity (a list): (index,
        output) of each layer with an activity_regularizer is appended."""
        layers = self._compute_layers
        device = self.backend.xp if self.backend.xp is not np else None
        given = x
        for i, layer in enumerate(layers):
            if input_shapes is not None:
                input_shapes.append(getattr(x, "shape", None))
            custom = is_custom(type(layer))
            if custom:
                # its own copy, to write into as it likes: x may be what the layer before
                # keeps for its backward (a sigmoid's output: a write made its gradients
                # wrong, silently) or the caller's array (predict's: read-only, a write
                # failed with numpy's words, where fit's batch copy took it)
                x = _own_copy(x)
            inputs = x
            try:
                last = logits and i == len(layers) - 1
                x = forward_of(layer, x, training=training, logits=last) if \
                    custom else layer.forward(x, training=training, logits=last)
            except Exception as exc:
                _name_the_layer(exc, layer, "forward")
                raise
            if activity is not None and getattr(layer, "activity_regularizer", None) is not None:
                activity.append((i, x))
            if is_custom(type(layer)):
                following = layers[i + 1] if i + 1 < len(layers) else None
                x = _checked_output(layer, inputs, x, following)
            if device is not None and not isinstance(x, device.ndarray):
                _not_on_device(layer, "forward", "its output", x, self.backend)
        # layers that pass their input on (Dropout at inference, Flatten, Reshape) gave the
        # caller's array, or a view of it, to predict and model(x): a new one, as Keras'
        if device is None and isinstance(x, np.ndarray) and isinstance(given, np.ndarray) \
                and np.may_share_memory(x, given):
            x = x.copy()
        return x

    def _loss_and_grad(self, out, y, sample_weight=None):
        if self._fused:
            loss, grad = self.loss.logits_value_and_grad(self.backend, out, y, sample_weight)
        else:
            loss, grad = self.loss.value_and_grad(self.backend, out, y, sample_weight)
        return _loss_number(loss, self.loss), grad

    def _loss_by_batch(self):
        """Whether the loss's value over data depends on how they are batched (a sum per
        batch, a mean over each batch's weights or kept labels): evaluation then takes
        Keras' batches (fit's, 32 for evaluate), not pynn's larger ones, for Keras' values."""
        loss = self.loss
        return loss is not None and (loss.reduction in ("sum", "mean_with_sample_weight") or
                                     getattr(loss, "ignore_class", None) is not None)

    def _sample_weights(self, sample_weight, class_weight, y):
        """The weights, checked: one float per sample, or per position of outputs with more
        axes (N, T, ...); None when unweighted."""
        n = y.shape[0]
        w = None
        if sample_weight is not None:
            w = np.asarray(self._host_values(sample_weight, "sample_weight"))
            if w.dtype.kind not in "biuf":
                raise TypeError(f"sample_weight must be numbers, got dtype {w.dtype}")
            w = w.astype(np.float64)
            # one weight per position of outputs with more axes (N, T, ..., outputs): Keras'
            # way to mask a sequence's padding
            positions = (n, *self.output_shape[:-1])
            if w.shape in ((n, 1), (*positions, 1)):
                w = w[..., 0]
            if w.shape not in ((n,), positions):
                per_position = f" or {positions}, one per position" if len(positions) > 1 \
                    else ""
                raise ValueError(f"sample_weight must have shape ({n},), one weight per "
                                 f"sample{per_position}, got {w.shape}")
            if not np.isfinite(w).all() or (w < 0).any():
                raise ValueError("sample_weight must be finite and non-negative")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise TypeError(f"class_weight must be a dict {{class: weight}}, got "
                                f"{type(class_weight).__name__}")
            if y.ndim > 2 or (y.ndim == 2 and getattr(self.loss, "sparse", False)):
                raise ValueError(f"class_weight weighs each sample by its class; these "
                                 f"targets have a class per position (shape {y.shape}), as "
                                 f"Keras refuses too: pass sample_weight of shape "
                                 f"{(n, *self.output_shape[:-1])}, one weight per position")
            if y.ndim == 2 and y.shape[1] > 1 and y.size and \
                    not np.allclose(np.asarray(y).sum(axis=1), 1):
                warnings.warn("class_weight with multi-label targets (rows that are not "
                              "one-hot) weighs each row by its argmax's class alone, as Keras "
                              "does; for per-label or per-row weights pass sample_weight",
                              UserWarning, stacklevel=_user_stacklevel())
            labels = y if y.ndim == 1 else (y.argmax(axis=1) if y.shape[1] > 1 else y[:, 0])
            labels = np.asarray(labels)
            ignored = getattr(self.loss, "ignore_class", None)
            if ignored is not None:  # (their loss weighs 0 whatever their class weight)
                labels = np.where(labels == ignored, 0, labels)
            if labels.size and (not np.isfinite(labels).all()
                                or (labels != np.rint(labels)).any()):
                raise ValueError("class_weight needs class labels as targets (integers, or "
                                 "one-hot rows); these targets are not: use sample_weight")
            table = {}
            for cls, weight in class_weight.items():
                if isinstance(cls, (float, np.floating)) and float(cls).is_integer():
                    cls = int(cls)  # (2.0: Keras takes whole numbers given as floats)
                if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)):
                    raise ValueError(f"class_weight keys must be class labels (integers), "
                                     f"got {cls!r}")
                table[int(cls)] = weight
                if not (isinstance(weight, (int, float, np.number)) and np.isfinite(weight)
                        and weight >= 0):
                    raise ValueError(f"class_weight[{cls}] must be a finite number >= 0, "
                                     f"got {weight!r}")
            # Keras' class_weight.get(label, 1.0) for any integer label (hinge's -1 and +1
            # too), looked up per distinct label (a table up to the largest label was sized by
            # it: Poisson counts of 5e10 asked for 373 GiB)
            found, inverse = np.unique(labels.astype(np.int64), return_inverse=True)
            cw = np.array([float(table.get(int(c), 1.0)) for c in found])[
                inverse.reshape(-1)]
            w = cw if w is None else w * cw
        if w is not None and w.size:
            top = float(w.max())  # they are cast to the model's dtype: 1e39 would be inf
            if top > float(np.finfo(self._dtype).max):
                what = "sample_weight" if class_weight is None else \
                    "class_weight" if sample_weight is None else "sample_weight x class_weight"
                raise ValueError(f"{what} reaches {top:.3g}, beyond "
                                 f"{np.dtype(self._dtype).name}'s range "
                                 f"(+-{np.finfo(self._dtype).max:.3g}): rescale the weights")
        return w

    def _predictions(self, out):
        """Model outputs from what _forward(logits=self._fused) returned."""
        if self._fused:
            last = self._compute_layers[-1]
            return self.backend.activation_forward(last.activation.name, out,
                                                   last.activation.param)
        return out

    def _train_step(self, xb, yb, sample_weight=None):
        loss, out = self._compute_gradients(xb, yb, sample_weight)
        opt = self.optimizer
        # (apply's Keras forms cost each step a check: a subclass's own apply() still runs)
        if type(opt).apply is optimizers_mod.Optimizer.apply:
            opt._apply(self.trainable_params)
        else:
            opt.apply(self.trainable_params)
        return loss, out

    def _activity_loss(self, activity, rows, grads=None):
        """Keras 3's activity regularization: each (index, output) of `activity` (from
        _forward) adds its layer's penalty of the output over the batch's rows to the loss;
        with grads (a dict), the penalty's gradient w.r.t. that output by index (the last
        layer's fused output is its pre-activation: the penalty is of the activation's)."""
        total, b = 0.0, self.backend
        last = len(self._compute_layers) - 1
        for i, out in activity:
            reg = self._compute_layers[i].activity_regularizer
            fused = self._fused and i == last
            y = self._predictions(out) if fused else out
            total += reg.penalty(b.xp, y) / rows
            if grads is not None:
                g = b.xp.zeros_like(y)
                reg.add_gradient(b.xp, y, g)
                g *= g.dtype.type(1 / rows)
                if fused:
                    act = self._compute_layers[i].activation
                    g = b.activation_backward(act.name, act.param, out, y, g)
                grads[i] = g
        return total

    def _compute_gradients(self, xb, yb, sample_weight=None, mask_step=None):
        """Forward, loss and backward on one batch: fills every trainable parameter's .grad.
        mask_step: the step random layers draw (default: the optimizer's)."""
        self._sync_dropout_steps(mask_step)
        input_shapes, activity, activity_grads = [], [], {}
        out = self._forward(xb, training=True, logits=self._fused, input_shapes=input_shapes,
                            activity=activity)
        loss, grad = self._loss_and_grad(out, yb, sample_weight)
        if getattr(grad, "shape", None) != out.shape:
            _wrong_gradient(grad, out.shape, f"loss {type(self.loss).__name__}: the gradient "
                                             f"of the loss")
        layers = self._compute_layers
        # Only layers above the lowest trainable one need their input gradient.
        trainable = [i for i, l in enumerate(layers) if any(p.trainable for p in l.params)]
        lowest = trainable[0] if trainable else len(layers)
        if activity:
            loss += self._activity_loss(activity, xb.shape[0], activity_grads)
        for i in range(len(layers) - 1, lowest - 1, -1):
            if i in activity_grads:  # (the penalty's share of d loss / d output)
                grad = grad + activity_grads[i]
            try:
                grad = layers[i].backward(grad, need_input_grad=i > lowest,
                                          logits=self._fused and i == len(layers) - 1)
            except Exception as exc:
                _name_the_layer(exc, layers[i], "backward")
                raise
            if grad is None and i > lowest:
                raise TypeError(f"{_layer_name(layers[i])}: backward returned None, but the "
                                f"layer below needs the gradient of its input "
                                f"(need_input_grad=True)")
            # (an input that is no array, a tuple a user layer passes on: no shape to check)
            if i > lowest and input_shapes[i] is not None and \
                    getattr(grad, "shape", None) != input_shapes[i]:
                _wrong_gradient(grad, input_shapes[i], f"{_layer_name(layers[i])}: backward's "
                                                      f"gradient of its input")
            for p in layers[i].params:
                g = p.grad
                if g is not None and getattr(g, "shape", None) != p.value.shape and \
                        p.trainable:
                    _weight_gradient_shaped(p, layers[i])
            if is_custom(type(layers[i])):
                _warn_of_missing_gradients(layers[i])
            if self.backend.xp is not np:  # a host array would fail later, somewhere else
                xp = self.backend.xp
                if i > lowest and not isinstance(grad, xp.ndarray):
                    _not_on_device(layers[i], "backward", "its input gradient", grad,
                                   self.backend)
                for p in layers[i].params:
                    if p.grad is not None and not isinstance(p.grad, xp.ndarray):
                        _not_on_device(layers[i], "backward", f"{p.name}.grad", p.grad,
                                       self.backend)
        for i in range(lowest):
            layers[i].clear_cache()
        return loss + self._regularization(add_gradients=True), out

    @property
    def _loss_kind(self):
        """The loss's class name for the metrics' readings ('accuracy', multi-label): its
        class's `name`, which a name= given to the loss object does not change."""
        return type(self.loss).name

    def _sync_dropout_steps(self, step=None):
        """Dropout masks (and Gaussian noise) follow the optimizer's step (the native engine
        uses the same), so both training paths, and a run resumed from a file, draw the same
        masks; or `step`'s."""
        for layer in self.layers:
            if isinstance(layer, RandomLayer):
                layer.step = self.optimizer.training_steps if step is None else step

    def _regularization(self, add_gradients=False):
        """The weight penalties (kernel/bias regularizers) of the trainable weights, added to
        the loss as Keras 3 does (a frozen weight's penalty is left out: it cannot change);
        with add_gradients their derivatives join the parameters' .grad."""
        total = 0.0
        xp = self.backend.xp
        for layer in self.layers:
            for p, reg in layer.regularized():
                if not p.trainable:
                    continue
                total += reg.penalty(xp, p.value)
                if add_gradients and p.grad is not None:
                    reg.add_gradient(xp, p.value, p.grad)
        return total

    @property
    def losses(self):
        """The weight penalties the loss adds, as numbers, layer by layer (Keras'
        model.losses, less its activity penalties, which are a batch's: fit's and
        evaluate's loss adds those too)."""
        return [penalty for layer in self.layers for penalty in layer.losses]

    @property
    def params(self):
        """Every weight as a Parameter, in get_weights order (same as model.weights)."""
        self._layers_tracked()
        return [p for l in self.layers for p in l.params]

    @property
    def trainable_params(self):
        """The weights fit updates (trainable layers, weights not frozen)."""
        return [p for p in self.params if p.trainable]

    def _metric_arrays(self, y_true, out, w=None):
        """(targets, predictions, sample weights) as numpy arrays for the metrics (the
        weights None unless a weighted metric takes them); Nones without any."""
        if not self._metric_objects:
            return None, None, None
        b = self.backend
        weighted = w is not None and any(isinstance(m, metrics_mod._Weighted)
                                         for m in self._metric_objects)
        return (b.to_numpy(y_true), b.to_numpy(self._predictions(out)),
                b.to_numpy(w) if weighted else None)

    # ---- training -----------------------------------------------------------------------------
    @putting_weights_back_on_error
    @_unbuilt_again_if_refused
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, engine="auto"):
        """Train for `epochs` epochs; returns a History whose .history holds per-epoch logs.

        x: (samples, features) array-like (numpy, a pandas DataFrame, a PyTorch CPU tensor
        taken zero-copy, lists; any numeric dtype, converted once); y: targets as the loss
        takes them. A DataFrame is read by position, as Keras reads it: the model keeps its
        column names (in memory, not in files), and evaluate, predict and validation refuse
        a frame whose columns differ or come in another order. Or x gives the data batch by
        batch (y, batch_size and sample_weight then come with it): a generator, an iterable
        such as a PyTorch DataLoader, or a pynn.batch_sources.PyDataset (Keras'
        PyDataset/Sequence), each batch (x, y) or
        (x, y, sample_weight); validation_data may be one too. steps_per_epoch: the
        batches an epoch takes (default: a pass over the data); as Keras 3, an epoch
        continues the pass the last one began and ends early where that pass ends (a run
        resumed with initial_epoch picks the pass up where an uninterrupted run would be), and
        with arrays and no batch_size the steps share the samples out (ceil(N / steps)
        each). validation_steps: the validation batches each time (of validation_batch_size,
        else batch_size, else sharing the samples out). batch_size: default 32. verbose:
        'auto' or 1 a progress bar on a terminal or in Jupyter (else one line per epoch), 2
        one line per epoch, 0 nothing.
        shuffle: reorder the samples (a PyDataset's batches) every pass (seeded by the
        model's shuffle seed and the step, so resumed runs continue the same order); 'batch'
        (Keras') keeps the batches in order and shuffles the samples within each.
        initial_epoch: the epoch to start counting from (resuming). callbacks: a Callback or
        a list of them.
        Validation (validation_split: the last fraction of x, as Keras; or validation_data
        (x, y) or (x, y, sample_weight)) runs after every validation_freq-th epoch (or after
        the epochs a list gives, counted from 1, as Keras 3), in batches of
        validation_batch_size (default: as fast as memory allows; batch_size, as Keras',
        where the loss's value depends on the batches: see evaluate).

        engine: 'auto' runs whole steps in C++ when the model allows it (see pynn.engine),
        'native' insists (ValueError naming what prevents it), 'layers' forces the Python
        layer-by-layer path (the reference the native engine is tested against).
        sample_weight (one non-negative number per sample, or per position of (N, T, ...)
        outputs) and class_weight ({class: weight}) scale each sample's loss, reduced as the
        loss's reduction says (Keras' default: the weighted sum over the batch size), on both
        engines (per position: layer by layer). compile's weighted_metrics take these
        weights too (its metrics do not).
        """
        self._check_compiled()
        shuffle = _check_shuffle(shuffle)
        callbacks = _callback_list(callbacks)
        if is_batch_source(x):
            return self._fit_source(x, y, batch_size, epochs, verbose, callbacks,
                                    validation_split, validation_data, shuffle, initial_epoch,
                                    engine, sample_weight, class_weight, validation_freq,
                                    validation_batch_size, steps_per_epoch, validation_steps)
        steps_per_epoch = check_steps(steps_per_epoch, "steps_per_epoch")
        asked_batch = batch_size
        batch_size = data.check_batch_size(batch_size, None)  # its default once n is known
        if is_batch_source(validation_data):  # read validation_steps batches at a time
            val_source = self._validation_source(validation_data, validation_steps)
        else:  # arrays: validation_steps bounds the rows read (below)
            val_source = None
            validation_steps = check_steps(validation_steps, "validation_steps")
        _check_epochs(epochs, initial_epoch, validation_freq)
        val_batch = (None if validation_batch_size is None
                     else data.check_batch_size(validation_batch_size, None))
        x = self._inputs(x, record_columns=True)
        self._prepare_compiled(training=True)
        y = self._targets(y, x.shape[0])
        w = self._sample_weights(sample_weight, class_weight, y)
        self._check_metrics_take(y)
        try:  # numbers, numpy scalars and 0-d arrays; not strings
            split = (None if isinstance(validation_split, (str, bytes))
                     else float(validation_split))
        except (TypeError, ValueError):
            split = None
        if split is None or not 0 <= split < 1:
            raise ValueError(f"validation_split must be a number in [0, 1), got "
                             f"{validation_split!r}")
        # Keras computes with the value as given: np.float32(0.2) leaves floor(100 * (1 -
        # 0.2 in float32)) = 80 rows, where its float64 value, 0.20000000298, left 79
        given = np.asarray(validation_split)[()] if isinstance(validation_split, np.ndarray) \
            else validation_split
        # (float16's: rows beyond its range, 65504, would overflow: counted as a Python float)
        validation_split = given if isinstance(given, np.float32) else split
        w_val = None  # the validation samples' weights (their loss is weighted, as in Keras)
        if val_source is not None:
            x_val = y_val = None
        elif validation_data is not None:
            x_val, y_val, w_val = self._validation_arrays(validation_data)
        elif validation_split:
            # The last fraction, before shuffling, counted as Keras 3 does (the first
            # floor(N (1 - split)) rows train: int(N split) took one fewer, 28 of 100 at 0.29)
            n_val = x.shape[0] - math.floor(x.shape[0] * (1.0 - validation_split))
            if n_val == 0 or n_val == x.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves "
                                 f"{x.shape[0] - n_val} training and {n_val} validation samples")
            if sample_weight is not None:  # class_weight is the training data's only (Keras)
                w_val = self._sample_weights(sample_weight, None, y)[-n_val:]
            x, x_val = x[:-n_val], x[-n_val:]
            y, y_val = y[:-n_val], y[-n_val:]
            w = None if w is None else w[:-n_val]
        else:
            x_val = y_val = None
        if validation_steps is not None and x_val is None and val_source is None:
            raise ValueError("validation_steps needs validation data (validation_data or "
                             "validation_split)")
        elif validation_steps is not None and val_source is None:
            # Keras 3: that many batches of validation_batch_size, else of batch_size, else
            # the steps share the validation samples out
            vb, rows = _rows_for_steps(x_val.shape[0], validation_steps,
                                       validation_batch_size or asked_batch,
                                       "validation_steps", "validation samples")
            val_batch = vb if val_batch is None else val_batch
            x_val, y_val = x_val[:rows], y_val[:rows]
            w_val = None if w_val is None else w_val[:rows]
        n = x.shape[0]
        if batch_size is None:  # Keras 3: steps_per_epoch shares the samples out
            batch_size = 32 if steps_per_epoch is None else -(-n // steps_per_epoch)
        if val_batch is None:  # validation's default follows the batch size as given; a
            # callback's test batch hooks see fit's batches, as in Keras (else larger ones)
            val_batch = batch_size if _test_batch_hooks(callbacks) or \
                self._loss_by_batch() else max(batch_size, _PREDICT_BATCH)
        batch_size = min(batch_size, n)  # one batch either way; row offsets then fit int64
        passes = -(-n // batch_size)  # batches in a pass over x
        if steps_per_epoch is not None and steps_per_epoch > passes:
            raise ValueError(f"steps_per_epoch={steps_per_epoch} is more than the {passes} "
                             f"batches of {batch_size} in the {n} training samples")
        steps = passes if steps_per_epoch is None else steps_per_epoch  # an epoch's batches
        b = self.backend
        xd, yd = b.asarray(x, self._dtype), b.asarray(y, y.dtype)
        wd = None if w is None else b.asarray(w, self._dtype)
        validation = None if x_val is None and val_source is None else \
            _Validation(val_source, x_val, y_val, w_val, val_batch, validation_freq)
        # buffers for the rows used
        native = self._native_engine(engine, batch_size, weighted=wd is not None)
        user_callbacks, history = _with_history(callbacks)
        cbs = CallbackList(user_callbacks, model=self, epochs=epochs, steps=steps,
                           verbose=verbose, engine="native" if native else "layers",
                           validation=validation is not None)
        # The native engine runs chunks of batches between returns to Python; per-batch
        # callbacks get exactly one batch per chunk, else the bar advances ~20 times an epoch.
        # A callback that only reads the batches' logs (TerminateOnNaN) takes them after the
        # chunk, each with the logs it would have had. With neither a bar nor such callbacks
        # a chunk of cheap steps has at least 16: a small epoch (32 batches of 32 rows) paid
        # the return to Python (~10 us) after each batch, as much as its batches cost; steps
        # of more than ~50 MFLOP keep the ~20 chunks an epoch (a Ctrl-C waits for a chunk).
        hooked = [cb for cb in user_callbacks if _overrides_batch_hooks(cb)]
        batch_hooks = bool(hooked)
        exact_batches = any(not _reads_batch_logs_only(cb) for cb in hooked)
        # TerminateOnNaN stops after the batch whose loss went bad, as the layers do: the
        # CPU engine stops its chunk there, the cuda one runs a batch a chunk for it.
        nan_stop = any(isinstance(cb, TerminateOnNaN) for cb in hooked)
        if nan_stop and native is not None and not native.stops_on_nonfinite_loss:
            exact_batches = True
        progress = EpochProgress(verbose, epochs, steps)  # checks verbose
        chunk = 1 if exact_batches else max(1, min(256, steps // 20))
        if not batch_hooks and progress.mode != "bar" and native is not None and \
                6 * batch_size * sum(p.value.size for p in native.params) < 5e7:
            chunk = max(chunk, min(16, steps))
        if native is None:
            self._say_why_layer_by_layer(self.engine_reason, verbose, engine)
        metric_names = [name for name, _ in self._metrics]
        self.stop_training = False
        self.history = history
        train_logs = {}
        if shuffle and self.shuffle_seed is None:
            self.shuffle_seed = int(config.rng().integers(0, 2**63 - 1))
        resume = self._begin_training(cbs)
        # With steps_per_epoch an epoch takes the next batches of the pass over x that earlier
        # epochs began, and ends early where the pass ends (Keras 3). Epochs count from 0: a
        # run resumed at an epoch (initial_epoch, BackupAndRestore) picks its pass up where
        # an uninterrupted run would be (Keras starts a new pass)
        initial_epoch = initial_epoch if resume is None else resume
        taken = 0  # batches of the current pass the earlier epochs took
        for _ in range(initial_epoch if steps < passes else 0):
            taken = (taken + min(steps, passes - taken)) % passes
        order = None
        with DeferredInterrupt() as interrupt, self._claimed_metrics() as claimed, \
                self._fit_running():
            # copies when another thread's evaluate accumulates into the compiled objects
            epoch_logs = self._epoch_logs(self._metric_objects if claimed is None
                                               else claimed)
            try:
                for epoch in range(initial_epoch, epochs):
                    if interrupt.requested:  # during the last epoch's end: begin no other
                        break
                    cbs.call("on_epoch_begin", epoch, {})
                    progress.epoch_begin(epoch)
                    if taken == 0 or order is None:  # keyed by the step the pass began at
                        order = epoch_order(n, shuffle, self.shuffle_seed,
                                            max(0, self.optimizer.training_steps - taken),
                                            batch_size)
                    epoch_logs.reset()
                    step = 0
                    epoch_steps = min(steps, passes - taken)
                    # As Keras: stop_training is seen after a batch, so every logged epoch
                    # trained at least one (a flag set at epoch begin still runs one batch).
                    while step < epoch_steps and not interrupt.requested and \
                            not (step > 0 and self.stop_training):
                        if exact_batches:
                            cbs.call("on_train_batch_begin", step, {})
                        # Callbacks may have frozen a layer (say) since the last chunk: only
                        # epoch hooks run between chunks unless batch hooks were given.
                        if native is not None and (step == 0 or exact_batches) and \
                                not native.matches(self):
                            native = self._native_engine(engine, batch_size,
                                                         weighted=wd is not None)
                        if native is not None:
                            # A stop asked for before the epoch's first batch: that one only.
                            last = min(step + (1 if self.stop_training else chunk),
                                       epoch_steps)
                            if not batch_hooks and not progress.per_batch and \
                                    not native.needs_outputs:
                                # Nothing looks at single batches: the chunk's logs join
                                # the epoch's at once (issue 4: no Python work per batch).
                                self._native_chunk_at_once(native, xd, yd, wd, order,
                                                           taken + step, taken + last,
                                                           batch_size, metric_names,
                                                           epoch_logs)
                                step = last
                                continue
                            batches = self._native_chunk(native, xd, yd, wd, order,
                                                         taken + step, taken + last,
                                                         batch_size, metric_names, epoch_logs,
                                                         nan_stop and
                                                         native.stops_on_nonfinite_loss)
                        else:
                            last = step + 1
                            batches = self._layer_batch(xd, yd, wd, order, taken + step,
                                                        batch_size, epoch_logs)
                        for s, batch_logs in batches:  # each batch's logs added as it comes
                            s -= taken  # the batch's number in the epoch
                            last = s + 1  # (a chunk stopped at a NaN loss ran fewer)
                            progress.batch_end(s, epoch_logs)
                            if batch_hooks:  # else no callback does anything per batch
                                if not exact_batches:
                                    cbs.call("on_train_batch_begin", s, {})
                                # As Keras: the epoch's means so far, not the batch's own.
                                cbs.call("on_train_batch_end", s, epoch_logs.so_far(batch_logs))
                        step = last
                    taken = (taken + step) % passes
                    if interrupt.requested:
                        break  # the unfinished epoch is not logged
                    train_logs = self._end_epoch(epoch, epoch_logs, validation, claimed, cbs,
                                                 progress, step)
                    if self.stop_training:
                        break
            finally:
                progress.close()
        self._end_training(cbs, train_logs, interrupt, history, epochs)
        return history

    def _build_from(self, source):
        """An unbuilt model is built by the source's first batch (as Keras); returns the
        epoch's batches with that one first, or None when the model was built."""
        if self.built:
            return None
        batches = source.batches()
        first = next(batches, None)
        if first is None:
            raise ValueError(f"{source.what}: the data gave no batches")
        self._inputs(first[0])
        return itertools.chain([first], batches)

    def _validation_source(self, validation_data, validation_steps):
        """A BatchSource when validation_data gives batches, else None (validation_steps
        only goes with one)."""
        if is_batch_source(validation_data):
            return BatchSource(validation_data, validation_steps, "validation_steps",
                               "validation", restart=True)
        if validation_steps is not None:
            raise ValueError("validation_steps is for validation_data given batch by batch (a "
                             "generator, an iterable, a PyDataset)")
        return None

    def _validation_arrays(self, validation_data):
        """(x, y, sample weights or None) of validation_data given as arrays, checked."""
        _check_validation_tuple(validation_data)
        x_val = self._inputs(validation_data[0], "validation x")
        try:  # (the loss's and the weights' checks name no data set)
            y_val = self._targets(validation_data[1], x_val.shape[0], "validation y")
            w_val = None if len(validation_data) < 3 else \
                self._sample_weights(validation_data[2], None, y_val)
        except (TypeError, ValueError) as exc:
            if str(exc).startswith("validation"):
                raise
            raise type(exc)(f"validation_data: {exc}") from None
        return x_val, y_val, w_val

    def _begin_training(self, cbs):
        """on_train_begin; returns the epoch a BackupAndRestore restored (fit resumes
        after it), or None."""
        self.__dict__.pop("_resume_epoch", None)  # (one a failed fit left)
        cbs.call("on_train_begin", {})
        return self.__dict__.pop("_resume_epoch", None)

    def _end_epoch(self, epoch, epoch_logs, validation, metrics, cbs, progress, steps_done):
        """The epoch's logs, with validation's val_* when due (an evaluate, callbacks' test
        hooks included, as Keras), to the progress line (with the steps_done batches the
        epoch ran) and on_epoch_end; returns them."""
        logs = dict(epoch_logs)
        if validation is not None and _validates(validation.freq, epoch):
            cbs.call("on_test_begin", {})
            self.stop_evaluating = False
            if validation.source is not None:
                val = self._evaluate_source(validation.source, metrics, cbs)
            else:
                val = self._evaluate_arrays(validation.x, validation.y, validation.batch_size,
                                            validation.w, metrics, cbs=cbs)
            cbs.call("on_test_end", dict(val))
            logs.update({f"val_{k}": v for k, v in val.items()})
        progress.end_bar()
        cbs.call("on_epoch_end", epoch, logs)
        # after the callbacks, as Keras: what they log (learning_rate) shows
        progress.epoch_end(epoch, logs, steps_done)
        return logs

    def _end_training(self, cbs, train_logs, interrupt, history, epochs):
        """With use_ema the trainable weights take their moving averages (Keras 3's
        finalize_variable_values: for epochs > 0, also when a resumed fit had no epoch left,
        unless a Ctrl-C stopped it); on_train_end with the last epoch's logs (as Keras), then
        a Ctrl-C's KeyboardInterrupt."""
        written = epochs > 0 and not interrupt.requested and self.optimizer.use_ema
        if written:
            self.optimizer.finalize_variable_values(
                [p for layer in self.layers for p in layer.params if not p.statistic])
        self.__dict__["_averages_written"] = written  # (SwapEMAWeights reads it)
        try:
            cbs.call("on_train_end", dict(train_logs))
        finally:
            self.__dict__.pop("_averages_written", None)
        if interrupt.requested:
            raise KeyboardInterrupt(
                f"training interrupted after {self.optimizer.training_steps} steps: the model "
                f"holds the weights of the last completed step unless an on_train_end "
                f"callback put others back (EarlyStopping(restore_best_weights=True) restores "
                f"its best epoch's), model.history the {len(history.epoch)} completed "
                f"epoch(s)")

    def _fit_source(self, source, y, batch_size, epochs, verbose, callbacks, validation_split,
                    validation_data, shuffle, initial_epoch, engine, sample_weight,
                    class_weight, validation_freq, validation_batch_size, steps_per_epoch,
                    validation_steps):
        """fit on data given batch by batch (see fit and pynn.batch_sources): each batch is
        checked and converted as it comes, then trained as fit trains one of its own."""
        _no_arrays_with_source("fit", source, y=y, sample_weight=sample_weight)
        if batch_size is not None:  # Keras ignores it too
            warnings.warn(f"fit: batch_size={batch_size!r} is ignored: the batches of "
                          f"{type(source).__name__} have their own size", UserWarning,
                          stacklevel=_user_stacklevel())
        if validation_split:
            raise ValueError("fit: validation_split needs arrays (it takes their last "
                             "fraction); give validation_data for data given batch by batch")
        _check_epochs(epochs, initial_epoch, validation_freq)
        if engine not in ("auto", "native", "layers"):
            raise ValueError(f"engine must be 'auto', 'native' or 'layers', got {engine!r}")
        if shuffle and self.shuffle_seed is None:
            self.shuffle_seed = int(config.rng().integers(0, 2**63 - 1))

        def order(_, batches):  # a PyDataset's batches in a new order each pass, as Keras
            # shuffles them (for 'batch' too: its batches have their own samples). Not
            # `train.length`: a closure over train, held by train, made a reference cycle
            # that kept each fit's dataset alive until Python's full collection
            return epoch_order(batches, bool(shuffle), self.shuffle_seed,
                               self.optimizer.training_steps)

        # (a generator's or an iterable's order is its own, as in Keras)
        train = BatchSource(source, steps_per_epoch, "steps_per_epoch", "fit", order=order)
        val_source = None
        if is_batch_source(validation_data) or validation_data is None:
            val_source = self._validation_source(validation_data, validation_steps)
        else:  # arrays: validation_steps bounds the rows read, as in fit on arrays
            validation_steps = check_steps(validation_steps, "validation_steps")
            _check_validation_tuple(validation_data)  # (read once the model is built)
        val_batch = data.check_batch_size(validation_batch_size, 32 if _test_batch_hooks(
            callbacks) or self._loss_by_batch() else _PREDICT_BATCH)
        first = None
        if initial_epoch < epochs and not self.built:
            train.epoch_begin()  # the first epoch's, before its first batch builds the model
            first = self._build_from(train)
        reason = None
        if self.built:  # else no epoch runs
            self._prepare_compiled(training=True)
            reason = "engine='layers' was asked for" if engine == "layers" else \
                engine_mod.unsupported_reason(self, weighted=class_weight is not None)
            if reason is not None and engine == "native":
                raise ValueError(f"the native engine cannot train this model: {reason}")
            self._say_why_layer_by_layer(reason, verbose, engine)
        validation = None
        if val_source is not None:
            validation = _Validation(val_source, None, None, None, val_batch, validation_freq)
        elif validation_data is not None:  # checked once, before training
            x_val, y_val, w_val = self._validation_arrays(validation_data)
            if validation_steps is not None:  # (Keras 3: batches of validation_batch_size,
                # else the steps share the samples out)
                size, rows = _rows_for_steps(x_val.shape[0], validation_steps,
                                             validation_batch_size, "validation_steps",
                                             "validation samples")
                val_batch = size if validation_batch_size is None else val_batch
                x_val, y_val = x_val[:rows], y_val[:rows]
                w_val = None if w_val is None else w_val[:rows]
            validation = _Validation(None, x_val, y_val, w_val, val_batch, validation_freq)
        user_callbacks, history = _with_history(callbacks)
        cbs = CallbackList(user_callbacks, model=self, epochs=epochs, steps=train.epoch_steps,
                           verbose=verbose, engine="native" if reason is None else "layers",
                           validation=validation is not None)
        batch_hooks = any(_overrides_batch_hooks(cb) for cb in user_callbacks)
        progress = EpochProgress(verbose, epochs, train.epoch_steps)
        trainer = _SourceTrainer(self, engine, class_weight, verbose)
        trainer.engine_reason = reason
        self.stop_training = False
        self.history = history
        train_logs = {}
        resume = self._begin_training(cbs)
        if resume is not None:  # a PyDataset's pass begun to build the model is begun again
            # in the restored order
            initial_epoch = resume
            if first is not None and train.indexed:
                first, train._stream = None, None
        with DeferredInterrupt() as interrupt, self._claimed_metrics() as claimed, \
                self._fit_running():
            epoch_logs = self._epoch_logs(self._metric_objects if claimed is None
                                               else claimed)
            try:
                for epoch in range(initial_epoch, epochs):
                    if interrupt.requested:
                        break
                    # before the epoch's data is read, as Keras: a callback may set what it
                    # gives (a DataLoader sampler's set_epoch, a curriculum's level); the
                    # dataset's own on_epoch_begin after the callbacks'
                    cbs.call("on_epoch_begin", epoch, {})
                    if first is None:
                        train.epoch_begin()
                    batches, first = first or train.batches(), None
                    head = next(batches, None)
                    if head is None:
                        if epoch == initial_epoch:
                            raise ValueError("fit: the data gave no batches")
                        warnings.warn(f"fit: the data ran out after {epoch - initial_epoch} "
                                      f"epoch(s), and training stops there: a "
                                      f"{type(source).__name__} is read once; give "
                                      f"steps_per_epoch to share it out over the epochs, or "
                                      f"an iterable read again each epoch", UserWarning,
                                      stacklevel=_user_stacklevel())
                        break
                    progress.epoch_begin(epoch)
                    epoch_logs.reset()
                    step = 0
                    for xb, yb, wb in itertools.chain([head], batches):
                        if batch_hooks:
                            cbs.call("on_train_batch_begin", step, {})
                        batch_logs = trainer.train(xb, yb, wb, epoch_logs)
                        progress.batch_end(step, epoch_logs)
                        if batch_hooks:
                            cbs.call("on_train_batch_end", step, epoch_logs.so_far(batch_logs))
                        step += 1
                        if interrupt.requested or self.stop_training:
                            break
                    if interrupt.requested:
                        break
                    short = train.exhausted and train.steps is not None and step < train.steps
                    if short:
                        warnings.warn(f"fit: the data ran out after {step} of this epoch's "
                                      f"{train.steps} batches (steps_per_epoch); training "
                                      f"stops after this epoch", UserWarning,
                                      stacklevel=_user_stacklevel())
                    train.epoch_end()
                    train_logs = self._end_epoch(epoch, epoch_logs, validation, claimed, cbs,
                                                 progress, step)
                    if self.stop_training or short:
                        break
            finally:
                progress.close()
        self.engine_reason = trainer.engine_reason
        self._end_training(cbs, train_logs, interrupt, history, epochs)
        return history

    @staticmethod
    def _native_chunk(native, xd, yd, wd, order, step, last, batch_size, metric_names,
                      epoch_logs, stop_on_nonfinite_loss=False):
        """Batches [step, last) of the epoch in C++ (up to the first NaN or infinite loss
        with stop_on_nonfinite_loss), then each added to epoch_logs as the caller takes it:
        yields (batch, its logs), so epoch_logs holds the epoch so far. Metrics the engine
        does not compute are updated here from the batches' outputs."""
        n = xd.shape[0]
        r0, r1 = step * batch_size, min(n, last * batch_size)
        outputs = (np.empty((r1 - r0, native.out_dim), dtype=np.float32)
                   if native.needs_outputs else None)
        rows = native.train(xd, yd, order, step, last, batch_size, wd, outputs,
                            stop_on_nonfinite_loss)
        for s, r in zip(range(step, last), rows):
            a, e = s * batch_size - r0, min(n, (s + 1) * batch_size) - r0
            if outputs is None:
                logs = {"loss": float(r[0]), **dict(zip(metric_names, map(float, r[1:])))}
                epoch_logs.add_means(e - a, logs)
            else:
                rows_taken = order[r0 + a:r0 + e]
                logs = epoch_logs.update(e - a, float(r[0]), yd[rows_taken], outputs[a:e],
                                         None if wd is None else wd[rows_taken])
            yield s, logs

    @staticmethod
    def _native_chunk_at_once(native, xd, yd, wd, order, step, last, batch_size, metric_names,
                              epoch_logs):
        """Batches [step, last) of the epoch in C++, their loss and metrics added to
        epoch_logs together (the native engine computed them all; no outputs needed)."""
        rows = native.train(xd, yd, order, step, last, batch_size, wd, None)
        n = xd.shape[0]
        first = np.arange(step, last, dtype=np.int64) * batch_size
        sizes = np.minimum(n, first + batch_size) - first
        epoch_logs.add_means_of_batches(sizes, ["loss", *metric_names],
                                        np.asarray(rows, dtype=np.float64))

    def _layer_batch(self, xd, yd, wd, order, step, batch_size, epoch_logs):
        """Batch `step` of the epoch through the layers: [(step, its logs)]."""
        b = self.backend
        idx = order[step * batch_size:(step + 1) * batch_size]
        xb, yb = b.take_rows(xd, idx), b.take_rows(yd, idx)
        wb = None if wd is None else b.take_rows(wd, idx)
        loss, out = self._train_step(xb, yb, wb)
        return [(step, epoch_logs.update(len(idx), loss, *self._metric_arrays(yb, out, wb)))]

    def _say_why_layer_by_layer(self, reason, verbose, engine):
        """fit on a backend chosen for speed (cpu, cuda) says why the model trains layer by
        layer (reason not None), unless quiet or engine='layers' was asked for."""
        if reason is not None and verbose and engine == "auto" and \
                self.backend.name in ("cpu", "cuda"):
            print(f"Training layer by layer, not in the native engine: {reason}", flush=True)

    def _native_engine(self, engine, batch_size, weighted=False):
        """A training engine for this fit (the backend's: engine.training_engine), None for
        the layer path; raises if 'native' can't run. weighted: the batches carry sample
        weights."""
        if engine not in ("auto", "native", "layers"):
            raise ValueError(f"engine must be 'auto', 'native' or 'layers', got {engine!r}")
        if engine == "layers":
            self.engine_reason = "engine='layers' was asked for"
            return None
        reason = engine_mod.unsupported_reason(self, weighted=weighted)
        self.engine_reason = reason
        if reason is not None:
            if engine == "native":
                raise ValueError(f"the native engine cannot train this model: {reason}")
            return None
        return engine_mod.training_engine(self, batch_size)

    @_unbuilt_again_if_refused
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; returns the loss (and metrics) before the step.
        The step runs in the native engine when the model allows it (as fit's; the engine is
        kept for the next call while nothing it was built from changes), else through the
        layers: a custom training loop pays no layer-by-layer Python per step."""
        self._check_compiled()
        x = self._inputs(x, record_columns=True)
        self._prepare_compiled(training=True)
        y = self._targets(y, x.shape[0])
        w = self._sample_weights(sample_weight, class_weight, y)
        trainer = self.__dict__.get("_batch_trainer")
        if trainer is None or trainer.model is not self:  # (a copy.copy shares the dict)
            trainer = self._batch_trainer = _SourceTrainer(self, "auto", None)
            _MODELS_WITH_PROCESS_STATE.add(self)  # (a forked child drops it: its engine's lock)
        lock = self._training_lock("train_on_batch")
        try:
            with StepGuard():
                epoch_logs = self._epoch_logs(self._metric_objects)
                logs = trainer.step(x, y, w, epoch_logs)
        finally:
            lock.release()
        # the batch's own values, in the float range as the epoch's logs (inf beyond)
        logs = {k: epoch_logs.in_range(v) if isinstance(v, float) else v
                for k, v in logs.items()}
        self.engine_reason = trainer.engine_reason
        if trainer.capacity > _KEPT_BATCH_ROWS:  # its buffers are not held for later calls
            self._batch_trainer = None
        return self._format_logs(logs, return_dict)

    @_unbuilt_again_if_refused
    def compute_gradients(self, x, y, sample_weight=None, class_weight=None):
        """One batch's loss and its gradients, for a training loop of your own (what Keras
        code gets from a GradientTape): (loss, grads), the loss as fit computes it (weight
        and activity penalties included), grads one array per model.trainable_weights (its
        shape, on the model's backend; None where a layer of yours gave none). The batch
        runs as in training (dropout, batch statistics; BatchNormalization's moving
        statistics move, as Keras' model(x, training=True)); the weights and the optimizer
        stay as they are. Then optimizer.apply_gradients(zip(grads, model.trainable_weights))
        takes the step, after whatever you do to the gradients (clip, average them across
        workers, ...). Layer by layer: train_on_batch is the fast step."""
        self._check_compiled()
        x = self._inputs(x, record_columns=True)
        self._prepare_compiled(training=True)
        y = self._targets(y, x.shape[0])
        w = self._sample_weights(sample_weight, class_weight, y)
        b = self.backend
        xb, yb = b.asarray(x, self._dtype), b.asarray(y, y.dtype)
        wb = None if w is None else b.asarray(w, self._dtype)
        lock = self._training_lock("compute_gradients")
        try:
            # Random layers draw afresh each call, as Keras': the optimizer's step for the
            # first call at that step (a loop of compute_gradients + apply_gradients draws
            # train_on_batch's masks), then steps of their own (micro-batches before one
            # update, or updates by another optimizer than the model's)
            steps = self.optimizer.training_steps
            last_step, extra = self.__dict__.get("_gradient_draws", (None, 0))
            mask_step = None if last_step != steps else _OWN_MASK_STEPS + extra
            self.__dict__["_gradient_draws"] = (steps, extra + (last_step == steps))
            with StepGuard():
                loss, _ = self._compute_gradients(xb, yb, wb, mask_step)
                weights = self.trainable_weights
                grads = [None if p.grad is None else p.grad.copy() for p in weights]
        finally:
            lock.release()
        return _loss_number(loss, self.loss), grads

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """Loss (and metrics) of one batch, no update (Keras' test_on_batch)."""
        if is_batch_source(x):
            raise TypeError(f"test_on_batch: x is one batch of samples (an array), not "
                            f"{type(x).__name__} giving batches: evaluate takes those")
        x = self._unlisted(x)
        x = np.asarray(x) if not hasattr(x, "shape") else x
        return self.evaluate(x, y, batch_size=max(1, _num_rows(x)),
                             sample_weight=sample_weight, return_dict=return_dict)

    def predict_on_batch(self, x):
        """Outputs for one batch (Keras' predict_on_batch): predict without batching."""
        return self.predict(x)

    def partial_fit(self, x, y, batch_size=None, shuffle=True):
        """One pass over a chunk of a stream (online learning): mini-batch steps that continue
        the optimizer's state and step count, like scikit-learn's partial_fit. Returns self."""
        self.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=shuffle)
        return self

    # ---- inference ----------------------------------------------------------------------------
    def _evaluate_arrays(self, x, y, batch_size, w=None, metrics=None, logs=None, cbs=None):
        """The loss and metrics over x's batches, added to `logs` (an EpochLogs over pieces
        of the data) or to a new one; returns them as a dict. cbs: a CallbackList whose test
        batch hooks run around each batch (when a callback defines them)."""
        if logs is None:  # metrics over the whole set
            logs = self._epoch_logs(self._metric_objects if metrics is None else metrics)
        hooks = cbs is not None and cbs.overrides("on_test_batch_begin", "on_test_batch_end")
        for batch, start in enumerate(range(0, x.shape[0], batch_size)):
            self._evaluate_batch(x[start:start + batch_size], y[start:start + batch_size],
                                 None if w is None else w[start:start + batch_size], logs,
                                 batch, cbs if hooks else None)
            if hooks and getattr(self, "stop_evaluating", False):  # set by a test batch hook
                break
        return dict(logs)

    def _evaluate_batch(self, x, y, w, logs, batch, cbs=None):
        """One batch's loss and metrics added to logs, with the test batch hooks of cbs."""
        b = self.backend
        if cbs is not None:
            cbs.call("on_test_batch_begin", batch, {})
        xb, yb = b.asarray(x, self._dtype), b.asarray(y, y.dtype)
        wb = None if w is None else b.asarray(w, self._dtype)
        activity = []
        out = self._forward(xb, training=False, logits=self._fused, activity=activity)
        loss, _ = self._loss_and_grad(out, yb, wb)
        loss += self._regularization() + self._activity_loss(activity, xb.shape[0])
        batch_logs = logs.update(xb.shape[0], loss, *self._metric_arrays(yb, out, wb))
        if cbs is not None:  # as Keras: the means so far (AUC's of the batch: no sort per batch)
            cbs.call("on_test_batch_end", batch, logs.so_far(batch_logs))

    def _evaluate_source(self, source, metrics=None, cbs=None, batches=None, begun=False):
        """The loss and metrics over a BatchSource's batches (one epoch of it), as a dict;
        begun: the caller called the source's epoch_begin (Keras calls a PyDataset's
        on_epoch_begin before evaluating and predicting too)."""
        if not begun:
            source.epoch_begin()
        logs = self._epoch_logs(self._metric_objects if metrics is None else metrics)
        hooks = cbs is not None and cbs.overrides("on_test_batch_begin", "on_test_batch_end")
        count, stopped = 0, False
        for count, (xb, yb, wb) in enumerate(batches or source.batches(), 1):
            x, y, w = self._source_batch(xb, yb, wb, None, source.what)
            self._evaluate_batch(x, y, w, logs, count - 1, cbs if hooks else None)
            stopped = hooks and getattr(self, "stop_evaluating", False)
            if stopped:
                break
        source.epoch_end()
        if count == 0:
            raise ValueError(f"{source.what}: the data gave no batches")
        _warn_of_shortfall(None if stopped else source)
        return dict(logs)

    def _source_batch(self, xb, yb, wb, class_weight, what):
        """One batch from a batch source, checked and converted as fit's arrays are:
        (x, y, sample weights or None), y as the loss prepares it (a loss's label smoothing
        is its own: the metrics read the labels as given)."""
        if yb is None:
            raise ValueError(f"{what}: a batch has no targets; give (x, y) or (x, y, "
                             f"sample_weight)")
        validation = what == "validation"  # (its errors say so, as validation arrays')
        x = self._inputs(xb, "validation x" if validation else "x",
                         record_columns=what == "fit")  # (a first frame's names are kept)
        try:
            y = self._targets(yb, x.shape[0], "validation y" if validation else "y")
            w = self._sample_weights(wb, class_weight, y)
        except (TypeError, ValueError) as exc:
            if not validation or str(exc).startswith("validation"):
                raise
            raise type(exc)(f"validation_data: {exc}") from None
        return x, y, w

    @putting_weights_back_on_error
    @_unbuilt_again_if_refused
    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """Loss (and metrics) over the data: a float, a list [loss, *metrics], or a dict.
        sample_weight weighs each sample's loss as in fit, and the weighted metrics.
        callbacks: their test hooks run (on_test_begin/end, on_test_batch_begin/end).
        x may give the data batch by batch, as in fit; steps: how many batches (default:
        all; with arrays and no batch_size, the steps share the samples out, as Keras 3).
        batch_size: default 1024, or Keras' 32 when a callback has test batch hooks or the
        loss's value depends on the batches (as in Keras: a loss summed per batch,
        reduction='sum', or averaged over each batch's weights or kept labels,
        'mean_with_sample_weight' or ignore_class); other values do not depend on it."""
        self._check_compiled()
        check_verbose(verbose)
        cbs = CallbackList(_callback_list(callbacks), model=self)  # params once x is read
        self.stop_evaluating = False  # a test batch hook may set it (Keras 3)
        if is_batch_source(x):
            _no_arrays_with_source("evaluate", x, y=y, batch_size=batch_size,
                                   sample_weight=sample_weight)
            source = BatchSource(x, steps, "steps", "evaluate")
            source.epoch_begin()
            batches = self._build_from(source)
            self._prepare_compiled()
            cbs.set_params({"verbose": verbose, "epochs": 1, "steps": source.epoch_steps})
            cbs.call("on_test_begin", {})
            with self._claimed_metrics() as metrics:
                logs = self._evaluate_source(source, metrics, cbs, batches, begun=True)
            cbs.call("on_test_end", dict(logs))
            if verbose:
                print(logs_line(logs))
            return self._format_logs(logs, return_dict)
        if steps is not None:  # the first `steps` batches (Keras 3)
            n, x = _rows_of(x, self._inputs)
            batch_size, rows = _rows_for_steps(n, steps, data.check_batch_size(batch_size, None),
                                               "steps")
            x = self._inputs(x[:rows])
            y = self._targets(y, n)
            w = self._sample_weights(sample_weight, None, y)
            return self.evaluate(x, y[:rows], batch_size, verbose,
                                 sample_weight=None if w is None else w[:rows],
                                 callbacks=callbacks, return_dict=return_dict)
        # Keras' batches of 32 where test batch hooks see them (as predict's), else bigger
        test_hooks = cbs.overrides("on_test_batch_begin", "on_test_batch_end")
        batch_size = data.check_batch_size(batch_size, 32 if test_hooks or
                                           self._loss_by_batch() else _PREDICT_BATCH)
        self._check_columns(x, "x")
        x = data.frame_values(x, "x", self._dtype)
        step = self._conversion_piece(x, batch_size)
        if test_hooks:
            step = None  # batches numbered over the whole set, not per converted piece
        if step is None:
            x = self._inputs(x)
        else:
            with self._errors_about_all_of(x):
                self._inputs(x[:1])  # builds the model; the pieces are checked as they come
        self._prepare_compiled()
        y = self._targets(y, x.shape[0])
        w = self._sample_weights(sample_weight, None, y)
        cbs.set_params({"verbose": verbose, "epochs": 1, "steps": -(-len(x) // batch_size)})
        cbs.call("on_test_begin", {})
        with self._claimed_metrics() as metrics:
            if step is None:
                logs = self._evaluate_arrays(x, y, batch_size, w, metrics, cbs=cbs)
            else:
                logs = self._epoch_logs(self._metric_objects if metrics is None
                                             else metrics)
                with self._errors_about_all_of(x):
                    for i in range(0, len(x), step):
                        self._evaluate_arrays(self._inputs(x[i:i + step]), y[i:i + step],
                                              batch_size, None if w is None else w[i:i + step],
                                              logs=logs)
                logs = dict(logs)
        cbs.call("on_test_end", dict(logs))
        if verbose:
            print(logs_line(logs))
        return self._format_logs(logs, return_dict)

    @contextlib.contextmanager
    def _fit_running(self):
        """Marks a fit in progress (compile refuses to run from its callbacks)."""
        with _METRIC_CLAIMS_LOCK:  # (the counters' lock)
            self._fits_running = getattr(self, "_fits_running", 0) + 1
            _MODELS_WITH_PROCESS_STATE.add(self)  # (a forked child resets the count)
        try:
            with self._training("fit"):
                yield
        finally:
            with _METRIC_CLAIMS_LOCK:  # (a child forked inside fit has no count)
                self._fits_running = max(0, getattr(self, "_fits_running", 1) - 1)

    @contextlib.contextmanager
    def _training(self, what):
        """While in it, this thread trains the model (see _training_lock)."""
        lock = self._training_lock(what)
        try:
            yield
        finally:
            lock.release()

    def _training_lock(self, what):
        """The model's training lock, acquired (release it): one thread trains a model at a
        time, as two threads' steps interleaved matched no order of them (Adam's step counts
        read twice); the thread already training may train again (train_on_batch from a
        fit's callback)."""
        lock = self.__dict__.get("_train_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_train_lock", threading.RLock())  # (atomic)
            _MODELS_WITH_PROCESS_STATE.add(self)
        if not lock.acquire(blocking=False):
            raise RuntimeError(f"{what}: another thread is training this model (fit or "
                               f"train_on_batch); train a model from one thread at a time")
        return lock

    @contextlib.contextmanager
    def _claimed_metrics(self):
        """None (use the compiled metric objects) when nothing else accumulates into them,
        else fresh copies of them: for an evaluate() from a callback during fit, or while
        another thread evaluates (their batches mixed into each other's metrics)."""
        objects = list(self._metric_objects)
        keys = [id(metrics_mod.accumulator(m)) for m in objects]  # (alive: held here)
        with _METRIC_CLAIMS_LOCK:
            busy = any(_METRIC_CLAIMS.get(key, 0) for key in keys)
            for key in keys:
                _METRIC_CLAIMS[key] = _METRIC_CLAIMS.get(key, 0) + 1
        try:
            yield [metrics_mod.fresh_copy(m) for m in objects] if busy else None
        finally:
            with _METRIC_CLAIMS_LOCK:
                for key in keys:
                    count = _METRIC_CLAIMS.pop(key, 1) - 1
                    if count > 0:
                        _METRIC_CLAIMS[key] = count

    @staticmethod
    def _format_logs(logs, return_dict):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        """Model outputs for x, as a numpy array; verbose=1 prints the number of samples and
        the time taken. batch_size bounds memory use (the numpy backend's products may
        round the last bit differently for another batch size; the cpu backend's native
        predict gives the same bits for any, under the default matmul precision 'highest').
        callbacks: their predict hooks run; with batch hooks defined, predict runs batch by
        batch (default batch_size 32, Keras').
        x may give the data batch by batch, as in fit (x alone or (x, ...) per batch);
        steps: how many batches (default: all; with arrays and no batch_size, the steps
        share the samples out, as Keras 3)."""
        cached = self._predict_cache
        if cached is not None and batch_size is None and steps is None and not callbacks and \
                not verbose and cached.engine is not None:
            # The commonest call, float32 rows as the model takes them, in one C++ call that
            # also checks the engine is still this model's (None: anything else, below)
            try:
                out = cached.engine.predict_current(x, self, cached.sample_shape,
                                                    cached.call_guards)
            except ValueError:  # NaN or infinity: the full path names them
                out = None
            if out is not None:
                return out
        return self._predict(x, batch_size, verbose, steps, callbacks)

    @putting_weights_back_on_error
    def _predict(self, x, batch_size, verbose, steps, callbacks):
        """predict's every other case, wrapped to put back weights a SwapEMAWeights callback
        swapped out (predict's one-call path swaps none, so it skips the wrapper's 0.45 us,
        a twentieth of a single row's predict)."""
        cached = self._predict_cache
        if cached is not None and steps is None and not callbacks and not verbose and \
                (type(x) is np.ndarray or isinstance(x, np.ndarray) and
                 not isinstance(x, np.ma.MaskedArray)) and \
                config.check_finite() and cached.describes(self):
            # The lean path (single rows in microseconds, so first, before the checks an
            # array passes anyway): the binding checks dtype, shape, layout and finiteness
            # itself; anything it refuses takes the full path below, which converts what it
            # can and otherwise raises the usual clear error.
            n = len(x) if x.ndim else 0  # (a 0-d array: the full path names the problem)
            if n and (batch_size is None or (type(batch_size) is int and n <= batch_size)):
                rows = x
                if n <= 64 and x.dtype.kind in "biuf" and \
                        not (x.dtype == self._dtype and x.flags.c_contiguous):
                    # a few rows of float64 (numpy's default) or a view: 3 us, not 40;
                    # values beyond float32 become inf, refused: the full path names them
                    with np.errstate(over="ignore", invalid="ignore"):
                        rows = np.ascontiguousarray(x, dtype=self._dtype)
                try:
                    return cached.predict(rows)
                except (TypeError, ValueError):
                    pass
        if is_batch_source(x):
            check_verbose(verbose)
            _no_arrays_with_source("predict", x, batch_size=batch_size)
            return self._predict_source(BatchSource(x, steps, "steps", "predict"), verbose,
                                        callbacks)
        if steps is not None:  # the first `steps` batches (Keras 3)
            n, x = _rows_of(x, self._inputs)
            batch_size, rows = _rows_for_steps(n, steps, data.check_batch_size(batch_size, None),
                                               "steps")
            return self.predict(x[:rows], batch_size, verbose, callbacks=callbacks)
        if callbacks:
            check_verbose(verbose)
            return self._predict_with_callbacks(x, batch_size, verbose, callbacks)
        if verbose:
            check_verbose(verbose)
            start = time.perf_counter()
            out = self.predict(x, batch_size)
            print(f"{len(out)} samples - {time.perf_counter() - start:.3f}s", flush=True)
            return out
        asked = batch_size
        batch_size = data.check_batch_size(batch_size, _PREDICT_BATCH)
        self._check_columns(x, "x")
        x = data.frame_values(x, "x", self._dtype)
        step = self._conversion_piece(x, batch_size)
        if step is not None:
            return self._predict_in_pieces(x, step, asked)
        if self.backend is None:
            self.backend = get_backend()
        try:
            shape = np.shape(x)
        except ValueError:  # ragged nesting: _inputs names the problem
            shape = None
        if self.input_shape is not None and shape is not None and shape[:1] == (0,) and \
                tuple(shape[1:]) in ((), tuple(self.input_shape)):
            self._ensure_built(self.input_shape)
            return np.empty((0,) + tuple(self.output_shape), dtype=self._dtype)  # as Keras
        check_finite = config.check_finite()  # read once: the native path trusts this check
        x = self._inputs(x, check_finite=check_finite)
        for layer in self.layers:
            layer.to_backend(self.backend, self._dtype)
        # With the check off, the layer path runs (NaN in, NaN out, as asked).
        if check_finite and engine_mod.unsupported_reason(self, for_training=False) is None:
            if cached is None or not cached.describes(self):
                cached = self._predict_cache = engine_mod.PredictEngine(self, _PREDICT_BATCH)
            return cached.predict(x, checked=True)  # _inputs found x finite
        b = self.backend
        return _stacked(x.shape[0], (
            (start, b.to_numpy(self._forward(b.asarray(x[start:start + batch_size], self._dtype),
                                             training=False, logits=False)))
            for start in range(0, x.shape[0], batch_size)))

    def _predict_source(self, source, verbose, callbacks):
        cbs = CallbackList(_callback_list(callbacks), model=self)
        cbs.set_params({"verbose": verbose, "epochs": 1, "steps": source.epoch_steps})
        hooks = cbs.overrides("on_predict_batch_begin", "on_predict_batch_end")
        start_time = time.perf_counter()
        cbs.call("on_predict_begin", {})
        outs = []
        self.stop_predicting = False  # a predict batch hook may set it (Keras 3)
        source.epoch_begin()
        stopped = False
        for batch, (xb, _, _) in enumerate(source.batches()):
            if hooks:
                cbs.call("on_predict_batch_begin", batch, {})
            outs.append(self.predict(xb))
            if hooks:
                cbs.call("on_predict_batch_end", batch, {"outputs": outs[-1]})
                stopped = getattr(self, "stop_predicting", False)
                if stopped:
                    break
        source.epoch_end()
        if not outs:
            raise ValueError("predict: the data gave no batches")
        _warn_of_shortfall(None if stopped else source)
        out = np.concatenate(outs)
        if verbose:
            print(f"{len(out)} samples - {time.perf_counter() - start_time:.3f}s", flush=True)
        cbs.call("on_predict_end", {})
        return out

    def _predict_with_callbacks(self, x, batch_size, verbose, callbacks):
        cbs = CallbackList(_callback_list(callbacks), model=self)
        x = self._unlisted(x)  # (its rows counted, not the list's one)
        if type(x).__module__.startswith("scipy.sparse") and hasattr(x, "tocsr"):
            x = x.tocsr()  # sliced into batches below: COO, DIA and BSR cannot be
        elif _num_rows(x) == 0 and hasattr(x, "__array__"):
            x = np.asarray(x)  # (an object with only __array__: its rows, for the batches)
        n = _num_rows(x)  # (0 for what has none: refused by predict)
        batched = cbs.overrides("on_predict_batch_begin", "on_predict_batch_end") and n > 0
        self.stop_predicting = False  # a predict batch hook may set it (Keras 3)
        size = data.check_batch_size(batch_size, 32 if batched else _PREDICT_BATCH)
        cbs.set_params({"verbose": verbose, "epochs": 1, "steps": -(-n // size)})
        cbs.call("on_predict_begin", {})
        if batched:
            start_time = time.perf_counter()

            done = [0]  # rows predicted: fewer when a hook stops predicting

            def batches():  # each batch converted as it comes (x is not copied whole)
                for batch, start in enumerate(range(0, n, size)):
                    cbs.call("on_predict_batch_begin", batch, {})
                    piece = self.predict(x[start:start + size], size)
                    done[0] = start + len(piece)
                    cbs.call("on_predict_batch_end", batch, {"outputs": piece})
                    yield start, piece
                    if getattr(self, "stop_predicting", False):
                        return

            out = _stacked(n, batches())[:done[0]]
            if verbose:
                print(f"{len(out)} samples - {time.perf_counter() - start_time:.3f}s",
                      flush=True)
        else:
            out = self.predict(x, batch_size, verbose)
        cbs.call("on_predict_end", {})
        return out

    def _conversion_piece(self, x, batch_size):
        """Rows per piece when x should be converted a piece at a time, else None. Converted
        whole, x (float64, uint8 images, Fortran order, a slice) would have a second copy
        next to it: predict and evaluate convert _PREDICT_PIECE bytes of rows at a time (or
        batch_size rows if more), whole batches, so the batches are those of x (same bits)."""
        if not (isinstance(x, np.ndarray) and x.ndim >= 2) or \
                (x.dtype == self._dtype and x.flags.c_contiguous):
            return None
        row_bytes = np.dtype(self._dtype).itemsize * max(1, int(np.prod(x.shape[1:])))
        step = max(batch_size, _PREDICT_PIECE // row_bytes // batch_size * batch_size)
        return step if len(x) > step else None

    def _predict_in_pieces(self, x, step, batch_size):
        with self._errors_about_all_of(x):
            return _stacked(len(x), ((i, self.predict(x[i:i + step], batch_size))
                                     for i in range(0, len(x), step)))

    @contextlib.contextmanager
    def _errors_about_all_of(self, x):
        """Work on pieces of x: a problem a piece shows is reported about all of x (its
        counts and shape), by checking x whole, which raises."""
        try:
            yield
        except ValueError:
            self._inputs(x)
            raise

    def __call__(self, x, training=False):
        """model(x) is predict(x); model(x, training=True) runs the layers as in a training
        step (dropout active, batch normalisation on the batch's statistics, updating its
        moving ones, as Keras does) without any weight update. model(tensor) on pynn.Input(...)
        or a layer's output (Keras' functional form) adds the model's layers to a chain
        for pynn.Model, sharing them."""
        if not isinstance(x, np.ndarray):
            from . import functional

            if functional.is_symbolic(x):
                return functional.call_model(self, x, training)
        if not training:
            return self.predict(x)
        if self.backend is None:
            self.backend = get_backend()
        x = self._inputs(x)
        for layer in self.layers:
            layer.to_backend(self.backend, self._dtype)
        b = self.backend
        try:
            y = self._forward(b.asarray(x, self._dtype), training=True, logits=False)
        finally:  # no backward follows: the layers' caches (~25x the input) go
            for layer in self._compute_layers:
                layer._cache = None
        return np.asarray(b.to_numpy(y))

    # ---- weights ------------------------------------------------------------------------------
    def get_weights(self):
        """Every weight as a numpy array (copies), layer by layer in each layer's order."""
        self._layers_tracked()
        return [w for layer in self.layers for w in layer.get_weights()]

    @property
    def weights(self):
        """Every weight as a Parameter (.name, .shape, .trainable, .numpy()), as Keras'
        model.weights lists variables."""
        return self.params

    @property
    def trainable(self):
        """False when every layer is frozen. Setting it sets every layer's `trainable`, as
        Keras' `model.trainable = False` freezes the whole model (layers added later keep
        their own flag)."""
        layers = [l for l in self._compute_layers if l.params] or self._compute_layers
        return any(layer.trainable for layer in layers) if layers else True

    @trainable.setter
    def trainable(self, value):
        for layer in self.layers:
            if isinstance(layer, InputLayer):
                Layer.trainable.fset(layer, value)  # without the warning freezing it alone gives
            else:
                layer.trainable = value

    @property
    def trainable_weights(self):
        """Keras' name for trainable_params."""
        return self.trainable_params

    @property
    def non_trainable_weights(self):
        """The weights fit leaves alone (frozen layers or weights, moving statistics)."""
        return [p for p in self.params if not p.trainable]

    # Keras 3's names for the three lists
    variables = weights
    trainable_variables = trainable_weights
    non_trainable_variables = non_trainable_weights

    def reset_metrics(self):
        """Clear the compiled metrics' running values (Keras' model.reset_metrics)."""
        for metric in self.metrics:
            metric.reset_state()

    @property
    def metrics(self):
        """The compiled metric objects that fit and evaluate update (Keras' model.metrics;
        pynn keeps the loss's mean apart, so it is not among them); [] before the model is
        compiled and built. (A subclass may set its own: it then reads that.)"""
        if "_own_metrics" in self.__dict__:
            return self.__dict__["_own_metrics"]
        if not self.compiled or not self.built:
            return []
        self._prepare_compiled()
        return [getattr(m, "metric", m) for m in self._metric_objects]

    @metrics.setter
    def metrics(self, value):  # (a subclass's attribute of that name, as before the property)
        self.__dict__["_own_metrics"] = value

    @property
    def metrics_names(self):
        """The names evaluate and History use: 'loss', then each compiled metric."""
        if not self.compiled:
            return []
        shape = tuple(self.output_shape) if self.built else (1,)
        return ["loss"] + [m.name for m in self._compiled_metrics(shape)]

    def set_weights(self, weights):
        """Replace every weight from a list of arrays in get_weights order; all are checked
        (count and shapes) before any is assigned."""
        weights = list(weights)
        self._layers_tracked()
        expected = sum(len(l.params) for l in self.layers)
        if len(weights) != expected:
            # which layer takes which arrays: a list from another library (Keras'
            # Normalization keeps a third, its sample count) shows where it differs
            layout = "; ".join(
                f"{l.name} ({type(l).__name__}): " +
                ", ".join(f"{p.name.rsplit('/', 1)[-1]} {tuple(p.shape)}" for p in l.params)
                for l in self.layers if l.params)
            given = ", ".join(str(tuple(np.shape(w))) for w in weights[:12])
            given += ", ..." if len(weights) > 12 else ""
            if not layout:
                layout = "none" if self.built else "not built yet: fit, build or an Input first"
            raise ValueError(f"set_weights: the model has {expected} weight arrays "
                             f"({layout}), got {len(weights)} (shapes {given})")
        params = self.params
        # every array checked and converted before any is assigned: all or nothing
        arrays = [p.checked(w) for p, w in zip(params, weights)]
        for p, w in zip(params, arrays):
            p.assign(w)

    def count_params(self):
        """The number of weights; refused before the model is built, as Keras (0 would pass
        for an answer)."""
        if not self.built:
            raise ValueError("count_params: the model has no weights yet: build it (fit, "
                             "build or an Input) first")
        self._layers_tracked()  # (a holder's refusal said here too, as by model.weights)
        return sum(l.count_params() for l in self.layers)

    def save_weights(self, filepath, overwrite=True):
        """Every weight to a file (.npz; HDF5 when the name ends in .h5/.hdf5) or a binary
        file object; model.load_weights reads it. overwrite=False refuses an existing
        file (Keras asks; pynn raises FileExistsError)."""
        from .saving import save_weights

        save_weights(self, filepath, overwrite)

    def load_weights(self, filepath, skip_mismatch=False):
        """Load weights saved by save_weights or save; shapes are checked first. With
        skip_mismatch=True, layers that do not match are left untouched (their names are
        returned) instead of raising."""
        from .saving import load_weights

        return load_weights(self, filepath, skip_mismatch)

    def save(self, filepath, overwrite=True):
        """The whole model in one file: layers, weights, compile settings, optimizer state.
        .npz (default), HDF5 when the name ends in .h5/.hdf5, or a Keras 3 archive when it
        ends in .keras (config.json and model.weights.h5 as Keras writes them:
        keras.saving.load_model loads it, compiled, with the optimizer's state where Keras
        keeps the same variables; pynn's own description rides along, so nothing a .npz
        holds is lost; needs h5py, the `h5` extra); a binary file object takes .npz.
        pynn.load_model(filepath) rebuilds it. overwrite=False refuses an existing file
        (FileExistsError)."""
        from .saving import save_model

        save_model(self, filepath, overwrite)

    def export(self, filepath, format="onnx", verbose=None, input_signature=None,
               opset_version=None):
        """Keras 3's export for inference, in the one format pynn writes: ONNX
        (pynn.onnx.export; the onnx package is needed). format="tf_saved_model" (Keras'
        default), "openvino" or "litert" raise NotImplementedError; input_signature must be
        None (the graph takes (batch, *input_shape) in the model's float type);
        opset_version is Keras' name for the ONNX opset (default: the lowest the model
        needs). verbose=True prints where the file went. Returns the onnx ModelProto."""
        if not isinstance(format, str):
            raise TypeError(f"format must be a string such as 'onnx', got {format!r}")
        if format != "onnx":
            if format in ("tf_saved_model", "openvino", "litert"):
                raise NotImplementedError(
                    f"export(format={format!r}): pynn writes ONNX only (format='onnx'; "
                    f"TensorFlow Serving, OpenVINO and LiteRT all load ONNX through their "
                    f"converters)")
            raise ValueError(f"format must be 'onnx' (pynn's one export format), got "
                             f"{format!r}")
        if input_signature is not None:
            raise NotImplementedError(
                "export(input_signature=...): pynn's ONNX graph takes (batch, "
                f"*{tuple(self.input_shape) if self.input_shape else 'input_shape'}) in the "
                "model's float type, with any batch size; leave input_signature=None")
        from .onnx import export

        proto = export(self, filepath, opset=opset_version)
        if verbose:
            print(f"Saved the ONNX model at {filepath!r}.", flush=True)
        return proto

    def _check_layer_class_names(self, action, error):
        """A file names a layer class by __name__: two user classes of one name in the model
        could not both load; raises `error` naming them (the rest of what a file needs is
        checked by saving's trial load)."""
        classes = {}
        for layer in self.layers:
            classes.setdefault(type(layer).__name__, set()).add(type(layer))
        for name, group in classes.items():
            if len(group) > 1:
                raise error(f"cannot {action} the model: {len(group)} layer classes in it are "
                            f"called {name}; rename one")

    def __reduce_ex__(self, protocol):
        """Pickling (and copy.deepcopy) go through the model file's bytes: the layers,
        weights, compile settings and optimizer state, not the backend's modules. A user's
        layer classes travel as pickle references; the backend is restored where available
        (else the default). Not kept: the last fit's History."""
        from .saving import metric_names_only, user_objects

        self._check_layer_class_names("pickle", TypeError)
        custom = user_objects(self)
        backend = getattr(self.backend, "name", None)
        specs = {key: list(getattr(self, attribute, []))
                 for key, attribute in _METRIC_SPECS.items()}
        # Metric objects and functions, and a learning rate that is a function of the step,
        # travel as pickle objects (by reference; deepcopy keeps them), not in the model
        # file (which rebuilds only names and pynn's own classes, not user code).
        aside = (self.optimizer.function_rate_aside() if self.optimizer is not None
                 else contextlib.nullcontext())
        with metric_names_only(self), aside as rate_function:
            data = _pickled_bytes(self)
        extras = {key: given for key, given in specs.items()
                  if not all(isinstance(m, str) for m in given)}
        if rate_function is not None:
            extras["rate_function"] = rate_function
        if getattr(self, "_frame_columns", None) is not None:  # (the column check goes along)
            extras["frame_columns"] = self._frame_columns
        return _unpickle_model, (data, custom or None, backend, *([extras] if extras else []))

    def __copy__(self):
        """copy.copy: a second model object sharing the same layers (as for any object)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__["_layers"] = list(self._layers)  # the same layers; add/pop apart
        new.__dict__.pop("_fits_running", None)  # (a copy made mid-fit is not fitting)
        new.__dict__.pop("_batch_trainer", None)  # (train_on_batch's, holding this model)
        return new

    # ---- description ----------------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print the layers, their output shapes and weight counts, and the trainable and
        non-trainable totals (print_fn takes the whole table, once, as Keras'). As Keras:
        show_trainable adds a column (Y, N, or - for a layer without weights),
        layer_range=(first, last) names or patterns the layers to list (the totals stay the
        model's), line_length (the table's width) and positions (where each column ends:
        fractions of line_length, or characters) set the columns, wrapping what does not
        fit (by default they fit their contents). expand_nested is taken and unused (no
        model nests in a Sequential)."""
        if print_fn is None and callable(line_length):  # summary(print_fn) before Keras'
            print_fn, line_length = line_length, None     # argument order was taken
        print_fn = print if print_fn is None else print_fn
        listed = self._summary_range(layer_range)
        rows = [("Layer (type)", "Output Shape", "Param #")
                + (("Trainable",) if show_trainable else ())]
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            if shape is not None:
                shape = layer.compute_output_shape(shape)
            if i not in listed:
                continue
            out = f"(None, {', '.join(map(str, shape))})" if shape is not None else "?"
            row = (f"{layer.name} ({type(layer).__name__})", out,
                   str(layer.count_params()) if layer.built else "0 (unbuilt)")
            if show_trainable:
                row += ("-" if not layer.params else "Y" if layer.trainable else "N",)
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(len(rows[0]))]
        if isinstance(positions, np.ndarray):
            positions = positions.tolist()
        # Keras' `line_length or default`, `positions or default`: 0 and [] mean the default
        line_length = line_length or None
        if isinstance(positions, (list, tuple)) and not positions:
            positions = None
        if line_length is not None or positions is not None:
            if show_trainable and isinstance(positions, (list, tuple)) and \
                    len(positions) == len(widths) - 1:  # Keras' three, made room in
                positions = _trainable_column_added(positions)
            widths = _summary_widths(line_length, positions, widths)
        line = "-" * sum(widths)
        lines = [f'Model: "{self.name}"', line, *_summary_row(rows[0], widths),
                 "=" * sum(widths)]
        lines += [text for r in rows[1:] for text in _summary_row(r, widths)]
        total = self.count_params() if self.built else 0
        trainable = sum(int(np.prod(p.shape)) for p in self.params if p.trainable)
        lines += ["=" * sum(widths), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}",
                  f"Backend: {(self.backend or get_backend()).name}"]
        if self.compiled and self.built and self._compute_layers:
            self._prepare_compiled()
            reason = engine_mod.unsupported_reason(self)
            where = "C++ and CUDA" if self.backend.name == "cuda" else "C++"
            lines.append(f"Training engine: native (whole steps in {where})" if reason is None
                         else f"Training engine: layers (native engine not used: {reason})")
        lines.append(line)
        print_fn("\n".join(lines))

    def _summary_range(self, layer_range):
        """The indices of model.layers summary lists: all, or Keras' layer_range of two
        layer names or patterns (re.match, as Keras 3): from the first layer the first
        matches to the last layer the second matches (the other way round when those
        cross)."""
        if layer_range is None:
            return range(len(self.layers))
        names = [layer.name for layer in self.layers]
        if not (isinstance(layer_range, (list, tuple)) and len(layer_range) == 2
                and all(isinstance(n, str) for n in layer_range)):
            raise ValueError(f"summary: layer_range must be two layer names (first, last), "
                             f"got {layer_range!r}")
        try:
            lower, upper = ([i for i, name in enumerate(names) if re.match(pattern, name)]
                            for pattern in layer_range)
        except re.error as exc:
            raise ValueError(f"summary: layer_range {layer_range!r} is no pattern: "
                             f"{exc}") from None
        if not lower or not upper:
            missing = [p for p, found in zip(layer_range, (lower, upper)) if not found]
            raise ValueError(f"summary: layer_range names {missing}, not among the layers "
                             f"{names}")
        if min(lower) > max(upper):
            return range(min(upper), max(lower) + 1)
        return range(min(lower), max(upper) + 1)

    def get_config(self):
        """The model's name and its layers' descriptions (Sequential.from_config rebuilds it,
        without weights)."""
        layers = [describe(layer) for layer in self.layers]
        first = layers[0]["config"] if layers else None
        if self.built and isinstance(first, dict) and "input_shape" not in first and \
                layers[0]["class_name"] != "InputLayer" and \
                _keywords_taken(type(self.layers[0]), ("input_shape",)):  # (built lazily)
            layers[0] = {**layers[0], "config": {**first,
                                                 "input_shape": list(self.input_shape)}}
        return {"name": self.name, "layers": layers}

    def get_compile_config(self):
        """compile()'s arguments as a model file keeps them (Keras' get_compile_config; None
        before compile): optimizer, loss and metrics serialized; compile_from_config
        compiles with them again."""
        from .saving import compile_settings

        return compile_settings(self) if self.compiled else None

    def compile_from_config(self, config):
        """compile() with what get_compile_config gave (Keras' compile_from_config)."""
        from .saving import _compile_arguments

        if not isinstance(config, dict) or not {"optimizer", "loss"} <= set(config):
            raise ValueError(f"compile_from_config: expected get_compile_config()'s dict "
                             f"(optimizer, loss, metrics), got {config!r}")
        self.compile(**_compile_arguments({"metrics": [], **config}))

    def to_json(self, **kwargs):
        """The architecture as JSON text (Keras' to_json: no weights, no compile settings);
        pynn.models.model_from_json rebuilds it. kwargs go to json.dumps (e.g. indent=2)."""
        from .saving import model_to_json

        return model_to_json(self, **kwargs)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """The model get_config described, its layers with fresh weights (not compiled);
        custom_objects: {name: class} for your own layers and their components."""
        def named(cfg):  # earlier versions saved numbers as names (Dense(2, name=7))
            name = cfg.get("name")
            if isinstance(name, (int, float)) and not isinstance(name, bool):
                return {**cfg, "name": str(name)}
            return cfg
        entries = config.get("layers") if isinstance(config, dict) else None
        if isinstance(entries, list) and any(isinstance(e, dict) and str(
                e.get("module") or "").startswith("keras") for e in entries):
            # Keras 3's get_config() (its layers' modules say so): read as model_from_json
            # reads its to_json (InputLayer's `sparse` met pynn's Input before)
            from . import keras_files

            with custom_object_scope(custom_objects):
                return keras_files.model_from_config(
                    {"class_name": "Sequential", "config": config}, "from_config",
                    custom_objects)[0]
        with custom_object_scope(custom_objects):  # initializers, regularizers inside too
            layers = [get_class(entry["class_name"], custom=entry.get("custom"),
                                registered_name=entry.get("registered_name"))
                      .from_config(named(entry["config"])) for entry in config["layers"]]
        return cls(layers, name=named(config).get("name"))  # (a model's number name too)


def _summary_widths(line_length, positions, natural):
    """summary's column widths from Keras' line_length and positions (where each column
    ends: fractions of line_length when all are at most 1, else characters); line_length
    defaults to the natural widths' sum, positions to the natural widths scaled to it."""
    if line_length is not None and not (isinstance(line_length, numbers.Real) and not
                                        isinstance(line_length, bool) and 1 <= line_length
                                        < math.inf):
        raise ValueError(f"summary: line_length must be a positive number of characters, "
                         f"got {line_length!r}")
    length = sum(natural) if line_length is None else int(line_length)
    if positions is None:
        ends = np.cumsum(natural) / sum(natural)
    else:
        ends = list(positions) if isinstance(positions, (list, tuple)) else None
        if ends is None or len(ends) != len(natural) or not all(
                isinstance(e, numbers.Real) and not isinstance(e, bool) and e > 0
                for e in ends) or any(b <= a for a, b in zip(ends, ends[1:])):
            raise ValueError(f"summary: positions must be {len(natural)} increasing positive "
                             f"numbers (where each column ends), got {positions!r}")
    # fractions of line_length (as Keras 3), or characters
    scale = length if max(ends) <= 1 else 1
    ends = [int(scale * e) for e in ends]
    widths = [b - a for a, b in zip([0, *ends], ends)]
    if min(widths) < 2:
        raise ValueError(f"summary: the columns ending at {ends} leave one under 2 "
                         f"characters wide")
    return widths


def _trainable_column_added(positions):
    """Keras' positions for summary's three columns with show_trainable's fourth: fractions
    scaled by 0.9, the last column to 1.0 (as Keras 3); characters: 12 more."""
    ends = list(positions)
    if all(isinstance(e, numbers.Real) and 0 < e <= 1 for e in ends):
        return [e * 0.9 for e in ends] + [1.0]
    return ends + [ends[-1] + 12] if all(isinstance(e, numbers.Real) for e in ends) else ends


def _summary_row(cells, widths):
    """One table row as lines: each cell left-justified in its width with a space after it,
    wrapped onto further lines where it is longer (at spaces where it can)."""
    pieces = [(textwrap.wrap(c, w - 1, break_on_hyphens=False) if len(c) >= w else [c]) or [""]
              for c, w in zip(cells, widths)]
    return ["".join((p[k] if k < len(p) else "").ljust(w) for p, w in zip(pieces, widths))
            for k in range(max(len(p) for p in pieces))]


# fit's validation: from a batch source, or arrays (x, prepared y, weights or None); after
# every freq-th epoch, arrays in batches of batch_size
_Validation = collections.namedtuple("_Validation", "source x y w batch_size freq")


def _check_validation_tuple(validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                         "sample_weight_val), or give batches itself")


def _check_epochs(epochs, initial_epoch, validation_freq):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, (int, np.integer)) \
            or initial_epoch < 0:
        raise ValueError(f"initial_epoch must be a non-negative integer, got "
                         f"{initial_epoch!r}")
    def positive(v):
        return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= 1

    # an integer (every n-th epoch) or Keras 3's collection of the epochs (1-based)
    if not (positive(validation_freq) or (
            isinstance(validation_freq, (list, tuple, set, frozenset, range))
            and all(positive(v) for v in validation_freq))):
        raise ValueError(f"validation_freq must be a positive integer or a list of epochs "
                         f"(counted from 1), got {validation_freq!r}")


def _validates(freq, epoch):
    """Whether validation runs after `epoch` (from 0) for fit's validation_freq."""
    if isinstance(freq, (int, np.integer)):
        return (epoch + 1) % freq == 0
    return epoch + 1 in freq


def _check_shuffle(shuffle):
    """True, False or 'batch' (Keras'); another string or a non-flag is refused (any truthy
    value was a full shuffle: 'batch' too)."""
    if isinstance(shuffle, str):
        if shuffle != "batch":
            raise ValueError(f"shuffle must be True, False or 'batch', got {shuffle!r}")
        return shuffle
    if shuffle is not None and not isinstance(shuffle, (bool, np.bool_, int, np.integer)):
        raise ValueError(f"shuffle must be True, False or 'batch', got {shuffle!r}")
    return bool(shuffle)


def _rows_of(x, convert):
    """(samples, x): a numpy array as it is (the rows `steps` reads are sliced before they
    are converted), anything else converted first."""
    if isinstance(x, np.ndarray) and x.ndim >= 1:
        return x.shape[0], x
    x = convert(x)
    return x.shape[0], x


def _rows_for_steps(n, steps, batch_size, steps_name, what="samples"):
    """(batch size, rows read) when `steps` batches are read from n samples given as arrays:
    as Keras 3, without a batch size the steps share the samples out (ceil(n / steps)
    each); more steps than the data has batches is an error (as for a PyDataset)."""
    steps = check_steps(steps, steps_name)
    if batch_size is None:
        batch_size = max(1, -(-n // steps))
    batches = -(-n // batch_size)
    if steps > batches:
        raise ValueError(f"{steps_name}={steps} is more than the {batches} batches of "
                         f"{batch_size} in the {n} {what}")
    return batch_size, min(n, steps * batch_size)


def _no_arrays_with_source(what, source, **given):
    for name, value in given.items():
        if value is not None:
            raise ValueError(f"{what}: {name} must be None when x gives the data batch by "
                             f"batch ({type(source).__name__}): each batch brings its own "
                             f"(x, y[, sample_weight]), and its size is the batch size")


class _SourceTrainer:
    """Trains batches given one at a time (fit on a batch source): each checked and
    converted as fit's arrays are, then one step in the native engine when the model allows
    it (an engine sized for the largest batch so far), else through the layers."""

    def __init__(self, model, engine, class_weight, verbose=0):
        self.model, self.engine, self.class_weight = model, engine, class_weight
        self.verbose = verbose  # fit's: a fallback found batch by batch is said once
        self.said_weighted = False
        self.native, self.capacity = None, 0
        self.engine_reason = None
        self.seen = None  # (settings counter, layers) when it last decided; None: never

    def train(self, xb, yb, wb, epoch_logs):
        """One optimizer step on the batch; returns its logs (added to epoch_logs)."""
        x, y, w = self.model._source_batch(xb, yb, wb, self.class_weight, "fit")
        return self.step(x, y, w, epoch_logs)

    def step(self, x, y, w, epoch_logs):
        """One optimizer step on a batch already checked and converted (x, y ready for the
        loss, sample weights or None); returns its logs (added to epoch_logs)."""
        m = self.model
        m._check_metrics_take(y)
        b = m.backend
        n = x.shape[0]
        xd, yd = b.asarray(x, m._dtype), b.asarray(y, y.dtype)
        wd = None if w is None else b.asarray(w, m._dtype)
        order = np.arange(n, dtype=np.int64)
        native = self._engine_for(n)
        if native is not None and wd is not None and native.weights_refused:
            if self.engine == "native":
                raise ValueError(f"the native engine cannot train this model: "
                                 f"{native.weights_refused}")
            # (the cuda engine: this weighted batch goes through the layers)
            if self.verbose and not self.said_weighted:
                print(f"Training weighted batches layer by layer, not in the native engine: "
                      f"{native.weights_refused}", flush=True)
                self.said_weighted = True
            native, self.engine_reason = None, native.weights_refused
        if native is not None:
            batches = m._native_chunk(native, xd, yd, wd, order, 0, 1, n,
                                      [name for name, _ in m._metrics], epoch_logs)
        else:
            batches = m._layer_batch(xd, yd, wd, order, 0, n, epoch_logs)
        return [logs for _, logs in batches][0]

    def _engine_for(self, n):
        """The native engine for a batch of n rows (None: the layer path), rebuilt when a
        callback changed the model or the batch is larger than any before; the layer path
        is reconsidered once the settings or the layers moved (an option unset, a layer
        removed may let the engine run the model again)."""
        native = self.native  # (read once: another thread may replace it meanwhile)
        if self.seen is not None:
            if native is None:
                if self.seen == (config.settings_version(), self.model.layers):
                    return None
            elif n <= native.max_batch and native.matches(self.model):
                # (its own size: a thread that raised self.capacity may not have built yet)
                return native
        seen = (config.settings_version(), list(self.model.layers))  # first: as the engine
        self.capacity = capacity = max(n, self.capacity)
        native = self.model._native_engine(self.engine, capacity)
        self.native, self.engine_reason, self.seen = native, self.model.engine_reason, seen
        return native


def _pickled_bytes(model):
    """The model file's bytes pickling carries; what would not load back is refused as a
    pickling error (TypeError), now rather than in the process that unpickles."""
    from .saving import model_to_bytes

    try:
        return model_to_bytes(model)
    except ValueError as exc:
        raise TypeError(str(exc).replace("cannot save", "cannot pickle", 1)) from exc


def _loss_number(value, loss):
    """A loss's sum as a float: a user's loss may return a one-element (device) array."""
    if getattr(value, "size", 1) == 1:
        try:
            return float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError):
            pass
    raise TypeError(f"loss {type(loss).__name__}: its sum must be one number, got a "
                    f"{type(value).__name__} of shape {getattr(value, 'shape', '?')}")


def _not_on_device(layer, method, what, value, backend):
    raise TypeError(f"layer {layer.name!r} ({type(layer).__name__}.{method}): {what} is a "
                    f"{type(value).__module__}.{type(value).__name__}, not an array of the "
                    f"{backend.name!r} backend ({backend.xp.__name__}.ndarray, on the GPU): "
                    f"compute with backend.xp (or the backend's methods), not numpy")


def _own_copy(x):
    """A copy of an array, or of each array in a tuple, list or dict (a layer of yours may
    hand such a container to the next)."""
    if isinstance(x, (tuple, list)):
        return type(x)(_own_copy(v) for v in x)
    if isinstance(x, dict):
        return {k: _own_copy(v) for k, v in x.items()}
    return x.copy() if hasattr(x, "copy") and hasattr(x, "shape") else x


def _layer_name(layer):
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _wrong_gradient(grad, shape, what):
    """Raises for a gradient that is no array of the shape of what it differentiates (a
    wrong one broadcast silently on the numpy backend, or failed in a kernel naming no
    layer)."""
    got = getattr(grad, "shape", None)
    if got is None:
        raise TypeError(f"{what} is a {type(grad).__name__}, not an array")
    raise ValueError(f"{what} has shape {tuple(got)}; it must have {tuple(shape)}, the shape "
                     f"of what it differentiates")


def _weight_gradient_shaped(p, layer):
    """A weight's .grad in another shape that differs by axes of length 1 only (a 0-d
    array or a number for a (1,) weight, (F,) for (1, F)), or flat, takes the weight's
    shape; any other shape is refused (a (4, 3) gradient of a (3, 4) kernel was reshaped,
    its values scrambled)."""
    g = p.grad
    shape = getattr(g, "shape", () if isinstance(g, (int, float, np.number)) else None)
    if shape is not None and ([d for d in shape if d != 1] == [d for d in p.value.shape if d != 1]
                              or len(shape) == 1 and shape[0] == p.value.size):  # (flat: C order)
        p.grad = p.backend.xp.asarray(g, dtype=p.value.dtype).reshape(p.value.shape)
        return
    _wrong_gradient(g, p.value.shape, f"{_layer_name(layer)}: {p.name}.grad")


def _warn_of_missing_gradients(layer):
    """A UserWarning (once per layer and weights) for trainable weights a user's backward
    left without a gradient: the optimizer skips them, as Keras does."""
    missing = [p.name for p in layer.params if p.trainable and p.grad is None]
    if missing:
        warnings.warn(f"{_layer_name(layer)}.backward set no gradient (.grad) for its "
                      f"trainable weight(s) {missing}: they are not updated (set trainable="
                      f"False on a weight meant to stay)", stacklevel=2)


def _checked_output(layer, inputs, outputs, following):
    """A user's layer's outputs, checked: an array (a tuple may go to a user's layer after it,
    not to pynn's or out of the model), of the input's rows (a mean over the batch axis gave
    predict rows of uninitialised memory), in the input's float type (a float64 result
    spread to the model's outputs), of the shape compute_output_shape declares."""
    if not hasattr(outputs, "shape"):
        if following is None or not is_custom(type(following)):
            where = "the model's output" if following is None else \
                f"the next layer's input ({_layer_name(following)})"
            raise TypeError(f"{_layer_name(layer)}.forward returned a "
                            f"{type(outputs).__name__}, not an array, as {where}")
        return outputs
    if not hasattr(inputs, "shape"):
        return outputs
    if tuple(outputs.shape[:1]) != tuple(inputs.shape[:1]):
        raise ValueError(f"{_layer_name(layer)}.forward returned {tuple(outputs.shape)} for "
                         f"inputs {tuple(inputs.shape)}: one output row per input row (its "
                         f"axis 0 is the batch)")
    dtype = getattr(inputs, "dtype", None)
    if dtype is not None and dtype.kind == "f" and outputs.dtype != dtype and \
            getattr(outputs.dtype, "kind", "") in "biuf":
        outputs = outputs.astype(dtype)  # (Keras computes in the layer's float type too)
    _check_declared_shape(layer, inputs, outputs)
    return outputs


def _check_declared_shape(layer, inputs, outputs):
    """A user's layer returns samples of the shape its compute_output_shape declares: the
    layers after it were built for that one (a Linear(8) without it built the next Dense
    for 4 inputs, and the error came from far away, blaming the targets or that layer)."""
    try:
        declared = tuple(layer.compute_output_shape(tuple(inputs.shape[1:])))
    except Exception:  # noqa: BLE001 - a check only: the layer's own errors come elsewhere
        return
    got = tuple(outputs.shape[1:])
    if got != declared:
        raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) returned samples of "
                         f"shape {got}, but its compute_output_shape says {declared}, which "
                         f"the layers after it were built for: define "
                         f"compute_output_shape(input_shape) to return the shape forward "
                         f"gives (README: Custom layers)")


def _name_the_layer(exc, layer, method):
    """Adds which layer raised to an error from inside a layer (a user's layer included)."""
    note = f"(raised in layer {layer.name!r}, {type(layer).__name__}.{method})"
    if hasattr(exc, "add_note") and note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


def _unpickle_model(data, custom_objects, backend, extras=None):
    """A pickled model: rebuilt from its file's bytes, on its backend again when available,
    with its compiled metrics when they were objects and its learning-rate function."""
    from .saving import model_from_bytes

    model = model_from_bytes(data, custom_objects)
    if isinstance(extras, list):  # (pickled by pynn before extras: the metric objects)
        extras = {"metrics": extras}
    extras = extras or {}
    for key, attribute in _METRIC_SPECS.items():
        if key in extras:
            setattr(model, attribute, list(extras[key]))
    if "rate_function" in extras:
        model.optimizer.learning_rate = extras["rate_function"]
    model._frame_columns = extras.get("frame_columns")
    if backend is not None and backend != getattr(model.backend, "name", None):
        try:
            target = get_backend(backend)
        except (RuntimeError, ImportError):  # not here (a GPU model on a CPU machine)
            return model
        model._to_backend(target)
    return model


_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def _reads_batch_logs_only(callback):
    """Whether the callback's batch hooks only read the logs (may run after a chunk), as
    declared by `reads_batch_logs_only = True` on the instance or on the class that defines
    its batch hooks: a subclass overriding them (say, to save weights) is exact again."""
    if "reads_batch_logs_only" in vars(callback):
        return bool(callback.reads_batch_logs_only)
    for klass in type(callback).__mro__:
        if any(hook in vars(klass) for hook in _BATCH_HOOKS):
            return bool(vars(klass).get("reads_batch_logs_only", False))
    return False


def _callback_list(callbacks):
    """fit/evaluate/predict's callbacks=: one Callback or a list of them, checked before
    anything reads them (a string's missing hooks were an AttributeError)."""
    if isinstance(callbacks, Callback):  # (a CallbackList, Keras' fit takes: its callbacks)
        return checked_callbacks([callbacks])
    if callbacks is None:
        return []
    if isinstance(callbacks, (str, bytes, dict)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"callbacks must be a pynn.callbacks.Callback or a list of them, got "
                        f"{callbacks!r}")
    return checked_callbacks(callbacks)


def _last_axis(shape):
    """An output's width, as the metrics read it: its last axis (1 for a scalar output)."""
    return int(shape[-1]) if len(shape) else 1


def _num_rows(x):
    """The number of samples of array-like x (a scipy sparse matrix's rows too, whose len()
    refuses), 0 for what has neither a shape nor a length."""
    shape = getattr(x, "shape", None)
    if isinstance(shape, tuple) and shape and isinstance(shape[0], (int, np.integer)):
        return int(shape[0])
    try:
        return len(x)
    except TypeError:
        return 0


def _stacked(n, pieces):
    """The (first row, rows) pieces of an n-row result as one array, each copied in as it
    comes: a list of them concatenated at the end held the result twice at the peak (600 MB
    for a 300 MB prediction). A single piece of all n rows is returned as it is."""
    out = None
    for start, piece in pieces:
        if out is None:
            if start == 0 and len(piece) == n:
                return np.asarray(piece)
            out = np.empty((n,) + tuple(piece.shape[1:]), dtype=piece.dtype)
        out[start:start + len(piece)] = piece
    return out


def _output_name(model):
    """The name Keras gives the model's one output: its last layer's (None: no layers)."""
    return model.layers[-1].name if model.layers else None


def _check_loss_weights(loss_weights):
    """compile's loss_weights: None or a weight of 1 for the one output; anything else is
    refused rather than ignored (it would change the loss and its gradients)."""
    if loss_weights is None:
        return
    weights = loss_weights
    if isinstance(weights, dict):
        weights = list(weights.values())
    elif not isinstance(weights, (list, tuple)):
        weights = [weights]
    if len(weights) != 1:
        raise ValueError(f"compile: loss_weights has {len(weights)} weights, but the model "
                         f"has one output: give one weight or none")
    weight = weights[0]
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f"compile: loss_weights must hold a number per output, got {weight!r}")
    if weight != 1:
        raise NotImplementedError(f"compile: loss_weights={loss_weights!r}: pynn does not "
                                  f"scale the loss (a model's one output has weight 1); a "
                                  f"Loss subclass can return the weight times its value")


def _with_history(callbacks):
    """fit's callbacks and the History it returns: the user's own History if one is among
    them (as Keras 3), else a new one last, so it records what the other callbacks add to
    the epoch's logs."""
    callbacks = _callback_list(callbacks)
    history = next((cb for cb in callbacks if isinstance(cb, History)), None)
    if history is None:
        history = History()
        callbacks.append(history)
    return callbacks, history


def _few(names, shown=6):
    """A list of names for a message, the first few of a long one."""
    names = [str(n) for n in names]
    return str(names) if len(names) <= shown else \
        f"[{', '.join(map(repr, names[:shown]))}, ... ({len(names)} in all)]"


def _warn_of_shortfall(source):
    """A UserWarning when a batch source (None: none) ran out before its steps."""
    message = None if source is None else source.shortfall()
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=_user_stacklevel())


def _test_batch_hooks(callbacks):
    """Whether one of fit's callbacks does anything per validation batch."""
    return any(defines_hook(cb, hook) for cb in _callback_list(callbacks)
               for hook in ("on_test_batch_begin", "on_test_batch_end"))


def _overrides_batch_hooks(callback):
    """Whether a callback does anything per training batch."""
    return any(defines_hook(callback, hook) for hook in _BATCH_HOOKS)


__all__ = ["Sequential"]
