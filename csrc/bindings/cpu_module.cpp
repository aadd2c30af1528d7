// pynn._C: the CPU backend's kernels. Each family registers itself from its own file
// (bind_gemm.cpp, bind_kernels.cpp); this file holds the module and its build information.
#include <pybind11/pybind11.h>
#include <string>

namespace py = pybind11;

void register_gemm(py::module_& m);
void register_kernels(py::module_& m);
void register_engine(py::module_& m);

#ifndef PYNN_VERSION
#define PYNN_VERSION "unknown"
#endif
#ifndef PYNN_CUDA_STATUS
#define PYNN_CUDA_STATUS "unknown"
#endif

PYBIND11_MODULE(_C, m) {
    m.doc() = "pynn CPU kernels (C++): GEMM, activations, losses, optimizers";
    py::dict info;
    info["version"] = PYNN_VERSION;
    std::string compiler =
#if defined(__clang__)
        "clang " __clang_version__;
#elif defined(__GNUC__)
        "gcc " __VERSION__;
#else
        "unknown";
#endif
    compiler.erase(compiler.find_last_not_of(' ') + 1);  // __clang_version__ ends in a space
    info["compiler"] = compiler;
    info["cuda_build"] = PYNN_CUDA_STATUS;
#if defined(PYNN_EMULATE_AVX512)
    info["avx512_emulated"] = true;  // a test build (CMake option PYNN_EMULATE_AVX512)
#else
    info["avx512_emulated"] = false;
#endif
    m.attr("build_info") = info;
    register_gemm(m);
    register_kernels(m);
    register_engine(m);
}
