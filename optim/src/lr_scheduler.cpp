// LR schedules: PyTorch 1.13's get_lr() of each class, stepped by the base class.
#include <smp/optim/lr_scheduler.h>

#include <algorithm>
#include <cmath>
#include <numbers>

namespace smp::optim {

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) {
  for (auto& g : optimizer_.param_groups()) {
    auto lr = g.options.find("lr");
    SMP_CHECK(lr != g.options.end(), "LRScheduler: parameter group has no option \"lr\"");
    g.options.try_emplace("initial_lr", lr->second);
    base_lrs_.push_back(g.options.at("initial_lr"));
  }
}

std::vector<double> LRScheduler::group_lrs() const {
  std::vector<double> lrs;
  for (const auto& g : optimizer_.param_groups()) lrs.push_back(g.options.at("lr"));
  return lrs;
}

void LRScheduler::step() {
  ++step_count_;
  ++last_epoch_;
  std::vector<double> lrs = get_lr();
  auto& groups = optimizer_.param_groups();
  SMP_CHECK(lrs.size() == groups.size(),
            "LRScheduler: the optimizer has {} parameter groups, the scheduler was made for {}",
            groups.size(), lrs.size());
  for (size_t i = 0; i < groups.size(); ++i) groups[i].options["lr"] = lrs[i];
  last_lrs_ = std::move(lrs);
}

void LRScheduler::load_state(int64_t last_epoch, std::vector<double> last_lrs) {
  SMP_CHECK(last_epoch >= 0 && last_lrs.size() == optimizer_.param_groups().size(),
            "LRScheduler::load_state: epoch {} with {} lrs for an optimizer of {} groups",
            last_epoch, last_lrs.size(), optimizer_.param_groups().size());
  last_epoch_ = last_epoch;
  step_count_ = last_epoch + 1;
  last_lrs_ = std::move(last_lrs);
}

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  SMP_CHECK(step_size > 0, "StepLR: step_size must be positive, got {}", step_size);
  step();
}

std::vector<double> StepLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return lrs;
  for (double& lr : lrs) lr *= gamma_;
  return lrs;
}

MultiStepLR::MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma)
    : LRScheduler(optimizer), milestones_(std::move(milestones)), gamma_(gamma) {
  step();
}

std::vector<double> MultiStepLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  const auto hits = std::count(milestones_.begin(), milestones_.end(), last_epoch_);
  if (hits == 0) return lrs;
  for (double& lr : lrs) lr *= std::pow(gamma_, static_cast<double>(hits));
  return lrs;
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min)
    : LRScheduler(optimizer), T_max_(T_max), eta_min_(eta_min) {
  SMP_CHECK(T_max > 0, "CosineAnnealingLR: T_max must be positive, got {}", T_max);
  step();
}

std::vector<double> CosineAnnealingLR::get_lr() {
  constexpr double pi = std::numbers::pi;
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0) return lrs;
  const double T = static_cast<double>(T_max_);
  const double e = static_cast<double>(last_epoch_);
  if ((last_epoch_ - 1 - T_max_) % (2 * T_max_) == 0) {
    // Restart of the cosine after the minimum: the recursive ratio would divide by zero.
    for (size_t i = 0; i < lrs.size(); ++i)
      lrs[i] += (base_lrs_[i] - eta_min_) * (1 - std::cos(pi / T)) / 2;
    return lrs;
  }
  for (double& lr : lrs)
    lr = (1 + std::cos(pi * e / T)) / (1 + std::cos(pi * (e - 1) / T)) * (lr - eta_min_) + eta_min_;
  return lrs;
}

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor,
                   int64_t total_iters)
    : LRScheduler(optimizer),
      start_factor_(start_factor),
      end_factor_(end_factor),
      total_iters_(total_iters) {
  SMP_CHECK(start_factor > 0.0 && start_factor <= 1.0,
            "LinearLR: start_factor must be in (0, 1], got {}", start_factor);
  SMP_CHECK(end_factor >= 0.0 && end_factor <= 1.0,
            "LinearLR: end_factor must be in [0, 1], got {}", end_factor);
  SMP_CHECK(total_iters >= 0, "LinearLR: total_iters must be non-negative, got {}", total_iters);
  step();
}

std::vector<double> LinearLR::get_lr() {
  std::vector<double> lrs = group_lrs();
  if (last_epoch_ == 0) {
    for (double& lr : lrs) lr *= start_factor_;
    return lrs;
  }
  if (last_epoch_ > total_iters_) return lrs;
  const double delta = end_factor_ - start_factor_;
  const double f = 1.0 + delta / (static_cast<double>(total_iters_) * start_factor_ +
                                  static_cast<double>(last_epoch_ - 1) * delta);
  for (double& lr : lrs) lr *= f;
  return lrs;
}

}  // namespace smp::optim
