#include <smp/data/sampler.h>
#include <smp/engine/error.h>
#include <smp/engine/random.h>
#include <smp/engine/tensor.h>

#include <numeric>

namespace smp::data {

Sampler::~Sampler() = default;

std::vector<size_t> SequentialSampler::indices(size_t) const {
  std::vector<size_t> v(n_);
  std::iota(v.begin(), v.end(), size_t{0});
  return v;
}

// torch.randperm(n, generator=g) with g = torch.Generator().manual_seed(seed): the order
// torch's DistributedSampler uses (seed + epoch).
std::vector<size_t> permutation(size_t n, uint64_t seed) {
  Generator gen(Generator::Kind::kMT19937, seed);
  std::vector<int64_t> p = randperm_values(static_cast<int64_t>(n), gen);
  return std::vector<size_t>(p.begin(), p.end());
}

std::vector<size_t> torch_dataloader_epoch(size_t n, bool shuffle) {
  auto draw_int64 = [] {
    Tensor t = empty({}, kInt64);
    t.random_();
    return t.item<int64_t>();
  };
  draw_int64();  // the iterator's base seed
  if (shuffle) return permutation(n, static_cast<uint64_t>(draw_int64()));
  std::vector<size_t> v(n);
  std::iota(v.begin(), v.end(), size_t{0});
  return v;
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
