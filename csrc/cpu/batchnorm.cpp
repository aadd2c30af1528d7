// Batch normalization kernels of the native engine (batchnorm.h). Column reductions walk the
// rows in order with one double accumulator per column (row-major: the inner loop runs along
// a row, so it vectorises); the engine's batches are small enough (rows x cols of one layer)
// that one thread does them without the pool.
#include "cpu/batchnorm.h"

#include <algorithm>
#include <cmath>

namespace pynn::bn {

namespace {

// acc[j] = sum over rows of dy[., j], acc[cols + j] = of dy * xhat (in double): beta's and
// gamma's gradients (written where not nullptr), whatever the statistics were.
void column_sums(const float* dy, const float* xhat, index_t rows, index_t cols, float* dgamma,
                 float* dbeta, double* acc) {
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
}

// The sum of term(j) for j < n in double, in 8 interleaved partial sums added pairwise at the
// end: a row's sum in one chain waits on the adder's latency at every element (a column
// sum, as the batch normalisation's, has one chain per column already).
template <class Term>
double row_sum(index_t n, Term term) {
    double p[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    index_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; ++k) p[k] += term(j + k);
    for (int k = 0; j < n; ++j, ++k) p[k] += term(j);
    return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

}  // namespace

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
    column_sums(dy, xhat, rows, cols, dgamma, dbeta, acc);
    const double* s_dy = acc;
    const double* s_dyx = acc + cols;
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

void row_normalize(const float* z, index_t rows, index_t cols, bool centred, double epsilon,
                   const float* gamma, const float* beta, float* inv_std, float* xhat,
                   float* out) {
    for (index_t r = 0; r < rows; ++r) {
        const float* zr = z + r * cols;
        const double m =
            centred ? row_sum(cols, [&](index_t j) { return double(zr[j]); }) / double(cols) : 0.0;
        const double ss = row_sum(cols, [&](index_t j) {
            const double d = double(zr[j]) - m;
            return d * d;
        });
        const double inv = 1.0 / std::sqrt(ss / double(cols) + epsilon);
        inv_std[r] = static_cast<float>(inv);
        for (index_t j = 0; j < cols; ++j) {
            const float xh = static_cast<float>(double(zr[j]) - m) * inv_std[r];
            xhat[r * cols + j] = xh;
            float y = gamma ? xh * gamma[j] : xh;
            if (beta) y += beta[j];
            out[r * cols + j] = y;
        }
    }
}

void row_backward(const float* dy, const float* xhat, index_t rows, index_t cols,
                  bool centred, const float* inv_std, const float* gamma, float* dgamma,
                  float* dbeta, float* dx, double* acc) {
    column_sums(dy, xhat, rows, cols, dgamma, dbeta, acc);  // the gamma/beta gradients
    if (!dx) return;
    for (index_t r = 0; r < rows; ++r) {
        const index_t o = r * cols;
        auto g_at = [&](index_t j) { return gamma ? double(dy[o + j]) * gamma[j] : double(dy[o + j]); };
        const double sg = centred ? row_sum(cols, g_at) : 0.0;
        const double sgx = row_sum(cols, [&](index_t j) { return g_at(j) * double(xhat[o + j]); });
        const float mg = centred ? static_cast<float>(sg / double(cols)) : 0.f;
        const float mgx = static_cast<float>(sgx / double(cols));
        for (index_t j = 0; j < cols; ++j) {
            const float g = gamma ? dy[o + j] * gamma[j] : dy[o + j];
            dx[o + j] = inv_std[r] * (g - mg - xhat[o + j] * mgx);
        }
    }
}

}  // namespace pynn::bn
