// smp::Tensor: a cheap, shared handle to an n-dimensional array on a device, with autograd.
#pragma once

#include <smp/engine/device.h>
#include <smp/engine/dtype.h>
#include <smp/engine/error.h>
#include <smp/engine/scalar.h>
#include <smp/engine/storage.h>
#include <smp/engine/tensor_options.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace smp {

using Shape = std::vector<int64_t>;
using IntList = std::vector<int64_t>;

class Tensor;
namespace autograd {
class Node;
struct AutogradMeta;
}  // namespace autograd

/// The state behind a Tensor handle. Views share `storage`; everything else is per view.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape sizes;
  Shape strides;       // in elements
  int64_t offset = 0;  // in elements
  Dtype dtype = kFloat32;
  Device device;
  std::unique_ptr<autograd::AutogradMeta> autograd;  // null until autograd touches it
  /// Opaque to the engine: which pipeline partition holds this value (-1: every rank).
  int partition = -1;
  /// Bumped by in-place ops, so backward can detect a saved tensor that was overwritten.
  uint64_t version = 0;

  TensorImpl();
  ~TensorImpl();
  int64_t numel() const;
  bool is_contiguous() const;
};

enum class Reduction { None, Mean, Sum };

/// An n-dimensional array (libtorch's torch::Tensor). Copying the handle shares the data;
/// `clone()` copies it. An undefined Tensor (default-constructed) holds nothing.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- metadata -------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  int64_t dim() const { return static_cast<int64_t>(impl().sizes.size()); }
  int64_t ndimension() const { return dim(); }
  const Shape& sizes() const { return impl().sizes; }
  const Shape& shape() const { return impl().sizes; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const { return impl().numel(); }
  int64_t storage_offset() const { return impl().offset; }
  Dtype dtype() const { return impl().dtype; }
  Dtype scalar_type() const { return impl().dtype; }
  Device device() const { return impl().device; }
  TensorOptions options() const { return TensorOptions(dtype()).device(device()); }
  size_t element_size() const { return smp::element_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const { return impl().is_contiguous(); }
  bool is_cpu() const { return device().is_cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_meta() const { return device().is_meta(); }
  bool is_floating_point() const { return smp::is_floating_point(dtype()); }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  /// True if both views share one storage.
  bool is_alias_of(const Tensor& o) const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  TensorImpl* unsafe_impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  std::string to_string() const;

  // ---- data access (host; throws for meta, and for CUDA use .cpu() first) ---
  void* data_ptr() const;
  template <class T>
  T* data_ptr() const {
    SMP_CHECK(dtype_of<T> == dtype(), "data_ptr: tensor has dtype {}, asked for {}",
              dtype_name(dtype()), dtype_name(dtype_of<T>));
    return static_cast<T*>(data_ptr());
  }
  /// The single value of a one-element tensor, converted to T (copies from CUDA).
  template <class T>
  T item() const {
    return item().to<T>();
  }
  Scalar item() const;
  /// Copy of every element, in row-major order, converted to T.
  template <class T>
  std::vector<T> to_vector() const;

  // ---- conversion and copies --------------------------------------------------
  Tensor contiguous() const;
  Tensor clone() const;
  /// non_blocking (libtorch's): a copy from pinned host memory to CUDA returns without
  /// waiting for the device to read the source; don't write into it until then.
  Tensor to(Device d, bool non_blocking = false) const;
  Tensor to(Dtype t) const;
  Tensor to(Device d, Dtype t, bool non_blocking = false) const;
  Tensor to(const TensorOptions& o, bool non_blocking = false) const;
  Tensor cpu() const { return to(Device(kCPU)); }
  Tensor cuda(int index = 0) const { return to(Device(kCUDA, index)); }
  Tensor type_as(const Tensor& o) const { return to(o.dtype()); }
  /// A copy in page-locked host memory (this tensor if already pinned). CPU tensors only;
  /// throws without a CUDA device. .to(cuda, /*non_blocking=*/true) from it returns without
  /// waiting for the copy, as in PyTorch.
  Tensor pin_memory() const;
  /// Whether the storage is page-locked host memory from pin_memory() or pinned_memory(true).
  bool is_pinned() const;

  // ---- autograd ---------------------------------------------------------------
  bool requires_grad() const;
  Tensor& requires_grad_(bool r = true);
  /// The accumulated gradient of a leaf (undefined before the first backward).
  const Tensor& grad() const;
  /// Mutable access, for optimizers and DDP that write gradients in place.
  Tensor& mutable_grad() const;
  void set_grad(const Tensor& g) const;
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  bool is_leaf() const;
  /// Backpropagate from this tensor. `gradient` may be omitted only for one-element tensors.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  /// Same storage, no autograd history.
  Tensor detach() const;
  Tensor& detach_();
  /// Also keep .grad() for this non-leaf.
  void retain_grad() const;
  /// Called with the gradient flowing into this tensor; may return a replacement.
  void register_hook(std::function<Tensor(const Tensor&)> hook) const;
  /// Called once per backward when a leaf's .grad() is final (DDP's gradient-ready hook).
  void register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook) const;
  uint64_t _version() const { return impl().version; }
  void bump_version() const { ++impl_->version; }
  /// libtorch's `set_data` (PyTorch's `param.data = new_data`): every handle to this tensor
  /// sees new_data's storage, shape, dtype and device; autograd identity (leaf,
  /// requires_grad, hooks) is kept, and the version is bumped.
  void set_data(const Tensor& new_data) const;

  // ---- in-place (for optimizers; not recorded by autograd on leaves that need grad) ----
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(const Scalar& v);
  Tensor& zero_();
  Tensor& add_(const Tensor& other, const Scalar& alpha = 1);
  Tensor& add_(const Scalar& other);
  Tensor& sub_(const Tensor& other, const Scalar& alpha = 1);
  Tensor& sub_(const Scalar& other);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(const Scalar& other);
  Tensor& div_(const Tensor& other);
  Tensor& div_(const Scalar& other);
  /// self += value * t1 * t2
  Tensor& addcmul_(const Tensor& t1, const Tensor& t2, const Scalar& value = 1);
  /// self += value * t1 / t2
  Tensor& addcdiv_(const Tensor& t1, const Tensor& t2, const Scalar& value = 1);
  Tensor& sqrt_();
  Tensor& clamp_(std::optional<Scalar> min, std::optional<Scalar> max = std::nullopt);
  Tensor& uniform_(double from = 0.0, double to = 1.0);
  Tensor& normal_(double mean = 0.0, double std = 1.0);
  Tensor& bernoulli_(double p = 0.5);
  /// Integers uniform in [from, to) (torch's random_(from, to)).
  Tensor& random_(int64_t from, int64_t to);
  /// Integers uniform over [0, 2^mantissa] for a floating dtype, [0, max] for an integer one
  /// (torch's random_()).
  Tensor& random_();

  // ---- elementwise --------------------------------------------------------------
  Tensor add(const Tensor& other, const Scalar& alpha = 1) const;
  Tensor add(const Scalar& other) const;
  Tensor sub(const Tensor& other, const Scalar& alpha = 1) const;
  Tensor sub(const Scalar& other) const;
  Tensor mul(const Tensor& other) const;
  Tensor mul(const Scalar& other) const;
  Tensor div(const Tensor& other) const;
  Tensor div(const Scalar& other) const;
  Tensor neg() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor rsqrt() const;
  Tensor abs() const;
  Tensor square() const;
  Tensor pow(const Scalar& exponent) const;
  Tensor clamp(std::optional<Scalar> min, std::optional<Scalar> max = std::nullopt) const;
  Tensor clamp_min(const Scalar& min) const;
  Tensor clamp_max(const Scalar& max) const;
  Tensor maximum(const Tensor& other) const;
  Tensor minimum(const Tensor& other) const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  /// approximate: "none" (erf form) or "tanh".
  Tensor gelu(const std::string& approximate = "none") const;
  Tensor eq(const Tensor& o) const;
  Tensor eq(const Scalar& o) const;
  Tensor ne(const Tensor& o) const;
  Tensor ne(const Scalar& o) const;
  Tensor lt(const Tensor& o) const;
  Tensor lt(const Scalar& o) const;
  Tensor le(const Tensor& o) const;
  Tensor le(const Scalar& o) const;
  Tensor gt(const Tensor& o) const;
  Tensor gt(const Scalar& o) const;
  Tensor ge(const Tensor& o) const;
  Tensor ge(const Scalar& o) const;

  // ---- reductions ---------------------------------------------------------------
  Tensor sum() const;
  Tensor sum(const IntList& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const IntList& dims, bool keepdim = false) const;
  /// Largest element of the whole tensor.
  Tensor max() const;
  /// (values, indices) along `dim`.
  std::tuple<Tensor, Tensor> max(int64_t dim, bool keepdim = false) const;
  Tensor min() const;
  std::tuple<Tensor, Tensor> min(int64_t dim, bool keepdim = false) const;
  Tensor argmax() const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;
  Tensor amax(const IntList& dims, bool keepdim = false) const;
  /// Variance of all elements, with Bessel's correction when `unbiased` (PyTorch's default).
  Tensor var() const { return var(IntList{}, true); }
  /// Only an exact bool binds here, so `t.var({1})` means dims {1}, never unbiased=true.
  template <class B, std::enable_if_t<std::is_same_v<B, bool>, int> = 0>
  Tensor var(B unbiased) const {
    return var(IntList{}, unbiased);
  }
  Tensor var(const IntList& dims, bool unbiased = true, bool keepdim = false) const;

  // ---- linear algebra -----------------------------------------------------------
  Tensor matmul(const Tensor& other) const;
  Tensor mm(const Tensor& other) const;
  Tensor bmm(const Tensor& other) const;
  Tensor t() const;

  // ---- shape and views ----------------------------------------------------------
  Tensor reshape(const Shape& shape) const;
  Tensor view(const Shape& shape) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const IntList& dims) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;
  Tensor expand_as(const Tensor& other) const { return expand(other.sizes()); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor index_select(int64_t dim, const Tensor& index) const;
  std::vector<Tensor> split(int64_t split_size, int64_t dim = 0) const;
  std::vector<Tensor> split(const IntList& sizes, int64_t dim = 0) const;
  std::vector<Tensor> chunk(int64_t chunks, int64_t dim = 0) const;

  // ---- nn-style methods ---------------------------------------------------------
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;

 private:
  TensorImpl& impl() const {
    SMP_CHECK(impl_ != nullptr, "this operation needs a defined tensor, got an undefined one");
    return *impl_;
  }
  std::shared_ptr<TensorImpl> impl_;
};

// ---- operators ------------------------------------------------------------------------
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, const Scalar& b);
Tensor operator-(const Tensor& a, const Scalar& b);
Tensor operator*(const Tensor& a, const Scalar& b);
Tensor operator/(const Tensor& a, const Scalar& b);
Tensor operator+(const Scalar& a, const Tensor& b);
Tensor operator-(const Scalar& a, const Tensor& b);
Tensor operator*(const Scalar& a, const Tensor& b);
Tensor operator/(const Scalar& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor& operator+=(Tensor& a, const Tensor& b);
Tensor& operator-=(Tensor& a, const Tensor& b);
Tensor& operator*=(Tensor& a, const Tensor& b);
Tensor& operator/=(Tensor& a, const Tensor& b);
Tensor& operator+=(Tensor& a, const Scalar& b);
Tensor& operator-=(Tensor& a, const Scalar& b);
Tensor& operator*=(Tensor& a, const Scalar& b);
Tensor& operator/=(Tensor& a, const Scalar& b);

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// ---- creation -------------------------------------------------------------------------
Tensor empty(const Shape& shape, const TensorOptions& o = {});
Tensor zeros(const Shape& shape, const TensorOptions& o = {});
Tensor ones(const Shape& shape, const TensorOptions& o = {});
Tensor full(const Shape& shape, const Scalar& value, const TensorOptions& o = {});
/// Integers 0..end-1 as int64 unless a dtype is given (floats if any bound is floating).
Tensor arange(const Scalar& end, const TensorOptions& o = {});
Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step = 1,
              const TensorOptions& o = {});
Tensor rand(const Shape& shape, const TensorOptions& o = {});
Tensor randn(const Shape& shape, const TensorOptions& o = {});
/// Integers uniform in [low, high), int64 by default.
Tensor randint(int64_t low, int64_t high, const Shape& shape, const TensorOptions& o = {});
Tensor randint(int64_t high, const Shape& shape, const TensorOptions& o = {});
/// A permutation of 0..n-1 from the default generator of the target device.
Tensor randperm(int64_t n, const TensorOptions& o = {});
class Generator;
/// A permutation of 0..n-1 drawn from `gen`, a CPU generator (torch.randperm(n, generator=gen)).
Tensor randperm(int64_t n, Generator& gen, const TensorOptions& o = {});
Tensor empty_like(const Tensor& t, const TensorOptions& o = {});
Tensor zeros_like(const Tensor& t, const TensorOptions& o = {});
Tensor ones_like(const Tensor& t, const TensorOptions& o = {});
Tensor full_like(const Tensor& t, const Scalar& v, const TensorOptions& o = {});
Tensor rand_like(const Tensor& t, const TensorOptions& o = {});
Tensor randn_like(const Tensor& t, const TensorOptions& o = {});
/// Copies `values` into a new tensor of `shape` (1-D of values.size() if shape is empty).
template <class T>
Tensor tensor(const std::vector<T>& values, const Shape& shape = {}, const TensorOptions& o = {});
Tensor tensor(std::initializer_list<double> values, const TensorOptions& o = {});
/// A 0-dim tensor holding `v`.
Tensor scalar_tensor(const Scalar& v, const TensorOptions& o = {});
/// Views memory owned by the caller (no copy); `deleter` runs when the last view dies.
Tensor from_blob(void* data, const Shape& shape, const TensorOptions& o = {},
                 std::function<void(void*)> deleter = {});
/// Views memory with explicit strides (elements).
Tensor from_blob(void* data, const Shape& shape, const Shape& strides, const TensorOptions& o,
                 std::function<void(void*)> deleter = {});
/// Copies `data` (host memory of `shape` elements of o.dtype()) into a new tensor on o.device().
Tensor from_data(const void* data, const Shape& shape, const TensorOptions& o = {});

// ---- free-function forms ------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b, const Scalar& alpha = 1);
Tensor sub(const Tensor& a, const Tensor& b, const Scalar& alpha = 1);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor rsqrt(const Tensor& a);
Tensor abs(const Tensor& a);
Tensor pow(const Tensor& a, const Scalar& exponent);
Tensor clamp(const Tensor& a, std::optional<Scalar> min, std::optional<Scalar> max = std::nullopt);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor relu(const Tensor& a);
Tensor sigmoid(const Tensor& a);
Tensor tanh(const Tensor& a);
Tensor gelu(const Tensor& a, const std::string& approximate = "none");
/// cond ? a : b, broadcasting all three.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Scalar& b);
Tensor where(const Tensor& cond, const Scalar& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

Tensor sum(const Tensor& a);
Tensor sum(const Tensor& a, const IntList& dims, bool keepdim = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, const IntList& dims, bool keepdim = false);
Tensor var(const Tensor& a, const IntList& dims, bool unbiased = true, bool keepdim = false);
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);
/// Reduce `grad` by summation to `shape` (the inverse of broadcasting).
Tensor sum_to(const Tensor& grad, const Shape& shape);

Tensor matmul(const Tensor& a, const Tensor& b);
Tensor mm(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);
/// x · weightᵀ + bias, over any leading dims of x.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());
/// beta·self + alpha·(m1 · m2)
Tensor addmm(const Tensor& self, const Tensor& m1, const Tensor& m2, const Scalar& beta = 1,
             const Scalar& alpha = 1);

Tensor reshape(const Tensor& a, const Shape& shape);
Tensor flatten(const Tensor& a, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor transpose(const Tensor& a, int64_t d0, int64_t d1);
Tensor permute(const Tensor& a, const IntList& dims);
Tensor squeeze(const Tensor& a, int64_t dim);
Tensor unsqueeze(const Tensor& a, int64_t dim);
Tensor narrow(const Tensor& a, int64_t dim, int64_t start, int64_t length);
Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& a, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& a, int64_t chunks, int64_t dim = 0);
/// Shape of broadcasting a with b (error naming `op` if incompatible).
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op = "broadcast");

// ---- nn functional (libtorch: torch::conv2d etc.; nn::functional wraps these) ---------
/// input (N,C,H,W), weight (O,C/groups,kH,kW), bias (O) or undefined.
Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(),
              IntList stride = {1, 1}, IntList padding = {0, 0}, IntList dilation = {1, 1},
              int64_t groups = 1);
/// Empty stride means stride = kernel_size.
Tensor max_pool2d(const Tensor& input, IntList kernel_size, IntList stride = {},
                  IntList padding = {0, 0}, IntList dilation = {1, 1}, bool ceil_mode = false);
Tensor avg_pool2d(const Tensor& input, IntList kernel_size, IntList stride = {},
                  IntList padding = {0, 0}, bool ceil_mode = false, bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& input, IntList output_size);
/// Training mode normalises with batch statistics and updates running stats in place
/// (unbiased variance, PyTorch's momentum convention); eval mode uses the running stats.
Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                  double eps = 1e-5);
Tensor layer_norm(const Tensor& input, const Shape& normalized_shape,
                  const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                  double eps = 1e-5);
Tensor dropout(const Tensor& input, double p = 0.5, bool training = true);
Tensor embedding(const Tensor& weight, const Tensor& indices, int64_t padding_idx = -1);
Tensor softmax(const Tensor& input, int64_t dim);
Tensor log_softmax(const Tensor& input, int64_t dim);
/// input (N,C) log-probabilities, target (N) class indices.
Tensor nll_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean,
                int64_t ignore_index = -100);
/// log_softmax over the class dim (1, or 0 for a (C) input) then nll_loss, as PyTorch 1.13.
/// target: class indices of input's shape without the class dim, or class probabilities of
/// input's shape (then the mean divides by the sample count and ignore_index must be < 0).
/// label_smoothing ε in [0, 1] mixes in the uniform distribution: (1-ε)·target + ε/C.
Tensor cross_entropy(const Tensor& input, const Tensor& target,
                     Reduction reduction = Reduction::Mean, int64_t ignore_index = -100,
                     double label_smoothing = 0.0);
/// With per-class weights (C) (undefined: none); for index targets the mean divides by the
/// summed weight of the counted targets, as nll_loss in PyTorch.
Tensor cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight,
                     Reduction reduction = Reduction::Mean, int64_t ignore_index = -100,
                     double label_smoothing = 0.0);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

}  // namespace smp
