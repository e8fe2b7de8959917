#include "tideserve/plan/report.h"

#include <cmath>

#include <fmt/format.h>

#include "tideserve/plan/plot.h"
#include "tideserve/util/log.h"

namespace tideserve::plan {

std::string json_quote(std::string_view text) {
  std::string out;
  append_json_string(out, text);
  return out;
}

std::string result_json(const SimResult& r, double slo_p99_ms) {
  std::string out = fmt::format(
      "{{\"slo_p99_ms\":{},\"requests\":{:.0f},\"rejected\":{:.0f},\"p50_ms\":{:.2f},"
      "\"p99_ms\":{:.2f},\"replica_hours\":{:.3f},\"violation_minutes\":{:.2f},\"max_pods\":{},"
      "\"windows\":[",
      slo_p99_ms, r.requests, r.rejected, r.p50_ms, r.p99_ms, r.replica_hours, r.violation_minutes,
      r.max_pods);
  for (size_t i = 0; i < r.windows.size(); ++i) {
    const Window& w = r.windows[i];
    out += fmt::format(
        "{}{{\"t_s\":{:.0f},\"offered_rps\":{:.3f},\"requests\":{:.1f},\"rejected\":{:.1f},"
        "\"p50_ms\":{:.2f},\"p99_ms\":{:.2f},\"pods\":{},\"ready\":{},\"violated\":{}}}",
        i ? "," : "", w.t_s, w.offered_rps, w.requests, w.rejected, w.p50_ms, w.p99_ms, w.pods,
        w.ready, w.violated ? "true" : "false");
  }
  out += "],\"syncs\":[";
  bool first = true;
  for (const SyncRecord& s : r.syncs) {
    if (s.desired == s.current) continue;  // the changes only
    // What each metric was seen as: utilization percent, or milli-value (null: not computed).
    std::string seen;
    for (size_t i = 0; i < s.values.size(); ++i) {
      seen +=
          fmt::format("{}{}", i ? "," : "", s.values[i] ? fmt::format("{}", *s.values[i]) : "null");
    }
    out += fmt::format("{}{{\"t_s\":{:.0f},\"from\":{},\"to\":{},\"reason\":{},\"metrics\":[{}]}}",
                       first ? "" : ",", s.t_s, s.current, s.desired, json_quote(s.reason), seen);
    first = false;
  }
  out += "]}\n";
  return out;
}

std::string windows_csv(const SimResult& r) {
  std::string out = "t_s,offered_rps,requests,rejected,p50_ms,p99_ms,pods,ready,violated\n";
  for (const Window& w : r.windows) {
    out += fmt::format("{:.0f},{:.3f},{:.1f},{:.1f},{:.2f},{:.2f},{},{},{}\n", w.t_s, w.offered_rps,
                       w.requests, w.rejected, w.p50_ms, w.p99_ms, w.pods, w.ready,
                       w.violated ? 1 : 0);
  }
  return out;
}

std::string result_svg(const SimResult& r, const std::vector<RatePoint>& traffic, double slo_p99_ms,
                       double start_clock_s, const std::string& title, const SimResult* compare,
                       const std::string& compare_label) {
  auto series = [](const SimResult& res, const std::string& label, const std::string& color,
                   auto value, bool step) {
    PlotSeries s;
    s.label = label;
    s.color = color;
    s.step = step;
    for (const Window& w : res.windows) {
      s.t_s.push_back(w.t_s);
      const double v = value(w);
      s.y.push_back(v);
    }
    return s;
  };
  auto nan_if_empty = [](double requests, double v) { return requests > 0 ? v : std::nan(""); };

  PlotPanel load{"Traffic", "requests/s", {}, {}, false};
  PlotSeries offered;
  offered.label = "offered";
  offered.color = "#1f77b4";
  offered.step = true;
  for (const RatePoint& p : traffic) {
    offered.t_s.push_back(p.at_s);
    offered.y.push_back(p.rate);
  }
  load.series.push_back(offered);
  load.series.push_back(series(
      r, "refused (429/503)", "#d62728",
      [](const Window& w) { return w.requests > 0 ? w.offered_rps * w.rejected / w.requests : 0; },
      false));

  PlotPanel pods{"Replicas", "pods", {}, {}, false};
  pods.series.push_back(series(
      r, "pods (paid)", "#2ca02c", [](const Window& w) { return w.pods; }, true));
  pods.series.push_back(series(
      r, "ready", "#98df8a", [](const Window& w) { return w.ready; }, true));
  if (compare) {
    pods.series.push_back(series(
        *compare, compare_label + " pods", "#9467bd", [](const Window& w) { return w.pods; },
        true));
  }

  PlotPanel latency{"Latency", "ms", {}, {}, true};
  latency.series.push_back(series(
      r, "p99", "#ff7f0e",
      [&](const Window& w) { return nan_if_empty(w.requests - w.rejected, w.p99_ms); }, false));
  latency.series.push_back(series(
      r, "p50", "#8c564b",
      [&](const Window& w) { return nan_if_empty(w.requests - w.rejected, w.p50_ms); }, false));
  if (compare) {
    latency.series.push_back(series(
        *compare, compare_label + " p99", "#9467bd",
        [&](const Window& w) { return nan_if_empty(w.requests - w.rejected, w.p99_ms); }, false));
  }
  latency.lines.push_back({fmt::format("SLO p99 {} ms", slo_p99_ms), slo_p99_ms, "#d62728"});

  PlotOptions o;
  o.title = title;
  o.start_clock_s = start_clock_s;
  return render_svg({load, pods, latency}, o);
}

}  // namespace tideserve::plan
