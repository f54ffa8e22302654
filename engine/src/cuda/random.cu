// CUDA kernels for the random fills, counter-based so results do not depend on the launch
// geometry. Each call reserves ceil(n/4) Philox blocks from the device's generator.
//
// THE COUNTER RULE:
//   W(i)  = Philox::draw(seed, offset + i/4, 0)[i % 4]   — element i's primary 32-bit word
//   W2(i) = Philox::draw(seed, offset + i/4, 1)[i % 4]   — its second word, where one is needed
// The second stream (counter_hi = 1) lies outside every block the generator hands out.
//
// Mappings (u24, u53 are uniforms in [0, 1), random.h):
//   uniform:   float32/16/bf16: from + u24(W(i)) · (to − from), in float; float64: from +
//              u53(W(i), W2(i)) · (to − from), in double; a value rounded up to `to`
//              becomes `from`.
//   normal:    Box–Muller within one block: elements 4k+0 and 4k+1 pair up on words (0, 1),
//              4k+2 and 4k+3 on words (2, 3); r = sqrt(−2 ln(1 − u1)), θ = 2π·u2, the even
//              element r·cos θ, the odd r·sin θ, then mean + std·z.
//   bernoulli: out = u24(W(i)) < p.
//   random_int: range = high − low ≤ 2^32: low + W(i) mod range; otherwise
//              low + ((W(i) << 32) | W2(i)) mod range.
#include <smp/engine/random.h>

#include "cuda/loops.cuh"
#include "kernels.h"
#include "ops/op_utils.h"

namespace smp::cuda {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

enum class Dist { Uniform, Normal, Bernoulli, RandomInt };

struct Params {
  double a, b;     // uniform: from, to; normal: mean, std; bernoulli: p
  int64_t low;     // random_int
  uint64_t range;  // random_int: high - low
};

template <class T>
__device__ inline T from_int(int64_t v) {
  if constexpr (std::is_same_v<T, bool>)
    return v != 0;
  else if constexpr (is_half_v<T>)
    return T(static_cast<float>(v));
  else
    return static_cast<T>(v);
}

template <class T, Dist D, bool kSecond>
__global__ void random_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, Params prm) {
  int64_t blocks = (n + 3) / 4;
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += stride) {
    uint32_t w[4], w2[4] = {0, 0, 0, 0};
    Philox::draw(seed, offset + static_cast<uint64_t>(b), 0, w);
    if constexpr (kSecond) Philox::draw(seed, offset + static_cast<uint64_t>(b), 1, w2);
    int64_t i0 = b * 4;
    int c = static_cast<int>(n - i0 < 4 ? n - i0 : 4);
    T* p = out + i0;
    if constexpr (D == Dist::Uniform) {
      if constexpr (std::is_same_v<T, double>) {
        double range = prm.b - prm.a;
        for (int k = 0; k < c; ++k) {
          double v = prm.a + philox_u53(w[k], w2[k]) * range;
          p[k] = v >= prm.b && prm.b > prm.a ? prm.a : v;
        }
      } else {
        float f = static_cast<float>(prm.a), t = static_cast<float>(prm.b), range = t - f;
        T sf = convert<T>(f);
        for (int k = 0; k < c; ++k) {
          T v = convert<T>(f + philox_u24(w[k]) * range);
          p[k] = convert<float>(v) >= t && t > f ? sf : v;
        }
      }
    } else if constexpr (D == Dist::Normal) {
      if constexpr (std::is_same_v<T, double>) {
        for (int pair = 0; pair < 2 && 2 * pair < c; ++pair) {
          double u1 = philox_u53(w[2 * pair], w2[2 * pair]),
                 u2 = philox_u53(w[2 * pair + 1], w2[2 * pair + 1]);
          double r = ::sqrt(-2.0 * ::log(1.0 - u1)), th = kTwoPi * u2;
          p[2 * pair] = prm.a + prm.b * r * ::cos(th);
          if (2 * pair + 1 < c) p[2 * pair + 1] = prm.a + prm.b * r * ::sin(th);
        }
      } else {
        float m = static_cast<float>(prm.a), s = static_cast<float>(prm.b);
        for (int pair = 0; pair < 2 && 2 * pair < c; ++pair) {
          float u1 = philox_u24(w[2 * pair]), u2 = philox_u24(w[2 * pair + 1]);
          float r = sqrtf(-2.0f * logf(1.0f - u1)), th = static_cast<float>(kTwoPi) * u2;
          p[2 * pair] = convert<T>(m + s * r * cosf(th));
          if (2 * pair + 1 < c) p[2 * pair + 1] = convert<T>(m + s * r * sinf(th));
        }
      }
    } else if constexpr (D == Dist::Bernoulli) {
      for (int k = 0; k < c; ++k)
        p[k] = from_int<T>(static_cast<double>(philox_u24(w[k])) < prm.a ? 1 : 0);
    } else {
      for (int k = 0; k < c; ++k) {
        uint64_t r = kSecond ? ((static_cast<uint64_t>(w[k]) << 32) | w2[k]) : w[k];
        p[k] = from_int<T>(static_cast<int64_t>(static_cast<uint64_t>(prm.low) + r % prm.range));
      }
    }
  }
}

template <class T, Dist D, bool kSecond>
void launch(const Tensor& o, uint64_t seed, uint64_t offset, const Params& prm) {
  int64_t n = o.numel();
  int64_t blocks = (n + 3) / 4;
  random_kernel<T, D, kSecond><<<blocks_for(blocks), kThreads, 0, stream_of(o)>>>(
      static_cast<T*>(o.data_ptr()), n, seed, offset, prm);
  SMP_CUDA_KERNEL_LAUNCH_CHECK();
}

// Generates into a contiguous buffer of out's dtype, then scatters if out is strided.
template <class Gen>
void generate(const Tensor& out, Gen gen) {
  if (out.numel() == 0) return;
  DeviceGuard g(out);
  if (out.is_contiguous()) {
    gen(out);
    return;
  }
  Tensor tmp = ops::empty_out(out.sizes(), out.dtype(), out.device());
  gen(tmp);
  SMP_KERNEL(copy, out.device())(out, tmp);
}

void uniform_cuda(const Tensor& out, double from, double to, Generator& gen) {
  const auto [seed, offset] = gen.reserve((static_cast<uint64_t>(out.numel()) + 3) / 4);
  Params prm{from, to, 0, 0};
  generate(out, [&](const Tensor& o) {
    if (o.dtype() == kFloat64) return launch<double, Dist::Uniform, true>(o, seed, offset, prm);
    SMP_DISPATCH_FLOATING_AND_HALF(o.dtype(), "uniform_", [&] {
      launch<scalar_t, Dist::Uniform, false>(o, seed, offset, prm);
    });
  });
}

void normal_cuda(const Tensor& out, double mean, double std, Generator& gen) {
  const auto [seed, offset] = gen.reserve((static_cast<uint64_t>(out.numel()) + 3) / 4);
  Params prm{mean, std, 0, 0};
  generate(out, [&](const Tensor& o) {
    if (o.dtype() == kFloat64) return launch<double, Dist::Normal, true>(o, seed, offset, prm);
    SMP_DISPATCH_FLOATING_AND_HALF(
        o.dtype(), "normal_", [&] { launch<scalar_t, Dist::Normal, false>(o, seed, offset, prm); });
  });
}

void bernoulli_cuda(const Tensor& out, double p, Generator& gen) {
  const auto [seed, offset] = gen.reserve((static_cast<uint64_t>(out.numel()) + 3) / 4);
  Params prm{p, 0, 0, 0};
  generate(out, [&](const Tensor& o) {
    SMP_DISPATCH_ALL(o.dtype(), "bernoulli_",
                     [&] { launch<scalar_t, Dist::Bernoulli, false>(o, seed, offset, prm); });
  });
}

void random_int_cuda(const Tensor& out, int64_t low, int64_t high, Generator& gen) {
  const auto [seed, offset] = gen.reserve((static_cast<uint64_t>(out.numel()) + 3) / 4);
  Params prm{0, 0, low, static_cast<uint64_t>(high) - static_cast<uint64_t>(low)};
  SMP_CHECK(prm.range > 0, "random_int: expected low < high, got low {} and high {}", low, high);
  bool wide = prm.range > (uint64_t{1} << 32);
  generate(out, [&](const Tensor& o) {
    SMP_DISPATCH_ALL(o.dtype(), "random_int", [&] {
      if (wide)
        launch<scalar_t, Dist::RandomInt, true>(o, seed, offset, prm);
      else
        launch<scalar_t, Dist::RandomInt, false>(o, seed, offset, prm);
    });
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.uniform = &uniform_cuda;
  t.normal = &normal_cuda;
  t.bernoulli = &bernoulli_cuda;
  t.random_int = &random_int_cuda;
});

}  // namespace smp::cuda
