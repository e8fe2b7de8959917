// The route table: every route of the server on one page (routes.cc), each with its method,
// path pattern, API family, whether it needs the API key and the loaded model, and its handler.
// 404, 405 (with Allow), HEAD and the metrics route label all come from it.
//
// Handlers live in one file per API family: seed_api.cc (/health, /predict), tei_api.cc
// (/embed, /tokenize, /info), openai_api.cc (/v1/embeddings, /v1/models), kserve_api.cc
// (/v2/...), one for the scoring jobs of classifier and reranker models, scoring_api.cc
// (/rerank, /v1/rerank, /classify), the repository's admin routes, repository_api.cc
// (/v2/repository/...), and the batch API over Redis, batch_api.cc (/v1/files, /v1/batches);
// /metrics is api.cc's own.
#pragma once

#include <utility>  // must precede Asio under C++20 with g++ 12

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/verb.hpp>

#include "tideserve/runtime/embedding_service.h"
#include "tideserve/server/errors.h"
#include "tideserve/server/http_server.h"
#include "tideserve/server/request_json.h"
#include "tideserve/util/clock.h"

namespace tideserve::server {

class Api;
struct Route;

// What a pattern's {name} and {version} segments matched.
struct RouteParams {
  std::string name;
  std::string version;
};

// Bytes a call holds against --max-inflight-bytes, given back when the call ends (after its
// answer is sent and every callback holding it is gone).
class BytesHeld {
 public:
  BytesHeld() = default;
  BytesHeld(std::shared_ptr<std::atomic<int64_t>> counter, int64_t bytes)
      : counter_(std::move(counter)), bytes_(bytes) {}
  BytesHeld(const BytesHeld&) = delete;
  BytesHeld& operator=(const BytesHeld&) = delete;
  BytesHeld& operator=(BytesHeld&& other) noexcept {
    std::swap(counter_, other.counter_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~BytesHeld() {
    if (counter_) counter_->fetch_sub(bytes_);
  }

 private:
  std::shared_ptr<std::atomic<int64_t>> counter_;
  int64_t bytes_ = 0;
};

// One request being answered.
struct Call {
  Request request;
  std::shared_ptr<Responder> responder;
  Clock::time_point start = Clock::now();
  const Route* route = nullptr;  // null until matched
  Family family = Family::kPlain;
  std::string_view label = "other";  // the route pattern, for metrics
  RouteParams params;
  // The parsed JSON body of a route with `model` set (valid while its handler runs on the IO
  // thread that parsed it; copy what outlives that).
  element body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
  BytesHeld held;  // its body, against --max-inflight-bytes
  // The model version a route with `model` set runs on, held until the call ends (so a version
  // being replaced finishes this call before it is released).
  std::shared_ptr<runtime::EmbeddingService> model;
  runtime::EmbeddingService& service() const { return *model; }
};
using CallPtr = std::shared_ptr<Call>;
using RouteHandler = void (*)(Api& api, const CallPtr& call);

// Who may call a route.
enum class Auth {
  kNone,   // anyone (probes, metrics, metadata)
  kApi,    // the API key, when one is set
  kAdmin,  // the admin key; without one the route does not exist (404)
};

struct Route {
  boost::beast::http::verb method;
  std::string_view pattern;  // "/v2/models/{name}/versions/{version}/infer"
  Family family;
  Auth auth;
  // Runs on a model version: a JSON object body, the model it names (KServe: the path; else
  // "model" in the body or the x-model header; else the default model) found and held in
  // Call::model (404 unknown, 503 before it serves).
  bool model;
  RouteHandler handler;
  // The body is multipart/form-data (POST /v1/files), not JSON.
  bool multipart = false;
};

class RouteTable {
 public:
  explicit RouteTable(std::vector<Route> routes) : routes_(std::move(routes)) {}

  struct Match {
    const Route* route = nullptr;  // the route for this method and path
    RouteParams params;
    // No route for the method but some for the path: their methods ("GET, POST") and the
    // family of the first.
    std::string allow;
    Family family = Family::kPlain;
  };
  // HEAD matches a GET route.
  Match match(boost::beast::http::verb method, std::string_view path) const;

 private:
  std::vector<Route> routes_;
};

// The server's routes (routes.cc).
const RouteTable& api_routes();

// Handlers, by family file.
// seed_api.cc
void seed_health(Api& api, const CallPtr& call);
void seed_predict(Api& api, const CallPtr& call);
// tei_api.cc
void tei_embed(Api& api, const CallPtr& call);
void tei_tokenize(Api& api, const CallPtr& call);
void tei_info(Api& api, const CallPtr& call);
// openai_api.cc
void openai_embeddings(Api& api, const CallPtr& call);
void openai_models(Api& api, const CallPtr& call);
// scoring_api.cc
void tei_rerank(Api& api, const CallPtr& call);
void v1_rerank(Api& api, const CallPtr& call);
void classify(Api& api, const CallPtr& call);
// kserve_api.cc
void kserve_server_metadata(Api& api, const CallPtr& call);
void kserve_live(Api& api, const CallPtr& call);
void kserve_ready(Api& api, const CallPtr& call);
void kserve_model_metadata(Api& api, const CallPtr& call);
void kserve_model_ready(Api& api, const CallPtr& call);
void kserve_infer(Api& api, const CallPtr& call);
// repository_api.cc
void repository_index(Api& api, const CallPtr& call);
void repository_load(Api& api, const CallPtr& call);
void repository_unload(Api& api, const CallPtr& call);
// batch_api.cc (the OpenAI Files and Batches API; 503 without --redis)
void files_create(Api& api, const CallPtr& call);
void files_get(Api& api, const CallPtr& call);
void files_content(Api& api, const CallPtr& call);
void files_delete(Api& api, const CallPtr& call);
void batches_create(Api& api, const CallPtr& call);
void batches_get(Api& api, const CallPtr& call);
void batches_list(Api& api, const CallPtr& call);
void batches_cancel(Api& api, const CallPtr& call);
// api.cc
void metrics_route(Api& api, const CallPtr& call);

}  // namespace tideserve::server
