// ImageFolder (torchvision layout: root/<class>/**/<image>) and JPEG/PNG decoding.
#pragma once

#include <smp/data/dataset.h>
#include <smp/data/transforms.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace smp::data {

/// read_image's default bound: 2^27 pixels (384 MiB as RGB; Pillow refuses 2^27.4 as a
/// decompression bomb).
constexpr int64_t kMaxImagePixels = int64_t{1} << 27;

/// Decodes a JPEG or PNG file (detected by its signature) to uint8 (H,W,3) RGB: grayscale
/// is replicated, alpha dropped, 16-bit reduced to 8. A corrupt or truncated file, or one
/// whose header declares more than `max_pixels` pixels (refused before decoding), is an
/// smp::Error naming `path`.
Tensor read_image(const std::string& path, int64_t max_pixels = kMaxImagePixels);

/// Images in class-per-subfolder layout. Classes are the subfolder names sorted bytewise
/// (as Python's sorted), samples sorted by folder then file name as torchvision; files
/// ending in .jpg/.jpeg/.png (any case) are taken. get(i): transform(uint8 (H,W,3)), or the
/// uint8 image itself without a transform; target int64 class index.
class ImageFolder : public Dataset {
 public:
  explicit ImageFolder(const std::string& root, std::shared_ptr<Transform> transform = nullptr);
  size_t size() const override { return samples_.size(); }
  Example get(size_t index) const override;
  const std::vector<std::string>& classes() const { return classes_; }
  /// (path, class index) of every sample, in order.
  const std::vector<std::pair<std::string, int64_t>>& samples() const { return samples_; }

 private:
  std::vector<std::string> classes_;
  std::vector<std::pair<std::string, int64_t>> samples_;
  std::shared_ptr<Transform> transform_;
};

}  // namespace smp::data
