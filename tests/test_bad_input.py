"""Bad input raises a clear exception naming the problem, never silently broadcasts."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from pynn import losses

from conftest import AVAILABLE


def _model(loss="mse", out=1, activation=None):
    m = pynn.Sequential([pynn.Input((3,)), pynn.Dense(out, activation=activation)])
    m.compile(optimizer="sgd", loss=loss)
    return m


def test_wrong_feature_count():
    with pytest.raises(ValueError, match="4 features per sample but the model expects 3"):
        _model().fit(np.zeros((5, 4)), np.zeros(5), verbose=0)
    with pytest.raises(ValueError, match="expects 3"):
        _model().predict(np.zeros((5, 4)))


def test_mismatched_lengths():
    with pytest.raises(ValueError, match="different numbers of samples: 5 and 4"):
        _model().fit(np.zeros((5, 3)), np.zeros(4), verbose=0)


def test_one_row_and_dict_targets_are_named():
    with pytest.raises(ValueError, match=r"got shape \(3,\); for one sample pass x\[None\]"):
        _model().predict(np.zeros(3))
    with pytest.raises(TypeError, match="y is a dict"):  # it said "... 5 and a scalar"
        _model().fit(np.zeros((5, 3)), {"out": np.zeros(5)}, verbose=0)


def test_loss_and_optimizer_set_by_name_after_compile(rng):
    # model.loss = "mae" failed at the next fit with an AttributeError
    model = _model()
    model.loss, model.optimizer = "mae", "adam"
    assert isinstance(model.loss, losses.MeanAbsoluteError)
    assert isinstance(model.optimizer, pynn.optimizers.Adam)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(size=8).astype(np.float32)
    assert np.isclose(model.evaluate(x, y),
                      np.abs(model.predict(x, verbose=0)[:, 0] - y).mean(), rtol=1e-5)
    model.fit(x, y, epochs=1, verbose=0)
    assert model.optimizer.iterations == 1
    with pytest.raises(ValueError, match="unknown loss"):
        model.loss = "nope"
    # the optimizer replaced by an attribute is released, as by compile(): another model
    # may take it (it said "already trains another model")
    adam = pynn.optimizers.Adam()
    model.compile(optimizer=adam, loss="mse")
    model.optimizer = "sgd"
    _model().compile(optimizer=adam, loss="mse")
    rmsprop = pynn.optimizers.RMSprop()
    model.compile(optimizer=rmsprop, loss="mse")
    model.optimizer = None  # released as well
    _model().compile(optimizer=rmsprop, loss="mse")
    with pytest.raises(RuntimeError, match="no optimizer"):  # an AttributeError at fit before
        model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="an optimizer is required"):
        _model().compile(optimizer=None, loss="mse")
    with pytest.raises(ValueError, match="validation_split must be a number"):
        _model().fit(x, y, validation_split=b"0.25", verbose=0)


def test_scale_users_inputs_get_errors_naming_the_problem():
    model = _model(loss="sparse_categorical_crossentropy", out=3, activation="softmax")
    with pytest.raises(ValueError, match="4 features per sample but the model expects 3"):
        model.predict(np.empty((0, 4)))  # it said "x is empty" (0 rows of the right width pass)
    assert model.predict(np.empty((0, 3))).shape == (0, 3)
    with pytest.raises(ValueError, match="validation_split must be a number"):
        model.fit(np.zeros((10, 3)), np.zeros(10), validation_split="0.2", verbose=0)
    masked = np.ma.masked_invalid(np.array([[1.0, np.nan, 2.0]] * 4))
    with pytest.raises(TypeError, match="masked array"):  # it said "beyond float32's range"
        model.fit(masked, np.zeros(4), verbose=0)
    model.predict(np.zeros((2, 3), np.float32))  # a warm lean path refuses it too
    for rows in (masked.astype(np.float32), masked):
        with pytest.raises(TypeError, match="masked array"):
            model.predict(rows)
    for split in (False, np.float64(0.0), np.array(0.25)):  # numbers of any kind
        model.fit(np.zeros((8, 3)), np.zeros(8), validation_split=split, verbose=0)
    with pytest.raises(ValueError, match="whole numbers, got nan"):
        model.fit(np.zeros((3, 3)), np.array([0, np.nan, 1]), verbose=0)
    with pytest.raises(ValueError, match="whole numbers, got 1.5"):
        model.fit(np.zeros((3, 3)), np.array([0, 1.5, 1]), verbose=0)


def test_bool_class_labels_and_a_batch_size_beyond_the_data(rng):
    x = rng.normal(size=(10, 3)).astype(np.float32)
    labels = rng.integers(0, 2, 10)
    model = _model(loss="sparse_categorical_crossentropy", out=2, activation="softmax")
    # bool labels were refused ("labels must be integers") though x and one-hot take bools
    assert model.evaluate(x, labels.astype(bool)) == model.evaluate(x, labels)
    # 2**63 - 1 overflowed the engine's row offsets; any size beyond the data is one batch
    first = model.fit(x, labels, batch_size=2**63 - 1, epochs=1, verbose=0, shuffle=False)
    assert len(first.history["loss"]) == 1 and model.optimizer.iterations == 1


def test_labels_out_of_range():
    m = _model("sparse_categorical_crossentropy", out=3, activation="softmax")
    with pytest.raises(ValueError, match=r"label 3 is out of range for 3 classes"):
        m.fit(np.zeros((4, 3)), np.array([0, 1, 2, 3]), verbose=0)
    with pytest.raises(ValueError, match=r"label -1"):
        m.fit(np.zeros((2, 3)), np.array([0, -1]), verbose=0)
    with pytest.raises(ValueError, match="whole numbers"):
        m.fit(np.zeros((2, 3)), np.array([0.5, 1.0]), verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _model("binary_crossentropy", activation="sigmoid").fit(
            np.zeros((2, 3)), np.array([0.0, 2.0]), verbose=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_input(bad):
    x = np.zeros((4, 3))
    x[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        _model().fit(x, np.zeros(4), verbose=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        _model().predict(x)
    with pytest.raises(ValueError, match="targets contain NaN"):
        _model().fit(np.zeros((4, 3)), np.array([0, bad, 0, 0]), verbose=0)


def test_finite_values_beyond_float32_are_named_as_such():
    """1e39 is finite in float64 but inf in float32: 'NaN or infinite' misled (with a numpy
    overflow warning on top)."""
    import warnings

    x = np.zeros((4, 3))
    x[1, 2] = -1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the cast
        with pytest.raises(ValueError, match=r"x holds 1 value\(s\) beyond float32's range "
                                             r"\(\+-3.4e\+38\), largest magnitude 1e\+39"):
            _model().predict(x)
        with pytest.raises(ValueError, match="mean_squared_error: targets holds 1 value"):
            _model().fit(np.zeros((4, 3)), np.array([0, 0, 1e40, 0]), verbose=0)
    pynn.config.set_check_finite(False)
    try:  # unchecked: numpy's own overflow warning is the only word of it
        with pytest.warns(RuntimeWarning, match="overflow"):
            _model().predict(x)
    finally:
        pynn.config.set_check_finite(True)


def test_empty_data():
    with pytest.raises(ValueError, match="empty"):
        _model().fit(np.zeros((0, 3)), np.zeros(0), verbose=0)
    # predict of no rows is no predictions, as in Keras (of the right shape only)
    model = _model()
    out = model.predict(np.zeros((0, 3)))
    assert out.shape == (0,) + tuple(model.output_shape) and out.dtype == np.float32
    with pytest.raises(ValueError):
        model.predict(np.zeros((0, 4)))


def test_samples_of_several_axes_are_checked_for_rank_and_emptiness():
    """A 1-D x was taken by an unbuilt Flatten-first model, and 0 samples of several axes
    went into training."""
    model = pynn.Sequential([pynn.Flatten(), pynn.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"x must have shape \(samples, \.\.\.\)"):
        model.predict(np.arange(3.0), verbose=0)
    model = pynn.Sequential([pynn.Input((3, 4)), pynn.Flatten(), pynn.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"x is empty \(0 samples\)"):
        model.fit(np.zeros((0, 3, 4)), np.zeros((0, 1)), verbose=0)


def test_non_numeric_input():
    with pytest.raises(TypeError, match="numeric"):
        _model().fit(np.array([["a", "b", "c"]]), np.zeros(1), verbose=0)
    with pytest.raises(ValueError, match="None"):
        _model().fit(None, np.zeros(1), verbose=0)
    with pytest.raises(TypeError, match="complex"):
        _model().fit(np.zeros((2, 3)), np.array([1 + 2j, 0j]), verbose=0)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown loss 'msee'"):
        _model(loss="msee")
    with pytest.raises(ValueError, match="unknown activation 'relu7'"):
        pynn.Dense(3, activation="relu7")
    with pytest.raises(ValueError, match="unknown initializer"):
        pynn.Dense(3, kernel_initializer="glorot")
    with pytest.raises(ValueError, match="unknown metric"):
        m = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
        m.compile(optimizer="sgd", loss="mse", metrics=["acuracy"])
        m.fit(np.zeros((2, 3)), np.zeros(2), verbose=0)
    with pytest.raises(ValueError, match="unknown backend"):
        pynn.set_backend("tpu")


def test_negative_learning_rate_and_bad_arguments():
    with pytest.raises(ValueError, match="learning_rate must be >= 0, got -0.1"):
        pynn.optimizers.SGD(learning_rate=-0.1)
    m = _model()
    with pytest.raises(ValueError, match="batch_size"):
        m.fit(np.zeros((4, 3)), np.zeros(4), batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got True"):
        m.fit(np.zeros((4, 3)), np.zeros(4), batch_size=True, verbose=0)  # (batches of 1)
    with pytest.raises(ValueError, match="epochs"):
        m.fit(np.zeros((4, 3)), np.zeros(4), epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        m.fit(np.zeros((4, 3)), np.zeros(4), validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="units"):
        pynn.Dense(0)
    with pytest.raises(RuntimeError, match="compiled"):
        pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)]).fit(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="loss is required"):
        pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)]).compile(optimizer="sgd")


# ---- no silent broadcasting: every loss -----------------------------------------------------
ELEMENTWISE = ["mse", "mae", "huber", "binary_crossentropy"]


@pytest.mark.parametrize("loss_name", ELEMENTWISE)
def test_flat_targets_against_single_output_are_reshaped(loss_name, rng):
    loss = losses.get(loss_name)
    pred = rng.uniform(0.1, 0.9, size=(6, 1))
    y = rng.integers(0, 2, size=6).astype(np.float64)
    assert loss(y, pred) == loss(y.reshape(-1, 1), pred)
    model = _model(loss_name, activation="sigmoid")
    x = rng.normal(size=(6, 3))
    assert model.evaluate(x, y) == model.evaluate(x, y.reshape(-1, 1))


@pytest.mark.parametrize("loss_name", ELEMENTWISE + ["categorical_crossentropy"])
@pytest.mark.parametrize("pred_shape,y_shape", [((6, 1), (6, 6)), ((6, 1), (1, 6)),
                                                ((6, 2), (6,)), ((6, 2), (6, 1)),
                                                ((6, 2), (6, 3)), ((6, 1), (3, 2))])
def test_other_shape_mismatches_raise(loss_name, pred_shape, y_shape):
    loss = losses.get(loss_name)
    pred = np.full(pred_shape, 0.5)
    with pytest.raises(ValueError, match="shape|2 or more outputs"):  # one class: refused
        loss(np.zeros(y_shape), pred)


@pytest.mark.parametrize("y_shape", [(6, 3), (3, 2), (6, 1, 1)])
def test_sparse_labels_of_wrong_shape_raise(y_shape):
    with pytest.raises(ValueError, match="shape"):
        losses.SparseCategoricalCrossentropy()(np.zeros(y_shape), np.full((6, 3), 1 / 3))


def test_sparse_labels_n_by_1_equal_flat():
    pred = np.array([[0.2, 0.8], [0.6, 0.4]])
    loss = losses.SparseCategoricalCrossentropy()
    assert loss(np.array([1, 0]), pred) == loss(np.array([[1], [0]]), pred)


def test_model_rejects_broadcastable_targets():
    m = _model("mse", out=2)
    with pytest.raises(ValueError, match=r"targets have shape \(5,\).*\(5, 2\)"):
        m.fit(np.zeros((5, 3)), np.zeros(5), verbose=0)


@pytest.mark.parametrize("sample_shape, bad_shapes", [
    ((4, 4), [(3, 16), (3, 2, 8), (3, 4, 4, 1)]),
    ((3,), [(2, 3, 1), (2, 1, 3), (2, 3, 1, 1)]),
])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_predict_checks_the_sample_shape_on_every_call(sample_shape, bad_shapes, backend):
    """The second predict reuses a cached native engine: its fast path must refuse what the
    first call refused (same rows of numbers, wrong sample shape), not reshape it."""
    if backend not in AVAILABLE:
        pytest.skip(f"backend {backend!r} is not built here")
    model = pynn.Sequential([pynn.Input(sample_shape)] +
                            ([pynn.Flatten()] if len(sample_shape) > 1 else []) +
                            [pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    good = np.ones((3,) + sample_shape, np.float32)
    for _ in range(2):  # the first call builds the cache, the second uses it
        assert model.predict(good).shape == (3, 2)
        for shape in bad_shapes:
            with pytest.raises(ValueError, match="shape"):
                model.predict(np.ones(shape, np.float32))


def test_standalone_losses_take_1d_arrays_as_keras():
    """Element-wise losses: one output per sample; categorical: one sample's classes."""
    y, p = np.array([0.0, 1.0, 1.0]), np.array([0.1, 0.9, 0.8])
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert losses.BinaryCrossentropy()(y, p) == pytest.approx(expected, rel=1e-6)
    assert losses.MeanSquaredError()(y, p) == pytest.approx(np.mean((y - p) ** 2), rel=1e-6)
    assert losses.MeanAbsoluteError()(y, p) == pytest.approx(np.mean(np.abs(y - p)), rel=1e-6)
    cce = losses.CategoricalCrossentropy()([0, 1, 0], [0.1, 0.8, 0.1])
    assert cce == pytest.approx(-np.log(0.8), rel=1e-6)
    with pytest.raises(ValueError, match="predictions must be \\(batch, outputs\\)"):
        losses.SparseCategoricalCrossentropy()([1], [0.1, 0.8, 0.1])
    with pytest.raises(ValueError, match="targets have shape"):
        losses.MeanSquaredError()(np.zeros(4), p)  # lengths differ: never broadcast


def test_keras_style_containers_as_x_are_named(rng):
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1))
    with pytest.raises(ValueError, match=r"not a rectangular array .*fit\(x, y\)"):
        model.fit((x, y), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="y must be None when x gives the data batch by batch"):
        model.fit((row for row in x), y, epochs=1, verbose=0)  # rows, not batches
    with pytest.raises(TypeError, match="validation x is a generator"):  # (not "numeric")
        model.fit(x, y, epochs=1, verbose=0, validation_data=((row for row in x), y))
    with pytest.raises(TypeError, match="dict; pynn takes arrays"):
        model.predict({"input": x})
    assert model.predict([list(r) for r in x]).shape == (8, 1)  # nested lists still work


@pytest.mark.parametrize("loss_name", ["categorical_crossentropy",
                                       "sparse_categorical_crossentropy"])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax", "linear"])
def test_categorical_losses_refuse_a_single_output(loss_name, activation):
    """One output with a categorical loss logged loss 0.0 and accuracy 1.0 on every path while
    nothing trained (its softmax is always 1); Keras warns of both."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1, activation=activation)])
    assert (activation == "softmax") == any("softmax over 1 unit" in str(w.message)
                                            for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(optimizer="adam", loss=loss_name, metrics=["accuracy"])
    # (raw scores for a loss of probabilities: said at compile, as the reverse is)
    assert (activation == "linear") == any("outputs are linear: not probabilities"
                                           in str(w.message) for w in caught)
    x, y = np.zeros((8, 3)), np.zeros((8, 1))
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y)):
        with pytest.raises(ValueError, match="needs 2 or more outputs.*binary_crossentropy"):
            call()


def test_complex_values_are_refused_by_the_standalone_functions():
    """A cast to float drops the imaginary parts with only numpy's ComplexWarning: losses,
    metrics and activations called on their own refuse complex arrays, as fit does."""
    y_true, y_pred = np.array([[0.0], [1.0]]), np.array([[0.5], [0.5]])
    for call in (lambda: pynn.losses.MeanSquaredError()(y_true, y_pred + 5j),
                 lambda: pynn.losses.MeanSquaredError()(y_true + 5j, y_pred),
                 lambda: pynn.losses.BinaryCrossentropy()(y_true + 0j, y_pred),
                 lambda: pynn.metrics.mean_squared_error(y_true, y_pred + 5j),
                 lambda: pynn.metrics.binary_accuracy(y_true + 1j, y_pred),
                 lambda: pynn.metrics.R2Score()(y_true, y_pred + 1j),
                 lambda: pynn.activations.sigmoid(np.array([1 + 5j])),
                 lambda: pynn.activations.get("relu")(np.array([1j]))):
        with pytest.raises(TypeError, match="real"):
            call()


@pytest.mark.parametrize("backend", [b for b in ("cpu", "numpy", "cuda", "cupy") if b in AVAILABLE])
def test_weights_beyond_float32_are_refused(backend):
    """Finite float64 weights that float32 cannot hold became inf, then NaN weights, with
    no error; they are refused by name as x's and y's are."""
    model = _model()
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    x, y = np.zeros((4, 3), np.float32), np.zeros(4)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="sample_weight reaches 1e\\+39, beyond float32"):
        model.fit(x, y, sample_weight=np.full(4, 1e39), verbose=0)
    with pytest.raises(ValueError, match="class_weight reaches"):
        model.fit(x, y, class_weight={0: 1e39}, verbose=0)
    with pytest.raises(ValueError, match="sample_weight x class_weight reaches"):
        model.fit(x, y, sample_weight=np.full(4, 1e20), class_weight={0: 1e20}, verbose=0)
    with pytest.raises(ValueError, match="sample_weight reaches"):
        model.evaluate(x, y, sample_weight=np.full(4, 1e39))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.fit(x, y, sample_weight=np.full(4, 3e38), verbose=0, epochs=1)  # within range


# ---- a bad-input audit's findings (a helper fed ~9,000 wrong inputs to the public API) ------
def test_calling_a_layer_checks_its_input(rng):
    norm = pynn.BatchNormalization()
    norm(rng.random((20, 4)))
    with pytest.raises(ValueError, match=r"built for inputs of shape \(batch, 4\), got shape "
                                         r"\(3, 1\)"):
        norm(np.array([[1.0], [2.0], [3.0]]))  # was broadcast over the 4 features
    for layer in (pynn.LayerNormalization(), pynn.layers.Normalization(axis=-1),
                  pynn.RMSNormalization(), pynn.Dense(2)):
        layer(rng.random((5, 4)))
        with pytest.raises(ValueError, match="built for inputs"):
            layer(rng.random((5, 1)))
        assert layer(rng.random((2, 3, 4))).shape[:2] == (2, 3)  # leading axes: each row
    with pytest.raises(ValueError, match="is None"):
        pynn.ReLU()(None)
    with pytest.raises(TypeError, match="must be real"):
        pynn.Dense(2)(np.array([[1 + 5j, 2 + 5j]]))
    with pytest.raises(ValueError, match=r"\(batch, features...\), got shape \(4,\)"):
        pynn.Dense(3)(np.ones(4))
    # what Keras takes stays taken: layers without weights take any shape (an activation
    # 1-D too), a subclass of a last-axis layer leading axes, any layer 0 samples
    relu = pynn.ReLU()
    relu(np.ones((2, 3)))
    assert relu(np.ones((2, 4))).shape == (2, 4)
    np.testing.assert_array_equal(pynn.ReLU()(np.array([-1.0, 2.0])), [0.0, 2.0])
    flatten = pynn.Flatten()
    flatten(np.zeros((2, 3, 4)))
    assert flatten(np.zeros((2, 4, 5))).shape == (2, 20)
    assert pynn.Flatten()(np.zeros((0, 4, 2))).shape == (0, 8)
    assert pynn.Dense(2)(np.zeros((0, 3))).shape == (0, 2)
    norm = pynn.BatchNormalization()
    norm(rng.random((5, 4)))
    with pytest.raises(ValueError, match="a training call needs samples"):
        norm(np.zeros((0, 4)), training=True)  # NaN moving statistics
    assert np.isfinite(np.asarray(norm.moving_mean)).all()

    class MyDense(pynn.Dense):
        pass

    mine = MyDense(2)
    mine(rng.random((4, 3)))
    assert mine(rng.random((4, 5, 3))).shape == (4, 5, 2)
    with pytest.raises(ValueError, match="built for inputs"):
        mine(rng.random((4, 5)))


def test_metrics_refuse_text_and_take_single_numbers():
    with pytest.raises(TypeError, match="real numbers"):
        pynn.metrics.SparseCategoricalAccuracy().update_state(np.array(["0", "1", "2"]),
                                                              np.eye(3))  # gave 0.0
    with pytest.raises(TypeError, match="real numbers"):
        pynn.metrics.precision(np.array(["1", "0"]), np.array([0.9, 0.1]))
    assert pynn.metrics.BinaryAccuracy()(1.0, 1.0) == 1.0  # (Keras: 1.0; was a TypeError)
    assert pynn.metrics.Precision()(1.0, 0.9) == 1.0
    assert pynn.metrics.MeanAbsoluteError()(2.0, 1.5) == 0.5


def test_learning_rates_beyond_float32_are_refused(tmp_path):
    for rate in (1e39, 1e300):
        with pytest.raises(ValueError, match="float32's largest number"):
            pynn.optimizers.SGD(learning_rate=rate)
    opt = pynn.optimizers.Adam(learning_rate=lambda step: 1e300)
    with pytest.raises(ValueError, match="float32's largest number"):
        opt.rate()
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(12)))
    from pynn.cli import main

    assert main(["train", "--data", str(data), "--target", "y", "--learning-rate", "1e300",
                 "--out", str(tmp_path / "m.npz"), "--quiet"]) == 2


def test_bytes_paths_work_like_strings(rng, tmp_path):
    m = _model()
    m.fit(rng.random((8, 3)), rng.random(8), epochs=1, verbose=0)
    path = str(tmp_path / "m.npz").encode()
    m.save(path)
    m.save_weights(str(tmp_path / "w.npz").encode())
    again = pynn.load_model(path)
    again.load_weights(str(tmp_path / "w.npz").encode())
    np.testing.assert_array_equal(again.predict(np.ones((2, 3))), m.predict(np.ones((2, 3))))
    checkpoint = pynn.callbacks.ModelCheckpoint(str(tmp_path / "c{epoch}.npz").encode())
    m.fit(rng.random((8, 3)), rng.random(8), epochs=2, verbose=0, callbacks=[checkpoint])
    assert (tmp_path / "c2.npz").exists()
    with pytest.raises(IsADirectoryError, match="names a directory"):
        m.save(str(tmp_path / "dir") + "/")  # wrote a file called dir
    assert not (tmp_path / "dir").exists()


def test_gemm_refuses_what_it_cannot_compute():
    from pynn.ops import gemm

    with pytest.raises(TypeError, match="must be real"):
        gemm([[1 + 5j, 2]], [[1], [1]])  # the imaginary part was dropped with a warning
    with pytest.raises(TypeError, match="real numbers"):
        gemm(np.array([["1", "2"]]), [[1], [1]])
    with pytest.raises(TypeError, match="real numbers"):
        gemm(np.array([[1, 2]], dtype=object), [[1], [1]])
    with pytest.raises(TypeError, match="trans_a must be True or False"):
        gemm(np.ones((2, 2)), np.ones((2, 2)), trans_a="no")  # transposed: "no" is true
    for backend in sorted({"numpy", "cpu", "cuda", "cupy"} & AVAILABLE):
        previous = pynn.get_backend()
        pynn.set_backend(backend)
        try:
            for bad in ("2", None, np.ones(2), True):
                with pytest.raises(TypeError, match="alpha must be a real number"):
                    gemm(np.ones((2, 2)), np.ones((2, 2)), alpha=bad)
        finally:
            pynn.set_backend(previous.name)
    previous = pynn.get_backend()
    pynn.set_backend("numpy")
    try:  # lists become the session's floatx, as before; a 0-d alpha is a number
        assert gemm([[1.0, 2.0]], [[3.0], [4.0]]).dtype == np.dtype(pynn.floatx())
        out = np.zeros((1, 1), pynn.floatx())
        gemm([[1.0, 2.0]], [[3.0], [4.0]], out=out, alpha=np.array(2.0))
        assert out[0, 0] == 22.0
    finally:
        pynn.set_backend(previous.name)
    if "cpu" in AVAILABLE and pynn.floatx() == "float32":
        previous = pynn.get_backend()
        pynn.set_backend("cpu")
        try:
            with pytest.raises(ValueError, match="beyond float32's range"):
                gemm(np.full((1, 1), 1e300), np.ones((1, 2)))  # gave NaN
        finally:
            pynn.set_backend(previous.name)


@pytest.mark.parametrize("shape", [(None, -1), (None, 0), (None, True), (None, "4"),
                                   (None, 2.5)])
def test_build_checks_the_shape_as_input_does(shape):
    model = pynn.Sequential([pynn.Dense(2)])
    with pytest.raises(ValueError, match="positive integers"):
        model.build(shape)
    with pytest.raises(ValueError, match="does not know its input shape yet"):
        pynn.Sequential([pynn.Dense(2)]).build(None)  # (Keras' default: the Input's)
    with pytest.raises(TypeError, match="a shape such as"):
        pynn.Sequential([pynn.Dense(2)]).build(object())
    model.build((None, np.int64(3)))
    assert model.input_shape == (3,)


def test_other_arguments_named_in_their_errors(rng):
    with pytest.raises(TypeError, match="named by a string"):
        pynn.set_backend(["cpu"])  # unhashable type: 'list'
    with pytest.raises(ValueError, match="unknown device"):
        _model().compile("sgd", "mse", device=["cpu"])
    for callback in (pynn.callbacks.EarlyStopping, pynn.callbacks.ReduceLROnPlateau,
                     lambda monitor: pynn.callbacks.ModelCheckpoint("m.npz", monitor=monitor)):
        for monitor in (None, 3, ["val_loss"]):
            with pytest.raises(TypeError, match="monitor must be the name"):
                callback(monitor=monitor)
    init = pynn.initializers
    assert init.RandomUniform(minval=0.5)((50,)).min() >= 0.05  # between the two (Keras)
    for bad in (lambda: init.RandomUniform(minval=float("nan")),
                lambda: init.RandomNormal(stddev=-1), lambda: init.TruncatedNormal(stddev=-1),
                lambda: init.RandomNormal(mean="1")):
        with pytest.raises(ValueError, match="must be a finite number"):
            bad()
    with pytest.raises(ValueError, match="no samples"):
        losses.MeanSquaredError()(np.zeros((0, 1)), np.zeros((0, 1)))  # ZeroDivisionError
    with pytest.raises(TypeError, match="data is None"):
        pynn.layers.Normalization().adapt(None)
    with pytest.raises(TypeError, match="real numbers"):
        pynn.layers.Normalization().adapt(np.array(["1.5", "2"]))  # parsed as numbers
    with pytest.raises(ValueError, match="y is not a rectangular array"):
        _model().fit(np.ones((2, 3)), [[1], [1, 2]], verbose=0)


def test_precision_refuses_an_explicit_threshold_beside_thresholds():
    for cls in (pynn.metrics.Precision, pynn.metrics.Recall):
        with pytest.raises(ValueError, match="not both"):
            cls(threshold=0.5, thresholds=0.3)  # 0.3 was taken silently
        assert cls(thresholds=0.3).threshold == 0.3
        assert cls(0.3, thresholds=0.3).threshold == 0.3
        assert cls().threshold == 0.5 and type(cls().threshold) is float


def test_weights_beyond_float32_are_refused_not_stored_as_inf():
    """set_weights, assign: 1e300 became inf with numpy's overflow warning alone, as inputs
    and targets refuse it by name."""
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(6)])
    before = [w.copy() for w in model.get_weights()]
    huge = [np.full(w.shape, 1e300) for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"weight 'dense\w*/kernel' holds 30 value\(s\) beyond "
                                         r"float32's range"):
        model.set_weights(huge)
    with pytest.raises(ValueError, match="holds 30 value"):
        model.layers[-1].kernel.assign(huge[0])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    mixed = [w.copy() for w in huge]
    mixed[0][0, 0] = np.nan  # (a NaN beside them hid them: not "finite data")
    with pytest.raises(ValueError, match="holds 29 value"):
        model.set_weights(mixed)
    model.set_weights([np.full(w.shape, np.nan) for w in before])  # asked for: taken
    assert np.isnan(model.get_weights()[0]).all()
    model.set_weights([np.full(w.shape, 3e38) for w in before])  # within range
    assert np.isfinite(model.get_weights()[0]).all()
