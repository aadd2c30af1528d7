// pynn._C bindings for the element-wise, softmax, bias-gradient, loss and optimizer kernels
// (csrc/include/pynn/kernels.h). Every array is float32 (labels int32), C-contiguous, and is
// checked for dtype, ndim, shape and writability before a pointer is taken; outputs are
// caller-allocated (no copies, no allocation here). The GIL is released around each kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/checks.h"
#include "bindings/release_gil.h"
#include "pynn/kernels.h"

namespace py = pybind11;
using namespace pynn;
using namespace pynn::bind;

namespace {

// The optimizer loops use __restrict pointers: distinct buffers that overlap would be
// silently miscomputed, so refuse them.
void check_disjoint(const py::array& a, const char* a_name, const py::array& b, const char* b_name) {
    if (a.nbytes() == 0 || b.nbytes() == 0) return;
    auto a0 = reinterpret_cast<std::uintptr_t>(a.data()), b0 = reinterpret_cast<std::uintptr_t>(b.data());
    if (a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes())
        throw py::value_error(std::string(a_name) + " and " + b_name +
                              ": expected separate buffers, got overlapping memory");
}


// ---- activations, softmax, bias gradient ----------------------------------------------------

void dropout_apply_py(const py::object& x_obj, py::array& out, double rate, std::uint64_t seed,
                      std::uint64_t step) {
    if (!(rate >= 0.0 && rate < 1.0))
        throw py::value_error("rate: expected a dropout rate in [0, 1), got " + std::to_string(rate));
    const float* xp = nullptr;
    if (!x_obj.is_none()) {
        py::array x = x_obj.cast<py::array>();
        xp = in_ptr<float>(x, "x");
        check_same_shape(x, "x", out, "out");
    }
    float* op = out_ptr<float>(out, "out");
    const index_t n = out.size();
    if (n > index_t(0xffffffff))
        throw py::value_error("out: dropout masks cover at most 2^32 - 1 elements per call");
    ReleaseGil nogil;
    dropout_apply(xp, op, n, rate, seed, step);
}

void activation_forward_py(int act, float param, const py::array& z, py::array& out) {
    Activation a = to_activation(act);
    const float* zp = in_ptr<float>(z, "z");
    check_same_shape(z, "z", out, "out");
    float* op = out_ptr<float>(out, "out");
    index_t n = z.size();
    ReleaseGil nogil;
    activation_forward(a, param, zp, op, n);
}

void activation_backward_py(int act, float param, const py::object& z_obj, const py::array& y,
                            const py::array& dy, py::array& out) {
    Activation a = to_activation(act);
    const float* yp = in_ptr<float>(y, "y");
    const float* dyp = in_ptr<float>(dy, "dy");
    check_same_shape(y, "y", dy, "dy");
    check_same_shape(y, "y", out, "out");
    const float* zp = nullptr;
    if (!z_obj.is_none()) {
        py::array z = z_obj.cast<py::array>();
        zp = in_ptr<float>(z, "z");
        check_same_shape(y, "y", z, "z");
    } else if (activation_needs_z(a)) {
        throw py::value_error("z: this activation's backward needs the pre-activation z, got None");
    }
    float* op = out_ptr<float>(out, "out");
    index_t n = y.size();
    ReleaseGil nogil;
    activation_backward(a, param, zp, yp, dyp, op, n);
}

void softmax_forward_py(const py::array& z, py::array& out) {
    const float* zp = in_ptr<float>(z, "z", 2);
    check_same_shape(z, "z", out, "out");
    float* op = out_ptr<float>(out, "out");
    index_t rows = z.shape(0), cols = z.shape(1);
    ReleaseGil nogil;
    softmax_forward(zp, op, rows, cols);
}

void softmax_backward_py(const py::array& y, const py::array& dy, py::array& out) {
    const float* yp = in_ptr<float>(y, "y", 2);
    const float* dyp = in_ptr<float>(dy, "dy");
    check_same_shape(y, "y", dy, "dy");
    check_same_shape(y, "y", out, "out");
    float* op = out_ptr<float>(out, "out");
    index_t rows = y.shape(0), cols = y.shape(1);
    ReleaseGil nogil;
    softmax_backward(yp, dyp, op, rows, cols);
}

void bias_grad_py(const py::array& dz, py::array& out) {
    const float* dzp = in_ptr<float>(dz, "dz", 2);
    float* op = out_ptr<float>(out, "out", 1);
    check_dim(out, "out", 0, dz.shape(1), "length (columns of dz)");
    check_disjoint(dz, "dz", out, "out");
    index_t rows = dz.shape(0), cols = dz.shape(1);
    ReleaseGil nogil;
    bias_grad(dzp, op, rows, cols);
}

bool all_finite_py(const py::array& x) {
    // Any shape; the caller (pynn/data.py) sends contiguous float32/float64 arrays only.
    const index_t n = static_cast<index_t>(x.size());
    if (has_dtype<double>(x)) {
        const double* p = in_ptr<double>(x, "x");
        ReleaseGil nogil;
        return all_finite(p, n);
    }
    const float* p = in_ptr<float>(x, "x");  // TypeError for any other dtype
    ReleaseGil nogil;
    return all_finite(p, n);
}

// ---- losses ---------------------------------------------------------------------------------

double softmax_xent_sparse_py(const py::array& logits, const py::array& labels,
                              py::array& dlogits, float grad_scale) {
    const float* zp = in_ptr<float>(logits, "logits", 2);
    const index_t rows = logits.shape(0), cols = logits.shape(1);
    const std::int32_t* lp = in_ptr<std::int32_t>(labels, "labels", 1);
    check_dim(labels, "labels", 0, rows, "length (rows of logits)");
    check_same_shape(logits, "logits", dlogits, "dlogits");
    float* dp = out_ptr<float>(dlogits, "dlogits");
    // An out-of-range label would index past the row: all are checked before any work, on a
    // copy the kernel then reads (labels sharing memory with dlogits, or written by another
    // thread while the GIL is released, cannot change after the check).
    std::vector<std::int32_t> checked(lp, lp + rows);
    for (index_t r = 0; r < rows; ++r)
        if (checked[r] < 0 || checked[r] >= cols)
            throw py::value_error("labels: expected class indices in [0, " + std::to_string(cols) +
                                  "), got " + std::to_string(checked[r]) + " at index " +
                                  std::to_string(r));
    ReleaseGil nogil;
    return softmax_xent_sparse(zp, checked.data(), dp, rows, cols, grad_scale);
}

double softmax_xent_dense_py(const py::array& logits, const py::array& targets,
                             py::array& dlogits, float grad_scale) {
    const float* zp = in_ptr<float>(logits, "logits", 2);
    const float* tp = in_ptr<float>(targets, "targets");
    check_same_shape(logits, "logits", targets, "targets");
    check_same_shape(logits, "logits", dlogits, "dlogits");
    float* dp = out_ptr<float>(dlogits, "dlogits");
    check_disjoint(targets, "targets", dlogits, "dlogits");
    index_t rows = logits.shape(0), cols = logits.shape(1);
    ReleaseGil nogil;
    return softmax_xent_dense(zp, tp, dp, rows, cols, grad_scale);
}

// pred, target and grad: same shape, any ndim.
struct LossArgs {
    const float* pred;
    const float* target;
    float* grad;
    index_t n;
};

LossArgs loss_args(const py::array& pred, const py::array& target, py::array& grad) {
    const float* pp = in_ptr<float>(pred, "pred");
    const float* tp = in_ptr<float>(target, "target");
    check_same_shape(pred, "pred", target, "target");
    check_same_shape(pred, "pred", grad, "grad_out");
    float* gp = out_ptr<float>(grad, "grad_out");
    return {pp, tp, gp, static_cast<index_t>(pred.size())};
}

double mse_loss_py(const py::array& pred, const py::array& target, py::array& grad, float grad_scale) {
    LossArgs a = loss_args(pred, target, grad);
    ReleaseGil nogil;
    return mse_loss(a.pred, a.target, a.grad, a.n, grad_scale);
}

double mae_loss_py(const py::array& pred, const py::array& target, py::array& grad, float grad_scale) {
    LossArgs a = loss_args(pred, target, grad);
    ReleaseGil nogil;
    return mae_loss(a.pred, a.target, a.grad, a.n, grad_scale);
}

double huber_loss_py(const py::array& pred, const py::array& target, py::array& grad, float delta,
                     float grad_scale) {
    LossArgs a = loss_args(pred, target, grad);
    ReleaseGil nogil;
    return huber_loss(a.pred, a.target, a.grad, a.n, delta, grad_scale);
}

double bce_loss_py(const py::array& pred, const py::array& target, py::array& grad,
                   bool from_logits, float eps, float grad_scale) {
    LossArgs a = loss_args(pred, target, grad);
    ReleaseGil nogil;
    return bce_loss(a.pred, a.target, a.grad, a.n, from_logits, eps, grad_scale);
}

// ---- optimizers -----------------------------------------------------------------------------

// w (written) and g: float32, C-contiguous, same shape, separate.
float* param_ptr(py::array& w, const py::array& g, const float** gp) {
    float* wp = out_ptr<float>(w, "w");
    *gp = in_ptr<float>(g, "g");
    check_same_shape(w, "w", g, "g");
    check_disjoint(w, "w", g, "g");
    return wp;
}

// A slot buffer (written), same shape as w and separate from w and g.
float* slot_ptr(py::array& s, const char* name, const py::array& w, const py::array& g) {
    float* sp = out_ptr<float>(s, name);
    check_same_shape(w, "w", s, name);
    check_disjoint(w, "w", s, name);
    check_disjoint(g, "g", s, name);
    return sp;
}

void sgd_update_py(py::array& w, const py::array& g, const py::object& velocity_obj, float lr,
                   float momentum, bool nesterov) {
    const float* gp;
    float* wp = param_ptr(w, g, &gp);
    float* vp = nullptr;
    if (!velocity_obj.is_none()) {
        py::array vel = velocity_obj.cast<py::array>();
        vp = slot_ptr(vel, "velocity", w, g);
    } else if (momentum != 0.f) {
        throw py::value_error("velocity: required when momentum != 0 (momentum = " +
                              std::to_string(momentum) + "), got None");
    }
    index_t n = w.size();
    ReleaseGil nogil;
    sgd_update(wp, gp, vp, n, lr, momentum, nesterov);
}

void check_step(std::int64_t step) {
    if (step < 1)
        throw py::value_error("step: expected the 1-based update count (>= 1), got " +
                              std::to_string(step));
}

// Two slots of one parameter (Adam's m and v, Adadelta's accumulators...): checked against
// w and g and against each other.
std::pair<float*, float*> slot_pair(py::array& a, const char* a_name, py::array& b,
                                    const char* b_name, const py::array& w, const py::array& g) {
    float* ap = slot_ptr(a, a_name, w, g);
    float* bp = slot_ptr(b, b_name, w, g);
    check_disjoint(a, a_name, b, b_name);
    return {ap, bp};
}

void adam_update_py(py::array& w, const py::array& g, py::array& m, py::array& v, float lr,
                    double beta1, double beta2, float eps, float weight_decay, std::int64_t step,
                    const py::object& v_hat_obj) {
    check_step(step);
    const float* gp;
    float* wp = param_ptr(w, g, &gp);
    auto [mp, vp] = slot_pair(m, "m", v, "v", w, g);
    float* hp = nullptr;
    py::array v_hat;
    if (!v_hat_obj.is_none()) {
        v_hat = v_hat_obj.cast<py::array>();
        hp = slot_ptr(v_hat, "v_hat", w, g);
        check_disjoint(m, "m", v_hat, "v_hat");
        check_disjoint(v, "v", v_hat, "v_hat");
    }
    index_t n = w.size();
    ReleaseGil nogil;
    adam_update(wp, gp, mp, vp, n, lr, beta1, beta2, eps, weight_decay, step, hp);
}

void nadam_update_py(py::array& w, const py::array& g, py::array& m, py::array& v, float lr,
                     double beta1, double beta2, float eps, float weight_decay,
                     std::int64_t step) {
    check_step(step);
    const float* gp;
    float* wp = param_ptr(w, g, &gp);
    auto [mp, vp] = slot_pair(m, "m", v, "v", w, g);
    index_t n = w.size();
    ReleaseGil nogil;
    nadam_update(wp, gp, mp, vp, n, lr, beta1, beta2, eps, weight_decay, step);
}

void adamax_update_py(py::array& w, const py::array& g, py::array& m, py::array& u, float lr,
                      double beta1, double beta2, float eps, float weight_decay,
                      std::int64_t step) {
    check_step(step);
    const float* gp;
    float* wp = param_ptr(w, g, &gp);
    auto [mp, up] = slot_pair(m, "m", u, "u", w, g);
    index_t n = w.size();
    ReleaseGil nogil;
    adamax_update(wp, gp, mp, up, n, lr, beta1, beta2, eps, weight_decay, step);
}

void lion_update_py(py::array& w, const py::array& g, py::array& m, float lr, double beta1,
                    double beta2, float weight_decay) {
    const float* gp;
    float* wp = param_ptr(w, g, &gp);
    float* mp = slot_ptr(m, "m", w, g);
    index_t n = w.size();
    ReleaseGil nogil;
    lion_update(wp, gp, mp, n, lr, beta1, beta2, weight_decay);
}

void adadelta_update_py(py::array& w, const py::array& g, py::array& acc_grad,
                        py::array& acc_delta, float lr, double rho, float eps,
                        float weight_decay) {
    const float* gp;
    float* wp = param_ptr(w, g, &gp);
    auto [ap, dp] = slot_pair(acc_grad, "accumulated_grad", acc_delta, "accumulated_delta", w, g);
    index_t n = w.size();
    ReleaseGil nogil;
    adadelta_update(wp, gp, ap, dp, n, lr, rho, eps, weight_decay);
}

void rmsprop_update_py(py::array& w, const py::array& g, py::array& velocity,
                       const py::object& momentum_obj, float lr, double rho, float momentum,
                       float eps) {
    const float* gp;
    float* wp = param_ptr(w, g, &gp);
    float* vp = slot_ptr(velocity, "velocity", w, g);
    float* mp = nullptr;
    py::array mom;
    if (momentum > 0.f) {
        if (momentum_obj.is_none())
            throw py::value_error("momentum_buf: required when momentum > 0 (momentum = " +
                                  std::to_string(momentum) + "), got None");
        mom = momentum_obj.cast<py::array>();
        mp = slot_ptr(mom, "momentum_buf", w, g);
        check_disjoint(velocity, "velocity", mom, "momentum_buf");
    }
    index_t n = w.size();
    ReleaseGil nogil;
    rmsprop_update(wp, gp, vp, mp, n, lr, rho, momentum, eps);
}

void adagrad_update_py(py::array& w, const py::array& g, py::array& acc, float lr, float eps) {
    const float* gp;
    float* wp = param_ptr(w, g, &gp);
    float* ap = slot_ptr(acc, "accumulator", w, g);
    index_t n = w.size();
    ReleaseGil nogil;
    adagrad_update(wp, gp, ap, n, lr, eps);
}

}  // namespace

void register_kernels(py::module_& m) {
    using py::arg;
    // The number of activation codes (common.h), which pynn.backend.kernel_calls must match.
    m.attr("activation_count") = kActivationCount;
    m.def("activation_forward", &activation_forward_py, arg("act"), arg("param"), arg("z"),
          arg("out"),
          "out = f(z) element-wise; act is a pynn Activation code, param the leaky_relu slope / "
          "elu alpha. z, out: float32, same shape; out may be z.");
    m.def("activation_backward", &activation_backward_py, arg("act"), arg("param"), arg("z"),
          arg("y"), arg("dy"), arg("out"),
          "out = dy * f'(.) from the forward output y; z (pre-activation) is needed for gelu, "
          "silu, hard_silu and mish only, else may be None. All float32, same shape; out may be dy (or y, z).");
    m.def("softmax_forward", &softmax_forward_py, arg("z"), arg("out"),
          "Row softmax of 2-D z (rows, cols) into out (same shape; may be z). Stable for any "
          "logits (the row max is subtracted).");
    m.def("softmax_backward", &softmax_backward_py, arg("y"), arg("dy"), arg("out"),
          "out = y * (dy - sum(dy * y, axis=1, keepdims=True)) for 2-D y; out may be dy.");
    m.def("dropout_apply", &dropout_apply_py, arg("x"), arg("out"), arg("rate"), arg("seed"),
          arg("step"),
          "out = x * mask (x None: the mask itself), the counter-based inverted-dropout mask of "
          "math/dropout.h for (seed, step): 0 with probability rate, else 1 / (1 - rate). out "
          "may be x. Any backend draws the same mask for the same (seed, step, shape).");
    m.def("bias_grad", &bias_grad_py, arg("dz"), arg("out"),
          "out[c] = sum over rows of dz[:, c]; dz (rows, cols), out (cols,), accumulated in "
          "double.");

    m.def("all_finite", &all_finite_py, arg("x"),
          "Whether x (float32 or float64, C-contiguous, any shape) holds no NaN and no "
          "infinity: one pass over the threads.");

    m.def("softmax_xent_sparse", &softmax_xent_sparse_py, arg("logits"), arg("labels"),
          arg("dlogits"), arg("grad_scale"),
          "Softmax cross-entropy with int32 class labels (rows,) for logits (rows, cols). "
          "Returns the SUM of the row losses; writes dlogits = (softmax - onehot) * grad_scale. "
          "dlogits may be logits. Raises ValueError for a label outside [0, cols).");
    m.def("softmax_xent_dense", &softmax_xent_dense_py, arg("logits"), arg("targets"),
          arg("dlogits"), arg("grad_scale"),
          "Softmax cross-entropy with target distributions (rows, cols). Returns the SUM of "
          "sum_j t_j (logsumexp - z_j) over rows; writes dlogits = (softmax * sum(t) - t) * "
          "grad_scale. dlogits may be logits, not targets.");
    m.def("mse_loss", &mse_loss_py, arg("pred"), arg("target"), arg("grad_out"), arg("grad_scale"),
          "Returns sum (pred - target)^2; grad_out = 2 (pred - target) * grad_scale. Same "
          "shapes, any ndim; grad_out may be pred or target.");
    m.def("mae_loss", &mae_loss_py, arg("pred"), arg("target"), arg("grad_out"), arg("grad_scale"),
          "Returns sum |pred - target|; grad_out = sign(pred - target) * grad_scale (0 at 0). "
          "grad_out may be pred or target.");
    m.def("huber_loss", &huber_loss_py, arg("pred"), arg("target"), arg("grad_out"), arg("delta"),
          arg("grad_scale"),
          "Returns sum of 0.5 d^2 (|d| <= delta) or delta (|d| - delta / 2), d = pred - target; "
          "grad_out = d or delta sign(d), times grad_scale. grad_out may be pred or target.");
    m.def("bce_loss", &bce_loss_py, arg("pred"), arg("target"), arg("grad_out"),
          arg("from_logits"), arg("eps"), arg("grad_scale"),
          "Binary cross-entropy, returns the sum. from_logits: stable form, grad = (sigmoid(x) "
          "- t) * grad_scale; else pred are probabilities clipped to [eps, 1 - eps] (gradient 0 "
          "where clipped). grad_out may be pred or target.");

    m.def("sgd_update", &sgd_update_py, arg("w"), arg("g"), arg("velocity"), arg("lr"),
          arg("momentum"), arg("nesterov"),
          "In place (Keras SGD): w -= lr g, or with momentum: velocity = momentum velocity - lr "
          "g; w += velocity (nesterov: w += momentum velocity - lr g). velocity may be None "
          "when momentum == 0. w, g, velocity: float32, same shape, separate buffers.");
    m.def("adam_update", &adam_update_py, arg("w"), arg("g"), arg("m"), arg("v"), arg("lr"),
          arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"), arg("step"),
          arg("v_hat") = py::none(),
          "In place Adam (weight_decay 0) / AdamW (w -= lr weight_decay w first), Keras "
          "formulas; step is the 1-based update count. With v_hat, AMSGrad: v_hat = "
          "max(v_hat, v) divides instead of v. w, g, m, v, v_hat: float32, same shape, "
          "separate buffers.");
    // The optimizers below apply Keras 3's decoupled weight decay in the same pass.
    m.def("nadam_update", &nadam_update_py, arg("w"), arg("g"), arg("m"), arg("v"), arg("lr"),
          arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"), arg("step"),
          "In place Nadam, Keras 3's formulas (momentum schedule b1 (1 - 0.5 * 0.96^t)); step "
          "is the 1-based update count.");
    m.def("adamax_update", &adamax_update_py, arg("w"), arg("g"), arg("m"), arg("u"), arg("lr"),
          arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"), arg("step"),
          "In place Adamax: m += (g - m)(1 - b1); u = max(b2 u, |g|); w -= lr m / ((1 - b1^t) "
          "(u + eps)).");
    m.def("lion_update", &lion_update_py, arg("w"), arg("g"), arg("m"), arg("lr"), arg("beta1"),
          arg("beta2"), arg("weight_decay"),
          "In place Lion: w -= lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g.");
    m.def("adadelta_update", &adadelta_update_py, arg("w"), arg("g"), arg("accumulated_grad"),
          arg("accumulated_delta"), arg("lr"), arg("rho"), arg("eps"), arg("weight_decay"),
          "In place Adadelta: acc_g = rho acc_g + (1 - rho) g^2; d = sqrt(acc_d + eps) g / "
          "sqrt(acc_g + eps); acc_d = rho acc_d + (1 - rho) d^2; w -= lr d.");
    m.def("rmsprop_update", &rmsprop_update_py, arg("w"), arg("g"), arg("velocity"),
          arg("momentum_buf"), arg("lr"), arg("rho"), arg("momentum"), arg("eps"),
          "In place RMSprop (not centred): velocity = rho velocity + (1 - rho) g^2; inc = lr g "
          "/ sqrt(velocity + eps); w -= inc, or through momentum_buf when momentum > 0 "
          "(momentum_buf may be None otherwise).");
    m.def("adagrad_update", &adagrad_update_py, arg("w"), arg("g"), arg("accumulator"), arg("lr"),
          arg("eps"),
          "In place Adagrad: accumulator += g^2; w -= lr g / sqrt(accumulator + eps).");
}
