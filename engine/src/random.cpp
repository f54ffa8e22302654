#include <smp/engine/random.h>

#include <map>
#include <memory>

namespace smp {

Generator& default_generator(Device d) {
  static Generator cpu;
  static Generator meta;
  static std::mutex mu;
  static std::map<int, std::unique_ptr<Generator>> cuda;
  if (d.is_cpu()) return cpu;
  if (d.is_meta()) return meta;
  std::lock_guard<std::mutex> g(mu);
  auto& slot = cuda[d.index()];
  if (!slot) slot = std::make_unique<Generator>(cpu.seed());
  return *slot;
}

void manual_seed(uint64_t seed) {
  default_generator(Device(kCPU)).manual_seed(seed);
  default_generator(Device(kMeta)).manual_seed(seed);
  for (int i = 0; i < 16; ++i) default_generator(Device(kCUDA, i)).manual_seed(seed);
}

}  // namespace smp
