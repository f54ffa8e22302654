#include "data_test_util.h"
#include "gradcheck.h"

using namespace smp;
using namespace smp::data;

namespace {
const Tensor& G(const std::string& k) {
  auto& g = smp::test::data_golden();
  auto it = g.find(k);
  if (it == g.end()) throw std::runtime_error("missing golden " + k);
  return it->second;
}
}  // namespace

TEST(Transforms, ResizeMatchesTorchvisionBilinear) {
  const Tensor& img = G("img");
  EXPECT_EQ(Resize(7).output_size(11, 14), std::make_pair(int64_t{7}, int64_t{8}));
  EXPECT_ALLCLOSE(Resize(7)(img), G("resize.7"), 1e-5, 1e-6);
  EXPECT_ALLCLOSE(Resize(5, 9)(img), G("resize.5x9"), 1e-5, 1e-6);
  EXPECT_ALLCLOSE(Resize(20)(img), G("resize.20"), 1e-5, 1e-6);
  EXPECT_ALLCLOSE(Resize(4)(G("tall")), G("resize.tall.4"), 1e-5, 1e-6);
  Tensor u8 = Resize(5)(G("img_u8"));
  EXPECT_EQ(u8.dtype(), kUInt8);
  EXPECT_ALLCLOSE(u8.to(kFloat32), G("resize.u8.5").to(kFloat32), 0, 1.0);  // rounding ties
  // batched input resizes each plane
  Tensor two = stack({img, img.mul(2.0)}, 0);
  Tensor r = resize_bilinear(two, 5, 9);
  EXPECT_ALLCLOSE(r.select(0, 1), G("resize.5x9").mul(2.0), 1e-5, 1e-6);
  EXPECT_ALLCLOSE(resize_bilinear(img, 11, 14), img, 0, 0);
}

TEST(Transforms, CenterCropMatchesTorchvision) {
  const Tensor& img = G("img");
  EXPECT_ALLCLOSE(CenterCrop(6)(img), G("cc.6"), 0, 0);
  EXPECT_ALLCLOSE(CenterCrop(4, 9)(img), G("cc.4x9"), 0, 0);
  EXPECT_ALLCLOSE(CenterCrop(8, 12)(img), G("cc.8x12"), 0, 0);
  EXPECT_ALLCLOSE(CenterCrop(15, 16)(img), G("cc.15x16"), 0, 0);
}

TEST(Transforms, NormalizeToTensorAndPipeline) {
  Normalize norm({0.485, 0.456, 0.406}, {0.229, 0.224, 0.225});
  Tensor img = G("img").clone();
  EXPECT_ALLCLOSE(norm(img), G("norm"), 1e-6, 1e-6);
  EXPECT_ALLCLOSE(img, G("img"), 0, 0);  // input untouched
  EXPECT_ALLCLOSE(ToTensor()(G("hwc_u8")), G("to_tensor"), 0, 0);
  Compose pipeline({std::make_shared<ToTensor>(), std::make_shared<Resize>(8),
                    std::make_shared<CenterCrop>(6), std::make_shared<Normalize>(norm)});
  Tensor rgb = read_image(smp::test::data_files_dir() + "/rgb.png");
  EXPECT_ALLCLOSE(pipeline(rgb), G("pipeline"), 1e-5, 1e-5);
  EXPECT_THROW(Normalize({0.5, 0.5}, {1.0}), smp::Error);
  EXPECT_THROW(norm(zeros({2, 4, 4})), smp::Error);
  EXPECT_THROW(ToTensor()(zeros({2, 2, 3})), smp::Error);
}

TEST(Transforms, RandomTransformsSeededAndValid) {
  Tensor img = G("img");
  RandomResizedCrop a(5, {0.08, 1.0}, {3.0 / 4.0, 4.0 / 3.0}, 11),
      b(5, {0.08, 1.0}, {3.0 / 4.0, 4.0 / 3.0}, 11);
  for (int k = 0; k < 50; ++k) {
    auto p = a.get_params(11, 14);
    EXPECT_EQ(p, b.get_params(11, 14));
    auto [i, j, h, w] = p;
    EXPECT_GE(i, 0);
    EXPECT_GE(j, 0);
    EXPECT_GE(h, 1);
    EXPECT_GE(w, 1);
    EXPECT_LE(i + h, 11);
    EXPECT_LE(j + w, 14);
  }
  Tensor out = a(img);
  EXPECT_EQ(out.sizes(), (Shape{3, 5, 5}));
  // full-scale, fixed-ratio crop of a square image is the whole image
  RandomResizedCrop whole(4, {1.0, 1.0}, {1.0, 1.0}, 3);
  Tensor sq = G("img").narrow(2, 0, 11);
  EXPECT_ALLCLOSE(whole(sq), resize_bilinear(sq, 4, 4), 0, 0);

  RandomHorizontalFlip always(1.0), never(0.0);
  Tensor flipped = always(img);
  EXPECT_ALLCLOSE(flipped.select(2, 0), img.select(2, 13), 0, 0);
  EXPECT_ALLCLOSE(hflip(flipped), img, 0, 0);
  EXPECT_ALLCLOSE(never(img), img, 0, 0);
  RandomHorizontalFlip half(0.5, 9), half2(0.5, 9);
  int flips = 0;
  for (int k = 0; k < 200; ++k) {
    auto col0 = [&](const Tensor& t) { return t.select(2, 0).to_vector<float>(); };
    const auto last = img.select(2, 13).to_vector<float>();
    bool f = col0(half(img)) == last;
    EXPECT_EQ(f, col0(half2(img)) == last);
    flips += f;
  }
  EXPECT_GT(flips, 60);
  EXPECT_LT(flips, 140);
}
