// DistributedModel / DistributedOptimizer under mpirun: parameters start equal, gradients are
// the DP-group average, buckets follow reverse registration order.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <algorithm>
#include <cmath>

#include "gradcheck.h"

namespace {

std::shared_ptr<smp::nn::Sequential> make_mlp() {
  auto m = std::make_shared<smp::nn::Sequential>();
  m->push_back(std::make_shared<smp::nn::Linear>(6, 16));
  m->push_back(std::make_shared<smp::nn::ReLU>());
  m->push_back(std::make_shared<smp::nn::Linear>(16, 8));
  m->push_back(std::make_shared<smp::nn::ReLU>());
  m->push_back(std::make_shared<smp::nn::Linear>(8, 3));
  return m;
}

/// Rank r's batch: a deterministic function of r, so every rank can rebuild everyone's.
std::pair<smp::Tensor, smp::Tensor> batch_of(int r) {
  smp::manual_seed(1000 + static_cast<uint64_t>(r));
  smp::Tensor x = smp::randn({5, 6});
  smp::Tensor y = smp::randint(0, 3, {5});
  return {x, y};
}

TEST(DDP, ParametersAreBroadcastFromTheFirstDpRank) {
  smp::manual_seed(77 + static_cast<uint64_t>(smp::rank()));  // every rank starts different
  auto net = make_mlp();
  smp::DistributedModel model(net);
  for (auto& [name, p] : net->named_parameters()) {
    smp::Tensor mine = p.detach().clone();
    smp::Tensor first = mine.clone();
    smp::comm(smp::CommGroup::DP_GROUP).broadcast(first, 0)->wait();
    EXPECT_EQ(smp::test::max_abs_diff(mine, first), 0) << name << " on rank " << smp::rank();
  }
}

TEST(DDP, GradientsAreTheAverageOverTheGroup) {
  smp::manual_seed(5);
  auto net = make_mlp();
  // A tiny cap puts each parameter in its own bucket, so several allreduces are in flight.
  smp::DistributedModelOptions opts;
  opts.bucket_cap_mb = 1e-6;
  smp::DistributedModel model(net, opts);
  smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(model.parameters(), 0.1));

  // Reference: the same model on every rank's batch, one process, averaged by hand.
  auto ref = make_mlp();
  ref->load_state_dict(net->state_dict());
  std::vector<smp::Tensor> sum;
  for (int r = 0; r < smp::dp_size(); ++r) {
    ref->zero_grad();
    auto [x, y] = batch_of(r);
    smp::cross_entropy((*ref)(x), y).backward();
    auto ps = ref->parameters();
    if (sum.empty())
      for (auto& p : ps) sum.push_back(p.grad().clone());
    else
      for (size_t i = 0; i < ps.size(); ++i) sum[i] = sum[i] + ps[i].grad();
  }

  opt.zero_grad();
  auto [x, y] = batch_of(smp::dp_rank());
  model.backward(smp::cross_entropy(model(x), y));
  model.wait_for_gradients();
  auto ps = model.parameters();
  for (size_t i = 0; i < ps.size(); ++i)
    EXPECT_LE(smp::test::max_abs_diff(ps[i].grad(), sum[i] / static_cast<double>(smp::dp_size())),
              1e-6)
        << "grad " << i << " on rank " << smp::rank();

  // step() must leave every replica with identical weights.
  opt.step();
  for (auto& p : model.parameters()) {
    smp::Tensor first = p.detach().clone();
    smp::comm(smp::CommGroup::DP_GROUP).broadcast(first, 0)->wait();
    EXPECT_EQ(smp::test::max_abs_diff(p.detach(), first), 0)
        << "weights after step on rank " << smp::rank();
  }
}

TEST(DDP, BucketsFollowReverseRegistrationOrderAndTheCap) {
  auto net = make_mlp();
  smp::DistributedModel whole(net);  // 25 MiB: everything in one bucket
  if (smp::dp_size() == 1) GTEST_SKIP() << "no reducer with one DP rank";
  auto one = whole.bucket_layout();
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].front(), "4.bias");
  EXPECT_EQ(one[0].back(), "0.weight");
  EXPECT_EQ(one[0].size(), 6u);

  // 16*8 + 8 floats = 544 bytes fit; 6*16 floats = 384 bytes more do not.
  smp::DistributedModelOptions opts;
  opts.bucket_cap_mb = 600.0 / (1024.0 * 1024.0);
  smp::DistributedModel split(make_mlp(), opts);
  auto layout = split.bucket_layout();
  std::vector<std::vector<std::string>> expect = {
      {"4.bias", "4.weight", "2.bias"}, {"2.weight", "0.bias"}, {"0.weight"}};
  EXPECT_EQ(layout, expect);
}

TEST(DDP, UnusedParametersStillReduce) {
  // Rank 0 leaves the last layer out of its loss; every rank must still finish the step.
  if (smp::dp_size() == 1) GTEST_SKIP() << "nothing to reduce with one DP rank";
  smp::manual_seed(9);
  auto net = make_mlp();
  smp::DistributedModel model(net);
  smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(model.parameters(), 0.1));
  opt.zero_grad();
  auto [x, y] = batch_of(smp::dp_rank());
  smp::Tensor h = (*net)[0]->operator()(x);
  smp::Tensor loss = smp::dp_rank() == 0 ? h.sum() : smp::cross_entropy(model(x), y);
  model.backward(loss);
  opt.step();
  auto last = net->named_parameters().back();
  EXPECT_EQ(last.first, "4.bias");
  ASSERT_TRUE(last.second.grad().defined());
}

TEST(DDP, BackwardTwiceWithoutStepIsAnError) {
  if (smp::dp_size() == 1) GTEST_SKIP();
  auto net = make_mlp();
  smp::DistributedModel model(net);
  auto [x, y] = batch_of(0);
  model.backward(smp::cross_entropy(model(x), y));
  EXPECT_THROW(model.backward(smp::cross_entropy(model(x), y)), smp::Error);
  model.wait_for_gradients();
}

}  // namespace

// Without a pipeline the model is partitioned from construction: a post-partition hook runs
// at once (it used to wait for a partitioning that never comes, and state loaded there was
// silently lost).
TEST(DDP, PostPartitionHookRunsAtOnceWithoutPipeline) {
  if (smp::pp_size() > 1) GTEST_SKIP() << "no pipeline";
  smp::DistributedModel model(std::make_shared<smp::nn::Linear>(3, 2));
  int called = 0;
  model.register_post_partition_hook([&](smp::DistributedModel& m) {
    ++called;
    EXPECT_TRUE(m.partitioned());
  });
  EXPECT_EQ(called, 1);
}

// DistributedOptimizer's state dicts are keyed by parameter name, hold real tensors only,
// and load back into a fresh optimizer, which then continues exactly as the original.
TEST(DDP, OptimizerStateByParameterNameRoundTrips) {
  smp::manual_seed(31);
  auto net = std::make_shared<smp::nn::Sequential>();
  net->push_back(std::make_shared<smp::nn::Linear>(3, 4));
  net->push_back(std::make_shared<smp::nn::Linear>(4, 2));
  smp::DistributedModel model(net);
  smp::DistributedOptimizer opt(
      std::make_shared<smp::optim::Adam>(model.parameters(), smp::optim::AdamOptions(0.01)));
  auto step = [&](smp::DistributedOptimizer& o) {
    smp::manual_seed(32);
    o.zero_grad();
    model.backward(model(smp::randn({4, 3})).square().mean());
    o.step();
  };
  step(opt);
  const auto sd = opt.state_dict();
  EXPECT_TRUE(sd.count("state.0.weight.exp_avg") && sd.count("state.1.bias.exp_avg_sq") &&
              sd.count("state.0.weight.step") && sd.count("param_groups.0.lr"));
  for (auto& [k, v] : opt.local_state_dict()) EXPECT_FALSE(v.is_meta()) << k;
  auto copy = [](smp::nn::StateDict sd) {  // state_dict() shares storage with the model
    for (auto& [k, v] : sd) v = v.clone();
    return sd;
  };
  const auto weights = copy(model.state_dict());
  smp::DistributedOptimizer other(
      std::make_shared<smp::optim::Adam>(model.parameters(), smp::optim::AdamOptions(0.5)));
  other.load_state_dict(sd);
  EXPECT_DOUBLE_EQ(other.optimizer().lr(), 0.01);
  step(other);
  const auto after_other = copy(model.state_dict());
  model.load_state_dict(weights);
  step(opt);
  for (auto& [k, v] : model.state_dict())
    EXPECT_EQ(smp::test::max_abs_diff(v, after_other.at(k)), 0) << k;
}
