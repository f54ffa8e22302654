// How much of DDP's gradient communication hides behind backward, for the MNIST CNN.
// Run under mpirun with 2+ ranks; every rank trains on its own random batch.
//
//   SM_HP_MP_PARAMETERS='{"ddp": true}' mpirun -np 2 ddp_overlap [--batch-size 64] [--steps 30]
//       [--bucket-cap-mb 25]
//
// Per step it times: (a) compute alone (forward, backward, update, no communication),
// (b) the gradient allreduces alone (same buckets, nothing else running), (c) DDP with
// overlapping allreduce, (d) DDP reducing only after backward. The hidden fraction is
// (a + b - c) / b: 1 means communication cost nothing, 0 means none of it overlapped.
//
// Not on Google Benchmark: it times whole steps or collectives across MPI ranks with its own
// loop (benchmarks/CMakeLists.txt says why).
#include <smp/smp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Args {
  int64_t batch = 64, steps = 30;
  double bucket_cap_mb = 25;
};

/// Median seconds per step of `fn` over args.steps steps after 3 warm-up steps; ranks start
/// each step together so that one rank's lateness is not counted as another's communication.
template <class F>
double time_steps(const Args& a, F&& fn) {
  std::vector<double> t;
  for (int64_t s = 0; s < a.steps + 3; ++s) {
    smp::barrier();
    auto t0 = Clock::now();
    fn();
    double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s >= 3) t.push_back(dt);
  }
  // The slowest rank decides a synchronous step.
  smp::Tensor m = smp::tensor({median(t)});
  smp::comm().allreduce(m, smp::ReduceOp::Max)->wait();
  return m.item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);
    Args a;
    for (int i = 1; i + 1 < argc; i += 2) {
      std::string k = argv[i];
      if (k == "--batch-size")
        a.batch = std::atoll(argv[i + 1]);
      else if (k == "--steps")
        a.steps = std::atoll(argv[i + 1]);
      else if (k == "--bucket-cap-mb")
        a.bucket_cap_mb = std::atof(argv[i + 1]);
      else
        throw smp::Error("ddp_overlap: unknown flag " + k);
    }
    if (smp::local_size() > 1)
      smp::set_num_threads(
          std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / smp::local_size()));
    smp::manual_seed(1 + static_cast<uint64_t>(smp::rank()));
    smp::Tensor x = smp::randn({a.batch, 1, 28, 28});
    smp::Tensor y = smp::randint(0, 10, {a.batch});

    // (a) compute alone.
    auto plain = std::make_shared<smp::nn::MnistNet>(false);
    smp::optim::SGD plain_opt(plain->parameters(), 0.01);
    const double t_compute = time_steps(a, [&] {
      plain_opt.zero_grad();
      smp::nll_loss((*plain)(x), y).backward();
      plain_opt.step();
    });

    // (c), (d) DDP with and without overlap.
    auto run_ddp = [&](bool overlap, std::vector<std::vector<std::string>>* layout) {
      auto net = std::make_shared<smp::nn::MnistNet>(false);
      smp::DistributedModelOptions o;
      o.bucket_cap_mb = a.bucket_cap_mb;
      o.overlapping_allreduce = overlap;
      smp::DistributedModel model(net, o);
      smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(model.parameters(), 0.01));
      if (layout) *layout = model.bucket_layout();
      return time_steps(a, [&] {
        opt.zero_grad();
        model.backward(smp::nll_loss(model(x), y));
        opt.step();
      });
    };
    std::vector<std::vector<std::string>> layout;
    const double t_ddp = run_ddp(true, &layout);
    const double t_after = run_ddp(false, nullptr);

    // (b) the same buckets' allreduces with nothing else running.
    std::map<std::string, int64_t> numel;
    for (auto& [name, p] : plain->named_parameters()) numel[name] = p.numel();
    std::vector<smp::Tensor> flats;
    for (auto& b : layout) {
      int64_t n = 0;
      for (auto& name : b) n += numel[name];
      flats.push_back(smp::zeros({n}));
    }
    smp::Communicator& dp = smp::comm(smp::CommGroup::DP_GROUP);
    const double t_comm = time_steps(a, [&] {
      std::vector<smp::WorkPtr> w;
      for (auto& f : flats) w.push_back(dp.allreduce(f, smp::ReduceOp::Avg));
      for (auto& h : w) h->wait();
    });

    if (smp::rank() == 0) {
      int64_t total = 0;
      for (auto& [k, v] : numel) total += v;
      std::printf(
          "ddp_overlap: %d ranks, MnistNet (%lld parameters, %zu bucket%s at cap %g MB), "
          "batch %lld per rank, %d thread(s) per rank, median of %lld steps\n",
          smp::size(), static_cast<long long>(total), layout.size(), layout.size() == 1 ? "" : "s",
          a.bucket_cap_mb, static_cast<long long>(a.batch), smp::get_num_threads(),
          static_cast<long long>(a.steps));
      std::printf("  compute alone          %8.2f ms\n", 1e3 * t_compute);
      std::printf("  allreduce alone        %8.2f ms\n", 1e3 * t_comm);
      std::printf("  ddp, overlapped        %8.2f ms\n", 1e3 * t_ddp);
      std::printf("  ddp, after backward    %8.2f ms\n", 1e3 * t_after);
      const double hidden = t_comm > 0 ? (t_compute + t_comm - t_ddp) / t_comm : 0;
      std::printf("  communication hidden   %8.0f %%  ((compute + comm - ddp) / comm)\n",
                  100 * hidden);
    }
    smp::finalize();
    return 0;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "ddp_overlap");
  }
}
