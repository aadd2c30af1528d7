"""scikit-learn estimators backed by pynn: MLPClassifier and MLPRegressor.

They take scikit-learn's MLP parameter names and defaults (sklearn.neural_network) and train a
pynn Sequential (kept as `model_`), so they drop into Pipeline, GridSearchCV and
cross_val_score:

    from pynn.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=100, random_state=0).fit(X, y)

Differences from scikit-learn's own MLPs, by design:

* The objective is scikit-learn's: its loss is c times pynn's (c = 1/2 for the regressor's
  squared error, the number of labels for a multi-label classifier, whose log-loss sums over
  labels, else 1), plus 0.5 * alpha * ||W||^2 / n for each mini-batch, n being that batch's
  size. The model trains on pynn's loss plus L2(alpha / (2 * c * batch_size)) on each Dense
  kernel, which is scikit-learn's objective divided by c; the optimizer takes that into account
  (sgd's learning rate times c, adam's epsilon over c), so the steps are scikit-learn's, and
  loss_curve_ reports scikit-learn's objective. For full batches this is exact; only the last,
  shorter batch of an epoch is penalised slightly less. Biases are not penalised, as in
  scikit-learn. alpha=0 adds no regularizer (either way the network trains on pynn's native
  engine).
* random_state: an int (or RandomState) seeds the draws of each fit (weight initialisation,
  Keras' glorot_uniform, and shuffling) from a generator of its own, as scikit-learn does:
  pynn's global generator (pynn.set_seed) is left as it is, and fits in concurrent threads
  are reproducible. None draws from pynn's global generator.
* Stopping: max_iter is the number of epochs. Training also stops once the monitored loss
  has not improved by tol for n_iter_no_change epochs (pynn.callbacks.EarlyStopping): the
  training loss, or with early_stopping=True the loss on a held-out validation_fraction
  (scikit-learn monitors the validation score, which validation_scores_ records here too),
  whose best weights are restored. Running
  all max_iter epochs without stopping warns with ConvergenceWarning, as scikit-learn does.
* Outputs are computed in float32 (pynn's floatx) and returned as float64.
* solver: 'adam' or 'sgd' (Nesterov momentum as scikit-learn); no 'lbfgs'; the learning rate
  is constant: learning_rate='invscaling'/'adaptive' is refused for sgd (ignored by adam, as
  in scikit-learn); power_t and max_fun are accepted and checked but unused (they serve
  only 'invscaling' and 'lbfgs').
* sample_weight weighs each sample's loss, as in scikit-learn >= 1.7 (only the ratios count:
  the weights are scaled to mean 1); with mini-batches that is not the same as repeating
  samples (neither is it in scikit-learn).
* Sparse X (OneHotEncoder's default output) is accepted and made dense (float32) once per
  call: the network's layers take dense batches, so mind its size for very wide inputs.
* n_iter_ is the number of epochs of the last fit/partial_fit call (one for partial_fit);
  loss_curve_ and t_ span all calls, as in scikit-learn. partial_fit refuses
  early_stopping=True, as scikit-learn does.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings

import numpy as np

try:
    from scipy import sparse
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.utils.validation import (_check_sample_weight, check_is_fitted, column_or_1d,
                                          validate_data)
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("pynn.sklearn needs scikit-learn: pip install 'pynn[sklearn]'") from exc

from . import callbacks as callbacks_mod
from . import config, optimizers, regularizers
from .data import all_finite, converted, overflow_error
from .layers import Dense, Input
from .model import Sequential

_SPARSE = ("csr", "csc", "coo")  # accepted, then densified (see _dense)
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": "linear"}


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: checking parameters, building, training."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified per call (_dense)
        return tags

    # ---- checks (in fit, never in __init__: scikit-learn's convention) ----------------------
    def _check_params(self):
        sizes = self.hidden_layer_sizes
        if _is_int(sizes):
            sizes = (sizes,)
        try:
            sizes = list(sizes)
        except TypeError:
            sizes = None
        if sizes is None or not all(_is_int(s) and s >= 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got "
                             f"{self.hidden_layer_sizes!r}")
        sizes = [int(s) for s in sizes]
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.solver not in ("adam", "sgd"):
            raise ValueError(f"solver must be 'adam' or 'sgd' (pynn has no 'lbfgs'), got "
                             f"{self.solver!r}")
        for name, low in (("alpha", 0.0), ("tol", 0.0), ("power_t", 0.0)):
            value = getattr(self, name)
            if not _is_real(value) or not value >= low:
                raise ValueError(f"{name} must be a number >= {low}, got {value!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError(f"learning_rate must be 'constant', 'invscaling' or 'adaptive', "
                             f"got {self.learning_rate!r}")
        if self.solver == "sgd" and self.learning_rate != "constant":  # adam ignores it
            raise ValueError(f"learning_rate={self.learning_rate!r}: pynn's sgd solver has a "
                             f"constant learning rate only")
        if not _is_real(self.learning_rate_init) or not self.learning_rate_init > 0:
            raise ValueError(f"learning_rate_init must be > 0, got {self.learning_rate_init!r}")
        for name in ("max_iter", "n_iter_no_change", "max_fun"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (self.batch_size == "auto" or (_is_int(self.batch_size) and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got "
                             f"{self.batch_size!r}")
        if not _is_real(self.validation_fraction) or not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got "
                             f"{self.validation_fraction!r}")
        return sizes

    def _batch_size(self, n):
        # scikit-learn: 'auto' is min(200, n); a larger integer is clipped to n.
        return min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)

    def _random_draws(self):
        """The context a fit draws its random numbers in: a generator seeded by random_state
        for this thread only (None: pynn's global generator)."""
        rs = self.random_state
        if rs is None:
            return contextlib.nullcontext()
        return config.seeded(rs if _is_int(rs) else check_random_state(rs).randint(2**31 - 1))

    # ---- model ------------------------------------------------------------------------------
    def _build_model(self, sizes, n_features, n_outputs, out_activation, loss, batch_size):
        reg = self._regularizer(batch_size)
        act = _ACTIVATIONS[self.activation]
        layers = [Input((n_features,))]
        layers += [Dense(s, activation=act, kernel_regularizer=reg) for s in sizes]
        layers.append(Dense(n_outputs, activation=out_activation, kernel_regularizer=reg))
        model = Sequential(layers)
        model.compile(optimizer=self._optimizer(), loss=loss)
        return model

    def _loss_scale(self):
        """c: scikit-learn's loss over pynn's (see the module's docstring)."""
        raise NotImplementedError

    def _regularizer(self, batch_size):
        c = self._loss_scale()
        return regularizers.L2(self.alpha / (2.0 * c * batch_size)) if self.alpha > 0 else None

    def _optimizer(self):
        # pynn's objective is scikit-learn's over c, and so are its gradients: sgd's steps are
        # scikit-learn's with a rate c times larger, adam's with an epsilon c times smaller.
        c = self._loss_scale()
        if self.solver == "adam":
            return optimizers.Adam(learning_rate=self.learning_rate_init, beta_1=self.beta_1,
                                   beta_2=self.beta_2, epsilon=self.epsilon / c)
        return optimizers.SGD(learning_rate=self.learning_rate_init * c, momentum=self.momentum,
                              nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)

    def _warm_restart(self, sizes, batch_size):
        """A warm_start fit keeps the weights and, as scikit-learn, takes the current solver,
        learning rate and alpha (a new optimizer, the penalty for this batch size)."""
        dense = self._dense_layers()
        act = _ACTIVATIONS[self.activation]
        if [d.units for d in dense[:-1]] != sizes or any(d.activation.name != act
                                                         for d in dense[:-1]):
            raise ValueError(f"warm_start keeps the fitted network: hidden_layer_sizes and "
                             f"activation cannot change (fitted {[d.units for d in dense[:-1]]}, "
                             f"{dense[0].activation.name!r}; now {sizes}, {act!r})")
        self._set_penalty(batch_size)
        self.model_.compile(optimizer=self._optimizer(), loss=self.model_.loss)

    def _set_penalty(self, batch_size):
        reg = self._regularizer(batch_size)
        for layer in self._dense_layers():
            layer.kernel_regularizer = reg

    def _check_incremental(self):
        if self.early_stopping:  # its held-out split spans one fit call (scikit-learn's error)
            raise ValueError("partial_fit does not support early_stopping=True")

    def _first_pass(self, incremental):
        """Whether this fit starts a new network (scikit-learn: unless warm_start or
        partial_fit continue a fitted one)."""
        return not (hasattr(self, "model_") and (incremental or self.warm_start))

    def _train(self, X, y, epochs, incremental, first, sample_weight=None, sizes=None):
        """Run fit (or one partial_fit pass) on the encoded targets; updates the curves."""
        batch_size = self._batch_size(X.shape[0])
        verbose = 1 if self.verbose else 0
        c = self._loss_scale()  # tol is on scikit-learn's loss, the model's is that over c
        if first:
            self.loss_curve_, self.t_ = [], 0
            self.validation_scores_ = self.best_validation_score_ = None
        elif not incremental:
            self._warm_restart(sizes, batch_size)
        else:  # as scikit-learn's partial_fit: the current alpha, for this call's batches
            self._set_penalty(batch_size)
        if incremental:
            history = self.model_.fit(X, y, batch_size=batch_size, epochs=1, verbose=verbose,
                                      shuffle=self.shuffle, sample_weight=sample_weight)
        else:
            cbs, validation = [], None
            if self.early_stopping:
                X, validation, y, sample_weight = self._validation_split(X, y, sample_weight)
                batch_size = self._batch_size(X.shape[0])
                cbs.append(callbacks_mod.EarlyStopping(
                    monitor="val_loss", min_delta=self.tol / c, patience=self.n_iter_no_change,
                    restore_best_weights=True))
                # scikit-learn's validation_scores_: the score (accuracy, R^2) each epoch,
                # appended to by warm_start fits
                if self.validation_scores_ is None:
                    self.validation_scores_ = []
                cbs.append(callbacks_mod.LambdaCallback(
                    on_epoch_end=lambda epoch, logs: self.validation_scores_.append(
                        self._encoded_score(*validation))))
            else:  # scikit-learn's stopping rule on the training loss
                cbs.append(callbacks_mod.EarlyStopping(
                    monitor="loss", min_delta=self.tol / c, patience=self.n_iter_no_change))
            history = self.model_.fit(X, y, batch_size=batch_size, epochs=epochs,
                                      verbose=verbose, shuffle=self.shuffle,
                                      validation_data=validation, callbacks=cbs,
                                      sample_weight=sample_weight)
            if not self.model_.stop_training:  # ran all max_iter epochs
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({epochs}) reached and "
                              f"the optimization hasn't converged yet.", ConvergenceWarning)
            if validation is not None:
                self.best_validation_score_ = max(self.validation_scores_, default=None)
            else:
                self.validation_scores_ = self.best_validation_score_ = None
        losses = [c * float(v) for v in history.history.get("loss", [])]
        self.loss_curve_ = self.loss_curve_ + losses
        self.n_iter_ = len(losses)  # this call's epochs (loss_curve_ spans them all)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else float("nan")
        self.best_loss_ = min(self.loss_curve_) if self.loss_curve_ else float("nan")
        self.t_ += X.shape[0] * len(losses)  # training samples seen, as scikit-learn counts

    def _sample_weight(self, sample_weight, X):
        """Weights scaled to mean 1: scikit-learn averages the loss by the weights' sum, so
        only their ratios count; pynn's fit divides by the sample count (Keras), where
        weights of 1e-3 would shrink the loss, the tol rule and alpha's share with it."""
        if sample_weight is None:
            return None
        w = _check_sample_weight(sample_weight, X, dtype=np.float64)
        total = w.sum()
        if not total > 0:
            raise ValueError("sample_weight must have a positive sum")
        return (w * (len(w) / total)).astype(np.float32)

    def _validation_split(self, X, y, sample_weight):
        """(X_train, validation data tuple, y_train, sample_weight_train): a held-out
        validation_fraction, stratified for classes where each class has two samples."""
        arrays = [X, y] if sample_weight is None else [X, y, sample_weight]
        kwargs = dict(test_size=self.validation_fraction, random_state=self.random_state)
        try:
            parts = train_test_split(*arrays, stratify=y if self._stratify_validation() else None,
                                     **kwargs)
        except ValueError:  # a class too small to stratify: fall back to a plain split
            parts = train_test_split(*arrays, **kwargs)
        train, held_out = parts[0::2], parts[1::2]
        return train[0], tuple(held_out), train[1], (train[2] if len(train) == 3 else None)

    def _encoded_score(self, X, y, sample_weight=None):
        """score() on encoded targets, from the model's outputs."""
        raise NotImplementedError

    # ---- scikit-learn's fitted weights ------------------------------------------------------
    def _dense_layers(self):
        check_is_fitted(self, "model_")
        return [layer for layer in self.model_.layers if isinstance(layer, Dense)]

    @property
    def coefs_(self):
        """Each layer's weight matrix, (inputs, units), as scikit-learn's coefs_ (copies)."""
        return [layer.kernel.numpy().astype(np.float64) for layer in self._dense_layers()]

    @property
    def intercepts_(self):
        """Each layer's bias vector, as scikit-learn's intercepts_ (copies)."""
        return [layer.bias.numpy().astype(np.float64) for layer in self._dense_layers()]

    def _stratify_validation(self):
        return False

    def _raw_predict(self, X):
        check_is_fitted(self, "model_")
        X = _dense(validate_data(self, X, reset=False, dtype=np.float32,
                                 accept_sparse=_SPARSE))
        return np.asarray(self.model_.predict(X), dtype=np.float64)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier with scikit-learn's API, trained by pynn.

    Two classes use one sigmoid output and binary cross-entropy; more use softmax and sparse
    categorical cross-entropy. Labels may be of any type (strings too): they are encoded
    through `classes_`. predict_proba returns one column per class (two for binary).
    Multi-label targets (a 0/1 indicator matrix, as scikit-learn takes) use one sigmoid
    output per label; predict returns the indicator matrix, predict_proba each label's
    probability, classes_ is 0..n_labels-1.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _stratify_validation(self):
        return not self._multilabel

    def _encode(self, y, classes=None, reset=True):
        """Targets for the model: label codes (float 0/1 for binary), or the float indicator
        matrix of a multi-label y."""
        multilabel = np.ndim(y) == 2 and type_of_target(y) == "multilabel-indicator"
        if reset:
            self._multilabel = multilabel
        if self._multilabel:
            if not multilabel:
                raise ValueError(f"the model was fitted on a multi-label indicator matrix; y "
                                 f"must be one too (0/1 values, shape (n, "
                                 f"{len(self.classes_)})), got {type_of_target(y)!r} y")
            if reset:
                self.classes_ = np.arange(y.shape[1])
                if classes is not None and not np.array_equal(np.unique(classes),
                                                              self.classes_):
                    raise ValueError(f"classes={list(classes)!r}: a multi-label y with "
                                     f"{y.shape[1]} columns has classes "
                                     f"{self.classes_.tolist()}")
            elif y.shape[1] != len(self.classes_):
                raise ValueError(f"y has {y.shape[1]} labels, the model was fitted on "
                                 f"{len(self.classes_)}")
            return np.asarray(y, dtype=np.float32)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if reset:
            encoder = LabelEncoder().fit(y if classes is None else np.asarray(classes))
            self.classes_ = encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(f"MLPClassifier needs samples of at least 2 classes to train; "
                                 f"got 1 class ({self.classes_[0]!r})")
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels {unknown.tolist()} not among classes_ "
                             f"{self.classes_.tolist()}")
        codes = np.searchsorted(self.classes_, y)
        return codes.astype(np.float32) if len(self.classes_) == 2 else codes.astype(np.int64)

    def _loss_scale(self):
        # scikit-learn's binary log-loss sums over the labels of a multi-label y
        return len(self.classes_) if self._multilabel else 1

    def _fit(self, X, y, sample_weight=None, classes=None, incremental=False):
        first = self._first_pass(incremental)
        sizes = self._check_params()
        X, y = validate_data(self, X, y, reset=first, dtype=np.float32, accept_sparse=_SPARSE,
                             multi_output=True)
        X = _dense(X)
        sample_weight = self._sample_weight(sample_weight, X)
        if not first and not incremental and not self._multilabel:  # warm_start
            labels = np.unique(column_or_1d(y))
            if not np.array_equal(labels, self.classes_):
                raise ValueError(f"warm_start can only be used where y has the same classes as "
                                 f"in the previous call to fit: previously "
                                 f"{self.classes_.tolist()}, y has {labels.tolist()}")
        if first:
            if incremental and classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit "
                                 "(all the labels the stream may hold)")
            codes = self._encode(y, classes)
            sigmoid = self._multilabel or len(self.classes_) == 2
            self.n_outputs_ = 1 if len(self.classes_) == 2 and not self._multilabel \
                else len(self.classes_)
            self.model_ = self._build_model(
                sizes, X.shape[1], self.n_outputs_, "sigmoid" if sigmoid else "softmax",
                "binary_crossentropy" if sigmoid else "sparse_categorical_crossentropy",
                self._batch_size(X.shape[0]))
            self.out_activation_ = "logistic" if sigmoid else "softmax"
            self.n_layers_ = len(sizes) + 2
        else:
            if classes is not None and not self._multilabel and \
                    not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(f"classes={list(classes)!r} differs from the classes of the "
                                 f"first partial_fit call, {self.classes_.tolist()}")
            codes = self._encode(y, reset=False)
        self._train(X, codes, self.max_iter, incremental, first, sample_weight, sizes)
        return self

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to max_iter epochs, from scratch unless warm_start;
        sample_weight scales each sample's loss. Returns self."""
        with self._random_draws():
            return self._fit(X, y, sample_weight)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the previous call; `classes` (every label
        the data may hold) is required on the first call."""
        self._check_incremental()
        with self._random_draws():
            return self._fit(X, y, sample_weight, classes=classes, incremental=True)

    def _predicted_codes(self, out):
        if self._multilabel:
            return (out > 0.5).astype(np.int64)
        return (out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1 else np.argmax(out, axis=1)

    def _encoded_score(self, X, codes, sample_weight=None):
        predicted = self._predicted_codes(self.model_.predict(X))
        if self._multilabel:
            codes = codes.astype(np.int64)
        return float(accuracy_score(codes, predicted, sample_weight=sample_weight))

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in classes_ order (for
        multi-label targets, each label's own probability)."""
        out = self._raw_predict(X)
        if self._multilabel:
            return out
        if len(self.classes_) == 2:
            p = out[:, 0]
            return np.column_stack([1.0 - p, p])
        return out / out.sum(axis=1, keepdims=True)  # float32 rounding: rows sum to 1

    def predict_log_proba(self, X):
        """The log of predict_proba (-inf where a probability is 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample, as a label from classes_ (for multi-label
        targets, the 0/1 indicator matrix: labels with probability > 0.5)."""
        proba = self.predict_proba(X)  # checks fitted before classes_ is looked at
        if self._multilabel:
            return (proba > 0.5).astype(np.int64)
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor with scikit-learn's API, trained by pynn (mean
    squared error, linear output). y may be 1-D or 2-D (several outputs); as scikit-learn's,
    predict returns 1-D for one output, even when fitted on a (n, 1) y."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _loss_scale(self):
        return 0.5  # scikit-learn's squared error is half the mean squared error

    def _fit(self, X, y, sample_weight=None, incremental=False):
        first = self._first_pass(incremental)
        sizes = self._check_params()
        X, y = validate_data(self, X, y, reset=first, dtype=np.float32, accept_sparse=_SPARSE,
                             multi_output=True, y_numeric=True)
        X = _dense(X)
        sample_weight = self._sample_weight(sample_weight, X)
        source = np.asarray(y)
        y = converted(source, np.float32)  # 1e39 became inf, reported as "NaN or infinity"
        if not all_finite(y):
            raise overflow_error(source, y, "y") or ValueError("y contains NaN or infinity")
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        if first:
            self.model_ = self._build_model(sizes, X.shape[1], y2.shape[1], "linear", "mse",
                                            self._batch_size(X.shape[0]))
            self.out_activation_ = "identity"
            self.n_outputs_ = y2.shape[1]
            self.n_layers_ = len(sizes) + 2
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} outputs, the model was fitted on "
                             f"{self.n_outputs_}")
        self._train(X, y2, self.max_iter, incremental, first, sample_weight, sizes)
        return self

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to max_iter epochs, from scratch unless warm_start;
        sample_weight scales each sample's loss. Returns self."""
        with self._random_draws():
            return self._fit(X, y, sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the previous call."""
        self._check_incremental()
        with self._random_draws():
            return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """The predictions: shape (n_samples,) for one output (even when fitted on a (n, 1)
        y, as scikit-learn), else (n_samples, n_outputs)."""
        out = self._raw_predict(X)
        return out[:, 0] if self.n_outputs_ == 1 else out

    def _encoded_score(self, X, y, sample_weight=None):
        return float(r2_score(y, self.model_.predict(X), sample_weight=sample_weight))


def _dense(X):
    """Sparse X (OneHotEncoder's default output) as a dense float32 array, once per call:
    pynn's layers take dense batches."""
    return X.toarray() if sparse.issparse(X) else X


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and np.isfinite(value)


__all__ = ["MLPClassifier", "MLPRegressor"]
