// smp::init's view of the job under mpirun: ranks and groups agree with the topology, and host
// objects (bytes, JSON) travel as SMP's broadcast / allgather / send / recv_from do.
#include <gtest/gtest.h>
#include <smp/smp.h>

#include <algorithm>
#include <string>

TEST(Runtime, RanksAndGroupsFollowTheTopology) {
  const auto& t = smp::topology();
  const int r = smp::rank();
  EXPECT_EQ(smp::size(), t.world_size());
  EXPECT_EQ(smp::pp_rank(), t.pp_rank(r));
  EXPECT_EQ(smp::dp_rank(), t.dp_rank(r));
  EXPECT_EQ(smp::pp_size() * smp::tp_size() * smp::rdp_size(), smp::size());
  EXPECT_EQ(smp::dp_size(), smp::tp_size() * smp::rdp_size());
  EXPECT_EQ(smp::mp_size(), smp::pp_size() * smp::tp_size());
  auto dp = smp::get_dp_group();
  EXPECT_EQ(static_cast<int>(dp.size()), smp::dp_size());
  EXPECT_EQ(dp[static_cast<size_t>(smp::dp_rank())], r);
  EXPECT_EQ(smp::comm(smp::CommGroup::DP_GROUP).world_ranks(), dp);
  EXPECT_EQ(smp::get_world_group().size(), static_cast<size_t>(smp::size()));
  EXPECT_GE(smp::local_rank(), 0);
  EXPECT_LT(smp::local_rank(), smp::local_size());
  smp::barrier();
}

TEST(Runtime, HostObjectsTravelAsSmpDoes) {
  const int n = smp::size(), r = smp::rank();
  const int root = n - 1;
  nlohmann::json mine = {{"rank", r}, {"name", std::string(static_cast<size_t>(r), 'x')}};
  nlohmann::json got = smp::broadcast(mine, root);
  EXPECT_EQ(got["rank"], root);
  EXPECT_EQ(got["name"].get<std::string>().size(), static_cast<size_t>(root));

  // Uneven sizes, including an empty string from rank 0.
  auto all = smp::allgather(std::string(static_cast<size_t>(3 * r), static_cast<char>('a' + r)));
  ASSERT_EQ(static_cast<int>(all.size()), n);
  for (int i = 0; i < n; ++i)
    EXPECT_EQ(all[static_cast<size_t>(i)],
              std::string(static_cast<size_t>(3 * i), static_cast<char>('a' + i)));

  if (n > 1) {  // a ring: send to the next, receive from the previous
    const int next = (r + 1) % n, prev = (r + n - 1) % n;
    if (r % 2 == 0) {
      smp::send(nlohmann::json{{"from", r}}, next);
      EXPECT_EQ(smp::recv_json_from(prev)["from"], prev);
    } else {
      EXPECT_EQ(smp::recv_json_from(prev)["from"], prev);
      smp::send(nlohmann::json{{"from", r}}, next);
    }
    EXPECT_THROW(smp::send(std::string("x"), r), smp::Error);  // not to itself
  }
}
