// smp::Topology: SMP's decomposition of the world into pipeline, tensor and data ranks.
#pragma once

#include <string>
#include <vector>

namespace smp {

/// The process groups SMP defines. DP = TP × RDP, MP = PP × TP.
enum class CommGroup { WORLD, PP_GROUP, TP_GROUP, RDP_GROUP, DP_GROUP, MP_GROUP };

/// "WORLD", "PP_GROUP", ...
const char* to_string(CommGroup g);

/// A rank's coordinates in the (rdp, pp, tp) grid.
struct RankCoords {
  int rdp = 0, pp = 0, tp = 0;
  bool operator==(const RankCoords&) const = default;
};

/// Pure arithmetic over (world size, pp, tp, placement), needing no MPI: placement "XYZ" (a
/// permutation of D = rdp, P = pp, T = tp) numbers ranks as rank = (x·|Y| + y)·|Z| + z, so the
/// rightmost letter varies fastest. A rank's index in any group is its position in that group's
/// rank list sorted ascending.
class Topology {
 public:
  /// Throws smp::Error unless pp, tp ≥ 1, pp·tp divides world_size and `placement` is
  /// "cluster", "spread" or a permutation of "DPT".
  Topology(int world_size, int pp, int tp, const std::string& placement = "cluster");

  int world_size() const { return world_; }
  int pp_size() const { return pp_; }
  int tp_size() const { return tp_; }
  int rdp_size() const { return rdp_; }
  int dp_size() const { return tp_ * rdp_; }
  int mp_size() const { return pp_ * tp_; }
  /// Canonical permutation of "DPT".
  const std::string& placement() const { return placement_; }

  int rank_of(const RankCoords& c) const;
  RankCoords coords(int rank) const;

  int pp_rank(int rank) const { return coords(rank).pp; }
  int tp_rank(int rank) const { return coords(rank).tp; }
  int rdp_rank(int rank) const { return coords(rank).rdp; }
  int dp_rank(int rank) const { return rank_in_group(CommGroup::DP_GROUP, rank); }
  int mp_rank(int rank) const { return rank_in_group(CommGroup::MP_GROUP, rank); }

  /// Global ranks of the group of kind `g` that contains `rank`, ascending.
  std::vector<int> group(CommGroup g, int rank) const;
  /// Every group of kind `g`, each ascending, ordered by first rank.
  std::vector<std::vector<int>> groups(CommGroup g) const;
  /// Index of `rank` within its group of kind `g`.
  int rank_in_group(CommGroup g, int rank) const;
  /// Size of a group of kind `g`.
  int group_size(CommGroup g) const;

 private:
  int world_, pp_, tp_, rdp_;
  std::string placement_;
};

}  // namespace smp
