// Per-element activation math, written once for the CPU loops and the CUDA kernels.
// Forward: y = f(z). Backward: dz = dy * f'(.), taken from the output y where f' can be
// written in y (all but gelu, silu, hard_silu and mish: activation_needs_z), so training
// need not keep the pre-activation z around.
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

PYNN_HD float pow2_half(std::int32_t k) {  // 2^k for -75 <= k <= 64 (normal floats)
    const std::int32_t bits = (k + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// y = k ln2 + r: k and expm1(r), for y already in [-104, 89] (not NaN).
struct ExpReduced {
    std::int32_t k;
    float em1_r;
};

PYNN_HD ExpReduced exp_reduce(float y) {
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
    return {bits - 0x4B400000, em1};  // the bits of 1.5 * 2^23 + k, less 1.5 * 2^23's
}

PYNN_HD ExpParts exp_parts(float y) {
    y = y == y ? y : 0.f;                             // NaN: any value; the caller restores it
    y = y < -104.f ? -104.f : (y > 0.f ? 0.f : y);    // exp(-104) is below the least denormal
    const ExpReduced e = exp_reduce(y);
    const std::int32_t k1 = e.k >> 1;                 // floor(k / 2): both halves in [-75, 0]
    return {pow2_half(k1) * pow2_half(e.k - k1), e.em1_r};
}

// exp(z) for any z (Keras' exponential activation): 2^k's second half applied last, so
// e^88.7 (k = 128) stays finite; inf above float32's range, NaN for NaN.
PYNN_HD float exp_f(float z) {
    float y = z == z ? z : 0.f;
    y = y < -104.f ? -104.f : (y > 89.f ? 89.f : y);  // e^89 overflows: inf, as exp's
    const ExpReduced e = exp_reduce(y);
    const std::int32_t k1 = e.k >> 1;                 // both halves in [-75, 64]
    const float half = pow2_half(k1);
    return z == z ? (half + half * e.em1_r) * pow2_half(e.k - k1) : z;
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

// log(1 + u) for 0 <= u <= 1 (softplus's log1p(exp(-|z|))), libm-free for the same reason:
// log(1 + u) = 2 atanh(s) with s = u / (2 + u) in [0, 1/3] (no rounding of 1 + u: tiny u
// gives u), by atanh's series to s^15 (truncation < 2e-9 relative). One division; within
// ~2 ulp. NaN in, NaN out.
PYNN_HD float log1p_unit(float u) {
    const float s = u / (2.f + u);
    const float s2 = s * s;
    float p = 1.f / 15.f;
    p = p * s2 + 1.f / 13.f;
    p = p * s2 + 1.f / 11.f;
    p = p * s2 + 1.f / 9.f;
    p = p * s2 + 1.f / 7.f;
    p = p * s2 + 1.f / 5.f;
    p = p * s2 + 1.f / 3.f;
    const float two_s = 2.f * s;
    return two_s * (p * s2) + two_s;
}
#else
PYNN_HD float exp_nonpositive(float y) { return expf(y); }
PYNN_HD float exp_f(float z) { return expf(z); }
PYNN_HD float expm1_nonpositive(float y) { return expm1f(y); }
PYNN_HD float tanh_f(float z) { return tanhf(z); }
PYNN_HD float log1p_unit(float u) { return log1pf(u); }
#endif

constexpr float kSeluAlpha = 1.67326324f;  // Keras' (and PyTorch's) constants
constexpr float kSeluScale = 1.05070098f;
constexpr float kSixth = 1.f / 6.f;

PYNN_HD float sigmoid(float z) {
    // exp of a non-positive number only, so it never overflows.
    const float e = exp_nonpositive(z >= 0.f ? -z : z);
    return z >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
}

PYNN_HD float gelu_tanh(float z) {
    float inner = kSqrt2OverPi * (z + kGeluCoeff * z * z * z);
    return 0.5f * z * (1.f + tanh_f(inner));
}

PYNN_HD float gelu_tanh_grad(float z) {
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

// Phi(-|z|) = erfc(|z| / sqrt 2) / 2, the normal distribution's tail. On the CPU by Numerical
// Recipes' erfcc (Chebyshev fit of erfc(x) / t, t = 1 / (1 + x / 2): relative error < 1.2e-7
// at every x, so the tail z << 0 keeps its digits, where 1 + erf(z / sqrt 2) cancels) and a
// libm-free exp, so the loops vectorise; on the GPU by erfcf.
PYNN_HD float normal_tail(float z) {
    const float x = (z < 0.f ? -z : z) * 0.70710678f;
#if defined(__CUDA_ARCH__)
    return 0.5f * erfcf(x);
#else
    const float t = 1.f / (1.f + 0.5f * x);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    // x^2 as z^2 / 2: one rounding, not x's and its square's (their ~2e-7 relative error
    // became the tail's, times x^2). The sum is <= 0 but for ~1e-7 near 0.
    return 0.5f * t * exp_nonpositive(p - 0.5f * (z * z));
#endif
}

// gelu(z) = z Phi(z): Keras' and PyTorch's default (exact) form. NaN stays NaN.
PYNN_HD float gelu(float z) {
    const float tail = normal_tail(z);
    return z * (z > 0.f ? 1.f - tail : tail);
}

// Phi(z) + z phi(z); 1 and 0 beyond |z| = 10 (z phi(z) < 1e-21 there), taken as such since
// z*z overflows into 0 * inf = NaN past 1.8e19. NaN stays NaN.
PYNN_HD float gelu_grad(float z) {
    const float tail = normal_tail(z);
    const float cdf = z > 0.f ? 1.f - tail : tail;
    const float grad = cdf + z * (0.39894228f * exp_nonpositive(-0.5f * z * z));
    return z > 10.f ? 1.f : (z < -10.f ? 0.f : grad);
}

// log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)): exp of a non-positive number only.
PYNN_HD float softplus(float z) {
    const float a = z < 0.f ? -z : z;
    return (z > 0.f ? z : 0.f) + log1p_unit(exp_nonpositive(-a));  // NaN: a is NaN
}

// relu6(z + 3) / 6, Keras 3's form: z + 3 is exact near -3, where z / 6 + 1/2 cancelled
// (25% off one float above -3).
PYNN_HD float hard_sigmoid(float z) {
    const float r = z + 3.f;
    return (r < 0.f ? 0.f : (r > 6.f ? 6.f : r)) / 6.f;  // NaN stays NaN
}

// sigmoid(z) + z sigmoid(z) sigmoid(-z), both sigmoids from e = exp(-|z|): 1 - sigmoid(z)
// taken as a difference lost up to 1e-3 of itself for z near 10.
PYNN_HD float silu_grad(float z) {
    const float e = exp_nonpositive(z < 0.f ? z : -z);  // NaN: e is NaN
    const float q = 1.f / (1.f + e);
    const float s = z >= 0.f ? q : e * q;
    return s + z * ((e * q) * q);
}

// 0 up to -3, 1 from 3 (Keras 3's values at the kinks), z / 3 + 1/2 between.
PYNN_HD float hard_silu_grad(float z) {
    return z <= -3.f ? 0.f : (z >= 3.f ? 1.f : z * (2.f * kSixth) + 0.5f);
}

// tanh(softplus(z)) = ((1 + e^z)^2 - 1) / ((1 + e^z)^2 + 1) from e = exp(-|z|) alone (for
// z > 0 divided through by e^2z): no log, one exp. With 1 - t^2 and sigmoid(z) from the
// same e, for mish's derivative t + z (1 - t^2) sigmoid(z); each is finite for every finite
// z (far out t is 1 or 0 and 1 - t^2 is 0 or 1 exactly; at +-inf the derivative is NaN,
// as PyTorch's).
struct MishParts {
    float t, one_minus_t2, sig;
};

PYNN_HD MishParts mish_parts(float z) {
    const float e = exp_nonpositive(z < 0.f ? z : -z);  // NaN: e is NaN
    const bool neg = z <= 0.f;
    // t = n / d; 1 - t^2 = (d - n)(d + n) / d^2, which is 4 (n + 1) / d^2 for z <= 0 and
    // (2 e (1 + e) / d)^2 for z > 0
    const float n = neg ? e * (e + 2.f) : 1.f + 2.f * e;
    const float d = neg ? n + 2.f : n + 2.f * (e * e);
    const float t = n / d;
    const float g = 2.f * e * (1.f + e) / d;
    const float omt = neg ? 4.f * (n + 1.f) / (d * d) : g * g;
    const float sig = (neg ? e : 1.f) / (1.f + e);
    return {t, omt, sig};
}

PYNN_HD float mish(float z) { return z * mish_parts(z).t; }

PYNN_HD float mish_grad(float z) {
    const MishParts m = mish_parts(z);
    return m.t + z * m.one_minus_t2 * m.sig;
}

// The z-derivative of the activations that need it (activation_needs_z).
PYNN_HD float activation_grad_z(Activation act, float z) {
    switch (act) {
        case Activation::gelu: return gelu_grad(z);
        case Activation::gelu_tanh: return gelu_tanh_grad(z);
        case Activation::silu: return silu_grad(z);
        case Activation::hard_silu: return hard_silu_grad(z);
        case Activation::mish: return mish_grad(z);
        default: return 1.f;
    }
}

PYNN_HD float activate(Activation act, float z, float param) {
    switch (act) {
        case Activation::relu: return !(z <= 0.f) ? z : 0.f;  // NaN stays NaN, as in numpy
        case Activation::leaky_relu: return z > 0.f ? z : param * z;
        case Activation::elu: return z > 0.f ? z : param * expm1_nonpositive(z);
        case Activation::gelu: return gelu(z);
        case Activation::gelu_tanh: return gelu_tanh(z);
        case Activation::sigmoid: return sigmoid(z);
        case Activation::tanh: return tanh_f(z);
        case Activation::silu: return z * sigmoid(z);
        case Activation::softplus: return softplus(z);
        case Activation::softsign: return z / (1.f + (z < 0.f ? -z : z));
        case Activation::selu:
            return z > 0.f ? kSeluScale * z : (kSeluScale * kSeluAlpha) * expm1_nonpositive(z);
        case Activation::relu6: {
            const float r = !(z <= 0.f) ? z : 0.f;  // NaN stays NaN
            return r > 6.f ? 6.f : r;
        }
        case Activation::hard_sigmoid: return hard_sigmoid(z);
        case Activation::hard_silu: return z * hard_sigmoid(z);
        case Activation::mish: return mish(z);
        case Activation::exponential: return exp_f(z);
        default: return z;
    }
}

// f'(z) expressed through y = f(z); z is read only where activation_needs_z.
PYNN_HD float activation_grad(Activation act, float z, float y, float param) {
    switch (act) {
        case Activation::relu: return y > 0.f ? 1.f : 0.f;
        case Activation::leaky_relu: return y > 0.f ? 1.f : param;
        case Activation::elu: return y > 0.f ? 1.f : y + param;
        case Activation::sigmoid: return y * (1.f - y);
        case Activation::tanh: return 1.f - y * y;
        case Activation::softplus: return 0.f - expm1_nonpositive(-y);  // sigmoid(z) = 1 - e^-y
        case Activation::softsign: {
            const float r = 1.f - (y < 0.f ? -y : y);  // 1 / (1 + |z|)
            return r * r;
        }
        case Activation::selu: return y > 0.f ? kSeluScale : y + kSeluScale * kSeluAlpha;
        case Activation::relu6: return y > 0.f && y < 6.f ? 1.f : 0.f;
        case Activation::hard_sigmoid: return y > 0.f && y < 1.f ? kSixth : 0.f;
        case Activation::exponential: return y;
        case Activation::gelu:
        case Activation::gelu_tanh:
        case Activation::silu:
        case Activation::hard_silu:
        case Activation::mish: return activation_grad_z(act, z);
        default: return 1.f;
    }
}

}  // namespace pynn::math
