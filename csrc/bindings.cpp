// SPDX-License-Identifier: Apache-2.0
// The only translation unit that knows about Python: pybind11 glue for lcengine._C.
// Tensors cross this boundary as raw data pointers (Python ints); the Python layer guarantees
// dtype, device, contiguity and sizes. Here we keep cheap invariant checks that turn a would-be
// crash into a Python exception.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "cpu_info.h"
#include "lcengine_ops.h"

#ifndef LCENGINE_TORCH_CUDA
#define LCENGINE_TORCH_CUDA "unknown"
#endif

namespace py = pybind11;
using lcengine::DType;
using lcengine::WeightMode;

namespace {

DType to_dtype(int code) {
  if (code < 0 || code > 2)
    throw std::invalid_argument(
        "dtype code must be 0 (float32), 1 (float16) or 2 (bfloat16), got " + std::to_string(code));
  return static_cast<DType>(code);
}

WeightMode to_weight_mode(int code) {
  if (code < 0 || code > 2)
    throw std::invalid_argument("weight_mode must be 0 (none), 1 (last dim) or 2 (full), got " +
                                std::to_string(code));
  return static_cast<WeightMode>(code);
}

template <typename T = void>
T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

void require_ptr(std::uintptr_t p, const char* name, int64_t n) {
  if (n > 0 && p == 0)
    throw std::invalid_argument(std::string(name) + " must be a non-null data pointer");
}

void require_sizes(int64_t rows, int64_t dim) {
  if (rows < 0 || dim < 0) throw std::invalid_argument("rows and dim must be non-negative");
}

void require_n(int64_t n) {
  if (n < 0) throw std::invalid_argument("n must be non-negative");
}

// ---------------------------------------------------------------------------------------------
// Fused latent optimizer. _C.OptimizeLatentsArgs is lcengine::OptimizeLatentsArgs with every
// field bound by name (data pointers and function pointers as Python ints), plus the nets as
// parallel lists: activations[n], widths[n] ([D, H1, ..., out]), and the data pointers of
// layers 1..L-1 in weights[n] and biases[n] (every first layer lives in w_first / b_first).
// to_core() checks what building the core struct needs (list lengths, pointers) and returns it
// pointing into a NetStorage; the core checks sizes and codes (check_optimize_args).
// ---------------------------------------------------------------------------------------------
struct OptimizeArgs {
  lcengine::OptimizeLatentsArgs core;
  std::vector<int> activations;
  std::vector<std::vector<int64_t>> widths;
  std::vector<std::vector<std::uintptr_t>> weights, biases;
};

// What the core struct's nets point into; alive for the duration of one call (copied from the
// Python object, which another thread may change while the GIL is released).
struct NetStorage {
  std::vector<std::vector<int64_t>> widths;
  std::vector<std::vector<const float*>> weight_ptrs, bias_ptrs;
  std::vector<lcengine::OptimizeNet> nets;
};

lcengine::OptimizeLatentsArgs to_core(const OptimizeArgs& in, NetStorage& st,
                                      const std::string& op) {
  auto fail = [&op](const std::string& what) { throw std::invalid_argument(op + what); };
  const size_t num_nets = in.activations.size();
  if (num_nets == 0) fail(": at least one net");
  if (in.widths.size() != num_nets || in.weights.size() != num_nets || in.biases.size() != num_nets)
    fail(": activations, widths, weights and biases must have one entry per net");
  lcengine::OptimizeLatentsArgs a = in.core;
  require_sizes(a.rows, a.dim);
  if (a.row_bias_width < 0) fail(": row_bias_width must be >= 0");
  st.widths = in.widths;
  st.weight_ptrs.assign(num_nets, {});
  st.bias_ptrs.assign(num_nets, {});
  st.nets.assign(num_nets, lcengine::OptimizeNet{});
  for (size_t n = 0; n < num_nets; ++n) {
    const size_t layers = st.widths[n].size() >= 1 ? st.widths[n].size() - 1 : 0;
    if (layers < 2 || in.weights[n].size() != layers - 1 || in.biases[n].size() != layers - 1)
      fail(": net " + std::to_string(n) +
           " needs >= 3 widths (>= 2 layers) and one weight and bias per layer after the first");
    st.weight_ptrs[n].push_back(nullptr);  // layer 0 lives in w_first
    st.bias_ptrs[n].push_back(nullptr);
    for (size_t l = 0; l + 1 < layers; ++l) {
      require_ptr(in.weights[n][l], "layer weight", 1);
      require_ptr(in.biases[n][l], "layer bias", 1);
      st.weight_ptrs[n].push_back(ptr<const float>(in.weights[n][l]));
      st.bias_ptrs[n].push_back(ptr<const float>(in.biases[n][l]));
    }
    st.nets[n] = lcengine::OptimizeNet{static_cast<lcengine::Activation>(in.activations[n]),
                                       static_cast<int32_t>(layers), st.widths[n].data(),
                                       st.weight_ptrs[n].data(), st.bias_ptrs[n].data()};
  }
  a.num_nets = static_cast<int32_t>(num_nets);
  a.nets = st.nets.data();
  const int64_t rows = a.rows;
  for (auto [p, name, n] : {std::tuple<const void*, const char*, int64_t>{a.w_first, "w_first", 1},
                            {a.b_first, "b_first", 1},
                            {a.target, "target", rows},
                            {a.loss_weight, "loss_weight", rows},
                            {a.requirement, "requirement", rows},
                            {a.upper, "upper", 1},
                            {a.lower, "lower", 1},
                            {a.inv_sigma_sq, "inv_sigma_sq", 1},
                            {a.z_start, "z_start", rows},
                            {a.z_out, "z_out", rows},
                            {a.converged, "converged", rows},
                            {a.steps_taken, "steps_taken", rows},
                            {a.logits_out, "logits_out", rows}})
    require_ptr(reinterpret_cast<std::uintptr_t>(p), name, n);
  return a;
}

// A value field of the core struct as a read-write property.
template <typename T>
void bind_value(py::class_<OptimizeArgs>& cls, const char* name,
                T lcengine::OptimizeLatentsArgs::* field) {
  cls.def_property(name, [field](const OptimizeArgs& a) { return a.core.*field; },
                   [field](OptimizeArgs& a, T v) { a.core.*field = v; });
}

// A pointer field (data or function) of the core struct as a read-write int property.
template <typename T>
void bind_pointer(py::class_<OptimizeArgs>& cls, const char* name,
                  T* lcengine::OptimizeLatentsArgs::* field) {
  auto get = [field](const OptimizeArgs& a) {
    return reinterpret_cast<std::uintptr_t>(a.core.*field);
  };
  auto set = [field](OptimizeArgs& a, std::uintptr_t v) {
    a.core.*field = reinterpret_cast<T*>(v);
  };
  cls.def_property(name, get, set);
}

template <typename T>
void bind_list(py::class_<OptimizeArgs>& cls, const char* name, T OptimizeArgs::* field) {
  cls.def_property(name, [field](const OptimizeArgs& a) { return a.*field; },
                   [field](OptimizeArgs& a, T v) { a.*field = std::move(v); });
}

// _C.OptimizeLatentsArgs(**fields): every value goes through its property (a non-owning view of
// the new struct), so an unknown name or a value of the wrong type raises TypeError.
std::unique_ptr<OptimizeArgs> make_optimize_args(const py::kwargs& fields) {
  auto out = std::make_unique<OptimizeArgs>();
  {  // the view is gone before the struct gets its owning wrapper
    py::object view = py::cast(out.get(), py::return_value_policy::reference);
    for (const auto& [key, value] : fields) {
      if (PyObject_SetAttr(view.ptr(), key.ptr(), value.ptr()) == 0) continue;
      if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
      PyErr_Clear();
      throw py::type_error("OptimizeLatentsArgs has no field '" + py::cast<std::string>(key) + "'");
    }
  }
  return out;
}

void bind_optimize_args(py::module_& m) {
  using A = lcengine::OptimizeLatentsArgs;
  py::class_<OptimizeArgs> cls(m, "OptimizeLatentsArgs",
                               "Arguments of optimize_latents_cpu / _cuda, by field name (see "
                               "OptimizeLatentsArgs in csrc/lcengine_ops.h). Data pointers are "
                               "ints; lists are replaced whole, never changed in place.");
  cls.def(py::init(&make_optimize_args),
          "Builds the struct from keyword arguments named like its fields.");
  bind_value(cls, "rows", &A::rows);
  bind_value(cls, "dim", &A::dim);
  bind_list(cls, "activations", &OptimizeArgs::activations);
  bind_list(cls, "widths", &OptimizeArgs::widths);
  bind_list(cls, "weights", &OptimizeArgs::weights);
  bind_list(cls, "biases", &OptimizeArgs::biases);
  bind_pointer(cls, "w_first", &A::w_first);
  bind_pointer(cls, "b_first", &A::b_first);
  bind_value(cls, "first_width", &A::first_width);
  bind_pointer(cls, "row_bias", &A::row_bias);
  bind_value(cls, "row_bias_width", &A::row_bias_width);
  bind_value(cls, "num_outputs", &A::num_outputs);
  bind_pointer(cls, "target", &A::target);
  bind_pointer(cls, "loss_weight", &A::loss_weight);
  bind_pointer(cls, "requirement", &A::requirement);
  bind_pointer(cls, "upper", &A::upper);
  bind_pointer(cls, "lower", &A::lower);
  bind_pointer(cls, "inv_sigma_sq", &A::inv_sigma_sq);
  bind_value(cls, "w_dist", &A::w_dist);
  bind_pointer(cls, "z_start", &A::z_start);
  bind_pointer(cls, "z_out", &A::z_out);
  bind_pointer(cls, "converged", &A::converged);
  bind_pointer(cls, "steps_taken", &A::steps_taken);
  bind_pointer(cls, "logits_out", &A::logits_out);
  bind_value(cls, "steps", &A::steps);
  bind_value(cls, "lr", &A::lr);
  bind_value(cls, "beta1", &A::beta1);
  bind_value(cls, "beta2", &A::beta2);
  bind_value(cls, "eps", &A::eps);
  bind_value(cls, "cpu_tile_rows", &A::cpu_tile_rows);
  bind_value(cls, "cpu_threads", &A::cpu_threads);
  bind_pointer(cls, "sgemm", &A::sgemm);
  bind_pointer(cls, "blas_set_threads_local", &A::blas_set_threads_local);
  bind_value(cls, "weights_bf16", &A::weights_bf16);
  bind_value(cls, "cuda_path", &A::cuda_path);
  bind_value(cls, "cuda_tile_rows", &A::cuda_tile_rows);
  bind_value(cls, "cuda_graph", &A::cuda_graph);
  bind_value(cls, "cuda_chunk_rows", &A::cuda_chunk_rows);
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C during a long optimizer call. The core polls args.should_stop between steps (from any
// of its threads) while the GIL is released. Only the thread that made the call, when it is
// Python's main thread (the only one that runs signal handlers), checks for a signal, at most
// every kPollInterval: it takes the GIL back (PyGILState_Ensure: this thread has a thread state,
// saved by gil_scoped_release), runs PyErr_CheckSignals, and on -1 keeps the raised exception
// (KeyboardInterrupt) and raises the stop flag that every thread reads; the binding rethrows the
// exception once the core has unwound. Other threads and other callers only read the flag, so
// no thread without a Python thread state ever touches the interpreter.
// ---------------------------------------------------------------------------------------------
class SignalPoller {
 public:
  static constexpr std::chrono::milliseconds kPollInterval{50};

  // Called with the GIL held.
  SignalPoller()
      : owner_(std::this_thread::get_id()),
        last_(std::chrono::steady_clock::now()),
        main_thread_(is_main_thread()) {}

  // Sets the poller on the core struct (no-op poller when not on the main thread).
  void attach(lcengine::OptimizeLatentsArgs& a) {
    if (!main_thread_) return;
    a.should_stop = &SignalPoller::poll;
    a.should_stop_ctx = this;
  }

  // With the GIL held, after the core threw OptimizeInterrupted.
  [[noreturn]] void rethrow() {
    if (error_) throw *error_;
    throw std::runtime_error("optimize_latents: interrupted");
  }

 private:
  static bool is_main_thread() {
    py::module_ threading = py::module_::import("threading");
    return threading.attr("current_thread")().is(threading.attr("main_thread")());
  }

  static bool poll(void* ctx) { return static_cast<SignalPoller*>(ctx)->poll_once(); }

  bool poll_once() {
    if (stop_.load(std::memory_order_acquire)) return true;
    if (std::this_thread::get_id() != owner_) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < kPollInterval) return false;
    last_ = now;
    if (!Py_IsInitialized() || finalizing()) return false;
    const PyGILState_STATE gil = PyGILState_Ensure();
    if (PyErr_CheckSignals() != 0) {
      error_.emplace();  // fetches the pending exception (the GIL is held)
      stop_.store(true, std::memory_order_release);
    }
    PyGILState_Release(gil);
    return stop_.load(std::memory_order_relaxed);
  }

  static bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing() != 0;
#else
    return _Py_IsFinalizing() != 0;
#endif
  }

  std::thread::id owner_;
  std::chrono::steady_clock::time_point last_;  // owner thread only
  bool main_thread_;
  std::atomic<bool> stop_{false};
  std::optional<py::error_already_set> error_;  // written by the owner thread, before stop_
};

void optimize_latents_cpu_binding(const OptimizeArgs& args) {
  NetStorage storage;
  lcengine::OptimizeLatentsArgs a = to_core(args, storage, "optimize_latents_cpu");
  if (a.sgemm == nullptr)
    throw std::invalid_argument("optimize_latents_cpu: sgemm must be the address of a BLAS sgemm_");
  SignalPoller poller;
  poller.attach(a);
  try {
    py::gil_scoped_release release;
    lcengine::optimize_latents_cpu(a);
  } catch (const lcengine::OptimizeInterrupted&) {
    poller.rethrow();
  }
}

#ifdef LCENGINE_WITH_CUDA
// Bytes of device workspace optimize_latents_cuda needs (host arithmetic only: no GPU needed).
int64_t optimize_latents_cuda_workspace_bytes_binding(const OptimizeArgs& args) {
  NetStorage storage;
  const lcengine::OptimizeLatentsArgs a = to_core(args, storage, "optimize_latents_cuda");
  return static_cast<int64_t>(lcengine::optimize_latents_cuda_workspace_bytes(a));
}

void optimize_latents_cuda_binding(const OptimizeArgs& args, std::uintptr_t workspace,
                                   int64_t workspace_bytes, std::uintptr_t stream) {
  NetStorage storage;
  lcengine::OptimizeLatentsArgs a = to_core(args, storage, "optimize_latents_cuda");
  if (workspace_bytes < 0)
    throw std::invalid_argument("optimize_latents_cuda: workspace_bytes must be >= 0");
  SignalPoller poller;
  poller.attach(a);
  try {
    py::gil_scoped_release release;
    lcengine::optimize_latents_cuda(a, ptr(workspace), static_cast<size_t>(workspace_bytes),
                                    ptr(stream));
  } catch (const lcengine::OptimizeInterrupted&) {
    poller.rethrow();
  }
}

py::dict cuda_status_binding() {
  const lcengine::CudaStatus st = lcengine::cuda_status();
  py::dict d;
  d["device_count"] = st.device_count;
  d["error"] = st.error;
  d["error_name"] = st.error_name;
  d["error_string"] = st.error_text;
  d["driver_version"] = st.driver_version;
  d["runtime_version"] = st.runtime_version;
  return d;
}
#endif

}  // namespace

#define LC_DEVICE_VARIANTS(SUFFIX, EXTRA_PARAM, EXTRA_ARG)                                         \
  m.def("standard_normal_" #SUFFIX,                                                                \
        [](std::uintptr_t out, int64_t n, uint64_t seed, uint64_t offset, int dtype EXTRA_PARAM) { \
    require_n(n);                                                                                  \
    require_ptr(out, "out", n);                                                                    \
    lcengine::standard_normal_##SUFFIX(ptr(out), n, seed, offset, to_dtype(dtype) EXTRA_ARG);      \
  }, py::call_guard<py::gil_scoped_release>());                                                    \
  m.def("reparameterize_" #SUFFIX,                                                                 \
        [](std::uintptr_t mu, std::uintptr_t logvar, std::uintptr_t z, int64_t n, uint64_t seed,   \
           uint64_t offset, int dtype EXTRA_PARAM) {                                               \
    require_n(n);                                                                                  \
    require_ptr(mu, "mu", n);                                                                      \
    require_ptr(logvar, "logvar", n);                                                              \
    require_ptr(z, "z", n);                                                                        \
    lcengine::reparameterize_##SUFFIX(ptr<const void>(mu), ptr<const void>(logvar), ptr(z), n,     \
                                      seed, offset, to_dtype(dtype) EXTRA_ARG);                    \
  },                                                                                               \
        py::call_guard<py::gil_scoped_release>());                                                 \
  m.def("reparameterize_backward_" #SUFFIX,                                                        \
        [](std::uintptr_t grad_z, std::uintptr_t logvar, std::uintptr_t grad_logvar, int64_t n,    \
           uint64_t seed, uint64_t offset, int dtype EXTRA_PARAM) {                                \
    require_n(n);                                                                                  \
    require_ptr(grad_z, "grad_z", n);                                                              \
    require_ptr(logvar, "logvar", n);                                                              \
    require_ptr(grad_logvar, "grad_logvar", n);                                                    \
    lcengine::reparameterize_backward_##SUFFIX(ptr<const void>(grad_z), ptr<const void>(logvar),   \
                                               ptr(grad_logvar), n, seed, offset,                  \
                                               to_dtype(dtype) EXTRA_ARG);                         \
  },                                                                                               \
        py::call_guard<py::gil_scoped_release>());                                                 \
  m.def("gaussian_kl_" #SUFFIX,                                                                    \
        [](std::uintptr_t mu, std::uintptr_t logvar, std::uintptr_t kl_rows,                       \
           std::uintptr_t grad_mu, std::uintptr_t grad_logvar, float grad_scale, int64_t rows,     \
           int64_t dim, int dtype EXTRA_PARAM) {                                                   \
    require_sizes(rows, dim);                                                                      \
    require_ptr(mu, "mu", rows * dim);                                                             \
    require_ptr(logvar, "logvar", rows * dim);                                                     \
    require_ptr(kl_rows, "kl_rows", rows);                                                         \
    if ((grad_mu == 0) != (grad_logvar == 0))                                                      \
      throw std::invalid_argument("grad_mu and grad_logvar must both be given or both 0");         \
    lcengine::gaussian_kl_##SUFFIX(ptr<const void>(mu), ptr<const void>(logvar),                   \
                                   ptr<float>(kl_rows), ptr(grad_mu), ptr(grad_logvar),            \
                                   grad_scale, rows, dim, to_dtype(dtype) EXTRA_ARG);              \
  },                                                                                               \
        py::call_guard<py::gil_scoped_release>());                                                 \
  m.def("distance_penalty_" #SUFFIX,                                                               \
        [](std::uintptr_t z, std::uintptr_t z_ref, std::uintptr_t inv_sigma_sq,                    \
           bool sigma_per_dim, std::uintptr_t out_rows, std::uintptr_t grad_z, float grad_scale,   \
           int64_t rows, int64_t dim, int dtype EXTRA_PARAM) {                                     \
    require_sizes(rows, dim);                                                                      \
    require_ptr(z, "z", rows * dim);                                                               \
    require_ptr(z_ref, "z_ref", rows * dim);                                                       \
    require_ptr(inv_sigma_sq, "inv_sigma_sq", 1);                                                  \
    require_ptr(out_rows, "out_rows", rows);                                                       \
    lcengine::distance_penalty_##SUFFIX(                                                           \
        ptr<const void>(z), ptr<const void>(z_ref), ptr<const float>(inv_sigma_sq), sigma_per_dim, \
        ptr<float>(out_rows), ptr(grad_z), grad_scale, rows, dim, to_dtype(dtype) EXTRA_ARG);      \
  },                                                                                               \
        py::call_guard<py::gil_scoped_release>());                                                 \
  m.def("constraint_loss_" #SUFFIX,                                                                \
        [](std::uintptr_t logits, std::uintptr_t target, std::uintptr_t weight, int weight_mode,   \
           std::uintptr_t loss_elems, std::uintptr_t loss_rows, std::uintptr_t grad_logits,        \
           float grad_scale, int64_t rows, int64_t dim, int dtype EXTRA_PARAM) {                   \
    require_sizes(rows, dim);                                                                      \
    require_ptr(logits, "logits", rows * dim);                                                     \
    require_ptr(target, "target", rows * dim);                                                     \
    WeightMode wm = to_weight_mode(weight_mode);                                                   \
    if (wm != WeightMode::kNone) require_ptr(weight, "weight", 1);                                 \
    if (loss_elems == 0 && loss_rows == 0 && grad_logits == 0)                                     \
      throw std::invalid_argument("constraint_loss: nothing to compute (all outputs 0)");          \
    lcengine::constraint_loss_##SUFFIX(ptr<const void>(logits), ptr<const void>(target),           \
                                       ptr<const void>(weight), wm, ptr(loss_elems),               \
                                       ptr<float>(loss_rows), ptr(grad_logits), grad_scale, rows,  \
                                       dim, to_dtype(dtype) EXTRA_ARG);                            \
  },                                                                                               \
        py::call_guard<py::gil_scoped_release>());                                                 \
  m.def(                                                                                           \
      "latent_adam_" #SUFFIX,                                                                      \
      [](std::uintptr_t z, std::uintptr_t grad, std::uintptr_t exp_avg, std::uintptr_t exp_avg_sq, \
         std::uintptr_t active, int64_t rows, int64_t dim, double lr, double beta1, double beta2,  \
         double eps, double bias_c1, double bias_c2, int dtype EXTRA_PARAM) {                      \
    require_sizes(rows, dim);                                                                      \
    require_ptr(z, "z", rows * dim);                                                               \
    require_ptr(grad, "grad", rows * dim);                                                         \
    require_ptr(exp_avg, "exp_avg", rows * dim);                                                   \
    require_ptr(exp_avg_sq, "exp_avg_sq", rows * dim);                                             \
    if (!(bias_c1 > 0.0) || !(bias_c2 > 0.0))                                                      \
      throw std::invalid_argument("bias corrections must be positive");                            \
    lcengine::latent_adam_##SUFFIX(ptr(z), ptr<const void>(grad), ptr(exp_avg), ptr(exp_avg_sq),   \
                                   ptr<const uint8_t>(active), rows, dim, lr, beta1, beta2, eps,   \
                                   bias_c1, bias_c2, to_dtype(dtype) EXTRA_ARG);                   \
  },                                                                                               \
      py::call_guard<py::gil_scoped_release>());

#define LC_COMMA ,
#define LC_NOTHING

PYBIND11_MODULE(_C, m) {
  m.doc() = "lcengine native kernels (C++/OpenMP on CPU, CUDA when compiled in)";

  LC_DEVICE_VARIANTS(cpu, LC_NOTHING, LC_NOTHING)
#ifdef LCENGINE_WITH_CUDA
  LC_DEVICE_VARIANTS(cuda, LC_COMMA std::uintptr_t stream, LC_COMMA ptr(stream))
  m.def("cuda_device_count", &lcengine::cuda_device_count);
  m.def("cuda_status", &cuda_status_binding,
        "The linked CUDA runtime's view of this machine: {device_count, error (cudaError_t of "
        "cudaGetDeviceCount), error_name, error_string, driver_version (cudaDriverGetVersion, "
        "1000 major + 10 minor; 0: no driver), runtime_version}");
  m.def("cuda_release_graphs", &lcengine::optimize_latents_cuda_release_graphs,
        "Frees the CUDA graphs optimize_latents_cuda keeps between calls; returns how many");
  m.attr("with_cuda") = true;
  m.attr("cuda_architectures") = LCENGINE_CUDA_ARCHS;
  {
    const int rt = lcengine::cuda_runtime_version();
    m.attr("cuda_runtime_version") =
        std::to_string(rt / 1000) + "." + std::to_string((rt % 1000) / 10);
  }
#else
  m.attr("with_cuda") = false;
  m.attr("cuda_architectures") = "";
  m.attr("cuda_runtime_version") = "";
#endif
  m.attr("torch_cuda_version") = LCENGINE_TORCH_CUDA;
  m.def("cpu_num_threads", &lcengine::cpu_num_threads);
  m.def("cpu_simd_level", &lcengine::cpu_simd_level);
  bind_optimize_args(m);
  m.def("optimize_latents_cpu", &optimize_latents_cpu_binding,
        "Fused critic-gradient latent optimizer on CPU (sgemm must be set)", py::arg("args"));
#ifdef LCENGINE_WITH_CUDA
  m.def("optimize_latents_cuda", &optimize_latents_cuda_binding,
        "Fused critic-gradient latent optimizer on CUDA: every pointer of args is a device "
        "pointer, workspace of optimize_latents_cuda_workspace_bytes(args) bytes",
        py::arg("args"), py::arg("workspace"), py::arg("workspace_bytes"), py::arg("stream"));
  m.def("optimize_latents_cuda_workspace_bytes", &optimize_latents_cuda_workspace_bytes_binding,
        "Device workspace (bytes) of optimize_latents_cuda for these arguments (no GPU needed)",
        py::arg("args"));
#endif
#ifdef _OPENMP
  m.attr("with_openmp") = true;
#else
  m.attr("with_openmp") = false;
#endif
  m.attr("version") = LCENGINE_VERSION;
}
