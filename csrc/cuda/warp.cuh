// Warp-level reductions and row indexing for the row kernels (one warp per row: softmax,
// cross-entropy).
#pragma once
#include "pynn/common.h"

namespace pynn::cuda {

constexpr int kWarp = 32;

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Warp w of the grid handles rows w, w + warps, ...; its lanes stride over the columns. The
// row loop is warp-uniform, so every lane reaches the shuffles inside it.
__device__ __forceinline__ index_t first_row() {
    return (blockIdx.x * index_t(blockDim.x) + threadIdx.x) / kWarp;
}
__device__ __forceinline__ index_t row_stride() { return index_t(gridDim.x) * blockDim.x / kWarp; }

__device__ __forceinline__ float warp_max(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// A row's softmax statistics over the warp: returns s = sum_j exp(z[j] - m) and stores
// m = max_j z[j], both the same in every lane (the shared first pass of softmax and the
// sparse cross-entropy). The sum is kept in double, as the CPU's (csrc/cpu/softmax_row.h):
// in float its error grew with the row (~12 ulp at 10,000 classes).
__device__ __forceinline__ float row_exp_sum(const float* z, index_t cols, int lane, float* m_out) {
    float m = -INFINITY;
    for (index_t j = lane; j < cols; j += kWarp) m = fmaxf(m, z[j]);
    m = warp_max(m);
    double s = 0.0;
    for (index_t j = lane; j < cols; j += kWarp) s += expf(z[j] - m);
    *m_out = m;
    return static_cast<float>(warp_sum(s));
}

}  // namespace pynn::cuda
