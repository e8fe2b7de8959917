// The traffic a replay is driven by: a trace (the rate schedule CSV `tideserve bench
// --schedule` also takes: "time_s,rate" rows, piecewise constant) or a built-in tidal day.
#pragma once

#include <cstdint>
#include <vector>

#include "tideserve/loadgen/load_generator.h"

namespace tideserve::plan {

using loadgen::RatePoint;

// A working day's traffic: a night trough, a morning and an evening peak (Gaussian bumps over
// the trough), multiplicative noise per step; the time of day in hours on the replay's clock.
struct TidalDay {
  double trough_rps = 20;
  double morning_peak_rps = 200;
  double morning_peak_hour = 10.5;
  double evening_peak_rps = 160;
  double evening_peak_hour = 20;
  double peak_width_hours = 2.5;  // the bumps' standard deviation
  double noise = 0.05;            // relative standard deviation per step
  double step_s = 60;
  double duration_s = 86400;
  uint64_t seed = 1;
};
std::vector<RatePoint> tidal_day(const TidalDay& day);

// The rate the schedule gives at `t_s` (0 before its first point).
double rate_at(const std::vector<RatePoint>& schedule, double t_s);

}  // namespace tideserve::plan
