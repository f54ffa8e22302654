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
