// The CPU backend's own persistent thread pool (no OpenMP: libgomp hangs after fork and two
// OpenMP runtimes in one process can crash). Sized by PYNN_NUM_THREADS, else OMP_NUM_THREADS,
// else sched_getaffinity; set_num_threads overrides; a forked child starts with a fresh pool.
#pragma once
#include <functional>
#include "pynn/common.h"

namespace pynn {

constexpr int kMaxThreads = 1024;  // PYNN_NUM_THREADS and set_num_threads: 1..kMaxThreads

int num_threads();
void set_num_threads(int n);  // 1 <= n <= kMaxThreads; obeyed as far as the system starts threads
// The threads the pool runs with: num_threads(), or fewer where the system refused to start
// some (known once the pool has started at that count).
int running_threads();

// Runs fn(task) for task in [0, n_tasks) on up to num_threads() threads (the caller is one
// of them) and returns when all are done. n_tasks <= 1 runs inline with no synchronisation.
void parallel_for(index_t n_tasks, const std::function<void(index_t)>& fn);

}  // namespace pynn
