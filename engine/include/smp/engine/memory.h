// Memory statistics of the CPU device (the CUDA ones are in smp/engine/cuda.h).
#pragma once

#include <cstdint>

namespace smp::cpu {

/// Bytes of CPU tensor storage alive now (what tensors hold, not what the allocator caches).
int64_t memory_allocated();
/// The most memory_allocated() has been since the start or the last reset.
int64_t max_memory_allocated();
/// Starts a new peak from the current amount.
void reset_peak_memory_stats();

}  // namespace smp::cpu
