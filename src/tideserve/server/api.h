// The API families on one port: the seed-compatible routes (/health, /predict), TEI-style
// (/embed, /tokenize, /info), OpenAI (/v1/embeddings, /v1/models), KServe Open Inference
// Protocol v2 (/v2/...), and /metrics. Parses and validates requests, tokenizes, submits jobs
// to the runtime scheduler and writes the answers; never computes on an IO thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <simdjson.h>
#include <boost/asio/io_context.hpp>

#include "tideserve/engine/pooling.h"
#include "tideserve/runtime/scheduler.h"
#include "tideserve/server/http_server.h"
#include "tideserve/server/metrics.h"
#include "tideserve/text/tokenizer.h"

namespace tideserve::server {

struct ApiOptions {
  std::string model_id = "tideserve";
  std::string model_version = "1";
  std::string version = "0.1.0";  // build version
  std::string api_key;            // empty: no auth
  engine::Pooling pooling = engine::Pooling::kCls;
  int64_t max_client_batch_size = 32;
  int64_t max_input_length = 512;  // tokens per input, specials included
  int64_t max_concurrent_requests = 512;
  int64_t max_batch_tokens = 2048;
  int64_t max_batch_requests = 256;
};

// What the API needs once the model is loaded.
struct ModelHandle {
  const text::Tokenizer* tokenizer = nullptr;
  runtime::Scheduler* scheduler = nullptr;
  int64_t hidden_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  std::string dtype = "float32";
};

class Api {
 public:
  Api(boost::asio::io_context& io, const ApiOptions& options, Metrics& metrics);

  // The model is loaded and warm: inference routes start answering.
  void set_model(const ModelHandle& model);
  // Readiness as Kubernetes sees it; `reason` explains a 503.
  void set_ready(bool ready, const std::string& reason);
  // The effective per-input token limit, known once the model is loaded (before set_model).
  void set_max_input_length(int64_t n) { options_.max_input_length = n; }
  bool ready() const { return ready_.load(); }

  void handle(Request&& request, std::shared_ptr<Responder> responder);
  Response transport_error(const TransportError& error, unsigned version) const;

  const ApiOptions& options() const { return options_; }

 private:
  struct Call;
  struct Input;
  enum class Family { kSeed, kTei, kOpenAi, kKServe, kPlain };

  void route(const std::shared_ptr<Call>& call);
  void reply(const std::shared_ptr<Call>& call, Response&& response) const;
  void reply_json(const std::shared_ptr<Call>& call, int status, std::string body) const;
  void reply_error(const std::shared_ptr<Call>& call, Family family, int status,
                   const std::string& message, const std::string& type = "") const;
  bool check_auth(const std::shared_ptr<Call>& call, Family family) const;
  bool check_model(const std::shared_ptr<Call>& call, Family family, ModelHandle& model) const;
  // check_model, then parse the JSON body; false when an error was already answered. A
  // malformed body is answered with `bad_json_status` (0: the parser's own 400/422).
  bool begin_inference(const std::shared_ptr<Call>& call, Family family, int bad_json_status,
                       ModelHandle& model, simdjson::dom::element& body) const;
  std::string not_ready_reason() const;
  ModelHandle model_snapshot() const;

  using Finish = std::function<void(const std::shared_ptr<Call>&, runtime::JobResult&&)>;
  // Tokenizes text inputs (or checks id inputs) against the length limits: kOutOfRange for an
  // input over `max_length` without truncation, kInvalidArgument for other bad input.
  Status encode_inputs(const ModelHandle& model, const std::vector<Input>& inputs, bool truncate,
                       text::TruncationSide side, int64_t max_length,
                       std::vector<runtime::Sequence>& sequences) const;
  // Submits one job; `finish` builds the success response on an IO thread.
  void run_job(const std::shared_ptr<Call>& call, Family family, const ModelHandle& model,
               std::vector<runtime::Sequence>&& sequences, engine::Pooling pooling, bool normalize,
               double tokenize_ms, Finish finish);
  void reply_status(const std::shared_ptr<Call>& call, Family family, const Status& status) const;

  void health(const std::shared_ptr<Call>& call) const;
  void predict(const std::shared_ptr<Call>& call);
  void embed(const std::shared_ptr<Call>& call);
  void tokenize(const std::shared_ptr<Call>& call);
  void info(const std::shared_ptr<Call>& call) const;
  void openai_embeddings(const std::shared_ptr<Call>& call);
  void openai_models(const std::shared_ptr<Call>& call) const;
  void kserve(const std::shared_ptr<Call>& call, const std::string& target);
  void kserve_infer(const std::shared_ptr<Call>& call);
  void metrics(const std::shared_ptr<Call>& call) const;

  boost::asio::io_context& io_;
  ApiOptions options_;
  Metrics& metrics_;
  mutable std::mutex mutex_;
  ModelHandle model_;  // guarded by mutex_ until has_model_
  std::atomic<bool> has_model_{false};
  std::atomic<bool> ready_{false};
  std::string not_ready_reason_ = "starting";  // guarded by mutex_
};

}  // namespace tideserve::server
