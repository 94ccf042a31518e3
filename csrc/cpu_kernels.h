// SPDX-License-Identifier: Apache-2.0
// Shared machinery of the CPU kernels (rng.cpp, row_losses.cpp, adam.cpp, optimize.cpp):
// instruction-set dispatch (the level itself is detected in cpu_info.cpp), OpenMP work
// splitting, float32 staging tiles for float16/bfloat16 buffers, row tiling and row reductions.
// Internal to the native core.
//
// How an op is put together, outside in:
//   *_cpu()             splits the work into one contiguous range per OpenMP thread (static
//                       schedule; small calls stay on the calling thread) and calls
//   *_range()           the entry point for the CPU's instruction set, chosen once per process
//                       (LC_MULTIVERSION): *_range_avx512 / _avx2 / _baseline are one source
//                       compiled with target("arch=x86-64-v4"), target("arch=x86-64-v3") and the
//                       baseline, each `flatten`ed so everything below is generated for that ISA.
//                       The wheel needs no -march flag and still runs AVX-512 code where it can.
//   *_kernel<kIsa, S>   walks the range in tiles of at most kTile elements. float32 buffers are
//                       used in place; float16/bfloat16 tiles are converted into float32 stack
//                       arrays (F16C on AVX2/AVX-512) and results converted back, so that
//   *_core()            the float32 math, `#pragma omp simd` loops over always_inline,
//                       branch-free code (cpu_math.h), is the same vectorized loop for every
//                       dtype and every row length.
// Dispatch is by hand rather than with target_clones because the Philox and float16 paths need
// ISA-specific intrinsics (cpu_simd.h), which one target_clones body cannot choose between, and
// because tests must be able to force the lower levels on an AVX-512 machine.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu_math.h"
#include "cpu_simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lcengine {
namespace cpu {

// ---------------------------------------------------------------------------------------------
// Instruction-set level, chosen once per process.
// ---------------------------------------------------------------------------------------------

enum class Isa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "baseline";
  }
}

// The level in use: the best the CPU supports, lowered by LCENGINE_CPU_ISA=avx2|baseline (read
// once; used to test every variant on one machine).
Isa active_isa();

// Defines `void NAME PARAMS`, forwarding ARGS to NAME##_body<kIsa> compiled for the active ISA.
#if LC_X86_DISPATCH
#define LC_MULTIVERSION(NAME, PARAMS, ARGS)                                       \
  LC_TARGET_AVX512 __attribute__((noinline, flatten)) void NAME##_avx512 PARAMS { \
    NAME##_body<Isa::kAvx512> ARGS;                                               \
  }                                                                               \
  LC_TARGET_AVX2 __attribute__((noinline, flatten)) void NAME##_avx2 PARAMS {     \
    NAME##_body<Isa::kAvx2> ARGS;                                                 \
  }                                                                               \
  __attribute__((noinline, flatten)) void NAME##_baseline PARAMS {                \
    NAME##_body<Isa::kBaseline> ARGS;                                             \
  }                                                                               \
  void NAME PARAMS {                                                              \
    switch (active_isa()) {                                                       \
      case Isa::kAvx512:                                                          \
        NAME##_avx512 ARGS;                                                       \
        break;                                                                    \
      case Isa::kAvx2:                                                            \
        NAME##_avx2 ARGS;                                                         \
        break;                                                                    \
      default:                                                                    \
        NAME##_baseline ARGS;                                                     \
        break;                                                                    \
    }                                                                             \
  }
#else
#define LC_MULTIVERSION(NAME, PARAMS, ARGS) \
  __attribute__((noinline)) void NAME PARAMS { NAME##_body<Isa::kBaseline> ARGS; }
#endif

// ---------------------------------------------------------------------------------------------
// Threading.
// ---------------------------------------------------------------------------------------------

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Calls fn(begin, end) on one contiguous slice of [0, n) per thread. Slices hold at least
// `min_per_thread` items (below that a fork costs more than it saves, so small calls stay on
// the calling thread) and start on multiples of `align`.
template <typename Fn>
void parallel_for(int64_t n, int64_t min_per_thread, int64_t align, const Fn& fn) {
  if (n <= 0) return;
  const int64_t threads =
      std::min<int64_t>(max_threads(), std::max<int64_t>(1, n / min_per_thread));
  if (threads <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t units = (n + align - 1) / align;
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(threads))
  for (int64_t t = 0; t < threads; ++t) {
    const int64_t begin = std::min(n, units * t / threads * align);
    const int64_t end = std::min(n, units * (t + 1) / threads * align);
    if (begin < end) fn(begin, end);
  }
}

// Per-thread work floors, in elements. Philox costs ~1 ns per element per core at AVX-512,
// the memory-bound ops ~0.1-0.3 ns; a fork-join costs a few microseconds.
constexpr int64_t kMinElemsPhilox = 8192;
constexpr int64_t kMinElemsStream = 32768;

inline int64_t min_rows_per_thread(int64_t dim) {
  return std::max<int64_t>(1, kMinElemsStream / std::max<int64_t>(1, dim));
}

// ---------------------------------------------------------------------------------------------
// Tiles: float16/bfloat16 staged through float32 stack arrays.
// ---------------------------------------------------------------------------------------------

// Elements per tile: up to five float tiles (20 KiB) stay in L1 next to the streams.
constexpr int64_t kTile = 1024;

template <class S>
constexpr bool kIsF32 = std::is_same_v<S, F32>;

template <Isa kIsa, class S>
LC_INLINE void to_float(const typename S::type* __restrict src, float* __restrict dst,
                        int64_t len) {
#if LC_X86_DISPATCH
  if constexpr (std::is_same_v<S, F16> && kIsa == Isa::kAvx512) {
    cpu::f16_to_f32_avx512(src, dst, len);
    return;
  } else if constexpr (std::is_same_v<S, F16> && kIsa == Isa::kAvx2) {
    cpu::f16_to_f32_avx2(src, dst, len);
    return;
  } else
#endif
  {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) dst[i] = S::load(src[i]);
  }
}

template <Isa kIsa, class S>
LC_INLINE void from_float(const float* __restrict src, typename S::type* __restrict dst,
                          int64_t len) {
#if LC_X86_DISPATCH
  if constexpr (std::is_same_v<S, F16> && kIsa == Isa::kAvx512) {
    cpu::f32_to_f16_avx512(src, dst, len);
    return;
  } else if constexpr (std::is_same_v<S, F16> && kIsa == Isa::kAvx2) {
    cpu::f32_to_f16_avx2(src, dst, len);
    return;
  } else
#endif
  {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) dst[i] = S::store(src[i]);
  }
}

// float32 view of elements [e0, e0 + len) of src: the buffer itself for float32, else `tile`
// filled with the converted values.
template <Isa kIsa, class S>
LC_INLINE const float* stage_in(const typename S::type* src, int64_t e0, int64_t len, float* tile) {
  if constexpr (kIsF32<S>) {
    return src + e0;
  } else {
    to_float<kIsa, S>(src + e0, tile, len);
    return tile;
  }
}

// Same for a buffer that is read and then written in place (latent_adam).
template <Isa kIsa, class S>
LC_INLINE float* stage_inout(typename S::type* buf, int64_t e0, int64_t len, float* tile) {
  if constexpr (kIsF32<S>) {
    return buf + e0;
  } else {
    to_float<kIsa, S>(buf + e0, tile, len);
    return tile;
  }
}

// Where results for elements [e0, ...) of dst are written: dst itself for float32, else `tile`
// (then commit_out converts). nullptr stays nullptr.
template <class S>
LC_INLINE float* stage_out(typename S::type* dst, int64_t e0, float* tile) {
  if (dst == nullptr) return nullptr;
  if constexpr (kIsF32<S>) {
    return dst + e0;
  } else {
    return tile;
  }
}

template <Isa kIsa, class S>
LC_INLINE void commit_out(const float* tile, typename S::type* dst, int64_t e0, int64_t len) {
  if constexpr (!kIsF32<S>) {
    if (dst != nullptr) from_float<kIsa, S>(tile, dst + e0, len);
  }
}

// Visits rows [r0, r1) of a [rows, dim] buffer (dim >= 1) whose row 0 starts at element
// `first`, in tiles of at most kTile elements: several whole rows when dim <= kTile, else one
// row's columns [c0, c0 + clen). Calls fn(e0, len, ra, rb, c0, clen): the tile is elements
// e0 .. e0 + len - 1, made of rows ra .. rb - 1, each contributing columns c0 .. c0 + clen - 1
// (len = (rb - ra) * clen). Tiles of whole rows hold rows_per_tile(dim) rows except the last, so
// per-column data replicated once (replicate_row) lines up with every tile. fn has a single call
// site, so the kernel body it carries is generated once.
LC_INLINE int64_t rows_per_tile(int64_t dim) { return dim <= kTile ? kTile / dim : 1; }

template <typename TileFn>
LC_INLINE void for_each_row_tile(int64_t first, int64_t r0, int64_t r1, int64_t dim,
                                 const TileFn& fn) {
  const bool whole_rows = dim <= kTile;
  const int64_t tile_rows = rows_per_tile(dim);
  int64_t r = r0;
  int64_t next_c0 = 0;
  while (r < r1) {
    const int64_t ra = r;
    int64_t rb, c0, clen;
    if (whole_rows) {
      rb = std::min(r1, r + tile_rows);
      c0 = 0;
      clen = dim;
      r = rb;
    } else {
      rb = r + 1;
      c0 = next_c0;
      clen = std::min(kTile, dim - c0);
      next_c0 = c0 + clen;
      if (next_c0 == dim) {
        next_c0 = 0;
        r = rb;
      }
    }
    fn(first + ra * dim + c0, (rb - ra) * clen, ra, rb, c0, clen);
  }
}

// dst[j] = row[j mod dim] over one tile of whole rows (dim <= kTile): per-column weights laid out
// like the tile, so the elementwise loop runs over all rows of a tile at once.
LC_INLINE void replicate_row(const float* __restrict row, int64_t dim, float* __restrict dst) {
  const int64_t tile_rows = rows_per_tile(dim);
  for (int64_t r = 0; r < tile_rows; ++r) std::memcpy(dst + r * dim, row, dim * sizeof(float));
}

// Sum of t[0 .. len) in float32: 16 lane-parallel partial sums then a pairwise tree, which
// vectorizes at every ISA (an omp simd reduction ends in a serial chain of 16 scalar adds per
// row, which dominated rows of 64). Rows shorter than 16 use four interleaved sums.
LC_INLINE float row_reduce(const float* __restrict t, int64_t len) {
  if (len < 16) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int64_t i = 0;
    for (; i + 4 <= len; i += 4) {
      s0 += t[i];
      s1 += t[i + 1];
      s2 += t[i + 2];
      s3 += t[i + 3];
    }
    for (; i < len; ++i) s0 += t[i];
    return (s0 + s1) + (s2 + s3);
  }
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
#pragma omp simd
    for (int l = 0; l < 16; ++l) acc[l] += t[i + l];
  }
  float tail = 0.0f;
  for (; i < len; ++i) tail += t[i];
#pragma omp simd
  for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
#pragma omp simd
  for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
  return ((acc[0] + acc[2]) + (acc[1] + acc[3])) + tail;
}

// Row total of per-tile partial sums, Kahan-compensated so that rows longer than a tile do not
// accumulate error linearly in their length.
struct RowSum {
  float total = 0.0f;
  float compensation = 0.0f;

  LC_INLINE void add(float x) {
    const float y = x - compensation;
    const float t = total + y;
    compensation = (t - total) - y;
    total = t;
  }
};

// Adds each row's part of a tile of per-element terms to its total; rows complete in this
// tile get write_row(r, total).
template <typename WriteRow>
LC_INLINE void reduce_tile_rows(const float* terms, int64_t ra, int64_t rb, int64_t c0,
                                int64_t clen, int64_t dim, RowSum& acc, const WriteRow& write_row) {
  for (int64_t r = ra; r < rb; ++r) {
    const float part = row_reduce(terms + (r - ra) * clen, clen);
    if (c0 == 0) acc = RowSum{};
    acc.add(part);
    if (c0 + clen == dim) write_row(r, acc.total);
  }
}

}  // namespace cpu
}  // namespace lcengine
