// Indexing and joining: index_select (backward: index_add), cat (backward: narrow), stack.
#include "ops/op_utils.h"

namespace smp {

using ops::shape_str;

namespace {

void check_index(const Tensor& index, const char* op) {
  ops::check_defined(index, op, "index");
  SMP_CHECK(index.dtype() == kInt64 || index.dtype() == kInt32,
            "{}: expected an int64 or int32 'index', got {}", op, dtype_name(index.dtype()));
  SMP_CHECK(index.dim() <= 1, "{}: expected a 0-D or 1-D 'index', got shape {}", op,
            shape_str(index.sizes()));
}

}  // namespace

Tensor index_select(const Tensor& a, int64_t dim, const Tensor& index) {
  SMP_PLACE_OP("index_select", a, index);
  ops::check_defined(a, "index_select", "self");
  check_index(index, "index_select");
  Device dev = ops::common_device({a, index}, "index_select");
  SMP_CHECK(a.dim() >= 1, "index_select: expected a tensor with at least 1 dim, got a 0-D tensor");
  int64_t d = ops::wrap_dim(dim, a.dim(), "index_select");
  Shape shape = a.sizes();
  shape[d] = index.numel();
  Tensor out = ops::empty_out(shape, a.dtype(), dev);

  Shape in_shape = a.sizes();
  Dtype dt = a.dtype();
  autograd::record("IndexSelectBackward", {a, index}, {out},
                   [in_shape, dt, d, index](const std::vector<Tensor>& g) {
                     Tensor gi = zeros(in_shape, TensorOptions(dt).device(g[0].device()));
                     if (!gi.is_meta() && g[0].numel() > 0)
                       SMP_KERNEL(index_add, gi.device())
                       (gi, d, index, ops::contiguous_nograd(g[0]));
                     return std::vector<Tensor>{gi, Tensor()};
                   });
  if (out.is_meta() || out.numel() == 0) return out;
  SMP_KERNEL(index_select, dev)(out, ops::contiguous_nograd(a), d, index);
  return out;
}

Tensor Tensor::index_select(int64_t dim, const Tensor& index) const {
  return smp::index_select(*this, dim, index);
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  SMP_PLACE_OP("cat", tensors);
  SMP_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i)
    SMP_CHECK(tensors[i].defined(), "cat: tensor {} is undefined", i);
  // Like PyTorch, a 1-D empty tensor is skipped whatever the others' shapes (legacy behaviour
  // code relies on to start an accumulation with an empty tensor).
  auto skipped = [](const Tensor& t) { return t.dim() == 1 && t.size(0) == 0; };
  size_t ref_i = 0;
  while (ref_i < tensors.size() && skipped(tensors[ref_i])) ++ref_i;
  if (ref_i == tensors.size()) ref_i = 0;
  const Tensor& ref = tensors[ref_i];
  for (size_t i = 0; i < tensors.size(); ++i)
    SMP_CHECK(tensors[i].dim() > 0,
              "cat: zero-dimensional tensor (at position {}) cannot be "
              "concatenated",
              i);
  int64_t d = ops::wrap_dim(dim, ref.dim(), "cat");
  Device dev = ops::common_device(tensors, "cat");
  Dtype dt = ref.dtype();
  Shape shape = ref.sizes();
  shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (skipped(t) && ref.dim() != 1) continue;
    SMP_CHECK(t.dim() == ref.dim(),
              "cat: tensors must have the same number of dims: tensor {} has shape {}, tensor {} "
              "has shape {}",
              ref_i, shape_str(ref.sizes()), i, shape_str(t.sizes()));
    for (int64_t k = 0; k < t.dim(); ++k) {
      SMP_CHECK(k == d || t.size(k) == ref.size(k),
                "cat: sizes of tensors must match except in dimension {}: tensor {} has shape {} "
                "but tensor {} has shape {} (they differ in dimension {})",
                d, ref_i, shape_str(ref.sizes()), i, shape_str(t.sizes()), k);
    }
    shape[d] += t.size(d);
    dt = promote_types(dt, t.dtype());
  }
  Tensor out = ops::empty_out(shape, dt, dev);

  // Offsets along `d`, with -1 for skipped inputs.
  std::vector<int64_t> starts(tensors.size(), -1), lens(tensors.size(), 0);
  std::vector<Dtype> dtypes(tensors.size());
  int64_t off = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    dtypes[i] = tensors[i].dtype();
    if (skipped(tensors[i]) && ref.dim() != 1) continue;
    starts[i] = off;
    lens[i] = tensors[i].size(d);
    off += lens[i];
  }
  autograd::record("CatBackward", tensors, {out},
                   [d, starts, lens, dtypes](const std::vector<Tensor>& g) {
                     std::vector<Tensor> gi(starts.size());
                     for (size_t i = 0; i < starts.size(); ++i) {
                       if (starts[i] < 0 || !is_floating_point(dtypes[i])) continue;
                       gi[i] = g[0].narrow(d, starts[i], lens[i]).to(dtypes[i]);
                     }
                     return gi;
                   });
  if (out.is_meta() || out.numel() == 0) return out;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (starts[i] < 0 || lens[i] == 0) continue;
    Tensor dst = ops::make_view(out, tensors[i].sizes(), out.strides(), starts[i] * out.stride(d));
    ops::copy_into(dst, tensors[i]);
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  SMP_PLACE_OP("stack", tensors);
  SMP_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i) {
    SMP_CHECK(tensors[i].defined(), "stack: tensor {} is undefined", i);
    SMP_CHECK(tensors[i].sizes() == tensors[0].sizes(),
              "stack: expected every tensor to have the same shape, but tensor 0 has shape {} "
              "and tensor {} has shape {}",
              shape_str(tensors[0].sizes()), i, shape_str(tensors[i].sizes()));
  }
  int64_t d = ops::wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(tensors.size());
  for (const auto& t : tensors) parts.push_back(t.unsqueeze(d));
  return cat(parts, d);
}

}  // namespace smp
