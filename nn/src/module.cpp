#include <fmt/format.h>
#include <fmt/ranges.h>
#include <smp/engine/autograd.h>
#include <smp/engine/error.h>
#include <smp/engine/serialize.h>
#include <smp/nn/module.h>

#include <set>

namespace smp::nn {

namespace {

thread_local std::vector<Module*> t_module_stack;

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

void check_name(const std::string& name, const char* what) {
  SMP_CHECK(!name.empty(), "register_{}: the name must not be empty", what);
  SMP_CHECK(name.find('.') == std::string::npos,
            "register_{}: name '{}' must not contain '.' (dots separate submodule names)", what,
            name);
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace

const std::vector<Module*>& current_module_stack() { return t_module_stack; }

namespace {
thread_local std::vector<std::pair<std::string, int>> t_attribute_scopes;
}

AttributeScope::AttributeScope(std::string key, int value) {
  t_attribute_scopes.emplace_back(std::move(key), value);
}
AttributeScope::~AttributeScope() { t_attribute_scopes.pop_back(); }

Module::Module() {
  for (const auto& [key, value] : t_attribute_scopes) attributes_[key] = value;  // inner wins
}

std::optional<int> Module::attribute(const std::string& key) const {
  auto it = attributes_.find(key);
  if (it == attributes_.end()) return std::nullopt;
  return it->second;
}

ModuleCallScope::ModuleCallScope(Module* m) { t_module_stack.push_back(m); }
ModuleCallScope::~ModuleCallScope() { t_module_stack.pop_back(); }

Tensor& Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(name, "parameter");
  for (auto& [n, p] : params_)
    SMP_CHECK(n != name, "register_parameter: {} already has a parameter named '{}'", this->name(),
              name);
  if (t.defined()) {
    // A parameter is a leaf: a tensor with history is detached, a leaf is kept as is so the
    // caller's handle and the module's are the same tensor (as libtorch).
    if (!t.is_leaf()) t = t.detach();
    t.requires_grad_(requires_grad);
  }
  params_.emplace_back(name, std::move(t));
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name, "buffer");
  for (auto& [n, b] : buffers_)
    SMP_CHECK(n != name, "register_buffer: {} already has a buffer named '{}'", this->name(), name);
  if (t.defined() && !t.is_leaf()) t = t.detach();
  buffers_.emplace_back(name, std::move(t));
  return buffers_.back().second;
}

void Module::register_module_impl(const std::string& name, std::shared_ptr<Module> m) {
  check_name(name, "module");
  SMP_CHECK(m != nullptr, "register_module: module '{}' is null", name);
  for (auto& [n, c] : children_)
    SMP_CHECK(n != name, "register_module: {} already has a submodule named '{}'", this->name(),
              name);
  children_.emplace_back(name, std::move(m));
}

void Module::replace_module_impl(const std::string& name, std::shared_ptr<Module> m) {
  SMP_CHECK(m != nullptr, "replace_module: module '{}' is null", name);
  for (size_t i = 0; i < children_.size(); ++i)
    if (children_[i].first == name) {
      children_[i].second = m;
      child_replaced(i, m);
      return;
    }
  SMP_ERROR("replace_module: {} has no submodule named '{}'", this->name(), name);
}

void Module::collect_tensors(bool params, const std::string& prefix, bool recurse,
                             std::vector<std::pair<std::string, Tensor>>& out) const {
  for (auto& [n, t] : params ? params_ : buffers_)
    if (t.defined()) out.emplace_back(join_name(prefix, n), t);
  if (recurse)
    for (auto& [cn, c] : children_) c->collect_tensors(params, join_name(prefix, cn), true, out);
}

namespace {
/// Keeps the first name of each tensor (tied weights are one tensor under several names).
std::vector<std::pair<std::string, Tensor>> first_names(
    std::vector<std::pair<std::string, Tensor>> all) {
  std::set<const void*> seen;
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& e : all)
    if (seen.insert(e.second.unsafe_impl()).second) out.push_back(std::move(e));
  return out;
}
}  // namespace

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse,
                                                                     bool remove_duplicate) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_tensors(true, "", recurse, out);
  return remove_duplicate ? first_names(std::move(out)) : out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, p] : named_parameters(recurse)) out.push_back(p);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse,
                                                                  bool remove_duplicate) const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_tensors(false, "", recurse, out);
  return remove_duplicate ? first_names(std::move(out)) : out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, b] : named_buffers(recurse)) out.push_back(b);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return {children_.begin(), children_.end()};
}

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (auto& [n, c] : children_) out.push_back(c);
  return out;
}

void Module::collect_modules(const std::string& prefix,
                             std::vector<std::pair<std::string, std::shared_ptr<Module>>>& out) {
  for (auto& [n, c] : children_) {
    std::string full = join_name(prefix, n);
    out.emplace_back(full, c);
    c->collect_modules(full, out);
  }
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  // A module not owned by a shared_ptr (on the stack) is listed through a non-owning alias.
  std::shared_ptr<Module> self = weak_from_this().lock();
  if (!self) self = std::shared_ptr<Module>(std::shared_ptr<Module>(), this);
  out.emplace_back("", self);
  collect_modules("", out);
  return out;
}

std::vector<std::shared_ptr<Module>> Module::modules() {
  std::vector<std::shared_ptr<Module>> out;
  for (auto& [n, m] : named_modules()) out.push_back(m);
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::apply_to_tensors(const std::function<void(Tensor&)>& f) {
  for (auto& [n, p] : params_)
    if (p.defined()) f(p);
  for (auto& [n, b] : buffers_)
    if (b.defined()) f(b);
  for (auto& [n, c] : children_) c->apply_to_tensors(f);
}

void Module::to(Device d) {
  NoGradGuard ng;
  apply_to_tensors([&](Tensor& t) {
    if (t.device() == d) return;
    t.set_data(t.to(d));
    if (t.requires_grad() && t.grad().defined()) t.mutable_grad() = t.grad().to(d);
  });
}

void Module::to(Dtype dt) {
  NoGradGuard ng;
  apply_to_tensors([&](Tensor& t) {
    if (!t.is_floating_point() || t.dtype() == dt) return;
    t.set_data(t.to(dt));
    if (t.requires_grad() && t.grad().defined()) t.mutable_grad() = t.grad().to(dt);
  });
}

void Module::to(Device d, Dtype dt) {
  to(d);
  to(dt);
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard ng;
  for (auto& p : parameters()) {
    if (!p.grad().defined()) continue;
    if (set_to_none)
      p.mutable_grad() = Tensor();
    else
      p.mutable_grad().zero_();
  }
}

StateDict Module::state_dict() const {
  StateDict sd;
  for (auto& [n, p] : named_parameters(true, false)) sd[n] = p.detach();
  for (auto& [n, b] : named_buffers(true, false)) sd[n] = b.detach();
  return sd;
}

void Module::load_state_dict(const StateDict& sd, bool strict) {
  std::map<std::string, Tensor> own;
  std::vector<std::string> order;  // registration order, for errors that read like the model
  // Every name, a tied tensor's included: a state_dict holds each, and each must be there.
  for (auto& [n, p] : named_parameters(true, false)) own[n] = p, order.push_back(n);
  for (auto& [n, b] : named_buffers(true, false)) own[n] = b, order.push_back(n);

  std::vector<std::string> unknown, missing, wrong;
  for (auto& [n, t] : sd)
    if (!own.count(n)) unknown.push_back(n);
  for (auto& n : order) {
    auto it = sd.find(n);
    if (it == sd.end()) {
      missing.push_back(n);
    } else {
      SMP_CHECK(it->second.defined(), "load_state_dict: {}: the given tensor is undefined", n);
      if (it->second.sizes() != own[n].sizes())
        wrong.push_back(fmt::format("{}: expected {}, got {}", n, shape_str(own[n].sizes()),
                                    shape_str(it->second.sizes())));
    }
  }
  std::vector<std::string> problems;
  if (!wrong.empty()) problems.push_back(fmt::format("wrong shapes: {}", fmt::join(wrong, "; ")));
  if (strict && !missing.empty())
    problems.push_back(fmt::format("missing keys: {}", fmt::join(missing, ", ")));
  if (strict && !unknown.empty())
    problems.push_back(fmt::format("unknown keys: {}", fmt::join(unknown, ", ")));
  SMP_CHECK(problems.empty(), "load_state_dict ({}): {}", name(), fmt::join(problems, "; "));

  NoGradGuard ng;
  for (auto& n : order) {
    auto it = sd.find(n);
    if (it != sd.end()) own[n].copy_(it->second);
  }
}

void Module::save(const std::string& path) const { save_safetensors(path, state_dict()); }

void Module::load(const std::string& path, bool strict) {
  load_state_dict(load_safetensors(path), strict);
}

Tensor Module::forward(const Tensor&) {
  SMP_ERROR("module {} has no single-tensor forward", name());
}

Tensor Module::forward(const Tensor&, const Tensor&) {
  SMP_ERROR("module {} takes one tensor: it has no forward of two tensors", name());
}

Tensor Module::operator()(const Tensor& x) {
  if (replacement_) return (*replacement_)(x);
  ModuleCallScope scope(this);
  return forward(x);
}

Tensor Module::operator()(const Tensor& x, const Tensor& y) {
  if (replacement_) return (*replacement_)(x, y);
  ModuleCallScope scope(this);
  return forward(x, y);
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : parameters()) n += p.numel();
  return n;
}

}  // namespace smp::nn
