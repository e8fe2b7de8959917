#include "tideserve/plan/capacity.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <simdjson.h>

namespace tideserve::plan {

namespace {

// The standard normal's quantiles of the four percentiles a profile measures: the latency
// distribution is log-linear in them (a log-normal between each pair of measured percentiles).
constexpr std::array<double, 4> kZ = {0.0, 1.2815515655446004, 2.3263478740408408,
                                      3.0902323061678132};

double normal_cdf(double z) {
  return 0.5 * std::erfc(-z / std::sqrt(2.0));
}

// The CDF at `x_ms` of the distribution through the four quantiles (ascending, > 0).
double cdf(const std::array<double, 4>& q, double x_ms) {
  if (x_ms <= 0) return 0;
  const double lx = std::log(x_ms);
  std::array<double, 4> lq;
  for (int i = 0; i < 4; ++i) lq[i] = std::log(q[i]);
  int seg = 0;  // the segment [seg, seg + 1] used (the end ones extrapolate)
  if (lx >= lq[2]) {
    seg = 2;
  } else if (lx >= lq[1]) {
    seg = 1;
  }
  const double span = lq[seg + 1] - lq[seg];
  const double z = kZ[seg] + (lx - lq[seg]) * (kZ[seg + 1] - kZ[seg]) / span;
  return normal_cdf(z);
}

// Quantiles made strictly ascending and positive (a profile can measure p90 == p99 on a coarse
// histogram; the CDF above needs a slope).
std::array<double, 4> ascending(std::array<double, 4> q) {
  q[0] = std::max(q[0], LatencyHistogram::kMinMs);
  for (int i = 1; i < 4; ++i) q[i] = std::max(q[i], q[i - 1] * 1.001);
  return q;
}

double interpolate(double x, double x0, double x1, double y0, double y1) {
  if (x1 <= x0) return y1;
  return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

}  // namespace

Result<CapacityProfile> parse_capacity_profile(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element root;
  if (auto err = parser.parse(padded).get(root)) {
    return invalid_argument(
        fmt::format("capacity profile: not JSON ({})", simdjson::error_message(err)));
  }
  CapacityProfile p;
  auto number = [](simdjson::dom::element e, const char* key, double fallback) {
    double v = 0;
    if (e[key].get_double().get(v) == simdjson::SUCCESS) return v;
    int64_t i = 0;
    if (e[key].get_int64().get(i) == simdjson::SUCCESS) return static_cast<double>(i);
    return fallback;
  };
  std::string_view s;
  if (root["url"].get_string().get(s) == simdjson::SUCCESS) p.url = std::string(s);
  if (root["route"].get_string().get(s) == simdjson::SUCCESS) p.route = std::string(s);
  p.slo_p99_ms = number(root, "slo_p99_ms", 0);
  p.capacity_rps = number(root, "capacity_rps", 0);
  simdjson::dom::array steps;
  if (root["steps"].get_array().get(steps) != simdjson::SUCCESS) {
    return invalid_argument(
        "capacity profile: no \"steps\" array (write one with tideserve bench "
        "--profile)");
  }
  for (simdjson::dom::element e : steps) {
    ProfileStep st;
    st.offered_rate = number(e, "offered_rate", -1);
    st.throughput = number(e, "throughput", -1);
    st.goodput = number(e, "goodput", -1);
    st.p50_ms = number(e, "p50_ms", -1);
    st.p90_ms = number(e, "p90_ms", -1);
    st.p99_ms = number(e, "p99_ms", -1);
    st.p999_ms = number(e, "p999_ms", st.p99_ms);
    st.requests = static_cast<int64_t>(number(e, "requests", 0));
    st.errors = static_cast<int64_t>(number(e, "errors", 0));
    st.cpu_cores = number(e, "cpu_cores", -1);
    st.memory_bytes = number(e, "memory_bytes", -1);
    bool within = false;
    if (e["within_slo"].get_bool().get(within) == simdjson::SUCCESS) st.within_slo = within;
    if (st.offered_rate < 0 || st.throughput < 0 || st.p50_ms < 0 || st.p99_ms < 0 ||
        st.p90_ms < 0) {
      return invalid_argument(
          fmt::format("capacity profile: step {} lacks offered_rate, throughput or p50/p90/p99_ms",
                      p.steps.size()));
    }
    p.steps.push_back(st);
  }
  if (p.steps.empty()) return invalid_argument("capacity profile: no steps");
  return p;
}

// --- LatencyHistogram ---

double LatencyHistogram::bin_lower_ms(int bin) {
  static const double ratio = std::log(kMaxMs / kMinMs) / kBins;
  return kMinMs * std::exp(ratio * bin);
}

void LatencyHistogram::add(const LatencyHistogram& other, double weight) {
  for (int i = 0; i < kBins; ++i) counts_[i] += weight * other.counts_[i];
  total_ += weight * other.total_;
}

void LatencyHistogram::add_distribution(const std::array<double, 4>& quantiles, double shift_ms,
                                        double count) {
  if (count <= 0) return;
  const std::array<double, 4> q = ascending(quantiles);
  double below = 0;  // CDF at the current bin's lower edge
  for (int i = 0; i < kBins; ++i) {
    const double upper = i + 1 == kBins ? 1.0 : cdf(q, bin_lower_ms(i + 1) - shift_ms);
    counts_[i] += count * (upper - below);
    below = upper;
  }
  total_ += count;
}

double LatencyHistogram::quantile_ms(double q) const {
  if (total_ <= 0) return 0;
  const double want = q * total_;
  double seen = 0;
  for (int i = 0; i < kBins; ++i) {
    if (counts_[i] <= 0) continue;
    if (seen + counts_[i] >= want) {
      const double f = std::clamp((want - seen) / counts_[i], 0.0, 1.0);
      const double lo = bin_lower_ms(i), hi = bin_lower_ms(i + 1);
      return lo * std::pow(hi / lo, f);  // log-uniform within the bin
    }
    seen += counts_[i];
  }
  return bin_lower_ms(kBins);
}

double LatencyHistogram::fraction_below_ms(double x_ms) const {
  double out = 0;
  fractions_below_ms(&x_ms, 1, &out);
  return out;
}

void LatencyHistogram::fractions_below_ms(const double* bounds_ms, int n, double* out) const {
  static const double per_bin = std::log(kMaxMs / kMinMs) / kBins;
  double seen = 0;  // counts of the bins below `bin`
  int bin = 0;
  for (int j = 0; j < n; ++j) {
    if (total_ <= 0 || bounds_ms[j] <= kMinMs) {
      out[j] = 0;
      continue;
    }
    const double pos = std::log(bounds_ms[j] / kMinMs) / per_bin;
    const int whole = std::min(static_cast<int>(pos), kBins);
    for (; bin < whole; ++bin) seen += counts_[bin];
    const double part = whole < kBins ? counts_[whole] * (pos - whole) : 0;
    out[j] = std::min((seen + part) / total_, 1.0);
  }
}

void LatencyHistogram::clear() {
  counts_.fill(0);
  total_ = 0;
}

// --- ReplicaModel ---

Result<ReplicaModel> ReplicaModel::create(const CapacityProfile& profile, ReplicaLimits limits) {
  ReplicaModel m;
  m.limits_ = limits;
  if (limits.admission_limit <= 0) return invalid_argument("admission limit must be positive");
  std::vector<ProfileStep> steps = profile.steps;
  std::sort(steps.begin(), steps.end(), [](const ProfileStep& a, const ProfileStep& b) {
    return a.offered_rate < b.offered_rate;
  });
  for (const ProfileStep& s : steps) {
    // What it sustained: the 2xx answers completed within the step (a profile without goodput:
    // its throughput, which also counts 429s and answers drained after the step).
    const double served = s.goodput >= 0 ? s.goodput : s.throughput;
    m.service_rate_ = std::max(m.service_rate_, served);
    // Stable: it kept up (the same 90 % rule as the profile's own stopping test) without errors.
    const double error_ratio =
        s.requests > 0 ? static_cast<double>(s.errors) / static_cast<double>(s.requests) : 0;
    if (served >= 0.9 * s.offered_rate && error_ratio <= 0.01 && s.p50_ms > 0) {
      m.stable_.push_back(s);
    }
    if (s.cpu_cores >= 0) {
      m.has_cpu_ = true;
      m.cpu_.emplace_back(served, s.cpu_cores);
    }
    if (s.memory_bytes > 0) m.memory_bytes_ = std::max(m.memory_bytes_, s.memory_bytes);
  }
  if (m.stable_.empty()) {
    return invalid_argument(
        "capacity profile: no step kept up with its offered rate (start the profile lower: "
        "--profile-start-rate)");
  }
  if (m.service_rate_ <= 0) return invalid_argument("capacity profile: zero throughput");
  m.stable_rate_ = m.stable_.back().offered_rate;
  // A profile that never saturated: its capacity is at least what it held.
  m.service_rate_ = std::max(m.service_rate_, m.stable_rate_);
  std::sort(m.cpu_.begin(), m.cpu_.end());
  m.steady_.resize(101);
  for (int key = 0; key <= 100; ++key) {
    m.steady_[key].add_distribution(m.quantiles_at(m.service_rate_ * key / 100.0), 0, 1);
  }
  return m;
}

std::array<double, 4> ReplicaModel::quantiles_at(double rate) const {
  auto of = [](const ProfileStep& s) {
    return std::array<double, 4>{s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms};
  };
  const ProfileStep& first = stable_.front();
  const ProfileStep& last = stable_.back();
  if (rate <= first.offered_rate) return of(first);
  if (rate <= last.offered_rate) {
    for (size_t i = 1; i < stable_.size(); ++i) {
      if (rate > stable_[i].offered_rate) continue;
      const ProfileStep &a = stable_[i - 1], &b = stable_[i];
      std::array<double, 4> q, qa = of(a), qb = of(b);
      for (int k = 0; k < 4; ++k) {
        // Log-linear in the rate: latencies grow multiplicatively as the queue builds.
        q[k] = std::exp(
            interpolate(rate, a.offered_rate, b.offered_rate, std::log(qa[k]), std::log(qb[k])));
      }
      return q;
    }
  }
  // Between the last steady step and capacity: the queueing part of the latency (above the
  // lightest step's) grows as 1 / (1 - utilization), the M/M/1 sojourn's shape.
  // No request waits longer than the admission limit's worth of work (Little: at most that many
  // in the replica, served at its capacity), which caps the growth.
  const double rho_last = std::min(last.offered_rate / service_rate_, 0.99);
  const double rho = std::min(rate / service_rate_, 0.99);
  const double factor = (1 - rho_last) / (1 - std::max(rho, rho_last));
  const double cap_ms = static_cast<double>(limits_.admission_limit) / service_rate_ * 1000;
  std::array<double, 4> q, lo = of(first), hi = of(last);
  for (int k = 0; k < 4; ++k) {
    q[k] = std::min(lo[k] + std::max(hi[k] - lo[k], 0.0) * factor, hi[k] + cap_ms);
  }
  return q;
}

double ReplicaModel::cpu_cores_at(double rate) const {
  if (cpu_.empty()) return 0;
  if (rate <= cpu_.front().first) {
    return interpolate(rate, 0, cpu_.front().first, 0, cpu_.front().second);
  }
  for (size_t i = 1; i < cpu_.size(); ++i) {
    if (rate <= cpu_[i].first) {
      return interpolate(rate, cpu_[i - 1].first, cpu_[i].first, cpu_[i - 1].second,
                         cpu_[i].second);
    }
  }
  return cpu_.back().second;  // saturated: it cannot use more than it did at capacity
}

ReplicaModel::Step ReplicaModel::step(double arrivals, double dt_s, double& queue,
                                      LatencyHistogram& out) const {
  Step r;
  const double rate = arrivals / dt_s;
  const double capacity = service_rate_ * dt_s;
  const double served = std::min(arrivals + queue, capacity);
  double next = queue + arrivals - served;
  // Admission: what is being served (Little: rate x latency) plus the queue must stay under the
  // limit; beyond it the replica answers 429 at once.
  // A queue beyond capacity: the latency is the service alone (the lightest step's, where
  // nothing queued: the steadier steps' latencies already hold the queueing that this queue
  // models) plus the wait for the queue.
  const bool queueing = queue > 0 || arrivals > capacity;
  const std::array<double, 4> q = quantiles_at(queueing ? 0 : std::min(rate, service_rate_));
  const double in_service = std::min(rate, service_rate_) * q[0] / 1000;
  const double room = std::max(static_cast<double>(limits_.admission_limit) - in_service, 0.0);
  if (next > room) {
    r.rejected = std::min(next - room, arrivals);
    next -= r.rejected;
  }
  r.accepted = arrivals - r.rejected;
  r.wait_ms = (queue + next) / 2 / service_rate_ * 1000;
  r.served_rate = served / dt_s;
  queue = next;
  if (r.accepted <= 0) return r;
  if (r.wait_ms < 1e-6) {
    // Steady: one cached histogram per 1 % of capacity.
    const long key = std::lround(100 * std::min(rate, service_rate_) / service_rate_);
    out.add(steady_[std::clamp<long>(key, 0, 100)], r.accepted);
  } else {
    out.add_distribution(q, r.wait_ms, r.accepted);
  }
  return r;
}

}  // namespace tideserve::plan
