// Internal to the CPU GEMM: the table of function pointers each ISA file exports
// (kernel_generic.cpp, kernel_avx2.cpp, kernel_avx512.cpp) and the driver consumes.
// Plain data only: no inline functions here, so nothing compiled with one ISA's flags can be
// picked by the linker for code compiled with another's (one-definition rule).
#pragma once
#include "pynn/common.h"

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

struct KernelTable {
    const char* name;  // "generic", "avx2", "avx512"
    int mr, nr;        // micro-tile
    int kc, mc, nc;    // cache blocking (mc multiple of mr, nc multiple of nr)
    MicroKernel kernel;
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

// Driver knobs, exposed for the test/benchmark harness; the defaults are the tuned values.
struct Tuning {
    double parallel_min_flops;  // below this (2*M*N*K) gemm stays on the calling thread
    index_t inplace_b_max_m;    // B (not transposed) is read in place when M <= this
    index_t inplace_b_max_ldb;  //   and ldb <= this (long strides thrash L1/TLB: pack)
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
