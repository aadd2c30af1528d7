// Inverted dropout for the CUDA training engine: y = x * mask with the counter-based masks of
// math/dropout.h (the CPU kernels, the CPU engine and the numpy reference draw the same bits),
// regenerated wherever needed (forward, and backward on the gradient), never stored.
#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "math/dropout.h"

namespace pynn::cuda {
namespace {

__global__ void dropout_kernel(const float* x, float* y, index_t n, std::uint64_t key,
                               std::uint64_t threshold, float scale) {
    for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
         i += index_t(gridDim.x) * blockDim.x) {
        const bool keep = math::dropout_bits(key, static_cast<std::uint32_t>(i)) >= threshold;
        y[i] = x[i] * (keep ? scale : 0.f);
    }
}

}  // namespace

void dropout_apply(const float* x, float* y, index_t n, double rate, std::uint64_t seed,
                   std::uint64_t step, cudaStream_t s) {
    if (n <= 0) return;
    dropout_kernel<<<blocks_for(n), kThreads, 0, s>>>(
        x, y, n, math::dropout_key(seed, step), math::dropout_threshold(rate),
        math::dropout_scale(rate));
    check_launch("dropout_apply");
}

}  // namespace pynn::cuda
