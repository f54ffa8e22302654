// Tensor handle basics: metadata, autograd accessors, conversion, creation, printing.
#include "ops/op_utils.h"

#include <smp/engine/autograd.h>
#include <smp/engine/format.h>
#include <smp/engine/random.h>
#include <smp/engine/tensor.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <sstream>

namespace smp {

TensorImpl::TensorImpl() = default;
TensorImpl::~TensorImpl() = default;

int64_t TensorImpl::numel() const {
  int64_t n = 1;
  for (auto s : sizes) n *= s;
  return n;
}

bool TensorImpl::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    if (sizes[d] == 1) continue;
    if (strides[d] != expected) return false;
    expected *= sizes[d];
  }
  return true;
}

int64_t Tensor::size(int64_t d) const { return sizes()[ops::wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[ops::wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_alias_of(const Tensor& o) const {
  return defined() && o.defined() && storage() && storage() == o.storage();
}

namespace {
// A meta tensor that a pipeline partition holds is a value computed on another rank.
void check_held_here(const Tensor& t, const char* op) {
  int p = t.unsafe_impl()->partition;
  SMP_CHECK(!t.is_meta() || p < 0,
            "{}: the value is held by pipeline partition {} and is not available on this rank "
            "(shape {}); read it outside the step, or from the step's outputs",
            op, p, ops::shape_str(t.sizes()));
}
}  // namespace

void* Tensor::data_ptr() const {
  check_held_here(*this, "data_ptr");
  SMP_CHECK(!is_meta(),
            "data_ptr: this tensor is on the meta device and has no data on this process "
            "(shape {})", ops::shape_str(sizes()));
  if (!storage() || !storage()->data()) return nullptr;
  return static_cast<char*>(storage()->data()) + storage_offset() * element_size();
}

Scalar Tensor::item() const {
  SMP_CHECK(numel() == 1, "item: expected a tensor with one element, got shape {}",
            ops::shape_str(sizes()));
  check_held_here(*this, "item");
  SMP_CHECK(!is_meta(),
            "item: the value is on the meta device, so it has no data on this process");
  detail::PlacementSuspend reading;  // reads this rank's value: no op of the program
  Tensor h = is_cpu() ? *this : cpu();
  return SMP_DISPATCH_ALL(dtype(), "item", [&]() -> Scalar {
    return Scalar(*static_cast<const scalar_t*>(h.data_ptr()));
  });
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  check_held_here(*this, "to_vector");
  SMP_CHECK(!is_meta(), "to_vector: a meta tensor has no data on this process");
  detail::PlacementSuspend reading;
  Tensor h = to(Device(kCPU), dtype_of<T>).contiguous();
  const T* p = static_cast<const T*>(h.data_ptr());
  return std::vector<T>(p, p + h.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<Half> Tensor::to_vector<Half>() const;
template std::vector<BFloat16> Tensor::to_vector<BFloat16>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template <>
std::vector<bool> Tensor::to_vector<bool>() const {
  check_held_here(*this, "to_vector");
  detail::PlacementSuspend reading;
  auto bytes = to(kUInt8).to_vector<uint8_t>();
  return std::vector<bool>(bytes.begin(), bytes.end());
}

// ---- conversion ---------------------------------------------------------------------

Tensor Tensor::contiguous() const {
  SMP_PLACE_OP("contiguous", *this);
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  SMP_PLACE_OP("clone", *this);
  Tensor out = ops::empty_out(sizes(), dtype(), device());
  ops::copy_into(out, *this);
  autograd::record("CloneBackward", {*this}, {out},
                   [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

Tensor Tensor::to(const TensorOptions& o, bool non_blocking) const {
  SMP_PLACE_OP("to", *this);
  Device d = o.has_device() ? o.device() : device();
  Dtype t = o.has_dtype() ? o.dtype() : dtype();
  if (d == device() && t == dtype()) return *this;
  Tensor out = ops::empty_out(sizes(), t, d);
  {
    kernels::NonBlockingCopyScope nb(non_blocking);
    ops::copy_into(out, *this);
  }
  if (is_floating_point() && smp::is_floating_point(t)) {
    Device src_dev = device();
    Dtype src_t = dtype();
    autograd::record("ToCopyBackward", {*this}, {out}, [src_dev, src_t](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{g[0].to(TensorOptions(src_t).device(src_dev))};
    });
  }
  return out;
}
Tensor Tensor::to(Device d, bool non_blocking) const { return to(TensorOptions(d), non_blocking); }
Tensor Tensor::to(Dtype t) const { return to(TensorOptions(t)); }
Tensor Tensor::to(Device d, Dtype t, bool non_blocking) const {
  return to(TensorOptions(t).device(d), non_blocking);
}

Tensor Tensor::pin_memory() const {
  SMP_PLACE_OP("pin_memory", *this);
  SMP_CHECK(is_cpu(), "pin_memory: only CPU tensors can be pinned, got a tensor on {}",
            device().str());
  if (is_pinned()) return *this;
  Tensor out = ops::empty_out(sizes(), dtype(), device(), /*pinned=*/true, "pin_memory");
  ops::copy_into(out, *this);
  autograd::record("PinMemoryBackward", {*this}, {out},
                   [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; });
  return out;
}

bool Tensor::is_pinned() const { return storage() != nullptr && storage()->is_pinned(); }

// ---- creation -------------------------------------------------------------------------

namespace {
Tensor finish(Tensor t, const TensorOptions& o) {
  if (o.requires_grad()) t.requires_grad_(true);
  return t;
}
void check_shape(const Shape& shape, const char* op) {
  for (auto s : shape)
    SMP_CHECK(s >= 0, "{}: sizes must be non-negative, got {}", op, ops::shape_str(shape));
}
}  // namespace

Tensor empty(const Shape& shape, const TensorOptions& o) {
  check_shape(shape, "empty");
  return finish(ops::empty_out(shape, o.dtype(), o.device(), o.pinned_memory(), "empty"), o);
}

Tensor full(const Shape& shape, const Scalar& value, const TensorOptions& o) {
  check_shape(shape, "full");
  Dtype dt = o.has_dtype() ? o.dtype() : value.natural_dtype();
  Tensor t = ops::empty_out(shape, dt, o.device(), o.pinned_memory(), "full");
  ops::fill_(t, value);
  return finish(t, o);
}

Tensor zeros(const Shape& shape, const TensorOptions& o) { return full(shape, 0.0, o.dtype(o.dtype())); }
Tensor ones(const Shape& shape, const TensorOptions& o) { return full(shape, 1.0, o.dtype(o.dtype())); }

Tensor empty_like(const Tensor& t, const TensorOptions& o) {
  return empty(t.sizes(), TensorOptions(o.has_dtype() ? o.dtype() : t.dtype())
                              .device(o.has_device() ? o.device() : t.device())
                              .requires_grad(o.requires_grad()));
}
Tensor zeros_like(const Tensor& t, const TensorOptions& o) { return full_like(t, 0, o); }
Tensor ones_like(const Tensor& t, const TensorOptions& o) { return full_like(t, 1, o); }
Tensor full_like(const Tensor& t, const Scalar& v, const TensorOptions& o) {
  return full(t.sizes(), v, TensorOptions(o.has_dtype() ? o.dtype() : t.dtype())
                                .device(o.has_device() ? o.device() : t.device())
                                .requires_grad(o.requires_grad()));
}

Tensor scalar_tensor(const Scalar& v, const TensorOptions& o) { return full({}, v, o); }

Tensor arange(const Scalar& end, const TensorOptions& o) { return arange(0, end, 1, o); }

Tensor arange(const Scalar& start, const Scalar& end, const Scalar& step, const TensorOptions& o) {
  double s = start.to_double(), e = end.to_double(), st = step.to_double();
  SMP_CHECK(st != 0, "arange: step must be nonzero");
  SMP_CHECK((st > 0 && e >= s) || (st < 0 && e <= s),
            "arange: upper bound {} and lower bound {} inconsistent with step sign {}", e, s, st);
  bool any_float = start.is_floating_point() || end.is_floating_point() || step.is_floating_point();
  Dtype dt = o.has_dtype() ? o.dtype() : (any_float ? default_dtype() : kInt64);
  auto n = static_cast<int64_t>(std::ceil((e - s) / st));
  Tensor t = ops::empty_out({n}, dt, o.device());
  if (!t.is_meta() && n > 0) SMP_KERNEL(arange, t.device())(t, start, step);
  return finish(t, o);
}

Tensor from_blob(void* data, const Shape& shape, const Shape& strides, const TensorOptions& o,
                 std::function<void(void*)> deleter) {
  check_shape(shape, "from_blob");
  SMP_CHECK(shape.size() == strides.size(), "from_blob: {} sizes but {} strides", shape.size(),
            strides.size());
  int64_t extent = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) { extent = 0; break; }
    extent += (shape[i] - 1) * strides[i];
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(data, static_cast<size_t>(extent) * element_size(o.dtype()),
                                            o.device(), std::move(deleter));
  impl->sizes = shape;
  impl->strides = strides;
  impl->dtype = o.dtype();
  impl->device = o.device();
  return finish(Tensor(impl), o);
}

Tensor from_blob(void* data, const Shape& shape, const TensorOptions& o,
                 std::function<void(void*)> deleter) {
  return from_blob(data, shape, ops::contiguous_strides(shape), o, std::move(deleter));
}

Tensor from_data(const void* data, const Shape& shape, const TensorOptions& o) {
  Tensor host = from_blob(const_cast<void*>(data), shape, TensorOptions(o.dtype()));
  Tensor out = ops::empty_out(shape, o.dtype(), o.device());
  ops::copy_into(out, host);
  return finish(out, o);
}

template <class T>
Tensor tensor(const std::vector<T>& values, const Shape& shape, const TensorOptions& o) {
  Shape s = shape.empty() ? Shape{static_cast<int64_t>(values.size())} : shape;
  SMP_CHECK(ops::numel_of(s) == static_cast<int64_t>(values.size()),
            "tensor: {} values do not fill shape {}", values.size(), ops::shape_str(s));
  detail::HookPause factory;  // a factory, not an op: the copy to o's device is part of it
  Tensor host = from_data(values.data(), s, TensorOptions(dtype_of<T>));
  return finish(host.to(TensorOptions(o.has_dtype() ? o.dtype() : dtype_of<T>).device(o.device())), o);
}
template Tensor tensor<float>(const std::vector<float>&, const Shape&, const TensorOptions&);
template Tensor tensor<double>(const std::vector<double>&, const Shape&, const TensorOptions&);
template Tensor tensor<int64_t>(const std::vector<int64_t>&, const Shape&, const TensorOptions&);
template Tensor tensor<int32_t>(const std::vector<int32_t>&, const Shape&, const TensorOptions&);
template Tensor tensor<uint8_t>(const std::vector<uint8_t>&, const Shape&, const TensorOptions&);
template Tensor tensor<Half>(const std::vector<Half>&, const Shape&, const TensorOptions&);
template Tensor tensor<BFloat16>(const std::vector<BFloat16>&, const Shape&, const TensorOptions&);
template <>
Tensor tensor<bool>(const std::vector<bool>& values, const Shape& shape, const TensorOptions& o) {
  std::vector<uint8_t> bytes(values.begin(), values.end());
  return tensor<uint8_t>(bytes, shape, TensorOptions(o.has_dtype() ? o.dtype() : kBool)
                                           .device(o.device())
                                           .requires_grad(o.requires_grad()));
}

Tensor tensor(std::initializer_list<double> values, const TensorOptions& o) {
  std::vector<double> v(values);
  return tensor<double>(v, {}, TensorOptions(o.has_dtype() ? o.dtype() : default_dtype())
                                   .device(o.device())
                                   .requires_grad(o.requires_grad()));
}

// ---- printing -------------------------------------------------------------------------

std::string Tensor::to_string() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  std::string suffix;
  if (!is_cpu()) suffix += fmt::format(", device='{}'", device().str());
  if (dtype() != kFloat32 && dtype() != kInt64 && dtype() != kBool)
    suffix += fmt::format(", dtype={}", dtype_name(dtype()));
  if (requires_grad()) suffix += ", requires_grad=True";
  if (is_meta())
    return fmt::format("tensor(..., size={}{})", ops::shape_str(sizes()), suffix);
  detail::PlacementSuspend reading;
  Tensor h = cpu().contiguous();
  bool fp = is_floating_point();
  std::vector<double> v = fp || dtype() == kInt64 ? h.to(kFloat64).to_vector<double>()
                                                  : h.to(kFloat64).to_vector<double>();
  const int64_t limit = 6;  // summarise long dims like PyTorch's threshold does
  auto fmt_val = [&](double x) -> std::string {
    if (dtype() == kBool) return x != 0 ? "True" : "False";
    if (!fp) return fmt::format("{}", static_cast<int64_t>(x));
    return fmt::format("{:.4f}", x);
  };
  std::function<void(int64_t, int64_t)> rec = [&](int64_t d, int64_t base) {
    if (d == dim()) {
      os << fmt_val(v[base]);
      return;
    }
    int64_t n = size(d), stride = 1;
    for (int64_t k = d + 1; k < dim(); ++k) stride *= size(k);
    os << '[';
    for (int64_t i = 0; i < n; ++i) {
      if (n > 2 * limit && i == limit) {
        os << "..., ";
        i = n - limit;
      }
      rec(d + 1, base + i * stride);
      if (i + 1 < n) os << (d + 1 == dim() ? ", " : ",\n" + std::string(d + 8, ' '));
    }
    os << ']';
  };
  os << "tensor(";
  rec(0, 0);
  os << suffix << ')';
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

// ---- autograd accessors ----------------------------------------------------------------

namespace {
autograd::AutogradMeta& meta_of(const Tensor& t) {
  auto* impl = t.unsafe_impl();
  SMP_CHECK(impl != nullptr, "autograd: undefined tensor");
  if (!impl->autograd) impl->autograd = std::make_unique<autograd::AutogradMeta>();
  return *impl->autograd;
}
}  // namespace

bool Tensor::requires_grad() const {
  auto* m = impl().autograd.get();
  return m && (m->requires_grad || m->grad_fn);
}

Tensor& Tensor::requires_grad_(bool r) {
  SMP_CHECK(!r || smp::is_floating_point(dtype()),
            "requires_grad_: only floating-point tensors can require gradients, got {}",
            dtype_name(dtype()));
  auto& m = meta_of(*this);
  SMP_CHECK(!m.grad_fn || r,
            "requires_grad_: cannot turn off gradients of a non-leaf tensor; use detach()");
  m.requires_grad = r;
  return *this;
}

const Tensor& Tensor::grad() const {
  static const Tensor undefined;
  auto* m = impl().autograd.get();
  return m ? m->grad : undefined;
}

Tensor& Tensor::mutable_grad() const { return meta_of(*this).grad; }

void Tensor::set_grad(const Tensor& g) const {
  if (g.defined())
    SMP_CHECK(g.sizes() == sizes(), "set_grad: gradient shape {} does not match tensor shape {}",
              ops::shape_str(g.sizes()), ops::shape_str(sizes()));
  meta_of(*this).grad = g;
}

const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<autograd::Node> none;
  auto* m = impl().autograd.get();
  return m ? m->grad_fn : none;
}

bool Tensor::is_leaf() const { return grad_fn() == nullptr; }

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this}, {gradient}, retain_graph);
}

void Tensor::set_data(const Tensor& new_data) const {
  SMP_CHECK(new_data.defined(), "set_data: new_data is undefined");
  if (new_data.is_same(*this)) return;
  TensorImpl& dst = impl();
  const TensorImpl& s = new_data.impl();
  dst.storage = s.storage;
  dst.sizes = s.sizes;
  dst.strides = s.strides;
  dst.offset = s.offset;
  dst.dtype = s.dtype;
  dst.device = s.device;
  bump_version();
}

Tensor Tensor::detach() const {
  auto impl2 = std::make_shared<TensorImpl>();
  impl2->storage = impl().storage;
  impl2->sizes = sizes();
  impl2->strides = strides();
  impl2->offset = storage_offset();
  impl2->dtype = dtype();
  impl2->device = device();
  impl2->partition = impl().partition;
  return Tensor(impl2);
}

Tensor& Tensor::detach_() {
  if (impl().autograd) {
    impl().autograd->grad_fn.reset();
    impl().autograd->requires_grad = false;
  }
  return *this;
}

void Tensor::retain_grad() const {
  if (is_leaf()) return;
  auto& m = meta_of(*this);
  if (m.retains_grad) return;
  m.retains_grad = true;
  std::weak_ptr<TensorImpl> weak = impl_;
  grad_fn()->pre_hooks.emplace_back(m.output_nr, [weak](const Tensor& g) {
    if (auto p = weak.lock()) {
      auto& mm = *p->autograd;
      mm.grad = mm.grad.defined() ? ops::sum_gradients(mm.grad, g) : g.clone();
    }
    return Tensor();
  });
}

void Tensor::register_hook(std::function<Tensor(const Tensor&)> hook) const {
  SMP_CHECK(requires_grad(), "register_hook: tensor does not require grad");
  if (grad_fn()) grad_fn()->pre_hooks.emplace_back(meta_of(*this).output_nr, std::move(hook));
  else meta_of(*this).hooks.push_back(std::move(hook));
}

void Tensor::register_post_accumulate_grad_hook(std::function<void(Tensor&)> hook) const {
  SMP_CHECK(is_leaf() && requires_grad(),
            "register_post_accumulate_grad_hook: only leaf tensors that require grad have one");
  meta_of(*this).post_accumulate_hooks.push_back(std::move(hook));
}

}  // namespace smp
