// The scoring jobs of classifier and reranker models:
//   POST /rerank     TEI's shape (TEI family errors)
//   POST /v1/rerank  the Cohere / Jina shape (OpenAI-family errors: every invalid request is 400)
//   POST /classify   Infinity's shape (OpenAI-family errors)
#include <algorithm>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "tideserve/server/api.h"
#include "tideserve/server/json_writer.h"
#include "tideserve/util/clock.h"

namespace tideserve::server {

namespace {

// "<prefix>-<32 hex digits>": an id for an answer, unique enough for logs and clients.
std::string answer_id(std::string_view prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}-{:016x}{:016x}", prefix, rng(), rng());
}

// Indices of `scores` from the highest score down (ties keep input order).
std::vector<size_t> by_score(std::span<const float> scores) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  return order;
}

Status read_query(element body, std::string& query) {
  auto v = field(body, "query");
  if (!v) return invalid_argument("missing field 'query'");
  if (v->type() != element_type::STRING) {
    return invalid_argument(std::string("'query' must be a string, not ") + type_name(v->type()));
  }
  query = std::string(std::string_view(*v));
  if (query.empty()) return invalid_argument("'query' is an empty string");
  return Status::ok();
}

Status check_documents(const std::vector<std::string>& documents, std::string_view key) {
  for (size_t i = 0; i < documents.size(); ++i) {
    if (documents[i].empty())
      return invalid_argument(fmt::format("{}[{}] is an empty string", key, i));
  }
  return Status::ok();
}

// {"query", "texts": [str], "raw_scores": false, "return_text": false, "truncate": false,
//  "truncation_direction": "Right"}
Status parse_tei_rerank(element body, int64_t max_inputs, runtime::RerankRequest& request,
                        bool& return_text) {
  TS_RETURN_IF_ERROR(read_query(body, request.query));
  TS_RETURN_IF_ERROR(read_text_inputs(body, "texts", max_inputs, request.documents));
  TS_RETURN_IF_ERROR(check_documents(request.documents, "texts"));
  TS_RETURN_IF_ERROR(read_bool(body, "raw_scores", request.raw_scores));
  TS_RETURN_IF_ERROR(read_bool(body, "return_text", return_text));
  return read_truncation(body, false, request.truncation);
}

struct V1RerankRequest {
  runtime::RerankRequest rerank;
  int64_t top_n = 0;  // 0: all
  bool return_documents = false;
};

// {"model"?, "query", "documents": [str | {"text": str}], "top_n"?, "return_documents": false,
//  "truncate": true}. Documents over the length limit are cut unless "truncate" is false (Cohere's
// API truncates long documents; its clients send no such field).
Status parse_v1_rerank(element body, int64_t max_inputs, V1RerankRequest& request) {
  TS_RETURN_IF_ERROR(read_query(body, request.rerank.query));
  auto docs = field(body, "documents");
  if (!docs) return invalid_argument("missing field 'documents'");
  if (docs->type() != element_type::ARRAY) {
    return invalid_argument(std::string("'documents' must be a list of strings or {\"text\"} "
                                        "objects, not ") +
                            type_name(docs->type()));
  }
  std::vector<std::string>& documents = request.rerank.documents;
  for (element item : simdjson::dom::array(*docs)) {
    if (item.type() == element_type::STRING) {
      documents.emplace_back(std::string_view(item));
      continue;
    }
    auto text = item.type() == element_type::OBJECT ? field(item, "text") : std::nullopt;
    if (!text || text->type() != element_type::STRING) {
      return invalid_argument(fmt::format(
          "documents[{}] must be a string or an object with a string 'text'", documents.size()));
    }
    documents.emplace_back(std::string_view(*text));
  }
  if (documents.empty()) return invalid_argument("'documents' is an empty list");
  TS_RETURN_IF_ERROR(check_input_count(documents.size(), max_inputs));
  TS_RETURN_IF_ERROR(check_documents(documents, "documents"));
  if (auto v = field(body, "top_n"); v && v->type() != element_type::NULL_VALUE) {
    const auto count = static_cast<int64_t>(documents.size());
    if (v->type() != element_type::INT64 || int64_t(*v) < 1 || int64_t(*v) > count) {
      return invalid_argument(
          fmt::format("'top_n' must be an integer from 1 to the number of documents ({})", count));
    }
    request.top_n = int64_t(*v);
  }
  TS_RETURN_IF_ERROR(read_bool(body, "return_documents", request.return_documents));
  TS_RETURN_IF_ERROR(read_bool(body, "raw_scores", request.rerank.raw_scores));
  return read_truncation(body, true, request.rerank.truncation);
}

struct ClassifyRequest {
  runtime::ScoreRequest score;
  std::vector<size_t> labels;  // the label ids to answer; empty: all
};

// {"input": str | [str], "model"?, "raw_scores": false, "labels"?: [str], "truncate": false}
Status parse_classify(element body, int64_t max_inputs, const std::vector<std::string>& labels,
                      ClassifyRequest& request) {
  std::vector<std::string> texts;
  TS_RETURN_IF_ERROR(read_text_inputs(body, "input", max_inputs, texts));
  for (std::string& text : texts) {
    request.score.inputs.push_back(runtime::EmbedInput::from_text(std::move(text)));
  }
  TS_RETURN_IF_ERROR(read_bool(body, "raw_scores", request.score.raw_scores));
  if (auto v = field(body, "labels"); v && v->type() != element_type::NULL_VALUE) {
    std::vector<std::string> wanted;
    TS_RETURN_IF_ERROR(
        read_text_inputs(body, "labels", static_cast<int64_t>(labels.size()) + 1, wanted));
    for (const std::string& name : wanted) {
      const auto it = std::find(labels.begin(), labels.end(), name);
      if (it == labels.end()) {
        return invalid_argument(fmt::format("unknown label '{}'; the model's labels are {}", name,
                                            fmt::join(labels, ", ")));
      }
      request.labels.push_back(static_cast<size_t>(it - labels.begin()));
    }
  }
  return read_truncation(body, false, request.score.truncation);
}

}  // namespace

void tei_rerank(Api& api, const CallPtr& call) {
  runtime::RerankRequest request;
  bool return_text = false;
  if (Status st =
          parse_tei_rerank(call->body, api.options().max_client_batch_size, request, return_text);
      !st.is_ok()) {
    return api.reply_status(call, st);
  }
  // The texts outlive the request only when the answer carries them.
  std::vector<std::string> texts;
  if (return_text) texts = request.documents;
  api.rerank(call, std::move(request),
             [&api, texts = std::move(texts)](const CallPtr& c, runtime::ScoreResult&& r) {
               JsonWriter w;
               w.begin_array();
               for (size_t i : by_score(r.scores)) {
                 w.begin_object().field("index", i).field("score", r.scores[i]);
                 if (!texts.empty()) w.field("text", texts[i]);
                 w.end_object();
               }
               w.end_array();
               api.reply_json(c, 200, std::move(w).take());
             });
}

void v1_rerank(Api& api, const CallPtr& call) {
  V1RerankRequest request;
  if (Status st = parse_v1_rerank(call->body, api.options().max_client_batch_size, request);
      !st.is_ok()) {
    return api.reply_status(call, st);
  }
  std::vector<std::string> documents;
  if (request.return_documents) documents = request.rerank.documents;
  api.rerank(call, std::move(request.rerank),
             [&api, documents = std::move(documents), top_n = request.top_n](
                 const CallPtr& c, runtime::ScoreResult&& r) {
               std::vector<size_t> order = by_score(r.scores);
               if (top_n > 0) order.resize(static_cast<size_t>(top_n));
               JsonWriter w;
               w.begin_object().field("id", answer_id("rerank"));
               w.field("model", c->service().info().name);
               w.key("results").begin_array();
               for (size_t i : order) {
                 w.begin_object().field("index", i).field("relevance_score", r.scores[i]);
                 if (!documents.empty()) {
                   w.key("document").begin_object().field("text", documents[i]).end_object();
                 }
                 w.end_object();
               }
               w.end_array();
               write_usage(w, r.prompt_tokens);
               w.key("meta").begin_object().key("billed_units").begin_object();
               w.field("search_units", 1).end_object().end_object();
               w.end_object();
               api.reply_json(c, 200, std::move(w).take());
             });
}

void classify(Api& api, const CallPtr& call) {
  ClassifyRequest request;
  if (Status st = parse_classify(call->body, api.options().max_client_batch_size,
                                 call->service().info().labels, request);
      !st.is_ok()) {
    return api.reply_status(call, st);
  }
  api.classify(
      call, std::move(request.score),
      [&api, wanted = std::move(request.labels)](const CallPtr& c, runtime::ScoreResult&& r) {
        const std::vector<std::string>& labels = c->service().info().labels;
        const int64_t created = unix_seconds();
        JsonWriter w;
        w.begin_object().field("object", "classify").key("data").begin_array();
        for (size_t i = 0; i < r.size(); ++i) {
          std::span<const float> row = r.row(i);
          w.begin_array();
          for (size_t label : by_score(row)) {
            if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), label) == wanted.end()) {
              continue;
            }
            w.begin_object().field("score", row[label]).field("label", labels[label]).end_object();
          }
          w.end_array();
        }
        w.end_array().field("model", c->service().info().name);
        write_usage(w, r.prompt_tokens);
        w.field("id", answer_id("classify")).field("created", created).end_object();
        api.reply_json(c, 200, std::move(w).take());
      });
}

}  // namespace tideserve::server
