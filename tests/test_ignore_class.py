"""SparseCategoricalCrossentropy(ignore_class=...) (Keras 3's; PyTorch's ignore_index): the
ignored positions count for nothing and the loss is the mean over the others. Against Keras 3
itself, a float64 reference, finite differences, training, the engine's fallback, files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AVAILABLE, import_keras, requires_backend
from gradcheck import assert_close_grad, numeric_grad

import pynn
from pynn import losses


def _value_and_grad(loss, labels, outputs, weights=None, backend="numpy", logits=False):
    b = pynn.get_backend(backend)
    y = loss.prepare_targets(labels, outputs.shape[1:], outputs.dtype)
    args = (b.asarray(outputs, outputs.dtype), b.asarray(y, y.dtype),
            None if weights is None else b.asarray(weights, outputs.dtype))
    value, grad = (loss.logits_value_and_grad if logits else loss.value_and_grad)(b, *args)
    return value, b.to_numpy(grad)


def _reference(labels, probabilities, ignore, weights=None):
    """mean over the kept positions of -w log p[label] (0 when none is kept), float64."""
    keep = labels != ignore
    p = np.take_along_axis(probabilities, np.where(keep, labels, 0)[..., None], -1)[..., 0]
    w = np.ones(labels.shape) if weights is None else np.broadcast_to(
        weights.reshape(weights.shape + (1,) * (labels.ndim - weights.ndim)), labels.shape)
    count = keep.sum()
    return float((-np.log(p) * w * keep).sum() / count) if count else 0.0


def _case(rng, shape, classes, ignore):
    labels = rng.integers(0, classes, size=shape)
    labels[rng.random(shape) < 0.4] = ignore
    probabilities = rng.dirichlet(np.ones(classes), size=shape) * 0.9 + 0.1 / classes
    return labels, probabilities


@pytest.mark.parametrize("backend", sorted(AVAILABLE & {"numpy", "cpu", "cuda", "cupy"}))
@pytest.mark.parametrize("ignore", [-1, 255, 0])
@pytest.mark.parametrize("shape", [(1,), (7,), (17,), (3, 5)])
def test_the_mean_over_the_kept_positions(rng, backend, ignore, shape):
    loss = losses.SparseCategoricalCrossentropy(ignore_class=ignore)
    labels, probabilities = _case(rng, shape, 4, ignore)
    for weights in (None, rng.uniform(0.2, 2, size=shape[:1]), rng.uniform(0.2, 2, size=shape)):
        if weights is not None and weights.ndim > 1 and len(shape) == 1:
            continue
        value, grad = _value_and_grad(loss, labels, probabilities.astype(np.float32), weights,
                                      backend)
        assert value == pytest.approx(_reference(labels, probabilities, ignore, weights),
                                      rel=1e-5, abs=1e-6)
        assert np.all(grad[labels == ignore] == 0)


@pytest.mark.parametrize("from_logits", [False, True])
def test_same_values_as_keras_3(rng, from_logits):
    keras = import_keras()
    labels, probabilities = _case(rng, (6, 5), 3, -1)
    outputs = np.log(probabilities) + 0.3 if from_logits else probabilities
    outputs = outputs.astype(np.float32)
    weights = rng.uniform(0.2, 2, size=(6, 5)).astype(np.float32)  # (Keras: per position)
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits,
                                                        ignore_class=-1)
    ours = losses.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=-1)
    for w in (None, weights):
        want = float(keras.ops.convert_to_numpy(theirs(labels, outputs, sample_weight=w)))
        assert _value_and_grad(ours, labels, outputs, w)[0] == pytest.approx(want, rel=1e-5)
    labels[:] = -1  # nothing kept: 0, as Keras (divide_no_nan)
    want = float(keras.ops.convert_to_numpy(theirs(labels, outputs)))
    assert _value_and_grad(ours, labels, outputs)[0] == want == 0.0


def test_gradients_match_finite_differences(float64_numpy, rng):
    loss = losses.SparseCategoricalCrossentropy(ignore_class=-1)
    for shape in [(5,), (2, 3)]:
        labels, p = _case(rng, shape, 3, -1)
        labels.flat[0] = 1  # at least one kept
        for logits in (False, True):
            x = np.log(p) if logits else p
            value, grad = _value_and_grad(loss, labels, x, logits=logits)

            def f(x=x, logits=logits):
                return _value_and_grad(loss, labels, x, logits=logits)[0]

            assert_close_grad(grad, numeric_grad(f, x), rtol=1e-5, atol=1e-8,
                              what=f"{shape} logits={logits}")


def test_labels_out_of_range_are_still_refused_and_bad_values_named():
    loss = losses.SparseCategoricalCrossentropy(ignore_class=-1)
    with pytest.raises(ValueError, match="label 3 is out of range for 3 classes"):
        loss.prepare_targets(np.array([0, -1, 3]), (3,), np.float32)
    with pytest.raises(ValueError, match="label -2 is out of range"):
        loss.prepare_targets(np.array([-2, -1]), (3,), np.float32)
    with pytest.raises(TypeError, match="ignore_class must be an integer"):
        losses.SparseCategoricalCrossentropy(ignore_class=0.5)


@requires_backend("cpu")
def test_padding_positions_do_not_train_and_the_engine_steps_aside(tmp_path, rng):
    # a sequence model whose padded positions carry the label -1: trained as if weighted 0
    x = rng.normal(size=(40, 6, 3)).astype(np.float32)
    labels = (x[..., 0] > 0).astype(np.int64)
    labels[:, 4:] = -1
    # one batch of 40 x 6 positions, 160 kept: as weights of 240 / 160 on the kept ones
    weights = (labels != -1).astype(np.float32) * np.float32(240 / 160)
    results = []
    for loss, y, w in [(losses.SparseCategoricalCrossentropy(ignore_class=-1), labels, None),
                       ("sparse_categorical_crossentropy", np.maximum(labels, 0), weights)]:
        pynn.set_seed(1)
        model = pynn.Sequential([pynn.Input((6, 3)), pynn.Dense(8, activation="tanh"),
                                 pynn.Dense(2, activation="softmax")])
        model.compile(pynn.optimizers.SGD(0.1), loss, backend="cpu")
        history = model.fit(x, y, sample_weight=w, epochs=2, batch_size=40, shuffle=False,
                            verbose=0)
        results.append((history.history["loss"], model.get_weights()))
    (loss_a, weights_a), (loss_b, weights_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    model.compile("sgd", losses.SparseCategoricalCrossentropy(ignore_class=-1))
    model.save(tmp_path / "m.npz")
    assert pynn.load_model(tmp_path / "m.npz").loss.ignore_class == -1
    flat = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="softmax")])
    flat.compile("sgd", "sparse_categorical_crossentropy", backend="cpu")
    assert pynn.engine.unsupported_reason(flat) is None
    flat.compile("sgd", losses.SparseCategoricalCrossentropy(ignore_class=-1), backend="cpu")
    assert "ignore_class" in pynn.engine.unsupported_reason(flat)
    h = flat.fit(x[:, 0], labels[:, 0], class_weight={0: 1.0, 1: 2.0}, epochs=1, verbose=0)
    assert h.params["engine"] == "layers" and np.isfinite(h.history["loss"][0])
