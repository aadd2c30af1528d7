// cuBLAS, loaded at run time: the training engine's GEMMs. pynn._cuda does not link cuBLAS,
// so it still imports where the library is missing (the engine then reports why and fit
// trains layer by layer); CuPy, which the cuda backend needs anyway, has usually loaded it.
// Only the few entry points used are declared here (their C ABI is stable across releases),
// so building needs no cuBLAS headers.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "pynn/common.h"

namespace pynn::cuda {

class Blas {
public:
    // The library's handle for the current device; throws std::runtime_error naming why
    // cuBLAS cannot be used.
    Blas();
    ~Blas();
    Blas(const Blas&) = delete;
    Blas& operator=(const Blas&) = delete;

    // Row-major float32 C (m x n) = op(A) op(B) (+ C when accumulate), on stream s. A is
    // (m x k) stored as given, or (k x m) when trans_a; B likewise (k x n), or (n x k).
    void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const float* a,
              const float* b, float* c, bool accumulate, cudaStream_t s);

    // Empty when cuBLAS can be loaded, else the reason (for Python's fallback message).
    static std::string unavailable_reason();

private:
    void* handle_ = nullptr;
};

}  // namespace pynn::cuda
