#include <smp/engine/error.h>
#include <smp/engine/random.h>

#include <algorithm>
#include <map>
#include <memory>

namespace smp {

Generator::Generator(Kind kind, uint64_t seed) : kind_(kind) { manual_seed(seed); }

void Generator::manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> g(mu_);
  seed_ = seed;
  offset_ = 0;
  next_normal_.reset();
  // mt19937's standard initialisation from a 32-bit seed, as torch's (which truncates).
  state_[0] = static_cast<uint32_t>(seed);
  for (int i = 1; i < kStateWords; ++i)
    state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  index_ = kStateWords;
}

std::pair<uint64_t, uint64_t> Generator::reserve(uint64_t blocks) {
  SMP_CHECK(kind_ == Kind::kPhilox, "Generator::reserve: not a counter-based generator");
  std::lock_guard<std::mutex> g(mu_);
  uint64_t first = offset_;
  offset_ += blocks;
  return {seed_, first};
}

// The three loops are split where the recurrence's partner word (i + 397 mod 624) wraps, so
// each has a fixed dependence distance and the compiler vectorises it.
void Generator::twist() {
  constexpr int kN = kStateWords, kM = 397;
  auto mix = [](uint32_t cur, uint32_t next, uint32_t far) {
    uint32_t y = (cur & 0x80000000u) | (next & 0x7fffffffu);
    return far ^ (y >> 1) ^ ((next & 1u) ? 0x9908b0dfu : 0u);
  };
  uint32_t* s = state_;
  for (int i = 0; i < kN - kM; ++i) s[i] = mix(s[i], s[i + 1], s[i + kM]);
  for (int i = kN - kM; i < kN - 1; ++i) s[i] = mix(s[i], s[i + 1], s[i + kM - kN]);
  s[kN - 1] = mix(s[kN - 1], s[0], s[kM - 1]);
  index_ = 0;
}

void Generator::fill(uint32_t* out, int64_t n) {
  while (n > 0) {
    if (index_ == kStateWords) twist();
    int64_t c = std::min<int64_t>(n, kStateWords - index_);
    const uint32_t* s = state_ + index_;
    for (int64_t i = 0; i < c; ++i) out[i] = temper(s[i]);
    index_ += static_cast<int>(c);
    out += c;
    n -= c;
  }
}

Generator& default_generator(Device d) {
  static Generator cpu(Generator::Kind::kMT19937);
  static Generator meta(Generator::Kind::kPhilox);
  static std::mutex mu;
  static std::map<int, std::unique_ptr<Generator>> cuda;
  if (d.is_cpu()) return cpu;
  if (d.is_meta()) return meta;
  std::lock_guard<std::mutex> g(mu);
  auto& slot = cuda[d.index()];
  if (!slot) slot = std::make_unique<Generator>(Generator::Kind::kPhilox, cpu.seed());
  return *slot;
}

void manual_seed(uint64_t seed) {
  default_generator(Device(kCPU)).manual_seed(seed);
  default_generator(Device(kMeta)).manual_seed(seed);
  for (int i = 0; i < 16; ++i) default_generator(Device(kCUDA, i)).manual_seed(seed);
}

}  // namespace smp
