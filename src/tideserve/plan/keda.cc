// KEDA v2.15 (v2.15.1) replayed for one ScaledObject. Sources, by rule:
//   controllers/keda/hpa.go          newHPAForScaledObject, getScaledObjectMetricSpecs, getHPAName
//   apis/keda/v1alpha1/scaledobject_types.go   GetHPAMinReplicas, GetHPAMaxReplicas,
//                                    CheckReplicaCountBoundsAreValid
//   apis/keda/v1alpha1/scaledobject_webhook.go verifyCPUMemoryScalers (cpu/memory-only + min 0)
//   pkg/scaling/scale_handler.go     getScaledObjectState, getScalerState (activity, errors),
//                                    GetScaledObjectMetrics (what the HPA is served)
//   pkg/scaling/executor/scale_scaledobjects.go  RequestScale, scaleToZeroOrIdle,
//                                    scaleFromZeroOrIdle, getIdleOrMinimumReplicaCount
//   pkg/scalers/scaler.go            GetMetricTargetType, GetMetricTarget(Mili),
//                                    GenerateMetricInMili, GenerateMetricNameWithIndex
//   pkg/scalers/cpu_memory_scaler.go, cron_scaler.go, prometheus_scaler.go,
//   redis_streams_scaler.go          per-scaler targets, names and activation
// Not replayed: fallback (spec.fallback), scalingModifiers, the paused-replicas annotation,
// ScaledJobs, and the trigger metric cache (useCachedMetrics).
#include "tideserve/plan/keda.h"

#include <fmt/format.h>

#include <cmath>
#include <set>

namespace tideserve::plan {

namespace {

// Go's zero time.Time{}.Unix(): what a cron schedule that never fires reports as its next time.
constexpr int64_t kGoZeroTimeUnix = -62135596800;

bool is_resource(const Trigger& t) {
  return t.type == "cpu" || t.type == "memory";
}

// kedautil.NormalizeString.
std::string normalize(std::string s) {
  for (char& c : s) {
    if (c == '/' || c == '.' || c == ':' || c == '%' || c == '(' || c == ')') c = '-';
  }
  return s;
}

// cron_scaler.go parseCronTimeFormat: spaces dropped, * -> x, / -> Sl, ? -> Qm.
std::string cron_name_part(const std::string& spec) {
  std::string out;
  for (char c : spec) {
    if (c == ' ') continue;
    if (c == '*') {
      out += 'x';
    } else if (c == '/') {
      out += "Sl";
    } else if (c == '?') {
      out += "Qm";
    } else {
      out += c;
    }
  }
  return out;
}

// The External metric's name: GenerateMetricNameWithIndex(index, <scaler's name>).
std::string external_metric_name(size_t index, const Trigger& t) {
  std::string base;
  if (t.type == "cron") {
    base = fmt::format("cron-{}-{}-{}", t.timezone, cron_name_part(t.start), cron_name_part(t.end));
  } else if (t.type == "redis-streams") {
    const std::string* stream = t.find_metadata("stream");
    base = "redis-streams-" + (stream ? *stream : std::string());
  } else {
    // prometheus is exactly "prometheus"; other scalers add their own details after the type,
    // which the replay does not need (names only have to be distinct and stable).
    base = t.type;
  }
  return fmt::format("s{}-{}", index, normalize(base));
}

// int64(value * 1000): how GenerateMetricInMili and GetMetricTargetMili make milli-quantities
// (truncation toward zero, not Quantity's rounding up).
int64_t go_milli(double value) {
  return static_cast<int64_t>(value * 1000);
}

// resource.MustParse(value).MilliValue() for a decimal the manifest reader turned into a double:
// rounds up, but a value that is a whole number of milli-units up to float noise stays put.
int64_t quantity_milli_ceil(double value) {
  const double v = value * 1000;
  const double r = std::round(v);
  if (std::fabs(v - r) <= 1e-9 * std::max(1.0, std::fabs(v))) return static_cast<int64_t>(r);
  return static_cast<int64_t>(std::ceil(v));
}

// The cron scaler's GetMetricsAndActivity once its schedules are parsed: both next times come
// from a fresh cron.Cron started now (Entries()[0].Next = Schedule.Next(now), strictly after
// now); currentTime is time.Now().Unix().
//   next start < next end and now < next start  -> outside the window: value 1, inactive
//   now <= next end                              -> inside: desiredReplicas, active
//   otherwise (only if end never fires: Go zero) -> value 1, inactive
// So the window is [start, end): at the start minute itself the next start is already the
// following one (later than the next end), at the end minute the next end is tomorrow's.
// A schedule whose search never ends in robfig (a zone skipping a whole day) would hang the
// scaler; the replay reports the trigger as failing instead.
Result<TriggerValue> cron_window_value(const CronSchedule& start, const CronSchedule& end,
                                       const TimeZone& zone, int32_t desired, double now_s) {
  constexpr double kDefaultDesiredReplicas = 1;
  const auto now = static_cast<int64_t>(std::floor(now_s));
  bool start_stuck = false, end_stuck = false;
  const int64_t next_start = start.next(now, zone, &start_stuck).value_or(kGoZeroTimeUnix);
  const int64_t next_end = end.next(now, zone, &end_stuck).value_or(kGoZeroTimeUnix);
  if (start_stuck || end_stuck) {
    return unavailable(fmt::format("cron trigger: the next time of '{}' in {} cannot be found",
                                   start_stuck ? start.spec() : end.spec(), zone.name()));
  }
  if (next_start < next_end && now < next_start)
    return TriggerValue{kDefaultDesiredReplicas, false};
  if (now <= next_end) return TriggerValue{static_cast<double>(desired), true};
  return TriggerValue{kDefaultDesiredReplicas, false};
}

struct ParsedCron {
  CronSchedule start, end;
  TimeZone zone;
};

// parseCronMetadata plus the time.LoadLocation that KEDA does at every poll (done once here:
// KEDA would accept an unknown zone and fail the trigger at each poll; the replay rejects it).
Result<ParsedCron> parse_cron(const Trigger& t) {
  if (t.timezone.empty()) return invalid_argument("cron trigger: no timezone specified");
  if (t.start.empty()) return invalid_argument("cron trigger: no start schedule specified");
  if (t.end.empty()) return invalid_argument("cron trigger: no end schedule specified");
  Result<CronSchedule> start = CronSchedule::parse(t.start);
  if (!start.is_ok()) {
    return invalid_argument("cron trigger: error parsing start schedule: " +
                            start.status().message());
  }
  Result<CronSchedule> end = CronSchedule::parse(t.end);
  if (!end.is_ok()) {
    return invalid_argument("cron trigger: error parsing end schedule: " + end.status().message());
  }
  if (t.start == t.end) {
    return invalid_argument("cron trigger: start and end can not have exactly same time input");
  }
  Result<TimeZone> zone = TimeZone::load(t.timezone);
  if (!zone.is_ok()) {
    return Status(zone.status().code(),
                  "cron trigger: unable to load timezone: " + zone.status().message());
  }
  return ParsedCron{std::move(*start), std::move(*end), std::move(*zone)};
}

}  // namespace

HpaSpec keda_hpa_spec(const ScaledObjectSpec& spec) {
  HpaSpec hpa;
  hpa.name = spec.hpa_name.empty() ? "keda-hpa-" + spec.name : spec.hpa_name;
  hpa.target_kind = spec.target_kind.empty() ? "Deployment" : spec.target_kind;
  hpa.target_name = spec.target_name;
  // GetHPAMinReplicas: minReplicaCount when above 0, else 1 (an HPA cannot have 0; going to
  // zero is the operator's job). GetHPAMaxReplicas: maxReplicaCount (default 100).
  hpa.min_replicas = spec.min_replica_count > 0 ? spec.min_replica_count : 1;
  hpa.max_replicas = spec.max_replica_count;
  // advanced.horizontalPodAutoscalerConfig.behavior is copied as is (absent: none).
  hpa.behavior = spec.behavior;
  // One metric per trigger, in trigger order. KEDA sorts the list by source type ("External"
  // before "Resource", sort.Slice so not stable); the HPA takes the max over all metrics, so
  // only which metric is named on a tie could differ. The index alignment is the contract here.
  for (size_t i = 0; i < spec.triggers.size(); ++i) {
    const Trigger& t = spec.triggers[i];
    MetricSpec m;
    if (is_resource(t)) {
      m.type = MetricSourceType::kResource;
      m.name = t.type;
      m.target_type = t.metric_type;
      if (t.metric_type == TargetType::kUtilization) {
        m.target_utilization = static_cast<int32_t>(t.target);
      } else {
        m.target_milli = quantity_milli_ceil(t.target);
      }
    } else {
      m.type = MetricSourceType::kExternal;
      m.name = external_metric_name(i, t);
      m.target_type = t.metric_type;
      // The cron scaler advertises GetMetricTarget(metricType, 1); the others their target,
      // integral ones through GetMetricTarget, decimal ones through GetMetricTargetMili.
      m.target_milli = t.type == "cron" ? 1000 : go_milli(t.target);
    }
    hpa.metrics.push_back(std::move(m));
  }
  return hpa;
}

Result<TriggerValue> cron_trigger_value(const Trigger& trigger, double now_s) {
  Result<ParsedCron> cron = parse_cron(trigger);
  if (!cron.is_ok()) return cron.status();
  return cron_window_value(cron->start, cron->end, cron->zone, trigger.desired_replicas, now_s);
}

Result<KedaOperator> KedaOperator::create(ScaledObjectSpec spec) {
  const auto bad = [&spec](const std::string& why) {
    return invalid_argument(fmt::format("ScaledObject {}: {}", spec.name, why));
  };
  if (spec.triggers.empty()) return bad("no triggers defined");
  // CheckReplicaCountBoundsAreValid (minReplicaCount counted as GetHPAMinReplicas, at least 1).
  const int32_t min = spec.min_replica_count > 0 ? spec.min_replica_count : 1;
  if (spec.min_replica_count < 0 || spec.max_replica_count < 0) {
    return bad("replica counts must not be negative");
  }
  if (min > spec.max_replica_count) {
    return bad(fmt::format("MinReplicaCount={} must be less than MaxReplicaCount={}", min,
                           spec.max_replica_count));
  }
  if (spec.idle_replica_count && *spec.idle_replica_count >= min) {
    return bad(fmt::format("IdleReplicaCount={} must be less than MinReplicaCount={}",
                           *spec.idle_replica_count, min));
  }
  if (spec.cooldown_period_s < 0 || spec.polling_interval_s <= 0) {
    return bad("pollingInterval must be positive and cooldownPeriod not negative");
  }
  size_t resource_triggers = 0;
  std::set<std::string> names;
  std::vector<std::optional<CronWindow>> crons(spec.triggers.size());
  for (size_t i = 0; i < spec.triggers.size(); ++i) {
    const Trigger& t = spec.triggers[i];
    if (is_resource(t)) {
      ++resource_triggers;
      // cpu_memory_scaler.go parseResourceMetadata: Utilization (an integer) or AverageValue.
      if (t.metric_type == TargetType::kValue) {
        return bad(
            fmt::format("{} trigger: unsupported metric type, allowed values are "
                        "'Utilization' or 'AverageValue'",
                        t.type));
      }
      if (t.metric_type == TargetType::kUtilization && t.target != std::floor(t.target)) {
        return bad(fmt::format("{} trigger: utilization {} is not an integer", t.type, t.target));
      }
      continue;
    }
    // GetMetricTargetType: Utilization is for cpu/memory only.
    if (t.metric_type == TargetType::kUtilization) {
      return bad(
          fmt::format("{} trigger: 'Utilization' metric type is unsupported for external "
                      "metrics, allowed values are 'Value' or 'AverageValue'",
                      t.type));
    }
    if (!names.insert(external_metric_name(i, t)).second) {
      return bad(fmt::format("metricName {} defined multiple times", external_metric_name(i, t)));
    }
    if (t.type == "cron") {
      Result<ParsedCron> cron = parse_cron(t);
      if (!cron.is_ok()) return bad(cron.status().message());
      crons[i] = CronWindow{std::move(cron->start), std::move(cron->end), std::move(cron->zone)};
    }
  }
  // verifyCPUMemoryScalers: with only cpu/memory triggers nothing could ever activate from zero.
  if (resource_triggers == spec.triggers.size() && spec.min_replica_count == 0) {
    return bad(
        "scaledobject has only cpu/memory triggers AND minReplica is 0 (scale to zero "
        "doesn't work in this case)");
  }
  return KedaOperator(std::move(spec), std::move(crons));
}

std::optional<int32_t> KedaOperator::poll(double now_s, int32_t current_replicas,
                                          const std::vector<std::optional<double>>& values) {
  // getScaledObjectState: active if any External trigger is active (cpu/memory triggers have no
  // External metric and are skipped); an error if any of them failed. Activation is strict:
  // value > activation target (prometheus, redis-streams, ...); cron decides by its window.
  bool active = false;
  bool error = false;
  size_t resource_triggers = 0;
  for (size_t i = 0; i < spec_.triggers.size(); ++i) {
    const Trigger& t = spec_.triggers[i];
    if (is_resource(t)) {
      ++resource_triggers;
      continue;
    }
    if (crons_[i]) {
      const CronWindow& c = *crons_[i];
      Result<TriggerValue> v = cron_window_value(c.start, c.end, c.zone, t.desired_replicas, now_s);
      if (v.is_ok()) {
        active |= v->active;
      } else {
        error = true;
      }
      continue;
    }
    if (i >= values.size() || !values[i]) {
      error = true;
      continue;
    }
    active |= *values[i] > t.activation_target;
  }
  // Only cpu/memory triggers (and no error): always active, KEDA never scales to zero then.
  if (resource_triggers == spec_.triggers.size() && !error) active = true;

  // RequestScale. lastActiveTime is a metav1.Time: whole seconds once written and read back.
  const int32_t min = spec_.min_replica_count;
  const std::optional<int32_t>& idle = spec_.idle_replica_count;
  const auto mark_active = [this, now_s] { last_active_s_ = std::floor(now_s); };
  if (active) {
    if ((idle && current_replicas < min) || current_replicas == 0) {
      // scaleFromZeroOrIdle: to minReplicaCount, or 1 when that is 0; marks the time active.
      mark_active();
      return min > 0 ? min : 1;
    }
    // Active with some trigger failing: only the Ready condition changes; lastActiveTime is
    // NOT refreshed (so a partial error can let the cooldown run out).
    if (!error) mark_active();
    return std::nullopt;
  }
  // Not active. With a scaler error and no fallback KEDA only sets Ready=False and leaves the
  // replicas alone (fallback.replicas is not replayed).
  if (error) return std::nullopt;
  if ((idle && current_replicas > *idle) || (current_replicas > 0 && min == 0)) {
    // scaleToZeroOrIdle: only once cooldownPeriod has passed since lastActiveTime (strictly:
    // lastActiveTime + cooldown before now); never active: once creation + initialCooldownPeriod
    // has passed. Then to idleReplicaCount if set, else minReplicaCount (0 here).
    const bool cooled =
        last_active_s_
            ? *last_active_s_ + spec_.cooldown_period_s < now_s
            : !spec_.created_s || *spec_.created_s + spec_.initial_cooldown_period_s < now_s;
    if (!cooled) return std::nullopt;
    return idle ? *idle : min;
  }
  // Below minReplicaCount without idle mode: back up to minReplicaCount.
  if (current_replicas < min && !idle) return min;
  return std::nullopt;
}

std::vector<std::optional<int64_t>> KedaOperator::external_metrics(
    double now_s, const std::vector<std::optional<double>>& values) const {
  // GetScaledObjectMetrics: each External metric is fetched from its scaler when the HPA asks
  // (a fresh value at the HPA's sync, not the operator's last poll), as GenerateMetricInMili
  // makes it; a failing scaler makes that metric's request fail. cpu/memory: not External.
  std::vector<std::optional<int64_t>> out(spec_.triggers.size());
  for (size_t i = 0; i < spec_.triggers.size(); ++i) {
    const Trigger& t = spec_.triggers[i];
    if (is_resource(t)) continue;
    if (crons_[i]) {
      const CronWindow& c = *crons_[i];
      Result<TriggerValue> v = cron_window_value(c.start, c.end, c.zone, t.desired_replicas, now_s);
      if (v.is_ok()) out[i] = go_milli(v->value);
      continue;
    }
    if (i < values.size() && values[i]) out[i] = go_milli(*values[i]);
  }
  return out;
}

}  // namespace tideserve::plan
