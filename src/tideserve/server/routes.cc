#include "tideserve/server/routes.h"

#include <boost/beast/http/verb.hpp>

namespace tideserve::server {

namespace {

using boost::beast::http::verb;

// Splits off the next '/'-separated segment of `path` (which starts with '/').
bool next_segment(std::string_view& path, std::string_view& segment) {
  if (path.empty() || path.front() != '/') return false;
  path.remove_prefix(1);
  const size_t end = path.find('/');
  segment = path.substr(0, end);
  path = end == std::string_view::npos ? std::string_view() : path.substr(end);
  return true;
}

// `pattern` segments are literal or {param}; a parameter matches one non-empty segment.
bool matches(std::string_view pattern, std::string_view path, RouteParams& params) {
  std::string_view want, got;
  RouteParams found;
  while (next_segment(pattern, want)) {
    if (!next_segment(path, got)) return false;
    if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
      if (got.empty()) return false;
      (want == "{version}" ? found.version : found.name) = std::string(got);
    } else if (want != got) {
      return false;
    }
  }
  if (!path.empty()) return false;
  params = std::move(found);
  return true;
}

}  // namespace

RouteTable::Match RouteTable::match(verb method, std::string_view path) const {
  Match m;
  for (const Route& route : routes_) {
    RouteParams params;
    if (!matches(route.pattern, path, params)) continue;
    if (route.method == method || (route.method == verb::get && method == verb::head)) {
      m.route = &route;
      m.params = std::move(params);
      m.allow.clear();
      return m;
    }
    if (m.allow.empty()) m.family = route.family;
    if (!m.allow.empty()) m.allow += ", ";
    m.allow += std::string(boost::beast::http::to_string(route.method));
  }
  return m;
}

const RouteTable& api_routes() {
  // {method, pattern, family, auth, model, handler[, multipart]}
  static const RouteTable table({
      {verb::get, "/health", Family::kSeed, Auth::kNone, false, seed_health},
      {verb::post, "/predict", Family::kSeed, Auth::kApi, true, seed_predict},
      {verb::post, "/embed", Family::kTei, Auth::kApi, true, tei_embed},
      {verb::post, "/tokenize", Family::kTei, Auth::kApi, true, tei_tokenize},
      {verb::get, "/info", Family::kTei, Auth::kNone, false, tei_info},
      {verb::post, "/v1/embeddings", Family::kOpenAi, Auth::kApi, true, openai_embeddings},
      {verb::get, "/v1/models", Family::kOpenAi, Auth::kApi, false, openai_models},
      {verb::post, "/rerank", Family::kTei, Auth::kApi, true, tei_rerank},
      {verb::post, "/v1/rerank", Family::kOpenAi, Auth::kApi, true, v1_rerank},
      {verb::post, "/classify", Family::kOpenAi, Auth::kApi, true, classify},
      {verb::get, "/v2", Family::kKServe, Auth::kNone, false, kserve_server_metadata},
      {verb::get, "/v2/health/live", Family::kKServe, Auth::kNone, false, kserve_live},
      {verb::get, "/v2/health/ready", Family::kKServe, Auth::kNone, false, kserve_ready},
      {verb::get, "/v2/models/{name}", Family::kKServe, Auth::kNone, false, kserve_model_metadata},
      {verb::get, "/v2/models/{name}/versions/{version}", Family::kKServe, Auth::kNone, false,
       kserve_model_metadata},
      {verb::get, "/v2/models/{name}/ready", Family::kKServe, Auth::kNone, false,
       kserve_model_ready},
      {verb::get, "/v2/models/{name}/versions/{version}/ready", Family::kKServe, Auth::kNone, false,
       kserve_model_ready},
      {verb::post, "/v2/models/{name}/infer", Family::kKServe, Auth::kApi, true, kserve_infer},
      {verb::post, "/v2/models/{name}/versions/{version}/infer", Family::kKServe, Auth::kApi, true,
       kserve_infer},
      {verb::post, "/v2/repository/index", Family::kKServe, Auth::kAdmin, false, repository_index},
      {verb::post, "/v2/repository/models/{name}/load", Family::kKServe, Auth::kAdmin, false,
       repository_load},
      {verb::post, "/v2/repository/models/{name}/unload", Family::kKServe, Auth::kAdmin, false,
       repository_unload},
      {verb::post, "/v1/files", Family::kOpenAi, Auth::kApi, false, files_create, true},
      {verb::get, "/v1/files/{name}", Family::kOpenAi, Auth::kApi, false, files_get},
      {verb::delete_, "/v1/files/{name}", Family::kOpenAi, Auth::kApi, false, files_delete},
      {verb::get, "/v1/files/{name}/content", Family::kOpenAi, Auth::kApi, false, files_content},
      {verb::post, "/v1/batches", Family::kOpenAi, Auth::kApi, false, batches_create},
      {verb::get, "/v1/batches", Family::kOpenAi, Auth::kApi, false, batches_list},
      {verb::get, "/v1/batches/{name}", Family::kOpenAi, Auth::kApi, false, batches_get},
      {verb::post, "/v1/batches/{name}/cancel", Family::kOpenAi, Auth::kApi, false, batches_cancel},
      {verb::get, "/metrics", Family::kPlain, Auth::kNone, false, metrics_route},
  });
  return table;
}

}  // namespace tideserve::server
