// SPDX-License-Identifier: Apache-2.0
// The only translation unit that knows about Python: pybind11 glue for lcengine._C.
// Tensors cross this boundary as raw data pointers (Python ints); the Python layer guarantees
// dtype, device, contiguity and sizes. Here we keep cheap invariant checks that turn a would-be
// crash into a Python exception.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "cpu_info.h"
#include "lcengine_ops.h"

namespace py = pybind11;
using lcengine::DType;
using lcengine::WeightMode;

namespace {

DType to_dtype(int code) {
  if (code < 0 || code > 2) throw std::invalid_argument("dtype code must be 0 (float32), 1 (float16) or 2 (bfloat16), got " + std::to_string(code));
  return static_cast<DType>(code);
}

WeightMode to_weight_mode(int code) {
  if (code < 0 || code > 2) throw std::invalid_argument("weight_mode must be 0 (none), 1 (last dim) or 2 (full), got " + std::to_string(code));
  return static_cast<WeightMode>(code);
}

template <typename T = void>
T* ptr(std::uintptr_t p) { return reinterpret_cast<T*>(p); }

void require_ptr(std::uintptr_t p, const char* name, int64_t n) {
  if (n > 0 && p == 0) throw std::invalid_argument(std::string(name) + " must be a non-null data pointer");
}

void require_sizes(int64_t rows, int64_t dim) {
  if (rows < 0 || dim < 0) throw std::invalid_argument("rows and dim must be non-negative");
}

void require_n(int64_t n) {
  if (n < 0) throw std::invalid_argument("n must be non-negative");
}

// ---------------------------------------------------------------------------------------------
// Fused latent optimizer: the nets arrive as parallel lists (activation code, widths, weight and
// bias data pointers per layer; entry 0 of each pointer list is unused because every first layer
// lives in w_first). parse_optimize_args turns the arguments both devices share into an
// OptimizeLatentsArgs (owning the per-net arrays it points into); the CPU binding then adds the
// injected sgemm_, the CUDA bindings the workspace and stream.
// ---------------------------------------------------------------------------------------------
struct OptimizeCall {
  std::vector<std::vector<int64_t>> widths;
  std::vector<std::vector<const float*>> weight_ptrs, bias_ptrs;
  std::vector<lcengine::OptimizeNet> nets;
  lcengine::OptimizeLatentsArgs args;

  OptimizeCall() = default;
  OptimizeCall(const OptimizeCall&) = delete;  // args points into the vectors
  OptimizeCall& operator=(const OptimizeCall&) = delete;
};

#define LC_OPTIMIZE_PARAMS                                                                        \
  const std::vector<int>&activations, const std::vector<std::vector<int64_t>>&widths,             \
      const std::vector<std::vector<std::uintptr_t>>&weights,                                     \
      const std::vector<std::vector<std::uintptr_t>>&biases, std::uintptr_t w_first,              \
      std::uintptr_t b_first, int64_t first_width, std::uintptr_t row_bias,                       \
      int64_t row_bias_width, int64_t num_outputs, std::uintptr_t target,                         \
      std::uintptr_t loss_weight, std::uintptr_t requirement, std::uintptr_t upper,               \
      std::uintptr_t lower, std::uintptr_t inv_sigma_sq, float w_dist, std::uintptr_t z_start,    \
      std::uintptr_t z_out, std::uintptr_t converged, std::uintptr_t steps_taken,                 \
      std::uintptr_t logits_out, int64_t rows, int64_t dim, int64_t steps, double lr,             \
      double beta1, double beta2, double eps
#define LC_OPTIMIZE_ARGS                                                                          \
  activations, widths, weights, biases, w_first, b_first, first_width, row_bias, row_bias_width, \
      num_outputs, target, loss_weight, requirement, upper, lower, inv_sigma_sq, w_dist, z_start, \
      z_out, converged, steps_taken, logits_out, rows, dim, steps, lr, beta1, beta2, eps
// The Python names of LC_OPTIMIZE_PARAMS, in order.
#define LC_OPTIMIZE_PY_ARGS                                                                       \
  py::arg("activations"), py::arg("widths"), py::arg("weights"), py::arg("biases"),               \
      py::arg("w_first"), py::arg("b_first"), py::arg("first_width"), py::arg("row_bias"),        \
      py::arg("row_bias_width"), py::arg("num_outputs"), py::arg("target"),                       \
      py::arg("loss_weight"), py::arg("requirement"), py::arg("upper"), py::arg("lower"),         \
      py::arg("inv_sigma_sq"), py::arg("w_dist"), py::arg("z_start"), py::arg("z_out"),           \
      py::arg("converged"), py::arg("steps_taken"), py::arg("logits_out"), py::arg("rows"),       \
      py::arg("dim"), py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),        \
      py::arg("eps")

// Checks what building call.args needs (list lengths, pointers; messages start with `op`) and
// fills it; the sizes and codes are checked by the core (check_optimize_args).
void parse_optimize_args(OptimizeCall& call, const std::string& op, LC_OPTIMIZE_PARAMS) {
  const size_t num_nets = activations.size();
  if (num_nets == 0) throw std::invalid_argument(op + ": at least one net");
  if (widths.size() != num_nets || weights.size() != num_nets || biases.size() != num_nets)
    throw std::invalid_argument(op + ": activations, widths, weights and biases must have one "
                                "entry per net");
  require_sizes(rows, dim);
  if (row_bias_width < 0) throw std::invalid_argument(op + ": row_bias_width must be >= 0");
  call.widths = widths;
  call.weight_ptrs.assign(num_nets, {});
  call.bias_ptrs.assign(num_nets, {});
  call.nets.assign(num_nets, lcengine::OptimizeNet{});
  for (size_t n = 0; n < num_nets; ++n) {
    const size_t layers = weights[n].size();
    if (layers < 2 || biases[n].size() != layers || widths[n].size() != layers + 1)
      throw std::invalid_argument(op + ": net " + std::to_string(n) + " needs >= 2 layers, as "
                                  "many biases and layers + 1 widths");
    call.weight_ptrs[n].push_back(nullptr);
    call.bias_ptrs[n].push_back(nullptr);
    for (size_t l = 1; l < layers; ++l) {
      require_ptr(weights[n][l], "layer weight", 1);
      require_ptr(biases[n][l], "layer bias", 1);
      call.weight_ptrs[n].push_back(ptr<const float>(weights[n][l]));
      call.bias_ptrs[n].push_back(ptr<const float>(biases[n][l]));
    }
    call.nets[n] = lcengine::OptimizeNet{static_cast<lcengine::Activation>(activations[n]),
                                         static_cast<int32_t>(layers), call.widths[n].data(),
                                         call.weight_ptrs[n].data(), call.bias_ptrs[n].data()};
  }
  for (auto [p, name, n] : {std::tuple<std::uintptr_t, const char*, int64_t>{w_first, "w_first", 1},
                            {b_first, "b_first", 1}, {target, "target", rows},
                            {loss_weight, "loss_weight", rows}, {requirement, "requirement", rows},
                            {upper, "upper", 1}, {lower, "lower", 1},
                            {inv_sigma_sq, "inv_sigma_sq", 1}, {z_start, "z_start", rows},
                            {z_out, "z_out", rows}, {converged, "converged", rows},
                            {steps_taken, "steps_taken", rows}, {logits_out, "logits_out", rows}})
    require_ptr(p, name, n);
  lcengine::OptimizeLatentsArgs& args = call.args;
  args.rows = rows; args.dim = dim;
  args.num_nets = static_cast<int32_t>(num_nets); args.nets = call.nets.data();
  args.first_width = first_width;
  args.w_first = ptr<const float>(w_first); args.b_first = ptr<const float>(b_first);
  args.row_bias = ptr<const float>(row_bias); args.row_bias_width = row_bias_width;
  args.num_outputs = num_outputs;
  args.target = ptr<const float>(target); args.loss_weight = ptr<const float>(loss_weight);
  args.requirement = ptr<const int8_t>(requirement);
  args.upper = ptr<const float>(upper); args.lower = ptr<const float>(lower);
  args.inv_sigma_sq = ptr<const float>(inv_sigma_sq); args.w_dist = w_dist;
  args.z_start = ptr<const float>(z_start); args.z_out = ptr<float>(z_out);
  args.converged = ptr<uint8_t>(converged); args.steps_taken = ptr<int64_t>(steps_taken);
  args.logits_out = ptr<float>(logits_out);
  args.steps = steps; args.lr = lr; args.beta1 = beta1; args.beta2 = beta2; args.eps = eps;
}

void optimize_latents_cpu_binding(LC_OPTIMIZE_PARAMS, int64_t tile_rows, int threads,
                                  std::uintptr_t sgemm, std::uintptr_t set_threads_local) {
  OptimizeCall call;
  parse_optimize_args(call, "optimize_latents_cpu", LC_OPTIMIZE_ARGS);
  if (sgemm == 0) throw std::invalid_argument("optimize_latents_cpu: sgemm must be the address of a BLAS sgemm_");
  call.args.tile_rows = tile_rows; call.args.threads = threads;
  call.args.sgemm = reinterpret_cast<lcengine::SgemmFn>(sgemm);
  call.args.blas_set_threads_local = reinterpret_cast<lcengine::BlasSetThreadsLocalFn>(set_threads_local);
  py::gil_scoped_release release;
  lcengine::optimize_latents_cpu(call.args);
}

#ifdef LCENGINE_WITH_CUDA
// Bytes of device workspace optimize_latents_cuda needs (host arithmetic only: no GPU needed).
int64_t optimize_latents_cuda_workspace_bytes_binding(LC_OPTIMIZE_PARAMS, bool weights_bf16) {
  OptimizeCall call;
  parse_optimize_args(call, "optimize_latents_cuda", LC_OPTIMIZE_ARGS);
  call.args.weights_bf16 = weights_bf16;
  return static_cast<int64_t>(lcengine::optimize_latents_cuda_workspace_bytes(call.args));
}

void optimize_latents_cuda_binding(LC_OPTIMIZE_PARAMS, bool weights_bf16, std::uintptr_t workspace,
                                   int64_t workspace_bytes, std::uintptr_t stream) {
  OptimizeCall call;
  parse_optimize_args(call, "optimize_latents_cuda", LC_OPTIMIZE_ARGS);
  call.args.weights_bf16 = weights_bf16;
  if (workspace_bytes < 0)
    throw std::invalid_argument("optimize_latents_cuda: workspace_bytes must be >= 0");
  py::gil_scoped_release release;
  lcengine::optimize_latents_cuda(call.args, ptr(workspace), static_cast<size_t>(workspace_bytes),
                                  ptr(stream));
}
#endif

}  // namespace

#define LC_DEVICE_VARIANTS(SUFFIX, EXTRA_PARAM, EXTRA_ARG)                                       \
  m.def("standard_normal_" #SUFFIX,                                                              \
        [](std::uintptr_t out, int64_t n, uint64_t seed, uint64_t offset, int dtype EXTRA_PARAM) {  \
          require_n(n); require_ptr(out, "out", n);                                              \
          lcengine::standard_normal_##SUFFIX(ptr(out), n, seed, offset, to_dtype(dtype) EXTRA_ARG); \
        },                                                                                       \
        py::call_guard<py::gil_scoped_release>());                                               \
  m.def("reparameterize_" #SUFFIX,                                                               \
        [](std::uintptr_t mu, std::uintptr_t logvar, std::uintptr_t z, int64_t n, uint64_t seed, \
           uint64_t offset, int dtype EXTRA_PARAM) {                                             \
          require_n(n); require_ptr(mu, "mu", n); require_ptr(logvar, "logvar", n);              \
          require_ptr(z, "z", n);                                                                \
          lcengine::reparameterize_##SUFFIX(ptr<const void>(mu), ptr<const void>(logvar), ptr(z), \
                                            n, seed, offset, to_dtype(dtype) EXTRA_ARG);         \
        },                                                                                       \
        py::call_guard<py::gil_scoped_release>());                                               \
  m.def("reparameterize_backward_" #SUFFIX,                                                      \
        [](std::uintptr_t grad_z, std::uintptr_t logvar, std::uintptr_t grad_logvar, int64_t n,  \
           uint64_t seed, uint64_t offset, int dtype EXTRA_PARAM) {                              \
          require_n(n); require_ptr(grad_z, "grad_z", n); require_ptr(logvar, "logvar", n);      \
          require_ptr(grad_logvar, "grad_logvar", n);                                            \
          lcengine::reparameterize_backward_##SUFFIX(ptr<const void>(grad_z),                    \
                                                     ptr<const void>(logvar), ptr(grad_logvar),  \
                                                     n, seed, offset,                            \
                                                     to_dtype(dtype) EXTRA_ARG);                 \
        },                                                                                       \
        py::call_guard<py::gil_scoped_release>());                                               \
  m.def("gaussian_kl_" #SUFFIX,                                                                  \
        [](std::uintptr_t mu, std::uintptr_t logvar, std::uintptr_t kl_rows,                     \
           std::uintptr_t grad_mu, std::uintptr_t grad_logvar, float grad_scale, int64_t rows,   \
           int64_t dim, int dtype EXTRA_PARAM) {                                                 \
          require_sizes(rows, dim); require_ptr(mu, "mu", rows * dim);                           \
          require_ptr(logvar, "logvar", rows * dim); require_ptr(kl_rows, "kl_rows", rows);      \
          if ((grad_mu == 0) != (grad_logvar == 0))                                              \
            throw std::invalid_argument("grad_mu and grad_logvar must both be given or both 0"); \
          lcengine::gaussian_kl_##SUFFIX(ptr<const void>(mu), ptr<const void>(logvar),           \
                                         ptr<float>(kl_rows), ptr(grad_mu), ptr(grad_logvar),    \
                                         grad_scale, rows, dim, to_dtype(dtype) EXTRA_ARG);      \
        },                                                                                       \
        py::call_guard<py::gil_scoped_release>());                                               \
  m.def("distance_penalty_" #SUFFIX,                                                             \
        [](std::uintptr_t z, std::uintptr_t z_ref, std::uintptr_t inv_sigma_sq,                  \
           bool sigma_per_dim, std::uintptr_t out_rows, std::uintptr_t grad_z, float grad_scale, \
           int64_t rows, int64_t dim, int dtype EXTRA_PARAM) {                                   \
          require_sizes(rows, dim); require_ptr(z, "z", rows * dim);                             \
          require_ptr(z_ref, "z_ref", rows * dim); require_ptr(inv_sigma_sq, "inv_sigma_sq", 1); \
          require_ptr(out_rows, "out_rows", rows);                                               \
          lcengine::distance_penalty_##SUFFIX(ptr<const void>(z), ptr<const void>(z_ref),        \
                                              ptr<const float>(inv_sigma_sq), sigma_per_dim,     \
                                              ptr<float>(out_rows), ptr(grad_z), grad_scale,     \
                                              rows, dim, to_dtype(dtype) EXTRA_ARG);             \
        },                                                                                       \
        py::call_guard<py::gil_scoped_release>());                                               \
  m.def("constraint_loss_" #SUFFIX,                                                              \
        [](std::uintptr_t logits, std::uintptr_t target, std::uintptr_t weight, int weight_mode, \
           std::uintptr_t loss_elems, std::uintptr_t loss_rows, std::uintptr_t grad_logits,      \
           float grad_scale, int64_t rows, int64_t dim, int dtype EXTRA_PARAM) {                 \
          require_sizes(rows, dim); require_ptr(logits, "logits", rows * dim);                   \
          require_ptr(target, "target", rows * dim);                                             \
          WeightMode wm = to_weight_mode(weight_mode);                                           \
          if (wm != WeightMode::kNone) require_ptr(weight, "weight", 1);                         \
          if (loss_elems == 0 && loss_rows == 0 && grad_logits == 0)                             \
            throw std::invalid_argument("constraint_loss: nothing to compute (all outputs 0)");  \
          lcengine::constraint_loss_##SUFFIX(ptr<const void>(logits), ptr<const void>(target),   \
                                             ptr<const void>(weight), wm, ptr(loss_elems),       \
                                             ptr<float>(loss_rows), ptr(grad_logits),            \
                                             grad_scale, rows, dim, to_dtype(dtype) EXTRA_ARG);  \
        },                                                                                       \
        py::call_guard<py::gil_scoped_release>());                                               \
  m.def("latent_adam_" #SUFFIX,                                                                  \
        [](std::uintptr_t z, std::uintptr_t grad, std::uintptr_t exp_avg,                        \
           std::uintptr_t exp_avg_sq, std::uintptr_t active, int64_t rows, int64_t dim,          \
           double lr, double beta1, double beta2, double eps, double bias_c1, double bias_c2,     \
           int dtype EXTRA_PARAM) {                                                              \
          require_sizes(rows, dim); require_ptr(z, "z", rows * dim);                             \
          require_ptr(grad, "grad", rows * dim); require_ptr(exp_avg, "exp_avg", rows * dim);    \
          require_ptr(exp_avg_sq, "exp_avg_sq", rows * dim);                                     \
          if (!(bias_c1 > 0.0) || !(bias_c2 > 0.0))                                              \
            throw std::invalid_argument("bias corrections must be positive");                    \
          lcengine::latent_adam_##SUFFIX(ptr(z), ptr<const void>(grad), ptr(exp_avg),            \
                                         ptr(exp_avg_sq), ptr<const uint8_t>(active), rows, dim, \
                                         lr, beta1, beta2, eps, bias_c1, bias_c2,                \
                                         to_dtype(dtype) EXTRA_ARG);                             \
        },                                                                                       \
        py::call_guard<py::gil_scoped_release>());

#define LC_COMMA ,
#define LC_NOTHING

PYBIND11_MODULE(_C, m) {
  m.doc() = "lcengine native kernels (C++/OpenMP on CPU, CUDA when compiled in)";

  LC_DEVICE_VARIANTS(cpu, LC_NOTHING, LC_NOTHING)
#ifdef LCENGINE_WITH_CUDA
  LC_DEVICE_VARIANTS(cuda, LC_COMMA std::uintptr_t stream, LC_COMMA ptr(stream))
  m.def("cuda_device_count", &lcengine::cuda_device_count);
  m.attr("with_cuda") = true;
  m.attr("cuda_architectures") = LCENGINE_CUDA_ARCHS;
#else
  m.attr("with_cuda") = false;
  m.attr("cuda_architectures") = "";
#endif
  m.def("cpu_num_threads", &lcengine::cpu_num_threads);
  m.def("cpu_simd_level", &lcengine::cpu_simd_level);
  m.def("optimize_latents_cpu", &optimize_latents_cpu_binding,
        "Fused critic-gradient latent optimizer on CPU (see OptimizeLatentsArgs)",
        LC_OPTIMIZE_PY_ARGS, py::arg("tile_rows"), py::arg("threads"), py::arg("sgemm"),
        py::arg("set_threads_local"));
#ifdef LCENGINE_WITH_CUDA
  m.def("optimize_latents_cuda", &optimize_latents_cuda_binding,
        "Fused critic-gradient latent optimizer on CUDA (see OptimizeLatentsArgs); every pointer "
        "is a device pointer, workspace of optimize_latents_cuda_workspace_bytes bytes",
        LC_OPTIMIZE_PY_ARGS, py::arg("weights_bf16"), py::arg("workspace"),
        py::arg("workspace_bytes"), py::arg("stream"));
  m.def("optimize_latents_cuda_workspace_bytes", &optimize_latents_cuda_workspace_bytes_binding,
        "Device workspace (bytes) of optimize_latents_cuda for these arguments (no GPU needed)",
        LC_OPTIMIZE_PY_ARGS, py::arg("weights_bf16"));
#endif
#ifdef _OPENMP
  m.attr("with_openmp") = true;
#else
  m.attr("with_openmp") = false;
#endif
  m.attr("version") = LCENGINE_VERSION;
}
