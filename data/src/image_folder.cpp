#include <smp/data/image_folder.h>
#include <smp/engine/error.h>

// clang-format off
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <jpeglib.h>
// clang-format on
#include <png.h>

#include <algorithm>
#include <climits>
#include <csetjmp>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace smp::data {

namespace {

std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  SMP_CHECK(f.good(), "{}: cannot open image file", path);
  std::vector<unsigned char> buf((std::istreambuf_iterator<char>(f)),
                                 std::istreambuf_iterator<char>());
  SMP_CHECK(!f.bad(), "{}: read error", path);
  return buf;
}

// A deflate stream (a PNG's image data) expands at most 1032-fold (zlib's FAQ: 258 bytes per
// 2-bit length/distance pair), so a PNG file of n bytes holds at most 1032·n bytes of rows.
constexpr uint64_t kMaxDeflateRatio = 1032;

// The message for an image larger than max_pixels; `what` is "JPEG" or "PNG".
void describe_too_large(char* out, size_t n, const char* what, uint64_t w, uint64_t h,
                        int64_t max_pixels) {
  std::snprintf(out, n,
                "the %s header declares %llu x %llu = %llu pixels, more than the %lld that "
                "read_image allows (max_pixels)",
                what, static_cast<unsigned long long>(w), static_cast<unsigned long long>(h),
                static_cast<unsigned long long>(w * h), static_cast<long long>(max_pixels));
}

// libjpeg's default error_exit calls exit(); ours longjmps back into decode_jpeg, and
// warnings (a truncated stream is only a warning to libjpeg) count as errors, as PIL does.
struct JpegErr {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 128];
  bool too_large = false;  // refused by size before decoding, not corrupt
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErr*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void jpeg_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_error_exit(cinfo);  // -1: a warning such as premature end of data
}

// Everything with a destructor lives in the caller, so the longjmp skips no C++ cleanup.
bool decode_jpeg_raw(const std::vector<unsigned char>& buf, int64_t max_pixels,
                     jpeg_decompress_struct& cinfo, JpegErr& jerr,
                     std::vector<unsigned char>& pixels, int& h, int& w) {
  cinfo.err = jpeg_std_error(&jerr.pub);
  jerr.pub.error_exit = jpeg_error_exit;
  jerr.pub.emit_message = jpeg_emit_message;
  jerr.message[0] = '\0';
  if (setjmp(jerr.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, buf.data(), static_cast<unsigned long>(buf.size()));
  jpeg_read_header(&cinfo, TRUE);
  // The declared size, checked before libjpeg or we allocate for it.
  if (uint64_t{cinfo.image_width} * cinfo.image_height > static_cast<uint64_t>(max_pixels)) {
    describe_too_large(jerr.message, sizeof jerr.message, "JPEG", cinfo.image_width,
                       cinfo.image_height, max_pixels);
    jerr.too_large = true;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  // A progressive file keeps every coefficient (2 bytes each, at most 64 per 8x8 block of each
  // of 3 components) while it decodes; more than that, plus libjpeg's row buffers, is an error
  // (it has no backing store), not an allocation.
  cinfo.mem->max_memory_to_use = static_cast<long>(
      std::min<uint64_t>(6 * static_cast<uint64_t>(max_pixels) + (64u << 20), LONG_MAX));
  // libjpeg converts YCbCr and grayscale to RGB itself; CMYK/YCCK cannot be, and are rare.
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    std::snprintf(jerr.message, sizeof jerr.message, "CMYK JPEG is not supported");
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  h = static_cast<int>(cinfo.output_height);
  w = static_cast<int>(cinfo.output_width);
  // Rows are added as they decode, so a file that declares a large image and ends early fails
  // having touched only the rows it held.
  const size_t row_bytes = static_cast<size_t>(w) * 3;
  pixels.reserve(static_cast<size_t>(h) * row_bytes);
  while (cinfo.output_scanline < cinfo.output_height) {
    pixels.resize(pixels.size() + row_bytes);
    JSAMPROW row = pixels.data() + pixels.size() - row_bytes;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

struct PngSource {
  const std::vector<unsigned char>* buf;
  size_t pos;
  char message[256];
  bool too_large;  // refused by size before decoding, not corrupt
};

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (src->pos + n > src->buf->size()) png_error(png, "unexpected end of file (truncated image)");
  std::memcpy(out, src->buf->data() + src->pos, n);
  src->pos += n;
}

void png_on_error(png_structp png, png_const_charp msg) {
  auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
  std::snprintf(src->message, sizeof src->message, "%s", msg);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

bool decode_png_raw(PngSource& src, int64_t max_pixels, png_structp& png, png_infop& info,
                    std::vector<unsigned char>& pixels, std::vector<png_bytep>& rows, int& h,
                    int& w) {
  png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
  if (!png) {
    std::snprintf(src.message, sizeof src.message, "out of memory");
    return false;
  }
  info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    return false;
  }
  png_set_read_fn(png, &src, png_read_mem);
  // Only IHDR, PLTE, tRNS, IDAT and IEND shape the pixels we keep (no gamma, background or
  // shift transform is asked for), so libpng skips every other chunk unread (-1: all known
  // ancillary chunks and unknown ones). Reading them could cost more than the file: libpng
  // 1.6 allocates and zeroes an ancillary chunk's declared length before reading it, so a
  // 46-byte file declaring a 1.9 GB sCAL chunk took 2 GB (fuzz_png found it).
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
  png_read_info(png, info);
  // The declared size, checked before anything is allocated for the pixels: against
  // max_pixels, and against what the file's bytes can inflate to.
  {
    const uint64_t iw = png_get_image_width(png, info), ih = png_get_image_height(png, info);
    if (iw * ih > static_cast<uint64_t>(max_pixels)) {
      describe_too_large(src.message, sizeof src.message, "PNG", iw, ih, max_pixels);
      src.too_large = true;
      png_destroy_read_struct(&png, &info, nullptr);
      return false;
    }
    // Every row is a filter byte and the row's bytes (more when interlaced).
    const uint64_t need = ih * (uint64_t{png_get_rowbytes(png, info)} + 1);
    const uint64_t can = kMaxDeflateRatio * src.buf->size();
    if (need > can) {
      std::snprintf(src.message, sizeof src.message,
                    "the header declares %llu x %llu pixels, %llu bytes of compressed rows, but "
                    "a %zu-byte file inflates to at most %llu (truncated?)",
                    static_cast<unsigned long long>(iw), static_cast<unsigned long long>(ih),
                    static_cast<unsigned long long>(need), src.buf->size(),
                    static_cast<unsigned long long>(can));
      png_destroy_read_struct(&png, &info, nullptr);
      return false;
    }
  }
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  // To 8-bit RGB: expand palette and low-bit gray, drop alpha (PIL's convert("RGB")).
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  h = static_cast<int>(png_get_image_height(png, info));
  w = static_cast<int>(png_get_image_width(png, info));
  if (png_get_rowbytes(png, info) != static_cast<size_t>(w) * 3) {
    std::snprintf(src.message, sizeof src.message, "unexpected PNG pixel layout");
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  pixels.resize(static_cast<size_t>(h) * static_cast<size_t>(w) * 3);
  rows.resize(static_cast<size_t>(h));
  for (int y = 0; y < h; ++y)
    rows[static_cast<size_t>(y)] =
        pixels.data() + static_cast<size_t>(y) * static_cast<size_t>(w) * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

bool lower_ext_ok(const std::filesystem::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e == ".jpg" || e == ".jpeg" || e == ".png";
}

}  // namespace

Tensor read_image(const std::string& path, int64_t max_pixels) {
  SMP_CHECK(max_pixels >= 1, "read_image: max_pixels must be >= 1, got {}", max_pixels);
  const std::vector<unsigned char> buf = read_file(path);
  std::vector<unsigned char> pixels;
  int h = 0, w = 0;
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (buf.size() >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) {
    jpeg_decompress_struct cinfo;
    JpegErr jerr;
    if (!decode_jpeg_raw(buf, max_pixels, cinfo, jerr, pixels, h, w))
      SMP_ERROR("{}: {}{}", path, jerr.too_large ? "" : "corrupt JPEG image: ", jerr.message);
  } else if (buf.size() >= 8 && std::memcmp(buf.data(), kPng, 8) == 0) {
    PngSource src{&buf, 0, {0}, false};
    png_structp png = nullptr;
    png_infop info = nullptr;
    std::vector<png_bytep> rows;
    if (!decode_png_raw(src, max_pixels, png, info, pixels, rows, h, w))
      SMP_ERROR("{}: {}{}", path, src.too_large ? "" : "corrupt PNG image: ", src.message);
  } else {
    SMP_ERROR("{}: not a JPEG or PNG image ({} bytes, unknown signature)", path, buf.size());
  }
  return from_data(pixels.data(), {h, w, 3}, kUInt8);
}

ImageFolder::ImageFolder(const std::string& root, std::shared_ptr<Transform> transform)
    : transform_(std::move(transform)) {
  namespace fs = std::filesystem;
  SMP_CHECK(fs::is_directory(root), "ImageFolder: {} is not a directory", root);
  for (const auto& e :
       fs::directory_iterator(root, fs::directory_options::follow_directory_symlink))
    if (e.is_directory()) classes_.push_back(e.path().filename().string());
  std::sort(classes_.begin(), classes_.end());
  SMP_CHECK(!classes_.empty(), "ImageFolder: no class folders in {}", root);
  for (size_t c = 0; c < classes_.size(); ++c) {
    // (folder, file name) sorted: the order of torchvision's sorted(os.walk(...)) + sorted(files)
    std::vector<std::pair<std::string, std::string>> files;
    for (const auto& e : fs::recursive_directory_iterator(
             fs::path(root) / classes_[c], fs::directory_options::follow_directory_symlink))
      if (e.is_regular_file() && lower_ext_ok(e.path()))
        files.emplace_back(e.path().parent_path().string(), e.path().filename().string());
    SMP_CHECK(!files.empty(), "ImageFolder: class folder {} has no .jpg/.jpeg/.png file",
              (fs::path(root) / classes_[c]).string());
    std::sort(files.begin(), files.end());
    for (auto& [dir, name] : files)
      samples_.emplace_back((fs::path(dir) / name).string(), static_cast<int64_t>(c));
  }
}

Example ImageFolder::get(size_t index) const {
  SMP_CHECK(index < samples_.size(), "ImageFolder: index {} out of range for {} samples", index,
            samples_.size());
  const auto& [path, cls] = samples_[index];
  Tensor img = read_image(path);
  if (transform_) img = (*transform_)(img);
  return {img, scalar_tensor(cls, kInt64)};
}

}  // namespace smp::data
