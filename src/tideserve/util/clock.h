// The one clock for durations (monotonic) and the conversions every layer reports them in.
#pragma once

#include <chrono>

namespace tideserve {

using Clock = std::chrono::steady_clock;

inline double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}
inline double ms_since(Clock::time_point t) {
  return ms_between(t, Clock::now());
}
inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace tideserve
