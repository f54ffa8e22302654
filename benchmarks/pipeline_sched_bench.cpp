// Schedule efficiency independent of this machine's cores: every rank is one pipeline stage
// whose forward and backward of a microbatch sleep a fixed time; activations and gradients
// (small tensors) travel between neighbours through smp::Communicator, and the pipeline
// executor runs each stage's action list. Step time is compared with the ideal
// (m + p - 1) * (t_f + t_b).
//
//   SM_HP_MP_PARAMETERS='{"partitions": P}' mpirun -np P pipeline_sched_bench [--ms 4]
//       [--steps 3]
//
// Not on Google Benchmark: it times whole steps or collectives across MPI ranks with its own
// loop (benchmarks/CMakeLists.txt says why).
#include <smp/smp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/executor.h"  // internal: smp_parallel_internal

namespace pl = smp::pipeline;

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);
    double half_ms = 4;  // t_f = t_b
    int steps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
      std::string k = argv[i];
      if (k == "--ms")
        half_ms = std::atof(argv[i + 1]);
      else if (k == "--steps")
        steps = std::atoi(argv[i + 1]);
      else
        throw smp::Error("pipeline_sched_bench: unknown flag " + k);
    }
    const int p = smp::size(), s = smp::rank();
    smp::Communicator& world = smp::comm();
    const auto t_seg = std::chrono::microseconds(static_cast<int64_t>(half_ms * 1000));

    if (s == 0)
      std::printf("pipeline_sched_bench: %d stages, t_f = t_b = %.1f ms, best of %d steps\n", p,
                  half_ms, steps);
    if (s == 0) std::printf("  schedule     m   step ms  ideal ms  efficiency\n");
    for (auto sched : {pl::Schedule::Simple, pl::Schedule::Interleaved}) {
      for (int m : {4, 8, 16}) {
        auto actions = pl::stage_actions(sched, p, s, m, p + 2);
        double best = 1e30;
        for (int rep = 0; rep < steps; ++rep) {
          std::vector<smp::WorkPtr> sends;
          std::mutex sends_mu;
          auto keep = [&](smp::WorkPtr w) {
            std::lock_guard<std::mutex> g(sends_mu);
            sends.push_back(std::move(w));
          };
          pl::Executor ex([&](int mb) {
            smp::Tensor act = smp::zeros({256});
            if (s > 0) world.recv(act, s - 1, mb)->wait();
            std::this_thread::sleep_for(t_seg);
            if (s < p - 1) keep(world.send(act.clone(), s + 1, mb));
            pl::end_forward();
            smp::Tensor grad = smp::zeros({256});
            if (s < p - 1) world.recv(grad, s + 1, 1000 + mb)->wait();
            std::this_thread::sleep_for(t_seg);
            if (s > 0) keep(world.send(grad.clone(), s - 1, 1000 + mb));
          });
          smp::barrier();
          auto t0 = std::chrono::steady_clock::now();
          ex.run(actions, m);
          for (auto& w : sends) w->wait();
          smp::barrier();
          double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          best = std::min(best, dt);
        }
        const double ideal = (m + p - 1) * 2 * half_ms / 1000.0;
        if (s == 0)
          std::printf("  %-11s %2d  %8.1f  %8.1f  %9.1f%%\n",
                      sched == pl::Schedule::Simple ? "simple" : "interleaved", m, 1e3 * best,
                      1e3 * ideal, 100 * ideal / best);
      }
    }
    smp::finalize();
    return 0;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "pipeline_sched_bench");
  }
}
