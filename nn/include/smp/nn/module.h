// smp::nn::Module: the base of every layer and model (libtorch's torch::nn::Module).
#pragma once

#include <smp/engine/device.h>
#include <smp/engine/dtype.h>
#include <smp/engine/tensor.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace smp::nn {

/// Parameters and buffers by dotted name, as PyTorch's state_dict.
using StateDict = std::map<std::string, Tensor>;

class Module;

/// The modules whose operator() is running on this thread, outermost first. The pipeline
/// layer reads it to place the ops a module call records.
const std::vector<Module*>& current_module_stack();

/// RAII: pushes a module on this thread's call stack for the duration of its call.
class ModuleCallScope {
 public:
  explicit ModuleCallScope(Module* m);
  ~ModuleCallScope();
  ModuleCallScope(const ModuleCallScope&) = delete;
  ModuleCallScope& operator=(const ModuleCallScope&) = delete;
};

/// RAII: every Module constructed on this thread while it lives gets attribute `key` =
/// `value` (the innermost scope of a key wins). The construction-time counterpart of the
/// engine's placement hook: higher layers build their scopes on it (parallel/'s
/// smp::partition), and nn stores the values without reading them.
class AttributeScope {
 public:
  AttributeScope(std::string key, int value);
  ~AttributeScope();
  AttributeScope(const AttributeScope&) = delete;
  AttributeScope& operator=(const AttributeScope&) = delete;
};

/// A tree of modules owning parameters (trainable leaves) and buffers (state such as batch
/// norm's running statistics), all enumerated in registration order with PyTorch's names.
class Module : public std::enable_shared_from_this<Module> {
 public:
  /// Takes the attributes of the AttributeScopes open on this thread.
  Module();
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Registers `t` as a leaf parameter. An undefined `t` registers an absent parameter
  /// (PyTorch's `None`, e.g. bias=false): it is skipped by every enumeration.
  Tensor& register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    register_module_impl(name, m);
    return m;
  }
  /// Swaps a registered child for another (same name), e.g. to replace a model's head.
  template <class M>
  std::shared_ptr<M> replace_module(const std::string& name, std::shared_ptr<M> m) {
    replace_module_impl(name, m);
    return m;
  }

  /// Parameters by dotted name in registration order. A tensor registered under several
  /// names (tied weights: a language model's head sharing the word embedding's) is listed
  /// once, under its first name, unless remove_duplicate is false; so optimizers and gradient
  /// reduction see it once (PyTorch's named_parameters(remove_duplicate=True)).
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true,
                                                               bool remove_duplicate = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  /// Buffers by dotted name; a shared one once, as named_parameters.
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true,
                                                            bool remove_duplicate = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<std::shared_ptr<Module>> children() const;
  /// Every module of the tree, depth first, this one first under the name "".
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules();
  std::vector<std::shared_ptr<Module>> modules();

  /// Sets training mode on this module and all descendants.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Moves/casts parameters and buffers in place: every existing handle (a layer's `weight`
  /// member, an optimizer's list) sees the new data, and parameters stay leaves.
  /// A dtype cast touches floating-point tensors only (num_batches_tracked stays int64).
  void to(Device d);
  void to(Dtype t);
  void to(Device d, Dtype t);

  /// Drops (set_to_none) or zeroes every parameter's gradient.
  void zero_grad(bool set_to_none = true);

  /// Parameters and buffers, detached, sharing storage with the module. A tied tensor is
  /// listed under each of its names, as PyTorch's state_dict.
  StateDict state_dict() const;
  /// Copies values in (casting dtype/device to the module's). Wrong shapes always throw;
  /// with `strict`, unknown and missing keys throw too, the error listing all of them.
  void load_state_dict(const StateDict& sd, bool strict = true);
  /// safetensors file of state_dict(), names as PyTorch's, so torch weights load unchanged.
  void save(const std::string& path) const;
  void load(const std::string& path, bool strict = true);

  /// Type name ("Linear"), used in errors and printing.
  virtual std::string name() const { return "Module"; }
  virtual Tensor forward(const Tensor& x);
  /// A forward of two tensors (a language model's tokens and targets, an input and its
  /// mask). The default refuses: the module takes one tensor. A subclass that overrides only
  /// one of the two overloads adds `using Module::forward;` so the other is not hidden.
  virtual Tensor forward(const Tensor& x, const Tensor& y);
  /// Calls forward(x) inside a ModuleCallScope; call children through this, never forward().
  Tensor operator()(const Tensor& x);
  /// Calls forward(x, y) inside a ModuleCallScope.
  Tensor operator()(const Tensor& x, const Tensor& y);

  /// Total number of parameter elements.
  int64_t num_parameters() const;

  /// An attribute a higher layer attached to this module (by an AttributeScope at
  /// construction or set_attribute), or nullopt. Keys belong to that layer.
  std::optional<int> attribute(const std::string& key) const;
  void set_attribute(const std::string& key, int value) { attributes_[key] = value; }

  /// Once another module has taken this one's place in its parent (parallel/'s tensor
  /// parallelism swaps a Linear for its distributed version), calls through handles that still
  /// point here (a parent's typed member) run the replacement instead.
  void forward_calls_to(std::shared_ptr<Module> replacement) {
    replacement_ = std::move(replacement);
  }
  const std::shared_ptr<Module>& replacement() const { return replacement_; }

 protected:
  /// Called after replace_module swapped child number `index` (in registration order), for
  /// containers that keep their own list of children (Sequential, ModuleList).
  virtual void child_replaced(size_t /*index*/, const std::shared_ptr<Module>& /*m*/) {}

 private:
  void register_module_impl(const std::string& name, std::shared_ptr<Module> m);
  void replace_module_impl(const std::string& name, std::shared_ptr<Module> m);
  void apply_to_tensors(const std::function<void(Tensor&)>& f);
  /// Every (name, tensor) of params_ (or buffers_) of this module and, with recurse, its
  /// descendants, duplicates included; undefined (absent) ones skipped.
  void collect_tensors(bool params, const std::string& prefix, bool recurse,
                       std::vector<std::pair<std::string, Tensor>>& out) const;
  void collect_modules(const std::string& prefix,
                       std::vector<std::pair<std::string, std::shared_ptr<Module>>>& out);

  // deques: register_* hand out references that must survive later registrations.
  std::deque<std::pair<std::string, Tensor>> params_;
  std::deque<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  std::map<std::string, int> attributes_;
  std::shared_ptr<Module> replacement_;
};

}  // namespace smp::nn
