// The API front end on one port: the route table (routes.h) dispatches each request, after
// auth, content type and readiness checks, to its family's handler (seed_api.cc, tei_api.cc,
// openai_api.cc, kserve_api.cc, scoring_api.cc, repository_api.cc). Handlers parse into request
// structs, call the core service of the model version the call holds
// (runtime/embedding_service.h) and serialize its result; this class holds what they share:
// the model repository, readiness, replies and the error table's use. Nothing here computes,
// tokenizes or serializes a large answer on an IO thread.
#pragma once

#include <utility>  // must precede Asio under C++20 with g++ 12

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "tideserve/runtime/embedding_service.h"
#include "tideserve/runtime/model_repository.h"
#include "tideserve/server/http_server.h"
#include "tideserve/server/jobs_service.h"
#include "tideserve/server/json_writer.h"
#include "tideserve/server/metrics.h"
#include "tideserve/server/routes.h"

namespace tideserve::server {

struct ApiOptions {
  // The default model's name and version as known before it loads (serve fills them from
  // runtime::ModelOptions, where their defaults are), for /health and /info meanwhile.
  std::string model_id;
  std::string model_version;
  std::string api_key;    // empty: no auth
  std::string admin_key;  // the repository routes' key; empty: those routes are off (404)
  int64_t max_client_batch_size = 32;
  // Tokens one /tokenize request may answer, all inputs together (413 beyond): its answer is
  // ~50 bytes a token, so the default keeps it within ~1.5x of the default payload limit.
  int64_t max_tokenize_tokens = 65536;
  // Bytes of request bodies the inference routes hold at once; a body that would pass it is 429
  // (413 when it alone is more). 0: a quarter of the cgroup memory limit, else 1 GiB.
  int64_t max_inflight_bytes = 0;
  // `tideserve worker`: only /health, /v2/health/live, /v2/health/ready and /metrics answer
  // (404 for the rest), and readiness
  // also needs the job worker connected to Redis.
  bool worker = false;
};

class JobsService;

// Milliseconds as the timing headers and the seed's latency_ms write them ("12.345").
std::string format_ms(double ms);

// One Server-Sent Event: "event: <name>\ndata: <json>\n\n".
std::string sse_event(std::string_view name, std::string_view json);

// The embedding options every family's embedding route reads from `object` (its body, or KServe's
// parameters): "prompt_name", "prompt" (strings) and "dimensions" (a positive integer).
Status read_embed_options(element object, runtime::EmbedRequest& request);

// "truncate" (default `truncate_default`) and "truncation_direction" ("Right" | "Left", either
// case; default Right), as TEI spells them.
Status read_truncation(element object, bool truncate_default, runtime::Truncation& truncation);

// The OpenAI-style usage object, "usage": {"prompt_tokens", "total_tokens"}, inside an open object.
void write_usage(JsonWriter& w, int64_t prompt_tokens);

// "chunking": {"max_tokens"?, "overlap"?, "sentences"?, "document_embedding"?} (an object, or
// absent / null for none).
Status read_chunking(element object, runtime::EmbedRequest& request);
// A chunk's place in its document: "input", "chunk", "char_start", "char_end", "byte_start",
// "byte_end" (inside an open object).
void write_chunk_span(JsonWriter& w, const runtime::ChunkSpan& span);

class Api {
 public:
  Api(const ApiOptions& options, Metrics& metrics);

  // The models: inference routes answer from the repository's versions from now on (before,
  // 503). `repository` must outlive every request.
  void set_repository(runtime::ModelRepository* repository);
  // The batch API's Redis side (null: no --redis; the batch routes answer 503).
  void set_jobs(JobsService* jobs) { jobs_.store(jobs); }
  JobsService* jobs() const { return jobs_.load(); }
  runtime::ModelRepository* repository() const { return repository_.load(); }
  // The lifecycle's part of readiness (false while starting and once shutting down); `reason`
  // explains a 503. ready() is that and the repository's own readiness (its default model, or
  // any model, serving).
  void set_ready(bool ready, const std::string& reason);
  bool ready() const;
  std::string not_ready_reason() const;

  void handle(Request&& request, std::shared_ptr<Responder> responder);
  Response transport_error(const TransportError& error, unsigned version) const;

  // ---- for the family handlers ----
  const ApiOptions& options() const { return options_; }
  // The in-flight body bound in force, and the bytes held now.
  int64_t max_inflight_bytes() const { return max_inflight_bytes_; }
  int64_t inflight_bytes() const { return inflight_bytes_->load(); }
  Metrics& metrics() { return metrics_; }
  // The model a request names (its name, and version or ""): KServe's path, else "model" in the
  // body, else the x-model header ("name" or "name:version"; x-model-version also sets the
  // version). Empty name: the default model.
  static std::pair<std::string, std::string> requested_model(const Call& call);
  // The request target's query parameters in order ("?a=1&b" -> {a, "1"}, {b, nullopt}), as
  // sent (no percent-decoding): views into the call's request.
  using QueryParam = std::pair<std::string_view, std::optional<std::string_view>>;
  static std::vector<QueryParam> query_params(const Call& call);

  void reply(const CallPtr& call, Response&& response);
  void reply_json(const CallPtr& call, int status, std::string body);
  // The call's family's error body with this HTTP status.
  void reply_error(const CallPtr& call, int status, std::string_view message);
  // Through the error table (errors.h).
  void reply_status(const CallPtr& call, const Status& status);

  using EmbedFinish = std::function<void(const CallPtr& call, runtime::EmbedResult&& result)>;
  using ScoreFinish = std::function<void(const CallPtr& call, runtime::ScoreResult&& result)>;
  using FailureHook = std::function<void(const Status&)>;
  // Runs `request` through the service. On success `finish` (on a task-pool thread) serializes
  // the answer: the timing headers and metrics are already set. Failures are answered here
  // (cancelled: 499 and counted), after `on_failure` if given.
  void embed(const CallPtr& call, runtime::EmbedRequest&& request, EmbedFinish finish,
             FailureHook on_failure = nullptr);
  // Streaming (Server-Sent Events): `row` gives the event for each row as its batch completes,
  // `finish` the closing events (usage, timings) once all are done. The stream starts with the
  // first event: a request refused before any row is an ordinary error answer; a failure after
  // it is an `error` event with the family's error body.
  using RowEvent = std::function<std::string(const runtime::EmbeddingService::Row& row)>;
  using StreamFinish = std::function<std::string(const runtime::EmbedResult& result)>;
  void embed_stream(const CallPtr& call, runtime::EmbedRequest&& request, RowEvent row,
                    StreamFinish finish);
  // The same for the classification and rerank jobs.
  void classify(const CallPtr& call, runtime::ScoreRequest&& request, ScoreFinish finish);
  void rerank(const CallPtr& call, runtime::RerankRequest&& request, ScoreFinish finish);
  // Holds `call`'s body against the in-flight bound, or answers 429 / 413 and returns false.
  bool hold_body(const CallPtr& call);
  // Cancels `token` when the call's client goes away.
  void cancel_on_disconnect(const CallPtr& call, const runtime::CancelToken& token);

 private:
  bool check_auth(const CallPtr& call, const std::string& key);
  // A finished call in the metrics: by route, and by model version when it ran on one.
  void observe(const Call& call, int status, double seconds);
  // The service's callback for a call: failures answered and counted, successes' timing headers
  // and metrics set before `finish`.
  // Counts a failed inference request (429s, cancelled inputs).
  void count_failure(const Status& status, int64_t num_inputs);
  template <typename R>
  std::function<void(Result<R>)> answer(const CallPtr& call, int64_t num_inputs,
                                        std::function<void(const CallPtr&, R&&)> finish,
                                        FailureHook on_failure);

  ApiOptions options_;
  Metrics& metrics_;
  int64_t max_inflight_bytes_ = 0;
  std::shared_ptr<std::atomic<int64_t>> inflight_bytes_ = std::make_shared<std::atomic<int64_t>>(0);
  std::atomic<runtime::ModelRepository*> repository_{nullptr};
  std::atomic<JobsService*> jobs_{nullptr};
  std::atomic<bool> ready_{false};
  mutable std::mutex mutex_;
  std::string not_ready_reason_ = "starting";  // guarded by mutex_
};

}  // namespace tideserve::server
