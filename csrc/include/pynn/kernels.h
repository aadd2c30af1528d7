// Element-wise, reduction, loss and optimizer kernels of the CPU backend. Row-major float32,
// contiguous; sizes are element counts or (rows, cols). All formulas follow Keras 3 and match
// pynn/backend/numpy_backend.py, which is their reference.
#pragma once
#include <cstdint>

#include "pynn/common.h"

namespace pynn {

// ---- activations -------------------------------------------------------------------------
void activation_forward(Activation act, float param, const float* z, float* y, index_t n);
// dz = dy * f'(.): y is the forward output; z (pre-activation) is read only where
// activation_needs_z (gelu, silu, hard_silu, mish) and may be nullptr otherwise. dz may alias dy.
void activation_backward(Activation act, float param, const float* z, const float* y,
                         const float* dy, float* dz, index_t n);
void softmax_forward(const float* z, float* y, index_t rows, index_t cols);  // y may alias z
// dz = y * (dy - sum(dy * y, row)); dz may alias dy.
void softmax_backward(const float* y, const float* dy, float* dz, index_t rows, index_t cols);

// ---- dropout (math/dropout.h's counter-based masks) ----------------------------------------
// y[i] = x[i] * mask(seed, step, i): 0 with probability rate, else 1 / (1 - rate); x == nullptr
// writes the mask itself. y may alias x. n < 2^32 (the element index is 32-bit).
void dropout_apply(const float* x, float* y, index_t n, double rate, std::uint64_t seed,
                   std::uint64_t step);

// ---- weight penalties ----------------------------------------------------------------------
// Returns l1 * sum|w| + l2 * sum w^2; with g, also g += l1 * sign(w) + 2 * l2 * w (Keras' L1/L2).
double regularize(const float* w, float* g, index_t n, double l1, double l2);

// ---- reductions --------------------------------------------------------------------------
void bias_grad(const float* dz, float* db, index_t rows, index_t cols);  // db = sum over rows
// Whether x[0:n] holds no NaN and no infinity (one threaded pass).
bool all_finite(const float* x, index_t n);
bool all_finite(const double* x, index_t n);

// ---- losses: return the SUM of per-element (per-row for softmax CE) losses in double and
// write grad = d(sum)/d(input) * grad_scale. Targets have the prediction's shape, except
// sparse labels (one int32 per row, checked in range by the caller). grad may alias pred or
// target; dlogits may alias logits (not targets).
double softmax_xent_sparse(const float* logits, const std::int32_t* labels, float* dlogits,
                           index_t rows, index_t cols, float grad_scale);
double softmax_xent_dense(const float* logits, const float* targets, float* dlogits,
                          index_t rows, index_t cols, float grad_scale);
double mse_loss(const float* pred, const float* target, float* grad, index_t n, float grad_scale);
double mae_loss(const float* pred, const float* target, float* grad, index_t n, float grad_scale);
double huber_loss(const float* pred, const float* target, float* grad, index_t n, float delta,
                  float grad_scale);
// from_logits: pred are logits (stable form); else probabilities clipped to [eps, 1 - eps].
double bce_loss(const float* pred, const float* target, float* grad, index_t n, bool from_logits,
                float eps, float grad_scale);

// ---- optimizers: one fused pass, in place --------------------------------------------------
// w, g and the slot buffers must not overlap (the loops use __restrict pointers).
void sgd_update(float* w, const float* g, float* velocity, index_t n, float lr, float momentum,
                bool nesterov);  // velocity may be nullptr when momentum == 0
// Adam (weight_decay = 0) and AdamW (decoupled: w -= lr * weight_decay * w first).
// step is the 1-based update count, used for bias correction.
// beta1, beta2 and rho are double so that 1 - beta is formed before rounding to float, as
// Keras does (1.f - 0.999f is 1.3e-5 off float(1 - 0.999), which shows in parity tests).
// v_hat: AMSGrad's running maximum of v (Adam's amsgrad=True), or nullptr for plain Adam.
void adam_update(float* w, const float* g, float* m, float* v, index_t n, float lr, double beta1,
                 double beta2, float eps, float weight_decay, std::int64_t step,
                 float* v_hat = nullptr);
// The optimizers below also apply Keras 3's decoupled weight decay in the same pass
// (w -= lr * weight_decay * w before the step; 0 = off), as AdamW does.
void nadam_update(float* w, const float* g, float* m, float* v, index_t n, float lr,
                  double beta1, double beta2, float eps, float weight_decay, std::int64_t step);
void adamax_update(float* w, const float* g, float* m, float* u, index_t n, float lr,
                   double beta1, double beta2, float eps, float weight_decay, std::int64_t step);
void lion_update(float* w, const float* g, float* m, index_t n, float lr, double beta1,
                 double beta2, float weight_decay);
void adadelta_update(float* w, const float* g, float* accumulated_grad, float* accumulated_delta,
                     index_t n, float lr, double rho, float eps, float weight_decay);
void rmsprop_update(float* w, const float* g, float* velocity, float* momentum_buf, index_t n,
                    float lr, double rho, float momentum, float eps);  // momentum_buf nullable if momentum == 0
void adagrad_update(float* w, const float* g, float* accumulator, index_t n, float lr, float eps);

}  // namespace pynn
