// The GIL released around long C++ work, as py::gil_scoped_release, except for how a daemon
// thread meets interpreter exit. CPython ends a daemon thread that asks for the GIL then with
// pthread_exit, which unwinds the thread's stack; pybind11's destructor is noexcept, so that
// unwind met std::terminate and the whole process aborted at exit ("terminate called without
// an active exception") when a daemon thread was training or predicting. Here a thread that
// finds the interpreter finalizing does not ask: it waits, and ends with the process (the
// unwind would run Python objects' destructors without the GIL); the finalizing thread itself
// never lets the GIL go. Should finalization begin
// between the check and the request, the destructor lets the unwind through (pybind11's
// dispatcher rethrows abi::__forced_unwind) and the thread simply ends.
#pragma once
#include <pybind11/pybind11.h>

#include <chrono>
#include <thread>

namespace pynn::bind {

inline bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing() != 0;
#else
    return _Py_IsFinalizing() != 0;
#endif
}

class ReleaseGil {
public:
    // The thread finalizing the interpreter (running __del__ methods, say) keeps the GIL: it
    // is the only one running Python then, and would wait below for ever.
    ReleaseGil() : state_(interpreter_finalizing() ? nullptr : PyEval_SaveThread()) {}
    ~ReleaseGil() noexcept(false) {
        if (!state_) return;
        while (interpreter_finalizing()) std::this_thread::sleep_for(std::chrono::seconds(1));
        PyEval_RestoreThread(state_);
    }
    ReleaseGil(const ReleaseGil&) = delete;
    ReleaseGil& operator=(const ReleaseGil&) = delete;

private:
    PyThreadState* state_;
};

}  // namespace pynn::bind
