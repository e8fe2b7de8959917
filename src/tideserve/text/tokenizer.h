// BERT tokenization identical to Hugging Face `tokenizers` (BertNormalizer, BertPreTokenizer,
// WordPiece, BertProcessing/TemplateProcessing, truncation), loaded from a model directory.
//
//   auto tok = Tokenizer::load("models/tideserve-tiny-zh");   // tokenizer.json, else vocab.txt
//   if (!tok.is_ok()) ...;
//   EncodeOptions opt;  opt.max_length = 512;
//   Result<Encoding> enc = (*tok)->encode("你好，world", opt);
//
// encode() is const and thread-safe. Invalid UTF-8 is an InvalidArgument error naming the byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tideserve/util/status.h"

namespace tideserve::text {

// Half-open [start, end) range in the original text of the sequence the token came from.
// Special tokens ([CLS], [SEP]) have {0, 0}, like HF.
struct Offset {
  uint32_t start = 0;
  uint32_t end = 0;
  bool operator==(const Offset&) const = default;
};

struct Encoding {
  std::vector<int32_t> ids;
  std::vector<int32_t> type_ids;  // 0 for the first sequence, 1 for the pair (from the template)
  // Views into the Tokenizer's vocabulary: valid while the Tokenizer lives.
  std::vector<std::string_view> tokens;
  std::vector<Offset> byte_offsets;  // UTF-8 byte offsets
  std::vector<Offset> char_offsets;  // code point offsets (what HF's Python/Node bindings report)
  std::vector<uint8_t> special_tokens_mask;  // 1 for tokens added by post-processing

  size_t size() const { return ids.size(); }
  void clear();
};

enum class TruncationSide { kRight, kLeft };

struct EncodeOptions {
  std::optional<std::string_view> pair;  // second sequence (type id 1)
  size_t max_length = 0;                 // 0: no limit; counts the special tokens
  bool truncation = true;                // with max_length: cut (longest first for pairs) or refuse
  TruncationSide truncation_side = TruncationSide::kRight;
  bool add_special_tokens = true;  // [CLS] A [SEP] (B [SEP])
};

// Normalizer settings (BertNormalizer); strip_accents unset follows lowercase, like HF.
struct BertNormalizerOptions {
  bool clean_text = true;
  bool handle_chinese_chars = true;
  std::optional<bool> strip_accents;
  bool lowercase = true;
};

// `text` with every code point lowercased by its Unicode mapping (as the normalizer's lowercase
// does; no accent stripping): sentence-transformers' do_lower_case. Bytes that are not valid
// UTF-8 are kept as they are, for the tokenizer to report.
std::string lowercase_text(std::string_view text);

class Tokenizer {
 public:
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Loads `model_dir`/tokenizer.json if present, else `model_dir`/vocab.txt with the settings of
  // `model_dir`/tokenizer_config.json (do_lower_case, strip_accents, tokenize_chinese_chars and
  // the special tokens) when that file exists.
  static Result<std::unique_ptr<Tokenizer>> load(const std::string& model_dir);
  // A tokenizer.json document (BERT family only; other types are refused by name).
  static Result<std::unique_ptr<Tokenizer>> from_tokenizer_json(std::string_view json);
  // A vocab.txt (one token per line, id = line number) with explicit settings.
  static Result<std::unique_ptr<Tokenizer>> from_vocab_txt(std::string_view vocab_txt,
                                                           const BertNormalizerOptions& options);

  Result<Encoding> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Same, reusing `out`'s storage (cleared first): no allocation once it has grown.
  Status encode_into(std::string_view text, const EncodeOptions& options, Encoding* out) const;

  size_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string_view id_to_token(int32_t id) const;  // empty when out of range
  const BertNormalizerOptions& normalizer_options() const;
  // "tokenizer.json" or "vocab.txt": where the tokenizer came from.
  const std::string& source() const;
  // Number of special tokens encode() adds (2 for a single sequence, 3 for a pair).
  size_t num_special_tokens(bool pair) const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tideserve::text
