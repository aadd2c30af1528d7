// pynn._cuda's kernel entry points: the CPU module's names and argument order (bind_kernels.cpp)
// on device arrays, plus a trailing `stream` (a cudaStream_t as an integer: CuPy's
// cupy.cuda.get_current_stream().ptr; 0 is the legacy default stream). Every array is checked
// (cuda_arrays.h) before a kernel is launched; the GIL is released around the launches.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bindings/cuda_arrays.h"
#include "bindings/release_gil.h"
#include "cuda/kernels.h"

namespace py = pybind11;
using pynn::Activation;
using pynn::index_t;
using pynn::bind::DeviceArray;
using pynn::bind::device_array;
using pynn::bind::in_f32;
using pynn::bind::out_f32;
using pynn::bind::same_shape;

namespace {

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

Activation activation_code(int act) {
    if (act < 0 || act >= pynn::kActivationCount)
        throw py::value_error("act: expected an activation code in [0, " +
                              std::to_string(pynn::kActivationCount - 1) + "], got " + std::to_string(act));
    return static_cast<Activation>(act);
}

DeviceArray f32(py::handle o, const char* name, bool out, int ndim = -1) {
    return device_array(o, name, "f4", out, ndim);
}

void activation_forward(int act, float param, py::handle z_o, py::handle y_o, std::uintptr_t s) {
    const Activation a = activation_code(act);
    const DeviceArray z = f32(z_o, "z", false), y = f32(y_o, "out", true);
    same_shape(z, "z", y, "out");
    pynn::bind::ReleaseGil nogil;
    pynn::cuda::activation_forward(a, param, in_f32(z), out_f32(y), z.size, as_stream(s));
}

void activation_backward(int act, float param, py::handle z_o, py::handle y_o, py::handle dy_o,
                         py::handle dz_o, std::uintptr_t s) {
    const Activation a = activation_code(act);
    const DeviceArray y = f32(y_o, "y", false), dy = f32(dy_o, "dy", false), dz = f32(dz_o, "out", true);
    same_shape(y, "y", dy, "dy");
    same_shape(y, "y", dz, "out");
    const float* zp = nullptr;
    if (!z_o.is_none()) {
        const DeviceArray z = f32(z_o, "z", false);
        same_shape(y, "y", z, "z");
        zp = in_f32(z);
    } else if (activation_needs_z(a)) {
        throw py::value_error("z: this activation's derivative needs the pre-activation z, got None");
    }
    pynn::bind::ReleaseGil nogil;
    pynn::cuda::activation_backward(a, param, zp, in_f32(y), in_f32(dy), out_f32(dz), y.size, as_stream(s));
}

void bias_activation(py::handle c_o, py::handle bias_o, int act, float param, std::uintptr_t s) {
    const Activation a = activation_code(act);
    const DeviceArray c = f32(c_o, "c", true, 2);
    const float* bp = nullptr;
    if (!bias_o.is_none()) {
        const DeviceArray b = f32(bias_o, "bias", false, 1);
        if (b.dim(0) != c.dim(1))
            throw py::value_error("bias: expected shape (" + std::to_string(c.dim(1)) +
                                  ",) for c of shape " + c.shape_str() + ", got " + b.shape_str());
        bp = in_f32(b);
    }
    pynn::bind::ReleaseGil nogil;
    pynn::cuda::bias_activation(out_f32(c), bp, c.dim(0), c.dim(1), a, param, as_stream(s));
}

void softmax_forward(py::handle z_o, py::handle y_o, std::uintptr_t s) {
    const DeviceArray z = f32(z_o, "z", false, 2), y = f32(y_o, "out", true, 2);
    same_shape(z, "z", y, "out");
    pynn::bind::ReleaseGil nogil;
    pynn::cuda::softmax_forward(in_f32(z), out_f32(y), z.dim(0), z.dim(1), as_stream(s));
}

void softmax_backward(py::handle y_o, py::handle dy_o, py::handle dz_o, std::uintptr_t s) {
    const DeviceArray y = f32(y_o, "y", false, 2), dy = f32(dy_o, "dy", false, 2), dz = f32(dz_o, "out", true, 2);
    same_shape(y, "y", dy, "dy");
    same_shape(y, "y", dz, "out");
    pynn::bind::ReleaseGil nogil;
    pynn::cuda::softmax_backward(in_f32(y), in_f32(dy), out_f32(dz), y.dim(0), y.dim(1), as_stream(s));
}

void bias_grad(py::handle dz_o, py::handle db_o, std::uintptr_t s) {
    const DeviceArray dz = f32(dz_o, "dz", false, 2), db = f32(db_o, "out", true, 1);
    if (db.dim(0) != dz.dim(1))
        throw py::value_error("out: expected shape (" + std::to_string(dz.dim(1)) + ",) for dz of shape " +
                              dz.shape_str() + ", got " + db.shape_str());
    if (pynn::bind::overlap(dz, db)) throw py::value_error("out: may not overlap dz");
    pynn::bind::ReleaseGil nogil;
    pynn::cuda::bias_grad(in_f32(dz), out_f32(db), dz.dim(0), dz.dim(1), as_stream(s));
}

double softmax_xent_sparse(py::handle logits_o, py::handle labels_o, py::handle d_o, float scale,
                           std::uintptr_t s) {
    const DeviceArray z = f32(logits_o, "logits", false, 2), d = f32(d_o, "dlogits", true, 2);
    const DeviceArray lab = device_array(labels_o, "labels", "i4", false, 1);
    same_shape(z, "logits", d, "dlogits");
    if (lab.dim(0) != z.dim(0))
        throw py::value_error("labels: expected shape (" + std::to_string(z.dim(0)) + ",) for logits of shape " +
                              z.shape_str() + ", got " + lab.shape_str());
    // (warps read their row's label while others write dlogits: the CPU binding copies
    // labels that overlap it; here they are refused)
    if (pynn::bind::overlap(d, lab)) throw py::value_error("dlogits: may not overlap the labels array");
    try {
        pynn::bind::ReleaseGil nogil;
        return pynn::cuda::softmax_xent_sparse(in_f32(z), static_cast<const std::int32_t*>(lab.ptr),
                                               out_f32(d), z.dim(0), z.dim(1), scale, as_stream(s));
    } catch (const std::out_of_range& e) {
        throw py::value_error(e.what());
    }
}

double softmax_xent_dense(py::handle logits_o, py::handle t_o, py::handle d_o, float scale,
                          std::uintptr_t s) {
    const DeviceArray z = f32(logits_o, "logits", false, 2), t = f32(t_o, "targets", false, 2),
                      d = f32(d_o, "dlogits", true, 2);
    same_shape(z, "logits", t, "targets");
    same_shape(z, "logits", d, "dlogits");
    if (pynn::bind::overlap(d, t)) throw py::value_error("dlogits: may not overlap the targets array");
    pynn::bind::ReleaseGil nogil;
    return pynn::cuda::softmax_xent_dense(in_f32(z), in_f32(t), out_f32(d), z.dim(0), z.dim(1), scale,
                                          as_stream(s));
}

double regression_loss(const std::string& kind, py::handle p_o, py::handle t_o, py::handle g_o,
                       float delta, float scale, std::uintptr_t s) {
    pynn::cuda::RegressionLoss k;
    if (kind == "mse") k = pynn::cuda::RegressionLoss::mse;
    else if (kind == "mae") k = pynn::cuda::RegressionLoss::mae;
    else if (kind == "huber") k = pynn::cuda::RegressionLoss::huber;
    else throw py::value_error("kind: expected 'mse', 'mae' or 'huber', got '" + kind + "'");
    if (k == pynn::cuda::RegressionLoss::huber && !(delta > 0.f))
        throw py::value_error("delta: huber delta must be > 0, got " + std::to_string(delta));
    const DeviceArray p = f32(p_o, "pred", false), t = f32(t_o, "target", false), g = f32(g_o, "grad_out", true);
    same_shape(p, "pred", t, "target");
    same_shape(p, "pred", g, "grad_out");
    pynn::bind::ReleaseGil nogil;
    return pynn::cuda::regression_loss(k, in_f32(p), in_f32(t), out_f32(g), p.size, delta, scale, as_stream(s));
}

double bce_loss(py::handle p_o, py::handle t_o, py::handle g_o, bool from_logits, float eps,
                float scale, std::uintptr_t s) {
    if (!from_logits && !(eps > 0.f && eps < 0.5f))
        throw py::value_error("eps: expected a clip epsilon in (0, 0.5), got " + std::to_string(eps));
    const DeviceArray p = f32(p_o, "pred", false), t = f32(t_o, "target", false), g = f32(g_o, "grad_out", true);
    same_shape(p, "pred", t, "target");
    same_shape(p, "pred", g, "grad_out");
    pynn::bind::ReleaseGil nogil;
    return pynn::cuda::bce_loss(in_f32(p), in_f32(t), out_f32(g), p.size, from_logits, eps, scale, as_stream(s));
}

// An optimizer's parameter, gradient and slots: same shape, slots writable, none the same
// buffer as another (each kernel reads and writes them element by element).
struct OptArrays {
    DeviceArray w, g;
    std::vector<DeviceArray> slots;
};

OptArrays opt_arrays(py::handle w_o, py::handle g_o,
                     std::initializer_list<std::pair<py::handle, const char*>> slots) {
    OptArrays o{f32(w_o, "w", true), f32(g_o, "g", false), {}};
    same_shape(o.w, "w", o.g, "g");
    std::vector<const DeviceArray*> seen{&o.w, &o.g};
    o.slots.reserve(slots.size());  // (the pointers below stay valid)
    for (auto [h, name] : slots) {
        o.slots.push_back(f32(h, name, true));
        same_shape(o.w, "w", o.slots.back(), name);
        seen.push_back(&o.slots.back());
    }
    for (size_t i = 0; i < seen.size(); ++i)
        for (size_t j = i + 1; j < seen.size(); ++j)
            if (pynn::bind::overlap(*seen[i], *seen[j]))
                throw py::value_error("optimizer arrays: w, g and the slots must be distinct, "
                                      "non-overlapping buffers");
    return o;
}

void check_step(std::int64_t step) {
    if (step < 1) throw py::value_error("step: expected the 1-based update count, got " + std::to_string(step));
}

}  // namespace

void bind_cuda_kernels(py::module_& m) {
    using py::arg;
    const auto S = arg("stream") = static_cast<std::uintptr_t>(0);
    m.def("activation_forward", &activation_forward, arg("act"), arg("param"), arg("z"), arg("out"), S,
          "out = f(z) element-wise (activation code as in pynn._C); out may be z.");
    m.def("activation_backward", &activation_backward, arg("act"), arg("param"), arg("z"), arg("y"),
          arg("dy"), arg("out"), S,
          "out = dy * f'(.) from the forward output y; z is needed where the derivative is written in z (gelu, silu, hard_silu, mish; else None).");
    m.def("bias_activation", &bias_activation, arg("c"), arg("bias"), arg("act"), arg("param"), S,
          "The Dense epilogue in place: c (rows, cols) = f(c + bias); bias (cols,) or None.");
    m.def("softmax_forward", &softmax_forward, arg("z"), arg("out"), S, "Row softmax of 2-D z into out.");
    m.def("softmax_backward", &softmax_backward, arg("y"), arg("dy"), arg("out"), S,
          "out = y * (dy - sum(dy * y, axis=1, keepdims=True)); out may be dy.");
    m.def("bias_grad", &bias_grad, arg("dz"), arg("out"), S, "out[c] = sum over rows of dz[:, c].");
    m.def("softmax_xent_sparse", &softmax_xent_sparse, arg("logits"), arg("labels"), arg("dlogits"),
          arg("grad_scale"), S,
          "Softmax cross-entropy with int32 labels; returns the SUM of the row losses (synchronises "
          "the stream); ValueError for a label outside [0, cols).");
    m.def("softmax_xent_dense", &softmax_xent_dense, arg("logits"), arg("targets"), arg("dlogits"),
          arg("grad_scale"), S, "Softmax cross-entropy with target distributions; returns the SUM.");
    m.def("regression_loss", &regression_loss, arg("kind"), arg("pred"), arg("target"), arg("grad_out"),
          arg("delta"), arg("grad_scale"), S, "kind 'mse', 'mae' or 'huber'; returns the SUM.");
    m.def("bce_loss", &bce_loss, arg("pred"), arg("target"), arg("grad_out"), arg("from_logits"),
          arg("eps"), arg("grad_scale"), S, "Binary cross-entropy (logits or clipped probabilities); returns the SUM.");

    m.def("sgd_update", [](py::handle w, py::handle g, py::handle vel, float lr, float momentum,
                           bool nesterov, std::uintptr_t s) {
        const bool use_vel = momentum != 0.f;
        if (use_vel && vel.is_none()) throw py::value_error("velocity: SGD with momentum needs a velocity array");
        OptArrays o = use_vel ? opt_arrays(w, g, {{vel, "velocity"}}) : opt_arrays(w, g, {});
        pynn::bind::ReleaseGil nogil;
        pynn::cuda::sgd_update(out_f32(o.w), in_f32(o.g), use_vel ? out_f32(o.slots[0]) : nullptr, o.w.size,
                               lr, momentum, nesterov, as_stream(s));
    }, arg("w"), arg("g"), arg("velocity"), arg("lr"), arg("momentum"), arg("nesterov"), S);
    m.def("adam_update", [](py::handle w, py::handle g, py::handle mo, py::handle vo, float lr,
                            double beta1, double beta2, float eps, float wd, std::int64_t step,
                            py::handle vho, std::uintptr_t s) {
        check_step(step);
        const bool ams = !vho.is_none();
        OptArrays o = ams ? opt_arrays(w, g, {{mo, "m"}, {vo, "v"}, {vho, "v_hat"}})
                          : opt_arrays(w, g, {{mo, "m"}, {vo, "v"}});
        pynn::bind::ReleaseGil nogil;
        pynn::cuda::adam_update(out_f32(o.w), in_f32(o.g), out_f32(o.slots[0]), out_f32(o.slots[1]), o.w.size,
                                lr, beta1, beta2, eps, wd, step, ams ? out_f32(o.slots[2]) : nullptr,
                                as_stream(s));
    }, arg("w"), arg("g"), arg("m"), arg("v"), arg("lr"), arg("beta1"), arg("beta2"), arg("eps"),
       arg("weight_decay"), arg("step"), arg("v_hat") = py::none(), S,
       "Adam / AdamW in place; with v_hat, AMSGrad (divides by the running max of v).");
    m.def("nadam_update", [](py::handle w, py::handle g, py::handle mo, py::handle vo, float lr,
                             double beta1, double beta2, float eps, float wd, std::int64_t step,
                             std::uintptr_t s) {
        check_step(step);
        OptArrays o = opt_arrays(w, g, {{mo, "m"}, {vo, "v"}});
        pynn::bind::ReleaseGil nogil;
        pynn::cuda::nadam_update(out_f32(o.w), in_f32(o.g), out_f32(o.slots[0]), out_f32(o.slots[1]),
                                 o.w.size, lr, beta1, beta2, eps, wd, step, as_stream(s));
    }, arg("w"), arg("g"), arg("m"), arg("v"), arg("lr"), arg("beta1"), arg("beta2"), arg("eps"),
       arg("weight_decay"), arg("step"), S, "Nadam (Keras 3) in place.");
    m.def("adamax_update", [](py::handle w, py::handle g, py::handle mo, py::handle uo, float lr,
                              double beta1, double beta2, float eps, float wd, std::int64_t step,
                              std::uintptr_t s) {
        check_step(step);
        OptArrays o = opt_arrays(w, g, {{mo, "m"}, {uo, "u"}});
        pynn::bind::ReleaseGil nogil;
        pynn::cuda::adamax_update(out_f32(o.w), in_f32(o.g), out_f32(o.slots[0]), out_f32(o.slots[1]),
                                  o.w.size, lr, beta1, beta2, eps, wd, step, as_stream(s));
    }, arg("w"), arg("g"), arg("m"), arg("u"), arg("lr"), arg("beta1"), arg("beta2"), arg("eps"),
       arg("weight_decay"), arg("step"), S, "Adamax (Keras 3) in place.");
    m.def("lion_update", [](py::handle w, py::handle g, py::handle mo, float lr, double beta1,
                            double beta2, float wd, std::uintptr_t s) {
        OptArrays o = opt_arrays(w, g, {{mo, "m"}});
        pynn::bind::ReleaseGil nogil;
        pynn::cuda::lion_update(out_f32(o.w), in_f32(o.g), out_f32(o.slots[0]), o.w.size, lr, beta1,
                                beta2, wd, as_stream(s));
    }, arg("w"), arg("g"), arg("m"), arg("lr"), arg("beta1"), arg("beta2"), arg("weight_decay"), S,
       "Lion (Keras 3) in place.");
    m.def("adadelta_update", [](py::handle w, py::handle g, py::handle ago, py::handle ado,
                                float lr, double rho, float eps, float wd, std::uintptr_t s) {
        OptArrays o = opt_arrays(w, g, {{ago, "accumulated_grad"}, {ado, "accumulated_delta"}});
        pynn::bind::ReleaseGil nogil;
        pynn::cuda::adadelta_update(out_f32(o.w), in_f32(o.g), out_f32(o.slots[0]), out_f32(o.slots[1]),
                                    o.w.size, lr, rho, eps, wd, as_stream(s));
    }, arg("w"), arg("g"), arg("accumulated_grad"), arg("accumulated_delta"), arg("lr"), arg("rho"),
       arg("eps"), arg("weight_decay"), S, "Adadelta (Keras 3) in place.");
    m.def("rmsprop_update", [](py::handle w, py::handle g, py::handle vel, py::handle mom, float lr,
                               double rho, float momentum, float eps, std::uintptr_t s) {
        const bool use_mom = momentum > 0.f;
        if (use_mom && mom.is_none()) throw py::value_error("momentum_buf: RMSprop with momentum needs it");
        OptArrays o = use_mom ? opt_arrays(w, g, {{vel, "velocity"}, {mom, "momentum_buf"}})
                              : opt_arrays(w, g, {{vel, "velocity"}});
        pynn::bind::ReleaseGil nogil;
        pynn::cuda::rmsprop_update(out_f32(o.w), in_f32(o.g), out_f32(o.slots[0]),
                                   use_mom ? out_f32(o.slots[1]) : nullptr, o.w.size, lr, rho, momentum,
                                   eps, as_stream(s));
    }, arg("w"), arg("g"), arg("velocity"), arg("momentum_buf"), arg("lr"), arg("rho"), arg("momentum"),
       arg("eps"), S);
    m.def("adagrad_update", [](py::handle w, py::handle g, py::handle acc, float lr, float eps,
                               std::uintptr_t s) {
        OptArrays o = opt_arrays(w, g, {{acc, "accumulator"}});
        pynn::bind::ReleaseGil nogil;
        pynn::cuda::adagrad_update(out_f32(o.w), in_f32(o.g), out_f32(o.slots[0]), o.w.size, lr, eps,
                                   as_stream(s));
    }, arg("w"), arg("g"), arg("accumulator"), arg("lr"), arg("eps"), S);
}
