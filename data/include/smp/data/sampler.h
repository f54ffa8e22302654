// Samplers: the order in which a DataLoader visits dataset indices, per epoch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace smp::data {

/// The indices of one epoch. Stateless apart from the epoch set by set_epoch.
class Sampler {
 public:
  virtual ~Sampler();
  virtual std::vector<size_t> indices(size_t epoch) const = 0;
  /// Number of indices per epoch.
  virtual size_t size() const = 0;
};

/// 0, 1, ..., n-1.
class SequentialSampler : public Sampler {
 public:
  explicit SequentialSampler(size_t n) : n_(n) {}
  std::vector<size_t> indices(size_t epoch) const override;
  size_t size() const override { return n_; }

 private:
  size_t n_;
};

/// A permutation of 0..n-1 equal to smp::randperm(n) after smp::manual_seed(seed + epoch),
/// drawn from a private generator (the global one is left untouched); the same as
/// torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).
class RandomSampler : public Sampler {
 public:
  explicit RandomSampler(size_t n, uint64_t seed = 0) : n_(n), seed_(seed) {}
  std::vector<size_t> indices(size_t epoch) const override;
  size_t size() const override { return n_; }

 private:
  size_t n_;
  uint64_t seed_;
};

/// torch.randperm(n) from a fresh CPU generator seeded with `seed` (RandomSampler and
/// DistributedSampler use seed + epoch, as torch's DistributedSampler does).
std::vector<size_t> permutation(size_t n, uint64_t seed);

/// What iterating a torch.utils.data.DataLoader draws from the default generator at the start
/// of an epoch: one int64 (the iterator's base seed, for worker processes), and, with
/// shuffle=True and no sampler generator, a second that seeds RandomSampler's private
/// generator. Returns that epoch's order (0..n-1 without shuffle). A program that calls it
/// where a PyTorch program starts iterating a loader draws the same numbers from the same seed.
std::vector<size_t> torch_dataloader_epoch(size_t n, bool shuffle);

/// torch.utils.data.DistributedSampler: the (shuffled with seed + epoch) index list is padded
/// to a multiple of num_replicas by repeating it from the start (or cut, with drop_last),
/// then rank r takes positions r, r+R, r+2R, ...
class DistributedSampler : public Sampler {
 public:
  DistributedSampler(size_t dataset_size, size_t num_replicas, size_t rank, bool shuffle = true,
                     uint64_t seed = 0, bool drop_last = false);
  std::vector<size_t> indices(size_t epoch) const override;
  /// This rank's indices for the epoch last given to set_epoch.
  std::vector<size_t> indices() const { return indices(epoch_); }
  size_t size() const override { return num_samples_; }
  void set_epoch(size_t epoch) { epoch_ = epoch; }
  size_t epoch() const { return epoch_; }

 private:
  size_t n_, replicas_, rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  size_t num_samples_, total_size_;
  size_t epoch_ = 0;
};

}  // namespace smp::data
