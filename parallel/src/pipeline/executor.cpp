// Executor: microbatch tasks as threads handing one baton around in schedule order.
#include "pipeline/executor.h"

#include <smp/engine/autograd.h>
#include <smp/engine/device.h>
#include <smp/engine/error.h>
#include <smp/parallel/trace.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace smp::pipeline {

namespace {

/// Thrown inside a waiting task when the executor gives up (another task failed).
struct Cancelled {};

constexpr int kExecutor = -1;  // baton value: the executor's loop runs, no task does

}  // namespace

struct Executor::State {
  enum class Phase { NotStarted, Forward, Yielded, Backward, Done };
  struct Task {
    std::thread thread;
    Phase phase = Phase::NotStarted;
    std::exception_ptr error;
    std::chrono::steady_clock::time_point segment_start;  // for the trace
  };

  std::function<void(int)> body;
  std::mutex mu;
  std::condition_variable cv;
  int baton = kExecutor;
  bool cancelled = false;
  std::vector<Task> tasks;
  bool grad_enabled = true;
  int cuda_device = -1;

  /// Hands the baton to task `mb` and blocks until it comes back (the task yielded or ended).
  void resume(std::unique_lock<std::mutex>& lk, int mb) {
    baton = mb;
    cv.notify_all();
    cv.wait(lk, [&] { return baton == kExecutor; });
  }

  /// Task side: waits for the baton; throws Cancelled when the executor gives up.
  void await_turn(std::unique_lock<std::mutex>& lk, int mb) {
    cv.wait(lk, [&] { return baton == mb || cancelled; });
    if (cancelled && baton != mb) throw Cancelled{};
  }

  void task_main(int mb);

  /// Records the segment that just ended (mu held).
  void end_segment(int mb) {
    if (!trace::enabled()) return;
    Task& t = tasks[static_cast<size_t>(mb)];
    const bool fwd = t.phase == Phase::Forward;
    trace::record(fwd ? trace::Kind::Forward : trace::Kind::Backward,
                  fmt::format("{}{}", fwd ? 'F' : 'B', mb), t.segment_start,
                  std::chrono::steady_clock::now(), mb);
  }
};

namespace {
thread_local Executor::State* t_state = nullptr;
thread_local int t_microbatch = -1;
}  // namespace

void Executor::State::task_main(int mb) {
  t_state = this;
  t_microbatch = mb;
  // A task thread starts with this thread's defaults; give it the caller's.
  GradMode::set_enabled(grad_enabled);
  if (cuda_device >= 0) cuda::set_device(cuda_device);
  if (trace::enabled()) trace::set_thread_name(fmt::format("microbatch {}", mb));
  std::unique_lock<std::mutex> lk(mu);
  try {
    await_turn(lk, mb);
    tasks[static_cast<size_t>(mb)].phase = Phase::Forward;
    tasks[static_cast<size_t>(mb)].segment_start = std::chrono::steady_clock::now();
    lk.unlock();
    body(mb);
    lk.lock();
    end_segment(mb);
  } catch (const Cancelled&) {
    if (!lk.owns_lock()) lk.lock();
  } catch (...) {
    if (!lk.owns_lock()) lk.lock();
    tasks[static_cast<size_t>(mb)].error = std::current_exception();
  }
  tasks[static_cast<size_t>(mb)].phase = Phase::Done;
  if (baton == mb) baton = kExecutor;
  cv.notify_all();
}

Executor::Executor(std::function<void(int)> body) : s_(new State) { s_->body = std::move(body); }

Executor::~Executor() { delete s_; }

void Executor::run(const std::vector<Action>& actions, int microbatches) {
  SMP_CHECK(microbatches >= 1, "pipeline::Executor: {} microbatches; expected at least 1",
            microbatches);
  State& s = *s_;
  s.tasks = std::vector<State::Task>(static_cast<size_t>(microbatches));
  s.baton = kExecutor;
  s.cancelled = false;
  s.grad_enabled = GradMode::is_enabled();
  s.cuda_device = cuda::device_count() > 0 ? cuda::get_device() : -1;

  std::exception_ptr first_error;
  std::unique_lock<std::mutex> lk(s.mu);
  auto check = [&](int mb) {
    if (s.tasks[static_cast<size_t>(mb)].error && !first_error)
      first_error = s.tasks[static_cast<size_t>(mb)].error;
    return !first_error;
  };
  auto start = [&](int mb) {
    auto& t = s.tasks[static_cast<size_t>(mb)];
    if (!t.thread.joinable()) t.thread = std::thread([&s, mb] { s.task_main(mb); });
  };

  for (const Action& a : actions) {
    SMP_ASSERT(a.microbatch >= 0 && a.microbatch < microbatches, "action {} out of range",
               to_string(a));
    auto& t = s.tasks[static_cast<size_t>(a.microbatch)];
    if (a.kind == Action::Forward) {
      SMP_ASSERT(t.phase == State::Phase::NotStarted, "{} scheduled twice", to_string(a));
      start(a.microbatch);
      s.resume(lk, a.microbatch);
    } else {
      if (t.phase == State::Phase::Done) continue;  // the task never called backward
      SMP_ASSERT(t.phase == State::Phase::Yielded, "{} scheduled before its forward", to_string(a));
      s.resume(lk, a.microbatch);
    }
    if (!check(a.microbatch)) break;
  }
  // Tasks the list did not finish (a forward-only list whose step called backward anyway).
  for (int mb = 0; mb < microbatches && !first_error; ++mb) {
    auto& t = s.tasks[static_cast<size_t>(mb)];
    if (t.phase == State::Phase::NotStarted) start(mb);
    while (t.phase != State::Phase::Done) {
      s.resume(lk, mb);
      if (!check(mb)) break;
    }
  }
  s.cancelled = true;
  s.cv.notify_all();
  lk.unlock();
  for (auto& t : s.tasks)
    if (t.thread.joinable()) t.thread.join();
  s.tasks.clear();
  if (first_error) std::rethrow_exception(first_error);
}

void end_forward() {
  Executor::State* s = t_state;
  if (!s) return;
  const int mb = t_microbatch;
  std::unique_lock<std::mutex> lk(s->mu);
  s->end_segment(mb);
  s->tasks[static_cast<size_t>(mb)].phase = Executor::State::Phase::Yielded;
  s->baton = kExecutor;
  s->cv.notify_all();
  s->await_turn(lk, mb);
  s->tasks[static_cast<size_t>(mb)].phase = Executor::State::Phase::Backward;
  s->tasks[static_cast<size_t>(mb)].segment_start = std::chrono::steady_clock::now();
}

int current_microbatch() { return t_microbatch; }

}  // namespace smp::pipeline
