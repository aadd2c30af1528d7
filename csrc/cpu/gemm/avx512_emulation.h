// Test-only: the AVX-512 intrinsics that kernel_avx512.cpp uses, written lane by lane in plain
// C++, so that kernel (its tiling, masks, epilogue and the driver's 12 x 32 blocking) can run
// and be tested on a CPU without AVX-512. Compiled in only with -DPYNN_EMULATE_AVX512=ON
// (CONTRIBUTING.md); never part of a release build, and says nothing about speed.
// Semantics follow Intel's intrinsics guide: mask bit i selects lane i (address p + i); masked-off
// lanes are neither read nor written (no access past the end of a row); fmadd rounds once; max
// returns its second operand when either is NaN, as vmaxps does.
#ifndef PYNN_CPU_GEMM_AVX512_EMULATION_H
#define PYNN_CPU_GEMM_AVX512_EMULATION_H

#include <immintrin.h>  // _mm_prefetch, and the real declarations the macros below replace

#include <cmath>

namespace pynn_avx512_emulation {

struct Vec16 {
    float lane[16];
};
using Mask16 = unsigned short;

inline Vec16 setzero() {
    Vec16 r;
    for (int i = 0; i < 16; ++i) r.lane[i] = 0.f;
    return r;
}
inline Vec16 set1(float x) {
    Vec16 r;
    for (int i = 0; i < 16; ++i) r.lane[i] = x;
    return r;
}
inline Vec16 loadu(const float* p) {
    Vec16 r;
    for (int i = 0; i < 16; ++i) r.lane[i] = p[i];
    return r;
}
inline Vec16 maskz_loadu(Mask16 k, const float* p) {
    Vec16 r;
    for (int i = 0; i < 16; ++i) r.lane[i] = (k >> i) & 1 ? p[i] : 0.f;
    return r;
}
inline void storeu(float* p, Vec16 x) {
    for (int i = 0; i < 16; ++i) p[i] = x.lane[i];
}
inline void mask_storeu(float* p, Mask16 k, Vec16 x) {
    for (int i = 0; i < 16; ++i)
        if ((k >> i) & 1) p[i] = x.lane[i];
}
inline Vec16 fmadd(Vec16 a, Vec16 b, Vec16 c) {
    Vec16 r;
    for (int i = 0; i < 16; ++i) r.lane[i] = std::fma(a.lane[i], b.lane[i], c.lane[i]);
    return r;
}
inline Vec16 mul(Vec16 a, Vec16 b) {
    Vec16 r;
    for (int i = 0; i < 16; ++i) r.lane[i] = a.lane[i] * b.lane[i];
    return r;
}
inline Vec16 add(Vec16 a, Vec16 b) {
    Vec16 r;
    for (int i = 0; i < 16; ++i) r.lane[i] = a.lane[i] + b.lane[i];
    return r;
}
inline Vec16 mask_max(Vec16 src, Mask16 k, Vec16 a, Vec16 b) {
    Vec16 r;
    for (int i = 0; i < 16; ++i)
        r.lane[i] = (k >> i) & 1 ? (a.lane[i] > b.lane[i] ? a.lane[i] : b.lane[i]) : src.lane[i];
    return r;
}
inline float cvtss_f32(Vec16 a) { return a.lane[0]; }

}  // namespace pynn_avx512_emulation

#define __m512 pynn_avx512_emulation::Vec16
#define __mmask16 pynn_avx512_emulation::Mask16
#define _mm512_setzero_ps pynn_avx512_emulation::setzero
#define _mm512_set1_ps pynn_avx512_emulation::set1
#define _mm512_loadu_ps pynn_avx512_emulation::loadu
#define _mm512_maskz_loadu_ps pynn_avx512_emulation::maskz_loadu
#define _mm512_storeu_ps pynn_avx512_emulation::storeu
#define _mm512_mask_storeu_ps pynn_avx512_emulation::mask_storeu
#define _mm512_fmadd_ps pynn_avx512_emulation::fmadd
#define _mm512_mul_ps pynn_avx512_emulation::mul
#define _mm512_add_ps pynn_avx512_emulation::add
#define _mm512_mask_max_ps pynn_avx512_emulation::mask_max
#define _mm512_cvtss_f32 pynn_avx512_emulation::cvtss_f32

#endif  // PYNN_CPU_GEMM_AVX512_EMULATION_H
