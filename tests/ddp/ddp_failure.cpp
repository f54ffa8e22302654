// A data-parallel training loop in which one rank throws at a chosen step: the job must end
// with that rank's error on every rank's output, not hang in the next allreduce.
//
//   ddp_failure FAILING_RANK STEP
#include <smp/smp.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);
    const int failing = argc > 1 ? std::atoi(argv[1]) : 1;
    const int fail_step = argc > 2 ? std::atoi(argv[2]) : 3;
    auto net = std::make_shared<smp::nn::Linear>(32, 4);
    smp::DistributedModel model(net);
    smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(model.parameters(), 0.1));
    for (int step = 0; step < 1000; ++step) {
      if (smp::rank() == failing && step == fail_step)
        throw std::runtime_error("injected failure at step " + std::to_string(step));
      opt.zero_grad();
      smp::Tensor x = smp::randn({8, 32});
      model.backward(model(x).pow(2).mean());
      opt.step();
    }
    std::printf("rank %d: finished without noticing the failure\n", smp::rank());
    return 0;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "ddp_failure");
  }
}
