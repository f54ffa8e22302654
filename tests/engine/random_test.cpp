// Random fills and factories: reproducibility from a seed, distributions, dropout.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "gradcheck.h"
#include "op_test_utils.h"

using namespace smp;

namespace {

struct Moments {
  double mean = 0, var = 0;
};

Moments moments(const std::vector<double>& v) {
  Moments m;
  for (double x : v) m.mean += x;
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(v.size() - 1);
  return m;
}

}  // namespace

TEST(Random, SameSeedSameValues) {
  for (Dtype dt : {kFloat32, kFloat64}) {
    manual_seed(123);
    auto a = rand({1000}, dt).to_vector<double>();
    auto b = randn({7, 13}, dt).to_vector<double>();
    auto c = randint(-5, 5, {333}).to_vector<int64_t>();
    manual_seed(123);
    EXPECT_EQ(rand({1000}, dt).to_vector<double>(), a);
    EXPECT_EQ(randn({7, 13}, dt).to_vector<double>(), b);
    EXPECT_EQ(randint(-5, 5, {333}).to_vector<int64_t>(), c);
  }
}

TEST(Random, DifferentSeedOrDrawDifferentValues) {
  manual_seed(1);
  auto a = rand({256}).to_vector<float>();
  auto a2 = rand({256}).to_vector<float>();  // the generator advanced
  manual_seed(2);
  auto b = rand({256}).to_vector<float>();
  EXPECT_NE(a, b);
  EXPECT_NE(a, a2);
}

// smp::manual_seed(s) then the same draws as torch.manual_seed(s): the values of
// tests/golden/random.safetensors (tests/reference/gen_random.py), exactly, except normal
// float32, whose log/sin/cos torch vectorises with its own approximations.
TEST(Random, DrawsWhatTorchsCpuGeneratorDraws) {
  auto g = test::load_golden("random");
  auto check = [&](const std::string& name, uint64_t seed, const std::function<Tensor()>& draw) {
    SCOPED_TRACE(name);
    manual_seed(seed);
    Tensor got = draw();
    const Tensor& want = g.at(name);
    ASSERT_EQ(got.sizes(), want.sizes());
    ASSERT_EQ(got.dtype(), want.dtype());
    EXPECT_EQ(got.to(kFloat64).to_vector<double>(), want.to(kFloat64).to_vector<double>());
  };
  check("uniform_f32", 1, [] { return empty({1000}).uniform_(-0.123456, 0.987654); });
  check("uniform_f64", 2, [] { return empty({1000}, kFloat64).uniform_(-0.123456, 0.987654); });
  check("uniform_f16", 3, [] { return empty({300}, kFloat16).uniform_(-0.3, 0.7); });
  check("uniform_bf16", 4, [] { return empty({300}, kBFloat16).uniform_(-0.3, 0.7); });
  check("uniform_transposed", 5, [] { return empty({6, 4}).t().uniform_(); });
  check("normal_f64", 7, [] { return empty({1037}, kFloat64).normal_(0.3, 1.7); });
  check("normal_small", 8, [] { return cat({randn({3}), randn({3}), randn({1})}); });
  check("normal_transposed_f64", 9, [] { return empty({8, 5}, kFloat64).t().normal_(-0.3, 1.7); });
  check("bernoulli_f32", 10, [] { return empty({1000}).bernoulli_(0.3); });
  check("bernoulli_f64", 11, [] { return empty({999}, kFloat64).bernoulli_(0.75); });
  check("dropout", 12, [] { return dropout(ones({64, 10}), 0.25, true); });
  check("randint_small", 13, [] { return randint(-5, 7, {500}); });
  check("randint_wide", 14, [] { return randint(0, (int64_t{1} << 33) + 5, {50}); });
  check("randperm_100", 15, [] { return randperm(100); });
  check("randperm_60000_head", 16, [] { return randperm(60000).slice(0, 0, 1000); });
  check("generator_randperm_60000_tail", 0, [] {
    Generator gen(Generator::Kind::kMT19937, 17);
    return randperm(60000, gen).slice(0, 59000, 60000);
  });
  manual_seed(18);
  Tensor sequence = cat({rand({5}), randn({20}), randint(0, 10, {7}).to(kFloat32),
                         empty({9}).bernoulli_(0.5), randn({5}, kFloat64).to(kFloat32),
                         randperm(11).to(kFloat32), rand({3}, kFloat64).to(kFloat32), randn({2})});
  EXPECT_ALLCLOSE(sequence, g.at("sequence"), 1e-6, 1e-6);  // randn({20}) is float32 normal
  check("random_int64", 19, [] { return empty({4}, kInt64).random_(); });

  manual_seed(6);
  EXPECT_ALLCLOSE(empty({1037}).normal_(0.3, 1.7), g.at("normal_f32"), 1e-6, 1e-6);
}

// The Box–Muller transform runs on the pool; the values must not depend on the split.
TEST(Random, NormalIndependentOfThreadCount) {
  const int before = get_num_threads();
  std::vector<std::vector<float>> runs;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    manual_seed(5);
    runs.push_back(randn({100003}).to_vector<float>());
  }
  set_num_threads(before);
  EXPECT_EQ(runs[0], runs[1]);
  EXPECT_EQ(runs[0], runs[2]);
}

// As torch's TensorIterator: a transposed view takes the words in memory order.
TEST(Random, StridedFillFollowsMemoryOrder) {
  manual_seed(9);
  Tensor t = empty({4, 6}).t();
  t.uniform_();
  manual_seed(9);
  Tensor c = empty({4, 6});
  c.uniform_();
  EXPECT_EQ(t.t().contiguous().to_vector<float>(), c.to_vector<float>());
}

TEST(Random, UniformMoments) {
  manual_seed(0);
  const int64_t n = 200000;
  for (Dtype dt : {kFloat32, kFloat64}) {
    Tensor t = empty({n}, dt);
    t.uniform_(-2.0, 3.0);
    auto v = t.to_vector<double>();
    EXPECT_GE(*std::min_element(v.begin(), v.end()), -2.0);
    EXPECT_LT(*std::max_element(v.begin(), v.end()), 3.0);
    Moments m = moments(v);
    // mean 0.5, variance 25/12; 6 standard errors.
    double se = std::sqrt(25.0 / 12.0 / n);
    EXPECT_NEAR(m.mean, 0.5, 6 * se);
    EXPECT_NEAR(m.var, 25.0 / 12.0, 0.03);
  }
}

TEST(Random, NormalMoments) {
  manual_seed(0);
  const int64_t n = 200001;  // odd: the last block has an unpaired element
  for (Dtype dt : {kFloat32, kFloat64}) {
    Tensor t = empty({n}, dt);
    t.normal_(1.5, 2.0);
    Moments m = moments(t.to_vector<double>());
    EXPECT_NEAR(m.mean, 1.5, 6 * 2.0 / std::sqrt(n));
    EXPECT_NEAR(m.var, 4.0, 0.06);
    auto v = t.to_vector<double>();
    for (double x : v) ASSERT_TRUE(std::isfinite(x));
  }
}

TEST(Random, BernoulliRate) {
  manual_seed(0);
  const int64_t n = 100000;
  for (double p : {0.0, 0.1, 0.7, 1.0}) {
    Tensor t = empty({n});
    t.bernoulli_(p);
    auto v = t.to_vector<double>();
    double ones = std::accumulate(v.begin(), v.end(), 0.0);
    for (double x : v) ASSERT_TRUE(x == 0.0 || x == 1.0);
    EXPECT_NEAR(ones / n, p, 6 * std::sqrt(p * (1 - p) / n) + 1e-12) << p;
  }
  Tensor b = empty({10}, kBool);
  b.bernoulli_(1.0);
  for (bool x : b.to_vector<bool>()) EXPECT_TRUE(x);
}

TEST(Random, RandintRangeAndCoverage) {
  manual_seed(0);
  Tensor t = randint(-3, 4, {20000});
  EXPECT_EQ(t.dtype(), kInt64);
  auto v = t.to_vector<int64_t>();
  std::vector<int> counts(7, 0);
  for (auto x : v) {
    ASSERT_GE(x, -3);
    ASSERT_LT(x, 4);
    ++counts[static_cast<size_t>(x + 3)];
  }
  for (int c : counts) EXPECT_NEAR(c, 20000 / 7.0, 6 * std::sqrt(20000 / 7.0));
  // A range wider than 32 bits draws two words per element.
  int64_t big = int64_t{1} << 40;
  auto w = randint(0, big, {1000}).to_vector<int64_t>();
  EXPECT_TRUE(std::any_of(w.begin(), w.end(), [&](int64_t x) { return x > (int64_t{1} << 33); }));
  for (auto x : w) ASSERT_TRUE(x >= 0 && x < big);
  EXPECT_EQ(randint(5, {3}, kFloat32).dtype(), kFloat32);
  EXPECT_THROW(randint(3, 3, {2}), Error);
}

TEST(Random, RandpermIsAPermutation) {
  manual_seed(0);
  for (int64_t n : {0, 1, 2, 10, 1000}) {
    auto p = randperm(n).to_vector<int64_t>();
    ASSERT_EQ(static_cast<int64_t>(p.size()), n);
    std::vector<int64_t> s = p;
    std::sort(s.begin(), s.end());
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(s[static_cast<size_t>(i)], i);
  }
  manual_seed(4);
  auto a = randperm(50).to_vector<int64_t>();
  manual_seed(4);
  EXPECT_EQ(randperm(50).to_vector<int64_t>(), a);
  std::vector<int64_t> id(50);
  std::iota(id.begin(), id.end(), 0);
  EXPECT_NE(a, id);
}

TEST(Random, LikeFactoriesAndMeta) {
  Tensor x = zeros({3, 2}, kFloat64);
  EXPECT_EQ(rand_like(x).dtype(), kFloat64);
  EXPECT_EQ(randn_like(x).sizes(), (Shape{3, 2}));
  EXPECT_EQ(rand_like(x, kFloat32).dtype(), kFloat32);
  Tensor m = randn({4, 5}, Device(kMeta));
  EXPECT_TRUE(m.is_meta());
  EXPECT_EQ(m.sizes(), (Shape{4, 5}));
  EXPECT_TRUE(randperm(5, Device(kMeta)).is_meta());
  EXPECT_THROW(empty({2}, kInt64).uniform_(), Error);
  EXPECT_THROW(empty({2}).bernoulli_(1.5), Error);
  EXPECT_THROW(empty({2}, kInt64).random_(3, 3), Error);
  Generator philox(Generator::Kind::kPhilox, 1);
  EXPECT_THROW(randperm(5, philox), Error);  // randperm(n, gen) takes a CPU generator
}

// CUDA's generator is counter-based: element i of a draw uses word i%4 of Philox block
// offset + i/4 (cuda/random.cu), whatever the launch geometry.
TEST(Random, FollowsTheCounterRule_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  manual_seed(31);
  Device cu(kCUDA);
  Tensor a = rand({4}, cu), u = rand({10}, cu), b = empty({10}, TensorOptions(kFloat64).device(cu));
  b.bernoulli_(0.5);
  auto v = u.cpu().to_vector<float>();
  auto bv = b.cpu().to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t w[4];
    Philox::draw(31, 1 + i / 4, 0, w);  // rand({4}) used block 0
    EXPECT_EQ(v[i], static_cast<float>(w[i % 4] >> 8) / 16777216.0f) << i;
    Philox::draw(31, 4 + i / 4, 0, w);  // u used blocks 1..3
    EXPECT_EQ(bv[i], (w[i % 4] >> 8) / 16777216.0 < 0.5 ? 1.0 : 0.0) << i;
  }
  EXPECT_EQ(default_generator(cu).offset(), 7u);
  (void)a;
}

TEST(Dropout, KeepsAboutOneMinusPAndScales) {
  manual_seed(0);
  const int64_t n = 100000;
  Tensor x = ones({n});
  for (double p : {0.2, 0.5}) {
    auto v = dropout(x, p, true).to_vector<double>();
    int64_t kept = 0;
    for (double e : v) {
      if (e != 0.0) {
        ASSERT_NEAR(e, 1.0 / (1.0 - p), 1e-6);
        ++kept;
      }
    }
    EXPECT_NEAR(static_cast<double>(kept) / n, 1 - p, 6 * std::sqrt(p * (1 - p) / n));
  }
  EXPECT_TRUE(dropout(x, 0.5, false).is_same(x));
  EXPECT_TRUE(dropout(x, 0.0, true).is_same(x));
  auto z = dropout(x, 1.0, true).to_vector<float>();
  EXPECT_TRUE(std::all_of(z.begin(), z.end(), [](float e) { return e == 0.0f; }));
  EXPECT_THROW(dropout(x, 1.5), Error);
  Tensor m = dropout(empty({3, 4}, Device(kMeta)), 0.5, true);
  EXPECT_TRUE(m.is_meta());
  EXPECT_EQ(m.sizes(), dropout(ones({3, 4}), 0.5, true).sizes());
}

TEST(Dropout, GradientIsTheMask) {
  manual_seed(3);
  Tensor x = smp::test::randd({50});
  x.requires_grad_(true);
  Tensor y = dropout(x, 0.3, true);
  y.sum().backward();
  auto yv = y.detach().to_vector<double>();
  auto xv = x.detach().to_vector<double>();
  auto g = x.grad().to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) {
    if (yv[i] == 0.0 && xv[i] != 0.0)
      EXPECT_EQ(g[i], 0.0);
    else
      EXPECT_NEAR(g[i], 1.0 / 0.7, 1e-12);
  }
}

// get_state / set_state continue a stream exactly where it was, the cached normal sample
// included; a state from the other kind of generator is refused.
TEST(Random, GeneratorStateRoundTrips) {
  smp::manual_seed(77);
  smp::randn({5});  // leaves a cached normal sample behind (odd count)
  smp::Generator& g = smp::default_generator(smp::Device(smp::kCPU));
  const std::vector<uint8_t> state = g.get_state();
  const smp::Tensor a = smp::randn({7}), b = smp::rand({3});
  smp::manual_seed(1);
  g.set_state(state);
  EXPECT_EQ(smp::test::max_abs_diff(smp::randn({7}), a), 0);
  EXPECT_EQ(smp::test::max_abs_diff(smp::rand({3}), b), 0);
  smp::Generator philox(smp::Generator::Kind::kPhilox);
  EXPECT_THROW(philox.set_state(state), smp::Error);
  EXPECT_THROW(g.set_state({1, 2, 3}), smp::Error);
}
