// CPU 2-D convolution by im2col + GEMM (NCHW, contiguous). Per sample and group, the
// input patch matrix cols (C/g·kH·kW, OH·OW) turns the convolution into
//   out_g (O/g, OH·OW) = W_g (O/g, K) · cols,
// and backward into grad_W_g += grad_out_g · colsᵀ and grad_cols = W_gᵀ · grad_out_g
// (scattered back by col2im). Two schedules:
//  * per sample: the batch is split over our pool, each thread running single-threaded GEMMs
//    (parallel_gemms); best when OH·OW is large, so each per-sample GEMM is well shaped;
//  * batched: when OH·OW is small (deep layers), per-sample GEMMs are tiny and OpenBLAS
//    spends its time packing, so a chunk of samples is im2col'ed side by side into
//    cols (K, chunk·OH·OW) and one GEMM (split over the pool by gemm) covers the chunk; the
//    result is scattered back to NCHW (and grad_out gathered to (O/g, chunk·OH·OW)).
#include <cblas.h>
#include <smp/engine/threading.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/loops.h"
#include "kernels.h"
#include "ops/op_utils.h"

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

// Where row r (= (ch, i, j)) of the patch matrix reads: the channel plane's offset, the input
// offsets of kernel tap (i, j), and the output rows [ylo, yhi) / columns [wlo, whi) whose tap
// lies inside the input (the rest are zero). Computed once per row, shared by all samples.
struct RowPlan {
  int64_t plane, hoff, woff, ylo, yhi, wlo, whi;
};

inline RowPlan plan_row(int64_t r, const ConvGeom& g, const ConvParams& p) {
  RowPlan rp;
  int64_t ch = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
  rp.plane = ch * g.h * g.w;
  rp.hoff = i * p.dilation[0] - p.padding[0];
  rp.woff = j * p.dilation[1] - p.padding[1];
  valid_range(rp.hoff, p.stride[0], g.h, g.oh, rp.ylo, rp.yhi);
  valid_range(rp.woff, p.stride[1], g.w, g.ow, rp.wlo, rp.whi);
  return rp;
}

// Row `rp` of the patch matrix for the cg channel planes at `in`, written to dst[0, oh·ow).
// Plain loops rather than memcpy/memset calls (which GCC would otherwise substitute): deep
// layers have rows of a few elements, where the call costs more than the copy.
#if defined(__GNUC__) && !defined(__clang__)
#define SMP_NO_LIBCALL_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define SMP_NO_LIBCALL_LOOPS
#endif
template <class T>
SMP_NO_LIBCALL_LOOPS inline void im2col_row(const T* in, T* __restrict dst, const RowPlan& rp,
                                            const ConvGeom& g, const ConvParams& p) {
  const int64_t ow = g.ow, w = g.w, sh = p.stride[0], sw = p.stride[1];
  const int64_t wlo = rp.wlo, whi = rp.whi;
  const T* plane = in + rp.plane;
  for (int64_t x = 0; x < rp.ylo * ow; ++x) dst[x] = T(0);
  for (int64_t y = rp.ylo; y < rp.yhi; ++y) {
    T* __restrict d = dst + y * ow;
    const T* __restrict row = plane + (y * sh + rp.hoff) * w + rp.woff;
    for (int64_t x = 0; x < wlo; ++x) d[x] = T(0);
    if (sw == 1) {
      for (int64_t x = wlo; x < whi; ++x) d[x] = row[x];
    } else {
      for (int64_t x = wlo; x < whi; ++x) d[x] = row[x * sw];
    }
    for (int64_t x = whi; x < ow; ++x) d[x] = T(0);
  }
  for (int64_t x = rp.yhi * ow; x < g.oh * ow; ++x) dst[x] = T(0);
}

// Batched cols (k, nb·l): sample s of the chunk fills columns [s·l, (s+1)·l). `in` points at
// group gr's first channel of sample 0 of the chunk.
template <class T>
SMP_NO_LIBCALL_LOOPS void im2col_chunk_rows(const T* in, T* cols, int64_t nb, int64_t r0,
                                            int64_t r1, const ConvGeom& g, const ConvParams& p) {
  int64_t ld = nb * g.l, sample = g.c * g.h * g.w;
  for (int64_t r = r0; r < r1; ++r) {
    RowPlan rp = plan_row(r, g, p);
    for (int64_t s = 0; s < nb; ++s) im2col_row(in + s * sample, cols + r * ld + s * g.l, rp, g, p);
  }
}

template <class T>
void im2col_chunk(const T* in, T* cols, int64_t nb, const ConvGeom& g, const ConvParams& p) {
  int64_t ld = nb * g.l;
  parallel_for(g.k, std::max<int64_t>(1, 16384 / std::max<int64_t>(ld, 1)),
               [&](int64_t r0, int64_t r1) { im2col_chunk_rows(in, cols, nb, r0, r1, g, p); });
}

// cols (cg·kh·kw, oh·ow) from cg channel planes starting at `in`.
template <class T>
void im2col(const T* in, T* cols, const ConvGeom& g, const ConvParams& p) {
  parallel_for(g.k, std::max<int64_t>(1, 16384 / std::max<int64_t>(g.l, 1)),
               [&](int64_t r0, int64_t r1) { im2col_chunk_rows(in, cols, 1, r0, r1, g, p); });
}

// in (cg planes) += the scatter of cols; parallel over channels, which own disjoint rows.
// Channel ch of one sample's group: plane += the scatter of its kh·kw cols rows (row stride ld).
template <class T>
inline void col2im_channel(const T* cols, int64_t ld, T* plane, int64_t ch, const ConvGeom& g,
                           const ConvParams& p) {
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const T* src = cols + ((ch * g.kh + i) * g.kw + j) * ld;
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

template <class T>
void col2im_add(const T* cols, T* in, const ConvGeom& g, const ConvParams& p) {
  parallel_for(g.cg, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) col2im_channel(cols, g.l, in + ch * g.h * g.w, ch, g, p);
  });
}

// Batched: cols (k, nb·l) holds nb samples side by side; `in` points at group gr's first
// channel of sample 0 of the chunk. Parallel over (sample, channel), which own disjoint planes.
template <class T>
void col2im_chunk_add(const T* cols, T* in, int64_t nb, const ConvGeom& g, const ConvParams& p) {
  int64_t ld = nb * g.l, sample = g.c * g.h * g.w;
  parallel_for(nb * g.cg, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t s = t / g.cg, ch = t % g.cg;
      col2im_channel(cols + s * g.l, ld, in + s * sample + ch * g.h * g.w, ch, g, p);
    }
  });
}

// Batched schedule: for small output planes, per-sample GEMMs are too small to run well.
// ResNet-18 at 64×64 input, 2 threads, since large GEMMs are split over our pool: layer1
// (16×16 planes) runs 10% slower batched and layer2 (8×8) ~3% slower, layer3 (4×4) faster
// batched; MNIST's 24×24 and 26×26 planes are per sample too.
constexpr int64_t kBatchedMaxPlane = 64;  // use batched when oh·ow < this
constexpr int64_t kColsBudgetBytes = 16 << 20;

inline bool use_batched(const ConvGeom& g) { return g.n > 1 && g.l < kBatchedMaxPlane; }

// Samples per chunk so the (k, nb·l) cols buffer (and the (og, nb·l) output) stay in budget.
template <class T>
int64_t chunk_samples(const ConvGeom& g) {
  int64_t per = std::max<int64_t>(1, std::max(g.k, g.og) * g.l * static_cast<int64_t>(sizeof(T)));
  return std::clamp<int64_t>(kColsBudgetBytes / per, 1, g.n);
}

template <class T>
void conv_forward_batched(const ConvGeom& g, const T* in, const T* wt, const T* b, T* o,
                          const ConvParams& p) {
  int64_t nb_max = chunk_samples<T>(g);
  std::vector<T> cols(static_cast<size_t>(g.k * nb_max * g.l));
  std::vector<T> obuf(static_cast<size_t>(g.og * nb_max * g.l));
  for (int64_t n0 = 0; n0 < g.n; n0 += nb_max) {
    int64_t nb = std::min(nb_max, g.n - n0), ld = nb * g.l;
    for (int64_t gr = 0; gr < g.groups; ++gr) {
      im2col_chunk(in + (n0 * g.c + gr * g.cg) * g.h * g.w, cols.data(), nb, g, p);
      // obuf (og, nb·l) = W_g (og, k) · cols (k, nb·l), split over the pool by gemm.
      gemm<T>(false, false, g.og, ld, g.k, T(1), wt + gr * g.og * g.k, g.k, cols.data(), ld, T(0),
              obuf.data(), ld);
      parallel_for(nb * g.og, std::max<int64_t>(1, 16384 / std::max<int64_t>(g.l, 1)),
                   [&](int64_t t0, int64_t t1) {
                     for (int64_t t = t0; t < t1; ++t) {
                       int64_t s = t / g.og, oc = t % g.og;
                       const T* src = obuf.data() + oc * ld + s * g.l;
                       T* dst = o + ((n0 + s) * g.o + gr * g.og + oc) * g.l;
                       if (b) {
                         T bv = b[gr * g.og + oc];
                         for (int64_t x = 0; x < g.l; ++x) dst[x] = src[x] + bv;
                       } else {
                         std::memcpy(dst, src, static_cast<size_t>(g.l) * sizeof(T));
                       }
                     }
                   });
    }
  }
}

// grad_weight accumulates into gw (zeroed by the caller); grad_input into gi (zeroed too).
template <class T>
void conv_backward_batched(const ConvGeom& g, const T* in, const T* wt, const T* go, T* gw, T* gi,
                           const ConvParams& p) {
  int64_t nb_max = chunk_samples<T>(g);
  std::vector<T> cols(static_cast<size_t>(g.k * nb_max * g.l));
  std::vector<T> gobuf(static_cast<size_t>(g.og * nb_max * g.l));
  for (int64_t n0 = 0; n0 < g.n; n0 += nb_max) {
    int64_t nb = std::min(nb_max, g.n - n0), ld = nb * g.l;
    for (int64_t gr = 0; gr < g.groups; ++gr) {
      // Gather grad_out_g of the chunk to (og, nb·l).
      parallel_for(nb * g.og, std::max<int64_t>(1, 16384 / std::max<int64_t>(g.l, 1)),
                   [&](int64_t t0, int64_t t1) {
                     for (int64_t t = t0; t < t1; ++t) {
                       int64_t s = t / g.og, oc = t % g.og;
                       std::memcpy(gobuf.data() + oc * ld + s * g.l,
                                   go + ((n0 + s) * g.o + gr * g.og + oc) * g.l,
                                   static_cast<size_t>(g.l) * sizeof(T));
                     }
                   });
      if (gw) {
        im2col_chunk(in + (n0 * g.c + gr * g.cg) * g.h * g.w, cols.data(), nb, g, p);
        // grad_W_g (og, k) += grad_out (og, nb·l) · colsᵀ (nb·l, k)
        gemm<T>(false, true, g.og, g.k, ld, T(1), gobuf.data(), ld, cols.data(), ld, T(1),
                gw + gr * g.og * g.k, g.k);
      }
      if (gi) {
        // grad_cols (k, nb·l) = W_gᵀ (k, og) · grad_out (og, nb·l), reusing the cols buffer
        gemm<T>(true, false, g.k, ld, g.og, T(1), wt + gr * g.og * g.k, g.k, gobuf.data(), ld, T(0),
                cols.data(), ld);
        col2im_chunk_add(cols.data(), gi + (n0 * g.c + gr * g.cg) * g.h * g.w, nb, g, p);
      }
    }
  }
}

template <class T>
void conv_forward(const Tensor& out, const Tensor& input, const Tensor& weight, const Tensor& bias,
                  const ConvParams& p) {
  ConvGeom g(input, weight, out, p);
  const T* in = input.data_ptr<T>();
  const T* wt = weight.data_ptr<T>();
  T* o = out.data_ptr<T>();
  const T* b = bias.defined() ? bias.data_ptr<T>() : nullptr;
  if (use_batched(g)) {
    conv_forward_batched<T>(g, in, wt, b, o, p);
    return;
  }
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
  bool batched = use_batched(g);
  if (gi && (!direct || batched)) std::fill(gi, gi + grad_input.numel(), T(0));
  if (batched) {
    conv_backward_batched<T>(g, in, wt, go, gw, gi, p);
    return;
  }
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
          // grad_W_gᵀ (k, og) += cols (k, l) · grad_out_gᵀ (l, og): OpenBLAS runs this
          // shape ~12% faster than grad_out_g · colsᵀ (MNIST's conv2, one thread).
          gemm<T>(false, true, g.k, g.og, g.l, T(1), src, g.l, go_g, g.l, T(1),
                  gw_part.data() + gr * g.og * g.k, g.og);
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
    if (gw) {  // gw_part holds each group's (k, og) transpose
      std::lock_guard<std::mutex> lk(mu);
      for (int64_t gr = 0; gr < g.groups; ++gr) {
        const T* part = gw_part.data() + gr * g.og * g.k;
        T* dst = gw + gr * g.og * g.k;
        for (int64_t kk = 0; kk < g.k; ++kk)
          for (int64_t oc = 0; oc < g.og; ++oc) dst[oc * g.k + kk] += part[kk * g.og + oc];
      }
    }
  });
}

void conv2d_forward_cpu(const Tensor& out, const Tensor& input, const Tensor& weight,
                        const Tensor& bias, const ConvParams& p) {
  if (is_reduced_float(out.dtype())) {
    Tensor o32 = float32_empty(out);
    conv2d_forward_cpu(o32, float32_copy(input), float32_copy(weight), float32_copy(bias), p);
    ops::copy_into(out, o32);
    return;
  }
  SMP_DISPATCH_FLOATING(input.dtype(), "conv2d",
                        [&] { conv_forward<scalar_t>(out, input, weight, bias, p); });
}

void conv2d_backward_cpu(const Tensor& grad_input, const Tensor& grad_weight,
                         const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                         const Tensor& weight, const ConvParams& p) {
  if (is_reduced_float(input.dtype())) {
    Tensor gi = float32_empty(grad_input), gw = float32_empty(grad_weight),
           gb = float32_empty(grad_bias);
    conv2d_backward_cpu(gi, gw, gb, float32_copy(grad_out), float32_copy(input),
                        float32_copy(weight), p);
    for (auto [dst, src] : {std::pair{grad_input, gi}, {grad_weight, gw}, {grad_bias, gb}})
      if (dst.defined()) ops::copy_into(dst, src);
    return;
  }
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
