// Manual partitions: smp::partition scopes record a partition on the modules built inside.
#include <gtest/gtest.h>
#include <smp/smp.h>

TEST(Partition, ScopesAssignModulesInnermostWins) {
  auto outside = std::make_shared<smp::nn::Linear>(2, 2);
  std::shared_ptr<smp::nn::Linear> a, b, c;
  {
    smp::partition p0(0);
    a = std::make_shared<smp::nn::Linear>(2, 2);
    {
      smp::partition p1(1);
      b = std::make_shared<smp::nn::Linear>(2, 2);
    }
    c = std::make_shared<smp::nn::Linear>(2, 2);
  }
  EXPECT_EQ(smp::get_partition(*outside), -1);
  EXPECT_EQ(smp::get_partition(*a), 0);
  EXPECT_EQ(smp::get_partition(*b), 1);
  EXPECT_EQ(smp::get_partition(*c), 0);
  smp::set_partition(*outside, 3);
  EXPECT_EQ(smp::get_partition(*outside), 3);
  // The scopes are closed: a module built now has no partition.
  EXPECT_EQ(smp::get_partition(smp::nn::Linear(2, 2)), -1);
}

TEST(Partition, NegativeIndexIsAnError) {
  EXPECT_THROW(smp::partition(-1), smp::Error);
  smp::nn::Linear m(2, 2);
  EXPECT_THROW(smp::set_partition(m, -2), smp::Error);
}
