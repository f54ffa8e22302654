#include "ops/op_utils.h"

#include <smp/engine/format.h>

#include <algorithm>
#include <numeric>

namespace smp::ops {

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t n = std::max<int64_t>(ndim, 1);  // a 0-dim tensor accepts dim 0 and -1
  SMP_CHECK(dim >= -n && dim < n,
            "{}: dimension {} out of range for a {}-D tensor (expected [{}, {}])", op, dim, ndim,
            -n, n - 1);
  return dim < 0 ? dim + n : dim;
}

IntList wrap_dims(const IntList& dims, int64_t ndim, const char* op) {
  IntList out;
  if (dims.empty()) {
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
    return out;
  }
  for (auto d : dims) out.push_back(wrap_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  SMP_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(),
            "{}: dimension listed twice in {}", op, shape_str(dims));
  return out;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    st[d] = s;
    s *= std::max<int64_t>(shape[d], 1);
  }
  return st;
}

int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

Device common_device(const std::vector<Tensor>& ts, const char* op) {
  const Placement* placed = detail::t_placement.scope;
  const Tensor* first = nullptr;
  for (const auto& t : ts) {
    if (!t.defined()) continue;
    // Placed ops see inputs held elsewhere as meta beside real ones: only real devices must agree.
    if (placed && first && (t.is_meta() || first->is_meta())) {
      if (first->is_meta()) first = &t;
      continue;
    }
    if (!first) {
      first = &t;
      continue;
    }
    SMP_CHECK(t.device() == first->device(),
              "{}: expected all tensors on one device, got {} and {}", op, first->device().str(),
              t.device().str());
  }
  SMP_CHECK(first != nullptr, "{}: no defined tensor argument", op);
  if (placed && !placed->local) return Device(kMeta);
  return first->device();
}

bool devices_agree(const Device& a, const Device& b) {
  return a == b || (detail::t_placement.scope && (a.is_meta() || b.is_meta()));
}

void check_defined(const Tensor& t, const char* op, const char* arg) {
  SMP_CHECK(t.defined(), "{}: argument '{}' is an undefined tensor", op, arg);
}

void check_floating(const Tensor& t, const char* op, const char* arg) {
  check_defined(t, op, arg);
  SMP_CHECK(t.is_floating_point(), "{}: expected a floating-point '{}', got {}", op, arg,
            dtype_name(t.dtype()));
}

void check_dim(const Tensor& t, int64_t ndim, const char* op, const char* arg) {
  check_defined(t, op, arg);
  SMP_CHECK(t.dim() == ndim, "{}: expected a {}-D '{}', got shape {}", op, ndim, arg,
            shape_str(t.sizes()));
}

Tensor empty_out(const Shape& shape, Dtype dtype, Device device, bool pinned, const char* op) {
  if (pinned) {
    SMP_CHECK(device.is_cpu(), "{}: only CPU tensors can be pinned, asked for one on {}", op,
              device.str());
    // As PyTorch: page-locking memory needs the CUDA driver, so no device means no pinning.
    SMP_CHECK(get_pinned_allocator() != nullptr && cuda::is_available(),
              "{}: pinned memory needs a CUDA device, and {}", op,
              get_pinned_allocator() == nullptr ? "this build has no CUDA support"
                                                : "this process sees none");
  }
  auto impl = std::make_shared<TensorImpl>();
  if (const Placement* p = detail::t_placement.scope) {
    impl->partition = p->partition;
    if (!p->local) device = Device(kMeta);
  }
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  impl->device = device;
  size_t nbytes = static_cast<size_t>(numel_of(shape)) * element_size(dtype);
  impl->storage = pinned && device.is_cpu()
                      ? std::make_shared<Storage>(nbytes, get_pinned_allocator())
                      : std::make_shared<Storage>(nbytes, device);
  return Tensor(impl);
}

Tensor make_view(const Tensor& t, const Shape& sizes, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage();
  impl->sizes = sizes;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = t.dtype();
  impl->device = t.device();
  impl->partition = t.unsafe_impl()->partition;
  if (const Placement* p = detail::t_placement.scope) {
    impl->partition = p->partition;
    if (!p->local && !t.is_meta()) {
      impl->device = Device(kMeta);
      impl->storage =
          std::make_shared<Storage>(t.storage() ? t.storage()->nbytes() : 0, Device(kMeta));
    }
  }
  return Tensor(impl);
}

Tensor expand_to(const Tensor& t, const Shape& shape) {
  if (t.sizes() == shape) return t;
  int64_t nd = static_cast<int64_t>(shape.size()), off = nd - t.dim();
  SMP_ASSERT(off >= 0, "expand_to: target has fewer dims");
  Shape st(nd, 0);
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) == shape[off + d])
      st[off + d] = t.stride(d);
    else
      SMP_ASSERT(t.size(d) == 1, "expand_to: size {} cannot expand to {}", t.size(d),
                 shape[off + d]);
  }
  return make_view(t, shape, st, t.storage_offset());
}

Tensor cast_to(const Tensor& t, Dtype dtype) {
  if (t.dtype() == dtype) return t;
  Tensor out = empty_out(t.sizes(), dtype, t.device());
  copy_into(out, t);
  return out;
}

Tensor contiguous_nograd(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor c = empty_out(t.sizes(), t.dtype(), t.device());
  copy_into(c, t);
  return c;
}

void fill_(const Tensor& t, const Scalar& v) {
  if (!runs_kernel(t)) return;
  SMP_KERNEL(fill, t.device())(t, v);
}

void copy_into(const Tensor& dst, const Tensor& src) {
  SMP_CHECK(dst.sizes() == src.sizes(), "copy: shapes differ, destination {} and source {}",
            shape_str(dst.sizes()), shape_str(src.sizes()));
  if (!runs_kernel(dst)) return;
  SMP_CHECK(!src.is_meta(), "copy: the source is a meta tensor and has no data on this process");
  if (dst.device() == src.device()) {
    SMP_KERNEL(copy, dst.device())(dst, src);
    return;
  }
  // Across devices: make the source contiguous in the destination's dtype on its own device,
  // move the bytes, then scatter into dst's layout on the destination device.
  Tensor s = src.dtype() == dst.dtype() && src.is_contiguous()
                 ? src
                 : cast_to(src, dst.dtype()).contiguous();
  if (s.dtype() != dst.dtype() || !s.is_contiguous()) {
    Tensor tmp = empty_out(src.sizes(), dst.dtype(), src.device());
    SMP_KERNEL(copy, src.device())(tmp, src);
    s = tmp;
  }
  Tensor d = dst.is_contiguous() ? dst : empty_out(dst.sizes(), dst.dtype(), dst.device());
  Device accel = dst.is_cpu() ? src.device() : dst.device();
  SMP_KERNEL(copy_across_devices, accel)(d, s);
  if (!d.is_same(dst)) SMP_KERNEL(copy, dst.device())(dst, d);
}

Tensor sum_gradients(const Tensor& a, const Tensor& b) {
  if (a.is_meta() != b.is_meta()) return a.is_meta() ? b : a;
  if (a.is_meta() && a.sizes() == b.sizes() && a.dtype() == b.dtype()) return a;
  return a + b;
}

IntList dims_in_memory_order(const Tensor& t) {
  IntList perm(static_cast<size_t>(t.dim()));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::stable_sort(perm.begin(), perm.end(),
                   [&](int64_t a, int64_t b) { return t.stride(a) > t.stride(b); });
  return perm;
}

}  // namespace smp::ops

namespace smp {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    SMP_CHECK(x == y || x == 1 || y == 1,
              "{}: shapes {} and {} cannot be broadcast together (dimension {}: {} vs {})", op,
              ops::shape_str(a), ops::shape_str(b), i, x, y);
    out[i] = x == 1 ? y : x;
  }
  return out;
}

// ---- in-place fills and copies (not recorded by autograd) -------------------------------

namespace {
void check_inplace(const Tensor& t, const char* op) {
  SMP_CHECK(!(GradMode::is_enabled() && t.is_leaf() && t.requires_grad()),
            "{}: a leaf tensor that requires grad is being modified in place; wrap the update "
            "in smp::NoGradGuard",
            op);
}
}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  SMP_PLACE_OP("copy_", *this, src);
  check_inplace(*this, "copy_");
  ops::check_defined(src, "copy_", "src");
  Shape bs = broadcast_shapes(sizes(), src.sizes(), "copy_");
  SMP_CHECK(bs == sizes(), "copy_: source shape {} cannot be broadcast to destination shape {}",
            ops::shape_str(src.sizes()), ops::shape_str(sizes()));
  Tensor s = src;
  if (s.device() != device()) {
    s = ops::empty_out(src.sizes(), src.dtype(), device());
    ops::copy_into(s, src);
  }
  ops::copy_into(*this, ops::expand_to(s, sizes()));
  bump_version();
  return *this;
}

Tensor& Tensor::fill_(const Scalar& v) {
  SMP_PLACE_OP("fill_", *this);
  check_inplace(*this, "fill_");
  ops::fill_(*this, v);
  bump_version();
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0); }

}  // namespace smp
