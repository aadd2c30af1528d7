"""What the fast-kernel tests of every backend share (test_cpu_kernels.py,
test_cuda_backend.py): the awkward shapes, the float64 reference call, and the optimizer
updates with their hyper-parameters, each applied to (backend, w, g, slot1, slot2)."""

from __future__ import annotations

import numpy as np

SHAPES = [(1, 1), (1, 3), (3, 17), (17, 129), (129, 10), (257, 33), (70000, 2)]

OPTIMIZER_CASES = {
    "sgd": lambda b, w, g, s1, s2: b.sgd_update(w, g, None, 0.1, 0.0, False),
    "momentum": lambda b, w, g, s1, s2: b.sgd_update(w, g, s1, 0.1, 0.9, False),
    "nesterov": lambda b, w, g, s1, s2: b.sgd_update(w, g, s1, 0.1, 0.9, True),
    "adam": lambda b, w, g, s1, s2: b.adam_update(w, g, s1, s2, 1e-3, 0.9, 0.999, 1e-7, 0.0, 3),
    "adamw": lambda b, w, g, s1, s2: b.adam_update(w, g, s1, s2, 1e-3, 0.9, 0.999, 1e-7, 0.01, 1),
    "rmsprop": lambda b, w, g, s1, s2: b.rmsprop_update(w, g, s1, None, 1e-3, 0.9, 0.0, 1e-7),
    "rmsprop_momentum": lambda b, w, g, s1, s2: b.rmsprop_update(w, g, s1, s2, 1e-3, 0.9, 0.5,
                                                                 1e-7),
    "adagrad": lambda b, w, g, s1, s2: b.adagrad_update(w, g, s1, 0.01, 1e-7),
}


def ref64(fn, *arrays, **kw):
    """fn on float64 copies of the float arrays (the numpy reference in double precision)."""
    return fn(*[np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray)
                and a.dtype.kind == "f" else a for a in arrays], **kw)


def opt_state(rng, n):
    """Fresh float64 (w, g, slot1, slot2) for an optimizer update; slots non-negative."""
    w, g = rng.normal(size=n), rng.normal(size=n)
    s1, s2 = np.abs(rng.normal(size=n)) * 0.1, np.abs(rng.normal(size=n)) * 0.1
    return w, g, s1, s2
