// safetensors save/load: round trips, files written by the PyTorch side
// (tests/reference/gen_safetensors.py), byte compatibility, and corrupt files.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gradcheck.h"

using namespace smp;

namespace {

std::string golden(const std::string& name) {
  return std::string(SMP_TEST_GOLDEN_DIR) + "/" + name + ".safetensors";
}

std::string temp_path(const std::string& name) {
  return testing::TempDir() + "smp_safetensors_" + name + ".safetensors";
}

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file from a header string and raw data, with the header length `n` (the real
// one unless overridden).
std::string file_bytes(const std::string& header, const std::string& data, int64_t n = -1) {
  uint64_t len = n < 0 ? header.size() : static_cast<uint64_t>(n);
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + header + data;
}

// Raw little-endian bytes of the logical (row-major) elements.
std::vector<uint8_t> bytes_of(const Tensor& t) {
  Tensor c = t.cpu().contiguous();
  const auto* p = static_cast<const uint8_t*>(c.numel() ? c.data_ptr() : nullptr);
  return std::vector<uint8_t>(p, p + c.nbytes());
}

void expect_same(const Tensor& got, const Tensor& want, const std::string& name) {
  ASSERT_TRUE(got.defined()) << name;
  EXPECT_EQ(got.dtype(), want.dtype()) << name;
  EXPECT_EQ(got.sizes(), want.sizes()) << name;
  EXPECT_TRUE(got.is_cpu()) << name;
  EXPECT_EQ(bytes_of(got), bytes_of(want)) << name;
}

void expect_same(const std::map<std::string, Tensor>& got,
                 const std::map<std::string, Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want) {
    auto it = got.find(name);
    ASSERT_NE(it, got.end()) << "missing " << name;
    expect_same(it->second, t, name);
  }
}

template <class T, class F>
std::vector<T> generate(int64_t n, F f) {
  std::vector<T> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(static_cast<T>(f(i)));
  return v;
}

// The tensors of tests/reference/gen_safetensors.py's reference_tensors(), recomputed.
std::map<std::string, Tensor> reference_tensors() {
  std::map<std::string, Tensor> m;
  m["f32"] = tensor<float>(generate<float>(12, [](int64_t i) { return i * 0.5f - 1.0f; }), {3, 4});
  m["f64"] = tensor<double>(generate<double>(6, [](int64_t i) { return i / 3.0; }));
  m["f16"] =
      tensor<Half>(generate<Half>(8, [](int64_t i) { return Half(i * 0.25f - 1.0f); }), {2, 2, 2});
  m["bf16"] =
      tensor<BFloat16>(generate<BFloat16>(8, [](int64_t i) { return BFloat16((i - 4) * 0.5f); }));
  m["i64"] =
      tensor<int64_t>(generate<int64_t>(6, [](int64_t i) { return (i - 3) * 1000000000000; }));
  m["i32"] = tensor<int32_t>(generate<int32_t>(10, [](int64_t i) { return i - 5; }), {2, 5});
  m["u8"] = tensor<uint8_t>(generate<uint8_t>(6, [](int64_t i) { return 250 + i; }));
  m["bool"] = tensor<bool>(std::vector<bool>{true, false, true});
  m["scalar"] = scalar_tensor(3.5, kFloat32);
  m["empty"] = zeros({0, 3});
  m["layer1.0.conv1.weight"] =
      tensor<float>(generate<float>(24, [](int64_t i) { return i / 8.0f; }), {2, 3, 2, 2});
  return m;
}

const std::map<std::string, std::string> kReferenceMetadata = {{"format", "pt"},
                                                               {"producer", "gen_safetensors.py"}};

// Every failure must be an smp::Error whose message names the file.
void expect_error_naming(const std::string& path, const std::string& what) {
  try {
    load_safetensors(path);
    ADD_FAILURE() << what << ": loading " << path << " did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos)
        << what << ": message does not name the file: " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": threw a non-smp::Error: " << e.what();
  }
}

}  // namespace

TEST(Safetensors, RoundTripsEveryDtypeAndLayout) {
  std::map<std::string, Tensor> m = reference_tensors();
  Tensor base = tensor<float>(generate<float>(12, [](int64_t i) { return i; }), {3, 4});
  m["transposed"] = base.transpose(0, 1);
  m["expanded"] = tensor<int32_t>({7, 8, 9}).expand({2, 3});
  m["f64_0dim"] = scalar_tensor(-0.25, kFloat64);
  m["bool_empty"] = zeros({2, 0}, kBool);
  ASSERT_FALSE(m["transposed"].is_contiguous());
  const std::string path = temp_path("roundtrip");
  save_safetensors(path, m);
  auto loaded = load_safetensors(path);
  expect_same(loaded, m);
  EXPECT_EQ(loaded["transposed"].to_vector<float>(),
            (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_EQ(loaded["scalar"].dim(), 0);
  EXPECT_TRUE(load_safetensors_metadata(path).empty());
}

TEST(Safetensors, LoadedTensorsOutliveTheRestOfTheFile) {
  const std::string path = temp_path("outlive");
  save_safetensors(path, reference_tensors());
  Tensor kept;
  {
    auto loaded = load_safetensors(path);
    kept = loaded.at("f64");
  }
  EXPECT_EQ(kept.to_vector<double>(), reference_tensors().at("f64").to_vector<double>());
  // Writes into one loaded tensor do not leak into another load.
  static_cast<double*>(kept.data_ptr())[0] = 42;
  EXPECT_EQ(load_safetensors(path).at("f64").to_vector<double>()[0], 0.0);
}

TEST(Safetensors, MetadataRoundTrips) {
  const std::map<std::string, std::string> meta = {{"format", "pt"},
                                                   {"quote\"and\\slash", "line\nbreak"},
                                                   {"unicode", "gr\xC3\xBC\xC3\x9F"},
                                                   {"", ""}};
  const std::string path = temp_path("metadata");
  save_safetensors(path, {{"w", zeros({2})}}, meta);
  EXPECT_EQ(load_safetensors_metadata(path), meta);
  EXPECT_EQ(load_safetensors(path).size(), 1u);
}

TEST(Safetensors, OverwritesAnExistingFile) {
  const std::string path = temp_path("overwrite");
  save_safetensors(path, {{"a", zeros({100})}});
  save_safetensors(path, {{"b", ones({1}, kInt64)}});
  auto loaded = load_safetensors(path);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded.at("b").item<int64_t>(), 1);
}

TEST(Safetensors, LoadsFileWrittenByPyTorch) {
  const std::string path = golden("safetensors_reference");
  expect_same(load_safetensors(path), reference_tensors());
  EXPECT_EQ(load_safetensors_metadata(path), kReferenceMetadata);
}

TEST(Safetensors, LoadsUnpaddedUnalignedOtherWriterLayout) {
  const std::string path = golden("safetensors_other_layout");
  expect_same(load_safetensors(path), reference_tensors());
  EXPECT_EQ(load_safetensors_metadata(path), kReferenceMetadata);
}

TEST(Safetensors, SavesBytesIdenticalToPyTorchWriter) {
  const std::string path = temp_path("bytes");
  save_safetensors(path, reference_tensors(), kReferenceMetadata);
  auto ours = read_bytes(path);
  auto theirs = read_bytes(golden("safetensors_reference"));
  ASSERT_FALSE(theirs.empty());
  EXPECT_EQ(ours, theirs);
  uint64_t n = 0;
  std::memcpy(&n, ours.data(), 8);
  EXPECT_EQ(n % 8, 0u);  // data buffer aligned, as safetensors writers do
}

TEST(Safetensors, SavesFromCuda) {
  SMP_SKIP_WITHOUT_CUDA();
  auto m = reference_tensors();
  std::map<std::string, Tensor> on_gpu;
  for (const auto& [k, v] : m) on_gpu[k] = v.cuda();
  on_gpu["t"] =
      tensor<float>(generate<float>(6, [](int64_t i) { return i; }), {2, 3}).cuda().transpose(0, 1);
  m["t"] = on_gpu["t"].cpu();
  const std::string path = temp_path("cuda");
  save_safetensors(path, on_gpu);
  expect_same(load_safetensors(path), m);
}

TEST(Safetensors, SaveRejectsWhatItCannotWrite) {
  EXPECT_THROW(save_safetensors(temp_path("undef"), {{"x", Tensor()}}), Error);
  EXPECT_THROW(save_safetensors(temp_path("meta"), {{"x", empty({2}, Device("meta"))}}), Error);
  EXPECT_THROW(save_safetensors(temp_path("reserved"), {{"__metadata__", zeros({1})}}), Error);
  EXPECT_THROW(
      save_safetensors(testing::TempDir() + "no/such/dir/x.safetensors", {{"x", zeros({1})}}),
      Error);
}

TEST(Safetensors, CorruptFilesAreErrorsNamingTheFile) {
  const std::string ok_header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string ok_data(8, '\0');
  const std::string good = temp_path("corrupt_good");
  write_bytes(good, file_bytes(ok_header, ok_data));
  ASSERT_NO_THROW(load_safetensors(good));  // the cases below differ from this in one way

  expect_error_naming(temp_path("does_not_exist"), "missing file");
  expect_error_naming(testing::TempDir(), "a directory");

  struct Case {
    const char* what;
    std::string bytes;
  };
  const std::string whole = file_bytes(ok_header, ok_data);
  const std::vector<Case> cases = {
      {"empty file", ""},
      {"shorter than 8 bytes", std::string(5, '\x01')},
      {"header length larger than the file", file_bytes(ok_header, ok_data, 1000)},
      {"absurd header length", file_bytes(ok_header, ok_data, int64_t{1} << 40)},
      {"header length near 2^63", file_bytes(ok_header, ok_data, 0x7fffffffffffffff)},
      {"garbage JSON", file_bytes("{\"a\": [1, 2,, }", ok_data)},
      {"binary garbage header", file_bytes(std::string("\xff\xfe\x00\x01", 4), ok_data)},
      {"header not an object", file_bytes("[1,2,3]", ok_data)},
      {"empty header", file_bytes("", ok_data)},
      {"bad dtype",
       file_bytes(R"({"a":{"dtype":"F8","shape":[2],"data_offsets":[0,8]}})", ok_data)},
      {"dtype not a string",
       file_bytes(R"({"a":{"dtype":3,"shape":[2],"data_offsets":[0,8]}})", ok_data)},
      {"missing shape", file_bytes(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", ok_data)},
      {"negative dim",
       file_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", ok_data)},
      {"fractional dim",
       file_bytes(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", ok_data)},
      {"huge shape",
       file_bytes(
           R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
           ok_data)},
      {"shape/offset mismatch",
       file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", ok_data)},
      {"offsets reversed",
       file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", ok_data)},
      {"offsets out of range",
       file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", ok_data)},
      {"negative offset",
       file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", ok_data)},
      {"one offset",
       file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", ok_data)},
      {"overlapping tensors", file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                         R"("b":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}})",
                                         ok_data)},
      {"metadata not strings", file_bytes(R"({"__metadata__":{"k":1}})", "")},
      {"truncated data", whole.substr(0, whole.size() - 3)},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = temp_path("corrupt_" + std::to_string(i));
    write_bytes(path, cases[i].bytes);
    expect_error_naming(path, cases[i].what);
  }

  // A truncated real file, cut at every length.
  const auto ref = read_bytes(golden("safetensors_reference"));
  ASSERT_GT(ref.size(), 64u);
  const std::string cut = temp_path("corrupt_cut");
  for (size_t len = 0; len < ref.size(); len += 7) {
    write_bytes(cut, std::string(ref.data(), len));
    expect_error_naming(cut, "golden cut to " + std::to_string(len) + " bytes");
  }
}

// Sizes a header declares are checked before anything is allocated for them: the header length
// against 100 MiB and the file, each tensor's shape and data_offsets against the data present.
// The reader allocates only the file's real size, so none of these may reach an allocation.
TEST(Safetensors, HostileSizesAreRefusedNamingDeclaredAndPresent) {
  const std::string data(8, '\0');
  struct Case {
    const char* name;
    std::string bytes;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"len_2p40", file_bytes("{}", data, int64_t{1} << 40),
       "declares a 1099511627776-byte header, more than the 104857600 allowed"},
      {"len_50m", file_bytes("{}", data, 50 << 20),
       "declares a 52428800-byte header but the file has only 10 bytes after the length field"},
      {"shape_2p62",
       file_bytes(R"({"a":{"dtype":"F32","shape":[2147483648,2147483648],)"
                  R"("data_offsets":[0,8]}})",
                  data),
       "shape [2147483648,2147483648] is too large"},
      {"shape_2p60_f32",
       file_bytes(R"({"a":{"dtype":"F32","shape":[1073741824,1073741824],)"
                  R"("data_offsets":[0,4611686018427387904]}})",
                  data),
       "data_offsets [0, 4611686018427387904] lie outside the 8-byte data buffer"},
      {"offsets_past_data",
       file_bytes(R"({"a":{"dtype":"U8","shape":[1099511627776],)"
                  R"("data_offsets":[0,1099511627776]}})",
                  data),
       "data_offsets [0, 1099511627776] lie outside the 8-byte data buffer"},
  };
  for (const auto& c : cases) {
    const std::string path = temp_path(std::string("hostile_") + c.name);
    write_bytes(path, c.bytes);
    for (bool metadata_only : {false, true}) {
      std::string msg = "<no error>";
      try {
        if (metadata_only)
          load_safetensors_metadata(path);
        else
          load_safetensors(path);
      } catch (const Error& e) {
        msg = e.what();
      }
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(c.expect), std::string::npos) << c.name << ": " << msg;
    }
  }
}

// A value nested 100,000 deep in the header is quoted in the message cut short; quoting it
// whole recursed once per level and overflowed the stack.
TEST(Safetensors, DeeplyNestedHeaderValueIsAnError) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string path = temp_path("deep");
  write_bytes(path,
              file_bytes(R"({"a":{"dtype":"F32","shape":[)" + deep + R"(],"data_offsets":[0,8]}})",
                         std::string(8, '\0')));
  std::string msg;
  try {
    load_safetensors(path);
  } catch (const Error& e) {
    msg = e.what();
  }
  // Eight levels shown, the rest elided.
  const std::string shown = std::string(8, '[') + "[...]" + std::string(8, ']');
  EXPECT_NE(msg.find("shape entry must be a non-negative integer, got " + shown), std::string::npos)
      << msg.substr(0, 500);
  EXPECT_LT(msg.size(), 1000u);
}

TEST(Safetensors, MetadataOfCorruptFileIsAnError) {
  const std::string path = temp_path("corrupt_meta");
  write_bytes(path, file_bytes(R"({"__metadata__":)", ""));
  EXPECT_THROW(load_safetensors_metadata(path), Error);
  EXPECT_THROW(load_safetensors_metadata(temp_path("missing_meta")), Error);
}

TEST(Safetensors, ByteFlipsNeverCrash) {
  // Every single-byte corruption of the length field and header either loads or is an
  // smp::Error; a flip in the data may load (the values are just different).
  const auto ref = read_bytes(golden("safetensors_reference"));
  uint64_t n = 0;
  std::memcpy(&n, ref.data(), 8);
  const std::string path = temp_path("flip");
  int errors = 0;
  for (size_t pos = 0; pos < 8 + n; ++pos) {
    // A low bit turns digits into other digits, a full flip makes non-ASCII: alternate them
    // (writing files dominates the time here).
    const unsigned char mask = pos % 2 ? 0xff : 0x01;
    std::string bytes(ref.data(), ref.size());
    bytes[pos] = static_cast<char>(bytes[pos] ^ mask);
    write_bytes(path, bytes);
    try {
      load_safetensors(path);
    } catch (const Error& e) {
      ++errors;
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "byte " << pos << " ^ " << int(mask) << ": non-smp::Error " << e.what();
    }
  }
  EXPECT_GT(errors, 0);
}
