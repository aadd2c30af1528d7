"""The `cupy` backend: the NumPy reference code run on CuPy arrays (GPU, no compiled pynn).

It exists so a GPU helps even where pynn._cuda was not built; the fused kernels of the `cuda`
backend replace it where they exist.
"""

from __future__ import annotations

import numpy as np

from .numpy_backend import NumpyBackend


class CupyBackend(NumpyBackend):
    name = "cupy"
    supports_float64 = True

    def __init__(self):
        import cupy

        super().__init__(xp=cupy)

    def to_numpy(self, a):
        return self.xp.asnumpy(a) if isinstance(a, self.xp.ndarray) else np.asarray(a)

    def take_rows(self, a, index):
        return a[self.xp.asarray(index)]
