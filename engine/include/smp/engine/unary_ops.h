// Unary elementwise functions whose kernels (CPU and CUDA) and gradient come from the
// engine's table of unary ops (engine/src/unary_table.h, SMP_UNARY_FUNCTIONS). Integer
// inputs compute in the default float type; the gradient is one fused kernel.
// The older unary ops (exp, relu, gelu, ...) are Tensor methods, declared in tensor.h.
#pragma once

#include <smp/engine/tensor.h>

namespace smp {

/// SiLU (swish), x·σ(x), as torch.nn.functional.silu.
Tensor silu(const Tensor& input);

}  // namespace smp
