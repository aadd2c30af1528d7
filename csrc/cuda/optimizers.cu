// Optimizer updates of the CUDA backend: one fused element-wise pass per parameter through
// the per-element steps of math/optimizers.h (shared with the CPU). Per-call scalars (bias
// correction, 1 - beta) are formed on the host in double, as on the CPU.
#include <cmath>

#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "math/optimizers.h"

namespace pynn::cuda {
namespace {

#define PYNN_GRID_STRIDE(i, n)                                                              \
    for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < (n);                \
         i += index_t(gridDim.x) * blockDim.x)

__global__ void sgd_kernel(float* w, const float* g, float* vel, index_t n, float lr,
                           float momentum, bool nesterov) {
    PYNN_GRID_STRIDE(i, n) {
        if (vel) math::sgd_momentum_step(w[i], g[i], vel[i], lr, momentum, nesterov);
        else math::sgd_step(w[i], g[i], lr);
    }
}

__global__ void adam_kernel(float* w, const float* g, float* m, float* v, index_t n, float lr_t,
                            float omb1, float omb2, float eps, float lr_wd) {
    PYNN_GRID_STRIDE(i, n) {
        float wi = w[i];
        if (lr_wd != 0.f) math::decay_step(wi, lr_wd);
        math::adam_step(wi, g[i], m[i], v[i], lr_t, omb1, omb2, eps);
        w[i] = wi;
    }
}

__global__ void amsgrad_kernel(float* w, const float* g, float* m, float* v, float* vh,
                               index_t n, float lr_t, float omb1, float omb2, float eps,
                               float lr_wd) {
    PYNN_GRID_STRIDE(i, n) {
        float wi = w[i];
        if (lr_wd != 0.f) math::decay_step(wi, lr_wd);
        math::amsgrad_step(wi, g[i], m[i], v[i], vh[i], lr_t, omb1, omb2, eps);
        w[i] = wi;
    }
}

__global__ void nadam_kernel(float* w, const float* g, float* m, float* v, index_t n,
                             math::NadamCoefficients c, float omb1, float omb2, float eps,
                             float lr_wd) {
    PYNN_GRID_STRIDE(i, n) {
        float wi = w[i];
        if (lr_wd != 0.f) math::decay_step(wi, lr_wd);
        math::nadam_step(wi, g[i], m[i], v[i], c.c_m, c.c_g, c.c_v, omb1, omb2, eps);
        w[i] = wi;
    }
}

__global__ void adamax_kernel(float* w, const float* g, float* m, float* u, index_t n,
                              float lr_t, float omb1, float beta2, float eps, float lr_wd) {
    PYNN_GRID_STRIDE(i, n) {
        float wi = w[i];
        if (lr_wd != 0.f) math::decay_step(wi, lr_wd);
        math::adamax_step(wi, g[i], m[i], u[i], lr_t, omb1, beta2, eps);
        w[i] = wi;
    }
}

__global__ void lion_kernel(float* w, const float* g, float* m, index_t n, float lr, float beta1,
                            float omb1, float beta2, float omb2, float lr_wd) {
    PYNN_GRID_STRIDE(i, n) {
        float wi = w[i];
        if (lr_wd != 0.f) math::decay_step(wi, lr_wd);
        math::lion_step(wi, g[i], m[i], lr, beta1, omb1, beta2, omb2);
        w[i] = wi;
    }
}

__global__ void adadelta_kernel(float* w, const float* g, float* acc_g, float* acc_d, index_t n,
                                float lr, float rho, float omr, float eps, float lr_wd) {
    PYNN_GRID_STRIDE(i, n) {
        float wi = w[i];
        if (lr_wd != 0.f) math::decay_step(wi, lr_wd);
        math::adadelta_step(wi, g[i], acc_g[i], acc_d[i], lr, rho, omr, eps);
        w[i] = wi;
    }
}

__global__ void rmsprop_kernel(float* w, const float* g, float* vel, float* mom, index_t n,
                               float lr, float rho, float omr, float momentum, float eps) {
    PYNN_GRID_STRIDE(i, n) {
        if (mom) math::rmsprop_momentum_step(w[i], g[i], vel[i], mom[i], lr, rho, omr, momentum, eps);
        else math::rmsprop_step(w[i], g[i], vel[i], lr, rho, omr, eps);
    }
}

__global__ void adagrad_kernel(float* w, const float* g, float* acc, index_t n, float lr,
                               float eps) {
    PYNN_GRID_STRIDE(i, n) math::adagrad_step(w[i], g[i], acc[i], lr, eps);
}

#undef PYNN_GRID_STRIDE

// The multi-parameter updates: block b updates blocks[b]'s range of one parameter.
__global__ void sgd_all_kernel(const ParamSlots* params, const ParamBlock* blocks, float lr,
                               float momentum, bool nesterov) {
    const ParamBlock blk = blocks[blockIdx.x];
    const ParamSlots p = params[blk.param];
    float* vel = momentum == 0.f ? nullptr : p.slot[0];  // as sgd_update
    for (index_t i = blk.begin + threadIdx.x; i < blk.end; i += blockDim.x) {
        if (vel) math::sgd_momentum_step(p.w[i], p.g[i], vel[i], lr, momentum, nesterov);
        else math::sgd_step(p.w[i], p.g[i], lr);
    }
}

__global__ void adam_all_kernel(const ParamSlots* params, const ParamBlock* blocks, float lr_t,
                                float omb1, float omb2, float eps, float lr_wd, bool amsgrad) {
    const ParamBlock blk = blocks[blockIdx.x];
    const ParamSlots p = params[blk.param];
    for (index_t i = blk.begin + threadIdx.x; i < blk.end; i += blockDim.x) {
        float wi = p.w[i];
        if (lr_wd != 0.f) math::decay_step(wi, lr_wd);
        if (amsgrad)
            math::amsgrad_step(wi, p.g[i], p.slot[0][i], p.slot[1][i], p.slot[2][i], lr_t, omb1,
                               omb2, eps);
        else
            math::adam_step(wi, p.g[i], p.slot[0][i], p.slot[1][i], lr_t, omb1, omb2, eps);
        p.w[i] = wi;
    }
}

// Adam's step size with both bias corrections, formed in double as on the CPU.
float adam_rate(float lr, double beta1, double beta2, std::int64_t step) {
    const double t = static_cast<double>(step);
    return static_cast<float>(double(lr) * std::sqrt(1.0 - std::pow(beta2, t)) /
                              (1.0 - std::pow(beta1, t)));
}

}  // namespace

void sgd_update(float* w, const float* g, float* velocity, index_t n, float lr, float momentum,
                bool nesterov, cudaStream_t s) {
    if (n <= 0) return;
    sgd_kernel<<<blocks_for(n), kThreads, 0, s>>>(w, g, momentum == 0.f ? nullptr : velocity, n,
                                                   lr, momentum, nesterov);
    check_launch("sgd_update");
}

void adam_update(float* w, const float* g, float* m, float* v, index_t n, float lr, double beta1,
                 double beta2, float eps, float weight_decay, std::int64_t step, float* v_hat,
                 cudaStream_t s) {
    if (n <= 0) return;
    const float lr_t = adam_rate(lr, beta1, beta2, step);
    if (v_hat) {
        amsgrad_kernel<<<blocks_for(n), kThreads, 0, s>>>(w, g, m, v, v_hat, n, lr_t,
                                                           static_cast<float>(1.0 - beta1),
                                                           static_cast<float>(1.0 - beta2), eps,
                                                           lr * weight_decay);
        check_launch("adam_update (amsgrad)");
        return;
    }
    adam_kernel<<<blocks_for(n), kThreads, 0, s>>>(w, g, m, v, n, lr_t,
                                                    static_cast<float>(1.0 - beta1),
                                                    static_cast<float>(1.0 - beta2), eps,
                                                    lr * weight_decay);
    check_launch("adam_update");
}

void sgd_update_all(const ParamSlots* params, const ParamBlock* blocks, index_t n_blocks,
                    float lr, float momentum, bool nesterov, cudaStream_t s) {
    if (n_blocks <= 0) return;
    sgd_all_kernel<<<static_cast<unsigned>(n_blocks), kThreads, 0, s>>>(params, blocks, lr,
                                                                         momentum, nesterov);
    check_launch("sgd_update_all");
}

void adam_update_all(const ParamSlots* params, const ParamBlock* blocks, index_t n_blocks,
                     float lr, double beta1, double beta2, float eps, float weight_decay,
                     std::int64_t step, bool amsgrad, cudaStream_t s) {
    if (n_blocks <= 0) return;
    adam_all_kernel<<<static_cast<unsigned>(n_blocks), kThreads, 0, s>>>(
        params, blocks, adam_rate(lr, beta1, beta2, step), static_cast<float>(1.0 - beta1),
        static_cast<float>(1.0 - beta2), eps, lr * weight_decay, amsgrad);
    check_launch("adam_update_all");
}

void rmsprop_update(float* w, const float* g, float* velocity, float* momentum_buf, index_t n,
                    float lr, double rho, float momentum, float eps, cudaStream_t s) {
    if (n <= 0) return;
    rmsprop_kernel<<<blocks_for(n), kThreads, 0, s>>>(w, g, velocity,
                                                       momentum > 0.f ? momentum_buf : nullptr, n,
                                                       lr, static_cast<float>(rho),
                                                       static_cast<float>(1.0 - rho), momentum, eps);
    check_launch("rmsprop_update");
}

void adagrad_update(float* w, const float* g, float* accumulator, index_t n, float lr, float eps,
                    cudaStream_t s) {
    if (n <= 0) return;
    adagrad_kernel<<<blocks_for(n), kThreads, 0, s>>>(w, g, accumulator, n, lr, eps);
    check_launch("adagrad_update");
}

void nadam_update(float* w, const float* g, float* m, float* v, index_t n, float lr,
                  double beta1, double beta2, float eps, float weight_decay, std::int64_t step,
                  cudaStream_t s) {
    if (n <= 0) return;
    nadam_kernel<<<blocks_for(n), kThreads, 0, s>>>(
        w, g, m, v, n, math::nadam_coefficients(lr, beta1, beta2, step),
        static_cast<float>(1.0 - beta1), static_cast<float>(1.0 - beta2), eps, lr * weight_decay);
    check_launch("nadam_update");
}

void adamax_update(float* w, const float* g, float* m, float* u, index_t n, float lr,
                   double beta1, double beta2, float eps, float weight_decay, std::int64_t step,
                   cudaStream_t s) {
    if (n <= 0) return;
    const float lr_t = static_cast<float>(double(lr) / (1.0 - std::pow(beta1, double(step))));
    adamax_kernel<<<blocks_for(n), kThreads, 0, s>>>(w, g, m, u, n, lr_t,
                                                      static_cast<float>(1.0 - beta1),
                                                      static_cast<float>(beta2), eps,
                                                      lr * weight_decay);
    check_launch("adamax_update");
}

void lion_update(float* w, const float* g, float* m, index_t n, float lr, double beta1,
                 double beta2, float weight_decay, cudaStream_t s) {
    if (n <= 0) return;
    lion_kernel<<<blocks_for(n), kThreads, 0, s>>>(
        w, g, m, n, lr, static_cast<float>(beta1), static_cast<float>(1.0 - beta1),
        static_cast<float>(beta2), static_cast<float>(1.0 - beta2), lr * weight_decay);
    check_launch("lion_update");
}

void adadelta_update(float* w, const float* g, float* accumulated_grad, float* accumulated_delta,
                     index_t n, float lr, double rho, float eps, float weight_decay,
                     cudaStream_t s) {
    if (n <= 0) return;
    adadelta_kernel<<<blocks_for(n), kThreads, 0, s>>>(
        w, g, accumulated_grad, accumulated_delta, n, lr, static_cast<float>(rho),
        static_cast<float>(1.0 - rho), eps, lr * weight_decay);
    check_launch("adadelta_update");
}

}  // namespace pynn::cuda
