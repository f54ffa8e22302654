// Tensor parallelism of nanoGPT's model (nn::GPT) under mpirun with the configuration the
// binary was started with: DistributedTransformerLayer, the vocabulary-parallel word
// embedding tied to DistributedTransformerLMHead, and DistributedEmbedding for positions must
// give the gradients and weights of one process on the same global batch, and a transformer
// layer must communicate what Megatron's does.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <string>

#include "gradcheck.h"
#include "tolerance.h"
#include "tp/collectives.h"
#include "tp_test_util.h"

namespace {

using smp::Tensor;
using smp::nn::GPT;
using smp::nn::GPTConfig;
using smp::test::data_rank;
using smp::test::data_ranks;
using smp::test::local_part;
using smp::test::shards_of;

GPTConfig small() {
  GPTConfig c;
  c.vocab_size = 32;
  c.block_size = 8;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 32;
  c.dropout = 0;
  return c;
}

constexpr int64_t kSeqs = 2, kT = 8;

std::pair<Tensor, Tensor> tokens_of(int step, int r) {
  smp::manual_seed(500 + 100 * static_cast<uint64_t>(step) + static_cast<uint64_t>(r));
  Tensor idx = smp::randint(0, 32, {kSeqs, kT + 1});
  return {idx.narrow(1, 0, kT).contiguous(), idx.narrow(1, 1, kT).contiguous()};
}

/// "all": the scope around construction; "layers": set_tensor_parallelism on the blocks'
/// ModuleList only; "none": the one-process reference.
std::shared_ptr<GPT> build(const std::string& marking, uint64_t seed) {
  smp::manual_seed(seed);
  if (marking == "all") {
    smp::tensor_parallelism tp;
    return std::make_shared<GPT>(small());
  }
  auto net = std::make_shared<GPT>(small());
  if (marking == "layers") smp::set_tensor_parallelism((*net->transformer)["h"], true);
  return net;
}

auto make_train_step() {
  return smp::step([](smp::DistributedModel& m, Tensor x, Tensor y) {
    Tensor loss = m(x, y);
    m.backward(loss);
    return loss;
  });
}

// Along the path of one step: forward sums of C = 32 (ln, q·k over hd = 8, the projections),
// 4C = 128 (MLP down-projection), T = 8 (attention), V = 32 (softmax); backward the same, and
// weight gradients summed over the global batch's tokens (at most 8 ranks · 2 · 8 = 128);
// growth 4 for the layer norms' and softmax's amplification. 2u·Σ√n·4 = 2.8e-5 of the RMS.
double one_step_rel() {
  return smp::test::Float32Path()
      .sum(32, 6)
      .sum(128, 2)
      .sum(8, 4)
      .sum(32, 2)
      .sum(128, 2)
      .growth(4)
      .relative();
}

class GptTensorParallel : public ::testing::TestWithParam<std::string> {};

TEST_P(GptTensorParallel, ShardsAndStateDict) {
  auto net = build(GetParam(), 61);
  auto ref = build("none", 61);
  smp::DistributedModel model(net);
  const auto shards = shards_of(model.module());
  EXPECT_TRUE(shards.count("transformer.h.0.attn.c_attn.weight"));
  EXPECT_TRUE(shards.count("transformer.h.1.mlp.c_proj.weight"));
  if (GetParam() == "all") {
    EXPECT_TRUE(shards.count("lm_head.weight"));
    EXPECT_TRUE(shards.count("transformer.wte.weight"));
  }
  const auto full = ref->state_dict();
  for (auto& [k, v] : model.local_state_dict())
    EXPECT_EQ(smp::test::max_abs_diff(v, local_part(full.at(k), k, shards)), 0) << k;
  auto sd = model.state_dict();
  ASSERT_EQ(sd.size(), full.size());
  for (auto& [k, v] : sd) EXPECT_EQ(smp::test::max_abs_diff(v, full.at(k)), 0) << k;
  // The head and the word embedding still share one tensor.
  if (GetParam() == "all") {
    auto local = model.local_state_dict();
    if (local.count("lm_head.weight")) {
      EXPECT_EQ(local.at("lm_head.weight").data_ptr(),
                local.at("transformer.wte.weight").data_ptr());
    }
  }
}

TEST_P(GptTensorParallel, OneStepGradientsAndTwentyStepsEqualOneProcess) {
  auto net = build(GetParam(), 62);
  auto ref = build("none", 62);
  smp::optim::SGD ref_opt(ref->parameters(), smp::optim::SGDOptions(0.1).momentum(0.9));
  smp::DistributedModel model(net);
  smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(
      model.parameters(), smp::optim::SGDOptions(0.1).momentum(0.9)));
  auto train_step = make_train_step();
  for (int step = 0; step < 20; ++step) {
    std::vector<Tensor> xs, ys;
    for (int r = 0; r < data_ranks(); ++r) {
      auto [x, y] = tokens_of(step, r);
      xs.push_back(x);
      ys.push_back(y);
    }
    ref_opt.zero_grad();
    // One process averages each data rank's mean loss, as DDP does.
    Tensor loss = (*ref)(smp::cat(xs), smp::cat(ys));
    loss.backward();
    opt.zero_grad();
    train_step(model, xs[static_cast<size_t>(data_rank())], ys[static_cast<size_t>(data_rank())]);
    model.wait_for_gradients();
    if (step == 0) smp::test::expect_gradients_match(model, *ref, one_step_rel());
    ref_opt.step();
    opt.step();
  }
  // 20 steps: each step's error enters every later one, K(K+1)/2 = 210 of one step's bound.
  smp::test::expect_weights_match(model, *ref, 210 * one_step_rel());
}

INSTANTIATE_TEST_SUITE_P(Marking, GptTensorParallel, ::testing::Values("all", "layers"),
                         [](const auto& info) { return info.param; });

// Megatron's count for one transformer layer: prescaled, two allreduces of b·s·h forward
// (after attention and after the MLP) and two backward (before each column-parallel
// projection). Sequence-parallel (optimize "memory"): each allreduce becomes a reduce-scatter
// and an all-gather of the same volume, plus one all-gather at the layer's exit (forward) and
// entry (backward), since the layer hands back the whole sequence. Without prescaled_batch the
// layer also gathers the group's rows on entry and hands each rank back its own (one all-gather
// each way).
TEST(GptTensorParallelComm, ATransformerLayerIssuesMegatronsCollectives) {
  if (smp::pp_size() > 1) GTEST_SKIP() << "counts one layer outside a pipeline";
  smp::manual_seed(63);
  std::shared_ptr<smp::nn::Sequential> net;
  {
    smp::tensor_parallelism scope;
    net = std::make_shared<smp::nn::Sequential>();
    net->push_back(std::make_shared<smp::nn::TransformerLayer>(small()));
  }
  smp::DistributedModel model(net);
  ASSERT_NE(dynamic_cast<smp::nn::DistributedTransformerLayer*>((*net)[0].get()), nullptr);
  smp::manual_seed(64);
  const Tensor x = smp::randn({kSeqs, kT, 32}).requires_grad_(true);
  namespace tp = smp::detail::tp;
  tp::reset_stats();
  Tensor y = model(x);
  const tp::CommStats f = tp::forward_stats();
  model.backward(y.sum());
  model.wait_for_gradients();
  const tp::CommStats b = tp::backward_stats();
  const bool prescaled = smp::config().prescaled_batch;
  const bool sp = smp::config().optimize == "memory";
  const int64_t t = smp::tp_size();
  const int64_t own = kSeqs * kT * 32 * 4;          // bytes of this rank's (b, s, h) input
  const int64_t bsh = prescaled ? own : own * t;    // of the rows the layer works on
  const int64_t batch_gathers = prescaled ? 0 : 1;  // the default mode's entry and exit
  for (const tp::CommStats& s : {f, b}) {
    if (sp) {
      EXPECT_EQ(s.all_reduce, 0);
      EXPECT_EQ(s.reduce_scatter, 2);
      EXPECT_EQ(s.all_gather, 3 + batch_gathers);
      // Reduce-scatters hand in b·s·h, all-gathers this rank's b·s·h/tp.
      EXPECT_EQ(s.bytes, 2 * bsh + 3 * bsh / t + batch_gathers * own);
    } else {
      EXPECT_EQ(s.all_reduce, 2);
      EXPECT_EQ(s.reduce_scatter, 0);
      EXPECT_EQ(s.all_gather, batch_gathers);
      EXPECT_EQ(s.bytes, 2 * bsh + batch_gathers * own);
    }
    EXPECT_EQ(s.all_to_all, 0);
  }
}

// Dropout inside a distributed layer (docs/tensor-parallel.md): the replicated regions draw
// the same mask on every rank of the TP group, so the layer's output (replicated with
// prescaled_batch) is bit for bit the same on every rank; the sharded attention dropout keeps
// each rank's slice of one mask, so the generators stay in step for the next call too.
TEST(GptTensorParallelDropout, ReplicatedRegionsDrawTheSameMaskOnEveryRank) {
  if (!smp::config().prescaled_batch || smp::pp_size() > 1)
    GTEST_SKIP() << "needs prescaled_batch (a replicated output), no pipeline";
  GPTConfig c = small();
  c.dropout = 0.3;
  smp::manual_seed(65);
  std::shared_ptr<smp::nn::Sequential> net;
  {
    smp::tensor_parallelism scope;
    net = std::make_shared<smp::nn::Sequential>();
    net->push_back(std::make_shared<smp::nn::TransformerLayer>(c));
  }
  smp::DistributedModel model(net);
  model.train();
  smp::manual_seed(66);
  const Tensor x = smp::randn({kSeqs, kT, 32});
  for (int call = 0; call < 2; ++call) {
    smp::NoGradGuard no_grad;
    Tensor y = model(x).contiguous();
    std::vector<Tensor> all;
    for (int i = 0; i < smp::tp_size(); ++i) all.push_back(smp::empty_like(y));
    smp::comm(smp::CommGroup::TP_GROUP).allgather(y, all)->wait();
    for (int i = 1; i < smp::tp_size(); ++i)
      EXPECT_EQ(smp::test::max_abs_diff(all[static_cast<size_t>(i)], all[0]), 0)
          << "call " << call << ": TP rank " << i << " dropped other elements";
    // Dropout did act: without it the output differs.
    model.eval();
    EXPECT_GT(smp::test::max_abs_diff(model(x), y), 0);
    model.train();
  }
}

}  // namespace
