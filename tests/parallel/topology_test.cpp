// smp::Topology against SMP's documented numbering (SMP_REFERENCE.md, "Ranks and groups"):
// brute-force checks over every small grid and placement, plus hand-worked tables.
#include <gtest/gtest.h>
#include <smp/parallel/config.h>
#include <smp/parallel/topology.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

using smp::CommGroup;
using smp::RankCoords;
using smp::Topology;
using Groups = std::vector<std::vector<int>>;

const std::vector<CommGroup> kAllGroups = {CommGroup::WORLD,    CommGroup::PP_GROUP,
                                           CommGroup::TP_GROUP, CommGroup::RDP_GROUP,
                                           CommGroup::DP_GROUP, CommGroup::MP_GROUP};
const std::vector<std::string> kPermutations = {"DPT", "DTP", "PDT", "PTD", "TDP", "TPD"};

// The documented formula written out independently of the library: placement "XYZ" gives
// rank = (x*|Y| + y)*|Z| + z.
int formula_rank(const std::string& placement, int rdp_size, int pp_size, int tp_size,
                 const RankCoords& c) {
  auto size = [&](char l) { return l == 'D' ? rdp_size : l == 'P' ? pp_size : tp_size; };
  auto coord = [&](char l) { return l == 'D' ? c.rdp : l == 'P' ? c.pp : c.tp; };
  const char x = placement[0], y = placement[1], z = placement[2];
  return (coord(x) * size(y) + coord(y)) * size(z) + coord(z);
}

// Whether two ranks' coordinates agree on the axes a group holds fixed (SMP's definitions:
// PP = same (rdp, tp), TP = same (rdp, pp), RDP = same (pp, tp), DP = same pp, MP = same rdp).
bool same_group(CommGroup g, const RankCoords& a, const RankCoords& b) {
  switch (g) {
    case CommGroup::WORLD:
      return true;
    case CommGroup::PP_GROUP:
      return a.rdp == b.rdp && a.tp == b.tp;
    case CommGroup::TP_GROUP:
      return a.rdp == b.rdp && a.pp == b.pp;
    case CommGroup::RDP_GROUP:
      return a.pp == b.pp && a.tp == b.tp;
    case CommGroup::DP_GROUP:
      return a.pp == b.pp;
    case CommGroup::MP_GROUP:
      return a.rdp == b.rdp;
  }
  return false;
}

int expected_size(CommGroup g, int world, int pp, int tp) {
  const int rdp = world / (pp * tp);
  switch (g) {
    case CommGroup::WORLD:
      return world;
    case CommGroup::PP_GROUP:
      return pp;
    case CommGroup::TP_GROUP:
      return tp;
    case CommGroup::RDP_GROUP:
      return rdp;
    case CommGroup::DP_GROUP:
      return tp * rdp;
    case CommGroup::MP_GROUP:
      return pp * tp;
  }
  return -1;
}

// Checks one (world, pp, tp, placement) against the formula and the group definitions.
void check_grid(int world, int pp, int tp, const std::string& placement,
                const std::string& canonical) {
  SCOPED_TRACE(testing::Message() << "world " << world << " pp " << pp << " tp " << tp
                                  << " placement " << placement);
  const Topology t(world, pp, tp, placement);
  const int rdp = world / (pp * tp);
  ASSERT_EQ(t.placement(), canonical);
  ASSERT_EQ(t.world_size(), world);
  ASSERT_EQ(t.pp_size(), pp);
  ASSERT_EQ(t.tp_size(), tp);
  ASSERT_EQ(t.rdp_size(), rdp);
  ASSERT_EQ(t.dp_size(), tp * rdp);
  ASSERT_EQ(t.mp_size(), pp * tp);

  // Enumerate every coordinate triple; the formula must be a bijection onto [0, world).
  std::map<int, RankCoords> by_rank;
  for (int d = 0; d < rdp; ++d)
    for (int p = 0; p < pp; ++p)
      for (int q = 0; q < tp; ++q) {
        const RankCoords c{d, p, q};
        const int r = formula_rank(canonical, rdp, pp, tp, c);
        ASSERT_TRUE(r >= 0 && r < world) << r;
        ASSERT_TRUE(by_rank.emplace(r, c).second) << "rank " << r << " assigned twice";
        EXPECT_EQ(t.rank_of(c), r);
        EXPECT_EQ(t.coords(r), c) << "rank " << r;
        EXPECT_EQ(t.rdp_rank(r), d);
        EXPECT_EQ(t.pp_rank(r), p);
        EXPECT_EQ(t.tp_rank(r), q);
      }
  ASSERT_EQ(static_cast<int>(by_rank.size()), world);

  for (CommGroup g : kAllGroups) {
    SCOPED_TRACE(smp::to_string(g));
    const int size = expected_size(g, world, pp, tp);
    EXPECT_EQ(t.group_size(g), size);

    // The expected groups, built from the definitions: every rank with matching coordinates.
    Groups expected;
    std::set<int> placed;
    for (int r = 0; r < world; ++r) {
      if (placed.count(r)) continue;
      std::vector<int> members;
      for (int s = 0; s < world; ++s)
        if (same_group(g, by_rank[r], by_rank[s])) members.push_back(s);
      for (int m : members) placed.insert(m);
      expected.push_back(members);
    }
    const Groups got = t.groups(g);
    EXPECT_EQ(got, expected);

    // A partition of the world into groups of the documented size.
    std::vector<int> count(world, 0);
    for (const auto& grp : got) {
      EXPECT_EQ(static_cast<int>(grp.size()), size);
      EXPECT_TRUE(std::is_sorted(grp.begin(), grp.end()));
      for (int m : grp) ++count[m];
    }
    EXPECT_EQ(static_cast<int>(got.size()), world / size);
    for (int r = 0; r < world; ++r) EXPECT_EQ(count[r], 1) << "rank " << r;

    for (int r = 0; r < world; ++r) {
      const auto mine = t.group(g, r);
      const auto it = std::find(mine.begin(), mine.end(), r);
      ASSERT_NE(it, mine.end());
      EXPECT_TRUE(std::find(got.begin(), got.end(), mine) != got.end());
      EXPECT_EQ(t.rank_in_group(g, r), static_cast<int>(it - mine.begin()));
      // Within PP, TP and RDP groups the index is the varying coordinate itself.
      const int index = static_cast<int>(it - mine.begin());
      switch (g) {
        case CommGroup::DP_GROUP:
          EXPECT_EQ(t.dp_rank(r), index);
          break;
        case CommGroup::MP_GROUP:
          EXPECT_EQ(t.mp_rank(r), index);
          break;
        case CommGroup::PP_GROUP:
          EXPECT_EQ(index, by_rank[r].pp);
          break;
        case CommGroup::TP_GROUP:
          EXPECT_EQ(index, by_rank[r].tp);
          break;
        case CommGroup::RDP_GROUP:
          EXPECT_EQ(index, by_rank[r].rdp);
          break;
        case CommGroup::WORLD:
          EXPECT_EQ(index, r);
          break;
      }
    }
  }
}

TEST(Topology, EveryGridAndPlacementFollowsTheFormula) {
  for (int world : {1, 2, 4, 6, 8, 12}) {
    for (int pp = 1; pp <= world; ++pp) {
      for (int tp = 1; tp <= world; ++tp) {
        if (world % (pp * tp) != 0) continue;
        check_grid(world, pp, tp, "cluster", "DPT");
        check_grid(world, pp, tp, "spread", "TPD");
        for (const auto& perm : kPermutations) check_grid(world, pp, tp, perm, perm);
      }
    }
  }
}

// SMP_REFERENCE.md: 8 ranks, pp=2, tp=1.
TEST(Topology, SmpDocumentedExampleCluster) {
  const Topology t(8, 2, 1, "cluster");
  EXPECT_EQ(t.groups(CommGroup::MP_GROUP), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(t.groups(CommGroup::DP_GROUP), (Groups{{0, 2, 4, 6}, {1, 3, 5, 7}}));
  EXPECT_EQ(t.groups(CommGroup::PP_GROUP), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(t.group(CommGroup::DP_GROUP, 5), (std::vector<int>{1, 3, 5, 7}));
  EXPECT_EQ(t.dp_rank(5), 2);
  EXPECT_EQ(t.pp_rank(5), 1);
}

TEST(Topology, SmpDocumentedExampleSpread) {
  const Topology t(8, 2, 1, "spread");
  EXPECT_EQ(t.groups(CommGroup::MP_GROUP), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(t.groups(CommGroup::DP_GROUP), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(t.group(CommGroup::MP_GROUP, 6), (std::vector<int>{2, 6}));
  EXPECT_EQ(t.pp_rank(6), 1);
  EXPECT_EQ(t.dp_rank(6), 2);
}

// 8 ranks, pp=2, tp=2, rdp=2 under DPT: rank = (d*2 + p)*2 + t, so
//   rank: 0     1     2     3     4     5     6     7
//   d p t 0 0 0 0 0 1 0 1 0 0 1 1 1 0 0 1 0 1 1 1 0 1 1 1
TEST(Topology, HandTable8RanksPp2Tp2Dpt) {
  const Topology t(8, 2, 2, "DPT");
  const std::vector<RankCoords> c = {{0, 0, 0}, {0, 0, 1}, {0, 1, 0}, {0, 1, 1},
                                     {1, 0, 0}, {1, 0, 1}, {1, 1, 0}, {1, 1, 1}};
  for (int r = 0; r < 8; ++r) EXPECT_EQ(t.coords(r), c[r]) << r;
  EXPECT_EQ(t.groups(CommGroup::TP_GROUP), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(t.groups(CommGroup::PP_GROUP), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(t.groups(CommGroup::RDP_GROUP), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(t.groups(CommGroup::DP_GROUP), (Groups{{0, 1, 4, 5}, {2, 3, 6, 7}}));
  EXPECT_EQ(t.groups(CommGroup::MP_GROUP), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(t.groups(CommGroup::WORLD), (Groups{{0, 1, 2, 3, 4, 5, 6, 7}}));
  // Rank 5 = (d1, p0, t1): 4th of DP group {0,1,4,5}, 2nd of MP group {4,5,6,7}.
  EXPECT_EQ(t.dp_rank(5), 3);
  EXPECT_EQ(t.mp_rank(5), 1);
  EXPECT_EQ(t.rank_of({1, 1, 0}), 6);
}

// The same grid under TPD (= spread): rank = (t*2 + p)*2 + d, so
//   rank: 0     1     2     3     4     5     6     7
//   t p d 0 0 0 0 0 1 0 1 0 0 1 1 1 0 0 1 0 1 1 1 0 1 1 1
TEST(Topology, HandTable8RanksPp2Tp2Tpd) {
  const Topology t(8, 2, 2, "TPD");
  const std::vector<RankCoords> c = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {1, 1, 0},
                                     {0, 0, 1}, {1, 0, 1}, {0, 1, 1}, {1, 1, 1}};
  for (int r = 0; r < 8; ++r) EXPECT_EQ(t.coords(r), c[r]) << r;
  EXPECT_EQ(t.groups(CommGroup::TP_GROUP), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(t.groups(CommGroup::PP_GROUP), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(t.groups(CommGroup::RDP_GROUP), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(t.groups(CommGroup::DP_GROUP), (Groups{{0, 1, 4, 5}, {2, 3, 6, 7}}));
  EXPECT_EQ(t.groups(CommGroup::MP_GROUP), (Groups{{0, 2, 4, 6}, {1, 3, 5, 7}}));
  // Rank 6 = (t1, p1, d0): 3rd of DP group {2,3,6,7}, 4th of MP group {0,2,4,6}.
  EXPECT_EQ(t.dp_rank(6), 2);
  EXPECT_EQ(t.mp_rank(6), 3);
  EXPECT_EQ(Topology(8, 2, 2, "spread").groups(CommGroup::MP_GROUP), t.groups(CommGroup::MP_GROUP));
}

// 12 ranks, pp=3, tp=2, rdp=2 under PTD: rank = (p*2 + t)*2 + d; pipeline stages are the
// slowest axis, so stage p holds ranks 4p..4p+3.
TEST(Topology, HandTable12RanksPtd) {
  const Topology t(12, 3, 2, "PTD");
  EXPECT_EQ(t.groups(CommGroup::DP_GROUP), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}}));
  EXPECT_EQ(t.groups(CommGroup::PP_GROUP), (Groups{{0, 4, 8}, {1, 5, 9}, {2, 6, 10}, {3, 7, 11}}));
  EXPECT_EQ(t.groups(CommGroup::TP_GROUP),
            (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}}));
  EXPECT_EQ(t.coords(7), (RankCoords{1, 1, 1}));
  EXPECT_EQ(t.mp_rank(7), 3);  // MP group of rdp 1: {1,3,5,7,9,11}
}

TEST(Topology, ToString) {
  EXPECT_STREQ(smp::to_string(CommGroup::WORLD), "WORLD");
  EXPECT_STREQ(smp::to_string(CommGroup::PP_GROUP), "PP_GROUP");
  EXPECT_STREQ(smp::to_string(CommGroup::TP_GROUP), "TP_GROUP");
  EXPECT_STREQ(smp::to_string(CommGroup::RDP_GROUP), "RDP_GROUP");
  EXPECT_STREQ(smp::to_string(CommGroup::DP_GROUP), "DP_GROUP");
  EXPECT_STREQ(smp::to_string(CommGroup::MP_GROUP), "MP_GROUP");
}

void expect_config_error(int world, int pp, int tp, const std::string& placement,
                         const std::vector<std::string>& parts) {
  try {
    Topology(world, pp, tp, placement);
    ADD_FAILURE() << "no error for world " << world << " pp " << pp << " tp " << tp << " "
                  << placement;
  } catch (const smp::ConfigError& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\nlacks " << p;
  }
}

TEST(Topology, RejectsBadArguments) {
  expect_config_error(8, 0, 1, "cluster", {"pipeline_parallel_degree 0"});
  expect_config_error(8, 1, 0, "cluster", {"tensor_parallel_degree 0"});
  expect_config_error(0, 1, 1, "cluster", {"world size is 0"});
  expect_config_error(6, 4, 1, "cluster", {"world size 6", "4"});
  expect_config_error(8, 2, 3, "cluster", {"world size 8", "2", "3"});
  for (const char* bad : {"dpt", "DPP", "DPTD", "DP", "", "Cluster", "XYZ"})
    expect_config_error(8, 2, 2, bad, {"\"" + std::string(bad) + "\"", "permutation"});
}

TEST(Topology, RejectsRanksOutsideTheWorld) {
  const Topology t(4, 2, 1);
  EXPECT_THROW(t.coords(4), smp::Error);
  EXPECT_THROW(t.coords(-1), smp::Error);
  EXPECT_THROW(t.group(CommGroup::DP_GROUP, 9), smp::Error);
  EXPECT_THROW(t.rank_of({0, 2, 0}), smp::Error);
  EXPECT_THROW(t.rank_of({2, 0, 0}), smp::Error);
  EXPECT_THROW(t.rank_of({0, 0, 1}), smp::Error);
}

}  // namespace
