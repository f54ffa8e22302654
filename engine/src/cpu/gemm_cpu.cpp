// CPU matrix products: addmm and bmm through OpenBLAS, reading transposed views in place.
#include <cblas.h>
#include <smp/engine/threading.h>

#include <algorithm>

#include "cpu/gemm.h"
#include "kernels.h"
#include "ops/op_utils.h"

namespace smp::cpu {

namespace {

// Products at least this large (m·n·k, the size where OpenBLAS itself starts threading
// times 8) are split over our pool; below it waking a worker costs more than it saves.
constexpr double kSplitWork = 128.0 * 128.0 * 128.0;
constexpr int64_t kBlockAlign = 16;  // a multiple of the sgemm/dgemm kernels' tile sizes

// One row-major BLAS call: the float and double entry points.
inline void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                      float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

inline void blas_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                      const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                      double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c,
              static_cast<blasint>(ldc));
}

}  // namespace

// Splits C into one block of its larger dimension per thread, each block a single-threaded
// BLAS call on the matching slice of A or B (OpenBLAS's threads are kept at 1).
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  auto blas = [&](int64_t mm, int64_t nn, const T* pa, const T* pb, T* pc) {
    blas_gemm(ta, tb, mm, nn, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
  };
  int threads = get_num_threads();
  double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  bool by_cols = n >= m;
  int64_t len = by_cols ? n : m;
  int64_t blocks = std::min<int64_t>(threads, len / kBlockAlign);
  if (threads <= 1 || blocks <= 1 || work < kSplitWork || in_parallel_region()) {
    blas(m, n, a, b, c);
    return;
  }
  int64_t per = ((len + blocks - 1) / blocks + kBlockAlign - 1) / kBlockAlign * kBlockAlign;
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i) {
      int64_t s = i * per, e = std::min(len, s + per);
      if (s >= e) continue;
      if (by_cols)  // columns s..e of op(B) and C
        blas(m, e - s, a, tb ? b + s * ldb : b + s, c + s);
      else  // rows s..e of op(A) and C
        blas(e - s, n, ta ? a + s : a + s * lda, b, c + s * ldc);
    }
  });
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

namespace {

// How BLAS reads a (rows, cols) view with strides (s0, s1): row-major as is, or as the
// transpose of a row-major matrix. Size-1 dims have meaningless strides, so they never
// decide the layout.
struct BlasLayout {
  bool ok = false;
  bool trans = false;
  int64_t ld = 1;
};

BlasLayout blas_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1) {
  if ((s1 == 1 || cols == 1) && (rows == 1 || s0 >= std::max<int64_t>(1, cols)))
    return {true, false, rows == 1 ? std::max<int64_t>(1, cols) : s0};
  if ((s0 == 1 || rows == 1) && (cols == 1 || s1 >= std::max<int64_t>(1, rows)))
    return {true, true, cols == 1 ? std::max<int64_t>(1, rows) : s1};
  return {};
}

// A BLAS-readable version of a 2-D view: itself, or a contiguous copy.
Tensor blas_operand(const Tensor& t, BlasLayout& layout) {
  layout = blas_layout(t.size(0), t.size(1), t.stride(0), t.stride(1));
  if (layout.ok) return t;
  Tensor c = ops::empty_out(t.sizes(), t.dtype(), t.device());
  ops::copy_into(c, t);
  layout = {true, false, std::max<int64_t>(1, t.size(1))};
  return c;
}

void addmm_cpu(const Tensor& out, const Tensor& self, const Tensor& a, const Tensor& b,
               const Scalar& beta, const Scalar& alpha) {
  if (is_reduced_float(out.dtype())) {
    Tensor o32 = float32_empty(out);
    addmm_cpu(o32, float32_copy(self), float32_copy(a), float32_copy(b), beta, alpha);
    ops::copy_into(out, o32);
    return;
  }
  double be = self.defined() ? beta.to_double() : 0.0;
  // BLAS with beta = 0 ignores c, so self only needs copying when it contributes.
  if (be != 0.0) ops::copy_into(out, self);
  gemm_tensors(out, a, b, be, alpha.to_double());
}

void bmm_cpu(const Tensor& out, const Tensor& a, const Tensor& b) {
  if (is_reduced_float(out.dtype())) {
    Tensor o32 = float32_empty(out);
    bmm_cpu(o32, float32_copy(a), float32_copy(b));
    ops::copy_into(out, o32);
    return;
  }
  int64_t batch = out.size(0);
  // Per-matrix views without autograd. Small products are split over the batch; large ones
  // are each split over the pool by gemm.
  auto mat = [](const Tensor& t, int64_t i) {
    return ops::make_view(t, {t.size(1), t.size(2)}, {t.stride(1), t.stride(2)},
                          t.storage_offset() + i * t.stride(0));
  };
  auto run = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) gemm_tensors(mat(out, i), mat(a, i), mat(b, i), 0.0, 1.0);
  };
  double work = static_cast<double>(a.size(1)) * static_cast<double>(a.size(2)) *
                static_cast<double>(b.size(2));
  if (batch > 1 && work < 128.0 * 128.0 * 128.0)
    parallel_gemms(batch, run);
  else
    run(0, batch);
}

}  // namespace

bool is_reduced_float(Dtype d) { return d == kFloat16 || d == kBFloat16; }

Tensor float32_empty(const Tensor& t) {
  return t.defined() ? ops::empty_out(t.sizes(), kFloat32, t.device()) : t;
}

Tensor float32_copy(const Tensor& t) {
  Tensor c = float32_empty(t);
  if (c.defined()) ops::copy_into(c, t);
  return c;
}

void parallel_gemms(int64_t n, const std::function<void(int64_t, int64_t)>& f) {
  int threads = get_num_threads();
  if (threads <= 1 || n <= 1) {
    f(0, n);
    return;
  }
  parallel_for(n, 1, f);
}

void gemm_tensors(const Tensor& out, const Tensor& a, const Tensor& b, double beta, double alpha) {
  int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  if (m == 0 || n == 0) return;
  SMP_ASSERT(out.stride(1) == 1 || n == 1, "gemm: output rows must be contiguous");
  BlasLayout la, lb;
  Tensor ab = blas_operand(a, la), bb = blas_operand(b, lb);
  int64_t ldc = m == 1 ? std::max<int64_t>(1, n) : std::max<int64_t>(out.stride(0), n);
  SMP_DISPATCH_FLOATING(out.dtype(), "gemm", [&] {
    using T = scalar_t;
    gemm<T>(la.trans, lb.trans, m, n, k, static_cast<T>(alpha), ab.data_ptr<T>(), la.ld,
            bb.data_ptr<T>(), lb.ld, static_cast<T>(beta), out.data_ptr<T>(), ldc);
  });
}

SMP_REGISTER_KERNELS(kCPU, {
  t.addmm = &addmm_cpu;
  t.bmm = &bmm_cpu;
});

}  // namespace smp::cpu
