// conv2d forward and backward through cuDNN's convolution API (NCHW, groups via the group
// count). Algorithms come from cuDNN's heuristics (the _v7 queries), are cached per
// problem, and their workspace comes from our caching allocator. Float32 convolutions
// are restricted to FMA kernels unless TF32 is allowed, so results match the CPU.
#include <smp/engine/cuda.h>

#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/cuda_common.h"
#include "kernels.h"
#include "ops/op_utils.h"

namespace smp::cuda {
namespace {

using kernels::ConvParams;

constexpr size_t kMaxWorkspace = size_t{2} << 30;  // skip algorithms asking for more

cudnnDataType_t cudnn_dtype(Dtype dt) {
  switch (dt) {
    case kFloat32:
      return CUDNN_DATA_FLOAT;
    case kFloat64:
      return CUDNN_DATA_DOUBLE;
    case kFloat16:
      return CUDNN_DATA_HALF;
    case kBFloat16:
      return CUDNN_DATA_BFLOAT16;
    default:
      SMP_ERROR("conv2d on CUDA: dtype {} is not supported, expected a floating type",
                dtype_name(dt));
  }
}

int as_int(int64_t v) {
  SMP_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(),
            "conv2d on CUDA: size {} exceeds cuDNN's limit", v);
  return static_cast<int>(v);
}

struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc(const Tensor& t) {  // NOLINT: NCHW tensor
    SMP_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
    SMP_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, cudnn_dtype(t.dtype()),
                                               as_int(t.size(0)), as_int(t.size(1)),
                                               as_int(t.size(2)), as_int(t.size(3))));
  }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};

struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  explicit FilterDesc(const Tensor& w) {
    SMP_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
    SMP_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d, cudnn_dtype(w.dtype()), CUDNN_TENSOR_NCHW,
                                               as_int(w.size(0)), as_int(w.size(1)),
                                               as_int(w.size(2)), as_int(w.size(3))));
  }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
};

cudnnMathType_t math_type(Dtype dt) {
  if (dt == kFloat16 || dt == kBFloat16) return CUDNN_TENSOR_OP_MATH;
  if (dt == kFloat32 && allow_tf32()) return CUDNN_DEFAULT_MATH;
  return CUDNN_FMA_MATH;
}

struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc(const ConvParams& p, Dtype dt) {
    SMP_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
    cudnnDataType_t compute = dt == kFloat64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    SMP_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        d, as_int(p.padding[0]), as_int(p.padding[1]), as_int(p.stride[0]), as_int(p.stride[1]),
        as_int(p.dilation[0]), as_int(p.dilation[1]), CUDNN_CROSS_CORRELATION, compute));
    SMP_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d, as_int(p.groups)));
    SMP_CUDNN_CHECK(cudnnSetConvolutionMathType(d, math_type(dt)));
  }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
};

// alpha/beta are double for double data and float otherwise.
struct Scale {
  float f;
  double d;
  const void* ptr(Dtype dt) const { return dt == kFloat64 ? static_cast<const void*>(&d) : &f; }
};
constexpr Scale kOne{1.0f, 1.0};
constexpr Scale kZero{0.0f, 0.0};

struct Choice {
  int algo;
  cudnnMathType_t math;
  size_t workspace;
};

std::string problem_key(char kind, const Tensor& x, const Tensor& w, const ConvParams& p,
                        int device) {
  return fmt::format("{}|{}|{}|{}|{}|{},{},{},{},{},{},{}|{}", kind, device, dtype_name(x.dtype()),
                     fmt::join(x.sizes(), ","), fmt::join(w.sizes(), ","), p.stride[0], p.stride[1],
                     p.padding[0], p.padding[1], p.dilation[0], p.dilation[1], p.groups,
                     static_cast<int>(math_type(x.dtype())));
}

std::mutex g_cache_mu;
std::map<std::string, Choice>& cache() {
  static auto* c = new std::map<std::string, Choice>();
  return *c;
}

// Picks the first algorithm cuDNN's heuristics rank that runs with the math we allow and a
// workspace we are willing to give; caches the choice.
// `fallback` (an algorithm every problem supports) is used when the heuristics offer
// nothing that fits.
template <class Perf, class Query>
Choice choose(const std::string& key, Dtype dt, int fallback, Query query) {
  {
    std::lock_guard<std::mutex> g(g_cache_mu);
    auto it = cache().find(key);
    if (it != cache().end()) return it->second;
  }
  std::vector<Perf> perf(16);
  int n = 0;
  query(static_cast<int>(perf.size()), &n, perf.data());
  cudnnMathType_t want = math_type(dt);
  Choice c{-1, want, 0};
  for (int i = 0; i < n; ++i) {
    const Perf& p = perf[static_cast<size_t>(i)];
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > kMaxWorkspace) continue;
    if (want == CUDNN_FMA_MATH && p.mathType != CUDNN_FMA_MATH && p.mathType != CUDNN_DEFAULT_MATH)
      continue;
    // Down-conversion of float32 data to float16 is more than TF32 permits.
    if ((dt == kFloat32 || dt == kFloat64) && p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
      continue;
    // Run FMA-only where FMA was asked for: default math may pick TF32 tensor cores.
    c = Choice{static_cast<int>(p.algo), want == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : p.mathType,
               p.memory};
    break;
  }
  if (c.algo < 0) c = Choice{fallback, want, 0};
  std::lock_guard<std::mutex> g(g_cache_mu);
  cache()[key] = c;
  return c;
}

void conv2d_forward_cuda(const Tensor& out, const Tensor& input, const Tensor& weight,
                         const Tensor& bias, const ConvParams& p) {
  if (out.numel() == 0) return;
  int dev = out.device().index();
  DeviceGuard g(dev);
  Tensor x = contiguous(input), w = contiguous(weight);
  Dtype dt = x.dtype();
  cudnnHandle_t h = cudnn_handle(dev);
  TensorDesc xd(x), yd(out);
  FilterDesc wd(w);
  ConvDesc cd(p, dt);
  Choice c = choose<cudnnConvolutionFwdAlgoPerf_t>(
      problem_key('f', x, w, p, dev), dt, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
      [&](int req, int* n, cudnnConvolutionFwdAlgoPerf_t* r) {
        SMP_CUDNN_CHECK(
            cudnnGetConvolutionForwardAlgorithm_v7(h, xd.d, wd.d, cd.d, yd.d, req, n, r));
      });
  SMP_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
  auto algo = static_cast<cudnnConvolutionFwdAlgo_t>(c.algo);
  size_t ws_size = 0;
  SMP_CUDNN_CHECK(
      cudnnGetConvolutionForwardWorkspaceSize(h, xd.d, wd.d, cd.d, yd.d, algo, &ws_size));
  Workspace ws(ws_size, dev);
  SMP_CUDNN_CHECK(cudnnConvolutionForward(h, kOne.ptr(dt), xd.d, x.data_ptr(), wd.d, w.data_ptr(),
                                          cd.d, algo, ws.data(), ws_size, kZero.ptr(dt), yd.d,
                                          out.data_ptr()));
  if (bias.defined()) {
    Tensor b = contiguous(bias);
    TensorDesc bd(
        ops::make_view(b, {1, b.numel(), 1, 1}, {b.numel(), 1, 1, 1}, b.storage_offset()));
    SMP_CUDNN_CHECK(
        cudnnAddTensor(h, kOne.ptr(dt), bd.d, b.data_ptr(), kOne.ptr(dt), yd.d, out.data_ptr()));
  }
}

void conv2d_backward_cuda(const Tensor& grad_input, const Tensor& grad_weight,
                          const Tensor& grad_bias, const Tensor& grad_out, const Tensor& input,
                          const Tensor& weight, const ConvParams& p) {
  int dev = grad_out.device().index();
  DeviceGuard g(dev);
  Tensor go = contiguous(grad_out), x = contiguous(input), w = contiguous(weight);
  Dtype dt = go.dtype();
  if (go.numel() == 0) {
    for (const Tensor& t : {grad_input, grad_weight, grad_bias})
      if (t.defined()) SMP_KERNEL(fill, t.device())(t, 0);
    return;
  }
  cudnnHandle_t h = cudnn_handle(dev);
  TensorDesc xd(x), yd(go);
  FilterDesc wd(w);
  if (grad_input.defined()) {
    ConvDesc cd(p, dt);
    Choice c = choose<cudnnConvolutionBwdDataAlgoPerf_t>(
        problem_key('d', x, w, p, dev), dt, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        [&](int req, int* n, cudnnConvolutionBwdDataAlgoPerf_t* r) {
          SMP_CUDNN_CHECK(
              cudnnGetConvolutionBackwardDataAlgorithm_v7(h, wd.d, yd.d, cd.d, xd.d, req, n, r));
        });
    SMP_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
    auto algo = static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo);
    size_t ws_size = 0;
    SMP_CUDNN_CHECK(
        cudnnGetConvolutionBackwardDataWorkspaceSize(h, wd.d, yd.d, cd.d, xd.d, algo, &ws_size));
    Workspace ws(ws_size, dev);
    SMP_CUDNN_CHECK(cudnnConvolutionBackwardData(h, kOne.ptr(dt), wd.d, w.data_ptr(), yd.d,
                                                 go.data_ptr(), cd.d, algo, ws.data(), ws_size,
                                                 kZero.ptr(dt), xd.d, grad_input.data_ptr()));
  }
  if (grad_weight.defined()) {
    ConvDesc cd(p, dt);
    Choice c = choose<cudnnConvolutionBwdFilterAlgoPerf_t>(
        problem_key('w', x, w, p, dev), dt, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
        [&](int req, int* n, cudnnConvolutionBwdFilterAlgoPerf_t* r) {
          SMP_CUDNN_CHECK(
              cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, xd.d, yd.d, cd.d, wd.d, req, n, r));
        });
    SMP_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, c.math));
    auto algo = static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo);
    size_t ws_size = 0;
    SMP_CUDNN_CHECK(
        cudnnGetConvolutionBackwardFilterWorkspaceSize(h, xd.d, yd.d, cd.d, wd.d, algo, &ws_size));
    Workspace ws(ws_size, dev);
    SMP_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, kOne.ptr(dt), xd.d, x.data_ptr(), yd.d,
                                                   go.data_ptr(), cd.d, algo, ws.data(), ws_size,
                                                   kZero.ptr(dt), wd.d, grad_weight.data_ptr()));
  }
  if (grad_bias.defined()) {
    // Σ over (N, H, W) with our reduction kernel, into a (1, C, 1, 1) view of grad_bias.
    int64_t C = go.size(1);
    Tensor gb4 = ops::make_view(grad_bias, {1, C, 1, 1}, {C, 1, 1, 1}, grad_bias.storage_offset());
    SMP_KERNEL(reduce, go.device())(kernels::ReduceOp::Sum, gb4, go, IntList{0, 2, 3});
  }
}

}  // namespace

SMP_REGISTER_KERNELS(kCUDA, {
  t.conv2d_forward = &conv2d_forward_cuda;
  t.conv2d_backward = &conv2d_backward_cuda;
});

}  // namespace smp::cuda
