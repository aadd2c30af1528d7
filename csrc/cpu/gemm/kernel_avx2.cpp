// AVX2 + FMA micro-kernel of the CPU GEMM: a 6 x 16 tile of C (12 ymm accumulators, 2 ymm of
// B, 1 broadcast of A: 15 of the 16 ymm registers), the fused store (alpha, beta, bias, ReLU)
// and the FMA peak loop. Compiled with -mavx2 -mfma only; called only after cpuid says so.
// Everything but kernels_avx2() is in an anonymous namespace and only <immintrin.h> (whose
// functions never get out-of-line copies) is included: no inline code is shared with the
// other ISA files under one name (see kernel_table.h).
// Accumulators are named variables, not an array: GCC 12 spills an array of __m256 to the
// stack and halves the speed.
#include <immintrin.h>

#include "cpu/gemm/kernel_table.h"

namespace pynn::gemm_detail {
namespace {

constexpr int MR = 6;
constexpr int NR = 16;

// The epilogue for one row of the tile, in registers. Loop-invariant branches only.
#define PYNN_AVX2_STORE_ROW(i, x0, x1)                                             \
    do {                                                                           \
        float* ci = c + (i) * ldc;                                                 \
        x0 = _mm256_mul_ps(x0, va);                                                \
        x1 = _mm256_mul_ps(x1, va);                                                \
        if (has_beta) {                                                            \
            x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), x0);                     \
            x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), x1);                 \
        }                                                                          \
        if (bias) {                                                                \
            x0 = _mm256_add_ps(x0, bias0);                                         \
            x1 = _mm256_add_ps(x1, bias1);                                         \
        }                                                                          \
        if (relu) {                                                                \
            x0 = _mm256_max_ps(zero, x0); /* NaN propagates (max_ps returns operand 2) */ \
            x1 = _mm256_max_ps(zero, x1);                                          \
        }                                                                          \
        _mm256_storeu_ps(ci, x0);                                                  \
        _mm256_storeu_ps(ci + 8, x1);                                              \
    } while (0)

// Stores the valid m x n part of a tile spilled to t (row stride NR) through the epilogue.
void store_edge(const float* t, float* c, index_t ldc, int m, int n, const TileEpilogue& ep) {
    const float alpha = ep.alpha, beta = ep.beta;
    const bool has_beta = beta != 0.f;
    for (int i = 0; i < m; ++i) {
        float* ci = c + i * ldc;
        for (int j = 0; j < n; ++j) {
            float v = alpha * t[i * NR + j];
            if (has_beta) v += beta * ci[j];
            if (ep.bias) v += ep.bias[j];
            if (ep.relu) v = !(v <= 0.f) ? v : 0.f;
            ci[j] = v;
        }
    }
}

// R rows of the tile (R = 6, or 4 for the last row strip when M is not a multiple of 6: M = 128
// leaves 2 rows, 256 and 784 leave 4, and computing 6 rows there wasted up to 3% of an
// M = 128 GEMM). 4 rows keep 8 independent FMA chains (latency 4 x 2 pipes), so 1-4 rows cost
// 2/3 of a full strip. Each row sums in the same order whatever R is: a row's result does not
// depend on where the row falls (scikit-learn checks predict under sample reordering).
template <int R>
void kernel_rx16(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                 index_t rsb, float* c, index_t ldc, int m, int n, const TileEpilogue& ep) {
    static_assert(R == 4 || R == MR, "a 4- or 6-row tile");
    // Warm the C rows while the FMAs run (they are read when beta != 0, written always): a
    // row's first line now, its second (numpy's big arrays start 16 bytes past a line, so a
    // 16-float row spans two) halfway through k. See kernel_avx512.cpp for the measurements.
    for (int i = 0; i < m; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);

    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();  // R == 6 only
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();

    // Rows 0-2 from a0, rows 3-5 from a3, at offsets 0, rsa, 2 rsa: few integer registers
    // whatever the strides are (packed strips, row-major or transposed A).
    const float* a0 = a;
    const float* a3 = a + 3 * rsa;
    const index_t r1 = rsa, r2 = 2 * rsa;
// One row of the tile: broadcast its A value, FMA it into the row's two accumulators.
#define PYNN_AVX2_ROW(ptr, x0, x1)                   \
    do {                                             \
        const __m256 av = _mm256_broadcast_ss(ptr);  \
        x0 = _mm256_fmadd_ps(av, b0, x0);            \
        x1 = _mm256_fmadd_ps(av, b1, x1);            \
    } while (0)
    index_t k = 0;
    for (int half = 0; half < 2; ++half) {
        if (half == 1) {  // (the row's last valid element: no pointer past C's end)
            for (int i = 0; i < m; ++i)
                _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + (n - 1)), _MM_HINT_T0);
        }
        for (const index_t k_end = half == 0 ? kc / 2 : kc; k < k_end; ++k) {
            const __m256 b0 = _mm256_loadu_ps(b);
            const __m256 b1 = _mm256_loadu_ps(b + 8);
            PYNN_AVX2_ROW(a0, c00, c01);
            PYNN_AVX2_ROW(a0 + r1, c10, c11);
            PYNN_AVX2_ROW(a0 + r2, c20, c21);
            PYNN_AVX2_ROW(a3, c30, c31);
            if constexpr (R == 6) {
                PYNN_AVX2_ROW(a3 + r1, c40, c41);
                PYNN_AVX2_ROW(a3 + r2, c50, c51);
            }
            a0 += csa;
            a3 += csa;
            b += rsb;
        }
    }
#undef PYNN_AVX2_ROW

    if (m == MR && n == NR) {  // R == 6: the full tile, epilogue in registers
        const float* bias = ep.bias;
        const bool has_beta = ep.beta != 0.f;
        const bool relu = ep.relu;
        const __m256 va = _mm256_set1_ps(ep.alpha);
        const __m256 vb = _mm256_set1_ps(ep.beta);
        const __m256 zero = _mm256_setzero_ps();
        __m256 bias0 = zero, bias1 = zero;
        if (bias) {
            bias0 = _mm256_loadu_ps(bias);
            bias1 = _mm256_loadu_ps(bias + 8);
        }
        PYNN_AVX2_STORE_ROW(0, c00, c01);
        PYNN_AVX2_STORE_ROW(1, c10, c11);
        PYNN_AVX2_STORE_ROW(2, c20, c21);
        PYNN_AVX2_STORE_ROW(3, c30, c31);
        PYNN_AVX2_STORE_ROW(4, c40, c41);
        PYNN_AVX2_STORE_ROW(5, c50, c51);
        return;
    }

    // Edge tile: spill to a local tile, then store only the valid m x n part. Only the last
    // row/column strip of C takes this path.
    alignas(32) float t[MR * NR];
    _mm256_store_ps(t + 0 * NR, c00);
    _mm256_store_ps(t + 0 * NR + 8, c01);
    _mm256_store_ps(t + 1 * NR, c10);
    _mm256_store_ps(t + 1 * NR + 8, c11);
    _mm256_store_ps(t + 2 * NR, c20);
    _mm256_store_ps(t + 2 * NR + 8, c21);
    _mm256_store_ps(t + 3 * NR, c30);
    _mm256_store_ps(t + 3 * NR + 8, c31);
    if constexpr (R == 6) {
        _mm256_store_ps(t + 4 * NR, c40);
        _mm256_store_ps(t + 4 * NR + 8, c41);
        _mm256_store_ps(t + 5 * NR, c50);
        _mm256_store_ps(t + 5 * NR + 8, c51);
    }
    store_edge(t, c, ldc, m, n, ep);
}

void kernel_6x16(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                 index_t rsb, float* c, index_t ldc, int m, int n, const TileEpilogue& ep) {
    if (m <= 4) return kernel_rx16<4>(kc, a, rsa, csa, b, rsb, c, ldc, m, n, ep);
    kernel_rx16<MR>(kc, a, rsa, csa, b, rsb, c, ldc, m, n, ep);
}

#undef PYNN_AVX2_STORE_ROW

// 12 independent chains (FMA latency 4 x 2 pipes needs >= 8); 12 x 8 lanes x 2 flops.
float fma_loop(index_t iters) {
    const __m256 x = _mm256_set1_ps(0.9999999f), y = _mm256_set1_ps(1e-7f);
    __m256 s0 = _mm256_set1_ps(0.f), s1 = _mm256_set1_ps(1.f), s2 = _mm256_set1_ps(2.f);
    __m256 s3 = _mm256_set1_ps(3.f), s4 = _mm256_set1_ps(4.f), s5 = _mm256_set1_ps(5.f);
    __m256 s6 = _mm256_set1_ps(6.f), s7 = _mm256_set1_ps(7.f), s8 = _mm256_set1_ps(8.f);
    __m256 s9 = _mm256_set1_ps(9.f), s10 = _mm256_set1_ps(10.f), s11 = _mm256_set1_ps(11.f);
    for (index_t i = 0; i < iters; ++i) {
        s0 = _mm256_fmadd_ps(s0, x, y);
        s1 = _mm256_fmadd_ps(s1, x, y);
        s2 = _mm256_fmadd_ps(s2, x, y);
        s3 = _mm256_fmadd_ps(s3, x, y);
        s4 = _mm256_fmadd_ps(s4, x, y);
        s5 = _mm256_fmadd_ps(s5, x, y);
        s6 = _mm256_fmadd_ps(s6, x, y);
        s7 = _mm256_fmadd_ps(s7, x, y);
        s8 = _mm256_fmadd_ps(s8, x, y);
        s9 = _mm256_fmadd_ps(s9, x, y);
        s10 = _mm256_fmadd_ps(s10, x, y);
        s11 = _mm256_fmadd_ps(s11, x, y);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                             _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(s8, s9), _mm256_add_ps(s10, s11)));
    return _mm256_cvtss_f32(s);
}

// KC = 384: a 6 x 384 A strip (9 KiB) and a 384 x 16 B strip (24 KiB) sit in L1 (48 KiB);
// MC = 144: the packed A block (216 KiB) sits in L2 (1 MiB); NC = 3072: the packed B panel
// (4.5 MiB) in L3. Measured: KC 384-512 ~1-2% over 256 (fewer tile stores).
// In-place B up to M = 64 (Zen 4, 2026-12-05: in place up to 128, as avx512 now reads it,
// was 2-8% slower at M = 96-128).
const KernelTable kTable = {"avx2", MR, NR, 384, 144, 3072, 64, kernel_6x16,
                            nullptr, fma_loop, 12 * 8 * 2};

}  // namespace

const KernelTable& kernels_avx2() { return kTable; }

}  // namespace pynn::gemm_detail
