// cuBLAS through dlopen (see cublas.h). The soname carries the CUDA major version this module
// was built with: a cuBLAS of another major release may expect another runtime.
#include "cuda/cublas.h"

#include <dlfcn.h>

#include <climits>
#include <mutex>
#include <stdexcept>

#include "cuda/launch.h"

namespace pynn::cuda {
namespace {

using Status = int;  // cublasStatus_t: 0 is CUBLAS_STATUS_SUCCESS
using Create = Status (*)(void**);
using Destroy = Status (*)(void*);
using SetStream = Status (*)(void*, cudaStream_t);
using Sgemm = Status (*)(void*, int, int, int, int, int, const float*, const float*, int,
                         const float*, int, const float*, float*, int);
constexpr int kOpN = 0, kOpT = 1;  // cublasOperation_t

struct Library {
    std::string error;
    Create create = nullptr;
    Destroy destroy = nullptr;
    SetStream set_stream = nullptr;
    Sgemm sgemm = nullptr;
};

// Loaded at the first call that finds it; a failure is tried again at the next call (CuPy
// may load the library meanwhile). A library once loaded stays (never dlclose'd). Returned by
// value: a thread retrying may rewrite the error meanwhile.
Library library() {
    static Library lib;
    static bool loaded = false;
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    if (loaded) return lib;
    const std::string name = "libcublas.so." + std::to_string(CUDART_VERSION / 1000);
    // Found by its soname when CuPy loaded it already, else on the loader's path.
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char* why = dlerror();
        lib.error = "cuBLAS (" + name + ") could not be loaded: " + (why ? why : "unknown");
        return lib;
    }
    lib.create = reinterpret_cast<Create>(dlsym(h, "cublasCreate_v2"));
    lib.destroy = reinterpret_cast<Destroy>(dlsym(h, "cublasDestroy_v2"));
    lib.set_stream = reinterpret_cast<SetStream>(dlsym(h, "cublasSetStream_v2"));
    lib.sgemm = reinterpret_cast<Sgemm>(dlsym(h, "cublasSgemm_v2"));
    lib.error = (!lib.create || !lib.destroy || !lib.set_stream || !lib.sgemm)
                    ? name + " lacks the cuBLAS v2 entry points" : "";
    loaded = lib.error.empty();
    return lib;
}

void blas_check(Status st, const char* what) {
    if (st != 0)
        throw std::runtime_error(std::string("pynn._cuda.DenseEngine: cuBLAS ") + what +
                                 " failed with status " + std::to_string(st));
}

}  // namespace

std::string Blas::unavailable_reason() { return library().error; }

Blas::Blas() {
    const Library lib = library();
    if (!lib.error.empty()) throw std::runtime_error(lib.error);
    blas_check(lib.create(&handle_), "cublasCreate");
}

Blas::~Blas() {
    if (handle_) library().destroy(handle_);
}

void Blas::gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const float* a,
                const float* b, float* c, bool accumulate, cudaStream_t s) {
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
        throw std::length_error("pynn._cuda.DenseEngine: a GEMM dimension exceeds cuBLAS' int");
    if (m == 0 || n == 0) return;
    const Library lib = library();
    blas_check(lib.set_stream(handle_, s), "cublasSetStream");
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B and A swap places,
    // each read with its row length as the leading dimension.
    const float one = 1.f, beta = accumulate ? 1.f : 0.f;
    const int lda = static_cast<int>(trans_a ? m : k), ldb = static_cast<int>(trans_b ? k : n);
    blas_check(lib.sgemm(handle_, trans_b ? kOpT : kOpN, trans_a ? kOpT : kOpN,
                         static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &one, b,
                         ldb, a, lda, &beta, c, static_cast<int>(n)),
               "cublasSgemm");
}

}  // namespace pynn::cuda
