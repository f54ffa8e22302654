// Helpers shared by the example programs: flags (on CLI11), a progress bar, memory.
// Header-only (every function inline) so each program stays a single translation unit.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace smp_examples {

/// A bad command line: main prints the message and the usage and exits with status 2.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& msg) : std::runtime_error(msg) {}
};

/// A number as the flags read it: the whole of `v`, or a UsageError naming the flag.
inline double parse_double(const std::string& name, const std::string& v) {
  try {
    size_t pos = 0;
    double x = std::stod(v, &pos);
    if (pos == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw UsageError("--" + name + ": '" + v + "' is not a number");
}

/// A decimal integer, the whole of `v`.
inline int64_t parse_int(const std::string& name, const std::string& v) {
  int64_t x = 0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, x);
  if (ec != std::errc() || p != end || v.empty())
    throw UsageError("--" + name + ": '" + v + "' is not an integer");
  return x;
}

/// Splits "a,b" into two numbers (for --normalize MEAN,STD).
inline std::pair<double, double> parse_pair(const std::string& name, const std::string& v) {
  auto comma = v.find(',');
  if (comma == std::string::npos) throw UsageError("--" + name + ": expected A,B, got '" + v + "'");
  return {parse_double(name, v.substr(0, comma)), parse_double(name, v.substr(comma + 1))};
}

/// The usage text: "usage: PROGRAM [flags]", the summary, then one line a flag.
class UsageFormatter : public CLI::Formatter {
 public:
  UsageFormatter() { column_width(32); }
  std::string make_description(const CLI::App*) const override { return ""; }
  std::string make_usage(const CLI::App* app, std::string) const override {
    return "usage: " + app->get_name() + " [flags]\n" + app->get_description() + "\n";
  }
};

/// A program's flags on CLI11: "--name value", "--name=value" and value-less switches, each
/// written into a caller-owned variable, plus -h/--help. Numbers are converted here, not by
/// CLI11 (which reads "010" as octal and doubles through long double), so a value means what
/// it always has; a bad value, an unknown flag or a missing value is a UsageError naming it.
class Cli {
 public:
  Cli(std::string program, std::string summary) : app_(std::move(summary), std::move(program)) {
    app_.formatter(std::make_shared<UsageFormatter>());
    app_.option_defaults()->group("flags")->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app_.set_help_flag("-h,--help", "print this help and exit");
    app_.allow_extras();  // reported by parse() as "unknown flag --x"
  }

  void flag(const std::string& name, bool* out, const std::string& help) {
    app_.add_flag("--" + name, *out, help)->disable_flag_override();
  }
  void option(const std::string& name, std::string* out, const std::string& metavar,
              const std::string& help) {
    app_.add_option("--" + name, *out, help)->type_name(metavar);
  }
  /// An integer flag with a lower bound (values below it are rejected).
  void option(const std::string& name, int64_t* out, const std::string& metavar,
              const std::string& help, int64_t min = std::numeric_limits<int64_t>::min()) {
    custom(name, metavar, help, [name, out, min](const std::string& v) {
      const int64_t x = parse_int(name, v);
      if (x < min)
        throw UsageError("--" + name + ": " + v + " is out of range (at least " +
                         std::to_string(min) + ")");
      *out = x;
    });
  }
  /// A real-valued flag with a lower bound.
  void option(const std::string& name, double* out, const std::string& metavar,
              const std::string& help, double min = -std::numeric_limits<double>::infinity()) {
    custom(name, metavar, help, [name, out, min](const std::string& v) {
      const double x = parse_double(name, v);
      if (x < min)
        throw UsageError("--" + name + ": " + v + " is out of range (at least " +
                         std::to_string(min) + ")");
      *out = x;
    });
  }
  /// A flag whose value must be one of `choices`.
  void choice(const std::string& name, std::string* out, std::vector<std::string> choices,
              const std::string& help) {
    std::string metavar;
    for (const auto& c : choices) metavar += (metavar.empty() ? "" : "|") + c;
    custom(name, metavar, help, [name, out, choices](const std::string& v) {
      if (std::find(choices.begin(), choices.end(), v) == choices.end())
        throw UsageError("--" + name + ": '" + v + "' is not one of the choices");
      *out = v;
    });
  }
  /// A flag with its own parser (which throws UsageError on a bad value).
  void custom(const std::string& name, const std::string& metavar, const std::string& help,
              std::function<void(const std::string&)> parse) {
    app_.add_option_function<std::string>("--" + name, std::move(parse), help)->type_name(metavar);
  }

  /// Returns false when --help was given (the usage has been printed to stdout).
  bool parse(int argc, char** argv) {
    try {
      app_.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
      std::fputs(usage().c_str(), stdout);
      return false;
    } catch (const CLI::ParseError& e) {
      throw UsageError(e.what());
    }
    if (!app_.remaining().empty()) {
      const std::string arg = app_.remaining().front();
      if (arg.rfind("--", 0) == 0) throw UsageError("unknown flag " + arg.substr(0, arg.find('=')));
      throw UsageError("unexpected argument '" + arg + "'");
    }
    return true;
  }

  std::string usage() const { return app_.help(); }

 private:
  CLI::App app_;
};

/// The flags every training program has, with one meaning. A program's Config derives from
/// it and sets its own defaults first; add_train_flags names them in the help.
struct TrainFlags {
  int64_t epochs = 1, steps = 0, batch_size = 64, test_batch_size = 1000;
  std::string optimizer = "adadelta";
  std::optional<double> lr;  // unset: the program's default for the optimizer
  double momentum = 0, weight_decay = -1, gamma = 0.7;
  int64_t seed = 1, threads = 0, log_interval = 100;
  bool no_shuffle = false, skip_test = false;
  std::string device = "cpu", init, save, metrics;
  std::string tensor_parallelism = "all";  ///< all | none | NAME[,NAME...]
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  bool resume = false;
};

/// Declares the TrainFlags flags, their help naming the defaults `f` holds; `lr_default` says
/// what --lr is when not given.
inline void add_train_flags(Cli& cli, TrainFlags& f, const std::string& lr_default) {
  auto text = [](const auto& v) {
    std::ostringstream s;
    s << v;
    return s.str();
  };
  cli.option("epochs", &f.epochs, "N", "epochs to train (default " + text(f.epochs) + ")", 1);
  cli.option("steps", &f.steps, "N", "stop after N optimizer steps (0 = no limit)", 0);
  cli.option("batch-size", &f.batch_size, "B",
             "training batch size (default " + text(f.batch_size) + ")", 1);
  cli.option("test-batch-size", &f.test_batch_size, "B",
             "evaluation batch size (default " + text(f.test_batch_size) + ")", 1);
  cli.choice("optimizer", &f.optimizer, {"adadelta", "sgd", "adam", "adamw"},
             "optimizer (default " + f.optimizer + ")");
  cli.custom("lr", "F", "learning rate (default " + lr_default + ")",
             [&f](const std::string& v) { f.lr = parse_double("lr", v); });
  cli.option("momentum", &f.momentum, "F", "SGD momentum (default " + text(f.momentum) + ")", 0.0);
  cli.option("weight-decay", &f.weight_decay, "F",
             "weight decay (default: the optimizer's, 0 or AdamW's 0.01)", 0.0);
  cli.option("gamma", &f.gamma, "F", "StepLR factor (default " + text(f.gamma) + ")", 0.0);
  cli.option("seed", &f.seed, "N", "random seed (default " + text(f.seed) + ")", 0);
  cli.flag("no-shuffle", &f.no_shuffle, "batches in file order: batch i = samples iB..iB+B-1");
  cli.choice("device", &f.device, {"cpu", "cuda"}, "device (default " + f.device + ")");
  cli.option("threads", &f.threads, "N",
             "CPU threads per process (default: OMP_NUM_THREADS, else the cores divided among "
             "the ranks on this host)",
             0);
  cli.option("init", &f.init, "FILE", "load initial weights (.safetensors, PyTorch names)");
  cli.option("save", &f.save, "FILE", "write the final weights (.safetensors, PyTorch names)");
  cli.option("metrics", &f.metrics, "FILE", "write run metrics as JSON");
  cli.option("log-interval", &f.log_interval, "N",
             "steps between progress lines when stderr is not a terminal (default " +
                 text(f.log_interval) + ")",
             1);
  cli.flag("skip-test", &f.skip_test, "do not evaluate");
  cli.option("checkpoint-dir", &f.checkpoint_dir, "DIR",
             "write checkpoints here (smp::save_checkpoint; docs/checkpoints.md)");
  cli.option("checkpoint-every", &f.checkpoint_every, "N",
             "save a checkpoint every N optimizer steps (needs --checkpoint-dir)", 1);
  cli.flag("resume", &f.resume,
           "continue from --checkpoint-dir's newest checkpoint until --steps/--epochs");
  cli.option("tensor-parallelism", &f.tensor_parallelism, "all|none|NAME[,NAME...]",
             "modules to distribute when tensor_parallel_degree > 1: all (the model built inside "
             "smp::tensor_parallelism), none, or modules by name (smp::set_tensor_parallelism; "
             "default " +
                 f.tensor_parallelism + ")");
}

/// Seconds since construction (or the last reset) on the monotonic clock.
class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

/// Training progress on stderr: a redrawn bar at most 10 times a second on a terminal,
/// otherwise one plain line every `line_every` steps (logs stay readable).
class Progress {
 public:
  /// A disabled bar prints nothing (ranks other than 0 of a distributed job). `unit` names
  /// what the throughput counts ("samples", or a language model's "tokens").
  Progress(std::string label, int64_t total, int64_t line_every = 100, bool enabled = true,
           std::string unit = "samples")
      : label_(std::move(label)),
        unit_(std::move(unit)),
        total_(total),
        line_every_(std::max<int64_t>(1, line_every)),
        tty_(isatty(STDERR_FILENO) != 0),
        enabled_(enabled) {}

  /// `done` steps finished of `total`; loss of the last step; throughput (units/s) so far.
  void update(int64_t done, double loss, double per_second) {
    if (!enabled_) return;
    if (tty_) {
      if (done != total_ && last_draw_.seconds() < 0.1) return;
      last_draw_.reset();
      constexpr int kWidth = 30;
      int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : 0;
      std::string bar(static_cast<size_t>(filled), '=');
      bar.resize(kWidth, ' ');
      std::fprintf(stderr, "\r%s [%s] %lld/%lld  loss %.4f  %.0f %s/s ", label_.c_str(),
                   bar.c_str(), static_cast<long long>(done), static_cast<long long>(total_), loss,
                   per_second, unit_.c_str());
      drawn_ = true;
    } else if (done % line_every_ == 0 || done == total_) {
      std::fprintf(stderr, "%s %lld/%lld  loss %.4f  %.0f %s/s\n", label_.c_str(),
                   static_cast<long long>(done), static_cast<long long>(total_), loss, per_second,
                   unit_.c_str());
    }
  }
  /// Ends the bar's line so the next output starts clean.
  void finish() {
    if (tty_ && drawn_) std::fputc('\n', stderr);
    drawn_ = false;
  }

 private:
  std::string label_, unit_;
  int64_t total_, line_every_;
  bool tty_, enabled_, drawn_ = false;
  Stopwatch last_draw_;
};

/// Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB).
inline double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

}  // namespace smp_examples
