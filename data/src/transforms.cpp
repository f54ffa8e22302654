#include <smp/data/transforms.h>
#include <smp/engine/error.h>
#include <smp/engine/random.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace smp::data {

Transform::~Transform() = default;

Compose::Compose(std::vector<std::shared_ptr<Transform>> transforms)
    : transforms_(std::move(transforms)) {
  for (size_t i = 0; i < transforms_.size(); ++i)
    SMP_CHECK(transforms_[i] != nullptr, "Compose: transform {} is null", i);
}

Tensor Compose::operator()(const Tensor& img) const {
  Tensor x = img;
  for (const auto& t : transforms_) x = (*t)(x);
  return x;
}

Tensor ToTensor::operator()(const Tensor& img) const {
  SMP_CHECK(img.dtype() == kUInt8, "ToTensor: expected a uint8 (H,W,C) image, got dtype {}",
            dtype_name(img.dtype()));
  SMP_CHECK(img.dim() == 2 || img.dim() == 3, "ToTensor: expected (H,W,C) or (H,W), got {}-D",
            img.dim());
  Tensor src = img.cpu().contiguous();
  const int64_t H = src.size(0), W = src.size(1), C = src.dim() == 3 ? src.size(2) : 1;
  Tensor out = empty({C, H, W}, kFloat32);
  const uint8_t* s = src.data_ptr<uint8_t>();
  float* d = out.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t p = 0; p < H * W; ++p)
      d[c * H * W + p] = static_cast<float>(s[p * C + c]) / 255.0f;
  return out;
}

Normalize::Normalize(std::vector<double> mean, std::vector<double> std)
    : mean_(std::move(mean)), std_(std::move(std)) {
  SMP_CHECK(!mean_.empty() && mean_.size() == std_.size(),
            "Normalize: mean and std need the same nonzero length, got {} and {}", mean_.size(),
            std_.size());
  for (double s : std_) SMP_CHECK(s != 0.0, "Normalize: std must be nonzero, got {}", s);
}

namespace {
template <class T>
void normalize_loop(T* x, int64_t outer, int64_t C, int64_t plane, const std::vector<double>& mean,
                    const std::vector<double>& stdv) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c) {
      size_t k = mean.size() == 1 ? 0 : static_cast<size_t>(c);
      // torchvision keeps mean and std as tensors of the image dtype
      const T m = static_cast<T>(mean[k]), s = static_cast<T>(stdv[k]);
      T* p = x + (o * C + c) * plane;
      for (int64_t i = 0; i < plane; ++i) p[i] = (p[i] - m) / s;
    }
}
}  // namespace

Tensor Normalize::operator()(const Tensor& img) const {
  SMP_CHECK(img.is_floating_point(), "Normalize: expected a float tensor, got {}",
            dtype_name(img.dtype()));
  SMP_CHECK(img.dim() >= 3, "Normalize: expected (..., C, H, W), got {}-D", img.dim());
  const int64_t C = img.size(-3);
  SMP_CHECK(mean_.size() == 1 || static_cast<int64_t>(mean_.size()) == C,
            "Normalize: image has {} channels, mean/std have {}", C, mean_.size());
  Tensor x = img.cpu().to(img.dtype() == kFloat64 ? kFloat64 : kFloat32).contiguous();
  if (x.is_alias_of(img)) x = x.clone();  // never write into the caller's image
  const int64_t plane = img.size(-1) * img.size(-2),
                outer = x.numel() / std::max<int64_t>(1, C * plane);
  if (x.dtype() == kFloat64)
    normalize_loop(x.data_ptr<double>(), outer, C, plane, mean_, std_);
  else
    normalize_loop(x.data_ptr<float>(), outer, C, plane, mean_, std_);
  return x;
}

namespace {
// PyTorch's upsample_bilinear2d (align_corners=False, no scale factor) index and weight
// computation, in float as its CPU kernel does for float input.
struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<float> w0, w1;
};
Taps taps(int64_t in, int64_t out) {
  Taps t;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    int64_t a = static_cast<int64_t>(src);
    int64_t b = a + (a < in - 1 ? 1 : 0);
    float l1 = std::min(std::max(src - static_cast<float>(a), 0.0f), 1.0f);
    t.i0.push_back(a);
    t.i1.push_back(b);
    t.w0.push_back(1.0f - l1);
    t.w1.push_back(l1);
  }
  return t;
}
}  // namespace

Tensor resize_bilinear(const Tensor& img, int64_t out_h, int64_t out_w) {
  SMP_CHECK(img.dim() >= 2, "resize: expected (..., H, W), got {}-D", img.dim());
  SMP_CHECK(out_h >= 1 && out_w >= 1, "resize: output size must be positive, got {}x{}", out_h,
            out_w);
  const bool to_uint8 = img.dtype() == kUInt8;
  SMP_CHECK(to_uint8 || img.is_floating_point(), "resize: expected a float or uint8 image, got {}",
            dtype_name(img.dtype()));
  Tensor x = img.cpu().to(kFloat32).contiguous();
  const int64_t H = x.size(-2), W = x.size(-1);
  SMP_CHECK(H >= 1 && W >= 1, "resize: empty image {}x{}", H, W);
  const int64_t planes = x.numel() / (H * W);
  Shape shape = x.sizes();
  shape[shape.size() - 2] = out_h;
  shape[shape.size() - 1] = out_w;
  Tensor out = empty(shape, kFloat32);
  const Taps th = taps(H, out_h), tw = taps(W, out_w);
  const float* s = x.data_ptr<float>();
  float* d = out.data_ptr<float>();
  for (int64_t p = 0; p < planes; ++p) {
    const float* sp = s + p * H * W;
    float* dp = d + p * out_h * out_w;
    for (int64_t oy = 0; oy < out_h; ++oy) {
      const float* r0 = sp + th.i0[oy] * W;
      const float* r1 = sp + th.i1[oy] * W;
      const float wy0 = th.w0[oy], wy1 = th.w1[oy];
      for (int64_t ox = 0; ox < out_w; ++ox) {
        const int64_t a = tw.i0[ox], b = tw.i1[ox];
        const float t0 = r0[a] * tw.w0[ox] + r0[b] * tw.w1[ox];
        const float t1 = r1[a] * tw.w0[ox] + r1[b] * tw.w1[ox];
        dp[oy * out_w + ox] = t0 * wy0 + t1 * wy1;
      }
    }
  }
  if (to_uint8) {
    Tensor u = empty(shape, kUInt8);
    uint8_t* ud = u.data_ptr<uint8_t>();
    for (int64_t i = 0; i < out.numel(); ++i)
      ud[i] = static_cast<uint8_t>(std::clamp(std::nearbyint(d[i]), 0.0f, 255.0f));
    return u;
  }
  return img.dtype() == kFloat32 ? out : out.to(img.dtype());
}

std::pair<int64_t, int64_t> Resize::output_size(int64_t h, int64_t w) const {
  if (size_.second >= 0) return size_;
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  const int64_t new_short = size_.first;
  const auto new_long =
      static_cast<int64_t>(static_cast<double>(new_short * longer) / static_cast<double>(shorter));
  return w <= h ? std::make_pair(new_long, new_short) : std::make_pair(new_short, new_long);
}

Tensor Resize::operator()(const Tensor& img) const {
  SMP_CHECK(img.dim() >= 2, "Resize: expected (..., H, W), got {}-D", img.dim());
  SMP_CHECK(size_.first >= 1 && (size_.second == -1 || size_.second >= 1),
            "Resize: size must be positive, got ({}, {})", size_.first, size_.second);
  auto [h, w] = output_size(img.size(-2), img.size(-1));
  return resize_bilinear(img, h, w);
}

Tensor crop(const Tensor& img, int64_t top, int64_t left, int64_t h, int64_t w) {
  SMP_CHECK(img.dim() >= 2, "crop: expected (..., H, W), got {}-D", img.dim());
  SMP_CHECK(h >= 1 && w >= 1, "crop: size must be positive, got {}x{}", h, w);
  Tensor x = img.cpu().contiguous();
  const int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / std::max<int64_t>(1, H * W);
  Shape shape = x.sizes();
  shape[shape.size() - 2] = h;
  shape[shape.size() - 1] = w;
  Tensor out = zeros(shape, TensorOptions(x.dtype()));
  const size_t es = x.element_size();
  const auto* s = static_cast<const char*>(x.data_ptr());
  auto* d = static_cast<char*>(out.data_ptr());
  const int64_t x0 = std::max<int64_t>(left, 0), x1 = std::min(left + w, W);
  if (x1 <= x0) return out;
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t y = std::max<int64_t>(top, 0); y < std::min(top + h, H); ++y)
      std::memcpy(d + ((p * h + (y - top)) * w + (x0 - left)) * es, s + ((p * H + y) * W + x0) * es,
                  static_cast<size_t>(x1 - x0) * es);
  return out;
}

Tensor CenterCrop::operator()(const Tensor& img) const {
  SMP_CHECK(img.dim() >= 2, "CenterCrop: expected (..., H, W), got {}-D", img.dim());
  auto offset = [](int64_t size, int64_t crop_size) -> int64_t {
    if (crop_size > size) return -((crop_size - size) / 2);  // torchvision pads, left first
    return static_cast<int64_t>(std::nearbyint((size - crop_size) / 2.0));  // ties to even
  };
  return crop(img, offset(img.size(-2), h_), offset(img.size(-1), w_), h_, w_);
}

namespace {
struct SampleKey {
  bool active = false;
  uint64_t epoch = 0, index = 0, draws = 0;
};
thread_local SampleKey t_sample;
}  // namespace

SampleRngScope::SampleRngScope(uint64_t epoch, uint64_t index)
    : prev_active_(t_sample.active),
      prev_epoch_(t_sample.epoch),
      prev_index_(t_sample.index),
      prev_draws_(t_sample.draws) {
  t_sample = {true, epoch, index, 0};
}

SampleRngScope::~SampleRngScope() {
  t_sample = {prev_active_, prev_epoch_, prev_index_, prev_draws_};
}

double TransformRng::uniform() const {
  uint32_t w[4];
  if (t_sample.active) {
    // Counter (draw number, index) under a high word that marks the epoch; the top bit keeps
    // these streams apart from the shared-counter one below.
    Philox::draw(seed_, (t_sample.index << 20) | (t_sample.draws++ & 0xfffff),
                 (uint64_t{1} << 63) | t_sample.epoch, w);
  } else {
    Philox::draw(seed_, counter_.fetch_add(1, std::memory_order_relaxed), 0x5eedULL, w);
  }
  const uint64_t bits = (static_cast<uint64_t>(w[0]) << 21) ^ (w[1] >> 11);  // 53 bits
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * 0x1.0p-53;
}

RandomResizedCrop::RandomResizedCrop(int64_t size, std::pair<double, double> scale,
                                     std::pair<double, double> ratio, uint64_t seed)
    : RandomResizedCrop(std::make_pair(size, size), scale, ratio, seed) {}

RandomResizedCrop::RandomResizedCrop(std::pair<int64_t, int64_t> size,
                                     std::pair<double, double> scale,
                                     std::pair<double, double> ratio, uint64_t seed)
    : size_(size), scale_(scale), ratio_(ratio), rng_(seed) {
  SMP_CHECK(size_.first >= 1 && size_.second >= 1, "RandomResizedCrop: bad size {}x{}", size_.first,
            size_.second);
  SMP_CHECK(scale_.first <= scale_.second && ratio_.first <= ratio_.second && ratio_.first > 0,
            "RandomResizedCrop: scale and ratio must be (min, max) ranges with ratio > 0");
}

std::array<int64_t, 4> RandomResizedCrop::get_params(int64_t height, int64_t width) const {
  const double area = static_cast<double>(height * width);
  const double lr0 = std::log(ratio_.first), lr1 = std::log(ratio_.second);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (scale_.first + (scale_.second - scale_.first) * rng_.uniform());
    const double aspect = std::exp(lr0 + (lr1 - lr0) * rng_.uniform());
    const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(target * aspect)));
    const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(target / aspect)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const auto i = static_cast<int64_t>(rng_.uniform() * static_cast<double>(height - h + 1));
      const auto j = static_cast<int64_t>(rng_.uniform() * static_cast<double>(width - w + 1));
      return {i, j, h, w};
    }
  }
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  if (in_ratio < ratio_.first)
    h = static_cast<int64_t>(std::nearbyint(static_cast<double>(w) / ratio_.first));
  else if (in_ratio > ratio_.second)
    w = static_cast<int64_t>(std::nearbyint(static_cast<double>(h) * ratio_.second));
  return {(height - h) / 2, (width - w) / 2, h, w};
}

Tensor RandomResizedCrop::operator()(const Tensor& img) const {
  SMP_CHECK(img.dim() >= 2, "RandomResizedCrop: expected (..., H, W), got {}-D", img.dim());
  auto [i, j, h, w] = get_params(img.size(-2), img.size(-1));
  return resize_bilinear(crop(img, i, j, h, w), size_.first, size_.second);
}

Tensor hflip(const Tensor& img) {
  SMP_CHECK(img.dim() >= 1, "hflip: expected at least 1-D, got 0-D");
  Tensor x = img.cpu().contiguous();
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype()));
  const int64_t W = x.size(-1), rows = W == 0 ? 0 : x.numel() / W;
  const size_t es = x.element_size();
  const auto* s = static_cast<const char*>(x.data_ptr());
  auto* d = static_cast<char*>(out.data_ptr());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < W; ++c)
      std::memcpy(d + (r * W + c) * es, s + (r * W + (W - 1 - c)) * es, es);
  return out;
}

Tensor RandomHorizontalFlip::operator()(const Tensor& img) const {
  return rng_.uniform() < p_ ? hflip(img) : img;
}

}  // namespace smp::data
