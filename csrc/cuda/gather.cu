// The training engine's per-batch kernels: gathering a shuffled batch's rows and labels, and
// counting the rows a classifier gets right (sparse accuracy), on the device.
#include <cstdint>

#include "cuda/kernels.h"
#include "cuda/launch.h"

namespace pynn::cuda {
namespace {

// One thread per element of the batch: consecutive threads read consecutive floats of a row.
__global__ void gather_rows_kernel(const float* src, const std::int64_t* idx, float* out,
                                   index_t rows, index_t cols) {
    const index_t n = rows * cols;
    for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
         i += index_t(gridDim.x) * blockDim.x) {
        const index_t r = i / cols, c = i - r * cols;
        out[i] = src[idx[r] * cols + c];
    }
}

template <class Label>
__global__ void gather_labels_kernel(const Label* labels, const std::int64_t* idx,
                                     std::int32_t* out, index_t rows) {
    for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < rows;
         i += index_t(gridDim.x) * blockDim.x) {
        const long long v = static_cast<long long>(labels[idx[i]]);
        out[i] = (v < INT32_MIN || v > INT32_MAX) ? -1 : static_cast<std::int32_t>(v);
    }
}

// One thread per row (the engine's classifiers have few classes per row).
__global__ void argmax_hits_kernel(const float* logits, const std::int32_t* labels, index_t rows,
                                   index_t cols, unsigned long long* hits) {
    unsigned long long mine = 0;
    for (index_t r = blockIdx.x * index_t(blockDim.x) + threadIdx.x; r < rows;
         r += index_t(gridDim.x) * blockDim.x) {
        const float* z = logits + r * cols;
        index_t best = 0;
        float top = z[0];
        for (index_t j = 1; j < cols && !isnan(top); ++j)
            if (z[j] > top || isnan(z[j])) top = z[j], best = j;
        mine += best == labels[r];
    }
    if (mine) atomicAdd(hits, mine);
}

}  // namespace

void gather_rows(const float* src, const std::int64_t* idx, float* out, index_t rows,
                 index_t cols, cudaStream_t s) {
    if (rows <= 0 || cols <= 0) return;
    gather_rows_kernel<<<blocks_for(rows * cols), kThreads, 0, s>>>(src, idx, out, rows, cols);
    check_launch("gather_rows");
}

template <class Label>
void gather_labels(const Label* labels, const std::int64_t* idx, std::int32_t* out,
                   index_t rows, cudaStream_t s) {
    if (rows <= 0) return;
    gather_labels_kernel<<<blocks_for(rows), kThreads, 0, s>>>(labels, idx, out, rows);
    check_launch("gather_labels");
}
template void gather_labels<std::int32_t>(const std::int32_t*, const std::int64_t*,
                                          std::int32_t*, index_t, cudaStream_t);
template void gather_labels<std::int64_t>(const std::int64_t*, const std::int64_t*,
                                          std::int32_t*, index_t, cudaStream_t);

void count_argmax_hits(const float* logits, const std::int32_t* labels, index_t rows,
                       index_t cols, unsigned long long* hits, cudaStream_t s) {
    if (rows <= 0 || cols <= 0) return;
    argmax_hits_kernel<<<blocks_for(rows), kThreads, 0, s>>>(logits, labels, rows, cols, hits);
    check_launch("count_argmax_hits");
}

}  // namespace pynn::cuda
