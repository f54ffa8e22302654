// distribute_modules: at DistributedModel construction, marked supported modules become their
// distributed versions, in place and under the same name.
#include <smp/engine/placement.h>
#include <smp/parallel/config.h>
#include <smp/parallel/runtime.h>
#include <smp/parallel/tensor_parallel.h>
#include <smp/parallel/tp_transformer.h>

#include <cstdio>
#include <functional>
#include <map>
#include <set>

#include "tp/mode.h"
#include "tp/rules.h"

namespace smp::detail {

namespace {

struct Mark {
  bool on = false;
  bool named = false;  // set_tensor_parallelism named this module itself
};

Mark mark_of(const nn::Module& m, Mark inherited) {
  auto v = m.attribute(kTensorParallelAttribute);
  if (!v) return {inherited.on, false};
  return {*v != 0, m.attribute(kTensorParallelExplicitAttribute).value_or(0) == 1};
}

bool has_direct_parameters(const nn::Module& m) { return !m.named_parameters(false).empty(); }

// Attributes other layers keep on a module (its pipeline partition) pass to its replacement.
void copy_attributes(const nn::Module& from, nn::Module& to) {
  for (const char* key :
       {"smp.partition", kTensorParallelAttribute, kTensorParallelExplicitAttribute}) {
    if (auto v = from.attribute(key)) to.set_attribute(key, *v);
  }
}

// The replaced module keeps answering calls through old handles (a parent's typed member) by
// running its replacement; its own full-size tensors are released (meta), so the full
// weights do not stay in memory and a stale read fails instead of returning old values.
void retire(nn::Module& old, nn::Module& replacement) {
  std::set<const TensorImpl*> kept;
  for (auto& [n, p] : replacement.named_parameters(true)) kept.insert(p.unsafe_impl());
  for (auto& [n, b] : replacement.named_buffers(true)) kept.insert(b.unsafe_impl());
  for (auto& [n, p] : old.named_parameters(true))
    if (!kept.count(p.unsafe_impl())) release_to_meta(p, -1);
  for (auto& [n, b] : old.named_buffers(true))
    if (!kept.count(b.unsafe_impl())) release_to_meta(b, -1);
  old.forward_calls_to(replacement.shared_from_this());
}

struct Walk {
  nn::Module* root = nullptr;
  int tp;
  std::set<const TensorImpl*> head_weights;  // weights of TransformerLMHeads (tied embeddings)
  std::map<const TensorImpl*, int> owners;   // parameter -> number of modules registering it
  std::vector<std::string> notes;
  int replaced = 0;
  bool any_marked = false;

  std::string shared_reason(const nn::Module& m) const {
    for (auto& [n, p] : m.named_parameters(true)) {
      auto it = owners.find(p.unsafe_impl());
      if (it != owners.end() && it->second > 1)
        return fmt::format("its parameter '{}' is shared with another module", n);
    }
    return "";
  }

  /// The distributed version of `m`, or null with `why` set.
  std::shared_ptr<nn::Module> convert(nn::Module& m, const std::string& path, Mark mk,
                                      std::string& why) {
    const tp::Rule* rule = tp::find_rule(m);
    if (rule == nullptr) return nullptr;
    why = rule->shared_ok ? "" : shared_reason(m);
    if (why.empty()) why = rule->why_not(m, tp);
    if (why.empty()) {
      auto d = rule->make(m);
      copy_attributes(m, *d);
      const Tensor old_head = is_head(m) ? m.named_parameters(false).front().second : Tensor();
      retire(m, *d);
      ++replaced;
      if (old_head.defined()) tie_embeddings(old_head, *d);
      return d;
    }
    const std::string what = fmt::format("'{}' ({})", path.empty() ? "<root>" : path, m.name());
    if (mk.named)
      throw ConfigError(
          fmt::format("set_tensor_parallelism: {} cannot be distributed over "
                      "tensor_parallel_degree {}: {}",
                      what, tp, why));
    notes.push_back(fmt::format("{} stays replicated: {}", what, why));
    return nullptr;
  }

  static bool is_head(const nn::Module& m) {
    return dynamic_cast<const nn::TransformerLMHead*>(&m) != nullptr;
  }

  /// The embeddings tied to a head just distributed become vocabulary-parallel with the
  /// head's shard (the same tensor, so the tie holds).
  void tie_embeddings(const Tensor& old_weight, nn::Module& head) {
    const Tensor shard = dynamic_cast<nn::DistributedTransformerLMHead&>(head).weight;
    for (auto& [name, m] : root->named_modules()) {
      for (auto& [cn, c] : m->named_children()) {
        auto* emb = dynamic_cast<nn::Embedding*>(c.get());
        if (emb == nullptr || emb->weight.unsafe_impl() != old_weight.unsafe_impl()) continue;
        auto v = std::make_shared<nn::VocabParallelEmbedding>(shard, emb->options.num_embeddings());
        copy_attributes(*c, *v);
        retire(*c, *v);
        m->replace_module(cn, v);
      }
    }
  }

  void visit(nn::Module& parent, const std::string& prefix, Mark inherited) {
    for (auto& [name, child] : parent.named_children()) {
      const std::string path = prefix.empty() ? name : prefix + "." + name;
      const Mark mk = mark_of(*child, inherited);
      if (dynamic_cast<nn::TensorParallelModule*>(child.get()) != nullptr) continue;
      // An embedding tied to an LM head follows the head (made vocabulary-parallel with it).
      if (auto* emb = dynamic_cast<nn::Embedding*>(child.get());
          emb != nullptr && head_weights.count(emb->weight.unsafe_impl()))
        continue;
      if (mk.on) {
        any_marked = true;
        std::string why;
        if (auto d = convert(*child, path, mk, why)) {
          parent.replace_module(name, d);
          continue;
        }
        if (why.empty() && tp::find_rule(*child) == nullptr && child->children().empty() &&
            has_direct_parameters(*child)) {
          const std::string what = fmt::format("'{}' ({})", path, child->name());
          if (mk.named)
            throw ConfigError(
                fmt::format("set_tensor_parallelism: {} has no distributed version (supported: {})",
                            what, tp::supported_names()));
          notes.push_back(fmt::format("{} stays replicated: {} has no distributed version", what,
                                      child->name()));
        }
      }
      const int before = replaced;
      visit(*child, path, mk);
      if (mk.on && mk.named && replaced == before && tp::find_rule(*child) == nullptr)
        throw ConfigError(fmt::format(
            "set_tensor_parallelism: '{}' ({}) has no distributed version and no submodule that "
            "has one (supported: {})",
            path, child->name(), tp::supported_names()));
    }
  }
};

}  // namespace

std::shared_ptr<nn::Module> distribute_modules(const std::shared_ptr<nn::Module>& root) {
  Walk w;
  w.root = root.get();
  w.tp = tp::size();
  if (w.tp == 1) return root;
  for (auto& [name, m] : root->named_modules()) {
    for (auto& [n, p] : m->named_parameters(false)) ++w.owners[p.unsafe_impl()];
    if (auto* head = dynamic_cast<nn::TransformerLMHead*>(m.get()))
      w.head_weights.insert(head->weight.unsafe_impl());
  }
  std::shared_ptr<nn::Module> out = root;
  const Mark root_mark = mark_of(*root, {});
  if (root_mark.on && dynamic_cast<nn::TensorParallelModule*>(root.get()) == nullptr) {
    w.any_marked = true;
    std::string why;
    if (auto d = w.convert(*root, "", root_mark, why)) out = d;
  }
  if (out == root) w.visit(*root, "", root_mark);
  for (auto& [name, m] : out->named_modules())
    if (dynamic_cast<nn::TensorParallelModule*>(m.get()) != nullptr) w.any_marked = true;
  if (rank() == 0) {
    for (const std::string& n : w.notes)
      std::fprintf(stderr, "smp: tensor parallelism: %s\n", n.c_str());
    if (!w.any_marked)
      std::fprintf(stderr,
                   "smp: tensor_parallel_degree %d, but no module is marked for tensor "
                   "parallelism (smp::tensor_parallelism scope or smp::set_tensor_parallelism): "
                   "nothing is distributed, every rank holds and computes the whole model\n",
                   w.tp);
  }
  return out;
}

}  // namespace smp::detail
