// smp::Config: SMP's `modelparallel` parameters, checked key by key, then in combination.
#include <fmt/format.h>
#include <smp/engine/json_excerpt.h>
#include <smp/parallel/config.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>

namespace smp {
namespace {

using nlohmann::json;

// Every message starts with where the text came from, so a user with several sources
// (a file, SM_HP_MP_PARAMETERS, code) knows which one to fix.
[[noreturn]] void fail(const std::string& source, const std::string& msg) {
  throw ConfigError(fmt::format("smp config ({}): {}", source, msg));
}

// A value as the user wrote it: strings keep their quotes, so "2" and 2 read differently.
std::string show(const json& v) { return json_excerpt(v); }

const char* kind_of(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a floating-point number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

// The checks below share one shape of message: 'key' is VALUE but WHAT IS ALLOWED.
struct Reader {
  const std::string& source;

  [[noreturn]] void bad(const std::string& key, const json& v, const std::string& allowed) const {
    fail(source, fmt::format("'{}' is {} but {}", key, show(v), allowed));
  }

  int integer(const std::string& key, const json& v, long long lo, long long hi,
              const std::string& allowed) const {
    // nlohmann keeps 2.0 as a float and true as a boolean; neither is an integer here.
    if (!v.is_number_integer()) bad(key, v, fmt::format("{} ({} was given)", allowed, kind_of(v)));
    // Non-negative numbers arrive as unsigned and may not fit a long long.
    if (v.is_number_unsigned() && v.get<unsigned long long>() > static_cast<unsigned long long>(hi))
      bad(key, v, allowed);
    const long long x = v.get<long long>();
    if (x < lo || x > hi) bad(key, v, allowed);
    return static_cast<int>(x);
  }

  int positive(const std::string& key, const json& v) const {
    return integer(key, v, 1, std::numeric_limits<int>::max(), "it must be an integer >= 1");
  }

  bool boolean(const std::string& key, const json& v) const {
    if (!v.is_boolean())
      bad(key, v, fmt::format("it must be true or false ({} was given)", kind_of(v)));
    return v.get<bool>();
  }

  double number(const std::string& key, const json& v, const std::string& allowed) const {
    if (!v.is_number()) bad(key, v, fmt::format("{} ({} was given)", allowed, kind_of(v)));
    return v.get<double>();
  }

  std::string choice(const std::string& key, const json& v,
                     const std::vector<std::string>& options) const {
    std::string allowed = "it must be one of";
    for (size_t i = 0; i < options.size(); ++i)
      allowed += fmt::format("{}\"{}\"", i == 0 ? " " : ", ", options[i]);
    if (!v.is_string()) bad(key, v, fmt::format("{} ({} was given)", allowed, kind_of(v)));
    const auto s = v.get<std::string>();
    if (std::find(options.begin(), options.end(), s) == options.end()) bad(key, v, allowed);
    return s;
  }
};

bool is_dpt_permutation(const std::string& s) {
  std::string sorted = s;
  std::sort(sorted.begin(), sorted.end());
  return sorted == "DPT";
}

using Setter = std::function<void(Config&, const Reader&, const std::string&, const json&)>;

// One entry per accepted key, in SMP's table order; known_keys() is read from here so the
// list in error messages can never drift from what the parser accepts.
const std::vector<std::pair<std::string, Setter>>& key_table() {
  static const std::
      vector<std::pair<std::string, Setter>>
          table =
              {
                  {"pipeline_parallel_degree",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.pipeline_parallel_degree = r.positive(k, v);
                   }},
                  {"partitions",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.pipeline_parallel_degree = r.positive(k, v);
                   }},
                  {"microbatches", [](Config& c, const Reader& r, const std::string& k,
                                      const json& v) { c.microbatches = r.positive(k, v); }},
                  {"pipeline",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.pipeline = r.choice(k, v, {"interleaved", "simple"});
                   }},
                  {"optimize",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.optimize = r.choice(k, v, {"speed", "memory"});
                   }},
                  {"placement_strategy",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     const std::string allowed =
                         "it must be \"cluster\", \"spread\" or a permutation of the letters D, P, "
                         "T "
                         "(e.g. \"DPT\", \"PTD\")";
                     if (!v.is_string())
                       r.bad(k, v, fmt::format("{} ({} was given)", allowed, kind_of(v)));
                     const auto s = v.get<std::string>();
                     if (s != "cluster" && s != "spread" && !is_dpt_permutation(s))
                       r.bad(k, v, allowed);
                     c.placement_strategy = s;
                   }},
                  {"auto_partition", [](Config& c, const Reader& r, const std::string& k,
                                        const json& v) { c.auto_partition = r.boolean(k, v); }},
                  {"default_partition",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     // The upper bound (< pp) is checked once pp is known, after every key is read.
                     c.default_partition = r.integer(k, v, 0, std::numeric_limits<int>::max(),
                                                     "it must be an integer >= 0");
                   }},
                  {"memory_weight",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     const std::string allowed = "it must be a number between 0 and 1";
                     const double w = r.number(k, v, allowed);
                     if (!(w >= 0.0 && w <= 1.0)) r.bad(k, v, allowed);
                     c.memory_weight = w;
                   }},
                  {"ddp", [](Config& c, const Reader& r, const std::string& k,
                             const json& v) { c.ddp = r.boolean(k, v); }},
                  {"ddp_port",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     // null reads as "not given", so to_json() output parses back to the same
                     // config.
                     if (v.is_null()) return c.ddp_port.reset();
                     c.ddp_port =
                         r.integer(k, v, 1, 65535, "it must be a port number from 1 to 65535");
                   }},
                  {"ddp_dist_backend",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     if (v.is_null()) return c.ddp_dist_backend.reset();
                     c.ddp_dist_backend = r.choice(k, v, {"auto", "nccl"});
                   }},
                  {"active_microbatches",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.active_microbatches = r.positive(k, v);
                   }},
                  {"tensor_parallel_degree",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.tensor_parallel_degree = r.positive(k, v);
                   }},
                  {"prescaled_batch", [](Config& c, const Reader& r, const std::string& k,
                                         const json& v) { c.prescaled_batch = r.boolean(k, v); }},
                  {"fp16", [](Config& c, const Reader& r, const std::string& k,
                              const json& v) { c.fp16 = r.boolean(k, v); }},
                  {"bf16", [](Config& c, const Reader& r, const std::string& k,
                              const json& v) { c.bf16 = r.boolean(k, v); }},
                  {"shard_optimizer_state",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.shard_optimizer_state = r.boolean(k, v);
                   }},
                  {"offload_activations",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.offload_activations = r.boolean(k, v);
                   }},
                  {"activation_loading_horizon",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.activation_loading_horizon = r.positive(k, v);
                   }},
                  {"delayed_parameter_initialization",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     c.delayed_parameter_initialization = r.boolean(k, v);
                   }},
                  {"horovod", [](
                                  Config& c, const Reader& r, const std::string& k,
                                  const json& v) { c.horovod = r.boolean(k, v); }},
                  {"comm_timeout",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     const std::string allowed = "it must be a number of seconds > 0";
                     const double t = r.number(k, v, allowed);
                     if (!(t > 0.0) || !std::isfinite(t)) r.bad(k, v, allowed);
                     c.comm_timeout = t;
                   }},
                  {"trace_dir",
                   [](Config& c, const Reader& r, const std::string& k, const json& v) {
                     if (!v.is_string())
                       r.bad(k, v,
                             fmt::format("it must be a directory name (a string; {} was given)",
                                         kind_of(v)));
                     c.trace_dir = v.get<std::string>();
                   }},
              };
  return table;
}

}  // namespace

const std::vector<std::string>& Config::known_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& [name, set] : key_table()) k.push_back(name);
    return k;
  }();
  return keys;
}

Config Config::from_json(const nlohmann::json& params, const std::string& source) {
  if (!params.is_object())
    fail(source, fmt::format("the parameters must be a JSON object {{\"key\": value, ...}}, "
                             "but {} was given",
                             kind_of(params)));
  const Reader r{source};
  const auto& table = key_table();
  Config c;
  for (const auto& item : params.items()) {
    // Named, not a structured binding: clang before 16 cannot capture one in the lambda.
    const std::string& key = item.key();
    const json& value = item.value();
    auto it =
        std::find_if(table.begin(), table.end(), [&](const auto& e) { return e.first == key; });
    if (it == table.end())
      fail(source, fmt::format("unknown key '{}'; the known keys are: {}", key,
                               fmt::join(known_keys(), ", ")));
    it->second(c, r, key, value);
  }

  // An alias given together with its key would leave one of the two silently ignored.
  if (params.contains("partitions") && params.contains("pipeline_parallel_degree"))
    fail(source,
         fmt::format("'partitions' is {} but it is an alias of 'pipeline_parallel_degree' "
                     "(given as {}); give only one of the two",
                     show(params.at("partitions")), show(params.at("pipeline_parallel_degree"))));
  const int pp = c.pipeline_parallel_degree;
  if (c.default_partition && *c.default_partition >= pp)
    r.bad("default_partition", params.at("default_partition"),
          fmt::format("it must be < pipeline_parallel_degree ({}): partitions are numbered 0..{}",
                      pp, pp - 1));

  // Keys libsmp parses but does not act on: any value but SMP's default would be accepted and
  // then ignored, training something other than what the user asked for. These come before
  // SMP's combination rules, so that a user is not sent to fix a combination (say, add "ddp"
  // to tensor parallelism) only to learn next that the feature itself is missing.
  const auto refuse = [&](const char* key, const std::string& why, const std::string& fix) {
    r.bad(key, params.at(key), fmt::format("{}; {}", why, fix));
  };
  const std::string later = "is not supported yet by libsmp";
  if (c.fp16)
    refuse("fp16", "mixed precision " + later + " (issue 15)", "remove the key or set it to false");
  if (c.bf16)
    refuse("bf16", "mixed precision " + later + " (issue 15)", "remove the key or set it to false");
  if (c.shard_optimizer_state)
    refuse("shard_optimizer_state", "optimizer state sharding " + later + " (issue 15)",
           "remove the key or set it to false");
  if (c.offload_activations)
    refuse("offload_activations", "activation offloading " + later + " (issue 15)",
           "remove the key or set it to false");
  if (c.activation_loading_horizon != Config{}.activation_loading_horizon)
    refuse("activation_loading_horizon",
           "it tunes activation offloading, which " + later + " (issue 15)",
           fmt::format("remove the key or set it to {}", Config{}.activation_loading_horizon));
  if (c.delayed_parameter_initialization)
    refuse("delayed_parameter_initialization",
           "delayed parameter initialization " + later + " (issue 15)",
           "remove the key or set it to false");
  if (c.horovod)
    refuse("horovod",
           "Horovod is not supported by libsmp: SMP uses it for TensorFlow only, and libsmp's "
           "data parallelism is \"ddp\": true",
           "remove the key or set it to false");
  if (c.ddp_port)
    refuse("ddp_port",
           "it is not supported by libsmp: ranks find each other through MPI (mpirun), which "
           "needs no port",
           "remove the key");
  if (c.ddp_dist_backend)
    refuse("ddp_dist_backend",
           "it is not supported by libsmp: each tensor's device picks the backend (MPI for host "
           "tensors, NCCL for CUDA tensors)",
           "remove the key");

  // SMP's combination rules. The fp16/bf16 one binds once issue 15 lets these keys through;
  // SMP's ddp_port/ddp_dist_backend-need-ddp and ddp-with-horovod rules cannot apply to keys
  // that are refused outright.
  if (c.tensor_parallel_degree > 1 && !c.ddp)
    r.bad("tensor_parallel_degree", params.at("tensor_parallel_degree"),
          "tensor parallelism needs \"ddp\": true");
  if (c.fp16 && c.bf16)
    r.bad("bf16", params.at("bf16"), "\"fp16\" is also true; choose one of fp16 and bf16");
  if (!c.auto_partition && pp > 1 && !c.default_partition)
    r.bad("auto_partition", params.at("auto_partition"),
          fmt::format("with pipeline_parallel_degree {} and auto-partitioning off, "
                      "'default_partition' is required (an integer from 0 to {})",
                      pp, pp - 1));
  return c;
}

Config Config::parse(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() carries "line L, column C" and what the parser expected there.
    fail(source, fmt::format("not valid JSON (at byte {}): {}", e.byte, e.what()));
  } catch (const nlohmann::json::exception& e) {
    // A number no double holds (1e309) is out_of_range, not a parse_error.
    fail(source, fmt::format("not valid JSON: {}", e.what()));
  }
  return from_json(j, source);
}

void Config::validate_world(int world_size) const {
  const int pp = pipeline_parallel_degree, tp = tensor_parallel_degree;
  if (world_size < 1)
    throw ConfigError(
        fmt::format("smp config: world size is {}; it must be at least 1", world_size));
  const long long mp = static_cast<long long>(pp) * tp;
  if (world_size % mp != 0)
    throw ConfigError(fmt::format(
        "smp config: world size {} is not divisible by pipeline_parallel_degree {} x "
        "tensor_parallel_degree {} = {}; the number of processes must be a multiple of {}",
        world_size, pp, tp, mp, mp));
  // Without "ddp" SMP reduces gradients its own way; libsmp has only the DDP way, and running
  // it under "ddp": false would let a config mean something else here than under SMP.
  const long long rdp = world_size / mp;
  if (rdp > 1 && !ddp)
    throw ConfigError(fmt::format(
        "smp config: world size {} over pipeline_parallel_degree {} x tensor_parallel_degree "
        "{} leaves {} data-parallel replicas, and data parallelism over {} replicas needs "
        "\"ddp\": true (libsmp does not run SMP's non-DDP data parallelism); set \"ddp\": "
        "true, or run {} process(es)",
        world_size, pp, tp, rdp, rdp, mp));
}

std::string Config::placement() const {
  if (placement_strategy == "cluster") return "DPT";
  if (placement_strategy == "spread") return "TPD";
  return placement_strategy;
}

double Config::memory_weight_value() const {
  if (memory_weight) return *memory_weight;
  return optimize == "memory" ? 0.8 : 0.2;
}

int Config::active_microbatches_value() const {
  return active_microbatches.value_or(pipeline_parallel_degree + 2);
}

nlohmann::json Config::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  j["pipeline_parallel_degree"] = pipeline_parallel_degree;
  j["microbatches"] = microbatches;
  j["pipeline"] = pipeline;
  j["optimize"] = optimize;
  j["placement_strategy"] = placement_strategy;
  j["auto_partition"] = auto_partition;
  j["default_partition"] = default_partition_value();
  j["memory_weight"] = memory_weight_value();
  j["ddp"] = ddp;
  // No default exists for these two; null parses back as "not given".
  j["ddp_port"] = ddp_port ? nlohmann::json(*ddp_port) : nlohmann::json(nullptr);
  j["ddp_dist_backend"] =
      ddp_dist_backend ? nlohmann::json(*ddp_dist_backend) : nlohmann::json(nullptr);
  j["active_microbatches"] = active_microbatches_value();
  j["tensor_parallel_degree"] = tensor_parallel_degree;
  j["prescaled_batch"] = prescaled_batch;
  j["fp16"] = fp16;
  j["bf16"] = bf16;
  j["shard_optimizer_state"] = shard_optimizer_state;
  j["offload_activations"] = offload_activations;
  j["activation_loading_horizon"] = activation_loading_horizon;
  j["delayed_parameter_initialization"] = delayed_parameter_initialization;
  j["horovod"] = horovod;
  j["comm_timeout"] = comm_timeout;
  j["trace_dir"] = trace_dir;
  return j;
}

}  // namespace smp
