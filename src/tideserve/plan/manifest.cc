// Kubernetes manifests -> the replay's specs. yaml-cpp throws; every call into it happens inside
// parse_manifests' try block, and the helpers below check node types before they index, so what
// leaves this file is a Status.
#include "tideserve/plan/manifest.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>

#include <fmt/format.h>

#include "tideserve/util/mapped_file.h"

extern char** environ;

namespace tideserve::plan {
namespace {

namespace fs = std::filesystem;

// ---- numbers -------------------------------------------------------------------------------

std::optional<int64_t> parse_int64(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::optional<double> parse_double(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

// ---- YAML access ---------------------------------------------------------------------------

// The object an error is about ("HorizontalPodAutoscaler/tideserve").
struct Ctx {
  std::string label;
  Status error(const std::string& field, const std::string& what) const {
    return invalid_argument(fmt::format("{}: {}: {}", label, field, what));
  }
};

// A map's child; absent when the node is not a map, the key is missing or its value is null
// (Kubernetes reads `key: null` as unset).
std::optional<YAML::Node> child(const YAML::Node& node, const char* key) {
  if (!node.IsDefined() || !node.IsMap()) return std::nullopt;
  const YAML::Node value = node[key];
  if (!value.IsDefined() || value.IsNull()) return std::nullopt;
  return value;
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    default:
      return "null";
  }
}

Result<std::string> scalar_of(const Ctx& ctx, const YAML::Node& node, const std::string& field) {
  if (!node.IsScalar()) return ctx.error(field, "expected a value, found " + describe(node));
  return node.Scalar();
}

Result<std::optional<std::string>> opt_string(const Ctx& ctx, const YAML::Node& parent,
                                              const char* key, const std::string& field) {
  const auto node = child(parent, key);
  if (!node) return std::optional<std::string>();
  Result<std::string> s = scalar_of(ctx, *node, field);
  if (!s.is_ok()) return s.status();
  return std::optional<std::string>(std::move(s).value());
}

Result<std::string> req_string(const Ctx& ctx, const YAML::Node& parent, const char* key,
                               const std::string& field) {
  Result<std::optional<std::string>> s = opt_string(ctx, parent, key, field);
  if (!s.is_ok()) return s.status();
  if (!s->has_value() || (*s)->empty()) return ctx.error(field, "required");
  return **s;
}

Result<int32_t> int32_value(const Ctx& ctx, const YAML::Node& node, const std::string& field) {
  Result<std::string> s = scalar_of(ctx, node, field);
  if (!s.is_ok()) return s.status();
  const auto v = parse_int64(*s);
  if (!v || *v < std::numeric_limits<int32_t>::min() || *v > std::numeric_limits<int32_t>::max()) {
    return ctx.error(field, "'" + *s + "' is not a 32-bit integer");
  }
  return static_cast<int32_t>(*v);
}

Result<std::optional<int32_t>> opt_int32(const Ctx& ctx, const YAML::Node& parent, const char* key,
                                         const std::string& field) {
  const auto node = child(parent, key);
  if (!node) return std::optional<int32_t>();
  Result<int32_t> v = int32_value(ctx, *node, field);
  if (!v.is_ok()) return v.status();
  return std::optional<int32_t>(*v);
}

Result<int32_t> int32_or(const Ctx& ctx, const YAML::Node& parent, const char* key,
                         const std::string& field, int32_t fallback) {
  Result<std::optional<int32_t>> v = opt_int32(ctx, parent, key, field);
  if (!v.is_ok()) return v.status();
  return v->value_or(fallback);
}

Result<int64_t> quantity_value(const Ctx& ctx, const YAML::Node& node, const std::string& field) {
  Result<std::string> s = scalar_of(ctx, node, field);
  if (!s.is_ok()) return s.status();
  Result<int64_t> q = parse_quantity_milli(*s);
  if (!q.is_ok()) return ctx.error(field, q.status().message());
  return *q;
}

Result<int64_t> req_quantity(const Ctx& ctx, const YAML::Node& parent, const char* key,
                             const std::string& field) {
  const auto node = child(parent, key);
  if (!node) return ctx.error(field, "required");
  return quantity_value(ctx, *node, field);
}

#define TS_ASSIGN_OR_RETURN_IMPL(var, tmp, expr) \
  auto tmp = (expr);                             \
  if (!tmp.is_ok()) return tmp.status();         \
  var = std::move(tmp).value()
#define TS_CONCAT_INNER(a, b) a##b
#define TS_CONCAT(a, b) TS_CONCAT_INNER(a, b)
#define ASSIGN_OR_RETURN(var, expr) \
  TS_ASSIGN_OR_RETURN_IMPL(var, TS_CONCAT(manifest_result_, __LINE__), expr)

// ---- quantities ----------------------------------------------------------------------------

// `digits` (a decimal integer, no leading zeros) times `factor`.
std::string multiply_decimal(const std::string& digits, uint64_t factor) {
  std::string out;
  unsigned __int128 carry = 0;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    carry += static_cast<unsigned __int128>(*it - '0') * factor;
    out.push_back(static_cast<char>('0' + static_cast<int>(carry % 10)));
    carry /= 10;
  }
  while (carry > 0) {
    out.push_back(static_cast<char>('0' + static_cast<int>(carry % 10)));
    carry /= 10;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// ---- behavior ------------------------------------------------------------------------------

// One direction's rules over that direction's defaults, as copyHPAScalingRules does: the fields
// the manifest sets replace the defaults', the others keep them.
Status parse_rules(const Ctx& ctx, const YAML::Node& node, const std::string& field,
                   ScalingRules& rules) {
  if (!node.IsMap()) return ctx.error(field, "expected a mapping, found " + describe(node));
  ASSIGN_OR_RETURN(
      const std::optional<int32_t> window,
      opt_int32(ctx, node, "stabilizationWindowSeconds", field + ".stabilizationWindowSeconds"));
  if (window) {
    if (*window < 0 || *window > 3600) {
      return ctx.error(field + ".stabilizationWindowSeconds", "must be within 0..3600");
    }
    rules.stabilization_window_seconds = *window;
  }
  ASSIGN_OR_RETURN(const std::optional<std::string> select,
                   opt_string(ctx, node, "selectPolicy", field + ".selectPolicy"));
  if (select) {
    if (*select == "Max") {
      rules.select_policy = SelectPolicy::kMax;
    } else if (*select == "Min") {
      rules.select_policy = SelectPolicy::kMin;
    } else if (*select == "Disabled") {
      rules.select_policy = SelectPolicy::kDisabled;
    } else {
      return ctx.error(field + ".selectPolicy", "'" + *select + "' is not Max, Min or Disabled");
    }
  }
  const auto policies = child(node, "policies");
  if (policies) {
    const std::string pfield = field + ".policies";
    if (!policies->IsSequence()) return ctx.error(pfield, "expected a list");
    if (policies->size() == 0) return ctx.error(pfield, "must specify at least one policy");
    rules.policies.clear();
    for (size_t i = 0; i < policies->size(); ++i) {
      const YAML::Node p = (*policies)[i];
      const std::string f = fmt::format("{}[{}]", pfield, i);
      if (!p.IsMap()) return ctx.error(f, "expected a mapping, found " + describe(p));
      ScalingPolicy policy;
      ASSIGN_OR_RETURN(const std::string type, req_string(ctx, p, "type", f + ".type"));
      if (type == "Pods") {
        policy.type = PolicyType::kPods;
      } else if (type == "Percent") {
        policy.type = PolicyType::kPercent;
      } else {
        return ctx.error(f + ".type", "'" + type + "' is not Pods or Percent");
      }
      ASSIGN_OR_RETURN(const std::optional<int32_t> value,
                       opt_int32(ctx, p, "value", f + ".value"));
      if (!value) return ctx.error(f + ".value", "required");
      if (*value <= 0) return ctx.error(f + ".value", "must be greater than zero");
      policy.value = *value;
      ASSIGN_OR_RETURN(const std::optional<int32_t> period,
                       opt_int32(ctx, p, "periodSeconds", f + ".periodSeconds"));
      if (!period) return ctx.error(f + ".periodSeconds", "required");
      if (*period <= 0 || *period > 1800) {
        return ctx.error(f + ".periodSeconds", "must be within 1..1800");
      }
      policy.period_seconds = *period;
      rules.policies.push_back(policy);
    }
  }
  return Status::ok();
}

// spec.behavior with SetDefaults_HorizontalPodAutoscalerBehavior applied: a direction the
// manifest leaves out gets that direction's defaults, and so does each field it leaves out.
Result<Behavior> parse_behavior(const Ctx& ctx, const YAML::Node& node, const std::string& field) {
  if (!node.IsMap()) return ctx.error(field, "expected a mapping, found " + describe(node));
  Behavior behavior = default_behavior();
  if (const auto up = child(node, "scaleUp")) {
    TS_RETURN_IF_ERROR(parse_rules(ctx, *up, field + ".scaleUp", behavior.scale_up));
  }
  if (const auto down = child(node, "scaleDown")) {
    TS_RETURN_IF_ERROR(parse_rules(ctx, *down, field + ".scaleDown", behavior.scale_down));
  }
  return behavior;
}

// ---- HorizontalPodAutoscaler ---------------------------------------------------------------

Result<MetricSpec> parse_metric(const Ctx& ctx, const YAML::Node& node, const std::string& field) {
  if (!node.IsMap()) return ctx.error(field, "expected a mapping, found " + describe(node));
  ASSIGN_OR_RETURN(const std::string type, req_string(ctx, node, "type", field + ".type"));
  MetricSpec m;
  // target: {type, averageUtilization | averageValue | value}; `allowed` are the target types
  // the API server accepts for this source.
  auto parse_target = [&](const YAML::Node& source, const std::string& sfield,
                          std::initializer_list<TargetType> allowed) -> Status {
    const auto target = child(source, "target");
    const std::string tfield = sfield + ".target";
    if (!target) return ctx.error(tfield, "required");
    ASSIGN_OR_RETURN(const std::string ttype, req_string(ctx, *target, "type", tfield + ".type"));
    TargetType t;
    if (ttype == "Utilization") {
      t = TargetType::kUtilization;
    } else if (ttype == "AverageValue") {
      t = TargetType::kAverageValue;
    } else if (ttype == "Value") {
      t = TargetType::kValue;
    } else {
      return ctx.error(tfield + ".type",
                       "'" + ttype + "' is not Utilization, AverageValue or Value");
    }
    if (std::find(allowed.begin(), allowed.end(), t) == allowed.end()) {
      return ctx.error(tfield + ".type",
                       "a " + type + " metric cannot have a " + ttype + " target");
    }
    m.target_type = t;
    if (t == TargetType::kUtilization) {
      ASSIGN_OR_RETURN(const std::optional<int32_t> u, opt_int32(ctx, *target, "averageUtilization",
                                                                 tfield + ".averageUtilization"));
      if (!u) return ctx.error(tfield + ".averageUtilization", "required");
      if (*u <= 0) return ctx.error(tfield + ".averageUtilization", "must be greater than zero");
      m.target_utilization = *u;
    } else if (t == TargetType::kAverageValue) {
      ASSIGN_OR_RETURN(m.target_milli,
                       req_quantity(ctx, *target, "averageValue", tfield + ".averageValue"));
      if (m.target_milli <= 0) return ctx.error(tfield + ".averageValue", "must be positive");
    } else {
      ASSIGN_OR_RETURN(m.target_milli, req_quantity(ctx, *target, "value", tfield + ".value"));
      if (m.target_milli <= 0) return ctx.error(tfield + ".value", "must be positive");
    }
    return Status::ok();
  };
  // Pods / External: {metric: {name}, target}.
  auto metric_name = [&](const YAML::Node& source, const std::string& sfield) -> Status {
    const auto metric = child(source, "metric");
    if (!metric) return ctx.error(sfield + ".metric", "required");
    ASSIGN_OR_RETURN(m.name, req_string(ctx, *metric, "name", sfield + ".metric.name"));
    return Status::ok();
  };
  if (type == "Resource") {
    const std::string sfield = field + ".resource";
    const auto source = child(node, "resource");
    if (!source) return ctx.error(sfield, "required for a Resource metric");
    m.type = MetricSourceType::kResource;
    ASSIGN_OR_RETURN(m.name, req_string(ctx, *source, "name", sfield + ".name"));
    if (m.name != "cpu" && m.name != "memory") {
      return ctx.error(sfield + ".name",
                       "resource '" + m.name + "' is not modelled (only cpu and memory)");
    }
    TS_RETURN_IF_ERROR(
        parse_target(*source, sfield, {TargetType::kUtilization, TargetType::kAverageValue}));
  } else if (type == "Pods") {
    const std::string sfield = field + ".pods";
    const auto source = child(node, "pods");
    if (!source) return ctx.error(sfield, "required for a Pods metric");
    m.type = MetricSourceType::kPods;
    TS_RETURN_IF_ERROR(metric_name(*source, sfield));
    TS_RETURN_IF_ERROR(parse_target(*source, sfield, {TargetType::kAverageValue}));
  } else if (type == "External") {
    const std::string sfield = field + ".external";
    const auto source = child(node, "external");
    if (!source) return ctx.error(sfield, "required for an External metric");
    m.type = MetricSourceType::kExternal;
    TS_RETURN_IF_ERROR(metric_name(*source, sfield));
    TS_RETURN_IF_ERROR(
        parse_target(*source, sfield, {TargetType::kAverageValue, TargetType::kValue}));
  } else if (type == "Object" || type == "ContainerResource") {
    return ctx.error(field + ".type", type +
                                          " metrics are not modelled by the replay (Resource, "
                                          "Pods and External are)");
  } else {
    return ctx.error(field + ".type", "unknown metric type '" + type + "'");
  }
  return m;
}

MetricSpec default_cpu_metric() {
  // SetDefaults_HorizontalPodAutoscaler: no metrics = cpu at autoscaling.DefaultCPUUtilization.
  MetricSpec m;
  m.type = MetricSourceType::kResource;
  m.name = "cpu";
  m.target_type = TargetType::kUtilization;
  m.target_utilization = 80;
  return m;
}

Result<HpaSpec> parse_hpa(const Ctx& ctx, const std::string& api_version, const std::string& name,
                          const YAML::Node& doc) {
  const bool v1 = api_version == "autoscaling/v1";
  if (!v1 && api_version != "autoscaling/v2" && api_version != "autoscaling/v2beta2") {
    return ctx.error("apiVersion",
                     "'" + api_version + "' is not supported (autoscaling/v2, v2beta2 or v1)");
  }
  const auto spec = child(doc, "spec");
  if (!spec || !spec->IsMap()) return ctx.error("spec", "required");
  HpaSpec hpa;
  hpa.name = name;
  const auto ref = child(*spec, "scaleTargetRef");
  if (!ref) return ctx.error("spec.scaleTargetRef", "required");
  ASSIGN_OR_RETURN(hpa.target_kind, req_string(ctx, *ref, "kind", "spec.scaleTargetRef.kind"));
  ASSIGN_OR_RETURN(hpa.target_name, req_string(ctx, *ref, "name", "spec.scaleTargetRef.name"));
  ASSIGN_OR_RETURN(hpa.min_replicas, int32_or(ctx, *spec, "minReplicas", "spec.minReplicas", 1));
  ASSIGN_OR_RETURN(const std::optional<int32_t> max,
                   opt_int32(ctx, *spec, "maxReplicas", "spec.maxReplicas"));
  if (!max) return ctx.error("spec.maxReplicas", "required");
  hpa.max_replicas = *max;
  if (hpa.min_replicas < 0) return ctx.error("spec.minReplicas", "must not be negative");
  if (hpa.max_replicas < 1) return ctx.error("spec.maxReplicas", "must be at least 1");
  if (hpa.max_replicas < hpa.min_replicas) {
    return ctx.error("spec.maxReplicas", "must be at least minReplicas");
  }
  if (v1) {
    MetricSpec m = default_cpu_metric();
    ASSIGN_OR_RETURN(m.target_utilization, int32_or(ctx, *spec, "targetCPUUtilizationPercentage",
                                                    "spec.targetCPUUtilizationPercentage", 80));
    if (m.target_utilization <= 0) {
      return ctx.error("spec.targetCPUUtilizationPercentage", "must be greater than zero");
    }
    hpa.metrics.push_back(m);
    return hpa;
  }
  if (const auto metrics = child(*spec, "metrics")) {
    if (!metrics->IsSequence()) return ctx.error("spec.metrics", "expected a list");
    for (size_t i = 0; i < metrics->size(); ++i) {
      ASSIGN_OR_RETURN(MetricSpec m,
                       parse_metric(ctx, (*metrics)[i], fmt::format("spec.metrics[{}]", i)));
      hpa.metrics.push_back(std::move(m));
    }
  }
  if (hpa.metrics.empty()) hpa.metrics.push_back(default_cpu_metric());
  if (const auto behavior = child(*spec, "behavior")) {
    ASSIGN_OR_RETURN(hpa.behavior, parse_behavior(ctx, *behavior, "spec.behavior"));
  }
  return hpa;
}

// ---- ScaledObject --------------------------------------------------------------------------

// A metadata value that is written and not empty.
std::optional<std::string> meta_value(const Trigger& t, const std::string& key) {
  const std::string* v = t.find_metadata(key);
  if (v == nullptr || v->empty()) return std::nullopt;
  return *v;
}

// Fills target / activation_target / the cron fields from the metadata keys each scaler reads
// (KEDA v2.15 pkg/scalers).
Status fill_trigger_targets(const Ctx& ctx, const std::string& field, bool metric_type_given,
                            Trigger& t) {
  const std::string mfield = field + ".metadata";
  auto number = [&](const std::string& key, double& out) -> Result<bool> {
    const auto v = meta_value(t, key);
    if (!v) return false;
    const auto d = parse_double(*v);
    if (!d) return ctx.error(mfield + "." + key, "'" + *v + "' is not a number");
    out = *d;
    return true;
  };
  auto integer = [&](const std::string& key, double& out) -> Result<bool> {
    const auto v = meta_value(t, key);
    if (!v) return false;
    const auto i = parse_int64(*v);
    if (!i) return ctx.error(mfield + "." + key, "'" + *v + "' is not an integer");
    out = static_cast<double>(*i);
    return true;
  };
  auto required = [&](const Result<bool>& found, const std::string& key) -> Status {
    if (!found.is_ok()) return found.status();
    if (!*found) return ctx.error(mfield + "." + key, "required for a " + t.type + " trigger");
    return Status::ok();
  };

  if (t.type == "cpu" || t.type == "memory") {
    // cpu_memory_scaler.go parseResourceMetadata: the type from metricType or the deprecated
    // metadata.type (not both); value is a percentage (Utilization) or a quantity.
    const auto legacy = meta_value(t, "type");
    if (legacy && metric_type_given) {
      return ctx.error(field, "only one of metricType and metadata.type may be set");
    }
    if (legacy) {
      if (*legacy == "Utilization") {
        t.metric_type = TargetType::kUtilization;
      } else if (*legacy == "AverageValue") {
        t.metric_type = TargetType::kAverageValue;
      } else {
        return ctx.error(mfield + ".type", "'" + *legacy + "' is not Utilization or AverageValue");
      }
    } else if (!metric_type_given) {
      return ctx.error(field + ".metricType",
                       "required for a " + t.type + " trigger (Utilization or AverageValue)");
    }
    if (t.metric_type == TargetType::kValue) {
      return ctx.error(field + ".metricType",
                       "a " + t.type + " trigger takes Utilization or AverageValue");
    }
    if (meta_value(t, "containerName")) {
      return ctx.error(mfield + ".containerName",
                       "a ContainerResource metric is not modelled by the replay");
    }
    const auto v = meta_value(t, "value");
    if (!v) return ctx.error(mfield + ".value", "required for a " + t.type + " trigger");
    if (t.metric_type == TargetType::kUtilization) {
      const auto i = parse_int64(*v);
      if (!i || *i <= 0 || *i > std::numeric_limits<int32_t>::max()) {
        return ctx.error(mfield + ".value", "'" + *v + "' is not a positive integer percentage");
      }
      t.target = static_cast<double>(*i);
    } else {
      Result<int64_t> q = parse_quantity_milli(*v);
      if (!q.is_ok()) return ctx.error(mfield + ".value", q.status().message());
      t.target = static_cast<double>(*q) / 1000.0;
    }
    return Status::ok();
  }

  if (t.metric_type == TargetType::kUtilization) {
    return ctx.error(field + ".metricType",
                     "Utilization is only for cpu and memory triggers (AverageValue or Value)");
  }
  if (t.type == "cron") {
    // cron_scaler.go: all four are required; the External metric's target is 1.
    for (const char* key : {"timezone", "start", "end", "desiredReplicas"}) {
      if (!meta_value(t, key)) {
        return ctx.error(mfield + "." + key, "required for a cron trigger");
      }
    }
    t.timezone = *meta_value(t, "timezone");
    t.start = *meta_value(t, "start");
    t.end = *meta_value(t, "end");
    const std::string desired = *meta_value(t, "desiredReplicas");
    const auto d = parse_int64(desired);
    if (!d || *d < 0 || *d > std::numeric_limits<int32_t>::max()) {
      return ctx.error(mfield + ".desiredReplicas", "'" + desired + "' is not a replica count");
    }
    t.desired_replicas = static_cast<int32_t>(*d);
    t.target = 1;
    return Status::ok();
  }
  if (t.type == "prometheus") {
    TS_RETURN_IF_ERROR(required(number("threshold", t.target), "threshold"));
    Result<bool> a = number("activationThreshold", t.activation_target);
    if (!a.is_ok()) return a.status();
    return Status::ok();
  }
  if (t.type == "redis-streams" || t.type == "redis-cluster-streams" ||
      t.type == "redis-sentinel-streams") {
    // redis_streams_scaler.go: with a consumerGroup, lagCount (the group's lag, activation
    // activationLagCount) if given, else pendingEntriesCount (default 5); without one the
    // stream's length, streamLength (default 5).
    t.target = 5;
    if (meta_value(t, "consumerGroup")) {
      Result<bool> lag = integer("lagCount", t.target);
      if (!lag.is_ok()) return lag.status();
      if (*lag) {
        Result<bool> a = integer("activationLagCount", t.activation_target);
        if (!a.is_ok()) return a.status();
      } else {
        Result<bool> pending = integer("pendingEntriesCount", t.target);
        if (!pending.is_ok()) return pending.status();
      }
    } else {
      Result<bool> length = integer("streamLength", t.target);
      if (!length.is_ok()) return length.status();
    }
    return Status::ok();
  }
  // Scalers with their own key names (and defaults where KEDA has one).
  struct Keys {
    const char* type;
    const char* target;
    const char* activation;
    double fallback;  // NaN: required
  };
  static const Keys kKnown[] = {
      {"kafka", "lagThreshold", "activationLagThreshold", 10},
      {"aws-sqs-queue", "queueLength", "activationQueueLength", 5},
      {"azure-servicebus", "messageCount", "activationMessageCount", 5},
      {"redis", "listLength", "activationListLength", 5},
      {"rabbitmq", "value", "activationValue", std::nan("")},
  };
  for (const Keys& k : kKnown) {
    if (t.type != k.type) continue;
    Result<bool> found = number(k.target, t.target);
    if (!found.is_ok()) return found.status();
    if (!*found) {
      if (std::isnan(k.fallback)) {
        return ctx.error(mfield + "." + k.target, "required for a " + t.type + " trigger");
      }
      t.target = k.fallback;
    }
    Result<bool> a = number(k.activation, t.activation_target);
    if (!a.is_ok()) return a.status();
    return Status::ok();
  }
  // Any other scaler: the usual names.
  bool found = false;
  for (const char* key : {"threshold", "targetValue", "value"}) {
    Result<bool> f = number(key, t.target);
    if (!f.is_ok()) return f.status();
    if (*f) {
      found = true;
      break;
    }
  }
  if (!found) {
    return ctx.error(mfield, "no target for a " + t.type +
                                 " trigger (the replay reads threshold, targetValue or value)");
  }
  for (const char* key : {"activationThreshold", "activationTargetValue"}) {
    Result<bool> f = number(key, t.activation_target);
    if (!f.is_ok()) return f.status();
    if (*f) break;
  }
  return Status::ok();
}

Result<ScaledObjectSpec> parse_scaled_object(const Ctx& ctx, const std::string& api_version,
                                             const std::string& name, const YAML::Node& doc) {
  if (api_version != "keda.sh/v1alpha1") {
    return ctx.error("apiVersion", "'" + api_version + "' is not supported (keda.sh/v1alpha1)");
  }
  const auto spec = child(doc, "spec");
  if (!spec || !spec->IsMap()) return ctx.error("spec", "required");
  ScaledObjectSpec so;
  so.name = name;
  const auto ref = child(*spec, "scaleTargetRef");
  if (!ref) return ctx.error("spec.scaleTargetRef", "required");
  ASSIGN_OR_RETURN(so.target_name, req_string(ctx, *ref, "name", "spec.scaleTargetRef.name"));
  ASSIGN_OR_RETURN(const std::optional<std::string> kind,
                   opt_string(ctx, *ref, "kind", "spec.scaleTargetRef.kind"));
  so.target_kind = kind && !kind->empty() ? *kind : "Deployment";
  ASSIGN_OR_RETURN(so.min_replica_count,
                   int32_or(ctx, *spec, "minReplicaCount", "spec.minReplicaCount", 0));
  ASSIGN_OR_RETURN(so.max_replica_count,
                   int32_or(ctx, *spec, "maxReplicaCount", "spec.maxReplicaCount", 100));
  ASSIGN_OR_RETURN(so.idle_replica_count,
                   opt_int32(ctx, *spec, "idleReplicaCount", "spec.idleReplicaCount"));
  ASSIGN_OR_RETURN(so.polling_interval_s,
                   int32_or(ctx, *spec, "pollingInterval", "spec.pollingInterval", 30));
  ASSIGN_OR_RETURN(so.cooldown_period_s,
                   int32_or(ctx, *spec, "cooldownPeriod", "spec.cooldownPeriod", 300));
  if (so.min_replica_count < 0) return ctx.error("spec.minReplicaCount", "must not be negative");
  if (so.max_replica_count < so.min_replica_count) {
    return ctx.error("spec.maxReplicaCount", "must be at least minReplicaCount");
  }
  if (so.idle_replica_count &&
      (*so.idle_replica_count < 0 || *so.idle_replica_count >= so.min_replica_count)) {
    return ctx.error("spec.idleReplicaCount", "must be less than minReplicaCount");
  }
  if (so.polling_interval_s <= 0) return ctx.error("spec.pollingInterval", "must be positive");
  if (so.cooldown_period_s < 0) return ctx.error("spec.cooldownPeriod", "must not be negative");
  if (const auto advanced = child(*spec, "advanced")) {
    if (const auto config = child(*advanced, "horizontalPodAutoscalerConfig")) {
      if (const auto behavior = child(*config, "behavior")) {
        ASSIGN_OR_RETURN(
            so.behavior,
            parse_behavior(ctx, *behavior, "spec.advanced.horizontalPodAutoscalerConfig.behavior"));
      }
    }
  }
  const auto triggers = child(*spec, "triggers");
  if (!triggers || !triggers->IsSequence() || triggers->size() == 0) {
    return ctx.error("spec.triggers", "required (a list of at least one trigger)");
  }
  for (size_t i = 0; i < triggers->size(); ++i) {
    const YAML::Node node = (*triggers)[i];
    const std::string field = fmt::format("spec.triggers[{}]", i);
    if (!node.IsMap()) return ctx.error(field, "expected a mapping, found " + describe(node));
    Trigger t;
    bool metric_type_given = false;
    ASSIGN_OR_RETURN(t.type, req_string(ctx, node, "type", field + ".type"));
    ASSIGN_OR_RETURN(const std::optional<std::string> tname,
                     opt_string(ctx, node, "name", field + ".name"));
    t.name = tname.value_or("");
    ASSIGN_OR_RETURN(const std::optional<std::string> metric_type,
                     opt_string(ctx, node, "metricType", field + ".metricType"));
    if (metric_type && !metric_type->empty()) {
      metric_type_given = true;
      if (*metric_type == "AverageValue") {
        t.metric_type = TargetType::kAverageValue;
      } else if (*metric_type == "Value") {
        t.metric_type = TargetType::kValue;
      } else if (*metric_type == "Utilization") {
        t.metric_type = TargetType::kUtilization;
      } else {
        return ctx.error(field + ".metricType",
                         "'" + *metric_type + "' is not AverageValue, Value or Utilization");
      }
    }
    if (const auto metadata = child(node, "metadata")) {
      if (!metadata->IsMap()) return ctx.error(field + ".metadata", "expected a mapping");
      for (const auto& kv : *metadata) {
        const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
        if (key.empty()) return ctx.error(field + ".metadata", "keys must be strings");
        std::string value;
        if (kv.second.IsDefined() && !kv.second.IsNull()) {
          ASSIGN_OR_RETURN(value, scalar_of(ctx, kv.second, field + ".metadata." + key));
        }
        t.metadata.emplace_back(key, std::move(value));
      }
    }
    TS_RETURN_IF_ERROR(fill_trigger_targets(ctx, field, metric_type_given, t));
    so.triggers.push_back(std::move(t));
  }
  return so;
}

// ---- workloads -----------------------------------------------------------------------------

// The pod template's containers' requests, summed; a resource with a limit and no request gets
// the limit, as the API server defaults each container (SetDefaults_Pod).
Status sum_requests(const Ctx& ctx, const YAML::Node& pod_template, const std::string& field,
                    WorkloadSpec& w) {
  const auto pod_spec = child(pod_template, "spec");
  if (!pod_spec) return ctx.error(field + ".spec", "required");
  const auto containers = child(*pod_spec, "containers");
  const std::string cfield = field + ".spec.containers";
  if (!containers || !containers->IsSequence()) return ctx.error(cfield, "required (a list)");
  for (size_t i = 0; i < containers->size(); ++i) {
    const YAML::Node c = (*containers)[i];
    const std::string f = fmt::format("{}[{}].resources", cfield, i);
    const auto resources = child(c, "resources");
    if (!resources) continue;
    const auto requests = child(*resources, "requests");
    const auto limits = child(*resources, "limits");
    for (const char* resource : {"cpu", "memory"}) {
      int64_t& total =
          std::string_view(resource) == "cpu" ? w.cpu_request_milli : w.memory_request_milli;
      if (requests && child(*requests, resource)) {
        ASSIGN_OR_RETURN(const int64_t q,
                         req_quantity(ctx, *requests, resource, f + ".requests." + resource));
        total += q;
      } else if (limits && child(*limits, resource)) {
        ASSIGN_OR_RETURN(const int64_t q,
                         req_quantity(ctx, *limits, resource, f + ".limits." + resource));
        total += q;
      }
    }
  }
  return Status::ok();
}

Result<WorkloadSpec> parse_workload(const Ctx& ctx, const std::string& kind,
                                    const std::string& name, const YAML::Node& doc) {
  WorkloadSpec w;
  w.kind = kind;
  w.name = name;
  const auto spec = child(doc, "spec");
  if (!spec || !spec->IsMap()) return ctx.error("spec", "required");
  ASSIGN_OR_RETURN(w.replicas, int32_or(ctx, *spec, "replicas", "spec.replicas", 1));
  if (w.replicas < 0) return ctx.error("spec.replicas", "must not be negative");
  if (kind == "Rollout") {
    if (const auto ref = child(*spec, "workloadRef")) {
      ASSIGN_OR_RETURN(w.workload_ref, req_string(ctx, *ref, "name", "spec.workloadRef.name"));
      ASSIGN_OR_RETURN(const std::optional<std::string> ref_kind,
                       opt_string(ctx, *ref, "kind", "spec.workloadRef.kind"));
      if (ref_kind && *ref_kind != "Deployment") {
        return ctx.error("spec.workloadRef.kind",
                         "'" + *ref_kind + "' is not supported (Deployment)");
      }
      return w;
    }
  }
  const auto pod_template = child(*spec, "template");
  if (!pod_template) {
    return ctx.error("spec.template",
                     kind == "Rollout" ? "required (or spec.workloadRef)" : "required");
  }
  TS_RETURN_IF_ERROR(sum_requests(ctx, *pod_template, "spec.template", w));
  return w;
}

// ---- documents -----------------------------------------------------------------------------

Status parse_object(const YAML::Node& doc, const std::string& where, Manifests& out) {
  if (!doc.IsDefined() || doc.IsNull()) return Status::ok();
  if (!doc.IsMap()) return invalid_argument(where + ": expected a mapping, found " + describe(doc));
  Ctx ctx{where};
  ASSIGN_OR_RETURN(const std::optional<std::string> kind_opt, opt_string(ctx, doc, "kind", "kind"));
  ASSIGN_OR_RETURN(const std::optional<std::string> api_opt,
                   opt_string(ctx, doc, "apiVersion", "apiVersion"));
  if (!kind_opt || !api_opt) return Status::ok();  // not a Kubernetes object
  const std::string& kind = *kind_opt;
  const std::string& api_version = *api_opt;
  if (kind == "List" || (kind.size() > 4 && kind.ends_with("List") && child(doc, "items"))) {
    const auto items = child(doc, "items");
    if (!items) return Status::ok();
    if (!items->IsSequence()) return ctx.error("items", "expected a list");
    for (size_t i = 0; i < items->size(); ++i) {
      TS_RETURN_IF_ERROR(
          parse_object((*items)[i], fmt::format("{}: {} items[{}]", where, kind, i), out));
    }
    return Status::ok();
  }
  const bool hpa = kind == "HorizontalPodAutoscaler" && api_version.starts_with("autoscaling/");
  const bool scaled_object = kind == "ScaledObject" && api_version.starts_with("keda.sh/");
  const bool workload =
      ((kind == "Deployment" || kind == "StatefulSet") && api_version.starts_with("apps/")) ||
      (kind == "Rollout" && api_version.starts_with("argoproj.io/"));
  if (!hpa && !scaled_object && !workload) return Status::ok();

  std::string name;
  if (const auto metadata = child(doc, "metadata")) {
    ASSIGN_OR_RETURN(const std::optional<std::string> n,
                     opt_string(ctx, *metadata, "name", "metadata.name"));
    name = n.value_or("");
  }
  ctx.label = where + ": " + kind + "/" + (name.empty() ? "?" : name);
  if (name.empty()) return ctx.error("metadata.name", "required");
  if (hpa) {
    ASSIGN_OR_RETURN(HpaSpec h, parse_hpa(ctx, api_version, name, doc));
    out.hpas.push_back(std::move(h));
  } else if (scaled_object) {
    ASSIGN_OR_RETURN(ScaledObjectSpec s, parse_scaled_object(ctx, api_version, name, doc));
    out.scaled_objects.push_back(std::move(s));
  } else {
    ASSIGN_OR_RETURN(WorkloadSpec w, parse_workload(ctx, kind, name, doc));
    out.workloads.push_back(std::move(w));
  }
  return Status::ok();
}

// The documents of a YAML stream, split at the document markers ("---" or "..." at the start
// of a line, then a space or the line's end: YAML forbids them inside content). yaml-cpp 0.7's
// own LoadAll loops forever on some malformed streams (a top-level "'a','b'"), so each document
// is loaded alone; the text after "--- " on its line belongs to the next document.
std::vector<std::string> split_documents(const std::string& yaml) {
  std::vector<std::string> docs(1);
  size_t pos = 0;
  while (pos < yaml.size()) {
    size_t end = yaml.find('\n', pos);
    if (end == std::string::npos) end = yaml.size();
    const std::string_view line(yaml.data() + pos, end - pos);
    const bool marker = (line.rfind("---", 0) == 0 || line.rfind("...", 0) == 0) &&
                        (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r');
    if (marker) {
      docs.emplace_back();
      if (line[0] == '-' && line.size() > 4) docs.back().append(line.substr(4)).append("\n");
    } else {
      docs.back().append(line).append("\n");
    }
    pos = end + 1;
  }
  return docs;
}

// `source` names the stream in errors ("deploy/hpa.yaml"); empty for parse_manifests.
Result<Manifests> parse_stream(const std::string& yaml, const std::string& source) {
  Manifests out;
  const std::string prefix = source.empty() ? "" : source + ": ";
  try {
    std::vector<YAML::Node> docs;
    for (const std::string& text : split_documents(yaml)) {
      YAML::Node node = YAML::Load(text);
      if (!node.IsNull()) docs.push_back(std::move(node));
    }
    for (size_t i = 0; i < docs.size(); ++i) {
      TS_RETURN_IF_ERROR(parse_object(docs[i], fmt::format("{}document {}", prefix, i + 1), out));
    }
  } catch (const YAML::Exception& e) {
    return invalid_argument(prefix + "YAML: " + e.what());
  } catch (const std::exception& e) {
    return invalid_argument(prefix + "YAML: " + e.what());
  }
  return out;
}

void append(Manifests& into, Manifests&& from) {
  std::move(from.hpas.begin(), from.hpas.end(), std::back_inserter(into.hpas));
  std::move(from.scaled_objects.begin(), from.scaled_objects.end(),
            std::back_inserter(into.scaled_objects));
  std::move(from.workloads.begin(), from.workloads.end(), std::back_inserter(into.workloads));
}

// ---- files and kustomize -------------------------------------------------------------------

bool executable(const std::string& path) {
  return ::access(path.c_str(), X_OK) == 0;
}

// The kubectl binaries to try, in tools/validate-deploy's order: $KUBECTL; Debian's
// kubernetes-client (kubectl 1.20) when it owns /usr/bin/kubectl; the copy validate-deploy
// unpacks from Debian's .deb into its cache where another package owns /usr/bin/kubectl; last,
// whatever kubectl is on PATH.
std::vector<std::string> kubectl_candidates() {
  std::vector<std::string> out;
  if (const char* k = std::getenv("KUBECTL"); k != nullptr && *k != '\0') {
    out.emplace_back(k);
    return out;
  }
  if (fs::exists("/var/lib/dpkg/info/kubernetes-client.list") && executable("/usr/bin/kubectl")) {
    out.emplace_back("/usr/bin/kubectl");
  }
  std::string cache;
  if (const char* c = std::getenv("TIDESERVE_CACHE_DIR"); c != nullptr && *c != '\0') {
    cache = c;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    cache = std::string(x) + "/tideserve";
  } else if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') {
    cache = std::string(h) + "/.cache/tideserve";
  }
  if (!cache.empty()) {
    const std::string cached = cache + "/kubernetes-client/usr/bin/kubectl";
    if (executable(cached)) out.push_back(cached);
  }
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string_view rest(path);
    while (true) {
      const size_t colon = rest.find(':');
      const std::string dir(rest.substr(0, colon));
      const std::string candidate = (dir.empty() ? "." : dir) + "/kubectl";
      if (executable(candidate)) {
        if (std::find(out.begin(), out.end(), candidate) == out.end()) out.push_back(candidate);
        break;
      }
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  return out;
}

struct Finished {
  int exit_code = -1;  // -1: killed by a signal or by the timeout
  bool timed_out = false;
  std::string out, err;
};

// Runs argv (no shell) and collects its output; kills it after `timeout_s`.
Result<Finished> run_process(const std::vector<std::string>& argv, double timeout_s) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return internal_error("pipe failed");
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return internal_error("pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return unavailable(fmt::format("cannot run {}: {}", argv[0], std::strerror(rc)));
  }
  Finished f;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&f.out, &f.err};
  int open_fds = 2;
  char buffer[65536];
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      f.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    const int n = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (got > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(wstatus)) f.exit_code = WEXITSTATUS(wstatus);
  return f;
}

std::string pipe_advice(const std::string& dir) {
  return fmt::format(
      "render it yourself and pipe it in: kubectl kustomize {} | tideserve plan "
      "--manifests -",
      dir);
}

Result<std::string> kustomize(const std::string& dir) {
  const std::vector<std::string> candidates = kubectl_candidates();
  if (candidates.empty()) {
    return unavailable(fmt::format(
        "{} has a kustomization and no kubectl was found to render it (set KUBECTL, install "
        "Debian's kubernetes-client, or run tools/validate-deploy --only kustomize once); {}",
        dir, pipe_advice(dir)));
  }
  std::string tried;
  for (const std::string& kubectl : candidates) {
    Result<Finished> run = run_process({kubectl, "kustomize", dir}, 120);
    if (!run.is_ok()) {
      tried += "; " + run.status().message();
      continue;  // could not start: the next candidate
    }
    if (run->timed_out) {
      return unavailable(fmt::format("{} kustomize {} did not finish in 120 s; {}", kubectl, dir,
                                     pipe_advice(dir)));
    }
    if (run->exit_code != 0) {
      std::string err = run->err;
      while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
      return invalid_argument(fmt::format("{} kustomize {} failed (exit {}): {}; {}", kubectl, dir,
                                          run->exit_code, err, pipe_advice(dir)));
    }
    return std::move(run->out);
  }
  return unavailable(fmt::format("cannot render {}{}; {}", dir, tried, pipe_advice(dir)));
}

bool has_kustomization(const fs::path& dir) {
  for (const char* name : {"kustomization.yaml", "kustomization.yml", "Kustomization"}) {
    std::error_code ec;
    if (fs::is_regular_file(dir / name, ec)) return true;
  }
  return false;
}

}  // namespace

Result<int64_t> parse_quantity_milli(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return invalid_argument(fmt::format("'{}' is not a Kubernetes quantity ({})", text, why));
  };
  const size_t n = text.size();
  size_t pos = 0;
  bool negative = false;
  if (pos < n && (text[pos] == '+' || text[pos] == '-')) {
    negative = text[pos] == '-';
    ++pos;
  }
  std::string digits;
  int64_t fraction_digits = 0;
  bool any_digit = false;
  while (pos < n && text[pos] >= '0' && text[pos] <= '9') {
    digits.push_back(text[pos++]);
    any_digit = true;
  }
  if (pos < n && text[pos] == '.') {
    ++pos;
    while (pos < n && text[pos] >= '0' && text[pos] <= '9') {
      digits.push_back(text[pos++]);
      ++fraction_digits;
      any_digit = true;
    }
  }
  if (!any_digit) return bad("no number");
  const std::string suffix = text.substr(pos);
  int64_t exp10 = 0;
  int binary_powers = 0;  // of 1024
  static const std::pair<const char*, int> kDecimal[] = {{"", 0},   {"n", -9}, {"u", -6}, {"m", -3},
                                                         {"k", 3},  {"M", 6},  {"G", 9},  {"T", 12},
                                                         {"P", 15}, {"E", 18}};
  static const std::pair<const char*, int> kBinary[] = {{"Ki", 1}, {"Mi", 2}, {"Gi", 3},
                                                        {"Ti", 4}, {"Pi", 5}, {"Ei", 6}};
  bool known = false;
  for (const auto& [s, e] : kDecimal) {
    if (suffix == s) {
      exp10 = e;
      known = true;
    }
  }
  for (const auto& [s, p] : kBinary) {
    if (suffix == s) {
      binary_powers = p;
      known = true;
    }
  }
  if (!known && suffix.size() > 1 && (suffix[0] == 'e' || suffix[0] == 'E')) {
    const std::string_view exponent = std::string_view(suffix).substr(1);
    const bool digits_only =
        std::all_of(exponent.begin() + ((exponent[0] == '+' || exponent[0] == '-') ? 1 : 0),
                    exponent.end(), [](char c) { return c >= '0' && c <= '9'; });
    const auto e = digits_only ? parse_int64(exponent) : std::nullopt;
    if (!e) return bad("bad exponent");
    exp10 = *e;
    known = true;
  }
  if (!known) return bad("unknown suffix '" + suffix + "'");

  // value * 1000 = digits * 1024^binary_powers * 10^(exp10 - fraction_digits + 3)
  const size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) return int64_t{0};
  digits.erase(0, first);
  for (int i = 0; i < binary_powers; ++i) digits = multiply_decimal(digits, 1024);
  // Bounded so that the arithmetic below cannot overflow for absurd exponents.
  const int64_t shift =
      std::clamp<int64_t>(exp10, -100000, 100000) - fraction_digits + 3;  // power of ten
  std::string integer;
  bool inexact = false;
  if (shift >= 0) {
    if (static_cast<int64_t>(digits.size()) + shift > 19) return out_of_range(text + ": too large");
    integer = digits + std::string(static_cast<size_t>(shift), '0');
  } else {
    const int64_t drop = -shift;
    if (drop >= static_cast<int64_t>(digits.size())) {
      integer = "0";
      inexact = true;  // digits is non-zero
    } else {
      const size_t keep = digits.size() - static_cast<size_t>(drop);
      integer = digits.substr(0, keep);
      inexact = digits.find_first_not_of('0', keep) != std::string::npos;
    }
  }
  if (integer.size() > 19) return out_of_range(text + ": too large");
  uint64_t value = 0;
  std::from_chars(integer.data(), integer.data() + integer.size(), value);
  if (inexact) ++value;  // MilliValue rounds away from zero
  if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return out_of_range(text + ": too large");
  }
  const auto signed_value = static_cast<int64_t>(value);
  return negative ? -signed_value : signed_value;
}

Result<Manifests> parse_manifests(const std::string& yaml) {
  return parse_stream(yaml, "");
}

Result<Manifests> read_manifests(const std::vector<std::string>& paths) {
  Manifests all;
  for (const std::string& path : paths) {
    if (path == "-") {
      std::ostringstream text;
      text << std::cin.rdbuf();
      ASSIGN_OR_RETURN(Manifests m, parse_stream(text.str(), "<stdin>"));
      append(all, std::move(m));
      continue;
    }
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status)) return not_found(path + ": no such file or directory");
    if (fs::is_directory(status)) {
      if (has_kustomization(path)) {
        ASSIGN_OR_RETURN(const std::string rendered, kustomize(path));
        ASSIGN_OR_RETURN(Manifests m, parse_stream(rendered, "kubectl kustomize " + path));
        append(all, std::move(m));
        continue;
      }
      std::vector<fs::path> files;
      for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
        const std::string ext = entry.path().extension().string();
        if ((ext == ".yaml" || ext == ".yml") && entry.is_regular_file()) {
          files.push_back(entry.path());
        }
      }
      if (ec) return invalid_argument(path + ": cannot list: " + ec.message());
      std::sort(files.begin(), files.end());
      for (const fs::path& file : files) {
        ASSIGN_OR_RETURN(const std::string text, read_text_file(file.string()));
        ASSIGN_OR_RETURN(Manifests m, parse_stream(text, file.string()));
        append(all, std::move(m));
      }
      continue;
    }
    ASSIGN_OR_RETURN(const std::string text, read_text_file(path));
    ASSIGN_OR_RETURN(Manifests m, parse_stream(text, path));
    append(all, std::move(m));
  }
  return all;
}

Result<WorkloadSpec> find_workload(const Manifests& manifests, const std::string& target_name,
                                   const std::string& target_kind) {
  // Several kinds may share the name (production: the Rollout and the Deployment it takes its
  // template from); without a kind the Rollout wins, as it is the one running the pods.
  const WorkloadSpec* found = nullptr;
  auto rank = [](const std::string& kind) {
    return kind == "Rollout" ? 0 : kind == "Deployment" ? 1 : 2;
  };
  for (const WorkloadSpec& w : manifests.workloads) {
    if (w.name != target_name) continue;
    if (!target_kind.empty() && w.kind != target_kind) continue;
    if (found == nullptr || rank(w.kind) < rank(found->kind)) found = &w;
  }
  if (found == nullptr) {
    return not_found(fmt::format(
        "no {} named '{}' in the manifests",
        target_kind.empty() ? "Deployment, StatefulSet or Rollout" : target_kind, target_name));
  }
  WorkloadSpec out = *found;
  if (!out.workload_ref.empty()) {
    const WorkloadSpec* ref = nullptr;
    for (const WorkloadSpec& w : manifests.workloads) {
      if (w.kind == "Deployment" && w.name == out.workload_ref) ref = &w;
    }
    if (ref == nullptr) {
      return not_found(fmt::format(
          "Rollout/{}: spec.workloadRef.name: no Deployment named '{}' in the manifests", out.name,
          out.workload_ref));
    }
    out.cpu_request_milli = ref->cpu_request_milli;
    out.memory_request_milli = ref->memory_request_milli;
  }
  return out;
}

}  // namespace tideserve::plan
