// The manifest reader against the repository's own deploy/ manifests (every field as written),
// the API server's defaulting, Kubernetes quantities and the errors; and the tidal-day traffic.
#include "tideserve/plan/manifest.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tideserve/plan/traffic.h"

namespace tideserve::plan {
namespace {

namespace fs = std::filesystem;

std::string source_dir() {
  const char* env = std::getenv("TIDESERVE_SOURCE_DIR");
  return env != nullptr ? env : TIDESERVE_SOURCE_DIR;
}

std::string repo(const std::string& path) {
  return source_dir() + "/" + path;
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "manifest_test.XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

void expect_policy(const ScalingPolicy& p, PolicyType type, int32_t value, int32_t period) {
  EXPECT_EQ(p.type, type);
  EXPECT_EQ(p.value, value);
  EXPECT_EQ(p.period_seconds, period);
}

void expect_same_rules(const ScalingRules& a, const ScalingRules& b) {
  EXPECT_EQ(a.stabilization_window_seconds, b.stabilization_window_seconds);
  EXPECT_EQ(a.select_policy, b.select_policy);
  ASSERT_EQ(a.policies.size(), b.policies.size());
  for (size_t i = 0; i < a.policies.size(); ++i) {
    expect_policy(a.policies[i], b.policies[i].type, b.policies[i].value,
                  b.policies[i].period_seconds);
  }
}

// The behavior deploy/k8s/base/autoscaling/hpa.yaml and the KEDA overlay both write.
void expect_repo_behavior(const Behavior& b) {
  EXPECT_EQ(b.scale_up.stabilization_window_seconds, 0);
  EXPECT_EQ(b.scale_up.select_policy, SelectPolicy::kMax);
  ASSERT_EQ(b.scale_up.policies.size(), 2u);
  expect_policy(b.scale_up.policies[0], PolicyType::kPercent, 100, 15);
  expect_policy(b.scale_up.policies[1], PolicyType::kPods, 4, 15);
  EXPECT_EQ(b.scale_down.stabilization_window_seconds, 300);
  EXPECT_EQ(b.scale_down.select_policy, SelectPolicy::kMin);
  ASSERT_EQ(b.scale_down.policies.size(), 1u);
  expect_policy(b.scale_down.policies[0], PolicyType::kPercent, 20, 60);
}

constexpr int64_t kGi = 1024LL * 1024 * 1024;

// Whether `kubectl kustomize` renders here (the tests that need it skip otherwise).
bool kustomize_works() {
  static const bool works = [] {
    return read_manifests({repo("deploy/k8s/base/autoscaling")}).is_ok();
  }();
  return works;
}

// ---- the repository's manifests ------------------------------------------------------------

TEST(RepoManifests, BaseHpaAsWritten) {
  Result<Manifests> m = read_manifests({repo("deploy/k8s/base/autoscaling/hpa.yaml")});
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->hpas.size(), 1u);
  EXPECT_TRUE(m->scaled_objects.empty());
  EXPECT_TRUE(m->workloads.empty());
  const HpaSpec& h = m->hpas[0];
  EXPECT_EQ(h.name, "tideserve");
  EXPECT_EQ(h.target_kind, "Deployment");
  EXPECT_EQ(h.target_name, "tideserve");
  EXPECT_EQ(h.min_replicas, 2);
  EXPECT_EQ(h.max_replicas, 10);
  ASSERT_EQ(h.metrics.size(), 3u);
  EXPECT_EQ(h.metrics[0].type, MetricSourceType::kResource);
  EXPECT_EQ(h.metrics[0].name, "cpu");
  EXPECT_EQ(h.metrics[0].target_type, TargetType::kUtilization);
  EXPECT_EQ(h.metrics[0].target_utilization, 70);
  EXPECT_EQ(h.metrics[1].type, MetricSourceType::kResource);
  EXPECT_EQ(h.metrics[1].name, "memory");
  EXPECT_EQ(h.metrics[1].target_type, TargetType::kUtilization);
  EXPECT_EQ(h.metrics[1].target_utilization, 80);
  EXPECT_EQ(h.metrics[2].type, MetricSourceType::kPods);
  EXPECT_EQ(h.metrics[2].name, "tideserve_request_latency_p99");
  EXPECT_EQ(h.metrics[2].target_type, TargetType::kAverageValue);
  EXPECT_EQ(h.metrics[2].target_milli, 250);  // 250m
  ASSERT_TRUE(h.behavior.has_value());
  expect_repo_behavior(*h.behavior);
}

TEST(RepoManifests, KedaScaledObjectAsWritten) {
  Result<Manifests> m = read_manifests({repo("deploy/k8s/overlays/keda/scaledobject.yaml")});
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->scaled_objects.size(), 1u);
  const ScaledObjectSpec& s = m->scaled_objects[0];
  EXPECT_EQ(s.name, "tideserve");
  EXPECT_EQ(s.target_kind, "Deployment");
  EXPECT_EQ(s.target_name, "tideserve");
  EXPECT_EQ(s.min_replica_count, 2);
  EXPECT_EQ(s.max_replica_count, 10);
  EXPECT_FALSE(s.idle_replica_count.has_value());
  EXPECT_EQ(s.polling_interval_s, 15);
  EXPECT_EQ(s.cooldown_period_s, 300);
  ASSERT_TRUE(s.behavior.has_value());
  expect_repo_behavior(*s.behavior);
  ASSERT_EQ(s.triggers.size(), 4u);

  const Trigger& cpu = s.triggers[0];
  EXPECT_EQ(cpu.type, "cpu");
  EXPECT_EQ(cpu.metric_type, TargetType::kUtilization);
  EXPECT_DOUBLE_EQ(cpu.target, 70);
  const Trigger& memory = s.triggers[1];
  EXPECT_EQ(memory.type, "memory");
  EXPECT_EQ(memory.metric_type, TargetType::kUtilization);
  EXPECT_DOUBLE_EQ(memory.target, 80);

  const Trigger& prom = s.triggers[2];
  EXPECT_EQ(prom.type, "prometheus");
  EXPECT_EQ(prom.metric_type, TargetType::kAverageValue);
  EXPECT_DOUBLE_EQ(prom.target, 0.25);
  EXPECT_DOUBLE_EQ(prom.activation_target, 0);
  ASSERT_EQ(prom.metadata.size(), 4u);
  EXPECT_EQ(prom.metadata[0].first, "serverAddress");
  EXPECT_EQ(prom.metadata[0].second, "http://prometheus-operated.monitoring.svc:9090");
  EXPECT_EQ(prom.metadata[1].first, "query");
  EXPECT_EQ(prom.metadata[1].second,
            "sum(tideserve:request_duration_seconds:p99_pod{namespace=\"tideserve\"})");
  EXPECT_EQ(prom.metadata[2].first, "threshold");
  EXPECT_EQ(prom.metadata[2].second, "0.25");
  EXPECT_EQ(prom.metadata[3].first, "ignoreNullValues");
  EXPECT_EQ(prom.metadata[3].second, "true");

  const Trigger& cron = s.triggers[3];
  EXPECT_EQ(cron.type, "cron");
  EXPECT_EQ(cron.metric_type, TargetType::kAverageValue);  // KEDA's default
  EXPECT_EQ(cron.timezone, "Asia/Shanghai");
  EXPECT_EQ(cron.start, "30 8 * * *");
  EXPECT_EQ(cron.end, "30 21 * * *");
  EXPECT_EQ(cron.desired_replicas, 6);
  EXPECT_DOUBLE_EQ(cron.target, 1);  // the cron scaler's metric target
}

TEST(RepoManifests, BaseWorkloadRequests) {
  Result<Manifests> m = read_manifests({repo("deploy/k8s/base/workload/deployment.yaml")});
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->workloads.size(), 1u);
  const WorkloadSpec& w = m->workloads[0];
  EXPECT_EQ(w.kind, "Deployment");
  EXPECT_EQ(w.name, "tideserve");
  EXPECT_EQ(w.replicas, 3);
  EXPECT_EQ(w.cpu_request_milli, 2000);               // cpu: "2"
  EXPECT_EQ(w.memory_request_milli, 2 * kGi * 1000);  // memory: 2Gi
  EXPECT_TRUE(w.workload_ref.empty());

  Result<WorkloadSpec> found = find_workload(*m, "tideserve");
  ASSERT_TRUE(found.is_ok()) << found.status().to_string();
  EXPECT_EQ(found->cpu_request_milli, 2000);
  EXPECT_FALSE(find_workload(*m, "other").is_ok());
  EXPECT_FALSE(find_workload(*m, "tideserve", "StatefulSet").is_ok());
}

TEST(RepoManifests, KustomizedWorkloadDirectory) {
  if (!kustomize_works()) GTEST_SKIP() << "kubectl kustomize does not run here";
  // deploy/k8s/base/workload has a kustomization.yaml: rendered, not read file by file.
  Result<Manifests> m = read_manifests({repo("deploy/k8s/base/workload")});
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->workloads.size(), 1u);
  EXPECT_EQ(m->workloads[0].cpu_request_milli, 2000);
  EXPECT_EQ(m->workloads[0].replicas, 3);
}

TEST(RepoManifests, ProductionOverlayRendered) {
  if (!kustomize_works()) GTEST_SKIP() << "kubectl kustomize does not run here";
  Result<Manifests> m = read_manifests({repo("deploy/k8s/overlays/production")});
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->hpas.size(), 1u);
  const HpaSpec& h = m->hpas[0];
  EXPECT_EQ(h.target_kind, "Rollout");  // hpa-patch.yaml
  EXPECT_EQ(h.target_name, "tideserve");
  EXPECT_EQ(h.min_replicas, 2);
  EXPECT_EQ(h.max_replicas, 10);
  ASSERT_EQ(h.metrics.size(), 3u);
  EXPECT_EQ(h.metrics[2].target_milli, 250);
  ASSERT_TRUE(h.behavior.has_value());
  expect_repo_behavior(*h.behavior);

  // The Rollout runs Deployment tideserve's template (production sizes: 4 CPUs, 4Gi).
  Result<WorkloadSpec> rollout = find_workload(*m, h.target_name, h.target_kind);
  ASSERT_TRUE(rollout.is_ok()) << rollout.status().to_string();
  EXPECT_EQ(rollout->kind, "Rollout");
  EXPECT_EQ(rollout->workload_ref, "tideserve");
  EXPECT_EQ(rollout->replicas, 1);  // no spec.replicas: the HPA sets it
  EXPECT_EQ(rollout->cpu_request_milli, 4000);
  EXPECT_EQ(rollout->memory_request_milli, 4 * kGi * 1000);
  // Without a kind the Rollout wins over the same-named Deployment (at 0 replicas).
  Result<WorkloadSpec> any = find_workload(*m, "tideserve");
  ASSERT_TRUE(any.is_ok());
  EXPECT_EQ(any->kind, "Rollout");
  Result<WorkloadSpec> deployment = find_workload(*m, "tideserve", "Deployment");
  ASSERT_TRUE(deployment.is_ok());
  EXPECT_EQ(deployment->replicas, 0);
  EXPECT_EQ(deployment->cpu_request_milli, 4000);
}

TEST(RepoManifests, KedaOverlayRendered) {
  if (!kustomize_works()) GTEST_SKIP() << "kubectl kustomize does not run here";
  Result<Manifests> m = read_manifests({repo("deploy/k8s/overlays/keda")});
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->scaled_objects.size(), 1u);
  EXPECT_EQ(m->scaled_objects[0].triggers.size(), 4u);
  Result<WorkloadSpec> w =
      find_workload(*m, m->scaled_objects[0].target_name, m->scaled_objects[0].target_kind);
  EXPECT_TRUE(w.is_ok()) << w.status().to_string();
}

// ---- defaulting ----------------------------------------------------------------------------

const char* kHpaHead = R"(apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  maxReplicas: 5
)";

TEST(Defaults, HpaWithoutBehaviorOrMetrics) {
  Result<Manifests> m = parse_manifests(kHpaHead);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->hpas.size(), 1u);
  const HpaSpec& h = m->hpas[0];
  EXPECT_EQ(h.min_replicas, 1);
  EXPECT_EQ(h.max_replicas, 5);
  EXPECT_FALSE(h.behavior.has_value());  // the legacy path
  // SetDefaults_HorizontalPodAutoscaler: cpu at 80 %.
  ASSERT_EQ(h.metrics.size(), 1u);
  EXPECT_EQ(h.metrics[0].type, MetricSourceType::kResource);
  EXPECT_EQ(h.metrics[0].name, "cpu");
  EXPECT_EQ(h.metrics[0].target_type, TargetType::kUtilization);
  EXPECT_EQ(h.metrics[0].target_utilization, 80);
}

TEST(Defaults, EmptyBehaviorIsTheDefaults) {
  Result<Manifests> m = parse_manifests(std::string(kHpaHead) + "  behavior: {}\n");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_TRUE(m->hpas[0].behavior.has_value());
  const Behavior d = default_behavior();
  expect_same_rules(m->hpas[0].behavior->scale_up, d.scale_up);
  expect_same_rules(m->hpas[0].behavior->scale_down, d.scale_down);
}

TEST(Defaults, OneDirectionGetsTheOthersDefaults) {
  Result<Manifests> m = parse_manifests(std::string(kHpaHead) + R"(  behavior:
    scaleDown:
      policies:
        - type: Pods
          value: 1
          periodSeconds: 60
)");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  const Behavior& b = *m->hpas[0].behavior;
  const Behavior d = default_behavior();
  expect_same_rules(b.scale_up, d.scale_up);
  // scaleDown: the policies as written; selectPolicy Max and the window by default.
  EXPECT_EQ(b.scale_down.select_policy, SelectPolicy::kMax);
  EXPECT_EQ(b.scale_down.stabilization_window_seconds, d.scale_down.stabilization_window_seconds);
  EXPECT_EQ(b.scale_down.stabilization_window_seconds, 300);
  ASSERT_EQ(b.scale_down.policies.size(), 1u);
  expect_policy(b.scale_down.policies[0], PolicyType::kPods, 1, 60);
}

TEST(Defaults, FieldsWithinADirection) {
  Result<Manifests> m = parse_manifests(std::string(kHpaHead) + R"(  behavior:
    scaleUp:
      stabilizationWindowSeconds: 60
    scaleDown:
      selectPolicy: Disabled
)");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  const Behavior& b = *m->hpas[0].behavior;
  const Behavior d = default_behavior();
  EXPECT_EQ(b.scale_up.stabilization_window_seconds, 60);
  EXPECT_EQ(b.scale_up.select_policy, SelectPolicy::kMax);
  expect_same_rules(ScalingRules{60, SelectPolicy::kMax, b.scale_up.policies},
                    ScalingRules{60, SelectPolicy::kMax, d.scale_up.policies});
  EXPECT_EQ(b.scale_down.select_policy, SelectPolicy::kDisabled);
  EXPECT_EQ(b.scale_down.stabilization_window_seconds, 300);
  expect_same_rules(ScalingRules{0, SelectPolicy::kMax, b.scale_down.policies},
                    ScalingRules{0, SelectPolicy::kMax, d.scale_down.policies});
}

TEST(Defaults, ScaledObjectKedaDefaults) {
  Result<Manifests> m = parse_manifests(R"(apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: worker
spec:
  scaleTargetRef:
    name: worker
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 30
  triggers:
    - type: prometheus
      name: queue
      metadata:
        threshold: "12.5"
        activationThreshold: "2"
    - type: redis-streams
      metadata:
        stream: jobs
        consumerGroup: workers
        lagCount: "7"
        activationLagCount: "3"
    - type: redis-streams
      metricType: Value
      metadata:
        stream: jobs
        consumerGroup: workers
        pendingEntriesCount: "9"
    - type: redis-streams
      metadata:
        stream: jobs
    - type: metrics-api
      metadata:
        targetValue: "40"
        activationTargetValue: "4"
    - type: cpu
      metadata:
        type: AverageValue
        value: 500m
)");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->scaled_objects.size(), 1u);
  const ScaledObjectSpec& s = m->scaled_objects[0];
  EXPECT_EQ(s.target_kind, "Deployment");
  EXPECT_EQ(s.target_name, "worker");
  EXPECT_EQ(s.min_replica_count, 0);
  EXPECT_EQ(s.max_replica_count, 100);
  EXPECT_FALSE(s.idle_replica_count.has_value());
  EXPECT_EQ(s.polling_interval_s, 30);
  EXPECT_EQ(s.cooldown_period_s, 300);
  ASSERT_TRUE(s.behavior.has_value());
  const Behavior d = default_behavior();
  expect_same_rules(s.behavior->scale_up, d.scale_up);
  EXPECT_EQ(s.behavior->scale_down.stabilization_window_seconds, 30);
  ASSERT_EQ(s.triggers.size(), 6u);
  EXPECT_EQ(s.triggers[0].name, "queue");
  EXPECT_EQ(s.triggers[0].metric_type, TargetType::kAverageValue);
  EXPECT_DOUBLE_EQ(s.triggers[0].target, 12.5);
  EXPECT_DOUBLE_EQ(s.triggers[0].activation_target, 2);
  EXPECT_DOUBLE_EQ(s.triggers[1].target, 7);  // lagCount
  EXPECT_DOUBLE_EQ(s.triggers[1].activation_target, 3);
  EXPECT_EQ(s.triggers[2].metric_type, TargetType::kValue);
  EXPECT_DOUBLE_EQ(s.triggers[2].target, 9);  // pendingEntriesCount without lagCount
  EXPECT_DOUBLE_EQ(s.triggers[2].activation_target, 0);
  EXPECT_DOUBLE_EQ(s.triggers[3].target, 5);  // streamLength's default (no consumerGroup)
  EXPECT_DOUBLE_EQ(s.triggers[4].target, 40);
  EXPECT_DOUBLE_EQ(s.triggers[4].activation_target, 4);
  EXPECT_EQ(s.triggers[5].metric_type, TargetType::kAverageValue);  // deprecated metadata.type
  EXPECT_DOUBLE_EQ(s.triggers[5].target, 0.5);                      // 500m cores
}

TEST(Defaults, PodRequestsDefaultToLimitsAndSkipInitContainers) {
  Result<Manifests> m = parse_manifests(R"(apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  template:
    spec:
      initContainers:
        - name: init
          resources:
            requests:
              cpu: "8"
      containers:
        - name: a
          resources:
            requests:
              cpu: 250m
              memory: 100Mi
        - name: b
          resources:
            limits:
              cpu: "0.5"
              memory: 1Gi
        - name: c
)");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->workloads.size(), 1u);
  const WorkloadSpec& w = m->workloads[0];
  EXPECT_EQ(w.kind, "StatefulSet");
  EXPECT_EQ(w.replicas, 1);
  EXPECT_EQ(w.cpu_request_milli, 750);
  EXPECT_EQ(w.memory_request_milli, (100LL * 1024 * 1024 + kGi) * 1000);
}

TEST(Defaults, RolloutWorkloadRef) {
  const std::string rollout = R"(apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 4
  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web-template
)";
  Result<Manifests> alone = parse_manifests(rollout);
  ASSERT_TRUE(alone.is_ok()) << alone.status().to_string();
  Result<WorkloadSpec> missing = find_workload(*alone, "web");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("web-template"), std::string::npos);

  Result<Manifests> m = parse_manifests(rollout + R"(---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-template
spec:
  replicas: 0
  template:
    spec:
      containers:
        - name: web
          resources:
            requests:
              cpu: 1500m
              memory: 1G
)");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  Result<WorkloadSpec> w = find_workload(*m, "web", "Rollout");
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  EXPECT_EQ(w->replicas, 4);
  EXPECT_EQ(w->cpu_request_milli, 1500);
  EXPECT_EQ(w->memory_request_milli, 1000000000LL * 1000);
  EXPECT_EQ(w->workload_ref, "web-template");
}

// ---- streams -------------------------------------------------------------------------------

TEST(Streams, MultiDocumentAndList) {
  Result<Manifests> m = parse_manifests(std::string(kHpaHead) + R"(---
# an empty document and kinds that are not modelled are skipped
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: b
---
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
    spec:
      replicas: 2
      template:
        spec:
          containers:
            - name: web
              resources:
                requests:
                  cpu: "1"
  - apiVersion: autoscaling/v2beta2
    kind: HorizontalPodAutoscaler
    metadata:
      name: second
    spec:
      scaleTargetRef:
        kind: Deployment
        name: web
      minReplicas: 3
      maxReplicas: 6
      metrics:
        - type: External
          external:
            metric:
              name: queue_depth
            target:
              type: Value
              value: "30"
...
)");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->hpas.size(), 2u);
  EXPECT_EQ(m->hpas[0].name, "web");
  EXPECT_EQ(m->hpas[1].name, "second");
  EXPECT_EQ(m->hpas[1].min_replicas, 3);
  ASSERT_EQ(m->hpas[1].metrics.size(), 1u);
  EXPECT_EQ(m->hpas[1].metrics[0].type, MetricSourceType::kExternal);
  EXPECT_EQ(m->hpas[1].metrics[0].name, "queue_depth");
  EXPECT_EQ(m->hpas[1].metrics[0].target_type, TargetType::kValue);
  EXPECT_EQ(m->hpas[1].metrics[0].target_milli, 30000);
  ASSERT_EQ(m->workloads.size(), 1u);
  EXPECT_EQ(m->workloads[0].replicas, 2);
  EXPECT_EQ(m->workloads[0].cpu_request_milli, 1000);
}

TEST(Streams, MalformedStreamsEndInAnErrorNotALoop) {
  // yaml-cpp 0.7's LoadAll never returns on a top-level "'a','b'" (found by plan_inputs_fuzz);
  // the stream is split at its document markers and each document loaded alone.
  for (const char* text : {"'a','b'", "a: 1\n---\n'a','b'\n", "--- 'a','b'", "...\n'x',\n"}) {
    Result<Manifests> m = parse_manifests(text);
    EXPECT_FALSE(m.is_ok()) << text;
  }
  // "---x" is no marker (a key of the HPA's top-level mapping here), "--- " is, with content
  // after it on its line.
  Result<Manifests> m = parse_manifests(std::string(kHpaHead) + "---x: 1\n");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(m->hpas.size(), 1u);
  m = parse_manifests(std::string("--- # first\n") + kHpaHead);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(m->hpas.size(), 1u);
}

TEST(Streams, DirectoryFilesSortedAndMerged) {
  TempDir dir;
  auto hpa = [](const std::string& name) {
    return "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: " + name +
           "\nspec:\n  scaleTargetRef: {kind: Deployment, name: x}\n  maxReplicas: 2\n";
  };
  dir.write("b.yaml", hpa("b"));
  dir.write("a.yml", hpa("a"));
  dir.write("c.txt", hpa("c"));       // not YAML by its name
  dir.write("sub/d.yaml", hpa("d"));  // not recursive
  const std::string extra = dir.write("extra/e.yaml", hpa("e"));
  Result<Manifests> m = read_manifests({dir.path(), extra});
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  ASSERT_EQ(m->hpas.size(), 3u);
  EXPECT_EQ(m->hpas[0].name, "a");
  EXPECT_EQ(m->hpas[1].name, "b");
  EXPECT_EQ(m->hpas[2].name, "e");

  Result<Manifests> missing = read_manifests({dir.path() + "/nope.yaml"});
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("nope.yaml"), std::string::npos);
}

TEST(Streams, KustomizeFailureSaysHowToPipe) {
  TempDir dir;
  dir.write("kustomization.yaml", "resources:\n  - does-not-exist.yaml\n");
  Result<Manifests> m = read_manifests({dir.path()});
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("| tideserve plan --manifests -"), std::string::npos)
      << m.status().message();

  // No kubectl at all: the same advice.
  const char* saved = std::getenv("KUBECTL");
  const std::string saved_value = saved != nullptr ? saved : "";
  ::setenv("KUBECTL", (dir.path() + "/no-such-kubectl").c_str(), 1);
  Result<Manifests> none = read_manifests({dir.path()});
  if (saved != nullptr) {
    ::setenv("KUBECTL", saved_value.c_str(), 1);
  } else {
    ::unsetenv("KUBECTL");
  }
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("kubectl kustomize " + dir.path()), std::string::npos)
      << none.status().message();
}

// ---- quantities ----------------------------------------------------------------------------

TEST(Quantity, Table) {
  const struct {
    const char* text;
    int64_t milli;
  } cases[] = {
      {"0", 0},
      {"1", 1000},
      {"2", 2000},
      {"250m", 250},
      {"0.25", 250},
      {".5", 500},
      {"5.", 5000},
      {"+1.5", 1500},
      {"-1.5", -1500},
      {"1e3", 1000000},
      {"1E3", 1000000},
      {"1e+3", 1000000},
      {"1.5e-3", 2},  // 1.5 milli rounds up
      {"25e-2", 250},
      {"1k", 1000000},
      {"1M", 1000000000},
      {"1G", 1000000000000},
      {"1T", 1000000000000000},
      {"1P", 1000000000000000000},
      {"1Ki", 1024000},
      {"100Mi", 100LL * 1024 * 1024 * 1000},
      {"1.5Gi", 1610612736000},
      {"2Gi", 2 * kGi * 1000},
      {"1Ti", 1024LL * kGi * 1000},
      {"1u", 1},        // 0.001 milli rounds up
      {"1n", 1},        // 0.000001 milli rounds up
      {"1500u", 2},     // 1.5 milli rounds up
      {"1000000n", 1},  // exactly 1 milli
      {"0.0001", 1},    // 0.1 milli rounds up
      {"-0.0001", -1},  // away from zero, as MilliValue
      {"100m", 100},
      {"1.2345m", 2},
      {"007", 7000},
      {"0.000m", 0},
  };
  for (const auto& c : cases) {
    Result<int64_t> q = parse_quantity_milli(c.text);
    ASSERT_TRUE(q.is_ok()) << c.text << ": " << q.status().to_string();
    EXPECT_EQ(*q, c.milli) << c.text;
  }
}

TEST(Quantity, Garbage) {
  for (const char* text :
       {"",    "m",  ".",     "-",    "+",    "abc",   "1x",   "1K",  "1 Gi", " 1",  "1 ",
        "1mi", "1e", "1e1.5", "1ee3", "1e3m", "1.2.3", "1Gi1", "--1", "0x10", "1Kib"}) {
    Result<int64_t> q = parse_quantity_milli(text);
    EXPECT_FALSE(q.is_ok()) << "'" << text << "' parsed as " << (q.is_ok() ? *q : 0);
  }
  // Too large for milli-units in an int64.
  EXPECT_FALSE(parse_quantity_milli("10E").is_ok());
  EXPECT_FALSE(parse_quantity_milli("1e100").is_ok());
  EXPECT_TRUE(parse_quantity_milli("1e-100").is_ok());
}

// ---- errors --------------------------------------------------------------------------------

std::string error_of(const std::string& yaml) {
  Result<Manifests> m = parse_manifests(yaml);
  EXPECT_FALSE(m.is_ok()) << yaml;
  return m.is_ok() ? "" : m.status().message();
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

TEST(Errors, BadQuantityNamesObjectAndField) {
  const std::string e = error_of(R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          resources:
            requests:
              cpu: two
)");
  expect_contains(e, "Deployment/web");
  expect_contains(e, "spec.template.spec.containers[0].resources.requests.cpu");
  expect_contains(e, "'two'");
}

TEST(Errors, Metrics) {
  auto with_metric = [](const std::string& metric) {
    return std::string(kHpaHead) + "  metrics:\n" + metric;
  };
  std::string e = error_of(with_metric("    - type: Telepathy\n"));
  expect_contains(e, "HorizontalPodAutoscaler/web");
  expect_contains(e, "spec.metrics[0].type");
  expect_contains(e, "unknown metric type 'Telepathy'");

  e = error_of(with_metric(R"(    - type: Object
      object:
        metric:
          name: requests
        describedObject:
          kind: Ingress
          name: main
        target:
          type: Value
          value: "10"
)"));
  expect_contains(e, "Object metrics are not modelled");

  e = error_of(with_metric(R"(    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
)"));
  expect_contains(e, "spec.metrics[0].resource.target.averageUtilization: required");

  e = error_of(with_metric(R"(    - type: Pods
      pods:
        metric:
          name: p99
        target:
          type: AverageValue
          averageValue: fast
)"));
  expect_contains(e, "spec.metrics[0].pods.target.averageValue");

  e = error_of(with_metric(R"(    - type: Pods
      pods:
        metric:
          name: p99
        target:
          type: Value
          value: "1"
)"));
  expect_contains(e, "spec.metrics[0].pods.target.type");
}

TEST(Errors, HpaFields) {
  std::string e = error_of(R"(apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {kind: Deployment, name: web}
)");
  expect_contains(e, "HorizontalPodAutoscaler/web: spec.maxReplicas: required");

  e = error_of(std::string(kHpaHead) + "  minReplicas: many\n");
  expect_contains(e, "spec.minReplicas");

  e = error_of(std::string(kHpaHead) + R"(  behavior:
    scaleUp:
      selectPolicy: Sometimes
)");
  expect_contains(e, "spec.behavior.scaleUp.selectPolicy");

  e = error_of(std::string(kHpaHead) + R"(  behavior:
    scaleDown:
      policies:
        - type: Pods
          value: 1
)");
  expect_contains(e, "spec.behavior.scaleDown.policies[0].periodSeconds: required");
}

TEST(Errors, Triggers) {
  auto so = [](const std::string& trigger) {
    return "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: q\nspec:\n"
           "  scaleTargetRef:\n    name: q\n  triggers:\n" +
           trigger;
  };
  std::string e = error_of(so("    - type: prometheus\n      metadata:\n        query: up\n"));
  expect_contains(e, "ScaledObject/q: spec.triggers[0].metadata.threshold: required");

  e = error_of(so("    - type: prometheus\n      metadata:\n        threshold: lots\n"));
  expect_contains(e, "spec.triggers[0].metadata.threshold");

  e = error_of(so("    - type: cpu\n      metadata:\n        value: \"50\"\n"));
  expect_contains(e, "spec.triggers[0].metricType");

  e =
      error_of(so("    - type: prometheus\n      metricType: Utilization\n      metadata:\n"
                  "        threshold: \"1\"\n"));
  expect_contains(e, "spec.triggers[0].metricType");

  e = error_of(so("    - type: cron\n      metadata:\n        timezone: UTC\n"));
  expect_contains(e, "spec.triggers[0].metadata.start: required");

  e = error_of(so("    - type: something-new\n      metadata:\n        foo: bar\n"));
  expect_contains(e, "no target");

  e = error_of(
      "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: q\nspec:\n"
      "  scaleTargetRef:\n    name: q\n");
  expect_contains(e, "spec.triggers");
}

TEST(Errors, YamlSyntaxIsAStatus) {
  for (const char* bad : {"apiVersion: v1\nkind: [unclosed\n", "a: b\n c: d\n- e\n", "a: {b: 1\n",
                          "\t- tab: indent\n"}) {
    Result<Manifests> m = parse_manifests(bad);
    ASSERT_FALSE(m.is_ok()) << bad;
    expect_contains(m.status().message(), "YAML");
  }
  // Wrong shapes are errors too, not crashes.
  std::string e = error_of("- just\n- a list\n");
  expect_contains(e, "document 1");
  e = error_of(std::string(kHpaHead) + "  metrics: 3\n");
  expect_contains(e, "spec.metrics");
  e = error_of(std::string(kHpaHead) + "  metrics:\n    - 3\n");
  expect_contains(e, "spec.metrics[0]");
  e = error_of("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: x\nspec: 1\n");
  expect_contains(e, "metadata.name");
  e = error_of(std::string(kHpaHead) + "  behavior:\n    scaleUp: fast\n");
  expect_contains(e, "spec.behavior.scaleUp");
}

TEST(Errors, FileErrorsNameTheFile) {
  TempDir dir;
  const std::string path = dir.write("broken.yaml", std::string(kHpaHead) + "  minReplicas: [\n");
  Result<Manifests> m = read_manifests({path});
  ASSERT_FALSE(m.is_ok());
  expect_contains(m.status().message(), path);
}

// ---- traffic -------------------------------------------------------------------------------

double average_over(const std::vector<RatePoint>& points, double from_h, double to_h) {
  double sum = 0;
  int n = 0;
  for (const RatePoint& p : points) {
    const double h = p.at_s / 3600;
    if (h >= from_h && h < to_h) {
      sum += p.rate;
      ++n;
    }
  }
  return n > 0 ? sum / n : 0;
}

TEST(Traffic, TidalDayShape) {
  const TidalDay day;
  const std::vector<RatePoint> points = tidal_day(day);
  ASSERT_EQ(points.size(), 1440u);  // 86400 s / 60 s
  EXPECT_DOUBLE_EQ(points.front().at_s, 0);
  EXPECT_DOUBLE_EQ(points[1].at_s, 60);
  EXPECT_DOUBLE_EQ(points.back().at_s, 86340);
  for (const RatePoint& p : points) EXPECT_GE(p.rate, 0);

  const double night = average_over(points, 2.5, 4.5);
  const double morning = average_over(points, 10, 11);
  const double evening = average_over(points, 19.5, 20.5);
  EXPECT_GE(night, 0.9 * day.trough_rps);  // the bumps' tails on top of the trough
  EXPECT_LE(night, 1.3 * day.trough_rps);
  EXPECT_NEAR(morning, day.morning_peak_rps, 0.1 * day.morning_peak_rps);
  EXPECT_NEAR(evening, day.evening_peak_rps, 0.1 * day.evening_peak_rps);
  EXPECT_LT(night, morning);
  EXPECT_LT(night, evening);

  // The busiest hour is around each peak's hour.
  auto busiest_hour = [&](double from_h, double to_h) {
    double best = -1, at = 0;
    for (double h = from_h; h < to_h; h += 0.5) {
      const double r = average_over(points, h - 0.5, h + 0.5);
      if (r > best) best = r, at = h;
    }
    return at;
  };
  EXPECT_NEAR(busiest_hour(6, 15), day.morning_peak_hour, 1.0);
  EXPECT_NEAR(busiest_hour(16, 23.5), day.evening_peak_hour, 1.0);
}

TEST(Traffic, DeterministicBySeed) {
  TidalDay day;
  day.seed = 7;
  const std::vector<RatePoint> a = tidal_day(day);
  const std::vector<RatePoint> b = tidal_day(day);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].rate, b[i].rate);
  day.seed = 8;
  const std::vector<RatePoint> c = tidal_day(day);
  ASSERT_EQ(a.size(), c.size());
  size_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += a[i].rate != c[i].rate ? 1 : 0;
  EXPECT_GT(differ, a.size() / 2);
}

TEST(Traffic, NoiseFreeAndStepCount) {
  TidalDay day;
  day.noise = 0;
  day.step_s = 900;
  day.duration_s = 7200;
  const std::vector<RatePoint> points = tidal_day(day);
  ASSERT_EQ(points.size(), 8u);
  for (size_t i = 0; i < points.size(); ++i) {
    EXPECT_DOUBLE_EQ(points[i].at_s, 900.0 * static_cast<double>(i));
  }
  // Midnight: the trough plus the tails of the evening bump (4 h away around the clock, width
  // 2.5 h) and of the morning one (10.5 h away).
  auto tail = [&](double peak_rps, double hours) {
    const double z = hours / day.peak_width_hours;
    return (peak_rps - day.trough_rps) * std::exp(-0.5 * z * z);
  };
  EXPECT_NEAR(points[0].rate,
              day.trough_rps + tail(day.evening_peak_rps, 4) + tail(day.morning_peak_rps, 10.5),
              1e-9);
  // A partial last step still gets a point; nothing for an empty day.
  day.duration_s = 7201;
  EXPECT_EQ(tidal_day(day).size(), 9u);
  day.duration_s = 0;
  EXPECT_TRUE(tidal_day(day).empty());
  // Noise never drives the rate negative, even when large.
  day.duration_s = 86400;
  day.step_s = 60;
  day.noise = 3;
  for (const RatePoint& p : tidal_day(day)) EXPECT_GE(p.rate, 0);
}

TEST(Traffic, RateAt) {
  const std::vector<RatePoint> schedule = {{10, 5}, {20, 50}, {30, 0}, {40, 7}};
  EXPECT_EQ(rate_at(schedule, 0), 0);
  EXPECT_EQ(rate_at(schedule, 9.999), 0);
  EXPECT_EQ(rate_at(schedule, 10), 5);
  EXPECT_EQ(rate_at(schedule, 19.9), 5);
  EXPECT_EQ(rate_at(schedule, 20), 50);
  EXPECT_EQ(rate_at(schedule, 35), 0);
  EXPECT_EQ(rate_at(schedule, 40), 7);
  EXPECT_EQ(rate_at(schedule, 1e9), 7);
  EXPECT_EQ(rate_at({}, 5), 0);
  const std::vector<RatePoint> day = tidal_day(TidalDay{});
  EXPECT_EQ(rate_at(day, 61), day[1].rate);
  EXPECT_EQ(rate_at(day, 86399), day.back().rate);
}

}  // namespace
}  // namespace tideserve::plan
