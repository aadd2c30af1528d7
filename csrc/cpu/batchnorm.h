// Batch normalization over the rows of a (rows x cols) row-major matrix, for the native
// engine: the formulas of pynn/layers/normalization.py (Keras'), column statistics in double.
#pragma once
#include "pynn/common.h"

namespace pynn::bn {

// Scratch: `acc` holds 2 * cols doubles, `tmp` 2 * cols floats (the engine owns them: no
// allocation per step).

// mean[j], var[j] (biased) of column j over the rows.
void column_stats(const float* z, index_t rows, index_t cols, float* mean, float* var,
                  double* acc);

// xhat = (z - mean) * inv_std (written when xhat != nullptr; may be z), then
// out = gamma * xhat + beta (gamma, beta nullable: 1 and 0; out may be z or xhat).
void normalize(const float* z, index_t rows, index_t cols, const float* mean,
               const float* inv_std, const float* gamma, const float* beta, float* xhat,
               float* out);

// From dy (gradient w.r.t. out): dgamma = sum dy * xhat, dbeta = sum dy (each nullable), and
// dx (may alias dy): with batch statistics inv_std * (g - mean(g) - xhat * mean(g * xhat)),
// g = dy * gamma; with fixed (moving) statistics g * inv_std.
void backward(const float* dy, const float* xhat, index_t rows, index_t cols,
              const float* inv_std, const float* gamma, bool batch_stats, float* dgamma,
              float* dbeta, float* dx, double* acc, float* tmp);

// Layer normalization (per_row): each row's mean m (0 when not centred) and inv_std[r] =
// 1 / sqrt(var + epsilon) over its cols (double sums), then xhat = (z - m) * inv_std[r] and
// out = gamma * xhat + beta (gamma, beta nullable).
void row_normalize(const float* z, index_t rows, index_t cols, bool centred, double epsilon,
                   const float* gamma, const float* beta, float* inv_std, float* xhat,
                   float* out);

// Its gradients from dy: dgamma, dbeta (column sums, nullable), and dx (may alias dy) =
// inv_std[r] * (g - mean_r(g) - xhat * mean_r(g * xhat)), g = dy * gamma, without mean_r(g)
// when not centred.
void row_backward(const float* dy, const float* xhat, index_t rows, index_t cols,
                  bool centred, const float* inv_std, const float* gamma, float* dgamma,
                  float* dbeta, float* dx, double* acc);

}  // namespace pynn::bn
