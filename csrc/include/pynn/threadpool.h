// The CPU backend's own persistent thread pool (no OpenMP: libgomp hangs after fork and two
// OpenMP runtimes in one process can crash). Sized from sched_getaffinity; PYNN_NUM_THREADS
// and set_num_threads override; a forked child starts with a fresh pool.
#pragma once
#include <functional>
#include "pynn/common.h"

namespace pynn {

int num_threads();
void set_num_threads(int n);  // n >= 1; always obeyed

// Runs fn(task) for task in [0, n_tasks) on up to num_threads() threads (the caller is one
// of them) and returns when all are done. n_tasks <= 1 runs inline with no synchronisation.
void parallel_for(index_t n_tasks, const std::function<void(index_t)>& fn);

}  // namespace pynn
