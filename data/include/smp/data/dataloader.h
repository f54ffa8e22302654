// DataLoader: batches from a Dataset in sampler order, optionally assembled ahead by worker
// threads.
#pragma once

#include <smp/data/dataset.h>
#include <smp/data/sampler.h>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>

namespace smp::data {

/// Loader options, chained as libtorch: DataLoaderOptions(64).shuffle(true).num_workers(2).
/// Each option is a getter without argument and a setter with one.
class DataLoaderOptions {
 public:
  DataLoaderOptions(size_t batch_size = 1) : batch_size_(batch_size) {}  // NOLINT
#define SMP_DATA_OPTION(type, name, init)      \
 public:                                       \
  DataLoaderOptions& name(type v) {            \
    name##_ = std::move(v);                    \
    return *this;                              \
  }                                            \
  const type& name() const { return name##_; } \
                                               \
 private:                                      \
  type name##_ = init;
  SMP_DATA_OPTION(size_t, batch_size, 1)
  /// Random order (RandomSampler(n, seed)) when no sampler is given.
  SMP_DATA_OPTION(bool, shuffle, false)
  SMP_DATA_OPTION(uint64_t, seed, 0)
  /// Drop the last incomplete batch.
  SMP_DATA_OPTION(bool, drop_last, false)
  /// 0: batches built on the iterating thread; N: N threads build batches ahead.
  SMP_DATA_OPTION(size_t, num_workers, 0)
  /// Batches in flight per worker (PyTorch's prefetch_factor).
  SMP_DATA_OPTION(size_t, prefetch, 2)
  /// The thread that builds a batch (a worker, or the iterating thread without workers) copies
  /// its CPU tensors into page-locked memory (Tensor::pin_memory), so .to(cuda, true)
  /// (non_blocking) returns without waiting for the copy. Only when a CUDA device is present;
  /// otherwise batches stay in ordinary memory (PyTorch does the same, with a warning).
  SMP_DATA_OPTION(bool, pin_memory, false)
  /// Overrides shuffle/seed when set.
  SMP_DATA_OPTION(std::shared_ptr<Sampler>, sampler, nullptr)
#undef SMP_DATA_OPTION
};

/// Iterable over the batches of one epoch per pass: `for (Batch& b : loader)`. Each pass
/// uses the current epoch (set_epoch) and then advances it, so successive passes reshuffle
/// as PyTorch's loader does. With workers, batches come in sampler order, a worker's
/// exception is rethrown on the iterating thread at its batch, and destroying the iterator
/// mid-epoch stops and joins the workers.
class DataLoader {
 public:
  DataLoader(std::shared_ptr<Dataset> dataset, DataLoaderOptions options);

  class Iterator;
  Iterator begin();
  Iterator end();
  /// Number of batches per epoch.
  size_t size() const;
  void set_epoch(size_t epoch) { epoch_ = epoch; }
  size_t epoch() const { return epoch_; }
  const DataLoaderOptions& options() const { return options_; }
  const std::shared_ptr<Dataset>& dataset() const { return dataset_; }

  struct EpochState;  // shared by an iterator and its workers

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;

    Iterator() = default;
    explicit Iterator(std::shared_ptr<EpochState> state);
    Batch& operator*() const;
    Batch* operator->() const { return &**this; }
    Iterator& operator++();
    bool operator==(const Iterator& other) const;
    bool operator!=(const Iterator& other) const { return !(*this == other); }

   private:
    std::shared_ptr<EpochState> state_;  // null: end
  };

 private:
  std::shared_ptr<Dataset> dataset_;
  DataLoaderOptions options_;
  std::shared_ptr<Sampler> sampler_;
  size_t epoch_ = 0;
};

}  // namespace smp::data
