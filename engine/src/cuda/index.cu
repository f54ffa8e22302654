// CUDA kernels for index_select and index_add along one dim. Inputs are contiguous (the
// front end sees to it).
#include "cuda/nn_common.cuh"
#include "kernels.h"

namespace smp::cuda {
namespace {

// ---- index_select / index_add ---------------------------------------------------------------

// in (outer, D, inner) → out (outer, K, inner). An index outside [-D, D) reads 0, since a
// kernel cannot throw; the front end validates indices it can see.
template <class T, class I>
__global__ void index_select_kernel(T* out, const T* in, const I* index, int64_t istride,
                                    int64_t outer, int64_t D, int64_t K, int64_t inner) {
  int64_t total = outer * K * inner, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t r = i % inner, k = (i / inner) % K, o = i / (inner * K);
    int64_t idx = static_cast<int64_t>(index[k * istride]);
    if (idx < 0) idx += D;
    out[i] = (idx >= 0 && idx < D) ? in[(o * D + idx) * inner + r] : T(0);
  }
}

template <class T, class I>
__global__ void index_add_kernel(T* out, const T* src, const I* index, int64_t istride,
                                 int64_t outer, int64_t D, int64_t K, int64_t inner) {
  int64_t total = outer * K * inner, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t r = i % inner, k = (i / inner) % K, o = i / (inner * K);
    int64_t idx = static_cast<int64_t>(index[k * istride]);
    if (idx < 0) idx += D;
    if (idx >= 0 && idx < D) atomic_add(out + (o * D + idx) * inner + r, convert<acc_t<T>>(src[i]));
  }
}

void index_select_cuda(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) {
  if (out.numel() == 0) return;
  DeviceGuard dg(out);
  Tensor x = contiguous(in);
  int64_t outer, D, inner;
  outer_dim_inner(x, dim, outer, D, inner);
  int64_t K = index.numel(), is = index.dim() > 0 ? index.stride(0) : 0;
  SMP_DISPATCH_ALL(x.dtype(), "index_select", [&] {
    using T = scalar_t;
    SMP_DISPATCH_INDEX(index.dtype(), "index_select", [&] {
      index_select_kernel<T, scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream_of(out)>>>(
          mptr<T>(out), cptr<T>(x), cptr<scalar_t>(index), is, outer, D, K, inner);
      SMP_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void index_add_cuda(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  if (src.numel() == 0) return;
  DeviceGuard dg(out);
  SMP_CHECK(out.is_contiguous(), "index_add: the destination must be contiguous");
  Tensor s = contiguous(src);
  int64_t outer, D, inner;
  outer_dim_inner(out, dim, outer, D, inner);
  int64_t K = index.numel(), is = index.dim() > 0 ? index.stride(0) : 0;
  SMP_DISPATCH_ATOMIC(out.dtype(), "index_add", [&] {
    using T = scalar_t;
    SMP_DISPATCH_INDEX(index.dtype(), "index_add", [&] {
      index_add_kernel<T, scalar_t><<<blocks_for(s.numel()), kThreads, 0, stream_of(out)>>>(
          mptr<T>(out), cptr<T>(s), cptr<scalar_t>(index), is, outer, D, K, inner);
      SMP_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.index_select = &index_select_cuda;
  t.index_add = &index_add_cuda;
});

}  // namespace smp::cuda
