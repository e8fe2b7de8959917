// The HorizontalPodAutoscaler controller of Kubernetes v1.31, replayed one sync at a time:
// kube-controller-manager's pkg/controller/podautoscaler (horizontal.go, replica_calculator.go,
// metrics/utilization.go, metrics/client.go) and the behavior defaults of
// pkg/apis/autoscaling/v2/defaults.go. Written from reading that source, not copied.
//
// Every value is in milli-units (Quantity.MilliValue()), as the controller computes: millicores,
// milli-bytes, thousandths of a custom or external metric's unit. The arithmetic keeps the
// source's order and types: int64 sums and truncating divisions, float64 ratios, math.Ceil, and
// Go's truncating int32()/int64() conversions (saturated here where Go's result is undefined).
// Each function names the one it follows.
#include "tideserve/plan/hpa.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
#include <utility>

#include "tideserve/util/status.h"

namespace tideserve::plan {
namespace {

// horizontal.go: scaleUpLimitFactor, scaleUpLimitMinimum (the legacy path's scale-up cap).
constexpr double kScaleUpLimitFactor = 2.0;
constexpr double kScaleUpLimitMinimum = 4.0;
// pkg/apis/autoscaling: DefaultCPUUtilization, what SetDefaults_HorizontalPodAutoscaler gives an
// HPA without metrics.
constexpr int32_t kDefaultCpuUtilization = 80;

// Go's int32(f): truncation toward zero. Out of range or NaN is platform-defined in Go; saturate.
int32_t go_int32(double f) {
  if (std::isnan(f)) return 0;
  if (f >= 2147483647.0) return std::numeric_limits<int32_t>::max();
  if (f <= -2147483648.0) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(f);
}
int64_t go_int64(double f) {
  if (std::isnan(f)) return 0;
  if (f >= 9.2233720368547758e18) return std::numeric_limits<int64_t>::max();
  if (f <= -9.2233720368547758e18) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(f);
}
int32_t ceil_int32(double f) {
  return go_int32(std::ceil(f));
}

// PodMetricsInfo: pod (index into SyncInput::pods) -> milli-value.
using PodMetrics = std::map<size_t, int64_t>;

// What the resource or custom metrics API returns for metric `index`: the pods it has a value for.
PodMetrics pod_metrics(const std::vector<PodView>& pods, size_t index) {
  PodMetrics metrics;
  for (size_t i = 0; i < pods.size(); ++i) {
    if (index < pods[i].values.size() && pods[i].values[index].has_value()) {
      metrics[i] = *pods[i].values[index];
    }
  }
  return metrics;
}

struct CalcContext {
  const std::vector<PodView>& pods;
  const ControllerConfig& config;
  double now;
};

struct PodGroups {
  int ready = 0;
  std::vector<size_t> unready, missing, ignored;
};

// groupPods: deleting or failed pods are ignored; pending pods are unready (for every metric);
// pods the API has no value for are missing; for cpu only, a pod still inside the cpu
// initialization period whose Ready condition is False, or whose sample does not cover a full
// window since the condition last changed, is unready; past that period, a pod that is not ready
// and whose condition last changed within the initial readiness delay of its start (never been
// ready) is unready. Everything else counts as ready.
PodGroups group_pods(const CalcContext& c, const PodMetrics& metrics, bool cpu) {
  PodGroups g;
  for (size_t i = 0; i < c.pods.size(); ++i) {
    const PodView& pod = c.pods[i];
    if (pod.deleting || pod.failed) {
      g.ignored.push_back(i);
      continue;
    }
    if (pod.pending) {
      g.unready.push_back(i);
      continue;
    }
    if (metrics.find(i) == metrics.end()) {
      g.missing.push_back(i);
      continue;
    }
    if (cpu) {
      bool unready;
      if (pod.start_s + c.config.cpu_initialization_period_s > c.now) {
        const double sample_at = pod.metric_timestamp_s.value_or(c.now);
        unready = !pod.ready || sample_at < pod.ready_change_s + pod.metric_window_s;
      } else {
        unready =
            !pod.ready && pod.start_s + c.config.initial_readiness_delay_s > pod.ready_change_s;
      }
      if (unready) {
        g.unready.push_back(i);
        continue;
      }
    }
    ++g.ready;
  }
  return g;
}

void remove_metrics_for_pods(PodMetrics& metrics, const std::vector<size_t>& pods) {
  for (size_t pod : pods) metrics.erase(pod);
}

// calculatePodRequests: every listed pod's request for the resource (summed over containers).
// A zero request stands for a container without one, which the source refuses.
Result<std::vector<int64_t>> calculate_pod_requests(const std::vector<PodView>& pods,
                                                    const std::string& resource) {
  std::vector<int64_t> requests(pods.size(), 0);
  for (size_t i = 0; i < pods.size(); ++i) {
    int64_t request = 0;
    if (resource == "cpu") request = pods[i].cpu_request_milli;
    if (resource == "memory") request = pods[i].memory_request_milli;
    if (request <= 0) {
      return invalid_argument(
          fmt::format("missing request for {} in container of Pod {}", resource, i));
    }
    requests[i] = request;
  }
  return requests;
}

struct UtilizationRatio {
  double ratio = 0;
  int32_t utilization = 0;
  int64_t raw_average = 0;
};

// GetResourceUtilizationRatio: utilization is the integer percentage
// int32((sum usage * 100) / sum requests) over the pods with metrics; the ratio divides that
// truncated percentage by the target.
Result<UtilizationRatio> resource_utilization_ratio(const PodMetrics& metrics,
                                                    const std::vector<int64_t>& requests,
                                                    int32_t target) {
  int64_t metrics_total = 0, requests_total = 0, entries = 0;
  for (const auto& [pod, value] : metrics) {
    if (pod >= requests.size()) continue;
    metrics_total += value;
    requests_total += requests[pod];
    ++entries;
  }
  if (requests_total == 0) return unavailable("no metrics returned matched known pods");
  UtilizationRatio r;
  r.utilization = static_cast<int32_t>((metrics_total * 100) / requests_total);
  r.ratio = static_cast<double>(r.utilization) / static_cast<double>(target);
  r.raw_average = metrics_total / entries;
  return r;
}

// GetMetricUsageRatio: the truncated integer average over the pods with metrics, over the target.
std::pair<double, int64_t> metric_usage_ratio(const PodMetrics& metrics, int64_t target) {
  int64_t total = 0;
  for (const auto& [pod, value] : metrics) total += value;
  const int64_t usage = total / static_cast<int64_t>(metrics.size());
  return {static_cast<double>(usage) / static_cast<double>(target), usage};
}

struct Calc {
  int32_t replicas = 0;
  int64_t current = 0;  // utilization percent or milli-value, as the status reports it
  double ratio = 0;     // the first usage ratio (before missing/unready pods are filled in)
};

bool within_tolerance(double ratio, double tolerance) {
  return std::abs(1.0 - ratio) <= tolerance;
}

// GetResourceReplicas (Resource metric, Utilization target).
Result<Calc> get_resource_replicas(const CalcContext& c, int32_t current_replicas, int32_t target,
                                   const std::string& resource, size_t index) {
  PodMetrics metrics = pod_metrics(c.pods, index);
  if (metrics.empty()) {
    return unavailable(fmt::format(
        "unable to get metrics for resource {}: no metrics returned from resource metrics API",
        resource));
  }
  if (c.pods.empty()) {
    return unavailable("no pods returned by selector while calculating replica count");
  }
  const PodGroups g = group_pods(c, metrics, resource == "cpu");
  remove_metrics_for_pods(metrics, g.ignored);
  remove_metrics_for_pods(metrics, g.unready);
  if (metrics.empty()) {
    return unavailable("did not receive metrics for targeted pods (pods might be unready)");
  }
  Result<std::vector<int64_t>> requests = calculate_pod_requests(c.pods, resource);
  if (!requests.is_ok()) return requests.status();

  Result<UtilizationRatio> first = resource_utilization_ratio(metrics, *requests, target);
  if (!first.is_ok()) return first.status();
  const double usage_ratio = first->ratio;
  Calc out;
  out.current = first->utilization;
  out.ratio = usage_ratio;

  const bool scale_up_with_unready = !g.unready.empty() && usage_ratio > 1.0;
  if (!scale_up_with_unready && g.missing.empty()) {
    out.replicas = within_tolerance(usage_ratio, c.config.tolerance)
                       ? current_replicas
                       : ceil_int32(usage_ratio * static_cast<double>(g.ready));
    return out;
  }
  if (!g.missing.empty()) {
    if (usage_ratio < 1.0) {
      // Scale-down: a missing pod uses all of its request, or the target where that is higher.
      const int64_t fallback = std::max<int32_t>(100, target);
      for (size_t pod : g.missing) metrics[pod] = (*requests)[pod] * fallback / 100;
    } else if (usage_ratio > 1.0) {
      for (size_t pod : g.missing) metrics[pod] = 0;  // scale-up: a missing pod uses nothing
    }
  }
  if (scale_up_with_unready) {
    for (size_t pod : g.unready) metrics[pod] = 0;
  }
  Result<UtilizationRatio> second = resource_utilization_ratio(metrics, *requests, target);
  if (!second.is_ok()) return second.status();
  const double new_ratio = second->ratio;
  if (within_tolerance(new_ratio, c.config.tolerance) || (usage_ratio < 1.0 && new_ratio > 1.0) ||
      (usage_ratio > 1.0 && new_ratio < 1.0)) {
    out.replicas = current_replicas;  // too small a change, or the direction flipped
    return out;
  }
  const int32_t new_replicas = ceil_int32(new_ratio * static_cast<double>(metrics.size()));
  if ((new_ratio < 1.0 && new_replicas > current_replicas) ||
      (new_ratio > 1.0 && new_replicas < current_replicas)) {
    out.replicas = current_replicas;  // the longer pod list flipped the direction
    return out;
  }
  out.replicas = new_replicas;
  return out;
}

// calcPlainMetricReplicas (Resource AverageValue via GetRawResourceReplicas, Pods AverageValue
// via GetMetricReplicas). The cpu readiness rule of groupPods applies only when the resource is
// cpu; a Pods metric has no resource, so only pending pods are unready there.
Result<Calc> calc_plain_metric_replicas(const CalcContext& c, PodMetrics metrics,
                                        int32_t current_replicas, int64_t target, bool cpu) {
  if (c.pods.empty()) {
    return unavailable("no pods returned by selector while calculating replica count");
  }
  const PodGroups g = group_pods(c, metrics, cpu);
  remove_metrics_for_pods(metrics, g.ignored);
  remove_metrics_for_pods(metrics, g.unready);
  if (metrics.empty()) {
    return unavailable("did not receive metrics for targeted pods (pods might be unready)");
  }
  const auto [usage_ratio, usage] = metric_usage_ratio(metrics, target);
  Calc out;
  out.current = usage;
  out.ratio = usage_ratio;

  const bool scale_up_with_unready = !g.unready.empty() && usage_ratio > 1.0;
  if (!scale_up_with_unready && g.missing.empty()) {
    out.replicas = within_tolerance(usage_ratio, c.config.tolerance)
                       ? current_replicas
                       : ceil_int32(usage_ratio * static_cast<double>(g.ready));
    return out;
  }
  if (!g.missing.empty()) {
    if (usage_ratio < 1.0) {
      for (size_t pod : g.missing) metrics[pod] = target;  // scale-down: exactly the target
    } else if (usage_ratio > 1.0) {
      for (size_t pod : g.missing) metrics[pod] = 0;  // scale-up: nothing
    }
  }
  if (scale_up_with_unready) {
    for (size_t pod : g.unready) metrics[pod] = 0;
  }
  const double new_ratio = metric_usage_ratio(metrics, target).first;
  if (within_tolerance(new_ratio, c.config.tolerance) || (usage_ratio < 1.0 && new_ratio > 1.0) ||
      (usage_ratio > 1.0 && new_ratio < 1.0)) {
    out.replicas = current_replicas;
    return out;
  }
  const int32_t new_replicas = ceil_int32(new_ratio * static_cast<double>(metrics.size()));
  if ((new_ratio < 1.0 && new_replicas > current_replicas) ||
      (new_ratio > 1.0 && new_replicas < current_replicas)) {
    out.replicas = current_replicas;
    return out;
  }
  out.replicas = new_replicas;
  return out;
}

// getReadyPodsCount: pods Running with Ready True (deleting ones included: the lister has them).
Result<int64_t> ready_pods_count(const std::vector<PodView>& pods) {
  if (pods.empty()) {
    return unavailable("no pods returned by selector while calculating replica count");
  }
  int64_t ready = 0;
  for (const PodView& pod : pods) {
    if (!pod.pending && !pod.failed && pod.ready) ++ready;
  }
  return ready;
}

// GetExternalMetricReplicas + getUsageRatioReplicaCount (External, Value target): the ratio
// total/target, tolerance against the current count, times the ready pods; from zero replicas,
// ceil(ratio) with no tolerance.
Result<Calc> get_external_metric_replicas(const CalcContext& c, int32_t current_replicas,
                                          int64_t target, int64_t total) {
  Calc out;
  out.current = total;
  out.ratio = static_cast<double>(total) / static_cast<double>(target);
  if (current_replicas != 0) {
    if (within_tolerance(out.ratio, c.config.tolerance)) {
      out.replicas = current_replicas;
      return out;
    }
    Result<int64_t> ready = ready_pods_count(c.pods);
    if (!ready.is_ok()) {
      return unavailable("unable to calculate ready pods: " + ready.status().message());
    }
    out.replicas = ceil_int32(out.ratio * static_cast<double>(*ready));
  } else {
    out.replicas = ceil_int32(out.ratio);
  }
  return out;
}

// GetExternalPerPodMetricReplicas (External, AverageValue target): against scale.status.replicas,
// ratio total/(target*replicas); outside the tolerance, ceil(total/target). The reported average
// is ceil(total/replicas).
Calc get_external_per_pod_metric_replicas(const CalcContext& c, int32_t status_replicas,
                                          int64_t target, int64_t total) {
  Calc out;
  out.replicas = status_replicas;
  out.ratio = static_cast<double>(total) /
              (static_cast<double>(target) * static_cast<double>(status_replicas));
  if (std::abs(1.0 - out.ratio) > c.config.tolerance) {
    out.replicas = ceil_int32(static_cast<double>(total) / static_cast<double>(target));
  }
  out.current =
      status_replicas == 0
          ? 0
          : go_int64(std::ceil(static_cast<double>(total) / static_cast<double>(status_replicas)));
  return out;
}

// getUnableComputeReplicaCountCondition.
HpaCondition unable_condition(const std::string& reason, const std::string& error) {
  return {false, reason, "the HPA was unable to compute the replica count: " + error};
}

// getReplicasChangePerPeriod: the changes strictly after now - period.
template <typename Events>
int32_t replicas_change_per_period(int32_t period_seconds, const Events& events, double now) {
  const double cutoff = now - period_seconds;
  int32_t replicas = 0;
  for (const auto& event : events) {
    if (event.at_s > cutoff) replicas += event.change;
  }
  return replicas;
}

// getLongestPolicyPeriod.
int32_t longest_policy_period(const ScalingRules& rules) {
  int32_t longest = 0;
  for (const ScalingPolicy& policy : rules.policies)
    longest = std::max(longest, policy.period_seconds);
  return longest;
}

// calculateScaleUpLimitWithScalingRules: per policy, the replicas at the period's start
// (current - added + removed within it) plus the policy's pods, or times (1 + percent/100)
// rounded up; Max takes the largest, Min the smallest; Disabled keeps the current count.
template <typename Events>
int32_t scale_up_limit_with_rules(int32_t current, const Events& up, const Events& down,
                                  const ScalingRules& rules, double now) {
  if (rules.select_policy == SelectPolicy::kDisabled) return current;
  const bool min_change = rules.select_policy == SelectPolicy::kMin;
  int32_t result =
      min_change ? std::numeric_limits<int32_t>::max() : std::numeric_limits<int32_t>::min();
  for (const ScalingPolicy& policy : rules.policies) {
    const int32_t added = replicas_change_per_period(policy.period_seconds, up, now);
    const int32_t removed = replicas_change_per_period(policy.period_seconds, down, now);
    const int32_t period_start = current - added + removed;
    int32_t proposed = 0;
    if (policy.type == PolicyType::kPods) {
      proposed = period_start + policy.value;
    } else {
      proposed = ceil_int32(static_cast<double>(period_start) *
                            (1 + static_cast<double>(policy.value) / 100));
    }
    result = min_change ? std::min(result, proposed) : std::max(result, proposed);
  }
  return result;
}

// calculateScaleDownLimitWithBehaviors: the period's start minus the policy's pods, or times
// (1 - percent/100) truncated by int32(); Max (the default) takes the smallest count (the largest
// change), Min the largest; Disabled keeps the current count.
template <typename Events>
int32_t scale_down_limit_with_rules(int32_t current, const Events& up, const Events& down,
                                    const ScalingRules& rules, double now) {
  if (rules.select_policy == SelectPolicy::kDisabled) return current;
  const bool min_change = rules.select_policy == SelectPolicy::kMin;
  int32_t result =
      min_change ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int32_t>::max();
  for (const ScalingPolicy& policy : rules.policies) {
    const int32_t added = replicas_change_per_period(policy.period_seconds, up, now);
    const int32_t removed = replicas_change_per_period(policy.period_seconds, down, now);
    const int32_t period_start = current - added + removed;
    int32_t proposed = 0;
    if (policy.type == PolicyType::kPods) {
      proposed = period_start - policy.value;
    } else {
      proposed = go_int32(static_cast<double>(period_start) *
                          (1 - static_cast<double>(policy.value) / 100));
    }
    result = min_change ? std::max(result, proposed) : std::min(result, proposed);
  }
  return result;
}

struct Limited {
  int32_t replicas;
  const char* reason;
  const char* message;
};

constexpr const char* kWithinRange = "DesiredWithinRange";
constexpr const char* kWithinRangeMessage = "the desired count is within the acceptable range";

// convertDesiredReplicasWithRules (no behavior): at least minReplicas (TooFewReplicas); at most
// the lower of maxReplicas (TooManyReplicas) and max(2 * current, 4) (ScaleUpLimit).
Limited convert_desired_replicas_with_rules(int32_t current, int32_t desired, int32_t min_replicas,
                                            int32_t max_replicas) {
  const int32_t scale_up_limit =
      go_int32(std::max(kScaleUpLimitFactor * static_cast<double>(current), kScaleUpLimitMinimum));
  int32_t maximum = max_replicas;
  const char* reason = "TooManyReplicas";
  const char* message = "the desired replica count is more than the maximum replica count";
  if (max_replicas > scale_up_limit) {
    maximum = scale_up_limit;
    reason = "ScaleUpLimit";
    message = "the desired replica count is increasing faster than the maximum scale rate";
  }
  if (desired < min_replicas) {
    return {min_replicas, "TooFewReplicas",
            "the desired replica count is less than the minimum replica count"};
  }
  if (desired > maximum) return {maximum, reason, message};
  return {desired, kWithinRange, kWithinRangeMessage};
}

}  // namespace

// SetDefaults_HorizontalPodAutoscalerBehavior's rules (GenerateHPAScaleUpRules /
// GenerateHPAScaleDownRules). The scale-down window is nil there and the controller fills in its
// --horizontal-pod-autoscaler-downscale-stabilization (300 s by default,
// maybeInitScaleDownStabilizationWindow); this struct has no nil, so it carries the 300.
Behavior default_behavior() {
  Behavior b;
  b.scale_up.stabilization_window_seconds = 0;
  b.scale_up.select_policy = SelectPolicy::kMax;
  b.scale_up.policies = {{PolicyType::kPods, 4, 15}, {PolicyType::kPercent, 100, 15}};
  b.scale_down.stabilization_window_seconds = 300;
  b.scale_down.select_policy = SelectPolicy::kMax;
  b.scale_down.policies = {{PolicyType::kPercent, 100, 15}};
  return b;
}

struct HpaController::Computed {
  int32_t replicas = 0;  // -1: computeReplicasForMetrics gave up
  std::string metric;
  std::vector<MetricOutcome> outcomes;
  std::string error;  // invalidMetricError
};

HpaController::HpaController(HpaSpec spec, ControllerConfig config)
    : spec_(std::move(spec)), config_(config) {
  // SetDefaults_HorizontalPodAutoscaler: an HPA without metrics scales on cpu at 80 %.
  if (spec_.metrics.empty()) {
    MetricSpec cpu;
    cpu.type = MetricSourceType::kResource;
    cpu.name = "cpu";
    cpu.target_type = TargetType::kUtilization;
    cpu.target_utilization = kDefaultCpuUtilization;
    spec_.metrics.push_back(cpu);
  }
}

// computeReplicasForMetrics with computeReplicasForMetric and the computeStatusFor*Metric
// functions: the largest proposal over the valid metrics (the first valid one when all propose
// 0). It gives up (-1) when every metric is invalid, or when some are and the valid ones propose
// fewer replicas than scale.spec.replicas: an invalid metric never blocks a scale-up or a hold,
// and always blocks a scale-down.
HpaController::Computed HpaController::compute_replicas_for_metrics(const SyncInput& input) {
  const CalcContext ctx{input.pods, config_, input.now_s};
  const int32_t spec_replicas = input.current_replicas;
  int32_t status_replicas = input.current_replicas;
  if (input.status_replicas) {
    status_replicas = *input.status_replicas;
  } else if (!input.pods.empty()) {
    status_replicas = 0;
    for (const PodView& pod : input.pods) {
      if (!pod.failed && !pod.deleting) ++status_replicas;
    }
  }

  Computed c;
  int invalid = 0;
  std::string first_error;
  HpaCondition first_condition;
  for (size_t i = 0; i < spec_.metrics.size(); ++i) {
    const MetricSpec& m = spec_.metrics[i];
    MetricOutcome outcome;
    std::string name, error;
    HpaCondition condition;
    Result<Calc> calc = invalid_argument("unset");
    switch (m.type) {
      case MetricSourceType::kResource: {
        std::string inner;  // computeStatusForResourceMetricGeneric's error
        if (m.target_type == TargetType::kAverageValue) {
          if (m.target_milli <= 0) {
            inner = "invalid resource metric source: the average value target must be positive";
          } else {
            PodMetrics metrics = pod_metrics(input.pods, i);
            calc = metrics.empty()
                       ? Result<Calc>(unavailable(fmt::format(
                             "unable to get metrics for resource {}: no metrics returned from "
                             "resource metrics API",
                             m.name)))
                       : calc_plain_metric_replicas(ctx, std::move(metrics), spec_replicas,
                                                    m.target_milli, m.name == "cpu");
            if (!calc.is_ok()) {
              inner = fmt::format("failed to get {} usage: {}", m.name, calc.status().message());
            }
            name = m.name + " resource";
          }
        } else if (m.target_type == TargetType::kUtilization) {
          if (m.target_utilization <= 0) {
            inner = "invalid resource metric source: the average utilization must be positive";
          } else {
            calc = get_resource_replicas(ctx, spec_replicas, m.target_utilization, m.name, i);
            if (!calc.is_ok()) {
              inner =
                  fmt::format("failed to get {} utilization: {}", m.name, calc.status().message());
            }
            name = m.name + " resource utilization (percentage of request)";
          }
        } else {
          inner =
              "invalid resource metric source: neither an average utilization target nor an "
              "average value (usage) target was set";
        }
        if (!inner.empty()) {
          condition = unable_condition("FailedGetResourceMetric", inner);
          error = fmt::format("failed to get {} resource metric value: {}", m.name, inner);
        }
        break;
      }
      case MetricSourceType::kPods: {
        // computeStatusForPodsMetric reads the AverageValue target whatever the type says (the
        // API admits only AverageValue for Pods metrics).
        std::string inner;
        if (m.target_milli <= 0) {
          inner = "invalid pods metric source: the average value target must be positive";
        } else {
          PodMetrics metrics = pod_metrics(input.pods, i);
          calc = metrics.empty()
                     ? Result<Calc>(unavailable(fmt::format(
                           "unable to get metric {}: no metrics returned from custom metrics API",
                           m.name)))
                     : calc_plain_metric_replicas(ctx, std::move(metrics), spec_replicas,
                                                  m.target_milli, false);
          if (!calc.is_ok()) inner = calc.status().message();
          name = "pods metric " + m.name;
        }
        if (!inner.empty()) {
          condition = unable_condition("FailedGetPodsMetric", inner);
          error = "failed to get pods metric value: " + inner;
        }
        break;
      }
      case MetricSourceType::kExternal: {
        std::string inner;   // the condition's error
        std::string middle;  // computeStatusForExternalMetric's error
        const bool has_total =
            i < input.external_milli.size() && input.external_milli[i].has_value();
        const int64_t total = has_total ? *input.external_milli[i] : 0;
        const std::string api_error = fmt::format(
            "unable to get external metric {}: no metrics returned from external metrics API",
            m.name);
        if (m.target_type == TargetType::kAverageValue || m.target_type == TargetType::kValue) {
          const bool average = m.target_type == TargetType::kAverageValue;
          if (m.target_milli <= 0) {
            inner = "invalid external metric source: the target must be positive";
            middle = inner;
          } else if (!has_total) {
            inner = api_error;
            middle = average ? fmt::format("failed to get {} external metric: {}", m.name, inner)
                             : fmt::format("failed to get external metric {}: {}", m.name, inner);
          } else if (average) {
            calc =
                get_external_per_pod_metric_replicas(ctx, status_replicas, m.target_milli, total);
          } else {
            calc = get_external_metric_replicas(ctx, spec_replicas, m.target_milli, total);
            if (!calc.is_ok()) {
              inner = calc.status().message();
              middle = fmt::format("failed to get external metric {}: {}", m.name, inner);
            }
          }
          // fmt's %+v of the (absent) nil *LabelSelector prints "nil".
          name = fmt::format("external metric {}(nil)", m.name);
        } else {
          inner =
              "invalid external metric source: neither a value target nor an average value "
              "target was set";
          middle = inner;
        }
        if (!inner.empty()) {
          condition = unable_condition("FailedGetExternalMetric", inner);
          error = fmt::format("failed to get {} external metric value: {}", m.name, middle);
        }
        break;
      }
    }
    if (error.empty() && !calc.is_ok()) error = calc.status().message();  // not reached
    if (!error.empty()) {
      outcome.error = error;
      if (invalid == 0) {
        first_error = error;
        first_condition = condition;
      }
      ++invalid;
      c.outcomes.push_back(std::move(outcome));
      continue;
    }
    outcome.replicas = calc->replicas;
    outcome.usage_ratio = calc->ratio;
    outcome.current = calc->current;
    c.outcomes.push_back(std::move(outcome));
    if (c.replicas == 0 || calc->replicas > c.replicas) {
      c.replicas = calc->replicas;
      c.metric = name;
    }
  }

  if (invalid > 0) {
    c.error = fmt::format("invalid metrics ({} invalid out of {}), first error is: {}", invalid,
                          spec_.metrics.size(), first_error);
  }
  if (invalid >= static_cast<int>(spec_.metrics.size()) ||
      (invalid > 0 && c.replicas < spec_replicas)) {
    scaling_active_ = first_condition;
    c.replicas = -1;
    c.metric.clear();
    return c;
  }
  scaling_active_ = {true, "ValidMetricFound",
                     "the HPA was able to successfully calculate a replica count from " + c.metric};
  return c;
}

// normalizeDesiredReplicas with stabilizeRecommendation (no behavior): the highest recommendation
// not older than the downscale stabilization window (one exactly at the window's edge counts),
// then convertDesiredReplicasWithRules.
int32_t HpaController::normalize_desired_replicas(int32_t current, int32_t prenormalized,
                                                  int32_t min_replicas, double now) {
  const double cutoff = now - config_.downscale_stabilization_s;
  // The source reuses one slot of an old sample (older than the cutoff) per sync and never reads
  // old samples again: dropping them all gives the same answers and keeps the list bounded.
  std::erase_if(recommendations_, [&](const Recommendation& r) { return r.at_s < cutoff; });
  int32_t stabilized = prenormalized;
  for (const Recommendation& r : recommendations_) stabilized = std::max(stabilized, r.replicas);
  recommendations_.push_back({now, prenormalized});

  if (stabilized != prenormalized) {
    able_to_scale_ = {true, "ScaleDownStabilized",
                      "recent recommendations were higher than current one, applying the highest "
                      "recent recommendation"};
  } else {
    able_to_scale_ = {true, "ReadyForNewScale", "recommended size matches current size"};
  }
  const Limited limited =
      convert_desired_replicas_with_rules(current, stabilized, min_replicas, spec_.max_replicas);
  scaling_limited_ = {limited.replicas != stabilized, limited.reason, limited.message};
  return limited.replicas;
}

// normalizeDesiredReplicasWithBehaviors: stabilizeRecommendationWithBehaviors, then
// convertDesiredReplicasWithBehaviorRate.
int32_t HpaController::normalize_desired_replicas_with_behaviors(int32_t current,
                                                                 int32_t prenormalized,
                                                                 int32_t min_replicas, double now) {
  const Behavior& behavior = *spec_.behavior;

  // stabilizeRecommendationWithBehaviors: the current count brought up to the lowest
  // recommendation of the scale-up window and down to the highest of the scale-down window.
  // Recommendations strictly after now - window count: one exactly at the edge does not.
  const double up_cutoff = now - behavior.scale_up.stabilization_window_seconds;
  const double down_cutoff = now - behavior.scale_down.stabilization_window_seconds;
  // Samples before both cutoffs are the source's reusable old ones, never read again.
  std::erase_if(recommendations_, [&](const Recommendation& r) {
    return r.at_s < up_cutoff && r.at_s < down_cutoff;
  });
  int32_t up_recommendation = prenormalized;
  int32_t down_recommendation = prenormalized;
  for (const Recommendation& r : recommendations_) {
    if (r.at_s > up_cutoff) up_recommendation = std::min(r.replicas, up_recommendation);
    if (r.at_s > down_cutoff) down_recommendation = std::max(r.replicas, down_recommendation);
  }
  int32_t stabilized = current;
  if (stabilized < up_recommendation) stabilized = up_recommendation;
  if (stabilized > down_recommendation) stabilized = down_recommendation;
  recommendations_.push_back({now, prenormalized});

  if (stabilized != prenormalized) {
    if (prenormalized >= current) {
      able_to_scale_ = {true, "ScaleUpStabilized",
                        "recent recommendations were lower than current one, applying the lowest "
                        "recent recommendation"};
    } else {
      able_to_scale_ = {true, "ScaleDownStabilized",
                        "recent recommendations were higher than current one, applying the "
                        "highest recent recommendation"};
    }
  } else {
    able_to_scale_ = {true, "ReadyForNewScale", "recommended size matches current size"};
  }

  // convertDesiredReplicasWithBehaviorRate.
  Limited limited{stabilized, kWithinRange, kWithinRangeMessage};
  if (stabilized > current) {
    int32_t limit = scale_up_limit_with_rules(current, scale_up_events_, scale_down_events_,
                                              behavior.scale_up, now);
    if (limit < current) limit = current;  // no further scale-up until the events age out
    Limited cap{spec_.max_replicas, "TooManyReplicas",
                "the desired replica count is more than the maximum replica count"};
    if (cap.replicas > limit) {
      cap = {limit, "ScaleUpLimit",
             "the desired replica count is increasing faster than the maximum scale rate"};
    }
    if (stabilized > cap.replicas) limited = cap;
  } else if (stabilized < current) {
    int32_t limit = scale_down_limit_with_rules(current, scale_up_events_, scale_down_events_,
                                                behavior.scale_down, now);
    if (limit > current) limit = current;
    Limited floor{min_replicas, "TooFewReplicas",
                  "the desired replica count is less than the minimum replica count"};
    if (floor.replicas < limit) {
      floor = {limit, "ScaleDownLimit",
               "the desired replica count is decreasing faster than the maximum scale rate"};
    }
    if (stabilized < floor.replicas) limited = floor;
  }
  scaling_limited_ = {limited.replicas != stabilized, limited.reason, limited.message};
  return limited.replicas;
}

// storeScaleEvent with markScaleEventsOutdated: only with a behavior. Events older than the
// direction's longest policy period are marked outdated; the last outdated one is overwritten,
// else the event is appended. (The list stays bounded: it grows only when every event is within
// the longest period.) Outdated events still count in getReplicasChangePerPeriod until reused,
// for the other direction's longer periods too, so they are kept as the source keeps them.
void HpaController::store_scale_event(int32_t prev, int32_t next, double now) {
  if (!spec_.behavior) return;
  const bool up = next > prev;
  std::deque<ScaleEvent>& events = up ? scale_up_events_ : scale_down_events_;
  const int32_t longest =
      longest_policy_period(up ? spec_.behavior->scale_up : spec_.behavior->scale_down);
  const double cutoff = now - longest;
  std::optional<size_t> old_index;
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].at_s < cutoff) events[i].outdated = true;
    if (events[i].outdated) old_index = i;
  }
  const ScaleEvent event{now, up ? next - prev : prev - next, false};
  if (old_index) {
    events[*old_index] = event;
  } else {
    events.push_back(event);
  }
}

// reconcileAutoscaler (from the scale subresource on; writes and status updates are the replay's).
Decision HpaController::sync(const SyncInput& input) {
  Decision d;
  const double now = input.now_s;
  const int32_t current = input.current_replicas;

  // recordInitialRecommendation.
  if (!recommendations_recorded_) {
    recommendations_.push_back({now, current});
    recommendations_recorded_ = true;
  }
  able_to_scale_ = {true, "SucceededGetScale",
                    "the HPA controller was able to get the target's current scale"};

  const int32_t min_replicas = spec_.min_replicas;
  int32_t desired = 0;
  std::string reason;
  bool rescale = true;
  bool limited_now = false;

  if (current == 0 && min_replicas != 0) {
    desired = 0;
    rescale = false;
    scaling_active_ = {false, "ScalingDisabled",
                       "scaling is disabled since the replica count of the target is zero"};
    reason = scaling_active_.message;
  } else if (current > spec_.max_replicas) {
    reason = "Current number of replicas above Spec.MaxReplicas";
    desired = spec_.max_replicas;
  } else if (current < min_replicas) {
    reason = "Current number of replicas below Spec.MinReplicas";
    desired = min_replicas;
  } else {
    Computed c = compute_replicas_for_metrics(input);
    d.metrics = std::move(c.outcomes);
    d.metric_desired = c.replicas;
    d.metric = c.metric;
    if (c.replicas == -1) {
      // The source returns here: no stabilization, no write, no scale event.
      d.error = c.error.empty() ? "no valid metric" : c.error;
      d.desired = current;
      d.reason = "FailedComputeMetricsReplicas";
      d.able_to_scale = able_to_scale_;
      d.scaling_active = scaling_active_;
      d.scaling_limited = scaling_limited_;
      return d;
    }
    std::string rescale_metric;
    if (c.replicas > desired) {
      desired = c.replicas;
      rescale_metric = c.metric;
    }
    if (desired > current) reason = rescale_metric + " above target";
    if (desired < current) reason = "All metrics below target";
    desired = spec_.behavior
                  ? normalize_desired_replicas_with_behaviors(current, desired, min_replicas, now)
                  : normalize_desired_replicas(current, desired, min_replicas, now);
    limited_now = scaling_limited_.status;
    rescale = desired != current;
  }

  if (rescale) {
    able_to_scale_ = {
        true, "SucceededRescale",
        fmt::format("the HPA controller was able to update the target scale to {}", desired)};
    store_scale_event(current, desired, now);
  } else {
    desired = current;
  }

  d.desired = desired;
  d.reason = reason;
  if (limited_now) {
    d.reason += (d.reason.empty() ? "" : "; ") + std::string("limited: ") + scaling_limited_.reason;
  }
  d.able_to_scale = able_to_scale_;
  d.scaling_active = scaling_active_;
  d.scaling_limited = scaling_limited_;
  return d;
}

}  // namespace tideserve::plan
