// The model repository: every model and version a server serves, loaded, swapped and unloaded
// while requests keep flowing.
//
//   DIR/<name>/tideserve.json      optional: version policy, pooling, dtype, limits (JSON)
//   DIR/<name>/<version>/          a Hugging Face model directory; <version> a positive integer
//   DIR/<name>/.<anything>         ignored: writers copy a version in under a dot name and
//                                  rename(2) it to <version> once complete, so a half-copied
//                                  directory is never seen
//
// `--model DIR` is a repository of one model at one fixed version (never rescanned).
//
// All loading and unloading runs on the repository's control thread, one model version at a
// time: map, build, warm up beside the versions serving, check, then publish under the lock
// (atomic for requests: find() returns the new version from then on). A version leaving service
// is taken out of the lookup at once, and destroyed (its memory released) only when no request
// holds it any more: every request holds its version (find() returns a shared_ptr) from
// lookup to answer, so requests already admitted finish on the version they started on. A
// version that fails to load or warm up never replaces one that serves: the old keeps serving
// and the failure (reason, load_failures) shows in index().
//
// Version policy ("version_policy" in tideserve.json, as Triton names it):
//   {"latest": {"num_versions": N}}  the N highest versions that load (default N = 1; a newest
//                                    version that fails falls back to the next one)
//   {"all": {}}                      every version
//   {"specific": {"versions": [..]}} those versions
// A failed version is retried when its files change (sizes or times) or on an explicit load.
//
// Model control (--model-control):
//   poll      every --repository-poll-seconds (and on rescan(): SIGHUP) the repository is read
//             again: new models and versions load, removed ones unload; load()/unload() refused
//   explicit  models load at start; later only load()/unload() change which are served;
//             rescan() (SIGHUP) reapplies the policy of the models loaded
//   none      what is there at start is served until the process ends; load()/unload() refused
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tideserve/runtime/model_instance.h"

namespace tideserve::runtime {

enum class ModelControl { kNone, kPoll, kExplicit };
std::optional<ModelControl> parse_model_control(std::string_view name);
const char* model_control_name(ModelControl control);

struct VersionPolicy {
  enum class Kind { kLatest, kAll, kSpecific };
  Kind kind = Kind::kLatest;
  int64_t num_versions = 1;       // kLatest
  std::vector<int64_t> versions;  // kSpecific
};

// A version directory's name as its number: a positive integer of at most 18 digits; else
// nullopt (a dot name being copied in, "v2", "0"). --pin-version takes the same numbers.
std::optional<int64_t> parse_version_number(std::string_view name);

// DIR/<name>/tideserve.json: the version policy and what the model overrides of the server's
// flags. Every key is optional; an unknown key is an error (a typo must not pass silently).
//   {"version_policy": ..., "pooling": "mean", "dtype": "bf16", "max_input_length": 256,
//    "max_batch_tokens": 4096, "max_batch_requests": 64, "max_concurrent_requests": 256}
struct ModelConfig {
  VersionPolicy policy;
  std::optional<Pooling> pooling;
  std::optional<Precision> precision;
  std::optional<int64_t> max_input_length;
  std::optional<int64_t> max_batch_tokens;
  std::optional<int64_t> max_batch_requests;
  std::optional<int64_t> max_concurrent_requests;
};
// A missing file is the defaults; a malformed one an error naming the file and the key.
Result<ModelConfig> read_model_config(const std::string& path);
// Parses the text of a tideserve.json (`path` names it in errors).
Result<ModelConfig> parse_model_config(std::string_view text, const std::string& path);

// The bytes a load of `dir` is expected to add: its weight files (mapped, then touched by warm-up
// or converted) plus a margin for the encoder's workspace.
int64_t estimate_load_bytes(const std::string& dir);

// A version loaded: its service (holding whatever it runs on) and how the load went.
struct LoadedVersion {
  std::shared_ptr<EmbeddingService> service;
  LoadReport report;
};
// Builds one version from its options (model_dir, name, version set): ModelInstance::load in
// production; the runtime tests give a fake-engine one, so that ThreadSanitizer sees the
// repository's own concurrency.
using VersionLoader = std::function<Result<LoadedVersion>(const ModelOptions& options)>;
// The production loader: ModelInstance::load, its service aliasing the instance.
Result<LoadedVersion> load_model_instance(const ModelOptions& options);

struct RepositoryOptions {
  std::string root;  // --model-repository; empty: the one model of `defaults.model_dir`
  ModelControl control = ModelControl::kNone;
  double poll_seconds = 15;
  // A load that would take resident memory past this is refused. 0: the cgroup limit minus
  // a margin (a tenth, at most 1 GiB), no check without one; < 0: no check.
  int64_t memory_limit = 0;
  std::string default_model;  // routes that name no model; empty: the only model, if one
  // --pin-version NAME=VERSION: that model serves exactly that version, whatever its
  // tideserve.json says (a pod template that pins versions makes a model version a canary).
  std::map<std::string, int64_t> pinned_versions;
  // Every model's options: engine, scheduler (its compute gate shared by all), task pool,
  // pooling and limits; tideserve.json overrides per model. With no root, model_dir, name and
  // version are the one model's.
  ModelOptions defaults;
  VersionLoader loader = load_model_instance;
};

enum class VersionState { kLoading, kReady, kUnavailable };
const char* version_state_name(VersionState state);  // "LOADING", "READY", "UNAVAILABLE"

// One entry of the repository index.
struct VersionStatus {
  std::string name;
  std::string version;  // empty for a model whose tideserve.json is broken
  VersionState state = VersionState::kUnavailable;
  std::string reason;  // why it is not READY
  int64_t load_failures = 0;
  int64_t memory_bytes = 0;  // resident memory its load added (READY)
};

// A model and its versions serving, for listings (/v1/models, /info, metadata).
struct ServedModel {
  std::string name;
  std::vector<std::string> versions;  // ready, ascending; the last is the default
};

class ModelRepository {
 public:
  // Called on the control thread (or start()'s caller), never with the repository's lock held.
  struct Observer {
    // Before the version is published (set metrics and batch observers here).
    std::function<void(EmbeddingService& service, const LoadReport& report, int64_t memory)> loaded;
    std::function<void(const std::string& name, const std::string& version, const Status& why)>
        load_failed;
    // Taken out of service (its memory is released once the requests holding it end).
    std::function<void(const std::string& name, const std::string& version)> unloaded;
  };

  ModelRepository(RepositoryOptions options, Observer observer = {});
  // Stops the control thread, then drains and releases every version.
  ~ModelRepository();
  ModelRepository(const ModelRepository&) = delete;
  ModelRepository& operator=(const ModelRepository&) = delete;

  // Loads what the repository holds (blocking), then starts the control thread. An error only
  // when the repository cannot be read at all, or (one-model mode) when the model fails.
  Status start();

  // The version a request runs on, held until the request is answered. `name` empty: the
  // default model; `version` empty: its highest version serving. kNotFound for an unknown model
  // or version (the message lists what is served), kUnavailable while a model has no version
  // serving yet (loading, or every version failed: the reason says which), kInvalidArgument
  // when no model is named and several are served without a default.
  Result<std::shared_ptr<EmbeddingService>> find(std::string_view name,
                                                 std::string_view version = {}) const;

  // Every model with a version serving, by name.
  std::vector<ServedModel> served() const;
  // Every model and version known, serving or not, with reasons (the repository index).
  std::vector<VersionStatus> index() const;
  // The default model's name ("" when there is none).
  std::string default_model() const;
  // Ready for traffic: the first load is done and the default model (else any model) serves.
  bool ready(std::string* reason = nullptr) const;
  const RepositoryOptions& options() const { return options_; }
  int64_t memory_limit() const { return memory_limit_; }

  // explicit mode: (re)reads `name`'s directory and loads its versions per its policy, then calls
  // `done` (on the control thread) with OK once a version serves, else why not. A load that
  // would pass the memory limit is kResourceExhausted; an unknown model kNotFound; another
  // control mode kFailedPrecondition.
  void load(const std::string& name, std::function<void(Status)> done);
  // explicit mode: takes every version of `name` out of service; `done` as for load.
  void unload(const std::string& name, std::function<void(Status)> done);
  // poll and explicit modes: read the repository again now (SIGHUP).
  void rescan();

  // Serves a version built elsewhere (the API tests' fake-engine service) as if it had loaded:
  // READY under its info() name and version; a repository with no root counts as started.
  void adopt(std::shared_ptr<EmbeddingService> service);

  // Every version serving or retiring, for metrics (queue depth, in flight).
  std::vector<std::shared_ptr<EmbeddingService>> services() const;
  // Refuses new requests and finishes the admitted ones on every version; stops the control
  // thread first. True when all finished within `timeout`.
  bool drain(std::chrono::milliseconds timeout);

 private:
  struct Version;
  struct Model;
  using Action = std::function<void()>;

  void control_loop();
  void post(Action action);
  // Reads the whole repository (poll: every model on disk; explicit: the models wanted).
  void scan_all(bool initial);
  // Reads one model's directory and brings its versions in line with its policy.
  Status sync_model(const std::string& name, bool force_retry);
  Status load_version(const std::string& name, const std::string& version, const std::string& dir,
                      const ModelConfig& config);
  // Takes a version out of the lookup and onto the retiring list (mutex_ held).
  void retire_locked(Model& model, const std::string& version, const std::string& reason,
                     std::vector<std::pair<std::string, std::string>>& unloaded);
  void notify_unloaded(const std::vector<std::pair<std::string, std::string>>& unloaded);
  // `name`'s `version` (created if the model has no such entry yet), or null when the model
  // left the repository (mutex_ held).
  Version* version_locked(const std::string& name, const std::string& version);
  // load() and unload() run only in explicit mode: calls `done` with why not and returns false.
  bool explicit_only(const std::function<void(Status)>& done) const;
  // Destroys the retired versions no request holds any more (control thread).
  void reap();
  std::vector<std::string> model_names_on_disk(Status& error) const;

  RepositoryOptions options_;
  Observer observer_;
  int64_t memory_limit_ = -1;

  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Model>> models_;     // guarded by mutex_
  bool started_ = false;                                     // guarded by mutex_
  std::vector<std::shared_ptr<EmbeddingService>> retiring_;  // guarded by mutex_

  std::mutex control_mutex_;
  std::condition_variable control_cv_;
  std::deque<Action> actions_;  // guarded by control_mutex_
  bool stopping_ = false;       // guarded by control_mutex_
  std::thread control_;
};

}  // namespace tideserve::runtime
