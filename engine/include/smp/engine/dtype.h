// Element types and PyTorch's type-promotion rules.
#pragma once

#include <smp/engine/half.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace smp {

/// Element type of a tensor (libtorch: torch::Dtype / ScalarType).
enum class Dtype : int8_t { Float32, Float64, Float16, BFloat16, Int64, Int32, UInt8, Bool };
using ScalarType = Dtype;
constexpr int kNumDtypes = 8;

constexpr Dtype kFloat32 = Dtype::Float32;
constexpr Dtype kFloat = Dtype::Float32;
constexpr Dtype kFloat64 = Dtype::Float64;
constexpr Dtype kDouble = Dtype::Float64;
constexpr Dtype kFloat16 = Dtype::Float16;
constexpr Dtype kHalf = Dtype::Float16;
constexpr Dtype kBFloat16 = Dtype::BFloat16;
constexpr Dtype kInt64 = Dtype::Int64;
constexpr Dtype kLong = Dtype::Int64;
constexpr Dtype kInt32 = Dtype::Int32;
constexpr Dtype kInt = Dtype::Int32;
constexpr Dtype kUInt8 = Dtype::UInt8;
constexpr Dtype kByte = Dtype::UInt8;
constexpr Dtype kBool = Dtype::Bool;

size_t element_size(Dtype t);
/// PyTorch's spelling: "float32", "int64", "bool", ...
const char* dtype_name(Dtype t);
/// safetensors' spelling: "F32", "I64", "BOOL", ...
const char* safetensors_name(Dtype t);
bool is_floating_point(Dtype t);
bool is_integral(Dtype t, bool include_bool = false);
/// Result type of a binary op between two tensors of these types (torch.promote_types).
Dtype promote_types(Dtype a, Dtype b);
/// The default floating type used when integer inputs meet a float-only op.
Dtype default_dtype();
void set_default_dtype(Dtype t);

template <class T> struct CppTypeToDtype;
template <> struct CppTypeToDtype<float> { static constexpr Dtype value = kFloat32; };
template <> struct CppTypeToDtype<double> { static constexpr Dtype value = kFloat64; };
template <> struct CppTypeToDtype<Half> { static constexpr Dtype value = kFloat16; };
template <> struct CppTypeToDtype<BFloat16> { static constexpr Dtype value = kBFloat16; };
template <> struct CppTypeToDtype<int64_t> { static constexpr Dtype value = kInt64; };
template <> struct CppTypeToDtype<int32_t> { static constexpr Dtype value = kInt32; };
template <> struct CppTypeToDtype<uint8_t> { static constexpr Dtype value = kUInt8; };
template <> struct CppTypeToDtype<bool> { static constexpr Dtype value = kBool; };
template <class T> constexpr Dtype dtype_of = CppTypeToDtype<T>::value;

}  // namespace smp

// SMP_DISPATCH_*(dtype, "op", [&]{ ... scalar_t ... }): run a lambda with scalar_t bound to
// the C++ type of `dtype`; an unsupported dtype is a user error naming the op.
#define SMP_DTYPE_CASE(enum_v, cpp_t, ...) \
  case ::smp::Dtype::enum_v: {             \
    using scalar_t = cpp_t;                \
    return __VA_ARGS__();                  \
  }

#define SMP_DISPATCH_SWITCH(dt, name, ...)                                                     \
  [&] {                                                                                        \
    switch (dt) {                                                                              \
      __VA_ARGS__                                                                              \
      default:                                                                                 \
        SMP_ERROR("{}: dtype {} is not supported here", name, ::smp::dtype_name(dt));          \
    }                                                                                          \
  }()

#define SMP_DISPATCH_FLOATING(dt, name, ...)                 \
  SMP_DISPATCH_SWITCH(dt, name,                              \
                      SMP_DTYPE_CASE(Float32, float, __VA_ARGS__) \
                      SMP_DTYPE_CASE(Float64, double, __VA_ARGS__))

#define SMP_DISPATCH_FLOATING_AND_HALF(dt, name, ...)                 \
  SMP_DISPATCH_SWITCH(dt, name,                                       \
                      SMP_DTYPE_CASE(Float32, float, __VA_ARGS__)     \
                      SMP_DTYPE_CASE(Float64, double, __VA_ARGS__)    \
                      SMP_DTYPE_CASE(Float16, ::smp::Half, __VA_ARGS__) \
                      SMP_DTYPE_CASE(BFloat16, ::smp::BFloat16, __VA_ARGS__))

#define SMP_DISPATCH_ALL(dt, name, ...)                                 \
  SMP_DISPATCH_SWITCH(dt, name,                                         \
                      SMP_DTYPE_CASE(Float32, float, __VA_ARGS__)       \
                      SMP_DTYPE_CASE(Float64, double, __VA_ARGS__)      \
                      SMP_DTYPE_CASE(Float16, ::smp::Half, __VA_ARGS__) \
                      SMP_DTYPE_CASE(BFloat16, ::smp::BFloat16, __VA_ARGS__) \
                      SMP_DTYPE_CASE(Int64, int64_t, __VA_ARGS__)       \
                      SMP_DTYPE_CASE(Int32, int32_t, __VA_ARGS__)       \
                      SMP_DTYPE_CASE(UInt8, uint8_t, __VA_ARGS__)       \
                      SMP_DTYPE_CASE(Bool, bool, __VA_ARGS__))

#define SMP_DISPATCH_ALL_NO_HALF(dt, name, ...)                    \
  SMP_DISPATCH_SWITCH(dt, name,                                    \
                      SMP_DTYPE_CASE(Float32, float, __VA_ARGS__)  \
                      SMP_DTYPE_CASE(Float64, double, __VA_ARGS__) \
                      SMP_DTYPE_CASE(Int64, int64_t, __VA_ARGS__)  \
                      SMP_DTYPE_CASE(Int32, int32_t, __VA_ARGS__)  \
                      SMP_DTYPE_CASE(UInt8, uint8_t, __VA_ARGS__)  \
                      SMP_DTYPE_CASE(Bool, bool, __VA_ARGS__))

#define SMP_DISPATCH_INDEX(dt, name, ...)                         \
  SMP_DISPATCH_SWITCH(dt, name,                                   \
                      SMP_DTYPE_CASE(Int64, int64_t, __VA_ARGS__) \
                      SMP_DTYPE_CASE(Int32, int32_t, __VA_ARGS__))
