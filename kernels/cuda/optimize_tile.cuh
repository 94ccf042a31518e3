// SPDX-License-Identifier: Apache-2.0
// The persistent row-tile kernel of the fused latent optimizer (design: optimize.cu's header).
//
// One CTA of 256 threads owns TR = 4 * RM rows and runs the whole step loop for them in one
// launch. Shared memory holds, per row of the tile: z, every hidden activation of every net and
// the logits (overwritten by the logit gradient after the check); weights are streamed from
// global memory (L2-resident) through a 16 x 256 staging chunk. Adam's m and v live in global
// memory (workspace), touched once per element per step.
//
// The tile GEMM computes C[TR, N] = A[TR, K] * B[K, N] for N <= 256 with A in shared memory and
// B a layer's weights read as B(k, n) = W[n, k] (forward, "NT") or W[k, n] (input gradient,
// "NN"). Thread layout: warp w, lane l -> row group rg = l / 8 (rows rg, rg + 4, ...) and column
// group cg = 8 w + l % 8 (columns 4 cg .. 4 cg + 3): each thread holds an RM x 4 accumulator
// block; per 4 values of k it reads RM float4 of A (4 distinct rows per warp, conflict-free
// since every A row stride is 4 mod 8 floats) and 4 float4 of B (8 distinct 16-byte chunks per
// warp, one wavefront each). The weight chunk for step k + 16 is loaded into registers while
// chunk k is multiplied.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "optimize_device.cuh"

namespace lcengine {
namespace cuda_detail {
namespace opt {

constexpr int kTileThreads = 256;
constexpr int kTileMaxLayers = 64;  // layers over all nets (kernel parameter space < 4 KB)
constexpr int kTileMaxWidth = 256;  // every GEMM output width of the tile path
constexpr int kChunkK = 16;         // k-depth of one staged weight chunk
constexpr int kChunkLd = 260;       // floats per staged k-row (256 columns + 4: 16-byte rows)

// Layer flags.
constexpr int kLayerFirst = 1;    // layer 0 of its net: reads z (its backward is the z-gradient)
constexpr int kLayerLast = 2;     // output layer: no activation, writes the logit buffer
constexpr int kLayerRowBias = 4;  // bias from TileParams::row_bias (net 0, layer 0)

// One Linear layer: in [TR, K] -> out [TR, N], both in shared memory (float offsets, strides).
struct TileLayer {
  const void* w;      // [N, K] row-major, float or bfloat16 (ld = K)
  const float* bias;  // [N] (nullptr with kLayerRowBias)
  int K, N;
  int in_off, in_ld;
  int out_off, out_ld;
  int act;    // the net's activation code (after every layer but the last)
  int flags;  // kLayer*
};

struct TileParams {
  int64_t rows, steps;
  int dim, num_outputs, num_layers, row_bias_width;
  // shared memory layout (floats; every offset and row stride a multiple of 4)
  int z_off, ldz, logit_off, ldl, flag_off, pos_off, smem_floats;
  const float* row_bias;      // [rows, row_bias_width] or nullptr
  const float* target;        // [rows, C]
  const float* loss_weight;   // [rows, C]
  const int8_t* requirement;  // [rows, C]
  const float* upper;         // [C]
  const float* lower;         // [C]
  const float* inv_sigma_sq;  // [dim]
  const float* z_start;       // [rows, dim]
  float* z_out;               // [rows, dim]
  uint8_t* converged;         // [rows]
  int64_t* steps_taken;       // [rows]
  float* logits_out;          // [rows, C]
  float* exp_avg;             // [rows, dim] workspace
  float* exp_avg_sq;          // [rows, dim] workspace
  double w_dist, lr, beta1, beta2;
  AdamConsts adam;
  TileLayer layers[kTileMaxLayers];
};

// ---------------------------------------------------------------------------------------------
// Tile GEMM.
// ---------------------------------------------------------------------------------------------

// This thread's share of weight chunk [k0, k0 + 16): 16 elements, zero outside [nout) x [kred).
//   NT: element i is B(k0 + tid % 16, tid / 16 + 16 i) = W[n * ldw + k]  (runs of 16 along k)
//   NN: element i is B(k0 + i, tid)                   = W[k * ldw + n]  (coalesced along n)
template <typename Tw, bool NT>
__device__ __forceinline__ void tile_load_chunk(Tw (&pre)[kChunkK], const Tw* __restrict__ w,
                                                int ldw, int nout, int kred, int k0, int tid) {
  // One base pointer and a fixed stride: NT steps 16 rows of W, NN one row of W per element.
  const int n0 = NT ? (tid >> 4) : tid;
  const int kt = k0 + (NT ? (tid & 15) : 0);
  const Tw* base = w + (NT ? n0 * ldw + kt : kt * ldw + n0);
  const int stride = NT ? 16 * ldw : ldw;
#pragma unroll
  for (int i = 0; i < kChunkK; ++i) {
    const bool in = NT ? (n0 + 16 * i < nout && kt < kred) : (n0 < nout && kt + i < kred);
    pre[i] = in ? __ldg(base + i * stride) : zero_of<Tw>();
  }
}

template <typename Tw, bool NT>
__device__ __forceinline__ void tile_store_chunk(const Tw (&pre)[kChunkK], float* __restrict__ bs,
                                                 int tid) {
#pragma unroll
  for (int i = 0; i < kChunkK; ++i) {
    const int n = NT ? (tid >> 4) + 16 * i : tid;
    const int kk = NT ? (tid & 15) : i;
    bs[kk * kChunkLd + n] = to_float(pre[i]);
  }
}

// acc[i][c] += sum_k A[(rg + 4 i) * lda + k] * B(k, 4 cg + c), k < kred, for n < nout <= 256.
// A must be zero (or at least finite) in columns [kred, round_up(kred, 4)) and lda, the A
// pointer and every offset 16-byte aligned. Starts with a barrier: the previous writer of A (an
// epilogue) and the previous readers of the staging chunk are done before anything is read or
// overwritten. Ends without one.
template <int RM, typename Tw, bool NT>
__device__ __forceinline__ void tile_gemm(float (&acc)[RM][4], const float* __restrict__ a, int lda,
                                          const Tw* __restrict__ w, int ldw, int nout, int kred,
                                          float* __restrict__ bs, int tid, int rg, int cg) {
  Tw pre[kChunkK];
  const int nchunks = (kred + kChunkK - 1) / kChunkK;
  tile_load_chunk<Tw, NT>(pre, w, ldw, nout, kred, 0, tid);
  for (int ch = 0; ch < nchunks; ++ch) {
    __syncthreads();
    tile_store_chunk<Tw, NT>(pre, bs, tid);
    __syncthreads();
    const int k0 = ch * kChunkK;
    if (ch + 1 < nchunks) tile_load_chunk<Tw, NT>(pre, w, ldw, nout, kred, k0 + kChunkK, tid);
    const int klen = min(kChunkK, kred - k0);
    const float* ak = a + k0;
    for (int kk = 0; kk < klen; kk += 4) {
      float av[RM][4];
#pragma unroll
      for (int i = 0; i < RM; ++i) {
        const float4 q = *reinterpret_cast<const float4*>(ak + (rg + 4 * i) * lda + kk);
        av[i][0] = q.x;
        av[i][1] = q.y;
        av[i][2] = q.z;
        av[i][3] = q.w;
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float4 b = *reinterpret_cast<const float4*>(bs + (kk + q) * kChunkLd + 4 * cg);
#pragma unroll
        for (int i = 0; i < RM; ++i) {
          acc[i][0] = fmaf(av[i][q], b.x, acc[i][0]);
          acc[i][1] = fmaf(av[i][q], b.y, acc[i][1]);
          acc[i][2] = fmaf(av[i][q], b.z, acc[i][2]);
          acc[i][3] = fmaf(av[i][q], b.w, acc[i][3]);
        }
      }
    }
  }
}

template <int RM>
__device__ __forceinline__ void zero_acc(float (&acc)[RM][4]) {
#pragma unroll
  for (int i = 0; i < RM; ++i) {
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[i][c] = 0.f;
  }
}

// ---------------------------------------------------------------------------------------------
// Step phases. Every function is entered by all threads of the CTA.
// ---------------------------------------------------------------------------------------------

// Every layer of every net: out = act(in W^T + bias) (no activation after a net's last layer).
template <int RM, typename Tw>
__device__ __forceinline__ void tile_forward(const TileParams& p, float* smem, int64_t row0,
                                             int nrows, int tid, int rg, int cg) {
  for (int li = 0; li < p.num_layers; ++li) {
    const TileLayer& L = p.layers[li];
    float acc[RM][4];
    zero_acc<RM>(acc);
    tile_gemm<RM, Tw, true>(acc, smem + L.in_off, L.in_ld, static_cast<const Tw*>(L.w), L.K, L.N,
                            L.K, smem, tid, rg, cg);
    float* out = smem + L.out_off;
    const bool last = (L.flags & kLayerLast) != 0;
    const bool use_row_bias = (L.flags & kLayerRowBias) != 0;
#pragma unroll
    for (int i = 0; i < RM; ++i) {
      const int r = rg + 4 * i;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int n = 4 * cg + c;
        if (n >= L.N) continue;
        float b;
        if (use_row_bias) {
          b = r < nrows ? __ldg(p.row_bias + (row0 + r) * p.row_bias_width + n) : 0.f;
        } else {
          b = __ldg(L.bias + n);
        }
        const float x = acc[i][c] + b;
        out[r * L.out_ld + n] = last ? x : activate(x, L.act);
      }
    }
  }
}

// The per-row check at the current logits. Regular step (final == false): a satisfied active
// row is frozen (z and logits written out, converged = 1, steps_taken = t - 1); the logit
// buffer then holds the loss gradient loss_weight (sigmoid(l) - target) of the rows still
// active and 0 elsewhere. Final check: active rows are written out with converged = satisfied
// and steps_taken = steps. Returns the number of rows still active (same value in every thread).
template <int TR>
__device__ __forceinline__ int tile_check(const TileParams& p, float* smem, int64_t row0, int64_t t,
                                          bool final_check, int tid) {
  __syncthreads();  // the output layers' epilogues are done
  const int lane = tid & 31, warp = tid >> 5;
  const int C = p.num_outputs, D = p.dim;
  int* flag = reinterpret_cast<int*>(smem + p.flag_off);
  const int* pos = reinterpret_cast<const int*>(smem + p.pos_off);
  const float* zs = smem + p.z_off;
  for (int r = warp; r < TR; r += kTileThreads / 32) {
    float* logit = smem + p.logit_off + r * p.ldl;
    if (!flag[r]) {
      if (!final_check) {
        for (int c = lane; c < C; c += 32) logit[pos[c]] = 0.f;
      }
      continue;
    }
    const int64_t row = row0 + r;
    bool ok = true;
    for (int c0 = 0; c0 < C; c0 += 32) {  // warp-uniform trip count around the vote
      const int c = c0 + lane;
      if (c >= C) continue;
      ok = ok && column_satisfied(logit[pos[c]], p.requirement[row * C + c], p.upper, p.lower, c);
    }
    const bool sat = __all_sync(0xffffffffu, ok);
    if (final_check || sat) {
      for (int d = lane; d < D; d += 32) p.z_out[row * D + d] = zs[r * p.ldz + d];
      for (int c = lane; c < C; c += 32) p.logits_out[row * C + c] = logit[pos[c]];
      if (lane == 0) {
        p.converged[row] = sat ? 1 : 0;
        p.steps_taken[row] = final_check ? p.steps : t - 1;
      }
    }
    if (!final_check) {
      for (int c = lane; c < C; c += 32) {
        const float l = logit[pos[c]];
        float g = 0.f;
        if (!sat) g = p.loss_weight[row * C + c] * (stable_sigmoid(l) - p.target[row * C + c]);
        logit[pos[c]] = g;
      }
      if (sat) {
        __syncwarp();
        if (lane == 0) flag[r] = 0;
      }
    }
  }
  __syncthreads();
  return __syncthreads_count(tid < TR && flag[tid] != 0);
}

// Input gradients of every layer but the first ones, last layer first: the gradient at a
// layer's output (its out buffer) times its weights, times act'() of its input, in place of
// that input's activation.
template <int RM, typename Tw>
__device__ __forceinline__ void tile_backward(const TileParams& p, float* smem, int tid, int rg,
                                              int cg) {
  for (int li = p.num_layers - 1; li >= 0; --li) {
    const TileLayer& L = p.layers[li];
    if (L.flags & kLayerFirst) continue;
    float acc[RM][4];
    zero_acc<RM>(acc);
    tile_gemm<RM, Tw, false>(acc, smem + L.out_off, L.out_ld, static_cast<const Tw*>(L.w), L.K, L.K,
                             L.N, smem, tid, rg, cg);
    float* in = smem + L.in_off;
#pragma unroll
    for (int i = 0; i < RM; ++i) {
      const int r = rg + 4 * i;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int n = 4 * cg + c;
        if (n >= L.K) continue;
        float* x = in + r * L.in_ld + n;
        *x = activation_grad(acc[i][c], *x, L.act);
      }
    }
  }
}

// g_z = sum over nets of g_pre1 W_first (accumulated in registers), then the distance gradient
// and Adam for the active rows.
template <int RM, typename Tw>
__device__ __forceinline__ void tile_update(const TileParams& p, float* smem, int64_t row0,
                                            const float (&coef)[4], float step_size, float sqrt_bc2,
                                            int tid, int rg, int cg) {
  float acc[RM][4];
  zero_acc<RM>(acc);
  for (int li = 0; li < p.num_layers; ++li) {
    const TileLayer& L = p.layers[li];
    if (!(L.flags & kLayerFirst)) continue;
    tile_gemm<RM, Tw, false>(acc, smem + L.out_off, L.out_ld, static_cast<const Tw*>(L.w), L.K,
                             p.dim, L.N, smem, tid, rg, cg);
  }
  const int* flag = reinterpret_cast<const int*>(smem + p.flag_off);
  float* zs = smem + p.z_off;
  const int D = p.dim;
#pragma unroll
  for (int i = 0; i < RM; ++i) {
    const int r = rg + 4 * i;
    if (!flag[r]) continue;
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int n = 4 * cg + c;
      if (n >= D) continue;
      const int64_t e = (row0 + r) * D + n;
      float z = zs[r * p.ldz + n];
      float m = p.exp_avg[e];
      float v = p.exp_avg_sq[e];
      distance_adam(z, m, v, acc[i][c], __ldg(p.z_start + e), coef[c], p.adam, step_size, sqrt_bc2);
      zs[r * p.ldz + n] = z;
      p.exp_avg[e] = m;
      p.exp_avg_sq[e] = v;
    }
  }
}

// The whole optimizer for rows [blockIdx.x * TR, + TR).
template <int RM, typename Tw>
__global__ void __launch_bounds__(kTileThreads, RM == 2 ? 2 : 1)
    optimize_tile_kernel(const __grid_constant__ TileParams p) {
  constexpr int TR = 4 * RM;
  extern __shared__ float4 smem_f4[];
  float* smem = reinterpret_cast<float*>(smem_f4);
  const int tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  const int rg = lane >> 3, cg = warp * 8 + (lane & 7);
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * TR;
  const int nrows = static_cast<int>(p.rows - row0 < TR ? p.rows - row0 : TR);
  const int D = p.dim;

  // Zero everything: padding columns of A operands must read as 0, padding rows stay finite.
  for (int i = tid; i < p.smem_floats; i += kTileThreads) smem[i] = 0.f;
  __syncthreads();
  float* zs = smem + p.z_off;
  int* flag = reinterpret_cast<int*>(smem + p.flag_off);
  int* pos = reinterpret_cast<int*>(smem + p.pos_off);
  for (int e = tid; e < nrows * D; e += kTileThreads) {
    const int r = e / D, d = e - r * D;
    const int64_t g = (row0 + r) * D + d;
    zs[r * p.ldz + d] = __ldg(p.z_start + g);
    p.exp_avg[g] = 0.f;
    p.exp_avg_sq[g] = 0.f;
  }
  if (tid < TR) flag[tid] = tid < nrows ? 1 : 0;
  if (tid == 0) {  // logit column c -> its column in the (per-net padded) logit buffer
    int c = 0;
    for (int li = 0; li < p.num_layers; ++li) {
      const TileLayer& L = p.layers[li];
      if (!(L.flags & kLayerLast)) continue;
      for (int j = 0; j < L.N; ++j) pos[c++] = L.out_off - p.logit_off + j;
    }
  }
  // distance coefficients of this thread's update columns
  float coef[4];
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    const int n = 4 * cg + c;
    coef[c] = n < D ? distance_coef(p.w_dist, D, __ldg(p.inv_sigma_sq + n)) : 0.f;
  }
  // (tile_forward's first GEMM starts with a barrier: the setup above is visible to it)

  double b1t = 1.0, b2t = 1.0;
  bool live = true;
  for (int64_t t = 1; t <= p.steps; ++t) {
    tile_forward<RM, Tw>(p, smem, row0, nrows, tid, rg, cg);
    if (tile_check<TR>(p, smem, row0, t, false, tid) == 0) {
      live = false;
      break;
    }
    tile_backward<RM, Tw>(p, smem, tid, rg, cg);
    b1t *= p.beta1;
    b2t *= p.beta2;
    const AdamStep sc = adam_step(p.lr, b1t, b2t);
    tile_update<RM, Tw>(p, smem, row0, coef, sc.step_size, sc.sqrt_bc2, tid, rg, cg);
  }
  if (live) {  // rows that used every step: one more check at the final latents
    tile_forward<RM, Tw>(p, smem, row0, nrows, tid, rg, cg);
    tile_check<TR>(p, smem, row0, p.steps, true, tid);
  }
}

}  // namespace opt
}  // namespace cuda_detail
}  // namespace lcengine
