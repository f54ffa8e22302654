// index_select, cat, stack: values, gradients, meta shapes, errors.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include "op_test_utils.h"

using namespace smp;
using smp::test::error_of;
using smp::test::randd;

TEST(IndexSelect, Values) {
  Tensor x = arange(12, kFloat32).reshape({3, 4});
  Tensor i64 = tensor<int64_t>({2, 0, 2});
  EXPECT_EQ(index_select(x, 0, i64).to_vector<float>(),
            (std::vector<float>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}));
  Tensor i32 = tensor<int32_t>({3, 1});
  EXPECT_EQ(x.index_select(1, i32).to_vector<float>(), (std::vector<float>{3, 1, 7, 5, 11, 9}));
  EXPECT_EQ(x.index_select(-1, i32).sizes(), (Shape{3, 2}));
  // Non-contiguous source and integer dtype.
  Tensor xi = arange(12).reshape({3, 4}).t();
  EXPECT_EQ(xi.index_select(1, tensor<int64_t>({1})).to_vector<int64_t>(),
            (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(x.index_select(0, tensor<int64_t>(std::vector<int64_t>{})).sizes(), (Shape{0, 4}));
}

TEST(IndexSelect, Gradcheck) {
  Tensor idx = tensor<int64_t>({1, 1, 0, 3});  // repeated indices accumulate
  for (int64_t d : {0, 1, 2}) {
    Tensor id = d == 1 ? tensor<int64_t>({2, 0, 2}) : idx;
    EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return index_select(in[0], d, id); },
                     {randd({4, 3, 5}, 1)});
  }
  // Non-contiguous input.
  EXPECT_GRADCHECK([&](const std::vector<Tensor>& in) { return in[0].t().index_select(0, idx); },
                   {randd({3, 4}, 2)});
}

TEST(IndexSelect, MetaAndErrors) {
  Tensor m = empty({5, 6}, Device(kMeta));
  Tensor mi = empty({3}, TensorOptions(kInt64).device(Device(kMeta)));
  EXPECT_EQ(index_select(m, 1, mi).sizes(),
            index_select(zeros({5, 6}), 1, zeros({3}, kInt64)).sizes());
  EXPECT_TRUE(index_select(m, 1, mi).is_meta());
  std::string msg = error_of([] { index_select(zeros({3, 4}), 0, tensor<int64_t>({5})); });
  EXPECT_NE(msg.find("index 5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("size 3"), std::string::npos) << msg;
  EXPECT_THROW(index_select(zeros({3}), 0, tensor<float>({1})), Error);
  EXPECT_THROW(index_select(zeros({3}), 0, zeros({1, 1}, kInt64)), Error);
}

TEST(Cat, Values) {
  Tensor a = arange(6, kFloat32).reshape({2, 3});
  Tensor b = arange(6, 10, 1, kFloat32).reshape({2, 2});
  EXPECT_EQ(cat({a, b}, 1).to_vector<float>(), (std::vector<float>{0, 1, 2, 6, 7, 3, 4, 5, 8, 9}));
  EXPECT_EQ(cat({a, a}, 0).sizes(), (Shape{4, 3}));
  EXPECT_EQ(cat({a, a}, -2).to_vector<float>(),
            (std::vector<float>{0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}));
  // Non-contiguous inputs and an empty 1-D tensor, skipped as in PyTorch.
  Tensor c = cat({a.t(), zeros({0}), a.t()}, 1);
  EXPECT_EQ(c.sizes(), (Shape{3, 4}));
  EXPECT_EQ(c.to_vector<float>(), (std::vector<float>{0, 3, 0, 3, 1, 4, 1, 4, 2, 5, 2, 5}));
}

TEST(Cat, PromotesDtypes) {
  Tensor a = ones({2}, kInt64), b = full({1}, 0.5, kFloat32), c = full({1}, 2.0, kFloat64);
  EXPECT_EQ(cat({a, b}).dtype(), kFloat32);
  Tensor r = cat({a, b, c});
  EXPECT_EQ(r.dtype(), kFloat64);
  EXPECT_EQ(r.to_vector<double>(), (std::vector<double>{1, 1, 0.5, 2}));
  EXPECT_EQ(cat({a, ones({1}, kInt32)}).dtype(), kInt64);
}

TEST(Cat, Gradcheck) {
  for (int64_t d : {0, 1, 2}) {
    Shape sa{2, 3, 4}, sb{2, 3, 4};
    sb[static_cast<size_t>(d)] = 1;
    EXPECT_GRADCHECK(
        [&](const std::vector<Tensor>& in) {
          return cat({in[0], in[1], in[0]}, d);
        },
        {randd(sa, 3), randd(sb, 4)});
  }
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        return cat({in[0].t(), in[1]}, 0);
      },
      {randd({3, 2}, 5), randd({1, 3}, 6)});
  // Gradient of a lower-precision input comes back in its own dtype.
  Tensor f = ones({2}, kFloat32).requires_grad_(true);
  Tensor g = ones({1}, kFloat64).requires_grad_(true);
  cat({f, g}).sum().backward();
  EXPECT_EQ(f.grad().dtype(), kFloat32);
  EXPECT_EQ(g.grad().to_vector<double>(), (std::vector<double>{1}));
}

TEST(Cat, MetaAndErrors) {
  Device meta(kMeta);
  Tensor r = cat({empty({2, 3}, meta), empty({2, 5}, meta)}, 1);
  EXPECT_TRUE(r.is_meta());
  EXPECT_EQ(r.sizes(), cat({zeros({2, 3}), zeros({2, 5})}, 1).sizes());
  std::string msg = error_of([] { cat({zeros({2, 3}), zeros({3, 3})}, 1); });
  EXPECT_NE(msg.find("except in dimension 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 3]"), std::string::npos) << msg;
  EXPECT_THROW(cat({zeros({2, 3}), zeros({2, 3, 1})}, 0), Error);
  EXPECT_THROW(cat({}, 0), Error);
  EXPECT_THROW(cat({zeros({2})}, 1), Error);
  EXPECT_THROW(cat({zeros({})}, 0), Error);
}

TEST(Stack, ValuesGradMetaErrors) {
  Tensor a = arange(3, kFloat32), b = arange(3, 6, 1, kFloat32);
  EXPECT_EQ(stack({a, b}).to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(stack({a, b}, 1).to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(stack({a, b}, -1).sizes(), (Shape{3, 2}));
  for (int64_t d : {0, 1, 2})
    EXPECT_GRADCHECK(
        [&](const std::vector<Tensor>& in) {
          return stack({in[0], in[1].t()}, d);
        },
        {randd({2, 3}, 7), randd({3, 2}, 8)});
  Device meta(kMeta);
  EXPECT_EQ(stack({empty({2, 3}, meta), empty({2, 3}, meta)}, 2).sizes(), (Shape{2, 3, 2}));
  std::string msg = error_of([] { stack({zeros({2}), zeros({3})}); });
  EXPECT_NE(msg.find("same shape"), std::string::npos) << msg;
}
