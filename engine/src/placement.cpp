// The placement hook's per-thread state and scopes (see placement_scope.h).
#include "placement_scope.h"

#include "ops/op_utils.h"

#include <smp/engine/error.h>

namespace smp {

namespace detail {

thread_local constinit PlacementState t_placement SMP_TLS_INITIAL_EXEC{};

void OpScope::open_with(const char* op, const std::vector<const Tensor*>& inputs) {
  PlacementHook* hook = t_placement.hook;
  {
    // Whatever the hook runs (receives, copies) is not an op of the user's program.
    HookPause pause;
    placement_ = hook->place(op, inputs);
  }
  t_placement.scope = &placement_;
  open_ = true;
}

}  // namespace detail

PlacementHook* set_placement_hook(PlacementHook* hook) {
  PlacementHook* prev = detail::t_placement.hook;
  detail::t_placement.hook = hook;
  return prev;
}

PlacementHook* placement_hook() { return detail::t_placement.hook; }

const Placement* current_placement() { return detail::t_placement.scope; }

PlacementGuard::PlacementGuard(const Placement& p)
    : placement_(p), prev_(detail::t_placement.scope) {
  detail::t_placement.scope = &placement_;
}

PlacementGuard::~PlacementGuard() { detail::t_placement.scope = prev_; }

namespace detail {

int held_by(const Tensor& t) { return t.unsafe_impl()->partition; }

void set_held_by(const Tensor& t, int partition) { t.unsafe_impl()->partition = partition; }

void release_to_meta(const Tensor& t, int partition) {
  TensorImpl& impl = *t.unsafe_impl();
  impl.storage.reset();
  impl.device = Device(DeviceType::Meta);
  impl.offset = 0;
  impl.partition = partition;
  if (t.requires_grad() && t.grad().defined()) t.set_grad(Tensor());
}

void materialize(const Tensor& t, const Tensor& values) {
  SMP_CHECK(t.is_meta(), "materialize: the tensor (shape {}) already has values on {}",
            ops::shape_str(t.sizes()), t.device().str());
  SMP_CHECK(values.sizes() == t.sizes() && values.dtype() == t.dtype() && !values.is_meta(),
            "materialize: values of shape {} and dtype {} on {} cannot fill a meta tensor of "
            "shape {} and dtype {}",
            ops::shape_str(values.sizes()), dtype_name(values.dtype()), values.device().str(),
            ops::shape_str(t.sizes()), dtype_name(t.dtype()));
  TensorImpl& impl = *t.unsafe_impl();
  const TensorImpl& v = *values.unsafe_impl();
  impl.storage = v.storage;
  impl.strides = v.strides;
  impl.offset = v.offset;
  impl.device = v.device;
}

}  // namespace detail

}  // namespace smp
