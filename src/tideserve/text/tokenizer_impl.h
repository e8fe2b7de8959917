// Internal state of a Tokenizer (shared by loading and encoding; not part of the public API).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tideserve/text/tokenizer.h"
#include "tideserve/text/wordpiece_trie.h"

namespace tideserve::text {

// One element of a post-processing template: a sequence ($A / $B) or a special token id.
struct TemplatePiece {
  bool is_sequence = false;
  int sequence = 0;  // 0 = A, 1 = B (when is_sequence)
  int32_t id = -1;   // special token id (when !is_sequence)
  int32_t type_id = 0;
};

// A token matched verbatim in the raw text before normalization (HF "added tokens" with
// normalized=false, such as [CLS] or [MASK] typed by a user).
struct AddedToken {
  std::string content;
  int32_t id = -1;
};

// What the loaders fill in; finish() derives the lookup structures.
struct TokenizerSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;  // token -> id (unique tokens)
  std::string unk_token = "[UNK]";
  std::string continuing_subword_prefix = "##";
  size_t max_input_chars_per_word = 100;
  BertNormalizerOptions normalizer;
  bool normalize = true;  // false when tokenizer.json has "normalizer": null
  std::vector<AddedToken> added_tokens;
  std::vector<TemplatePiece> single_template;
  std::vector<TemplatePiece> pair_template;
  std::string source;
};

struct Tokenizer::Impl {
  // Normalization switches, resolved.
  bool clean_text = true;
  bool handle_chinese_chars = true;
  bool strip_accents = true;
  bool lowercase = true;
  BertNormalizerOptions normalizer_options;

  size_t max_input_chars_per_word = 100;
  int32_t unk_id = -1;

  std::string pool;                                         // every token string, back to back
  std::vector<std::pair<uint32_t, uint32_t>> id_to_span;    // id -> (offset, size) in pool
  std::unordered_map<std::string_view, int32_t> token_ids;  // views into pool
  WordPieceTrie initial_trie;                               // every vocabulary entry
  WordPieceTrie continuation_trie;  // entries with the prefix, prefix removed

  std::vector<AddedToken> added_tokens;  // longest first
  bool added_first_byte[256] = {};

  std::vector<TemplatePiece> single_template;
  std::vector<TemplatePiece> pair_template;
  size_t single_specials = 0;
  size_t pair_specials = 0;
  std::string source;

  static Result<std::unique_ptr<Impl>> finish(TokenizerSpec spec);

  std::string_view token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= id_to_span.size()) return {};
    const auto& [offset, size] = id_to_span[id];
    return std::string_view(pool).substr(offset, size);
  }
};

}  // namespace tideserve::text
