// The OpenAI Files and Batches API over Redis (jobs/batch_store.h): POST /v1/files (multipart,
// purpose "batch"), GET /v1/files/{id}, GET /v1/files/{id}/content, DELETE /v1/files/{id};
// POST /v1/batches, GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel.
//
// Every handler posts its Redis work to the jobs threads (jobs_service.h); none blocks an IO
// thread. Without --redis the routes answer 503 saying so. A batch is validated whole when it
// is created (every line's JSON, custom_id, method, url and body, as /v1/embeddings would read
// it) and stored with all its lines in one transaction: it exists in_progress, or failed with
// errors.data[].line, or not at all (503, no id).
#include <set>

#include <fmt/format.h>

#include "tideserve/server/api.h"
#include "tideserve/server/json_writer.h"
#include "tideserve/server/multipart.h"
#include "tideserve/server/openai_embeddings.h"

namespace tideserve::server {

namespace {

namespace http = boost::beast::http;

constexpr std::string_view kEndpoint = "/v1/embeddings";
constexpr size_t kMaxReportedErrors = 100;
constexpr size_t kMaxCustomIdBytes = 512;

// The jobs service, or a 503 saying there is none.
JobsService* jobs_or_reply(Api& api, const CallPtr& call) {
  JobsService* jobs = api.jobs();
  if (jobs == nullptr) {
    api.reply_error(call, 503,
                    "the batch API needs Redis: start the server with --redis URL (env "
                    "REDIS_URL)");
  }
  return jobs;
}

// Posts `work` to a jobs thread; a connection failure or a full queue is answered 503.
void on_jobs_thread(Api& api, const CallPtr& call,
                    std::function<void(jobs::BatchStore& store)> work) {
  JobsService* jobs = jobs_or_reply(api, call);
  if (jobs == nullptr) return;
  const bool queued =
      jobs->post([&api, call, work = std::move(work)](Result<jobs::BatchStore*> store) {
        if (!store.is_ok()) return api.reply_error(call, 503, store.status().message());
        work(**store);
      });
  if (!queued) api.reply_error(call, 503, "the batch API is overloaded; retry later");
}

// Redis failures are 503 (Redis down or refusing), never a guess that the request was bad.
void reply_store_error(Api& api, const CallPtr& call, const Status& st) {
  if (st.code() == StatusCode::kInternal) return api.reply_error(call, 503, st.message());
  api.reply_status(call, st);
}

void write_nullable_time(JsonWriter& w, std::string_view key, int64_t t) {
  w.key(key);
  if (t == 0) {
    w.null();
  } else {
    w.value(t);
  }
}

std::string file_json(const jobs::FileRecord& f) {
  JsonWriter w;
  w.begin_object().field("id", f.id).field("object", "file").field("bytes", f.bytes);
  w.field("created_at", f.created_at).field("expires_at", f.expires_at);
  w.field("filename", f.filename).field("purpose", f.purpose).field("status", "processed");
  w.end_object();
  return std::move(w).take();
}

void write_batch(JsonWriter& w, const jobs::BatchRecord& b) {
  w.begin_object().field("id", b.id).field("object", "batch").field("endpoint", b.endpoint);
  w.key("errors");
  if (b.errors_json.empty()) {
    w.null();
  } else {
    w.raw(b.errors_json);
  }
  w.field("input_file_id", b.input_file_id).field("completion_window", b.completion_window);
  w.field("status", b.status);
  for (auto [key, id] : {std::pair{"output_file_id", &b.output_file_id},
                         std::pair{"error_file_id", &b.error_file_id}}) {
    w.key(key);
    if (id->empty()) {
      w.null();
    } else {
      w.value(*id);
    }
  }
  w.field("created_at", b.created_at);
  write_nullable_time(w, "in_progress_at", b.in_progress_at);
  write_nullable_time(w, "expires_at", b.expires_at);
  write_nullable_time(w, "finalizing_at", b.finalizing_at);
  write_nullable_time(w, "completed_at", b.completed_at);
  write_nullable_time(w, "failed_at", b.failed_at);
  write_nullable_time(w, "expired_at", b.expired_at);
  write_nullable_time(w, "cancelling_at", b.cancelling_at);
  write_nullable_time(w, "cancelled_at", b.cancelled_at);
  w.key("request_counts").begin_object().field("total", b.total);
  w.field("completed", b.completed).field("failed", b.failed).end_object();
  w.key("metadata");
  if (b.metadata_json.empty()) {
    w.null();
  } else {
    w.raw(b.metadata_json);
  }
  w.end_object();
}

std::string batch_json(const jobs::BatchRecord& b) {
  JsonWriter w;
  write_batch(w, b);
  return std::move(w).take();
}

// Validation errors of a batch's input file, as OpenAI reports them.
class BatchErrors {
 public:
  void add(std::string_view code, std::string message, int64_t line) {
    ++count_;
    if (data_.size() >= kMaxReportedErrors) return;
    JsonWriter w;
    w.begin_object().field("code", code).field("message", message).key("param").null();
    w.key("line");
    if (line > 0) {
      w.value(line);
    } else {
      w.null();
    }
    w.end_object();
    data_.push_back(std::move(w).take());
  }
  bool empty() const { return count_ == 0; }
  std::string json() const {
    JsonWriter w;
    w.begin_object().field("object", "list").key("data").begin_array();
    for (const std::string& e : data_) w.raw(e);
    w.end_array().end_object();
    return std::move(w).take();
  }

 private:
  std::vector<std::string> data_;
  size_t count_ = 0;
};

// Reads the input file's lines into `batch` (or errors). Each line: {"custom_id", "method":
// "POST", "url": "/v1/embeddings", "body": {...}}; the body is read as /v1/embeddings reads it
// and its model must be one this server knows.
Status validate_lines(std::string_view content, JobsService& jobs, jobs::NewBatch& batch) {
  BatchErrors errors;
  std::set<std::string, std::less<>> custom_ids;
  simdjson::dom::parser parser;
  runtime::ModelRepository* repository = jobs.repository();
  std::map<std::string, std::string, std::less<>> queue_of;  // model asked -> queue (its name)
  int64_t line_no = 0;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string_view::npos) end = content.size();
    std::string_view text = content.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.empty()) {
      errors.add("invalid_json_line", "an empty line", line_no);
      continue;
    }
    if (line_no > jobs.options().max_lines) {
      errors.add("too_many_lines",
                 fmt::format("the file has more than {} lines (--jobs-max-lines)",
                             jobs.options().max_lines),
                 line_no);
      break;
    }
    element line;
    if (parser.parse(text.data(), text.size()).get(line) != simdjson::SUCCESS ||
        line.type() != element_type::OBJECT) {
      errors.add("invalid_json_line", "the line is not a JSON object", line_no);
      continue;
    }
    auto custom_id = field(line, "custom_id");
    if (!custom_id || custom_id->type() != element_type::STRING ||
        std::string_view(*custom_id).empty()) {
      errors.add("missing_custom_id", "'custom_id' must be a non-empty string", line_no);
      continue;
    }
    const std::string id{std::string_view(*custom_id)};
    if (id.size() > kMaxCustomIdBytes) {
      errors.add("invalid_custom_id",
                 fmt::format("'custom_id' is longer than {} bytes", kMaxCustomIdBytes), line_no);
      continue;
    }
    if (!custom_ids.insert(id).second) {
      errors.add("duplicate_custom_id",
                 fmt::format("the custom_id '{}' is used by an earlier line", id), line_no);
      continue;
    }
    auto method = field(line, "method");
    if (!method || method->type() != element_type::STRING || std::string_view(*method) != "POST") {
      errors.add("invalid_method", "'method' must be \"POST\"", line_no);
      continue;
    }
    auto url = field(line, "url");
    if (!url || url->type() != element_type::STRING || std::string_view(*url) != batch.endpoint) {
      errors.add("invalid_url",
                 fmt::format("'url' must be the batch's endpoint, \"{}\"", batch.endpoint),
                 line_no);
      continue;
    }
    auto body = field(line, "body");
    if (!body || body->type() != element_type::OBJECT) {
      errors.add("invalid_body", "'body' must be a JSON object", line_no);
      continue;
    }
    EmbeddingsRequest request;
    if (Status st = parse_embeddings(*body, jobs.max_inputs_per_line(), request); !st.is_ok()) {
      errors.add("invalid_request", st.message(), line_no);
      continue;
    }
    std::string model;
    read_string_if_present(*body, "model", model);
    auto known = queue_of.find(model);
    if (known == queue_of.end()) {
      if (repository == nullptr) return unavailable("the models are not loaded yet");
      auto service = repository->find(model);
      if (!service.is_ok()) {
        if (service.status().code() != StatusCode::kNotFound &&
            service.status().code() != StatusCode::kInvalidArgument) {
          return service.status();  // not serving yet: 503, not the file's fault
        }
        errors.add("model_not_found", service.status().message(), line_no);
        continue;
      }
      known = queue_of.emplace(model, (*service)->info().name).first;
    }
    batch.lines.push_back({id, known->second, simdjson::minify(*body)});
  }
  if (line_no == 0) errors.add("empty_file", "the input file has no lines", 0);
  if (!errors.empty()) {
    batch.lines.clear();
    batch.errors_json = errors.json();
  }
  return Status::ok();
}

// The file's id from the path; the content route's too.
std::string path_id(const CallPtr& call) {
  return call->params.name;
}

}  // namespace

void files_create(Api& api, const CallPtr& call) {
  JobsService* jobs = jobs_or_reply(api, call);
  if (jobs == nullptr) return;
  const auto ct = call->request[http::field::content_type];
  auto boundary = multipart_boundary(std::string_view(ct.data(), ct.size()));
  if (!boundary.is_ok()) return api.reply_error(call, 400, boundary.status().message());
  auto parts = parse_multipart(call->request.body(), *boundary);
  if (!parts.is_ok()) return api.reply_error(call, 400, parts.status().message());
  const MultipartPart* file = nullptr;
  std::string purpose;
  for (const MultipartPart& part : *parts) {
    if (part.name == "file") file = &part;
    if (part.name == "purpose") purpose = std::string(part.data);
  }
  if (purpose != "batch") {
    return api.reply_error(call, 400,
                           purpose.empty() ? "missing form field 'purpose' (it must be \"batch\")"
                                           : "'purpose' must be \"batch\", the only purpose here");
  }
  if (file == nullptr) return api.reply_error(call, 400, "missing form field 'file'");
  if (static_cast<int64_t>(file->data.size()) > jobs->options().max_file_bytes) {
    return api.reply_error(call, 413,
                           fmt::format("the file has {} bytes, more than the {} allowed "
                                       "(--jobs-max-file-bytes)",
                                       file->data.size(), jobs->options().max_file_bytes));
  }
  const std::string filename = file->filename.empty() ? "input.jsonl" : file->filename;
  const std::string_view content = file->data;  // a view into the call's body, which it holds
  on_jobs_thread(api, call, [&api, call, filename, content](jobs::BatchStore& store) {
    auto made = store.create_file("batch", filename, content, api.jobs()->options().ttl_s);
    if (!made.is_ok()) return reply_store_error(api, call, made.status());
    api.reply_json(call, 200, file_json(*made));
  });
}

void files_get(Api& api, const CallPtr& call) {
  on_jobs_thread(api, call, [&api, call](jobs::BatchStore& store) {
    auto f = store.get_file(path_id(call));
    if (!f.is_ok()) return reply_store_error(api, call, f.status());
    api.reply_json(call, 200, file_json(*f));
  });
}

void files_content(Api& api, const CallPtr& call) {
  on_jobs_thread(api, call, [&api, call](jobs::BatchStore& store) {
    auto content = store.file_content(path_id(call));
    if (!content.is_ok()) return reply_store_error(api, call, content.status());
    Response response{http::status::ok, call->request.version()};
    response.set(http::field::content_type, "application/octet-stream");
    response.body() = std::move(content).value();
    api.reply(call, std::move(response));
  });
}

void files_delete(Api& api, const CallPtr& call) {
  on_jobs_thread(api, call, [&api, call](jobs::BatchStore& store) {
    if (Status st = store.delete_file(path_id(call)); !st.is_ok()) {
      return reply_store_error(api, call, st);
    }
    JsonWriter w;
    w.begin_object().field("id", path_id(call)).field("object", "file");
    w.field("deleted", true).end_object();
    api.reply_json(call, 200, std::move(w).take());
  });
}

void batches_create(Api& api, const CallPtr& call) {
  JobsService* jobs = jobs_or_reply(api, call);
  if (jobs == nullptr) return;
  element body;
  bool malformed = false;
  if (Status st = parse_json_object(call->request.body(), body, malformed); !st.is_ok()) {
    return api.reply_error(call, 400, st.message());
  }
  auto input = field(body, "input_file_id");
  if (!input || input->type() != element_type::STRING) {
    return api.reply_error(call, 400, "'input_file_id' must be a string");
  }
  jobs::NewBatch batch;
  batch.input_file_id = std::string(std::string_view(*input));
  std::string_view endpoint;
  if (Status st = read_choice(body, "endpoint", {kEndpoint}, endpoint); !st.is_ok()) {
    return api.reply_error(call, 400, st.message() + " (batches here run /v1/embeddings)");
  }
  if (endpoint.empty()) return api.reply_error(call, 400, "missing field 'endpoint'");
  batch.endpoint = std::string(endpoint);
  std::string_view window;
  if (Status st = read_choice(body, "completion_window", {"24h"}, window); !st.is_ok()) {
    return api.reply_error(call, 400, st.message());
  }
  if (window.empty()) return api.reply_error(call, 400, "missing field 'completion_window'");
  batch.completion_window = std::string(window);
  if (auto metadata = field(body, "metadata");
      metadata && metadata->type() != element_type::NULL_VALUE) {
    if (metadata->type() != element_type::OBJECT) {
      return api.reply_error(call, 400, "'metadata' must be an object of strings");
    }
    size_t n = 0;
    for (auto [key, value] : simdjson::dom::object(*metadata)) {
      if (value.type() != element_type::STRING || key.size() > 64 ||
          std::string_view(value).size() > 512 || ++n > 16) {
        return api.reply_error(call, 400,
                               "'metadata': at most 16 string values, keys up to 64 and values "
                               "up to 512 characters");
      }
    }
    batch.metadata_json = simdjson::minify(*metadata);
  }
  on_jobs_thread(
      api, call, [&api, call, batch = std::move(batch)](jobs::BatchStore& store) mutable {
        JobsService& jobs = *api.jobs();
        auto content = store.file_content(batch.input_file_id);
        if (!content.is_ok()) return reply_store_error(api, call, content.status());
        if (Status st = validate_lines(*content, jobs, batch); !st.is_ok()) {
          return api.reply_error(call, 503, st.message());
        }
        auto made = store.create_batch(batch, jobs.options().expiry_s, jobs.options().max_backlog);
        if (!made.is_ok()) {
          if (made.status().code() == StatusCode::kResourceExhausted) {
            call->headers.emplace_back("Retry-After", "30");
            return api.reply_json(call, 429,
                                  error_body(Family::kOpenAi, 429, made.status().message()));
          }
          return api.reply_error(call, 503, made.status().message());
        }
        jobs.metrics().add_jobs_batches(made->status);
        api.reply_json(call, 200, batch_json(*made));
      });
}

void batches_get(Api& api, const CallPtr& call) {
  on_jobs_thread(api, call, [&api, call](jobs::BatchStore& store) {
    auto b = store.get_batch(call->params.name);
    if (!b.is_ok()) return reply_store_error(api, call, b.status());
    api.reply_json(call, 200, batch_json(*b));
  });
}

void batches_list(Api& api, const CallPtr& call) {
  std::string after;
  int64_t limit = 20;
  for (const auto& [key, param] : Api::query_params(*call)) {
    const std::string_view value = param.value_or("");
    if (key == "after") after = std::string(value);
    if (key == "limit") {
      int64_t n = 0;
      bool ok = !value.empty() && value.size() <= 4;
      for (char c : value) ok = ok && c >= '0' && c <= '9', n = n * 10 + (c - '0');
      if (!ok || n < 1 || n > 100) {
        return api.reply_error(call, 400, "'limit' must be an integer from 1 to 100");
      }
      limit = n;
    }
  }
  on_jobs_thread(api, call, [&api, call, after, limit](jobs::BatchStore& store) {
    bool has_more = false;
    auto list = store.list_batches(after, limit, has_more);
    if (!list.is_ok()) return reply_store_error(api, call, list.status());
    JsonWriter w;
    w.begin_object().field("object", "list").key("data").begin_array();
    for (const jobs::BatchRecord& b : *list) write_batch(w, b);
    w.end_array();
    for (auto [key, value] : {std::pair{"first_id", list->empty() ? nullptr : &list->front().id},
                              std::pair{"last_id", list->empty() ? nullptr : &list->back().id}}) {
      w.key(key);
      if (value == nullptr) {
        w.null();
      } else {
        w.value(*value);
      }
    }
    w.field("has_more", has_more).end_object();
    api.reply_json(call, 200, std::move(w).take());
  });
}

void batches_cancel(Api& api, const CallPtr& call) {
  on_jobs_thread(api, call, [&api, call](jobs::BatchStore& store) {
    auto b = store.cancel_batch(call->params.name);
    if (!b.is_ok()) return reply_store_error(api, call, b.status());
    api.reply_json(call, 200, batch_json(*b));
  });
}

}  // namespace tideserve::server
