// The model repository's admin routes (KServe v2 / Triton repository extension), behind the admin
// key (--admin-key; without one they do not exist):
//
//   POST /v2/repository/index                  {"ready"?: bool} -> [{"name", "version", "state",
//                                              "reason"?, "load_failures", "memory_bytes"}]
//   POST /v2/repository/models/{name}/load     answers once a version serves, or why none does
//   POST /v2/repository/models/{name}/unload   answers once its versions left service (each is
//                                              released when the requests holding it end)
//
// Load and unload run on the repository's control thread (never on an IO thread); a failed load
// is 400 with the reason (Triton's answer), 404 for a model the repository does not hold, 409 in
// a model control mode other than explicit, 507 when the memory limit refuses it.
#include <fmt/format.h>

#include "tideserve/server/api.h"
#include "tideserve/server/json_writer.h"

namespace tideserve::server {

namespace {

int load_status(const Status& st) {
  switch (st.code()) {
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kResourceExhausted:
      return 507;
    default:
      return 400;
  }
}

}  // namespace

void repository_index(Api& api, const CallPtr& call) {
  bool only_ready = false;
  if (!call->request.body().empty()) {
    bool malformed = false;
    element body;
    if (Status st = parse_json_object(call->request.body(), body, malformed); !st.is_ok()) {
      return api.reply_error(call, 400, st.message());
    }
    if (Status st = read_bool(body, "ready", only_ready); !st.is_ok()) {
      return api.reply_error(call, 400, st.message());
    }
  }
  std::vector<runtime::VersionStatus> index;
  if (const runtime::ModelRepository* repository = api.repository()) index = repository->index();
  JsonWriter w;
  w.begin_array();
  for (const runtime::VersionStatus& v : index) {
    if (only_ready && v.state != runtime::VersionState::kReady) continue;
    w.begin_object().field("name", v.name).field("version", v.version);
    w.field("state", runtime::version_state_name(v.state));
    if (v.state != runtime::VersionState::kReady) w.field("reason", v.reason);
    w.field("load_failures", v.load_failures).field("memory_bytes", v.memory_bytes);
    w.end_object();
  }
  w.end_array();
  api.reply_json(call, 200, std::move(w).take());
}

void repository_load(Api& api, const CallPtr& call) {
  runtime::ModelRepository* repository = api.repository();
  if (repository == nullptr) {
    return api.reply_error(call, 503, "not ready: " + api.not_ready_reason());
  }
  const std::string name = call->params.name;
  repository->load(name, [&api, call, repository, name](Status st) {
    if (!st.is_ok()) return api.reply_error(call, load_status(st), st.message());
    JsonWriter w;
    w.begin_object().field("name", name).key("versions").begin_array();
    for (const runtime::ServedModel& m : repository->served()) {
      if (m.name != name) continue;
      for (const std::string& v : m.versions) w.value(v);
    }
    w.end_array().end_object();
    api.reply_json(call, 200, std::move(w).take());
  });
}

void repository_unload(Api& api, const CallPtr& call) {
  runtime::ModelRepository* repository = api.repository();
  if (repository == nullptr) {
    return api.reply_error(call, 503, "not ready: " + api.not_ready_reason());
  }
  const std::string name = call->params.name;
  repository->unload(name, [&api, call, name](Status st) {
    if (!st.is_ok()) return api.reply_error(call, load_status(st), st.message());
    JsonWriter w;
    w.begin_object().field("name", name).field("unloaded", true).end_object();
    api.reply_json(call, 200, std::move(w).take());
  });
}

}  // namespace tideserve::server
