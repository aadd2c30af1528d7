// Runtime ISA choice for the CPU GEMM: which kernel table (generic, avx2, avx512) gemm() uses.
// Chosen once, at first use, from cpuid plus xgetbv (the OS must save the ymm/zmm state, not
// just the CPU have the instructions); PYNN_ISA=generic|avx2|avx512 overrides. A PYNN_ISA the
// CPU cannot run (or an unknown name) falls back to the best supported ISA; the binding layer
// compares gemm_isa() with PYNN_ISA and warns. set_gemm_isa() switches at run time.
// Also the FMA peak measurement, timed here (generic code) around each ISA's loop.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "cpu/gemm/kernel_table.h"
#include "pynn/gemm.h"

#if defined(PYNN_X86)
#include <cpuid.h>
#endif

namespace pynn {
namespace gemm_detail {
namespace {

struct CpuFeatures {
    bool avx2 = false;    // AVX2 + FMA + OS-saved ymm state
    bool avx512 = false;  // AVX-512 F/VL/BW/DQ + OS-saved zmm state (and avx2)
};

#if defined(PYNN_X86)
unsigned long long read_xcr0() {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<unsigned long long>(edx) << 32) | eax;
}

CpuFeatures detect() {
    CpuFeatures f;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
    if (!(osxsave && avx && fma)) return f;
    const unsigned long long xcr0 = read_xcr0();
    const bool ymm_state = (xcr0 & 0x6) == 0x6;     // SSE + AVX state
    const bool zmm_state = (xcr0 & 0xE0) == 0xE0;   // opmask + ZMM_Hi256 + Hi16_ZMM
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    const bool avx2 = b & (1u << 5);
    const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) &&
                        (b & (1u << 31));  // F, DQ, BW, VL
    f.avx2 = avx2 && ymm_state;
    f.avx512 = f.avx2 && avx512 && zmm_state;
#if defined(PYNN_EMULATE_AVX512)
    f.avx512 = f.avx2;  // test build: the avx512 kernel's intrinsics are emulated with avx2
#endif
    return f;
}

const CpuFeatures& features() {
    static const CpuFeatures f = detect();
    return f;
}
#endif

const KernelTable* best_supported() {
#if defined(PYNN_X86)
    if (features().avx512) return &kernels_avx512();
    if (features().avx2) return &kernels_avx2();
#endif
    return &kernels_generic();
}

const KernelTable* initial_choice() {
    const char* env = std::getenv("PYNN_ISA");
    if (env && *env) {
        if (const KernelTable* t = kernels_by_name(env)) return t;
    }
    return best_supported();
}

std::atomic<const KernelTable*>& active_slot() {
    static std::atomic<const KernelTable*> slot{initial_choice()};
    return slot;
}

}  // namespace

const KernelTable* kernels_by_name(const char* name) {
    if (!name) return nullptr;
    if (std::strcmp(name, "generic") == 0) return &kernels_generic();
#if defined(PYNN_X86)
    if (std::strcmp(name, "avx2") == 0) return features().avx2 ? &kernels_avx2() : nullptr;
    if (std::strcmp(name, "avx512") == 0) return features().avx512 ? &kernels_avx512() : nullptr;
#endif
    return nullptr;
}

const KernelTable& active_kernels() { return *active_slot().load(std::memory_order_relaxed); }

namespace {
// "highest" (false): float32 FMAs; "high" (true): AMX's bf16x3 where it runs. PYNN_MATMUL_PRECISION
// sets the start value (anything else than the two names is ignored and said by the binding).
std::atomic<bool>& high_precision_slot() {
    static std::atomic<bool> slot{[] {
        const char* env = std::getenv("PYNN_MATMUL_PRECISION");
        return env && std::strcmp(env, "high") == 0;
    }()};
    return slot;
}
}  // namespace

bool amx_active() {
#if defined(PYNN_X86)
    return high_precision_slot().load(std::memory_order_relaxed) &&
           &active_kernels() == kernels_by_name("avx512") && amx_usable();
#else
    return false;
#endif
}

}  // namespace gemm_detail

const char* gemm_isa() { return gemm_detail::active_kernels().name; }

bool avx2_loops_active() { return std::strcmp(gemm_isa(), "generic") != 0; }

bool set_gemm_isa(const char* name) {
    const gemm_detail::KernelTable* t = gemm_detail::kernels_by_name(name);
    if (!t) return false;
    gemm_detail::active_slot().store(t, std::memory_order_relaxed);
    return true;
}

const char* matmul_precision() {
    return gemm_detail::high_precision_slot().load(std::memory_order_relaxed) ? "high" : "highest";
}

bool set_matmul_precision(const char* name) {
    if (!name || (std::strcmp(name, "high") != 0 && std::strcmp(name, "highest") != 0)) return false;
    gemm_detail::high_precision_slot().store(std::strcmp(name, "high") == 0, std::memory_order_relaxed);
    return true;
}

bool amx_available() {
#if defined(PYNN_X86)
    return gemm_detail::amx_supported();
#else
    return false;
#endif
}

bool cpu_supports_isa(const char* name) { return gemm_detail::kernels_by_name(name) != nullptr; }

double fma_peak_gflops(const char* isa, double seconds) {
    const gemm_detail::KernelTable* t = gemm_detail::kernels_by_name(isa);
    if (!t) return -1.0;
    using clock = std::chrono::steady_clock;
    // Calibrate a chunk of ~1 ms, then keep the best chunk rate over `seconds` (the peak is
    // the least disturbed chunk: this machine is shared).
    volatile float sink = 0.f;
    index_t iters = 1 << 12;
    for (;;) {
        const auto t0 = clock::now();
        sink = sink + t->fma_loop(iters);
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        if (dt > 1e-3 || iters > (index_t(1) << 40)) break;
        iters *= 2;
    }
    double best = 0.0;
    const auto start = clock::now();
    do {
        const auto t0 = clock::now();
        sink = sink + t->fma_loop(iters);
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        const double rate = static_cast<double>(iters) * t->flops_per_iter / dt * 1e-9;
        if (rate > best) best = rate;
    } while (std::chrono::duration<double>(clock::now() - start).count() < seconds);
    return best;
}

}  // namespace pynn
