// Pipeline schedules: every stage's list is complete and pairs with its neighbours', the
// unit-time simulation never deadlocks and respects every dependency, GPipe and 1F1B reach their
// known makespans and activation peaks, and the simulator itself catches broken lists.
#include "pipeline/schedule.h"

#include <gtest/gtest.h>
#include <smp/engine/error.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

using namespace smp::pipeline;

namespace {

using Lists = std::vector<std::vector<Action>>;

Lists all_lists(Schedule sch, int pp, int m, int active, bool forward_only = false) {
  Lists lists;
  for (int s = 0; s < pp; ++s) lists.push_back(stage_actions(sch, pp, s, m, active, forward_only));
  return lists;
}

// "F0 F1 B0" -> actions.
std::vector<Action> parse(const std::string& text) {
  std::vector<Action> out;
  std::istringstream in(text);
  std::string tok;
  while (in >> tok) {
    out.push_back({tok[0] == 'F' ? Action::Forward : Action::Backward, std::stoi(tok.substr(1))});
  }
  return out;
}

std::string show(const std::vector<Action>& list) {
  std::string out;
  for (const Action& a : list) {
    if (!out.empty()) out += ' ';
    out += to_string(a);
  }
  return out;
}

// The parameter grid every property test walks: pp 1..8, microbatches 1..16, and active values
// from 1 (one microbatch at a time) past the microbatch count (clamped), plus the SMP default.
struct Case {
  int pp, m, active;
};
std::vector<Case> grid() {
  std::vector<Case> out;
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = 1; m <= 16; ++m) {
      std::vector<int> actives = {0, 1, 2, 3, pp - 1, pp, pp + 2, m - 1, m, m + 2, 100};
      std::sort(actives.begin(), actives.end());
      actives.erase(std::unique(actives.begin(), actives.end()), actives.end());
      for (int a : actives) out.push_back({pp, m, a});
    }
  }
  return out;
}

int clamp_active(int active, int m) { return std::clamp(active, 1, m); }

// (kind, stage, microbatch) -> start time, from a completed simulation.
using Starts = std::map<std::tuple<int, int, int>, int>;
Starts starts_of(const Lists& lists, const SimulationResult& r) {
  Starts out;
  for (int s = 0; s < static_cast<int>(lists.size()); ++s) {
    for (std::size_t k = 0; k < lists[s].size(); ++k) {
      const Action& a = lists[s][k];
      out[{a.kind, s, a.microbatch}] = r.start_times[s][k];
    }
  }
  return out;
}

}  // namespace

TEST(PipelineSchedule, ParsesNamesAndPrintsActions) {
  EXPECT_EQ(parse_schedule("simple"), Schedule::Simple);
  EXPECT_EQ(parse_schedule("interleaved"), Schedule::Interleaved);
  EXPECT_THROW(parse_schedule("1f1b"), smp::Error);
  EXPECT_THROW(parse_schedule("Simple"), smp::Error);
  try {
    parse_schedule("gpipe");
    FAIL() << "no error";
  } catch (const smp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("gpipe"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("interleaved"), std::string::npos) << e.what();
  }
  EXPECT_EQ(to_string({Action::Forward, 3}), "F3");
  EXPECT_EQ(to_string({Action::Backward, 12}), "B12");
}

TEST(PipelineSchedule, RejectsBadArguments) {
  EXPECT_THROW(stage_actions(Schedule::Simple, 0, 0, 4, 2), smp::Error);
  EXPECT_THROW(stage_actions(Schedule::Interleaved, 4, 4, 4, 2), smp::Error);
  EXPECT_THROW(stage_actions(Schedule::Interleaved, 4, -1, 4, 2), smp::Error);
  EXPECT_THROW(stage_actions(Schedule::Simple, 2, 0, 0, 2), smp::Error);
  EXPECT_THROW(simulate({}, 2), smp::Error);
  EXPECT_THROW(simulate({{}}, 0), smp::Error);
}

// Every stage lists each F and B exactly once, F(i) before B(i); and all stages list the
// forwards in the same order and the backwards in the same order, so each send of stage s
// meets the matching receive of stage s+1 (and back) in the same position.
TEST(PipelineSchedule, ListsAreCompleteAndSendsPairWithReceives) {
  for (Schedule sch : {Schedule::Simple, Schedule::Interleaved}) {
    for (const Case& c : grid()) {
      for (bool fo : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << "schedule " << static_cast<int>(sch) << " pp " << c.pp << " m " << c.m
                     << " active " << c.active << " forward_only " << fo);
        Lists lists = all_lists(sch, c.pp, c.m, c.active, fo);
        std::vector<int> f_order0, b_order0;
        for (int s = 0; s < c.pp; ++s) {
          const auto& list = lists[s];
          ASSERT_EQ(list.size(), static_cast<std::size_t>(fo ? c.m : 2 * c.m)) << show(list);
          std::vector<int> pos_f(c.m, -1), pos_b(c.m, -1);
          std::vector<int> f_order, b_order;
          for (int k = 0; k < static_cast<int>(list.size()); ++k) {
            const Action& a = list[k];
            ASSERT_GE(a.microbatch, 0);
            ASSERT_LT(a.microbatch, c.m);
            auto& pos = a.kind == Action::Forward ? pos_f : pos_b;
            ASSERT_EQ(pos[a.microbatch], -1)
                << "duplicate " << to_string(a) << " in " << show(list);
            pos[a.microbatch] = k;
            (a.kind == Action::Forward ? f_order : b_order).push_back(a.microbatch);
          }
          for (int i = 0; i < c.m; ++i) {
            EXPECT_NE(pos_f[i], -1) << "F" << i << " missing on stage " << s;
            if (fo) continue;
            EXPECT_NE(pos_b[i], -1) << "B" << i << " missing on stage " << s;
            EXPECT_LT(pos_f[i], pos_b[i]) << "stage " << s << ": " << show(list);
          }
          // Forwards and backwards each in increasing microbatch order.
          EXPECT_TRUE(std::is_sorted(f_order.begin(), f_order.end())) << show(list);
          EXPECT_TRUE(std::is_sorted(b_order.begin(), b_order.end())) << show(list);
          if (s == 0) {
            f_order0 = f_order;
            b_order0 = b_order;
          }
          EXPECT_EQ(f_order, f_order0) << "stage " << s << " forwards in another order";
          EXPECT_EQ(b_order, b_order0) << "stage " << s << " backwards in another order";
        }
      }
    }
  }
}

// The lists run to completion with every dependency honoured: a microbatch reaches stage s only
// after stage s-1 finished its forward, its backward only after stage s+1's backward.
TEST(PipelineSchedule, SimulationCompletesAndRespectsDependencies) {
  for (Schedule sch : {Schedule::Simple, Schedule::Interleaved}) {
    for (const Case& c : grid()) {
      for (bool fo : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << "schedule " << static_cast<int>(sch) << " pp " << c.pp << " m " << c.m
                     << " active " << c.active << " forward_only " << fo);
        Lists lists = all_lists(sch, c.pp, c.m, c.active, fo);
        SimulationResult r = simulate(lists, c.m, fo);
        ASSERT_TRUE(r.completed) << r.message << "\n" << render(lists);
        ASSERT_EQ(r.start_times.size(), static_cast<std::size_t>(c.pp));
        Starts st = starts_of(lists, r);
        int last_end = 0;
        for (int s = 0; s < c.pp; ++s) {
          // One action per unit, in list order.
          for (std::size_t k = 0; k < lists[s].size(); ++k) {
            ASSERT_GE(r.start_times[s][k], 0);
            if (k > 0) {
              EXPECT_GT(r.start_times[s][k], r.start_times[s][k - 1]);
            }
            last_end = std::max(last_end, r.start_times[s][k] + 1);
          }
          for (int i = 0; i < c.m; ++i) {
            const int f = st.at({Action::Forward, s, i});
            if (s > 0) {
              EXPECT_GE(f, st.at({Action::Forward, s - 1, i}) + 1) << "F" << i;
            }
            if (fo) continue;
            const int b = st.at({Action::Backward, s, i});
            EXPECT_GE(b, f + 1) << "B" << i << " on stage " << s;
            if (s + 1 < c.pp) {
              EXPECT_GE(b, st.at({Action::Backward, s + 1, i}) + 1) << "B" << i;
            }
          }
        }
        EXPECT_EQ(r.makespan, last_end);
        if (fo) {
          // A forward-only step is a pure pipeline fill: m + pp - 1 units, no activations held.
          EXPECT_EQ(r.makespan, c.m + c.pp - 1);
          EXPECT_EQ(r.peak_in_flight, std::vector<int>(c.pp, 0));
        }
      }
    }
  }
}

TEST(PipelineSchedule, SimpleRunsAllForwardsThenAllBackwards) {
  for (const Case& c : grid()) {
    SCOPED_TRACE(::testing::Message() << "pp " << c.pp << " m " << c.m << " active " << c.active);
    Lists lists = all_lists(Schedule::Simple, c.pp, c.m, c.active);
    for (const auto& list : lists) {
      for (int i = 0; i < c.m; ++i) {
        EXPECT_EQ(list[i], (Action{Action::Forward, i})) << show(list);
        EXPECT_EQ(list[c.m + i], (Action{Action::Backward, i})) << show(list);
      }
    }
    SimulationResult r = simulate(lists, c.m);
    ASSERT_TRUE(r.completed) << r.message;
    // GPipe with unit F and B: fill (m + pp - 1) and drain (m + pp - 1).
    EXPECT_EQ(r.makespan, 2 * (c.m + c.pp - 1));
    EXPECT_EQ(r.peak_in_flight, std::vector<int>(c.pp, c.m));
  }
}

TEST(PipelineSchedule, InterleavedAlternatesAndBoundsActivations) {
  for (const Case& c : grid()) {
    SCOPED_TRACE(::testing::Message() << "pp " << c.pp << " m " << c.m << " active " << c.active);
    const int active = clamp_active(c.active, c.m);
    Lists lists = all_lists(Schedule::Interleaved, c.pp, c.m, c.active);
    for (int s = 0; s < c.pp; ++s) {
      const auto& list = lists[s];
      // Warmup: the forwards that fill the pipe below this stage, capped by `active`; B0 follows
      // the last of them at once (on the last stage, right after F0).
      const int lead = std::min(c.pp - s, active);
      for (int i = 0; i < lead; ++i) EXPECT_EQ(list[i], (Action{Action::Forward, i})) << show(list);
      EXPECT_EQ(list[lead], (Action{Action::Backward, 0})) << show(list);
      // After that, backward first: never two forwards in a row; once forwards run out, only
      // backwards remain.
      for (std::size_t k = lead + 1; k < list.size(); ++k) {
        if (list[k].kind == Action::Forward) {
          EXPECT_EQ(list[k - 1].kind, Action::Backward) << "stage " << s << ": " << show(list);
        }
      }
    }
    SimulationResult r = simulate(lists, c.m);
    ASSERT_TRUE(r.completed) << r.message << "\n" << render(lists);
    for (int s = 0; s < c.pp; ++s) {
      EXPECT_EQ(r.peak_in_flight[s], std::min(c.pp - s, active)) << "stage " << s;
      EXPECT_LE(r.peak_in_flight[s], active);
    }
    if (active >= std::min(c.pp, c.m)) {
      // Nothing is held back by `active`: 1F1B matches GPipe's 2(m + pp - 1) with unit times.
      EXPECT_EQ(r.makespan, 2 * (c.m + c.pp - 1)) << render(lists);
    }
    if (active == 1) {
      // One microbatch at a time: each makes the full round trip, 2 pp units, alone.
      EXPECT_EQ(r.makespan, 2 * c.pp * c.m) << render(lists);
    }
  }
}

// Allowing more microbatches in flight never makes the step slower.
TEST(PipelineSchedule, InterleavedMakespanShrinksWithActive) {
  for (int pp = 1; pp <= 8; ++pp) {
    for (int m = 1; m <= 16; ++m) {
      int prev = -1;
      for (int a = 1; a <= m + 2; ++a) {
        SimulationResult r = simulate(all_lists(Schedule::Interleaved, pp, m, a), m);
        ASSERT_TRUE(r.completed) << r.message;
        if (prev >= 0) {
          EXPECT_LE(r.makespan, prev) << "pp " << pp << " m " << m << " active " << a;
        }
        EXPECT_GE(r.makespan, 2 * (m + pp - 1));
        prev = r.makespan;
      }
    }
  }
}

// pp = 4, m = 8 written out by hand. 1F1B with SMP's default active = pp + 2 = 6: stage s runs
// 4 - s forwards (stage 3, the last, only F0), then alternates B, F until F7, then drains.
TEST(PipelineSchedule, HandWrittenPp4M8) {
  const Lists interleaved = {
      parse("F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7"),
      parse("F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 B6 B7"),
      parse("F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7"),
      parse("F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7"),
  };
  EXPECT_EQ(all_lists(Schedule::Interleaved, 4, 8, 4 + 2), interleaved);
  // Any active >= pp gives the same lists: the pipe depth, not `active`, is the limit.
  EXPECT_EQ(all_lists(Schedule::Interleaved, 4, 8, 4), interleaved);
  EXPECT_EQ(all_lists(Schedule::Interleaved, 4, 8, 100), interleaved);

  // active = 2: stages 0-2 may hold only two microbatches, so they start 1F1B after F1.
  const Lists active2 = {
      parse("F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7"),
      parse("F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7"),
      parse("F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7"),
      parse("F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7"),
  };
  EXPECT_EQ(all_lists(Schedule::Interleaved, 4, 8, 2), active2);

  const std::vector<Action> gpipe = parse("F0 F1 F2 F3 F4 F5 F6 F7 B0 B1 B2 B3 B4 B5 B6 B7");
  EXPECT_EQ(all_lists(Schedule::Simple, 4, 8, 6), Lists(4, gpipe));

  EXPECT_EQ(all_lists(Schedule::Interleaved, 4, 8, 6, true),
            Lists(4, parse("F0 F1 F2 F3 F4 F5 F6 F7")));
}

// Fewer microbatches than stages (a hang SMP users hit): active clamps to m = 2.
TEST(PipelineSchedule, HandWrittenFewerMicrobatchesThanStages) {
  const Lists expected = {
      parse("F0 F1 B0 B1"),
      parse("F0 F1 B0 B1"),
      parse("F0 F1 B0 B1"),
      parse("F0 B0 F1 B1"),
  };
  EXPECT_EQ(all_lists(Schedule::Interleaved, 4, 2, 6), expected);
  SimulationResult r = simulate(expected, 2);
  ASSERT_TRUE(r.completed) << r.message;
  EXPECT_EQ(r.makespan, 2 * (2 + 4 - 1));
  EXPECT_EQ(r.peak_in_flight, (std::vector<int>{2, 2, 2, 1}));
}

// Times worked out by hand for GPipe with pp = 2, m = 2.
TEST(PipelineSimulate, HandTimedGpipe) {
  const Lists lists = {parse("F0 F1 B0 B1"), parse("F0 F1 B0 B1")};
  SimulationResult r = simulate(lists, 2);
  ASSERT_TRUE(r.completed) << r.message;
  EXPECT_EQ(r.start_times[0], (std::vector<int>{0, 1, 4, 5}));
  EXPECT_EQ(r.start_times[1], (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(r.makespan, 6);
  EXPECT_EQ(r.peak_in_flight, (std::vector<int>{2, 2}));
  EXPECT_EQ(render(lists),
            "t     0  1  2  3  4  5\n"
            "s0   F0 F1  .  . B0 B1\n"
            "s1    . F0 F1 B0 B1  .\n");
}

// One stage may run its own microbatches in any order with F before B; the peak counts them.
TEST(PipelineSimulate, SingleStageAnyValidOrder) {
  SimulationResult r = simulate({parse("F0 F1 F2 B2 B0 B1")}, 3);
  ASSERT_TRUE(r.completed) << r.message;
  EXPECT_EQ(r.makespan, 6);
  EXPECT_EQ(r.peak_in_flight, std::vector<int>{3});
  r = simulate({parse("F1 B1 F0 B0")}, 2);
  ASSERT_TRUE(r.completed) << r.message;
  EXPECT_EQ(r.peak_in_flight, std::vector<int>{1});
}

// Stage 1 waits to receive F1 before F0; stage 0 sends F1 only after B0, which needs stage 1's
// B0: a cycle, reported with both stuck heads.
TEST(PipelineSimulate, ReportsDeadlockWithWhoWaitsOnWhom) {
  const Lists bad = {parse("F0 B0 F1 B1"), parse("F1 F0 B0 B1")};
  SimulationResult r = simulate(bad, 2);
  EXPECT_FALSE(r.completed);
  EXPECT_NE(r.message.find("deadlock"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("stage 0 waits in B0"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("for stage 1's B0"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("stage 1 waits in F1"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("for stage 0's F1"), std::string::npos) << r.message;
  // F0 ran on stage 0; nothing else could.
  EXPECT_EQ(r.start_times[0], (std::vector<int>{0, -1, -1, -1}));
  EXPECT_EQ(r.start_times[1], (std::vector<int>{-1, -1, -1, -1}));
  EXPECT_NE(render(bad).find("deadlock"), std::string::npos);

  // Backwards in different orders on neighbouring stages: harmless while the sender runs
  // ahead (stage 1 sends both gradients before stage 0 needs either) ...
  r = simulate({parse("F0 F1 B1 B0"), parse("F0 F1 B0 B1")}, 2);
  EXPECT_TRUE(r.completed) << r.message;
  // ... but a hang once the sender itself waits on the receiver's next forward: the reason both
  // schedules keep every stage's backwards in one order.
  r = simulate({parse("F0 F1 B0 B1"), parse("F0 B0 F1 B1"), parse("F0 F1 B1 B0")}, 2);
  EXPECT_FALSE(r.completed);
  EXPECT_NE(r.message.find("stage 1 waits in B0"), std::string::npos) << r.message;

  // A backward listed before its own forward.
  r = simulate({parse("B0 F0")}, 1);
  EXPECT_FALSE(r.completed);
  EXPECT_NE(r.message.find("its own F0"), std::string::npos) << r.message;
}

TEST(PipelineSimulate, ReportsMalformedLists) {
  struct Bad {
    Lists lists;
    int m;
    bool fo;
    std::string expect;
  };
  const std::vector<Bad> bads = {
      {{parse("F0 F0 B0"), parse("F0 B0")}, 1, false, "stage 0 lists F0 more than once"},
      {{parse("F0 B0"), parse("F0")}, 1, false, "stage 1 never runs B0"},
      {{parse("F0 B0"), parse("B0")}, 1, false, "stage 1 never runs F0"},
      {{parse("F0 F2 B0 B2")}, 2, false, "stage 0 lists F2, but microbatches are 0..1"},
      {{parse("F0"), parse("F0 B0")}, 1, true, "stage 1 lists B0 in a forward-only step"},
  };
  for (const Bad& b : bads) {
    SimulationResult r = simulate(b.lists, b.m, b.fo);
    EXPECT_FALSE(r.completed);
    EXPECT_NE(r.message.find(b.expect), std::string::npos) << r.message;
  }
}
