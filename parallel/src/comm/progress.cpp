// The progress thread, the failure channel and the timeout shared by every communicator.
//
// Open MPI advances nonblocking operations only inside MPI calls, so something must keep
// calling MPI while the user computes (DDP overlaps gradient allreduce with backward this
// way). One thread per process does it: it tests every outstanding request with
// MPI_Testsome under mpi_mutex(). While the caller computes, it sleeps between polls with a
// back-off (20 µs growing to 1 ms while nothing completes) so that four ranks on two cores do
// not spend them polling. While a thread is blocked in Work::wait() — not computing — it polls
// without sleeping (yielding the core between polls, as MPI's own blocking calls do) for 2 ms
// after each completion, post or new wait, then backs off up to 200 µs: a libnbc collective
// advances one round per test, so sleeping between rounds would add the sleep to every round.
// With nothing outstanding it sleeps on a condition variable and wakes every 50 ms to look at
// the failure channel.
//
// Failure channel: a duplicate of the world communicator on which every rank keeps one receive
// posted (any source, kFailureTag). notify_failure() sends the failing rank's message to all
// others; whoever receives it records it and fails every pending and later wait with
// RemoteFailure, so a rank blocked in a collective that will never complete hears about it.
#include "comm/progress.h"

#include <sys/prctl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <thread>
#include <utility>

#include "comm/backend.h"

namespace smp {

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Avg:
      return "avg";
    case ReduceOp::Max:
      return "max";
    case ReduceOp::Min:
      return "min";
  }
  return "?";
}

namespace {

// < 0: not set by set_comm_timeout, use the environment or the default.
std::atomic<double> g_timeout{-1.0};

double env_timeout() {
  const char* s = std::getenv("SMP_COMM_TIMEOUT");
  if (s == nullptr || *s == '\0') return 600.0;
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || !(v > 0) || !std::isfinite(v))
    throw Error(fmt::format("SMP_COMM_TIMEOUT must be a positive number of seconds, got '{}'", s));
  return v;
}

}  // namespace

double comm_timeout() {
  double t = g_timeout.load();
  if (t > 0) return t;
  static const double from_env = env_timeout();
  return from_env;
}

void set_comm_timeout(double seconds) {
  SMP_CHECK(seconds > 0 && std::isfinite(seconds),
            "set_comm_timeout: expected a positive, finite number of seconds, got {}", seconds);
  g_timeout.store(seconds);
}

}  // namespace smp

namespace smp::detail {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr int kFailureTag = 7001;
constexpr int kFailureBytes = 4096;

struct Engine {
  // Guards started/stopping/incoming; the progress thread sleeps on `wake`.
  std::mutex mu;
  std::condition_variable wake;
  bool started = false;
  bool stopping = false;
  bool kicked = false;  // a thread started waiting: poll eagerly
  std::vector<std::pair<MPI_Request, std::shared_ptr<OpState>>> incoming;
  std::thread thread;

  MPI_Comm fail_comm = MPI_COMM_NULL;
  MPI_Request fail_req = MPI_REQUEST_NULL;  // owned by the progress thread while it runs
  std::array<char, kFailureBytes> fail_buf{};
  int world_rank = 0;
  int world_size = 1;
  std::atomic<int> waiters{0};

  // Guards every OpState's status and the fields below; waits sleep on `done`.
  // Leaf lock: nothing else is locked while it is held.
  std::mutex state_mu;
  std::condition_variable done;
  std::optional<std::pair<int, std::string>> failure;
  bool stopped = false;
};

// Leaked so that communicators destroyed during static destruction still find it.
Engine& eng() {
  static Engine* e = new Engine;
  return *e;
}

std::string stopped_message(const OpState& op) {
  return fmt::format(
      "smp: {} on {} did not complete: communication was stopped (smp::finalize) first", op.op,
      op.group);
}

[[noreturn]] void throw_failed(const OpState& op) {
  if (op.failed_rank >= 0) throw RemoteFailure(op.failed_rank, op.error);
  throw CommError(op.error);
}

class MpiWork final : public Work {
 public:
  explicit MpiWork(std::shared_ptr<OpState> op) : op_(std::move(op)) {}

  bool is_completed() override {
    auto& e = eng();
    std::lock_guard<std::mutex> lk(e.state_mu);
    return op_->status != OpState::Status::Pending;
  }

  void wait() override {
    auto& e = eng();
    const double timeout = comm_timeout();
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(timeout));
    e.waiters.fetch_add(1);
    {
      std::lock_guard<std::mutex> lk(e.mu);
      e.kicked = true;
    }
    e.wake.notify_one();
    struct Leave {
      Engine& e;
      ~Leave() { e.waiters.fetch_sub(1); }
    } leave{e};
    std::unique_lock<std::mutex> lk(e.state_mu);
    for (;;) {
      if (op_->status == OpState::Status::Done) return;
      if (op_->status == OpState::Status::Failed) throw_failed(*op_);
      if (e.failure)
        throw RemoteFailure(e.failure->first,
                            fmt::format("rank {} failed: {}", e.failure->first, e.failure->second));
      if (e.stopped) throw CommError(stopped_message(*op_));
      if (Clock::now() >= deadline)
        throw CommError(fmt::format("smp: {} on {} timed out after {:g} s (rank {} waited for {})",
                                    op_->op, op_->group, timeout, e.world_rank, op_->awaited));
      e.done.wait_until(lk, deadline);
    }
  }

 private:
  std::shared_ptr<OpState> op_;
};

// Records a failure notice and fails every pending operation in `active`.
void record_failure(Engine& e, int source, std::string msg,
                    const std::vector<std::shared_ptr<OpState>>& active) {
  {
    std::lock_guard<std::mutex> lk(e.state_mu);
    if (!e.failure) e.failure.emplace(source, std::move(msg));
    std::string what = fmt::format("rank {} failed: {}", e.failure->first, e.failure->second);
    for (const auto& op : active) {
      if (op && op->status == OpState::Status::Pending) {
        op->status = OpState::Status::Failed;
        op->failed_rank = e.failure->first;
        op->error = what;
      }
    }
  }
  e.done.notify_all();
}

void complete(Engine& e, OpState& op, int mpi_error, const MPI_Status& st) {
  std::string err;
  if (mpi_error != MPI_SUCCESS) {
    err = fmt::format("smp: {} on {} failed: {}", op.op, op.group, mpi_error_string(mpi_error));
  } else if (op.finish) {
    try {
      err = op.finish(st);
    } catch (const std::exception& ex) {
      err = fmt::format("smp: {} on {} failed after the transfer: {}", op.op, op.group, ex.what());
    }
  }
  op.finish = nullptr;
  op.keep.clear();
  op.arrays.clear();
  {
    std::lock_guard<std::mutex> lk(e.state_mu);
    if (op.status == OpState::Status::Pending) {
      op.status = err.empty() ? OpState::Status::Done : OpState::Status::Failed;
      op.error = std::move(err);
    }
  }
}

void progress_loop() {
  Engine& e = eng();
  // Linux stretches short sleeps by the timer slack (50 µs by default); the back-off wants
  // its 20 µs to be 20 µs.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  // Linux stretches short sleeps by the timer slack (50 µs by default); the back-off wants
  // its 20 µs to be 20 µs.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  // Index 0 is the failure receive; the rest are operations.
  std::vector<MPI_Request> reqs{MPI_REQUEST_NULL};
  std::vector<std::shared_ptr<OpState>> ops{nullptr};
  std::vector<int> indices;
  std::vector<MPI_Status> statuses;
  auto backoff = microseconds(20);
  auto eager_until = Clock::now();
  auto woken = [&] { return e.stopping || e.kicked || !e.incoming.empty(); };
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(e.mu);
      if (reqs.size() == 1 && !woken()) e.wake.wait_for(lk, milliseconds(50), woken);
      if (e.stopping) break;
      if (!e.incoming.empty() || e.kicked) {
        backoff = microseconds(20);
        eager_until = Clock::now() + milliseconds(2);
      }
      e.kicked = false;
      for (auto& [r, op] : e.incoming) {
        reqs.push_back(r);
        ops.push_back(std::move(op));
      }
      e.incoming.clear();
    }

    reqs[0] = e.fail_req;
    indices.resize(reqs.size());
    statuses.resize(reqs.size());
    int outcount = 0;
    int rc;
    {
      std::lock_guard<std::mutex> lk(mpi_mutex());
      rc = MPI_Testsome(static_cast<int>(reqs.size()), reqs.data(), &outcount, indices.data(),
                        statuses.data());
    }
    e.fail_req = reqs[0];
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
      // Nothing can be trusted about the requests any more: fail them all.
      std::string what = fmt::format("MPI_Testsome failed: {}", mpi_error_string(rc));
      {
        std::lock_guard<std::mutex> lk(e.state_mu);
        for (size_t i = 1; i < ops.size(); ++i) {
          if (ops[i]->status == OpState::Status::Pending) {
            ops[i]->status = OpState::Status::Failed;
            ops[i]->error = fmt::format("smp: {} on {}: {}", ops[i]->op, ops[i]->group, what);
          }
        }
      }
      e.done.notify_all();
      reqs.resize(1);
      ops.resize(1);
      outcount = 0;
    }
    bool any = false;
    if (outcount != MPI_UNDEFINED && outcount > 0) {
      any = true;
      for (int k = 0; k < outcount; ++k) {
        int i = indices[k];
        int err = rc == MPI_ERR_IN_STATUS ? statuses[k].MPI_ERROR : MPI_SUCCESS;
        if (i == 0) {
          if (err == MPI_SUCCESS) {
            int n = 0;
            MPI_Get_count(&statuses[k], MPI_CHAR, &n);
            n = std::clamp(n, 0, kFailureBytes);
            record_failure(e, statuses[k].MPI_SOURCE, std::string(e.fail_buf.data(), n), ops);
          }
          continue;
        }
        complete(e, *ops[i], err, statuses[k]);
      }
      e.done.notify_all();
      // Drop completed requests (MPI set them to MPI_REQUEST_NULL).
      size_t w = 1;
      for (size_t i = 1; i < reqs.size(); ++i) {
        if (reqs[i] != MPI_REQUEST_NULL) {
          reqs[w] = reqs[i];
          ops[w] = std::move(ops[i]);
          ++w;
        }
      }
      reqs.resize(w);
      ops.resize(w);
    }
    if (reqs.size() == 1) continue;  // idle: sleep on the condition variable above

    const bool waited_on = e.waiters.load() > 0;
    if (any) eager_until = Clock::now() + milliseconds(2);
    if (waited_on && Clock::now() < eager_until) {
      std::this_thread::yield();
      continue;
    }
    const auto cap = waited_on ? microseconds(50) : microseconds(1000);
    backoff = any ? microseconds(20) : std::min(backoff * 2, cap);
    std::unique_lock<std::mutex> lk(e.mu);
    e.wake.wait_for(lk, backoff, woken);
  }

  // Stopping: whatever is still pending will never be tested again.
  {
    std::lock_guard<std::mutex> lk(e.state_mu);
    e.stopped = true;
    for (size_t i = 1; i < ops.size(); ++i) {
      if (ops[i]->status == OpState::Status::Pending) {
        ops[i]->status = OpState::Status::Failed;
        ops[i]->error = stopped_message(*ops[i]);
      }
    }
  }
  e.done.notify_all();
}

}  // namespace

std::mutex& mpi_mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(buf, static_cast<size_t>(len));
}

void check_mpi(int code, const std::string& what) {
  if (code != MPI_SUCCESS)
    throw CommError(fmt::format("smp: {}: {}", what, mpi_error_string(code)));
}

std::string format_ranks(const std::vector<int>& ranks) {
  return fmt::format("[{}]", fmt::join(ranks, ", "));
}

int global_rank() { return eng().world_rank; }

void comm_start(MPI_Comm world) {
  Engine& e = eng();
  std::lock_guard<std::mutex> lk(e.mu);
  if (e.started) throw CommError("smp: comm_start called twice (communication is already running)");
  {
    std::lock_guard<std::mutex> mk(mpi_mutex());
    check_mpi(MPI_Comm_rank(world, &e.world_rank), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(world, &e.world_size), "MPI_Comm_size");
    check_mpi(MPI_Comm_dup(world, &e.fail_comm), "MPI_Comm_dup (failure channel)");
    MPI_Comm_set_errhandler(e.fail_comm, MPI_ERRORS_RETURN);
    check_mpi(MPI_Irecv(e.fail_buf.data(), kFailureBytes, MPI_CHAR, MPI_ANY_SOURCE, kFailureTag,
                        e.fail_comm, &e.fail_req),
              "MPI_Irecv (failure channel)");
  }
  {
    std::lock_guard<std::mutex> sk(e.state_mu);
    e.failure.reset();
    e.stopped = false;
  }
  e.stopping = false;
  e.started = true;
  e.thread = std::thread(progress_loop);
}

void comm_stop() {
  Engine& e = eng();
  {
    std::lock_guard<std::mutex> lk(e.mu);
    if (!e.started) return;
    e.stopping = true;
  }
  e.wake.notify_all();
  e.thread.join();
  std::lock_guard<std::mutex> lk(e.mu);
  // Operations posted after the thread left were never queued; fail them too.
  {
    std::lock_guard<std::mutex> sk(e.state_mu);
    for (auto& [r, op] : e.incoming)
      if (op->status == OpState::Status::Pending) {
        op->status = OpState::Status::Failed;
        op->error = stopped_message(*op);
      }
  }
  e.incoming.clear();
  e.done.notify_all();
  {
    std::lock_guard<std::mutex> mk(mpi_mutex());
    // Cancelling a receive is local, so this cannot hang on peers that are gone.
    if (e.fail_req != MPI_REQUEST_NULL) {
      MPI_Cancel(&e.fail_req);
      MPI_Request_free(&e.fail_req);
    }
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && e.fail_comm != MPI_COMM_NULL) MPI_Comm_free(&e.fail_comm);
    e.fail_comm = MPI_COMM_NULL;
  }
  e.started = false;
}

WorkPtr post(std::shared_ptr<OpState> op, const std::function<int(MPI_Request*)>& start) {
  Engine& e = eng();
  {
    std::lock_guard<std::mutex> lk(e.mu);
    if (!e.started || e.stopping)
      throw CommError(
          fmt::format("smp: {} on {}: communication is not running (call smp::init first; after "
                      "smp::finalize no communicator works)",
                      op->op, op->group));
  }
  {
    std::lock_guard<std::mutex> lk(e.state_mu);
    if (e.failure) {
      op->status = OpState::Status::Failed;
      op->failed_rank = e.failure->first;
      op->error = fmt::format("rank {} failed: {}", e.failure->first, e.failure->second);
      op->finish = nullptr;
      op->keep.clear();
      return std::make_shared<MpiWork>(std::move(op));
    }
  }
  MPI_Request req = MPI_REQUEST_NULL;
  {
    std::lock_guard<std::mutex> mk(mpi_mutex());
    check_mpi(start(&req), fmt::format("{} on {}", op->op, op->group));
  }
  auto work = std::make_shared<MpiWork>(op);
  {
    std::lock_guard<std::mutex> lk(e.mu);
    if (e.stopping) {
      // The thread is leaving; nobody will test this request.
      std::lock_guard<std::mutex> sk(e.state_mu);
      op->status = OpState::Status::Failed;
      op->error = stopped_message(*op);
      return work;
    }
    e.incoming.emplace_back(req, std::move(op));
  }
  e.wake.notify_one();
  return work;
}

void notify_failure(const std::string& message, double grace_seconds) {
  Engine& e = eng();
  {
    std::lock_guard<std::mutex> lk(e.mu);
    if (!e.started) return;
  }
  // Leaked: if the sends do not finish within the grace period MPI may still read it.
  auto* text = new std::string(message.substr(0, kFailureBytes));
  std::vector<MPI_Request> reqs;
  {
    std::lock_guard<std::mutex> mk(mpi_mutex());
    for (int r = 0; r < e.world_size; ++r) {
      if (r == e.world_rank) continue;
      MPI_Request req = MPI_REQUEST_NULL;
      if (MPI_Isend(text->data(), static_cast<int>(text->size()), MPI_CHAR, r, kFailureTag,
                    e.fail_comm, &req) == MPI_SUCCESS)
        reqs.push_back(req);
    }
  }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(grace_seconds));
  for (;;) {
    int flag = 0;
    {
      std::lock_guard<std::mutex> mk(mpi_mutex());
      if (MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &flag, MPI_STATUSES_IGNORE) !=
          MPI_SUCCESS)
        return;
    }
    if (flag) {
      delete text;
      return;
    }
    if (Clock::now() >= deadline) return;
    std::this_thread::sleep_for(microseconds(200));
  }
}

std::optional<std::pair<int, std::string>> remote_failure() {
  Engine& e = eng();
  std::lock_guard<std::mutex> lk(e.state_mu);
  return e.failure;
}

}  // namespace smp::detail
