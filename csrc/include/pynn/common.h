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
    gelu_tanh = 4,   // gelu's tanh approximation (Keras' approximate=True, PyTorch's 'tanh')
    sigmoid = 5,
    tanh = 6,
    silu = 7,          // z * sigmoid(z), Keras' silu/swish
    softplus = 8,      // log(1 + exp(z))
    softsign = 9,      // z / (1 + |z|)
    selu = 10,         // Keras' fixed alpha and scale
    relu6 = 11,        // min(max(z, 0), 6)
    hard_sigmoid = 12, // clip(z / 6 + 1/2, 0, 1), Keras 3's (and ONNX HardSigmoid's with alpha 1/6)
    hard_silu = 13,    // z * hard_sigmoid(z), Keras' hard_silu/hard_swish
    mish = 14,         // z * tanh(softplus(z))
    gelu = 15,         // z * Phi(z), Phi the normal distribution (erf): Keras' and PyTorch's gelu
    exponential = 16,  // exp(z), Keras' (a positive output: counts, rates)
};

// One past the last code: the range the bindings accept.
constexpr int kActivationCount = 17;

// Whether the derivative needs the pre-activation z: for the others it is written through
// the output y = f(z), so training keeps only y.
PYNN_HD constexpr bool activation_needs_z(Activation a) {
    return a == Activation::gelu || a == Activation::gelu_tanh || a == Activation::silu ||
           a == Activation::hard_silu || a == Activation::mish;
}

}  // namespace pynn
