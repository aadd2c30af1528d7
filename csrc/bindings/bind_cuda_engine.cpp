// pynn._cuda.DenseEngine: the CUDA training engine (cuda/engine.h) bound to a model's device
// arrays. Every array is checked (dtype, shape, contiguity, writability) before its pointer is
// kept, and the engine holds the arrays themselves so that the pointers stay valid for its
// life. One call trains a chunk of batches with the GIL released; calls on one engine are
// serialised (its buffers are shared by its steps).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "bindings/cuda_arrays.h"
#include "bindings/release_gil.h"
#include "cuda/engine.h"

namespace py = pybind11;
using pynn::index_t;
using pynn::bind::DeviceArray;
using pynn::bind::device_array;

namespace {

using namespace pynn::cuda;

EngineLoss loss_kind(const std::string& name) {
    if (name == "softmax_xent_sparse") return EngineLoss::xent_sparse;
    if (name == "softmax_xent_dense") return EngineLoss::xent_dense;
    if (name == "mse") return EngineLoss::mse;
    if (name == "mae") return EngineLoss::mae;
    if (name == "huber") return EngineLoss::huber;
    if (name == "bce_logits") return EngineLoss::bce_logits;
    throw py::value_error("DenseEngine: unknown loss '" + name + "'");
}

EngineOptimizer optimizer_kind(const std::string& name) {
    if (name == "sgd") return EngineOptimizer::sgd;
    if (name == "adam") return EngineOptimizer::adam;
    throw py::value_error("DenseEngine: unknown optimizer '" + name + "' (sgd or adam)");
}

float* param_array(py::handle o, const std::string& name, const std::vector<index_t>& shape) {
    const DeviceArray a = device_array(o, name.c_str(), "f4", true);
    if (a.shape != shape) {
        DeviceArray want;
        want.shape = shape;
        throw py::value_error(name + ": expected shape " + want.shape_str() + ", got " +
                              a.shape_str());
    }
    return static_cast<float*>(a.ptr);
}

std::vector<float*> slot_arrays(py::handle list, const std::string& name,
                                const std::vector<index_t>& shape, size_t need) {
    std::vector<float*> out;
    if (!py::isinstance<py::list>(list))
        throw py::type_error(name + ": expected a list of slot arrays");
    for (py::handle o : py::reinterpret_borrow<py::list>(list))
        out.push_back(param_array(o, name + " slot " + std::to_string(out.size()), shape));
    if (out.size() < need)
        throw py::value_error(name + ": the optimizer needs " + std::to_string(need) +
                              " slots, got " + std::to_string(out.size()));
    return out;
}

// The optimizer kernels update each weight and slot in blocks of their own: two arrays that
// share memory would race, silently (the CPU engine refuses them too).
void check_disjoint(const std::vector<EngineLayer>& layers) {
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> spans;  // [begin, end) in bytes
    const auto add = [&](const float* p, index_t n) {
        const auto b = reinterpret_cast<std::uintptr_t>(p);
        spans.push_back({b, b + sizeof(float) * static_cast<std::uintptr_t>(n)});
    };
    for (const EngineLayer& layer : layers) {
        add(layer.w, layer.in * layer.out);
        for (const float* p : layer.w_slots) add(p, layer.in * layer.out);
        if (layer.b) {
            add(layer.b, layer.out);
            for (const float* p : layer.b_slots) add(p, layer.out);
        }
    }
    for (size_t i = 0; i < spans.size(); ++i)
        for (size_t j = i + 1; j < spans.size(); ++j)
            if (spans[i].first < spans[j].second && spans[j].first < spans[i].second)
                throw py::value_error("DenseEngine: the weights and optimizer slots must not "
                                      "share memory; arrays #" + std::to_string(i) + " and #" +
                                      std::to_string(j) + " overlap");
}

class BoundEngine {
public:
    BoundEngine(const std::vector<index_t>& sizes, const std::vector<int>& acts,
                const std::vector<float>& act_params, py::list weights, py::list biases,
                const std::vector<bool>& trainable, py::list weight_slots, py::list bias_slots,
                const std::string& loss, const std::string& optimizer, index_t batch_size,
                bool amsgrad, bool momentum, bool count_hits, int device) {
        const size_t L = acts.size();
        if (L == 0 || sizes.size() != L + 1 || act_params.size() != L || weights.size() != L ||
            biases.size() != L || trainable.size() != L || weight_slots.size() != L ||
            bias_slots.size() != L)
            throw py::value_error("DenseEngine: sizes needs one entry more than the layers, "
                                  "every other list one per layer");
        const EngineOptimizer opt = optimizer_kind(optimizer);
        const size_t need = opt == EngineOptimizer::adam ? (amsgrad ? 3 : 2) : (momentum ? 1 : 0);
        std::vector<EngineLayer> layers(L);
        for (size_t l = 0; l < L; ++l) {
            EngineLayer& layer = layers[l];
            const std::string name = "layer " + std::to_string(l);
            layer.in = sizes[l];
            layer.out = sizes[l + 1];
            if (layer.in < 1 || layer.out < 1)
                throw py::value_error(name + ": sizes must be >= 1");
            if (acts[l] < 0 || acts[l] >= pynn::kActivationCount)
                throw py::value_error(name + ": unknown activation code " +
                                      std::to_string(acts[l]));
            layer.act = static_cast<pynn::Activation>(acts[l]);
            layer.act_param = act_params[l];
            layer.trainable = trainable[l];
            layer.w = param_array(weights[l], name + " kernel", {layer.in, layer.out});
            keep_.push_back(py::reinterpret_borrow<py::object>(weights[l]));
            if (!biases[l].is_none()) {
                layer.b = param_array(biases[l], name + " bias", {layer.out});
                keep_.push_back(py::reinterpret_borrow<py::object>(biases[l]));
            }
            if (layer.trainable) {
                layer.w_slots = slot_arrays(weight_slots[l], name + " kernel",
                                            {layer.in, layer.out}, need);
                if (layer.b)
                    layer.b_slots = slot_arrays(bias_slots[l], name + " bias", {layer.out}, need);
                keep_.push_back(py::reinterpret_borrow<py::object>(weight_slots[l]));
                keep_.push_back(py::reinterpret_borrow<py::object>(bias_slots[l]));
            }
        }
        check_disjoint(layers);
        loss_ = loss_kind(loss);
        count_hits_ = count_hits;
        if (count_hits && loss_ != EngineLoss::xent_sparse)
            throw py::value_error("DenseEngine: accuracy is counted with sparse labels only");
        out_dim_ = sizes.back();
        momentum_ = opt == EngineOptimizer::sgd && momentum;
        amsgrad_ = opt == EngineOptimizer::adam && amsgrad;
        if (device < 0) throw py::value_error("device: expected a CUDA device number >= 0");
        pynn::bind::ReleaseGil nogil;  // (allocations and the cuBLAS handle)
        engine_ = std::make_unique<GpuDenseEngine>(std::move(layers), loss_, opt, batch_size,
                                                   count_hits, device);
    }

    py::array_t<double> train(py::handle x_o, py::handle y_o, py::array order_o, index_t first,
                              index_t last, index_t batch, const std::vector<float>& lr,
                              double beta1, double beta2, float eps, float weight_decay,
                              float momentum, bool nesterov, bool amsgrad, float loss_param,
                              std::int64_t step0, std::uintptr_t stream) {
        const DeviceArray x = device_array(x_o, "x", "f4", false, 2);
        EngineData data;
        data.x = static_cast<const float*>(x.ptr);
        data.rows = x.dim(0);
        data.cols = x.dim(1);
        if (momentum != 0.f && !momentum_)
            throw py::value_error("momentum: this engine was built without the velocity slots "
                                  "(build another)");
        if (amsgrad && !amsgrad_)
            throw py::value_error("amsgrad: this engine was built without the v_hat slots "
                                  "(build another)");
        if (loss_ == EngineLoss::xent_sparse) {
            if (!py::hasattr(y_o, "__cuda_array_interface__"))
                throw py::type_error("y: expected a CUDA device array (a CuPy array)");
            const std::string typestr =
                py::str(y_o.attr("__cuda_array_interface__")["typestr"]);
            const bool i8 = typestr.size() == 3 && typestr.substr(1) == "i8";
            const DeviceArray y = device_array(y_o, "y", i8 ? "i8" : "i4", false, 1);
            if (y.dim(0) != data.rows)
                throw py::value_error("y: expected " + std::to_string(data.rows) +
                                      " labels (one per row of x), got " + y.shape_str());
            data.y = y.ptr;
            data.y_int64 = i8;
        } else {
            const DeviceArray y = device_array(y_o, "y", "f4", false, 2);
            if (y.dim(0) != data.rows || y.dim(1) != out_dim_)
                throw py::value_error("y: expected shape (" + std::to_string(data.rows) + ", " +
                                      std::to_string(out_dim_) + "), got " + y.shape_str());
            data.y = y.ptr;
        }
        if (!py::isinstance<py::array_t<std::int64_t>>(order_o) || order_o.ndim() != 1 ||
            !(order_o.flags() & py::array::c_style))
            throw py::type_error("order: expected a C-contiguous 1-D int64 numpy array");
        if (lr.empty()) throw py::value_error("lr: expected at least one learning rate");
        // as the CPU engine refuses them: a step below 0 made Adam's first bias correction
        // 0/0 (every weight NaN, silently), a non-finite rate the same
        if (step0 < 0)
            throw py::value_error("step0: expected a step count >= 0, got " + std::to_string(step0));
        for (const float r : lr)
            if (!std::isfinite(r))
                throw py::value_error("lr: expected finite learning rates, got " + std::to_string(r));
        const auto* order = static_cast<const std::int64_t*>(order_o.data());
        const index_t order_len = order_o.shape(0);
        EngineHyper hyper;
        hyper.lr = lr;
        hyper.beta1 = beta1;
        hyper.beta2 = beta2;
        hyper.eps = eps;
        hyper.weight_decay = weight_decay;
        hyper.momentum = momentum;
        hyper.nesterov = nesterov;
        hyper.amsgrad = amsgrad;
        hyper.loss_param = loss_param;
        hyper.step0 = step0;
        std::vector<GpuDenseEngine::BatchLog> logs;
        {
            pynn::bind::ReleaseGil nogil;
            std::lock_guard<std::mutex> lock(mutex_);
            logs = engine_->train(data, order, order_len, first, last, batch, hyper,
                                  reinterpret_cast<cudaStream_t>(stream));
        }
        py::array_t<double> out({static_cast<py::ssize_t>(logs.size()), py::ssize_t(3)});
        auto o = out.mutable_unchecked<2>();
        for (size_t i = 0; i < logs.size(); ++i) {
            o(i, 0) = logs[i].loss_sum;
            o(i, 1) = static_cast<double>(logs[i].rows);
            o(i, 2) = static_cast<double>(logs[i].hits);
        }
        return out;
    }

    void set_dropout(int layer, double rate, std::uint64_t seed) {
        pynn::bind::ReleaseGil nogil;  // (an allocation)
        std::lock_guard<std::mutex> lock(mutex_);
        engine_->set_dropout(layer, rate, seed);
    }

private:
    std::unique_ptr<GpuDenseEngine> engine_;
    std::vector<py::object> keep_;  // the arrays whose device pointers the engine holds
    std::mutex mutex_;
    EngineLoss loss_ = EngineLoss::mse;
    bool count_hits_ = false, momentum_ = false, amsgrad_ = false;
    index_t out_dim_ = 0;
};

}  // namespace

void bind_cuda_engine(py::module_& m) {
    m.def("blas_unavailable_reason", [] { return Blas::unavailable_reason(); },
          "Empty when cuBLAS (which the training engine calls) loads, else why not.");
    py::class_<BoundEngine>(m, "DenseEngine",
                            "Whole training steps of a Dense stack on the GPU (cuda/engine.h).")
        .def(py::init<const std::vector<index_t>&, const std::vector<int>&,
                      const std::vector<float>&, py::list, py::list, const std::vector<bool>&,
                      py::list, py::list, const std::string&, const std::string&, index_t, bool,
                      bool, bool, int>(),
             py::arg("sizes"), py::arg("activations"), py::arg("activation_params"),
             py::arg("weights"), py::arg("biases"), py::arg("trainable"),
             py::arg("weight_slots"), py::arg("bias_slots"), py::arg("loss"),
             py::arg("optimizer"), py::arg("batch_size"), py::arg("amsgrad"),
             py::arg("momentum"), py::arg("count_hits"), py::arg("device"))
        .def("train", &BoundEngine::train, py::arg("x"), py::arg("y"), py::arg("order"),
             py::arg("first"), py::arg("last"), py::arg("batch_size"), py::arg("lr"),
             py::arg("beta1"), py::arg("beta2"), py::arg("epsilon"), py::arg("weight_decay"),
             py::arg("momentum"), py::arg("nesterov"), py::arg("amsgrad"),
             py::arg("loss_param"), py::arg("step0"), py::arg("stream"),
             "Trains batches [first, last) of order; returns (batches, 3) float64 rows: the "
             "batch's loss sum, its rows, its correct predictions (with count_hits).")
        .def("set_dropout", &BoundEngine::set_dropout, py::arg("layer"), py::arg("rate"),
             py::arg("seed"),
             "Inverted dropout on layer `layer`'s output while training (-1: the inputs), the "
             "masks of the layer path's Dropout for this seed and the optimizer's step.");
}
