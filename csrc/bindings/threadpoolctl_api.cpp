// Two C symbols through which threadpoolctl (pynn/threads.py registers a controller for it)
// reads and limits the CPU pool, as it does OpenBLAS's and OpenMP's: scikit-learn and joblib
// call threadpool_limits() to keep nested parallelism from oversubscribing the cores.
#include "pynn/threadpool.h"

#if defined(_WIN32)
#define PYNN_C_EXPORT extern "C" __declspec(dllexport)
#else
#define PYNN_C_EXPORT extern "C" __attribute__((visibility("default")))
#endif

PYNN_C_EXPORT int pynn_get_num_threads(void) { return pynn::num_threads(); }

// Clamped to 1..kMaxThreads: a C caller gets no exception to read.
PYNN_C_EXPORT void pynn_set_num_threads(int n) { pynn::set_num_threads(n); }
