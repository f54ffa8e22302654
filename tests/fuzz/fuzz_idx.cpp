// read_idx (raw and gzip IDX files) on arbitrary bytes.
#include <smp/data/mnist.h>

#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = smp::fuzz::input_file().write(data, size);
  // The images (3-D) and labels (1-D) readers MNIST uses, and 2-D.
  for (int dims = 1; dims <= 3; ++dims)
    smp::fuzz::expect_only_smp_errors([&] {
      smp::Tensor t = smp::data::read_idx(path, dims);
      if (t.dim() != dims) std::abort();
    });
  return 0;
}
