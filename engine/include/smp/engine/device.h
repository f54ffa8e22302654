// Where a tensor's data lives: host memory, a CUDA device, or nowhere (meta).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>

namespace smp {

enum class DeviceType : int8_t { CPU = 0, CUDA = 1, Meta = 2 };
constexpr int kNumDeviceTypes = 3;
constexpr DeviceType kCPU = DeviceType::CPU;
constexpr DeviceType kCUDA = DeviceType::CUDA;
constexpr DeviceType kMeta = DeviceType::Meta;

/// A device: type plus index (only CUDA uses the index). Parses "cpu", "cuda", "cuda:1", "meta".
class Device {
 public:
  Device(DeviceType type = DeviceType::CPU, int index = 0);  // NOLINT: implicit like torch::Device
  Device(const std::string& spec);                           // NOLINT
  Device(const char* spec) : Device(std::string(spec)) {}    // NOLINT

  DeviceType type() const { return type_; }
  int index() const { return index_; }
  bool is_cpu() const { return type_ == DeviceType::CPU; }
  bool is_cuda() const { return type_ == DeviceType::CUDA; }
  bool is_meta() const { return type_ == DeviceType::Meta; }
  std::string str() const;

  bool operator==(const Device& o) const { return type_ == o.type_ && index_ == o.index_; }
  bool operator!=(const Device& o) const { return !(*this == o); }

 private:
  DeviceType type_;
  int index_;
};

namespace cuda {
/// Number of CUDA devices visible to this process (0 in a build without CUDA).
int device_count();
bool is_available();
/// The device that "cuda" without an index names, for the whole process (every thread).
/// smp::init sets it to cuda:local_rank; an index this process cannot see is an smp::Error.
void set_device(int index);
int get_device();
}  // namespace cuda

}  // namespace smp

template <>
struct fmt::formatter<smp::Device> : fmt::formatter<std::string> {
  template <class Ctx>
  auto format(const smp::Device& d, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(d.str(), ctx);
  }
};
