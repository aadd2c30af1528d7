"""pynn.sklearn against sklearn.neural_network itself: stopping, steps, sample weights, sparse
multi-label targets, the weights' attributes, classes_."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.7")  # sample_weight as in its MLPs since 1.7

from scipy import sparse  # noqa: E402
from sklearn import neural_network  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402

from pynn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
              # scikit-learn's note that a batch_size over the sample count is clipped
              pytest.mark.filterwarnings("ignore:Got `batch_size`:UserWarning")]

_PAIRS = {"classifier": (MLPClassifier, neural_network.MLPClassifier),
          "regressor": (MLPRegressor, neural_network.MLPRegressor)}


def _data(rng, kind, n=120):
    x = rng.normal(size=(n, 3))
    if kind == "classifier":
        return x, np.where(x[:, 0] + 0.3 * rng.normal(size=n) > 0, "pos", "neg")
    if kind == "regressor":
        return x, x @ [1.0, -2.0, 0.5] + 0.3 * rng.normal(size=n)
    return x, np.column_stack([x @ [1.0, -2.0, 0.5], x[:, 1] * 2]) + 0.3 * rng.normal(size=(n, 2))


def _same_start(kind, x, y, **params):
    """(ours, theirs) after one epoch each, scikit-learn's then set to pynn's weights and both
    given a fresh stopping state, with warm_start on: their next fits start alike."""
    ours_cls, theirs_cls = _PAIRS["regressor" if kind == "multioutput" else kind]
    params = dict(dict(hidden_layer_sizes=(8,), solver="sgd", momentum=0.0, shuffle=False,
                       learning_rate_init=0.05, batch_size=len(x), random_state=0), **params)
    ours = ours_cls(max_iter=1, **params).fit(x, y)
    theirs = theirs_cls(max_iter=1, **params).fit(x, y)
    theirs.coefs_ = [c.copy() for c in ours.coefs_]
    theirs.intercepts_ = [b.copy() for b in ours.intercepts_]
    for est in (ours, theirs):
        est.loss_curve_, est._no_improvement_count = [], 0
        if est.early_stopping:
            est.validation_scores_, est.best_validation_score_ = [], -np.inf
        else:
            est.best_loss_ = np.inf
        est.set_params(warm_start=True)
    theirs._best_coefs = [c.copy() for c in theirs.coefs_]
    theirs._best_intercepts = [b.copy() for b in theirs.intercepts_]
    ours._best_weights = ours.model_.get_weights()
    return ours, theirs


def _assert_same_weights(ours, theirs, atol=1e-5):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("tol, n_iter_no_change", [(1e-2, 3), (1e-3, 5)])
def test_tol_stopping_rule_is_scikit_learns(rng, kind, tol, n_iter_no_change):
    """An epoch counts as no improvement when its loss is above best_loss_ - tol, best_loss_
    moving on every decrease (Keras' EarlyStopping, used before, moved it only on gains of
    tol: with the same losses pynn ran 68 epochs where scikit-learn stopped after 21)."""
    x, y = _data(rng, kind)
    ours, theirs = _same_start(kind, x, y)
    for est in (ours, theirs):
        est.set_params(max_iter=2000, tol=tol, n_iter_no_change=n_iter_no_change).fit(x, y)
    # float32 against float64 drifts ~1e-5 over hundreds of epochs: an epoch whose gain is
    # that close to tol may count on one side only (the old rule was 3x and more off)
    assert abs(ours.n_iter_ - theirs.n_iter_) <= 1 and ours.n_iter_ < 2000
    n = min(ours.n_iter_, theirs.n_iter_)
    np.testing.assert_allclose(ours.loss_curve_[:n], theirs.loss_curve_[:n], rtol=1e-4)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-4)
    assert ours.best_loss_ == min(ours.loss_curve_)
    assert ours.validation_scores_ is None and ours.best_validation_score_ is None


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_early_stopping_rule_and_best_weights_are_scikit_learns(rng, kind):
    """With early_stopping the validation score decides (below best_validation_score_ + tol
    is no improvement), and the best-scoring weights are restored, as in scikit-learn."""
    x, y = _data(rng, kind)
    ours, theirs = _same_start(kind, x, y, early_stopping=True, validation_fraction=0.25)
    assert ours.best_loss_ is None and theirs.best_loss_ is None
    for est in (ours, theirs):  # the same split: a warm fit's split uses a fresh random_state
        est.set_params(max_iter=500, tol=1e-3, n_iter_no_change=4).fit(x, y)
    assert ours.n_iter_ == theirs.n_iter_ < 500
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_,
                               rtol=1e-4, atol=1e-6)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_,
                                                        rel=1e-4)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    assert ours.best_loss_ is None
    _assert_same_weights(ours, theirs)  # the best epoch's, restored


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("batch_size", [16, 48])
def test_multi_output_regressor_takes_scikit_learns_steps(rng, solver, alpha, batch_size):
    """scikit-learn's gradient sums the squared error over outputs (its reported loss
    averages them): pynn's steps were n_outputs times smaller."""
    x, y = _data(rng, "multioutput", n=48)
    ours, theirs = _same_start("multioutput", x, y, solver=solver, alpha=alpha,
                               batch_size=batch_size, momentum=0.5, epsilon=1e-3)
    for est in (ours, theirs):
        est.set_params(max_iter=5, tol=0.0, n_iter_no_change=100).fit(x, y)
    _assert_same_weights(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)


@pytest.mark.parametrize("kind", ["classifier", "multioutput"])
def test_sample_weight_with_one_batch_is_scikit_learns(rng, kind):
    """One batch per epoch: the weighted loss over the weights' sum, and alpha's penalty over
    the raw weights' sum, as scikit-learn >= 1.7 (pynn divided it by the sample count)."""
    x, y = _data(rng, kind, n=60)
    w = rng.uniform(0.05, 0.5, size=len(x))  # a sum far from the sample count
    ours, theirs = _same_start(kind, x, y, alpha=0.5, batch_size=200)
    for est in (ours, theirs):
        est.set_params(max_iter=5, tol=0.0, n_iter_no_change=100).fit(x, y, sample_weight=w)
    _assert_same_weights(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)


def test_sparse_multilabel_targets_predict_in_kind(rng):
    """A sparse indicator y crashed fit; scikit-learn's predict then answers sparse too."""
    x = rng.normal(size=(80, 4))
    labels = (x[:, :3] + 0.3 * rng.normal(size=(80, 3)) > 0).astype(int)
    params = dict(hidden_layer_sizes=(8,), max_iter=20, random_state=0)
    dense = MLPClassifier(**params).fit(x, labels)
    ours = MLPClassifier(**params).fit(x, sparse.csr_matrix(labels))
    theirs = neural_network.MLPClassifier(**params).fit(x, sparse.csr_matrix(labels))
    pred = ours.predict(x)
    assert sparse.issparse(pred) and type(pred) is type(theirs.predict(x))
    assert pred.dtype == theirs.predict(x).dtype
    np.testing.assert_array_equal(pred.toarray(), dense.predict(x))
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert not sparse.issparse(dense.predict(x))
    assert ours.score(x, sparse.csr_matrix(labels)) == dense.score(x, labels)


def test_coefs_and_intercepts_are_read_only_and_can_be_set(rng):
    """Edits in place did nothing and assignment raised: now the copies refuse edits and
    assignment writes the weights into the model, from which a warm fit continues."""
    x, y = _data(rng, "regressor", n=40)
    ours, theirs = _same_start("regressor", x, y)
    with pytest.raises(ValueError, match="read-only"):
        ours.coefs_[0][0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        ours.intercepts_[1] += 1.0
    with pytest.raises(TypeError):
        ours.coefs_[0] = np.zeros((3, 8))
    # scikit-learn's own initial weights, given to ours: predictions and steps follow them
    fresh = neural_network.MLPRegressor(hidden_layer_sizes=(8,), max_iter=1,
                                        random_state=int(rng.integers(1000))).fit(x, y)
    ours.coefs_, ours.intercepts_ = fresh.coefs_, fresh.intercepts_
    theirs.coefs_ = [c.copy() for c in fresh.coefs_]
    theirs.intercepts_ = [b.copy() for b in fresh.intercepts_]
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x), rtol=1e-5, atol=1e-5)
    for est in (ours, theirs):
        est.set_params(max_iter=3, tol=0.0).fit(x, y)
    _assert_same_weights(ours, theirs, atol=1e-6)
    with pytest.raises(ValueError, match=r"coefs_\[1\] must have shape \(8, 1\), got \(8, 2\)"):
        ours.coefs_ = [fresh.coefs_[0], np.zeros((8, 2))]
    with pytest.raises(ValueError, match="intercepts_ takes 2 arrays"):
        ours.intercepts_ = fresh.intercepts_[:1]
    with pytest.raises(TypeError, match=r"coefs_\[0\] must hold real numbers"):
        ours.coefs_ = [fresh.coefs_[0].astype(str), fresh.coefs_[1]]
    with pytest.raises(ValueError, match="NaN or infinity"):
        ours.coefs_ = [fresh.coefs_[0], np.full((8, 1), np.nan)]
    with pytest.raises(TypeError, match="a list of arrays"):
        ours.coefs_ = fresh.coefs_[0]
    _assert_same_weights(ours, theirs, atol=1e-6)  # a refused assignment wrote nothing
    with pytest.raises(NotFittedError):
        MLPRegressor().coefs_ = fresh.coefs_


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("n, fraction", [(10, 0.1), (30, 0.03), (11, 0.1), (40, 0.05)])
def test_validation_set_of_one_sample_is_refused_as_in_scikit_learn(rng, kind, n, fraction):
    """Early stopping on one held-out sample gave NaN scores (R^2); scikit-learn refuses
    any held-out set under 2 samples (a stratified one of 1 already in its split)."""
    x, y = _data(rng, kind, n=n)
    if kind == "classifier":
        # both classes twice, whatever the draw (a class of one sample fails the stratified
        # split with another error first)
        y[:4] = ["pos", "neg", "pos", "neg"]
    params = dict(hidden_layer_sizes=(4,), max_iter=2, early_stopping=True,
                  validation_fraction=fraction, random_state=0)
    ours_cls, theirs_cls = _PAIRS[kind]
    if math.ceil(fraction * n) < 2:  # train_test_split's held-out count
        # (a binary classifier's split is stratified: train_test_split's own error first)
        for cls in (ours_cls, theirs_cls):
            with pytest.raises(ValueError, match=r"The validation set is too small\. Increase "
                                                 r"'validation_fraction' or the size of "
                                                 r"your dataset\.|test_size = 1 should be"):
                cls(**params).fit(x, y)
    else:
        for cls in (ours_cls, theirs_cls):
            assert np.isfinite(cls(**params).fit(x, y).validation_scores_).all()


def test_classes_of_a_pandas_series_of_strings_are_scikit_learns():
    pd = pytest.importorskip("pandas")
    x = np.arange(24, dtype=float).reshape(12, 2)
    y = pd.Series(["dog", "cat", "cow"] * 4)
    ours = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(x, y)
    theirs = neural_network.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(x, y)
    assert ours.classes_.dtype == theirs.classes_.dtype
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert ours.predict(x).dtype == theirs.predict(x).dtype


def test_stopping_state_carries_over_warm_start_as_in_scikit_learn(rng):
    """scikit-learn keeps best_loss_ and the no-improvement count across warm fits: after a
    stop, a warm fit that does not improve stops after one epoch."""
    x, y = _data(rng, "regressor")
    ours, theirs = _same_start("regressor", x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (ours, theirs):
            est.set_params(max_iter=2000, tol=0.05, n_iter_no_change=2).fit(x, y)
            est.fit(x, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)


def test_estimators_pickled_before_the_stopping_state_still_fit_and_predict(rng):
    """(old pickles lack _no_improvement_count, _best_weights and _label_binarizer)"""
    import pickle

    X = rng.normal(size=(60, 4))
    y = (X[:, :3] > 0).astype(int)  # multi-label
    est = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    for name in ("_no_improvement_count", "_best_weights", "_label_binarizer"):
        est.__dict__.pop(name, None)
    old = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(old.predict(X), est.predict_proba(X) > 0.5)
    old.partial_fit(X, y)
    old.set_params(warm_start=True, early_stopping=True, max_iter=2)
    old.fit(X, y)
    assert old.n_iter_ >= 1



@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_invscaling_learning_rate_is_scikit_learns(rng, kind):
    """sgd with learning_rate='invscaling': the rate learning_rate_init / (t + 1) ** power_t
    after each epoch, t the samples seen (refused before)."""
    x, y = _data(rng, kind)
    ours, theirs = _same_start(kind, x, y, learning_rate="invscaling", power_t=0.3,
                               learning_rate_init=0.5)
    for est in (ours, theirs):
        est.set_params(max_iter=25, tol=0.0, n_iter_no_change=1000).fit(x, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    _assert_same_weights(ours, theirs)
    rate = float(ours.model_.optimizer.learning_rate) / ours._loss_scale()
    assert rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-6)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_adaptive_learning_rate_is_scikit_learns(rng, kind):
    """sgd with learning_rate='adaptive': where the stopping rule would stop, the rate is
    divided by 5 instead, until it is at most 1e-6 (refused before)."""
    x, y = _data(rng, kind)
    ours, theirs = _same_start(kind, x, y, learning_rate="adaptive", learning_rate_init=0.3)
    for est in (ours, theirs):
        est.set_params(max_iter=400, tol=1e-3, n_iter_no_change=3).fit(x, y)
    assert ours.n_iter_ == theirs.n_iter_ < 400  # stopped by the rate's floor, not max_iter
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    rate = float(ours.model_.optimizer.learning_rate) / ours._loss_scale()
    assert rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-6) and rate <= 1e-6


@pytest.mark.parametrize("kind", ["classifier", "regressor", "multioutput"])
@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_is_scikit_learns(rng, kind, weighted):
    """solver='lbfgs' (refused before): scipy's L-BFGS-B on scikit-learn's objective, loss
    and alpha's penalty at its scale. From the same weights the first iterations agree to
    float32 rounding (later ones amplify it: L-BFGS is chaotic in its rounding)."""
    x, y = _data(rng, kind)
    w = rng.uniform(0.2, 2.0, size=len(x)) if weighted else None
    # one iteration: the same step to float32 rounding
    ours, theirs = _same_start(kind, x, y, solver="lbfgs", alpha=1e-2)
    for est in (ours, theirs):
        est.set_params(max_iter=1, tol=1e-9).fit(x, y, sample_weight=w)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-5)
    _assert_same_weights(ours, theirs, atol=1e-5)
    # eight: the line searches may take other steps from those roundings (a seed in ~200
    # put the loss 3e-3 apart), but the two descend alike
    ours, theirs = _same_start(kind, x, y, solver="lbfgs", alpha=1e-2)
    for est in (ours, theirs):
        est.set_params(max_iter=8, tol=1e-9).fit(x, y, sample_weight=w)
    assert ours.n_iter_ == theirs.n_iter_ == 8
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=2e-2)
    assert not hasattr(ours, "loss_curve_") or ours.loss_curve_ == []


def test_lbfgs_trains_to_scikit_learns_accuracy_and_has_no_partial_fit():
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier((10,), solver="lbfgs", random_state=0, max_iter=300).fit(x, y)
        theirs = neural_network.MLPClassifier((10,), solver="lbfgs", random_state=0,
                                              max_iter=300).fit(x, y)
    assert ours.score(x, y) >= theirs.score(x, y) - 0.02 and ours.score(x, y) > 0.95
    assert not hasattr(ours, "partial_fit") and not hasattr(theirs, "partial_fit")
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier((10,), solver="lbfgs", random_state=0, max_iter=2).fit(x, y)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("outputs", [1, 2])
def test_poisson_loss_is_scikit_learns(rng, solver, outputs):
    """MLPRegressor(loss='poisson') (scikit-learn >= 1.7; a TypeError before): half the
    Poisson deviance with a log-link, its loss_curve_/loss_ and predictions as scikit-learn's
    from the same weights."""
    x = rng.normal(size=(120, 3))
    y = rng.poisson(np.exp(0.5 * x[:, 0] - 0.3 * x[:, 1] + 0.2), size=(2, 120)).T[:, :outputs]
    y = y[:, 0] if outputs == 1 else y
    ours, theirs = _same_start("regressor", x, y, loss="poisson", solver=solver,
                               learning_rate_init=0.05)
    for est in (ours, theirs):
        est.set_params(max_iter=8, tol=0.0, n_iter_no_change=1000).fit(x, y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-5)
    if solver != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x), rtol=1e-4, atol=1e-5)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"


def test_poisson_refuses_negative_targets_and_a_changed_loss(rng):
    x = rng.normal(size=(30, 2))
    with pytest.raises(ValueError, match="negative which is not allowed for Poisson"):
        MLPRegressor(loss="poisson", max_iter=2).fit(x, x[:, 0])
    with pytest.raises(ValueError, match="loss must be 'squared_error' or 'poisson'"):
        MLPRegressor(loss="huber", max_iter=2).fit(x, x[:, 0])
    est = MLPRegressor(loss="poisson", max_iter=2, warm_start=True).fit(x, np.abs(x[:, 0]))
    with pytest.raises(ValueError, match="keep the fitted loss"):
        est.set_params(loss="squared_error").fit(x, x[:, 0])
    import pickle

    est.set_params(loss="poisson")
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(x), est.predict(x))
    assert (est.predict(x) > 0).all()


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_the_parameters_are_scikit_learns_in_its_order(kind):
    """The same names and positional order as the installed scikit-learn's (its
    MLPRegressor's first argument has been `loss` since 1.7)."""
    import inspect

    ours, theirs = _PAIRS[kind]
    assert list(inspect.signature(ours).parameters) == \
        list(inspect.signature(theirs).parameters)


def test_a_diverged_fit_raises_as_scikit_learn(rng):
    """Non-finite weights after a fit raise scikit-learn's ValueError (pynn returned NaN
    weights, predicting NaN)."""
    x = rng.normal(size=(60, 5)) * 10
    y = x @ rng.normal(size=(5, 2)) * 100
    params = dict(hidden_layer_sizes=(3,), solver="sgd", learning_rate_init=0.5,
                  batch_size=7, max_iter=5, shuffle=False, random_state=0)
    for cls in _PAIRS["regressor"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
                cls(**params).fit(x, y)


def test_multiclass_early_stopping_splits_as_scikit_learn(rng):
    """scikit-learn stratifies the held-out set for a binary classifier only (pynn did for
    every single-label one): from the same weights, the same validation scores."""
    x = rng.normal(size=(80, 3))
    y = np.array(["a", "b", "c", "d"])[np.argmax(x @ rng.normal(size=(3, 4)), axis=1)]
    ours, theirs = _same_start("classifier", x, y, early_stopping=True,
                               validation_fraction=0.25)
    for est in (ours, theirs):
        est.set_params(max_iter=5, n_iter_no_change=np.inf, random_state=3).fit(x, y)
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)


def test_lbfgs_on_a_new_network_counts_no_samples(rng):
    x, y = _data(rng, "regressor")
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3).fit(x, y)
    assert est.t_ == 3 * len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.set_params(solver="lbfgs").fit(x, y)
    assert est.t_ == 0
    with pytest.warns(UserWarning, match="Got `batch_size`"):
        MLPRegressor(hidden_layer_sizes=(4,), max_iter=1, batch_size=500).fit(x, y)



def test_verbose_prints_scikit_learns_lines(rng, capsys):
    """verbose=True printed pynn's progress lines, at pynn's scale (twice scikit-learn's
    loss for the squared error): now scikit-learn's own lines and values."""
    x, y = _data(rng, "regressor")
    ours, theirs = _same_start("regressor", x, y, verbose=True)
    capsys.readouterr()
    outputs = []
    for est in (ours, theirs):
        est.set_params(max_iter=4, tol=10.0, n_iter_no_change=1, early_stopping=False).fit(x, y)
        outputs.append(capsys.readouterr().out.splitlines())
    assert [line.split(" = ")[0] for line in outputs[0]] == \
        [line.split(" = ")[0] for line in outputs[1]]
    for a, b in zip(*outputs):
        if " = " in a:
            assert float(a.split(" = ")[1]) == pytest.approx(float(b.split(" = ")[1]),
                                                             rel=1e-4)
    assert any("did not improve more than tol" in line for line in outputs[0])


def test_auto_batch_size_is_200_samples(rng):
    # batch_size='auto' is min(200, n): 400 samples step twice an epoch, as scikit-learn
    x, y = _data(rng, "regressor", n=400)
    ours, theirs = _same_start("regressor", x, y, batch_size="auto")
    for est in (ours, theirs):
        est.set_params(max_iter=2).fit(x, y)
    _assert_same_weights(ours, theirs)


def test_two_outputs_with_alpha_from_the_same_start(rng):
    # scikit-learn's L2 term over two outputs and two batches an epoch (a shorter last batch
    # is penalised slightly less by design: the module docstring)
    x = rng.normal(size=(50, 3))
    y = np.c_[x.sum(axis=1), x[:, 0]]
    ours, theirs = _same_start("multioutput", x, y, alpha=1.0, batch_size=25)
    for est in (ours, theirs):
        est.set_params(max_iter=3).fit(x, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-5)
    _assert_same_weights(ours, theirs)
