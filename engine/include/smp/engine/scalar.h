// A number passed to an op beside tensors (the `2` in `x * 2`).
#pragma once

#include <smp/engine/dtype.h>

#include <cstdint>
#include <type_traits>

namespace smp {

/// A scalar operand: floating, integral or boolean. Like PyTorch's "wrapped numbers", it
/// does not widen a tensor's dtype within its category (float32 * 2.5 stays float32).
class Scalar {
 public:
  enum class Kind : int8_t { Float, Int, Bool };
  Scalar() : kind_(Kind::Int), i_(0) {}
  template <class T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Scalar(T v) : kind_(Kind::Float), d_(static_cast<double>(v)) {}  // NOLINT
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Scalar(T v) : kind_(Kind::Int), i_(static_cast<int64_t>(v)) {}  // NOLINT
  Scalar(bool v) : kind_(Kind::Bool), i_(v) {}                    // NOLINT
  Scalar(Half v) : Scalar(static_cast<float>(v)) {}               // NOLINT
  Scalar(BFloat16 v) : Scalar(static_cast<float>(v)) {}           // NOLINT

  Kind kind() const { return kind_; }
  bool is_floating_point() const { return kind_ == Kind::Float; }
  bool is_integral() const { return kind_ == Kind::Int; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  double to_double() const { return kind_ == Kind::Float ? d_ : static_cast<double>(i_); }
  int64_t to_long() const { return kind_ == Kind::Float ? static_cast<int64_t>(d_) : i_; }
  bool to_bool() const { return kind_ == Kind::Float ? d_ != 0.0 : i_ != 0; }
  template <class T>
  T to() const {
    if constexpr (std::is_same_v<T, bool>) return to_bool();
    else if constexpr (std::is_integral_v<T>) return static_cast<T>(to_long());
    else return static_cast<T>(static_cast<float>(to_double()));
  }
  /// The dtype this scalar would have as a tensor on its own (float32 / int64 / bool).
  Dtype natural_dtype() const;

 private:
  Kind kind_;
  union {
    double d_;
    int64_t i_;
  };
};

template <>
inline double Scalar::to<double>() const { return to_double(); }

/// Result dtype of `tensor op scalar` under PyTorch's rules.
Dtype result_type(Dtype tensor_dtype, const Scalar& s);

}  // namespace smp
