// Allreduce bandwidth through smp::Communicator (nonblocking MPI driven by libsmp's progress
// thread) beside a plain blocking MPI_Allreduce in the same run. Run under mpirun:
//
//   SM_HP_MP_PARAMETERS='{"ddp": true}' mpirun -n 4 --oversubscribe build/bin/comm_bench
//       [--max-mib 64]
//
// Prints, per float32 message size, the mean time of one allreduce (the slowest rank's) and
// the bus bandwidth busbw = bytes · 2(n−1)/n / time, the figure nccl-tests report.
//
// Not on Google Benchmark: it times whole steps or collectives across MPI ranks with its own
// loop (benchmarks/CMakeLists.txt says why).
#include <mpi.h>
#include <smp/parallel/runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

// Mean seconds per call of `fn` over `iters` calls, the maximum over ranks.
template <class F>
double time_it(int iters, F&& fn) {
  fn();  // warm-up: first-touch pages, algorithm selection
  fn();
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) fn();
  double mine = std::chrono::duration<double>(Clock::now() - t0).count() / iters;
  double slowest = 0;
  MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

std::string human(size_t bytes) {
  if (bytes >= (size_t{1} << 20)) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes >> 10) + " KiB";
}

}  // namespace

int main(int argc, char** argv) {
  size_t max_mib = 64;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--max-mib") == 0 && i + 1 < argc) max_mib = std::stoul(argv[++i]);
  }
  smp::init();
  const int rank = smp::rank(), n = smp::size();
  int provided = 0;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE) {
    // The baseline calls MPI from this thread while libsmp's progress thread polls.
    if (rank == 0)
      std::fprintf(stderr,
                   "comm_bench: MPI offers no MPI_THREAD_MULTIPLE; cannot run the raw "
                   "MPI baseline beside libsmp\n");
    smp::finalize();
    return 1;
  }
  MPI_Comm raw = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &raw);
  auto& comm = smp::comm();

  if (rank == 0) {
    std::printf("allreduce (sum, float32) over %d ranks; time = mean per call, slowest rank\n", n);
    std::printf("%10s %12s %12s %12s %12s %8s\n", "size", "smp us", "smp GB/s", "MPI us",
                "MPI GB/s", "smp/MPI");
  }
  for (size_t bytes = 1024; bytes <= (max_mib << 20); bytes *= 4) {
    const int64_t count = static_cast<int64_t>(bytes / sizeof(float));
    const int iters = static_cast<int>(std::clamp<size_t>((size_t{1} << 28) / bytes, 5, 200));
    smp::Tensor t = smp::zeros({count});  // zeros: repeated sums stay finite
    std::vector<float> buf(static_cast<size_t>(count), 0.0f);

    const double ours = time_it(iters, [&] { comm.allreduce(t)->wait(); });
    const double theirs = time_it(iters, [&] {
      MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, raw);
    });
    const double factor = 2.0 * (n - 1) / n;
    if (rank == 0)
      std::printf("%10s %12.1f %12.3f %12.1f %12.3f %8.2f\n", human(bytes).c_str(), ours * 1e6,
                  bytes * factor / ours / 1e9, theirs * 1e6, bytes * factor / theirs / 1e9,
                  ours / theirs);
  }
  MPI_Comm_free(&raw);
  smp::finalize();
  return 0;
}
