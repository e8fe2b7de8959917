// The tokenizer on arbitrary bytes: text and pair inputs, every option, both loading routes
// (vocab.txt + tokenizer_config.json, and tokenizer.json). Invalid UTF-8 must be an error, never a
// crash; offsets must stay within the text and the lengths within max_length.
#include <cstdlib>
#include <memory>

#include "fuzz_util.h"
#include "tideserve/text/tokenizer.h"

namespace {

using tideserve::text::EncodeOptions;
using tideserve::text::Encoding;
using tideserve::text::Tokenizer;

struct Tokenizers {
  std::unique_ptr<Tokenizer> vocab;  // the bundled model's vocab.txt + tokenizer_config.json
  std::unique_ptr<Tokenizer> json;   // a tokenizer.json with other normalizer settings
};

const Tokenizers& tokenizers() {
  static const Tokenizers t = [] {
    Tokenizers out;
    const std::string dir = tideserve::fuzz::source_dir() + "/models/tideserve-tiny-zh";
    auto vocab = Tokenizer::load(dir);
    if (!vocab.is_ok()) std::abort();
    out.vocab = std::move(vocab).value();
    tideserve::text::BertNormalizerOptions cased;
    cased.lowercase = false;
    cased.strip_accents = true;
    auto other =
        Tokenizer::from_vocab_txt("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n##b\nab\n中\n", cased);
    if (!other.is_ok()) std::abort();
    out.json = std::move(other).value();
    return out;
  }();
  return t;
}

void check(const Encoding& e, size_t text_size, size_t pair_size, const EncodeOptions& options) {
  if (e.ids.size() != e.type_ids.size() || e.ids.size() != e.byte_offsets.size() ||
      e.ids.size() != e.char_offsets.size() || e.ids.size() != e.special_tokens_mask.size() ||
      e.ids.size() != e.tokens.size()) {
    std::abort();
  }
  if (options.truncation && options.max_length > 0 && e.ids.size() > options.max_length) {
    std::abort();
  }
  for (size_t t = 0; t < e.ids.size(); ++t) {
    const size_t limit = e.type_ids[t] == 0 ? text_size : pair_size;
    if (e.byte_offsets[t].start > e.byte_offsets[t].end || e.byte_offsets[t].end > limit) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const size_t max_length = data[1] % 64;
  std::string_view rest(reinterpret_cast<const char*>(data + 2), size - 2);
  // A 0xFF byte (never valid UTF-8) splits the text from its pair.
  std::string_view text = rest, pair;
  const size_t split = rest.find('\xFF');
  const bool has_pair = (flags & 1) != 0 && split != std::string_view::npos;
  if (has_pair) {
    text = rest.substr(0, split);
    pair = rest.substr(split + 1);
  }
  EncodeOptions options;
  options.max_length = max_length;
  options.truncation = (flags & 2) != 0;
  options.truncation_side = (flags & 4) != 0 ? tideserve::text::TruncationSide::kLeft
                                             : tideserve::text::TruncationSide::kRight;
  options.add_special_tokens = (flags & 8) == 0;
  if (has_pair) options.pair = pair;
  const Tokenizer& tokenizer = (flags & 16) != 0 ? *tokenizers().json : *tokenizers().vocab;
  Encoding encoding;
  if (tokenizer.encode_into(text, options, &encoding).is_ok()) {
    check(encoding, text.size(), pair.size(), options);
  }
  (void)tideserve::text::lowercase_text(rest);
  return 0;
}
