// CPU kernels for the random fills: uniform, normal, bernoulli, random integers.
//
// THE COUNTER RULE (every backend must follow it, so CPU and CUDA draw the same numbers):
//   W(i)  = Philox::draw(seed, offset + i/4, 0)[i % 4]   — element i's primary 32-bit word
//   W2(i) = Philox::draw(seed, offset + i/4, 1)[i % 4]   — its second word, where one is needed
// The second stream (counter_hi = 1) lies outside every block the generator hands out, so a
// kernel that reserved ceil(n/4) blocks can use both streams. Results therefore depend only
// on (seed, offset, i), never on the number of threads or the launch geometry.
//
// Mappings (u24, u53 are uniforms in [0, 1)):
//   u24(w)     = (w >> 8) · 2^-24
//   u53(a, b)  = ((a >> 5) · 2^26 + (b >> 6)) · 2^-53          with a = W(i), b = W2(i)
//   uniform:   float32/16/bf16: from + u24(W(i)) · (to − from), computed in float;
//              float64:         from + u53(W(i), W2(i)) · (to − from), computed in double;
//              a value rounded up to `to` is replaced by `from`, keeping [from, to).
//   normal:    Box–Muller within one block: elements 4k+0 and 4k+1 pair up on words (0, 1),
//              4k+2 and 4k+3 on words (2, 3). With (u1, u2) from the even and odd word,
//              r = sqrt(−2 ln(1 − u1)), θ = 2π·u2: the even element is r·cos θ, the odd
//              r·sin θ, then mean + std·z. float64 uses u53 over both streams (u1 from
//              W/W2 of the even element, u2 of the odd one) and double math; the other
//              dtypes use u24 and float math (Eigen's vectorised log/sin/cos on the CPU). CUDA
//              agrees to the last few ulps of log/sin/cos; uniform, bernoulli and
//              random_int agree bit for bit.
//   bernoulli: out = u24(W(i)) < p, whatever out's dtype.
//   random_int: range = high − low. range ≤ 2^32: low + W(i) mod range; otherwise
//              low + ((W(i) << 32) | W2(i)) mod range.
// GCC 12 reports false "(maybe) uninitialized" warnings inside Eigen's AVX-512 packet code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <smp/engine/random.h>

#include <Eigen/Core>
#include <cmath>

#include "cpu/loops.h"
#include "kernels.h"

namespace smp::cpu {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

// Runs f(block, w, w2, first, count) over the 4-element blocks of [0, n) in parallel, where
// w/w2 are the two streams' words of that block and elements [first, first+count) are due.
template <bool kSecondStream, class F>
void for_each_block(int64_t n, uint64_t seed, uint64_t offset, F f) {
  int64_t blocks = (n + 3) / 4;
  parallel_for(blocks, 2048, [&](int64_t b0, int64_t b1) {
    uint32_t w[4], w2[4] = {0, 0, 0, 0};
    for (int64_t b = b0; b < b1; ++b) {
      Philox::draw(seed, offset + static_cast<uint64_t>(b), 0, w);
      if constexpr (kSecondStream) Philox::draw(seed, offset + static_cast<uint64_t>(b), 1, w2);
      f(b * 4, w, w2, std::min<int64_t>(4, n - b * 4));
    }
  });
}

// Generates into a contiguous buffer of out's dtype, then scatters if out is strided.
template <class Gen>
void generate(const Tensor& out, Gen gen) {
  if (out.is_contiguous()) {
    gen(out);
    return;
  }
  Tensor tmp = ops::empty_out(out.sizes(), out.dtype(), out.device());
  gen(tmp);
  SMP_KERNEL(copy, out.device())(out, tmp);
}

template <class T>
inline T to_elem(float v) {
  if constexpr (std::is_same_v<T, bool>)
    return v != 0.0f;
  else
    return static_cast<T>(v);
}

void uniform_cpu(const Tensor& out, double from, double to, uint64_t seed, uint64_t offset) {
  int64_t n = out.numel();
  generate(out, [&](const Tensor& o) {
    if (o.dtype() == kFloat64) {
      double* p = o.data_ptr<double>();
      double range = to - from;
      for_each_block<true>(n, seed, offset,
                           [&](int64_t i0, const uint32_t* w, const uint32_t* w2, int64_t c) {
                             for (int64_t k = 0; k < c; ++k) {
                               double v = from + philox_u53(w[k], w2[k]) * range;
                               p[i0 + k] = v >= to && to > from ? from : v;
                             }
                           });
      return;
    }
    SMP_DISPATCH_FLOATING_AND_HALF(o.dtype(), "uniform_", [&] {
      scalar_t* p = o.data_ptr<scalar_t>();
      float f = static_cast<float>(from), t = static_cast<float>(to), range = t - f;
      scalar_t sf = static_cast<scalar_t>(f);
      for_each_block<false>(n, seed, offset,
                            [&](int64_t i0, const uint32_t* w, const uint32_t*, int64_t c) {
                              for (int64_t k = 0; k < c; ++k) {
                                scalar_t v = static_cast<scalar_t>(f + philox_u24(w[k]) * range);
                                p[i0 + k] = static_cast<float>(v) >= t && t > f ? sf : v;
                              }
                            });
    });
  });
}

void normal_cpu(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
  int64_t n = out.numel();
  generate(out, [&](const Tensor& o) {
    if (o.dtype() == kFloat64) {
      double* p = o.data_ptr<double>();
      for_each_block<true>(n, seed, offset,
                           [&](int64_t i0, const uint32_t* w, const uint32_t* w2, int64_t c) {
                             for (int pair = 0; pair < 2 && 2 * pair < c; ++pair) {
                               double u1 = philox_u53(w[2 * pair], w2[2 * pair]),
                                      u2 = philox_u53(w[2 * pair + 1], w2[2 * pair + 1]);
                               double r = std::sqrt(-2.0 * std::log(1.0 - u1)), th = kTwoPi * u2;
                               p[i0 + 2 * pair] = mean + std * r * std::cos(th);
                               if (2 * pair + 1 < c)
                                 p[i0 + 2 * pair + 1] = mean + std * r * std::sin(th);
                             }
                           });
      return;
    }
    SMP_DISPATCH_FLOATING_AND_HALF(o.dtype(), "normal_", [&] {
      // Pairs are transformed a tile at a time so Eigen's vectorised log/sin/cos apply;
      // pair q covers elements 2q (cos) and 2q+1 (sin), exactly the per-block rule above.
      scalar_t* p = o.data_ptr<scalar_t>();
      float m = static_cast<float>(mean), sd = static_cast<float>(std);
      constexpr int64_t kTile = 1024;  // blocks per tile
      int64_t blocks = (n + 3) / 4;
      parallel_for(blocks, 2048, [&](int64_t b0, int64_t b1) {
        Eigen::ArrayXf u1 = Eigen::ArrayXf::Constant(2 * kTile, 0.5f), u2 = u1, r(2 * kTile),
                       th(2 * kTile), zc(2 * kTile), zs(2 * kTile);
        uint32_t w[4];
        for (int64_t t0 = b0; t0 < b1; t0 += kTile) {
          int64_t nb = std::min(kTile, b1 - t0), np = 2 * nb;
          for (int64_t k = 0; k < nb; ++k) {
            Philox::draw(seed, offset + static_cast<uint64_t>(t0 + k), 0, w);
            u1[2 * k] = philox_u24(w[0]);
            u2[2 * k] = philox_u24(w[1]);
            u1[2 * k + 1] = philox_u24(w[2]);
            u2[2 * k + 1] = philox_u24(w[3]);
          }
          // Whole tiles, never head(np): Eigen computes a ragged tail with scalar libm calls
          // whose last bits differ from the packet path, and tile edges depend on the
          // thread split.
          r = (-2.0f * (1.0f - u1).log()).sqrt();
          th = static_cast<float>(kTwoPi) * u2;
          zc = m + sd * r * th.cos();
          zs = m + sd * r * th.sin();
          int64_t q0 = 2 * t0;  // first pair of the tile
          for (int64_t q = 0; q < np; ++q) {
            int64_t e = 2 * (q0 + q);
            if (e < n) p[e] = static_cast<scalar_t>(zc[q]);
            if (e + 1 < n) p[e + 1] = static_cast<scalar_t>(zs[q]);
          }
        }
      });
    });
  });
}

void bernoulli_cpu(const Tensor& out, double p, uint64_t seed, uint64_t offset) {
  int64_t n = out.numel();
  generate(out, [&](const Tensor& o) {
    SMP_DISPATCH_ALL(o.dtype(), "bernoulli_", [&] {
      scalar_t* d = o.data_ptr<scalar_t>();
      for_each_block<false>(
          n, seed, offset, [&](int64_t i0, const uint32_t* w, const uint32_t*, int64_t c) {
            for (int64_t k = 0; k < c; ++k)
              d[i0 + k] =
                  to_elem<scalar_t>(static_cast<double>(philox_u24(w[k])) < p ? 1.0f : 0.0f);
          });
    });
  });
}

void random_int_cpu(const Tensor& out, int64_t low, int64_t high, uint64_t seed, uint64_t offset) {
  int64_t n = out.numel();
  uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
  generate(out, [&](const Tensor& o) {
    SMP_DISPATCH_ALL(o.dtype(), "random_int", [&] {
      scalar_t* d = o.data_ptr<scalar_t>();
      auto put = [&](int64_t i, uint64_t r) {
        int64_t v = static_cast<int64_t>(static_cast<uint64_t>(low) + r % range);
        if constexpr (std::is_same_v<scalar_t, bool>)
          d[i] = v != 0;
        else if constexpr (std::is_same_v<scalar_t, Half> || std::is_same_v<scalar_t, BFloat16>)
          d[i] = scalar_t(static_cast<float>(v));
        else
          d[i] = static_cast<scalar_t>(v);
      };
      if (range <= (uint64_t{1} << 32)) {
        for_each_block<false>(n, seed, offset,
                              [&](int64_t i0, const uint32_t* w, const uint32_t*, int64_t c) {
                                for (int64_t k = 0; k < c; ++k) put(i0 + k, w[k]);
                              });
      } else {
        for_each_block<true>(n, seed, offset,
                             [&](int64_t i0, const uint32_t* w, const uint32_t* w2, int64_t c) {
                               for (int64_t k = 0; k < c; ++k)
                                 put(i0 + k, (static_cast<uint64_t>(w[k]) << 32) | w2[k]);
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
