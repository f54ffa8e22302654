// Optimizer base behaviour: state_dict round trips, zero_grad, skipped parameters, errors.
#include <smp/optim/adadelta.h>
#include <smp/optim/adam.h>
#include <smp/optim/sgd.h>

#include <cstdio>
#include <functional>
#include <memory>

#include "optim_test_util.h"

namespace smp::optim::test {
namespace {

using Factory = std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>;

const std::map<std::string, Factory>& factories() {
  static const std::map<std::string, Factory> f = {
      {"sgd_nesterov",
       [](auto p) {
         return std::make_unique<SGD>(p, SGDOptions(0.05).momentum(0.8).nesterov(true));
       }},
      {"sgd_groups",
       [](std::vector<Tensor> p) {
         std::vector<ParamGroup> g{{{p[0]}, {{"lr", 0.2}, {"momentum", 0.9}}}, {{p[1]}, {}}};
         return std::make_unique<SGD>(g, SGDOptions(0.05).weight_decay(0.01));
       }},
      {"adam_amsgrad",
       [](auto p) { return std::make_unique<Adam>(p, AdamOptions(0.1).amsgrad(true)); }},
      {"adamw", [](auto p) { return std::make_unique<AdamW>(p, AdamWOptions(0.1)); }},
      {"adadelta",
       [](auto p) { return std::make_unique<Adadelta>(p, AdadeltaOptions().weight_decay(0.1)); }},
  };
  return f;
}

void run_steps(Optimizer& opt, const std::vector<Tensor>& params, int n) {
  Problem prob;
  for (int k = 0; k < n; ++k) {
    opt.zero_grad();
    prob.backward(params);
    opt.step();
  }
}

class StateDictRoundTrip : public ::testing::TestWithParam<std::string> {};

// 5 steps, save the optimizer through safetensors, load into a fresh optimizer (whose lr was
// changed, so the options must come from the file), 5 more steps: bit-identical to 10 steps.
TEST_P(StateDictRoundTrip, ResumedRunMatchesUninterruptedRun) {
  Problem prob;
  const auto& make = factories().at(GetParam());
  auto full = prob.params();
  auto opt_full = make(full);
  run_steps(*opt_full, full, 10);

  auto half = prob.params();
  auto opt_half = make(half);
  run_steps(*opt_half, half, 5);
  const std::string path = ::testing::TempDir() + "optim_state_" + GetParam() + ".safetensors";
  save_safetensors(path, opt_half->state_dict());

  std::vector<Tensor> resumed;
  for (const auto& p : half) resumed.push_back(p.detach().clone().requires_grad_());
  auto opt_resumed = make(resumed);
  opt_resumed->set_lr(123.0);
  opt_resumed->load_state_dict(load_safetensors(path));
  std::remove(path.c_str());
  EXPECT_EQ(opt_resumed->lr(), opt_half->lr());
  run_steps(*opt_resumed, resumed, 5);
  for (size_t i = 0; i < full.size(); ++i) {
    auto a = resumed[i].to_vector<float>(), b = full[i].to_vector<float>();
    EXPECT_EQ(a, b) << GetParam() << " param " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Optim, StateDictRoundTrip,
                         ::testing::Values("sgd_nesterov", "sgd_groups", "adam_amsgrad", "adamw",
                                           "adadelta"),
                         [](const auto& info) { return info.param; });

TEST(StateDict, KeysFollowPyTorchLayout) {
  Problem prob;
  auto ps = prob.params();
  Adam opt(ps, AdamOptions(0.01).betas({0.8, 0.95}));
  run_steps(opt, ps, 3);
  auto sd = opt.state_dict();
  for (const char* k : {"state.0.exp_avg", "state.0.exp_avg_sq", "state.1.exp_avg", "state.1.step",
                        "param_groups.0.lr", "param_groups.0.betas0", "param_groups.0.params"})
    EXPECT_TRUE(sd.count(k)) << k;
  EXPECT_FALSE(sd.count("state.0.max_exp_avg_sq"));
  EXPECT_EQ(sd.at("state.1.step").dtype(), kFloat32);
  EXPECT_EQ(sd.at("state.1.step").item<double>(), 3.0);
  EXPECT_EQ(sd.at("param_groups.0.betas1").dtype(), kFloat64);
  EXPECT_EQ(sd.at("param_groups.0.betas1").dim(), 0);
  EXPECT_EQ(sd.at("param_groups.0.betas1").item<double>(), 0.95);
  EXPECT_EQ(sd.at("param_groups.0.params").to_vector<int64_t>(), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(sd.at("state.0.exp_avg").sizes(), ps[0].sizes());
  // A copy: later steps leave the saved state alone.
  auto before = sd.at("state.0.exp_avg").to_vector<float>();
  run_steps(opt, ps, 1);
  EXPECT_EQ(sd.at("state.0.exp_avg").to_vector<float>(), before);

  SGD sgd(prob.params(), SGDOptions(0.1));
  EXPECT_FALSE(sgd.state_dict().count("state.0.momentum_buffer"));
}

TEST(StateDict, MismatchesAreErrors) {
  Problem prob;
  auto ps = prob.params();
  Adam opt(ps, AdamOptions(0.01));
  run_steps(opt, ps, 1);
  auto sd = opt.state_dict();

  Adam one_param({prob.params()[0]});
  EXPECT_THROW(one_param.load_state_dict(sd), Error);  // state.1 names a parameter it lacks

  Adam two_groups(std::vector<ParamGroup>{{{prob.params()[0]}, {}}, {{prob.params()[1]}, {}}});
  EXPECT_THROW(two_groups.load_state_dict(sd), Error);  // group 0 has 2 params there

  auto bad = sd;
  bad["state.0.exp_avg"] = zeros({2, 2});
  Adam fresh(prob.params());
  EXPECT_THROW(fresh.load_state_dict(bad), Error);
  bad = sd;
  bad["momentum"] = zeros({});
  EXPECT_THROW(fresh.load_state_dict(bad), Error);
  bad = sd;
  bad["param_groups.0.lr"] = scalar_tensor(-1.0, TensorOptions(kFloat64));
  try {
    fresh.load_state_dict(bad);
    ADD_FAILURE() << "negative lr was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fresh.lr(), 1e-3);  // a failed load changes nothing
}

TEST(ZeroGrad, SetToNoneDropsGradients) {
  Problem prob;
  auto ps = prob.params();
  SGD opt(ps, SGDOptions(0.1));
  prob.backward(ps);
  ASSERT_TRUE(ps[0].grad().defined());
  opt.zero_grad();
  EXPECT_FALSE(ps[0].grad().defined());
  EXPECT_FALSE(ps[1].grad().defined());
}

TEST(ZeroGrad, InPlaceKeepsTheTensor) {
  Problem prob;
  auto ps = prob.params();
  SGD opt(ps, SGDOptions(0.1));
  prob.backward(ps);
  Tensor g = ps[0].grad();
  void* data = g.data_ptr();
  opt.zero_grad(false);
  ASSERT_TRUE(ps[0].grad().defined());
  EXPECT_EQ(ps[0].grad().data_ptr(), data);
  for (float v : ps[0].grad().to_vector<float>()) EXPECT_EQ(v, 0.0f);
  // The next backward accumulates into zeros: the plain gradient again.
  prob.backward(ps);
  Problem fresh;
  auto qs = fresh.params();
  fresh.backward(qs);
  EXPECT_EQ(ps[0].grad().to_vector<float>(), qs[0].grad().to_vector<float>());
}

TEST(Step, SkipsParametersWithoutGradient) {
  Tensor with = ones({3}).requires_grad_(), without = ones({2}).requires_grad_();
  for (auto make : {+[](std::vector<Tensor> p) -> std::unique_ptr<Optimizer> {
                      return std::make_unique<SGD>(p, SGDOptions(0.1).momentum(0.9));
                    },
                    +[](std::vector<Tensor> p) -> std::unique_ptr<Optimizer> {
                      return std::make_unique<Adam>(p);
                    },
                    +[](std::vector<Tensor> p) -> std::unique_ptr<Optimizer> {
                      return std::make_unique<AdamW>(p);
                    },
                    +[](std::vector<Tensor> p) -> std::unique_ptr<Optimizer> {
                      return std::make_unique<Adadelta>(p);
                    }}) {
    auto opt = make({with, without});
    with.set_grad(ones({3}));
    opt->step();
    EXPECT_EQ(without.to_vector<float>(), (std::vector<float>{1, 1}));
    EXPECT_EQ(opt->find_state(without), nullptr);
    EXPECT_NE(opt->find_state(with), nullptr);
    EXPECT_LT(with.to_vector<float>()[0], 1.0f);
    EXPECT_FALSE(with.grad_fn());
    EXPECT_TRUE(with.is_leaf());
  }
}

TEST(Options, LrAccessAndDefaultsFillGroups) {
  Tensor a = zeros({2}).requires_grad_(), b = zeros({2}).requires_grad_();
  Adadelta opt(std::vector<ParamGroup>{{{a}, {{"lr", 0.5}}}, {{b}, {}}},
               AdadeltaOptions().rho(0.7));
  EXPECT_EQ(opt.lr(), 0.5);
  EXPECT_EQ(opt.param_groups()[1].options.at("lr"), 1.0);
  EXPECT_EQ(opt.param_groups()[0].options.at("rho"), 0.7);
  opt.set_lr(0.25);
  EXPECT_EQ(opt.param_groups()[0].options.at("lr"), 0.25);
  EXPECT_EQ(opt.param_groups()[1].options.at("lr"), 0.25);
  Tensor c = zeros({1}).requires_grad_();
  opt.add_param_group({{c}, {{"eps", 1e-3}}});
  EXPECT_EQ(opt.param_groups()[2].options.at("eps"), 1e-3);
  EXPECT_EQ(opt.param_groups()[2].options.at("rho"), 0.7);
  EXPECT_THROW(opt.add_param_group({{a}, {}}), Error);  // already optimized
  EXPECT_THROW(opt.add_param_group({{zeros({1}).requires_grad_()}, {{"rho", 2.0}}}), Error);
}

// The message names the offending value, as PyTorch's ValueError does.
void expect_error_naming(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Options, InvalidHyperparametersAreErrors) {
  std::vector<Tensor> p{zeros({2}).requires_grad_()};
  expect_error_naming([&] { SGD(p, SGDOptions(-0.1)); }, "-0.1");
  expect_error_naming([&] { SGD(p, SGDOptions(0.1).momentum(-0.5)); }, "-0.5");
  expect_error_naming([&] { SGD(p, SGDOptions(0.1).weight_decay(-2)); }, "-2");
  expect_error_naming([&] { SGD(p, SGDOptions(0.1).nesterov(true)); }, "Nesterov");
  expect_error_naming([&] { SGD(p, SGDOptions(0.1).momentum(0.9).dampening(0.1).nesterov(true)); },
                      "dampening 0.1");
  expect_error_naming([&] { Adam(p, AdamOptions(-1e-3)); }, "-0.001");
  expect_error_naming([&] { Adam(p, AdamOptions().betas({1.0, 0.9})); }, "index 0: 1");
  expect_error_naming([&] { Adam(p, AdamOptions().betas({0.9, -0.1})); }, "index 1: -0.1");
  expect_error_naming([&] { Adam(p, AdamOptions().eps(-1)); }, "epsilon value: -1");
  expect_error_naming([&] { AdamW(p, AdamWOptions().weight_decay(-0.01)); }, "-0.01");
  expect_error_naming([&] { Adadelta(p, AdadeltaOptions().rho(1.5)); }, "rho value: 1.5");
  expect_error_naming([&] { Adadelta(p, AdadeltaOptions().rho(-0.1)); }, "rho value: -0.1");
  expect_error_naming([&] { Adadelta(p, AdadeltaOptions(-1.0)); }, "learning rate: -1");
  EXPECT_NO_THROW(Adadelta(p, AdadeltaOptions().rho(1.0)));
  EXPECT_NO_THROW(SGD(p, SGDOptions(0.0)));
}

TEST(Options, BadParameterListsAreErrors) {
  EXPECT_THROW(SGD(std::vector<Tensor>{}, SGDOptions(0.1)), Error);
  Tensor a = zeros({2}).requires_grad_();
  EXPECT_THROW(SGD(std::vector<Tensor>{a, a}, SGDOptions(0.1)), Error);
  Tensor non_leaf = a * 2.0;
  EXPECT_THROW(SGD(std::vector<Tensor>{non_leaf}, SGDOptions(0.1)), Error);
}

}  // namespace
}  // namespace smp::optim::test
