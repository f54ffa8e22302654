// The unary elementwise ops, declared once. Each op is a functor with its scalar forward
// `operator()(x)` and, where the gradient is a fused kernel, `backward(g, s)` = g · f'(x),
// where s is the forward input x or output y as `kSaves` says. The functors are
// __host__ __device__, so the CPU loops (cpu/elementwise_cpu.cpp) and the CUDA kernels
// (cuda/elementwise.cu) run the same math; `A` is the compute type (float for 16-bit floats).
//
// The lists at the end generate the UnaryOp enum (kernels.h), both devices' kernel switches,
// the fused backward kernels, and, for SMP_UNARY_FUNCTIONS, the public function and its
// autograd node (ops/elementwise.cpp). A new op = a functor here + a line in
// SMP_UNARY_FUNCTIONS + its declaration in <smp/engine/unary_ops.h> (docs/adding-an-op.md).
#pragma once

#include <smp/engine/half.h>  // SMP_HOST_DEVICE

#include <cmath>
#include <type_traits>

namespace smp::kernels::unary {

/// What an op's fused backward reads besides the incoming gradient.
enum class Saves { Input, Output };

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

template <class A>
SMP_HOST_DEVICE inline bool is_negative(A x) {
  if constexpr (std::is_unsigned_v<A>)
    return false;
  else
    return x < A(0);
}

// kIntegers: also defined on integer dtypes (the others need a floating dtype; the front
// ends compute integer inputs in the default float type).

struct Neg {
  static constexpr bool kIntegers = true;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return static_cast<A>(-x);
  }
};

struct Exp {
  static constexpr bool kIntegers = false;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return std::exp(x);
  }
};

struct Log {
  static constexpr bool kIntegers = false;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return std::log(x);
  }
};

struct Sqrt {
  static constexpr bool kIntegers = false;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return std::sqrt(x);
  }
};

struct Rsqrt {
  static constexpr bool kIntegers = false;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return A(1) / std::sqrt(x);
  }
};

struct Abs {
  static constexpr bool kIntegers = true;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
#if defined(__CUDA_ARCH__)
    // The CUDA kernels have always cleared the sign bit (abs(-0.0) = +0.0, as PyTorch);
    // the CPU loops keep -0.0. Both kept as they were.
    if constexpr (std::is_floating_point_v<A>) return std::fabs(x);
#endif
    return is_negative(x) ? static_cast<A>(-x) : x;
  }
};

struct Square {
  static constexpr bool kIntegers = true;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return static_cast<A>(x * x);
  }
};

struct Relu {
  static constexpr bool kIntegers = true;
  static constexpr Saves kSaves = Saves::Input;
  // NaN propagates, as in PyTorch (x < 0 is false for NaN, so x is kept).
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return is_negative(x) ? A(0) : x;
  }
  template <class A>
  SMP_HOST_DEVICE A backward(A g, A x) const {
    return x > A(0) ? g : A(0);
  }
};

struct Sigmoid {
  static constexpr bool kIntegers = false;
  static constexpr Saves kSaves = Saves::Output;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return A(1) / (A(1) + std::exp(-x));
  }
  template <class A>
  SMP_HOST_DEVICE A backward(A g, A y) const {
    return g * y * (A(1) - y);
  }
};

struct Tanh {
  static constexpr bool kIntegers = false;
  static constexpr Saves kSaves = Saves::Output;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return std::tanh(x);
  }
  template <class A>
  SMP_HOST_DEVICE A backward(A g, A y) const {
    return g * (A(1) - y * y);
  }
};

/// x·Φ(x), erf form.
struct Gelu {
  static constexpr bool kIntegers = false;
  static constexpr Saves kSaves = Saves::Input;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return A(0.5) * x * (A(1) + std::erf(x * A(kSqrt1_2)));
  }
  template <class A>
  SMP_HOST_DEVICE A backward(A g, A x) const {
    A cdf = A(0.5) * (A(1) + std::erf(x * A(kSqrt1_2)));
    A pdf = A(kInvSqrt2Pi) * std::exp(A(-0.5) * x * x);
    return g * (cdf + x * pdf);
  }
};

/// GELU's tanh approximation.
struct GeluTanh {
  static constexpr bool kIntegers = false;
  static constexpr Saves kSaves = Saves::Input;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    A inner = A(kSqrt2OverPi) * (x + A(0.044715) * x * x * x);
    return A(0.5) * x * (A(1) + std::tanh(inner));
  }
  template <class A>
  SMP_HOST_DEVICE A backward(A g, A x) const {
    constexpr A k = A(kSqrt2OverPi), c = A(0.044715);
    A x2 = x * x;
    A t = std::tanh(k * (x + c * x2 * x));
    A dinner = k * (A(1) + A(3) * c * x2);
    return g * (A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * dinner);
  }
};

struct Sign {
  static constexpr bool kIntegers = true;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
#if defined(__CUDA_ARCH__)
    // The CUDA kernels have always kept NaN (the CPU loops give 0). Both kept as they were.
    if constexpr (std::is_floating_point_v<A>)
      if (x != x) return x;
#endif
    return static_cast<A>((A(0) < x) - is_negative(x));
  }
};

struct Reciprocal {
  static constexpr bool kIntegers = false;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return A(1) / x;
  }
};

struct Floor {
  static constexpr bool kIntegers = true;  // the identity on integers
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    if constexpr (std::is_floating_point_v<A>)
      return std::floor(x);
    else
      return x;
  }
};

/// SiLU (swish): x·σ(x).
struct Silu {
  static constexpr bool kIntegers = false;
  static constexpr Saves kSaves = Saves::Input;
  template <class A>
  SMP_HOST_DEVICE A operator()(A x) const {
    return x / (A(1) + std::exp(-x));
  }
  // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x))).
  template <class A>
  SMP_HOST_DEVICE A backward(A g, A x) const {
    A s = A(1) / (A(1) + std::exp(-x));
    return g * s * (A(1) + x * (A(1) - s));
  }
};

/// Whether op F has a fused backward (then F::kSaves says what it reads).
template <class F>
constexpr bool has_backward_v = requires {
  F::kSaves;
};

/// Whether F's fused backward reads the forward output (false where it reads the input or
/// F has none).
template <class F>
constexpr bool saves_output() {
  if constexpr (has_backward_v<F>)
    return F::kSaves == Saves::Output;
  else
    return false;
}

/// g · F'(x) from the saved input or output s; 0 where F has no fused backward (the host
/// refuses that call before any kernel runs).
template <class F, class A>
SMP_HOST_DEVICE A backward_of(A g, A s) {
  if constexpr (has_backward_v<F>)
    return F{}.backward(g, s);
  else
    return A(0);
}

}  // namespace smp::kernels::unary

/// Ops whose public functions are written by hand (Tensor methods in tensor.h, front ends in
/// ops/elementwise.cpp): X(Name), Name being the UnaryOp enumerator and the functor above.
#define SMP_UNARY_KERNEL_OPS(X) \
  X(Neg)                        \
  X(Exp)                        \
  X(Log)                        \
  X(Sqrt)                       \
  X(Rsqrt)                      \
  X(Abs)                        \
  X(Square)                     \
  X(Relu)                       \
  X(Sigmoid)                    \
  X(Tanh)                       \
  X(Gelu)                       \
  X(GeluTanh)                   \
  X(Sign)                       \
  X(Reciprocal)                 \
  X(Floor)

/// Ops whose public function `Tensor name(const Tensor&)` (declared in
/// <smp/engine/unary_ops.h>) and autograd node (NameBackward, the fused backward) are
/// generated: X(Name, name). Integer inputs compute in the default float type.
#define SMP_UNARY_FUNCTIONS(X) X(Silu, silu)

/// Every unary op; X is called as X(Name) or X(Name, name), so define it as X(Name, ...).
#define SMP_UNARY_OPS(X)  \
  SMP_UNARY_KERNEL_OPS(X) \
  SMP_UNARY_FUNCTIONS(X)
