// Pipelined steps under mpirun: with the configuration the binary was started with (pp,
// microbatches, schedule, auto or manual partitions, dp and placement), one step must give
// every parameter the gradient of one unsplit step over the global batch in one process.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "gradcheck.h"

namespace {

/// Six linear layers; under manual partitioning layer i goes to partition i * pp / 6.
std::shared_ptr<smp::nn::Sequential> make_chain() {
  const int pp = smp::pp_size();
  auto m = std::make_shared<smp::nn::Sequential>();
  const int widths[7] = {5, 16, 12, 12, 10, 8, 4};
  for (int i = 0; i < 6; ++i) {
    smp::partition scope(i * pp / 6);
    m->push_back(std::make_shared<smp::nn::Linear>(widths[i], widths[i + 1]));
    if (i < 5) m->push_back(std::make_shared<smp::nn::ReLU>());
  }
  return m;
}

constexpr int64_t kRows = 8;

std::pair<smp::Tensor, smp::Tensor> rank_batch(int r) {
  smp::manual_seed(700 + static_cast<uint64_t>(r));
  return {smp::randn({kRows, 5}), smp::randint(0, 4, {kRows})};
}

/// The unsplit reference: same weights, every DP rank's batch, one process.
std::shared_ptr<smp::nn::Sequential> reference_after_one_step(smp::nn::Module& init) {
  auto ref = make_chain();
  ref->load_state_dict(init.state_dict());
  std::vector<smp::Tensor> xs, ys;
  for (int r = 0; r < smp::dp_size(); ++r) {
    auto [x, y] = rank_batch(r);
    xs.push_back(x);
    ys.push_back(y);
  }
  smp::cross_entropy((*ref)(smp::cat(xs)), smp::cat(ys)).backward();
  return ref;
}

auto make_train_step() {
  return smp::step([](smp::DistributedModel& md, smp::Tensor x, smp::Tensor y) {
    smp::Tensor out = md(x);
    smp::Tensor loss = smp::cross_entropy(out, y);
    md.backward(loss);
    return std::make_tuple(out, loss);
  });
}

TEST(Pipeline, OneStepGradientsEqualTheUnsplitStep) {
  smp::manual_seed(11);
  auto net = make_chain();
  auto ref = reference_after_one_step(*net);
  smp::DistributedModel model(net);
  smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(model.parameters(), 0.1));
  auto train_step = make_train_step();
  auto [x, y] = rank_batch(smp::dp_rank());
  opt.zero_grad();
  auto [out_mb, loss_mb] = train_step(model, x, y);
  model.wait_for_gradients();

  ASSERT_TRUE(model.partitioned());
  // Every partition holds something, and this rank holds real values only for its own.
  EXPECT_FALSE(model.local_parameters().empty());
  auto rp = ref->named_parameters();
  auto mp = net->named_parameters();
  int checked = 0;
  for (size_t i = 0; i < mp.size(); ++i) {
    if (mp[i].second.is_meta()) continue;
    ASSERT_TRUE(mp[i].second.grad().defined()) << mp[i].first;
    EXPECT_LE(smp::test::max_abs_diff(mp[i].second.grad(), rp[i].second.grad()), 2e-6)
        << mp[i].first << " on pp rank " << smp::pp_rank();
    ++checked;
  }
  EXPECT_GT(checked, 0);

  // Outputs are real on every rank: the loss equals the reference loss on this rank's batch.
  smp::NoGradGuard ng;
  EXPECT_FALSE(loss_mb.reduce_mean().is_meta());
  smp::Tensor full = (*ref)(x);
  EXPECT_NEAR(loss_mb.reduce_mean().item<double>(), smp::cross_entropy(full, y).item<double>(),
              1e-5);
  EXPECT_LE(smp::test::max_abs_diff(out_mb.concat(), full), 1e-5);

  // The gathered state_dict is the whole model, real on every rank, equal to the weights
  // the step started from (nothing has been updated yet).
  auto sd = model.state_dict();
  auto start = ref->state_dict();
  for (auto& [k, v] : sd) {
    EXPECT_FALSE(v.is_meta()) << k;
    EXPECT_EQ(smp::test::max_abs_diff(v, start.at(k)), 0) << k;
  }
  // local_state_dict: exactly this rank's real tensors.
  for (auto& [k, v] : model.local_state_dict()) EXPECT_FALSE(v.is_meta()) << k;
  EXPECT_LT(model.local_state_dict().size(), sd.size());
}

TEST(Pipeline, PartitionDecisionAndPostPartitionHooks) {
  smp::manual_seed(15);
  smp::DistributedModel model(make_chain());
  // A state dict loaded before the first step survives partitioning.
  auto loaded = model.state_dict();
  for (auto& [k, v] : loaded) v = smp::full_like(v, 0.01);
  model.load_state_dict(loaded);
  int called = 0;
  model.register_post_partition_hook([&](smp::DistributedModel& m) {
    ++called;
    EXPECT_TRUE(m.partitioned());
  });
  EXPECT_FALSE(model.partitioned());
  EXPECT_EQ(called, 0);
  auto train_step = make_train_step();
  auto [x, y] = rank_batch(smp::dp_rank());
  train_step(model, x, y);
  model.wait_for_gradients();
  EXPECT_EQ(called, 1);
  // Registering after partitioning runs the hook at once.
  model.register_post_partition_hook([&](smp::DistributedModel&) { ++called; });
  EXPECT_EQ(called, 2);

  // Every partition holds a contiguous, non-empty run of the six linear layers; a rank's
  // local modules are those of its partition.
  std::vector<int> linear_parts;
  for (auto& [name, p] : model.partition_assignments())
    if (!name.empty() && std::stoi(name) % 2 == 0) linear_parts.push_back(p);  // 0, 2, ..., 10
  ASSERT_EQ(linear_parts.size(), 6u);
  EXPECT_TRUE(std::is_sorted(linear_parts.begin(), linear_parts.end()));
  EXPECT_EQ(linear_parts.front(), 0);
  EXPECT_EQ(linear_parts.back(), smp::pp_size() - 1);
  for (size_t i = 1; i < linear_parts.size(); ++i)
    EXPECT_LE(linear_parts[i] - linear_parts[i - 1], 1);
  for (auto& p : model.local_parameters()) EXPECT_FALSE(p.is_meta());
  for (auto& [k, v] : model.state_dict())
    EXPECT_EQ(smp::test::max_abs_diff(v, loaded.at(k)), 0) << k;
}

TEST(Pipeline, TwentySgdStepsMatchOneProcess) {
  smp::manual_seed(12);
  auto net = make_chain();
  auto ref = make_chain();
  ref->load_state_dict(net->state_dict());
  smp::optim::SGD ref_opt(ref->parameters(), smp::optim::SGDOptions(0.05).momentum(0.9));
  smp::DistributedModel model(net);
  smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(
      model.parameters(), smp::optim::SGDOptions(0.05).momentum(0.9)));
  auto train_step = make_train_step();
  for (int step = 0; step < 20; ++step) {
    std::vector<smp::Tensor> xs, ys;
    for (int r = 0; r < smp::dp_size(); ++r) {
      auto [x, y] = rank_batch(100 * step + r);
      xs.push_back(x);
      ys.push_back(y);
    }
    ref_opt.zero_grad();
    smp::cross_entropy((*ref)(smp::cat(xs)), smp::cat(ys)).backward();
    ref_opt.step();
    opt.zero_grad();
    train_step(model, xs[static_cast<size_t>(smp::dp_rank())],
               ys[static_cast<size_t>(smp::dp_rank())]);
    opt.step();
  }
  auto sd = model.state_dict();
  auto rsd = ref->state_dict();
  for (auto& [k, v] : sd) EXPECT_LE(smp::test::max_abs_diff(v, rsd.at(k)), 2e-5) << k;
}

/// Data goes 0 -> 1 -> 0: a model whose last layer sits on the first partition.
class BackAndForth : public smp::nn::Module {
 public:
  BackAndForth() {
    {
      smp::partition p(0);
      a = register_module("a", std::make_shared<smp::nn::Linear>(5, 9));
      c = register_module("c", std::make_shared<smp::nn::Linear>(9, 4));
    }
    smp::partition p(smp::pp_size() - 1);
    b = register_module("b", std::make_shared<smp::nn::Linear>(9, 9));
  }
  smp::Tensor forward(const smp::Tensor& x) override { return (*c)((*b)((*a)(x).relu()).relu()); }
  std::shared_ptr<smp::nn::Linear> a, b, c;
};

TEST(Pipeline, DataFlowingBackToAnEarlierPartition) {
  if (smp::config().auto_partition || smp::pp_size() != 2)
    GTEST_SKIP() << "needs manual partitions and two stages";
  smp::manual_seed(13);
  auto net = std::make_shared<BackAndForth>();
  auto ref = std::make_shared<BackAndForth>();
  ref->load_state_dict(net->state_dict());
  std::vector<smp::Tensor> xs, ys;
  for (int r = 0; r < smp::dp_size(); ++r) {
    auto [x, y] = rank_batch(r);
    xs.push_back(x);
    ys.push_back(y);
  }
  smp::cross_entropy((*ref)(smp::cat(xs)), smp::cat(ys)).backward();

  smp::DistributedModel model(net);
  auto train_step = make_train_step();
  auto [x, y] = rank_batch(smp::dp_rank());
  auto [out, loss] = train_step(model, x, y);
  model.wait_for_gradients();
  auto rp = ref->named_parameters();
  auto mp = net->named_parameters();
  for (size_t i = 0; i < mp.size(); ++i) {
    if (mp[i].second.is_meta()) continue;
    EXPECT_LE(smp::test::max_abs_diff(mp[i].second.grad(), rp[i].second.grad()), 2e-6)
        << mp[i].first;
  }
}

}  // namespace
