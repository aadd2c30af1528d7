// Device arrays for pynn._cuda: any object with __cuda_array_interface__ (CuPy, PyTorch CUDA,
// Numba, ...) is checked for dtype, C-contiguity, shape and writability before its device
// pointer is taken; a failure raises TypeError/ValueError naming the argument. No CUDA call is
// made here, so every check runs (and is tested) on machines without a GPU.
// Streams: kernels run on the stream the caller passes (the cuda backend passes CuPy's current
// stream), so arrays written on another stream must be synchronised with it first; the
// interface's optional "stream" entry is not waited on.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pynn/common.h"

namespace pynn::bind {
namespace py = pybind11;

struct DeviceArray {
    void* ptr = nullptr;
    std::vector<index_t> shape;
    index_t size = 1;

    index_t dim(size_t i) const { return shape[i]; }
    size_t ndim() const { return shape.size(); }
    std::string shape_str() const {
        std::string s = "(";
        for (size_t i = 0; i < shape.size(); ++i) {
            s += std::to_string(shape[i]);
            if (shape.size() == 1 || i + 1 < shape.size()) s += ",";
            if (i + 1 < shape.size()) s += " ";
        }
        return s + ")";
    }
};

// typestr of the accepted element types: "f4" float32, "i4" int32, "i8" int64.
inline DeviceArray device_array(py::handle obj, const char* name, const char* want,
                                bool writable, int ndim = -1) {
    const std::string arg(name);
    if (!py::hasattr(obj, "__cuda_array_interface__"))
        throw py::type_error(arg + ": expected a CUDA device array (a CuPy array, or any object "
                             "with __cuda_array_interface__), got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    py::dict iface = obj.attr("__cuda_array_interface__");
    const std::string typestr = py::str(iface["typestr"]);
    const std::string want_str(want);
    const index_t item = want_str == "i8" ? 8 : 4;  // bytes per element
    if (typestr.size() != 3 || typestr.substr(1) != want_str || typestr[0] == '>')
        throw py::type_error(arg + ": expected dtype " +
                             (want_str == "f4" ? "float32" : want_str == "i8" ? "int64" : "int32") +
                             ", got typestr '" + typestr + "'");
    if (iface.contains("mask") && !iface["mask"].is_none())
        throw py::value_error(arg + ": masked arrays are not supported");
    DeviceArray a;
    for (py::handle d : py::tuple(iface["shape"])) {
        const index_t n = d.cast<index_t>();
        if (n < 0) throw py::value_error(arg + ": negative dimension");
        a.shape.push_back(n);
        a.size *= n;
    }
    if (ndim >= 0 && static_cast<int>(a.ndim()) != ndim)
        throw py::value_error(arg + ": expected a " + std::to_string(ndim) +
                              "-d array, got shape " + a.shape_str());
    if (a.size > 0 && iface.contains("strides") && !iface["strides"].is_none()) {
        py::tuple strides(iface["strides"]);
        if (strides.size() != a.ndim()) throw py::value_error(arg + ": strides do not match the shape");
        index_t expect = item;
        for (size_t i = a.ndim(); i-- > 0;) {
            if (a.shape[i] > 1 && strides[i].cast<index_t>() != expect)
                throw py::value_error(arg + ": expected a C-contiguous array "
                                      "(use cupy.ascontiguousarray)");
            expect *= a.shape[i];
        }
    }
    py::tuple data(iface["data"]);
    const auto addr = data[0].cast<std::uintptr_t>();
    if (writable && data[1].cast<bool>()) throw py::value_error(arg + ": array is read-only");
    if (a.size > 0 && addr == 0) throw py::value_error(arg + ": null device pointer");
    if (addr % item != 0)
        throw py::value_error(arg + ": array data is not aligned to " + std::to_string(item) +
                              " bytes");
    a.ptr = reinterpret_cast<void*>(addr);
    return a;
}

inline const float* in_f32(const DeviceArray& a) { return static_cast<const float*>(a.ptr); }
inline float* out_f32(const DeviceArray& a) { return static_cast<float*>(a.ptr); }

// Whether two arrays' bytes overlap: a kernel reading one while it writes the other element
// by element would race (exact aliasing included).
inline bool overlap(const DeviceArray& a, const DeviceArray& b) {
    if (a.size == 0 || b.size == 0) return false;
    const auto a0 = reinterpret_cast<std::uintptr_t>(a.ptr);
    const auto b0 = reinterpret_cast<std::uintptr_t>(b.ptr);
    return a0 < b0 + 4 * static_cast<std::uintptr_t>(b.size) &&
           b0 < a0 + 4 * static_cast<std::uintptr_t>(a.size);
}

inline void same_shape(const DeviceArray& a, const char* an, const DeviceArray& b,
                       const char* bn) {
    if (a.shape != b.shape)
        throw py::value_error(std::string(bn) + ": expected shape " + a.shape_str() + " (as " +
                              an + "), got " + b.shape_str());
}

}  // namespace pynn::bind
