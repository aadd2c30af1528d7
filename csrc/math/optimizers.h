// Per-element optimizer steps (Keras 3 formulas), written once for the CPU loops and the CUDA
// kernels. Each function updates one parameter w and its slots in place from gradient g.
// Scalars that do not change per element (1 - beta, lr * weight_decay, the bias-corrected
// learning rate) are computed once per call by the caller and passed in, so the loops stay
// a handful of multiply-adds and one sqrt: memory-bound and easy to vectorise.
#pragma once
#include <cmath>
#include <cstdint>
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

// AMSGrad (Adam's amsgrad=True): as adam_step, dividing by the largest second moment seen,
// v_hat = max(v_hat, v).
PYNN_HD void amsgrad_step(float& w, float g, float& m, float& v, float& v_hat, float lr_t,
                          float one_minus_b1, float one_minus_b2, float eps) {
    float mi = m + (g - m) * one_minus_b1;
    float vi = v + (g * g - v) * one_minus_b2;
    float hi = v_hat > vi ? v_hat : vi;
    m = mi;
    v = vi;
    v_hat = hi;
    w -= (mi * lr_t) / (std::sqrt(hi) + eps);
}

// Nadam (Keras 3): m and v as Adam's; w -= (c_m m + c_g g) / (sqrt(v c_v) + eps), where the
// caller folds the learning rate and the momentum schedule into c_m and c_g and the second
// moment's bias correction into c_v (nadam_coefficients).
PYNN_HD void nadam_step(float& w, float g, float& m, float& v, float c_m, float c_g, float c_v,
                        float one_minus_b1, float one_minus_b2, float eps) {
    float mi = m + (g - m) * one_minus_b1;
    float vi = v + (g * g - v) * one_minus_b2;
    m = mi;
    v = vi;
    w -= (c_m * mi + c_g * g) / (std::sqrt(vi * c_v) + eps);
}

// Adamax: m += (g - m)(1 - b1); u = max(b2 u, |g|); w -= lr_t m / (u + eps), with
// lr_t = lr / (1 - b1^t) from the caller.
PYNN_HD void adamax_step(float& w, float g, float& m, float& u, float lr_t, float one_minus_b1,
                         float beta2, float eps) {
    float mi = m + (g - m) * one_minus_b1;
    float bu = beta2 * u, ag = std::fabs(g);
    float ui = bu > ag ? bu : ag;
    m = mi;
    u = ui;
    w -= (lr_t * mi) / (ui + eps);
}

// Lion: w -= lr sign(b1 m + (1 - b1) g) (sign(0) = 0; a NaN stays NaN, as in Keras, so a
// NaN gradient is not hidden); then m = b2 m + (1 - b2) g.
PYNN_HD void lion_step(float& w, float g, float& m, float lr, float beta1, float one_minus_b1,
                       float beta2, float one_minus_b2) {
    float c = beta1 * m + one_minus_b1 * g;
    w -= c > 0.f ? lr : (c < 0.f ? -lr : c * lr);
    m = beta2 * m + one_minus_b2 * g;
}

// Adadelta: acc_g = rho acc_g + (1 - rho) g^2; d = sqrt(acc_d + eps) g / sqrt(acc_g + eps);
// acc_d = rho acc_d + (1 - rho) d^2; w -= lr d.
PYNN_HD void adadelta_step(float& w, float g, float& acc_g, float& acc_d, float lr, float rho,
                           float one_minus_rho, float eps) {
    float ag = rho * acc_g + one_minus_rho * (g * g);
    float d = std::sqrt(acc_d + eps) * g / std::sqrt(ag + eps);
    acc_g = ag;
    acc_d = rho * acc_d + one_minus_rho * (d * d);
    w -= lr * d;
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

// Nadam's per-step scalars (host side, double): Keras' momentum schedule
// mu_i = b1 (1 - 0.5 * 0.96^i), its running product over the steps so far, and the
// bias corrections, folded into c_m = lr mu_{t+1} / (1 - prod_{t+1}),
// c_g = lr (1 - mu_t) / (1 - prod_t) and c_v = 1 / (1 - b2^t), t the 1-based step.
struct NadamCoefficients {
    float c_m, c_g, c_v;
};

inline double nadam_mu(double beta1, double i) { return beta1 * (1.0 - 0.5 * std::pow(0.96, i)); }

inline NadamCoefficients nadam_coefficients(float lr, double beta1, double beta2,
                                            std::int64_t step) {
    // prod_{i<=t} (1 - 0.5 * 0.96^i): its factors are 1 in double beyond i = 900
    // (0.5 * 0.96^900 < 2^-53), so the product is a table of 901 entries, beta1^t apart.
    static const auto table = [] {
        struct { double p[901]; } t;
        t.p[0] = 1.0;
        for (int i = 1; i <= 900; ++i) t.p[i] = t.p[i - 1] * (1.0 - 0.5 * std::pow(0.96, i));
        return t;
    }();
    auto product = [&](std::int64_t k) {
        return std::pow(beta1, double(k)) * table.p[k < 0 ? 0 : (k < 900 ? k : 900)];
    };
    const double t = double(step);
    const double prod_t = product(step), prod_next = product(step + 1);
    return {static_cast<float>(lr * nadam_mu(beta1, t + 1) / (1.0 - prod_next)),
            static_cast<float>(lr * (1.0 - nadam_mu(beta1, t)) / (1.0 - prod_t)),
            static_cast<float>(1.0 / (1.0 - std::pow(beta2, t)))};
}

}  // namespace pynn::math
