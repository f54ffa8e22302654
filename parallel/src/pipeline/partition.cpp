// Splitting a DistributedModel's module tree across pipeline partitions.
#include <smp/engine/autograd.h>
#include <smp/engine/placement.h>
#include <smp/parallel/runtime.h>

#include <algorithm>
#include <cstdio>
#include <limits>
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

void to_meta_in_place(Tensor& t, int partition) {
  TensorImpl& impl = *t.unsafe_impl();
  impl.storage.reset();
  impl.device = Device(DeviceType::Meta);
  impl.offset = 0;
  impl.partition = partition;
  if (t.requires_grad() && t.grad().defined()) t.set_grad(Tensor());
}

}  // namespace

namespace detail {

void partition_model(DistributedModel& model, const Tensor& example) {
  if (model.partitioned_) return;
  const Config& cfg = config();
  const int pp = pp_size(), mine = pp_rank();
  auto named = model.module_->named_modules();

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

  // Auto-partitioning balances compute against memory: one forward of the first microbatch
  // (every rank runs the same, so all reach the same decision) gives each module's FLOPs;
  // parameter and activation sizes its memory; memory_weight mixes the two.
  if (cfg.auto_partition && example.defined()) {
    TraceHook trace;
    {
      // In eval mode, so that the trace moves no batch-norm statistics and draws no dropout
      // masks: the step that follows must be the step the user asked for.
      NoGradGuard ng;
      std::vector<std::pair<nn::Module*, bool>> modes;
      for (auto& [n, m] : named) modes.emplace_back(m.get(), m->is_training());
      model.module_->eval();
      PlacementHook* prev = set_placement_hook(&trace);
      auto restore = [&] {
        set_placement_hook(prev);
        for (auto& [m, on] : modes) m->train(on);  // root first, so children end as they were
      };
      try {
        (*model.module_)(example);
      } catch (...) {
        restore();
        throw;
      }
      restore();
    }
    double total_flops = 0, total_mem = 0;
    std::vector<double> mem(units.size());
    for (size_t i = 0; i < units.size(); ++i) {
      mem[i] = units[i].weight * 4 + trace.costs[units[i].module].activation_bytes;
      total_flops += trace.costs[units[i].module].flops;
      total_mem += mem[i];
    }
    const double mw = cfg.memory_weight_value();
    for (size_t i = 0; i < units.size(); ++i)
      units[i].weight = mw * mem[i] / std::max(total_mem, 1.0) +
                        (1 - mw) * trace.costs[units[i].module].flops / std::max(total_flops, 1.0) +
                        1e-9;
  }

  std::map<const nn::Module*, int> part;
  if (cfg.auto_partition) {
    std::vector<double> w;
    for (const Unit& u : units) w.push_back(u.weight);
    const std::vector<int> of = balanced_split(w, pp);
    for (size_t i = 0; i < units.size(); ++i) part[units[i].module] = of[i];
  } else {
    // Manual: a module's own smp::partition scope, else its parent's, else default_partition.
    std::map<std::string, int> by_name;
    for (auto& [name, m] : named) {
      int p = m->partition();
      if (p < 0) p = name.empty() ? cfg.default_partition_value() : by_name.at(parent_name(name));
      if (p >= pp)
        throw ConfigError(
            fmt::format("smp: module '{}' is on partition {}, but pipeline_parallel_degree is {} "
                        "(partitions 0..{})",
                        name.empty() ? "(root)" : name, p, pp, pp - 1));
      by_name[name] = p;
      part[m.get()] = p;
    }
  }

  // Modules sharing a parameter must live together: the later one follows the first.
  std::map<const TensorImpl*, int> owner_of;
  for (const Unit& u : units)
    for (auto& [n, t] : u.module->named_parameters(false)) {
      auto [it, fresh] = owner_of.emplace(t.unsafe_impl(), part[u.module]);
      if (!fresh) part[u.module] = it->second;
    }

  std::vector<int64_t> params(static_cast<size_t>(pp), 0);
  std::vector<double> cost(static_cast<size_t>(pp), 0);
  double total = 0;
  for (const Unit& u : units) {
    const int p = part[u.module];
    cost[static_cast<size_t>(p)] += u.weight;
    total += u.weight;
    for (auto& [n, t] : u.module->named_parameters(false))
      params[static_cast<size_t>(p)] += t.numel();
  }
  for (int p = 0; p < pp; ++p)
    if (cost[static_cast<size_t>(p)] == 0)
      throw ConfigError(fmt::format(
          "smp: partition {} is left empty: no module with parameters or buffers is assigned to "
          "it (pipeline_parallel_degree {}); put modules in smp::partition({}) scopes or use "
          "auto_partition",
          p, pp, p));

  // Stateless modules: the partition of their first stateful descendant, else their parent's.
  model.module_partition_.clear();
  model.assignment_names_.clear();
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
    model.module_partition_[m.get()] = part[m.get()];
    model.assignment_names_.emplace_back(name, part[m.get()]);
  }

  // Each rank keeps its own partition's tensors; the rest become meta shells that remember
  // where their values live.
  model.tensor_partition_.clear();
  std::vector<std::pair<std::string, Tensor>> local;
  for (auto& [name, m] : named) {
    const int p = part[m.get()];
    const std::string prefix = name.empty() ? "" : name + ".";
    for (auto& [n, t] : m->named_parameters(false)) {
      Tensor h = t;
      model.tensor_partition_[prefix + n] = p;
      if (p == mine) {
        h.unsafe_impl()->partition = p;
        local.emplace_back(prefix + n, h);
      } else {
        to_meta_in_place(h, p);
      }
    }
    for (auto& [n, t] : m->named_buffers(false)) {
      Tensor h = t;
      model.tensor_partition_[prefix + n] = p;
      if (p == mine)
        h.unsafe_impl()->partition = p;
      else
        to_meta_in_place(h, p);
    }
  }
  model.pipeline_->unit_partition.clear();
  for (const Unit& u : units) model.pipeline_->unit_partition[u.module] = part[u.module];
  if (!local.empty()) model.pipeline_->device = local.front().second.device();
  model.partitioned_ = true;
  model.make_reducer(local);

  if (rank() == 0) {
    std::string msg = "Partition assignments:\n";
    for (auto& [name, p] : model.assignment_names_)
      msg += fmt::format("  {}: {}\n", name.empty() ? "(root)" : name, p);
    for (int p = 0; p < pp; ++p)
      msg += fmt::format("  partition {}: {} parameters, estimated cost {:.2f}\n", p,
                         params[static_cast<size_t>(p)], cost[static_cast<size_t>(p)] / total);
    std::fputs(msg.c_str(), stdout);
    std::fflush(stdout);
  }
  for (auto& hook : model.post_partition_hooks_) hook(model);
}

}  // namespace detail

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
  if (partitioned_ && !assignment_names_.empty()) {
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
  if (tensor_partition_.empty()) return sd;
  detail::CallScope scope("DistributedModel::state_dict");
  Communicator& pp = comm(CommGroup::PP_GROUP);
  const int mine = pp_rank();
  // Every rank walks the keys in the same (sorted) order, so the broadcasts pair up.
  for (auto& [k, v] : sd) {
    const int owner = tensor_partition_.at(k);
    Tensor t = owner == mine ? v.contiguous().clone() : empty(v.sizes(), TensorOptions(v.dtype()));
    pp.broadcast(t, owner)->wait();
    v = t;
  }
  return sd;
}

void DistributedModel::load_state_dict(const nn::StateDict& sd, bool strict) {
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
