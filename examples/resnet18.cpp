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
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/train.h"
#include "common/train_loop.h"

namespace {

using smp_examples::UsageError;
namespace data = smp::data;

/// The model's logits and the class indices: softmax cross entropy.
smp::Tensor cross_entropy(const smp::Tensor& out, const smp::Tensor& y, smp::Reduction r) {
  return smp::cross_entropy(out, y, r);
}

/// The transfer-learning tutorial's recipe: SGD with momentum 0.9, StepLR 0.1 every 7 epochs.
struct Config : smp_examples::TrainFlags {
  Config() {
    batch_size = 32;
    test_batch_size = 64;
    optimizer = "sgd";
    momentum = 0.9;
    gamma = 0.1;
    log_interval = 10;
  }
  std::string dataset = "imagefolder", data;
  int64_t test_limit = 0, step_size = 7, workers = 1;
  int64_t image_size = 0, num_classes = 0, channels = 3;
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

int run(Config cfg) {
  smp_examples::TrainOptions o = smp_examples::start_training("resnet18", cfg);
  const smp::Device device = o.device;
  if (cfg.image_size == 0) cfg.image_size = cfg.dataset == "fashion-mnist" ? 64 : 224;

  Data d = load_data(cfg);
  const int64_t num_classes = cfg.num_classes > 0 ? cfg.num_classes : d.num_classes;
  const size_t workers = static_cast<size_t>(cfg.workers);
  const auto dp = static_cast<size_t>(smp::dp_size()),
             dp_rank = static_cast<size_t>(smp::dp_rank());
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

  o.eval_split = "val";
  o.rate_decimals = 1;
  o.extra_metrics = {{"dataset", cfg.dataset}, {"image_size", cfg.image_size}};
  smp_examples::Trainer trainer(model, opt, o, smp_examples::batches_of(train_loader),
                                static_cast<int64_t>(train_loader.size()),
                                static_cast<int64_t>(per_rank));
  trainer.schedule(scheduler);
  trainer.evaluate_with(test_loader ? smp_examples::batches_of(*test_loader) : nullptr,
                        smp_examples::accuracy_metric(cross_entropy));
  if (smp::rank() == 0)
    std::fprintf(
        stderr,
        "resnet18: %zu training / %s test images (%s, %lldx%lld, %lld classes), %lld steps "
        "(%lld epoch%s) of %lld, %s lr %g, %s, %lld threads\n",
        d.train->size(),
        test_loader ? std::to_string(test_loader->dataset()->size()).c_str() : "no",
        cfg.dataset.c_str(), static_cast<long long>(cfg.image_size),
        static_cast<long long>(cfg.image_size), static_cast<long long>(num_classes),
        static_cast<long long>(trainer.total_steps()), static_cast<long long>(trainer.epochs()),
        trainer.epochs() == 1 ? "" : "s", static_cast<long long>(cfg.batch_size),
        cfg.optimizer.c_str(), lr, device.str().c_str(), static_cast<long long>(o.threads));
  return trainer.fit(smp_examples::supervised_step(cross_entropy));
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  smp_examples::Cli cli("resnet18",
                        "Trains torchvision's ResNet-18 on an ImageFolder tree (train/, val/) or "
                        "on Fashion-MNIST.");
  cli.choice("dataset", &cfg.dataset, {"imagefolder", "fashion-mnist"},
             "data source (default imagefolder)");
  cli.option("data", &cfg.data, "DIR",
             "ImageFolder root with train/ and val/, or the Fashion-MNIST IDX folder");
  smp_examples::add_train_flags(cli, cfg, "1e-3; adadelta 1.0");
  cli.option("test-limit", &cfg.test_limit, "N", "evaluate on the first N samples only (0 = all)",
             0);
  cli.option("step-size", &cfg.step_size, "N", "StepLR period in epochs (default 7)", 1);
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
  return smp_examples::run_main("resnet18", argc, argv, cli, [&] { return run(cfg); });
}
