#include "tideserve/runtime/model_repository.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <simdjson.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "tideserve/util/cpus.h"
#include "tideserve/util/log.h"
#include "tideserve/util/mapped_file.h"

namespace tideserve::runtime {

namespace fs = std::filesystem;

namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Versions order numerically when both are numbers ("9" < "10"), else as text.
struct VersionLess {
  bool operator()(const std::string& a, const std::string& b) const {
    if (all_digits(a) && all_digits(b)) {
      const auto strip = [](std::string_view s) {
        while (s.size() > 1 && s.front() == '0') s.remove_prefix(1);
        return s;
      };
      std::string_view x = strip(a), y = strip(b);
      if (x.size() != y.size()) return x.size() < y.size();
      return x < y;
    }
    return a < b;
  }
};

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += ", ";
    out += "'" + item + "'";
  }
  return out;
}

double mib(int64_t bytes) {
  return static_cast<double>(bytes) / (1 << 20);
}

// Changes whenever a file under `dir` is added, removed, resized or rewritten.
std::string fingerprint(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> entries;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code e;
    if (!it->is_regular_file(e)) continue;
    const auto size = it->file_size(e);
    const auto time = it->last_write_time(e).time_since_epoch().count();
    entries.push_back(fmt::format("{}:{}:{}", it->path().string(), size, time));
  }
  std::sort(entries.begin(), entries.end());
  std::string out;
  for (const std::string& e : entries) out += e + "\n";
  return out;
}

Status config_error(const std::string& path, const std::string& problem) {
  return invalid_argument(path + ": " + problem);
}

Result<int64_t> positive(simdjson::dom::element value, const std::string& path,
                         std::string_view key) {
  if (value.type() != simdjson::dom::element_type::INT64 || int64_t(value) <= 0) {
    return config_error(path, fmt::format("\"{}\" must be a positive integer", key));
  }
  return int64_t(value);
}

}  // namespace

std::optional<int64_t> parse_version_number(std::string_view name) {
  if (!all_digits(name) || name.size() > 18) return std::nullopt;
  const int64_t number = std::stoll(std::string(name));
  if (number < 1) return std::nullopt;
  return number;
}

std::optional<ModelControl> parse_model_control(std::string_view name) {
  if (name == "none") return ModelControl::kNone;
  if (name == "poll") return ModelControl::kPoll;
  if (name == "explicit") return ModelControl::kExplicit;
  return std::nullopt;
}

const char* model_control_name(ModelControl control) {
  switch (control) {
    case ModelControl::kPoll:
      return "poll";
    case ModelControl::kExplicit:
      return "explicit";
    case ModelControl::kNone:
      break;
  }
  return "none";
}

const char* version_state_name(VersionState state) {
  switch (state) {
    case VersionState::kLoading:
      return "LOADING";
    case VersionState::kReady:
      return "READY";
    case VersionState::kUnavailable:
      break;
  }
  return "UNAVAILABLE";
}

Result<ModelConfig> parse_model_config(std::string_view text, const std::string& path) {
  using simdjson::dom::element;
  using simdjson::dom::element_type;
  simdjson::dom::parser parser;
  element root;
  if (auto err = parser.parse(text.data(), text.size()).get(root); err != simdjson::SUCCESS) {
    return config_error(path, std::string("not valid JSON: ") + simdjson::error_message(err));
  }
  if (root.type() != element_type::OBJECT) return config_error(path, "must be a JSON object");
  ModelConfig config;
  for (auto [key_view, value] : simdjson::dom::object(root)) {
    const std::string key(key_view);
    if (value.is_null()) continue;
    if (key == "version_policy") {
      if (value.type() != element_type::OBJECT || simdjson::dom::object(value).size() != 1) {
        return config_error(
            path,
            "\"version_policy\" must be one of {\"latest\": {\"num_versions\": N}}, "
            "{\"all\": {}}, {\"specific\": {\"versions\": [..]}}");
      }
      auto [kind, body] = *simdjson::dom::object(value).begin();
      if (body.type() != element_type::OBJECT) {
        return config_error(
            path, fmt::format("\"version_policy.{}\" must be an object", std::string_view(kind)));
      }
      if (kind == "latest") {
        config.policy.kind = VersionPolicy::Kind::kLatest;
        element n;
        if (body["num_versions"].get(n) == simdjson::SUCCESS && !n.is_null()) {
          auto v = positive(n, path, "version_policy.latest.num_versions");
          if (!v.is_ok()) return v.status();
          config.policy.num_versions = *v;
        }
      } else if (kind == "all") {
        config.policy.kind = VersionPolicy::Kind::kAll;
      } else if (kind == "specific") {
        config.policy.kind = VersionPolicy::Kind::kSpecific;
        element list;
        if (body["versions"].get(list) != simdjson::SUCCESS || list.type() != element_type::ARRAY ||
            simdjson::dom::array(list).size() == 0) {
          return config_error(path,
                              "\"version_policy.specific.versions\" must be a non-empty list");
        }
        for (element v : simdjson::dom::array(list)) {
          auto n = positive(v, path, "version_policy.specific.versions[]");
          if (!n.is_ok()) return n.status();
          config.policy.versions.push_back(*n);
        }
      } else {
        return config_error(path, fmt::format("unknown version policy \"{}\" (latest, all, "
                                              "specific)",
                                              std::string_view(kind)));
      }
    } else if (key == "pooling" || key == "dtype") {
      std::string_view name;
      if (value.get_string().get(name) != simdjson::SUCCESS) {
        return config_error(path, fmt::format("\"{}\" must be a string", key));
      }
      if (key == "pooling") {
        auto pooling = parse_pooling(name);
        if (!pooling.is_ok()) return config_error(path, pooling.status().message());
        config.pooling = *pooling;
      } else {
        auto precision = parse_precision(name);
        if (!precision) {
          return config_error(path, fmt::format("unknown dtype \"{}\"", name));
        }
        config.precision = *precision;
      }
    } else if (key == "max_input_length" || key == "max_batch_tokens" ||
               key == "max_batch_requests" || key == "max_concurrent_requests") {
      auto n = positive(value, path, key);
      if (!n.is_ok()) return n.status();
      std::optional<int64_t>& out = key == "max_input_length"     ? config.max_input_length
                                    : key == "max_batch_tokens"   ? config.max_batch_tokens
                                    : key == "max_batch_requests" ? config.max_batch_requests
                                                                  : config.max_concurrent_requests;
      out = *n;
    } else {
      return config_error(path,
                          fmt::format("unknown key \"{}\" (version_policy, pooling, dtype, "
                                      "max_input_length, max_batch_tokens, max_batch_requests, "
                                      "max_concurrent_requests)",
                                      key));
    }
  }
  return config;
}

Result<ModelConfig> read_model_config(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return ModelConfig{};
  Result<std::string> text = read_text_file(path);
  if (!text.is_ok()) return config_error(path, "cannot be read");
  return parse_model_config(*text, path);
}

int64_t estimate_load_bytes(const std::string& dir) {
  int64_t bytes = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code e;
    if (it->is_regular_file(e) && it->path().extension() == ".safetensors") {
      bytes += static_cast<int64_t>(it->file_size(e));
    }
  }
  return bytes + (int64_t{64} << 20);
}

Result<LoadedVersion> load_model_instance(const ModelOptions& options) {
  auto loaded = ModelInstance::load(options);
  if (!loaded.is_ok()) return loaded.status();
  std::shared_ptr<ModelInstance> instance(std::move(loaded).value());
  // The service keeps its instance alive: released with the last holder of the service.
  return LoadedVersion{std::shared_ptr<EmbeddingService>(instance, &instance->service()),
                       instance->report()};
}

// ---------------------------------------------------------------------------------------------

struct ModelRepository::Version {
  std::string dir;
  VersionState state = VersionState::kUnavailable;
  std::string reason = "not loaded";
  int64_t load_failures = 0;
  int64_t memory_bytes = 0;
  std::string failed_fingerprint;             // the files when it last failed
  std::shared_ptr<EmbeddingService> service;  // while READY
};

struct ModelRepository::Model {
  bool wanted = true;        // explicit mode: loaded, not unloaded
  std::string config_error;  // tideserve.json's problem, if any
  std::map<std::string, Version, VersionLess> versions;

  const Version* newest_serving() const {
    for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
      if (it->second.service) return &it->second;
    }
    return nullptr;
  }
  std::string not_serving_reason() const {
    if (!config_error.empty()) return config_error;
    for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
      if (it->second.state == VersionState::kLoading) return "loading";
      if (it->second.load_failures > 0) return "version " + it->first + ": " + it->second.reason;
    }
    if (versions.empty()) return "no version directory";
    return versions.rbegin()->second.reason;
  }
};

ModelRepository::ModelRepository(RepositoryOptions options, Observer observer)
    : options_(std::move(options)), observer_(std::move(observer)) {
  if (options_.memory_limit > 0) {
    memory_limit_ = options_.memory_limit;
  } else if (options_.memory_limit == 0) {
    if (const std::optional<int64_t> cgroup = cgroup_memory_limit()) {
      memory_limit_ = *cgroup - std::min<int64_t>(*cgroup / 10, int64_t{1} << 30);
    }
  }
  if (!options_.defaults.service.scheduler.gate) {
    options_.defaults.service.scheduler.gate = std::make_shared<ComputeGate>();
  }
}

ModelRepository::~ModelRepository() {
  {
    std::lock_guard<std::mutex> lock(control_mutex_);
    stopping_ = true;
  }
  control_cv_.notify_all();
  if (control_.joinable()) control_.join();
}

Status ModelRepository::start() {
  if (options_.root.empty()) {
    const std::string name = model_name(options_.defaults);
    const std::string version = options_.defaults.version;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      models_[name] = std::make_unique<Model>();
      models_[name]->versions[version].dir = options_.defaults.model_dir;
    }
    Status st = load_version(name, version, options_.defaults.model_dir, ModelConfig{});
    if (!st.is_ok()) return st;
  } else {
    std::error_code ec;
    if (!fs::is_directory(options_.root, ec)) {
      return not_found(options_.root + ": the model repository is not a directory");
    }
    Status error;
    model_names_on_disk(error);
    if (!error.is_ok()) return error;
    scan_all(true);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = true;
  }
  control_ = std::thread([this] { control_loop(); });
  return Status::ok();
}

std::vector<std::string> ModelRepository::model_names_on_disk(Status& error) const {
  std::vector<std::string> names;
  std::error_code ec;
  fs::directory_iterator it(options_.root, ec);
  if (ec) {
    error = not_found(
        fmt::format("{}: cannot read the model repository: {}", options_.root, ec.message()));
    return names;
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    std::error_code e;
    if (name.empty() || name.front() == '.' || !it->is_directory(e)) continue;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

void ModelRepository::scan_all(bool initial) {
  if (options_.root.empty()) return;
  Status error;
  const std::vector<std::string> names = model_names_on_disk(error);
  if (!error.is_ok()) {
    log_event(LogLevel::kWarning, "repository_scan_failed", {{"error", error.message()}});
    return;
  }
  std::vector<std::string> to_sync;
  std::vector<std::pair<std::string, std::string>> unloaded;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const std::string& name : names) {
      auto [it, added] = models_.try_emplace(name, nullptr);
      if (added) {
        it->second = std::make_unique<Model>();
        // explicit mode: a model that appears after start waits for its load().
        it->second->wanted = initial || options_.control == ModelControl::kPoll;
      }
      if (it->second->wanted) to_sync.push_back(name);
    }
    // A model whose directory is gone is unloaded.
    for (auto it = models_.begin(); it != models_.end();) {
      if (std::binary_search(names.begin(), names.end(), it->first)) {
        ++it;
        continue;
      }
      for (auto& [version, v] : it->second->versions) {
        if (v.service) retire_locked(*it->second, version, "removed from the repository", unloaded);
      }
      it = models_.erase(it);
    }
  }
  notify_unloaded(unloaded);
  for (const std::string& name : to_sync) (void)sync_model(name, false);
}

Status ModelRepository::sync_model(const std::string& name, bool force_retry) {
  const fs::path model_dir = fs::path(options_.root) / name;
  auto config = read_model_config((model_dir / "tideserve.json").string());
  if (!config.is_ok()) {
    bool changed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = models_.find(name);
      if (it == models_.end()) return config.status();
      changed = it->second->config_error != config.status().message();
      it->second->config_error = config.status().message();
    }
    if (changed) {
      log_event(LogLevel::kError, "model_load_failed",
                {{"model_id", name}, {"error", config.status().message()}});
      if (observer_.load_failed) observer_.load_failed(name, "", config.status());
    }
    return config.status();
  }

  if (auto pin = options_.pinned_versions.find(name); pin != options_.pinned_versions.end()) {
    config->policy = VersionPolicy{VersionPolicy::Kind::kSpecific, 1, {pin->second}};
  }

  // The version directories on disk, ascending.
  std::vector<std::pair<std::string, std::string>> on_disk;  // version, dir
  std::error_code ec;
  for (auto it = fs::directory_iterator(model_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string version = it->path().filename().string();
    std::error_code e;
    // A version number, and a directory: anything else (a dot name being copied in, a file) is
    // not a version.
    if (!parse_version_number(version) || !it->is_directory(e)) continue;
    on_disk.emplace_back(version, it->path().string());
  }
  std::sort(on_disk.begin(), on_disk.end(),
            [](const auto& a, const auto& b) { return VersionLess{}(a.first, b.first); });

  std::vector<std::pair<std::string, std::string>> unloaded;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = models_.find(name);
    if (it == models_.end()) return not_found(fmt::format("unknown model '{}'", name));
    Model& model = *it->second;
    model.config_error.clear();
    for (auto v = model.versions.begin(); v != model.versions.end();) {
      const bool present = std::any_of(on_disk.begin(), on_disk.end(),
                                       [&](const auto& d) { return d.first == v->first; });
      if (present) {
        ++v;
        continue;
      }
      if (v->second.service)
        retire_locked(model, v->first, "removed from the repository", unloaded);
      v = model.versions.erase(v);
    }
    for (const auto& [version, dir] : on_disk) model.versions[version].dir = dir;
  }
  notify_unloaded(unloaded);

  auto serving = [&](const std::string& version) {
    std::lock_guard<std::mutex> lock(mutex_);
    const Version* v = version_locked(name, version);
    return v != nullptr && v->service != nullptr;
  };
  // Whether a failed version is worth another try: its files changed, or the operator asked.
  auto worth_loading = [&](const std::string& version, const std::string& dir) {
    if (force_retry) return true;
    std::string failed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const Version* v = version_locked(name, version);
      if (v == nullptr) return false;
      if (v->load_failures == 0) return true;
      failed = v->failed_fingerprint;
    }
    return failed != fingerprint(dir);
  };
  const VersionPolicy& policy = config->policy;
  Status last_failure = unavailable(fmt::format("model '{}' has no version directory", name));
  std::vector<std::string> keep;  // versions the policy serves now
  if (policy.kind == VersionPolicy::Kind::kLatest) {
    // The N highest versions that load, newest first: a new version is up before an older one
    // leaves.
    for (auto d = on_disk.rbegin(); d != on_disk.rend(); ++d) {
      if (static_cast<int64_t>(keep.size()) >= policy.num_versions) break;
      if (serving(d->first)) {
        keep.push_back(d->first);
        continue;
      }
      if (!worth_loading(d->first, d->second)) continue;
      Status st = load_version(name, d->first, d->second, *config);
      if (st.is_ok()) {
        keep.push_back(d->first);
      } else {
        last_failure = st;
      }
    }
  } else {
    for (const auto& [version, dir] : on_disk) {
      const bool listed = policy.kind == VersionPolicy::Kind::kAll ||
                          std::find(policy.versions.begin(), policy.versions.end(),
                                    *parse_version_number(version)) != policy.versions.end();
      if (!listed) continue;
      if (serving(version)) {
        keep.push_back(version);
        continue;
      }
      if (!worth_loading(version, dir)) continue;
      Status st = load_version(name, version, dir, *config);
      if (st.is_ok()) {
        keep.push_back(version);
      } else {
        last_failure = st;
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = models_.find(name);
    if (it == models_.end()) return not_found(fmt::format("unknown model '{}'", name));
    Model& model = *it->second;
    // Versions outside the policy leave, but never the last ones serving: a model whose new
    // versions all fail keeps answering on what it had.
    if (!keep.empty()) {
      for (auto& [version, v] : model.versions) {
        if (std::find(keep.begin(), keep.end(), version) != keep.end()) continue;
        if (v.service) {
          retire_locked(model, version, "replaced (version policy)", unloaded);
        } else if (v.load_failures == 0 && v.state != VersionState::kLoading) {
          v.reason = "not in the version policy";
        }
      }
    }
  }
  notify_unloaded(unloaded);
  return keep.empty() ? last_failure : Status::ok();
}

Status ModelRepository::load_version(const std::string& name, const std::string& version,
                                     const std::string& dir, const ModelConfig& config) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Version* v = version_locked(name, version)) {
      v->state = VersionState::kLoading;
      v->reason = "loading";
    }
  }
  log_event(LogLevel::kInfo, "loading_model",
            {{"model", dir}, {"model_id", name}, {"version", version}});

  auto fail = [&](const Status& st) {
    std::string files = fingerprint(dir);  // read before the lock: it walks the directory
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (Version* v = version_locked(name, version)) {
        v->state = VersionState::kUnavailable;
        v->reason = "failed to load: " + st.message();
        ++v->load_failures;
        v->failed_fingerprint = std::move(files);
      }
    }
    log_event(LogLevel::kError, "model_load_failed",
              {{"model", dir}, {"model_id", name}, {"version", version}, {"error", st.message()}});
    if (observer_.load_failed) observer_.load_failed(name, version, st);
    return st;
  };

  if (memory_limit_ > 0) {
    const int64_t need = estimate_load_bytes(dir);
    const int64_t used = resident_bytes();
    if (used + need > memory_limit_) {
      return fail(resource_exhausted(fmt::format(
          "loading it needs about {:.0f} MiB (its weights and workspace) beside the {:.0f} MiB in "
          "use, over the memory limit of {:.0f} MiB (--memory-limit)",
          mib(need), mib(used), mib(memory_limit_))));
    }
  }

  ModelOptions options = options_.defaults;
  options.model_dir = dir;
  options.name = name;
  options.version = version;
  if (config.pooling) options.pooling = config.pooling;
  if (config.precision) options.engine.precision = *config.precision;
  if (config.max_input_length) options.max_input_length = *config.max_input_length;
  SchedulerOptions& scheduler = options.service.scheduler;
  if (config.max_batch_tokens) scheduler.max_batch_tokens = *config.max_batch_tokens;
  if (config.max_batch_requests) scheduler.max_batch_requests = *config.max_batch_requests;
  if (config.max_concurrent_requests) {
    scheduler.max_concurrent_requests = *config.max_concurrent_requests;
  }

  const int64_t before = resident_bytes();
  auto loaded = options_.loader(options);
  if (!loaded.is_ok()) return fail(loaded.status());
  const int64_t memory = std::max<int64_t>(resident_bytes() - before, 0);
  std::shared_ptr<EmbeddingService> service = std::move(loaded->service);
  const ModelInfo& info = service->info();
  const LoadReport& report = loaded->report;
  if (observer_.loaded) observer_.loaded(*service, report, memory);
  log_event(LogLevel::kInfo, "model_loaded",
            {{"model", dir},
             {"model_id", name},
             {"version", version},
             {"device", "cpu"},
             {"dtype", info.dtype},
             {"kind", model_kind_name(info.kind)},
             {"pooling", pooling_name(info.pooling)},
             {"pooling_source", info.pooling_source},
             {"output_size", info.output_size},
             {"cpu_isa", cpu_isa_name()},
             {"matmul", report.matmul},
             {"engine_threads", report.engine_threads},
             {"tokenization_workers", service->task_threads()},
             {"memory_bytes", static_cast<long long>(memory)},
             {"duration_ms", report.load_ms},
             {"warm_up_ms", report.warm_up_ms}});
  std::lock_guard<std::mutex> lock(mutex_);
  Version* v = version_locked(name, version);
  if (v == nullptr) {
    // Removed while it loaded: never published, released after the lock.
    retiring_.push_back(std::move(service));
    return not_found(fmt::format("model '{}' was removed while it loaded", name));
  }
  v->state = VersionState::kReady;
  v->reason.clear();
  v->memory_bytes = memory;
  v->failed_fingerprint.clear();
  v->service = std::move(service);
  return Status::ok();
}

ModelRepository::Version* ModelRepository::version_locked(const std::string& name,
                                                          const std::string& version) {
  auto it = models_.find(name);
  return it == models_.end() ? nullptr : &it->second->versions[version];
}

void ModelRepository::retire_locked(Model& model, const std::string& version,
                                    const std::string& reason,
                                    std::vector<std::pair<std::string, std::string>>& unloaded) {
  Version& v = model.versions[version];
  if (!v.service) return;
  unloaded.emplace_back(v.service->info().name, version);
  retiring_.push_back(std::move(v.service));
  v.service.reset();
  v.state = VersionState::kUnavailable;
  v.reason = reason;
  v.memory_bytes = 0;
}

void ModelRepository::notify_unloaded(
    const std::vector<std::pair<std::string, std::string>>& unloaded) {
  for (const auto& [name, version] : unloaded) {
    log_event(LogLevel::kInfo, "model_unloaded", {{"model_id", name}, {"version", version}});
    if (observer_.unloaded) observer_.unloaded(name, version);
  }
  if (!unloaded.empty()) control_cv_.notify_all();  // the reaper checks sooner
}

void ModelRepository::reap() {
  std::vector<std::shared_ptr<EmbeddingService>> done;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = retiring_.begin(); it != retiring_.end();) {
      // Nobody else holds it, and nobody can take it again: it left the lookup.
      if (it->use_count() == 1) {
        done.push_back(std::move(*it));
        it = retiring_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (std::shared_ptr<EmbeddingService>& service : done) {
    const std::string name = service->info().name;
    const std::string version = service->info().version;
    service->drain(std::chrono::seconds(30));
    const int64_t before = resident_bytes();
    service.reset();  // the model instance: weights unmapped, encoder and threads gone
#if defined(__GLIBC__)
    // The freed weights and workspaces leave holes in malloc's arenas: give them back to the
    // system now rather than whenever the arenas' tops happen to shrink.
    malloc_trim(0);
#endif
    log_event(LogLevel::kInfo, "model_released",
              {{"model_id", name},
               {"version", version},
               {"released_bytes",
                static_cast<long long>(std::max<int64_t>(before - resident_bytes(), 0))}});
  }
}

void ModelRepository::post(Action action) {
  {
    std::lock_guard<std::mutex> lock(control_mutex_);
    actions_.push_back(std::move(action));
  }
  control_cv_.notify_all();
}

void ModelRepository::control_loop() {
  auto last_scan = Clock::now();
  const auto poll =
      std::chrono::milliseconds(static_cast<int64_t>(std::max(options_.poll_seconds, 0.05) * 1000));
  for (;;) {
    Action action;
    {
      std::unique_lock<std::mutex> lock(control_mutex_);
      bool retiring;
      {
        std::lock_guard<std::mutex> models_lock(mutex_);
        retiring = !retiring_.empty();
      }
      auto wait = std::chrono::milliseconds(3600 * 1000);
      if (options_.control == ModelControl::kPoll) {
        wait =
            std::chrono::duration_cast<std::chrono::milliseconds>(last_scan + poll - Clock::now());
      }
      if (retiring) wait = std::min(wait, std::chrono::milliseconds(20));
      control_cv_.wait_for(lock, std::max(wait, std::chrono::milliseconds(0)),
                           [this] { return stopping_ || !actions_.empty(); });
      if (stopping_) return;
      if (!actions_.empty()) {
        action = std::move(actions_.front());
        actions_.pop_front();
      }
    }
    if (action) {
      action();
    } else if (options_.control == ModelControl::kPoll && Clock::now() >= last_scan + poll) {
      scan_all(false);
      last_scan = Clock::now();
    }
    reap();
  }
}

bool ModelRepository::explicit_only(const std::function<void(Status)>& done) const {
  if (options_.control == ModelControl::kExplicit) return true;
  done(Status(StatusCode::kFailedPrecondition,
              fmt::format("the model control mode is {}: load and unload need --model-control "
                          "explicit",
                          model_control_name(options_.control))));
  return false;
}

void ModelRepository::load(const std::string& name, std::function<void(Status)> done) {
  if (!explicit_only(done)) return;
  post([this, name, done = std::move(done)] {
    std::error_code ec;
    if (name.empty() || name.front() == '.' || name.find('/') != std::string::npos ||
        !fs::is_directory(fs::path(options_.root) / name, ec)) {
      return done(not_found(fmt::format("no model '{}' in the repository", name)));
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& model = models_[name];
      if (!model) model = std::make_unique<Model>();
      model->wanted = true;
    }
    done(sync_model(name, true));
  });
}

void ModelRepository::unload(const std::string& name, std::function<void(Status)> done) {
  if (!explicit_only(done)) return;
  post([this, name, done = std::move(done)] {
    std::vector<std::pair<std::string, std::string>> unloaded;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = models_.find(name);
      if (it == models_.end()) {
        return done(not_found(fmt::format("unknown model '{}'", name)));
      }
      it->second->wanted = false;
      for (auto& [version, v] : it->second->versions) {
        if (v.service) retire_locked(*it->second, version, "unloaded", unloaded);
      }
    }
    notify_unloaded(unloaded);
    done(Status::ok());
  });
}

void ModelRepository::rescan() {
  if (options_.control == ModelControl::kNone || options_.root.empty()) {
    log_event(LogLevel::kInfo, "repository_rescan_ignored",
              {{"model_control", model_control_name(options_.control)}});
    return;
  }
  post([this] {
    log_event(LogLevel::kInfo, "repository_rescan", {});
    scan_all(false);
  });
}

Result<std::shared_ptr<EmbeddingService>> ModelRepository::find(std::string_view name,
                                                                std::string_view version) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string wanted(name);
  if (wanted.empty()) {
    wanted = options_.default_model;
    if (wanted.empty() && models_.size() == 1) wanted = models_.begin()->first;
    if (wanted.empty()) {
      std::vector<std::string> names;
      for (const auto& [n, m] : models_) names.push_back(n);
      return invalid_argument(fmt::format(
          "this server serves several models ({}): name one with \"model\" (or the x-model "
          "header)",
          join(names)));
    }
  }
  auto it = models_.find(wanted);
  if (it == models_.end()) {
    std::vector<std::string> names;
    for (const auto& [n, m] : models_) {
      if (m->newest_serving() != nullptr) names.push_back(n);
    }
    return not_found(names.empty() ? fmt::format("unknown model '{}'", wanted)
                                   : fmt::format("unknown model '{}'; this server serves {}",
                                                 wanted, join(names)));
  }
  if (!it->second->wanted && it->second->newest_serving() == nullptr) {
    return not_found(fmt::format("model '{}' is not loaded", wanted));
  }
  const Model& model = *it->second;
  if (version.empty()) {
    if (const Version* v = model.newest_serving()) return v->service;
    return unavailable(
        fmt::format("model '{}' has no version serving: {}", wanted, model.not_serving_reason()));
  }
  auto v = model.versions.find(std::string(version));
  if (v != model.versions.end() && v->second.service) return v->second.service;
  if (v != model.versions.end() && v->second.state == VersionState::kLoading) {
    return unavailable(fmt::format("model '{}' version '{}' is loading", wanted, version));
  }
  std::vector<std::string> serving;
  for (const auto& [ver, state] : model.versions) {
    if (state.service) serving.push_back(ver);
  }
  return not_found(serving.empty()
                       ? fmt::format("model '{}' has no version '{}' serving", wanted, version)
                       : fmt::format("model '{}' has no version '{}' serving; it serves {}", wanted,
                                     version, join(serving)));
}

std::vector<ServedModel> ModelRepository::served() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ServedModel> out;
  for (const auto& [name, model] : models_) {
    ServedModel m{name, {}};
    for (const auto& [version, v] : model->versions) {
      if (v.service) m.versions.push_back(version);
    }
    if (!m.versions.empty()) out.push_back(std::move(m));
  }
  return out;
}

std::vector<VersionStatus> ModelRepository::index() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<VersionStatus> out;
  for (const auto& [name, model] : models_) {
    if (!model->config_error.empty()) {
      out.push_back({name, "", VersionState::kUnavailable, model->config_error, 1, 0});
    }
    if (model->versions.empty() && model->config_error.empty()) {
      out.push_back({name, "", VersionState::kUnavailable,
                     model->wanted ? "no version directory" : "not loaded", 0, 0});
    }
    for (const auto& [version, v] : model->versions) {
      out.push_back({name, version, v.state, v.reason, v.load_failures, v.memory_bytes});
    }
  }
  return out;
}

std::string ModelRepository::default_model() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!options_.default_model.empty()) return options_.default_model;
  return models_.size() == 1 ? models_.begin()->first : std::string();
}

bool ModelRepository::ready(std::string* reason) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto say = [&](std::string why) {
    if (reason != nullptr) *reason = std::move(why);
    return false;
  };
  if (!started_) return say("loading models");
  if (!options_.default_model.empty()) {
    auto it = models_.find(options_.default_model);
    if (it == models_.end()) {
      return say(
          fmt::format("the default model '{}' is not in the repository", options_.default_model));
    }
    if (it->second->newest_serving() == nullptr) {
      return say(fmt::format("the default model '{}' has no version serving: {}",
                             options_.default_model, it->second->not_serving_reason()));
    }
    return true;
  }
  for (const auto& [name, model] : models_) {
    if (model->newest_serving() != nullptr) return true;
  }
  std::string why = "no model serving";
  for (const auto& [name, model] : models_) {
    why += fmt::format("; '{}': {}", name, model->not_serving_reason());
  }
  if (models_.empty()) why += ": the repository holds no model directory";
  return say(why);
}

void ModelRepository::adopt(std::shared_ptr<EmbeddingService> service) {
  std::lock_guard<std::mutex> lock(mutex_);
  const ModelInfo& info = service->info();
  auto& model = models_[info.name];
  if (!model) model = std::make_unique<Model>();
  Version& v = model->versions[info.version];
  v.state = VersionState::kReady;
  v.reason.clear();
  v.service = std::move(service);
  started_ = true;
}

std::vector<std::shared_ptr<EmbeddingService>> ModelRepository::services() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<EmbeddingService>> out(retiring_.begin(), retiring_.end());
  for (const auto& [name, model] : models_) {
    for (const auto& [version, v] : model->versions) {
      if (v.service) out.push_back(v.service);
    }
  }
  return out;
}

bool ModelRepository::drain(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  {
    std::lock_guard<std::mutex> lock(control_mutex_);
    stopping_ = true;
  }
  control_cv_.notify_all();
  if (control_.joinable()) control_.join();
  bool drained = true;
  for (const std::shared_ptr<EmbeddingService>& service : services()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    drained = service->drain(std::max(left, std::chrono::milliseconds(0))) && drained;
  }
  return drained;
}

}  // namespace tideserve::runtime
