// Internal: the pieces of pipeline parallelism that smp::step and DistributedModel share.
#pragma once

#include <smp/parallel/distributed.h>

#include <functional>
#include <unordered_map>
#include <vector>

namespace smp::detail {

/// What the pipeline knows about one model: filled when it is partitioned, updated by steps.
struct PipelineState {
  /// The modules that own parameters or buffers (they run their ops on their partition).
  std::unordered_map<const nn::Module*, int> unit_partition;
  /// Where this rank computes (the device of its parameters).
  Device device = Device(DeviceType::CPU);
  int steps = 0;  ///< steps run with pp > 1 so far
  /// False once a step saw data flow to an earlier partition: per-stage schedules (1F1B)
  /// assume a chain, so such models run the simple schedule, which is the same on every
  /// stage and cannot deadlock.
  bool chain_flow = true;
};

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
