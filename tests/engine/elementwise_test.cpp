// Elementwise ops: gradients, meta shapes, type promotion, PyTorch golden values, errors.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cmath>
#include <string>

#include "gradcheck.h"

using namespace smp;
using smp::test::randd;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Positive float64 values in [0.5, 1.5), for log/sqrt/div denominators.
Tensor posd(const Shape& s, uint64_t seed) { return randd(s, seed) * 0.5 + 1.0; }

std::string golden_path() { return std::string(SMP_TEST_GOLDEN_DIR) + "/elementwise.safetensors"; }

}  // namespace

TEST(Elementwise, ArithmeticValues) {
  Tensor a = tensor({1.0, 2.0, 3.0});
  Tensor b = tensor({4.0, 5.0, 6.0});
  EXPECT_EQ((a + b).to_vector<float>(), (std::vector<float>{5, 7, 9}));
  EXPECT_EQ((a - b).to_vector<float>(), (std::vector<float>{-3, -3, -3}));
  EXPECT_EQ((a * b).to_vector<float>(), (std::vector<float>{4, 10, 18}));
  EXPECT_EQ((b / a).to_vector<float>(), (std::vector<float>{4, 2.5f, 2}));
  EXPECT_EQ(add(a, b, 2).to_vector<float>(), (std::vector<float>{9, 12, 15}));
  EXPECT_EQ(sub(a, b, 0.5).to_vector<float>(), (std::vector<float>{-1, -0.5f, 0}));
  EXPECT_EQ((2 - a).to_vector<float>(), (std::vector<float>{1, 0, -1}));
  EXPECT_EQ((6 / a).to_vector<float>(), (std::vector<float>{6, 3, 2}));
  EXPECT_EQ((a * 2).to_vector<float>(), (std::vector<float>{2, 4, 6}));
  EXPECT_EQ((-a).to_vector<float>(), (std::vector<float>{-1, -2, -3}));
  // broadcasting (2,1) with (3)
  Tensor c = tensor({10.0, 20.0}).reshape({2, 1});
  Tensor s = c + a;
  EXPECT_EQ(s.sizes(), (Shape{2, 3}));
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{11, 12, 13, 21, 22, 23}));
}

TEST(Elementwise, InPlaceOps) {
  Tensor a = tensor({1.0, 2.0, 3.0});
  Tensor b = tensor({1.0, 1.0, 1.0});
  a.add_(b, 2);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{3, 4, 5}));
  a.sub_(1);
  a.mul_(2);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{4, 6, 8}));
  a.div_(tensor({2.0, 3.0, 4.0}));
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{2, 2, 2}));
  a += b;
  a *= 2;
  a -= tensor({1.0});
  a /= 5;
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{1, 1, 1}));
  a.addcmul_(tensor({1.0, 2.0, 3.0}), tensor({2.0, 2.0, 2.0}), 0.5);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{2, 3, 4}));
  a.addcdiv_(tensor({4.0, 4.0, 4.0}), tensor({2.0, 4.0, 8.0}), 2);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{6, 5, 5}));
  Tensor q = tensor({4.0, 9.0});
  q.sqrt_();
  EXPECT_EQ(q.to_vector<float>(), (std::vector<float>{2, 3}));
  Tensor r = tensor({-2.0, 0.5, 3.0});
  r.clamp_(-1.0, 1.0);
  EXPECT_EQ(r.to_vector<float>(), (std::vector<float>{-1, 0.5f, 1}));
  // in-place into a non-contiguous view writes through to the base
  Tensor m = zeros({2, 3});
  Tensor col = m.select(1, 1);
  col.add_(tensor({1.0, 2.0}));
  EXPECT_EQ(m.to_vector<float>(), (std::vector<float>{0, 1, 0, 0, 2, 0}));
  // the result must fit self
  Tensor small = zeros({3});
  EXPECT_THROW(small.add_(zeros({2, 3})), Error);
  Tensor ints = zeros({3}, kInt64);
  EXPECT_THROW(ints.add_(tensor({0.5, 0.5, 0.5})), Error);
  EXPECT_THROW(ints.div_(2), Error);
  // leaves that require grad may not be updated in place outside NoGradGuard
  Tensor w = zeros({3}).requires_grad_();
  EXPECT_THROW(w.add_(1), Error);
  {
    NoGradGuard ng;
    w.add_(1);
  }
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{1, 1, 1}));
}

TEST(Elementwise, InPlaceAutograd) {
  // y = x*2 (non-leaf); y.mul_(z); y.add_(x) -> dy/dx = 2z + 1, dy/dz = 2x
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        Tensor y = in[0] * 2.0;
        y.mul_(in[1]);
        y.add_(in[0]);
        y.div_(in[1].abs() + 1.0);
        y.sub_(in[0], 0.5);
        return y;
      },
      {randd({3, 4}, 1), randd({4}, 2)});
  // self and other alias: the backward must use the values from before the update
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        Tensor y = in[0] * 1.0;
        y.mul_(y);
        return y;
      },
      {randd({4}, 7)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        Tensor y = in[0] + 0.0;
        y.addcmul_(in[1], in[2], 0.7);
        y.addcdiv_(in[1], in[2].abs() + 1.0, -0.3);
        return y;
      },
      {randd({3, 4}, 3), randd({3, 4}, 4), randd({4}, 5)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        Tensor y = in[0].abs() + 0.5;
        y.sqrt_();
        y.clamp_(0.8, 1.1);
        return y;
      },
      {randd({5}, 6)});
}

TEST(Elementwise, Gradcheck) {
  Tensor a = randd({3, 4}, 1), b = randd({3, 4}, 2), row = randd({4}, 3), col = randd({3, 1}, 4);
  Tensor pos = posd({3, 4}, 5);
  // non-contiguous: a transposed (4,3) view and a strided slice
  Tensor at = randd({4, 3}, 6).transpose(0, 1);
  Tensor sl = randd({3, 8}, 7).slice(1, 0, 8, 2);
  std::vector<std::pair<std::string, Fn>> binary = {
      {"add", [](const auto& v) { return v[0] + v[1]; }},
      {"add_alpha", [](const auto& v) { return add(v[0], v[1], 2.5); }},
      {"sub", [](const auto& v) { return v[0] - v[1]; }},
      {"sub_alpha", [](const auto& v) { return sub(v[0], v[1], -1.5); }},
      {"mul", [](const auto& v) { return v[0] * v[1]; }},
      {"div", [](const auto& v) { return v[0] / (v[1] * v[1] + 0.5); }},
      {"maximum", [](const auto& v) { return maximum(v[0], v[1]); }},
      {"minimum", [](const auto& v) { return minimum(v[0], v[1]); }},
  };
  for (auto& [name, f] : binary) {
    SCOPED_TRACE(name);
    EXPECT_GRADCHECK(f, {a.clone(), b.clone()});
    EXPECT_GRADCHECK(f, {a.clone(), row.clone()});
    EXPECT_GRADCHECK(f, {col.clone(), row.clone()});
    EXPECT_GRADCHECK(f, {at, sl});
    EXPECT_GRADCHECK(f, {randd({}, 8), a.clone()});
  }
  std::vector<std::pair<std::string, Fn>> unary = {
      {"neg", [](const auto& v) { return -v[0]; }},
      {"exp", [](const auto& v) { return v[0].exp(); }},
      {"log", [](const auto& v) { return (v[0] * v[0] + 0.5).log(); }},
      {"sqrt", [](const auto& v) { return (v[0] * v[0] + 0.5).sqrt(); }},
      {"rsqrt", [](const auto& v) { return (v[0] * v[0] + 0.5).rsqrt(); }},
      {"abs", [](const auto& v) { return v[0].abs(); }},
      {"square", [](const auto& v) { return v[0].square(); }},
      {"pow3", [](const auto& v) { return v[0].pow(3); }},
      {"pow2", [](const auto& v) { return v[0].pow(2); }},
      {"pow_frac", [](const auto& v) { return (v[0] * v[0] + 0.5).pow(1.7); }},
      {"pow_half", [](const auto& v) { return (v[0] * v[0] + 0.5).pow(0.5); }},
      {"clamp", [](const auto& v) { return v[0].clamp(-0.5, 0.5); }},
      {"clamp_min", [](const auto& v) { return v[0].clamp_min(0.1); }},
      {"clamp_max", [](const auto& v) { return v[0].clamp_max(-0.1); }},
      {"relu", [](const auto& v) { return v[0].relu(); }},
      {"sigmoid", [](const auto& v) { return v[0].sigmoid(); }},
      {"tanh", [](const auto& v) { return v[0].tanh(); }},
      {"gelu", [](const auto& v) { return v[0].gelu(); }},
      {"gelu_tanh", [](const auto& v) { return v[0].gelu("tanh"); }},
      {"silu", [](const auto& v) { return silu(v[0]); }},
      {"scalar_add", [](const auto& v) { return 1.5 + v[0] - 2; }},
      {"scalar_mul", [](const auto& v) { return 3 * v[0] * 0.5; }},
      {"scalar_div", [](const auto& v) { return v[0] / 4 + 2.0 / (v[0] * v[0] + 1.0); }},
      {"rsub", [](const auto& v) { return 2.0 - v[0]; }},
  };
  for (auto& [name, f] : unary) {
    SCOPED_TRACE(name);
    EXPECT_GRADCHECK(f, {a.clone()});
    EXPECT_GRADCHECK(f, {at});
    EXPECT_GRADCHECK(f, {sl});
  }
  Tensor cond = a.gt(0.1);
  EXPECT_GRADCHECK([&](const auto& v) { return where(cond, v[0], v[1]); },
                   {b.clone(), row.clone()});
  EXPECT_GRADCHECK([&](const auto& v) { return where(cond, v[0], 2.0); }, {at});
  EXPECT_GRADCHECK([&](const auto& v) { return where(cond, -1.0, v[0]); }, {col.clone()});
  (void)pos;
}

// silu, the worked example of docs/adding-an-op.md: float64 values of x / (1 + exp(−x))
// (torch.nn.functional.silu's formula, computed by Python's math module), the composition
// x·σ(x) in each float dtype and on a strided view, integer inputs, and the gradient node.
TEST(Elementwise, Silu) {
  Tensor x = tensor({-3.0, -1.0, 0.0, 0.5, 2.0}, TensorOptions(kFloat64));
  EXPECT_ALLCLOSE(silu(x),
                  tensor({-0.14227761953270035, -0.2689414213699951, 0.0, 0.3112296656009273,
                          1.7615941559557646},
                         TensorOptions(kFloat64)),
                  1e-12, 1e-12);
  Tensor r = randd({6, 7}, 11) * 4.0;
  for (Dtype dt : {kFloat32, kFloat64, kFloat16, kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor v = r.to(dt);
    Tensor got = silu(v);
    EXPECT_EQ(got.dtype(), dt);
    double tol = dt == kFloat16 ? 2e-3 : dt == kBFloat16 ? 1.6e-2 : 1e-6;
    EXPECT_ALLCLOSE(got.to(kFloat64), r.to(dt).to(kFloat64) * r.to(dt).to(kFloat64).sigmoid(), tol,
                    tol);
    EXPECT_ALLCLOSE(silu(v.t()).to(kFloat64), got.t().to(kFloat64), 0, 0);  // strided input
  }
  Tensor i = tensor<int64_t>({-2, 0, 3});
  EXPECT_EQ(silu(i).dtype(), kFloat32);
  EXPECT_ALLCLOSE(silu(i), silu(i.to(kFloat32)), 0, 0);
  Tensor xi = r.clone().requires_grad_();
  Tensor y = silu(xi);
  EXPECT_EQ(y.grad_fn()->name(), "SiluBackward");
  y.sum().backward();
  Tensor s = r.sigmoid();
  EXPECT_ALLCLOSE(xi.grad(), s * (r * (1.0 - s) + 1.0), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(nn::functional::silu(r), silu(r), 0, 0);
}

TEST(Elementwise, MetaShapesMatchCpu) {
  Tensor a = randn({3, 1, 5}), b = randn({4, 1});
  Tensor ma = empty({3, 1, 5}, TensorOptions().device(Device("meta")));
  Tensor mb = empty({4, 1}, TensorOptions().device(Device("meta")));
  std::vector<std::pair<std::string, Fn>> fns = {
      {"add", [](const auto& v) { return v[0] + v[1]; }},
      {"mul", [](const auto& v) { return v[0] * v[1]; }},
      {"div", [](const auto& v) { return v[0] / v[1]; }},
      {"maximum", [](const auto& v) { return maximum(v[0], v[1]); }},
      {"lt", [](const auto& v) { return lt(v[0], v[1]); }},
      {"where", [](const auto& v) { return where(v[0].gt(0), v[0], v[1]); }},
      {"exp", [](const auto& v) { return v[0].exp(); }},
      {"gelu", [](const auto& v) { return v[0].gelu(); }},
      {"silu", [](const auto& v) { return silu(v[0]); }},
      {"clamp", [](const auto& v) { return v[0].clamp(0, 1); }},
      {"pow", [](const auto& v) { return v[0].pow(3); }},
      {"scalar", [](const auto& v) { return 1 - v[1] * 2; }},
      {"eq_scalar", [](const auto& v) { return v[1].eq(0); }},
  };
  for (auto& [name, f] : fns) {
    SCOPED_TRACE(name);
    Tensor c = f({a, b}), m = f({ma, mb});
    EXPECT_TRUE(m.is_meta());
    EXPECT_EQ(m.sizes(), c.sizes());
    EXPECT_EQ(m.dtype(), c.dtype());
  }
  // autograd records on meta too, so every rank builds the same graph
  Tensor w = empty({4, 1}, TensorOptions().device(Device("meta"))).requires_grad_();
  Tensor y = (ma * w).sigmoid();
  EXPECT_TRUE(y.requires_grad());
  EXPECT_NE(y.grad_fn(), nullptr);
}

TEST(Elementwise, TypePromotion) {
  Tensor f = ones({2}), d = ones({2}, kFloat64), i = ones({2}, kInt64), i32 = ones({2}, kInt32);
  Tensor h = ones({2}, kFloat16), bo = ones({2}, kBool);
  EXPECT_EQ((f + d).dtype(), kFloat64);
  EXPECT_EQ((i + f).dtype(), kFloat32);
  EXPECT_EQ((i + i32).dtype(), kInt64);
  EXPECT_EQ((i / i).dtype(), kFloat32);  // true division
  EXPECT_EQ((i / i).to_vector<float>(), (std::vector<float>{1, 1}));
  EXPECT_EQ((i * 2).dtype(), kInt64);
  EXPECT_EQ((i * 2.5).dtype(), kFloat32);
  EXPECT_EQ((h * 2.5).dtype(), kFloat16);  // wrapped numbers don't widen
  EXPECT_EQ((i32 + 1).dtype(), kInt32);
  EXPECT_EQ((bo + bo).dtype(), kBool);
  EXPECT_EQ((bo + 1).dtype(), kInt64);
  EXPECT_EQ((2 / i).dtype(), kFloat32);
  EXPECT_EQ(i.exp().dtype(), kFloat32);
  EXPECT_EQ(i.abs().dtype(), kInt64);
  EXPECT_EQ(i.pow(2).dtype(), kInt64);
  EXPECT_EQ(i.pow(0.5).dtype(), kFloat32);
  // 0-dim tensors don't widen dimensioned ones within a category, but do across categories
  EXPECT_EQ((f * scalar_tensor(2.0, kFloat64)).dtype(), kFloat32);
  EXPECT_EQ((i * scalar_tensor(2.0, kFloat64)).dtype(), kFloat64);
  EXPECT_EQ((i32 * scalar_tensor(2, kInt64)).dtype(), kInt32);
  // comparisons promote, then output bool
  EXPECT_EQ(i.lt(f).dtype(), kBool);
  EXPECT_EQ(tensor({1.5}).gt(tensor(std::vector<int64_t>{1})).to_vector<bool>(),
            (std::vector<bool>{true}));
  EXPECT_EQ(i.eq(1.5).to_vector<bool>(), (std::vector<bool>{false, false}));
  EXPECT_EQ(where(bo, i, f).dtype(), kFloat32);
  EXPECT_EQ(where(bo, h, 0.5).dtype(), kFloat16);
  EXPECT_EQ(i.clamp(0.5, 1.5).dtype(), kFloat32);
  EXPECT_EQ(tensor(std::vector<int64_t>{-3, 5}).clamp(0, 2).to_vector<int64_t>(),
            (std::vector<int64_t>{0, 2}));
  // comparisons carry no gradient
  Tensor x = randn({3}).requires_grad_();
  EXPECT_FALSE(x.gt(0).requires_grad());
}

TEST(Elementwise, ErrorsNameOpAndShapes) {
  try {
    (void)(ones({2, 3}) + ones({4}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("add"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[4]"), std::string::npos) << m;
  }
  EXPECT_THROW((void)(ones({2}) * ones({3})), Error);
  EXPECT_THROW((void)where(ones({2}).gt(0), ones({3}), ones({2})), Error);
  EXPECT_THROW((void)where(ones({2}), ones({2}), ones({2})), Error);  // condition not bool
  EXPECT_THROW((void)ones({2}).gelu("fast"), Error);
  EXPECT_THROW((void)ones({2}).clamp(std::nullopt, std::nullopt), Error);
  EXPECT_THROW((void)(Tensor() + ones({2})), Error);
}

TEST(Elementwise, NanAndSpecialValues) {
  double nan = std::nan("");
  Tensor x = tensor({nan, 1.0, -1.0});
  auto m = maximum(x, zeros({3})).to_vector<float>();
  EXPECT_TRUE(std::isnan(m[0]));
  EXPECT_EQ(m[1], 1.0f);
  EXPECT_TRUE(std::isnan(x.relu().to_vector<float>()[0]));
  EXPECT_TRUE(std::isnan(x.clamp(0, 0.5).to_vector<float>()[0]));
  EXPECT_EQ(tensor({0.0}).log().to_vector<float>()[0], -INFINITY);
}

TEST(Elementwise, LargeAndStridedMatchElementByElement) {
  // Exercises the threaded, contiguous, broadcast-scalar and strided loops.
  Tensor a = randn({300, 700}), b = randn({700});
  Tensor at = randn({700, 300}).t();
  for (const Tensor& lhs : {a, at}) {
    Tensor out = lhs * b + 1.0;
    auto o = out.to_vector<float>();
    auto l = lhs.contiguous().to_vector<float>();
    auto r = b.to_vector<float>();
    for (int64_t i = 0; i < 300; i += 37)
      for (int64_t j = 0; j < 700; j += 41)
        EXPECT_FLOAT_EQ(o[i * 700 + j], l[i * 700 + j] * r[j] + 1.0f);
  }
}

TEST(Elementwise, HalfComputesInFloat) {
  Tensor x = tensor({0.1, 1.0, 2.5}).to(kFloat16);
  Tensor y = (x * x).exp();
  EXPECT_EQ(y.dtype(), kFloat16);
  auto v = y.to_vector<float>();
  auto xv = x.to_vector<float>();
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_EQ(v[i], static_cast<float>(Half(std::exp(static_cast<float>(Half(xv[i] * xv[i]))))));
  Tensor bf = tensor({1.0, 2.0}).to(kBFloat16);
  EXPECT_EQ((bf + bf).to_vector<float>(), (std::vector<float>{2, 4}));
}

TEST(Elementwise, GoldenMatchesPyTorch) {
  // A missing or unreadable golden file throws here and fails the test.
  const std::map<std::string, Tensor> g = load_safetensors(golden_path());
  Tensor x = g.at("x"), y = g.at("y"), p = g.at("p"), b = g.at("b");
  auto check = [&](const std::string& key, const Tensor& got, double rtol = 1e-5,
                   double atol = 1e-6) {
    SCOPED_TRACE(key);
    EXPECT_EQ(got.dtype(), g.at(key).dtype());
    EXPECT_ALLCLOSE(got.to(kFloat64), g.at(key).to(kFloat64), rtol, atol);
  };
  check("add", x + y);
  check("add_alpha", add(x, b, 2.5));
  check("sub", x - b);
  check("mul", x * y);
  check("div", x / p);
  check("rdiv", 2.0 / p);
  check("maximum", maximum(x, y));
  check("minimum", minimum(x, b));
  check("pow3", x.pow(3));
  check("pow_half", p.pow(0.5));
  check("pow_frac", p.pow(1.7));
  check("neg", -x);
  check("exp", x.exp());
  check("log", p.log());
  check("sqrt", p.sqrt());
  check("rsqrt", p.rsqrt());
  check("abs", x.abs());
  check("square", x.square());
  check("relu", x.relu());
  check("sigmoid", x.sigmoid());
  check("tanh", x.tanh());
  check("gelu", x.gelu());
  check("gelu_tanh", x.gelu("tanh"));
  check("clamp", x.clamp(-0.5, 0.5));
  check("clamp_min", x.clamp_min(0.1));
  check("where", where(x.gt(0), x, y));
  check("gt", x.gt(y));
  check("le_scalar", x.le(0.25));
  std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> acts = {
      {"relu", [](const Tensor& v) { return v.relu(); }},
      {"sigmoid", [](const Tensor& v) { return v.sigmoid(); }},
      {"tanh", [](const Tensor& v) { return v.tanh(); }},
      {"gelu", [](const Tensor& v) { return v.gelu(); }},
      {"gelu_tanh", [](const Tensor& v) { return v.gelu("tanh"); }},
  };
  for (auto& [name, f] : acts) {
    Tensor xi = x.clone().requires_grad_();
    f(xi).sum().backward();
    check("grad_" + name, xi.grad());
  }
  check("exp_f16", g.at("x_f16").exp(), 1e-3, 1e-3);
  check("mul_bf16", x.to(kBFloat16) * y.to(kBFloat16), 1e-2, 1e-2);
}
