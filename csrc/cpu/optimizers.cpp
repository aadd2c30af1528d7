// Optimizer updates (Keras 3 formulas), one fused in-place pass over n float32 parameters and
// their slot buffers (all of length n; a whole model can be one flat buffer, then a step is one
// call). The per-element math is csrc/math/optimizers.h (shared with CUDA). The loops take
// __restrict pointers and keep branches outside, so GCC vectorises them; with the sqrt in
// Adam/RMSprop/Adagrad that also needs -fno-math-errno (set for this file in CMakeLists.txt),
// which keeps IEEE results and only stops sqrt of a negative from setting errno.
// These loops are the portable (generic) variant; the update functions below pick per call the
// AVX2 + FMA ones of optimizers_avx2.cpp when the GEMM dispatch runs avx2 or avx512 (one ISA
// choice for the whole library: cpuid + xgetbv, PYNN_ISA, set_gemm_isa). AVX-512 CPUs use the
// AVX2 loops: these passes are bound by memory traffic, and an untested AVX-512 copy is not
// worth its risk.
#include <cmath>

#include "cpu/chunks.h"
#include "cpu/optimizer_ranges.h"
#include "math/optimizers.h"
#include "pynn/gemm.h"
#include "pynn/kernels.h"

namespace pynn {
namespace {

void sgd_range(float* __restrict w, const float* __restrict g, index_t n, float lr) {
    for (index_t i = 0; i < n; ++i) math::sgd_step(w[i], g[i], lr);
}

template <bool Nesterov>
void sgd_momentum_range(float* __restrict w, const float* __restrict g, float* __restrict vel,
                        index_t n, float lr, float momentum) {
    for (index_t i = 0; i < n; ++i) math::sgd_momentum_step(w[i], g[i], vel[i], lr, momentum, Nesterov);
}

template <bool Decay>
void adam_range(float* __restrict w, const float* __restrict g, float* __restrict m,
                float* __restrict v, index_t n, float lr_t, float omb1, float omb2, float eps,
                float lr_wd) {
    for (index_t i = 0; i < n; ++i) {
        float wi = w[i];
        if (Decay) math::decay_step(wi, lr_wd);
        math::adam_step(wi, g[i], m[i], v[i], lr_t, omb1, omb2, eps);
        w[i] = wi;
    }
}

void rmsprop_range(float* __restrict w, const float* __restrict g, float* __restrict vel,
                   index_t n, float lr, float rho, float omr, float eps) {
    for (index_t i = 0; i < n; ++i) math::rmsprop_step(w[i], g[i], vel[i], lr, rho, omr, eps);
}

void rmsprop_momentum_range(float* __restrict w, const float* __restrict g,
                            float* __restrict vel, float* __restrict mom, index_t n, float lr,
                            float rho, float omr, float momentum, float eps) {
    for (index_t i = 0; i < n; ++i)
        math::rmsprop_momentum_step(w[i], g[i], vel[i], mom[i], lr, rho, omr, momentum, eps);
}

void adagrad_range(float* __restrict w, const float* __restrict g, float* __restrict acc,
                   index_t n, float lr, float eps) {
    for (index_t i = 0; i < n; ++i) math::adagrad_step(w[i], g[i], acc[i], lr, eps);
}

// The optimizers with a fused decay: one loop each, the decay's branch taken once per call.
template <class Step>
void decayed_range(float* __restrict w, index_t n, float lr_wd, Step step) {
    if (lr_wd != 0.f) {
        for (index_t i = 0; i < n; ++i) {
            float wi = w[i];
            math::decay_step(wi, lr_wd);
            step(wi, i);
            w[i] = wi;
        }
    } else {
        for (index_t i = 0; i < n; ++i) step(w[i], i);
    }
}

void amsgrad_range(float* __restrict w, const float* __restrict g, float* __restrict m,
                   float* __restrict v, float* __restrict vh, index_t n, float lr_t, float omb1,
                   float omb2, float eps, float lr_wd) {
    decayed_range(w, n, lr_wd, [=](float& wi, index_t i) {
        math::amsgrad_step(wi, g[i], m[i], v[i], vh[i], lr_t, omb1, omb2, eps);
    });
}

void nadam_range(float* __restrict w, const float* __restrict g, float* __restrict m,
                 float* __restrict v, index_t n, float c_m, float c_g, float c_v, float omb1,
                 float omb2, float eps, float lr_wd) {
    decayed_range(w, n, lr_wd, [=](float& wi, index_t i) {
        math::nadam_step(wi, g[i], m[i], v[i], c_m, c_g, c_v, omb1, omb2, eps);
    });
}

void adamax_range(float* __restrict w, const float* __restrict g, float* __restrict m,
                  float* __restrict u, index_t n, float lr_t, float omb1, float beta2, float eps,
                  float lr_wd) {
    decayed_range(w, n, lr_wd, [=](float& wi, index_t i) {
        math::adamax_step(wi, g[i], m[i], u[i], lr_t, omb1, beta2, eps);
    });
}

void lion_range(float* __restrict w, const float* __restrict g, float* __restrict m, index_t n,
                float lr, float beta1, float omb1, float beta2, float omb2, float lr_wd) {
    decayed_range(w, n, lr_wd, [=](float& wi, index_t i) {
        math::lion_step(wi, g[i], m[i], lr, beta1, omb1, beta2, omb2);
    });
}

void adadelta_range(float* __restrict w, const float* __restrict g, float* __restrict acc_g,
                    float* __restrict acc_d, index_t n, float lr, float rho, float omr, float eps,
                    float lr_wd) {
    decayed_range(w, n, lr_wd, [=](float& wi, index_t i) {
        math::adadelta_step(wi, g[i], acc_g[i], acc_d[i], lr, rho, omr, eps);
    });
}

const opt_detail::OptimizerRanges kGeneric = {
    "generic",
    sgd_range,
    sgd_momentum_range<false>,
    sgd_momentum_range<true>,
    [](float* w, const float* g, float* m, float* v, index_t n, float lr_t, float omb1,
       float omb2, float eps) { adam_range<false>(w, g, m, v, n, lr_t, omb1, omb2, eps, 0.f); },
    adam_range<true>,
    rmsprop_range,
    rmsprop_momentum_range,
    adagrad_range,
    amsgrad_range,
    nadam_range,
    adamax_range,
    lion_range,
    adadelta_range,
};

// Follows the GEMM's ISA (read per call, so set_gemm_isa switches both); gemm only ever runs
// avx2 or avx512 where cpuid and the OS allow them, and avx512 support implies avx2.
const opt_detail::OptimizerRanges& ranges() {
#if defined(PYNN_X86)
    if (avx2_loops_active()) return opt_detail::optimizer_ranges_avx2();
#endif
    return kGeneric;
}

}  // namespace

void sgd_update(float* w, const float* g, float* velocity, index_t n, float lr, float momentum,
                bool nesterov) {
    const opt_detail::OptimizerRanges& k = ranges();
    cpu::for_chunks(n, [&](index_t b, index_t e) {
        if (momentum == 0.f)
            k.sgd(w + b, g + b, e - b, lr);
        else if (nesterov)
            k.sgd_nesterov(w + b, g + b, velocity + b, e - b, lr, momentum);
        else
            k.sgd_momentum(w + b, g + b, velocity + b, e - b, lr, momentum);
    });
}

void adam_update(float* w, const float* g, float* m, float* v, index_t n, float lr, double beta1,
                 double beta2, float eps, float weight_decay, std::int64_t step, float* v_hat) {
    // Bias correction once per call, in double: beta^t for large t underflows gracefully.
    const double t = static_cast<double>(step);
    const float lr_t = static_cast<float>(double(lr) * std::sqrt(1.0 - std::pow(beta2, t)) /
                                          (1.0 - std::pow(beta1, t)));
    const float omb1 = static_cast<float>(1.0 - beta1), omb2 = static_cast<float>(1.0 - beta2);
    const float lr_wd = lr * weight_decay;
    const opt_detail::OptimizerRanges& k = ranges();
    cpu::for_chunks(n, [&](index_t b, index_t e) {
        if (v_hat)
            k.amsgrad(w + b, g + b, m + b, v + b, v_hat + b, e - b, lr_t, omb1, omb2, eps, lr_wd);
        else if (weight_decay != 0.f)
            k.adamw(w + b, g + b, m + b, v + b, e - b, lr_t, omb1, omb2, eps, lr_wd);
        else
            k.adam(w + b, g + b, m + b, v + b, e - b, lr_t, omb1, omb2, eps);
    });
}

void rmsprop_update(float* w, const float* g, float* velocity, float* momentum_buf, index_t n,
                    float lr, double rho_d, float momentum, float eps) {
    const float rho = static_cast<float>(rho_d), omr = static_cast<float>(1.0 - rho_d);
    const opt_detail::OptimizerRanges& k = ranges();
    cpu::for_chunks(n, [&](index_t b, index_t e) {
        if (momentum > 0.f)
            k.rmsprop_momentum(w + b, g + b, velocity + b, momentum_buf + b, e - b, lr, rho,
                                   omr, momentum, eps);
        else
            k.rmsprop(w + b, g + b, velocity + b, e - b, lr, rho, omr, eps);
    });
}

void adagrad_update(float* w, const float* g, float* accumulator, index_t n, float lr, float eps) {
    const opt_detail::OptimizerRanges& k = ranges();
    cpu::for_chunks(n, [&](index_t b, index_t e) { k.adagrad(w + b, g + b, accumulator + b, e - b, lr, eps); });
}

void nadam_update(float* w, const float* g, float* m, float* v, index_t n, float lr,
                  double beta1, double beta2, float eps, float weight_decay, std::int64_t step) {
    const math::NadamCoefficients c = math::nadam_coefficients(lr, beta1, beta2, step);
    const float omb1 = static_cast<float>(1.0 - beta1), omb2 = static_cast<float>(1.0 - beta2);
    const float lr_wd = lr * weight_decay;
    const opt_detail::OptimizerRanges& k = ranges();
    cpu::for_chunks(n, [&](index_t b, index_t e) {
        k.nadam(w + b, g + b, m + b, v + b, e - b, c.c_m, c.c_g, c.c_v, omb1, omb2, eps, lr_wd);
    });
}

void adamax_update(float* w, const float* g, float* m, float* u, index_t n, float lr,
                   double beta1, double beta2, float eps, float weight_decay, std::int64_t step) {
    const float lr_t = static_cast<float>(double(lr) / (1.0 - std::pow(beta1, double(step))));
    const float omb1 = static_cast<float>(1.0 - beta1), b2 = static_cast<float>(beta2);
    const float lr_wd = lr * weight_decay;
    const opt_detail::OptimizerRanges& k = ranges();
    cpu::for_chunks(n, [&](index_t b, index_t e) {
        k.adamax(w + b, g + b, m + b, u + b, e - b, lr_t, omb1, b2, eps, lr_wd);
    });
}

void lion_update(float* w, const float* g, float* m, index_t n, float lr, double beta1,
                 double beta2, float weight_decay) {
    const float b1 = static_cast<float>(beta1), omb1 = static_cast<float>(1.0 - beta1);
    const float b2 = static_cast<float>(beta2), omb2 = static_cast<float>(1.0 - beta2);
    const float lr_wd = lr * weight_decay;
    const opt_detail::OptimizerRanges& k = ranges();
    cpu::for_chunks(n, [&](index_t b, index_t e) {
        k.lion(w + b, g + b, m + b, e - b, lr, b1, omb1, b2, omb2, lr_wd);
    });
}

void adadelta_update(float* w, const float* g, float* accumulated_grad, float* accumulated_delta,
                     index_t n, float lr, double rho_d, float eps, float weight_decay) {
    const float rho = static_cast<float>(rho_d), omr = static_cast<float>(1.0 - rho_d);
    const float lr_wd = lr * weight_decay;
    const opt_detail::OptimizerRanges& k = ranges();
    cpu::for_chunks(n, [&](index_t b, index_t e) {
        k.adadelta(w + b, g + b, accumulated_grad + b, accumulated_delta + b, e - b, lr, rho, omr,
                   eps, lr_wd);
    });
}

}  // namespace pynn
