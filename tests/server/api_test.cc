// The API layer in process: real routing, parsing, core service, tokenizer and scheduler; a fake
// engine (BatchRunner) and a fake connection (Responder). The real binary is covered by
// tests/integration.
#include "tideserve/server/api.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <simdjson.h>

namespace tideserve::server {
namespace {

namespace http = boost::beast::http;

std::string source_dir() {
  const char* env = std::getenv("TIDESERVE_SOURCE_DIR");
  return env != nullptr ? env : TIDESERVE_SOURCE_DIR;
}

// Pooled output of sequence s = {len, first id, last id, pooling == mean}, normalized on request.
class FakeRunner : public runtime::BatchRunner {
 public:
  Status run(const runtime::BatchInput& batch, runtime::BatchOutput& output) override {
    std::unique_lock<std::mutex> lock(mutex_);
    gate_cv_.wait(lock, [this] { return open_; });
    const size_t n = batch.cu_seqlens.size() - 1;
    output.hidden_size = 4;
    output.pooled.assign(n * 4, 0.f);
    for (size_t s = 0; s < n; ++s) {
      const int32_t b = batch.cu_seqlens[s], e = batch.cu_seqlens[s + 1];
      float* y = output.pooled.data() + s * 4;
      y[0] = static_cast<float>(e - b);
      y[1] = static_cast<float>(batch.input_ids[b]);
      y[2] = static_cast<float>(batch.input_ids[e - 1]);
      y[3] = batch.pooling[s] == engine::Pooling::kMean ? 1.f : 0.f;
      if (batch.normalize[s]) {
        float norm = 0;
        for (int c = 0; c < 4; ++c) norm += y[c] * y[c];
        for (int c = 0; c < 4; ++c) y[c] /= std::sqrt(norm);
      }
    }
    return Status::ok();
  }
  int64_t output_size() const override { return 4; }
  void set_open(bool open) {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = open;
    gate_cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable gate_cv_;
  bool open_ = true;
};

class FakeResponder : public Responder {
 public:
  void send(Response&& response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    response_ = std::move(response);
    cv_.notify_all();
  }
  bool cancelled() const override { return false; }
  void on_cancel(std::function<void()>) override {}
  std::optional<Response> wait(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, timeout, [this] { return response_.has_value(); });
    return std::move(response_);
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<Response> response_;
};

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override { make_api({}); }

  void make_api(ApiOptions options) {
    repository_.reset();
    service_.reset();
    options.model_id = "tiny";
    options.model_version = "7";
    options.max_client_batch_size = 4;
    metrics_ = std::make_unique<Metrics>("test");
    api_ = std::make_unique<Api>(options, *metrics_);
    auto tokenizer = text::Tokenizer::load(source_dir() + "/models/tideserve-tiny-zh");
    ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
    tokenizer_ = std::move(tokenizer).value();
    runtime::ModelInfo info;
    info.name = "tiny";
    info.version = "7";
    info.vocab_size = static_cast<int64_t>(tokenizer_->vocab_size());
    info.max_input_length = 16;
    runtime::ServiceOptions so;
    so.scheduler.max_concurrent_requests = 3;
    so.task_threads = 1;
    service_ = std::make_unique<runtime::EmbeddingService>(runner_, *tokenizer_, info, so);
    repository_ = std::make_unique<runtime::ModelRepository>(runtime::RepositoryOptions{});
  }

  void TearDown() override {
    runner_.set_open(true);
    if (service_) service_->drain(std::chrono::seconds(5));
  }

  // The model is loaded: the service starts and the API serves it.
  void load() {
    service_->start();
    // The test owns the service; the repository serves it without owning it.
    repository_->adopt(std::shared_ptr<runtime::EmbeddingService>(
        service_.get(), [](runtime::EmbeddingService*) {}));
    api_->set_repository(repository_.get());
    api_->set_ready(true, "");
  }

  std::shared_ptr<FakeResponder> start(http::verb method, const std::string& target,
                                       const std::string& body = "",
                                       const std::string& content_type = "application/json",
                                       const std::string& auth = "") {
    Request request{method, target, 11};
    if (!body.empty()) request.body() = body;
    if (!content_type.empty() && method == http::verb::post) {
      request.set(http::field::content_type, content_type);
    }
    if (!auth.empty()) request.set(http::field::authorization, auth);
    request.prepare_payload();
    auto responder = std::make_shared<FakeResponder>();
    api_->handle(std::move(request), responder);
    return responder;
  }

  Response finish(const std::shared_ptr<FakeResponder>& responder) {
    if (auto r = responder->wait(std::chrono::seconds(30))) return std::move(*r);
    ADD_FAILURE() << "no response";
    return Response{};
  }

  Response call(http::verb method, const std::string& target, const std::string& body = "",
                const std::string& content_type = "application/json",
                const std::string& auth = "") {
    return finish(start(method, target, body, content_type, auth));
  }

  simdjson::dom::element json_of(const std::string& text) {
    simdjson::dom::element e;
    EXPECT_EQ(parser_.parse(text).get(e), simdjson::SUCCESS) << text;
    return e;
  }

  simdjson::dom::element json(const Response& r) {
    simdjson::dom::element e;
    EXPECT_EQ(parser_.parse(r.body()).get(e), simdjson::SUCCESS) << r.body();
    return e;
  }

  FakeRunner runner_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<runtime::EmbeddingService> service_;
  std::unique_ptr<runtime::ModelRepository> repository_;  // destroyed before service_
  simdjson::dom::parser parser_;
};

TEST_F(ApiTest, NotReadyUntilTheModelIsLoaded) {
  api_->set_ready(false, "loading model");
  Response r = call(http::verb::get, "/health");
  EXPECT_EQ(r.result_int(), 503);
  EXPECT_EQ(std::string_view(json(r)["reason"]), "loading model");
  EXPECT_EQ(call(http::verb::get, "/v2/health/ready").result_int(), 503);
  EXPECT_EQ(call(http::verb::get, "/v2/health/live").result_int(), 200);
  r = call(http::verb::post, "/predict", R"({"text":"hi"})");
  EXPECT_EQ(r.result_int(), 503);
  EXPECT_NE(std::string_view(json(r)["detail"]).find("not ready"), std::string_view::npos);
  load();
  r = call(http::verb::get, "/health");
  EXPECT_EQ(r.result_int(), 200);
  EXPECT_EQ(std::string_view(json(r)["status"]), "healthy");
  EXPECT_EQ(std::string_view(json(r)["model_version"]), "7");
}

TEST_F(ApiTest, PredictKeepsTheSeedContract) {
  load();
  Response r = call(http::verb::post, "/predict", R"({"text":"你好 world","max_length":16})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  auto doc = json(r);
  // [CLS] 你 好 world [SEP] -> 5 tokens; CLS pooling, not normalized.
  auto embedding = simdjson::dom::array(doc["embedding"]);
  ASSERT_EQ(embedding.size(), 4u);
  EXPECT_EQ(double(embedding.at(0)), 5.0);
  EXPECT_EQ(double(embedding.at(1)), double(tokenizer_->token_to_id("[CLS]").value()));
  EXPECT_EQ(double(embedding.at(3)), 0.0);
  EXPECT_EQ(std::string_view(doc["prediction"]), "[[5.0, 101.0, 102.0, 0.0]]");
  EXPECT_EQ(std::string_view(doc["model_version"]), "7");
  EXPECT_TRUE(doc["latency_ms"].is_double());
  EXPECT_FALSE(r["x-inference-time"].empty());
  EXPECT_FALSE(r["x-queue-time"].empty());
  // max_length truncates (the seed's tokenizer call truncates).
  r = call(http::verb::post, "/predict", R"({"text":"一二三四五六七八九十","max_length":4})");
  ASSERT_EQ(r.result_int(), 200);
  EXPECT_EQ(double(simdjson::dom::array(json(r)["embedding"]).at(0)), 4.0);
}

TEST_F(ApiTest, PredictRejectsBadInputWithDetail) {
  load();
  struct Case {
    std::string body;
    int status;
    std::string needle;
  } cases[] = {
      {"{", 400, "malformed JSON"},
      {"[1]", 422, "JSON object"},
      {R"({"txt":"a"})", 422, "missing field 'text'"},
      {R"({"text":5})", 422, "must be a string"},
      {R"({"text":""})", 422, "empty string"},
      {R"({"text":"a","max_length":-1})", 422, "between 2 and 16"},
      {R"({"text":"a","max_length":1e30})", 422, "must be an integer"},
      {R"({"text":"a","max_length":18446744073709551615})", 422, "too large"},
      {R"({"text":"a","max_length":1180591620717411303424})", 400, "number"},
      {"{\"text\":\"\xff\xfe\"}", 400, "UTF-8"},
      {"", 400, "empty request body"},
  };
  for (const Case& c : cases) {
    Response r = call(http::verb::post, "/predict", c.body);
    EXPECT_EQ(r.result_int(), c.status) << c.body << " -> " << r.body();
    auto doc = json(r);
    std::string_view detail;
    ASSERT_EQ(doc["detail"].get(detail), simdjson::SUCCESS) << r.body();
    EXPECT_NE(detail.find(c.needle), std::string_view::npos) << c.body << " -> " << detail;
  }
}

TEST_F(ApiTest, RoutingErrors) {
  load();
  Response r = call(http::verb::get, "/nope");
  EXPECT_EQ(r.result_int(), 404);
  EXPECT_NE(std::string_view(json(r)["error"]).find("/nope"), std::string_view::npos);
  r = call(http::verb::get, "/predict");
  EXPECT_EQ(r.result_int(), 405);
  EXPECT_EQ(r[http::field::allow], "POST");
  r = call(http::verb::post, "/embed", R"({"inputs":"a"})", "text/plain");
  EXPECT_EQ(r.result_int(), 415);
  EXPECT_EQ(std::string_view(json(r)["error_type"]), "Validation");
  r = call(http::verb::post, "/embed", R"({"inputs":"a"})", "application/json; charset=utf-8");
  EXPECT_EQ(r.result_int(), 200) << r.body();
}

TEST_F(ApiTest, EmbedTokenizeAndInfo) {
  load();
  Response r = call(http::verb::post, "/embed", R"({"inputs":["a","b c"],"normalize":false})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  auto rows = simdjson::dom::array(json(r));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(double(simdjson::dom::array(rows.at(1)).at(0)), 4.0);
  r = call(http::verb::post, "/embed", R"({"inputs":"a"})");  // normalize defaults to true
  auto row = simdjson::dom::array(simdjson::dom::array(json(r)).at(0));
  double norm = 0;
  for (auto v : row) norm += double(v) * double(v);
  EXPECT_NEAR(norm, 1.0, 1e-6);
  r = call(http::verb::post, "/embed", R"({"inputs":"一二三四五六七八九十一二三四五六七八"})");
  EXPECT_EQ(r.result_int(), 413);
  EXPECT_NE(std::string_view(json(r)["error"]).find("20 tokens; the maximum is 16"),
            std::string_view::npos)
      << r.body();
  r = call(
      http::verb::post, "/embed",
      R"({"inputs":"一二三四五六七八九十一二三四五六七八","truncate":true,"truncation_direction":"Left","normalize":false})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(double(simdjson::dom::array(simdjson::dom::array(json(r)).at(0)).at(0)), 16.0);
  EXPECT_EQ(call(http::verb::post, "/embed", R"({"inputs":[]})").result_int(), 422);
  EXPECT_EQ(call(http::verb::post, "/embed", R"({"inputs":["a","b","c","d","e"]})").result_int(),
            422);
  EXPECT_EQ(call(http::verb::post, "/embed", R"({"inputs":[1]})").result_int(), 422);
  EXPECT_EQ(call(http::verb::post, "/embed", R"({"inputs":"a","truncation_direction":"Up"})")
                .result_int(),
            422);
  r = call(http::verb::post, "/tokenize", R"({"inputs":"Good 你"})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  auto tokens = simdjson::dom::array(simdjson::dom::array(json(r)).at(0));
  ASSERT_EQ(tokens.size(), 4u);
  EXPECT_EQ(std::string_view(tokens.at(0)["text"]), "[CLS]");
  EXPECT_TRUE(bool(tokens.at(0)["special"]));
  EXPECT_EQ(std::string_view(tokens.at(2)["text"]), "你");
  EXPECT_EQ(int64_t(tokens.at(2)["start"]), 5);
  EXPECT_EQ(int64_t(tokens.at(2)["stop"]), 6);
  r = call(http::verb::get, "/info");
  EXPECT_EQ(std::string_view(json(r)["model_id"]), "tiny");
  EXPECT_EQ(int64_t(json(r)["max_input_length"]), 16);
}

TEST_F(ApiTest, OpenAiEmbeddings) {
  load();
  Response r = call(http::verb::post, "/v1/embeddings",
                    R"({"input":["a",[5,6,7]],"model":"whatever","encoding_format":"float"})");
  ASSERT_EQ(r.result_int(), 404) << r.body();
  EXPECT_EQ(std::string_view(json(r)["error"]["type"]), "not_found_error");
  r = call(http::verb::post, "/v1/embeddings",
           R"({"input":["a",[5,6,7]],"model":"tiny","encoding_format":"float"})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  auto doc = json(r);
  EXPECT_EQ(std::string_view(doc["object"]), "list");
  EXPECT_EQ(std::string_view(doc["model"]), "tiny");
  EXPECT_EQ(int64_t(doc["usage"]["prompt_tokens"]), 3 + 3);
  EXPECT_EQ(int64_t(doc["data"].at(1)["index"]), 1);
  r = call(http::verb::post, "/v1/embeddings", R"({"input":[1,2],"encoding_format":"base64"})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(std::string_view(json(r)["data"].at(0)["embedding"]).size(), 24u);  // 16 bytes
  struct Case {
    std::string body;
    std::string needle;
  } cases[] = {
      {R"({"model":"tiny"})", "missing field 'input'"},
      {R"({"input":[]})", "empty list"},
      {R"({"input":"a","dimensions":5})", "dimensions 5 is outside [1, 4]"},
      {R"({"input":"a","dimensions":0})", "'dimensions' must be a positive integer"},
      {R"({"input":"a","prompt_name":"query"})", "the model declares no prompts"},
      {R"({"input":"a","encoding_format":"int8"})", "encoding_format"},
      {R"({"input":[[1,-2]]})", "out of range"},
      {R"({"input":[[1,999999]]})", "outside the vocabulary"},
      {R"({"input":{"a":1}})", "must be a string"},
  };
  for (const Case& c : cases) {
    r = call(http::verb::post, "/v1/embeddings", c.body);
    EXPECT_EQ(r.result_int(), 400) << c.body;
    auto e = json(r)["error"];
    EXPECT_EQ(std::string_view(e["type"]), "invalid_request_error");
    EXPECT_NE(std::string_view(e["message"]).find(c.needle), std::string_view::npos)
        << c.body << " -> " << r.body();
  }
  EXPECT_EQ(
      call(http::verb::post, "/v1/embeddings", R"({"input":"a","dimensions":4})").result_int(),
      200);
  // Matryoshka: the first 3 components, renormalized.
  r = call(http::verb::post, "/v1/embeddings", R"({"input":[[5,6,7]],"dimensions":3})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  std::vector<double> cut;
  for (auto v : simdjson::dom::array(json(r)["data"].at(0)["embedding"])) cut.push_back(double(v));
  ASSERT_EQ(cut.size(), 3u);
  // The fake's row is {3, 5, 7, is_mean}, normalized: its first three renormalized.
  const double n = std::sqrt(9.0 + 25.0 + 49.0);
  EXPECT_NEAR(cut[0], 3 / n, 1e-6);
  EXPECT_NEAR(cut[1], 5 / n, 1e-6);
  EXPECT_NEAR(cut[2], 7 / n, 1e-6);
}

TEST_F(ApiTest, KServeV2) {
  load();
  EXPECT_EQ(call(http::verb::get, "/v2").result_int(), 200);
  Response r = call(http::verb::get, "/v2/models/tiny");
  ASSERT_EQ(r.result_int(), 200);
  EXPECT_EQ(std::string_view(json(r)["versions"].at(0)), "7");
  EXPECT_EQ(call(http::verb::get, "/v2/models/tiny/ready").result_int(), 200);
  EXPECT_EQ(call(http::verb::get, "/v2/models/other/ready").result_int(), 404);
  EXPECT_EQ(call(http::verb::get, "/v2/models/tiny/versions/7/ready").result_int(), 200);
  EXPECT_EQ(call(http::verb::get, "/v2/models/tiny/versions/8/ready").result_int(), 404);
  EXPECT_EQ(call(http::verb::get, "/v2/models/tiny/infer").result_int(), 405);
  r = call(
      http::verb::post, "/v2/models/tiny/infer",
      R"({"id":"q1","inputs":[{"name":"text","shape":[2],"datatype":"BYTES","data":["a","b"]}]})");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  auto out = json(r)["outputs"].at(0);
  EXPECT_EQ(std::string_view(out["datatype"]), "FP32");
  EXPECT_EQ(int64_t(out["shape"].at(0)), 2);
  EXPECT_EQ(int64_t(out["shape"].at(1)), 4);
  EXPECT_EQ(simdjson::dom::array(out["data"]).size(), 8u);
  EXPECT_EQ(std::string_view(json(r)["id"]), "q1");
  r = call(http::verb::post, "/v2/models/tiny/infer",
           R"({"inputs":[{"name":"text","shape":[3],"datatype":"BYTES","data":["a","b"]}]})");
  EXPECT_EQ(r.result_int(), 400);
  EXPECT_NE(std::string_view(json(r)["error"]).find("3 elements"), std::string_view::npos);
  r = call(http::verb::post, "/v2/models/tiny/infer",
           R"({"inputs":[{"name":"text","shape":[1],"datatype":"FP32","data":[1.0]}]})");
  EXPECT_EQ(r.result_int(), 400);
}

TEST_F(ApiTest, KServeAnswersEveryInvalidInput400) {
  load();
  struct Case {
    std::string data;
    std::string needle;
  } cases[] = {
      {R"([""])", "empty string"},                   // the tokenizer's refusal
      {R"(["a","b","c","d","e"])", "maximum is 4"},  // over --max-client-batch-size
      {R"([1])", "must be strings"},
  };
  for (const Case& c : cases) {
    const int n = static_cast<int>(simdjson::dom::array(json_of(c.data)).size());
    Response r = call(http::verb::post, "/v2/models/tiny/infer",
                      R"({"inputs":[{"name":"text","datatype":"BYTES","shape":[)" +
                          std::to_string(n) + R"(],"data":)" + c.data + "}]}");
    EXPECT_EQ(r.result_int(), 400) << c.data << " -> " << r.body();
    EXPECT_NE(std::string_view(json(r)["error"]).find(c.needle), std::string_view::npos)
        << c.data << " -> " << r.body();
  }
  // Too long without truncation is a size fault: 413, as on /embed.
  Response r = call(
      http::verb::post, "/v2/models/tiny/infer",
      R"({"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"data":["一二三四五六七八九十一二三四五六七八"]}]})");
  EXPECT_EQ(r.result_int(), 413) << r.body();
}

TEST_F(ApiTest, TokenizeAnswerIsBounded) {
  ApiOptions options;
  options.max_tokenize_tokens = 8;
  make_api(options);
  load();
  Response r = call(http::verb::post, "/tokenize", R"({"inputs":["一二三","四五六"]})");  // 5 + 5
  EXPECT_EQ(r.result_int(), 413) << r.body();
  EXPECT_EQ(std::string_view(json(r)["error_type"]), "Validation");
  EXPECT_NE(std::string_view(json(r)["error"]).find("more than 8 tokens"), std::string_view::npos);
  r = call(http::verb::post, "/tokenize", R"({"inputs":["一二三四五六"]})");  // 8 tokens
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(simdjson::dom::array(simdjson::dom::array(json(r)).at(0)).size(), 8u);
}

TEST_F(ApiTest, ApiKeyGuardsInferenceRoutesOnly) {
  ApiOptions options;
  options.api_key = "s3cret";
  make_api(options);
  load();
  Response r = call(http::verb::post, "/embed", R"({"inputs":"a"})");
  EXPECT_EQ(r.result_int(), 401);
  EXPECT_EQ(r[http::field::www_authenticate], "Bearer");
  EXPECT_EQ(
      call(http::verb::post, "/embed", R"({"inputs":"a"})", "application/json", "Bearer wrong")
          .result_int(),
      401);
  EXPECT_EQ(
      call(http::verb::post, "/embed", R"({"inputs":"a"})", "application/json", "Bearer s3cret")
          .result_int(),
      200);
  EXPECT_EQ(call(http::verb::post, "/v1/embeddings", R"({"input":"a"})").result_int(), 401);
  EXPECT_EQ(call(http::verb::get, "/health").result_int(), 200);
  EXPECT_EQ(call(http::verb::get, "/metrics").result_int(), 200);
  EXPECT_EQ(call(http::verb::get, "/v2/health/ready").result_int(), 200);
}

TEST_F(ApiTest, OverCapacityIs429AtOnceWithRetryAfter) {
  load();
  runner_.set_open(false);  // the engine is busy
  auto first = start(http::verb::post, "/embed", R"({"inputs":["a","b","c"]})");  // fills 3 slots
  Response r = call(http::verb::post, "/embed", R"({"inputs":"d"})");
  EXPECT_EQ(r.result_int(), 429);
  EXPECT_EQ(r[http::field::retry_after], "1");
  EXPECT_EQ(std::string_view(json(r)["error_type"]), "Overloaded");
  r = call(http::verb::post, "/v1/embeddings", R"({"input":"d"})");
  EXPECT_EQ(r.result_int(), 429);
  EXPECT_EQ(std::string_view(json(r)["error"]["type"]), "rate_limit_error");
  runner_.set_open(true);
  EXPECT_EQ(finish(first).result_int(), 200);
  EXPECT_EQ(call(http::verb::post, "/embed", R"({"inputs":"d"})").result_int(), 200);
  std::string metrics = call(http::verb::get, "/metrics").body();
  EXPECT_NE(metrics.find("tideserve_rejected_requests_total 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("tideserve_requests_total{code=\"429\",route=\"/embed\"} 1"),
            std::string::npos);
}

}  // namespace
}  // namespace tideserve::server
