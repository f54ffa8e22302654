// Float32 tolerances from rounding-error analysis, for comparing two float32 computations of
// one quantity that differ only in the order of their sums: PyTorch's kernels against ours,
// another BLAS kernel or thread split, a pipeline or data-parallel split against one process.
//
// The model. A float32 sum of n terms of mixed sign rounds at every addition; the errors are
// independent and of mean zero (Higham & Mary, "A new approach to probabilistic rounding error
// analysis", SIAM J. Sci. Comput. 41(5), 2019), so they add up as a random walk to about
// √n·u·(the scale of the result), u = 2⁻²⁴. A value computed through a chain of such sums (a
// network's forward, then its backward) inherits each sum's relative error, since a layer
// passes an error in its input on linearly; added up as if they all pointed the same way, the
// errors stay below u·Σ√n_l relative to the values' scale. Two evaluations each carry such an
// error, which gives a factor 2, and a few steps amplify error (batch norm over a handful of
// values, a softmax near saturation), for which `growth` is a stated allowance.
//
// The scale of an element is the RMS of its tensor, not the element itself: every element of
// an activation or gradient sums terms of the same population, and one that cancels to near
// zero keeps the absolute error of the terms it summed. A purely element-relative tolerance
// fails there on another CPU, which is how the ResNet-18 golden test once failed.
//
// The deterministic worst case (γ_n = n·u per sum) is 10–100× looser and would let real bugs
// hide; the bound here holds with margin on every OpenBLAS kernel this CPU can run (see each
// test's comment for the measured error against its bound).
#pragma once

#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cmath>
#include <string>
#include <vector>

namespace smp::test {

/// Unit roundoff of float32.
inline constexpr double kFloat32Unit = 0x1p-24;

/// The sums along the path from the inputs to a compared value; its `relative()` bound is the
/// largest relative difference (to the tensor's RMS) two float32 evaluations may show.
class Float32Path {
 public:
  /// `count` sums of `n` terms each lie on the path.
  Float32Path& sum(double n, int count = 1) {
    sqrt_sum_ += count * std::sqrt(std::max(n, 1.0));
    return *this;
  }
  /// Steps on the path that amplify error (see the file comment): their allowance multiplies
  /// the bound.
  Float32Path& growth(double factor) {
    growth_ *= factor;
    return *this;
  }
  double sqrt_sum() const { return sqrt_sum_; }
  /// Two evaluations, each within u·Σ√n_l of the exact value, times the growth allowance.
  double relative() const { return 2 * growth_ * kFloat32Unit * sqrt_sum_; }

 private:
  double sqrt_sum_ = 0;
  double growth_ = 1;
};

/// Root mean square of a tensor's elements (0 for an empty tensor).
inline double rms(const std::vector<double>& v) {
  double sq = 0;
  for (double x : v) sq += x * x;
  return v.empty() ? 0 : std::sqrt(sq / static_cast<double>(v.size()));
}

/// "" when every |got − want| ≤ rel·(|want| + RMS(want)), else the worst element and how far
/// it is outside; also reports the worst error as a fraction of the bound in `*used`.
inline std::string float32_close(const Tensor& got, const Tensor& want, double rel,
                                 double* used = nullptr) {
  if (got.sizes() != want.sizes()) return "shapes differ";
  auto g = got.contiguous().to_vector<double>(), w = want.contiguous().to_vector<double>();
  const double scale = rms(w);
  double worst = 0;
  size_t worst_i = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(g[i]) != std::isnan(w[i]))
      return fmt::format("element {} is NaN on one side", i);
    const double d = std::abs(g[i] - w[i]);
    if (d == 0) continue;
    const double bound = rel * (std::abs(w[i]) + scale);
    const double ratio = bound > 0 ? d / bound : INFINITY;
    if (ratio > worst) worst = ratio, worst_i = i;
  }
  if (used) *used = worst;
  if (worst <= 1) return "";
  return fmt::format(
      "element {}: {} vs {} (|diff| {:.3e}, {:.2f}x the bound {:.3e}·(|x| + RMS {:.3e}))", worst_i,
      g[worst_i], w[worst_i], std::abs(g[worst_i] - w[worst_i]), worst, rel, scale);
}

/// Asserts float32_close: EXPECT_FLOAT32_CLOSE(got, want, path.relative()).
#define EXPECT_FLOAT32_CLOSE(got, want, rel)                             \
  do {                                                                   \
    std::string _msg = ::smp::test::float32_close((got), (want), (rel)); \
    EXPECT_TRUE(_msg.empty()) << _msg;                                   \
  } while (0)

}  // namespace smp::test
