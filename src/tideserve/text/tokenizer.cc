// Encoding: one pass over the original text fuses BertNormalizer (clean_text, chinese chars,
// strip_accents, lowercase), BertPreTokenizer (whitespace and punctuation splits) and WordPiece,
// while every normalized byte remembers the original character it came from (offsets).
#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <simdjson.h>

#include "tideserve/text/tokenizer.h"
#include "tideserve/text/tokenizer_impl.h"
#include "tideserve/text/unicode.h"

namespace tideserve::text {
namespace {

// Where a normalized character came from in the original text.
struct Origin {
  uint32_t byte_start;
  uint32_t byte_end;
  uint32_t char_index;
};

struct SequenceTokens {
  std::vector<int32_t> ids;
  std::vector<Offset> byte_offsets;
  std::vector<Offset> char_offsets;

  size_t size() const { return ids.size(); }
  void clear() {
    ids.clear();
    byte_offsets.clear();
    char_offsets.clear();
  }
  void resize(size_t n) {
    ids.resize(n);
    byte_offsets.resize(n);
    char_offsets.resize(n);
  }
};

// A non-starter waiting for canonical reordering (strip_accents' NFD).
struct Pending {
  char32_t cp;
  int ccc;
  uint8_t flags;
  bool consumes;
  Origin origin;
};

// Per-thread working memory, reused across calls (no allocation once grown).
struct Scratch {
  SequenceTokens sequences[2];
  std::string word;                 // normalized UTF-8 of the current word
  std::vector<Origin> word_origin;  // one per byte of `word`
  size_t word_chars = 0;
  std::vector<Pending> pending;      // the current run of non-starters
  std::vector<Origin> run_origins;   // the characters the run consumes, in text order
  Origin last_consumed{0, 0, 0};     // the last original character consumed by NFD
  Origin run_base{0, 0, 0};          // last_consumed when the run began
  std::vector<uint32_t> split_ends;  // token count at the end of each pre-tokenizer split
  std::vector<uint8_t> split_added;  // 1 where the split is a verbatim added token
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Decodes one multi-byte UTF-8 sequence at text[i] (text[i] >= 0x80) as Rust's str accepts it:
// no overlongs, no surrogates, nothing above U+10FFFF. Returns its length, 0 when invalid.
inline size_t decode_utf8(const uint8_t* text, size_t i, size_t size, char32_t* cp) {
  const uint8_t b0 = text[i];
  auto cont = [&](size_t k) { return i + k < size && (text[i + k] & 0xC0) == 0x80; };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (!cont(1)) return 0;
    *cp = (char32_t(b0 & 0x1F) << 6) | (text[i + 1] & 0x3F);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    const uint8_t b1 = text[i + 1];
    if (b0 == 0xE0 && b1 < 0xA0) return 0;  // overlong
    if (b0 == 0xED && b1 > 0x9F) return 0;  // surrogate
    *cp = (char32_t(b0 & 0x0F) << 12) | (char32_t(b1 & 0x3F) << 6) | (text[i + 2] & 0x3F);
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const uint8_t b1 = text[i + 1];
    if (b0 == 0xF0 && b1 < 0x90) return 0;  // overlong
    if (b0 == 0xF4 && b1 > 0x8F) return 0;  // above U+10FFFF
    *cp = (char32_t(b0 & 0x07) << 18) | (char32_t(b1 & 0x3F) << 12) |
          (char32_t(text[i + 2] & 0x3F) << 6) | (text[i + 3] & 0x3F);
    return 4;
  }
  return 0;
}

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

inline size_t utf8_length(char32_t cp) {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

// Encodes one sequence (the first text or the pair) into `out`, without special tokens.
class SequenceEncoder {
 public:
  // With `limit` > 0 the sequence is cut to whole words (pre-tokenizer splits) as HF does when
  // truncation is on: from the start (kRight), keep words until they hold `limit` tokens or more;
  // from the end (kLeft), the same backwards. Truncation proper happens afterwards.
  SequenceEncoder(const Tokenizer::Impl& impl, Scratch& s, SequenceTokens& out, size_t limit,
                  TruncationSide side)
      : impl_(impl),
        s_(s),
        out_(out),
        right_limit_(side == TruncationSide::kRight ? limit : 0),
        left_limit_(side == TruncationSide::kLeft ? limit : 0) {}

  Status run(std::string_view text) {
    if (text.size() > UINT32_MAX) return invalid_argument("text longer than 4 GiB");
    if (!simdjson::validate_utf8(text.data(), text.size())) return utf8_error(text);
    s_.split_ends.clear();
    s_.split_added.clear();
    TS_RETURN_IF_ERROR(encode_splits(text));
    if (left_limit_ > 0) cut_left();
    return Status::ok();
  }

 private:
  static Status utf8_error(std::string_view text) {
    const auto* data = reinterpret_cast<const uint8_t*>(text.data());
    for (size_t i = 0; i < text.size();) {
      char32_t cp;
      const size_t length = data[i] < 0x80 ? 1 : decode_utf8(data, i, text.size(), &cp);
      if (length == 0) {
        return invalid_argument(fmt::format("invalid UTF-8 at byte {} (0x{:02X})", i, data[i]));
      }
      i += length;
    }
    return invalid_argument("invalid UTF-8");
  }

  // Keeps the last splits: walking back, up to and including the one that reaches the limit
  // (verbatim added tokens count but do not stop the walk, as in HF).
  void cut_left() {
    size_t total = 0;
    size_t first = s_.split_ends.size();
    for (size_t i = s_.split_ends.size(); i-- > 0;) {
      const size_t begin = i == 0 ? 0 : s_.split_ends[i - 1];
      total += s_.split_ends[i] - begin;
      first = i;
      if (!s_.split_added[i] && total >= left_limit_) break;
    }
    const size_t drop = first == 0 ? 0 : s_.split_ends[first - 1];
    if (drop == 0) return;
    out_.ids.erase(out_.ids.begin(), out_.ids.begin() + drop);
    out_.byte_offsets.erase(out_.byte_offsets.begin(), out_.byte_offsets.begin() + drop);
    out_.char_offsets.erase(out_.char_offsets.begin(), out_.char_offsets.begin() + drop);
  }

  void end_split(bool added) {
    s_.split_ends.push_back(static_cast<uint32_t>(out_.size()));
    s_.split_added.push_back(added);
    if (!added && right_limit_ > 0 && out_.size() >= right_limit_) stopped_ = true;
  }

  Status encode_splits(std::string_view text) {
    const auto* data = reinterpret_cast<const uint8_t*>(text.data());
    const size_t size = text.size();
    s_.word.clear();
    s_.word_origin.clear();
    s_.word_chars = 0;
    s_.pending.clear();
    s_.last_consumed = s_.run_base = Origin{0, 0, 0};
    uint32_t char_index = 0;
    if (impl_.added_tokens.empty()) return normalize_segment(data, 0, size, char_index);
    size_t segment_start = 0;
    for (size_t i = 0; i < size && !stopped_;) {
      if (!impl_.added_first_byte[data[i]]) {
        ++i;
        continue;
      }
      const AddedToken* match = nullptr;
      for (const AddedToken& token : impl_.added_tokens) {  // longest first
        if (text.compare(i, token.content.size(), token.content) == 0) {
          match = &token;
          break;
        }
      }
      if (match == nullptr) {
        ++i;
        continue;
      }
      TS_RETURN_IF_ERROR(normalize_segment(data, segment_start, i, char_index));
      if (stopped_) break;
      const uint32_t chars = count_chars(match->content);
      out_.ids.push_back(match->id);
      out_.byte_offsets.push_back(
          {static_cast<uint32_t>(i), static_cast<uint32_t>(i + match->content.size())});
      out_.char_offsets.push_back({char_index, char_index + chars});
      char_index += chars;
      end_split(true);
      i += match->content.size();
      segment_start = i;
    }
    if (stopped_) return Status::ok();
    return normalize_segment(data, segment_start, size, char_index);
  }

  static uint32_t count_chars(std::string_view s) {
    uint32_t n = 0;
    for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
    return n;
  }

  Status normalize_segment(const uint8_t* data, size_t begin, size_t end, uint32_t& char_index) {
    const bool clean = impl_.clean_text;
    const bool lower = impl_.lowercase;
    size_t i = begin;
    while (i < end && !stopped_) {
      const uint8_t b = data[i];
      if (b < 0x80) {  // ASCII: no decomposition, no combining class, lowercase is a bit flip
        const Origin origin{static_cast<uint32_t>(i), static_cast<uint32_t>(i + 1), char_index};
        ++i;
        ++char_index;
        const uint8_t flags = char_flags(b);
        if (clean && (flags & kFlagDrop)) continue;
        s_.last_consumed = origin;
        if (flags & kFlagWhitespace) {
          boundary();
        } else if (flags & kFlagPunct) {
          boundary();
          append(b, origin);
          flush_word();
        } else {
          if (!s_.pending.empty()) flush_pending();
          append((lower && b >= 'A' && b <= 'Z') ? b + 32 : b, origin);
        }
        continue;
      }
      char32_t cp = 0;
      const size_t length = decode_utf8(data, i, end, &cp);
      if (length == 0) {
        return invalid_argument(fmt::format("invalid UTF-8 at byte {} (0x{:02X})", i, b));
      }
      const Origin origin{static_cast<uint32_t>(i), static_cast<uint32_t>(i + length), char_index};
      i += length;
      ++char_index;
      const uint8_t flags = char_flags(cp);
      if (clean && (flags & kFlagDrop)) continue;
      if (impl_.handle_chinese_chars && (flags & kFlagChinese)) {
        boundary();
        normalize_char(cp, flags, origin);
        boundary();
        continue;
      }
      normalize_char(cp, flags, origin);
    }
    boundary();
    return Status::ok();
  }

  // strip_accents: NFD, then drop nonspacing marks. A run of non-starters (combining class > 0)
  // is put in canonical order first; as in HF's NormalizedString, the original-text alignments
  // then follow positions, not characters (see flush_run).
  void normalize_char(char32_t cp, uint8_t flags, const Origin& origin) {
    if (!impl_.strip_accents) {
      lower_char(cp, flags, origin);
      return;
    }
    if (!(flags & kFlagDecomposes)) {
      strip_piece(cp, flags, origin, true);
      return;
    }
    char32_t parts[kMaxDecomposition];
    const size_t n = decompose(cp, parts);
    for (size_t k = 0; k < n; ++k) strip_piece(parts[k], char_flags(parts[k]), origin, k == 0);
  }

  // `consumes`: the first piece of a character's decomposition stands for the character; the
  // others are insertions.
  void strip_piece(char32_t cp, uint8_t flags, const Origin& origin, bool consumes) {
    if (flags & kFlagCombining) {
      if (s_.pending.empty()) s_.run_base = s_.last_consumed;
      s_.pending.push_back({cp, combining_class(cp), flags, consumes, origin});
      if (consumes) s_.last_consumed = origin;
      return;
    }
    if (!s_.pending.empty()) flush_pending();
    if (consumes) s_.last_consumed = origin;
    if (flags & kFlagNonspacingMark) return;
    lower_char(cp, flags, origin);
  }

  // Sorts the run by combining class (stable), then hands out alignments in order: each piece
  // that consumes takes the next original character of the run, an insertion repeats the last
  // one taken. Nonspacing marks are dropped afterwards.
  void flush_pending() {
    bool any_kept = false;
    for (const Pending& p : s_.pending) any_kept |= !(p.flags & kFlagNonspacingMark);
    if (any_kept) {
      s_.run_origins.clear();
      for (const Pending& p : s_.pending) {
        if (p.consumes) s_.run_origins.push_back(p.origin);
      }
      std::stable_sort(s_.pending.begin(), s_.pending.end(),
                       [](const Pending& a, const Pending& b) { return a.ccc < b.ccc; });
      Origin last = s_.run_base;
      size_t next = 0;
      for (const Pending& p : s_.pending) {
        if (p.consumes) last = s_.run_origins[next++];
        if (!(p.flags & kFlagNonspacingMark)) lower_char(p.cp, p.flags, last);
      }
    }
    s_.pending.clear();
  }

  void lower_char(char32_t cp, uint8_t flags, const Origin& origin) {
    if (!impl_.lowercase || !(flags & kFlagLowerChanges)) {
      split_char(cp, flags, origin);
      return;
    }
    char32_t lowered[kMaxLowercase];
    const size_t n = to_lower(cp, lowered);
    for (size_t k = 0; k < n; ++k) split_char(lowered[k], char_flags(lowered[k]), origin);
  }

  // BertPreTokenizer: whitespace ends a word and is removed; punctuation is a word of its own.
  void split_char(char32_t cp, uint8_t flags, const Origin& origin) {
    if (flags & kFlagWhitespace) {
      flush_word();
    } else if (flags & kFlagPunct) {
      flush_word();
      append(cp, origin);
      flush_word();
    } else {
      append(cp, origin);
    }
  }

  void append(char32_t cp, const Origin& origin) {
    if (stopped_) return;
    append_utf8(s_.word, cp);
    s_.word_origin.insert(s_.word_origin.end(), utf8_length(cp), origin);
    ++s_.word_chars;
  }

  void boundary() {
    if (!s_.pending.empty()) flush_pending();
    flush_word();
  }

  void flush_word() {
    if (s_.word.empty()) return;
    wordpiece();
    end_split(false);
    s_.word.clear();
    s_.word_origin.clear();
    s_.word_chars = 0;
  }

  void emit(int32_t id, size_t begin, size_t end) {
    const Origin& first = s_.word_origin[begin];
    const Origin& last = s_.word_origin[end - 1];
    out_.ids.push_back(id);
    out_.byte_offsets.push_back({first.byte_start, last.byte_end});
    out_.char_offsets.push_back({first.char_index, last.char_index + 1});
  }

  // Greedy longest-match-first; a word with any unmatched rest is one [UNK].
  void wordpiece() {
    const char* word = s_.word.data();
    const size_t size = s_.word.size();
    if (s_.word_chars > impl_.max_input_chars_per_word) {
      emit(impl_.unk_id, 0, size);
      return;
    }
    const size_t mark = out_.size();
    size_t pos = 0;
    while (pos < size) {
      const WordPieceTrie& trie = pos == 0 ? impl_.initial_trie : impl_.continuation_trie;
      const WordPieceTrie::Match m = trie.longest_prefix(word + pos, size - pos);
      if (m.length == 0) {
        out_.resize(mark);
        emit(impl_.unk_id, 0, size);
        return;
      }
      emit(m.value, pos, pos + m.length);
      pos += m.length;
    }
  }

  const Tokenizer::Impl& impl_;
  Scratch& s_;
  SequenceTokens& out_;
  const size_t right_limit_;
  const size_t left_limit_;
  bool stopped_ = false;  // the right limit is reached: ignore the rest
};

// HF's LongestFirst split of `budget` tokens between sequences of n1 and n2 tokens.
void longest_first(size_t n1, size_t n2, size_t budget, size_t* keep1, size_t* keep2) {
  bool swapped = false;
  if (n1 > n2) {
    std::swap(n1, n2);
    swapped = true;
  }
  if (n1 > budget) {
    n2 = n1;
  } else {
    n2 = std::max(n1, budget - n1);
  }
  if (n1 + n2 > budget) {
    n1 = budget / 2;
    n2 = n1 + budget % 2;
  }
  if (swapped) std::swap(n1, n2);
  *keep1 = n1;
  *keep2 = n2;
}

}  // namespace

void Encoding::clear() {
  ids.clear();
  type_ids.clear();
  tokens.clear();
  byte_offsets.clear();
  char_offsets.clear();
  special_tokens_mask.clear();
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Result<Encoding> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  Encoding out;
  TS_RETURN_IF_ERROR(encode_into(text, options, &out));
  return out;
}

Status Tokenizer::encode_into(std::string_view text, const EncodeOptions& options,
                              Encoding* out) const {
  out->clear();
  Scratch& s = scratch();
  const bool has_pair = options.pair.has_value();
  SequenceTokens& first = s.sequences[0];
  SequenceTokens& second = s.sequences[1];
  first.clear();
  second.clear();
  // HF cuts each sequence to whole words first whenever truncation is configured.
  const size_t limit = options.truncation ? options.max_length : 0;
  {
    SequenceEncoder encoder(*impl_, s, first, limit, options.truncation_side);
    Status status = encoder.run(text);
    if (!status.is_ok()) {
      return Status(status.code(), (has_pair ? "first text: " : "") + status.message());
    }
  }
  if (has_pair) {
    SequenceEncoder encoder(*impl_, s, second, limit, options.truncation_side);
    Status status = encoder.run(*options.pair);
    if (!status.is_ok()) return Status(status.code(), "pair text: " + status.message());
  }

  static const std::vector<TemplatePiece> kBareSingle = {{true, 0, -1, 0}};
  static const std::vector<TemplatePiece> kBarePair = {{true, 0, -1, 0}, {true, 1, -1, 1}};
  const std::vector<TemplatePiece>& pieces =
      options.add_special_tokens ? (has_pair ? impl_->pair_template : impl_->single_template)
                                 : (has_pair ? kBarePair : kBareSingle);
  const size_t specials = options.add_special_tokens ? num_special_tokens(has_pair) : 0;

  size_t keep[2] = {first.size(), second.size()};
  const size_t total = keep[0] + keep[1] + specials;
  if (options.max_length > 0 && total > options.max_length) {
    if (!options.truncation) {
      return out_of_range(
          fmt::format("input is {} tokens, more than max_length {}", total, options.max_length));
    }
    if (options.max_length < specials) {
      return invalid_argument(fmt::format("max_length {} is less than the {} special tokens",
                                          options.max_length, specials));
    }
    const size_t budget = options.max_length - specials;
    if (has_pair) {
      longest_first(first.size(), second.size(), budget, &keep[0], &keep[1]);
    } else {
      keep[0] = budget;
    }
  }

  const size_t n = std::min(total, options.max_length > 0 ? options.max_length : total);
  out->ids.reserve(n);
  out->type_ids.reserve(n);
  out->tokens.reserve(n);
  out->byte_offsets.reserve(n);
  out->char_offsets.reserve(n);
  out->special_tokens_mask.reserve(n);
  for (const TemplatePiece& piece : pieces) {
    if (!piece.is_sequence) {
      out->ids.push_back(piece.id);
      out->type_ids.push_back(piece.type_id);
      out->tokens.push_back(impl_->token(piece.id));
      out->byte_offsets.push_back({});
      out->char_offsets.push_back({});
      out->special_tokens_mask.push_back(1);
      continue;
    }
    const SequenceTokens& seq = s.sequences[piece.sequence];
    const size_t k = std::min(keep[piece.sequence], seq.size());
    const size_t begin = options.truncation_side == TruncationSide::kLeft ? seq.size() - k : 0;
    for (size_t t = begin; t < begin + k; ++t) {
      out->ids.push_back(seq.ids[t]);
      out->type_ids.push_back(piece.type_id);
      out->tokens.push_back(impl_->token(seq.ids[t]));
      out->byte_offsets.push_back(seq.byte_offsets[t]);
      out->char_offsets.push_back(seq.char_offsets[t]);
      out->special_tokens_mask.push_back(0);
    }
  }
  return Status::ok();
}

size_t Tokenizer::vocab_size() const {
  return impl_->id_to_span.size();
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->token_ids.find(token);
  if (it == impl_->token_ids.end()) return std::nullopt;
  return it->second;
}

std::string_view Tokenizer::id_to_token(int32_t id) const {
  return impl_->token(id);
}

const BertNormalizerOptions& Tokenizer::normalizer_options() const {
  return impl_->normalizer_options;
}

const std::string& Tokenizer::source() const {
  return impl_->source;
}

size_t Tokenizer::num_special_tokens(bool pair) const {
  return pair ? impl_->pair_specials : impl_->single_specials;
}

std::string lowercase_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  char32_t lowered[kMaxLowercase];
  for (size_t i = 0; i < text.size();) {
    char32_t cp = bytes[i];
    size_t length = 1;
    if (cp >= 0x80) {
      length = decode_utf8(bytes, i, text.size(), &cp);
      if (length == 0) {
        out.push_back(text[i++]);
        continue;
      }
    }
    const size_t n = to_lower(cp, lowered);
    for (size_t k = 0; k < n; ++k) append_utf8(out, lowered[k]);
    i += length;
  }
  return out;
}

}  // namespace tideserve::text
