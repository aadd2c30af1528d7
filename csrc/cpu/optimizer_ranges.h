// Internal to the CPU optimizers: the per-range loops each ISA file exports (optimizers.cpp
// holds the generic ones and the dispatch, optimizers_avx2.cpp the AVX2 + FMA ones). Each
// updates [0, n) of already-offset pointers in place; the chunking over threads stays in
// optimizers.cpp. Declarations only, no inline code: nothing compiled with one ISA's flags may
// be picked by the linker for another's (one-definition rule, see KERNELS.md).
#pragma once
#include "pynn/common.h"

namespace pynn::opt_detail {

struct OptimizerRanges {
    const char* name;  // "generic", "avx2"
    void (*sgd)(float* w, const float* g, index_t n, float lr);
    void (*sgd_momentum)(float* w, const float* g, float* vel, index_t n, float lr,
                         float momentum);
    void (*sgd_nesterov)(float* w, const float* g, float* vel, index_t n, float lr,
                         float momentum);
    // lr_t: bias-corrected learning rate; omb1/omb2: 1 - beta1/2; lr_wd: lr * weight_decay
    // (adamw applies w -= lr_wd * w before the Adam step).
    void (*adam)(float* w, const float* g, float* m, float* v, index_t n, float lr_t,
                 float omb1, float omb2, float eps);
    void (*adamw)(float* w, const float* g, float* m, float* v, index_t n, float lr_t,
                  float omb1, float omb2, float eps, float lr_wd);
    void (*rmsprop)(float* w, const float* g, float* vel, index_t n, float lr, float rho,
                    float omr, float eps);
    void (*rmsprop_momentum)(float* w, const float* g, float* vel, float* mom, index_t n,
                             float lr, float rho, float omr, float momentum, float eps);
    void (*adagrad)(float* w, const float* g, float* acc, index_t n, float lr, float eps);
    // The rest take lr_wd (lr * weight_decay, 0 = no decay) and decay w first when it is set.
    void (*amsgrad)(float* w, const float* g, float* m, float* v, float* v_hat, index_t n,
                    float lr_t, float omb1, float omb2, float eps, float lr_wd);
    // c_m, c_g, c_v: math::nadam_coefficients
    void (*nadam)(float* w, const float* g, float* m, float* v, index_t n, float c_m,
                  float c_g, float c_v, float omb1, float omb2, float eps, float lr_wd);
    // lr_t = lr / (1 - beta1^t)
    void (*adamax)(float* w, const float* g, float* m, float* u, index_t n, float lr_t,
                   float omb1, float beta2, float eps, float lr_wd);
    void (*lion)(float* w, const float* g, float* m, index_t n, float lr, float beta1,
                 float omb1, float beta2, float omb2, float lr_wd);
    void (*adadelta)(float* w, const float* g, float* acc_g, float* acc_d, index_t n, float lr,
                     float rho, float omr, float eps, float lr_wd);
};

#if defined(PYNN_X86)
// Defined in optimizers_avx2.cpp; call only when the CPU runs AVX2 + FMA.
const OptimizerRanges& optimizer_ranges_avx2();
#endif

}  // namespace pynn::opt_detail
