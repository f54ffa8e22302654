// Checkpoint write and read speed for the gpt program's state (GPT weights and AdamW state)
// beside the disk's own sequential write speed, measured in the same run with dd and fsync.
//
//   checkpoint_bench [--dir DIR] [--layers 8] [--embd 512] [--reps 3]
//   (under mpirun with a configuration, each rank writes its part; figures are the slowest
//   rank's)
//
// The peer torch_checkpoint_bench.py times torch.save / torch.load of the same sizes.
// Not on Google Benchmark: it times collective saves across ranks with its own loop
// (benchmarks/CMakeLists.txt says why).
#include <smp/smp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double slowest(double s) {
  smp::Tensor t = smp::tensor({s});
  smp::comm().allreduce(t, smp::ReduceOp::Max)->wait();
  return t.item<double>();
}

/// dd's MB/s for `mb` MiB written with fsync (the disk's sequential write speed).
double dd_speed(const std::string& dir, int64_t mb) {
  const std::string cmd = "dd if=/dev/zero of=" + dir +
                          "/dd.bin bs=1M count=" + std::to_string(mb) + " conv=fsync 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return 0;
  char line[512];
  std::string last;
  while (std::fgets(line, sizeof line, p) != nullptr) last = line;
  pclose(p);
  std::filesystem::remove(dir + "/dd.bin");
  // "... bytes (...) copied, 0.5 s, 420 MB/s"
  const size_t comma = last.rfind(", ");
  double v = 0;
  char unit[8] = {0};
  if (comma != std::string::npos && std::sscanf(last.c_str() + comma + 2, "%lf %7s", &v, unit) == 2)
    return unit[0] == 'G' ? v * 1000 : unit[0] == 'k' ? v / 1000 : v;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  smp::init(argc, argv);
  std::string dir = "/tmp/smp_checkpoint_bench";
  int64_t layers = 8, embd = 512, reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir")
      dir = v;
    else if (k == "--layers")
      layers = std::stoll(v);
    else if (k == "--embd")
      embd = std::stoll(v);
    else if (k == "--reps")
      reps = std::stoll(v);
  }
  std::filesystem::create_directories(dir);
  smp::nn::GPTConfig c;
  c.n_layer = layers;
  c.n_embd = embd;
  c.n_head = 8;
  smp::manual_seed(1);
  std::shared_ptr<smp::nn::GPT> net;
  {
    smp::tensor_parallelism tp;
    net = std::make_shared<smp::nn::GPT>(c);
  }
  smp::DistributedModel model(net);
  smp::DistributedOptimizer opt(
      std::make_shared<smp::optim::AdamW>(model.parameters(), smp::optim::AdamWOptions(1e-4)));
  auto train_step = smp::step([](smp::DistributedModel& m, smp::Tensor x, smp::Tensor y) {
    smp::Tensor loss = m(x, y);
    m.backward(loss);
    return loss;
  });
  const int mb = smp::config().microbatches;
  smp::Tensor x = smp::randint(0, 256, {mb, 16});
  train_step(model, x, x);  // the optimizer's state exists after a step
  opt.step();
  int64_t bytes = 0;
  for (auto& [k, v] : model.local_state_dict()) bytes += static_cast<int64_t>(v.nbytes());
  for (auto& [k, v] : opt.local_state_dict()) bytes += static_cast<int64_t>(v.nbytes());
  std::vector<double> w, r;
  for (int64_t i = 0; i < reps; ++i) {
    smp::barrier();
    auto t0 = Clock::now();
    smp::save_checkpoint(dir, "bench", true, model, &opt, {}, 1);
    w.push_back(slowest(std::chrono::duration<double>(Clock::now() - t0).count()));
    smp::barrier();
    t0 = Clock::now();
    smp::resume_from_checkpoint(dir, model, &opt);
    r.push_back(slowest(std::chrono::duration<double>(Clock::now() - t0).count()));
  }
  std::sort(w.begin(), w.end());
  std::sort(r.begin(), r.end());
  const double mib = static_cast<double>(bytes) / (1 << 20);
  const double disk =
      smp::rank() == 0 ? dd_speed(dir, std::max<int64_t>(64, static_cast<int64_t>(mib))) : 0;
  if (smp::rank() == 0)
    std::printf(
        "checkpoint_bench: GPT %lld layers, C %lld, AdamW; %.1f MiB per rank (weights + state), "
        "%d ranks\n  save_checkpoint: %.3f s (%.0f MiB/s per rank)\n  resume_from_checkpoint: "
        "%.3f s (%.0f MiB/s per rank)\n  disk (dd, fsync, %lld MiB): %.0f MB/s\n",
        static_cast<long long>(layers), static_cast<long long>(embd), mib, smp::size(),
        w[w.size() / 2], mib / w[w.size() / 2], r[r.size() / 2], mib / r[r.size() / 2],
        static_cast<long long>(std::max<int64_t>(64, static_cast<int64_t>(mib))), disk);
  smp::finalize();
  return 0;
}
