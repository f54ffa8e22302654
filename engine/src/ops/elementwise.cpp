// Elementwise ops: arithmetic, comparisons, unary math, activations, clamp, where, and their
// in-place forms. Type promotion follows PyTorch: dimensioned tensors outrank 0-dim tensors,
// which outrank Scalars (wrapped numbers), within each category (bool < integer < float).
#include <smp/engine/autograd.h>
#include <smp/engine/unary_ops.h>

#include <cmath>

#include "ops/op_utils.h"

namespace smp {

using kernels::BinaryOp;
using kernels::UnaryOp;
using ops::shape_str;

namespace {

using Grads = std::vector<Tensor>;

bool is_comparison(BinaryOp op) {
  return op == BinaryOp::Eq || op == BinaryOp::Ne || op == BinaryOp::Lt || op == BinaryOp::Le ||
         op == BinaryOp::Gt || op == BinaryOp::Ge;
}

// PyTorch's combine_categories: the higher-priority dtype wins unless the lower one is of a
// higher category (bool < integral < floating).
Dtype combine_categories(std::optional<Dtype> higher, std::optional<Dtype> lower) {
  if (!higher) return *lower;
  if (!lower) return *higher;
  if (is_floating_point(*higher)) return *higher;
  if (*higher == kBool || is_floating_point(*lower)) return promote_types(*higher, *lower);
  return *higher;
}

// torch.result_type for two tensors.
Dtype result_type(const Tensor& a, const Tensor& b) {
  bool za = a.dim() == 0, zb = b.dim() == 0;
  if (za == zb) return promote_types(a.dtype(), b.dtype());
  return za ? combine_categories(b.dtype(), a.dtype()) : combine_categories(a.dtype(), b.dtype());
}

Dtype float_if_integral(Dtype t) { return is_floating_point(t) ? t : default_dtype(); }

// An op's result written into `self` must not narrow its category (float into int).
bool can_cast(Dtype from, Dtype to) {
  auto category = [](Dtype d) { return d == kBool ? 0 : is_integral(d) ? 1 : 2; };
  return category(from) <= category(to);
}

void check_inplace(const Tensor& t, const char* op) {
  SMP_CHECK(!(GradMode::is_enabled() && t.is_leaf() && t.requires_grad()),
            "{}: a leaf tensor that requires grad is being modified in place; wrap the update "
            "in smp::NoGradGuard",
            op);
}

using ops::runs_kernel;

// A 0-dim CPU tensor may meet a tensor on another device (PyTorch allows it): move it over.
void align_devices(Tensor& a, Tensor& b, const char* op) {
  if (a.device() == b.device()) return;
  if (a.dim() == 0 && a.is_cpu() && !a.is_meta())
    a = a.to(b.device());
  else if (b.dim() == 0 && b.is_cpu() && !b.is_meta())
    b = b.to(a.device());
  ops::common_device({a, b}, op);
}

// The gradient for `input` from a gradient of the broadcast output.
Tensor grad_for(const Tensor& g, const Shape& shape, Dtype dtype) {
  Tensor r = sum_to(g, shape);
  return r.dtype() == dtype ? r : r.to(dtype);
}

// ---- kernels without autograd ----------------------------------------------------------

Tensor binary_raw(BinaryOp op, Tensor a, Tensor b, const Scalar& alpha, const char* name) {
  ops::check_defined(a, name, "self");
  ops::check_defined(b, name, "other");
  align_devices(a, b, name);
  Shape shape = broadcast_shapes(a.sizes(), b.sizes(), name);
  Dtype ct = result_type(a, b);
  if (op == BinaryOp::Div) ct = float_if_integral(ct);
  Tensor out = ops::empty_out(shape, is_comparison(op) ? kBool : ct, a.device());
  if (runs_kernel(out)) {
    SMP_KERNEL(binary, a.device())
    (op, out, ops::expand_to(ops::cast_to(a, ct), shape),
     ops::expand_to(ops::cast_to(b, ct), shape), alpha);
  }
  return out;
}

Tensor scalar_raw(BinaryOp op, const Tensor& a, const Scalar& s, bool scalar_first,
                  const char* name) {
  ops::check_defined(a, name, "self");
  Dtype ct = result_type(a.dtype(), s);
  if (op == BinaryOp::Div) ct = float_if_integral(ct);
  Tensor out = ops::empty_out(a.sizes(), is_comparison(op) ? kBool : ct, a.device());
  if (runs_kernel(out))
    SMP_KERNEL(binary_scalar, a.device())(op, out, ops::cast_to(a, ct), s, scalar_first);
  return out;
}

Tensor unary_raw(UnaryOp op, const Tensor& a, Dtype dt) {
  Tensor out = ops::empty_out(a.sizes(), dt, a.device());
  if (runs_kernel(out)) SMP_KERNEL(unary, a.device())(op, out, ops::cast_to(a, dt));
  return out;
}

// ---- binary ops with autograd -----------------------------------------------------------

Tensor add_impl(const Tensor& a, const Tensor& b, const Scalar& alpha, bool subtract) {
  SMP_PLACE_OP(subtract ? "sub" : "add", a, b);
  const char* name = subtract ? "sub" : "add";
  Tensor out = binary_raw(subtract ? BinaryOp::Sub : BinaryOp::Add, a, b, alpha, name);
  if (out.is_floating_point()) {
    Shape sa = a.sizes(), sb = b.sizes();
    Dtype ta = a.dtype(), tb = b.dtype();
    bool rb = b.requires_grad();
    double k = (subtract ? -1.0 : 1.0) * alpha.to_double();
    autograd::record(subtract ? "SubBackward" : "AddBackward", {a, b}, {out}, [=](const Grads& g) {
      Tensor gb;
      if (rb) gb = grad_for(k == 1.0 ? g[0] : g[0] * k, sb, tb);
      return Grads{grad_for(g[0], sa, ta), gb};
    });
  }
  return out;
}

Tensor mul_impl(const Tensor& a, const Tensor& b) {
  SMP_PLACE_OP("mul", a, b);
  Tensor out = binary_raw(BinaryOp::Mul, a, b, 1, "mul");
  if (out.is_floating_point()) {
    bool ra = a.requires_grad(), rb = b.requires_grad();
    autograd::record("MulBackward", {a, b}, {out}, [a, b, ra, rb](const Grads& g) {
      Tensor ga, gb;
      if (ra) ga = grad_for(g[0] * b, a.sizes(), a.dtype());
      if (rb) gb = grad_for(g[0] * a, b.sizes(), b.dtype());
      return Grads{ga, gb};
    });
  }
  return out;
}

Tensor div_impl(const Tensor& a, const Tensor& b) {
  SMP_PLACE_OP("div", a, b);
  Tensor out = binary_raw(BinaryOp::Div, a, b, 1, "div");
  bool ra = a.requires_grad(), rb = b.requires_grad();
  autograd::record("DivBackward", {a, b}, {out}, [a, b, ra, rb](const Grads& g) {
    Tensor ga, gb;
    Tensor q = g[0] / b;
    if (ra) ga = grad_for(q, a.sizes(), a.dtype());
    if (rb) gb = grad_for(-q * a / b, b.sizes(), b.dtype());
    return Grads{ga, gb};
  });
  return out;
}

Tensor scalar_op(BinaryOp op, const Tensor& a, const Scalar& s, bool scalar_first,
                 const char* name) {
  SMP_PLACE_OP(name, a);
  Tensor out = scalar_raw(op, a, s, scalar_first, name);
  if (!out.is_floating_point()) return out;
  double v = s.to_double();
  switch (op) {
    case BinaryOp::Add:
      autograd::record("AddBackward", {a}, {out}, [](const Grads& g) { return Grads{g[0]}; });
      break;
    case BinaryOp::Sub:
      autograd::record("SubBackward", {a}, {out}, [scalar_first](const Grads& g) {
        return Grads{scalar_first ? -g[0] : g[0]};
      });
      break;
    case BinaryOp::Mul:
      autograd::record("MulBackward", {a}, {out}, [v](const Grads& g) { return Grads{g[0] * v}; });
      break;
    case BinaryOp::Div:
      if (scalar_first) {
        Tensor y = out.detach();
        autograd::record("DivBackward", {a}, {out},
                         [a, y](const Grads& g) { return Grads{-g[0] * y / a}; });
      } else {
        autograd::record("DivBackward", {a}, {out},
                         [v](const Grads& g) { return Grads{g[0] / v}; });
      }
      break;
    default:
      SMP_ASSERT(false, "scalar_op: unexpected op");
  }
  return out;
}

Tensor max_min_impl(const Tensor& a, const Tensor& b, bool is_max) {
  const char* name = is_max ? "maximum" : "minimum";
  SMP_PLACE_OP(name, a, b);
  Tensor out = binary_raw(is_max ? BinaryOp::Maximum : BinaryOp::Minimum, a, b, 1, name);
  if (out.is_floating_point()) {
    autograd::record(is_max ? "MaximumBackward" : "MinimumBackward", {a, b}, {out},
                     [a, b, is_max](const Grads& g) {
                       // Ties split the gradient evenly, as PyTorch does.
                       Dtype t = g[0].dtype();
                       Tensor wa = (is_max ? gt(a, b) : lt(a, b)).to(t) + eq(a, b).to(t) * 0.5;
                       Tensor ga = g[0] * wa;
                       return Grads{grad_for(ga, a.sizes(), a.dtype()),
                                    grad_for(g[0] - ga, b.sizes(), b.dtype())};
                     });
  }
  return out;
}

// ---- in-place binary ops ------------------------------------------------------------------

Tensor& inplace_binary(Tensor& self, BinaryOp op, Tensor other, const Scalar& alpha,
                       const char* name) {
  SMP_PLACE_OP(name, self, other);
  ops::check_defined(self, name, "self");
  ops::check_defined(other, name, "other");
  check_inplace(self, name);
  Tensor s = self;
  align_devices(s, other, name);
  SMP_CHECK(ops::devices_agree(s.device(), self.device()), "{}: expected other on {}, got {}", name,
            self.device().str(), other.device().str());
  Shape shape = broadcast_shapes(self.sizes(), other.sizes(), name);
  SMP_CHECK(shape == self.sizes(), "{}: output with shape {} doesn't match the broadcast shape {}",
            name, shape_str(self.sizes()), shape_str(shape));
  Dtype rt = result_type(self, other);
  if (op == BinaryOp::Div) rt = float_if_integral(rt);
  SMP_CHECK(can_cast(rt, self.dtype()),
            "{}: result type {} can't be cast to the desired output type {}", name, dtype_name(rt),
            dtype_name(self.dtype()));
  if (autograd::any_requires_grad({self, other})) {
    bool rs = self.requires_grad(), ro = other.requires_grad();
    Shape so = other.sizes();
    Dtype to = other.dtype();
    // mul_/div_ need self's value from before the update for other's gradient.
    bool needs_old = (op == BinaryOp::Mul || op == BinaryOp::Div) && ro;
    Tensor old = needs_old ? self.detach().clone() : Tensor();
    // other's value as the kernel sees it; copied when the update would overwrite it (x.mul_(x)).
    Tensor rhs = other.is_alias_of(self) ? other.detach().clone() : other.detach();
    double k = alpha.to_double() * (op == BinaryOp::Sub ? -1.0 : 1.0);
    autograd::record(std::string(name) + "Backward", {self, other}, {self}, [=](const Grads& g) {
      Tensor gs, go;
      switch (op) {
        case BinaryOp::Add:
        case BinaryOp::Sub:
          gs = g[0];
          if (ro) go = grad_for(k == 1.0 ? g[0] : g[0] * k, so, to);
          break;
        case BinaryOp::Mul:
          if (rs) gs = g[0] * rhs;
          if (ro) go = grad_for(g[0] * old, so, to);
          break;
        case BinaryOp::Div:
          if (rs) gs = g[0] / rhs;
          if (ro) go = grad_for(-g[0] * old / (rhs * rhs), so, to);
          break;
        default:
          break;
      }
      return Grads{gs, go};
    });
  }
  if (runs_kernel(self)) {
    SMP_KERNEL(binary, self.device())
    (op, self, self, ops::expand_to(ops::cast_to(other, self.dtype()), shape), alpha);
  }
  self.bump_version();
  return self;
}

Tensor& inplace_scalar(Tensor& self, BinaryOp op, const Scalar& s, const char* name) {
  SMP_PLACE_OP(name, self);
  ops::check_defined(self, name, "self");
  check_inplace(self, name);
  Dtype rt = result_type(self.dtype(), s);
  if (op == BinaryOp::Div) rt = float_if_integral(rt);
  SMP_CHECK(can_cast(rt, self.dtype()),
            "{}: result type {} can't be cast to the desired output type {}", name, dtype_name(rt),
            dtype_name(self.dtype()));
  if (autograd::any_requires_grad({self})) {
    double v = s.to_double();
    autograd::record(std::string(name) + "Backward", {self}, {self}, [op, v](const Grads& g) {
      if (op == BinaryOp::Mul) return Grads{g[0] * v};
      if (op == BinaryOp::Div) return Grads{g[0] / v};
      return Grads{g[0]};
    });
  }
  if (runs_kernel(self)) SMP_KERNEL(binary_scalar, self.device())(op, self, self, s, false);
  self.bump_version();
  return self;
}

// ---- unary ops with autograd ----------------------------------------------------------

// Float-only math (exp, log, ...): integer inputs compute in the default float type.
Tensor float_unary(UnaryOp op, const Tensor& a, const char* name) {
  ops::check_defined(a, name, "self");
  return unary_raw(op, a, float_if_integral(a.dtype()));
}

// g · op'(x) through the op's fused backward kernel; `saved` is x or y (unary_table.h).
Tensor unary_backward_raw(UnaryOp op, Tensor g, Tensor saved) {
  const char* name = "unary backward";
  align_devices(g, saved, name);
  Shape shape = broadcast_shapes(g.sizes(), saved.sizes(), name);
  Dtype ct = result_type(g, saved);
  Tensor out = ops::empty_out(shape, ct, g.device());
  if (runs_kernel(out)) {
    SMP_KERNEL(unary_backward, g.device())
    (op, out, ops::expand_to(ops::cast_to(g, ct), shape),
     ops::expand_to(ops::cast_to(saved, ct), shape));
  }
  return out;
}

// Whether op's fused backward reads the forward output (else the input).
bool backward_saves_output(UnaryOp op) {
  switch (op) {
#define SMP_UNARY_CASE(Name, ...)                                    \
  case UnaryOp::Name:                                                \
    SMP_ASSERT(kernels::unary::has_backward_v<kernels::unary::Name>, \
               "unary op " #Name " has no fused backward");          \
    return kernels::unary::saves_output<kernels::unary::Name>();
    SMP_UNARY_OPS(SMP_UNARY_CASE)
#undef SMP_UNARY_CASE
  }
  SMP_ASSERT(false, "unknown unary op {}", static_cast<int>(op));
  return false;
}

// Activations and other float ops whose backward is one fused kernel on (grad, x) or
// (grad, y), as the op's entry in unary_table.h says.
Tensor activation(UnaryOp op, const Tensor& a, const char* name, const char* node) {
  Tensor out = float_unary(op, a, name);
  Tensor saved = backward_saves_output(op) ? out.detach() : a;
  autograd::record(node, {a}, {out}, [saved, op](const Grads& g) {
    return Grads{unary_backward_raw(op, g[0], saved)};
  });
  return out;
}

Tensor comparison(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
  SMP_PLACE_OP(name, a, b);
  return binary_raw(op, a, b, 1, name);
}

Tensor comparison(BinaryOp op, const Tensor& a, const Scalar& s, const char* name) {
  SMP_PLACE_OP(name, a);
  return scalar_raw(op, a, s, false, name);
}

Tensor where_impl(const Tensor& cond, Tensor a, Tensor b) {
  ops::check_defined(cond, "where", "condition");
  ops::check_defined(a, "where", "input");
  ops::check_defined(b, "where", "other");
  SMP_CHECK(cond.dtype() == kBool || cond.dtype() == kUInt8,
            "where: expected a bool condition, got {}", dtype_name(cond.dtype()));
  align_devices(a, b, "where");
  Device dev = ops::common_device({cond, a, b}, "where");
  Shape shape =
      broadcast_shapes(cond.sizes(), broadcast_shapes(a.sizes(), b.sizes(), "where"), "where");
  Dtype dt = result_type(a, b);
  Tensor out = ops::empty_out(shape, dt, dev);
  if (runs_kernel(out)) {
    SMP_KERNEL(where, dev)
    (out, ops::expand_to(ops::cast_to(cond, kBool), shape),
     ops::expand_to(ops::cast_to(a, dt), shape), ops::expand_to(ops::cast_to(b, dt), shape));
  }
  if (out.is_floating_point()) {
    bool ra = a.requires_grad(), rb = b.requires_grad();
    Shape sa = a.sizes(), sb = b.sizes();
    Dtype ta = a.dtype(), tb = b.dtype();
    Tensor c = cond.dtype() == kBool ? cond : cond.to(kBool);
    autograd::record("WhereBackward", {a, b}, {out}, [=](const Grads& g) {
      Tensor ga, gb;
      if (ra) ga = grad_for(where(c, g[0], Scalar(0.0)), sa, ta);
      if (rb) gb = grad_for(where(c, Scalar(0.0), g[0]), sb, tb);
      return Grads{ga, gb};
    });
  }
  return out;
}

Tensor clamp_impl(const Tensor& a, std::optional<Scalar> min, std::optional<Scalar> max) {
  SMP_PLACE_OP("clamp", a);
  ops::check_defined(a, "clamp", "self");
  SMP_CHECK(min || max, "clamp: at least one of 'min' or 'max' must be given");
  Dtype dt = a.dtype();
  if (min) dt = result_type(dt, *min);
  if (max) dt = result_type(dt, *max);
  Tensor out = ops::empty_out(a.sizes(), dt, a.device());
  if (runs_kernel(out)) SMP_KERNEL(clamp, a.device())(out, ops::cast_to(a, dt), min, max);
  if (out.is_floating_point()) {
    autograd::record("ClampBackward", {a}, {out}, [a, min, max](const Grads& g) {
      // The gradient passes where min <= x <= max.
      Tensor r = g[0];
      if (min) r = where(a.lt(*min), Scalar(0.0), r);
      if (max) r = where(a.gt(*max), Scalar(0.0), r);
      return Grads{r};
    });
  }
  return out;
}

}  // namespace

// ---- public API --------------------------------------------------------------------------

Tensor add(const Tensor& a, const Tensor& b, const Scalar& alpha) {
  return add_impl(a, b, alpha, false);
}
Tensor sub(const Tensor& a, const Tensor& b, const Scalar& alpha) {
  return add_impl(a, b, alpha, true);
}
Tensor mul(const Tensor& a, const Tensor& b) { return mul_impl(a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return div_impl(a, b); }

Tensor Tensor::add(const Tensor& other, const Scalar& alpha) const {
  return add_impl(*this, other, alpha, false);
}
Tensor Tensor::add(const Scalar& other) const {
  return scalar_op(BinaryOp::Add, *this, other, false, "add");
}
Tensor Tensor::sub(const Tensor& other, const Scalar& alpha) const {
  return add_impl(*this, other, alpha, true);
}
Tensor Tensor::sub(const Scalar& other) const {
  return scalar_op(BinaryOp::Sub, *this, other, false, "sub");
}
Tensor Tensor::mul(const Tensor& other) const { return mul_impl(*this, other); }
Tensor Tensor::mul(const Scalar& other) const {
  return scalar_op(BinaryOp::Mul, *this, other, false, "mul");
}
Tensor Tensor::div(const Tensor& other) const { return div_impl(*this, other); }
Tensor Tensor::div(const Scalar& other) const {
  return scalar_op(BinaryOp::Div, *this, other, false, "div");
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add_impl(a, b, 1, false); }
Tensor operator-(const Tensor& a, const Tensor& b) { return add_impl(a, b, 1, true); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul_impl(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div_impl(a, b); }
Tensor operator+(const Tensor& a, const Scalar& b) {
  return scalar_op(BinaryOp::Add, a, b, false, "add");
}
Tensor operator-(const Tensor& a, const Scalar& b) {
  return scalar_op(BinaryOp::Sub, a, b, false, "sub");
}
Tensor operator*(const Tensor& a, const Scalar& b) {
  return scalar_op(BinaryOp::Mul, a, b, false, "mul");
}
Tensor operator/(const Tensor& a, const Scalar& b) {
  return scalar_op(BinaryOp::Div, a, b, false, "div");
}
Tensor operator+(const Scalar& a, const Tensor& b) {
  return scalar_op(BinaryOp::Add, b, a, true, "add");
}
Tensor operator-(const Scalar& a, const Tensor& b) {
  return scalar_op(BinaryOp::Sub, b, a, true, "sub");
}
Tensor operator*(const Scalar& a, const Tensor& b) {
  return scalar_op(BinaryOp::Mul, b, a, true, "mul");
}
Tensor operator/(const Scalar& a, const Tensor& b) {
  return scalar_op(BinaryOp::Div, b, a, true, "div");
}
Tensor operator-(const Tensor& a) { return a.neg(); }

Tensor& Tensor::add_(const Tensor& other, const Scalar& alpha) {
  return inplace_binary(*this, BinaryOp::Add, other, alpha, "add_");
}
Tensor& Tensor::add_(const Scalar& other) {
  return inplace_scalar(*this, BinaryOp::Add, other, "add_");
}
Tensor& Tensor::sub_(const Tensor& other, const Scalar& alpha) {
  return inplace_binary(*this, BinaryOp::Sub, other, alpha, "sub_");
}
Tensor& Tensor::sub_(const Scalar& other) {
  return inplace_scalar(*this, BinaryOp::Sub, other, "sub_");
}
Tensor& Tensor::mul_(const Tensor& other) {
  return inplace_binary(*this, BinaryOp::Mul, other, 1, "mul_");
}
Tensor& Tensor::mul_(const Scalar& other) {
  return inplace_scalar(*this, BinaryOp::Mul, other, "mul_");
}
Tensor& Tensor::div_(const Tensor& other) {
  return inplace_binary(*this, BinaryOp::Div, other, 1, "div_");
}
Tensor& Tensor::div_(const Scalar& other) {
  return inplace_scalar(*this, BinaryOp::Div, other, "div_");
}

Tensor& operator+=(Tensor& a, const Tensor& b) { return a.add_(b); }
Tensor& operator-=(Tensor& a, const Tensor& b) { return a.sub_(b); }
Tensor& operator*=(Tensor& a, const Tensor& b) { return a.mul_(b); }
Tensor& operator/=(Tensor& a, const Tensor& b) { return a.div_(b); }
Tensor& operator+=(Tensor& a, const Scalar& b) { return a.add_(b); }
Tensor& operator-=(Tensor& a, const Scalar& b) { return a.sub_(b); }
Tensor& operator*=(Tensor& a, const Scalar& b) { return a.mul_(b); }
Tensor& operator/=(Tensor& a, const Scalar& b) { return a.div_(b); }

Tensor Tensor::maximum(const Tensor& other) const { return max_min_impl(*this, other, true); }
Tensor Tensor::minimum(const Tensor& other) const { return max_min_impl(*this, other, false); }
Tensor maximum(const Tensor& a, const Tensor& b) { return max_min_impl(a, b, true); }
Tensor minimum(const Tensor& a, const Tensor& b) { return max_min_impl(a, b, false); }

// ---- unary ------------------------------------------------------------------------------

Tensor Tensor::neg() const {
  SMP_PLACE_OP("neg", *this);
  ops::check_defined(*this, "neg", "self");
  SMP_CHECK(dtype() != kBool, "neg: negation of a bool tensor is not supported; use logical not");
  Tensor out = unary_raw(UnaryOp::Neg, *this, dtype());
  autograd::record("NegBackward", {*this}, {out}, [](const Grads& g) { return Grads{-g[0]}; });
  return out;
}

Tensor Tensor::exp() const {
  SMP_PLACE_OP("exp", *this);
  Tensor out = float_unary(UnaryOp::Exp, *this, "exp");
  Tensor y = out.detach();
  autograd::record("ExpBackward", {*this}, {out}, [y](const Grads& g) { return Grads{g[0] * y}; });
  return out;
}

Tensor Tensor::log() const {
  SMP_PLACE_OP("log", *this);
  Tensor out = float_unary(UnaryOp::Log, *this, "log");
  Tensor x = *this;
  autograd::record("LogBackward", {x}, {out}, [x](const Grads& g) { return Grads{g[0] / x}; });
  return out;
}

Tensor Tensor::sqrt() const {
  SMP_PLACE_OP("sqrt", *this);
  Tensor out = float_unary(UnaryOp::Sqrt, *this, "sqrt");
  Tensor y = out.detach();
  autograd::record("SqrtBackward", {*this}, {out},
                   [y](const Grads& g) { return Grads{g[0] / (y * 2.0)}; });
  return out;
}

Tensor Tensor::rsqrt() const {
  SMP_PLACE_OP("rsqrt", *this);
  Tensor out = float_unary(UnaryOp::Rsqrt, *this, "rsqrt");
  Tensor y = out.detach();
  autograd::record("RsqrtBackward", {*this}, {out},
                   [y](const Grads& g) { return Grads{g[0] * (y * y * y) * -0.5}; });
  return out;
}

Tensor Tensor::abs() const {
  SMP_PLACE_OP("abs", *this);
  ops::check_defined(*this, "abs", "self");
  Tensor out = unary_raw(UnaryOp::Abs, *this, dtype());
  Tensor x = *this;
  autograd::record("AbsBackward", {x}, {out}, [x](const Grads& g) {
    return Grads{g[0] * unary_raw(UnaryOp::Sign, x, x.dtype())};
  });
  return out;
}

Tensor Tensor::square() const {
  SMP_PLACE_OP("square", *this);
  ops::check_defined(*this, "square", "self");
  Tensor out = unary_raw(UnaryOp::Square, *this, dtype() == kBool ? kInt64 : dtype());
  Tensor x = *this;
  autograd::record("SquareBackward", {x}, {out},
                   [x](const Grads& g) { return Grads{g[0] * x * 2.0}; });
  return out;
}

Tensor Tensor::pow(const Scalar& exponent) const {
  SMP_PLACE_OP("pow", *this);
  ops::check_defined(*this, "pow", "self");
  Tensor x = *this;
  double e = exponent.to_double();
  Tensor out;
  if (e == 2.0 && result_type(dtype(), exponent) == dtype())
    out = unary_raw(UnaryOp::Square, x, dtype());
  else if (e == 0.5 && is_floating_point())
    out = unary_raw(UnaryOp::Sqrt, x, dtype());
  else
    out = scalar_raw(BinaryOp::Pow, x, exponent, false, "pow");
  if (out.is_floating_point()) {
    autograd::record("PowBackward", {x}, {out}, [x, e](const Grads& g) {
      if (e == 0.0) return Grads{zeros_like(g[0])};
      if (e == 1.0) return Grads{g[0]};
      if (e == 2.0) return Grads{g[0] * x * 2.0};
      return Grads{g[0] * x.pow(e - 1.0) * e};
    });
  }
  return out;
}

Tensor Tensor::clamp(std::optional<Scalar> min, std::optional<Scalar> max) const {
  return clamp_impl(*this, min, max);
}
Tensor Tensor::clamp_min(const Scalar& min) const { return clamp_impl(*this, min, std::nullopt); }
Tensor Tensor::clamp_max(const Scalar& max) const { return clamp_impl(*this, std::nullopt, max); }

Tensor Tensor::relu() const {
  SMP_PLACE_OP("relu", *this);
  ops::check_defined(*this, "relu", "self");
  if (!is_floating_point()) return unary_raw(UnaryOp::Relu, *this, dtype());
  return activation(UnaryOp::Relu, *this, "relu", "ReluBackward");
}
Tensor Tensor::sigmoid() const {
  SMP_PLACE_OP("sigmoid", *this);
  return activation(UnaryOp::Sigmoid, *this, "sigmoid", "SigmoidBackward");
}
Tensor Tensor::tanh() const {
  SMP_PLACE_OP("tanh", *this);
  return activation(UnaryOp::Tanh, *this, "tanh", "TanhBackward");
}
Tensor Tensor::gelu(const std::string& approximate) const {
  SMP_PLACE_OP("gelu", *this);
  SMP_CHECK(approximate == "none" || approximate == "tanh",
            "gelu: approximate must be \"none\" or \"tanh\", got \"{}\"", approximate);
  if (approximate == "tanh") return activation(UnaryOp::GeluTanh, *this, "gelu", "GeluBackward");
  return activation(UnaryOp::Gelu, *this, "gelu", "GeluBackward");
}

Tensor neg(const Tensor& a) { return a.neg(); }
Tensor exp(const Tensor& a) { return a.exp(); }
Tensor log(const Tensor& a) { return a.log(); }
Tensor sqrt(const Tensor& a) { return a.sqrt(); }
Tensor rsqrt(const Tensor& a) { return a.rsqrt(); }
Tensor abs(const Tensor& a) { return a.abs(); }
Tensor pow(const Tensor& a, const Scalar& exponent) { return a.pow(exponent); }
Tensor clamp(const Tensor& a, std::optional<Scalar> min, std::optional<Scalar> max) {
  return a.clamp(min, max);
}
Tensor relu(const Tensor& a) { return a.relu(); }
Tensor sigmoid(const Tensor& a) { return a.sigmoid(); }
Tensor tanh(const Tensor& a) { return a.tanh(); }
Tensor gelu(const Tensor& a, const std::string& approximate) { return a.gelu(approximate); }

// The functions of SMP_UNARY_FUNCTIONS (declared in <smp/engine/unary_ops.h>).
#define SMP_UNARY_FUNCTION(Name, name)                                          \
  static_assert(kernels::unary::has_backward_v<kernels::unary::Name>,           \
                #name ": an op of SMP_UNARY_FUNCTIONS needs a fused backward"); \
  Tensor name(const Tensor& a) {                                                \
    SMP_PLACE_OP(#name, a);                                                     \
    return activation(UnaryOp::Name, a, #name, #Name "Backward");               \
  }
SMP_UNARY_FUNCTIONS(SMP_UNARY_FUNCTION)
#undef SMP_UNARY_FUNCTION

// ---- comparisons (bool output, no gradient) ------------------------------------------------

Tensor Tensor::eq(const Tensor& o) const { return comparison(BinaryOp::Eq, *this, o, "eq"); }
Tensor Tensor::eq(const Scalar& o) const { return comparison(BinaryOp::Eq, *this, o, "eq"); }
Tensor Tensor::ne(const Tensor& o) const { return comparison(BinaryOp::Ne, *this, o, "ne"); }
Tensor Tensor::ne(const Scalar& o) const { return comparison(BinaryOp::Ne, *this, o, "ne"); }
Tensor Tensor::lt(const Tensor& o) const { return comparison(BinaryOp::Lt, *this, o, "lt"); }
Tensor Tensor::lt(const Scalar& o) const { return comparison(BinaryOp::Lt, *this, o, "lt"); }
Tensor Tensor::le(const Tensor& o) const { return comparison(BinaryOp::Le, *this, o, "le"); }
Tensor Tensor::le(const Scalar& o) const { return comparison(BinaryOp::Le, *this, o, "le"); }
Tensor Tensor::gt(const Tensor& o) const { return comparison(BinaryOp::Gt, *this, o, "gt"); }
Tensor Tensor::gt(const Scalar& o) const { return comparison(BinaryOp::Gt, *this, o, "gt"); }
Tensor Tensor::ge(const Tensor& o) const { return comparison(BinaryOp::Ge, *this, o, "ge"); }
Tensor Tensor::ge(const Scalar& o) const { return comparison(BinaryOp::Ge, *this, o, "ge"); }
Tensor eq(const Tensor& a, const Tensor& b) { return a.eq(b); }
Tensor ne(const Tensor& a, const Tensor& b) { return a.ne(b); }
Tensor lt(const Tensor& a, const Tensor& b) { return a.lt(b); }
Tensor le(const Tensor& a, const Tensor& b) { return a.le(b); }
Tensor gt(const Tensor& a, const Tensor& b) { return a.gt(b); }
Tensor ge(const Tensor& a, const Tensor& b) { return a.ge(b); }

// ---- where ----------------------------------------------------------------------------------

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  SMP_PLACE_OP("where", cond, a, b);
  return where_impl(cond, a, b);
}
Tensor where(const Tensor& cond, const Tensor& a, const Scalar& b) {
  SMP_PLACE_OP("where", cond, a);
  ops::check_defined(a, "where", "input");
  return where_impl(cond, a,
                    scalar_tensor(b, TensorOptions(result_type(a.dtype(), b)).device(a.device())));
}
Tensor where(const Tensor& cond, const Scalar& a, const Tensor& b) {
  SMP_PLACE_OP("where", cond, b);
  ops::check_defined(b, "where", "other");
  return where_impl(
      cond, scalar_tensor(a, TensorOptions(result_type(b.dtype(), a)).device(b.device())), b);
}

// ---- in-place pointwise updates (optimizers) ----------------------------------------------

namespace {
Tensor& addc_impl(Tensor& self, const Tensor& t1, const Tensor& t2, const Scalar& value,
                  bool divide) {
  const char* name = divide ? "addcdiv_" : "addcmul_";
  SMP_PLACE_OP(name, self, t1, t2);
  ops::check_defined(self, name, "self");
  ops::check_defined(t1, name, "tensor1");
  ops::check_defined(t2, name, "tensor2");
  check_inplace(self, name);
  ops::common_device({self, t1, t2}, name);
  Shape shape =
      broadcast_shapes(self.sizes(), broadcast_shapes(t1.sizes(), t2.sizes(), name), name);
  SMP_CHECK(shape == self.sizes(), "{}: output with shape {} doesn't match the broadcast shape {}",
            name, shape_str(self.sizes()), shape_str(shape));
  SMP_CHECK(self.is_floating_point(), "{}: expected a floating-point self, got {}", name,
            dtype_name(self.dtype()));
  if (autograd::any_requires_grad({self, t1, t2})) {
    double v = value.to_double();
    bool r1 = t1.requires_grad(), r2 = t2.requires_grad();
    autograd::record(divide ? "AddcdivBackward" : "AddcmulBackward", {self, t1, t2}, {self},
                     [=](const Grads& g) {
                       Tensor g1, g2;
                       if (divide) {
                         if (r1) g1 = grad_for(g[0] * v / t2, t1.sizes(), t1.dtype());
                         if (r2) g2 = grad_for(-g[0] * v * t1 / (t2 * t2), t2.sizes(), t2.dtype());
                       } else {
                         if (r1) g1 = grad_for(g[0] * v * t2, t1.sizes(), t1.dtype());
                         if (r2) g2 = grad_for(g[0] * v * t1, t2.sizes(), t2.dtype());
                       }
                       return Grads{g[0], g1, g2};
                     });
  }
  if (runs_kernel(self)) {
    Tensor a = ops::expand_to(ops::cast_to(t1, self.dtype()), shape);
    Tensor b = ops::expand_to(ops::cast_to(t2, self.dtype()), shape);
    if (divide)
      SMP_KERNEL(addcdiv, self.device())(self, self, a, b, value);
    else
      SMP_KERNEL(addcmul, self.device())(self, self, a, b, value);
  }
  self.bump_version();
  return self;
}
}  // namespace

Tensor& Tensor::addcmul_(const Tensor& t1, const Tensor& t2, const Scalar& value) {
  return addc_impl(*this, t1, t2, value, false);
}
Tensor& Tensor::addcdiv_(const Tensor& t1, const Tensor& t2, const Scalar& value) {
  return addc_impl(*this, t1, t2, value, true);
}

Tensor& Tensor::sqrt_() {
  SMP_PLACE_OP("sqrt_", *this);
  ops::check_defined(*this, "sqrt_", "self");
  check_inplace(*this, "sqrt_");
  SMP_CHECK(is_floating_point(), "sqrt_: expected a floating-point tensor, got {}",
            dtype_name(dtype()));
  if (autograd::any_requires_grad({*this})) {
    Tensor y = detach();  // holds the output once the kernel has run
    autograd::record("SqrtBackward", {*this}, {*this},
                     [y](const Grads& g) { return Grads{g[0] / (y * 2.0)}; });
  }
  if (runs_kernel(*this)) SMP_KERNEL(unary, device())(UnaryOp::Sqrt, *this, *this);
  bump_version();
  return *this;
}

Tensor& Tensor::clamp_(std::optional<Scalar> min, std::optional<Scalar> max) {
  SMP_PLACE_OP("clamp_", *this);
  ops::check_defined(*this, "clamp_", "self");
  check_inplace(*this, "clamp_");
  SMP_CHECK(min || max, "clamp_: at least one of 'min' or 'max' must be given");
  if (autograd::any_requires_grad({*this})) {
    // The mask must come from the input, so keep a copy of it.
    Tensor x = detach().clone();
    autograd::record("ClampBackward", {*this}, {*this}, [x, min, max](const Grads& g) {
      Tensor r = g[0];
      if (min) r = where(x.lt(*min), Scalar(0.0), r);
      if (max) r = where(x.gt(*max), Scalar(0.0), r);
      return Grads{r};
    });
  }
  if (runs_kernel(*this)) SMP_KERNEL(clamp, device())(*this, *this, min, max);
  bump_version();
  return *this;
}

}  // namespace smp
