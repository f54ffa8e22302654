// The distributed versions of nn's transformer modules (nn/transformer.h): Megatron's layout,
// attention heads and the MLP's hidden units split over the tensor-parallel group, and the
// LM head tied to a vocabulary-parallel word embedding. They keep the module names of the
// modules they replace, so state_dict() still has nanoGPT's keys.
#pragma once

#include <smp/nn/transformer.h>
#include <smp/parallel/tensor_parallel.h>

namespace smp::nn {

/// Megatron's column-parallel linear without communication: this rank's rows of W and b (of
/// each of `blocks` blocks, e.g. q, k, v). Its input must already be the whole input on every
/// rank and its output is this rank's slice of the features.
class ColumnParallelLinear : public TensorParallelModule {
 public:
  ColumnParallelLinear(const Linear& full, int blocks = 1);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "ColumnParallelLinear"; }
  Tensor weight, bias;
};

/// Megatron's row-parallel linear: this rank's columns of W (the input features of its
/// slice); the bias is replicated. partial() is x_r W_rᵀ, to be summed over the group before
/// the bias is added (forward does both, with one allreduce).
class RowParallelLinear : public TensorParallelModule {
 public:
  explicit RowParallelLinear(const Linear& full);
  Tensor partial(const Tensor& x) const;
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "RowParallelLinear"; }
  Tensor weight, bias;
};

/// SMP's DistributedTransformerLayer for nn::TransformerLayer (nanoGPT's pre-LayerNorm
/// block): this rank holds n_head/tp heads (c_attn's q, k and v rows of them, c_proj's
/// matching columns) and 4C/tp of the MLP's hidden units; layer norms are replicated. One
/// allreduce per attention and per MLP forward, one each backward (Megatron's f and g).
/// Without prescaled_batch it first gathers the samples of the TP group and returns each rank
/// its own rows. With optimize "memory" (sequence parallelism, fixed at construction) norms,
/// biases, dropout and residuals run on this rank's 1/tp of the sequence, and the f/g
/// allreduces become all-gathers and reduce-scatters along the sequence.
class DistributedTransformerLayer : public TensorParallelModule {
 public:
  explicit DistributedTransformerLayer(TransformerLayer& full);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "DistributedTransformerLayer"; }
  std::shared_ptr<LayerNorm> ln_1, ln_2;
  std::shared_ptr<ColumnParallelLinear> c_attn, c_fc;
  std::shared_ptr<RowParallelLinear> attn_proj, mlp_proj;
  std::shared_ptr<Dropout> attn_dropout, resid_dropout, mlp_dropout;
  int64_t n_head, n_embd;
  bool sequence_parallel = false;

 private:
  /// The block on rows every rank of the group holds.
  Tensor block(const Tensor& x);
  Tensor sequence_parallel_block(const Tensor& x);
  /// The partial attention output (before the sum over the group) of the whole-sequence
  /// normalised input h (B, T, C).
  Tensor attention(const Tensor& h, int64_t B, int64_t T);
};

/// The word embedding whose table is split by vocabulary rows (rank r holds tokens
/// [r·V/tp, (r+1)·V/tp)), as Megatron's VocabParallelEmbedding; used for an embedding tied to
/// a DistributedTransformerLMHead, with which it shares the shard.
class VocabParallelEmbedding : public TensorParallelModule {
 public:
  /// `shard` is this rank's rows of the (num_embeddings, dim) table.
  VocabParallelEmbedding(Tensor shard, int64_t num_embeddings);
  Tensor forward(const Tensor& indices) override;
  std::string name() const override { return "VocabParallelEmbedding"; }
  int64_t num_embeddings;
  Tensor weight;
};

/// SMP's DistributedTransformerLMHead for nn::TransformerLMHead: the tied (V, C) weight split
/// by vocabulary rows; forward(x, targets) computes the mean cross-entropy with a
/// vocabulary-parallel softmax (three allreduces of one number per token), never gathering
/// the logits; forward(x) gathers them.
class DistributedTransformerLMHead : public TensorParallelModule {
 public:
  explicit DistributedTransformerLMHead(const TransformerLMHead& full);
  Tensor forward(const Tensor& x) override;
  Tensor forward(const Tensor& x, const Tensor& targets) override;
  std::string name() const override { return "DistributedTransformerLMHead"; }
  int64_t vocab_size;
  Tensor weight;
};

}  // namespace smp::nn
