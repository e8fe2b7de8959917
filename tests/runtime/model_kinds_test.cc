// Every model kind tideserve serves, loaded by ModelInstance and run through the core service,
// against the golden.json of each directory in tests/fixtures/kinds (written by
// tools/make_fixture_model.py from a float64 torch reference of sentence-transformers' and
// transformers' documented semantics). And the directories it must refuse, each with a message
// naming what it found.
#include "tideserve/runtime/model_instance.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "tideserve/engine/pooling.h"

namespace tideserve::runtime {
namespace {

namespace fs = std::filesystem;
using simdjson::dom::array;
using simdjson::dom::element;

// fp32 engine against the float64 reference.
constexpr double kTolerance = 1e-4;

fs::path source_dir() {
  const char* env = std::getenv("TIDESERVE_SOURCE_DIR");
  return env != nullptr ? env : TIDESERVE_SOURCE_DIR;
}

fs::path kinds_dir() {
  return source_dir() / "tests/fixtures/kinds";
}

std::vector<double> numbers(element list) {
  std::vector<double> out;
  for (element v : array(list)) out.push_back(double(v));
  return out;
}

std::vector<std::string> strings(element list) {
  std::vector<std::string> out;
  for (element v : array(list)) out.emplace_back(std::string_view(v));
  return out;
}

double max_abs_diff(std::span<const float> got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    worst = std::max(worst, std::fabs(got[i] - want[i]));
  }
  return worst;
}

std::unique_ptr<ModelInstance> load(const fs::path& dir) {
  ModelOptions options;
  options.model_dir = dir.string();
  options.warm_up = false;
  options.engine.threads = 1;
  options.service.task_threads = 1;
  auto instance = ModelInstance::load(options);
  EXPECT_TRUE(instance.is_ok()) << dir << ": " << instance.status().to_string();
  return instance.is_ok() ? std::move(instance).value() : nullptr;
}

Result<EmbedResult> embed(EmbeddingService& service, EmbedRequest request) {
  std::promise<Result<EmbedResult>> answer;
  service.embed(std::move(request), CancelToken(),
                [&](Result<EmbedResult> r) { answer.set_value(std::move(r)); });
  return answer.get_future().get();
}

template <typename Request, typename Method>
Result<ScoreResult> score(EmbeddingService& service, Request request, Method method) {
  std::promise<Result<ScoreResult>> answer;
  (service.*method)(std::move(request), CancelToken(),
                    [&](Result<ScoreResult> r) { answer.set_value(std::move(r)); });
  return answer.get_future().get();
}

class GoldenKindsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = kinds_dir() / GetParam();
    ASSERT_EQ(parser_.load((dir_ / "golden.json").string()).get(golden_), simdjson::SUCCESS);
    instance_ = load(dir_);
    ASSERT_NE(instance_, nullptr);
  }

  std::string kind() const { return std::string(std::string_view(golden_["kind"])); }

  fs::path dir_;
  simdjson::dom::parser parser_;
  element golden_;
  std::unique_ptr<ModelInstance> instance_;
};

TEST_P(GoldenKindsTest, InfoSaysWhatTheDirectoryDeclares) {
  const ModelInfo& info = instance_->info();
  EXPECT_EQ(model_kind_name(info.kind), kind());
  EXPECT_EQ(info.hidden_size, int64_t(golden_["hidden_size"]));
  EXPECT_EQ(info.output_size, int64_t(golden_["output_size"]));
  element labels;
  if (golden_["labels"].get(labels) == simdjson::SUCCESS) {
    EXPECT_EQ(info.labels, strings(labels));
  }
  int64_t max_seq_length = 0;
  if (golden_["max_seq_length"].get(max_seq_length) == simdjson::SUCCESS) {
    EXPECT_EQ(info.max_input_length, max_seq_length);
  }
  if (info.kind == ModelKind::kEmbedding) {
    // Every fixture declares its pooling; the source names the file.
    EXPECT_NE(info.pooling_source.find("1_Pooling/config.json"), std::string::npos)
        << info.pooling_source;
  }
}

TEST_P(GoldenKindsTest, EveryCaseMatchesTheTorchReference) {
  EmbeddingService& service = instance_->service();
  const std::string k = kind();
  for (element c : array(golden_["cases"])) {
    const std::string name{std::string_view(c["name"])};
    std::vector<std::string> texts = strings(c["texts"]);
    std::vector<std::vector<double>> want;
    for (element row : array(c["outputs"])) want.push_back(numbers(row));
    std::vector<int64_t> token_counts;
    for (element ids : array(c["input_ids"])) token_counts.push_back(int64_t(array(ids).size()));
    if (k == "embedding") {
      EmbedRequest request;
      for (const std::string& t : texts) request.inputs.push_back(EmbedInput::from_text(t));
      std::string_view prompt_name;
      if (c["prompt_name"].get(prompt_name) == simdjson::SUCCESS) {
        request.prompt_name = std::string(prompt_name);
      }
      auto r = embed(service, request);
      ASSERT_TRUE(r.is_ok()) << name << ": " << r.status().to_string();
      EXPECT_EQ(r->token_counts, token_counts) << name;
      for (size_t i = 0; i < texts.size(); ++i) {
        EXPECT_LE(max_abs_diff(r->row(i), want[i]), kTolerance) << name << " input " << i;
      }
      // Matryoshka: the first 8 components, renormalized.
      request.dimensions = 8;
      request.normalize = true;
      auto cut = embed(service, request);
      ASSERT_TRUE(cut.is_ok()) << cut.status().to_string();
      ASSERT_EQ(cut->hidden_size, 8);
      for (size_t i = 0; i < texts.size(); ++i) {
        std::vector<double> head(want[i].begin(), want[i].begin() + 8);
        double norm = 0;
        for (double v : head) norm += v * v;
        for (double& v : head) v /= std::sqrt(norm);
        EXPECT_LE(max_abs_diff(cut->row(i), head), kTolerance) << name << " dimensions 8";
      }
    } else if (k == "classifier") {
      ScoreRequest request;
      for (const std::string& t : texts) request.inputs.push_back(EmbedInput::from_text(t));
      request.raw_scores = true;
      auto raw = score(service, request, &EmbeddingService::classify);
      ASSERT_TRUE(raw.is_ok()) << raw.status().to_string();
      EXPECT_EQ(raw->token_counts, token_counts) << name;
      request.raw_scores = false;
      auto probs = score(service, request, &EmbeddingService::classify);
      ASSERT_TRUE(probs.is_ok()) << probs.status().to_string();
      size_t i = 0;
      for (element row : array(c["probabilities"])) {
        EXPECT_LE(max_abs_diff(raw->row(i), want[i]), kTolerance) << name << " logits " << i;
        EXPECT_LE(max_abs_diff(probs->row(i), numbers(row)), kTolerance) << name << " " << i;
        ++i;
      }
    } else {
      ASSERT_EQ(k, "reranker");
      RerankRequest request;
      request.query = std::string(std::string_view(c["query"]));
      request.documents = texts;
      request.raw_scores = true;
      auto raw = score(service, request, &EmbeddingService::rerank);
      ASSERT_TRUE(raw.is_ok()) << raw.status().to_string();
      EXPECT_EQ(raw->token_counts, token_counts) << name;
      request.raw_scores = false;
      auto scores = score(service, request, &EmbeddingService::rerank);
      ASSERT_TRUE(scores.is_ok()) << scores.status().to_string();
      const std::vector<double> want_scores = numbers(c["scores"]);
      for (size_t d = 0; d < texts.size(); ++d) {
        EXPECT_LE(max_abs_diff(raw->row(d), want[d]), kTolerance) << name << " logit " << d;
        EXPECT_NEAR(scores->scores[d], want_scores[d], kTolerance) << name << " score " << d;
      }
    }
  }
}

TEST_P(GoldenKindsTest, JobsTheKindDoesNotServeAreRefused) {
  EmbeddingService& service = instance_->service();
  const std::string k = kind();
  EmbedRequest embedding;
  embedding.inputs.push_back(EmbedInput::from_text("paris"));
  ScoreRequest classification;
  classification.inputs.push_back(EmbedInput::from_text("paris"));
  RerankRequest rerank;
  rerank.query = "paris";
  rerank.documents = {"paris"};
  EXPECT_EQ(embed(service, embedding).is_ok(), k == "embedding");
  EXPECT_EQ(score(service, classification, &EmbeddingService::classify).is_ok(), k != "embedding");
  EXPECT_EQ(score(service, rerank, &EmbeddingService::rerank).is_ok(), k == "reranker");
  if (k != "embedding") return;
  embedding.dimensions = instance_->info().output_size + 1;
  auto too_many = embed(service, embedding);
  ASSERT_FALSE(too_many.is_ok());
  EXPECT_EQ(too_many.status().code(), StatusCode::kInvalidArgument);
  embedding.dimensions = 0;
  embedding.prompt_name = "no-such-prompt";
  auto unknown = embed(service, embedding);
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_NE(unknown.status().message().find("no-such-prompt"), std::string::npos);
}

std::vector<std::string> kind_dirs() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(kinds_dir())) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenKindsTest, ::testing::ValuesIn(kind_dirs()),
                         [](const auto& info) { return info.param; });

TEST(KindsFixtures, EveryKindIsCommitted) {
  // A missing directory is a broken checkout, not a reason to test less.
  const std::vector<std::string> dirs = kind_dirs();
  for (const char* want :
       {"st_mean_dense_norm", "st_mean_noprompt_default", "st_max_dense_identity", "st_cls_subdir",
        "bert_classifier", "bert_multilabel", "bert_reranker"}) {
    EXPECT_NE(std::find(dirs.begin(), dirs.end(), want), dirs.end()) << want;
  }
}

// ---- edited copies of the fixtures: directories that must be refused, do_lower_case ------------

class EditedDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("tideserve-kinds-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    base_ = root_;
  }
  void TearDown() override { fs::remove_all(base_); }

  // A copy of fixture `name` to edit.
  fs::path copy(const std::string& name) {
    fs::copy(kinds_dir() / name, root_, fs::copy_options::recursive);
    return root_;
  }
  static void replace(const fs::path& file, const std::string& from, const std::string& to) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    std::string s = text.str();
    const size_t at = s.find(from);
    ASSERT_NE(at, std::string::npos) << file << " has no " << from;
    s.replace(at, from.size(), to);
    std::ofstream(file, std::ios::trunc) << s;
  }
  // The load fails and its message holds every one of `needles`.
  void expect_refused(const std::vector<std::string>& needles) {
    ModelOptions options;
    options.model_dir = root_.string();
    options.warm_up = false;
    options.engine.threads = 1;
    auto instance = ModelInstance::load(options);
    ASSERT_FALSE(instance.is_ok()) << "loaded " << root_;
    for (const std::string& needle : needles) {
      EXPECT_NE(instance.status().message().find(needle), std::string::npos)
          << instance.status().message() << "\n  lacks: " << needle;
    }
  }

  fs::path root_;  // the directory loaded
  fs::path base_;  // the copy, removed afterwards
};

// sentence_bert_config.json's do_lower_case lowercases the text (and the prompt) before a cased
// tokenizer sees it; without it the capitals are unknown words to this all-lowercase vocabulary.
TEST_F(EditedDirectoryTest, DoLowerCaseLowersTextBeforeACasedTokenizer) {
  const fs::path dir = copy("st_mean_dense_norm");
  replace(dir / "tokenizer_config.json", "\"do_lower_case\": true", "\"do_lower_case\": false");
  auto cased = load(dir);
  ASSERT_NE(cased, nullptr);
  replace(dir / "sentence_bert_config.json", "\"do_lower_case\": false", "\"do_lower_case\": true");
  auto lowering = load(dir);
  ASSERT_NE(lowering, nullptr);
  EXPECT_TRUE(lowering->info().do_lower_case);
  auto request = [](std::string text) {
    EmbedRequest r;
    r.inputs.push_back(EmbedInput::from_text(std::move(text)));
    r.prompt_name = "query";
    return r;
  };
  auto upper = embed(lowering->service(), request("PARIS IS A CITY"));
  auto lower = embed(lowering->service(), request("paris is a city"));
  auto unknown = embed(cased->service(), request("PARIS IS A CITY"));
  auto reference = embed(cased->service(), request("paris is a city"));
  ASSERT_TRUE(upper.is_ok() && lower.is_ok() && unknown.is_ok() && reference.is_ok());
  const std::vector<double> want(reference->embeddings.begin(), reference->embeddings.end());
  EXPECT_LE(max_abs_diff(upper->embeddings, want), 1e-6);
  EXPECT_LE(max_abs_diff(lower->embeddings, want), 1e-6);
  EXPECT_GT(max_abs_diff(unknown->embeddings, want), 1e-3);
}

// A directory with 1_Pooling/config.json but no modules.json: the pooling is still declared.
TEST_F(EditedDirectoryTest, APoolingConfigWithoutModulesJson) {
  const fs::path dir = copy("st_max_dense_identity");
  fs::remove(dir / "modules.json");
  auto instance = load(dir);
  ASSERT_NE(instance, nullptr);
  EXPECT_EQ(instance->info().pooling, Pooling::kMax);
  EXPECT_NE(instance->info().pooling_source.find("1_Pooling/config.json"), std::string::npos);
  EXPECT_EQ(instance->info().output_size, instance->info().hidden_size);  // no Dense without it
}

TEST_F(EditedDirectoryTest, AnArchitectureThatIsNeitherEncoderNorHead) {
  replace(copy("bert_classifier") / "config.json", "BertForSequenceClassification",
          "BertForTokenClassification");
  expect_refused({"config.json", "BertForTokenClassification"});
}

TEST_F(EditedDirectoryTest, AModuleTypeTideserveDoesNotRun) {
  replace(copy("st_mean_dense_norm") / "modules.json", "sentence_transformers.models.Dense",
          "sentence_transformers.models.LSTM");
  expect_refused({"modules.json", "sentence_transformers.models.LSTM"});
}

TEST_F(EditedDirectoryTest, ConcatenatedPoolingModes) {
  replace(copy("st_mean_dense_norm") / "1_Pooling/config.json", "\"pooling_mode_cls_token\": false",
          "\"pooling_mode_cls_token\": true");
  expect_refused({"1_Pooling/config.json", "cls + mean"});
}

TEST_F(EditedDirectoryTest, APoolingOfAnotherWidth) {
  replace(copy("st_mean_dense_norm") / "1_Pooling/config.json", "\"word_embedding_dimension\": 32",
          "\"word_embedding_dimension\": 768");
  expect_refused({"1_Pooling/config.json", "768", "hidden_size is 32"});
}

TEST_F(EditedDirectoryTest, ADenseModuleOfTheWrongWidth) {
  const fs::path dir = copy("st_mean_dense_norm");
  replace(dir / "2_Dense/config.json", "\"in_features\": 32", "\"in_features\": 20");
  expect_refused({"2_Dense/model.safetensors", "linear.weight", "[16, 20]"});
}

TEST_F(EditedDirectoryTest, ADenseModuleSavedAsPickle) {
  const fs::path dir = copy("st_mean_dense_norm");
  fs::rename(dir / "2_Dense/model.safetensors", dir / "2_Dense/pytorch_model.bin");
  expect_refused({"pytorch_model.bin", "safetensors"});
}

TEST_F(EditedDirectoryTest, AClassifierWithoutItsHead) {
  // The reranker's config over an encoder without classifier tensors.
  const fs::path dir = copy("st_cls_subdir") / "0_Transformer";
  fs::copy_file(kinds_dir() / "bert_reranker/config.json", dir / "config.json",
                fs::copy_options::overwrite_existing);
  fs::remove(root_ / "modules.json");
  root_ = dir;
  expect_refused({"classifier.weight"});
}

TEST_F(EditedDirectoryTest, LabelsThatDoNotMatchTheHead) {
  replace(copy("bert_classifier") / "config.json", "\"2\": \"positive\"", "\"2x\": \"positive\"");
  expect_refused({"id2label"});
}

TEST_F(EditedDirectoryTest, AnUnknownPoolingMode) {
  const fs::path dir = copy("st_mean_dense_norm");
  std::ofstream(dir / "1_Pooling/config.json", std::ios::trunc)
      << R"({"word_embedding_dimension": 32, "pooling_mode": "splade"})";
  expect_refused({"1_Pooling/config.json", "splade"});
}

TEST_F(EditedDirectoryTest, ANonBertModelType) {
  replace(copy("bert_reranker") / "config.json", "\"model_type\": \"bert\"",
          "\"model_type\": \"xlm-roberta\"");
  expect_refused({"config.json", "xlm-roberta"});
}

}  // namespace
}  // namespace tideserve::runtime
