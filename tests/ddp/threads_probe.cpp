// Checks the engine's CPU thread count on every rank: the default must split the host's cores
// among the ranks on it (MPI's count, not the launcher's variable the engine reads), and an
// explicit count must win. Exits non-zero on a rank where it does not hold.
//
//   threads_probe default      expect max(1, cores / ranks on this host)
//   threads_probe N            expect N (OMP_NUM_THREADS=N in the environment)
//   threads_probe N --set M    call smp::set_num_threads(M) first; expect M
#include <smp/smp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);
    const std::string mode = argc > 1 ? argv[1] : "default";
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    int expected = mode == "default" ? std::max(1, cores / smp::local_size()) : std::atoi(argv[1]);
    if (argc > 3 && std::string(argv[2]) == "--set") {
      expected = std::atoi(argv[3]);
      smp::set_num_threads(expected);
    }
    const int got = smp::get_num_threads();
    std::printf("threads_probe: rank %d: %d thread(s), expected %d (%d cores, %d ranks here)\n",
                smp::rank(), got, expected, cores, smp::local_size());
    return got == expected ? 0 : 1;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "threads_probe");
  }
}
