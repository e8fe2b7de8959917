#include "tideserve/plan/traffic.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>

namespace tideserve::plan {
namespace {

// A standard normal from the generator's raw 64-bit outputs (Box-Muller): unlike
// std::normal_distribution, the same sequence with every standard library.
double standard_normal(std::mt19937_64& rng) {
  constexpr double kScale = 1.0 / 9007199254740992.0;                   // 2^-53
  const double u1 = (static_cast<double>(rng() >> 11) + 0.5) * kScale;  // (0, 1)
  const double u2 = static_cast<double>(rng() >> 11) * kScale;          // [0, 1)
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// A Gaussian bump centred on `peak_hour`, distance taken around the 24-hour clock so that the
// evening bump carries on past midnight.
double bump(double hour, double peak_hour, double width) {
  double d = std::fmod(std::fabs(hour - peak_hour), 24.0);
  d = std::min(d, 24.0 - d);
  return std::exp(-0.5 * (d / width) * (d / width));
}

}  // namespace

std::vector<RatePoint> tidal_day(const TidalDay& day) {
  std::vector<RatePoint> out;
  if (!(day.step_s > 0) || !(day.duration_s > 0)) return out;
  std::mt19937_64 rng(day.seed);
  const double width = day.peak_width_hours > 0 ? day.peak_width_hours : 1e-9;
  const double morning = std::max(0.0, day.morning_peak_rps - day.trough_rps);
  const double evening = std::max(0.0, day.evening_peak_rps - day.trough_rps);
  // Log-normal noise with mean 1 and relative standard deviation `noise`: never negative.
  const double sigma = day.noise > 0 ? std::sqrt(std::log1p(day.noise * day.noise)) : 0.0;
  const auto steps = static_cast<size_t>(std::ceil(day.duration_s / day.step_s - 1e-9));
  out.reserve(steps);
  for (size_t i = 0; i < steps; ++i) {
    const double t = static_cast<double>(i) * day.step_s;
    const double hour = std::fmod(t / 3600.0, 24.0);
    double rate = std::max(0.0, day.trough_rps) +
                  morning * bump(hour, day.morning_peak_hour, width) +
                  evening * bump(hour, day.evening_peak_hour, width);
    if (sigma > 0) rate *= std::exp(sigma * standard_normal(rng) - 0.5 * sigma * sigma);
    out.push_back({t, std::max(0.0, rate)});
  }
  return out;
}

double rate_at(const std::vector<RatePoint>& schedule, double t_s) {
  const auto after = std::upper_bound(schedule.begin(), schedule.end(), t_s,
                                      [](double t, const RatePoint& p) { return t < p.at_s; });
  if (after == schedule.begin()) return 0;
  return std::prev(after)->rate;
}

}  // namespace tideserve::plan
