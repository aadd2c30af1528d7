// The CUDA backend's kernels, host-callable: raw device pointers, sizes and the caller's
// stream (CuPy's current stream). Same contracts and formulas as the CPU kernels of
// pynn/kernels.h (the shared math lives in csrc/math/), so the numpy backend is the reference
// for both. Sizes are checked by the bindings; launch errors throw std::runtime_error.
// Functions returning a loss synchronise the stream to read it back (the layer path needs the
// number); everything else is asynchronous.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "pynn/common.h"

namespace pynn::cuda {

// ---- activations (element-wise over n floats; dz may alias dy, y may alias z) --------------
void activation_forward(Activation act, float param, const float* z, float* y, index_t n,
                        cudaStream_t s);
void activation_backward(Activation act, float param, const float* z, const float* y,
                         const float* dy, float* dz, index_t n, cudaStream_t s);
// The Dense epilogue after a GEMM: c[r, j] = act(c[r, j] + bias[j]) in place (bias nullable).
void bias_activation(float* c, const float* bias, index_t rows, index_t cols, Activation act,
                     float param, cudaStream_t s);
// The same in one pass keeping both values, for a backward that reads both (the training
// engine): c[r, j] += bias[j] (bias nullable), y[r, j] = act(c[r, j]).
void bias_activation_split(float* c, const float* bias, float* y, index_t rows, index_t cols,
                           Activation act, float param, cudaStream_t s);
void softmax_forward(const float* z, float* y, index_t rows, index_t cols, cudaStream_t s);
void softmax_backward(const float* y, const float* dy, float* dz, index_t rows, index_t cols,
                      cudaStream_t s);

// ---- reductions --------------------------------------------------------------------------
void bias_grad(const float* dz, float* db, index_t rows, index_t cols, cudaStream_t s);

// ---- losses: the SUM of the losses (double), grad = d(sum)/d(pred) * grad_scale -----------
// Labels are checked in range on the device: a label outside [0, cols) makes the call throw
// std::out_of_range after the kernel (the gradient is then unspecified).
double softmax_xent_sparse(const float* logits, const std::int32_t* labels, float* dlogits,
                           index_t rows, index_t cols, float grad_scale, cudaStream_t s);
double softmax_xent_dense(const float* logits, const float* targets, float* dlogits,
                          index_t rows, index_t cols, float grad_scale, cudaStream_t s);
enum class RegressionLoss : int { mse = 0, mae = 1, huber = 2 };
double regression_loss(RegressionLoss kind, const float* pred, const float* target, float* grad,
                       index_t n, float delta, float grad_scale, cudaStream_t s);
double bce_loss(const float* pred, const float* target, float* grad, index_t n, bool from_logits,
                float eps, float grad_scale, cudaStream_t s);

// ---- the training engine's variants: the loss sum added into out->sum on the device, no
// synchronisation; an out-of-range label's row goes to out->bad_row (atomic min). out starts
// as {0, LLONG_MAX}; its last bits depend on the order the blocks finish in.
struct DeviceLoss {
    double sum;
    long long bad_row;  // lowest row with a label out of range, or LLONG_MAX
};
void softmax_xent_sparse_into(const float* logits, const std::int32_t* labels, float* dlogits,
                              index_t rows, index_t cols, float grad_scale, DeviceLoss* out,
                              cudaStream_t s);
void softmax_xent_dense_into(const float* logits, const float* targets, float* dlogits,
                             index_t rows, index_t cols, float grad_scale, DeviceLoss* out,
                             cudaStream_t s);
void regression_loss_into(RegressionLoss kind, const float* pred, const float* target,
                          float* grad, index_t n, float delta, float grad_scale, DeviceLoss* out,
                          cudaStream_t s);
void bce_loss_into(const float* pred, const float* target, float* grad, index_t n,
                   bool from_logits, float eps, float grad_scale, DeviceLoss* out,
                   cudaStream_t s);

// ---- the training engine's batch gathers and accuracy count ---------------------------------
// out row i = src row idx[i] (cols floats each); idx holds rows of src, checked by the caller.
void gather_rows(const float* src, const std::int64_t* idx, float* out, index_t rows,
                 index_t cols, cudaStream_t s);
// out[i] = labels[idx[i]] as int32; a label beyond int32 becomes -1 (an out-of-range label).
template <class Label>
void gather_labels(const Label* labels, const std::int64_t* idx, std::int32_t* out,
                   index_t rows, cudaStream_t s);
// *hits += the rows whose first largest logit is at their label (numpy's argmax: a NaN wins).
void count_argmax_hits(const float* logits, const std::int32_t* labels, index_t rows,
                       index_t cols, unsigned long long* hits, cudaStream_t s);
// Inverted dropout, y[0:n] = x[0:n] * mask (in place when x == y): the masks of
// math/dropout.h for (seed, step), rate in [0, 1), n < 2^32 (the mask's index is 32-bit).
void dropout_apply(const float* x, float* y, index_t n, double rate, std::uint64_t seed,
                   std::uint64_t step, cudaStream_t s);

// ---- optimizers: one fused pass over each parameter, in place ------------------------------
void sgd_update(float* w, const float* g, float* velocity, index_t n, float lr, float momentum,
                bool nesterov, cudaStream_t s);
void adam_update(float* w, const float* g, float* m, float* v, index_t n, float lr, double beta1,
                 double beta2, float eps, float weight_decay, std::int64_t step, float* v_hat,
                 cudaStream_t s);  // v_hat: AMSGrad's max(v), or nullptr
void nadam_update(float* w, const float* g, float* m, float* v, index_t n, float lr,
                  double beta1, double beta2, float eps, float weight_decay, std::int64_t step,
                  cudaStream_t s);
void adamax_update(float* w, const float* g, float* m, float* u, index_t n, float lr,
                   double beta1, double beta2, float eps, float weight_decay, std::int64_t step,
                   cudaStream_t s);
void lion_update(float* w, const float* g, float* m, index_t n, float lr, double beta1,
                 double beta2, float weight_decay, cudaStream_t s);
void adadelta_update(float* w, const float* g, float* accumulated_grad, float* accumulated_delta,
                     index_t n, float lr, double rho, float eps, float weight_decay,
                     cudaStream_t s);
void rmsprop_update(float* w, const float* g, float* velocity, float* momentum_buf, index_t n,
                    float lr, double rho, float momentum, float eps, cudaStream_t s);
void adagrad_update(float* w, const float* g, float* accumulator, index_t n, float lr, float eps,
                    cudaStream_t s);

// ---- the training engine's optimizer step: every parameter in one launch -------------------
// A parameter, its gradient and its optimizer slots in the single-tensor update's order
// (nullptr where there is none: SGD's velocity without momentum, AMSGrad's max(v) without it).
struct ParamSlots {
    float* w;
    const float* g;
    float* slot[3];
    index_t n;
};
// One block of the launch: elements [begin, end) of params[param]. Both tables live on the
// device; the engine builds them once. The arithmetic is sgd_update's and adam_update's.
struct ParamBlock {
    index_t param, begin, end;
};
void sgd_update_all(const ParamSlots* params, const ParamBlock* blocks, index_t n_blocks,
                    float lr, float momentum, bool nesterov, cudaStream_t s);
void adam_update_all(const ParamSlots* params, const ParamBlock* blocks, index_t n_blocks,
                     float lr, double beta1, double beta2, float eps, float weight_decay,
                     std::int64_t step, bool amsgrad, cudaStream_t s);

}  // namespace pynn::cuda
