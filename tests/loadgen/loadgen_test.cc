// The load generator's arrival schedules, rate-schedule CSV, URL parsing and statistics.
#include "tideserve/loadgen/load_generator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

namespace tideserve::loadgen {
namespace {

TEST(ArrivalTest, ConstantArrivalsAreEvenlySpacedAtTheRate) {
  const std::vector<double> t = arrival_times(Arrival::kConstant, 50, {}, 2.0, 1);
  ASSERT_EQ(t.size(), 100u);
  EXPECT_NEAR(t.front(), 0.01, 1e-9);  // half a gap in
  for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], 0.02, 1e-9);
  EXPECT_LT(t.back(), 2.0);
}

TEST(ArrivalTest, PoissonArrivalsHaveTheRateAndExponentialGaps) {
  const double rate = 200, duration = 100;
  const std::vector<double> t = arrival_times(Arrival::kPoisson, rate, {}, duration, 7);
  // 20,000 expected: within 4 standard deviations (sqrt(20000) ~ 141).
  EXPECT_NEAR(static_cast<double>(t.size()), rate * duration, 4 * std::sqrt(rate * duration));
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= gaps.size();
  EXPECT_NEAR(mean, 1 / rate, 0.03 / rate);
  EXPECT_NEAR(std::sqrt(var) / mean, 1.0, 0.05);                          // exponential: sd == mean
  EXPECT_EQ(arrival_times(Arrival::kPoisson, rate, {}, duration, 7), t);  // seeded
  EXPECT_NE(arrival_times(Arrival::kPoisson, rate, {}, duration, 8), t);
}

TEST(ArrivalTest, AScheduleHoldsEachRateUntilTheNextPoint) {
  const std::vector<RatePoint> schedule = {{0, 10}, {1, 40}, {2, 0}, {3, 20}};
  const std::vector<double> t = arrival_times(Arrival::kConstant, 0, schedule, 4.0, 1);
  auto count = [&](double a, double b) {
    return std::count_if(t.begin(), t.end(), [&](double x) { return x >= a && x < b; });
  };
  EXPECT_EQ(count(0, 1), 10);
  EXPECT_EQ(count(1, 2), 40);
  EXPECT_EQ(count(2, 3), 0);
  EXPECT_EQ(count(3, 4), 20);
}

TEST(RateScheduleTest, ParsesCsvWithAnOptionalHeaderAndRefusesNonsense) {
  auto s = parse_rate_schedule("time_s,rate\n0,5\n30,12.5\r\n# a comment\n90,0\n");
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  ASSERT_EQ(s->size(), 3u);
  EXPECT_EQ((*s)[1].at_s, 30);
  EXPECT_EQ((*s)[1].rate, 12.5);
  for (const char* bad : {"", "0,5\n0,6\n", "0,5\n10,-1\n", "0,5\nten,3\n", "0;5\n1;6\n"}) {
    EXPECT_FALSE(parse_rate_schedule(bad).is_ok()) << bad;
  }
}

TEST(UrlTest, HostPortAndPath) {
  auto t = parse_url("http://10.0.0.7:9000/health");
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ(t->host, "10.0.0.7");
  EXPECT_EQ(t->port, "9000");
  EXPECT_EQ(t->path, "/health");
  EXPECT_EQ(parse_url("http://example").value().port, "80");
  EXPECT_EQ(parse_url("http://h:1").value().path, "/");
  EXPECT_FALSE(parse_url("https://h:1").is_ok());
  EXPECT_FALSE(parse_url("http://:80").is_ok());
}

TEST(SummaryTest, QuantilesByNearestRankStatusesAndLag) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_EQ(quantile(v, 0.5), 50);
  EXPECT_EQ(quantile(v, 0.99), 99);
  EXPECT_EQ(quantile(v, 1.0), 100);
  std::vector<double> none;
  EXPECT_EQ(quantile(none, 0.5), 0);

  std::vector<Sample> samples;
  for (int i = 0; i < 10; ++i) samples.push_back({1.0 * i, 1.0 * i + 0.002, 10.0 + i, 200});
  samples.push_back({10, 10, 500, 429});
  samples.push_back({11, 11, 60000, 0});
  const Summary s = summarize(samples, 4.0);
  EXPECT_EQ(s.requests, 12);
  EXPECT_EQ(s.ok, 10);
  EXPECT_EQ(s.errors, 2);
  EXPECT_EQ(s.by_status, (std::vector<std::pair<int, int64_t>>{{0, 1}, {200, 10}, {429, 1}}));
  EXPECT_DOUBLE_EQ(s.throughput, 11 / 4.0);  // answered ones: not the connection failure
  EXPECT_EQ(s.max_ms, 60000);
  EXPECT_NEAR(s.lag_max_ms, 2.0, 1e-9);
}

}  // namespace
}  // namespace tideserve::loadgen
