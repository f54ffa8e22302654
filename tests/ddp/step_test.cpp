// smp::step at pipeline degree 1: microbatches (from the configuration the test binary was
// started with) and data parallelism must give the gradients of one unsplit step over the
// global batch.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "gradcheck.h"

namespace {

std::shared_ptr<smp::nn::Sequential> make_net() {
  auto m = std::make_shared<smp::nn::Sequential>();
  m->push_back(std::make_shared<smp::nn::Linear>(5, 12));
  m->push_back(std::make_shared<smp::nn::ReLU>());
  m->push_back(std::make_shared<smp::nn::Linear>(12, 4));
  return m;
}

constexpr int64_t kRows = 8;  // per rank; divisible by 1, 2, 4 and 8 microbatches

std::pair<smp::Tensor, smp::Tensor> rank_batch(int r) {
  smp::manual_seed(500 + static_cast<uint64_t>(r));
  return {smp::randn({kRows, 5}), smp::randint(0, 4, {kRows})};
}

TEST(Step, GradientsEqualOneUnsplitStepOverTheGlobalBatch) {
  const int m = smp::config().microbatches;
  smp::manual_seed(3);
  auto net = make_net();
  auto ref = make_net();
  ref->load_state_dict(net->state_dict());

  // Reference: cross entropy over the concatenation of every DP rank's batch, one process.
  std::vector<smp::Tensor> xs, ys;
  for (int r = 0; r < smp::dp_size(); ++r) {
    auto [x, y] = rank_batch(r);
    xs.push_back(x);
    ys.push_back(y);
  }
  smp::cross_entropy((*ref)(smp::cat(xs)), smp::cat(ys)).backward();

  smp::DistributedModel model(net);
  smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(model.parameters(), 0.1));
  auto train_step = smp::step([](smp::DistributedModel& md, smp::Tensor x, smp::Tensor y) {
    smp::Tensor out = md(x);
    smp::Tensor loss = smp::cross_entropy(out, y);
    md.backward(loss);
    return std::make_tuple(out, loss);
  });
  opt.zero_grad();
  auto [x, y] = rank_batch(smp::dp_rank());
  auto [out_mb, loss_mb] = train_step(model, x, y);
  model.wait_for_gradients();

  ASSERT_EQ(static_cast<int>(out_mb.size()), m);
  ASSERT_EQ(static_cast<int>(loss_mb.size()), m);
  auto rp = ref->parameters(), mp = model.parameters();
  for (size_t i = 0; i < rp.size(); ++i)
    EXPECT_LE(smp::test::max_abs_diff(mp[i].grad(), rp[i].grad()), 2e-6)
        << "parameter " << i << " with " << m << " microbatches, dp " << smp::dp_size();

  // Outputs: concat is the whole local batch's output; reduce_mean the local batch's loss.
  smp::NoGradGuard ng;
  smp::Tensor full_out = (*ref)(x);
  EXPECT_EQ(out_mb.concat().sizes(), full_out.sizes());
  EXPECT_LE(smp::test::max_abs_diff(out_mb.concat(), full_out), 1e-6);
  EXPECT_NEAR(loss_mb.reduce_mean().item<double>(), smp::cross_entropy(full_out, y).item<double>(),
              1e-6);
  EXPECT_EQ(loss_mb.stack().sizes(), smp::Shape({m}));
  EXPECT_NEAR(loss_mb.reduce_sum().item<double>(), m * loss_mb.reduce_mean().item<double>(), 1e-5);
}

TEST(Step, NonSplitInputsAndSplitAxes) {
  const int m = smp::config().microbatches;
  smp::Tensor seen_w, seen_x;
  // x is split along axis 1; w is given whole to every microbatch.
  auto probe = smp::step(
      [&](smp::DistributedModel&, smp::Tensor x, smp::Tensor w) {
        EXPECT_EQ(w.size(0), 3);
        EXPECT_EQ(x.size(1), 4);
        return x.sum() * w.sum();
      },
      smp::StepOptions{{1}, {{0, 1}}});
  smp::DistributedModel model(make_net());
  smp::NoGradGuard ng;
  smp::Tensor x = smp::ones({2, 4 * m});
  auto out = probe(model, x, smp::ones({3}));
  EXPECT_EQ(static_cast<int>(out.size()), m);
  EXPECT_DOUBLE_EQ(out.reduce_sum().item<double>(), 3.0 * 2 * 4 * m);
}

TEST(Step, ForwardOnlyEvaluationStep) {
  smp::DistributedModel model(make_net());
  auto eval_step = smp::step([](smp::DistributedModel& md, smp::Tensor x) { return md(x); });
  smp::NoGradGuard ng;
  auto [x, y] = rank_batch(0);
  auto out = eval_step(model, x);
  EXPECT_EQ(out.concat().sizes(), smp::Shape({kRows, 4}));
}

TEST(Step, BatchNotDivisibleByMicrobatchesSaysSo) {
  const int m = smp::config().microbatches;
  if (m == 1) GTEST_SKIP() << "every batch divides into one microbatch";
  smp::DistributedModel model(make_net());
  auto s = smp::step([](smp::DistributedModel& md, smp::Tensor x) { return md(x); });
  smp::NoGradGuard ng;
  try {
    s(model, smp::ones({static_cast<int64_t>(m) + 1, 5}));
    FAIL() << "expected an error";
  } catch (const smp::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("batch size " + std::to_string(m + 1)), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(m) + " microbatches"), std::string::npos) << msg;
    EXPECT_NE(msg.find("drop_last"), std::string::npos) << msg;
  }
}

TEST(Step, BackwardTwiceOrNeverIsAnError) {
  smp::DistributedModel model(make_net());
  auto twice = smp::step([](smp::DistributedModel& md, smp::Tensor x, smp::Tensor y) {
    smp::Tensor loss = smp::cross_entropy(md(x), y);
    md.backward(loss);
    md.backward(loss);
    return loss;
  });
  auto never = smp::step([](smp::DistributedModel& md, smp::Tensor x, smp::Tensor y) {
    return smp::cross_entropy(md(x), y);
  });
  auto [x, y] = rank_batch(smp::dp_rank());
  try {
    twice(model, x, y);
    FAIL() << "expected an error";
  } catch (const smp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("called twice in microbatch 0"), std::string::npos)
        << e.what();
  }
  model.wait_for_gradients();
  try {
    never(model, x, y);
    FAIL() << "expected an error";
  } catch (const smp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("never called model.backward"), std::string::npos)
        << e.what();
  }
}

}  // namespace
