// Corrupts and truncates a valid model file at every position and checks that loading never
// crashes: each attempt is either a valid file or one clean error naming the file. Run under
// ASan/UBSan this is the guard against out-of-bounds reads on untrusted model files.
#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "model_test_util.h"
#include "tideserve/model/bert_model.h"
#include "tideserve/model/safetensors.h"

namespace tideserve {
namespace {

using test::TempDir;
using test::write_file;

// Opens `path` both as a raw safetensors file and as the weights of a model; returns how many of
// the two succeeded. Any failure must be a clean error that names the file.
int try_load(const std::string& config, const std::string& path) {
  int ok = 0;
  Result<SafetensorsFile> file = SafetensorsFile::open(path);
  if (file.is_ok()) {
    ++ok;
    const uint8_t* begin = file->mapping().data();
    const uint8_t* end = begin + file->mapping().size();
    for (const TensorView& t : file->tensors()) {
      EXPECT_TRUE(t.nbytes == 0 || (t.data >= begin && t.data + t.nbytes <= end)) << t.name;
      EXPECT_EQ(static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype), t.nbytes) << t.name;
    }
  } else {
    EXPECT_NE(file.status().message().find(path), std::string::npos) << file.status().message();
  }
  Result<std::unique_ptr<BertModel>> model = BertModel::load_files(config, path);
  if (model.is_ok()) {
    ++ok;
    // Touch every weight so ASan sees any view that points outside the mapping.
    float sum = 0;
    auto touch = [&](const FloatTensor& t) {
      for (int64_t i = 0; i < t.numel(); ++i) sum += t.data[i];
    };
    const BertWeights& w = (*model)->weights();
    for (const FloatTensor* t :
         {&w.word_embeddings, &w.position_embeddings, &w.token_type_embeddings,
          &w.embeddings_norm_weight, &w.embeddings_norm_bias}) {
      touch(*t);
    }
    if (w.has_pooler) {
      touch(w.pooler_weight);
      touch(w.pooler_bias);
    }
    for (const BertLayerWeights& l : w.layers) {
      for (const FloatTensor* t :
           {&l.query_weight, &l.query_bias, &l.key_weight, &l.key_bias, &l.value_weight,
            &l.value_bias, &l.attention_output_weight, &l.attention_output_bias,
            &l.attention_norm_weight, &l.attention_norm_bias, &l.intermediate_weight,
            &l.intermediate_bias, &l.output_weight, &l.output_bias, &l.output_norm_weight,
            &l.output_norm_bias}) {
        touch(*t);
      }
    }
    volatile float sink = sum;  // keeps the loads
    (void)sink;
  } else {
    EXPECT_NE(model.status().message().find(path), std::string::npos) << model.status().message();
  }
  return ok;
}

class Robustness : public ::testing::Test {
 protected:
  void SetUp() override {
    test::TinyBertOptions options;
    options.layers = 1;
    options.hidden = 4;
    options.intermediate = 8;
    options.vocab = 6;
    options.max_positions = 4;
    test::TinyBert tiny = make_tiny_bert(options);
    config_ = dir_.file("config.json");
    path_ = dir_.file("model.safetensors");
    write_file(config_, tiny.config_json);
    test::WriteOptions write_options;
    write_options.metadata_json = R"({"format":"pt"})";
    valid_ = test::safetensors_bytes(tiny.tensors, write_options);
    std::memcpy(&header_len_, valid_.data(), sizeof(header_len_));
  }

  TempDir dir_;
  std::string config_;
  std::string path_;
  std::string valid_;
  uint64_t header_len_ = 0;
};

TEST_F(Robustness, ValidFileLoads) {
  write_file(path_, valid_);
  EXPECT_EQ(try_load(config_, path_), 2);
}

TEST_F(Robustness, EveryTruncationLength) {
  int ok = 0;
  for (size_t n = 0; n < valid_.size(); ++n) {
    write_file(path_, valid_.substr(0, n));
    ok += try_load(config_, path_);
  }
  EXPECT_EQ(ok, 0);  // every truncation loses bytes the offsets promise
}

TEST_F(Robustness, EveryHeaderByteCorrupted) {
  std::mt19937 rng(20240611);
  std::uniform_int_distribution<int> byte(0, 255);
  const std::string specials("\"{}[],:-09e. \\\x00\xff", 16);
  const size_t header_end = 8 + static_cast<size_t>(header_len_);
  ASSERT_LE(header_end, valid_.size());
  int attempts = 0;
  int ok = 0;
  for (size_t pos = 0; pos < header_end; ++pos) {
    std::string values;
    for (int k = 0; k < 3; ++k) values += static_cast<char>(byte(rng));
    values += specials[pos % specials.size()];
    for (char v : values) {
      if (v == valid_[pos]) continue;
      std::string corrupt = valid_;
      corrupt[pos] = v;
      write_file(path_, corrupt);
      ok += try_load(config_, path_);
      ++attempts;
    }
  }
  EXPECT_GT(attempts, static_cast<int>(3 * header_end));
  // Some corruptions (inside names or metadata strings) leave a valid file: the success path,
  // with its bounds checks above, ran too.
  EXPECT_GT(ok, 0);
}

TEST_F(Robustness, RandomMultiByteCorruption) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<size_t> where(0, 8 + static_cast<size_t>(header_len_) - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 2000; ++round) {
    std::string corrupt = valid_;
    const int flips = 1 + round % 8;
    for (int i = 0; i < flips; ++i) corrupt[where(rng)] = static_cast<char>(byte(rng));
    write_file(path_, corrupt);
    try_load(config_, path_);
  }
}

TEST_F(Robustness, DigitsInTheHeaderChanged) {
  // Targeted: every digit of shapes and offsets replaced by every other digit, so the loader sees
  // plausible-looking but inconsistent numbers (overlaps, gaps, shape/size mismatches).
  const size_t header_end = 8 + static_cast<size_t>(header_len_);
  for (size_t pos = 8; pos < header_end; ++pos) {
    if (valid_[pos] < '0' || valid_[pos] > '9') continue;
    for (char d = '0'; d <= '9'; ++d) {
      if (d == valid_[pos]) continue;
      std::string corrupt = valid_;
      corrupt[pos] = d;
      write_file(path_, corrupt);
      try_load(config_, path_);
    }
  }
}

}  // namespace
}  // namespace tideserve
