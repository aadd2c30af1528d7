"""What a callback changes during fit is followed by both training paths, the validation and
the logs (found by a lifecycle audit): the output activation or the loss replaced, a loss's
settings set in place, an option the engine lacks set mid-epoch (metrics over both paths),
compile refused, CSVLogger's validation columns, the History returned, weight flags fixed
once built; and PyTorch tensors that require grad are read as values."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import pynn
from conftest import requires_backend

ENGINES = ["auto", "layers"]


def _binary(rng, n=64):
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return x, (x[:, :1] > 0).astype(np.float32)


def _classifier(outputs=1, activation="sigmoid"):
    pynn.set_seed(0)
    return pynn.Sequential([pynn.Input((5,)), pynn.Dense(8, activation="relu"),
                            pynn.Dense(outputs, activation=activation)])


def _on_epoch(epoch, action):
    return pynn.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: action() if e == epoch else None)


@requires_backend("cpu")
def test_the_output_activation_changed_mid_fit_is_followed_in_training_and_validation(rng):
    # the loss took the sigmoid's pre-activations ("fused") as decided when fit began: the
    # layer path went on training as if the sigmoid were there, validation on both paths
    x, y = _binary(rng)
    histories = {}
    for engine in ENGINES:
        model = _classifier()
        model.compile("adam", "binary_crossentropy", backend="cpu")
        linear = _on_epoch(0, lambda: setattr(model.layers[-1], "activation", "linear"))
        h = model.fit(x, y, epochs=3, batch_size=16, verbose=0, engine=engine,
                      validation_data=(x, y), callbacks=[linear])
        assert h.history["val_loss"][-1] == pytest.approx(model.evaluate(x, y, verbose=0),
                                                          rel=1e-6)
        histories[engine] = h.history
    np.testing.assert_allclose(histories["auto"]["loss"], histories["layers"]["loss"],
                               rtol=1e-5)


@requires_backend("cpu")
@pytest.mark.parametrize("engine", ENGINES)
def test_the_loss_replaced_mid_fit(rng, engine):
    x, y = _binary(rng)
    model = _classifier()
    model.compile("adam", "binary_crossentropy", backend="cpu")
    h = model.fit(x, y, epochs=2, batch_size=16, verbose=0, engine=engine,
                  callbacks=[_on_epoch(0, lambda: setattr(model, "loss", "mse"))])
    probabilities = model.predict(x, verbose=0)
    assert h.history["loss"][1] > 0 and np.all((probabilities > 0) & (probabilities < 1))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        float(np.mean((probabilities - y) ** 2)), rel=1e-5)


@requires_backend("cpu")
def test_a_losss_setting_changed_in_place_reaches_the_engine(rng):
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = 3 * x[:, :2].sum(axis=1, keepdims=True)
    losses = {}
    for engine in ENGINES:
        pynn.set_seed(0)
        model = pynn.Sequential([pynn.Input((5,)), pynn.Dense(8, activation="relu"),
                                 pynn.Dense(1)])
        model.compile("sgd", pynn.losses.Huber(delta=1.0), backend="cpu")
        h = model.fit(x, y, epochs=3, batch_size=16, verbose=0, engine=engine,
                      callbacks=[_on_epoch(0, lambda: setattr(model.loss, "delta", 0.1))])
        losses[engine] = h.history["loss"]
    assert losses["auto"][1] < 0.5 * losses["auto"][0]  # delta 0.1: a tenth of the slope
    np.testing.assert_allclose(losses["auto"], losses["layers"], rtol=1e-5)


@requires_backend("cpu")
@pytest.mark.parametrize("switch_at", [0, 1, 2])
def test_metrics_over_an_epoch_run_partly_in_the_engine_and_partly_through_the_layers(
        rng, switch_at):
    # weight decay on SGD is not in the engine: set after batch `switch_at`, the rest of the
    # epoch runs layer by layer; accuracy was the engine's sum over all the epoch's samples
    x, y = _binary(rng, 80)
    results = {}
    for engine in ENGINES:
        model = _classifier()
        model.compile(pynn.optimizers.SGD(0.1), "binary_crossentropy",
                      metrics=["accuracy", "mae"], backend="cpu")
        batch_logs = []

        def on_batch_end(batch, logs, model=model, batch_logs=batch_logs):
            batch_logs.append(dict(logs))
            if batch == switch_at:
                model.optimizer.weight_decay = 0.01

        h = model.fit(x, y, epochs=1, batch_size=16, verbose=0, engine=engine, shuffle=False,
                      callbacks=[pynn.callbacks.LambdaCallback(on_train_batch_end=on_batch_end)])
        results[engine] = (h.history, batch_logs)
    (auto, auto_batches), (layers, layer_batches) = results["auto"], results["layers"]
    assert auto["accuracy"] == pytest.approx(layers["accuracy"], rel=1e-9)
    assert auto["mae"] == pytest.approx(layers["mae"], rel=1e-5)
    assert len(auto_batches) == len(layer_batches) == 5
    for a, b in zip(auto_batches, layer_batches):
        assert a["accuracy"] == pytest.approx(b["accuracy"], rel=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
def test_compile_from_a_callback_is_refused_and_the_model_stays_usable(rng, engine):
    x, y = _binary(rng)
    model = _classifier()
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    recompile = _on_epoch(0, lambda: model.compile("sgd", "binary_crossentropy"))
    with pytest.raises(RuntimeError, match=r"compile\(\) was called during fit"):
        model.fit(x, y, epochs=2, verbose=0, engine=engine, callbacks=[recompile])
    h = model.fit(x, y, epochs=1, verbose=0, engine=engine)
    assert set(h.history) == {"loss", "accuracy"}
    model.compile("sgd", "binary_crossentropy")  # after fit: as always


def test_csv_logger_has_the_validation_columns_when_validation_skips_the_first_epoch(
        tmp_path, rng):
    x, y = _binary(rng)
    model = _classifier()
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    path = tmp_path / "log.csv"
    h = model.fit(x, y, epochs=4, verbose=0, validation_split=0.25, validation_freq=2,
                  callbacks=[pynn.callbacks.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]  # Keras 3's
    assert [row[3:] for row in rows[1:]][::2] == [["NA", "NA"]] * 2
    assert [float(row[4]) for row in rows[2::2]] == h.history["val_loss"]
    model.fit(x, y, epochs=1, verbose=0, callbacks=[pynn.callbacks.CSVLogger(path)])
    with open(path, newline="") as f:  # no validation: the columns, "NA" (Keras 3's)
        again = list(csv.reader(f))
    assert again[0] == rows[0] and len(again) == 2 and again[1][3:] == ["NA", "NA"]


def test_fit_returns_the_users_history_and_model_history_is_the_outer_fit(rng):
    x, y = _binary(rng)
    model = _classifier()
    model.compile("adam", "binary_crossentropy")
    mine = pynn.callbacks.History()
    assert model.fit(x, y, epochs=2, verbose=0, callbacks=[mine]) is mine  # (Keras 3)
    assert mine.epoch == [0, 1] and model.history is mine
    model.fit(x, y, epochs=3, verbose=0, callbacks=[mine])  # the same History again: its
    assert mine.epoch == [0, 1, 2] and len(mine.history["loss"]) == 5  # values add up (Keras 3)
    model.fit(x, y, epochs=7, initial_epoch=5, verbose=0, callbacks=[mine])
    assert mine._epochs_of("loss") == list(range(7))  # one curve: the plot's epochs
    inner = _on_epoch(0, lambda: model.fit(x, y, epochs=1, verbose=0))
    outer = model.fit(x, y, epochs=2, verbose=0, callbacks=[inner])
    assert model.history is outer and outer.epoch == [0, 1]


def test_weight_flags_cannot_change_once_built():
    dense = pynn.Dense(3, use_bias=True)
    dense.use_bias = False  # before build: a setting like any other
    dense.use_bias = True
    model = pynn.Sequential([pynn.Input((4,)), dense, pynn.BatchNormalization()])
    dense.use_bias = True  # the same value: fine
    with pytest.raises(ValueError, match="use_bias cannot change once the layer is built"):
        dense.use_bias = False
    with pytest.raises(ValueError, match="center cannot change"):
        model.layers[2].center = False
    assert len(model.get_weights()) == 6 and dense.use_bias is True


def test_tensors_that_require_grad_are_read_as_values(rng):
    torch = pytest.importorskip("torch")
    linear = torch.nn.Linear(8, 1)  # its weights require grad
    model = _classifier(1, None)
    model.layers[-1].set_weights([linear.weight.T, linear.bias])
    model.layers[-1].kernel.assign(linear.weight.T)
    np.testing.assert_array_equal(model.layers[-1].bias.numpy(),
                                  linear.bias.detach().numpy())
    x = torch.randn(16, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(16, 1, requires_grad=True)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               model.predict(x.detach().numpy(), verbose=0))
    model.compile("adam", "mse")
    model.fit(x, y, sample_weight=torch.ones(16, requires_grad=True), epochs=1, verbose=0)
    assert np.isfinite(model.evaluate(x, y, verbose=0))


def test_every_layer_class_is_also_at_the_top_level():
    for name in pynn.layers.__all__:
        cls = getattr(pynn.layers, name)
        if isinstance(cls, type) and issubclass(cls, pynn.layers.Layer) and name not in (
                "Layer", "InputLayer", "RandomLayer"):
            assert getattr(pynn, name) is cls, name
