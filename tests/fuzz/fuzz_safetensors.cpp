// load_safetensors and load_safetensors_metadata on arbitrary bytes.
#include <smp/smp.h>

#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = smp::fuzz::input_file().write(data, size);
  smp::fuzz::expect_only_smp_errors([&] {
    const auto tensors = smp::load_safetensors(path);
    // Touch every byte of every tensor, so a view past the file's buffer is an ASan report.
    unsigned sum = 0;
    for (const auto& [name, t] : tensors) {
      const auto* p = static_cast<const unsigned char*>(t.data_ptr());
      for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
    }
    if (sum == 1u << 31) std::fprintf(stderr, "%u\n", sum);  // keeps the loop
  });
  smp::fuzz::expect_only_smp_errors([&] { smp::load_safetensors_metadata(path); });
  return 0;
}
