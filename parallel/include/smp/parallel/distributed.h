// smp::DistributedModel and smp::DistributedOptimizer: the wrappers a training script puts
// around its model and optimizer (SMP's smp.DistributedModel / smp.DistributedOptimizer).
#pragma once

#include <smp/nn/module.h>
#include <smp/optim/optimizer.h>
#include <smp/parallel/comm.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace smp {

/// DistributedModel's options, with SMP's names and defaults.
struct DistributedModelOptions {
  /// Start each bucket's allreduce as soon as its gradients are ready during backward
  /// (false: reduce everything after backward).
  bool overlapping_allreduce = true;
  /// Gradients are reduced in buckets of about this many MiB, in reverse registration order
  /// (the first bucket at most 1 MiB, as in PyTorch, so communication starts early).
  double bucket_cap_mb = 25;
  /// Before each training-mode forward, copy buffers (batch-norm statistics) from the first
  /// rank of the DP group so every replica normalises alike.
  bool broadcast_buffers = true;
  /// Divide accumulated gradients by the number of microbatches (pipeline; issue 5).
  bool average_grads_across_microbatches = true;
};

class DistributedModel;
namespace detail {
class GradReducer;
struct StepAccess;
void partition_model(DistributedModel& model, const Tensor& example);

/// What the pipeline knows about one model (parallel/src/pipeline/pipeline.h).
struct PipelineState;

/// Lists a DistributedModel among the live ones while it exists, also when its constructor
/// throws (as a member, it is destroyed then).
class LiveModel {
 public:
  explicit LiveModel(DistributedModel* m);
  ~LiveModel();
  LiveModel(const LiveModel&) = delete;
  LiveModel& operator=(const LiveModel&) = delete;

 private:
  DistributedModel* m_;
};
}  // namespace detail

/// Wraps the one model of a program. With tensor_parallel_degree > 1 it first replaces the
/// modules marked for tensor parallelism by their distributed versions (tensor_parallel.h).
/// With dp_size() > 1 it broadcasts parameters and buffers from the first rank of each DP
/// group (RDP group for tensor-parallel shards), and during backward() averages gradients over
/// the DP group (RDP group for the parameters of distributed modules) in buckets whose
/// allreduces overlap the rest of backward. With pipeline_parallel_degree > 1 the first
/// smp::step splits the module tree into partitions: each rank keeps real parameters for its
/// own partition only (the rest become meta).
class DistributedModel {
 public:
  explicit DistributedModel(std::shared_ptr<nn::Module> module,
                            DistributedModelOptions options = {});
  ~DistributedModel();
  DistributedModel(const DistributedModel&) = delete;
  DistributedModel& operator=(const DistributedModel&) = delete;

  /// The wrapped module's forward.
  Tensor operator()(const Tensor& x);
  /// The wrapped module's forward of two tensors (a language model's tokens and targets).
  Tensor operator()(const Tensor& x, const Tensor& y);
  /// Replaces loss.backward(): runs backward and starts (or completes the launch of) every
  /// gradient bucket's reduction. DistributedOptimizer::step waits for them. Inside smp::step
  /// it is called once per microbatch: gradients are scaled by 1/microbatches (with
  /// average_grads_across_microbatches) and reduced over the DP group after the last one.
  void backward(const Tensor& loss);
  /// backward of several outputs with given gradients (SMP's backward(tensors, grads)).
  void backward(const std::vector<Tensor>& tensors, const std::vector<Tensor>& grads);
  /// Blocks until every gradient reduction of the last backward has finished and the averaged
  /// gradients are in each parameter's .grad(). Called by DistributedOptimizer::step.
  void wait_for_gradients();

  nn::Module& module() { return *module_; }
  std::shared_ptr<nn::Module> module_ptr() const { return module_; }
  std::vector<Tensor> parameters() const { return module_->parameters(); }
  std::vector<std::pair<std::string, Tensor>> named_parameters() const {
    return module_->named_parameters();
  }
  /// Parameters held by this rank (all of them before partitioning or with pp = 1).
  std::vector<Tensor> local_parameters() const;
  /// Modules of this rank's partition (all of them before partitioning or with pp = 1).
  std::vector<std::shared_ptr<nn::Module>> local_modules() const;
  /// True once the model has been split across pipeline ranks (pp = 1: at construction).
  bool partitioned() const { return partitioned_; }
  /// Every module's partition by dotted name ("" is the root), in module order; empty until
  /// partitioned.
  const std::vector<std::pair<std::string, int>>& partition_assignments() const {
    return assignment_names_;
  }
  /// Runs `hook(model)` once the model is partitioned (at once if it already is).
  void register_post_partition_hook(std::function<void(DistributedModel&)> hook);

  void train(bool on = true) { module_->train(on); }
  void eval() { module_->train(false); }
  void zero_grad(bool set_to_none = true) { module_->zero_grad(set_to_none); }

  /// Full model with PyTorch's names and full shapes. Tensor-parallel shards are gathered over
  /// the TP group; once partitioned, every tensor is sent from the partition holding it. So
  /// all ranks of a model-parallel group (pipeline x tensor) must call it together.
  nn::StateDict state_dict() const;
  /// The entries held by this rank, tensor-parallel parameters as this rank's shards.
  nn::StateDict local_state_dict() const;
  /// Loads values; once partitioned only this rank's entries are used (the others are
  /// accepted and skipped), so a full state_dict loads on every rank. A full-shape value of a
  /// tensor-parallel parameter is sliced to this rank's shard; a shard-shape value loads as is
  /// (a local_state_dict of the same rank).
  void load_state_dict(const nn::StateDict& sd, bool strict = true);

  const DistributedModelOptions& options() const { return options_; }
  /// Gradient buckets as lists of parameter names (in launch order), for tests and logs.
  std::vector<std::vector<std::string>> bucket_layout() const;

 private:
  friend struct detail::StepAccess;
  friend void detail::partition_model(DistributedModel&, const Tensor&);
  /// What smp::step tracks while it runs this model's microbatches.
  struct StepState {
    bool active = false;
    int microbatches = 1;
    int current = 0;         ///< microbatch whose step function is running
    int backward_calls = 0;  ///< over the whole step
    int backward_runs = 0;   ///< backwards that have started running (pipeline order)
    std::vector<int> calls_per_microbatch;
  };

  void make_reducer(const std::vector<std::pair<std::string, Tensor>>& params);
  /// What every forward call does first: refuses a pipelined model outside smp::step,
  /// checks that the TP group's batches (dimension 0 of `x`) have one size when distributed
  /// modules gather them, and broadcasts the buffers over the DP group.
  void before_forward(const Tensor& x);
  void check_tp_batch_sizes(const Tensor& x);
  /// After partitioning: turns the tensors of other partitions into meta shells, records
  /// where each state_dict key lives, and returns this rank's parameters by name.
  std::vector<std::pair<std::string, Tensor>> keep_local_tensors();
  /// Makes a gradient that reaches a parameter outside backward() an error (see ddp.cpp).
  void guard_plain_backward();

  std::shared_ptr<nn::Module> module_;
  DistributedModelOptions options_;
  /// One per kind of reduction (DP_GROUP; RDP_GROUP for tensor-parallel shards; ...); empty
  /// when dp_size() == 1.
  std::vector<std::shared_ptr<detail::GradReducer>> reducers_;
  /// Number of backward() calls running autograd now (a pipeline's tasks may overlap).
  std::shared_ptr<std::atomic<int>> backward_depth_ = std::make_shared<std::atomic<int>>(0);
  StepState step_;
  bool partitioned_ = true;
  /// Distributed modules gather the batches of the TP group (tp > 1, prescaled_batch false).
  bool gathers_tp_batches_ = false;
  /// Partition of every module (pipeline), and of the modules that own parameters/buffers.
  std::map<const nn::Module*, int> module_partition_;
  std::vector<std::pair<std::string, int>> assignment_names_;
  std::map<std::string, int> tensor_partition_;  ///< state_dict key -> partition holding it
  std::unique_ptr<detail::PipelineState> pipeline_;
  std::vector<std::function<void(DistributedModel&)>> post_partition_hooks_;
  detail::LiveModel live_{this};
};

/// Wraps an optimizer: step() first waits for the gradient reductions of every live
/// DistributedModel, then updates. Its state dicts are keyed by parameter name, so they move
/// between pipeline, tensor and data-parallel layouts:
///   "state.<parameter name>.<buffer>" (momentum_buffer, exp_avg, ...),
///   "state.<parameter name>.step" (0-dim), "param_groups.<g>.<option>" (0-dim float64).
class DistributedOptimizer {
 public:
  explicit DistributedOptimizer(std::shared_ptr<optim::Optimizer> optimizer);

  /// Applies a state loaded before the model was partitioned, waits for the gradient
  /// reductions, then updates.
  void step();
  void zero_grad(bool set_to_none = true) { opt_->zero_grad(set_to_none); }
  /// The state of the whole model with full shapes: tensor-parallel shards are gathered over
  /// the TP group and each pipeline stage's state is sent to every stage, so all ranks of the
  /// model-parallel group call it together (a rank that does not is named within seconds).
  optim::StateDict state_dict() const;
  /// The state this rank holds (its stage's parameters, its shards), never meta entries.
  optim::StateDict local_state_dict() const;
  /// Takes a state_dict(), a local_state_dict() of any rank layout that holds this rank's
  /// parameters, or (without pipeline or tensor parallelism) the wrapped optimizer's own
  /// index-keyed state dict. A full-shape value of a sharded parameter is sliced. Loaded
  /// before the model is partitioned (pp > 1), the state is kept and applied once it is.
  void load_state_dict(const optim::StateDict& sd);
  optim::Optimizer& optimizer() { return *opt_; }
  std::shared_ptr<optim::Optimizer> optimizer_ptr() const { return opt_; }

 private:
  /// Applies pending_ once every model owning a parameter is partitioned.
  void apply_pending();
  void apply_named(const optim::StateDict& sd);

  std::shared_ptr<optim::Optimizer> opt_;
  std::optional<optim::StateDict> pending_;
};

}  // namespace smp
