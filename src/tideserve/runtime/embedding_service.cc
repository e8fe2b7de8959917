#include "tideserve/runtime/embedding_service.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <utility>

#include <fmt/format.h>

#include "tideserve/engine/ops.h"

namespace tideserve::runtime {

namespace {

int64_t text_bytes(const EmbedRequest& request) {
  int64_t bytes = 0;
  for (const EmbedInput& input : request.inputs) {
    bytes += static_cast<int64_t>(input.text.size() + (input.pair ? input.pair->size() : 0));
  }
  return bytes;
}

}  // namespace

EmbedInput EmbedInput::from_text(std::string text) {
  EmbedInput input;
  input.text = std::move(text);
  return input;
}

EmbedInput EmbedInput::from_pair(std::string text, std::string pair) {
  EmbedInput input;
  input.text = std::move(text);
  input.pair = std::move(pair);
  return input;
}

EmbedInput EmbedInput::from_ids(std::vector<int32_t> ids) {
  EmbedInput input;
  input.ids = std::move(ids);
  input.is_ids = true;
  return input;
}

struct EmbeddingService::EmbedCall {
  EmbedRequest request;
  CancelToken cancel;
  EmbedCallback callback;
  RowCallback on_row;  // streaming only
  Clock::time_point admitted = Clock::now();
  int64_t num_inputs = 0;  // admitted slots: inputs, or chunks once the documents are split
  std::vector<ChunkSpan> chunks;

  // Streaming: rows and the final answer run on the pool one after another, in posting order.
  std::mutex order_mutex;
  std::deque<std::function<void()>> ordered;
  bool draining_ordered = false;
};

void EmbeddingService::post_ordered(const std::shared_ptr<EmbedCall>& call,
                                    std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(call->order_mutex);
    call->ordered.push_back(std::move(task));
    if (call->draining_ordered) return;  // the running drain takes it
    call->draining_ordered = true;
  }
  pool_.post([call] {
    for (;;) {
      std::function<void()> next;
      {
        std::lock_guard<std::mutex> lock(call->order_mutex);
        if (call->ordered.empty()) {
          call->draining_ordered = false;
          return;
        }
        next = std::move(call->ordered.front());
        call->ordered.pop_front();
      }
      next();
    }
  });
}

EmbeddingService::EmbeddingService(BatchRunner& runner, const text::Tokenizer& tokenizer,
                                   ModelInfo info, const ServiceOptions& options)
    : tokenizer_(tokenizer),
      info_(std::move(info)),
      options_(options),
      pool_(options.task_threads > 0 ? options.task_threads : default_task_threads()),
      scheduler_(std::make_unique<Scheduler>(runner, options.scheduler)) {
  info_.output_size = runner.output_size();
  options_.scheduler = scheduler_->options();  // with the scheduler's own floors applied
}

EmbeddingService::~EmbeddingService() {
  {
    // Requests still being tokenized on the pool finish reaching the scheduler first.
    std::unique_lock<std::mutex> lock(mutex_);
    accepting_ = false;
    idle_cv_.wait(lock, [this] { return preparing_ == 0; });
  }
  // Answers what is queued (posting to the pool); then the pool runs every posted callback.
  scheduler_.reset();
}

void EmbeddingService::start() {
  scheduler_->start();
}

void EmbeddingService::set_batch_observer(std::function<void(const BatchStats&)> observer) {
  scheduler_->set_batch_observer(std::move(observer));
}

Status EmbeddingService::admit(int64_t n) {
  const int64_t limit = options_.scheduler.max_concurrent_requests;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!accepting_) return unavailable("server is shutting down");
  if (n > limit) {
    // It could never be admitted: retrying (429) would not help.
    return invalid_argument(
        fmt::format("{} inputs in one request; at most {} can be in flight", n, limit));
  }
  const int64_t inflight = inflight_.load(std::memory_order_relaxed);
  if (inflight + n > limit) {
    return resource_exhausted(fmt::format(
        "server at capacity ({} inputs in flight, limit {}); retry later", inflight, limit));
  }
  inflight_.fetch_add(n, std::memory_order_relaxed);
  ++preparing_;
  return Status::ok();
}

Status EmbeddingService::admit_more(int64_t n) {
  if (n <= 0) return Status::ok();
  const int64_t limit = options_.scheduler.max_concurrent_requests;
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t inflight = inflight_.load(std::memory_order_relaxed);
  if (inflight + n > limit) {
    return resource_exhausted(fmt::format(
        "server at capacity ({} inputs in flight with the request's chunks, limit {}); retry "
        "later",
        inflight + n, limit));
  }
  inflight_.fetch_add(n, std::memory_order_relaxed);
  return Status::ok();
}

void EmbeddingService::release(int64_t n) {
  inflight_.fetch_sub(n, std::memory_order_relaxed);
}

void EmbeddingService::run(EmbedRequest&& request, CancelToken cancel, EmbedCallback callback,
                           RowCallback on_row) {
  const auto n = static_cast<int64_t>(request.inputs.size());
  if (n == 0) return callback(invalid_argument("the request has no inputs"));
  if (Status st = admit(n); !st.is_ok()) return callback(std::move(st));
  auto call = std::make_shared<EmbedCall>();
  call->request = std::move(request);
  call->cancel = std::move(cancel);
  call->callback = std::move(callback);
  call->on_row = std::move(on_row);
  call->num_inputs = n;
  if (text_bytes(call->request) <= options_.inline_tokenize_bytes) return prepare(call);
  pool_.post([this, call] { prepare(call); });
}

namespace {

// Keeps the first `keep` of each `width`-wide row in place, renormalized when `unit`.
void cut_rows(std::vector<float>& rows, size_t width, size_t keep, bool unit) {
  const size_t n = width == 0 ? 0 : rows.size() / width;
  for (size_t i = 0; i < n; ++i) {
    // Rows move down in place: row i's source starts at or after its destination.
    std::copy_n(rows.begin() + static_cast<std::ptrdiff_t>(i * width), keep,
                rows.begin() + static_cast<std::ptrdiff_t>(i * keep));
    if (unit) engine::l2_normalize(rows.data() + i * keep, static_cast<int64_t>(keep));
  }
  rows.resize(n * keep);
}

}  // namespace

void EmbeddingService::embed(EmbedRequest&& request, CancelToken cancel, EmbedCallback callback) {
  embed_stream(std::move(request), std::move(cancel), nullptr, std::move(callback));
}

void EmbeddingService::embed_stream(EmbedRequest&& request, CancelToken cancel, RowCallback on_row,
                                    EmbedCallback callback) {
  if (info_.kind != ModelKind::kEmbedding) {
    return callback(invalid_argument(
        fmt::format("model '{}' is a {}, not an embedding model: it answers {}", info_.name,
                    model_kind_name(info_.kind),
                    info_.kind == ModelKind::kReranker ? "rerank and classify requests"
                                                       : "classify requests")));
  }
  const int64_t dimensions = request.dimensions;
  if (dimensions < 0 || dimensions > info_.output_size) {
    return callback(invalid_argument(
        fmt::format("dimensions {} is outside [1, {}]: the model's embeddings have {} dimensions",
                    dimensions, info_.output_size, info_.output_size)));
  }
  if (dimensions == 0 || dimensions == info_.output_size) {
    return run(std::move(request), std::move(cancel), std::move(callback), std::move(on_row));
  }
  const bool unit = request.normalize || info_.normalizes;
  const auto width = static_cast<size_t>(info_.output_size);
  const auto keep = static_cast<size_t>(dimensions);
  if (on_row) {
    on_row = [width, keep, unit, on_row = std::move(on_row)](Row&& row) {
      cut_rows(row.values, width, keep, unit);
      on_row(std::move(row));
    };
  }
  run(
      std::move(request), std::move(cancel),
      [width, keep, unit, callback = std::move(callback)](Result<EmbedResult> result) {
        if (!result.is_ok()) return callback(std::move(result));
        EmbedResult& r = result.value();
        cut_rows(r.embeddings, width, keep, unit);
        cut_rows(r.document_embeddings, width, keep, unit);
        r.hidden_size = static_cast<int64_t>(keep);
        callback(std::move(result));
      },
      std::move(on_row));
}

void EmbeddingService::activate(std::span<float> row) const {
  if (row.size() == 1 ? !info_.single_label_sigmoid
                      : info_.problem_type == ProblemType::kRegression) {
    return;
  }
  if (row.size() == 1 || info_.problem_type == ProblemType::kMultiLabel) {
    for (float& x : row) x = 1.f / (1.f + std::exp(-x));
    return;
  }
  engine::softmax_row(row.data(), static_cast<int64_t>(row.size()), 1.f);
}

void EmbeddingService::classify(ScoreRequest&& request, CancelToken cancel,
                                ScoreCallback callback) {
  if (info_.kind == ModelKind::kEmbedding) {
    return callback(invalid_argument(fmt::format(
        "model '{}' is an embedding model: it has no classification head", info_.name)));
  }
  EmbedRequest rows;
  rows.inputs = std::move(request.inputs);
  rows.truncation = request.truncation;
  const bool raw = request.raw_scores;
  run(std::move(rows), std::move(cancel),
      [this, raw, callback = std::move(callback)](Result<EmbedResult> result) {
        if (!result.is_ok()) return callback(result.status());
        EmbedResult& r = result.value();
        ScoreResult scores;
        scores.scores = std::move(r.embeddings);
        scores.num_labels = r.hidden_size;
        scores.token_counts = std::move(r.token_counts);
        scores.prompt_tokens = r.prompt_tokens;
        scores.timings = r.timings;
        if (!raw) {
          for (size_t i = 0; i < scores.size(); ++i) {
            activate(std::span<float>(scores.scores)
                         .subspan(i * static_cast<size_t>(scores.num_labels),
                                  static_cast<size_t>(scores.num_labels)));
          }
        }
        callback(std::move(scores));
      });
}

void EmbeddingService::rerank(RerankRequest&& request, CancelToken cancel, ScoreCallback callback) {
  if (info_.kind != ModelKind::kReranker) {
    return callback(invalid_argument(fmt::format(
        "model '{}' is {} model, not a reranker (a sequence classifier with one label)", info_.name,
        info_.kind == ModelKind::kEmbedding ? "an embedding" : "a classifier")));
  }
  if (request.query.empty()) return callback(invalid_argument("the query is an empty string"));
  ScoreRequest pairs;
  pairs.inputs.reserve(request.documents.size());
  for (std::string& document : request.documents) {
    pairs.inputs.push_back(EmbedInput::from_pair(request.query, std::move(document)));
  }
  pairs.truncation = request.truncation;
  pairs.raw_scores = request.raw_scores;
  classify(std::move(pairs), std::move(cancel), std::move(callback));
}

void EmbeddingService::prepare(const std::shared_ptr<EmbedCall>& call) {
  auto fail = [&](Status status) {
    prepared();
    release(call->num_inputs);
    call->callback(std::move(status));
  };
  if (call->cancel.cancelled()) return fail(cancelled_error("request cancelled"));
  const Truncation& truncation = call->request.truncation;
  if (truncation.max_length < 0 || truncation.max_length > info_.max_input_length) {
    return fail(invalid_argument(fmt::format("max length {} is outside [1, {}]",
                                             truncation.max_length, info_.max_input_length)));
  }
  const int64_t max_length =
      truncation.max_length > 0 ? truncation.max_length : info_.max_input_length;
  auto job = std::make_shared<Job>();
  if (call->request.chunking) {
    if (Status st = chunk(call->request, job->inputs, call->chunks); !st.is_ok()) {
      return fail(std::move(st));
    }
    // Each chunk is an input in flight: admit the ones beyond the documents already admitted.
    const auto more = static_cast<int64_t>(job->inputs.size()) - call->num_inputs;
    if (Status st = admit_more(more); !st.is_ok()) return fail(std::move(st));
    call->num_inputs += std::max<int64_t>(more, 0);
  } else if (Status st = encode(call->request, max_length, job->inputs); !st.is_ok()) {
    return fail(std::move(st));
  }
  std::vector<int64_t> token_counts;
  token_counts.reserve(job->inputs.size());
  for (const Sequence& seq : job->inputs) {
    token_counts.push_back(static_cast<int64_t>(seq.ids.size()));
  }
  job->pooling = call->request.pooling.value_or(info_.pooling);
  job->normalize = call->request.normalize;
  job->cancel = call->cancel;
  const double tokenize_ms = ms_since(call->admitted);
  if (call->on_row) {
    job->on_row = [this, call, token_counts](size_t index, std::span<const float> values) {
      // On the engine worker: copy the row and hand it to the pool at once.
      Row row{index, std::vector<float>(values.begin(), values.end()), token_counts[index],
              std::nullopt};
      if (!call->chunks.empty()) row.chunk = call->chunks[index];
      post_ordered(call, [call, row = std::move(row)]() mutable { call->on_row(std::move(row)); });
    };
  }
  job->on_done = [this, call, tokenize_ms,
                  token_counts = std::move(token_counts)](JobResult&& job_result) mutable {
    // On the engine worker: hand the answer to the pool at once (after the rows, if streaming).
    auto answer = [this, call, tokenize_ms, token_counts = std::move(token_counts),
                   job_result = std::move(job_result)]() mutable {
      release(call->num_inputs);
      if (!job_result.status.is_ok()) return call->callback(std::move(job_result.status));
      EmbedResult result;
      result.embeddings = std::move(job_result.embeddings);
      result.hidden_size = job_result.hidden_size;
      result.token_counts = std::move(token_counts);
      result.prompt_tokens = job_result.prompt_tokens;
      result.timings = {tokenize_ms, job_result.timings.queue_ms, job_result.timings.inference_ms};
      result.chunks = std::move(call->chunks);
      if (!result.chunks.empty() && call->request.chunking->document_embedding) {
        pool_documents(result, call->request.inputs.size(),
                       call->request.normalize || info_.normalizes);
      }
      call->callback(std::move(result));
    };
    if (call->on_row) return post_ordered(call, std::move(answer));
    pool_.post(std::move(answer));
  };
  Status st = scheduler_->submit(job);
  if (!st.is_ok()) return fail(std::move(st));
  prepared();
}

void EmbeddingService::prepared() {
  // Notify with the lock held: once preparing_ is 0 the destructor may return and destroy the
  // condition variable as soon as it can take the lock, so no pool thread may touch it after.
  std::lock_guard<std::mutex> lock(mutex_);
  --preparing_;
  idle_cv_.notify_all();
}

Status EmbeddingService::resolve_prompt(const EmbedRequest& request, Prompt& prompt) const {
  if (request.prompt && request.prompt_name) {
    return invalid_argument("give a prompt or a prompt_name, not both");
  }
  if (request.prompt) {
    prompt.text = *request.prompt;
  } else if (request.prompt_name || !info_.default_prompt_name.empty()) {
    const std::string& name =
        request.prompt_name ? *request.prompt_name : info_.default_prompt_name;
    const std::string* text = nullptr;
    for (const auto& [key, value] : info_.prompts) {
      if (key == name) text = &value;
    }
    if (text == nullptr) {
      if (info_.prompts.empty()) {
        return invalid_argument(
            fmt::format("unknown prompt_name '{}': the model declares no prompts", name));
      }
      std::string names;
      for (const auto& entry : info_.prompts) {
        names += (names.empty() ? "'" : ", '") + entry.first + "'";
      }
      return invalid_argument(
          fmt::format("unknown prompt_name '{}': the model's prompts are {}", name, names));
    }
    prompt.text = *text;
  }
  if (info_.do_lower_case) prompt.text = text::lowercase_text(prompt.text);
  if (!info_.include_prompt && !prompt.text.empty()) {
    // As sentence-transformers counts it: the prompt's tokens with [CLS], without the last [SEP].
    text::Encoding encoding;
    Status st = tokenizer_.encode_into(prompt.text, {}, &encoding);
    if (!st.is_ok()) return invalid_argument("the prompt: " + st.message());
    prompt.skip = static_cast<int32_t>(encoding.ids.size()) - 1;
  }
  return Status::ok();
}

Status EmbeddingService::encode(const EmbedRequest& request, int64_t max_length,
                                std::vector<Sequence>& out) const {
  const bool truncate = request.truncation.enabled;
  const bool has_text = std::any_of(request.inputs.begin(), request.inputs.end(),
                                    [](const EmbedInput& input) { return !input.is_ids; });
  Prompt prompt;
  if (has_text) {
    TS_RETURN_IF_ERROR(resolve_prompt(request, prompt));
  } else if (request.prompt || request.prompt_name) {
    return invalid_argument("a prompt applies to texts; the inputs are token ids");
  }
  std::string text;
  const TruncationSide side = request.truncation.side;
  out.resize(request.inputs.size());
  text::EncodeOptions options;
  options.truncation = true;
  options.truncation_side = side;
  options.max_length = truncate ? static_cast<size_t>(max_length) : 0;
  text::Encoding encoding;
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const EmbedInput& input = request.inputs[i];
    Sequence& seq = out[i];
    if (input.is_ids) {
      if (input.ids.empty()) return invalid_argument(fmt::format("input {} is empty", i));
      for (int32_t id : input.ids) {
        if (id < 0 || id >= info_.vocab_size) {
          return invalid_argument(fmt::format(
              "input {} has token id {} outside the vocabulary [0, {})", i, id, info_.vocab_size));
        }
      }
      seq.ids = input.ids;
      if (static_cast<int64_t>(seq.ids.size()) > max_length) {
        if (!truncate) {
          return out_of_range(fmt::format("input {} has {} tokens; the maximum is {}", i,
                                          seq.ids.size(), max_length));
        }
        if (side == TruncationSide::kLeft) {
          seq.ids.erase(seq.ids.begin(), seq.ids.end() - max_length);
        } else {
          seq.ids.resize(static_cast<size_t>(max_length));
        }
      }
      continue;
    }
    if (input.text.empty()) return invalid_argument(fmt::format("input {} is an empty string", i));
    if (input.pair && input.pair->empty()) {
      return invalid_argument(fmt::format("input {}: the second text of the pair is empty", i));
    }
    std::string_view first = input.text;
    std::optional<std::string> lowered_pair;
    if (!prompt.text.empty() || info_.do_lower_case) {
      text = prompt.text;
      text += info_.do_lower_case ? text::lowercase_text(input.text) : input.text;
      first = text;
      if (input.pair && info_.do_lower_case) lowered_pair = text::lowercase_text(*input.pair);
    }
    options.pair = lowered_pair ? std::optional<std::string_view>(*lowered_pair)
                   : input.pair ? std::optional<std::string_view>(*input.pair)
                                : std::nullopt;
    Status st = tokenizer_.encode_into(first, options, &encoding);
    if (!st.is_ok()) return invalid_argument(fmt::format("input {}: {}", i, st.message()));
    if (static_cast<int64_t>(encoding.ids.size()) > max_length) {
      return out_of_range(
          fmt::format("input {} has {} tokens; the maximum is {} (ask for truncation to cut it)", i,
                      encoding.ids.size(), max_length));
    }
    seq.ids = encoding.ids;
    seq.type_ids = encoding.type_ids;
    if (prompt.skip > 0) {
      if (prompt.skip >= static_cast<int32_t>(seq.ids.size())) {
        return invalid_argument(
            fmt::format("input {}: cut to {} tokens, nothing but the prompt is left to pool", i,
                        seq.ids.size()));
      }
      seq.pool_skip = prompt.skip;
    }
  }
  return Status::ok();
}

namespace {

// Tokens after which a sentence ends.
bool ends_sentence(std::string_view token) {
  for (std::string_view end : {".", "!", "?", ";", "。", "！", "？", "；", "…"}) {
    if (token == end) return true;
  }
  return false;
}

}  // namespace

Status EmbeddingService::chunk(const EmbedRequest& request, std::vector<Sequence>& out,
                               std::vector<ChunkSpan>& spans) const {
  const Chunking& c = *request.chunking;
  const int64_t max_tokens = c.max_tokens > 0 ? c.max_tokens : info_.max_input_length;
  if (max_tokens < 3 || max_tokens > info_.max_input_length) {
    return invalid_argument(fmt::format(
        "chunk max_tokens {} is outside [3, {}] (the max input length, [CLS] and [SEP] included)",
        max_tokens, info_.max_input_length));
  }
  const int64_t budget = max_tokens - 2;  // tokens of text per chunk
  if (c.overlap < 0 || c.overlap >= budget) {
    return invalid_argument(fmt::format(
        "chunk overlap {} must be from 0 to {} (less than max_tokens minus [CLS] and [SEP])",
        c.overlap, budget - 1));
  }
  if (request.prompt || request.prompt_name) {
    return invalid_argument("chunked documents take no prompt");
  }
  text::EncodeOptions options;
  options.truncation = false;
  text::Encoding e;
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    const EmbedInput& input = request.inputs[i];
    if (input.is_ids || input.pair) {
      return invalid_argument(
          fmt::format("input {}: chunking splits texts, not token ids or pairs", i));
    }
    if (static_cast<int64_t>(input.text.size()) > options_.max_document_bytes) {
      return out_of_range(
          fmt::format("input {} holds {} bytes; a chunked document holds at most {}", i,
                      input.text.size(), options_.max_document_bytes));
    }
    std::string lowered;
    std::string_view text = input.text;
    if (info_.do_lower_case) {
      lowered = text::lowercase_text(input.text);
      if (lowered.size() != input.text.size()) {
        return invalid_argument(fmt::format(
            "input {}: lowercasing changes its length, so chunk offsets would not map back to it",
            i));
      }
      text = lowered;
    }
    Status st = tokenizer_.encode_into(text, options, &e);
    if (!st.is_ok()) return invalid_argument(fmt::format("input {}: {}", i, st.message()));
    // [CLS] text tokens [SEP]: the text is [1, n - 1).
    const auto n = static_cast<int64_t>(e.ids.size());
    if (n < 3 || !e.special_tokens_mask.front() || !e.special_tokens_mask.back()) {
      return invalid_argument(fmt::format("input {} has no text to chunk", i));
    }
    const int64_t last = n - 1;
    auto word_start = [&](int64_t t) { return e.tokens[t].substr(0, 2) != "##"; };
    auto sentence_before = [&](int64_t t) {
      if (ends_sentence(e.tokens[t - 1])) return true;
      const uint32_t from = e.byte_offsets[t - 1].end, to = e.byte_offsets[t].start;
      return text.substr(from, to > from ? to - from : 0).find('\n') != std::string_view::npos;
    };
    size_t chunks = 0;
    for (int64_t start = 1; start < last;) {
      int64_t end = std::min(start + budget, last);
      if (end < last) {
        // Cut before a word: after a sentence end in the window's second half, else at the last
        // word boundary; a single word longer than the window is cut inside.
        int64_t cut = -1;
        for (int64_t t = end; c.sentences && t > start + budget / 2 && cut < 0; --t) {
          if (word_start(t) && sentence_before(t)) cut = t;
        }
        for (int64_t t = end; t > start && cut < 0; --t) {
          if (word_start(t)) cut = t;
        }
        end = cut > start ? cut : end;
      }
      if (++chunks > static_cast<size_t>(options_.max_chunks_per_document)) {
        return out_of_range(fmt::format(
            "input {} makes more than {} chunks of {} tokens; send it in parts or with larger "
            "chunks",
            i, options_.max_chunks_per_document, max_tokens));
      }
      Sequence& seq = out.emplace_back();
      seq.ids.reserve(static_cast<size_t>(end - start + 2));
      seq.ids.push_back(e.ids.front());
      seq.ids.insert(seq.ids.end(), e.ids.begin() + start, e.ids.begin() + end);
      seq.ids.push_back(e.ids.back());
      spans.push_back({i, chunks - 1, e.char_offsets[start].start, e.char_offsets[end - 1].end,
                       e.byte_offsets[start].start, e.byte_offsets[end - 1].end});
      if (end >= last) break;
      // The next chunk repeats `overlap` tokens, from a word's start, always moving forward.
      int64_t next = std::max(end - c.overlap, start + 1);
      while (next > start + 1 && !word_start(next)) --next;
      while (next < end && !word_start(next)) ++next;
      start = next;
    }
  }
  return Status::ok();
}

void EmbeddingService::pool_documents(EmbedResult& result, size_t documents, bool unit) const {
  const auto width = static_cast<size_t>(result.hidden_size);
  result.document_embeddings.assign(documents * width, 0.f);
  std::vector<double> sum(width);
  std::vector<double> weight(documents, 0.0);
  for (size_t d = 0, r = 0; d < documents; ++d) {
    std::fill(sum.begin(), sum.end(), 0.0);
    for (; r < result.chunks.size() && result.chunks[r].input == d; ++r) {
      const auto w = static_cast<double>(result.token_counts[r]);
      std::span<const float> row = result.row(r);
      for (size_t k = 0; k < width; ++k) sum[k] += w * row[k];
      weight[d] += w;
    }
    float* y = result.document_embeddings.data() + d * width;
    for (size_t k = 0; k < width; ++k) y[k] = static_cast<float>(sum[k] / weight[d]);
    if (unit) engine::l2_normalize(y, static_cast<int64_t>(width));
  }
}

void EmbeddingService::tokenize(TokenizeRequest&& request, CancelToken cancel,
                                TokenizeCallback callback) {
  const auto n = static_cast<int64_t>(request.inputs.size());
  if (n == 0) return callback(invalid_argument("the request has no inputs"));
  if (Status st = admit(n); !st.is_ok()) return callback(std::move(st));
  const auto admitted = Clock::now();
  pool_.post([this, n, admitted, request = std::move(request), cancel = std::move(cancel),
              callback = std::move(callback)]() mutable {
    Result<TokenizeResult> answer = [&]() -> Result<TokenizeResult> {
      if (cancel.cancelled()) return cancelled_error("request cancelled");
      TokenizeResult result;
      text::EncodeOptions options;
      options.add_special_tokens = request.add_special_tokens;
      int64_t tokens = 0;
      for (size_t i = 0; i < request.inputs.size(); ++i) {
        text::Encoding& encoding = result.encodings.emplace_back();
        Status st = tokenizer_.encode_into(request.inputs[i], options, &encoding);
        if (!st.is_ok()) return invalid_argument(fmt::format("input {}: {}", i, st.message()));
        tokens += static_cast<int64_t>(encoding.size());
        if (request.max_tokens > 0 && tokens > request.max_tokens) {
          return out_of_range(fmt::format(
              "the inputs hold more than {} tokens, the most one tokenize request answers "
              "(input {} reaches {}); send fewer or shorter texts",
              request.max_tokens, i, tokens));
        }
      }
      result.tokenize_ms = ms_since(admitted);
      return result;
    }();
    prepared();
    release(n);
    callback(std::move(answer));
  });
}

bool EmbeddingService::drain(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    accepting_ = false;
    // Requests admitted and still tokenizing reach the scheduler before it stops accepting.
    if (!idle_cv_.wait_until(lock, deadline, [this] { return preparing_ == 0; })) return false;
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return scheduler_->drain(std::max(left, std::chrono::milliseconds(0)));
}

}  // namespace tideserve::runtime
