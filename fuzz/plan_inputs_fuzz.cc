// What `tideserve plan` reads from its user, parsed from arbitrary bytes: Kubernetes manifests
// (then replayed for two simulated minutes when they hold an autoscaler), a capacity profile, a
// rate schedule, a quantity and a cron spec. The first byte chooses the reader. Every malformed
// input must be an error Status; every accepted one must replay without a crash.
#include "fuzz_util.h"
#include "tideserve/loadgen/load_generator.h"
#include "tideserve/plan/capacity.h"
#include "tideserve/plan/cron.h"
#include "tideserve/plan/manifest.h"
#include "tideserve/plan/simulator.h"

namespace {

using namespace tideserve::plan;  // NOLINT

const ReplicaModel& model() {
  static const ReplicaModel m = [] {
    CapacityProfile p;
    for (double rate : {10.0, 40.0, 80.0}) {
      ProfileStep s;
      s.offered_rate = s.throughput = s.goodput = rate;
      s.p50_ms = rate / 4;
      s.p90_ms = rate / 2;
      s.p99_ms = s.p999_ms = rate;
      s.cpu_cores = rate / 100;
      s.memory_bytes = 1e8;
      p.steps.push_back(s);
    }
    return std::move(ReplicaModel::create(p)).value();
  }();
  return m;
}

void replay(const Manifests& m) {
  SimOptions o;
  o.warmup_s = 30;
  o.start_epoch_s = 1764547200;
  const std::vector<RatePoint> traffic = {{0, 50}, {60, 150}};
  for (const HpaSpec& h : m.hpas) {
    Scaling s;
    s.hpa = h;
    s.cpu_request_milli = 1000;
    s.memory_request_milli = 1000000;
    (void)simulate(model(), traffic, 120, s, o);
  }
  for (const ScaledObjectSpec& so : m.scaled_objects) {
    Scaling s;
    s.keda = so;
    s.cpu_request_milli = 1000;
    (void)simulate(model(), traffic, 120, s, o);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 5) {
    case 0: {
      auto m = parse_manifests(body);
      if (m.is_ok()) replay(*m);
      break;
    }
    case 1: {
      auto p = parse_capacity_profile(body);
      if (p.is_ok()) (void)ReplicaModel::create(*p);
      break;
    }
    case 2:
      (void)tideserve::loadgen::parse_rate_schedule(body);
      break;
    case 3:
      (void)parse_quantity_milli(body);
      break;
    case 4: {
      auto c = CronSchedule::parse(body);
      if (c.is_ok()) (void)c->next(1764547200, TimeZone::utc());
      break;
    }
  }
  return 0;
}
