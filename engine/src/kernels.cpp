#include "kernels.h"

namespace smp::kernels {

KernelTable& table(DeviceType type) {
  static KernelTable tables[kNumDeviceTypes];
  return tables[static_cast<int>(type)];
}

}  // namespace smp::kernels
