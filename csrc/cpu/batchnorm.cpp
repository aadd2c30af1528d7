// Batch normalization kernels of the native engine (batchnorm.h). Column reductions walk the
// rows in order with one double accumulator per column (row-major: the inner loop runs along
// a row, so it vectorises); the engine's batches are small enough (rows x cols of one layer)
// that one thread does them without the pool.
#include "cpu/batchnorm.h"

#include <algorithm>

namespace pynn::bn {

void column_stats(const float* z, index_t rows, index_t cols, float* mean, float* var,
                  double* s) {
    std::fill(s, s + cols, 0.0);
    for (index_t r = 0; r < rows; ++r)
        for (index_t j = 0; j < cols; ++j) s[j] += z[r * cols + j];
    for (index_t j = 0; j < cols; ++j) mean[j] = static_cast<float>(s[j] / double(rows));
    std::fill(s, s + cols, 0.0);
    for (index_t r = 0; r < rows; ++r)
        for (index_t j = 0; j < cols; ++j) {
            const double d = double(z[r * cols + j]) - double(mean[j]);
            s[j] += d * d;
        }
    for (index_t j = 0; j < cols; ++j) var[j] = static_cast<float>(s[j] / double(rows));
}

void normalize(const float* z, index_t rows, index_t cols, const float* mean,
               const float* inv_std, const float* gamma, const float* beta, float* xhat,
               float* out) {
    for (index_t r = 0; r < rows; ++r)
        for (index_t j = 0; j < cols; ++j) {
            const index_t i = r * cols + j;
            const float xh = (z[i] - mean[j]) * inv_std[j];
            if (xhat) xhat[i] = xh;
            float y = gamma ? xh * gamma[j] : xh;
            if (beta) y += beta[j];
            out[i] = y;
        }
}

void backward(const float* dy, const float* xhat, index_t rows, index_t cols,
              const float* inv_std, const float* gamma, bool batch_stats, float* dgamma,
              float* dbeta, float* dx, double* acc, float* tmp) {
    // Column sums of dy and dy * xhat: the gamma/beta gradients and, times gamma, the sums
    // of g and g * xhat that dx needs.
    double* s_dy = acc;
    double* s_dyx = acc + cols;
    std::fill(acc, acc + 2 * cols, 0.0);
    for (index_t r = 0; r < rows; ++r)
        for (index_t j = 0; j < cols; ++j) {
            const index_t i = r * cols + j;
            s_dy[j] += dy[i];
            s_dyx[j] += double(dy[i]) * double(xhat[i]);
        }
    for (index_t j = 0; j < cols; ++j) {
        if (dgamma) dgamma[j] = static_cast<float>(s_dyx[j]);
        if (dbeta) dbeta[j] = static_cast<float>(s_dy[j]);
    }
    if (!dx) return;
    if (!batch_stats) {
        for (index_t r = 0; r < rows; ++r)
            for (index_t j = 0; j < cols; ++j) {
                const index_t i = r * cols + j;
                dx[i] = (gamma ? dy[i] * gamma[j] : dy[i]) * inv_std[j];
            }
        return;
    }
    // mean(g) = gamma * mean(dy), mean(g * xhat) = gamma * mean(dy * xhat).
    float* mg = tmp;
    float* mgx = tmp + cols;
    for (index_t j = 0; j < cols; ++j) {
        const double gj = gamma ? double(gamma[j]) : 1.0;
        mg[j] = static_cast<float>(gj * s_dy[j] / double(rows));
        mgx[j] = static_cast<float>(gj * s_dyx[j] / double(rows));
    }
    for (index_t r = 0; r < rows; ++r)
        for (index_t j = 0; j < cols; ++j) {
            const index_t i = r * cols + j;
            const float g = gamma ? dy[i] * gamma[j] : dy[i];
            dx[i] = inv_std[j] * (g - mg[j] - xhat[i] * mgx[j]);
        }
}

}  // namespace pynn::bn
