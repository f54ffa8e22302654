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
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/cli.h"
#include "common/train.h"
#include "common/train_loop.h"

namespace {

using smp_examples::UsageError;

/// The model ends in log_softmax: its loss is the negative log-likelihood.
smp::Tensor nll_loss(const smp::Tensor& out, const smp::Tensor& y, smp::Reduction r) {
  return smp::nll_loss(out, y, r);
}

/// The PyTorch example's defaults: TrainFlags' own (batch 64, test batch 1000, Adadelta,
/// StepLR gamma 0.7 after every epoch).
struct Config : smp_examples::TrainFlags {
  std::string data = "/usr/share/datasets/fashion-mnist", dropout = "on";
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

/// The batches of samples order[first, last) (file order when `order` is empty) of `split`,
/// `batch` at a time; a short last batch that smp::step cannot split is left out, as drop_last.
void for_each_batch(const Split& split, const std::vector<int64_t>& order, int64_t first,
                    int64_t last, int64_t batch, const Config& cfg,
                    const std::function<bool(smp::data::Batch&)>& use) {
  for (int64_t begin = first; begin < last; begin += batch) {
    const int64_t end = std::min(last, begin + batch);
    if (!smp_examples::tail_splits(end - begin)) break;
    auto b =
        split.batch(order, begin, end, static_cast<float>(cfg.mean), static_cast<float>(cfg.stdev));
    if (!use(b)) break;
  }
}

int run(const Config& cfg) {
  smp_examples::TrainOptions o = smp_examples::start_training("mnist", cfg);
  const smp::Device device = o.device;
  Split train(cfg.data, true);
  std::optional<Split> test;
  if (!cfg.skip_test) test.emplace(cfg.data, false);

  auto net = smp_examples::build_model<smp::nn::MnistNet>(cfg.tensor_parallelism, [&] {
    return std::make_shared<smp::nn::MnistNet>(cfg.dropout == "on");
  });
  if (!cfg.init.empty()) smp_examples::load_weights(*net, cfg.init);
  net->to(device);
  net->train();
  smp::DistributedModel model(net);

  const double lr = cfg.lr.value_or(smp_examples::default_lr(cfg.optimizer));
  smp::DistributedOptimizer opt(smp_examples::make_optimizer(cfg.optimizer, model.parameters(), lr,
                                                             cfg.momentum, cfg.weight_decay));
  smp::optim::StepLR scheduler(opt.optimizer(), 1, cfg.gamma);

  // Data parallelism: this rank's share of each epoch, as torch's DistributedSampler deals it.
  // Every DP rank reads its own share (a tensor-parallel group then works on the batches of
  // all its ranks); with prescaled_batch the ranks of a TP group share one, so the shares go
  // to the RDP ranks.
  const bool prescaled = smp::config().prescaled_batch;
  const int64_t dp = prescaled ? smp::rdp_size() : smp::dp_size();
  const int64_t dp_rank = prescaled ? smp::rdp_rank() : smp::dp_rank();
  o.readers = dp;
  std::optional<smp::data::DistributedSampler> sampler;
  if (dp > 1)
    sampler.emplace(static_cast<size_t>(train.size()), static_cast<size_t>(dp),
                    static_cast<size_t>(dp_rank), !cfg.no_shuffle, static_cast<uint64_t>(cfg.seed));
  const int64_t n = sampler ? static_cast<int64_t>(sampler->size()) : train.size();
  const int64_t tail = n % cfg.batch_size;
  const int64_t per_epoch =
      n / cfg.batch_size + (tail > 0 && smp_examples::tail_splits(tail) ? 1 : 0);
  // An epoch makes the draws the PyTorch example's DataLoader makes, then its batches.
  auto train_batches = [&](int64_t epoch, const std::function<bool(smp::data::Batch&)>& use) {
    std::vector<int64_t> order;
    const bool shuffle = !sampler && !cfg.no_shuffle;
    const auto loader_order = smp::data::torch_dataloader_epoch(static_cast<size_t>(n), shuffle);
    if (sampler) {
      for (size_t i : sampler->indices(static_cast<size_t>(epoch - 1)))
        order.push_back(static_cast<int64_t>(i));
    } else if (shuffle) {
      order.assign(loader_order.begin(), loader_order.end());
    }
    for_each_batch(train, order, 0, n, cfg.batch_size, cfg, use);
  };
  // Each DP rank evaluates a contiguous slice of the test set (the reported total says how
  // many images were evaluated).
  auto test_batches = [&](int64_t, const std::function<bool(smp::data::Batch&)>& use) {
    smp::data::torch_dataloader_epoch(0, false);  // the draw iterating the test loader makes
    const int64_t size = test->size(), r = dp_rank;
    for_each_batch(*test, {}, size * r / dp, size * (r + 1) / dp, cfg.test_batch_size, cfg, use);
  };

  smp_examples::Trainer trainer(model, opt, o, train_batches, per_epoch, n);
  trainer.schedule(scheduler);
  trainer.evaluate_with(test ? smp_examples::BatchSource(test_batches) : nullptr,
                        smp_examples::accuracy_metric(nll_loss));
  if (smp::rank() == 0)
    std::fprintf(stderr,
                 "mnist: %lld training / %s test images from %s, %lld steps (%lld epoch%s) of "
                 "%lld%s, %s lr %g, %s, %lld threads%s\n",
                 static_cast<long long>(train.size()),
                 test ? std::to_string(test->size()).c_str() : "no", cfg.data.c_str(),
                 static_cast<long long>(trainer.total_steps()),
                 static_cast<long long>(trainer.epochs()), trainer.epochs() == 1 ? "" : "s",
                 static_cast<long long>(cfg.batch_size),
                 dp > 1 ? (" x " + std::to_string(dp) + " DP ranks").c_str() : "",
                 cfg.optimizer.c_str(), lr, device.str().c_str(), static_cast<long long>(o.threads),
                 smp::size() > 1 ? " per process" : "");
  return trainer.fit(smp_examples::supervised_step(nll_loss));
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  smp_examples::Cli cli("mnist",
                        "Trains the PyTorch MNIST example's CNN on MNIST/Fashion-MNIST IDX files.");
  cli.option("data", &cfg.data, "DIR", "folder with the IDX files (default " + cfg.data + ")");
  smp_examples::add_train_flags(cli, cfg, "1.0 adadelta, 0.01 sgd, 1e-3 adam/adamw");
  cli.custom("normalize", "MEAN,STD", "input normalisation (default 0.1307,0.3081)",
             [&](const std::string& v) {
               std::tie(cfg.mean, cfg.stdev) = smp_examples::parse_pair("normalize", v);
               if (!(cfg.stdev > 0)) throw UsageError("--normalize: STD must be positive");
             });
  cli.choice("dropout", &cfg.dropout, {"on", "off"}, "the model's dropout layers (default on)");
  return smp_examples::run_main("mnist", argc, argv, cli, [&] { return run(cfg); });
}
