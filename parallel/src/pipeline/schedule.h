// Pipeline schedules: the order in which a rank runs the forward and backward of each microbatch.
#pragma once

#include <string>
#include <vector>

namespace smp::pipeline {

/// One unit of a rank's work: the forward or the backward segment of one microbatch's task.
struct Action {
  enum Kind { Forward, Backward };
  Kind kind = Forward;
  int microbatch = 0;
  bool operator==(const Action&) const = default;
};

/// "F3" / "B0".
std::string to_string(const Action& a);

/// Which schedule to build.
enum class Schedule {
  Simple,       ///< GPipe: every forward, then every backward (in microbatch order)
  Interleaved,  ///< 1F1B: backward first whenever one is ready, at most `active` in flight
};

/// Parses "simple" / "interleaved" (smp::Error otherwise).
Schedule parse_schedule(const std::string& name);

/// The action list of pipeline stage `stage` (0 .. pp-1) for a chain of pp stages where the
/// forward of microbatch m on stage s needs stage s-1's forward of m, and the backward of m on
/// stage s needs stage s+1's backward of m (the last stage's backward follows its own forward).
/// Computed from its arguments alone, so every rank derives every rank's list identically.
/// `active_microbatches` bounds the microbatches a stage holds between forward and backward
/// (clamped to [1, microbatches]); a forward-only step (no backward) uses `forward_only`.
std::vector<Action> stage_actions(Schedule schedule, int pp, int stage, int microbatches,
                                  int active_microbatches, bool forward_only = false);

/// Result of simulating all stages' lists with blocking receives and buffered sends.
struct SimulationResult {
  bool completed = false;  ///< false: deadlock or malformed lists (the message says which)
  std::string message;
  int makespan = 0;                 ///< time units, every action taking one unit
  std::vector<int> peak_in_flight;  ///< per stage: most microbatches between F and B
  /// start_times[s][i]: when stage s started lists[s][i] (-1 if it never did); the action
  /// ends one unit later.
  std::vector<std::vector<int>> start_times;
};

/// Runs the per-stage lists of a chain pipeline (each action one time unit; an action starts
/// when its dependencies are done) and reports completion, makespan and peak activations.
/// A list that is not a permutation of the stage's F (and B) actions is reported as not
/// completed, naming the stage and the offending action. Under `forward_only` no activation is
/// held for a backward, so peak_in_flight is 0.
SimulationResult simulate(const std::vector<std::vector<Action>>& lists, int microbatches,
                          bool forward_only = false);

/// A timeline of simulate(lists) for debugging: one row per stage, one column per time unit,
/// "." where the stage idles. The microbatch count is taken from the lists.
std::string render(const std::vector<std::vector<Action>>& lists);

}  // namespace smp::pipeline
