// The backward engine: accumulation, hooks, grad mode, order, graph lifetime.
#include "gradcheck.h"

#include <smp/smp.h>

#include <gtest/gtest.h>

using namespace smp;

TEST(Autograd, AccumulatesIntoLeaves) {
  Tensor w = tensor<float>({1, 2, 3}).requires_grad_();
  Tensor x = tensor<float>({4, 5, 6});
  (w * x).sum().backward();
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{4, 5, 6}));
  EXPECT_FALSE(x.grad().defined());
  (w * x).sum().backward();  // a second graph adds to .grad()
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{8, 10, 12}));
}

TEST(Autograd, SharedInputSumsGradients) {
  Tensor a = tensor<double>({3.0}, {}, kFloat64).requires_grad_();
  Tensor y = a * a + a;  // dy/da = 2a + 1 = 7
  y.backward();
  EXPECT_DOUBLE_EQ(a.grad().item<double>(), 7.0);
}

TEST(Autograd, GradIsNotAliasedBetweenLeaves) {
  Tensor a = zeros({3}).requires_grad_();
  Tensor b = zeros({3}).requires_grad_();
  (a + b).sum().backward();
  {
    NoGradGuard ng;
    a.mutable_grad().mul_(5);
  }
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{1, 1, 1}));
}

TEST(Autograd, ExplicitGradientAndNonScalarError) {
  Tensor w = ones({2, 2}).requires_grad_();
  Tensor y = w * 3;
  EXPECT_THROW(y.backward(), Error);  // not a scalar: needs a gradient
  y.backward(full({2, 2}, 2.0));
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{6, 6, 6, 6}));
  Tensor z = ones({2}).requires_grad_() * 2;
  EXPECT_THROW(z.backward(ones({3})), Error);
}

TEST(Autograd, NoGradGuardStopsRecording) {
  Tensor w = ones({2}).requires_grad_();
  {
    NoGradGuard ng;
    Tensor y = w * 2;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(GradMode::is_enabled());
  }
  EXPECT_TRUE(GradMode::is_enabled());
  EXPECT_TRUE((w * 2).requires_grad());
  Tensor c = ones({2});
  EXPECT_THROW((c * 2).sum().backward(), Error);  // nothing requires grad
}

TEST(Autograd, BackwardTwiceNeedsRetainGraph) {
  Tensor w = ones({2}).requires_grad_();
  Tensor y = (w * w).sum();
  y.backward({}, /*retain_graph=*/true);
  y.backward();
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{4, 4}));
  try {
    y.backward();
    FAIL() << "expected an error on the third backward";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
  }
}

TEST(Autograd, GraphIsFreedAfterBackward) {
  Tensor w = ones({1000}).requires_grad_();
  std::weak_ptr<Storage> saved;
  {
    Tensor h = w * 2;
    saved = h.storage();
    Tensor y = (h * h).sum();  // mul saves h for backward
    h = Tensor();
    EXPECT_FALSE(saved.expired());
    y.backward();
    // y (and its grad_fn) still exist, but backward released the saved activations.
    EXPECT_TRUE(saved.expired());
  }
}

TEST(Autograd, PostAccumulateHooksFireOncePerBackwardWithFinalGrad) {
  Tensor w = ones({2}).requires_grad_();
  std::vector<std::vector<float>> seen;
  w.register_post_accumulate_grad_hook([&](Tensor& g) { seen.push_back(g.to_vector<float>()); });
  Tensor y = (w * 2 + w * 3).sum();  // two contributions, hook must see their sum once
  y.backward();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (std::vector<float>{5, 5}));
  EXPECT_THROW((w * 2).register_post_accumulate_grad_hook([](Tensor&) {}), Error);
}

TEST(Autograd, TensorHooksCanReplaceGradients) {
  Tensor w = ones({2}).requires_grad_();
  w.register_hook([](const Tensor& g) { return g * 10; });
  (w * 2).sum().backward();
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{20, 20}));
  Tensor v = ones({2}).requires_grad_();
  Tensor h = v * 3;
  h.register_hook([](const Tensor& g) { return g * 0.5; });
  h.retain_grad();
  h.sum().backward();
  EXPECT_EQ(v.grad().to_vector<float>(), (std::vector<float>{1.5, 1.5}));
  ASSERT_TRUE(h.grad().defined());
}

TEST(Autograd, GradFunctionDoesNotTouchLeafGrads) {
  Tensor a = tensor<double>({2.0}, {}, kFloat64).requires_grad_();
  Tensor b = tensor<double>({5.0}, {}, kFloat64).requires_grad_();
  Tensor y = a * b + b;
  auto g = autograd::grad({y}, {a, b});
  EXPECT_DOUBLE_EQ(g[0].item<double>(), 5.0);
  EXPECT_DOUBLE_EQ(g[1].item<double>(), 3.0);
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

// Nodes run in reverse creation order regardless of how the graph branches; processes
// that build the same graph therefore run the same sequence (pipeline ranks rely on it).
TEST(Autograd, ExecutionOrderIsReverseCreationOrder) {
  Tensor x = ones({2}).requires_grad_();
  std::vector<int> order;
  Tensor a = x * 2;  // created first
  Tensor b = x * 3;  // second
  Tensor c = b * 4;  // third
  a.register_hook([&](const Tensor& g) { order.push_back(1); return Tensor(); });
  b.register_hook([&](const Tensor& g) { order.push_back(2); return Tensor(); });
  c.register_hook([&](const Tensor& g) { order.push_back(3); return Tensor(); });
  (a + c).sum().backward();
  EXPECT_EQ(order, (std::vector<int>{3, 2, 1}));
}

TEST(Autograd, ViewGradientsFlowToBase) {
  std::string msg = test::gradcheck(
      [](const std::vector<Tensor>& in) {
        return in[0].transpose(0, 1).reshape({6}).slice(0, 1, 6, 2).unsqueeze(0).expand({2, 3});
      },
      {test::randd({2, 3}, 1)});
  EXPECT_TRUE(msg.empty()) << msg;
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return in[0].permute({2, 0, 1}).select(1, 1); },
                   {test::randd({2, 3, 4}, 2)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return in[0].narrow(1, 1, 2).squeeze(); },
                   {test::randd({1, 4}, 3)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return in[0].clone().flatten(); },
                   {test::randd({2, 2, 2}, 4)});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return in[0].to(kFloat32).to(kFloat64); },
                   {test::randd({3}, 5)}, test::GradcheckOptions{1e-3, 1e-3, 1e-3});
}

TEST(Allocator, CpuMemoryIsAligned) {
  for (int64_t n : {1, 3, 17, 1000}) {
    Tensor t = empty({n});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u);
  }
  EXPECT_EQ(empty({0}).data_ptr(), nullptr);
}
