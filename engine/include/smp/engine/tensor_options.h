// dtype / device / requires_grad bundle for factory functions (libtorch's TensorOptions).
#pragma once

#include <smp/engine/device.h>
#include <smp/engine/dtype.h>

#include <optional>

namespace smp {

/// Options for creating a tensor. Implicit from a Dtype or Device: `smp::zeros({2}, smp::kInt64)`.
class TensorOptions {
 public:
  TensorOptions() = default;
  TensorOptions(Dtype d) : dtype_(d) {}                 // NOLINT
  TensorOptions(Device d) : device_(d) {}               // NOLINT
  TensorOptions(DeviceType t) : device_(Device(t)) {}   // NOLINT
  TensorOptions(const char* d) : device_(Device(d)) {}  // NOLINT

  TensorOptions dtype(Dtype d) const { auto o = *this; o.dtype_ = d; return o; }
  TensorOptions device(Device d) const { auto o = *this; o.device_ = d; return o; }
  TensorOptions requires_grad(bool r) const { auto o = *this; o.requires_grad_ = r; return o; }
  /// Page-locked CPU memory (needs a CUDA device); honoured by empty, zeros, ones and full.
  TensorOptions pinned_memory(bool p) const { auto o = *this; o.pinned_memory_ = p; return o; }

  Dtype dtype() const { return dtype_.value_or(default_dtype()); }
  Device device() const { return device_.value_or(Device(DeviceType::CPU)); }
  bool requires_grad() const { return requires_grad_; }
  bool pinned_memory() const { return pinned_memory_; }
  bool has_dtype() const { return dtype_.has_value(); }
  bool has_device() const { return device_.has_value(); }

 private:
  std::optional<Dtype> dtype_;
  std::optional<Device> device_;
  bool requires_grad_ = false;
  bool pinned_memory_ = false;
};

inline TensorOptions dtype(Dtype d) { return TensorOptions(d); }
inline TensorOptions device(Device d) { return TensorOptions(d); }
inline TensorOptions requires_grad(bool r = true) { return TensorOptions().requires_grad(r); }

}  // namespace smp
