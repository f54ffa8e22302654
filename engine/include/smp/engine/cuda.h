// CUDA switches visible to users; all of them are harmless in a build without CUDA.
#pragma once

#include <cstddef>

namespace smp::cuda {

/// Allow TF32 tensor-core math in float32 GEMM and convolution (off by default, so results
/// match float32 on the CPU).
void set_allow_tf32(bool allow);
bool allow_tf32();
/// Waits for all work queued on the current device's compute stream.
void synchronize();
/// Whether this build was compiled with CUDA support.
bool is_compiled();
/// Bytes currently held by the caching allocator, in use and cached.
std::size_t memory_allocated();
std::size_t memory_reserved();
void empty_cache();

}  // namespace smp::cuda
