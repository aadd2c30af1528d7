// Per-element optimizer steps (Keras 3 formulas), written once for the CPU loops and the CUDA
// kernels. Each function updates one parameter w and its slots in place from gradient g.
// Scalars that do not change per element (1 - beta, lr * weight_decay, the bias-corrected
// learning rate) are computed once per call by the caller and passed in, so the loops stay
// a handful of multiply-adds and one sqrt: memory-bound and easy to vectorise.
#pragma once
#include <cmath>
#include "pynn/common.h"

namespace pynn::math {

// Plain SGD: w -= lr * g.
PYNN_HD void sgd_step(float& w, float g, float lr) { w -= lr * g; }

// SGD with momentum: vel = momentum * vel - lr * g; w += vel, or with Nesterov
// w += momentum * vel - lr * g (the look-ahead form Keras uses).
PYNN_HD void sgd_momentum_step(float& w, float g, float& vel, float lr, float momentum,
                               bool nesterov) {
    float v = momentum * vel - lr * g;
    vel = v;
    w += nesterov ? momentum * v - lr * g : v;
}

// Decoupled weight decay (AdamW), applied before the Adam step: w -= (lr * wd) * w.
PYNN_HD void decay_step(float& w, float lr_wd) { w -= lr_wd * w; }

// Adam: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= (m * lr_t) / (sqrt(v) + eps),
// lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t) from the caller.
PYNN_HD void adam_step(float& w, float g, float& m, float& v, float lr_t, float one_minus_b1,
                       float one_minus_b2, float eps) {
    float mi = m + (g - m) * one_minus_b1;
    float vi = v + (g * g - v) * one_minus_b2;
    m = mi;
    v = vi;
    w -= (mi * lr_t) / (std::sqrt(vi) + eps);
}

// RMSprop (not centred): vel = rho vel + (1 - rho) g^2; returns inc = lr g / sqrt(vel + eps),
// which the caller subtracts from w directly or through the momentum buffer.
PYNN_HD float rmsprop_increment(float g, float& vel, float lr, float rho, float one_minus_rho,
                                float eps) {
    float vi = rho * vel + one_minus_rho * (g * g);
    vel = vi;
    return lr * g / std::sqrt(vi + eps);
}

PYNN_HD void rmsprop_step(float& w, float g, float& vel, float lr, float rho,
                          float one_minus_rho, float eps) {
    w -= rmsprop_increment(g, vel, lr, rho, one_minus_rho, eps);
}

PYNN_HD void rmsprop_momentum_step(float& w, float g, float& vel, float& mom, float lr,
                                   float rho, float one_minus_rho, float momentum, float eps) {
    float mi = momentum * mom + rmsprop_increment(g, vel, lr, rho, one_minus_rho, eps);
    mom = mi;
    w -= mi;
}

// Adagrad: acc += g^2; w -= lr g / sqrt(acc + eps).
PYNN_HD void adagrad_step(float& w, float g, float& acc, float lr, float eps) {
    float a = acc + g * g;
    acc = a;
    w -= lr * g / std::sqrt(a + eps);
}

}  // namespace pynn::math
