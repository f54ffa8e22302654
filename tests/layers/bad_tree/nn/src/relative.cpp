// Into the engine's src/ by a relative path.
#include <smp/engine/tensor.h>
#include "../../engine/src/kernels.h"
