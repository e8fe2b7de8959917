// The replay: traffic against replicas (the capacity model) scaled by the HPA or KEDA replayed
// (hpa.h, keda.h), one time step (1 s) at a time.
//
//   traffic -> split evenly over the ready pods -> each pod's fluid queue and latency histogram
//           -> counters (requests, CPU seconds, latency buckets) scraped like Prometheus and
//              metrics-server scrape them -> the values the controller sees, with the
//              pipeline's lag -> HPA sync (every sync period) / KEDA poll -> pods created
//              (pending, starting, ready after the start-up time) or deleted
//
// What users would see is measured on every request (the fine histograms); what the controller
// sees is what the pipeline gives it (tideserve's coarse buckets, histogram_quantile's linear
// interpolation, rate windows, scrape intervals).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tideserve/plan/capacity.h"
#include "tideserve/plan/hpa.h"
#include "tideserve/plan/keda.h"
#include "tideserve/plan/manifest.h"
#include "tideserve/plan/traffic.h"
#include "tideserve/util/status.h"

namespace tideserve::plan {

// What a metric the controller reads stands for, per pod, and how a total is formed from the pods.
enum class SignalKind { kCpu, kMemory, kP99, kP50, kRps, kInflight };
enum class Aggregate { kSum, kAverage, kMax };
struct Signal {
  SignalKind kind = SignalKind::kP99;
  Aggregate aggregate = Aggregate::kSum;  // External metrics and KEDA triggers only
};
// "p99", "p99:sum", "rps:avg", ... (latencies in seconds, as tideserve's histograms have them).
Result<Signal> parse_signal(const std::string& text);

// How stale and smoothed the controller's view is.
struct Pipeline {
  double resource_scrape_s = 15;    // metrics-server's --metric-resolution (CPU over the interval)
  double prometheus_scrape_s = 15;  // the ServiceMonitor's interval
  double rate_window_s = 60;        // the recording rules' rate()/histogram window
  double adapter_lag_s = 15;        // prometheus-adapter / KEDA metrics server: value age
};

struct PodTiming {
  double scheduling_s = 10;      // created -> container started (scheduling, image pull)
  double startup_s = 30;         // started -> ready (model load, warm-up, startup probe)
  double startup_cpu_cores = 1;  // what a starting pod burns (the model load) on the CPU metric
};

// A replica floor by time of day: a cron trigger raises it under KEDA; beside a plain HPA it is
// a CronJob that patches minReplicas at `start` and back at `end` (both "minutes after local
// midnight" in `timezone`; a window may cross midnight).
struct Floor {
  int32_t replicas = 0;
  int start_minute = 0, end_minute = 0;
  std::string timezone = "UTC";
};

struct Scaling {
  std::optional<HpaSpec> hpa;            // an HPA, or
  std::optional<ScaledObjectSpec> keda;  // a ScaledObject (and the HPA it makes)
  int64_t cpu_request_milli = 0;         // per pod (Utilization targets)
  int64_t memory_request_milli = 0;
  // Per metric of the HPA (or trigger of the ScaledObject), what it stands for: by metric name,
  // trigger name or trigger type; without one, the names tideserve's own manifests use.
  std::vector<std::pair<std::string, Signal>> signals;
  int32_t fixed_replicas = 0;  // neither: this many replicas, all ready from the start
  std::optional<Floor> floor;  // HPA only (a ScaledObject has cron triggers)
};

struct SimOptions {
  double dt_s = 1;
  double window_s = 60;           // reporting window
  double start_epoch_s = 0;       // Unix time at t = 0 (cron triggers)
  int32_t initial_replicas = -1;  // -1: minReplicas (ready when the warm-up starts)
  double warmup_s = 0;            // the first rate replayed before t = 0, not reported
  double slo_p99_ms = 500;
  ControllerConfig controller;
  Pipeline pipeline;
  PodTiming pods;
  ReplicaLimits limits;
  double sync_offset_s = 0;  // the first HPA sync's time
};

struct Window {
  double t_s = 0;  // start
  double offered_rps = 0;
  double requests = 0, rejected = 0;
  double p50_ms = 0, p99_ms = 0;  // over the accepted requests in the window (0: none)
  int32_t pods = 0, ready = 0;    // at the window's end
  bool violated = false;          // p99 over the SLO or more than 1 % refused
};

struct SyncRecord {
  double t_s = 0;
  int32_t current = 0, desired = 0;
  std::string reason;
  std::vector<std::optional<int64_t>> values;  // what each metric was seen as (milli)
};

struct SimResult {
  std::vector<Window> windows;
  std::vector<SyncRecord> syncs;  // every sync (and KEDA poll) that changed or decided
  double requests = 0, rejected = 0;
  double p50_ms = 0, p99_ms = 0;  // over the whole run
  double replica_hours = 0;       // pods in existence (starting ones cost too)
  double violation_minutes = 0;
  int32_t max_pods = 0;
};

// The most pods a replay holds (maxReplicas above it is refused).
inline constexpr int32_t kMaxPods = 10000;

Result<SimResult> simulate(const ReplicaModel& model, const std::vector<RatePoint>& traffic,
                           double duration_s, const Scaling& scaling, const SimOptions& options);

}  // namespace tideserve::plan
