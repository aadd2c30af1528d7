// Counter-based dropout masks, written once for the CPU, the CUDA kernels and (vectorised,
// in pynn/backend/numpy_backend.py) the numpy reference, so every backend and the native
// engine draw bit-identical masks: the mask of element i of a layer's (rows x cols) output at
// training step `step` is a pure function of (seed, step, i). No generator state to carry,
// save or split across threads.
//   key  = splitmix64 finaliser of (seed XOR step * golden) + golden      (per layer and step)
//   bits = fmix32(fmix32(i * 0x9E3779B9 + low32(key)) XOR high32(key))   (per element)
//   keep = bits >= threshold, threshold = ceil(rate * 2^32)             (P(keep) = 1 - rate)
// Kept elements are scaled by float(1 / float(1 - rate)) (inverted dropout), dropped ones
// multiplied by 0, exactly as the reference's x * mask.
#pragma once
#include <cmath>
#include <cstdint>

#include "pynn/common.h"

namespace pynn::math {

constexpr std::uint64_t kGolden64 = 0x9E3779B97F4A7C15ull;

PYNN_HD std::uint64_t splitmix64_mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

PYNN_HD std::uint32_t fmix32(std::uint32_t h) {  // MurmurHash3's finaliser
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

PYNN_HD std::uint64_t dropout_key(std::uint64_t seed, std::uint64_t step) {
    return splitmix64_mix((seed ^ (step * kGolden64)) + kGolden64);
}

PYNN_HD std::uint32_t dropout_bits(std::uint64_t key, std::uint32_t i) {
    const std::uint32_t h = fmix32(i * 0x9E3779B9u + static_cast<std::uint32_t>(key));
    return fmix32(h ^ static_cast<std::uint32_t>(key >> 32));
}

// ceil(rate * 2^32) for rate in [0, 1): an element is kept when its bits reach it.
inline std::uint64_t dropout_threshold(double rate) {
    return static_cast<std::uint64_t>(std::ceil(rate * 4294967296.0));
}

// The survivors' scale, rounded as the reference's float32(1) / float32(1 - rate).
inline float dropout_scale(double rate) { return 1.f / static_cast<float>(1.0 - rate); }

}  // namespace pynn::math
