// Random fills and factories, drawn from the device's default Philox generator.
//
// Every call reserves ceil(numel/4) counter blocks (see cpu/random_cpu.cpp for the rule
// that maps elements to counters), also on meta, so a rank that runs an op on meta keeps
// its generator in step with the rank that computes it.
#include <smp/engine/placement.h>
#include <smp/engine/random.h>

#include <numeric>

#include "ops/op_utils.h"

namespace smp {

namespace {

std::pair<uint64_t, uint64_t> reserve_for(const Tensor& t) {
  uint64_t blocks = (static_cast<uint64_t>(t.numel()) + 3) / 4;
  // A draw another rank makes for real (placed there by the pipeline) moves this rank's real
  // generator by the same amount, so the next draw this rank makes for real matches.
  const Placement* p = current_placement();
  const Device d = t.device().is_meta() && p && !p->local ? p->compute_device : t.device();
  return default_generator(d).reserve(blocks);
}

void check_inplace_random(const Tensor& t, const char* op) {
  ops::check_defined(t, op, "self");
  SMP_CHECK(!(GradMode::is_enabled() && t.is_leaf() && t.requires_grad()),
            "{}: a leaf tensor that requires grad is being modified in place; wrap the "
            "initialisation in smp::NoGradGuard",
            op);
}

TensorOptions like(const Tensor& t, const TensorOptions& o) {
  return TensorOptions(o.has_dtype() ? o.dtype() : t.dtype())
      .device(o.has_device() ? o.device() : t.device())
      .requires_grad(o.requires_grad());
}

}  // namespace

Tensor& Tensor::uniform_(double from, double to) {
  SMP_PLACE_OP("uniform_", *this);
  check_inplace_random(*this, "uniform_");
  SMP_CHECK(is_floating_point(), "uniform_: expected a floating-point tensor, got {}",
            dtype_name(dtype()));
  SMP_CHECK(from <= to, "uniform_: expected from <= to, got from={} to={}", from, to);
  auto [seed, offset] = reserve_for(*this);
  if (ops::runs_kernel(*this)) SMP_KERNEL(uniform, device())(*this, from, to, seed, offset);
  bump_version();
  return *this;
}

Tensor& Tensor::normal_(double mean, double std) {
  SMP_PLACE_OP("normal_", *this);
  check_inplace_random(*this, "normal_");
  SMP_CHECK(is_floating_point(), "normal_: expected a floating-point tensor, got {}",
            dtype_name(dtype()));
  SMP_CHECK(std >= 0.0, "normal_: expected std >= 0, got {}", std);
  auto [seed, offset] = reserve_for(*this);
  if (ops::runs_kernel(*this)) SMP_KERNEL(normal, device())(*this, mean, std, seed, offset);
  bump_version();
  return *this;
}

Tensor& Tensor::bernoulli_(double p) {
  SMP_PLACE_OP("bernoulli_", *this);
  check_inplace_random(*this, "bernoulli_");
  SMP_CHECK(p >= 0.0 && p <= 1.0, "bernoulli_: expected 0 <= p <= 1, got {}", p);
  auto [seed, offset] = reserve_for(*this);
  if (ops::runs_kernel(*this)) SMP_KERNEL(bernoulli, device())(*this, p, seed, offset);
  bump_version();
  return *this;
}

Tensor rand(const Shape& shape, const TensorOptions& o) {
  detail::HookPause factory;  // a factory, not an op: its fill must not consult the hook
  Tensor t = empty(shape, o.requires_grad(false));
  t.uniform_(0.0, 1.0);
  if (o.requires_grad()) t.requires_grad_(true);
  return t;
}

Tensor randn(const Shape& shape, const TensorOptions& o) {
  detail::HookPause factory;
  Tensor t = empty(shape, o.requires_grad(false));
  t.normal_(0.0, 1.0);
  if (o.requires_grad()) t.requires_grad_(true);
  return t;
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, const TensorOptions& o) {
  SMP_CHECK(low < high, "randint: expected low < high, got low={} high={}", low, high);
  Dtype dt = o.has_dtype() ? o.dtype() : kInt64;
  SMP_CHECK(dt != kBool || (low >= 0 && high <= 2),
            "randint: range [{}, {}) does not fit dtype bool", low, high);
  Tensor t = empty(shape, o.dtype(dt).requires_grad(false));
  auto [seed, offset] = reserve_for(t);
  if (!t.is_meta() && t.numel() > 0) SMP_KERNEL(random_int, t.device())(t, low, high, seed, offset);
  return t;
}

Tensor randint(int64_t high, const Shape& shape, const TensorOptions& o) {
  return randint(0, high, shape, o);
}

// Fisher–Yates on the host, driven by the target device's generator: step k (swapping position
// n−1−k with a uniform position in [0, n−1−k]) uses word k under the counter rule.
Tensor randperm(int64_t n, const TensorOptions& o) {
  detail::HookPause factory;
  SMP_CHECK(n >= 0, "randperm: expected n >= 0, got {}", n);
  Dtype dt = o.has_dtype() ? o.dtype() : kInt64;
  Device dev = o.has_device() ? o.device() : Device(kCPU);
  auto [seed, offset] = default_generator(dev).reserve((static_cast<uint64_t>(n) + 3) / 4);
  if (dev.is_meta()) return empty({n}, TensorOptions(dt).device(dev));
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  uint32_t w[4], w2[4];
  for (int64_t k = 0; k + 1 < n; ++k) {
    uint64_t block = offset + static_cast<uint64_t>(k / 4);
    Philox::draw(seed, block, 0, w);
    uint64_t i = static_cast<uint64_t>(n - 1 - k), r = w[k % 4];
    if (i + 1 > (uint64_t{1} << 32)) {
      Philox::draw(seed, block, 1, w2);
      r = (r << 32) | w2[k % 4];
    }
    std::swap(perm[i], perm[r % (i + 1)]);
  }
  Tensor cpu = tensor<int64_t>(perm, {n}, kInt64);
  return cpu.to(TensorOptions(dt).device(dev));
}

// Unlike zeros_like, these draw values, so where they are drawn is the pipeline's decision.
Tensor rand_like(const Tensor& t, const TensorOptions& o) {
  SMP_PLACE_OP("rand_like", t);
  return rand(t.sizes(), like(t, o));
}
Tensor randn_like(const Tensor& t, const TensorOptions& o) {
  SMP_PLACE_OP("randn_like", t);
  return randn(t.sizes(), like(t, o));
}

}  // namespace smp
