#include "tideserve/plan/simulator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>

#include <fmt/format.h>

#include "tideserve/plan/cron.h"

namespace tideserve::plan {

namespace {

// tideserve's request-latency buckets (server/metrics.cc latency_buckets(), seconds): what
// histogram_quantile sees of a replica.
constexpr double kBuckets[] = {0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
                               0.05,   0.075, 0.1,   0.15,  0.2,   0.3,    0.5,  0.75,  1.0,  1.5,
                               2.0,    3.0,   5.0,   7.5,   10.0,  15.0,   20.0, 30.0};
constexpr int kCoarse = static_cast<int>(std::size(kBuckets)) + 1;  // + the +Inf bucket
using Coarse = std::array<double, kCoarse>;

// histogram_quantile(q, ...) over bucket increments: linear within the bucket, the lowest
// bucket from 0, the +Inf bucket answered with the highest finite bound. Seconds; nullopt when
// the window saw no requests (NaN in Prometheus: the adapter drops the series).
std::optional<double> histogram_quantile(double q, const Coarse& counts) {
  double total = 0;
  for (double c : counts) total += c;
  if (total <= 0) return std::nullopt;
  const double rank = q * total;
  double seen = 0;
  for (int b = 0; b < kCoarse; ++b) {
    if (seen + counts[b] >= rank && counts[b] > 0) {
      if (b == kCoarse - 1) return kBuckets[kCoarse - 2];
      const double lower = b == 0 ? 0 : kBuckets[b - 1];
      return lower + (kBuckets[b] - lower) * (rank - seen) / counts[b];
    }
    seen += counts[b];
  }
  return kBuckets[kCoarse - 2];
}

struct Snapshot {
  double t_s = 0;
  double requests = 0;
  Coarse buckets{};
  double inflight = 0;
};

struct Pod {
  double created_s = 0, start_s = 0, ready_s = 0;
  double queue = 0;
  double inflight = 0;
  // Counters since the pod started.
  double requests = 0, cpu_seconds = 0;
  Coarse buckets{};
  std::deque<Snapshot> scrapes;  // Prometheus' samples of this pod
  // metrics-server: the CPU counter at its last two scrapes.
  std::optional<double> cpu_scraped_s, cpu_scraped_value;
  std::optional<int64_t> cpu_milli;  // the latest usage it reports
  bool memory_seen = false;

  bool started(double t) const { return t >= start_s; }
  bool ready(double t) const { return t >= ready_s; }
};

int64_t to_milli(double v) {
  return static_cast<int64_t>(std::floor(v * 1000));
}

// What tideserve's own manifests call their metrics.
std::optional<Signal> default_signal(const std::string& name, Aggregate aggregate) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("p99") || has("0.99")) return Signal{SignalKind::kP99, aggregate};
  if (has("p50") || has("0.5)")) return Signal{SignalKind::kP50, aggregate};
  if (has("inflight") || has("queue_depth")) return Signal{SignalKind::kInflight, aggregate};
  if (has("requests_total") || has("rps")) return Signal{SignalKind::kRps, aggregate};
  return std::nullopt;
}

// The aggregation a PromQL query starts with: sum(...), avg(...), max(...).
Aggregate query_aggregate(const std::string& query) {
  const auto start = query.find_first_not_of(" \t\n");
  if (start != std::string::npos) {
    if (query.compare(start, 4, "avg(") == 0 || query.compare(start, 4, "avg ") == 0) {
      return Aggregate::kAverage;
    }
    if (query.compare(start, 4, "max(") == 0 || query.compare(start, 4, "max ") == 0) {
      return Aggregate::kMax;
    }
  }
  return Aggregate::kSum;
}

std::optional<Signal> lookup(const Scaling& scaling, const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    if (n.empty()) continue;
    for (const auto& [key, signal] : scaling.signals) {
      if (key == n) return signal;
    }
  }
  return std::nullopt;
}

}  // namespace

Result<Signal> parse_signal(const std::string& text) {
  const auto colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  Signal s;
  if (kind == "cpu") {
    s.kind = SignalKind::kCpu;
  } else if (kind == "memory") {
    s.kind = SignalKind::kMemory;
  } else if (kind == "p99") {
    s.kind = SignalKind::kP99;
  } else if (kind == "p50") {
    s.kind = SignalKind::kP50;
  } else if (kind == "rps") {
    s.kind = SignalKind::kRps;
  } else if (kind == "inflight") {
    s.kind = SignalKind::kInflight;
  } else {
    return invalid_argument(fmt::format(
        "signal '{}': the kind is one of cpu, memory, p99, p50 (seconds), rps, inflight", text));
  }
  if (colon != std::string::npos) {
    const std::string agg = text.substr(colon + 1);
    if (agg == "sum") {
      s.aggregate = Aggregate::kSum;
    } else if (agg == "avg") {
      s.aggregate = Aggregate::kAverage;
    } else if (agg == "max") {
      s.aggregate = Aggregate::kMax;
    } else {
      return invalid_argument(
          fmt::format("signal '{}': the aggregation is one of sum, avg, max", text));
    }
  }
  return s;
}

Result<SimResult> simulate(const ReplicaModel& model, const std::vector<RatePoint>& traffic,
                           double duration_s, const Scaling& scaling, const SimOptions& options) {
  const double dt = options.dt_s;
  if (dt <= 0 || duration_s <= 0) return invalid_argument("duration and step must be positive");
  if (options.window_s < dt) return invalid_argument("the window must be at least one step");

  // The controllers and what each metric stands for.
  std::optional<HpaController> hpa;
  std::optional<KedaOperator> keda;
  std::vector<std::optional<Signal>> signals;  // per HPA metric; nullopt: cron (KEDA computes)
  int32_t min_replicas = scaling.fixed_replicas;
  if (scaling.keda) {
    auto op = KedaOperator::create(*scaling.keda);
    if (!op.is_ok()) return op.status();
    keda = std::move(op).value();
    HpaSpec spec = keda_hpa_spec(*scaling.keda);
    for (size_t i = 0; i < scaling.keda->triggers.size(); ++i) {
      const Trigger& t = scaling.keda->triggers[i];
      if (t.type == "cron") {
        signals.push_back(std::nullopt);
        continue;
      }
      if (t.type == "cpu" || t.type == "memory") {
        signals.push_back(Signal{t.type == "cpu" ? SignalKind::kCpu : SignalKind::kMemory});
        continue;
      }
      const std::string* query = t.find_metadata("query");
      std::optional<Signal> s = lookup(scaling, {t.name, t.type, fmt::format("{}", i)});
      if (!s && query) s = default_signal(*query, query_aggregate(*query));
      if (!s) {
        return invalid_argument(fmt::format(
            "ScaledObject {}: trigger {} ({}) stands for what? pass --signal {}=KIND[:AGG]",
            scaling.keda->name, i, t.type, t.name.empty() ? t.type : t.name));
      }
      signals.push_back(s);
    }
    min_replicas = scaling.keda->min_replica_count;
    hpa.emplace(std::move(spec), options.controller);
  } else if (scaling.hpa) {
    for (const MetricSpec& m : scaling.hpa->metrics) {
      if (m.type == MetricSourceType::kResource) {
        if (m.name != "cpu" && m.name != "memory") {
          return invalid_argument(fmt::format("HPA {}: resource '{}' is not modelled (cpu, memory)",
                                              scaling.hpa->name, m.name));
        }
        signals.push_back(Signal{m.name == "cpu" ? SignalKind::kCpu : SignalKind::kMemory});
        continue;
      }
      std::optional<Signal> s = lookup(scaling, {m.name});
      if (!s) s = default_signal(m.name, Aggregate::kSum);
      if (!s) {
        return invalid_argument(
            fmt::format("HPA {}: metric '{}' stands for what? pass --signal {}=KIND[:AGG]",
                        scaling.hpa->name, m.name, m.name));
      }
      signals.push_back(s);
    }
    min_replicas = scaling.hpa->min_replicas;
    hpa.emplace(*scaling.hpa, options.controller);
  } else if (scaling.fixed_replicas <= 0) {
    return invalid_argument("nothing scales the replicas: give an HPA, a ScaledObject or a count");
  }
  const int32_t most = scaling.keda  ? scaling.keda->max_replica_count
                       : scaling.hpa ? scaling.hpa->max_replicas
                                     : scaling.fixed_replicas;
  if (most > kMaxPods || min_replicas > kMaxPods || options.initial_replicas > kMaxPods) {
    return invalid_argument(fmt::format("the replay models at most {} pods", kMaxPods));
  }
  for (size_t i = 0; i < signals.size(); ++i) {
    if (!signals[i]) continue;
    const SignalKind k = signals[i]->kind;
    if (k == SignalKind::kCpu && scaling.cpu_request_milli <= 0) {
      bool utilization = hpa && i < hpa->spec().metrics.size() &&
                         hpa->spec().metrics[i].target_type == TargetType::kUtilization;
      if (utilization) {
        return invalid_argument("a CPU Utilization target needs the pods' CPU request");
      }
    }
    if (k == SignalKind::kCpu && !model.has_cpu()) {
      return invalid_argument(
          "the capacity profile has no cpu_cores (profile a tideserve that exports "
          "process_cpu_seconds_total)");
    }
  }

  // The floor's CronJob: minReplicas is the floor inside its window, the manifest's outside.
  std::optional<TimeZone> floor_zone;
  if (scaling.floor) {
    if (!scaling.hpa || scaling.keda) {
      return invalid_argument("a replica floor is for an HPA (a ScaledObject has cron triggers)");
    }
    auto zone = TimeZone::load(scaling.floor->timezone);
    if (!zone.is_ok()) return zone.status();
    floor_zone = std::move(zone).value();
  }
  auto floor_active = [&](double epoch) {
    const CivilTime c = floor_zone->civil(static_cast<int64_t>(std::floor(epoch)));
    const int minute = c.hour * 60 + c.minute;
    const int a = scaling.floor->start_minute, b = scaling.floor->end_minute;
    return a <= b ? (minute >= a && minute < b) : (minute >= a || minute < b);
  };
  if (floor_zone && floor_active(options.start_epoch_s)) {
    min_replicas = std::max(min_replicas, scaling.floor->replicas);
  }

  const int32_t start_replicas =
      options.initial_replicas >= 0 ? options.initial_replicas : std::max(min_replicas, 0);
  std::vector<Pod> pods;
  auto add_pod = [&](double t, bool ready_now) {
    Pod p;
    p.created_s = t;
    p.start_s = ready_now ? t - options.pods.startup_s - 1 : t + options.pods.scheduling_s;
    p.ready_s = ready_now ? t - 1 : p.start_s + options.pods.startup_s;
    pods.push_back(std::move(p));
  };
  // The warm-up: the first rate held before t = 0 (not reported), so the run starts from the
  // state the controller settles to rather than from minReplicas with empty metrics.
  const int64_t warm_steps = std::max<int64_t>(0, std::llround(options.warmup_s / dt));
  const double t0 = -static_cast<double>(warm_steps) * dt;
  for (int32_t i = 0; i < start_replicas; ++i) add_pod(t0, true);
  int32_t desired = start_replicas;

  // Scale to `n`: new pods start now; removed ones go at once, the unready first, then the
  // newest (the ReplicaSet controller's ranking, reduced to what the replay distinguishes).
  auto scale_to = [&](double t, int32_t n) {
    desired = n;
    while (static_cast<int32_t>(pods.size()) < n) add_pod(t, false);
    while (static_cast<int32_t>(pods.size()) > n) {
      auto victim = std::max_element(pods.begin(), pods.end(), [&](const Pod& a, const Pod& b) {
        if (a.ready(t) != b.ready(t)) return a.ready(t);  // unready ranks higher (goes first)
        return a.created_s < b.created_s;
      });
      pods.erase(victim);
    }
  };

  // The per-pod value a signal has now (as the pipeline last saw it); nullopt: no sample.
  const Pipeline& pl = options.pipeline;
  auto prometheus_value = [&](const Pod& p, SignalKind kind, double t) -> std::optional<double> {
    // The newest scrape the adapter has passed on, and the one a rate window before it.
    const double as_of = t - pl.adapter_lag_s;
    const Snapshot* now = nullptr;
    const Snapshot* before = nullptr;
    for (auto it = p.scrapes.rbegin(); it != p.scrapes.rend(); ++it) {
      if (!now) {
        if (it->t_s <= as_of) now = &*it;
        continue;
      }
      before = &*it;
      if (it->t_s <= now->t_s - pl.rate_window_s) break;
    }
    if (!now) return std::nullopt;
    if (kind == SignalKind::kInflight) return now->inflight;
    if (!before) return std::nullopt;  // rate() needs two samples
    const double span = now->t_s - before->t_s;
    if (kind == SignalKind::kRps) return (now->requests - before->requests) / span;
    Coarse diff;
    for (int b = 0; b < kCoarse; ++b) diff[b] = now->buckets[b] - before->buckets[b];
    return histogram_quantile(kind == SignalKind::kP99 ? 0.99 : 0.5, diff);
  };
  // The metrics API's answer for one pod in milli-units.
  auto pod_value = [&](const Pod& p, const Signal& s, double t) -> std::optional<int64_t> {
    if (!p.started(t)) return std::nullopt;
    switch (s.kind) {
      case SignalKind::kCpu:
        return p.cpu_milli;
      case SignalKind::kMemory:
        if (!p.memory_seen) return std::nullopt;
        return to_milli(model.memory_bytes());
      default: {
        auto v = prometheus_value(p, s.kind, t);
        if (!v) return std::nullopt;
        // prometheus-adapter / KEDA turn the sample into a milli-quantity (truncated).
        return to_milli(*v);
      }
    }
  };
  // A total over the pods (External metrics, KEDA triggers), in the metric's own unit.
  auto total_value = [&](const Signal& s, double t) -> double {
    double sum = 0, max = 0;
    int n = 0;
    for (const Pod& p : pods) {
      auto v = pod_value(p, s, t);
      if (!v) continue;
      const double x = static_cast<double>(*v) / 1000;
      sum += x;
      max = std::max(max, x);
      ++n;
    }
    if (n == 0) return 0;  // no series: a query for nothing (ignoreNullValues)
    if (s.aggregate == Aggregate::kAverage) return sum / n;
    if (s.aggregate == Aggregate::kMax) return max;
    return sum;
  };

  SimResult result;
  LatencyHistogram window_hist, all_hist;
  Window w;
  double pod_seconds = 0;
  const int64_t steps = static_cast<int64_t>(std::ceil(duration_s / dt));
  const int64_t window_steps = std::max<int64_t>(1, std::llround(options.window_s / dt));
  double next_sync = t0 + options.sync_offset_s, next_poll = t0;
  double next_prom = t0, next_resource = t0;
  const double poll_s = scaling.keda ? scaling.keda->polling_interval_s : 0;

  for (int64_t k = -warm_steps; k < steps; ++k) {
    const double t = static_cast<double>(k) * dt;
    const double epoch = options.start_epoch_s + t;

    // Scrapes at multiples of their intervals, before anything happens at that instant: the
    // counters hold everything up to now.
    if (t + 1e-9 >= next_prom) {
      next_prom += pl.prometheus_scrape_s;
      for (Pod& p : pods) {
        if (!p.started(t)) continue;
        p.scrapes.push_back({t, p.requests, p.buckets, p.inflight});
        while (p.scrapes.size() > 2 && p.scrapes[1].t_s <= t - pl.rate_window_s - pl.adapter_lag_s -
                                                               pl.prometheus_scrape_s) {
          p.scrapes.pop_front();
        }
      }
    }
    if (t + 1e-9 >= next_resource) {
      next_resource += pl.resource_scrape_s;
      for (Pod& p : pods) {
        if (!p.started(t)) continue;
        if (p.cpu_scraped_s && t > *p.cpu_scraped_s) {
          p.cpu_milli = to_milli((p.cpu_seconds - *p.cpu_scraped_value) / (t - *p.cpu_scraped_s));
          p.memory_seen = true;
        }
        p.cpu_scraped_s = t;
        p.cpu_scraped_value = p.cpu_seconds;
      }
    }

    // Controllers act at the step's start.
    if (keda && t + 1e-9 >= next_poll) {
      next_poll += poll_s;
      std::vector<std::optional<double>> values;
      for (const auto& s : signals) values.push_back(s ? std::optional(total_value(*s, t)) : 0.0);
      if (auto n = keda->poll(epoch, desired, values); n && *n != desired) {
        if (t >= 0) result.syncs.push_back({t, desired, *n, "keda", {}});
        scale_to(t, *n);
      }
    }
    if (hpa && t + 1e-9 >= next_sync) {
      next_sync += options.controller.sync_period_s;
      if (floor_zone) {
        hpa->set_min_replicas(floor_active(epoch)
                                  ? std::max(scaling.hpa->min_replicas, scaling.floor->replicas)
                                  : scaling.hpa->min_replicas);
      }
      SyncInput in;
      in.now_s = t;
      in.current_replicas = desired;
      const auto& metrics = hpa->spec().metrics;
      std::vector<std::optional<double>> totals(metrics.size());
      for (const Pod& p : pods) {
        PodView v;
        v.ready = p.ready(t);
        v.pending = !p.started(t);
        v.start_s = p.start_s;
        v.ready_change_s = p.ready(t) ? p.ready_s : p.start_s;
        // metrics-server's sample: its time and window (the CPU readiness rule reads them).
        if (p.cpu_scraped_s) v.metric_timestamp_s = *p.cpu_scraped_s;
        v.metric_window_s = pl.resource_scrape_s;
        v.cpu_request_milli = scaling.cpu_request_milli;
        v.memory_request_milli = scaling.memory_request_milli;
        for (size_t i = 0; i < metrics.size(); ++i) {
          if (metrics[i].type == MetricSourceType::kExternal || !signals[i]) {
            v.values.push_back(std::nullopt);
          } else {
            v.values.push_back(pod_value(p, *signals[i], t));
          }
        }
        in.pods.push_back(std::move(v));
      }
      std::vector<std::optional<double>> trigger_values;
      for (size_t i = 0; i < metrics.size(); ++i) {
        trigger_values.push_back(signals[i] ? std::optional(total_value(*signals[i], t)) : 0.0);
      }
      if (keda) {
        in.external_milli = keda->external_metrics(epoch, trigger_values);
      } else {
        for (auto& v : trigger_values) {
          in.external_milli.push_back(v ? std::optional(to_milli(*v)) : std::nullopt);
        }
      }
      const Decision d = hpa->sync(in);
      SyncRecord rec{t, desired, d.desired, d.reason, {}};
      for (const MetricOutcome& m : d.metrics) {
        rec.values.push_back(m.replicas ? std::optional<int64_t>(m.current) : std::nullopt);
      }
      if (t >= 0) result.syncs.push_back(std::move(rec));
      if (d.desired != desired) scale_to(t, d.desired);
    }

    // Traffic over the ready pods, evenly.
    const double arrivals = rate_at(traffic, std::max(t, 0.0)) * dt;
    int ready = 0;
    for (const Pod& p : pods) ready += p.ready(t) ? 1 : 0;
    w.offered_rps += arrivals;
    w.requests += arrivals;
    if (ready == 0) {
      w.rejected += arrivals;  // nothing to route to: 503 from the load balancer
    }
    // Pods with the same queue get the same answer: compute each distinct state once.
    struct Outcome {
      ReplicaModel::Step step;
      double queue = 0;  // after the step
      LatencyHistogram latency;
      Coarse buckets{};  // the latencies in tideserve's buckets
      double inflight = 0;
      int pods = 0;  // in this state
    };
    std::map<double, Outcome> memo;
    for (Pod& p : pods) {
      if (!p.ready(t)) {
        if (p.started(t)) p.cpu_seconds += options.pods.startup_cpu_cores * dt;
        continue;
      }
      const double per_pod = arrivals / ready;
      auto it = memo.find(p.queue);
      if (it == memo.end()) {
        Outcome o;
        o.queue = p.queue;
        o.step = model.step(per_pod, dt, o.queue, o.latency);
        static const auto bounds_ms = [] {
          std::array<double, kCoarse - 1> b;
          for (int i = 0; i < kCoarse - 1; ++i) b[i] = kBuckets[i] * 1000;
          return b;
        }();
        std::array<double, kCoarse - 1> cdf;
        o.latency.fractions_below_ms(bounds_ms.data(), kCoarse - 1, cdf.data());
        double below = 0;
        for (int b = 0; b < kCoarse - 1; ++b) {
          o.buckets[b] = o.latency.count() * (cdf[b] - below);
          below = cdf[b];
        }
        o.buckets[kCoarse - 1] = o.latency.count() * (1 - below);
        // In flight at the step's end: the queue plus those in service (Little's law).
        const double rate = std::min(per_pod / dt, model.service_rate());
        o.inflight = o.queue + rate * model.quantiles_at(rate)[0] / 1000;
        it = memo.emplace(p.queue, std::move(o)).first;
      }
      Outcome& o = it->second;
      ++o.pods;
      p.queue = o.queue;
      p.inflight = o.inflight;
      w.rejected += o.step.rejected;
      p.requests += o.step.accepted;
      for (int b = 0; b < kCoarse; ++b) p.buckets[b] += o.buckets[b];
      p.cpu_seconds += model.cpu_cores_at(o.step.served_rate) * dt;
    }
    for (const auto& [queue, o] : memo) window_hist.add(o.latency, o.pods);
    if (k < 0) {  // warming up: nothing counts
      w = Window{};
      window_hist.clear();
      continue;
    }
    pod_seconds += static_cast<double>(pods.size()) * dt;
    result.max_pods = std::max<int32_t>(result.max_pods, static_cast<int32_t>(pods.size()));

    if ((k + 1) % window_steps == 0 || k + 1 == steps) {
      const double span = static_cast<double>((k % window_steps) + 1) * dt;
      const double end = t + dt;
      w.t_s = end - span;
      w.offered_rps /= span;
      w.p50_ms = window_hist.quantile_ms(0.5);
      w.p99_ms = window_hist.quantile_ms(0.99);
      w.pods = static_cast<int32_t>(pods.size());
      w.ready = 0;
      for (const Pod& p : pods) w.ready += p.ready(end) ? 1 : 0;
      w.violated =
          w.p99_ms > options.slo_p99_ms || (w.requests > 0 && w.rejected > 0.01 * w.requests);
      if (w.violated) result.violation_minutes += span / 60;
      result.requests += w.requests;
      result.rejected += w.rejected;
      all_hist.add(window_hist);
      result.windows.push_back(w);
      w = Window{};
      window_hist.clear();
    }
  }
  result.p50_ms = all_hist.quantile_ms(0.5);
  result.p99_ms = all_hist.quantile_ms(0.99);
  result.replica_hours = pod_seconds / 3600;
  return result;
}

}  // namespace tideserve::plan
