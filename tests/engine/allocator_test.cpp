// The caching CPU allocator (reuse, alignment, threads) and the 2×2 stride-2 max-pool fast path
// against a naive reference (values, NaN propagation, argmax ties through the gradient).
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

using namespace smp;

namespace {

uintptr_t addr(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()); }

}  // namespace

TEST(CpuAllocator, ReusesFreedBlockOfSameSize) {
  for (int64_t n : {int64_t{4096}, int64_t{100000}, int64_t{1} << 20, int64_t{3} << 20}) {
    uintptr_t first;
    {
      Tensor a = empty({n});
      first = addr(a);
    }
    Tensor b = empty({n});
    EXPECT_EQ(addr(b), first) << n;
    // A slightly different size in the same size class reuses it too.
    uintptr_t second = addr(b);
    b = Tensor();
    Tensor c = empty({n - 3});
    EXPECT_EQ(addr(c), second) << n;
  }
}

TEST(CpuAllocator, AlignmentAndContents) {
  std::vector<Tensor> live;
  for (int64_t n = 1; n < (int64_t{1} << 22); n = n * 3 / 2 + 1) {
    Tensor t = full({n}, 1.5f);
    EXPECT_EQ(addr(t) % 64, 0u) << n;
    live.push_back(t);
  }
  for (auto& t : live) {
    auto v = t.to_vector<float>();
    EXPECT_TRUE(std::all_of(v.begin(), v.end(), [](float x) { return x == 1.5f; }));
  }
  // Free and allocate again (from the cache): still aligned, and writable.
  live.clear();
  for (int64_t n = 1; n < (int64_t{1} << 22); n = n * 3 / 2 + 1) {
    Tensor t = full({n}, 2.0f);
    EXPECT_EQ(addr(t) % 64, 0u) << n;
    EXPECT_EQ(t.to_vector<float>().back(), 2.0f);
  }
}

TEST(CpuAllocator, LiveBlocksNeverOverlap) {
  std::vector<Tensor> live;
  for (int i = 0; i < 200; ++i) {
    int64_t n = 1024 + (i * 7919) % 300000;
    live.push_back(empty({n}));
    if (i % 3 == 0) live.erase(live.begin() + (i * 31) % live.size());
  }
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  for (auto& t : live) ranges.emplace_back(addr(t), addr(t) + t.numel() * 4);
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) EXPECT_LE(ranges[i - 1].second, ranges[i].first);
}

TEST(CpuAllocator, ConcurrentAllocation) {
  constexpr int kThreads = 8, kIters = 300;
  std::mutex mu;
  std::set<uintptr_t> held;  // every block currently owned by some thread
  std::atomic<int> duplicates{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Tensor> mine;
      for (int i = 0; i < kIters; ++i) {
        int64_t n = 2048 << ((i + t) % 6);
        Tensor x = empty({n});
        std::fill(x.data_ptr<float>(), x.data_ptr<float>() + n, static_cast<float>(t));
        {
          std::lock_guard<std::mutex> lock(mu);
          if (!held.insert(addr(x)).second) ++duplicates;
        }
        mine.push_back(x);
        if (mine.size() > 4) {
          Tensor old = mine.front();
          mine.erase(mine.begin());
          const float* v = old.data_ptr<float>();
          if (v[0] != t || v[old.numel() - 1] != t) ++duplicates;  // someone else wrote into it
          std::lock_guard<std::mutex> lock(mu);
          held.erase(addr(old));
          old = Tensor();  // freed while the lock is held: no one can re-take it before erase
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      for (auto& x : mine) held.erase(addr(x));
      mine.clear();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(duplicates.load(), 0);
}

namespace {

// The general max-pool semantics: scan the window in order; greater or NaN replaces the max.
void naive_pool(const std::vector<float>& in, int64_t planes, int64_t h, int64_t w,
                std::vector<float>& out, std::vector<float>& grad) {
  int64_t oh = h / 2, ow = w / 2;
  out.assign(planes * oh * ow, 0);
  grad.assign(in.size(), 0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        float bv = -std::numeric_limits<float>::infinity();
        int64_t best = 2 * y * w + 2 * x;
        for (int64_t iy = 2 * y; iy < 2 * y + 2; ++iy)
          for (int64_t ix = 2 * x; ix < 2 * x + 2; ++ix) {
            float v = in[p * h * w + iy * w + ix];
            if (v > bv || std::isnan(v)) bv = v, best = iy * w + ix;
          }
        out[(p * oh + y) * ow + x] = bv;
        grad[p * h * w + best] += 1;
      }
}

void check_pool(const std::vector<float>& v, int64_t n, int64_t c, int64_t h, int64_t w) {
  Tensor x = tensor<float>(v, {n, c, h, w}, kFloat32);
  x.requires_grad_();
  Tensor y = max_pool2d(x, {2, 2});
  std::vector<float> out, grad;
  naive_pool(v, n * c, h, w, out, grad);
  auto got = y.to_vector<float>();
  ASSERT_EQ(got.size(), out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (std::isnan(out[i]))
      EXPECT_TRUE(std::isnan(got[i])) << i;
    else
      EXPECT_EQ(got[i], out[i]) << i;
  }
  y.sum().backward();
  auto g = x.grad().to_vector<float>();
  // NaN outputs give NaN gradients only through the sum's NaN; the gradient of sum() is 1.
  for (size_t i = 0; i < grad.size(); ++i) EXPECT_EQ(g[i], grad[i]) << i;
}

}  // namespace

TEST(MaxPool2x2Fast, MatchesReferenceRandom) {
  for (auto [h, w] : {std::pair<int64_t, int64_t>{28, 28}, {14, 14}, {7, 9}, {5, 33}, {2, 2}}) {
    Tensor r = randn({2, 3, h, w});
    check_pool(r.to_vector<float>(), 2, 3, h, w);
  }
}

TEST(MaxPool2x2Fast, TiesNaNAndInfinity) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // Windows (2×2 each), laid out as a 2×16 plane: 8 windows.
  std::vector<float> a = {1, 1, -inf, -inf, 0, nan, nan, 5, 3, 2, nan, nan, -1, -2, 4, 0};
  std::vector<float> b = {1, 1, -inf, -inf, nan, 9, 1, 2, 3, 3, 7, nan, -3, -1, 0, 4};
  std::vector<float> v = a;
  v.insert(v.end(), b.begin(), b.end());
  check_pool(v, 1, 1, 2, 16);
  // Odd sizes drop the last row and column.
  std::vector<float> odd(3 * 5);
  for (size_t i = 0; i < odd.size(); ++i) odd[i] = static_cast<float>(i % 4);
  odd[6] = nan;
  check_pool(odd, 1, 1, 3, 5);
}
