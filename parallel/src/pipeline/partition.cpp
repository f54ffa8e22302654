// Splitting a DistributedModel's module tree across pipeline partitions.
#include <smp/engine/autograd.h>
#include <smp/engine/placement.h>
#include <smp/parallel/partition.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/tensor_parallel.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <set>

#include "comm/backend.h"
#include "pipeline/pipeline.h"

namespace smp {

namespace {

std::string parent_name(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

/// A module that owns parameters or buffers directly: the unit the partitioner places (a
/// module without state runs wherever its inputs are).
struct Unit {
  nn::Module* module;
  double weight;
};

/// Contiguous split of `w` into `parts` non-empty runs minimising the heaviest run (linear
/// partitioning by dynamic programming). Returns each item's run.
std::vector<int> balanced_split(const std::vector<double>& w, int parts) {
  const int n = static_cast<int>(w.size());
  std::vector<double> prefix(static_cast<size_t>(n) + 1, 0);
  for (int i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + w[static_cast<size_t>(i)];
  const double inf = std::numeric_limits<double>::infinity();
  // best[k][i]: heaviest run when the first i items form k runs; cut[k][i]: start of run k.
  std::vector<std::vector<double>> best(static_cast<size_t>(parts) + 1,
                                        std::vector<double>(static_cast<size_t>(n) + 1, inf));
  std::vector<std::vector<int>> cut(static_cast<size_t>(parts) + 1,
                                    std::vector<int>(static_cast<size_t>(n) + 1, 0));
  best[0][0] = 0;
  for (int k = 1; k <= parts; ++k)
    for (int i = k; i <= n; ++i)
      for (int j = k - 1; j < i; ++j) {
        const double v = std::max(best[k - 1][j], prefix[i] - prefix[j]);
        if (v < best[k][i]) {
          best[k][i] = v;
          cut[k][i] = j;
        }
      }
  std::vector<int> of(static_cast<size_t>(n), 0);
  for (int k = parts, i = n; k >= 1; --k) {
    const int j = cut[k][i];
    for (int t = j; t < i; ++t) of[static_cast<size_t>(t)] = k - 1;
    i = j;
  }
  return of;
}

/// Costs of one module measured by running the model once: estimated FLOPs of the ops run
/// directly by the module and the bytes of their inputs (activations).
struct Cost {
  double flops = 0, activation_bytes = 0;
};

/// Runs every op on this rank (replicated) and charges it to the innermost module.
class TraceHook final : public PlacementHook {
 public:
  Placement place(const char* op, const std::vector<const Tensor*>& in) override {
    const auto& stack = nn::current_module_stack();
    if (stack.empty() || in.empty()) return Placement{-1, true};
    Cost& c = costs[stack.back()];
    const std::string name = op;
    const Tensor& x = *in[0];
    double flops = static_cast<double>(x.numel());  // elementwise by default
    if (name == "linear" && in.size() >= 2) {
      flops = 2.0 * static_cast<double>(x.numel()) * static_cast<double>(in[1]->size(0));
    } else if (name == "conv2d" && in.size() >= 2 && x.dim() == 4 && in[1]->dim() == 4) {
      const Tensor& w = *in[1];
      // Output positions approximated by the input's (stride 1, same padding).
      flops = 2.0 * static_cast<double>(x.size(0) * x.size(2) * x.size(3)) *
              static_cast<double>(w.numel());
    } else if ((name == "mm" || name == "matmul" || name == "bmm") && in.size() >= 2 &&
               in[1]->dim() >= 2) {
      flops = 2.0 * static_cast<double>(x.numel()) * static_cast<double>(in[1]->size(-1));
    }
    c.flops += flops;
    for (const Tensor* t : in)
      if (!t->requires_grad() || !t->is_leaf())
        c.activation_bytes += static_cast<double>(t->nbytes());
    return Placement{-1, true};
  }
  std::map<const nn::Module*, Cost> costs;
};

}  // namespace

namespace detail {

int checked_partition(int i) {
  SMP_CHECK(i >= 0, "smp::partition({}): a partition index is >= 0", i);
  return i;
}

namespace {

using NamedModules = std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>;
/// Each module's partition.
using Assignment = std::map<const nn::Module*, int>;

/// The modules that own parameters or buffers, weighted by their element count (the
/// weight auto-partitioning uses when there is no example input to trace).
std::vector<Unit> stateful_units(const NamedModules& named, int pp) {
  std::vector<Unit> units;
  for (auto& [name, m] : named) {
    const auto own_p = m->named_parameters(false);
    const auto own_b = m->named_buffers(false);
    if (own_p.empty() && own_b.empty()) continue;
    double w = 1;
    for (auto& [n, t] : own_p) w += static_cast<double>(t.numel());
    for (auto& [n, t] : own_b) w += static_cast<double>(t.numel());
    units.push_back(Unit{m.get(), w});
  }
  // Partitioning is a pure function of the model and the configuration, so its errors are the
  // same on every rank: ConfigError, reported once.
  if (static_cast<int>(units.size()) < pp)
    throw ConfigError(
        fmt::format("smp: the model has {} module(s) with parameters or buffers, too few for "
                    "pipeline_parallel_degree {}: a partition would be left empty",
                    units.size(), pp));
  return units;
}

/// One forward of `example` on this rank, in eval mode and without autograd, charging each
/// op's FLOPs and input bytes to the innermost module. Every rank runs the same, so all reach
/// the same decision.
std::map<const nn::Module*, Cost> trace_costs(nn::Module& root, const NamedModules& named,
                                              const Tensor& example) {
  TraceHook trace;
  // In eval mode, so that the trace moves no batch-norm statistics and draws no dropout
  // masks: the step that follows must be the step the user asked for.
  NoGradGuard ng;
  std::vector<std::pair<nn::Module*, bool>> modes;
  for (auto& [n, m] : named) modes.emplace_back(m.get(), m->is_training());
  root.eval();
  PlacementHook* prev = set_placement_hook(&trace);
  auto restore = [&] {
    set_placement_hook(prev);
    for (auto& [m, on] : modes) m->train(on);  // root first, so children end as they were
  };
  try {
    root(example);
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return std::move(trace.costs);
}

/// Auto-partitioning balances compute against memory: each unit's weight becomes its share
/// of the model's FLOPs and of its memory (parameters and activations), mixed by
/// memory_weight.
void weigh_units(std::vector<Unit>& units, const std::map<const nn::Module*, Cost>& costs,
                 double memory_weight) {
  auto cost_of = [&](const nn::Module* m) {
    auto it = costs.find(m);
    return it == costs.end() ? Cost{} : it->second;
  };
  double total_flops = 0, total_mem = 0;
  std::vector<double> mem(units.size());
  for (size_t i = 0; i < units.size(); ++i) {
    mem[i] = units[i].weight * 4 + cost_of(units[i].module).activation_bytes;
    total_flops += cost_of(units[i].module).flops;
    total_mem += mem[i];
  }
  for (size_t i = 0; i < units.size(); ++i)
    units[i].weight =
        memory_weight * mem[i] / std::max(total_mem, 1.0) +
        (1 - memory_weight) * cost_of(units[i].module).flops / std::max(total_flops, 1.0) + 1e-9;
}

/// Auto: contiguous runs of units of balanced weight. Manual: a module's own smp::partition,
/// else its parent's, else default_partition.
Assignment assign(const NamedModules& named, const std::vector<Unit>& units, const Config& cfg,
                  int pp) {
  Assignment part;
  if (cfg.auto_partition) {
    std::vector<double> w;
    for (const Unit& u : units) w.push_back(u.weight);
    const std::vector<int> of = balanced_split(w, pp);
    for (size_t i = 0; i < units.size(); ++i) part[units[i].module] = of[i];
    return part;
  }
  std::map<std::string, int> by_name;
  for (auto& [name, m] : named) {
    int p = get_partition(*m);
    if (p < 0) p = name.empty() ? cfg.default_partition_value() : by_name.at(parent_name(name));
    if (p >= pp)
      throw ConfigError(
          fmt::format("smp: module '{}' is on partition {}, but pipeline_parallel_degree is {} "
                      "(partitions 0..{})",
                      name.empty() ? "(root)" : name, p, pp, pp - 1));
    by_name[name] = p;
    part[m.get()] = p;
  }
  return part;
}

/// Modules sharing a parameter must live together: the later one follows the first.
void colocate_shared_parameters(const std::vector<Unit>& units, Assignment& part) {
  std::map<const TensorImpl*, int> owner_of;
  for (const Unit& u : units)
    for (auto& [n, t] : u.module->named_parameters(false)) {
      auto [it, fresh] = owner_of.emplace(t.unsafe_impl(), part[u.module]);
      if (!fresh) part[u.module] = it->second;
    }
}

/// Per partition: its parameter count and its share of the units' weight. Throws when a
/// partition got no unit.
struct PartitionLoad {
  std::vector<int64_t> params;
  std::vector<double> cost;
  double total = 0;
};
PartitionLoad measure_load(const std::vector<Unit>& units, const Assignment& part, int pp) {
  PartitionLoad load{std::vector<int64_t>(static_cast<size_t>(pp), 0),
                     std::vector<double>(static_cast<size_t>(pp), 0), 0};
  for (const Unit& u : units) {
    const auto p = static_cast<size_t>(part.at(u.module));
    load.cost[p] += u.weight;
    load.total += u.weight;
    for (auto& [n, t] : u.module->named_parameters(false)) load.params[p] += t.numel();
  }
  for (int p = 0; p < pp; ++p)
    if (load.cost[static_cast<size_t>(p)] == 0)
      throw ConfigError(fmt::format(
          "smp: partition {} is left empty: no module with parameters or buffers is assigned to "
          "it (pipeline_parallel_degree {}); put modules in smp::partition({}) scopes or use "
          "auto_partition",
          p, pp, p));
  return load;
}

/// Stateless modules: the partition of their first stateful descendant, else their parent's
/// (the root's: 0).
void assign_stateless(const NamedModules& named, Assignment& part) {
  for (auto it = named.rbegin(); it != named.rend(); ++it) {
    const nn::Module* m = it->second.get();
    if (part.count(m)) continue;
    for (auto& [cn, c] : it->second->named_children())
      if (part.count(c.get())) {
        part[m] = part[c.get()];
        break;
      }
  }
  std::map<std::string, const nn::Module*> by_name;
  for (auto& [name, m] : named) {
    if (!part.count(m.get()))
      part[m.get()] = name.empty() ? 0 : part.at(by_name.at(parent_name(name)));
    by_name[name] = m.get();
  }
}

/// Rank 0 prints each module's partition and each partition's load.
void report(const std::vector<std::pair<std::string, int>>& assignment, const PartitionLoad& load,
            int pp) {
  if (rank() != 0) return;
  std::string msg = "Partition assignments:\n";
  for (auto& [name, p] : assignment)
    msg += fmt::format("  {}: {}\n", name.empty() ? "(root)" : name, p);
  for (int p = 0; p < pp; ++p)
    msg += fmt::format("  partition {}: {} parameters, estimated cost {:.2f}\n", p,
                       load.params[static_cast<size_t>(p)],
                       load.cost[static_cast<size_t>(p)] / load.total);
  std::fputs(msg.c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace

/// Trace (auto only, with an example), cost, assign, fix up (shared parameters, stateless
/// modules), keep this rank's tensors, report; then the hooks waiting for the partition.
void partition_model(DistributedModel& model, const Tensor& example) {
  if (model.partitioned_) return;
  const Config& cfg = config();
  const int pp = pp_size();
  const NamedModules named = model.module_->named_modules();

  std::vector<Unit> units = stateful_units(named, pp);
  if (cfg.auto_partition && example.defined())
    weigh_units(units, trace_costs(*model.module_, named, example), cfg.memory_weight_value());
  Assignment part = assign(named, units, cfg, pp);
  colocate_shared_parameters(units, part);
  const PartitionLoad load = measure_load(units, part, pp);
  assign_stateless(named, part);

  model.module_partition_.clear();
  model.assignment_names_.clear();
  for (auto& [name, m] : named) {
    model.module_partition_[m.get()] = part.at(m.get());
    model.assignment_names_.emplace_back(name, part.at(m.get()));
  }
  model.pipeline_->unit_partition.clear();
  for (const Unit& u : units) model.pipeline_->unit_partition[u.module] = part.at(u.module);
  const auto local = model.keep_local_tensors();
  if (!local.empty()) model.pipeline_->device = local.front().second.device();
  model.partitioned_ = true;
  model.make_reducer(local);

  report(model.assignment_names_, load, pp);
  for (auto& hook : model.post_partition_hooks_) hook(model);
}

}  // namespace detail

std::vector<std::pair<std::string, Tensor>> DistributedModel::keep_local_tensors() {
  // Each rank keeps its own partition's tensors; the rest become meta shells that remember
  // where their values live.
  const int mine = pp_rank();
  tensor_partition_.clear();
  std::vector<std::pair<std::string, Tensor>> local;
  std::set<const TensorImpl*> seen;  // a tied parameter is registered by two modules
  for (auto& [name, m] : module_->named_modules()) {
    const int p = module_partition_.at(m.get());
    const std::string prefix = name.empty() ? "" : name + ".";
    for (auto& [n, t] : m->named_parameters(false)) {
      tensor_partition_[prefix + n] = p;
      if (p != mine) {
        detail::release_to_meta(t, p);
        continue;
      }
      detail::set_held_by(t, p);
      if (seen.insert(t.unsafe_impl()).second) local.emplace_back(prefix + n, t);
    }
    for (auto& [n, t] : m->named_buffers(false)) {
      tensor_partition_[prefix + n] = p;
      if (p == mine)
        detail::set_held_by(t, p);
      else
        detail::release_to_meta(t, p);
    }
  }
  return local;
}

std::vector<Tensor> DistributedModel::local_parameters() const {
  std::vector<Tensor> out;
  for (Tensor& t : module_->parameters())
    if (!t.is_meta()) out.push_back(t);
  return out;
}

std::vector<std::shared_ptr<nn::Module>> DistributedModel::local_modules() const {
  std::vector<std::shared_ptr<nn::Module>> out;
  const int mine = is_initialized() ? pp_rank() : 0;
  for (auto& m : module_->modules()) {
    auto it = module_partition_.find(m.get());
    if (it == module_partition_.end() || it->second == mine) out.push_back(m);
  }
  return out;
}

void DistributedModel::register_post_partition_hook(std::function<void(DistributedModel&)> hook) {
  // Partitioned already (pp = 1 is from construction): run it now, as SMP does.
  if (partitioned_) {
    hook(*this);
    return;
  }
  post_partition_hooks_.push_back(std::move(hook));
}

nn::StateDict DistributedModel::local_state_dict() const {
  nn::StateDict out;
  for (auto& [k, v] : module_->state_dict())
    if (!v.is_meta()) out[k] = v;
  return out;
}

nn::StateDict DistributedModel::state_dict() const {
  nn::StateDict sd = module_->state_dict();
  const auto shards = is_initialized() && tp_size() > 1 ? detail::shard_layouts(*module_)
                                                        : std::map<std::string, nn::ShardSpec>{};
  if (tensor_partition_.empty() && shards.empty()) return sd;
  detail::CallScope scope("DistributedModel::state_dict");
  NoGradGuard no_grad;
  const int mine = pp_rank();
  // Every rank walks the keys in the same (sorted) order, so the collectives pair up: shards
  // are gathered within the TP group of the stage holding them, then sent over the pipeline.
  for (auto& [k, v] : sd) {
    auto spec = shards.find(k);
    auto part = tensor_partition_.find(k);
    const int owner = part == tensor_partition_.end() ? mine : part->second;
    Tensor t;
    if (owner == mine)
      t = spec == shards.end() ? v.contiguous().clone() : detail::gather_shards(v, spec->second);
    else
      t = empty(
          spec == shards.end() ? v.sizes() : detail::full_shape(v.sizes(), spec->second, tp_size()),
          TensorOptions(v.dtype()));
    if (!tensor_partition_.empty()) comm(CommGroup::PP_GROUP).broadcast(t, owner)->wait();
    v = t;
  }
  return sd;
}

void DistributedModel::load_state_dict(const nn::StateDict& given, bool strict) {
  nn::StateDict sd = given;
  if (is_initialized() && tp_size() > 1) {
    // A full-shape value of a sharded parameter is sliced to this rank's shard.
    const nn::StateDict current = module_->state_dict();
    for (auto& [k, spec] : detail::shard_layouts(*module_)) {
      auto it = sd.find(k);
      auto cur = current.find(k);
      if (it == sd.end() || cur == current.end()) continue;
      if (it->second.sizes() == detail::full_shape(cur->second.sizes(), spec, tp_size()))
        it->second = detail::shard_of(it->second, spec, tp_size(), tp_rank());
    }
  }
  if (tensor_partition_.empty()) {
    module_->load_state_dict(sd, strict);
    return;
  }
  nn::StateDict mine;
  for (auto& [k, v] : sd) {
    auto it = tensor_partition_.find(k);
    SMP_CHECK(!strict || it != tensor_partition_.end(),
              "DistributedModel::load_state_dict: unknown key '{}'", k);
    if (it != tensor_partition_.end() && it->second == pp_rank()) mine[k] = v;
  }
  module_->load_state_dict(mine, false);
}

}  // namespace smp
