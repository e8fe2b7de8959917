// Loads the model directories committed to the repository (written by tools/make_fixture_model.py,
// a Python safetensors writer independent of this loader) and their golden files.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tideserve/model/bert_model.h"
#include "tideserve/model/safetensors.h"

namespace tideserve {
namespace {

std::string source_dir() {
  return TIDESERVE_SOURCE_DIR;
}

std::vector<std::string> fixture_model_dirs() {
  std::vector<std::string> dirs;
  std::error_code ec;
  const std::filesystem::path root = std::filesystem::path(source_dir()) / "tests/fixtures/models";
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    if (std::filesystem::exists(entry.path() / "model.safetensors")) {
      dirs.push_back(entry.path().string());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

void expect_loads(const std::string& dir) {
  Result<std::unique_ptr<BertModel>> model = BertModel::load(dir);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  const BertModel& m = **model;
  const BertConfig& c = m.config();
  const BertWeights& w = m.weights();
  EXPECT_EQ(w.word_embeddings.shape, (std::vector<int64_t>{c.vocab_size, c.hidden_size})) << dir;
  EXPECT_EQ(w.layers.size(), static_cast<size_t>(c.num_hidden_layers)) << dir;
  for (const BertLayerWeights& l : w.layers) {
    EXPECT_EQ(l.intermediate_weight.shape,
              (std::vector<int64_t>{c.intermediate_size, c.hidden_size}))
        << dir;
  }
  // Weights are finite numbers (a conversion bug would tend to show up as inf/nan or garbage).
  for (int64_t i = 0; i < w.word_embeddings.numel(); ++i) {
    ASSERT_TRUE(std::isfinite(w.word_embeddings.data[i])) << dir << " [" << i << "]";
    ASSERT_LT(std::fabs(w.word_embeddings.data[i]), 100.0f) << dir << " [" << i << "]";
  }
  if (m.weights_dtype() == DType::kF32) {
    const uint8_t* begin = m.file().mapping().data();
    const auto* p = reinterpret_cast<const uint8_t*>(w.word_embeddings.data);
    EXPECT_TRUE(p >= begin && p < begin + m.file().mapping().size()) << dir << ": not zero copy";
  }
}

TEST(FixtureModels, EveryFixtureModelAndGoldenFileLoads) {
  const std::vector<std::string> dirs = fixture_model_dirs();
  // The fixtures are committed: a missing one is a broken checkout, not a reason to skip.
  ASSERT_GE(dirs.size(), 4u) << "fixture models missing under tests/fixtures/models";
  for (const std::string& dir : dirs) {
    SCOPED_TRACE(dir);
    expect_loads(dir);
    const std::string golden = dir + "/golden.safetensors";
    ASSERT_TRUE(std::filesystem::exists(golden)) << golden << " is missing";
    Result<SafetensorsFile> file = SafetensorsFile::open(golden);
    ASSERT_TRUE(file.is_ok()) << file.status().to_string();
    const TensorView* ids = file->find("input_ids");
    ASSERT_NE(ids, nullptr);
    EXPECT_EQ(ids->dtype, DType::kI64);
    const TensorView* cu = file->find("cu_seqlens");
    ASSERT_NE(cu, nullptr);
    EXPECT_EQ(cu->dtype, DType::kI64);
    bool has_f32 = false;
    for (const TensorView& t : file->tensors()) has_f32 |= t.dtype == DType::kF32;
    EXPECT_TRUE(has_f32);
  }
}

TEST(FixtureModels, DemoModelLoads) {
  const std::string dir = source_dir() + "/models/tideserve-tiny-zh";
  ASSERT_TRUE(std::filesystem::exists(dir + "/model.safetensors")) << dir << ": no demo model";
  expect_loads(dir);
}

}  // namespace
}  // namespace tideserve
