// SPDX-License-Identifier: Apache-2.0
// Device queries shared by the CUDA kernels (common.cuh: current_sm_count) and reported by
// build_info() and lcengine.backend's reasons (lcengine_ops.h: cuda_device_count, cuda_status).
#include <atomic>

#include "common.cuh"

namespace lcengine {
namespace cuda_detail {

int current_sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];  // 0 = not queried yet
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  if (dev >= 0 && dev < kMaxDevices) {
    const int cached = cache[dev].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int sms = 0;
  cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
             "cudaDeviceGetAttribute(MultiProcessorCount)");
  if (sms < 1) sms = 1;
  if (dev >= 0 && dev < kMaxDevices) cache[dev].store(sms, std::memory_order_relaxed);
  return sms;
}

}  // namespace cuda_detail

int cuda_device_count() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear it so a later, unrelated check does not report it
    return 0;
  }
  return count;
}

int cuda_runtime_version() { return CUDART_VERSION; }

CudaStatus cuda_status() {
  CudaStatus st;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  st.device_count = err == cudaSuccess ? count : 0;
  st.error = static_cast<int>(err);
  st.error_name = cudaGetErrorName(err);
  st.error_text = cudaGetErrorString(err);
  (void)cudaGetLastError();
  int driver = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;  // 0 also means "no driver"
  (void)cudaGetLastError();
  st.driver_version = driver;
  st.runtime_version = CUDART_VERSION;
  return st;
}

}  // namespace lcengine
