// gemm_ref: the specification of pynn::gemm as a plain triple loop with a double accumulator
// (see gemm.h for the contract). Slow on purpose; tests compare the fast path to it.
// alpha == 0 or K == 0: A and B are not read (BLAS convention), C = beta * C + epilogue.
#include "math/activations.h"
#include "pynn/gemm.h"

namespace pynn {

void gemm_ref(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, float alpha,
              const float* A, index_t lda, const float* B, index_t ldb, float beta, float* C,
              index_t ldc, const Epilogue& ep) {
    const bool use_ab = K > 0 && alpha != 0.f;
    for (index_t i = 0; i < M; ++i) {
        for (index_t j = 0; j < N; ++j) {
            double acc = 0.0;
            if (use_ab) {
                for (index_t k = 0; k < K; ++k) {
                    const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                    const float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                    acc += static_cast<double>(a) * static_cast<double>(b);
                }
            }
            double v = static_cast<double>(alpha) * acc;
            if (beta != 0.f) v += static_cast<double>(beta) * C[i * ldc + j];  // beta == 0: C unread
            if (ep.bias) v += ep.bias[j];
            C[i * ldc + j] = math::activate(ep.act, static_cast<float>(v), ep.act_param);
        }
    }
}

}  // namespace pynn
