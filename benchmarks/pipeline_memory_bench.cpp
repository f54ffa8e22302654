// Peak activation memory per pipeline stage under the simple and interleaved schedules.
// A chain of 8 Linear(1024, 1024) + ReLU layers, batch 512 in `microbatches` pieces; each
// rank reports the peak of CPU tensor memory during one step above what it held before it
// (parameters and their gradients are allocated before, so this is activations and
// temporaries).
//
//   mpirun -np 2 pipeline_memory_bench --smp-config CONFIG.json
//
// Not on Google Benchmark: it measures memory, not time, of a pipeline step across MPI ranks.
#include <smp/smp.h>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);
    auto net = std::make_shared<smp::nn::Sequential>();
    for (int i = 0; i < 8; ++i) {
      net->push_back(std::make_shared<smp::nn::Linear>(1024, 1024));
      net->push_back(std::make_shared<smp::nn::ReLU>());
    }
    smp::DistributedModel model(net);
    smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(model.parameters(), 1e-3));
    auto train_step = smp::step([](smp::DistributedModel& m, smp::Tensor x) {
      smp::Tensor loss = m(x).pow(2).mean();
      m.backward(loss);
      return loss;
    });
    smp::Tensor x = smp::randn({512, 1024});
    std::vector<double> peaks;
    for (int step = 0; step < 3; ++step) {   // the first step always runs the simple schedule
      opt.zero_grad(/*set_to_none=*/false);  // gradients stay allocated: not counted as peak
      const int64_t base = smp::cpu::memory_allocated();
      smp::cpu::reset_peak_memory_stats();
      train_step(model, x);
      peaks.push_back(static_cast<double>(smp::cpu::max_memory_allocated() - base) / 1e6);
      opt.step();
    }
    auto all = smp::allgather(nlohmann::json(peaks.back()), smp::CommGroup::PP_GROUP);
    if (smp::rank() == 0) {
      std::printf("pipeline_memory_bench: pp %d, %d microbatches of %d rows, schedule %s\n",
                  smp::pp_size(), smp::config().microbatches, 512 / smp::config().microbatches,
                  smp::config().pipeline.c_str());
      for (size_t s = 0; s < all.size(); ++s)
        std::printf("  stage %zu: peak %.1f MB above the step's start\n", s, all[s].get<double>());
    }
    smp::finalize();
    return 0;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "pipeline_memory_bench");
  }
}
