// A public header of the fake nn.
#pragma once
#include <smp/engine/tensor.h>
