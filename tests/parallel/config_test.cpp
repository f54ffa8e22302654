// smp::Config: every SMP key honoured or refused, bad values refused with a message naming them.
#include <gtest/gtest.h>
#include <smp/parallel/config.h>
#include <smp/parallel/runtime.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

namespace {

using nlohmann::json;
using smp::Config;
using smp::ConfigError;

// The message of the ConfigError that parsing `text` raises ("" and a test failure if none).
std::string error_of(const std::string& text, const std::string& source = "test.json") {
  try {
    Config::parse(text, source);
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a ConfigError: " << e.what();
    return "";
  }
  ADD_FAILURE() << "accepted: " << text;
  return "";
}

void expect_rejected(const std::string& text, const std::vector<std::string>& parts) {
  SCOPED_TRACE(text);
  const std::string msg = error_of(text);
  EXPECT_NE(msg.find("smp config (test.json): "), std::string::npos) << msg;
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nlacks: " << p;
}

TEST(Config, DefaultsFollowSmp) {
  const Config c = Config::parse("{}");
  EXPECT_EQ(c.pipeline_parallel_degree, 1);
  EXPECT_EQ(c.microbatches, 1);
  EXPECT_EQ(c.pipeline, "interleaved");
  EXPECT_EQ(c.optimize, "speed");
  EXPECT_EQ(c.placement(), "DPT");
  EXPECT_TRUE(c.auto_partition);
  EXPECT_FALSE(c.default_partition.has_value());
  EXPECT_EQ(c.default_partition_value(), 0);
  EXPECT_DOUBLE_EQ(c.memory_weight_value(), 0.2);
  EXPECT_FALSE(c.ddp);
  EXPECT_FALSE(c.ddp_port.has_value());
  EXPECT_FALSE(c.ddp_dist_backend.has_value());
  EXPECT_EQ(c.active_microbatches_value(), 3);
  EXPECT_EQ(c.tensor_parallel_degree, 1);
  EXPECT_FALSE(c.prescaled_batch || c.fp16 || c.bf16 || c.shard_optimizer_state ||
               c.offload_activations || c.delayed_parameter_initialization || c.horovod);
  EXPECT_EQ(c.activation_loading_horizon, 4);
  EXPECT_GT(c.comm_timeout, 0);
  EXPECT_TRUE(c.trace_dir.empty());
}

TEST(Config, DerivedDefaults) {
  EXPECT_DOUBLE_EQ(Config::parse(R"({"optimize": "memory"})").memory_weight_value(), 0.8);
  EXPECT_DOUBLE_EQ(Config::parse(R"({"optimize": "speed"})").memory_weight_value(), 0.2);
  EXPECT_DOUBLE_EQ(
      Config::parse(R"({"optimize": "memory", "memory_weight": 0.5})").memory_weight_value(), 0.5);
  for (int pp : {1, 2, 3, 7}) {
    const Config c = Config::from_json({{"pipeline_parallel_degree", pp}});
    EXPECT_EQ(c.active_microbatches_value(), pp + 2);
  }
  EXPECT_EQ(
      Config::parse(R"({"partitions": 4, "active_microbatches": 2})").active_microbatches_value(),
      2);
  EXPECT_EQ(Config::parse(R"({"placement_strategy": "spread"})").placement(), "TPD");
  EXPECT_EQ(Config::parse(R"({"placement_strategy": "cluster"})").placement(), "DPT");
  EXPECT_EQ(Config::parse(R"({"placement_strategy": "PTD"})").placement(), "PTD");
}

// The keys libsmp acts on, each set to a value other than its default and read back.
const char* const kHonoured[] = {"pipeline_parallel_degree",
                                 "partitions",
                                 "microbatches",
                                 "pipeline",
                                 "optimize",
                                 "placement_strategy",
                                 "auto_partition",
                                 "default_partition",
                                 "memory_weight",
                                 "ddp",
                                 "active_microbatches",
                                 "comm_timeout",
                                 "trace_dir",
                                 "tensor_parallel_degree",
                                 "prescaled_batch"};

// The keys libsmp parses but does not act on yet: each with a value other than SMP's default,
// how the message shows it, and the words that say why it is refused.
struct Refused {
  const char* key;
  const char* json;  // the parameters, "ddp": true included so no combination rule fires
  const char* shown;
  std::vector<std::string> why;
};
const std::vector<Refused>& refused() {
  static const std::vector<Refused> r = {
      {"fp16",
       R"({"ddp": true, "fp16": true})",
       "true",
       {"mixed precision is not supported yet by libsmp (issue 15)", "set it to false"}},
      {"bf16",
       R"({"ddp": true, "bf16": true})",
       "true",
       {"mixed precision is not supported yet by libsmp (issue 15)", "set it to false"}},
      {"shard_optimizer_state",
       R"({"ddp": true, "shard_optimizer_state": true})",
       "true",
       {"optimizer state sharding is not supported yet by libsmp (issue 15)"}},
      {"offload_activations",
       R"({"ddp": true, "offload_activations": true})",
       "true",
       {"activation offloading is not supported yet by libsmp (issue 15)"}},
      {"activation_loading_horizon",
       R"({"ddp": true, "activation_loading_horizon": 2})",
       "2",
       {"activation offloading, which is not supported yet by libsmp (issue 15)", "set it to 4"}},
      {"delayed_parameter_initialization",
       R"({"ddp": true, "delayed_parameter_initialization": true})",
       "true",
       {"delayed parameter initialization is not supported yet by libsmp (issue 15)"}},
      {"horovod",
       R"({"horovod": true})",
       "true",
       {"Horovod is not supported by libsmp", "TensorFlow only", "\"ddp\": true"}},
      {"ddp_port",
       R"({"ddp": true, "ddp_port": 29500})",
       "29500",
       {"not supported by libsmp", "through MPI", "remove the key"}},
      {"ddp_dist_backend",
       R"({"ddp": true, "ddp_dist_backend": "nccl"})",
       "\"nccl\"",
       {"not supported by libsmp", "MPI for host tensors", "NCCL for CUDA tensors"}},
  };
  return r;
}

TEST(Config, HonouredKeysReadBack) {
  const Config c = Config::parse(R"({
    "pipeline_parallel_degree": 2, "microbatches": 8, "pipeline": "simple",
    "optimize": "memory", "placement_strategy": "TDP", "auto_partition": false,
    "default_partition": 1, "memory_weight": 0.3, "ddp": true, "active_microbatches": 5,
    "comm_timeout": 12.5, "trace_dir": "/tmp/traces"})");
  EXPECT_EQ(c.pipeline_parallel_degree, 2);
  EXPECT_EQ(c.microbatches, 8);
  EXPECT_EQ(c.pipeline, "simple");
  EXPECT_EQ(c.optimize, "memory");
  EXPECT_EQ(c.placement_strategy, "TDP");
  EXPECT_EQ(c.placement(), "TDP");
  EXPECT_FALSE(c.auto_partition);
  EXPECT_EQ(c.default_partition, 1);
  EXPECT_DOUBLE_EQ(c.memory_weight_value(), 0.3);
  EXPECT_TRUE(c.ddp);
  EXPECT_EQ(c.active_microbatches_value(), 5);
  EXPECT_DOUBLE_EQ(c.comm_timeout, 12.5);
  EXPECT_EQ(c.trace_dir, "/tmp/traces");
  EXPECT_EQ(Config::parse(R"({"partitions": 3})").pipeline_parallel_degree, 3);

  // Values at the edges of what is allowed.
  EXPECT_DOUBLE_EQ(*Config::parse(R"({"memory_weight": 0})").memory_weight, 0.0);
  EXPECT_DOUBLE_EQ(*Config::parse(R"({"memory_weight": 1})").memory_weight, 1.0);
  EXPECT_DOUBLE_EQ(Config::parse(R"({"comm_timeout": 3})").comm_timeout, 3.0);
  EXPECT_EQ(Config::parse(R"({"partitions": 4, "default_partition": 3})").default_partition, 3);
  // auto_partition false needs default_partition only when there is more than one partition.
  EXPECT_FALSE(Config::parse(R"({"auto_partition": false})").auto_partition);
  for (const auto& p : {"cluster", "spread", "DPT", "DTP", "PDT", "PTD", "TDP", "TPD"})
    EXPECT_EQ(Config::from_json({{"placement_strategy", p}}).placement_strategy, p);
}

TEST(Config, RefusesKeysNotImplementedYet) {
  for (const auto& k : refused()) {
    SCOPED_TRACE(k.key);
    const std::string msg = error_of(k.json);
    EXPECT_NE(
        msg.find(std::string("smp config (test.json): '") + k.key + "' is " + k.shown + " but "),
        std::string::npos)
        << msg;
    EXPECT_NE(msg.find("not supported"), std::string::npos) << msg;
    for (const auto& w : k.why)
      EXPECT_NE(msg.find(w), std::string::npos) << msg << "\nlacks: " << w;
  }
}

// A new key must be either honoured (and read back above) or refused: none may be accepted and
// then ignored.
TEST(Config, EveryKeyIsHonouredOrRefused) {
  std::vector<std::string> classified(std::begin(kHonoured), std::end(kHonoured));
  for (const auto& k : refused()) classified.emplace_back(k.key);
  std::vector<std::string> known = Config::known_keys();
  std::sort(known.begin(), known.end());
  std::sort(classified.begin(), classified.end());
  EXPECT_EQ(classified, known);
}

// SMP configs often spell out the defaults; those mean "off" and must be accepted.
TEST(Config, AcceptsDefaultsSpelledOut) {
  const Config c = Config::parse(R"({
    "pipeline_parallel_degree": 1, "microbatches": 1, "pipeline": "interleaved",
    "optimize": "speed", "placement_strategy": "cluster", "auto_partition": true,
    "default_partition": 0, "memory_weight": 0.2, "ddp": false, "ddp_port": null,
    "ddp_dist_backend": null, "active_microbatches": 3, "tensor_parallel_degree": 1,
    "prescaled_batch": false, "fp16": false, "bf16": false, "shard_optimizer_state": false,
    "offload_activations": false, "activation_loading_horizon": 4,
    "delayed_parameter_initialization": false, "horovod": false})");
  EXPECT_EQ(c.to_json(), Config().to_json());
  // With pipeline and data parallelism on, the off switches still read as off.
  EXPECT_NO_THROW(Config::parse(R"({"partitions": 2, "ddp": true, "tensor_parallel_degree": 1,
                                    "fp16": false, "bf16": false, "horovod": false,
                                    "activation_loading_horizon": 4})"));
}

// The feature itself is missing, so that is what the message says, not the combination rule
// SMP would report first (which would send the user to fix something that cannot help).
TEST(Config, RefusalComesBeforeSmpsCombinationRules) {
  // Tensor parallelism exists: SMP's rule that it needs ddp is what binds, and both its keys
  // are accepted with ddp on.
  expect_rejected(R"({"tensor_parallel_degree": 2})",
                  {"'tensor_parallel_degree' is 2", "needs \"ddp\": true"});
  const Config tp = Config::parse(R"({"ddp": true, "tensor_parallel_degree": 2,
                                      "prescaled_batch": true})");
  EXPECT_EQ(tp.tensor_parallel_degree, 2);
  EXPECT_TRUE(tp.prescaled_batch);
  expect_rejected(R"({"ddp": true, "horovod": true})", {"'horovod' is true", "not supported"});
  expect_rejected(R"({"fp16": true, "bf16": true})", {"'fp16' is true", "not supported yet"});
  expect_rejected(R"({"ddp_port": 1234})", {"'ddp_port' is 1234", "not supported"});
  // "auto" too: SMP's auto may pick a backend libsmp does not have.
  expect_rejected(R"({"ddp": true, "ddp_dist_backend": "auto"})",
                  {"'ddp_dist_backend' is \"auto\"", "not supported"});
}

// A Config built in code has not been through from_json; smp::init(Config) must refuse it all
// the same, before MPI starts.
TEST(Config, InitRefusesACodeBuiltConfig) {
  Config c;
  c.fp16 = true;
  try {
    smp::init(c);
    smp::finalize();
    ADD_FAILURE() << "smp::init accepted fp16";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "smp config (smp::init(Config)): 'fp16' is true but mixed precision is not "
                 "supported yet by libsmp (issue 15); remove the key or set it to false");
  }
  EXPECT_FALSE(smp::is_initialized());
}

TEST(Config, PartitionsIsAnAlias) {
  EXPECT_EQ(Config::parse(R"({"partitions": 3})").pipeline_parallel_degree, 3);
  expect_rejected(R"({"partitions": 2, "pipeline_parallel_degree": 2})",
                  {"'partitions'", "alias", "'pipeline_parallel_degree'"});
  expect_rejected(R"({"partitions": 0})", {"'partitions' is 0", ">= 1"});
  // The bound on default_partition uses the aliased degree.
  expect_rejected(R"({"partitions": 2, "default_partition": 2})",
                  {"'default_partition' is 2", "< pipeline_parallel_degree (2)"});
}

TEST(Config, TheDocumentedMessage) {
  try {
    Config::parse(R"({"shard_optimizer_state": true})", "SM_HP_MP_PARAMETERS");
    FAIL() << "accepted shard_optimizer_state";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "smp config (SM_HP_MP_PARAMETERS): 'shard_optimizer_state' is true but optimizer "
                 "state sharding is not supported yet by libsmp (issue 15); remove the key or set "
                 "it to false");
  }
}

TEST(Config, RejectsBadIntegers) {
  for (const char* key : {"pipeline_parallel_degree", "partitions", "microbatches",
                          "active_microbatches", "activation_loading_horizon"}) {
    const std::string k = key;
    for (const char* v : {"0", "-3"})
      expect_rejected("{\"" + k + "\": " + v + "}", {"'" + k + "' is " + v, "integer >= 1"});
    expect_rejected("{\"" + k + "\": 2.5}", {"'" + k + "' is 2.5", "floating-point"});
    expect_rejected("{\"" + k + "\": 2.0}", {"'" + k + "' is 2.0", "floating-point"});
    expect_rejected("{\"" + k + "\": true}", {"'" + k + "' is true", "boolean"});
    expect_rejected("{\"" + k + "\": \"2\"}", {"'" + k + "' is \"2\"", "string"});
    expect_rejected("{\"" + k + "\": null}", {"'" + k + "' is null"});
    expect_rejected("{\"" + k + "\": 99999999999}", {"'" + k + "' is 99999999999"});
  }
  // tensor_parallel_degree with ddp on, so only the value is wrong.
  expect_rejected(R"({"ddp": true, "tensor_parallel_degree": 0})",
                  {"'tensor_parallel_degree' is 0", ">= 1"});
  expect_rejected(R"({"ddp": true, "tensor_parallel_degree": 1.5})",
                  {"'tensor_parallel_degree' is 1.5"});
  expect_rejected(R"({"default_partition": -1})", {"'default_partition' is -1", ">= 0"});
  expect_rejected(R"({"default_partition": 1})",
                  {"'default_partition' is 1", "< pipeline_parallel_degree (1)"});
  expect_rejected(R"({"default_partition": 0.5})", {"'default_partition' is 0.5"});
  for (const char* v : {"0", "-1", "65536", "80.5", "\"80\"", "true"})
    expect_rejected(std::string(R"({"ddp": true, "ddp_port": )") + v + "}",
                    {std::string("'ddp_port' is ") + v, "1 to 65535"});
}

TEST(Config, RejectsBadChoices) {
  expect_rejected(R"({"pipeline": "gpipe"})",
                  {"'pipeline' is \"gpipe\"", "\"interleaved\"", "\"simple\""});
  expect_rejected(R"({"pipeline": 1})", {"'pipeline' is 1", "\"interleaved\""});
  expect_rejected(R"({"optimize": "fast"})", {"'optimize' is \"fast\"", "\"speed\"", "\"memory\""});
  expect_rejected(R"({"optimize": null})", {"'optimize' is null"});
  for (const char* v : {"\"dpt\"", "\"DPP\"", "\"DPTD\"", "\"DP\"", "\"\"", "\"Cluster\"", "3"})
    expect_rejected(
        std::string(R"({"placement_strategy": )") + v + "}",
        {std::string("'placement_strategy' is ") + v, "\"cluster\"", "\"spread\"", "permutation"});
  expect_rejected(R"({"ddp": true, "ddp_dist_backend": "mpi"})",
                  {"'ddp_dist_backend' is \"mpi\"", "\"auto\"", "\"nccl\""});
  expect_rejected(R"({"ddp": true, "ddp_dist_backend": 1})", {"'ddp_dist_backend' is 1"});
}

TEST(Config, RejectsBadBooleans) {
  for (const char* key :
       {"auto_partition", "ddp", "prescaled_batch", "fp16", "bf16", "shard_optimizer_state",
        "offload_activations", "delayed_parameter_initialization", "horovod"}) {
    const std::string k = key;
    for (const char* v : {"1", "0", "\"true\"", "null"})
      expect_rejected("{\"" + k + "\": " + v + "}",
                      {"'" + k + "' is " + std::string(v), "true or false"});
  }
}

TEST(Config, RejectsBadNumbers) {
  for (const char* v : {"1.5", "-0.1", "\"0.5\"", "true"})
    expect_rejected(std::string(R"({"memory_weight": )") + v + "}",
                    {std::string("'memory_weight' is ") + v, "between 0 and 1"});
  for (const char* v : {"0", "-5", "\"10\"", "false"})
    expect_rejected(std::string(R"({"comm_timeout": )") + v + "}",
                    {std::string("'comm_timeout' is ") + v, "seconds > 0"});
  for (const char* v : {"5", "true", "[\"a\"]"})
    expect_rejected(std::string(R"({"trace_dir": )") + v + "}",
                    {std::string("'trace_dir' is ") + v, "string"});
}

TEST(Config, RejectsSmpsForbiddenCombinations) {
  expect_rejected(R"({"auto_partition": false, "pipeline_parallel_degree": 2})",
                  {"'auto_partition' is false", "'default_partition'", "required",
                   "pipeline_parallel_degree 2"});
  // The same keys are fine once the rule is met.
  EXPECT_NO_THROW(Config::parse(R"({"auto_partition": false, "partitions": 2,
                                    "default_partition": 0})"));
}

TEST(Config, UnknownKeyListsTheKnownOnes) {
  const std::string msg = error_of(R"({"microbatches": 2, "pipeline_parallel": 2})");
  EXPECT_NE(msg.find("unknown key 'pipeline_parallel'"), std::string::npos) << msg;
  for (const auto& k : Config::known_keys())
    EXPECT_NE(msg.find(k), std::string::npos) << msg << "\nlacks: " << k;
}

TEST(Config, KnownKeysAreSmpsTablePlusLibsmps) {
  const std::vector<std::string> expected = {"pipeline_parallel_degree",
                                             "partitions",
                                             "microbatches",
                                             "pipeline",
                                             "optimize",
                                             "placement_strategy",
                                             "auto_partition",
                                             "default_partition",
                                             "memory_weight",
                                             "ddp",
                                             "ddp_port",
                                             "ddp_dist_backend",
                                             "active_microbatches",
                                             "tensor_parallel_degree",
                                             "prescaled_batch",
                                             "fp16",
                                             "bf16",
                                             "shard_optimizer_state",
                                             "offload_activations",
                                             "activation_loading_horizon",
                                             "delayed_parameter_initialization",
                                             "horovod",
                                             "comm_timeout",
                                             "trace_dir"};
  EXPECT_EQ(Config::known_keys(), expected);
}

TEST(Config, RejectsNonObjectsAndBadSyntax) {
  for (const char* text : {"[1, 2]", "3", "\"pp\"", "null"}) expect_rejected(text, {"JSON object"});
  const std::string msg = error_of("{\n  \"microbatches\": 2,\n  \"ddp\": \n}", "params.json");
  EXPECT_NE(msg.find("smp config (params.json): not valid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("line 4"), std::string::npos) << msg;
  expect_rejected("{\"microbatches\": 2", {"not valid JSON"});
  expect_rejected("", {"not valid JSON"});
}

TEST(Config, ToJsonHasEveryKeyWithItsEffectiveValue) {
  const Config c = Config::parse(
      R"({"partitions": 2, "optimize": "memory", "ddp": true, "placement_strategy": "spread",
          "microbatches": 4})");
  const json j = c.to_json();
  for (const auto& k : Config::known_keys()) {
    if (k == "partitions") {
      EXPECT_FALSE(j.contains(k)) << "to_json gives SMP names, not aliases";
      continue;
    }
    EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(j.size(), Config::known_keys().size() - 1);
  EXPECT_EQ(j["pipeline_parallel_degree"], 2);
  EXPECT_EQ(j["microbatches"], 4);
  EXPECT_EQ(j["tensor_parallel_degree"], 1);
  EXPECT_EQ(j["ddp"], true);
  EXPECT_EQ(j["placement_strategy"], "spread");
  EXPECT_DOUBLE_EQ(j["memory_weight"].get<double>(), 0.8);
  EXPECT_EQ(j["active_microbatches"], 4);
  EXPECT_EQ(j["default_partition"], 0);
  EXPECT_TRUE(j["ddp_port"].is_null());
  EXPECT_TRUE(j["ddp_dist_backend"].is_null());
  // What to_json writes parses back to the same effective configuration.
  const Config back = Config::from_json(j, "to_json");
  EXPECT_EQ(back.to_json(), j);
}

TEST(Config, ValidateWorld) {
  const Config c = Config::parse(R"({"partitions": 2, "ddp": true})");
  EXPECT_NO_THROW(c.validate_world(2));
  EXPECT_NO_THROW(c.validate_world(4));
  EXPECT_NO_THROW(c.validate_world(12));
  for (int world : {1, 3, 5}) {
    try {
      c.validate_world(world);
      ADD_FAILURE() << "accepted world " << world;
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("world size " + std::to_string(world) + " is not divisible"),
                std::string::npos)
          << msg;
      EXPECT_NE(msg.find("pipeline_parallel_degree 2"), std::string::npos) << msg;
      EXPECT_NE(msg.find("tensor_parallel_degree 1"), std::string::npos) << msg;
    }
  }
  EXPECT_THROW(c.validate_world(0), ConfigError);
  EXPECT_NO_THROW(Config().validate_world(1));
}

// SMP's default is "ddp": false, and libsmp runs data parallelism only as DDP: more than one
// replica without it is refused rather than run as if "ddp" were true.
TEST(Config, DataParallelismNeedsDdp) {
  for (const char* text : {"{}", R"({"ddp": false})"}) {
    SCOPED_TRACE(text);
    const Config c = Config::parse(text);
    EXPECT_NO_THROW(c.validate_world(1));
    for (int world : {2, 7}) {
      try {
        c.validate_world(world);
        ADD_FAILURE() << "accepted world " << world;
      } catch (const ConfigError& e) {
        const std::string msg = e.what();
        const std::string n = std::to_string(world);
        EXPECT_NE(msg.find("data parallelism over " + n + " replicas needs \"ddp\": true"),
                  std::string::npos)
            << msg;
        EXPECT_NE(msg.find("world size " + n), std::string::npos) << msg;
      }
    }
  }
  // Pipeline stages are not replicas: pp 2 on 2 processes is one replica, pp 2 on 4 two.
  const Config pp2 = Config::parse(R"({"partitions": 2})");
  EXPECT_NO_THROW(pp2.validate_world(2));
  EXPECT_THROW(pp2.validate_world(4), ConfigError);
  EXPECT_NO_THROW(Config::parse(R"({"partitions": 2, "ddp": true})").validate_world(4));
  EXPECT_NO_THROW(Config::parse(R"({"ddp": true})").validate_world(7));
}

TEST(Config, ErrorsAreSmpErrors) {
  EXPECT_THROW(Config::parse(R"({"microbatches": 0})"), smp::Error);
  EXPECT_THROW(Config::parse("{"), smp::Error);
}

}  // namespace

// A value nested 100,000 deep (200 KB of brackets) is quoted in the message cut short; quoting
// it whole recursed once per level and overflowed the stack.
TEST(Config, DeeplyNestedValueIsQuotedShort) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string msg = error_of("{\"microbatches\": " + deep + "}");
  // Eight levels shown, the rest elided.
  const std::string shown = std::string(8, '[') + "[...]" + std::string(8, ']');
  EXPECT_NE(msg.find("'microbatches' is " + shown + " but"), std::string::npos) << msg;
  EXPECT_LT(msg.size(), 1000u);
}

// A number no double holds is nlohmann's out_of_range, not a parse_error; it escaped parse()
// as a foreign exception (found by fuzz_config).
TEST(Config, NumberBeyondDoubleIsAConfigError) {
  const std::string msg = error_of(R"({"microbatches": 1e309})");
  EXPECT_NE(msg.find("smp config (test.json): not valid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("number overflow parsing '1e309'"), std::string::npos) << msg;
}
