// Options structs of the layers, with libtorch's chained setters: Conv2dOptions(1, 32,
// 3).stride(2).
#pragma once

#include <smp/engine/error.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace smp::nn {

/// Defines a field `name_` with a chained setter `name(v)` and a getter `name()`.
#define SMP_ARG(T, name)                                   \
 public:                                                   \
  auto name(const T& new_##name)->decltype(*this) {        \
    this->name##_ = new_##name;                            \
    return *this;                                          \
  }                                                        \
  const T& name() const noexcept { return this->name##_; } \
  T& name() noexcept { return this->name##_; }             \
                                                           \
 private:                                                  \
  T name##_

/// A pair of ints given as one value (3 → {3, 3}) or two ({3, 5}), as libtorch's ExpandingArray<2>.
class ExpandingArray2 {
 public:
  ExpandingArray2(int64_t v) : v_{v, v} {}  // NOLINT: implicit on purpose
  ExpandingArray2(std::initializer_list<int64_t> l) : v_(l) { check(); }
  ExpandingArray2(const std::vector<int64_t>& v) : v_(v) { check(); }  // NOLINT
  const std::vector<int64_t>& vec() const { return v_; }
  operator const std::vector<int64_t>&() const { return v_; }  // NOLINT
  int64_t operator[](size_t i) const { return v_[i]; }

 private:
  void check() const {
    SMP_CHECK(v_.size() == 2, "expected 2 values (height, width), got {}", v_.size());
  }
  std::vector<int64_t> v_;
};

/// Linear(in, out): y = x Wᵀ + b.
struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  SMP_ARG(int64_t, in_features);
  SMP_ARG(int64_t, out_features);
  SMP_ARG(bool, bias) = true;
};

/// Conv2d(in, out, kernel): zero padding only.
struct Conv2dOptions {
  Conv2dOptions(int64_t in_channels, int64_t out_channels, ExpandingArray2 kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  SMP_ARG(int64_t, in_channels);
  SMP_ARG(int64_t, out_channels);
  SMP_ARG(ExpandingArray2, kernel_size);
  SMP_ARG(ExpandingArray2, stride) = 1;
  SMP_ARG(ExpandingArray2, padding) = 0;
  SMP_ARG(ExpandingArray2, dilation) = 1;
  SMP_ARG(int64_t, groups) = 1;
  SMP_ARG(bool, bias) = true;
};

/// BatchNorm2d(C). momentum = nullopt means a cumulative moving average, as PyTorch's None.
struct BatchNorm2dOptions {
  BatchNorm2dOptions(int64_t num_features) : num_features_(num_features) {}  // NOLINT
  SMP_ARG(int64_t, num_features);
  SMP_ARG(double, eps) = 1e-5;
  SMP_ARG(std::optional<double>, momentum) = 0.1;
  SMP_ARG(bool, affine) = true;
  SMP_ARG(bool, track_running_stats) = true;
};

/// GELU: approximate "none" (erf) or "tanh".
struct GELUOptions {
  GELUOptions(std::string approximate = "none") : approximate_(std::move(approximate)) {}  // NOLINT
  SMP_ARG(std::string, approximate);
};

/// MaxPool2d(k): stride defaults to the kernel size.
struct MaxPool2dOptions {
  MaxPool2dOptions(ExpandingArray2 kernel_size)  // NOLINT
      : kernel_size_(kernel_size), stride_(kernel_size) {}
  MaxPool2dOptions(int64_t k) : MaxPool2dOptions(ExpandingArray2(k)) {}  // NOLINT
  SMP_ARG(ExpandingArray2, kernel_size);
  SMP_ARG(ExpandingArray2, stride);
  SMP_ARG(ExpandingArray2, padding) = 0;
  SMP_ARG(ExpandingArray2, dilation) = 1;
  SMP_ARG(bool, ceil_mode) = false;
};

/// AvgPool2d(k): stride defaults to the kernel size.
struct AvgPool2dOptions {
  AvgPool2dOptions(ExpandingArray2 kernel_size)  // NOLINT
      : kernel_size_(kernel_size), stride_(kernel_size) {}
  AvgPool2dOptions(int64_t k) : AvgPool2dOptions(ExpandingArray2(k)) {}  // NOLINT
  SMP_ARG(ExpandingArray2, kernel_size);
  SMP_ARG(ExpandingArray2, stride);
  SMP_ARG(ExpandingArray2, padding) = 0;
  SMP_ARG(bool, ceil_mode) = false;
  SMP_ARG(bool, count_include_pad) = true;
};

/// AdaptiveAvgPool2d({h, w}): output spatial size.
struct AdaptiveAvgPool2dOptions {
  AdaptiveAvgPool2dOptions(ExpandingArray2 output_size) : output_size_(output_size) {}  // NOLINT
  AdaptiveAvgPool2dOptions(int64_t s) : output_size_(s) {}                              // NOLINT
  SMP_ARG(ExpandingArray2, output_size);
};

/// Dropout(p): probability of zeroing an element in training.
struct DropoutOptions {
  DropoutOptions(double p = 0.5) : p_(p) {}  // NOLINT
  SMP_ARG(double, p);
};

/// Flatten: dims start_dim..end_dim become one.
struct FlattenOptions {
  SMP_ARG(int64_t, start_dim) = 1;
  SMP_ARG(int64_t, end_dim) = -1;
};

/// Embedding(num, dim): a lookup table; the padding_idx row is zero and gets no gradient.
struct EmbeddingOptions {
  EmbeddingOptions(int64_t num_embeddings, int64_t embedding_dim)
      : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
  SMP_ARG(int64_t, num_embeddings);
  SMP_ARG(int64_t, embedding_dim);
  SMP_ARG(std::optional<int64_t>, padding_idx) = std::nullopt;
};

/// LayerNorm({shape}): normalises over the trailing dims given by the shape.
struct LayerNormOptions {
  LayerNormOptions(std::vector<int64_t> normalized_shape)  // NOLINT
      : normalized_shape_(std::move(normalized_shape)) {}
  SMP_ARG(std::vector<int64_t>, normalized_shape);
  SMP_ARG(double, eps) = 1e-5;
  SMP_ARG(bool, elementwise_affine) = true;
  /// With elementwise_affine, whether there is a bias (PyTorch 2.1's LayerNorm(bias=False);
  /// nanoGPT's bias=False models).
  SMP_ARG(bool, bias) = true;
};

/// LogSoftmax(dim).
struct LogSoftmaxOptions {
  LogSoftmaxOptions(int64_t dim) : dim_(dim) {}  // NOLINT
  SMP_ARG(int64_t, dim);
};

}  // namespace smp::nn
