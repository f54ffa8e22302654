// Checkpoints: per-rank safetensors files, one JSON manifest, atomic renames, CRC-32 per
// file, and resharding on load (docs/checkpoints.md).
#include <fcntl.h>
#include <fmt/ranges.h>
#include <smp/engine/autograd.h>
#include <smp/engine/random.h>
#include <smp/engine/serialize.h>
#include <smp/parallel/checkpoint.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/tensor_parallel.h>
#include <smp/version.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <vector>

#include "comm/backend.h"

namespace smp {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "libsmp-checkpoint";
constexpr int kVersion = 1;

std::string where() {
  return is_initialized() ? fmt::format("rank {}", rank()) : std::string("rank 0");
}

[[noreturn]] void fail(const std::string& msg) {
  throw CheckpointError(fmt::format("checkpoint ({}): {}", where(), msg));
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) fail(fmt::format("cannot open '{}' to flush it", path));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail(fmt::format("cannot flush '{}' to disk (fsync failed)", path));
}

/// Writes with `write(tmp)`, flushes, and renames onto `path`: readers see the old file or the
/// whole new one, never a part.
template <class W>
void write_atomically(const std::string& path, W&& write) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  try {
    write(tmp);
    fsync_path(tmp, false);
  } catch (const CheckpointError&) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    fail(fmt::format("cannot write '{}': {}", path, e.what()));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail(fmt::format("cannot rename '{}' to '{}': {}", tmp, path, ec.message()));
  const fs::path parent = fs::path(path).parent_path();
  fsync_path(parent.empty() ? "." : parent.string(), true);
}

void write_text(const std::string& path, const std::string& text) {
  write_atomically(path, [&](const std::string& tmp) {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.flush();
    if (!f) throw std::runtime_error("write failed (disk full?)");
  });
}

void write_tensors(const std::string& path, const std::map<std::string, Tensor>& t) {
  write_atomically(path, [&](const std::string& tmp) { save_safetensors(tmp, t); });
}

/// CRC-32 (zlib's, as Python's zlib.crc32) and size of a file.
std::pair<uint32_t, uint64_t> checksum(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(fmt::format("'{}' is missing", path));
  std::vector<char> buf(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  uint64_t n = 0;
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = f.gcount();
    if (got <= 0) break;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(got));
    n += static_cast<uint64_t>(got);
  }
  return {static_cast<uint32_t>(crc), n};
}

std::string hex(const std::vector<uint8_t>& bytes) {
  static const char* d = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    s.push_back(d[b >> 4]);
    s.push_back(d[b & 15]);
  }
  return s;
}

std::vector<uint8_t> unhex(const std::string& s) {
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (s.size() % 2 != 0) fail("a generator state in the manifest is malformed");
  std::vector<uint8_t> out(s.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = v(s[2 * i]), lo = v(s[2 * i + 1]);
    if (hi < 0 || lo < 0) fail("a generator state in the manifest is malformed");
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return out;
}

bool tp_on() { return is_initialized() && tp_size() > 1; }

/// Layout of every sharded tensor of the model by state_dict key (empty without TP).
std::map<std::string, nn::ShardSpec> model_shards(DistributedModel& model) {
  return tp_on() ? detail::shard_layouts(model.module()) : std::map<std::string, nn::ShardSpec>{};
}

/// The shard layout of an optimizer key "state.<param>.<buffer>" (null when replicated).
const nn::ShardSpec* optimizer_shard(const std::string& key,
                                     const std::map<std::string, nn::ShardSpec>& shards) {
  if (key.rfind("state.", 0) != 0) return nullptr;
  const size_t last = key.rfind('.');
  if (key.compare(last + 1, std::string::npos, "step") == 0) return nullptr;  // a count
  auto it = shards.find(key.substr(6, last - 6));
  return it == shards.end() ? nullptr : &it->second;
}

/// Manifest entries of the tensors of one file: dtype, shape, global shape, the box this file
/// holds (offset per axis; with `blocks` > 1 the shard is `blocks` boxes, one per block) and
/// the shard it is.
nlohmann::json describe(const std::map<std::string, Tensor>& tensors,
                        const std::function<const nn::ShardSpec*(const std::string&)>& spec_of) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [k, t] : tensors) {
    nlohmann::json e;
    e["dtype"] = dtype_name(t.dtype());
    e["shape"] = t.sizes();
    const nn::ShardSpec* s = spec_of(k);
    if (s != nullptr && s->dim >= t.dim()) s = nullptr;
    std::vector<int64_t> offset(static_cast<size_t>(t.dim()), 0);
    Shape global = t.sizes();
    if (s != nullptr) {
      global = detail::full_shape(t.sizes(), *s, tp_size());
      offset[static_cast<size_t>(s->dim)] = tp_rank() * t.size(s->dim) / s->blocks;
      e["shard"] = {
          {"dim", s->dim}, {"blocks", s->blocks}, {"parts", tp_size()}, {"index", tp_rank()}};
    }
    e["global_shape"] = global;
    e["offset"] = offset;
    out[k] = e;
  }
  return out;
}

/// Generator states of this rank (CPU, and each CUDA device this process used).
nlohmann::json generator_states() {
  nlohmann::json g;
  g["cpu"] = hex(default_generator(Device(kCPU)).get_state());
  return g;
}

void restore_generators(const nlohmann::json& g) {
  if (g.contains("cpu")) default_generator(Device(kCPU)).set_state(unhex(g.at("cpu")));
}

}  // namespace

// ---- smp::save / smp::load ----------------------------------------------------------------
namespace {
std::string partial_name(const std::string& path) {
  const int pp = is_initialized() ? pp_rank() : 0, tp = is_initialized() ? tp_rank() : 0;
  return fmt::format("{}_{}_{}", path, pp, tp);
}
}  // namespace

void save(const std::map<std::string, Tensor>& obj, const std::string& path, bool partial) {
  if (partial) {
    write_tensors(partial_name(path), obj);
    return;
  }
  if (!is_initialized() || rank() == 0) write_tensors(path, obj);
}

std::map<std::string, Tensor> load(const std::string& path, bool partial) {
  const std::string file = partial ? partial_name(path) : path;
  if (!fs::exists(file)) fail(fmt::format("'{}' is missing", file));
  return load_safetensors(file);
}

// ---- save_checkpoint ----------------------------------------------------------------------
void save_checkpoint(const std::string& path, const std::string& tag, bool partial,
                     DistributedModel& model, DistributedOptimizer* optimizer,
                     const nlohmann::json& user_content, int num_kept_partial_checkpoints) {
  SMP_CHECK(!tag.empty() && tag.find('/') == std::string::npos && tag != "newest",
            "save_checkpoint: tag '{}' must be a non-empty file name other than 'newest'", tag);
  NoGradGuard no_grad;
  detail::CallScope scope("smp::save_checkpoint");
  const std::string dir = (fs::path(path) / tag).string();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(fmt::format("cannot create '{}': {}", dir, ec.message()));
  const auto shards = model_shards(model);
  auto model_spec = [&](const std::string& k) -> const nn::ShardSpec* {
    auto it = shards.find(k);
    return it == shards.end() ? nullptr : &it->second;
  };
  auto opt_spec = [&](const std::string& k) { return optimizer_shard(k, shards); };

  // This rank's files: what it holds (partial, RDP index 0 only: replicas hold the same), or
  // the gathered whole (full, rank 0). state_dict() is collective, so every rank calls it.
  nlohmann::json files = nlohmann::json::object();
  auto add_file = [&](const std::string& name, const std::map<std::string, Tensor>& t,
                      const std::function<const nn::ShardSpec*(const std::string&)>& spec) {
    const std::string file = (fs::path(dir) / name).string();
    write_tensors(file, t);
    const auto [crc, bytes] = checksum(file);
    files[name] = {{"crc32", crc},
                   {"bytes", bytes},
                   {"rank", is_initialized() ? rank() : 0},
                   {"tensors", describe(t, spec)}};
  };
  const int pp = is_initialized() ? pp_rank() : 0, tp = is_initialized() ? tp_rank() : 0;
  if (partial) {
    if (!is_initialized() || rdp_rank() == 0) {
      add_file(fmt::format("model_{}_{}.safetensors", pp, tp), model.local_state_dict(),
               model_spec);
      if (optimizer != nullptr)
        add_file(fmt::format("optimizer_{}_{}.safetensors", pp, tp), optimizer->local_state_dict(),
                 opt_spec);
    }
  } else {
    const auto msd = model.state_dict();
    const auto osd = optimizer != nullptr ? optimizer->state_dict() : optim::StateDict{};
    auto none = [](const std::string&) -> const nn::ShardSpec* { return nullptr; };
    if (!is_initialized() || rank() == 0) {
      add_file("model.safetensors", msd, none);
      if (optimizer != nullptr) add_file("optimizer.safetensors", osd, none);
    }
  }
  // Fault injection for the tests (tests/checkpoint): SMP_CHECKPOINT_KILL=<tag>:<rank> kills
  // that rank, with its files of that tag written and nothing else, as a crash mid-save would.
  if (const char* kill = std::getenv("SMP_CHECKPOINT_KILL");
      kill != nullptr && is_initialized() && std::string(kill) == fmt::format("{}:{}", tag, rank()))
    std::raise(SIGKILL);
  nlohmann::json mine = {{"files", files}, {"rng", generator_states()}};
  // The allgather is also the point where every rank has written its files.
  const std::vector<nlohmann::json> all =
      is_initialized() ? allgather(mine, CommGroup::WORLD) : std::vector<nlohmann::json>{mine};
  if (!is_initialized() || rank() == 0) {
    nlohmann::json m;
    m["format"] = kFormat;
    m["version"] = kVersion;
    m["libsmp"] = SMP_VERSION;
    m["tag"] = tag;
    m["partial"] = partial;
    m["world"] = all.size();
    if (is_initialized()) {
      m["config"] = config().to_json();
      m["layout"] = {{"pp", pp_size()},
                     {"tp", tp_size()},
                     {"rdp", rdp_size()},
                     {"placement", config().placement()}};
    }
    m["partition"] = model.partition_assignments();
    // Parameter order (each shared tensor once), what PyTorch's optimizer state indexes by:
    // tools/smp_checkpoint_to_torch.py converts the optimizer state with it.
    nlohmann::json order = nlohmann::json::array();
    for (const auto& [n, p] : model.named_parameters()) order.push_back(n);
    m["parameters"] = order;
    m["files"] = nlohmann::json::object();
    m["rng"] = nlohmann::json::array();
    for (const auto& r : all) {
      m["files"].update(r.at("files"));
      m["rng"].push_back(r.at("rng"));
    }
    m["user_content"] = user_content;
    write_text((fs::path(dir) / "manifest.json").string(), m.dump(1));
  }
  if (is_initialized()) barrier();
  if (!is_initialized() || rank() == 0) {
    write_text((fs::path(path) / "newest").string(), tag + "\n");
    // The tags in save order, for num_kept_partial_checkpoints.
    const std::string list = (fs::path(path) / "checkpoints.json").string();
    nlohmann::json tags = nlohmann::json::array();
    if (fs::exists(list)) {
      std::ifstream f(list);
      tags = nlohmann::json::parse(f, nullptr, false);
      if (!tags.is_array()) tags = nlohmann::json::array();
    }
    tags.erase(std::remove(tags.begin(), tags.end(), nlohmann::json(tag)), tags.end());
    tags.push_back(tag);
    while (num_kept_partial_checkpoints > 0 &&
           static_cast<int>(tags.size()) > num_kept_partial_checkpoints) {
      fs::remove_all(fs::path(path) / tags.front().get<std::string>(), ec);
      tags.erase(tags.begin());
    }
    write_text(list, tags.dump());
  }
  if (is_initialized()) barrier();
}

// ---- resume_from_checkpoint ---------------------------------------------------------------
namespace {

/// The files of one checkpoint, read on first use and checked against the manifest's CRC-32.
class Reader {
 public:
  Reader(std::string dir, nlohmann::json manifest)
      : dir_(std::move(dir)), manifest_(std::move(manifest)) {}

  const std::map<std::string, Tensor>& file(const std::string& name) {
    auto it = cache_.find(name);
    if (it != cache_.end()) return it->second;
    const std::string path = (fs::path(dir_) / name).string();
    const auto& entry = manifest_.at("files").at(name);
    if (!fs::exists(path))
      fail(fmt::format("'{}' (written by rank {}) is missing", path, entry.at("rank").get<int>()));
    const auto [crc, bytes] = checksum(path);
    if (bytes != entry.at("bytes").get<uint64_t>())
      fail(fmt::format("'{}' has {} bytes but the manifest says {} (truncated?)", path, bytes,
                       entry.at("bytes").get<uint64_t>()));
    if (crc != entry.at("crc32").get<uint32_t>())
      fail(fmt::format("'{}' is corrupt: its CRC-32 is {:08x}, the manifest says {:08x}", path, crc,
                       entry.at("crc32").get<uint32_t>()));
    try {
      return cache_[name] = load_safetensors(path);
    } catch (const std::exception& e) {
      fail(fmt::format("'{}' cannot be read: {}", path, e.what()));
    }
  }

  /// Every tensor named `key` in the files whose name starts with `prefix`, put together into
  /// its global shape; nullopt when no file has it.
  std::optional<Tensor> assemble(const std::string& prefix, const std::string& key) {
    std::optional<Tensor> full;
    for (const auto& [name, entry] : manifest_.at("files").items()) {
      if (name.rfind(prefix, 0) != 0) continue;
      const auto& tensors = entry.at("tensors");
      if (!tensors.contains(key)) continue;
      const auto& d = tensors.at(key);
      const Tensor& piece = file(name).at(key);
      const Shape global = d.at("global_shape").get<Shape>();
      if (!full) full = zeros(global, TensorOptions(piece.dtype()));
      if (full->sizes() != global)
        fail(fmt::format("'{}' has a different global shape in '{}'", key, name));
      if (!d.contains("shard")) {
        full->copy_(piece);
        continue;
      }
      const auto& s = d.at("shard");
      const int64_t dim = s.at("dim"), blocks = s.at("blocks"), index = s.at("index");
      const int64_t block = global[static_cast<size_t>(dim)] / blocks,
                    part = block / s.at("parts").get<int64_t>();
      const int64_t local_block = piece.size(dim) / blocks;
      for (int64_t b = 0; b < blocks; ++b)
        full->narrow(dim, b * block + index * part, part)
            .copy_(piece.narrow(dim, b * local_block, local_block));
    }
    return full;
  }

  std::vector<std::string> keys(const std::string& prefix) const {
    std::set<std::string> out;
    for (const auto& [name, entry] : manifest_.at("files").items())
      if (name.rfind(prefix, 0) == 0)
        for (const auto& [k, v] : entry.at("tensors").items()) out.insert(k);
    return {out.begin(), out.end()};
  }

 private:
  std::string dir_;
  nlohmann::json manifest_;
  std::map<std::string, std::map<std::string, Tensor>> cache_;
};

}  // namespace

nlohmann::json resume_from_checkpoint(const std::string& path, DistributedModel& model,
                                      DistributedOptimizer* optimizer, const std::string& tag_in,
                                      bool strict, bool load_optimizer) {
  NoGradGuard no_grad;
  std::string tag = tag_in;
  if (tag.empty()) {
    const std::string newest = (fs::path(path) / "newest").string();
    std::ifstream f(newest);
    if (!f) fail(fmt::format("'{}' is missing: no checkpoint was completed in '{}'", newest, path));
    std::getline(f, tag);
    if (tag.empty()) fail(fmt::format("'{}' is empty", newest));
  }
  const std::string dir = (fs::path(path) / tag).string();
  const std::string mpath = (fs::path(dir) / "manifest.json").string();
  std::ifstream mf(mpath);
  if (!mf) fail(fmt::format("'{}' is missing", mpath));
  nlohmann::json manifest = nlohmann::json::parse(mf, nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object() || manifest.value("format", "") != kFormat)
    fail(fmt::format("'{}' is not a libsmp checkpoint manifest", mpath));
  if (manifest.value("version", 0) != kVersion)
    fail(fmt::format("'{}' is format version {}; this libsmp reads version {}", mpath,
                     manifest.value("version", 0), kVersion));
  Reader reader(dir, manifest);

  // The model: every key put together whole, then loaded (which cuts this rank's shard and
  // skips other stages' tensors).
  nn::StateDict want = model.module().state_dict();
  nn::StateDict sd;
  std::vector<std::string> missing;
  for (const auto& entry : want) {
    const std::string& k = entry.first;
    auto t = reader.assemble("model", k);
    if (!t) {
      missing.push_back(k);
      continue;
    }
    sd[k] = *t;
  }
  if (strict && !missing.empty())
    fail(
        fmt::format("'{}' has no tensor for {} of this model's keys (first: '{}'); the "
                    "checkpoint is of another model",
                    dir, missing.size(), missing.front()));
  for (const std::string& k : reader.keys("model"))
    if (strict && !want.count(k))
      fail(
          fmt::format("'{}' holds '{}', which this model does not have (the checkpoint is of "
                      "another model)",
                      dir, k));
  try {
    model.load_state_dict(sd, false);
  } catch (const std::exception& e) {
    fail(fmt::format("'{}' does not fit this model: {}", dir, e.what()));
  }

  if (optimizer != nullptr && load_optimizer) {
    optim::StateDict osd;
    for (const std::string& k : reader.keys("optimizer")) osd[k] = *reader.assemble("optimizer", k);
    try {
      if (!osd.empty()) optimizer->load_state_dict(osd);
    } catch (const std::exception& e) {
      fail(fmt::format("the optimizer state in '{}' does not fit this optimizer: {}", dir,
                       e.what()));
    }
  }

  // Same world: each rank continues its own random streams. Another layout: every rank takes
  // rank 0's, as every rank of a job starts from one seed (libsmp keeps the ranks' generators
  // where one process's would be).
  const auto& rng = manifest.at("rng");
  const int world = is_initialized() ? size() : 1;
  const int me = is_initialized() ? rank() : 0;
  restore_generators(rng.at(static_cast<int>(rng.size()) == world ? me : 0));
  return manifest.value("user_content", nlohmann::json::object());
}

}  // namespace smp
