// CUDA reductions: sum/mean/prod/max/min over any set of dims, and max/min with indices
// along one dim.
//
// The input is seen as (M outputs) × (K reduced elements) through two indexers, so no
// permuted copy is made. A group of G threads reduces one output: G = 1 for tiny K (reads
// coalesce across neighbouring outputs), a warp for moderate K, a whole block for large K.
// When there are few outputs and K is huge, K is split into chunks whose partials a second
// pass combines in a fixed order, so results are deterministic.
#include <limits>

#include "cuda/loops.cuh"
#include "kernels.h"

namespace smp::cuda {
namespace {

using kernels::ReduceOp;

template <class A>
__device__ inline bool nan_of(A x) {
  if constexpr (std::is_floating_point_v<A>)
    return x != x;
  else
    return false;
}

template <class A>
__device__ inline A red_init(int op) {
  switch (static_cast<ReduceOp>(op)) {
    case ReduceOp::Sum:
    case ReduceOp::Mean:
      return A(0);
    case ReduceOp::Prod:
      return A(1);
    case ReduceOp::Max:
      return std::numeric_limits<A>::has_infinity ? -std::numeric_limits<A>::infinity()
                                                  : std::numeric_limits<A>::lowest();
    case ReduceOp::Min:
      return std::numeric_limits<A>::has_infinity ? std::numeric_limits<A>::infinity()
                                                  : std::numeric_limits<A>::max();
  }
  return A(0);
}

// NaN wins in max/min, as in PyTorch.
template <class A>
__device__ inline A red_combine(int op, A a, A b) {
  switch (static_cast<ReduceOp>(op)) {
    case ReduceOp::Sum:
    case ReduceOp::Mean:
      return a + b;
    case ReduceOp::Prod:
      return a * b;
    case ReduceOp::Max:
      return nan_of(a) ? a : (nan_of(b) || b > a ? b : a);
    case ReduceOp::Min:
      return nan_of(a) ? a : (nan_of(b) || b < a ? b : a);
  }
  return a;
}

template <class A>
__device__ inline A red_finish(int op, A a, int64_t K) {
  if (static_cast<ReduceOp>(op) == ReduceOp::Mean) return a / static_cast<A>(K);
  return a;
}

// Combines `acc` across the G threads of a group; lane 0 of the group gets the result.
template <int G, class A>
__device__ inline A group_reduce(int op, A acc, A* shm) {
  if constexpr (G == 1) {
    return acc;
  } else {
    for (int o = 16; o > 0; o >>= 1)
      acc = red_combine(op, acc, __shfl_down_sync(0xffffffffu, acc, o));
    if constexpr (G > 32) {
      int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
      if (lane == 0) shm[warp] = acc;
      __syncthreads();
      if (warp == 0) {
        acc = lane < G / 32 ? shm[lane] : red_init<A>(op);
        for (int o = 16; o > 0; o >>= 1)
          acc = red_combine(op, acc, __shfl_down_sync(0xffffffffu, acc, o));
      }
      __syncthreads();  // shm is reused by the next output
    }
    return acc;
  }
}

// Groups of G threads over M·P (output, chunk) pairs. With partial == nullptr (P == 1) the
// result is finished into out; otherwise raw partials go to partial[o·P + c].
template <class T, int G>
__global__ void reduce_kernel(const T* in, T* out, acc_t<T>* partial, int op, int64_t M, int64_t K,
                              int64_t P, int64_t chunk, Indexer<2> outer, Indexer<1> inner) {
  using A = acc_t<T>;
  __shared__ A shm[32];
  const int64_t per_block = blockDim.x / G;
  const int lane = static_cast<int>(threadIdx.x % G);
  const int64_t total = M * P;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / G; g < total;
       g += static_cast<int64_t>(gridDim.x) * per_block) {
    int64_t o = g / P, c = g - (g / P) * P;
    int64_t off[2];
    outer.offsets(o, off);
    int64_t r0 = c * chunk, r1 = r0 + chunk < K ? r0 + chunk : K;
    A acc = red_init<A>(op);
    for (int64_t r = r0 + lane; r < r1; r += G) {
      int64_t io[1];
      inner.offsets(r, io);
      acc = red_combine(op, acc, convert<A>(in[off[0] + io[0]]));
    }
    acc = group_reduce<G>(op, acc, shm);
    if (lane == 0) {
      if (partial)
        partial[g] = acc;
      else
        out[off[1]] = convert<T>(red_finish(op, acc, K));
    }
  }
}

template <class T>
__global__ void reduce_partials_kernel(const acc_t<T>* partial, T* out, int op, int64_t M,
                                       int64_t K, int64_t P, Indexer<2> outer) {
  using A = acc_t<T>;
  int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < M;
       o += stride) {
    A acc = red_init<A>(op);
    for (int64_t c = 0; c < P; ++c) acc = red_combine(op, acc, partial[o * P + c]);
    int64_t off[2];
    outer.offsets(o, off);
    out[off[1]] = convert<T>(red_finish(op, acc, K));
  }
}

struct Split {
  Indexer<2> outer;  // kept dims: (input, output) strides
  Indexer<1> inner;  // reduced dims: input strides
  int64_t M = 1, K = 1;
};

Split split_dims(const Tensor& out, const Tensor& in, const IntList& dims) {
  Split s;
  Shape kept = in.sizes(), red, red_strides;
  for (auto d : dims) {
    kept[static_cast<size_t>(d)] = 1;
    red.push_back(in.size(d));
    red_strides.push_back(in.stride(d));
  }
  s.outer = make_indexer<2>(kept, {&in.strides(), &out.strides()});
  s.inner = make_indexer<1>(red, {&red_strides});
  for (auto k : kept) s.M *= k;
  for (auto r : red) s.K *= r;
  return s;
}

template <class T>
void reduce_typed(ReduceOp op, const Tensor& out, const Tensor& in, const IntList& dims) {
  using A = acc_t<T>;
  Split s = split_dims(out, in, dims);
  const T* ip = static_cast<const T*>(in.data_ptr());
  T* op_ = static_cast<T*>(out.data_ptr());
  cudaStream_t st = stream_of(out);
  int o = static_cast<int>(op);
  if (s.K <= 16) {
    reduce_kernel<T, 1><<<blocks_for(s.M), kThreads, 0, st>>>(ip, op_, nullptr, o, s.M, s.K, 1, s.K,
                                                              s.outer, s.inner);
  } else if (s.K <= 1024) {
    reduce_kernel<T, 32><<<blocks_for(s.M, kThreads / 32), kThreads, 0, st>>>(
        ip, op_, nullptr, o, s.M, s.K, 1, s.K, s.outer, s.inner);
  } else if (s.M >= 512 || s.K < 65536) {
    reduce_kernel<T, 256><<<blocks_for(s.M, 1), 256, 0, st>>>(ip, op_, nullptr, o, s.M, s.K, 1, s.K,
                                                              s.outer, s.inner);
  } else {
    // Few outputs, long rows: chunks of >= 16K elements, at most 512 per output.
    int64_t P = std::min<int64_t>((s.K + 16383) / 16384, 512);
    int64_t chunk = (s.K + P - 1) / P;
    Workspace ws(static_cast<size_t>(s.M * P) * sizeof(A), out.device().index());
    A* partial = static_cast<A*>(ws.data());
    reduce_kernel<T, 256><<<blocks_for(s.M * P, 1), 256, 0, st>>>(ip, op_, partial, o, s.M, s.K, P,
                                                                  chunk, s.outer, s.inner);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
    reduce_partials_kernel<T>
        <<<blocks_for(s.M), kThreads, 0, st>>>(partial, op_, o, s.M, s.K, P, s.outer);
  }
  SMP_CUDA_KERNEL_LAUNCH_CHECK();
}

void reduce_cuda(ReduceOp op, const Tensor& out, const Tensor& in, const IntList& dims) {
  SMP_CHECK(out.dtype() == in.dtype(), "reduce: output dtype {} differs from input dtype {}",
            dtype_name(out.dtype()), dtype_name(in.dtype()));
  if (out.numel() == 0) return;
  DeviceGuard g(out);
  SMP_DISPATCH_ALL(in.dtype(), "reduce", [&] { reduce_typed<scalar_t>(op, out, in, dims); });
}

// ---- max/min with indices ---------------------------------------------------------------

// Whether (bv, bi) beats (av, ai): NaN wins, ties go to the lower index (first occurrence).
template <class A>
__device__ inline bool arg_better(bool is_max, A av, int64_t ai, A bv, int64_t bi) {
  if (nan_of(av)) return nan_of(bv) && bi < ai;
  if (nan_of(bv)) return true;
  if (bv == av) return bi < ai;
  return is_max ? bv > av : bv < av;
}

template <class T, int G>
__global__ void reduce_arg_kernel(const T* in, T* values, int64_t* indices, bool is_max, int64_t M,
                                  int64_t K, int64_t kstride, Indexer<2> outer) {
  using A = acc_t<T>;
  __shared__ A shv[32];
  __shared__ int64_t shi[32];
  const int64_t per_block = blockDim.x / G;
  const int lane = static_cast<int>(threadIdx.x % G);
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * per_block + threadIdx.x / G; g < M;
       g += static_cast<int64_t>(gridDim.x) * per_block) {
    int64_t off[2];
    outer.offsets(g, off);
    A bv = red_init<A>(is_max ? static_cast<int>(ReduceOp::Max) : static_cast<int>(ReduceOp::Min));
    int64_t bi = std::numeric_limits<int64_t>::max();
    for (int64_t r = lane; r < K; r += G) {
      A v = convert<A>(in[off[0] + r * kstride]);
      if (arg_better(is_max, bv, bi, v, r)) {
        bv = v;
        bi = r;
      }
    }
    if constexpr (G > 1) {
      for (int o = 16; o > 0; o >>= 1) {
        A ov = __shfl_down_sync(0xffffffffu, bv, o);
        int64_t oi = __shfl_down_sync(0xffffffffu, bi, o);
        if (arg_better(is_max, bv, bi, ov, oi)) {
          bv = ov;
          bi = oi;
        }
      }
    }
    if constexpr (G > 32) {
      int wl = threadIdx.x & 31, warp = threadIdx.x >> 5;
      if (wl == 0) {
        shv[warp] = bv;
        shi[warp] = bi;
      }
      __syncthreads();
      if (warp == 0) {
        if (wl < G / 32) {
          bv = shv[wl];
          bi = shi[wl];
        } else {
          bi = std::numeric_limits<int64_t>::max();
        }
        for (int o = 16; o > 0; o >>= 1) {
          A ov = __shfl_down_sync(0xffffffffu, bv, o);
          int64_t oi = __shfl_down_sync(0xffffffffu, bi, o);
          if (arg_better(is_max, bv, bi, ov, oi)) {
            bv = ov;
            bi = oi;
          }
        }
      }
      __syncthreads();
    }
    if (lane == 0) {
      values[off[1]] = convert<T>(bv);
      indices[off[1]] = bi;
    }
  }
}

void reduce_arg_cuda(ReduceOp op, const Tensor& values, const Tensor& indices, const Tensor& in,
                     int64_t dim) {
  SMP_CHECK(op == ReduceOp::Max || op == ReduceOp::Min,
            "reduce_arg: only max and min have indices, got op {}", static_cast<int>(op));
  if (values.numel() == 0) return;
  DeviceGuard g(values);
  Shape kept = in.sizes();
  kept[static_cast<size_t>(dim)] = 1;
  Indexer<2> outer = make_indexer<2>(kept, {&in.strides(), &values.strides()});
  int64_t M = values.numel(), K = in.size(dim), ks = in.stride(dim);
  bool is_max = op == ReduceOp::Max;
  cudaStream_t st = stream_of(values);
  auto* ip = indices.data_ptr<int64_t>();
  SMP_DISPATCH_ALL(in.dtype(), "reduce_arg", [&] {
    const auto* x = static_cast<const scalar_t*>(in.data_ptr());
    auto* v = static_cast<scalar_t*>(values.data_ptr());
    if (K <= 16)
      reduce_arg_kernel<scalar_t, 1>
          <<<blocks_for(M), kThreads, 0, st>>>(x, v, ip, is_max, M, K, ks, outer);
    else if (K <= 1024)
      reduce_arg_kernel<scalar_t, 32>
          <<<blocks_for(M, kThreads / 32), kThreads, 0, st>>>(x, v, ip, is_max, M, K, ks, outer);
    else
      reduce_arg_kernel<scalar_t, 256>
          <<<blocks_for(M, 1), 256, 0, st>>>(x, v, ip, is_max, M, K, ks, outer);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.reduce = &reduce_cuda;
  t.reduce_arg = &reduce_arg_cuda;
});

}  // namespace smp::cuda
