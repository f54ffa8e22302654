// Reference-counted device memory that tensors view.
#pragma once

#include <smp/engine/device.h>

#include <cstddef>
#include <functional>
#include <memory>

namespace smp {

/// Hands out device memory; CPU is 64-byte aligned, CUDA is a caching allocator.
class Allocator {
 public:
  virtual ~Allocator() = default;
  /// Returns memory of at least `nbytes` (nullptr for 0); `deallocate` gives it back.
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  /// Memory on device `index` of this allocator's type (CUDA); host allocators ignore it.
  virtual void* allocate_on(size_t nbytes, int index) {
    (void)index;
    return allocate(nbytes);
  }
};

/// The allocator for a device type, or nullptr where none is registered (meta, CUDA-less build).
Allocator* get_allocator(DeviceType type);
void register_allocator(DeviceType type, Allocator* alloc);

/// Page-locked host memory, which CUDA copies read by DMA without staging it; nullptr where no
/// backend provides one (a build without CUDA).
Allocator* get_pinned_allocator();
void register_pinned_allocator(Allocator* alloc);

/// A block of memory on one device. Shared by every view of it. `data` is null for meta.
class Storage {
 public:
  /// Allocates `nbytes` on `device` (nothing for meta).
  Storage(size_t nbytes, Device device);
  /// Allocates `nbytes` of host memory from `allocator` (the pinned one); device is CPU.
  Storage(size_t nbytes, Allocator* allocator);
  /// Wraps memory owned elsewhere; `deleter` (may be empty) runs when the last view dies.
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  const Device& device() const { return device_; }
  /// Whether the memory came from the pinned (page-locked) host allocator.
  bool is_pinned() const { return allocator_ != nullptr && allocator_ == get_pinned_allocator(); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  std::function<void(void*)> deleter_;
};

}  // namespace smp
