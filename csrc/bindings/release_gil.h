// The GIL released around long C++ work, as py::gil_scoped_release, except that taking it back
// may end the thread. At interpreter exit CPython ends a daemon thread that asks for the GIL
// with pthread_exit, which unwinds the thread's stack; pybind11's destructor is noexcept, so
// that unwind met std::terminate and the whole process aborted at exit ("terminate called
// without an active exception") when a daemon thread was training or predicting. pybind11's
// dispatcher rethrows the unwind (abi::__forced_unwind), so the thread simply ends.
#pragma once
#include <pybind11/pybind11.h>

namespace pynn::bind {

class ReleaseGil {
public:
    ReleaseGil() : state_(PyEval_SaveThread()) {}
    ~ReleaseGil() noexcept(false) { PyEval_RestoreThread(state_); }
    ReleaseGil(const ReleaseGil&) = delete;
    ReleaseGil& operator=(const ReleaseGil&) = delete;

private:
    PyThreadState* state_;
};

}  // namespace pynn::bind
