// CPU kernels for the random fills: PyTorch 1.13's CPU kernels, draw for draw.
//
// Words come from the CPU generator's mt19937 in element order, which for a strided tensor
// is memory order (the order torch's TensorIterator walks). w is one 32-bit word, w64 two
// words with the first in the high half. The mappings, as torch's (its CPU kernels are built
// with FMA contraction, hence the fma below):
//   uniform_(a, b)  x = (w & (2^d − 1))·2^−d with d = 24 (float32), 11 (float16), 8 (bfloat16),
//                   or x = (w64 & (2^53 − 1))·2^−53 (float64); value = fma(x, b − a, a) with a
//                   and b first rounded to the dtype.
//   normal_(m, s)   numel ≥ 16 and contiguous: one uniform x per element (as uniform_(0, 1)),
//                   then per 16-element block j = 0..7: u1 = 1 − x[j], u2 = x[j+8],
//                   r = √(−2 ln u1), θ = 2π·u2, out[j] = fma(r cos θ, s, m),
//                   out[j+8] = fma(r sin θ, s, m); when numel % 16 ≠ 0 the last 16 elements
//                   are drawn again and transformed as one more block. float32 there uses
//                   vectorised log/sin/cos in torch, so values agree to an ulp or so.
//                   Otherwise, element by element, torch's normal_distribution<double>: a
//                   sample cached in the generator if there is one, else u1, u2 from two w64,
//                   r = √(−2 ln(1 − u2)), θ = 2π·u1, value r cos θ and r sin θ cached.
//   bernoulli_(p)   (w64 & (2^53 − 1))·2^−53 < p, for every dtype.
//   random_int      range = high − low: low + w64 mod range when range ≥ 2^32, else
//                   low + w mod range.
// Words are drawn serially (the stream is sequential) in chunks that the value mapping then
// consumes while they are in cache.
#include <smp/engine/random.h>

// GCC 12 reports false "(maybe) uninitialized" warnings inside Eigen's AVX-512 packet code.
#if !defined(__clang__)  // clang has no -Wmaybe-uninitialized and would warn about the pragma
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "cpu/loops.h"
#include "kernels.h"
#include "ops/op_utils.h"

namespace smp::cpu {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr int64_t kChunk = 8192;  // elements per chunk of words

/// Element i of [0, n) gets f(i, words) where words holds kWords words for it.
template <int kWords, class F>
void for_each_draw(Generator& gen, int64_t n, F f) {
  uint32_t buf[kChunk * kWords];
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    int64_t c = std::min(kChunk, n - i0);
    gen.fill(buf, c * kWords);
    f(i0, c, static_cast<const uint32_t*>(buf));
  }
}

inline uint64_t word64(const uint32_t* w) { return (static_cast<uint64_t>(w[0]) << 32) | w[1]; }
inline double u53(uint64_t v) {
  return static_cast<double>(v & ((uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

template <class T>
constexpr int mantissa_bits() {
  if constexpr (std::is_same_v<T, Half>)
    return 11;
  else if constexpr (std::is_same_v<T, BFloat16>)
    return 8;
  else
    return 24;
}

// torch's uniform in [0, 1) for a float32/16/bf16 fill: the word's low d bits · 2^−d, d being
// the dtype's mantissa width (24, 11 or 8), computed in float.
template <class T>
inline float unit_uniform(uint32_t w) {
  constexpr int kBits = mantissa_bits<T>();
  constexpr uint32_t kMask = (uint32_t{1} << kBits) - 1;
  return static_cast<float>(w & kMask) * (1.0f / static_cast<float>(uint32_t{1} << kBits));
}

template <class T>
inline T from_int(int64_t v) {
  if constexpr (std::is_same_v<T, bool>)
    return v != 0;
  else if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    return T(static_cast<float>(v));
  else
    return static_cast<T>(v);
}

/// Runs gen_fn on a contiguous tensor whose elements, in order, are out's in memory order:
/// out itself, or a permuted view of it, or a scratch copied back.
template <class Fn>
void in_memory_order(const Tensor& out, Fn gen_fn) {
  if (out.is_contiguous()) return gen_fn(out);
  Tensor view = out.permute(ops::dims_in_memory_order(out));
  if (view.is_contiguous()) return gen_fn(view);
  Tensor tmp = ops::empty_out(view.sizes(), view.dtype(), view.device());
  gen_fn(tmp);
  SMP_KERNEL(copy, out.device())(view, tmp);
}

void uniform_cpu(const Tensor& out, double from, double to, Generator& gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  in_memory_order(out, [&](const Tensor& o) {
    int64_t n = o.numel();
    if (o.dtype() == kFloat64) {
      double* p = o.data_ptr<double>();
      const double range = to - from;
      for_each_draw<2>(gen, n, [&](int64_t i0, int64_t c, const uint32_t* w) {
        for (int64_t k = 0; k < c; ++k) p[i0 + k] = std::fma(u53(word64(w + 2 * k)), range, from);
      });
      return;
    }
    SMP_DISPATCH_FLOATING_AND_HALF(o.dtype(), "uniform_", [&] {
      // Bounds and their difference round to the dtype first, as torch's arithmetic does.
      const float a = static_cast<float>(static_cast<scalar_t>(from));
      const float range = static_cast<float>(
          static_cast<scalar_t>(static_cast<float>(static_cast<scalar_t>(to)) - a));
      scalar_t* p = o.data_ptr<scalar_t>();
      for_each_draw<1>(gen, n, [&](int64_t i0, int64_t c, const uint32_t* w) {
        for (int64_t k = 0; k < c; ++k)
          p[i0 + k] = static_cast<scalar_t>(std::fma(unit_uniform<scalar_t>(w[k]), range, a));
      });
    });
  });
}

// torch's normal_distribution<double>, one element at a time (the generator keeps the sine
// of each Box–Muller pair for the next call).
double scalar_normal(Generator& gen, double mean, double std) {
  auto& cached = gen.cached_normal();
  double z;
  if (cached) {
    z = *cached;
    cached.reset();
  } else {
    const double u1 = u53(gen.random64()), u2 = u53(gen.random64());
    const double r = std::sqrt(-2.0 * std::log(1.0 - u2)), theta = kTwoPi * u1;
    cached = r * std::sin(theta);
    z = r * std::cos(theta);
  }
  return std::fma(z, std, mean);
}

// Box–Muller over one float64 block of 16 uniforms in place (u1 from the first half, u2 the
// second), with libm in double as torch's scalar code.
void box_muller_16(double* d, double mean, double std) {
  for (int j = 0; j < 8; ++j) {
    const double r = std::sqrt(-2.0 * std::log(1.0 - d[j])), theta = kTwoPi * d[j + 8];
    d[j] = std::fma(r * std::cos(theta), std, mean);
    d[j + 8] = std::fma(r * std::sin(theta), std, mean);
  }
}

// The same over `blocks` consecutive blocks of a float, float16 or bfloat16 buffer, a tile at
// a time with Eigen's vectorised float log/sin/cos (torch vectorises these too, with its own
// approximations; the two agree to a few ulps). Tiles are always computed whole, so a value
// never depends on where a thread's range starts.
template <class T>
void box_muller_blocks(T* d, int64_t blocks, double mean, double std) {
  constexpr int64_t kTile = 128;  // blocks, i.e. 1024 pairs
  Eigen::ArrayXf u1 = Eigen::ArrayXf::Constant(8 * kTile, 0.5f), u2 = u1, r(8 * kTile),
                 theta(8 * kTile), c(8 * kTile), sn(8 * kTile);
  const float m = static_cast<float>(mean), sd = static_cast<float>(std);
  for (int64_t t0 = 0; t0 < blocks; t0 += kTile) {
    const int64_t nb = std::min(kTile, blocks - t0);
    for (int64_t b = 0; b < nb; ++b)
      for (int j = 0; j < 8; ++j) {
        u1[8 * b + j] = 1.0f - static_cast<float>(d[16 * (t0 + b) + j]);
        u2[8 * b + j] = static_cast<float>(d[16 * (t0 + b) + j + 8]);
      }
    r = (-2.0f * u1.log()).sqrt();
    theta = static_cast<float>(kTwoPi) * u2;
    c = r * theta.cos();
    sn = r * theta.sin();
    for (int64_t b = 0; b < nb; ++b)
      for (int j = 0; j < 8; ++j) {
        d[16 * (t0 + b) + j] = static_cast<T>(std::fma(c[8 * b + j], sd, m));
        d[16 * (t0 + b) + j + 8] = static_cast<T>(std::fma(sn[8 * b + j], sd, m));
      }
  }
}

template <class T>
void transform_blocks(T* d, int64_t blocks, double mean, double std) {
  parallel_for(blocks, 1024, [&](int64_t b0, int64_t b1) {
    if constexpr (std::is_same_v<T, double>) {
      for (int64_t b = b0; b < b1; ++b) box_muller_16(d + 16 * b, mean, std);
    } else {
      box_muller_blocks(d + 16 * b0, b1 - b0, mean, std);
    }
  });
}

void normal_cpu(const Tensor& out, double mean, double std, Generator& gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  const int64_t n = out.numel();
  if (n < 16 || !out.is_contiguous()) {
    in_memory_order(out, [&](const Tensor& o) {
      SMP_DISPATCH_FLOATING_AND_HALF(o.dtype(), "normal_", [&] {
        scalar_t* p = o.data_ptr<scalar_t>();
        for (int64_t i = 0; i < n; ++i) p[i] = static_cast<scalar_t>(scalar_normal(gen, mean, std));
      });
    });
    return;
  }
  // Uniforms first (the same words and values uniform_(0, 1) would give), then the blocks.
  auto uniforms = [&](auto* p, int64_t count) {
    using T = std::remove_pointer_t<decltype(p)>;
    if constexpr (std::is_same_v<T, double>) {
      for_each_draw<2>(gen, count, [&](int64_t i0, int64_t c, const uint32_t* w) {
        for (int64_t k = 0; k < c; ++k) p[i0 + k] = u53(word64(w + 2 * k));
      });
    } else {
      for_each_draw<1>(gen, count, [&](int64_t i0, int64_t c, const uint32_t* w) {
        for (int64_t k = 0; k < c; ++k) p[i0 + k] = static_cast<T>(unit_uniform<T>(w[k]));
      });
    }
  };
  SMP_DISPATCH_FLOATING_AND_HALF(out.dtype(), "normal_", [&] {
    scalar_t* p = out.data_ptr<scalar_t>();
    uniforms(p, n);
    transform_blocks(p, n / 16, mean, std);
    if (n % 16 != 0) {  // the last 16 again, drawn afresh (overlapping the last full block)
      uniforms(p + n - 16, 16);
      transform_blocks(p + n - 16, 1, mean, std);
    }
  });
}

void bernoulli_cpu(const Tensor& out, double p, Generator& gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  // u < p  ⇔  m < p·2^53 for the 53-bit integer m behind u; p·2^53 is exact, so the integer
  // test below is the same comparison without the conversion.
  const double scaled = std::ceil(p * 9007199254740992.0);
  const uint64_t threshold =
      scaled >= 9007199254740992.0 ? (uint64_t{1} << 53) : static_cast<uint64_t>(scaled);
  in_memory_order(out, [&](const Tensor& o) {
    SMP_DISPATCH_ALL(o.dtype(), "bernoulli_", [&] {
      scalar_t* d = o.data_ptr<scalar_t>();
      for_each_draw<2>(gen, o.numel(), [&](int64_t i0, int64_t c, const uint32_t* w) {
        // Branch-free: a branch on a random bit mispredicts half the time at p = 0.5.
        for (int64_t k = 0; k < c; ++k) {
          const uint64_t m = (static_cast<uint64_t>(w[2 * k] & 0x1fffffu) << 32) | w[2 * k + 1];
          d[i0 + k] = from_int<scalar_t>(static_cast<int64_t>(m < threshold));
        }
      });
    });
  });
}

void random_int_cpu(const Tensor& out, int64_t low, int64_t high, Generator& gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  const uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
  in_memory_order(out, [&](const Tensor& o) {
    SMP_DISPATCH_ALL(o.dtype(), "random_int", [&] {
      scalar_t* d = o.data_ptr<scalar_t>();
      auto put = [&](int64_t i, uint64_t r) {
        d[i] = from_int<scalar_t>(static_cast<int64_t>(static_cast<uint64_t>(low) + r % range));
      };
      if (range >= (uint64_t{1} << 32)) {
        for_each_draw<2>(gen, o.numel(), [&](int64_t i0, int64_t c, const uint32_t* w) {
          for (int64_t k = 0; k < c; ++k) put(i0 + k, word64(w + 2 * k));
        });
      } else {
        for_each_draw<1>(gen, o.numel(), [&](int64_t i0, int64_t c, const uint32_t* w) {
          for (int64_t k = 0; k < c; ++k) put(i0 + k, w[k]);
        });
      }
    });
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.uniform = &uniform_cpu;
  t.normal = &normal_cpu;
  t.bernoulli = &bernoulli_cpu;
  t.random_int = &random_int_cpu;
});

}  // namespace smp::cpu
