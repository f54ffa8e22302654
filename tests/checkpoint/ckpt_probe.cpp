// Trains a small network under the configuration it was started with, saving a checkpoint
// after step --save-at, or resumes from --dir's newest checkpoint; writes the final weights
// (gathered, PyTorch names) to --out. The checkpoint tests (CMakeLists.txt) compare a resumed
// run with the uninterrupted one: bit for bit under the same layout, within float32 noise
// under another.
//
//   ckpt_probe --mode train|resume --dir D --steps N [--save-at K]... --out F
//              [--optimizer sgd|adam] [--dropout P] [--width W] [--full]
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace {

struct Args {
  std::string mode, dir, out, optimizer = "sgd";
  int steps = 0, width = 16;
  std::vector<int> save_at;
  double dropout = 0;
  bool full = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw smp::Error("ckpt_probe: " + k + " needs a value");
      return argv[++i];
    };
    if (k == "--mode")
      a.mode = next();
    else if (k == "--dir")
      a.dir = next();
    else if (k == "--out")
      a.out = next();
    else if (k == "--optimizer")
      a.optimizer = next();
    else if (k == "--steps")
      a.steps = std::stoi(next());
    else if (k == "--save-at")
      a.save_at.push_back(std::stoi(next()));
    else if (k == "--dropout")
      a.dropout = std::stod(next());
    else if (k == "--width")
      a.width = std::stoi(next());
    else if (k == "--full")
      a.full = true;
    else
      throw smp::Error("ckpt_probe: unknown flag " + k);
  }
  if (a.mode != "train" && a.mode != "resume") throw smp::Error("ckpt_probe: --mode train|resume");
  return a;
}

/// Four linear layers (all distributed under tensor parallelism), ReLU and dropout between.
std::shared_ptr<smp::nn::Sequential> build(double dropout, int width) {
  smp::manual_seed(5);
  smp::tensor_parallelism tp;
  auto m = std::make_shared<smp::nn::Sequential>();
  const int w[5] = {8, width, width, width, 4};
  for (int i = 0; i < 4; ++i) {
    m->push_back(std::make_shared<smp::nn::Linear>(w[i], w[i + 1]));
    if (i < 3) {
      m->push_back(std::make_shared<smp::nn::ReLU>());
      m->push_back(std::make_shared<smp::nn::Dropout>(dropout));
    }
  }
  return m;
}

/// Step s's global batch (16 rows, from a formula: the generators belong to the weights and
/// dropout, whose streams a resume must continue), split evenly over the data-reading ranks so
/// that every layout trains on the same global batches.
std::pair<smp::Tensor, smp::Tensor> batch(int s, int reader, int readers) {
  constexpr int kRows = 16;
  std::vector<float> x(kRows * 8);
  std::vector<int64_t> y(kRows);
  for (int i = 0; i < kRows; ++i) {
    for (int j = 0; j < 8; ++j)
      x[static_cast<size_t>(i * 8 + j)] = static_cast<float>(std::sin(0.7 * (s * 131 + i * 8 + j)));
    y[static_cast<size_t>(i)] = (s + i) % 4;
  }
  const int rows = kRows / readers;
  return {smp::tensor<float>(x, {kRows, 8}).narrow(0, reader * rows, rows).contiguous(),
          smp::tensor<int64_t>(y, {kRows}).narrow(0, reader * rows, rows).contiguous()};
}

int run(const Args& a) {
  auto net = build(a.dropout, a.width);
  smp::DistributedModel model(net);
  std::shared_ptr<smp::optim::Optimizer> inner;
  if (a.optimizer == "adam")
    inner = std::make_shared<smp::optim::Adam>(model.parameters(), smp::optim::AdamOptions(1e-2));
  else
    inner = std::make_shared<smp::optim::SGD>(model.parameters(),
                                              smp::optim::SGDOptions(0.1).momentum(0.9));
  smp::DistributedOptimizer opt(inner);
  int first = 0;
  if (a.mode == "resume") {
    const nlohmann::json user = smp::resume_from_checkpoint(a.dir, model, &opt);
    first = user.at("step").get<int>() + 1;
  }
  auto train_step = smp::step([](smp::DistributedModel& m, smp::Tensor x, smp::Tensor y) {
    smp::Tensor loss = smp::cross_entropy(m(x), y);
    m.backward(loss);
    return loss;
  });
  const bool prescaled = smp::config().prescaled_batch;
  const int d = prescaled ? smp::rdp_rank() : smp::dp_rank();
  const int readers = prescaled ? smp::rdp_size() : smp::dp_size();
  for (int s = first; s < a.steps; ++s) {
    auto [x, y] = batch(s, d, readers);
    opt.zero_grad();
    train_step(model, x, y);
    opt.step();
    if (std::find(a.save_at.begin(), a.save_at.end(), s) != a.save_at.end())
      smp::save_checkpoint(a.dir, "step_" + std::to_string(s), !a.full, model, &opt, {{"step", s}});
  }
  smp::save(model.state_dict(), a.out, /*partial=*/false);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  smp::init(argc, argv);
  try {
    const int rc = run(parse(argc, argv));
    smp::finalize();
    return rc;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "ckpt_probe");
  }
}
