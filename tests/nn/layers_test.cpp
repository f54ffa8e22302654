// Layers and init: option plumbing, PyTorch's default initialisation statistics, buffers.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cmath>

#include "op_test_utils.h"
#include "gradcheck.h"

using namespace smp;
using namespace smp::nn;
using smp::test::randd;

namespace {

using smp::test::error_of;

double max_abs(const Tensor& t) { return t.abs().max().item().to<double>(); }
double mean_of(const Tensor& t) { return t.to(kFloat64).mean().item().to<double>(); }
double std_of(const Tensor& t) { return std::sqrt(t.to(kFloat64).var().item().to<double>()); }

}  // namespace

TEST(Init, LinearAndConvDefaultsAreKaimingUniformSqrt5) {
  manual_seed(10);
  Linear lin(400, 300);
  double bound = 1.0 / std::sqrt(400.0);  // kaiming_uniform(a=√5) reduces to 1/√fan_in
  EXPECT_LE(max_abs(lin.weight), bound);
  EXPECT_GT(max_abs(lin.weight), 0.99 * bound);
  EXPECT_NEAR(std_of(lin.weight), bound / std::sqrt(3.0), 0.01 * bound);
  EXPECT_NEAR(mean_of(lin.weight), 0.0, 0.01 * bound);
  EXPECT_LE(max_abs(lin.bias), bound);
  EXPECT_GT(max_abs(lin.bias), 0.9 * bound);

  Conv2d conv(Conv2dOptions(16, 32, {3, 5}).groups(2));
  EXPECT_EQ(conv.weight.sizes(), (Shape{32, 8, 3, 5}));
  double cb = 1.0 / std::sqrt(8.0 * 15.0);
  EXPECT_LE(max_abs(conv.weight), cb);
  EXPECT_GT(max_abs(conv.weight), 0.99 * cb);
  EXPECT_LE(max_abs(conv.bias), cb);
}

TEST(Init, FunctionsFollowPyTorchFormulas) {
  manual_seed(11);
  auto [fi, fo] = init::calculate_fan_in_and_fan_out(empty({64, 32, 3, 3}));
  EXPECT_EQ(fi, 32 * 9);
  EXPECT_EQ(fo, 64 * 9);
  EXPECT_NEAR(init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(1.0 / 3.0), 1e-12);
  EXPECT_NEAR(init::calculate_gain("relu"), std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(init::calculate_gain("tanh"), 5.0 / 3.0, 1e-12);

  Tensor w = empty({256, 128, 3, 3});
  init::kaiming_normal_(w, 0.0, "fan_out", "relu");
  EXPECT_NEAR(std_of(w), std::sqrt(2.0 / (256 * 9)), 0.01 * std::sqrt(2.0 / (256 * 9)));
  init::kaiming_uniform_(w, 0.0, "fan_in", "relu");
  EXPECT_LE(max_abs(w), std::sqrt(6.0 / (128 * 9)));
  init::xavier_uniform_(w);
  EXPECT_LE(max_abs(w), std::sqrt(6.0 / (128 * 9 + 256 * 9)));
  EXPECT_GT(max_abs(w), 0.99 * std::sqrt(6.0 / (128 * 9 + 256 * 9)));
  init::xavier_normal_(w, 2.0);
  EXPECT_NEAR(std_of(w), 2.0 * std::sqrt(2.0 / (128 * 9 + 256 * 9)), 0.02);
  init::constant_(w, 0.5);
  EXPECT_EQ(mean_of(w), 0.5);
  // Initialisers never record history, even on a parameter.
  Tensor p = ones({3, 3}).requires_grad_();
  init::normal_(p);
  EXPECT_TRUE(p.is_leaf());
  EXPECT_NE(error_of([&] { init::kaiming_uniform_(p, 0.0, "fan_sideways"); }).find("fan_in"),
            std::string::npos);
  EXPECT_NE(error_of([&] { init::xavier_uniform_(empty({5})); }).find("at least 2"),
            std::string::npos);

  // torchvision's ResNet init on its convolutions.
  ResNet18 r(10, 3);
  EXPECT_NEAR(std_of(r.layer3->ptr_as<BasicBlock>(1)->conv2->weight), std::sqrt(2.0 / (256 * 9)),
              0.02 * std::sqrt(2.0 / (256 * 9)));
  EXPECT_EQ(mean_of(r.layer2->ptr_as<BasicBlock>(0)->bn1->weight), 1.0);
  EXPECT_LE(max_abs(r.fc->weight), 1.0 / std::sqrt(512.0));
}

TEST(Layers, BatchNormBuffersAndMomentum) {
  BatchNorm2d bn(BatchNorm2dOptions(3).momentum(std::nullopt));
  EXPECT_EQ(mean_of(bn.weight), 1.0);
  EXPECT_EQ(mean_of(bn.bias), 0.0);
  EXPECT_EQ(mean_of(bn.running_mean), 0.0);
  EXPECT_EQ(mean_of(bn.running_var), 1.0);
  EXPECT_EQ(bn.num_batches_tracked.dtype(), kInt64);
  EXPECT_EQ(bn.num_batches_tracked.dim(), 0);
  Tensor a = randd({4, 3, 2, 2}, 1).to(kFloat32), b = randd({4, 3, 2, 2}, 2).to(kFloat32) + 1.0;
  bn(a);
  bn(b);
  EXPECT_EQ(bn.num_batches_tracked.item().to<int64_t>(), 2);
  // momentum None: a cumulative average of the batch means.
  EXPECT_ALLCLOSE(bn.running_mean, (a.mean({0, 2, 3}) + b.mean({0, 2, 3})) * 0.5, 1e-5, 1e-6);

  BatchNorm2d plain(BatchNorm2dOptions(3).affine(false).track_running_stats(false));
  EXPECT_TRUE(plain.named_parameters().empty());
  EXPECT_TRUE(plain.named_buffers().empty());
  plain.eval();  // without running stats, eval still normalises with batch statistics
  Tensor y = plain(a);
  EXPECT_NEAR(max_abs(y.mean({0, 2, 3})), 0.0, 1e-5);
  EXPECT_NE(error_of([&] { bn(ones({2, 3})); }).find("4-D"), std::string::npos);
}

TEST(Layers, ForwardsMatchTheirFunctionalForm) {
  manual_seed(12);
  Tensor x = randn({2, 4, 9, 9});
  Conv2d conv(Conv2dOptions(4, 6, 3).stride(2).padding(1).dilation({1, 2}).bias(false));
  EXPECT_FALSE(conv.bias.defined());
  EXPECT_ALLCLOSE(conv(x), F::conv2d(x, conv.weight, Tensor(), {2, 2}, {1, 1}, {1, 2}));

  Linear lin(LinearOptions(9, 5));
  EXPECT_ALLCLOSE(lin(x), x.matmul(lin.weight.t()) + lin.bias, 1e-5, 1e-6);

  EXPECT_ALLCLOSE(MaxPool2d(MaxPool2dOptions(3).stride(2).padding(1))(x),
                  F::max_pool2d(x, {3, 3}, {2, 2}, {1, 1}));
  EXPECT_EQ(MaxPool2d(2)(x).sizes(), (Shape{2, 4, 4, 4}));
  EXPECT_ALLCLOSE(AvgPool2d(AvgPool2dOptions(3).stride(1).count_include_pad(false).padding(1))(x),
                  F::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}, false, false));
  EXPECT_EQ(AdaptiveAvgPool2d(AdaptiveAvgPool2dOptions({2, 3}))(x).sizes(), (Shape{2, 4, 2, 3}));
  EXPECT_ALLCLOSE(AdaptiveAvgPool2d(1)(x), x.mean({2, 3}, true), 1e-5, 1e-6);
  EXPECT_ALLCLOSE(ReLU()(x), x.clamp_min(0.0));
  EXPECT_ALLCLOSE(GELU(GELUOptions().approximate("tanh"))(x), F::gelu(x, "tanh"));
  EXPECT_ALLCLOSE(GELU()(x), F::gelu(x));
  EXPECT_EQ(Flatten()(x).sizes(), (Shape{2, 324}));
  EXPECT_EQ(Flatten(FlattenOptions().start_dim(0).end_dim(1))(x).sizes(), (Shape{8, 9, 9}));
  EXPECT_ALLCLOSE(LogSoftmax(1)(x), F::log_softmax(x, 1));

  Tensor logits = randn({5, 4}), y = tensor<int64_t>({0, 3, 1, 1, 2}), w = rand({4});
  EXPECT_ALLCLOSE(F::cross_entropy(logits, y,
                                   F::CrossEntropyFuncOptions()
                                       .weight(w)
                                       .ignore_index(1)
                                       .reduction(Reduction::Sum)
                                       .label_smoothing(0.2)),
                  cross_entropy(logits, y, w, Reduction::Sum, 1, 0.2));
  EXPECT_ALLCLOSE(F::cross_entropy(logits, y, F::CrossEntropyFuncOptions()),
                  cross_entropy(logits, y));

  LayerNorm ln(LayerNormOptions({9, 9}).eps(1e-3));
  EXPECT_EQ(ln.weight.sizes(), (Shape{9, 9}));
  EXPECT_ALLCLOSE(ln(x), F::layer_norm(x, {9, 9}, ln.weight, ln.bias, 1e-3));
  LayerNorm bare(LayerNormOptions({9}).elementwise_affine(false));
  EXPECT_TRUE(bare.parameters().empty());

  Dropout d(DropoutOptions(1.0));
  EXPECT_EQ(max_abs(d(x)), 0.0);
  d.eval();
  EXPECT_ALLCLOSE(d(x), x);
  EXPECT_FALSE(error_of([] { Dropout bad(1.5); }).empty());
  EXPECT_FALSE(error_of([] { Conv2d bad(Conv2dOptions(3, 4, 3).groups(2)); }).empty());
}

TEST(Layers, EmbeddingInitAndPadding) {
  manual_seed(13);
  Embedding e(EmbeddingOptions(2000, 64).padding_idx(-1));
  EXPECT_EQ(*e.options.padding_idx(), 1999);
  EXPECT_NEAR(mean_of(e.weight), 0.0, 0.01);
  EXPECT_NEAR(std_of(e.weight), 1.0, 0.01);
  EXPECT_EQ(max_abs(e.weight.select(0, 1999)), 0.0);
  Tensor idx = tensor<int64_t>({3, 1999, 3}, {3});
  Tensor y = e(idx);
  EXPECT_EQ(y.sizes(), (Shape{3, 64}));
  EXPECT_ALLCLOSE(y.select(0, 0), e.weight.select(0, 3));
  y.sum().backward();
  EXPECT_EQ(max_abs(e.weight.grad().select(0, 1999)), 0.0);
  EXPECT_ALLCLOSE(e.weight.grad().select(0, 3), full({64}, 2.0));
}

TEST(Layers, Containers) {
  auto seq = std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
      std::make_shared<Linear>(4, 3), std::make_shared<ReLU>(), std::make_shared<Linear>(3, 2)});
  EXPECT_EQ(seq->size(), 3u);
  auto l0 = seq->ptr_as<Linear>(0);
  ASSERT_TRUE(l0);
  EXPECT_FALSE(seq->ptr_as<Linear>(1));
  Tensor x = randn({5, 4});
  auto l2 = seq->ptr_as<Linear>(2);
  EXPECT_ALLCLOSE((*seq)(x), (*l2)((*l0)(x).relu()));
  EXPECT_NE(error_of([&] { (*seq)[3]; }).find("out of range"), std::string::npos);

  ModuleList list;
  list.push_back(std::make_shared<Linear>(2, 2));
  list.push_back(std::make_shared<BatchNorm2d>(2));
  EXPECT_EQ(list.size(), 2u);
  std::vector<std::string> names;
  for (auto& [n, t] : list.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"}));
  EXPECT_NE(error_of([&] { list(x); }).find("ModuleList has no single-tensor forward"),
            std::string::npos);
  list.eval();
  EXPECT_FALSE(list[1]->is_training());
}
