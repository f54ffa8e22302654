// Seeded random generators, one per device.
//
// The CPU generator is PyTorch's: the Mersenne Twister mt19937 seeded with the seed's low
// 32 bits, read and mapped to distributions exactly as PyTorch 1.13's CPU kernels do
// (engine/src/cpu/random_cpu.cpp states the mappings). So `smp::manual_seed(s)` followed
// by the same sequence of draws gives the numbers `torch.manual_seed(s)` gives: a model
// built here from a seed starts from the weights PyTorch would build, and dropout masks
// and shuffles follow along. CUDA generators are counter-based (Philox4x32-10), as
// PyTorch's are, so CUDA results do not depend on the launch geometry.
#pragma once

#include <smp/engine/device.h>
#include <smp/engine/half.h>  // SMP_HOST_DEVICE

#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace smp {

/// PyTorch's default seed (torch.initial_seed() of a fresh process).
inline constexpr uint64_t kDefaultSeed = 67280421310721ULL;

/// A device's random state: mt19937 for the CPU, Philox (seed, offset) elsewhere.
class Generator {
 public:
  enum class Kind { kMT19937, kPhilox };

  explicit Generator(Kind kind, uint64_t seed = kDefaultSeed);
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  Kind kind() const { return kind_; }
  /// Restarts the stream from `seed` (also drops a cached normal sample, as torch does).
  void manual_seed(uint64_t seed);
  uint64_t seed() const { return seed_; }

  /// Philox: reserves `blocks` 128-bit blocks; returns (seed, first block) for a kernel.
  std::pair<uint64_t, uint64_t> reserve(uint64_t blocks);
  /// Philox: blocks used so far.
  uint64_t offset() const { return offset_; }

  /// The whole state as bytes (torch's get_state): kind, seed, Philox offset, the mt19937 words
  /// and position, and the cached normal sample; set_state of them continues the stream
  /// exactly where it was (a checkpoint's resume).
  std::vector<uint8_t> get_state();
  /// Throws smp::Error for bytes that get_state of a generator of this kind did not make.
  void set_state(const std::vector<uint8_t>& state);

  // ---- mt19937; every call below needs mutex() held -----------------------------------
  std::mutex& mutex() { return mu_; }
  /// The next 32-bit output (torch's generator->random()).
  uint32_t random() {
    if (index_ == kStateWords) twist();
    return temper(state_[index_++]);
  }
  /// Two outputs, the first in the high half (torch's generator->random64()).
  uint64_t random64() {
    uint64_t hi = random();
    return (hi << 32) | random();
  }
  /// The next n outputs, in order (what n calls of random() would return).
  void fill(uint32_t* out, int64_t n);
  /// The normal sample that torch's scalar Box–Muller keeps for its next call.
  std::optional<double>& cached_normal() { return next_normal_; }

 private:
  static constexpr int kStateWords = 624;
  static uint32_t temper(uint32_t y) {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
  }
  void twist();

  Kind kind_;
  std::mutex mu_;
  uint64_t seed_;
  uint64_t offset_ = 0;
  uint32_t state_[kStateWords];
  int index_ = kStateWords;
  std::optional<double> next_normal_;
};

/// The default generator of a device (all CUDA devices have their own).
Generator& default_generator(Device d);
/// Seeds every device's default generator (torch::manual_seed).
void manual_seed(uint64_t seed);
/// The values of torch.randperm(n, generator=gen) for a CPU generator, without a tensor.
std::vector<int64_t> randperm_values(int64_t n, Generator& gen);

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
