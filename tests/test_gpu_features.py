"""Every training feature on a real GPU: the scenarios of test_gpu_backends_on_host.py (losses
and optimizers, activations and normalisations, batch sources, regularization and stability,
weights/metrics/validation, callbacks, streaming, freezing and files, shapes and dtypes, more
layers, float64) on the `cupy` and `cuda` backends themselves, which must give the numpy
backend's results. On the host the same scenarios run on the fake GPU backends; these need
one: marked `cuda`, skipped without it (scripts/gpu_check.sh runs them on a lent GPU). On
`cuda` the models the CUDA engine can train go through it (fit's default)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AVAILABLE
from test_gpu_backends_on_host import SCENARIOS, _assert_close, _run

from pynn.backend import available_backends

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("name", ["cupy", "cuda"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__[9:])
def test_gpu_backend_matches_numpy(name, scenario):
    if name not in AVAILABLE:
        pytest.skip(f"backend {name!r} unavailable: {available_backends()[name]}")
    seed = np.random.SeedSequence().entropy % 2**32
    print(f"data seed {seed}")
    want = _run("numpy", scenario, seed)
    got = _run(name, scenario, seed)
    _assert_close(got, want)
