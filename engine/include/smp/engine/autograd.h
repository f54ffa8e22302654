// Reverse-mode autograd: graph nodes, grad mode, and the deterministic backward engine.
#pragma once

#include <smp/engine/placement.h>
#include <smp/engine/tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace smp {

/// Whether ops record autograd history on this thread.
class GradMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

/// Disables history recording in its scope (libtorch's torch::NoGradGuard).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

/// Re-enables (or sets) grad mode in its scope.
class AutoGradMode {
 public:
  explicit AutoGradMode(bool enabled) : prev_(GradMode::is_enabled()) {
    GradMode::set_enabled(enabled);
  }
  ~AutoGradMode() { GradMode::set_enabled(prev_); }
  AutoGradMode(const AutoGradMode&) = delete;
  AutoGradMode& operator=(const AutoGradMode&) = delete;

 private:
  bool prev_;
};

namespace autograd {

class Node;

/// Where a gradient goes: input `input_nr` of `node`.
struct Edge {
  std::shared_ptr<Node> node;
  uint32_t input_nr = 0;
  bool valid() const { return node != nullptr; }
};

/// One recorded op. `apply` maps gradients of its outputs to gradients of its inputs
/// (an undefined Tensor means "no gradient"), in the order of `next_edges`.
class Node : public std::enable_shared_from_this<Node> {
 public:
  Node();
  virtual ~Node() = default;
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) = 0;
  virtual std::string name() const = 0;
  /// Drops saved tensors once backward has used them (unless retain_graph).
  virtual void release_variables() {}

  const std::vector<Edge>& next_edges() const { return next_edges_; }
  std::vector<Edge>& mutable_next_edges() { return next_edges_; }
  uint32_t num_outputs() const { return num_outputs_; }
  void set_num_outputs(uint32_t n) { num_outputs_ = n; }
  /// Creation order on this thread; backward runs nodes from the highest down.
  uint64_t sequence_nr() const { return sequence_nr_; }
  /// Shapes/dtypes/devices of this node's forward outputs, for zero-filling missing grads.
  std::vector<TensorOptions> output_options;
  std::vector<Shape> output_shapes;
  /// Hooks on the gradient of output `first`, run before apply (Tensor::register_hook on a
  /// non-leaf); a defined return value replaces the gradient.
  std::vector<std::pair<uint32_t, std::function<Tensor(const Tensor&)>>> pre_hooks;
  /// True for the nodes that accumulate into a leaf's .grad().
  virtual bool is_accumulate_grad() const { return false; }
  /// Where the forward op ran, if a placement hook or guard decided it; backward runs the
  /// node (and its pre-hooks) under the same placement.
  std::optional<Placement> placement;

 private:
  std::vector<Edge> next_edges_;
  uint32_t num_outputs_ = 1;
  uint64_t sequence_nr_;
};

/// A node whose backward is a function: the common way an op records itself.
class FunctionNode : public Node {
 public:
  using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads)>;
  FunctionNode(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grad_outputs) override;
  std::string name() const override { return name_; }
  void release_variables() override { fn_ = nullptr; }

 private:
  std::string name_;
  BackwardFn fn_;
};

/// Per-tensor autograd state.
struct AutogradMeta {
  bool requires_grad = false;
  bool retains_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<Node> grad_accumulator;
  std::vector<std::function<Tensor(const Tensor&)>> hooks;
  std::vector<std::function<void(Tensor&)>> post_accumulate_hooks;
};

/// True when grad mode is on and any input needs a gradient.
bool any_requires_grad(const std::vector<Tensor>& inputs);

/// Records an op: if history is wanted, makes `outputs` children of a node that calls
/// `backward` with their gradients and routes its results to `inputs` (one per input,
/// undefined where no gradient flows). Returns the node, or null if nothing was recorded.
/// `backward` must not capture `outputs` themselves (that would be a cycle): capture
/// `out.detach()` if the output value is needed.
std::shared_ptr<Node> record(const std::string& name, const std::vector<Tensor>& inputs,
                             const std::vector<Tensor>& outputs, FunctionNode::BackwardFn backward);

/// Edge that a gradient for `t` should follow (its grad_fn, or its leaf accumulator).
Edge gradient_edge(const Tensor& t);

/// Runs backward from `roots` with `grads` (undefined allowed only for one-element roots).
/// Nodes execute in decreasing creation order, which is the same on every process that
/// ran the same code; leaf gradients accumulate into .grad().
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {},
              bool retain_graph = false);

/// Gradients of `outputs` w.r.t. `inputs`, returned instead of accumulated into .grad().
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false,
                         bool allow_unused = false);

}  // namespace autograd
}  // namespace smp
