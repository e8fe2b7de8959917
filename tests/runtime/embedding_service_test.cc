// The core service against the fake runner and the real tokenizer: inputs (texts, pairs, ids),
// truncation, admission (kResourceExhausted, kInvalidArgument), cancellation before tokenization
// and before compute (kCancelled), drain (kUnavailable), /tokenize's bound, stage timings and the
// threads callbacks run on. No engine, no OpenMP: meaningful under ThreadSanitizer.
#include "tideserve/runtime/embedding_service.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "fake_runner.h"

namespace tideserve::runtime {
namespace {

using testing::fake_embedding;
using testing::FakeRunner;
using testing::kFakeHidden;

constexpr auto kLongWait = std::chrono::seconds(60);
constexpr int64_t kMaxInput = 16;

std::string source_dir() {
  const char* env = std::getenv("TIDESERVE_SOURCE_DIR");
  return env != nullptr ? env : TIDESERVE_SOURCE_DIR;
}

// One answer, waited for; remembers the thread it came on.
template <typename T>
class Answer {
 public:
  std::function<void(Result<T>)> callback() {
    return [this](Result<T> result) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++calls_;
      thread_ = std::this_thread::get_id();
      result_.emplace(std::move(result));
      cv_.notify_all();
    };
  }
  bool done() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return result_.has_value();
  }
  Result<T>& wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    EXPECT_TRUE(cv_.wait_for(lock, kLongWait, [this] { return result_.has_value(); }))
        << "no answer";
    if (!result_) result_.emplace(internal_error("no answer"));
    return *result_;
  }
  std::thread::id thread() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return thread_;
  }
  int calls() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<Result<T>> result_;
  std::thread::id thread_;
  int calls_ = 0;
};
using EmbedAnswer = Answer<EmbedResult>;

class EmbeddingServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tokenizer = text::Tokenizer::load(source_dir() + "/models/tideserve-tiny-zh");
    ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
    tokenizer_ = std::move(tokenizer).value();
    make_service(ServiceOptions{});
  }

  void make_service(ServiceOptions options) {
    service_.reset();
    ModelInfo info;
    info.name = "tiny";
    info.vocab_size = static_cast<int64_t>(tokenizer_->vocab_size());
    info.max_input_length = kMaxInput;
    info.pooling = Pooling::kMean;
    if (options.scheduler.max_concurrent_requests == SchedulerOptions{}.max_concurrent_requests) {
      options.scheduler.max_concurrent_requests = 4;
    }
    options.task_threads = 2;
    service_ = std::make_unique<EmbeddingService>(runner_, *tokenizer_, info, options);
    service_->start();
  }

  void TearDown() override {
    runner_.open();
    service_.reset();
  }

  Result<EmbedResult>& embed(EmbedRequest request, EmbedAnswer& answer,
                             CancelToken cancel = CancelToken()) {
    service_->embed(std::move(request), cancel, answer.callback());
    return answer.wait();
  }

  // The tokenizer's own encoding of `text` under `options`: the reference for the service.
  std::vector<int32_t> reference_ids(const std::string& text, text::EncodeOptions options = {}) {
    auto encoding = tokenizer_->encode(text, options);
    EXPECT_TRUE(encoding.is_ok());
    return encoding.is_ok() ? encoding->ids : std::vector<int32_t>{};
  }

  static EmbedRequest texts(std::vector<std::string> inputs) {
    EmbedRequest request;
    for (std::string& text : inputs)
      request.inputs.push_back(EmbedInput::from_text(std::move(text)));
    return request;
  }

  static std::vector<float> row(const EmbedResult& r, size_t i) {
    auto span = r.row(i);
    return std::vector<float>(span.begin(), span.end());
  }

  FakeRunner runner_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<EmbeddingService> service_;
};

// 20 CJK characters: 22 tokens with [CLS] and [SEP], over kMaxInput.
const std::string kLongText = "一二三四五六七八九十一二三四五六七八九十";

TEST_F(EmbeddingServiceTest, TextsAreTokenizedPooledAndTimed) {
  EmbedRequest request = texts({"你好 world", "a"});
  request.normalize = true;
  EmbedAnswer answer;
  auto& result = embed(std::move(request), answer);
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  const EmbedResult& r = result.value();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r.hidden_size, kFakeHidden);
  const std::vector<int32_t> ids0 = reference_ids("你好 world"), ids1 = reference_ids("a");
  EXPECT_EQ(r.token_counts, (std::vector<int64_t>{int64_t(ids0.size()), int64_t(ids1.size())}));
  EXPECT_EQ(r.prompt_tokens, int64_t(ids0.size() + ids1.size()));
  // The model's default pooling (mean) with normalize, type ids all 0.
  EXPECT_EQ(row(r, 0),
            fake_embedding(ids0, std::vector<int32_t>(ids0.size(), 0), Pooling::kMean, true));
  EXPECT_EQ(row(r, 1),
            fake_embedding(ids1, std::vector<int32_t>(ids1.size(), 0), Pooling::kMean, true));
  EXPECT_GE(r.timings.tokenize_ms, 0);
  EXPECT_GE(r.timings.queue_ms, 0);
  EXPECT_GE(r.timings.inference_ms, 0);
  EXPECT_NE(answer.thread(), std::this_thread::get_id()) << "an answer with vectors ran inline";
  EXPECT_EQ(answer.calls(), 1);
  EXPECT_EQ(service_->inflight_inputs(), 0);
}

TEST_F(EmbeddingServiceTest, PoolingOverridesTheModelDefault) {
  EmbedRequest request = texts({"你好"});
  request.pooling = Pooling::kCls;
  EmbedAnswer answer;
  auto& result = embed(std::move(request), answer);
  ASSERT_TRUE(result.is_ok());
  const std::vector<int32_t> ids = reference_ids("你好");
  EXPECT_EQ(row(result.value(), 0),
            fake_embedding(ids, std::vector<int32_t>(ids.size(), 0), Pooling::kCls, false));
}

TEST_F(EmbeddingServiceTest, TruncationCutsOrRefuses) {
  {
    EmbedAnswer answer;
    auto& result = embed(texts({"a", kLongText}), answer);
    ASSERT_EQ(result.status().code(), StatusCode::kOutOfRange);
    EXPECT_EQ(result.status().message(),
              "input 1 has 22 tokens; the maximum is 16 (ask for truncation to cut it)");
  }
  for (TruncationSide side : {TruncationSide::kRight, TruncationSide::kLeft}) {
    EmbedRequest request = texts({kLongText});
    request.truncation = {.enabled = true, .side = side};
    EmbedAnswer answer;
    auto& result = embed(std::move(request), answer);
    ASSERT_TRUE(result.is_ok()) << result.status().to_string();
    text::EncodeOptions options;
    options.max_length = kMaxInput;
    options.truncation_side = side;
    const std::vector<int32_t> ids = reference_ids(kLongText, options);
    ASSERT_EQ(ids.size(), size_t(kMaxInput));
    EXPECT_EQ(result->token_counts[0], kMaxInput);
    EXPECT_EQ(row(result.value(), 0),
              fake_embedding(ids, std::vector<int32_t>(ids.size(), 0), Pooling::kMean, false));
  }
  // A shorter max length; one above the model's limit is refused.
  EmbedRequest request = texts({kLongText});
  request.truncation = {.enabled = true, .max_length = 4};
  EmbedAnswer four;
  ASSERT_TRUE(embed(std::move(request), four).is_ok());
  EXPECT_EQ(four.wait()->token_counts[0], 4);
  request = texts({"a"});
  request.truncation = {.enabled = true, .max_length = kMaxInput + 1};
  EmbedAnswer over;
  EXPECT_EQ(embed(std::move(request), over).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EmbeddingServiceTest, PairsGetTypeIdOneOnTheSecondText) {
  EmbedRequest request;
  request.inputs.push_back(EmbedInput::from_pair("你好", "世界啊"));
  EmbedAnswer answer;
  auto& result = embed(std::move(request), answer);
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  // [CLS] 你 好 [SEP] 世 界 啊 [SEP]: 8 tokens, 4 of them with type id 1.
  text::EncodeOptions options;
  options.pair = "世界啊";
  auto reference = tokenizer_->encode("你好", options);
  ASSERT_TRUE(reference.is_ok());
  EXPECT_EQ(result->token_counts[0], 8);
  EXPECT_EQ(row(result.value(), 0),
            fake_embedding(reference->ids, reference->type_ids, Pooling::kMean, false));
  EXPECT_EQ(row(result.value(), 0)[2], 4.f);
  request = EmbedRequest();
  request.inputs.push_back(EmbedInput::from_pair("你好", ""));
  EmbedAnswer empty;
  EXPECT_EQ(embed(std::move(request), empty).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EmbeddingServiceTest, TokenIdsAreCheckedAndTruncated) {
  EmbedRequest request;
  request.inputs.push_back(EmbedInput::from_ids({5, 6, 7}));
  EmbedAnswer ok;
  auto& result = embed(std::move(request), ok);
  ASSERT_TRUE(result.is_ok());
  EXPECT_EQ(row(result.value(), 0), fake_embedding({5, 6, 7}, {0, 0, 0}, Pooling::kMean, false));

  request = EmbedRequest();
  request.inputs.push_back(EmbedInput::from_ids({5, 1 << 30}));
  EmbedAnswer outside;
  auto& bad = embed(std::move(request), outside);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("outside the vocabulary"), std::string::npos);

  std::vector<int32_t> long_ids;
  for (int32_t i = 0; i < kMaxInput + 4; ++i) long_ids.push_back(100 + i);
  request = EmbedRequest();
  request.inputs.push_back(EmbedInput::from_ids(long_ids));
  EmbedAnswer too_long;
  EXPECT_EQ(embed(std::move(request), too_long).status().code(), StatusCode::kOutOfRange);

  request = EmbedRequest();
  request.inputs.push_back(EmbedInput::from_ids(long_ids));
  request.truncation = {.enabled = true, .side = TruncationSide::kLeft};
  EmbedAnswer cut;
  auto& left = embed(std::move(request), cut);
  ASSERT_TRUE(left.is_ok());
  const std::vector<int32_t> kept(long_ids.end() - kMaxInput, long_ids.end());
  EXPECT_EQ(row(left.value(), 0),
            fake_embedding(kept, std::vector<int32_t>(kept.size(), 0), Pooling::kMean, false));
}

TEST_F(EmbeddingServiceTest, OverCapacityIsRefusedAtOnceWithItsOwnCode) {
  runner_.hold();
  EmbedAnswer first;
  service_->embed(texts({"a", "b", "c"}), CancelToken(), first.callback());  // 3 of 4 slots
  ASSERT_TRUE(runner_.wait_started(1));
  EXPECT_EQ(service_->inflight_inputs(), 3);

  EmbedAnswer over;
  service_->embed(texts({"d", "e"}), CancelToken(), over.callback());
  ASSERT_TRUE(over.done()) << "a refusal must not wait";
  EXPECT_EQ(over.thread(), std::this_thread::get_id());
  EXPECT_EQ(over.wait().status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(over.wait().status().message(),
            "server at capacity (3 inputs in flight, limit 4); retry later");

  EmbedAnswer never;
  service_->embed(texts({"a", "b", "c", "d", "e"}), CancelToken(), never.callback());
  ASSERT_TRUE(never.done());
  EXPECT_EQ(never.wait().status().code(), StatusCode::kInvalidArgument) << "could never fit";

  EmbedAnswer none;
  service_->embed(EmbedRequest(), CancelToken(), none.callback());
  EXPECT_EQ(none.wait().status().code(), StatusCode::kInvalidArgument);

  runner_.open();
  EXPECT_TRUE(first.wait().is_ok());
  EXPECT_EQ(service_->inflight_inputs(), 0);
  EmbedAnswer after;
  EXPECT_TRUE(embed(texts({"d", "e"}), after).is_ok());
}

TEST_F(EmbeddingServiceTest, CancelledBeforeComputeIsDroppedWithItsOwnCode) {
  runner_.hold();
  EmbedAnswer busy;
  service_->embed(texts({"a"}), CancelToken(), busy.callback());
  ASSERT_TRUE(runner_.wait_started(1));  // the engine is computing "a"
  CancelToken token;
  EmbedAnswer cancelled;
  service_->embed(texts({"b", "c"}), token, cancelled.callback());
  token.cancel();
  runner_.open();
  EXPECT_TRUE(busy.wait().is_ok());
  EXPECT_EQ(cancelled.wait().status().code(), StatusCode::kCancelled);
  EXPECT_EQ(service_->cancelled_inputs(), 2);
  EXPECT_EQ(runner_.batches().size(), 1u) << "the cancelled inputs reached the engine";
  EXPECT_EQ(service_->inflight_inputs(), 0);
}

TEST_F(EmbeddingServiceTest, CancelledBeforeTokenizationOnThePool) {
  CancelToken token;
  token.cancel();
  // Over inline_tokenize_bytes: tokenized on the pool, which finds the token cancelled.
  EmbedAnswer answer;
  auto& result = embed(texts({std::string(4096, 'a')}), answer, token);
  EXPECT_EQ(result.status().code(), StatusCode::kCancelled);
  EXPECT_TRUE(runner_.batches().empty());
  EXPECT_EQ(service_->inflight_inputs(), 0);
}

TEST_F(EmbeddingServiceTest, LargeRequestsAreTokenizedOnThePool) {
  ServiceOptions options;
  options.inline_tokenize_bytes = 0;  // everything through the pool
  make_service(options);
  EmbedAnswer answer;
  auto& result = embed(texts({"\xff"}), answer);  // refused while tokenizing: on the pool
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message().rfind("input 0: ", 0), 0u) << result.status().message();
  EXPECT_NE(answer.thread(), std::this_thread::get_id());
}

TEST_F(EmbeddingServiceTest, DrainFinishesAdmittedWorkThenRefuses) {
  runner_.hold();
  EmbedAnswer queued;
  // On the pool (over inline_tokenize_bytes): drain must wait for it to reach the scheduler.
  service_->embed(texts({std::string(3000, 'a') + " b"}), CancelToken(), queued.callback());
  std::thread opener([this] {
    runner_.wait_started(1);
    runner_.open();
  });
  EXPECT_TRUE(service_->drain(kLongWait));
  opener.join();
  EXPECT_TRUE(queued.wait().is_ok()) << queued.wait().status().to_string();
  EmbedAnswer late;
  service_->embed(texts({"a"}), CancelToken(), late.callback());
  EXPECT_EQ(late.wait().status().code(), StatusCode::kUnavailable);
  Answer<TokenizeResult> late_tokenize;
  service_->tokenize({{"a"}}, CancelToken(), late_tokenize.callback());
  EXPECT_EQ(late_tokenize.wait().status().code(), StatusCode::kUnavailable);
}

TEST_F(EmbeddingServiceTest, TokenizeAnswersEncodingsWithinItsBound) {
  Answer<TokenizeResult> answer;
  service_->tokenize({{"Good 你", "世界"}}, CancelToken(), answer.callback());
  auto& result = answer.wait();
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  ASSERT_EQ(result->encodings.size(), 2u);
  EXPECT_EQ(result->encodings[0].ids, reference_ids("Good 你"));
  EXPECT_EQ(result->encodings[1].ids, reference_ids("世界"));
  EXPECT_NE(answer.thread(), std::this_thread::get_id());

  TokenizeRequest bounded{{"一二三", "四五六"}, true, 7};  // 5 + 5 tokens
  Answer<TokenizeResult> over;
  service_->tokenize(std::move(bounded), CancelToken(), over.callback());
  EXPECT_EQ(over.wait().status().code(), StatusCode::kOutOfRange);
  EXPECT_NE(over.wait().status().message().find("more than 7 tokens"), std::string::npos);

  Answer<TokenizeResult> bad;
  service_->tokenize({{"ok", "\xff"}}, CancelToken(), bad.callback());
  EXPECT_EQ(bad.wait().status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.wait().status().message().find("input 1"), std::string::npos);
  EXPECT_EQ(service_->inflight_inputs(), 0);
}

TEST_F(EmbeddingServiceTest, ConcurrentClientsAllGetTheirOwnAnswers) {
  ServiceOptions options;
  options.scheduler.max_concurrent_requests = 64;
  options.scheduler.max_batch_requests = 5;
  make_service(options);
  constexpr int kThreads = 4, kRequests = 40;
  std::atomic<int> wrong{0}, rejected{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < kRequests; ++i) {
        // Small requests inline, large ones through the pool.
        std::string text = (i % 3 == 0 ? std::string(2100, 'x') + " " : std::string()) +
                           std::to_string(t * 1000 + i) + " 你好";
        EmbedRequest request = texts({text, "a"});
        request.truncation.enabled = true;
        EmbedAnswer answer;
        service_->embed(std::move(request), CancelToken(), answer.callback());
        auto& result = answer.wait();
        if (!result.is_ok()) {
          if (result.status().code() == StatusCode::kResourceExhausted)
            ++rejected;
          else
            ++wrong;
          continue;
        }
        text::EncodeOptions encode;
        encode.max_length = kMaxInput;
        const std::vector<int32_t> ids = reference_ids(text, encode);
        if (row(result.value(), 0) !=
            fake_embedding(ids, std::vector<int32_t>(ids.size(), 0), Pooling::kMean, false)) {
          ++wrong;
        }
      }
    });
  }
  for (std::thread& c : clients) c.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(rejected.load(), 0) << "4 clients x 2 inputs never exceed 64 in flight";
  EXPECT_EQ(service_->inflight_inputs(), 0);
}

// Streaming: every row reaches on_row once, each before the final answer, and the answer holds
// the same rows. Run with one sequence per batch so rows come from many batches (and, under
// ThreadSanitizer, from two pool threads that must not overlap for one call).
TEST_F(EmbeddingServiceTest, StreamedRowsComeOnceEachBeforeTheAnswer) {
  ServiceOptions options;
  options.scheduler.max_batch_requests = 1;
  options.scheduler.max_concurrent_requests = 64;
  make_service(options);
  std::vector<std::string> inputs;
  for (int i = 0; i < 24; ++i) inputs.push_back(std::string(static_cast<size_t>(1 + i % 5), 'a'));
  std::mutex mutex;
  std::vector<EmbeddingService::Row> rows;
  bool answered = false, row_after_answer = false;
  EmbedAnswer answer;
  auto callback = answer.callback();
  service_->embed_stream(
      texts(inputs), CancelToken(),
      [&](EmbeddingService::Row&& row) {
        std::lock_guard<std::mutex> lock(mutex);
        row_after_answer |= answered;
        rows.push_back(std::move(row));
      },
      [&](Result<EmbedResult> result) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          answered = true;
        }
        callback(std::move(result));
      });
  auto& result = answer.wait();
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_FALSE(row_after_answer);
  ASSERT_EQ(rows.size(), inputs.size());
  std::vector<bool> seen(inputs.size(), false);
  for (const EmbeddingService::Row& r : rows) {
    ASSERT_LT(r.index, inputs.size());
    EXPECT_FALSE(seen[r.index]) << "row " << r.index << " twice";
    seen[r.index] = true;
    EXPECT_EQ(r.values, row(result.value(), r.index));
    EXPECT_EQ(r.tokens, result->token_counts[r.index]);
    EXPECT_FALSE(r.chunk.has_value());
  }
}

// Chunking: documents split into chunks of at most max_tokens, in order, each with its offsets;
// a chunk's ids are the document's own between [CLS] and [SEP]; more chunks than admitted inputs
// are admitted on top.
TEST_F(EmbeddingServiceTest, ChunkedDocumentsBecomeOneRowPerChunk) {
  ServiceOptions options;
  options.scheduler.max_concurrent_requests = 64;
  make_service(options);
  const std::string doc = "今天天气很好。我们去公园散步吧！然后吃饭。";  // 21 characters
  EmbedRequest request = texts({doc, "hello"});
  request.chunking = Chunking{.max_tokens = 8, .overlap = 2, .document_embedding = true};
  EmbedAnswer answer;
  auto& result = embed(std::move(request), answer);
  ASSERT_TRUE(result.is_ok()) << result.status().to_string();
  const EmbedResult& r = result.value();
  ASSERT_EQ(r.chunks.size(), r.size());
  ASSERT_GE(r.chunks.size(), 4u);
  EXPECT_EQ(r.chunks.back().input, 1u);
  EXPECT_EQ(r.chunks.front().char_start, 0u);
  uint32_t end = 0;
  for (size_t k = 0; k + 1 < r.chunks.size(); ++k) {
    const ChunkSpan& c = r.chunks[k];
    if (c.input != 0) continue;
    EXPECT_EQ(c.chunk, k);
    EXPECT_LE(r.token_counts[k], 8);
    EXPECT_EQ(c.byte_end - c.byte_start, 3 * (c.char_end - c.char_start));  // CJK: 3 bytes each
    end = c.char_end;
  }
  EXPECT_EQ(end, 21u);
  EXPECT_EQ(r.document_embeddings.size(), 2 * static_cast<size_t>(r.hidden_size));
  // Token id inputs are not documents.
  EmbedRequest ids;
  ids.inputs.push_back(EmbedInput::from_ids({2, 5, 3}));
  ids.chunking = Chunking{};
  EmbedAnswer refused;
  auto& bad = embed(std::move(ids), refused);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tideserve::runtime
