// CUDA kernels for 2-D max, average and adaptive average pooling, forward and backward.
// Inputs are NCHW contiguous (the front end sees to it); 16-bit floats compute in float.
#include "cuda/nn_common.cuh"
#include "kernels.h"

namespace smp::cuda {
namespace {

using kernels::PoolParams;

// ---- pooling (NCHW contiguous) ----------------------------------------------------------

struct PoolGeom {
  int64_t planes, H, W, OH, OW;
  int kh, kw, sh, sw, ph, pw, dh, dw;
  bool count_include_pad;
};

PoolGeom pool_geom(const Tensor& in, const Tensor& out, const PoolParams* p) {
  PoolGeom g{};
  int64_t nd = in.dim();
  g.H = in.size(nd - 2);
  g.W = in.size(nd - 1);
  g.OH = out.size(nd - 2);
  g.OW = out.size(nd - 1);
  g.planes = in.numel() / std::max<int64_t>(1, g.H * g.W);
  if (p) {
    g.kh = static_cast<int>(p->kernel[0]);
    g.kw = static_cast<int>(p->kernel[1]);
    g.sh = static_cast<int>(p->stride[0]);
    g.sw = static_cast<int>(p->stride[1]);
    g.ph = static_cast<int>(p->padding[0]);
    g.pw = static_cast<int>(p->padding[1]);
    g.dh = static_cast<int>(p->dilation[0]);
    g.dw = static_cast<int>(p->dilation[1]);
    g.count_include_pad = p->count_include_pad;
  }
  return g;
}

// indices: flat offsets h·W + w within the (n, c) plane. NaN wins, as in PyTorch.
template <class T>
__global__ void max_pool_fwd_kernel(T* out, int64_t* indices, const T* in, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.OH * g.OW, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
    const T* x = in + pl * g.H * g.W;
    int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
    int64_t h0 = hs, w0 = ws;
    while (h0 < 0) h0 += g.dh;
    while (w0 < 0) w0 += g.dw;
    A best = neg_inf<A>();
    int64_t bi = h0 * g.W + w0;
    for (int a = 0; a < g.kh; ++a) {
      int64_t h = hs + static_cast<int64_t>(a) * g.dh;
      if (h < 0 || h >= g.H) continue;
      for (int b = 0; b < g.kw; ++b) {
        int64_t w = ws + static_cast<int64_t>(b) * g.dw;
        if (w < 0 || w >= g.W) continue;
        A v = convert<A>(x[h * g.W + w]);
        if (v > best || v != v) {
          best = v;
          bi = h * g.W + w;
          if (v != v) {
            a = g.kh;  // NaN found: stop
            break;
          }
        }
      }
    }
    out[i] = convert<T>(best);
    indices[i] = bi;
  }
}

template <class T>
__global__ void max_pool_bwd_kernel(T* gi, const T* go, const int64_t* indices, int64_t planes,
                                    int64_t in_plane, int64_t out_plane) {
  int64_t total = planes * out_plane, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t pl = i / out_plane;
    int64_t idx = indices[i];
    if (idx >= 0 && idx < in_plane) atomic_add(gi + pl * in_plane + idx, convert<acc_t<T>>(go[i]));
  }
}

// PyTorch's window: [oh·s − p, min(oh·s − p + k, H + p)) clipped to the input; the divisor
// counts padding unless count_include_pad is off.
__device__ inline void avg_window(int64_t o, int k, int s, int p, int64_t L, int64_t& a, int64_t& b,
                                  int64_t& padded) {
  a = o * s - p;
  b = a + k < L + p ? a + k : L + p;
  padded = b - a;
  if (a < 0) a = 0;
  if (b > L) b = L;
}

template <class T>
__global__ void avg_pool_fwd_kernel(T* out, const T* in, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.OH * g.OW, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
    const T* x = in + pl * g.H * g.W;
    int64_t h0, h1, ph, w0, w1, pw;
    avg_window(oh, g.kh, g.sh, g.ph, g.H, h0, h1, ph);
    avg_window(ow, g.kw, g.sw, g.pw, g.W, w0, w1, pw);
    A s = A(0);
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) s += convert<A>(x[h * g.W + w]);
    int64_t div = g.count_include_pad ? ph * pw : (h1 - h0) * (w1 - w0);
    out[i] = convert<T>(div > 0 ? s / static_cast<A>(div) : A(0));
  }
}

// Gather form: each input element sums the windows that contain it (no atomics).
template <class T>
__global__ void avg_pool_bwd_kernel(T* gi, const T* go, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.H * g.W, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
    const T* gp = go + pl * g.OH * g.OW;
    // Windows with o·s − p ≤ h < o·s − p + k.
    int64_t oh0 = h + g.ph < g.kh ? 0 : (h + g.ph - g.kh) / g.sh + 1;
    int64_t oh1 = (h + g.ph) / g.sh + 1;
    int64_t ow0 = w + g.pw < g.kw ? 0 : (w + g.pw - g.kw) / g.sw + 1;
    int64_t ow1 = (w + g.pw) / g.sw + 1;
    if (oh1 > g.OH) oh1 = g.OH;
    if (ow1 > g.OW) ow1 = g.OW;
    A s = A(0);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      int64_t a0, a1, pa;
      avg_window(oh, g.kh, g.sh, g.ph, g.H, a0, a1, pa);
      if (h < a0 || h >= a1) continue;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        int64_t b0, b1, pb;
        avg_window(ow, g.kw, g.sw, g.pw, g.W, b0, b1, pb);
        if (w < b0 || w >= b1) continue;
        int64_t div = g.count_include_pad ? pa * pb : (a1 - a0) * (b1 - b0);
        if (div > 0) s += convert<A>(gp[oh * g.OW + ow]) / static_cast<A>(div);
      }
    }
    gi[i] = convert<T>(s);
  }
}

__device__ inline int64_t ad_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
__device__ inline int64_t ad_end(int64_t o, int64_t in, int64_t out) {
  return ((o + 1) * in + out - 1) / out;
}

template <class T>
__global__ void adaptive_avg_fwd_kernel(T* out, const T* in, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.OH * g.OW, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, pl = i / (g.OW * g.OH);
    const T* x = in + pl * g.H * g.W;
    int64_t h0 = ad_start(oh, g.H, g.OH), h1 = ad_end(oh, g.H, g.OH);
    int64_t w0 = ad_start(ow, g.W, g.OW), w1 = ad_end(ow, g.W, g.OW);
    A s = A(0);
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) s += convert<A>(x[h * g.W + w]);
    out[i] = convert<T>(s / static_cast<A>((h1 - h0) * (w1 - w0)));
  }
}

template <class T>
__global__ void adaptive_avg_bwd_kernel(T* gi, const T* go, PoolGeom g) {
  using A = acc_t<T>;
  int64_t total = g.planes * g.H * g.W, stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    int64_t w = i % g.W, h = (i / g.W) % g.H, pl = i / (g.W * g.H);
    const T* gp = go + pl * g.OH * g.OW;
    // Outputs whose region can contain h: [start(h; H→OH), end(h; H→OH)), checked exactly.
    int64_t oh0 = ad_start(h, g.OH, g.H), oh1 = ad_end(h, g.OH, g.H);
    int64_t ow0 = ad_start(w, g.OW, g.W), ow1 = ad_end(w, g.OW, g.W);
    A s = A(0);
    for (int64_t oh = oh0 > 0 ? oh0 - 1 : 0; oh < oh1 + 1 && oh < g.OH; ++oh) {
      int64_t a0 = ad_start(oh, g.H, g.OH), a1 = ad_end(oh, g.H, g.OH);
      if (h < a0 || h >= a1) continue;
      for (int64_t ow = ow0 > 0 ? ow0 - 1 : 0; ow < ow1 + 1 && ow < g.OW; ++ow) {
        int64_t b0 = ad_start(ow, g.W, g.OW), b1 = ad_end(ow, g.W, g.OW);
        if (w < b0 || w >= b1) continue;
        s += convert<A>(gp[oh * g.OW + ow]) / static_cast<A>((a1 - a0) * (b1 - b0));
      }
    }
    gi[i] = convert<T>(s);
  }
}

void max_pool2d_forward_cuda(const Tensor& out, const Tensor& indices, const Tensor& input,
                             const PoolParams& p) {
  if (out.numel() == 0) return;
  DeviceGuard dg(out);
  Tensor x = contiguous(input);
  PoolGeom g = pool_geom(x, out, &p);
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "max_pool2d", [&] {
    max_pool_fwd_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream_of(out)>>>(
        mptr<scalar_t>(out), indices.data_ptr<int64_t>(), cptr<scalar_t>(x), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void max_pool2d_backward_cuda(const Tensor& grad_input, const Tensor& grad_out,
                              const Tensor& indices) {
  if (grad_input.numel() == 0) return;
  DeviceGuard dg(grad_input);
  SMP_KERNEL(fill, grad_input.device())(grad_input, 0);
  if (grad_out.numel() == 0) return;
  Tensor go = contiguous(grad_out), idx = contiguous(indices);
  PoolGeom g = pool_geom(grad_input, go, nullptr);
  SMP_DISPATCH_FLOATING_AND_HALF(go.dtype(), "max_pool2d_backward", [&] {
    max_pool_bwd_kernel<scalar_t><<<blocks_for(go.numel()), kThreads, 0, stream_of(grad_input)>>>(
        mptr<scalar_t>(grad_input), cptr<scalar_t>(go), idx.data_ptr<int64_t>(), g.planes,
        g.H * g.W, g.OH * g.OW);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void avg_pool2d_forward_cuda(const Tensor& out, const Tensor& input, const PoolParams& p) {
  if (out.numel() == 0) return;
  DeviceGuard dg(out);
  Tensor x = contiguous(input);
  PoolGeom g = pool_geom(x, out, &p);
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "avg_pool2d", [&] {
    avg_pool_fwd_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream_of(out)>>>(
        mptr<scalar_t>(out), cptr<scalar_t>(x), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void avg_pool2d_backward_cuda(const Tensor& grad_input, const Tensor& grad_out,
                              const PoolParams& p) {
  if (grad_input.numel() == 0) return;
  DeviceGuard dg(grad_input);
  Tensor go = contiguous(grad_out);
  PoolGeom g = pool_geom(grad_input, go, &p);
  SMP_DISPATCH_FLOATING_AND_HALF(go.dtype(), "avg_pool2d_backward", [&] {
    avg_pool_bwd_kernel<scalar_t>
        <<<blocks_for(grad_input.numel()), kThreads, 0, stream_of(grad_input)>>>(
            mptr<scalar_t>(grad_input), cptr<scalar_t>(go), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void adaptive_avg_pool2d_forward_cuda(const Tensor& out, const Tensor& input) {
  if (out.numel() == 0) return;
  DeviceGuard dg(out);
  Tensor x = contiguous(input);
  PoolGeom g = pool_geom(x, out, nullptr);
  SMP_DISPATCH_FLOATING_AND_HALF(x.dtype(), "adaptive_avg_pool2d", [&] {
    adaptive_avg_fwd_kernel<scalar_t><<<blocks_for(out.numel()), kThreads, 0, stream_of(out)>>>(
        mptr<scalar_t>(out), cptr<scalar_t>(x), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void adaptive_avg_pool2d_backward_cuda(const Tensor& grad_input, const Tensor& grad_out) {
  if (grad_input.numel() == 0) return;
  DeviceGuard dg(grad_input);
  Tensor go = contiguous(grad_out);
  PoolGeom g = pool_geom(grad_input, go, nullptr);
  SMP_DISPATCH_FLOATING_AND_HALF(go.dtype(), "adaptive_avg_pool2d_backward", [&] {
    adaptive_avg_bwd_kernel<scalar_t>
        <<<blocks_for(grad_input.numel()), kThreads, 0, stream_of(grad_input)>>>(
            mptr<scalar_t>(grad_input), cptr<scalar_t>(go), g);
    SMP_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.max_pool2d_forward = &max_pool2d_forward_cuda;
  t.max_pool2d_backward = &max_pool2d_backward_cuda;
  t.avg_pool2d_forward = &avg_pool2d_forward_cuda;
  t.avg_pool2d_backward = &avg_pool2d_backward_cuda;
  t.adaptive_avg_pool2d_forward = &adaptive_avg_pool2d_forward_cuda;
  t.adaptive_avg_pool2d_backward = &adaptive_avg_pool2d_backward_cuda;
});

}  // namespace smp::cuda
