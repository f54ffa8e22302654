// A pipelined, data-parallel training loop that runs until the test harness (fault.sh) hurts
// one of its ranks. Each rank writes its PID to DIR/pid.<rank> once the first step is done.
//
//   fault_victim DIR [--smp-config FILE]
#include <smp/smp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);
    const std::string dir = argc > 1 ? argv[1] : ".";
    auto net = std::make_shared<smp::nn::Sequential>();
    for (int i = 0; i < 4; ++i) net->push_back(std::make_shared<smp::nn::Linear>(64, 64));
    smp::DistributedModel model(net);
    smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(model.parameters(), 0.01));
    auto train = smp::step([](smp::DistributedModel& m, smp::Tensor x) {
      smp::Tensor loss = m(x).pow(2).mean();
      m.backward(loss);
      return loss;
    });
    const auto start = std::chrono::steady_clock::now();
    for (int step = 0; std::chrono::steady_clock::now() - start < std::chrono::seconds(120);
         ++step) {
      opt.zero_grad();
      train(model, smp::randn({8, 64}));
      opt.step();
      if (step == 0) std::ofstream(dir + "/pid." + std::to_string(smp::rank())) << getpid();
    }
    std::printf("rank %d: the fault was never noticed\n", smp::rank());
    return 0;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "fault_victim");
  }
}
