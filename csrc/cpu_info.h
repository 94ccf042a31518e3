// SPDX-License-Identifier: Apache-2.0
// Introspection of the CPU kernels beyond the lcengine_ops.h contract (for build_info()).
#pragma once

namespace lcengine {

// Instruction-set level the CPU kernels dispatch to in this process: "avx512" (x86-64-v4),
// "avx2" (x86-64-v3) or "baseline". The environment variable LCENGINE_CPU_ISA=avx2|baseline,
// read once, lowers it (never raises it), so every variant can be tested on one machine.
const char* cpu_simd_level();

}  // namespace lcengine
