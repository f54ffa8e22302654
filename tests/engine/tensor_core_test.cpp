// Tensor basics that need no arithmetic kernels: creation, views, strides, dtypes, devices.
#include "gradcheck.h"

#include <smp/smp.h>

#include <gtest/gtest.h>

using namespace smp;

TEST(Device, ParsesAndPrints) {
  EXPECT_EQ(Device("cpu").type(), kCPU);
  EXPECT_EQ(Device("cuda:1").index(), 1);
  EXPECT_EQ(Device("cuda").str(), "cuda:0");
  EXPECT_TRUE(Device("meta").is_meta());
  EXPECT_THROW(Device("tpu"), Error);
  EXPECT_THROW(Device("cuda:x"), Error);
  EXPECT_THROW(Device("cpu:1"), Error);
}

TEST(Dtype, PromotionFollowsPyTorch) {
  EXPECT_EQ(promote_types(kInt64, kFloat32), kFloat32);
  EXPECT_EQ(promote_types(kInt32, kInt64), kInt64);
  EXPECT_EQ(promote_types(kUInt8, kBool), kUInt8);
  EXPECT_EQ(promote_types(kFloat16, kBFloat16), kFloat32);
  EXPECT_EQ(promote_types(kFloat16, kInt64), kFloat16);
  EXPECT_EQ(promote_types(kFloat32, kFloat64), kFloat64);
  // wrapped numbers do not widen within a category
  EXPECT_EQ(result_type(kFloat16, Scalar(2.5)), kFloat16);
  EXPECT_EQ(result_type(kInt32, Scalar(int64_t{3})), kInt32);
  EXPECT_EQ(result_type(kInt32, Scalar(2.5)), kFloat32);
  EXPECT_EQ(result_type(kBool, Scalar(1)), kInt64);
}

TEST(Half, RoundTripsAndRounds) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f})
    EXPECT_EQ(static_cast<float>(Half(f)), f) << f;
  EXPECT_TRUE(std::isinf(static_cast<float>(Half(70000.0f))));
  EXPECT_EQ(static_cast<float>(Half(1.0f + 1.0f / 2048)), 1.0f);  // ties to even
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f)), 1.0f);
  EXPECT_EQ(static_cast<float>(BFloat16(3.0f)), 3.0f);
  EXPECT_EQ(static_cast<float>(BFloat16(1.0f + 1.0f / 256)), 1.0f);  // ties to even
}

TEST(Tensor, CreationAndItem) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.sizes(), (Shape{2, 3}));
  EXPECT_EQ(z.dtype(), kFloat32);
  EXPECT_TRUE(z.is_contiguous());
  EXPECT_EQ(full({}, 7, kInt64).item<int64_t>(), 7);
  EXPECT_EQ(full({1}, 2.5).item<double>(), 2.5);
  EXPECT_THROW(ones({2}).item(), Error);
  auto a = arange(5);
  EXPECT_EQ(a.dtype(), kInt64);
  EXPECT_EQ(a.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(0.0, 1.0, 0.25).to_vector<float>(), (std::vector<float>{0, 0.25, 0.5, 0.75}));
  auto t = tensor<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_THROW(tensor<float>({1, 2, 3}, {2, 2}), Error);
}

TEST(Tensor, FromBlobSharesMemoryAndRunsDeleter) {
  static bool deleted = false;
  float data[6] = {0, 1, 2, 3, 4, 5};
  {
    Tensor t = from_blob(data, {2, 3}, kFloat32, [](void*) { deleted = true; });
    data[4] = 40;
    EXPECT_EQ(t.to_vector<float>()[4], 40);
  }
  EXPECT_TRUE(deleted);
  Tensor c = from_data(data, {6}, kFloat32);
  data[0] = 100;
  EXPECT_EQ(c.to_vector<float>()[0], 0);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = arange(12, kFloat32).reshape({3, 4});
  Tensor tt = t.transpose(0, 1);
  EXPECT_EQ(tt.sizes(), (Shape{4, 3}));
  EXPECT_EQ(tt.strides(), (Shape{1, 4}));
  EXPECT_FALSE(tt.is_contiguous());
  EXPECT_TRUE(tt.is_alias_of(t));
  EXPECT_EQ(tt.contiguous().to_vector<float>(),
            (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  Tensor col = t.select(1, 2);
  EXPECT_EQ(col.to_vector<float>(), (std::vector<float>{2, 6, 10}));
  Tensor s = t.slice(1, 1, 4, 2);
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{1, 3, 5, 7, 9, 11}));
  s.fill_(-1);
  EXPECT_EQ(t.to_vector<float>()[1], -1);
  EXPECT_THROW(tt.view({12}), Error);
  EXPECT_EQ(tt.reshape({12}).numel(), 12);
  Tensor e = tensor<float>({1, 2}).reshape({2, 1}).expand({2, 3});
  EXPECT_EQ(e.strides(), (Shape{1, 0}));
  EXPECT_EQ(e.contiguous().to_vector<float>(), (std::vector<float>{1, 1, 1, 2, 2, 2}));
  auto parts = arange(7).split(3);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].to_vector<int64_t>(), (std::vector<int64_t>{6}));
  EXPECT_EQ(arange(6).chunk(4).size(), 3u);  // PyTorch: chunks of ceil(6/4)=2
  EXPECT_EQ(ones({2, 1, 3}).squeeze().sizes(), (Shape{2, 3}));
  EXPECT_EQ(ones({2, 3}).unsqueeze(-1).sizes(), (Shape{2, 3, 1}));
  EXPECT_EQ(ones({2, 3, 4}).flatten(1).sizes(), (Shape{2, 12}));
  EXPECT_EQ(ones({2, 3, 4}).permute({2, 0, 1}).sizes(), (Shape{4, 2, 3}));
  EXPECT_THROW(ones({2, 3}).permute({0, 0}), Error);
  EXPECT_THROW(ones({2, 3}).view({-1, -1}), Error);
  EXPECT_THROW(ones({2, 3}).expand({3, 3}), Error);
}

TEST(Tensor, ViewOfNonContiguousWhenPossible) {
  Tensor t = arange(24, kFloat32).reshape({2, 3, 4}).transpose(0, 1);  // (3,2,4), strides (4,12,1)
  Tensor v = t.view({3, 2, 2, 2});
  EXPECT_TRUE(v.is_alias_of(t));
  EXPECT_EQ(v.contiguous().to_vector<float>(), t.contiguous().to_vector<float>());
}

TEST(Tensor, DtypeConversionAndCopy) {
  Tensor t = tensor<float>({1.5f, -2.5f, 0.0f});
  EXPECT_EQ(t.to(kInt64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 0}));
  EXPECT_EQ(t.to(kBool).to_vector<bool>(), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(t.to(kFloat16).to(kFloat32).to_vector<float>(), t.to_vector<float>());
  EXPECT_EQ(t.to(kBFloat16).to(kFloat64).to_vector<double>(), (std::vector<double>{1.5, -2.5, 0}));
  Tensor d = zeros({2, 3});
  d.copy_(tensor<double>({1, 2, 3}, {3}, kFloat64));  // broadcasts and converts
  EXPECT_EQ(d.to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  EXPECT_THROW(d.copy_(ones({4})), Error);
}

TEST(Meta, HasShapeButNoData) {
  Tensor m = empty({4, 5}, Device("meta"));
  EXPECT_TRUE(m.is_meta());
  EXPECT_EQ(m.transpose(0, 1).sizes(), (Shape{5, 4}));
  EXPECT_EQ(m.reshape({-1}).sizes(), (Shape{20}));
  try {
    (void)m.data_ptr();
    FAIL() << "reading a meta tensor must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no data on this process"), std::string::npos) << e.what();
  }
  EXPECT_THROW(full({1}, 1.0, Device("meta")).item(), Error);
}

TEST(Tensor, PrintsLikePyTorch) {
  EXPECT_EQ(tensor<float>({1, 2}).to_string(), "tensor([1.0000, 2.0000])");
  EXPECT_EQ(arange(3).to_string(), "tensor([0, 1, 2])");
  EXPECT_EQ(fmt::format("{}", zeros({2}, kFloat64)), "tensor([0.0000, 0.0000], dtype=float64)");
  EXPECT_EQ(empty({2}, Device("meta")).to_string(), "tensor(..., size=[2], device='meta')");
}

TEST(Threading, ParallelForCoversRangeOnce) {
  std::vector<int> hits(100000, 0);
  parallel_for(static_cast<int64_t>(hits.size()), 10, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[i]++;
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  int before = get_num_threads();
  set_num_threads(1);
  EXPECT_EQ(get_num_threads(), 1);
  set_num_threads(before);
  EXPECT_THROW(set_num_threads(0), Error);
}

TEST(Errors, UndefinedTensorIsAnError) {
  Tensor u;
  EXPECT_FALSE(u.defined());
  EXPECT_THROW(u.sizes(), Error);
}
