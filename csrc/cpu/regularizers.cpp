// Keras' weight penalties for the native engine: one pass over a parameter that returns
// l1 * sum|w| + l2 * sum w^2 (in double, chunk partials added in a fixed order) and, for a
// trainable parameter, adds l1 * sign(w) then 2 * l2 * w to its gradient, with the factors
// rounded to float32 and the two adds in the layer path's order (pynn/regularizers.py), so
// the gradients agree bit for bit.
#include "cpu/chunks.h"
#include "pynn/kernels.h"

namespace pynn {

double regularize(const float* w, float* g, index_t n, double l1, double l2) {
    const float l1f = static_cast<float>(l1), l2x2 = static_cast<float>(2.0 * l2);
    return cpu::sum_chunks(n, [&](index_t b, index_t e) {
        double a = 0.0, s = 0.0;
        for (index_t i = b; i < e; ++i) {
            const float wi = w[i];
            a += double(wi < 0.f ? -wi : wi);
            s += double(wi) * double(wi);
            if (g) {
                float gi = g[i];
                if (l1 != 0.0) gi += l1f * static_cast<float>((wi > 0.f) - (wi < 0.f));
                if (l2 != 0.0) gi += l2x2 * wi;
                g[i] = gi;
            }
        }
        return l1 * a + l2 * s;
    });
}

}  // namespace pynn
