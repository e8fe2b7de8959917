// Reads the autoscaling objects `tideserve plan` replays from Kubernetes manifests: YAML files
// (several documents each, `List` kinds included) or the output of `kubectl kustomize`.
//   HorizontalPodAutoscaler (autoscaling/v2)  -> HpaSpec
//   ScaledObject (keda.sh/v1alpha1)           -> ScaledObjectSpec
//   Deployment, StatefulSet, Rollout          -> WorkloadSpec (the pods' requests: the
//                                                denominator of a Utilization target)
// Everything else is skipped. A field the replay would have to guess (an unknown metric type,
// a malformed quantity) is an error naming the object and the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tideserve/plan/hpa.h"
#include "tideserve/plan/keda.h"
#include "tideserve/util/status.h"

namespace tideserve::plan {

struct WorkloadSpec {
  std::string kind, name;
  int32_t replicas = 1;              // spec.replicas (1 when absent)
  int64_t cpu_request_milli = 0;     // the pod template's containers, summed
  int64_t memory_request_milli = 0;  // milli-bytes
  std::string workload_ref;          // a Rollout's spec.workloadRef.name (its pod template)
};

struct Manifests {
  std::vector<HpaSpec> hpas;
  std::vector<ScaledObjectSpec> scaled_objects;
  std::vector<WorkloadSpec> workloads;
};

// A Kubernetes quantity ("250m", "1.5", "2Gi", "100M", "1e3") in milli-units, rounded up as
// Quantity.MilliValue() does.
Result<int64_t> parse_quantity_milli(const std::string& text);

// One YAML stream (documents separated by ---).
Result<Manifests> parse_manifests(const std::string& yaml);

// Files, directories (their *.yaml / *.yml; a directory with a kustomization.yaml is rendered
// with `kubectl kustomize`), or "-" for standard input; merged in order.
Result<Manifests> read_manifests(const std::vector<std::string>& paths);

// The pods' requests for an autoscaler's target: the workload named `target_name`, of kind
// `target_kind` when given (without one, a Rollout wins over a same-named Deployment, then a
// StatefulSet); a Rollout with a workloadRef takes its Deployment's requests (replicas stay the
// Rollout's). Not found: an error.
Result<WorkloadSpec> find_workload(const Manifests& manifests, const std::string& target_name,
                                   const std::string& target_kind = "");

}  // namespace tideserve::plan
