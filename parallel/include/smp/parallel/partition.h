// Manual pipeline partitions: smp::partition scopes and smp::set_partition (SMP's API).
#pragma once

#include <smp/nn/module.h>

namespace smp {

namespace detail {
/// The nn::Module attribute holding a module's pipeline partition.
inline constexpr const char* kPartitionAttribute = "smp.partition";
/// Checks i >= 0 and returns it (a ConfigError names the call otherwise).
int checked_partition(int i);
}  // namespace detail

/// RAII scope: modules constructed while it lives belong to pipeline partition `i`; the
/// innermost scope wins. Modules outside every scope go to `default_partition`. Under
/// auto_partition (the default) the auto-partitioner decides instead, as in SMP.
class partition {
 public:
  explicit partition(int i) : scope_(detail::kPartitionAttribute, detail::checked_partition(i)) {}

 private:
  nn::AttributeScope scope_;
};

/// Puts `module` (and, unless they have their own, its descendants) on partition `i`.
inline void set_partition(nn::Module& module, int i) {
  module.set_attribute(detail::kPartitionAttribute, detail::checked_partition(i));
}

/// The partition a scope or set_partition gave `module`, or -1 when none did (the
/// pipeline then decides).
inline int get_partition(const nn::Module& module) {
  return module.attribute(detail::kPartitionAttribute).value_or(-1);
}

}  // namespace smp
