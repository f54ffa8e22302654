// resnet18: trains torchvision's ResNet-18 (smp::nn::ResNet18, same parameter names) on an
// ImageFolder tree with train/ and val/ (the layout of PyTorch's transfer-learning tutorial
// and its hymenoptera data) or on Fashion-MNIST resized to --image-size with the channels
// replicated, and evaluates on val/test after every epoch.
//
//   resnet18 --data hymenoptera_data [--epochs N] ...
//   resnet18 --dataset fashion-mnist --image-size 64 --batch-size 32 --steps 50
//
// Under smprun/mpirun it trains data-parallel: each DP rank reads its DistributedSampler shard
// in batches of --batch-size, gradients and batch-norm buffers are synchronised over the DP
// group, and only rank 0 prints and writes files.
#include <smp/data/dataloader.h>
#include <smp/data/image_folder.h>
#include <smp/data/mnist.h>
#include <smp/data/transforms.h>
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/train.h"

namespace {

using smp_examples::UsageError;
namespace data = smp::data;

struct Config {
  std::string dataset = "imagefolder", data;
  int64_t epochs = 1, steps = 0, batch_size = 32, test_batch_size = 64, test_limit = 0;
  std::string optimizer = "sgd";
  std::optional<double> lr;
  double momentum = 0.9, weight_decay = -1, gamma = 0.1;
  int64_t step_size = 7, seed = 1, threads = 0, workers = 1, log_interval = 10;
  int64_t image_size = 0, num_classes = 0, channels = 3;
  bool no_shuffle = false, skip_test = false;
  std::string device = "cpu", init, save, metrics;
  std::optional<std::pair<double, double>> normalize;
};

struct Data {
  std::shared_ptr<data::Dataset> train, test;
  int64_t num_classes = 0;
};

Data load_data(const Config& cfg) {
  Data d;
  if (cfg.dataset == "fashion-mnist") {
    const std::string root = cfg.data.empty() ? "/usr/share/datasets/fashion-mnist" : cfg.data;
    // Fashion-MNIST's own pixel statistics unless --normalize says otherwise.
    // A pair, not a structured binding: clang before 16 cannot capture one in the lambda.
    const auto stats = cfg.normalize.value_or(std::make_pair(0.2860, 0.3530));
    auto make = [&](bool train) {
      auto m = std::make_shared<data::MNIST>(root, train);
      m->set_normalize(stats.first, stats.second);
      return std::make_shared<data::ResizedMNIST>(m, cfg.image_size, cfg.channels);
    };
    d.train = make(true);
    if (!cfg.skip_test) d.test = make(false);
    d.num_classes = 10;
    return d;
  }
  if (cfg.data.empty()) throw UsageError("--data DIR is required with --dataset imagefolder");
  std::vector<double> mean = {0.485, 0.456, 0.406}, stdev = {0.229, 0.224, 0.225};
  if (cfg.normalize) {
    mean.assign(3, cfg.normalize->first);
    stdev.assign(3, cfg.normalize->second);
  }
  const auto seed = static_cast<uint64_t>(cfg.seed);
  auto train_tf = std::make_shared<data::Compose>(std::vector<std::shared_ptr<data::Transform>>{
      std::make_shared<data::ToTensor>(),
      std::make_shared<data::RandomResizedCrop>(cfg.image_size, std::make_pair(0.08, 1.0),
                                                std::make_pair(3.0 / 4.0, 4.0 / 3.0), seed),
      std::make_shared<data::RandomHorizontalFlip>(0.5, seed + 1),
      std::make_shared<data::Normalize>(mean, stdev)});
  // torchvision's eval recipe: Resize(256) then CenterCrop(224), scaled to --image-size.
  auto val_tf = std::make_shared<data::Compose>(std::vector<std::shared_ptr<data::Transform>>{
      std::make_shared<data::ToTensor>(),
      std::make_shared<data::Resize>(cfg.image_size * 256 / 224),
      std::make_shared<data::CenterCrop>(cfg.image_size),
      std::make_shared<data::Normalize>(mean, stdev)});
  auto train = std::make_shared<data::ImageFolder>(cfg.data + "/train", train_tf);
  d.num_classes = static_cast<int64_t>(train->classes().size());
  d.train = train;
  if (!cfg.skip_test) d.test = std::make_shared<data::ImageFolder>(cfg.data + "/val", val_tf);
  return d;
}

/// Serves only the first `limit` samples of a dataset (--test-limit).
class Prefix : public data::Dataset {
 public:
  Prefix(std::shared_ptr<data::Dataset> ds, size_t limit) : ds_(std::move(ds)), limit_(limit) {}
  size_t size() const override { return std::min(limit_, ds_->size()); }
  data::Example get(size_t i) const override { return ds_->get(i); }
  std::optional<data::Batch> get_batch(const std::vector<size_t>& idx) const override {
    return ds_->get_batch(idx);
  }

 private:
  std::shared_ptr<data::Dataset> ds_;
  size_t limit_;
};

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t correct = 0, total = 0;
};

/// This DP rank's contiguous slice of the evaluation set (no padding, unlike
/// DistributedSampler, so every sample is counted once).
class SliceSampler : public data::Sampler {
 public:
  SliceSampler(size_t n, size_t parts, size_t part)
      : first_(n * part / parts), last_(n * (part + 1) / parts) {}
  std::vector<size_t> indices(size_t) const override {
    std::vector<size_t> v;
    for (size_t i = first_; i < last_; ++i) v.push_back(i);
    return v;
  }
  size_t size() const override { return last_ - first_; }

 private:
  size_t first_, last_;
};

/// The step function of evaluation: forward only.
auto eval_step = smp::step([](smp::DistributedModel& m, smp::Tensor x) { return m(x); });

EvalResult evaluate(smp::DistributedModel& model, data::DataLoader& loader, smp::Device device) {
  smp::NoGradGuard no_grad;
  model.eval();
  double loss_sum = 0;
  int64_t correct = 0, total = 0;
  for (data::Batch& b : loader) {
    smp::Tensor x = b.data.to(device, /*non_blocking=*/true);
    smp::Tensor y = b.target.to(device, /*non_blocking=*/true);
    if (!smp_examples::tail_splits(y.size(0))) continue;  // the short last batch, as drop_last
    smp::Tensor out = eval_step(model, x).concat();
    loss_sum += smp::cross_entropy(out, y, smp::Reduction::Sum).item<double>();
    correct += out.argmax(1).eq(y).sum().item<int64_t>();
    total += y.size(0);
  }
  const auto v =
      smp_examples::dp_sum({loss_sum, static_cast<double>(correct), static_cast<double>(total)});
  loss_sum = v[0];
  correct = static_cast<int64_t>(v[1]);
  total = static_cast<int64_t>(v[2]);
  model.train();
  const double n = static_cast<double>(std::max<int64_t>(total, 1));
  return {loss_sum / n, static_cast<double>(correct) / n, correct, total};
}

int run(Config cfg) {
  smp_examples::check_splits("--batch-size", cfg.batch_size);
  if (!cfg.skip_test) smp_examples::check_splits("--test-batch-size", cfg.test_batch_size);
  const int64_t threads = smp_examples::apply_threads(cfg.threads);
  smp::manual_seed(static_cast<uint64_t>(cfg.seed));
  const smp::Device device(cfg.device);
  if (device.is_cuda() && !smp::cuda::is_compiled())
    throw UsageError("--device: cuda requested but this build has no CUDA support");
  if (cfg.image_size == 0) cfg.image_size = cfg.dataset == "fashion-mnist" ? 64 : 224;

  Data d = load_data(cfg);
  const int64_t num_classes = cfg.num_classes > 0 ? cfg.num_classes : d.num_classes;
  const size_t workers = static_cast<size_t>(cfg.workers);
  const auto dp = static_cast<size_t>(smp::dp_size()),
             dp_rank = static_cast<size_t>(smp::dp_rank());
  const bool lead = smp::rank() == 0;
  auto train_options = data::DataLoaderOptions(static_cast<size_t>(cfg.batch_size))
                           .shuffle(!cfg.no_shuffle)
                           .seed(static_cast<uint64_t>(cfg.seed))
                           .num_workers(workers)
                           .pin_memory(device.is_cuda());
  size_t per_rank = d.train->size();
  if (dp > 1) {
    auto sampler = std::make_shared<data::DistributedSampler>(
        d.train->size(), dp, dp_rank, !cfg.no_shuffle, static_cast<uint64_t>(cfg.seed));
    per_rank = sampler->size();
    train_options.sampler(sampler);
  }
  // A short last batch that smp::step cannot split is left out, and left out of the count.
  train_options.drop_last(
      !smp_examples::tail_splits(static_cast<int64_t>(per_rank % train_options.batch_size())));
  data::DataLoader train_loader(d.train, train_options);
  std::optional<data::DataLoader> test_loader;
  if (d.test) {
    auto test = cfg.test_limit > 0 ? std::make_shared<Prefix>(d.test, cfg.test_limit) : d.test;
    test_loader.emplace(test,
                        data::DataLoaderOptions(static_cast<size_t>(cfg.test_batch_size))
                            .sampler(std::make_shared<SliceSampler>(test->size(), dp, dp_rank))
                            .num_workers(workers)
                            .pin_memory(device.is_cuda()));
  }

  auto net = std::make_shared<smp::nn::ResNet18>(num_classes, cfg.channels);
  if (!cfg.init.empty()) smp_examples::load_weights(*net, cfg.init);
  net->to(device);
  net->train();
  smp::DistributedModel model(net);

  const double lr = cfg.lr.value_or(cfg.optimizer == "adadelta" ? 1.0 : 1e-3);
  smp::DistributedOptimizer opt(smp_examples::make_optimizer(cfg.optimizer, model.parameters(), lr,
                                                             cfg.momentum, cfg.weight_decay));
  smp::optim::StepLR scheduler(opt.optimizer(), cfg.step_size, cfg.gamma);
  auto train_step = smp::step([](smp::DistributedModel& m, smp::Tensor x, smp::Tensor y) {
    smp::Tensor loss = smp::cross_entropy(m(x), y);
    m.backward(loss);
    return loss;
  });

  const auto per_epoch = static_cast<int64_t>(train_loader.size());
  if (per_epoch == 0)
    throw smp::ConfigError(fmt::format(
        "--batch-size {}: each data-parallel rank has {} training images, which do not split "
        "into {} microbatches",
        cfg.batch_size, per_rank, smp::config().microbatches));
  const int64_t total_steps =
      cfg.steps > 0 ? std::min(cfg.steps, per_epoch * cfg.epochs) : per_epoch * cfg.epochs;
  const int64_t epochs = (total_steps + per_epoch - 1) / per_epoch;
  if (lead)
    std::fprintf(
        stderr,
        "resnet18: %zu training / %s test images (%s, %lldx%lld, %lld classes), %lld steps "
        "(%lld epoch%s) of %lld, %s lr %g, %s, %lld threads\n",
        d.train->size(),
        test_loader ? std::to_string(test_loader->dataset()->size()).c_str() : "no",
        cfg.dataset.c_str(), static_cast<long long>(cfg.image_size),
        static_cast<long long>(cfg.image_size), static_cast<long long>(num_classes),
        static_cast<long long>(total_steps), static_cast<long long>(epochs), epochs == 1 ? "" : "s",
        static_cast<long long>(cfg.batch_size), cfg.optimizer.c_str(), lr, device.str().c_str(),
        static_cast<long long>(threads));

  int64_t step = 0, samples = 0;
  double final_loss = NAN, train_seconds = 0;
  EvalResult last_eval;
  bool evaluated = false;
  for (int64_t epoch = 1; epoch <= epochs && step < total_steps; ++epoch) {
    train_loader.set_epoch(static_cast<size_t>(epoch - 1));
    smp_examples::Progress bar("epoch " + std::to_string(epoch),
                               std::min(per_epoch, total_steps - step), cfg.log_interval, lead);
    smp_examples::Stopwatch clock;
    int64_t epoch_samples = 0, epoch_steps = 0;
    for (data::Batch& b : train_loader) {
      smp::Tensor x = b.data.to(device, /*non_blocking=*/true);
      smp::Tensor y = b.target.to(device, /*non_blocking=*/true);
      opt.zero_grad();
      smp::StepOutput loss_mb = train_step(model, x, y);
      opt.step();
      ++step;
      ++epoch_steps;
      epoch_samples += y.size(0) * static_cast<int64_t>(dp);
      final_loss = loss_mb.reduce_mean().item<double>();
      bar.update(epoch_steps, final_loss,
                 static_cast<double>(epoch_samples) / std::max(1e-9, clock.seconds()));
      if (step >= total_steps) break;
    }
    if (device.is_cuda()) smp::cuda::synchronize();
    train_seconds += clock.seconds();
    samples += epoch_samples;
    bar.finish();
    scheduler.step();
    if (test_loader) {
      last_eval = evaluate(model, *test_loader, device);
      evaluated = true;
      if (lead)
        std::printf("epoch %lld: train loss %.4f  val loss %.4f, accuracy %lld/%lld (%.2f%%)\n",
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
        "resnet18: %lld steps, %lld samples in %.2f s (%.1f samples/s), final loss %.4f, "
        "val accuracy %s, peak RSS %.0f MB\n",
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
    nlohmann::json m = r.to_json("resnet18");
    m["dataset"] = cfg.dataset;
    m["image_size"] = cfg.image_size;
    smp_examples::write_metrics(cfg.metrics, m);
  }
  return std::isfinite(final_loss) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    smp::init(argc, argv);  // takes --smp-config FILE out of argv
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "resnet18");
  }
  Config cfg;
  smp_examples::Cli cli("resnet18",
                        "Trains torchvision's ResNet-18 on an ImageFolder tree (train/, val/) or "
                        "on Fashion-MNIST.");
  cli.choice("dataset", &cfg.dataset, {"imagefolder", "fashion-mnist"},
             "data source (default imagefolder)");
  cli.option("data", &cfg.data, "DIR",
             "ImageFolder root with train/ and val/, or the Fashion-MNIST IDX folder");
  cli.option("epochs", &cfg.epochs, "N", "epochs to train (default 1)", 1);
  cli.option("steps", &cfg.steps, "N", "stop after N optimizer steps (0 = no limit)", 0);
  cli.option("batch-size", &cfg.batch_size, "B", "training batch size (default 32)", 1);
  cli.option("test-batch-size", &cfg.test_batch_size, "B", "evaluation batch size (default 64)", 1);
  cli.option("test-limit", &cfg.test_limit, "N", "evaluate on the first N samples only (0 = all)",
             0);
  cli.choice("optimizer", &cfg.optimizer, {"adadelta", "sgd", "adam", "adamw"},
             "optimizer (default sgd, as the transfer-learning tutorial)");
  cli.custom("lr", "F", "learning rate (default 1e-3; adadelta 1.0)",
             [&](const std::string& v) { cfg.lr = smp_examples::parse_double("lr", v); });
  cli.option("momentum", &cfg.momentum, "F", "SGD momentum (default 0.9)", 0.0);
  cli.option("weight-decay", &cfg.weight_decay, "F",
             "weight decay (default: the optimizer's, 0 or AdamW's 0.01)", 0.0);
  cli.option("step-size", &cfg.step_size, "N", "StepLR period in epochs (default 7)", 1);
  cli.option("gamma", &cfg.gamma, "F", "StepLR factor (default 0.1)", 0.0);
  cli.option("seed", &cfg.seed, "N", "random seed (default 1)", 0);
  cli.flag("no-shuffle", &cfg.no_shuffle, "batches in file order: batch i = samples iB..iB+B-1");
  cli.choice("device", &cfg.device, {"cpu", "cuda"}, "device (default cpu)");
  cli.option("threads", &cfg.threads, "N",
             "CPU threads per process (default: OMP_NUM_THREADS, else the cores divided among "
             "the ranks on this host)",
             0);
  cli.option("workers", &cfg.workers, "N", "data loader threads (default 1)", 0);
  cli.option("image-size", &cfg.image_size, "N",
             "input size (default 224 imagefolder, 64 fashion-mnist)", 8);
  cli.option("num-classes", &cfg.num_classes, "N",
             "classifier outputs (default: the dataset's classes)", 1);
  cli.option("channels", &cfg.channels, "N",
             "input channels (fashion-mnist replicates its one channel; default 3)", 1);
  cli.custom("normalize", "MEAN,STD",
             "input normalisation for every channel (default ImageNet's, or 0.2860,0.3530)",
             [&](const std::string& v) {
               cfg.normalize = smp_examples::parse_pair("normalize", v);
               if (!(cfg.normalize->second > 0))
                 throw UsageError("--normalize: STD must be positive");
             });
  cli.option("init", &cfg.init, "FILE", "load initial weights (.safetensors, PyTorch names)");
  cli.option("save", &cfg.save, "FILE", "write the final weights (.safetensors, PyTorch names)");
  cli.option("metrics", &cfg.metrics, "FILE", "write run metrics as JSON");
  cli.option("log-interval", &cfg.log_interval, "N",
             "steps between progress lines when stderr is not a terminal (default 10)", 1);
  cli.flag("skip-test", &cfg.skip_test, "do not evaluate");
  try {
    if (!cli.parse(argc, argv)) return 0;
  } catch (const UsageError& e) {
    if (smp::rank() == 0) std::fprintf(stderr, "resnet18: %s\n\n%s", e.what(), cli.usage().c_str());
    return 2;
  }
  try {
    return run(cfg);
  } catch (const UsageError& e) {
    if (smp::rank() == 0) std::fprintf(stderr, "resnet18: %s\n\n%s", e.what(), cli.usage().c_str());
    return 2;
  } catch (const std::exception& e) {
    return smp::handle_exception(e, "resnet18");
  }
}
