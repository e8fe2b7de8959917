#include "tideserve/cli/plan_command.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tideserve/cli/cli_error.h"
#include "tideserve/plan/cron.h"
#include "tideserve/plan/manifest.h"
#include "tideserve/plan/recommend.h"
#include "tideserve/plan/report.h"
#include "tideserve/plan/simulator.h"
#include "tideserve/plan/traffic.h"
#include "tideserve/util/mapped_file.h"

namespace tideserve::cli {

namespace {

using namespace tideserve::plan;  // NOLINT: this file is the plan layer's front end

struct PlanArgs {
  std::vector<std::string> manifests;
  std::string hpa_name, scaled_object_name;
  int32_t replicas = 0;
  std::string trace_file;
  TidalDay tidal;
  double duration_s = 0;
  std::string write_trace;
  std::string profile_file;
  double startup_s = 30;
  std::string startup_log;
  double scheduling_s = 10;
  double startup_cpu = 1;
  double slo_p99_ms = 0;
  std::string cpu_request, memory_request;
  int64_t admission_limit = 512;
  std::vector<std::string> signals;
  std::string start = "2026-11-30T00:00";
  std::string timezone;
  double window_s = 60;
  SimOptions sim;
  std::string json_out, csv_out, svg_out;
  PlanArgs() { sim.warmup_s = 900; }
  bool recommend = false;
  Goal goal;
  // controller
  std::string metrics_file;
  int32_t initial_replicas = -1;
};

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) return internal_error(fmt::format("cannot write {}", path));
  return Status::ok();
}

// The autoscaler the replay runs, from the manifests, and its pods' requests.
Result<Scaling> load_scaling(const PlanArgs& a) {
  Scaling s;
  if (a.manifests.empty()) {
    if (a.replicas <= 0) return invalid_argument("give --manifests (or --replicas N)");
    s.fixed_replicas = a.replicas;
    return s;
  }
  auto m = read_manifests(a.manifests);
  if (!m.is_ok()) return m.status();
  std::string target;
  if (!a.scaled_object_name.empty() || (a.hpa_name.empty() && m->hpas.empty())) {
    for (const ScaledObjectSpec& so : m->scaled_objects) {
      if (a.scaled_object_name.empty() || so.name == a.scaled_object_name) {
        if (s.keda) return invalid_argument("several ScaledObjects: choose with --scaled-object");
        s.keda = so;
        target = so.target_name;
      }
    }
    if (!s.keda) return not_found("no such ScaledObject in the manifests");
  } else {
    if (!m->scaled_objects.empty() && a.hpa_name.empty()) {
      return invalid_argument(
          "the manifests hold an HPA and a ScaledObject: choose with --hpa or "
          "--scaled-object");
    }
    for (const HpaSpec& h : m->hpas) {
      if (a.hpa_name.empty() || h.name == a.hpa_name) {
        if (s.hpa) return invalid_argument("several HPAs: choose with --hpa");
        s.hpa = h;
        target = h.target_name;
      }
    }
    if (!s.hpa) return not_found("no such HorizontalPodAutoscaler in the manifests");
  }
  if (auto w = find_workload(*m, target); w.is_ok()) {
    s.cpu_request_milli = w->cpu_request_milli;
    s.memory_request_milli = w->memory_request_milli;
  }
  if (!a.cpu_request.empty()) {
    auto q = parse_quantity_milli(a.cpu_request);
    if (!q.is_ok()) return q.status();
    s.cpu_request_milli = *q;
  }
  if (!a.memory_request.empty()) {
    auto q = parse_quantity_milli(a.memory_request);
    if (!q.is_ok()) return q.status();
    s.memory_request_milli = *q;
  }
  for (const std::string& spec : a.signals) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0) {
      return invalid_argument(fmt::format("--signal '{}': NAME=KIND[:AGG]", spec));
    }
    auto sig = parse_signal(spec.substr(eq + 1));
    if (!sig.is_ok()) return sig.status();
    s.signals.emplace_back(spec.substr(0, eq), *sig);
  }
  return s;
}

// The zone the clock is read in: --timezone, else the first cron trigger's, else UTC.
std::string clock_zone(const PlanArgs& a, const Scaling& s) {
  if (!a.timezone.empty()) return a.timezone;
  if (s.keda) {
    for (const Trigger& t : s.keda->triggers) {
      if (t.type == "cron" && !t.timezone.empty()) return t.timezone;
    }
  }
  return "UTC";
}

// "YYYY-MM-DDTHH:MM[:SS]" in `zone` -> Unix seconds, and the seconds after local midnight.
Result<std::pair<double, double>> parse_start(const std::string& text, const std::string& zone) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  const int n = std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec);
  if (n < 5 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) {
    return invalid_argument(fmt::format("--start '{}': YYYY-MM-DDTHH:MM[:SS]", text));
  }
  auto tz = TimeZone::load(zone);
  if (!tz.is_ok()) return tz.status();
  const int64_t epoch = tz->date(y, mo, d, h, mi, sec);
  const CivilTime c = tz->civil(epoch);
  return std::make_pair(static_cast<double>(epoch), c.hour * 3600.0 + c.minute * 60.0 + c.second);
}

// Start-up from a tideserve log: the `serving` event's ready_ms (process start to ready).
Result<double> startup_from_log(const std::string& path) {
  auto text = read_text_file(path);
  if (!text.is_ok()) return text.status();
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"event\":\"serving\"") == std::string::npos) continue;
    const auto at = line.find("\"ready_ms\":");
    if (at == std::string::npos) continue;
    return std::strtod(line.c_str() + at + 11, nullptr) / 1000;
  }
  return invalid_argument(fmt::format(
      "{}: no \"serving\" event with ready_ms (a tideserve serve log, one JSON per line)", path));
}

Status prepare(PlanArgs& a, Scaling& scaling, std::vector<RatePoint>& traffic,
               double& start_clock) {
  auto s = load_scaling(a);
  if (!s.is_ok()) return s.status();
  scaling = std::move(s).value();
  if (!a.trace_file.empty()) {
    auto text = read_text_file(a.trace_file);
    if (!text.is_ok()) return text.status();
    auto t = loadgen::parse_rate_schedule(*text);
    if (!t.is_ok()) return t.status();
    traffic = std::move(t).value();
    if (traffic.empty()) return invalid_argument("the trace has no rows");
    if (a.duration_s <= 0) {
      const double gap =
          traffic.size() > 1 ? traffic.back().at_s - traffic[traffic.size() - 2].at_s : 60;
      a.duration_s = traffic.back().at_s + gap;
    }
  } else {
    if (a.duration_s > 0) a.tidal.duration_s = a.duration_s;
    traffic = tidal_day(a.tidal);
    a.duration_s = a.tidal.duration_s;
  }
  if (!a.write_trace.empty()) {
    std::string csv = "time_s,rate\n";
    for (const RatePoint& p : traffic) csv += fmt::format("{:.3f},{:.3f}\n", p.at_s, p.rate);
    if (Status st = write_text(a.write_trace, csv); !st.is_ok()) return st;
  }
  auto start = parse_start(a.start, clock_zone(a, scaling));
  if (!start.is_ok()) return start.status();
  a.sim.start_epoch_s = start->first;
  start_clock = start->second;
  if (!a.startup_log.empty()) {
    auto st = startup_from_log(a.startup_log);
    if (!st.is_ok()) return st.status();
    a.startup_s = *st;
  }
  a.sim.pods.startup_s = a.startup_s;
  a.sim.pods.scheduling_s = a.scheduling_s;
  a.sim.pods.startup_cpu_cores = a.startup_cpu;
  a.sim.limits.admission_limit = a.admission_limit;
  a.sim.window_s = a.window_s;
  a.sim.initial_replicas = a.initial_replicas;
  return Status::ok();
}

void print_summary(const char* label, const SimResult& r) {
  double worst = 0;
  for (const Window& w : r.windows) worst = std::max(worst, w.p99_ms);
  fmt::print("| {} | {:.0f} | {:.0f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.2f} | {} |\n", label,
             r.requests, r.rejected, r.p50_ms, r.p99_ms, worst, r.violation_minutes,
             r.replica_hours, r.max_pods);
}

int run_plan(PlanArgs& a) {
  Scaling scaling;
  std::vector<RatePoint> traffic;
  double start_clock = 0;
  if (Status st = prepare(a, scaling, traffic, start_clock); !st.is_ok()) return fail(st);
  auto text = read_text_file(a.profile_file);
  if (!text.is_ok()) return fail(text.status());
  auto profile = parse_capacity_profile(*text);
  if (!profile.is_ok()) return fail(profile.status());
  if (a.slo_p99_ms <= 0) a.slo_p99_ms = profile->slo_p99_ms > 0 ? profile->slo_p99_ms : 500;
  a.sim.slo_p99_ms = a.slo_p99_ms;
  auto model = ReplicaModel::create(*profile, a.sim.limits);
  if (!model.is_ok()) return fail(model.status());

  fmt::print(
      "replica: {:.1f} req/s at most (steady up to {:.1f}); start-up {:.0f} s + scheduling {:.0f} "
      "s; SLO p99 {} ms\n\n",
      model->service_rate(), model->stable_rate(), a.startup_s, a.scheduling_s, a.slo_p99_ms);
  fmt::print(
      "| config | requests | refused | p50 ms | p99 ms | worst window p99 ms | SLO-violation "
      "minutes | replica-hours | max pods |\n| --- | --- | --- | --- | --- | --- | --- | --- | "
      "--- |\n");
  SimResult result;
  std::optional<Recommendation> rec;
  if (a.recommend) {
    auto r = recommend(*model, traffic, a.duration_s, scaling, a.sim, a.goal);
    if (!r.is_ok()) return fail(r.status());
    rec = std::move(r).value();
    result = rec->baseline.result;
    print_summary("manifests", result);
    print_summary("recommended", rec->best.result);
    fmt::print("\n{} configurations replayed; the recommendation {}:\n", rec->evaluated,
               rec->best.feasible ? "meets the SLO" : "is the closest found (none met the SLO)");
    if (rec->best.changes.empty()) fmt::print("  keep the manifests as they are\n");
    for (const std::string& c : rec->best.changes) fmt::print("  {}\n", c);
  } else {
    auto r = simulate(*model, traffic, a.duration_s, scaling, a.sim);
    if (!r.is_ok()) return fail(r.status());
    result = std::move(r).value();
    print_summary("manifests", result);
  }
  if (!a.json_out.empty()) {
    std::string json = result_json(result, a.slo_p99_ms);
    if (rec) {
      json.pop_back();  // the newline
      json.pop_back();  // the closing brace
      json += ",\"recommended\":" + result_json(rec->best.result, a.slo_p99_ms);
      json.pop_back();
      json += ",\"changes\":[";
      for (size_t i = 0; i < rec->best.changes.size(); ++i) {
        json += fmt::format("{}{}", i ? "," : "", json_quote(rec->best.changes[i]));
      }
      json += fmt::format("],\"feasible\":{}}}\n", rec->best.feasible ? "true" : "false");
    }
    if (Status st = write_text(a.json_out, json); !st.is_ok()) return fail(st);
  }
  if (!a.csv_out.empty()) {
    if (Status st = write_text(a.csv_out, windows_csv(result)); !st.is_ok()) return fail(st);
  }
  if (!a.svg_out.empty()) {
    const std::string title =
        fmt::format("tideserve plan: {} ({:.1f} replica-hours, {:.0f} SLO-violation minutes)",
                    scaling.keda  ? "ScaledObject " + scaling.keda->name
                    : scaling.hpa ? "HPA " + scaling.hpa->name
                                  : fmt::format("{} replicas", scaling.fixed_replicas),
                    result.replica_hours, result.violation_minutes);
    const std::string svg = result_svg(result, traffic, a.slo_p99_ms, start_clock, title,
                                       rec ? &rec->best.result : nullptr, "recommended");
    if (Status st = write_text(a.svg_out, svg); !st.is_ok()) return fail(st);
  }
  return 0;
}

// --- the controller alone ---

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  int column(const std::string& name) const {
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) return static_cast<int>(i);
    }
    return -1;
  }
};

Result<Table> parse_csv(const std::string& text) {
  Table t;
  std::istringstream in(text);
  auto split = [](const std::string& line) {
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream ls(line);
    while (std::getline(ls, cell, ',')) {
      while (!cell.empty() && (cell.back() == '\r' || cell.back() == ' ')) cell.pop_back();
      while (!cell.empty() && cell.front() == ' ') cell.erase(0, 1);
      cells.push_back(cell);
    }
    if (!line.empty() && line.back() == ',') cells.emplace_back();
    return cells;
  };
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    if (t.header.empty()) {
      t.header = split(line);
      continue;
    }
    auto cells = split(line);
    if (cells.size() > t.header.size()) {
      return invalid_argument(
          fmt::format("metrics CSV: row {} has more cells than the header", t.rows.size() + 1));
    }
    cells.resize(t.header.size());
    t.rows.push_back(std::move(cells));
  }
  if (t.column("time_s") < 0) return invalid_argument("metrics CSV: no time_s column");
  return t;
}

int run_controller(PlanArgs& a) {
  auto s = load_scaling(a);
  if (!s.is_ok()) return fail(s.status());
  Scaling scaling = std::move(s).value();
  if (!scaling.hpa && !scaling.keda) return fail(invalid_argument("give --manifests"));
  auto text = read_text_file(a.metrics_file);
  if (!text.is_ok()) return fail(text.status());
  auto table = parse_csv(*text);
  if (!table.is_ok()) return fail(table.status());
  auto start = parse_start(a.start, clock_zone(a, scaling));
  if (!start.is_ok()) return fail(start.status());

  std::optional<KedaOperator> keda;
  HpaSpec spec;
  std::vector<std::string> names;  // the column each metric is read from
  if (scaling.keda) {
    auto op = KedaOperator::create(*scaling.keda);
    if (!op.is_ok()) return fail(op.status());
    keda = std::move(op).value();
    spec = keda_hpa_spec(*scaling.keda);
    for (size_t i = 0; i < scaling.keda->triggers.size(); ++i) {
      const Trigger& t = scaling.keda->triggers[i];
      std::string name = t.name.empty() ? t.type : t.name;
      if (table->column(name) < 0) name = fmt::format("trigger{}", i);
      names.push_back(name);
    }
  } else {
    spec = *scaling.hpa;
    for (const MetricSpec& m : spec.metrics) names.push_back(m.name);
  }
  for (size_t i = 0; i < names.size(); ++i) {
    const bool cron = keda && scaling.keda->triggers[i].type == "cron";
    if (!cron && table->column(names[i]) < 0) {
      return fail(
          invalid_argument(fmt::format("metrics CSV: no column '{}' for metric {}", names[i], i)));
    }
  }
  HpaController hpa(spec, a.sim.controller);
  int32_t current = a.initial_replicas >= 0 ? a.initial_replicas : std::max(spec.min_replicas, 1);
  if (keda && a.initial_replicas < 0) current = scaling.keda->min_replica_count;
  auto cell = [&](const std::vector<std::string>& row, const std::string& col) -> std::string {
    const int c = table->column(col);
    return c >= 0 ? row[c] : std::string();
  };
  auto quantity = [&](const std::string& v, const char* what,
                      size_t row) -> Result<std::optional<int64_t>> {
    if (v.empty()) return std::optional<int64_t>();
    auto q = parse_quantity_milli(v);
    if (!q.is_ok()) {
      return invalid_argument(
          fmt::format("metrics CSV row {} ({}): {}", row + 1, what, q.status().message()));
    }
    return std::optional<int64_t>(*q);
  };
  fmt::print("time_s,replicas,metric_replicas,reason\n");
  for (size_t r = 0; r < table->rows.size(); ++r) {
    const auto& row = table->rows[r];
    const double t = std::strtod(cell(row, "time_s").c_str(), nullptr);
    const double epoch = start->first + t;
    std::string reason;
    int32_t metric_desired = current;
    // The values for this row, per metric.
    std::vector<std::optional<double>> raw(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string v = cell(row, names[i]);
      if (!v.empty()) raw[i] = std::strtod(v.c_str(), nullptr);
    }
    if (keda) {
      if (auto n = keda->poll(epoch, current, raw); n && *n != current) {
        current = *n;
        reason = "keda";
      }
    }
    if (current > 0 || !keda) {
      SyncInput in;
      in.now_s = t;
      in.current_replicas = current;
      const std::string pods_cell = cell(row, "pods"), ready_cell = cell(row, "ready");
      const int pods = pods_cell.empty() ? current : std::atoi(pods_cell.c_str());
      const int ready = ready_cell.empty() ? pods : std::atoi(ready_cell.c_str());
      auto cpu_req = quantity(cell(row, "cpu_request"), "cpu_request", r);
      auto mem_req = quantity(cell(row, "memory_request"), "memory_request", r);
      if (!cpu_req.is_ok()) return fail(cpu_req.status());
      if (!mem_req.is_ok()) return fail(mem_req.status());
      for (int p = 0; p < pods; ++p) {
        PodView v;
        v.ready = p < ready;
        // Unready pods started just now: within the CPU initialization period.
        v.start_s = v.ready ? t - 3600 : t;
        v.ready_change_s = v.ready ? t - 3600 : t;
        v.cpu_request_milli = cpu_req->value_or(scaling.cpu_request_milli);
        v.memory_request_milli = mem_req->value_or(scaling.memory_request_milli);
        for (size_t i = 0; i < spec.metrics.size(); ++i) {
          if (spec.metrics[i].type == MetricSourceType::kExternal || !v.ready) {
            v.values.push_back(std::nullopt);
            continue;
          }
          auto q = quantity(cell(row, names[i]), names[i].c_str(), r);
          if (!q.is_ok()) return fail(q.status());
          v.values.push_back(*q);
        }
        in.pods.push_back(std::move(v));
      }
      if (keda) {
        in.external_milli = keda->external_metrics(epoch, raw);
      } else {
        for (size_t i = 0; i < spec.metrics.size(); ++i) {
          auto q = quantity(cell(row, names[i]), names[i].c_str(), r);
          if (!q.is_ok()) return fail(q.status());
          in.external_milli.push_back(*q);
        }
      }
      const Decision d = hpa.sync(in);
      metric_desired = d.metric_desired;
      if (reason.empty()) reason = d.reason;
      current = d.desired;
    }
    std::string quoted = reason;
    for (char& c : quoted) {
      if (c == '"' || c == ',') c = ' ';
    }
    fmt::print("{},{},{},{}\n", cell(row, "time_s"), current, metric_desired, quoted);
  }
  return 0;
}

void add_common(CLI::App* cmd, PlanArgs* a) {
  cmd->add_option("--manifests", a->manifests,
                  "Kubernetes YAML: files, directories (a kustomization is rendered with kubectl "
                  "kustomize) or - (stdin); the HPA or ScaledObject and its workload's requests");
  cmd->add_option("--hpa", a->hpa_name, "The HorizontalPodAutoscaler to replay (by name)");
  cmd->add_option("--scaled-object", a->scaled_object_name, "The ScaledObject to replay");
  cmd->add_option("--cpu-request", a->cpu_request,
                  "Per-pod CPU request (quantity) instead of the workload's");
  cmd->add_option("--memory-request", a->memory_request, "Per-pod memory request (quantity)");
  cmd->add_option("--start", a->start,
                  "Clock time at t = 0, YYYY-MM-DDTHH:MM in --timezone (cron triggers)")
      ->capture_default_str();
  cmd->add_option(
      "--timezone", a->timezone,
      "IANA zone of --start and the plot's clock (default: the cron trigger's, or UTC)");
  cmd->add_option("--sync-period", a->sim.controller.sync_period_s,
                  "HPA sync period, seconds (--horizontal-pod-autoscaler-sync-period)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--tolerance", a->sim.controller.tolerance, "HPA tolerance")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--downscale-stabilization", a->sim.controller.downscale_stabilization_s,
                  "Seconds (the legacy path, without behavior)")
      ->capture_default_str();
  cmd->add_option("--cpu-initialization-period", a->sim.controller.cpu_initialization_period_s,
                  "Seconds")
      ->capture_default_str();
  cmd->add_option("--initial-readiness-delay", a->sim.controller.initial_readiness_delay_s,
                  "Seconds")
      ->capture_default_str();
  cmd->add_option("--initial-replicas", a->initial_replicas,
                  "Replicas at t = 0 (default: the minimum)");
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto a = std::make_shared<PlanArgs>();
  CLI::App* cmd = app.add_subcommand(
      "plan",
      "Replay the HPA or KEDA ScaledObject of your manifests against a day of traffic with "
      "replicas modelled from a `tideserve bench --profile`: p50/p99 over time, SLO-violation "
      "minutes, refused requests, replica-hours, a plot, and (--recommend) the configuration that "
      "meets the SLO at the least replica-hours. `plan controller` runs the controller alone on "
      "a CSV of metric values.");
  add_common(cmd, a.get());
  cmd->add_option("--replicas", a->replicas, "No autoscaler: this many replicas throughout");
  cmd->add_option("--profile", a->profile_file, "Capacity profile (tideserve bench --profile)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--trace", a->trace_file,
                  "Traffic: CSV 'time_s,rate' (seconds from the start, requests/s, holding until "
                  "the next row; the format of bench --schedule). Default: a tidal day")
      ->check(CLI::ExistingFile);
  cmd->add_option("--duration", a->duration_s, "Seconds replayed (default: the trace's, or a day)");
  cmd->add_option("--tidal-trough-rps", a->tidal.trough_rps, "Night trough, requests/s")
      ->capture_default_str();
  cmd->add_option("--tidal-morning-peak-rps", a->tidal.morning_peak_rps, "Morning peak")
      ->capture_default_str();
  cmd->add_option("--tidal-morning-peak-hour", a->tidal.morning_peak_hour, "Its hour")
      ->capture_default_str();
  cmd->add_option("--tidal-evening-peak-rps", a->tidal.evening_peak_rps, "Evening peak")
      ->capture_default_str();
  cmd->add_option("--tidal-evening-peak-hour", a->tidal.evening_peak_hour, "Its hour")
      ->capture_default_str();
  cmd->add_option("--tidal-width-hours", a->tidal.peak_width_hours, "Peaks' standard deviation")
      ->capture_default_str();
  cmd->add_option("--tidal-noise", a->tidal.noise, "Relative noise per step")
      ->capture_default_str();
  cmd->add_option("--tidal-step-seconds", a->tidal.step_s, "Seconds per trace step")
      ->capture_default_str();
  cmd->add_option("--seed", a->tidal.seed, "Seed of the tidal day's noise")->capture_default_str();
  cmd->add_option("--write-trace", a->write_trace,
                  "Write the traffic replayed as CSV (for bench --schedule)");
  cmd->add_option("--startup-seconds", a->startup_s,
                  "Container start to ready (model load, warm-up, probe)")
      ->capture_default_str();
  cmd->add_option("--startup-log", a->startup_log,
                  "Take the start-up from a tideserve serve log (the serving event's ready_ms)");
  cmd->add_option("--scheduling-seconds", a->scheduling_s,
                  "Pod created to container started (scheduling, image pull)")
      ->capture_default_str();
  cmd->add_option("--startup-cpu-cores", a->startup_cpu,
                  "CPU a starting pod burns (what a CPU target sees of it)")
      ->capture_default_str();
  cmd->add_option("--slo-p99-ms", a->slo_p99_ms, "SLO (default: the profile's)");
  cmd->add_option("--admission-limit", a->admission_limit,
                  "Requests a replica holds before 429 (serve --max-concurrent-requests)")
      ->capture_default_str();
  cmd->add_option("--signal", a->signals,
                  "NAME=KIND[:AGG]: what a metric or trigger stands for (KIND cpu, memory, p99, "
                  "p50 (seconds), rps, inflight; AGG sum, avg, max)");
  cmd->add_option("--scrape-interval", a->sim.pipeline.prometheus_scrape_s,
                  "Prometheus scrape interval, seconds")
      ->capture_default_str();
  cmd->add_option("--resource-interval", a->sim.pipeline.resource_scrape_s,
                  "metrics-server resolution, seconds")
      ->capture_default_str();
  cmd->add_option("--rate-window", a->sim.pipeline.rate_window_s,
                  "Recording rules' rate()/histogram window, seconds")
      ->capture_default_str();
  cmd->add_option("--adapter-lag", a->sim.pipeline.adapter_lag_s,
                  "Age of the values the adapter serves, seconds")
      ->capture_default_str();
  cmd->add_option("--window-seconds", a->window_s, "Reporting window")->capture_default_str();
  cmd->add_option("--warmup-seconds", a->sim.warmup_s,
                  "Replay the first rate this long before t = 0 (not reported): the day starts "
                  "from the replicas the controller settles to")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--json", a->json_out, "Write the result (summary, windows, scalings) as JSON");
  cmd->add_option("--csv", a->csv_out, "Write the windows as CSV");
  cmd->add_option("--svg", a->svg_out, "Write the plot (traffic, replicas, latency) as SVG");
  cmd->add_flag("--recommend", a->recommend,
                "Search minReplicas, the targets and a time-of-day floor for the least "
                "replica-hours within the SLO");
  cmd->add_option("--max-violation-minutes", a->goal.max_violation_minutes,
                  "Recommendations: SLO-violation minutes allowed")
      ->capture_default_str();
  cmd->callback([a, cmd]() {
    if (cmd->get_subcommands().empty()) {
      if (a->profile_file.empty()) {
        std::fprintf(stderr, "tideserve: error: plan needs --profile (see --help)\n");
        throw CLI::RuntimeError(2);
      }
      throw CLI::RuntimeError(run_plan(*a));
    }
  });

  auto c = std::make_shared<PlanArgs>();
  CLI::App* ctl = cmd->add_subcommand(
      "controller",
      "Run the HPA (or KEDA + its HPA) alone on a CSV of metric values and print the replica "
      "count after every sync (CSV: time_s,replicas,metric_replicas,reason). The input CSV has a "
      "header; each row is one sync at time_s (seconds). Columns: one per metric, named as the "
      "metric (cpu, memory, a Pods or External metric's name; for KEDA the trigger's name or "
      "type, or trigger<i>): Resource and Pods values are per-pod averages over the ready pods "
      "(quantities: 350m, 0.35, 1Gi), External values totals; a cron trigger is computed from "
      "--start + time_s. Optional: pods (default: the replica count), ready (default: all), "
      "cpu_request and memory_request per pod (default: the workload's). An empty cell is a "
      "missing value.");
  add_common(ctl, c.get());
  ctl->add_option("--metrics", c->metrics_file, "The CSV of metric values")
      ->required()
      ->check(CLI::ExistingFile);
  ctl->callback([c]() { throw CLI::RuntimeError(run_controller(*c)); });
}

}  // namespace tideserve::cli
