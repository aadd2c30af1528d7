"""scikit-learn estimators backed by pynn: MLPClassifier and MLPRegressor.

They take scikit-learn's MLP parameter names and defaults (sklearn.neural_network) and train a
pynn Sequential (kept as `model_`), so they drop into Pipeline, GridSearchCV and
cross_val_score:

    from pynn.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=100, random_state=0).fit(X, y)

Differences from scikit-learn's own MLPs, by design:

* The objective is scikit-learn's. Its gradient is c times that of pynn's loss (c = 1/2 times
  the number of outputs for the regressor's squared error, which scikit-learn sums over
  outputs in its gradient but averages in its reported loss; the number of labels for a
  multi-label classifier, whose log-loss sums over labels; else 1), plus alpha * W / n for
  each mini-batch of n samples. The model trains on pynn's loss plus L2(alpha / (2 * c * n))
  on each Dense kernel and the optimizer takes c into account (sgd's learning rate times c,
  adam's epsilon over c), so the steps are scikit-learn's, and loss_curve_ reports
  scikit-learn's loss. For full batches this is exact; only the last, shorter batch of an
  epoch is penalised slightly less. Biases are not penalised, as in scikit-learn. alpha=0
  adds no regularizer (either way the network trains on pynn's native engine).
* random_state: an int (or RandomState) seeds the draws of each fit (weight initialisation,
  Keras' glorot_uniform, and shuffling) from a generator of its own, as scikit-learn does:
  pynn's global generator (pynn.set_seed) is left as it is, and fits in concurrent threads
  are reproducible. None draws from pynn's global generator.
* Stopping, as scikit-learn's: max_iter is the number of epochs; an epoch counts as no
  improvement when its loss_curve_ value is above best_loss_ - tol (best_loss_: the lowest
  so far), or with early_stopping=True when its score (accuracy, R^2) on a held-out
  validation_fraction is below best_validation_score_ + tol; training stops after more than
  n_iter_no_change such epochs in a row, and early_stopping restores the best-scoring
  weights. That state carries over warm_start and partial_fit calls, as in scikit-learn.
  Running all max_iter epochs without stopping warns with ConvergenceWarning.
* Outputs are computed in pynn's floatx (float32 unless pynn.set_floatx("float64"), X and
  y converted to it) and returned as float64.
* solver: 'adam', 'sgd' (Nesterov momentum as scikit-learn) or 'lbfgs' (scipy's L-BFGS-B
  on the whole data set, as scikit-learn: at most max_iter iterations and max_fun loss
  evaluations, tol the gradient tolerance; no partial_fit, early stopping or
  loss_curve_; the objective computed in float32; verbose prints nothing for it). sgd's
  learning_rate as scikit-learn's: 'invscaling' sets the rate to learning_rate_init /
  (t + 1) ** power_t after each epoch (t: the training samples seen so far), 'adaptive'
  divides it by 5 where the stopping rule would stop, and stops once it is at most 1e-6;
  adam ignores both, as in scikit-learn. A fit that diverges (non-finite weights) raises
  scikit-learn's ValueError. verbose prints scikit-learn's lines ("Iteration i, loss =
  ...", "Validation score: ...", the stopping rule's message).
* A classifier's reported loss (loss_curve_, loss_, best_loss_) is the exact
  cross-entropy, computed from the logits; scikit-learn clips probabilities to float64's
  epsilon, so each sample's log-loss there stops at ~36.04. The two differ only for
  predictions wrong by a logit margin beyond ~36 (unscaled features, early epochs), where
  the stopping rule can then decide otherwise; the training steps are the same.
* sample_weight weighs each sample's loss. scikit-learn (>= 1.7) divides each mini-batch's
  weighted loss and alpha's penalty by that batch's weight sum; pynn divides both by the
  batch's size times the mean weight of the training samples (it scales the weights to mean
  1). The two agree whenever every batch's weights sum to that, as with one batch per epoch
  (batch_size >= the training samples) or equal weights; otherwise a batch of heavier
  samples than average takes a larger step here than there (a lighter one a smaller step).
  In both, the weights' scale counts only through alpha's penalty (divided by a weight sum),
  and with mini-batches weighting is not the same as repeating samples.
* A classifier's fit refuses y of a single class (scikit-learn's fits it and then predicts
  that class for everything): there is nothing to learn, and a cross-validation fold that
  sees one class is better split with stratification than trained on.
* Sparse X (OneHotEncoder's default output) is accepted and made dense (float32) once per
  call: the network's layers take dense batches, so mind its size for very wide inputs.
* coefs_ and intercepts_ are read-only float64 copies of the model's weights (a tuple: an
  edit in place raises); assigning a list of arrays of the same shapes writes them into the
  model (in float32), so that a warm_start fit or partial_fit continues from them.
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
    from scipy.special import expit
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (check_classification_targets, type_of_target,
                                          unique_labels)
    from sklearn.utils.validation import (_check_sample_weight, check_is_fitted, column_or_1d,
                                          validate_data)
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("pynn.sklearn needs scikit-learn: pip install 'pynn[sklearn]'") from exc

from . import callbacks as callbacks_mod
from . import config, losses, optimizers, regularizers
from .data import all_finite, converted, overflow_error
from .layers import Dense, Input
from .model import Sequential

_SPARSE = ("csr", "csc", "coo")  # accepted, then densified (see _dense)
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "logistic": "sigmoid", "identity": "linear"}


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: checking parameters, building, training."""

    # (estimators pickled by a pynn before these existed load with them)
    _no_improvement_count = 0
    _label_binarizer = None

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
        if self.solver not in ("adam", "sgd", "lbfgs"):
            raise ValueError(f"solver must be 'lbfgs', 'sgd' or 'adam', got {self.solver!r}")
        for name, low in (("alpha", 0.0), ("tol", 0.0), ("power_t", 0.0)):
            value = getattr(self, name)
            if not _is_real(value) or not value >= low:
                raise ValueError(f"{name} must be a number >= {low}, got {value!r}")
        if self.learning_rate not in ("constant", "invscaling", "adaptive"):
            raise ValueError(f"learning_rate must be 'constant', 'invscaling' or 'adaptive', "
                             f"got {self.learning_rate!r}")
        if not _is_real(self.learning_rate_init) or not self.learning_rate_init > 0:
            raise ValueError(f"learning_rate_init must be > 0, got {self.learning_rate_init!r}")
        for name in ("max_iter", "n_iter_no_change", "max_fun"):
            value = getattr(self, name)
            if name == "n_iter_no_change" and isinstance(value, numbers.Real) and \
                    value == np.inf:
                continue  # scikit-learn's "never stop for want of improvement"
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (self.batch_size == "auto" or (_is_int(self.batch_size) and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got "
                             f"{self.batch_size!r}")
        # scikit-learn's range, [0, 1); early stopping needs some validation samples
        fraction = self.validation_fraction  # (lbfgs ignores early stopping)
        needs_some = self.early_stopping and self.solver != "lbfgs"
        if not (_is_real(fraction) and 0 <= fraction < 1 and (fraction > 0 or not needs_some)):
            raise ValueError(f"validation_fraction must be in [0, 1) (above 0 with "
                             f"early_stopping), got {fraction!r}")
        return sizes

    def _batch_size(self, n):
        # scikit-learn: 'auto' is min(200, n); a larger integer is clipped to n, with its
        # warning
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped")
        return min(int(self.batch_size), n)

    def _random_draws(self):
        """The context a fit draws its random numbers in: a generator seeded by random_state
        for this thread only (None: pynn's global generator)."""
        rs = self.random_state
        if rs is None:
            return contextlib.nullcontext()
        return config.seeded(rs if _is_int(rs) else check_random_state(rs).randint(2**31 - 1))

    # ---- model ------------------------------------------------------------------------------
    def _build_model(self, sizes, n_features, n_outputs, out_activation, loss):
        act = _ACTIVATIONS[self.activation]
        layers = [Input((n_features,))]
        layers += [Dense(s, activation=act) for s in sizes]
        layers.append(Dense(n_outputs, activation=out_activation))
        model = Sequential(layers)  # alpha's penalty is set by each fit (_set_penalty)
        model.compile(optimizer=self._optimizer(), loss=loss)
        return model

    def _loss_scale(self):
        """c: the gradient of scikit-learn's loss over that of pynn's (module docstring)."""
        raise NotImplementedError

    def _report_scale(self):
        """scikit-learn's reported loss (loss_curve_) over pynn's, the penalty left out."""
        return self._loss_scale()

    def _set_penalty(self, denominator):
        """alpha's L2 on each kernel for batches whose loss is divided by `denominator`
        (scikit-learn's alpha * ||W||^2 / (2 * denominator), over c); returns its factor."""
        l2 = self.alpha / (2.0 * self._loss_scale() * denominator) if self.alpha > 0 else 0.0
        reg = regularizers.L2(l2) if l2 else None
        for layer in self._dense_layers():
            layer.kernel_regularizer = reg
        return l2

    def _optimizer(self):
        # pynn's objective is scikit-learn's over c, and so are its gradients: sgd's steps are
        # scikit-learn's with a rate c times larger, adam's with an epsilon c times smaller.
        # (lbfgs steps in scipy: the model's optimizer goes unused)
        c = self._loss_scale()
        if self.solver in ("adam", "lbfgs"):
            return optimizers.Adam(learning_rate=self.learning_rate_init, beta_1=self.beta_1,
                                   beta_2=self.beta_2, epsilon=self.epsilon / c)
        return optimizers.SGD(learning_rate=self.learning_rate_init * c, momentum=self.momentum,
                              nesterov=bool(self.nesterovs_momentum and self.momentum > 0))

    def _warm_restart(self, sizes):
        """A warm_start fit keeps the weights and, as scikit-learn, takes the current solver
        and learning rate (a new optimizer)."""
        dense = self._dense_layers()
        act = _ACTIVATIONS[self.activation]
        if [d.units for d in dense[:-1]] != sizes or any(d.activation.name != act
                                                         for d in dense[:-1]):
            raise ValueError(f"warm_start keeps the fitted network: hidden_layer_sizes and "
                             f"activation cannot change (fitted {[d.units for d in dense[:-1]]}, "
                             f"{dense[0].activation.name!r}; now {sizes}, {act!r})")
        self.model_.compile(optimizer=self._optimizer(), loss=self.model_.loss)

    def _stochastic(self):
        """partial_fit's availability (scikit-learn's available_if): not with lbfgs."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(f"partial_fit is only available for stochastic optimizers; "
                                 f"{self.solver} is not stochastic.")
        return True

    def _check_incremental(self):
        if self.early_stopping:  # its held-out split spans one fit call (scikit-learn's error)
            raise ValueError("partial_fit does not support early_stopping=True")

    def _first_pass(self, incremental):
        """Whether this fit starts a new network (scikit-learn: unless warm_start or
        partial_fit continue a fitted one)."""
        return not (hasattr(self, "model_") and (incremental or self.warm_start))

    def _init_stopping(self, first):
        """scikit-learn's stopping state (_initialize), set by a new network's fit and kept by
        warm_start and partial_fit; a warm_start fit that turns early_stopping on or off
        starts the state it then needs (where scikit-learn fails): best_loss_ is None with
        early_stopping, validation_scores_ and best_validation_score_ None without."""
        if first or not hasattr(self, "best_loss_"):  # (an lbfgs fit keeps none of it:
            # a warm_start fit or partial_fit switching to sgd or adam starts the state)
            self.loss_curve_ = [] if first else list(getattr(self, "loss_curve_", []))
            self.t_ = 0 if first else getattr(self, "t_", 0)
            self._no_improvement_count = 0
            self.validation_scores_ = self.best_validation_score_ = self.best_loss_ = None
            self._best_weights = self.model_.get_weights()
        if not hasattr(self, "_best_weights"):  # (pickled by a pynn before it existed)
            self._best_weights = self.model_.get_weights()
        if self.early_stopping:
            self.best_loss_ = None
            if self.validation_scores_ is None:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            if self.best_loss_ is None:
                self.best_loss_ = np.inf
        self.loss_curve_ = list(self.loss_curve_)  # a list a caller holds is left as it was

    def _train(self, X, y, incremental, first, sample_weight=None, sizes=None):
        """Run fit (or one partial_fit pass) on the encoded targets; updates the curves and
        the stopping state as scikit-learn's _fit_stochastic."""
        if not first and not incremental:
            self._warm_restart(sizes)
        if self.solver == "lbfgs":
            if first:  # (scikit-learn's lbfgs counts no samples)
                self.t_ = 0
            self._train_lbfgs(X, y, sample_weight)
            self._check_finite_weights()
            return
        self._init_stopping(first)
        validation = None
        if self.early_stopping:  # (partial_fit refused it)
            X, validation, y, sample_weight = self._validation_split(X, y, sample_weight)
        n = X.shape[0]
        batch_size = self._batch_size(n)
        sample_weight, weight_mean = _mean_one(sample_weight)
        l2 = self._set_penalty(batch_size * weight_mean)
        epochs = 1 if incremental else self.max_iter
        if l2 and self._report_scale() != self._loss_scale():
            tracker = _EpochsWithPenalty(self, validation, n, l2, batch_size)
        else:
            tracker = _Epochs(self, validation, n)
        done_before = len(self.loss_curve_)
        interrupted = False
        try:
            self.model_.fit(X, y, batch_size=batch_size, epochs=epochs, verbose=0,
                            shuffle=self.shuffle, callbacks=[tracker],
                            sample_weight=sample_weight)
        except KeyboardInterrupt:  # as scikit-learn: the fit ends where it was, and the
            # estimator is finished as after any fit (best weights, n_iter_, loss_, t_)
            warnings.warn("Training interrupted by user.")
            interrupted = True
        n_iter = len(self.loss_curve_) - done_before  # this call's whole epochs
        if not (incremental or interrupted) and n_iter == epochs and \
                not self.model_.stop_training:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({epochs}) reached and "
                          f"the optimization hasn't converged yet.", ConvergenceWarning)
        if validation is not None:  # scikit-learn restores the best-scoring weights
            self.model_.set_weights(self._best_weights)
        self.n_iter_ = n_iter  # this call's epochs (loss_curve_ spans them all)
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else float("nan")
        self.t_ += n * n_iter  # training samples seen, as scikit-learn counts
        self._check_finite_weights()

    def _train_lbfgs(self, X, y, sample_weight):
        """scikit-learn's lbfgs (its _fit_lbfgs): scipy's L-BFGS-B on the whole data set's
        objective at scikit-learn's scale (the loss and alpha's penalty, their gradients from
        the model's layer-by-layer backward), from the current weights; at most max_iter
        iterations and max_fun evaluations, gtol=tol. No loss_curve_, early stopping or
        batches, as in scikit-learn."""
        from scipy.optimize import minimize

        model = self.model_
        n = X.shape[0]
        sample_weight, weight_mean = _mean_one(sample_weight)
        self._set_penalty(n * weight_mean)
        model._prepare_compiled(training=True)
        b = model.backend
        xd = b.asarray(model._inputs(X), model._dtype)
        targets = model._targets(y, n)
        yd = b.asarray(targets, targets.dtype)
        wd = None if sample_weight is None else b.asarray(sample_weight, model._dtype)
        params = model.trainable_params
        ends = np.cumsum([0] + [int(np.prod(p.shape)) for p in params])
        c, report = self._loss_scale(), self._report_scale()

        def unpack(theta):
            for p, start, end in zip(params, ends[:-1], ends[1:]):
                p.assign(theta[start:end].reshape(p.shape))

        def objective(theta):
            unpack(theta)
            total, _ = model._compute_gradients(xd, yd, wd)
            penalty = model._regularization()
            grad = np.concatenate([b.to_numpy(p.grad).ravel() for p in params])
            return report * (total - penalty) + c * penalty, c * grad.astype(np.float64)

        start = np.concatenate([p.numpy().ravel() for p in params]).astype(np.float64)
        result = minimize(objective, start, method="L-BFGS-B", jac=True,
                          options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                   "gtol": self.tol})
        unpack(result.x)
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        if result.status != 0:
            message = result.message.decode() if isinstance(result.message, bytes) \
                else result.message
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(status={result.status}): {message}. Increase the number of "
                          f"iterations (max_iter) or scale the data.", ConvergenceWarning)

    def _check_finite_weights(self):
        """scikit-learn's error after a fit that diverged (NaN or infinite weights)."""
        if not all(np.isfinite(w).all() for w in self.model_.get_weights()):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")

    def _update_no_improvement_count(self, validation):
        """scikit-learn's rule, after each epoch (its _update_no_improvement_count)."""
        if validation is not None:
            score = self._encoded_score(*validation)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + self.tol:  # NaN: reset, as scikit-learn
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = self.model_.get_weights()
        else:
            loss = self.loss_curve_[-1]
            if loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, loss)
        return self._no_improvement_count > self.n_iter_no_change

    def _iteration_ends(self, optimizer, samples_seen):
        """scikit-learn's sgd schedule after each epoch: 'invscaling' sets the rate to
        learning_rate_init / (t + 1) ** power_t, t the training samples seen so far."""
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            optimizer.learning_rate = (self._loss_scale() * self.learning_rate_init
                                       / (samples_seen + 1) ** self.power_t)

    def _trigger_stopping(self, optimizer):
        """Whether training stops where the stopping rule says so (scikit-learn's
        trigger_stopping, and its verbose lines): 'adaptive' sgd divides its rate by 5
        instead, until the rate is at most 1e-6."""
        what = "Validation score" if self.early_stopping else "Training loss"
        said = (f"{what} did not improve more than tol={self.tol:f} for "
                f"{self.n_iter_no_change} consecutive epochs.")
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(f"{said} Stopping.")
            return True
        c = self._loss_scale()
        rate = float(optimizer.learning_rate) / c
        if rate <= 1e-6:
            if self.verbose:
                print(f"{said} Learning rate too small. Stopping.")
            return True
        optimizer.learning_rate = c * (rate / 5.0)
        if self.verbose:
            print(f"{said} Setting learning rate to {rate / 5.0:f}")
        return False

    def _sample_weight(self, sample_weight, X):
        """The checked weights (float64), or None."""
        if sample_weight is None:
            return None
        w = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if not w.sum() > 0:
            raise ValueError("sample_weight must have a positive sum")
        return w

    def _validation_split(self, X, y, sample_weight):
        """(X_train, validation data tuple, y_train, sample_weight_train): a held-out
        validation_fraction, stratified for a binary classifier as scikit-learn's (a class
        too small to stratify raises its error)."""
        arrays = [X, y] if sample_weight is None else [X, y, sample_weight]
        parts = train_test_split(*arrays, test_size=self.validation_fraction,
                                 random_state=self.random_state,
                                 stratify=y if self._stratify_validation() else None)
        train, held_out = parts[0::2], parts[1::2]
        if held_out[0].shape[0] < 2:  # scikit-learn's check and message
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
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
        """Each layer's weight matrix, (inputs, units), as scikit-learn's coefs_: a tuple of
        read-only float64 copies (an edit in place would not reach the model); assign a list
        of arrays to set them."""
        return self._weights("kernel")

    @coefs_.setter
    def coefs_(self, arrays):
        self._set_weights("coefs_", "kernel", arrays)

    @property
    def intercepts_(self):
        """Each layer's bias vector, as scikit-learn's intercepts_: read-only copies, as
        coefs_; assign a list of arrays to set them."""
        return self._weights("bias")

    @intercepts_.setter
    def intercepts_(self, arrays):
        self._set_weights("intercepts_", "bias", arrays)

    def _weights(self, attr):
        out = []
        for layer in self._dense_layers():
            array = getattr(layer, attr).numpy().astype(np.float64)
            array.flags.writeable = False
            out.append(array)
        return tuple(out)

    def _set_weights(self, name, attr, arrays):
        """Write arrays (one per layer, of its shape, real numbers) into the model, all
        checked before any is written (stored as float32, pynn's floatx)."""
        params = [getattr(layer, attr) for layer in self._dense_layers()]
        if isinstance(arrays, np.ndarray) or not hasattr(arrays, "__len__"):
            raise TypeError(f"{name} takes a list of arrays, one per layer, got "
                            f"{type(arrays).__name__}")
        if len(arrays) != len(params):
            raise ValueError(f"{name} takes {len(params)} arrays (one per layer), got "
                             f"{len(arrays)}")
        checked = []
        for i, (param, array) in enumerate(zip(params, arrays)):
            array = np.asarray(array)
            if array.dtype.kind not in "iuf":
                raise TypeError(f"{name}[{i}] must hold real numbers, got dtype {array.dtype}")
            if array.shape != param.shape:
                raise ValueError(f"{name}[{i}] must have shape {param.shape}, got "
                                 f"{array.shape}")
            if not np.isfinite(array).all():
                raise ValueError(f"{name}[{i}] holds NaN or infinity")
            checked.append(array)
        for param, array in zip(params, checked):
            param.assign(array)

    def _stratify_validation(self):
        return False

    def _raw_predict(self, X, logits=False):
        """The model's outputs for X as float64; logits: the last layer's pre-activations."""
        check_is_fitted(self, "model_")
        X = _dense(validate_data(self, _numeric(X), reset=False, dtype=_floatx(),
                                 accept_sparse=_SPARSE))
        model = self.model_
        if logits:  # in pieces of 1024 rows, as predict: memory bounded by the widest layer
            b = model.backend
            pieces = [b.to_numpy(model._forward(b.asarray(model._inputs(X[i:i + 1024]),
                                                           model._dtype),
                                                training=False, logits=True))
                      for i in range(0, X.shape[0], 1024)]
            return np.concatenate(pieces).astype(np.float64)  # (validate_data: X not empty)
        return np.asarray(model.predict(X), dtype=np.float64)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier with scikit-learn's API, trained by pynn.

    Two classes use one sigmoid output and binary cross-entropy; more use softmax and sparse
    categorical cross-entropy. Labels may be of any type (strings too): they are encoded
    through `classes_`. predict_proba returns one column per class (two for binary).
    Multi-label targets (a 0/1 indicator matrix, as scikit-learn takes) use one sigmoid
    output per label; predict returns the indicator matrix (sparse after a sparse y, as
    scikit-learn's), predict_proba each label's probability, classes_ is 0..n_labels-1.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def _stratify_validation(self):
        return self.n_outputs_ == 1  # binary only, as scikit-learn (not multi-class)

    def _encode(self, y, classes=None, reset=True):
        """Targets for the model: label codes (float 0/1 for binary), or the float indicator
        matrix of a multi-label y (sparse too). reset: y (and classes) set classes_ and the
        kind of target, only once every check passed (a refused refit left classes_ that no
        longer matched model_)."""
        multilabel = np.ndim(y) == 2 and type_of_target(y) == "multilabel-indicator"
        # predict answers in kind (a sparse y, a sparse one), through scikit-learn's own
        binarizer = LabelBinarizer().fit(y) if reset and multilabel else None
        y = y.toarray() if sparse.issparse(y) else y
        if multilabel if reset else self._multilabel:
            if not multilabel:
                raise ValueError(f"the model was fitted on a multi-label indicator matrix; y "
                                 f"must be one too (0/1 values, shape (n, "
                                 f"{len(self.classes_)})), got {type_of_target(y)!r} y")
            if reset:
                labels = np.arange(y.shape[1])
                if classes is not None and not np.array_equal(np.unique(classes), labels):
                    raise ValueError(f"classes={np.asarray(classes).tolist()!r}: a multi-label "
                                     f"y with {y.shape[1]} columns has classes "
                                     f"{labels.tolist()}")
                self._multilabel, self._label_binarizer, self.classes_ = True, binarizer, labels
            elif y.shape[1] != len(self.classes_):
                raise ValueError(f"y has {y.shape[1]} labels, the model was fitted on "
                                 f"{len(self.classes_)}")
            return np.asarray(y, dtype=np.float32)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if reset:
            # scikit-learn's classes_ (a Series of strings gives str, not object, labels)
            labels = unique_labels(y if classes is None else np.asarray(classes))
            if len(labels) < 2:
                raise ValueError(f"MLPClassifier needs samples of at least 2 classes to train; "
                                 f"got 1 class ({labels[0].item()!r})")
        else:
            labels = self.classes_
        unknown = np.setdiff1d(np.unique(y), labels)
        if unknown.size:
            raise ValueError(f"y holds labels {unknown.tolist()} not among classes_ "
                             f"{labels.tolist()}")
        if reset:
            self._multilabel, self._label_binarizer, self.classes_ = False, None, labels
        codes = np.searchsorted(self.classes_, y)
        return codes.astype(np.float32) if len(self.classes_) == 2 else codes.astype(np.int64)

    def _loss_scale(self):
        # scikit-learn's binary log-loss sums over the labels of a multi-label y
        return len(self.classes_) if self._multilabel else 1

    def _fit(self, X, y, sample_weight=None, classes=None, incremental=False):
        first = self._first_pass(incremental)
        sizes = self._check_params()
        X, y = validate_data(self, _numeric(X), y, reset=first, dtype=_floatx(),
                             accept_sparse=_SPARSE, multi_output=True)
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
                "binary_crossentropy" if sigmoid else "sparse_categorical_crossentropy")
            self.out_activation_ = "logistic" if sigmoid else "softmax"
            self.n_layers_ = len(sizes) + 2
        else:
            if classes is not None and not self._multilabel and \
                    not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError(f"classes={np.asarray(classes).tolist()!r} differs from the "
                                 f"classes of the first partial_fit call, "
                                 f"{self.classes_.tolist()}")
            codes = self._encode(y, reset=False)
        self._train(X, codes, incremental, first, sample_weight, sizes)
        return self

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to max_iter epochs, from scratch unless warm_start;
        sample_weight scales each sample's loss. Returns self."""
        with self._random_draws():
            return self._fit(X, y, sample_weight)

    @available_if(_BaseMLP._stochastic)
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
        check_is_fitted(self, "model_")
        if self._multilabel or len(self.classes_) == 2:
            # sigmoid outputs from the logits in float64: float32's reach 1.0 exactly from
            # a logit of 17 (scikit-learn's, in float64, stay below 1 up to 37)
            p = expit(self._raw_predict(X, logits=True))
            return p if self._multilabel else np.column_stack([1.0 - p[:, 0], p[:, 0]])
        out = self._raw_predict(X)
        return out / out.sum(axis=1, keepdims=True)  # float32 rounding: rows sum to 1

    def predict_log_proba(self, X):
        """The log of predict_proba (-inf where a probability is 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample, as a label from classes_ (for multi-label
        targets, the 0/1 indicator matrix: labels with probability > 0.5)."""
        proba = self.predict_proba(X)  # checks fitted before classes_ is looked at
        if self._multilabel:  # int 0/1, sparse after a sparse y, as scikit-learn's
            if self._label_binarizer is None:  # (pickled by a pynn before it existed)
                return (proba > 0.5).astype(int)
            return self._label_binarizer.inverse_transform(proba)
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor with scikit-learn's API, trained by pynn. loss:
    'squared_error' (half the mean squared error, linear output) or 'poisson' (half the
    Poisson deviance with a log-link: predictions are exp of the network's output; y >= 0;
    trained layer by layer), as scikit-learn's (>= 1.7, whose first argument it is too).
    y may be 1-D or 2-D (several outputs); as scikit-learn's, predict returns 1-D for one
    output, even when fitted on a (n, 1) y."""

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.loss = loss

    loss = "squared_error"  # (estimators pickled before the parameter existed)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = self.loss == "poisson"  # (y >= 0 is checked)
        return tags

    def _loss_scale(self):
        # scikit-learn's gradient is that of the loss summed over outputs (the squared
        # error's halved)
        return self.n_outputs_ * (1.0 if self._poisson() else 0.5)

    def _report_scale(self):
        # its reported loss: half the mean squared error over all outputs; the deviance
        # summed over the outputs
        return float(self.n_outputs_) if self._poisson() else 0.5

    def _poisson(self):
        return getattr(self, "out_activation_", None) == "exp"

    def _fit(self, X, y, sample_weight=None, incremental=False):
        first = self._first_pass(incremental)
        sizes = self._check_params()
        X, y = validate_data(self, _numeric(X), _numeric(y, "y"), reset=first, dtype=_floatx(),
                             accept_sparse=_SPARSE, multi_output=True, y_numeric=True)
        X = _dense(X)
        sample_weight = self._sample_weight(sample_weight, X)
        source = np.asarray(y)
        y = converted(source, _floatx())  # 1e39 became inf, reported as "NaN or infinity"
        if not all_finite(y):
            raise overflow_error(source, y, "y") or ValueError("y contains NaN or infinity")
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        if self.loss not in ("squared_error", "poisson"):
            raise ValueError(f"loss must be 'squared_error' or 'poisson', got {self.loss!r}")
        if first:
            self.n_outputs_ = y2.shape[1]  # before the optimizer, which scales by it
            # (out_activation_ first: the optimizer and the penalty read the loss's scale)
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
            self.model_ = self._build_model(
                sizes, X.shape[1], y2.shape[1], "linear",
                losses._HalfPoissonLogLink() if self.loss == "poisson" else "mse")
            self.n_layers_ = len(sizes) + 2
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} outputs, the model was fitted on "
                             f"{self.n_outputs_}")
        elif (self.loss == "poisson") != self._poisson():
            raise ValueError(f"warm_start and partial_fit keep the fitted loss: fitted with "
                             f"{'poisson' if self._poisson() else 'squared_error'}, now "
                             f"loss={self.loss!r}")
        self._train(X, y2, incremental, first, sample_weight, sizes)
        return self

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to max_iter epochs, from scratch unless warm_start;
        sample_weight scales each sample's loss. Returns self."""
        with self._random_draws():
            return self._fit(X, y, sample_weight)

    @available_if(_BaseMLP._stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the previous call."""
        self._check_incremental()
        with self._random_draws():
            return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """The predictions: shape (n_samples,) for one output (even when fitted on a (n, 1)
        y, as scikit-learn), else (n_samples, n_outputs)."""
        out = self._raw_predict(X)
        if self._poisson():  # the log-link's inverse
            out = np.exp(out)
        return out[:, 0] if self.n_outputs_ == 1 else out

    def _encoded_score(self, X, y, sample_weight=None):
        pred = self.model_.predict(X)
        if self._poisson():
            pred = np.exp(pred)
        if not np.isfinite(pred).all():  # as scikit-learn (r2_score would raise)
            return float("nan")
        return float(r2_score(y, pred, sample_weight=sample_weight))


class _Epochs(callbacks_mod.Callback):
    """Each epoch's end as in scikit-learn: its loss appended to loss_curve_, then its
    stopping rule, which ends training once it says so."""

    def __init__(self, estimator, validation, n):
        super().__init__()
        self.estimator, self.validation, self.n = estimator, validation, n
        self.samples_seen = getattr(estimator, "t_", 0)  # (before this fit's epochs)

    def reported_loss(self, loss):
        return self.estimator._report_scale() * float(loss)

    def on_epoch_end(self, epoch, logs=None):
        est = self.estimator
        est.loss_curve_.append(self.reported_loss(logs["loss"]))
        if est.verbose:  # scikit-learn's lines, at its scale (not pynn's progress bar)
            print("Iteration %d, loss = %.8f" % (epoch + 1, est.loss_curve_[-1]))
        self.samples_seen += self.n
        stop = est._update_no_improvement_count(self.validation)
        est._iteration_ends(self.model.optimizer, self.samples_seen)
        if stop:
            if est._trigger_stopping(self.model.optimizer):
                self.model.stop_training = True
            else:  # a smaller rate instead ('adaptive')
                est._no_improvement_count = 0


class _EpochsWithPenalty(_Epochs):
    """_Epochs where scikit-learn reports the penalty at another scale than the data loss
    (a regressor of several outputs): the epoch's mean penalty is summed from each batch's
    weights, read before its step (this makes the engine return after every batch)."""

    def __init__(self, estimator, validation, n, l2, batch_size):
        super().__init__(estimator, validation, n)
        self.l2, self.batch_size = l2, batch_size
        self.penalty = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.penalty = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        size = min(self.batch_size, self.n - batch * self.batch_size)
        squares = sum(float(np.square(layer.kernel.numpy(), dtype=np.float64).sum())
                      for layer in self.estimator._dense_layers())
        self.penalty += self.l2 * squares * size / self.n  # batch-size-weighted, as the loss

    def reported_loss(self, loss):
        # pynn's loss is data + penalty; scikit-learn reports each at its own scale
        est = self.estimator
        return est._report_scale() * (float(loss) - self.penalty) \
            + est._loss_scale() * self.penalty


def _mean_one(sample_weight):
    """(the training samples' weights scaled to mean 1 as float32, their mean), or (None,
    1.0) unweighted: see the module docstring."""
    if sample_weight is None:
        return None, 1.0
    mean = float(sample_weight.mean())
    if not mean > 0:
        raise ValueError("sample_weight must have a positive sum (over the training samples)")
    return (sample_weight / mean).astype(_floatx()), mean


def _dense(X):
    """Sparse X (OneHotEncoder's default output) as a dense float32 array, once per call:
    pynn's layers take dense batches."""
    return X.toarray() if sparse.issparse(X) else X


def _floatx():
    """The dtype the estimators hand the network: pynn's floatx (float64 after
    pynn.set_floatx("float64"), which keeps X's digits too)."""
    return np.dtype(config.floatx())


def _numeric(values, name="X"):
    """values, refused if it is an array of strings, as scikit-learn's dtype='numeric' does
    (the cast to a float type would read "1.5" as a number)."""
    kind = np.asarray(values).dtype.kind if isinstance(values, (list, tuple)) \
        else getattr(getattr(values, "dtype", None), "kind", None)
    if kind in ("U", "S"):
        raise ValueError(f"{name}: dtype='numeric' is not compatible with arrays of "
                         f"bytes/strings. Convert your data to numeric values explicitly "
                         f"instead.")
    return values


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and np.isfinite(value)


__all__ = ["MLPClassifier", "MLPRegressor"]
