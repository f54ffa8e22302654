// addmm and bmm through cuBLAS.
//
// cuBLAS is column-major. A row-major (m, n) output C is the column-major (n, m) matrix Cᵀ,
// so we compute Cᵀ = Bᵀ·Aᵀ. A row-major operand with unit column stride is, read
// column-major, its own transpose (op N); one with unit row stride is a column-major
// matrix (op T). Any other layout is copied to contiguous first.
#include <smp/engine/cuda.h>

#include <algorithm>
#include <limits>

#include "cuda/cuda_common.h"
#include "kernels.h"
#include "ops/op_utils.h"

namespace smp::cuda {
namespace {

struct Operand {
  Tensor t;  // the tensor whose memory cuBLAS reads
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t ld = 1;
};

// Describes a row-major (r, c) matrix with strides (s0, s1) for cuBLAS, or returns false.
bool gemm_layout(int64_t r, int64_t c, int64_t s0, int64_t s1, cublasOperation_t& op, int64_t& ld) {
  if ((s1 == 1 || c == 1) && (r == 1 || s0 >= std::max<int64_t>(1, c))) {
    op = CUBLAS_OP_N;
    ld = r == 1 ? std::max<int64_t>(1, c) : s0;
    return true;
  }
  if ((s0 == 1 || r == 1) && (c == 1 || s1 >= std::max<int64_t>(1, r))) {
    op = CUBLAS_OP_T;
    ld = c == 1 ? std::max<int64_t>(1, r) : s1;
    return true;
  }
  return false;
}

// `t` is 2-D (r, c), or 3-D (B, r, c) with the batch as dim 0.
Operand prepare(const Tensor& t) {
  int64_t nd = t.dim();
  int64_t r = t.size(nd - 2), c = t.size(nd - 1);
  Operand o;
  o.t = t;
  if (gemm_layout(r, c, t.stride(nd - 2), t.stride(nd - 1), o.op, o.ld)) return o;
  o.t = contiguous(t);
  o.op = CUBLAS_OP_N;
  o.ld = std::max<int64_t>(1, c);
  return o;
}

struct GemmTypes {
  cudaDataType_t data;
  cublasComputeType_t compute;
  bool double_scalars;
};

GemmTypes gemm_types(Dtype dt) {
  switch (dt) {
    case kFloat32:
      return {CUDA_R_32F, allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, false};
    case kFloat64:
      return {CUDA_R_64F, CUBLAS_COMPUTE_64F, true};
    case kFloat16:
      return {CUDA_R_16F, CUBLAS_COMPUTE_32F, false};
    case kBFloat16:
      return {CUDA_R_16BF, CUBLAS_COMPUTE_32F, false};
    default:
      SMP_ERROR("matmul on CUDA: dtype {} is not supported, expected a floating type",
                dtype_name(dt));
  }
}

int to_int(int64_t v, const char* what) {
  SMP_CHECK(v <= std::numeric_limits<int>::max(),
            "matmul on CUDA: {} = {} exceeds cuBLAS's 32-bit limit", what, v);
  return static_cast<int>(v);
}

// out (B, m, n) contiguous = alpha·a·b + beta·out, with B = 1 for 2-D.
void gemm(const Tensor& out, const Tensor& a, const Tensor& b, double alpha, double beta) {
  int64_t nd = out.dim();
  int64_t m = out.size(nd - 2), n = out.size(nd - 1), k = a.size(a.dim() - 1);
  int64_t batch = nd == 3 ? out.size(0) : 1;
  int dev = out.device().index();
  DeviceGuard g(dev);
  Operand A = prepare(a), Bm = prepare(b);
  GemmTypes ty = gemm_types(out.dtype());
  cublasHandle_t h = cublas_handle(dev);
  float af = static_cast<float>(alpha), bf = static_cast<float>(beta);
  const void* pa = ty.double_scalars ? static_cast<const void*>(&alpha) : &af;
  const void* pb = ty.double_scalars ? static_cast<const void*>(&beta) : &bf;
  // Cᵀ (n×m) = op(B memory) (n×k) · op(A memory) (k×m).
  if (batch == 1) {
    SMP_CUBLAS_CHECK(cublasGemmEx(h, Bm.op, A.op, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"),
                                  pa, Bm.t.data_ptr(), ty.data, to_int(Bm.ld, "ldb"),
                                  A.t.data_ptr(), ty.data, to_int(A.ld, "lda"), pb, out.data_ptr(),
                                  ty.data, to_int(std::max<int64_t>(1, n), "ldc"), ty.compute,
                                  CUBLAS_GEMM_DEFAULT));
  } else {
    int64_t sa = A.t.size(0) == 1 ? 0 : A.t.stride(0);
    int64_t sb = Bm.t.size(0) == 1 ? 0 : Bm.t.stride(0);
    SMP_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, Bm.op, A.op, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), pa, Bm.t.data_ptr(),
        ty.data, to_int(Bm.ld, "ldb"), sb, A.t.data_ptr(), ty.data, to_int(A.ld, "lda"), sa, pb,
        out.data_ptr(), ty.data, to_int(std::max<int64_t>(1, n), "ldc"), m * n,
        to_int(batch, "batch"), ty.compute, CUBLAS_GEMM_DEFAULT));
  }
}

void addmm_cuda(const Tensor& out, const Tensor& self, const Tensor& a, const Tensor& b,
                const Scalar& beta, const Scalar& alpha) {
  if (out.numel() == 0) return;
  DeviceGuard g(out);
  double bt = self.defined() ? beta.to_double() : 0.0;
  // cuBLAS accumulates into out: seed it with self (broadcast views are fine for copy).
  if (bt != 0.0) SMP_KERNEL(copy, out.device())(out, self);
  if (a.size(1) == 0) {
    // An empty inner dimension: the product is zero, leaving beta·self.
    if (bt == 0.0)
      SMP_KERNEL(fill, out.device())(out, 0);
    else if (bt != 1.0)
      SMP_KERNEL(binary_scalar, out.device())(kernels::BinaryOp::Mul, out, out, Scalar(bt), false);
    return;
  }
  gemm(out, a, b, alpha.to_double(), bt);
}

void bmm_cuda(const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  DeviceGuard g(out);
  if (a.size(2) == 0) {
    SMP_KERNEL(fill, out.device())(out, 0);
    return;
  }
  gemm(out, a, b, 1.0, 0.0);
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.addmm = &addmm_cuda;
  t.bmm = &bmm_cuda;
});

}  // namespace smp::cuda
