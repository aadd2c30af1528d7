"""pytest-benchmark: GEMM of the cpu backend vs numpy.matmul at the BENCHMARKS.md shapes.

    python -m pytest bench/test_bench_gemm.py --benchmark-only --benchmark-group-by=param:shape
    (impl pynn-high: pynn under pynn.set_matmul_precision('high'), bf16x3 on AMX)

Compare within a group (same run); bench/gemm_table.py prints the same as GFLOP/s ratios.
"""

from __future__ import annotations

import numpy as np
import pytest

import pynn
from common import blas_threads, warm_heap

_C = pytest.importorskip("pynn._C")
warm_heap()  # numpy's temporaries as in a warm process

SHAPES = [(n, n, n) for n in (128, 256, 512, 1024)] + [(128, 784, 256), (256, 1024, 1024),
                                                       (32, 64, 64)]
TRANS = {"NN": (False, False), "NT": (False, True), "TN": (True, False)}


@pytest.fixture(params=[1, 2], ids=lambda t: f"{t}thr")
def threads(request):
    pynn.set_num_threads(request.param)
    with blas_threads(request.param):
        yield request.param


@pytest.fixture
def precision(request):
    """pynn's matmul precision for the case ('high' for impl pynn-high: bf16x3 on AMX)."""
    if request.getfixturevalue("impl") == "pynn-high" and not _C.amx_available():
        pytest.skip("no AMX: 'high' would compute as 'highest'")
    previous = pynn.get_matmul_precision()
    pynn.set_matmul_precision("high" if request.getfixturevalue("impl") == "pynn-high"
                              else "highest")
    yield
    pynn.set_matmul_precision(previous)


@pytest.mark.parametrize("impl", ["pynn", "pynn-high", "numpy"])
@pytest.mark.parametrize("trans", list(TRANS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm(benchmark, threads, precision, shape, trans, impl):
    m, k, n = shape
    ta, tb = TRANS[trans]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    if impl.startswith("pynn"):
        benchmark(_C.gemm, a, b, ta, tb)
    else:
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        benchmark(np.matmul, opa, opb)
    benchmark.extra_info["gflops"] = 2 * m * k * n / benchmark.stats["median"] / 1e9


@pytest.mark.parametrize("impl", ["pynn", "numpy"])
@pytest.mark.parametrize("shape", [(128, 784, 256), (256, 1024, 1024)],
                         ids=lambda s: "x".join(map(str, s)))
def test_dense_forward_bias_relu(benchmark, threads, shape, impl):
    m, k, n = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    if impl == "pynn":
        benchmark(_C.gemm, x, w, False, False, 1.0, 0.0, None, bias, 1, 0.0)
    else:
        benchmark(lambda: np.maximum(x @ w + bias, 0))
    benchmark.extra_info["gflops"] = 2 * m * k * n / benchmark.stats["median"] / 1e9
