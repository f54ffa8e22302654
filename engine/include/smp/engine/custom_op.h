// Ops written outside the engine (parallel/'s tensor-parallel collectives) that must look like
// one engine op to the placement hook, as a torch.autograd.Function looks like one op to
// PyTorch's dispatcher.
#pragma once

#include <smp/engine/placement.h>
#include <smp/engine/tensor.h>

#include <memory>
#include <vector>

namespace smp {

namespace detail {
class OpScope;
}

/// RAII: the code in its scope is one op named `op` with tensor inputs `inputs`, as the front
/// end of an engine op is. With a placement hook installed and no op running yet, the hook is
/// asked once (it may give a meta input its value); tensors made inside (empty(), other ops)
/// follow its placement, and autograd::record() inside stores it on the node, so backward runs
/// where the forward ran.
class CustomOpScope {
 public:
  CustomOpScope(const char* op, const std::vector<Tensor>& inputs);
  ~CustomOpScope();
  CustomOpScope(const CustomOpScope&) = delete;
  CustomOpScope& operator=(const CustomOpScope&) = delete;

  /// False when the placement puts the op on another rank: its outputs are meta (empty()
  /// makes them so) and it must not communicate or compute.
  bool computes_here() const { return placement_computes_here(); }

  /// The same question anywhere (a backward function asks it under its node's placement).
  static bool placement_computes_here() {
    const Placement* p = current_placement();
    return p == nullptr || p->local;
  }

 private:
  std::unique_ptr<detail::OpScope> scope_;
};

}  // namespace smp
