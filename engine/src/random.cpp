#include <smp/engine/error.h>
#include <smp/engine/random.h>

#include <algorithm>
#include <cstring>
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

namespace {
constexpr uint32_t kStateMagic = 0x534d5052;  // "SMPR", version 1 of the layout below
template <class T>
void put(std::vector<uint8_t>& out, const T& v) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}
template <class T>
T take(const std::vector<uint8_t>& in, size_t& at) {
  SMP_CHECK(at + sizeof(T) <= in.size(), "Generator::set_state: the state is truncated ({} bytes)",
            in.size());
  T v;
  std::memcpy(&v, in.data() + at, sizeof(T));
  at += sizeof(T);
  return v;
}
}  // namespace

// Layout: magic, kind, seed, offset, index, has-normal, normal, the 624 mt19937 words
// (host byte order: states move between ranks of one job, and hosts share it).
std::vector<uint8_t> Generator::get_state() {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<uint8_t> out;
  out.reserve(64 + sizeof(state_));
  put(out, kStateMagic);
  put(out, static_cast<uint32_t>(kind_));
  put(out, seed_);
  put(out, offset_);
  put(out, static_cast<int32_t>(index_));
  put(out, static_cast<uint8_t>(next_normal_.has_value()));
  put(out, next_normal_.value_or(0.0));
  for (uint32_t w : state_) put(out, w);
  return out;
}

void Generator::set_state(const std::vector<uint8_t>& in) {
  size_t at = 0;
  SMP_CHECK(take<uint32_t>(in, at) == kStateMagic,
            "Generator::set_state: these bytes are not a generator state from get_state");
  const auto kind = static_cast<Kind>(take<uint32_t>(in, at));
  SMP_CHECK(kind == kind_, "Generator::set_state: the state is of a {} generator, this one is {}",
            kind == Kind::kMT19937 ? "mt19937" : "Philox",
            kind_ == Kind::kMT19937 ? "mt19937" : "Philox");
  const auto seed = take<uint64_t>(in, at);
  const auto offset = take<uint64_t>(in, at);
  const auto index = take<int32_t>(in, at);
  const auto has_normal = take<uint8_t>(in, at);
  const auto normal = take<double>(in, at);
  SMP_CHECK(index >= 0 && index <= kStateWords && in.size() == at + sizeof(state_),
            "Generator::set_state: the state is malformed ({} bytes)", in.size());
  std::lock_guard<std::mutex> g(mu_);
  seed_ = seed;
  offset_ = offset;
  index_ = index;
  next_normal_ = has_normal ? std::optional<double>(normal) : std::nullopt;
  std::memcpy(state_, in.data() + at, sizeof(state_));
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
