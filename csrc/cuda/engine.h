// The CUDA training engine: whole mini-batch steps of a Dense stack on the GPU, driven from
// C++ with no Python per batch. Each step gathers the shuffled batch on the device, runs the
// forward GEMMs (cuBLAS) with pynn's bias + activation kernel, the fused loss and gradient,
// the backward GEMMs, bias gradients and the optimizer's fused update of every parameter in
// one launch, all on one stream: ~6 launches a layer, a few more a step, and no
// synchronisation until the chunk's losses are read back. Launches bound the small models'
// steps (~7 us each on an H200's host), so the engine makes few. The
// kernels are the cuda backend's (tested against the numpy reference); the engine only orders
// them. Buffers are allocated once, for the largest batch.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/cublas.h"
#include "cuda/kernels.h"
#include "pynn/common.h"

namespace pynn::cuda {

enum class EngineLoss : int { xent_sparse, xent_dense, mse, mae, huber, bce_logits };
enum class EngineOptimizer : int { sgd, adam };

struct EngineLayer {
    index_t in = 0, out = 0;
    Activation act = Activation::linear;  // the output layer's softmax/sigmoid: fused in the loss
    float act_param = 0.f;
    bool trainable = true;
    float* w = nullptr;  // (in, out), row-major, the model's own device array
    float* b = nullptr;  // (out,) or nullptr without a bias
    std::vector<float*> w_slots, b_slots;  // the optimizer's, in its slot order
};

struct EngineHyper {
    std::vector<float> lr;  // one per step of the call (a schedule), or one for all
    double beta1 = 0.9, beta2 = 0.999;
    float eps = 1e-7f, weight_decay = 0.f, momentum = 0.f, loss_param = 0.f;
    bool nesterov = false, amsgrad = false;
    std::int64_t step0 = 0;  // the optimizer's steps before this call
};

// Labels of sparse losses: int32 or int64 rows; targets of the others: float32 (N, out).
struct EngineData {
    const float* x = nullptr;
    index_t rows = 0, cols = 0;
    const void* y = nullptr;
    bool y_int64 = false;
};

class DeviceBuffer {
public:
    explicit DeviceBuffer(size_t bytes);
    ~DeviceBuffer();
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    template <class T>
    T* as() const { return static_cast<T*>(ptr_); }

private:
    void* ptr_ = nullptr;
};

class GpuDenseEngine {
public:
    // device: the GPU the layers' arrays live on; every call runs there (this module's CUDA
    // runtime keeps its own current device, which CuPy's Device(n).use() does not set).
    GpuDenseEngine(std::vector<EngineLayer> layers, EngineLoss loss, EngineOptimizer opt,
                   index_t max_batch, bool count_hits, int device);

    // Steps over batches [first, last) of `order` (host int64 rows of x, each checked in
    // range); returns each batch's (loss sum, loss count, hits). Synchronises once, at the end.
    struct BatchLog {
        double loss_sum;
        index_t rows;
        unsigned long long hits;
    };
    std::vector<BatchLog> train(const EngineData& data, const std::int64_t* order,
                                index_t order_len, index_t first, index_t last, index_t batch,
                                const EngineHyper& hyper, cudaStream_t s);

    // Inverted dropout on layer `layer`'s activated output while training (-1: the inputs;
    // not the output layer), rate in [0, 1) (0: none), with the counter-based masks of
    // math/dropout.h for this seed, the step being the optimizer's 0-based step count (as
    // the layer path's Dropout and the CPU engine: the same masks).
    void set_dropout(int layer, double rate, std::uint64_t seed);

private:
    struct Drop {
        double rate = 0.0;
        std::uint64_t seed = 0;
        std::unique_ptr<DeviceBuffer> out;  // max_batch x width: the masked values
        bool on() const { return rate > 0.0; }
    };

    void step(const EngineData& data, const std::int64_t* idx, index_t rows, float lr,
              std::int64_t t, const EngineHyper& hyper, DeviceLoss* loss,
              unsigned long long* hits, cudaStream_t s);

    std::vector<EngineLayer> layers_;
    EngineLoss loss_;
    EngineOptimizer opt_;
    index_t max_batch_;
    bool count_hits_;
    index_t lowest_trainable_;
    int device_;
    std::unique_ptr<Blas> blas_;
    std::unique_ptr<DeviceBuffer> x_, labels_, targets_, idx_;
    std::vector<std::unique_ptr<DeviceBuffer>> z_, y_, gw_, gb_;
    std::vector<Drop> drops_;  // per layer (the last one never drops)
    Drop input_drop_;
    std::unique_ptr<DeviceBuffer> grad_a_, grad_b_;
    std::unique_ptr<DeviceBuffer> logs_;  // DeviceLoss per batch, then hit counts
    // The trainable parameters and the optimizer launch's blocks (ParamSlots, ParamBlock)
    std::unique_ptr<DeviceBuffer> params_, param_blocks_;
    index_t n_param_blocks_ = 0;
    index_t idx_capacity_ = 0, logs_capacity_ = 0;
};

}  // namespace pynn::cuda
