// read_image on arbitrary bytes behind a PNG signature (the JPEG decoder has fuzz_jpeg).
#include <smp/data/image_folder.h>

#include <cstring>

#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size < 8 || std::memcmp(data, kPng, 8) != 0) return -1;
  const std::string& path = smp::fuzz::input_file().write(data, size);
  smp::fuzz::expect_only_smp_errors([&] {
    smp::Tensor img = smp::data::read_image(path);
    if (img.dim() != 3 || img.size(2) != 3) std::abort();
  });
  return 0;
}
