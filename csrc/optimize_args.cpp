// SPDX-License-Identifier: Apache-2.0
// The one check of OptimizeLatentsArgs' sizes and codes, shared by the CPU and CUDA optimizers
// (the pybind11 layer checks only what it needs to build the struct: list lengths, pointers).
#include <stdexcept>
#include <string>

#include "lcengine_ops.h"

namespace lcengine {

void check_optimize_args(const OptimizeLatentsArgs& a, const char* op) {
  auto fail = [op](const std::string& what) {
    throw std::invalid_argument(std::string(op) + ": " + what);
  };
  constexpr int64_t kMaxWidth = int64_t{1} << 30;
  if (a.rows < 0) fail("rows must be >= 0");
  if (a.dim < 1 || a.dim >= kMaxWidth) fail("dim must be in [1, 2^30)");
  if (a.steps < 1) fail("steps must be >= 1");
  if (a.num_nets < 1 || a.nets == nullptr) fail("at least one net");
  int64_t first = 0, out = 0;
  for (int32_t n = 0; n < a.num_nets; ++n) {
    const OptimizeNet& net = a.nets[n];
    const std::string which = "net " + std::to_string(n) + ": ";
    if (net.num_layers < 2 || net.widths == nullptr) fail(which + "needs >= 2 layers");
    const int act = static_cast<int>(net.activation);
    if (act < 0 || act > 2)
      fail(which + "activation codes are 0 (relu), 1 (softplus), 2 (leaky_relu)");
    if (net.widths[0] != a.dim) fail(which + "widths[0] must be dim");
    for (int32_t l = 1; l <= net.num_layers; ++l)
      if (net.widths[l] < 1 || net.widths[l] >= kMaxWidth)
        fail(which + "widths must be in [1, 2^30)");
    first += net.widths[1];
    out += net.widths[net.num_layers];
  }
  if (a.first_width != first) fail("first_width must be the sum of every net's widths[1]");
  if (a.num_outputs != out) fail("num_outputs must be the sum of every net's output width");
  if (a.row_bias != nullptr && a.row_bias_width != a.nets[0].widths[1])
    fail("row_bias_width must be the first net's widths[1]");
  if (a.cpu_tile_rows < 0) fail("cpu_tile_rows must be >= 0 (0: automatic)");
  if (a.cpu_threads < 0) fail("cpu_threads must be >= 0 (0: automatic)");
  if (a.cuda_path < 0 || a.cuda_path > 2)
    fail("cuda_path codes are 0 (auto), 1 (tile), 2 (generic)");
  if (a.cuda_tile_rows != 0 && a.cuda_tile_rows != 8 && a.cuda_tile_rows != 16 &&
      a.cuda_tile_rows != 32)
    fail("cuda_tile_rows must be 0 (automatic), 8, 16 or 32");
  if (a.cuda_graph < 0 || a.cuda_graph > 2) fail("cuda_graph codes are 0 (auto), 1 (on), 2 (off)");
  if (a.cuda_chunk_rows < 0) fail("cuda_chunk_rows must be >= 0 (0: automatic)");
}

}  // namespace lcengine
