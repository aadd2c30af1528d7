"""Inputs of any numeric dtype are converted once; integer and one-hot labels train alike."""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from conftest import AVAILABLE


def _fit(x, y, loss, out=3):
    pynn.set_seed(8)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(6, activation="tanh"),
                             pynn.Dense(out, activation="softmax")])
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    h = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    return h.history, model.get_weights()


def test_int_float64_float32_inputs_train_identically():
    rng = np.random.default_rng(0)
    x_int = rng.integers(-3, 4, size=(40, 4))
    y = rng.integers(0, 3, size=40)
    ref_h, ref_w = _fit(x_int.astype(np.float32), y, "sparse_categorical_crossentropy")
    for x in (x_int, x_int.astype(np.float64), x_int.astype(np.int8).tolist()):
        h, w = _fit(x, y, "sparse_categorical_crossentropy")
        assert h == ref_h
        for a, b in zip(w, ref_w):
            np.testing.assert_array_equal(a, b)


def test_integer_and_one_hot_labels_train_alike():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    sparse_h, sparse_w = _fit(x, y, "sparse_categorical_crossentropy")
    dense_h, dense_w = _fit(x, np.eye(3)[y], "categorical_crossentropy")
    np.testing.assert_allclose(sparse_h["loss"], dense_h["loss"], rtol=1e-5)
    np.testing.assert_allclose(sparse_h["accuracy"], dense_h["accuracy"])
    for a, b in zip(sparse_w, dense_w):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_inputs_are_not_copied_when_already_right(monkeypatch):
    """A float32 C-contiguous x reaches the batches without a whole-data copy."""
    x = np.random.default_rng(2).normal(size=(32, 4)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert model._inputs(x) is x or np.shares_memory(model._inputs(x), x)


@pytest.mark.parametrize("backend", sorted(AVAILABLE))
@pytest.mark.parametrize("batch_size", [None, 7, 1000])
def test_predict_converts_a_piece_at_a_time(rng, monkeypatch, highest_precision, backend,
                                            batch_size):
    """float64 or Fortran-ordered x: predict converts piece by piece (it held a whole float32
    copy beside x: +748 MiB for 200k MNIST rows); the outputs are the same bits (in float32
    products: 'high' keeps a smaller last batch's products in float32), the layer path still
    runs batches of batch_size (a piece is not one batch), and an error names the whole of
    x."""
    import tracemalloc

    import pynn.model

    monkeypatch.setattr(pynn.model, "_PREDICT_PIECE", 256 << 10)  # 16 MiB: x would fit
    model = pynn.Sequential([pynn.Input((100,)), pynn.Dense(64, activation="relu"),
                             pynn.Dense(3)])
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    x = rng.normal(size=(20003, 100))  # 16 MB of float64; rows not a multiple of a piece
    want = model.predict(x.astype(np.float32), batch_size=batch_size)
    for data in (x, np.asfortranarray(x.astype(np.float32))):
        tracemalloc.start()
        got = model.predict(data, batch_size=batch_size)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        np.testing.assert_array_equal(got, want)
        # a whole float32 copy of x is 8 MB; a piece of 20003 rows' activations 5 MB
        assert peak < 3_000_000, peak
    x[[5, 20000], 3] = np.nan  # in the first and the last piece
    with pytest.raises(ValueError, match="x contains 2 NaN"):
        model.predict(x, batch_size=batch_size)


@pytest.mark.parametrize("path", ["pieces", "layers"])
def test_predict_holds_its_output_once(rng, monkeypatch, path):
    """Outputs of pieces (float64 x converted a piece at a time) or of the layer path's
    batches were gathered in a list and concatenated: twice the output at the peak (600 MB
    for a 300 MB prediction); now each is copied into the result as it comes."""
    import tracemalloc

    import pynn.model

    monkeypatch.setattr(pynn.model, "_PREDICT_PIECE", 256 << 10)
    hidden = pynn.layers.PReLU() if path == "layers" else pynn.layers.ReLU()  # (no engine)
    model = pynn.Sequential([pynn.Input((20,)), pynn.Dense(16), hidden, pynn.Dense(400)])
    model.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(20003, 20))
    if path == "layers":
        x = x.astype(np.float32)  # converted whole: the batches are the layer path's
    want = model.predict(x.astype(np.float32))
    tracemalloc.start()
    got = model.predict(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(got, want)
    assert peak < 1.5 * got.nbytes, (peak, got.nbytes)  # (and a piece's output: 5 MB)


def test_evaluate_converts_a_piece_at_a_time(rng, monkeypatch):
    """uint8 images or float64 rows: evaluate converted the whole set to float32 beside it
    (+599 MiB for 200k MNIST images); now a piece at a time, with the same results, and an
    error naming the whole of x."""
    import tracemalloc

    import pynn.model

    monkeypatch.setattr(pynn.model, "_PREDICT_PIECE", 256 << 10)
    model = pynn.Sequential([pynn.Input((10, 10)), pynn.Flatten(),
                             pynn.Dense(32, activation="relu"), pynn.Dense(3, "softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "auc"])
    x = rng.integers(0, 256, size=(20003, 10, 10), dtype=np.uint8)  # 2 MB; 8 MB as float32
    y = rng.integers(0, 3, 20003)
    w = rng.uniform(0, 2, 20003)
    want = model.evaluate(x.astype(np.float32), y, sample_weight=w, batch_size=500,
                          return_dict=True)
    tracemalloc.start()
    got = model.evaluate(x, y, sample_weight=w, batch_size=500, return_dict=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got == want
    assert peak < 4_000_000, peak
    bad = x.astype(np.float64)
    bad[[0, 20000], 3, 3] = np.nan  # in the first row and the last piece
    with pytest.raises(ValueError, match="x contains 2 NaN"):
        model.evaluate(bad, y)
    with pytest.raises(ValueError, match=r"\(20003, 10, 9\)"):  # the whole x's shape
        model.evaluate(bad[:, :, :9], y)


def test_predict_in_pieces_keeps_float64_batches(rng, monkeypatch):
    """A float64 session's layer path: pieces are whole batches, each still predicted in
    batches of batch_size, so the sums are those of an unsplit x to the bit."""
    import pynn.model

    monkeypatch.setattr(pynn.model, "_PREDICT_PIECE", 100_000)
    previous = pynn.floatx()
    pynn.set_floatx("float64")
    try:
        model = pynn.Sequential([pynn.Input((20,)), pynn.Dense(16, activation="tanh"),
                                 pynn.Dense(2)])
        x = rng.normal(size=(5000, 20))
        want = model.predict(x, batch_size=300)
        sizes = []
        forward = model._forward
        monkeypatch.setattr(model, "_forward",
                            lambda xb, **kw: sizes.append(len(xb)) or forward(xb, **kw))
        np.testing.assert_array_equal(model.predict(np.asfortranarray(x), batch_size=300), want)
        assert max(sizes) == 300 and sum(sizes) == 5000  # not a piece (600 rows) at once
    finally:
        pynn.set_floatx(previous)


def test_pandas_frames_of_mixed_and_nullable_columns():
    """A frame of bool and float columns, or of pandas' nullable Int64/Float64/boolean, went
    through np.asarray as an object array, refused as 'dtype object' without naming a column.
    Timedelta columns trained as raw ticks."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng()
    n = 37
    values = rng.standard_normal((n, 5))
    frame = pd.DataFrame({
        "f": values[:, 0],
        "b": values[:, 1] > 0,
        "i": pd.array(np.round(values[:, 2] * 10).astype(int), dtype="Int64"),
        "g": pd.array(values[:, 3], dtype="Float64"),
        "c": pd.Categorical(np.round(values[:, 4]).astype(int)),
    })
    plain = np.column_stack([values[:, 0], values[:, 1] > 0, np.round(values[:, 2] * 10),
                             values[:, 3], np.round(values[:, 4])]).astype(np.float32)
    model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    np.testing.assert_array_equal(model.predict(frame, verbose=0),
                                  model.predict(plain, verbose=0))
    y = pd.Series(values[:, 0] * 2)
    assert np.isfinite(model.evaluate(frame.iloc[:, :5], pd.concat([y] * 3, axis=1),
                                      verbose=0))

    missing = frame.copy()
    missing.loc[3, "i"] = pd.NA
    with pytest.raises(ValueError, match="1 NaN"):
        model.predict(missing, verbose=0)
    for column, bad in (("c", pd.Categorical(["x", "y"] * 18 + ["x"])),
                        ("f", pd.to_timedelta(np.arange(n), unit="s")),
                        ("f", pd.date_range("2020-01-01", periods=n)),
                        ("b", ["yes"] * n),
                        ("g", values[:, 3] + 1j)):  # (the imaginary part was dropped)
        with pytest.raises(TypeError, match=f"column '{column}' has dtype"):
            model.predict(frame.assign(**{column: bad}), verbose=0)
    one = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    one.compile(optimizer="sgd", loss="mse")
    np.testing.assert_array_equal(one.predict(frame["i"], verbose=0),
                                  one.predict(plain[:, 2:3], verbose=0))


def test_targets_and_weights_in_frames_are_read_as_inputs_are(rng):
    """y or sample_weight in a frame of mixed or nullable columns went through np.asarray:
    an object array, refused as 'dtype object' without naming the column (x took them)."""
    pd = pytest.importorskip("pandas")
    n = 29
    values = rng.standard_normal((n, 2))
    x = rng.standard_normal((n, 3)).astype(np.float32)
    plain = np.column_stack([values[:, 0], values[:, 1] > 0]).astype(np.float32)
    frames = (pd.DataFrame({"t": values[:, 0], "flag": values[:, 1] > 0}),
              pd.DataFrame({"t": pd.array(values[:, 0], dtype="Float64"),
                            "flag": pd.array((values[:, 1] > 0).astype(int), dtype="Int64")}))
    weights = pd.Series(pd.array(rng.uniform(0.5, 2, n), dtype="Float64"))
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    want = model.evaluate(x, plain, sample_weight=weights.to_numpy(np.float64), verbose=0)
    for y in frames:
        np.testing.assert_allclose(model.evaluate(x, y, sample_weight=weights, verbose=0),
                                   want, rtol=1e-6)
    labels = pd.Series(pd.Categorical(["cat", "dog"] * 14 + ["cat"]))
    classifier = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="softmax")])
    classifier.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(TypeError, match="y has dtype category; pynn takes numbers"):
        classifier.fit(x, labels, verbose=0)
    with pytest.raises(TypeError, match="y column 'kind' has dtype"):
        classifier.fit(x, pd.DataFrame({"kind": labels, "n": np.arange(n)}), verbose=0)
    history = classifier.fit(x, labels.cat.codes, epochs=1, verbose=0)  # encoded: trains
    assert np.isfinite(history.history["loss"][0])


def test_a_frame_with_the_trained_columns_in_another_order_is_refused(rng):
    """A frame is read by position: predict on df[['c', 'b', 'a']] after fit on df[['a',
    'b', 'c']] mixed the features up without a word."""
    pd = pytest.importorskip("pandas")
    n = 24
    frame = pd.DataFrame(rng.standard_normal((n, 3)), columns=["a", "b", "c"])
    y = rng.standard_normal(n)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(frame, y, epochs=1, verbose=0)
    want = model.predict(frame.to_numpy(np.float32))
    np.testing.assert_array_equal(model.predict(frame), want)
    reordered = frame[["c", "b", "a"]]
    renamed = frame.set_axis(["a", "b", "z"], axis=1)
    for call in (lambda x: model.predict(x), lambda x: model.evaluate(x, y, verbose=0),
                 lambda x: model.fit(frame, y, validation_data=(x, y), verbose=0),
                 lambda x: model.test_on_batch(x, y)):
        with pytest.raises(ValueError, match="in another order than those the model was "
                                             r"trained on: \['c', 'b', 'a'\]"):
            call(reordered)
        with pytest.raises(ValueError, match="with other names"):
            call(renamed)
    np.testing.assert_array_equal(model.predict(reordered[["a", "b", "c"]]), want)
    np.testing.assert_array_equal(model.predict(renamed.to_numpy()), want)  # by position
    before = model.get_weights()
    with pytest.raises(ValueError, match="another order"):  # training on it mixes them too
        model.fit(reordered, y, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    model.fit(reordered.to_numpy(), y, epochs=1, verbose=0)  # by position: names let go
    model.fit(reordered, y, epochs=1, verbose=0)  # then a frame's are kept again
    model.predict(reordered)
    with pytest.raises(ValueError, match="another order"):
        model.predict(frame)
    # no false alarms: NaN names (new NaN objects each read), arrays after a frame
    nan_names = pd.DataFrame(rng.standard_normal((n, 3)), columns=[0.5, 1.5, np.nan])
    model.fit(nan_names.to_numpy(), y, epochs=1, verbose=0)
    model.fit(nan_names, y, epochs=1, verbose=0)
    model.predict(nan_names)
    model.fit(frame.to_numpy(), y, epochs=1, verbose=0)  # trained on positions now
    model.predict(renamed)
    wide = pd.DataFrame(rng.standard_normal((n, 9)), columns=[f"x{i}" for i in range(9)])
    model = pynn.Sequential([pynn.Input((9,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.train_on_batch(wide, y)
    with pytest.raises(ValueError, match=r"'x8', 'x7', .*\.\.\. \(9 in all\)"):
        model.predict(wide[wide.columns[::-1]])


def test_pandas_extension_arrays_are_read_as_arrays(rng):
    """A Series' .array (pandas' nullable FloatingArray / IntegerArray, which have no
    .dtypes) was taken for a frame: AttributeError 'no attribute to_frame'."""
    pd = pytest.importorskip("pandas")
    values = rng.normal(size=8)
    model = pynn.Sequential([pynn.Input((1,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    for array in (pd.array(values, dtype="Float64"),
                  pd.Series(np.arange(8), dtype="Int64").array):
        np.testing.assert_array_equal(model.predict(array, verbose=0),
                                      model.predict(np.asarray(array, np.float32)[:, None],
                                                    verbose=0))
        history = model.fit(array, np.zeros(8), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])


def test_a_series_is_checked_as_its_1d_values():
    """A Series became an (n, 1) array: a layer took it where the same values as a numpy
    array are refused as one sample."""
    pd = pytest.importorskip("pandas")
    series = pd.Series([1.0, 2.0, 3.0])
    for x in (series, series.to_numpy()):
        with pytest.raises(ValueError, match=r"got shape \(3,\); for one sample"):
            pynn.Dense(2)(x)


def test_timedelta_arrays_are_refused():
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match="dates or durations"):
        model.predict(np.array([[1, 2]], dtype="m8[s]"), verbose=0)


# ---- from a data-input audit ----------------------------------------------------------------
def _linear(seed=0):
    pynn.set_seed(seed)
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    return model


def test_a_torch_tensor_with_a_lazy_negation_is_read_with_its_sign():
    # t.conj().imag carries a "negative bit": DLPack handed over the raw values, sign dropped
    torch = pytest.importorskip("torch")
    z = torch.complex(torch.randn(6, 4), torch.randn(6, 4))
    t = z.conj().imag
    assert t.is_neg()
    model = _linear()
    np.testing.assert_array_equal(model.predict(t, verbose=0),
                                  model.predict(t.resolve_neg().numpy(), verbose=0))
    model.fit(t, t[:, :1], epochs=1, verbose=0)  # targets too (numpy refused them)


def test_a_tensor_dlpack_cannot_export_is_named():
    """DLPack refuses a tensor not in host memory (BufferError; a meta tensor here, a CUDA
    tensor on a GPU machine): it escaped raw instead of falling back to numpy, whose refusal
    pynn names with the fix (x.float().cpu())."""
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"cannot become a numpy array.*x\.float\(\)\.cpu\(\)"):
        _linear().predict(torch.ones(3, 4, device="meta"), verbose=0)


def test_sparse_inputs_and_targets_are_densified_as_keras_does(rng):
    sparse = pytest.importorskip("scipy.sparse")
    x = rng.normal(size=(20, 4)).astype(np.float32)
    x[x < 0.3] = 0
    y = x[:, :1] * 2
    dense, sparse_model = _linear(), _linear()
    h_dense = dense.fit(x, y, epochs=2, batch_size=5, shuffle=False, verbose=0)
    h_sparse = sparse_model.fit(sparse.csr_matrix(x), sparse.csr_matrix(y), epochs=2,
                                batch_size=5, shuffle=False, verbose=0)
    assert h_sparse.history == h_dense.history
    np.testing.assert_array_equal(sparse_model.predict(sparse.csc_matrix(x), verbose=0),
                                  dense.predict(x, verbose=0))


@pytest.mark.parametrize("n, split", [(100, 0.29), (100, 0.57), (50, 0.58), (100, 0.001),
                                      (7, 0.5)])
def test_validation_split_counts_as_keras_3(rng, n, split):
    # Keras trains on the first floor(N (1 - split)) rows; int(N split) took one fewer
    import math

    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = x[:, :1].copy()
    model = _linear()
    h = model.fit(x, y, validation_split=split, shuffle=False, epochs=1, verbose=0)
    n_val = n - math.floor(n * (1 - split))
    assert h.history["val_loss"][0] == pytest.approx(
        model.evaluate(x[-n_val:], y[-n_val:], verbose=0), rel=1e-6)
    assert h.history["val_loss"][0] != pytest.approx(
        model.evaluate(x[-n_val + 1:], y[-n_val + 1:], verbose=0), rel=1e-9) or n_val == 1


@pytest.mark.parametrize("split, n_val", [(np.float32(0.2), 20), (np.float32(0.1), 10),
                                          (np.float32(0.3), 30), (np.array(0.2, np.float32), 20),
                                          (np.float64(0.3), 30), (0.3, 30)])
def test_a_float32_validation_split_counts_in_float32_as_keras(rng, split, n_val):
    # it was made a Python float first: 0.20000000298 left 79 training rows, Keras' 80
    x = rng.normal(size=(100, 4)).astype(np.float32)
    seen = []
    model = _linear()
    model.fit(x, x[:, :1], validation_split=split, validation_batch_size=1, epochs=1,
              verbose=0, callbacks=[pynn.callbacks.LambdaCallback(
                  on_test_batch_end=lambda batch, logs: seen.append(batch))])
    assert len(seen) == n_val


def test_a_float16_validation_split_of_many_rows_does_not_overflow(rng):
    # counted in float16, 100,000 rows overflowed (OverflowError: float infinity)
    x = np.zeros((100_000, 4), np.float32)
    history = _linear().fit(x, x[:, :1], validation_split=np.float16(0.1), epochs=1,
                            batch_size=50_000, verbose=0)
    assert "val_loss" in history.history


def test_a_pydatasets_epoch_hooks_run_around_evaluate_predict_and_validation(rng):
    calls = []
    x = rng.normal(size=(12, 4)).astype(np.float32)

    class Batches(pynn.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            calls.append(i)
            rows = slice(4 * i, 4 * i + 4)
            return x[rows], x[rows, :1]

        def on_epoch_begin(self):
            calls.append("begin")

        def on_epoch_end(self):
            calls.append("end")

    model = _linear()
    model.evaluate(Batches(), verbose=0)
    assert calls == ["begin", 0, 1, 2, "end"]  # (as Keras 3)
    del calls[:]
    model.predict(Batches(), verbose=0)
    assert calls == ["begin", 0, 1, 2, "end"]
    del calls[:]
    model.fit(x, x[:, :1], validation_data=Batches(), epochs=1, verbose=0)
    assert calls == ["begin", 0, 1, 2, "end"]


@pytest.mark.parametrize("bad", [[[1.0, 2.0], [3.0]], "pair"])
def test_predict_names_ragged_input(bad):
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    if bad == "pair":  # a Keras-style (x, y) tuple
        bad = (np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="x is not a rectangular array"):
        model.predict(bad, verbose=0)


def test_bad_validation_targets_and_weights_say_validation(rng):
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = x[:, :1].copy()
    bad = y.copy()
    bad[3] = np.nan
    model = _linear()
    with pytest.raises(ValueError, match="^validation_data: .*NaN"):
        model.fit(x, y, validation_data=(x, bad), verbose=0)
    with pytest.raises(ValueError, match="^validation_data: sample_weight"):
        model.fit(x, y, validation_data=(x, y, np.ones(3)), verbose=0)


def test_sparse_inputs_densify_in_the_sessions_dtype(rng):
    """A float64 scipy sparse matrix becomes a float32 dense array directly (a float64
    dense copy was twice the memory, then cast), unless a value needs float64's range, which
    fit then names."""
    sparse = pytest.importorskip("scipy.sparse")
    from pynn.data import densified

    x = sparse.random(50, 7, density=0.3, format="csr", random_state=int(rng.integers(1e6)))
    dense = densified(x)
    assert dense.dtype == np.float32
    np.testing.assert_array_equal(dense, x.toarray().astype(np.float32))
    big = x.copy()
    big.data[0] = 1e300
    assert densified(big).dtype == np.float64
    model = pynn.Sequential([pynn.Input((7,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="beyond float32's range"):
        model.fit(big, np.zeros(50), verbose=0)
    model.fit(x, np.zeros(50), verbose=0)  # (trains)


def test_predict_and_evaluate_convert_a_dataframe_a_piece_at_a_time(rng):
    """A DataFrame is converted as a numpy array is, 16 MiB of rows at a time (it was
    converted whole: a float32 copy of all of it beside the frame); same outputs."""
    import tracemalloc

    pd = pytest.importorskip("pandas")
    n = 1_000_000
    frame = pd.DataFrame(rng.random((n, 20)))
    model = pynn.Sequential([pynn.Input((20,)), pynn.Dense(4, activation="relu"),
                             pynn.Dense(1)])
    model.compile("sgd", "mse")
    expected = model.predict(frame.to_numpy(np.float32))
    tracemalloc.start()
    try:
        out = model.predict(frame)
        predict_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        logs = model.evaluate(frame, np.zeros(n), return_dict=True)
        evaluate_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, expected)
    assert logs["loss"] == pytest.approx(float(np.mean(expected.astype(np.float64) ** 2)),
                                         rel=1e-5)
    whole = n * 20 * 4  # a float32 copy of the frame: 80 MB
    assert predict_peak < whole / 2 and evaluate_peak < whole / 2, (predict_peak, evaluate_peak)
    frame["text"] = "a"
    with pytest.raises(TypeError, match="column 'text'"):
        model.predict(frame)


def test_sparse_repeated_entries_sum_in_float64():
    sparse = pytest.importorskip("scipy.sparse")
    from pynn.data import densified

    x = sparse.coo_matrix(([1e8 + 1, -1e8, 0.1], ([0, 0, 1], [0, 0, 1])), shape=(2, 4))
    dense = densified(x)
    assert dense.dtype == np.float32 and dense[0, 0] == 1.0  # (0 when summed in float32)
    assert x.nnz == 3  # the caller's matrix as it was
    # a CSR matrix's repeated entries (tocsr sums COO's) too: 1 + 2**-24 + 2**-24 is not 1
    x = sparse.csr_matrix((np.array([1.0, 2.0**-24, 2.0**-24]), np.array([0, 0, 0]),
                           np.array([0, 3])), shape=(1, 2))
    dense = densified(x)
    assert dense.dtype == np.float32 and dense[0, 0] == np.float32(1 + 2.0**-23)
    assert x.nnz == 3 and not x.has_canonical_format  # the caller's matrix as it was


def test_a_mixed_dtype_dataframe_becomes_float32_in_one_copy(rng):
    """Columns of several dtypes (ints and floats: common in tables) go straight into the
    model's float32, column by column (pandas made a float64 copy first: two copies)."""
    import tracemalloc

    pd = pytest.importorskip("pandas")
    n = 400_000
    frame = pd.DataFrame({**{f"f{i}": rng.random(n) for i in range(10)},
                          **{f"i{i}": rng.integers(0, 1000, n) for i in range(10)}})
    y = rng.random(n)
    expected = frame.to_numpy(np.float64).astype(np.float32)
    pynn.set_seed(5)
    model = pynn.Sequential([pynn.Input((20,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    tracemalloc.start()
    try:
        model.fit(frame, y, epochs=1, batch_size=50_000, shuffle=False, verbose=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    pynn.set_seed(5)
    reference = pynn.Sequential([pynn.Input((20,)), pynn.Dense(1)])
    reference.compile("sgd", "mse")
    reference.fit(expected, y, epochs=1, batch_size=50_000, shuffle=False, verbose=0)
    for ours, theirs in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert peak < 1.6 * expected.nbytes, (peak, expected.nbytes)  # (was ~3x: 96 MB here)
    frame["f0"] = frame["f0"] * 1e300  # beyond float32: the float64 path names it
    with pytest.raises(ValueError, match="beyond float32's range"):
        model.fit(frame, y, verbose=0)


def test_negative_values_beyond_float32_are_named_as_such(rng):
    """-1e300 in a sparse matrix or in a frame of several dtypes passed the range check
    (which lacked abs), became -inf in float32 and was reported as 'NaN or infinite'."""
    sparse = pytest.importorskip("scipy.sparse")
    pd = pytest.importorskip("pandas")
    x = rng.normal(size=(6, 4))
    x[2, 1] = -1e300
    model = _linear()
    with pytest.raises(ValueError, match="beyond float32's range"):
        model.fit(sparse.csr_matrix(x), np.zeros(6), verbose=0)
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "i": np.arange(6)})
    with pytest.raises(ValueError, match="beyond float32's range"):
        model.fit(frame, np.zeros(6), verbose=0)


def test_predict_on_a_float32_dataframe_makes_no_float64_copy(rng):
    """A single-dtype float32 frame was read as float64: a copy twice the frame's size. (Its
    peak here is about half the frame's size, a float64 copy's over twice.)"""
    import tracemalloc

    pd = pytest.importorskip("pandas")
    n = 400_000
    frame = pd.DataFrame(rng.random((n, 20), dtype=np.float32))
    model = pynn.Sequential([pynn.Input((20,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    expected = model.predict(frame.to_numpy(), verbose=0)
    tracemalloc.start()
    try:
        out = model.predict(frame, verbose=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, expected)
    assert peak < 1.5 * frame.shape[0] * frame.shape[1] * 4, peak


def test_bool_inputs_and_unit_interval_arguments():
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1, kernel_initializer="ones")])
    np.testing.assert_array_equal(model.predict(np.array([[True, False], [True, True]])),
                                  [[1.0], [2.0]])  # True is 1, as numpy reads it
    with pytest.raises(ValueError, match="label_smoothing"):
        pynn.losses.BinaryCrossentropy(label_smoothing=None)
    with pytest.raises(ValueError, match="threshold"):
        pynn.metrics.BinaryAccuracy(threshold="high")


@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch"])
def test_a_refused_call_leaves_an_unbuilt_model_unbuilt(rng, call):
    # x passed transposed by mistake: the call was refused ("different numbers of samples")
    # but the model stayed built for 20 features, so the corrected call was refused too
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.normal(size=20).astype(np.float32)
    model = pynn.Sequential([pynn.Dense(4), pynn.Dense(1)])
    model.compile("sgd", "mse")
    run = getattr(model, call)
    kwargs = {"verbose": 0} if call != "train_on_batch" else {}
    with pytest.raises(ValueError, match="different numbers of samples: 3 and 20"):
        run(x.T, y, **kwargs)
    assert not model.built and model.input_shape is None
    run(x, y, **kwargs)  # the corrected call builds for (3,)
    assert model.input_shape == (3,)
    # a call refused after training began keeps what it trained
    model = pynn.Sequential([pynn.Dense(1)])
    model.compile("sgd", "mse")

    class Fails(pynn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("late")

    with pytest.raises(RuntimeError, match="late"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[Fails()])
    assert model.built and model.optimizer.iterations > 0


def test_masked_targets_and_weights_are_refused_as_masked_inputs_are(rng):
    # a masked y's masked entries (1e6 here) were used as they are: a loss of 4.5e11
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = np.ma.masked_array(rng.normal(size=8), mask=[0, 0, 0, 1, 0, 0, 0, 0])
    y.data[3] = 1e6
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    for call in (lambda: model.fit(x, y, verbose=0),
                 lambda: model.evaluate(x, y),
                 lambda: model.fit(x, y.data, sample_weight=np.ma.masked_array(np.ones(8)),
                                   verbose=0),
                 lambda: model.fit(x, y.data, validation_data=(x, y), verbose=0)):
        with pytest.raises(TypeError, match=r"is a masked array; pynn uses no masks: pass "
                                            r"\w+\.filled\(value\)"):
            call()


def test_bfloat16_data_is_read_as_float32(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = rng.normal(size=(16, 1)).astype(np.float32)
    xb, yb = torch.tensor(x).bfloat16(), torch.tensor(y).bfloat16()
    exact_x, exact_y = xb.float().numpy(), yb.float().numpy()  # bfloat16 -> float32: exact
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    w = torch.ones(16, dtype=torch.bfloat16)
    # (the same weights on both sides: a weighted mean may round unlike the plain one)
    assert model.evaluate(xb, yb, sample_weight=w) == \
        model.evaluate(exact_x, exact_y, sample_weight=np.ones(16, np.float32))
    np.testing.assert_array_equal(model.predict(xb), model.predict(exact_x))
    ml_dtypes = pytest.importorskip("ml_dtypes")
    xm = x.astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(model.predict(xm), model.predict(xm.astype(np.float32)))


def test_a_one_element_list_of_the_array_as_keras_takes_it(rng):
    # fit(x, [y]) said "x and y have different numbers of samples: 20 and 1"; fit([x], y)
    # and predict([x]) "got shape (1, 20, 3)"
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.normal(size=(20, 1)).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    assert model.evaluate([x], [y]) == model.evaluate(x, y)
    np.testing.assert_array_equal(model.predict([x]), model.predict(x))
    model.fit([x], [y], verbose=0)
    # a list of rows stays a list of rows (one sample here)
    np.testing.assert_array_equal(model.predict([x[0]]), model.predict(x[:1]))


def test_class_weight_takes_any_integer_labels_as_keras(rng):
    # hinge's -1/+1 labels were refused ("integers >= 0"); Keras weighs them
    # (class_weight.get(label, 1.0)); a table up to the largest label (5e10 Poisson counts)
    # asked for 373 GiB
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = np.where(rng.random(20) > 0.5, 1.0, -1.0).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "hinge")
    weights = np.where(y < 0, 3.0, 1.0)
    a = pynn.models.clone_model(model)
    a.set_weights(model.get_weights())
    a.fit(x, y, class_weight={-1: 3.0, 1: 1.0}, batch_size=20, shuffle=False, verbose=0)
    model.fit(x, y, sample_weight=weights, batch_size=20, shuffle=False, verbose=0)
    for u, v in zip(a.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(u, v)
    counts = np.r_[np.zeros(19), 5e10].astype(np.float32)
    poisson = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1, activation="softplus")])
    poisson.compile("sgd", "poisson")
    poisson.fit(x, counts, class_weight={0: 2.0}, epochs=1, verbose=0)  # no huge table
    with pytest.raises(ValueError, match="class_weight keys must be class labels"):
        model.fit(x, y, class_weight={"a": 1.0}, verbose=0)
    b = pynn.models.clone_model(a)  # whole numbers given as floats, as Keras takes them
    b.set_weights(a.get_weights())
    a.fit(x, y, class_weight={-1: 3.0, 1: 1.0}, batch_size=20, shuffle=False, verbose=0)
    b.fit(x, y, class_weight={-1.0: 3.0, np.float32(1): 1.0}, batch_size=20, shuffle=False,
          verbose=0)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match=r"class_weight keys must be class labels .*1\.5"):
        model.fit(x, y, class_weight={1.5: 1.0}, verbose=0)


def test_sparse_inputs_in_test_on_batch_and_predict_with_callbacks(rng):
    sparse = pytest.importorskip("scipy.sparse")
    x = sparse.random(16, 3, density=0.5, random_state=0, format="csr", dtype=np.float32)
    y = rng.normal(size=16).astype(np.float32)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    assert model.test_on_batch(x, y) == pytest.approx(model.evaluate(x.toarray(), y))
    seen = []
    cb = pynn.callbacks.LambdaCallback(on_predict_batch_end=lambda b, logs: seen.append(b))
    np.testing.assert_array_equal(model.predict(x, batch_size=8, callbacks=[cb]),
                                  model.predict(x.toarray()))
    assert seen == [0, 1]
    with pytest.raises(TypeError, match="test_on_batch: x is one batch of samples"):
        model.test_on_batch(iter([x.toarray()]), None)


def test_a_torch_iterable_dataset_gives_batches(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.normal(size=(40, 1)).astype(np.float32)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(0, 40, 10):
                yield x[i:i + 10], y[i:i + 10]

    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(Stream(), epochs=2, verbose=0)
    assert model.optimizer.iterations == 8 and len(history.epoch) == 2
    assert model.predict(Stream()).shape == (40, 1)


def test_zero_features_are_named():
    model = pynn.Sequential([pynn.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"x has 0 features per sample \(shape \(20, 0\)\)"):
        model.fit(np.zeros((20, 0)), np.zeros(20), verbose=0)
    assert not model.built


@pytest.mark.parametrize("kind", ["coo", "dia", "bsr", "csr", "array-like"])
def test_predict_batch_hooks_take_every_input_predict_takes(rng, kind):
    """With predict batch hooks x is sliced into batches: a COO or DIA matrix failed ('not
    subscriptable'), a BSR one with a bare NotImplementedError, and an object with only
    __array__ ran in one piece with no hook called."""
    sparse = pytest.importorskip("scipy.sparse")
    x = rng.normal(size=(70, 4)).astype(np.float32)
    x[x < 0.3] = 0

    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return x if dtype is None else x.astype(dtype)

    given = ArrayLike() if kind == "array-like" else getattr(sparse, f"{kind}_matrix")(x)
    calls = []
    hook = pynn.callbacks.LambdaCallback(on_predict_batch_end=lambda b, logs: calls.append(b))
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3)])
    got = model.predict(given, batch_size=32, callbacks=[hook])
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-6)
    assert calls == [0, 1, 2]


@pytest.mark.parametrize("how", ["npz", "keras", "h5", "deepcopy", "pickle"])
def test_the_trained_columns_are_checked_after_a_copy_or_a_file(tmp_path, rng, how):
    """A model saved, copied or pickled checked the column order no more: a frame with its
    columns swapped was predicted from silently."""
    import copy
    import pickle

    pd = pytest.importorskip("pandas")
    if how in ("keras", "h5"):
        pytest.importorskip("h5py")
    frame = pd.DataFrame(rng.standard_normal((20, 3)), columns=["a", "b", "c"])
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(frame, rng.standard_normal(20), epochs=1, verbose=0)
    if how in ("npz", "keras", "h5"):
        model.save(tmp_path / f"m.{how}")
        again = pynn.load_model(tmp_path / f"m.{how}")
    else:
        again = copy.deepcopy(model) if how == "deepcopy" else pickle.loads(pickle.dumps(model))
    with pytest.raises(ValueError, match="in another order"):
        again.predict(frame[["b", "a", "c"]])
    np.testing.assert_array_equal(again.predict(frame), model.predict(frame))
    numbered = pd.DataFrame(frame.to_numpy(), columns=[0, 1, 2])  # (names that are not
    other = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])       # text: in memory only)
    other.compile(optimizer="sgd", loss="mse")
    other.fit(numbered, rng.standard_normal(20), epochs=1, verbose=0)
    other.save(tmp_path / "numbered.npz")
    pynn.load_model(tmp_path / "numbered.npz").predict(numbered[[2, 1, 0]])


def test_training_keeps_the_first_frames_columns_and_a_refused_call_changes_nothing(rng):
    pd = pytest.importorskip("pandas")
    n = 24
    frame = pd.DataFrame(rng.standard_normal((n, 3)), columns=["a", "b", "c"])
    swapped = frame[["c", "b", "a"]]
    y = rng.standard_normal(n)
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(frame, y, epochs=1, verbose=0)
    for call in (lambda: model.train_on_batch(swapped, y),
                 lambda: model.compute_gradients(swapped, y),
                 lambda: model.partial_fit(swapped, y)):
        with pytest.raises(ValueError, match="in another order"):
            call()
    with pytest.raises(ValueError, match="different numbers of samples"):
        model.fit(swapped.to_numpy(), y[:10], verbose=0)  # refused: the names stay
    with pytest.raises(ValueError, match="another order"):
        model.predict(swapped)
    fresh = pynn.Sequential([pynn.Input((3,)), pynn.Dense(1)])
    fresh.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="different numbers of samples"):
        fresh.fit(swapped, y[:10], verbose=0)  # a refused first fit records nothing
    fresh.predict(frame)
    # batches of frames: the first one's names are kept and the others checked against them
    batches = [(frame.iloc[i:i + 8], y[i:i + 8]) for i in range(0, n, 8)]
    fresh.fit(iter(batches), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="another order"):
        fresh.predict(swapped)
    renamed = frame.set_axis(["d", "e", "f"], axis=1)  # other names: another schema, which
    fresh.train_on_batch(renamed, y)                   # training takes (as before)
    fresh.predict(renamed)
    with pytest.raises(ValueError, match="with other names"):
        fresh.predict(frame)
    fresh.fit(frame, y, epochs=1, verbose=0)
    mixed = batches[:1] + [(swapped.iloc[8:16], y[8:16])]
    with pytest.raises(ValueError, match="another order"):
        fresh.fit(iter(mixed), epochs=1, verbose=0)


def test_a_frame_of_several_dtypes_is_converted_to_the_models_dtype_directly(rng):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": rng.standard_normal(6).astype(np.float32),
                          "b": rng.standard_normal(6)})
    values = pynn.data.frame_values(frame, "x", np.float32)
    assert values.dtype == np.float32 and values.shape == (6, 2)
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    want = model.predict(frame.to_numpy(np.float32))
    np.testing.assert_array_equal(model.predict(frame), want)
    assert model.evaluate(frame, np.zeros(6)) == model.evaluate(frame.to_numpy(np.float32),
                                                                np.zeros(6))
