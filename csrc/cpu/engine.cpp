// DenseEngine (engine.h): the training step of a Dense stack in C++, per batch of B rows:
//   gather x/y rows by the epoch's order -> forward (one gemm per layer, bias + activation in
//   its epilogue; a fused loss takes the last layer's logits) -> loss + dY (kernels.h, Keras'
//   mean reduction folded into grad_scale) -> per layer from the top: dZ = dY * f'(Y) in
//   place, dW = X^T dZ, db = colsum dZ, dX = dZ W^T (with the weights before their update),
//   then the fused optimizer pass on W and b while their gradients are hot in cache.
// Dropout after a layer's activation: forward writes Y * mask into the layer's `drop.out`
// buffer (the next layer's input), backward multiplies the incoming gradient by the same
// mask, regenerated from (seed, step, index) rather than stored.
// Buffers live in one arena allocated at construction: nothing is allocated per step.
#include "cpu/engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <thread>

#include "cpu/batchnorm.h"
#include "cpu/float_mode.h"
#include "pynn/gemm.h"
#include "pynn/kernels.h"
#include "pynn/threadpool.h"

#if defined(PYNN_X86)
#include <immintrin.h>
#endif

namespace pynn {
namespace {

constexpr int kLinear = static_cast<int>(Activation::linear);
constexpr int kSigmoid = static_cast<int>(Activation::sigmoid);
constexpr int kSoftmax = DenseEngine::kSoftmax;

const char* act_name(int a) {
    static const char* names[] = {"linear",  "relu",    "leaky_relu", "elu",       "gelu_tanh",
                                  "sigmoid", "tanh",    "silu",       "softplus",  "softsign",
                                  "selu",    "relu6",   "hard_sigmoid", "hard_silu", "mish",
                                  "gelu",    "exponential", "softmax"};
    static_assert(sizeof names / sizeof *names == kSoftmax + 1, "a name per activation code");
    return (a >= 0 && a <= kSoftmax) ? names[a] : "?";
}

// Whether training keeps the layer's pre-activation Z for the activation's derivative.
bool needs_z(int act) { return act < kActivationCount && activation_needs_z(static_cast<Activation>(act)); }

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// Floats rounded up to a 64-byte multiple, so every buffer in the arena starts aligned.
index_t padded(index_t n) { return (n + 15) / 16 * 16; }

// Index of the first maximum (numpy.argmax's tie rule).
inline index_t argmax_row(const float* p, index_t n) {
    index_t best = 0;
    float m = p[0];
    for (index_t j = 1; j < n; ++j)
        if (p[j] > m) {
            m = p[j];
            best = j;
        }
    return best;
}

#if defined(PYNN_X86)
// y[0:N] = x[0:K] . W (K x N row-major): the single-row forward of predict (bias and
// activation follow in gemv_finish). gemm's 6x16 micro-tile would spend 5 of every 6 FMAs on
// padding rows here. This is bound by the L2 bandwidth: W is streamed in bands of 16 rows
// (each a contiguous block of W, the hardware prefetcher's favourite pattern; 10-15% faster
// than walking 64-column strips down all K rows), each band swept in 64-column strips (eight
// fma chains in flight; then 32 and 8) whose partial sums wait in y between bands. 64 rather
// than 32 columns (Zen 4 VM, 2026-12-05): wide_mlp's row 186-192 -> 91-105 us, mnist_mlp's
// ~5% faster; the strip reads four cache lines of each row where W's rows are 4 KiB apart.
// Results differ from the batched path by float32 rounding only. Compiled for AVX2+FMA
// through the target attribute (intrinsics only, no shared inline code) and called only when
// gemm's runtime dispatch chose avx2 or avx512.
constexpr index_t kGemvBand = 16;

// y[0:8*V] += x[0:rows] . w (rows x 8V, row stride ldw), V = 1, 4 or 8.
template <int V>
__attribute__((target("avx2,fma"), always_inline)) inline void gemv_band_strip(
    const float* x, const float* w, index_t rows, index_t ldw, float* y) {
    __m256 a[V];
    for (int v = 0; v < V; ++v) a[v] = _mm256_loadu_ps(y + 8 * v);
    for (index_t i = 0; i < rows; ++i, w += ldw) {
        const __m256 xk = _mm256_broadcast_ss(x + i);
        for (int v = 0; v < V; ++v) a[v] = _mm256_fmadd_ps(xk, _mm256_loadu_ps(w + 8 * v), a[v]);
    }
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(y + 8 * v, a[v]);
}

// W's rows are ldw floats apart (a slice of W's columns when ldw > N). Every y[j] is one fma
// chain over k in order, so its bits do not depend on which strip or slice computed it.
__attribute__((target("avx2,fma"))) void gemv_row_avx2(const float* x, const float* W, index_t K,
                                                       index_t N, index_t ldw, float* y) {
    std::fill(y, y + N, 0.f);
    // Rows 4 KiB or more apart: bands of 8. A strip's 16 rows then all fell in the same few
    // L1 sets, more lines than its ways, and the prefetched lines were evicted before use
    // (Zen 4 VM, one thread, 512 x 1024: 35.8 -> 26.8 us; 784 x 256: unchanged).
    const index_t band = ldw >= 1024 ? kGemvBand / 2 : kGemvBand;
    for (index_t k = 0; k < K; k += band) {
        const index_t rows = std::min(band, K - k);
        const float* w = W + k * ldw;
        index_t j = 0;
        for (; j + 64 <= N; j += 64) gemv_band_strip<8>(x + k, w + j, rows, ldw, y + j);
        for (; j + 32 <= N; j += 32) gemv_band_strip<4>(x + k, w + j, rows, ldw, y + j);
        for (; j + 8 <= N; j += 8) gemv_band_strip<1>(x + k, w + j, rows, ldw, y + j);  // e.g. 10 classes
        for (; j < N; ++j) {
            float a = y[j];
            for (index_t i = 0; i < rows; ++i) a = std::fma(x[k + i], w[i * ldw + j], a);
            y[j] = a;
        }
    }
}

// y += parts[0:n_parts] (each N floats, in order; the other row slices' partial sums), then
// + bias, [relu].
__attribute__((target("avx2,fma"))) void gemv_finish(float* y, const float* parts,
                                                        index_t n_parts, index_t N,
                                                        const float* bias, bool relu) {
    // Part by part (vectorised), each element summed in the same order: y, parts, bias.
    for (index_t p = 0; p < n_parts; ++p) {
        const float* part = parts + p * N;
        for (index_t j = 0; j < N; ++j) y[j] += part[j];
    }
    for (index_t j = 0; j < N; ++j) {
        float a = y[j];
        if (bias) a += bias[j];
        if (relu) a = !(a <= 0.f) ? a : 0.f;  // NaN propagates, like gemm's epilogue
        y[j] = a;
    }
}

// Single-row layers with at most this many weights stay on one thread (unless the layer before
// takes them along, pairs_with_next): the pool's round trip, the later start of the worker and
// the partial sums' trip back cost ~2-3 us, more than half of streaming 512 KiB from L2
// (~5 us; Xeon VM, 2026-12-04: 256 x 512 weights 5.4 us on one thread, 6.3 on two; 384 x 384
// 6.7 and 5.8).
constexpr index_t kGemvSerialMax = 131072;

// A big layer's single-row product is summed in this many slices of W's rows (fewer when
// it has fewer 16-row bands), whatever the number of threads: the slices' partial sums are
// added in a fixed order, so a row's prediction has the same bits on every machine size.
constexpr int kGemvSlices = 8;

// A small number per thread, fixed for its lifetime (pool workers keep theirs).
int worker_slot() {
    static std::atomic<int> next{0};
    thread_local int slot = next.fetch_add(1, std::memory_order_relaxed);
    return slot;
}

// The slices a split product of n-row W is summed in: its bands, at most kGemvSlices.
int row_slices(index_t n) {
    return static_cast<int>(std::min<index_t>((n + kGemvBand - 1) / kGemvBand, kGemvSlices));
}

// Slice s of S over the 16-row bands of an n-row W: its first row, and one past its last.
index_t slice_begin(index_t n, int s, int S) {
    return (n + kGemvBand - 1) / kGemvBand * s / S * kGemvBand;
}
index_t slice_end(index_t n, int s, int S) { return s + 1 == S ? n : slice_begin(n, s + 1, S); }

// share(t, T) for t in [0, T) on T threads. The pool hands tasks to whichever thread comes
// first; to keep each share's part of W in the same core's L2 from call to call, a task takes
// its thread's usual share (caller: 0, workers: their own) when still free.
template <class F>
void run_shares(int T, F&& share) {
    if (T <= 1) {
        share(0, 1);
        return;
    }
    std::atomic<bool> taken[kGemvSlices];
    for (int q = 0; q < T; ++q) taken[q].store(false, std::memory_order_relaxed);
    const std::thread::id caller = std::this_thread::get_id();
    parallel_for(T, [&](index_t) {
        int t = std::this_thread::get_id() == caller ? 0 : 1 + worker_slot() % (T - 1);
        if (taken[t].exchange(true)) {
            t = 0;
            while (taken[t].exchange(true)) ++t;  // T tasks, T shares: one is free
        }
        share(t, T);
    });
}

// The single-row kernel is AVX2; it runs when gemm's dispatch chose avx2 or avx512 (follows
// set_gemm_isa / PYNN_ISA, so forcing generic tests the batched path).
bool use_gemv() {
    const char* isa = gemm_isa();
    return std::strcmp(isa, "avx2") == 0 || std::strcmp(isa, "avx512") == 0;
}
#endif  // PYNN_X86

// Optimizer updates of tensors this large are split over the threads (see update()); parts
// stay <= kKernelInlineMax, the size below which the kernels of kernels.h run inline
// (cpu/chunks.h kParallelMin), so no parallel_for nests inside a task.
constexpr index_t kUpdateParallelMin = 16384;
constexpr index_t kKernelInlineMax = 65536;
// Batches with more floats than this are gathered by all threads (DRAM latency-bound).
constexpr index_t kGatherParallelMin = 32768;

}  // namespace

EngineLoss parse_engine_loss(const std::string& s) {
    if (s == "softmax_xent_sparse") return EngineLoss::softmax_xent_sparse;
    if (s == "softmax_xent_dense") return EngineLoss::softmax_xent_dense;
    if (s == "bce_logits") return EngineLoss::bce_logits;
    if (s == "bce") return EngineLoss::bce;
    if (s == "mse") return EngineLoss::mse;
    if (s == "mae") return EngineLoss::mae;
    if (s == "huber") return EngineLoss::huber;
    fail("loss: unknown loss '" + s +
         "'; expected one of softmax_xent_sparse, softmax_xent_dense, bce_logits, bce, mse, mae, huber");
}

int optimizer_slots(EngineOptimizer opt, const EngineHyper& h) {
    switch (opt) {
        case EngineOptimizer::sgd: return h.momentum_slot ? 1 : 0;
        case EngineOptimizer::adam: return h.amsgrad ? 3 : 2;
        case EngineOptimizer::rmsprop: return h.momentum_slot ? 2 : 1;
        case EngineOptimizer::adagrad:
        case EngineOptimizer::lion: return 1;
        case EngineOptimizer::nadam:
        case EngineOptimizer::adamax:
        case EngineOptimizer::adadelta: return 2;
    }
    return 0;
}

EngineOptimizer parse_engine_optimizer(const std::string& s) {
    if (s == "sgd") return EngineOptimizer::sgd;
    if (s == "adam") return EngineOptimizer::adam;
    if (s == "rmsprop") return EngineOptimizer::rmsprop;
    if (s == "adagrad") return EngineOptimizer::adagrad;
    if (s == "nadam") return EngineOptimizer::nadam;
    if (s == "adamax") return EngineOptimizer::adamax;
    if (s == "lion") return EngineOptimizer::lion;
    if (s == "adadelta") return EngineOptimizer::adadelta;
    fail("optimizer: unknown optimizer '" + s +
         "'; expected one of sgd, adam, rmsprop, adagrad, nadam, adamax, lion, adadelta");
}

EngineMetric parse_engine_metric(const std::string& s) {
    if (s == "sparse_accuracy") return EngineMetric::sparse_accuracy;
    if (s == "categorical_accuracy") return EngineMetric::categorical_accuracy;
    if (s == "binary_accuracy") return EngineMetric::binary_accuracy;
    if (s == "mse") return EngineMetric::mse;
    if (s == "mae") return EngineMetric::mae;
    fail("metrics: unknown metric '" + s +
         "'; expected one of sparse_accuracy, categorical_accuracy, binary_accuracy, mse, mae");
}

// ---- construction ---------------------------------------------------------------------------

DenseEngine::DenseEngine(const std::vector<index_t>& sizes, const std::vector<int>& acts,
                         const std::vector<float>& act_params, const std::vector<bool>& use_bias,
                         EngineLoss loss, float loss_param, EngineOptimizer optimizer,
                         index_t max_batch, bool training)
    : sizes_(sizes), loss_(loss), loss_param_(loss_param), opt_(optimizer), max_batch_(max_batch),
      training_(training) {
    if (sizes.size() < 2)
        fail("sizes: expected at least 2 entries [in, ..., out], got " + std::to_string(sizes.size()));
    const size_t L = sizes.size() - 1;
    for (size_t i = 0; i < sizes.size(); ++i)
        if (sizes[i] < 1)
            fail("sizes[" + std::to_string(i) + "]: expected a positive size, got " + std::to_string(sizes[i]));
    if (acts.size() != L)
        fail("activations: expected " + std::to_string(L) + " entries (one per layer), got " + std::to_string(acts.size()));
    if (act_params.size() != L)
        fail("act_params: expected " + std::to_string(L) + " entries (one per layer), got " + std::to_string(act_params.size()));
    if (use_bias.size() != L)
        fail("use_bias: expected " + std::to_string(L) + " entries (one per layer), got " + std::to_string(use_bias.size()));
    if (max_batch < 1) fail("max_batch: expected >= 1, got " + std::to_string(max_batch));
    for (size_t i = 0; i < L; ++i) {
        if (acts[i] < 0 || acts[i] > kSoftmax)
            fail("activations[" + std::to_string(i) + "]: expected a code in [0, " + std::to_string(kSoftmax) +
                 "], got " + std::to_string(acts[i]));
        if (acts[i] == kSoftmax && i + 1 != L)
            fail("activations[" + std::to_string(i) + "]: softmax (" + std::to_string(kSoftmax) +
                 ") is allowed on the last layer only");
    }
    const int last_act = acts[L - 1];
    switch (loss) {
        case EngineLoss::softmax_xent_sparse:
        case EngineLoss::softmax_xent_dense:
            if (last_act != kSoftmax && last_act != kLinear)
                fail(std::string("loss: softmax cross-entropy needs a softmax or linear last layer, got ") + act_name(last_act));
            fused_ = true;
            break;
        case EngineLoss::bce_logits:
            if (last_act != kSigmoid && last_act != kLinear)
                fail(std::string("loss: bce_logits needs a sigmoid or linear last layer, got ") + act_name(last_act));
            fused_ = true;
            break;
        default:
            if (last_act == kSoftmax)
                fail("loss: a softmax last layer is only supported with softmax_xent_sparse/dense");
    }
    if (loss == EngineLoss::huber && !(loss_param > 0.f))
        fail("loss_param: huber delta must be > 0, got " + std::to_string(loss_param));
    if (loss == EngineLoss::bce && !(loss_param > 0.f && loss_param < 0.5f))
        fail("loss_param: bce clip epsilon must be in (0, 0.5), got " + std::to_string(loss_param));

    // Every buffer is max_batch x a width, or a layer's in x out: their sum bounded here (in
    // double: no overflow), so every size computed from them below, and in set_dropout and
    // set_batchnorm, is exact (2**62 x 4 wrapped to 0: a one-float arena that predict
    // overran).
    double need = 5.0 * static_cast<double>(max_batch) * static_cast<double>(sizes.front());
    for (size_t i = 0; i < L; ++i)
        need += static_cast<double>(sizes[i + 1]) * (5.0 * static_cast<double>(max_batch) +
                                                     static_cast<double>(sizes[i]) + 1.0);
    if (need > 0x1p50) {
        char text[32];
        std::snprintf(text, sizeof text, "%.3g", need * 4.0);
        fail(std::string("sizes/max_batch: the engine's buffers would take ~") + text +
             " bytes; too large for any machine");
    }

    layers_.resize(L);
    // Predict reads its rows in place and needs only each layer's outputs: the batch copy
    // (max_batch x inputs: 200 MB for 50,000 features) and the gradients are training's.
    index_t total = training ? padded(max_batch * sizes.front()) +
                                   padded(max_batch * std::max<index_t>(1, sizes.back())) + padded(max_batch)
                             : 0;
    const bool need_probs = training && fused_ && last_act != kLinear;
    if (need_probs) total += padded(max_batch * sizes.back());
    for (size_t i = 0; i < L; ++i) {
        Layer& l = layers_[i];
        l.in = sizes[i];
        l.out = sizes[i + 1];
        l.act = acts[i];
        l.param = act_params[i];
        l.has_bias = use_bias[i];
        total += padded(max_batch * l.out);
        if (training) total += padded(max_batch * l.out) + padded(l.in * l.out) + padded(l.out);
        if (training && needs_z(l.act)) total += padded(max_batch * l.out);
    }
    total = std::max<index_t>(total, 1);
    arena_ = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(total) * sizeof(float)));
    if (!arena_) throw std::bad_alloc();
    // Zeroed once so that nothing (even unused padding) is ever uninitialised.
    std::memset(arena_, 0, static_cast<size_t>(total) * sizeof(float));
    float* p = arena_;
    auto take = [&](index_t n) {
        float* r = p;
        p += padded(n);
        return r;
    };
    if (training) {
        xb_ = take(max_batch * sizes.front());
        yb_ = take(max_batch * sizes.back());
        wb_ = take(max_batch);
    }
    if (need_probs) probs_ = take(max_batch * sizes.back());
    for (Layer& l : layers_) {
        l.Y = take(max_batch * l.out);
        if (!training) continue;
        l.D = take(max_batch * l.out);
        l.dW = take(l.in * l.out);
        l.db = take(l.out);
        if (needs_z(l.act)) l.Z = take(max_batch * l.out);
    }
}

DenseEngine::~DenseEngine() { std::free(arena_); }

void DenseEngine::set_reduction(LossReduction r) {
    std::lock_guard<std::mutex> lock(mu_);
    if (r != LossReduction::mean && r != LossReduction::sum && r != LossReduction::mean_with_sample_weight)
        fail("set_reduction: unknown reduction " + std::to_string(static_cast<int>(r)));
    reduction_ = r;
}

void DenseEngine::set_dropout(int layer, double rate, std::uint64_t seed) {
    std::lock_guard<std::mutex> lock(mu_);
    if (layer < -1 || layer + 1 >= n_layers())
        fail("set_dropout: layer must be in [-1, " + std::to_string(n_layers() - 1) +
             ") (-1: the inputs; dropout after the output layer is not supported), got " +
             std::to_string(layer));
    if (!(rate >= 0.0 && rate < 1.0))
        fail("set_dropout: rate must be in [0, 1), got " + std::to_string(rate));
    const index_t width = layer < 0 ? in_features() : layers_[layer].out;
    if (rate > 0.0 && max_batch_ * width > index_t(0xffffffff))
        fail("set_dropout: dropout masks cover at most 2^32 - 1 elements per batch (max_batch x units)");
    // Allocate before committing: a failed allocation leaves the layer as it was.
    std::vector<float> buffer(rate > 0.0 ? static_cast<size_t>(max_batch_ * width) : 0, 0.f);
    Drop& d = layer < 0 ? input_drop_ : layers_[layer].drop;
    d.out.swap(buffer);
    d.rate = rate;
    d.seed = seed;
}

void DenseEngine::Drop::apply(const float* x, float* y, index_t n, std::uint64_t step) const {
    dropout_apply(x, y, n, rate, seed, step);
}

void DenseEngine::set_batchnorm(int layer, bool pre, double momentum, double epsilon,
                                bool trainable, float* gamma, float* beta, float* moving_mean,
                                float* moving_var, const std::vector<float*>& gamma_slots,
                                const std::vector<float*>& beta_slots, double std_floor,
                                bool per_row, bool centred) {
    std::lock_guard<std::mutex> lock(mu_);
    if (layer < -1 || layer + 1 >= n_layers())
        fail("set_batchnorm: layer must be in [-1, " + std::to_string(n_layers() - 1) +
             ") (-1: the inputs; batch normalization after the output layer is not supported), got " +
             std::to_string(layer));
    if (!(momentum >= 0.0 && momentum <= 1.0)) fail("set_batchnorm: momentum must be in [0, 1]");
    if (!(std_floor >= 0.0) || !std::isfinite(std_floor)) fail("set_batchnorm: std_floor must be >= 0");
    if (!(epsilon > 0.0 || (epsilon == 0.0 && std_floor > 0.0)) || !std::isfinite(epsilon))
        fail("set_batchnorm: epsilon must be > 0 (or 0 with std_floor > 0)");
    if (per_row) {
        if (moving_mean || moving_var)
            fail("set_batchnorm: per_row (layer normalization) keeps no moving statistics");
        if (!(epsilon > 0.0) || std_floor != 0.0)
            fail("set_batchnorm: per_row needs epsilon > 0 and no std_floor");
    } else {
        if (!moving_mean || !moving_var) fail("set_batchnorm: the moving statistics are required");
        if (!centred)
            fail("set_batchnorm: batch normalization is centred (centred=False is per_row's)");
    }
    if (gamma_slots.size() > kMaxSlots || beta_slots.size() > kMaxSlots)
        fail("set_batchnorm: at most " + std::to_string(kMaxSlots) + " optimizer slots");
    const index_t cols = layer < 0 ? in_features() : layers_[layer].out;
    auto b = std::make_unique<BatchNorm>();
    b->pre = layer >= 0 && pre;
    b->per_row = per_row;
    b->centred = centred;
    b->momentum = momentum;
    b->epsilon = epsilon;
    b->std_floor = std_floor;
    b->trainable = trainable;
    b->gamma = gamma;
    b->beta = beta;
    b->moving_mean = moving_mean;
    b->moving_var = moving_var;
    b->n_g_slots = static_cast<int>(gamma_slots.size());
    b->n_b_slots = static_cast<int>(beta_slots.size());
    for (int k = 0; k < b->n_g_slots; ++k) b->g_slot[k] = gamma_slots[k];
    for (int k = 0; k < b->n_b_slots; ++k) b->b_slot[k] = beta_slots[k];
    const size_t rows_x_cols = static_cast<size_t>(max_batch_ * cols), C = static_cast<size_t>(cols);
    b->xhat.assign(rows_x_cols, 0.f);
    if (!b->pre) b->out.assign(rows_x_cols, 0.f);
    // the statistics: per column, or (per_row) only inv_std, one per row of a batch
    if (per_row) {
        b->inv_std.assign(static_cast<size_t>(max_batch_), 0.f);
    } else {
        for (auto* v : {&b->mean, &b->var, &b->inv_std}) v->assign(C, 0.f);
    }
    for (auto* v : {&b->dgamma, &b->dbeta}) v->assign(C, 0.f);
    b->tmp.assign(2 * C, 0.f);
    b->acc.assign(2 * C, 0.0);
    if (layer < 0) {
        std::vector<float> grad(trainable && (gamma || beta) ? rows_x_cols : 0, 0.f);
        input_bn_ = std::move(b);
        input_grad_.swap(grad);
    } else {
        layers_[layer].bn = std::move(b);
    }
    find_lowest_trainable();
}

void DenseEngine::find_lowest_trainable() {
    lowest_trainable_ = static_cast<int>(layers_.size());
    if (input_bn_trains()) {  // its gradients come through every layer
        lowest_trainable_ = 0;
        return;
    }
    for (size_t i = 0; i < layers_.size(); ++i) {
        const Layer& l = layers_[i];
        if (l.trainable || (l.bn && l.bn->trainable && (l.bn->gamma || l.bn->beta))) {
            lowest_trainable_ = static_cast<int>(i);
            break;
        }
    }
}

// Normalises z (rows x out) into `out` (gamma * xhat + beta), keeping xhat for backward:
// with batch statistics (updating the moving ones, Keras' rule) when training a trainable
// layer, else with the moving statistics.
void DenseEngine::batchnorm_forward(BatchNorm& b, index_t C, const float* z, index_t rows,
                                    bool training, float* out) {
    if (b.per_row) {  // layer normalization: each row's own statistics, always
        b.used_batch = true;
        bn::row_normalize(z, rows, C, b.centred, b.epsilon, b.gamma, b.beta, b.inv_std.data(),
                          b.xhat.data(), out);
        return;
    }
    b.used_batch = training && b.trainable;
    const float* mean = b.moving_mean;
    const float* var = b.moving_var;
    if (b.used_batch) {
        bn::column_stats(z, rows, C, b.mean.data(), b.var.data(), b.acc.data());
        const float m = static_cast<float>(b.momentum), om = static_cast<float>(1.0 - b.momentum);
        for (index_t j = 0; j < C; ++j) {
            b.moving_mean[j] *= m;
            b.moving_mean[j] += om * b.mean[j];
            b.moving_var[j] *= m;
            b.moving_var[j] += om * b.var[j];
        }
        mean = b.mean.data();
        var = b.var.data();
    }
    const float eps = static_cast<float>(b.epsilon), floor = static_cast<float>(b.std_floor);
    for (index_t j = 0; j < C; ++j) b.inv_std[j] = 1.f / std::max(std::sqrt(var[j] + eps), floor);
    bn::normalize(z, rows, C, mean, b.inv_std.data(), b.gamma, b.beta, b.xhat.data(), out);
}

// From dy (rows x C, the gradient w.r.t. the normalisation's output): gamma's and beta's
// gradients when `grads` (and they exist), and dx (nullable; may alias dy).
void DenseEngine::normalization_backward(BatchNorm& b, const float* dy, index_t rows, index_t C,
                                         bool grads, float* dx) {
    float* dgamma = grads && b.gamma ? b.dgamma.data() : nullptr;
    float* dbeta = grads && b.beta ? b.dbeta.data() : nullptr;
    if (b.per_row)
        bn::row_backward(dy, b.xhat.data(), rows, C, b.centred, b.inv_std.data(), b.gamma, dgamma,
                         dbeta, dx, b.acc.data());
    else
        bn::backward(dy, b.xhat.data(), rows, C, b.inv_std.data(), b.gamma, b.used_batch, dgamma,
                     dbeta, dx, b.acc.data(), b.tmp.data());
}

void DenseEngine::set_regularizer(int layer, double kernel_l1, double kernel_l2, double bias_l1,
                                  double bias_l2) {
    std::lock_guard<std::mutex> lock(mu_);
    if (layer < 0 || layer >= n_layers())
        fail("set_regularizer: layer must be in [0, " + std::to_string(n_layers()) + "), got " +
             std::to_string(layer));
    for (double f : {kernel_l1, kernel_l2, bias_l1, bias_l2})
        if (!(f >= 0.0) || !std::isfinite(f))
            fail("set_regularizer: factors must be finite and >= 0, got " + std::to_string(f));
    Layer& l = layers_[layer];
    if (!l.has_bias && (bias_l1 != 0.0 || bias_l2 != 0.0))
        fail("set_regularizer: layer " + std::to_string(layer) + " has no bias to regularize");
    l.w_l1 = kernel_l1, l.w_l2 = kernel_l2, l.b_l1 = bias_l1, l.b_l2 = bias_l2;
}

void DenseEngine::set_constraint(int layer, bool bias, const WeightConstraint& c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (layer < 0 || layer >= n_layers())
        fail("set_constraint: layer must be in [0, " + std::to_string(n_layers()) + "), got " +
             std::to_string(layer));
    const int kind = static_cast<int>(c.kind), axis = static_cast<int>(c.axis);
    if (kind < 0 || kind > 4) fail("set_constraint: unknown kind " + std::to_string(kind));
    if (axis < 0 || axis > 2) fail("set_constraint: unknown axis " + std::to_string(axis));
    // (Keras takes max_value=inf: no bound)
    for (double v : {c.min_value, c.max_value, c.rate, c.epsilon})
        if (!(v >= 0.0))
            fail("set_constraint: values must be >= 0, got " + std::to_string(v));
    if (!std::isfinite(c.epsilon)) fail("set_constraint: epsilon must be finite");
    if (c.kind == ConstraintKind::min_max_norm && !(c.min_value <= c.max_value))
        fail("set_constraint: min_value " + std::to_string(c.min_value) + " is above max_value " +
             std::to_string(c.max_value));
    Layer& l = layers_[layer];
    if (bias && !l.has_bias)
        fail("set_constraint: layer " + std::to_string(layer) + " has no bias");
    (bias ? l.b_con : l.w_con) = c;
}

void project_weight(float* w, index_t rows, index_t cols, const WeightConstraint& c) {
    const index_t n = rows * cols;
    if (c.kind == ConstraintKind::none) return;
    if (c.kind == ConstraintKind::non_neg) {
        for (index_t i = 0; i < n; ++i) w[i] = std::max(w[i], 0.f);
        return;
    }
    // One norm per column, per row, or one; squares summed in double (the layer path's
    // float64), rows in 8 running sums so the sum is not one chain of dependent adds.
    const index_t groups = c.axis == NormAxis::columns ? cols : c.axis == NormAxis::rows ? rows : 1;
    std::vector<double> sq(static_cast<size_t>(groups), 0.0);
    if (c.axis == NormAxis::columns) {
        for (index_t r = 0; r < rows; ++r) {
            const float* row = w + r * cols;
            for (index_t k = 0; k < cols; ++k) sq[k] += double(row[k]) * double(row[k]);
        }
    } else {
        const index_t len = c.axis == NormAxis::rows ? cols : n;
        for (index_t g = 0; g < groups; ++g) {
            const float* v = w + g * len;
            double part[8] = {};
            index_t i = 0;
            for (; i + 8 <= len; i += 8)
                for (int j = 0; j < 8; ++j) part[j] += double(v[i + j]) * double(v[i + j]);
            for (; i < len; ++i) part[0] += double(v[i]) * double(v[i]);
            sq[g] = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        }
    }
    std::vector<float> scale(static_cast<size_t>(groups));
    for (index_t g = 0; g < groups; ++g) {
        const double norm = std::sqrt(sq[g]);
        double desired = 1.0;  // unit_norm
        if (c.kind == ConstraintKind::max_norm) desired = std::min(norm, c.max_value);
        else if (c.kind == ConstraintKind::min_max_norm)  // (set_constraint: min <= max)
            desired = c.rate * std::min(std::max(norm, c.min_value), c.max_value) + (1.0 - c.rate) * norm;
        scale[g] = static_cast<float>(desired / (c.epsilon + norm));
    }
    if (c.axis == NormAxis::columns) {
        for (index_t r = 0; r < rows; ++r) {
            float* row = w + r * cols;
            for (index_t k = 0; k < cols; ++k) row[k] *= scale[k];
        }
    } else {
        const index_t len = c.axis == NormAxis::rows ? cols : n;
        for (index_t g = 0; g < groups; ++g) {
            float* v = w + g * len;
            const float f = scale[g];
            for (index_t i = 0; i < len; ++i) v[i] *= f;
        }
    }
}

double DenseEngine::penalty(const Layer& l, bool add_gradients) {
    double p = 0.0;
    if (l.w_l1 != 0.0 || l.w_l2 != 0.0)
        p += regularize(l.W, add_gradients ? l.dW : nullptr, l.in * l.out, l.w_l1, l.w_l2);
    if (l.has_bias && (l.b_l1 != 0.0 || l.b_l2 != 0.0))
        p += regularize(l.b, add_gradients ? l.db : nullptr, l.out, l.b_l1, l.b_l2);
    return p;
}

void DenseEngine::bind(const std::vector<float*>& params, const std::vector<bool>& trainable,
                       const std::vector<std::vector<float*>>& state) {
    std::lock_guard<std::mutex> lock(mu_);  // never while a train/predict uses the old arrays
    size_t n_params = 0;
    for (const Layer& l : layers_) n_params += l.has_bias ? 2 : 1;
    if (params.size() != n_params || state.size() != n_params || trainable.size() != layers_.size())
        fail("bind: expected " + std::to_string(n_params) + " params, " + std::to_string(n_params) +
             " state lists and " + std::to_string(layers_.size()) + " trainable flags");
    size_t k = 0;
    for (size_t i = 0; i < layers_.size(); ++i) {
        Layer& l = layers_[i];
        l.trainable = trainable[i];
        auto set = [&](float*& w, float** slot, int& n_slots) {
            w = params[k];
            n_slots = static_cast<int>(state[k].size());
            if (n_slots > kMaxSlots)
                fail("bind: state[" + std::to_string(k) + "] has more than " + std::to_string(kMaxSlots) + " slots");
            for (int j = 0; j < kMaxSlots; ++j) slot[j] = j < n_slots ? state[k][j] : nullptr;
            ++k;
        };
        set(l.W, l.w_slot, l.n_w_slots);
        if (l.has_bias) set(l.b, l.b_slot, l.n_b_slots);
        else l.b = nullptr, l.n_b_slots = 0;
    }
    find_lowest_trainable();
    bound_ = true;
}

// ---- validation -----------------------------------------------------------------------------

void check_batch_range(index_t n, index_t first, index_t last, index_t bs) {
    if (bs < 1) fail("batch_size: expected >= 1, got " + std::to_string(bs));
    const index_t n_batches = n / bs + (n % bs != 0);  // (n + bs - 1 overflows near 2**63)
    if (first < 0 || last < first || last > n_batches)
        fail("first_batch/last_batch: expected 0 <= first_batch <= last_batch <= " + std::to_string(n_batches) +
             " (batches of " + std::to_string(bs) + " in " + std::to_string(n) + " rows), got " +
             std::to_string(first) + ", " + std::to_string(last));
}

void DenseEngine::check_batches(index_t n, index_t first, index_t last, index_t bs) const {
    if (!bound_) fail("train: no parameters bound; call bind(params, trainable, state) first");
    // A batch holds min(batch_size, n) rows at most: that is what the buffers must fit.
    if (std::min(bs, n) > max_batch_)
        fail("batch_size: " + std::to_string(bs) + " exceeds the engine's max_batch " + std::to_string(max_batch_));
    check_batch_range(n, first, last, bs);
}

// The caller's order[r0:r1] and (sparse) the labels of those rows, copied into the engine's
// own vectors before they are checked: the step loop reads only the copies, so another
// Python thread writing the caller's arrays while the GIL is released can never put an
// unchecked index or label in use (checked, then read again, they could differ).
void DenseEngine::copy_chunk(const std::int64_t* order, index_t n, index_t r0, index_t r1,
                             const std::int32_t* labels) {
    chunk_order_.assign(order + r0, order + r1);
    chunk_labels_.resize(labels ? static_cast<size_t>(r1 - r0) : 0);
    const index_t C = out_features();
    for (index_t r = r0; r < r1; ++r) {
        const std::int64_t idx = chunk_order_[static_cast<size_t>(r - r0)];
        if (idx < 0 || idx >= n)
            fail("order: expected row indices in [0, " + std::to_string(n) + "), got " + std::to_string(idx) +
                 " at position " + std::to_string(r));
        if (!labels) continue;
        const std::int32_t label = labels[idx];
        if (label < 0 || label >= C)
            fail("y: expected class labels in [0, " + std::to_string(C) + "), got " + std::to_string(label) +
                 " at row " + std::to_string(idx));
        chunk_labels_[static_cast<size_t>(r - r0)] = label;
    }
}

void DenseEngine::validate(index_t first, index_t last, const EngineHyper& h,
                           const EngineMetric* metrics, int n_metrics) const {
    const bool sparse = loss_ == EngineLoss::softmax_xent_sparse;
    for (int m = 0; m < n_metrics; ++m) {
        if ((metrics[m] == EngineMetric::sparse_accuracy) != sparse)
            fail(sparse ? "metrics: with integer labels (softmax_xent_sparse) only sparse_accuracy is available"
                        : "metrics: sparse_accuracy needs integer labels (loss softmax_xent_sparse)");
    }
    if (!std::isfinite(h.lr)) fail("hyper: lr must be finite");
    if (h.lr_steps)
        for (index_t b = 0; b < last - first; ++b)
            if (!std::isfinite(h.lr_steps[b])) fail("hyper: lr_steps must be finite");
    for (double v : {double(h.clipvalue), h.clipnorm, h.global_clipnorm})
        if (!(v >= 0.0) || !std::isfinite(v)) fail("hyper: clipping thresholds must be finite and >= 0 (0 = off)");
    if (h.clipnorm > 0.0 && h.global_clipnorm > 0.0) fail("hyper: give clipnorm or global_clipnorm, not both");
    if (h.use_ema && !(h.ema_momentum >= 0.0 && h.ema_momentum <= 1.0))
        fail("hyper: ema_momentum must be in [0, 1]");
    if (h.ema_overwrite_frequency < 0) fail("hyper: ema_overwrite_frequency must be >= 0 (0 = never)");
    // The slots each trainable parameter needs for these hyper-parameters.
    std::string what;
    switch (opt_) {
        case EngineOptimizer::sgd: what = "sgd with momentum needs [velocity"; break;
        case EngineOptimizer::adam: what = h.amsgrad ? "adam with amsgrad needs [m, v, v_hat" : "adam needs [m, v"; break;
        case EngineOptimizer::rmsprop: what = h.momentum_slot ? "rmsprop with momentum needs [velocity, momentum" : "rmsprop needs [velocity"; break;
        case EngineOptimizer::adagrad: what = "adagrad needs [accumulator"; break;
        case EngineOptimizer::nadam: what = "nadam needs [m, v"; break;
        case EngineOptimizer::adamax: what = "adamax needs [m, u"; break;
        case EngineOptimizer::lion: what = "lion needs [m"; break;
        case EngineOptimizer::adadelta: what = "adadelta needs [accumulated_grad, accumulated_delta"; break;
    }
    const int need = optimizer_slots(opt_, h) + (h.use_ema ? 1 : 0);
    if (opt_ == EngineOptimizer::sgd && !h.momentum_slot) what = "sgd needs [";
    if (h.use_ema) what += need > 1 ? ", average" : "average";
    what += "]";
    int k = 0;
    for (size_t i = 0; i < layers_.size(); ++i) {
        const Layer& l = layers_[i];
        for (int j = 0; j < (l.has_bias ? 2 : 1); ++j, ++k) {
            const int have = j == 0 ? l.n_w_slots : l.n_b_slots;
            if (l.trainable && have < need)
                fail("state[" + std::to_string(k) + "]: " + what + ", got " + std::to_string(have) + " slot(s)");
        }
        if (l.bn && l.bn->trainable &&
            ((l.bn->gamma && l.bn->n_g_slots < need) || (l.bn->beta && l.bn->n_b_slots < need)))
            fail("set_batchnorm: layer " + std::to_string(i) + ": " + what + " for gamma and beta");
    }
    if (input_bn_trains() && ((input_bn_->gamma && input_bn_->n_g_slots < need) ||
                              (input_bn_->beta && input_bn_->n_b_slots < need)))
        fail(std::string("set_batchnorm: the input normalisation: ") + what + " for gamma and beta");
}

// ---- the step -------------------------------------------------------------------------------

#if defined(PYNN_X86)
// Whether predict's single row computes layer a together with the product of the next layer
// b, in one trip over the threads instead of two: each thread takes whole columns of a's
// output (full sums, so their bias and activation are applied there) and multiplies them by
// its rows of b's W. a must be big enough to be split at all, and its activation apply
// column by column (no softmax, no normalisation). wide_mlp's row (1024-1024-1024-10, Xeon
// VM, two threads): 119 us instead of 149; mnist_mlp's: unchanged within the noise.
bool DenseEngine::pairs_with_next(const Layer& a, const Layer& b) {
    return a.out > 1 && b.out > 1 && !a.bn && a.act != kSoftmax &&
           a.in * a.out > kGemvSerialMax && a.out > kGemvBand;
}

// predict's single row (the inputs' normalisation ran in forward; a layer's runs here, with
// the statistics of inference: moving ones, or the row's own for a layer normalisation).
// A big layer's W is split over the threads: each core then streams the same part of W from
// call to call, which for the mnist model (1.07 MB of weights) stays in its own L2. How a
// product is split into slices depends only on the shapes, and the slices' partial sums are
// added in a fixed order, so a row's prediction has the same bits on every machine size.
void DenseEngine::forward_one_row(const float* X, float* final_out) {
    const size_t L = layers_.size();
    int carried = 0;  // > 0: this layer's product was made with the one before, in this many slices
    auto parts_for = [this](int S, index_t out) {  // the S - 1 other slices' partial sums
        if (gemv_parts_.size() < static_cast<size_t>((S - 1) * out)) gemv_parts_.resize((S - 1) * out);
        return gemv_parts_.data();
    };
    for (size_t i = 0; i < L; ++i) {
        Layer& l = layers_[i];
        float* Y = (i + 1 == L && final_out) ? final_out : l.Y;
        const bool pre = l.bn && l.bn->pre;  // normalised between product and activation
        const bool relu = l.act == static_cast<int>(Activation::relu) && !pre;
        const float* bias = l.has_bias ? l.b : nullptr;
        bool fused;  // the activation applied with the product
        if (l.out == 1) {
            // One output: gemm's matrix-vector path, as a batch takes it, so a row's
            // prediction has the same bits alone as inside a batch.
            Epilogue ep;
            ep.bias = bias;
            ep.act_param = l.param;
            fused = l.act != kSoftmax && !pre;
            if (fused) ep.act = static_cast<Activation>(l.act);
            gemm(false, false, 1, 1, l.in, 1.f, X, l.in, l.W, 1, 0.f, Y, 1, ep);
        } else if (!carried && i + 1 < L && pairs_with_next(l, layers_[i + 1])) {
            Layer& b = layers_[i + 1];
            float* const bY = (i + 2 == L && final_out) ? final_out : b.Y;
            const int S = row_slices(b.in);
            float* const parts = parts_for(S, b.out);
            const Activation act = static_cast<Activation>(l.act);
            run_shares(std::min(num_threads(), S), [&](int t, int T) {
                const int s0 = S * t / T, s1 = S * (t + 1) / T;
                if (s0 == s1) return;
                const index_t c0 = slice_begin(b.in, s0, S), c1 = slice_end(b.in, s1 - 1, S);
                gemv_row_avx2(X, l.W + c0, l.in, c1 - c0, l.out, l.Y + c0);
                for (int s = s0; s < s1; ++s) {  // slice by slice: the same calls for any T
                    const index_t k0 = slice_begin(b.in, s, S), k1 = slice_end(b.in, s, S);
                    gemv_finish(l.Y + k0, nullptr, 0, k1 - k0, bias ? bias + k0 : nullptr, relu);
                    if (!relu && l.act != kLinear)
                        activation_forward(act, l.param, l.Y + k0, l.Y + k0, k1 - k0);
                    gemv_row_avx2(l.Y + k0, b.W + k0 * b.out, k1 - k0, b.out, b.out,
                                  s == 0 ? bY : parts + (s - 1) * b.out);
                }
            });
            carried = S;
            X = l.Y;
            continue;
        } else {
            // Threads split the rows of a big layer's W (whole 16-row bands).
            const int S = carried ? carried
                          : l.in > kGemvBand && l.in * l.out > kGemvSerialMax ? row_slices(l.in)
                                                                              : 1;
            float* const parts = parts_for(S, l.out);
            if (!carried)
                run_shares(std::min(num_threads(), S), [&](int t, int T) {
                    for (int s = S * t / T; s < S * (t + 1) / T; ++s) {
                        const index_t k0 = slice_begin(l.in, s, S), k1 = slice_end(l.in, s, S);
                        gemv_row_avx2(X + k0, l.W + k0 * l.out, k1 - k0, l.out, l.out,
                                      s == 0 ? Y : parts + (s - 1) * l.out);
                    }
                });
            carried = 0;
            gemv_finish(Y, parts, S - 1, l.out, bias, relu);
            fused = relu;
        }
        if (pre) batchnorm_forward(*l.bn, l.out, Y, 1, false, Y);
        if (l.act == kSoftmax) softmax_forward(Y, Y, 1, l.out);
        else if (l.act != kLinear && !fused)
            activation_forward(static_cast<Activation>(l.act), l.param, Y, Y, l.out);
        if (l.bn && !l.bn->pre) batchnorm_forward(*l.bn, l.out, Y, 1, false, l.bn->out.data());
        X = l.input_for_next(false);
    }
}
#endif

void DenseEngine::forward(const float* x0, index_t rows, bool training, float* final_out,
                          std::uint64_t drop_step) {
    const float* X = x0;
    const size_t L = layers_.size();
    if (input_bn_) {
        batchnorm_forward(*input_bn_, in_features(), x0, rows, training, input_bn_->out.data());
        X = input_bn_->out.data();
    }
    if (training && input_drop_.on()) {
        input_drop_.apply(X, input_drop_.out.data(), rows * in_features(), drop_step);
        X = input_drop_.out.data();
    }
#if defined(PYNN_X86)
    if (rows == 1 && !training && use_gemv()) {
        forward_one_row(X, final_out);
        return;
    }
#endif
    for (size_t i = 0; i < L; ++i) {
        Layer& l = layers_[i];
        const bool last = i + 1 == L;
        float* Y = (last && final_out) ? final_out : l.Y;
        Epilogue ep;
        ep.bias = l.has_bias ? l.b : nullptr;
        ep.act_param = l.param;
        int act = (training && last && fused_) ? kLinear : l.act;
        if (l.bn && l.bn->pre) {
            // GEMM + bias into the xhat buffer, normalised there in place, then the
            // activation (which may keep its input in Z for backward, as below).
            float* z = l.bn->xhat.data();
            gemm(false, false, rows, l.out, l.in, 1.f, X, l.in, l.W, l.out, 0.f, z, l.out, ep);
            const bool keep_z = training && needs_z(act);
            float* u = keep_z ? l.Z : Y;
            batchnorm_forward(*l.bn, l.out, z, rows, training, u);
            if (act != kLinear) activation_forward(static_cast<Activation>(act), l.param, u, Y, rows * l.out);
        } else if (act == kSoftmax) {
            gemm(false, false, rows, l.out, l.in, 1.f, X, l.in, l.W, l.out, 0.f, Y, l.out, ep);
            softmax_forward(Y, Y, rows, l.out);
        } else if (training && needs_z(act)) {
            // Backward needs the pre-activation: keep Z, then Y = f(Z) (the layer path's order).
            gemm(false, false, rows, l.out, l.in, 1.f, X, l.in, l.W, l.out, 0.f, l.Z, l.out, ep);
            activation_forward(static_cast<Activation>(act), l.param, l.Z, Y, rows * l.out);
        } else {
            ep.act = static_cast<Activation>(act);
            gemm(false, false, rows, l.out, l.in, 1.f, X, l.in, l.W, l.out, 0.f, Y, l.out, ep);
        }
        if (l.bn && !l.bn->pre) batchnorm_forward(*l.bn, l.out, Y, rows, training, l.bn->out.data());
        if (training && l.drop.on()) {
            const float* a = l.bn && !l.bn->pre ? l.bn->out.data() : Y;
            l.drop.apply(a, l.drop.out.data(), rows * l.out, drop_step);
        }
        X = l.input_for_next(training);
    }
}

// The loss SUM of rows [r0, r0 + rows) of the batch, writing their gradient rows scaled by
// 1/denom (the reduction's divisor; formed in double then rounded, as the layer path's Python
// float -> float32 argument is).
double DenseEngine::loss_rows(const void* yb, index_t r0, index_t rows, double denom) {
    Layer& l = layers_.back();
    const index_t C = l.out, n = rows * C;
    const float* z = l.Y + r0 * C;
    float* d = l.D + r0 * C;
    const float* t = static_cast<const float*>(yb) + r0 * C;
    const float gs = static_cast<float>(1.0 / denom);
    switch (loss_) {
        case EngineLoss::softmax_xent_sparse:
            return softmax_xent_sparse(z, static_cast<const std::int32_t*>(yb) + r0, d, rows, C, gs);
        case EngineLoss::softmax_xent_dense: return softmax_xent_dense(z, t, d, rows, C, gs);
        case EngineLoss::bce_logits: return bce_loss(z, t, d, n, true, loss_param_, gs);
        case EngineLoss::bce: return bce_loss(z, t, d, n, false, loss_param_, gs);
        case EngineLoss::mse: return mse_loss(z, t, d, n, gs);
        case EngineLoss::mae: return mae_loss(z, t, d, n, gs);
        case EngineLoss::huber: return huber_loss(z, t, d, n, loss_param_, gs);
    }
    return 0.0;
}

// The batch's loss, reduced as reduction_ says, and its gradient in the last layer's D. With
// sample weights (wb, one per row), each row's loss and gradient are scaled by its weight;
// the mean divides by the unweighted count, as the layer path does (mean_with_sample_weight
// by the weights' sum; a divisor of 0 gives 0, as Keras' divide_no_nan).
double DenseEngine::loss_and_grad(const void* yb, index_t rows, const float* wb) {
    const index_t C = layers_.back().out;
    const bool per_row = loss_ == EngineLoss::softmax_xent_sparse || loss_ == EngineLoss::softmax_xent_dense;
    const double each = per_row ? 1.0 : double(C);  // elements one sample's loss averages
    double denom = each * double(rows);
    if (reduction_ == LossReduction::sum) {
        denom = each;
    } else if (reduction_ == LossReduction::mean_with_sample_weight && wb) {
        double total = 0.0;
        for (index_t r = 0; r < rows; ++r) total += wb[r];
        denom = each * total;
    }
    if (denom == 0.0) {
        std::fill(layers_.back().D, layers_.back().D + rows * C, 0.f);
        return 0.0;
    }
    if (!wb) return loss_rows(yb, 0, rows, denom) / denom;
    double s = 0.0;
    float* d = layers_.back().D;
    for (index_t r = 0; r < rows; ++r) {
        s += double(wb[r]) * loss_rows(yb, r, 1, denom);
        for (index_t j = 0; j < C; ++j) d[r * C + j] *= wb[r];
    }
    return s / denom;
}

void DenseEngine::compute_metrics(const void* yb, index_t rows, const EngineMetric* metrics,
                                  int n_metrics, double* res) {
    const Layer& l = layers_.back();
    const index_t C = l.out, n = rows * C;
    const float* out = l.Y;  // activated outputs, or logits when the loss is fused
    const float* probs = nullptr;
    auto activated = [&]() -> const float* {
        if (!fused_ || l.act == kLinear) return out;
        if (!probs) {
            if (l.act == kSoftmax) softmax_forward(out, probs_, rows, C);
            else activation_forward(static_cast<Activation>(l.act), l.param, out, probs_, n);
            probs = probs_;
        }
        return probs;
    };
    const float* t = static_cast<const float*>(yb);
    for (int m = 0; m < n_metrics; ++m) {
        double v = 0.0;
        switch (metrics[m]) {
            case EngineMetric::sparse_accuracy: {
                // On the probabilities, as the layer path and Keras: logits 1e-8 apart have
                // one float32 softmax, whose argmax is the first of them, not the larger.
                const float* p = activated();
                const std::int32_t* lab = static_cast<const std::int32_t*>(yb);
                index_t hits = 0;
                for (index_t r = 0; r < rows; ++r) hits += argmax_row(p + r * C, C) == lab[r];
                v = double(hits) / double(rows);
                break;
            }
            case EngineMetric::categorical_accuracy: {
                const float* p = activated();
                index_t hits = 0;
                for (index_t r = 0; r < rows; ++r)
                    hits += argmax_row(p + r * C, C) == argmax_row(t + r * C, C);
                v = double(hits) / double(rows);
                break;
            }
            case EngineMetric::binary_accuracy: {
                // On the probabilities, as the layer path: float32 sigmoid(z) rounds to 0.5 for
                // 0 < z < ~1.2e-7, so "z > 0" on logits would disagree there.
                const float* p = activated();
                index_t hits = 0;
                for (index_t i = 0; i < n; ++i) hits += (p[i] > 0.5f) == (t[i] > 0.5f);
                v = double(hits) / double(n);
                break;
            }
            case EngineMetric::mse:
            case EngineMetric::mae: {
                const float* p = activated();
                const bool sq = metrics[m] == EngineMetric::mse;
                double s = 0.0;
                for (index_t i = 0; i < n; ++i) {
                    const double d = double(p[i]) - double(t[i]);
                    s += sq ? d * d : std::fabs(d);
                }
                v = s / double(n);
                break;
            }
        }
        res[m] = v;
    }
}

// The last layer's outputs as predict returns them: a fused loss's logits through their
// softmax/sigmoid, anything else as computed.
void DenseEngine::activated_outputs(index_t rows, float* out) const {
    const Layer& l = layers_.back();
    const index_t n = rows * l.out;
    if (fused_ && l.act == kSoftmax) softmax_forward(l.Y, out, rows, l.out);
    else if (fused_ && l.act != kLinear) activation_forward(static_cast<Activation>(l.act), l.param, l.Y, out, n);
    else std::memcpy(out, l.Y, static_cast<size_t>(n) * sizeof(float));
}

void DenseEngine::update(float* w, const float* g, float* const* slot, int n_slots, index_t n,
                         const EngineHyper& h, std::int64_t step) {
    auto run = [&](index_t b, index_t e) {
        const index_t m = e - b;
        float* s0 = n_slots > 0 ? slot[0] + b : nullptr;
        float* s1 = n_slots > 1 ? slot[1] + b : nullptr;
        float* s2 = n_slots > 2 && h.amsgrad ? slot[2] + b : nullptr;
        // (the sgd case below reads s0 only with momentum; validate() checked the counts)
        switch (opt_) {
            case EngineOptimizer::sgd: sgd_update(w + b, g + b, s0, m, h.lr, h.momentum, h.nesterov); break;
            case EngineOptimizer::adam:
                adam_update(w + b, g + b, s0, s1, m, h.lr, h.beta1, h.beta2, h.epsilon, h.weight_decay, step, s2);
                break;
            case EngineOptimizer::rmsprop: rmsprop_update(w + b, g + b, s0, s1, m, h.lr, h.rho, h.momentum, h.epsilon); break;
            case EngineOptimizer::adagrad: adagrad_update(w + b, g + b, s0, m, h.lr, h.epsilon); break;
            case EngineOptimizer::nadam:
                nadam_update(w + b, g + b, s0, s1, m, h.lr, h.beta1, h.beta2, h.epsilon, h.weight_decay, step);
                break;
            case EngineOptimizer::adamax:
                adamax_update(w + b, g + b, s0, s1, m, h.lr, h.beta1, h.beta2, h.epsilon, h.weight_decay, step);
                break;
            case EngineOptimizer::lion: lion_update(w + b, g + b, s0, m, h.lr, h.beta1, h.beta2, h.weight_decay); break;
            case EngineOptimizer::adadelta:
                adadelta_update(w + b, g + b, s0, s1, m, h.lr, h.rho, h.epsilon, h.weight_decay);
                break;
        }
        if (h.use_ema) {
            // as the layer path: average * m + w * (1 - m), each product rounded, in float
            float* avg = slot[optimizer_slots(opt_, h)] + b;
            const float mo = step == 1 ? 0.f : static_cast<float>(h.ema_momentum);
            const float omm = step == 1 ? 1.f : static_cast<float>(1.0 - h.ema_momentum);
            const bool overwrite = h.ema_overwrite_frequency > 0 && step % h.ema_overwrite_frequency == 0;
            float* wb = w + b;
            for (index_t i = 0; i < m; ++i) {
                const float a = avg[i] * mo + wb[i] * omm;
                avg[i] = a;
                if (overwrite) wb[i] = a;
            }
        }
    };
    // The update is element-wise, so any split gives the same bits. The kernels split only
    // above 64K elements into 32K chunks (7 for mnist's 200K-weight layer: 4 + 3 on two
    // threads); here medium and large tensors are cut into equal parts, a multiple of the
    // thread count, each small enough (<= 64K) that the kernel runs it inline.
    const int T = num_threads();
    if (T > 1 && n >= kUpdateParallelMin) {
        const index_t parts = T * ((n + T * kKernelInlineMax - 1) / (T * kKernelInlineMax));
        const index_t per = (n + parts - 1) / parts;
        const index_t step16 = (per + 15) / 16 * 16;  // 64-byte boundaries: no false sharing
        parallel_for(parts, [&](index_t t) {
            const index_t b = std::min(n, t * step16), e = std::min(n, (t + 1) * step16);
            if (b < e) run(b, e);
        });
    } else {
        run(0, n);
    }
}

namespace {

// sum of squares of g (double); with clipvalue > 0, clamps g first.
double clamp_and_square(float* g, index_t n, float clipvalue) {
    double s = 0.0;
    for (index_t i = 0; i < n; ++i) {
        float v = g[i];
        if (clipvalue > 0.f) g[i] = v = std::min(std::max(v, -clipvalue), clipvalue);
        s += double(v) * double(v);
    }
    return s;
}

void scale(float* g, index_t n, float f) {
    for (index_t i = 0; i < n; ++i) g[i] *= f;
}

}  // namespace

// The optimizer's clipping (pynn/optimizers.py _clip) on this layer's trainable tensors:
// clipvalue element-wise, then clipnorm per tensor (factor clipnorm / norm rounded to float,
// as numpy's g *= python_float does).
namespace {
// clipvalue then clipnorm on one gradient tensor; returns its sum of squares after.
double clip_tensor(float* g, index_t n, const EngineHyper& h) {
    double ss = clamp_and_square(g, n, h.clipvalue);
    if (h.clipnorm > 0.0) {
        const double norm = std::sqrt(ss);
        if (norm > h.clipnorm) {
            const float f = static_cast<float>(h.clipnorm / norm);
            scale(g, n, f);
            ss *= double(f) * double(f);
        }
    }
    return ss;
}
}  // namespace

double DenseEngine::clip_batchnorm(BatchNorm& b, index_t cols, const EngineHyper& h) {
    double total = 0.0;
    if (b.gamma) total += clip_tensor(b.dgamma.data(), cols, h);
    if (b.beta) total += clip_tensor(b.dbeta.data(), cols, h);
    return total;
}

void DenseEngine::update_batchnorm(BatchNorm& b, index_t cols, const EngineHyper& h, std::int64_t step) {
    if (b.gamma) update(b.gamma, b.dgamma.data(), b.g_slot, b.n_g_slots, cols, h, step);
    if (b.beta) update(b.beta, b.dbeta.data(), b.b_slot, b.n_b_slots, cols, h, step);
}

void DenseEngine::scale_batchnorm_grads(BatchNorm& b, index_t cols, float f) {
    if (b.gamma) scale(b.dgamma.data(), cols, f);
    if (b.beta) scale(b.dbeta.data(), cols, f);
}

double DenseEngine::clip_layer(Layer& l, const EngineHyper& h) {
    double total = 0.0;
    const bool bn_tr = l.bn && l.bn->trainable;
    if (l.trainable) {
        total += clip_tensor(l.dW, l.in * l.out, h);
        if (l.has_bias) total += clip_tensor(l.db, l.out, h);
    }
    if (bn_tr) total += clip_batchnorm(*l.bn, l.out, h);
    return total;
}

// Every trainable tensor of the layer: W and b when the Dense trains, gamma and beta when
// its batch normalisation does.
void DenseEngine::update_layer(Layer& l, const EngineHyper& h, std::int64_t step) {
    if (l.trainable) {
        update(l.W, l.dW, l.w_slot, l.n_w_slots, l.in * l.out, h, step);
        if (l.has_bias) update(l.b, l.db, l.b_slot, l.n_b_slots, l.out, h, step);
        project_weight(l.W, l.in, l.out, l.w_con);  // Keras: after the update (and its EMA)
        if (l.has_bias) project_weight(l.b, 1, l.out, l.b_con);
    }
    if (l.bn && l.bn->trainable) update_batchnorm(*l.bn, l.out, h, step);
}


double DenseEngine::backward_update(index_t rows, const EngineHyper& h, std::int64_t step,
                                    std::uint64_t drop_step) {
    const int L = n_layers();
    double pen = 0.0, global_sq = 0.0;
    for (int i = L - 1; i >= lowest_trainable_; --i) {
        Layer& l = layers_[i];
        const bool logits = i == L - 1 && fused_;
        // D holds the gradient w.r.t. what the next layer saw: through the dropout mask
        // first, then back through the layer in reverse (post-activation normalisation,
        // activation, pre-activation normalisation) to the GEMM's output.
        if (l.drop.on()) l.drop.apply(l.D, l.D, rows * l.out, drop_step);
        auto bn_backward = [&] {
            BatchNorm& b = *l.bn;
            normalization_backward(b, l.D, rows, l.out, b.trainable, l.D);
        };
        if (l.bn && !l.bn->pre) bn_backward();
        if (!logits && l.act != kLinear)
            activation_backward(static_cast<Activation>(l.act), l.param, l.Z, l.Y, l.D, l.D, rows * l.out);
        if (l.bn && l.bn->pre) bn_backward();
        const float* X = i > 0 ? layers_[i - 1].input_for_next(true) : first_input(true);
        if (l.trainable) {
            gemm(true, false, l.in, l.out, rows, 1.f, X, l.in, l.D, l.out, 0.f, l.dW, l.out);
            if (l.has_bias) bias_grad(l.D, l.db, rows, l.out);
        }
        // dX with the weights as they were in the forward pass: before this layer's update.
        // The first layer's goes to a trained input normalisation only.
        if (i > lowest_trainable_)
            gemm(false, true, rows, l.in, l.out, 1.f, l.D, l.out, l.W, l.out, 0.f, layers_[i - 1].D, l.in);
        else if (i == 0 && input_bn_trains())
            gemm(false, true, rows, l.in, l.out, 1.f, l.D, l.out, l.W, l.out, 0.f, input_grad_.data(), l.in);
        if (l.trainable && l.regularized()) pen += penalty(l, true);  // weights before their update
        if (l.trainable || (l.bn && l.bn->trainable)) {
            const bool clips = h.clipvalue > 0.f || h.clipnorm > 0.0 || h.global_clipnorm > 0.0;
            const double sq = clips ? clip_layer(l, h) : 0.0;
            // The joint norm needs every gradient first: then all updates wait for the loop.
            if (h.global_clipnorm > 0.0) global_sq += sq;
            else update_layer(l, h, step);
        }
    }
    if (input_bn_trains()) {  // below the first layer: its gamma and beta last
        BatchNorm& b = *input_bn_;
        const index_t C = in_features();
        if (input_drop_.on())  // through the inputs' dropout mask first
            input_drop_.apply(input_grad_.data(), input_grad_.data(), rows * C, drop_step);
        normalization_backward(b, input_grad_.data(), rows, C, true, nullptr);
        const bool clips = h.clipvalue > 0.f || h.clipnorm > 0.0 || h.global_clipnorm > 0.0;
        const double sq = clips ? clip_batchnorm(b, C, h) : 0.0;
        if (h.global_clipnorm > 0.0) global_sq += sq;
        else update_batchnorm(b, C, h, step);
    }
    if (h.global_clipnorm > 0.0) {
        const double norm = std::sqrt(global_sq);
        const float f = norm > h.global_clipnorm ? static_cast<float>(h.global_clipnorm / norm) : 1.f;
        for (int i = L - 1; i >= lowest_trainable_; --i) {
            Layer& l = layers_[i];
            const bool bn_tr = l.bn && l.bn->trainable;
            if (!l.trainable && !bn_tr) continue;
            if (f != 1.f) {
                if (l.trainable) {
                    scale(l.dW, l.in * l.out, f);
                    if (l.has_bias) scale(l.db, l.out, f);
                }
                if (bn_tr) scale_batchnorm_grads(*l.bn, l.out, f);
            }
            update_layer(l, h, step);
        }
        if (input_bn_trains()) {
            if (f != 1.f) scale_batchnorm_grads(*input_bn_, in_features(), f);
            update_batchnorm(*input_bn_, in_features(), h, step);
        }
    }
    return pen;
}

index_t DenseEngine::train(const float* x, const void* y, const std::int64_t* order, index_t n,
                        index_t first, index_t last, index_t bs, const EngineHyper& h,
                        std::int64_t step, const EngineMetric* metrics, int n_metrics,
                        double* result, const float* sample_weight, float* outputs) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!training_) fail("train: this engine was built for predict only (training=False)");
    if (step < 0 || step > (std::int64_t(1) << 62))
        fail("step: expected the optimizer's step count (>= 0), got " + std::to_string(step));
    const bool sparse = loss_ == EngineLoss::softmax_xent_sparse;
    // Under the same lock as the step: nothing can rebind or reconfigure in between.
    check_batches(n, first, last, bs);
    // (first == last == the batch count past a short last batch: r0 > n, an empty chunk)
    const index_t chunk_r0 = std::min(n, first * bs);
    copy_chunk(order, n, chunk_r0, std::max(chunk_r0, std::min(n, last * bs)),
               sparse ? static_cast<const std::int32_t*>(y) : nullptr);
    validate(first, last, h, metrics, n_metrics);
    // Adam's first moment of a weight whose gradient stays zero (a dead ReLU unit) decays by
    // beta_1 every step into the denormal range, where each float operation takes a microcode
    // assist: measured on mnist_mlp, epochs slowed from ~105k to ~59k samples/s once a few
    // thousand such moments had formed. Flushing changes only values below 1.2e-38
    // (TensorFlow's CPU kernels flush the same way); the pool's tasks run in this mode too.
    FlushDenormals ftz;
    const index_t in = in_features(), C = out_features();
    // Frozen layers' penalties are constant during the call (Keras adds them to the loss too).
    double frozen_penalty = 0.0;
    for (const Layer& l : layers_)
        if (!l.trainable && l.regularized()) frozen_penalty += penalty(l, false);
    for (index_t b = first; b < last; ++b) {
        const index_t r0 = b * bs, rows = std::min(n, r0 + bs) - r0;
        const std::int64_t* idx = chunk_order_.data() + (r0 - chunk_r0);  // (checked copies)
        // Gather this batch's rows (never the whole data set). Random rows of a large x miss
        // the caches: with several threads more misses are in flight at once.
        auto gather = [&](index_t a, index_t e) {
            for (index_t r = a; r < e; ++r)
                std::memcpy(xb_ + r * in, x + idx[r] * in, static_cast<size_t>(in) * sizeof(float));
        };
        const int T = num_threads();
        if (T > 1 && rows * in >= kGatherParallelMin && rows >= 2 * T)
            parallel_for(T, [&](index_t t) { gather(rows * t / T, rows * (t + 1) / T); });
        else
            gather(0, rows);
        if (sparse) {
            std::memcpy(yb_, chunk_labels_.data() + (r0 - chunk_r0),
                        static_cast<size_t>(rows) * sizeof(std::int32_t));
        } else {
            const float* t = static_cast<const float*>(y);
            float* dst = static_cast<float*>(yb_);
            for (index_t r = 0; r < rows; ++r)
                std::memcpy(dst + r * C, t + idx[r] * C, static_cast<size_t>(C) * sizeof(float));
        }
        const std::uint64_t drop_step = static_cast<std::uint64_t>(step + (b - first));
        if (sample_weight)
            for (index_t r = 0; r < rows; ++r) wb_[r] = sample_weight[idx[r]];
        forward(xb_, rows, true, nullptr, drop_step);
        double* res = result + (b - first) * (1 + n_metrics);
        res[0] = loss_and_grad(yb_, rows, sample_weight ? wb_ : nullptr);
        if (n_metrics) compute_metrics(yb_, rows, metrics, n_metrics, res + 1);
        if (outputs) activated_outputs(rows, outputs + (r0 - first * bs) * C);
        EngineHyper hb = h;
        if (h.lr_steps) hb.lr = h.lr_steps[b - first];
        res[0] += frozen_penalty + backward_update(rows, hb, step + (b - first) + 1, drop_step);
        // Beyond float's range counts as infinite: the model's float32 loss would be (as
        // Keras'), and its weights are about to be ruined (NaN fails the test too).
        if (h.stop_on_nonfinite_loss &&
            !(std::fabs(res[0]) <= static_cast<double>(std::numeric_limits<float>::max())))
            return b - first + 1;
    }
    return last - first;
}

void DenseEngine::predict(const float* x, float* out, index_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    const index_t in = in_features(), C = out_features();
    for (index_t r0 = 0; r0 < n; r0 += max_batch_) {
        const index_t rows = std::min(max_batch_, n - r0);
        forward(x + r0 * in, rows, false, out + r0 * C, 0);
    }
}

// ---- shuffling ------------------------------------------------------------------------------

namespace {

inline std::uint64_t splitmix64(std::uint64_t& s) {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

struct Xoshiro256ss {
    std::uint64_t s[4];
    explicit Xoshiro256ss(std::uint64_t seed) {
        for (auto& w : s) w = splitmix64(seed);  // never all zero
    }
    std::uint64_t next() {
        const std::uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return r;
    }
    // Uniform in [0, bound), unbiased (Lemire's multiply-and-reject).
    std::uint64_t below(std::uint64_t bound) {
        unsigned __int128 m = static_cast<unsigned __int128>(next()) * bound;
        std::uint64_t low = static_cast<std::uint64_t>(m);
        if (low < bound) {
            const std::uint64_t thresh = (0 - bound) % bound;
            while (low < thresh) {
                m = static_cast<unsigned __int128>(next()) * bound;
                low = static_cast<std::uint64_t>(m);
            }
        }
        return static_cast<std::uint64_t>(m >> 64);
    }
};

}  // namespace

void shuffled_order(std::int64_t* out, index_t n, std::uint64_t seed) {
    for (index_t i = 0; i < n; ++i) out[i] = i;
    Xoshiro256ss rng(seed);
    for (index_t i = n - 1; i > 0; --i) {
        const index_t j = static_cast<index_t>(rng.below(static_cast<std::uint64_t>(i) + 1));
        std::swap(out[i], out[j]);
    }
}

}  // namespace pynn
