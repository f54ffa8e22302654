// Elementwise iteration for CUDA kernels: operands of one shape with arbitrary strides,
// dims merged where every operand is contiguous across them, one grid-stride loop.
// Half and BFloat16 are stored as themselves and computed in float (acc_t).
#pragma once

#include <smp/engine/dtype.h>
#include <smp/engine/half.h>

#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "cuda/cuda_common.h"

namespace smp::cuda {

/// Compute type: float for the 16-bit floats, int64 for every integral type and bool.
template <class T>
struct AccType {
  using type = T;
};
template <>
struct AccType<Half> {
  using type = float;
};
template <>
struct AccType<BFloat16> {
  using type = float;
};
template <>
struct AccType<int32_t> {
  using type = int64_t;
};
template <>
struct AccType<uint8_t> {
  using type = int64_t;
};
template <>
struct AccType<bool> {
  using type = int64_t;
};
template <class T>
using acc_t = typename AccType<T>::type;

template <class T>
constexpr bool is_half_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

template <class To, class From>
__host__ __device__ inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, bool>) {
    if constexpr (is_half_v<From>)
      return static_cast<float>(v) != 0.0f;
    else
      return v != From(0);
  } else if constexpr (is_half_v<From>) {
    return static_cast<To>(static_cast<float>(v));
  } else if constexpr (is_half_v<To>) {
    return To(static_cast<float>(v));
  } else {
    return static_cast<To>(v);
  }
}

/// convert<To> as a functor for gpu_map.
template <class To, class From>
struct ConvertF {
  __device__ To operator()(From x) const { return convert<To>(x); }
};

constexpr int kMaxDims = 16;

/// Element offsets of N operands from a linear index over their common shape.
template <int N>
struct Indexer {
  int ndim = 1;
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];  // in elements, innermost dim last

  __device__ inline void offsets(int64_t i, int64_t (&off)[N]) const {
    if (ndim == 1) {
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] = i * strides[k][0];
      return;
    }
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t s = sizes[d];
      int64_t q = i / s;
      int64_t r = i - q * s;
      i = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += r * strides[k][d];
    }
  }
};

/// Geometry over `shape` of operands with the given element strides; merges dims that
/// are contiguous in every operand and drops size-1 dims.
template <int N>
Indexer<N> make_indexer(const Shape& shape, const std::array<const Shape*, N>& strides) {
  Indexer<N> ix;
  int nd = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    int64_t sz = shape[d];
    if (sz == 1) continue;
    bool merge = nd > 0;
    for (int k = 0; k < N && merge; ++k) merge = ix.strides[k][nd - 1] == (*strides[k])[d] * sz;
    if (merge) {
      ix.sizes[nd - 1] *= sz;
      for (int k = 0; k < N; ++k) ix.strides[k][nd - 1] = (*strides[k])[d];
    } else {
      SMP_CHECK(nd < kMaxDims, "CUDA kernels support at most {} non-mergeable dims, got more",
                kMaxDims);
      ix.sizes[nd] = sz;
      for (int k = 0; k < N; ++k) ix.strides[k][nd] = (*strides[k])[d];
      ++nd;
    }
  }
  if (nd == 0) {
    ix.sizes[0] = 1;
    for (int k = 0; k < N; ++k) ix.strides[k][0] = 0;
    nd = 1;
  }
  ix.ndim = nd;
  return ix;
}

template <int N>
Indexer<N> make_indexer(const std::array<const Tensor*, N>& ts) {
  std::array<const Shape*, N> st;
  for (int k = 0; k < N; ++k) st[k] = &ts[k]->strides();
  return make_indexer<N>(ts[0]->sizes(), st);
}

template <int N>
struct PtrPack {
  void* p[N];
};

template <class Out, class F, class... In, size_t... I>
__device__ inline void map_one(const Indexer<1 + sizeof...(In)>& ix,
                               const PtrPack<1 + sizeof...(In)>& ptrs, int64_t i, const F& f,
                               std::index_sequence<I...>) {
  int64_t off[1 + sizeof...(In)];
  ix.offsets(i, off);
  static_cast<Out*>(ptrs.p[0])[off[0]] = f(static_cast<const In*>(ptrs.p[I + 1])[off[I + 1]]...);
}

template <class Out, class F, class... In>
__global__ void map_kernel(int64_t n, Indexer<1 + sizeof...(In)> ix,
                           PtrPack<1 + sizeof...(In)> ptrs, F f) {
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    map_one<Out, F, In...>(ix, ptrs, i, f, std::index_sequence_for<In...>{});
}

/// out[i] = f(in0[i], in1[i], ...) over out's shape; every operand has out's shape (any
/// strides). `f` is a functor with a __device__ call operator taking In... and returning Out.
template <class Out, class... In, class F>
void gpu_map(const Tensor& out, std::array<const Tensor*, sizeof...(In)> ins, F f) {
  constexpr int N = 1 + static_cast<int>(sizeof...(In));
  int64_t n = out.numel();
  if (n == 0) return;
  std::array<const Tensor*, N> all;
  all[0] = &out;
  if constexpr (sizeof...(In) > 0) {
    for (size_t k = 0; k < sizeof...(In); ++k) {
      SMP_ASSERT(ins[k]->sizes() == out.sizes(), "gpu_map: operand shapes differ");
      all[k + 1] = ins[k];
    }
  }
  Indexer<N> ix = make_indexer<N>(all);
  PtrPack<N> ptrs;
  for (int k = 0; k < N; ++k) ptrs.p[k] = all[k]->data_ptr();
  DeviceGuard g(out);
  map_kernel<Out, F, In...><<<blocks_for(n), kThreads, 0, stream_of(out)>>>(n, ix, ptrs, f);
  SMP_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---- block reductions ---------------------------------------------------------------

/// Sum of `v` over the block; every thread gets the result. `shm` holds 32 values.
template <class T>
__device__ inline T block_sum(T v, T* shm) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // shm may still be read by a previous call
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  int nwarps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < nwarps ? shm[threadIdx.x] : T(0);
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if (threadIdx.x == 0) shm[0] = v;
  __syncthreads();
  return shm[0];
}

/// Combines `v` over a group of G consecutive threads (G = 32: a warp; G > 32: the whole
/// block, blockDim.x == G); every thread of the group gets the same result. `shm` holds
/// 32 values. All threads of the group must call it.
template <int G, class A, class F>
__device__ inline A group_all(A v, A* shm, F combine) {
  for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o));
  if constexpr (G > 32) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // shm may still be read by a previous call
    if (lane == 0) shm[warp] = v;
    __syncthreads();
    v = shm[0];
    for (int w = 1; w < G / 32; ++w) v = combine(v, shm[w]);
  }
  return v;
}

template <int G, class A>
__device__ inline A group_sum(A v, A* shm) {
  return group_all<G>(v, shm, [](A a, A b) { return a + b; });
}

template <int G, class A>
__device__ inline A group_max(A v, A* shm) {
  return group_all<G>(v, shm, [](A a, A b) { return a != a ? a : (b != b || b > a ? b : a); });
}

}  // namespace smp::cuda
