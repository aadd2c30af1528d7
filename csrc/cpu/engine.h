// The native training engine for a stack of Dense layers: a whole fit() epoch chunk (gather
// the batch by the shuffled order, forward, loss, backward, optimizer update, per-batch loss
// and metrics) runs in C++ with no Python and no allocation per step. The formulas are the
// layer path's (pynn/layers/dense.py + pynn/model.py) built from the same kernels
// (pynn/gemm.h, pynn/kernels.h), so both agree to float32 rounding.
// Shapes: L layers, sizes[0..L] = [in, h1, ..., out]; W_i (sizes[i], sizes[i+1]) row-major,
// b_i (sizes[i+1]). x (N, in) float32; targets int32 (N,) (sparse cross-entropy) or float32
// (N, out). Every buffer is sized for max_batch rows when the engine is built.
// No pybind11 here: raw pointers and sizes. Configuration errors throw std::invalid_argument
// (pybind11 turns it into ValueError); the bindings check the arrays themselves.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pynn/common.h"

namespace pynn {

enum class EngineLoss : int {
    softmax_xent_sparse,  // fused: last pre-activation are logits, labels int32
    softmax_xent_dense,   // fused: logits, dense targets
    bce_logits,           // fused: logits, stable from-logits BCE
    bce,                  // on probabilities, clipped to [eps, 1 - eps]
    mse,
    mae,
    huber,
};
// Keras' reduction of the per-sample losses: their mean (sum_over_batch_size), their sum, or
// their weighted sum over the weights' sum (mean_with_sample_weight).
enum class LossReduction : int { mean, sum, mean_with_sample_weight };
enum class EngineOptimizer : int { sgd, adam, rmsprop, adagrad, nadam, adamax, lion, adadelta };
// The most optimizer slots a parameter has (Adam with AMSGrad: m, v, v_hat; then the moving
// average of use_ema).
constexpr int kMaxSlots = 4;
enum class EngineMetric : int { sparse_accuracy, categorical_accuracy, binary_accuracy, mse, mae };

// Parses the binding names ("softmax_xent_sparse", "adam", "binary_accuracy", ...); throws
// std::invalid_argument listing the known names.
EngineLoss parse_engine_loss(const std::string& name);
EngineOptimizer parse_engine_optimizer(const std::string& name);
EngineMetric parse_engine_metric(const std::string& name);

// Throws std::invalid_argument unless batch_size >= 1 and 0 <= first <= last <= the number of
// batches of batch_size in n rows (counted without a product or sum that could overflow).
// train() checks it under its lock; its binding first, before anything is sized by it.
void check_batch_range(index_t n, index_t first, index_t last, index_t batch_size);

// Keras 3's weight constraints (pynn.constraints), projecting a weight after its update.
enum class ConstraintKind : int { none = 0, max_norm = 1, min_max_norm = 2, unit_norm = 3, non_neg = 4 };

// The norms are taken over a weight seen as (rows, cols): per column (axis 0 of a kernel:
// each unit's incoming weights), per row, or over the whole weight.
enum class NormAxis : int { columns = 0, rows = 1, whole = 2 };

struct WeightConstraint {
    ConstraintKind kind = ConstraintKind::none;
    NormAxis axis = NormAxis::columns;
    double min_value = 0.0, max_value = 0.0, rate = 1.0, epsilon = 1e-7;
};

// w (rows x cols, row-major) projected in place: NonNeg max(w, 0); the others scale each
// norm n to desired / (epsilon + n) times itself, desired being min(n, max) (MaxNorm),
// rate * clip(n, min, max) + (1 - rate) * n (MinMaxNorm) or 1 (UnitNorm), as Keras.
void project_weight(float* w, index_t rows, index_t cols, const WeightConstraint& c);

struct EngineHyper {
    float lr = 0.f;
    // A schedule's rates, one per batch of the call (lr_steps[b - first]); nullptr: lr for all.
    const float* lr_steps = nullptr;
    float momentum = 0.f;  // sgd, rmsprop
    // sgd, rmsprop: the optimizer keeps a momentum slot (decided in double, as the Python
    // side does: a momentum that rounds to 0 in float still has its slot)
    bool momentum_slot = false;
    bool nesterov = false;
    bool amsgrad = false;  // adam
    double beta1 = 0.9, beta2 = 0.999, rho = 0.9;  // double: 1 - beta formed before rounding
    float epsilon = 1e-7f;
    float weight_decay = 0.f;  // decoupled (AdamW) when != 0; all but sgd, rmsprop, adagrad
    float clipvalue = 0.f;     // > 0: clamp each gradient element to [-clipvalue, clipvalue]
    double clipnorm = 0.0;     // > 0: rescale each tensor's gradient to this L2 norm at most
    double global_clipnorm = 0.0;  // > 0: rescale all gradients to this joint norm at most
    // Keras 3's use_ema: after each step average = m average + (1 - m) w (m = 0 at step 1),
    // the average being the slot after the optimizer's own; every ema_overwrite_frequency
    // steps (0 = never) the weights take their averages.
    bool use_ema = false;
    double ema_momentum = 0.99;
    std::int64_t ema_overwrite_frequency = 0;
    // Stop after the first batch whose loss is NaN or infinite (beyond float's range: the
    // float32 loss would be; its update made), as Keras'
    // TerminateOnNaN stops the layer-by-layer loop; the rest of the call's batches never run.
    bool stop_on_nonfinite_loss = false;
};

// The slots the optimizer's update itself uses with these hyper-parameters (without use_ema's
// average).
int optimizer_slots(EngineOptimizer opt, const EngineHyper& h);

class DenseEngine {
public:
    static constexpr int kSoftmax = kActivationCount;  // the code after common.h's Activation

    DenseEngine(const std::vector<index_t>& sizes, const std::vector<int>& activations,
                const std::vector<float>& act_params, const std::vector<bool>& use_bias,
                EngineLoss loss, float loss_param, EngineOptimizer optimizer, index_t max_batch,
                bool training = true);  // false: predict only, no batch or gradient buffers
    ~DenseEngine();
    DenseEngine(const DenseEngine&) = delete;
    DenseEngine& operator=(const DenseEngine&) = delete;

    int n_layers() const { return static_cast<int>(layers_.size()); }
    index_t in_features() const { return sizes_.front(); }
    index_t out_features() const { return sizes_.back(); }
    index_t max_batch() const { return max_batch_; }
    EngineLoss loss() const { return loss_; }
    EngineOptimizer optimizer() const { return opt_; }
    bool has_bias(int layer) const { return layers_[layer].has_bias; }
    index_t layer_in(int layer) const { return layers_[layer].in; }
    index_t layer_out(int layer) const { return layers_[layer].out; }
    bool bound() const { return bound_; }
    bool training() const { return training_; }

    // Inverted dropout on layer `layer`'s activated output while training (not on the last
    // layer; -1: the model's inputs, after their normalisation if any): the counter-based
    // masks of math/dropout.h with this seed, the step being the optimizer's 0-based
    // iteration, so masks equal the layer path's Dropout. rate 0 removes it.
    void set_dropout(int layer, double rate, std::uint64_t seed);

    // How each batch's loss is reduced (training; the mean unless set).
    void set_reduction(LossReduction r);

    // Keras L1/L2 penalties on layer `layer`'s kernel and bias: added to each batch's loss
    // (frozen layers too) and to the trainable parameters' gradients before their update.
    void set_regularizer(int layer, double kernel_l1, double kernel_l2, double bias_l1,
                         double bias_l2);

    // A constraint on layer `layer`'s kernel (bias = false; (in, out) rows x cols) or bias
    // (seen as 1 x out), applied after each of its updates (kind none removes it).
    void set_constraint(int layer, bool bias, const WeightConstraint& c);

    // Batch normalization in layer `layer` (not the last): pre = between its GEMM and its
    // activation, else after the activation (before any dropout); layer -1 normalises the
    // model's inputs (pre is ignored). Keras' BatchNormalization:
    // batch statistics and trained gamma/beta while training when `trainable`, the moving
    // statistics otherwise (and always in predict); the moving statistics are updated in
    // place. gamma/beta nullable (scale/center off); their optimizer slots as in bind().
    // std_floor > 0: the standard deviation divided by is max(sqrt(var + epsilon),
    // std_floor), and epsilon may be 0 (Keras' Normalization: max(sqrt(var), 1e-7)).
    // per_row: Keras' LayerNormalization instead (centred) or RMSNormalization (not
    // centred: x / sqrt(mean(x^2) + epsilon)): each row's own statistics over its columns,
    // in training and inference alike; no moving statistics (nullptr), momentum unused.
    void set_batchnorm(int layer, bool pre, double momentum, double epsilon, bool trainable,
                       float* gamma, float* beta, float* moving_mean, float* moving_var,
                       const std::vector<float*>& gamma_slots,
                       const std::vector<float*>& beta_slots, double std_floor = 0.0,
                       bool per_row = false, bool centred = true);

    // params: [W0, b0, W1, ...] (b omitted without bias), updated in place by train.
    // trainable: per layer. state: per param, the optimizer's slots (sgd: 0 or 1, adam: 2 or 3
    // with AMSGrad, rmsprop: 1 or 2, adagrad and lion: 1, nadam, adamax and adadelta: 2; one
    // more, the moving average, with use_ema; frozen params may have none). Sizes are the
    // caller's duty.
    void bind(const std::vector<float*>& params, const std::vector<bool>& trainable,
              const std::vector<std::vector<float*>>& state);

    // Runs batches [first_batch, last_batch): batch b holds rows order[b*bs : (b+1)*bs] (the
    // last one may be short). result: (last - first) x (1 + n_metrics) doubles: the batch's
    // mean loss before its update, then each metric's batch mean. Batch j of the call uses
    // step + j + 1 as the optimizer's iteration (Adam's bias correction) and step + j as its
    // dropout step. Runs validate first (under the engine's lock), so a bad argument throws
    // before anything changes.
    // sample_weight (nullable): one weight per row of x, scaling that row's loss and gradient.
    // outputs (nullable): receives each batch's model outputs (activations applied, as
    // predict returns them) before its update, batch after batch: (rows of the batches) x out,
    // for metrics computed by the caller.
    // Returns the batches run: last_batch - first_batch, fewer only when
    // hyper.stop_on_nonfinite_loss stopped the call (result's later rows are then unset).
    index_t train(const float* x, const void* y, const std::int64_t* order, index_t n,
               index_t first_batch, index_t last_batch, index_t batch_size,
               const EngineHyper& hyper, std::int64_t step, const EngineMetric* metrics,
               int n_metrics, double* result, const float* sample_weight = nullptr,
               float* outputs = nullptr);

    // out (n, out) = the model's outputs with every activation applied (softmax/sigmoid
    // included), in chunks of max_batch rows.
    void predict(const float* x, float* out, index_t n);

private:
    // An inverted dropout inside the step (training only; rate 0: none), with the
    // counter-based masks of math/dropout.h for this seed and the batch's step.
    struct Drop {
        double rate = 0.0;
        std::uint64_t seed = 0;
        std::vector<float> out;  // max_batch x width: the masked values
        bool on() const { return rate > 0.0; }
        // y[0:n] = x[0:n] * mask (in place when x == y).
        void apply(const float* x, float* y, index_t n, std::uint64_t step) const;
    };
    struct BatchNorm {
        bool pre = false;  // between GEMM and activation, else after the activation
        bool per_row = false;  // layer normalisation: statistics per row (inv_std holds one
        bool centred = true;   //   value per row; no mean or var), centred or root mean square
        double momentum = 0.99, epsilon = 1e-3, std_floor = 0.0;
        bool trainable = false;
        float* gamma = nullptr;  // bound (nullable)
        float* beta = nullptr;
        float* moving_mean = nullptr;
        float* moving_var = nullptr;
        float* g_slot[kMaxSlots] = {};
        float* b_slot[kMaxSlots] = {};
        int n_g_slots = 0, n_b_slots = 0;
        bool used_batch = false;  // the last forward normalised with batch statistics
        // Owned, sized at set_batchnorm: xhat and (post) the normalised output per row;
        // per column the statistics in use, gradients and scratch.
        std::vector<float> xhat, out, mean, var, inv_std, dgamma, dbeta, tmp;
        std::vector<double> acc;
    };
    struct Layer {
        index_t in = 0, out = 0;
        int act = 0;  // Activation code or kSoftmax
        float param = 0.f;
        bool has_bias = false;
        bool trainable = false;
        float* W = nullptr;  // bound (the model's arrays)
        float* b = nullptr;
        float* w_slot[kMaxSlots] = {};
        float* b_slot[kMaxSlots] = {};
        int n_w_slots = 0, n_b_slots = 0;
        float* Y = nullptr;   // owned: output, max_batch x out (logits for a fused last layer)
        float* Z = nullptr;   // pre-activation (activation_needs_z only)
        float* D = nullptr;   // gradient w.r.t. the output, then w.r.t. the pre-activation
        float* dW = nullptr;  // in x out
        float* db = nullptr;  // out
        double w_l1 = 0.0, w_l2 = 0.0, b_l1 = 0.0, b_l2 = 0.0;  // weight penalties
        WeightConstraint w_con, b_con;  // projections after the updates
        bool regularized() const { return w_l1 != 0.0 || w_l2 != 0.0 || b_l1 != 0.0 || b_l2 != 0.0; }
        std::unique_ptr<BatchNorm> bn;
        Drop drop;  // after the activation: out is Y with the mask applied, the next input
        // The next layer's input: the dropped output while training with dropout, else the
        // post-activation batch normalisation's output, else Y.
        const float* input_for_next(bool training) const {
            if (training && drop.on()) return drop.out.data();
            return bn && !bn->pre ? bn->out.data() : Y;
        }
    };

    void forward(const float* x0, index_t rows, bool training, float* final_out,
                 std::uint64_t drop_step);
    void forward_one_row(const float* x, float* final_out);  // predict's single row (x86)
    static bool pairs_with_next(const Layer& a, const Layer& b);
    double loss_and_grad(const void* yb, index_t rows, const float* wb);
    double loss_rows(const void* yb, index_t r0, index_t rows, double denom);
    void compute_metrics(const void* yb, index_t rows, const EngineMetric* metrics,
                         int n_metrics, double* res);
    void activated_outputs(index_t rows, float* out) const;
    // Returns the weight penalty of the trainable layers, taken before their update.
    double backward_update(index_t rows, const EngineHyper& h, std::int64_t step,
                           std::uint64_t drop_step);
    double penalty(const Layer& l, bool add_gradients);
    // clipvalue and clipnorm on one layer's gradients; returns their sum of squares after.
    double clip_layer(Layer& l, const EngineHyper& h);
    void update_layer(Layer& l, const EngineHyper& h, std::int64_t step);
    void batchnorm_forward(BatchNorm& b, index_t cols, const float* z, index_t rows, bool training,
                           float* out);
    void normalization_backward(BatchNorm& b, const float* dy, index_t rows, index_t cols,
                                bool grads, float* dx);
    double clip_batchnorm(BatchNorm& b, index_t cols, const EngineHyper& h);
    void update_batchnorm(BatchNorm& b, index_t cols, const EngineHyper& h, std::int64_t step);
    void scale_batchnorm_grads(BatchNorm& b, index_t cols, float f);
    // The input normalisation trains (needs the first layer's input gradient).
    bool input_bn_trains() const {
        return input_bn_ && input_bn_->trainable && (input_bn_->gamma || input_bn_->beta);
    }
    void find_lowest_trainable();
    void update(float* w, const float* g, float* const* slot, int n_slots, index_t n,
                const EngineHyper& h, std::int64_t step);

    std::vector<index_t> sizes_;
    std::vector<Layer> layers_;
    EngineLoss loss_;
    float loss_param_;
    LossReduction reduction_ = LossReduction::mean;
    EngineOptimizer opt_;
    index_t max_batch_;
    bool training_;
    bool fused_ = false;   // loss takes the last layer's pre-activation as logits
    int lowest_trainable_ = 0;
    bool bound_ = false;

    float* arena_ = nullptr;   // one 64-byte aligned block for every buffer below
    float* xb_ = nullptr;      // gathered inputs, max_batch x in
    void* yb_ = nullptr;       // gathered targets (int32 labels or float rows)
    float* probs_ = nullptr;   // activated outputs of a fused last layer (metrics only)
    float* wb_ = nullptr;      // gathered sample weights, max_batch
    std::unique_ptr<BatchNorm> input_bn_;  // normalisation of the model's inputs (optional)
    std::vector<float> input_grad_;        // max_batch x in: its incoming gradient
    Drop input_drop_;                      // of the (normalised) inputs: out is max_batch x in
    // What the first layer sees: the inputs after their normalisation and dropout (while
    // training), as present.
    const float* first_input(bool training) const {
        if (training && input_drop_.on()) return input_drop_.out.data();
        return input_bn_ ? input_bn_->out.data() : xb_;
    }

    std::vector<float> gemv_parts_;  // predict(1 row): partial sums of the threads' row slices
    // train()'s checks, each throwing std::invalid_argument: the batch indices and
    // batch_size; the batches' order entries (in range) and labels (in [0, out)), copied
    // into chunk_order_ / chunk_labels_ first (the step loop reads only the copies);
    // hyper-parameters, optimizer slots and metrics that fit the targets.
    void check_batches(index_t n, index_t first_batch, index_t last_batch, index_t batch_size) const;
    void copy_chunk(const std::int64_t* order, index_t n, index_t r0, index_t r1,
                    const std::int32_t* labels);
    void validate(index_t first_batch, index_t last_batch, const EngineHyper& h,
                  const EngineMetric* metrics, int n_metrics) const;
    std::vector<std::int64_t> chunk_order_;  // train: the call's order[r0:r1], checked
    std::vector<std::int32_t> chunk_labels_;  // and its rows' labels (sparse), checked
    std::mutex mu_;  // train/predict share the buffers: one call at a time per engine
};

// Fisher-Yates permutation of [0, n) driven by xoshiro256** seeded through splitmix64:
// the same seed gives the same order on every platform.
void shuffled_order(std::int64_t* out, index_t n, std::uint64_t seed);

}  // namespace pynn
