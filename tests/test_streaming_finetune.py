"""Online learning (train_on_batch, partial_fit keep optimizer state) and fine-tuning
(freeze, reload, new head)."""

from __future__ import annotations

import numpy as np

import pynn


def _data(seed, n=600):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(int) + (x[:, 3] > 0.8)
    return x, y


def _model():
    pynn.set_seed(0)
    model = pynn.Sequential([pynn.Input((8,)), pynn.Dense(32, activation="relu"),
                             pynn.Dense(3, activation="softmax")])
    model.compile(optimizer=pynn.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_stream_of_chunks_matches_fit_on_everything():
    x, y = _data(1)
    x_test, y_test = _data(2)
    whole = _model()
    whole.fit(x, y, epochs=5, batch_size=32, verbose=0)
    streamed = _model()
    for _ in range(5):
        for start in range(0, len(x), 100):  # the data arrives in chunks of 100
            streamed.partial_fit(x[start:start + 100], y[start:start + 100], batch_size=32)
    acc_whole = whole.evaluate(x_test, y_test)[1]
    acc_stream = streamed.evaluate(x_test, y_test)[1]
    assert acc_stream > 0.85 and abs(acc_stream - acc_whole) < 0.05
    assert streamed.optimizer.iterations == 5 * 6 * 4  # state carried across every call


def test_train_on_batch_keeps_optimizer_state():
    x, y = _data(3, n=64)
    model = _model()
    for i in range(1, 4):
        model.train_on_batch(x, y)
        assert model.optimizer.iterations == i
    m = model.optimizer.state_of(model.layers[1].kernel)["m"]
    assert np.abs(m).sum() > 0  # the first moment persists between calls


def test_fine_tune_frozen_base_new_head(tmp_path):
    x, y = _data(4)
    base = _model()
    base.fit(x, y, epochs=3, batch_size=32, verbose=0)
    base.save_weights(tmp_path / "base.npz")

    # Reload the base, freeze it, replace the head with a binary one, train on a new task.
    tuned = _model()
    tuned.load_weights(tmp_path / "base.npz")
    hidden = tuned.layers[1]
    hidden.trainable = False
    frozen = hidden.get_weights()
    new = pynn.Sequential([tuned.layers[0], hidden, pynn.Dense(1, activation="sigmoid")])
    new.compile(optimizer=pynn.optimizers.Adam(0.01), loss="binary_crossentropy",
                metrics=["accuracy"])
    lines = []
    new.summary(print_fn=lines.append)
    assert "Non-trainable params: 288" in lines[0]  # 8*32 + 32 frozen
    y2 = (x[:, 0] - x[:, 2] > 0).astype(np.float32)  # a related task the base features serve
    new.fit(x, y2, epochs=10, batch_size=32, verbose=0)
    for a, b in zip(frozen, hidden.get_weights()):
        np.testing.assert_array_equal(a, b)  # bit-identical after training
    assert new.evaluate(x, y2)[1] > 0.85
