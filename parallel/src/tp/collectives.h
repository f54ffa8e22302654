// Tensor-parallel collectives over TP_GROUP as autograd ops (Megatron's mappings): each is one
// op to the placement hook (engine/custom_op.h), so a distributed module is ordinary engine ops
// plus these and runs unchanged inside a pipeline stage, on meta where another stage holds it.
#pragma once

#include <smp/engine/tensor.h>

#include <cstdint>

namespace smp::detail::tp {

/// Collectives issued on TP_GROUP by the ops below since the last reset (forward and backward
/// counted apart), and the bytes this rank contributed to each. For tests and benchmarks.
struct CommStats {
  int64_t all_reduce = 0, all_gather = 0, reduce_scatter = 0, all_to_all = 0;
  int64_t bytes = 0;
};
CommStats forward_stats();
CommStats backward_stats();
void reset_stats();

// Names follow Megatron's: "region" is the tensor-parallel group.

/// f: identity forward; backward sums the gradient over the group (the input feeds a
/// column-parallel layer on every rank).
Tensor copy_to_region(const Tensor& x);
/// g: forward sums the partial results over the group; identity backward.
Tensor reduce_from_region(const Tensor& x);
/// Forward all-gathers along `dim` (rank order); backward keeps this rank's slice of the
/// gradient (the consumer is replicated, so every rank's gradient is the whole one).
Tensor gather_from_region(const Tensor& x, int64_t dim);
/// Forward keeps this rank's slice along `dim`; backward all-gathers the gradient.
Tensor scatter_to_region(const Tensor& x, int64_t dim);
/// Forward all-gathers along `dim`; backward reduce-scatters (each rank's gradient of the
/// gathered tensor is a partial sum): the sequence-parallel and batch-gathering entry.
Tensor all_gather(const Tensor& x, int64_t dim);
/// Forward reduce-scatters along `dim`; backward all-gathers.
Tensor reduce_scatter(const Tensor& x, int64_t dim);
/// Splits x along `split_dim` into tp chunks, sends chunk i to rank i and concatenates what
/// arrives along `cat_dim`; backward is the inverse exchange.
Tensor all_to_all(const Tensor& x, int64_t split_dim, int64_t cat_dim);
/// all_gather without autograd (token ids, targets).
Tensor gather_values(const Tensor& x, int64_t dim);
/// Cross-entropy per row of vocabulary-parallel logits [N, V/tp] (this rank holds classes
/// [rank·V/tp, (rank+1)·V/tp)) against targets [N] (int64; `ignore_index` gives 0): three
/// allreduces of N values (max, sum of exponentials, target logit), never the full logits.
Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& target,
                                    int64_t ignore_index);

}  // namespace smp::detail::tp
