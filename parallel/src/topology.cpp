// smp::Topology: rank <-> (rdp, pp, tp) arithmetic and the groups built from it.
#include <fmt/format.h>
#include <smp/parallel/config.h>
#include <smp/parallel/topology.h>

#include <algorithm>

namespace smp {

const char* to_string(CommGroup g) {
  switch (g) {
    case CommGroup::WORLD:
      return "WORLD";
    case CommGroup::PP_GROUP:
      return "PP_GROUP";
    case CommGroup::TP_GROUP:
      return "TP_GROUP";
    case CommGroup::RDP_GROUP:
      return "RDP_GROUP";
    case CommGroup::DP_GROUP:
      return "DP_GROUP";
    case CommGroup::MP_GROUP:
      return "MP_GROUP";
  }
  return "unknown CommGroup";
}

namespace {

// Which coordinates a group holds fixed: two ranks share a group when these agree.
struct Fixed {
  bool rdp, pp, tp;
};

Fixed fixed_coords(CommGroup g) {
  switch (g) {
    case CommGroup::WORLD:
      return {false, false, false};
    case CommGroup::PP_GROUP:
      return {true, false, true};
    case CommGroup::TP_GROUP:
      return {true, true, false};
    case CommGroup::RDP_GROUP:
      return {false, true, true};
    case CommGroup::DP_GROUP:
      return {false, true, false};
    case CommGroup::MP_GROUP:
      return {true, false, false};
  }
  SMP_ERROR("unknown CommGroup {}", static_cast<int>(g));
}

bool same_group(const Fixed& f, const RankCoords& a, const RankCoords& b) {
  return (!f.rdp || a.rdp == b.rdp) && (!f.pp || a.pp == b.pp) && (!f.tp || a.tp == b.tp);
}

}  // namespace

Topology::Topology(int world_size, int pp, int tp, const std::string& placement) {
  if (world_size < 1)
    throw ConfigError(
        fmt::format("smp topology: world size is {}; it must be at least 1", world_size));
  if (pp < 1 || tp < 1)
    throw ConfigError(fmt::format(
        "smp topology: pipeline_parallel_degree {} and tensor_parallel_degree {} must both be >= 1",
        pp, tp));
  if (world_size % (pp * tp) != 0)
    throw ConfigError(
        fmt::format("smp topology: world size {} is not divisible by pipeline_parallel_degree {} x "
                    "tensor_parallel_degree {} = {}",
                    world_size, pp, tp, pp * tp));
  std::string canon = placement;
  if (placement == "cluster") canon = "DPT";
  if (placement == "spread") canon = "TPD";
  std::string sorted = canon;
  std::sort(sorted.begin(), sorted.end());
  if (sorted != "DPT")
    throw ConfigError(
        fmt::format("smp topology: placement_strategy \"{}\" must be \"cluster\", \"spread\" or a "
                    "permutation of the letters D, P, T",
                    placement));
  world_ = world_size;
  pp_ = pp;
  tp_ = tp;
  rdp_ = world_size / (pp * tp);
  placement_ = canon;
}

int Topology::rank_of(const RankCoords& c) const {
  SMP_CHECK(c.rdp >= 0 && c.rdp < rdp_ && c.pp >= 0 && c.pp < pp_ && c.tp >= 0 && c.tp < tp_,
            "smp topology: coordinates (rdp {}, pp {}, tp {}) are outside the grid "
            "(rdp < {}, pp < {}, tp < {})",
            c.rdp, c.pp, c.tp, rdp_, pp_, tp_);
  // Mixed-radix number whose digits are the coordinates in placement order, most
  // significant first: rank = (x*|Y| + y)*|Z| + z.
  int rank = 0;
  for (char letter : placement_) {
    switch (letter) {
      case 'D':
        rank = rank * rdp_ + c.rdp;
        break;
      case 'P':
        rank = rank * pp_ + c.pp;
        break;
      case 'T':
        rank = rank * tp_ + c.tp;
        break;
    }
  }
  return rank;
}

RankCoords Topology::coords(int rank) const {
  SMP_CHECK(rank >= 0 && rank < world_, "smp topology: rank {} is outside the world of {} ranks",
            rank, world_);
  RankCoords c;
  // Peel digits off the least significant end (the rightmost letter).
  for (auto it = placement_.rbegin(); it != placement_.rend(); ++it) {
    switch (*it) {
      case 'D':
        c.rdp = rank % rdp_;
        rank /= rdp_;
        break;
      case 'P':
        c.pp = rank % pp_;
        rank /= pp_;
        break;
      case 'T':
        c.tp = rank % tp_;
        rank /= tp_;
        break;
    }
  }
  return c;
}

std::vector<int> Topology::group(CommGroup g, int rank) const {
  const Fixed f = fixed_coords(g);
  const RankCoords me = coords(rank);
  std::vector<int> members;
  for (int r = 0; r < world_; ++r)
    if (same_group(f, me, coords(r))) members.push_back(r);
  return members;
}

std::vector<std::vector<int>> Topology::groups(CommGroup g) const {
  std::vector<std::vector<int>> all;
  std::vector<bool> seen(world_, false);
  // Scanning ranks upward meets each group first at its smallest rank.
  for (int r = 0; r < world_; ++r) {
    if (seen[r]) continue;
    all.push_back(group(g, r));
    for (int m : all.back()) seen[m] = true;
  }
  return all;
}

int Topology::rank_in_group(CommGroup g, int rank) const {
  const auto members = group(g, rank);
  return static_cast<int>(std::lower_bound(members.begin(), members.end(), rank) - members.begin());
}

int Topology::group_size(CommGroup g) const {
  switch (g) {
    case CommGroup::WORLD:
      return world_;
    case CommGroup::PP_GROUP:
      return pp_;
    case CommGroup::TP_GROUP:
      return tp_;
    case CommGroup::RDP_GROUP:
      return rdp_;
    case CommGroup::DP_GROUP:
      return dp_size();
    case CommGroup::MP_GROUP:
      return mp_size();
  }
  SMP_ERROR("unknown CommGroup {}", static_cast<int>(g));
}

}  // namespace smp
