// SPDX-License-Identifier: Apache-2.0
// Native core of lcengine: raw pointers, sizes and (for CUDA) a stream. No torch headers here,
// so the core builds without libtorch. Every tensor argument is a contiguous buffer; the Python
// layer validates shapes, dtypes and devices before calling in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace lcengine {

// Element type of a floating buffer. Math is always done in float32.
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Weight layout for constraint_loss.
enum class WeightMode : int { kNone = 0, kLastDim = 1, kFull = 2 };

// ---------------------------------------------------------------------------------------------
// CPU kernels (csrc/rng.cpp, row_losses.cpp, adam.cpp). OpenMP-parallel, single pass, no
// temporaries.
// ---------------------------------------------------------------------------------------------

// out[i] = N(0,1) sample of the Philox4x32-10 stream keyed by (seed, offset + i), bit-compatible
// with Triton's tl.randn(seed, offset + i) up to float rounding of log/cos.
void standard_normal_cpu(void* out, int64_t n, uint64_t seed, uint64_t offset, DType dtype);

// z[i] = mu[i] + exp(logvar[i] / 2) * eps(seed, offset + i)
void reparameterize_cpu(const void* mu, const void* logvar, void* z, int64_t n, uint64_t seed,
                        uint64_t offset, DType dtype);

// grad_logvar[i] = grad_z[i] * 0.5 * exp(logvar[i] / 2) * eps(seed, offset + i)
void reparameterize_backward_cpu(const void* grad_z, const void* logvar, void* grad_logvar,
                                 int64_t n, uint64_t seed, uint64_t offset, DType dtype);

// kl_rows[r] = -0.5 * sum_d (1 + lv - mu^2 - exp(lv)) (float32, [rows]).
// If grad_mu != nullptr, also writes the gradient of (grad_scale * kl_rows[r]):
//   grad_mu = grad_scale * mu, grad_logvar = grad_scale * 0.5 * (exp(lv) - 1)   (dtype of input)
void gaussian_kl_cpu(const void* mu, const void* logvar, float* kl_rows, void* grad_mu,
                     void* grad_logvar, float grad_scale, int64_t rows, int64_t dim, DType dtype);

// out_rows[r] = (1/D) sum_d log(1 + (z - z_ref)^2) * inv_sigma_sq[d]   (float32, [rows])
// inv_sigma_sq has `dim` entries if sigma_per_dim, else 1. If grad_z != nullptr also writes
//   grad_z = grad_scale * (1/D) * 2 (z - z_ref) / (1 + (z - z_ref)^2) * inv_sigma_sq[d]
void distance_penalty_cpu(const void* z, const void* z_ref, const float* inv_sigma_sq,
                          bool sigma_per_dim, float* out_rows, void* grad_z, float grad_scale,
                          int64_t rows, int64_t dim, DType dtype);

// Elementwise binary cross-entropy with logits, stable for any |logit|:
//   loss = w * (max(l, 0) - l * t + log1p(exp(-|l|)))
// weight: kNone (w = 1), kLastDim (weight has `dim` entries), kFull (same shape as logits).
// If loss_elems != nullptr writes the elementwise loss (dtype); if loss_rows != nullptr writes
// the per-row sum (float32, [rows]); if grad_logits != nullptr writes
//   grad = grad_scale * w * (sigmoid(l) - t).
void constraint_loss_cpu(const void* logits, const void* target, const void* weight,
                         WeightMode weight_mode, void* loss_elems, float* loss_rows,
                         void* grad_logits, float grad_scale, int64_t rows, int64_t dim,
                         DType dtype);

// In-place Adam update (torch.optim.Adam formula, no weight decay) of rows whose active[r] != 0
// (all rows if active == nullptr); inactive rows are not read or written.
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   z -= (lr / bias_c1) * m / (sqrt(v) / sqrt(bias_c2) + eps)
// The coefficients (1 - b1, lr / bias_c1, ...) are formed in double and rounded to float once.
void latent_adam_cpu(void* z, const void* grad, void* exp_avg, void* exp_avg_sq,
                     const uint8_t* active, int64_t rows, int64_t dim, double lr, double beta1,
                     double beta2, double eps, double bias_c1, double bias_c2, DType dtype);

// Number of OpenMP threads the CPU kernels use (1 without OpenMP).
int cpu_num_threads();

// ---------------------------------------------------------------------------------------------
// CUDA kernels (kernels/cuda/*.cu), compiled only when LCENGINE_WITH_CUDA is defined. Same
// semantics as the CPU versions; `stream` is a cudaStream_t passed as void*. Launch errors are
// reported by throwing std::runtime_error.
// ---------------------------------------------------------------------------------------------
#ifdef LCENGINE_WITH_CUDA
void standard_normal_cuda(void* out, int64_t n, uint64_t seed, uint64_t offset, DType dtype,
                          void* stream);
void reparameterize_cuda(const void* mu, const void* logvar, void* z, int64_t n, uint64_t seed,
                         uint64_t offset, DType dtype, void* stream);
void reparameterize_backward_cuda(const void* grad_z, const void* logvar, void* grad_logvar,
                                  int64_t n, uint64_t seed, uint64_t offset, DType dtype,
                                  void* stream);
void gaussian_kl_cuda(const void* mu, const void* logvar, float* kl_rows, void* grad_mu,
                      void* grad_logvar, float grad_scale, int64_t rows, int64_t dim, DType dtype,
                      void* stream);
void distance_penalty_cuda(const void* z, const void* z_ref, const float* inv_sigma_sq,
                           bool sigma_per_dim, float* out_rows, void* grad_z, float grad_scale,
                           int64_t rows, int64_t dim, DType dtype, void* stream);
void constraint_loss_cuda(const void* logits, const void* target, const void* weight,
                          WeightMode weight_mode, void* loss_elems, float* loss_rows,
                          void* grad_logits, float grad_scale, int64_t rows, int64_t dim,
                          DType dtype, void* stream);
void latent_adam_cuda(void* z, const void* grad, void* exp_avg, void* exp_avg_sq,
                      const uint8_t* active, int64_t rows, int64_t dim, double lr, double beta1,
                      double beta2, double eps, double bias_c1, double bias_c2, DType dtype,
                      void* stream);
// Number of CUDA devices visible to the runtime linked into _C (0 if no driver).
int cuda_device_count();

// What the CUDA runtime linked into _C makes of this machine (kernels/cuda/common.cu).
struct CudaStatus {
  int device_count = 0;     // cudaGetDeviceCount (0 when it failed)
  int error = 0;            // its cudaError_t (0: cudaSuccess)
  std::string error_name;   // cudaGetErrorName, e.g. "cudaErrorInsufficientDriver"
  std::string error_text;   // cudaGetErrorString
  int driver_version = 0;   // cudaDriverGetVersion: 1000 major + 10 minor (0: no driver)
  int runtime_version = 0;  // CUDART_VERSION the kernels were compiled and linked with
};
CudaStatus cuda_status();
// CUDART_VERSION of the linked runtime (1000 major + 10 minor); no CUDA call.
int cuda_runtime_version();

// Frees the CUDA graphs the generic optimizer path keeps between calls (optimize.cu); returns
// how many were freed. Calls running concurrently keep theirs until they return.
int optimize_latents_cuda_release_graphs();
#endif

}  // namespace lcengine

// ---------------------------------------------------------------------------------------------
// Fused critic-gradient latent optimizer, CPU (csrc/optimize.cpp). The whole multi-step loop
// runs here; the GEMMs go to a Fortran-BLAS sgemm_ whose address the caller injects (torch's
// MKL, found at run time), so the core links no BLAS and no libtorch.
// ---------------------------------------------------------------------------------------------
namespace lcengine {

// Fortran BLAS sgemm_ (column-major): C = alpha op(A) op(B) + beta C, 32-bit integers (LP64).
using SgemmFn = void (*)(const char* transa, const char* transb, const int* m, const int* n,
                         const int* k, const float* alpha, const float* a, const int* lda,
                         const float* b, const int* ldb, const float* beta, float* c,
                         const int* ldc);
// mkl_set_num_threads_local(n): BLAS threads of the calling thread (0 restores the global
// setting); returns the previous value. Optional.
using BlasSetThreadsLocalFn = int (*)(int);

// Nonlinearity between hidden layers (none after the last layer). leaky_relu has slope 0.2.
enum class Activation : int { kReLU = 0, kSoftplus = 1, kLeakyReLU = 2 };

// One critic MLP reading z: Linear layers 0..num_layers-1 (num_layers >= 2), `activation`
// after every layer but the last. Layer 0 (z-columns only) is stored in the shared first-layer
// block of OptimizeLatentsArgs; weights[l], biases[l] for l >= 1 are row-major
// [widths[l+1], widths[l]] and [widths[l+1]] (entries 0 are ignored).
struct OptimizeNet {
  Activation activation;
  int32_t num_layers;
  const int64_t* widths;        // [num_layers + 1]; widths[0] = dim
  const float* const* weights;  // [num_layers]
  const float* const* biases;   // [num_layers]
};

// Everything one call of optimize_latents_cpu reads and writes (float32, contiguous).
// Per row r, with logits l = concat over nets of their outputs ([C] columns):
//   loss(z) = sum_c loss_weight[r,c] * BCE(l_c, target[r,c])
//           + w_dist * (1/D) sum_d log(1 + (z_d - z_start_d)^2) * inv_sigma_sq[d]
// Row r is satisfied when, for every column c, requirement +1: sigmoid(l_c) > upper[c];
// -1: sigmoid(l_c) < lower[c]; 0: nothing. Step t = 1..steps: a satisfied row is frozen (before
// the update, its steps_taken = t - 1); the others take one Adam step (global t for the bias
// correction). Rows still active after `steps` updates are checked once more at their final z.
struct OptimizeLatentsArgs {
  int64_t rows = 0, dim = 0;
  int32_t num_nets = 0;
  const OptimizeNet* nets = nullptr;
  int64_t first_width = 0;          // H1 = sum over nets of widths[1]
  const float* w_first = nullptr;   // [H1, dim]: every net's layer-0 z-columns, stacked
  const float* b_first = nullptr;   // [H1]
  const float* row_bias = nullptr;  // nullable [rows, row_bias_width]: replaces
  int64_t row_bias_width = 0;       //   b_first[0:row_bias_width] per row (the folded y-embedding)
  int64_t num_outputs = 0;          // C
  const float* target = nullptr;    // [rows, C]
  const float* loss_weight = nullptr;   // [rows, C]
  const int8_t* requirement = nullptr;  // [rows, C]
  const float* upper = nullptr;         // [C]
  const float* lower = nullptr;         // [C]
  const float* inv_sigma_sq = nullptr;  // [dim]
  float w_dist = 0.f;
  const float* z_start = nullptr;  // [rows, dim]
  float* z_out = nullptr;          // [rows, dim]
  uint8_t* converged = nullptr;    // [rows]
  int64_t* steps_taken = nullptr;  // [rows]
  float* logits_out = nullptr;     // [rows, C], at the final latents
  int64_t steps = 1;
  double lr = 0.05, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  // CPU only: tuning (0: automatic) and the injected BLAS.
  int64_t cpu_tile_rows = 0;  // rows per work tile
  int32_t cpu_threads = 0;    // OpenMP threads over tiles
  SgemmFn sgemm = nullptr;
  BlasSetThreadsLocalFn blas_set_threads_local = nullptr;
  // CUDA only: w_first and every nets[n].weights[l] point to bfloat16 data (still typed
  // const float* here); biases, latents, Adam state, activations and accumulation stay float32.
  // The CPU path ignores it (the Python layer never passes bfloat16 weights to the CPU).
  bool weights_bf16 = false;
  // CUDA only: tuning (kernels/cuda/optimize.cu). The size query and the run must see the same
  // values.
  int32_t cuda_path = 0;        // 0 auto, 1 row tiles (an error when ineligible), 2 generic
  int32_t cuda_tile_rows = 0;   // rows per tile CTA: 0 (cost model), 8, 16 or 32
  int32_t cuda_graph = 0;       // generic path: 0 auto (<= 16384 rows), 1 on, 2 off
  int64_t cuda_chunk_rows = 0;  // rows per generic-path chunk; 0: automatic (1 GiB budget)
  // Nullable: polled between steps (CPU: every step of every tile, from any of the call's
  // threads; CUDA: between graph replays / host checks of the generic path). Returning true
  // abandons the call, which throws OptimizeInterrupted with the outputs partly written. Must
  // be thread-safe and cheap (the Python binding rate-limits its signal check itself).
  bool (*should_stop)(void* ctx) = nullptr;
  void* should_stop_ctx = nullptr;
};

// Thrown by the optimizers when args.should_stop returned true.
struct OptimizeInterrupted : std::runtime_error {
  OptimizeInterrupted() : std::runtime_error("optimize_latents: interrupted") {}
};

// Throws std::invalid_argument (message starting with `op`) unless the sizes and codes of `args`
// are consistent: rows >= 0, steps >= 1, at least one net of >= 2 layers with known activation
// codes, widths[0] = dim and every width in [1, 2^30), first_width and num_outputs the sums of
// the nets' first and output widths, row_bias_width the first net's widths[1] when row_bias is
// set, and every tuning field in its range. Both optimizers call it first
// (csrc/optimize_args.cpp).
void check_optimize_args(const OptimizeLatentsArgs& args, const char* op);

// Runs the optimizer. Rows are independent, so each tile of rows runs its whole step loop on its
// own (activations, z and Adam state stay in cache). With two or more tiles, tiles spread over
// OpenMP threads with single-threaded BLAS; a single tile runs with BLAS's own threads when the
// weights exceed the caches (8 MiB), single-threaded otherwise, and tiles of at most 4 rows use
// streaming products split over the threads. Converged rows are compacted out of their tile.
// Throws std::invalid_argument on inconsistent sizes.
void optimize_latents_cpu(const OptimizeLatentsArgs& args);

// CUDA (kernels/cuda/optimize.cu; defined only when LCENGINE_WITH_CUDA). Every pointer of
// `args` is a device pointer; the cpu_* fields, sgemm and blas_set_threads_local are ignored.
//
// optimize_latents_cuda_workspace_bytes: bytes of device workspace (256-byte aligned) the call
// needs; pure host arithmetic (no device, no CUDA call), so it also answers on machines without
// a GPU. Throws std::invalid_argument on inconsistent sizes.
//
// optimize_latents_cuda: runs the optimizer on `stream` (a cudaStream_t as void*). Small
// critics (D and every width <= 256) run as one persistent row-tile kernel; others as per-step
// GEMM/epilogue launches, captured in a CUDA graph for small batches. May synchronize the stream
// every few steps to stop early, so it must not be called while the stream is being captured.
// Throws std::invalid_argument (sizes, workspace) or std::runtime_error (CUDA errors, with the
// kernel's name).
size_t optimize_latents_cuda_workspace_bytes(const OptimizeLatentsArgs& args);
void optimize_latents_cuda(const OptimizeLatentsArgs& args, void* workspace, size_t workspace_bytes,
                           void* stream);

}  // namespace lcengine
