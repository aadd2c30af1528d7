"""Keras 3 calls that ported code makes, from an API parity audit: each is taken (with the
Keras meaning), or refused by name when pynn cannot honour it; none is silently ignored
where it would change results."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import pynn


def _model(features=3):
    return pynn.Sequential([pynn.Input((features,)), pynn.Dense(4, activation="relu"),
                            pynn.Dense(1)])


def test_compile_takes_kerass_execution_settings(rng):
    model = _model()
    model.compile("adam", "mse", run_eagerly=False, jit_compile=False, steps_per_execution=8,
                  auto_scale_loss=True)
    model.fit(rng.normal(size=(16, 3)), rng.normal(size=16), verbose=0)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="steps_per_execution must be a positive"):
            model.compile("adam", "mse", steps_per_execution=bad)


def test_save_overwrite_and_load_safe_mode(tmp_path):
    model = _model()
    model.compile("adam", "mse")
    path, weights = tmp_path / "m.npz", tmp_path / "w.npz"
    model.save(path, overwrite=True)
    model.save_weights(weights, overwrite=True)
    with pytest.raises(FileExistsError, match="m.npz exists and overwrite=False"):
        model.save(path, overwrite=False)
    with pytest.raises(FileExistsError, match="overwrite=False"):
        model.save_weights(weights, overwrite=False)
    for as_bytes in (os.fsencode(path), os.fsencode(weights)):  # a bytes path too (saving
        with pytest.raises(FileExistsError, match="exists and overwrite=False"):  # takes it)
            model.save(as_bytes, overwrite=False) if as_bytes.endswith(b"m.npz") else \
                model.save_weights(as_bytes, overwrite=False)
    model.save(tmp_path / "new.npz", overwrite=False)  # a new file is written
    # pynn.saving's functions take Keras' arguments (a positional False was allow_unbuilt,
    # and the file replaced)
    before = path.read_bytes()
    for call in (lambda: pynn.saving.save_model(model, path, False),
                 lambda: pynn.saving.save_model(model, path, overwrite=False),
                 lambda: pynn.saving.save_weights(model, path, False)):
        with pytest.raises(FileExistsError, match="exists and overwrite=False"):
            call()
    assert path.read_bytes() == before
    loaded = pynn.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_summary_takes_kerass_layout_arguments():
    """line_length and positions set the columns (they were taken and ignored), wrapping
    what does not fit; with show_trainable Keras' three positions make room for a fourth."""
    model = pynn.Sequential([pynn.Input((784,), name="input_layer"),
                             pynn.Dense(128, name="a_long_layer_name")])
    lines = []
    model.summary(line_length=80, positions=[0.3, 0.6, 1.0], print_fn=lines.append,
                  expand_nested=True, show_trainable=True)
    table = lines[0].splitlines()
    assert {len(line) for line in table[1:4]} == {80}
    assert table[2].index("Output Shape") == 21 and table[2].index("Param #") == 43 and \
        table[2].index("Trainab") == 72
    lines = []
    model.summary(line_length=30, print_fn=lines.append)  # the natural widths, scaled
    table = lines[0].splitlines()
    assert all(len(line) == 30 for line in table[1:9] if not line.startswith("Total"))
    wrapped = [line.split()[0] for line in table if line.startswith(("input_", "(Input"))]
    assert wrapped == ["input_layer", "(InputLayer)"]  # (at the space)
    assert "100480" not in lines[0] and "10048" in lines[0]  # (a number too)
    lines = []
    model.summary(positions=[30, 45, 55], print_fn=lines.append)  # characters
    assert lines[0].splitlines()[2].index("Param #") == 45
    for bad in ([0.5, 0.4, 1.0], [0.5, 1.0], "wide", [10, 20, 0]):
        with pytest.raises(ValueError, match="positions must be 3 increasing positive"):
            model.summary(positions=bad)
    for bad in (-3, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="line_length must be a positive number"):
            model.summary(line_length=bad)
    default, lenient = [], []  # Keras' `or default`: 0 and [] are the default; 100.0 and
    model.summary(print_fn=default.append)  # arrays taken
    model.summary(line_length=0, positions=[], print_fn=lenient.append)
    assert lenient == default
    lines = []
    model.summary(line_length=100.0, positions=np.array([0.5, 0.8, 1.0]), print_fn=lines.append)
    assert lines[0].splitlines()[2].index("Param #") == 80
    with pytest.raises(ValueError, match="under 2 characters wide"):
        model.summary(line_length=3)


def test_summary_shows_trainable_and_a_layer_range_as_keras():
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(3, name="frozen"),
                             pynn.Dropout(0.1, name="drop"), pynn.Dense(1, name="head")])
    model.get_layer("frozen").trainable = False
    lines = []
    model.summary(show_trainable=True, print_fn=lines.append)
    table = lines[0].splitlines()
    assert table[2].split() == ["Layer", "(type)", "Output", "Shape", "Param", "#",
                                "Trainable"]
    rows = {line.split()[0]: line.split()[-1] for line in table[4:8]}
    assert rows == {model.layers[0].name: "-", "frozen": "N", "drop": "-", "head": "Y"}
    lines = []
    model.summary(layer_range=("drop", "head"), print_fn=lines.append)
    listed = [line.split()[0] for line in lines[0].splitlines()[4:]
              if line[:1].isalpha() and "params" not in line and ":" not in line]
    assert listed == ["drop", "head"]
    assert "Total params: 19" in lines[0]  # the model's totals

    def listed_for(layer_range):
        lines = []
        model.summary(layer_range=layer_range, print_fn=lines.append)
        return [line.split()[0] for line in lines[0].splitlines()[4:]
                if line[:1].isalpha() and "params" not in line and ":" not in line]

    # patterns (re.match), as Keras 3: from the first match of one to the last of the other
    assert listed_for(("fro", "d.*")) == ["frozen", "drop"]
    assert listed_for(("head", "drop")) == ["drop", "head"]  # crossed: Keras' order
    assert listed_for((".*", ".*")) == [l.name for l in model.layers]
    for bad, words in [(("nope", "head"), r"names \['nope'\], not among"),
                       (("drop",), "two layer names"), (("(", "head"), "no pattern")]:
        with pytest.raises(ValueError, match=words):
            model.summary(layer_range=bad)


def test_input_takes_kerass_shape_spellings():
    for layer in (pynn.Input(shape=(3,), batch_size=32, dtype="float32"),
                  pynn.Input(batch_shape=(None, 3)),
                  pynn.layers.InputLayer(input_shape=(3,))):
        model = pynn.Sequential([layer, pynn.Dense(2)])
        assert model.input_shape == (3,) and model.built
    with pytest.raises(ValueError, match="give the sample shape once"):
        pynn.Input(shape=(3,), batch_shape=(None, 3))
    with pytest.raises(ValueError, match="give the sample shape once"):
        pynn.Input()
    with pytest.raises(ValueError, match="batch_shape has the batch axis first"):
        pynn.Input(batch_shape=(3,))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        pynn.Input((3,), batch_size=0)


def test_a_layer_dtype_other_than_floatx_is_refused_not_ignored():
    pynn.Dense(2, dtype="float32")  # the session's floatx: as Keras code spells it out
    for dtype in ("float64", "mixed_float16", np.float16):
        with pytest.raises(ValueError, match="pynn computes every layer in the session's "
                                             "floatx"):
            pynn.Dense(2, dtype=dtype)
    with pytest.raises(ValueError, match="floatx"):
        pynn.Input((3,), dtype="float64")


def test_an_unbuilt_layer_refuses_count_params():
    with pytest.raises(ValueError, match="layer 'dense\\w*' has no weights yet"):
        pynn.Dense(3).count_params()
    model = _model()
    assert [layer.count_params() for layer in model.layers] == [0, 16, 5]


def test_checkpoint_without_its_monitored_value_saves_as_keras_does(tmp_path, rng):
    model = _model()
    model.compile("adam", "mse")
    path = tmp_path / "best.npz"
    with pytest.warns(RuntimeWarning, match="'val_loss', which is not in the logs"):
        model.fit(rng.normal(size=(16, 3)), rng.normal(size=16), epochs=2, verbose=0,
                  callbacks=[pynn.callbacks.ModelCheckpoint(path, save_best_only=True)])
    assert path.exists()  # no validation data: it warned and saved (nothing was saved)


def test_early_stopping_takes_a_negative_min_delta_as_keras_does():
    stop = pynn.callbacks.EarlyStopping(min_delta=-0.01)
    assert stop.min_delta == 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pynn.callbacks.ReduceLROnPlateau(min_delta=1e-4)


def test_a_file_from_when_two_clippings_were_taken_loads_with_the_norm(tmp_path):
    config = pynn.optimizers.serialize(pynn.optimizers.SGD(0.1, clipnorm=0.5))
    config["config"]["clipvalue"] = 0.1  # what pynn wrote before it refused both
    with pytest.warns(UserWarning, match="loads with the norm alone"):
        opt = pynn.optimizers.get(config)
    assert opt.clipping == ("clipnorm", 0.5)


def test_weight_decay_set_during_fit_is_never_ignored(rng):
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = x @ np.ones((3, 1), np.float32)
    kernels = {}
    for engine in ("auto", "layers"):
        pynn.set_seed(1)
        model = _model()
        model.compile(pynn.optimizers.SGD(0.05), "mse")
        decay = pynn.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: setattr(
            model.optimizer, "weight_decay", 5.0 if epoch else 0.0))
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False, engine=engine,
                  callbacks=[decay])
        kernels[engine] = model.get_weights()[0]
    np.testing.assert_allclose(kernels["auto"], kernels["layers"], rtol=1e-5, atol=1e-6)


def test_a_monitor_differing_in_case_is_named(rng):
    model = _model()
    model.compile("adam", "mse", metrics=["RootMeanSquaredError"])
    with pytest.warns(RuntimeWarning, match="did you mean 'val_RootMeanSquaredError'"):
        model.fit(rng.normal(size=(16, 3)), rng.normal(size=16), epochs=2, verbose=0,
                  validation_split=0.25, callbacks=[pynn.callbacks.EarlyStopping(
                      "val_rootmeansquarederror")])


def test_summary_still_takes_print_fn_first():
    lines = []
    _model().summary(lines.append)  # pynn's order before Keras' line_length came first
    assert lines


def test_objects_pickled_before_the_new_options_still_work():
    opt, loss = pynn.optimizers.SGD(0.1), pynn.losses.BinaryCrossentropy()
    for obj, attribute in ((opt, "weight_decay"), (opt, "name"), (loss, "label_smoothing")):
        del obj.__dict__[attribute]  # as an object pickled without it comes back
    assert opt.get_config()["learning_rate"] == 0.1 and "weight_decay" not in opt.get_config()
    assert loss(np.array([1.0, 0.0]), np.array([0.9, 0.2])) > 0


def test_ops_gemm_takes_a_host_bias_in_the_operands_dtype():
    previous = pynn.floatx()
    pynn.set_floatx("float64")
    try:
        ones = np.ones((2, 2))
        assert (pynn.ops.gemm(ones, ones, bias=[0.1, 0.1]) - 2.1 == 0).all()
    finally:
        pynn.set_floatx(previous)


@pytest.mark.parametrize("name", ["loss", "val_auc"])
def test_a_metric_named_like_a_log_entry_is_refused(name):
    with pytest.raises(ValueError, match="which the logs use for the loss or validation"):
        _model().compile("adam", "mse", metrics=[pynn.metrics.AUC(name=name)])


def test_layer_arguments_keras_code_passes_with_their_defaults():
    model = pynn.Sequential([pynn.Input((2, 3)), pynn.layers.Flatten(data_format="channels_last"),
                             pynn.BatchNormalization(axis=-1), pynn.Dropout(0.2, noise_shape=None,
                                                                            seed=1),
                             pynn.BatchNormalization(axis=1), pynn.Dense(1)])
    assert model.output_shape == (1,)
    with pytest.raises(ValueError, match=r"axis=0: pynn normalises the feature \(last\) axis"):
        pynn.BatchNormalization(axis=0)
    with pytest.raises(ValueError, match=r"axis=2 is not the feature \(last\) axis of inputs "
                                         r"of shape \(batch, 6\)"):
        pynn.Sequential([pynn.Input((6,)), pynn.BatchNormalization(axis=2)])
    with pytest.raises(NotImplementedError, match=r"noise_shape=\(None, 1\) is not supported"):
        pynn.Dropout(0.5, noise_shape=(None, 1))
    with pytest.raises(NotImplementedError, match="data_format='channels_first'"):
        pynn.layers.Flatten(data_format="channels_first")


def test_a_keras_3_dtype_policy_in_a_layer_config():
    """Keras 3 configs hold dtype as a DTypePolicy dict: numpy's dtype() raised a ValueError
    the layer's check did not catch ("entry not a 2- or 3- tuple")."""
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
              "registered_name": None}
    assert pynn.Dense(3, dtype=policy).units == 3
    with pytest.raises(ValueError, match="computes every layer in the session's floatx"):
        pynn.Dense(3, dtype={**policy, "config": {"name": "mixed_float16"}})


def test_a_layer_dtype_other_than_floatx_is_refused_with_advice_that_fits(float64_numpy):
    # float32 under a float64 session was told "use pynn.set_floatx for float64"
    with pytest.raises(ValueError, match=r"floatx \(float64\): pynn.set_floatx\('float32'\) "
                                         r"computes in it"):
        pynn.Dense(3, dtype="float32")
    with pytest.raises(ValueError, match="floatx may be float32 or float64 .*inputs of int32 "
                                         "are converted to it"):
        pynn.Input((4,), dtype="int32")


def test_kerass_none_arguments_are_taken_and_others_refused():
    """Keras' constraints, activity regularizers and LoRA at their default None (as configs
    and ported code spell them out) were TypeErrors; a value is refused by name."""
    dense = pynn.Dense(3, kernel_constraint=None, bias_constraint=None,
                       activity_regularizer=None, lora_rank=None, lora_alpha=None)
    assert dense.units == 3
    with pytest.raises(NotImplementedError, match="lora_alpha=4 is not supported"):
        pynn.Dense(3, lora_alpha=4)
    assert pynn.layers.LayerNormalization(beta_constraint=None, gamma_constraint=None)
    assert pynn.BatchNormalization(beta_constraint=None, gamma_constraint=None)
    with pytest.raises(NotImplementedError, match="kernel_constraint='max_norm' is not supported"):
        pynn.Dropout(0.5, kernel_constraint="max_norm")  # (a layer without a kernel)
    with pytest.raises(TypeError, match="unexpected keyword argument 'kernel_constrain'"):
        pynn.Dense(3, kernel_constrain=None)  # a typo stays an error


def test_fit_evaluate_predict_take_kerass_positional_order(rng):
    """Keras 3's order: evaluate(x, y, batch_size, verbose, sample_weight, steps, callbacks,
    return_dict); pynn's fifth was return_dict (a weights array there failed, a number
    returned a dict, unweighted)."""
    import inspect

    order = {
        "fit": ["x", "y", "batch_size", "epochs", "verbose", "callbacks", "validation_split",
                "validation_data", "shuffle", "class_weight", "sample_weight",
                "initial_epoch", "steps_per_epoch", "validation_steps",
                "validation_batch_size", "validation_freq"],
        "evaluate": ["x", "y", "batch_size", "verbose", "sample_weight", "steps", "callbacks",
                     "return_dict"],
        "predict": ["x", "batch_size", "verbose", "steps", "callbacks"],
    }
    for method, names in order.items():
        params = list(inspect.signature(getattr(pynn.Sequential, method)).parameters)[1:]
        assert params[:len(names)] == names, method
    model = _model()
    model.compile("adam", "mse")
    x, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    w = rng.uniform(0.1, 3.0, size=20)
    np.testing.assert_allclose(model.evaluate(x, y, 8, 0, w),
                               model.evaluate(x, y, batch_size=8, sample_weight=w), rtol=1e-6)
    np.testing.assert_array_equal(model.predict(x, 8, 0, 2), model.predict(x[:16]))


def test_fit_positional_order_matches_keras_itself():
    import inspect

    from conftest import import_keras

    keras = import_keras()

    for method in ("fit", "evaluate", "predict"):
        theirs = [p for p in inspect.signature(getattr(keras.Sequential, method)).parameters
                  if p not in ("self", "kwargs")]
        ours = list(inspect.signature(getattr(pynn.Sequential, method)).parameters)[1:]
        assert ours[:len(theirs)] == theirs, method


def test_shuffle_batch_shuffles_within_batches_as_keras():
    from pynn.engine import epoch_order

    order = epoch_order(103, "batch", 7, 0, 10)
    assert sorted(order.tolist()) == list(range(103))
    chunks = [order[i:i + 10] for i in range(0, 103, 10)]
    assert all(sorted(c.tolist()) == list(range(i * 10, min(103, i * 10 + 10)))
               for i, c in enumerate(chunks))  # each batch keeps its samples
    assert not np.array_equal(order, np.arange(103))  # shuffled within them
    assert not np.array_equal(order, epoch_order(103, "batch", 7, 11, 10))  # each pass anew


def test_shuffle_takes_a_flag_or_batch(rng):
    model = _model()
    model.compile("sgd", "mse")
    x, y = rng.normal(size=(20, 3)), rng.normal(size=20)
    for good in (True, False, None, 0, np.bool_(True), "batch"):
        model.fit(x, y, batch_size=5, shuffle=good, verbose=0)
    for bad in ("yes", "global", 0.5, [True]):
        with pytest.raises(ValueError, match="shuffle must be True, False or 'batch'"):
            model.fit(x, y, shuffle=bad, verbose=0)


def test_a_batch_shuffled_epoch_trains_on_the_same_batches(rng):
    """shuffle='batch' changes each batch's order of samples, not which samples: the mean
    gradient of each step, so training matches shuffle=False to rounding."""
    x, y = rng.normal(size=(60, 3)).astype(np.float32), rng.normal(size=60)
    results = []
    for shuffle in (False, "batch"):
        pynn.set_seed(2)
        model = _model()
        model.compile("sgd", "mse")
        model.fit(x, y, batch_size=16, epochs=3, shuffle=shuffle, verbose=0,
                  engine="layers")
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batchnormalization_takes_axis_first_as_keras():
    assert pynn.BatchNormalization(1).momentum == 0.99  # axis=1: the features' of (N, F)
    layer = pynn.BatchNormalization(-1, 0.9, 1e-2)
    assert (layer.momentum, layer.epsilon) == (0.9, 1e-2)
    with pytest.raises(ValueError, match="axis=0.9"):  # a momentum passed first, as before
        pynn.BatchNormalization(0.9)


def test_binary_focal_crossentropy_refuses_a_dtype_it_would_ignore():
    with pytest.raises(ValueError, match="loss 'binary_focal_crossentropy': dtype='float16'"):
        pynn.losses.BinaryFocalCrossentropy(dtype="float16")
    assert pynn.losses.BinaryFocalCrossentropy(dtype="float32").gamma == 2.0


def test_the_base_layer_classes_are_at_the_top_level():
    assert pynn.Layer is pynn.layers.Layer and pynn.InputLayer is pynn.layers.InputLayer
    assert pynn.RandomLayer is pynn.layers.RandomLayer


def test_a_loss_called_with_sample_weight_weighs_as_in_a_model(rng):
    """loss(y_true, y_pred, sample_weight) (Keras'; a TypeError before): the weighted sum over
    the unweighted count, as fit and evaluate weigh."""
    y_true = rng.normal(size=(6, 2))
    y_pred = rng.normal(size=(6, 2))
    w = rng.uniform(0.0, 2.0, size=6)
    loss = pynn.losses.MeanSquaredError()
    per_sample = ((y_pred - y_true) ** 2).mean(axis=1)
    assert loss(y_true, y_pred, w) == pytest.approx((per_sample * w).sum() / 6, rel=1e-6)
    assert loss(y_true, y_pred, w[:, None]) == pytest.approx(loss(y_true, y_pred, w))
    assert loss(y_true, y_pred, 3.0) == pytest.approx(3 * loss(y_true, y_pred), rel=1e-6)
    model = pynn.Sequential([pynn.Input((2,)), pynn.Dense(2)])
    model.compile("sgd", "mse")
    x = rng.normal(size=(6, 2)).astype(np.float32)
    out = model.predict(x)
    assert model.evaluate(x, y_true, sample_weight=w) == pytest.approx(
        loss(y_true, out, w), rel=1e-5)
    for bad, match in ((np.ones(5), r"must have shape \(6,\)"), (np.array([np.nan] * 6),
                                                                  "finite"),
                       (np.array(["a"] * 6), "real numbers")):
        with pytest.raises((ValueError, TypeError), match=match):
            loss(y_true, y_pred, bad)


def test_loss_sample_weight_matches_keras(rng):
    from conftest import import_keras

    keras = import_keras()
    labels = rng.integers(0, 3, size=(5, 4))
    probs = rng.dirichlet(np.ones(3), size=(5, 4)).astype(np.float32)
    per_position = rng.uniform(0, 2, size=(5, 4)).astype(np.float32)
    per_sample = rng.uniform(0, 2, size=5).astype(np.float32)
    y_true, y_pred = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    for ours, theirs, args in (
            (pynn.losses.SparseCategoricalCrossentropy(),
             keras.losses.SparseCategoricalCrossentropy(), (labels, probs, per_position)),
            (pynn.losses.SparseCategoricalCrossentropy(),
             keras.losses.SparseCategoricalCrossentropy(),
             (labels, probs, per_sample[:, None])),  # ((5,): Keras fails to broadcast it)
            (pynn.losses.Huber(), keras.losses.Huber(), (y_true, y_pred, per_sample)),
            (pynn.losses.MeanAbsoluteError(), keras.losses.MeanAbsoluteError(),
             (y_true, y_pred, 0.5))):
        expected = float(keras.ops.convert_to_numpy(theirs(*args)))
        assert ours(*args) == pytest.approx(expected, rel=1e-5), type(ours).__name__


def test_flags_and_ranges_checked_as_keras():
    """From the docs pass: text flags were read by bool() ("false" is True), SGD refused
    Keras' momentum=1.0, VarianceScaling took a negative scale and failed on a 0-d shape."""
    with pytest.raises(TypeError, match="nesterov must be True or False"):
        pynn.optimizers.SGD(0.1, momentum=0.9, nesterov="false")
    assert pynn.optimizers.SGD(0.1, momentum=0.9, nesterov=np.True_).nesterov is True
    assert pynn.optimizers.SGD(0.1, momentum=1.0).momentum == 1.0
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        pynn.optimizers.SGD(0.1, momentum=1.5)
    with pytest.raises(TypeError, match="invert must be True or False"):
        pynn.Normalization(invert="false")
    for bad in (-1.0, 0.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="VarianceScaling: scale must be a positive"):
            pynn.initializers.VarianceScaling(scale=bad)
    scalar = pynn.initializers.VarianceScaling(scale=2.0, seed=1)((), "float32")
    assert np.shape(scalar) == () and np.isfinite(scalar)
    assert pynn.initializers.GlorotUniform(seed=1)(()).shape == ()


def test_sequential_takes_trainable_as_keras():
    frozen = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2), pynn.Dense(1)], trainable=False)
    assert not frozen.trainable and not any(layer.trainable for layer in frozen.layers[1:])
    assert pynn.Sequential([pynn.Dense(2)], trainable=True).layers[0].trainable
    with pytest.raises(TypeError, match="trainable must be True or False"):
        pynn.Sequential([pynn.Dense(2)], trainable="no")
    with pytest.raises(TypeError, match="Sequential: name must be a string, got 5"):
        pynn.Sequential([pynn.Dense(2)], name=5)  # (accepted before; a layer's is refused)
    config = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)]).get_config()
    assert pynn.Sequential.from_config({**config, "name": 5}).name == "5"  # (files made then)


def test_every_loss_takes_kerass_name_and_dtype(tmp_path):
    """Keras 3's losses take name= and dtype= (pynn's refused them but the focal loss's):
    the name is kept and saved, a dtype other than floatx refused, as a layer's."""
    import inspect

    classes = [c for c in vars(pynn.losses).values() if isinstance(c, type) and
               issubclass(c, pynn.losses.Loss) and c is not pynn.losses.Loss and
               not c.__name__.startswith("_")]
    assert len(classes) >= 16
    for cls in classes:
        needed = [p for p in inspect.signature(cls).parameters.values()
                  if p.default is inspect.Parameter.empty and p.kind != p.VAR_KEYWORD]
        if needed:
            continue
        loss = cls(name="mine", dtype="float32")
        assert loss.name == "mine", cls
        again = pynn.losses.get(pynn.losses.serialize(loss))
        assert type(again) is cls and again.name == "mine"
        with pytest.raises(ValueError, match="dtype='float16'"):
            cls(dtype="float16")
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2, activation="softmax")])
    model.compile("adam", pynn.losses.SparseCategoricalCrossentropy(name="xent"))
    model.save(tmp_path / "m.npz")
    assert pynn.load_model(tmp_path / "m.npz").loss.name == "xent"
    with pytest.raises(TypeError, match="name must be a string"):
        pynn.losses.MeanSquaredError(name=3)


@pytest.mark.parametrize("bad", [dict(metrics=["no_such_metric"]), dict(metrics="mae"),
                                 dict(loss="no_such_loss"), dict(optimizer="no_such_one")])
def test_a_refused_compile_leaves_the_model_as_it_was(rng, bad):
    """The optimizer (its trained state), the loss and the metric list were replaced before
    the refusal: the model failed every fit and evaluate until compiled again."""
    x, y = rng.normal(size=(32, 3)), rng.normal(size=32)
    model = _model()
    optimizer = pynn.optimizers.Adam(0.01)
    model.compile(optimizer, "mse", metrics=["mae"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    before = model.evaluate(x, y)
    with pytest.raises((ValueError, TypeError)):
        model.compile(**{"optimizer": "sgd", "loss": "mae", **bad})
    assert model.optimizer is optimizer and optimizer.training_steps == 8
    assert model.loss.name == "mean_squared_error" and model.metrics_names == ["loss", "mae"]
    assert model.evaluate(x, y) == before
    model.fit(x, y, batch_size=8, verbose=0)
    assert optimizer.training_steps == 12


def test_build_does_not_replace_the_models_input_shape(rng):
    """build((None, 2, 8)) on a model with Input((4, 4)) took the new shape (Keras 3 refuses:
    "already configured"); a built model's shape stays too; the same shape is a no-op."""
    model = pynn.Sequential([pynn.Input((4, 4)), pynn.layers.Flatten(), pynn.Dense(2)])
    with pytest.raises(ValueError, match=r"already configured for inputs of shape \(None, 4, 4\)"):
        model.build((None, 2, 8))
    assert model.input_shape == (4, 4)
    model.build((None, 4, 4))
    assert model.predict(rng.normal(size=(3, 4, 4))).shape == (3, 2)
    built = pynn.Sequential([pynn.Dense(2)])
    built.build((None, 3))
    with pytest.raises(ValueError, match="already configured"):
        built.build((None, 7, 3))
    assert built.input_shape == (3,) and built.output_shape == (2,)


def test_one_input_and_target_in_a_list_everywhere(rng):
    """Keras' [x] and [y]: predict with batch hooks counted the list's one row (a broadcast
    error), test_on_batch refused [x], and [y] of a one-sample batch was refused."""
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(2)])
    model.compile("sgd", "mse")
    x, y = rng.normal(size=(70, 3)), rng.normal(size=(70, 2))
    seen = []

    class Hook(pynn.callbacks.Callback):
        def on_predict_batch_end(self, batch, logs=None):
            seen.append(batch)

    np.testing.assert_array_equal(model.predict([x], callbacks=[Hook()]), model.predict(x))
    assert seen == [0, 1, 2]
    assert model.test_on_batch([x], y) == model.test_on_batch(x, y) == \
        model.test_on_batch([x], [y])
    one = model.test_on_batch(x[:1], y[:1])
    assert model.test_on_batch([x[:1]], [y[:1]]) == one
    assert model.train_on_batch([x[:1]], [y[:1]]) == one


def test_a_refused_build_leaves_no_layer_marked_built(rng):
    model = pynn.Sequential([pynn.Input((4,)), pynn.Dense(6)])
    model.add(pynn.layers.Reshape((5,)), rebuild=False)
    with pytest.raises(ValueError):
        model.predict(rng.normal(size=(1, 4)))
    assert not model.built and not model.layers[-1].built
    model.pop()
    assert model.built and model.predict(rng.normal(size=(2, 4))).shape == (2, 6)


def test_pop_keeps_the_input_shape_of_the_first_layer(rng):
    """Dense(2, input_shape=(5,)) popped: the model forgot (5,) (Keras 3 keeps an
    InputLayer); a model built from data keeps its shape too."""
    model = pynn.Sequential([pynn.Dense(2, input_shape=(5,))])
    model.pop()
    model.add(pynn.Dense(3))
    assert model.built and model.input_shape == (5,) and model.count_params() == 18
    built = pynn.Sequential([pynn.Dense(2)])
    built.predict(rng.normal(size=(1, 4)))
    built.pop()
    assert built.input_shape == (4,)
    assert pynn.Sequential([pynn.Dense(2)]).pop() is not None  # unbuilt: nothing to keep


def test_kerass_variable_lists_and_reset_metrics(rng):
    model = _model()
    model.compile("adam", "mse", metrics=["mae"])
    model.layers[1].trainable = False
    assert model.variables == model.weights
    assert model.trainable_variables == model.trainable_weights
    assert model.non_trainable_variables == model.non_trainable_weights != []
    x, y = rng.normal(size=(8, 3)), rng.normal(size=8)
    model.fit(x, y, verbose=0)
    mae = model.metrics[0]
    assert mae.result() > 0
    model.reset_metrics()
    assert np.isnan(mae.result())  # as before any batch (pynn's metrics say NaN there)


def test_input_shape_on_a_later_layer_that_contradicts_its_input_warns():
    """It was ignored without a word (Keras warns of input_shape= on any layer)."""
    with pytest.warns(UserWarning, match=r"'late' was given input_shape \(9,\), but takes "
                                         r"\(3,\) from the layer before it"):
        model = pynn.Sequential([pynn.Dense(3, input_shape=(4,)),
                                 pynn.Dense(2, input_shape=(9,), name="late")])
    assert model.input_shape == (4,) and model.output_shape == (2,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shape it does take: nothing to say
        pynn.Sequential([pynn.Dense(3, input_shape=(4,)), pynn.Dense(2, input_shape=(3,))])


def test_kerass_deserialize_functions_and_data_utilities(rng):
    """keras.<module>.deserialize(config, custom_objects) for constraints, regularizers,
    initializers, losses and optimizers; utils.normalize and the (x, y, sample_weight)
    packing helpers."""
    keras_config = {"module": "keras.constraints", "class_name": "MaxNorm",
                    "config": {"max_value": 3, "axis": 0}, "registered_name": None}
    assert pynn.constraints.deserialize(keras_config) == pynn.constraints.MaxNorm(3)
    assert pynn.regularizers.deserialize(
        pynn.regularizers.serialize(pynn.regularizers.L1L2(0.1, 0.2))) == \
        pynn.regularizers.L1L2(0.1, 0.2)
    assert type(pynn.losses.deserialize({"class_name": "Huber", "config": {"delta": 2.0}})
                ).__name__ == "Huber"
    assert pynn.optimizers.deserialize({"class_name": "Adam", "config": {
        "learning_rate": 0.25}}).learning_rate == 0.25
    assert type(pynn.initializers.deserialize("he_normal")).__name__ == "HeNormal"

    class Halving(pynn.constraints.Constraint):
        def __call__(self, w):
            return w / 2

    mine = pynn.constraints.deserialize({"class_name": "Halving", "config": {}},
                                        custom_objects={"Halving": Halving})
    assert type(mine) is Halving
    with pytest.raises(TypeError, match="a loss is described by a config dict"):
        pynn.losses.deserialize(3)
    for module in (pynn.constraints, pynn.regularizers, pynn.initializers, pynn.losses):
        assert module.deserialize(None) is None  # (a layer's from_config of no constraint)
    keras_function = {"module": "builtins", "class_name": "function",
                      "config": "mean_squared_error", "registered_name": "function"}
    assert type(pynn.losses.deserialize(keras_function)).__name__ == "MeanSquaredError"
    x = rng.normal(size=(4, 3))
    x[1] = 0
    for axis, order in ((-1, 2), (0, 1), (1, np.inf)):
        got = pynn.utils.normalize(x, axis=axis, order=order)
        norms = np.linalg.norm(x, order, axis=axis, keepdims=True)
        np.testing.assert_allclose(got, x / np.where(norms == 0, 1, norms))
    with pytest.raises(ValueError, match="axis must be an axis"):
        pynn.utils.normalize(x, axis=2)
    row = pynn.utils.normalize([3.0, 4.0])  # a 1-D array keeps its shape
    np.testing.assert_allclose(row, [0.6, 0.8])
    np.testing.assert_array_equal(pynn.utils.normalize(x, axis=None), pynn.utils.normalize(x))
    assert pynn.utils.unpack_x_y_sample_weight(x) == (x, None, None)
    assert pynn.utils.unpack_x_y_sample_weight([1, 2]) == (1, 2, None)
    assert pynn.utils.unpack_x_y_sample_weight((1, 2, 3)) == (1, 2, 3)
    with pytest.raises(ValueError, match="got a tuple of 4"):
        pynn.utils.unpack_x_y_sample_weight((1, 2, 3, 4))
    assert pynn.utils.pack_x_y_sample_weight(1) == 1
    assert pynn.utils.pack_x_y_sample_weight([1, 2]) == ([1, 2],)
    assert pynn.utils.pack_x_y_sample_weight(1, 2) == (1, 2)
    assert pynn.utils.pack_x_y_sample_weight(1, 2, 3) == (1, 2, 3)


def test_kerass_build_then_set_weights_and_shapes_with_the_batch_axis():
    layers = [pynn.Dense(2), pynn.layers.BatchNormalization(), pynn.layers.LayerNormalization(),
              pynn.layers.PReLU(), pynn.layers.Normalization()]
    for layer in layers:
        layer.build((None, 3))  # Keras' form: the batch axis first
        assert layer.built and layer.input_shape == (3,)
    dense = layers[0]
    dense.set_weights([np.ones((3, 2)), np.arange(2.0)])
    np.testing.assert_array_equal(dense(np.ones((1, 3))), [[3.0, 4.0]])
    model = pynn.Sequential([pynn.Input((3,)), dense])
    np.testing.assert_array_equal(model.predict(np.ones((1, 3))), [[3.0, 4.0]])
    assert pynn.layers.Flatten().compute_output_shape((None, 3, 4)) == (None, 12)
    assert pynn.layers.Flatten().compute_output_shape((3, 4)) == (12,)
    assert pynn.layers.Reshape((-1, 2)).compute_output_shape((None, 3, 4)) == (None, 6, 2)
    with pytest.raises(ValueError, match="cannot take the shape"):
        pynn.layers.Reshape((5,)).compute_output_shape((None, 3, 4))


def test_kerass_names_of_a_layers_weights_dtype_and_path():
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4, name="hidden"),
                             pynn.layers.BatchNormalization(), pynn.Dense(1)])
    dense, norm = model.layers[1], model.layers[2]  # (after the Input: README)
    assert dense.variables == dense.weights and len(dense.variables) == 2
    assert norm.trainable_variables == norm.trainable_weights and len(norm.trainable_variables) == 2
    assert norm.non_trainable_variables == norm.non_trainable_weights
    assert len(norm.non_trainable_variables) == 2
    assert dense.dtype == dense.compute_dtype == dense.variable_dtype == pynn.floatx()
    assert dense.path == "hidden"
    pynn.set_floatx("float64")
    try:
        assert dense.variable_dtype == dense.compute_dtype == "float64"
    finally:
        pynn.set_floatx("float32")


def test_compile_config_round_trips(rng):
    model = _model()
    assert model.get_compile_config() is None
    model.compile(pynn.optimizers.Adam(0.01, clipnorm=1.0),
                  pynn.losses.Huber(delta=0.5, reduction="sum"), metrics=["mae"])
    config = model.get_compile_config()
    other = _model()
    other.compile_from_config(config)
    assert type(other.optimizer) is pynn.optimizers.Adam and other.optimizer.clipnorm == 1.0
    assert other.loss.delta == 0.5 and other.loss.reduction == "sum"
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    other.set_weights(model.get_weights())
    assert other.evaluate(x, y, return_dict=True) == model.evaluate(x, y, return_dict=True)
    with pytest.raises(ValueError, match="get_compile_config"):
        other.compile_from_config({"loss": "mse"})


def test_kerass_clone_function_rebuilding_layers_gives_no_warnings():
    model = pynn.Sequential([pynn.Input((3,)), pynn.Dense(4), pynn.layers.BatchNormalization(),
                             pynn.Dense(1)])

    def widen(layer):  # Keras' documented idiom: each layer from its config, one changed
        config = layer.get_config()
        if layer.name == model.layers[1].name:  # (the first Dense, after the Input)
            config["units"] = 5
        return type(layer).from_config(config)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clone = pynn.models.clone_model(model, clone_function=widen)
    assert [w.shape for w in clone.get_weights()][:2] == [(3, 5), (5,)]
    lazy = pynn.Sequential([pynn.Dense(4), pynn.Dense(1)])
    lazy.build((3,))  # (built lazily: its first layer's config names the model's input)
    assert pynn.Sequential.from_config(lazy.get_config()).input_shape == (3,)


def test_a_layer_of_yours_may_store_its_own_dtype_path_or_variables(rng):
    class Keeps(pynn.Dense):
        def __init__(self, units, **kwargs):
            super().__init__(units, **kwargs)
            self.path, self.variables = "vocab.txt", {}

        def build(self, input_shape, backend, dtype):
            super().build(input_shape, backend, dtype)
            self.dtype = dtype

    model = pynn.Sequential([pynn.Input((3,)), Keeps(2)])
    model.compile("sgd", "mse")
    model.fit(rng.normal(size=(8, 3)), rng.normal(size=(8, 2)), verbose=0)
    layer = model.layers[1]
    assert layer.path == "vocab.txt" and layer.variables == {}
    assert layer.dtype == pynn.floatx() and pynn.Dense(2).path.startswith("dense")


def test_clone_function_clones_of_a_lazily_built_model_are_built(rng):
    model = pynn.Sequential([pynn.Dense(4), pynn.Dense(1)])
    model.build((None, 3))
    clone = pynn.models.clone_model(
        model, clone_function=lambda layer: type(layer).from_config(layer.get_config()))
    assert clone.built and clone.input_shape == (3,)
    clone.set_weights(model.get_weights())
    x = rng.normal(size=(4, 3))
    np.testing.assert_array_equal(clone.predict(x), model.predict(x))

    class Times(pynn.layers.Layer):  # a first layer whose config is its own arguments only
        def __init__(self, k=2.0):
            super().__init__()
            self.k = k

        def get_config(self):
            return {"k": self.k}

        def forward(self, x, training=False, logits=False):
            return x * self.k

    custom = pynn.Sequential([Times(3.0), pynn.Dense(1)])
    custom.build((None, 3))
    assert "input_shape" not in custom.get_config()["layers"][0]["config"]
    pynn.models.clone_model(custom, clone_function=lambda layer: layer)


class _Units(pynn.layers.Layer):
    def __init__(self, units, **kw):
        super().__init__(**kw)
        self.units = units

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_activations_and_layers_serialize_as_the_other_modules(rng):
    """README says each component module has serialize/deserialize; pynn.activations and
    pynn.layers had neither (Keras 3 has both)."""
    acts = pynn.activations
    assert acts.serialize("relu") == "relu" and acts.serialize(acts.gelu) == "gelu"
    slope = acts.leaky_relu_with(0.1)
    assert acts.serialize(slope) == {"name": "leaky_relu", "param": 0.1}
    assert acts.deserialize(acts.serialize(slope)) == slope
    assert acts.deserialize("swish") == acts.get("silu") and acts.deserialize(None) is None
    with pytest.raises(TypeError, match="an activation is described by a config dict"):
        acts.deserialize(3)
    for name in ("relu", "mine"):  # (ignored before: pynn's relu, or 'unknown activation')
        given = f"activation '{name}' is given among the custom objects, but pynn's"
        with pytest.raises(ValueError, match=given):
            acts.deserialize(name, custom_objects={name: np.tanh})
        with pynn.utils.custom_object_scope({name: np.tanh}):  # a scope, or load_model's
            with pytest.raises(ValueError, match=given):
                acts.deserialize(name)
            with pytest.raises(ValueError, match=given):
                pynn.Dense(2, activation=name)
    assert acts.deserialize("relu") == acts.relu  # (none given: pynn's)
    layer = pynn.Dense(3, activation="relu", kernel_regularizer="l2", name="d1")
    config = pynn.layers.serialize(layer)
    again = pynn.layers.deserialize(config)
    assert type(again) is pynn.Dense and not again.built
    assert pynn.layers.serialize(again) == config
    mine = pynn.layers.deserialize(pynn.layers.serialize(_Units(2, name="s")),
                                   custom_objects={"_Units": _Units})
    assert type(mine) is _Units and mine.units == 2 and mine.name == "s"
    with pytest.raises(ValueError, match="unknown layer class '_Units'"):
        pynn.layers.deserialize(pynn.layers.serialize(_Units(2)))
    with pytest.raises(TypeError, match="expected a layer, got str"):
        pynn.layers.serialize("Dense")
    with pytest.raises(TypeError, match="a layer is described by a dict with 'class_name'"):
        pynn.layers.deserialize("Dense")
    # a Keras 3 layer's description (module, DTypePolicy, registered_name)
    keras_dense = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                   "config": {"name": "kd", "trainable": True, "units": 4,
                              "activation": "tanh", "use_bias": True,
                              "dtype": {"module": "keras", "class_name": "DTypePolicy",
                                        "config": {"name": "float32"},
                                        "registered_name": None}}}
    dense = pynn.layers.deserialize(keras_dense)
    assert (dense.units, dense.name, dense.activation) == (4, "kd", pynn.activations.tanh)


def test_small_messages_from_a_readme_review():
    """A weight showed as <...Parameter object at 0x...>; a 1-D x of another length than
    the features was told to pass x[None] (a second error followed); the activation names
    listed left out the aliases (swish, hard_swish)."""
    model = pynn.Sequential([pynn.Input((20,)), pynn.Dense(2, name="d")])
    shown = repr(model.get_layer("d").bias)
    assert shown == "<Parameter name=d/bias, shape=(2,), dtype=float32, trainable=True, " \
                    "value=[0., 0.]>"
    assert "shape=(20, 2)" in repr(model.get_layer("d").kernel)
    with pytest.raises(ValueError, match=r"got shape \(200,\); the model takes 20 features "
                                         r"per sample"):
        model.predict(np.zeros(200))
    with pytest.raises(ValueError, match=r"for one sample pass x\[None\]"):
        model.predict(np.zeros(20))
    with pytest.raises(ValueError, match="cannot interpret .*swish, hard_swish"):
        pynn.Dense(2, activation=np.tanh)
    with pytest.raises(ValueError, match="a rate of 1 would drop every value"):
        pynn.Dropout(1.0)
