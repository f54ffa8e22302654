#include "data_test_util.h"
#include "gradcheck.h"

using namespace smp;
using namespace smp::data;
using smp::test::TempDir;

namespace {

struct ToySet {
  std::vector<uint8_t> pixels, labels;
  uint32_t n, h, w;
};

ToySet toy(uint32_t n, uint32_t h, uint32_t w, uint32_t salt) {
  ToySet s{{}, {}, n, h, w};
  for (uint32_t i = 0; i < n * h * w; ++i)
    s.pixels.push_back(static_cast<uint8_t>((i * 37 + salt) % 256));
  for (uint32_t i = 0; i < n; ++i) s.labels.push_back(static_cast<uint8_t>((i + salt) % 10));
  return s;
}

void write_set(const TempDir& d, const std::string& prefix, const ToySet& s, bool gz) {
  std::string ext = gz ? ".gz" : "";
  smp::test::write_file(d / (prefix + "-images-idx3-ubyte" + ext),
                        smp::test::idx_bytes(2051, {s.n, s.h, s.w}, s.pixels), gz);
  smp::test::write_file(d / (prefix + "-labels-idx1-ubyte" + ext),
                        smp::test::idx_bytes(2049, {s.n}, s.labels), gz);
}

void expect_matches(const MNIST& m, const ToySet& s) {
  ASSERT_EQ(m.size(), s.n);
  ASSERT_EQ(m.images().sizes(), (Shape{s.n, s.h, s.w}));
  EXPECT_EQ(m.images().dtype(), kUInt8);
  EXPECT_EQ(m.targets().dtype(), kInt64);
  EXPECT_EQ(m.images().to_vector<int64_t>(),
            std::vector<int64_t>(s.pixels.begin(), s.pixels.end()));
  EXPECT_EQ(m.targets().to_vector<int64_t>(),
            std::vector<int64_t>(s.labels.begin(), s.labels.end()));
  Example e = m.get(2);
  ASSERT_EQ(e.data.sizes(), (Shape{1, s.h, s.w}));
  EXPECT_EQ(e.data.dtype(), kFloat32);
  EXPECT_EQ(e.target.dim(), 0);
  EXPECT_EQ(e.target.item<int64_t>(), s.labels[2]);
  auto v = e.data.to_vector<float>();
  for (size_t j = 0; j < v.size(); ++j)
    ASSERT_EQ(v[j], static_cast<float>(s.pixels[2 * s.h * s.w + j]) / 255.0f) << j;
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

TEST(MnistIdx, RawAndGzipLoadExactValues) {
  TempDir d;
  ToySet train = toy(5, 4, 3, 1), test = toy(3, 4, 3, 7);
  write_set(d, "train", train, /*gz=*/false);
  write_set(d, "t10k", test, /*gz=*/true);
  expect_matches(MNIST(d.path.string(), true), train);
  expect_matches(MNIST(d.path.string(), false), test);
}

TEST(MnistIdx, PrefersRawFileOverGzip) {
  TempDir d;
  ToySet raw = toy(4, 2, 2, 3), gz = toy(6, 2, 2, 5);
  write_set(d, "train", raw, false);
  write_set(d, "train", gz, true);
  expect_matches(MNIST(d.path.string(), true), raw);
}

TEST(MnistIdx, BatchPathEqualsPerSampleAndNormalizes) {
  TempDir d;
  ToySet s = toy(7, 3, 5, 2);
  write_set(d, "train", s, true);
  MNIST m(d.path.string(), true, Normalize({0.1307}, {0.3081}));
  auto b = m.get_batch({6, 0, 3});
  ASSERT_TRUE(b.has_value());
  ASSERT_EQ(b->data.sizes(), (Shape{3, 1, 3, 5}));
  EXPECT_EQ(b->target.to_vector<int64_t>(),
            (std::vector<int64_t>{s.labels[6], s.labels[0], s.labels[3]}));
  EXPECT_ALLCLOSE(b->data.select(0, 2), m.get(3).data, 0, 0);
  // ToTensor then Normalize, as the engine computes it
  Tensor ref = m.images().select(0, 6).to(kFloat32).div(255.0).sub(0.1307).div(0.3081);
  EXPECT_ALLCLOSE(b->data.select(0, 0).select(0, 0), ref, 1e-6, 1e-6);
  m.set_normalize(0.5, 2.0);
  EXPECT_ALLCLOSE(m.get(6).data.select(0, 0),
                  m.images().select(0, 6).to(kFloat32).div(255.0).sub(0.5).div(2.0), 1e-6, 1e-6);
  EXPECT_THROW(m.get(7), smp::Error);
  EXPECT_THROW(m.get_batch({1, 9}), smp::Error);
}

TEST(MnistIdx, CorruptFilesAreErrorsNamingTheFile) {
  ToySet s = toy(4, 2, 2, 0);
  {  // bad magic in the images file
    TempDir d;
    write_set(d, "train", s, false);
    smp::test::write_file(d / "train-images-idx3-ubyte",
                          smp::test::idx_bytes(2049, {4, 2, 2}, s.pixels), false);
    std::string msg = error_of([&] { MNIST(d.path.string(), true); });
    EXPECT_NE(msg.find(d / "train-images-idx3-ubyte"), std::string::npos) << msg;
    EXPECT_NE(msg.find("magic"), std::string::npos) << msg;
  }
  {  // labels file with the images magic
    TempDir d;
    write_set(d, "train", s, true);
    smp::test::write_file(d / "train-labels-idx1-ubyte.gz",
                          smp::test::idx_bytes(2051, {4}, s.labels), true);
    std::string msg = error_of([&] { MNIST(d.path.string(), true); });
    EXPECT_NE(msg.find("train-labels-idx1-ubyte.gz"), std::string::npos) << msg;
    EXPECT_NE(msg.find("magic"), std::string::npos) << msg;
  }
  {  // truncated payload, raw and gzip
    for (bool gz : {false, true}) {
      TempDir d;
      write_set(d, "train", s, gz);
      std::vector<uint8_t> cut(s.pixels.begin(), s.pixels.end() - 3);
      std::string path = d / (std::string("train-images-idx3-ubyte") + (gz ? ".gz" : ""));
      smp::test::write_file(path, smp::test::idx_bytes(2051, {4, 2, 2}, cut), gz);
      std::string msg = error_of([&] { MNIST(d.path.string(), true); });
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
    }
  }
  {  // truncated header
    TempDir d;
    write_set(d, "train", s, false);
    smp::test::write_file(d / "train-labels-idx1-ubyte", {0, 0, 8, 1, 0, 0}, false);
    std::string msg = error_of([&] { MNIST(d.path.string(), true); });
    EXPECT_NE(msg.find("train-labels-idx1-ubyte"), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  }
  {  // a gzip stream cut short
    TempDir d;
    ToySet big = toy(50, 28, 28, 1);
    write_set(d, "train", big, true);
    std::string path = d / "train-images-idx3-ubyte.gz";
    auto bytes = smp::test::read_bytes(path);
    bytes.resize(bytes.size() / 2);
    smp::test::write_file(path, bytes, false);
    std::string msg = error_of([&] { MNIST(d.path.string(), true); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
  }
  {  // counts differ between images and labels
    TempDir d;
    write_set(d, "train", s, false);
    smp::test::write_file(d / "train-labels-idx1-ubyte", smp::test::idx_bytes(2049, {3}, {1, 2, 3}),
                          false);
    std::string msg = error_of([&] { MNIST(d.path.string(), true); });
    EXPECT_NE(msg.find("4 images"), std::string::npos) << msg;
    EXPECT_NE(msg.find("3 labels"), std::string::npos) << msg;
  }
  {  // trailing garbage
    TempDir d;
    write_set(d, "train", s, false);
    smp::test::write_file(d / "train-labels-idx1-ubyte",
                          smp::test::idx_bytes(2049, {4}, {1, 2, 3, 4, 5}), false);
    std::string msg = error_of([&] { MNIST(d.path.string(), true); });
    EXPECT_NE(msg.find("train-labels-idx1-ubyte"), std::string::npos) << msg;
  }
  {  // missing files
    TempDir d;
    std::string msg = error_of([&] { MNIST(d.path.string(), false); });
    EXPECT_NE(msg.find("t10k-images-idx3-ubyte"), std::string::npos) << msg;
  }
}

// A size declared in the header is checked against the bytes present (raw), against what the
// compressed bytes can inflate to (gzip) and against 4 GiB, before anything is allocated for
// it. Without these checks the first case asks for 210 GB and the others read past a large
// allocation before reporting truncation.
TEST(MnistIdx, HostileSizesAreRefusedBeforeAllocating) {
  TempDir d;
  const std::vector<uint8_t> hundred(100, 7);
  struct Case {
    const char* name;
    bool gz;
    std::vector<uint8_t> bytes;
    int dims;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"images_2p28",
       false,
       smp::test::idx_bytes(2051, {1u << 28, 28, 28}, hundred),
       3,
       {"declares shape [268435456, 28, 28]", "more than the 4294967296 bytes"}},
      {"labels_2p28",
       false,
       smp::test::idx_bytes(2049, {1u << 28}, hundred),
       1,
       {"268435456 bytes of data, but the file has only 100 after its 8-byte header"}},
      {"images_1000",
       false,
       smp::test::idx_bytes(2051, {1000, 28, 28}, hundred),
       3,
       {"declares shape [1000, 28, 28], 784000 bytes of data, but the file has only 100 after "
        "its 16-byte header"}},
      {"images_60000.gz",
       true,
       smp::test::idx_bytes(2051, {60000, 28, 28}, hundred),
       3,
       {"declares shape [60000, 28, 28], 47040000 bytes of data, but a ",
        "-byte gzip file "
        "inflates to at most"}},
  };
  for (const auto& c : cases) {
    const std::string path = d / c.name;
    smp::test::write_file(path, c.bytes, c.gz);
    std::string msg = error_of([&] { read_idx(path, c.dims); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& e : c.expect) EXPECT_NE(msg.find(e), std::string::npos) << msg;
  }
  // The bound on gzip files is the deflate limit, not a guess: 1032-fold still loads.
  std::vector<uint8_t> zeros(200000, 0);
  const std::string zpath = d / "zeros.gz";
  smp::test::write_file(zpath, smp::test::idx_bytes(2049, {200000}, zeros), true);
  EXPECT_EQ(read_idx(zpath, 1).numel(), 200000);
}

TEST(MnistIdx, RealFashionMnist) {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  // Both are test dependencies (tools/run installs dataset-fashion-mnist): missing is a failure.
  ASSERT_TRUE(std::filesystem::exists(root))
      << root << " is not installed (apt-get install dataset-fashion-mnist)";
  auto& g = smp::test::data_golden();
  ASSERT_TRUE(g.count("fmnist.train.images"))
      << "tests/golden/data.safetensors was made without Fashion-MNIST; rerun gen_data.py";
  MNIST train(root, true), test(root, false);
  ASSERT_EQ(train.size(), 60000u);
  ASSERT_EQ(test.size(), 10000u);
  EXPECT_EQ(train.images().sizes(), (Shape{60000, 28, 28}));
  EXPECT_EQ(test.images().sizes(), (Shape{10000, 28, 28}));
  for (const MNIST* m : {&train, &test}) {
    EXPECT_EQ(m->targets().min().item<int64_t>(), 0);
    EXPECT_EQ(m->targets().max().item<int64_t>(), 9);
  }
  auto hist = [](const MNIST& m) {
    std::vector<int64_t> h(10, 0);
    for (int64_t v : m.targets().to_vector<int64_t>()) ++h[static_cast<size_t>(v)];
    return h;
  };
  EXPECT_EQ(hist(train), g["fmnist.train.label_hist"].to_vector<int64_t>());
  EXPECT_EQ(hist(test), g["fmnist.test.label_hist"].to_vector<int64_t>());
  EXPECT_EQ(train.targets().narrow(0, 0, 32).to_vector<int64_t>(),
            g["fmnist.train.labels_head"].to_vector<int64_t>());
  auto pick = g["fmnist.train.pick"].to_vector<int64_t>();
  std::vector<size_t> idx(pick.begin(), pick.end());
  EXPECT_ALLCLOSE(train.images().index_select(0, g["fmnist.train.pick"]), g["fmnist.train.images"],
                  0, 0);
  train.set_normalize(0.1307, 0.3081);
  EXPECT_ALLCLOSE(train.get_batch(idx)->data, g["fmnist.train.normalized"], 1e-6, 1e-6);
}

TEST(MnistIdx, ResizedMnistReplicatesChannels) {
  TempDir d;
  ToySet s = toy(5, 28, 28, 4);
  write_set(d, "train", s, false);
  auto m = std::make_shared<MNIST>(d.path.string(), true);
  ResizedMNIST r(m, 12, 3);
  auto b = r.get_batch({4, 1});
  ASSERT_EQ(b->data.sizes(), (Shape{2, 3, 12, 12}));
  Tensor want = resize_bilinear(m->get_batch({4, 1})->data, 12, 12);  // (2,1,12,12)
  for (int64_t c = 0; c < 3; ++c) EXPECT_ALLCLOSE(b->data.narrow(1, c, 1), want, 0, 0);
  EXPECT_EQ(b->target.to_vector<int64_t>(), (std::vector<int64_t>{s.labels[4], s.labels[1]}));
  Example e = r.get(4);
  EXPECT_EQ(e.data.sizes(), (Shape{3, 12, 12}));
  EXPECT_ALLCLOSE(e.data, b->data.select(0, 0), 0, 0);
  ResizedMNIST same(m, 28, 1);
  EXPECT_ALLCLOSE(same.get_batch({2})->data, m->get_batch({2})->data, 0, 0);
}
