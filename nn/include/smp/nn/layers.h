// The standard layers (libtorch's torch::nn::Linear etc.), each a Module built from an options
// struct. Hold them as std::shared_ptr (std::make_shared<Linear>(784, 10)) and register them.
#pragma once

#include <smp/nn/module.h>
#include <smp/nn/options.h>

#include <memory>
#include <string>
#include <vector>

namespace smp::nn {

/// y = x Wᵀ + b; weight (out, in), bias (out). Init: kaiming_uniform(a=√5), bias U(±1/√in).
class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& options);
  Linear(int64_t in_features, int64_t out_features)
      : Linear(LinearOptions(in_features, out_features)) {}
  void reset_parameters();
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Linear"; }
  LinearOptions options;
  Tensor weight, bias;
};

/// 2-D convolution with zero padding; weight (out, in/groups, kH, kW). Init as Linear.
class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& options);
  Conv2d(int64_t in_channels, int64_t out_channels, ExpandingArray2 kernel_size)
      : Conv2d(Conv2dOptions(in_channels, out_channels, kernel_size)) {}
  void reset_parameters();
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Conv2d"; }
  Conv2dOptions options;
  Tensor weight, bias;
};

/// Batch norm over (N, C, H, W). Buffers running_mean, running_var and num_batches_tracked
/// (int64, counted per training forward) as PyTorch, so state dicts match key for key.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(const BatchNorm2dOptions& options);
  void reset_running_stats();
  void reset_parameters();
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "BatchNorm2d"; }
  BatchNorm2dOptions options;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};

/// max(x, 0).
class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "ReLU"; }
};

/// Gaussian error linear unit, exact (erf) or tanh approximation.
class GELU : public Module {
 public:
  explicit GELU(GELUOptions opts = {}) : options(std::move(opts)) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "GELU"; }
  GELUOptions options;
};

/// Max pooling over (N, C, H, W).
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const MaxPool2dOptions& opts) : options(opts) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "MaxPool2d"; }
  MaxPool2dOptions options;
};

/// Average pooling over (N, C, H, W).
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const AvgPool2dOptions& opts) : options(opts) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "AvgPool2d"; }
  AvgPool2dOptions options;
};

/// Average pooling to a fixed output size.
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(const AdaptiveAvgPool2dOptions& opts) : options(opts) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "AdaptiveAvgPool2d"; }
  AdaptiveAvgPool2dOptions options;
};

/// Zeroes elements with probability p in training (scaling the rest by 1/(1-p)); identity in eval.
class Dropout : public Module {
 public:
  explicit Dropout(const DropoutOptions& options = {});
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Dropout"; }
  DropoutOptions options;
};

/// Flattens dims start_dim..end_dim.
class Flatten : public Module {
 public:
  explicit Flatten(const FlattenOptions& opts = {}) : options(opts) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Flatten"; }
  FlattenOptions options;
};

/// Lookup table (num, dim), init N(0, 1) with the padding row zeroed.
class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingOptions& options);
  Embedding(int64_t num_embeddings, int64_t embedding_dim)
      : Embedding(EmbeddingOptions(num_embeddings, embedding_dim)) {}
  void reset_parameters();
  Tensor forward(const Tensor& indices) override;
  std::string name() const override { return "Embedding"; }
  EmbeddingOptions options;
  Tensor weight;
};

/// Layer norm over the trailing normalized_shape dims; weight 1, bias 0 (no bias with
/// options.bias(false)).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(const LayerNormOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "LayerNorm"; }
  LayerNormOptions options;
  Tensor weight, bias;
};

/// log(softmax(x)) along dim.
class LogSoftmax : public Module {
 public:
  explicit LogSoftmax(const LogSoftmaxOptions& opts) : options(opts) {}
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "LogSoftmax"; }
  LogSoftmaxOptions options;
};

/// Children called in order, each through its operator(). Unnamed children are named
/// "0", "1", … by position, as torch.nn.Sequential.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(const std::vector<std::shared_ptr<Module>>& modules);
  void push_back(std::shared_ptr<Module> m);
  void push_back(const std::string& name, std::shared_ptr<Module> m);
  size_t size() const { return items_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  template <class M>
  std::shared_ptr<M> ptr_as(size_t i) const {
    return std::dynamic_pointer_cast<M>((*this)[i]);
  }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Sequential"; }

 protected:
  void child_replaced(size_t index, const std::shared_ptr<Module>& m) override {
    items_.at(index) = m;
  }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

/// A list of children named "0", "1", …; has no forward of its own.
class ModuleList : public Module {
 public:
  ModuleList() = default;
  explicit ModuleList(const std::vector<std::shared_ptr<Module>>& modules);
  void push_back(std::shared_ptr<Module> m);
  size_t size() const { return items_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  template <class M>
  std::shared_ptr<M> ptr_as(size_t i) const {
    return std::dynamic_pointer_cast<M>((*this)[i]);
  }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  std::string name() const override { return "ModuleList"; }

 protected:
  void child_replaced(size_t index, const std::shared_ptr<Module>& m) override {
    items_.at(index) = m;
  }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

/// Children by name, in insertion order (torch.nn.ModuleDict); has no forward of its own.
/// Lookups go through the registered children, so a replace_module is seen at once.
class ModuleDict : public Module {
 public:
  ModuleDict() = default;
  explicit ModuleDict(const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& modules);
  /// Adds `m` under `name` (a name already present is an error; use replace_module).
  void insert(const std::string& name, std::shared_ptr<Module> m);
  bool contains(const std::string& name) const;
  size_t size() const { return named_children().size(); }
  /// The child named `name`; an unknown name is an error listing the names there are.
  std::shared_ptr<Module> operator[](const std::string& name) const;
  template <class M>
  std::shared_ptr<M> ptr_as(const std::string& name) const {
    return std::dynamic_pointer_cast<M>((*this)[name]);
  }
  std::vector<std::string> keys() const;
  std::string name() const override { return "ModuleDict"; }
};

}  // namespace smp::nn
