// View ops: new sizes/strides over the same storage. Backward maps the gradient back.
#include "ops/op_utils.h"

#include <algorithm>
#include <numeric>

namespace smp {

using ops::shape_str;
using ops::wrap_dim;

namespace {

// Infers a -1 entry and checks the element count.
Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      SMP_CHECK(infer < 0, "{}: only one dimension can be -1, got {}", op, shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      SMP_CHECK(out[i] >= 0, "{}: invalid size {} in {}", op, out[i], shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    SMP_CHECK(known != 0 && numel % known == 0, "{}: shape {} is invalid for input of size {}", op,
              shape_str(shape), numel);
    out[infer] = numel / known;
  } else {
    SMP_CHECK(known == numel, "{}: shape {} is invalid for input of size {}", op, shape_str(shape),
              numel);
  }
  return out;
}

// Strides for viewing `t` as `shape` without copying, or nullopt when impossible.
std::optional<Shape> view_strides(const Tensor& t, const Shape& shape) {
  if (t.numel() == 0 || t.is_contiguous()) return ops::contiguous_strides(shape);
  // Walk chunks of old dims that are contiguous among themselves (as ATen's computeStride).
  const Shape& os = t.sizes();
  const Shape& ost = t.strides();
  Shape nst(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base = ost.empty() ? 1 : ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(os.size()) - 1; d >= 0; --d) {
    tensor_numel *= os[d];
    if (d == 0 || (os[d - 1] != 1 && ost[d - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        nst[view_d] = view_numel * chunk_base;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base = ost[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return nst;
}

Tensor view_impl(const Tensor& t, const Shape& shape, const char* op) {
  auto st = view_strides(t, shape);
  SMP_CHECK(st.has_value(),
            "{}: cannot view a tensor of shape {} and strides {} as {} without copying; use "
            "reshape()",
            op, shape_str(t.sizes()), shape_str(t.strides()), shape_str(shape));
  Tensor out = ops::make_view(t, shape, *st, t.storage_offset());
  Shape in_shape = t.sizes();
  autograd::record("ViewBackward", {t}, {out}, [in_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].reshape(in_shape)};
  });
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  SMP_PLACE_OP("view", *this);
  return view_impl(*this, infer_shape(shape, numel(), "view"), "view");
}

Tensor Tensor::reshape(const Shape& shape) const {
  SMP_PLACE_OP("reshape", *this);
  Shape s = infer_shape(shape, numel(), "reshape");
  if (view_strides(*this, s)) return view_impl(*this, s, "reshape");
  return contiguous().view(s);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  SMP_PLACE_OP("flatten", *this);
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  SMP_CHECK(s <= e, "flatten: start_dim {} must not come after end_dim {}", start_dim, end_dim);
  Shape ns(sizes().begin(), sizes().begin() + s);
  int64_t m = 1;
  for (int64_t d = s; d <= e; ++d) m *= size(d);
  ns.push_back(m);
  ns.insert(ns.end(), sizes().begin() + e + 1, sizes().end());
  return reshape(ns);
}

Tensor Tensor::permute(const IntList& dims) const {
  SMP_PLACE_OP("permute", *this);
  SMP_CHECK(static_cast<int64_t>(dims.size()) == dim(),
            "permute: expected {} dims for a {}-D tensor, got {}", dim(), dim(), shape_str(dims));
  IntList p(dims.size());
  std::vector<bool> seen(dims.size(), false);
  Shape ns(dims.size()), nst(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    p[i] = wrap_dim(dims[i], dim(), "permute");
    SMP_CHECK(!seen[p[i]], "permute: dimension {} repeated in {}", p[i], shape_str(dims));
    seen[p[i]] = true;
    ns[i] = size(p[i]);
    nst[i] = stride(p[i]);
  }
  Tensor out = ops::make_view(*this, ns, nst, storage_offset());
  IntList inv(p.size());
  for (size_t i = 0; i < p.size(); ++i) inv[p[i]] = static_cast<int64_t>(i);
  autograd::record("PermuteBackward", {*this}, {out}, [inv](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].permute(inv)};
  });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  SMP_PLACE_OP("transpose", *this);
  if (dim() == 0) return *this;
  IntList p(dim());
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[wrap_dim(d0, dim(), "transpose")], p[wrap_dim(d1, dim(), "transpose")]);
  return permute(p);
}

Tensor Tensor::t() const {
  SMP_PLACE_OP("t", *this);
  SMP_CHECK(dim() <= 2, "t: expected a tensor with at most 2 dims, got {}-D", dim());
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::squeeze() const {
  SMP_PLACE_OP("squeeze", *this);
  Shape ns;
  for (auto s : sizes())
    if (s != 1) ns.push_back(s);
  return reshape(ns);
}

Tensor Tensor::squeeze(int64_t d) const {
  SMP_PLACE_OP("squeeze", *this);
  if (dim() == 0) return *this;
  int64_t w = wrap_dim(d, dim(), "squeeze");
  if (size(w) != 1) return *this;
  Shape ns = sizes();
  ns.erase(ns.begin() + w);
  return reshape(ns);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  SMP_PLACE_OP("unsqueeze", *this);
  int64_t w = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape ns = sizes();
  ns.insert(ns.begin() + w, 1);
  return reshape(ns);
}

Tensor Tensor::expand(const Shape& shape) const {
  SMP_PLACE_OP("expand", *this);
  SMP_CHECK(static_cast<int64_t>(shape.size()) >= dim(),
            "expand: the target {} has fewer dims than the tensor's {}", shape_str(shape),
            shape_str(sizes()));
  Shape target = shape;
  int64_t off = static_cast<int64_t>(shape.size()) - dim();
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    if (target[i] == -1) {
      SMP_CHECK(i >= off, "expand: -1 is not allowed for a new leading dimension");
      target[i] = size(i - off);
    }
    if (i >= off) {
      SMP_CHECK(size(i - off) == target[i] || size(i - off) == 1,
                "expand: the expanded size {} must match the existing size {} at dimension {} "
                "(tensor {}, target {})",
                target[i], size(i - off), i, shape_str(sizes()), shape_str(shape));
    }
  }
  Tensor out = ops::expand_to(*this, target);
  if (out.is_same(*this)) return out;
  Shape in_shape = sizes();
  autograd::record("ExpandBackward", {*this}, {out}, [in_shape](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{sum_to(g[0], in_shape)};
  });
  return out;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  SMP_PLACE_OP("slice", *this);
  SMP_CHECK(dim() > 0, "slice: cannot slice a 0-dim tensor");
  int64_t w = wrap_dim(d, dim(), "slice");
  SMP_CHECK(step > 0, "slice: step must be positive, got {}", step);
  int64_t n = size(w);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape ns = sizes(), nst = strides();
  ns[w] = (end - start + step - 1) / step;
  nst[w] *= step;
  Tensor out = ops::make_view(*this, ns, nst, storage_offset() + start * stride(w));
  Shape in_shape = sizes();
  Dtype dt = dtype();
  autograd::record("SliceBackward", {*this}, {out},
                   [in_shape, dt, w, start, end, step](const std::vector<Tensor>& g) {
                     Tensor gi = zeros(in_shape, TensorOptions(dt).device(g[0].device()));
                     ops::copy_into(ops::make_view(gi, g[0].sizes(),
                                                   [&] {
                                                     Shape st = gi.strides();
                                                     st[w] *= step;
                                                     return st;
                                                   }(),
                                                   start * gi.stride(w)),
                                    g[0]);
                     (void)end;
                     return std::vector<Tensor>{gi};
                   });
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  SMP_PLACE_OP("narrow", *this);
  int64_t w = wrap_dim(d, dim(), "narrow");
  if (start < 0) start += size(w);
  SMP_CHECK(start >= 0 && length >= 0 && start + length <= size(w),
            "narrow: start {} + length {} exceeds dimension {} of size {}", start, length, d,
            size(w));
  return slice(w, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  SMP_PLACE_OP("select", *this);
  int64_t w = wrap_dim(d, dim(), "select");
  int64_t n = size(w);
  SMP_CHECK(index >= -n && index < n, "select: index {} out of range for dimension {} of size {}",
            index, d, n);
  if (index < 0) index += n;
  return narrow(w, index, 1).squeeze(w);
}

std::vector<Tensor> Tensor::split(int64_t split_size, int64_t d) const {
  SMP_PLACE_OP("split", *this);
  int64_t w = wrap_dim(d, dim(), "split");
  SMP_CHECK(split_size > 0 || size(w) == 0, "split: split_size must be positive, got {}", split_size);
  std::vector<Tensor> out;
  for (int64_t s = 0; s < size(w); s += split_size)
    out.push_back(narrow(w, s, std::min(split_size, size(w) - s)));
  if (out.empty()) out.push_back(*this);
  return out;
}

std::vector<Tensor> Tensor::split(const IntList& split_sizes, int64_t d) const {
  SMP_PLACE_OP("split", *this);
  int64_t w = wrap_dim(d, dim(), "split");
  int64_t total = std::accumulate(split_sizes.begin(), split_sizes.end(), int64_t{0});
  SMP_CHECK(total == size(w), "split: sizes {} sum to {}, but dimension {} has size {}",
            shape_str(split_sizes), total, d, size(w));
  std::vector<Tensor> out;
  int64_t s = 0;
  for (auto len : split_sizes) {
    out.push_back(narrow(w, s, len));
    s += len;
  }
  return out;
}

std::vector<Tensor> Tensor::chunk(int64_t chunks, int64_t d) const {
  SMP_PLACE_OP("chunk", *this);
  SMP_CHECK(chunks > 0, "chunk: number of chunks must be positive, got {}", chunks);
  int64_t w = wrap_dim(d, dim(), "chunk");
  int64_t per = (size(w) + chunks - 1) / chunks;
  return split(std::max<int64_t>(per, 1), w);
}

Tensor reshape(const Tensor& a, const Shape& shape) { return a.reshape(shape); }
Tensor flatten(const Tensor& a, int64_t s, int64_t e) { return a.flatten(s, e); }
Tensor transpose(const Tensor& a, int64_t d0, int64_t d1) { return a.transpose(d0, d1); }
Tensor permute(const Tensor& a, const IntList& dims) { return a.permute(dims); }
Tensor squeeze(const Tensor& a, int64_t d) { return a.squeeze(d); }
Tensor unsqueeze(const Tensor& a, int64_t d) { return a.unsqueeze(d); }
Tensor narrow(const Tensor& a, int64_t d, int64_t s, int64_t l) { return a.narrow(d, s, l); }
std::vector<Tensor> split(const Tensor& a, int64_t s, int64_t d) { return a.split(s, d); }
std::vector<Tensor> chunk(const Tensor& a, int64_t c, int64_t d) { return a.chunk(c, d); }

}  // namespace smp
