// The one clock for durations (monotonic) and the conversions every layer reports them in; and
// the wall clock, for timestamps an API reports (never for durations).
#pragma once

#include <chrono>
#include <cstdint>

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

// Unix time now, from the wall clock.
inline int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
inline int64_t unix_seconds() {
  return unix_ms() / 1000;
}

}  // namespace tideserve
