// SPDX-License-Identifier: Apache-2.0
// Fused critic-gradient latent optimizer on CUDA (contract: OptimizeLatentsArgs in
// csrc/lcengine_ops.h; the CPU twin is csrc/optimize.cpp, the ground truth
// lcengine/reference/optimize.py). Two paths, chosen per call on the host:
//
// 1. Persistent row tiles (optimize_tile.cuh), when D and every layer width are <= 256, there
//    are at most 64 layers in all and a tile of 8 rows fits in 99 KiB of shared memory (the
//    smallest opt-in limit of sm_80+, so the choice does not depend on the device). Rows are
//    independent: one CTA of 256 threads owns TR = 8, 16 or 32 rows and runs the whole step loop
//    for them in ONE launch: forward of every net, check/freeze, input-gradient backward, the
//    z-gradient GEMM fused with distance gradient + Adam; the CTA leaves as soon as all its rows
//    are frozen. Shared memory per CTA:
//        16 x 260 floats              weight staging chunk (16.6 KB)
//      + TR x pad(D)                  z
//      + TR x pad(sum_n round4(C_n))  logits / logit gradients
//      + TR x sum_n sum_l pad(w_l)    every hidden activation of every net
//    with pad(w) = round_up(w, 4), + 4 when that is a multiple of 8 (conflict-free A reads).
//    Example: two nets D=64 -> 4 x 256 -> C_n: 8.6 KB per row: TR=8 86 KB, TR=16 155 KB
//    (TR=32 does not fit). TR is picked per device by a small cost model (waves x max(FMA time,
//    L2 weight-streaming time), see pick_tile_rows); the >48 KB dynamic shared memory is opted
//    in once per device and kernel, at the device's maximum (tile_smem_optin). Adam's m and v
//    stay in global memory (workspace).
//
// 2. Generic path for any widths: rows in chunks (workspace <= 1 GiB), per step a sequence of
//    launches on the caller's stream: 64x64x16 shared-memory fp32 GEMMs (256 threads, 4x4
//    register blocks, double-buffered) with fused epilogues (forward: bias or per-row bias +
//    activation; logits masked to active rows; backward: act'() from the saved activation, in
//    place; the first layer's input-gradient GEMM fused with distance gradient + Adam for the
//    active rows), a check kernel (probabilities, freeze, logit gradients) and a one-thread
//    end-of-step kernel. The step number, Adam's bias corrections and the "some row active"
//    flags live in a device Control block, so a sequence of 16 steps is captured as a CUDA
//    graph (on a private stream, thread-local capture mode) and replayed on the caller's
//    stream; between replays one 40-byte D2H copy tells whether any row is still active (and
//    args.should_stop is polled). The executable graph is kept between calls of the same
//    structure (GraphCache: captured again each call, cudaGraphExecUpdate with the new
//    pointers, instantiated only when the update is refused).
//    Graph when the whole batch is one chunk of <= 16384 rows (below that, per-kernel launch
//    cost is comparable to the GPU work of a step); plain launches otherwise, with the same
//    early-exit check every 16 steps. GEMM blocks whose 64 rows are all frozen return at once.
//
// bf16 weights (args.weights_bf16): w_first and every layer weight are __nv_bfloat16; they
// are converted to float when staged into shared memory; everything else is float32.
// Precision: float32 FMA accumulation in ascending k order; Adam with IEEE division and square
// root and no contraction (distance_adam); bias corrections in double like the CPU path.
//
// Registers (ptxas, nvcc 13.0, no spills anywhere): tile kernel TR=8/16/32 about 123/167/225
// (launch bounds 256 threads, 2/1/1 CTAs per SM), generic GEMM 66-88, check kernel 48-56.
//
// Verification status. Written on a machine without a GPU: the sources compile warning-free for
// sm_80 and sm_90, and their logic (indexing, barriers, warp votes, the step/graph control flow)
// was run through a host emulation of these exact sources (each CTA as 256 std::threads with
// std::barrier, graph capture recorded and replayed) against the eager reference: every path,
// tile height and activation matched. Not verified on hardware: the memory model and timing,
// occupancy, the CUDA graph API itself, and the cost-model constants;
// tests/ops/test_optimize_latents_cuda.py checks correctness on a GPU.
//
// Performance expectations (estimates, unmeasured): both paths are fp32 SIMT FMA (no tensor
// cores); bf16 weights halve weight traffic but not FMA work. The tile path streams each CTA's
// weights from L2 every step, so it is compute or L2 bound at TR=16 for 4 x 256 critics.
//
// Tuning fields of OptimizeLatentsArgs (set from lcengine's OptimizeTuning, whose
// LCENGINE_OPTIMIZE_CUDA_* environment variables are read in Python; both the size query and
// the run read them):
//   cuda_path        0 auto | 1 tile | 2 generic    (tile: an error when ineligible)
//   cuda_tile_rows   0 (auto) | 8 | 16 | 32         (an error when it does not fit)
//   cuda_graph       0 auto | 1 on | 2 off          (on: whenever the batch is one chunk)
//   cuda_chunk_rows  rows per generic-path chunk (0: automatic)
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.cuh"
#include "lcengine_ops.h"
#include "optimize_device.cuh"
#include "optimize_tile.cuh"

namespace lcengine {
namespace cuda_detail {
namespace opt {
namespace {

// ---------------------------------------------------------------------------------------------
// Generic path kernels.
// ---------------------------------------------------------------------------------------------

constexpr int kGemmThreads = 256;
constexpr int kGemmM = 64, kGemmN = 64, kGemmK = 16;
constexpr int kGemmLd = kGemmM + 4;  // 68 floats: 16-byte rows

enum Epilogue : int {
  kEpiForwardHidden = 0,  // C = act(acc + bias)                       (all rows of the block)
  kEpiForwardOut = 1,     // C = acc + bias                             (active rows only)
  kEpiBackward = 2,       // C = act'(C) * acc, in place                (all rows of the block)
  kEpiUpdate = 3,         // z = C: distance gradient + Adam            (active rows only)
};

struct GemmParams {
  int64_t M;       // rows of this chunk
  int N, K;        // output columns, reduction depth
  const float* A;  // [M, lda]
  int64_t lda;
  const void* W;  // NT: B(k, n) = W[n * ldw + k];  NN: B(k, n) = W[k * ldw + n]
  int64_t ldw;
  float* C;  // [M, ldc]
  int64_t ldc;
  const float* bias;      // [N] (forward)
  const float* row_bias;  // [M, ld_row_bias] or nullptr: replaces bias (forward)
  int64_t ld_row_bias;
  int act;
  const uint8_t* active;  // [M]
  const Control* ctrl;
  int gate;
  int64_t steps;
  // kEpiUpdate (z = C, ld = ldc = dim)
  float* exp_avg;        // [M, ldc]
  float* exp_avg_sq;     // [M, ldc]
  const float* z_start;  // [M, ldc]
  const float* coef;     // [N]
  AdamConsts adam;
};

// C[M, N] (epilogue) A[M, K] B[K, N]. Block: 64 x 64 outputs, 256 threads of 4 x 4; k in steps
// of 16, the next tile loaded into registers while the current one is multiplied, two shared
// buffers. Blocks whose rows are all frozen return before any work.
template <typename Tw, bool NT, int EPI>
__global__ void __launch_bounds__(kGemmThreads)
    optimize_gemm_kernel(const __grid_constant__ GemmParams p) {
  __shared__ __align__(16) float as[2][kGemmK][kGemmLd];
  __shared__ __align__(16) float bs[2][kGemmK][kGemmLd];
  if (!gate_open(p.ctrl, p.gate, p.steps)) return;
  const int tid = threadIdx.x;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kGemmM;
  const int n0 = static_cast<int>(blockIdx.x) * kGemmN;
  int any = 0;
  if (tid < kGemmM && m0 + tid < p.M) any = p.active[m0 + tid];
  if (!__syncthreads_or(any)) return;

  const Tw* __restrict__ w = static_cast<const Tw*>(p.W);
  float ra[4];
  Tw rb[4];
  // This thread's 4 of the 64 x 16 A elements and 16 x 64 B elements of tile k0.
  auto load = [&](int k0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = tid + kGemmThreads * i;
      const int64_t row = m0 + (e >> 4);
      const int ka = k0 + (e & 15);
      ra[i] = (row < p.M && ka < p.K) ? __ldg(p.A + row * p.lda + ka) : 0.f;
      if (NT) {
        const int n = n0 + (e >> 4);
        rb[i] =
            (n < p.N && ka < p.K) ? __ldg(w + static_cast<int64_t>(n) * p.ldw + ka) : zero_of<Tw>();
      } else {
        const int kb = k0 + (e >> 6);
        const int n = n0 + (e & 63);
        rb[i] =
            (n < p.N && kb < p.K) ? __ldg(w + static_cast<int64_t>(kb) * p.ldw + n) : zero_of<Tw>();
      }
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = tid + kGemmThreads * i;
      as[buf][e & 15][e >> 4] = ra[i];
      if (NT) {
        bs[buf][e & 15][e >> 4] = to_float(rb[i]);
      } else {
        bs[buf][e >> 6][e & 63] = to_float(rb[i]);
      }
    }
  };

  const int ty = tid >> 4, tx = tid & 15;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  }
  const int nk = (p.K + kGemmK - 1) / kGemmK;
  load(0);
  store(0);
  __syncthreads();
  for (int kt = 0; kt < nk; ++kt) {
    const int cur = kt & 1;
    if (kt + 1 < nk) load((kt + 1) * kGemmK);
#pragma unroll
    for (int kk = 0; kk < kGemmK; ++kk) {
      const float4 a = *reinterpret_cast<const float4*>(&as[cur][kk][ty * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&bs[cur][kk][tx * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w};
      const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
    }
    if (kt + 1 < nk) store(cur ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty * 4 + i;
    if (m >= p.M) continue;
    if ((EPI == kEpiForwardOut || EPI == kEpiUpdate) && !p.active[m]) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tx * 4 + j;
      if (n >= p.N) continue;
      float* c = p.C + m * p.ldc + n;
      if (EPI == kEpiForwardHidden) {
        const float b = p.row_bias ? __ldg(p.row_bias + m * p.ld_row_bias + n) : __ldg(p.bias + n);
        *c = activate(acc[i][j] + b, p.act);
      } else if (EPI == kEpiForwardOut) {
        *c = acc[i][j] + __ldg(p.bias + n);
      } else if (EPI == kEpiBackward) {
        *c = activation_grad(acc[i][j], *c, p.act);
      } else {
        const int64_t e = m * p.ldc + n;
        float z = *c, mo = p.exp_avg[e], vo = p.exp_avg_sq[e];
        distance_adam(z, mo, vo, acc[i][j], __ldg(p.z_start + e), __ldg(p.coef + n), p.adam,
                      p.ctrl->step_size, p.ctrl->sqrt_bc2);
        *c = z;
        p.exp_avg[e] = mo;
        p.exp_avg_sq[e] = vo;
      }
    }
  }
}

struct CheckParams {
  int64_t M, steps;
  int C;
  const float* logits;        // [M, C]
  float* glog;                // [M, C]
  const float* target;        // [M, C]
  const float* loss_weight;   // [M, C]
  const int8_t* requirement;  // [M, C]
  const float* upper;         // [C]
  const float* lower;         // [C]
  uint8_t* active;            // [M]
  uint8_t* converged;         // [M]
  int64_t* steps_taken;       // [M]
  Control* ctrl;
  int final_check;
};

constexpr int kCheckThreads = 256;

// One warp per row. Regular step: a satisfied active row is frozen (active = 0, converged = 1,
// steps_taken = t - 1; z and logits are already in place); glog = loss_weight (sigmoid(l) -
// target) for the rows still active, 0 for every other row; live_after = 1 if some row stays
// active. Final check: active rows get converged = satisfied, steps_taken = steps.
__global__ void __launch_bounds__(kCheckThreads)
    optimize_check_kernel(const __grid_constant__ CheckParams p) {
  if (!gate_open(p.ctrl, p.final_check ? kGateFinal : kGateStep, p.steps)) return;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (kCheckThreads / 32);
  const int C = p.C;
  const int64_t t = p.ctrl->step;
  bool stays = false;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (kCheckThreads / 32) + (threadIdx.x >> 5);
       row < p.M; row += warps) {
    const float* l = p.logits + row * C;
    float* g = p.glog + row * C;
    if (!p.active[row]) {
      if (!p.final_check) {
        for (int c = lane; c < C; c += 32) g[c] = 0.f;
      }
      continue;
    }
    // Warp-uniform trip count around the vote (a lane-dependent loop bound made ptxas spill).
    bool ok = true;
    for (int c0 = 0; c0 < C; c0 += 32) {
      const int c = c0 + lane;
      if (c >= C) continue;
      ok = ok && column_satisfied(l[c], p.requirement[row * C + c], p.upper, p.lower, c);
    }
    const bool sat = __all_sync(0xffffffffu, ok);
    if (p.final_check) {
      if (lane == 0) {
        p.converged[row] = sat ? 1 : 0;
        p.steps_taken[row] = p.steps;
      }
      continue;
    }
    for (int c = lane; c < C; c += 32) {
      g[c] =
          sat ? 0.f : p.loss_weight[row * C + c] * (stable_sigmoid(l[c]) - p.target[row * C + c]);
    }
    __syncwarp();
    if (lane == 0) {
      if (sat) {
        p.active[row] = 0;
        p.converged[row] = 1;
        p.steps_taken[row] = t - 1;
      } else {
        stays = true;
      }
    }
  }
  if (stays) p.ctrl->live_after = 1;  // every writer writes 1
}

// Advances the step (after a step that ran) and prepares its Adam scalars.
__global__ void optimize_end_step_kernel(Control* c, int64_t steps, double lr, double beta1,
                                         double beta2) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  if (c->live && c->step <= steps) {
    c->live = c->live_after;
    c->step += 1;
    c->b1t *= beta1;
    c->b2t *= beta2;
    const AdamStep sc = adam_step(lr, c->b1t, c->b2t);
    c->step_size = sc.step_size;
    c->sqrt_bc2 = sc.sqrt_bc2;
  }
  c->live_after = 0;
}

struct InitParams {
  int64_t M;
  int dim;
  const float* z_start;  // [M, dim]
  float* z;              // [M, dim] (z_out)
  float* exp_avg;
  float* exp_avg_sq;
  uint8_t* active;
  uint8_t* converged;
  int64_t* steps_taken;
  float* coef;                // [dim]
  const float* inv_sigma_sq;  // [dim]
  double w_dist, lr, beta1, beta2;
  Control* ctrl;
};

// Start of a chunk: z = z_start, m = v = 0, every row active, Control at step 1.
__global__ void optimize_init_kernel(const __grid_constant__ InitParams p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t n = p.M * p.dim;
  for (int64_t i = tid; i < n; i += stride) {
    p.z[i] = p.z_start[i];
    p.exp_avg[i] = 0.f;
    p.exp_avg_sq[i] = 0.f;
  }
  for (int64_t r = tid; r < p.M; r += stride) {
    p.active[r] = 1;
    p.converged[r] = 0;
    p.steps_taken[r] = 0;
  }
  for (int64_t d = tid; d < p.dim; d += stride) {
    p.coef[d] = distance_coef(p.w_dist, p.dim, p.inv_sigma_sq[d]);
  }
  if (tid == 0) {
    Control c;
    c.b1t = p.beta1;  // 1.0 * beta1, as the CPU path starts
    c.b2t = p.beta2;
    c.step = 1;
    c.live = 1;
    c.live_after = 0;
    const AdamStep sc = adam_step(p.lr, c.b1t, c.b2t);
    c.step_size = sc.step_size;
    c.sqrt_bc2 = sc.sqrt_bc2;
    *p.ctrl = c;
  }
}

// ---------------------------------------------------------------------------------------------
// Host: structure of the problem, plans, workspace.
// ---------------------------------------------------------------------------------------------

constexpr int64_t kAlign = 256;
constexpr size_t kTileSmemPortable = 99 * 1024;  // smallest opt-in limit of sm_80+ (sm_86/89/120)
constexpr int64_t kGraphMaxRows = 16384;
constexpr int kStepsPerCheck = 16;  // steps per graph replay / per host check
constexpr int64_t kGenericWorkspaceBudget = int64_t{1} << 30;
constexpr int64_t kMaxChunkRows = int64_t{65535} * kGemmM;  // gridDim.y limit
// Codes of OptimizeLatentsArgs::cuda_path and cuda_graph (0 is "auto" for both).
constexpr int32_t kCudaPathTile = 1, kCudaPathGeneric = 2;
constexpr int32_t kCudaGraphOn = 1, kCudaGraphOff = 2;

int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }
int round4(int64_t w) { return static_cast<int>(align_up(w, 4)); }
// Row stride of a shared A operand: a multiple of 4 floats that is 4 mod 8 (see tile header).
int pad_ld(int64_t w) {
  int ld = round4(w);
  if (ld % 8 == 0) ld += 4;
  return ld;
}

struct NetView {
  int act, layers;
  const int64_t* widths;
  const float* const* weights;
  const float* const* biases;
  int64_t first_offset, output_offset;
};

struct Problem {
  int64_t rows, dim, h1, c, rbw;
  int total_layers;
  int64_t max_width;
  int64_t hidden_per_row;  // generic path: sum of widths[l], l = 2 .. L-1, over nets
  std::vector<NetView> nets;
};

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("optimize_latents_cuda: " + what);
}

// The kernels' view of valid arguments (check_optimize_args first).
Problem analyze(const OptimizeLatentsArgs& a) {
  check_optimize_args(a, "optimize_latents_cuda");
  Problem p;
  p.rows = a.rows;
  p.dim = a.dim;
  p.h1 = a.first_width;
  p.c = a.num_outputs;
  p.rbw = a.row_bias ? a.row_bias_width : 0;
  p.total_layers = 0;
  p.max_width = a.dim;
  p.hidden_per_row = 0;
  int64_t first = 0, out = 0;
  for (int32_t n = 0; n < a.num_nets; ++n) {
    const OptimizeNet& net = a.nets[n];
    for (int32_t l = 1; l <= net.num_layers; ++l)
      p.max_width = std::max(p.max_width, net.widths[l]);
    for (int32_t l = 2; l < net.num_layers; ++l) p.hidden_per_row += net.widths[l];
    p.nets.push_back(NetView{static_cast<int>(net.activation), net.num_layers, net.widths,
                             net.weights, net.biases, first, out});
    p.total_layers += net.num_layers;
    first += net.widths[1];
    out += net.widths[net.num_layers];
  }
  return p;
}

// Shared memory layout of a tile of TR rows (floats). Fills `tp` when given.
size_t tile_layout(const OptimizeLatentsArgs& a, const Problem& pr, int tr, TileParams* tp) {
  int off = kChunkK * kChunkLd;  // the staging chunk sits at offset 0
  const int ldz = pad_ld(pr.dim);
  const int z_off = off;
  off += tr * ldz;
  int logit_cols = 0;
  for (const NetView& n : pr.nets) logit_cols += round4(n.widths[n.layers]);
  const int ldl = pad_ld(logit_cols);
  const int logit_off = off;
  off += tr * ldl;
  const int flag_off = off;
  off += round4(tr);
  const int pos_off = off;
  off += round4(pr.c);
  int li = 0, seg = 0;
  for (size_t ni = 0; ni < pr.nets.size(); ++ni) {
    const NetView& n = pr.nets[ni];
    int in_off = z_off, in_ld = ldz;
    for (int l = 0; l < n.layers; ++l) {
      const bool last = l == n.layers - 1;
      const int k = static_cast<int>(n.widths[l]), nout = static_cast<int>(n.widths[l + 1]);
      int out_off, out_ld;
      if (last) {
        out_off = logit_off + seg;
        out_ld = ldl;
        seg += round4(nout);
      } else {
        out_off = off;
        out_ld = pad_ld(nout);
        off += tr * out_ld;
      }
      if (tp && li < kTileMaxLayers) {
        TileLayer& L = tp->layers[li];
        L.K = k;
        L.N = nout;
        L.in_off = in_off;
        L.in_ld = in_ld;
        L.out_off = out_off;
        L.out_ld = out_ld;
        L.act = n.act;
        L.flags = (l == 0 ? kLayerFirst : 0) | (last ? kLayerLast : 0);
        if (l == 0) {
          const size_t wsize = a.weights_bf16 ? sizeof(__nv_bfloat16) : sizeof(float);
          L.w = static_cast<const char*>(static_cast<const void*>(a.w_first)) +
                static_cast<size_t>(n.first_offset) * static_cast<size_t>(pr.dim) * wsize;
          if (ni == 0 && a.row_bias) {
            L.flags |= kLayerRowBias;
            L.bias = nullptr;
          } else {
            L.bias = a.b_first + n.first_offset;
          }
        } else {
          L.w = n.weights[l];
          L.bias = n.biases[l];
        }
      }
      ++li;
      in_off = out_off;
      in_ld = out_ld;
    }
  }
  if (tp) {
    tp->z_off = z_off;
    tp->ldz = ldz;
    tp->logit_off = logit_off;
    tp->ldl = ldl;
    tp->flag_off = flag_off;
    tp->pos_off = pos_off;
    tp->smem_floats = off;
  }
  return static_cast<size_t>(off) * sizeof(float);
}

// Why the tile path cannot run this problem ("" if it can).
std::string tile_ineligible(const OptimizeLatentsArgs& a, const Problem& pr) {
  if (pr.max_width > kTileMaxWidth)
    return "D and every layer width must be <= " + std::to_string(kTileMaxWidth);
  if (pr.total_layers > kTileMaxLayers)
    return "at most " + std::to_string(kTileMaxLayers) + " layers over all nets";
  if (tile_layout(a, pr, 8, nullptr) > kTileSmemPortable)
    return "a tile of 8 rows needs more than 99 KiB of shared memory";
  return "";
}

enum class Path { kTile, kGeneric };

struct Plan {
  Path path;
  int64_t chunk_rows;  // generic
  // workspace offsets (bytes)
  int64_t off_m, off_v, off_act1, off_hidden, off_glog, off_active, off_ctrl, off_coef;
  int64_t bytes;
};

Plan make_plan(const OptimizeLatentsArgs& a, const Problem& pr) {
  Plan plan{};
  const std::string why = tile_ineligible(a, pr);
  if (a.cuda_path == kCudaPathTile && !why.empty())
    fail("the row-tile path cannot run this problem (cuda_path=tile): " + why);
  plan.path = (a.cuda_path == kCudaPathGeneric || !why.empty()) ? Path::kGeneric : Path::kTile;
  const int64_t f = sizeof(float);
  int64_t off = 0;
  if (plan.path == Path::kTile) {
    plan.chunk_rows = pr.rows;
    plan.off_m = off;
    off = align_up(off + pr.rows * pr.dim * f, kAlign);
    plan.off_v = off;
    off = align_up(off + pr.rows * pr.dim * f, kAlign);
    plan.bytes = std::max<int64_t>(off, kAlign);
    return plan;
  }
  const int64_t per_row = f * (2 * pr.dim + pr.h1 + pr.hidden_per_row + pr.c) + 1;
  int64_t chunk = a.cuda_chunk_rows;
  if (chunk <= 0) {
    chunk = std::max<int64_t>(kGemmM, kGenericWorkspaceBudget / per_row / kGemmM * kGemmM);
  }
  chunk = std::max<int64_t>(1, std::min({chunk, pr.rows, kMaxChunkRows}));
  plan.chunk_rows = chunk;
  plan.off_m = off;
  off = align_up(off + chunk * pr.dim * f, kAlign);
  plan.off_v = off;
  off = align_up(off + chunk * pr.dim * f, kAlign);
  plan.off_act1 = off;
  off = align_up(off + chunk * pr.h1 * f, kAlign);
  plan.off_hidden = off;
  off = align_up(off + chunk * pr.hidden_per_row * f, kAlign);
  plan.off_glog = off;
  off = align_up(off + chunk * pr.c * f, kAlign);
  plan.off_active = off;
  off = align_up(off + chunk, kAlign);
  plan.off_ctrl = off;
  off = align_up(off + static_cast<int64_t>(sizeof(Control)), kAlign);
  plan.off_coef = off;
  off = align_up(off + pr.dim * f, kAlign);
  plan.bytes = off;
  return plan;
}

AdamConsts adam_consts(const OptimizeLatentsArgs& a) {
  return AdamConsts{static_cast<float>(a.beta1), static_cast<float>(1.0 - a.beta1),
                    static_cast<float>(a.beta2), static_cast<float>(1.0 - a.beta2),
                    static_cast<float>(a.eps)};
}

// ---------------------------------------------------------------------------------------------
// Host: tile path.
// ---------------------------------------------------------------------------------------------

// (pick_tile_rows has opted the kernel in to the device's maximum dynamic shared memory.)
template <int RM, typename Tw>
void launch_tile(const TileParams& tp, size_t smem, int64_t ctas, cudaStream_t s) {
  optimize_tile_kernel<RM, Tw><<<static_cast<unsigned>(ctas), kTileThreads, smem, s>>>(tp);
  check_launch("optimize_tile_kernel");
}

// Opts optimize_tile_kernel<RM, Tw> in to `optin` bytes of dynamic shared memory (the device's
// opt-in maximum) on device `dev`, once per (device, instantiation). Never a per-call size: host
// threads run concurrently (the GIL is released), and one lowering the limit between another's
// tile choice and launch would fail that launch. Two threads that both find the flag unset set
// the same value, which is harmless; the flag is published only after the call succeeded.
template <int RM, typename Tw>
void tile_smem_optin(int dev, int optin) {
  constexpr int kMaxDevices = 64;
  static std::atomic<bool> done[kMaxDevices];  // false = not set yet
  const bool cached = dev >= 0 && dev < kMaxDevices;
  if (cached && done[dev].load(std::memory_order_acquire)) return;
  cuda_check(cudaFuncSetAttribute(optimize_tile_kernel<RM, Tw>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, optin),
             "cudaFuncSetAttribute(optimize_tile_kernel)");
  if (cached) done[dev].store(true, std::memory_order_release);
}

// Resident CTAs per SM of optimize_tile_kernel<RM, Tw> with `smem` bytes of dynamic shared
// memory (smem <= optin); also makes sure the kernel may be launched with it.
template <int RM, typename Tw>
int tile_occupancy(size_t smem, int dev, int optin) {
  tile_smem_optin<RM, Tw>(dev, optin);
  int blocks = 0;
  cuda_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, optimize_tile_kernel<RM, Tw>,
                                                           kTileThreads, smem),
             "cudaOccupancyMaxActiveBlocksPerMultiprocessor(optimize_tile_kernel)");
  return blocks;
}

template <typename Tw>
int tile_occupancy_rm(int tr, size_t smem, int dev, int optin) {
  if (tr == 8) return tile_occupancy<2, Tw>(smem, dev, optin);
  if (tr == 16) return tile_occupancy<4, Tw>(smem, dev, optin);
  return tile_occupancy<8, Tw>(smem, dev, optin);
}

// Rows per tile: the candidate (32, 16, 8) that fits and minimizes
//   waves * resident CTAs per SM * max(TR / 128, weight bytes / L2 bytes per clock per SM)
// i.e. per-wave time bound by FP32 FMAs (128 per clock per SM, proportional to the rows of the
// resident CTAs) or by streaming every resident CTA's weights from L2; both per MAC of weight
// per step. Rough H100 constants, not measured here. Ties go to the larger tile.
template <typename Tw>
int pick_tile_rows(const OptimizeLatentsArgs& a, const Problem& pr, int forced) {
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  int optin = 0;
  cuda_check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
             "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
  const int sms = current_sm_count();
  int best = 0;
  double best_cost = 0.0;
  for (int tr : {32, 16, 8}) {
    if (forced && tr != forced) continue;
    const size_t smem = tile_layout(a, pr, tr, nullptr);
    if (smem > static_cast<size_t>(optin)) continue;
    const int occ = tile_occupancy_rm<Tw>(tr, smem, dev, optin);
    if (occ < 1) continue;
    const int64_t ctas = ceil_div(pr.rows, tr);
    const int64_t resident = std::min<int64_t>(ctas, static_cast<int64_t>(occ) * sms);
    const int64_t waves = ceil_div(ctas, static_cast<int64_t>(occ) * sms);
    const double per_sm = static_cast<double>(ceil_div(resident, sms));
    // L2 share per SM: ~24 B/clock when every SM streams, up to ~64 B/clock for a few SMs.
    const double active_sms = static_cast<double>(std::min<int64_t>(resident, sms));
    const double l2_per_sm = std::min(64.0, 24.0 * sms / active_sms);
    const double cost = static_cast<double>(waves) * per_sm *
                        std::max(tr / 128.0, static_cast<double>(sizeof(Tw)) / l2_per_sm);
    if (best == 0 || cost < best_cost) {
      best = tr;
      best_cost = cost;
    }
  }
  if (best == 0) {
    if (forced)
      fail("cuda_tile_rows=" + std::to_string(forced) +
           " does not fit this device's shared memory");
    throw std::runtime_error(
        "optimize_latents_cuda: no row tile fits this device's shared "
        "memory (opt-in limit " +
        std::to_string(optin) + " bytes)");
  }
  return best;
}

template <typename Tw>
void run_tile(const OptimizeLatentsArgs& a, const Problem& pr, const Plan& plan, char* ws,
              cudaStream_t s) {
  const int tr = pick_tile_rows<Tw>(a, pr, a.cuda_tile_rows);  // 0, 8, 16 or 32 (checked)
  TileParams tp{};
  const size_t smem = tile_layout(a, pr, tr, &tp);
  tp.rows = pr.rows;
  tp.steps = a.steps;
  tp.dim = static_cast<int>(pr.dim);
  tp.num_outputs = static_cast<int>(pr.c);
  tp.num_layers = pr.total_layers;
  tp.row_bias_width = static_cast<int>(pr.rbw);
  tp.row_bias = a.row_bias;
  tp.target = a.target;
  tp.loss_weight = a.loss_weight;
  tp.requirement = a.requirement;
  tp.upper = a.upper;
  tp.lower = a.lower;
  tp.inv_sigma_sq = a.inv_sigma_sq;
  tp.z_start = a.z_start;
  tp.z_out = a.z_out;
  tp.converged = a.converged;
  tp.steps_taken = a.steps_taken;
  tp.logits_out = a.logits_out;
  tp.exp_avg = reinterpret_cast<float*>(ws + plan.off_m);
  tp.exp_avg_sq = reinterpret_cast<float*>(ws + plan.off_v);
  tp.w_dist = static_cast<double>(a.w_dist);
  tp.lr = a.lr;
  tp.beta1 = a.beta1;
  tp.beta2 = a.beta2;
  tp.adam = adam_consts(a);
  const int64_t ctas = ceil_div(pr.rows, tr);
  if (ctas > 0x7fffffff) fail("too many rows");
  if (tr == 8) {
    launch_tile<2, Tw>(tp, smem, ctas, s);
  } else if (tr == 16) {
    launch_tile<4, Tw>(tp, smem, ctas, s);
  } else {
    launch_tile<8, Tw>(tp, smem, ctas, s);
  }
}

// ---------------------------------------------------------------------------------------------
// Host: generic path.
// ---------------------------------------------------------------------------------------------

// Everything one chunk's launches need.
struct Chunk {
  int64_t M;
  const float* z_start;
  float* z;       // z_out rows of the chunk
  float* logits;  // logits_out rows of the chunk
  const float* row_bias;
  const float* target;
  const float* loss_weight;
  const int8_t* requirement;
  uint8_t* converged;
  int64_t* steps_taken;
  float* exp_avg;
  float* exp_avg_sq;
  float* act1;                 // [M, H1]
  std::vector<float*> hidden;  // per net, per layer l (index l): [M, widths[l]] for l >= 2
  std::vector<size_t> hidden_base;
  float* glog;  // [M, C]
  uint8_t* active;
  Control* ctrl;
  float* coef;
};

template <typename Tw>
class GenericRunner {
 public:
  GenericRunner(const OptimizeLatentsArgs& a, const Problem& pr) : a_(a), pr_(pr) {}

  // Buffer of activation a_l (l >= 1) of net n and its row stride.
  float* act(const Chunk& ch, size_t n, int l, int64_t* ld) const {
    if (l == 1) {
      *ld = pr_.h1;
      return ch.act1 + pr_.nets[n].first_offset;
    }
    *ld = pr_.nets[n].widths[l];
    return ch.hidden[ch.hidden_base[n] + static_cast<size_t>(l)];
  }

  const Tw* first_weights(size_t n) const {
    return static_cast<const Tw*>(static_cast<const void*>(a_.w_first)) +
           pr_.nets[n].first_offset * pr_.dim;
  }

  GemmParams base(const Chunk& ch, int gate) const {
    GemmParams g{};
    g.M = ch.M;
    g.active = ch.active;
    g.ctrl = ch.ctrl;
    g.gate = gate;
    g.steps = a_.steps;
    return g;
  }

  template <bool NT, int EPI>
  void gemm(const GemmParams& g, cudaStream_t s) const {
    const dim3 grid(static_cast<unsigned>(ceil_div(g.N, kGemmN)),
                    static_cast<unsigned>(ceil_div(g.M, kGemmM)));
    optimize_gemm_kernel<Tw, NT, EPI><<<grid, kGemmThreads, 0, s>>>(g);
    check_launch(EPI == kEpiForwardHidden ? "optimize_gemm_kernel(forward)"
                 : EPI == kEpiForwardOut  ? "optimize_gemm_kernel(forward, output layer)"
                 : EPI == kEpiBackward    ? "optimize_gemm_kernel(backward)"
                                          : "optimize_gemm_kernel(z-gradient + Adam)");
  }

  void forward(const Chunk& ch, int gate, cudaStream_t s) const {
    for (size_t n = 0; n < pr_.nets.size(); ++n) {
      const NetView& net = pr_.nets[n];
      {
        GemmParams g = base(ch, gate);
        g.N = static_cast<int>(net.widths[1]);
        g.K = static_cast<int>(pr_.dim);
        g.A = ch.z;
        g.lda = pr_.dim;
        g.W = first_weights(n);
        g.ldw = pr_.dim;
        g.C = act(ch, n, 1, &g.ldc);
        g.bias = a_.b_first + net.first_offset;
        if (n == 0 && ch.row_bias) {
          g.row_bias = ch.row_bias;
          g.ld_row_bias = pr_.rbw;
        }
        g.act = net.act;
        gemm<true, kEpiForwardHidden>(g, s);
      }
      for (int l = 1; l < net.layers; ++l) {
        const bool last = l == net.layers - 1;
        GemmParams g = base(ch, gate);
        g.N = static_cast<int>(net.widths[l + 1]);
        g.K = static_cast<int>(net.widths[l]);
        g.A = act(ch, n, l, &g.lda);
        g.W = net.weights[l];
        g.ldw = net.widths[l];
        g.bias = net.biases[l];
        g.act = net.act;
        if (last) {
          g.C = ch.logits + net.output_offset;
          g.ldc = pr_.c;
          gemm<true, kEpiForwardOut>(g, s);
        } else {
          g.C = act(ch, n, l + 1, &g.ldc);
          gemm<true, kEpiForwardHidden>(g, s);
        }
      }
    }
  }

  void check(const Chunk& ch, bool final_check, cudaStream_t s) const {
    CheckParams c{};
    c.M = ch.M;
    c.steps = a_.steps;
    c.C = static_cast<int>(pr_.c);
    c.logits = ch.logits;
    c.glog = ch.glog;
    c.target = ch.target;
    c.loss_weight = ch.loss_weight;
    c.requirement = ch.requirement;
    c.upper = a_.upper;
    c.lower = a_.lower;
    c.active = ch.active;
    c.converged = ch.converged;
    c.steps_taken = ch.steps_taken;
    c.ctrl = ch.ctrl;
    c.final_check = final_check ? 1 : 0;
    const int64_t blocks = std::min<int64_t>(ceil_div(ch.M, kCheckThreads / 32),
                                             static_cast<int64_t>(current_sm_count()) * 8);
    optimize_check_kernel<<<static_cast<unsigned>(std::max<int64_t>(blocks, 1)), kCheckThreads, 0,
                            s>>>(c);
    check_launch("optimize_check_kernel");
  }

  void backward_and_update(const Chunk& ch, cudaStream_t s) const {
    for (size_t n = 0; n < pr_.nets.size(); ++n) {
      const NetView& net = pr_.nets[n];
      for (int l = net.layers - 1; l >= 1; --l) {
        const bool last = l == net.layers - 1;
        GemmParams g = base(ch, kGateUpdate);
        g.N = static_cast<int>(net.widths[l]);
        g.K = static_cast<int>(net.widths[l + 1]);
        if (last) {
          g.A = ch.glog + net.output_offset;
          g.lda = pr_.c;
        } else {
          g.A = act(ch, n, l + 1, &g.lda);
        }
        g.W = net.weights[l];
        g.ldw = net.widths[l];
        g.C = act(ch, n, l, &g.ldc);
        g.act = net.act;
        gemm<false, kEpiBackward>(g, s);
      }
    }
    GemmParams g = base(ch, kGateUpdate);
    g.N = static_cast<int>(pr_.dim);
    g.K = static_cast<int>(pr_.h1);
    g.A = ch.act1;
    g.lda = pr_.h1;
    g.W = a_.w_first;
    g.ldw = pr_.dim;
    g.C = ch.z;
    g.ldc = pr_.dim;
    g.exp_avg = ch.exp_avg;
    g.exp_avg_sq = ch.exp_avg_sq;
    g.z_start = ch.z_start;
    g.coef = ch.coef;
    g.adam = adam_consts(a_);
    gemm<false, kEpiUpdate>(g, s);
  }

  void step(const Chunk& ch, cudaStream_t s) const {
    forward(ch, kGateStep, s);
    check(ch, false, s);
    backward_and_update(ch, s);
    optimize_end_step_kernel<<<1, 32, 0, s>>>(ch.ctrl, a_.steps, a_.lr, a_.beta1, a_.beta2);
    check_launch("optimize_end_step_kernel");
  }

  void init(const Chunk& ch, cudaStream_t s) const {
    InitParams ip{};
    ip.M = ch.M;
    ip.dim = static_cast<int>(pr_.dim);
    ip.z_start = ch.z_start;
    ip.z = ch.z;
    ip.exp_avg = ch.exp_avg;
    ip.exp_avg_sq = ch.exp_avg_sq;
    ip.active = ch.active;
    ip.converged = ch.converged;
    ip.steps_taken = ch.steps_taken;
    ip.coef = ch.coef;
    ip.inv_sigma_sq = a_.inv_sigma_sq;
    ip.w_dist = static_cast<double>(a_.w_dist);
    ip.lr = a_.lr;
    ip.beta1 = a_.beta1;
    ip.beta2 = a_.beta2;
    ip.ctrl = ch.ctrl;
    const unsigned blocks = grid_size(ceil_div(ch.M * pr_.dim, 256), 256);
    optimize_init_kernel<<<blocks, 256, 0, s>>>(ip);
    check_launch("optimize_init_kernel");
  }

 private:
  const OptimizeLatentsArgs& a_;
  const Problem& pr_;
};

// ---------------------------------------------------------------------------------------------
// Graph executables kept between calls. A call in graph mode captures its step sequence again
// (cheap: host-side recording, nothing runs) on a private stream in thread-local capture mode,
// then updates a cached executable of the same structure with cudaGraphExecUpdate (kernel
// arguments, i.e. the pointers, change between calls; updates apply to later launches) and
// instantiates only when there is none or the update refuses the graph (a topology change). An
// entry is taken out of the cache for the duration of a call (graph objects are not thread-safe)
// and put back after it; at most kGraphCacheEntries are kept (least recently used dropped). The
// cache is never destroyed at exit: CUDA calls from static destructors may run after the runtime
// has unloaded, and the driver frees everything with the context
// (optimize_latents_cuda_release_graphs frees them on request).
// ---------------------------------------------------------------------------------------------
constexpr size_t kGraphCacheEntries = 8;

struct GraphExecEntry {
  int device = -1;
  std::string key;
  cudaStream_t capture_stream = nullptr;
  cudaGraphExec_t exec = nullptr;
  GraphExecEntry() = default;
  GraphExecEntry(const GraphExecEntry&) = delete;
  GraphExecEntry& operator=(const GraphExecEntry&) = delete;
  ~GraphExecEntry() {
    // An executable destroyed while a launch is in flight is freed when it completes; nothing
    // is ever enqueued on the capture stream itself.
    if (exec) (void)cudaGraphExecDestroy(exec);
    if (capture_stream) (void)cudaStreamDestroy(capture_stream);
    (void)cudaGetLastError();
  }
};

class GraphCache {
 public:
  // The most recently used entry of (device, key), removed from the cache; nullptr if none.
  std::unique_ptr<GraphExecEntry> take(int device, const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if ((*it)->device == device && (*it)->key == key) {
        std::unique_ptr<GraphExecEntry> e = std::move(*it);
        entries_.erase(it);
        return e;
      }
    }
    return nullptr;
  }
  void put(std::unique_ptr<GraphExecEntry> e) {
    std::unique_ptr<GraphExecEntry> evicted;  // destroyed after the lock is released
    {
      std::lock_guard<std::mutex> lock(mu_);
      entries_.push_front(std::move(e));
      if (entries_.size() > kGraphCacheEntries) {
        evicted = std::move(entries_.back());
        entries_.pop_back();
      }
    }
  }
  int clear() {
    std::list<std::unique_ptr<GraphExecEntry>> gone;
    {
      std::lock_guard<std::mutex> lock(mu_);
      gone.swap(entries_);
    }
    return static_cast<int>(gone.size());
  }

 private:
  std::mutex mu_;
  std::list<std::unique_ptr<GraphExecEntry>> entries_;  // most recently used first
};

GraphCache& graph_cache() {
  static GraphCache* cache = new GraphCache;  // never destroyed (see above)
  return *cache;
}

// What decides the captured launch sequence (and so the graph's topology): weight type, rows,
// sizes, every net's widths, steps per replay. Same key, same topology; anything else only
// changes kernel parameters. A wrong guess costs a re-instantiation, never a wrong result:
// cudaGraphExecUpdate checks the topology itself.
template <typename Tw>
std::string graph_key(const Problem& pr, int64_t m, int64_t per_call) {
  std::string k = std::to_string(sizeof(Tw)) + ":" + std::to_string(m) + ":" +
                  std::to_string(pr.dim) + ":" + std::to_string(pr.rbw != 0) + ":" +
                  std::to_string(per_call);
  for (const NetView& n : pr.nets) {
    k += "|";
    for (int l = 0; l <= n.layers; ++l) k += std::to_string(n.widths[l]) + ",";
  }
  return k;
}

// Ends a capture that an exception interrupted, so the stream is usable again.
struct CaptureGuard {
  cudaStream_t stream;
  bool active = true;
  ~CaptureGuard() {
    if (!active) return;
    cudaGraph_t broken = nullptr;
    (void)cudaStreamEndCapture(stream, &broken);
    if (broken) (void)cudaGraphDestroy(broken);
    (void)cudaGetLastError();
  }
};

struct GraphGuard {
  cudaGraph_t graph = nullptr;
  ~GraphGuard() {
    if (graph) (void)cudaGraphDestroy(graph);
  }
};

// The executable of `per_call` steps of chunk `ch`, from the cache when one of this structure
// exists (updated with this call's arguments), else instantiated.
template <typename Tw>
std::unique_ptr<GraphExecEntry> graph_exec_for(const GenericRunner<Tw>& runner, const Chunk& ch,
                                               const Problem& pr, int64_t per_call) {
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  const std::string key = graph_key<Tw>(pr, ch.M, per_call);
  std::unique_ptr<GraphExecEntry> e = graph_cache().take(dev, key);
  if (!e) {
    e = std::make_unique<GraphExecEntry>();
    e->device = dev;
    e->key = key;
    cuda_check(cudaStreamCreateWithFlags(&e->capture_stream, cudaStreamNonBlocking),
               "cudaStreamCreateWithFlags");
  }
  GraphGuard g;
  {
    cuda_check(cudaStreamBeginCapture(e->capture_stream, cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture");
    CaptureGuard capture{e->capture_stream};
    for (int64_t k = 0; k < per_call; ++k) runner.step(ch, e->capture_stream);
    capture.active = false;
    cuda_check(cudaStreamEndCapture(e->capture_stream, &g.graph), "cudaStreamEndCapture");
  }
  if (e->exec) {
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(e->exec, g.graph, &info) != cudaSuccess) {
      (void)cudaGetLastError();  // cudaErrorGraphExecUpdateFailure: instantiate afresh
      (void)cudaGraphExecDestroy(e->exec);
      e->exec = nullptr;
    }
  }
  if (!e->exec) cuda_check(cudaGraphInstantiate(&e->exec, g.graph, 0), "cudaGraphInstantiate");
  return e;
}

bool use_graph(const OptimizeLatentsArgs& a, const Problem& pr, const Plan& plan) {
  if (plan.chunk_rows < pr.rows) return false;  // one graph per chunk would be re-captured
  if (a.cuda_graph == kCudaGraphOff) return false;
  if (a.cuda_graph == kCudaGraphOn) return true;
  return pr.rows <= kGraphMaxRows;
}

template <typename Tw>
void run_generic(const OptimizeLatentsArgs& a, const Problem& pr, const Plan& plan, char* ws,
                 cudaStream_t s) {
  GenericRunner<Tw> runner(a, pr);
  const bool graph_mode = use_graph(a, pr, plan);
  const int64_t per_call = std::min<int64_t>(kStepsPerCheck, a.steps);
  Control* ctrl = reinterpret_cast<Control*>(ws + plan.off_ctrl);
  for (int64_t r0 = 0; r0 < pr.rows; r0 += plan.chunk_rows) {
    Chunk ch;
    ch.M = std::min(plan.chunk_rows, pr.rows - r0);
    ch.z_start = a.z_start + r0 * pr.dim;
    ch.z = a.z_out + r0 * pr.dim;
    ch.logits = a.logits_out + r0 * pr.c;
    ch.row_bias = a.row_bias ? a.row_bias + r0 * pr.rbw : nullptr;
    ch.target = a.target + r0 * pr.c;
    ch.loss_weight = a.loss_weight + r0 * pr.c;
    ch.requirement = a.requirement + r0 * pr.c;
    ch.converged = a.converged + r0;
    ch.steps_taken = a.steps_taken + r0;
    ch.exp_avg = reinterpret_cast<float*>(ws + plan.off_m);
    ch.exp_avg_sq = reinterpret_cast<float*>(ws + plan.off_v);
    ch.act1 = reinterpret_cast<float*>(ws + plan.off_act1);
    float* hidden = reinterpret_cast<float*>(ws + plan.off_hidden);
    for (const NetView& net : pr.nets) {
      ch.hidden_base.push_back(ch.hidden.size());
      for (int l = 0; l < net.layers; ++l) {
        if (l >= 2) {
          ch.hidden.push_back(hidden);
          hidden += ch.M * net.widths[l];
        } else {
          ch.hidden.push_back(nullptr);
        }
      }
    }
    ch.glog = reinterpret_cast<float*>(ws + plan.off_glog);
    ch.active = reinterpret_cast<uint8_t*>(ws + plan.off_active);
    ch.ctrl = ctrl;
    ch.coef = reinterpret_cast<float*>(ws + plan.off_coef);

    runner.init(ch, s);
    std::unique_ptr<GraphExecEntry> g;  // dropped (not cached) if the call fails
    if (graph_mode) g = graph_exec_for(runner, ch, pr, per_call);
    int64_t done = 0;
    while (done < a.steps) {
      if (graph_mode) {
        cuda_check(cudaGraphLaunch(g->exec, s), "cudaGraphLaunch");
        done += per_call;  // steps past `steps` are no-ops (gated on the device)
      } else {
        const int64_t n = std::min<int64_t>(per_call, a.steps - done);
        for (int64_t k = 0; k < n; ++k) runner.step(ch, s);
        done += n;
      }
      if (done < a.steps) {
        Control host{};
        cuda_check(cudaMemcpyAsync(&host, ctrl, sizeof(Control), cudaMemcpyDeviceToHost, s),
                   "cudaMemcpyAsync(control block)");
        cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize (optimizer step loop)");
        if (!host.live) break;
        // Nothing is in flight here: stopping leaves the stream idle.
        if (a.should_stop && a.should_stop(a.should_stop_ctx)) throw OptimizeInterrupted();
      }
    }
    // Rows that used every step: one more check at the final latents (no-op when none is left).
    runner.forward(ch, kGateFinal, s);
    runner.check(ch, true, s);
    // The last replay may still be in flight: the next call that takes this entry launches on
    // its own stream, and launches of one executable are ordered after its earlier launches.
    if (g) graph_cache().put(std::move(g));
  }
}

}  // namespace
}  // namespace opt
}  // namespace cuda_detail

size_t optimize_latents_cuda_workspace_bytes(const OptimizeLatentsArgs& args) {
  using namespace cuda_detail::opt;
  if (args.rows <= 0) return 0;
  const Problem pr = analyze(args);
  return static_cast<size_t>(make_plan(args, pr).bytes);
}

void optimize_latents_cuda(const OptimizeLatentsArgs& args, void* workspace, size_t workspace_bytes,
                           void* stream) {
  using namespace cuda_detail::opt;
  if (args.rows <= 0) return;
  const Problem pr = analyze(args);
  const Plan plan = make_plan(args, pr);
  if (workspace_bytes < static_cast<size_t>(plan.bytes) || (!workspace && plan.bytes > 0))
    fail("workspace of " + std::to_string(workspace_bytes) + " bytes, " +
         std::to_string(plan.bytes) + " needed (optimize_latents_cuda_workspace_bytes)");
  if (reinterpret_cast<std::uintptr_t>(workspace) % kAlign != 0)
    fail("workspace must be 256-byte aligned");
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cuda_detail::cuda_check(cudaStreamIsCapturing(s, &status), "cudaStreamIsCapturing");
  if (status != cudaStreamCaptureStatusNone)
    fail(
        "cannot run while the stream is being captured into a CUDA graph (the step loop "
        "synchronizes to stop early)");
  char* ws = static_cast<char*>(workspace);
  if (plan.path == Path::kTile) {
    if (args.weights_bf16) {
      run_tile<__nv_bfloat16>(args, pr, plan, ws, s);
    } else {
      run_tile<float>(args, pr, plan, ws, s);
    }
  } else {
    if (args.weights_bf16) {
      run_generic<__nv_bfloat16>(args, pr, plan, ws, s);
    } else {
      run_generic<float>(args, pr, plan, ws, s);
    }
  }
}

int optimize_latents_cuda_release_graphs() { return cuda_detail::opt::graph_cache().clear(); }

}  // namespace lcengine
