// SPDX-License-Identifier: Apache-2.0
// CPU introspection shared by every CPU kernel: the instruction-set level chosen once per
// process (cpu_kernels.h: active_isa, LC_MULTIVERSION) and the figures build_info() reports
// (cpu_info.h, lcengine_ops.h).
#include "cpu_info.h"

#include <cstdlib>
#include <cstring>

#include "cpu_kernels.h"
#include "lcengine_ops.h"

namespace lcengine {

namespace cpu {

static Isa detect_isa() {
  Isa isa = Isa::kBaseline;
#if LC_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) {
    isa = Isa::kAvx512;
  } else if (__builtin_cpu_supports("x86-64-v3")) {
    isa = Isa::kAvx2;
  }
#endif
  // LCENGINE_CPU_ISA can only lower the level: an unsupported one would fault.
  if (const char* cap = std::getenv("LCENGINE_CPU_ISA")) {
    Isa requested = isa;
    if (std::strcmp(cap, "baseline") == 0 || std::strcmp(cap, "sse2") == 0) {
      requested = Isa::kBaseline;
    } else if (std::strcmp(cap, "avx2") == 0 || std::strcmp(cap, "x86-64-v3") == 0) {
      requested = Isa::kAvx2;
    }
    if (static_cast<int>(requested) < static_cast<int>(isa)) isa = requested;
  }
  return isa;
}

Isa active_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

}  // namespace cpu

int cpu_num_threads() { return cpu::max_threads(); }

const char* cpu_simd_level() { return cpu::isa_name(cpu::active_isa()); }

}  // namespace lcengine
