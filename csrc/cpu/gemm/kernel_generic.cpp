// Portable micro-kernel of the CPU GEMM: a 4 x 8 tile of C in plain C++ (no intrinsics), so
// it compiles for any CPU (x86-64 baseline, aarch64, ...). Small enough that the compiler
// keeps the tile in vector registers and vectorises the j loop (SSE2 / NEON). It is the
// fallback and the PYNN_ISA=generic baseline, not the fast path.
#include "cpu/gemm/kernel_table.h"

namespace pynn::gemm_detail {
namespace {

constexpr int MR = 4;
constexpr int NR = 8;

void kernel_4x8(index_t kc, const float* a, index_t rsa, index_t csa, const float* b,
                index_t rsb, float* c, index_t ldc, int m, int n, const TileEpilogue& ep) {
    float t[MR][NR] = {};
    for (index_t k = 0; k < kc; ++k) {
        float bk[NR];
        for (int j = 0; j < NR; ++j) bk[j] = b[j];
        for (int i = 0; i < MR; ++i) {
            const float ai = a[i * rsa];
            for (int j = 0; j < NR; ++j) t[i][j] += ai * bk[j];
        }
        a += csa;
        b += rsb;
    }
    const bool has_beta = ep.beta != 0.f;
    for (int i = 0; i < m; ++i) {
        float* ci = c + i * ldc;
        for (int j = 0; j < n; ++j) {
            float v = ep.alpha * t[i][j];
            if (has_beta) v += ep.beta * ci[j];
            if (ep.bias) v += ep.bias[j];
            if (ep.relu) v = !(v <= 0.f) ? v : 0.f;  // NaN stays NaN
            ci[j] = v;
        }
    }
}

// 16 independent multiply-add chains the compiler vectorises (no FMA in the baseline ISA,
// so this is a mul + add pair per element: 2 flops either way).
float fma_loop(index_t iters) {
    float s[16];
    for (int j = 0; j < 16; ++j) s[j] = static_cast<float>(j);
    const float x = 0.9999999f, y = 1e-7f;
    for (index_t i = 0; i < iters; ++i)
        for (int j = 0; j < 16; ++j) s[j] = s[j] * x + y;
    float r = 0.f;
    for (int j = 0; j < 16; ++j) r += s[j];
    return r;
}

const KernelTable kTable = {"generic", MR, NR, 256, 128, 3072, 64, kernel_4x8,
                            nullptr, fma_loop, 16 * 2};

}  // namespace

const KernelTable& kernels_generic() { return kTable; }

}  // namespace pynn::gemm_detail
