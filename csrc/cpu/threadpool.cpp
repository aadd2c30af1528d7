// The CPU backend's persistent thread pool (see threadpool.h): num_threads() - 1 workers plus
// the calling thread. A job is published by bumping a generation counter; workers spin on it
// briefly (back-to-back GEMMs of a training step then pay no wake-up) and then sleep on a
// condition variable. Tasks are handed out with an atomic counter (tagged with the job's
// generation); the caller waits for its tasks, never for a worker that is still waking. An exception in a task is
// caught on the worker and rethrown on the caller.
// One job at a time: a second concurrent caller (another Python thread, or a task calling
// parallel_for) runs its tasks inline instead of waiting.
// fork(): the child has none of the parent's threads; an atfork handler drops (leaks, never
// joins or destroys) the inherited pool so the child lazily builds a fresh one.
// A worker the system refuses to start (a container's task limit, no address space for its
// stack) is not an error: the pool keeps half of the workers it started (at that limit
// nothing is left for the work's own buffers) and says so on stderr, once per thread count
// asked for.
// Floating-point mode: tasks run with the caller's flush-to-zero / denormals-are-zero bits
// (x86 MXCSR, aarch64 FPCR: cpu/float_mode.h), so a result never depends on which thread
// took which task (the native engine flushes denormals, the layer path's kernels do not).
#include "pynn/threadpool.h"

#include "cpu/float_mode.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PYNN_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define PYNN_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define PYNN_CPU_RELAX() std::this_thread::yield()
#endif

namespace pynn {
namespace {

using Clock = std::chrono::steady_clock;
// How long an idle worker (and a caller waiting for workers) spins before sleeping.
constexpr auto kSpin = std::chrono::microseconds(200);
constexpr index_t kMaxTasks = 0xffff;  // tasks per job: a 16-bit field of the claim word

class Pool {
public:
    explicit Pool(int n_workers) { start(n_workers); }

    int workers() const { return static_cast<int>(threads_.size()); }
    int asked() const { return asked_.load(); }  // workers asked for (workers() may be fewer)
    int started() const { return started_.load(); }  // workers() readable without use_

    // Stops and joins the workers, then starts n_workers new ones. Caller holds use_.
    void resize(int n_workers) {
        join_all();
        start(n_workers);
    }

    // Caller holds use_. Returns when all n_tasks have run. It waits for finished tasks, not
    // for workers: a worker still waking up (on this VM a sleeping thread takes ~150 us to
    // wake) finds no task left and never touches fn, so a cold pool costs the caller nothing
    // but the futex wake-up.
    void run(index_t n_tasks, const std::function<void(index_t)>& fn) {
        fn_ = &fn;
        mode_ = float_mode();  // published with the job (release store below)
        done_tasks_.store(0, std::memory_order_relaxed);
        error_ = nullptr;
        error_flag_.store(false, std::memory_order_relaxed);
        const std::uint64_t gen = (state_.load(std::memory_order_relaxed) >> 32) + 1;
        {
            std::lock_guard<std::mutex> lk(mu_);
            // Publish: job gen, n_tasks, next task 0.
            state_.store((gen << 32) | (static_cast<std::uint64_t>(n_tasks) << 16),
                         std::memory_order_release);
        }
        if (sleepers_.load(std::memory_order_acquire) > 0) wake_.notify_all();
        work(gen);
        const auto t0 = Clock::now();
        unsigned spins = 0;
        while (done_tasks_.load(std::memory_order_acquire) != n_tasks) {
            PYNN_CPU_RELAX();
            if ((++spins & 255) == 0 && Clock::now() - t0 > kSpin) {
                std::unique_lock<std::mutex> lk(mu_);
                done_.wait(lk, [&] { return done_tasks_.load(std::memory_order_acquire) == n_tasks; });
                break;
            }
        }
        fn_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

    std::mutex use_;  // held by the one caller running a job (or resizing)

private:
    void start(int n_workers) {
        // However start ends: the workers started, then the count asked (running_threads()
        // reads them the other way round, so it never pairs a new count with old workers)
        struct Count {
            Pool* pool;
            int asked;
            ~Count() {
                pool->started_.store(pool->workers());
                pool->asked_.store(asked);
            }
        } count{this, n_workers};
        for (int want = n_workers;;) {
            threads_.reserve(want);
            std::string refused;  // a copy: the exception is gone after the catch
            try {
                while (static_cast<int>(threads_.size()) < want)
                    threads_.emplace_back([this] { worker_loop(); });
            } catch (const std::exception& e) {  // std::system_error: EAGAIN, ENOMEM
                refused = e.what();
                if (refused.empty()) refused = "refused";
            }
            if (refused.empty()) return;
            // At the system's limit (tasks, address space for stacks) nothing is left for the
            // work itself (a packing buffer's allocation failed next): keep half as many.
            const int started = static_cast<int>(threads_.size());
            join_all();
            want = started / 2;
            std::fprintf(stderr, "pynn: the system refused worker thread %d of %d (%s); "
                         "running with %d threads\n", started + 1, n_workers, refused.c_str(),
                         want + 1);
            if (want == 0) return;
            n_workers = want;  // a second refusal halves again, and says so
        }
    }

    void join_all() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_.store(true);
        }
        wake_.notify_all();
        for (auto& t : threads_) t.join();
        threads_.clear();
        stop_.store(false);
    }

    // Claims and runs tasks of job `gen` until none is left. A claim is a CAS on the one word
    // (generation << 32 | n_tasks << 16 | next task): the generation, the task count and the
    // counter are read together, so a late worker holding an old generation can never claim
    // a task of a newer job, nor one of a finished job while the next is being set up.
    void work(std::uint64_t gen) {
        for (;;) {
            std::uint64_t cur = state_.load(std::memory_order_acquire);
            index_t t, n;
            for (;;) {
                if ((cur >> 32) != gen) return;
                t = static_cast<index_t>(cur & 0xffffu);
                n = static_cast<index_t>((cur >> 16) & 0xffffu);
                if (t >= n) return;
                if (state_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel,
                                                 std::memory_order_acquire))
                    break;
            }
            if (!error_flag_.load(std::memory_order_relaxed)) {
                try {
                    struct CallerMode {  // the caller's MXCSR / FPCR while the task runs
                        std::uint64_t own;
                        bool changed;
                        explicit CallerMode(std::uint64_t want) : own(float_mode()), changed(own != want) {
                            if (changed) set_float_mode(want);
                        }
                        ~CallerMode() {
                            if (changed) set_float_mode(own);
                        }
                    } mode(mode_);
                    (*fn_)(t);
                } catch (...) {
                    std::lock_guard<std::mutex> lk(error_mu_);
                    if (!error_) error_ = std::current_exception();
                    error_flag_.store(true, std::memory_order_relaxed);
                }
            }
            if (done_tasks_.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
                std::lock_guard<std::mutex> lk(mu_);
                done_.notify_all();
            }
        }
    }

    void worker_loop() {
        std::uint64_t seen = state_.load(std::memory_order_acquire) >> 32;
        for (;;) {
            // Spin briefly for the next job (back-to-back GEMMs), then sleep.
            const auto t0 = Clock::now();
            unsigned spins = 0;
            std::uint64_t gen = seen;
            while ((gen = state_.load(std::memory_order_acquire) >> 32) == seen) {
                if (stop_.load(std::memory_order_relaxed)) return;
                PYNN_CPU_RELAX();
                if ((++spins & 255) == 0 && Clock::now() - t0 > kSpin) break;
            }
            if (gen == seen) {
                std::unique_lock<std::mutex> lk(mu_);
                sleepers_.fetch_add(1, std::memory_order_acq_rel);
                wake_.wait(lk, [&] {
                    return stop_.load() || (state_.load(std::memory_order_acquire) >> 32) != seen;
                });
                sleepers_.fetch_sub(1, std::memory_order_acq_rel);
                if (stop_.load()) return;
                gen = state_.load(std::memory_order_acquire) >> 32;
            }
            seen = gen;
            work(gen);
        }
    }

    std::vector<std::thread> threads_;
    std::atomic<int> asked_{0}, started_{0};
    std::mutex mu_;  // pairs with wake_/done_; the job is published under it
    std::condition_variable wake_, done_;
    std::atomic<bool> stop_{false};
    std::atomic<int> sleepers_{0};
    std::atomic<std::uint64_t> state_{0};  // generation << 32 | n_tasks << 16 | next task
    std::atomic<index_t> done_tasks_{0};
    const std::function<void(index_t)>* fn_ = nullptr;
    std::uint64_t mode_ = 0;  // the caller's float mode (cpu/float_mode.h) for this job's tasks
    std::mutex error_mu_;
    std::exception_ptr error_;
    std::atomic<bool> error_flag_{false};
};

// A thread count 1..kMaxThreads at the start of text, ended by its end or by `stop` ('\0' for
// none); 0 for anything else.
int parse_thread_count(const char* text, char stop) {
    char* end = nullptr;
    const long n = std::strtol(text, &end, 10);
    const bool whole = end != text && (*end == '\0' || *end == stop);
    return whole && n >= 1 && n <= kMaxThreads ? static_cast<int>(n) : 0;
}

int default_threads() {
    if (const char* env = std::getenv("PYNN_NUM_THREADS")) {
        if (const int n = parse_thread_count(env, '\0')) return n;
        // Said once (the pool sizes itself once), as PYNN_GEMM_BLOCKING does: a typo must not
        // pass for a setting.
        std::fprintf(stderr, "pynn: PYNN_NUM_THREADS=%s ignored: expected an integer from 1 "
                     "to %d; using the default (OMP_NUM_THREADS, else one thread per "
                     "available CPU)\n", env, kMaxThreads);
    }
    // OMP_NUM_THREADS next: what joblib/loky workers, MKL and PyTorch are limited by, so a
    // process pool does not run N pools of all CPUs. Another library's variable: a value it
    // does not take ("4,2" is OpenMP's nesting list: the first level counts) is just skipped.
    if (const char* env = std::getenv("OMP_NUM_THREADS")) {
        if (const int n = parse_thread_count(env, ',')) return n;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n >= 1) return n;
    }
    const unsigned hc = std::thread::hardware_concurrency();
    return hc >= 1 ? static_cast<int>(hc) : 1;
}

// Global state, guarded by g_mu. The pool is heap-allocated and never destroyed: at exit its
// sleeping workers simply vanish with the process (destroying joinable std::threads would
// call std::terminate), and after fork the child's copy is abandoned.
std::mutex g_mu;
Pool* g_pool = nullptr;
std::atomic<int> g_threads{0};  // 0: not yet decided
bool g_atfork_installed = false;

void atfork_prepare() { g_mu.lock(); }
void atfork_parent() { g_mu.unlock(); }
void atfork_child() {
    g_pool = nullptr;  // the parent's workers do not exist here; leak the object
    g_mu.unlock();
}

int threads_locked() {
    int n = g_threads.load(std::memory_order_relaxed);
    if (n == 0) {
        n = default_threads();
        g_threads.store(n, std::memory_order_relaxed);
    }
    return n;
}

void install_atfork_locked() {
    if (!g_atfork_installed) {
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
        g_atfork_installed = true;
    }
}

// The pool with num_threads() - 1 workers, created on first use. Resizing to a new thread
// count happens here, under the pool's use_ lock, which the caller then keeps.
Pool* acquire_pool(std::unique_lock<std::mutex>& use_lock) {
    Pool* p;
    int want;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        want = threads_locked() - 1;
        install_atfork_locked();
        if (!g_pool) g_pool = new Pool(want);
        p = g_pool;
    }
    use_lock = std::unique_lock<std::mutex>(p->use_, std::try_to_lock);
    if (!use_lock.owns_lock()) return nullptr;  // busy: the caller runs inline
    if (p->asked() != want) p->resize(want);
    return p;
}

}  // namespace

int num_threads() {
    int n = g_threads.load();
    if (n != 0) return n;
    std::lock_guard<std::mutex> lk(g_mu);
    return threads_locked();
}

int running_threads() {
    const int want = num_threads();
    std::lock_guard<std::mutex> lk(g_mu);
    if (g_pool && g_pool->asked() == want - 1) return g_pool->started() + 1;
    return want;  // the pool starts (or resizes) to it at its next use
}

namespace {

// Fewer threads asked for than the pool has workers: shrink it now, unless another call is
// running on it (that one calls this again when its run ends). At one thread the pool is
// never acquired again, so its old workers (asleep, but 64 of them after
// set_num_threads(64)) would otherwise stay.
void shrink_if_fewer(Pool* p) {
    std::unique_lock<std::mutex> use_lock(p->use_, std::try_to_lock);
    if (!use_lock.owns_lock()) return;
    const int want = num_threads() - 1;
    if (want < p->asked()) p->resize(want);
}

}  // namespace

void set_num_threads(int n) {
    n = n < 1 ? 1 : (n > kMaxThreads ? kMaxThreads : n);
    g_threads.store(n);  // the pool follows at its next use
    Pool* p;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        p = g_pool;
    }
    if (p) shrink_if_fewer(p);
}

void parallel_for(index_t n_tasks, const std::function<void(index_t)>& fn) {
    if (n_tasks <= 0) return;
    if (n_tasks == 1 || num_threads() <= 1) {
        for (index_t t = 0; t < n_tasks; ++t) fn(t);
        return;
    }
    std::unique_lock<std::mutex> use_lock;
    Pool* p = acquire_pool(use_lock);
    if (!p || p->workers() == 0) {
        for (index_t t = 0; t < n_tasks; ++t) fn(t);
        return;
    }
    if (n_tasks <= kMaxTasks) {
        p->run(n_tasks, fn);
    } else {
        // More tasks than the claim word holds: run kMaxTasks chunks of consecutive tasks.
        const std::function<void(index_t)> chunked = [&](index_t c) {
            const index_t end = (c + 1) * n_tasks / kMaxTasks;
            for (index_t t = c * n_tasks / kMaxTasks; t < end; ++t) fn(t);
        };
        p->run(kMaxTasks, chunked);
    }
    // A set_num_threads to fewer threads during the run found the pool busy: shrink it now
    // (after letting it go, so a call that failed to take it in between is covered too).
    use_lock.unlock();
    shrink_if_fewer(p);
}

}  // namespace pynn
