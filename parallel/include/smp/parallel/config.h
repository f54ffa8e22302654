// smp::Config: SMP's `modelparallel` parameters, parsed and validated the way SMP does.
#pragma once

#include <smp/engine/error.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace smp {

/// A configuration SMP would refuse. Raised identically on every rank (parsing is a pure
/// function of the text), so a program may report it once and exit without aborting the job.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& msg) : Error(msg) {}
};

/// The `modelparallel` parameters with SMP's key names (../shared/SMP_REFERENCE.md) plus
/// libsmp's own `comm_timeout` and `trace_dir`. Parsing is a pure function of the JSON text, so
/// every rank that reads the same text accepts or rejects it with the same message before any
/// collective. Keys libsmp does not act on yet are parsed, but only their SMP default is
/// accepted (docs/distributed.md lists which): a feature the user asked for is never ignored.
struct Config {
  int pipeline_parallel_degree = 1;  ///< alias `partitions`
  int microbatches = 1;
  std::string pipeline = "interleaved";  ///< "interleaved" | "simple"
  std::string optimize = "speed";        ///< "speed" | "memory"
  /// As given: "cluster", "spread" or a permutation of "DPT". placement() normalises it.
  std::string placement_strategy = "cluster";
  bool auto_partition = true;
  /// Unset means "not given" (SMP requires it when auto_partition is false and pp > 1).
  std::optional<int> default_partition;
  /// Unset means the default for `optimize` (0.2 speed, 0.8 memory); see memory_weight_value().
  std::optional<double> memory_weight;
  bool ddp = false;
  /// ddp_port and ddp_dist_backend have no default; JSON null reads as "not given", the only
  /// accepted value: ranks meet through MPI and the backend follows each tensor's device.
  std::optional<int> ddp_port;
  std::optional<std::string> ddp_dist_backend;  ///< "auto" | "nccl"
  /// Unset means pp + 2; see active_microbatches_value(). It may exceed `microbatches` (the
  /// default does when microbatches < pp + 2): no schedule can have more in flight anyway.
  std::optional<int> active_microbatches;
  /// Only the defaults below are accepted until tensor parallelism (issue 13), mixed precision
  /// and the memory features (issue 15) exist; horovod is TensorFlow-only and never will be.
  int tensor_parallel_degree = 1;
  bool prescaled_batch = false;
  bool fp16 = false;
  bool bf16 = false;
  bool shard_optimizer_state = false;
  bool offload_activations = false;
  int activation_loading_horizon = 4;
  bool delayed_parameter_initialization = false;
  bool horovod = false;
  // libsmp's own keys.
  /// Seconds any blocking communication may wait before it fails naming group, op and peer.
  double comm_timeout = 600;
  /// When non-empty, each rank writes a Chrome trace of its steps into this directory.
  std::string trace_dir;

  /// Parses and validates one JSON object of parameters. Throws ConfigError naming the key,
  /// the value and what is allowed; an unknown key lists the known ones. `source` names where
  /// the text came from (a file, SM_HP_MP_PARAMETERS) in messages.
  static Config from_json(const nlohmann::json& params, const std::string& source = "config");
  /// from_json of `text`; a syntax error is reported with `source` and the parser's position.
  static Config parse(const std::string& text, const std::string& source = "config");
  /// All accepted keys (SMP names and aliases, then libsmp's), in table order.
  static const std::vector<std::string>& known_keys();

  /// Throws ConfigError unless `world_size` processes can hold pp × tp × rdp for a whole rdp ≥ 1
  /// (the message names the world size, pp and tp), or when rdp > 1 without `ddp`: libsmp's
  /// data parallelism is SMP's DDP mode only.
  void validate_world(int world_size) const;

  /// Canonical placement: a permutation of "DPT" ("cluster" → "DPT", "spread" → "TPD").
  std::string placement() const;
  double memory_weight_value() const;
  int active_microbatches_value() const;
  int default_partition_value() const { return default_partition.value_or(0); }

  /// Every key with its effective value (SMP names, no aliases; null for an unset ddp_port or
  /// ddp_dist_backend). from_json(to_json()) accepts it and gives the same effective values.
  nlohmann::json to_json() const;
};

}  // namespace smp
