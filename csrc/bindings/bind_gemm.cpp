// pynn._C bindings of the CPU GEMM (csrc/cpu/gemm) and of the thread pool settings:
//   gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, bias=None,
//        act=0, act_param=0.0) -> out          out = act(alpha op(a) op(b) + beta out + bias)
//   gemm_ref(...)  same, the naive reference;  gemm_isa(), set_gemm_isa(name),
//   cpu_supports_isa(name), num_threads(), set_num_threads(n), fma_peak_gflops(isa, seconds)
// a, b, out: 2-D float32 with unit stride along the last axis; the row stride may be larger
// (it becomes the leading dimension), so row slices of bigger arrays pass without a copy.
// Lean on purpose (small GEMMs are the common case): own METH_FASTCALL argument parsing,
// py::array (never array_t conversions, which may copy), a handful of checks, the GIL
// released around the kernel.
// Not checked: out overlapping a or b (the result is then undefined, as in BLAS).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "bindings/checks.h"
#include "bindings/release_gil.h"
#include "pynn/gemm.h"
#include "pynn/threadpool.h"

namespace py = pybind11;

namespace pynn::bind {
namespace {

struct Matrix {
    index_t rows, cols, ld;
    const void* data;
};

// A 2-D float32 array whose last axis has unit stride; ld = row stride in elements.
Matrix check_matrix(const py::array& a, const char* name) {
    if (!has_dtype<float>(a))
        throw py::type_error(std::string(name) + ": expected dtype float32, got " +
                             std::string(py::str(a.dtype())));
    if (a.ndim() != 2)
        throw py::value_error(std::string(name) + ": expected a 2-d array, got shape " +
                              shape_str(a));
    const index_t rows = a.shape(0), cols = a.shape(1);
    index_t ld = cols > 0 ? cols : 1;
    if (rows > 0 && cols > 0) {
        const py::ssize_t s0 = a.strides(0), s1 = a.strides(1);
        if (cols > 1 && s1 != static_cast<py::ssize_t>(sizeof(float)))
            throw py::value_error(std::string(name) +
                                  ": expected unit stride along the last axis (got a stride of " +
                                  std::to_string(s1) +
                                  " bytes); pass numpy.ascontiguousarray(...) or use the "
                                  "trans_a/trans_b flags instead of a transposed view");
        if (rows > 1) {
            if (s0 % static_cast<py::ssize_t>(sizeof(float)) != 0 ||
                s0 / static_cast<py::ssize_t>(sizeof(float)) < cols)
                throw py::value_error(std::string(name) + ": row stride of " + std::to_string(s0) +
                                      " bytes is negative, overlapping or not a multiple of 4;"
                                      " pass numpy.ascontiguousarray(...)");
            ld = s0 / static_cast<py::ssize_t>(sizeof(float));
        }
        if (reinterpret_cast<std::uintptr_t>(a.data()) % alignof(float) != 0)
            throw py::value_error(std::string(name) + ": array data is not aligned to 4 bytes");
    }
    return {rows, cols, ld, a.data()};
}

using GemmFn = void (*)(bool, bool, index_t, index_t, index_t, float, const float*, index_t,
                        const float*, index_t, float, float*, index_t, const Epilogue&);

template <GemmFn F>
py::array gemm_binding(const py::array& a, const py::array& b, bool trans_a, bool trans_b,
                       float alpha, float beta, const py::object& out, const py::object& bias,
                       int act, float act_param) {
    const Matrix A = check_matrix(a, "a");
    const Matrix B = check_matrix(b, "b");
    const index_t M = trans_a ? A.cols : A.rows, K = trans_a ? A.rows : A.cols;
    const index_t Kb = trans_b ? B.cols : B.rows, N = trans_b ? B.rows : B.cols;
    if (K != Kb)
        throw py::value_error("gemm: inner dimensions differ: op(a) is " + std::to_string(M) +
                              " x " + std::to_string(K) + " (a.shape=" + shape_str(a) +
                              ", trans_a=" + (trans_a ? "True" : "False") + ") but op(b) is " +
                              std::to_string(Kb) + " x " + std::to_string(N) + " (b.shape=" +
                              shape_str(b) + ", trans_b=" + (trans_b ? "True" : "False") + ")");
    Epilogue ep;
    ep.act = to_activation(act);
    ep.act_param = act_param;
    if (!bias.is_none()) {
        if (!py::isinstance<py::array>(bias))
            throw py::type_error("bias: expected a numpy float32 array or None");
        const py::array bias_arr = py::reinterpret_borrow<py::array>(bias);
        ep.bias = in_ptr<float>(bias_arr, "bias", 1);
        check_dim(bias_arr, "bias", 0, N, "length N");
    }
    py::array result;
    float* C;
    index_t ldc;
    if (out.is_none()) {
        if (beta != 0.f)
            throw py::value_error("gemm: beta != 0 needs out= (the C that beta scales)");
        result = py::array(py::dtype::of<float>(), {M, N});
        C = static_cast<float*>(result.mutable_data());
        ldc = N > 0 ? N : 1;
    } else {
        if (!py::isinstance<py::array>(out))
            throw py::type_error("out: expected a numpy float32 array or None");
        result = py::reinterpret_borrow<py::array>(out);
        const Matrix Cm = check_matrix(result, "out");
        if (Cm.rows != M || Cm.cols != N)
            throw py::value_error("out: expected shape (" + std::to_string(M) + ", " +
                                  std::to_string(N) + "), got " + shape_str(result));
        if (!result.writeable()) throw py::value_error("out: array is read-only");
        C = static_cast<float*>(result.mutable_data());
        ldc = Cm.ld;
    }
    {
        ReleaseGil nogil;
        F(trans_a, trans_b, M, N, K, alpha, static_cast<const float*>(A.data), A.ld,
          static_cast<const float*>(B.data), B.ld, beta, C, ldc, ep);
    }
    return result;
}

// The variable `var`, set and not what is in effect (the kernels could not take it): a
// RuntimeWarning "<var>=<value><why>", so a typo never passes for a setting.
void warn_if_not_in_effect(const char* var, const char* in_effect, const std::string& why) {
    const char* env = std::getenv(var);
    if (!env || !*env || std::strcmp(env, in_effect) == 0) return;
    const std::string msg = std::string(var) + "=" + env + why;
    if (PyErr_WarnEx(PyExc_RuntimeWarning, msg.c_str(), 1) != 0) throw py::error_already_set();
}

std::string supported_isas() {
    std::string s;
    for (const char* n : {"avx512", "avx2", "generic"})
        if (cpu_supports_isa(n)) s += (s.empty() ? "" : ", ") + std::string(n);
    return s;
}

// ---- argument parsing: METH_FASTCALL instead of pybind11's, whose keyword path (a dict
// lookup by a fresh string per parameter) cost ~1 us per call: as much as a 32x64x64 GEMM.
using FastCallFn = PyObject* (*)(PyObject*, PyObject* const*, Py_ssize_t, PyObject*);
constexpr int kNumArgs = 10;
const char* const kArgNames[kNumArgs] = {"a",   "b",    "trans_a", "trans_b", "alpha",
                                         "beta", "out", "bias",    "act",     "act_param"};

PyObject* interned_name(int i) {
    static PyObject* names[kNumArgs] = {};
    if (!names[i]) names[i] = PyUnicode_InternFromString(kArgNames[i]);  // kept for good
    return names[i];
}

bool as_bool(PyObject* o, const char* name) {
    const int r = PyObject_IsTrue(o);
    if (r < 0) throw py::error_already_set();
    (void)name;
    return r != 0;
}

float as_float(PyObject* o, const char* name) {
    const double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::type_error(std::string(name) + ": expected a number");
    }
    return static_cast<float>(v);
}

int as_int(PyObject* o, const char* name) {
    const long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::type_error(std::string(name) + ": expected an int");
    }
    if (v < INT32_MIN || v > INT32_MAX) throw py::value_error(std::string(name) + ": out of range");
    return static_cast<int>(v);
}

py::array as_array(PyObject* o, const char* name) {
    py::handle h(o);
    if (!py::isinstance<py::array>(h))
        throw py::type_error(std::string(name) + ": expected a numpy float32 array, got " +
                             std::string(py::str(py::type::handle_of(h).attr("__name__"))));
    return py::reinterpret_borrow<py::array>(h);
}

template <GemmFn F>
PyObject* gemm_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    try {
        PyObject* v[kNumArgs] = {};
        if (nargs > kNumArgs) throw py::type_error("gemm: takes at most 10 arguments");
        for (Py_ssize_t i = 0; i < nargs; ++i) v[i] = args[i];
        if (kwnames) {
            const Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
            for (Py_ssize_t j = 0; j < nk; ++j) {
                PyObject* key = PyTuple_GET_ITEM(kwnames, j);
                int idx = -1;
                for (int i = 0; i < kNumArgs && idx < 0; ++i)
                    if (key == interned_name(i)) idx = i;  // the usual case: interned names
                for (int i = 0; i < kNumArgs && idx < 0; ++i)
                    if (PyUnicode_CompareWithASCIIString(key, kArgNames[i]) == 0) idx = i;
                if (idx < 0)
                    throw py::type_error("gemm: unexpected keyword argument '" +
                                         std::string(py::str(key)) + "'");
                if (v[idx])
                    throw py::type_error(std::string("gemm: got multiple values for argument '") +
                                         kArgNames[idx] + "'");
                v[idx] = args[nargs + j];
            }
        }
        if (!v[0] || !v[1]) throw py::type_error("gemm: missing required argument 'a' or 'b'");
        const py::array a = as_array(v[0], "a"), b = as_array(v[1], "b");
        const bool ta = v[2] ? as_bool(v[2], "trans_a") : false;
        const bool tb = v[3] ? as_bool(v[3], "trans_b") : false;
        const float alpha = v[4] ? as_float(v[4], "alpha") : 1.f;
        const float beta = v[5] ? as_float(v[5], "beta") : 0.f;
        const py::object out = v[6] ? py::reinterpret_borrow<py::object>(v[6]) : py::none();
        const py::object bias = v[7] ? py::reinterpret_borrow<py::object>(v[7]) : py::none();
        const int act = v[8] ? as_int(v[8], "act") : 0;
        const float act_param = v[9] ? as_float(v[9], "act_param") : 0.f;
        return gemm_binding<F>(a, b, ta, tb, alpha, beta, out, bias, act, act_param).release().ptr();
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (py::builtin_exception& e) {
        e.set_error();
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

void add_fastcall(py::module_& m, const char* name, FastCallFn fn, const char* doc) {
    // The method table must outlive the module: one static entry per name.
    auto* def = new PyMethodDef{name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn)),
                                METH_FASTCALL | METH_KEYWORDS, doc};
    py::object f = py::reinterpret_steal<py::object>(PyCFunction_NewEx(def, nullptr, m.attr("__name__").ptr()));
    if (!f) throw py::error_already_set();
    m.add_object(name, f);
}

}  // namespace
}  // namespace pynn::bind

// Called by cpu_module.cpp on pynn._C.
void register_gemm(py::module_& m) {
    using namespace pynn;
    using namespace pynn::bind;
    add_fastcall(m, "gemm", &gemm_fastcall<&gemm>,
                 "gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, "
                 "bias=None, act=0, act_param=0.0) -> out\n"
                 "out = act(alpha * op(a) @ op(b) + beta * out + bias); op transposes when trans_*.\n"
                 "a, b, out: 2-d float32 with unit stride along the last axis; bias: float32 "
                 "(N,); act: activation code; beta != 0 needs out. Returns out (allocated when "
                 "None).");
    add_fastcall(m, "gemm_ref", &gemm_fastcall<&gemm_ref>,
                 "gemm_ref(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, "
                 "bias=None, act=0, act_param=0.0) -> out\n"
                 "The naive reference of gemm: a triple loop with a double accumulator.");

    m.def("gemm_isa", [] { return std::string(gemm_isa()); },
          "Instruction set the CPU GEMM uses: 'avx512', 'avx2' or 'generic'.");
    m.def(
        "set_gemm_isa",
        [](const std::string& name) {
            if (!set_gemm_isa(name.c_str()))
                throw py::value_error("set_gemm_isa: '" + name +
                                      "' is unknown or not supported by this CPU; supported: " +
                                      supported_isas());
        },
        py::arg("name"), "Switch the CPU GEMM to 'avx512', 'avx2' or 'generic'.");
    m.def("cpu_supports_isa", [](const std::string& name) { return cpu_supports_isa(name.c_str()); },
          py::arg("name"), "Whether this CPU (and OS) can run the named ISA's kernels.");
    m.def("matmul_precision", [] { return std::string(matmul_precision()); },
          "The CPU GEMM's precision: 'highest' (float32) or 'high' (bf16x3 on AMX).");
    m.def(
        "set_matmul_precision",
        [](const std::string& name) {
            if (!set_matmul_precision(name.c_str()))
                throw py::value_error("set_matmul_precision: expected 'highest' or 'high', got '" +
                                      name + "'");
        },
        py::arg("name"), "Set the CPU GEMM's precision: 'highest' or 'high'.");
    m.def("amx_available", [] { return amx_available(); },
          "Whether AMX (bf16 tiles) runs here: what the 'high' precision uses.");
    m.def("num_threads", [] { return num_threads(); }, "Threads the CPU kernels use.");
    m.def("running_threads", [] { return running_threads(); },
          "Threads the CPU kernels run with: num_threads(), or fewer where the system refused "
          "to start some.");
    m.def(
        "set_num_threads",
        [](long long n) {
            if (n < 1 || n > kMaxThreads)
                throw py::value_error("set_num_threads: expected 1 <= n <= " +
                                      std::to_string(kMaxThreads) + ", got " + std::to_string(n));
            set_num_threads(static_cast<int>(n));
        },
        py::arg("n"), "Set the number of threads the CPU kernels use (1 <= n <= 1024).");
    m.def(
        "fma_peak_gflops",
        [](const std::string& isa, double seconds) {
            if (!cpu_supports_isa(isa.c_str()))
                throw py::value_error("fma_peak_gflops: '" + isa +
                                      "' is unknown or not supported by this CPU; supported: " +
                                      supported_isas());
            if (!(seconds > 0.0 && seconds <= 60.0))
                throw py::value_error("fma_peak_gflops: seconds must be in (0, 60], got " +
                                      std::to_string(seconds));
            ReleaseGil nogil;
            return fma_peak_gflops(isa.c_str(), seconds);
        },
        py::arg("isa"), py::arg("seconds") = 0.2,
        "Measured single-thread peak (GFLOP/s) of the named ISA's FMA loop.");

    warn_if_not_in_effect("PYNN_MATMUL_PRECISION", matmul_precision(),
                          " ignored: expected 'highest' or 'high'");
    // PYNN_ISA asked for something this CPU cannot run: dispatch fell back; say so.
    warn_if_not_in_effect("PYNN_ISA", gemm_isa(),
                          std::string(" is unknown or not supported by this CPU; using ") +
                              gemm_isa() + " (supported: " + supported_isas() + ")");
}
