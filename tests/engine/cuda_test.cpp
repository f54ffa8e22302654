// The CUDA backend against the CPU one: every op and its gradient from the same inputs,
// random numbers from the same seed, the caching allocator, and copies across devices.
// Every test skips on a machine without a GPU.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <functional>
#include <vector>

#include "gradcheck.h"

using namespace smp;
using smp::test::randd;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

Tensor randf(const Shape& shape, uint64_t seed, Dtype dt = kFloat32) {
  return randd(shape, seed).to(dt);
}

/// Runs `f` on CPU and on CUDA from the same inputs, compares the outputs, then
/// backpropagates the same random gradient and compares every floating input's gradient.
void expect_cuda_matches_cpu(const Fn& f, const std::vector<Tensor>& inputs, double rtol = 1e-4,
                             double atol = 1e-5, bool grads = true) {
  std::vector<Tensor> xc, xg;
  for (const Tensor& t : inputs) {
    if (!t.defined()) {
      xc.emplace_back();
      xg.emplace_back();
      continue;
    }
    Tensor c = t.clone(), g = t.cuda();
    if (grads && t.is_floating_point()) {
      c.requires_grad_();
      g.requires_grad_();
    }
    xc.push_back(c);
    xg.push_back(g);
  }
  Tensor yc = f(xc), yg = f(xg);
  ASSERT_TRUE(yg.is_cuda());
  {
    SCOPED_TRACE("forward");
    EXPECT_ALLCLOSE(yg.cpu(), yc, rtol, atol);
  }
  if (!grads || !yc.requires_grad()) return;
  Tensor go = randf(yc.sizes(), 4242, yc.dtype());
  yc.backward(go);
  yg.backward(go.cuda());
  for (size_t i = 0; i < xc.size(); ++i) {
    if (!xc[i].defined() || !xc[i].requires_grad()) continue;
    SCOPED_TRACE("gradient of input " + std::to_string(i));
    ASSERT_TRUE(xg[i].grad().defined());
    EXPECT_TRUE(xg[i].grad().is_cuda());
    EXPECT_ALLCLOSE(xg[i].grad().cpu(), xc[i].grad(), rtol, atol);
  }
}

Device cuda0() { return Device(kCUDA, 0); }

}  // namespace

// ---- elementwise ------------------------------------------------------------------------

TEST(Elementwise, Unary_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor x = randf({7, 33}, 1);
  Tensor pos = randf({7, 33}, 2).abs() + 0.1;
  std::vector<std::pair<const char*, Fn>> ops = {
      {"neg", [](auto& v) { return -v[0]; }},
      {"exp", [](auto& v) { return v[0].exp(); }},
      {"abs", [](auto& v) { return v[0].abs(); }},
      {"square", [](auto& v) { return v[0].square(); }},
      {"relu", [](auto& v) { return v[0].relu(); }},
      {"sigmoid", [](auto& v) { return v[0].sigmoid(); }},
      {"tanh", [](auto& v) { return v[0].tanh(); }},
      {"gelu", [](auto& v) { return v[0].gelu(); }},
      {"gelu_tanh", [](auto& v) { return v[0].gelu("tanh"); }},
      {"silu", [](auto& v) { return silu(v[0]); }},
      {"clamp", [](auto& v) { return v[0].clamp(-0.3, 0.4); }},
      {"pow", [](auto& v) { return v[0].pow(3); }},
  };
  for (auto& [name, f] : ops) {
    SCOPED_TRACE(name);
    expect_cuda_matches_cpu(f, {x});
  }
  std::vector<std::pair<const char*, Fn>> pos_ops = {
      {"log", [](auto& v) { return v[0].log(); }},
      {"sqrt", [](auto& v) { return v[0].sqrt(); }},
      {"rsqrt", [](auto& v) { return v[0].rsqrt(); }},
      {"pow_frac", [](auto& v) { return v[0].pow(1.5); }},
  };
  for (auto& [name, f] : pos_ops) {
    SCOPED_TRACE(name);
    expect_cuda_matches_cpu(f, {pos});
  }
}

TEST(Elementwise, Binary_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor a = randf({4, 5, 6}, 3), b = randf({5, 1}, 4), c = randf({6, 5}, 5);
  // Broadcasting, and a transposed (non-contiguous) operand.
  expect_cuda_matches_cpu([](auto& v) { return add(v[0], v[1], 2.5); }, {a, b});
  expect_cuda_matches_cpu([](auto& v) { return v[0] - v[1]; }, {a, b});
  expect_cuda_matches_cpu([](auto& v) { return v[0] * v[1].t(); }, {a, c});
  expect_cuda_matches_cpu([](auto& v) { return v[0] / (v[1].abs() + 0.5); }, {a, b});
  expect_cuda_matches_cpu([](auto& v) { return maximum(v[0], v[1]); }, {a, b});
  expect_cuda_matches_cpu([](auto& v) { return minimum(v[0], v[1]); }, {a, b});
  expect_cuda_matches_cpu([](auto& v) { return v[0] * 3 + 1; }, {a});
  expect_cuda_matches_cpu([](auto& v) { return 2.0 - v[0]; }, {a});
  expect_cuda_matches_cpu([](auto& v) { return 2.0 / (v[0].abs() + 1); }, {a});
}

TEST(Elementwise, ComparisonsAndWhere_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor a = randf({8, 9}, 6), b = randf({9}, 7);
  std::vector<Fn> cmp = {
      [](auto& v) { return v[0].lt(v[1]); }, [](auto& v) { return v[0].ge(v[1]); },
      [](auto& v) { return v[0].eq(v[0]); }, [](auto& v) { return v[0].ne(v[1]); },
      [](auto& v) { return v[0].gt(0.25); }, [](auto& v) { return v[0].le(-0.1); }};
  for (auto& f : cmp) {
    Tensor yc = f({a, b}), yg = f({a.cuda(), b.cuda()});
    EXPECT_EQ(yg.dtype(), kBool);
    EXPECT_EQ(yg.cpu().to_vector<float>(), yc.to_vector<float>());
  }
  expect_cuda_matches_cpu([](auto& v) { return where(v[0].gt(v[1]), v[0], v[1]); }, {a, b});
  expect_cuda_matches_cpu([](auto& v) { return where(v[0].gt(0), v[0], 0.5); }, {a});
}

TEST(Elementwise, InPlaceOptimizerOps_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor p = randf({10, 3}, 8), t1 = randf({10, 3}, 9), t2 = randf({10, 3}, 10).abs() + 0.5;
  Tensor pc = p.clone(), pg = p.cuda();
  pc.addcmul_(t1, t2, 0.3).addcdiv_(t1, t2, -0.7).mul_(1.5).add_(t1, 0.1).sqrt_().clamp_(0.2, 0.9);
  pg.addcmul_(t1.cuda(), t2.cuda(), 0.3)
      .addcdiv_(t1.cuda(), t2.cuda(), -0.7)
      .mul_(1.5)
      .add_(t1.cuda(), 0.1)
      .sqrt_()
      .clamp_(0.2, 0.9);
  EXPECT_ALLCLOSE(pg.cpu(), pc, 1e-5, 1e-6);
  Tensor z = zeros({3, 4}, cuda0());
  z.fill_(2.5);
  EXPECT_ALLCLOSE(z.cpu(), full({3, 4}, 2.5), 0, 0);
}

TEST(Elementwise, HalfAndBFloat16_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  for (Dtype dt : {kFloat16, kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor x = randf({64, 17}, 11).to(dt), y = randf({17}, 12).to(dt);
    // CPU reference in float from the same rounded inputs.
    Tensor xf = x.to(kFloat32), yf = y.to(kFloat32);
    double tol = dt == kFloat16 ? 2e-3 : 1.6e-2;
    Tensor xg = x.cuda(), yg = y.cuda();
    EXPECT_ALLCLOSE((xg * yg + xg.sigmoid()).to(kFloat32).cpu(), xf * yf + xf.sigmoid(), tol, tol);
    EXPECT_ALLCLOSE(xg.gelu().to(kFloat32).cpu(), xf.gelu(), tol, tol);
    EXPECT_ALLCLOSE(xg.sum({1}).to(kFloat32).cpu(), xf.sum({1}), 4 * tol, 4 * tol);
    EXPECT_ALLCLOSE(xg.softmax(1).to(kFloat32).cpu(), xf.softmax(1), tol, tol);
    EXPECT_ALLCLOSE(xg.mm(xg.t()).to(kFloat32).cpu(), xf.mm(xf.t()), 4 * tol, 4 * tol);
  }
}

// ---- reductions -------------------------------------------------------------------------

TEST(Reduction, SumMeanMaxMin_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor x = randf({6, 50, 7}, 13);
  expect_cuda_matches_cpu([](auto& v) { return v[0].sum(); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return v[0].sum({0, 2}); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return v[0].mean({1}, true); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return v[0].transpose(0, 2).sum({1}); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return v[0].amax({1}); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return std::get<0>(v[0].max(1)); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return std::get<0>(v[0].min(2, true)); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return v[0].var({1}); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return v[0].max(); }, {x});
  auto [vc, ic] = x.max(1);
  auto [vg, ig] = x.cuda().max(1);
  EXPECT_EQ(ig.cpu().to_vector<int64_t>(), ic.to_vector<int64_t>());
  EXPECT_EQ(x.cuda().argmax(2).cpu().to_vector<int64_t>(), x.argmax(2).to_vector<int64_t>());
}

TEST(Reduction, LongRowsAndFewOutputs_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  // Exercises the block-per-output and the split (two-pass) paths.
  Tensor big = randf({3, 300000}, 14);
  expect_cuda_matches_cpu([](auto& v) { return v[0].sum({1}); }, {big}, 1e-4, 1e-3);
  expect_cuda_matches_cpu([](auto& v) { return v[0].mean(); }, {big}, 1e-4, 1e-5);
  expect_cuda_matches_cpu([](auto& v) { return v[0].amax({1}); }, {big});
  Tensor wide = randf({40, 3000}, 15);
  expect_cuda_matches_cpu([](auto& v) { return v[0].sum({1}); }, {wide}, 1e-4, 1e-4);
  EXPECT_EQ(wide.cuda().argmax(1).cpu().to_vector<int64_t>(), wide.argmax(1).to_vector<int64_t>());
}

// ---- linear algebra ---------------------------------------------------------------------

TEST(Linalg, MatmulFamily_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  cuda::set_allow_tf32(false);
  Tensor a = randf({13, 17}, 16), b = randf({17, 9}, 17), bt = randf({9, 17}, 18);
  Tensor bias = randf({9}, 19), self = randf({13, 9}, 20);
  expect_cuda_matches_cpu([](auto& v) { return v[0].mm(v[1]); }, {a, b});
  expect_cuda_matches_cpu([](auto& v) { return v[0].mm(v[1].t()); }, {a, bt});
  expect_cuda_matches_cpu([](auto& v) { return v[0].t().t().mm(v[1]); }, {a, b});
  expect_cuda_matches_cpu([](auto& v) { return addmm(v[2], v[0], v[1], 0.5, 2.0); }, {a, b, self});
  expect_cuda_matches_cpu([](auto& v) { return linear(v[0], v[1], v[2]); }, {a, bt, bias});
  // A strided (every other column) operand must be copied before cuBLAS.
  Tensor wide = randf({13, 34}, 21);
  expect_cuda_matches_cpu([](auto& v) { return v[0].slice(1, 0, 34, 2).mm(v[1]); }, {wide, b});
  Tensor x = randf({4, 6, 5}, 22), y = randf({4, 5, 3}, 23);
  expect_cuda_matches_cpu([](auto& v) { return v[0].bmm(v[1]); }, {x, y});
  expect_cuda_matches_cpu([](auto& v) { return v[0].bmm(v[1].transpose(1, 2).transpose(1, 2)); },
                          {x, y});
  expect_cuda_matches_cpu([](auto& v) { return matmul(v[0], v[1]); }, {x, randf({5, 3}, 24)});
}

TEST(Linalg, Tf32IsOptIn_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor a = randf({256, 256}, 25), b = randf({256, 256}, 26);
  Tensor ref = a.mm(b);
  cuda::set_allow_tf32(true);
  Tensor fast = a.cuda().mm(b.cuda()).cpu();
  cuda::set_allow_tf32(false);
  Tensor exact = a.cuda().mm(b.cuda()).cpu();
  EXPECT_ALLCLOSE(exact, ref, 1e-4, 1e-4);
  EXPECT_ALLCLOSE(fast, ref, 1e-2, 1e-2);
}

// ---- convolution and pooling -------------------------------------------------------------

TEST(Conv, Conv2d_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  cuda::set_allow_tf32(false);
  Tensor x = randf({2, 4, 9, 8}, 27), w = randf({6, 4, 3, 3}, 28), b = randf({6}, 29);
  expect_cuda_matches_cpu([](auto& v) { return conv2d(v[0], v[1], v[2]); }, {x, w, b});
  expect_cuda_matches_cpu(
      [](auto& v) {
        return conv2d(v[0], v[1], v[2], {2, 1}, {1, 2}, {1, 2});
      },
      {x, w, b});
  Tensor wg = randf({6, 2, 3, 3}, 30);
  expect_cuda_matches_cpu(
      [](auto& v) {
        return conv2d(v[0], v[1], Tensor(), {1, 1}, {1, 1}, {1, 1}, 2);
      },
      {x, wg});
  // Depthwise with a non-contiguous input.
  Tensor wd = randf({4, 1, 3, 3}, 31);
  expect_cuda_matches_cpu(
      [](auto& v) {
        return conv2d(v[0].transpose(2, 3), v[1], Tensor(), {1, 1}, {1, 1}, {1, 1}, 4);
      },
      {x, wd});
}

TEST(Pool, MaxAvgAdaptive_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor x = randf({2, 3, 11, 10}, 32);
  expect_cuda_matches_cpu([](auto& v) { return max_pool2d(v[0], {2, 2}); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return max_pool2d(v[0], {3, 3}, {2, 2}, {1, 1}); }, {x});
  expect_cuda_matches_cpu(
      [](auto& v) {
        return max_pool2d(v[0], {3, 2}, {2, 1}, {1, 0}, {2, 1}, true);
      },
      {x});
  expect_cuda_matches_cpu([](auto& v) { return avg_pool2d(v[0], {2, 2}); }, {x});
  expect_cuda_matches_cpu(
      [](auto& v) {
        return avg_pool2d(v[0], {3, 3}, {2, 2}, {1, 1}, true, false);
      },
      {x});
  expect_cuda_matches_cpu(
      [](auto& v) {
        return avg_pool2d(v[0], {3, 3}, {2, 2}, {1, 1}, false, true);
      },
      {x});
  expect_cuda_matches_cpu([](auto& v) { return adaptive_avg_pool2d(v[0], {1, 1}); }, {x});
  expect_cuda_matches_cpu([](auto& v) { return adaptive_avg_pool2d(v[0], {4, 3}); }, {x});
}

// ---- normalisation, softmax, losses --------------------------------------------------------

TEST(Norm, BatchNorm_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor x = randf({4, 3, 5, 6}, 33), w = randf({3}, 34), b = randf({3}, 35);
  Tensor rm_c = randf({3}, 36), rv_c = randf({3}, 37).abs() + 0.5;
  Tensor rm_g = rm_c.cuda(), rv_g = rv_c.cuda();
  // Training: outputs, gradients and the (unbiased) running-stat update.
  Tensor rm_c2 = rm_c.clone(), rv_c2 = rv_c.clone();
  expect_cuda_matches_cpu(
      [&](auto& v) {
        bool on_cuda = v[0].is_cuda();
        return batch_norm(v[0], on_cuda ? rm_g : rm_c2, on_cuda ? rv_g : rv_c2, v[1], v[2], true,
                          0.1, 1e-5);
      },
      {x, w, b});
  EXPECT_ALLCLOSE(rm_g.cpu(), rm_c2, 1e-5, 1e-6);
  EXPECT_ALLCLOSE(rv_g.cpu(), rv_c2, 1e-5, 1e-6);
  // Eval with running stats.
  expect_cuda_matches_cpu(
      [&](auto& v) {
        bool on_cuda = v[0].is_cuda();
        return batch_norm(v[0], on_cuda ? rm_g : rm_c2, on_cuda ? rv_g : rv_c2, v[1], v[2], false);
      },
      {x, w, b});
  // 2-D input, no affine parameters.
  expect_cuda_matches_cpu(
      [](auto& v) { return batch_norm(v[0], Tensor(), Tensor(), Tensor(), Tensor(), true); },
      {randf({8, 5}, 38)});
}

TEST(Norm, LayerNorm_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor x = randf({3, 4, 10}, 39), w = randf({10}, 40), b = randf({10}, 41);
  expect_cuda_matches_cpu([](auto& v) { return layer_norm(v[0], {10}, v[1], v[2]); }, {x, w, b});
  expect_cuda_matches_cpu([](auto& v) { return layer_norm(v[0], {4, 10}); }, {x});
  // Long rows take the block-per-row path.
  Tensor xl = randf({5, 3000}, 42), wl = randf({3000}, 43), bl = randf({3000}, 44);
  expect_cuda_matches_cpu([](auto& v) { return layer_norm(v[0], {3000}, v[1], v[2]); },
                          {xl, wl, bl}, 1e-4, 1e-4);
}

TEST(Softmax, ForwardBackward_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor x = randf({5, 7, 3}, 45);
  for (int64_t d : {0, 1, 2}) {
    SCOPED_TRACE(d);
    expect_cuda_matches_cpu([d](auto& v) { return softmax(v[0], d); }, {x});
    expect_cuda_matches_cpu([d](auto& v) { return log_softmax(v[0], d); }, {x});
  }
  Tensor row = randf({3, 5000}, 46);
  expect_cuda_matches_cpu([](auto& v) { return log_softmax(v[0], 1); }, {row});
  expect_cuda_matches_cpu([](auto& v) { return softmax(v[0], 1); }, {row});
}

TEST(Loss, NllAndCrossEntropy_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor logits = randf({6, 5}, 47);
  Tensor target = tensor<int64_t>({0, 4, 2, -100, 1, 3}, {6}, kInt64);
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    SCOPED_TRACE(static_cast<int>(r));
    expect_cuda_matches_cpu([r](auto& v) { return nll_loss(log_softmax(v[0], 1), v[1], r); },
                            {logits, target});
    expect_cuda_matches_cpu([r](auto& v) { return cross_entropy(v[0], v[1], r); },
                            {logits, target});
  }
  expect_cuda_matches_cpu([](auto& v) { return mse_loss(v[0], v[1]); },
                          {logits, randf({6, 5}, 48)});
}

TEST(Loss, CrossEntropyWeightsSmoothingProbabilities_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor logits = randf({2, 5, 3}, 49);
  Tensor index = tensor<int64_t>({0, 4, 2, -100, 1, 3}, {2, 3}, kInt64);
  Tensor probs = randf({2, 5, 3}, 50).softmax(1);
  Tensor weight = randf({5}, 51).abs() + 0.5;
  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    SCOPED_TRACE(static_cast<int>(r));
    expect_cuda_matches_cpu([r](auto& v) { return cross_entropy(v[0], v[1], v[2], r, -100, 0.1); },
                            {logits, index, weight});
    expect_cuda_matches_cpu([r](auto& v) { return cross_entropy(v[0], v[1], v[2], r, -100, 0.1); },
                            {logits, probs, weight});
    expect_cuda_matches_cpu([r](auto& v) { return cross_entropy(v[0], v[1], v[2], r); },
                            {logits, index, weight});
  }
}

// ---- indexing ------------------------------------------------------------------------------

TEST(Index, SelectAndEmbedding_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor x = randf({6, 4, 3}, 49);
  Tensor idx = tensor<int64_t>({5, 0, 2, 2, 1}, {5}, kInt64);
  for (int64_t d : {0, 2}) {
    Tensor i = d == 0 ? idx : tensor<int64_t>({2, 0, 2}, {3}, kInt64);
    expect_cuda_matches_cpu([d](auto& v) { return index_select(v[0], d, v[1]); }, {x, i});
  }
  // Repeated indices accumulate in the backward (index_add).
  Tensor table = randf({10, 8}, 50);
  Tensor ids = tensor<int64_t>({1, 3, 3, 9, 1, 0}, {2, 3}, kInt64);
  expect_cuda_matches_cpu([](auto& v) { return embedding(v[0], v[1]); }, {table, ids});
}

// ---- random ---------------------------------------------------------------------------------

// CUDA draws come from the device's own counter-based generator (not the CPU's mt19937, as in
// PyTorch): the same seed gives the same numbers, strided views included, with the right
// distributions.
TEST(Random, ReproducibleFromSeed_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  auto draw = [] {
    std::vector<Tensor> out;
    for (Dtype dt : {kFloat32, kFloat64}) {
      out.push_back(rand({1001}, TensorOptions(dt).device(cuda0())).cpu());
      out.push_back(randn({7, 13}, TensorOptions(dt).device(cuda0())).cpu());
    }
    out.push_back(randint(-5, 17, {3, 333}, cuda0()).cpu());
    out.push_back(dropout(ones({1000}, cuda0()), 0.3, true).cpu());
    Tensor v = zeros({6, 8}, cuda0());
    v.t().uniform_(-2, 3);
    out.push_back(v.cpu());
    return out;
  };
  manual_seed(1234);
  auto a = draw();
  manual_seed(1234);
  auto b = draw();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i].to(kFloat64).to_vector<double>(), b[i].to(kFloat64).to_vector<double>()) << i;
  EXPECT_NEAR(a[0].mean().item<double>(), 0.5, 0.03);
  EXPECT_NEAR(a[3].mean().item<double>(), 0.0, 0.2);
  EXPECT_NEAR(a[3].mul(a[3]).mean().item<double>(), 1.0, 0.25);
  auto ints = a[4].to_vector<int64_t>();
  EXPECT_EQ(*std::min_element(ints.begin(), ints.end()), -5);
  EXPECT_EQ(*std::max_element(ints.begin(), ints.end()), 16);
  double kept = a[5].ne(0.0).to(kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.7, 0.05);
  EXPECT_NEAR(a[5].max().item<double>(), 1.0 / 0.7, 1e-6);
}

// ---- allocator and transfers ---------------------------------------------------------------

TEST(CudaAllocator, ReusesFreedBlocks_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  cuda::synchronize();
  size_t before = cuda::memory_allocated();
  void* p = nullptr;
  {
    Tensor t = empty({1000}, cuda0());
    p = t.data_ptr();
    EXPECT_GE(cuda::memory_allocated(), before + 4000);
  }
  EXPECT_EQ(cuda::memory_allocated(), before);
  Tensor u = empty({1000}, cuda0());
  EXPECT_EQ(u.data_ptr(), p);  // the cached block, not a new cudaMalloc
  EXPECT_GE(cuda::memory_reserved(), cuda::memory_allocated());
  u = Tensor();
  cuda::empty_cache();
  EXPECT_EQ(cuda::memory_reserved(), cuda::memory_allocated());
  EXPECT_THROW(empty({4}, Device(kCUDA, cuda::device_count())), Error);
}

TEST(CudaCopy, NonContiguousAcrossDevices_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor x = randf({5, 7}, 51);
  Tensor xt = x.t();
  Tensor g = xt.cuda();
  EXPECT_EQ(g.sizes(), (Shape{7, 5}));
  EXPECT_ALLCLOSE(g.cpu(), xt, 0, 0);
  EXPECT_ALLCLOSE(g.t().cpu(), x, 0, 0);
  EXPECT_ALLCLOSE(x.slice(1, 1, 7, 3).cuda().cpu(), x.slice(1, 1, 7, 3), 0, 0);
  // Into a strided CUDA destination, from a strided CPU source.
  Tensor dst = zeros({7, 10}, cuda0());
  dst.narrow(1, 2, 5).copy_(xt);
  Tensor back = dst.cpu();
  EXPECT_ALLCLOSE(back.narrow(1, 2, 5), xt, 0, 0);
  EXPECT_EQ(back.narrow(1, 0, 2).abs().sum().item<double>(), 0.0);
  // Dtype changes on the way.
  EXPECT_ALLCLOSE(x.to(cuda0(), kFloat64).cpu(), x.to(kFloat64), 0, 0);
  EXPECT_ALLCLOSE(x.to(cuda0(), kFloat16).to(kFloat32).cpu(), x.to(kFloat16).to(kFloat32), 0, 0);
  Tensor ints = arange(0, 24, 1, TensorOptions(kInt64).device(cuda0())).reshape({4, 6});
  EXPECT_EQ(ints.t().contiguous().cpu().to_vector<int64_t>(),
            arange(0, 24, 1, kInt64).reshape({4, 6}).t().contiguous().to_vector<int64_t>());
  // Expanded (stride 0) source.
  Tensor e = randf({1, 5}, 52).expand({4, 5});
  EXPECT_ALLCLOSE(e.cuda().cpu(), e, 0, 0);
}
