// Pinned (page-locked) host memory: Tensor::pin_memory and is_pinned, pinned_memory(true) in
// the factories, the caching pinned allocator and copies to CUDA that do not wait. Without a
// GPU only the errors and ordinary tensors are checked; the *_CUDA tests skip.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <string>
#include <vector>

#include "gradcheck.h"
#include "op_test_utils.h"

using namespace smp;
using smp::test::error_of;

namespace {
TensorOptions pinned(Dtype dt = kFloat32) { return TensorOptions(dt).pinned_memory(true); }
}  // namespace

TEST(PinnedMemory, OrdinaryTensorsAreNotPinned) {
  EXPECT_FALSE(zeros({3}).is_pinned());
  EXPECT_FALSE(empty({0}).is_pinned());
  EXPECT_FALSE(ones({4, 5}).t().is_pinned());
  EXPECT_FALSE(empty({2}, Device(kMeta)).is_pinned());
  float buf[4] = {1, 2, 3, 4};
  EXPECT_FALSE(from_blob(buf, {4}).is_pinned());
  EXPECT_FALSE(TensorOptions().pinned_memory());
  EXPECT_TRUE(pinned().pinned_memory());
}

TEST(PinnedMemory, NeedsACudaDevice) {
  if (cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  std::string msg = error_of([] { zeros({3}).pin_memory(); });
  EXPECT_NE(msg.find("pin_memory: pinned memory needs a CUDA device"), std::string::npos) << msg;
  msg = error_of([] { empty({3}, pinned()); });
  EXPECT_NE(msg.find("empty: pinned memory needs a CUDA device"), std::string::npos) << msg;
  msg = error_of([] { zeros({3}, pinned(kInt64)); });
  EXPECT_NE(msg.find("full: pinned memory needs a CUDA device"), std::string::npos) << msg;
}

TEST(PinnedMemory, OnlyCpuTensors) {
  std::string msg = error_of([] { empty({2}, Device(kMeta)).pin_memory(); });
  EXPECT_NE(msg.find("pin_memory: only CPU tensors can be pinned, got a tensor on meta"),
            std::string::npos)
      << msg;
  msg = error_of([] { empty({2}, pinned().device(Device(kMeta))); });
  EXPECT_NE(msg.find("only CPU tensors"), std::string::npos) << msg;
}

// ---- with a GPU ------------------------------------------------------------------------

TEST(PinnedMemory, PinnedTensorsRoundTripThroughCuda_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  Tensor x = randn({37, 5});
  Tensor p = x.pin_memory();
  EXPECT_TRUE(p.is_pinned());
  EXPECT_TRUE(p.is_cpu());
  EXPECT_FALSE(x.is_pinned());
  EXPECT_FALSE(p.is_same(x));
  EXPECT_TRUE(p.pin_memory().is_same(p));  // already pinned: itself, as PyTorch
  EXPECT_ALLCLOSE(p, x, 0, 0);
  EXPECT_ALLCLOSE(p * 2 + 1, x * 2 + 1, 0, 0);  // an ordinary CPU tensor for every op
  EXPECT_TRUE(p.narrow(0, 2, 3).is_pinned());   // views share the pinned storage

  Tensor g = p.to(Device(kCUDA));
  EXPECT_ALLCLOSE(g.cpu(), x, 0, 0);
  EXPECT_ALLCLOSE(p.narrow(0, 3, 10).cuda().cpu(), x.narrow(0, 3, 10), 0, 0);
  EXPECT_ALLCLOSE(p.t().cuda().cpu(), x.t(), 0, 0);
  EXPECT_ALLCLOSE(p.to(Device(kCUDA), kFloat64).cpu(), x.to(kFloat64), 0, 0);

  // Factories, and a copy from the device into pinned memory.
  Tensor z = zeros({6}, pinned(kInt64));
  EXPECT_TRUE(z.is_pinned());
  EXPECT_EQ(z.to_vector<int64_t>(), std::vector<int64_t>(6, 0));
  Tensor back = empty({37, 5}, pinned());
  EXPECT_TRUE(back.is_pinned());
  back.copy_(g);
  EXPECT_ALLCLOSE(back, x, 0, 0);

  // Gradients pass through, as PyTorch's pin_memory.
  Tensor leaf = x.clone().requires_grad_();
  leaf.pin_memory().sum().backward();
  EXPECT_ALLCLOSE(leaf.grad(), ones({37, 5}), 0, 0);

  EXPECT_THROW(g.pin_memory(), Error);
  EXPECT_THROW(empty({2}, pinned().device(Device(kCUDA))), Error);
}

TEST(PinnedMemory, FreedBlockIsReusedOnlyAfterItsCopyCompleted_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  // 12 MiB, a size class no other test here uses, so the only cached block is this one.
  const int64_t n = int64_t{3} << 20;
  // Tens of milliseconds of work on the compute stream, so the copy queued behind it is still
  // pending when the host frees its source (the host gets there within microseconds).
  Tensor a = randn({4096, 4096}, Device(kCUDA));
  for (int i = 0; i < 20; ++i) a.matmul(a);

  Tensor src = full({n}, 3.0f, pinned());
  void* first = src.data_ptr();
  Tensor dst = src.to(Device(kCUDA), /*non_blocking=*/true);  // queued, no wait
  src = Tensor();  // freed while the copy may still read it
  Tensor again = empty({n}, pinned());
  EXPECT_NE(again.data_ptr(), first) << "a block was handed out before its copy completed";
  again.fill_(-1.0f);  // would corrupt the copy had it been the same block
  cuda::synchronize();
  Tensor got = dst.cpu();
  EXPECT_EQ(got.min().item<float>(), 3.0f);
  EXPECT_EQ(got.max().item<float>(), 3.0f);

  // Once the copy has completed, the freed block is handed out again.
  Tensor third = empty({n}, pinned());
  EXPECT_EQ(third.data_ptr(), first);
}
