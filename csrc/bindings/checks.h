// Argument checks shared by every binding: each array is checked for dtype, ndim, shape,
// contiguity, alignment and writability before a pointer is taken, and a failure raises
// ValueError/TypeError naming the argument, what was expected and what came.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "pynn/common.h"

namespace pynn::bind {
namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        s += std::to_string(a.shape(i));
        if (a.ndim() == 1 || i + 1 < a.ndim()) s += ",";
        if (i + 1 < a.ndim()) s += " ";
    }
    return s + ")";
}

template <typename T>
inline const char* dtype_name();
template <>
inline const char* dtype_name<float>() { return "float32"; }
template <>
inline const char* dtype_name<double>() { return "float64"; }
template <>
inline const char* dtype_name<std::int32_t>() { return "int32"; }

// Whether a's dtype is T's as numpy judges equivalence: an unpickled array's dtype is an
// equal object but not numpy's canonical one (an identity test refused it: "expected dtype
// float32, got float32"); byte order still counts.
template <typename T>
inline bool has_dtype(const py::array& a) {
    return py::isinstance<py::array_t<T>>(a);
}

// Checks dtype T, C-contiguity and element alignment; ndim when ndim >= 0.
template <typename T>
inline void check_array(const py::array& a, const char* name, int ndim = -1) {
    if (!has_dtype<T>(a))
        throw py::type_error(std::string(name) + ": expected dtype " + dtype_name<T>() +
                             ", got " + std::string(py::str(a.dtype())));
    if (ndim >= 0 && a.ndim() != ndim)
        throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) +
                              "-d array, got shape " + shape_str(a));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) +
                              ": expected a C-contiguous array (use numpy.ascontiguousarray)");
    if (reinterpret_cast<std::uintptr_t>(a.data()) % alignof(T) != 0)
        throw py::value_error(std::string(name) + ": array data is not aligned to " +
                              std::to_string(alignof(T)) + " bytes");
}

template <typename T>
inline const T* in_ptr(const py::array& a, const char* name, int ndim = -1) {
    check_array<T>(a, name, ndim);
    return static_cast<const T*>(a.data());
}

template <typename T>
inline T* out_ptr(py::array& a, const char* name, int ndim = -1) {
    check_array<T>(a, name, ndim);
    if (!a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
    return static_cast<T*>(a.mutable_data());
}

inline void check_same_shape(const py::array& a, const char* a_name, const py::array& b,
                             const char* b_name) {
    bool same = a.ndim() == b.ndim();
    for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
    if (!same)
        throw py::value_error(std::string(b_name) + ": expected shape " + shape_str(a) +
                              " (the shape of " + a_name + "), got " + shape_str(b));
}

inline void check_dim(const py::array& a, const char* name, int axis, index_t expected,
                      const char* what) {
    if (a.shape(axis) != expected)
        throw py::value_error(std::string(name) + ": expected " + what + " = " +
                              std::to_string(expected) + ", got shape " + shape_str(a));
}

inline Activation to_activation(int code) {
    if (code < 0 || code >= kActivationCount)
        throw py::value_error("activation code out of range [0, " +
                              std::to_string(kActivationCount - 1) + "]: " + std::to_string(code));
    return static_cast<Activation>(code);
}

}  // namespace pynn::bind
