// LR schedules against PyTorch 1.13: 20 steps of each schedule on two groups (lr 0.1, 0.05).
#include <smp/optim/lr_scheduler.h>
#include <smp/optim/sgd.h>

#include <functional>
#include <memory>

#include "optim_test_util.h"

namespace smp::optim::test {
namespace {

using Make = std::function<std::unique_ptr<LRScheduler>(Optimizer&)>;

const std::map<std::string, Make>& schedules() {
  static const std::map<std::string, Make> s = {
      {"steplr", [](Optimizer& o) { return std::make_unique<StepLR>(o, 3, 0.5); }},
      {"multisteplr",
       [](Optimizer& o) {
         return std::make_unique<MultiStepLR>(o, std::vector<int64_t>{2, 5, 5, 9}, 0.3);
       }},
      {"cosine", [](Optimizer& o) { return std::make_unique<CosineAnnealingLR>(o, 7, 0.01); }},
      {"cosine_default", [](Optimizer& o) { return std::make_unique<CosineAnnealingLR>(o, 10); }},
      {"linear", [](Optimizer& o) { return std::make_unique<LinearLR>(o, 0.25, 1.0, 6); }},
      {"linear_default", [](Optimizer& o) { return std::make_unique<LinearLR>(o); }},
      {"linear_decay", [](Optimizer& o) { return std::make_unique<LinearLR>(o, 1.0, 0.1, 8); }},
  };
  return s;
}

class Schedule : public ::testing::TestWithParam<std::string> {};

TEST_P(Schedule, MatchesPyTorch) {
  Tensor a = zeros({2}).requires_grad_(), b = zeros({3}).requires_grad_();
  SGD opt(std::vector<ParamGroup>{{{a}, {}}, {{b}, {{"lr", 0.05}}}}, SGDOptions(0.1));
  auto sched = schedules().at(GetParam())(opt);
  Tensor want = gold("sched." + GetParam());
  ASSERT_EQ(want.size(0), 21);
  for (int64_t k = 0; k <= 20; ++k) {
    if (k > 0) {
      opt.step();
      sched->step();
    }
    EXPECT_EQ(sched->last_epoch(), k);
    auto row = want.select(0, k).to_vector<double>();
    const auto& lrs = sched->get_last_lrs();
    ASSERT_EQ(lrs.size(), 2u);
    for (size_t g = 0; g < 2; ++g) {
      EXPECT_NEAR(lrs[g], row[g], 1e-12 + 1e-12 * std::abs(row[g]))
          << "epoch " << k << " group " << g;
      EXPECT_EQ(opt.param_groups()[g].options.at("lr"), lrs[g]);
    }
    EXPECT_EQ(sched->get_last_lr(), lrs[0]);
    EXPECT_EQ(opt.lr(), lrs[0]);
  }
  EXPECT_EQ(sched->base_lrs(), (std::vector<double>{0.1, 0.05}));
}

INSTANTIATE_TEST_SUITE_P(Optim, Schedule,
                         ::testing::Values("steplr", "multisteplr", "cosine", "cosine_default",
                                           "linear", "linear_default", "linear_decay"),
                         [](const auto& info) { return info.param; });

TEST(Schedule, InvalidArgumentsAreErrors) {
  Tensor a = zeros({2}).requires_grad_();
  SGD opt({a}, SGDOptions(0.1));
  EXPECT_THROW(StepLR(opt, 0), Error);
  EXPECT_THROW(CosineAnnealingLR(opt, 0), Error);
  EXPECT_THROW(LinearLR(opt, 0.0), Error);
  EXPECT_THROW(LinearLR(opt, 0.5, 1.5), Error);
}

TEST(Schedule, KeepsInitialLrOfAnEarlierScheduler) {
  Tensor a = zeros({2}).requires_grad_();
  SGD opt({a}, SGDOptions(0.1));
  StepLR first(opt, 1, 0.5);
  first.step();  // lr 0.05
  StepLR second(opt, 2, 0.5);
  EXPECT_EQ(second.base_lrs(), std::vector<double>{0.1});
  EXPECT_DOUBLE_EQ(opt.lr(), 0.05);
}

}  // namespace
}  // namespace smp::optim::test
