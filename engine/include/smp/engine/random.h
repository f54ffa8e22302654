// Seeded random generators, one per device, counter-based so results do not depend on
// the number of threads and CPU and CUDA draw the same numbers from the same seed.
#pragma once

#include <smp/engine/device.h>
#include <smp/engine/half.h>  // SMP_HOST_DEVICE

#include <cstdint>
#include <mutex>

namespace smp {

/// Philox4x32-10 state: a seed and an offset counting 128-bit blocks already used.
class Generator {
 public:
  explicit Generator(uint64_t seed = 67280421310721ULL) : seed_(seed) {}
  void manual_seed(uint64_t seed) {
    std::lock_guard<std::mutex> g(mu_);
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t o) { offset_ = o; }
  /// Reserves `blocks` 128-bit blocks; returns (seed, first block) for a kernel to use.
  std::pair<uint64_t, uint64_t> reserve(uint64_t blocks) {
    std::lock_guard<std::mutex> g(mu_);
    uint64_t first = offset_;
    offset_ += blocks;
    return {seed_, first};
  }

 private:
  std::mutex mu_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

/// The default generator of a device (all CUDA devices have their own).
Generator& default_generator(Device d);
/// Seeds every device's default generator (torch::manual_seed).
void manual_seed(uint64_t seed);

/// Philox4x32-10: 4 random 32-bit words from a 64-bit key and a 128-bit counter.
struct Philox {
#if defined(__CUDACC__)
  __host__ __device__
#endif
      static void
      draw(uint64_t key, uint64_t counter_lo, uint64_t counter_hi, uint32_t out[4]) {
    uint32_t c0 = static_cast<uint32_t>(counter_lo), c1 = static_cast<uint32_t>(counter_lo >> 32);
    uint32_t c2 = static_cast<uint32_t>(counter_hi), c3 = static_cast<uint32_t>(counter_hi >> 32);
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    for (int r = 0; r < 10; ++r) {
      uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
      uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
      uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
      uint32_t n1 = static_cast<uint32_t>(p1);
      uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
      uint32_t n3 = static_cast<uint32_t>(p0);
      c0 = n0;
      c1 = n1;
      c2 = n2;
      c3 = n3;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
  }
};

/// Uniform in [0, 1) from one Philox word: its top 24 bits (float32's mantissa).
SMP_HOST_DEVICE inline float philox_u24(uint32_t w) {
  return static_cast<float>(w >> 8) * (1.0f / 16777216.0f);
}
/// Uniform in [0, 1) with 53 bits from two words (26 + 27 bits), for float64.
SMP_HOST_DEVICE inline double philox_u53(uint32_t a, uint32_t b) {
  return (static_cast<double>(a >> 5) * 67108864.0 + static_cast<double>(b >> 6)) *
         (1.0 / 9007199254740992.0);
}

}  // namespace smp
