// The core service: the one API every front end calls (HTTP families today; the Redis worker,
// streaming and other model kinds later). One EmbeddingService per loaded model.
//
//   embed(request, cancel, callback)
//     admission: inputs in flight <= max_concurrent_requests, else kResourceExhausted at once
//     tokenize (text, text pairs) or check token ids, truncate: on the caller's thread for a small
//       request, else on the service's task pool (never an IO thread's business)
//     one scheduler job (runtime/scheduler.h): token-budget batches on the engine worker
//     callback(Result<EmbedResult>) on the task pool: vectors, token counts, stage timings
//
// Front ends never touch runtime::Job, the tokenizer or the scheduler. Statuses say what
// happened: kInvalidArgument (bad input), kOutOfRange (an input over the length limit without
// truncation, a /tokenize answer over its bound), kResourceExhausted (over capacity: retry),
// kCancelled (the caller cancelled), kUnavailable (draining / shutting down), kInternal.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tideserve/engine/pooling.h"
#include "tideserve/runtime/scheduler.h"
#include "tideserve/runtime/task_pool.h"
#include "tideserve/text/tokenizer.h"
#include "tideserve/util/status.h"

namespace tideserve::runtime {

// The names front ends use, so that they include no engine header.
using Pooling = engine::Pooling;
using engine::parse_pooling;
using engine::pooling_name;
using TruncationSide = text::TruncationSide;

// One input: a text, a text pair (second sequence gets type id 1), or token ids.
struct EmbedInput {
  std::string text;
  std::optional<std::string> pair;
  std::vector<int32_t> ids;
  bool is_ids = false;

  static EmbedInput from_text(std::string text);
  static EmbedInput from_pair(std::string text, std::string pair);
  static EmbedInput from_ids(std::vector<int32_t> ids);
};

struct Truncation {
  bool enabled = false;  // cut an input over max_length (else it is refused with kOutOfRange)
  TruncationSide side = TruncationSide::kRight;
  int64_t max_length = 0;  // tokens, specials included; 0 = the model's max input length
};

struct EmbedRequest {
  std::vector<EmbedInput> inputs;
  Truncation truncation;
  std::optional<Pooling> pooling;  // unset: the model's default pooling
  bool normalize = false;
};

struct StageTimings {
  double tokenize_ms = 0;   // admitted -> the job reaches the scheduler (pool wait + tokenizer)
  double queue_ms = 0;      // -> the first of its inputs enters a batch
  double inference_ms = 0;  // first batch start -> last batch end
};

struct EmbedResult {
  std::vector<float> embeddings;  // [num_inputs, hidden_size], row-major
  int64_t hidden_size = 0;
  std::vector<int64_t> token_counts;  // per input, after truncation, specials included
  int64_t prompt_tokens = 0;          // their sum
  StageTimings timings;

  size_t size() const { return token_counts.size(); }
  std::span<const float> row(size_t i) const {
    return std::span<const float>(embeddings)
        .subspan(i * static_cast<size_t>(hidden_size), static_cast<size_t>(hidden_size));
  }
};

struct TokenizeRequest {
  std::vector<std::string> inputs;
  bool add_special_tokens = true;
  int64_t max_tokens = 0;  // bound on the tokens of all inputs together (0: none); kOutOfRange
};

struct TokenizeResult {
  std::vector<text::Encoding> encodings;  // token strings are views into the model's vocabulary
  double tokenize_ms = 0;
};

// What front ends report about the model (fixed once the service exists).
struct ModelInfo {
  std::string name;
  std::string version = "1";
  std::string dtype = "float32";
  Pooling pooling = Pooling::kCls;  // default pooling
  int64_t hidden_size = 0;          // set by the service from its runner
  int64_t vocab_size = 0;
  int64_t max_input_length = 0;  // tokens per input, specials included
};

struct ServiceOptions {
  SchedulerOptions scheduler;  // max_concurrent_requests is the service's admission limit too
  int task_threads = 0;        // 0 = default_task_threads()
  // A request whose inputs hold at most this many bytes is tokenized on the caller's thread
  // (a few microseconds; a hop to the pool would cost more than it saves).
  int64_t inline_tokenize_bytes = 2048;
};

class EmbeddingService {
 public:
  using EmbedCallback = std::function<void(Result<EmbedResult>)>;
  using TokenizeCallback = std::function<void(Result<TokenizeResult>)>;

  // `runner` and `tokenizer` must outlive the service. The engine worker starts with start().
  EmbeddingService(BatchRunner& runner, const text::Tokenizer& tokenizer, ModelInfo info,
                   const ServiceOptions& options);
  // Stops the engine worker after its batch; everything still admitted is answered
  // (kUnavailable "shutting down") before the destructor returns.
  ~EmbeddingService();
  EmbeddingService(const EmbeddingService&) = delete;
  EmbeddingService& operator=(const EmbeddingService&) = delete;

  void start();

  // `callback` is called exactly once, never on the engine worker: on the caller's thread before
  // embed() returns when the request is refused at admission (kResourceExhausted, kUnavailable,
  // or kInvalidArgument for a request that could never be admitted) or when a small request
  // tokenized inline is refused for its input; else on a task-pool thread (every answer with
  // vectors: the caller may serialize a large answer in the callback).
  void embed(EmbedRequest&& request, CancelToken cancel, EmbedCallback callback);
  // Tokenizes on the task pool (admitted like embed, one slot per input).
  void tokenize(TokenizeRequest&& request, CancelToken cancel, TokenizeCallback callback);

  // Refuses new requests (kUnavailable) and finishes every admitted one. True if they all were
  // answered within `timeout`.
  bool drain(std::chrono::milliseconds timeout);

  const ModelInfo& info() const { return info_; }
  const ServiceOptions& options() const { return options_; }
  int64_t inflight_inputs() const { return inflight_.load(std::memory_order_relaxed); }
  int64_t queue_depth() const { return scheduler_->queue_depth(); }
  int64_t cancelled_inputs() const { return scheduler_->cancelled_sequences(); }
  int task_threads() const { return pool_.threads(); }
  // Called on the engine worker after each batch (metrics).
  void set_batch_observer(std::function<void(const BatchStats&)> observer);

 private:
  struct EmbedCall;

  // Admission: reserves `n` inputs or says why not.
  Status admit(int64_t n);
  void release(int64_t n);
  // An admitted request is with the scheduler, or answered, or tokenized (drain waits for it).
  void prepared();
  // Tokenizes / checks the inputs and submits the job; answers the call on failure.
  void prepare(const std::shared_ptr<EmbedCall>& call);
  Status encode(const EmbedRequest& request, int64_t max_length, std::vector<Sequence>& out) const;

  const text::Tokenizer& tokenizer_;
  ModelInfo info_;
  ServiceOptions options_;
  TaskPool pool_;  // declared before scheduler_: outlives it (on_done posts to the pool)
  std::unique_ptr<Scheduler> scheduler_;
  std::mutex mutex_;
  std::condition_variable idle_cv_;  // drain waits for preparing_ == 0
  bool accepting_ = true;            // guarded by mutex_
  int64_t preparing_ = 0;            // guarded by mutex_: admitted, not yet with the scheduler
  std::atomic<int64_t> inflight_{0};
};

}  // namespace tideserve::runtime
