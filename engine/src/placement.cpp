// The placement hook's per-thread state and scopes (see placement_scope.h).
#include "placement_scope.h"

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

}  // namespace smp
