// mnist: the PyTorch MNIST example (pytorch/examples mnist/main.py) on libsmp — the CNN of
// smp::nn::MnistNet trained with Adadelta (lr 1.0, StepLR gamma 0.7 per epoch) on MNIST or
// Fashion-MNIST (IDX files), evaluated on the test set after every epoch.
//
//   mnist [--data DIR] [--epochs N] [--steps N] [--optimizer sgd --lr 0.01 ...]  (--help)
//
// The same program runs data-parallel under smprun (or mpirun): each DP rank reads its shard
// of every epoch (DistributedSampler) in batches of --batch-size, gradients are averaged over
// the DP group, and only rank 0 prints and writes files.
//
// Random numbers come as in the PyTorch example: the same --seed builds the same initial
// weights, and the draws its DataLoaders make (smp::data::torch_dataloader_epoch) give the
// same shuffle, so dropout masks follow too; one process trains what PyTorch trains, up to
// float rounding.
#include <smp/data/mnist.h>
#include <smp/data/sampler.h>
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/cli.h"
#include "common/train.h"

namespace {

using smp_examples::UsageError;

struct Config {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int64_t epochs = 1, steps = 0, batch_size = 64, test_batch_size = 1000;
  std::string optimizer = "adadelta";
  std::optional<double> lr;
  double momentum = 0, weight_decay = -1, gamma = 0.7;
  int64_t seed = 1, threads = 0, log_interval = 100;
  bool no_shuffle = false, skip_test = false;
  std::string device = "cpu", init, save, metrics, dropout = "on";
  double mean = 0.1307, stdev = 0.3081;
};

/// Images of one split held as uint8 (as the IDX files store them): batches are built by
/// converting and normalising only the 64 images they need, which keeps memory at the
/// dataset's 47 MB instead of a 188 MB float copy.
class Split {
 public:
  Split(const std::string& root, bool train)
      : ds_(root, train),
        images_(ds_.images().contiguous()),
        targets_(ds_.targets().contiguous()) {}
  int64_t size() const { return images_.size(0); }

  /// Samples order[begin, end) as a normalised float32 (B,1,28,28) batch and int64 targets.
  smp::data::Batch batch(const std::vector<int64_t>& order, int64_t begin, int64_t end, float mean,
                         float stdev) const {
    const int64_t b = end - begin, hw = images_.size(1) * images_.size(2);
    smp::Tensor x = smp::empty({b, 1, images_.size(1), images_.size(2)}, smp::kFloat32);
    smp::Tensor y = smp::empty({b}, smp::kInt64);
    const uint8_t* src = images_.data_ptr<uint8_t>();
    const int64_t* lab = targets_.data_ptr<int64_t>();
    float* dst = x.data_ptr<float>();
    int64_t* ydst = y.data_ptr<int64_t>();
    // torchvision's float32 steps (ToTensor's /255, then Normalize's − mean, / std), bit for
    // bit, from a table of the 256 pixel values.
    float table[256];
    for (int p = 0; p < 256; ++p) table[p] = (static_cast<float>(p) / 255.0f - mean) / stdev;
    for (int64_t i = 0; i < b; ++i) {
      const int64_t s = order.empty() ? begin + i : order[static_cast<size_t>(begin + i)];
      const uint8_t* img = src + s * hw;
      float* out = dst + i * hw;
      for (int64_t k = 0; k < hw; ++k) out[k] = table[img[k]];
      ydst[i] = lab[s];
    }
    return {x, y};
  }

 private:
  smp::data::MNIST ds_;
  smp::Tensor images_, targets_;
};

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t correct = 0, total = 0;
};

/// The step function of evaluation: forward only.
auto eval_step = smp::step([](smp::DistributedModel& m, smp::Tensor x) { return m(x); });

/// Each DP rank evaluates a contiguous slice of the test set; the sums are added over the group.
/// A slice's last, short batch is left out when it does not split into the microbatches (the
/// reported total says how many images were evaluated).
EvalResult evaluate(smp::DistributedModel& model, const Split& test, const Config& cfg,
                    smp::Device device) {
  smp::NoGradGuard no_grad;
  model.eval();
  smp::data::torch_dataloader_epoch(0, false);  // the draw iterating the test loader makes
  double loss_sum = 0;
  int64_t correct = 0, total = 0;
  const int64_t n = test.size(), dp = smp::dp_size(), r = smp::dp_rank();
  const int64_t first = n * r / dp, last = n * (r + 1) / dp;
  for (int64_t begin = first; begin < last; begin += cfg.test_batch_size) {
    const int64_t end = std::min(last, begin + cfg.test_batch_size);
    if (!smp_examples::tail_splits(end - begin)) break;
    auto b =
        test.batch({}, begin, end, static_cast<float>(cfg.mean), static_cast<float>(cfg.stdev));
    smp::Tensor x = b.data.to(device), y = b.target.to(device);
    // A forward-only step: with a pipeline every rank gets the outputs of every microbatch.
    smp::Tensor out = eval_step(model, x).concat();
    loss_sum += smp::nll_loss(out, y, smp::Reduction::Sum).item<double>();
    correct += out.argmax(1).eq(y).sum().item<int64_t>();
    total += end - begin;
  }
  const auto sums =
      smp_examples::dp_sum({loss_sum, static_cast<double>(correct), static_cast<double>(total)});
  loss_sum = sums[0];
  correct = static_cast<int64_t>(sums[1]);
  total = static_cast<int64_t>(sums[2]);
  model.train();
  const double evaluated = static_cast<double>(std::max<int64_t>(total, 1));
  return {loss_sum / evaluated, static_cast<double>(correct) / evaluated, correct, total};
}

int run(const Config& cfg) {
  smp_examples::check_splits("--batch-size", cfg.batch_size);
  if (!cfg.skip_test) smp_examples::check_splits("--test-batch-size", cfg.test_batch_size);
  const int64_t threads = smp_examples::apply_threads(cfg.threads);
  smp::manual_seed(static_cast<uint64_t>(cfg.seed));
  const smp::Device device(cfg.device);
  if (device.is_cuda() && !smp::cuda::is_compiled())
    throw UsageError("--device: cuda requested but this build has no CUDA support");

  Split train(cfg.data, true);
  std::optional<Split> test;
  if (!cfg.skip_test) test.emplace(cfg.data, false);

  auto net = std::make_shared<smp::nn::MnistNet>(cfg.dropout == "on");
  if (!cfg.init.empty()) smp_examples::load_weights(*net, cfg.init);
  net->to(device);
  net->train();
  smp::DistributedModel model(net);

  const double lr = cfg.lr.value_or(smp_examples::default_lr(cfg.optimizer));
  smp::DistributedOptimizer opt(smp_examples::make_optimizer(cfg.optimizer, model.parameters(), lr,
                                                             cfg.momentum, cfg.weight_decay));
  smp::optim::StepLR scheduler(opt.optimizer(), 1, cfg.gamma);

  // One training step, pipelined over microbatches and partitions as the configuration says.
  auto train_step = smp::step([](smp::DistributedModel& m, smp::Tensor x, smp::Tensor y) {
    smp::Tensor loss = smp::nll_loss(m(x), y);
    m.backward(loss);
    return loss;
  });

  // Data parallelism: this rank's share of each epoch, as torch's DistributedSampler deals it.
  const int64_t dp = smp::dp_size();
  const bool lead = smp::rank() == 0;
  std::optional<smp::data::DistributedSampler> sampler;
  if (dp > 1)
    sampler.emplace(static_cast<size_t>(train.size()), static_cast<size_t>(dp),
                    static_cast<size_t>(smp::dp_rank()), !cfg.no_shuffle,
                    static_cast<uint64_t>(cfg.seed));
  const int64_t n = sampler ? static_cast<int64_t>(sampler->size()) : train.size();
  const int64_t tail = n % cfg.batch_size;
  const int64_t per_epoch =
      n / cfg.batch_size + (tail > 0 && smp_examples::tail_splits(tail) ? 1 : 0);
  if (per_epoch == 0)
    throw smp::ConfigError(fmt::format(
        "--batch-size {}: each data-parallel rank has {} training images, which do not split "
        "into {} microbatches",
        cfg.batch_size, n, smp::config().microbatches));
  const int64_t total_steps =
      cfg.steps > 0 ? std::min(cfg.steps, per_epoch * cfg.epochs) : per_epoch * cfg.epochs;
  const int64_t epochs = (total_steps + per_epoch - 1) / per_epoch;
  if (lead)
    std::fprintf(stderr,
                 "mnist: %lld training / %s test images from %s, %lld steps (%lld epoch%s) of "
                 "%lld%s, %s lr %g, %s, %lld threads%s\n",
                 static_cast<long long>(train.size()),
                 test ? std::to_string(test->size()).c_str() : "no", cfg.data.c_str(),
                 static_cast<long long>(total_steps), static_cast<long long>(epochs),
                 epochs == 1 ? "" : "s", static_cast<long long>(cfg.batch_size),
                 dp > 1 ? (" x " + std::to_string(dp) + " DP ranks").c_str() : "",
                 cfg.optimizer.c_str(), lr, device.str().c_str(), static_cast<long long>(threads),
                 smp::size() > 1 ? " per process" : "");

  int64_t step = 0, samples = 0;
  double final_loss = NAN, train_seconds = 0;
  EvalResult last_eval;
  bool evaluated = false;
  const float mean = static_cast<float>(cfg.mean), stdev = static_cast<float>(cfg.stdev);
  for (int64_t epoch = 1; epoch <= epochs && step < total_steps; ++epoch) {
    std::vector<int64_t> order;
    const bool shuffle = !sampler && !cfg.no_shuffle;
    const auto loader_order = smp::data::torch_dataloader_epoch(static_cast<size_t>(n), shuffle);
    if (sampler) {
      for (size_t i : sampler->indices(static_cast<size_t>(epoch - 1)))
        order.push_back(static_cast<int64_t>(i));
    } else if (shuffle) {
      order.assign(loader_order.begin(), loader_order.end());
    }
    smp_examples::Progress bar("epoch " + std::to_string(epoch),
                               std::min(per_epoch, total_steps - step), cfg.log_interval, lead);
    smp_examples::Stopwatch epoch_clock;
    int64_t epoch_samples = 0, epoch_steps = 0;
    for (int64_t begin = 0; begin < n && step < total_steps; begin += cfg.batch_size) {
      const int64_t end = std::min(n, begin + cfg.batch_size);
      if (!smp_examples::tail_splits(end - begin)) break;  // the short last batch, as drop_last
      auto b = train.batch(order, begin, end, mean, stdev);
      smp::Tensor x = b.data.to(device), y = b.target.to(device);
      opt.zero_grad();
      smp::StepOutput loss_mb = train_step(model, x, y);
      opt.step();
      ++step;
      ++epoch_steps;
      epoch_samples += (end - begin) * dp;
      final_loss = loss_mb.reduce_mean().item<double>();
      bar.update(epoch_steps, final_loss,
                 static_cast<double>(epoch_samples) / std::max(1e-9, epoch_clock.seconds()));
    }
    if (device.is_cuda()) smp::cuda::synchronize();
    train_seconds += epoch_clock.seconds();
    samples += epoch_samples;
    bar.finish();
    scheduler.step();
    if (test) {
      last_eval = evaluate(model, *test, cfg, device);
      evaluated = true;
      if (lead)
        std::printf("epoch %lld: train loss %.4f  test loss %.4f, accuracy %lld/%lld (%.2f%%)\n",
                    static_cast<long long>(epoch), final_loss, last_eval.loss,
                    static_cast<long long>(last_eval.correct),
                    static_cast<long long>(last_eval.total), 100 * last_eval.accuracy);
      std::fflush(stdout);
    }
  }

  final_loss = smp_examples::dp_mean(final_loss);  // the global batch's, not this shard's
  const double sps = static_cast<double>(samples) / std::max(1e-9, train_seconds);
  if (lead)
    std::printf(
        "mnist: %lld steps, %lld samples in %.2f s (%.0f samples/s), final loss %.4f, "
        "test accuracy %s, peak RSS %.0f MB\n",
        static_cast<long long>(step), static_cast<long long>(samples), train_seconds, sps,
        final_loss,
        evaluated ? (std::to_string(100 * last_eval.accuracy).substr(0, 5) + "%").c_str() : "n/a",
        smp_examples::peak_rss_mb());

  if (!cfg.save.empty()) smp_examples::save_model(model, cfg.save);
  if (lead && !cfg.metrics.empty()) {
    smp_examples::RunMetrics r;
    r.steps = step;
    r.samples = samples;
    r.epochs = epochs;
    r.batch_size = cfg.batch_size;
    r.threads = threads;
    r.device = device.str();
    r.optimizer = cfg.optimizer;
    r.train_seconds = train_seconds;
    r.samples_per_second = sps;
    r.final_loss = final_loss;
    if (evaluated) {
      r.test_loss = last_eval.loss;
      r.test_accuracy = last_eval.accuracy;
    }
    nlohmann::json m = r.to_json("mnist");
    smp_examples::write_metrics(cfg.metrics, m);
  }
  return std::isfinite(final_loss) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);  // takes --smp-config FILE out of argv
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "mnist");
  }
  Config cfg;
  smp_examples::Cli cli("mnist",
                        "Trains the PyTorch MNIST example's CNN on MNIST/Fashion-MNIST IDX files.");
  cli.option("data", &cfg.data, "DIR", "folder with the IDX files (default " + cfg.data + ")");
  cli.option("epochs", &cfg.epochs, "N", "epochs to train (default 1)", 1);
  cli.option("steps", &cfg.steps, "N", "stop after N optimizer steps (0 = no limit)", 0);
  cli.option("batch-size", &cfg.batch_size, "B", "training batch size (default 64)", 1);
  cli.option("test-batch-size", &cfg.test_batch_size, "B", "test batch size (default 1000)", 1);
  cli.choice("optimizer", &cfg.optimizer, {"adadelta", "sgd", "adam", "adamw"},
             "optimizer (default adadelta)");
  cli.custom("lr", "F", "learning rate (default 1.0 adadelta, 0.01 sgd, 1e-3 adam/adamw)",
             [&](const std::string& v) { cfg.lr = smp_examples::parse_double("lr", v); });
  cli.option("momentum", &cfg.momentum, "F", "SGD momentum (default 0)", 0.0);
  cli.option("weight-decay", &cfg.weight_decay, "F",
             "weight decay (default: the optimizer's, 0 or AdamW's 0.01)", 0.0);
  cli.option("gamma", &cfg.gamma, "F", "StepLR factor applied after every epoch (default 0.7)",
             0.0);
  cli.option("seed", &cfg.seed, "N", "random seed (default 1)", 0);
  cli.flag("no-shuffle", &cfg.no_shuffle, "batches in file order: batch i = samples iB..iB+B-1");
  cli.choice("device", &cfg.device, {"cpu", "cuda"}, "device (default cpu)");
  cli.option("threads", &cfg.threads, "N",
             "CPU threads per process (default: OMP_NUM_THREADS, else the cores divided among "
             "the ranks on this host)",
             0);
  cli.option("init", &cfg.init, "FILE", "load initial weights (.safetensors, PyTorch names)");
  cli.option("save", &cfg.save, "FILE", "write the final weights (.safetensors, PyTorch names)");
  cli.option("metrics", &cfg.metrics, "FILE", "write run metrics as JSON");
  cli.custom("normalize", "MEAN,STD", "input normalisation (default 0.1307,0.3081)",
             [&](const std::string& v) {
               std::tie(cfg.mean, cfg.stdev) = smp_examples::parse_pair("normalize", v);
               if (!(cfg.stdev > 0)) throw UsageError("--normalize: STD must be positive");
             });
  cli.choice("dropout", &cfg.dropout, {"on", "off"}, "the model's dropout layers (default on)");
  cli.option("log-interval", &cfg.log_interval, "N",
             "steps between progress lines when stderr is not a terminal (default 100)", 1);
  cli.flag("skip-test", &cfg.skip_test, "do not evaluate on the test set");
  // Usage errors are the same on every rank (same argv): each exits, rank 0 says why.
  try {
    if (!cli.parse(argc, argv)) return 0;
  } catch (const UsageError& e) {
    if (smp::rank() == 0) std::fprintf(stderr, "mnist: %s\n\n%s", e.what(), cli.usage().c_str());
    return 2;
  }
  try {
    return run(cfg);
  } catch (const UsageError& e) {
    if (smp::rank() == 0) std::fprintf(stderr, "mnist: %s\n\n%s", e.what(), cli.usage().c_str());
    return 2;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "mnist");
  }
}
