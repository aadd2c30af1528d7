"""The demo: an MLP on the 8x8 handwritten digits that scikit-learn ships (1797 images).

Trains with a progress bar, prints test accuracy, saves the weights to .npz, loads them into
a fresh model and checks that its predictions are identical.
"""

from __future__ import annotations

import sys

import numpy as np


def load_digits_split(seed=0, test_fraction=0.25):
    """(x_train, y_train, x_test, y_test), pixels scaled to [0, 1], a seeded stratified split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise SystemExit("the demo needs scikit-learn for its data: pip install 'pynn[demo]'") \
            from exc
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[:int(round(len(idx) * test_fraction))]] = True
    return x[~test], y[~test], x[test], y[test]


def build_model():
    import pynn

    return pynn.Sequential([
        pynn.Input((64,)),
        pynn.Dense(128, activation="relu"),
        pynn.Dense(64, activation="relu"),
        pynn.Dense(10, activation="softmax"),
    ])


def run_demo(epochs=40, backend=None, out="pynn_digits.npz", seed=0) -> int:
    import pynn

    if backend:
        pynn.set_backend(backend)
    pynn.set_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    print(f"pynn {pynn.__version__} on backend {pynn.get_backend().name}: "
          f"{len(x_train)} training and {len(x_test)} test digits")
    model = build_model()
    model.compile(optimizer=pynn.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    # The held-out digits double as validation data so each epoch shows how it generalises;
    # they never drive training.
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_data=(x_test, y_test),
              verbose=1)
    loss, acc = model.evaluate(x_test, y_test)
    print(f"test loss {loss:.4f}, test accuracy {acc:.2%}")

    model.save_weights(out)
    restored = build_model()
    restored.load_weights(out)
    same = np.array_equal(model.predict(x_test), restored.predict(x_test))
    print(f"saved weights to {out}; reloaded predictions identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(run_demo())
