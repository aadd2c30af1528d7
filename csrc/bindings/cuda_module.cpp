// pynn._cuda: the CUDA backend's kernels. Importing it never needs a GPU or a driver (the CUDA
// runtime is linked statically and finds the driver at the first call); devices() tells
// Python what is there and why CUDA may be unusable. The kernels are bound in
// bind_cuda_kernels.cpp, the training engine in bind_cuda_engine.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "bindings/release_gil.h"
#include "cuda/device_info.h"

namespace py = pybind11;

void bind_cuda_kernels(py::module_& m);
void bind_cuda_engine(py::module_& m);

#ifndef PYNN_CUDA_ARCHS
#define PYNN_CUDA_ARCHS ""
#endif
#ifndef PYNN_CUDA_BUILD_VERSION
#define PYNN_CUDA_BUILD_VERSION "unknown"
#endif

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "pynn CUDA kernels";
    m.attr("architectures") = PYNN_CUDA_ARCHS;
    m.attr("cuda_version") = PYNN_CUDA_BUILD_VERSION;

    m.def("devices", [] {
        pynn::cuda::DeviceReport r;
        {
            pynn::bind::ReleaseGil release;
            r = pynn::cuda::query_devices(PYNN_CUDA_ARCHS);
        }
        py::dict out;
        out["runtime_version"] = r.runtime_version;
        out["driver_version"] = r.driver_version;
        out["error"] = r.error;
        py::list devs;
        for (const auto& d : r.devices) {
            py::dict e;
            e["name"] = d.name;
            e["compute_capability"] = std::to_string(d.major) + "." + std::to_string(d.minor);
            e["total_memory"] = d.total_memory;
            e["supported"] = d.supported;
            devs.append(e);
        }
        out["devices"] = devs;
        return out;
    }, "Query CUDA devices: driver/runtime versions, the error if none, and each device.");

    m.def("arch_compiled", [](int major, int minor, const std::string& archs) {
        return pynn::cuda::arch_compiled(major, minor, archs);
    }, py::arg("major"), py::arg("minor"), py::arg("archs"),
       "Whether a build for archs (CMake CUDA architectures, comma-separated) runs on a GPU "
       "of compute capability major.minor (what devices() reports as supported).");

    m.def("fill", [](std::uintptr_t ptr, float value, long long n, std::uintptr_t stream) {
        if (ptr == 0 && n > 0) throw py::value_error("fill: null device pointer");
        if (n < 0) throw py::value_error("fill: negative element count");
        std::string err = pynn::cuda::fill(reinterpret_cast<float*>(ptr), value, n,
                                           reinterpret_cast<cudaStream_t>(stream));
        if (!err.empty()) throw std::runtime_error("pynn._cuda.fill: " + err);
    }, py::arg("ptr"), py::arg("value"), py::arg("n"), py::arg("stream") = 0,
       "Fill n float32 at a device pointer (from __cuda_array_interface__) on a stream.");

    bind_cuda_kernels(m);
    bind_cuda_engine(m);
}
