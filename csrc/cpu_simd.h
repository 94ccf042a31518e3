// SPDX-License-Identifier: Apache-2.0
// x86 instruction-set levels for the CPU kernels and the Philox4x32-10 block generators that
// must be written with intrinsics.
//
// Why intrinsics for Philox: every round is two 32x32->64 multiplies. GCC 12 auto-vectorizes
// them as full 64x64 multiplies (vpmullq plus masking on AVX-512, a three-multiply emulation on
// AVX2 and SSE2), which measured 1.5x slower than pmuludq on AVX-512 and *slower than scalar
// code* on AVX2 and SSE2. pmuludq reads only the low 32 bits of each 64-bit lane and returns the
// full 64-bit product, which is exactly one Philox multiply per lane.
//
// The functions here carry `target` attributes and are not always_inline: they are inlined by
// the `flatten` attribute of the kernels' per-ISA entry points (LC_MULTIVERSION in
// cpu_kernels.h), where the ISA matches.
#pragma once

#include <cstdint>

#include "cpu_math.h"
#include "philox.h"

// LC_X86_DISPATCH: per-ISA code paths with runtime selection (GCC on x86-64). Elsewhere, or
// with -DLC_X86_DISPATCH=0, one portable path (the generic loops of cpu_math.h).
#ifndef LC_X86_DISPATCH
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LC_X86_DISPATCH 1
#else
#define LC_X86_DISPATCH 0
#endif
#endif

#if LC_X86_DISPATCH
// GCC 12's _mm512_undefined_* trip -Wmaybe-uninitialized wherever the AVX-512 intrinsics are
// inlined (GCC PR 105593, fixed in 13). The warning is reported at the header's own lines, so
// silencing it around the include is enough.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
// 512-bit vectors for the auto-vectorized loops too: GCC's generic tuning would otherwise stay at
// 256 bits, and the Box-Muller and exp/log loops are compute-bound.
#define LC_TARGET_AVX512 __attribute__((target("arch=x86-64-v4,prefer-vector-width=512")))
#define LC_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))
#endif

namespace lcengine {
namespace cpu {

#if LC_X86_DISPATCH

// Round r of Philox on 64-bit lanes whose low halves hold the 32-bit words (upper halves are
// don't-care, see philox_block in cpu_math.h). Words 2 and 3 of the initial counter are zero,
// so round 0 needs one multiply; round 9 produces only the two output words.

// AVX-512: 8 counters per register, 4 registers in flight to cover the multiply latency.
template <int kLen>
LC_TARGET_AVX512 inline void philox_block_avx512(uint64_t first, const PhiloxKeys& keys,
                                                 uint32_t* __restrict w0, uint32_t* __restrict w1) {
  constexpr int kLanes = 8;
  constexpr int kUnroll = 4;
  static_assert(kLen % (kLanes * kUnroll) == 0, "block must be a multiple of 32 counters");
  const __m512i mul_a = _mm512_set1_epi64(philox::kRoundA);
  const __m512i mul_b = _mm512_set1_epi64(philox::kRoundB);
  const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
  for (int j = 0; j < kLen; j += kLanes * kUnroll) {
    __m512i c0[kUnroll], c1[kUnroll], c2[kUnroll], c3[kUnroll];
#pragma GCC unroll 4
    for (int u = 0; u < kUnroll; ++u) {
      const __m512i counter =
          _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(first + j + kLanes * u)), lane);
      const __m512i pa = _mm512_mul_epu32(counter, mul_a);
      c0[u] = _mm512_xor_si512(_mm512_srli_epi64(counter, 32),
                               _mm512_set1_epi64(static_cast<long long>(keys.k0[0])));
      c2[u] = _mm512_xor_si512(_mm512_srli_epi64(pa, 32),
                               _mm512_set1_epi64(static_cast<long long>(keys.k1[0])));
      c1[u] = _mm512_setzero_si512();
      c3[u] = pa;
    }
#pragma GCC unroll 8
    for (int r = 1; r < 9; ++r) {
      const __m512i k0 = _mm512_set1_epi64(static_cast<long long>(keys.k0[r]));
      const __m512i k1 = _mm512_set1_epi64(static_cast<long long>(keys.k1[r]));
#pragma GCC unroll 4
      for (int u = 0; u < kUnroll; ++u) {
        const __m512i pb = _mm512_mul_epu32(c2[u], mul_b);
        const __m512i pa = _mm512_mul_epu32(c0[u], mul_a);
        c0[u] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(pb, 32), c1[u], k0, 0x96);  // a^b^c
        c2[u] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(pa, 32), c3[u], k1, 0x96);
        c1[u] = pb;
        c3[u] = pa;
      }
    }
    const __m512i k0 = _mm512_set1_epi64(static_cast<long long>(keys.k0[9]));
#pragma GCC unroll 4
    for (int u = 0; u < kUnroll; ++u) {
      const __m512i pb = _mm512_mul_epu32(c2[u], mul_b);
      const __m512i out0 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(pb, 32), c1[u], k0, 0x96);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w0 + j + kLanes * u),
                          _mm512_cvtepi64_epi32(out0));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w1 + j + kLanes * u),
                          _mm512_cvtepi64_epi32(pb));
    }
  }
}

// AVX2: 4 counters per register; 16 architectural registers, so 2 in flight.
template <int kLen>
LC_TARGET_AVX2 inline void philox_block_avx2(uint64_t first, const PhiloxKeys& keys,
                                             uint32_t* __restrict w0, uint32_t* __restrict w1) {
  constexpr int kLanes = 4;
  constexpr int kUnroll = 2;
  static_assert(kLen % (kLanes * kUnroll) == 0, "block must be a multiple of 8 counters");
  const __m256i mul_a = _mm256_set1_epi64x(philox::kRoundA);
  const __m256i mul_b = _mm256_set1_epi64x(philox::kRoundB);
  const __m256i lane = _mm256_set_epi64x(3, 2, 1, 0);
  // Gathers the low 32-bit word of each 64-bit lane into the low 128 bits.
  const __m256i even_words = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (int j = 0; j < kLen; j += kLanes * kUnroll) {
    __m256i c0[kUnroll], c1[kUnroll], c2[kUnroll], c3[kUnroll];
#pragma GCC unroll 2
    for (int u = 0; u < kUnroll; ++u) {
      const __m256i counter = _mm256_add_epi64(
          _mm256_set1_epi64x(static_cast<long long>(first + j + kLanes * u)), lane);
      const __m256i pa = _mm256_mul_epu32(counter, mul_a);
      c0[u] = _mm256_xor_si256(_mm256_srli_epi64(counter, 32),
                               _mm256_set1_epi64x(static_cast<long long>(keys.k0[0])));
      c2[u] = _mm256_xor_si256(_mm256_srli_epi64(pa, 32),
                               _mm256_set1_epi64x(static_cast<long long>(keys.k1[0])));
      c1[u] = _mm256_setzero_si256();
      c3[u] = pa;
    }
#pragma GCC unroll 8
    for (int r = 1; r < 9; ++r) {
      const __m256i k0 = _mm256_set1_epi64x(static_cast<long long>(keys.k0[r]));
      const __m256i k1 = _mm256_set1_epi64x(static_cast<long long>(keys.k1[r]));
#pragma GCC unroll 2
      for (int u = 0; u < kUnroll; ++u) {
        const __m256i pb = _mm256_mul_epu32(c2[u], mul_b);
        const __m256i pa = _mm256_mul_epu32(c0[u], mul_a);
        c0[u] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pb, 32), c1[u]), k0);
        c2[u] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pa, 32), c3[u]), k1);
        c1[u] = pb;
        c3[u] = pa;
      }
    }
    const __m256i k0 = _mm256_set1_epi64x(static_cast<long long>(keys.k0[9]));
#pragma GCC unroll 2
    for (int u = 0; u < kUnroll; ++u) {
      const __m256i pb = _mm256_mul_epu32(c2[u], mul_b);
      const __m256i out0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pb, 32), c1[u]), k0);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(w0 + j + kLanes * u),
                       _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(out0, even_words)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(w1 + j + kLanes * u),
                       _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(pb, even_words)));
    }
  }
}

// SSE2 (every x86-64): 2 counters per register, 4 in flight.
template <int kLen>
inline void philox_block_sse2(uint64_t first, const PhiloxKeys& keys, uint32_t* __restrict w0,
                              uint32_t* __restrict w1) {
  constexpr int kLanes = 2;
  constexpr int kUnroll = 4;
  static_assert(kLen % (kLanes * kUnroll) == 0, "block must be a multiple of 8 counters");
  const __m128i mul_a = _mm_set1_epi64x(philox::kRoundA);
  const __m128i mul_b = _mm_set1_epi64x(philox::kRoundB);
  const __m128i lane = _mm_set_epi64x(1, 0);
  for (int j = 0; j < kLen; j += kLanes * kUnroll) {
    __m128i c0[kUnroll], c1[kUnroll], c2[kUnroll], c3[kUnroll];
#pragma GCC unroll 4
    for (int u = 0; u < kUnroll; ++u) {
      const __m128i counter =
          _mm_add_epi64(_mm_set1_epi64x(static_cast<long long>(first + j + kLanes * u)), lane);
      const __m128i pa = _mm_mul_epu32(counter, mul_a);
      c0[u] = _mm_xor_si128(_mm_srli_epi64(counter, 32),
                            _mm_set1_epi64x(static_cast<long long>(keys.k0[0])));
      c2[u] = _mm_xor_si128(_mm_srli_epi64(pa, 32),
                            _mm_set1_epi64x(static_cast<long long>(keys.k1[0])));
      c1[u] = _mm_setzero_si128();
      c3[u] = pa;
    }
#pragma GCC unroll 8
    for (int r = 1; r < 9; ++r) {
      const __m128i k0 = _mm_set1_epi64x(static_cast<long long>(keys.k0[r]));
      const __m128i k1 = _mm_set1_epi64x(static_cast<long long>(keys.k1[r]));
#pragma GCC unroll 4
      for (int u = 0; u < kUnroll; ++u) {
        const __m128i pb = _mm_mul_epu32(c2[u], mul_b);
        const __m128i pa = _mm_mul_epu32(c0[u], mul_a);
        c0[u] = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi64(pb, 32), c1[u]), k0);
        c2[u] = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi64(pa, 32), c3[u]), k1);
        c1[u] = pb;
        c3[u] = pa;
      }
    }
    const __m128i k0 = _mm_set1_epi64x(static_cast<long long>(keys.k0[9]));
#pragma GCC unroll 4
    for (int u = 0; u < kUnroll; ++u) {
      const __m128i pb = _mm_mul_epu32(c2[u], mul_b);
      const __m128i out0 = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi64(pb, 32), c1[u]), k0);
      // Low words of both lanes into the low 64 bits.
      _mm_storel_epi64(reinterpret_cast<__m128i*>(w0 + j + kLanes * u),
                       _mm_shuffle_epi32(out0, _MM_SHUFFLE(3, 1, 2, 0)));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(w1 + j + kLanes * u),
                       _mm_shuffle_epi32(pb, _MM_SHUFFLE(3, 1, 2, 0)));
    }
  }
}

// float16 <-> float32 over arrays with F16C (exact widening; narrowing rounds to nearest even,
// NaN stays NaN, overflow gives inf). Tails use masked loads and stores on AVX-512 and the
// scalar bit-exact conversion of cpu_math.h on AVX2.
LC_TARGET_AVX512 inline void f16_to_f32_avx512(const uint16_t* __restrict src,
                                               float* __restrict dst, int64_t len) {
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
  }
  if (i < len) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (len - i)) - 1u);
    const __m256i h = _mm256_maskz_loadu_epi16(tail, src + i);
    _mm512_mask_storeu_ps(dst + i, tail, _mm512_cvtph_ps(h));
  }
}

LC_TARGET_AVX512 inline void f32_to_f16_avx512(const float* __restrict src,
                                               uint16_t* __restrict dst, int64_t len) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), kRound);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), h);
  }
  if (i < len) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (len - i)) - 1u);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(tail, src + i), kRound);
    _mm256_mask_storeu_epi16(dst + i, tail, h);
  }
}

LC_TARGET_AVX2 inline void f16_to_f32_avx2(const uint16_t* __restrict src, float* __restrict dst,
                                           int64_t len) {
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < len; ++i) dst[i] = F16::load(src[i]);
}

LC_TARGET_AVX2 inline void f32_to_f16_avx2(const float* __restrict src, uint16_t* __restrict dst,
                                           int64_t len) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kRound);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < len; ++i) dst[i] = F16::store(src[i]);
}

#endif  // LC_X86_DISPATCH

}  // namespace cpu
}  // namespace lcengine
