// AVX2 + FMA loops of the optimizer updates (8 floats per instruction, sqrt and division
// vectorised): with baseline SSE2 Adam's 4-wide sqrt + div made it the largest non-GEMM cost
// of a training step. Compiled with -mavx2 -mfma only, called only when the GEMM dispatch
// (cpuid + xgetbv, PYNN_ISA) chose avx2 or avx512. Same formulas and operation order as
// csrc/math/optimizers.h, except that a multiply feeding an add is one FMA (one rounding
// instead of two: the last bit may differ from the generic path; no reassociation, IEEE sqrt
// and division). Everything but optimizer_ranges_avx2() is in an anonymous namespace and only
// <immintrin.h> is included, so no inline code is shared with the generic file under one name.
#include <immintrin.h>

#include "cpu/optimizer_ranges.h"

namespace pynn::opt_detail {
namespace {

// Full vectors load/store plainly; the last n % 8 elements go through the same code with
// masked loads/stores (masked-off lanes read as 0 and are never written), so the tail gets
// exactly the vector path's rounding and nothing reads past the arrays.
struct Full {
    __m256 load(const float* p) const { return _mm256_loadu_ps(p); }
    void store(float* p, __m256 x) const { _mm256_storeu_ps(p, x); }
};
struct Part {
    __m256i mask;
    __m256 load(const float* p) const { return _mm256_maskload_ps(p, mask); }
    void store(float* p, __m256 x) const { _mm256_maskstore_ps(p, mask, x); }
};

template <class Step>
void for_vectors(index_t n, Step&& step) {
    index_t i = 0;
    for (; i + 8 <= n; i += 8) step(Full{}, i);
    if (i < n) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        step(Part{_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)), lane)}, i);
    }
}

void sgd(float* __restrict w, const float* __restrict g, index_t n, float lr) {
    const __m256 vlr = _mm256_set1_ps(lr);
    for_vectors(n, [&](auto io, index_t i) {
        io.store(w + i, _mm256_fnmadd_ps(vlr, io.load(g + i), io.load(w + i)));  // w - lr g
    });
}

template <bool Nesterov>
void sgd_momentum_t(float* __restrict w, const float* __restrict g, float* __restrict vel,
                    index_t n, float lr, float momentum) {
    const __m256 vlr = _mm256_set1_ps(lr), vmom = _mm256_set1_ps(momentum);
    for_vectors(n, [&](auto io, index_t i) {
        const __m256 lrg = _mm256_mul_ps(vlr, io.load(g + i));
        const __m256 v = _mm256_fmsub_ps(vmom, io.load(vel + i), lrg);  // mom vel - lr g
        io.store(vel + i, v);
        const __m256 inc = Nesterov ? _mm256_fmsub_ps(vmom, v, lrg) : v;
        io.store(w + i, _mm256_add_ps(io.load(w + i), inc));
    });
}

void sgd_momentum(float* w, const float* g, float* vel, index_t n, float lr, float momentum) {
    sgd_momentum_t<false>(w, g, vel, n, lr, momentum);
}
void sgd_nesterov(float* w, const float* g, float* vel, index_t n, float lr, float momentum) {
    sgd_momentum_t<true>(w, g, vel, n, lr, momentum);
}

template <bool Decay>
void adam_t(float* __restrict w, const float* __restrict g, float* __restrict m,
            float* __restrict v, index_t n, float lr_t, float omb1, float omb2, float eps,
            float lr_wd) {
    const __m256 vlr = _mm256_set1_ps(lr_t), vb1 = _mm256_set1_ps(omb1),
                 vb2 = _mm256_set1_ps(omb2), veps = _mm256_set1_ps(eps),
                 vwd = _mm256_set1_ps(lr_wd);
    for_vectors(n, [&](auto io, index_t i) {
        const __m256 gi = io.load(g + i), mi0 = io.load(m + i), vi0 = io.load(v + i);
        __m256 wi = io.load(w + i);
        if (Decay) wi = _mm256_fnmadd_ps(vwd, wi, wi);                              // w - lr_wd w
        const __m256 mi = _mm256_fmadd_ps(_mm256_sub_ps(gi, mi0), vb1, mi0);         // m + (g-m)(1-b1)
        const __m256 vi = _mm256_fmadd_ps(_mm256_fmsub_ps(gi, gi, vi0), vb2, vi0);  // v + (g²-v)(1-b2)
        io.store(m + i, mi);
        io.store(v + i, vi);
        const __m256 den = _mm256_add_ps(_mm256_sqrt_ps(vi), veps);
        io.store(w + i, _mm256_sub_ps(wi, _mm256_div_ps(_mm256_mul_ps(mi, vlr), den)));
    });
}

void adam(float* w, const float* g, float* m, float* v, index_t n, float lr_t, float omb1,
          float omb2, float eps) {
    adam_t<false>(w, g, m, v, n, lr_t, omb1, omb2, eps, 0.f);
}
void adamw(float* w, const float* g, float* m, float* v, index_t n, float lr_t, float omb1,
           float omb2, float eps, float lr_wd) {
    adam_t<true>(w, g, m, v, n, lr_t, omb1, omb2, eps, lr_wd);
}

template <bool Momentum>
void rmsprop_t(float* __restrict w, const float* __restrict g, float* __restrict vel,
               float* __restrict mom, index_t n, float lr, float rho, float omr, float momentum,
               float eps) {
    const __m256 vlr = _mm256_set1_ps(lr), vrho = _mm256_set1_ps(rho),
                 vomr = _mm256_set1_ps(omr), veps = _mm256_set1_ps(eps),
                 vmom = _mm256_set1_ps(momentum);
    for_vectors(n, [&](auto io, index_t i) {
        const __m256 gi = io.load(g + i);
        // vel = rho vel + (1 - rho) g²; inc = lr g / sqrt(vel + eps)
        const __m256 vi =
            _mm256_fmadd_ps(vrho, io.load(vel + i), _mm256_mul_ps(vomr, _mm256_mul_ps(gi, gi)));
        io.store(vel + i, vi);
        __m256 inc = _mm256_div_ps(_mm256_mul_ps(vlr, gi), _mm256_sqrt_ps(_mm256_add_ps(vi, veps)));
        if (Momentum) {
            inc = _mm256_fmadd_ps(vmom, io.load(mom + i), inc);  // mom = momentum mom + inc
            io.store(mom + i, inc);
        }
        io.store(w + i, _mm256_sub_ps(io.load(w + i), inc));
    });
}

void rmsprop(float* w, const float* g, float* vel, index_t n, float lr, float rho, float omr,
             float eps) {
    rmsprop_t<false>(w, g, vel, nullptr, n, lr, rho, omr, 0.f, eps);
}
void rmsprop_momentum(float* w, const float* g, float* vel, float* mom, index_t n, float lr,
                      float rho, float omr, float momentum, float eps) {
    rmsprop_t<true>(w, g, vel, mom, n, lr, rho, omr, momentum, eps);
}

void adagrad(float* __restrict w, const float* __restrict g, float* __restrict acc, index_t n,
             float lr, float eps) {
    const __m256 vlr = _mm256_set1_ps(lr), veps = _mm256_set1_ps(eps);
    for_vectors(n, [&](auto io, index_t i) {
        const __m256 gi = io.load(g + i);
        const __m256 a = _mm256_fmadd_ps(gi, gi, io.load(acc + i));  // acc + g²
        io.store(acc + i, a);
        const __m256 inc =
            _mm256_div_ps(_mm256_mul_ps(vlr, gi), _mm256_sqrt_ps(_mm256_add_ps(a, veps)));
        io.store(w + i, _mm256_sub_ps(io.load(w + i), inc));
    });
}

// The optimizers with a fused decay: the decay's branch taken once per call. step(io, i, w)
// returns the updated w of lanes [i, i + 8).
template <class Step>
void decayed_vectors(float* __restrict w, index_t n, float lr_wd, Step&& step) {
    const __m256 vwd = _mm256_set1_ps(lr_wd);
    if (lr_wd != 0.f)
        for_vectors(n, [&](auto io, index_t i) {
            const __m256 wi = io.load(w + i);
            io.store(w + i, step(io, i, _mm256_fnmadd_ps(vwd, wi, wi)));  // w - lr_wd w
        });
    else
        for_vectors(n, [&](auto io, index_t i) { io.store(w + i, step(io, i, io.load(w + i))); });
}

void amsgrad(float* __restrict w, const float* __restrict g, float* __restrict m,
             float* __restrict v, float* __restrict vh, index_t n, float lr_t, float omb1,
             float omb2, float eps, float lr_wd) {
    const __m256 vlr = _mm256_set1_ps(lr_t), vb1 = _mm256_set1_ps(omb1),
                 vb2 = _mm256_set1_ps(omb2), veps = _mm256_set1_ps(eps);
    decayed_vectors(w, n, lr_wd, [&](auto io, index_t i, __m256 wi) {
        const __m256 gi = io.load(g + i), mi0 = io.load(m + i), vi0 = io.load(v + i);
        const __m256 mi = _mm256_fmadd_ps(_mm256_sub_ps(gi, mi0), vb1, mi0);
        const __m256 vi = _mm256_fmadd_ps(_mm256_fmsub_ps(gi, gi, vi0), vb2, vi0);
        // v_hat > v ? v_hat : v, the scalar's form (a NaN v goes through)
        const __m256 hi = _mm256_max_ps(io.load(vh + i), vi);
        io.store(m + i, mi);
        io.store(v + i, vi);
        io.store(vh + i, hi);
        const __m256 den = _mm256_add_ps(_mm256_sqrt_ps(hi), veps);
        return _mm256_sub_ps(wi, _mm256_div_ps(_mm256_mul_ps(mi, vlr), den));
    });
}

void nadam(float* __restrict w, const float* __restrict g, float* __restrict m,
           float* __restrict v, index_t n, float c_m, float c_g, float c_v, float omb1,
           float omb2, float eps, float lr_wd) {
    const __m256 vcm = _mm256_set1_ps(c_m), vcg = _mm256_set1_ps(c_g), vcv = _mm256_set1_ps(c_v),
                 vb1 = _mm256_set1_ps(omb1), vb2 = _mm256_set1_ps(omb2), veps = _mm256_set1_ps(eps);
    decayed_vectors(w, n, lr_wd, [&](auto io, index_t i, __m256 wi) {
        const __m256 gi = io.load(g + i), mi0 = io.load(m + i), vi0 = io.load(v + i);
        const __m256 mi = _mm256_fmadd_ps(_mm256_sub_ps(gi, mi0), vb1, mi0);
        const __m256 vi = _mm256_fmadd_ps(_mm256_fmsub_ps(gi, gi, vi0), vb2, vi0);
        io.store(m + i, mi);
        io.store(v + i, vi);
        const __m256 num = _mm256_fmadd_ps(vcm, mi, _mm256_mul_ps(vcg, gi));  // c_m m + c_g g
        const __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, vcv)), veps);
        return _mm256_sub_ps(wi, _mm256_div_ps(num, den));
    });
}

void adamax(float* __restrict w, const float* __restrict g, float* __restrict m,
            float* __restrict u, index_t n, float lr_t, float omb1, float beta2, float eps,
            float lr_wd) {
    const __m256 vlr = _mm256_set1_ps(lr_t), vb1 = _mm256_set1_ps(omb1),
                 vb2 = _mm256_set1_ps(beta2), veps = _mm256_set1_ps(eps),
                 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    decayed_vectors(w, n, lr_wd, [&](auto io, index_t i, __m256 wi) {
        const __m256 gi = io.load(g + i), mi0 = io.load(m + i);
        const __m256 mi = _mm256_fmadd_ps(_mm256_sub_ps(gi, mi0), vb1, mi0);
        // max(b2 u, |g|); _mm256_max_ps returns its second operand for a NaN, as the
        // scalar `bu > ag ? bu : ag` does
        const __m256 ui = _mm256_max_ps(_mm256_mul_ps(vb2, io.load(u + i)),
                                        _mm256_and_ps(gi, abs_mask));
        io.store(m + i, mi);
        io.store(u + i, ui);
        return _mm256_sub_ps(wi, _mm256_div_ps(_mm256_mul_ps(vlr, mi), _mm256_add_ps(ui, veps)));
    });
}

void lion(float* __restrict w, const float* __restrict g, float* __restrict m, index_t n,
          float lr, float beta1, float omb1, float beta2, float omb2, float lr_wd) {
    const __m256 vlr = _mm256_set1_ps(lr), vnlr = _mm256_set1_ps(-lr),
                 vb1 = _mm256_set1_ps(beta1), vo1 = _mm256_set1_ps(omb1),
                 vb2 = _mm256_set1_ps(beta2), vo2 = _mm256_set1_ps(omb2),
                 zero = _mm256_setzero_ps();
    decayed_vectors(w, n, lr_wd, [&](auto io, index_t i, __m256 wi) {
        const __m256 gi = io.load(g + i), mi = io.load(m + i);
        const __m256 c = _mm256_fmadd_ps(vb1, mi, _mm256_mul_ps(vo1, gi));  // b1 m + (1-b1) g
        // lr sign(c): lr where c > 0, -lr where c < 0, else c lr (0, or NaN for NaN)
        __m256 step = _mm256_blendv_ps(_mm256_mul_ps(c, vlr), vlr,
                                       _mm256_cmp_ps(c, zero, _CMP_GT_OQ));
        step = _mm256_blendv_ps(step, vnlr, _mm256_cmp_ps(c, zero, _CMP_LT_OQ));
        io.store(m + i, _mm256_fmadd_ps(vb2, mi, _mm256_mul_ps(vo2, gi)));
        return _mm256_sub_ps(wi, step);
    });
}

void adadelta(float* __restrict w, const float* __restrict g, float* __restrict acc_g,
              float* __restrict acc_d, index_t n, float lr, float rho, float omr, float eps,
              float lr_wd) {
    const __m256 vlr = _mm256_set1_ps(lr), vrho = _mm256_set1_ps(rho),
                 vomr = _mm256_set1_ps(omr), veps = _mm256_set1_ps(eps);
    decayed_vectors(w, n, lr_wd, [&](auto io, index_t i, __m256 wi) {
        const __m256 gi = io.load(g + i), adi = io.load(acc_d + i);
        const __m256 ag = _mm256_fmadd_ps(vrho, io.load(acc_g + i),
                                          _mm256_mul_ps(vomr, _mm256_mul_ps(gi, gi)));
        io.store(acc_g + i, ag);
        // d = sqrt(acc_d + eps) g / sqrt(acc_g + eps)
        const __m256 d = _mm256_div_ps(_mm256_mul_ps(_mm256_sqrt_ps(_mm256_add_ps(adi, veps)), gi),
                                       _mm256_sqrt_ps(_mm256_add_ps(ag, veps)));
        io.store(acc_d + i, _mm256_fmadd_ps(vrho, adi, _mm256_mul_ps(vomr, _mm256_mul_ps(d, d))));
        return _mm256_fnmadd_ps(vlr, d, wi);  // w - lr d
    });
}

const OptimizerRanges kTable = {"avx2",  sgd,     sgd_momentum, sgd_nesterov, adam,
                                adamw,   rmsprop, rmsprop_momentum, adagrad,  amsgrad,
                                nadam,   adamax,  lion,         adadelta};

}  // namespace

const OptimizerRanges& optimizer_ranges_avx2() { return kTable; }

}  // namespace pynn::opt_detail
