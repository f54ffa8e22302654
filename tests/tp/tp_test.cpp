// Tensor parallelism under mpirun, with the configuration the binary was started with (tp,
// prescaled_batch, pp, rdp, placement, schedule): the shards start as slices of the
// one-process weights, and one step's gradients and 20 SGD steps' weights equal one process
// training on the same global batch.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cstdlib>
#include <string>
#include <tuple>

#include "gradcheck.h"
#include "tolerance.h"
#include "tp/collectives.h"
#include "tp_test_util.h"

namespace {

using smp::Tensor;
using smp::nn::MnistNet;
using smp::test::data_rank;
using smp::test::data_ranks;
using smp::test::local_part;
using smp::test::shards_of;

constexpr int64_t kRows = 4;

std::pair<Tensor, Tensor> batch_of(int step, int r) {
  smp::manual_seed(900 + 100 * static_cast<uint64_t>(step) + static_cast<uint64_t>(r));
  return {smp::randn({kRows, 1, 28, 28}), smp::randint(0, 10, {kRows})};
}

/// "all": the scope around construction (seed 002's first script); "fc1": only fc1 marked
/// (its second); "none": the one-process reference.
std::shared_ptr<MnistNet> build(const std::string& marking, uint64_t seed) {
  smp::manual_seed(seed);
  if (marking == "all") {
    smp::tensor_parallelism tp;
    return std::make_shared<MnistNet>(false);
  }
  auto net = std::make_shared<MnistNet>(false);
  if (marking == "fc1") smp::set_tensor_parallelism(net->fc1, true);
  return net;
}

auto make_train_step() {
  return smp::step([](smp::DistributedModel& m, Tensor x, Tensor y) {
    Tensor loss = smp::nll_loss(m(x), y);
    m.backward(loss);
    return loss;
  });
}

// One MnistNet step at 4 rows per rank sums along a path with Σ√n ≈ 290 (forward conv1 9,
// conv2 288, fc1 9216, fc2 128 terms; backward 10, 128, 576, and the weight gradients over
// the global batch's positions, at most 16·26·26): 2u·290·(growth 2 for max-pool and ReLU ties
// and the log-softmax) = 6.9e-5 of the RMS. Tensor parallelism reorders the sums of fc1's
// input gradient (partial sums over the shards, then a reduction) and the data-parallel
// averages; a missing scale or a wrong shard is off by O(1).
double one_step_rel() {
  return smp::test::Float32Path()
      .sum(9)
      .sum(288)
      .sum(9216)
      .sum(128)
      .sum(10)
      .sum(128)
      .sum(576)
      .sum(16.0 * 26 * 26)
      .growth(2)
      .relative();
}

class TensorParallel : public ::testing::TestWithParam<std::string> {};

TEST_P(TensorParallel, ShardsAreSlicesOfTheOneProcessWeights) {
  auto net = build(GetParam(), 41);
  auto ref = build("none", 41);
  smp::DistributedModel model(net);
  const auto shards = shards_of(model.module());
  ASSERT_FALSE(shards.empty()) << "nothing was distributed";
  EXPECT_TRUE(shards.count("fc1.weight") && shards.count("fc1.bias"));
  const auto full = ref->state_dict();
  for (auto& [k, v] : model.module().named_parameters()) {
    if (v.is_meta()) continue;
    const Tensor want = local_part(full.at(k), k, shards);
    ASSERT_EQ(v.sizes(), want.sizes()) << k;
    EXPECT_EQ(smp::test::max_abs_diff(v, want), 0) << k << " is not the slice, bit for bit";
  }
  // fc1 holds 1/tp of the weight; the gathered state_dict has the full shapes and values.
  int64_t fc1_bytes = 0;
  const auto local = model.local_state_dict();
  for (auto& [k, v] : local)
    if (k.rfind("fc1.", 0) == 0) fc1_bytes += static_cast<int64_t>(v.nbytes());
  if (local.count("fc1.weight")) {
    EXPECT_EQ(fc1_bytes * smp::tp_size(),
              static_cast<int64_t>(full.at("fc1.weight").nbytes() + full.at("fc1.bias").nbytes()));
  }
  auto sd = model.state_dict();
  ASSERT_EQ(sd.size(), full.size());
  for (auto& [k, v] : sd) EXPECT_EQ(smp::test::max_abs_diff(v, full.at(k)), 0) << k;
  // A full state dict loads by slicing.
  auto other = build("none", 43)->state_dict();
  model.load_state_dict(other);
  for (auto& [k, v] : model.module().named_parameters()) {
    if (!v.is_meta()) {
      EXPECT_EQ(smp::test::max_abs_diff(v, local_part(other.at(k), k, shards)), 0) << k;
    }
  }
}

TEST_P(TensorParallel, OneStepGradientsEqualOneProcess) {
  auto net = build(GetParam(), 42);
  auto ref = build("none", 42);
  std::vector<Tensor> xs, ys;
  for (int r = 0; r < data_ranks(); ++r) {
    auto [x, y] = batch_of(0, r);
    xs.push_back(x);
    ys.push_back(y);
  }
  smp::nll_loss((*ref)(smp::cat(xs)), smp::cat(ys)).backward();

  smp::DistributedModel model(net);
  auto train_step = make_train_step();
  train_step(model, xs[static_cast<size_t>(data_rank())], ys[static_cast<size_t>(data_rank())]);
  model.wait_for_gradients();
  smp::test::expect_gradients_match(model, *ref, one_step_rel());
}

TEST_P(TensorParallel, TwentySgdStepsMatchOneProcess) {
  auto net = build(GetParam(), 44);
  auto ref = build("none", 44);
  smp::optim::SGD ref_opt(ref->parameters(), smp::optim::SGDOptions(0.01).momentum(0.9));
  smp::DistributedModel model(net);
  smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(
      model.parameters(), smp::optim::SGDOptions(0.01).momentum(0.9)));
  auto train_step = make_train_step();
  for (int step = 0; step < 20; ++step) {
    std::vector<Tensor> xs, ys;
    for (int r = 0; r < data_ranks(); ++r) {
      auto [x, y] = batch_of(step + 1, r);
      xs.push_back(x);
      ys.push_back(y);
    }
    ref_opt.zero_grad();
    smp::nll_loss((*ref)(smp::cat(xs)), smp::cat(ys)).backward();
    ref_opt.step();
    opt.zero_grad();
    train_step(model, xs[static_cast<size_t>(data_rank())], ys[static_cast<size_t>(data_rank())]);
    opt.step();
  }
  // 20 steps: each step's error enters every later one, K(K+1)/2 = 210 of one step's bound
  // relative to the change from the start (tests/CMakeLists.txt's SMP_TEST_MNIST_SGD20_REL
  // argument), here relative to the weights' RMS with the change ~ the weights themselves.
  smp::test::expect_weights_match(model, *ref, 210 * one_step_rel());
}

// A module named by set_tensor_parallelism that cannot be distributed stops the program on
// every rank with the same message (the check runs before any collective).
std::string construction_error(const std::shared_ptr<smp::nn::Module>& net) {
  try {
    smp::DistributedModel model(net);
  } catch (const smp::ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(TensorParallelErrors, ExplicitMarkingThatCannotBeHonouredIsAConfigError) {
  const int t = smp::tp_size();
  auto odd = std::make_shared<smp::nn::Sequential>();
  odd->push_back(std::make_shared<smp::nn::Linear>(8, t + 1));
  smp::set_tensor_parallelism((*odd)[0], true);
  const std::string e1 = construction_error(odd);
  EXPECT_NE(e1.find("'0' (Linear)"), std::string::npos) << e1;
  EXPECT_NE(e1.find(fmt::format("tensor_parallel_degree {} does not divide its {} output features",
                                t, t + 1)),
            std::string::npos)
      << e1;

  auto conv = std::make_shared<smp::nn::Sequential>();
  conv->push_back(std::make_shared<smp::nn::Conv2d>(1, 4, 3));
  smp::set_tensor_parallelism((*conv)[0], true);
  const std::string e2 = construction_error(conv);
  EXPECT_NE(e2.find("'0' (Conv2d) has no distributed version (supported: Linear"),
            std::string::npos)
      << e2;

  // A container named explicitly needs at least one supported module below it.
  auto none = std::make_shared<smp::nn::Sequential>();
  none->push_back(std::make_shared<smp::nn::Conv2d>(1, 4, 3));
  none->push_back(std::make_shared<smp::nn::ReLU>());
  auto outer = std::make_shared<smp::nn::Sequential>();
  outer->push_back("body", none);
  smp::set_tensor_parallelism(none, true);
  const std::string e3 = construction_error(outer);
  EXPECT_NE(e3.find("'body' (Sequential) has no distributed version and no submodule that has one"),
            std::string::npos)
      << e3;
}

TEST(TensorParallelErrors, ABlanketScopeSaysWhatStaysReplicated) {
  const int t = smp::tp_size();
  std::shared_ptr<smp::nn::Sequential> net;
  {
    smp::tensor_parallelism scope;
    net = std::make_shared<smp::nn::Sequential>();
    net->push_back(std::make_shared<smp::nn::Linear>(8, 4 * t));
    net->push_back(std::make_shared<smp::nn::Linear>(4 * t, t + 1));
  }
  ::testing::internal::CaptureStderr();
  smp::DistributedModel model(net);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(dynamic_cast<smp::nn::DistributedLinear*>((*net)[0].get()), nullptr);
  EXPECT_NE(dynamic_cast<smp::nn::Linear*>((*net)[1].get()), nullptr);
  if (smp::rank() == 0) {
    EXPECT_NE(err.find(fmt::format("'1' (Linear) stays replicated: tensor_parallel_degree {} does "
                                   "not divide its {} output features",
                                   t, t + 1)),
              std::string::npos)
        << err;
  }
}

TEST(TensorParallelErrors, NothingMarkedWarnsThatNothingIsDistributed) {
  auto net = std::make_shared<smp::nn::Sequential>();
  net->push_back(std::make_shared<smp::nn::Linear>(8, 4));
  ::testing::internal::CaptureStderr();
  smp::DistributedModel model(net);
  const std::string err = ::testing::internal::GetCapturedStderr();
  if (smp::rank() == 0) {
    EXPECT_NE(
        err.find(fmt::format("tensor_parallel_degree {}, but no module is marked", smp::tp_size())),
        std::string::npos)
        << err;
  }
}

// Calls through a handle that still points at the replaced module (MnistNet's typed `fc1`
// member) reach the distributed version; the replaced module's full weights are released.
TEST(TensorParallelErrors, OldHandlesCallTheReplacement) {
  auto net = build("fc1", 45);
  auto old_fc1 = net->fc1;
  smp::DistributedModel model(net);
  EXPECT_NE(old_fc1->replacement(), nullptr);
  EXPECT_TRUE(old_fc1->weight.is_meta());
  EXPECT_NE(dynamic_cast<smp::nn::DistributedLinear*>(old_fc1->replacement().get()), nullptr);
}

// Without prescaled_batch a distributed module gathers the rows of the whole TP group: a rank
// with a different batch size is an error on every rank of the group, before any rows move
// (MPI would report the truncation on one side only and hand the other misread rows).
TEST(TensorParallelErrors, UnequalBatchesInATpGroupAreAnError) {
  if (smp::config().prescaled_batch || smp::pp_size() > 1)
    GTEST_SKIP() << "the default batch mode, outside a pipeline";
  auto net = build("fc1", 46);
  smp::DistributedModel model(net);
  const Tensor x = smp::randn({2 + smp::tp_rank(), 1, 28, 28});
  try {
    model(x);
    ADD_FAILURE() << "batches of different sizes were accepted";
  } catch (const smp::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bring 2, 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("prescaled_batch"), std::string::npos) << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(Marking, TensorParallel, ::testing::Values("all", "fc1"),
                         [](const auto& info) { return info.param; });

}  // namespace
