// Matrix products: shapes (CPU == meta), gradients, golden values from PyTorch, errors.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <map>

#include "op_test_utils.h"

using namespace smp;
using smp::test::randd;

namespace {

using Fn = test::OpFn;
using test::expect_golden;
using test::expect_meta_matches;

}  // namespace

TEST(Linalg, MmMatchesNaiveProductOnTransposedViews) {
  Tensor a = randd({4, 3}, 1), b = randd({5, 4}, 2);
  // aᵀ (3,4) and bᵀ (4,5) are views with column-major strides: read in place by BLAS.
  Tensor c = mm(a.t(), b.t());
  auto av = a.to_vector<double>(), bv = b.to_vector<double>(), cv = c.to_vector<double>();
  ASSERT_EQ(c.sizes(), (Shape{3, 5}));
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) {
      double s = 0;
      for (int k = 0; k < 4; ++k) s += av[k * 3 + i] * bv[j * 4 + k];
      EXPECT_NEAR(cv[i * 5 + j], s, 1e-12);
    }
  // A view with neither stride 1 (every other column) is copied, with the same result.
  Tensor wide = randd({3, 8}, 3);
  Tensor sl = wide.slice(1, 0, 8, 2);
  EXPECT_ALLCLOSE(mm(sl, randd({4, 2}, 4)), mm(sl.contiguous(), randd({4, 2}, 4)), 1e-12, 1e-12);
}

TEST(Linalg, Float32AgreesWithFloat64) {
  Tensor a = randd({33, 17}, 5), b = randd({17, 9}, 6);
  EXPECT_ALLCLOSE(mm(a.to(kFloat32), b.to(kFloat32)).to(kFloat64), mm(a, b), 1e-5, 1e-5);
}

TEST(Linalg, Gradcheck) {
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return mm(x[0], x[1]); },
                   {randd({3, 4}, 1), randd({4, 2}, 2)});
  // Non-contiguous operands: transposed and sliced views.
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& x) { return matmul(x[0].t(), x[1].slice(1, 0, 6, 2)); },
      {randd({4, 3}, 3), randd({4, 6}, 4)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return bmm(x[0], x[1].transpose(1, 2)); },
                   {randd({2, 3, 4}, 5), randd({2, 5, 4}, 6)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                   {randd({2, 1, 3, 4}, 7), randd({3, 4, 2}, 8)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                   {randd({4}, 9), randd({2, 4, 3}, 10)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                   {randd({2, 3, 4}, 11), randd({4}, 12)});
  // The dot product is 0-dim; gradcheck's cotangent needs at least one dim.
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]).reshape({1}); },
                   {randd({4}, 13), randd({4}, 14)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); },
                   {randd({2, 3, 5}, 15), randd({4, 5}, 16), randd({4}, 17)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return linear(x[0].transpose(0, 1), x[1]); },
                   {randd({5, 3}, 18), randd({4, 5}, 19)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& x) { return addmm(x[0], x[1], x[2], 0.5, -1.5); },
                   {randd({1, 3}, 20), randd({2, 4}, 21), randd({4, 3}, 22)});
}

TEST(Linalg, MetaShapesMatchCpu) {
  expect_meta_matches([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                      {randd({2, 1, 3, 4}), randd({5, 4, 2})});
  expect_meta_matches([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                      {randd({4}), randd({3, 4, 6})});
  expect_meta_matches([](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); },
                      {randd({2, 3, 6}), randd({4, 6}), randd({4})});
  expect_meta_matches([](const std::vector<Tensor>& x) { return addmm(x[0], x[1], x[2]); },
                      {randd({3}), randd({2, 5}), randd({5, 3})});
  expect_meta_matches([](const std::vector<Tensor>& x) { return bmm(x[0], x[1]); },
                      {randd({3, 2, 5}), randd({3, 5, 4})});
}

TEST(Linalg, GoldenValuesMatchPyTorch) {
  auto g = load_safetensors(SMP_TEST_GOLDEN_DIR "/linalg.safetensors");
  auto mmf = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  expect_golden(g, "mm", 2, [](const std::vector<Tensor>& x) { return mm(x[0], x[1]); });
  expect_golden(g, "matmul_batched_broadcast", 2, mmf);
  expect_golden(g, "matmul_vec_batched", 2, mmf);
  expect_golden(g, "matmul_folded", 2, mmf);
  expect_golden(g, "bmm", 2, [](const std::vector<Tensor>& x) { return bmm(x[0], x[1]); });
  expect_golden(g, "linear", 3,
                [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); });
  expect_golden(g, "addmm", 3,
                [](const std::vector<Tensor>& x) { return addmm(x[0], x[1], x[2], 0.5, 2.0); });
}

TEST(Linalg, ShapeErrorsNameTheOperands) {
  try {
    mm(zeros({2, 3}), zeros({4, 5}));
    FAIL() << "mm accepted mismatched shapes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mm: cannot multiply 2x3 by 4x5"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(bmm(zeros({2, 3, 4}), zeros({3, 4, 5})), Error);
  EXPECT_THROW(matmul(zeros({2, 3, 4}), zeros({5, 2})), Error);
  EXPECT_THROW(linear(zeros({2, 3}), zeros({4, 5})), Error);
  EXPECT_THROW(mm(zeros({2, 3}), zeros({3, 2}, kFloat64)), Error);
  EXPECT_THROW(mm(zeros({2}), zeros({2, 2})), Error);
  EXPECT_THROW(addmm(zeros({4}), zeros({2, 3}), zeros({3, 5})), Error);
}

TEST(Linalg, LinearOverLeadingDimsIsOneProduct) {
  Tensor x = randd({2, 3, 5}, 1), w = randd({4, 5}, 2), b = randd({4}, 3);
  Tensor y = linear(x, w, b);
  EXPECT_EQ(y.sizes(), (Shape{2, 3, 4}));
  EXPECT_ALLCLOSE(y.reshape({6, 4}), addmm(b, x.reshape({6, 5}), w.t()), 1e-12, 1e-12);
}

TEST(Linalg, BmmSmallAndLargeMatricesAgreeWithMm) {
  // Small products are split over the batch, large ones threaded inside BLAS: both paths.
  for (int64_t n : {3, 130}) {
    Tensor a = randd({3, n, n + 1}, 1);
    Tensor bt = randd({3, n, n + 2}, 2).transpose(1, 2);  // (3, n+2, n), transposed storage
    Tensor out = bmm(bt, a);
    ASSERT_EQ(out.sizes(), (Shape{3, n + 2, n + 1}));
    for (int64_t i = 0; i < 3; ++i)
      EXPECT_ALLCLOSE(out.select(0, i), mm(bt.select(0, i), a.select(0, i)), 1e-10, 1e-10);
  }
}
