// clip_grad_norm_ against PyTorch 1.13's torch.nn.utils.clip_grad_norm_.
#include <smp/engine/random.h>
#include <smp/optim/clip_grad.h>

#include "optim_test_util.h"

namespace smp::optim::test {
namespace {

class ClipGrad : public ::testing::TestWithParam<std::string> {};

void check_clip(const std::string& name, Dtype dtype) {
  auto args = gold("clip." + name + ".args").to_vector<double>();
  std::vector<Tensor> ps;
  for (int i = 0; i < 2; ++i) {
    Tensor g = gold("clip.g" + std::to_string(i)).to(dtype);
    Tensor p = zeros_like(g).requires_grad_();
    p.set_grad(g.clone());
    ps.push_back(p);
  }
  ps.push_back(zeros({4}).requires_grad_());  // no gradient: ignored
  const double total = clip_grad_norm_(ps, args[0], args[1]);
  const double want = gold("clip." + name + ".total").item<double>();
  EXPECT_NEAR(total, want, 1e-6 * want) << name;
  for (int i = 0; i < 2; ++i) {
    std::string msg =
        close(ps[i].grad(), gold("clip." + name + ".g" + std::to_string(i)), 1e-6, 1e-7);
    EXPECT_TRUE(msg.empty()) << name << " grad " << i << ": " << msg;
  }
  EXPECT_FALSE(ps[2].grad().defined());
}

TEST_P(ClipGrad, MatchesPyTorch) { check_clip(GetParam(), kFloat32); }
TEST_P(ClipGrad, MatchesPyTorchFloat64) { check_clip(GetParam(), kFloat64); }

INSTANTIATE_TEST_SUITE_P(Optim, ClipGrad, ::testing::Values("l2", "l2_noclip", "inf", "l1", "l3"),
                         [](const auto& info) { return info.param; });

TEST(ClipGradNorm, NoGradientsGivesZero) {
  Tensor p = zeros({3}).requires_grad_();
  EXPECT_EQ(clip_grad_norm_({p}, 1.0), 0.0);
  EXPECT_THROW(clip_grad_norm_({p}, 1.0, -1.0), Error);
}

// Large gradients take the chunked, threaded reduction; its result must not depend on it.
TEST(ClipGradNorm, LargeGradientMatchesFloat64Reference) {
  manual_seed(3);
  Tensor g = randn({300001});
  Tensor p = zeros_like(g).requires_grad_();
  p.set_grad(g.clone());
  const double want = std::sqrt(g.to(kFloat64).square().sum().item<double>());
  const double total = clip_grad_norm_({p}, 1.0);
  EXPECT_NEAR(total, want, 1e-9 * want);
  const double after = std::sqrt(p.grad().to(kFloat64).square().sum().item<double>());
  EXPECT_NEAR(after, 1.0, 1e-5);
}

}  // namespace
}  // namespace smp::optim::test
