// Loss kernels of the CUDA backend: value and gradient in one pass, the CPU formulas of
// cpu/losses.cpp. Each block reduces its partial loss (double) and adds it atomically to one
// device scalar, which the host reads back after the kernel (so these calls synchronise; the
// last bits of the sum depend on the order the blocks finish in). Softmax cross-entropy runs
// one warp per row; an out-of-range label records the lowest such row on the device, which
// the host turns into std::out_of_range.
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "cuda/launch.h"
#include "cuda/warp.cuh"
#include "math/activations.h"

namespace pynn::cuda {
namespace {

using LossResult = DeviceLoss;

// A host thread's device scalars, one per device, freed when the thread ends (a program
// that starts a thread per fit does not leak one per thread). At process exit the runtime
// may be gone before the main thread's are freed: cudaFree's error then is ignored.
struct ThreadSlots {
    std::vector<LossResult*> per_device;
    ~ThreadSlots() {
        for (LossResult* p : per_device)
            if (p) cudaFree(p);  // (unified addressing: from any current device)
    }
};

// The device scalar a loss call reduces into: one per host thread and device, allocated at
// the first call and kept (no allocation per call). A call is complete (synchronised) before
// it returns, so one thread's calls never share the slot concurrently, whatever their streams.
class ResultSlot {
public:
    ResultSlot(cudaStream_t s, const char* what) : s_(s), what_(what) {
        int device = 0;
        check(cudaGetDevice(&device), what);
        thread_local ThreadSlots thread_slots;
        auto& slots = thread_slots.per_device;
        if (static_cast<size_t>(device) >= slots.size()) slots.resize(device + 1, nullptr);
        if (!slots[device]) check(cudaMalloc(reinterpret_cast<void**>(&slots[device]), sizeof(LossResult)), what);
        d_ = slots[device];
        const LossResult init{0.0, LLONG_MAX};
        check(cudaMemcpyAsync(d_, &init, sizeof init, cudaMemcpyHostToDevice, s), what);
    }
    LossResult* device() { return d_; }
    LossResult read() {
        LossResult h{};
        check(cudaMemcpyAsync(&h, d_, sizeof h, cudaMemcpyDeviceToHost, s_), what_);
        check(cudaStreamSynchronize(s_), what_);
        return h;
    }

private:
    cudaStream_t s_;
    const char* what_;
    LossResult* d_ = nullptr;
};

// Loss grids stop at a few blocks per SM's worth: the grid-stride loops cover any size, and
// fewer blocks mean fewer atomic adds into the one scalar.
constexpr unsigned kMaxLossBlocks = 1024;
unsigned loss_blocks(index_t n) { return std::min(blocks_for(n), kMaxLossBlocks); }

// Adds the block's per-thread partial sums into out->sum (one atomic per block).
__device__ void block_add(double v, LossResult* out) {
    __shared__ double warp_part[kThreads / kWarp];
    v = warp_sum(v);
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    if (lane == 0) warp_part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < blockDim.x / kWarp ? warp_part[lane] : 0.0;
        v = warp_sum(v);
        if (lane == 0) atomicAdd(&out->sum, v);
    }
}

// Per row: m = max z, s = sum exp(z - m); loss = (m - z[label]) + log s (as the CPU's);
// dlogits = (exp(z - m) / s - onehot(label)) * grad_scale. dlogits may alias logits: z[label]
// is read (by every lane) before the row is rewritten, and each lane rewrites only its own j.
__global__ void xent_sparse_kernel(const float* logits, const std::int32_t* labels,
                                   float* dlogits, index_t rows, index_t cols, float grad_scale,
                                   LossResult* out) {
    const int lane = threadIdx.x % kWarp;
    double loss = 0.0;
    for (index_t r = first_row(); r < rows; r += row_stride()) {
        const float* z = logits + r * cols;
        float* d = dlogits + r * cols;
        const std::int32_t label = labels[r];
        if (label < 0 || label >= cols) {
            if (lane == 0) atomicMin(&out->bad_row, static_cast<long long>(r));
            // (a zero gradient: the engine's later steps must not read what was there)
            for (index_t j = lane; j < cols; j += kWarp) d[j] = 0.f;
            continue;
        }
        const float z_label = z[label];
        float m;
        const float s = row_exp_sum(z, cols, lane, &m);
        __syncwarp();  // every lane has read z[label] and the row before any lane writes
        const float k = grad_scale / s;
        for (index_t j = lane; j < cols; j += kWarp)
            d[j] = expf(z[j] - m) * k - (j == label ? grad_scale : 0.f);
        if (lane == 0) loss += (double(m) - double(z_label)) + log(double(s));
    }
    block_add(loss, out);
}

// Per row, with T = sum t: loss = sum t_j (m - z_j) + T log s; dlogits = (softmax(z) T - t) *
// grad_scale. dlogits may alias logits (not targets).
__global__ void xent_dense_kernel(const float* logits, const float* targets, float* dlogits,
                                  index_t rows, index_t cols, float grad_scale, LossResult* out) {
    const int lane = threadIdx.x % kWarp;
    double loss = 0.0;
    for (index_t r = first_row(); r < rows; r += row_stride()) {
        const float* z = logits + r * cols;
        const float* t = targets + r * cols;
        float* d = dlogits + r * cols;
        float m = -INFINITY;
        for (index_t j = lane; j < cols; j += kWarp) m = fmaxf(m, z[j]);
        m = warp_max(m);
        double s = 0.0, tsum = 0.0, cross = 0.0;  // (in double, as the CPU's)
        for (index_t j = lane; j < cols; j += kWarp) {
            s += expf(z[j] - m);
            tsum += t[j];
            cross += double(t[j]) * (double(m) - double(z[j]));
        }
        s = warp_sum(s);
        tsum = warp_sum(tsum);
        cross = warp_sum(cross);
        const float k = static_cast<float>(tsum / s) * grad_scale;
        for (index_t j = lane; j < cols; j += kWarp)
            d[j] = expf(z[j] - m) * k - t[j] * grad_scale;
        if (lane == 0) loss += cross + tsum * log(double(s));
    }
    block_add(loss, out);
}

__global__ void regression_kernel(RegressionLoss kind, const float* pred, const float* target,
                                  float* grad, index_t n, float delta, float grad_scale,
                                  LossResult* out) {
    double loss = 0.0;
    for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
         i += index_t(gridDim.x) * blockDim.x) {
        const float d = pred[i] - target[i];
        switch (kind) {
            case RegressionLoss::mse:
                grad[i] = 2.f * grad_scale * d;
                loss += double(d) * double(d);
                break;
            case RegressionLoss::mae:  // (d * 0: a NaN error keeps a NaN gradient)
                grad[i] = d > 0.f ? grad_scale : (d < 0.f ? -grad_scale : d * 0.f);
                loss += fabs(double(d));
                break;
            case RegressionLoss::huber: {
                const float ad = fabsf(d);
                if (!(ad > delta)) {  // (a NaN error takes this branch: NaN loss and gradient)
                    grad[i] = d * grad_scale;
                    loss += 0.5 * double(d) * double(d);
                } else {
                    grad[i] = d > 0.f ? delta * grad_scale : -delta * grad_scale;
                    loss += double(delta) * (double(ad) - 0.5 * double(delta));
                }
                break;
            }
        }
    }
    block_add(loss, out);
}

// from_logits: loss = max(x, 0) - x t + log1p(exp(-|x|)), grad = sigmoid(x) - t.
// Probabilities: clipped to [eps, 1 - eps]; the clip's gradient is zero outside.
__global__ void bce_kernel(const float* pred, const float* target, float* grad, index_t n,
                           bool from_logits, float eps, float grad_scale, LossResult* out) {
    double loss = 0.0;
    const float hi = 1.f - eps;
    for (index_t i = blockIdx.x * index_t(blockDim.x) + threadIdx.x; i < n;
         i += index_t(gridDim.x) * blockDim.x) {
        const float p = pred[i], t = target[i];
        if (from_logits) {
            grad[i] = (math::sigmoid(p) - t) * grad_scale;
            loss += double(fmaxf(p, 0.f)) - double(p) * double(t) + double(log1pf(expf(-fabsf(p))));
        } else {
            // std::min/max's order, as the CPU kernel: fminf/fmaxf would turn a NaN p into
            // eps (a finite loss, which TerminateOnNaN would miss)
            const float lo = p < eps ? eps : p;
            const float pc = hi < lo ? hi : lo;
            const float q = 1.f - pc;
            grad[i] = (p > eps && p < hi) ? (pc - t) / (pc * q) * grad_scale : 0.f;
            loss += -(double(t) * double(logf(pc)) + (1.0 - double(t)) * double(logf(q)));
        }
    }
    block_add(loss, out);
}

unsigned row_blocks(index_t rows) { return loss_blocks(rows * kWarp); }

}  // namespace

// ---- launches adding into a device DeviceLoss (the training engine's, no synchronisation) --
void softmax_xent_sparse_into(const float* logits, const std::int32_t* labels, float* dlogits,
                              index_t rows, index_t cols, float grad_scale, DeviceLoss* out,
                              cudaStream_t s) {
    if (rows <= 0 || cols <= 0) return;  // (the callers refuse labels without classes)
    xent_sparse_kernel<<<row_blocks(rows), kThreads, 0, s>>>(logits, labels, dlogits, rows, cols,
                                                              grad_scale, out);
    check_launch("softmax_xent_sparse");
}

void softmax_xent_dense_into(const float* logits, const float* targets, float* dlogits,
                             index_t rows, index_t cols, float grad_scale, DeviceLoss* out,
                             cudaStream_t s) {
    if (rows <= 0 || cols <= 0) return;
    xent_dense_kernel<<<row_blocks(rows), kThreads, 0, s>>>(logits, targets, dlogits, rows, cols,
                                                             grad_scale, out);
    check_launch("softmax_xent_dense");
}

void regression_loss_into(RegressionLoss kind, const float* pred, const float* target,
                          float* grad, index_t n, float delta, float grad_scale, DeviceLoss* out,
                          cudaStream_t s) {
    if (n <= 0) return;
    regression_kernel<<<loss_blocks(n), kThreads, 0, s>>>(kind, pred, target, grad, n, delta,
                                                          grad_scale, out);
    check_launch("regression_loss");
}

void bce_loss_into(const float* pred, const float* target, float* grad, index_t n,
                   bool from_logits, float eps, float grad_scale, DeviceLoss* out,
                   cudaStream_t s) {
    if (n <= 0) return;
    bce_kernel<<<loss_blocks(n), kThreads, 0, s>>>(pred, target, grad, n, from_logits, eps,
                                                   grad_scale, out);
    check_launch("bce_loss");
}

// ---- the layer path's calls: the loss read back (synchronising) ---------------------------
double softmax_xent_sparse(const float* logits, const std::int32_t* labels, float* dlogits,
                           index_t rows, index_t cols, float grad_scale, cudaStream_t s) {
    if (rows > 0 && cols <= 0)  // every label is out of [0, 0), as the CPU binding says
        throw std::out_of_range("labels: expected class labels in [0, 0) (the logits have no "
                                "classes), got one at row 0");
    if (rows <= 0) return 0.0;
    ResultSlot slot(s, "softmax_xent_sparse");
    softmax_xent_sparse_into(logits, labels, dlogits, rows, cols, grad_scale, slot.device(), s);
    const LossResult r = slot.read();
    if (r.bad_row != LLONG_MAX)
        throw std::out_of_range("labels: expected class labels in [0, " + std::to_string(cols) +
                                "), got an out-of-range label at row " + std::to_string(r.bad_row));
    return r.sum;
}

double softmax_xent_dense(const float* logits, const float* targets, float* dlogits,
                          index_t rows, index_t cols, float grad_scale, cudaStream_t s) {
    if (rows <= 0 || cols <= 0) return 0.0;
    ResultSlot slot(s, "softmax_xent_dense");
    softmax_xent_dense_into(logits, targets, dlogits, rows, cols, grad_scale, slot.device(), s);
    return slot.read().sum;
}

double regression_loss(RegressionLoss kind, const float* pred, const float* target, float* grad,
                       index_t n, float delta, float grad_scale, cudaStream_t s) {
    if (n <= 0) return 0.0;
    ResultSlot slot(s, "regression_loss");
    regression_loss_into(kind, pred, target, grad, n, delta, grad_scale, slot.device(), s);
    return slot.read().sum;
}

double bce_loss(const float* pred, const float* target, float* grad, index_t n, bool from_logits,
                float eps, float grad_scale, cudaStream_t s) {
    if (n <= 0) return 0.0;
    ResultSlot slot(s, "bce_loss");
    bce_loss_into(pred, target, grad, n, from_logits, eps, grad_scale, slot.device(), s);
    return slot.read().sum;
}

}  // namespace pynn::cuda
