// The training loop of the example programs: epochs of smp::step training steps with a
// progress bar, an LR scheduler stepped after each epoch, an evaluation after each epoch,
// the summary line, --save and --metrics. A program brings its model, optimizer, data and
// flags; what differs between programs comes in as callbacks:
//   - where batches come from (BatchSource: a DataLoader, or a program's own slicing),
//   - the step body (forward, loss, backward of one microbatch; supervised_step(criterion)),
//   - what evaluation measures (Metric: accuracy for a classifier; a language model's
//     perplexity is another Metric, its loss summed per token and reported as exp of the mean).
// Header-only (inline) so each program stays a single translation unit.
#pragma once

#include <smp/data/dataloader.h>
#include <smp/optim/lr_scheduler.h>
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli.h"
#include "train.h"

namespace smp_examples {

/// One pass over a data set: calls `use` with each batch in order until it returns false (the
/// loop has reached --steps). `epoch` counts from 1 for training, and is 0 for evaluation.
/// A batch that smp::step cannot split (see tail_splits) is the source's to leave out.
using BatchSource =
    std::function<void(int64_t epoch, const std::function<bool(smp::data::Batch&)>& use)>;

/// The batches of a DataLoader; training epochs set its epoch (its shuffle) first.
inline BatchSource batches_of(smp::data::DataLoader& loader) {
  return [&loader](int64_t epoch, const std::function<bool(smp::data::Batch&)>& use) {
    if (epoch > 0) loader.set_epoch(static_cast<size_t>(epoch - 1));
    for (smp::data::Batch& b : loader)
      if (!use(b)) break;
  };
}

/// A loss function: the model's output and the targets to a loss (smp::nll_loss,
/// smp::cross_entropy, or a language model's cross entropy over every token).
using Criterion = std::function<smp::Tensor(const smp::Tensor& output, const smp::Tensor& target,
                                            smp::Reduction reduction)>;

/// What smp::step runs for each microbatch of a training step: forward, loss, backward;
/// returns the microbatch's loss.
using StepBody =
    std::function<smp::Tensor(smp::DistributedModel& model, smp::Tensor x, smp::Tensor y)>;

/// The step body of supervised training: the mean of `loss` over the microbatch.
inline StepBody supervised_step(Criterion loss) {
  return [loss = std::move(loss)](smp::DistributedModel& m, smp::Tensor x, smp::Tensor y) {
    smp::Tensor l = loss(m(x), y, smp::Reduction::Mean);
    m.backward(l);
    return l;
  };
}

/// What an evaluation found, from the totals of every rank.
struct Evaluation {
  double loss = 0;  // mean loss per sample (per token for a language model: exp is perplexity)
  std::optional<double> accuracy;  // --metrics' test_accuracy (null when not measured)
  std::string details;             // the epoch line's words after the loss
  std::string value;               // the summary line's value of the metric
};

/// What evaluation measures. `measure` gives one batch's `sums` numbers (e.g. loss sum,
/// correct, count); the loop adds them over the batches and over the data-parallel group, and
/// `summarize` turns the totals into an Evaluation. `name` is what the summary line calls the
/// value.
struct Metric {
  std::string name;
  size_t sums = 0;
  std::function<std::vector<double>(const smp::Tensor& output, const smp::Tensor& target)> measure;
  std::function<Evaluation(const std::vector<double>& totals)> summarize;
};

/// Classification: the summed `loss` and the top-1 accuracy over every evaluated sample.
inline Metric accuracy_metric(Criterion loss) {
  Metric m;
  m.name = "accuracy";
  m.sums = 3;
  m.measure = [loss = std::move(loss)](const smp::Tensor& out, const smp::Tensor& y) {
    return std::vector<double>{loss(out, y, smp::Reduction::Sum).item<double>(),
                               static_cast<double>(out.argmax(1).eq(y).sum().item<int64_t>()),
                               static_cast<double>(y.size(0))};
  };
  m.summarize = [](const std::vector<double>& t) {
    const auto correct = static_cast<int64_t>(t[1]), total = static_cast<int64_t>(t[2]);
    const double n = static_cast<double>(std::max<int64_t>(total, 1));
    Evaluation e;
    e.loss = t[0] / n;
    e.accuracy = static_cast<double>(correct) / n;
    char details[96];
    std::snprintf(details, sizeof details, "accuracy %lld/%lld (%.2f%%)",
                  static_cast<long long>(correct), static_cast<long long>(total),
                  100 * *e.accuracy);
    e.details = details;
    e.value = std::to_string(100 * *e.accuracy).substr(0, 5) + "%";
    return e;
  };
  return m;
}

/// How the loop runs and what it reports.
struct TrainOptions {
  std::string program;              // names the summary line and the metrics file's "program"
  std::string eval_split = "test";  // what the epoch and summary lines call the evaluation set
  std::string samples = "images";   // what a training sample is, for the error messages
  int64_t epochs = 1, steps = 0;    // --epochs, --steps (0: no limit)
  int64_t batch_size = 0;           // --batch-size, per data-reading rank
  int64_t readers = 0;              // ranks reading distinct batches (0: smp::dp_size())
  int64_t sample_tokens = 0;        // tokens in a sample (a language model's window): the
                                    // progress line and summary then report tokens/s
  int64_t log_interval = 100;       // --log-interval
  int64_t threads = 0;              // reported
  std::string optimizer;            // reported
  smp::Device device{"cpu"};
  int rate_decimals = 0;         // decimals of samples/s in the summary line
  std::string save, metrics;     // --save and --metrics files ("": none)
  std::string checkpoint_dir;    // --checkpoint-dir ("": no checkpoints)
  int64_t checkpoint_every = 0;  // --checkpoint-every (optimizer steps)
  bool resume = false;           // --resume
  nlohmann::json extra_metrics = nlohmann::json::object();  // further keys for --metrics
};

/// What every program does first with its flags: refuses batch sizes smp::step cannot split,
/// sets the thread count and the seed (before any weight is drawn), checks the device; returns
/// the loop's options as the flags say.
inline TrainOptions start_training(const std::string& program, const TrainFlags& f) {
  check_splits("--batch-size", f.batch_size);
  if (!f.skip_test) check_splits("--test-batch-size", f.test_batch_size);
  TrainOptions o;
  o.program = program;
  o.threads = apply_threads(f.threads);
  smp::manual_seed(static_cast<uint64_t>(f.seed));
  o.device = smp::Device(f.device);
  if (o.device.is_cuda() && !smp::cuda::is_compiled())
    throw UsageError("--device: cuda requested but this build has no CUDA support");
  o.epochs = f.epochs;
  o.steps = f.steps;
  o.batch_size = f.batch_size;
  o.log_interval = f.log_interval;
  o.optimizer = f.optimizer;
  o.save = f.save;
  o.metrics = f.metrics;
  if ((f.checkpoint_every > 0 || f.resume) && f.checkpoint_dir.empty())
    throw UsageError(f.resume ? "--resume needs --checkpoint-dir"
                              : "--checkpoint-every needs --checkpoint-dir");
  o.checkpoint_dir = f.checkpoint_dir;
  o.checkpoint_every = f.checkpoint_every;
  o.resume = f.resume;
  return o;
}

/// Trains `model` with `optimizer` for options.epochs epochs or options.steps steps. Only
/// rank 0 prints and writes the metrics file; every rank takes part in the collectives.
class Trainer {
 public:
  /// `train` gives `per_epoch` batches an epoch on this rank, from `samples` samples (named
  /// in the error when they make no batch at all).
  Trainer(smp::DistributedModel& model, smp::DistributedOptimizer& optimizer, TrainOptions options,
          BatchSource train, int64_t per_epoch, int64_t samples)
      : model_(model),
        optimizer_(optimizer),
        o_(std::move(options)),
        train_(std::move(train)),
        per_epoch_(per_epoch) {
    if (per_epoch_ == 0)
      throw smp::ConfigError(fmt::format(
          "--batch-size {}: each data-parallel rank has {} training {}, which do not split "
          "into {} microbatches",
          o_.batch_size, samples, o_.samples, smp::config().microbatches));
    total_steps_ =
        o_.steps > 0 ? std::min(o_.steps, per_epoch_ * o_.epochs) : per_epoch_ * o_.epochs;
    epochs_ = (total_steps_ + per_epoch_ - 1) / per_epoch_;
  }

  /// Evaluates on `batches` with `metric` after every epoch (no batches: no evaluation, and
  /// the summary line says "n/a").
  void evaluate_with(BatchSource batches, Metric metric) {
    eval_ = std::move(batches);
    metric_ = std::move(metric);
  }
  /// Steps `scheduler` after every epoch.
  void schedule(smp::optim::LRScheduler& scheduler) { scheduler_ = &scheduler; }

  int64_t total_steps() const { return total_steps_; }
  int64_t epochs() const { return epochs_; }

  /// Runs the training; returns the exit status: 0, or 1 when the final loss is not finite.
  int fit(StepBody body) {
    auto train_step = smp::step(std::move(body));
    const int64_t readers = o_.readers > 0 ? o_.readers : smp::dp_size();
    const int64_t tokens = std::max<int64_t>(o_.sample_tokens, 1);  // per sample, for rates
    const bool lead = smp::rank() == 0;
    int64_t step = 0, samples = 0;
    double final_loss = NAN, train_seconds = 0;
    std::optional<Evaluation> last_eval;
    smp::Generator& gen = smp::default_generator(smp::Device(smp::kCPU));
    // --resume: the checkpoint restores weights, optimizer, schedule and the generators as they
    // were after step `resume_at`. The batches before it are replayed without training, so the
    // data sources (shuffles, samplers) reach the same place; the epoch that holds it replays
    // from the generator state its start had, then the saved state takes over.
    int64_t resume_at = 0;
    std::vector<uint8_t> epoch_start_rng, resumed_rng;
    if (o_.resume) {
      const nlohmann::json user =
          smp::resume_from_checkpoint(o_.checkpoint_dir, model_, &optimizer_);
      resume_at = user.at("step").get<int64_t>();
      epoch_start_rng = user.at("epoch_start_rng").get<std::vector<uint8_t>>();
      if (scheduler_ && user.contains("scheduler_last_epoch"))
        scheduler_->load_state(user.at("scheduler_last_epoch").get<int64_t>(),
                               user.at("scheduler_last_lrs").get<std::vector<double>>());
      resumed_rng = gen.get_state();
      if (lead)
        std::fprintf(stderr, "%s: resuming from %s after step %lld\n", o_.program.c_str(),
                     o_.checkpoint_dir.c_str(), static_cast<long long>(resume_at));
    }
    for (int64_t epoch = 1; epoch <= epochs_ && step < total_steps_; ++epoch) {
      const int64_t epoch_first = (epoch - 1) * per_epoch_, epoch_last = epoch * per_epoch_;
      const bool replay = step < resume_at;
      if (replay && epoch_last > resume_at) gen.set_state(epoch_start_rng);
      if (!replay) epoch_start_rng = gen.get_state();
      Progress bar("epoch " + std::to_string(epoch),
                   std::min(per_epoch_, total_steps_ - std::max(step, epoch_first)),
                   o_.log_interval, lead, o_.sample_tokens > 0 ? "tokens" : "samples");
      Stopwatch clock;
      int64_t epoch_samples = 0, epoch_steps = 0;
      train_(epoch, [&](smp::data::Batch& b) {
        if (step < resume_at) {  // replayed: the step is in the checkpoint
          ++step;
          if (step == resume_at) gen.set_state(resumed_rng);
          return true;
        }
        smp::Tensor x = b.data.to(o_.device, /*non_blocking=*/true);
        smp::Tensor y = b.target.to(o_.device, /*non_blocking=*/true);
        optimizer_.zero_grad();
        smp::StepOutput loss_mb = train_step(model_, x, y);
        optimizer_.step();
        ++step;
        ++epoch_steps;
        epoch_samples += y.size(0) * readers;
        final_loss = loss_mb.reduce_mean().item<double>();
        bar.update(epoch_steps, final_loss,
                   static_cast<double>(epoch_samples * tokens) / std::max(1e-9, clock.seconds()));
        if (o_.checkpoint_every > 0 && step % o_.checkpoint_every == 0)
          save_checkpoint(step, epoch_start_rng);
        return step < total_steps_;
      });
      if (replay && epoch_last < resume_at) continue;  // its end came before the checkpoint
      if (replay && step == resume_at && epoch_steps == 0) gen.set_state(resumed_rng);
      if (o_.device.is_cuda()) smp::cuda::synchronize();
      train_seconds += clock.seconds();
      samples += epoch_samples;
      bar.finish();
      if (scheduler_) scheduler_->step();
      if (eval_) {
        last_eval = evaluate();
        if (lead)
          std::printf("epoch %lld: train loss %.4f  %s loss %.4f, %s\n",
                      static_cast<long long>(epoch), final_loss, o_.eval_split.c_str(),
                      last_eval->loss, last_eval->details.c_str());
        std::fflush(stdout);
      }
    }

    final_loss = dp_mean(final_loss);  // the global batch's, not this shard's
    const double sps = static_cast<double>(samples) / std::max(1e-9, train_seconds);
    const std::string measured = metric_.name.empty() ? "no evaluation"
                                                      : o_.eval_split + " " + metric_.name + " " +
                                                            (last_eval ? last_eval->value : "n/a");
    const std::string token_rate =
        o_.sample_tokens > 0 ? fmt::format(", {:.0f} tokens/s", sps * static_cast<double>(tokens))
                             : "";
    if (lead)
      std::printf(
          "%s: %lld steps, %lld samples in %.2f s (%.*f samples/s%s), final loss %.4f, %s, "
          "peak RSS %.0f MB\n",
          o_.program.c_str(), static_cast<long long>(step), static_cast<long long>(samples),
          train_seconds, o_.rate_decimals, sps, token_rate.c_str(), final_loss, measured.c_str(),
          peak_rss_mb());

    if (!o_.save.empty()) save_model(model_, o_.save);
    // Every rank takes part in gathering the memory figures (the flags are the same on all).
    const nlohmann::json memory =
        o_.metrics.empty() ? nlohmann::json() : rank_memory_metrics(model_);
    if (lead && !o_.metrics.empty()) {
      RunMetrics r;
      r.steps = step;
      r.samples = samples;
      r.epochs = epochs_;
      r.batch_size = o_.batch_size;
      r.threads = o_.threads;
      r.device = o_.device.str();
      r.optimizer = o_.optimizer;
      r.train_seconds = train_seconds;
      r.samples_per_second = sps;
      r.final_loss = final_loss;
      if (last_eval) {
        r.test_loss = last_eval->loss;
        r.test_accuracy = last_eval->accuracy;
      }
      nlohmann::json m = r.to_json(o_.program);
      if (o_.sample_tokens > 0) {
        m["tokens_per_sample"] = o_.sample_tokens;
        m["tokens_per_second"] = sps * static_cast<double>(tokens);
      }
      m.update(memory);
      m.update(o_.extra_metrics);
      write_metrics(o_.metrics, m);
    }
    return std::isfinite(final_loss) ? 0 : 1;
  }

 private:
  /// smp::save_checkpoint after `step` optimizer steps: what --resume needs besides weights,
  /// optimizer and generators is the step, the schedule and the generator state at the start
  /// of the current epoch (to replay its data draws). Two checkpoints are kept.
  void save_checkpoint(int64_t step, const std::vector<uint8_t>& epoch_start_rng) {
    nlohmann::json user = {{"step", step}, {"epoch_start_rng", epoch_start_rng}};
    if (scheduler_) {
      user["scheduler_last_epoch"] = scheduler_->last_epoch();
      user["scheduler_last_lrs"] = scheduler_->get_last_lrs();
    }
    smp::save_checkpoint(o_.checkpoint_dir, "step_" + std::to_string(step), true, model_,
                         &optimizer_, user, 2);
  }

  /// One pass over the evaluation set, forward only; the sums are added over the DP group.
  Evaluation evaluate() {
    smp::NoGradGuard no_grad;
    model_.eval();
    std::vector<double> totals(metric_.sums, 0.0);
    eval_(0, [&](smp::data::Batch& b) {
      smp::Tensor x = b.data.to(o_.device, /*non_blocking=*/true);
      smp::Tensor y = b.target.to(o_.device, /*non_blocking=*/true);
      if (!tail_splits(y.size(0))) return true;  // the short last batch, as drop_last
      // A forward-only step: with a pipeline every rank gets the outputs of every microbatch.
      smp::Tensor out = eval_step_(model_, x).concat();
      const std::vector<double> sums = metric_.measure(out, y);
      for (size_t i = 0; i < totals.size(); ++i) totals[i] += sums.at(i);
      return true;
    });
    totals = dp_sum(totals);
    model_.train();
    return metric_.summarize(totals);
  }

  /// The step function of evaluation: forward only.
  static smp::Tensor forward(smp::DistributedModel& m, smp::Tensor x) { return m(x); }

  smp::DistributedModel& model_;
  smp::DistributedOptimizer& optimizer_;
  TrainOptions o_;
  BatchSource train_, eval_;
  Metric metric_;
  smp::optim::LRScheduler* scheduler_ = nullptr;
  int64_t per_epoch_ = 0, total_steps_ = 0, epochs_ = 0;
  smp::StepFunction<decltype(&forward)> eval_step_ = smp::step(&forward);
};

}  // namespace smp_examples
