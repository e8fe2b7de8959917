#include "tideserve/text/tokenizer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace tideserve::text {
namespace {

namespace fs = std::filesystem;

std::string model_dir() {
  return std::string(TIDESERVE_SOURCE_DIR) + "/models/tideserve-tiny-zh";
}

const Tokenizer& bundled() {
  static std::unique_ptr<Tokenizer> tok = [] {
    auto t = Tokenizer::load(model_dir());
    EXPECT_TRUE(t.is_ok()) << t.status().to_string();
    return std::move(t).value();
  }();
  return *tok;
}

std::vector<std::string> tokens_of(const Encoding& e) {
  return {e.tokens.begin(), e.tokens.end()};
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("tideserve_text_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name, std::ios::binary) << content;
    return (path_ / name).string();
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

const char* kSmallVocab =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n##s\nun\n##able\n,\n!\n中\n文\né\ne\n";

// A tokenizer over kSmallVocab. It lives until the end of the program, as the string views in
// its encodings require.
const Tokenizer* small(BertNormalizerOptions options = {}) {
  static std::vector<std::unique_ptr<Tokenizer>> alive;
  auto t = Tokenizer::from_vocab_txt(kSmallVocab, options);
  EXPECT_TRUE(t.is_ok()) << t.status().to_string();
  alive.push_back(std::move(t).value());
  return alive.back().get();
}

TEST(Tokenizer, LoadsTheBundledModelFromVocabTxt) {
  EXPECT_EQ(bundled().source(), "vocab.txt");
  EXPECT_GT(bundled().vocab_size(), 20000u);
  EXPECT_EQ(bundled().id_to_token(*bundled().token_to_id("[CLS]")), "[CLS]");
}

TEST(Tokenizer, EncodesChineseAndEnglishWithOffsets) {
  auto e = bundled().encode("你好，world");
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "你", "好", "，", "world", "[SEP]"}));
  ASSERT_EQ(e->byte_offsets.size(), 6u);
  EXPECT_EQ(e->byte_offsets[1], (Offset{0, 3}));
  EXPECT_EQ(e->byte_offsets[3], (Offset{6, 9}));
  EXPECT_EQ(e->byte_offsets[4], (Offset{9, 14}));
  EXPECT_EQ(e->char_offsets[4], (Offset{3, 8}));
  EXPECT_EQ(e->char_offsets[0], (Offset{0, 0}));
  EXPECT_EQ(e->type_ids, (std::vector<int32_t>(6, 0)));
  EXPECT_EQ(e->special_tokens_mask, (std::vector<uint8_t>{1, 0, 0, 0, 0, 1}));
}

TEST(Tokenizer, WordPieceSplitsGreedilyAndFallsBackToUnk) {
  auto tok = small();
  auto e = tok->encode("Hellos unable worlds xyz");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "hello", "##s", "un", "##able",
                                                     "world", "##s", "[UNK]", "[SEP]"}));
  EXPECT_EQ(e->byte_offsets[7], (Offset{21, 24}));  // the whole word
}

TEST(Tokenizer, NormalizerSettings) {
  // lowercase + strip accents (default): É -> e
  auto e = small()->encode("É");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(tokens_of(*e)[1], "e");
  EXPECT_EQ(e->byte_offsets[1], (Offset{0, 2}));
  // lowercase, keep accents: É -> é
  BertNormalizerOptions keep;
  keep.strip_accents = false;
  e = small(keep)->encode("É");
  EXPECT_EQ(tokens_of(*e)[1], "é");
  // cased: É stays unknown
  BertNormalizerOptions cased;
  cased.lowercase = false;
  e = small(cased)->encode("É hello");
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "[UNK]", "hello", "[SEP]"}));
  // chinese chars not separated: one word of two ideographs -> 中 ##文 missing -> [UNK]
  BertNormalizerOptions no_chinese;
  no_chinese.handle_chinese_chars = false;
  e = small(no_chinese)->encode("中文");
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "[UNK]", "[SEP]"}));
  e = small()->encode("中文");
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "中", "文", "[SEP]"}));
}

TEST(Tokenizer, CleanTextDropsControlsAndSplitsOnPunctuation) {
  auto e = small()->encode("hel\x01lo\xE2\x80\x8B!\tworld,hello");  // U+200B is a format char
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(tokens_of(*e),
            (std::vector<std::string>{"[CLS]", "hello", "!", "world", ",", "hello", "[SEP]"}));
  EXPECT_EQ(e->byte_offsets[1], (Offset{0, 6}));  // spans the dropped control character
}

TEST(Tokenizer, SpecialTokensInTheTextAreMatchedVerbatim) {
  auto e = small()->encode("hello[MASK]world [mask]");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "hello", "[MASK]", "world", "[UNK]",
                                                     "[UNK]", "[UNK]", "[SEP]"}));
  EXPECT_EQ(e->byte_offsets[2], (Offset{5, 11}));
}

TEST(Tokenizer, PairsGetTypeIdsAndLongestFirstTruncation) {
  EncodeOptions options;
  options.pair = "world world world world";
  auto e = small()->encode("hello hello", options);
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->type_ids, (std::vector<int32_t>{0, 0, 0, 0, 1, 1, 1, 1, 1}));
  options.max_length = 7;  // 4 for the texts: 2 + 2
  e = small()->encode("hello hello hello", options);
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "hello", "hello", "[SEP]", "world",
                                                     "world", "[SEP]"}));
  EXPECT_EQ(e->char_offsets[5], (Offset{6, 11}));  // offsets of the pair are in the pair's text
  options.truncation_side = TruncationSide::kLeft;
  e = small()->encode("hello hello hello", options);
  EXPECT_EQ(e->char_offsets[1], (Offset{6, 11}));
  EXPECT_EQ(e->char_offsets[5], (Offset{18, 23}));
}

TEST(Tokenizer, TruncationLimits) {
  EncodeOptions options;
  options.max_length = 4;
  auto e = small()->encode("hello world hello world", options);
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "hello", "world", "[SEP]"}));
  options.max_length = 2;
  e = small()->encode("hello", options);
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "[SEP]"}));
  options.max_length = 1;  // below the special tokens
  e = small()->encode("hello", options);
  ASSERT_FALSE(e.is_ok());
  EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
  options.max_length = 3;
  options.truncation = false;  // refuse instead of cutting
  e = small()->encode("hello world", options);
  ASSERT_FALSE(e.is_ok());
  EXPECT_EQ(e.status().code(), StatusCode::kOutOfRange);
  e = small()->encode("hello", options);
  EXPECT_TRUE(e.is_ok());
}

TEST(Tokenizer, WithoutSpecialTokens) {
  EncodeOptions options;
  options.add_special_tokens = false;
  auto e = small()->encode("hello", options);
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"hello"}));
}

TEST(Tokenizer, MaxInputCharsPerWord) {
  auto tok = small();
  std::string word(100, 'e');  // 100 characters: split into pieces ("e" has no "##e": [UNK])
  auto e = tok->encode(word);
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->size(), 3u);
  EXPECT_EQ(e->char_offsets[1], (Offset{0, 100}));
  auto ok = bundled().encode(std::string(100, 'a'));
  ASSERT_TRUE(ok.is_ok());
  EXPECT_GT(ok->size(), 3u);  // a ##a ##a ... : 100 characters are tokenized
  auto unk = bundled().encode(std::string(101, 'a'));
  ASSERT_TRUE(unk.is_ok());
  EXPECT_EQ(tokens_of(*unk), (std::vector<std::string>{"[CLS]", "[UNK]", "[SEP]"}));
}

// Malformed input: each has a defined outcome.
TEST(TokenizerMalformed, InvalidUtf8IsAnInvalidArgumentNamingTheByte) {
  const std::vector<std::pair<std::string, size_t>> cases = {
      {"ab\x80", 2},                  // lone continuation byte
      {"abc\xE4\xB8", 3},             // truncated 3-byte sequence
      {"\xC0\xAF", 0},                // overlong '/'
      {"x\xED\xA0\x80", 1},           // UTF-16 surrogate
      {"\xF4\x90\x80\x80", 0},        // above U+10FFFF
      {"ok \xFF", 3},                 // never valid
      {std::string("a\0\xC3", 3), 2}  // after a NUL
  };
  for (const auto& [text, byte] : cases) {
    auto e = bundled().encode(text);
    ASSERT_FALSE(e.is_ok()) << text;
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(e.status().message().find("invalid UTF-8 at byte " + std::to_string(byte)),
              std::string::npos)
        << e.status().message();
  }
  EncodeOptions options;
  options.pair = "\xC3";
  auto e = bundled().encode("fine", options);
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.status().message().find("pair text"), std::string::npos);
}

TEST(TokenizerMalformed, EmptyAndWhitespaceOnlyGiveOnlySpecialTokens) {
  for (const std::string& text :
       std::vector<std::string>{"", " ", "\t\n\r  \xE3\x80\x80", std::string("\0\x01", 2)}) {
    auto e = bundled().encode(text);
    ASSERT_TRUE(e.is_ok());
    EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "[SEP]"}));
  }
}

TEST(TokenizerMalformed, OneMegabyteOfText) {
  std::string text;
  while (text.size() < (1 << 20)) text += "tokenizer 服务 fast, ";
  auto e = bundled().encode(text);
  ASSERT_TRUE(e.is_ok());
  EXPECT_GT(e->size(), 200000u);
  EXPECT_EQ(e->byte_offsets[e->size() - 2].end, text.size() - 1);  // the last ","
  EncodeOptions options;
  options.max_length = 512;
  auto cut = bundled().encode(text, options);
  ASSERT_TRUE(cut.is_ok());
  ASSERT_EQ(cut->size(), 512u);
  EXPECT_EQ(cut->tokens.back(), "[SEP]");
  EXPECT_TRUE(std::equal(cut->ids.begin(), cut->ids.end() - 1, e->ids.begin()));
  // One 1 MB word: longer than max_input_chars_per_word, a single [UNK] over all of it.
  auto word = bundled().encode(std::string(1 << 20, 'x'));
  ASSERT_TRUE(word.is_ok());
  ASSERT_EQ(word->size(), 3u);
  EXPECT_EQ(word->byte_offsets[1], (Offset{0, 1u << 20}));
}

TEST(Tokenizer, EncodeIntoReusesTheEncoding) {
  Encoding out;
  ASSERT_TRUE(bundled().encode_into("你好", {}, &out).is_ok());
  EXPECT_EQ(out.size(), 4u);
  ASSERT_TRUE(bundled().encode_into("", {}, &out).is_ok());
  EXPECT_EQ(out.size(), 2u);
}

TEST(Tokenizer, ConcurrentEncodesAgreeWithSerialOnes) {
  std::vector<std::string> texts = {"你好，世界", "naïve café",          "hello [MASK] world",
                                    "数据 123",   std::string(300, 'z'), "İstanbul 😀"};
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) expected.push_back(bundled().encode(t)->ids);
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&] {
      for (int round = 0; round < 200; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          auto e = bundled().encode(texts[i]);
          if (!e.is_ok() || e->ids != expected[i]) ++mismatches;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(TokenizerLoad, VocabTxtWithTokenizerConfig) {
  TempDir dir;
  dir.write("vocab.txt", kSmallVocab);
  dir.write("tokenizer_config.json",
            R"({"do_lower_case": false, "strip_accents": null, "tokenize_chinese_chars": true,
                "unk_token": {"content": "[UNK]", "__type": "AddedToken"}})");
  auto tok = Tokenizer::load(dir.path());
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  EXPECT_FALSE((*tok)->normalizer_options().lowercase);
  auto e = (*tok)->encode("Hello hello");
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "[UNK]", "hello", "[SEP]"}));
}

TEST(TokenizerLoad, VocabTxtEdgeCases) {
  // CRLF line ends and trailing blanks are trimmed; a repeated token keeps its last line.
  auto tok = Tokenizer::from_vocab_txt("[UNK]\r\n[CLS] \r\n[SEP]\nx\nx\n", {});
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  EXPECT_EQ(*(*tok)->token_to_id("[CLS]"), 1);
  EXPECT_EQ(*(*tok)->token_to_id("x"), 4);
  EXPECT_FALSE(Tokenizer::from_vocab_txt("", {}).is_ok());
  EXPECT_FALSE(Tokenizer::from_vocab_txt("[CLS]\n[SEP]\n", {}).is_ok());  // no [UNK]
  EXPECT_FALSE(Tokenizer::from_vocab_txt("[UNK]\n[CLS]\n", {}).is_ok());  // no [SEP]
  EXPECT_FALSE(Tokenizer::from_vocab_txt("[UNK]\n[CLS]\n[SEP]\n\xFF\n", {}).is_ok());
}

TEST(TokenizerLoad, MissingFilesAreNotFound) {
  TempDir dir;
  auto tok = Tokenizer::load(dir.path());
  ASSERT_FALSE(tok.is_ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kNotFound);
}

std::string bert_json(const std::string& normalizer, const std::string& pre_tokenizer,
                      const std::string& post_processor, const std::string& model_type,
                      const std::string& added = "[]") {
  return R"({"version": "1.0", "truncation": null, "padding": null, "added_tokens": )" + added +
         R"(, "normalizer": )" + normalizer + R"(, "pre_tokenizer": )" + pre_tokenizer +
         R"(, "post_processor": )" + post_processor + R"(, "decoder": null, "model": {"type": ")" +
         model_type +
         R"(", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
         "max_input_chars_per_word": 100,
         "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "hello": 3, "##s": 4, "é": 5, "e": 6}}})";
}

const char* kBertNormalizer =
    R"({"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
        "strip_accents": null, "lowercase": false})";
const char* kBertPre = R"({"type": "BertPreTokenizer"})";
const char* kTemplate = R"({"type": "TemplateProcessing",
  "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
             {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
  "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
           {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
  "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                     "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}})";

TEST(TokenizerLoad, TokenizerJsonWithTemplateProcessing) {
  auto tok = Tokenizer::from_tokenizer_json(
      bert_json(kBertNormalizer, kBertPre, kTemplate, "WordPiece",
                R"([{"id": 1, "content": "[CLS]", "single_word": false, "lstrip": false,
                     "rstrip": false, "normalized": false, "special": true}])"));
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  EncodeOptions options;
  options.pair = "é";
  auto e = (*tok)->encode("hellos[CLS]", options);
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(tokens_of(*e),
            (std::vector<std::string>{"[CLS]", "hello", "##s", "[CLS]", "[SEP]", "é", "[SEP]"}));
  EXPECT_EQ(e->type_ids, (std::vector<int32_t>{0, 0, 0, 0, 0, 1, 1}));
}

TEST(TokenizerLoad, TokenizerJsonBertProcessingAndNullNormalizer) {
  auto tok = Tokenizer::from_tokenizer_json(bert_json(
      "null", kBertPre, R"({"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]})",
      "WordPiece"));
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  auto e = (*tok)->encode("Hello é");  // no normalizer: case and accents kept
  EXPECT_EQ(tokens_of(*e), (std::vector<std::string>{"[CLS]", "[UNK]", "é", "[SEP]"}));
}

// Two vocabulary tokens with one id (a malformed tokenizer.json that still loads): each keeps its
// own string. The fuzzer found this read past the token pool (ASan: heap-buffer-overflow) when the
// longer token came first; input in fuzz/regressions/loaders_fuzz/.
TEST(TokenizerLoad, TwoTokensSharingAnIdKeepTheirOwnStrings) {
  std::string json = bert_json(kBertNormalizer, kBertPre, kTemplate, "WordPiece");
  const std::string vocab = R"("hello": 3, "##s": 4, "é": 5, "e": 6})";
  ASSERT_NE(json.find(vocab), std::string::npos);
  json.replace(json.find(vocab), vocab.size(), R"("hello": 3, "##s": 4, "é": 5, "e": 6, "x": 3})");
  auto tok = Tokenizer::from_tokenizer_json(json);
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  auto e = (*tok)->encode("hello x e");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->ids, (std::vector<int32_t>{1, 3, 3, 6, 2}));
}

TEST(TokenizerLoad, OtherTokenizerTypesAreRefusedByName) {
  struct Case {
    std::string json;
    std::string name;
  };
  const std::vector<Case> cases = {
      {bert_json(kBertNormalizer, kBertPre, kTemplate, "BPE"), "'BPE'"},
      {bert_json(kBertNormalizer, kBertPre, kTemplate, "Unigram"), "'Unigram'"},
      {bert_json(R"({"type": "NFKC"})", kBertPre, kTemplate, "WordPiece"), "'NFKC'"},
      {bert_json(kBertNormalizer, R"({"type": "ByteLevel", "add_prefix_space": false})", kTemplate,
                 "WordPiece"),
       "'ByteLevel'"},
      {bert_json(kBertNormalizer, kBertPre,
                 R"({"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0]})",
                 "WordPiece"),
       "'RobertaProcessing'"},
      {bert_json(kBertNormalizer, kBertPre, kTemplate, "WordPiece",
                 R"([{"id": 1, "content": "[CLS]", "normalized": true}])"),
       "normalized=true"},
      {"{not json", "not valid JSON"},
  };
  for (const Case& c : cases) {
    auto tok = Tokenizer::from_tokenizer_json(c.json);
    ASSERT_FALSE(tok.is_ok()) << c.name;
    EXPECT_EQ(tok.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(tok.status().message().find(c.name), std::string::npos) << tok.status().message();
  }
}

TEST(TokenizerLoad, ModelDirPrefersTokenizerJson) {
  TempDir dir;
  dir.write("vocab.txt", kSmallVocab);
  dir.write("tokenizer.json", bert_json(kBertNormalizer, kBertPre, kTemplate, "WordPiece"));
  auto tok = Tokenizer::load(dir.path());
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  EXPECT_EQ((*tok)->source(), "tokenizer.json");
  EXPECT_EQ((*tok)->vocab_size(), 7u);
  dir.write("tokenizer.json", bert_json(kBertNormalizer, kBertPre, kTemplate, "BPE"));
  tok = Tokenizer::load(dir.path());
  ASSERT_FALSE(tok.is_ok());
  EXPECT_NE(tok.status().message().find("tokenizer.json"), std::string::npos);
}

TEST(LowercaseText, LowersEveryCodePointAndKeepsInvalidBytes) {
  EXPECT_EQ(lowercase_text("PARIS Ärger ΣΑΣ 你好"), "paris ärger σασ 你好");
  EXPECT_EQ(lowercase_text("\xC4\xB0"), "i\xCC\x87");  // U+0130: two code points
  EXPECT_EQ(lowercase_text("A\xFF"
                           "B"),
            "a\xFF"
            "b");  // an invalid byte stays as it is
  EXPECT_EQ(lowercase_text(""), "");
}

}  // namespace
}  // namespace tideserve::text
