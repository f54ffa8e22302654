// safetensors reader and writer: u64 little-endian header length N, N bytes of JSON header
// (name -> {dtype, shape, data_offsets} plus "__metadata__"), then the raw data buffer.
// Offsets are relative to the start of the data buffer. Every check on a file that is read
// names the file, since a corrupt checkpoint is a user-facing error, never a crash.
#include <smp/engine/json_excerpt.h>
#include <smp/engine/serialize.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace smp {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swaps");

using json = nlohmann::json;

// A header larger than this is not a real checkpoint, it is a corrupt length field: refuse
// it before allocating.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr const char* kMetadataKey = "__metadata__";

bool dtype_from_safetensors_name(const std::string& name, Dtype* out) {
  for (int i = 0; i < kNumDtypes; ++i) {
    auto t = static_cast<Dtype>(i);
    if (name == safetensors_name(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

// The file's bytes: the whole file for loading (one read, shared by the tensors that view
// it), or only the length field and header for metadata.
struct FileBytes {
  std::shared_ptr<char[]> bytes;
  uint64_t size = 0;       // bytes held
  uint64_t file_size = 0;  // bytes in the file
};

FileBytes read_file(const std::string& path, bool header_only) {
  std::error_code ec;
  const bool regular = std::filesystem::is_regular_file(path, ec);
  SMP_CHECK(regular, "load_safetensors: '{}' is not a readable file{}", path,
            ec ? ": " + ec.message() : "");
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  SMP_CHECK(f != nullptr, "load_safetensors: cannot open '{}': {}", path, std::strerror(errno));
  SMP_CHECK(std::fseek(f.get(), 0, SEEK_END) == 0, "load_safetensors: cannot seek in '{}'", path);
  long end = std::ftell(f.get());
  SMP_CHECK(end >= 0, "load_safetensors: cannot tell the size of '{}'", path);
  std::rewind(f.get());
  FileBytes out;
  out.file_size = out.size = static_cast<uint64_t>(end);
  if (header_only && out.size >= 8) {
    uint64_t n = 0;
    SMP_CHECK(std::fread(&n, 1, 8, f.get()) == 8, "load_safetensors: cannot read '{}'", path);
    std::rewind(f.get());
    if (n <= kMaxHeaderBytes && n <= out.size - 8) out.size = 8 + n;  // else parse() reports it
  }
  // 64-byte aligned, so tensors whose offsets are aligned can view the buffer in place.
  try {
    out.bytes = std::shared_ptr<char[]>(new (std::align_val_t{64}) char[out.size + 1], [](char* p) {
      ::operator delete[](p, std::align_val_t{64});
    });
  } catch (const std::bad_alloc&) {
    SMP_ERROR("load_safetensors: cannot allocate {} bytes to read '{}'", out.size, path);
  }
  size_t got = std::fread(out.bytes.get(), 1, out.size, f.get());
  SMP_CHECK(got == out.size, "load_safetensors: read {} of {} bytes of '{}'", got, out.size, path);
  return out;
}

struct Entry {
  std::string name;
  Dtype dtype;
  Shape shape;
  uint64_t begin, end;
};

struct Parsed {
  FileBytes file;
  uint64_t data_start = 0;  // file offset of the data buffer
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
};

uint64_t get_u64(const json& v, const std::string& path, const std::string& what) {
  SMP_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
            "load_safetensors: '{}': {} must be a non-negative integer, got {}", path, what,
            json_excerpt(v));
  return v.get<uint64_t>();
}

Parsed parse(const std::string& path, bool header_only = false) {
  Parsed p;
  p.file = read_file(path, header_only);
  const uint64_t size = p.file.file_size;
  SMP_CHECK(size >= 8, "load_safetensors: '{}' is {} bytes, shorter than the 8-byte header length",
            path, size);
  uint64_t n = 0;
  std::memcpy(&n, p.file.bytes.get(), 8);
  SMP_CHECK(n <= kMaxHeaderBytes,
            "load_safetensors: '{}' declares a {}-byte header, more than the "
            "{} allowed (corrupt file?)",
            path, n, kMaxHeaderBytes);
  SMP_CHECK(n <= size - 8,
            "load_safetensors: '{}' declares a {}-byte header but the file has only "
            "{} bytes after the length field (truncated?)",
            path, n, size - 8);
  p.data_start = 8 + n;
  const uint64_t data_size = size - p.data_start;

  json header;
  try {
    const char* h = p.file.bytes.get() + 8;
    header = json::parse(h, h + n);
  } catch (const json::exception& e) {
    SMP_ERROR("load_safetensors: '{}': the header is not valid JSON: {}", path, e.what());
  }
  SMP_CHECK(header.is_object(), "load_safetensors: '{}': the header must be a JSON object, got {}",
            path, header.type_name());

  for (const auto& [name, info] : header.items()) {
    if (name == kMetadataKey) {
      SMP_CHECK(info.is_object(), "load_safetensors: '{}': {} must be an object of strings", path,
                kMetadataKey);
      for (const auto& [k, v] : info.items()) {
        SMP_CHECK(v.is_string(),
                  "load_safetensors: '{}': {} value for '{}' must be a string, got {}", path,
                  kMetadataKey, k, json_excerpt(v));
        p.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    SMP_CHECK(info.is_object() && info.contains("dtype") && info.contains("shape") &&
                  info.contains("data_offsets"),
              "load_safetensors: '{}': tensor '{}' needs dtype, shape and data_offsets, got {}",
              path, name, json_excerpt(info));
    Entry e;
    e.name = name;
    const json& dt = info["dtype"];
    SMP_CHECK(dt.is_string() && dtype_from_safetensors_name(dt.get<std::string>(), &e.dtype),
              "load_safetensors: '{}': tensor '{}' has unsupported dtype {} (expected one of F32, "
              "F64, F16, BF16, I64, I32, U8, BOOL)",
              path, name, json_excerpt(dt));
    const json& shape = info["shape"];
    SMP_CHECK(shape.is_array(),
              "load_safetensors: '{}': tensor '{}' shape must be an array, got {}", path, name,
              json_excerpt(shape));
    // Bound numel so numel * element_size cannot overflow.
    uint64_t numel = 1;
    constexpr uint64_t kMaxNumel = uint64_t{1} << 60;
    for (const auto& d : shape) {
      uint64_t dim = get_u64(d, path, "tensor '" + name + "' shape entry");
      SMP_CHECK(dim <= kMaxNumel && (dim == 0 || numel <= kMaxNumel / dim),
                "load_safetensors: '{}': tensor '{}' shape {} is too large", path, name,
                json_excerpt(shape));
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const json& off = info["data_offsets"];
    SMP_CHECK(off.is_array() && off.size() == 2,
              "load_safetensors: '{}': tensor '{}' data_offsets must be [begin, end], got {}", path,
              name, json_excerpt(off));
    e.begin = get_u64(off[0], path, "tensor '" + name + "' data_offsets");
    e.end = get_u64(off[1], path, "tensor '" + name + "' data_offsets");
    SMP_CHECK(e.begin <= e.end,
              "load_safetensors: '{}': tensor '{}' data_offsets [{}, {}] end before "
              "they begin",
              path, name, e.begin, e.end);
    const uint64_t expected = numel * element_size(e.dtype);
    SMP_CHECK(
        e.end - e.begin == expected,
        "load_safetensors: '{}': tensor '{}' of dtype {} and shape {} needs {} bytes, but its "
        "data_offsets [{}, {}] span {}",
        path, name, safetensors_name(e.dtype), json_excerpt(shape), expected, e.begin, e.end,
        e.end - e.begin);
    SMP_CHECK(
        e.end <= data_size,
        "load_safetensors: '{}': tensor '{}' data_offsets [{}, {}] lie outside the {}-byte data "
        "buffer (truncated file?)",
        path, name, e.begin, e.end, data_size);
    p.entries.push_back(std::move(e));
  }

  std::vector<const Entry*> by_offset;
  for (const auto& e : p.entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    SMP_CHECK(by_offset[i]->begin >= by_offset[i - 1]->end,
              "load_safetensors: '{}': tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", path,
              by_offset[i - 1]->name, by_offset[i - 1]->begin, by_offset[i - 1]->end,
              by_offset[i]->name, by_offset[i]->begin, by_offset[i]->end);
  return p;
}

Tensor make_tensor(const Parsed& p, const Entry& e) {
  const TensorOptions opts = TensorOptions().dtype(e.dtype).device(Device(kCPU));
  if (e.end == e.begin) return empty(e.shape, opts);
  char* data = p.file.bytes.get() + p.data_start + e.begin;
  if (e.dtype == kBool) {
    // Any byte other than 0/1 read as bool is undefined behaviour: normalise into a copy.
    Tensor t = empty(e.shape, opts);
    auto* dst = static_cast<uint8_t*>(t.data_ptr());
    const auto* src = reinterpret_cast<const uint8_t*>(data);
    for (uint64_t i = 0; i < e.end - e.begin; ++i) dst[i] = src[i] != 0;
    return t;
  }
  if (reinterpret_cast<uintptr_t>(data) % element_size(e.dtype) != 0)
    return from_data(data, e.shape, opts);  // misaligned in the file: copy
  // View the shared file buffer; the last tensor alive frees it.
  std::shared_ptr<char[]> keep = p.file.bytes;
  return from_blob(data, e.shape, opts, [keep](void*) mutable { keep.reset(); });
}

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Insertion-ordered, laid out as PyTorch-side writers (tests/reference/golden_common.py)
  // lay it out, so the same tensors give byte-identical files.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  // std::map iterates in sorted-name order, the order safetensors lays the data out in.
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    SMP_CHECK(name != kMetadataKey, "save_safetensors: '{}': '{}' is reserved for metadata", path,
              name);
    SMP_CHECK(t.defined(), "save_safetensors: '{}': tensor '{}' is undefined", path, name);
    SMP_CHECK(!t.device().is_meta(),
              "save_safetensors: '{}': tensor '{}' is on meta and has no "
              "data to save",
              path, name);
    Tensor h = t.detach().cpu().contiguous();
    const uint64_t nbytes = h.nbytes();
    header[name] = {{"dtype", safetensors_name(h.dtype())},
                    {"shape", h.sizes()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    host.push_back(std::move(h));
  }
  std::string raw;
  try {
    raw = header.dump();
  } catch (const nlohmann::json::exception& e) {
    SMP_ERROR("save_safetensors: '{}': a name or metadata entry is not valid UTF-8: {}", path,
              e.what());
  }
  raw.append((8 - raw.size() % 8) % 8, ' ');  // keeps the data buffer 8-byte aligned

  // Write beside the target and rename, so a crash never leaves a half-written checkpoint.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    SMP_CHECK(out.good(), "save_safetensors: cannot open '{}' for writing: {}", tmp,
              std::strerror(errno));
    const uint64_t n = raw.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(raw.data(), static_cast<std::streamsize>(raw.size()));
    for (const auto& h : host)
      if (h.numel() > 0)
        out.write(static_cast<const char*>(h.data_ptr()), static_cast<std::streamsize>(h.nbytes()));
    out.flush();
    if (!out.good()) {
      std::remove(tmp.c_str());
      SMP_ERROR("save_safetensors: writing '{}' failed: {}", tmp, std::strerror(errno));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    SMP_ERROR("save_safetensors: cannot rename '{}' to '{}': {}", tmp, path, std::strerror(err));
  }
}

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  Parsed p = parse(path);
  std::map<std::string, Tensor> out;
  for (const auto& e : p.entries) out.emplace(e.name, make_tensor(p, e));
  return out;
}

std::map<std::string, std::string> load_safetensors_metadata(const std::string& path) {
  return parse(path, /*header_only=*/true).metadata;
}

}  // namespace smp
