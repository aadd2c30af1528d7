// Host stand-ins for what the CUDA engine calls: the CUDA runtime (cuda_runtime.h here), the
// CUDA kernels of csrc/cuda/kernels.h (their loops run serially, with the shared formulas of
// csrc/math) and cuBLAS' column-major SGEMM, reached through the engine's own dlopen/dlsym
// code (cublas.cpp is compiled with dlopen/dlsym/dlerror renamed to the mock_ ones below).
// With them csrc/cuda/engine.cpp and cublas.cpp run unchanged on a machine without a GPU.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda/kernels.h"
#include "math/activations.h"
#include "math/dropout.h"
#include "math/optimizers.h"

// ---- the runtime -----------------------------------------------------------------------------
static int current_device = 0;

cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
    *ptr = std::malloc(bytes);
    return *ptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* ptr) {
    std::free(ptr);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind,
                            cudaStream_t) {
    std::memcpy(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t bytes, cudaStream_t) {
    std::memset(dst, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetDevice(int* device) {
    *device = current_device;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    current_device = device;
    return cudaSuccess;
}
cudaError_t cudaGetLastError() { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t) { return "mock CUDA error"; }

// ---- cuBLAS: the column-major contract, its argument checks included --------------------
namespace {

int sgemm(void* handle, int transa, int transb, int m, int n, int k, const float* alpha,
          const float* a, int lda, const float* b, int ldb, const float* beta, float* c,
          int ldc) {
    const int rows_a = transa ? k : m, rows_b = transb ? n : k;
    if (!handle || m < 0 || n < 0 || k < 0 || lda < std::max(1, rows_a) ||
        ldb < std::max(1, rows_b) || ldc < std::max(1, m) || transa < 0 || transa > 1 ||
        transb < 0 || transb > 1)
        return 7;  // CUBLAS_STATUS_INVALID_VALUE
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
            double sum = 0.0;
            for (int l = 0; l < k; ++l) {
                const float av = transa ? a[l + static_cast<long>(i) * lda]
                                        : a[i + static_cast<long>(l) * lda];
                const float bv = transb ? b[j + static_cast<long>(l) * ldb]
                                        : b[l + static_cast<long>(j) * ldb];
                sum += double(av) * double(bv);
            }
            float& out = c[i + static_cast<long>(j) * ldc];
            out = static_cast<float>(*alpha * sum) + (*beta == 0.f ? 0.f : *beta * out);
        }
    return 0;
}
int create(void** handle) {
    *handle = std::malloc(1);
    return 0;
}
int destroy(void* handle) {
    std::free(handle);
    return 0;
}
int set_stream(void*, cudaStream_t) { return 0; }

int library_handle;

}  // namespace

extern "C" void* mock_dlopen(const char* name, int) {
    return std::string(name) == "libcublas.so.13" ? &library_handle : nullptr;
}
extern "C" void* mock_dlsym(void*, const char* name) {
    const std::string s(name);
    if (s == "cublasCreate_v2") return reinterpret_cast<void*>(&create);
    if (s == "cublasDestroy_v2") return reinterpret_cast<void*>(&destroy);
    if (s == "cublasSetStream_v2") return reinterpret_cast<void*>(&set_stream);
    if (s == "cublasSgemm_v2") return reinterpret_cast<void*>(&sgemm);
    return nullptr;
}
extern "C" char* mock_dlerror() { return nullptr; }

// ---- the kernels (csrc/cuda/*.cu's loops, one thread) ---------------------------------------
namespace pynn::cuda {

void activation_forward(Activation act, float param, const float* z, float* y, index_t n,
                        cudaStream_t) {
    for (index_t i = 0; i < n; ++i) y[i] = math::activate(act, z[i], param);
}

void activation_backward(Activation act, float param, const float* z, const float* y,
                         const float* dy, float* dz, index_t n, cudaStream_t) {
    for (index_t i = 0; i < n; ++i)
        dz[i] = dy[i] * math::activation_grad(act, z ? z[i] : 0.f, y[i], param);
}

void bias_activation(float* c, const float* bias, index_t rows, index_t cols, Activation act,
                     float param, cudaStream_t) {
    for (index_t i = 0; i < rows * cols; ++i)
        c[i] = math::activate(act, bias ? c[i] + bias[i % cols] : c[i], param);
}

void bias_activation_split(float* c, const float* bias, float* y, index_t rows, index_t cols,
                           Activation act, float param, cudaStream_t) {
    for (index_t i = 0; i < rows * cols; ++i) {
        if (bias) c[i] += bias[i % cols];
        y[i] = math::activate(act, c[i], param);
    }
}

void bias_grad(const float* dz, float* db, index_t rows, index_t cols, cudaStream_t) {
    for (index_t j = 0; j < cols; ++j) {
        double s = 0.0;
        for (index_t r = 0; r < rows; ++r) s += dz[r * cols + j];
        db[j] = static_cast<float>(s);
    }
}

void softmax_xent_sparse_into(const float* logits, const std::int32_t* labels, float* dlogits,
                              index_t rows, index_t cols, float grad_scale, DeviceLoss* out,
                              cudaStream_t) {
    for (index_t r = 0; r < rows; ++r) {
        const float* z = logits + r * cols;
        float* d = dlogits + r * cols;
        const std::int32_t label = labels[r];
        if (label < 0 || label >= cols) {
            if (r < out->bad_row) out->bad_row = r;
            for (index_t j = 0; j < cols; ++j) d[j] = 0.f;
            continue;
        }
        float m = -INFINITY;
        for (index_t j = 0; j < cols; ++j) m = std::fmax(m, z[j]);
        double s = 0.0;
        for (index_t j = 0; j < cols; ++j) s += std::exp(z[j] - m);
        const float zl = z[label], k = grad_scale / static_cast<float>(s);
        for (index_t j = 0; j < cols; ++j)
            d[j] = std::exp(z[j] - m) * k - (j == label ? grad_scale : 0.f);
        out->sum += (double(m) - double(zl)) + std::log(s);
    }
}

void softmax_xent_dense_into(const float* logits, const float* targets, float* dlogits,
                             index_t rows, index_t cols, float grad_scale, DeviceLoss* out,
                             cudaStream_t) {
    for (index_t r = 0; r < rows; ++r) {
        const float* z = logits + r * cols;
        const float* t = targets + r * cols;
        float m = -INFINITY;
        for (index_t j = 0; j < cols; ++j) m = std::fmax(m, z[j]);
        double s = 0.0, tsum = 0.0, cross = 0.0;
        for (index_t j = 0; j < cols; ++j) {
            s += std::exp(z[j] - m);
            tsum += t[j];
            cross += double(t[j]) * (double(m) - double(z[j]));
        }
        const float k = static_cast<float>(tsum / s) * grad_scale;
        for (index_t j = 0; j < cols; ++j)
            dlogits[r * cols + j] = std::exp(z[j] - m) * k - t[j] * grad_scale;
        out->sum += cross + tsum * std::log(s);
    }
}

void regression_loss_into(RegressionLoss kind, const float* pred, const float* target,
                          float* grad, index_t n, float delta, float grad_scale, DeviceLoss* out,
                          cudaStream_t) {
    for (index_t i = 0; i < n; ++i) {
        const float d = pred[i] - target[i];
        if (kind == RegressionLoss::mse) {
            grad[i] = 2.f * grad_scale * d;
            out->sum += double(d) * double(d);
        } else if (kind == RegressionLoss::mae) {
            grad[i] = d > 0.f ? grad_scale : (d < 0.f ? -grad_scale : d * 0.f);
            out->sum += std::fabs(double(d));
        } else if (!(std::fabs(d) > delta)) {
            grad[i] = d * grad_scale;
            out->sum += 0.5 * double(d) * double(d);
        } else {
            grad[i] = d > 0.f ? delta * grad_scale : -delta * grad_scale;
            out->sum += double(delta) * (std::fabs(double(d)) - 0.5 * double(delta));
        }
    }
}

void bce_loss_into(const float* pred, const float* target, float* grad, index_t n,
                   bool from_logits, float, float grad_scale, DeviceLoss* out, cudaStream_t) {
    if (!from_logits) std::abort();  // (the engine fuses the sigmoid: logits only)
    for (index_t i = 0; i < n; ++i) {
        const float p = pred[i], t = target[i];
        grad[i] = (math::sigmoid(p) - t) * grad_scale;
        out->sum += double(std::fmax(p, 0.f)) - double(p) * double(t) +
                    double(std::log1p(std::exp(-std::fabs(p))));
    }
}

void gather_rows(const float* src, const std::int64_t* idx, float* out, index_t rows,
                 index_t cols, cudaStream_t) {
    for (index_t r = 0; r < rows; ++r)
        std::memcpy(out + r * cols, src + idx[r] * cols, cols * sizeof(float));
}

template <class Label>
void gather_labels(const Label* labels, const std::int64_t* idx, std::int32_t* out,
                   index_t rows, cudaStream_t) {
    for (index_t i = 0; i < rows; ++i) {
        const long long v = static_cast<long long>(labels[idx[i]]);
        out[i] = (v < INT32_MIN || v > INT32_MAX) ? -1 : static_cast<std::int32_t>(v);
    }
}
template void gather_labels<std::int32_t>(const std::int32_t*, const std::int64_t*,
                                          std::int32_t*, index_t, cudaStream_t);
template void gather_labels<std::int64_t>(const std::int64_t*, const std::int64_t*,
                                          std::int32_t*, index_t, cudaStream_t);

void count_argmax_hits(const float* logits, const std::int32_t* labels, index_t rows,
                       index_t cols, unsigned long long* hits, cudaStream_t) {
    for (index_t r = 0; r < rows; ++r) {
        const float* z = logits + r * cols;
        index_t best = 0;
        float top = z[0];
        for (index_t j = 1; j < cols && !std::isnan(top); ++j)
            if (z[j] > top || std::isnan(z[j])) top = z[j], best = j;
        *hits += best == labels[r];
    }
}

void dropout_apply(const float* x, float* y, index_t n, double rate, std::uint64_t seed,
                   std::uint64_t step, cudaStream_t) {
    const std::uint64_t key = math::dropout_key(seed, step);
    const std::uint64_t threshold = math::dropout_threshold(rate);
    const float scale = math::dropout_scale(rate);
    for (index_t i = 0; i < n; ++i)
        y[i] = x[i] * (math::dropout_bits(key, static_cast<std::uint32_t>(i)) >= threshold
                           ? scale
                           : 0.f);
}

void sgd_update(float* w, const float* g, float* velocity, index_t n, float lr, float momentum,
                bool nesterov, cudaStream_t) {
    for (index_t i = 0; i < n; ++i) {
        if (momentum != 0.f && velocity)
            math::sgd_momentum_step(w[i], g[i], velocity[i], lr, momentum, nesterov);
        else
            math::sgd_step(w[i], g[i], lr);
    }
}

void adam_update(float* w, const float* g, float* m, float* v, index_t n, float lr, double beta1,
                 double beta2, float eps, float weight_decay, std::int64_t step, float* v_hat,
                 cudaStream_t) {
    const double t = static_cast<double>(step);
    const float lr_t = static_cast<float>(double(lr) * std::sqrt(1.0 - std::pow(beta2, t)) /
                                          (1.0 - std::pow(beta1, t)));
    const float b1 = static_cast<float>(1.0 - beta1), b2 = static_cast<float>(1.0 - beta2);
    for (index_t i = 0; i < n; ++i) {
        float wi = w[i];
        if (lr * weight_decay != 0.f) math::decay_step(wi, lr * weight_decay);
        if (v_hat)
            math::amsgrad_step(wi, g[i], m[i], v[i], v_hat[i], lr_t, b1, b2, eps);
        else
            math::adam_step(wi, g[i], m[i], v[i], lr_t, b1, b2, eps);
        w[i] = wi;
    }
}


// The one-launch updates: each block's range through the single-parameter update above.
void sgd_update_all(const ParamSlots* params, const ParamBlock* blocks, index_t n_blocks,
                    float lr, float momentum, bool nesterov, cudaStream_t s) {
    for (index_t b = 0; b < n_blocks; ++b) {
        const ParamBlock& k = blocks[b];
        const ParamSlots& p = params[k.param];
        sgd_update(p.w + k.begin, p.g + k.begin, p.slot[0] ? p.slot[0] + k.begin : nullptr,
                   k.end - k.begin, lr, momentum, nesterov, s);
    }
}

void adam_update_all(const ParamSlots* params, const ParamBlock* blocks, index_t n_blocks,
                     float lr, double beta1, double beta2, float eps, float weight_decay,
                     std::int64_t step, bool amsgrad, cudaStream_t s) {
    for (index_t b = 0; b < n_blocks; ++b) {
        const ParamBlock& k = blocks[b];
        const ParamSlots& p = params[k.param];
        adam_update(p.w + k.begin, p.g + k.begin, p.slot[0] + k.begin, p.slot[1] + k.begin,
                    k.end - k.begin, lr, beta1, beta2, eps, weight_decay, step,
                    amsgrad ? p.slot[2] + k.begin : nullptr, s);
    }
}

}  // namespace pynn::cuda
