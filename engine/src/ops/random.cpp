// Random fills and factories, drawn from the default generator of the device that computes
// them (the CPU's draws as PyTorch's CPU generator does; see random.h).
#include <smp/engine/placement.h>
#include <smp/engine/random.h>

#include <algorithm>
#include <limits>
#include <numeric>

#include "kernels.h"
#include "ops/op_utils.h"
#include "placement_scope.h"

namespace smp {

namespace {

// An uninitialised CPU tensor with t's shape, dtype and memory order.
Tensor scratch_like(const Tensor& t) {
  const IntList perm = ops::dims_in_memory_order(t);
  Shape sizes;
  for (int64_t d : perm) sizes.push_back(t.size(d));
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i)
    inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  return empty(sizes, TensorOptions(t.dtype())).permute(inverse);
}

// Fills t with draw(out, generator). Where this rank does not compute t (it is meta here, or
// another rank runs the op), the generator of the device that does compute it still moves as
// far as the draw would move it, so every rank's generator stays where a one-process run's
// would be: a counter-based generator reserves the blocks, the CPU's draws into a scratch of
// t's layout (its draw count can depend on layout and on a cached normal sample).
template <class Draw>
void draw_into(const Tensor& t, Draw draw) {
  if (t.numel() == 0) return;
  if (ops::runs_kernel(t)) {
    draw(t, default_generator(t.device()));
    return;
  }
  const Placement* p = current_placement();
  const Device d = t.device().is_meta() && p && !p->local ? p->compute_device : t.device();
  if (d.is_meta()) return;
  Generator& gen = default_generator(d);
  if (gen.kind() == Generator::Kind::kPhilox)
    gen.reserve((static_cast<uint64_t>(t.numel()) + 3) / 4);
  else {
    detail::PlacementSuspend off;  // the scratch and the kernel's views are this rank's own
    draw(scratch_like(t), gen);
  }
}

// Integers uniform in [low, high), the range taken as the unsigned difference high − low.
void fill_random_int(const Tensor& t, int64_t low, int64_t high) {
  draw_into(t, [&](const Tensor& out, Generator& gen) {
    SMP_KERNEL(random_int, out.device())(out, low, high, gen);
  });
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
  draw_into(*this, [&](const Tensor& out, Generator& gen) {
    SMP_KERNEL(uniform, out.device())(out, from, to, gen);
  });
  bump_version();
  return *this;
}

Tensor& Tensor::normal_(double mean, double std) {
  SMP_PLACE_OP("normal_", *this);
  check_inplace_random(*this, "normal_");
  SMP_CHECK(is_floating_point(), "normal_: expected a floating-point tensor, got {}",
            dtype_name(dtype()));
  SMP_CHECK(std >= 0.0, "normal_: expected std >= 0, got {}", std);
  draw_into(*this, [&](const Tensor& out, Generator& gen) {
    SMP_KERNEL(normal, out.device())(out, mean, std, gen);
  });
  bump_version();
  return *this;
}

Tensor& Tensor::bernoulli_(double p) {
  SMP_PLACE_OP("bernoulli_", *this);
  check_inplace_random(*this, "bernoulli_");
  SMP_CHECK(p >= 0.0 && p <= 1.0, "bernoulli_: expected 0 <= p <= 1, got {}", p);
  draw_into(*this, [&](const Tensor& out, Generator& gen) {
    SMP_KERNEL(bernoulli, out.device())(out, p, gen);
  });
  bump_version();
  return *this;
}

Tensor& Tensor::random_(int64_t from, int64_t to) {
  SMP_PLACE_OP("random_", *this);
  check_inplace_random(*this, "random_");
  SMP_CHECK(from < to, "random_: expected from < to, got from={} to={}", from, to);
  fill_random_int(*this, from, to);
  bump_version();
  return *this;
}

Tensor& Tensor::random_() {
  SMP_PLACE_OP("random_", *this);
  check_inplace_random(*this, "random_");
  // int64's range, 2^63, is passed as high = INT64_MIN (2^63 as unsigned) with low = 0.
  int64_t high = 0;
  switch (dtype()) {
    case kFloat64:
      high = (int64_t{1} << 53) + 1;
      break;
    case kFloat32:
      high = (int64_t{1} << 24) + 1;
      break;
    case kFloat16:
      high = (int64_t{1} << 11) + 1;
      break;
    case kBFloat16:
      high = (int64_t{1} << 8) + 1;
      break;
    case kInt64:
      high = std::numeric_limits<int64_t>::min();
      break;
    case kInt32:
      high = int64_t{1} << 31;
      break;
    case kBool:
      high = 2;
      break;
    default:
      high = int64_t{1} << (8 * element_size() - (dtype() == kUInt8 ? 0 : 1));
      break;
  }
  fill_random_int(*this, 0, high);
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
  fill_random_int(t, low, high);
  return t;
}

Tensor randint(int64_t high, const Shape& shape, const TensorOptions& o) {
  return randint(0, high, shape, o);
}

// torch's CPU randperm. Below 2^32/20: a forward Fisher–Yates in which step i swaps
// position i with i + (random() mod (n − i)); above, where 32-bit draws would be biased,
// the inside-out variant over random64().
std::vector<int64_t> randperm_values(int64_t n, Generator& gen) {
  SMP_CHECK(n >= 0, "randperm: expected n >= 0, got {}", n);
  SMP_CHECK(gen.kind() == Generator::Kind::kMT19937, "randperm: expected a CPU generator");
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::lock_guard<std::mutex> lock(gen.mutex());
  if (n < static_cast<int64_t>(std::numeric_limits<uint32_t>::max() / 20)) {
    std::iota(perm.begin(), perm.end(), int64_t{0});
    for (int64_t i = 0; i + 1 < n; ++i) {
      const auto z = static_cast<int64_t>(gen.random() % static_cast<uint32_t>(n - i));
      std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(i + z)]);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const auto z = static_cast<size_t>(gen.random64() % static_cast<uint64_t>(i + 1));
      perm[static_cast<size_t>(i)] = perm[z];
      perm[z] = i;
    }
  }
  return perm;
}

Tensor randperm(int64_t n, Generator& gen, const TensorOptions& o) {
  detail::HookPause factory;
  Dtype dt = o.has_dtype() ? o.dtype() : kInt64;
  Device dev = o.has_device() ? o.device() : Device(kCPU);
  Tensor cpu = tensor<int64_t>(randperm_values(n, gen), {n}, kInt64);
  return cpu.to(TensorOptions(dt).device(dev));
}

// On a CUDA device the permutation is drawn on the host from that device's counter-based
// generator: step k swaps position n−1−k with a uniform position in [0, n−1−k], from word
// k of the counter rule (cuda/random.cu).
Tensor randperm(int64_t n, const TensorOptions& o) {
  detail::HookPause factory;
  SMP_CHECK(n >= 0, "randperm: expected n >= 0, got {}", n);
  Dtype dt = o.has_dtype() ? o.dtype() : kInt64;
  Device dev = o.has_device() ? o.device() : Device(kCPU);
  if (dev.is_meta()) return empty({n}, TensorOptions(dt).device(dev));
  Generator& gen = default_generator(dev);
  if (gen.kind() == Generator::Kind::kMT19937) return randperm(n, gen, o);
  auto [seed, offset] = gen.reserve((static_cast<uint64_t>(n) + 3) / 4);
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
