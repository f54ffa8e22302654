#include <fmt/ranges.h>
#include <smp/engine/autograd.h>
#include <smp/engine/error.h>
#include <smp/nn/init.h>
#include <smp/nn/layers.h>

#include <cmath>

namespace smp::nn {

namespace {
// PyTorch's default for Linear and Conv: kaiming_uniform(a=√5), i.e. U(±1/√fan_in), and the
// bias from the same bound.
void default_weight_bias_init(Tensor& weight, Tensor& bias) {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    auto [fan_in, fan_out] = init::calculate_fan_in_and_fan_out(weight);
    double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}
}  // namespace

// ---- Linear -----------------------------------------------------------------------------
Linear::Linear(const LinearOptions& o) : options(o) {
  SMP_CHECK(o.in_features() >= 0 && o.out_features() >= 0,
            "Linear: feature counts must be non-negative, got in {} out {}", o.in_features(),
            o.out_features());
  weight = register_parameter("weight", empty({o.out_features(), o.in_features()}));
  bias = register_parameter("bias", o.bias() ? empty({o.out_features()}) : Tensor());
  reset_parameters();
}

void Linear::reset_parameters() { default_weight_bias_init(weight, bias); }

Tensor Linear::forward(const Tensor& x) { return smp::linear(x, weight, bias); }

// ---- Conv2d -----------------------------------------------------------------------------
Conv2d::Conv2d(const Conv2dOptions& o) : options(o) {
  SMP_CHECK(
      o.groups() > 0 && o.in_channels() % o.groups() == 0 && o.out_channels() % o.groups() == 0,
      "Conv2d: in_channels {} and out_channels {} must be divisible by groups {}", o.in_channels(),
      o.out_channels(), o.groups());
  weight = register_parameter("weight", empty({o.out_channels(), o.in_channels() / o.groups(),
                                               o.kernel_size()[0], o.kernel_size()[1]}));
  bias = register_parameter("bias", o.bias() ? empty({o.out_channels()}) : Tensor());
  reset_parameters();
}

void Conv2d::reset_parameters() { default_weight_bias_init(weight, bias); }

Tensor Conv2d::forward(const Tensor& x) {
  return smp::conv2d(x, weight, bias, options.stride().vec(), options.padding().vec(),
                     options.dilation().vec(), options.groups());
}

// ---- BatchNorm2d ------------------------------------------------------------------------
BatchNorm2d::BatchNorm2d(const BatchNorm2dOptions& o) : options(o) {
  int64_t c = o.num_features();
  if (o.affine()) {
    weight = register_parameter("weight", empty({c}));
    bias = register_parameter("bias", empty({c}));
  }
  if (o.track_running_stats()) {
    running_mean = register_buffer("running_mean", zeros({c}));
    running_var = register_buffer("running_var", ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, kInt64));
  }
  reset_parameters();
}

void BatchNorm2d::reset_running_stats() {
  if (!options.track_running_stats()) return;
  NoGradGuard ng;
  running_mean.zero_();
  running_var.fill_(1.0);
  num_batches_tracked.zero_();
}

void BatchNorm2d::reset_parameters() {
  reset_running_stats();
  if (options.affine()) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  SMP_CHECK(x.dim() == 4, "BatchNorm2d: expected 4-D input (N, C, H, W), got {}-D", x.dim());
  double momentum = options.momentum().value_or(0.0);
  if (is_training() && options.track_running_stats()) {
    NoGradGuard ng;
    num_batches_tracked.add_(1);
    // momentum None: cumulative moving average, weight 1/num_batches_tracked.
    if (!options.momentum().has_value())
      momentum = 1.0 / static_cast<double>(num_batches_tracked.item().to<int64_t>());
  }
  // Batch statistics in training, and always when no running stats are tracked.
  bool use_batch_stats = is_training() || !options.track_running_stats();
  return smp::batch_norm(x, running_mean, running_var, weight, bias, use_batch_stats, momentum,
                         options.eps());
}

// ---- activations, pooling, shape ----------------------------------------------------------
Tensor ReLU::forward(const Tensor& x) { return smp::relu(x); }

Tensor GELU::forward(const Tensor& x) { return smp::gelu(x, options.approximate()); }

Tensor MaxPool2d::forward(const Tensor& x) {
  return smp::max_pool2d(x, options.kernel_size().vec(), options.stride().vec(),
                         options.padding().vec(), options.dilation().vec(), options.ceil_mode());
}

Tensor AvgPool2d::forward(const Tensor& x) {
  return smp::avg_pool2d(x, options.kernel_size().vec(), options.stride().vec(),
                         options.padding().vec(), options.ceil_mode(), options.count_include_pad());
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  return smp::adaptive_avg_pool2d(x, options.output_size().vec());
}

Dropout::Dropout(const DropoutOptions& o) : options(o) {
  SMP_CHECK(o.p() >= 0.0 && o.p() <= 1.0, "Dropout: p must be in [0, 1], got {}", o.p());
}

Tensor Dropout::forward(const Tensor& x) { return smp::dropout(x, options.p(), is_training()); }

Tensor Flatten::forward(const Tensor& x) {
  return smp::flatten(x, options.start_dim(), options.end_dim());
}

Tensor LogSoftmax::forward(const Tensor& x) { return smp::log_softmax(x, options.dim()); }

// ---- Embedding --------------------------------------------------------------------------
Embedding::Embedding(const EmbeddingOptions& o) : options(o) {
  if (options.padding_idx().has_value()) {
    int64_t p = *options.padding_idx();
    SMP_CHECK(p < o.num_embeddings() && p >= -o.num_embeddings(),
              "Embedding: padding_idx {} out of range for {} embeddings", p, o.num_embeddings());
    if (p < 0) options.padding_idx(p + o.num_embeddings());
  }
  weight = register_parameter("weight", empty({o.num_embeddings(), o.embedding_dim()}));
  reset_parameters();
}

void Embedding::reset_parameters() {
  init::normal_(weight);
  if (options.padding_idx().has_value()) {
    NoGradGuard ng;
    weight.select(0, *options.padding_idx()).fill_(0.0);
  }
}

Tensor Embedding::forward(const Tensor& indices) {
  return smp::embedding(weight, indices, options.padding_idx().value_or(-1));
}

// ---- LayerNorm --------------------------------------------------------------------------
LayerNorm::LayerNorm(const LayerNormOptions& o) : options(o) {
  if (o.elementwise_affine()) {
    weight = register_parameter("weight", empty(o.normalized_shape()));
    bias = register_parameter("bias", o.bias() ? empty(o.normalized_shape()) : Tensor());
  }
  reset_parameters();
}

void LayerNorm::reset_parameters() {
  if (!options.elementwise_affine()) return;
  init::ones_(weight);
  if (bias.defined()) init::zeros_(bias);
}

Tensor LayerNorm::forward(const Tensor& x) {
  return smp::layer_norm(x, options.normalized_shape(), weight, bias, options.eps());
}

// ---- containers -------------------------------------------------------------------------
Sequential::Sequential(const std::vector<std::shared_ptr<Module>>& modules) {
  for (auto& m : modules) push_back(m);
}

void Sequential::push_back(std::shared_ptr<Module> m) {
  push_back(std::to_string(items_.size()), std::move(m));
}

void Sequential::push_back(const std::string& name, std::shared_ptr<Module> m) {
  register_module(name, m);
  items_.push_back(std::move(m));
}

const std::shared_ptr<Module>& Sequential::operator[](size_t i) const {
  SMP_CHECK(i < items_.size(), "Sequential: index {} out of range for {} modules", i,
            items_.size());
  return items_[i];
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& m : items_) y = (*m)(y);
  return y;
}

ModuleList::ModuleList(const std::vector<std::shared_ptr<Module>>& modules) {
  for (auto& m : modules) push_back(m);
}

void ModuleList::push_back(std::shared_ptr<Module> m) {
  register_module(std::to_string(items_.size()), m);
  items_.push_back(std::move(m));
}

const std::shared_ptr<Module>& ModuleList::operator[](size_t i) const {
  SMP_CHECK(i < items_.size(), "ModuleList: index {} out of range for {} modules", i,
            items_.size());
  return items_[i];
}

ModuleDict::ModuleDict(
    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& modules) {
  for (auto& [n, m] : modules) insert(n, m);
}

void ModuleDict::insert(const std::string& name, std::shared_ptr<Module> m) {
  register_module(name, std::move(m));
}

bool ModuleDict::contains(const std::string& name) const {
  for (auto& [n, c] : named_children())
    if (n == name) return true;
  return false;
}

std::shared_ptr<Module> ModuleDict::operator[](const std::string& name) const {
  for (auto& [n, c] : named_children())
    if (n == name) return c;
  SMP_ERROR("ModuleDict: no module named '{}' (it holds: {})", name, fmt::join(keys(), ", "));
}

std::vector<std::string> ModuleDict::keys() const {
  std::vector<std::string> out;
  for (auto& [n, c] : named_children()) out.push_back(n);
  return out;
}

}  // namespace smp::nn
