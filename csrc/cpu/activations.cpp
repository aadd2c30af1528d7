// Activation forward/backward, row softmax forward/backward and the bias gradient (column
// sums) on the CPU. Element-wise ops take flat arrays of n floats; softmax and bias_grad take
// row-major (rows, cols). The per-element math lives in csrc/math/activations.h (shared with
// CUDA); here each activation gets its own loop instantiation (the switch is resolved once,
// outside the loop) so that every one vectorises (exp and tanh are libm-free polynomials
// there); their selects need -fno-trapping-math (CMakeLists.txt) to be if-converted, else GCC
// keeps a branch per element. On x86-64 each loop has a second copy compiled for AVX2 (8
// lanes instead of SSE2's 4), run where the GEMM dispatch runs avx2 or avx512; with
// -ffp-contract=off both copies do the same IEEE operations: the same bits.
#include <cmath>
#include <cstring>

#include "cpu/activation_switch.h"
#include "cpu/chunks.h"
#include "cpu/softmax_row.h"
#include "math/activations.h"
#include "pynn/gemm.h"
#include "pynn/kernels.h"

namespace pynn {
namespace {

#if defined(PYNN_X86)
#define PYNN_AVX2_COPY __attribute__((target("avx2")))
#endif

// always_inline: the AVX2 copies below are these loops inlined into an AVX2 function (an
// out-of-line call would run the SSE2 code there).
template <Activation A>
inline __attribute__((always_inline)) void forward_loop(float param, const float* z, float* y,
                                                        index_t n) {
    for (index_t i = 0; i < n; ++i) y[i] = math::activate(A, z[i], param);
}

template <Activation A>
inline __attribute__((always_inline)) void backward_loop(float param, const float* z,
                                                         const float* y, const float* dy,
                                                         float* dz, index_t n) {
    if constexpr (activation_needs_z(A)) {
        for (index_t i = 0; i < n; ++i) dz[i] = dy[i] * math::activation_grad_z(A, z[i]);
    } else {
        for (index_t i = 0; i < n; ++i) dz[i] = dy[i] * math::activation_grad(A, 0.f, y[i], param);
    }
}

#if defined(PYNN_AVX2_COPY)
template <Activation A>
PYNN_AVX2_COPY void forward_loop_avx2(float param, const float* z, float* y, index_t n) {
    forward_loop<A>(param, z, y, n);
}

template <Activation A>
PYNN_AVX2_COPY void backward_loop_avx2(float param, const float* z, const float* y,
                                       const float* dy, float* dz, index_t n) {
    backward_loop<A>(param, z, y, dy, dz, n);
}
#endif

template <Activation A>
void forward_range(float param, const float* z, float* y, index_t n) {
#if defined(PYNN_AVX2_COPY)
    if (avx2_loops_active()) return forward_loop_avx2<A>(param, z, y, n);
#endif
    forward_loop<A>(param, z, y, n);
}

template <Activation A>
void backward_range(float param, const float* z, const float* y, const float* dy, float* dz,
                    index_t n) {
#if defined(PYNN_AVX2_COPY)
    if (avx2_loops_active()) return backward_loop_avx2<A>(param, z, y, dy, dz, n);
#endif
    backward_loop<A>(param, z, y, dy, dz, n);
}

template <Activation A>
void forward_all(float param, const float* z, float* y, index_t n) {
    cpu::for_chunks(n, [&](index_t b, index_t e) { forward_range<A>(param, z + b, y + b, e - b); });
}

template <Activation A>
void backward_all(float param, const float* z, const float* y, const float* dy, float* dz,
                  index_t n) {
    cpu::for_chunks(n, [&](index_t b, index_t e) {
        constexpr bool by_z = activation_needs_z(A);
        backward_range<A>(param, by_z ? z + b : nullptr, by_z ? nullptr : y + b, dy + b,
                          dz + b, e - b);
    });
}

// Column sums of rows [r0, r1) for columns [c0, c0 + w), w <= kColBlock, into tot (double).
// Float partial sums over kRowBlock rows (4 lanes per SSE add, twice double's rate) are flushed
// to double, so the error stays ~kRowBlock ulps of sum |dz| whatever the row count; the column
// block keeps both accumulators in L1 while the rows stream past.
constexpr index_t kColBlock = 256;
constexpr index_t kRowBlock = 32;

void colsum_block(const float* dz, index_t cols, index_t r0, index_t r1, index_t c0, index_t w,
                  double* tot) {
    float part[kColBlock];
    for (index_t c = 0; c < w; ++c) tot[c] = 0.0;
    for (index_t rb = r0; rb < r1; rb += kRowBlock) {
        const index_t re = std::min(r1, rb + kRowBlock);
        for (index_t c = 0; c < w; ++c) part[c] = 0.f;
        for (index_t r = rb; r < re; ++r) {
            const float* row = dz + r * cols + c0;
            for (index_t c = 0; c < w; ++c) part[c] += row[c];
        }
        for (index_t c = 0; c < w; ++c) tot[c] += part[c];
    }
}

}  // namespace

void activation_forward(Activation act, float param, const float* z, float* y, index_t n) {
    const bool done = cpu::with_activation(act, [&](auto tag) {
        forward_all<decltype(tag)::value>(param, z, y, n);
    });
    if (!done && y != z && n > 0) std::memmove(y, z, static_cast<size_t>(n) * sizeof(float));
}

void activation_backward(Activation act, float param, const float* z, const float* y,
                         const float* dy, float* dz, index_t n) {
    const bool done = cpu::with_activation(act, [&](auto tag) {
        backward_all<decltype(tag)::value>(param, z, y, dy, dz, n);
    });
    if (!done && dz != dy && n > 0) std::memmove(dz, dy, static_cast<size_t>(n) * sizeof(float));
}

// y = exp(z - max) / sum: subtracting the row max keeps every exp in (0, 1], so logits of any
// size give no overflow and the sum is >= 1. y may alias z.
void softmax_forward(const float* z, float* y, index_t rows, index_t cols) {
    if (cols <= 0) return;
    cpu::for_row_chunks(rows, cols, [&](index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) {
            const float* zr = z + r * cols;
            float* yr = y + r * cols;
            float m;
            const float inv = 1.f / cpu::exp_shifted_row(zr, yr, cols, &m);
            for (index_t j = 0; j < cols; ++j) yr[j] *= inv;
        }
    });
}

// dz = y * (dy - <dy, y>) per row; the dot product is finished before dz is written, so dz
// may alias dy.
void softmax_backward(const float* y, const float* dy, float* dz, index_t rows, index_t cols) {
    if (cols <= 0) return;
    cpu::for_row_chunks(rows, cols, [&](index_t r0, index_t r1) {
        for (index_t r = r0; r < r1; ++r) {
            const float* yr = y + r * cols;
            const float* dyr = dy + r * cols;
            float* dzr = dz + r * cols;
            double dot = 0.0;
            for (index_t j = 0; j < cols; ++j) dot += double(dyr[j]) * double(yr[j]);
            float d = static_cast<float>(dot);
            for (index_t j = 0; j < cols; ++j) dzr[j] = yr[j] * (dyr[j] - d);
        }
    });
}

// db[c] = sum_r dz[r, c]. Large inputs are cut into row chunks, each reducing to per-column
// double partials that are then added in chunk order (deterministic for any thread count).
void bias_grad(const float* dz, float* db, index_t rows, index_t cols) {
    if (cols <= 0) return;
    double tot[kColBlock];
    if (rows * cols <= cpu::kParallelMin || rows <= 1) {
        for (index_t c0 = 0; c0 < cols; c0 += kColBlock) {
            index_t w = std::min(kColBlock, cols - c0);
            colsum_block(dz, cols, 0, rows, c0, w, tot);
            for (index_t c = 0; c < w; ++c) db[c0 + c] = static_cast<float>(tot[c]);
        }
        return;
    }
    index_t per = cpu::rows_per_chunk(cols);
    index_t tasks = (rows + per - 1) / per;
    std::vector<double> part(static_cast<size_t>(tasks * cols));
    parallel_for(tasks, [&](index_t k) {
        index_t r0 = k * per, r1 = std::min(rows, r0 + per);
        for (index_t c0 = 0; c0 < cols; c0 += kColBlock)
            colsum_block(dz, cols, r0, r1, c0, std::min(kColBlock, cols - c0),
                         part.data() + k * cols + c0);
    });
    for (index_t c = 0; c < cols; ++c) {
        double s = 0.0;
        for (index_t k = 0; k < tasks; ++k) s += part[k * cols + c];
        db[c] = static_cast<float>(s);
    }
}

}  // namespace pynn
