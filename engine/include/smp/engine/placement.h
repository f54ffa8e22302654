// The pipeline's placement hook: decides, op by op, which rank computes an op's values and
// which ranks only infer its shapes (meta outputs). See docs/placement.md.
#pragma once

#include <smp/engine/tensor.h>

#include <vector>

namespace smp {

/// Where one op runs, as the pipeline decides it.
struct Placement {
  /// Partition holding the op's outputs; -1: every rank holds them (replicated).
  int partition = -1;
  /// This rank computes the values; false: outputs are meta (shapes only).
  bool local = true;
  /// The device this rank computes on. A random op that runs on meta here still advances this
  /// device's generator, so every rank's generator stays where a one-process run's would be.
  Device compute_device = Device(DeviceType::CPU);
};

/// Decides, for every op a thread runs while installed, where the op executes.
class PlacementHook {
 public:
  virtual ~PlacementHook() = default;
  /// Called once per outermost op with its tensor inputs (undefined tensors omitted), before the op
  /// validates or computes anything. It may give a meta input its values in place
  /// (detail::materialize) so that the op computes with it. Ops the hook itself runs do not
  /// consult it (they run as without a hook).
  virtual Placement place(const char* op, const std::vector<const Tensor*>& inputs) = 0;
};

/// Installs `hook` for ops run on the calling thread (nullptr: none). Returns the previous hook.
PlacementHook* set_placement_hook(PlacementHook* hook);
PlacementHook* placement_hook();
/// The placement of the op running on this thread (outermost op), or nullptr outside ops / without
/// a hook.
const Placement* current_placement();

/// RAII: forces a placement on this thread (ops inside do not consult the hook). Autograd uses it
/// to run a node's backward where its forward ran; parallel/ may use it too.
class PlacementGuard {
 public:
  explicit PlacementGuard(const Placement& p);
  ~PlacementGuard();
  PlacementGuard(const PlacementGuard&) = delete;
  PlacementGuard& operator=(const PlacementGuard&) = delete;

 private:
  Placement placement_;
  const Placement* prev_;
};

/// What a pipeline needs to do to a tensor's value in place, in the engine's terms; every
/// handle to the tensor sees the change. parallel/ calls these instead of writing TensorImpl.
namespace detail {

/// The partition holding t's value (an op's outputs take its placement's partition; -1:
/// every rank holds it).
int held_by(const Tensor& t);
/// Records that `partition` holds t's value (-1: every rank).
void set_held_by(const Tensor& t, int partition);
/// Releases t's storage: t becomes a meta tensor of the same shape and dtype whose value
/// `partition` holds, and a gradient it had is dropped. Autograd identity is kept.
void release_to_meta(const Tensor& t, int partition);
/// Gives the meta tensor t the values of `values` (same shape and dtype), e.g. received
/// from the rank that computed them. t had no value before, so its version stays: autograd
/// nodes that saved t (as meta) see the values rather than a modification.
void materialize(const Tensor& t, const Tensor& values);

}  // namespace detail

}  // namespace smp
