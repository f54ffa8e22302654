#include "kernels.h"

namespace smp::kernels {

KernelTable& table(DeviceType type) {
  static KernelTable tables[kNumDeviceTypes];
  return tables[static_cast<int>(type)];
}

namespace {
thread_local bool t_non_blocking = false;
}

bool non_blocking_copy() { return t_non_blocking; }
NonBlockingCopyScope::NonBlockingCopyScope(bool on) : prev_(t_non_blocking) { t_non_blocking = on; }
NonBlockingCopyScope::~NonBlockingCopyScope() { t_non_blocking = prev_; }

}  // namespace smp::kernels
