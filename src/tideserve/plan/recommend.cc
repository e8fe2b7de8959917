#include "tideserve/plan/recommend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <optional>
#include <thread>

#include <fmt/format.h>

namespace tideserve::plan {

namespace {

bool feasible(const SimResult& r, const Goal& goal) {
  return r.violation_minutes <= goal.max_violation_minutes + 1e-9 &&
         r.rejected <= goal.max_rejected_ratio * std::max(r.requests, 1.0);
}

// Better: feasible before infeasible; among feasible the fewer replica-hours; among infeasible
// the fewer violation minutes, then rejected requests.
bool better(const Candidate& a, const Candidate& b) {
  if (a.feasible != b.feasible) return a.feasible;
  if (a.feasible) return a.result.replica_hours < b.result.replica_hours - 1e-9;
  if (std::abs(a.result.violation_minutes - b.result.violation_minutes) > 1e-9) {
    return a.result.violation_minutes < b.result.violation_minutes;
  }
  return a.result.rejected < b.result.rejected;
}

// The parameters the search moves, as views into a Scaling.
struct Knob {
  std::string name;
  std::vector<double> values;
  std::function<void(Scaling&, double)> set;
  std::function<std::string(const Scaling&)> describe;
};

int32_t& min_of(Scaling& s) {
  return s.keda ? s.keda->min_replica_count : s.hpa->min_replicas;
}
int32_t max_of(const Scaling& s) {
  return s.keda ? s.keda->max_replica_count : s.hpa->max_replicas;
}

// The cron trigger a ScaledObject's floor is (the first one; added when there is none).
Trigger* cron_of(Scaling& s, const std::string& zone) {
  for (Trigger& t : s.keda->triggers) {
    if (t.type == "cron") return &t;
  }
  Trigger t;
  t.type = "cron";
  t.timezone = zone;
  t.start = "0 8 * * *";
  t.end = "0 22 * * *";
  t.desired_replicas = 0;
  s.keda->triggers.push_back(t);
  return &s.keda->triggers.back();
}

std::string cron_at(int minute) {
  return fmt::format("{} {} * * *", minute % 60, minute / 60);
}

int cron_minute(const std::string& expr, int fallback) {
  int m = 0, h = 0;
  if (std::sscanf(expr.c_str(), "%d %d", &m, &h) == 2) return h * 60 + m;
  return fallback;
}

}  // namespace

std::string clock_text(int minute) {
  minute = ((minute % 1440) + 1440) % 1440;
  return fmt::format("{:02d}:{:02d}", minute / 60, minute % 60);
}

Result<Recommendation> recommend(const ReplicaModel& model, const std::vector<RatePoint>& traffic,
                                 double duration_s, const Scaling& scaling,
                                 const SimOptions& options, const Goal& goal) {
  if (!scaling.hpa && !scaling.keda) {
    return invalid_argument("recommendations need an HPA or a ScaledObject to tune");
  }
  Recommendation rec;
  auto evaluate = [&](const Scaling& s) -> Result<Candidate> {
    auto r = simulate(model, traffic, duration_s, s, options);
    if (!r.is_ok()) return r.status();
    ++rec.evaluated;
    Candidate c;
    c.scaling = s;
    c.result = std::move(r).value();
    c.feasible = feasible(c.result, goal);
    return c;
  };
  auto base = evaluate(scaling);
  if (!base.is_ok()) return base.status();
  rec.baseline = base.value();

  std::string zone = "UTC";
  if (scaling.keda) {
    for (const Trigger& t : scaling.keda->triggers) {
      if (t.type == "cron" && !t.timezone.empty()) zone = t.timezone;
    }
  } else if (scaling.floor) {
    zone = scaling.floor->timezone;
  }

  std::vector<Knob> knobs;
  const int32_t max_replicas = max_of(scaling);
  {
    Knob k{"minReplicas", {}, nullptr, nullptr};
    for (int32_t n = 1; n <= std::min(max_replicas, 16); ++n) k.values.push_back(n);
    k.set = [](Scaling& s, double v) { min_of(s) = static_cast<int32_t>(v); };
    k.describe = [](const Scaling& s) {
      return fmt::format("minReplicas {}",
                         s.keda ? s.keda->min_replica_count : s.hpa->min_replicas);
    };
    knobs.push_back(std::move(k));
  }
  // Each metric's target: utilization in steps of 10 %, values as multiples of the manifest's.
  if (scaling.hpa && !scaling.keda) {
    for (size_t i = 0; i < scaling.hpa->metrics.size(); ++i) {
      const MetricSpec m = scaling.hpa->metrics[i];
      Knob k{m.name, {}, nullptr, nullptr};
      if (m.target_type == TargetType::kUtilization) {
        for (int u = 30; u <= 95; u += 5) k.values.push_back(u);
        k.set = [i](Scaling& s, double v) {
          s.hpa->metrics[i].target_utilization = static_cast<int32_t>(v);
        };
        k.describe = [i](const Scaling& s) {
          return fmt::format("{} target {}%", s.hpa->metrics[i].name,
                             s.hpa->metrics[i].target_utilization);
        };
      } else {
        for (double f : {0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0}) {
          k.values.push_back(std::max<double>(1, std::round(f * m.target_milli)));
        }
        k.set = [i](Scaling& s, double v) {
          s.hpa->metrics[i].target_milli = static_cast<int64_t>(v);
        };
        k.describe = [i](const Scaling& s) {
          return fmt::format("{} target {}m", s.hpa->metrics[i].name,
                             s.hpa->metrics[i].target_milli);
        };
      }
      knobs.push_back(std::move(k));
    }
  } else {
    for (size_t i = 0; i < scaling.keda->triggers.size(); ++i) {
      const Trigger t = scaling.keda->triggers[i];
      if (t.type == "cron") continue;
      Knob k{t.type, {}, nullptr, nullptr};
      if (t.metric_type == TargetType::kUtilization) {
        for (int u = 30; u <= 95; u += 5) k.values.push_back(u);
      } else {
        for (double f : {0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0}) k.values.push_back(f * t.target);
      }
      k.set = [i](Scaling& s, double v) { s.keda->triggers[i].target = v; };
      k.describe = [i](const Scaling& s) {
        return fmt::format("{} trigger target {}", s.keda->triggers[i].type,
                           s.keda->triggers[i].target);
      };
      knobs.push_back(std::move(k));
    }
  }
  // The floor: its size (0: none), start and end (every 30 minutes).
  {
    Knob size{"floor", {}, nullptr, nullptr};
    for (int32_t n = 0; n <= std::min(max_replicas, 16); ++n) size.values.push_back(n);
    Knob start{"floor start", {}, nullptr, nullptr};
    for (int m = 4 * 60; m <= 11 * 60; m += 30) start.values.push_back(m);
    Knob end{"floor end", {}, nullptr, nullptr};
    for (int m = 17 * 60; m <= 24 * 60; m += 30) end.values.push_back(m % 1440);
    if (scaling.keda) {
      size.set = [zone](Scaling& s, double v) {
        cron_of(s, zone)->desired_replicas = static_cast<int32_t>(v);
      };
      start.set = [zone](Scaling& s, double v) {
        cron_of(s, zone)->start = cron_at(static_cast<int>(v));
      };
      end.set = [zone](Scaling& s, double v) {
        cron_of(s, zone)->end = cron_at(static_cast<int>(v));
      };
    } else {
      auto floor = [zone](Scaling& s) -> Floor& {
        if (!s.floor) s.floor = Floor{0, 8 * 60, 22 * 60, zone};
        return *s.floor;
      };
      size.set = [floor](Scaling& s, double v) { floor(s).replicas = static_cast<int32_t>(v); };
      start.set = [floor](Scaling& s, double v) { floor(s).start_minute = static_cast<int>(v); };
      end.set = [floor](Scaling& s, double v) { floor(s).end_minute = static_cast<int>(v); };
    }
    auto describe = [](const Scaling& s) -> std::string {
      if (s.keda) {
        for (const Trigger& t : s.keda->triggers) {
          if (t.type != "cron") continue;
          if (t.desired_replicas <= 0) return "no cron floor";
          return fmt::format("cron floor {} from {} to {} ({})", t.desired_replicas,
                             clock_text(cron_minute(t.start, 0)), clock_text(cron_minute(t.end, 0)),
                             t.timezone);
        }
        return "no cron floor";
      }
      if (!s.floor || s.floor->replicas <= 0) return "no floor";
      return fmt::format("floor {} from {} to {} ({}; a CronJob patching minReplicas)",
                         s.floor->replicas, clock_text(s.floor->start_minute),
                         clock_text(s.floor->end_minute), s.floor->timezone);
    };
    size.describe = start.describe = end.describe = describe;
    knobs.push_back(std::move(size));
    knobs.push_back(std::move(start));
    knobs.push_back(std::move(end));
  }

  // A knob's candidates are replayed in parallel (the model is read-only), then compared in
  // their order, so the answer does not depend on the threads.
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  Candidate best = rec.baseline;
  for (int pass = 0; pass < goal.passes; ++pass) {
    for (const Knob& k : knobs) {
      std::vector<std::optional<Result<Candidate>>> out(k.values.size());
      std::atomic<size_t> next{0};
      auto work = [&]() {
        for (size_t i; (i = next.fetch_add(1)) < k.values.size();) {
          Scaling s = best.scaling;
          k.set(s, k.values[i]);
          auto r = simulate(model, traffic, duration_s, s, options);
          if (!r.is_ok()) {
            out[i].emplace(r.status());
            continue;
          }
          Candidate c;
          c.scaling = std::move(s);
          c.result = std::move(r).value();
          c.feasible = feasible(c.result, goal);
          out[i].emplace(std::move(c));
        }
      };
      std::vector<std::thread> pool;
      for (unsigned t = 1; t < std::min<size_t>(threads, k.values.size()); ++t) {
        pool.emplace_back(work);
      }
      work();
      for (std::thread& t : pool) t.join();
      for (auto& c : out) {
        if (!c->is_ok()) return c->status();
        ++rec.evaluated;
        if (better(c->value(), best)) best = std::move(*c).value();
      }
    }
  }
  // What changed, in words.
  for (const Knob& k : knobs) {
    const std::string before = k.describe(rec.baseline.scaling);
    const std::string after = k.describe(best.scaling);
    if (before != after &&
        std::find(best.changes.begin(), best.changes.end(), after) == best.changes.end()) {
      best.changes.push_back(after);
    }
  }
  rec.best = std::move(best);
  return rec;
}

}  // namespace tideserve::plan
