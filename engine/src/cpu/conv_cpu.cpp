// CPU 2-D convolution by im2col + GEMM (NCHW, contiguous). Per sample and group, the
// input patch matrix cols (C/g·kH·kW, OH·OW) turns the convolution into
//   out_g (O/g, OH·OW) = W_g (O/g, K) · cols,
// and backward into grad_W_g += grad_out_g · colsᵀ and grad_cols = W_gᵀ · grad_out_g
// (scattered back by col2im). The batch is split over our pool (parallel_gemms).
#include <cblas.h>
#include <smp/engine/threading.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/loops.h"
#include "kernels.h"

namespace smp::cpu {
namespace {

using kernels::ConvParams;

struct ConvGeom {
  int64_t n, c, h, w, o, kh, kw, oh, ow, groups, cg, og, k, l;
  ConvGeom(const Tensor& input, const Tensor& weight, const Tensor& out, const ConvParams& p) {
    n = input.size(0), c = input.size(1), h = input.size(2), w = input.size(3);
    o = weight.size(0), kh = weight.size(2), kw = weight.size(3);
    oh = out.size(2), ow = out.size(3);
    groups = p.groups, cg = c / groups, og = o / groups;
    k = cg * kh * kw, l = oh * ow;
  }
  // A 1x1 kernel with unit stride and no padding reads the input itself as cols.
  bool direct(const ConvParams& p) const {
    return kh == 1 && kw == 1 && p.stride[0] == 1 && p.stride[1] == 1 && p.padding[0] == 0 &&
           p.padding[1] == 0;
  }
};

// For kernel offset `off` (= i·dilation − padding), the output positions [lo, hi) whose
// input coordinate o·stride + off lies inside [0, size).
inline void valid_range(int64_t off, int64_t stride, int64_t size, int64_t out, int64_t& lo,
                        int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = size - off <= 0 ? 0 : (size - off + stride - 1) / stride;
  lo = std::min(lo, out);
  hi = std::clamp(hi, lo, out);
}

// cols (cg·kh·kw, oh·ow) from cg channel planes starting at `in`.
template <class T>
void im2col(const T* in, T* cols, const ConvGeom& g, const ConvParams& p) {
  int64_t rows = g.k;
  parallel_for(
      rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(g.l, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          int64_t ch = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
          const T* plane = in + ch * g.h * g.w;
          T* dst = cols + r * g.l;
          int64_t hoff = i * p.dilation[0] - p.padding[0], woff = j * p.dilation[1] - p.padding[1];
          int64_t wlo, whi;
          valid_range(woff, p.stride[1], g.w, g.ow, wlo, whi);
          for (int64_t y = 0; y < g.oh; ++y) {
            T* d = dst + y * g.ow;
            int64_t iy = y * p.stride[0] + hoff;
            if (iy < 0 || iy >= g.h) {
              std::fill(d, d + g.ow, T(0));
              continue;
            }
            // Input column of output x is x·stride + woff; [wlo, whi) keeps it in the row.
            const T* row = plane + iy * g.w;
            std::fill(d, d + wlo, T(0));
            if (p.stride[1] == 1) {
              if (whi > wlo)
                std::memcpy(d + wlo, row + wlo + woff, static_cast<size_t>(whi - wlo) * sizeof(T));
            } else {
              for (int64_t x = wlo; x < whi; ++x) d[x] = row[x * p.stride[1] + woff];
            }
            std::fill(d + whi, d + g.ow, T(0));
          }
        }
      });
}

// in (cg planes) += the scatter of cols; parallel over channels, which own disjoint rows.
template <class T>
void col2im_add(const T* cols, T* in, const ConvGeom& g, const ConvParams& p) {
  parallel_for(g.cg, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      T* plane = in + ch * g.h * g.w;
      for (int64_t i = 0; i < g.kh; ++i) {
        for (int64_t j = 0; j < g.kw; ++j) {
          const T* src = cols + ((ch * g.kh + i) * g.kw + j) * g.l;
          int64_t hoff = i * p.dilation[0] - p.padding[0], woff = j * p.dilation[1] - p.padding[1];
          int64_t wlo, whi;
          valid_range(woff, p.stride[1], g.w, g.ow, wlo, whi);
          for (int64_t y = 0; y < g.oh; ++y) {
            int64_t iy = y * p.stride[0] + hoff;
            if (iy < 0 || iy >= g.h) continue;
            T* row = plane + iy * g.w;
            const T* s = src + y * g.ow;
            if (p.stride[1] == 1) {
              for (int64_t x = wlo; x < whi; ++x) row[x + woff] += s[x];
            } else {
              for (int64_t x = wlo; x < whi; ++x) row[x * p.stride[1] + woff] += s[x];
            }
          }
        }
      }
    }
  });
}

template <class T>
void conv_forward(const Tensor& out, const Tensor& input, const Tensor& weight, const Tensor& bias,
                  const ConvParams& p) {
  ConvGeom g(input, weight, out, p);
  const T* in = input.data_ptr<T>();
  const T* wt = weight.data_ptr<T>();
  T* o = out.data_ptr<T>();
  const T* b = bias.defined() ? bias.data_ptr<T>() : nullptr;
  bool direct = g.direct(p);
  parallel_gemms(g.n, [&](int64_t n0, int64_t n1) {
    std::vector<T> cols(direct ? 0 : static_cast<size_t>(g.k * g.l));
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* in_g = in + (n * g.c + gr * g.cg) * g.h * g.w;
        const T* src = in_g;
        if (!direct) {
          im2col(in_g, cols.data(), g, p);
          src = cols.data();
        }
        T* o_g = o + (n * g.o + gr * g.og) * g.l;
        if (b) {
          // Seed the output with the bias so the GEMM accumulates onto it (beta = 1).
          for (int64_t oc = 0; oc < g.og; ++oc)
            std::fill(o_g + oc * g.l, o_g + (oc + 1) * g.l, b[gr * g.og + oc]);
        }
        gemm<T>(false, false, g.og, g.l, g.k, T(1), wt + gr * g.og * g.k, g.k, src, g.l,
                b ? T(1) : T(0), o_g, g.l);
      }
    }
  });
}

template <class T>
void conv_backward(const Tensor& grad_input, const Tensor& grad_weight, const Tensor& grad_bias,
                   const Tensor& grad_out, const Tensor& input, const Tensor& weight,
                   const ConvParams& p) {
  ConvGeom g(input, weight, grad_out, p);
  const T* in = input.data_ptr<T>();
  const T* wt = weight.data_ptr<T>();
  const T* go = grad_out.data_ptr<T>();
  bool direct = g.direct(p);
  if (grad_bias.defined()) {
    T* gb = grad_bias.data_ptr<T>();
    parallel_for(g.o, 1, [&](int64_t o0, int64_t o1) {
      for (int64_t oc = o0; oc < o1; ++oc) {
        double s = 0;
        for (int64_t n = 0; n < g.n; ++n) {
          const T* row = go + (n * g.o + oc) * g.l;
          T acc = 0;
          for (int64_t x = 0; x < g.l; ++x) acc += row[x];
          s += static_cast<double>(acc);
        }
        gb[oc] = static_cast<T>(s);
      }
    });
  }
  if (!grad_weight.defined() && !grad_input.defined()) return;
  T* gw = grad_weight.defined() ? grad_weight.data_ptr<T>() : nullptr;
  T* gi = grad_input.defined() ? grad_input.data_ptr<T>() : nullptr;
  int64_t wnum = g.o * g.k;
  if (gw) std::fill(gw, gw + wnum, T(0));
  if (gi && !direct) std::fill(gi, gi + grad_input.numel(), T(0));
  std::mutex mu;
  parallel_gemms(g.n, [&](int64_t n0, int64_t n1) {
    // Each chunk sums its samples' weight gradients privately, then adds them once.
    std::vector<T> cols(direct ? 0 : static_cast<size_t>(g.k * g.l));
    std::vector<T> gw_part(gw ? static_cast<size_t>(wnum) : 0, T(0));
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* go_g = go + (n * g.o + gr * g.og) * g.l;
        if (gw) {
          const T* in_g = in + (n * g.c + gr * g.cg) * g.h * g.w;
          const T* src = in_g;
          if (!direct) {
            im2col(in_g, cols.data(), g, p);
            src = cols.data();
          }
          // grad_W_g (og, k) += grad_out_g (og, l) · colsᵀ (l, k)
          gemm<T>(false, true, g.og, g.k, g.l, T(1), go_g, g.l, src, g.l, T(1),
                  gw_part.data() + gr * g.og * g.k, g.k);
        }
        if (gi) {
          T* gi_g = gi + (n * g.c + gr * g.cg) * g.h * g.w;
          // grad_cols (k, l) = W_gᵀ (k, og) · grad_out_g (og, l), reusing the cols buffer
          T* dst = direct ? gi_g : cols.data();
          gemm<T>(true, false, g.k, g.l, g.og, T(1), wt + gr * g.og * g.k, g.k, go_g, g.l, T(0),
                  dst, g.l);
          if (!direct) col2im_add(cols.data(), gi_g, g, p);
        }
      }
    }
    if (gw) {
      std::lock_guard<std::mutex> lk(mu);
      for (int64_t i = 0; i < wnum; ++i) gw[i] += gw_part[static_cast<size_t>(i)];
    }
  });
}

void conv2d_forward_cpu(const Tensor& out, const Tensor& input, const Tensor& weight,
                        const Tensor& bias, const ConvParams& p) {
  SMP_DISPATCH_FLOATING(input.dtype(), "conv2d",
                        [&] { conv_forward<scalar_t>(out, input, weight, bias, p); });
}

void conv2d_backward_cpu(const Tensor& grad_input, const Tensor& grad_weight,
                         const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                         const Tensor& weight, const ConvParams& p) {
  SMP_DISPATCH_FLOATING(input.dtype(), "conv2d_backward", [&] {
    conv_backward<scalar_t>(grad_input, grad_weight, grad_bias, grad_out, input, weight, p);
  });
}

}  // namespace

SMP_REGISTER_KERNELS(kCPU, {
  t.conv2d_forward = &conv2d_forward_cpu;
  t.conv2d_backward = &conv2d_backward_cpu;
});

}  // namespace smp::cpu
