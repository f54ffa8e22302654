// The pinned (page-locked) host allocator, PyTorch's CachingHostAllocator. cudaHostAlloc and
// cudaFreeHost are slow (they map pages for the device; cudaFreeHost synchronises it), so freed
// blocks are kept and handed out again by size.
//
// A copy from a pinned block to a device is queued without the host waiting for it, so the DMA
// may still read the block after the host has freed it. The copy therefore records an event on
// its stream (record_pinned_use), and a freed block becomes reusable only once every event
// recorded for it has completed. Sizes round up to a power of two (at least 512 B); a request
// takes a free block of exactly its rounded size.
#include <smp/engine/cuda.h>
#include <smp/engine/device.h>
#include <smp/engine/storage.h>

#include <bit>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/cuda_common.h"

namespace smp::cuda {
namespace {

constexpr size_t kMinBlock = 512;

size_t round_size(size_t n) { return std::bit_ceil(n < kMinBlock ? kMinBlock : n); }

struct Block {
  size_t size = 0;
  bool in_use = false;
  int pending_events = 0;  // recorded copies not yet known to be complete
};

// An event recorded after a copy that reads `block`; events belong to the device they were
// created on, so the idle ones are pooled per device.
struct Use {
  cudaEvent_t event;
  int device;
  void* block;
};

class PinnedAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    size_t size = round_size(nbytes);
    {
      std::lock_guard<std::mutex> g(mu_);
      collect_completed();
      auto it = free_.find(size);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        blocks_[p].in_use = true;
        return p;
      }
    }
    // The process's device (smp::init sets it per rank), not device 0 on every rank: the
    // allocation creates a CUDA context on the current device when it has none.
    DeviceGuard dg(get_device());
    void* p = nullptr;
    cudaError_t e = cudaHostAlloc(&p, size, cudaHostAllocPortable);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      release_cached();
      e = cudaHostAlloc(&p, size, cudaHostAllocPortable);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      SMP_ERROR("out of pinned host memory: cudaHostAlloc of {} bytes failed: {}", size,
                cudaGetErrorString(e));
    }
    std::lock_guard<std::mutex> g(mu_);
    blocks_[p] = Block{size, true, 0};
    return p;
  }

  void deallocate(void* ptr, size_t) override {
    if (!ptr) return;
    std::lock_guard<std::mutex> g(mu_);
    auto it = blocks_.find(ptr);
    SMP_ASSERT(it != blocks_.end(), "freeing a pointer the pinned allocator did not hand out");
    Block& b = it->second;
    b.in_use = false;
    if (b.pending_events == 0) free_.emplace(b.size, ptr);
    // Otherwise collect_completed frees it once its copies are done.
  }

  bool record_use(const void* ptr, cudaStream_t stream) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = blocks_.find(const_cast<void*>(ptr));
    if (it == blocks_.end()) return false;
    collect_completed();  // keeps the queue short for a block copied every step
    int device = current_device();
    cudaEvent_t ev = take_event(device);
    SMP_CUDA_CHECK(cudaEventRecord(ev, stream));
    uses_.push_back(Use{ev, device, it->first});
    ++it->second.pending_events;
    return true;
  }

 private:
  // Caller holds mu_. Retires the events that have completed, oldest first, and frees the
  // blocks whose last copy they were.
  void collect_completed() {
    for (auto it = uses_.begin(); it != uses_.end();) {
      cudaError_t e = cudaEventQuery(it->event);
      if (e == cudaErrorNotReady) {
        (void)cudaGetLastError();
        ++it;
        continue;
      }
      SMP_CUDA_CHECK(e);
      idle_events_[it->device].push_back(it->event);
      Block& b = blocks_[it->block];
      if (--b.pending_events == 0 && !b.in_use) free_.emplace(b.size, it->block);
      it = uses_.erase(it);
    }
  }

  // Caller holds mu_; `device` is current.
  cudaEvent_t take_event(int device) {
    auto& pool = idle_events_[device];
    if (!pool.empty()) {
      cudaEvent_t ev = pool.back();
      pool.pop_back();
      return ev;
    }
    cudaEvent_t ev = nullptr;
    SMP_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    return ev;
  }

  // Gives the free blocks back to the driver (before retrying a failed allocation).
  void release_cached() {
    std::vector<void*> blocks;
    {
      std::lock_guard<std::mutex> g(mu_);
      collect_completed();
      for (auto& [size, p] : free_) {
        blocks.push_back(p);
        blocks_.erase(p);
      }
      free_.clear();
    }
    for (void* p : blocks) SMP_CUDA_CHECK(cudaFreeHost(p));
  }

  std::mutex mu_;
  std::unordered_map<void*, Block> blocks_;  // every block obtained from cudaHostAlloc
  std::multimap<size_t, void*> free_;        // reusable now: not in use, no pending copy
  std::deque<Use> uses_;
  std::map<int, std::vector<cudaEvent_t>> idle_events_;
};

// Leaked on purpose, as the device allocator: pinned tensors may die during static
// destruction, after the CUDA runtime has shut down.
PinnedAllocator& instance() {
  static auto* a = new PinnedAllocator();
  return *a;
}

// Registration builds the allocator object only; it makes no CUDA call.
const bool registered = [] {
  register_pinned_allocator(&instance());
  return true;
}();

}  // namespace

bool record_pinned_use(const void* ptr, cudaStream_t stream) {
  return instance().record_use(ptr, stream);
}

}  // namespace smp::cuda
