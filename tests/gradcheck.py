"""Central finite differences for the float64 gradient checks."""

from __future__ import annotations

import numpy as np


def numeric_grad(f, array, h=1e-6):
    """d f() / d array by central differences, perturbing `array` in place."""
    grad = np.zeros_like(array, dtype=np.float64)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


def assert_close_grad(analytic, numeric, rtol=1e-5, atol=1e-7, what="gradient"):
    analytic = np.asarray(analytic, dtype=np.float64)
    err = np.abs(analytic - numeric)
    tol = atol + rtol * np.abs(numeric)
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} vs {numeric.shape}"
    assert (err <= tol).all(), (f"{what}: max error {err.max():.3g} at "
                                f"{np.unravel_index(err.argmax(), err.shape)}; analytic "
                                f"{analytic.reshape(-1)[:5]}, numeric {numeric.reshape(-1)[:5]}")
