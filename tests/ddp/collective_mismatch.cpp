// Collectives that some ranks never join. Each mode must end the job within seconds with a
// message naming the call and the ranks that did not join, not wait for comm_timeout.
//
//   collective_mismatch left_main     rank 0 calls smp::barrier; the others leave main
//   collective_mismatch order         ranks call barrier and allgather in different orders
//   collective_mismatch state_dict    (pp 2) only pipeline rank 0 calls model.state_dict(),
//                                     then every rank calls smp::barrier
//   collective_mismatch optimizer_state_dict  (pp 2) only pipeline rank 0 calls
//                                     opt.state_dict(), then every rank calls smp::barrier
//   collective_mismatch backward      (dp 2) rank 0 trains a step; rank 1 skips it and leaves
//                                     main, so rank 0's gradient allreduce waits alone
//   collective_mismatch slow          rank 0 computes for 8 s before the barrier: no error
#include <smp/smp.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);
    const std::string mode = argc > 1 ? argv[1] : "left_main";
    const auto start = std::chrono::steady_clock::now();
    if (mode == "left_main") {
      if (smp::rank() == 0) smp::barrier();
    } else if (mode == "order") {
      if (smp::rank() == 0) {
        smp::barrier();
        smp::allgather(std::string("x"));
      } else {
        smp::allgather(std::string("x"));
        smp::barrier();
      }
    } else if (mode == "state_dict") {
      auto net = std::make_shared<smp::nn::Sequential>();
      for (int i = 0; i < 2; ++i) net->push_back(std::make_shared<smp::nn::Linear>(4, 4));
      smp::DistributedModel model(net);
      auto s = smp::step([](smp::DistributedModel& m, smp::Tensor x) {
        smp::Tensor loss = m(x).sum();
        m.backward(loss);
        return loss;
      });
      s(model, smp::randn({4, 4}));
      if (smp::pp_rank() == 0) model.state_dict();
      smp::barrier();
    } else if (mode == "optimizer_state_dict") {
      auto net = std::make_shared<smp::nn::Sequential>();
      for (int i = 0; i < 2; ++i) net->push_back(std::make_shared<smp::nn::Linear>(4, 4));
      smp::DistributedModel model(net);
      smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(
          model.parameters(), smp::optim::SGDOptions(0.1).momentum(0.9)));
      auto s = smp::step([](smp::DistributedModel& m, smp::Tensor x) {
        smp::Tensor loss = m(x).sum();
        m.backward(loss);
        return loss;
      });
      s(model, smp::randn({4, 4}));
      opt.step();
      if (smp::pp_rank() == 0) opt.state_dict();
      smp::barrier();
    } else if (mode == "backward") {
      auto net = std::make_shared<smp::nn::Linear>(4, 4);
      smp::DistributedModel model(net);
      auto s = smp::step([](smp::DistributedModel& m, smp::Tensor x) {
        smp::Tensor loss = m(x).sum();
        m.backward(loss);
        return loss;
      });
      smp::DistributedOptimizer opt(std::make_shared<smp::optim::SGD>(model.parameters(), 0.1));
      if (smp::rank() == 0) {
        s(model, smp::randn({4, 4}));
        opt.step();  // waits for the gradient allreduce
      }
    } else if (mode == "slow") {
      if (smp::rank() == 0) std::this_thread::sleep_for(std::chrono::seconds(8));
      smp::barrier();
    }
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("rank %d: %s finished in %.1f s\n", smp::rank(), mode.c_str(), took);
    return 0;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "collective_mismatch");
  }
}
