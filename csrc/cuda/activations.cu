// Activation kernels of the CUDA backend: element-wise forward/backward through the formulas
// of math/activations.h (shared with the CPU), the Dense epilogue (bias + activation after a
// cuBLAS GEMM, in place or into a second array) and row softmax, one warp per row.
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/warp.cuh"
#include "math/activations.h"

namespace pynn::cuda {
namespace {

__global__ void activation_forward_kernel(Activation act, float param, const float* z, float* y,
                                          index_t n) {
    for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
         i += index_t(gridDim.x) * blockDim.x)
        y[i] = math::activate(act, z[i], param);
}

__global__ void activation_backward_kernel(Activation act, float param, const float* z,
                                           const float* y, const float* dy, float* dz, index_t n) {
    for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
         i += index_t(gridDim.x) * blockDim.x)
        dz[i] = dy[i] * math::activation_grad(act, z ? z[i] : 0.f, y[i], param);
}

// y nullptr: c = act(c + bias); else c = c + bias and y = act(c).
__global__ void bias_activation_kernel(float* c, const float* bias, float* y, index_t rows,
                                       index_t cols, Activation act, float param) {
    const index_t n = rows * cols;
    for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
         i += index_t(gridDim.x) * blockDim.x) {
        const float v = bias ? c[i] + bias[i % cols] : c[i];
        if (!y) {
            c[i] = math::activate(act, v, param);
            continue;
        }
        if (bias) c[i] = v;
        y[i] = math::activate(act, v, param);
    }
}

__global__ void softmax_forward_kernel(const float* z, float* y, index_t rows, index_t cols) {
    const int lane = threadIdx.x % kWarp;
    for (index_t r = first_row(); r < rows; r += row_stride()) {
        const float* zr = z + r * cols;
        float* yr = y + r * cols;
        float m;
        const float inv = 1.f / row_exp_sum(zr, cols, lane, &m);
        // Each lane reads z[j] before writing y[j]: y may alias z.
        for (index_t j = lane; j < cols; j += kWarp) yr[j] = expf(zr[j] - m) * inv;
    }
}

__global__ void softmax_backward_kernel(const float* y, const float* dy, float* dz, index_t rows,
                                        index_t cols) {
    const int lane = threadIdx.x % kWarp;
    for (index_t r = first_row(); r < rows; r += row_stride()) {
        const float* yr = y + r * cols;
        const float* dyr = dy + r * cols;
        double dot = 0.0;  // in double, as the CPU kernel: wide rows lose no bits
        for (index_t j = lane; j < cols; j += kWarp) dot += double(dyr[j]) * double(yr[j]);
        const float d = static_cast<float>(warp_sum(dot));
        float* dzr = dz + r * cols;
        for (index_t j = lane; j < cols; j += kWarp) dzr[j] = yr[j] * (dyr[j] - d);
    }
}

unsigned row_blocks(index_t rows) { return blocks_for(rows * kWarp); }

}  // namespace

void activation_forward(Activation act, float param, const float* z, float* y, index_t n,
                        cudaStream_t s) {
    if (n <= 0) return;
    activation_forward_kernel<<<blocks_for(n), kThreads, 0, s>>>(act, param, z, y, n);
    check_launch("activation_forward");
}

void activation_backward(Activation act, float param, const float* z, const float* y,
                         const float* dy, float* dz, index_t n, cudaStream_t s) {
    if (n <= 0) return;
    activation_backward_kernel<<<blocks_for(n), kThreads, 0, s>>>(act, param, z, y, dy, dz, n);
    check_launch("activation_backward");
}

void bias_activation(float* c, const float* bias, index_t rows, index_t cols, Activation act,
                     float param, cudaStream_t s) {
    if (rows <= 0 || cols <= 0 || (!bias && act == Activation::linear)) return;
    bias_activation_kernel<<<blocks_for(rows * cols), kThreads, 0, s>>>(c, bias, nullptr, rows,
                                                                         cols, act, param);
    check_launch("bias_activation");
}

void bias_activation_split(float* c, const float* bias, float* y, index_t rows, index_t cols,
                           Activation act, float param, cudaStream_t s) {
    if (rows <= 0 || cols <= 0) return;
    bias_activation_kernel<<<blocks_for(rows * cols), kThreads, 0, s>>>(c, bias, y, rows, cols,
                                                                         act, param);
    check_launch("bias_activation_split");
}

void softmax_forward(const float* z, float* y, index_t rows, index_t cols, cudaStream_t s) {
    if (rows <= 0 || cols <= 0) return;
    softmax_forward_kernel<<<row_blocks(rows), kThreads, 0, s>>>(z, y, rows, cols);
    check_launch("softmax_forward");
}

void softmax_backward(const float* y, const float* dy, float* dz, index_t rows, index_t cols,
                      cudaStream_t s) {
    if (rows <= 0 || cols <= 0) return;
    softmax_backward_kernel<<<row_blocks(rows), kThreads, 0, s>>>(y, dy, dz, rows, cols);
    check_launch("softmax_backward");
}

}  // namespace pynn::cuda
