// The load generator behind `tideserve bench`: HTTP/1.1 keep-alive clients against any tideserve
// (or compatible) endpoint.
//
//   closed loop  N clients, each sends its next request as soon as its answer arrives
//   open loop    requests arrive on a schedule (Poisson or evenly spaced, at a constant rate or
//                following a rate schedule), whatever the answers do: each is sent on an idle
//                connection, a new one (up to max_connections), or waits for one; its latency
//                counts from its scheduled arrival, so a slow server is never hidden by a
//                generator that waits for it (no coordinated omission), and the wait before it
//                was sent is reported as the generator's lag behind the schedule
//
// Work is split over `threads` shards, each an io_context on its own thread with its share of
// the clients (or of the arrivals), so the generator itself can be given more than one core.
// Nothing here knows tideserve's routes: bodies are given.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "tideserve/util/status.h"

namespace tideserve::loadgen {

enum class Mode { kClosed, kOpen };
enum class Arrival { kPoisson, kConstant };

// The offered rate from `at_s` on (a rate schedule: the points in time order).
struct RatePoint {
  double at_s = 0;
  double rate = 0;  // requests per second
};

// "0,10\n60,50\n..." or with a header line "time_s,rate": seconds from the start, requests/s.
Result<std::vector<RatePoint>> parse_rate_schedule(const std::string& csv);

// Arrival times (seconds from the start) in [0, duration_s): a constant `rate` when `schedule`
// is empty, else the schedule's piecewise-constant rate. Poisson: exponential gaps from `seed`;
// constant: evenly spaced.
std::vector<double> arrival_times(Arrival arrival, double rate,
                                  const std::vector<RatePoint>& schedule, double duration_s,
                                  uint64_t seed);

struct Target {
  std::string host = "127.0.0.1";
  std::string port = "8000";
  std::string method = "POST";
  std::string path = "/embed";
  std::vector<std::string> bodies;  // taken in turn; empty: no body (GET)
  std::vector<std::pair<std::string, std::string>> headers;
};

// "http://host:port[/path]" (http only); `path` is the URL's path, "/" without one.
Result<Target> parse_url(const std::string& url);

// One blocking GET (Connection: close) within `timeout_s`: the status and body, or why not.
struct HttpAnswer {
  int status = 0;
  std::string body;
};
Result<HttpAnswer> http_get(const Target& target, const std::string& path, double timeout_s = 3);

struct LoadOptions {
  Mode mode = Mode::kClosed;
  int concurrency = 8;  // closed: clients; open: connections at most
  double rate = 10;     // open: requests/s (without a schedule)
  Arrival arrival = Arrival::kPoisson;
  std::vector<RatePoint> schedule;  // open: the rate over time
  double duration_s = 10;           // measured
  double warmup_s = 0;              // run first, not measured
  int threads = 1;                  // shards
  uint64_t seed = 1;
  double timeout_s = 60;  // per request; a timeout counts as an error (status 0)
};

// One answered (or failed) request of the measured window.
struct Sample {
  double scheduled_s = 0;  // open loop: its arrival; closed: when it was sent
  double sent_s = 0;
  double latency_ms = 0;  // answer - scheduled
  int status = 0;         // HTTP status; 0: connection error or timeout
};

// Live figures while it runs (for a progress line).
struct Progress {
  double elapsed_s = 0;
  int64_t done = 0;
  int64_t errors = 0;  // status 0 or >= 400
  double p50_ms = 0, p99_ms = 0;
};

struct LoadResult {
  std::vector<Sample> samples;  // the measured window, in completion order
  double duration_s = 0;        // of the measured window
  double offered_rate = 0;      // open: arrivals / duration; closed: 0
  int64_t not_sent = 0;         // open: arrivals still waiting for a connection at the end
};

// Runs the load; `on_progress` (may be null) is called about once a second from this thread.
Result<LoadResult> run_load(const Target& target, const LoadOptions& options,
                            const std::function<void(const Progress&)>& on_progress = nullptr);

// Figures of a set of samples.
struct Summary {
  int64_t requests = 0;
  int64_t ok = 0;                                  // 2xx
  int64_t errors = 0;                              // status 0 or >= 400
  std::vector<std::pair<int, int64_t>> by_status;  // ascending status
  double throughput = 0;                           // answered requests / duration
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0, mean_ms = 0;
  double lag_p50_ms = 0, lag_p99_ms = 0, lag_max_ms = 0;  // sent - scheduled (open loop)
};
Summary summarize(const std::vector<Sample>& samples, double duration_s);

// The q-quantile (0..1) of `values` by nearest rank; 0 for none. Sorts `values`.
double quantile(std::vector<double>& values, double q);

}  // namespace tideserve::loadgen
