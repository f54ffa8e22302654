// Matrix products: mm, bmm, addmm, linear and matmul (which folds or batches onto the first
// three). Backward of a product is two more products with transposed views, which the
// GEMM kernel reads without copying.
#include <algorithm>

#include "ops/op_utils.h"

namespace smp {

using ops::shape_str;

namespace {

void check_float_operands(const Tensor& a, const Tensor& b, const char* op) {
  ops::check_defined(a, op, "input");
  ops::check_defined(b, op, "other");
  SMP_CHECK(a.dtype() == b.dtype(),
            "{}: expected both operands to have the same dtype, got {} and {}", op,
            dtype_name(a.dtype()), dtype_name(b.dtype()));
  SMP_CHECK(a.is_floating_point(), "{}: expected floating-point operands, got {}", op,
            dtype_name(a.dtype()));
}

bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }

// out = beta·self + alpha·(a · b) for 2-D a, b; self undefined or broadcastable to the
// result. The one recorded 2-D product every public entry point ends in.
Tensor addmm_impl(const Tensor& self, const Tensor& a, const Tensor& b, double beta, double alpha,
                  const char* op) {
  check_float_operands(a, b, op);
  SMP_CHECK(a.dim() == 2 && b.dim() == 2, "{}: expected 2-D matrices, got {} and {}", op,
            shape_str(a.sizes()), shape_str(b.sizes()));
  SMP_CHECK(a.size(1) == b.size(0), "{}: cannot multiply {}x{} by {}x{}", op, a.size(0), a.size(1),
            b.size(0), b.size(1));
  Device dev = ops::common_device({self, a, b}, op);
  Shape out_shape{a.size(0), b.size(1)};
  Tensor self_x;
  if (self.defined()) {
    SMP_CHECK(self.dtype() == a.dtype(), "{}: expected self to have dtype {}, got {}", op,
              dtype_name(a.dtype()), dtype_name(self.dtype()));
    SMP_CHECK(broadcast_shapes(self.sizes(), out_shape, op) == out_shape,
              "{}: self of shape {} cannot broadcast to the product's shape {}", op,
              shape_str(self.sizes()), shape_str(out_shape));
    self_x = ops::expand_to(self, out_shape);
  }
  Tensor out = ops::empty_out(out_shape, a.dtype(), dev);
  bool ga = wants_grad(a), gb = wants_grad(b), gs = wants_grad(self);
  Shape self_shape = self.defined() ? self.sizes() : Shape{};
  Tensor ad = a.detach(), bd = b.detach();
  autograd::record("AddmmBackward", {self, a, b}, {out}, [=](const std::vector<Tensor>& g) {
    const Tensor& go = g[0];
    Tensor gself, g_a, g_b;
    if (gs) gself = sum_to(beta == 1.0 ? go : go * beta, self_shape);
    if (ga) g_a = addmm_impl(Tensor(), go, bd.t(), 0.0, alpha, "mm");
    if (gb) g_b = addmm_impl(Tensor(), ad.t(), go, 0.0, alpha, "mm");
    return std::vector<Tensor>{gself, g_a, g_b};
  });
  if (out.is_meta() || out.numel() == 0) return out;
  SMP_KERNEL(addmm, dev)(out, self_x, a, b, Scalar(beta), Scalar(alpha));
  return out;
}

}  // namespace

Tensor mm(const Tensor& a, const Tensor& b) {
  SMP_PLACE_OP("mm", a, b);
  return addmm_impl(Tensor(), a, b, 0.0, 1.0, "mm");
}
Tensor Tensor::mm(const Tensor& other) const { return smp::mm(*this, other); }

Tensor addmm(const Tensor& self, const Tensor& m1, const Tensor& m2, const Scalar& beta,
             const Scalar& alpha) {
  SMP_PLACE_OP("addmm", self, m1, m2);
  ops::check_defined(self, "addmm", "self");
  return addmm_impl(self, m1, m2, beta.to_double(), alpha.to_double(), "addmm");
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  SMP_PLACE_OP("bmm", a, b);
  check_float_operands(a, b, "bmm");
  SMP_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected 3-D batches of matrices, got {} and {}",
            shape_str(a.sizes()), shape_str(b.sizes()));
  SMP_CHECK(a.size(0) == b.size(0), "bmm: batch sizes differ, {} and {}", a.size(0), b.size(0));
  SMP_CHECK(a.size(2) == b.size(1), "bmm: cannot multiply {}x{} by {}x{} matrices", a.size(1),
            a.size(2), b.size(1), b.size(2));
  Device dev = ops::common_device({a, b}, "bmm");
  Tensor out = ops::empty_out({a.size(0), a.size(1), b.size(2)}, a.dtype(), dev);
  bool ga = wants_grad(a), gb = wants_grad(b);
  Tensor ad = a.detach(), bd = b.detach();
  autograd::record("BmmBackward", {a, b}, {out}, [=](const std::vector<Tensor>& g) {
    Tensor g_a, g_b;
    if (ga) g_a = smp::bmm(g[0], bd.transpose(1, 2));
    if (gb) g_b = smp::bmm(ad.transpose(1, 2), g[0]);
    return std::vector<Tensor>{g_a, g_b};
  });
  if (out.is_meta() || out.numel() == 0) return out;
  if (a.size(2) == 0) {
    ops::fill_(out, 0);
    return out;
  }
  SMP_KERNEL(bmm, dev)(out, a, b);
  return out;
}
Tensor Tensor::bmm(const Tensor& other) const { return smp::bmm(*this, other); }

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  SMP_PLACE_OP("linear", x, weight, bias);
  check_float_operands(x, weight, "linear");
  SMP_CHECK(weight.dim() == 2, "linear: expected a 2-D weight (out_features, in_features), got {}",
            shape_str(weight.sizes()));
  SMP_CHECK(x.dim() >= 1, "linear: expected an input with at least 1 dim, got a 0-dim tensor");
  int64_t in = weight.size(1), outf = weight.size(0);
  SMP_CHECK(x.size(-1) == in,
            "linear: input's last dim {} does not match in_features {} of weight {} (input {})",
            x.size(-1), in, shape_str(weight.sizes()), shape_str(x.sizes()));
  if (bias.defined()) {
    SMP_CHECK(bias.dim() == 1 && bias.size(0) == outf,
              "linear: expected a bias of shape [{}], got {}", outf, shape_str(bias.sizes()));
    SMP_CHECK(bias.dtype() == x.dtype(), "linear: expected bias of dtype {}, got {}",
              dtype_name(x.dtype()), dtype_name(bias.dtype()));
  }
  Device dev = ops::common_device({x, weight, bias}, "linear");
  Shape out_shape = x.sizes();
  out_shape.back() = outf;
  int64_t rows = ops::numel_of(x.sizes()) / std::max<int64_t>(in, 1);
  if (in == 0) rows = ops::numel_of(out_shape) / std::max<int64_t>(outf, 1);
  // All leading dims become the rows of one GEMM: (rows, in) · (in, out).
  Tensor x2;
  {
    NoGradGuard ng;
    x2 = x.detach().reshape({rows, in});
  }
  Tensor out = ops::empty_out(out_shape, x.dtype(), dev);
  bool gx = wants_grad(x), gw = wants_grad(weight), gbias = wants_grad(bias);
  Tensor wd = weight.detach();
  Shape x_shape = x.sizes();
  autograd::record("LinearBackward", {x, weight, bias}, {out}, [=](const std::vector<Tensor>& g) {
    Tensor g2 = g[0].reshape({rows, outf});
    Tensor g_x, g_w, g_b;
    if (gx) g_x = smp::mm(g2, wd).reshape(x_shape);
    if (gw) g_w = smp::mm(g2.t(), x2);
    if (gbias) g_b = g2.sum({0});
    return std::vector<Tensor>{g_x, g_w, g_b};
  });
  if (out.is_meta() || out.numel() == 0) return out;
  Tensor out2 = ops::make_view(out, {rows, outf}, {outf, 1}, 0);
  Tensor bias_x = bias.defined() ? ops::expand_to(bias, {rows, outf}) : Tensor();
  SMP_KERNEL(addmm, dev)(out2, bias_x, x2, wd.t(), Scalar(1.0), Scalar(1.0));
  return out;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  SMP_PLACE_OP("matmul", a, b);
  check_float_operands(a, b, "matmul");
  int64_t da = a.dim(), db = b.dim();
  SMP_CHECK(da >= 1 && db >= 1, "matmul: both arguments need at least 1 dim, got {} and {}",
            shape_str(a.sizes()), shape_str(b.sizes()));
  auto mismatch = [&] {
    SMP_ERROR("matmul: cannot multiply {} by {} (inner dims {} and {} differ)",
              shape_str(a.sizes()), shape_str(b.sizes()), a.size(-1),
              db == 1 ? b.size(0) : b.size(-2));
  };
  if ((db == 1 && a.size(-1) != b.size(0)) || (db >= 2 && a.size(-1) != b.size(-2))) mismatch();
  if (da == 1 && db == 1) return smp::mm(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  if (da == 2 && db == 1) return smp::mm(a, b.unsqueeze(1)).squeeze(1);
  if (da == 1 && db == 2) return smp::mm(a.unsqueeze(0), b).squeeze(0);
  if (da == 2 && db == 2) return smp::mm(a, b);
  if (da >= 3 && db <= 2) {
    // Fold the batch into the rows of one GEMM.
    Shape out_shape(a.sizes().begin(), a.sizes().end() - 1);
    Tensor b2 = db == 1 ? b.unsqueeze(1) : b;
    if (db == 2) out_shape.push_back(b.size(1));
    return smp::mm(a.reshape({-1, a.size(-1)}), b2).reshape(out_shape);
  }
  // Batched: broadcast the batch dims, then one bmm.
  Tensor a3 = da == 1 ? a.unsqueeze(0) : a;
  Tensor b3 = db == 1 ? b.unsqueeze(1) : b;
  Shape ba(a3.sizes().begin(), a3.sizes().end() - 2), bb(b3.sizes().begin(), b3.sizes().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  int64_t n = a3.size(-2), k = a3.size(-1), p = b3.size(-1);
  int64_t nb = ops::numel_of(batch);
  Shape ea = batch, eb = batch;
  ea.insert(ea.end(), {n, k});
  eb.insert(eb.end(), {k, p});
  Tensor ae = ba == batch ? a3 : a3.expand(ea);
  Tensor be = bb == batch ? b3 : b3.expand(eb);
  Tensor out = smp::bmm(ae.reshape({nb, n, k}), be.reshape({nb, k, p}));
  Shape out_shape = batch;
  if (da > 1) out_shape.push_back(n);
  if (db > 1) out_shape.push_back(p);
  return out.reshape(out_shape);
}
Tensor Tensor::matmul(const Tensor& other) const { return smp::matmul(*this, other); }

}  // namespace smp
