// Reductions: values against a naive double-precision reference over many layouts,
// gradients, meta shapes, PyTorch golden values, errors.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cmath>
#include <string>

#include "gradcheck.h"

using namespace smp;
using smp::test::randd;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Naive reference: sums `x` over `dims` (keepdim) in double by walking every element.
std::vector<double> naive_sum(const Tensor& x, const IntList& dims) {
  auto v = x.contiguous().to_vector<double>();
  Shape keep = x.sizes();
  for (auto d : dims) keep[static_cast<size_t>(d)] = 1;
  int64_t nout = 1;
  for (auto s : keep) nout *= s;
  std::vector<double> out(static_cast<size_t>(nout), 0.0);
  std::vector<int64_t> idx(static_cast<size_t>(x.dim()), 0);
  for (size_t e = 0; e < v.size(); ++e) {
    int64_t o = 0;
    for (int64_t d = 0; d < x.dim(); ++d) o = o * keep[d] + (keep[d] == 1 ? 0 : idx[d]);
    out[static_cast<size_t>(o)] += v[e];
    for (int64_t d = x.dim() - 1; d >= 0; --d) {
      if (++idx[d] < x.size(d)) break;
      idx[d] = 0;
    }
  }
  return out;
}

std::string golden_path() { return std::string(SMP_TEST_GOLDEN_DIR) + "/elementwise.safetensors"; }

}  // namespace

TEST(Reduction, SumMatchesNaiveOverLayouts) {
  struct Case {
    Shape shape;
    IntList dims;
    bool transpose;
  };
  std::vector<Case> cases = {
      {{1000}, {0}, false},          {{64, 300}, {1}, false},   {{64, 300}, {0}, false},
      {{4, 5, 6}, {0, 2}, false},    {{4, 5, 6}, {1}, false},   {{4, 5, 6}, {0, 1}, false},
      {{4, 5, 6}, {0, 1, 2}, false}, {{30, 40}, {0}, true},     {{30, 40}, {1}, true},
      {{7, 1, 9}, {1}, false},       {{3, 200000}, {1}, false}, {{200000, 3}, {0}, false},
      {{2, 3, 4, 5}, {1, 3}, true},  {{513, 17}, {0}, false},   {{300000}, {0}, true},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(::testing::PrintToString(c.shape) + " dims " + ::testing::PrintToString(c.dims));
    Tensor x = randn(c.shape);
    if (c.transpose) x = x.transpose(0, -1);
    Tensor s = x.sum(c.dims, true);
    auto ref = naive_sum(x, c.dims);
    Tensor r = tensor<double>(ref, s.sizes());
    EXPECT_ALLCLOSE(s.to(kFloat64), r, 1e-5, 1e-4);
    Tensor m = x.mean(c.dims, false);
    int64_t cnt = 1;
    for (auto d : c.dims) cnt *= x.size(d);
    EXPECT_ALLCLOSE(m.to(kFloat64), (r / static_cast<double>(cnt)).reshape(m.sizes()), 1e-5, 1e-5);
  }
}

TEST(Reduction, Float32SumIsAccurate) {
  // 1e7 copies of 0.1: naive float accumulation drifts far; ours accumulates in double.
  Tensor x = full({10000000}, 0.1);
  EXPECT_NEAR(x.sum().item<double>(), 1e6, 1.0);
  Tensor y = full({1000, 10000}, 0.1);
  EXPECT_NEAR(y.sum({1}).to_vector<double>()[0], 1000.0, 1e-3);
  EXPECT_NEAR(y.sum({0}).to_vector<double>()[0], 100.0, 1e-4);
}

TEST(Reduction, MaxMinArgmax) {
  Tensor x = tensor({3.0, 7.0, 7.0, -1.0, 2.0, 5.0}, {}).reshape({2, 3});
  EXPECT_EQ(x.max().item<float>(), 7.0f);
  EXPECT_EQ(x.min().item<float>(), -1.0f);
  auto [v, i] = x.max(1);
  EXPECT_EQ(v.to_vector<float>(), (std::vector<float>{7, 5}));
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));  // first of ties
  auto [v0, i0] = x.min(0, true);
  EXPECT_EQ(v0.sizes(), (Shape{1, 3}));
  EXPECT_EQ(i0.to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(x.argmax().item<int64_t>(), 1);
  EXPECT_EQ(x.argmax(0).to_vector<int64_t>(), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(argmax(x, 1, true).sizes(), (Shape{2, 1}));
  EXPECT_EQ(x.amax({0, 1}).item<float>(), 7.0f);
  EXPECT_EQ(x.amax({1}, true).to_vector<float>(), (std::vector<float>{7, 5}));
  // transposed input
  EXPECT_EQ(std::get<1>(x.t().max(0)).to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  // NaN propagates
  Tensor n = tensor({1.0, std::nan(""), 3.0});
  EXPECT_TRUE(std::isnan(n.max().item<float>()));
  EXPECT_EQ(std::get<1>(n.max(0)).item<int64_t>(), 1);
  // integers
  Tensor k = tensor(std::vector<int64_t>{4, 9, 2});
  EXPECT_EQ(k.max().item<int64_t>(), 9);
  EXPECT_EQ(k.sum().dtype(), kInt64);
  EXPECT_EQ(k.sum().item<int64_t>(), 15);
  EXPECT_EQ(ones({5}, kBool).sum().item<int64_t>(), 5);
  EXPECT_EQ(ones({5}, kInt32).sum().dtype(), kInt64);
}

TEST(Reduction, VarAndEdgeCases) {
  Tensor x = tensor({1.0, 2.0, 3.0, 4.0});
  EXPECT_NEAR(x.var().item<double>(), 5.0 / 3.0, 1e-6);
  EXPECT_NEAR(x.var(false).item<double>(), 1.25, 1e-6);
  Tensor y = x.reshape({2, 2});
  EXPECT_EQ(y.var(IntList{1}, true, true).sizes(), (Shape{2, 1}));
  EXPECT_EQ(y.var(IntList{1}).to_vector<float>(), (std::vector<float>{0.5f, 0.5f}));
  // empty and 0-dim tensors
  EXPECT_EQ(zeros({0, 3}).sum().item<float>(), 0.0f);
  EXPECT_EQ(zeros({0, 3}).sum({0}).to_vector<float>(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(scalar_tensor(2.5).sum().item<float>(), 2.5f);
  EXPECT_EQ(scalar_tensor(2.5).mean().sizes(), Shape{});
  EXPECT_THROW((void)zeros({0}).max(), Error);
  EXPECT_THROW((void)ones({2, 3}).sum({2}), Error);
  EXPECT_THROW((void)ones({2, 3}).sum({1, -1}), Error);
  EXPECT_THROW((void)ones({3}, kInt64).mean(), Error);
  EXPECT_EQ(sum_to(ones({4, 2, 3}), {2, 1}).to_vector<float>(), (std::vector<float>{12, 12}));
  EXPECT_EQ(sum_to(ones({2, 3}), {3}).to_vector<float>(), (std::vector<float>{2, 2, 2}));
  EXPECT_THROW((void)sum_to(ones({2, 3}), {2}), Error);
}

TEST(Reduction, Gradcheck) {
  Tensor a = randd({3, 4, 5}, 1);
  Tensor at = randd({5, 4, 3}, 2).transpose(0, 2);
  // Whole-tensor results are reshaped to (1): gradcheck's cotangent cannot be 0-dim.
  std::vector<std::pair<std::string, Fn>> fns = {
      {"sum", [](const auto& v) { return v[0].sum().reshape({1}); }},
      {"sum_1", [](const auto& v) { return v[0].sum({1}); }},
      {"sum_02_keep",
       [](const auto& v) {
         return v[0].sum({0, 2}, true);
       }},
      {"mean", [](const auto& v) { return v[0].mean().reshape({1}); }},
      {"mean_neg", [](const auto& v) { return v[0].mean({-1}); }},
      {"max", [](const auto& v) { return v[0].max().reshape({1}); }},
      {"min", [](const auto& v) { return v[0].min().reshape({1}); }},
      {"max_dim", [](const auto& v) { return std::get<0>(v[0].max(1)); }},
      {"min_dim_keep", [](const auto& v) { return std::get<0>(v[0].min(2, true)); }},
      {"amax",
       [](const auto& v) {
         return v[0].amax({0, 2});
       }},
      {"var", [](const auto& v) { return v[0].var().reshape({1}); }},
      {"var_dims",
       [](const auto& v) {
         return v[0].var(IntList{1, 2}, false, true);
       }},
      {"sum_to",
       [](const auto& v) {
         return sum_to(v[0], {4, 1});
       }},
  };
  for (auto& [name, f] : fns) {
    SCOPED_TRACE(name);
    EXPECT_GRADCHECK(f, {a.clone()});
    EXPECT_GRADCHECK(f, {at});
  }
  // ties share the gradient of amax evenly, as in PyTorch
  Tensor t = tensor({1.0, 3.0, 3.0}).requires_grad_();
  t.amax({0}).backward();
  EXPECT_EQ(t.grad().to_vector<float>(), (std::vector<float>{0, 0.5f, 0.5f}));
}

TEST(Reduction, MetaShapesMatchCpu) {
  Tensor a = randn({3, 4, 5});
  Tensor m = empty({3, 4, 5}, TensorOptions().device(Device("meta")));
  std::vector<std::pair<std::string, Fn>> fns = {
      {"sum", [](const auto& v) { return v[0].sum(); }},
      {"sum_1", [](const auto& v) { return v[0].sum({1}); }},
      {"mean_keep",
       [](const auto& v) {
         return v[0].mean({0, 2}, true);
       }},
      {"max", [](const auto& v) { return v[0].max(); }},
      {"max_dim", [](const auto& v) { return std::get<0>(v[0].max(1)); }},
      {"max_idx", [](const auto& v) { return std::get<1>(v[0].max(1, true)); }},
      {"argmax", [](const auto& v) { return v[0].argmax(2); }},
      {"argmax_all", [](const auto& v) { return v[0].argmax(); }},
      {"amax", [](const auto& v) { return v[0].amax({0}); }},
      {"var", [](const auto& v) { return v[0].var(IntList{1}); }},
      {"sum_to",
       [](const auto& v) {
         return sum_to(v[0], {4, 1});
       }},
  };
  for (auto& [name, f] : fns) {
    SCOPED_TRACE(name);
    Tensor c = f({a}), mm = f({m});
    EXPECT_TRUE(mm.is_meta());
    EXPECT_EQ(mm.sizes(), c.sizes());
    EXPECT_EQ(mm.dtype(), c.dtype());
  }
}

TEST(Reduction, GoldenMatchesPyTorch) {
  // A missing or unreadable golden file throws here and fails the test.
  const std::map<std::string, Tensor> g = load_safetensors(golden_path());
  Tensor big = g.at("big"), x3 = g.at("x3");
  auto check = [&](const std::string& key, const Tensor& got, double rtol = 1e-5,
                   double atol = 1e-5) {
    SCOPED_TRACE(key);
    EXPECT_EQ(got.dtype(), g.at(key).dtype());
    EXPECT_ALLCLOSE(got.to(kFloat64), g.at(key).to(kFloat64), rtol, atol);
  };
  check("sum_all", big.sum());
  check("sum_0", big.sum({0}));
  check("sum_1", big.sum({1}));
  check("mean_1_keep", big.mean({1}, true));
  check("var_1", big.var(IntList{1}));
  check("var_all_biased", big.var(false));
  check("amax_0", big.amax({0}));
  auto [vmax, imax] = big.max(1);
  check("max_1_values", vmax);
  check("max_1_indices", imax);
  auto [vmin, imin] = big.min(0);
  check("min_0_values", vmin);
  check("min_0_indices", imin);
  check("argmax_all", big.argmax());
  check("sum_02", x3.sum({0, 2}));
  check("sum_t", x3.transpose(0, 2).sum({1}));
  check("sum_f16", big.to(kFloat16).sum({1}), 2e-3, 2e-2);
}
