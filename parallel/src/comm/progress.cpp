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
//
// Status channel: another duplicate of the world communicator, on which every progress thread
// keeps one receive posted for two kinds of notice: "send me your status" (answered at once
// with what this process has posted and is waiting on, as JSON) and "I have left main"
// (smp::finalize). A wait that has stalled for SMP_STALL_CHECK seconds (default 5) asks every
// rank for its status and looks for proof that it can never complete: a member that posted a
// different collective at the same position of the group, or a set of ranks each waiting only
// on ranks of the set or on ranks that have left main. With proof it fails at once naming the
// call and the ranks that did not join; without (a peer is computing, or does not answer) it
// waits on, up to comm_timeout.
#include "comm/progress.h"

#include <sys/prctl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <utility>

#include "comm/backend.h"
#include "comm/checks.h"

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
constexpr int kStatusTag = 7002;     // notices: {kind, query id}
constexpr int kStatusAsk = 0;        // kind: send me your status
constexpr int kStatusLeft = 1;       // kind: I have left main
constexpr int kReplyTagBase = 8000;  // + query id % 1000: the status itself
constexpr int kReplyBytes = 1 << 16;
constexpr int kRecentPerGroup = 16;
constexpr size_t kFlightOps = 256;

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

  // What this process has posted and waits on, for the status channel (under state_mu).
  struct Posted {
    long seq;
    std::string op, call;
  };
  std::map<std::string, long> posted_count;          // group → collectives posted
  std::map<std::string, std::deque<Posted>> recent;  // group → the last few collectives
  std::vector<std::pair<std::shared_ptr<OpState>, Clock::time_point>> waiting;
  std::set<int> left;                           // world ranks that have announced smp::finalize
  std::deque<std::shared_ptr<OpState>> flight;  // the last kFlightOps posted (flight record)
  std::string flight_dir;
  bool flight_written = false;
  std::set<int> silent;  // ranks that did not answer this rank's last status query

  MPI_Comm status_comm = MPI_COMM_NULL;
  MPI_Request status_req = MPI_REQUEST_NULL;  // owned by the progress thread while it runs
  std::array<int, 2> status_buf{};            // {kind, query id}
  std::mutex query_mu;                        // one status query at a time per process
  int query_id = 0;
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

double stall_check_seconds() {
  static const double v = [] {
    const char* s = std::getenv("SMP_STALL_CHECK");
    if (s == nullptr || *s == '\0') return 5.0;
    char* end = nullptr;
    double x = std::strtod(s, &end);
    if (end == s || *end != '\0' || !(x >= 0) || !std::isfinite(x))
      throw Error(
          fmt::format("SMP_STALL_CHECK must be a number of seconds >= 0 (0: off), got '{}'", s));
    return x;
  }();
  return v;
}

std::optional<std::string> diagnose_stall(const OpState& op, bool mismatch_only = false,
                                          std::vector<int>* silent = nullptr);

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
    std::unique_lock<std::mutex> lk(e.state_mu);
    e.waiting.emplace_back(op_, Clock::now());
    struct Leave {
      Engine& e;
      const OpState* op;
      ~Leave() {  // runs with state_mu held (declared after lk)
        e.waiters.fetch_sub(1);
        for (auto it = e.waiting.begin(); it != e.waiting.end(); ++it)
          if (it->first.get() == op) {
            e.waiting.erase(it);
            break;
          }
      }
    } leave{e, op_.get()};
    const double stall = stall_check_seconds();
    std::vector<int> silent;  // ranks that did not answer the last status query
    auto next_check = stall > 0 ? Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                     std::chrono::duration<double>(stall))
                                : Clock::time_point::max();
    for (;;) {
      if (op_->status == OpState::Status::Done) return;
      if (op_->status == OpState::Status::Failed) {
        if (op_->failed_rank < 0 && op_->seq > 0) {
          // MPI's own error for a collective is often the symptom of ranks posting different
          // collectives at the same position (a truncated message): say so when they did.
          lk.unlock();
          std::optional<std::string> proof = diagnose_stall(*op_, /*mismatch_only=*/true);
          lk.lock();
          if (proof) throw CommError(fmt::format("{} (MPI: {})", *proof, op_->error));
        }
        throw_failed(*op_);
      }
      if (e.failure)
        throw RemoteFailure(e.failure->first,
                            fmt::format("rank {} failed: {}", e.failure->first, e.failure->second));
      if (e.stopped) throw CommError(stopped_message(*op_));
      const auto now = Clock::now();
      if (now >= deadline) {
        lk.unlock();
        write_flight_record(fmt::format("{} on {} timed out", op_->op, op_->group));
        lk.lock();
      }
      if (now >= deadline)
        throw CommError(fmt::format(
            "smp: {}{} on {} timed out after {:g} s (rank {} waited for {}){}",
            op_->call.empty() ? "" : op_->call + ": ", op_->op, op_->group, timeout, e.world_rank,
            op_->awaited,
            silent.empty() ? ""
                           : fmt::format("; ranks {} did not answer the status query (stopped, "
                                         "or hung outside libsmp?)",
                                         format_ranks(silent))));
      if (now >= next_check) {
        lk.unlock();
        std::optional<std::string> proof = diagnose_stall(*op_, false, &silent);
        lk.lock();
        if (proof && op_->status == OpState::Status::Pending) {
          lk.unlock();
          write_flight_record(*proof);
          lk.lock();
          throw CommError(*proof);
        }
        next_check = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(stall));
      }
      e.done.wait_until(lk, std::min(deadline, next_check));
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
  write_flight_record(fmt::format("rank {} failed", source));
}

// --- status channel -------------------------------------------------------------------------

using nlohmann::json;

// This process's status (caller holds state_mu).
json status_locked(Engine& e) {
  json j;
  j["rank"] = e.world_rank;
  j["posted"] = e.posted_count;
  json recent = json::object();
  for (const auto& [g, list] : e.recent) {
    json l = json::array();
    for (const auto& p : list) l.push_back({p.seq, p.op, p.call});
    recent[g] = l;
  }
  j["recent"] = recent;
  json w = json::array();
  const auto now = Clock::now();
  for (const auto& [op, since] : e.waiting) {
    if (op->status != OpState::Status::Pending) continue;
    w.push_back({{"op", op->op},
                 {"call", op->call},
                 {"group", op->group},
                 {"seq", op->seq},
                 {"members", op->members},
                 {"peer", op->peer},
                 {"for", std::chrono::duration<double>(now - since).count()}});
  }
  j["waiting"] = w;
  return j;
}

// Asks every other rank for its status; entry r is null where rank r did not answer within
// `timeout` seconds (stopped, or gone).
std::vector<json> collect_statuses(Engine& e, double timeout) {
  std::lock_guard<std::mutex> q(e.query_mu);
  const int id = ++e.query_id;
  const int reply_tag = kReplyTagBase + id % 1000;
  std::vector<json> out(static_cast<size_t>(e.world_size));
  {
    std::lock_guard<std::mutex> lk(e.state_mu);
    out[static_cast<size_t>(e.world_rank)] = status_locked(e);
  }
  const std::array<int, 2> ask{kStatusAsk, id};
  std::vector<std::vector<char>> bufs(static_cast<size_t>(e.world_size));
  std::vector<MPI_Request> recvs, sends;
  std::vector<int> from;
  {
    std::lock_guard<std::mutex> mk(mpi_mutex());
    for (int r = 0; r < e.world_size; ++r) {
      if (r == e.world_rank || e.left.count(r)) continue;
      auto& b = bufs[static_cast<size_t>(r)];
      b.resize(kReplyBytes);
      MPI_Request rr = MPI_REQUEST_NULL, sr = MPI_REQUEST_NULL;
      if (MPI_Irecv(b.data(), kReplyBytes, MPI_CHAR, r, reply_tag, e.status_comm, &rr) !=
          MPI_SUCCESS)
        continue;
      recvs.push_back(rr);
      from.push_back(r);
      if (MPI_Isend(ask.data(), 2, MPI_INT, r, kStatusTag, e.status_comm, &sr) == MPI_SUCCESS)
        sends.push_back(sr);
    }
  }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout));
  size_t pending = recvs.size();
  while (pending > 0 && Clock::now() < deadline) {
    {
      std::lock_guard<std::mutex> mk(mpi_mutex());
      for (size_t i = 0; i < recvs.size(); ++i) {
        if (recvs[i] == MPI_REQUEST_NULL) continue;
        int flag = 0;
        MPI_Status st;
        if (MPI_Test(&recvs[i], &flag, &st) != MPI_SUCCESS || !flag) continue;
        --pending;
        int n = 0;
        if (MPI_Get_count(&st, MPI_CHAR, &n) != MPI_SUCCESS) n = 0;  // an empty answer
        const auto& b = bufs[static_cast<size_t>(from[i])];
        out[static_cast<size_t>(from[i])] =
            json::parse(b.begin(), b.begin() + std::clamp(n, 0, kReplyBytes), nullptr, false);
      }
    }
    if (pending > 0) std::this_thread::sleep_for(milliseconds(1));
  }
  std::lock_guard<std::mutex> mk(mpi_mutex());
  for (auto& r : recvs) {
    if (r == MPI_REQUEST_NULL) continue;
    // Local, and best effort: a late answer stays unmatched under its retired tag.
    (void)MPI_Cancel(&r);
    (void)MPI_Request_free(&r);
  }
  for (auto& r : sends) (void)MPI_Request_free(&r);  // two ints: delivered eagerly
  for (auto& j : out)
    if (j.is_discarded()) j = nullptr;
  return out;
}

// The op a status says its rank posted as collective `seq` of `group`, or "" if not listed.
std::string posted_op(const json& st, const std::string& group, long seq, std::string* call) {
  if (!st.is_object() || !st["recent"].contains(group)) return "";
  for (const auto& p : st["recent"][group])
    if (p[0].get<long>() == seq) {
      if (call) *call = p[2].get<std::string>();
      return p[1].get<std::string>();
    }
  return "";
}

long posted_count(const json& st, const std::string& group) {
  if (!st.is_object() || !st["posted"].contains(group)) return 0;
  return st["posted"][group].get<long>();
}

std::string describe(const json& w) {
  std::string call = w["call"].get<std::string>();
  std::string s = (call.empty() ? "" : call + ": ") + w["op"].get<std::string>() + " on " +
                  w["group"].get<std::string>();
  if (w["seq"].get<long>() > 0) s += fmt::format(" (collective #{})", w["seq"].get<long>());
  if (w["peer"].get<int>() >= 0) s += fmt::format(" with rank {}", w["peer"].get<int>());
  return s + fmt::format(" for {:.1f} s", w["for"].get<double>());
}

std::optional<std::string> diagnose_stall(const OpState& op, bool mismatch_only,
                                          std::vector<int>* silent) try {
  Engine& e = eng();
  std::vector<json> st = collect_statuses(e, 2.0);
  std::set<int> left;
  {
    std::lock_guard<std::mutex> lk(e.state_mu);
    left = e.left;
  }
  const int n = e.world_size;
  auto answered = [&](int r) { return st[static_cast<size_t>(r)].is_object(); };
  {
    std::vector<int> quiet;
    for (int r = 0; r < n; ++r)
      if (!answered(r) && !left.count(r)) quiet.push_back(r);
    std::lock_guard<std::mutex> lk(e.state_mu);
    e.silent = std::set<int>(quiet.begin(), quiet.end());
    if (silent) *silent = quiet;
  }
  const std::string head =
      fmt::format("smp: {}{} on {}{} cannot complete", op.call.empty() ? "" : op.call + ": ", op.op,
                  op.group, op.seq > 0 ? fmt::format(" (collective #{})", op.seq) : "");

  // A member that posted another collective at this position: the ranks call collectives in
  // different orders, or some ranks call one that others skip.
  if (op.seq > 0) {
    std::vector<std::string> other;
    for (int r : op.members) {
      if (r == e.world_rank || !answered(r)) continue;
      std::string call;
      std::string theirs = posted_op(st[static_cast<size_t>(r)], op.group, op.seq, &call);
      if (!theirs.empty() && theirs != op.op)
        other.push_back(
            fmt::format("rank {} posted {}{} there", r, call.empty() ? "" : call + ": ", theirs));
    }
    if (!other.empty())
      return fmt::format(
          "{}: {} — the ranks call collectives on this group in different orders "
          "(a collective called on some ranks only?)",
          head, fmt::join(other, "; "));
  }

  if (mismatch_only) return std::nullopt;

  // Wait-for analysis. A rank is stuck when it has left main, or answered and each of its waits
  // depends only on stuck ranks; start from every candidate and drop those that may progress.
  std::vector<char> stuck(static_cast<size_t>(n), 0);
  for (int r = 0; r < n; ++r)
    stuck[static_cast<size_t>(r)] =
        left.count(r) || (answered(r) && !st[static_cast<size_t>(r)]["waiting"].empty());
  // The ranks a wait depends on: collective members that have not posted it yet, or the peer.
  auto blockers = [&](const json& w) {
    std::vector<int> b;
    const long seq = w["seq"].get<long>();
    if (seq > 0) {
      for (int m : w["members"]) {
        if (left.count(m)) {
          b.push_back(m);
          continue;
        }
        if (!answered(m)) return std::vector<int>{-1};  // unknown: may progress
        if (posted_count(st[static_cast<size_t>(m)], w["group"].get<std::string>()) < seq)
          b.push_back(m);
      }
    } else if (w["peer"].get<int>() >= 0) {
      b.push_back(w["peer"].get<int>());
    }
    return b;
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (int r = 0; r < n; ++r) {
      if (!stuck[static_cast<size_t>(r)] || left.count(r)) continue;
      bool all_stuck = true;
      for (const auto& w : st[static_cast<size_t>(r)]["waiting"]) {
        auto b = blockers(w);
        // Everyone has posted it (it is completing) or someone unknown or free may act.
        bool wait_stuck = !b.empty();
        for (int x : b) wait_stuck = wait_stuck && x >= 0 && stuck[static_cast<size_t>(x)];
        all_stuck = all_stuck && wait_stuck;
      }
      if (!all_stuck) {
        stuck[static_cast<size_t>(r)] = 0;
        changed = true;
      }
    }
  }
  if (!stuck[static_cast<size_t>(e.world_rank)]) return std::nullopt;

  std::vector<int> missing;
  if (op.seq > 0) {
    for (int m : op.members)
      if (m != e.world_rank &&
          (left.count(m) || posted_count(st[static_cast<size_t>(m)], op.group) < op.seq))
        missing.push_back(m);
  } else if (op.peer >= 0) {
    missing.push_back(op.peer);
  }
  std::vector<std::string> what;
  for (int m : missing) {
    if (left.count(m)) {
      what.push_back(fmt::format("rank {} has left main (smp::finalize)", m));
      continue;
    }
    std::vector<std::string> ws;
    for (const auto& w : st[static_cast<size_t>(m)]["waiting"]) ws.push_back(describe(w));
    what.push_back(fmt::format("rank {} waits in {}", m, fmt::join(ws, " and ")));
  }
  const std::string why = what.empty() ? "" : fmt::format(" ({})", fmt::join(what, "; "));
  if (op.seq > 0)
    return fmt::format("{}: ranks {} did not join{} — a collective called on some ranks only?",
                       head, format_ranks(missing), why);
  return fmt::format("{}: rank {} never posted the matching {}{}", head, op.peer,
                     op.op == "recv" ? "send" : "recv", why);
} catch (const std::exception&) {
  return std::nullopt;  // the check is best effort; the timeout still bounds the wait
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
      op.ended = Clock::now();
    }
  }
}

// A status notice arrived from `source` (progress thread): answer an ask with this process's
// status, or record that `source` has left main; then receive the next notice.
void answer_status(Engine& e, int source, std::vector<MPI_Request>& reqs,
                   std::vector<std::shared_ptr<OpState>>& ops) {
  const int kind = e.status_buf[0], id = e.status_buf[1];
  if (kind == kStatusLeft) {
    std::lock_guard<std::mutex> lk(e.state_mu);
    e.left.insert(source);
  } else if (kind == kStatusAsk) {
    std::string text;
    {
      std::lock_guard<std::mutex> lk(e.state_mu);
      text = status_locked(e).dump();
    }
    if (text.size() > static_cast<size_t>(kReplyBytes)) text = "{}";  // unreadable: "no answer"
    // The reply is an ordinary operation of this thread: its buffer lives in the OpState.
    auto op = std::make_shared<OpState>();
    op->op = "status reply";
    op->group = "status channel";
    op->keep = {empty({static_cast<int64_t>(text.size())}, TensorOptions(kUInt8))};
    std::memcpy(raw_ptr(op->keep[0]), text.data(), text.size());
    MPI_Request r = MPI_REQUEST_NULL;
    std::lock_guard<std::mutex> mk(mpi_mutex());
    if (MPI_Isend(raw_ptr(op->keep[0]), static_cast<int>(text.size()), MPI_CHAR, source,
                  kReplyTagBase + id % 1000, e.status_comm, &r) == MPI_SUCCESS) {
      reqs.push_back(r);
      ops.push_back(std::move(op));
    }
  }
  std::lock_guard<std::mutex> mk(mpi_mutex());
  if (MPI_Irecv(e.status_buf.data(), 2, MPI_INT, MPI_ANY_SOURCE, kStatusTag, e.status_comm,
                &e.status_req) != MPI_SUCCESS)
    e.status_req = MPI_REQUEST_NULL;
  reqs[1] = e.status_req;
}

void progress_loop() {
  Engine& e = eng();
  // Linux stretches short sleeps by the timer slack (50 µs by default); the back-off wants
  // its 20 µs to be 20 µs.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  // Linux stretches short sleeps by the timer slack (50 µs by default); the back-off wants
  // its 20 µs to be 20 µs.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  // Index 0 is the failure receive, 1 the status receive; the rest are operations.
  constexpr size_t kFixed = 2;
  std::vector<MPI_Request> reqs{MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  std::vector<std::shared_ptr<OpState>> ops{nullptr, nullptr};
  std::vector<int> indices;
  std::vector<MPI_Status> statuses;
  auto backoff = microseconds(20);
  auto eager_until = Clock::now();
  auto woken = [&] { return e.stopping || e.kicked || !e.incoming.empty(); };
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(e.mu);
      if (reqs.size() == kFixed && !woken()) e.wake.wait_for(lk, milliseconds(50), woken);
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
    reqs[1] = e.status_req;
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
    e.status_req = reqs[1];
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
      // Nothing can be trusted about the requests any more: fail them all.
      std::string what = fmt::format("MPI_Testsome failed: {}", mpi_error_string(rc));
      {
        std::lock_guard<std::mutex> lk(e.state_mu);
        for (size_t i = kFixed; i < ops.size(); ++i) {
          if (ops[i]->status == OpState::Status::Pending) {
            ops[i]->status = OpState::Status::Failed;
            ops[i]->error = fmt::format("smp: {} on {}: {}", ops[i]->op, ops[i]->group, what);
          }
        }
      }
      e.done.notify_all();
      reqs.resize(kFixed);
      ops.resize(kFixed);
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
            if (MPI_Get_count(&statuses[k], MPI_CHAR, &n) != MPI_SUCCESS) n = 0;
            n = std::clamp(n, 0, kFailureBytes);
            record_failure(e, statuses[k].MPI_SOURCE, std::string(e.fail_buf.data(), n), ops);
          }
          continue;
        }
        if (i == 1) {
          if (err == MPI_SUCCESS) answer_status(e, statuses[k].MPI_SOURCE, reqs, ops);
          continue;
        }
        complete(e, *ops[i], err, statuses[k]);
      }
      e.done.notify_all();
      // Drop completed requests (MPI set them to MPI_REQUEST_NULL).
      size_t w = kFixed;
      for (size_t i = kFixed; i < reqs.size(); ++i) {
        if (reqs[i] != MPI_REQUEST_NULL) {
          reqs[w] = reqs[i];
          ops[w] = std::move(ops[i]);
          ++w;
        }
      }
      reqs.resize(w);
      ops.resize(w);
    }
    if (reqs.size() == kFixed) continue;  // idle: sleep on the condition variable above

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
    for (size_t i = kFixed; i < ops.size(); ++i) {
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

void set_flight_dir(const std::string& dir) {
  Engine& e = eng();
  std::lock_guard<std::mutex> lk(e.state_mu);
  e.flight_dir = dir;
}

std::string write_flight_record(const std::string& why) try {
  Engine& e = eng();
  json j;
  std::string path;
  {
    std::lock_guard<std::mutex> lk(e.state_mu);
    if (e.flight_written) return "";
    e.flight_written = true;
    path = (e.flight_dir.empty() ? std::string(".") : e.flight_dir) +
           fmt::format("/smp_flight.{}.json", e.world_rank);
    const auto now = Clock::now();
    auto ago = [&](Clock::time_point t) {
      return t == Clock::time_point{} ? json(nullptr)
                                      : json(std::chrono::duration<double>(now - t).count());
    };
    j["rank"] = e.world_rank;
    j["world_size"] = e.world_size;
    j["why"] = why;
    j["time"] =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    json ops = json::array();
    for (const auto& op : e.flight) {
      const char* state = op->status == OpState::Status::Pending ? "pending"
                          : op->status == OpState::Status::Done  ? "done"
                                                                 : "failed";
      ops.push_back({{"op", op->op},
                     {"call", op->call},
                     {"group", op->group},
                     {"seq", op->seq},
                     {"peer", op->peer},
                     {"bytes", op->bytes},
                     {"state", state},
                     {"posted_s_ago", ago(op->posted)},
                     {"ended_s_ago", ago(op->ended)}});
    }
    j["ops"] = ops;
    j["silent_ranks"] = e.silent;  // did not answer this rank's last status query
  }
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return "";
  const std::string text = j.dump(1);
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  std::fclose(f);
  return ok ? path : "";
} catch (const std::exception&) {
  return "";
}

namespace {

// Sends `count` items of `buf` to every other rank on `comm` and waits up to `grace_seconds`
// for the sends to finish; true when they did. After that they are left to MPI, so `buf` must
// outlive them (static, or leaked by the caller).
bool send_to_others(Engine& e, const void* buf, int count, MPI_Datatype type, int tag,
                    MPI_Comm comm, double grace_seconds) {
  std::vector<MPI_Request> reqs;
  {
    std::lock_guard<std::mutex> mk(mpi_mutex());
    for (int r = 0; r < e.world_size; ++r) {
      if (r == e.world_rank) continue;
      MPI_Request req = MPI_REQUEST_NULL;
      if (MPI_Isend(buf, count, type, r, tag, comm, &req) == MPI_SUCCESS) reqs.push_back(req);
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
        return false;
      if (flag) return true;
      if (Clock::now() >= deadline) {
        for (auto& r : reqs)
          if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
        return false;
      }
    }
    std::this_thread::sleep_for(microseconds(100));
  }
}

// Tells every rank that this one has left main, so that a rank still waiting for it in a
// collective fails naming it instead of waiting for comm_timeout. Two ints per rank go out
// eagerly; after a short grace the sends are left to MPI.
void announce_leaving(Engine& e) {
  {
    std::lock_guard<std::mutex> lk(e.state_mu);
    if (e.failure) return;  // the job is coming down anyway
  }
  static const std::array<int, 2> notice{kStatusLeft, 0};
  send_to_others(e, notice.data(), 2, MPI_INT, kStatusTag, e.status_comm, 0.2);
}

}  // namespace

void comm_start(MPI_Comm world) {
  Engine& e = eng();
  std::lock_guard<std::mutex> lk(e.mu);
  if (e.started) throw CommError("smp: comm_start called twice (communication is already running)");
  {
    std::lock_guard<std::mutex> mk(mpi_mutex());
    // Errors MPI reports outside a communicator's own calls (MPI_Testsome over requests of
    // several communicators, a libnbc schedule broken by mismatched collectives) go to the
    // world's handler: return them, so that they fail operations with a message instead of
    // aborting the job from inside MPI.
    check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN),
              "MPI_Comm_set_errhandler (MPI_COMM_WORLD)");
    check_mpi(MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN),
              "MPI_Comm_set_errhandler (MPI_COMM_SELF)");
    check_mpi(MPI_Comm_rank(world, &e.world_rank), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(world, &e.world_size), "MPI_Comm_size");
    check_mpi(MPI_Comm_dup(world, &e.fail_comm), "MPI_Comm_dup (failure channel)");
    check_mpi(MPI_Comm_set_errhandler(e.fail_comm, MPI_ERRORS_RETURN),
              "MPI_Comm_set_errhandler (failure channel)");
    check_mpi(MPI_Irecv(e.fail_buf.data(), kFailureBytes, MPI_CHAR, MPI_ANY_SOURCE, kFailureTag,
                        e.fail_comm, &e.fail_req),
              "MPI_Irecv (failure channel)");
    check_mpi(MPI_Comm_dup(world, &e.status_comm), "MPI_Comm_dup (status channel)");
    check_mpi(MPI_Comm_set_errhandler(e.status_comm, MPI_ERRORS_RETURN),
              "MPI_Comm_set_errhandler (status channel)");
    check_mpi(MPI_Irecv(e.status_buf.data(), 2, MPI_INT, MPI_ANY_SOURCE, kStatusTag, e.status_comm,
                        &e.status_req),
              "MPI_Irecv (status channel)");
  }
  {
    std::lock_guard<std::mutex> sk(e.state_mu);
    e.failure.reset();
    e.stopped = false;
    e.posted_count.clear();
    e.recent.clear();
    e.left.clear();
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
  }
  announce_leaving(e);
  {
    std::lock_guard<std::mutex> lk(e.mu);
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
    // Cancelling a receive is local, so this cannot hang on peers that are gone. Shutdown goes
    // on whatever these calls return (nothing is left to fail).
    for (MPI_Request* r : {&e.fail_req, &e.status_req}) {
      if (*r == MPI_REQUEST_NULL) continue;
      (void)MPI_Cancel(r);
      (void)MPI_Request_free(r);
    }
    int finalized = 0;
    if (MPI_Finalized(&finalized) != MPI_SUCCESS) finalized = 1;  // cannot tell: leave MPI be
    for (MPI_Comm* c : {&e.fail_comm, &e.status_comm}) {
      if (!finalized && *c != MPI_COMM_NULL) (void)MPI_Comm_free(c);
      *c = MPI_COMM_NULL;
    }
  }
  e.started = false;
}

namespace {
thread_local std::string t_call;
}  // namespace

CallScope::CallScope(std::string call) : previous_(std::move(t_call)) { t_call = std::move(call); }
CallScope::~CallScope() { t_call = std::move(previous_); }
const std::string& CallScope::current() { return t_call; }

WorkPtr post(std::shared_ptr<OpState> op, const std::function<int(MPI_Request*)>& start) {
  Engine& e = eng();
  op->call = t_call;
  op->posted = Clock::now();
  {
    std::lock_guard<std::mutex> lk(e.state_mu);
    e.flight.push_back(op);
    if (e.flight.size() > kFlightOps) e.flight.pop_front();
  }
  if (op->seq > 0) {
    std::lock_guard<std::mutex> lk(e.state_mu);
    e.posted_count[op->group] = std::max(e.posted_count[op->group], op->seq);
    auto& recent = e.recent[op->group];
    recent.push_back({op->seq, op->op, op->call});
    if (recent.size() > kRecentPerGroup) recent.pop_front();
  }
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
  write_flight_record(message);
  // Leaked unless the sends finish within the grace period: MPI may still read it.
  auto* text = new std::string(message.substr(0, kFailureBytes));
  if (send_to_others(e, text->data(), static_cast<int>(text->size()), MPI_CHAR, kFailureTag,
                     e.fail_comm, grace_seconds))
    delete text;
}

std::optional<std::pair<int, std::string>> remote_failure() {
  Engine& e = eng();
  std::lock_guard<std::mutex> lk(e.state_mu);
  return e.failure;
}

}  // namespace smp::detail
