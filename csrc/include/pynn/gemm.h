// Single-precision GEMM on row-major matrices, with an optional fused epilogue:
//   C[M,N] = act( alpha * op(A) * op(B) + beta * C + bias[N] )
// op(A) is M x K (A stored K x M when trans_a), op(B) is K x N (B stored N x K when trans_b).
// Leading dimensions are in elements, row-major (ld >= number of stored columns).
// beta == 0 means C is write-only (never read, so it may hold NaN).
#pragma once
#include "pynn/common.h"

namespace pynn {

struct Epilogue {
    const float* bias = nullptr;  // length N, added to every row; nullptr for none
    Activation act = Activation::linear;
    float act_param = 0.f;  // leaky_relu slope / elu alpha
};

// The fast path: packed, cache-blocked, ISA-dispatched, threaded.
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
          const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
          index_t ldc, const Epilogue& epilogue = {});

// The specification: a plain triple loop with a double accumulator. Tests compare to it.
void gemm_ref(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
              const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
              index_t ldc, const Epilogue& epilogue = {});

// Instruction set used by gemm: "avx512", "avx2" or "generic". Chosen once from cpuid/xgetbv
// (PYNN_ISA overrides); set_gemm_isa returns false for a name the CPU cannot run.
const char* gemm_isa();
bool set_gemm_isa(const char* name);
// Whether gemm runs avx2 or avx512 (where cpuid and the OS allow them; avx512 implies avx2):
// the other kernels' AVX2 loops follow this one choice (read per call, so set_gemm_isa
// switches them all).
bool avx2_loops_active();
bool cpu_supports_isa(const char* name);
// Matmul precision, as JAX's and PyTorch's: "highest" (the default) multiplies in float32;
// "high" allows three bfloat16 products per float32 product (bf16x3: each product within
// 2^-16 |a b| instead of 2^-24, the sums in float32) on AMX tiles, where the CPU and OS have
// them and the avx512 kernels are active (elsewhere "high" computes as "highest").
// PYNN_MATMUL_PRECISION sets the start value. set_matmul_precision returns false for another
// name.
const char* matmul_precision();
bool set_matmul_precision(const char* name);
// AMX-BF16 here (CPU and OS; the process asks for the tiles at the first "high" product).
bool amx_available();

// Single-thread peak of an ISA's FMA loop in GFLOP/s, measured for about `seconds`
// (best ~1 ms chunk); -1 if the CPU cannot run that ISA.
double fma_peak_gflops(const char* isa, double seconds);

}  // namespace pynn
