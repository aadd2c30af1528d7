// The "high" matmul precision's kernel (gemm.h, set_matmul_precision): float32 products on
// AMX tiles as three bfloat16 products. Each float x is split into hi = bf16(x) and
// lo = bf16(x - hi) (both rounded to nearest even), so x = hi + lo to ~2^-17 relative, and
//   a * b ~= a_hi*b_hi + a_hi*b_lo + a_lo*b_hi
// (the dropped a_lo*b_lo and the splits' remainders are below 2^-16 |a b|), each product exact
// in the tiles' float32 accumulators: JAX's and PyTorch's "high" precision (bf16_3x). A dot
// product's error is then of the order of float32's own rounding for random data, within
// (2^-16 + 3K 2^-24) sum|a b| (float32's bound: K 2^-24 sum|a b|).
// Tiles: a 32 x 32 block of C is four 16 x 16 float32 tiles; per 32-deep slice of K it takes
// two 16 x 32 A tiles and two 32 x 16 B tiles (B in AMX's pairs-of-k layout) per bf16 plane,
// loaded 10 times for 12 tile products.
// A 32 x 32 block of sums that is not finite (an inf or NaN input, whose cross terms can
// make inf * 0 = NaN; a value whose bf16 high part overflows; products whose cross terms
// overflow, as 1e21 * 1e21) is computed again by the driver with the float32 kernels.
// AMX instructions flush bf16 subnormals: an x below ~1e-38 counts as 0, and so does the low
// part of an x below ~1e-36; they flush subnormal products too: a product below 2^-126 is 0
// and one below ~2^-118 loses its cross terms. The bound above then has an absolute floor of
// 2^-126 per product (tests/test_matmul_precision.py, precision.py).
#include "cpu/gemm/kernel_table.h"

#if defined(PYNN_X86) && defined(PYNN_AMX)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cpuid.h>
#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 headers start some conversions from _mm512_undefined_*(), which its own
// -Wmaybe-uninitialized then reports in every caller (GCC bug 105593): not our variables.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace pynn::gemm_detail {
namespace {

#define PYNN_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16,amx-tile,amx-bf16")))

constexpr int kTile = 512;  // bf16 elements in a 16 x 32 tile (1 KiB)

struct alignas(64) TileConfig {
    std::uint8_t palette, start_row, reserved[14];
    std::uint16_t colsb[16];
    std::uint8_t rows[16];
};

// The CPU has AMX-BF16, AMX-TILE, AVX512-BF16 (and F, BW), and the OS enabled their state in
// XCR0 (read only when it set OSXSAVE). No side effect.
bool detect_amx() {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool avx512 = (b & (1u << 16)) && (b & (1u << 30));  // F, BW
    const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
    if (!(avx512 && amx_bf16 && amx_tile)) return false;
    unsigned a1, b1, c1, d1;
    if (!__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) || !(a1 & (1u << 5))) return false;  // AVX512_BF16
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const unsigned long long xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
    return (xcr0 & 0xE6) == 0xE6 && (xcr0 & (3ull << 17)) == (3ull << 17);
}

// The process's permission to use the tiles. Linux hands out the 8 KiB tile state only on
// request, for the whole process; asked at the first product that would use it (granted, it
// makes signal frames larger: a later sigaltstack() of a small stack fails).
bool request_tiles() {
#if defined(__linux__)
    constexpr long kReqXcompPerm = 0x1023, kXfeatureTileData = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureTileData) == 0;
#else
    return false;  // other systems: not tried
#endif
}

// The mask of the first `valid` of 16 lanes (valid clamped to 0..16).
inline __mmask16 lanes(index_t valid) {
    return static_cast<__mmask16>((1u << std::clamp<index_t>(valid, 0, 16)) - 1);
}

// r[0:16] <- its transpose (16 x 16 floats).
PYNN_AMX_TARGET inline void transpose16(__m512* r) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j) {
            t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0x88);
            t[8 * i + j + 4] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + j + 4], 0xDD);
        }
    for (int j = 0; j < 8; ++j) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
    }
}

// A 32 x 32 block of X(r, c) = x[r*rs + c*cs], zero outside m x n, row-major in t; for the
// transposed operands (rs == 1: each c a contiguous run of r) in 16 x 16 transposes.
PYNN_AMX_TARGET void load_block(const float* x, index_t rs, index_t cs, index_t m, index_t n,
                                float* t) {
    if (rs != 1) {  // (neither stride 1: a 1-wide operand's leading dimension; rare)
        for (index_t r = 0; r < 32; ++r)
            for (index_t c = 0; c < 32; ++c) t[r * 32 + c] = r < m && c < n ? x[r * rs + c * cs] : 0.f;
        return;
    }
    for (index_t rb = 0; rb < 32; rb += 16) {
        const __mmask16 k = lanes(m - rb);
        for (index_t cb = 0; cb < 32; cb += 16) {
            __m512 v[16];
            for (index_t i = 0; i < 16; ++i)
                v[i] = cb + i < n ? _mm512_maskz_loadu_ps(k, x + rb + (cb + i) * cs) : _mm512_setzero_ps();
            transpose16(v);
            for (index_t i = 0; i < 16; ++i) _mm512_store_ps(t + (rb + i) * 32 + cb, v[i]);
        }
    }
}

// x with the lanes past `valid` (0..16) zero, never reading them.
PYNN_AMX_TARGET inline __m512 load_valid(const float* src, index_t valid) {
    return _mm512_maskz_loadu_ps(lanes(valid), src);
}

// bf16 half (0: lanes 0-15, 1: 16-31) of h as floats.
template <int HALF>
PYNN_AMX_TARGET inline __m512 widen(__m512i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, HALF)), 16));
}

// 32 floats (x0: the first 16, x1: the next) -> 32 bf16 high parts and 32 low parts, in order.
PYNN_AMX_TARGET inline void split32(__m512 x0, __m512 x1, __m512i* hi, __m512i* lo) {
    const __m512i h = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(x1, x0));  // x0 low
    *hi = h;
    *lo = reinterpret_cast<__m512i>(
        _mm512_cvtne2ps_pbh(_mm512_sub_ps(x1, widen<1>(h)), _mm512_sub_ps(x0, widen<0>(h))));
}

}  // namespace

bool amx_supported() {
    static const bool ok = detect_amx();
    return ok;
}

bool amx_usable() {
    static const bool ok = amx_supported() && request_tiles();
    return ok;
}

// A panel: rows [0, m) (m <= 32) and k [0, kc) of A(i, k) = a[i*rs + k*cs], padded with zeros
// to 32 x kcp (kcp a multiple of 32). Per 32 k: hi rows 0-15, hi 16-31, lo 0-15, lo 16-31.
PYNN_AMX_TARGET void amx_pack_a(const float* a, index_t rs, index_t cs, index_t m, index_t kc,
                                index_t kcp, std::uint16_t* dst) {
    alignas(64) float t[32 * 32];
    const bool direct = cs == 1;  // rows of A contiguous; else transposed through t
    for (index_t kb = 0; kb < kcp; kb += 32, dst += 4 * kTile) {
        const index_t n = std::clamp<index_t>(kc - kb, 0, 32);
        if (!direct) load_block(a + kb * cs, rs, cs, m, n, t);
        for (int r = 0; r < 32; ++r) {
            const float* src = direct ? a + r * rs + kb : t + r * 32;
            const index_t valid = r >= m ? 0 : (direct ? n : 32);
            const __m512 x0 = load_valid(src, valid), x1 = load_valid(src + 16, valid - 16);
            __m512i hi, lo;
            split32(x0, x1, &hi, &lo);
            std::uint16_t* row = dst + (r / 16) * kTile + (r % 16) * 32;
            _mm512_storeu_si512(row, hi);
            _mm512_storeu_si512(row + 2 * kTile, lo);
        }
    }
}

// B panel: k [0, kc) and columns [0, n) (n <= 32) of B(k, j) = b[k*rs + j*cs], padded with
// zeros to kcp x 32. Per 32 k: hi columns 0-15, hi 16-31, lo 0-15, lo 16-31, each tile's row q
// holding k = 2q and 2q+1 interleaved column by column (AMX's layout for bf16 pairs).
PYNN_AMX_TARGET void amx_pack_b(const float* b, index_t rs, index_t cs, index_t kc, index_t n,
                                index_t kcp, std::uint16_t* dst) {
    alignas(64) float t[32 * 32];
    const bool direct = cs == 1;  // rows of B contiguous; else transposed through t
    // split32 gives [row k's 16 | row k+1's 16]; AMX wants them alternating
    alignas(64) static const std::uint16_t kPairs[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21,
                                                          6, 22, 7, 23, 8, 24, 9, 25, 10, 26, 11, 27,
                                                          12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i pairs = _mm512_load_si512(kPairs);
    for (index_t kb = 0; kb < kcp; kb += 32, dst += 4 * kTile) {
        const index_t rows = std::clamp<index_t>(kc - kb, 0, 32);
        if (!direct) load_block(b + kb * rs, rs, cs, rows, n, t);
        for (int q = 0; q < 16; ++q) {
            const index_t k = 2 * q;
            const float* src0 = direct ? b + (kb + k) * rs : t + k * 32;
            const float* src1 = direct ? b + (kb + k + 1) * rs : t + (k + 1) * 32;
            const index_t valid0 = k < rows ? (direct ? n : 32) : 0;
            const index_t valid1 = k + 1 < rows ? (direct ? n : 32) : 0;
            for (int c = 0; c < 2; ++c) {
                const __m512 x0 = load_valid(src0 + 16 * c, valid0 - 16 * c);
                const __m512 x1 = load_valid(src1 + 16 * c, valid1 - 16 * c);
                __m512i hi, lo;
                split32(x0, x1, &hi, &lo);
                _mm512_storeu_si512(dst + c * kTile + q * 32, _mm512_permutexvar_epi16(pairs, hi));
                _mm512_storeu_si512(dst + (2 + c) * kTile + q * 32, _mm512_permutexvar_epi16(pairs, lo));
            }
        }
    }
}

PYNN_AMX_TARGET void amx_tiles_on() {
    TileConfig cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; ++i) {
        cfg.rows[i] = 16;
        cfg.colsb[i] = 64;
    }
    // Not _tile_loadconfig: GCC 12's declares only a pointer's 8 bytes as read, so at -O2 the
    // stores filling the rest of cfg were dropped (tile instructions then fault with #UD).
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

PYNN_AMX_TARGET void amx_tiles_off() { _tile_release(); }

// C tiles 0-3 (the 2 x 2 block) += A tiles 4, 5 (its rows) x B tiles 6, 7 (its columns).
PYNN_AMX_TARGET inline void products_2x2() {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}

// c[32 x 32] (row stride ldc floats) = (accumulate ? c : 0) + A panel . B panel, kcp deep.
PYNN_AMX_TARGET void amx_block(index_t kcp, const std::uint16_t* a, const std::uint16_t* b,
                               float* c, index_t ldc, bool accumulate) {
    const index_t stride = ldc * static_cast<index_t>(sizeof(float));
    float* c10 = c + 16 * ldc;
    if (accumulate) {
        _tile_loadd(0, c, stride);
        _tile_loadd(1, c + 16, stride);
        _tile_loadd(2, c10, stride);
        _tile_loadd(3, c10 + 16, stride);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (index_t kb = 0; kb < kcp; kb += 32, a += 4 * kTile, b += 4 * kTile) {
        _tile_loadd(4, a, 64);  // A hi
        _tile_loadd(5, a + kTile, 64);
        _tile_loadd(6, b + 2 * kTile, 64);  // B lo
        _tile_loadd(7, b + 3 * kTile, 64);
        products_2x2();
        _tile_loadd(6, b, 64);  // B hi
        _tile_loadd(7, b + kTile, 64);
        products_2x2();
        _tile_loadd(4, a + 2 * kTile, 64);  // A lo
        _tile_loadd(5, a + 3 * kTile, 64);
        products_2x2();
    }
    _tile_stored(0, c, stride);
    _tile_stored(1, c + 16, stride);
    _tile_stored(2, c10, stride);
    _tile_stored(3, c10 + 16, stride);
}

PYNN_AMX_TARGET bool amx_all_finite(const float* acc, index_t lda, index_t m, index_t n) {
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    __mmask16 bad = 0;
    for (index_t i = 0; i < m; ++i, acc += lda) {
        for (index_t j = 0; j < n; j += 16) {
            const __mmask16 k = lanes(n - j);
            const __m512i bits = _mm512_and_si512(_mm512_maskz_loadu_epi32(k, acc + j), abs_mask);
            bad |= _mm512_cmpge_epu32_mask(bits, inf);
        }
    }
    return bad == 0;
}

PYNN_AMX_TARGET void amx_store(const float* acc, index_t lda, float* c, index_t ldc, index_t m,
                               index_t n, float alpha, float beta, const float* bias, bool relu) {
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta), zero = _mm512_setzero_ps();
    for (index_t i = 0; i < m; ++i, acc += lda, c += ldc) {
        for (index_t j = 0; j < n; j += 16) {
            const __mmask16 k = lanes(n - j);
            __m512 v = _mm512_mul_ps(va, _mm512_maskz_loadu_ps(k, acc + j));
            if (beta != 0.f) v = _mm512_add_ps(v, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(k, c + j)));
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + j));
            if (relu) v = _mm512_max_ps(zero, v);  // (0, v): a NaN in v is kept, as gemm's relu
            _mm512_mask_storeu_ps(c + j, k, v);
        }
    }
}

}  // namespace pynn::gemm_detail

#elif defined(PYNN_X86)
// A compiler without AMX intrinsics (CMakeLists.txt's check): AMX is never usable, so the
// driver never calls the rest.
#include <cstdlib>

namespace pynn::gemm_detail {
bool amx_supported() { return false; }
bool amx_usable() { return false; }
void amx_pack_a(const float*, index_t, index_t, index_t, index_t, index_t, std::uint16_t*) { std::abort(); }
void amx_pack_b(const float*, index_t, index_t, index_t, index_t, index_t, std::uint16_t*) { std::abort(); }
bool amx_all_finite(const float*, index_t, index_t, index_t) { std::abort(); }
void amx_tiles_on() { std::abort(); }
void amx_tiles_off() { std::abort(); }
void amx_block(index_t, const std::uint16_t*, const std::uint16_t*, float*, index_t, bool) { std::abort(); }
void amx_store(const float*, index_t, float*, index_t, index_t, index_t, float, float, const float*, bool) {
    std::abort();
}
}  // namespace pynn::gemm_detail
#endif  // PYNN_X86
