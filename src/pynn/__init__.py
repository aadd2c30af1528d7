"""pynn: a small, very fast neural-network library with Keras' API.

    model = pynn.Sequential([pynn.Input((784,)), pynn.layers.Dense(256, activation="relu"),
                             pynn.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=128)
"""

__version__ = "0.1.0"

from . import (activations, batch_sources, callbacks, config, constraints, initializers, layers,
               losses, metrics, models, ops, optimizers, regularizers, schedules, utils)
from .backend import available_backends, get_backend, set_backend
from .batch_sources import PyDataset
from .config import floatx, set_floatx, set_seed
from .functional import Model
from .info import info
from .layers import (ELU, Activation, ActivityRegularization, AlphaDropout,
                     BatchNormalization, Dense, Dropout, Flatten, GaussianDropout,
                     GaussianNoise, Identity, Input, InputLayer, Layer, LayerNormalization,
                     LeakyReLU, Normalization, PReLU, RandomLayer, ReLU, Rescaling, Reshape,
                     RMSNormalization, Softmax)
from .model import Sequential
from .precision import get_matmul_precision, set_matmul_precision
from .saving import load_model
from .threads import get_num_threads, register_with_threadpoolctl, set_num_threads

register_with_threadpoolctl()

__all__ = [
    "Activation", "ActivityRegularization", "AlphaDropout", "BatchNormalization", "Dense",
    "Dropout", "ELU", "Flatten",
    "GaussianDropout", "GaussianNoise", "Identity", "Input", "InputLayer", "Layer",
    "LayerNormalization",
    "LeakyReLU", "Model", "Normalization", "PReLU", "PyDataset", "RMSNormalization", "RandomLayer",
    "ReLU", "Rescaling", "Reshape", "Sequential",
    "Softmax", "activations", "available_backends",
    "batch_sources", "callbacks", "config", "constraints",
    "floatx", "get_backend", "get_matmul_precision", "get_num_threads", "info",
    "initializers", "layers", "load_model",
    "losses", "metrics", "models", "ops", "optimizers", "regularizers", "schedules",
    "set_backend", "set_floatx", "set_matmul_precision", "set_num_threads", "set_seed",
    "utils",
]


def __getattr__(name):
    # Modules with optional dependencies load on first use: pynn.onnx, pynn.sklearn.
    if name in ("onnx", "sklearn"):
        import importlib

        try:
            return importlib.import_module(f".{name}", __name__)
        except ImportError as exc:  # an attribute: hasattr(pynn, "sklearn") is then False
            raise AttributeError(str(exc)) from exc
    if name in _KERAS_ONLY:  # Keras names code ported from Keras reaches for first
        raise AttributeError(f"module 'pynn' has no attribute {name!r}: {_KERAS_ONLY[name]}")
    raise AttributeError(f"module 'pynn' has no attribute {name!r}")


_KERAS_ONLY = {
    "datasets": "pynn downloads no data; load arrays yourself (e.g. sklearn.datasets, or "
                "keras.datasets' files read with numpy)",
    "mixed_precision": "pynn trains in float32 (or float64: pynn.set_floatx); "
                       "pynn.set_matmul_precision('high') runs products as bf16x3 on AMX",
    "random": "pynn's generator is seeded with pynn.set_seed (or pynn.utils.set_random_seed)",
}
