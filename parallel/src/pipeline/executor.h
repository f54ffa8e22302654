// The pipeline executor: one task per microbatch, resumed one at a time in schedule order.
#pragma once

#include <functional>

#include "pipeline/schedule.h"

namespace smp::pipeline {

/// Runs `body(mb)` for every microbatch, each on its own thread, but never two at once: the
/// action list decides which task runs next. A task's forward segment lasts from its start
/// until it calls end_forward() (DistributedModel::backward does), its backward segment from
/// then until it returns. Because a task blocked on a receive keeps the baton, no task runs
/// ahead of the list: the order on every rank is the schedule, not a race.
class Executor {
 public:
  explicit Executor(std::function<void(int)> body);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  /// Runs the tasks of `microbatches` microbatches in the order of `actions` (each F and B of
  /// stage_actions()); a task that is still unfinished after the list runs to its end. The
  /// first exception thrown by a task stops the others and is rethrown here.
  void run(const std::vector<Action>& actions, int microbatches);

  struct State;  // shared with the tasks' threads (executor.cpp)

 private:
  State* s_;
};

/// Inside an executor task: ends the forward segment and returns when the schedule reaches
/// this microbatch's backward. Outside a task: does nothing.
void end_forward();
/// The microbatch whose task is running on this thread, or -1 outside executor tasks.
int current_microbatch();

}  // namespace smp::pipeline
