// Sideways: data may include the engine only.
#include <smp/engine/tensor.h>

#include <smp/nn/module.h>
