// OpenAI-compatible routes: POST /v1/embeddings, GET /v1/models. Every invalid request is 400.
#include <cstring>

#include <fmt/format.h>

#include "tideserve/server/api.h"
#include "tideserve/server/json_writer.h"
#include "tideserve/server/openai_embeddings.h"

namespace tideserve::server {

namespace {

Status read_ids(element list, std::vector<int32_t>& out) {
  for (element id : simdjson::dom::array(list)) {
    if (id.type() != element_type::INT64) return invalid_argument("token ids must be integers");
    const int64_t v = int64_t(id);
    if (v < 0 || v > INT32_MAX)
      return invalid_argument(fmt::format("token id {} is out of range", v));
    out.push_back(static_cast<int32_t>(v));
  }
  return Status::ok();
}

// "input": a string, a list of strings, a list of token ids, or a list of token id lists.
Status read_input(element body, std::vector<runtime::EmbedInput>& inputs) {
  auto input = field(body, "input");
  if (!input) return invalid_argument("missing field 'input'");
  if (input->type() == element_type::STRING) {
    inputs.push_back(runtime::EmbedInput::from_text(std::string(std::string_view(*input))));
    return Status::ok();
  }
  if (input->type() != element_type::ARRAY) {
    return invalid_argument(
        std::string("'input' must be a string, a list of strings or token id lists, not ") +
        type_name(input->type()));
  }
  simdjson::dom::array list(*input);
  if (list.size() == 0) return invalid_argument("'input' is an empty list");
  element first = list.at(0).value_unsafe();
  if (first.type() == element_type::INT64 || first.type() == element_type::UINT64) {
    std::vector<int32_t> ids;
    TS_RETURN_IF_ERROR(read_ids(*input, ids));
    inputs.push_back(runtime::EmbedInput::from_ids(std::move(ids)));
    return Status::ok();
  }
  for (element item : list) {
    if (item.type() == element_type::STRING) {
      inputs.push_back(runtime::EmbedInput::from_text(std::string(std::string_view(item))));
    } else if (item.type() == element_type::ARRAY) {
      std::vector<int32_t> ids;
      TS_RETURN_IF_ERROR(read_ids(item, ids));
      inputs.push_back(runtime::EmbedInput::from_ids(std::move(ids)));
    } else {
      return invalid_argument(std::string("'input' items must be strings or token id lists, not ") +
                              type_name(item.type()));
    }
  }
  return Status::ok();
}

}  // namespace

// {"input", "model"?, "encoding_format"?, "dimensions"?, "prompt_name"?, "prompt"?, "chunking"?}
Status parse_embeddings(element body, int64_t max_inputs, EmbeddingsRequest& request) {
  TS_RETURN_IF_ERROR(read_input(body, request.embed.inputs));
  TS_RETURN_IF_ERROR(check_input_count(request.embed.inputs.size(), max_inputs));
  std::string_view format = "float";
  TS_RETURN_IF_ERROR(read_choice(body, "encoding_format", {"float", "base64"}, format));
  request.base64 = format == "base64";
  TS_RETURN_IF_ERROR(read_embed_options(body, request.embed));
  TS_RETURN_IF_ERROR(read_chunking(body, request.embed));
  request.embed.normalize = true;  // OpenAI embeddings are unit vectors
  return Status::ok();
}

void openai_embeddings(Api& api, const CallPtr& call) {
  EmbeddingsRequest request;
  if (Status st = parse_embeddings(call->body, api.options().max_client_batch_size, request);
      !st.is_ok()) {
    return api.reply_status(call, st);
  }
  api.embed(call, std::move(request.embed),
            [&api, base64 = request.base64](const CallPtr& c, runtime::EmbedResult&& r) {
              api.reply_json(c, 200, embeddings_json(r, base64, c->service().info().name));
            });
}

std::string embeddings_json(const runtime::EmbedResult& r, bool base64, const std::string& model) {
  JsonWriter w;
  w.reserve(r.embeddings.size() * 12);
  w.begin_object().field("object", "list").key("data").begin_array();
  for (size_t i = 0; i < r.size(); ++i) {
    w.begin_object().field("object", "embedding").field("index", i);
    // With chunking each item is a chunk, and says where it lies.
    if (!r.chunks.empty()) write_chunk_span(w, r.chunks[i]);
    w.key("embedding");
    std::span<const float> row = r.row(i);
    if (base64) {
      std::vector<uint8_t> bytes(row.size() * sizeof(float));
      std::memcpy(bytes.data(), row.data(), bytes.size());
      w.value(base64_encode(bytes));
    } else {
      w.floats(row);
    }
    w.end_object();
  }
  w.end_array().field("model", model);
  if (r.num_documents() > 0) {
    w.key("documents").begin_array();
    for (size_t d = 0; d < r.num_documents(); ++d) {
      w.begin_object().field("index", d).key("embedding").floats(r.document_row(d));
      w.end_object();
    }
    w.end_array();
  }
  write_usage(w, r.prompt_tokens);
  w.end_object();
  return std::move(w).take();
}

// Every model with a version serving: "name" (its newest version) and, when it serves several,
// "name:version" for each.
void openai_models(Api& api, const CallPtr& call) {
  std::vector<runtime::ServedModel> models;
  if (const runtime::ModelRepository* repository = api.repository()) models = repository->served();
  JsonWriter w;
  w.begin_object().field("object", "list").key("data").begin_array();
  auto entry = [&w](const std::string& id) {
    w.begin_object().field("id", id).field("object", "model");
    w.field("created", 0).field("owned_by", "tideserve").end_object();
  };
  for (const runtime::ServedModel& m : models) {
    entry(m.name);
    if (m.versions.size() > 1) {
      for (const std::string& version : m.versions) entry(m.name + ":" + version);
    }
  }
  w.end_array().end_object();
  api.reply_json(call, 200, std::move(w).take());
}

}  // namespace tideserve::server
