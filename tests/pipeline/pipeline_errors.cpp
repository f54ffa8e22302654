// Misuses of a pipelined step, each of which must end the whole job with a clear message
// (no rank left waiting for a transfer that will never come).
//
//   pipeline_errors item|backward_twice|no_backward|not_divisible   (under mpirun, pp >= 2)
//   pipeline_errors plain_backward   (pp >= 2 or dp >= 2: loss.backward() for model.backward)
#include <smp/smp.h>

#include <cstdio>
#include <string>
#include <tuple>

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);
    const std::string mode = argc > 1 ? argv[1] : "item";
    auto net = std::make_shared<smp::nn::Sequential>();
    for (int i = 0; i < 4; ++i) net->push_back(std::make_shared<smp::nn::Linear>(6, 6));
    smp::DistributedModel model(net);
    const int64_t rows = mode == "not_divisible" ? 2 * smp::config().microbatches + 1
                                                 : 2 * smp::config().microbatches;
    smp::Tensor x = smp::randn({rows, 6}), y = smp::randint(0, 6, {rows});
    if (mode == "item") {
      auto s = smp::step([](smp::DistributedModel& m, smp::Tensor x, smp::Tensor y) {
        smp::Tensor loss = smp::cross_entropy(m(x), y);
        std::printf("loss %f\n", loss.item<double>());  // only the last partition holds it
        m.backward(loss);
        return loss;
      });
      s(model, x, y);
    } else if (mode == "backward_twice" || mode == "no_backward" || mode == "not_divisible") {
      const int calls = mode == "backward_twice" ? 2 : mode == "no_backward" ? 0 : 1;
      auto s = smp::step([calls](smp::DistributedModel& m, smp::Tensor x, smp::Tensor y) {
        smp::Tensor loss = smp::cross_entropy(m(x), y);
        for (int i = 0; i < calls; ++i) m.backward(loss);
        return loss;
      });
      s(model, x, y);
    } else if (mode == "plain_backward") {
      auto s = smp::step([](smp::DistributedModel& m, smp::Tensor x, smp::Tensor y) {
        smp::Tensor loss = smp::cross_entropy(m(x), y);
        loss.backward();  // PyTorch's habit; SMP needs m.backward(loss)
        return loss;
      });
      s(model, x, y);
    }
    std::printf("rank %d: no error\n", smp::rank());
    return 0;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "pipeline_errors");
  }
}
