// The transformer models (nn/transformer.h): nanoGPT's names and shapes, the tied head, the
// causal property, initialisation, errors, a gradient check of the attention, and the
// PyTorch golden values of tests/reference/gen_gpt.py (forward, loss, every gradient, one
// AdamW step; the seeded initial weights).
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "op_test_utils.h"
#include "gradcheck.h"
#include "tolerance.h"

using namespace smp;
using namespace smp::nn;
using smp::test::Float32Path;

namespace {

using smp::test::error_of;

GPTConfig tiny() {
  GPTConfig c;
  c.vocab_size = 32;
  c.block_size = 8;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  return c;
}

std::map<std::string, Tensor> golden() {
  static const auto g = load_safetensors(std::string(SMP_TEST_GOLDEN_DIR) + "/gpt.safetensors");
  return g;
}

const Tensor& G(const std::map<std::string, Tensor>& g, const std::string& k) {
  auto it = g.find(k);
  if (it == g.end()) throw Error("golden key missing: " + k);
  return it->second;
}

/// The entries of `g` under "prefix." with the prefix taken off.
StateDict with_prefix(const std::map<std::string, Tensor>& g, const std::string& prefix) {
  StateDict sd;
  for (auto& [k, t] : g)
    if (k.rfind(prefix + ".", 0) == 0) sd[k.substr(prefix.size() + 1)] = t;
  return sd;
}

// The float32 sums on the golden config's path (tolerance.h): per layer, layer norm's mean
// and variance (C = 16 terms each), c_attn (16), q·k (hd 8), softmax (T 8), att·v (8), c_proj
// (16), the second layer norm, c_fc (16), c_proj (4C = 64); then ln_f, lm_head (16) and the
// loss's softmax (V 32) and mean (B·T = 24). Layer norm and softmax amplify error: growth 2.
Float32Path gpt_forward() {
  Float32Path p;
  for (int l = 0; l < 2; ++l)
    p.sum(16, 2).sum(16).sum(8).sum(8).sum(8).sum(16).sum(16, 2).sum(16).sum(64);
  p.sum(16, 2).sum(16).sum(32).sum(24);
  p.growth(2);
  return p;
}
// ... then back: the head's input gradient (V 32 terms), per layer the input gradients of
// c_proj (16), c_fc (64), the layer norms (16, twice each), attention (T 8, three times),
// c_attn (48); the weight gradients sum over the B·T = 24 positions (wte's over the head's 24
// and the embedding's uses).
Float32Path gpt_backward() {
  Float32Path p = gpt_forward();
  p.sum(32).sum(16, 2);
  for (int l = 0; l < 2; ++l) p.sum(16).sum(64).sum(16, 4).sum(8, 3).sum(48);
  p.sum(24, 2);
  return p;
}

}  // namespace

TEST(Transformer, NanoGPTStateDictKeys) {
  manual_seed(0);
  GPT model(tiny());
  std::vector<std::string> want = {"lm_head.weight", "transformer.wpe.weight",
                                   "transformer.wte.weight", "transformer.ln_f.weight",
                                   "transformer.ln_f.bias"};
  for (int i = 0; i < 2; ++i)
    for (const char* k :
         {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
          "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",
          "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"})
      want.push_back("transformer.h." + std::to_string(i) + "." + k);
  std::sort(want.begin(), want.end());
  std::vector<std::string> got;
  for (auto& [k, t] : model.state_dict()) got.push_back(k);
  EXPECT_EQ(got, want);
  // The golden file, written by PyTorch from nanoGPT's model, has the same keys.
  std::vector<std::string> torch_keys;
  for (auto& [k, t] : with_prefix(golden(), "init")) torch_keys.push_back(k);
  EXPECT_EQ(got, torch_keys);

  auto sd = model.state_dict();
  EXPECT_EQ(sd["transformer.h.1.attn.c_attn.weight"].sizes(), (Shape{48, 16}));
  EXPECT_EQ(sd["transformer.h.0.mlp.c_fc.weight"].sizes(), (Shape{64, 16}));
  EXPECT_EQ(sd["transformer.h.0.mlp.c_proj.weight"].sizes(), (Shape{16, 64}));
  EXPECT_EQ(sd["transformer.wpe.weight"].sizes(), (Shape{8, 16}));
  EXPECT_EQ(sd["lm_head.weight"].sizes(), (Shape{32, 16}));
}

TEST(Transformer, NoBiasConfigDropsEveryBias) {
  GPTConfig c = tiny();
  c.bias = false;
  GPT model(c);
  for (auto& [k, t] : model.state_dict()) EXPECT_EQ(k.find("bias"), std::string::npos) << k;
  Tensor idx = randint(0, 32, {2, 5});
  EXPECT_EQ(model(idx).sizes(), (Shape{2, 5, 32}));
}

TEST(Transformer, HeadIsTiedToTheWordEmbedding) {
  GPT model(tiny());
  auto sd = model.state_dict();
  EXPECT_TRUE(sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr());
  auto named = model.named_parameters();
  int count = 0;
  for (auto& [n, p] : named) {
    EXPECT_NE(n, "lm_head.weight");
    if (p.is_same(named.front().second)) ++count;
  }
  EXPECT_EQ(named.front().first, "transformer.wte.weight");
  EXPECT_EQ(count, 1);
  EXPECT_EQ(named.size(), 28u);  // 29 state_dict keys, the tied weight once
  // 32·16 + 8·16 + 2·(2·16 + 48·16 + 48 + 16·16 + 16 + 2·16 + 64·16 + 64 + 16·64 + 16) + 2·16
  EXPECT_EQ(model.num_parameters(), 512 + 128 + 2 * 3280 + 32);
  EXPECT_EQ(model.num_params(), model.num_parameters() - 128);
}

TEST(Transformer, ShapesAndLoss) {
  manual_seed(1);
  GPT model(tiny());
  Tensor idx = randint(0, 32, {3, 8});
  Tensor logits = model(idx);
  EXPECT_EQ(logits.sizes(), (Shape{3, 8, 32}));
  Tensor loss = model(idx, randint(0, 32, {3, 8}));
  EXPECT_EQ(loss.dim(), 0);
  // Small initial weights: the prediction is near uniform, the loss near log V.
  EXPECT_NEAR(loss.item<double>(), std::log(32.0), 0.1);
  // A shorter sequence is fine; the layers alone keep (B, T, C).
  EXPECT_EQ(model(idx.narrow(1, 0, 3)).sizes(), (Shape{3, 3, 32}));
  TransformerLayer layer(tiny());
  EXPECT_EQ(layer(randn({2, 4, 16})).sizes(), (Shape{2, 4, 16}));
}

// Changing token t+1 leaves every logit at positions ≤ t as it was (bit for bit: the rows
// of the causal attention at those positions never read it).
TEST(Transformer, CausalLogitsDoNotSeeTheFuture) {
  manual_seed(2);
  GPT model(tiny());
  model.eval();
  Tensor idx = randint(0, 32, {2, 8});
  NoGradGuard ng;
  const Tensor before = model(idx);
  auto values = [](const Tensor& logits, int64_t from, int64_t len) {
    return logits.narrow(1, from, len).contiguous().to_vector<float>();
  };
  for (int64_t t = 0; t + 1 < 8; ++t) {
    auto ids = idx.to_vector<int64_t>();
    for (int64_t b = 0; b < 2; ++b) {
      auto& id = ids[static_cast<size_t>(b * 8 + t + 1)];
      id = (id + 1) % 32;
    }
    const Tensor after = model(tensor<int64_t>(ids, {2, 8}));
    EXPECT_EQ(values(after, 0, t + 1), values(before, 0, t + 1)) << "t = " << t;
    EXPECT_NE(values(after, t + 1, 1), values(before, t + 1, 1)) << "t = " << t;
  }
}

TEST(Transformer, InitialisationAsNanoGPT) {
  GPTConfig c;  // the default config: enough elements for the statistics
  c.n_layer = 4;
  manual_seed(3);
  GPT model(c);
  auto stats = [](const Tensor& t) {
    auto v = t.to_vector<double>();
    double s = 0, sq = 0;
    for (double x : v) s += x, sq += x * x;
    const double n = static_cast<double>(v.size());
    return std::pair{s / n, std::sqrt(sq / n - (s / n) * (s / n))};
  };
  for (auto& [name, p] : model.named_parameters()) {
    SCOPED_TRACE(name);
    auto [mean, sd] = stats(p);
    const double n = static_cast<double>(p.numel());
    const bool ln = name.find("ln_") != std::string::npos;
    if (ln && name.find("weight") != std::string::npos) {
      EXPECT_EQ(mean, 1.0);
      EXPECT_EQ(sd, 0.0);
    } else if (name.find("bias") != std::string::npos) {
      EXPECT_EQ(p.abs().sum().item<double>(), 0.0);
    } else {
      const bool scaled = name.find("c_proj.weight") != std::string::npos;
      const double want = scaled ? 0.02 / std::sqrt(2.0 * 4) : 0.02;
      // The sample mean is within 5 standard errors of 0, the sample SD within 5 of its
      // standard error (σ/√(2n)).
      EXPECT_NEAR(mean, 0.0, 5 * want / std::sqrt(n));
      EXPECT_NEAR(sd, want, 5 * want / std::sqrt(2 * n));
    }
  }
}

TEST(Transformer, Errors) {
  GPT model(tiny());
  std::string msg = error_of([&] { model(zeros({1, 9}, kInt64)); });
  EXPECT_NE(msg.find("sequence of length 9: the block size is only 8"), std::string::npos) << msg;
  msg = error_of([&] { model(zeros({1, 4})); });
  EXPECT_NE(msg.find("int64"), std::string::npos) << msg;
  GPTConfig bad = tiny();
  bad.n_head = 3;
  msg = error_of([&] { GPT g(bad); });
  EXPECT_NE(msg.find("n_embd 16 must be a multiple of n_head 3"), std::string::npos) << msg;
  msg = error_of([&] { model(zeros({2, 4}, kInt64), zeros({2, 5}, kInt64)); });
  EXPECT_NE(msg.find("targets"), std::string::npos) << msg;
  TransformerLayer layer(tiny());
  msg = error_of([&] { layer(ones({2, 4, 16}), ones({2, 4, 16})); });
  EXPECT_NE(msg.find("module TransformerLayer takes one tensor"), std::string::npos) << msg;
}

TEST(Transformer, AttentionGradcheck) {
  GPTConfig c = tiny();
  c.n_embd = 4;
  manual_seed(4);
  CausalSelfAttention attn(c);
  attn.to(kFloat64);
  for (auto& p : attn.parameters()) init::normal_(p, 0.0, 0.5);  // a softmax far from uniform
  Tensor x = randn({2, 3, 4}, kFloat64);
  auto params = attn.parameters();
  std::vector<Tensor> inputs{x};
  for (auto& p : params) inputs.push_back(p);
  auto msg = test::gradcheck(
      [&](const std::vector<Tensor>& in) {
        // The parameters are the module's own leaves: gradcheck perturbs them in place.
        (void)in;
        return attn(in[0]);
      },
      inputs);
  EXPECT_EQ(msg, "");
}

// torch.manual_seed(0) then nanoGPT's GPT(...) gives these weights; ours from seed 0 make the
// same draws in the same order (tests/reference/gen_gpt.py). The values agree to float32
// rounding, not bit for bit: PyTorch's normal_ on 16 or more elements runs Box-Muller in
// float32 (normal_fill_16: log, sqrt, cos, then ·std + mean, each rounded), the engine's
// normal_ in double, rounded once. Those few roundings, each within u of the draw's scale,
// stay within 16u·(|x| + RMS); a draw out of order or a wrong std is off by O(1) of it.
TEST(Transformer, GoldenSeededInitialWeightsArePyTorchs) {
  auto want = with_prefix(golden(), "init");
  manual_seed(0);
  GPT model(tiny());
  auto sd = model.state_dict();
  ASSERT_EQ(sd.size(), want.size());
  for (auto& [k, t] : sd) {
    SCOPED_TRACE(k);
    EXPECT_FLOAT32_CLOSE(t, G(want, k), 16 * test::kFloat32Unit);
  }
}

// Forward, loss and every gradient equal PyTorch's from the same weights, within the float32
// bounds of the path (gpt_forward / gpt_backward above); then one AdamW step.
TEST(Transformer, GoldenLogitsLossGradsAndAdamWStep) {
  const auto g = golden();
  GPT model(tiny());
  model.load_state_dict(with_prefix(g, "init"));  // strict: both tied keys are there
  const double fwd = gpt_forward().relative(), bwd = gpt_backward().relative();
  {
    NoGradGuard ng;
    EXPECT_FLOAT32_CLOSE(model(G(g, "idx")), G(g, "logits"), fwd);
  }
  Tensor loss = model(G(g, "idx"), G(g, "targets"));
  EXPECT_FLOAT32_CLOSE(loss, G(g, "loss"), fwd);
  loss.backward();
  for (auto& [name, p] : model.named_parameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(p.grad().defined());
    EXPECT_FLOAT32_CLOSE(p.grad(), G(g, "grad." + name), bwd);
  }

  // AdamW as the generator: lr 1e-3, betas (0.9, 0.95), eps 1e-8, weight decay 0.1.
  const double lr = 1e-3, eps = 1e-8;
  optim::AdamW opt(model.parameters(),
                   optim::AdamWOptions(lr).betas({0.9, 0.95}).eps(eps).weight_decay(0.1));
  opt.step();
  // The first step moves each weight by lr·g/(|g| + eps) (+ decay): a function of g whose
  // slope is at most 1/(|g| + eps). A gradient known to ±δ (δ = bwd·(|g| + RMS g), as above)
  // therefore moves the weight within lr·min(2, δ/(max(|g| − δ, 0) + eps)) of PyTorch's; a
  // few float32 roundings of the update add 4u·|w|.
  auto sd = model.state_dict();
  for (auto& [name, p] : model.named_parameters()) {
    SCOPED_TRACE(name);
    auto got = sd.at(name).to_vector<double>();
    auto want = G(g, "adamw." + name).to_vector<double>();
    auto grad = G(g, "grad." + name).to_vector<double>();
    const double rms_g = test::rms(grad);
    int bad = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double d = bwd * (std::abs(grad[i]) + rms_g);
      const double bound = lr * std::min(2.0, d / (std::max(std::abs(grad[i]) - d, 0.0) + eps)) +
                           4 * test::kFloat32Unit * std::abs(want[i]);
      if (std::abs(got[i] - want[i]) > bound && bad++ < 3)
        ADD_FAILURE() << "element " << i << ": " << got[i] << " vs " << want[i] << " (bound "
                      << bound << ")";
    }
  }
}
