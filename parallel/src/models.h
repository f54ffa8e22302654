// The DistributedModels alive in this process, for what must find the model of a parameter
// (DistributedOptimizer's state by parameter name, checkpoints).
#pragma once

#include <smp/parallel/distributed.h>

#include <vector>

namespace smp::detail {

/// Every live DistributedModel (SMP asks for one per program; tests make several in turn).
std::vector<DistributedModel*> live_models();

}  // namespace smp::detail
