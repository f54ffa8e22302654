// Distributed transformer modules (tp_transformer.h): Megatron's column/row pairs over
// TP_GROUP, vocabulary-parallel embedding and cross-entropy.
#include <smp/engine/autograd.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/tp_transformer.h>

#include <cmath>
#include <limits>

#include "tp/collectives.h"
#include "tp/mode.h"

namespace smp::nn {

namespace tp = smp::detail::tp;

namespace {

Tensor shard(const Tensor& full, ShardSpec spec) {
  return smp::detail::shard_of(full, spec, tp::size(), tp::rank());
}

/// Dropout in a region split over the group (this rank's heads): every rank draws the mask
/// of the whole tensor, so the generators stay in step, and keeps its own slice of it along
/// `dim`, so ranks drop different elements (Megatron's rule for sharded regions).
Tensor sharded_dropout(const Tensor& x, double p, bool training, int64_t dim) {
  if (!training || p == 0) return x;
  Shape full = x.sizes();
  full[static_cast<size_t>(dim)] *= tp::size();
  const Tensor keep = smp::rand(full, TensorOptions(x.dtype()).device(x.device()))
                          .narrow(dim, tp::rank() * x.size(dim), x.size(dim))
                          .ge(p)
                          .to(x.dtype());
  return x * keep * (1.0 / (1.0 - p));
}

}  // namespace

// ---- ColumnParallelLinear / RowParallelLinear ----------------------------------------------
ColumnParallelLinear::ColumnParallelLinear(const Linear& full, int blocks) {
  tp::check_divides(
      fmt::format("Linear({}, {})", full.options.in_features(), full.options.out_features()),
      full.options.out_features() / blocks, "output features per block");
  const ShardSpec spec{0, blocks};
  weight = register_parameter("weight", shard(full.weight, spec));
  set_shard("weight", spec);
  if (full.bias.defined()) {
    bias = register_parameter("bias", shard(full.bias, spec));
    set_shard("bias", spec);
  } else {
    register_parameter("bias", Tensor());
  }
}

Tensor ColumnParallelLinear::forward(const Tensor& x) { return smp::linear(x, weight, bias); }

RowParallelLinear::RowParallelLinear(const Linear& full) {
  tp::check_divides(
      fmt::format("Linear({}, {})", full.options.in_features(), full.options.out_features()),
      full.options.in_features(), "input features");
  weight = register_parameter("weight", shard(full.weight, ShardSpec{1}));
  set_shard("weight", ShardSpec{1});
  NoGradGuard no_grad;
  bias = register_parameter("bias", full.bias.defined() ? full.bias.clone() : Tensor());
}

Tensor RowParallelLinear::partial(const Tensor& x) const { return smp::linear(x, weight); }

Tensor RowParallelLinear::forward(const Tensor& x) {
  Tensor y = tp::reduce_from_region(partial(x));
  return bias.defined() ? y + bias : y;
}

// ---- DistributedTransformerLayer -----------------------------------------------------------
DistributedTransformerLayer::DistributedTransformerLayer(TransformerLayer& full)
    : n_head(full.attn->n_head), n_embd(full.attn->n_embd) {
  tp::check_divides(fmt::format("TransformerLayer (n_embd {}, n_head {})", n_embd, n_head), n_head,
                    "attention heads");
  // The same names as nanoGPT's block: ln_1, attn.{c_attn, c_proj}, ln_2, mlp.{c_fc, c_proj}.
  ln_1 = register_module("ln_1", full.ln_1);
  auto attn = register_module("attn", std::make_shared<ModuleDict>());
  c_attn = std::make_shared<ColumnParallelLinear>(*full.attn->c_attn, 3);  // q, k, v blocks
  attn_proj = std::make_shared<RowParallelLinear>(*full.attn->c_proj);
  attn_dropout = full.attn->attn_dropout;
  resid_dropout = full.attn->resid_dropout;
  attn->insert("c_attn", c_attn);
  attn->insert("c_proj", attn_proj);
  attn->insert("attn_dropout", attn_dropout);
  attn->insert("resid_dropout", resid_dropout);
  ln_2 = register_module("ln_2", full.ln_2);
  auto mlp = register_module("mlp", std::make_shared<ModuleDict>());
  c_fc = std::make_shared<ColumnParallelLinear>(*full.mlp->c_fc);
  mlp_proj = std::make_shared<RowParallelLinear>(*full.mlp->c_proj);
  mlp_dropout = full.mlp->dropout;
  mlp->insert("c_fc", c_fc);
  mlp->insert("gelu", full.mlp->gelu);
  mlp->insert("c_proj", mlp_proj);
  mlp->insert("dropout", mlp_dropout);
  sequence_parallel = tp::sequence_parallel();
  if (sequence_parallel) {
    // Each rank normalises and adds the biases on its own sequence chunk: these gradients
    // are partial sums over the chunks.
    for (const char* n : {"ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias",
                          "attn.c_proj.bias", "mlp.c_proj.bias"})
      set_shard(n, ShardSpec{-1, 1, true});
  }
}

Tensor DistributedTransformerLayer::attention(const Tensor& h, int64_t B, int64_t T) {
  const int64_t hd = n_embd / n_head;
  const int64_t local_heads = n_head / tp::size(), local_c = local_heads * hd;
  auto qkv = (*c_attn)(h).split(local_c, 2);
  auto heads = [&](const Tensor& t) { return t.reshape({B, T, local_heads, hd}).transpose(1, 2); };
  const Tensor q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
  Tensor att = q.matmul(k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(hd)));
  const Tensor pos = arange(T, TensorOptions(kInt64).device(h.device()));
  const Tensor visible = pos.unsqueeze(1).ge(pos.unsqueeze(0));
  att = where(visible, att, -std::numeric_limits<double>::infinity()).softmax(-1);
  att = sharded_dropout(att, attn_dropout->options.p(), attn_dropout->is_training(), 1);
  return attn_proj->partial(att.matmul(v).transpose(1, 2).reshape({B, T, local_c}));
}

Tensor DistributedTransformerLayer::block(const Tensor& x) {
  SMP_CHECK(x.dim() == 3 && x.size(2) == n_embd,
            "DistributedTransformerLayer: expected input (B, T, {}), got {} dimensions", n_embd,
            x.dim());
  const int64_t B = x.size(0), T = x.size(1);
  if (sequence_parallel) return sequence_parallel_block(x);
  // Attention over this rank's heads: f (gradient summed over the group), q/k/v of the heads,
  // then the partial projection summed over the group (g).
  Tensor a = tp::reduce_from_region(attention(tp::copy_to_region((*ln_1)(x)), B, T));
  if (attn_proj->bias.defined()) a = a + attn_proj->bias;
  const Tensor h = x + (*resid_dropout)(a);
  // MLP: this rank's 4C/tp hidden units.
  Tensor m = (*c_fc)(tp::copy_to_region((*ln_2)(h))).gelu();
  m = tp::reduce_from_region(mlp_proj->partial(m));
  if (mlp_proj->bias.defined()) m = m + mlp_proj->bias;
  return h + (*mlp_dropout)(m);
}

// Megatron's sequence parallelism: outside the column/row pairs the activations are split
// along the sequence, so norms, biases, dropout and residuals run on 1/tp of the tokens; the
// pairs' f and g become an all-gather and a reduce-scatter along the sequence.
Tensor DistributedTransformerLayer::sequence_parallel_block(const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1);
  SMP_CHECK(T % tp::size() == 0,
            "DistributedTransformerLayer: with optimize \"memory\" (sequence parallelism) the "
            "sequence length {} must be a multiple of tensor_parallel_degree {}",
            T, tp::size());
  const Tensor xs = tp::scatter_to_region(x, 1);  // this rank's tokens
  Tensor a = tp::reduce_scatter(attention(tp::all_gather((*ln_1)(xs), 1), B, T), 1);
  if (attn_proj->bias.defined()) a = a + attn_proj->bias;
  const Tensor h =
      xs + sharded_dropout(a, resid_dropout->options.p(), resid_dropout->is_training(), 1);
  Tensor m = (*c_fc)(tp::all_gather((*ln_2)(h), 1)).gelu();
  m = tp::reduce_scatter(mlp_proj->partial(m), 1);
  if (mlp_proj->bias.defined()) m = m + mlp_proj->bias;
  const Tensor out =
      h + sharded_dropout(m, mlp_dropout->options.p(), mlp_dropout->is_training(), 1);
  return tp::gather_from_region(out, 1);
}

Tensor DistributedTransformerLayer::forward(const Tensor& x) {
  if (tp::prescaled()) return block(x);
  // Each rank brought its own samples: the block runs on the group's samples (replicated
  // inside), and each rank keeps the rows of its own.
  return tp::scatter_to_region(block(tp::gather_from_region(x, 0)), 0);
}

// ---- VocabParallelEmbedding ------------------------------------------------------------------
VocabParallelEmbedding::VocabParallelEmbedding(Tensor shard_rows, int64_t num)
    : num_embeddings(num) {
  weight = register_parameter("weight", std::move(shard_rows));
  set_shard("weight", ShardSpec{0});
}

Tensor VocabParallelEmbedding::forward(const Tensor& indices) {
  const int64_t part = weight.size(0), first = tp::rank() * part;
  const bool prescaled = tp::prescaled();
  const Tensor ids = prescaled ? indices : tp::gather_values(indices, 0);
  // Rows of other ranks' tokens look up row 0 and are zeroed; the sum over the group then
  // holds every token's row exactly once.
  const Tensor local = ids - first;
  const Tensor mine = local.ge(0) * local.lt(part);
  const Tensor rows =
      smp::embedding(weight, where(mine, local, 0)) * mine.unsqueeze(-1).to(weight.dtype());
  return prescaled ? tp::reduce_from_region(rows) : tp::reduce_scatter(rows, 0);
}

// ---- DistributedTransformerLMHead ------------------------------------------------------------
DistributedTransformerLMHead::DistributedTransformerLMHead(const TransformerLMHead& full)
    : vocab_size(full.weight.size(0)) {
  tp::check_divides(fmt::format("TransformerLMHead (vocabulary {})", vocab_size), vocab_size,
                    "vocabulary entries");
  weight = register_parameter("weight", shard(full.weight, ShardSpec{0}));
  set_shard("weight", ShardSpec{0});
}

Tensor DistributedTransformerLMHead::forward(const Tensor& x) {
  if (tp::prescaled())
    return tp::gather_from_region(smp::linear(tp::copy_to_region(x), weight), -1);
  return tp::all_to_all(smp::linear(tp::all_gather(x, 0), weight), 0, -1);
}

Tensor DistributedTransformerLMHead::forward(const Tensor& x, const Tensor& targets) {
  SMP_CHECK(targets.dim() == x.dim() - 1,
            "DistributedTransformerLMHead: targets must have the input's shape without its last "
            "dimension");
  const bool prescaled = tp::prescaled();
  // Logits of this rank's vocabulary rows for the rows every rank of the group holds.
  const Tensor rows = prescaled ? tp::copy_to_region(x) : tp::all_gather(x, 0);
  const Tensor all_targets = prescaled ? targets : tp::gather_values(targets, 0);
  const Tensor logits = smp::linear(rows, weight);
  Tensor per_token = tp::vocab_parallel_cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                      all_targets.reshape({-1}), -1)
                         .reshape(all_targets.sizes());
  // Each rank's loss is over its own samples, as the one-process head's over its batch.
  if (!prescaled) per_token = tp::scatter_to_region(per_token, 0);
  const Tensor counted = targets.ne(-1).sum().to(per_token.dtype());
  return per_token.sum() / counted;
}

}  // namespace smp::nn
