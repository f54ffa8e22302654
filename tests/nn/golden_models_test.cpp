// MnistNet and ResNet18 against PyTorch / torchvision from the same weights: outputs, losses,
// every gradient, an SGD step and batch-norm running statistics. Golden files and the
// deterministic weight formula: tests/reference/gen_nn_modules.py.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cmath>
#include <set>

#include "gradcheck.h"

using namespace smp;
using namespace smp::nn;

namespace {

using Golden = std::map<std::string, Tensor>;

const Golden& golden(const std::string& name) {
  static std::map<std::string, Golden> cache;
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache
             .emplace(name, load_safetensors(std::string(SMP_TEST_GOLDEN_DIR) + "/" + name +
                                             ".safetensors"))
             .first;
  return it->second;
}

const Tensor& G(const Golden& g, const std::string& k) {
  auto it = g.find(k);
  if (it == g.end()) throw Error("golden key missing: " + k);
  return it->second;
}

// The generator's formula (see its docstring), float64 libm then rounded to float32.
void formula_fill(Tensor& t, int64_t k, const std::string& kind) {
  int64_t n = t.numel();
  double fan_in = t.dim() >= 2 ? static_cast<double>(n / t.size(0)) : 1.0;
  std::vector<float> v(static_cast<size_t>(n));
  double kd = static_cast<double>(k);
  for (int64_t j = 0; j < n; ++j) {
    double h = std::sin(12.9898 * static_cast<double>(j) + 78.233 * kd) * 43758.5453;
    double u = h - std::floor(h), r = 2 * u - 1, x;
    if (kind == "weight")
      x = std::sqrt(6.0 / fan_in) * r;
    else if (kind == "bn_weight")
      x = 1.0 + 0.1 * r;
    else if (kind == "bias" || kind == "running_mean")
      x = 0.1 * r;
    else if (kind == "running_var")
      x = 1.0 + 0.5 * u;
    else
      throw Error("formula_fill: unknown kind " + kind);
    v[static_cast<size_t>(j)] = static_cast<float>(x);
  }
  NoGradGuard ng;
  t.copy_(tensor<float>(v).reshape(t.sizes()));
}

void fill_model(Module& model) {
  std::set<std::string> bn_names;
  for (auto& [n, m] : model.named_modules())
    if (std::dynamic_pointer_cast<BatchNorm2d>(m)) bn_names.insert(n);
  int64_t k = 0;
  for (auto& [name, p] : model.named_parameters()) {
    auto dot = name.rfind('.');
    std::string owner = name.substr(0, dot), leaf = name.substr(dot + 1);
    if (p.dim() >= 2)
      formula_fill(p, k, "weight");
    else if (bn_names.count(owner) && leaf == "weight")
      formula_fill(p, k, "bn_weight");
    else
      formula_fill(p, k, "bias");
    ++k;
  }
  for (auto& [name, b] : model.named_buffers()) {
    std::string leaf = name.substr(name.rfind('.') + 1);
    if (leaf == "num_batches_tracked") {
      NoGradGuard ng;
      b.zero_();
    } else {
      formula_fill(b, k, leaf);
    }
    ++k;
  }
}

// Compares a tensor with the generator's checksum [sum, sum |x|, ‖x‖₂] and sampled elements.
void expect_summary(const Golden& g, const std::string& prefix, const Tensor& t, double rtol,
                    double atol) {
  SCOPED_TRACE(prefix);
  auto v = t.contiguous().to_vector<double>();
  double s = 0, sa = 0, sq = 0;
  for (double x : v) s += x, sa += std::abs(x), sq += x * x;
  auto want = G(g, prefix + ".checksum").to_vector<double>();
  // The plain sum cancels, so its tolerance scales with the sum of magnitudes.
  EXPECT_NEAR(s, want[0], atol * static_cast<double>(v.size()) + rtol * want[1]);
  EXPECT_NEAR(sa, want[1], atol * static_cast<double>(v.size()) + rtol * want[1]);
  EXPECT_NEAR(std::sqrt(sq), want[2], atol + rtol * want[2]);
  auto samp = G(g, prefix + ".samples").to_vector<double>();
  for (size_t j = 0; j < samp.size(); ++j) {
    size_t idx = (j * 7919 + 13) % v.size();
    EXPECT_NEAR(v[idx], samp[j], atol + rtol * std::abs(samp[j])) << "element " << idx;
  }
}

}  // namespace

// The CPU generator is torch's, so a seed builds torch's initial weights bit for bit
// (tests/golden/mnist_init: torch.manual_seed(0), then the example's Net()).
TEST(GoldenModels, MnistNetFromASeedHasTorchsInitialWeights) {
  const auto& g = golden("mnist_init");
  manual_seed(0);
  MnistNet net;
  auto sd = net.state_dict();
  ASSERT_EQ(sd.size(), g.size());
  for (auto& [name, t] : sd) {
    SCOPED_TRACE(name);
    EXPECT_EQ(t.to_vector<float>(), G(g, name).to_vector<float>());
  }
}

TEST(GoldenModels, MnistNetOutputLossAndGradients) {
  const auto& g = golden("nn_mnist");
  manual_seed(0);
  MnistNet net(false);
  StateDict sd;
  for (auto& [k, t] : g)
    if (k.rfind("weight.", 0) == 0) sd[k.substr(7)] = t;
  Tensor fc1w = zeros({128, 9216});
  formula_fill(fc1w, 4, "weight");  // too large to store; see the generator
  sd["fc1.weight"] = fc1w;
  net.load_state_dict(sd);  // strict: every name must match PyTorch's

  Tensor out = net(G(g, "input"));
  EXPECT_ALLCLOSE(out, G(g, "output"), 1e-4, 1e-5);
  Tensor loss = nll_loss(out, G(g, "target"));
  EXPECT_ALLCLOSE(loss, G(g, "loss"), 1e-4, 1e-5);
  loss.backward();
  for (auto& [name, p] : net.named_parameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(p.grad().defined());
    if (name == "fc1.weight")
      expect_summary(g, "grad." + name, p.grad(), 1e-4, 1e-6);
    else
      EXPECT_ALLCLOSE(p.grad(), G(g, "grad." + name), 1e-4, 1e-5);
  }
}

// torchvision's initialisation from a seed: Linear/Conv defaults, then kaiming_normal_ over
// the convs in module order. Conv weights agree to float32 rounding only (torch vectorises
// the normal transform's log/sin/cos), the rest exactly.
TEST(GoldenModels, ResNet18FromASeedHasTorchvisionsInitialWeights) {
  const auto& g = golden("nn_resnet18");
  manual_seed(0);
  ResNet18 model(10, 3);
  for (auto& [name, p] : model.named_parameters()) expect_summary(g, "init." + name, p, 1e-6, 0);
}

TEST(GoldenModels, ResNet18ForwardAndSgdStep) {
  const auto& g = golden("nn_resnet18");
  ResNet18 model(10, 3);
  fill_model(model);
  const Tensor& x = G(g, "input");

  model.eval();
  {
    NoGradGuard ng;
    EXPECT_ALLCLOSE(model(x), G(g, "eval_output_before"), 1e-4, 1e-4);
  }
  model.train();
  Tensor out = model(x);
  EXPECT_ALLCLOSE(out, G(g, "train_output"), 1e-4, 1e-4);
  Tensor loss = cross_entropy(out, G(g, "target"));
  EXPECT_ALLCLOSE(loss, G(g, "loss"), 1e-4, 1e-5);
  loss.backward();
  const double lr = 0.1;
  {
    NoGradGuard ng;
    for (auto& [name, p] : model.named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name;
      expect_summary(g, "grad." + name, p.grad(), 2e-3, 1e-6);
      p.sub_(p.grad(), lr);
      expect_summary(g, "updated." + name, p, 1e-4, 1e-6);
    }
  }
  for (auto& [name, b] : model.named_buffers()) {
    SCOPED_TRACE(name);
    if (b.dtype() == kInt64)
      EXPECT_EQ(b.item().to<int64_t>(), G(g, "buffer." + name).item().to<int64_t>());
    else
      EXPECT_ALLCLOSE(b, G(g, "buffer." + name), 1e-4, 1e-5);
  }
  model.eval();
  NoGradGuard ng;
  EXPECT_ALLCLOSE(model(x), G(g, "eval_output_after"), 1e-3, 1e-4);
}
