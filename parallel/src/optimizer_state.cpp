// DistributedOptimizer's state dicts keyed by parameter name: gathered over the TP group and
// the pipeline for state_dict(), this rank's for local_state_dict(), sliced on load.
#include <smp/engine/autograd.h>
#include <smp/engine/placement.h>
#include <smp/parallel/distributed.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/tensor_parallel.h>

#include <map>
#include <set>
#include <string>

#include "comm/backend.h"
#include "models.h"

namespace smp {

namespace {

/// A parameter of the optimizer as the models know it.
struct Named {
  std::string name;
  const nn::ShardSpec* shard = nullptr;  // null: replicated over the TP group
};

/// Name and shard layout of every parameter of every live model, by tensor identity.
struct ParameterNames {
  std::map<const TensorImpl*, Named> by_impl;
  std::map<std::string, nn::ShardSpec> specs;  // kept alive for Named::shard
  bool all_partitioned = true;

  ParameterNames() {
    for (DistributedModel* m : detail::live_models()) {
      all_partitioned = all_partitioned && m->partitioned();
      specs.merge(detail::shard_layouts(m->module()));
      for (auto& [name, p] : m->named_parameters()) {
        auto it = specs.find(name);
        by_impl[p.unsafe_impl()] = Named{name, it == specs.end() ? nullptr : &it->second};
      }
    }
  }

  const Named& of(const Tensor& p) const {
    auto it = by_impl.find(p.unsafe_impl());
    SMP_CHECK(it != by_impl.end(),
              "DistributedOptimizer: a parameter of the optimizer (shape {}) belongs to no live "
              "DistributedModel; build the optimizer from model.parameters() after wrapping",
              p.dim());
    return it->second;
  }
};

bool tp_active() { return is_initialized() && tp_size() > 1; }
bool pp_active() { return is_initialized() && pp_size() > 1; }

void put_options(const optim::Optimizer& opt, optim::StateDict& sd) {
  const auto& groups = opt.param_groups();
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& [k, v] : groups[g].options)
      sd["param_groups." + std::to_string(g) + "." + k] = scalar_tensor(v, TensorOptions(kFloat64));
}

}  // namespace

optim::StateDict DistributedOptimizer::local_state_dict() const {
  NoGradGuard no_grad;
  const ParameterNames names;
  optim::StateDict sd;
  put_options(*opt_, sd);
  for (const auto& g : opt_->param_groups())
    for (const Tensor& p : g.params) {
      if (p.is_meta()) continue;
      const optim::ParamState* st = opt_->find_state(p);
      if (st == nullptr) continue;
      const std::string prefix = "state." + names.of(p).name + ".";
      for (const auto& [b, t] : st->buffers) sd[prefix + b] = t.detach().clone();
      sd[prefix + "step"] = scalar_tensor(static_cast<double>(st->step), TensorOptions(kInt64));
    }
  return sd;
}

optim::StateDict DistributedOptimizer::state_dict() const {
  NoGradGuard no_grad;
  const ParameterNames names;
  optim::StateDict sd;
  put_options(*opt_, sd);
  detail::CallScope scope("DistributedOptimizer::state_dict");
  // Which buffers each parameter has, from the stage that holds it: every rank then walks the
  // same list in the same order, so the collectives pair up.
  nlohmann::json mine = nlohmann::json::object();
  for (const auto& g : opt_->param_groups())
    for (const Tensor& p : g.params) {
      const optim::ParamState* st = p.is_meta() ? nullptr : opt_->find_state(p);
      if (st == nullptr) continue;
      nlohmann::json buffers = nlohmann::json::array();
      for (const auto& [b, t] : st->buffers) buffers.push_back(b);
      mine[names.of(p).name] = {{"buffers", buffers}, {"step", st->step}};
    }
  nlohmann::json all = mine;
  if (pp_active())
    for (const auto& stage : allgather(mine, CommGroup::PP_GROUP)) all.update(stage);
  const int here = pp_active() ? pp_rank() : 0;
  for (const auto& g : opt_->param_groups())
    for (const Tensor& p : g.params) {
      const Named& n = names.of(p);
      if (!all.contains(n.name)) continue;  // no state yet (never stepped)
      const auto& entry = all.at(n.name);
      const int holder = pp_active() && p.is_meta() ? detail::held_by(p) : here;
      const std::string prefix = "state." + n.name + ".";
      for (const auto& b : entry.at("buffers")) {
        Tensor t;
        if (holder == here) {
          const Tensor& buf = opt_->find_state(p)->buffers.at(b.get<std::string>());
          t = n.shard != nullptr && tp_active() ? detail::gather_shards(buf, *n.shard)
                                                : buf.detach().contiguous().clone();
        } else {
          const Shape full = n.shard != nullptr && tp_active()
                                 ? detail::full_shape(p.sizes(), *n.shard, tp_size())
                                 : p.sizes();
          t = empty(full, TensorOptions(p.dtype()));
        }
        if (pp_active()) comm(CommGroup::PP_GROUP).broadcast(t, holder)->wait();
        sd[prefix + b.get<std::string>()] = t.cpu();
      }
      sd[prefix + "step"] = scalar_tensor(static_cast<double>(entry.at("step").get<int64_t>()),
                                          TensorOptions(kInt64));
    }
  return sd;
}

void DistributedOptimizer::load_state_dict(const optim::StateDict& sd) {
  // The wrapped optimizer's own format (indices, "param_groups.<g>.params") fits only when
  // every parameter is here whole.
  if (sd.count("param_groups.0.params")) {
    SMP_CHECK(!pp_active() && !tp_active(),
              "DistributedOptimizer::load_state_dict: this state dict is keyed by parameter "
              "index (the wrapped optimizer's own state_dict), which cannot be placed under "
              "pipeline or tensor parallelism; save DistributedOptimizer::state_dict(), keyed by "
              "parameter name");
    opt_->load_state_dict(sd);
    return;
  }
  pending_ = sd;
  apply_pending();
}

void DistributedOptimizer::apply_pending() {
  if (!pending_) return;
  if (!ParameterNames().all_partitioned) return;  // the first step partitions, then applies
  optim::StateDict sd = std::move(*pending_);
  pending_.reset();
  apply_named(sd);
}

void DistributedOptimizer::apply_named(const optim::StateDict& sd) {
  NoGradGuard no_grad;
  const ParameterNames names;
  auto& groups = opt_->param_groups();
  std::map<std::string, const Tensor*> params;  // this optimizer's parameters by name
  for (const auto& g : groups)
    for (const Tensor& p : g.params) params[names.of(p).name] = &p;
  for (const auto& [key, value] : sd) {
    if (key.rfind("param_groups.", 0) == 0) {
      const size_t dot = key.find('.', 13);
      SMP_CHECK(dot != std::string::npos, "DistributedOptimizer::load_state_dict: bad key '{}'",
                key);
      const size_t g = std::stoul(key.substr(13, dot - 13));
      SMP_CHECK(g < groups.size(),
                "DistributedOptimizer::load_state_dict: '{}' names group {} of an optimizer with "
                "{} groups",
                key, g, groups.size());
      groups[g].options[key.substr(dot + 1)] = value.item<double>();
      continue;
    }
    SMP_CHECK(key.rfind("state.", 0) == 0 && key.rfind('.') > 6,
              "DistributedOptimizer::load_state_dict: unexpected key '{}' (keys are "
              "'state.<parameter>.<buffer>' and 'param_groups.<group>.<option>')",
              key);
    const size_t last = key.rfind('.');
    const std::string name = key.substr(6, last - 6), buffer = key.substr(last + 1);
    auto it = params.find(name);
    SMP_CHECK(it != params.end(),
              "DistributedOptimizer::load_state_dict: '{}' is the state of parameter '{}', which "
              "this optimizer does not hold",
              key, name);
    const Tensor& p = *it->second;
    if (p.is_meta()) continue;  // another stage's parameter
    optim::ParamState& st = opt_->state(p);
    if (buffer == "step") {
      st.step = static_cast<int64_t>(value.item<double>());
      continue;
    }
    Tensor v = value;
    const Named& n = names.of(p);
    if (n.shard != nullptr && tp_active() &&
        v.sizes() == detail::full_shape(p.sizes(), *n.shard, tp_size()))
      v = detail::shard_of(v, *n.shard, tp_size(), tp_rank());
    SMP_CHECK(v.sizes() == p.sizes(),
              "DistributedOptimizer::load_state_dict: '{}' has {} elements in {} dimensions, but "
              "parameter '{}' here has {}",
              key, v.numel(), v.dim(), name, p.numel());
    st.buffers[buffer] = v.to(p.device(), p.dtype()).contiguous().clone();
  }
}

}  // namespace smp
