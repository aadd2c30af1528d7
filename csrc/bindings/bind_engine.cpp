// pynn._C bindings of the native Dense training engine (csrc/cpu/engine.h):
//   DenseEngine(sizes, activations, act_params, use_bias, loss, loss_param, optimizer, max_batch,
//               training=True)
//   .set_dropout(layer, rate, seed)      dropout after that layer's activation (training;
//                                        layer -1: the inputs)
//   .set_reduction(name)                 "sum_over_batch_size" (default), "sum" or
//                                        "mean_with_sample_weight": Keras' loss reduction
//   .set_regularizer(layer, kernel_l1, kernel_l2, bias_l1, bias_l2)   Keras L1/L2 penalties
//   .set_constraint(layer, bias, kind, axis, min_value, max_value, rate, epsilon)
//                                        a Keras weight constraint after each update
//   .set_batchnorm(layer, pre, momentum, epsilon, trainable, gamma, beta, moving_mean,
//                  moving_variance, gamma_slots, beta_slots, std_floor=0)   keeps references
//   .bind(params, trainable, state)      keeps references to every bound array
//   .train(x, y, order, first_batch, last_batch, batch_size, hyper, step, metrics,
//          sample_weight=None, outputs=None)
//        -> float64 (n_batches, 1 + len(metrics)): per-batch loss, then metrics (fewer rows
//           when hyper['stop_on_nonfinite_loss'] stopped it at a NaN or infinite loss)
//   .predict(x, out)                     out = model outputs, every activation applied
//   .predict_current(x, model, sample_shape, guards) -> outputs, or None (x or model not as
//                                        the engine was built for: the caller's slow path)
//   shuffled_order(n, seed) -> int64 permutation of range(n)
// Every array is checked (type, dtype, ndim, shape, contiguity, writability, overlap) before
// a pointer is taken; train validates indices and labels (under the engine's lock) before
// touching the weights, so a bad argument raises and never leaves a half-trained model. The GIL is released around the
// work (validation included).
#include <pybind11/numpy.h>
#include <cmath>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "bindings/release_gil.h"
#include "cpu/engine.h"
#include "pynn/kernels.h"

namespace py = pybind11;

namespace pynn::bind {
namespace {

// numpy.ndarray, looked up when the module is imported (an import from a __del__ at
// interpreter exit fails)
PyTypeObject* ndarray_type = nullptr;

py::array as_array(const py::handle& h, const std::string& name) {
    if (!py::isinstance<py::array>(h))
        throw py::type_error(name + ": expected a numpy array, got " +
                             std::string(py::str(py::type::handle_of(h).attr("__name__"))));
    return py::reinterpret_borrow<py::array>(h);
}

void check_c_contiguous(const py::array& a, const std::string& name) {
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(name + ": expected a C-contiguous array (use numpy.ascontiguousarray)");
}

// float32, C-contiguous, exactly `shape`.
void check_float_shape(const py::array& a, const std::string& name, std::vector<index_t> shape,
                       bool writable) {
    if (!has_dtype<float>(a))
        throw py::type_error(name + ": expected dtype float32, got " + std::string(py::str(a.dtype())));
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
    if (!ok) {
        std::string s = "(";
        for (size_t i = 0; i < shape.size(); ++i)
            s += std::to_string(shape[i]) + (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
        throw py::value_error(name + ": expected shape " + s + "), got " + shape_str(a));
    }
    check_c_contiguous(a, name);
    if (writable && !a.writeable()) throw py::value_error(name + ": array is read-only");
}

bool overlap(const py::array& a, const py::array& b) {
    if (a.nbytes() == 0 || b.nbytes() == 0) return false;
    auto a0 = reinterpret_cast<std::uintptr_t>(a.data()), b0 = reinterpret_cast<std::uintptr_t>(b.data());
    return a0 < b0 + static_cast<std::uintptr_t>(b.nbytes()) && b0 < a0 + static_cast<std::uintptr_t>(a.nbytes());
}

// Overlapping memory among arrays, found by sorting their extents by start and comparing
// each with the one reaching furthest before it: O(n log n) (an all-pairs check took most of
// a 1600-layer model's fit setup). Arrays in group 0 and group 1: with `within`, the first
// overlapping pair of any two; without, of an array of group 0 and one of group 1 (groups
// already checked alone). Returns their indices in `arrays`, or (-1, -1).
std::pair<long, long> first_overlap(const std::vector<const py::array*>& arrays,
                                    const std::vector<int>& group, bool within) {
    struct Extent { std::uintptr_t start, end; long index; int group; };
    std::vector<Extent> extents;
    extents.reserve(arrays.size());
    for (size_t i = 0; i < arrays.size(); ++i) {
        const py::array& a = *arrays[i];
        if (a.nbytes() == 0) continue;
        const auto start = reinterpret_cast<std::uintptr_t>(a.data());
        extents.push_back({start, start + static_cast<std::uintptr_t>(a.nbytes()),
                           static_cast<long>(i), group[i]});
    }
    std::sort(extents.begin(), extents.end(),
              [](const Extent& a, const Extent& b) { return a.start < b.start; });
    const Extent* furthest[2] = {nullptr, nullptr};  // of each group, among those seen
    for (const Extent& e : extents) {
        for (int g = 0; g < 2; ++g) {
            const Extent* f = furthest[g];
            if (f != nullptr && (within || g != e.group) && e.start < f->end)
                return {std::min(f->index, e.index), std::max(f->index, e.index)};
        }
        if (furthest[e.group] == nullptr || e.end > furthest[e.group]->end) furthest[e.group] = &e;
    }
    return {-1, -1};
}

double hyper_value(const py::dict& hyper, const char* key, bool required, double dflt, const char* who) {
    PyObject* v = PyDict_GetItemString(hyper.ptr(), key);  // borrowed
    if (!v) {
        if (required)
            throw py::value_error(std::string("hyper: missing key '") + key + "' (needed by " + who + ")");
        return dflt;
    }
    const double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::type_error(std::string("hyper['") + key + "']: expected a number, got " +
                             std::string(py::str(py::type::handle_of(py::handle(v)).attr("__name__"))));
    }
    return d;
}

class PyDenseEngine {
public:
    PyDenseEngine(const std::vector<index_t>& sizes, const std::vector<int>& activations,
                  const std::vector<float>& act_params, const std::vector<bool>& use_bias,
                  const std::string& loss, float loss_param, const std::string& optimizer,
                  index_t max_batch, bool training)
        : eng_(sizes, activations, act_params, use_bias, parse_engine_loss(loss), loss_param,
               parse_engine_optimizer(optimizer), max_batch, training) {}

    void set_batchnorm(int layer, bool pre, double momentum, double epsilon, bool trainable,
                       const py::object& gamma, const py::object& beta, const py::object& mean,
                       const py::object& var, const py::sequence& gamma_slots,
                       const py::sequence& beta_slots, double std_floor, bool per_row,
                       bool centred) {
        if (layer < -1 || layer + 1 >= eng_.n_layers())
            throw py::value_error("set_batchnorm: layer must be in [-1, " + std::to_string(eng_.n_layers() - 1) +
                                  ") (-1: the inputs; batch normalization after the output layer is not "
                                  "supported), got " + std::to_string(layer));
        const index_t C = layer < 0 ? eng_.in_features() : eng_.layer_out(layer);
        std::vector<py::array> keep;
        // A (C,) float32 writable array, kept alive with the engine; nullptr for None.
        auto take = [&](const py::object& o, const std::string& name, bool optional) -> float* {
            if (o.is_none()) {
                if (optional) return nullptr;
                throw py::value_error(name + ": required");
            }
            py::array a = as_array(o, name);
            check_float_shape(a, name, {C}, true);
            keep.push_back(a);
            return static_cast<float*>(a.mutable_data());
        };
        float* g = take(gamma, "gamma", true);
        float* bt = take(beta, "beta", true);
        float* mm = take(mean, "moving_mean", per_row);  // (per_row keeps none: None)
        float* mv = take(var, "moving_variance", per_row);
        std::vector<float*> gs, bs;
        for (size_t k = 0; k < gamma_slots.size(); ++k)
            gs.push_back(take(gamma_slots[k], "gamma_slots[" + std::to_string(k) + "]", false));
        for (size_t k = 0; k < beta_slots.size(); ++k)
            bs.push_back(take(beta_slots[k], "beta_slots[" + std::to_string(k) + "]", false));
        // The optimizer loops use __restrict pointers and the statistics are written in
        // place: every array must be its own buffer, apart from the bound parameters too.
        for (size_t i = 0; i < keep.size(); ++i) {
            for (size_t j = i + 1; j < keep.size(); ++j)
                if (overlap(keep[i], keep[j]))
                    throw py::value_error("set_batchnorm: gamma, beta, the moving statistics and the slots "
                                          "must be separate buffers");
            for (const py::array& r : refs_)
                if (overlap(keep[i], r))
                    throw py::value_error("set_batchnorm: arrays must not share memory with the bound parameters");
            for (size_t other = 0; other < bn_refs_.size(); ++other) {
                if (other == static_cast<size_t>(layer + 1)) continue;  // this layer's: replaced
                for (const py::array& r : bn_refs_[other])
                    if (overlap(keep[i], r))
                        throw py::value_error("set_batchnorm: arrays must not share memory with another "
                                              "layer's batch normalization arrays");
            }
        }
        {
            ReleaseGil nogil;
            eng_.set_batchnorm(layer, pre, momentum, epsilon, trainable, g, bt, mm, mv, gs, bs,
                               std_floor, per_row, centred);
        }
        bn_refs_.resize(static_cast<size_t>(eng_.n_layers()) + 1);  // [0]: the inputs' normalisation
        bn_refs_[static_cast<size_t>(layer + 1)] = std::move(keep);  // replaces a previous setting
    }

    bool overlaps_batchnorm(const py::array& a) const {
        for (const auto& layer : bn_refs_)
            for (const py::array& r : layer)
                if (overlap(a, r)) return true;
        return false;
    }

    // Every array the engine writes or reads by reference: bound parameters and state, and
    // batch normalisation's arrays.
    bool overlaps_bound(const py::array& a) const {
        for (const py::array& r : refs_)
            if (overlap(a, r)) return true;
        return overlaps_batchnorm(a);
    }

    void set_regularizer(int layer, double kl1, double kl2, double bl1, double bl2) {
        ReleaseGil nogil;
        eng_.set_regularizer(layer, kl1, kl2, bl1, bl2);
    }

    void set_constraint(int layer, bool bias, int kind, int axis, double min_value,
                        double max_value, double rate, double epsilon) {
        pynn::WeightConstraint c;
        c.kind = static_cast<pynn::ConstraintKind>(kind);
        c.axis = static_cast<pynn::NormAxis>(axis);
        c.min_value = min_value, c.max_value = max_value, c.rate = rate, c.epsilon = epsilon;
        ReleaseGil nogil;  // (set_constraint checks kind and axis under the engine's lock)
        eng_.set_constraint(layer, bias, c);
    }

    void set_reduction(const std::string& name) {
        pynn::LossReduction r;
        if (name == "sum_over_batch_size") r = pynn::LossReduction::mean;
        else if (name == "sum") r = pynn::LossReduction::sum;
        else if (name == "mean_with_sample_weight") r = pynn::LossReduction::mean_with_sample_weight;
        else throw py::value_error("set_reduction: reduction must be 'sum_over_batch_size', 'sum' or "
                                   "'mean_with_sample_weight', got '" + name + "'");
        ReleaseGil nogil;  // waits for a running train/predict of this engine
        eng_.set_reduction(r);
    }

    void set_dropout(int layer, double rate, std::uint64_t seed) {
        ReleaseGil nogil;  // waits for a running train/predict of this engine
        eng_.set_dropout(layer, rate, seed);
    }

    void bind(const py::sequence& params, const py::sequence& trainable, const py::sequence& state) {
        const int L = eng_.n_layers();
        size_t n_params = 0;
        for (int i = 0; i < L; ++i) n_params += eng_.has_bias(i) ? 2 : 1;
        if (params.size() != n_params)
            throw py::value_error("params: expected " + std::to_string(n_params) +
                                  " arrays [W0, b0, W1, ...] (b omitted where use_bias is False), got " +
                                  std::to_string(params.size()));
        if (trainable.size() != static_cast<size_t>(L))
            throw py::value_error("trainable: expected " + std::to_string(L) + " flags (one per layer), got " +
                                  std::to_string(trainable.size()));
        if (state.size() != n_params)
            throw py::value_error("state: expected " + std::to_string(n_params) +
                                  " lists (one per param), got " + std::to_string(state.size()));
        int min_slots = 0, max_slots = 0;
        const char* slots_doc = "";
        switch (eng_.optimizer()) {
            case EngineOptimizer::sgd: min_slots = 0, max_slots = 1, slots_doc = "[] or [velocity]"; break;
            case EngineOptimizer::adam: min_slots = 2, max_slots = 3, slots_doc = "[m, v] or [m, v, v_hat]"; break;
            case EngineOptimizer::rmsprop: min_slots = 1, max_slots = 2, slots_doc = "[velocity] or [velocity, momentum]"; break;
            case EngineOptimizer::adagrad: min_slots = max_slots = 1, slots_doc = "[accumulator]"; break;
            case EngineOptimizer::nadam: min_slots = max_slots = 2, slots_doc = "[m, v]"; break;
            case EngineOptimizer::adamax: min_slots = max_slots = 2, slots_doc = "[m, u]"; break;
            case EngineOptimizer::lion: min_slots = max_slots = 1, slots_doc = "[m]"; break;
            case EngineOptimizer::adadelta:
                min_slots = max_slots = 2, slots_doc = "[accumulated_grad, accumulated_delta]";
                break;
        }
        std::vector<py::array> arrays;  // every bound array, for the overlap check and refs
        std::vector<float*> ptrs;
        std::vector<bool> train_flags;
        std::vector<std::vector<float*>> slot_ptrs;
        for (int i = 0; i < L; ++i) {
            const int r = PyObject_IsTrue(py::object(trainable[i]).ptr());
            if (r < 0) throw py::error_already_set();
            train_flags.push_back(r != 0);
        }
        size_t k = 0;
        for (int i = 0; i < L; ++i) {
            for (int j = 0; j < (eng_.has_bias(i) ? 2 : 1); ++j, ++k) {
                std::vector<index_t> shape = j == 0 ? std::vector<index_t>{eng_.layer_in(i), eng_.layer_out(i)}
                                                    : std::vector<index_t>{eng_.layer_out(i)};
                const std::string pname = "params[" + std::to_string(k) + "] (" + (j == 0 ? "W" : "b") + std::to_string(i) + ")";
                py::array p = as_array(params[k], pname);
                check_float_shape(p, pname, shape, true);
                arrays.push_back(p);
                ptrs.push_back(static_cast<float*>(p.mutable_data()));
                py::object st = state[k];
                if (!py::isinstance<py::sequence>(st) || py::isinstance<py::str>(st))
                    throw py::type_error("state[" + std::to_string(k) + "]: expected a list of arrays");
                py::sequence slots = py::reinterpret_borrow<py::sequence>(st);
                const int ns = static_cast<int>(slots.size());
                // Frozen parameters may come without slots.
                const bool frozen_empty = !train_flags[i] && ns == 0;
                // (+1: use_ema's moving average after them; train() checks the counts against
                // its hyper-parameters)
                if (!frozen_empty && (ns < min_slots || ns > max_slots + 1))
                    throw py::value_error("state[" + std::to_string(k) + "]: expected " + slots_doc +
                                          " for this optimizer (then use_ema's average), got " +
                                          std::to_string(ns) + " array(s)");
                std::vector<float*> sp;
                for (int s = 0; s < ns; ++s) {
                    const std::string sname = "state[" + std::to_string(k) + "][" + std::to_string(s) + "]";
                    py::array a = as_array(slots[s], sname);
                    check_float_shape(a, sname, shape, true);
                    arrays.push_back(a);
                    sp.push_back(static_cast<float*>(a.mutable_data()));
                }
                slot_ptrs.push_back(std::move(sp));
            }
        }
        // The optimizer loops use __restrict pointers: overlapping buffers would be silently
        // miscomputed. The bound arrays first among themselves, then with batch
        // normalisation's (checked among themselves by set_batchnorm).
        std::vector<const py::array*> all;
        for (const py::array& a : arrays) all.push_back(&a);
        std::vector<int> group(all.size(), 0);
        const auto [a, b] = first_overlap(all, group, true);
        if (a >= 0)
            throw py::value_error("bind: the bound arrays (params and state) must not share memory; "
                                  "arrays #" + std::to_string(a) + " and #" + std::to_string(b) + " overlap");
        for (const auto& layer : bn_refs_)
            for (const py::array& r : layer) all.push_back(&r), group.push_back(1);
        const long c = first_overlap(all, group, false).first;
        if (c >= 0)
            throw py::value_error("bind: array #" + std::to_string(c) +
                                  " shares memory with a batch normalization array");
        {
            ReleaseGil nogil;  // waits for a running train/predict of this engine
            eng_.bind(ptrs, train_flags, slot_ptrs);
        }
        refs_ = std::move(arrays);
    }

    // x: (N, in) float32, C-contiguous; the same check for train and predict.
    static py::array checked_inputs(const py::object& x_obj, index_t in) {
        py::array x = as_array(x_obj, "x");
        if (!has_dtype<float>(x))
            throw py::type_error("x: expected dtype float32, got " + std::string(py::str(x.dtype())));
        if (x.ndim() != 2 || x.shape(1) != in)
            throw py::value_error("x: expected shape (N, " + std::to_string(in) + "), got " + shape_str(x));
        check_c_contiguous(x, "x");
        return x;
    }

    py::array train(const py::object& x_obj, const py::object& y_obj, const py::object& order_obj,
                    index_t first, index_t last, index_t batch_size, const py::dict& hyper,
                    std::int64_t step, const py::sequence& metric_names,
                    const py::object& weight_obj, const py::object& outputs_obj) {
        if (!eng_.bound()) throw py::value_error("train: no parameters bound; call bind(params, trainable, state) first");
        const index_t in = eng_.in_features(), C = eng_.out_features();
        py::array x = checked_inputs(x_obj, in);
        const index_t n = x.shape(0);
        const bool sparse = eng_.loss() == EngineLoss::softmax_xent_sparse;
        py::array y = as_array(y_obj, "y");
        if (sparse) {
            if (!has_dtype<std::int32_t>(y))
                throw py::type_error("y: expected int32 class labels for softmax_xent_sparse, got dtype " +
                                     std::string(py::str(y.dtype())));
            if (y.ndim() != 1 || y.shape(0) != n)
                throw py::value_error("y: expected shape (" + std::to_string(n) + ",) (one label per row of x), got " + shape_str(y));
            check_c_contiguous(y, "y");
        } else {
            check_float_shape(y, "y", {n, C}, false);
        }
        // The batches' range before anything is sized by it (the engine checks it again under
        // its lock): first/last of 0 and 2**40 asked numpy for an 8 TiB result first.
        check_batch_range(n, first, last, batch_size);  // (std::invalid_argument: ValueError)
        py::array weights;  // default-constructed: an empty array, not a null handle
        const bool weighted = !weight_obj.is_none();
        if (weighted) {
            weights = as_array(weight_obj, "sample_weight");
            check_float_shape(weights, "sample_weight", {n}, false);
        }
        py::array outputs;
        const bool want_outputs = !outputs_obj.is_none();
        if (want_outputs) {
            // Rows of batches [first, last) (a range checked above: the products cannot
            // overflow; past a short last batch first == last gives none)
            const index_t r0 = first * batch_size, r1 = std::min(n, last * batch_size);
            outputs = as_array(outputs_obj, "outputs");
            check_float_shape(outputs, "outputs", {std::max<index_t>(0, r1 - r0), C}, true);
            if (overlap(outputs, x)) throw py::value_error("outputs: must not share memory with x");
            if (overlaps_bound(outputs))
                throw py::value_error("outputs: must not share memory with the bound parameters or state");
        }
        // What train reads must not be what it writes (the bound arrays each step, outputs
        // after each batch): the values would change under it.
        for (const auto& [a, name] : {std::pair<const py::array*, const char*>{&y, "y"},
                                      {&weights, "sample_weight"}}) {
            if (overlaps_bound(*a))
                throw py::value_error(std::string(name) + ": must not share memory with the bound parameters, "
                                      "state or batch normalization arrays");
            if (want_outputs && overlap(*a, outputs))
                throw py::value_error(std::string("outputs: must not share memory with ") + name);
        }
        py::array order = as_array(order_obj, "order");
        if (!has_dtype<std::int64_t>(order))  // (native byte order: '>i8' is refused too)
            throw py::type_error("order: expected dtype int64, got " + std::string(py::str(order.dtype())));
        if (order.ndim() != 1 || order.shape(0) != n)
            throw py::value_error("order: expected shape (" + std::to_string(n) + ",) (a permutation of the rows of x), got " + shape_str(order));
        check_c_contiguous(order, "order");
        if (overlaps_bound(order) || (want_outputs && overlap(order, outputs)))
            throw py::value_error("order: must not share memory with outputs or the bound parameters, state "
                                  "or batch normalization arrays (train writes those)");

        EngineHyper h;
        switch (eng_.optimizer()) {
            case EngineOptimizer::sgd:
                h.lr = static_cast<float>(hyper_value(hyper, "lr", true, 0, "sgd"));
                h.momentum = static_cast<float>(hyper_value(hyper, "momentum", false, 0, "sgd"));
                h.momentum_slot = hyper_value(hyper, "momentum", false, 0, "sgd") != 0.0;
                h.nesterov = hyper_value(hyper, "nesterov", false, 0, "sgd") != 0.0;
                break;
            case EngineOptimizer::adam:
                h.lr = static_cast<float>(hyper_value(hyper, "lr", true, 0, "adam"));
                h.beta1 = hyper_value(hyper, "beta_1", true, 0, "adam");
                h.beta2 = hyper_value(hyper, "beta_2", true, 0, "adam");
                h.epsilon = static_cast<float>(hyper_value(hyper, "epsilon", true, 0, "adam"));
                h.weight_decay = static_cast<float>(hyper_value(hyper, "weight_decay", false, 0, "adam"));
                h.amsgrad = hyper_value(hyper, "amsgrad", false, 0, "adam") != 0.0;
                break;
            case EngineOptimizer::nadam:
            case EngineOptimizer::adamax:
                h.lr = static_cast<float>(hyper_value(hyper, "lr", true, 0, "nadam/adamax"));
                h.beta1 = hyper_value(hyper, "beta_1", true, 0, "nadam/adamax");
                h.beta2 = hyper_value(hyper, "beta_2", true, 0, "nadam/adamax");
                h.epsilon = static_cast<float>(hyper_value(hyper, "epsilon", true, 0, "nadam/adamax"));
                h.weight_decay = static_cast<float>(hyper_value(hyper, "weight_decay", false, 0, "nadam/adamax"));
                break;
            case EngineOptimizer::lion:
                h.lr = static_cast<float>(hyper_value(hyper, "lr", true, 0, "lion"));
                h.beta1 = hyper_value(hyper, "beta_1", true, 0, "lion");
                h.beta2 = hyper_value(hyper, "beta_2", true, 0, "lion");
                h.weight_decay = static_cast<float>(hyper_value(hyper, "weight_decay", false, 0, "lion"));
                break;
            case EngineOptimizer::adadelta:
                h.lr = static_cast<float>(hyper_value(hyper, "lr", true, 0, "adadelta"));
                h.rho = hyper_value(hyper, "rho", true, 0, "adadelta");
                h.epsilon = static_cast<float>(hyper_value(hyper, "epsilon", true, 0, "adadelta"));
                h.weight_decay = static_cast<float>(hyper_value(hyper, "weight_decay", false, 0, "adadelta"));
                break;
            case EngineOptimizer::rmsprop:
                h.lr = static_cast<float>(hyper_value(hyper, "lr", true, 0, "rmsprop"));
                h.rho = hyper_value(hyper, "rho", true, 0, "rmsprop");
                h.momentum = static_cast<float>(hyper_value(hyper, "momentum", false, 0, "rmsprop"));
                h.momentum_slot = hyper_value(hyper, "momentum", false, 0, "rmsprop") > 0.0;
                h.epsilon = static_cast<float>(hyper_value(hyper, "epsilon", true, 0, "rmsprop"));
                break;
            case EngineOptimizer::adagrad:
                h.lr = static_cast<float>(hyper_value(hyper, "lr", true, 0, "adagrad"));
                h.epsilon = static_cast<float>(hyper_value(hyper, "epsilon", true, 0, "adagrad"));
                break;
        }
        // Gradient clipping (any optimizer; 0 = off), in the optimizer's order: clipvalue,
        // then clipnorm per tensor, then global_clipnorm.
        h.clipvalue = static_cast<float>(hyper_value(hyper, "clipvalue", false, 0, "clipping"));
        h.clipnorm = hyper_value(hyper, "clipnorm", false, 0, "clipping");
        h.global_clipnorm = hyper_value(hyper, "global_clipnorm", false, 0, "clipping");
        h.use_ema = hyper_value(hyper, "use_ema", false, 0, "use_ema") != 0.0;
        h.ema_momentum = hyper_value(hyper, "ema_momentum", false, 0.99, "use_ema");
        const double freq = hyper_value(hyper, "ema_overwrite_frequency", false, 0, "use_ema");
        if (!(freq >= 0.0 && freq < 9.2e18) || freq != std::floor(freq))
            throw py::value_error("hyper['ema_overwrite_frequency']: expected an integer >= 0 (0 = never)");
        h.ema_overwrite_frequency = static_cast<std::int64_t>(freq);
        h.stop_on_nonfinite_loss =
            hyper_value(hyper, "stop_on_nonfinite_loss", false, 0, "TerminateOnNaN") != 0.0;
        // A learning-rate schedule: one rate per batch of this call, so a chunk of batches
        // needs no return to Python per step.
        std::vector<float> lr_steps;
        if (PyObject* v = PyDict_GetItemString(hyper.ptr(), "lr_steps")) {  // borrowed
            py::array_t<double, py::array::c_style | py::array::forcecast> rates =
                py::reinterpret_borrow<py::object>(v);
            const index_t want = last - first;
            if (rates.ndim() != 1 || rates.shape(0) != want)
                throw py::value_error("hyper['lr_steps']: expected shape (" + std::to_string(want) +
                                      ",) (one rate per batch), got " + shape_str(rates));
            lr_steps.assign(rates.data(), rates.data() + want);
            h.lr_steps = lr_steps.data();
        }
        std::vector<EngineMetric> metrics;
        for (const py::handle m : metric_names) {
            if (!py::isinstance<py::str>(m)) throw py::type_error("metrics: expected a list of str");
            metrics.push_back(parse_engine_metric(m.cast<std::string>()));
        }
        const int nm = static_cast<int>(metrics.size());
        const index_t n_out = last - first;  // (checked above)
        py::array_t<double> result({n_out, static_cast<index_t>(1 + nm)});
        const float* xp = static_cast<const float*>(x.data());
        const void* yp = y.data();
        const std::int64_t* op = static_cast<const std::int64_t*>(order.data());
        const float* wp = weighted ? static_cast<const float*>(weights.data()) : nullptr;
        float* outp = want_outputs ? static_cast<float*>(outputs.mutable_data()) : nullptr;
        double* rp = result.mutable_data();
        index_t ran;
        {
            ReleaseGil nogil;
            ran = eng_.train(xp, yp, op, n, first, last, batch_size, h, step, metrics.data(), nm, rp, wp, outp);
        }
        if (ran == n_out) return result;
        // hyper['stop_on_nonfinite_loss'] stopped it: the rows of the batches that ran
        PyObject* head = PySequence_GetSlice(result.ptr(), 0, ran);
        if (!head) throw py::error_already_set();
        return py::reinterpret_steal<py::array>(head);
    }

    void predict(const py::object& x_obj, const py::object& out_obj, bool check_finite) {
        const index_t in = eng_.in_features(), C = eng_.out_features();
        py::array x = checked_inputs(x_obj, in);
        const index_t n = x.shape(0);
        py::array out = as_array(out_obj, "out");
        check_float_shape(out, "out", {n, C}, true);
        if (overlap(x, out)) throw py::value_error("out: must not share memory with x");
        if (!eng_.bound()) throw py::value_error("predict: no parameters bound; call bind(params, trainable, state) first");
        if (overlaps_bound(out))
            throw py::value_error("out: must not share memory with the bound parameters or state");
        const float* xp = static_cast<const float*>(x.data());
        float* outp = static_cast<float*>(out.mutable_data());
        // Finiteness is checked here, so Python's single-row path needs no numpy reduction
        // of its own: all_finite's threaded pass (a scalar count took a quarter of a 60000-row
        // MNIST predict), the bad values counted only for the message. check_finite=False:
        // the caller has checked x (model.predict's full path, which converted it).
        const index_t total = n * in;
        bool finite;
        {
            ReleaseGil nogil;
            finite = !check_finite || all_finite(xp, total);
            if (finite) {
                eng_.predict(xp, outp, n);
                return;
            }
        }
        index_t bad = 0;
        for (index_t i = 0; i < total; ++i) bad += !std::isfinite(xp[i]);
        throw py::value_error("x contains " + std::to_string(bad) + " NaN or infinite value(s)");
    }

    // Whether every guard still holds: guards is a tuple of (owner, attribute, expected, how)
    // tuples, owner None standing for `model`; how 0: the attribute is `expected`, 1: it
    // equals it, 2: it is a list or tuple of the same objects in order (`expected` a list).
    // Python's PredictEngine builds them from what the engine was built for (layers,
    // activations, weight arrays, settings); an attribute that is gone fails the guard (other
    // errors of the lookup propagate).
    static bool guards_hold(py::handle model, py::handle guards) {
        if (!PyTuple_Check(guards.ptr())) throw py::type_error("guards: expected a tuple");
        const Py_ssize_t n = PyTuple_GET_SIZE(guards.ptr());
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* g = PyTuple_GET_ITEM(guards.ptr(), i);
            if (!PyTuple_Check(g) || PyTuple_GET_SIZE(g) != 4)
                throw py::type_error("guards: expected (owner, attribute, expected, how) tuples");
            PyObject* owner = PyTuple_GET_ITEM(g, 0);
            if (owner == Py_None) owner = model.ptr();
            PyObject* now = PyObject_GetAttr(owner, PyTuple_GET_ITEM(g, 1));
            if (!now) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
                PyErr_Clear();
                return false;
            }
            py::object held = py::reinterpret_steal<py::object>(now);
            PyObject* expected = PyTuple_GET_ITEM(g, 2);
            const long how = PyLong_AsLong(PyTuple_GET_ITEM(g, 3));
            bool ok;
            if (how == 0) {
                ok = now == expected;
            } else if (how == 1) {
                const int eq = PyObject_RichCompareBool(now, expected, Py_EQ);
                if (eq < 0) throw py::error_already_set();
                ok = eq == 1;
            } else if (how == 2) {
                // a list or a tuple (a subclass's layers property may give one)
                if (!PyList_Check(expected))
                    throw py::type_error("guards: how 2 expects a list of the objects");
                ok = (PyList_Check(now) || PyTuple_Check(now)) &&
                     PySequence_Fast_GET_SIZE(now) == PyList_GET_SIZE(expected);
                for (Py_ssize_t k = 0; ok && k < PyList_GET_SIZE(expected); ++k)
                    ok = PySequence_Fast_GET_ITEM(now, k) == PyList_GET_ITEM(expected, k);
            } else {
                if (PyErr_Occurred()) throw py::error_already_set();
                throw py::value_error("guards: how must be 0 (is), 1 (==) or 2 (same items)");
            }
            if (!ok) return false;
        }
        return true;
    }

    // predict in one call for model.predict's common case: x exactly a numpy array of float32
    // samples of sample_shape (C order, at least one row) and every guard holding; None
    // otherwise (the caller converts x, or rebuilds the engine). Raises ValueError for NaN
    // or infinity in x. Saves the ~3 us of Python checks that made half of a single row's
    // predict overhead.
    py::object predict_current(py::handle x_obj, py::handle model, py::handle sample_shape,
                               py::handle guards) {
        if (Py_TYPE(x_obj.ptr()) != ndarray_type) return py::none();
        if (!PyTuple_Check(sample_shape.ptr())) throw py::type_error("sample_shape: expected a tuple");
        py::array x = py::reinterpret_borrow<py::array>(x_obj);
        const Py_ssize_t dims = PyTuple_GET_SIZE(sample_shape.ptr());
        if (x.ndim() != dims + 1 || x.shape(0) < 1 || !has_dtype<float>(x) ||
            !(x.flags() & py::array::c_style) ||
            reinterpret_cast<std::uintptr_t>(x.data()) % alignof(float) != 0)
            return py::none();
        index_t features = 1;
        for (Py_ssize_t d = 0; d < dims; ++d) {
            const Py_ssize_t want = PyLong_AsSsize_t(PyTuple_GET_ITEM(sample_shape.ptr(), d));
            if (want == -1 && PyErr_Occurred()) throw py::error_already_set();
            if (x.shape(d + 1) != want) return py::none();
            features *= want;
        }
        if (features != eng_.in_features() || !eng_.bound() || !guards_hold(model, guards))
            return py::none();
        const index_t n = x.shape(0), C = eng_.out_features();
        py::array_t<float> out({n, C});
        const float* xp = static_cast<const float*>(x.data());
        {
            ReleaseGil nogil;
            if (all_finite(xp, n * features)) {
                eng_.predict(xp, out.mutable_data(), n);
                return std::move(out);  // (py::object's destructor with the GIL back)
            }
        }
        throw py::value_error("x contains NaN or infinite values");
    }

private:
    DenseEngine eng_;
    std::vector<py::array> refs_;  // keep the bound arrays alive while the engine uses them
    std::vector<std::vector<py::array>> bn_refs_;  // the same for batch normalisation's, per layer
};

}  // namespace
}  // namespace pynn::bind

void register_engine(py::module_& m) {
    using pynn::bind::PyDenseEngine;
    pynn::bind::ndarray_type = reinterpret_cast<PyTypeObject*>(
        py::object(py::module_::import("numpy").attr("ndarray")).release().ptr());
    py::class_<PyDenseEngine>(m, "DenseEngine",
                              "Native training engine for a stack of Dense layers: whole chunks of "
                              "an epoch (gather, forward, loss, backward, update) in C++.")
        .def(py::init<const std::vector<pynn::index_t>&, const std::vector<int>&, const std::vector<float>&,
                      const std::vector<bool>&, const std::string&, float, const std::string&, pynn::index_t,
                      bool>(),
             py::arg("sizes"), py::arg("activations"), py::arg("act_params"), py::arg("use_bias"),
             py::arg("loss"), py::arg("loss_param"), py::arg("optimizer"), py::arg("max_batch"),
             py::arg("training") = true)
        .def("set_regularizer", &PyDenseEngine::set_regularizer, py::arg("layer"),
             py::arg("kernel_l1"), py::arg("kernel_l2"), py::arg("bias_l1"), py::arg("bias_l2"),
             "Keras L1/L2 penalties on a layer's kernel and bias: added to each batch's loss "
             "and, for trainable layers, to the gradients before the update.")
        .def("set_constraint", &PyDenseEngine::set_constraint, py::arg("layer"), py::arg("bias"),
             py::arg("kind"), py::arg("axis"), py::arg("min_value") = 0.0,
             py::arg("max_value") = 0.0, py::arg("rate") = 1.0, py::arg("epsilon") = 1e-7,
             "A Keras weight constraint on a layer's kernel or bias (kind 0 none, 1 max_norm, "
             "2 min_max_norm, 3 unit_norm, 4 non_neg; axis 0 per column, 1 per row, 2 whole), "
             "applied after each update.")
        .def("set_batchnorm", &PyDenseEngine::set_batchnorm, py::arg("layer"), py::arg("pre"),
             py::arg("momentum"), py::arg("epsilon"), py::arg("trainable"), py::arg("gamma"),
             py::arg("beta"), py::arg("moving_mean"), py::arg("moving_variance"),
             py::arg("gamma_slots"), py::arg("beta_slots"), py::arg("std_floor") = 0.0,
             py::arg("per_row") = false, py::arg("centred") = true,
             "Keras BatchNormalization in a layer (not the last): pre=True between its GEMM and "
             "its activation, else after the activation; layer -1 normalises the inputs. float32 (out,) arrays, updated in "
             "place (gamma/beta by the optimizer when trainable, the moving statistics while "
             "training with batch statistics); gamma/beta may be None. std_floor > 0: divide by "
             "max(sqrt(var + epsilon), std_floor), epsilon may then be 0 (Keras' Normalization). "
             "per_row=True: Keras' LayerNormalization (centred) or RMSNormalization "
             "(centred=False) instead: each row's statistics, no moving ones (None).")
        .def("set_reduction", &PyDenseEngine::set_reduction, py::arg("reduction"))
        .def("set_dropout", &PyDenseEngine::set_dropout, py::arg("layer"), py::arg("rate"),
             py::arg("seed"),
             "Inverted dropout on that layer's activated output while training (not the last "
             "layer; layer -1: the inputs, after their normalisation), with math/dropout.h's "
             "counter-based masks for this seed: the same masks as pynn.Dropout(rate, "
             "seed=seed) in the layer path. rate 0 removes it.")
        .def("bind", &PyDenseEngine::bind, py::arg("params"), py::arg("trainable"), py::arg("state"),
             "Bind the model's arrays [W0, b0, W1, ...] (updated in place), per-layer trainable flags "
             "and per-param optimizer slot lists.")
        .def("train", &PyDenseEngine::train, py::arg("x"), py::arg("y"), py::arg("order"),
             py::arg("first_batch"), py::arg("last_batch"), py::arg("batch_size"), py::arg("hyper"),
             py::arg("step"), py::arg("metrics"), py::arg("sample_weight") = py::none(),
             py::arg("outputs") = py::none(),
             "Run batches [first_batch, last_batch) of the epoch given by order; returns float64 "
             "(n_batches, 1 + len(metrics)): each batch's loss (before its update) and metrics. "
             "sample_weight: float32 (N,), one weight per row of x (Keras' reduction: the "
             "weighted sum over the batch's row count); metrics stay unweighted. outputs: "
             "float32 (rows of the batches, out), filled with each batch's model outputs "
             "(activations applied) before its update, for metrics computed by the caller. "
             "hyper['stop_on_nonfinite_loss'] true: the call stops after the first batch whose "
             "loss is NaN or infinite (beyond float32's range too; its update made), returning "
             "the rows of the batches run.")
        .def("predict", &PyDenseEngine::predict, py::arg("x"), py::arg("out"),
             py::arg("check_finite") = true,
             "out (N, out_features) = the model's outputs, every activation applied. x is "
             "refused when it holds NaN or infinity unless check_finite=False (the caller "
             "checked it).")
        .def_static("guards_hold", &PyDenseEngine::guards_hold, py::arg("model"), py::arg("guards"),
                    "Whether every (owner, attribute, expected, how) guard holds; owner None: "
                    "model; how 0: `is`, 1: `==`, 2: a list or tuple of the same objects in "
                    "order (expected: a list).")
        .def("predict_current", &PyDenseEngine::predict_current, py::arg("x"), py::arg("model"),
             py::arg("sample_shape"), py::arg("guards"),
             "The outputs for x in one call when x is a numpy.ndarray of float32 samples of "
             "sample_shape in C order and every guard holds (see guards_hold); else None. "
             "Raises ValueError when x holds NaN or infinity.");
    m.def(
        "shuffled_order",
        [](std::int64_t n, std::uint64_t seed) {
            if (n < 0) throw py::value_error("shuffled_order: n must be >= 0, got " + std::to_string(n));
            py::array_t<std::int64_t> out(n);
            std::int64_t* p = out.mutable_data();
            {
                pynn::bind::ReleaseGil nogil;
                pynn::shuffled_order(p, n, seed);
            }
            return out;
        },
        py::arg("n"), py::arg("seed"),
        "int64 permutation of range(n): Fisher-Yates with xoshiro256** seeded by splitmix64 "
        "(the same seed gives the same order).");
}
