// CPU kernels for elementwise ops: unary, binary (tensor-tensor and tensor-scalar), clamp,
// where, addcmul and addcdiv. Half and BFloat16 compute in float.
#include "cpu/loops.h"
#include "kernels.h"

// GCC 12 flags Eigen's AVX-512 packet math (_mm512_undefined_*) as maybe-uninitialized: a
// known false positive, reported where the templates are instantiated, i.e. in this file.
#if !defined(__clang__)  // clang has no such warning and would warn about the pragma
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#include <cmath>
#include <type_traits>
#include <unsupported/Eigen/SpecialFunctions>

namespace smp::cpu {
namespace {

using kernels::BinaryOp;
using kernels::UnaryOp;

template <class T>
constexpr bool is_reduced_float_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// The type arithmetic happens in: float for 16-bit floats, the type itself otherwise.
template <class T>
using acc_t = std::conditional_t<is_reduced_float_v<T>, float, T>;

using kernels::unary::kInvSqrt2Pi;
using kernels::unary::kSqrt1_2;
using kernels::unary::kSqrt2OverPi;

// Calls body(F{}) with F the functor of `op` in unary_table.h.
template <class Body>
void with_unary_op(UnaryOp op, Body&& body) {
  switch (op) {
#define SMP_UNARY_CASE(Name, ...) \
  case UnaryOp::Name:             \
    return body(kernels::unary::Name{});
    SMP_UNARY_OPS(SMP_UNARY_CASE)
#undef SMP_UNARY_CASE
  }
  SMP_ASSERT(false, "unary: unknown op {}", static_cast<int>(op));
}

// out = F(in) for T = scalar_t, computing in A.
template <class T, class F>
void unary_typed(UnaryOp op, F f, const Tensor& out, const Tensor& in) {
  using A = acc_t<T>;
  if constexpr (!std::is_floating_point_v<A> && !F::kIntegers) {
    SMP_ERROR("unary op {} is not supported for integer tensors", static_cast<int>(op));
  } else if constexpr (std::is_same_v<T, A>) {
    cpu_map<T, T>(out, {&in}, [f](T x) { return f(x); });
  } else {
    cpu_map<T, T>(out, {&in}, [f](T x) { return static_cast<T>(f(static_cast<A>(x))); });
  }
}

// float32 transcendental ops go through Eigen's packet math, which vectorises exp, tanh,
// erf and friends (std:: versions do not).
using ArrF = Eigen::Array<float, Eigen::Dynamic, 1>;
using MapF = Eigen::Map<ArrF>;
using CMapF = Eigen::Map<const ArrF>;

bool has_eigen_unary(UnaryOp op) {
  switch (op) {
    case UnaryOp::Exp:
    case UnaryOp::Log:
    case UnaryOp::Sqrt:
    case UnaryOp::Rsqrt:
    case UnaryOp::Tanh:
    case UnaryOp::Sigmoid:
    case UnaryOp::Gelu:
    case UnaryOp::GeluTanh:
      return true;
    default:
      return false;
  }
}

void unary_eigen(UnaryOp op, float* o, const float* x, int64_t n) {
  MapF out(o, n);
  CMapF in(x, n);
  constexpr float c1 = static_cast<float>(kSqrt1_2), k = static_cast<float>(kSqrt2OverPi);
  switch (op) {
    case UnaryOp::Exp:
      out = in.exp();
      break;
    case UnaryOp::Log:
      out = in.log();
      break;
    case UnaryOp::Sqrt:
      out = in.sqrt();
      break;
    case UnaryOp::Rsqrt:
      out = in.rsqrt();
      break;
    case UnaryOp::Tanh:
      out = in.tanh();
      break;
    case UnaryOp::Sigmoid:
      out = in.logistic();
      break;
    case UnaryOp::Gelu:
      out = 0.5f * in * (1.0f + (in * c1).erf());
      break;
    case UnaryOp::GeluTanh:
      out = 0.5f * in * (1.0f + (k * (in + 0.044715f * in.cube())).tanh());
      break;
    default:
      SMP_ASSERT(false, "unary_eigen: unexpected op");
  }
}

void unary_float_eigen(UnaryOp op, const Tensor& out, const Tensor& in) {
  with_unary_op(op, [&](auto f) {
    for_each_row<2>({&out, &in}, [&](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s,
                                     int64_t n) {
      if (s[0] == 4 && s[1] == 4) {
        unary_eigen(op, reinterpret_cast<float*>(p[0]), reinterpret_cast<const float*>(p[1]), n);
        return;
      }
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<float*>(p[0] + i * s[0]) =
            f(*reinterpret_cast<const float*>(p[1] + i * s[1]));
    });
  });
}

void unary_cpu(UnaryOp op, const Tensor& out, const Tensor& in) {
  SMP_CHECK(in.dtype() != kBool, "unary: bool tensors are not supported");
  if (in.dtype() == kFloat32 && has_eigen_unary(op)) return unary_float_eigen(op, out, in);
  SMP_DISPATCH_ALL(in.dtype(), "unary", [&] {
    if constexpr (!std::is_same_v<scalar_t, bool>)
      with_unary_op(op, [&](auto f) { unary_typed<scalar_t>(op, f, out, in); });
  });
}

// Calls body(f) with f: (A, A) -> A for the arithmetic ops.
template <class A, class Body>
void with_arith_fn(BinaryOp op, A alpha, Body&& body) {
  switch (op) {
    case BinaryOp::Add:
      if (alpha == A(1)) return body([](A x, A y) { return static_cast<A>(x + y); });
      return body([alpha](A x, A y) { return static_cast<A>(x + alpha * y); });
    case BinaryOp::Sub:
      if (alpha == A(1)) return body([](A x, A y) { return static_cast<A>(x - y); });
      return body([alpha](A x, A y) { return static_cast<A>(x - alpha * y); });
    case BinaryOp::Mul:
      return body([](A x, A y) { return static_cast<A>(x * y); });
    case BinaryOp::Div:
      if constexpr (std::is_floating_point_v<A>)
        return body([](A x, A y) { return x / y; });
      else
        SMP_ERROR("binary: integer division reached a kernel (the front end promotes it)");
    case BinaryOp::Maximum:
      return body([](A x, A y) {
        if constexpr (std::is_floating_point_v<A>)
          if (std::isnan(x) || std::isnan(y)) return static_cast<A>(x + y);
        return x < y ? y : x;
      });
    case BinaryOp::Minimum:
      return body([](A x, A y) {
        if constexpr (std::is_floating_point_v<A>)
          if (std::isnan(x) || std::isnan(y)) return static_cast<A>(x + y);
        return y < x ? y : x;
      });
    case BinaryOp::Pow:
      if constexpr (std::is_floating_point_v<A>)
        return body([](A x, A y) { return std::pow(x, y); });
      else
        return body([](A x, A y) {
          A r = 1;
          for (A i = 0; i < y; ++i) r = static_cast<A>(r * x);
          return r;
        });
    default:
      break;
  }
  SMP_ERROR("binary: op {} is not supported for this dtype", static_cast<int>(op));
}

// Calls body(f) with f: (A, A) -> bool for the comparisons.
template <class A, class Body>
void with_compare_fn(BinaryOp op, Body&& body) {
  switch (op) {
    case BinaryOp::Eq:
      return body([](A x, A y) { return x == y; });
    case BinaryOp::Ne:
      return body([](A x, A y) { return x != y; });
    case BinaryOp::Lt:
      return body([](A x, A y) { return x < y; });
    case BinaryOp::Le:
      return body([](A x, A y) { return x <= y; });
    case BinaryOp::Gt:
      return body([](A x, A y) { return x > y; });
    case BinaryOp::Ge:
      return body([](A x, A y) { return x >= y; });
    default:
      SMP_ERROR("binary: op {} is not a comparison", static_cast<int>(op));
  }
}

bool is_comparison(BinaryOp op) {
  return op == BinaryOp::Eq || op == BinaryOp::Ne || op == BinaryOp::Lt || op == BinaryOp::Le ||
         op == BinaryOp::Gt || op == BinaryOp::Ge;
}

// Bool arithmetic happens in uint8 so `x + y` and friends are well defined.
template <class T>
using arith_t = std::conditional_t<std::is_same_v<T, bool>, uint8_t, acc_t<T>>;

template <class T>
void binary_typed(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b,
                  const Scalar& alpha) {
  using A = arith_t<T>;
  if (is_comparison(op)) {
    with_compare_fn<A>(op, [&](auto f) {
      cpu_map<bool, T, T>(out, {&a, &b},
                          [f](T x, T y) { return f(static_cast<A>(x), static_cast<A>(y)); });
    });
    return;
  }
  with_arith_fn<A>(op, alpha.to<A>(), [&](auto f) {
    if constexpr (std::is_same_v<T, A>) {
      cpu_map<T, T, T>(out, {&a, &b}, f);
    } else {
      cpu_map<T, T, T>(out, {&a, &b}, [f](T x, T y) {
        return static_cast<T>(f(static_cast<A>(x), static_cast<A>(y)));
      });
    }
  });
}

// GELU gradients for float32 through Eigen (erf/exp/tanh vectorised); false if not handled.
bool gelu_backward_eigen(UnaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  if (a.dtype() != kFloat32 || (op != UnaryOp::Gelu && op != UnaryOp::GeluTanh)) return false;
  for_each_row<3>({&out, &a, &b}, [&](const std::array<char*, 3>& p,
                                      const std::array<int64_t, 3>& s, int64_t n) {
    constexpr float c1 = static_cast<float>(kSqrt1_2), ip = static_cast<float>(kInvSqrt2Pi),
                    k = static_cast<float>(kSqrt2OverPi), c = 0.044715f;
    // Rows with broadcast or strided operands go through a contiguous scratch copy.
    float gbuf[512], xbuf[512];
    for (int64_t i0 = 0; i0 < n; i0 += 512) {
      int64_t m = std::min<int64_t>(512, n - i0);
      const float* g;
      const float* x;
      if (s[1] == 4)
        g = reinterpret_cast<const float*>(p[1]) + i0;
      else {
        for (int64_t i = 0; i < m; ++i)
          gbuf[i] = *reinterpret_cast<const float*>(p[1] + (i0 + i) * s[1]);
        g = gbuf;
      }
      if (s[2] == 4)
        x = reinterpret_cast<const float*>(p[2]) + i0;
      else {
        for (int64_t i = 0; i < m; ++i)
          xbuf[i] = *reinterpret_cast<const float*>(p[2] + (i0 + i) * s[2]);
        x = xbuf;
      }
      CMapF G(g, m), X(x, m);
      Eigen::Array<float, Eigen::Dynamic, 1, Eigen::ColMajor, 512, 1> r(m);
      if (op == UnaryOp::Gelu) {
        r = G * (0.5f * (1.0f + (X * c1).erf()) + X * ip * (-0.5f * X.square()).exp());
      } else {
        Eigen::Array<float, Eigen::Dynamic, 1, Eigen::ColMajor, 512, 1> t =
            (k * (X + c * X.cube())).tanh();
        r = G * (0.5f * (1.0f + t) +
                 0.5f * X * (1.0f - t.square()) * (k * (1.0f + 3.0f * c * X.square())));
      }
      if (s[0] == 4)
        MapF(reinterpret_cast<float*>(p[0]) + i0, m) = r;
      else
        for (int64_t i = 0; i < m; ++i) *reinterpret_cast<float*>(p[0] + (i0 + i) * s[0]) = r[i];
    }
  });
  return true;
}

// grad_in = F::backward(grad_out, saved), computing in A.
template <class T, class F>
void unary_backward_typed(F f, const Tensor& grad_in, const Tensor& grad_out, const Tensor& saved) {
  using A = acc_t<T>;
  if constexpr (std::is_same_v<T, A>) {
    cpu_map<T, T, T>(grad_in, {&grad_out, &saved}, [f](T g, T s) { return f.backward(g, s); });
  } else {
    cpu_map<T, T, T>(grad_in, {&grad_out, &saved}, [f](T g, T s) {
      return static_cast<T>(f.backward(static_cast<A>(g), static_cast<A>(s)));
    });
  }
}

void unary_backward_cpu(UnaryOp op, const Tensor& grad_in, const Tensor& grad_out,
                        const Tensor& saved) {
  if (gelu_backward_eigen(op, grad_in, grad_out, saved)) return;
  SMP_DISPATCH_FLOATING_AND_HALF(grad_out.dtype(), "unary_backward", [&] {
    with_unary_op(op, [&](auto f) {
      if constexpr (kernels::unary::has_backward_v<decltype(f)>)
        unary_backward_typed<scalar_t>(f, grad_in, grad_out, saved);
      else
        SMP_ERROR("unary_backward: op {} has no fused backward", static_cast<int>(op));
    });
  });
}

void binary_cpu(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b,
                const Scalar& alpha) {
  SMP_DISPATCH_ALL(a.dtype(), "binary", [&] { binary_typed<scalar_t>(op, out, a, b, alpha); });
}

template <class T>
void binary_scalar_typed(BinaryOp op, const Tensor& out, const Tensor& a, const Scalar& s,
                         bool scalar_first) {
  using A = arith_t<T>;
  A sv = s.to<A>();
  if (is_comparison(op)) {
    with_compare_fn<A>(op, [&](auto f) {
      if (scalar_first)
        cpu_map<bool, T>(out, {&a}, [f, sv](T x) { return f(sv, static_cast<A>(x)); });
      else
        cpu_map<bool, T>(out, {&a}, [f, sv](T x) { return f(static_cast<A>(x), sv); });
    });
    return;
  }
  with_arith_fn<A>(op, A(1), [&](auto f) {
    if (scalar_first)
      cpu_map<T, T>(out, {&a}, [f, sv](T x) { return static_cast<T>(f(sv, static_cast<A>(x))); });
    else
      cpu_map<T, T>(out, {&a}, [f, sv](T x) { return static_cast<T>(f(static_cast<A>(x), sv)); });
  });
}

void binary_scalar_cpu(BinaryOp op, const Tensor& out, const Tensor& a, const Scalar& s,
                       bool scalar_first) {
  SMP_DISPATCH_ALL(a.dtype(), "binary_scalar",
                   [&] { binary_scalar_typed<scalar_t>(op, out, a, s, scalar_first); });
}

template <class T>
void clamp_typed(const Tensor& out, const Tensor& in, std::optional<Scalar> min,
                 std::optional<Scalar> max) {
  using A = acc_t<T>;
  // NaN fails both comparisons and passes through, as in PyTorch.
  if (min && max) {
    A lo = min->to<A>(), hi = max->to<A>();
    cpu_map<T, T>(out, {&in}, [lo, hi](T v) {
      A x = static_cast<A>(v);
      return static_cast<T>(x < lo ? lo : (x > hi ? hi : x));
    });
  } else if (min) {
    A lo = min->to<A>();
    cpu_map<T, T>(out, {&in}, [lo](T v) {
      A x = static_cast<A>(v);
      return static_cast<T>(x < lo ? lo : x);
    });
  } else if (max) {
    A hi = max->to<A>();
    cpu_map<T, T>(out, {&in}, [hi](T v) {
      A x = static_cast<A>(v);
      return static_cast<T>(x > hi ? hi : x);
    });
  } else {
    cpu_map<T, T>(out, {&in}, [](T v) { return v; });
  }
}

void clamp_cpu(const Tensor& out, const Tensor& in, std::optional<Scalar> min,
               std::optional<Scalar> max) {
  SMP_CHECK(in.dtype() != kBool, "clamp: bool tensors are not supported");
  SMP_DISPATCH_ALL(in.dtype(), "clamp", [&] {
    if constexpr (!std::is_same_v<scalar_t, bool>) clamp_typed<scalar_t>(out, in, min, max);
  });
}

void where_cpu(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  SMP_DISPATCH_ALL(out.dtype(), "where", [&] {
    cpu_map<scalar_t, bool, scalar_t, scalar_t>(
        out, {&cond, &a, &b}, [](bool c, scalar_t x, scalar_t y) { return c ? x : y; });
  });
}

void addcmul_cpu(const Tensor& out, const Tensor& self, const Tensor& t1, const Tensor& t2,
                 const Scalar& value) {
  SMP_DISPATCH_FLOATING_AND_HALF(out.dtype(), "addcmul", [&] {
    using A = acc_t<scalar_t>;
    A v = value.to<A>();
    cpu_map<scalar_t, scalar_t, scalar_t, scalar_t>(
        out, {&self, &t1, &t2}, [v](scalar_t s, scalar_t x, scalar_t y) {
          return static_cast<scalar_t>(static_cast<A>(s) +
                                       v * static_cast<A>(x) * static_cast<A>(y));
        });
  });
}

void addcdiv_cpu(const Tensor& out, const Tensor& self, const Tensor& t1, const Tensor& t2,
                 const Scalar& value) {
  SMP_DISPATCH_FLOATING_AND_HALF(out.dtype(), "addcdiv", [&] {
    using A = acc_t<scalar_t>;
    A v = value.to<A>();
    cpu_map<scalar_t, scalar_t, scalar_t, scalar_t>(
        out, {&self, &t1, &t2}, [v](scalar_t s, scalar_t x, scalar_t y) {
          return static_cast<scalar_t>(static_cast<A>(s) +
                                       v * static_cast<A>(x) / static_cast<A>(y));
        });
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.unary = &unary_cpu;
  t.unary_backward = &unary_backward_cpu;
  t.binary = &binary_cpu;
  t.binary_scalar = &binary_scalar_cpu;
  t.clamp = &clamp_cpu;
  t.where = &where_cpu;
  t.addcmul = &addcmul_cpu;
  t.addcdiv = &addcdiv_cpu;
});

}  // namespace smp::cpu
