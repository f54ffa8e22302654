// The pipeline executor: tasks run one at a time, in exactly the order of the action list.
#include "pipeline/executor.h"  // internal: smp_parallel_internal

#include <gtest/gtest.h>
#include <smp/smp.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace pl = smp::pipeline;

namespace {

/// A body that logs each segment as it starts and checks nobody else is running.
struct Recorder {
  std::mutex mu;
  std::vector<std::string> log;
  std::atomic<int> running{0};
  int max_running = 0;

  void segment(const std::string& what) {
    int now = ++running;
    {
      std::lock_guard<std::mutex> g(mu);
      log.push_back(what);
      max_running = std::max(max_running, now);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // give a racer a chance
    --running;
  }
};

std::vector<std::string> names(const std::vector<pl::Action>& actions) {
  std::vector<std::string> v;
  for (const auto& a : actions) v.push_back(pl::to_string(a));
  return v;
}

}  // namespace

TEST(Executor, RunsSegmentsInScheduleOrderOneAtATime) {
  for (auto sched : {pl::Schedule::Simple, pl::Schedule::Interleaved}) {
    for (int stage = 0; stage < 4; ++stage) {
      const int m = 6;
      auto actions = pl::stage_actions(sched, 4, stage, m, 6);
      Recorder rec;
      pl::Executor ex([&](int mb) {
        EXPECT_EQ(pl::current_microbatch(), mb);
        rec.segment(fmt::format("F{}", mb));
        pl::end_forward();
        rec.segment(fmt::format("B{}", mb));
      });
      ex.run(actions, m);
      EXPECT_EQ(rec.log, names(actions)) << "stage " << stage;
      EXPECT_EQ(rec.max_running, 1);
    }
  }
}

TEST(Executor, ForwardOnlyListAndTasksWithoutBackward) {
  Recorder rec;
  pl::Executor ex([&](int mb) { rec.segment(fmt::format("F{}", mb)); });
  ex.run(pl::stage_actions(pl::Schedule::Interleaved, 2, 0, 3, 4, /*forward_only=*/true), 3);
  EXPECT_EQ(rec.log, (std::vector<std::string>{"F0", "F1", "F2"}));

  // A full list whose tasks never call end_forward: the B actions are skipped.
  Recorder rec2;
  pl::Executor ex2([&](int mb) { rec2.segment(fmt::format("F{}", mb)); });
  ex2.run(pl::stage_actions(pl::Schedule::Interleaved, 2, 0, 3, 4), 3);
  EXPECT_EQ(rec2.log, (std::vector<std::string>{"F0", "F1", "F2"}));

  // A forward-only list whose tasks do call end_forward still finishes every task.
  Recorder rec3;
  pl::Executor ex3([&](int mb) {
    rec3.segment(fmt::format("F{}", mb));
    pl::end_forward();
    rec3.segment(fmt::format("B{}", mb));
  });
  ex3.run(pl::stage_actions(pl::Schedule::Simple, 2, 0, 2, 4, true), 2);
  EXPECT_EQ(rec3.log, (std::vector<std::string>{"F0", "F1", "B0", "B1"}));
}

TEST(Executor, FirstTaskErrorIsRethrownAndOthersStop) {
  std::atomic<int> backwards{0};
  pl::Executor ex([&](int mb) {
    pl::end_forward();
    if (mb == 1) throw std::runtime_error("task 1 broke");
    ++backwards;
  });
  auto actions = pl::stage_actions(pl::Schedule::Simple, 1, 0, 4, 4);
  try {
    ex.run(actions, 4);
    FAIL() << "expected the task's exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "task 1 broke");
  }
  EXPECT_EQ(backwards.load(), 1);  // B0 ran; B2, B3 never did
}

TEST(Executor, TasksInheritGradModeAndOutsideIsANoOp) {
  EXPECT_EQ(pl::current_microbatch(), -1);
  pl::end_forward();  // outside a task: nothing happens
  std::vector<int> seen(2, -1);
  pl::Executor ex([&](int mb) { seen[static_cast<size_t>(mb)] = smp::GradMode::is_enabled(); });
  {
    smp::NoGradGuard ng;
    ex.run(pl::stage_actions(pl::Schedule::Simple, 1, 0, 2, 2, true), 2);
  }
  EXPECT_EQ(seen, (std::vector<int>{0, 0}));
  ex.run(pl::stage_actions(pl::Schedule::Simple, 1, 0, 2, 2, true), 2);
  EXPECT_EQ(seen, (std::vector<int>{1, 1}));
}
