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
};

#if defined(PYNN_X86)
// Defined in optimizers_avx2.cpp; call only when the CPU runs AVX2 + FMA.
const OptimizerRanges& optimizer_ranges_avx2();
#endif

}  // namespace pynn::opt_detail
