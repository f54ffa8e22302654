// One transformer layer (nanoGPT's block) forward + backward under tensor parallelism, for
// comparison with PyTorch's DTensor tensor parallelism (torch_tp_layer_bench.py) on the same
// sizes and threads. Run under mpirun; the configuration gives the degree:
//
//   export SM_HP_MP_PARAMETERS='{"ddp": true, "tensor_parallel_degree": 2, "prescaled_batch": true}'
//   mpirun -np 2 tp_layer_bench [--batch 8] [--seq 128] [--embd 512] [--heads 8] [--steps 20]
//
// With prescaled_batch every rank holds the same (B, T, C) input, as with DTensor's
// ColwiseParallel/RowwiseParallel plan. Prints the median step time over the ranks (the
// slowest rank's median) and the bytes each rank hands to the TP collectives per step beside
// Megatron's count (2 + 2 allreduces of B·T·C floats).
//
// Not on Google Benchmark: it times steps across MPI ranks with its own loop
// (benchmarks/CMakeLists.txt says why).
#include <smp/smp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tp/collectives.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  int64_t batch = 8, seq = 128, embd = 512, heads = 8, steps = 20;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int64_t v = std::stoll(argv[i + 1]);
    if (k == "--batch")
      a.batch = v;
    else if (k == "--seq")
      a.seq = v;
    else if (k == "--embd")
      a.embd = v;
    else if (k == "--heads")
      a.heads = v;
    else if (k == "--steps")
      a.steps = v;
    else
      throw smp::Error("tp_layer_bench: unknown flag " + k);
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  smp::init(argc, argv);
  const Args a = parse(argc, argv);
  smp::nn::GPTConfig c;
  c.n_embd = a.embd;
  c.n_head = a.heads;
  c.block_size = a.seq;
  smp::manual_seed(1);
  std::shared_ptr<smp::nn::Sequential> net;
  {
    smp::tensor_parallelism scope;
    net = std::make_shared<smp::nn::Sequential>();
    net->push_back(std::make_shared<smp::nn::TransformerLayer>(c));
  }
  smp::DistributedModel model(net);
  smp::manual_seed(2 + static_cast<uint64_t>(smp::config().prescaled_batch ? 0 : smp::dp_rank()));
  const smp::Tensor x = smp::randn({a.batch, a.seq, a.embd}).requires_grad_(true);
  std::vector<double> times;
  namespace tp = smp::detail::tp;
  tp::CommStats fwd{}, bwd{};
  for (int64_t s = 0; s < a.steps + 3; ++s) {
    model.zero_grad();
    smp::barrier();
    tp::reset_stats();
    const auto t0 = Clock::now();
    smp::Tensor y = model(x);
    model.backward(y.sum());
    model.wait_for_gradients();
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s >= 3) times.push_back(dt);
    fwd = tp::forward_stats();
    bwd = tp::backward_stats();
  }
  std::sort(times.begin(), times.end());
  smp::Tensor m = smp::tensor({times[times.size() / 2]});
  smp::comm().allreduce(m, smp::ReduceOp::Max)->wait();
  if (smp::rank() == 0) {
    const double bsh = static_cast<double>(a.batch * a.seq * a.embd) * 4;
    std::printf(
        "tp_layer_bench: tp %d, %s, optimize %s, B %lld T %lld C %lld heads %lld, %d threads\n"
        "  forward+backward: %.2f ms (median of %lld steps, slowest rank)\n"
        "  TP collectives per step: forward %lld allreduce %lld all-gather %lld reduce-scatter, "
        "backward %lld / %lld / %lld; %.0f bytes handed in (Megatron prescaled: 4 x B·T·C x 4 "
        "bytes = %.0f)\n",
        smp::tp_size(), smp::config().prescaled_batch ? "prescaled" : "default batch",
        smp::config().optimize.c_str(), static_cast<long long>(a.batch),
        static_cast<long long>(a.seq), static_cast<long long>(a.embd),
        static_cast<long long>(a.heads), smp::get_num_threads(), m.item<double>() * 1e3,
        static_cast<long long>(a.steps), static_cast<long long>(fwd.all_reduce),
        static_cast<long long>(fwd.all_gather), static_cast<long long>(fwd.reduce_scatter),
        static_cast<long long>(bwd.all_reduce), static_cast<long long>(bwd.all_gather),
        static_cast<long long>(bwd.reduce_scatter), static_cast<double>(fwd.bytes + bwd.bytes),
        4 * bsh);
  }
  smp::finalize();
  return 0;
}
