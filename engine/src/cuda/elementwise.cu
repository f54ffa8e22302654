// CUDA kernels for the elementwise math ops: unary (and the fused unary backward), binary,
// comparisons, clamp, where, addcmul and addcdiv.
// The op code is a runtime switch inside one kernel per dtype: the branch is uniform across
// the grid, so it costs little next to the memory traffic, and it keeps the number of
// kernel instantiations (and compile time) small.
#include <cmath>

#include "cuda/loops.cuh"
#include "kernels.h"
#include "ops/op_utils.h"

namespace smp::cuda {
namespace {

using kernels::BinaryOp;
using kernels::UnaryOp;

template <class C>
__device__ inline bool is_nan(C x) {
  if constexpr (std::is_floating_point_v<C>)
    return x != x;
  else
    return false;
}

// ---- op math, in the compute type C ----------------------------------------------------

// The unary functors of unary_table.h behind a runtime switch (see the top of the file).
template <class C>
__device__ inline C unary_math(int op, C x) {
  switch (static_cast<UnaryOp>(op)) {
#define SMP_UNARY_CASE(Name, ...)                                                 \
  case UnaryOp::Name:                                                             \
    if constexpr (std::is_floating_point_v<C> || kernels::unary::Name::kIntegers) \
      return kernels::unary::Name{}(x);                                           \
    else                                                                          \
      return x; /* refused on the host */
    SMP_UNARY_OPS(SMP_UNARY_CASE)
#undef SMP_UNARY_CASE
  }
  return x;
}

// g · op'(x), from the incoming gradient g and the saved input or output s.
template <class C>
__device__ inline C unary_backward_math(int op, C g, C s) {
  switch (static_cast<UnaryOp>(op)) {
#define SMP_UNARY_CASE(Name, ...) \
  case UnaryOp::Name:             \
    return kernels::unary::backward_of<kernels::unary::Name>(g, s);
    SMP_UNARY_OPS(SMP_UNARY_CASE)
#undef SMP_UNARY_CASE
  }
  return C(0);
}

template <class C>
__device__ inline C ipow(C base, C e) {
  if (e < 0) return base == 1 ? C(1) : (base == -1 ? ((e & 1) ? C(-1) : C(1)) : C(0));
  C r = 1;
  while (e) {
    if (e & 1) r *= base;
    base *= base;
    e >>= 1;
  }
  return r;
}

template <class C>
__device__ inline C binary_math(int op, C a, C b, C alpha) {
  switch (static_cast<BinaryOp>(op)) {
    case BinaryOp::Add:
      return a + alpha * b;
    case BinaryOp::Sub:
      return a - alpha * b;
    case BinaryOp::Mul:
      return a * b;
    case BinaryOp::Div:
      if constexpr (std::is_floating_point_v<C>)
        return a / b;
      else
        return b == 0 ? C(0) : a / b;
    case BinaryOp::Maximum:
      return (is_nan(a) || a > b) ? a : b;
    case BinaryOp::Minimum:
      return (is_nan(a) || a < b) ? a : b;
    case BinaryOp::Pow:
      if constexpr (std::is_floating_point_v<C>)
        return ::pow(a, b);
      else
        return ipow(a, b);
    default:
      break;
  }
  return C(0);
}

template <class C>
__device__ inline bool compare_math(int op, C a, C b) {
  switch (static_cast<BinaryOp>(op)) {
    case BinaryOp::Eq:
      return a == b;
    case BinaryOp::Ne:
      return a != b;
    case BinaryOp::Lt:
      return a < b;
    case BinaryOp::Le:
      return a <= b;
    case BinaryOp::Gt:
      return a > b;
    case BinaryOp::Ge:
      return a >= b;
    default:
      return false;
  }
}

bool is_comparison(BinaryOp op) {
  return op == BinaryOp::Eq || op == BinaryOp::Ne || op == BinaryOp::Lt || op == BinaryOp::Le ||
         op == BinaryOp::Gt || op == BinaryOp::Ge;
}

bool unary_ok_for_integers(UnaryOp op) {
  switch (op) {
#define SMP_UNARY_CASE(Name, ...) \
  case UnaryOp::Name:             \
    return kernels::unary::Name::kIntegers;
    SMP_UNARY_OPS(SMP_UNARY_CASE)
#undef SMP_UNARY_CASE
  }
  return false;
}

bool unary_has_backward(UnaryOp op) {
  switch (op) {
#define SMP_UNARY_CASE(Name, ...) \
  case UnaryOp::Name:             \
    return kernels::unary::has_backward_v<kernels::unary::Name>;
    SMP_UNARY_OPS(SMP_UNARY_CASE)
#undef SMP_UNARY_CASE
  }
  return false;
}

template <class C>
C scalar_as(const Scalar& s) {
  if constexpr (std::is_floating_point_v<C>)
    return static_cast<C>(s.to_double());
  else
    return static_cast<C>(s.to_long());
}

// ---- functors --------------------------------------------------------------------------

template <class T>
struct UnaryF {
  int op;
  __device__ T operator()(T x) const {
    return convert<T>(unary_math<acc_t<T>>(op, convert<acc_t<T>>(x)));
  }
};

template <class T>
struct UnaryBackwardF {
  int op;
  __device__ T operator()(T g, T s) const {
    using C = acc_t<T>;
    return convert<T>(unary_backward_math<C>(op, convert<C>(g), convert<C>(s)));
  }
};

template <class T>
struct BinaryF {
  int op;
  acc_t<T> alpha;
  __device__ T operator()(T a, T b) const {
    using C = acc_t<T>;
    return convert<T>(binary_math<C>(op, convert<C>(a), convert<C>(b), alpha));
  }
};

template <class T>
struct CompareF {
  int op;
  __device__ bool operator()(T a, T b) const {
    using C = acc_t<T>;
    return compare_math<C>(op, convert<C>(a), convert<C>(b));
  }
};

template <class T>
struct BinaryScalarF {
  int op;
  acc_t<T> s;
  bool scalar_first;
  __device__ T operator()(T a) const {
    using C = acc_t<T>;
    C x = convert<C>(a);
    return convert<T>(scalar_first ? binary_math<C>(op, s, x, C(1))
                                   : binary_math<C>(op, x, s, C(1)));
  }
};

template <class T>
struct CompareScalarF {
  int op;
  acc_t<T> s;
  bool scalar_first;
  __device__ bool operator()(T a) const {
    using C = acc_t<T>;
    C x = convert<C>(a);
    return scalar_first ? compare_math<C>(op, s, x) : compare_math<C>(op, x, s);
  }
};

template <class T>
struct ClampF {
  bool has_lo, has_hi;
  acc_t<T> lo, hi;
  __device__ T operator()(T a) const {
    using C = acc_t<T>;
    C x = convert<C>(a);
    if (is_nan(x)) return a;
    if (has_lo && x < lo) x = lo;
    if (has_hi && x > hi) x = hi;
    return convert<T>(x);
  }
};

template <class T>
struct WhereF {
  __device__ T operator()(bool c, T a, T b) const { return c ? a : b; }
};

template <class T>
struct AddcF {
  acc_t<T> value;
  bool div;
  __device__ T operator()(T self, T t1, T t2) const {
    using C = acc_t<T>;
    C a = convert<C>(t1), b = convert<C>(t2);
    C r = div ? (b == C(0) && !std::is_floating_point_v<C> ? C(0) : a / b) : a * b;
    return convert<T>(convert<C>(self) + value * r);
  }
};

// ---- kernel table entries ---------------------------------------------------------------

void unary_cuda(UnaryOp op, const Tensor& out, const Tensor& in) {
  SMP_DISPATCH_ALL(out.dtype(), "unary", [&] {
    if constexpr (!std::is_floating_point_v<acc_t<scalar_t>>)
      SMP_CHECK(unary_ok_for_integers(op), "unary op {} needs a floating dtype, got {}",
                static_cast<int>(op), dtype_name(out.dtype()));
    gpu_map<scalar_t, scalar_t>(out, {&in}, UnaryF<scalar_t>{static_cast<int>(op)});
  });
}

void unary_backward_cuda(UnaryOp op, const Tensor& grad_in, const Tensor& grad_out,
                         const Tensor& saved) {
  SMP_CHECK(unary_has_backward(op), "unary_backward: op {} has no fused backward",
            static_cast<int>(op));
  SMP_DISPATCH_FLOATING_AND_HALF(grad_out.dtype(), "unary_backward", [&] {
    gpu_map<scalar_t, scalar_t, scalar_t>(grad_in, {&grad_out, &saved},
                                          UnaryBackwardF<scalar_t>{static_cast<int>(op)});
  });
}

void binary_cuda(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b,
                 const Scalar& alpha) {
  SMP_DISPATCH_ALL(a.dtype(), "binary", [&] {
    using C = acc_t<scalar_t>;
    if (is_comparison(op)) {
      gpu_map<bool, scalar_t, scalar_t>(out, {&a, &b}, CompareF<scalar_t>{static_cast<int>(op)});
      return;
    }
    gpu_map<scalar_t, scalar_t, scalar_t>(
        out, {&a, &b}, BinaryF<scalar_t>{static_cast<int>(op), scalar_as<C>(alpha)});
  });
}

void binary_scalar_cuda(BinaryOp op, const Tensor& out, const Tensor& a, const Scalar& s,
                        bool scalar_first) {
  SMP_DISPATCH_ALL(a.dtype(), "binary_scalar", [&] {
    using C = acc_t<scalar_t>;
    if (is_comparison(op)) {
      // Compare in double for integers against a fractional scalar (2 < 2.5).
      if constexpr (!std::is_floating_point_v<C>) {
        if (s.is_floating_point()) {
          Tensor ad = ops::empty_out(a.sizes(), kFloat64, a.device());
          gpu_map<double, scalar_t>(ad, {&a}, ConvertF<double, scalar_t>{});
          gpu_map<bool, double>(
              out, {&ad},
              CompareScalarF<double>{static_cast<int>(op), s.to_double(), scalar_first});
          return;
        }
      }
      gpu_map<bool, scalar_t>(
          out, {&a}, CompareScalarF<scalar_t>{static_cast<int>(op), scalar_as<C>(s), scalar_first});
      return;
    }
    gpu_map<scalar_t, scalar_t>(
        out, {&a}, BinaryScalarF<scalar_t>{static_cast<int>(op), scalar_as<C>(s), scalar_first});
  });
}

void clamp_cuda(const Tensor& out, const Tensor& in, std::optional<Scalar> min,
                std::optional<Scalar> max) {
  SMP_DISPATCH_ALL(out.dtype(), "clamp", [&] {
    using C = acc_t<scalar_t>;
    ClampF<scalar_t> f{min.has_value(), max.has_value(), min ? scalar_as<C>(*min) : C(0),
                       max ? scalar_as<C>(*max) : C(0)};
    gpu_map<scalar_t, scalar_t>(out, {&in}, f);
  });
}

void where_cuda(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  SMP_CHECK(cond.dtype() == kBool, "where: condition must be bool, got {}",
            dtype_name(cond.dtype()));
  SMP_DISPATCH_ALL(out.dtype(), "where", [&] {
    gpu_map<scalar_t, bool, scalar_t, scalar_t>(out, {&cond, &a, &b}, WhereF<scalar_t>{});
  });
}

void addc_cuda(const Tensor& out, const Tensor& self, const Tensor& t1, const Tensor& t2,
               const Scalar& value, bool div) {
  SMP_DISPATCH_ALL(out.dtype(), div ? "addcdiv" : "addcmul", [&] {
    using C = acc_t<scalar_t>;
    gpu_map<scalar_t, scalar_t, scalar_t, scalar_t>(out, {&self, &t1, &t2},
                                                    AddcF<scalar_t>{scalar_as<C>(value), div});
  });
}

void addcmul_cuda(const Tensor& out, const Tensor& self, const Tensor& t1, const Tensor& t2,
                  const Scalar& value) {
  addc_cuda(out, self, t1, t2, value, false);
}

void addcdiv_cuda(const Tensor& out, const Tensor& self, const Tensor& t1, const Tensor& t2,
                  const Scalar& value) {
  addc_cuda(out, self, t1, t2, value, true);
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.unary = &unary_cuda;
  t.unary_backward = &unary_backward_cuda;
  t.binary = &binary_cuda;
  t.binary_scalar = &binary_scalar_cuda;
  t.clamp = &clamp_cuda;
  t.where = &where_cuda;
  t.addcmul = &addcmul_cuda;
  t.addcdiv = &addcdiv_cuda;
});

}  // namespace smp::cuda
