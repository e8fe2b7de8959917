// The HorizontalPodAutoscaler controller, replayed: what kube-controller-manager's podautoscaler
// decides at each sync, given what the metrics APIs return. Follows Kubernetes v1.31
// (pkg/controller/podautoscaler: horizontal.go, replica_calculator.go) with the controller
// manager's default flags; every rule below names the function it comes from.
//
// Values are Kubernetes quantities in milli-units (Quantity.MilliValue()): CPU in millicores,
// memory in milli-bytes, custom and external metrics in thousandths of their unit.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace tideserve::plan {

enum class MetricSourceType { kResource, kPods, kExternal };
enum class TargetType { kUtilization, kAverageValue, kValue };

struct MetricSpec {
  MetricSourceType type = MetricSourceType::kResource;
  std::string name;  // Resource: "cpu" or "memory"; Pods/External: the metric's name
  TargetType target_type = TargetType::kUtilization;
  int32_t target_utilization = 0;  // percent of the pods' requests (Utilization)
  int64_t target_milli = 0;        // AverageValue or Value, milli-units
};

enum class PolicyType { kPods, kPercent };
struct ScalingPolicy {
  PolicyType type = PolicyType::kPods;
  int32_t value = 0;
  int32_t period_seconds = 15;
};
enum class SelectPolicy { kMax, kMin, kDisabled };
struct ScalingRules {
  int32_t stabilization_window_seconds = 0;
  SelectPolicy select_policy = SelectPolicy::kMax;
  std::vector<ScalingPolicy> policies;
};
// spec.behavior with the API server's defaults filled in (SetDefaults_HorizontalPodAutoscaler-
// Behavior): scale-up 0 s window, Max of 100 %/15 s and 4 pods/15 s; scale-down 300 s window,
// 100 %/15 s. A manifest that gives only one direction gets the other's defaults.
struct Behavior {
  ScalingRules scale_up;
  ScalingRules scale_down;
};
Behavior default_behavior();

struct HpaSpec {
  std::string name;
  std::string target_kind, target_name;  // spec.scaleTargetRef
  int32_t min_replicas = 1;
  int32_t max_replicas = 1;
  std::vector<MetricSpec> metrics;
  std::optional<Behavior> behavior;  // absent: the legacy path (normalizeDesiredReplicas)
};

// The controller manager's flags that change decisions (their defaults).
struct ControllerConfig {
  double sync_period_s = 15;               // --horizontal-pod-autoscaler-sync-period
  double tolerance = 0.1;                  // --horizontal-pod-autoscaler-tolerance
  double downscale_stabilization_s = 300;  // --horizontal-pod-autoscaler-downscale-stabilization
  double cpu_initialization_period_s =
      300;                                // --horizontal-pod-autoscaler-cpu-initialization-period
  double initial_readiness_delay_s = 30;  // --horizontal-pod-autoscaler-initial-readiness-delay
};

// One pod matching the target's selector, as the controller sees it at a sync.
struct PodView {
  bool ready = true;                 // the Ready condition is True
  bool pending = false;              // phase Pending (not yet running)
  bool failed = false;               // phase Failed: ignored
  bool deleting = false;             // has a deletionTimestamp: ignored
  double start_s = 0;                // status.startTime (seconds on the replay's clock)
  double ready_change_s = 0;         // the Ready condition's lastTransitionTime
  int64_t cpu_request_milli = 0;     // sum over containers
  int64_t memory_request_milli = 0;  // sum over containers (milli-bytes)
  // Per metric of HpaSpec::metrics (same index): what the metrics API returns for this pod
  // (Resource: usage; Pods: the value), absent when it returns nothing for it (a missing pod).
  // Ignored for External metrics.
  std::vector<std::optional<int64_t>> values;
  // The resource metrics API's Timestamp and Window for this pod's sample (metrics-server: the
  // scrape time and its --metric-resolution). Only groupPods' cpu readiness rule reads them;
  // absent timestamp: the sync's now_s.
  std::optional<double> metric_timestamp_s;
  double metric_window_s = 15;
};

struct SyncInput {
  double now_s = 0;
  int32_t current_replicas = 0;  // scale.spec.replicas
  std::vector<PodView> pods;
  // Per metric (same index): the External metric's value summed over the series the API
  // returns; absent when the API fails. Ignored for other metric types.
  std::vector<std::optional<int64_t>> external_milli;
  // scale.status.replicas (External AverageValue divides by it); absent: the pods that are
  // neither failed nor deleting (a ReplicaSet's active pods), or current_replicas if `pods` is
  // empty.
  std::optional<int32_t> status_replicas;
};

struct MetricOutcome {
  std::optional<int32_t> replicas;  // absent: the metric could not be computed
  double usage_ratio = 0;           // current / target, as the controller computed it
  int64_t current = 0;  // utilization percent, or milli-value (average or total, as targeted)
  std::string error;    // why it is absent
};

// One of the HPA's status conditions (AbleToScale, ScalingActive, ScalingLimited). They persist
// across syncs as on the HPA object: a sync sets only the ones the controller sets on its path.
struct HpaCondition {
  bool status = false;  // True / False; meaningless while reason is empty (never set)
  std::string reason;   // e.g. "ScaleUpLimit", "ValidMetricFound", "ScaleDownStabilized"
  std::string message;
};

struct Decision {
  int32_t desired = 0;         // what the controller writes to scale.spec.replicas
  int32_t metric_desired = 0;  // the max over metrics before stabilization, limits and bounds
  std::string metric;          // the metric that decided (empty: none)
  std::string reason;          // e.g. "cpu resource utilization above target", "limited by ..."
  // Per metric; empty when the metrics were not computed.
  std::vector<MetricOutcome> metrics;
  // Non-empty when computeReplicasForMetrics gave up (all metrics invalid, or some invalid and
  // the valid ones would scale down): nothing is written, desired == current, metric_desired -1.
  std::string error;
  HpaCondition able_to_scale, scaling_active, scaling_limited;  // after this sync
};

// One HPA object's controller. sync() is called every sync period with the time; it keeps the
// controller's memory (recommendations for stabilization, scale events for rate policies).
class HpaController {
 public:
  explicit HpaController(HpaSpec spec, ControllerConfig config = {});

  Decision sync(const SyncInput& input);

  const HpaSpec& spec() const { return spec_; }
  // What a CronJob that patches spec.minReplicas does (a time-of-day floor): the next sync
  // reads the new bound; the controller's memory is kept.
  void set_min_replicas(int32_t n) { spec_.min_replicas = n; }
  const ControllerConfig& config() const { return config_; }

 private:
  struct Recommendation {
    double at_s;
    int32_t replicas;
  };
  struct ScaleEvent {
    double at_s;
    int32_t change;  // pods added (up) or removed (down)
    bool outdated;   // markScaleEventsOutdated: free for storeScaleEvent to reuse
  };
  struct Computed;  // computeReplicasForMetrics' result

  Computed compute_replicas_for_metrics(const SyncInput& input);
  int32_t normalize_desired_replicas(int32_t current, int32_t prenormalized, int32_t min_replicas,
                                     double now);
  int32_t normalize_desired_replicas_with_behaviors(int32_t current, int32_t prenormalized,
                                                    int32_t min_replicas, double now);
  void store_scale_event(int32_t prev, int32_t next, double now);

  HpaSpec spec_;
  ControllerConfig config_;
  std::deque<Recommendation> recommendations_;
  std::deque<ScaleEvent> scale_up_events_, scale_down_events_;
  bool recommendations_recorded_ = false;  // recordInitialRecommendation ran
  HpaCondition able_to_scale_, scaling_active_, scaling_limited_;
};

}  // namespace tideserve::plan
