// Warp-level reductions for the row kernels (one warp per row: softmax, cross-entropy).
#pragma once

namespace pynn::cuda {

constexpr int kWarp = 32;

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

}  // namespace pynn::cuda
