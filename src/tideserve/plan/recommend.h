// Recommendations: the autoscaling configuration that meets the SLO at the least replica-hours,
// found by replaying candidates (coordinate descent over minReplicas, each metric's target and
// a time-of-day floor: its size, start and end; two passes, each parameter's candidates tried
// with the others held).
#pragma once

#include <string>
#include <vector>

#include "tideserve/plan/simulator.h"

namespace tideserve::plan {

struct Goal {
  double max_violation_minutes = 0;  // windows over the SLO allowed
  double max_rejected_ratio = 0.001;
  int passes = 2;
};

struct Candidate {
  Scaling scaling;
  SimResult result;
  bool feasible = false;
  std::vector<std::string> changes;  // what differs from the manifests, in words
};

struct Recommendation {
  Candidate baseline;  // the manifests as written
  Candidate best;
  int evaluated = 0;
};

Result<Recommendation> recommend(const ReplicaModel& model, const std::vector<RatePoint>& traffic,
                                 double duration_s, const Scaling& scaling,
                                 const SimOptions& options, const Goal& goal);

// "HH:MM" of minutes after midnight.
std::string clock_text(int minute);

}  // namespace tideserve::plan
