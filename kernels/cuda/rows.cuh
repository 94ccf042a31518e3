// SPDX-License-Identifier: Apache-2.0
// The row skeleton shared by the row-wise CUDA kernels on [rows, dim] buffers (row_losses.cu:
// gaussian_kl, distance_penalty, constraint_loss; adam.cu: latent_adam). Each op supplies an Op
// (the per-element math and the row output); this header walks the rows and reduces.
//
// A row is handled by a group of G lanes (G a power of two <= 32, several rows per warp when dim
// is small) or, for long rows when there are too few rows to fill the device, by a whole block.
// Each lane walks the row in packs of VEC elements (16-byte accesses on the vectorized path,
// which needs every buffer 16-byte aligned and dim % VEC == 0; otherwise VEC = 1), loading
// kUnroll packs before using any so that several loads are in flight. Per-row sums are float32:
// a per-lane partial, then warp shuffles (and shared memory across the warps of a block). Every
// row output is written by exactly one thread: no atomics.
//
// An Op provides:
//   kVec, kUnroll, Frag            pack width, packs loaded per lane before use, loaded data
//   row_active(row)                false: the row is neither read nor written (latent_adam)
//   reduces()                      whether a per-row sum is produced
//   load(e, col)                   read the pack starting at flat element e (= row * dim + col)
//   compute(frag, e, col)          elementwise math and stores; returns the pack's partial sum
//   finish(row, sum)               write the row output from the row's float32 sum
#pragma once

#include <initializer_list>
#include <stdexcept>
#include <string>

#include "common.cuh"

namespace lcengine {
namespace cuda_detail {

constexpr int kGroupThreads = 256;     // block size of the group-per-row kernel
constexpr int kMaxBlockThreads = 512;  // largest block of the block-per-row kernel
// Register caps: <= 85 registers in the group kernel, so >= 768 resident threads per SM. With
// 16-byte packs (kUnroll packs per input, 48-64 bytes per lane) that keeps >= 36 KiB of loads in
// flight per SM, above what HBM3 needs (about 3.3-4.8 TB/s * ~1 us / 132 SMs = 25-36 KiB).
constexpr int kMinGroupBlocksPerSm = 3;
constexpr int kMinBlockBlocksPerSm = 1;

// This lane's part of one row: packs first, first + step, ... of the row's npacks packs.
// Returns the lane's partial sum (0 for ops without a reduction).
template <class Op>
__device__ __forceinline__ float process_row(const Op& op, int64_t row, int64_t dim, int64_t npacks,
                                             int first, int step) {
  constexpr int VEC = Op::kVec;
  constexpr int U = Op::kUnroll;
  const int64_t row_start = row * dim;
  float acc[U];
#pragma unroll
  for (int u = 0; u < U; ++u) acc[u] = 0.f;
  for (int64_t p0 = first; p0 < npacks; p0 += static_cast<int64_t>(step) * U) {
    typename Op::Frag frag[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t p = p0 + static_cast<int64_t>(u) * step;
      if (p < npacks) frag[u] = op.load(row_start + p * VEC, p * VEC);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t p = p0 + static_cast<int64_t>(u) * step;
      if (p < npacks) acc[u] += op.compute(frag[u], row_start + p * VEC, p * VEC);
    }
  }
  return pairwise_sum(acc);
}

// Group-per-row kernel: groups of G = 2^log2_group lanes, 32 / G rows per warp per iteration,
// grid-stride over rows. The loop bound is warp-uniform so every lane reaches the shuffles.
template <class Op>
__global__ void __launch_bounds__(kGroupThreads, kMinGroupBlocksPerSm)
    rows_group_kernel(const Op op, int64_t rows, int64_t dim, int64_t npacks, int log2_group) {
  const int group = 1 << log2_group;
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int sub = lane & (group - 1);
  const int rows_per_warp = 32 >> log2_group;
  const int warps_per_block = static_cast<int>(blockDim.x >> 5);
  const int64_t warp_id =
      static_cast<int64_t>(blockIdx.x) * warps_per_block + static_cast<int64_t>(threadIdx.x >> 5);
  const int64_t row_step = static_cast<int64_t>(gridDim.x) * warps_per_block * rows_per_warp;
  for (int64_t base = warp_id * rows_per_warp; base < rows; base += row_step) {
    const int64_t row = base + (lane >> log2_group);
    const bool live = row < rows && op.row_active(row);
    float acc = 0.f;
    if (live) acc = process_row(op, row, dim, npacks, sub, group);
    if (op.reduces()) {
      acc = group_sum(acc, group);
      if (live && sub == 0) op.finish(row, acc);
    }
  }
}

// Block-per-row kernel, for long rows when rows alone cannot fill the device. The row loop is
// block-uniform, so the barriers are reached by every thread.
template <class Op>
__global__ void __launch_bounds__(kMaxBlockThreads, kMinBlockBlocksPerSm)
    rows_block_kernel(const Op op, int64_t rows, int64_t dim, int64_t npacks) {
  __shared__ float warp_sums[kMaxBlockThreads / 32];
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const int warp = static_cast<int>(threadIdx.x >> 5);
  const int nwarps = static_cast<int>(blockDim.x >> 5);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    if (!op.row_active(row)) continue;  // block-uniform
    float acc = process_row(op, row, dim, npacks, static_cast<int>(threadIdx.x),
                            static_cast<int>(blockDim.x));
    if (op.reduces()) {
      acc = warp_sum(acc);
      if (lane == 0) warp_sums[warp] = acc;
      __syncthreads();
      if (warp == 0) {
        acc = lane < nwarps ? warp_sums[lane] : 0.f;
        acc = warp_sum(acc);
        if (lane == 0) op.finish(row, acc);
      }
      __syncthreads();  // warp_sums is reused by the next row
    }
  }
}

inline int ceil_log2(int64_t x) {
  int k = 0;
  while ((int64_t{1} << k) < x) ++k;
  return k;
}

// Picks the layout and launches. rows > 0 here.
template <class Op>
void launch_rows(const Op& op, int64_t rows, int64_t dim, cudaStream_t stream, const char* name) {
  const int64_t npacks = dim / Op::kVec;
  const int64_t sms = current_sm_count();
  // Long rows and fewer than 16 warps' worth of rows per SM: spread each row over a block.
  if (npacks > 256 && rows < sms * 16) {
    int64_t threads = int64_t{1} << ceil_log2(ceil_div(npacks, 4));
    if (threads < 64) threads = 64;
    if (threads > kMaxBlockThreads) threads = kMaxBlockThreads;
    const int t = static_cast<int>(threads);
    rows_block_kernel<Op><<<grid_size(rows, t), t, 0, stream>>>(op, rows, dim, npacks);
  } else {
    const int log2_group = ceil_log2(npacks < 32 ? npacks : 32);  // 0 for npacks <= 1
    const int64_t rows_per_block = (kGroupThreads / 32) * (32 >> log2_group);
    rows_group_kernel<Op>
        <<<grid_size(ceil_div(rows, rows_per_block), kGroupThreads), kGroupThreads, 0, stream>>>(
            op, rows, dim, npacks, log2_group);
  }
  check_launch(name);
}

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) for the storage type of dtype.
template <typename F>
void dispatch_dtype(DType dtype, const char* name, F&& f) {
  switch (dtype) {
    case DType::kFloat32:
      f(TypeTag<float>{});
      break;
    case DType::kFloat16:
      f(TypeTag<__half>{});
      break;
    case DType::kBFloat16:
      f(TypeTag<__nv_bfloat16>{});
      break;
    default:
      throw std::invalid_argument(std::string(name) + ": unsupported dtype code " +
                                  std::to_string(static_cast<int>(dtype)));
  }
}

// Whether the 16-byte path applies: dim a multiple of the pack width (so every row starts on a
// pack boundary) and every given pointer 16-byte aligned (nullptr counts as aligned).
template <typename T>
bool can_vectorize(int64_t dim, std::initializer_list<const void*> ptrs) {
  if (dim % kVec16<T> != 0) return false;
  for (const void* p : ptrs) {
    if (p != nullptr && !aligned16(p)) return false;
  }
  return true;
}

}  // namespace cuda_detail
}  // namespace lcengine
