// Pieces of a training program shared by mnist and resnet18: optimizer choice, weight
// files, metrics, main. Header-only (inline) so each program stays a single translation unit.
#pragma once

#include <smp/optim/adadelta.h>
#include <smp/optim/adam.h>
#include <smp/optim/lr_scheduler.h>
#include <smp/optim/sgd.h>
#include <smp/smp.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli.h"

namespace smp_examples {

/// The learning rate a program uses when --lr is not given: the PyTorch MNIST example's 1.0
/// for Adadelta, otherwise the usual starting points (SGD 0.01, Adam/AdamW 1e-3).
inline double default_lr(const std::string& optimizer) {
  if (optimizer == "adadelta") return 1.0;
  if (optimizer == "sgd") return 0.01;
  return 1e-3;
}

/// Builds one of the optimizers --optimizer names. weight_decay < 0 means "the optimizer's
/// own default" (0, or AdamW's 0.01).
inline std::unique_ptr<smp::optim::Optimizer> make_optimizer(const std::string& name,
                                                             std::vector<smp::Tensor> params,
                                                             double lr, double momentum,
                                                             double weight_decay) {
  namespace o = smp::optim;
  if (name == "sgd")
    return std::make_unique<o::SGD>(
        params, o::SGDOptions(lr).momentum(momentum).weight_decay(std::max(0.0, weight_decay)));
  if (name == "adam")
    return std::make_unique<o::Adam>(params,
                                     o::AdamOptions(lr).weight_decay(std::max(0.0, weight_decay)));
  if (name == "adamw") {
    o::AdamWOptions opts(lr);
    if (weight_decay >= 0) opts.weight_decay(weight_decay);
    return std::make_unique<o::AdamW>(params, opts);
  }
  if (name == "adadelta")
    return std::make_unique<o::Adadelta>(
        params, o::AdadeltaOptions(lr).weight_decay(std::max(0.0, weight_decay)));
  throw UsageError("--optimizer: unknown optimizer '" + name + "'");
}

/// Loads weights saved by PyTorch (state_dict names) into `model`; every key must match.
inline void load_weights(smp::nn::Module& model, const std::string& path) {
  model.load_state_dict(smp::load_safetensors(path), /*strict=*/true);
}

/// Writes the final weights under their PyTorch names.
inline void save_weights(const smp::nn::Module& model, const std::string& path) {
  smp::save_safetensors(path, model.state_dict());
}

/// What the programs report in --metrics (the required keys and a few more).
struct RunMetrics {
  int64_t steps = 0, samples = 0, epochs = 0, batch_size = 0, threads = 0;
  std::string device, optimizer;
  double train_seconds = 0, samples_per_second = 0, final_loss = 0;
  std::optional<double> test_loss, test_accuracy;  // null in the JSON when not evaluated

  nlohmann::json to_json(const std::string& program) const {
    auto opt = [](const std::optional<double>& v) {
      return v ? nlohmann::json(*v) : nlohmann::json();
    };
    return {{"program", program},
            {"steps", steps},
            {"samples", samples},
            {"epochs", epochs},
            {"batch_size", batch_size},
            {"threads", threads},
            {"device", device},
            {"optimizer", optimizer},
            {"train_seconds", train_seconds},
            {"samples_per_second", samples_per_second},
            {"final_loss", final_loss},
            {"test_loss", opt(test_loss)},
            {"test_accuracy", opt(test_accuracy)}};
  }
};

/// Writes `metrics` as pretty JSON; an unwritable path is an error.
inline void write_metrics(const std::string& path, const nlohmann::json& metrics) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write metrics file '" + path + "'");
  f << metrics.dump(2) << "\n";
  if (!f) throw std::runtime_error("error writing metrics file '" + path + "'");
}

/// Memory per rank, for --metrics: local_parameter_bytes (the bytes of the parameters this
/// rank really holds: a tied weight once, other pipeline partitions' meta shells not at all)
/// and peak_rss_mb (getrusage's peak resident set), each a list indexed by global rank.
/// Gathered over WORLD, so every rank calls it.
inline nlohmann::json rank_memory_metrics(const smp::DistributedModel& model) {
  int64_t bytes = 0;
  for (const smp::Tensor& p : model.parameters())
    if (!p.is_meta()) bytes += static_cast<int64_t>(p.nbytes());
  const auto all = smp::allgather(nlohmann::json{{"bytes", bytes}, {"rss", peak_rss_mb()}});
  nlohmann::json out = {{"local_parameter_bytes", nlohmann::json::array()},
                        {"peak_rss_mb", nlohmann::json::array()}};
  for (const nlohmann::json& r : all) {
    out["local_parameter_bytes"].push_back(r["bytes"]);
    out["peak_rss_mb"].push_back(r["rss"]);
  }
  return out;
}

/// Adds each of `values` over the data-parallel group (each rank holds its shard's sums).
inline std::vector<double> dp_sum(const std::vector<double>& values) {
  if (smp::dp_size() == 1) return values;
  smp::Tensor t =
      smp::from_data(values.data(), {static_cast<int64_t>(values.size())}, smp::kFloat64);
  smp::comm(smp::CommGroup::DP_GROUP).allreduce(t)->wait();
  return t.to_vector<double>();
}

/// The data-parallel group's mean of `v` (each rank's loss is its shard's).
inline double dp_mean(double v) { return dp_sum({v})[0] / static_cast<double>(smp::dp_size()); }

/// Builds the model with `make()` and marks it for tensor parallelism as --tensor-parallelism
/// says: "all" builds it inside an smp::tensor_parallelism scope (SMP's example's
/// `with smp.tensor_parallelism():`), "none" marks nothing, and NAME[,NAME...] calls
/// smp::set_tensor_parallelism on the modules of those dotted names ("fc1",
/// "transformer.h.0"). The marks only act when tensor_parallel_degree > 1, at DistributedModel.
template <class M, class Make>
std::shared_ptr<M> build_model(const std::string& spec, Make make) {
  if (spec == "all") {
    smp::tensor_parallelism scope;
    return make();
  }
  std::shared_ptr<M> net = make();
  if (spec == "none") return net;
  const auto modules = net->named_modules();
  size_t start = 0;
  while (start <= spec.size()) {
    const size_t comma = std::min(spec.find(',', start), spec.size());
    const std::string name = spec.substr(start, comma - start);
    start = comma + 1;
    auto it = std::find_if(modules.begin(), modules.end(),
                           [&](const auto& m) { return !name.empty() && m.first == name; });
    if (it == modules.end()) {
      std::string known;
      for (const auto& [n, m] : modules)
        if (!n.empty() && n.find('.') == std::string::npos)
          known += (known.empty() ? "" : ", ") + n;
      throw UsageError("--tensor-parallelism: the model has no module named '" + name +
                       "' (give all, none, or dotted module names such as " + known + ")");
    }
    smp::set_tensor_parallelism(*it->second, true);
  }
  return net;
}

/// Writes the full model (gathered from every pipeline partition, so every rank calls this)
/// from rank 0.
inline void save_model(const smp::DistributedModel& model, const std::string& path) {
  auto sd = model.state_dict();
  if (smp::rank() == 0) smp::save_safetensors(path, sd);
}

/// Refuses a batch size that smp::step cannot split into the configured microbatches, before
/// any data loads: otherwise every batch would fail or be dropped. A ConfigError, because every
/// rank fails the same way: each exits and rank 0 says why, naming the flag to change.
inline void check_splits(const char* flag, int64_t batch) {
  const int mb = smp::config().microbatches;
  if (batch % mb != 0)
    throw smp::ConfigError(fmt::format(
        "{} {} does not split into the {} microbatches of the smp config (\"microbatches\": {}); "
        "smp::step needs a batch size divisible by {}",
        flag, batch, mb, mb, mb));
}

/// Whether a last, short batch of `tail` samples (0: none) splits into the configured
/// microbatches; one that does not is left out, like drop_last.
inline bool tail_splits(int64_t tail) { return tail % smp::config().microbatches == 0; }

/// Number of threads to report: --threads if given, else the engine's default
/// (OMP_NUM_THREADS, else the cores divided among this host's ranks).
inline int64_t apply_threads(int64_t threads) {
  if (threads > 0) smp::set_num_threads(static_cast<int>(threads));
  return smp::get_num_threads();
}

/// A program's main: smp::init (which takes --smp-config FILE out of argv), the flags, then
/// `run`. A usage error is the same on every rank (same argv): each exits with status 2 and
/// rank 0 prints it with the usage; any other error goes to smp::handle_exception.
inline int run_main(const char* program, int argc, char** argv, Cli& cli,
                    const std::function<int()>& run) {
  try {
    smp::init(argc, argv);
  } catch (const std::exception& e) {
    return smp::handle_exception(e, program);
  }
  auto refuse = [&](const UsageError& e) {
    if (smp::rank() == 0)
      std::fprintf(stderr, "%s: %s\n\n%s", program, e.what(), cli.usage().c_str());
    return 2;
  };
  try {
    if (!cli.parse(argc, argv)) return 0;
  } catch (const UsageError& e) {
    return refuse(e);
  }
  try {
    return run();
  } catch (const UsageError& e) {
    return refuse(e);
  } catch (const std::exception& e) {
    return smp::handle_exception(e, program);
  }
}

}  // namespace smp_examples
