// Tensor parallelism as SMP offers it: smp::tensor_parallelism scopes and
// smp::set_tensor_parallelism mark modules; smp::DistributedModel replaces each marked
// supported module, in place and under the same name, by its distributed version, which holds
// a 1/tp shard of its weights. docs/tensor-parallel.md describes the layouts and data flow.
#pragma once

#include <smp/nn/layers.h>
#include <smp/nn/module.h>

#include <map>
#include <memory>
#include <string>

namespace smp {

namespace detail {
/// The nn::Module attributes holding a module's tensor-parallel marking: whether it is marked
/// (1) or unmarked (0), and whether set_tensor_parallelism named it (1) rather than a scope or
/// an ancestor marking it.
inline constexpr const char* kTensorParallelAttribute = "smp.tensor_parallelism";
inline constexpr const char* kTensorParallelExplicitAttribute = "smp.tensor_parallelism.explicit";
}  // namespace detail

/// RAII scope, SMP's `with smp.tensor_parallelism(enabled):`. Modules constructed while it
/// lives are marked (or, with enabled = false, unmarked); the innermost scope wins. At
/// DistributedModel construction the outermost supported module of each marked subtree is
/// distributed; a marked module with no distributed version (or sizes the degree does not
/// divide) stays replicated, with one line on stderr saying so.
class tensor_parallelism {
 public:
  explicit tensor_parallelism(bool enabled = true)
      : scope_(detail::kTensorParallelAttribute, enabled ? 1 : 0) {}

 private:
  nn::AttributeScope scope_;
};

/// Marks (or unmarks) `module` and every module below it, as SMP's
/// smp.set_tensor_parallelism(module, enabled). Call before wrapping. `module` itself is named
/// explicitly: if it cannot be distributed (no distributed version and no supported
/// submodule, or sizes the degree does not divide), DistributedModel throws ConfigError.
void set_tensor_parallelism(nn::Module& module, bool enabled = true);
inline void set_tensor_parallelism(const std::shared_ptr<nn::Module>& module, bool enabled = true) {
  set_tensor_parallelism(*module, enabled);
}

namespace nn {

/// How one parameter of a distributed module lies over the tensor-parallel group.
struct ShardSpec {
  /// The dimension split over the ranks (rank r holds the r-th equal part); -1: every rank
  /// holds the whole tensor (a replicated parameter of a distributed module).
  int dim = -1;
  /// The full tensor is `blocks` equal blocks along `dim`, each split over the ranks (the q,
  /// k and v rows of a fused projection): rank r holds part r of every block.
  int blocks = 1;
  /// The gradient on each rank is a partial sum over this rank's sequence chunk (norms run
  /// sequence-parallel), so it is summed over the group rather than averaged.
  bool sequence_partial = false;
};

/// Base of the distributed modules: knows how each of its own parameters is sharded, which is
/// what state_dict() gathering, load_state_dict() slicing and the gradient reduction
/// (over RDP_GROUP rather than DP_GROUP) read.
class TensorParallelModule : public Module {
 public:
  /// Layout of each parameter by name relative to this module (its own, or its submodules'
  /// as "ln_1.weight"); parameters not listed are replicated.
  const std::map<std::string, ShardSpec>& shard_specs() const { return specs_; }

 protected:
  void set_shard(const std::string& param, ShardSpec spec) { specs_[param] = spec; }

 private:
  std::map<std::string, ShardSpec> specs_;
};

/// SMP's smp.nn.DistributedLinear: y = x Wᵀ + b with global sizes; this rank holds output rows
/// [r·out/tp, (r+1)·out/tp) of W and b (column-parallel). With `prescaled_batch` every rank of
/// the group holds the same input and gets the full output (all-gather of the features);
/// otherwise each rank brings its own samples, the layer computes its rows for the samples of
/// the whole group and hands each rank the full outputs of its own samples (all-to-all).
class DistributedLinear : public TensorParallelModule {
 public:
  /// Initialised as nn::Linear(in, out) would be from this rank's generator, then sliced, so
  /// the shard is bit for bit the slice of the one-process weight.
  DistributedLinear(int64_t in_features, int64_t out_features, bool bias = true);
  /// This rank's shard of `full`'s weights.
  explicit DistributedLinear(const Linear& full);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "DistributedLinear"; }
  int64_t in_features, out_features;
  Tensor weight, bias;
};

/// SMP's smp.nn.DistributedEmbedding: the table's embedding dimension is split over the group
/// (rank r holds columns [r·dim/tp, (r+1)·dim/tp)); the outputs are gathered as
/// DistributedLinear's are.
class DistributedEmbedding : public TensorParallelModule {
 public:
  DistributedEmbedding(int64_t num_embeddings, int64_t embedding_dim);
  explicit DistributedEmbedding(const Embedding& full);
  Tensor forward(const Tensor& indices) override;
  std::string name() const override { return "DistributedEmbedding"; }
  int64_t num_embeddings, embedding_dim;
  std::optional<int64_t> padding_idx;
  Tensor weight;
};

}  // namespace nn

namespace detail {

/// The shape of the full tensor whose shard (under `spec`, over `tp` ranks) has `local`.
Shape full_shape(const Shape& local, const nn::ShardSpec& spec, int tp);
/// Rank `rank`'s shard of `full` under `spec` over `tp` ranks (a contiguous copy).
Tensor shard_of(const Tensor& full, const nn::ShardSpec& spec, int tp, int rank);
/// state_dict key -> layout of every sharded (dim >= 0) tensor of `root`'s tree.
std::map<std::string, nn::ShardSpec> shard_layouts(nn::Module& root);
/// The full tensor from every TP rank's shard under `spec`, the inverse of shard_of (all ranks
/// of the TP group call it together).
Tensor gather_shards(const Tensor& shard, const nn::ShardSpec& spec);

/// Replaces every marked supported module of `root`'s tree by its distributed version (tp =
/// tp_size()); returns the replacement for `root` itself when the root is distributed, else
/// root. Throws ConfigError for an explicitly marked module that cannot be distributed;
/// prints one line per marked module left replicated.
std::shared_ptr<nn::Module> distribute_modules(const std::shared_ptr<nn::Module>& root);

}  // namespace detail

}  // namespace smp
