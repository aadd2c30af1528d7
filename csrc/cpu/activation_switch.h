// One switch from a run-time activation code to a compile-time one, so that each activation
// gets its own loop instantiation (resolved once per call, not per element; the loops then
// vectorise). Listed once here for the element-wise kernels and the GEMM epilogue.
#pragma once
#include <type_traits>

#include "pynn/common.h"

namespace pynn::cpu {

template <Activation A>
using ActivationTag = std::integral_constant<Activation, A>;

// Calls f(ActivationTag<act>{}) and returns true, or returns false for linear (and any code
// outside the enum) without calling f.
template <class F>
bool with_activation(Activation act, F&& f) {
    switch (act) {
#define PYNN_ACTIVATION_CASE(NAME)            \
    case Activation::NAME:                    \
        f(ActivationTag<Activation::NAME>{}); \
        return true;
        PYNN_ACTIVATION_CASE(relu)
        PYNN_ACTIVATION_CASE(leaky_relu)
        PYNN_ACTIVATION_CASE(elu)
        PYNN_ACTIVATION_CASE(gelu_tanh)
        PYNN_ACTIVATION_CASE(sigmoid)
        PYNN_ACTIVATION_CASE(tanh)
        PYNN_ACTIVATION_CASE(silu)
        PYNN_ACTIVATION_CASE(softplus)
        PYNN_ACTIVATION_CASE(softsign)
        PYNN_ACTIVATION_CASE(selu)
        PYNN_ACTIVATION_CASE(relu6)
        PYNN_ACTIVATION_CASE(hard_sigmoid)
        PYNN_ACTIVATION_CASE(hard_silu)
        PYNN_ACTIVATION_CASE(mish)
        PYNN_ACTIVATION_CASE(gelu)
        PYNN_ACTIVATION_CASE(exponential)
#undef PYNN_ACTIVATION_CASE
        default: return false;
    }
}

}  // namespace pynn::cpu
