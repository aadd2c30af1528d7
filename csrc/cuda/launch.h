// Launch helpers shared by the .cu files: grid sizes for grid-stride loops and the error
// check every launch goes through (a CUDA error becomes a std::runtime_error naming the
// kernel; pybind11 turns it into a Python RuntimeError).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "pynn/common.h"

namespace pynn::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill the GPU, never more than needed.
inline unsigned blocks_for(index_t n) {
    const index_t b = (n + kThreads - 1) / kThreads;
    return static_cast<unsigned>(std::max<index_t>(1, std::min<index_t>(b, 65535 * 8)));
}

inline void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) {
        // A failed runtime call is also recorded as the thread's last error; clear it so the
        // next, unrelated launch check does not report it again.
        (void)cudaGetLastError();
        throw std::runtime_error(std::string("pynn._cuda.") + what + ": " + cudaGetErrorString(err));
    }
}

// After a <<<...>>> launch: configuration errors (and sticky errors of earlier work).
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

}  // namespace pynn::cuda
