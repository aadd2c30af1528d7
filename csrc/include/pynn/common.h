// Shared basics for every kernel: the index type, the host/device qualifier and the
// activation codes. Kernels see only raw pointers and sizes; shape checks live in the bindings.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PYNN_HD __host__ __device__ __forceinline__
#else
#define PYNN_HD inline
#endif

namespace pynn {

using index_t = std::int64_t;

// Element-wise activations a Dense layer can fuse. The numbers are part of the binding
// contract (pynn/backend/cpu_backend.py maps names to them): append, never renumber.
enum class Activation : int {
    linear = 0,
    relu = 1,
    leaky_relu = 2,  // param = negative slope (Keras default 0.2)
    elu = 3,         // param = alpha (Keras default 1.0)
    gelu = 4,        // tanh approximation, the form cuBLASLt's epilogue uses
    sigmoid = 5,
    tanh = 6,
};

}  // namespace pynn
