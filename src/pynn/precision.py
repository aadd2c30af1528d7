"""Matmul precision of the C++ kernels, as JAX's and PyTorch's float32 matmul precision.

    pynn.set_matmul_precision("high")   # bf16x3 on AMX tiles where the CPU has them
    pynn.get_matmul_precision()         # "highest" by default (PYNN_MATMUL_PRECISION)

"highest" multiplies in float32. "high" lets the cpu backend's GEMMs (Dense layers, the native
engine's steps, pynn.ops.gemm) compute each float32 product as three bfloat16 products with
float32 sums (bf16x3) on Intel AMX (Sapphire Rapids and later), about 1.5x as fast on large
products: each product within 2^-16 |a b| (float32's: 2^-24), so a dot product's error is
of the order of float32's own for random data and training follows the same curve (the
tests: losses to 1e-4). Without AMX, on other backends, and for products under 2^22
multiply-adds, "high" computes as "highest"; a 32 x 32 block of results that comes out inf
or NaN (an inf or NaN input, products near the float32 range) is computed in float32. AMX
flushes subnormals: inputs below ~1e-38 count as zero, and so do products below ~1e-38
(values near 1e-19 times each other) and the cross terms of products below ~1e-36, so the
bound above holds with an absolute floor of 2^-126 (~1.2e-38) per product: results built
only of such tiny products lose their relative accuracy. The process asks Linux for the AMX
tile state at the first "high" product (signal stacks set up after that need ~11 KiB more).
"""

from __future__ import annotations

from .threads import _native  # the C++ extension, or None in a pure-numpy install

PRECISIONS = ("highest", "high")


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
    """Whether 'high' can run on AMX tiles here (the CPU, the OS and the C++ extension)."""
    module = _native()
    return bool(module is not None and module.amx_available())
