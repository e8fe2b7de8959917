// The HPA replay against worked cases derived by hand from Kubernetes v1.31's
// pkg/controller/podautoscaler (horizontal.go, replica_calculator.go, metrics/utilization.go) and
// pkg/apis/autoscaling/v2/defaults.go. Each test shows the arithmetic the source does, naming
// the functions. All values are milli-units; the default tolerance is 0.1.
#include "tideserve/plan/hpa.h"

#include <gtest/gtest.h>

#include <optional>
#include <utility>
#include <vector>

namespace tideserve::plan {
namespace {

// Far past every pod's start (0) and Ready transition (60): the cpu initialization period
// (300 s) and the initial readiness delay (30 s) rules of groupPods do not apply.
constexpr double kNow = 10000;

PodView pod(int64_t request, std::optional<int64_t> value) {
  PodView p;
  p.cpu_request_milli = request;
  p.memory_request_milli = request;
  p.start_s = 0;
  p.ready_change_s = 60;
  p.values = {value};
  return p;
}

std::vector<PodView> pods(int n, int64_t request, std::optional<int64_t> value) {
  return std::vector<PodView>(n, pod(request, value));
}

MetricSpec resource_utilization(const std::string& resource, int32_t target) {
  MetricSpec m;
  m.type = MetricSourceType::kResource;
  m.name = resource;
  m.target_type = TargetType::kUtilization;
  m.target_utilization = target;
  return m;
}

MetricSpec pods_average(const std::string& name, int64_t target_milli) {
  MetricSpec m;
  m.type = MetricSourceType::kPods;
  m.name = name;
  m.target_type = TargetType::kAverageValue;
  m.target_milli = target_milli;
  return m;
}

MetricSpec external(const std::string& name, TargetType type, int64_t target_milli) {
  MetricSpec m;
  m.type = MetricSourceType::kExternal;
  m.name = name;
  m.target_type = type;
  m.target_milli = target_milli;
  return m;
}

HpaSpec hpa(int32_t min, int32_t max, std::vector<MetricSpec> metrics,
            std::optional<Behavior> behavior = std::nullopt) {
  HpaSpec s;
  s.name = "web";
  s.min_replicas = min;
  s.max_replicas = max;
  s.metrics = std::move(metrics);
  s.behavior = std::move(behavior);
  return s;
}

SyncInput input(double now, int32_t current, std::vector<PodView> p,
                std::vector<std::optional<int64_t>> external_milli = {}) {
  SyncInput in;
  in.now_s = now;
  in.current_replicas = current;
  in.pods = std::move(p);
  in.external_milli = std::move(external_milli);
  return in;
}

// A behavior from explicit rules (rules() defaults: Max, no stabilization window).
Behavior behavior_with(ScalingRules up, ScalingRules down) {
  Behavior b;
  b.scale_up = std::move(up);
  b.scale_down = std::move(down);
  return b;
}
ScalingRules rules(std::vector<ScalingPolicy> policies, SelectPolicy select = SelectPolicy::kMax,
                   int32_t window = 0) {
  ScalingRules r;
  r.stabilization_window_seconds = window;
  r.select_policy = select;
  r.policies = std::move(policies);
  return r;
}

// The cpu Utilization proposal for `current` pods at a given summed usage.
int32_t cpu_proposal(int32_t current, int32_t target, std::vector<PodView> p) {
  HpaController c(hpa(1, 1000, {resource_utilization("cpu", target)}));
  Decision d = c.sync(input(kNow, current, std::move(p)));
  EXPECT_EQ(d.metrics.size(), 1u);
  return d.metrics.empty() || !d.metrics[0].replicas ? -1 : *d.metrics[0].replicas;
}

TEST(HpaDefaults, DefaultBehaviorFollowsDefaultsGo) {
  // defaults.go: scale-up: window 0, Max, {Pods 4 / 15 s, Percent 100 / 15 s}; scale-down:
  // window nil (the controller's 300 s flag), Max, {Percent 100 / 15 s}.
  const Behavior b = default_behavior();
  EXPECT_EQ(b.scale_up.stabilization_window_seconds, 0);
  EXPECT_EQ(b.scale_up.select_policy, SelectPolicy::kMax);
  ASSERT_EQ(b.scale_up.policies.size(), 2u);
  EXPECT_EQ(b.scale_up.policies[0].type, PolicyType::kPods);
  EXPECT_EQ(b.scale_up.policies[0].value, 4);
  EXPECT_EQ(b.scale_up.policies[0].period_seconds, 15);
  EXPECT_EQ(b.scale_up.policies[1].type, PolicyType::kPercent);
  EXPECT_EQ(b.scale_up.policies[1].value, 100);
  EXPECT_EQ(b.scale_up.policies[1].period_seconds, 15);
  EXPECT_EQ(b.scale_down.stabilization_window_seconds, 300);
  EXPECT_EQ(b.scale_down.select_policy, SelectPolicy::kMax);
  ASSERT_EQ(b.scale_down.policies.size(), 1u);
  EXPECT_EQ(b.scale_down.policies[0].type, PolicyType::kPercent);
  EXPECT_EQ(b.scale_down.policies[0].value, 100);
  EXPECT_EQ(b.scale_down.policies[0].period_seconds, 15);
}

TEST(HpaDefaults, NoMetricsMeansCpuAtEightyPercent) {
  // SetDefaults_HorizontalPodAutoscaler: no metrics -> Resource cpu, Utilization 80.
  HpaController c(hpa(1, 10, {}));
  ASSERT_EQ(c.spec().metrics.size(), 1u);
  EXPECT_EQ(c.spec().metrics[0].name, "cpu");
  EXPECT_EQ(c.spec().metrics[0].target_utilization, 80);
}

TEST(HpaResource, CpuUtilizationIsAnIntegerPercent) {
  // GetResourceUtilizationRatio: requests 3 x 500 = 1500, usage 400 + 450 + 500 = 1350;
  // utilization = int32(1350 * 100 / 1500) = 90; ratio = 90 / 60 = 1.5.
  // GetResourceReplicas: no missing/unready pods, |1 - 1.5| > 0.1 -> ceil(1.5 * 3) = ceil(4.5) = 5.
  // normalizeDesiredReplicas: max(2 * 3, 4) = 6 >= 5, within [1, 10].
  std::vector<PodView> p = {pod(500, 400), pod(500, 450), pod(500, 500)};
  HpaController c(hpa(1, 10, {resource_utilization("cpu", 60)}));
  Decision d = c.sync(input(kNow, 3, p));
  ASSERT_EQ(d.metrics.size(), 1u);
  EXPECT_EQ(d.metrics[0].current, 90);
  EXPECT_DOUBLE_EQ(d.metrics[0].usage_ratio, 1.5);
  EXPECT_EQ(d.metric_desired, 5);
  EXPECT_EQ(d.desired, 5);
  EXPECT_EQ(d.metric, "cpu resource utilization (percentage of request)");
  EXPECT_EQ(d.reason, "cpu resource utilization (percentage of request) above target");
  EXPECT_EQ(d.scaling_active.reason, "ValidMetricFound");
  EXPECT_EQ(d.able_to_scale.reason, "SucceededRescale");
}

TEST(HpaResource, ToleranceEdgeInFloat64) {
  // The tolerance test is math.Abs(1.0 - usageRatio) <= 0.1 in float64.
  // 45 % of a 50 % target: ratio 0.9, 1 - 0.9 = 0.09999999999999998 <= 0.1 -> current (4).
  EXPECT_EQ(cpu_proposal(4, 50, pods(4, 1000, 450)), 4);
  // 55 % of 50 %: ratio 1.1, |1 - 1.1| = 0.10000000000000009 > 0.1: "exactly 10 % over" scales,
  // ceil(1.1 * 4) = ceil(4.4000000000000004) = 5.
  EXPECT_EQ(cpu_proposal(4, 50, pods(4, 1000, 550)), 5);
  // 54 %: ratio 1.08 -> within -> 4. 56 %: ratio 1.12 -> ceil(4.48) = 5.
  EXPECT_EQ(cpu_proposal(4, 50, pods(4, 1000, 540)), 4);
  EXPECT_EQ(cpu_proposal(4, 50, pods(4, 1000, 560)), 5);
  // 44 %: ratio 0.88 -> ceil(0.88 * 4) = ceil(3.52) = 4 (a scale-down too small to show).
  EXPECT_EQ(cpu_proposal(4, 50, pods(4, 1000, 440)), 4);
}

TEST(HpaResource, IntegerUtilizationTruncationDecides) {
  // 10 pods x 1000 request, usage 449 each: int32(4490 * 100 / 10000) = int32(44.9) = 44;
  // ratio 44 / 50 = 0.88, |1 - 0.88| = 0.12 > 0.1 -> ceil(0.88 * 10) = ceil(8.8) = 9.
  // (The exact 44.9 % would give 0.898, within tolerance, and keep 10.)
  HpaController c(hpa(1, 20, {resource_utilization("cpu", 50)}));
  Decision d = c.sync(input(kNow, 10, pods(10, 1000, 449)));
  EXPECT_EQ(d.metrics[0].current, 44);
  EXPECT_DOUBLE_EQ(d.metrics[0].usage_ratio, 0.88);
  EXPECT_EQ(d.metric_desired, 9);
  // recordInitialRecommendation stored {10, now} before this sync, and stabilizeRecommendation
  // counts it (not Before(now - 300)): max(10, 9) = 10, ScaleDownStabilized; no rescale, so
  // AbleToScale keeps that reason.
  EXPECT_EQ(d.desired, 10);
  EXPECT_EQ(d.able_to_scale.reason, "ScaleDownStabilized");
  EXPECT_EQ(d.reason, "All metrics below target");
}

TEST(HpaResource, MissingPodsOnScaleUpCountZero) {
  // 5 pods x 1000 request; 3 report 900, 2 report nothing (groupPods: missing).
  // First pass over the 3: int32(2700 * 100 / 3000) = 90 -> ratio 90 / 50 = 1.8 (> 1: scale-up).
  // Missing pods get 0: int32(2700 * 100 / 5000) = 54 -> new ratio 1.08, within tolerance ->
  // current (5), where the ready pods alone would have said ceil(1.8 * 3) = 6.
  std::vector<PodView> p = pods(3, 1000, 900);
  p.push_back(pod(1000, std::nullopt));
  p.push_back(pod(1000, std::nullopt));
  EXPECT_EQ(cpu_proposal(5, 50, p), 5);
  // With 4 reporting 900: 90 % -> 1.8; with the missing one at 0: int32(3600 * 100 / 5000) = 72
  // -> 1.44 -> ceil(1.44 * 5) = ceil(7.2) = 8.
  p[3] = pod(1000, 900);
  EXPECT_EQ(cpu_proposal(5, 50, p), 8);
}

TEST(HpaResource, MissingPodsOnScaleDownCountTheirRequest) {
  // 4 pods x 1000; 2 report 100, 2 missing. First: int32(200 * 100 / 2000) = 10 -> 0.2 (< 1).
  // Missing pods get requests * max(100, 50) / 100 = 1000 each: int32(2200 * 100 / 4000) = 55 ->
  // 1.1 > 1: the direction flipped -> current (4), not ceil(0.2 * 2) = 1.
  std::vector<PodView> p = {pod(1000, 100), pod(1000, 100), pod(1000, std::nullopt),
                            pod(1000, std::nullopt)};
  EXPECT_EQ(cpu_proposal(4, 50, p), 4);
  // Target 150 %: 2 report 300: int32(600 * 100 / 2000) = 30 -> 0.2. Missing pods get
  // 1000 * max(100, 150) / 100 = 1500: int32(3600 * 100 / 4000) = 90 -> 0.6 ->
  // ceil(0.6 * 4) = ceil(2.4) = 3. (A flat 100 % would give 65 % -> ceil(1.733) = 2.)
  p[0] = pod(1000, 300);
  p[1] = pod(1000, 300);
  EXPECT_EQ(cpu_proposal(4, 150, p), 3);
}

TEST(HpaResource, UnreadyPodsOnScaleUpCountZero) {
  // 5 pods x 1000: 3 running ready at 600, 2 pending (groupPods: pending -> unready).
  // First over the 3: int32(1800 * 100 / 3000) = 60 -> 60 / 50 = 1.2 (> 1, so the unready pods
  // are rebalanced at 0): int32(1800 * 100 / 5000) = 36 -> 0.72 < 1: direction flipped -> 5.
  // (The ready pods alone would have said ceil(1.2 * 3) = 4.)
  std::vector<PodView> p = pods(3, 1000, 600);
  PodView pending = pod(1000, std::nullopt);
  pending.pending = true;
  p.push_back(pending);
  p.push_back(pending);
  EXPECT_EQ(cpu_proposal(5, 50, p), 5);
  // 3 ready at 1000: 100 % -> 2.0; rebalanced: int32(3000 * 100 / 5000) = 60 -> 1.2 ->
  // ceil(1.2 * 5) = 6.
  p[0] = p[1] = p[2] = pod(1000, 1000);
  EXPECT_EQ(cpu_proposal(5, 50, p), 6);
  // On a scale-down unready pods are only left out (missing ones would count their request):
  // 3 ready at 100: int32(300 * 100 / 3000) = 10 -> 0.2 -> no rebalance, no missing ->
  // ceil(0.2 * 3) = 1. (As missing pods: int32(2300 * 100 / 5000) = 46 -> 0.92, within -> 5.)
  p[0] = p[1] = p[2] = pod(1000, 100);
  EXPECT_EQ(cpu_proposal(5, 50, p), 1);
}

TEST(HpaResource, CpuReadinessRuleOnlyForCpu) {
  // Pod B started 100 s ago (inside the 300 s cpu initialization period) and is not ready yet; it
  // reports 1000 like pod A. groupPods(cpu): start + 300 > now and Ready False -> unready.
  // cpu: metrics {A}: int32(1000 * 100 / 1000) = 100 -> 2.0; rebalance B at 0:
  // int32(1000 * 100 / 2000) = 50 -> 1.0, within tolerance -> current 2.
  // memory: no readiness rule, B counts: int32(2000 * 100 / 2000) = 100 -> 2.0 ->
  // ceil(2.0 * 2) = 4.
  PodView a = pod(1000, 1000);
  PodView b = pod(1000, 1000);
  b.start_s = kNow - 100;
  b.ready = false;
  b.ready_change_s = kNow - 100;
  EXPECT_EQ(cpu_proposal(2, 50, {a, b}), 2);
  HpaController mem(hpa(1, 10, {resource_utilization("memory", 50)}));
  EXPECT_EQ(*mem.sync(input(kNow, 2, {a, b})).metrics[0].replicas, 4);
}

TEST(HpaResource, CpuReadinessWindowAndInitialDelay) {
  // Inside the cpu initialization period, a ready pod whose sample does not span a full window
  // since the Ready transition is unready: timestamp (now) < transition (now - 10) + window 15.
  PodView a = pod(1000, 1000);
  PodView young = pod(1000, 1000);
  young.start_s = kNow - 100;
  young.ready_change_s = kNow - 10;
  // unready -> as in CpuReadinessRuleOnlyForCpu: 2.0, rebalanced 1.0 -> 2.
  EXPECT_EQ(cpu_proposal(2, 50, {a, young}), 2);
  // Transition 20 s ago: now >= now - 20 + 15 -> ready: 100 % -> ceil(2.0 * 2) = 4.
  young.ready_change_s = kNow - 20;
  EXPECT_EQ(cpu_proposal(2, 50, {a, young}), 4);
  // Past the period: not ready and the transition within start + 30 s (never been ready) ->
  // unready -> 2; a transition later than start + 30 s (was ready, lost it) -> counts -> 4.
  PodView old = pod(1000, 1000);
  old.ready = false;
  old.ready_change_s = 20;  // start 0 + 30 > 20
  EXPECT_EQ(cpu_proposal(2, 50, {a, old}), 2);
  old.ready_change_s = 40;
  EXPECT_EQ(cpu_proposal(2, 50, {a, old}), 4);
}

TEST(HpaResource, FailedAndDeletingPodsAreIgnored) {
  // groupPods: failed and deleting pods are ignored (not rebalanced): 2 ready at 1000 plus a
  // failed and a deleting pod reporting 0: metrics {1000, 1000} over requests 2000 -> 100 % ->
  // ratio 2.0, no unready/missing -> ceil(2.0 * 2) = 4.
  // Current 3: counting them as ready at 0 would give int32(2000 * 100 / 4000) = 50 % -> 1.0,
  // within tolerance -> 3.
  std::vector<PodView> p = pods(2, 1000, 1000);
  PodView failed = pod(1000, 0);
  failed.failed = true;
  PodView deleting = pod(1000, 0);
  deleting.deleting = true;
  p.push_back(failed);
  p.push_back(deleting);
  EXPECT_EQ(cpu_proposal(3, 50, p), 4);
}

TEST(HpaResource, MissingRequestIsAnError) {
  // calculatePodRequests: a pod without a cpu request makes the Utilization metric invalid.
  HpaController c(hpa(1, 10, {resource_utilization("cpu", 50)}));
  Decision d = c.sync(input(kNow, 2, {pod(1000, 500), pod(0, 500)}));
  EXPECT_EQ(d.metric_desired, -1);
  EXPECT_EQ(d.desired, 2);
  EXPECT_FALSE(d.metrics[0].replicas.has_value());
  EXPECT_EQ(d.scaling_active.reason, "FailedGetResourceMetric");
  EXPECT_FALSE(d.scaling_active.status);
}

TEST(HpaPods, AverageValueInMilliUnitsWithCeil) {
  // GetMetricReplicas -> calcPlainMetricReplicas: values 15500, 12000, 9000 milli; target 10000.
  // GetMetricUsageRatio: usage = 36500 / 3 = 12166 (int64 truncation); ratio = 1.2166 ->
  // ceil(1.2166 * 3) = ceil(3.6498) = 4. A pod with Ready False still counts (no resource, so
  // no readiness rule).
  std::vector<PodView> p = {pod(1000, 15500), pod(1000, 12000), pod(1000, 9000)};
  p[2].ready = false;
  p[2].ready_change_s = 9990;
  HpaController c(hpa(1, 10, {pods_average("rps", 10000)}));
  Decision d = c.sync(input(kNow, 3, p));
  EXPECT_EQ(d.metrics[0].current, 12166);
  EXPECT_DOUBLE_EQ(d.metrics[0].usage_ratio, 1.2166);
  EXPECT_EQ(d.desired, 4);
  EXPECT_EQ(d.metric, "pods metric rps");
}

TEST(HpaPods, MissingPodsUseTargetOnScaleDownAndZeroOnScaleUp) {
  // Scale-down: 2 report 2000, 2 missing, target 10000: usage 2000 -> 0.2; the missing get the
  // target: (4000 + 20000) / 4 = 6000 -> 0.6 -> ceil(0.6 * 4) = ceil(2.4) = 3.
  std::vector<PodView> p = {pod(1000, 2000), pod(1000, 2000), pod(1000, std::nullopt),
                            pod(1000, std::nullopt)};
  HpaController down(hpa(1, 10, {pods_average("rps", 10000)}));
  EXPECT_EQ(*down.sync(input(kNow, 4, p)).metrics[0].replicas, 3);
  // Scale-up: 2 report 13000, 2 missing: usage 13000 -> 1.3; the missing get 0:
  // 26000 / 4 = 6500 -> 0.65 < 1: direction flipped -> current 4.
  p[0] = p[1] = pod(1000, 13000);
  HpaController up(hpa(1, 10, {pods_average("rps", 10000)}));
  EXPECT_EQ(*up.sync(input(kNow, 4, p)).metrics[0].replicas, 4);
}

TEST(HpaExternal, AverageValueAgainstStatusReplicas) {
  // GetExternalPerPodMetricReplicas(statusReplicas 3): total 450000, target 100000 per pod:
  // ratio 450000 / (100000 * 3) = 1.5 -> ceil(450000 / 100000) = ceil(4.5) = 5;
  // current = ceil(450000 / 3) = 150000.
  HpaController c(hpa(1, 10, {external("queue", TargetType::kAverageValue, 100000)}));
  Decision d = c.sync(input(kNow, 3, pods(3, 1000, std::nullopt), {450000}));
  EXPECT_EQ(d.metrics[0].current, 150000);
  EXPECT_DOUBLE_EQ(d.metrics[0].usage_ratio, 1.5);
  EXPECT_EQ(d.desired, 5);
  EXPECT_EQ(d.metric, "external metric queue(nil)");
  // 310000: ratio 1.0333, within tolerance -> 3, though ceil(3.1) would be 4.
  HpaController c2(hpa(1, 10, {external("queue", TargetType::kAverageValue, 100000)}));
  EXPECT_EQ(*c2.sync(input(kNow, 3, pods(3, 1000, std::nullopt), {310000})).metrics[0].replicas, 3);
}

TEST(HpaExternal, ValueTimesReadyPods) {
  // GetExternalMetricReplicas: ratio 250000 / 100000 = 2.5; getUsageRatioReplicaCount with
  // current 4 != 0: outside tolerance -> getReadyPodsCount: Running and Ready: 2 of 4 (one not
  // ready, one pending) -> ceil(2.5 * 2) = 5.
  std::vector<PodView> p = pods(4, 1000, std::nullopt);
  p[2].ready = false;
  p[3].pending = true;
  HpaController c(hpa(1, 10, {external("queue", TargetType::kValue, 100000)}));
  Decision d = c.sync(input(kNow, 4, p, {250000}));
  EXPECT_EQ(d.metrics[0].current, 250000);
  EXPECT_EQ(*d.metrics[0].replicas, 5);
  EXPECT_EQ(d.desired, 5);
}

TEST(HpaExternal, FromZeroReplicasWhenMinIsZero) {
  // reconcileAutoscaler: current 0 with minReplicas 0 computes metrics;
  // getUsageRatioReplicaCount(current 0): ceil(2500 / 1000) = 3, no tolerance;
  // convertDesiredReplicasWithRules: max(2 * 0, 4) = 4 >= 3 -> 3.
  HpaController c(hpa(0, 10, {external("queue", TargetType::kValue, 1000)}));
  Decision d = c.sync(input(kNow, 0, {}, {2500}));
  EXPECT_EQ(d.desired, 3);
}

TEST(HpaMetrics, MaxOverMetrics) {
  // computeReplicasForMetrics takes the largest proposal: cpu 100 % of 50 % on 3 pods ->
  // ceil(2.0 * 3) = 6; pods metric 35000 / 10000 on 3 pods -> ceil(3.5 * 3) = 11 (limited to
  // max(2 * 3, 4) = 6 by convertDesiredReplicasWithRules, reason ScaleUpLimit).
  std::vector<PodView> p = pods(3, 1000, std::nullopt);
  for (PodView& x : p) x.values = {1000, 35000};
  HpaController c(hpa(1, 20, {resource_utilization("cpu", 50), pods_average("rps", 10000)}));
  Decision d = c.sync(input(kNow, 3, p));
  EXPECT_EQ(*d.metrics[0].replicas, 6);
  EXPECT_EQ(*d.metrics[1].replicas, 11);
  EXPECT_EQ(d.metric_desired, 11);
  EXPECT_EQ(d.metric, "pods metric rps");
  EXPECT_EQ(d.desired, 6);
  EXPECT_TRUE(d.scaling_limited.status);
  EXPECT_EQ(d.scaling_limited.reason, "ScaleUpLimit");
}

TEST(HpaMetrics, InvalidMetricBlocksScaleDownOnly) {
  // computeReplicasForMetrics gives up (-1) when invalidMetricsCount > 0 and the valid max is
  // below scale.spec.replicas; otherwise it proceeds on the valid ones.
  auto spec = hpa(1, 20, {resource_utilization("cpu", 50), external("q", TargetType::kValue, 1)});
  // Down: cpu 25 % -> 0.5 -> ceil(0.5 * 4) = 2 < 4, the external metric is absent -> gives up.
  HpaController down(spec);
  Decision d = down.sync(input(kNow, 4, pods(4, 1000, 250), {std::nullopt}));
  EXPECT_EQ(d.metric_desired, -1);
  EXPECT_EQ(d.desired, 4);
  EXPECT_EQ(d.error,
            "invalid metrics (1 invalid out of 2), first error is: failed to get q external metric "
            "value: failed to get external metric q: unable to get external metric q: no metrics "
            "returned from external metrics API");
  EXPECT_EQ(d.scaling_active.reason, "FailedGetExternalMetric");
  // Up: cpu 100 % -> ceil(2.0 * 4) = 8 >= 4 -> proceeds to 8 (max(2 * 4, 4) = 8).
  HpaController up(spec);
  d = up.sync(input(kNow, 4, pods(4, 1000, 1000), {std::nullopt}));
  EXPECT_EQ(d.desired, 8);
  EXPECT_TRUE(d.error.empty());
  EXPECT_FALSE(d.metrics[1].error.empty());
  EXPECT_EQ(d.scaling_active.reason, "ValidMetricFound");
  // Hold: cpu 50 % -> 1.0 -> current 4, not below 4 -> proceeds.
  HpaController hold(spec);
  EXPECT_EQ(hold.sync(input(kNow, 4, pods(4, 1000, 500), {std::nullopt})).metric_desired, 4);
  // All invalid: gives up whatever the direction.
  HpaController none(spec);
  d = none.sync(input(kNow, 4, pods(4, 1000, std::nullopt), {std::nullopt}));
  EXPECT_EQ(d.metric_desired, -1);
  EXPECT_EQ(d.scaling_active.reason, "FailedGetResourceMetric");
}

TEST(HpaLegacy, ScaleUpLimitIsTwiceOrFour) {
  // convertDesiredReplicasWithRules: scaleUpLimit = int32(max(2 * current, 4)).
  // Pods metric 100000 / 10000 on n pods proposes ceil(10 * n).
  auto run = [](int32_t current, int32_t max) {
    HpaController c(hpa(1, max, {pods_average("rps", 10000)}));
    return c.sync(input(kNow, current, pods(current, 1000, 100000)));
  };
  Decision d = run(1, 100);  // proposes 10; limit max(2, 4) = 4
  EXPECT_EQ(d.desired, 4);
  EXPECT_EQ(d.scaling_limited.reason, "ScaleUpLimit");
  d = run(3, 100);  // proposes 30; limit 6
  EXPECT_EQ(d.desired, 6);
  d = run(3, 5);  // limit 6 > maxReplicas 5 -> TooManyReplicas, 5
  EXPECT_EQ(d.desired, 5);
  EXPECT_EQ(d.scaling_limited.reason, "TooManyReplicas");
  EXPECT_EQ(d.scaling_limited.message,
            "the desired replica count is more than the maximum replica count");
}

TEST(HpaLegacy, DownscaleStabilizationWindowIsInclusive) {
  // stabilizeRecommendation: cutoff = now - 300; a recommendation is dropped only if
  // timestamp.Before(cutoff), so one exactly 300 s old still counts.
  // t=0: current 5 proposes 5 (cpu 50 % of 50 %): recommendations {5@0 (initial), 5@0}.
  // t=300: proposes 2 (cpu 20 % -> 0.4 -> ceil(2.0) = 2): max(5@0, 5@0, 2) = 5 -> held,
  // ScaleDownStabilized.
  // t=301: 5@0 are before the cutoff 1; max(2@300, 2) = 2 -> scale to 2.
  HpaController c(hpa(1, 10, {resource_utilization("cpu", 50)}));
  EXPECT_EQ(c.sync(input(0 + kNow, 5, pods(5, 1000, 500))).desired, 5);
  Decision d = c.sync(input(300 + kNow, 5, pods(5, 1000, 200)));
  EXPECT_EQ(d.metric_desired, 2);
  EXPECT_EQ(d.desired, 5);
  EXPECT_EQ(d.able_to_scale.reason, "ScaleDownStabilized");
  d = c.sync(input(301 + kNow, 5, pods(5, 1000, 200)));
  EXPECT_EQ(d.desired, 2);
  EXPECT_EQ(d.reason, "All metrics below target");
  EXPECT_EQ(d.able_to_scale.reason, "SucceededRescale");
}

TEST(HpaLegacy, ClampsToMinAndMax) {
  // reconcileAutoscaler without metrics: current > max -> max; current < min -> min.
  HpaController above(hpa(2, 6, {resource_utilization("cpu", 50)}));
  Decision d = above.sync(input(kNow, 9, pods(9, 1000, 500)));
  EXPECT_EQ(d.desired, 6);
  EXPECT_EQ(d.reason, "Current number of replicas above Spec.MaxReplicas");
  EXPECT_TRUE(d.metrics.empty());
  HpaController below(hpa(2, 6, {resource_utilization("cpu", 50)}));
  d = below.sync(input(kNow, 1, pods(1, 1000, 500)));
  EXPECT_EQ(d.desired, 2);
  EXPECT_EQ(d.reason, "Current number of replicas below Spec.MinReplicas");
  // Metrics proposing below min: cpu 10 % of 50 % on 4 pods -> 0.2 -> ceil(0.2 * 4) = 1.
  // With a 0 s downscale window the first sync still counts the initial {4, now} (cutoff = now,
  // not Before) -> 4; one second later it is dropped: max(1) = 1 < min 3 -> TooFewReplicas, 3.
  ControllerConfig no_window;
  no_window.downscale_stabilization_s = 0;
  HpaController low(hpa(3, 6, {resource_utilization("cpu", 50)}), no_window);
  d = low.sync(input(kNow, 4, pods(4, 1000, 100)));
  EXPECT_EQ(d.metric_desired, 1);
  EXPECT_EQ(d.desired, 4);
  d = low.sync(input(kNow + 1, 4, pods(4, 1000, 100)));
  EXPECT_EQ(d.desired, 3);
  EXPECT_TRUE(d.scaling_limited.status);
  EXPECT_EQ(d.scaling_limited.reason, "TooFewReplicas");
}

TEST(HpaLegacy, ZeroReplicasDisablesScaling) {
  // reconcileAutoscaler: currentReplicas 0 and minReplicas != 0 -> desired 0, no rescale,
  // ScalingActive False ScalingDisabled; metrics are not computed.
  HpaController c(hpa(1, 10, {resource_utilization("cpu", 50)}));
  Decision d = c.sync(input(kNow, 0, {}));
  EXPECT_EQ(d.desired, 0);
  EXPECT_FALSE(d.scaling_active.status);
  EXPECT_EQ(d.scaling_active.reason, "ScalingDisabled");
  EXPECT_TRUE(d.metrics.empty());
}

TEST(HpaBehavior, DefaultScaleUpIsMaxOfFourPodsAndDouble) {
  // calculateScaleUpLimitWithScalingRules, current 3, no events: Pods 3 + 4 = 7,
  // Percent ceil(3 * (1 + 100 / 100)) = 6; Max -> 7; Min -> 6; Disabled -> current 3.
  // Pods metric 100000 / 10000 on 3 pods proposes ceil(10 * 3) = 30.
  auto run = [](SelectPolicy select) {
    Behavior b = default_behavior();
    b.scale_up.select_policy = select;
    HpaController c(hpa(1, 100, {pods_average("rps", 10000)}, b));
    return c.sync(input(kNow, 3, pods(3, 1000, 100000)));
  };
  Decision d = run(SelectPolicy::kMax);
  EXPECT_EQ(d.desired, 7);
  EXPECT_EQ(d.scaling_limited.reason, "ScaleUpLimit");
  EXPECT_EQ(run(SelectPolicy::kMin).desired, 6);
  d = run(SelectPolicy::kDisabled);
  EXPECT_EQ(d.desired, 3);
  EXPECT_EQ(d.scaling_limited.reason, "ScaleUpLimit");
}

TEST(HpaBehavior, PercentUpRoundsUpInFloat64) {
  // Percent 10 % / 60 s from 100: int32(math.Ceil(100 * (1 + 10 / 100))) =
  // ceil(110.00000000000001) = 111, not 110. From 10: ceil(11.0) = 11 (exact), from 3:
  // ceil(3.3000000000000003) = 4.
  auto run = [](int32_t current) {
    Behavior b = behavior_with(rules({{PolicyType::kPercent, 10, 60}}),
                               rules({{PolicyType::kPercent, 100, 15}}));
    HpaController c(hpa(1, 1000, {pods_average("rps", 10000)}, b));
    return c.sync(input(kNow, current, pods(current, 1000, 100000))).desired;
  };
  EXPECT_EQ(run(100), 111);
  EXPECT_EQ(run(10), 11);
  EXPECT_EQ(run(3), 4);
}

TEST(HpaBehavior, PercentDownTruncatesInFloat64) {
  // calculateScaleDownLimitWithBehaviors: int32(periodStart * (1 - value / 100)) truncates.
  // 10 at 80 %: 10 * (1 - 0.8) = 1.9999999999999996 -> 1 (not 2); 7 at 50 %: int32(3.5) = 3.
  // The metric proposes 1 (Pods 1000 / 10000 -> 0.1 -> ceil(0.1 * n) = 1); min 1; no windows.
  auto run = [](int32_t current, int32_t percent) {
    Behavior b = behavior_with(rules({{PolicyType::kPods, 4, 15}}),
                               rules({{PolicyType::kPercent, percent, 15}}));
    HpaController c(hpa(1, 100, {pods_average("rps", 10000)}, b));
    return c.sync(input(kNow, current, pods(current, 1000, 1000)));
  };
  Decision d = run(10, 80);
  EXPECT_EQ(d.desired, 1);
  EXPECT_EQ(d.scaling_limited.reason, "DesiredWithinRange");
  d = run(7, 50);
  EXPECT_EQ(d.desired, 3);
  EXPECT_EQ(d.scaling_limited.reason, "ScaleDownLimit");
  // Min picks the smaller change (the larger count) of Pods 2 and Percent 50 %: from 10,
  // max(10 - 2, int32(10 * 0.5)) = 8; Max picks min(8, 5) = 5.
  auto pick = [](SelectPolicy select) {
    Behavior b =
        behavior_with(rules({{PolicyType::kPods, 4, 15}}),
                      rules({{PolicyType::kPods, 2, 15}, {PolicyType::kPercent, 50, 15}}, select));
    HpaController c(hpa(1, 100, {pods_average("rps", 10000)}, b));
    return c.sync(input(kNow, 10, pods(10, 1000, 1000))).desired;
  };
  EXPECT_EQ(pick(SelectPolicy::kMin), 8);
  EXPECT_EQ(pick(SelectPolicy::kMax), 5);
  EXPECT_EQ(pick(SelectPolicy::kDisabled), 10);
}

TEST(HpaBehavior, RatePeriodsCountEventsStrictlyInside) {
  // Pods 4 / 60 s up. t=0: 10 -> 14 (storeScaleEvent +4@0).
  // t=45: getReplicasChangePerPeriod(60): 0 > -15 -> 4 added; periodStart 14 - 4 = 10 ->
  // limit 14: held at 14 (ScaleUpLimit).
  // t=60: the cutoff is 0 and the event at 0 is not After it -> periodStart 14 -> 18.
  Behavior b =
      behavior_with(rules({{PolicyType::kPods, 4, 60}}), rules({{PolicyType::kPercent, 100, 15}}));
  HpaController c(hpa(1, 100, {pods_average("rps", 10000)}, b));
  EXPECT_EQ(c.sync(input(kNow, 10, pods(10, 1000, 30000))).desired, 14);
  Decision d = c.sync(input(kNow + 45, 14, pods(14, 1000, 30000)));
  EXPECT_EQ(d.desired, 14);
  EXPECT_EQ(d.scaling_limited.reason, "ScaleUpLimit");
  EXPECT_EQ(c.sync(input(kNow + 60, 14, pods(14, 1000, 30000))).desired, 18);
}

TEST(HpaBehavior, ScaleDownEventsRaiseTheScaleUpPeriodStart) {
  // periodStartReplicas = current - added + removed within the period. t=0: 10 -> 6 (Pods
  // metric 5000 / 10000 -> 0.5 -> ceil(5) = 5, limited by Pods 4 / 60 s down: 10 - 4 = 6;
  // event -4@0). t=15: scale up from 6 with Pods 4 / 60 s: periodStart 6 - 0 + 4 = 10 -> 14.
  Behavior b =
      behavior_with(rules({{PolicyType::kPods, 4, 60}}), rules({{PolicyType::kPods, 4, 60}}));
  HpaController c(hpa(1, 100, {pods_average("rps", 10000)}, b));
  Decision d = c.sync(input(kNow, 10, pods(10, 1000, 5000)));
  EXPECT_EQ(d.metric_desired, 5);
  EXPECT_EQ(d.desired, 6);
  EXPECT_EQ(d.scaling_limited.reason, "ScaleDownLimit");
  EXPECT_EQ(c.sync(input(kNow + 15, 6, pods(6, 1000, 100000))).desired, 14);
}

TEST(HpaBehavior, OutdatedUpEventsCountForTheLongerDownPeriod) {
  // Up: Pods 4 / 15 s; down: Pods 1 / 600 s; no windows.
  // t=0: 10 proposes 30 -> limit 10 + 4 = 14 (storeScaleEvent: up +4@0).
  // t=30: 14 proposes 14 (1.0, within tolerance): no rescale, so no storeScaleEvent; the +4@0 is
  // older than the up period but stays in the list (markScaleEventsOutdated runs only on store).
  // t=45: 14 proposes 2 (0.1 -> ceil(1.4) = 2): calculateScaleDownLimitWithBehaviors over 600 s
  // counts the +4@0: periodStart 14 - 4 + 0 = 10 -> 10 - 1 = 9 (ScaleDownLimit).
  // (Had the hold at t=30 stored an up event, it would have reused the outdated +4@0 slot and
  // the limit would be 14 - 1 = 13.)
  Behavior b =
      behavior_with(rules({{PolicyType::kPods, 4, 15}}), rules({{PolicyType::kPods, 1, 600}}));
  HpaController c(hpa(1, 100, {pods_average("rps", 10000)}, b));
  EXPECT_EQ(c.sync(input(kNow, 10, pods(10, 1000, 30000))).desired, 14);
  EXPECT_EQ(c.sync(input(kNow + 30, 14, pods(14, 1000, 10000))).desired, 14);
  Decision d = c.sync(input(kNow + 45, 14, pods(14, 1000, 1000)));
  EXPECT_EQ(d.metric_desired, 2);
  EXPECT_EQ(d.desired, 9);
  EXPECT_EQ(d.scaling_limited.reason, "ScaleDownLimit");
}

TEST(HpaBehavior, StoreScaleEventReusesTheOutdatedSlot) {
  // Up: Pods 4 / 15 s; down: Pods 10 / 60 s (up events count there over 60 s).
  // t=0: 10 -> 14 (+4@0). t=20: 14 -> 18: markScaleEventsOutdated(15 s) marks +4@0, which the
  // new +4@20 overwrites. t=30: 18 proposes 1: periodStart over 60 s = 18 - 4 (only +4@20
  // remains) = 14 -> 14 - 10 = 4. (With both events kept it would be 18 - 8 - 10 = 0 -> min 1.)
  Behavior b =
      behavior_with(rules({{PolicyType::kPods, 4, 15}}), rules({{PolicyType::kPods, 10, 60}}));
  HpaController c(hpa(1, 100, {pods_average("rps", 10000)}, b));
  EXPECT_EQ(c.sync(input(kNow, 10, pods(10, 1000, 30000))).desired, 14);
  EXPECT_EQ(c.sync(input(kNow + 20, 14, pods(14, 1000, 30000))).desired, 18);
  EXPECT_EQ(c.sync(input(kNow + 30, 18, pods(18, 1000, 100))).desired, 4);
}

TEST(HpaBehavior, DownWindowEdgeIsExclusive) {
  // stabilizeRecommendationWithBehaviors counts recommendations with timestamp.After(now - window)
  // (strict). Scale-down window 60 s, up window 0. t=0: current 5 proposes 5 ({5@0, 5@0}).
  // At t=59: down = max(5@0, 2) = 5 -> held (ScaleDownStabilized).
  // At t=60: the 5@0 are not After 0 -> down = 2, up = 2 -> 2 (limit: Percent 100 % / 15 s ->
  // int32(5 * 0) = 0, below min 1: TooFewReplicas floor 1 < 2, so 2).
  auto make = []() {
    Behavior b = behavior_with(rules({{PolicyType::kPods, 4, 15}}),
                               rules({{PolicyType::kPercent, 100, 15}}, SelectPolicy::kMax, 60));
    return HpaController(hpa(1, 10, {pods_average("rps", 10000)}, b));
  };
  HpaController early = make();
  EXPECT_EQ(early.sync(input(kNow, 5, pods(5, 1000, 10000))).desired, 5);
  Decision d = early.sync(input(kNow + 59, 5, pods(5, 1000, 4000)));  // 0.4 -> ceil(2.0) = 2
  EXPECT_EQ(d.metric_desired, 2);
  EXPECT_EQ(d.desired, 5);
  EXPECT_EQ(d.able_to_scale.reason, "ScaleDownStabilized");
  HpaController edge = make();
  EXPECT_EQ(edge.sync(input(kNow, 5, pods(5, 1000, 10000))).desired, 5);
  EXPECT_EQ(edge.sync(input(kNow + 60, 5, pods(5, 1000, 4000))).desired, 2);
}

TEST(HpaBehavior, UpWindowTakesTheLowestRecommendation) {
  // Scale-up window 60 s: t=0 proposes 5 at current 5 ({5@0, 5@0}). t=30 proposes 10:
  // up = min(5, 5, 10) = 5 -> held at 5 (ScaleUpStabilized). t=60: the 5@0 are not After 0;
  // up = min(10@30, 10) = 10 -> 10 (Pods 5 + 4 = 9, Percent ceil(5 * 2) = 10, Max -> 10).
  Behavior b = default_behavior();
  b.scale_up.stabilization_window_seconds = 60;
  HpaController c(hpa(1, 20, {pods_average("rps", 10000)}, b));
  EXPECT_EQ(c.sync(input(kNow, 5, pods(5, 1000, 10000))).desired, 5);
  Decision d = c.sync(input(kNow + 30, 5, pods(5, 1000, 20000)));  // 2.0 -> 10
  EXPECT_EQ(d.metric_desired, 10);
  EXPECT_EQ(d.desired, 5);
  EXPECT_EQ(d.able_to_scale.reason, "ScaleUpStabilized");
  EXPECT_EQ(c.sync(input(kNow + 60, 5, pods(5, 1000, 20000))).desired, 10);
}

TEST(HpaStabilization, LegacyAndBehaviorWindowEdgesDiffer) {
  // An hour of 15 s syncs proposing 8 at 8 replicas, then from T = 3600 proposals of 2.
  // The last 8 is recorded at T - 15.
  // Legacy (stabilizeRecommendation, 300 s, inclusive): at T + 285 the cutoff is T - 15 and
  // 8@(T-15) is not Before it -> held; at T + 300 it is dropped -> 2.
  // Behavior (default_behavior, scale-down window 300 s, After(now - 300) strict): at T + 285,
  // 8@(T-15) is not After T - 15 -> down = 2 -> 2 (Percent 100 %: int32(8 * 0) = 0, floor min 1).
  auto run = [](std::optional<Behavior> behavior) {
    HpaController c(hpa(1, 10, {pods_average("rps", 10000)}, behavior));
    int32_t current = 8;
    double first_down = -1;
    for (int i = 0; i < 240 + 40 && first_down < 0; ++i) {
      const double t = 15.0 * i;
      const int64_t value = t < 3600 ? 10000 : 2500;  // 1.0 -> hold; 0.25 -> ceil(2.0) = 2
      Decision d = c.sync(input(t, current, pods(current, 1000, value)));
      EXPECT_EQ(d.metric_desired, t < 3600 ? 8 : 2);
      if (d.desired != current) first_down = t;
      current = d.desired;
    }
    EXPECT_EQ(current, 2);
    return first_down - 3600;
  };
  EXPECT_EQ(run(std::nullopt), 300);
  EXPECT_EQ(run(default_behavior()), 285);
}

}  // namespace
}  // namespace tideserve::plan
