// What a replay reports: the summary and windows as JSON and CSV, and the plot (traffic,
// replicas and latency on one time axis).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tideserve/plan/simulator.h"

namespace tideserve::plan {

std::string result_json(const SimResult& result, double slo_p99_ms);
// `text` as a JSON string, quotes included (metric names come from the user's manifests).
std::string json_quote(std::string_view text);
// "t_s,offered_rps,requests,rejected,p50_ms,p99_ms,pods,ready,violated" rows, one per window.
std::string windows_csv(const SimResult& result);
// `compare` (may be null): a second replay drawn dashed beside it (the recommendation).
std::string result_svg(const SimResult& result, const std::vector<RatePoint>& traffic,
                       double slo_p99_ms, double start_clock_s, const std::string& title,
                       const SimResult* compare = nullptr, const std::string& compare_label = "");

}  // namespace tideserve::plan
