// Column sums (the bias gradient) of a row-major rows x cols matrix. A block covers 32
// adjacent columns (coalesced loads) with 8 row slices that meet in shared memory.
#include "cuda/kernels.h"
#include "cuda/launch.h"

namespace pynn::cuda {
namespace {

constexpr int kCols = 32, kSlices = kThreads / kCols;

__global__ void bias_grad_kernel(const float* dz, float* db, index_t rows, index_t cols) {
    __shared__ double part[kSlices][kCols];
    const int tx = threadIdx.x % kCols, ty = threadIdx.x / kCols;
    const index_t j = blockIdx.x * index_t(kCols) + tx;
    double s = 0.0;  // as the CPU kernel: double, so long columns lose no bits
    if (j < cols)
        for (index_t r = ty; r < rows; r += kSlices) s += dz[r * cols + j];
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && j < cols) {
        for (int q = 1; q < kSlices; ++q) s += part[q][tx];
        db[j] = static_cast<float>(s);
    }
}

}  // namespace

void bias_grad(const float* dz, float* db, index_t rows, index_t cols, cudaStream_t s) {
    if (cols <= 0) return;
    if (rows <= 0) {
        check(cudaMemsetAsync(db, 0, static_cast<size_t>(cols) * sizeof(float), s), "bias_grad");
        return;
    }
    const index_t blocks = (cols + kCols - 1) / kCols;
    if (blocks > 0x7fffffff) throw std::invalid_argument("bias_grad: too many columns");
    bias_grad_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(dz, db, rows, cols);
    check_launch("bias_grad");
}

}  // namespace pynn::cuda
