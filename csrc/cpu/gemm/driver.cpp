// pynn::gemm: the Goto/BLIS blocked driver around the ISA micro-kernels (kernel_table.h).
//   for jc (NC columns of C)  for pc (KC slice of K)  [pack B slice: KC x NC, NR-wide strips]
//     for ic (MC rows)  [pack A block: MC x KC, MR-tall strips]
//       for jr (NR)  for ir (MR): micro-kernel on an MR x NR tile of C
// Edge strips are zero-padded so the micro-kernel always runs full tiles and stores only the
// valid part. The first K slice applies beta, later ones accumulate; the last applies the
// epilogue (bias and ReLU inside the micro-kernel's store, other activations right after,
// on the tile while it is in L1).
// Small problems: packing B costs K*N per call and pays off only when many rows of A reuse
// it, packing A costs M*K and pays off only across many column strips; below measured sizes
// the micro-kernel reads A and/or B in place (its strided addressing covers row-major and
// transposed A, and row-major B); only the ragged edge strip is packed then.
// Threads: C is cut into tm x tn rectangles, one task each, run independently (each packs
// its own operands: no barriers). The split minimises the re-packing it causes (tm*N + tn*M:
// N blocks for small M, M blocks for large M). Below a FLOP cutoff everything stays on the
// calling thread.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#if defined(__SSE2__)
#include <xmmintrin.h>  // baseline on x86-64: used by the packing transposes only
#endif

#include "cpu/activation_switch.h"
#include "cpu/gemm/kernel_table.h"
#include "math/activations.h"
#include "pynn/gemm.h"
#include "pynn/threadpool.h"

namespace pynn {
namespace gemm_detail {

Tuning& tuning() {
    // Measured on the 2-core Zen 4 (AVX2 kernel, one thread), see the report in bench/:
    // in-place B wins only for short, narrow B (M up to the kernel table's limit, ldb <=
    // 256-ish); in-place A wins while few column strips reuse it (N <= 256; N <= 128 when A
    // is transposed, its k rows being lda apart).
    // Parallel cutoff: 2 hot threads beat 1 from ~2.5e5 flops (32x64x64 +25%, 32x32x64
    // -50%); a cold pool (sleeping worker) costs the caller only ~3 us; 5e5 leaves margin.
    static Tuning t = [] {
        Tuning d{5.0e5, 320, 256, 128, 0, 0, 0};
        // PYNN_GEMM_BLOCKING="kc,mc,nc" overrides the kernel table's cache blocking, to tune
        // on a new CPU without rebuilding (bench/gemm_table.py); not meant for production.
        if (const char* env = std::getenv("PYNN_GEMM_BLOCKING")) {
            long kc = 0, mc = 0, nc = 0;
            char extra = 0;
            const long most = 1L << 20;  // far beyond any cache; keeps the size sums exact
            if (std::sscanf(env, "%ld,%ld,%ld%c", &kc, &mc, &nc, &extra) == 3 && kc > 0 &&
                mc > 0 && nc > 0 && kc <= most && mc <= most && nc <= most) {
                d.kc = kc;
                d.mc = mc;
                d.nc = nc;
            } else {
                std::fprintf(stderr, "pynn: PYNN_GEMM_BLOCKING=%s ignored (expected kc,mc,nc: "
                             "three integers in 1..%ld)\n", env, most);
            }
        }
        return d;
    }();
    return t;
}

}  // namespace gemm_detail

namespace {
using namespace gemm_detail;

struct Problem {
    bool ta, tb;
    index_t M, N, K;
    float alpha;
    const float* A;
    index_t lda;
    const float* B;
    index_t ldb;
    float beta;
    float* C;
    index_t ldc;
    const Epilogue* ep;
};

// ---- per-thread packing buffers: 64-byte aligned, grown on demand, never freed per call ----
struct Buffer {
    float* p = nullptr;
    size_t cap = 0;  // floats
    float* get(size_t n) {
        if (n > cap) {
            std::free(p);
            const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
            p = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (!p) throw std::bad_alloc();
            cap = bytes / sizeof(float);
        }
        return p;
    }
    ~Buffer() { std::free(p); }
};

struct Buffers {
    Buffer a, b, a_edge, b_edge;
};

Buffers& thread_buffers() {
    thread_local Buffers bufs;
    return bufs;
}

// ---- packing (templated on the strip width so the inner loops unroll) ---------------------

// Operands whose strips run down a stored row-major matrix (row-major B, transposed A) are
// packed kPackRows rows at a time across all strips: one read stream per row, each moving
// along its row, instead of one 16-float column per strip walking down rows a page apart
// (no hardware prefetcher follows that; measured at 256x1024x1024, one thread: packing B fell
// from 8.6% to 2% of the GEMM's time, 0.95x -> 0.99x numpy). 8 beat 4 and 16.
constexpr int kPackRows = 8;
constexpr int kTransposeK = 32;  // columns per tile of transpose_rows_tiled

// d[k*W + r] = src[r][k] for r < W, k < kc: the transposing half of packing (row-major A,
// transposed B). 4 x 4 SSE transposes where the baseline ISA has SSE (all of x86-64): one
// load and one store per 4 floats instead of one scattered access per float.
// (Never inlined nor specialised, for any caller: with transpose_rows_tiled's constant kc,
// GCC 12 warns, wrongly, that the tail loop overflows. Its callers' speed measured the same.)
#if defined(__GNUC__) && !defined(__clang__)
#define PYNN_NOT_SPECIALISED __attribute__((noipa))
#else
#define PYNN_NOT_SPECIALISED
#endif
template <int W>
PYNN_NOT_SPECIALISED void transpose_rows(const float* const* src, index_t kc, float* d) {
    index_t k = 0;
#if defined(__SSE2__)
    constexpr int W4 = W / 4 * 4;
    for (; k + 4 <= kc; k += 4) {
        for (int r = 0; r < W4; r += 4) {
            __m128 x0 = _mm_loadu_ps(src[r] + k), x1 = _mm_loadu_ps(src[r + 1] + k);
            __m128 x2 = _mm_loadu_ps(src[r + 2] + k), x3 = _mm_loadu_ps(src[r + 3] + k);
            _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
            _mm_storeu_ps(d + (k + 0) * W + r, x0);
            _mm_storeu_ps(d + (k + 1) * W + r, x1);
            _mm_storeu_ps(d + (k + 2) * W + r, x2);
            _mm_storeu_ps(d + (k + 3) * W + r, x3);
        }
        for (int r = W4; r < W; ++r)
            for (int q = 0; q < 4; ++q) d[(k + q) * W + r] = src[r][k + q];
    }
#endif
    for (; k < kc; ++k)
        for (int r = 0; r < W; ++r) d[k * W + r] = src[r][k];
}

// transpose_rows for rows a multiple of 4 KiB apart (a transposed B of a 1024-wide layer:
// its 32 rows share one L1 set, whose 8 ways do not hold them, so every 4-float load went
// to L2 and each line was fetched 4 times): kTransposeK columns of the W rows are copied,
// 128 contiguous bytes a row, into a tile in L1, the next ones fetched into L2 meanwhile,
// then transposed from it. Zen 4, one thread, 256 x 1024 x 1024 A.B^T: 1.08x (avx512's 32
// rows; avx2's 16 at 16 x 1024 x 1024: 1.10x, generic's 8 the same); the same tile at other
// strides gained nothing (512^3) or lost 3-8% (128 x 784 x 256, 32 x 64 x 64), as for a
// row-major A's 12 rows (bench/RESULTS.md, session 35).
template <int W>
void transpose_rows_tiled(const float* const* src, index_t kc, float* d) {
    constexpr int KB = kTransposeK;
    alignas(64) float tile[W * KB];
    const float* tile_rows[W];
    for (int r = 0; r < W; ++r) tile_rows[r] = tile + r * KB;
    index_t k0 = 0;
    for (; k0 + KB <= kc; k0 += KB) {
        for (int r = 0; r < W; ++r) {
#if defined(__SSE2__)
            if (k0 + 3 * KB <= kc) {  // two tiles ahead; never past the row's end
                const char* ahead = reinterpret_cast<const char*>(src[r] + k0 + 2 * KB);
                _mm_prefetch(ahead, _MM_HINT_T1);
                _mm_prefetch(ahead + 64, _MM_HINT_T1);
                _mm_prefetch(ahead + 124, _MM_HINT_T1);
            }
#endif
            std::memcpy(tile + r * KB, src[r] + k0, sizeof(float) * KB);
        }
        transpose_rows<W>(tile_rows, KB, d + k0 * W);
    }
    if (k0 < kc) {
        const float* rest[W];
        for (int r = 0; r < W; ++r) rest[r] = src[r] + k0;
        transpose_rows<W>(rest, kc - k0, d + k0 * W);
    }
}

// The full strips of pack_rows_into_strips, kPackRows rows at a time across all strips.
template <int W>
inline __attribute__((always_inline)) void pack_full_strips_t(const float* src, index_t ld,
                                                              index_t kc, index_t full,
                                                              float* dst) {
    for (index_t k0 = 0; k0 < kc; k0 += kPackRows) {
        const int kb = static_cast<int>(std::min<index_t>(kPackRows, kc - k0));
        const float* row = src + k0 * ld;
        for (index_t s = 0; s < full; s += W) {
            float* d = dst + s * kc + k0 * W;
            for (int r = 0; r < kb; ++r)
                for (int c = 0; c < W; ++c) d[r * W + c] = row[r * ld + s + c];
        }
    }
}

#if defined(PYNN_X86)
// The same loops in AVX2 (32-byte moves for the baseline's 16-byte ones) where the gemm runs
// avx2 or avx512: the fused 256 x 1024 x 1024 product spent 6.1% of its time packing its 4
// MiB B (~25 GB/s; a plain copy of it runs at ~90 GB/s here), 4.4% now; its ratio to numpy,
// one thread, median of 12 runs: 1.13 -> 1.16-1.17 (Zen 4, bench/RESULTS.md, session 34).
template <int W>
__attribute__((target("avx2"))) void pack_full_strips_avx2(const float* src, index_t ld,
                                                           index_t kc, index_t full,
                                                           float* dst) {
    pack_full_strips_t<W>(src, ld, kc, full, dst);
}
#endif

// W-wide strips of the rows [0, kc) x columns [0, n) of a row-major matrix at src (row
// stride ld): dst[s*kc + k*W + c] = src[k*ld + s + c], columns past n zero. Full strips go
// kPackRows rows at a time across all strips (see kPackRows).
template <int W>
void pack_rows_into_strips(const float* src, index_t ld, index_t kc, index_t n, float* dst) {
    const index_t full = n / W * W;
#if defined(PYNN_X86)
    if (avx2_loops_active()) pack_full_strips_avx2<W>(src, ld, kc, full, dst);
    else pack_full_strips_t<W>(src, ld, kc, full, dst);
#else
    pack_full_strips_t<W>(src, ld, kc, full, dst);
#endif
    if (full < n) {
        // The edge strip: zeros over the whole width (a fixed-length store the compiler
        // unrolls), then its w columns. One loop selecting per column was not vectorised and
        // took ~3 us of a 128 x 256 x 10 product; zeroing only the w..W tail (a second
        // variable-length loop) cost the small transposed-A edges of tabular_small's steps 8%.
        const int w = static_cast<int>(n - full);
        float* d = dst + full * kc;
        for (index_t k = 0; k < kc; ++k) {
            const float* s = src + k * ld + full;
            float* dk = d + k * W;
            for (int c = 0; c < W; ++c) dk[c] = 0.f;
            for (int c = 0; c < w; ++c) dk[c] = s[c];
        }
    }
}

// op(A)[i0:i0+mc, p0:p0+kc] -> MR-tall strips: dst[s*kc + k*MR + r] (s a multiple of MR),
// rows past mc zero.
template <int MR>
void pack_a_t(const Problem& p, index_t i0, index_t mc, index_t p0, index_t kc, float* dst) {
    if (p.ta) {
        // A stored K x M: the MR values of one k are contiguous, a strip runs down A's rows.
        return pack_rows_into_strips<MR>(p.A + p0 * p.lda + i0, p.lda, kc, mc, dst);
    }
    for (index_t s = 0; s < mc; s += MR) {
        // Row-major A: MR row streams, each contiguous in k.
        const int mr = static_cast<int>(std::min<index_t>(MR, mc - s));
        float* d = dst + s * kc;
        const float* rows[MR];
        for (int r = 0; r < MR; ++r) rows[r] = p.A + (i0 + s + std::min(r, mr - 1)) * p.lda + p0;
        if (mr == MR) {
            transpose_rows<MR>(rows, kc, d);
        } else {
            for (index_t k = 0; k < kc; ++k)
                for (int r = 0; r < MR; ++r) d[k * MR + r] = r < mr ? rows[r][k] : 0.f;
        }
    }
}

// op(B)[p0:p0+kc, j0:j0+nc] -> NR-wide strips: dst[s*kc + k*NR + c] (s a multiple of NR),
// columns past nc zero.
template <int NR>
void pack_b_t(const Problem& p, index_t p0, index_t kc, index_t j0, index_t nc, float* dst) {
    if (!p.tb) {
        // Row-major B: each k row of a strip is contiguous, a strip runs down B's rows.
        return pack_rows_into_strips<NR>(p.B + p0 * p.ldb + j0, p.ldb, kc, nc, dst);
    }
    for (index_t s = 0; s < nc; s += NR) {
        // B stored N x K: NR column streams, each contiguous in k.
        const int nr = static_cast<int>(std::min<index_t>(NR, nc - s));
        float* d = dst + s * kc;
        const float* cols[NR];
        for (int c = 0; c < NR; ++c) cols[c] = p.B + (j0 + s + std::min(c, nr - 1)) * p.ldb + p0;
        if (nr == NR && p.ldb % 1024 == 0) {
            transpose_rows_tiled<NR>(cols, kc, d);
        } else if (nr == NR) {
            transpose_rows<NR>(cols, kc, d);
        } else {
            for (index_t k = 0; k < kc; ++k)
                for (int c = 0; c < NR; ++c) d[k * NR + c] = c < nr ? cols[c][k] : 0.f;
        }
    }
}

void pack_a(int mr, const Problem& p, index_t i0, index_t mc, index_t p0, index_t kc, float* dst) {
    switch (mr) {
        case 4: return pack_a_t<4>(p, i0, mc, p0, kc, dst);
        case 6: return pack_a_t<6>(p, i0, mc, p0, kc, dst);
        case 12: return pack_a_t<12>(p, i0, mc, p0, kc, dst);
        default: std::abort();  // a new kernel shape needs its case here
    }
}

void pack_b(int nr, const Problem& p, index_t p0, index_t kc, index_t j0, index_t nc, float* dst) {
    switch (nr) {
        case 8: return pack_b_t<8>(p, p0, kc, j0, nc, dst);
        case 16: return pack_b_t<16>(p, p0, kc, j0, nc, dst);
        case 32: return pack_b_t<32>(p, p0, kc, j0, nc, dst);
        default: std::abort();
    }
}

// ---- epilogue pieces outside the micro-kernel --------------------------------------------

// The non-linear activations (all but linear and ReLU, which the micro-kernel does) on an
// m x n tile just stored, while it is still in L1. One switch per tile, not per element. The
// math is libm-free, so the loop vectorises; with an AVX2 copy (8 lanes) where the dispatch
// runs avx2 or avx512, doing the same IEEE operations as the SSE2 one (the same bits).
template <Activation ACT>
inline __attribute__((always_inline)) void act_tile_t(float* c, index_t ldc, index_t m,
                                                      index_t n, float param) {
    for (index_t i = 0; i < m; ++i, c += ldc)
        for (index_t j = 0; j < n; ++j) c[j] = math::activate(ACT, c[j], param);
}

#if defined(PYNN_X86)
template <Activation ACT>  // the loop above inlined into an AVX2 function
__attribute__((target("avx2"))) void act_tile_avx2(float* c, index_t ldc, index_t m, index_t n,
                                                   float param) {
    act_tile_t<ACT>(c, ldc, m, n, param);
}
#endif

template <Activation ACT>
void act_tile_isa(bool avx2, float* c, index_t ldc, index_t m, index_t n, float param) {
#if defined(PYNN_X86)
    if (avx2) return act_tile_avx2<ACT>(c, ldc, m, n, param);
#endif
    (void)avx2;
    act_tile_t<ACT>(c, ldc, m, n, param);
}

void act_tile(Activation act, float* c, index_t ldc, index_t m, index_t n, float param) {
    if (act == Activation::relu) return;  // fused into the store (linear: with_activation's no-op)
    const bool avx2 = avx2_loops_active();
    cpu::with_activation(act, [&](auto tag) {
        act_tile_isa<decltype(tag)::value>(avx2, c, ldc, m, n, param);
    });
}

// K == 0: C = beta * C (never reading C when beta == 0) + bias, then act. (alpha == 0 runs
// the product: 0 * op(A)op(B) is NaN where the product is not finite, as numpy gives.)
void scale_epilogue(const Problem& p) {
    const Epilogue& ep = *p.ep;
    for (index_t i = 0; i < p.M; ++i) {
        float* c = p.C + i * p.ldc;
        for (index_t j = 0; j < p.N; ++j) {
            float v = p.beta == 0.f ? 0.f : p.beta * c[j];
            if (ep.bias) v += ep.bias[j];
            c[j] = math::activate(ep.act, v, ep.act_param);
        }
    }
}

// ---- N == 1: one output column (a regression or binary-classification layer) --------------
// The tiled path would run NR-wide tiles for a single column (measured 1.1 us for a 32 x 64 x 1
// product, 0.15 us of useful work: two such GEMMs were ~10% of a tabular_small step). Here
// each element of C is one dot product of row i of op(A) with op(B)'s column, summed in a
// fixed order (8 running sums over k, combined pairwise), so a row's result never depends on
// its position or on how the rows are split over threads.
constexpr index_t kColumnRows = 256;  // rows per block: the transposed case's sums stay in L1

// C[i0:i1, 0] from the contiguous column b (K floats).
void column_rows(const Problem& p, const float* b, index_t i0, index_t i1) {
    const Epilogue& ep = *p.ep;
    const index_t K = p.K;
    float acc[kColumnRows];
    for (index_t r0 = i0; r0 < i1; r0 += kColumnRows) {
        const index_t rows = std::min(kColumnRows, i1 - r0);
        if (!p.ta) {  // row i of A is contiguous: 8 running sums along it
            for (index_t r = 0; r < rows; ++r) {
                const float* a = p.A + (r0 + r) * p.lda;
                float s[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
                index_t k = 0;
                for (; k + 8 <= K; k += 8)
                    for (int j = 0; j < 8; ++j) s[j] += a[k + j] * b[k + j];
                for (int j = 0; k < K; ++k, ++j) s[j] += a[k] * b[k];
                acc[r] = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
            }
        } else {  // op(A) = A^T: row k of A holds element k of every row of op(A)
            for (index_t r = 0; r < rows; ++r) acc[r] = 0.f;
            for (index_t k = 0; k < K; ++k) {
                const float* a = p.A + k * p.lda + r0;
                const float bk = b[k];
                for (index_t r = 0; r < rows; ++r) acc[r] += a[r] * bk;
            }
        }
        for (index_t r = 0; r < rows; ++r) {
            float* c = p.C + (r0 + r) * p.ldc;
            float v = p.alpha * acc[r];
            if (p.beta != 0.f) v += p.beta * c[0];
            if (ep.bias) v += ep.bias[0];
            c[0] = math::activate(ep.act, v, ep.act_param);
        }
    }
}

void gemm_column(const Problem& p, bool parallel) {
    // op(B)'s column, contiguous: row 0 of B^T's storage, or a strided column of B.
    thread_local std::vector<float> column;
    const float* b = p.B;
    if (!p.tb && p.ldb != 1) {
        if (column.size() < static_cast<size_t>(p.K)) column.resize(static_cast<size_t>(p.K));
        for (index_t k = 0; k < p.K; ++k) column[k] = p.B[k * p.ldb];
        b = column.data();
    }
    const index_t blocks = (p.M + kColumnRows - 1) / kColumnRows;
    if (!parallel || blocks < 2) {
        column_rows(p, b, 0, p.M);
    } else {
        parallel_for(blocks, [&](index_t t) {
            column_rows(p, b, t * kColumnRows, std::min(p.M, (t + 1) * kColumnRows));
        });
    }
    // A huge K's copy is not kept for the thread's lifetime (it grew to the largest K seen:
    // 38 MB after one K = 1e7 call); a layer-sized one is, to be reused.
    constexpr size_t kKeptFloats = size_t{1} << 16;
    if (column.capacity() > kKeptFloats) std::vector<float>().swap(column);
}

// ---- K == 1: an outer product (the input gradient of a one-output layer) -----------------
// C[i, j] = act(alpha * a_i * b_j + beta * C[i, j] + bias_j): one pass over C instead of
// packing two 1-deep panels and running tiles with a single FMA each (32 x 1 x 64 through
// _C.gemm: 0.49 -> 0.31 us over the call). Small problems only; big ones are bound by
// writing C and keep the threaded path.
void gemm_outer(const Problem& p) {
    const Epilogue& ep = *p.ep;
    const index_t N = p.N;
    // op(B)'s row, contiguous: B's row 0, or a strided column of B^T's storage.
    thread_local std::vector<float> row;
    const float* b = p.B;
    if (p.tb && p.ldb != 1) {
        if (row.size() < static_cast<size_t>(N)) row.resize(static_cast<size_t>(N));
        for (index_t j = 0; j < N; ++j) row[j] = p.B[j * p.ldb];
        b = row.data();
    }
    const float alpha = p.alpha, beta = p.beta;
    const float* bias = ep.bias;
    const bool relu = ep.act == Activation::relu;
    // Branch-free inner loops (they vectorise); the other activations in one pass after.
    for (index_t i = 0; i < p.M; ++i) {
        const float ai = p.ta ? p.A[i] : p.A[i * p.lda];
        float* c = p.C + i * p.ldc;
        // alpha after the product, as the tiles apply it: the same bits at alpha = 1,
        // beta = 0 (a one-feature model's first layer) whichever path a batch takes.
        if (beta != 0.f) {
            for (index_t j = 0; j < N; ++j) c[j] = alpha * (ai * b[j]) + beta * c[j];
        } else {
            for (index_t j = 0; j < N; ++j) c[j] = alpha * (ai * b[j]);
        }
        if (bias)
            for (index_t j = 0; j < N; ++j) c[j] += bias[j];
        if (relu)
            for (index_t j = 0; j < N; ++j) c[j] = !(c[j] <= 0.f) ? c[j] : 0.f;  // NaN stays
    }
    act_tile(ep.act, p.C, p.ldc, p.M, N, ep.act_param);  // linear and relu: nothing
}

// Splits n into ceil(n / block) nearly equal pieces, rounded up to a multiple of unit
// (K = 300 runs as 2 x 150, not 256 + 44).
index_t balanced_block(index_t n, index_t block, index_t unit) {
    const index_t pieces = (n + block - 1) / block;
    const index_t b = (n + pieces - 1) / pieces;
    return std::min(block, (b + unit - 1) / unit * unit);
}

// ---- the blocked loops over one rectangle C[i0:i1, j0:j1] ---------------------------------
void run_rect(const Problem& p, const KernelTable& kt, index_t i0, index_t i1, index_t j0,
              index_t j1) {
    const int MR = kt.mr, NR = kt.nr;
    const index_t m_all = i1 - i0, n_all = j1 - j0;
    const Tuning& tune = tuning();
    const bool do_pack_b = p.tb || m_all > kt.inplace_b_max_m || p.ldb > tune.inplace_b_max_ldb;
    // A row-major B is packed by the micro-kernels where the table has a packing kernel:
    // strip s+1 by the full tiles of strip s in the first row block (the rectangle has MR
    // rows or more), each copying its share of the rows between its FMAs; only strip 0 and
    // the edge strip are packed up front. Packing in a pass of its own took 5.5% of the fused
    // 256 x 1024 x 1024 product (Zen 4, one thread), mostly waiting on B; overlapped with the
    // FMAs: 1.03x faster there, 1.0x at 2048^3, 1.04-1.24x at M = 12-64 with 2-16 MiB of B
    // (bench/RESULTS.md, session 35).
    const bool pack_in_kernel =
        do_pack_b && !p.tb && kt.packing_kernel != nullptr && m_all >= MR;
    // A row-major A whose rows lie a multiple of 4 KiB apart is packed whatever N when the
    // tile is taller than 8 rows: read in place, its rows all map to one L1 set, and Zen 4's
    // 8 ways do not hold 12 (avx512, 128 x 1024 x 256: 98 -> 111 GFLOP/s packed); avx2's 6
    // rows fit (packing cost it 2-12% at K = 1024 and 2048).
    const bool rows_share_l1_set = !p.ta && p.lda % 1024 == 0 && MR > 8;
    const bool do_pack_a =
        rows_share_l1_set || n_all > (p.ta ? tune.pack_a_min_n_t : tune.pack_a_min_n);
    // An override (PYNN_GEMM_BLOCKING) is rounded up to whole micro-tiles, as the packing
    // and the edge handling need (the tables' values already are).
    const auto tiles = [](index_t v, index_t unit) { return (v + unit - 1) / unit * unit; };
    const index_t KC = balanced_block(p.K, tune.kc > 0 ? tune.kc : kt.kc, 1);
    const index_t MC = balanced_block(m_all, tune.mc > 0 ? tiles(tune.mc, MR) : kt.mc, MR);
    const index_t NC = balanced_block(n_all, tune.nc > 0 ? tiles(tune.nc, NR) : kt.nc, NR);

    Buffers& bufs = thread_buffers();
    float* const a_buf = do_pack_a ? bufs.a.get(static_cast<size_t>(MC) * KC) : nullptr;
    float* const b_buf = do_pack_b ? bufs.b.get(static_cast<size_t>(NC) * KC) : nullptr;
    float* const a_edge = bufs.a_edge.get(static_cast<size_t>(MR) * KC);
    float* const b_edge = bufs.b_edge.get(static_cast<size_t>(NR) * KC);

    const Epilogue& ep = *p.ep;
    const bool relu = ep.act == Activation::relu;
    const bool other_act = !relu && ep.act != Activation::linear;
    // In-place A: element (i, k) at a[i*rsa + k*csa].
    const index_t rsa = p.ta ? 1 : p.lda, csa = p.ta ? p.lda : 1;

    for (index_t jc = j0; jc < j1; jc += NC) {
        const index_t nc = std::min(NC, j1 - jc);
        const index_t nc_full = nc / NR * NR;  // columns in full strips (in-place B)
        for (index_t pc = 0; pc < p.K; pc += KC) {
            const index_t kc = std::min(KC, p.K - pc);
            const bool last = pc + kc == p.K;
            TileEpilogue te{p.alpha, pc == 0 ? p.beta : 1.f, nullptr, last && relu};

            if (pack_in_kernel) {
                pack_b(NR, p, pc, kc, jc, std::min<index_t>(NR, nc), b_buf);
                if (NR <= nc_full && nc_full < nc)
                    pack_b(NR, p, pc, kc, jc + nc_full, nc - nc_full, b_buf + nc_full * kc);
            } else if (do_pack_b) {
                pack_b(NR, p, pc, kc, jc, nc, b_buf);
            } else if (nc_full < nc) pack_b(NR, p, pc, kc, jc + nc_full, nc - nc_full, b_edge);

            for (index_t ic = i0; ic < i1; ic += MC) {
                const index_t mc = std::min(MC, i1 - ic);
                const index_t mc_full = mc / MR * MR;
                if (do_pack_a) pack_a(MR, p, ic, mc, pc, kc, a_buf);
                else if (mc_full < mc) pack_a(MR, p, ic + mc_full, mc - mc_full, pc, kc, a_edge);
                // Rows of the next strip each full tile of the first row block copies (0: no
                // copying), spread over its k: one tile of 12 copying a whole strip (a copy
                // every 12 cycles) took 2-3x a tile's time, waiting on B (256 x 1024 x 1024).
                // (mc_full >= MR in that block: pack_in_kernel asks for MR rows or more.)
                const index_t pack_share =
                    pack_in_kernel && ic == i0 ? (kc + mc_full / MR - 1) / (mc_full / MR) : 0;

                for (index_t jr = 0; jr < nc; jr += NR) {
                    const int nr = static_cast<int>(std::min<index_t>(NR, nc - jr));
                    const float* b;
                    index_t rsb;
                    if (do_pack_b) {
                        b = b_buf + jr * kc;
                        rsb = NR;
                    } else if (jr < nc_full) {
                        b = p.B + pc * p.ldb + jc + jr;
                        rsb = p.ldb;
                    } else {
                        b = b_edge;
                        rsb = NR;
                    }
                    te.bias = last && ep.bias ? ep.bias + jc + jr : nullptr;

                    for (index_t ir = 0; ir < mc; ir += MR) {
                        const int mr = static_cast<int>(std::min<index_t>(MR, mc - ir));
                        float* c = p.C + (ic + ir) * p.ldc + jc + jr;
                        // This tile's share of the next (full) strip's rows.
                        index_t r0 = 0, rows = 0;
                        if (pack_share > 0 && ir < mc_full && jr + NR < nc_full) {
                            r0 = std::min(kc, ir / MR * pack_share);
                            rows = std::min(pack_share, kc - r0);
                        }
                        if (rows > 0) {
                            const float* a = do_pack_a ? a_buf + ir * kc
                                             : p.ta    ? p.A + pc * p.lda + ic + ir
                                                       : p.A + (ic + ir) * p.lda + pc;
                            kt.packing_kernel(kc, a, do_pack_a ? 1 : rsa, do_pack_a ? MR : csa,
                                              b, rsb, c, p.ldc, mr, nr, te,
                                              p.B + (pc + r0) * p.ldb + jc + jr + NR, p.ldb,
                                              b_buf + (jr + NR) * kc + r0 * NR, rows,
                                              kc - r0 - rows, kc / rows);
                        } else if (do_pack_a) {
                            kt.kernel(kc, a_buf + ir * kc, 1, MR, b, rsb, c, p.ldc, mr, nr, te);
                        } else if (ir < mc_full) {
                            const float* a = p.ta ? p.A + pc * p.lda + ic + ir
                                                  : p.A + (ic + ir) * p.lda + pc;
                            kt.kernel(kc, a, rsa, csa, b, rsb, c, p.ldc, mr, nr, te);
                        } else {
                            kt.kernel(kc, a_edge, 1, MR, b, rsb, c, p.ldc, mr, nr, te);
                        }
                        if (last && other_act) act_tile(ep.act, c, p.ldc, mr, nr, ep.act_param);
                    }
                }
            }
        }
    }
}

#if defined(PYNN_X86)
// ---- the "high" matmul precision: the same loops on AMX tiles (kernel_amx.cpp) -------------
// Rows in chunks of kAmxRows (acc, a float32 copy of a chunk's column block, stays <= 1 MiB);
// per chunk: for jc (NC columns)  for pc (KC of K) [pack B: 32-column panels]  for ic (MC
// rows) [pack A: 32-row panels]  for jr, ir: a 32 x 32 block into acc, summed over the K
// slices; then acc -> C with alpha, beta, bias, activation. A 32 x 32 block whose sums are
// not all finite is computed again by the float32 kernels before C is written (the blocks
// sit on multiples of 32 for any split over threads: the same bits with any thread count).
constexpr index_t kAmxKC = 256, kAmxMC = 128, kAmxNC = 512, kAmxRows = 512;

struct AmxBuffers {
    std::vector<std::uint16_t> a, b;
    std::vector<float> acc;
};

struct TilesOn {  // the calling thread's tile configuration, released however the rect ends
    TilesOn() { amx_tiles_on(); }
    ~TilesOn() { amx_tiles_off(); }
    TilesOn(const TilesOn&) = delete;
    TilesOn& operator=(const TilesOn&) = delete;
};

void amx_rows(const Problem& p, const KernelTable& kt, index_t i0, index_t i1, index_t j0,
              index_t j1, AmxBuffers& bufs) {
    const auto up32 = [](index_t v) { return (v + 31) / 32 * 32; };
    const index_t m_all = i1 - i0, n_all = j1 - j0;
    const index_t KC = up32(balanced_block(p.K, kAmxKC, 32));
    const index_t MC = balanced_block(m_all, kAmxMC, 32), NC = balanced_block(n_all, kAmxNC, 32);
    const index_t ld_acc = up32(NC);
    bufs.a.resize(static_cast<size_t>(MC) * KC * 2);
    bufs.b.resize(static_cast<size_t>(NC) * KC * 2);
    bufs.acc.resize(static_cast<size_t>(up32(m_all)) * ld_acc);
    // op(A)(i, k) = A[i*rsa + k*csa], op(B)(k, j) = B[k*rsb + j*csb]
    const index_t rsa = p.ta ? 1 : p.lda, csa = p.ta ? p.lda : 1;
    const index_t rsb = p.tb ? 1 : p.ldb, csb = p.tb ? p.ldb : 1;
    const Epilogue& ep = *p.ep;
    const bool relu = ep.act == Activation::relu;
    // C[i:i+m, j:j+n] from its sums in acc, or from the float32 kernels if they are not finite
    const auto finish = [&](index_t i, index_t j, index_t m, index_t n, const float* acc) {
        if (!amx_all_finite(acc, ld_acc, m, n)) return run_rect(p, kt, i, i + m, j, j + n);
        float* c = p.C + i * p.ldc + j;
        amx_store(acc, ld_acc, c, p.ldc, m, n, p.alpha, p.beta, ep.bias ? ep.bias + j : nullptr, relu);
        if (!relu && ep.act != Activation::linear) act_tile(ep.act, c, p.ldc, m, n, ep.act_param);
    };

    for (index_t jc = j0; jc < j1; jc += NC) {
        const index_t nc = std::min(NC, j1 - jc);
        for (index_t pc = 0; pc < p.K; pc += KC) {
            const index_t kc = std::min(KC, p.K - pc), kcp = up32(kc);
            for (index_t jr = 0; jr < nc; jr += 32)
                amx_pack_b(p.B + pc * rsb + (jc + jr) * csb, rsb, csb, kc,
                           std::min<index_t>(32, nc - jr), kcp, bufs.b.data() + jr * kcp * 2);
            for (index_t ic = i0; ic < i1; ic += MC) {
                const index_t mc = std::min(MC, i1 - ic);
                for (index_t ir = 0; ir < mc; ir += 32)
                    amx_pack_a(p.A + (ic + ir) * rsa + pc * csa, rsa, csa,
                               std::min<index_t>(32, mc - ir), kc, kcp, bufs.a.data() + ir * kcp * 2);
                for (index_t jr = 0; jr < nc; jr += 32)
                    for (index_t ir = 0; ir < mc; ir += 32)
                        amx_block(kcp, bufs.a.data() + ir * kcp * 2, bufs.b.data() + jr * kcp * 2,
                                  bufs.acc.data() + (ic - i0 + ir) * ld_acc + jr, ld_acc, pc > 0);
            }
        }
        for (index_t ir = 0; ir < m_all; ir += 32)
            for (index_t jr = 0; jr < nc; jr += 32)
                finish(i0 + ir, jc + jr, std::min<index_t>(32, m_all - ir),
                       std::min<index_t>(32, nc - jr), bufs.acc.data() + ir * ld_acc + jr);
    }
}

void run_rect_amx(const Problem& p, const KernelTable& kt, index_t i0, index_t i1, index_t j0,
                  index_t j1) {
    static thread_local AmxBuffers bufs;
    const TilesOn tiles;
    for (index_t i = i0; i < i1; i += kAmxRows) amx_rows(p, kt, i, std::min(i1, i + kAmxRows), j0, j1, bufs);
}

// Where AMX pays off (Xeon VM, 2026-12-04, bf16x3 vs float32 FMAs): from ~2^21 multiply-adds
// per thread (128^3 on one thread 1.37x, on two 0.86x; 128 x 256 x 256 on two 1.29x) and
// operands of at least one 32 x 32 tile (128 x 20 x 64: 0.62x); smaller ones stay in float32.
// One cut for any thread count (two threads' 2^22), so a product has the same bits with any.
bool amx_fits(index_t M, index_t N, index_t K) {
    return M >= 32 && N >= 32 && K >= 32 && static_cast<double>(M) * N * K >= (1 << 22);
}
#endif

}  // namespace

void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
          const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
          index_t ldc, const Epilogue& epilogue) {
    if (M <= 0 || N <= 0) return;
    const Problem p{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, &epilogue};
    if (K <= 0) {
        scale_epilogue(p);
        return;
    }
    const KernelTable& kt = active_kernels();
    const int T = num_threads();
    const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
    const bool parallel = T > 1 && flops >= tuning().parallel_min_flops;
    if (N == 1) return gemm_column(p, parallel);
    if (K == 1 && !parallel) return gemm_outer(p);
#if defined(PYNN_X86)
    const bool amx = amx_fits(M, N, K) && amx_active();
    const auto rect = amx ? run_rect_amx : run_rect;
    const index_t mr = amx ? 32 : kt.mr, nr = amx ? 32 : kt.nr;
#else
    const auto rect = run_rect;
    const index_t mr = kt.mr, nr = kt.nr;
#endif
    if (T <= 1 || flops < tuning().parallel_min_flops) {
        rect(p, kt, 0, M, 0, N);
        return;
    }

    // Grid tm x tn of rectangles, as many as threads allow (each at least one tile), with the
    // least re-packing: each of the tm row blocks packs all of its B columns, each of the tn
    // column blocks all of its A rows.
    const index_t m_tiles = (M + mr - 1) / mr, n_tiles = (N + nr - 1) / nr;
    index_t best_tm = 1, best_tn = 1;
    double best_cost = 0.0;
    for (index_t tm = 1; tm <= T; ++tm) {
        for (index_t tn = 1; tm * tn <= T; ++tn) {
            if (tm > m_tiles || tn > n_tiles) continue;
            const double cost = static_cast<double>(tm) * N + static_cast<double>(tn) * M;
            const bool more = tm * tn > best_tm * best_tn;
            if (more || (tm * tn == best_tm * best_tn && cost < best_cost)) {
                best_tm = tm;
                best_tn = tn;
                best_cost = cost;
            }
        }
    }
    const index_t tm = best_tm, tn = best_tn;
    if (tm * tn <= 1) {
        rect(p, kt, 0, M, 0, N);
        return;
    }
    parallel_for(tm * tn, [&](index_t t) {
        const index_t bi = t / tn, bj = t % tn;
        // Boundaries on whole tiles, spread evenly.
        const index_t i0 = std::min(M, (bi * m_tiles / tm) * mr);
        const index_t i1 = std::min(M, ((bi + 1) * m_tiles / tm) * mr);
        const index_t j0 = std::min(N, (bj * n_tiles / tn) * nr);
        const index_t j1 = std::min(N, ((bj + 1) * n_tiles / tn) * nr);
        if (i0 < i1 && j0 < j1) rect(p, kt, i0, i1, j0, j1);
    });
}

}  // namespace pynn
