// The replica model (capacity.h) and the replay (simulator.h) against cases worked by hand:
// steady load below capacity, overload with a fluid queue and 429s, cold starts, a floor.
#include "tideserve/plan/simulator.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tideserve/plan/recommend.h"
#include "tideserve/plan/report.h"

namespace tideserve::plan {
namespace {

// A replica that holds 100 req/s: p50 10 -> 20 ms and p99 30 -> 80 ms between 20 and 80 req/s,
// saturated at 100 (the last step's throughput), CPU 0.2 cores per 20 req/s.
CapacityProfile profile() {
  CapacityProfile p;
  p.slo_p99_ms = 100;
  auto step = [](double rate, double thr, double p50, double p99, double cpu) {
    ProfileStep s;
    s.offered_rate = rate;
    s.throughput = thr;
    s.p50_ms = p50;
    s.p90_ms = (p50 + p99) / 2;
    s.p99_ms = p99;
    s.p999_ms = p99 * 1.5;
    s.requests = static_cast<int64_t>(rate * 10);
    s.cpu_cores = cpu;
    s.memory_bytes = 500e6;
    return s;
  };
  p.steps = {step(20, 20, 10, 30, 0.2), step(80, 80, 20, 80, 0.8), step(150, 100, 900, 3000, 1.0)};
  return p;
}

ReplicaModel model(int64_t admission = 512) {
  auto m = ReplicaModel::create(profile(), ReplicaLimits{admission});
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  return std::move(m).value();
}

TEST(LatencyHistogramTest, ReproducesTheQuantilesItWasGiven) {
  LatencyHistogram h;
  h.add_distribution({10, 20, 50, 90}, 0, 1000);
  EXPECT_DOUBLE_EQ(h.count(), 1000);
  // The grid's bins are 5.4 % wide; interpolation within a bin keeps it closer.
  EXPECT_NEAR(h.quantile_ms(0.5), 10, 0.3);
  EXPECT_NEAR(h.quantile_ms(0.9), 20, 0.6);
  EXPECT_NEAR(h.quantile_ms(0.99), 50, 1.5);
  EXPECT_NEAR(h.quantile_ms(0.999), 90, 3);
  EXPECT_NEAR(h.fraction_below_ms(20), 0.9, 0.01);
  // A shift moves every request by the wait.
  LatencyHistogram s;
  s.add_distribution({10, 20, 50, 90}, 100, 10);
  EXPECT_NEAR(s.quantile_ms(0.5), 110, 3);
}

TEST(LatencyHistogramTest, AMixtureIsWeightedByRequests) {
  // 99 % of the requests at ~10 ms and 1 % at ~1000 ms: the p99 sits at the boundary, the p98
  // with the fast ones, the p99.5 with the slow ones.
  LatencyHistogram h, fast, slow;
  fast.add_distribution({10, 10.1, 10.2, 10.3}, 0, 990);
  slow.add_distribution({1000, 1001, 1002, 1003}, 0, 10);
  h.add(fast);
  h.add(slow);
  EXPECT_NEAR(h.quantile_ms(0.98), 10, 0.6);
  EXPECT_NEAR(h.quantile_ms(0.995), 1000, 60);
}

TEST(ReplicaModelTest, InterpolatesBetweenSteadyStepsAndSaturatesAtTheHighestThroughput) {
  const ReplicaModel m = model();
  EXPECT_DOUBLE_EQ(m.service_rate(), 100);
  EXPECT_DOUBLE_EQ(m.stable_rate(), 80);  // the 150 req/s step did not keep up
  // Below the first step: its latencies. Between steps: log-linear, so the geometric mean at
  // the midpoint (50 req/s): sqrt(10 * 20) = 14.14 ms, sqrt(30 * 80) = 48.99 ms.
  EXPECT_DOUBLE_EQ(m.quantiles_at(5)[0], 10);
  EXPECT_NEAR(m.quantiles_at(50)[0], std::sqrt(200.0), 1e-9);
  EXPECT_NEAR(m.quantiles_at(50)[2], std::sqrt(2400.0), 1e-9);
  // Between 80 and 100: the part above the lightest step grows as (1 - 0.8) / (1 - rho):
  // at 90 req/s twice: p50 = 10 + (20 - 10) * 2 = 30 ms.
  EXPECT_NEAR(m.quantiles_at(90)[0], 30, 1e-9);
  // CPU: linear through the origin and the steps; flat beyond the saturated step.
  EXPECT_NEAR(m.cpu_cores_at(10), 0.1, 1e-12);
  EXPECT_NEAR(m.cpu_cores_at(50), 0.5, 1e-12);
  EXPECT_NEAR(m.cpu_cores_at(500), 1.0, 1e-12);
}

TEST(ReplicaModelTest, AProfileThatNeverKeptUpIsRefused) {
  CapacityProfile p = profile();
  p.steps.erase(p.steps.begin(), p.steps.begin() + 2);
  EXPECT_FALSE(ReplicaModel::create(p).is_ok());
  EXPECT_FALSE(parse_capacity_profile("{\"steps\":[]}").is_ok());
  EXPECT_FALSE(parse_capacity_profile("not json").is_ok());
  auto parsed = parse_capacity_profile(
      R"({"slo_p99_ms":250,"steps":[{"offered_rate":10,"throughput":9.9,"p50_ms":5,)"
      R"("p90_ms":7,"p99_ms":9,"p999_ms":12,"requests":99,"errors":0,"cpu_cores":0.3,)"
      R"("memory_bytes":1000,"within_slo":true}],"capacity_rps":9.9})");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  EXPECT_EQ(parsed->steps.size(), 1u);
  EXPECT_DOUBLE_EQ(parsed->steps[0].cpu_cores, 0.3);
  EXPECT_DOUBLE_EQ(parsed->capacity_rps, 9.9);
}

TEST(ReplicaModelTest, OverloadQueuesThenRefusesPastTheAdmissionLimit) {
  // 150 req/s into a 100 req/s replica holding 200 requests: the queue grows 50 per second. In
  // service at capacity: 100 req/s x the service's own p50 (the lightest step's, 10 ms) = 1
  // request, so the queue may hold 199 before 429s start (in the 4th second).
  const ReplicaModel m = model(200);
  double queue = 0, rejected = 0;
  LatencyHistogram h;
  for (int s = 0; s < 3; ++s) rejected += m.step(150, 1, queue, h).rejected;
  EXPECT_DOUBLE_EQ(rejected, 0);
  EXPECT_DOUBLE_EQ(queue, 150);
  const ReplicaModel::Step fourth = m.step(150, 1, queue, h);
  EXPECT_NEAR(fourth.rejected, 200 - 199, 1e-9);
  EXPECT_NEAR(queue, 199, 1e-9);
  // The wait is the queue (mean over the second) over the service rate: (150 + 199) / 2 / 100.
  EXPECT_NEAR(fourth.wait_ms, 1745, 1e-6);
  // Then it serves 100 and refuses 50 every second, and the queue drains once the load drops.
  EXPECT_NEAR(m.step(150, 1, queue, h).rejected, 50, 1e-9);
  for (int s = 0; s < 5; ++s) m.step(50, 1, queue, h);
  EXPECT_DOUBLE_EQ(queue, 0);
  // The accepted requests' latencies: the service's own distribution shifted by the wait, so
  // the slowest are about 1.99 s (199 queued at 100/s) plus the service's tail (p99.9 45 ms).
  EXPECT_LT(h.quantile_ms(0.999), 1990 + 45 + 50);
  EXPECT_GT(h.quantile_ms(0.999), 1990);
}

SimOptions options() {
  SimOptions o;
  o.slo_p99_ms = 100;
  o.pods.scheduling_s = 10;
  o.pods.startup_s = 20;
  return o;
}

TEST(SimulatorTest, FixedReplicasBelowCapacityGiveTheProfilesLatency) {
  Scaling s;
  s.fixed_replicas = 2;
  auto r = simulate(model(), {{0, 100}}, 300, s, options());
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  // 50 req/s per replica: p50 14.1 ms, p99 49 ms (as above), nothing refused.
  EXPECT_NEAR(r->p50_ms, std::sqrt(200.0), 0.5);
  EXPECT_NEAR(r->p99_ms, std::sqrt(2400.0), 2);
  EXPECT_DOUBLE_EQ(r->rejected, 0);
  EXPECT_NEAR(r->requests, 30000, 1e-6);
  EXPECT_NEAR(r->replica_hours, 2 * 300 / 3600.0, 1e-9);
  EXPECT_EQ(r->windows.size(), 5u);
  EXPECT_DOUBLE_EQ(r->violation_minutes, 0);
}

TEST(SimulatorTest, OneReplicaOverloadedViolatesAndRefuses) {
  Scaling s;
  s.fixed_replicas = 1;
  auto r = simulate(model(200), {{0, 150}}, 120, s, options());
  ASSERT_TRUE(r.is_ok());
  // From the 4th second on it refuses 50/s: 1 + 50 x 116 = 5801 of 18000.
  EXPECT_NEAR(r->rejected, 1 + 50 * 116, 1e-6);
  EXPECT_DOUBLE_EQ(r->violation_minutes, 2);
  EXPECT_GT(r->p99_ms, 1000);
}

// An HPA (legacy path: no behavior) from 1 to `max` replicas on a Pods metric: requests per
// second per pod, target 40.
Scaling rps_hpa(int32_t max) {
  HpaSpec hpa;
  hpa.name = "rps";
  hpa.min_replicas = 1;
  hpa.max_replicas = max;
  MetricSpec m;
  m.type = MetricSourceType::kPods;
  m.name = "requests_per_second";
  m.target_type = TargetType::kAverageValue;
  m.target_milli = 40000;
  hpa.metrics = {m};
  Scaling s;
  s.hpa = hpa;
  s.signals = {{"requests_per_second", Signal{SignalKind::kRps}}};
  return s;
}

TEST(SimulatorTest, AnHpaOnRequestRateScalesUpAndPaysForStartingPods) {
  // A Pods metric on requests per second per pod, target 40: at 120 req/s over 1 pod the HPA
  // wants ceil(120 / 40) = 3 (the legacy cap max(2 x 1, 4) = 4 allows it). The pods it adds are
  // paid from the sync that made them, and serve 30 s (10 scheduling + 20 start-up) later.
  Scaling s = rps_hpa(5);
  SimOptions o = options();
  o.pipeline.adapter_lag_s = 0;
  o.pipeline.rate_window_s = 30;
  auto r = simulate(model(), {{0, 120}}, 600, s, o);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  int32_t first_up = -1;
  for (const SyncRecord& sync : r->syncs) {
    if (sync.desired > sync.current) {
      first_up = static_cast<int32_t>(sync.t_s);
      EXPECT_EQ(sync.current, 1);
      EXPECT_EQ(sync.desired, 3);
      break;
    }
  }
  // Scrapes at 0 and 15 s give the first rate; with no adapter lag the sync at 15 s reads it.
  EXPECT_EQ(first_up, 15);
  // One pod alone at 120 req/s saturates until the new pods serve at 15 + 30 = 45 s.
  EXPECT_GT(r->rejected, 0);
  EXPECT_EQ(r->windows.back().pods, 3);
  EXPECT_EQ(r->windows.back().ready, 3);
  // Pod-seconds: 600 for the first, (600 - 15) for each of two more.
  EXPECT_NEAR(r->replica_hours, (600 + 2 * 585) / 3600.0, 1e-9);
  EXPECT_GT(r->windows[0].p99_ms, 100);  // the first minute queues
  EXPECT_LT(r->windows.back().p99_ms, 100);
}

TEST(SimulatorTest, AFloorHoldsReplicasInsideItsWindowOnly) {
  Scaling s = rps_hpa(10);
  s.floor = Floor{4, 1, 3, "UTC"};  // 00:01 to 00:03 UTC
  SimOptions o = options();
  o.start_epoch_s = 1764547200;  // 2025-12-01T00:00:00Z
  o.window_s = 30;
  auto r = simulate(model(), {{0, 10}}, 600, s, o);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  // Windows of 30 s: the floor's first sync at 60 s finds current 1 < minReplicas 4 and sets 4
  // without computing metrics (reconcileAutoscaler); the 3 new pods start at 70 s and are ready
  // at 90 s. At the sync at 75 s their request rate has one scrape (rate() needs two), so they
  // are missing pods; on a scale-down calcPlainMetricReplicas counts a missing pod at the target:
  // (10 + 3 x 40) / 4 = 32.5 per pod, ceil(4 x 32.5 / 40) = 4 recommended. At 180 s the floor
  // is lifted (minReplicas 1) and the metric asks ceil(4 x 2.5 / 40) = 1, but the legacy
  // downscale stabilization takes the max over the last 300 s of recommendations: the 4 of 75 s
  // holds until the first sync after 375 s, at 390 s.
  EXPECT_EQ(r->windows[1].pods, 1);
  EXPECT_EQ(r->windows[2].pods, 4);
  EXPECT_EQ(r->windows[3].ready, 4);
  EXPECT_EQ(r->windows[12].pods, 4);  // 360 - 390 s
  EXPECT_EQ(r->windows[13].pods, 1);  // 390 - 420 s
  EXPECT_EQ(r->windows.back().pods, 1);
}

TEST(RecommendTest, FindsTheCheapestConfigurationThatHoldsTheSlo) {
  // 100 req/s for 20 minutes, after a 5 minute warm-up at the same rate. The manifest holds at
  // least 5 pods (20 req/s each). The search (minReplicas first, then the target, then a floor):
  //  - minReplicas 1..4 all leave the metric's ceil(100 / 40) = 3 pods: the first (1) is kept;
  //  - targets x0.5 .. x3 of 40 req/s: x1.2 (48) still needs 3, x1.5 (60) needs ceil(100 / 60)
  //    = 2 pods at 50 req/s each (p99 49 ms < 100): the first with 2 pods wins; x3 (120) would
  //    leave one pod at its capacity (100 req/s: queueing, over the SLO);
  //  - no floor beats none. The second pass changes nothing.
  Scaling s = rps_hpa(10);
  s.hpa->min_replicas = 5;
  SimOptions o = options();
  o.warmup_s = 300;
  auto rec = recommend(model(), {{0, 100}}, 1200, s, o, Goal{});
  ASSERT_TRUE(rec.is_ok()) << rec.status().message();
  EXPECT_TRUE(rec->baseline.feasible);
  EXPECT_NEAR(rec->baseline.result.replica_hours, 5 * 1200 / 3600.0, 1e-9);
  ASSERT_TRUE(rec->best.feasible);
  EXPECT_NEAR(rec->best.result.replica_hours, 2 * 1200 / 3600.0, 1e-9);
  EXPECT_EQ(rec->best.scaling.hpa->min_replicas, 1);
  EXPECT_EQ(rec->best.scaling.hpa->metrics[0].target_milli, 60000);
  EXPECT_FALSE(rec->best.scaling.floor && rec->best.scaling.floor->replicas > 0);
  const std::vector<std::string> changes = {"minReplicas 1", "requests_per_second target 60000m"};
  EXPECT_EQ(rec->best.changes, changes);
  // 10 minReplicas + 8 targets + 11 floor sizes + 15 starts + 15 ends, twice, and the baseline.
  EXPECT_EQ(rec->evaluated, 2 * (10 + 8 + 11 + 15 + 15) + 1);
}

TEST(SimulatorTest, ReportsAreWellFormed) {
  Scaling s;
  s.fixed_replicas = 1;
  auto r = simulate(model(), {{0, 10}, {60, 50}}, 120, s, options());
  ASSERT_TRUE(r.is_ok());
  const std::string csv = windows_csv(*r);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);  // header + 2 windows
  EXPECT_EQ(csv.rfind("t_s,offered_rps", 0), 0u);
  const std::string json = result_json(*r, 100);
  EXPECT_NE(json.find("\"windows\":[{\"t_s\":0,"), std::string::npos);
  EXPECT_EQ(json_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
  const std::string svg = result_svg(*r, {{0, 10}, {60, 50}}, 100, 0, "t");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
}

TEST(SimulatorTest, NothingToScaleIsAnError) {
  Scaling s;
  EXPECT_FALSE(simulate(model(), {{0, 10}}, 60, s, options()).is_ok());
}

}  // namespace
}  // namespace tideserve::plan
