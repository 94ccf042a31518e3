// SPDX-License-Identifier: Apache-2.0
// The only translation unit that knows about Python: pybind11 glue for lcengine._C.
// Tensors cross this boundary as raw data pointers (Python ints); the Python layer guarantees
// dtype, device, contiguity and sizes. Here we keep cheap invariant checks that turn a would-be
// crash into a Python exception.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

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
           float lr, float beta1, float beta2, float eps, float bias_c1, float bias_c2,           \
           int dtype EXTRA_PARAM) {                                                              \
          require_sizes(rows, dim); require_ptr(z, "z", rows * dim);                             \
          require_ptr(grad, "grad", rows * dim); require_ptr(exp_avg, "exp_avg", rows * dim);    \
          require_ptr(exp_avg_sq, "exp_avg_sq", rows * dim);                                     \
          if (!(bias_c1 > 0.f) || !(bias_c2 > 0.f))                                              \
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
#ifdef _OPENMP
  m.attr("with_openmp") = true;
#else
  m.attr("with_openmp") = false;
#endif
  m.attr("version") = LCENGINE_VERSION;
}
