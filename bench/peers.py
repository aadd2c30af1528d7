"""Each library's trainer for a Workload, all with Adam (lr 1e-3), the same batch size and
float32: pynn (native engine and layer path), PyTorch CPU, scikit-learn MLP, Keras 3 (on the
backend KERAS_BACKEND names, else the first installed of JAX, TensorFlow and PyTorch: see
keras_backend).

A trainer is make(workload, x, y) -> object with .epoch() -> mean training loss of that epoch
(full pass, shuffled) and .predict_rows(rows) -> the model's outputs (timed on one row for
latency, on 1024 for throughput). Peers are written the way their users get the best speed
(tensor indexing instead of DataLoader, inference_mode, ...).

So that the final losses compare the training arithmetic rather than the libraries' default
initialisers (PyTorch's Kaiming-uniform against Glorot-uniform), PyTorch and Keras start from
pynn's initial weights (`initial_weights`), and every Adam uses epsilon 1e-7 (Keras' and
pynn's default; PyTorch's is 1e-8). scikit-learn keeps its own initialisation.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

ADAM_EPSILON = 1e-7


def pynn_model(w, backend="cpu", dropout=0.0):
    """The workload's pynn model, compiled, with the seeded (Glorot-uniform) initial weights;
    dropout > 0: a Dropout of that rate after each hidden layer."""
    import pynn

    pynn.set_seed(0)
    layers = [pynn.Input((w.layers[0],))]
    for h in w.layers[1:-1]:
        layers += [pynn.Dense(h, activation="relu")] + ([pynn.Dropout(dropout)] if dropout else [])
    layers.append(pynn.Dense(w.layers[-1], activation="softmax" if w.loss == "xent" else None))
    model = pynn.Sequential(layers)
    model.compile(optimizer=pynn.optimizers.Adam(1e-3, epsilon=ADAM_EPSILON),
                  loss="sparse_categorical_crossentropy" if w.loss == "xent" else "mse",
                  backend=backend)
    return model


def initial_weights(w):
    """[kernel (in, out), bias, ...] as pynn initialises them for this workload."""
    return pynn_model(w).get_weights()


def pynn_trainer(engine, precision="highest"):
    """pynn's trainer: fit with `engine`, under the matmul precision `precision` ('high':
    bf16x3 on AMX, pynn.set_matmul_precision)."""
    def make(w, x, y):
        import pynn

        pynn.set_matmul_precision(precision)  # (a process of its own: isolated.py)
        model = pynn_model(w)

        class T:
            def epoch(self):
                h = model.fit(x, y, batch_size=w.batch, epochs=1, verbose=0, engine=engine)
                return h.history["loss"][-1]

            def predict_rows(self, row):
                return model.predict(row)
        return T()
    return make


def torch_model(w, device="cpu", dropout=0.0):
    """The workload's PyTorch model from pynn's initial weights on `device`, its Adam and its
    loss: (model, optimizer, loss function); dropout as pynn_model's."""
    import torch

    torch.manual_seed(0)
    mods = []
    for a, b in zip(w.layers[:-2], w.layers[1:-1]):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        mods += [torch.nn.Dropout(dropout)] if dropout else []
    mods.append(torch.nn.Linear(w.layers[-2], w.layers[-1]))
    model = torch.nn.Sequential(*mods)
    linears = [m for m in mods if isinstance(m, torch.nn.Linear)]
    weights = initial_weights(w)
    with torch.no_grad():
        for lin, kernel, bias in zip(linears, weights[0::2], weights[1::2]):
            lin.weight.copy_(torch.from_numpy(kernel.T.copy()))  # torch stores (out, in)
            lin.bias.copy_(torch.from_numpy(bias))
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=ADAM_EPSILON)
    loss_fn = torch.nn.CrossEntropyLoss() if w.loss == "xent" else torch.nn.MSELoss()
    return model, opt, loss_fn


def torch_trainer(w, x, y):
    import torch

    model, opt, loss_fn = torch_model(w)
    X = torch.from_numpy(x)
    Y = torch.from_numpy(y)
    n = len(x)

    class T:
        def epoch(self, order=None):
            """order: the epoch's sample order (numpy indices; default: torch's shuffle)."""
            perm = torch.randperm(n) if order is None else torch.from_numpy(order)
            total = 0.0
            model.train()
            for i in range(0, n, w.batch):
                idx = perm[i:i + w.batch]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(X[idx]), Y[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            return total / n

        def predict_rows(self, row):
            with torch.inference_mode():
                out = model(torch.from_numpy(row))
                if w.loss == "xent":
                    out = torch.softmax(out, dim=1)
                return out.numpy()
    return T()


def sklearn_trainer(w, x, y):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = MLPClassifier if w.loss == "xent" else MLPRegressor
    model = cls(hidden_layer_sizes=w.layers[1:-1], activation="relu", solver="adam",
                alpha=0.0, batch_size=w.batch, learning_rate_init=1e-3, shuffle=True,
                random_state=0)
    classes = np.unique(y) if w.loss == "xent" else None
    target = y if w.loss == "xent" else y.ravel()

    class T:
        def epoch(self):
            if classes is not None:
                model.partial_fit(x, target, classes=classes)
            else:
                model.partial_fit(x, target)
            # scikit-learn's squared loss is half the MSE
            return model.loss_ * (2 if w.loss == "mse" else 1)

        def predict_rows(self, row):
            return model.predict_proba(row) if classes is not None else model.predict(row)
    return T()


# Keras 3's backends by how fast they train these MLPs on a CPU (bench/RESULTS.md, "Keras 3
# on each backend"): JAX first, fastest on all three workloads; TensorFlow and PyTorch then
# trade places from workload to workload and run to run, TensorFlow first as Keras' own
# default. A peer is measured at its best.
KERAS_BACKENDS = ("jax", "tensorflow", "torch")


def keras_backend():
    """The backend Keras will run on: KERAS_BACKEND when set, else the first installed of
    KERAS_BACKENDS (set in the environment, as Keras reads it when first imported, and the
    libraries' processes inherit it); None when none is installed. Keras' own default
    (TensorFlow) would leave a machine with only PyTorch without a Keras row. keras.json is
    not read: Keras writes it, naming TensorFlow, the first time it is imported, so it does
    not say what the user chose (KERAS_BACKEND overrides it)."""
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen is None:
        chosen = next((b for b in KERAS_BACKENDS if importlib.util.find_spec(b) is not None),
                      None)
        if chosen is not None:
            os.environ["KERAS_BACKEND"] = chosen
    return chosen


def keras_trainer(w, x, y, backend=None):
    """Keras on `backend`, or on keras_backend()'s choice. A named backend is set before
    Keras is imported: each library trains in a process of its own (isolated.py), so one run
    can compare Keras on several backends."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend is not None:
        os.environ["KERAS_BACKEND"] = backend
    backend = keras_backend()
    import keras

    if keras.backend.backend() != backend:
        raise RuntimeError(f"Keras was imported on {keras.backend.backend()} before "
                           f"{backend} could be chosen")

    keras.utils.set_random_seed(0)
    layers = [keras.Input((w.layers[0],))]
    layers += [keras.layers.Dense(h, activation="relu") for h in w.layers[1:-1]]
    layers.append(keras.layers.Dense(w.layers[-1],
                                     activation="softmax" if w.loss == "xent" else None))
    model = keras.Sequential(layers)
    model.set_weights(initial_weights(w))
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=ADAM_EPSILON),
                  loss="sparse_categorical_crossentropy" if w.loss == "xent" else "mse")

    class T:
        def epoch(self):
            return model.fit(x, y, batch_size=w.batch, epochs=1, verbose=0).history["loss"][-1]

        def predict_rows(self, row):
            # Each backend's fastest call (one mnist_mlp row, this VM): the compiled
            # predict_on_batch on JAX (102 us vs 1162 for model(row)) and TensorFlow (474 vs
            # 2505), the eager call on PyTorch (755 vs 1237).
            if backend == "torch":
                return model(row, training=False)
            return model.predict_on_batch(row)
    return T()


TRAINERS = {
    "pynn": pynn_trainer("auto"),
    "pynn-layers": pynn_trainer("layers"),
    "pynn-high": pynn_trainer("auto", "high"),  # where AMX runs (available())
    "torch": torch_trainer,
    "sklearn": sklearn_trainer,
    "keras": keras_trainer,
}
# Keras on one named backend each (--libs keras-jax keras-torch ...), for side-by-side runs
for _backend in KERAS_BACKENDS:
    TRAINERS[f"keras-{_backend}"] = (lambda b: lambda w, x, y: keras_trainer(w, x, y, b))(_backend)


def available(name):
    if name.startswith("keras-"):
        backend = name[len("keras-"):]
        return importlib.util.find_spec("keras") is not None and \
            importlib.util.find_spec(backend) is not None
    if name == "pynn-high":  # the same as pynn without AMX: not worth its epochs
        from pynn.precision import amx_available

        return amx_available()
    module = {"torch": "torch", "sklearn": "sklearn", "keras": "keras"}.get(name)
    if module is None:
        return True
    if name == "keras" and keras_backend() is None:
        return False
    # Found, not imported: the libraries train in processes of their own (isolated.py); a
    # broken installation shows as that library's failed row.
    return importlib.util.find_spec(module) is not None
