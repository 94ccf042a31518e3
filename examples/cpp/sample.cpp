// SPDX-License-Identifier: Apache-2.0
// lcengine_sample: runs a sampler exported by `lcengine export` (an AOTInductor package) from
// C++ and checks it against the example batch that the export wrote beside it.
//
//   lcengine_sample PACKAGE.pt2 EXAMPLE.pt [OUT.pt]
//
// Exit status: 0 the package reproduces the example images within 1e-4; 1 it does not;
// 2 an error: bad arguments, a missing or wrong file, shapes that do not match the package's
// metadata (a message on stderr).
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr double kTolerance = 1e-4;
constexpr const char* kFormat = "lcengine.sampler/1";

// An error in the inputs: reported as "error: ..." with exit status 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --- The metadata values are JSON text: a string, an integer, a list of strings or integers.
// These helpers parse just those forms (no nested values, no \u escapes).

// The string that starts at text[i] (a '"'); leaves i past its closing quote.
std::string json_string(const std::string& text, size_t& i) {
  if (i >= text.size() || text[i] != '"')
    throw InputError("expected a JSON string in metadata, got " + text);
  std::string out;
  for (++i; i < text.size() && text[i] != '"'; ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) ++i;  // \" and \\ keep the next character
    out += text[i];
  }
  if (i >= text.size()) throw InputError("unterminated string in metadata: " + text);
  ++i;  // past the closing quote
  return out;
}

// Splits `[a, b, ...]` into its items' texts (strings unquoted).
std::vector<std::string> json_list(const std::string& text) {
  std::vector<std::string> items;
  size_t i = text.find('[');
  if (i == std::string::npos) throw InputError("expected a JSON list in metadata, got " + text);
  for (++i; i < text.size() && text[i] != ']';) {
    char c = text[i];
    if (c == ' ' || c == ',') {
      ++i;
    } else if (c == '"') {
      items.push_back(json_string(text, i));
    } else {
      size_t end = text.find_first_of(",]", i);
      items.push_back(text.substr(i, end - i));
      i = end;
    }
  }
  return items;
}

int64_t to_int(const std::string& text) {
  try {
    size_t used = 0;
    int64_t v = std::stoll(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw InputError("expected an integer in metadata, got " + text);
}

// The value of `key` in the package metadata, or an error naming the key.
std::string metadata_value(const std::unordered_map<std::string, std::string>& metadata,
                           const std::string& key) {
  auto it = metadata.find(key);
  if (it == metadata.end())
    throw InputError("the package has no '" + key +
                     "' metadata: it was not written by `lcengine export`");
  return it->second;
}

// The first line of a libtorch error message (the rest lists files or a backtrace).
std::string first_line(const c10::Error& e) {
  std::string text = e.what_without_backtrace();
  return text.substr(0, text.find('\n'));
}

std::string shape_text(c10::IntArrayRef shape) {
  std::ostringstream s;
  s << shape;  // e.g. [8, 28, 28]
  return s.str();
}

// Reads EXAMPLE.pt (a `torch.save` of a dict of tensors) and returns the tensor under `key`.
torch::Tensor example_tensor(const c10::impl::GenericDict& dict, const std::string& key,
                             const std::string& path) {
  auto it = dict.find(key);
  if (it == dict.end() || !it->value().isTensor())
    throw InputError(path + " has no tensor '" + key + "'");
  torch::Tensor t = it->value().toTensor();
  if (t.scalar_type() != torch::kFloat32)
    throw InputError(path + ": '" + key + "' must be float32, got " +
                     std::string(c10::toString(t.scalar_type())));
  return t;
}

// Runs the package on (targets, latents) and returns the images on the CPU.
torch::Tensor run(torch::inductor::AOTIModelPackageLoader& loader, const torch::Device& device,
                  const torch::Tensor& targets, const torch::Tensor& latents) {
  std::vector<torch::Tensor> outputs =
      loader.run({targets.to(device).contiguous(), latents.to(device).contiguous()});
  return outputs.at(0).cpu();
}

int sample(const std::string& package_path, const std::string& example_path,
           const std::string& out_path) {
  // 1. Load the package. Its metadata holds lcengine's description of the graph's inputs and
  //    output (JSON values under lcengine.* keys) and AOTInductor's own AOTI_* keys.
  if (!std::filesystem::is_regular_file(package_path))
    throw InputError("no such file: " + package_path);
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  try {
    loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(package_path);
  } catch (const c10::Error& e) {
    throw InputError(package_path + " is not an AOTInductor package: " + first_line(e));
  }
  auto metadata = loader->get_metadata();
  size_t pos = 0;
  std::string format = json_string(metadata_value(metadata, "lcengine.format"), pos);
  if (format != kFormat)
    throw InputError("unsupported package format '" + format + "' (this program reads " + kFormat +
                     ")");
  std::vector<std::string> attributes = json_list(metadata_value(metadata, "lcengine.attributes"));
  int64_t latent_dim = to_int(metadata_value(metadata, "lcengine.latent_dim"));
  std::vector<int64_t> data_shape;
  for (const std::string& item : json_list(metadata_value(metadata, "lcengine.data_shape")))
    data_shape.push_back(to_int(item));
  // The device the package was compiled for ("cpu" or "cuda"): its inputs must live there.
  torch::Device device(metadata_value(metadata, "AOTI_DEVICE_KEY"));

  std::cout << "package: " << package_path << " (" << format << ", " << device << ")\n";
  std::cout << "  attributes (" << attributes.size() << "):";
  for (const std::string& a : attributes) std::cout << " " << a;
  std::cout << "\n  latent_dim: " << latent_dim << "\n  data_shape: " << shape_text(data_shape)
            << "\n";

  // 2. Read the example batch: a dict {"targets": [n, A], "latents": [n, D], "images":
  //    [n, *data_shape]} written by torch.save, with the Python sampler's images.
  if (!std::filesystem::is_regular_file(example_path))
    throw InputError("no such file: " + example_path);
  std::ifstream in(example_path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  torch::IValue loaded;
  try {
    loaded = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw InputError(example_path + " is not a file written by torch.save: " + first_line(e));
  }
  if (!loaded.isGenericDict()) throw InputError(example_path + " does not hold a dict of tensors");
  auto dict = loaded.toGenericDict();
  torch::Tensor targets = example_tensor(dict, "targets", example_path);
  torch::Tensor latents = example_tensor(dict, "latents", example_path);
  torch::Tensor expected = example_tensor(dict, "images", example_path);

  // 3. Check the inputs' widths against the metadata before running the graph.
  const int64_t rows = targets.dim() > 0 ? targets.size(0) : 0;
  const int64_t num_attributes = static_cast<int64_t>(attributes.size());
  if (targets.dim() != 2 || targets.size(1) != num_attributes)
    throw InputError("targets must be [n, " + std::to_string(num_attributes) +
                     "] (one column per attribute), got " + shape_text(targets.sizes()));
  if (latents.dim() != 2 || latents.size(1) != latent_dim || latents.size(0) != rows)
    throw InputError("latents must be [" + std::to_string(rows) + ", " +
                     std::to_string(latent_dim) + "], got " + shape_text(latents.sizes()));
  std::vector<int64_t> image_shape{rows};
  image_shape.insert(image_shape.end(), data_shape.begin(), data_shape.end());
  if (expected.sizes() != c10::IntArrayRef(image_shape))
    throw InputError("images must be " + shape_text(image_shape) + ", got " +
                     shape_text(expected.sizes()));
  if (rows < 1) throw InputError(example_path + " holds no rows");
  std::cout << "example: " << example_path << " (" << rows << " rows)\n";

  // 4. Run the package on the whole batch, then on its first row alone (the batch dimension
  //    is dynamic), and compare with the Python sampler's images.
  torch::NoGradGuard no_grad;
  double worst = 0.0;
  torch::Tensor images;
  for (int64_t n : {rows, int64_t{1}}) {
    torch::Tensor got = run(*loader, device, targets.slice(0, 0, n), latents.slice(0, 0, n));
    if (got.sizes() != expected.slice(0, 0, n).sizes())
      throw std::runtime_error("the package returned " + shape_text(got.sizes()) + ", expected " +
                               shape_text(expected.slice(0, 0, n).sizes()));
    double diff = (got - expected.slice(0, 0, n)).abs().max().item<double>();
    worst = std::max(worst, diff);
    char line[200];
    std::snprintf(line, sizeof line, "batch %lld: images %s sum %.6f max_abs_diff %.3e\n",
                  static_cast<long long>(n), shape_text(got.sizes()).c_str(),
                  got.sum().item<double>(), diff);
    std::cout << line;
    if (n == rows) images = got;
  }

  // 5. Optionally save the images; Python reads them back with torch.load(OUT.pt).
  if (!out_path.empty()) {
    std::vector<char> data = torch::pickle_save(images);
    std::ofstream out(out_path, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) throw InputError("cannot write " + out_path);
    std::cout << "wrote " << out_path << "\n";
  }

  const bool ok = worst <= kTolerance;
  char line[200];
  std::snprintf(line, sizeof line, "max_abs_diff %.3e (tolerance %.0e): %s\n", worst, kTolerance,
                ok ? "OK" : "FAILED");
  std::cout << line;
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: " << argv[0] << " PACKAGE.pt2 EXAMPLE.pt [OUT.pt]\n";
    return 2;
  }
  try {
    return sample(argv[1], argv[2], argc == 4 ? argv[3] : "");
  } catch (const InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const c10::Error& e) {  // from libtorch, e.g. a CUDA package on a CPU-only libtorch
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
  }
  return 2;
}
