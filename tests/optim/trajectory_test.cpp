// Optimizer trajectories against PyTorch 1.13 (tests/reference/gen_optim.py): 10 steps of each
// optimizer and option set on the golden problem, parameters compared after every step.
#include <smp/optim/adadelta.h>
#include <smp/optim/adam.h>
#include <smp/optim/sgd.h>

#include <functional>
#include <memory>

#include "optim_test_util.h"

namespace smp::optim::test {
namespace {

using Factory = std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>;

const std::map<std::string, Factory>& cases() {
  static const std::map<std::string, Factory> c = {
      {"sgd_plain", [](auto p) { return std::make_unique<SGD>(p, SGDOptions(0.1)); }},
      {"sgd_momentum",
       [](auto p) { return std::make_unique<SGD>(p, SGDOptions(0.05).momentum(0.9)); }},
      {"sgd_nesterov",
       [](auto p) {
         return std::make_unique<SGD>(p, SGDOptions(0.05).momentum(0.8).nesterov(true));
       }},
      {"sgd_weight_decay",
       [](auto p) {
         return std::make_unique<SGD>(p, SGDOptions(0.1).momentum(0.5).weight_decay(0.1));
       }},
      {"sgd_dampening",
       [](auto p) {
         return std::make_unique<SGD>(p, SGDOptions(0.05).momentum(0.9).dampening(0.3));
       }},
      {"sgd_groups",
       [](std::vector<Tensor> p) {
         std::vector<ParamGroup> groups{{{p[0]}, {{"lr", 0.2}, {"momentum", 0.9}}}, {{p[1]}, {}}};
         return std::make_unique<SGD>(groups, SGDOptions(0.05));
       }},
      {"adam_plain", [](auto p) { return std::make_unique<Adam>(p, AdamOptions(0.1)); }},
      {"adam_betas",
       [](auto p) {
         return std::make_unique<Adam>(p, AdamOptions(0.05).betas({0.8, 0.9}).eps(1e-3));
       }},
      {"adam_weight_decay",
       [](auto p) { return std::make_unique<Adam>(p, AdamOptions(0.1).weight_decay(0.2)); }},
      {"adam_amsgrad",
       [](auto p) { return std::make_unique<Adam>(p, AdamOptions(0.1).amsgrad(true)); }},
      {"adam_skip", [](auto p) { return std::make_unique<Adam>(p, AdamOptions(0.1)); }},
      {"adamw_default", [](auto p) { return std::make_unique<AdamW>(p, AdamWOptions(0.1)); }},
      {"adamw_amsgrad",
       [](auto p) {
         return std::make_unique<AdamW>(p, AdamWOptions(0.05).weight_decay(0.3).amsgrad(true));
       }},
      {"adadelta_default", [](auto p) { return std::make_unique<Adadelta>(p); }},
      {"adadelta_weight_decay",
       [](auto p) {
         return std::make_unique<Adadelta>(
             p, AdadeltaOptions(0.5).rho(0.8).eps(1e-4).weight_decay(0.1));
       }},
  };
  return c;
}

// Runs `name` for 10 steps from `params`, checking every step against the golden trajectory.
void check_trajectory(const std::string& name, std::vector<Tensor> params, double rtol,
                      double atol) {
  Problem prob;
  auto opt = cases().at(name)(params);
  const bool skip = name.size() > 5 && name.substr(name.size() - 5) == "_skip";
  for (int64_t k = 0; k < 10; ++k) {
    opt->zero_grad();
    prob.backward(params);
    if (skip && k % 2 == 0) params[1].mutable_grad() = Tensor();
    opt->step();
    for (size_t i = 0; i < params.size(); ++i) {
      Tensor want = gold("traj." + name + ".p" + std::to_string(i)).select(0, k);
      std::string msg = close(params[i].detach().contiguous(), want, rtol, atol);
      ASSERT_TRUE(msg.empty()) << name << " step " << k + 1 << " param " << i << ": " << msg;
    }
  }
}

class Trajectory : public ::testing::TestWithParam<std::string> {};

// float32 contiguous CPU parameters: the fused loops.
TEST_P(Trajectory, MatchesPyTorchFused) {
  Problem prob;
  check_trajectory(GetParam(), prob.params(kFloat32), 1e-5, 1e-6);
}

// float64 parameters take the op-by-op path; float32 golden values bound the difference.
TEST_P(Trajectory, MatchesPyTorchOpPathFloat64) {
  Problem prob;
  check_trajectory(GetParam(), prob.params(kFloat64), 1e-4, 1e-5);
}

// A non-contiguous float32 leaf (transposed view) also takes the op-by-op path.
TEST_P(Trajectory, MatchesPyTorchOpPathStrided) {
  Problem prob;
  auto params = prob.params(kFloat32);
  Tensor base = params[0].detach().t().contiguous();
  Tensor p0 = base.t();
  ASSERT_FALSE(p0.is_contiguous());
  p0.requires_grad_();
  params[0] = p0;
  check_trajectory(GetParam(), params, 1e-5, 1e-6);
}

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const auto& [k, v] : cases()) names.push_back(k);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Optim, Trajectory, ::testing::ValuesIn(case_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace smp::optim::test
