// Learning-rate schedules (torch.optim.lr_scheduler), computed as PyTorch 1.13 does when
// stepped once per epoch: each new lr is derived from the group's current lr (recursive form).
#pragma once

#include <smp/optim/optimizer.h>

#include <cstdint>
#include <vector>

namespace smp::optim {

/// Base of the schedules. Construction records each group's "initial_lr" (kept if already
/// set) and, as PyTorch, takes the first step (last_epoch 0). step() advances one epoch and
/// writes the new lr into every group of the optimizer.
class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& optimizer);
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  void step();
  /// The lr of group 0 set by the last step().
  double get_last_lr() const { return last_lrs_.at(0); }
  /// The lr of every group set by the last step().
  const std::vector<double>& get_last_lrs() const { return last_lrs_; }
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  /// Restores a schedule's position (PyTorch's load_state_dict of a scheduler: last_epoch and
  /// the last lrs; the groups' lrs themselves come back with the optimizer's state).
  void load_state(int64_t last_epoch, std::vector<double> last_lrs);

 protected:
  /// New lrs for last_epoch_ (already advanced), from the groups' current lrs.
  virtual std::vector<double> get_lr() = 0;
  /// Current lr of every group.
  std::vector<double> group_lrs() const;

  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = -1;
  int64_t step_count_ = 0;

 private:
  std::vector<double> last_lrs_;
};

/// lr × gamma every step_size epochs.
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);

 protected:
  std::vector<double> get_lr() override;

 private:
  int64_t step_size_;
  double gamma_;
};

/// lr × gamma at each milestone epoch (× gamma^k for a milestone listed k times).
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma = 0.1);

 protected:
  std::vector<double> get_lr() override;

 private:
  std::vector<int64_t> milestones_;
  double gamma_;
};

/// Cosine from the base lr down to eta_min over T_max epochs (and back up after, as PyTorch).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);

 protected:
  std::vector<double> get_lr() override;

 private:
  int64_t T_max_;
  double eta_min_;
};

/// Linear warmup: the factor on the base lr goes from start_factor to end_factor over
/// total_iters epochs, then stays.
class LinearLR : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3, double end_factor = 1.0,
           int64_t total_iters = 5);

 protected:
  std::vector<double> get_lr() override;

 private:
  double start_factor_;
  double end_factor_;
  int64_t total_iters_;
};

}  // namespace smp::optim
