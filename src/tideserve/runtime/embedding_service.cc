#include "tideserve/runtime/embedding_service.h"

#include <utility>

#include <fmt/format.h>

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
  Clock::time_point admitted = Clock::now();
  int64_t num_inputs = 0;
};

EmbeddingService::EmbeddingService(BatchRunner& runner, const text::Tokenizer& tokenizer,
                                   ModelInfo info, const ServiceOptions& options)
    : tokenizer_(tokenizer),
      info_(std::move(info)),
      options_(options),
      pool_(options.task_threads > 0 ? options.task_threads : default_task_threads()),
      scheduler_(std::make_unique<Scheduler>(runner, options.scheduler)) {
  info_.hidden_size = runner.hidden_size();
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

void EmbeddingService::release(int64_t n) {
  inflight_.fetch_sub(n, std::memory_order_relaxed);
}

void EmbeddingService::embed(EmbedRequest&& request, CancelToken cancel, EmbedCallback callback) {
  const auto n = static_cast<int64_t>(request.inputs.size());
  if (n == 0) return callback(invalid_argument("the request has no inputs"));
  if (Status st = admit(n); !st.is_ok()) return callback(std::move(st));
  auto call = std::make_shared<EmbedCall>();
  call->request = std::move(request);
  call->cancel = std::move(cancel);
  call->callback = std::move(callback);
  call->num_inputs = n;
  if (text_bytes(call->request) <= options_.inline_tokenize_bytes) return prepare(call);
  pool_.post([this, call] { prepare(call); });
}

void EmbeddingService::prepare(const std::shared_ptr<EmbedCall>& call) {
  const int64_t n = call->num_inputs;
  auto fail = [&](Status status) {
    prepared();
    release(n);
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
  if (Status st = encode(call->request, max_length, job->inputs); !st.is_ok()) {
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
  job->on_done = [this, call, tokenize_ms,
                  token_counts = std::move(token_counts)](JobResult&& job_result) mutable {
    // On the engine worker: hand the answer to the pool at once.
    pool_.post([this, call, tokenize_ms, token_counts = std::move(token_counts),
                job_result = std::move(job_result)]() mutable {
      release(call->num_inputs);
      if (!job_result.status.is_ok()) return call->callback(std::move(job_result.status));
      EmbedResult result;
      result.embeddings = std::move(job_result.embeddings);
      result.hidden_size = job_result.hidden_size;
      result.token_counts = std::move(token_counts);
      result.prompt_tokens = job_result.prompt_tokens;
      result.timings = {tokenize_ms, job_result.timings.queue_ms, job_result.timings.inference_ms};
      call->callback(std::move(result));
    });
  };
  Status st = scheduler_->submit(job);
  if (!st.is_ok()) return fail(std::move(st));
  prepared();
}

void EmbeddingService::prepared() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --preparing_;
  }
  idle_cv_.notify_all();
}

Status EmbeddingService::encode(const EmbedRequest& request, int64_t max_length,
                                std::vector<Sequence>& out) const {
  const bool truncate = request.truncation.enabled;
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
    options.pair = input.pair ? std::optional<std::string_view>(*input.pair) : std::nullopt;
    Status st = tokenizer_.encode_into(input.text, options, &encoding);
    if (!st.is_ok()) return invalid_argument(fmt::format("input {}: {}", i, st.message()));
    if (static_cast<int64_t>(encoding.ids.size()) > max_length) {
      return out_of_range(
          fmt::format("input {} has {} tokens; the maximum is {} (ask for truncation to cut it)", i,
                      encoding.ids.size(), max_length));
    }
    seq.ids = encoding.ids;
    seq.type_ids = encoding.type_ids;
  }
  return Status::ok();
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
