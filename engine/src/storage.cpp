#include <smp/engine/error.h>
#include <smp/engine/storage.h>

#include <cstdlib>
#include <new>

namespace smp {

namespace {

/// 64-byte aligned host memory: a cache line and a full AVX-512 register.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    size_t rounded = (nbytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    SMP_CHECK(p != nullptr, "out of host memory allocating {} bytes", nbytes);
    return p;
  }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
};

Allocator*& slot(DeviceType t) {
  static CpuAllocator cpu;
  static Allocator* slots[kNumDeviceTypes] = {&cpu, nullptr, nullptr};
  return slots[static_cast<int>(t)];
}

}  // namespace

Allocator* get_allocator(DeviceType type) { return slot(type); }
void register_allocator(DeviceType type, Allocator* alloc) { slot(type) = alloc; }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_meta()) return;
  allocator_ = get_allocator(device.type());
  SMP_CHECK(allocator_ != nullptr, "cannot allocate on {}: this build has no support for it",
            device.str());
  data_ = allocator_->allocate_on(nbytes, device.index());
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter)
    : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}

Storage::~Storage() {
  if (allocator_ && data_) allocator_->deallocate(data_, nbytes_);
  else if (deleter_) deleter_(data_);
}

}  // namespace smp
