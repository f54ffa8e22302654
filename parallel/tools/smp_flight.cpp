// smp-flight: reads the flight records a failed job left (smp_flight.<rank>.json, written by
// every rank that could when a wait timed out, a stall was proven or a rank failed: its last
// 256 operations) and prints which rank is behind and on what. libsmp's counterpart of
// PyTorch's Flight Recorder analyser.
//
//   smp-flight [DIR]    (default: the working directory)
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Wait {
  int rank;
  json op;
  std::vector<int> blockers;  // ranks this wait depends on that have not done their part
};

std::vector<int> group_members(const std::string& group) {
  // "DP_GROUP [1, 3]" -> {1, 3}
  std::vector<int> out;
  auto open = group.find('['), close = group.find(']');
  if (open == std::string::npos || close == std::string::npos) return out;
  std::string inner = group.substr(open + 1, close - open - 1);
  size_t pos = 0;
  while (pos < inner.size()) {
    size_t next = inner.find(',', pos);
    out.push_back(std::stoi(inner.substr(pos, next - pos)));
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return out;
}

std::string describe(const json& op) {
  std::string s;
  if (!op["call"].get<std::string>().empty()) s += op["call"].get<std::string>() + ": ";
  s += op["op"].get<std::string>() + " on " + op["group"].get<std::string>();
  if (op["seq"].get<long>() > 0) s += fmt::format(" #{}", op["seq"].get<long>());
  if (op["peer"].get<int>() >= 0) s += fmt::format(" with rank {}", op["peer"].get<int>());
  if (op["bytes"].get<long long>() >= 0)
    s += fmt::format(", {} bytes", op["bytes"].get<long long>());
  if (op["state"] == "pending" && op["posted_s_ago"].is_number())
    s += fmt::format(", pending for {:.1f} s", op["posted_s_ago"].get<double>());
  return s;
}

}  // namespace

int main(int argc, char** argv) try {
  const fs::path dir = argc > 1 ? argv[1] : ".";
  std::map<int, json> records;
  int world = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("smp_flight.", 0) != 0 || entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    json j = json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.contains("rank")) {
      std::printf("smp-flight: %s is not a flight record; skipped\n", name.c_str());
      continue;
    }
    world = std::max(world, j["world_size"].get<int>());
    const int rank = j["rank"].get<int>();  // before the move below: `=` reads its right side first
    records[rank] = std::move(j);
  }
  if (records.empty()) {
    std::fprintf(stderr, "smp-flight: no smp_flight.<rank>.json in %s\n", dir.c_str());
    return 1;
  }
  std::vector<int> missing;
  for (int r = 0; r < world; ++r)
    if (!records.count(r)) missing.push_back(r);
  fmt::print(
      "smp-flight: {} of {} ranks left a record in {}{}\n", records.size(), world, dir.string(),
      missing.empty() ? "" : fmt::format("; none from ranks [{}]", fmt::join(missing, ", ")));

  // The last collective each rank posted on each group.
  std::map<std::string, std::map<int, long>> posted;
  for (const auto& [r, rec] : records)
    for (const auto& op : rec["ops"])
      if (op["seq"].get<long>() > 0) {
        long& p = posted[op["group"].get<std::string>()][r];
        p = std::max(p, op["seq"].get<long>());
      }

  // Every pending operation and the ranks it waits for.
  std::vector<Wait> waits;
  for (const auto& [r, rec] : records) {
    fmt::print("rank {}: {}\n", r, rec["why"].get<std::string>());
    for (const auto& op : rec["ops"]) {
      if (op["state"] != "pending") continue;
      Wait w{r, op, {}};
      const long seq = op["seq"].get<long>();
      if (seq > 0) {
        const std::string g = op["group"].get<std::string>();
        for (int m : group_members(g)) {
          if (m == r) continue;
          auto it = posted[g].find(m);
          if (!records.count(m) || it == posted[g].end() || it->second < seq)
            w.blockers.push_back(m);
        }
      } else if (op["peer"].get<int>() >= 0) {
        w.blockers.push_back(op["peer"].get<int>());
      }
      fmt::print(
          "  waits in {}{}\n", describe(op),
          w.blockers.empty() ? "" : fmt::format(" — for ranks [{}]", fmt::join(w.blockers, ", ")));
      waits.push_back(std::move(w));
    }
  }

  // Follow who waits for whom: a rank is behind when others wait for it and it waits for
  // nobody (it computes, or left no record: killed, stopped or hung).
  std::map<int, std::set<int>> waits_on;  // rank -> ranks it waits for
  std::set<int> waiting;
  for (const auto& w : waits) {
    waiting.insert(w.rank);
    waits_on[w.rank].insert(w.blockers.begin(), w.blockers.end());
  }
  std::map<int, std::set<int>> behind;  // culprit -> ranks held up by it (directly or not)
  for (int r : waiting) {
    std::set<int> seen{r};
    std::vector<int> stack(waits_on[r].begin(), waits_on[r].end());
    while (!stack.empty()) {
      int x = stack.back();
      stack.pop_back();
      if (!seen.insert(x).second) continue;
      if (!waiting.count(x)) {
        behind[x].insert(r);
        continue;
      }
      stack.insert(stack.end(), waits_on[x].begin(), waits_on[x].end());
    }
  }
  // Ranks that stopped answering other ranks' status queries: their progress thread did not
  // run, so the process was stopped or starved (or hung inside MPI).
  std::map<int, std::set<int>> silent;  // silent rank -> ranks that noticed
  for (const auto& [r, rec] : records)
    if (rec.contains("silent_ranks"))
      for (int x : rec["silent_ranks"])
        if (x != r) silent[x].insert(r);
  // A split network: every rank found silent was itself waiting and asking, so it was running.
  // Ranks that still heard each other are on one side; when several sides each found the
  // others silent, the link between them failed, not a rank.
  bool all_asked = !silent.empty();
  for (const auto& [x, who] : silent)
    all_asked = all_asked && records.count(x) && records[x].contains("silent_ranks") &&
                !records[x]["silent_ranks"].empty();
  if (all_asked) {
    std::map<int, int> side;  // rank -> smallest rank on its side (ranks with records only)
    for (const auto& [r, rec] : records) side[r] = r;
    auto find = [&](int r) {
      while (side[r] != r) r = side[r];
      return r;
    };
    auto found_silent = [&](int r, int x) {
      const json& s = records[r].contains("silent_ranks") ? records[r]["silent_ranks"] : json();
      return s.is_array() && std::find(s.begin(), s.end(), json(x)) != s.end();
    };
    for (const auto& [r, rec] : records)
      for (const auto& [q, rec2] : records)
        if (r < q && !found_silent(r, q) && !found_silent(q, r)) {
          const int a = find(r), b = find(q);
          side[std::max(a, b)] = std::min(a, b);
        }
    std::map<int, std::vector<int>> sides;
    for (const auto& [r, rec] : records) sides[find(r)].push_back(r);
    if (sides.size() > 1) {
      std::vector<std::string> names;
      for (const auto& [root, members] : sides)
        names.push_back(fmt::format("[{}]", fmt::join(members, ", ")));
      fmt::print(
          "no rank is behind: ranks {} each stopped hearing from the other side while "
          "answering their own; the network between them failed (a cut link or a host's "
          "network)\n",
          fmt::join(names, " and "));
      return 0;
    }
  }
  if (!silent.empty()) {
    for (const auto& [x, who] : silent)
      fmt::print(
          "rank {} is behind: it stopped answering status queries (ranks [{}] asked while "
          "waiting; stopped, starved or hung){}\n",
          x, fmt::join(who, ", "),
          behind.count(x) ? fmt::format("; ranks [{}] wait for it", fmt::join(behind[x], ", "))
                          : "");
    return 0;
  }
  if (behind.empty()) {
    // Every rank waits on another. Either the program's order of collectives deadlocks, or a
    // rank stopped making progress while its peers' matching operations were already posted
    // (a stopped process resumed long enough to write its record): that rank completed its
    // last operation well before the others did.
    std::map<int, double> last_done;  // wall-clock time of each rank's last completion
    for (const auto& [r, rec] : records)
      for (const auto& op : rec["ops"])
        if (op["ended_s_ago"].is_number())
          last_done[r] =
              std::max(last_done[r], rec["time"].get<double>() - op["ended_s_ago"].get<double>());
    int oldest = -1;
    double latest = 0;
    for (const auto& [r, t] : last_done) {
      latest = std::max(latest, t);
      if (oldest < 0 || t < last_done[oldest]) oldest = r;
    }
    if (oldest >= 0 && latest - last_done[oldest] > 1.0) {
      fmt::print(
          "rank {} is behind: it completed nothing for {:.1f} s before the others' last "
          "completion (stopped or starved?); the other ranks wait on it\n",
          oldest, latest - last_done[oldest]);
      return 0;
    }
    fmt::print(
        "no rank is behind the others: the waits form a cycle (a deadlock in the "
        "program's order of collectives) or nothing was pending\n");
    return 0;
  }
  for (const auto& [x, held] : behind) {
    std::string state;
    if (!records.count(x)) {
      state = "it left no flight record (killed, stopped, or hung outside libsmp)";
    } else {
      const json& ops = records[x]["ops"];
      state = ops.empty() ? "it posted nothing"
                          : "it was computing; its last operation: " + describe(ops.back());
    }
    fmt::print("rank {} is behind: ranks [{}] wait for it; {}\n", x, fmt::join(held, ", "), state);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "smp-flight: %s\n", e.what());
  return 2;
}
