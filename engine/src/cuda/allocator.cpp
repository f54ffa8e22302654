// The CUDA caching allocator: one pool per device. Freed blocks go to a free list keyed by
// size and are handed to the next request that fits, without cudaFree/cudaMalloc (each of
// which synchronises the device). All our kernels run on one compute stream per device, so
// a block freed by the host can be reused at once: any later use is queued behind the
// kernels that still read it.
//
// Sizes: small requests round up to 512 B; requests above 1 MiB round up to 2 MiB, so
// blocks of similar sizes are interchangeable. A cached block serves a request if it is at
// most twice the rounded size (a loose best fit; blocks are never split).
#include <smp/engine/cuda.h>
#include <smp/engine/storage.h>

#include <array>
#include <map>
#include <mutex>
#include <unordered_map>

#include "cuda/cuda_common.h"

namespace smp::cuda {
namespace {

constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{2} << 20;
constexpr size_t kSmallLimit = size_t{1} << 20;
constexpr int kMaxDevices = 64;

size_t round_size(size_t n) {
  if (n <= kSmallLimit) return (n + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

struct Block {
  size_t size;
  int device;
};

struct DevicePool {
  std::multimap<size_t, void*> free_blocks;  // size -> ptr
  size_t allocated = 0;                      // bytes in blocks handed out
  size_t reserved = 0;                       // bytes obtained from cudaMalloc
};

class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    return allocate_on(nbytes, current_device());
  }

  void* allocate_on(size_t nbytes, int device) override {
    if (nbytes == 0) return nullptr;
    SMP_CHECK(device >= 0 && device < kMaxDevices && device < device_count(),
              "cannot allocate on cuda:{}: this process sees {} CUDA device(s)", device,
              device_count());
    size_t size = round_size(nbytes);
    std::lock_guard<std::mutex> g(mu_);
    DevicePool& pool = pools_[static_cast<size_t>(device)];
    auto it = pool.free_blocks.lower_bound(size);
    if (it != pool.free_blocks.end() && it->first <= 2 * size) {
      void* p = it->second;
      size_t bsize = it->first;
      pool.free_blocks.erase(it);
      live_[p] = Block{bsize, device};
      pool.allocated += bsize;
      return p;
    }
    void* p = nullptr;
    {
      DeviceGuard dg(device);
      cudaError_t e = cudaMalloc(&p, size);
      if (e == cudaErrorMemoryAllocation) {
        // Give the cache back to the driver and try once more before reporting.
        (void)cudaGetLastError();
        release_cached(device);
        e = cudaMalloc(&p, size);
      }
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        SMP_ERROR(
            "CUDA out of memory: tried to allocate {} bytes on cuda:{} ({} bytes in use, "
            "{} reserved by libsmp): {}",
            size, device, pool.allocated, pool.reserved, cudaGetErrorString(e));
      }
    }
    pool.reserved += size;
    pool.allocated += size;
    live_[p] = Block{size, device};
    return p;
  }

  void deallocate(void* ptr, size_t) override {
    if (!ptr) return;
    std::lock_guard<std::mutex> g(mu_);
    auto it = live_.find(ptr);
    SMP_ASSERT(it != live_.end(), "freeing a CUDA pointer this allocator did not hand out");
    Block b = it->second;
    live_.erase(it);
    DevicePool& pool = pools_[static_cast<size_t>(b.device)];
    pool.allocated -= b.size;
    pool.free_blocks.emplace(b.size, ptr);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> g(mu_);
    for (int d = 0; d < kMaxDevices && d < device_count(); ++d) release_cached(d);
  }

  size_t allocated(int device) {
    std::lock_guard<std::mutex> g(mu_);
    return pools_[static_cast<size_t>(device)].allocated;
  }
  size_t reserved(int device) {
    std::lock_guard<std::mutex> g(mu_);
    return pools_[static_cast<size_t>(device)].reserved;
  }

 private:
  // Caller holds mu_. Waits for the device's queued work, since a cached block may still be
  // read by a kernel that has not run yet.
  void release_cached(int device) {
    DevicePool& pool = pools_[static_cast<size_t>(device)];
    if (pool.free_blocks.empty()) return;
    DeviceGuard dg(device);
    SMP_CUDA_CHECK(cudaStreamSynchronize(compute_stream(device)));
    for (auto& [size, p] : pool.free_blocks) {
      SMP_CUDA_CHECK(cudaFree(p));
      pool.reserved -= size;
    }
    pool.free_blocks.clear();
  }

  std::mutex mu_;
  std::array<DevicePool, kMaxDevices> pools_;
  std::unordered_map<void*, Block> live_;
};

// Leaked on purpose: tensors freed during static destruction still find it, and it never
// calls cudaFree after the runtime has shut down.
CachingAllocator& instance() {
  static auto* a = new CachingAllocator();
  return *a;
}

// Registration builds the allocator object only; it makes no CUDA call.
const bool registered = [] {
  register_allocator(kCUDA, &instance());
  return true;
}();

}  // namespace

size_t memory_allocated() {
  if (!is_available()) return 0;
  return instance().allocated(current_device());
}

size_t memory_reserved() {
  if (!is_available()) return 0;
  return instance().reserved(current_device());
}

void empty_cache() {
  if (!is_available()) return;
  instance().empty_cache();
}

}  // namespace smp::cuda
