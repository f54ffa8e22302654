// The one finite-difference gradient check every differentiable op's test uses.
//
// gradcheck(f, inputs): inputs are float64 tensors (leaves). Computes central differences
// of sum(f(inputs) · v) for a fixed random v and compares them with what backward puts in
// each input's .grad(). Works for any strides, so tests pass non-contiguous views too.
#pragma once

#include <gtest/gtest.h>
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace smp::test {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-4;
};

/// Returns "" on success, else a description of the first mismatch.
inline std::string gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                             std::vector<Tensor> inputs, GradcheckOptions opt = {}) {
  for (auto& x : inputs) {
    if (!x.defined()) continue;
    if (x.dtype() != kFloat64) return "gradcheck needs float64 inputs";
    x.requires_grad_(true);
    x.mutable_grad() = Tensor();
  }
  Tensor out0;
  {
    NoGradGuard ng;
    out0 = f(inputs);
  }
  // A fixed, reproducible cotangent so every output element matters.
  std::vector<double> v(static_cast<size_t>(out0.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(1.0 + 0.7 * static_cast<double>(i));
  auto dot = [&](const Tensor& out) {
    auto o = out.to_vector<double>();
    double s = 0;
    for (size_t i = 0; i < o.size(); ++i) s += o[i] * v[i];
    return s;
  };
  Tensor out = f(inputs);
  if (!out.requires_grad()) return "output does not require grad";
  out.backward(tensor<double>(v).reshape(out.sizes()));  // reshape: also right for 0-dim

  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor x = inputs[k];
    if (!x.defined()) continue;
    Tensor analytic = x.grad().defined() ? x.grad() : zeros_like(x);
    auto a = analytic.to_vector<double>();
    // Walk the logical elements of x (it may be a strided view).
    int64_t n = x.numel();
    std::vector<int64_t> idx(static_cast<size_t>(x.dim()), 0);
    for (int64_t e = 0; e < n; ++e) {
      int64_t off = x.storage_offset();
      for (int64_t d = 0; d < x.dim(); ++d) off += idx[d] * x.stride(d);
      double* p = static_cast<double*>(x.storage()->data()) + off;
      double orig = *p;
      double plus, minus;
      {
        NoGradGuard ng;
        *p = orig + opt.eps;
        plus = dot(f(inputs));
        *p = orig - opt.eps;
        minus = dot(f(inputs));
        *p = orig;
      }
      double numeric = (plus - minus) / (2 * opt.eps);
      double got = a[static_cast<size_t>(e)];
      if (std::abs(numeric - got) > opt.atol + opt.rtol * std::abs(numeric)) {
        return fmt::format("input {} element {}: backward gives {}, finite differences give {}", k,
                           e, got, numeric);
      }
      for (int64_t d = x.dim() - 1; d >= 0; --d) {
        if (++idx[d] < x.size(d)) break;
        idx[d] = 0;
      }
    }
  }
  return "";
}

/// Asserts the gradient check passes: EXPECT_GRADCHECK(f, {a, b}).
#define EXPECT_GRADCHECK(f, ...)                                 \
  do {                                                           \
    std::string _msg = ::smp::test::gradcheck((f), __VA_ARGS__); \
    EXPECT_TRUE(_msg.empty()) << _msg;                           \
  } while (0)

/// Random float64 tensor for gradchecks, reproducible from `seed`.
inline Tensor randd(const Shape& shape, uint64_t seed = 0) {
  std::vector<double> v(static_cast<size_t>(std::max<int64_t>(1, [&] {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }())));
  uint64_t x = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (auto& e : v) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    e = static_cast<double>((x >> 11) & ((1ULL << 40) - 1)) / static_cast<double>(1ULL << 40) *
            2.0 -
        1.0;
  }
  int64_t n = 1;
  for (auto s : shape) n *= s;
  v.resize(static_cast<size_t>(n));
  return tensor<double>(v, shape.empty() ? Shape{} : shape, kFloat64).reshape(shape);
}

/// Max |a − b| ≤ atol + rtol·|b| elementwise; returns "" or the first mismatch.
inline std::string allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5,
                            double atol = 1e-6) {
  if (a.sizes() != b.sizes())
    return fmt::format("shapes differ: [{}] vs [{}]", fmt::join(a.sizes(), ","),
                       fmt::join(b.sizes(), ","));
  auto x = a.to_vector<double>();
  auto y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i) {
    bool both_nan = std::isnan(x[i]) && std::isnan(y[i]);
    if (!both_nan && !(std::abs(x[i] - y[i]) <= atol + rtol * std::abs(y[i])))
      return fmt::format("element {}: {} vs {} (|diff| {})", i, x[i], y[i], std::abs(x[i] - y[i]));
  }
  return "";
}

/// Largest |a − b| over the elements (infinity when the element counts differ).
inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = a.contiguous().to_vector<double>();
  auto y = b.contiguous().to_vector<double>();
  if (x.size() != y.size()) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

#define EXPECT_ALLCLOSE(a, b, ...)                                     \
  do {                                                                 \
    std::string _msg = ::smp::test::allclose((a), (b), ##__VA_ARGS__); \
    EXPECT_TRUE(_msg.empty()) << _msg;                                 \
  } while (0)

/// True when a CUDA device is present; CUDA tests call SMP_SKIP_WITHOUT_CUDA() first.
#define SMP_SKIP_WITHOUT_CUDA()                                         \
  do {                                                                  \
    if (!::smp::cuda::is_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

}  // namespace smp::test
