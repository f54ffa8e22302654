// Convolution, pooling and batch norm: gradients, meta shapes, golden values from PyTorch
// (including the running-stat update), and errors.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cmath>
#include <limits>
#include <map>

#include "op_test_utils.h"

using namespace smp;
using smp::test::randd;

namespace {

using Fn = test::OpFn;
// Conv/pool/batch-norm gradients sum many products: input gradients within 1e-4 absolute.
void expect_golden(const std::map<std::string, Tensor>& g, const std::string& name, int n_inputs,
                   const Fn& f) {
  test::expect_golden(g, name, n_inputs, f, 1e-4, 1e-5, 1e-4);
}
using test::expect_meta_matches;

// Inputs far from ties, so max pooling's argmax is stable under finite differences.
Tensor distinct(const Shape& shape, uint64_t seed) {
  Tensor r = randd(shape, seed);
  auto v = r.to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) v[i] += static_cast<double>((i * 7919) % v.size());
  return tensor<double>(v, shape, kFloat64);
}

}  // namespace

TEST(Conv2d, Gradcheck) {
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return conv2d(x[0], x[1], x[2]); },
                   {randd({2, 3, 5, 4}, 1), randd({2, 3, 3, 2}, 2), randd({2}, 3)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& x) {
        return conv2d(x[0], x[1], x[2], {2, 1}, {1, 2}, {2, 1}, 2);
      },
      {randd({1, 4, 7, 5}, 4), randd({4, 2, 2, 3}, 5), randd({4}, 6)});
  // 1x1 (the direct GEMM path), no bias, a non-contiguous input.
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return conv2d(x[0].transpose(2, 3), x[1]); },
                   {randd({2, 3, 4, 3}, 7), randd({2, 3, 1, 1}, 8)});
  // Depthwise with stride in both dims.
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& x) {
        return conv2d(x[0], x[1], Tensor(), {2, 2}, {1, 1}, {1, 1}, 3);
      },
      {randd({1, 3, 6, 5}, 9), randd({3, 1, 3, 3}, 10)});
  // Several samples with a small output plane take the batched-GEMM path (one GEMM over the
  // whole chunk): groups, stride, dilation and asymmetric padding together.
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& x) {
        return conv2d(x[0], x[1], x[2], {2, 2}, {1, 0}, {1, 2}, 2);
      },
      {randd({3, 4, 6, 7}, 11), randd({4, 2, 3, 2}, 12), randd({4}, 13)});
}

// float16 and bfloat16 products and convolutions on the CPU compute in float32 and round
// once, so they equal the float32 computation on the same (rounded) inputs, rounded.
TEST(ReducedFloat, MatmulAndConvRunInFloat32OnCpu) {
  for (Dtype dt : {kBFloat16, kFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    auto leaf = [&](const Shape& s, uint64_t seed) {
      manual_seed(seed);
      return randn(s).to(dt).requires_grad_(true);
    };
    auto f32 = [](const Tensor& t) { return t.detach().to(kFloat32).requires_grad_(true); };
    auto same = [&](const Tensor& got, const Tensor& want32) {
      ASSERT_EQ(got.dtype(), dt);
      EXPECT_EQ(test::max_abs_diff(got.to(kFloat32), want32.to(dt).to(kFloat32)), 0.0);
    };
    Tensor a = leaf({5, 7}, 1), b = leaf({7, 3}, 2), a32 = f32(a), b32 = f32(b);
    Tensor c = matmul(a, b), c32 = matmul(a32, b32);
    same(c, c32);
    Tensor gc = leaf(c.sizes(), 9).detach();
    c.backward(gc);
    c32.backward(gc.to(kFloat32));
    same(a.grad(), a32.grad());
    same(b.grad(), b32.grad());
    Tensor p = leaf({2, 3, 4}, 3), q = leaf({2, 4, 5}, 4);
    same(bmm(p, q), bmm(f32(p), f32(q)));
    // Per-sample (large plane) and batched (small plane) convolution paths.
    for (int64_t hw : {20, 6}) {
      Tensor x = leaf({2, 3, hw, hw}, 5), w = leaf({4, 3, 3, 3}, 6), bias = leaf({4}, 7);
      Tensor x32 = f32(x), w32 = f32(w), bias32 = f32(bias);
      Tensor y = conv2d(x, w, bias, {1, 1}, {1, 1});
      Tensor y32 = conv2d(x32, w32, bias32, {1, 1}, {1, 1});
      same(y, y32);
      Tensor gout = leaf(y.sizes(), 8).detach();
      y.backward(gout);
      y32.backward(gout.to(kFloat32));
      same(x.grad(), x32.grad());
      same(w.grad(), w32.grad());
      same(bias.grad(), bias32.grad());
    }
  }
}

TEST(Pool2d, Gradcheck) {
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& x) {
        return max_pool2d(x[0], {3, 3}, {2, 2}, {1, 1}, {1, 1}, true);
      },
      {distinct({2, 2, 6, 5}, 1)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& x) {
        return max_pool2d(x[0], {2, 2}, {1, 1}, {0, 0}, {2, 2});
      },
      {distinct({1, 2, 5, 5}, 2)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& x) {
        return avg_pool2d(x[0], {3, 3}, {2, 2}, {1, 1}, true, false);
      },
      {randd({2, 2, 6, 5}, 3)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& x) {
        return avg_pool2d(x[0], {2, 3}, {2, 2}, {1, 1});
      },
      {randd({1, 2, 5, 7}, 4)});
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& x) {
        return adaptive_avg_pool2d(x[0], {3, 4});
      },
      {randd({2, 2, 5, 7}, 5)});
}

TEST(BatchNorm, Gradcheck) {
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    Fn with_affine = [training](const std::vector<Tensor>& x) {
      Tensor rm = zeros({3}, kFloat64);
      Tensor rv = ones({3}, kFloat64);
      return batch_norm(x[0], rm, rv, x[1], x[2], training, 0.1, 1e-5);
    };
    EXPECT_GRADCHECK(with_affine, {randd({4, 3, 2, 3}, 1), randd({3}, 2), randd({3}, 3)});
    Fn plain = [training](const std::vector<Tensor>& x) {
      Tensor rm = full({5}, 0.3, kFloat64);
      Tensor rv = full({5}, 2.0, kFloat64);
      return batch_norm(x[0], rm, rv, Tensor(), Tensor(), training, 0.1, 1e-5);
    };
    EXPECT_GRADCHECK(plain, {randd({6, 5}, 4)});
  }
}

TEST(ConvPool, MetaShapesMatchCpu) {
  expect_meta_matches(
      [](const std::vector<Tensor>& x) {
        return conv2d(x[0], x[1], x[2], {2, 1}, {1, 2}, {2, 1}, 2);
      },
      {randd({2, 4, 9, 8}), randd({6, 2, 3, 2}), randd({6})});
  expect_meta_matches(
      [](const std::vector<Tensor>& x) {
        return max_pool2d(x[0], {3, 3}, {2, 2}, {1, 1}, {1, 1}, true);
      },
      {randd({2, 3, 8, 7})});
  expect_meta_matches(
      [](const std::vector<Tensor>& x) {
        return avg_pool2d(x[0], {3, 3}, {2, 2}, {1, 1}, true);
      },
      {randd({2, 3, 8, 7})});
  expect_meta_matches(
      [](const std::vector<Tensor>& x) {
        return adaptive_avg_pool2d(x[0], {3, 4});
      },
      {randd({2, 3, 5, 7})});
  expect_meta_matches(
      [](const std::vector<Tensor>& x) {
        return batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], true);
      },
      {randd({4, 3, 5, 6}), randd({3}), randd({3})});
}

TEST(ConvPool, GoldenValuesMatchPyTorch) {
  auto g = load_safetensors(SMP_TEST_GOLDEN_DIR "/conv.safetensors");
  expect_golden(g, "conv_basic", 3,
                [](const std::vector<Tensor>& x) { return conv2d(x[0], x[1], x[2]); });
  expect_golden(g, "conv_strided", 3, [](const std::vector<Tensor>& x) {
    return conv2d(x[0], x[1], x[2], {2, 1}, {1, 2}, {2, 1}, 2);
  });
  expect_golden(g, "conv_1x1", 2, [](const std::vector<Tensor>& x) { return conv2d(x[0], x[1]); });
  expect_golden(g, "max_pool", 1, [](const std::vector<Tensor>& x) {
    return max_pool2d(x[0], {3, 3}, {2, 2}, {1, 1}, {1, 1}, true);
  });
  expect_golden(g, "max_pool_dilated", 1, [](const std::vector<Tensor>& x) {
    return max_pool2d(x[0], {2, 2}, {1, 1}, {0, 0}, {2, 2});
  });
  expect_golden(g, "avg_pool", 1, [](const std::vector<Tensor>& x) {
    return avg_pool2d(x[0], {3, 3}, {2, 2}, {1, 1}, true, false);
  });
  expect_golden(g, "avg_pool_pad", 1, [](const std::vector<Tensor>& x) {
    return avg_pool2d(x[0], {2, 3}, {2, 2}, {1, 1});
  });
  expect_golden(g, "adaptive_avg_pool", 1, [](const std::vector<Tensor>& x) {
    return adaptive_avg_pool2d(x[0], {3, 4});
  });
}

TEST(BatchNorm, TrainingUpdatesRunningStatsAsPyTorch) {
  auto g = load_safetensors(SMP_TEST_GOLDEN_DIR "/conv.safetensors");
  for (std::string name : {"bn_train4d", "bn_train2d"}) {
    SCOPED_TRACE(name);
    Tensor rm = g.at(name + ".running_mean_before").clone();
    Tensor rv = g.at(name + ".running_var_before").clone();
    expect_golden(g, name, 3, [&](const std::vector<Tensor>& x) {
      return batch_norm(x[0], rm, rv, x[1], x[2], true, 0.2, 1e-4);
    });
    EXPECT_ALLCLOSE(rm, g.at(name + ".running_mean"), 1e-5, 1e-6);
    EXPECT_ALLCLOSE(rv, g.at(name + ".running_var"), 1e-5, 1e-6);
  }
  Tensor rm = g.at("bn_eval.running_mean").clone(), rv = g.at("bn_eval.running_var").clone();
  expect_golden(g, "bn_eval", 3, [&](const std::vector<Tensor>& x) {
    return batch_norm(x[0], rm, rv, x[1], x[2], false);
  });
  // Eval mode leaves the running stats alone.
  EXPECT_ALLCLOSE(rm, g.at("bn_eval.running_mean"), 0, 0);
  EXPECT_ALLCLOSE(rv, g.at("bn_eval.running_var"), 0, 0);
}

TEST(ConvPool, ErrorsNameWhatWasWrong) {
  auto msg = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg([] {
              conv2d(zeros({1, 3, 5, 5}), zeros({4, 2, 3, 3}));
            }).find("3 channels"),
            std::string::npos);
  EXPECT_THROW(
      conv2d(zeros({1, 4, 5, 5}), zeros({3, 2, 3, 3}), Tensor(), {1, 1}, {0, 0}, {1, 1}, 2),
      Error);  // 3 out channels, 2 groups
  EXPECT_THROW(conv2d(zeros({1, 3, 2, 2}), zeros({4, 3, 3, 3})), Error);
  EXPECT_THROW(conv2d(zeros({1, 3, 5, 5}), zeros({4, 3, 3, 3}), zeros({5})), Error);
  EXPECT_THROW(max_pool2d(zeros({1, 1, 4, 4}), {2, 2}, {2, 2}, {2, 2}), Error);
  EXPECT_THROW(avg_pool2d(zeros({4, 4}), {2, 2}), Error);
  EXPECT_NE(msg([] {
              batch_norm(zeros({1, 3}), zeros({3}), ones({3}), Tensor(), Tensor(), true);
            }).find("more than 1 value per channel"),
            std::string::npos);
  EXPECT_THROW(batch_norm(zeros({2, 3}), zeros({4}), ones({4}), Tensor(), Tensor(), true), Error);
}

// ResNet's stem pooling (3x3, stride 2, padding 1) has a fast path: values and the position
// the gradient lands on must equal a naive loop (NaN wins, first index on ties), float32.
TEST(Pool2d, MaxPool3x3Stride2Pad1MatchesNaiveLoop) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (auto [h, w] : {std::pair<int64_t, int64_t>{16, 16}, {7, 9}, {2, 3}, {1, 1}, {33, 5}}) {
    std::vector<float> v = randn({2, h, w}).to_vector<float>();
    for (size_t i = 0; i < v.size(); i += 7) v[i] = v[i / 2];  // ties
    if (v.size() > 10) v[3] = nan, v[10] = -inf;
    Tensor x = tensor<float>(v, {1, 2, h, w}).requires_grad_();
    Tensor y = max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
    y.sum().backward();
    const int64_t oh = (h + 2 - 3) / 2 + 1, ow = (w + 2 - 3) / 2 + 1;
    ASSERT_EQ(y.sizes(), (Shape{1, 2, oh, ow}));
    auto got = y.to_vector<float>();
    auto grad = x.grad().to_vector<float>();
    std::vector<float> want_grad(v.size(), 0);
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          float best = -inf;
          int64_t at = -1;
          for (int64_t iy = 2 * oy - 1; iy <= 2 * oy + 1; ++iy)
            for (int64_t ix = 2 * ox - 1; ix <= 2 * ox + 1; ++ix) {
              if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
              float e = v[(p * h + iy) * w + ix];
              if (at < 0 || e > best || (std::isnan(e) && !std::isnan(best)))
                best = e, at = iy * w + ix;
            }
          float g = got[(p * oh + oy) * ow + ox];
          if (std::isnan(best))
            EXPECT_TRUE(std::isnan(g));
          else
            EXPECT_EQ(g, best) << h << "x" << w << " out " << oy << "," << ox;
          want_grad[p * h * w + at] += 1;
        }
    for (size_t i = 0; i < v.size(); ++i)
      EXPECT_EQ(grad[i], want_grad[i]) << h << "x" << w << " at " << i;
  }
}
