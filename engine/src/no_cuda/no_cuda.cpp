// The CUDA entry points of a build without CUDA: no devices, switches accepted.
#include <smp/engine/cuda.h>
#include <smp/engine/device.h>
#include <smp/engine/error.h>

namespace smp {
namespace cuda {
namespace {
bool g_allow_tf32 = false;
}
int device_count() { return 0; }
bool is_available() { return false; }
void set_device(int index) {
  SMP_ERROR("cuda::set_device({}): this build has no CUDA support", index);
}
int get_device() { return 0; }
void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }
void synchronize() {}
bool is_compiled() { return false; }
size_t memory_allocated() { return 0; }
size_t memory_reserved() { return 0; }
void empty_cache() {}
}  // namespace cuda
}  // namespace smp
