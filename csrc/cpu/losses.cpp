// Loss value and gradient in one pass. Element-wise losses take pred, target and grad of n
// floats; softmax cross-entropy takes (rows, cols) logits with int32 labels (rows,) or dense
// targets (rows, cols). Each returns the SUM of the losses in double (the caller divides for
// the mean) and writes grad = d(sum)/d(pred) * grad_scale, so the mean's 1/N (and any sample
// weighting) folds into the gradient write instead of costing another pass.
// Sums are carried in double, four accumulators wide so the add latency does not serialise
// the loop; chunk partials add in a fixed order (results do not depend on the thread count).
#include <algorithm>
#include <cmath>

#include "cpu/chunks.h"
#include "cpu/softmax_row.h"
#include "math/activations.h"
#include "pynn/kernels.h"

namespace pynn {
namespace {

// sum over i in [b, e) of term(i), where term also writes grad[i].
template <class Term>
double sum4(index_t b, index_t e, Term term) {
    double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
    index_t i = b;
    for (; i + 4 <= e; i += 4) {
        a0 += term(i);
        a1 += term(i + 1);
        a2 += term(i + 2);
        a3 += term(i + 3);
    }
    for (; i < e; ++i) a0 += term(i);
    return (a0 + a1) + (a2 + a3);
}

template <class Term>
double elementwise_loss(index_t n, Term term) {
    return cpu::sum_chunks(n, [&](index_t b, index_t e) { return sum4(b, e, term); });
}

}  // namespace

// Per row: m = max z; s = sum exp(z - m); loss = (m - z[label]) + log s (in that order: m + log s
// lost log s to rounding once |m| > 1e15, a loss of 0 for two equal logits);
// dlogits = (exp(z - m) / s - onehot(label)) * grad_scale. The exps are stored in dlogits on
// the way and rescaled in place, so each element costs one exp. z[label] is read before the
// row is overwritten, so dlogits may alias logits.
double softmax_xent_sparse(const float* logits, const std::int32_t* labels, float* dlogits,
                           index_t rows, index_t cols, float grad_scale) {
    if (cols <= 0) return 0.0;
    return cpu::sum_row_chunks(rows, cols, [&](index_t r0, index_t r1) {
        double loss = 0.0;
        for (index_t r = r0; r < r1; ++r) {
            const float* z = logits + r * cols;
            float* d = dlogits + r * cols;
            const index_t label = labels[r];
            const float z_label = z[label];
            float m;
            const float s = cpu::exp_shifted_row(z, d, cols, &m);
            loss += (double(m) - double(z_label)) + std::log(double(s));
            const float k = grad_scale / s;
            for (index_t j = 0; j < cols; ++j) d[j] *= k;
            d[label] -= grad_scale;
        }
        return loss;
    });
}

// Per row, with T = sum t: loss = sum t_j (lse - z_j) = sum t_j (m - z_j) + T log s, a sum of
// non-negative terms for t >= 0 (no cancellation near the max);
// dlogits = (softmax(z) T - t) * grad_scale. Each z_j is read before dlogits[j] is written,
// so dlogits may alias logits (but not targets).
double softmax_xent_dense(const float* logits, const float* targets, float* dlogits,
                          index_t rows, index_t cols, float grad_scale) {
    if (cols <= 0) return 0.0;
    return cpu::sum_row_chunks(rows, cols, [&](index_t r0, index_t r1) {
        double loss = 0.0;
        for (index_t r = r0; r < r1; ++r) {
            const float* z = logits + r * cols;
            const float* t = targets + r * cols;
            float* d = dlogits + r * cols;
            float m = z[0];
            for (index_t j = 1; j < cols; ++j) m = z[j] > m ? z[j] : m;
            double s = 0.0;  // as exp_shifted_row: a float sum's error grows with the row
            double tsum = 0.0, cross = 0.0;
            for (index_t j = 0; j < cols; ++j) {
                const float zj = z[j], tj = t[j];
                const float e = std::exp(zj - m);
                cross += double(tj) * (double(m) - double(zj));
                tsum += tj;
                s += e;
                d[j] = e;
            }
            loss += cross + tsum * std::log(s);
            const float k = static_cast<float>(tsum / s) * grad_scale;
            for (index_t j = 0; j < cols; ++j) d[j] = d[j] * k - t[j] * grad_scale;
        }
        return loss;
    });
}

double mse_loss(const float* pred, const float* target, float* grad, index_t n, float grad_scale) {
    const float k = 2.f * grad_scale;
    return elementwise_loss(n, [=](index_t i) {
        const float d = pred[i] - target[i];
        grad[i] = k * d;
        return double(d) * double(d);
    });
}

double mae_loss(const float* pred, const float* target, float* grad, index_t n, float grad_scale) {
    return elementwise_loss(n, [=](index_t i) {
        const float d = pred[i] - target[i];
        grad[i] = d > 0.f ? grad_scale : (d < 0.f ? -grad_scale : d * 0.f);  // NaN stays NaN
        return double(std::fabs(d));
    });
}

// Quadratic within delta of the target, linear (slope delta) beyond: 0.5 d^2 or
// delta (|d| - delta / 2); the two pieces and their slopes meet at |d| = delta.
double huber_loss(const float* pred, const float* target, float* grad, index_t n, float delta,
                  float grad_scale) {
    const float kd = delta * grad_scale;
    return elementwise_loss(n, [=](index_t i) {
        const float d = pred[i] - target[i];
        const float ad = std::fabs(d);
        if (!(ad > delta)) {  // (a NaN error takes this branch: NaN loss and gradient)
            grad[i] = d * grad_scale;
            return 0.5 * double(d) * double(d);
        }
        grad[i] = d > 0.f ? kd : -kd;
        return double(delta) * (double(ad) - 0.5 * double(delta));
    });
}

// from_logits: loss = max(x, 0) - x t + log1p(exp(-|x|)) (never overflows), grad = sigmoid(x) - t.
// Probabilities: clipped to [eps, 1 - eps] as Keras does; the clip's gradient is zero outside.
double bce_loss(const float* pred, const float* target, float* grad, index_t n, bool from_logits,
                float eps, float grad_scale) {
    if (from_logits) {
        return elementwise_loss(n, [=](index_t i) {
            const float x = pred[i], t = target[i];
            grad[i] = (math::sigmoid(x) - t) * grad_scale;
            return double(std::max(x, 0.f)) - double(x) * double(t) +
                   double(std::log1p(std::exp(-std::fabs(x))));
        });
    }
    const float hi = 1.f - eps;
    return elementwise_loss(n, [=](index_t i) {
        const float p = pred[i], t = target[i];
        const float pc = std::min(std::max(p, eps), hi);
        const float q = 1.f - pc;
        grad[i] = (p > eps && p < hi) ? (pc - t) / (pc * q) * grad_scale : 0.f;
        return -(double(t) * double(std::log(pc)) + (1.0 - double(t)) * double(std::log(q)));
    });
}

}  // namespace pynn
