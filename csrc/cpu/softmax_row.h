// One softmax row's shared first pass, for softmax_forward and the fused cross-entropy:
// out[j] = exp(z[j] - max z) (one exp per element, never overflowing), returns the sum and
// stores max z. The sum is kept in double: in float its error grew with the row (54 ulp at
// 10,000 classes, every probability of the row scaled by it). Compiled with the baseline
// flags only, like every file that includes it.
#pragma once
#include <cmath>

#include "pynn/common.h"

namespace pynn::cpu {

inline float exp_shifted_row(const float* z, float* out, index_t cols, float* max_out) {
    float m = z[0];
    for (index_t j = 1; j < cols; ++j) m = z[j] > m ? z[j] : m;
    double s = 0.0;
    for (index_t j = 0; j < cols; ++j) {
        const float e = std::exp(z[j] - m);
        out[j] = e;
        s += e;
    }
    *max_out = m;
    return static_cast<float>(s);
}

}  // namespace pynn::cpu
