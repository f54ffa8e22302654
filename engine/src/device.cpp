#include <smp/engine/device.h>
#include <smp/engine/error.h>

#include <cstdlib>

namespace smp {

Device::Device(DeviceType type, int index) : type_(type), index_(type == kCUDA ? index : 0) {
  SMP_CHECK(index >= 0, "Device: index must be >= 0, got {}", index);
}

Device::Device(const std::string& spec) : type_(kCPU), index_(0) {
  std::string name = spec, idx;
  auto colon = spec.find(':');
  if (colon != std::string::npos) {
    name = spec.substr(0, colon);
    idx = spec.substr(colon + 1);
  }
  if (name == "cpu")
    type_ = kCPU;
  else if (name == "cuda")
    type_ = kCUDA;
  else if (name == "meta")
    type_ = kMeta;
  else
    SMP_ERROR("Device: unknown device '{}'; expected cpu, cuda, cuda:N or meta", spec);
  if (!idx.empty()) {
    char* end = nullptr;
    long v = std::strtol(idx.c_str(), &end, 10);
    SMP_CHECK(end && *end == '\0' && v >= 0, "Device: bad index in '{}'; expected e.g. cuda:0",
              spec);
    SMP_CHECK(type_ == kCUDA || v == 0, "Device: '{}' has an index, only cuda takes one", spec);
    index_ = static_cast<int>(v);
  } else if (type_ == kCUDA) {
    index_ = cuda::get_device();
  }
}

std::string Device::str() const {
  switch (type_) {
    case kCPU:
      return "cpu";
    case kCUDA:
      return "cuda:" + std::to_string(index_);
    case kMeta:
      return "meta";
  }
  return "?";
}

}  // namespace smp
