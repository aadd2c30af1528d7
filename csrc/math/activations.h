// Per-element activation math, written once for the CPU loops and the CUDA kernels.
// Forward: y = f(z). Backward: dz = dy * f'(.), taken from the output y where f' can be
// written in y (all but gelu), so training need not keep the pre-activation z around.
#pragma once
#include <cmath>
#include "pynn/common.h"

namespace pynn::math {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoeff = 0.044715f;

PYNN_HD float sigmoid(float z) {
    // Two branches so exp never overflows: exp of a non-positive number only.
    if (z >= 0.f) {
        float e = std::exp(-z);
        return 1.f / (1.f + e);
    }
    float e = std::exp(z);
    return e / (1.f + e);
}

PYNN_HD float gelu(float z) {
    float inner = kSqrt2OverPi * (z + kGeluCoeff * z * z * z);
    return 0.5f * z * (1.f + std::tanh(inner));
}

PYNN_HD float gelu_grad(float z) {
    // Beyond |z| = 10 tanh is exactly +-1 (float32 and float64), so the second term is 0 and
    // the value 0 or 1; clamping keeps z*z from overflowing into 0 * inf = NaN (|z| > 1.8e19).
    z = z > 10.f ? 10.f : (z < -10.f ? -10.f : z);  // NaN stays NaN
    float z2 = z * z;
    float inner = kSqrt2OverPi * (z + kGeluCoeff * z2 * z);
    float t = std::tanh(inner);
    float dinner = kSqrt2OverPi * (1.f + 3.f * kGeluCoeff * z2);
    return 0.5f * (1.f + t) + 0.5f * z * (1.f - t * t) * dinner;
}

PYNN_HD float activate(Activation act, float z, float param) {
    switch (act) {
        case Activation::relu: return !(z <= 0.f) ? z : 0.f;  // NaN stays NaN, as in numpy
        case Activation::leaky_relu: return z > 0.f ? z : param * z;
        case Activation::elu: return z > 0.f ? z : param * (std::exp(z) - 1.f);
        case Activation::gelu: return gelu(z);
        case Activation::sigmoid: return sigmoid(z);
        case Activation::tanh: return std::tanh(z);
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
