// MNIST / Fashion-MNIST from IDX files (raw or gzip), loaded once into a uint8 tensor.
#pragma once

#include <smp/data/dataset.h>
#include <smp/data/transforms.h>

#include <optional>
#include <string>

namespace smp::data {

/// Reads an IDX file (raw or .gz) of `expected_dims` dims with magic 0x08 type (2049 = 1-D
/// labels, 2051 = 3-D images) into a uint8 tensor. Bad magic, dims and truncation are
/// smp::Error naming the file.
Tensor read_idx(const std::string& path, int expected_dims);

/// MNIST-format dataset: root/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (the raw
/// file is preferred when both exist). get(i): float32 (1,28,28) = pixel/255, then
/// (x - mean)/std if normalisation is set; target int64 0-dim.
class MNIST : public Dataset {
 public:
  explicit MNIST(const std::string& root = "/usr/share/datasets/fashion-mnist", bool train = true);
  /// With per-image normalisation: Normalize({0.1307}, {0.3081}) as the PyTorch example.
  MNIST(const std::string& root, bool train, const Normalize& normalize);

  size_t size() const override { return static_cast<size_t>(targets_.size(0)); }
  Example get(size_t index) const override;
  /// (B,1,H,W) float32 written straight from the uint8 images through a 256-entry table.
  std::optional<Batch> get_batch(const std::vector<size_t>& indices) const override;

  /// (x/255 - mean) / std computed in float32, exactly as ToTensor + Normalize.
  void set_normalize(double mean, double std);
  const Tensor& images() const { return images_; }    // uint8 (N,H,W)
  const Tensor& targets() const { return targets_; }  // int64 (N)

 private:
  void build_table();
  Tensor images_, targets_;
  std::optional<std::pair<double, double>> normalize_;
  float table_[256];
};

/// MNIST images resized bilinearly to size x size and replicated to `channels` channels,
/// for models with ImageNet-shaped inputs (resnet18 --dataset fashion-mnist). Pixels are
/// scaled (and normalised, if the MNIST has normalisation) before the resize; bilinear
/// weights sum to one so the order does not matter beyond rounding.
class ResizedMNIST : public Dataset {
 public:
  ResizedMNIST(std::shared_ptr<MNIST> mnist, int64_t size, int64_t channels = 3);
  size_t size() const override { return mnist_->size(); }
  Example get(size_t index) const override;
  std::optional<Batch> get_batch(const std::vector<size_t>& indices) const override;

 private:
  std::shared_ptr<MNIST> mnist_;
  int64_t size_, channels_;
};

}  // namespace smp::data
