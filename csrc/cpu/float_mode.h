// The calling thread's floating-point control register (MXCSR on x86-64, FPCR on aarch64),
// read and written as one number, so the engine can flush denormals and the thread pool can
// run tasks in the caller's mode on either CPU. Elsewhere reads 0 and writes nothing.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace pynn {

#if defined(__x86_64__) || defined(__i386__)
constexpr std::uint64_t kFlushDenormalBits = 0x8040u;  // MXCSR FTZ | DAZ
inline std::uint64_t float_mode() { return _mm_getcsr(); }
inline void set_float_mode(std::uint64_t m) { _mm_setcsr(static_cast<unsigned>(m)); }
#elif defined(__aarch64__)
constexpr std::uint64_t kFlushDenormalBits = 1u << 24;  // FPCR.FZ (inputs and outputs)
inline std::uint64_t float_mode() {
    std::uint64_t m;
    asm volatile("mrs %0, fpcr" : "=r"(m));
    return m;
}
inline void set_float_mode(std::uint64_t m) { asm volatile("msr fpcr, %0" : : "r"(m)); }
#else
constexpr std::uint64_t kFlushDenormalBits = 0;
inline std::uint64_t float_mode() { return 0; }
inline void set_float_mode(std::uint64_t) {}
#endif

// Flush-to-zero (and denormals-are-zero on x86) for the calling thread while in scope,
// restored after, also on exceptions.
struct FlushDenormals {
    std::uint64_t saved;
    FlushDenormals() : saved(float_mode()) { set_float_mode(saved | kFlushDenormalBits); }
    ~FlushDenormals() { set_float_mode(saved); }
    FlushDenormals(const FlushDenormals&) = delete;
    FlushDenormals& operator=(const FlushDenormals&) = delete;
};

}  // namespace pynn
