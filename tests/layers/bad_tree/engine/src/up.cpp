// Up: the engine includes nn.
#include <smp/engine/tensor.h>
#include <smp/nn/module.h>
