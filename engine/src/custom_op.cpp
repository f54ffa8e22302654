// CustomOpScope: the engine's op scope, opened by code outside the engine.
#include <smp/engine/custom_op.h>

#include "placement_scope.h"

namespace smp {

CustomOpScope::CustomOpScope(const char* op, const std::vector<Tensor>& inputs)
    : scope_(std::make_unique<detail::OpScope>()) {
  if (detail::asks_hook()) scope_->open(op, inputs);
}

CustomOpScope::~CustomOpScope() = default;

}  // namespace smp
