// safetensors files: named tensors, byte-compatible with PyTorch / Hugging Face's format.
#pragma once

#include <smp/engine/tensor.h>

#include <map>
#include <string>

namespace smp {

/// Writes `tensors` (any device; copied to host) to `path`. Names are sorted, as
/// safetensors requires; `metadata` goes in the header's "__metadata__".
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
/// Reads every tensor of a safetensors file onto the CPU. A corrupt or truncated file is an
/// smp::Error naming the file and what is wrong.
std::map<std::string, Tensor> load_safetensors(const std::string& path);
/// The "__metadata__" of a safetensors file.
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);

}  // namespace smp
