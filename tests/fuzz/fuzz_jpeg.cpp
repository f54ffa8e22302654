// read_image on arbitrary bytes behind a JPEG signature (the PNG decoder has fuzz_png).
#include <smp/data/image_folder.h>

#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) return -1;
  const std::string& path = smp::fuzz::input_file().write(data, size);
  smp::fuzz::expect_only_smp_errors([&] {
    smp::Tensor img = smp::data::read_image(path);
    if (img.dim() != 3 || img.size(2) != 3) std::abort();
  });
  return 0;
}
