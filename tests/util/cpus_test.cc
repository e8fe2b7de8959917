// usable_cpus() and the cgroup quota parsers it relies on.
#include "tideserve/util/cpus.h"

#include <gtest/gtest.h>
#include <sched.h>

namespace tideserve {
namespace {

TEST(CpusTest, ParsesCgroupV2CpuMax) {
  EXPECT_EQ(parse_cpu_max("200000 100000\n"), 2.0);
  EXPECT_EQ(parse_cpu_max("150000 100000"), 1.5);
  EXPECT_EQ(parse_cpu_max("max 100000\n"), std::nullopt);
  EXPECT_EQ(parse_cpu_max(""), std::nullopt);
  EXPECT_EQ(parse_cpu_max("0 100000"), std::nullopt);
  EXPECT_EQ(parse_cpu_max("12x 100000"), std::nullopt);
  EXPECT_EQ(parse_cpu_max("100000"), std::nullopt);
}

TEST(CpusTest, ParsesCgroupV1Quota) {
  EXPECT_EQ(parse_cfs_quota("400000\n", "100000\n"), 4.0);
  EXPECT_EQ(parse_cfs_quota("-1\n", "100000\n"), std::nullopt);
  EXPECT_EQ(parse_cfs_quota("", ""), std::nullopt);
}

TEST(CpusTest, ParsesCgroupMemoryLimits) {
  EXPECT_EQ(parse_memory_limit("536870912\n"), 536870912);
  EXPECT_EQ(parse_memory_limit("max\n"), std::nullopt);
  EXPECT_EQ(parse_memory_limit(""), std::nullopt);
  EXPECT_EQ(parse_memory_limit("12x"), std::nullopt);
  EXPECT_EQ(parse_memory_limit("9223372036854771712"), std::nullopt);  // v1's "no limit"
  // Whatever this machine says, a limit found is positive.
  if (auto limit = cgroup_memory_limit()) {
    EXPECT_GT(*limit, 0);
  }
}

TEST(CpusTest, NeverMoreThanTheAffinityMask) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  const int cpus = usable_cpus();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(cpus, CPU_COUNT(&set));
  // Pinned to one CPU, this thread may use one.
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) {
      CPU_SET(c, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(usable_cpus(), 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof set, &set), 0);
}

}  // namespace
}  // namespace tideserve
