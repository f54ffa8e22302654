// CPU memory statistics: storage alive and its peak.
#include <gtest/gtest.h>
#include <smp/smp.h>

TEST(Memory, CountsCpuStorageAndItsPeak) {
  const int64_t before = smp::cpu::memory_allocated();
  smp::cpu::reset_peak_memory_stats();
  {
    smp::Tensor a = smp::empty({1000, 1000});  // 4 MB
    EXPECT_GE(smp::cpu::memory_allocated() - before, 4000000);
    smp::Tensor v = a.view({1000000});  // a view adds nothing
    EXPECT_LT(smp::cpu::memory_allocated() - before, 4100000);
    smp::Tensor m = smp::empty({1000, 1000}, smp::TensorOptions(smp::DeviceType::Meta));
    EXPECT_LT(smp::cpu::memory_allocated() - before, 4100000);  // meta holds no storage
  }
  EXPECT_EQ(smp::cpu::memory_allocated(), before);
  EXPECT_GE(smp::cpu::max_memory_allocated() - before, 4000000);
  smp::cpu::reset_peak_memory_stats();
  EXPECT_EQ(smp::cpu::max_memory_allocated(), smp::cpu::memory_allocated());
}
