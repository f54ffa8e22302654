// The GPT-2 style transformer of nanoGPT (karpathy/nanoGPT model.py), with its module names,
// so a state_dict moves between libsmp and nanoGPT unchanged: causal self-attention, the MLP,
// the pre-LayerNorm block (TransformerLayer), the language-model head tied to the word
// embedding, and the GPT model around them. Shapes: B batch, T sequence, C = n_embd,
// nh = n_head, hd = C / nh, V = vocab_size.
#pragma once

#include <smp/nn/layers.h>
#include <smp/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>

namespace smp::nn {

/// nanoGPT's GPTConfig (small defaults: a byte-level model that trains on a CPU).
struct GPTConfig {
  int64_t vocab_size = 256, block_size = 128, n_layer = 4, n_head = 4, n_embd = 128;
  double dropout = 0.0;
  bool bias = true;  ///< biases in the Linears and LayerNorms
};

/// Multi-head causal self-attention over x (B, T, C): position t attends to positions ≤ t.
/// c_attn (C → 3C; output rows q, k, v in that order), softmax(q kᵀ/√hd) with the future
/// masked to -inf, attn_dropout on the weights, heads merged, then resid_dropout(c_proj(y)).
/// (PyTorch's nn.MultiheadAttention, with separate query/key/value inputs and other parameter
/// names, is not this module.)
class CausalSelfAttention : public Module {
 public:
  explicit CausalSelfAttention(const GPTConfig& config);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "CausalSelfAttention"; }
  std::shared_ptr<Linear> c_attn, c_proj;
  std::shared_ptr<Dropout> attn_dropout, resid_dropout;
  int64_t n_head, n_embd;
};

/// c_fc (C → 4C), exact (erf) GELU, c_proj (4C → C), dropout.
class MLP : public Module {
 public:
  explicit MLP(const GPTConfig& config);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "MLP"; }
  std::shared_ptr<Linear> c_fc, c_proj;
  std::shared_ptr<GELU> gelu;
  std::shared_ptr<Dropout> dropout;
};

/// nanoGPT's Block, pre-LayerNorm: x + attn(ln_1(x)), then + mlp(ln_2(x)).
class TransformerLayer : public Module {
 public:
  explicit TransformerLayer(const GPTConfig& config);
  using Module::forward;
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "TransformerLayer"; }
  std::shared_ptr<LayerNorm> ln_1, ln_2;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<MLP> mlp;
};

/// The output layer of a language model whose weight (V, C) is the word embedding's own
/// tensor (weight tying): registered here as parameter "weight", so state_dict lists it under
/// both names while parameters() lists it once. The loss is computed here too, so that a
/// vocabulary-parallel version can compute it without gathering the logits.
class TransformerLMHead : public Module {
 public:
  /// `tied_weight` (V, C) is registered as is (the same tensor, not a copy).
  explicit TransformerLMHead(Tensor tied_weight);
  /// Logits x Wᵀ: (..., C) → (..., V).
  Tensor forward(const Tensor& x) override;
  /// Mean cross-entropy of the logits of x (B, T, C) against targets (B, T) int64 over every
  /// position whose target is not -1 (nanoGPT's ignore_index).
  Tensor forward(const Tensor& x, const Tensor& targets) override;
  std::string name() const override { return "TransformerLMHead"; }
  Tensor weight;
};

/// nanoGPT's GPT. Children: `transformer` (a ModuleDict of wte (V×C), wpe (block_size×C),
/// drop, h (a ModuleList of n_layer TransformerLayers), ln_f) and `lm_head`, tied to wte.
/// forward finds these children by name at each call, so one replaced through
/// replace_module (a distributed version of a layer) takes part at once.
class GPT : public Module {
 public:
  /// Builds and initialises the model as nanoGPT does, drawing from the default generator in
  /// nanoGPT's order: with the same seed the initial weights are PyTorch's.
  explicit GPT(const GPTConfig& config = {});
  /// Logits (B, T, V) of token ids idx (B, T) int64; T ≤ block_size.
  Tensor forward(const Tensor& idx) override;
  /// The mean cross-entropy loss (a scalar) of predicting targets (B, T) (-1: ignored).
  Tensor forward(const Tensor& idx, const Tensor& targets) override;
  std::string name() const override { return "GPT"; }
  /// nanoGPT's _init_weights, then every c_proj.weight N(0, 0.02/√(2·n_layer)).
  void init_weights();
  /// Parameter elements, without the position embedding when non_embedding (nanoGPT's
  /// get_num_params: the tied word embedding counts, as it is the head's weight).
  int64_t num_params(bool non_embedding = true) const;

  GPTConfig config;
  std::shared_ptr<ModuleDict> transformer;

 private:
  /// The final hidden states (B, T, C) of idx.
  Tensor hidden(const Tensor& idx);
};

}  // namespace smp::nn
