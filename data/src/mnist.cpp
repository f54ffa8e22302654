#include <fmt/ranges.h>
#include <smp/data/mnist.h>
#include <smp/engine/error.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

namespace smp::data {

namespace {

// read_idx refuses a header that declares more data than this, before allocating (a corrupt
// length field, not a data set: Fashion-MNIST's training images are 47 MB).
constexpr uint64_t kMaxIdxDataBytes = uint64_t{4} << 30;
// A deflate stream expands at most 1032-fold (zlib's FAQ), so a gzip file of n bytes holds at
// most 1032·n bytes.
constexpr uint64_t kMaxDeflateRatio = 1032;

// gzopen/gzread read raw files transparently, so one path serves both formats.
struct GzFile {
  gzFile f = nullptr;
  explicit GzFile(const std::string& path) : f(gzopen(path.c_str(), "rb")) {}
  ~GzFile() {
    if (f) gzclose(f);
  }
};

void read_exact(GzFile& g, const std::string& path, void* dst, size_t n, const char* what) {
  auto* p = static_cast<char*>(dst);
  size_t got = 0;
  while (got < n) {
    unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - got, 1u << 30));
    int r = gzread(g.f, p + got, chunk);
    if (r < 0) {
      int err = 0;
      const char* msg = gzerror(g.f, &err);
      SMP_ERROR("{}: read error in {}: {}", path, what, msg ? msg : "unknown");
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  SMP_CHECK(got == n, "{}: truncated file: {} needs {} bytes, only {} present", path, what, n, got);
}

uint32_t big_endian(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

std::string pick(const std::string& root, const std::string& stem) {
  namespace fs = std::filesystem;
  fs::path raw = fs::path(root) / stem, gz = fs::path(root) / (stem + ".gz");
  if (fs::exists(raw)) return raw.string();
  if (fs::exists(gz)) return gz.string();
  SMP_ERROR("MNIST: neither {} nor {} exists", raw.string(), gz.string());
}

}  // namespace

Tensor read_idx(const std::string& path, int expected_dims) {
  SMP_CHECK(expected_dims >= 1 && expected_dims <= 3,
            "read_idx: expected_dims must be 1..3, got {}", expected_dims);
  GzFile g(path);
  SMP_CHECK(g.f != nullptr, "{}: cannot open: {}", path, std::strerror(errno));
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  SMP_CHECK(!ec, "{}: cannot tell its size: {}", path, ec.message());
  unsigned char head[4];
  read_exact(g, path, head, 4, "the magic number");
  uint32_t magic = big_endian(head);
  const uint32_t want = 0x0800u + static_cast<uint32_t>(expected_dims);
  SMP_CHECK(magic == want,
            "{}: bad magic number {} (0x{:08x}), expected {} (unsigned bytes, {}-D){}", path, magic,
            magic, want, expected_dims, (magic & 0xffff0000u) != 0 ? "; not an IDX file" : "");
  Shape shape;
  uint64_t numel = 1;  // <= kMaxIdxDataBytes * 2^28 while checked: no overflow
  bool too_large = false;
  for (int d = 0; d < expected_dims; ++d) {
    read_exact(g, path, head, 4, "the header");
    uint32_t n = big_endian(head);
    SMP_CHECK(d == 0 || n > 0, "{}: dimension {} is 0", path, d);
    SMP_CHECK(n <= (1u << 28), "{}: dimension {} is {}, implausibly large", path, d, n);
    shape.push_back(static_cast<int64_t>(n));
    if (!too_large) numel *= n;
    too_large = too_large || numel > kMaxIdxDataBytes;
  }
  // The declared size against the bytes present, before allocating for it.
  const uint64_t header_bytes = 4 + 4 * static_cast<uint64_t>(expected_dims);
  SMP_CHECK(!too_large,
            "{}: the header declares shape {}, more than the {} bytes of data read_idx accepts "
            "(corrupt header?)",
            path, shape, kMaxIdxDataBytes);
  if (gzdirect(g.f)) {
    const uint64_t present = file_size - header_bytes;  // the header was read from the file
    SMP_CHECK(numel <= present,
              "{}: the header declares shape {}, {} bytes of data, but the file has only {} "
              "after its {}-byte header (truncated file?)",
              path, shape, numel, present, header_bytes);
  } else {
    const uint64_t can = kMaxDeflateRatio * file_size;
    SMP_CHECK(header_bytes + numel <= can,
              "{}: the header declares shape {}, {} bytes of data, but a {}-byte gzip file "
              "inflates to at most {} (truncated file?)",
              path, shape, numel, file_size, can);
  }
  Tensor t = empty(shape, kUInt8);
  read_exact(g, path, t.data_ptr(), static_cast<size_t>(numel),
             fmt::format("the data of {} bytes", numel).c_str());
  unsigned char extra;
  SMP_CHECK(gzread(g.f, &extra, 1) == 0, "{}: trailing bytes after {} bytes of data", path, numel);
  return t;
}

MNIST::MNIST(const std::string& root, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  const std::string ipath = pick(root, prefix + "-images-idx3-ubyte");
  const std::string lpath = pick(root, prefix + "-labels-idx1-ubyte");
  images_ = read_idx(ipath, 3);
  Tensor labels = read_idx(lpath, 1);
  SMP_CHECK(images_.size(0) == labels.size(0), "MNIST: {} has {} images but {} has {} labels",
            ipath, images_.size(0), lpath, labels.size(0));
  targets_ = labels.to(kInt64);
  build_table();
}

MNIST::MNIST(const std::string& root, bool train, const Normalize& normalize) : MNIST(root, train) {
  SMP_CHECK(normalize.mean().size() == 1 && normalize.std().size() == 1,
            "MNIST: images have one channel, got a Normalize with {} means and {} stds",
            normalize.mean().size(), normalize.std().size());
  set_normalize(normalize.mean()[0], normalize.std()[0]);
}

void MNIST::set_normalize(double mean, double std) {
  SMP_CHECK(std != 0.0, "MNIST: normalisation std must be nonzero");
  normalize_ = std::make_pair(mean, std);
  build_table();
}

void MNIST::build_table() {
  // Float32 steps in torchvision's order: ToTensor divides by 255, Normalize subtracts the
  // float32 mean and divides by the float32 std.
  for (int p = 0; p < 256; ++p) {
    float x = static_cast<float>(p) / 255.0f;
    if (normalize_)
      x = (x - static_cast<float>(normalize_->first)) / static_cast<float>(normalize_->second);
    table_[p] = x;
  }
}

Example MNIST::get(size_t index) const {
  SMP_CHECK(index < size(), "MNIST: index {} out of range for {} samples", index, size());
  auto b = *get_batch({index});
  return {b.data.view({1, images_.size(1), images_.size(2)}), b.target.view({})};
}

std::optional<Batch> MNIST::get_batch(const std::vector<size_t>& indices) const {
  const int64_t B = static_cast<int64_t>(indices.size()), H = images_.size(1), W = images_.size(2),
                HW = H * W;
  const size_t n = size();
  for (size_t i : indices) SMP_CHECK(i < n, "MNIST: index {} out of range for {} samples", i, n);
  Batch b;
  b.data = empty({B, 1, H, W}, kFloat32);
  b.target = empty({B}, kInt64);
  const uint8_t* src = images_.data_ptr<uint8_t>();
  const int64_t* lab = targets_.data_ptr<int64_t>();
  float* dst = b.data.data_ptr<float>();
  int64_t* tgt = b.target.data_ptr<int64_t>();
  for (int64_t k = 0; k < B; ++k) {
    const uint8_t* s = src + static_cast<int64_t>(indices[k]) * HW;
    float* d = dst + k * HW;
    for (int64_t j = 0; j < HW; ++j) d[j] = table_[s[j]];
    tgt[k] = lab[indices[k]];
  }
  return b;
}

ResizedMNIST::ResizedMNIST(std::shared_ptr<MNIST> mnist, int64_t size, int64_t channels)
    : mnist_(std::move(mnist)), size_(size), channels_(channels) {
  SMP_CHECK(mnist_ != nullptr, "ResizedMNIST: got a null MNIST");
  SMP_CHECK(size_ >= 1, "ResizedMNIST: size must be >= 1, got {}", size_);
  SMP_CHECK(channels_ >= 1, "ResizedMNIST: channels must be >= 1, got {}", channels_);
}

Example ResizedMNIST::get(size_t index) const {
  Batch b = *get_batch({index});
  return {b.data.select(0, 0), b.target.view({})};
}

std::optional<Batch> ResizedMNIST::get_batch(const std::vector<size_t>& indices) const {
  Batch b = *mnist_->get_batch(indices);
  const int64_t B = b.data.size(0);
  Tensor r = (b.data.size(2) == size_ && b.data.size(3) == size_)
                 ? b.data
                 : resize_bilinear(b.data, size_, size_);  // (B,1,S,S)
  if (channels_ == 1) return Batch{r, b.target};
  Tensor out = empty({B, channels_, size_, size_}, kFloat32);
  const float* s = r.data_ptr<float>();
  float* d = out.data_ptr<float>();
  const int64_t plane = size_ * size_;
  for (int64_t k = 0; k < B; ++k)
    for (int64_t c = 0; c < channels_; ++c)
      std::memcpy(d + (k * channels_ + c) * plane, s + k * plane, plane * sizeof(float));
  return Batch{out, b.target};
}

}  // namespace smp::data
