// Dataset interface: random access to (data, target) examples, as torch::data::Dataset.
#pragma once

#include <smp/engine/tensor.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

namespace smp::data {

/// One sample: its input and its label.
struct Example {
  Tensor data;
  Tensor target;
};

/// A batch: `data` stacked along a new dim 0, `target` stacked to (B) (or (B, ...)).
struct Batch {
  Tensor data;
  Tensor target;
};

struct Transform;

/// Random-access dataset. `get` must be thread-safe: DataLoader workers call it concurrently.
class Dataset {
 public:
  virtual ~Dataset();
  virtual size_t size() const = 0;
  virtual Example get(size_t index) const = 0;
  /// Whole-batch fast path; a dataset that can assemble a batch faster than get() + stack
  /// (MNIST copies straight out of its uint8 image tensor) returns it here. nullopt: the
  /// loader falls back to get() per index.
  virtual std::optional<Batch> get_batch(const std::vector<size_t>& indices) const;
};

/// Applies `transform` to the data of every example of `dataset` (targets unchanged).
class MapDataset : public Dataset {
 public:
  MapDataset(std::shared_ptr<Dataset> dataset, std::shared_ptr<Transform> transform);
  size_t size() const override { return dataset_->size(); }
  Example get(size_t index) const override;

 private:
  std::shared_ptr<Dataset> dataset_;
  std::shared_ptr<Transform> transform_;
};

/// Stacks examples of equal shape and dtype into a batch (default collation).
Batch collate(const std::vector<Example>& examples);

}  // namespace smp::data
