// Internal: the pieces of pipeline parallelism that smp::step and DistributedModel share.
#pragma once

#include <smp/parallel/distributed.h>

#include <functional>
#include <vector>

namespace smp::detail {

/// Assigns every module of `model` a partition (manual scopes, default_partition, or the
/// auto-partitioner), turns the parameters and buffers of other partitions into meta tensors,
/// tags every tensor with its partition, prints the decision on rank 0, and builds the DP
/// reducer over this rank's parameters. Called by the first step when pp > 1.
/// `example` (the first microbatch's first tensor argument, or undefined) is run once through
/// the model to weigh modules by FLOPs for auto-partitioning.
void partition_model(DistributedModel& model, const Tensor& example);

/// Runs one pipelined step: every microbatch's task on the executor in this stage's schedule
/// order, with the placement hook installed on each task.
/// The first step of a model, and every step of one whose data flows back to an earlier
/// partition, use the simple schedule; `state.chain_flow` is updated from what the step saw
/// (agreed over the pipeline group).
void run_pipeline_step(PipelineState& state, int microbatches,
                       const std::function<void(int)>& body);

}  // namespace smp::detail
