// Manual pipeline partitions: smp::partition scopes and smp::set_partition (SMP's API).
#pragma once

#include <smp/nn/module.h>

namespace smp {

/// RAII scope: modules constructed while it lives belong to pipeline partition `i`; the
/// innermost scope wins. Modules outside every scope go to `default_partition`. Under
/// auto_partition (the default) the auto-partitioner decides instead, as in SMP.
class partition {
 public:
  explicit partition(int i) : scope_(i) {}

 private:
  nn::PartitionScope scope_;
};

/// Puts `module` (and, unless they have their own, its descendants) on partition `i`.
inline void set_partition(nn::Module& module, int i) { module.set_partition(i); }

}  // namespace smp
