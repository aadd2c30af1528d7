"""What the fast-kernel tests of every backend share (test_cpu_kernels.py,
test_cuda_backend.py): the awkward shapes, the float64 reference call, and the optimizer
updates with their hyper-parameters, each applied to (backend, w, g, slot1, slot2)."""

from __future__ import annotations

import numpy as np

SHAPES = [(1, 1), (1, 3), (3, 17), (17, 129), (129, 10), (257, 33), (70000, 2)]

OPTIMIZER_CASES = {
    "sgd": lambda b, w, g, s1, s2, s3: b.sgd_update(w, g, None, 0.1, 0.0, False),
    "momentum": lambda b, w, g, s1, s2, s3: b.sgd_update(w, g, s1, 0.1, 0.9, False),
    "nesterov": lambda b, w, g, s1, s2, s3: b.sgd_update(w, g, s1, 0.1, 0.9, True),
    "adam": lambda b, w, g, s1, s2, s3: b.adam_update(w, g, s1, s2, 1e-3, 0.9, 0.999, 1e-7, 0.0,
                                                      3),
    "adamw": lambda b, w, g, s1, s2, s3: b.adam_update(w, g, s1, s2, 1e-3, 0.9, 0.999, 1e-7,
                                                       0.01, 1),
    "amsgrad": lambda b, w, g, s1, s2, s3: b.adam_update(w, g, s1, s2, 1e-3, 0.9, 0.999, 1e-7,
                                                         0.0, 4, s3),
    "amsgrad_decay": lambda b, w, g, s1, s2, s3: b.adam_update(w, g, s1, s2, 1e-3, 0.9, 0.999,
                                                               1e-7, 0.05, 2, s3),
    "rmsprop": lambda b, w, g, s1, s2, s3: b.rmsprop_update(w, g, s1, None, 1e-3, 0.9, 0.0, 1e-7),
    "rmsprop_momentum": lambda b, w, g, s1, s2, s3: b.rmsprop_update(w, g, s1, s2, 1e-3, 0.9,
                                                                     0.5, 1e-7),
    "adagrad": lambda b, w, g, s1, s2, s3: b.adagrad_update(w, g, s1, 0.01, 1e-7),
    # step 1, 2 and a late one (Nadam's momentum schedule, Adamax's bias correction)
    "nadam": lambda b, w, g, s1, s2, s3: b.nadam_update(w, g, s1, s2, 1e-3, 0.9, 0.999, 1e-7,
                                                        0.0, 1),
    "nadam_decay": lambda b, w, g, s1, s2, s3: b.nadam_update(w, g, s1, s2, 1e-2, 0.8, 0.99,
                                                              1e-6, 0.1, 2),
    "nadam_late": lambda b, w, g, s1, s2, s3: b.nadam_update(w, g, s1, s2, 1e-3, 0.9, 0.999,
                                                             1e-7, 0.0, 5000),
    "adamax": lambda b, w, g, s1, s2, s3: b.adamax_update(w, g, s1, s2, 2e-3, 0.9, 0.999, 1e-7,
                                                          0.0, 1),
    "adamax_decay": lambda b, w, g, s1, s2, s3: b.adamax_update(w, g, s1, s2, 2e-3, 0.8, 0.99,
                                                                1e-7, 0.1, 37),
    "lion": lambda b, w, g, s1, s2, s3: b.lion_update(w, g, s1, 1e-3, 0.9, 0.99, 0.0),
    "lion_decay": lambda b, w, g, s1, s2, s3: b.lion_update(w, g, s1, 1e-3, 0.95, 0.98, 0.5),
    "adadelta": lambda b, w, g, s1, s2, s3: b.adadelta_update(w, g, s1, s2, 1.0, 0.95, 1e-7,
                                                              0.0),
    "adadelta_decay": lambda b, w, g, s1, s2, s3: b.adadelta_update(w, g, s1, s2, 0.5, 0.9,
                                                                    1e-6, 0.2),
}


def ref64(fn, *arrays, **kw):
    """fn on float64 copies of the float arrays (the numpy reference in double precision)."""
    return fn(*[np.asarray(a, dtype=np.float64) if isinstance(a, np.ndarray)
                and a.dtype.kind == "f" else a for a in arrays], **kw)


def opt_state(rng, n):
    """Fresh float64 (w, g, slot1, slot2, slot3) for an optimizer update; slots non-negative.
    Lion steps by the sign of 0.9..0.95 m + 0.05..0.1 g: no element is left within 1e-4 of
    a sign change, where the float32 kernel and the float64 reference could round apart."""
    w, g = rng.normal(size=n), rng.normal(size=n)
    s1, s2, s3 = (np.abs(rng.normal(size=n)) * 0.1 for _ in range(3))
    near = True
    while np.any(near):
        near = (np.abs(0.9 * s1 + 0.1 * g) < 1e-4) | (np.abs(0.95 * s1 + 0.05 * g) < 1e-4)
        g[near] += 0.01
    return w, g, s1, s2, s3
