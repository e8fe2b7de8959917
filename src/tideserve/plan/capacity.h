// One replica as `tideserve plan` models it, from a `tideserve bench --profile` capacity profile:
// its service capacity, the latency distribution it gives at a steady offered rate (batching
// included, because the profile measured it), its CPU at that rate, and what happens beyond
// capacity (a fluid queue, 429 past the admission limit).
//
// Latency distributions are kept as histograms on one fixed logarithmic grid, so a window's
// percentiles over many replicas and seconds are a sum of histograms and one scan.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tideserve/util/status.h"

namespace tideserve::plan {

struct ProfileStep {
  double offered_rate = 0, throughput = 0;
  double goodput = -1;  // 2xx answers completed within the step, per second (<0: not measured)
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0;
  int64_t requests = 0, errors = 0;
  double cpu_cores = -1;     // <0: not measured
  double memory_bytes = -1;  // <0: not measured
  bool within_slo = false;
};

struct CapacityProfile {
  std::string url, route;
  double slo_p99_ms = 0;
  double capacity_rps = 0;  // the highest throughput within the profile's SLO
  std::vector<ProfileStep> steps;
};

// The JSON `tideserve bench --profile OUT` writes.
Result<CapacityProfile> parse_capacity_profile(std::string_view json);

// A latency histogram on the fixed grid: kBins log-spaced bins from kMinMs to kMaxMs (values
// outside fall into the end bins).
class LatencyHistogram {
 public:
  static constexpr int kBins = 320;
  static constexpr double kMinMs = 0.05;
  static constexpr double kMaxMs = 1e6;

  void add(const LatencyHistogram& other, double weight = 1);
  // `count` requests whose latency quantiles are given by `quantile_ms(q)`, shifted by `shift_ms`.
  void add_distribution(const std::array<double, 4>& p50_p90_p99_p999_ms, double shift_ms,
                        double count);
  double count() const { return total_; }
  // The share of requests faster than `x_ms` (0..1), interpolated within a bin; 0 when empty.
  double fraction_below_ms(double x_ms) const;
  // The same at n ascending bounds in one pass.
  void fractions_below_ms(const double* bounds_ms, int n, double* out) const;
  // The q-quantile (0..1), interpolated within a bin; 0 when empty.
  double quantile_ms(double q) const;
  void clear();

  static double bin_lower_ms(int bin);

 private:
  std::array<double, kBins> counts_{};
  double total_ = 0;
};

struct ReplicaLimits {
  int64_t admission_limit = 512;  // requests a replica holds at once (--max-concurrent-requests)
};

// The replica model: steady figures interpolated between the profile's stable steps (those
// where throughput kept up with the offered rate), a queue beyond.
class ReplicaModel {
 public:
  static Result<ReplicaModel> create(const CapacityProfile& profile, ReplicaLimits limits = {});

  // The most a replica serves per second (the highest goodput the profile saw).
  double service_rate() const { return service_rate_; }
  // The highest offered rate the profile held steadily (its latencies are measured up to here).
  double stable_rate() const { return stable_rate_; }
  int64_t admission_limit() const { return limits_.admission_limit; }

  // Latency quantiles (p50, p90, p99, p99.9 in ms) at a steady offered rate below capacity.
  std::array<double, 4> quantiles_at(double rate) const;
  // The CPU a replica uses at `rate` (cores; 0 if the profile has none) and its memory.
  double cpu_cores_at(double rate) const;
  double memory_bytes() const { return memory_bytes_; }
  bool has_cpu() const { return has_cpu_; }

  // One replica for one time step: `arrivals` requests offered in `dt_s` on top of `queue`
  // (requests waiting beyond what it serves, carried between steps; updated). Returns what was
  // accepted, what was refused (429) and the histogram of the accepted requests' latencies.
  struct Step {
    double accepted = 0, rejected = 0, wait_ms = 0;
    double served_rate = 0;  // requests/s it worked at (for CPU)
  };
  Step step(double arrivals, double dt_s, double& queue, LatencyHistogram& out) const;

 private:
  ReplicaModel() = default;
  std::vector<ProfileStep> stable_;  // ascending offered rate
  double service_rate_ = 0, stable_rate_ = 0, memory_bytes_ = 0;
  bool has_cpu_ = false;
  std::vector<std::pair<double, double>> cpu_;  // (throughput, cores), ascending
  ReplicaLimits limits_;
  // Histograms of one request at a steady rate, by rate in steps of 1 % of service_rate()
  // (made once: a model is then read-only, shared by threads).
  std::vector<LatencyHistogram> steady_;
};

}  // namespace tideserve::plan
