// Helpers shared by the CUDA kernels of the nn ops (softmax.cu, layer_norm.cu,
// batch_norm.cu, pool.cu, loss.cu, index.cu): typed data pointers, atomic accumulation, the
// row-group launch of row-wise ops, and the (outer, D, inner) view of a tensor around one dim.
//
// Row-wise ops give each row to a group of G threads (a warp for short rows, a block for
// long ones) and combine within the group by shuffles, so results do not depend on the
// launch geometry.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <limits>

#include "cuda/loops.cuh"

namespace smp::cuda {

template <class A>
__device__ inline A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}

template <class T>
const T* cptr(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data_ptr()) : nullptr;
}
template <class T>
T* mptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// Accumulating stores where several threads may hit one element.
template <class T>
__device__ inline void atomic_add(T* p, acc_t<T> v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    atomicAdd(p, v);
  } else if constexpr (std::is_same_v<T, Half>) {
    atomicAdd(reinterpret_cast<__half*>(p), __float2half_rn(v));
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    atomicAdd(reinterpret_cast<__nv_bfloat16*>(p), __float2bfloat16_rn(v));
  } else if constexpr (std::is_same_v<T, int64_t>) {
    atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
  } else if constexpr (std::is_same_v<T, int32_t>) {
    atomicAdd(p, static_cast<int32_t>(v));
  }
}

#define SMP_DISPATCH_ATOMIC(dt, name, ...)                                               \
  SMP_DISPATCH_SWITCH(dt, name,                                                          \
                      SMP_DTYPE_CASE(Float32, float, __VA_ARGS__)                        \
                          SMP_DTYPE_CASE(Float64, double, __VA_ARGS__)                   \
                              SMP_DTYPE_CASE(Float16, ::smp::Half, __VA_ARGS__)          \
                                  SMP_DTYPE_CASE(BFloat16, ::smp::BFloat16, __VA_ARGS__) \
                                      SMP_DTYPE_CASE(Int64, int64_t, __VA_ARGS__)        \
                                          SMP_DTYPE_CASE(Int32, int32_t, __VA_ARGS__))

/// Rows handled by one group: loops `row` over [0, rows) for the calling thread's group.
#define SMP_FOR_EACH_ROW(G, row, rows)                                                          \
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / (G)) + threadIdx.x / (G); \
       row < (rows); row += static_cast<int64_t>(gridDim.x) * (blockDim.x / (G)))

template <class F>
void launch_rows(int64_t rows, int64_t len, cudaStream_t st, F&& f) {
  // f(G, grid, block)
  if (len <= 1024)
    f(std::integral_constant<int, 32>{}, blocks_for(rows, kThreads / 32), kThreads, st);
  else
    f(std::integral_constant<int, 256>{}, blocks_for(rows, 1), 256, st);
}

// Threads of the one-block kernels: a block per channel (batch norm), one block (NLL loss).
constexpr int kBnThreads = 512;

inline void outer_dim_inner(const Tensor& t, int64_t dim, int64_t& outer, int64_t& D,
                            int64_t& inner) {
  outer = 1;
  inner = 1;
  D = t.dim() == 0 ? 1 : t.size(dim);
  for (int64_t d = 0; d < dim; ++d) outer *= t.size(d);
  for (int64_t d = dim + 1; d < t.dim(); ++d) inner *= t.size(d);
}

}  // namespace smp::cuda
