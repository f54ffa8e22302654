// Module: registration order and names, state dicts, save/load, modes, dtype moves, grads.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "op_test_utils.h"
#include "gradcheck.h"

using namespace smp;
using namespace smp::nn;

namespace {

using smp::test::error_of;

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (auto& [n, t] : v) out.push_back(n);
  return out;
}

struct Inner : Module {
  Inner() {
    lin = register_module("lin", std::make_shared<Linear>(3, 2));
    register_buffer("count", zeros({1}));
  }
  Tensor forward(const Tensor& x) override { return (*lin)(x); }
  std::shared_ptr<Linear> lin;
};

struct Outer : Module {
  Outer() {
    scale = register_parameter("scale", ones({2}));
    inner = register_module("inner", std::make_shared<Inner>());
    seq = register_module("seq", std::make_shared<Sequential>());
    seq->push_back(std::make_shared<Linear>(2, 4));
    seq->push_back(std::make_shared<ReLU>());
    seq->push_back("head", std::make_shared<Linear>(LinearOptions(4, 1).bias(false)));
  }
  Tensor forward(const Tensor& x) override { return (*seq)((*inner)(x)*scale); }
  Tensor scale;
  std::shared_ptr<Inner> inner;
  std::shared_ptr<Sequential> seq;
};

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + std::to_string(::getpid()))).string();
}

}  // namespace

TEST(Module, NestedDottedNamesInRegistrationOrder) {
  Outer m;
  std::vector<std::string> want = {"scale",        "inner.lin.weight", "inner.lin.bias",
                                   "seq.0.weight", "seq.0.bias",       "seq.head.weight"};
  EXPECT_EQ(names_of(m.named_parameters()), want);
  EXPECT_EQ(names_of(m.named_parameters(false)), std::vector<std::string>{"scale"});
  EXPECT_EQ(names_of(m.named_buffers()), std::vector<std::string>{"inner.count"});
  std::vector<std::string> mods;
  for (auto& [n, mm] : m.named_modules()) mods.push_back(n);
  EXPECT_EQ(mods, (std::vector<std::string>{"", "inner", "inner.lin", "seq", "seq.0", "seq.1",
                                            "seq.head"}));
  std::vector<std::string> kids;
  for (auto& [n, c] : m.named_children()) kids.push_back(n);
  EXPECT_EQ(kids, (std::vector<std::string>{"inner", "seq"}));
  EXPECT_EQ(m.parameters().size(), 6u);
  for (auto& p : m.parameters()) {
    EXPECT_TRUE(p.requires_grad());
    EXPECT_TRUE(p.is_leaf());
  }
  EXPECT_EQ(m.num_parameters(), 2 + 6 + 2 + 8 + 4 + 4);
}

TEST(Module, RegistrationErrors) {
  Module m;
  Tensor mine = ones({1});
  m.register_parameter("w", mine);
  EXPECT_TRUE(mine.requires_grad());  // the module holds the caller's tensor itself
  EXPECT_TRUE(m.named_parameters()[0].second.is_same(mine));
  Tensor with_history = ones({2}).requires_grad_() * 2.0;
  Tensor& p = m.register_parameter("p", with_history);
  EXPECT_TRUE(p.is_leaf() && p.requires_grad());
  EXPECT_FALSE(m.register_parameter("frozen", ones({1}), false).requires_grad());
  EXPECT_NE(error_of([&] { m.register_parameter("w", ones({1})); }).find("already"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.register_buffer("a.b", ones({1})); }).find("'.'"), std::string::npos);
  EXPECT_NE(error_of([&] { m.forward(ones({1})); }).find("no single-tensor forward"),
            std::string::npos);
  // An absent parameter (bias=false) is skipped.
  Linear l(LinearOptions(3, 2).bias(false));
  EXPECT_EQ(names_of(l.named_parameters()), std::vector<std::string>{"weight"});
}

TEST(Module, CallStackDuringForward) {
  struct Probe : Module {
    Tensor forward(const Tensor& x) override {
      seen = current_module_stack();
      return x;
    }
    std::vector<Module*> seen;
  };
  auto seq = std::make_shared<Sequential>();
  auto probe = std::make_shared<Probe>();
  seq->push_back(probe);
  EXPECT_TRUE(current_module_stack().empty());
  (*seq)(ones({1}));
  ASSERT_EQ(probe->seen.size(), 2u);
  EXPECT_EQ(probe->seen[0], seq.get());
  EXPECT_EQ(probe->seen[1], probe.get());
  EXPECT_TRUE(current_module_stack().empty());
  // The stack unwinds when forward throws.
  auto bad = std::make_shared<Linear>(3, 2);
  EXPECT_FALSE(error_of([&] { (*bad)(ones({2, 5})); }).empty());
  EXPECT_TRUE(current_module_stack().empty());
}

TEST(Module, StateDictRoundTrip) {
  manual_seed(1);
  Outer a;
  manual_seed(2);
  Outer b;
  auto sd = a.state_dict();
  EXPECT_EQ(sd.size(), 7u);  // 6 parameters + 1 buffer
  EXPECT_FALSE(sd.at("inner.lin.weight").requires_grad());
  // Shares storage: a change to the module shows in the state dict.
  {
    NoGradGuard ng;
    a.inner->lin->weight.add_(1.0);
  }
  EXPECT_ALLCLOSE(sd.at("inner.lin.weight"), a.inner->lin->weight);
  b.load_state_dict(a.state_dict());
  for (auto& [n, t] : a.state_dict()) EXPECT_ALLCLOSE(b.state_dict().at(n), t);
  // Loaded values are copies, and b's parameters are still leaves requiring grad.
  EXPECT_FALSE(b.inner->lin->weight.is_alias_of(a.inner->lin->weight));
  EXPECT_TRUE(b.inner->lin->weight.requires_grad());
  EXPECT_TRUE(b.inner->lin->weight.is_leaf());
}

TEST(Module, LoadStateDictErrors) {
  MnistNet net;
  auto sd = net.state_dict();
  auto bad = sd;
  bad["fc1.weight"] = zeros({10, 9216});
  std::string e = error_of([&] { net.load_state_dict(bad); });
  EXPECT_NE(e.find("fc1.weight: expected [128, 9216], got [10, 9216]"), std::string::npos) << e;
  // Wrong shapes are an error even when not strict.
  EXPECT_FALSE(error_of([&] { net.load_state_dict(bad, false); }).empty());

  auto missing = sd;
  missing.erase("conv2.bias");
  missing.erase("fc2.weight");
  missing["extra.weight"] = zeros({1});
  e = error_of([&] { net.load_state_dict(missing); });
  EXPECT_NE(e.find("missing keys: conv2.bias, fc2.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown keys: extra.weight"), std::string::npos) << e;
  // Non-strict loads what matches.
  auto partial = sd;
  partial.erase("fc2.weight");
  partial["conv1.bias"] = full({32}, 0.5);
  partial["junk"] = zeros({1});
  net.load_state_dict(partial, false);
  EXPECT_ALLCLOSE(net.conv1->bias, full({32}, 0.5));
}

TEST(Module, SaveLoadSafetensors) {
  manual_seed(3);
  ResNet18 a(10, 1);
  {
    NoGradGuard ng;
    a.bn1->running_mean.fill_(0.25);
    a.bn1->num_batches_tracked.fill_(7);
  }
  std::string path = tmp_path("smp_nn_save");
  a.save(path);
  auto file = load_safetensors(path);
  EXPECT_EQ(file.size(), a.state_dict().size());
  EXPECT_EQ(file.at("layer2.0.downsample.1.num_batches_tracked").dtype(), kInt64);
  manual_seed(4);
  ResNet18 b(10, 1);
  b.load(path);
  for (auto& [n, t] : a.state_dict()) EXPECT_ALLCLOSE(b.state_dict().at(n), t);
  EXPECT_EQ(b.bn1->num_batches_tracked.item().to<int64_t>(), 7);
  ResNet18 c(1000, 3);
  EXPECT_NE(error_of([&] { c.load(path); }).find("fc.weight: expected [1000, 512], got [10, 512]"),
            std::string::npos);
  std::remove(path.c_str());
}

TEST(Module, TrainEvalSwitchesDropoutAndBatchNorm) {
  manual_seed(5);
  auto seq = std::make_shared<Sequential>();
  seq->push_back(std::make_shared<BatchNorm2d>(3));
  seq->push_back(std::make_shared<Dropout>(0.5));
  auto bn = seq->ptr_as<BatchNorm2d>(0);
  Tensor x = randn({4, 3, 5, 5}) * 3.0 + 2.0;
  EXPECT_TRUE(seq->is_training());
  Tensor y = (*seq)(x);
  // Training: dropout zeroes about half; running stats moved; batches counted.
  double zero_frac = y.eq(0.0).to(kFloat64).mean().item().to<double>();
  EXPECT_GT(zero_frac, 0.35);
  EXPECT_LT(zero_frac, 0.65);
  EXPECT_EQ(bn->num_batches_tracked.item().to<int64_t>(), 1);
  Tensor mean_after = bn->running_mean.clone();
  EXPECT_ALLCLOSE(mean_after, x.mean({0, 2, 3}) * 0.1, 1e-4, 1e-5);

  seq->eval();
  EXPECT_FALSE(bn->is_training());
  Tensor e1 = (*seq)(x), e2 = (*seq)(x);
  EXPECT_ALLCLOSE(e1, e2);  // no dropout, running stats fixed
  EXPECT_EQ(bn->num_batches_tracked.item().to<int64_t>(), 1);
  EXPECT_ALLCLOSE(bn->running_mean, mean_after);
  Tensor rm = bn->running_mean.reshape({1, 3, 1, 1}), rv = bn->running_var.reshape({1, 3, 1, 1});
  EXPECT_ALLCLOSE(e1, (x - rm) / (rv + 1e-5).sqrt(), 1e-4, 1e-5);
  seq->train();
  EXPECT_TRUE(bn->is_training());
}

TEST(Module, ToFloat64KeepsHandlesAndLeaves) {
  manual_seed(6);
  Outer m;
  Tensor w = m.inner->lin->weight;  // a handle taken before the cast, like an optimizer's
  Tensor before = w.clone();
  m.to(kFloat64);
  for (auto& [n, p] : m.named_parameters()) {
    EXPECT_EQ(p.dtype(), kFloat64) << n;
    EXPECT_TRUE(p.is_leaf() && p.requires_grad()) << n;
  }
  EXPECT_EQ(w.dtype(), kFloat64);
  EXPECT_ALLCLOSE(w.to(kFloat32), before);
  Tensor out = m(randn({5, 3}, kFloat64));
  EXPECT_EQ(out.dtype(), kFloat64);
  out.sum().backward();
  EXPECT_EQ(w.grad().dtype(), kFloat64);
  // Integer buffers are not cast.
  BatchNorm2d bn(2);
  bn.to(kFloat64);
  EXPECT_EQ(bn.running_var.dtype(), kFloat64);
  EXPECT_EQ(bn.num_batches_tracked.dtype(), kInt64);
  m.to(Device(kCPU));
  EXPECT_TRUE(w.is_cpu());
}

TEST(Module, ZeroGrad) {
  manual_seed(7);
  Outer m;
  m(randn({4, 3})).sum().backward();
  for (auto& p : m.parameters()) EXPECT_TRUE(p.grad().defined());
  m.zero_grad(false);
  for (auto& p : m.parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().abs().sum().item().to<double>(), 0.0);
  }
  m.zero_grad();
  for (auto& p : m.parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Module, ModelParameterNamesAndCounts) {
  MnistNet mnist;
  EXPECT_EQ(names_of(mnist.named_parameters()),
            (std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                      "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(mnist.num_parameters(), 1199882);
  EXPECT_EQ(mnist(randn({2, 1, 28, 28})).sizes(), (Shape{2, 10}));

  ResNet18 r;
  EXPECT_EQ(r.num_parameters(), 11689512);
  auto names = names_of(r.named_parameters());
  ASSERT_EQ(names.size(), 62u);
  EXPECT_EQ(names[0], "conv1.weight");
  EXPECT_EQ(names[1], "bn1.weight");
  EXPECT_EQ(names[3], "layer1.0.conv1.weight");
  EXPECT_EQ(names.back(), "fc.bias");
  auto sd = r.state_dict();
  EXPECT_EQ(sd.size(), 62u + 3u * 20u);  // 20 batch norms with 3 buffers each
  for (const char* k : {"layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
                        "layer4.1.bn2.num_batches_tracked", "layer3.1.conv2.weight"})
    EXPECT_TRUE(sd.count(k)) << k;
  EXPECT_FALSE(sd.count("layer1.0.downsample.0.weight"));
  EXPECT_EQ(sd.at("layer3.0.conv1.weight").sizes(), (Shape{256, 128, 3, 3}));
  ResNet18 small(10, 1);
  EXPECT_EQ(small.conv1->weight.sizes(), (Shape{64, 1, 7, 7}));
  EXPECT_EQ(small.fc->weight.sizes(), (Shape{10, 512}));
}

// AttributeScope: what a higher layer attaches at construction (smp::partition is built on it).
TEST(Module, AttributeScopesTagModulesInnermostWinsPerKey) {
  using smp::nn::AttributeScope;
  std::shared_ptr<smp::nn::Linear> outer, inner, after;
  {
    AttributeScope a("stage", 0);
    AttributeScope b("mark", 7);
    outer = std::make_shared<smp::nn::Linear>(2, 2);
    {
      AttributeScope c("stage", 3);
      inner = std::make_shared<smp::nn::Linear>(2, 2);
    }
  }
  after = std::make_shared<smp::nn::Linear>(2, 2);
  EXPECT_EQ(outer->attribute("stage"), 0);
  EXPECT_EQ(outer->attribute("mark"), 7);
  EXPECT_EQ(inner->attribute("stage"), 3);  // innermost scope of a key wins
  EXPECT_EQ(inner->attribute("mark"), 7);   // other keys still apply
  EXPECT_EQ(after->attribute("stage"), std::nullopt);
  EXPECT_EQ(outer->attribute("absent"), std::nullopt);
  after->set_attribute("stage", 5);
  EXPECT_EQ(after->attribute("stage"), 5);
}

namespace {
// A head that holds another module's weight as its own parameter (weight tying).
struct TiedHead : Module {
  explicit TiedHead(const Tensor& w) { weight = register_parameter("weight", w); }
  Tensor forward(const Tensor& x) override { return linear(x, weight); }
  Tensor weight;
};
struct Tied : Module {
  Tied() {
    emb = register_module("emb", std::make_shared<Embedding>(5, 3));
    bn = register_module("bn", std::make_shared<BatchNorm2d>(2));
    head = register_module("head", std::make_shared<TiedHead>(emb->weight));
  }
  Tensor forward(const Tensor& idx) override { return (*head)((*emb)(idx)); }
  std::shared_ptr<Embedding> emb;
  std::shared_ptr<BatchNorm2d> bn;
  std::shared_ptr<TiedHead> head;
};
}  // namespace

// A tensor registered under two names is one parameter: listed once, under its first name,
// so an optimizer updates it once; state_dict lists both names (as PyTorch), load_state_dict
// takes both, and to() moves it once with every handle seeing it.
TEST(Module, TiedParameterListedOnceButStateDictHasBothNames) {
  manual_seed(8);
  Tied m;
  ASSERT_TRUE(m.head->weight.is_same(m.emb->weight));
  EXPECT_EQ(names_of(m.named_parameters()),
            (std::vector<std::string>{"emb.weight", "bn.weight", "bn.bias"}));
  EXPECT_EQ(names_of(m.named_parameters(true, false)),
            (std::vector<std::string>{"emb.weight", "bn.weight", "bn.bias", "head.weight"}));
  EXPECT_EQ(m.parameters().size(), 3u);
  EXPECT_EQ(m.num_parameters(), 15 + 2 + 2);
  auto sd = m.state_dict();
  ASSERT_EQ(sd.count("emb.weight"), 1u);
  ASSERT_EQ(sd.count("head.weight"), 1u);
  EXPECT_TRUE(sd["emb.weight"].data_ptr() == sd["head.weight"].data_ptr());

  // Both keys are expected by a strict load; the later one (module order) is what stays.
  StateDict in = sd;
  in["emb.weight"] = full({5, 3}, 1.0);
  in["head.weight"] = full({5, 3}, 2.0);
  m.load_state_dict(in);
  EXPECT_EQ(m.emb->weight.sum().item<float>(), 30.0f);
  EXPECT_TRUE(m.head->weight.is_same(m.emb->weight));
  in.erase("head.weight");
  EXPECT_NE(error_of([&] { m.load_state_dict(in); }).find("missing keys: head.weight"),
            std::string::npos);

  // Gradients from both uses land in the one tensor.
  Tensor idx = tensor<int64_t>({0, 3}, {2});
  m(idx).sum().backward();
  ASSERT_TRUE(m.emb->weight.grad().defined());
  EXPECT_TRUE(m.head->weight.grad().is_same(m.emb->weight.grad()));

  Tensor handle = m.head->weight;
  m.to(kFloat64);
  EXPECT_EQ(m.emb->weight.dtype(), kFloat64);
  EXPECT_EQ(handle.dtype(), kFloat64);
  EXPECT_TRUE(m.head->weight.is_same(m.emb->weight));
  EXPECT_EQ(m.emb->weight.sum().item<double>(), 30.0);
  EXPECT_EQ(m.parameters().size(), 3u);
}

TEST(Module, TwoTensorForwardDefaultRefusesNamingTheModule) {
  Linear lin(2, 2);
  const std::string msg = error_of([&] { lin(ones({1, 2}), ones({1, 2})); });
  EXPECT_NE(msg.find("module Linear takes one tensor"), std::string::npos) << msg;
}

// replace_module keeps a container's own list in step with its children: indexing, iteration
// and forward see the new module.
TEST(Module, ReplaceModuleUpdatesSequentialAndModuleList) {
  smp::nn::Sequential seq;
  seq.push_back(std::make_shared<smp::nn::Flatten>());
  seq.push_back("act", std::make_shared<smp::nn::ReLU>());
  auto gelu = seq.replace_module("act", std::make_shared<smp::nn::GELU>());
  EXPECT_EQ(seq[1], gelu);
  EXPECT_EQ((*seq.begin())->name(), "Flatten");
  const smp::Tensor x = smp::full({2, 3}, -1.0);
  EXPECT_LT(seq.forward(x).max().item<float>(), 0);  // GELU passes negatives, ReLU does not
  smp::nn::ModuleList list;
  list.push_back(std::make_shared<smp::nn::ReLU>());
  auto lin = list.replace_module("0", std::make_shared<smp::nn::Linear>(2, 2));
  EXPECT_EQ(list[0], lin);
  EXPECT_EQ(list.children()[0], lin);
}
