// Optimizer base: parameter groups with per-group options, per-parameter state, state_dict.
#pragma once

#include <smp/engine/tensor.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace smp::optim {

/// Flat name → tensor map; saveable with smp::save_safetensors.
using StateDict = std::map<std::string, Tensor>;
/// Hyperparameters of one group by PyTorch's names ("lr", "momentum", "betas0", ...).
using Options = std::map<std::string, double>;

/// Parameters that share one set of hyperparameters. Options missing here are filled in from
/// the optimizer's defaults when the group is added.
struct ParamGroup {
  std::vector<Tensor> params;
  Options options;
};

/// Per-parameter optimizer state: named buffers (exp_avg, momentum_buffer, ...) and a step
/// count (kept as a number; state_dict() writes it as a 0-dim tensor).
struct ParamState {
  std::map<std::string, Tensor> buffers;
  int64_t step = 0;
};

/// Base of every optimizer (torch.optim.Optimizer). Subclasses implement step(); state is
/// keyed by the parameter's identity, as in PyTorch, so groups may be reordered or edited.
class Optimizer {
 public:
  Optimizer(std::vector<ParamGroup> groups, Options defaults);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// One update of every parameter that has a gradient (under NoGradGuard).
  virtual void step() = 0;
  /// set_to_none (PyTorch 2's default) drops the gradients; otherwise zeroes them in place.
  void zero_grad(bool set_to_none = true);

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  /// Adds a group (missing options from the defaults); its parameters must be new.
  void add_param_group(ParamGroup group);
  const Options& defaults() const { return defaults_; }

  /// Learning rate of group 0.
  double lr() const;
  /// Sets the learning rate of every group.
  void set_lr(double lr);

  /// Keys "state.<i>.<buffer>" and "state.<i>.step" (i = index over all groups' parameters
  /// in order), "param_groups.<g>.<option>" (0-dim float64) and "param_groups.<g>.params"
  /// (int64 indices). Tensors are copies.
  virtual StateDict state_dict() const;
  /// Restores options and state from state_dict() of an optimizer of the same type over the
  /// same group layout; state is copied to each parameter's device and floating dtype.
  virtual void load_state_dict(const StateDict& sd);

  /// State of parameter `p` (created empty on first use).
  ParamState& state(const Tensor& p) { return state_[p.unsafe_impl()]; }
  /// Null when `p` has no state yet.
  const ParamState* find_state(const Tensor& p) const;

 protected:
  /// Dtype used for "step" in state_dict (PyTorch 1.13: float32 tensor for Adam, int for others).
  virtual Dtype step_dtype() const { return kInt64; }
  /// False for optimizers without a step count (SGD): no "state.<i>.step" is written.
  virtual bool uses_step() const { return true; }
  /// Throws for invalid hyperparameters of a group (called for every group added).
  virtual void validate(const Options& options) const { (void)options; }
  /// Option `name` of `g`, with an error naming the option if it is missing.
  static double option(const ParamGroup& g, const char* name);

  std::vector<ParamGroup> groups_;
  Options defaults_;
  std::unordered_map<const TensorImpl*, ParamState> state_;
};

/// Declares a chained option of an options struct (libtorch's TORCH_ARG): `name(v)` sets and
/// returns the struct, `name()` reads.
#define SMP_OPTIM_ARG(T, name)              \
 public:                                    \
  auto& name(T v) {                         \
    name##_ = std::move(v);                 \
    return *this;                           \
  }                                         \
  const T& name() const { return name##_; } \
                                            \
 private:                                   \
  T name##_

}  // namespace smp::optim
