// Splitting of the element-wise, loss and optimizer loops over the thread pool. Work is cut
// into fixed chunks whose boundaries depend only on the sizes, never on the thread count, so
// per-chunk partial sums combine in the same order and results are bit-identical whether
// parallel_for runs the chunks on many threads or inline. Small inputs (the common training
// case) run in one chunk on the calling thread: no pool round trip.
#pragma once
#include <algorithm>
#include <vector>

#include "pynn/threadpool.h"

namespace pynn::cpu {

constexpr index_t kChunk = 32768;         // elements per task: 128 KiB per float stream
constexpr index_t kParallelMin = 65536;   // below this the pool costs more than it saves

// fn(begin, end) over [0, n).
template <class F>
void for_chunks(index_t n, F&& fn) {
    if (n <= kParallelMin) {
        if (n > 0) fn(index_t(0), n);
        return;
    }
    index_t tasks = (n + kChunk - 1) / kChunk;
    parallel_for(tasks, [&](index_t k) { fn(k * kChunk, std::min(n, (k + 1) * kChunk)); });
}

// Sum over chunks of fn(begin, end) -> double, added in chunk order.
template <class F>
double sum_chunks(index_t n, F&& fn) {
    if (n <= kParallelMin) return n > 0 ? fn(index_t(0), n) : 0.0;
    index_t tasks = (n + kChunk - 1) / kChunk;
    // Partials on the stack up to 2M elements (the engine's per-step calls allocate nothing).
    double local[64];
    std::vector<double> heap;
    double* part = local;
    if (tasks > 64) {
        heap.resize(static_cast<size_t>(tasks));
        part = heap.data();
    }
    parallel_for(tasks, [&](index_t k) { part[k] = fn(k * kChunk, std::min(n, (k + 1) * kChunk)); });
    double s = 0.0;
    for (index_t k = 0; k < tasks; ++k) s += part[k];
    return s;
}

// Row-wise ops: whole rows per task, about kChunk elements each.
inline index_t rows_per_chunk(index_t cols) { return std::max<index_t>(1, kChunk / std::max<index_t>(cols, 1)); }

template <class F>
void for_row_chunks(index_t rows, index_t cols, F&& fn) {
    if (rows * cols <= kParallelMin || rows <= 1) {
        if (rows > 0) fn(index_t(0), rows);
        return;
    }
    index_t per = rows_per_chunk(cols);
    index_t tasks = (rows + per - 1) / per;
    parallel_for(tasks, [&](index_t k) { fn(k * per, std::min(rows, (k + 1) * per)); });
}

template <class F>
double sum_row_chunks(index_t rows, index_t cols, F&& fn) {
    if (rows * cols <= kParallelMin || rows <= 1) return rows > 0 ? fn(index_t(0), rows) : 0.0;
    index_t per = rows_per_chunk(cols);
    index_t tasks = (rows + per - 1) / per;
    std::vector<double> part(static_cast<size_t>(tasks));
    parallel_for(tasks, [&](index_t k) { part[k] = fn(k * per, std::min(rows, (k + 1) * per)); });
    double s = 0.0;
    for (double p : part) s += p;
    return s;
}

}  // namespace pynn::cpu
