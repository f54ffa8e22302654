// Which module types have a distributed version, when a module of that type can be
// distributed, and how its distributed version is made from it.
#pragma once

#include <smp/nn/module.h>

#include <functional>
#include <memory>
#include <string>

namespace smp::detail::tp {

struct Rule {
  const char* type;  ///< the module type's name() ("Linear")
  std::function<bool(const nn::Module&)> matches;
  /// Why `m` cannot be distributed over `tp` ranks ("" when it can).
  std::function<std::string(const nn::Module& m, int tp)> why_not;
  /// The distributed version of `m`, holding this rank's shard of its parameters.
  std::function<std::shared_ptr<nn::Module>(nn::Module& m)> make;
  /// The module's parameters may be shared with another module (the tied LM head handles
  /// the sharing itself); otherwise a shared parameter keeps the module replicated.
  bool shared_ok = false;
};

/// The first rule whose type matches `m`, or null.
const Rule* find_rule(const nn::Module& m);
/// "Linear, Embedding, ..." for messages.
std::string supported_names();

}  // namespace smp::detail::tp
