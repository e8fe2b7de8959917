// Test helpers for the model layer: write safetensors files and config.json from scratch, good or
// deliberately broken, into a temporary directory.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tideserve::test {

struct TestTensor {
  std::string name;
  std::string dtype;  // as spelled in the header: "F32", "BF16", "I64", or anything (bad cases)
  std::vector<int64_t> shape;
  std::string bytes;  // raw little-endian data
};

std::string f32_bytes(const std::vector<float>& values);
std::string f64_bytes(const std::vector<double>& values);
std::string u16_bytes(const std::vector<uint16_t>& values);
std::string i64_bytes(const std::vector<int64_t>& values);

// fp32 -> f16 / bf16 bits, for values that are exactly representable (the tests use such values).
uint16_t f32_to_bf16_exact(float value);
uint16_t f32_to_f16_exact(float value);

struct WriteOptions {
  std::string metadata_json;  // the "__metadata__" value, e.g. {"format":"pt"}; empty for none
  // The data region starts at 8 + header length; pad the header with spaces so that this offset is
  // congruent to `data_offset_mod8` modulo 8 (0 = aligned like the Python writer; 2 = misaligned).
  int data_offset_mod8 = 0;
};

// The header JSON for `tensors` stored back to back in order.
std::string safetensors_header(const std::vector<TestTensor>& tensors,
                               const std::string& metadata_json = "");
// A complete file: 8-byte length, padded header, data.
std::string safetensors_bytes(const std::vector<TestTensor>& tensors,
                              const WriteOptions& options = {});
// A file from a hand-written header and data region (no padding, no checks).
std::string raw_safetensors(const std::string& header_json, const std::string& data);

void write_file(const std::string& path, const std::string& contents);

// A fresh directory under TMPDIR, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct TinyBertOptions {
  std::string dtype = "F32";  // F32, F16 or BF16 for every weight
  std::string prefix;         // "" or "bert."
  bool pooler = true;
  bool legacy_norm_names = false;  // LayerNorm.gamma / beta
  bool extras = false;             // cls.predictions.*, embeddings.position_ids (I64)
  int64_t layers = 2;
  int64_t hidden = 8;
  int64_t heads = 2;
  int64_t intermediate = 16;
  int64_t vocab = 10;
  int64_t max_positions = 16;
  int64_t type_vocab = 2;
};

// The value stored at element `i` of the `index`-th weight tensor: exact in F16 and BF16.
float tiny_value(size_t index, size_t i);

struct TinyBert {
  std::string config_json;
  std::vector<TestTensor> tensors;

  TestTensor* find(const std::string& name);
  void erase(const std::string& name);
};

TinyBert make_tiny_bert(const TinyBertOptions& options = {});

// config.json text for the options (the file's truth; tests then edit it).
std::string tiny_config_json(const TinyBertOptions& options);

}  // namespace tideserve::test
