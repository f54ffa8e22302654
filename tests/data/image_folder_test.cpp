#include "data_test_util.h"
#include "gradcheck.h"

using namespace smp;
using namespace smp::data;
using smp::test::TempDir;

namespace {
std::string file(const std::string& name) { return smp::test::data_files_dir() + "/" + name; }

void copy(const std::string& from, const std::string& to) {
  std::filesystem::create_directories(std::filesystem::path(to).parent_path());
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const smp::Error& e) {
    return e.what();
  }
  return "<no error>";
}
}  // namespace

TEST(ImageDecode, MatchesPillowRgbConversion) {
  auto& g = smp::test::data_golden();
  for (const char* name :
       {"rgb.png", "gray.png", "rgba.png", "palette.png", "rgb.jpg", "gray.jpg"}) {
    Tensor img = read_image(file(name));
    const Tensor& want = g.at(std::string("decode.") + name);
    EXPECT_EQ(img.dtype(), kUInt8) << name;
    ASSERT_EQ(img.sizes(), (Shape{10, 13, 3})) << name;
    // PNG is lossless; JPEG decoded by the same libjpeg-turbo as Pillow's
    SCOPED_TRACE(name);
    EXPECT_ALLCLOSE(img.to(kInt64), want.to(kInt64), 0, 0);
  }
}

TEST(ImageDecode, CorruptImagesNameThePath) {
  TempDir d;
  for (const char* name : {"rgb.jpg", "rgb.png"}) {
    auto bytes = smp::test::read_bytes(file(name));
    std::string cut = d / (std::string("cut_") + name);
    bytes.resize(bytes.size() * 2 / 3);
    smp::test::write_file(cut, bytes, false);
    std::string msg = error_of([&] { read_image(cut); });
    EXPECT_NE(msg.find(cut), std::string::npos) << msg;
    EXPECT_NE(msg.find("corrupt"), std::string::npos) << msg;
    // damaged header: keep the signature, scramble the rest
    auto bad = smp::test::read_bytes(file(name));
    for (size_t i = 8; i < bad.size(); ++i) bad[i] = static_cast<uint8_t>(i * 131);
    std::string scrambled = d / (std::string("bad_") + name);
    smp::test::write_file(scrambled, bad, false);
    msg = error_of([&] { read_image(scrambled); });
    EXPECT_NE(msg.find(scrambled), std::string::npos) << msg;
  }
  std::string text = d / "text.png";
  smp::test::write_file(text, {'h', 'e', 'l', 'l', 'o'}, false);
  std::string msg = error_of([&] { read_image(text); });
  EXPECT_NE(msg.find(text), std::string::npos) << msg;
  msg = error_of([&] { read_image(d / "missing.jpg"); });
  EXPECT_NE(msg.find("missing.jpg"), std::string::npos) << msg;
}

namespace {
void put_be(std::vector<uint8_t>& b, size_t at, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * (bytes - 1 - i)));
}

// `name` (a test PNG) with its IHDR declaring width x height, the chunk's CRC fixed.
std::vector<uint8_t> png_declaring(const char* name, uint32_t width, uint32_t height) {
  auto b = smp::test::read_bytes(file(name));
  // signature (8), IHDR length (4), "IHDR" (4), width, height, 5 more bytes, CRC
  EXPECT_EQ(std::string(b.begin() + 12, b.begin() + 16), "IHDR");
  put_be(b, 16, width, 4);
  put_be(b, 20, height, 4);
  put_be(b, 29, static_cast<uint32_t>(crc32(0, b.data() + 12, 17)), 4);
  return b;
}

// `name` (a test JPEG) with its SOF0 frame header declaring width x height.
std::vector<uint8_t> jpeg_declaring(const char* name, uint16_t width, uint16_t height) {
  auto b = smp::test::read_bytes(file(name));
  for (size_t i = 2; i + 9 < b.size(); ++i)
    if (b[i] == 0xFF && b[i + 1] == 0xC0) {  // FFC0, length (2), precision (1), height, width
      put_be(b, i + 5, height, 2);
      put_be(b, i + 7, width, 2);
      return b;
    }
  ADD_FAILURE() << name << " has no SOF0 marker";
  return b;
}
}  // namespace

// The size an image header declares is checked before decoding allocates for it: against
// max_pixels (default 2^27) and, for PNG, against what the file's compressed rows can inflate
// to. Without the checks the first two decode into 30 GB and 11 GB buffers.
TEST(ImageDecode, HostileSizesAreRefusedBeforeDecoding) {
  TempDir d;
  const std::string huge_png = d / "huge.png";
  smp::test::write_file(huge_png, png_declaring("rgb.png", 100000, 100000), false);
  std::string msg = error_of([&] { read_image(huge_png); });
  EXPECT_NE(msg.find(huge_png), std::string::npos) << msg;
  EXPECT_NE(msg.find("the PNG header declares 100000 x 100000 = 10000000000 pixels, more than "
                     "the 134217728 that read_image allows"),
            std::string::npos)
      << msg;

  const std::string huge_jpg = d / "huge.jpg";
  smp::test::write_file(huge_jpg, jpeg_declaring("rgb.jpg", 60000, 60000), false);
  msg = error_of([&] { read_image(huge_jpg); });
  EXPECT_NE(msg.find(huge_jpg), std::string::npos) << msg;
  EXPECT_NE(msg.find("the JPEG header declares 60000 x 60000 = 3600000000 pixels, more than the "
                     "134217728"),
            std::string::npos)
      << msg;

  // Under max_pixels, but 392 bytes cannot inflate to 10000 rows of 30000 bytes.
  const std::string big_png = d / "big.png";
  smp::test::write_file(big_png, png_declaring("rgb.png", 10000, 10000), false);
  msg = error_of([&] { read_image(big_png); });
  EXPECT_NE(msg.find(big_png), std::string::npos) << msg;
  EXPECT_NE(msg.find("corrupt PNG image: the header declares 10000 x 10000 pixels, 300010000 bytes "
                     "of compressed rows, but a 392-byte file inflates to at most 404544"),
            std::string::npos)
      << msg;

  // max_pixels is the caller's: the 13 x 10 test images need 130.
  EXPECT_EQ(read_image(file("rgb.png"), 130).sizes(), (Shape{10, 13, 3}));
  EXPECT_EQ(read_image(file("rgb.jpg"), 130).sizes(), (Shape{10, 13, 3}));
  for (const char* name : {"rgb.png", "rgb.jpg"}) {
    msg = error_of([&] { read_image(file(name), 129); });
    EXPECT_NE(msg.find("declares 13 x 10 = 130 pixels, more than the 129"), std::string::npos)
        << msg;
  }
}

TEST(ImageFolder, TorchvisionLayoutAndOrder) {
  TempDir d;
  copy(file("rgb.png"), d / "cat/b.png");
  copy(file("rgb.jpg"), d / "cat/a.JPG");
  copy(file("gray.jpg"), d / "cat/sub/c.jpeg");
  copy(file("rgba.png"), d / "ant/x.png");
  smp::test::write_file(d / "ant/notes.txt", {'x'}, false);
  smp::test::write_file(d / "README", {'x'}, false);
  ImageFolder f(d.path.string());
  EXPECT_EQ(f.classes(), (std::vector<std::string>{"ant", "cat"}));
  ASSERT_EQ(f.size(), 4u);
  std::vector<std::string> names;
  std::vector<int64_t> labels;
  for (auto& [path, cls] : f.samples()) {
    names.push_back(std::filesystem::relative(path, d.path).string());
    labels.push_back(cls);
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"ant/x.png", "cat/a.JPG", "cat/b.png", "cat/sub/c.jpeg"}));
  EXPECT_EQ(labels, (std::vector<int64_t>{0, 1, 1, 1}));
  Example e = f.get(3);
  EXPECT_EQ(e.data.sizes(), (Shape{10, 13, 3}));
  EXPECT_EQ(e.target.item<int64_t>(), 1);
  EXPECT_ALLCLOSE(e.data.to(kInt64), smp::test::data_golden().at("decode.gray.jpg").to(kInt64), 0,
                  0);

  auto tf = std::make_shared<Compose>(std::vector<std::shared_ptr<Transform>>{
      std::make_shared<ToTensor>(), std::make_shared<Resize>(8), std::make_shared<CenterCrop>(6),
      std::make_shared<Normalize>(std::vector<double>{0.485, 0.456, 0.406},
                                  std::vector<double>{0.229, 0.224, 0.225})});
  auto ds = std::make_shared<ImageFolder>(d.path.string(), tf);
  EXPECT_ALLCLOSE(ds->get(2).data, smp::test::data_golden().at("pipeline"), 1e-5, 1e-5);
  for (size_t workers : {0, 2}) {
    DataLoader loader(ds, DataLoaderOptions(3).num_workers(workers));
    std::vector<int64_t> seen;
    for (Batch& b : loader) {
      EXPECT_EQ(b.data.sizes()[1], 3);
      EXPECT_EQ(b.data.sizes()[2], 6);
      for (int64_t t : b.target.to_vector<int64_t>()) seen.push_back(t);
    }
    EXPECT_EQ(seen, labels);
  }
}

TEST(ImageFolder, ErrorsNameThePath) {
  TempDir d;
  copy(file("rgb.png"), d / "a/ok.png");
  std::filesystem::create_directories(d / "b");
  std::string msg = error_of([&] { ImageFolder(d.path.string()); });
  EXPECT_NE(msg.find(d / "b"), std::string::npos) << msg;
  auto bytes = smp::test::read_bytes(file("rgb.jpg"));
  bytes.resize(bytes.size() / 2);
  smp::test::write_file(d / "b/broken.jpg", bytes, false);
  ImageFolder f(d.path.string());
  msg = error_of([&] { f.get(1); });
  EXPECT_NE(msg.find(d / "b/broken.jpg"), std::string::npos) << msg;
  auto ds = std::make_shared<ImageFolder>(d.path.string(), std::make_shared<ToTensor>());
  DataLoader loader(ds, DataLoaderOptions(1).num_workers(2));
  msg = error_of([&] {
    for (Batch& b : loader) (void)b;
  });
  EXPECT_NE(msg.find("broken.jpg"), std::string::npos) << msg;
  msg = error_of([&] { ImageFolder(d / "nope"); });
  EXPECT_NE(msg.find("nope"), std::string::npos) << msg;
}
