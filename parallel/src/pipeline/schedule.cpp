// Pipeline schedules (GPipe and 1F1B action lists) and a unit-time simulator that checks them.
#include "pipeline/schedule.h"

#include <fmt/format.h>
#include <smp/engine/error.h>

#include <algorithm>
#include <cstddef>

namespace smp::pipeline {

std::string to_string(const Action& a) {
  return fmt::format("{}{}", a.kind == Action::Forward ? 'F' : 'B', a.microbatch);
}

Schedule parse_schedule(const std::string& name) {
  if (name == "simple") return Schedule::Simple;
  if (name == "interleaved") return Schedule::Interleaved;
  SMP_ERROR("pipeline schedule: got '{}', expected 'simple' or 'interleaved'", name);
}

std::vector<Action> stage_actions(Schedule schedule, int pp, int stage, int microbatches,
                                  int active_microbatches, bool forward_only) {
  SMP_CHECK(pp >= 1, "stage_actions: pipeline size must be >= 1, got {}", pp);
  SMP_CHECK(stage >= 0 && stage < pp, "stage_actions: stage must be in [0, {}), got {}", pp, stage);
  SMP_CHECK(microbatches >= 1, "stage_actions: microbatches must be >= 1, got {}", microbatches);
  const int m = microbatches;
  std::vector<Action> out;
  out.reserve(forward_only ? m : 2 * m);
  if (forward_only || schedule == Schedule::Simple) {
    for (int i = 0; i < m; ++i) out.push_back({Action::Forward, i});
    if (forward_only) return out;
    // Backwards in microbatch order on every stage, so stage s+1's gradient sends and stage
    // s's receives pair up one for one.
    for (int i = 0; i < m; ++i) out.push_back({Action::Backward, i});
    return out;
  }

  // 1F1B. Stage s runs `lead` forwards before its first backward: pp - s of them fill the
  // pipe below it (the last stage needs only F0 before B0), capped by the in-flight bound.
  // After that each backward frees one slot, which the next forward takes, so the stage holds
  // exactly `lead` microbatches at its peak. `lead` never grows with s, which is what keeps the
  // lists deadlock-free: everything B(s, j) transitively waits for on stage s+1 is a forward
  // stage s has already run before B(s, j) (see docs/pipeline-schedules.md).
  const int active = std::clamp(active_microbatches, 1, m);
  const int lead = std::min(pp - stage, active);
  for (int i = 0; i < lead; ++i) out.push_back({Action::Forward, i});
  for (int i = 0; i < m; ++i) {
    out.push_back({Action::Backward, i});
    if (lead + i < m) out.push_back({Action::Forward, lead + i});
  }
  return out;
}

namespace {

// Checks that list `s` holds each F (and B unless forward-only) of microbatches [0, m) exactly
// once; returns what is wrong, or "" if nothing is.
std::string list_problem(const std::vector<Action>& list, int s, int m, bool forward_only) {
  std::vector<int> seen_f(m, 0), seen_b(m, 0);
  for (const Action& a : list) {
    if (a.microbatch < 0 || a.microbatch >= m) {
      return fmt::format("stage {} lists {}, but microbatches are 0..{}", s, to_string(a), m - 1);
    }
    if (a.kind == Action::Backward && forward_only) {
      return fmt::format("stage {} lists {} in a forward-only step", s, to_string(a));
    }
    int& n = (a.kind == Action::Forward ? seen_f : seen_b)[a.microbatch];
    if (++n > 1) return fmt::format("stage {} lists {} more than once", s, to_string(a));
  }
  for (int i = 0; i < m; ++i) {
    if (!seen_f[i]) return fmt::format("stage {} never runs F{}", s, i);
    if (!forward_only && !seen_b[i]) return fmt::format("stage {} never runs B{}", s, i);
  }
  return "";
}

}  // namespace

SimulationResult simulate(const std::vector<std::vector<Action>>& lists, int microbatches,
                          bool forward_only) {
  SMP_CHECK(!lists.empty(), "simulate: expected one action list per stage, got none");
  SMP_CHECK(microbatches >= 1, "simulate: microbatches must be >= 1, got {}", microbatches);
  const int pp = static_cast<int>(lists.size());
  const int m = microbatches;

  SimulationResult r;
  r.peak_in_flight.assign(pp, 0);
  r.start_times.resize(pp);
  for (int s = 0; s < pp; ++s) r.start_times[s].assign(lists[s].size(), -1);
  for (int s = 0; s < pp; ++s) {
    std::string problem = list_problem(lists[s], s, m, forward_only);
    if (!problem.empty()) {
      r.message = "invalid schedule: " + problem;
      return r;
    }
  }

  // done[kind][s][i]: finished in an earlier time unit (an action sees only those, so a chain
  // advances one stage per unit, like a receive that completes after the send).
  std::vector<std::vector<char>> done_f(pp, std::vector<char>(m, 0));
  std::vector<std::vector<char>> done_b(pp, std::vector<char>(m, 0));
  std::vector<std::size_t> pos(pp, 0);

  // The first dependency of stage s's head that is not done yet, as text; "" when it can run.
  auto blocker = [&](int s) -> std::string {
    const Action& a = lists[s][pos[s]];
    const int i = a.microbatch;
    if (a.kind == Action::Forward) {
      if (s > 0 && !done_f[s - 1][i]) return fmt::format("stage {}'s F{}", s - 1, i);
      return "";
    }
    if (!done_f[s][i]) return fmt::format("its own F{}, listed after it", i);
    if (s + 1 < pp && !done_b[s + 1][i]) return fmt::format("stage {}'s B{}", s + 1, i);
    return "";
  };

  int t = 0;
  std::vector<int> starting;
  for (;;) {
    starting.clear();
    bool finished = true;
    for (int s = 0; s < pp; ++s) {
      if (pos[s] == lists[s].size()) continue;
      finished = false;
      if (blocker(s).empty()) starting.push_back(s);
    }
    if (finished) break;
    if (starting.empty()) {
      std::string msg = fmt::format("deadlock at time {}:", t);
      for (int s = 0; s < pp; ++s) {
        if (pos[s] == lists[s].size()) continue;
        msg += fmt::format(" stage {} waits in {} (position {}) for {};", s,
                           to_string(lists[s][pos[s]]), pos[s], blocker(s));
      }
      msg.pop_back();
      r.message = msg;
      r.makespan = t;
      return r;
    }
    for (int s : starting) {
      const Action& a = lists[s][pos[s]];
      r.start_times[s][pos[s]] = t;
      (a.kind == Action::Forward ? done_f : done_b)[s][a.microbatch] = 1;
      ++pos[s];
    }
    ++t;
    if (!forward_only) {
      for (int s = 0; s < pp; ++s) {
        int held = 0;
        for (int i = 0; i < m; ++i) held += done_f[s][i] && !done_b[s][i];
        r.peak_in_flight[s] = std::max(r.peak_in_flight[s], held);
      }
    }
  }
  r.completed = true;
  r.makespan = t;
  return r;
}

std::string render(const std::vector<std::vector<Action>>& lists) {
  int m = 1;
  bool forward_only = true;
  std::size_t width = 1;
  for (const auto& list : lists) {
    for (const Action& a : list) {
      m = std::max(m, a.microbatch + 1);
      forward_only = forward_only && a.kind == Action::Forward;
      width = std::max(width, to_string(a).size());
    }
  }
  SimulationResult r = simulate(lists, m, forward_only);
  int end = r.makespan;
  for (const auto& starts : r.start_times) {
    for (int st : starts) end = std::max(end, st + 1);
  }
  const int w = static_cast<int>(width) + 1;
  std::string out = fmt::format("{:<4}", "t");
  for (int t = 0; t < end; ++t) out += fmt::format("{:>{}}", t, w);
  out += '\n';
  for (std::size_t s = 0; s < lists.size(); ++s) {
    std::vector<std::string> row(end, ".");
    for (std::size_t k = 0; k < lists[s].size(); ++k) {
      if (r.start_times[s][k] >= 0) row[r.start_times[s][k]] = to_string(lists[s][k]);
    }
    out += fmt::format("{:<4}", fmt::format("s{}", s));
    for (const std::string& cell : row) out += fmt::format("{:>{}}", cell, w);
    out += '\n';
  }
  if (!r.completed) out += r.message + '\n';
  return out;
}

}  // namespace smp::pipeline
