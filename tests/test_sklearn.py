"""pynn.sklearn: scikit-learn's estimator checks, and the estimators inside sklearn's tools."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.6")  # validate_data, __sklearn_tags__

from sklearn.datasets import load_iris, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import pynn  # noqa: E402
from pynn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Few epochs on purpose: that they end before convergence is expected.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Small networks and few epochs keep the ~100 checks to a couple of seconds; a learning rate
# of 0.01 still reaches the accuracy/R^2 that check_classifiers_train/check_regressors_train
# require.
_CHECKED = [MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01),
            MLPRegressor(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01),
            MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=100),
            MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=100)]


def _expected_failed_checks(estimator):
    # {check name: reason} for checks that fail by design (they run, and must fail).
    return {**_weight_checks(estimator), **_numpy_backend_checks()}


def _numpy_backend_checks():
    """On the numpy backend (an install without pynn._C), numpy's BLAS sums a product's
    terms in an order that depends on the number of rows: predictions of a subset differ
    from the whole set's in the last bits of float32 (4 of 20 by up to 3.6e-7, seen), past
    the check's tolerance. The cpu kernels give a row the same bits alone and in a batch."""
    if pynn.get_backend().name != "numpy":
        return {}
    return {"check_methods_subset_invariance": "numpy's BLAS rounds a row by the batch's "
                                               "size (the numpy backend only)"}


def _weight_checks(estimator):
    if estimator.solver == "lbfgs":
        # The whole data set each step: a weight of 2 is a repeated sample (the predictions
        # agree to 2e-7 after 5 iterations, 6e-6 after 20), but 100 iterations of a float32
        # objective amplify the rounding past the check's float64 tolerance
        why = ("lbfgs on a float32 objective: weighted and repeated samples agree to 2e-7 "
               "after 5 iterations, but the check's 100 amplify the rounding (to 1e-3 and "
               "more)")
        return {"check_sample_weight_equivalence_on_dense_data": why,
                "check_sample_weight_equivalence_on_sparse_data": why}
    why = ("a weight of 2 is not a repeated sample for mini-batch Adam/SGD: repeats change "
           "the number of samples, so the batch size ('auto'), the shuffled order and the "
           "steps per epoch (scikit-learn's MLPs pass it only with lbfgs or tuned sgd)")
    return {"check_sample_weight_equivalence_on_dense_data": why,
            "check_sample_weight_equivalence_on_sparse_data": why}  # sparse input densified


@parametrize_with_checks(_CHECKED, expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def iris():
    data = load_iris()
    return data.data, data.target


def test_iris_accuracy_in_a_pipeline(iris):
    x, y = iris
    clf = Pipeline([("scale", StandardScaler()),
                    ("mlp", MLPClassifier(hidden_layer_sizes=(32,), max_iter=200,
                                          learning_rate_init=0.01, random_state=0))])
    clf.fit(x, y)
    assert clf.score(x, y) > 0.9
    mlp = clf.named_steps["mlp"]
    np.testing.assert_array_equal(mlp.classes_, [0, 1, 2])
    assert mlp.n_features_in_ == 4
    assert isinstance(mlp.model_, pynn.Sequential)
    assert mlp.n_iter_ == len(mlp.loss_curve_) >= 1
    assert mlp.loss_ == mlp.loss_curve_[-1]
    proba = clf.predict_proba(x)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_string_labels_binary_two_probability_columns(iris):
    x, y = iris
    keep = y < 2
    labels = np.array(["setosa", "versicolor"])[y[keep]]
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=100, learning_rate_init=0.01,
                        random_state=1).fit(x[keep], labels)
    assert clf.model_.layers[-1].units == 1  # one sigmoid output for two classes
    assert clf.predict_proba(x[keep]).shape == (100, 2)
    assert set(clf.predict(x[keep])) <= {"setosa", "versicolor"}
    assert clf.score(x[keep], labels) > 0.9


def test_cross_val_score_and_grid_search(iris):
    x, y = iris
    x = StandardScaler().fit_transform(x)
    base = MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, learning_rate_init=0.01,
                         random_state=0)
    scores = cross_val_score(base, x, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    grid = GridSearchCV(base, {"hidden_layer_sizes": [(8,), (16,)], "alpha": [1e-4, 1e-2]},
                        cv=2).fit(x, y)
    assert set(grid.best_params_) == {"hidden_layer_sizes", "alpha"}
    assert grid.best_estimator_.score(x, y) > 0.8


def test_regressor_learns_and_predicts_scikit_learns_shapes():
    x, y = make_regression(n_samples=300, n_features=5, noise=1.0, random_state=0)
    y = y / y.std()
    reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, learning_rate_init=0.01,
                       random_state=0).fit(x, y)
    assert reg.predict(x).shape == (300,)
    assert reg.score(x, y) > 0.9
    y2 = np.column_stack([y, -y])
    reg2 = MLPRegressor(hidden_layer_sizes=(16,), max_iter=20, random_state=0).fit(x, y2)
    assert reg2.predict(x).shape == (300, 2)
    # one output fitted as (n, 1): 1-D predictions, as sklearn.neural_network.MLPRegressor
    reg1 = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(x, y[:, None])
    assert reg1.predict(x).shape == (300,)


def test_same_random_state_same_model(iris):
    x, y = iris
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=3).fit(x, y)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=3).fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))


def test_partial_fit_needs_classes_first_and_continues(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(x, y)
    clf.partial_fit(x[:50], y[:50], classes=[0, 1, 2])  # the first chunk holds one class
    clf.partial_fit(x[50:], y[50:])
    # as scikit-learn: one epoch per call; t_ the samples seen over all calls
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 2 and clf.t_ == len(x)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    with pytest.raises(ValueError, match="not among classes_"):
        clf.partial_fit(x[:5], np.array([0, 1, 2, 3, 0]))


def test_a_refused_refit_leaves_the_fitted_classifier_as_it_was(iris):
    # a one-class refit raised after setting classes_: predict then named a class the kept
    # model never learned (or failed with an IndexError)
    x, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(x, names)
    before = clf.predict_proba(x[:20])
    with pytest.raises(ValueError, match=r"at least 2 classes to train; got 1 class \('z'\)"):
        clf.fit(x[:5], np.array(["z"] * 5))
    np.testing.assert_array_equal(clf.classes_, ["setosa", "versicolor", "virginica"])
    np.testing.assert_array_equal(clf.predict_proba(x[:20]), before)
    assert set(clf.predict(x)) <= set(clf.classes_)
    multi = (x[:, :3] > x[:, :3].mean(axis=0)).astype(int)
    fresh = MLPClassifier(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match=r"classes=\[0, 1\]: a multi-label y with 3 columns"):
        fresh.partial_fit(x, multi, classes=np.array([0, 1]))
    assert not hasattr(fresh, "classes_")  # nothing set by the refused call
    with pytest.raises(ValueError, match=r"got 1 class \(0\.0\)"):  # numbers as numbers
        MLPClassifier().fit(x[:4], np.zeros(4))
    stream = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    stream.partial_fit(x, y, classes=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"classes=\[0, 1\] differs .* \[0, 1, 2\]"):
        stream.partial_fit(x[y < 2], y[y < 2], classes=np.array([0, 1]))


def test_early_stopping_restores_best_and_records_scores(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, early_stopping=True,
                        n_iter_no_change=3, tol=0.5, random_state=0).fit(x, y)
    # tol=0.5 is never met after the first epoch: patience runs out after 3 more.
    assert clf.n_iter_ < 300
    # as scikit-learn: the validation accuracy of each epoch, not a loss
    assert len(clf.validation_scores_) == clf.n_iter_
    # (15 held-out samples: each score is a count of right answers over 15)
    np.testing.assert_allclose(np.multiply(clf.validation_scores_, 15) % 1, 0, atol=1e-9)
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_validation_scores_are_r2_for_the_regressor():
    x, y = make_regression(n_samples=200, n_features=4, noise=0.5, random_state=1)
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=30, early_stopping=True,
                       learning_rate_init=0.01, random_state=0).fit(x, y / y.std())
    assert len(reg.validation_scores_) == reg.n_iter_
    assert max(reg.validation_scores_) > 0.5  # R^2 climbs as it learns
    assert reg.validation_scores_[-1] > reg.validation_scores_[0]


def test_warm_start_continues_and_checks_the_classes(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, warm_start=True, random_state=0,
                        tol=0.0)
    clf.fit(x, y)
    model, weights = clf.model_, clf.coefs_
    clf.fit(x, y)
    # as scikit-learn: n_iter_ counts this call's epochs, loss_curve_ and t_ all of them
    assert clf.model_ is model and clf.n_iter_ == 3 and clf.t_ == 6 * len(x)
    assert len(clf.loss_curve_) == 6
    assert not np.array_equal(clf.coefs_[0], weights[0])  # trained on from there
    cold = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0, tol=0.0)
    cold.fit(x, y)
    cold.fit(x, y)
    assert cold.n_iter_ == 3 and cold.t_ == 3 * len(x)  # fit restarts without warm_start
    with pytest.raises(ValueError, match="warm_start can only be used where y has the same"):
        clf.fit(x[y < 2], y[y < 2])
    # as scikit-learn, a warm fit takes the current solver, rate and alpha (fine-tuning at a
    # lower rate silently kept the old Adam before)
    clf.set_params(solver="sgd", learning_rate_init=1e-4, alpha=10.0).fit(x, y)
    assert type(clf.model_.optimizer) is pynn.optimizers.SGD
    assert clf.model_.optimizer.learning_rate == 1e-4
    assert clf.model_.layers[1].kernel_regularizer.l2 == pytest.approx(10.0 / (2 * 150))
    with pytest.raises(ValueError, match="hidden_layer_sizes and activation cannot change"):
        clf.set_params(hidden_layer_sizes=(4,)).fit(x, y)


def test_warm_start_appends_validation_scores(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, warm_start=True, random_state=0,
                        early_stopping=True, tol=0.0, n_iter_no_change=50)
    clf.fit(x, y).fit(x, y)
    assert len(clf.validation_scores_) == 6 and clf.n_iter_ == 3
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    clf.set_params(early_stopping=False).fit(x, y)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None


@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_stochastic_fit_continues_an_lbfgs_one(iris, early_stopping):
    """lbfgs keeps no stopping state (loss_curve_, best_loss_): a warm_start fit or a
    partial_fit that switches to sgd or adam starts it from the lbfgs weights (scikit-learn
    fails with an AttributeError)."""
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=5, random_state=0)
    weights = clf.fit(x, y).coefs_[0].copy()
    clf.set_params(warm_start=True, solver="adam", early_stopping=early_stopping,
                   max_iter=3, tol=0.0, n_iter_no_change=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3
    assert (clf.best_loss_ is None) == early_stopping
    assert not np.array_equal(clf.coefs_[0], weights)
    other = MLPClassifier(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=5, random_state=0)
    other.fit(x, y).set_params(solver="sgd").partial_fit(x, y)
    assert len(other.loss_curve_) == 1 and other.t_ == len(x)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_an_interrupted_fit_ends_as_scikit_learns(iris, monkeypatch, early_stopping):
    """Ctrl-C during fit (here from the epoch tracker after 4 epochs): as scikit-learn, a
    warning, and the estimator finished as after any fit: n_iter_, loss_ and t_ of the
    epochs done, the best-validation weights back (KeyboardInterrupt left them stale)."""
    from pynn import sklearn as pynn_sklearn

    original = pynn_sklearn._Epochs.on_epoch_end

    def interrupting(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(pynn_sklearn._Epochs, "on_epoch_end", interrupting)
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0, tol=0.0,
                        early_stopping=early_stopping, n_iter_no_change=100)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        try:
            clf.fit(x, y)
        except KeyboardInterrupt:  # (not let through: it would end the whole test session)
            pytest.fail("fit let the KeyboardInterrupt through")
    assert clf.n_iter_ == 4 and len(clf.loss_curve_) == 4 and clf.loss_ == clf.loss_curve_[-1]
    assert clf.t_ == 4 * (len(x) - (15 if early_stopping else 0))  # (the held-out 10%)
    if early_stopping:
        for a, b in zip(clf.model_.get_weights(), clf._best_weights):
            np.testing.assert_array_equal(a, b)
    assert clf.predict(x).shape == y.shape


def test_sample_weight_is_the_models_weighted_loss(iris, rng):
    """fit(sample_weight=) trains exactly what pynn's fit with those weights trains."""
    x, y = iris
    # class 2 weighs most (Adam's steps hardly see a uniform rescaling)
    w = rng.uniform(0.1, 1.0, size=len(x)) * np.where(y == 2, 10.0, 1.0)
    params = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=5, alpha=0, shuffle=False,
                  tol=0.0, learning_rate_init=0.05)
    clf = MLPClassifier(**params).fit(x, y, sample_weight=w)
    pynn.set_seed(5)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(8, activation="relu"),
                             pynn.Dense(3, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.05, epsilon=1e-8),
                  loss="sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32), y, batch_size=150, epochs=10, shuffle=False, verbose=0,
              sample_weight=(w * (len(w) / w.sum())).astype(np.float32))  # mean 1
    for a, b in zip(clf.model_.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    unweighted = MLPClassifier(**params).fit(x, y)
    assert np.abs(unweighted.coefs_[-1] - clf.coefs_[-1]).max() > 1e-2
    with pytest.raises(ValueError, match="sample_weight"):
        clf.fit(x, y, sample_weight=w[:-1])


def test_coefs_and_intercepts_compute_predict_proba(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(6, 5), activation="tanh", max_iter=3).fit(x, y)
    assert [c.shape for c in clf.coefs_] == [(4, 6), (6, 5), (5, 3)]
    assert [b.shape for b in clf.intercepts_] == [(6,), (5,), (3,)]
    h = x
    for c, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1]):
        h = np.tanh(h @ c + b)
    z = h @ clf.coefs_[-1] + clf.intercepts_[-1]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(x), p / p.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    assert not hasattr(MLPClassifier(), "coefs_")  # not fitted


@pytest.mark.parametrize("kind", ["regressor", "multiclass", "binary", "multilabel"])
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_steps_and_loss_curve_are_scikit_learns(rng, kind, solver):
    """From the same weights, three full-batch epochs take scikit-learn's own steps and report
    its objective: the regressor's squared error is half the MSE and a multi-label log-loss
    sums over labels, so alpha, the rates and loss_curve_ were off by 2x and by k."""
    from sklearn import neural_network
    from sklearn.datasets import make_multilabel_classification

    n = 40
    x = rng.normal(size=(n, 5))
    if kind == "regressor":
        y = x @ rng.normal(size=5) + rng.normal(size=n)
    elif kind == "multilabel":
        x, y = make_multilabel_classification(n_samples=n, n_features=5, n_classes=3,
                                              random_state=int(rng.integers(1000)))
        x = (x - x.mean(0)) / (x.std(0) + 1)
    else:
        y = rng.integers(0, 3 if kind == "multiclass" else 2, size=n)
    ours_cls, theirs_cls = ((MLPRegressor, neural_network.MLPRegressor) if kind == "regressor"
                            else (MLPClassifier, neural_network.MLPClassifier))
    params = dict(hidden_layer_sizes=(6,), solver=solver, alpha=0.7, batch_size=n,
                  shuffle=False, warm_start=True, learning_rate_init=0.05, epsilon=1e-2,
                  momentum=0.9, n_iter_no_change=100, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = ours_cls(**params).fit(x.astype(np.float32), y)
        theirs = theirs_cls(**params).fit(x, y)
        theirs.coefs_ = [c.astype(np.float64) for c in ours.coefs_]
        theirs.intercepts_ = [b.astype(np.float64) for b in ours.intercepts_]
        ours.set_params(max_iter=3).fit(x.astype(np.float32), y)  # warm: fresh optimizers
        theirs.set_params(max_iter=3).fit(x, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(ours.loss_curve_[-3:], theirs.loss_curve_[-3:], rtol=1e-4)


def test_alpha_maps_to_l2_per_batch(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(4,), alpha=0.3, batch_size=50, max_iter=1,
                        random_state=0).fit(x, y)
    for layer in clf.model_.layers[1:]:
        assert layer.kernel_regularizer.l2 == pytest.approx(0.3 / (2 * 50))
        assert layer.bias_regularizer is None
    no_reg = MLPClassifier(hidden_layer_sizes=(4,), alpha=0, max_iter=1).fit(x, y)
    assert no_reg.model_.layers[1].kernel_regularizer is None


def test_pickle_round_trip_predicts_the_same(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(x, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(x), clf.predict_proba(x))
    assert isinstance(clf.model_, pynn.Sequential)  # pickling left the original intact


@pytest.mark.parametrize("params, match", [
    ({"activation": "softplus"}, "activation must be"),
    ({"solver": "newton-cg"}, "solver must be"),
    ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes"),
    ({"batch_size": 0}, "batch_size"),
    ({"max_iter": 0}, "max_iter"),
    ({"alpha": -1.0}, "alpha"),
    ({"learning_rate": "optimal"}, "learning_rate must be"),
    ({"power_t": -1}, "power_t"),
    ({"max_fun": 0}, "max_fun"),
])
def test_bad_parameters_are_named_at_fit(iris, params, match):
    x, y = iris
    clf = MLPClassifier(**params)  # scikit-learn: __init__ never validates
    with pytest.raises(ValueError, match=match):
        clf.fit(x, y)


def test_convergence_warning_only_when_max_iter_runs_out(iris):
    x, y = iris
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, tol=0.0).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=100, tol=10.0,
                            n_iter_no_change=2).fit(x, y)  # tol never met: stops early
    assert clf.n_iter_ < 100


def test_predict_before_fit_raises_not_fitted(iris):
    with pytest.raises(NotFittedError):
        MLPRegressor().predict(iris[0])


def test_multilabel_indicator_targets():
    """As sklearn.neural_network.MLPClassifier: one sigmoid per label, predict returns the
    indicator matrix, predict_proba each label's probability."""
    from sklearn.datasets import make_multilabel_classification

    x, y = make_multilabel_classification(n_samples=300, n_features=8, n_classes=4,
                                          random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=200, learning_rate_init=0.01,
                        random_state=0).fit(x, y)
    np.testing.assert_array_equal(clf.classes_, np.arange(4))
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 4
    proba, pred = clf.predict_proba(x), clf.predict(x)
    assert proba.shape == pred.shape == (300, 4)
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    h = np.maximum(x @ clf.coefs_[0] + clf.intercepts_[0], 0)
    manual = 1 / (1 + np.exp(-(h @ clf.coefs_[1] + clf.intercepts_[1])))
    np.testing.assert_allclose(proba, manual, rtol=1e-4, atol=1e-6)
    # per-label training accuracy: always-0 scores 0.57 here, scikit-learn's MLP 0.857
    assert (pred == y).mean() > 0.78
    with pytest.raises(ValueError, match="y has 3 labels, the model was fitted on 4"):
        clf.partial_fit(x, y[:, :3])
    with pytest.raises(ValueError, match="must be one too"):
        clf.partial_fit(x, y[:, 0])
    stopped = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, early_stopping=True,
                            random_state=0).fit(x, y)
    assert len(stopped.validation_scores_) == stopped.n_iter_  # subset accuracy per epoch
    assert all(0 <= v <= 1 for v in stopped.validation_scores_)


def test_only_the_ratios_of_sample_weights_count(iris):
    """As scikit-learn (a weighted average): uniform weights of 1e-3 or 100 train like none
    (they scaled the loss, so the tol rule stopped after a few epochs or far too late).
    alpha=0: scikit-learn divides alpha's penalty by the weights' sum (tested against it in
    test_sample_weight_with_one_batch_is_scikit_learns)."""
    x, y = iris
    params = dict(hidden_layer_sizes=(8,), max_iter=30, random_state=0, shuffle=False,
                  alpha=0.0)
    plain = MLPClassifier(**params).fit(x, y)
    for scale in (1e-3, 100.0):
        weighted = MLPClassifier(**params).fit(x, y, sample_weight=np.full(len(x), scale))
        np.testing.assert_allclose(weighted.loss_curve_, plain.loss_curve_, rtol=1e-5)
    with pytest.raises(ValueError, match="non-zero|positive sum"):
        MLPClassifier(**params).fit(x, y, sample_weight=np.zeros(len(x)))


def test_partial_fit_takes_the_current_alpha_and_checks_multilabel_classes(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    clf.partial_fit(x, y, classes=[0, 1, 2])
    clf.set_params(alpha=10.0).partial_fit(x, y)
    assert clf.model_.layers[1].kernel_regularizer.l2 == pytest.approx(10.0 / (2 * 150))
    labels = np.column_stack([y == 0, y == 1, y == 2]).astype(int)
    with pytest.raises(ValueError, match="a multi-label y with 3 columns has classes"):
        MLPClassifier(hidden_layer_sizes=(4,)).partial_fit(x, labels, classes=[0, 1])


def test_scikit_learns_whole_parameter_list_is_accepted(iris):
    # Parameters copied from a scikit-learn MLPClassifier (its defaults) construct and fit.
    sk = pytest.importorskip("sklearn.neural_network").MLPClassifier()
    params = {k: v for k, v in sk.get_params().items()}
    assert set(params) == set(MLPClassifier().get_params())
    params.update(hidden_layer_sizes=(8,), max_iter=3, learning_rate="adaptive")  # adam: unused
    x, y = iris
    with pytest.warns(ConvergenceWarning):
        clf = MLPClassifier(**params).fit(x, y)
    assert clf.predict(x).shape == y.shape


def test_random_state_leaves_the_global_generator_and_other_threads_alone(iris):
    """As scikit-learn's: random_state seeds this fit's own draws. It reseeded pynn's global
    generator, so concurrent fits in threads interleaved their draws (irreproducible) and a
    fit reset the user's set_seed stream."""
    import threading

    x, y = iris
    params = dict(hidden_layer_sizes=(16,), max_iter=3, tol=0.0)
    expected = {s: MLPClassifier(random_state=s, **params).fit(x, y).coefs_ for s in range(4)}

    pynn.set_seed(123)
    pynn.config.rng().random()
    after_one = pynn.config.rng().random()
    pynn.set_seed(123)
    pynn.config.rng().random()
    MLPClassifier(random_state=0, **params).fit(x, y)
    assert pynn.config.rng().random() == after_one  # the user's stream went on untouched

    results, start = {}, threading.Barrier(4)

    def fit(seed):
        start.wait()
        for _ in range(3):
            results.setdefault(seed, []).append(MLPClassifier(random_state=seed,
                                                              **params).fit(x, y).coefs_)

    threads = [threading.Thread(target=fit, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed, runs in results.items():
        for coefs in runs:
            for got, want in zip(coefs, expected[seed]):
                np.testing.assert_array_equal(got, want)


def test_partial_fit_refuses_early_stopping(iris):
    x, y = iris
    for est in (MLPClassifier(early_stopping=True), MLPRegressor(early_stopping=True)):
        with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
            extra = {"classes": [0, 1, 2]} if isinstance(est, MLPClassifier) else {}
            est.partial_fit(x, y, **extra)


def test_sparse_input_such_as_one_hot_encoders_is_densified(iris):
    """OneHotEncoder and ColumnTransformer give sparse matrices by default; scikit-learn's MLP
    takes them, pynn's estimators refused them."""
    from scipy import sparse

    x, y = iris
    for fmt in ("csr", "csc", "coo"):
        xs = sparse.random(150, 30, density=0.1, format=fmt, random_state=0, dtype=np.float64)
        xs = sparse.hstack([xs, sparse.csr_matrix(x)], format=fmt)
        dense = xs.toarray()
        a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(xs, y)
        b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(dense, y)
        np.testing.assert_array_equal(a.predict_proba(xs), b.predict_proba(dense))
        r = MLPRegressor(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(xs, x[:, 0])
        assert r.predict(xs).shape == (150,)


def test_targets_beyond_float32_are_named_as_such():
    """1e39 (finite) was reported as 'targets contain NaN or infinity' after numpy's overflow
    warning."""
    x = np.ones((10, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        with pytest.raises(ValueError, match=r"y holds 1 value\(s\) beyond float32's range"):
            MLPRegressor(max_iter=1).fit(x, np.r_[1e39, np.zeros(9)])


def test_float64_floatx_keeps_the_inputs_digits(float64_floatx, rng):
    """Under set_floatx("float64") X and y reach the network in float64 (they were cut to
    float32 first: 1e8 + 0.25 became 1e8)."""
    x = 1e8 + 0.25 * np.arange(6.0).reshape(-1, 1) + rng.uniform(0, 1e-3)
    reg = MLPRegressor(hidden_layer_sizes=(), max_iter=1, random_state=0).fit(x, x[:, 0] - 1e8)
    reg.coefs_, reg.intercepts_ = [np.ones((1, 1))], [np.array([-1e8])]
    np.testing.assert_allclose(reg.predict(x), x[:, 0] - 1e8, atol=1e-7)
    assert reg.model_.predict(x).dtype == np.float64
    k = np.arange(8.0).reshape(-1, 1)
    y = 1e8 + 0.25 * k[:, 0]  # 1e8 for all in float32
    reg = MLPRegressor(hidden_layer_sizes=(), max_iter=1, warm_start=True, alpha=0,
                       learning_rate_init=1e-12, random_state=0).fit(k, y)
    reg.coefs_, reg.intercepts_ = [np.array([[0.25]])], [np.array([1e8])]
    reg.fit(k, y)  # from the exact solution: no loss (0.55 against float32's y)
    assert reg.loss_curve_[-1] < 1e-9


@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_string_arrays_are_refused_as_scikit_learn_does(estimator, iris):
    """An array of number strings was parsed silently (scikit-learn refuses it: dtype
    'numeric')."""
    x, y = iris
    with pytest.raises(ValueError, match="not compatible with arrays of bytes/strings"):
        estimator(max_iter=1).fit(x.astype(str), y)
    with pytest.raises(ValueError, match="not compatible with arrays of bytes/strings"):
        estimator(max_iter=1).fit(x.astype(str).tolist(), y)
    fitted = estimator(max_iter=1).fit(x, y)
    with pytest.raises(ValueError, match="not compatible with arrays of bytes/strings"):
        fitted.predict(x.astype(bytes))
    if estimator is MLPRegressor:
        with pytest.raises(ValueError, match="y: dtype='numeric' is not compatible"):
            estimator(max_iter=1).fit(x, y.astype(str))


def test_a_poisson_regressor_tells_scikit_learn_its_targets_are_positive():
    from sklearn.utils import get_tags

    assert get_tags(MLPRegressor(loss="poisson")).target_tags.positive_only
    assert not get_tags(MLPRegressor()).target_tags.positive_only


def test_validation_fraction_zero_without_early_stopping(iris):
    """scikit-learn's range is [0, 1): 0 is refused only with early stopping (pynn refused
    it always)."""
    x, y = iris
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, validation_fraction=0.0).fit(x, y)
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\) \(above 0 "
                                         r"with early_stopping\), got 0.0"):
        MLPClassifier(max_iter=3, validation_fraction=0.0, early_stopping=True).fit(x, y)
    with pytest.raises(ValueError, match="validation_fraction"):
        MLPClassifier(max_iter=3, validation_fraction=1.0).fit(x, y)


def test_numpy_parameter_values_from_a_grid(iris):
    """GridSearchCV hands numpy scalars: momentum np.float64 made nesterov an np.bool_,
    refused by the optimizer's flag check (a regression of this session's checks)."""
    x, y = iris
    search = GridSearchCV(MLPClassifier(hidden_layer_sizes=(4,), solver="sgd", max_iter=5),
                          {"momentum": np.linspace(0.5, 0.9, 2)}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x, y)
    assert search.best_params_["momentum"] in (0.5, 0.9)


def test_binary_probabilities_are_read_in_pieces(iris):
    """predict_proba of sigmoid outputs runs the model on 1024 rows at a time (it ran all
    of X at once: memory of N x the widest layer)."""
    x, y = iris
    x, y = np.tile(x, (20, 1)), np.tile(y == 2, 20)  # 3000 rows, two classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(x, y)
    whole = clf.predict_proba(x)
    np.testing.assert_array_equal(whole[:1500], clf.predict_proba(x[:1500]))
    np.testing.assert_array_equal(whole[1500:], clf.predict_proba(x[1500:]))


def test_lbfgs_ignores_early_stopping_as_scikit_learn(iris):
    x, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=5,
                            early_stopping=True, validation_fraction=0.0).fit(x, y)
    assert clf.t_ == 0 and clf.n_iter_ <= 5


def test_stopping_state_and_probabilities_as_scikit_learn():
    from sklearn.neural_network import MLPClassifier as SkClassifier
    from sklearn.neural_network import MLPRegressor as SkRegressor

    rng = np.random.default_rng(0)
    x = np.r_[np.zeros((50, 2)) - 3, np.zeros((50, 2)) + 3] + rng.normal(size=(100, 2)) * 0.1
    y = np.r_[np.zeros(50), np.ones(50)]
    params = dict(hidden_layer_sizes=(4,), early_stopping=True, tol=0.0, n_iter_no_change=3,
                  max_iter=30, random_state=0, learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = MLPClassifier(**params).fit(x, y), SkClassifier(**params).fit(x, y)
    # a validation score stuck at 1.0 never improves by more than tol = 0: the run stops
    # after n_iter_no_change epochs without a better score, as scikit-learn's
    assert ours.n_iter_ == theirs.n_iter_
    xr = rng.normal(size=(50, 3))
    yr = xr @ [1.0, -2.0, 3.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.3,
                           max_iter=8, random_state=0, n_iter_no_change=100).fit(xr, yr)
    assert reg.best_loss_ == min(reg.loss_curve_)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, tol=1e9, n_iter_no_change=1,
                            random_state=0).fit(xr, xr.sum(axis=1))
        theirs = SkRegressor(hidden_layer_sizes=(4,), max_iter=3, tol=1e9, n_iter_no_change=1,
                             random_state=0).fit(xr, xr.sum(axis=1))
    assert ours.n_iter_ == theirs.n_iter_ == 3  # stopped by tol on its last epoch: no warning
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    labels = np.arange(60) % 3
    proba = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(
        rng.normal(size=(60, 4)), labels).predict_proba(rng.normal(size=(60, 4)))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    reg = MLPRegressor(hidden_layer_sizes=(4,), random_state=0).partial_fit(xr, yr)
    held = reg.loss_curve_
    reg.partial_fit(xr, yr)
    assert len(held) == 1 and len(reg.loss_curve_) == 2  # a list the caller holds stays
