// smp::trace: spans from several threads, the Chrome fields, idle filling, disabled mode, merge.
#include <gtest/gtest.h>
#include <smp/engine/error.h>
#include <smp/parallel/trace.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace tr = smp::trace;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A fresh directory per test; recording is switched off again whatever the test did.
class TraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           fmt::format("smp_trace_test_{}_{}_{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name(), counter++);
    fs::remove_all(dir_);
  }
  void TearDown() override {
    tr::disable();
    fs::remove_all(dir_);
  }
  std::string file(int rank) const {
    return (dir_ / fmt::format("trace_rank{}.json", rank)).string();
  }
  fs::path dir_;
};

json read(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

std::vector<json> complete_events(const json& j, const std::string& cat = "") {
  std::vector<json> out;
  for (const json& e : j["traceEvents"])
    if (e["ph"] == "X" && (cat.empty() || e["cat"] == cat)) out.push_back(e);
  return out;
}

// Every "X" event carries what Chrome and Perfetto need, with the right types.
void expect_chrome_fields(const json& j, int rank) {
  ASSERT_TRUE(j.is_object());
  ASSERT_TRUE(j["traceEvents"].is_array());
  std::set<int> tids, named_tids;
  bool process_named = false;
  for (const json& e : j["traceEvents"]) {
    ASSERT_TRUE(e["name"].is_string()) << e;
    ASSERT_TRUE(e["ph"].is_string()) << e;
    ASSERT_EQ(e["pid"], rank) << e;
    ASSERT_TRUE(e["tid"].is_number_integer()) << e;
    if (e["ph"] == "X") {
      EXPECT_TRUE(e["ts"].is_number()) << e;
      EXPECT_TRUE(e["dur"].is_number()) << e;
      EXPECT_GE(e["dur"].get<double>(), 0.0) << e;
      EXPECT_TRUE(e["cat"].is_string()) << e;
      EXPECT_TRUE(e["args"].is_object()) << e;
      tids.insert(e["tid"].get<int>());
    } else {
      ASSERT_EQ(e["ph"], "M") << e;
      if (e["name"] == "process_name") {
        EXPECT_EQ(e["args"]["name"], fmt::format("rank {}", rank));
        process_named = true;
      }
      if (e["name"] == "thread_name") named_tids.insert(e["tid"].get<int>());
    }
  }
  EXPECT_TRUE(process_named);
  for (int t : tids) EXPECT_TRUE(named_tids.count(t)) << "thread " << t << " has no name";
}

bool contains(const json& outer, const json& inner) {
  const double eps = 1e-3;
  const double ob = outer["ts"], oe = ob + outer["dur"].get<double>();
  const double ib = inner["ts"], ie = ib + inner["dur"].get<double>();
  return ob <= ib + eps && ie <= oe + eps;
}

TEST_F(TraceTest, KindNames) {
  EXPECT_STREQ(tr::to_string(tr::Kind::Forward), "forward");
  EXPECT_STREQ(tr::to_string(tr::Kind::Backward), "backward");
  EXPECT_STREQ(tr::to_string(tr::Kind::Send), "send");
  EXPECT_STREQ(tr::to_string(tr::Kind::Recv), "recv");
  EXPECT_STREQ(tr::to_string(tr::Kind::Allreduce), "allreduce");
  EXPECT_STREQ(tr::to_string(tr::Kind::Idle), "idle");
  EXPECT_STREQ(tr::to_string(tr::Kind::Step), "step");
  EXPECT_STREQ(tr::to_string(tr::Kind::Other), "other");
}

TEST_F(TraceTest, SpansFromSeveralThreadsNestWithTheirDurations) {
  tr::enable(dir_.string(), 2, 4);
  ASSERT_TRUE(tr::enabled());
  const auto wall_before = std::chrono::system_clock::now();
  {
    tr::Span step(tr::Kind::Step, "step 0");
    std::vector<std::thread> threads;
    for (int mb = 0; mb < 3; ++mb) {
      threads.emplace_back([mb] {
        tr::set_thread_name(fmt::format("microbatch {}", mb));
        tr::Span fwd(tr::Kind::Forward, fmt::format("forward mb{}", mb), mb);
        std::this_thread::sleep_for(milliseconds(10));
        {
          tr::Span send(tr::Kind::Send, "send", mb, /*peer=*/3, /*bytes=*/4096);
          std::this_thread::sleep_for(milliseconds(20));
        }
        std::this_thread::sleep_for(milliseconds(10));
      });
    }
    for (auto& t : threads) t.join();
  }
  tr::flush();

  const json j = read(file(2));
  expect_chrome_fields(j, 2);
  EXPECT_EQ(j["otherData"]["rank"], 2);
  EXPECT_EQ(j["otherData"]["world_size"], 4);
  // The epoch is when tracing first started in this process: not after this test began, and
  // not absurdly long before (the test binary has run for minutes at most).
  const auto epoch = j["otherData"]["epoch_unix_us"].get<int64_t>();
  const auto before_us =
      std::chrono::duration_cast<std::chrono::microseconds>(wall_before.time_since_epoch()).count();
  EXPECT_LE(epoch, before_us + 1000);
  EXPECT_GT(epoch, before_us - 3600LL * 1000 * 1000);

  const auto steps = complete_events(j, "step");
  const auto fwds = complete_events(j, "forward");
  const auto sends = complete_events(j, "send");
  ASSERT_EQ(steps.size(), 1u);
  ASSERT_EQ(fwds.size(), 3u);
  ASSERT_EQ(sends.size(), 3u);
  std::set<int> fwd_tids;
  std::set<int> microbatches;
  for (const json& f : fwds) {
    const double dur = f["dur"];
    EXPECT_GE(dur, 40000.0) << f;  // three sleeps: 10 + 20 + 10 ms
    EXPECT_LT(dur, 2e6) << f;
    EXPECT_TRUE(contains(steps[0], f)) << f;
    fwd_tids.insert(f["tid"].get<int>());
    microbatches.insert(f["args"]["microbatch"].get<int>());
    EXPECT_EQ(f["name"], fmt::format("forward mb{}", f["args"]["microbatch"].get<int>()));
    EXPECT_FALSE(f["args"].contains("peer"));
  }
  EXPECT_EQ(fwd_tids.size(), 3u) << "each thread gets its own track";
  EXPECT_EQ(microbatches, (std::set<int>{0, 1, 2}));
  EXPECT_FALSE(fwd_tids.count(steps[0]["tid"].get<int>()));
  for (const json& s : sends) {
    EXPECT_GE(s["dur"].get<double>(), 20000.0) << s;
    EXPECT_EQ(s["args"]["peer"], 3);
    EXPECT_EQ(s["args"]["bytes"], 4096);
    // The send nests inside the forward of the same thread, at least 10 ms in.
    int parents = 0;
    for (const json& f : fwds) {
      if (f["tid"] != s["tid"]) continue;
      ++parents;
      EXPECT_TRUE(contains(f, s)) << f << s;
      EXPECT_GE(s["ts"].get<double>() - f["ts"].get<double>(), 10000.0);
      EXPECT_EQ(f["args"]["microbatch"], s["args"]["microbatch"]);
    }
    EXPECT_EQ(parents, 1);
  }
  // Thread names given by set_thread_name reach the file.
  std::set<std::string> names;
  for (const json& e : j["traceEvents"])
    if (e["name"] == "thread_name") names.insert(e["args"]["name"].get<std::string>());
  EXPECT_TRUE(names.count("microbatch 0") && names.count("microbatch 2"));
}

TEST_F(TraceTest, IdleFillsTheGapsInsideAStep) {
  tr::enable(dir_.string(), 0, 1);
  const auto t0 = Clock::now() + milliseconds(5);
  auto at = [&](int ms) { return t0 + milliseconds(ms); };
  tr::record(tr::Kind::Step, "step 0", at(0), at(100));
  tr::record(tr::Kind::Forward, "forward", at(0), at(30), 0);
  // Busy spans on another thread count too: the rank is busy when any thread computes.
  std::thread([&] { tr::record(tr::Kind::Backward, "backward", at(60), at(100), 0); }).join();
  // A receive in flight is what a bubble waits on, so it does not count as busy.
  tr::record(tr::Kind::Recv, "recv", at(25), at(65), 0, 1, 128);
  // Outside any step: neither filled nor counted as idle.
  tr::record(tr::Kind::Forward, "forward", at(150), at(160), 1);
  tr::flush();

  const json j = read(file(0));
  expect_chrome_fields(j, 0);
  const auto steps = complete_events(j, "step");
  const auto idle = complete_events(j, "idle");
  ASSERT_EQ(steps.size(), 1u);
  ASSERT_EQ(idle.size(), 1u) << j.dump(1);
  const double step_ts = steps[0]["ts"];
  EXPECT_NEAR(idle[0]["ts"].get<double>() - step_ts, 30000.0, 1e-3);
  EXPECT_NEAR(idle[0]["dur"].get<double>(), 30000.0, 1e-3);
  EXPECT_NEAR(steps[0]["dur"].get<double>(), 100000.0, 1e-3);

  const tr::Summary s = tr::summarize(file(0));
  EXPECT_NEAR(s.idle_us, 30000.0, 1e-3);
  EXPECT_NEAR(s.step_us, 100000.0, 1e-3);
  EXPECT_NEAR(s.busy_us, 30000.0 + 40000.0 + 10000.0, 1e-3);
  EXPECT_NEAR(s.by_kind_us.at("forward"), 40000.0, 1e-3);
  EXPECT_NEAR(s.by_kind_us.at("backward"), 40000.0, 1e-3);
  EXPECT_NEAR(s.by_kind_us.at("recv"), 40000.0, 1e-3);
}

TEST_F(TraceTest, IdleCoversLeadingAndTrailingGapsAndClipsSpans) {
  tr::enable(dir_.string(), 1, 2);
  const auto t0 = Clock::now() + milliseconds(50);
  auto at = [&](int ms) { return t0 + milliseconds(ms); };
  tr::record(tr::Kind::Step, "step 0", at(0), at(100));
  tr::record(tr::Kind::Step, "step 1", at(200), at(300));
  // Overlapping busy spans merge; one starting before step 1 is clipped to it.
  tr::record(tr::Kind::Forward, "f", at(20), at(50));
  tr::record(tr::Kind::Allreduce, "ar", at(40), at(70));
  tr::record(tr::Kind::Other, "o", at(190), at(210));
  tr::record(tr::Kind::Backward, "b", at(250), at(260));
  tr::flush();

  const json j = read(file(1));
  auto idle = complete_events(j, "idle");
  const double base = complete_events(j, "step")[0]["ts"];
  std::vector<std::pair<double, double>> got;
  for (const json& e : idle) got.emplace_back(e["ts"].get<double>() - base, e["dur"].get<double>());
  std::sort(got.begin(), got.end());
  const std::vector<std::pair<double, double>> want = {
      {0, 20000}, {70000, 30000}, {210000, 40000}, {260000, 40000}};
  ASSERT_EQ(got.size(), want.size()) << j.dump(1);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i].first, want[i].first, 1e-3) << i;
    EXPECT_NEAR(got[i].second, want[i].second, 1e-3) << i;
  }
  EXPECT_NEAR(tr::summarize(file(1)).idle_us, 130000.0, 1e-3);
}

TEST_F(TraceTest, PartiallyOverlappingSpansGoToSeparateTracks) {
  tr::enable(dir_.string(), 0, 1);
  const auto t0 = Clock::now();
  auto at = [&](int ms) { return t0 + milliseconds(ms); };
  tr::record(tr::Kind::Send, "send a", at(0), at(20));
  tr::record(tr::Kind::Send, "send b", at(10), at(30));
  tr::record(tr::Kind::Send, "send c", at(12), at(15));  // nests in b (or a)
  tr::flush();
  const json j = read(file(0));
  expect_chrome_fields(j, 0);
  const auto sends = complete_events(j, "send");
  ASSERT_EQ(sends.size(), 3u);
  // On every track, any two events are disjoint or nested, which is what Chrome can draw.
  for (const json& a : sends)
    for (const json& b : sends) {
      if (&a == &b || a["tid"] != b["tid"]) continue;
      const double ab = a["ts"], ae = ab + a["dur"].get<double>();
      const double bb = b["ts"], be = bb + b["dur"].get<double>();
      const bool disjoint = ae <= bb || be <= ab;
      EXPECT_TRUE(disjoint || contains(a, b) || contains(b, a)) << a << b;
    }
  std::set<int> tids;
  for (const json& s : sends) tids.insert(s["tid"].get<int>());
  EXPECT_EQ(tids.size(), 2u);
}

TEST_F(TraceTest, FlushRewritesTheFile) {
  tr::enable(dir_.string(), 0, 1);
  { tr::Span s(tr::Kind::Forward, "first"); }
  tr::flush();
  EXPECT_EQ(complete_events(read(file(0))).size(), 1u);
  { tr::Span s(tr::Kind::Backward, "second"); }
  tr::flush();
  const json j = read(file(0));
  EXPECT_EQ(complete_events(j).size(), 2u);
  EXPECT_EQ(complete_events(j, "backward").size(), 1u);
  // No temporary files are left behind.
  int n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++n;
  EXPECT_EQ(n, 1);
}

TEST_F(TraceTest, DisabledRecordsAndWritesNothing) {
  ASSERT_FALSE(tr::enabled());
  {
    tr::Span s(tr::Kind::Forward, "forward");
    tr::record(tr::Kind::Send, "send", Clock::now(), Clock::now());
  }
  tr::flush();
  EXPECT_FALSE(fs::exists(dir_));

  // A span begun while on and ended after disable() is dropped, and a re-enable starts afresh.
  tr::enable(dir_.string(), 0, 1);
  {
    tr::Span outer(tr::Kind::Forward, "begun in the first session");
    tr::disable();
    EXPECT_FALSE(tr::enabled());
    tr::flush();
    EXPECT_FALSE(fs::exists(dir_));
    tr::enable(dir_.string(), 0, 1);
  }
  tr::flush();
  EXPECT_TRUE(complete_events(read(file(0))).empty());
  tr::finalize();
  EXPECT_FALSE(tr::enabled());
}

TEST_F(TraceTest, EnableFromEnvironment) {
  ::unsetenv("SMP_TRACE");
  EXPECT_FALSE(tr::enable_from_env(0, 2));
  EXPECT_FALSE(tr::enabled());
  ::setenv("SMP_TRACE", dir_.c_str(), 1);
  EXPECT_TRUE(tr::enable_from_env(1, 2));
  ::unsetenv("SMP_TRACE");
  { tr::Span s(tr::Kind::Step, "step"); }
  tr::flush();
  EXPECT_TRUE(fs::exists(file(1)));
  EXPECT_EQ(read(file(1))["otherData"]["world_size"], 2);
}

TEST_F(TraceTest, EnableRejectsBadArguments) {
  EXPECT_THROW(tr::enable("", 0, 1), smp::Error);
  EXPECT_THROW(tr::enable(dir_.string(), 2, 2), smp::Error);
  EXPECT_THROW(tr::enable(dir_.string(), -1, 2), smp::Error);
  EXPECT_FALSE(tr::enabled());
}

// A rank file as flush() writes it, with one forward span at `ts` and the given epoch.
json synthetic_rank(int rank, int64_t epoch_unix_us, double ts) {
  return json{{"traceEvents",
               {{{"name", "process_name"},
                 {"ph", "M"},
                 {"pid", rank},
                 {"tid", 0},
                 {"args", {{"name", fmt::format("rank {}", rank)}}}},
                {{"name", "forward"},
                 {"cat", "forward"},
                 {"ph", "X"},
                 {"ts", ts},
                 {"dur", 5.0},
                 {"pid", rank},
                 {"tid", 1},
                 {"args", {{"microbatch", 0}}}}}},
              {"otherData", {{"rank", rank}, {"world_size", 2}, {"epoch_unix_us", epoch_unix_us}}}};
}

void write(const fs::path& p, const json& j) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << j.dump();
}

TEST_F(TraceTest, MergeAlignsRanksOnTheEarliestEpoch) {
  // Rank 1 started its clock 2.5 ms after rank 0, so its ts 10 is rank 0's ts 2510.
  write(dir_ / "trace_rank1.json", synthetic_rank(1, 1'700'000'002'500, 10.0));
  write(dir_ / "trace_rank0.json", synthetic_rank(0, 1'700'000'000'000, 20.0));
  write(dir_ / "other.json", json{{"not", "a trace"}});
  const auto files = tr::rank_files(dir_.string());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(fs::path(files[0]).filename(), "trace_rank0.json");

  const std::string out = (dir_ / "merged" / "all.json").string();
  tr::merge_files(out, files);
  const json m = read(out);
  EXPECT_EQ(m["otherData"]["epoch_unix_us"], 1'700'000'000'000);
  std::map<int, double> ts_by_pid;
  int process_names = 0;
  for (const json& e : m["traceEvents"]) {
    if (e["ph"] == "X") ts_by_pid[e["pid"].get<int>()] = e["ts"].get<double>();
    if (e["name"] == "process_name") ++process_names;
  }
  EXPECT_EQ(process_names, 2);
  ASSERT_EQ(ts_by_pid.size(), 2u);
  EXPECT_NEAR(ts_by_pid[0], 20.0, 1e-9);
  EXPECT_NEAR(ts_by_pid[1], 2510.0, 1e-9);
  EXPECT_NEAR(tr::summarize(out).busy_us, 10.0, 1e-9);

  // The order of the inputs does not matter.
  tr::merge_files(out, {files[1], files[0]});
  const json again = read(out);
  int rank1_spans = 0;
  for (const json& e : again["traceEvents"]) {
    if (e["ph"] == "X" && e["pid"] == 1) {
      EXPECT_NEAR(e["ts"].get<double>(), 2510.0, 1e-9);
      ++rank1_spans;
    }
  }
  EXPECT_EQ(rank1_spans, 1);
}

TEST_F(TraceTest, MergeRefusesBadInputs) {
  write(dir_ / "a.json", synthetic_rank(0, 100, 1.0));
  write(dir_ / "b.json", synthetic_rank(0, 200, 1.0));
  write(dir_ / "c.json", json{{"traceEvents", json::array()}});
  const std::string out = (dir_ / "out.json").string();
  auto message = [&](const std::vector<std::string>& in) -> std::string {
    try {
      tr::merge_files(out, in);
    } catch (const smp::Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message({(dir_ / "a.json").string(), (dir_ / "b.json").string()}).find("both rank 0"),
            std::string::npos);
  EXPECT_NE(message({(dir_ / "c.json").string()}).find("epoch_unix_us"), std::string::npos);
  EXPECT_NE(message({(dir_ / "missing.json").string()}).find("cannot open"), std::string::npos);
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
