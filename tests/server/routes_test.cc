// The route table and the error table, without a server.
#include "tideserve/server/routes.h"

#include <gtest/gtest.h>

#include "tideserve/server/errors.h"

namespace tideserve::server {
namespace {

using boost::beast::http::verb;

TEST(RouteTableTest, MatchesPatternsWithNameAndVersion) {
  const RouteTable& routes = api_routes();
  auto m = routes.match(verb::post, "/v2/models/tiny/versions/7/infer");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->pattern, "/v2/models/{name}/versions/{version}/infer");
  EXPECT_EQ(m.params.name, "tiny");
  EXPECT_EQ(m.params.version, "7");
  m = routes.match(verb::get, "/v2/models/tiny");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->handler, &kserve_model_metadata);
  EXPECT_EQ(m.params.name, "tiny");
  EXPECT_TRUE(m.params.version.empty());
  m = routes.match(verb::post, "/embed");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->family, Family::kTei);
  EXPECT_EQ(m.route->auth, Auth::kApi);
  EXPECT_TRUE(m.route->model);
  EXPECT_EQ(routes.match(verb::get, "/health").route->auth, Auth::kNone);
  m = routes.match(verb::post, "/v2/repository/models/tiny/load");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->auth, Auth::kAdmin);
  EXPECT_EQ(m.route->handler, &repository_load);
  EXPECT_EQ(m.params.name, "tiny");
  EXPECT_EQ(routes.match(verb::post, "/v2/repository/index").route->auth, Auth::kAdmin);
}

TEST(RouteTableTest, HeadIsGetAndWrongMethodsSayWhatIsAllowed) {
  const RouteTable& routes = api_routes();
  auto m = routes.match(verb::head, "/metrics");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->method, verb::get);
  m = routes.match(verb::get, "/v2/models/tiny/infer");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allow, "POST");
  EXPECT_EQ(m.family, Family::kKServe);
  m = routes.match(verb::delete_, "/predict");
  EXPECT_EQ(m.allow, "POST");
  EXPECT_EQ(m.family, Family::kSeed);
  m = routes.match(verb::head, "/embed");  // HEAD only stands for GET
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allow, "POST");
}

TEST(RouteTableTest, UnknownPathsMatchNothing) {
  const RouteTable& routes = api_routes();
  for (const char* path :
       {"/", "/nope", "/v2/models", "/v2/models/", "/v2/models//ready", "/v2/models/tiny/bogus",
        "/v2/models/tiny/versions", "/health/", "/embed/x", "//embed", ""}) {
    auto m = routes.match(verb::get, path);
    EXPECT_EQ(m.route, nullptr) << path;
    EXPECT_TRUE(m.allow.empty()) << path;
  }
}

TEST(ErrorTableTest, StatusCodesMapPerFamily) {
  EXPECT_EQ(http_status(StatusCode::kInvalidArgument, Family::kSeed), 422);
  EXPECT_EQ(http_status(StatusCode::kInvalidArgument, Family::kTei), 422);
  EXPECT_EQ(http_status(StatusCode::kInvalidArgument, Family::kOpenAi), 400);
  EXPECT_EQ(http_status(StatusCode::kInvalidArgument, Family::kKServe), 400);
  EXPECT_EQ(http_status(StatusCode::kOutOfRange, Family::kTei), 413);
  EXPECT_EQ(http_status(StatusCode::kOutOfRange, Family::kKServe), 413);
  EXPECT_EQ(http_status(StatusCode::kOutOfRange, Family::kOpenAi), 400);
  for (Family f : {Family::kSeed, Family::kTei, Family::kOpenAi, Family::kKServe}) {
    EXPECT_EQ(http_status(StatusCode::kResourceExhausted, f), 429);
    EXPECT_EQ(http_status(StatusCode::kCancelled, f), 499);
    EXPECT_EQ(http_status(StatusCode::kUnavailable, f), 503);
    EXPECT_EQ(http_status(StatusCode::kNotFound, f), 404);
    EXPECT_EQ(http_status(StatusCode::kInternal, f), 500);
    EXPECT_EQ(http_status(StatusCode::kFailedPrecondition, f), 409);
  }
}

TEST(ErrorTableTest, BodiesHaveEachFamilysShape) {
  EXPECT_EQ(error_body(Family::kSeed, 422, "bad \"x\""), R"({"detail":"bad \"x\""})");
  EXPECT_EQ(error_body(Family::kTei, 429, "busy"), R"({"error":"busy","error_type":"Overloaded"})");
  EXPECT_EQ(error_body(Family::kTei, 503, "down"), R"({"error":"down","error_type":"Unhealthy"})");
  EXPECT_EQ(error_body(Family::kTei, 500, "oops"), R"({"error":"oops","error_type":"Backend"})");
  EXPECT_EQ(error_body(Family::kTei, 413, "long"), R"({"error":"long","error_type":"Validation"})");
  EXPECT_EQ(
      error_body(Family::kOpenAi, 401, "key"),
      R"({"error":{"message":"key","type":"authentication_error","param":null,"code":null}})");
  EXPECT_EQ(error_body(Family::kKServe, 400, "no"), R"({"error":"no"})");
  EXPECT_EQ(error_body(Family::kPlain, 404, "no route /x"), R"({"error":"no route /x"})");
}

}  // namespace
}  // namespace tideserve::server
