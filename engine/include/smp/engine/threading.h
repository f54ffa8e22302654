// The CPU thread pool that kernels split work over.
#pragma once

#include <cstdint>
#include <functional>

namespace smp {

/// Threads used by CPU kernels (our pool; OpenBLAS itself stays single-threaded and large
/// products are split over the pool). Defaults to OMP_NUM_THREADS when set, else to the
/// machine's cores divided among the ranks that the MPI launcher started on this host
/// (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS), at least 1.
void set_num_threads(int n);
int get_num_threads();

/// Runs f(begin, end) over [0, n) split into chunks of at least `grain` elements, on the
/// pool; runs inline when the range is small or when called from inside the pool.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f);

/// True on a pool thread while it runs a parallel_for chunk (nested work then runs inline).
bool in_parallel_region();

}  // namespace smp
