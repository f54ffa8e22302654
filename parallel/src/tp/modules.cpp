// The distributed versions of nn's layers, the shard arithmetic, and the marking API.
#include <smp/engine/autograd.h>
#include <smp/parallel/config.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/tensor_parallel.h>

#include "tp/collectives.h"
#include "tp/mode.h"

namespace smp {

void set_tensor_parallelism(nn::Module& module, bool enabled) {
  for (auto& [name, m] : module.named_modules()) {
    m->set_attribute(detail::kTensorParallelAttribute, enabled ? 1 : 0);
    m->set_attribute(detail::kTensorParallelExplicitAttribute, name.empty() ? 1 : 0);
  }
}

namespace detail {

Shape full_shape(const Shape& local, const nn::ShardSpec& spec, int tp) {
  Shape s = local;
  if (spec.dim >= 0) s[static_cast<size_t>(spec.dim)] *= tp;
  return s;
}

Tensor shard_of(const Tensor& full, const nn::ShardSpec& spec, int tp, int rank) {
  NoGradGuard no_grad;
  if (spec.dim < 0) return full.contiguous().clone();
  const int64_t n = full.size(spec.dim);
  SMP_CHECK(n % (static_cast<int64_t>(spec.blocks) * tp) == 0,
            "tensor parallelism: dimension {} of size {} does not split into {} block(s) over {} "
            "ranks",
            spec.dim, n, spec.blocks, tp);
  const int64_t block = n / spec.blocks, part = block / tp;
  std::vector<Tensor> pieces;
  for (int b = 0; b < spec.blocks; ++b)
    pieces.push_back(full.narrow(spec.dim, b * block + rank * part, part));
  return pieces.size() == 1 ? pieces[0].contiguous().clone() : cat(pieces, spec.dim);
}

std::map<std::string, nn::ShardSpec> shard_layouts(nn::Module& root) {
  std::map<std::string, nn::ShardSpec> out;
  for (auto& [name, m] : root.named_modules()) {
    auto* tpm = dynamic_cast<nn::TensorParallelModule*>(m.get());
    if (tpm == nullptr) continue;
    const std::string prefix = name.empty() ? "" : name + ".";
    for (auto& [n, spec] : tpm->shard_specs())
      if (spec.dim >= 0) out[prefix + n] = spec;
  }
  return out;
}

Tensor gather_shards(const Tensor& shard, const nn::ShardSpec& spec) {
  NoGradGuard no_grad;
  Communicator& c = comm(CommGroup::TP_GROUP);
  Tensor in = shard.contiguous();
  std::vector<Tensor> parts;
  for (int i = 0; i < c.size(); ++i) parts.push_back(empty(in.sizes(), TensorOptions(in.dtype())));
  c.allgather(in, parts)->wait();
  if (spec.blocks == 1) return cat(parts, spec.dim);
  // Rank r holds part r of each block: the full tensor is block 0 of every rank, then block 1...
  std::vector<std::vector<Tensor>> pieces;
  for (const Tensor& p : parts) pieces.push_back(p.chunk(spec.blocks, spec.dim));
  std::vector<Tensor> ordered;
  for (int b = 0; b < spec.blocks; ++b)
    for (auto& per_rank : pieces) ordered.push_back(per_rank[static_cast<size_t>(b)]);
  return cat(ordered, spec.dim);
}

namespace tp {

int size() { return is_initialized() ? tp_size() : 1; }
int rank() { return is_initialized() ? tp_rank() : 0; }
bool prescaled() { return is_initialized() && config().prescaled_batch; }
bool sequence_parallel() { return is_initialized() && config().optimize == "memory"; }

void check_divides(const std::string& what, int64_t n, const char* dim_name) {
  const int t = size();
  if (n % t != 0)
    throw ConfigError(fmt::format(
        "tensor parallelism: {} has {} {}, which tensor_parallel_degree {} does not divide", what,
        n, dim_name, t));
}

}  // namespace tp
}  // namespace detail

namespace nn {

namespace {
Tensor shard_param(const Tensor& full, int dim) {
  return detail::shard_of(full, ShardSpec{dim}, detail::tp::size(), detail::tp::rank());
}
}  // namespace

DistributedLinear::DistributedLinear(int64_t in, int64_t out, bool has_bias)
    : DistributedLinear(Linear(LinearOptions(in, out).bias(has_bias))) {}

DistributedLinear::DistributedLinear(const Linear& full)
    : in_features(full.options.in_features()), out_features(full.options.out_features()) {
  detail::tp::check_divides(fmt::format("Linear({}, {})", in_features, out_features), out_features,
                            "output features");
  weight = register_parameter("weight", shard_param(full.weight, 0));
  set_shard("weight", ShardSpec{0});
  if (full.bias.defined()) {
    bias = register_parameter("bias", shard_param(full.bias, 0));
    set_shard("bias", ShardSpec{0});
  } else {
    register_parameter("bias", Tensor());
  }
}

Tensor DistributedLinear::forward(const Tensor& x) {
  namespace tp = detail::tp;
  if (tp::size() == 1) return smp::linear(x, weight, bias);
  if (tp::prescaled()) {
    // Every rank holds the same x: the input's gradient sums the ranks' parts of W.
    return tp::gather_from_region(smp::linear(tp::copy_to_region(x), weight, bias), -1);
  }
  // Rows of the whole group in, this rank's output features out; then each rank takes its
  // own rows with all the features.
  Tensor rows = tp::all_gather(x, 0);
  return tp::all_to_all(smp::linear(rows, weight, bias), 0, -1);
}

DistributedEmbedding::DistributedEmbedding(int64_t num, int64_t dim)
    : DistributedEmbedding(Embedding(num, dim)) {}

DistributedEmbedding::DistributedEmbedding(const Embedding& full)
    : num_embeddings(full.options.num_embeddings()),
      embedding_dim(full.options.embedding_dim()),
      padding_idx(full.options.padding_idx()) {
  detail::tp::check_divides(fmt::format("Embedding({}, {})", num_embeddings, embedding_dim),
                            embedding_dim, "embedding dimensions");
  weight = register_parameter("weight", shard_param(full.weight, 1));
  set_shard("weight", ShardSpec{1});
}

Tensor DistributedEmbedding::forward(const Tensor& indices) {
  namespace tp = detail::tp;
  const int64_t pad = padding_idx.value_or(-1);
  if (tp::size() == 1) return smp::embedding(weight, indices, pad);
  if (tp::prescaled()) return tp::gather_from_region(smp::embedding(weight, indices, pad), -1);
  Tensor rows = tp::gather_values(indices, 0);
  return tp::all_to_all(smp::embedding(weight, rows, pad), 0, -1);
}

}  // namespace nn
}  // namespace smp
