// Optimizer base: groups, zero_grad, lr access and the flat state_dict format.
#include <smp/engine/autograd.h>
#include <smp/optim/optimizer.h>

#include <cmath>
#include <set>
#include <string>
#include <unordered_set>

namespace smp::optim {

Optimizer::Optimizer(std::vector<ParamGroup> groups, Options defaults)
    : defaults_(std::move(defaults)) {
  SMP_CHECK(!groups.empty() && !(groups.size() == 1 && groups[0].params.empty()),
            "optimizer got an empty parameter list");
  for (auto& g : groups) {
    for (const auto& [k, v] : defaults_) g.options.try_emplace(k, v);
    groups_.push_back(std::move(g));
  }
  std::unordered_set<const TensorImpl*> seen;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (const auto& p : groups_[gi].params) {
      SMP_CHECK(p.defined(), "optimizer: parameter group {} holds an undefined tensor", gi);
      SMP_CHECK(p.is_leaf(), "optimizer: can't optimize a non-leaf tensor (group {})", gi);
      SMP_CHECK(seen.insert(p.unsafe_impl()).second,
                "optimizer: some parameters appear in more than one parameter group");
    }
  }
}

void Optimizer::add_param_group(ParamGroup group) {
  for (const auto& [k, v] : defaults_) group.options.try_emplace(k, v);
  std::unordered_set<const TensorImpl*> seen;
  for (const auto& g : groups_)
    for (const auto& p : g.params) seen.insert(p.unsafe_impl());
  for (const auto& p : group.params) {
    SMP_CHECK(p.defined(), "add_param_group: the group holds an undefined tensor");
    SMP_CHECK(p.is_leaf(), "add_param_group: can't optimize a non-leaf tensor");
    SMP_CHECK(seen.insert(p.unsafe_impl()).second,
              "add_param_group: some parameters appear in more than one parameter group");
  }
  validate(group.options);
  groups_.push_back(std::move(group));
}

const ParamState* Optimizer::find_state(const Tensor& p) const {
  auto it = state_.find(p.unsafe_impl());
  return it == state_.end() ? nullptr : &it->second;
}

double Optimizer::option(const ParamGroup& g, const char* name) {
  auto it = g.options.find(name);
  SMP_CHECK(it != g.options.end(), "optimizer: parameter group has no option \"{}\"", name);
  return it->second;
}

void Optimizer::zero_grad(bool set_to_none) {
  for (auto& g : groups_) {
    for (auto& p : g.params) {
      if (!p.grad().defined()) continue;
      Tensor& grad = p.mutable_grad();
      if (set_to_none) {
        grad = Tensor();
        continue;
      }
      // As PyTorch: a gradient with history (create_graph) is cut loose before zeroing.
      if (grad.grad_fn())
        grad.detach_();
      else if (grad.requires_grad())
        grad.requires_grad_(false);
      NoGradGuard ng;
      grad.zero_();
    }
  }
}

double Optimizer::lr() const { return option(groups_.at(0), "lr"); }

void Optimizer::set_lr(double lr) {
  for (auto& g : groups_) g.options["lr"] = lr;
}

StateDict Optimizer::state_dict() const {
  StateDict sd;
  int64_t index = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const auto& g = groups_[gi];
    const std::string prefix = "param_groups." + std::to_string(gi) + ".";
    for (const auto& [k, v] : g.options) sd[prefix + k] = scalar_tensor(v, TensorOptions(kFloat64));
    std::vector<int64_t> ids;
    for (const auto& p : g.params) {
      ids.push_back(index);
      if (const ParamState* st = find_state(p)) {
        const std::string sp = "state." + std::to_string(index) + ".";
        for (const auto& [name, buf] : st->buffers) sd[sp + name] = buf.detach().clone();
        if (uses_step())
          sd[sp + "step"] =
              scalar_tensor(static_cast<double>(st->step), TensorOptions(step_dtype()));
      }
      ++index;
    }
    sd[prefix + "params"] = tensor<int64_t>(ids, {static_cast<int64_t>(ids.size())}, kInt64);
  }
  return sd;
}

namespace {

// Splits "a.<num>.rest" into num and rest; false if the key does not have that shape.
bool split_key(const std::string& key, size_t prefix_len, int64_t& num, std::string& rest) {
  size_t dot = key.find('.', prefix_len);
  if (dot == std::string::npos || dot == prefix_len || dot + 1 >= key.size()) return false;
  const std::string n = key.substr(prefix_len, dot - prefix_len);
  for (char c : n)
    if (c < '0' || c > '9') return false;
  num = std::stoll(n);
  rest = key.substr(dot + 1);
  return true;
}

}  // namespace

void Optimizer::load_state_dict(const StateDict& sd) {
  std::vector<Tensor*> params;
  for (auto& g : groups_)
    for (auto& p : g.params) params.push_back(&p);

  std::vector<Options> new_options(groups_.size());
  std::vector<int64_t> group_sizes(groups_.size(), -1);
  std::map<int64_t, ParamState> new_state;
  for (const auto& [key, value] : sd) {
    int64_t num = 0;
    std::string rest;
    SMP_CHECK(value.defined(), "load_state_dict: entry \"{}\" is an undefined tensor", key);
    if (key.rfind("param_groups.", 0) == 0) {
      SMP_CHECK(split_key(key, 13, num, rest), "load_state_dict: malformed key \"{}\"", key);
      SMP_CHECK(num < static_cast<int64_t>(groups_.size()),
                "load_state_dict: the state dict has parameter group {} but the optimizer has {} "
                "group(s) (key \"{}\")",
                num, groups_.size(), key);
      if (rest == "params") {
        group_sizes[num] = value.numel();
      } else {
        SMP_CHECK(value.numel() == 1,
                  "load_state_dict: option \"{}\" must be one number, got {} elements", key,
                  value.numel());
        new_options[num][rest] = value.item<double>();
      }
    } else if (key.rfind("state.", 0) == 0) {
      SMP_CHECK(split_key(key, 6, num, rest), "load_state_dict: malformed key \"{}\"", key);
      SMP_CHECK(num < static_cast<int64_t>(params.size()),
                "load_state_dict: key \"{}\" names parameter {} but the optimizer has {}", key, num,
                params.size());
      const Tensor& p = *params[num];
      if (rest == "step") {
        SMP_CHECK(value.numel() == 1, "load_state_dict: \"{}\" must be one number", key);
        new_state[num].step = std::llround(value.item<double>());
      } else {
        SMP_CHECK(value.sizes() == p.sizes(),
                  "load_state_dict: \"{}\" has shape [{}], its parameter has shape [{}]", key,
                  fmt::join(value.sizes(), ","), fmt::join(p.sizes(), ","));
        Tensor t =
            value.detach().to(p.device(), value.is_floating_point() ? p.dtype() : value.dtype());
        t = t.is_alias_of(value) ? t.clone() : t.contiguous();
        new_state[num].buffers[rest] = t;
      }
    } else {
      SMP_ERROR("load_state_dict: unexpected key \"{}\" (expected state.* or param_groups.*)", key);
    }
  }
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    SMP_CHECK(!new_options[gi].empty() || group_sizes[gi] >= 0,
              "load_state_dict: the state dict has no parameter group {} (the optimizer has {})",
              gi, groups_.size());
    SMP_CHECK(
        group_sizes[gi] < 0 || group_sizes[gi] == static_cast<int64_t>(groups_[gi].params.size()),
        "load_state_dict: loaded parameter group {} has {} parameters, the optimizer's has {}", gi,
        group_sizes[gi], groups_[gi].params.size());
    Options merged = groups_[gi].options;
    for (const auto& [k, v] : new_options[gi]) merged[k] = v;
    validate(merged);
    new_options[gi] = std::move(merged);
  }
  for (size_t gi = 0; gi < groups_.size(); ++gi) groups_[gi].options = std::move(new_options[gi]);
  state_.clear();
  for (auto& [i, st] : new_state) state_[params[i]->unsafe_impl()] = std::move(st);
}

}  // namespace smp::optim
