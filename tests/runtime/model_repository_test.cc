// The model repository on real (tiny fixture) model directories: tideserve.json, the version
// policies, the rename convention, failures that keep the old version, explicit load / unload,
// and a version released only once no request holds it.
#include "tideserve/runtime/model_repository.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

namespace tideserve::runtime {
namespace {

namespace fs = std::filesystem;

std::string fixture() {
  const char* env = std::getenv("TIDESERVE_SOURCE_DIR");
  return std::string(env != nullptr ? env : TIDESERVE_SOURCE_DIR) +
         "/tests/fixtures/models/bert_tiny_f32";
}

class ModelRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("tideserve-repository-test-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Copies the fixture in as `name`/`version`, under a dot name first, then renamed.
  void add_version(const std::string& name, const std::string& version) {
    const fs::path tmp = root_ / name / ("." + version + ".tmp");
    fs::create_directories(tmp.parent_path());
    fs::copy(fixture(), tmp, fs::copy_options::recursive);
    fs::rename(tmp, root_ / name / version);
  }
  void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

  RepositoryOptions options(ModelControl control) {
    RepositoryOptions o;
    o.root = root_.string();
    o.control = control;
    o.memory_limit = -1;
    o.defaults.engine.threads = 1;
    o.defaults.service.task_threads = 1;
    return o;
  }

  static Status sync(std::function<void(std::function<void(Status)>)> call) {
    std::promise<Status> done;
    call([&](Status st) { done.set_value(std::move(st)); });
    return done.get_future().get();
  }

  static std::string state(const ModelRepository& r, const std::string& name,
                           const std::string& version) {
    for (const VersionStatus& v : r.index()) {
      if (v.name == name && v.version == version) return version_state_name(v.state);
    }
    return "absent";
  }

  fs::path root_;
};

TEST(ModelConfigTest, ParsesEveryKeyAndRefusesUnknownOnes) {
  auto c = parse_model_config(R"({"version_policy": {"latest": {"num_versions": 2}},
      "pooling": "mean", "dtype": "int8", "max_input_length": 64, "max_batch_tokens": 512,
      "max_batch_requests": 8, "max_concurrent_requests": 16})",
                              "m/tideserve.json");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->policy.kind, VersionPolicy::Kind::kLatest);
  EXPECT_EQ(c->policy.num_versions, 2);
  EXPECT_EQ(*c->pooling, Pooling::kMean);
  EXPECT_EQ(*c->precision, Precision::kInt8);
  EXPECT_EQ(*c->max_input_length, 64);
  EXPECT_EQ(*c->max_batch_tokens, 512);
  EXPECT_EQ(*c->max_batch_requests, 8);
  EXPECT_EQ(*c->max_concurrent_requests, 16);
  c = parse_model_config(R"({"version_policy": {"specific": {"versions": [1, 3]}}})", "x");
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->policy.versions, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(parse_model_config(R"({"version_policy": {"all": {}}})", "x")->policy.kind,
            VersionPolicy::Kind::kAll);
  EXPECT_EQ(parse_model_config("{}", "x")->policy.num_versions, 1);

  for (const char* bad :
       {R"({"pooling": "avg"})", R"({"dtype": "fp8"})", R"({"max_input_length": 0})",
        R"({"version_policy": {"newest": {}}})", R"({"version_policy": {}})",
        R"({"version_policy": {"specific": {"versions": []}}})",
        R"({"version_policy": {"latest": {"num_versions": -1}}})", R"({"max_batch_token": 4})",
        "[1]", "{"}) {
    auto r = parse_model_config(bad, "m/tideserve.json");
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("m/tideserve.json"), std::string::npos)
        << r.status().message();
  }
  EXPECT_NE(parse_model_config(R"({"max_batch_token": 4})", "x")
                .status()
                .message()
                .find("max_batch_token"),
            std::string::npos);
}

TEST(ModelConfigTest, VersionNumbersArePositiveIntegersOfAtMost18Digits) {
  EXPECT_EQ(parse_version_number("7"), 7);
  EXPECT_EQ(parse_version_number("010"), 10);
  EXPECT_EQ(parse_version_number("999999999999999999"), 999999999999999999);
  for (const char* bad : {"", "0", "00", "-1", "v2", "2a", ".3.tmp", "1234567890123456789"}) {
    EXPECT_FALSE(parse_version_number(bad)) << bad;
  }
}

TEST_F(ModelRepositoryTest, LatestPolicyServesTheHighestVersionsAndIgnoresDotNames) {
  add_version("m", "2");
  add_version("m", "10");  // numeric order: 10 > 2
  fs::copy(fixture(), root_ / "m" / ".11.tmp-partial", fs::copy_options::recursive);
  fs::create_directories(root_ / "m" / "notaversion");
  ModelRepository r(options(ModelControl::kNone));
  ASSERT_TRUE(r.start().is_ok());
  auto found = r.find("m");
  ASSERT_TRUE(found.is_ok()) << found.status().to_string();
  EXPECT_EQ((*found)->info().version, "10");
  EXPECT_EQ(state(r, "m", "2"), "UNAVAILABLE");
  EXPECT_EQ(state(r, "m", "11"), "absent");
  EXPECT_EQ(r.find("m", "2").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.find("other").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.default_model(), "m");
  EXPECT_TRUE(r.ready());
  // none: the API changes nothing.
  EXPECT_EQ(sync([&](auto done) { r.load("m", done); }).code(), StatusCode::kFailedPrecondition);
}

TEST_F(ModelRepositoryTest, APinnedVersionOverridesThePolicy) {
  add_version("m", "1");
  add_version("m", "2");
  add_version("m", "3");
  write(root_ / "m" / "tideserve.json", R"({"version_policy": {"all": {}}})");
  RepositoryOptions o = options(ModelControl::kPoll);
  o.pinned_versions["m"] = 2;
  ModelRepository r(o);
  ASSERT_TRUE(r.start().is_ok());
  ASSERT_EQ(r.served().size(), 1u);
  EXPECT_EQ(r.served()[0].versions, (std::vector<std::string>{"2"}));
  EXPECT_EQ(state(r, "m", "3"), "UNAVAILABLE");
}

TEST_F(ModelRepositoryTest, AllPolicyAndTideserveJsonOverrides) {
  add_version("m", "1");
  add_version("m", "2");
  write(root_ / "m" / "tideserve.json",
        R"({"version_policy": {"all": {}}, "pooling": "mean", "max_input_length": 32})");
  ModelRepository r(options(ModelControl::kNone));
  ASSERT_TRUE(r.start().is_ok());
  for (const char* v : {"1", "2"}) {
    auto found = r.find("m", v);
    ASSERT_TRUE(found.is_ok()) << v;
    EXPECT_EQ((*found)->info().pooling, Pooling::kMean);
    EXPECT_EQ((*found)->info().pooling_source, "--pooling");
    EXPECT_EQ((*found)->info().max_input_length, 32);
  }
  ASSERT_EQ(r.served().size(), 1u);
  EXPECT_EQ(r.served()[0].versions, (std::vector<std::string>{"1", "2"}));
}

TEST_F(ModelRepositoryTest, ABrokenNewestVersionFallsBackAndABrokenConfigKeepsServing) {
  add_version("m", "1");
  add_version("m", "2");
  fs::remove(root_ / "m" / "2" / "model.safetensors");
  ModelRepository r(options(ModelControl::kExplicit));
  ASSERT_TRUE(r.start().is_ok());
  auto found = r.find("m");
  ASSERT_TRUE(found.is_ok());
  EXPECT_EQ((*found)->info().version, "1");
  for (const VersionStatus& v : r.index()) {
    if (v.version != "2") continue;
    EXPECT_EQ(v.load_failures, 1);
    EXPECT_NE(v.reason.find("model.safetensors"), std::string::npos) << v.reason;
  }
  // A broken tideserve.json: the load fails with its reason, version 1 keeps serving.
  write(root_ / "m" / "tideserve.json", R"({"pooling": 3})");
  Status st = sync([&](auto done) { r.load("m", done); });
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("tideserve.json"), std::string::npos);
  EXPECT_TRUE(r.find("m").is_ok());
  EXPECT_EQ(sync([&](auto done) { r.load("nope", done); }).code(), StatusCode::kNotFound);
}

TEST_F(ModelRepositoryTest, UnloadReleasesAVersionOnlyWhenNoRequestHoldsIt) {
  add_version("a", "1");
  add_version("b", "1");
  ModelRepository r(options(ModelControl::kExplicit));
  ASSERT_TRUE(r.start().is_ok());
  EXPECT_EQ(r.find("").status().code(), StatusCode::kInvalidArgument);  // two, no default
  auto held = r.find("b");
  ASSERT_TRUE(held.is_ok());
  std::weak_ptr<EmbeddingService> watch = *held;
  ASSERT_TRUE(sync([&](auto done) { r.unload("b", done); }).is_ok());
  EXPECT_EQ(r.find("b").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(r.find("a").is_ok());
  EXPECT_EQ(state(r, "b", "1"), "UNAVAILABLE");
  // The request holding b still runs on it.
  EmbedRequest request;
  request.inputs.push_back(EmbedInput::from_text("hello"));
  std::promise<Result<EmbedResult>> answer;
  (*held)->embed(std::move(request), CancelToken(),
                 [&](Result<EmbedResult> res) { answer.set_value(std::move(res)); });
  EXPECT_TRUE(answer.get_future().get().is_ok());
  held = Result<std::shared_ptr<EmbeddingService>>(unavailable("dropped"));
  for (int i = 0; i < 500 && !watch.expired(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(watch.expired()) << "the unloaded version was not released";
  ASSERT_TRUE(sync([&](auto done) { r.load("b", done); }).is_ok());
  EXPECT_TRUE(r.find("b").is_ok());
  EXPECT_TRUE(r.drain(std::chrono::seconds(10)));
}

TEST_F(ModelRepositoryTest, OneModelModeServesTheDirectoryAtItsVersion) {
  RepositoryOptions o = options(ModelControl::kNone);
  o.root.clear();
  o.defaults.model_dir = fixture();
  o.defaults.version = "v7";
  ModelRepository r(o);
  ASSERT_TRUE(r.start().is_ok());
  auto found = r.find("");
  ASSERT_TRUE(found.is_ok());
  EXPECT_EQ((*found)->info().name, "bert_tiny_f32");
  EXPECT_EQ((*found)->info().version, "v7");
  o.defaults.model_dir = (root_ / "missing").string();
  ModelRepository broken(o);
  EXPECT_FALSE(broken.start().is_ok());
}

TEST_F(ModelRepositoryTest, TheMemoryLimitRefusesALoadWithTheReason) {
  add_version("m", "1");
  RepositoryOptions o = options(ModelControl::kNone);
  o.memory_limit = 1 << 20;
  ModelRepository r(o);
  ASSERT_TRUE(r.start().is_ok());
  std::string reason;
  EXPECT_FALSE(r.ready(&reason));
  EXPECT_NE(reason.find("--memory-limit"), std::string::npos) << reason;
  EXPECT_EQ(r.find("m").status().code(), StatusCode::kUnavailable);
}

TEST_F(ModelRepositoryTest, PollPicksUpNewModelsAndUnloadsRemovedOnes) {
  add_version("a", "1");
  RepositoryOptions o = options(ModelControl::kPoll);
  o.poll_seconds = 0.05;
  ModelRepository r(o);
  ASSERT_TRUE(r.start().is_ok());
  auto held = r.find("a");
  ASSERT_TRUE(held.is_ok());
  std::weak_ptr<EmbeddingService> watch = *held;
  add_version("b", "3");
  auto wait_for = [&](auto done) {
    for (int i = 0; i < 1000 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  };
  EXPECT_TRUE(wait_for([&] { return r.find("b").is_ok(); }));
  fs::remove_all(root_ / "a");
  EXPECT_TRUE(wait_for([&] { return r.find("a").status().code() == StatusCode::kNotFound; }));
  EXPECT_TRUE(r.find("b").is_ok());
  EXPECT_FALSE(watch.expired());  // still held by this "request"
  held = Result<std::shared_ptr<EmbeddingService>>(unavailable("dropped"));
  EXPECT_TRUE(wait_for([&] { return watch.expired(); }));
}

}  // namespace
}  // namespace tideserve::runtime
