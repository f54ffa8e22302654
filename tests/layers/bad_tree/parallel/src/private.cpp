// Into the engine's src/ by its include path, as parallel/src/comm/nccl_communicator.cpp did.
#include "cuda/cuda_common.h"
