// The model repository's own concurrency, with a fake engine (so it runs under ThreadSanitizer):
// clients keep finding the model and embedding on the version they got while new versions are
// published and old ones retired, released and destroyed by the control thread. Every answer
// must come from a version that was serving when it was found, each client must only move
// forward, and every retired version must be destroyed once its last holder lets go.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

#include "tideserve/runtime/model_repository.h"

namespace tideserve::runtime {
namespace {

namespace fs = std::filesystem;

std::string source_dir() {
  const char* env = std::getenv("TIDESERVE_SOURCE_DIR");
  return env != nullptr ? env : TIDESERVE_SOURCE_DIR;
}

// Writes its version into every row: an answer tells which version computed it.
class VersionRunner : public BatchRunner {
 public:
  explicit VersionRunner(float version) : version_(version) {}
  Status run(const BatchInput& batch, BatchOutput& output) override {
    const size_t n = batch.cu_seqlens.size() - 1;
    output.hidden_size = 2;
    output.pooled.assign(2 * n, version_);
    return Status::ok();
  }
  int64_t output_size() const override { return 2; }

 private:
  float version_;
};

// What a fake version owns; the service aliases it, as a model instance's does.
struct FakeVersion {
  std::unique_ptr<VersionRunner> runner;
  std::unique_ptr<EmbeddingService> service;
  ~FakeVersion() {
    service.reset();  // before the runner it runs on
  }
};

std::atomic<int> alive{0};  // fake versions not yet destroyed

struct CountedVersion : FakeVersion {
  CountedVersion() { ++alive; }
  ~CountedVersion() { --alive; }
};

class RepositorySwapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tokenizer = text::Tokenizer::load(source_dir() + "/models/tideserve-tiny-zh");
    ASSERT_TRUE(tokenizer.is_ok()) << tokenizer.status().to_string();
    tokenizer_ = std::shared_ptr<text::Tokenizer>(std::move(tokenizer).value());
    root_ = fs::temp_directory_path() / ("tideserve-swap-test-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "m" / "1");
  }
  void TearDown() override { fs::remove_all(root_); }

  RepositoryOptions options() {
    RepositoryOptions o;
    o.root = root_.string();
    o.control = ModelControl::kPoll;
    o.poll_seconds = 0.05;
    o.memory_limit = -1;
    o.defaults.service.task_threads = 1;
    std::shared_ptr<text::Tokenizer> tokenizer = tokenizer_;
    o.loader = [tokenizer](const ModelOptions& m) -> Result<LoadedVersion> {
      auto v = std::make_shared<CountedVersion>();
      v->runner = std::make_unique<VersionRunner>(std::stof(m.version));
      ModelInfo info;
      info.name = m.name;
      info.version = m.version;
      info.vocab_size = static_cast<int64_t>(tokenizer->vocab_size());
      info.max_input_length = 32;
      v->service = std::make_unique<EmbeddingService>(*v->runner, *tokenizer, info, m.service);
      v->service->start();
      // The tokenizer outlives every version: the test holds it, and so does this loader.
      return LoadedVersion{std::shared_ptr<EmbeddingService>(v, v->service.get()), {}};
    };
    return o;
  }

  std::shared_ptr<text::Tokenizer> tokenizer_;
  fs::path root_;
};

TEST_F(RepositorySwapTest, ClientsMoveForwardAndRetiredVersionsAreDestroyed) {
  constexpr int kVersions = 6;
  {
    ModelRepository repository(options());
    ASSERT_TRUE(repository.start().is_ok());
    std::atomic<bool> stop{false};
    std::atomic<int> failures{0}, answers{0};
    auto client = [&] {
      float last = 0;
      while (!stop.load()) {
        auto found = repository.find("m");
        if (!found.is_ok()) {
          ++failures;
          continue;
        }
        const float version = std::stof((*found)->info().version);
        EmbedRequest request;
        request.inputs.push_back(EmbedInput::from_text("hello"));
        std::promise<Result<EmbedResult>> done;
        (*found)->embed(std::move(request), CancelToken(),
                        [&](Result<EmbedResult> r) { done.set_value(std::move(r)); });
        Result<EmbedResult> r = done.get_future().get();
        if (!r.is_ok() || r->embeddings.at(0) != version || version < last) {
          ++failures;
        } else {
          ++answers;
        }
        last = version;
      }
    };
    std::vector<std::thread> clients;
    for (int i = 0; i < 4; ++i) clients.emplace_back(client);
    for (int v = 2; v <= kVersions; ++v) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const fs::path tmp = root_ / "m" / ("." + std::to_string(v) + ".tmp");
      fs::create_directories(tmp);
      fs::rename(tmp, root_ / "m" / std::to_string(v));
      for (int i = 0; i < 400; ++i) {
        auto found = repository.find("m");
        if (found.is_ok() && (*found)->info().version == std::to_string(v)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    stop = true;
    for (std::thread& t : clients) t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_GT(answers.load(), 0);
    ASSERT_TRUE(repository.find("m").is_ok());
    EXPECT_EQ((*repository.find("m"))->info().version, std::to_string(kVersions));
    // Every retired version is released once no client holds it: only the newest is left.
    for (int i = 0; i < 500 && alive.load() > 1; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(alive.load(), 1);
    EXPECT_TRUE(repository.drain(std::chrono::seconds(10)));
  }
  EXPECT_EQ(alive.load(), 0);
}

}  // namespace
}  // namespace tideserve::runtime
