"""Matmul precision of the C++ kernels, as JAX's and PyTorch's float32 matmul precision.

    pynn.set_matmul_precision("high")   # bf16x3 on AMX tiles where the CPU has them
    pynn.get_matmul_precision()         # "highest" by default (PYNN_MATMUL_PRECISION)

"highest" multiplies in float32. "high" lets the cpu backend's GEMMs (Dense layers, the native
engine's steps, pynn.ops.gemm) compute each float32 product as three bfloat16 products with
float32 sums (bf16x3) on Intel AMX (Sapphire Rapids and later), about twice as fast: a dot
product's error stays below 2^-15 sum|a b| (float32's own: K 2^-24 sum|a b|), so training
follows the same curve to ~1e-3. Without AMX, on other backends, for products too small to
gain (under ~2^21 multiply-adds per thread) or holding values bfloat16 cannot carry (inf, NaN,
|x| near 3.4e38), "high" computes as "highest". Under "high" results may differ in the last
bits between batch sizes (small batches stay in float32).
"""

from __future__ import annotations

PRECISIONS = ("highest", "high")


def _native():
    try:
        from . import _C
    except ImportError:
        return None
    return _C


def set_matmul_precision(precision: str) -> None:
    """'highest' (float32 products, the default) or 'high' (bf16x3 on AMX where it runs)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"matmul precision must be one of {PRECISIONS}, got {precision!r}")
    module = _native()
    if module is not None:
        module.set_matmul_precision(precision)


def get_matmul_precision() -> str:
    """The matmul precision set ('highest' without the C++ extension)."""
    module = _native()
    return module.matmul_precision() if module is not None else "highest"


def amx_available() -> bool:
    """Whether 'high' runs on AMX tiles here (the CPU, the OS and the C++ extension allow it)."""
    module = _native()
    return bool(module is not None and module.amx_available())
