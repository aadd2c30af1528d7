// AVX-512 micro-kernel of the CPU GEMM: a 12 x 32 tile of C (24 zmm accumulators, 2 zmm of
// B, 1 broadcast of A: 27 of the 32 zmm registers), the fused store (alpha, beta, bias, ReLU)
// with masked loads/stores for edge tiles, and the FMA peak loop. Same structure as
// kernel_avx2.cpp (6 x 16 there), twice as tall and twice as wide.
// Compiled with -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma only; called only after
// cpuid + xgetbv say the CPU and OS support it. Everything but kernels_avx512() is in an
// anonymous namespace and only <immintrin.h> is included: no inline code is shared with the
// other ISA files under one name (see kernel_table.h).
// Accumulators are named variables, not an array: GCC 12 spills arrays of vectors.
// PYNN_EMULATE_AVX512 (tests only) swaps the intrinsics for lane-by-lane C++ versions.
#if defined(PYNN_EMULATE_AVX512)
#include "cpu/gemm/avx512_emulation.h"
#else
#include <immintrin.h>
#endif

#include "cpu/gemm/kernel_table.h"

namespace pynn::gemm_detail {
namespace {

constexpr int MR = 12;
constexpr int NR = 32;
// A packing tile fetches the row it will copy kPackAheadK k ahead (~500 cycles, about a DRAM
// latency), and at least kPackAhead copies ahead. Zen 4, one thread, old/new time against
// packing in a pass of its own (session 35, bench/RESULTS.md): no prefetch 0.68x at 256 x
// 1024 x 1024; into L2 (T1) 16 copies ahead (~160 k) 1.03x there but 0.91x at 2048^3 (B
// from DRAM, rows 8 KiB apart: the lines crowd the L2 sets of the A block); 4 copies ahead
// with NTA 1.03x and 1.00x, but 0.75x at 16 x 2048 x 2048, where one tile copies a row every
// k (4 k ahead: B's rows came late); 40 k ahead into L2 there: 1.18x. So: T1, 40 / step
// copies ahead, where that is more than 4 (a row copied every 8 k or less: blocks of up to
// ~9 tiles); NTA 4 copies ahead otherwise (36 k or more).
constexpr index_t kPackAhead = 4, kPackAheadK = 40;

// The three lines a row of 32 floats may touch (numpy's rows start 16 bytes past a line):
// into L2 (T1) when FAR, else NTA.
template <bool FAR>
inline void prefetch_b_row(const char* row) {
    constexpr auto hint = FAR ? _MM_HINT_T1 : _MM_HINT_NTA;
    _mm_prefetch(row, hint);
    _mm_prefetch(row + 64, hint);
    _mm_prefetch(row + 124, hint);
}

// The epilogue for one row of the tile. k0/k1 mask the valid columns (all ones on a full
// tile): masked-off lanes are neither loaded (no fault past the end of C or bias) nor stored.
#define PYNN_AVX512_STORE_ROW(i, x0, x1)                                           \
    do {                                                                           \
        float* ci = c + (i) * ldc;                                                 \
        x0 = _mm512_mul_ps(x0, va);                                                \
        x1 = _mm512_mul_ps(x1, va);                                                \
        if (has_beta) {                                                            \
            x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, ci), x0);           \
            x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, ci + 16), x1);      \
        }                                                                          \
        if (bias) {                                                                \
            x0 = _mm512_add_ps(x0, bias0);                                         \
            x1 = _mm512_add_ps(x1, bias1);                                         \
        }                                                                          \
        if (relu) {                                                                \
            /* max(0, NaN) = NaN: vmaxps returns its second operand when either is */ \
            /* NaN, as the avx2 and generic kernels do. The masked form because GCC 12 */ \
            /* warns on _mm512_max_ps's internal _mm512_undefined_ps. */               \
            x0 = _mm512_mask_max_ps(x0, __mmask16(0xFFFF), zero, x0);               \
            x1 = _mm512_mask_max_ps(x1, __mmask16(0xFFFF), zero, x1);               \
        }                                                                          \
        _mm512_mask_storeu_ps(ci, k0, x0);                                         \
        _mm512_mask_storeu_ps(ci + 16, k1, x1);                                    \
    } while (0)

// R rows of the tile: 12, or 4 / 8 for the last row strip when M is not a multiple of 12
// (M = 32, a small batch, leaves 8; 64, 256 and 784 leave 4: computing 12 rows there wasted
// up to 11% of the GEMM). 4 rows keep 8 independent FMA chains (latency 4 x 2 pipes). Each
// row sums in the same order whatever R is: a row's result does not depend on where it falls.
// V column vectors: 2, or 1 when at most 16 columns are valid (a 10-class output layer's
// GEMMs: the second vector's FMAs would all be wasted). The same FMAs per element either way.
// PACK: also copy rows of the next B strip, one every `step` k (PackingMicroKernel in
// kernel_table.h).
template <int R, int V, bool PACK = false>
void kernel_rx32(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                 index_t rsb, float* c, index_t ldc, int m, int n, const TileEpilogue& ep,
                 const float* next_src = nullptr, index_t next_ld = 0,
                 float* next_dst = nullptr, index_t rows = 0, index_t rows_after = 0,
                 index_t step = 1) {
    index_t copied = 0, copies_left = rows + rows_after;
    index_t copy_k = PACK && rows > 0 ? 0 : kc;  // the k of the next copy
    const bool far = kPackAheadK / step > kPackAhead;
    const index_t ahead = far ? kPackAheadK / step : kPackAhead;
    static_assert(R == 4 || R == 8 || R == MR, "a 4-, 8- or 12-row tile");
    static_assert(V == 1 || V == 2, "one or two column vectors");
    // Warm the C rows while the FMAs run (read when beta != 0, written always): a row's
    // first line now, the rest halfway through k. numpy's big arrays start 16 bytes past a
    // line, so a 32-float row spans three lines; fetching only the first left ~10% (avx512)
    // and ~20% (avx2) of a 2048^3 product waiting on C, and fetching all of them up front
    // cost 4-6% at 512^3-1024^3 (avx2; the misses hold the fill buffers the strips need).
    for (int i = 0; i < m; ++i)
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);

    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
    __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps();
    __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
    __m512 c80 = _mm512_setzero_ps(), c81 = _mm512_setzero_ps();
    __m512 c90 = _mm512_setzero_ps(), c91 = _mm512_setzero_ps();
    __m512 c100 = _mm512_setzero_ps(), c101 = _mm512_setzero_ps();
    __m512 c110 = _mm512_setzero_ps(), c111 = _mm512_setzero_ps();

    // Rows 3q..3q+2 from a{3q} at offsets 0, rsa, 2 rsa: 4 pointers + 2 offsets in integer
    // registers whatever the strides are (packed strips, row-major or transposed A).
    const float* a0 = a;
    const float* a3 = a + 3 * rsa;
    const float* a6 = a + 6 * rsa;  // (R >= 8)
    const float* a9 = a + 9 * rsa;  // (R == 12)
    const index_t r1 = rsa, r2 = 2 * rsa;
// One row of the tile: broadcast its A value, FMA it into the row's accumulators.
#define PYNN_AVX512_ROW(ptr, x0, x1)                             \
    do {                                                         \
        const __m512 av = _mm512_set1_ps(*(ptr));                \
        x0 = _mm512_fmadd_ps(av, b0, x0);                        \
        if constexpr (V == 2) x1 = _mm512_fmadd_ps(av, b1, x1);  \
    } while (0)
    index_t k = 0;
    for (int half = 0; half < 2; ++half) {
        if (half == 1) {  // (valid elements only: no pointer past C's end)
            const int mid = n > 16 ? 16 : n - 1;
            for (int i = 0; i < m; ++i) {
                _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + mid), _MM_HINT_T0);
                _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + (n - 1)), _MM_HINT_T0);
            }
        }
        for (const index_t k_end = half == 0 ? kc / 2 : kc; k < k_end; ++k) {
            const __m512 b0 = _mm512_loadu_ps(b);
            const __m512 b1 = V == 2 ? _mm512_loadu_ps(b + 16) : b0;
            PYNN_AVX512_ROW(a0, c00, c01);
            PYNN_AVX512_ROW(a0 + r1, c10, c11);
            PYNN_AVX512_ROW(a0 + r2, c20, c21);
            PYNN_AVX512_ROW(a3, c30, c31);
            if constexpr (R >= 8) {
                PYNN_AVX512_ROW(a3 + r1, c40, c41);
                PYNN_AVX512_ROW(a3 + r2, c50, c51);
                PYNN_AVX512_ROW(a6, c60, c61);
                PYNN_AVX512_ROW(a6 + r1, c70, c71);
            }
            if constexpr (R == 12) {
                PYNN_AVX512_ROW(a6 + r2, c80, c81);
                PYNN_AVX512_ROW(a9, c90, c91);
                PYNN_AVX512_ROW(a9 + r1, c100, c101);
                PYNN_AVX512_ROW(a9 + r2, c110, c111);
            }
            if constexpr (PACK) {
                if (k == copy_k) {  // one row of the next strip every `step` k
                    // The source rows lie next_ld apart (a page or more for a layer's
                    // weights): no hardware prefetcher follows them, so each is fetched
                    // `ahead` copies ahead; never past the strip's last row.
                    if (ahead < copies_left) {
                        const char* row =
                            reinterpret_cast<const char*>(next_src + ahead * next_ld);
                        if (far) prefetch_b_row<true>(row);
                        else prefetch_b_row<false>(row);
                    }
                    const __m512 s0 = _mm512_loadu_ps(next_src);
                    const __m512 s1 = _mm512_loadu_ps(next_src + 16);
                    _mm512_storeu_ps(next_dst, s0);
                    _mm512_storeu_ps(next_dst + 16, s1);
                    --copies_left;
                    if (++copied < rows) {  // (no pointer past the strip's last row)
                        next_src += next_ld;
                        next_dst += NR;
                        copy_k += step;
                    } else {
                        copy_k = kc;
                    }
                }
            }
            a0 += csa;
            a3 += csa;
            a6 += csa;
            a9 += csa;
            b += rsb;
        }
    }
#undef PYNN_AVX512_ROW

    // Column masks: n in [1, 32].
    const __mmask16 k0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
    const __mmask16 k1 = n >= 32 ? __mmask16(0xFFFF)
                                 : (n > 16 ? __mmask16((1u << (n - 16)) - 1u) : __mmask16(0));
    const float* bias = ep.bias;
    const bool has_beta = ep.beta != 0.f;
    const bool relu = ep.relu;
    const __m512 va = _mm512_set1_ps(ep.alpha);
    const __m512 vb = _mm512_set1_ps(ep.beta);
    const __m512 zero = _mm512_setzero_ps();
    __m512 bias0 = zero, bias1 = zero;
    if (bias) {
        bias0 = _mm512_maskz_loadu_ps(k0, bias);
        bias1 = _mm512_maskz_loadu_ps(k1, bias + 16);
    }
    // Row 0 is always valid (m >= 1).
    PYNN_AVX512_STORE_ROW(0, c00, c01);
    if (1 < m) PYNN_AVX512_STORE_ROW(1, c10, c11);
    if (2 < m) PYNN_AVX512_STORE_ROW(2, c20, c21);
    if (3 < m) PYNN_AVX512_STORE_ROW(3, c30, c31);
    if constexpr (R >= 8) {
        if (4 < m) PYNN_AVX512_STORE_ROW(4, c40, c41);
        if (5 < m) PYNN_AVX512_STORE_ROW(5, c50, c51);
        if (6 < m) PYNN_AVX512_STORE_ROW(6, c60, c61);
        if (7 < m) PYNN_AVX512_STORE_ROW(7, c70, c71);
    }
    if constexpr (R == 12) {
        if (8 < m) PYNN_AVX512_STORE_ROW(8, c80, c81);
        if (9 < m) PYNN_AVX512_STORE_ROW(9, c90, c91);
        if (10 < m) PYNN_AVX512_STORE_ROW(10, c100, c101);
        if (11 < m) PYNN_AVX512_STORE_ROW(11, c110, c111);
    }
}

void kernel_12x32(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                  index_t rsb, float* c, index_t ldc, int m, int n, const TileEpilogue& ep) {
    if (n <= 16) {
        if (m <= 4) return kernel_rx32<4, 1>(kc, a, rsa, csa, b, rsb, c, ldc, m, n, ep);
        if (m <= 8) return kernel_rx32<8, 1>(kc, a, rsa, csa, b, rsb, c, ldc, m, n, ep);
        return kernel_rx32<MR, 1>(kc, a, rsa, csa, b, rsb, c, ldc, m, n, ep);
    }
    if (m <= 4) return kernel_rx32<4, 2>(kc, a, rsa, csa, b, rsb, c, ldc, m, n, ep);
    if (m <= 8) return kernel_rx32<8, 2>(kc, a, rsa, csa, b, rsb, c, ldc, m, n, ep);
    kernel_rx32<MR, 2>(kc, a, rsa, csa, b, rsb, c, ldc, m, n, ep);
}

// The 12 x 32 tile copying the next B strip (full tiles only: the driver asks for no other).
void kernel_12x32_packing(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                          index_t rsb, float* c, index_t ldc, int m, int n,
                          const TileEpilogue& ep, const float* next_src, index_t next_ld,
                          float* next_dst, index_t rows, index_t rows_after, index_t step) {
    kernel_rx32<MR, 2, true>(kc, a, rsa, csa, b, rsb, c, ldc, m, n, ep, next_src, next_ld,
                             next_dst, rows, rows_after, step);
}

#undef PYNN_AVX512_STORE_ROW

// 12 independent chains (covers latency 4 x 2 pipes); 12 x 16 lanes x 2 flops.
float fma_loop(index_t iters) {
    const __m512 x = _mm512_set1_ps(0.9999999f), y = _mm512_set1_ps(1e-7f);
    __m512 s0 = _mm512_set1_ps(0.f), s1 = _mm512_set1_ps(1.f), s2 = _mm512_set1_ps(2.f);
    __m512 s3 = _mm512_set1_ps(3.f), s4 = _mm512_set1_ps(4.f), s5 = _mm512_set1_ps(5.f);
    __m512 s6 = _mm512_set1_ps(6.f), s7 = _mm512_set1_ps(7.f), s8 = _mm512_set1_ps(8.f);
    __m512 s9 = _mm512_set1_ps(9.f), s10 = _mm512_set1_ps(10.f), s11 = _mm512_set1_ps(11.f);
    for (index_t i = 0; i < iters; ++i) {
        s0 = _mm512_fmadd_ps(s0, x, y);
        s1 = _mm512_fmadd_ps(s1, x, y);
        s2 = _mm512_fmadd_ps(s2, x, y);
        s3 = _mm512_fmadd_ps(s3, x, y);
        s4 = _mm512_fmadd_ps(s4, x, y);
        s5 = _mm512_fmadd_ps(s5, x, y);
        s6 = _mm512_fmadd_ps(s6, x, y);
        s7 = _mm512_fmadd_ps(s7, x, y);
        s8 = _mm512_fmadd_ps(s8, x, y);
        s9 = _mm512_fmadd_ps(s9, x, y);
        s10 = _mm512_fmadd_ps(s10, x, y);
        s11 = _mm512_fmadd_ps(s11, x, y);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)),
                             _mm512_add_ps(_mm512_add_ps(s4, s5), _mm512_add_ps(s6, s7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(s8, s9), _mm512_add_ps(s10, s11)));
    return _mm512_cvtss_f32(s);
}

// KC = 1024, MC = 144: the packed A block (576 KiB) and the current 1024 x 32 B strip
// (128 KiB) sit in L2 (1-2 MiB on AVX-512 cores); NC = 1024: a 4 MiB B panel in L3. The
// kernel reads 176 bytes of the strips per 24 FMAs (~15 a cycle), which L2 sustains, so
// the strips need not fit L1 as with KC = 256 (the earlier choice); deep K slices make each
// tile's loop 4x longer per call and the passes over C 4x fewer. Xeon (Sapphire Rapids
// class), gemm_table's squares in three interleaved rounds, pynn/numpy one thread: 2048^3
// 0.85-0.87x (KC 256) -> 0.99-1.01x, 512^3 and 1024^3 the same or better; the MLP shapes
// and training steps unchanged (bench/RESULTS.md). In-place B up to M = 128 (a batch of
// 128's Dense forward): Zen 4, one thread, 128 x {256, 512, 784} x {64..320} 2-6% faster
// than packing B; in place up to M = 1024 gained nothing sure at M = 192-512.
const KernelTable kTable = {"avx512", MR, NR, 1024, 144, 1024, 128, kernel_12x32,
                            kernel_12x32_packing, fma_loop, 12 * 16 * 2};

}  // namespace

const KernelTable& kernels_avx512() { return kTable; }

}  // namespace pynn::gemm_detail
