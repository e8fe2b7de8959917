// The OpenAI embeddings request and answer, shared by POST /v1/embeddings and the batch worker
// (whose lines carry the same bodies and whose output lines carry the same answers).
#pragma once

#include <cstdint>
#include <string>

#include "tideserve/runtime/embedding_service.h"
#include "tideserve/server/request_json.h"

namespace tideserve::server {

struct EmbeddingsRequest {
  runtime::EmbedRequest embed;
  bool base64 = false;
};

// {"input", "model"?, "encoding_format"?, "dimensions"?, "prompt_name"?, "prompt"?, "chunking"?}
// with at most `max_inputs` inputs; the model is chosen by the caller.
Status parse_embeddings(element body, int64_t max_inputs, EmbeddingsRequest& request);

// The answer's JSON: {"object": "list", "data": [...], "model", "usage"}.
std::string embeddings_json(const runtime::EmbedResult& result, bool base64,
                            const std::string& model);

}  // namespace tideserve::server
