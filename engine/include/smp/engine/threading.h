// The CPU thread pool that kernels split work over.
#pragma once

#include <cstdint>
#include <functional>

namespace smp {

/// Threads used by CPU kernels (our pool and OpenBLAS). Defaults to the machine's cores.
void set_num_threads(int n);
int get_num_threads();

/// Runs f(begin, end) over [0, n) split into chunks of at least `grain` elements, on the
/// pool; runs inline when the range is small or when called from inside the pool.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f);

}  // namespace smp
