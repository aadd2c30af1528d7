// Inverted dropout with the counter-based masks of math/dropout.h: y = x * mask, the mask
// regenerated from (seed, step, index) wherever it is needed (forward and backward), never
// stored. Chunked over the thread pool; the result does not depend on the split.
// The hash is ~12 integer operations per element: the portable loop runs ~2.7 ns/element
// (x86-64's baseline SSE2 has no 32-bit lane multiply, so GCC leaves it scalar), which made
// dropout cost a third of an mnist_mlp training step; the AVX2 loop hashes 8 lanes at once
// (intrinsics in a target("avx2") function, used when the GEMM dispatch runs AVX2 or AVX-512).
#include <cstring>

#include "cpu/chunks.h"
#include "math/dropout.h"
#include "pynn/gemm.h"
#include "pynn/kernels.h"

#if defined(PYNN_X86)
#include <immintrin.h>
#endif

namespace pynn {
namespace {

void dropout_range(const float* x, float* y, index_t b, index_t e, std::uint64_t key,
                   std::uint64_t thr, float scale) {
    for (index_t i = b; i < e; ++i) {
        const bool keep = math::dropout_bits(key, static_cast<std::uint32_t>(i)) >= thr;
        y[i] = (x ? x[i] : 1.f) * (keep ? scale : 0.f);
    }
}

#if defined(PYNN_X86)
__attribute__((target("avx2"))) inline __m256i fmix32_avx2(__m256i h) {
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32(static_cast<int>(0x85EBCA6Bu)));
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32(static_cast<int>(0xC2B2AE35u)));
    return _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
}

// The same bits as dropout_bits, 8 indices at a time; thr < 2^32 (the caller handles 2^32).
__attribute__((target("avx2"))) void dropout_range_avx2(const float* x, float* y, index_t b,
                                                        index_t e, std::uint64_t key,
                                                        std::uint64_t thr, float scale) {
    const __m256i k_lo = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(key)));
    const __m256i k_hi = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(key >> 32)));
    const __m256i golden = _mm256_set1_epi32(static_cast<int>(0x9E3779B9u));
    const __m256i t = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(thr)));
    const __m256 vscale = _mm256_set1_ps(scale), one = _mm256_set1_ps(1.f);
    __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(b))),
                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i eight = _mm256_set1_epi32(8);
    index_t i = b;
    for (; i + 8 <= e; i += 8) {
        __m256i h = fmix32_avx2(_mm256_add_epi32(_mm256_mullo_epi32(idx, golden), k_lo));
        h = fmix32_avx2(_mm256_xor_si256(h, k_hi));
        // Unsigned h >= t  <=>  max_u(h, t) == h.
        const __m256i keep = _mm256_cmpeq_epi32(_mm256_max_epu32(h, t), h);
        const __m256 m = _mm256_and_ps(_mm256_castsi256_ps(keep), vscale);  // scale or +0
        const __m256 xv = x ? _mm256_loadu_ps(x + i) : one;
        _mm256_storeu_ps(y + i, _mm256_mul_ps(xv, m));
        idx = _mm256_add_epi32(idx, eight);
    }
    dropout_range(x, y, i, e, key, thr, scale);
}

bool use_avx2() {
    const char* isa = gemm_isa();  // follows set_gemm_isa / PYNN_ISA
    return std::strcmp(isa, "avx2") == 0 || std::strcmp(isa, "avx512") == 0;
}
#endif

}  // namespace

void dropout_apply(const float* x, float* y, index_t n, double rate, std::uint64_t seed,
                   std::uint64_t step) {
    const std::uint64_t key = math::dropout_key(seed, step);
    const std::uint64_t thr = math::dropout_threshold(rate);
    const float scale = math::dropout_scale(rate);
#if defined(PYNN_X86)
    const bool vec = thr <= 0xFFFFFFFFull && use_avx2();
#endif
    cpu::for_chunks(n, [&](index_t b, index_t e) {
#if defined(PYNN_X86)
        if (vec) return dropout_range_avx2(x, y, b, e, key, thr, scale);
#endif
        dropout_range(x, y, b, e, key, thr, scale);
    });
}

}  // namespace pynn
