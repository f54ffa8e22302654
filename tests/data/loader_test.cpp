#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "data_test_util.h"
#include "gradcheck.h"

using namespace smp;
using namespace smp::data;

namespace {

using Idx = std::vector<size_t>;

// data[i] = (i, 2i) as float32 (2), target i; optionally throws at one index, sleeps a
// pseudo-random time (to scramble worker completion order), and counts get() calls.
class CountingSet : public Dataset {
 public:
  explicit CountingSet(size_t n, long throw_at = -1, bool sleepy = false)
      : n_(n), throw_at_(throw_at), sleepy_(sleepy) {}
  size_t size() const override { return n_; }
  Example get(size_t i) const override {
    ++calls;
    if (static_cast<long>(i) == throw_at_) SMP_ERROR("sample {} is broken", i);
    if (sleepy_) std::this_thread::sleep_for(std::chrono::microseconds((i * 7919) % 2000));
    return {tensor<float>({static_cast<float>(i), 2.0f * static_cast<float>(i)}, {2}),
            scalar_tensor(static_cast<int64_t>(i), kInt64)};
  }
  mutable std::atomic<size_t> calls{0};

 private:
  size_t n_;
  long throw_at_;
  bool sleepy_;
};

// Like CountingSet but through the whole-batch path.
class BatchSet : public CountingSet {
 public:
  using CountingSet::CountingSet;
  std::optional<Batch> get_batch(const std::vector<size_t>& idx) const override {
    ++batch_calls;
    std::vector<Example> ex;
    for (size_t i : idx) ex.push_back(get(i));
    Batch b = collate(ex);
    b.data = b.data.mul(-1.0);  // marks batches that came through here
    return b;
  }
  mutable std::atomic<size_t> batch_calls{0};
};

std::vector<Idx> targets_of(DataLoader& loader) {
  std::vector<Idx> out;
  for (Batch& b : loader) {
    auto t = b.target.to_vector<int64_t>();
    out.emplace_back(t.begin(), t.end());
  }
  return out;
}

Idx flat(const std::vector<Idx>& batches) {
  Idx f;
  for (const auto& b : batches) f.insert(f.end(), b.begin(), b.end());
  return f;
}

}  // namespace

TEST(Sampler, DistributedNoShufflePyTorchOrderWithPadding) {
  // torch: pad [0..9] to 12 with [0, 1], rank r takes r, r+3, ...
  EXPECT_EQ(DistributedSampler(10, 3, 0, false).indices(0), (Idx{0, 3, 6, 9}));
  EXPECT_EQ(DistributedSampler(10, 3, 1, false).indices(0), (Idx{1, 4, 7, 0}));
  EXPECT_EQ(DistributedSampler(10, 3, 2, false).indices(0), (Idx{2, 5, 8, 1}));
  EXPECT_EQ(DistributedSampler(10, 3, 2, false).size(), 4u);
  // drop_last: ceil((10 - 3) / 3) = 3 samples each, the tail 9 dropped
  EXPECT_EQ(DistributedSampler(10, 3, 0, false, 0, true).indices(0), (Idx{0, 3, 6}));
  EXPECT_EQ(DistributedSampler(10, 3, 2, false, 0, true).indices(0), (Idx{2, 5, 8}));
  EXPECT_EQ(DistributedSampler(10, 3, 1, false, 0, true).size(), 3u);
  // padding longer than the dataset repeats it: [0, 1, 0, 1, 0]
  for (size_t r = 0; r < 5; ++r)
    EXPECT_EQ(DistributedSampler(2, 5, r, false).indices(0), (Idx{r % 2})) << r;
  // even split: no padding
  EXPECT_EQ(DistributedSampler(8, 4, 3, false).indices(0), (Idx{3, 7}));
  EXPECT_THROW(DistributedSampler(8, 4, 4), smp::Error);
  EXPECT_THROW(DistributedSampler(8, 0, 0), smp::Error);
}

TEST(Sampler, DistributedShuffleSharedPermutationAndEpochs) {
  const size_t n = 23, R = 4;
  std::vector<size_t> count(n, 0);
  std::vector<Idx> per_rank;
  for (size_t r = 0; r < R; ++r) {
    DistributedSampler s(n, R, r, true, 42);
    per_rank.push_back(s.indices(0));
    EXPECT_EQ(per_rank.back().size(), 6u);
    for (size_t i : per_rank.back()) ++count[i];
    EXPECT_EQ(s.indices(0), DistributedSampler(n, R, r, true, 42).indices(0));  // reproducible
    EXPECT_NE(s.indices(0), s.indices(1));
    s.set_epoch(1);
    EXPECT_EQ(s.indices(), s.indices(1));
  }
  // every index at least once, exactly 24 - 23 = 1 repeated (padding)
  size_t total = 0;
  for (size_t c : count) {
    EXPECT_GE(c, 1u);
    total += c;
  }
  EXPECT_EQ(total, 24u);
  // ranks interleave one permutation: it is permutation(n, seed + epoch)
  Idx perm = permutation(n, 42);
  for (size_t r = 0; r < R; ++r)
    for (size_t k = 0; k < per_rank[r].size(); ++k) {
      size_t pos = r + k * R;
      EXPECT_EQ(per_rank[r][k], perm[pos % n]);
    }
}

TEST(Sampler, RandomSamplerIsSeededPermutation) {
  RandomSampler s(100, 7);
  Idx a = s.indices(0);
  Idx sorted = a;
  std::sort(sorted.begin(), sorted.end());
  Idx iota(100);
  std::iota(iota.begin(), iota.end(), size_t{0});
  EXPECT_EQ(sorted, iota);
  EXPECT_NE(a, iota);
  EXPECT_EQ(a, RandomSampler(100, 7).indices(0));
  EXPECT_NE(a, s.indices(1));
  EXPECT_NE(a, RandomSampler(100, 8).indices(0));
  EXPECT_EQ(RandomSampler(100, 7).indices(1), RandomSampler(100, 8).indices(0));
  // the same draws as the engine's randperm from a freshly seeded generator
  smp::manual_seed(7 + 3);
  auto rp = randperm(100).to_vector<int64_t>();
  Idx b = s.indices(3);
  EXPECT_EQ(Idx(rp.begin(), rp.end()), b);
  EXPECT_EQ(SequentialSampler(4).indices(9), (Idx{0, 1, 2, 3}));
}

TEST(DataLoader, SequentialBatchesAndDropLast) {
  auto ds = std::make_shared<CountingSet>(10);
  DataLoader keep(ds, DataLoaderOptions(4));
  EXPECT_EQ(keep.size(), 3u);
  auto b = targets_of(keep);
  EXPECT_EQ(b, (std::vector<Idx>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}}));
  DataLoader drop(ds, DataLoaderOptions(4).drop_last(true));
  EXPECT_EQ(drop.size(), 2u);
  EXPECT_EQ(targets_of(drop), (std::vector<Idx>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  // data stacked along a new dim 0
  for (Batch& batch : keep) {
    ASSERT_EQ(batch.data.sizes(), (Shape{4, 2}));
    EXPECT_EQ(batch.data.to_vector<float>(), (std::vector<float>{0, 0, 1, 2, 2, 4, 3, 6}));
    EXPECT_EQ(batch.target.dtype(), kInt64);
    break;
  }
  DataLoader exact(ds, DataLoaderOptions(5).drop_last(true));
  EXPECT_EQ(exact.size(), 2u);
  EXPECT_EQ(targets_of(exact).size(), 2u);
  EXPECT_THROW(DataLoader(ds, DataLoaderOptions(0)), smp::Error);
}

TEST(DataLoader, ShuffleReproducibleFromSeedAndEpoch) {
  auto ds = std::make_shared<CountingSet>(37);
  DataLoader a(ds, DataLoaderOptions(8).shuffle(true).seed(3));
  DataLoader b(ds, DataLoaderOptions(8).shuffle(true).seed(3));
  DataLoader c(ds, DataLoaderOptions(8).shuffle(true).seed(4));
  auto a0 = targets_of(a), b0 = targets_of(b), c0 = targets_of(c);
  EXPECT_EQ(a0, b0);
  EXPECT_NE(a0, c0);
  Idx f = flat(a0);
  EXPECT_EQ(f, RandomSampler(37, 3).indices(0));
  std::sort(f.begin(), f.end());
  EXPECT_EQ(std::set<size_t>(f.begin(), f.end()).size(), 37u);
  // the next pass is the next epoch; set_epoch rewinds
  auto a1 = targets_of(a);
  EXPECT_NE(a0, a1);
  EXPECT_EQ(flat(a1), RandomSampler(37, 3).indices(1));
  a.set_epoch(0);
  EXPECT_EQ(targets_of(a), a0);
}

TEST(DataLoader, ExplicitSamplerOverridesShuffle) {
  auto ds = std::make_shared<CountingSet>(10);
  auto s = std::make_shared<DistributedSampler>(10, 3, 1, false);
  DataLoader l(ds, DataLoaderOptions(3).shuffle(true).sampler(s));
  EXPECT_EQ(l.size(), 2u);
  EXPECT_EQ(targets_of(l), (std::vector<Idx>{{1, 4, 7}, {0}}));
}

TEST(DataLoader, WorkersGiveTheSameBatchesInOrder) {
  for (bool batch_path : {false, true}) {
    std::shared_ptr<Dataset> ds =
        batch_path ? std::shared_ptr<Dataset>(std::make_shared<BatchSet>(203, -1, true))
                   : std::make_shared<CountingSet>(203, -1, true);
    for (bool shuffle : {false, true}) {
      DataLoader serial(ds, DataLoaderOptions(16).shuffle(shuffle).seed(5));
      std::vector<Batch> want;
      for (Batch& b : serial) want.push_back(b);
      for (size_t workers : {1, 3, 5}) {
        DataLoader par(ds, DataLoaderOptions(16)
                               .shuffle(shuffle)
                               .seed(5)
                               .num_workers(workers)
                               .prefetch(2)
                               .pin_memory(true));
        size_t k = 0;
        for (Batch& b : par) {
          ASSERT_LT(k, want.size());
          EXPECT_ALLCLOSE(b.data, want[k].data, 0, 0);
          EXPECT_ALLCLOSE(b.target, want[k].target, 0, 0);
          ++k;
        }
        EXPECT_EQ(k, want.size()) << workers;
      }
    }
    if (batch_path) {
      EXPECT_GT(static_cast<BatchSet&>(*ds).batch_calls.load(), 0u);
      DataLoader l(ds, DataLoaderOptions(4));
      EXPECT_EQ((*l.begin()).data.to_vector<float>()[2], -1.0f);  // get_batch was used
    }
  }
}

// Random augmentation inside get(): data[i] = three draws of a RandomResizedCrop's params.
class AugmentingSet : public Dataset {
 public:
  explicit AugmentingSet(size_t n) : n_(n), crop_(4, {0.08, 1.0}, {0.75, 4.0 / 3.0}, 17) {}
  size_t size() const override { return n_; }
  Example get(size_t i) const override {
    std::this_thread::sleep_for(std::chrono::microseconds((i * 7919) % 500));  // scramble
    std::vector<float> v;
    for (int k = 0; k < 3; ++k)
      for (int64_t x : crop_.get_params(97, 89)) v.push_back(static_cast<float>(x));
    return {tensor<float>(v, {static_cast<int64_t>(v.size())}),
            scalar_tensor(static_cast<int64_t>(i), kInt64)};
  }

 private:
  size_t n_;
  RandomResizedCrop crop_;
};

// Random transforms draw by (epoch, example index): the same augmentation whatever the number
// of workers, their scheduling or the batch size; a new one each epoch.
TEST(DataLoader, RandomTransformsReproducibleWithWorkers) {
  auto ds = std::make_shared<AugmentingSet>(61);
  auto by_index = [&](size_t workers, size_t batch, size_t epoch) {
    DataLoader l(ds, DataLoaderOptions(batch).shuffle(true).seed(3).num_workers(workers));
    l.set_epoch(epoch);
    std::map<int64_t, std::vector<float>> out;
    for (Batch& b : l)
      for (int64_t r = 0; r < b.target.size(0); ++r)
        out[b.target.select(0, r).item<int64_t>()] = b.data.select(0, r).to_vector<float>();
    return out;
  };
  auto want = by_index(0, 8, 0);
  ASSERT_EQ(want.size(), 61u);
  EXPECT_NE(want.at(0), want.at(1));  // examples get different draws
  for (size_t workers : {1, 2, 4})
    for (size_t batch : {8, 5}) EXPECT_EQ(by_index(workers, batch, 0), want) << workers;
  auto next = by_index(3, 8, 1);
  size_t same = 0;
  for (auto& [i, v] : next) same += v == want.at(i);
  EXPECT_LT(same, 3u);  // another epoch, other augmentations
}

TEST(DataLoader, PinMemoryWithoutCudaGivesOrdinaryBatches) {
  if (cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  auto ds = std::make_shared<CountingSet>(21);
  DataLoader plain(ds, DataLoaderOptions(4));
  std::vector<Batch> want;
  for (Batch& b : plain) want.push_back(b);
  for (size_t workers : {0, 2}) {
    DataLoader pinned(ds, DataLoaderOptions(4).num_workers(workers).pin_memory(true));
    size_t k = 0;
    for (Batch& b : pinned) {
      ASSERT_LT(k, want.size());
      EXPECT_FALSE(b.data.is_pinned());
      EXPECT_ALLCLOSE(b.data, want[k].data, 0, 0);
      EXPECT_ALLCLOSE(b.target, want[k].target, 0, 0);
      ++k;
    }
    EXPECT_EQ(k, want.size()) << workers;
  }
}

TEST(DataLoader, PinMemoryGivesPinnedBatches_CUDA) {
  SMP_SKIP_WITHOUT_CUDA();
  for (bool batch_path : {false, true}) {
    std::shared_ptr<Dataset> ds = batch_path
                                      ? std::shared_ptr<Dataset>(std::make_shared<BatchSet>(21))
                                      : std::make_shared<CountingSet>(21);
    DataLoader plain(ds, DataLoaderOptions(4));
    std::vector<Batch> want;
    for (Batch& b : plain) {
      EXPECT_FALSE(b.data.is_pinned());
      want.push_back(b);
    }
    for (size_t workers : {0, 3}) {
      DataLoader pinned(ds, DataLoaderOptions(4).num_workers(workers).pin_memory(true));
      size_t k = 0;
      for (Batch& b : pinned) {
        ASSERT_LT(k, want.size());
        EXPECT_TRUE(b.data.is_pinned());
        EXPECT_TRUE(b.target.is_pinned());
        EXPECT_TRUE(b.data.is_cpu());
        EXPECT_ALLCLOSE(b.data, want[k].data, 0, 0);
        EXPECT_ALLCLOSE(b.data.to(Device(kCUDA)).cpu(), want[k].data, 0, 0);
        EXPECT_ALLCLOSE(b.target.to(Device(kCUDA)).cpu(), want[k].target, 0, 0);
        ++k;
      }
      EXPECT_EQ(k, want.size()) << workers;
    }
  }
}

TEST(DataLoader, ExceptionsReachTheIteratingThread) {
  for (size_t workers : {0, 1, 4}) {
    auto ds = std::make_shared<CountingSet>(100, /*throw_at=*/37);
    DataLoader l(ds, DataLoaderOptions(10).num_workers(workers));
    size_t seen = 0;
    std::string msg;
    try {
      for (Batch& b : l) {
        (void)b;
        ++seen;
      }
    } catch (const smp::Error& e) {
      msg = e.what();
    }
    EXPECT_EQ(seen, 3u) << workers;  // batches 0..2 fine, batch 3 holds sample 37
    EXPECT_NE(msg.find("sample 37 is broken"), std::string::npos) << workers << ": " << msg;
  }
}

TEST(DataLoader, PrefetchIsBoundedAndEarlyExitJoinsWorkers) {
  auto ds = std::make_shared<CountingSet>(1000);
  {
    DataLoader l(ds, DataLoaderOptions(10).num_workers(2).prefetch(2));
    auto it = l.begin();
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    // window = 2 workers x 2 = 4 batches ahead of the consumer's batch 0
    EXPECT_LE(ds->calls.load(), 40u);
    EXPECT_GE(ds->calls.load(), 10u);
    ++it;
    ++it;
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_LE(ds->calls.load(), 60u);
    // the iterator and the loader die here with workers mid-epoch
  }
  {
    auto it = std::make_unique<DataLoader::Iterator>();
    {
      auto l = std::make_unique<DataLoader>(ds, DataLoaderOptions(7).num_workers(3));
      *it = l->begin();
    }  // the loader is gone; the epoch in flight still works
    EXPECT_EQ((**it).data.size(0), 7);
    ++*it;
    EXPECT_EQ((**it).target.to_vector<int64_t>()[0], 7);
    it.reset();
  }
  size_t n = 0;
  DataLoader l(ds, DataLoaderOptions(10).num_workers(4));
  for (Batch& b : l) {
    (void)b;
    if (++n == 2) break;
  }
  EXPECT_EQ(n, 2u);
}

TEST(DataLoader, CollateChecksShapes) {
  std::vector<Example> ex{{zeros({2}), scalar_tensor(1, kInt64)},
                          {zeros({3}), scalar_tensor(2, kInt64)}};
  EXPECT_THROW(collate(ex), smp::Error);
  ex[1].data = ones({2});
  Batch b = collate(ex);
  EXPECT_EQ(b.data.sizes(), (Shape{2, 2}));
  EXPECT_EQ(b.target.to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
}

TEST(Sampler, DistributedMatchesPyTorchGolden) {
  // every rank of torch.utils.data.DistributedSampler from gen_data.py, without and with shuffle
  auto& g = smp::test::data_golden();
  size_t cases = 0;
  for (auto& [key, t] : g) {
    size_t n, R, drop, r;
    bool shuffled = false;
    if (key.rfind("dist.", 0) == 0) {
      ASSERT_EQ(std::sscanf(key.c_str(), "dist.%zu.%zu.%zu.%zu", &n, &R, &drop, &r), 4) << key;
    } else if (key.rfind("dist_shuffled.", 0) == 0) {
      ASSERT_EQ(std::sscanf(key.c_str(), "dist_shuffled.%zu.%zu.%zu.%zu", &n, &R, &drop, &r), 4)
          << key;
      shuffled = true;  // seed 7, epoch 2: torch's randperm from a generator seeded with 9
    } else {
      continue;
    }
    DistributedSampler s(n, R, r, shuffled, 7, drop != 0);
    auto want = t.to_vector<int64_t>();
    EXPECT_EQ(s.indices(shuffled ? 2 : 0), Idx(want.begin(), want.end())) << key;
    EXPECT_EQ(s.size(), want.size()) << key;
    ++cases;
  }
  EXPECT_GE(cases, 40u);
}
