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
  EXPECT_EQ(outside->partition(), -1);
  EXPECT_EQ(a->partition(), 0);
  EXPECT_EQ(b->partition(), 1);
  EXPECT_EQ(c->partition(), 0);
  smp::set_partition(*outside, 3);
  EXPECT_EQ(outside->partition(), 3);
  EXPECT_EQ(smp::nn::current_partition_scope(), -1);
}

TEST(Partition, NegativeIndexIsAnError) { EXPECT_THROW(smp::partition(-1), smp::Error); }
