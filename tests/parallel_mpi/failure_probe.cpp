// Run with 3 ranks by parallel_mpi_failure_probe: rank 1 reports a failure while ranks 0 and 2
// wait in an allreduce that rank 1 never joins. They must get RemoteFailure naming rank 1 and
// its message within a few seconds; each prints one line that the CTest script checks.
#include <smp/parallel/runtime.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "comm/backend.h"

int main() {
  using Clock = std::chrono::steady_clock;
  smp::init();
  const int rank = smp::rank();
  auto& world = smp::comm();
  world.barrier()->wait();
  if (rank == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    smp::detail::notify_failure("boom", 5.0);
    // What smp::abort_job does next, after giving the others time to report.
    std::this_thread::sleep_for(std::chrono::seconds(3));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  smp::Tensor t = smp::ones({1000});
  const auto t0 = Clock::now();
  try {
    world.allreduce(t)->wait();
    std::printf("probe: rank %d: the allreduce completed, which it cannot\n", rank);
    return 3;
  } catch (const smp::RemoteFailure& e) {
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("probe: rank %d got RemoteFailure from rank %d after %.2f s: %s\n", rank,
                e.failed_rank(), s, e.what());
  } catch (const std::exception& e) {
    std::printf("probe: rank %d got another error: %s\n", rank, e.what());
    std::fflush(stdout);
    return 4;
  }
  std::fflush(stdout);
  // Rank 1 takes the job down; exit non-zero should it not.
  std::this_thread::sleep_for(std::chrono::seconds(20));
  return 2;
}
