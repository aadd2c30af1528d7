// Internal to the CPU GEMM: the table of function pointers each ISA file exports
// (kernel_generic.cpp, kernel_avx2.cpp, kernel_avx512.cpp) and the driver consumes.
// Plain data only: no inline functions here, so nothing compiled with one ISA's flags can be
// picked by the linker for code compiled with another's (one-definition rule).
#pragma once
#include "pynn/common.h"

#include <cstdint>

namespace pynn::gemm_detail {

// What the micro-kernel does with its MR x NR accumulator tile T when it stores it:
//   C = alpha * T + (beta == 0 ? 0 : beta * C) [+ bias[j]] [then max(., 0) when relu]
// beta == 0 never reads C. bias is nullptr except on the last K slice.
struct TileEpilogue {
    float alpha;
    float beta;
    const float* bias;  // already offset to the tile's first column
    bool relu;
};

// C[0:m, 0:n] (row stride ldc) <- epilogue( sum_k A(i,k) * B(k,j) ), over the full MR x NR tile
// with m <= MR, n <= NR valid. A(i,k) = a[i*rsa + k*csa] for all i < MR (so packed strips
// use rsa=1, csa=MR; a row-major A uses rsa=lda, csa=1; a transposed one rsa=1, csa=lda).
// B(k,j) = b[k*rsb + j] for all j < NR (packed strips: rsb = NR). kc >= 1.
using MicroKernel = void (*)(index_t kc, const float* a, index_t rsa, index_t csa,
                             const float* b, index_t rsb, float* c, index_t ldc, int m, int n,
                             const TileEpilogue& ep);

// The micro-kernel on a full MR x NR tile (m, n as above) that also copies `rows` rows of
// the next B strip, one every `step` k (step * rows <= kc): next_src[r*next_ld + j] ->
// next_dst[r*NR + j]; rows_after more rows of that strip follow in memory (it may prefetch
// them). The copies' loads and stores go between the FMAs, so packing a row-major B overlaps
// the arithmetic instead of running as a pass of its own (kernel_avx512.cpp, driver.cpp's
// run_rect). The same results as MicroKernel, bit for bit.
using PackingMicroKernel = void (*)(index_t kc, const float* a, index_t rsa, index_t csa,
                                    const float* b, index_t rsb, float* c, index_t ldc, int m,
                                    int n, const TileEpilogue& ep, const float* next_src,
                                    index_t next_ld, float* next_dst, index_t rows,
                                    index_t rows_after, index_t step);

struct KernelTable {
    const char* name;  // "generic", "avx2", "avx512"
    int mr, nr;        // micro-tile
    int kc, mc, nc;    // cache blocking (mc multiple of mr, nc multiple of nr)
    int inplace_b_max_m;  // B (not transposed) is read in place when M <= this (and the
                          // driver's ldb limit holds), else packed
    MicroKernel kernel;
    PackingMicroKernel packing_kernel;  // nullptr: B is packed in a pass of its own
    // A loop of independent FMAs for the peak measurement: `iters` iterations of
    // flops_per_iter flops each; the returned value only defeats dead-code elimination.
    float (*fma_loop)(index_t iters);
    index_t flops_per_iter;
};

const KernelTable& kernels_generic();
#if defined(PYNN_X86)
const KernelTable& kernels_avx2();
const KernelTable& kernels_avx512();
#endif

#if defined(PYNN_X86)
// The "high" matmul precision on AMX tiles (kernel_amx.cpp: what the panels hold and why).
// amx_supported: the CPU has AMX-BF16 and AVX512-BF16 and the OS enabled the tile state (no
// side effect); amx_usable: that, and the process was granted the tiles (asked once, here).
bool amx_supported();
bool amx_usable();
// Pack 32 rows x kc of A(i, k) = a[i*rs + k*cs] (m valid rows), and kc x 32 of
// B(k, j) = b[k*rs + j*cs] (n valid columns), zero-padded to kcp (a multiple of 32) deep, as
// bf16 high and low parts.
void amx_pack_a(const float* a, index_t rs, index_t cs, index_t m, index_t kc, index_t kcp,
                std::uint16_t* dst);
void amx_pack_b(const float* b, index_t rs, index_t cs, index_t kc, index_t n, index_t kcp,
                std::uint16_t* dst);
// Whether acc[m x n] (row stride lda) holds no inf or NaN.
bool amx_all_finite(const float* acc, index_t lda, index_t m, index_t n);
// The calling thread's tile configuration, before amx_block; released after.
void amx_tiles_on();
void amx_tiles_off();
// c[32 x 32] (row stride ldc) = (accumulate ? c : 0) + A panel . B panel (kcp deep).
void amx_block(index_t kcp, const std::uint16_t* a, const std::uint16_t* b, float* c,
               index_t ldc, bool accumulate);
// C[m x n] = alpha * acc + (beta == 0 ? 0 : beta * C) [+ bias] [relu], acc row stride lda.
void amx_store(const float* acc, index_t lda, float* c, index_t ldc, index_t m, index_t n,
               float alpha, float beta, const float* bias, bool relu);
#endif
// Whether gemm() may take the AMX kernel now: matmul precision "high", AMX usable, and the
// avx512 kernels active (PYNN_ISA / set_gemm_isa to another ISA turns it off too).
bool amx_active();

// Driver knobs, exposed for the test/benchmark harness; the defaults are the tuned values.
struct Tuning {
    double parallel_min_flops;  // below this (2*M*N*K) gemm stays on the calling thread
    index_t inplace_b_max_ldb;  // B is read in place only when ldb <= this (long strides
                                // thrash L1/TLB: pack), and M <= the table's limit
    index_t pack_a_min_n;       // row-major A is packed when N > this, else read in place
    index_t pack_a_min_n_t;     // the same for a transposed A
    index_t kc, mc, nc;         // > 0: override the table's blocking (experiments only)
};
Tuning& tuning();

// The table gemm() uses now (dispatch.cpp), and a table by name (nullptr if unknown or the
// CPU cannot run it).
const KernelTable& active_kernels();
const KernelTable* kernels_by_name(const char* name);

}  // namespace pynn::gemm_detail
