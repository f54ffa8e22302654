// Image transforms as torchvision.transforms on tensors: images are float (C,H,W) (any
// leading dims allowed where it makes sense) except ToTensor's input, uint8 (H,W,C).
#pragma once

#include <smp/engine/tensor.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace smp::data {

/// A callable image-to-image map. Must be thread-safe (loader workers share it).
struct Transform {
  virtual ~Transform();
  virtual Tensor operator()(const Tensor& img) const = 0;
};

/// Applies transforms in order.
class Compose : public Transform {
 public:
  explicit Compose(std::vector<std::shared_ptr<Transform>> transforms);
  Tensor operator()(const Tensor& img) const override;

 private:
  std::vector<std::shared_ptr<Transform>> transforms_;
};

/// uint8 (H,W,C) -> float32 (C,H,W) in [0,1] (pixel/255). A (H,W) image becomes (1,H,W).
struct ToTensor : Transform {
  Tensor operator()(const Tensor& img) const override;
};

/// (x - mean[c]) / std[c] per channel of a float (..., C, H, W) tensor, in float32 arithmetic
/// as torchvision. A one-element mean/std applies to every channel.
class Normalize : public Transform {
 public:
  Normalize(std::vector<double> mean, std::vector<double> std);
  Tensor operator()(const Tensor& img) const override;
  const std::vector<double>& mean() const { return mean_; }
  const std::vector<double>& std() const { return std_; }

 private:
  std::vector<double> mean_, std_;
};

/// Bilinear resize of a float (..., H, W) tensor, PyTorch's interpolate(mode="bilinear",
/// align_corners=False, antialias=False). uint8 input is resized in float and rounded back.
Tensor resize_bilinear(const Tensor& img, int64_t out_h, int64_t out_w);

/// torchvision Resize: an int matches the shorter edge (aspect kept, the longer edge
/// truncated as int(size * long / short)); (h, w) resizes to exactly that. Bilinear,
/// antialias=False.
class Resize : public Transform {
 public:
  explicit Resize(int64_t size) : size_{size, -1} {}
  Resize(int64_t h, int64_t w) : size_{h, w} {}
  Tensor operator()(const Tensor& img) const override;
  /// The output (h, w) for an input of (h, w).
  std::pair<int64_t, int64_t> output_size(int64_t h, int64_t w) const;

 private:
  std::pair<int64_t, int64_t> size_;
};

/// torchvision CenterCrop: top = round((H - h) / 2) (ties to even, as Python's round);
/// zero-pads first when the crop is larger than the image.
class CenterCrop : public Transform {
 public:
  explicit CenterCrop(int64_t size) : h_(size), w_(size) {}
  CenterCrop(int64_t h, int64_t w) : h_(h), w_(w) {}
  Tensor operator()(const Tensor& img) const override;

 private:
  int64_t h_, w_;
};

/// Crops (..., H, W) to rows [top, top+h) and columns [left, left+w); regions outside the
/// image are zero.
Tensor crop(const Tensor& img, int64_t top, int64_t left, int64_t h, int64_t w);

/// Source of random numbers for the random transforms: Philox keyed by the seed. Inside a
/// SampleRngScope (the DataLoader opens one around each example it fetches) the draws are
/// keyed by that example's (epoch, index), so augmentations are the same whatever the number
/// of workers or their scheduling; outside one a shared counter is used, reproducible when
/// calls come in a fixed order.
class TransformRng {
 public:
  explicit TransformRng(uint64_t seed) : seed_(seed) {}
  TransformRng(const TransformRng& o) : seed_(o.seed_), counter_(o.counter_.load()) {}
  TransformRng& operator=(const TransformRng& o) {
    seed_ = o.seed_;
    counter_.store(o.counter_.load());
    return *this;
  }
  /// Uniform in [0, 1), double precision.
  double uniform() const;

 private:
  uint64_t seed_;
  mutable std::atomic<uint64_t> counter_{0};
};

/// Keys the random transforms run on this thread by (epoch, index) until destroyed; nests.
class SampleRngScope {
 public:
  SampleRngScope(uint64_t epoch, uint64_t index);
  ~SampleRngScope();
  SampleRngScope(const SampleRngScope&) = delete;
  SampleRngScope& operator=(const SampleRngScope&) = delete;

 private:
  bool prev_active_;
  uint64_t prev_epoch_, prev_index_, prev_draws_;
};

/// torchvision RandomResizedCrop: an area fraction in `scale` and a log-uniform aspect ratio
/// in `ratio`, 10 tries then a center crop fallback; the crop is resized bilinearly to size.
class RandomResizedCrop : public Transform {
 public:
  explicit RandomResizedCrop(int64_t size, std::pair<double, double> scale = {0.08, 1.0},
                             std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0},
                             uint64_t seed = 0);
  RandomResizedCrop(std::pair<int64_t, int64_t> size, std::pair<double, double> scale,
                    std::pair<double, double> ratio, uint64_t seed = 0);
  Tensor operator()(const Tensor& img) const override;
  /// The crop (top, left, h, w) the next call would use for an image of (H, W); draws.
  std::array<int64_t, 4> get_params(int64_t height, int64_t width) const;

 private:
  std::pair<int64_t, int64_t> size_;
  std::pair<double, double> scale_, ratio_;
  TransformRng rng_;
};

/// Flips the last dim with probability p.
class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5, uint64_t seed = 0) : p_(p), rng_(seed) {}
  Tensor operator()(const Tensor& img) const override;

 private:
  double p_;
  TransformRng rng_;
};

/// Reverses the last dim (W) of any tensor.
Tensor hflip(const Tensor& img);

}  // namespace smp::data
