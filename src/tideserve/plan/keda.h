// KEDA's ScaledObject, replayed: the HPA it creates (one External metric per trigger, Resource
// metrics for cpu/memory triggers) and its operator's own loop (activation from zero,
// cooldownPeriod back to zero, pollingInterval), with the cron scaler's window semantics in its
// time zone. Follows KEDA v2.15 (pkg/scaling, pkg/scalers, controllers/keda); every rule names
// the function it comes from.
//
// The replay's clock is Unix time in seconds (the cron trigger needs the time of day).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tideserve/plan/cron.h"
#include "tideserve/plan/hpa.h"
#include "tideserve/util/status.h"

namespace tideserve::plan {

struct Trigger {
  std::string type;  // "cpu", "memory", "cron", "prometheus", "redis-streams", ...
  std::string name;  // trigger.name (may be empty)
  // metricType: AverageValue (KEDA's default), Value, or Utilization (cpu/memory only).
  TargetType metric_type = TargetType::kAverageValue;
  double target = 0;             // the scaler's target: "value", "threshold", "lagCount", ...
  double activation_target = 0;  // "activationThreshold", "activationLagCount", ... (0 if absent)
  // cron: timezone (IANA name), start and end (5-field cron), desiredReplicas.
  std::string timezone, start, end;
  int32_t desired_replicas = 0;
  std::vector<std::pair<std::string, std::string>> metadata;  // as written

  // The metadata value written under `key`, or null when there is none.
  const std::string* find_metadata(std::string_view key) const {
    for (const auto& [k, v] : metadata) {
      if (k == key) return &v;
    }
    return nullptr;
  }
};

struct ScaledObjectSpec {
  std::string name;
  std::string target_kind, target_name;  // spec.scaleTargetRef (kind defaults to Deployment)
  int32_t min_replica_count = 0;         // KEDA's defaults
  int32_t max_replica_count = 100;
  std::optional<int32_t> idle_replica_count;
  int32_t polling_interval_s = 30;
  int32_t cooldown_period_s = 300;
  int32_t initial_cooldown_period_s = 0;  // spec.initialCooldownPeriod
  // metadata.creationTimestamp on the replay's clock; absent: long before the replay starts
  // (only matters with initialCooldownPeriod, before any trigger was ever active).
  std::optional<double> created_s;
  std::string hpa_name;  // advanced.horizontalPodAutoscalerConfig.name (empty: keda-hpa-<name>)
  std::optional<Behavior> behavior;  // advanced.horizontalPodAutoscalerConfig.behavior
  std::vector<Trigger> triggers;
};

// The HPA that KEDA creates and keeps (keda-hpa-<name>): metrics[i] is triggers[i]'s.
HpaSpec keda_hpa_spec(const ScaledObjectSpec& spec);

// The value of a cron trigger's External metric at `now` (Unix seconds): desiredReplicas inside
// the window, else the scaler's value outside it; and whether it is active.
struct TriggerValue {
  double value = 0;
  bool active = false;
};
Result<TriggerValue> cron_trigger_value(const Trigger& trigger, double now_s);

// The operator's loop for one ScaledObject. Every polling interval it asks each trigger whether
// it is active and scales between zero and the HPA's range; between zero and one replica only:
// above that the HPA decides.
class KedaOperator {
 public:
  static Result<KedaOperator> create(ScaledObjectSpec spec);

  // One poll at `now_s` with the target's current replica count. `values[i]` is trigger i's
  // metric value (ignored for cron, computed here; absent: the scaler failed). Returns the
  // replica count the operator sets, or nothing when it leaves the target to the HPA.
  std::optional<int32_t> poll(double now_s, int32_t current_replicas,
                              const std::vector<std::optional<double>>& values);

  // The External metric values the HPA sees for the triggers at `now_s` (same index; cron
  // computed here, the others passed through), in milli-units.
  std::vector<std::optional<int64_t>> external_metrics(
      double now_s, const std::vector<std::optional<double>>& values) const;

  const ScaledObjectSpec& spec() const { return spec_; }

 private:
  struct CronWindow {
    CronSchedule start, end;
    TimeZone zone;
  };
  KedaOperator(ScaledObjectSpec spec, std::vector<std::optional<CronWindow>> crons)
      : spec_(std::move(spec)), crons_(std::move(crons)) {}
  ScaledObjectSpec spec_;
  std::vector<std::optional<CronWindow>> crons_;  // per trigger: the parsed cron window
  std::optional<double> last_active_s_;           // status.lastActiveTime (whole seconds)
};

}  // namespace tideserve::plan
