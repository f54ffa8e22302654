#include <smp/engine/error.h>
#include <smp/engine/memory.h>
#include <smp/engine/storage.h>

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace smp {

namespace {

/// 64-byte aligned host memory (a cache line and a full AVX-512 register), with a cache of freed
/// blocks.
///
/// Fresh large buffers come from mmap and cost a page fault plus kernel zeroing on every first
/// touch; a training step frees and re-allocates the same activation sizes each iteration, so
/// keeping freed blocks and handing them out again removes that cost. Blocks of at least
/// kMinCached bytes are rounded up to a size class — four classes per power of two, so at most
/// 25% waste — and freed blocks wait in a LIFO list per class. The cache holds at most
/// `limit_` bytes (SMP_CPU_CACHE_MB, default 1 GiB; 0 turns caching off); a block that would
/// exceed it first evicts the largest cached blocks. Smaller blocks go straight to malloc,
/// which already recycles them cheaply.
class CpuAllocator final : public Allocator {
 public:
  CpuAllocator() : limit_(read_limit()) {}

  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    if (nbytes < kMinCached || limit_ == 0) return system_alloc(round64(nbytes), nbytes);
    int cls = size_class(nbytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& list = free_[cls];
      if (!list.empty()) {
        void* p = list.back();
        list.pop_back();
        cached_ -= class_bytes(cls);
        return p;
      }
    }
    return system_alloc(class_bytes(cls), nbytes);
  }

  void deallocate(void* ptr, size_t nbytes) override {
    if (!ptr) return;
    if (nbytes < kMinCached || limit_ == 0) return std::free(ptr);
    int cls = size_class(nbytes);
    size_t bytes = class_bytes(cls);
    if (bytes > limit_) return std::free(ptr);
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Evict from the largest classes down until the block fits under the limit.
      for (int c = kNumClasses - 1; c >= 0 && cached_ + bytes > limit_; --c) {
        auto& list = free_[c];
        while (!list.empty() && cached_ + bytes > limit_) {
          evicted.push_back(list.front());
          list.erase(list.begin());  // oldest first; lists are short
          cached_ -= class_bytes(c);
        }
      }
      free_[cls].push_back(ptr);
      cached_ += bytes;
    }
    for (void* p : evicted) std::free(p);
  }

  /// Frees every cached block (used before retrying a failed allocation).
  void empty_cache() {
    std::vector<void*> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& list : free_) {
        all.insert(all.end(), list.begin(), list.end());
        list.clear();
      }
      cached_ = 0;
    }
    for (void* p : all) std::free(p);
  }

 private:
  static constexpr size_t kMinCached = 4096;
  static constexpr int kSubClasses = 4;  // size classes per power of two
  static constexpr int kNumClasses = 64 * kSubClasses;

  static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

  // Class c covers sizes up to (4 + c % 4) · 2^(c / 4 - 2): 1, 1.25, 1.5, 1.75 × 2^k.
  static int size_class(size_t n) {
    int k = std::bit_width(n - 1) - 1;  // 2^k < n <= 2^(k+1)  (n >= 4096, so k >= 11)
    size_t step = size_t{1} << (k - 2);
    int sub = static_cast<int>((n - (size_t{1} << k) + step - 1) / step);  // 1..4
    return k * kSubClasses + sub - 1;
  }
  static size_t class_bytes(int c) {
    int k = c / kSubClasses, sub = c % kSubClasses + 1;
    return (size_t{1} << k) + static_cast<size_t>(sub) * (size_t{1} << (k - 2));
  }

  static size_t read_limit() {
    if (const char* s = std::getenv("SMP_CPU_CACHE_MB")) {
      try {
        return static_cast<size_t>(std::stoull(s)) << 20;
      } catch (...) {
      }
    }
    return size_t{1} << 30;
  }

  void* system_alloc(size_t bytes, size_t requested) {
    void* p = std::aligned_alloc(64, bytes);
    if (!p) {
      empty_cache();
      p = std::aligned_alloc(64, bytes);
    }
    SMP_CHECK(p != nullptr, "out of host memory allocating {} bytes", requested);
    return p;
  }

  const size_t limit_;
  std::mutex mu_;
  size_t cached_ = 0;
  std::array<std::vector<void*>, kNumClasses> free_;
};

Allocator*& slot(DeviceType t) {
  // Never destroyed: tensors in other static objects may be freed after this one would be.
  static CpuAllocator* cpu = new CpuAllocator();
  static Allocator* slots[kNumDeviceTypes] = {cpu, nullptr, nullptr};
  return slots[static_cast<int>(t)];
}

}  // namespace

Allocator* get_allocator(DeviceType type) { return slot(type); }
void register_allocator(DeviceType type, Allocator* alloc) { slot(type) = alloc; }

namespace {
Allocator*& pinned_slot() {
  static Allocator* pinned = nullptr;
  return pinned;
}
}  // namespace

Allocator* get_pinned_allocator() { return pinned_slot(); }
void register_pinned_allocator(Allocator* alloc) { pinned_slot() = alloc; }

namespace {
// Bytes of CPU storage alive, and the most since the last reset (smp/engine/memory.h).
std::atomic<int64_t> g_cpu_in_use{0};
std::atomic<int64_t> g_cpu_peak{0};

void count_cpu(int64_t delta) {
  const int64_t now = g_cpu_in_use.fetch_add(delta) + delta;
  int64_t peak = g_cpu_peak.load();
  while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

namespace cpu {
int64_t memory_allocated() { return g_cpu_in_use.load(); }
int64_t max_memory_allocated() { return g_cpu_peak.load(); }
void reset_peak_memory_stats() { g_cpu_peak.store(g_cpu_in_use.load()); }
}  // namespace cpu

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_meta()) return;
  allocator_ = get_allocator(device.type());
  SMP_CHECK(allocator_ != nullptr, "cannot allocate on {}: this build has no support for it",
            device.str());
  data_ = allocator_->allocate_on(nbytes, device.index());
  if (device.is_cpu()) count_cpu(static_cast<int64_t>(nbytes));
}

Storage::Storage(size_t nbytes, Allocator* allocator)
    : nbytes_(nbytes), device_(kCPU), allocator_(allocator) {
  SMP_ASSERT(allocator_ != nullptr, "Storage: null allocator");
  data_ = allocator_->allocate(nbytes);
  count_cpu(static_cast<int64_t>(nbytes));
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter)
    : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}

Storage::~Storage() {
  if (allocator_ && device_.is_cpu()) count_cpu(-static_cast<int64_t>(nbytes_));
  if (allocator_ && data_)
    allocator_->deallocate(data_, nbytes_);
  else if (deleter_)
    deleter_(data_);
}

}  // namespace smp
