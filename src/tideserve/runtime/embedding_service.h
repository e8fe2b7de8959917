// The core service: the one API every front end calls (HTTP families today; the Redis worker and
// streaming later). One EmbeddingService per loaded model, whatever its head:
//
//   embed(request)     embedding models: vectors (pooling, the directory's Dense / Normalize
//                      modules, prompts, Matryoshka dimensions)
//   classify(request)  classifier and reranker models: per input the label scores
//   rerank(request)    reranker models: one relevance score per (query, document) pair
//
//   each of them:
//     admission: inputs in flight <= max_concurrent_requests, else kResourceExhausted at once
//     tokenize (text, text pairs) or check token ids, truncate: on the caller's thread for a small
//       request, else on the service's task pool (never an IO thread's business)
//     one scheduler job (runtime/scheduler.h): token-budget batches on the engine worker
//     callback(Result<...>) on the task pool: rows, token counts, stage timings
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
#include "tideserve/model/model_directory.h"
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
using tideserve::model_kind_name;
using tideserve::ModelKind;
using tideserve::problem_type_name;
using tideserve::ProblemType;

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

// Long documents: each text input split into chunks on token boundaries, each chunk embedded.
struct Chunking {
  int64_t max_tokens = 0;  // tokens per chunk, [CLS] and [SEP] included; 0 = the max input length
  int64_t overlap = 0;     // tokens the next chunk repeats from the end of this one
  // Cut after a sentence end (。！？.!?;；… or a line break) in the window's second half when one
  // is there; else at the last word boundary.
  bool sentences = true;
  bool document_embedding = false;  // also one vector per document: chunks' token-weighted mean
};

// Where a chunk lies in its document.
struct ChunkSpan {
  size_t input = 0;                       // the document (index of the request's input)
  size_t chunk = 0;                       // its position in that document
  uint32_t char_start = 0, char_end = 0;  // code points, [start, end)
  uint32_t byte_start = 0, byte_end = 0;  // UTF-8 bytes
};

struct EmbedRequest {
  std::vector<EmbedInput> inputs;
  Truncation truncation;
  std::optional<Pooling> pooling;  // unset: the model's default pooling
  bool normalize = false;
  // A prompt put before every text input, as sentence-transformers does: one of the model's named
  // prompts, or the text itself (not both). Neither: the model's default prompt, if it has one.
  // Token id inputs take no prompt.
  std::optional<std::string> prompt_name;
  std::optional<std::string> prompt;
  // Matryoshka: keep the first `dimensions` components (0: all), renormalized when the output is
  // a unit vector (normalize, or the model's Normalize module).
  int64_t dimensions = 0;
  // Set: every text input is a document, split into chunks (token id inputs are refused).
  std::optional<Chunking> chunking;
};

// Classification: texts or text pairs, each scored over the model's labels.
struct ScoreRequest {
  std::vector<EmbedInput> inputs;
  Truncation truncation;    // pairs are cut longest first
  bool raw_scores = false;  // the logits, not softmax / sigmoid of them
};

// Reranking: the query paired with each document, (query, document) as cross-encoders take them.
struct RerankRequest {
  std::string query;
  std::vector<std::string> documents;
  Truncation truncation;
  bool raw_scores = false;  // the logit, not its sigmoid
};

struct StageTimings {
  double tokenize_ms = 0;   // admitted -> the job reaches the scheduler (pool wait + tokenizer)
  double queue_ms = 0;      // -> the first of its inputs enters a batch
  double inference_ms = 0;  // first batch start -> last batch end
};

struct EmbedResult {
  std::vector<float> embeddings;      // [num_rows, hidden_size], row-major: one row per input
  int64_t hidden_size = 0;            // (per chunk with chunking)
  std::vector<int64_t> token_counts;  // per row, after truncation, specials included
  int64_t prompt_tokens = 0;          // their sum
  StageTimings timings;
  std::vector<ChunkSpan> chunks;           // with chunking: what each row is
  std::vector<float> document_embeddings;  // with document_embedding: [num_inputs, hidden_size]

  size_t size() const { return token_counts.size(); }
  std::span<const float> row(size_t i) const {
    return std::span<const float>(embeddings)
        .subspan(i * static_cast<size_t>(hidden_size), static_cast<size_t>(hidden_size));
  }
  size_t num_documents() const {
    return hidden_size > 0 ? document_embeddings.size() / static_cast<size_t>(hidden_size) : 0;
  }
  std::span<const float> document_row(size_t d) const {
    return std::span<const float>(document_embeddings)
        .subspan(d * static_cast<size_t>(hidden_size), static_cast<size_t>(hidden_size));
  }
};

// Per input the scores of the model's labels in label order (rerank: one score per document).
struct ScoreResult {
  std::vector<float> scores;  // [num_inputs, num_labels]
  int64_t num_labels = 0;
  std::vector<int64_t> token_counts;
  int64_t prompt_tokens = 0;
  StageTimings timings;

  size_t size() const { return token_counts.size(); }
  std::span<const float> row(size_t i) const {
    return std::span<const float>(scores).subspan(i * static_cast<size_t>(num_labels),
                                                  static_cast<size_t>(num_labels));
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
  std::string matmul;  // the oneDNN implementations of its linear layers ("gemm:jit")
  ModelKind kind = ModelKind::kEmbedding;
  Pooling pooling = Pooling::kCls;  // default pooling (embedding models)
  std::string pooling_source;       // why that pooling: the file that declares it, or the flag
  int64_t hidden_size = 0;          // the encoder's
  int64_t output_size = 0;  // set by the service from its runner: embedding size or label count
  bool normalizes = false;  // the model's own modules end with Normalize
  int64_t vocab_size = 0;
  int64_t max_input_length = 0;  // tokens per input, specials included
  // sentence-transformers' text handling.
  std::vector<std::pair<std::string, std::string>> prompts;
  std::string default_prompt_name;
  bool include_prompt = true;  // false: a prompt's tokens are left out of pooling
  bool do_lower_case = false;
  // Classifier and reranker models.
  std::vector<std::string> labels;
  ProblemType problem_type = ProblemType::kSingleLabel;
  bool single_label_sigmoid = true;  // one label: sigmoid of the logit (else the logit)
};

struct ServiceOptions {
  SchedulerOptions scheduler;  // max_concurrent_requests is the service's admission limit too
  int task_threads = 0;        // 0 = default_task_threads()
  // A request whose inputs hold at most this many bytes is tokenized on the caller's thread
  // (a few microseconds; a hop to the pool would cost more than it saves).
  int64_t inline_tokenize_bytes = 2048;
  int64_t max_chunks_per_document = 256;  // chunking: more is kOutOfRange
  int64_t max_document_bytes = 1 << 20;   // chunking: a longer document is kOutOfRange
};

class EmbeddingService {
 public:
  using EmbedCallback = std::function<void(Result<EmbedResult>)>;
  using ScoreCallback = std::function<void(Result<ScoreResult>)>;
  // Streaming: one row (an input's vector, or a chunk's) as soon as its batch completes.
  struct Row {
    size_t index = 0;  // into EmbedResult's rows
    std::vector<float> values;
    int64_t tokens = 0;
    std::optional<ChunkSpan> chunk;
  };
  using RowCallback = std::function<void(Row&&)>;
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
  // A request the model's kind cannot serve (embed on a classifier, rerank on an embedding model)
  // is kInvalidArgument, answered at once.
  void embed(EmbedRequest&& request, CancelToken cancel, EmbedCallback callback);
  // Same contract as embed(): scores activated per the model's problem type (softmax over the
  // labels; sigmoid for multi-label; none for regression; for one label the sigmoid unless the
  // model says Identity) unless raw_scores.
  // embed() that also calls `on_row` for every row in the order the batches complete, on the task
  // pool, each before the next and all before `callback` (whose result holds every row too).
  void embed_stream(EmbedRequest&& request, CancelToken cancel, RowCallback on_row,
                    EmbedCallback callback);
  void classify(ScoreRequest&& request, CancelToken cancel, ScoreCallback callback);
  void rerank(RerankRequest&& request, CancelToken cancel, ScoreCallback callback);
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
  struct Prompt {
    std::string text;  // put before each text input
    int32_t skip = 0;  // leading tokens pooling leaves out
  };

  // Admission: reserves `n` inputs or says why not.
  Status admit(int64_t n);
  // For a request already admitted whose inputs grew (chunks): reserves `n` more.
  Status admit_more(int64_t n);
  void release(int64_t n);
  // An admitted request is with the scheduler, or answered, or tokenized (drain waits for it).
  void prepared();
  // Tokenizes / checks the inputs and submits the job; answers the call on failure.
  void prepare(const std::shared_ptr<EmbedCall>& call);
  // Runs an already checked request; `callback` gets the runner's rows.
  void run(EmbedRequest&& request, CancelToken cancel, EmbedCallback callback,
           RowCallback on_row = nullptr);
  // Splits the text inputs into chunk sequences (chunking); `spans` says what each one is.
  Status chunk(const EmbedRequest& request, std::vector<Sequence>& out,
               std::vector<ChunkSpan>& spans) const;
  Status resolve_prompt(const EmbedRequest& request, Prompt& prompt) const;
  Status encode(const EmbedRequest& request, int64_t max_length, std::vector<Sequence>& out) const;
  // Streaming: runs `task` on the pool after every task posted before it for `call`.
  void post_ordered(const std::shared_ptr<EmbedCall>& call, std::function<void()> task);
  // The token-weighted mean of each document's chunk rows (chunking.document_embedding).
  void pool_documents(EmbedResult& result, size_t documents, bool unit) const;
  // Logits -> scores, in place.
  void activate(std::span<float> row) const;

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
