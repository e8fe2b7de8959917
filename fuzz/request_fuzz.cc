// The HTTP request path behind the transport: the route table, auth, content type and every API
// family's request parser, with the real core service and tokenizer on a fake engine. The first
// byte picks a route, the rest is the body. Every request must be answered (within the wait) with
// a status and a JSON body, or for a stream well-formed SSE events of JSON ending in "done" or
// "error"; nothing may crash.
//
// A first byte of 0xFF picks the multipart/form-data parser instead (the upload routes' body
// reader): a Content-Type header value up to the first '\n', then the body. A body it accepts must
// come back as at most max_parts parts whose data lie inside it, and writing those parts out again
// with the same boundary must parse back to the same parts.
#include <simdjson.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>

#include "fuzz_util.h"
#include "tideserve/server/api.h"
#include "tideserve/server/multipart.h"

namespace {

namespace http = boost::beast::http;
using namespace tideserve;

// Row s = {tokens, first id, last id, 1}.
class FakeRunner : public runtime::BatchRunner {
 public:
  Status run(const runtime::BatchInput& batch, runtime::BatchOutput& output) override {
    const size_t n = batch.cu_seqlens.size() - 1;
    output.hidden_size = 4;
    output.pooled.assign(n * 4, 1.f);
    for (size_t s = 0; s < n; ++s) {
      output.pooled[s * 4] = static_cast<float>(batch.cu_seqlens[s + 1] - batch.cu_seqlens[s]);
      output.pooled[s * 4 + 1] = static_cast<float>(batch.input_ids[batch.cu_seqlens[s]]);
    }
    return Status::ok();
  }
  int64_t output_size() const override { return 4; }
};

class Waiter : public server::Responder {
 public:
  void send(server::Response&& response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    response_ = std::move(response);
    cv_.notify_all();
  }
  bool cancelled() const override { return false; }
  void on_cancel(std::function<void()>) override {}
  std::optional<server::Response> wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, std::chrono::seconds(20), [this] { return response_.has_value(); });
    return std::move(response_);
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<server::Response> response_;
};

struct Fixture {
  FakeRunner runner;
  std::unique_ptr<text::Tokenizer> tokenizer;
  std::unique_ptr<server::Metrics> metrics;
  std::unique_ptr<server::Api> api;
  std::unique_ptr<runtime::EmbeddingService> service;
  std::unique_ptr<runtime::ModelRepository> repository;  // serves `service`, not owning it
};

Fixture& fixture() {
  static Fixture* f = [] {
    auto* f = new Fixture();  // never destroyed: the pool threads outlive any exit order
    auto tokenizer = text::Tokenizer::load(fuzz::source_dir() + "/models/tideserve-tiny-zh");
    if (!tokenizer.is_ok()) std::abort();
    f->tokenizer = std::move(tokenizer).value();
    server::ApiOptions options;
    options.model_id = "tiny";
    options.model_version = "1";
    options.max_client_batch_size = 8;
    options.max_tokenize_tokens = 4096;
    options.admin_key = "admin";
    f->metrics = std::make_unique<server::Metrics>("fuzz");
    f->api = std::make_unique<server::Api>(options, *f->metrics);
    runtime::ModelInfo info;
    info.name = "tiny";
    info.version = "1";
    info.vocab_size = static_cast<int64_t>(f->tokenizer->vocab_size());
    info.max_input_length = 64;
    info.prompts = {{"query", "query: "}};
    runtime::ServiceOptions service;
    service.task_threads = 1;
    service.max_chunks_per_document = 16;
    f->service =
        std::make_unique<runtime::EmbeddingService>(f->runner, *f->tokenizer, info, service);
    f->service->start();
    f->repository = std::make_unique<runtime::ModelRepository>(runtime::RepositoryOptions{});
    f->repository->adopt(std::shared_ptr<runtime::EmbeddingService>(
        f->service.get(), [](runtime::EmbeddingService*) {}));
    f->api->set_repository(f->repository.get());
    f->api->set_ready(true, "");
    return f;
  }();
  return *f;
}

struct Target {
  http::verb method;
  const char* path;
};
constexpr Target kTargets[] = {
    {http::verb::post, "/predict"},
    {http::verb::post, "/embed"},
    {http::verb::post, "/tokenize"},
    {http::verb::post, "/v1/embeddings"},
    {http::verb::post, "/v2/models/tiny/infer"},
    {http::verb::post, "/v2/models/tiny/versions/1/infer"},
    {http::verb::post, "/rerank"},
    {http::verb::post, "/v1/rerank"},
    {http::verb::post, "/classify"},
    {http::verb::get, "/info"},
    {http::verb::get, "/v2/models/tiny"},
    {http::verb::get, "/health"},
    {http::verb::post, "/v2/repository/index"},
    {http::verb::post, "/v2/repository/models/tiny/load"},
};

constexpr uint8_t kMultipart = 0xFF;
constexpr size_t kMaxParts = 8;

// The parts in the simplest form the parser must take back: every name and filename quoted
// (escaping '"' and '\\'), the Content-Type only when there was one.
std::string write_multipart(const std::vector<server::MultipartPart>& parts,
                            const std::string& boundary) {
  auto quote = [](const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + '"';
  };
  std::string body;
  for (const server::MultipartPart& part : parts) {
    body += "--" + boundary + "\r\nContent-Disposition: form-data; name=" + quote(part.name);
    if (!part.filename.empty()) body += "; filename=" + quote(part.filename);
    body += "\r\n";
    if (!part.content_type.empty()) body += "Content-Type: " + part.content_type + "\r\n";
    body += "\r\n";
    body.append(part.data);
    body += "\r\n";
  }
  return body + "--" + boundary + "--\r\n";
}

void fuzz_multipart(std::string_view input) {
  const size_t eol = input.find('\n');
  if (eol == std::string_view::npos) return;
  auto boundary = server::multipart_boundary(input.substr(0, eol));
  if (!boundary.is_ok()) {
    if (boundary.status().code() != StatusCode::kInvalidArgument) std::abort();
    return;
  }
  if (boundary->empty() || boundary->size() > 70) std::abort();
  const std::string_view body = input.substr(eol + 1);
  auto parts = server::parse_multipart(body, *boundary, kMaxParts);
  if (!parts.is_ok()) {
    if (parts.status().code() != StatusCode::kInvalidArgument) std::abort();
    if (parts.status().message().empty()) std::abort();
    return;
  }
  if (parts->size() > kMaxParts) std::abort();
  for (const server::MultipartPart& part : *parts) {
    if (!part.data.empty() && (part.data.data() < body.data() ||
                               part.data.data() + part.data.size() > body.data() + body.size())) {
      std::abort();
    }
  }
  for (const server::MultipartPart& part : *parts) {
    // Quoting can double a name's length: past this the rewritten headers could pass 8 KiB.
    if (part.name.size() + part.filename.size() + part.content_type.size() > 2048) return;
  }
  const std::string again_body = write_multipart(*parts, *boundary);
  auto again = server::parse_multipart(again_body, *boundary, kMaxParts);
  if (!again.is_ok() || again->size() != parts->size()) std::abort();
  for (size_t i = 0; i < parts->size(); ++i) {
    const server::MultipartPart& a = (*parts)[i];
    const server::MultipartPart& b = (*again)[i];
    if (a.name != b.name || a.filename != b.filename || a.content_type != b.content_type ||
        a.data != b.data) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (data[0] == kMultipart) {
    fuzz_multipart(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    return 0;
  }
  Fixture& f = fixture();
  const Target& target = kTargets[data[0] % std::size(kTargets)];
  server::Request request{target.method, target.path, 11};
  request.set(http::field::content_type, "application/json");
  if (std::string_view(target.path).rfind("/v2/repository", 0) == 0) {
    request.set(http::field::authorization, "Bearer admin");
  }
  request.body().assign(reinterpret_cast<const char*>(data + 1), size - 1);
  request.prepare_payload();
  auto waiter = std::make_shared<Waiter>();
  f.api->handle(std::move(request), waiter);
  std::optional<server::Response> response = waiter->wait();
  if (!response) std::abort();  // never answered
  const unsigned status = response->result_int();
  if (status < 200 || status >= 600 || status == 500) std::abort();  // 500: a bug, not input
  simdjson::dom::parser parser;
  simdjson::dom::element ignored;
  const auto type = (*response)[http::field::content_type];
  if (std::string_view(type.data(), type.size()).rfind("text/event-stream", 0) != 0) {
    if (parser.parse(response->body()).get(ignored) != simdjson::SUCCESS) std::abort();
    return 0;
  }
  // A stream ("stream": true): events "event: <name>\ndata: <json>\n\n", each JSON, the last
  // one "done" or "error".
  std::string_view rest = response->body();
  std::string_view last;
  while (!rest.empty()) {
    const size_t end = rest.find("\n\n");
    if (end == std::string_view::npos) std::abort();
    std::string_view event = rest.substr(0, end);
    rest.remove_prefix(end + 2);
    const size_t data = event.find("\ndata: ");
    if (event.rfind("event: ", 0) != 0 || data == std::string_view::npos) std::abort();
    last = event.substr(7, data - 7);
    const std::string json(event.substr(data + 7));
    if (parser.parse(json).get(ignored) != simdjson::SUCCESS) std::abort();
  }
  if (last != "done" && last != "error") std::abort();
  return 0;
}
