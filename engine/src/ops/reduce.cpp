// Reductions: sum, mean, max/min (whole tensor and per dim with indices), argmax, amax, var,
// and sum_to (the inverse of broadcasting, used by every broadcasting op's backward).
#include <smp/engine/autograd.h>

#include "ops/op_utils.h"

namespace smp {

using kernels::ReduceOp;
using ops::shape_str;

namespace {

using Grads = std::vector<Tensor>;

// Output shape with size 1 at reduced dims (keepdim) and with them removed.
struct ReducedShape {
  Shape keep;
  Shape drop;
};

ReducedShape reduced_shape(const Shape& in, const IntList& dims) {
  ReducedShape r;
  r.keep = in;
  std::vector<bool> red(in.size(), false);
  for (auto d : dims) red[static_cast<size_t>(d)] = true;
  for (size_t d = 0; d < in.size(); ++d) {
    if (red[d])
      r.keep[d] = 1;
    else
      r.drop.push_back(in[d]);
  }
  return r;
}

// Runs the reduce kernel into a keepdim-shaped output; returns it viewed as the requested
// shape. No autograd.
Tensor reduce_raw(ReduceOp op, const Tensor& in, const IntList& dims, bool keepdim, Dtype out_dtype,
                  const char* name) {
  ReducedShape rs = reduced_shape(in.sizes(), dims);
  Tensor x = ops::cast_to(in, out_dtype);
  Tensor out = ops::empty_out(rs.keep, out_dtype, in.device());
  if (!out.is_meta() && out.numel() > 0) {
    if (in.numel() == 0) {
      SMP_CHECK(op == ReduceOp::Sum || op == ReduceOp::Mean || op == ReduceOp::Prod,
                "{}: cannot reduce an empty tensor of shape {} with no identity", name,
                shape_str(in.sizes()));
      ops::fill_(out, op == ReduceOp::Sum    ? Scalar(0)
                      : op == ReduceOp::Prod ? Scalar(1)
                                             : Scalar(std::nan("")));
    } else if (dims.empty()) {  // 0-dim input
      ops::copy_into(out, x);
    } else {
      SMP_KERNEL(reduce, in.device())(op, out, x, dims);
    }
  }
  if (keepdim) return out;
  return ops::make_view(out, rs.drop, ops::contiguous_strides(rs.drop), 0);
}

Dtype sum_dtype(Dtype t) { return is_integral(t, true) ? kInt64 : t; }

// The gradient of a reduced output broadcast back over the input's shape.
Tensor expand_grad(const Tensor& g, const Shape& keep_shape, const Shape& in_shape) {
  return g.reshape(keep_shape).expand(in_shape);
}

Tensor sum_impl(const Tensor& a, const IntList& dims_in, bool keepdim) {
  SMP_PLACE_OP("sum", a);
  ops::check_defined(a, "sum", "self");
  IntList dims = ops::wrap_dims(dims_in, a.dim(), "sum");
  Tensor out = reduce_raw(ReduceOp::Sum, a, dims, keepdim, sum_dtype(a.dtype()), "sum");
  if (out.is_floating_point()) {
    Shape keep = reduced_shape(a.sizes(), dims).keep, in_shape = a.sizes();
    autograd::record("SumBackward", {a}, {out}, [keep, in_shape](const Grads& g) {
      return Grads{expand_grad(g[0], keep, in_shape)};
    });
  }
  return out;
}

Tensor mean_impl(const Tensor& a, const IntList& dims_in, bool keepdim) {
  SMP_PLACE_OP("mean", a);
  ops::check_defined(a, "mean", "self");
  SMP_CHECK(a.is_floating_point(),
            "mean: could not infer output dtype; input dtype must be floating point, got {}",
            dtype_name(a.dtype()));
  IntList dims = ops::wrap_dims(dims_in, a.dim(), "mean");
  Tensor out = reduce_raw(ReduceOp::Mean, a, dims, keepdim, a.dtype(), "mean");
  Shape keep = reduced_shape(a.sizes(), dims).keep, in_shape = a.sizes();
  double count = static_cast<double>(a.numel()) /
                 static_cast<double>(std::max<int64_t>(ops::numel_of(keep), 1));
  autograd::record("MeanBackward", {a}, {out}, [keep, in_shape, count](const Grads& g) {
    return Grads{expand_grad(g[0] / count, keep, in_shape)};
  });
  return out;
}

// amax/amin and whole-tensor max/min: ties share the gradient evenly.
Tensor extreme_impl(const Tensor& a, const IntList& dims_in, bool keepdim, bool is_max,
                    const char* name) {
  SMP_PLACE_OP(name, a);
  ops::check_defined(a, name, "self");
  IntList dims = ops::wrap_dims(dims_in, a.dim(), name);
  SMP_CHECK(a.numel() > 0 || a.is_meta(), "{}: expected a non-empty tensor, got shape {}", name,
            shape_str(a.sizes()));
  Tensor out =
      reduce_raw(is_max ? ReduceOp::Max : ReduceOp::Min, a, dims, keepdim, a.dtype(), name);
  if (out.is_floating_point()) {
    Shape keep = reduced_shape(a.sizes(), dims).keep, in_shape = a.sizes();
    Tensor y = out.detach();
    autograd::record(is_max ? "AmaxBackward" : "AminBackward", {a}, {out},
                     [a, y, keep, in_shape, dims](const Grads& g) {
                       Tensor mask = eq(a, y.reshape(keep)).to(g[0].dtype());
                       Tensor count = mask.sum(dims, true);
                       return Grads{expand_grad(g[0], keep, in_shape) * mask / count};
                     });
  }
  return out;
}

std::tuple<Tensor, Tensor> extreme_dim_impl(const Tensor& a, int64_t dim_in, bool keepdim,
                                            bool is_max, const char* name) {
  SMP_PLACE_OP(name, a);
  ops::check_defined(a, name, "self");
  int64_t dim = ops::wrap_dim(dim_in, a.dim(), name);
  if (a.dim() > 0)
    SMP_CHECK(a.size(dim) > 0 || a.is_meta(), "{}: cannot reduce dimension {} of size 0 (shape {})",
              name, dim, shape_str(a.sizes()));
  IntList dims = a.dim() == 0 ? IntList{} : IntList{dim};
  ReducedShape rs = reduced_shape(a.sizes(), dims);
  Tensor values = ops::empty_out(rs.keep, a.dtype(), a.device());
  Tensor indices = ops::empty_out(rs.keep, kInt64, a.device());
  if (!values.is_meta() && values.numel() > 0) {
    if (a.dim() == 0) {
      ops::copy_into(values, a);
      ops::fill_(indices, 0);
    } else {
      SMP_KERNEL(reduce_arg, a.device())
      (is_max ? ReduceOp::Max : ReduceOp::Min, values, indices, a, dim);
    }
  }
  if (!keepdim) {
    values = ops::make_view(values, rs.drop, ops::contiguous_strides(rs.drop), 0);
    indices = ops::make_view(indices, rs.drop, ops::contiguous_strides(rs.drop), 0);
  }
  if (values.is_floating_point()) {
    Shape keep = rs.keep, in_shape = a.sizes();
    Tensor idx = indices.detach();
    Device dev = a.device();
    autograd::record(is_max ? "MaxBackward" : "MinBackward", {a}, {values, indices},
                     [keep, in_shape, idx, dim, dev](const Grads& g) {
                       // One-hot along `dim`: position == index.
                       Shape pos_shape(in_shape.size(), 1);
                       if (!in_shape.empty())
                         pos_shape[static_cast<size_t>(dim)] = in_shape[static_cast<size_t>(dim)];
                       int64_t n = in_shape.empty() ? 1 : in_shape[static_cast<size_t>(dim)];
                       Tensor pos = arange(n, TensorOptions(kInt64).device(dev)).reshape(pos_shape);
                       Tensor hit = eq(pos, idx.reshape(keep));
                       return Grads{where(hit, g[0].reshape(keep), Scalar(0.0))};
                     });
  }
  return {values, indices};
}

Tensor argmax_impl(const Tensor& a, std::optional<int64_t> dim, bool keepdim) {
  SMP_PLACE_OP("argmax", a);
  ops::check_defined(a, "argmax", "self");
  if (!dim) {
    Tensor flat = a.detach().reshape({-1});
    return std::get<1>(extreme_dim_impl(flat, 0, false, true, "argmax")).reshape({});
  }
  NoGradGuard ng;
  return std::get<1>(extreme_dim_impl(a.detach(), *dim, keepdim, true, "argmax"));
}

Tensor var_impl(const Tensor& a, const IntList& dims_in, bool unbiased, bool keepdim) {
  SMP_PLACE_OP("var", a);
  ops::check_defined(a, "var", "self");
  SMP_CHECK(a.is_floating_point(), "var: expected a floating-point tensor, got {}",
            dtype_name(a.dtype()));
  IntList dims = ops::wrap_dims(dims_in, a.dim(), "var");
  int64_t n = 1;
  for (auto d : dims) n *= a.size(d);
  // Two passes (subtract the mean first) for accuracy; autograd follows the composition.
  Tensor d = a - a.mean(dims, true);
  Tensor ss = (d * d).sum(dims, keepdim);
  return ss / static_cast<double>(std::max<int64_t>(n - (unbiased ? 1 : 0), 0));
}

}  // namespace

Tensor Tensor::sum() const { return sum_impl(*this, {}, false); }
Tensor Tensor::sum(const IntList& dims, bool keepdim) const {
  return sum_impl(*this, dims, keepdim);
}
Tensor Tensor::mean() const { return mean_impl(*this, {}, false); }
Tensor Tensor::mean(const IntList& dims, bool keepdim) const {
  return mean_impl(*this, dims, keepdim);
}
Tensor Tensor::max() const { return extreme_impl(*this, {}, false, true, "max"); }
Tensor Tensor::min() const { return extreme_impl(*this, {}, false, false, "min"); }
std::tuple<Tensor, Tensor> Tensor::max(int64_t dim, bool keepdim) const {
  return extreme_dim_impl(*this, dim, keepdim, true, "max");
}
std::tuple<Tensor, Tensor> Tensor::min(int64_t dim, bool keepdim) const {
  return extreme_dim_impl(*this, dim, keepdim, false, "min");
}
Tensor Tensor::argmax() const { return argmax_impl(*this, std::nullopt, false); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return argmax_impl(*this, dim, keepdim); }
Tensor Tensor::amax(const IntList& dims, bool keepdim) const {
  return extreme_impl(*this, dims, keepdim, true, "amax");
}
Tensor Tensor::var(const IntList& dims, bool unbiased, bool keepdim) const {
  return var_impl(*this, dims, unbiased, keepdim);
}

Tensor sum(const Tensor& a) { return a.sum(); }
Tensor sum(const Tensor& a, const IntList& dims, bool keepdim) { return a.sum(dims, keepdim); }
Tensor mean(const Tensor& a) { return a.mean(); }
Tensor mean(const Tensor& a, const IntList& dims, bool keepdim) { return a.mean(dims, keepdim); }
Tensor var(const Tensor& a, const IntList& dims, bool unbiased, bool keepdim) {
  return a.var(dims, unbiased, keepdim);
}
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) { return a.argmax(dim, keepdim); }

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  SMP_PLACE_OP("sum_to", grad);
  ops::check_defined(grad, "sum_to", "grad");
  if (grad.sizes() == shape) return grad;
  int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  SMP_CHECK(lead >= 0, "sum_to: cannot reduce shape {} to the larger shape {}",
            shape_str(grad.sizes()), shape_str(shape));
  IntList dims;
  for (int64_t d = 0; d < grad.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    int64_t want = shape[static_cast<size_t>(d - lead)];
    if (want == 1 && grad.size(d) != 1)
      dims.push_back(d);
    else
      SMP_CHECK(want == grad.size(d), "sum_to: shape {} is not a broadcast of {}",
                shape_str(grad.sizes()), shape_str(shape));
  }
  if (dims.empty()) return grad.reshape(shape);
  return grad.sum(dims, true).reshape(shape);
}

}  // namespace smp
