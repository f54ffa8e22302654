#include <smp/data/sampler.h>
#include <smp/engine/error.h>
#include <smp/engine/random.h>

#include <numeric>

namespace smp::data {

Sampler::~Sampler() = default;

std::vector<size_t> SequentialSampler::indices(size_t) const {
  std::vector<size_t> v(n_);
  std::iota(v.begin(), v.end(), size_t{0});
  return v;
}

// Same draws as the engine's randperm from a fresh generator (seed, offset 0), so
// RandomSampler(n, s).indices(e) == randperm(n) after manual_seed(s + e).
std::vector<size_t> permutation(size_t n, uint64_t seed) {
  std::vector<size_t> perm(n);
  std::iota(perm.begin(), perm.end(), size_t{0});
  uint32_t w[4], w2[4];
  uint64_t cached = ~uint64_t{0};
  for (size_t k = 0; k + 1 < n; ++k) {
    uint64_t block = k / 4;
    if (block != cached) {
      Philox::draw(seed, block, 0, w);
      cached = block;
    }
    uint64_t i = n - 1 - k, r = w[k % 4];
    if (i + 1 > (uint64_t{1} << 32)) {
      Philox::draw(seed, block, 1, w2);
      r = (r << 32) | w2[k % 4];
    }
    std::swap(perm[i], perm[r % (i + 1)]);
  }
  return perm;
}

std::vector<size_t> RandomSampler::indices(size_t epoch) const {
  return permutation(n_, seed_ + epoch);
}

DistributedSampler::DistributedSampler(size_t dataset_size, size_t num_replicas, size_t rank,
                                       bool shuffle, uint64_t seed, bool drop_last)
    : n_(dataset_size),
      replicas_(num_replicas),
      rank_(rank),
      shuffle_(shuffle),
      seed_(seed),
      drop_last_(drop_last) {
  SMP_CHECK(num_replicas >= 1, "DistributedSampler: num_replicas must be >= 1, got {}",
            num_replicas);
  SMP_CHECK(rank < num_replicas, "DistributedSampler: rank {} out of range [0, {})", rank,
            num_replicas);
  // torch: drop_last and an uneven size -> ceil((n - R) / R) samples each, else ceil(n / R).
  if (drop_last_ && n_ % replicas_ != 0)
    num_samples_ = n_ >= replicas_ ? (n_ - replicas_ + replicas_ - 1) / replicas_ : 0;
  else
    num_samples_ = (n_ + replicas_ - 1) / replicas_;
  total_size_ = num_samples_ * replicas_;
}

std::vector<size_t> DistributedSampler::indices(size_t epoch) const {
  std::vector<size_t> all;
  if (shuffle_) {
    all = permutation(n_, seed_ + epoch);
  } else {
    all.resize(n_);
    std::iota(all.begin(), all.end(), size_t{0});
  }
  if (!drop_last_) {
    // Pad by repeating the list from its start (several times if it is shorter than the pad).
    size_t base = all.size();
    SMP_CHECK(base > 0 || total_size_ == 0, "DistributedSampler: empty dataset");
    for (size_t i = 0; all.size() < total_size_; ++i) all.push_back(all[i % base]);
  } else {
    all.resize(total_size_);
  }
  std::vector<size_t> mine;
  mine.reserve(num_samples_);
  for (size_t i = rank_; i < total_size_; i += replicas_) mine.push_back(all[i]);
  return mine;
}

}  // namespace smp::data
