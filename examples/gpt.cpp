// gpt: a byte-level GPT (smp::nn::GPT, nanoGPT's model, vocabulary 256) trained on a text
// file, then optionally sampled from.
//
//   gpt [--data FILE] [--steps N] [--batch-size B] [--block-size T] [--layers L] ...  (--help)
//
// A sample is a window of T bytes of the file and its targets the same window shifted by one
// byte. Step i's global batch holds G = (data-reading ranks) × B windows; with --no-shuffle
// they start at byte offsets (i·G + k)·T mod (N − T − 1), k = 0 … G−1, otherwise at offsets
// drawn from --seed (the same on every rank); data-reading rank d takes k in [d·B, (d+1)·B).
// So a run under smprun trains on the global batch one process with batch G trains on. The
// step body is model(x, y): the model's two-tensor forward returns the loss.
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/train.h"
#include "common/train_loop.h"

namespace {

using smp_examples::UsageError;

struct Config : smp_examples::TrainFlags {
  Config() {
    batch_size = 8;
    optimizer = "adamw";
    skip_test = true;  // no evaluation split
    log_interval = 10;
  }
  std::string data = "/usr/share/games/fortunes/fortunes", save_init;
  int64_t block_size = 128, layers = 4, heads = 4, embd = 128, sample = 0;
  double dropout = 0;
};

/// The ranks that read distinct batches, and this rank's place among them. By default every
/// data-parallel rank reads its own (SMP's dp_rank/dp_size, which count the tensor-parallel
/// ranks too: a tensor-parallel group then works on the batches of all its ranks). With
/// prescaled_batch the ranks of a tensor-parallel group hold one batch together, so only the
/// reduced-data-parallel ranks differ (rdp_rank/rdp_size).
struct Readers {
  int64_t rank, size;
};
Readers data_readers() {
  if (smp::config().prescaled_batch) return {smp::rdp_rank(), smp::rdp_size()};
  return {smp::dp_rank(), smp::dp_size()};
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError("--data: cannot read '" + path + "'");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// splitmix64: the program's own host generator for window offsets and sampling, so neither
/// draws from the engine's generator (which initialises the weights and dropout masks).
class HostRandom {
 public:
  explicit HostRandom(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }

 private:
  uint64_t s_;
};

/// The windows of the text, batched as the file comment says.
class Windows {
 public:
  Windows(std::vector<uint8_t> text, int64_t block, int64_t batch, Readers readers, bool shuffle,
          uint64_t seed)
      : text_(std::move(text)),
        T_(block),
        B_(batch),
        readers_(readers),
        shuffle_(shuffle),
        random_(seed) {}

  int64_t global_batch() const { return B_ * readers_.size; }
  /// Start offsets are taken mod N − T − 1, so every target byte exists.
  int64_t span() const { return static_cast<int64_t>(text_.size()) - T_ - 1; }

  /// Global batch i (i counts from 0 over the whole run; batches are drawn in order).
  smp::data::Batch batch(int64_t i) {
    const int64_t G = global_batch();
    std::vector<int64_t> offsets(static_cast<size_t>(G));
    for (int64_t k = 0; k < G; ++k)
      offsets[static_cast<size_t>(k)] =
          shuffle_ ? static_cast<int64_t>(random_.next() % static_cast<uint64_t>(span()))
                   : ((i * G + k) * T_) % span();
    std::vector<int64_t> x(static_cast<size_t>(B_ * T_)), y(x.size());
    for (int64_t b = 0; b < B_; ++b) {
      const int64_t o = offsets[static_cast<size_t>(readers_.rank * B_ + b)];
      for (int64_t t = 0; t < T_; ++t) {
        x[static_cast<size_t>(b * T_ + t)] = text_[static_cast<size_t>(o + t)];
        y[static_cast<size_t>(b * T_ + t)] = text_[static_cast<size_t>(o + t + 1)];
      }
    }
    return {smp::tensor<int64_t>(x, {B_, T_}), smp::tensor<int64_t>(y, {B_, T_})};
  }

 private:
  std::vector<uint8_t> text_;
  int64_t T_, B_;
  Readers readers_;
  bool shuffle_;
  HostRandom random_;
};

/// Forward only, for sampling: every rank of a pipeline gets the logits.
smp::Tensor logits_of(smp::DistributedModel& m, smp::Tensor idx) { return m(idx); }

/// `n` bytes generated from a newline prompt: each next byte drawn from the softmax of the
/// last position's logits, the context cropped to the block size. Every rank runs it (a
/// pipelined forward needs all of them) with the same draws; the batch repeats the context
/// once per microbatch so smp::step can split it.
std::string sample_text(smp::DistributedModel& model, int64_t n, int64_t block, uint64_t seed,
                        smp::Device device) {
  smp::NoGradGuard no_grad;
  model.eval();
  auto forward = smp::step(&logits_of);
  HostRandom random(seed);
  const int64_t rows = smp::config().microbatches;
  std::vector<int64_t> context{'\n'};
  std::string out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t T = std::min<int64_t>(static_cast<int64_t>(context.size()), block);
    std::vector<int64_t> window(context.end() - T, context.end()), idx;
    for (int64_t r = 0; r < rows; ++r) idx.insert(idx.end(), window.begin(), window.end());
    smp::Tensor logits = forward(model, smp::tensor<int64_t>(idx, {rows, T}).to(device)).concat();
    const auto last = logits.select(0, 0).select(0, T - 1).softmax(-1).to_vector<double>();
    double u = random.uniform(), acc = 0;
    int64_t next = static_cast<int64_t>(last.size()) - 1;
    for (size_t v = 0; v < last.size(); ++v)
      if ((acc += last[v]) > u) {
        next = static_cast<int64_t>(v);
        break;
      }
    context.push_back(next);
    out.push_back(static_cast<char>(next));
  }
  model.train();
  return out;
}

int run(const Config& cfg) {
  smp_examples::TrainOptions o = smp_examples::start_training("gpt", cfg);
  const Readers readers = data_readers();
  std::vector<uint8_t> text = read_bytes(cfg.data);
  const auto n_bytes = static_cast<int64_t>(text.size());
  if (n_bytes < cfg.block_size + 2)
    throw UsageError("--data: '" + cfg.data + "' has " + std::to_string(n_bytes) +
                     " bytes; --block-size " + std::to_string(cfg.block_size) + " needs at least " +
                     std::to_string(cfg.block_size + 2));
  Windows windows(std::move(text), cfg.block_size, cfg.batch_size, readers, !cfg.no_shuffle,
                  static_cast<uint64_t>(cfg.seed));

  smp::nn::GPTConfig gc;
  gc.vocab_size = 256;
  gc.block_size = cfg.block_size;
  gc.n_layer = cfg.layers;
  gc.n_head = cfg.heads;
  gc.n_embd = cfg.embd;
  gc.dropout = cfg.dropout;
  if (cfg.embd % cfg.heads != 0)
    throw UsageError("--embd " + std::to_string(cfg.embd) + " is not a multiple of --heads " +
                     std::to_string(cfg.heads));
  auto net = smp_examples::build_model<smp::nn::GPT>(
      cfg.tensor_parallelism, [&] { return std::make_shared<smp::nn::GPT>(gc); });
  if (!cfg.init.empty()) smp_examples::load_weights(*net, cfg.init);
  if (!cfg.save_init.empty() && smp::rank() == 0) smp_examples::save_weights(*net, cfg.save_init);
  net->to(o.device);
  net->train();
  smp::DistributedModel model(net);

  const double lr = cfg.lr.value_or(smp_examples::default_lr(cfg.optimizer));
  smp::DistributedOptimizer opt(smp_examples::make_optimizer(cfg.optimizer, model.parameters(), lr,
                                                             cfg.momentum, cfg.weight_decay));

  // An epoch: enough global batches to cover the text's windows once.
  const int64_t per_epoch =
      std::max<int64_t>(1, windows.span() / (windows.global_batch() * cfg.block_size));
  int64_t next_batch = 0;  // global batch index over the whole run
  auto train_batches = [&](int64_t, const std::function<bool(smp::data::Batch&)>& use) {
    for (int64_t j = 0; j < per_epoch; ++j) {
      smp::data::Batch b = windows.batch(next_batch++);
      if (!use(b)) break;
    }
  };
  // --steps counts steps, epochs or not: as many passes over the text as they take.
  if (cfg.steps > 0) o.epochs = (cfg.steps + per_epoch - 1) / per_epoch;
  o.readers = readers.size;
  o.sample_tokens = cfg.block_size;
  o.samples = "windows";
  o.extra_metrics = {{"block_size", cfg.block_size},
                     {"layers", cfg.layers},
                     {"heads", cfg.heads},
                     {"embd", cfg.embd},
                     {"parameters", net->num_parameters()}};
  smp_examples::Trainer trainer(model, opt, o, train_batches, per_epoch,
                                windows.span() / cfg.block_size);
  if (smp::rank() == 0)
    std::fprintf(
        stderr,
        "gpt: %lld bytes from %s, %lld parameters (%lld layers, %lld heads, %lld embd), "
        "%lld steps of %lld x %lld bytes%s, %s lr %g, %s, %lld threads%s\n",
        static_cast<long long>(n_bytes), cfg.data.c_str(),
        static_cast<long long>(net->num_parameters()), static_cast<long long>(cfg.layers),
        static_cast<long long>(cfg.heads), static_cast<long long>(cfg.embd),
        static_cast<long long>(trainer.total_steps()), static_cast<long long>(cfg.batch_size),
        static_cast<long long>(cfg.block_size),
        readers.size > 1 ? (" x " + std::to_string(readers.size) + " data ranks").c_str() : "",
        cfg.optimizer.c_str(), lr, o.device.str().c_str(), static_cast<long long>(o.threads),
        smp::size() > 1 ? " per process" : "");
  const int status = trainer.fit([](smp::DistributedModel& m, smp::Tensor x, smp::Tensor y) {
    smp::Tensor loss = m(x, y);  // GPT's forward of (tokens, targets) is the loss
    m.backward(loss);
    return loss;
  });
  if (cfg.sample > 0) {
    const std::string s =
        sample_text(model, cfg.sample, cfg.block_size, static_cast<uint64_t>(cfg.seed), o.device);
    if (smp::rank() == 0) std::printf("--- sample ---\n%s\n", s.c_str());
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  smp_examples::Cli cli("gpt", "Trains a byte-level GPT (nanoGPT's model) on a text file.");
  cli.option("data", &cfg.data, "FILE", "text to train on (default " + cfg.data + ")");
  smp_examples::add_train_flags(cli, cfg, "1e-3 adamw, 0.01 sgd");
  cli.option("block-size", &cfg.block_size, "T", "context length in bytes (default 128)", 1);
  cli.option("layers", &cfg.layers, "N", "transformer layers (default 4)", 1);
  cli.option("heads", &cfg.heads, "N", "attention heads (default 4)", 1);
  cli.option("embd", &cfg.embd, "N", "embedding width (default 128)", 1);
  cli.option("dropout", &cfg.dropout, "P", "dropout probability (default 0)", 0.0);
  cli.option("sample", &cfg.sample, "N", "after training, print N bytes sampled from the model", 0);
  cli.option("save-init", &cfg.save_init, "FILE",
             "write the initial weights (.safetensors) before training");
  return smp_examples::run_main("gpt", argc, argv, cli, [&] {
    if (cfg.dropout >= 1) throw UsageError("--dropout: must be below 1");
    return run(cfg);
  });
}
