// Chrome-trace recorder (docs/tracing.md). Spans are coarse (one per forward/backward segment or
// message), so one mutex-protected vector is cheap enough and keeps flush() simple.
#include <smp/engine/error.h>
#include <smp/parallel/trace.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

namespace smp::trace {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// The bubbles track: Idle events do not belong to any one thread (a rank idles when none of its
// threads computes), and on a thread's own track they could overlap its send/recv spans.
constexpr int kIdleTid = 0;
// Gaps shorter than this are scheduling noise, not bubbles; skipping them keeps the trace small.
constexpr int64_t kMinIdleNs = 1000;

struct Event {
  Kind kind;
  std::string name;
  int64_t begin_ns;  // since the epoch
  int64_t end_ns;
  int tid;
  int microbatch;
  int peer;
  int64_t bytes;
};

struct State {
  std::mutex mu;
  std::atomic<uint64_t> session{0};  // 0: off; otherwise the id of the current enable()
  uint64_t last_session = 0;
  std::vector<Event> events;
  std::string dir;
  int rank = 0;
  int world_size = 1;
  std::map<int, std::string> thread_names;  // kept across sessions: threads are named once
  bool have_epoch = false;
  Clock::time_point epoch;
  int64_t epoch_unix_us = 0;
};

State& state() {
  static State s;
  return s;
}

std::atomic<int> next_tid{1};

int this_tid() {
  thread_local int tid = next_tid.fetch_add(1);
  return tid;
}

int64_t since_epoch_ns(const State& s, Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t - s.epoch).count();
}

bool counts_as_busy(Kind k) {
  return k == Kind::Forward || k == Kind::Backward || k == Kind::Allreduce || k == Kind::Other;
}

bool cat_is_busy(const std::string& cat) {
  return cat == "forward" || cat == "backward" || cat == "allreduce" || cat == "other";
}

void add_event(uint64_t session, Kind kind, std::string name, Clock::time_point begin,
               Clock::time_point end, int microbatch, int peer, int64_t bytes) {
  State& s = state();
  const int tid = this_tid();
  std::lock_guard lock(s.mu);
  // A span begun under an earlier enable() (or before a disable) is not part of this trace.
  if (session == 0 || session != s.session.load(std::memory_order_relaxed)) return;
  if (end < begin) std::swap(begin, end);
  s.events.push_back(Event{kind, std::move(name), since_epoch_ns(s, begin), since_epoch_ns(s, end),
                           tid, microbatch, peer, bytes});
}

double to_us(int64_t ns) { return static_cast<double>(ns) / 1000.0; }

// Chrome draws "X" events of one thread as a stack, so they must nest. Asynchronous spans
// recorded with record() can overlap partially; those move to extra "overlapping" tracks (new
// tids from next_free, named after the thread).
void assign_tracks(std::vector<Event>& events, std::map<int, std::string>& names, int& next_free) {
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    if (a.tid != b.tid) return a.tid < b.tid;
    if (a.begin_ns != b.begin_ns) return a.begin_ns < b.begin_ns;
    return a.end_ns - a.begin_ns > b.end_ns - b.begin_ns;  // parents before children
  });
  size_t i = 0;
  while (i < events.size()) {
    const int tid = events[i].tid;
    std::vector<std::vector<int64_t>> open;  // per lane: end times of the enclosing spans
    std::vector<int> lane_tid;
    for (; i < events.size() && events[i].tid == tid; ++i) {
      Event& e = events[i];
      size_t lane = 0;
      for (; lane < open.size(); ++lane) {
        auto& stack = open[lane];
        while (!stack.empty() && stack.back() <= e.begin_ns) stack.pop_back();
        if (stack.empty() || e.end_ns <= stack.back()) break;
      }
      if (lane == open.size()) {
        open.emplace_back();
        if (lane == 0) {
          lane_tid.push_back(tid);
        } else {
          lane_tid.push_back(next_free++);
          names[lane_tid.back()] = fmt::format("{} (overlapping {})", names[tid], lane);
        }
      }
      open[lane].push_back(e.end_ns);
      e.tid = lane_tid[lane];
    }
  }
}

// Idle spans: inside each step, the time when no thread of this rank runs a busy span.
std::vector<Event> idle_events(const std::vector<Event>& events) {
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (const Event& e : events)
    if (counts_as_busy(e.kind)) spans.emplace_back(e.begin_ns, e.end_ns);
  std::sort(spans.begin(), spans.end());
  // The union as disjoint intervals sorted by begin (and so by end), searchable per step.
  std::vector<std::pair<int64_t, int64_t>> busy;
  for (const auto& [b, e] : spans) {
    if (!busy.empty() && b <= busy.back().second)
      busy.back().second = std::max(busy.back().second, e);
    else
      busy.emplace_back(b, e);
  }
  std::vector<Event> idle;
  for (const Event& step : events) {
    if (step.kind != Kind::Step) continue;
    int64_t cursor = step.begin_ns;  // everything before it is busy or already emitted
    auto emit_gap = [&](int64_t until) {
      if (until - cursor >= kMinIdleNs)
        idle.push_back(Event{Kind::Idle, "idle", cursor, until, kIdleTid, -1, -1, -1});
    };
    auto it = std::upper_bound(busy.begin(), busy.end(), step.begin_ns,
                               [](int64_t t, const auto& iv) { return t < iv.second; });
    for (; it != busy.end() && it->first < step.end_ns; ++it) {
      if (it->first > cursor) emit_gap(it->first);
      cursor = std::max(cursor, std::min(it->second, step.end_ns));
    }
    if (cursor < step.end_ns) emit_gap(step.end_ns);
  }
  return idle;
}

json metadata(const char* what, int pid, int tid, json args) {
  return json{{"name", what}, {"ph", "M"}, {"pid", pid}, {"tid", tid}, {"args", std::move(args)}};
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  SMP_CHECK(in.good(), "trace: cannot open '{}' for reading", path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    SMP_ERROR("trace: '{}' is not valid JSON: {}", path, e.what());
  }
}

// Written to a temporary file and renamed, so a reader (or a crash mid-write) never sees half a
// trace and a repeated flush replaces the file in one step.
void write_json_file(const std::string& path, const json& j) {
  const fs::path p(path);
  std::error_code ec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), ec);
  SMP_CHECK(!ec, "trace: cannot create directory '{}': {}", p.parent_path().string(), ec.message());
  const std::string tmp = fmt::format("{}.tmp{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    SMP_CHECK(out.good(), "trace: cannot open '{}' for writing", tmp);
    out << j.dump();
    out.close();
    SMP_CHECK(out.good(), "trace: writing '{}' failed", tmp);
  }
  fs::rename(tmp, p, ec);
  SMP_CHECK(!ec, "trace: cannot rename '{}' to '{}': {}", tmp, path, ec.message());
}

}  // namespace

const char* to_string(Kind kind) {
  switch (kind) {
    case Kind::Forward:
      return "forward";
    case Kind::Backward:
      return "backward";
    case Kind::Send:
      return "send";
    case Kind::Recv:
      return "recv";
    case Kind::Allreduce:
      return "allreduce";
    case Kind::Idle:
      return "idle";
    case Kind::Step:
      return "step";
    case Kind::Other:
      return "other";
  }
  return "other";
}

void enable(const std::string& dir, int rank, int world_size) {
  SMP_CHECK(!dir.empty(), "trace::enable: the output directory is empty");
  SMP_CHECK(rank >= 0 && world_size >= 1 && rank < world_size,
            "trace::enable: rank {} of world size {}; expected 0 <= rank < world size", rank,
            world_size);
  State& s = state();
  std::lock_guard lock(s.mu);
  if (!s.have_epoch) {
    // One epoch per process, paired once with the wall clock, so every flush of this process
    // reports the same offset and merged ranks stay aligned.
    s.epoch = Clock::now();
    const auto wall = std::chrono::system_clock::now();
    const auto since = Clock::now() - s.epoch;
    s.epoch_unix_us =
        std::chrono::duration_cast<std::chrono::microseconds>(wall.time_since_epoch() - since)
            .count();
    s.have_epoch = true;
  }
  s.events.clear();
  s.dir = dir;
  s.rank = rank;
  s.world_size = world_size;
  s.session.store(++s.last_session);
}

bool enable_from_env(int rank, int world_size) {
  const char* dir = std::getenv("SMP_TRACE");
  if (dir != nullptr && *dir != '\0') enable(dir, rank, world_size);
  return enabled();
}

bool enabled() { return state().session.load(std::memory_order_relaxed) != 0; }

void disable() {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.session.store(0);
  s.events.clear();
  s.events.shrink_to_fit();
}

void set_thread_name(const std::string& name) {
  State& s = state();
  const int tid = this_tid();
  std::lock_guard lock(s.mu);
  s.thread_names[tid] = name;
}

void flush() {
  // Concurrent flushes would share the temporary file name.
  static std::mutex flush_mu;
  std::lock_guard flush_lock(flush_mu);
  State& s = state();
  std::vector<Event> events;
  std::map<int, std::string> names;
  std::string dir;
  int rank = 0, world_size = 1;
  int64_t epoch_unix_us = 0;
  {
    std::lock_guard lock(s.mu);
    if (s.session.load() == 0) return;
    events = s.events;
    names = s.thread_names;
    dir = s.dir;
    rank = s.rank;
    world_size = s.world_size;
    epoch_unix_us = s.epoch_unix_us;
  }

  std::vector<Event> idle = idle_events(events);
  int next_free = next_tid.load();
  std::set<int> used;
  for (const Event& e : events) used.insert(e.tid);
  for (int tid : used)
    if (!names.count(tid)) names[tid] = fmt::format("thread {}", tid);
  assign_tracks(events, names, next_free);
  used.clear();
  for (const Event& e : events) used.insert(e.tid);
  if (!idle.empty()) {
    names[kIdleTid] = "idle (bubbles)";
    used.insert(kIdleTid);
  }

  json trace_events = json::array();
  trace_events.push_back(
      metadata("process_name", rank, 0, {{"name", fmt::format("rank {}", rank)}}));
  trace_events.push_back(metadata("process_sort_index", rank, 0, {{"sort_index", rank}}));
  for (int tid : used) {
    trace_events.push_back(metadata("thread_name", rank, tid, {{"name", names[tid]}}));
    trace_events.push_back(metadata("thread_sort_index", rank, tid, {{"sort_index", tid}}));
  }
  auto add = [&](const Event& e) {
    json args = json::object();
    if (e.microbatch >= 0) args["microbatch"] = e.microbatch;
    if (e.peer >= 0) args["peer"] = e.peer;
    if (e.bytes >= 0) args["bytes"] = e.bytes;
    trace_events.push_back(json{{"name", e.name},
                                {"cat", to_string(e.kind)},
                                {"ph", "X"},
                                {"ts", to_us(e.begin_ns)},
                                {"dur", to_us(e.end_ns - e.begin_ns)},
                                {"pid", rank},
                                {"tid", e.tid},
                                {"args", std::move(args)}});
  };
  for (const Event& e : idle) add(e);
  for (const Event& e : events) add(e);

  json out{{"traceEvents", std::move(trace_events)},
           {"displayTimeUnit", "ms"},
           {"otherData",
            {{"rank", rank}, {"world_size", world_size}, {"epoch_unix_us", epoch_unix_us}}}};
  write_json_file((fs::path(dir) / fmt::format("trace_rank{}.json", rank)).string(), out);
}

void finalize() {
  flush();
  disable();
}

Span::Span(Kind kind, std::string name, int microbatch, int peer, int64_t bytes)
    : kind_(kind),
      microbatch_(microbatch),
      peer_(peer),
      bytes_(bytes),
      session_(state().session.load(std::memory_order_relaxed)) {
  if (session_ != 0) {
    name_ = std::move(name);
    begin_ = Clock::now();
  }
}

Span::~Span() {
  if (session_ == 0) return;
  const auto end = Clock::now();
  try {
    add_event(session_, kind_, std::move(name_), begin_, end, microbatch_, peer_, bytes_);
  } catch (...) {
    // Out of memory while tracing: losing a span beats terminating from a destructor.
  }
}

void record(Kind kind, std::string name, Clock::time_point begin, Clock::time_point end,
            int microbatch, int peer, int64_t bytes) {
  const uint64_t session = state().session.load(std::memory_order_relaxed);
  if (session == 0) return;
  add_event(session, kind, std::move(name), begin, end, microbatch, peer, bytes);
}

Summary summarize(const std::string& file) {
  const json j = read_json_file(file);
  SMP_CHECK(j.is_object() && j.contains("traceEvents") && j["traceEvents"].is_array(),
            "trace: '{}' has no \"traceEvents\" array; expected a file written by smp::trace",
            file);
  Summary sum;
  std::map<int, std::vector<std::pair<double, double>>> busy;  // per pid: a rank's busy union
  for (const json& e : j["traceEvents"]) {
    if (e.value("ph", "") != "X") continue;
    const std::string cat = e.value("cat", "");
    const double ts = e.value("ts", 0.0), dur = e.value("dur", 0.0);
    sum.by_kind_us[cat] += dur;
    if (cat == "idle") sum.idle_us += dur;
    if (cat == "step") sum.step_us += dur;
    if (cat_is_busy(cat)) busy[e.value("pid", 0)].emplace_back(ts, ts + dur);
  }
  for (auto& [pid, spans] : busy) {
    std::sort(spans.begin(), spans.end());
    double cursor = -1e300;
    for (const auto& [b, e] : spans) {
      const double from = std::max(b, cursor);
      if (e > from) sum.busy_us += e - from;
      cursor = std::max(cursor, e);
    }
  }
  return sum;
}

std::vector<std::string> rank_files(const std::string& dir) {
  std::error_code ec;
  SMP_CHECK(fs::is_directory(dir, ec), "trace: '{}' is not a directory", dir);
  static const std::regex pattern(R"(trace_rank([0-9]+)\.json)");
  std::vector<std::pair<long, std::string>> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    std::smatch m;
    if (entry.is_regular_file() && std::regex_match(name, m, pattern))
      found.emplace_back(std::stol(m[1].str()), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> files;
  for (auto& f : found) files.push_back(std::move(f.second));
  return files;
}

void merge_files(const std::string& out, const std::vector<std::string>& inputs) {
  SMP_CHECK(!inputs.empty(), "trace merge: no input files given");
  struct Input {
    std::string path;
    json j;
    int rank;
    int64_t epoch;
  };
  std::vector<Input> ins;
  std::map<int, std::string> seen;
  for (const std::string& path : inputs) {
    json j = read_json_file(path);
    SMP_CHECK(j.is_object() && j.contains("traceEvents") && j["traceEvents"].is_array(),
              "trace merge: '{}' has no \"traceEvents\" array", path);
    const json* other = j.contains("otherData") ? &j["otherData"] : nullptr;
    SMP_CHECK(other && other->is_object() && other->contains("rank") &&
                  (*other)["rank"].is_number_integer() && other->contains("epoch_unix_us") &&
                  (*other)["epoch_unix_us"].is_number(),
              "trace merge: '{}' has no otherData.rank and otherData.epoch_unix_us; expected a "
              "rank file written by smp::trace::flush",
              path);
    const int rank = (*other)["rank"].get<int>();
    const auto epoch = (*other)["epoch_unix_us"].get<int64_t>();
    auto [it, fresh] = seen.emplace(rank, path);
    SMP_CHECK(fresh, "trace merge: '{}' and '{}' are both rank {}", it->second, path, rank);
    ins.push_back(Input{path, std::move(j), rank, epoch});
  }
  int64_t min_epoch = ins.front().epoch;
  for (const Input& in : ins) min_epoch = std::min(min_epoch, in.epoch);

  json events = json::array();
  json ranks = json::array();
  int world_size = 0;
  for (Input& in : ins) {
    const double shift = static_cast<double>(in.epoch - min_epoch);
    for (json& e : in.j["traceEvents"]) {
      if (!e.is_object()) continue;
      if (e.contains("ts") && e["ts"].is_number()) e["ts"] = e["ts"].get<double>() + shift;
      e["pid"] = in.rank;
      events.push_back(std::move(e));
    }
    ranks.push_back(in.rank);
    world_size = std::max(world_size, in.j["otherData"].value("world_size", in.rank + 1));
  }
  json merged{
      {"traceEvents", std::move(events)},
      {"displayTimeUnit", "ms"},
      {"otherData",
       {{"ranks", std::move(ranks)}, {"world_size", world_size}, {"epoch_unix_us", min_epoch}}}};
  write_json_file(out, merged);
}

}  // namespace smp::trace
