// Per-element activation math, written once for the CPU loops and the CUDA kernels.
// Forward: y = f(z). Backward: dz = dy * f'(.), taken from the output y where f' can be
// written in y (all but gelu), so training need not keep the pre-activation z around.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include "pynn/common.h"

namespace pynn::math {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoeff = 0.044715f;

#if !defined(__CUDA_ARCH__)
// exp and expm1 of y <= 0 for the CPU loops, without a libm call, so that GCC vectorises the
// loops that use them (a call per element made gelu 19 ns/element; tanh, sigmoid, elu pay
// the same). y = k ln2 + r, |r| <= ln2/2; expm1(r) by its Taylor series to r^8/8!
// (truncation < 6e-9 relative); 2^k in two halves so that results down to the smallest
// denormal round once. Within ~2 ulp of the exact value; NaN in, NaN out (callers check).
struct ExpParts {
    float scale;   // 2^k
    float em1_r;   // expm1(r)
};

PYNN_HD float pow2_half(std::int32_t k) {  // 2^k for -75 <= k <= 0
    const std::int32_t bits = (k + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

PYNN_HD ExpParts exp_parts(float y) {
    y = y == y ? y : 0.f;                             // NaN: any value; the caller restores it
    y = y < -104.f ? -104.f : (y > 0.f ? 0.f : y);    // exp(-104) is below the least denormal
    // round(y / ln2), as a float and, from the same sum's bits, as an integer: a float-to-int
    // conversion of a bounded value let GCC narrow it to a type it cannot vectorise
    const float shifted = y * 1.44269504f + 12582912.f;  // 1.5 * 2^23: k in the low bits
    const float kf = shifted - 12582912.f;
    const float r = (y - kf * 0.693359375f) + kf * 2.12194440e-4f;  // ln2 in two parts
    float p = 2.48015873e-5f;                         // 1/8!
    p = p * r + 1.98412698e-4f;
    p = p * r + 1.38888889e-3f;
    p = p * r + 8.33333333e-3f;
    p = p * r + 4.16666667e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 0.5f;
    const float em1 = (p * r) * r + r;
    std::int32_t bits;
    std::memcpy(&bits, &shifted, sizeof bits);
    const std::int32_t k = bits - 0x4B400000;  // the bits of 1.5 * 2^23 + k, less 1.5 * 2^23's
    const std::int32_t k1 = k >> 1;            // floor(k / 2): both halves in [-75, 0]
    return {pow2_half(k1) * pow2_half(k - k1), em1};
}

PYNN_HD float exp_nonpositive(float y) {
    const ExpParts e = exp_parts(y);
    return y == y ? e.scale + e.scale * e.em1_r : y;
}

PYNN_HD float expm1_nonpositive(float y) {
    const ExpParts e = exp_parts(y);
    return y == y && y != 0.f ? e.scale * e.em1_r + (e.scale - 1.f) : y;  // keeps -0 and NaN
}

// tanh(z) = -expm1(-2|z|) / (2 + expm1(-2|z|)) with z's sign: no cancellation near 0.
PYNN_HD float tanh_f(float z) {
    const float a = z < 0.f ? -z : z;
    const float em = expm1_nonpositive(-2.f * a);
    const float t = (0.f - em) / (2.f + em);  // 0 - em: +0 for em = +-0
    return z == z ? std::copysign(t, z) : z;
}
#else
PYNN_HD float exp_nonpositive(float y) { return expf(y); }
PYNN_HD float expm1_nonpositive(float y) { return expm1f(y); }
PYNN_HD float tanh_f(float z) { return tanhf(z); }
#endif

PYNN_HD float sigmoid(float z) {
    // exp of a non-positive number only, so it never overflows.
    const float e = exp_nonpositive(z >= 0.f ? -z : z);
    return z >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
}

PYNN_HD float gelu(float z) {
    float inner = kSqrt2OverPi * (z + kGeluCoeff * z * z * z);
    return 0.5f * z * (1.f + tanh_f(inner));
}

PYNN_HD float gelu_grad(float z) {
    // Beyond |z| = 10 tanh is exactly +-1 (float32 and float64), so the second term is 0 and
    // the value 0 or 1; taken as such, since z*z overflows into 0 * inf = NaN past 1.8e19.
    // (A select on the result, not a clamp of z: GCC then folded the clamped ends into the
    // math and no longer vectorised the loop.) NaN stays NaN.
    const float z2 = z * z;
    const float inner = kSqrt2OverPi * (z + kGeluCoeff * z2 * z);
    const float t = tanh_f(inner);
    const float dinner = kSqrt2OverPi * (1.f + 3.f * kGeluCoeff * z2);
    const float grad = 0.5f * (1.f + t) + 0.5f * z * (1.f - t * t) * dinner;
    return z > 10.f ? 1.f : (z < -10.f ? 0.f : grad);
}

PYNN_HD float activate(Activation act, float z, float param) {
    switch (act) {
        case Activation::relu: return !(z <= 0.f) ? z : 0.f;  // NaN stays NaN, as in numpy
        case Activation::leaky_relu: return z > 0.f ? z : param * z;
        case Activation::elu: return z > 0.f ? z : param * expm1_nonpositive(z);
        case Activation::gelu: return gelu(z);
        case Activation::sigmoid: return sigmoid(z);
        case Activation::tanh: return tanh_f(z);
        default: return z;
    }
}

// f'(z) expressed through y = f(z); z is read only for gelu.
PYNN_HD float activation_grad(Activation act, float z, float y, float param) {
    switch (act) {
        case Activation::relu: return y > 0.f ? 1.f : 0.f;
        case Activation::leaky_relu: return y > 0.f ? 1.f : param;
        case Activation::elu: return y > 0.f ? 1.f : y + param;
        case Activation::gelu: return gelu_grad(z);
        case Activation::sigmoid: return y * (1.f - y);
        case Activation::tanh: return 1.f - y * y;
        default: return 1.f;
    }
}

}  // namespace pynn::math
