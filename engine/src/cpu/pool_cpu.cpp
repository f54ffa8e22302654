// CPU pooling over NCHW planes: max (with argmax indices), average and adaptive average.
// Every kernel is parallel over the N·C planes, which are independent.
#include <smp/engine/threading.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/loops.h"
#include "kernels.h"

namespace smp::cpu {
namespace {

using kernels::PoolParams;

struct Planes {
  int64_t planes, h, w, oh, ow;
  Planes(const Tensor& in, const Tensor& out)
      : planes(in.numel() / std::max<int64_t>(1, in.size(-1) * in.size(-2))),
        h(in.size(-2)),
        w(in.size(-1)),
        oh(out.size(-2)),
        ow(out.size(-1)) {}
};

int64_t plane_grain(const Planes& g) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.oh * g.ow));
}

// 2×2 windows, stride 2, no padding or dilation, every window inside the input (LeNet, VGG).
// Same result as the general loop, branch-free so the compiler can vectorise the row: the window
// is scanned in the same order (a b / c d) and a value replaces the running max when it is
// greater or NaN, so NaN wins (the last NaN if several) and ties keep the first occurrence. When
// every value is -inf the first element is kept, as the general loop's initial `best` does.
template <class T>
bool is_max_2x2s2(const Planes& g, const PoolParams& p) {
  return p.kernel[0] == 2 && p.kernel[1] == 2 && p.stride[0] == 2 && p.stride[1] == 2 &&
         p.padding[0] == 0 && p.padding[1] == 0 && p.dilation[0] == 1 && p.dilation[1] == 1 &&
         2 * g.oh <= g.h && 2 * g.ow <= g.w;
}

template <class T>
void max_forward_2x2s2(const Planes& g, const T* in, T* o, int64_t* idx) {
  parallel_for(g.planes, plane_grain(g), [&](int64_t p0, int64_t p1) {
    const int64_t w = g.w, ow = g.ow;  // locals, so the vectoriser knows the trip count
    for (int64_t pl = p0; pl < p1; ++pl) {
      const T* src = in + pl * g.h * w;
      for (int64_t y = 0; y < g.oh; ++y) {
        const T* __restrict r0 = src + 2 * y * w;
        const T* __restrict r1 = r0 + w;
        T* __restrict orow = o + (pl * g.oh + y) * ow;
        int64_t* __restrict irow = idx + (pl * g.oh + y) * ow;
        const int64_t row0 = 2 * y * w;
        for (int64_t x = 0; x < ow; ++x) {
          T a = r0[2 * x], b = r0[2 * x + 1], c = r1[2 * x], d = r1[2 * x + 1];
          T bv = a;
          int64_t off = 0;
          bool t = (b > bv) | (b != b);
          bv = t ? b : bv;
          off = t ? 1 : off;
          t = (c > bv) | (c != c);
          bv = t ? c : bv;
          off = t ? w : off;
          t = (d > bv) | (d != d);
          bv = t ? d : bv;
          off = t ? w + 1 : off;
          orow[x] = bv;
          irow[x] = row0 + 2 * x + off;
        }
      }
    }
  });
}

// 3×3 windows, stride 2, padding 1, no dilation (ResNet's stem). Windows clipped by the border
// (the first row/column, and the last when the input size is even) take the general scan; the
// columns of each output row whose window lies inside the input horizontally take a
// branch-free scan of the 2 or 3 valid rows in the general loop's order, with the same
// replace-when-greater-or-NaN rule as the 2×2 path.
inline bool is_max_3x3s2p1(const Planes& g, const PoolParams& p) {
  return p.kernel[0] == 3 && p.kernel[1] == 3 && p.stride[0] == 2 && p.stride[1] == 2 &&
         p.padding[0] == 1 && p.padding[1] == 1 && p.dilation[0] == 1 && p.dilation[1] == 1 &&
         g.oh <= (g.h + 1) / 2 + 1 && g.ow <= (g.w + 1) / 2 + 1;
}

template <class T>
void max_forward_3x3s2p1(const Planes& g, const T* in, T* o, int64_t* idx) {
  parallel_for(g.planes, plane_grain(g), [&](int64_t p0, int64_t p1) {
    const int64_t w = g.w, h = g.h, ow = g.ow;
    // Outputs x in [1, xe) have columns 2x−1 .. 2x+1 inside [0, w).
    const int64_t xe = std::min<int64_t>(std::max<int64_t>(w / 2, 1), ow);
    for (int64_t pl = p0; pl < p1; ++pl) {
      const T* src = in + pl * h * w;
      for (int64_t y = 0; y < g.oh; ++y) {
        int64_t hs = std::max<int64_t>(2 * y - 1, 0), he = std::min<int64_t>(2 * y + 2, h);
        T* __restrict orow = o + (pl * g.oh + y) * ow;
        int64_t* __restrict irow = idx + (pl * g.oh + y) * ow;
        auto general = [&](int64_t x) {
          int64_t ws = std::max<int64_t>(2 * x - 1, 0), we = std::min<int64_t>(2 * x + 2, w);
          int64_t best = hs * w + ws;
          T bv = -std::numeric_limits<T>::infinity();
          for (int64_t iy = hs; iy < he; ++iy)
            for (int64_t ix = ws; ix < we; ++ix) {
              T v = src[iy * w + ix];
              if (v > bv || std::isnan(v)) {
                bv = v;
                best = iy * w + ix;
              }
            }
          orow[x] = bv;
          irow[x] = best;
        };
        if (ow > 0) general(0);
        const int64_t rows = he - hs;
        const T* __restrict r0 = src + hs * w;
        const T* __restrict r1 = r0 + w;
        const T* __restrict r2 = r1 + w;
        const int64_t base = hs * w;
        if (rows == 3) {
          for (int64_t x = 1; x < xe; ++x) {
            const int64_t c = 2 * x - 1;
            T bv = r0[c];
            int64_t off = 0;
#define SMP_MAX_STEP(val, o_)         \
  {                                   \
    T v_ = (val);                     \
    bool t_ = (v_ > bv) | (v_ != v_); \
    bv = t_ ? v_ : bv;                \
    off = t_ ? (o_) : off;            \
  }
            SMP_MAX_STEP(r0[c + 1], 1)
            SMP_MAX_STEP(r0[c + 2], 2)
            SMP_MAX_STEP(r1[c], w)
            SMP_MAX_STEP(r1[c + 1], w + 1)
            SMP_MAX_STEP(r1[c + 2], w + 2)
            SMP_MAX_STEP(r2[c], 2 * w)
            SMP_MAX_STEP(r2[c + 1], 2 * w + 1)
            SMP_MAX_STEP(r2[c + 2], 2 * w + 2)
            orow[x] = bv;
            irow[x] = base + c + off;
          }
        } else if (rows == 2) {
          for (int64_t x = 1; x < xe; ++x) {
            const int64_t c = 2 * x - 1;
            T bv = r0[c];
            int64_t off = 0;
            SMP_MAX_STEP(r0[c + 1], 1)
            SMP_MAX_STEP(r0[c + 2], 2)
            SMP_MAX_STEP(r1[c], w)
            SMP_MAX_STEP(r1[c + 1], w + 1)
            SMP_MAX_STEP(r1[c + 2], w + 2)
#undef SMP_MAX_STEP
            orow[x] = bv;
            irow[x] = base + c + off;
          }
        } else {
          for (int64_t x = 1; x < xe; ++x) general(x);
        }
        for (int64_t x = std::max<int64_t>(xe, 1); x < ow; ++x) general(x);
      }
    }
  });
}

template <class T>
void max_forward(const Tensor& out, const Tensor& indices, const Tensor& input,
                 const PoolParams& p) {
  Planes g(input, out);
  if (is_max_2x2s2<T>(g, p)) {
    max_forward_2x2s2<T>(g, input.data_ptr<T>(), out.data_ptr<T>(), indices.data_ptr<int64_t>());
    return;
  }
  if (is_max_3x3s2p1(g, p)) {
    max_forward_3x3s2p1<T>(g, input.data_ptr<T>(), out.data_ptr<T>(), indices.data_ptr<int64_t>());
    return;
  }
  const T* in = input.data_ptr<T>();
  T* o = out.data_ptr<T>();
  int64_t* idx = indices.data_ptr<int64_t>();
  parallel_for(g.planes, plane_grain(g), [&](int64_t p0, int64_t p1) {
    for (int64_t pl = p0; pl < p1; ++pl) {
      const T* src = in + pl * g.h * g.w;
      for (int64_t y = 0; y < g.oh; ++y) {
        int64_t hs = y * p.stride[0] - p.padding[0];
        int64_t he = std::min(hs + (p.kernel[0] - 1) * p.dilation[0] + 1, g.h);
        while (hs < 0) hs += p.dilation[0];
        for (int64_t x = 0; x < g.ow; ++x) {
          int64_t ws = x * p.stride[1] - p.padding[1];
          int64_t we = std::min(ws + (p.kernel[1] - 1) * p.dilation[1] + 1, g.w);
          while (ws < 0) ws += p.dilation[1];
          int64_t best = hs * g.w + ws;
          T bv = -std::numeric_limits<T>::infinity();
          for (int64_t iy = hs; iy < he; iy += p.dilation[0]) {
            for (int64_t ix = ws; ix < we; ix += p.dilation[1]) {
              T v = src[iy * g.w + ix];
              // NaN wins, as in PyTorch.
              if (v > bv || std::isnan(v)) {
                bv = v;
                best = iy * g.w + ix;
              }
            }
          }
          int64_t oi = (pl * g.oh + y) * g.ow + x;
          o[oi] = bv;
          idx[oi] = best;
        }
      }
    }
  });
}

template <class T>
void max_backward(const Tensor& grad_input, const Tensor& grad_out, const Tensor& indices) {
  Planes g(grad_input, grad_out);
  T* gi = grad_input.data_ptr<T>();
  const T* go = grad_out.data_ptr<T>();
  const int64_t* idx = indices.data_ptr<int64_t>();
  parallel_for(g.planes, plane_grain(g), [&](int64_t p0, int64_t p1) {
    for (int64_t pl = p0; pl < p1; ++pl) {
      T* dst = gi + pl * g.h * g.w;
      std::fill(dst, dst + g.h * g.w, T(0));
      int64_t base = pl * g.oh * g.ow;
      for (int64_t i = 0; i < g.oh * g.ow; ++i) dst[idx[base + i]] += go[base + i];
    }
  });
}

// The window of output (y, x) clipped to the input, and its divisor, as PyTorch computes them.
struct AvgWindow {
  int64_t hs, he, ws, we, divisor;
};
inline AvgWindow avg_window(int64_t y, int64_t x, int64_t h, int64_t w, const PoolParams& p) {
  int64_t hs = y * p.stride[0] - p.padding[0], ws = x * p.stride[1] - p.padding[1];
  int64_t he = std::min(hs + p.kernel[0], h + p.padding[0]);
  int64_t we = std::min(ws + p.kernel[1], w + p.padding[1]);
  int64_t pool = (he - hs) * (we - ws);
  hs = std::max<int64_t>(hs, 0), ws = std::max<int64_t>(ws, 0);
  he = std::min(he, h), we = std::min(we, w);
  int64_t div = p.count_include_pad ? pool : (he - hs) * (we - ws);
  return {hs, he, ws, we, div};
}

template <class T>
void avg_forward(const Tensor& out, const Tensor& input, const PoolParams& p) {
  Planes g(input, out);
  const T* in = input.data_ptr<T>();
  T* o = out.data_ptr<T>();
  parallel_for(g.planes, plane_grain(g), [&](int64_t p0, int64_t p1) {
    for (int64_t pl = p0; pl < p1; ++pl) {
      const T* src = in + pl * g.h * g.w;
      for (int64_t y = 0; y < g.oh; ++y) {
        for (int64_t x = 0; x < g.ow; ++x) {
          AvgWindow a = avg_window(y, x, g.h, g.w, p);
          T s = 0;
          for (int64_t iy = a.hs; iy < a.he; ++iy)
            for (int64_t ix = a.ws; ix < a.we; ++ix) s += src[iy * g.w + ix];
          o[(pl * g.oh + y) * g.ow + x] =
              a.divisor > 0 && a.hs < a.he && a.ws < a.we ? s / static_cast<T>(a.divisor) : T(0);
        }
      }
    }
  });
}

template <class T>
void avg_backward(const Tensor& grad_input, const Tensor& grad_out, const PoolParams& p) {
  Planes g(grad_input, grad_out);
  T* gi = grad_input.data_ptr<T>();
  const T* go = grad_out.data_ptr<T>();
  parallel_for(g.planes, plane_grain(g), [&](int64_t p0, int64_t p1) {
    for (int64_t pl = p0; pl < p1; ++pl) {
      T* dst = gi + pl * g.h * g.w;
      std::fill(dst, dst + g.h * g.w, T(0));
      for (int64_t y = 0; y < g.oh; ++y) {
        for (int64_t x = 0; x < g.ow; ++x) {
          AvgWindow a = avg_window(y, x, g.h, g.w, p);
          if (a.divisor <= 0) continue;
          T v = go[(pl * g.oh + y) * g.ow + x] / static_cast<T>(a.divisor);
          for (int64_t iy = a.hs; iy < a.he; ++iy)
            for (int64_t ix = a.ws; ix < a.we; ++ix) dst[iy * g.w + ix] += v;
        }
      }
    }
  });
}

// Adaptive windows: output i covers [floor(i·in/out), ceil((i+1)·in/out)).
inline int64_t ad_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t ad_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

template <class T>
void adaptive_forward(const Tensor& out, const Tensor& input) {
  Planes g(input, out);
  const T* in = input.data_ptr<T>();
  T* o = out.data_ptr<T>();
  parallel_for(g.planes, plane_grain(g), [&](int64_t p0, int64_t p1) {
    for (int64_t pl = p0; pl < p1; ++pl) {
      const T* src = in + pl * g.h * g.w;
      for (int64_t y = 0; y < g.oh; ++y) {
        int64_t hs = ad_start(y, g.h, g.oh), he = ad_end(y, g.h, g.oh);
        for (int64_t x = 0; x < g.ow; ++x) {
          int64_t ws = ad_start(x, g.w, g.ow), we = ad_end(x, g.w, g.ow);
          T s = 0;
          for (int64_t iy = hs; iy < he; ++iy)
            for (int64_t ix = ws; ix < we; ++ix) s += src[iy * g.w + ix];
          o[(pl * g.oh + y) * g.ow + x] = s / static_cast<T>((he - hs) * (we - ws));
        }
      }
    }
  });
}

template <class T>
void adaptive_backward(const Tensor& grad_input, const Tensor& grad_out) {
  Planes g(grad_input, grad_out);
  T* gi = grad_input.data_ptr<T>();
  const T* go = grad_out.data_ptr<T>();
  parallel_for(g.planes, plane_grain(g), [&](int64_t p0, int64_t p1) {
    for (int64_t pl = p0; pl < p1; ++pl) {
      T* dst = gi + pl * g.h * g.w;
      std::fill(dst, dst + g.h * g.w, T(0));
      for (int64_t y = 0; y < g.oh; ++y) {
        int64_t hs = ad_start(y, g.h, g.oh), he = ad_end(y, g.h, g.oh);
        for (int64_t x = 0; x < g.ow; ++x) {
          int64_t ws = ad_start(x, g.w, g.ow), we = ad_end(x, g.w, g.ow);
          T v = go[(pl * g.oh + y) * g.ow + x] / static_cast<T>((he - hs) * (we - ws));
          for (int64_t iy = hs; iy < he; ++iy)
            for (int64_t ix = ws; ix < we; ++ix) dst[iy * g.w + ix] += v;
        }
      }
    }
  });
}

void max_pool2d_forward_cpu(const Tensor& out, const Tensor& indices, const Tensor& input,
                            const PoolParams& p) {
  SMP_DISPATCH_FLOATING(input.dtype(), "max_pool2d",
                        [&] { max_forward<scalar_t>(out, indices, input, p); });
}
void max_pool2d_backward_cpu(const Tensor& grad_input, const Tensor& grad_out,
                             const Tensor& indices) {
  SMP_DISPATCH_FLOATING(grad_out.dtype(), "max_pool2d_backward",
                        [&] { max_backward<scalar_t>(grad_input, grad_out, indices); });
}
void avg_pool2d_forward_cpu(const Tensor& out, const Tensor& input, const PoolParams& p) {
  SMP_DISPATCH_FLOATING(input.dtype(), "avg_pool2d", [&] { avg_forward<scalar_t>(out, input, p); });
}
void avg_pool2d_backward_cpu(const Tensor& grad_input, const Tensor& grad_out,
                             const PoolParams& p) {
  SMP_DISPATCH_FLOATING(grad_out.dtype(), "avg_pool2d_backward",
                        [&] { avg_backward<scalar_t>(grad_input, grad_out, p); });
}
void adaptive_avg_pool2d_forward_cpu(const Tensor& out, const Tensor& input) {
  SMP_DISPATCH_FLOATING(input.dtype(), "adaptive_avg_pool2d",
                        [&] { adaptive_forward<scalar_t>(out, input); });
}
void adaptive_avg_pool2d_backward_cpu(const Tensor& grad_input, const Tensor& grad_out) {
  SMP_DISPATCH_FLOATING(grad_out.dtype(), "adaptive_avg_pool2d_backward",
                        [&] { adaptive_backward<scalar_t>(grad_input, grad_out); });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.max_pool2d_forward = &max_pool2d_forward_cpu;
  t.max_pool2d_backward = &max_pool2d_backward_cpu;
  t.avg_pool2d_forward = &avg_pool2d_forward_cpu;
  t.avg_pool2d_backward = &avg_pool2d_backward_cpu;
  t.adaptive_avg_pool2d_forward = &adaptive_avg_pool2d_forward_cpu;
  t.adaptive_avg_pool2d_backward = &adaptive_avg_pool2d_backward_cpu;
});

}  // namespace smp::cpu
