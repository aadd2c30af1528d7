// The CUDA training engine (engine.h): the step's launches in order, the buffers they use.
#include "cuda/engine.h"

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>
#include <utility>

#include "cuda/launch.h"

namespace pynn::cuda {

DeviceBuffer::DeviceBuffer(size_t bytes) {
    check(cudaMalloc(&ptr_, bytes < 4 ? 4 : bytes), "DenseEngine (allocating its buffers)");
}

DeviceBuffer::~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
}

namespace {

// Makes `device` current for this thread's CUDA runtime while it lives.
class DeviceGuard {
public:
    explicit DeviceGuard(int device) {
        check(cudaGetDevice(&previous_), "DenseEngine (reading the current device)");
        if (previous_ != device) check(cudaSetDevice(device), "DenseEngine (setting its device)");
    }
    ~DeviceGuard() {
        int now = previous_;
        if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = 0;
};

std::unique_ptr<DeviceBuffer> floats(index_t n) {
    return std::make_unique<DeviceBuffer>(static_cast<size_t>(n) * sizeof(float));
}

// Elements one block of the optimizer launch updates (8 per thread).
constexpr index_t kUpdateBlock = 8 * kThreads;

template <class T>
std::unique_ptr<DeviceBuffer> to_device(const std::vector<T>& host) {
    auto buffer = std::make_unique<DeviceBuffer>(host.size() * sizeof(T));
    check(cudaMemcpyAsync(buffer->template as<T>(), host.data(), host.size() * sizeof(T),
                          cudaMemcpyHostToDevice, nullptr),
          "DenseEngine (copying its tables)");
    check(cudaStreamSynchronize(nullptr), "DenseEngine (copying its tables)");
    return buffer;
}

bool fused_output(EngineLoss loss) {
    return loss == EngineLoss::xent_sparse || loss == EngineLoss::xent_dense ||
           loss == EngineLoss::bce_logits;
}

}  // namespace

GpuDenseEngine::GpuDenseEngine(std::vector<EngineLayer> layers, EngineLoss loss,
                               EngineOptimizer opt, index_t max_batch, bool count_hits,
                               int device)
    : layers_(std::move(layers)), loss_(loss), opt_(opt), max_batch_(max_batch),
      count_hits_(count_hits), device_(device) {
    if (layers_.empty()) throw std::invalid_argument("DenseEngine: no layers");
    if (max_batch_ < 1) throw std::invalid_argument("DenseEngine: batch size must be >= 1");
    const index_t L = static_cast<index_t>(layers_.size());
    lowest_trainable_ = L;
    index_t widest = 0;
    for (index_t l = 0; l < L; ++l) {
        const EngineLayer& layer = layers_[l];
        if (l > 0 && layer.in != layers_[l - 1].out)
            throw std::invalid_argument("DenseEngine: layer " + std::to_string(l) +
                                        " takes " + std::to_string(layer.in) + " inputs, the "
                                        "layer below gives " + std::to_string(layers_[l - 1].out));
        if (layer.trainable && lowest_trainable_ == L) lowest_trainable_ = l;
        // (the inputs' gradient is never formed: the layers' outputs bound every gradient)
        widest = std::max(widest, layer.out);
    }
    const bool sparse = loss_ == EngineLoss::xent_sparse;
    DeviceGuard on(device_);
    blas_ = std::make_unique<Blas>();
    x_ = floats(max_batch_ * layers_[0].in);
    if (sparse)
        labels_ = std::make_unique<DeviceBuffer>(static_cast<size_t>(max_batch_) * 4);
    else
        targets_ = floats(max_batch_ * layers_.back().out);
    for (index_t l = 0; l < L; ++l) {
        const EngineLayer& layer = layers_[l];
        const bool last = l == L - 1;
        z_.push_back(floats(max_batch_ * layer.out));
        // A separate activation output where the activation is not folded away.
        const bool keeps_y = layer.act != Activation::linear && !(last && fused_output(loss_));
        y_.push_back(keeps_y ? floats(max_batch_ * layer.out) : nullptr);
        gw_.push_back(layer.trainable ? floats(layer.in * layer.out) : nullptr);
        gb_.push_back(layer.trainable && layer.b ? floats(layer.out) : nullptr);
    }
    grad_a_ = floats(max_batch_ * widest);
    grad_b_ = floats(max_batch_ * widest);
    drops_.resize(L);

    // The optimizer's one launch: every trainable weight and bias, cut into blocks.
    std::vector<ParamSlots> params;
    auto add = [&](float* w, const float* g, const std::vector<float*>& slots, index_t n) {
        ParamSlots p{w, g, {nullptr, nullptr, nullptr}, n};
        for (size_t i = 0; i < slots.size() && i < 3; ++i) p.slot[i] = slots[i];
        params.push_back(p);
    };
    for (index_t l = 0; l < L; ++l) {
        const EngineLayer& layer = layers_[l];
        if (!layer.trainable) continue;
        add(layer.w, gw_[l]->as<float>(), layer.w_slots, layer.in * layer.out);
        if (layer.b) add(layer.b, gb_[l]->as<float>(), layer.b_slots, layer.out);
    }
    std::vector<ParamBlock> blocks;
    for (size_t p = 0; p < params.size(); ++p)
        for (index_t begin = 0; begin < params[p].n; begin += kUpdateBlock)
            blocks.push_back({static_cast<index_t>(p), begin,
                              std::min(params[p].n, begin + kUpdateBlock)});
    n_param_blocks_ = static_cast<index_t>(blocks.size());
    if (n_param_blocks_ > 0) {
        params_ = to_device(params);
        param_blocks_ = to_device(blocks);
    }
}

void GpuDenseEngine::set_dropout(int layer, double rate, std::uint64_t seed) {
    const index_t L = static_cast<index_t>(layers_.size());
    if (layer < -1 || layer + 1 >= L)
        throw std::invalid_argument("DenseEngine.set_dropout: layer must be in [-1, " +
                                    std::to_string(L - 1) + ") (-1: the inputs; no dropout "
                                    "after the output layer), got " + std::to_string(layer));
    if (!(rate >= 0.0 && rate < 1.0))
        throw std::invalid_argument("DenseEngine.set_dropout: rate must be in [0, 1), got " +
                                    std::to_string(rate));
    const index_t width = layer < 0 ? layers_[0].in : layers_[layer].out;
    if (rate > 0.0 && max_batch_ * width > index_t(0xffffffff))
        throw std::invalid_argument("DenseEngine.set_dropout: dropout masks cover at most "
                                    "2^32 - 1 elements per batch (batch size x units)");
    Drop& d = layer < 0 ? input_drop_ : drops_[layer];
    if (rate > 0.0 && !d.out) {  // allocated before anything changes: a failure leaves it be
        DeviceGuard on(device_);
        d.out = floats(max_batch_ * width);
    }
    d.rate = rate;
    d.seed = seed;
}

std::vector<GpuDenseEngine::BatchLog> GpuDenseEngine::train(
        const EngineData& data, const std::int64_t* order, index_t order_len, index_t first,
        index_t last, index_t batch, const EngineHyper& hyper, cudaStream_t s) {
    if (batch < 1 || batch > max_batch_)
        throw std::invalid_argument("DenseEngine.train: batch size " + std::to_string(batch) +
                                    " is outside [1, " + std::to_string(max_batch_) + "]");
    if (data.cols != layers_[0].in)
        throw std::invalid_argument("DenseEngine.train: x has " + std::to_string(data.cols) +
                                    " features, the model takes " + std::to_string(layers_[0].in));
    if (first < 0 || last < first)
        throw std::invalid_argument("DenseEngine.train: bad batch range");
    if (last > order_len / batch + (order_len % batch != 0))  // (before any product)
        throw std::invalid_argument("DenseEngine.train: batches beyond the order's rows");
    const index_t r0 = std::min(order_len, first * batch);
    const index_t r1 = std::max(r0, std::min(order_len, last * batch));  // (first == last: empty)
    const index_t n = last - first;
    if (hyper.lr.size() != 1 && static_cast<index_t>(hyper.lr.size()) != n)
        throw std::invalid_argument("DenseEngine.train: expected one learning rate, or one per "
                                    "step");
    // Every row the gathers will read, checked on a copy that is then what goes to the device
    // (another Python thread may write the caller's order while the GIL is released: checked,
    // then read again, an entry could change in between).
    const std::vector<std::int64_t> rows_used(order + r0, order + r1);
    for (const std::int64_t row : rows_used)
        if (row < 0 || row >= data.rows)
            throw std::out_of_range("DenseEngine.train: order holds row " + std::to_string(row) +
                                    ", x has " + std::to_string(data.rows));
    std::vector<BatchLog> out(n);
    if (n == 0) return out;
    DeviceGuard on(device_);
    if (!idx_ || idx_capacity_ < r1 - r0) {
        idx_.reset();
        idx_ = std::make_unique<DeviceBuffer>(static_cast<size_t>(r1 - r0) * 8);
        idx_capacity_ = r1 - r0;
    }
    if (!logs_ || logs_capacity_ < n) {
        logs_.reset();
        logs_ = std::make_unique<DeviceBuffer>(static_cast<size_t>(n) *
                                               (sizeof(DeviceLoss) + sizeof(unsigned long long)));
        logs_capacity_ = n;
    }
    auto* losses = logs_->as<DeviceLoss>();
    auto* hits = reinterpret_cast<unsigned long long*>(losses + logs_capacity_);
    std::vector<DeviceLoss> init(n, DeviceLoss{0.0, LLONG_MAX});
    check(cudaMemcpyAsync(losses, init.data(), n * sizeof(DeviceLoss), cudaMemcpyHostToDevice, s),
          "DenseEngine.train");
    check(cudaMemsetAsync(hits, 0, n * sizeof(unsigned long long), s), "DenseEngine.train");
    // (from pageable memory: staged before the call returns, so the vector may go after it)
    check(cudaMemcpyAsync(idx_->as<std::int64_t>(), rows_used.data(), (r1 - r0) * 8,
                          cudaMemcpyHostToDevice, s),
          "DenseEngine.train");
    for (index_t i = 0; i < n; ++i) {
        const index_t a = (first + i) * batch - r0, rows = std::min(batch, r1 - r0 - a);
        out[i].rows = rows;
        const float lr = hyper.lr.size() == 1 ? hyper.lr[0] : hyper.lr[i];
        step(data, idx_->as<std::int64_t>() + a, rows, lr, hyper.step0 + i + 1, hyper,
             losses + i, hits + i, s);
    }
    std::vector<DeviceLoss> sums(n);
    std::vector<unsigned long long> counts(n);
    check(cudaMemcpyAsync(sums.data(), losses, n * sizeof(DeviceLoss), cudaMemcpyDeviceToHost, s),
          "DenseEngine.train");
    check(cudaMemcpyAsync(counts.data(), hits, n * sizeof(unsigned long long),
                          cudaMemcpyDeviceToHost, s),
          "DenseEngine.train");
    check(cudaStreamSynchronize(s), "DenseEngine.train");
    for (index_t i = 0; i < n; ++i) {
        if (sums[i].bad_row != LLONG_MAX)
            throw std::out_of_range("labels: expected class labels in [0, " +
                                    std::to_string(layers_.back().out) +
                                    "), got an out-of-range label in batch " +
                                    std::to_string(first + i));
        out[i].loss_sum = sums[i].sum;
        out[i].hits = counts[i];
    }
    return out;
}

void GpuDenseEngine::step(const EngineData& data, const std::int64_t* idx, index_t rows,
                          float lr, std::int64_t t, const EngineHyper& hyper, DeviceLoss* loss,
                          unsigned long long* hits, cudaStream_t s) {
    const index_t L = static_cast<index_t>(layers_.size());
    const index_t out_dim = layers_.back().out;
    gather_rows(data.x, idx, x_->as<float>(), rows, layers_[0].in, s);
    if (loss_ == EngineLoss::xent_sparse) {
        if (data.y_int64)
            gather_labels(static_cast<const std::int64_t*>(data.y), idx,
                          labels_->as<std::int32_t>(), rows, s);
        else
            gather_labels(static_cast<const std::int32_t*>(data.y), idx,
                          labels_->as<std::int32_t>(), rows, s);
    } else {
        gather_rows(static_cast<const float*>(data.y), idx, targets_->as<float>(), rows, out_dim,
                    s);
    }

    // The dropout masks' step: the optimizer's steps before this one (t counts from 1).
    const auto drop_step = static_cast<std::uint64_t>(t - 1);

    // ---- forward: a_l -> z_l = a_l W_l + b_l -> y_l = act(z_l) [-> dropped] -------------
    std::vector<const float*> input(L);  // each layer's input a_l
    const float* a = x_->as<float>();
    if (input_drop_.on()) {
        dropout_apply(a, input_drop_.out->as<float>(), rows * layers_[0].in, input_drop_.rate,
                      input_drop_.seed, drop_step, s);
        a = input_drop_.out->as<float>();
    }
    for (index_t l = 0; l < L; ++l) {
        const EngineLayer& layer = layers_[l];
        input[l] = a;
        float* z = z_[l]->as<float>();
        blas_->gemm(false, false, rows, layer.out, layer.in, a, layer.w, z, false, s);
        if (y_[l]) {  // z keeps the biased value, y its activation: the backward reads both
            bias_activation_split(z, layer.b, y_[l]->as<float>(), rows, layer.out, layer.act,
                                  layer.act_param, s);
            a = y_[l]->as<float>();
        } else {
            if (layer.b) bias_activation(z, layer.b, rows, layer.out, Activation::linear, 0.f, s);
            a = z;
        }
        if (drops_[l].on()) {  // the next layer's input (y or z stay for the backward)
            dropout_apply(a, drops_[l].out->as<float>(), rows * layer.out, drops_[l].rate,
                          drops_[l].seed, drop_step, s);
            a = drops_[l].out->as<float>();
        }
    }

    // ---- loss and its gradient with respect to the last z ------------------------------
    const EngineLayer& top = layers_.back();
    const float* logits = z_[L - 1]->as<float>();
    float* dz = grad_a_->as<float>();
    float* spare = grad_b_->as<float>();
    const index_t elements = rows * out_dim;
    switch (loss_) {
        case EngineLoss::xent_sparse:
            softmax_xent_sparse_into(logits, labels_->as<std::int32_t>(), dz, rows, out_dim,
                                     1.f / static_cast<float>(rows), loss, s);
            if (count_hits_)
                count_argmax_hits(logits, labels_->as<std::int32_t>(), rows, out_dim, hits, s);
            break;
        case EngineLoss::xent_dense:
            softmax_xent_dense_into(logits, targets_->as<float>(), dz, rows, out_dim,
                                    1.f / static_cast<float>(rows), loss, s);
            break;
        case EngineLoss::bce_logits:
            bce_loss_into(logits, targets_->as<float>(), dz, elements, true, 0.f,
                          1.f / static_cast<float>(elements), loss, s);
            break;
        default: {
            const auto kind = loss_ == EngineLoss::mse ? RegressionLoss::mse
                              : loss_ == EngineLoss::mae ? RegressionLoss::mae
                                                         : RegressionLoss::huber;
            regression_loss_into(kind, a, targets_->as<float>(), dz, elements, hyper.loss_param,
                                 1.f / static_cast<float>(elements), loss, s);
            if (y_[L - 1])  // through the output activation (dz may alias dy)
                activation_backward(top.act, top.act_param, logits, y_[L - 1]->as<float>(), dz,
                                    dz, elements, s);
        }
    }

    // ---- backward: weight and bias gradients, and each input's gradient below ------------
    for (index_t l = L - 1; l >= lowest_trainable_; --l) {
        const EngineLayer& layer = layers_[l];
        if (layer.trainable) {
            blas_->gemm(true, false, layer.in, layer.out, rows, input[l], dz,
                       gw_[l]->as<float>(), false, s);
            if (gb_[l]) bias_grad(dz, gb_[l]->as<float>(), rows, layer.out, s);
        }
        if (l == lowest_trainable_) break;
        blas_->gemm(false, true, rows, layer.in, layer.out, dz, layer.w, spare, false, s);
        const EngineLayer& below = layers_[l - 1];
        const Drop& drop = drops_[l - 1];
        if (drop.on())  // through the layer below's dropout mask first
            dropout_apply(spare, spare, rows * below.out, drop.rate, drop.seed, drop_step, s);
        if (y_[l - 1])
            activation_backward(below.act, below.act_param, z_[l - 1]->as<float>(),
                                y_[l - 1]->as<float>(), spare, spare, rows * below.out, s);
        std::swap(dz, spare);
    }

    // ---- the optimizer's update of every parameter, after every gradient read the old
    // weights: one launch ------------------------------------------------------------------
    const auto* params = params_ ? params_->as<ParamSlots>() : nullptr;
    const auto* blocks = param_blocks_ ? param_blocks_->as<ParamBlock>() : nullptr;
    if (opt_ == EngineOptimizer::sgd)
        sgd_update_all(params, blocks, n_param_blocks_, lr, hyper.momentum, hyper.nesterov, s);
    else
        adam_update_all(params, blocks, n_param_blocks_, lr, hyper.beta1, hyper.beta2,
                        hyper.eps, hyper.weight_decay, t, hyper.amsgrad, s);
}

}  // namespace pynn::cuda
