// Loading: vocab.txt (+ tokenizer_config.json) and tokenizer.json, both reduced to a
// TokenizerSpec, then Impl::finish() builds the lookup structures.
#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include <fmt/format.h>

#include "tideserve/text/tokenizer.h"
#include "tideserve/text/tokenizer_impl.h"
#include "tideserve/util/mapped_file.h"

namespace tideserve::text {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

bool valid_utf8(std::string_view s) {
  return simdjson::validate_utf8(s.data(), s.size());
}

// Rust's str::trim_end: drops trailing White_Space characters.
std::string_view trim_end_whitespace(std::string_view s) {
  static constexpr std::string_view kMultiByte[] = {
      "\u0085", "\u00A0", "\u1680", "\u2000", "\u2001", "\u2002", "\u2003",
      "\u2004", "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200A",
      "\u2028", "\u2029", "\u202F", "\u205F", "\u3000"};
  for (;;) {
    if (!s.empty() && (s.back() == ' ' || (s.back() >= '\t' && s.back() <= '\r'))) {
      s.remove_suffix(1);
      continue;
    }
    bool trimmed = false;
    for (std::string_view w : kMultiByte) {
      if (s.size() >= w.size() && s.substr(s.size() - w.size()) == w) {
        s.remove_suffix(w.size());
        trimmed = true;
        break;
      }
    }
    if (!trimmed) return s;
  }
}

std::vector<TemplatePiece> bert_template(int32_t cls, int32_t sep, bool pair) {
  std::vector<TemplatePiece> t = {{false, 0, cls, 0}, {true, 0, -1, 0}, {false, 0, sep, 0}};
  if (pair) {
    t.push_back({true, 1, -1, 1});
    t.push_back({false, 0, sep, 1});
  }
  return t;
}

std::optional<int32_t> find_id(const TokenizerSpec& spec, std::string_view token) {
  // Last entry wins, like a HashMap filled line by line.
  for (auto it = spec.vocab.rbegin(); it != spec.vocab.rend(); ++it) {
    if (it->first == token) return it->second;
  }
  return std::nullopt;
}

// A special token in tokenizer_config.json: "[UNK]" or {"content": "[UNK]", ...}.
std::optional<std::string> config_token(object config, const char* key) {
  element value;
  if (config[key].get(value) != simdjson::SUCCESS) return std::nullopt;
  std::string_view s;
  if (value.get(s) == simdjson::SUCCESS) return std::string(s);
  if (value.is_object() && value["content"].get(s) == simdjson::SUCCESS) return std::string(s);
  return std::nullopt;
}

Status read_bool(object o, const char* key, const std::string& where, bool* out) {
  element value;
  if (o[key].get(value) != simdjson::SUCCESS) return Status::ok();  // absent: keep the default
  bool b = false;
  if (value.get(b) != simdjson::SUCCESS) {
    return invalid_argument(fmt::format("{}: \"{}\" must be a boolean", where, key));
  }
  *out = b;
  return Status::ok();
}

Status read_optional_bool(object o, const char* key, const std::string& where,
                          std::optional<bool>* out) {
  element value;
  if (o[key].get(value) != simdjson::SUCCESS || value.is_null()) return Status::ok();
  bool b = false;
  if (value.get(b) != simdjson::SUCCESS) {
    return invalid_argument(fmt::format("{}: \"{}\" must be a boolean or null", where, key));
  }
  *out = b;
  return Status::ok();
}

std::string type_of(object o) {
  std::string_view type;
  if (o["type"].get(type) != simdjson::SUCCESS) return "";
  return std::string(type);
}

Result<std::vector<TemplatePiece>> parse_template(
    array pieces, const std::unordered_map<std::string, std::vector<int32_t>>& specials,
    bool pair) {
  std::vector<TemplatePiece> out;
  int seen[2] = {0, 0};
  for (element piece : pieces) {
    object o;
    if (piece.get(o) != simdjson::SUCCESS) {
      return invalid_argument("tokenizer.json: TemplateProcessing piece is not an object");
    }
    object inner;
    std::string_view id;
    uint64_t type_id = 0;
    if (o["Sequence"].get(inner) == simdjson::SUCCESS) {
      if (inner["id"].get(id) != simdjson::SUCCESS || (id != "A" && id != "B") ||
          inner["type_id"].get(type_id) != simdjson::SUCCESS) {
        return invalid_argument("tokenizer.json: TemplateProcessing sequence must be A or B");
      }
      const int seq = id == "A" ? 0 : 1;
      ++seen[seq];
      out.push_back({true, seq, -1, static_cast<int32_t>(type_id)});
    } else if (o["SpecialToken"].get(inner) == simdjson::SUCCESS) {
      if (inner["id"].get(id) != simdjson::SUCCESS ||
          inner["type_id"].get(type_id) != simdjson::SUCCESS) {
        return invalid_argument(
            "tokenizer.json: TemplateProcessing special token needs id, type_id");
      }
      auto it = specials.find(std::string(id));
      if (it == specials.end()) {
        return invalid_argument(
            fmt::format("tokenizer.json: TemplateProcessing uses unknown special token '{}'", id));
      }
      for (int32_t token_id : it->second) {
        out.push_back({false, 0, token_id, static_cast<int32_t>(type_id)});
      }
    } else {
      return invalid_argument(
          "tokenizer.json: TemplateProcessing piece is neither Sequence nor SpecialToken");
    }
  }
  if (seen[0] != 1 || seen[1] != (pair ? 1 : 0)) {
    return invalid_argument(fmt::format("tokenizer.json: the {} template must contain $A once{}",
                                        pair ? "pair" : "single",
                                        pair ? " and $B once" : " and no $B"));
  }
  return out;
}

Status parse_post_processor(element value, TokenizerSpec* spec) {
  if (value.is_null()) {  // HF's default: sequences only, the pair with type id 1
    spec->single_template = {{true, 0, -1, 0}};
    spec->pair_template = {{true, 0, -1, 0}, {true, 1, -1, 1}};
    return Status::ok();
  }
  object o;
  if (value.get(o) != simdjson::SUCCESS) {
    return invalid_argument("tokenizer.json: post_processor must be an object or null");
  }
  const std::string type = type_of(o);
  if (type == "BertProcessing") {
    int32_t ids[2];
    const char* keys[2] = {"cls", "sep"};
    for (int k = 0; k < 2; ++k) {
      array pair_value;
      uint64_t id = 0;
      if (o[keys[k]].get(pair_value) != simdjson::SUCCESS || pair_value.size() != 2 ||
          pair_value.at(1).get(id) != simdjson::SUCCESS) {
        return invalid_argument(
            fmt::format("tokenizer.json: BertProcessing.{} must be [token, id]", keys[k]));
      }
      ids[k] = static_cast<int32_t>(id);
    }
    spec->single_template = bert_template(ids[0], ids[1], false);
    spec->pair_template = bert_template(ids[0], ids[1], true);
    return Status::ok();
  }
  if (type == "TemplateProcessing") {
    std::unordered_map<std::string, std::vector<int32_t>> specials;
    object special_tokens;
    if (o["special_tokens"].get(special_tokens) == simdjson::SUCCESS) {
      for (auto field : special_tokens) {
        array ids;
        object token;
        if (field.value.get(token) != simdjson::SUCCESS ||
            token["ids"].get(ids) != simdjson::SUCCESS) {
          return invalid_argument("tokenizer.json: TemplateProcessing special token needs ids");
        }
        std::vector<int32_t>& list = specials[std::string(field.key)];
        for (element id : ids) {
          uint64_t v = 0;
          if (id.get(v) != simdjson::SUCCESS) {
            return invalid_argument("tokenizer.json: TemplateProcessing id is not an integer");
          }
          list.push_back(static_cast<int32_t>(v));
        }
      }
    }
    array single, pair;
    if (o["single"].get(single) != simdjson::SUCCESS || o["pair"].get(pair) != simdjson::SUCCESS) {
      return invalid_argument("tokenizer.json: TemplateProcessing needs single and pair");
    }
    auto single_template = parse_template(single, specials, false);
    if (!single_template.is_ok()) return single_template.status();
    auto pair_template = parse_template(pair, specials, true);
    if (!pair_template.is_ok()) return pair_template.status();
    spec->single_template = std::move(single_template).value();
    spec->pair_template = std::move(pair_template).value();
    return Status::ok();
  }
  return invalid_argument(fmt::format(
      "tokenizer.json: post_processor type '{}' is not supported (BERT family: BertProcessing or "
      "TemplateProcessing)",
      type));
}

Status parse_tokenizer_json(std::string_view json, TokenizerSpec* spec) {
  simdjson::dom::parser parser;
  element doc;
  if (auto error = parser.parse(json.data(), json.size()).get(doc); error) {
    return invalid_argument(
        fmt::format("tokenizer.json is not valid JSON: {}", simdjson::error_message(error)));
  }
  object root;
  if (doc.get(root) != simdjson::SUCCESS) {
    return invalid_argument("tokenizer.json: the document is not an object");
  }

  // model
  object model;
  if (root["model"].get(model) != simdjson::SUCCESS) {
    return invalid_argument("tokenizer.json: no \"model\" object");
  }
  const std::string model_type = type_of(model);
  if (model_type != "WordPiece") {
    return invalid_argument(fmt::format(
        "tokenizer.json: model type '{}' is not supported (tideserve implements the BERT family: "
        "WordPiece)",
        model_type.empty() ? "(none)" : model_type));
  }
  object vocab;
  if (model["vocab"].get(vocab) != simdjson::SUCCESS) {
    return invalid_argument("tokenizer.json: model.vocab must be an object");
  }
  for (auto field : vocab) {
    uint64_t id = 0;
    if (field.value.get(id) != simdjson::SUCCESS || id > INT32_MAX) {
      return invalid_argument(
          fmt::format("tokenizer.json: vocab id of '{}' is not a valid integer", field.key));
    }
    spec->vocab.emplace_back(std::string(field.key), static_cast<int32_t>(id));
  }
  std::string_view s;
  if (model["unk_token"].get(s) == simdjson::SUCCESS) spec->unk_token = std::string(s);
  if (model["continuing_subword_prefix"].get(s) == simdjson::SUCCESS) {
    spec->continuing_subword_prefix = std::string(s);
  }
  uint64_t max_chars = 0;
  if (model["max_input_chars_per_word"].get(max_chars) == simdjson::SUCCESS) {
    spec->max_input_chars_per_word = max_chars;
  }

  // normalizer
  element normalizer;
  if (root["normalizer"].get(normalizer) != simdjson::SUCCESS || normalizer.is_null()) {
    spec->normalize = false;
  } else {
    object o;
    if (normalizer.get(o) != simdjson::SUCCESS || type_of(o) != "BertNormalizer") {
      return invalid_argument(fmt::format(
          "tokenizer.json: normalizer type '{}' is not supported (BERT family: BertNormalizer)",
          normalizer.is_object() ? type_of(o) : "?"));
    }
    const std::string where = "tokenizer.json normalizer";
    TS_RETURN_IF_ERROR(read_bool(o, "clean_text", where, &spec->normalizer.clean_text));
    TS_RETURN_IF_ERROR(
        read_bool(o, "handle_chinese_chars", where, &spec->normalizer.handle_chinese_chars));
    TS_RETURN_IF_ERROR(
        read_optional_bool(o, "strip_accents", where, &spec->normalizer.strip_accents));
    TS_RETURN_IF_ERROR(read_bool(o, "lowercase", where, &spec->normalizer.lowercase));
  }

  // pre_tokenizer
  object pre_tokenizer;
  if (root["pre_tokenizer"].get(pre_tokenizer) != simdjson::SUCCESS ||
      type_of(pre_tokenizer) != "BertPreTokenizer") {
    const std::string type = root["pre_tokenizer"].get(pre_tokenizer) == simdjson::SUCCESS
                                 ? type_of(pre_tokenizer)
                                 : "null";
    return invalid_argument(fmt::format(
        "tokenizer.json: pre_tokenizer type '{}' is not supported (BERT family: BertPreTokenizer)",
        type));
  }

  // post_processor
  element post_processor;
  if (root["post_processor"].get(post_processor) != simdjson::SUCCESS) {
    return invalid_argument("tokenizer.json: no \"post_processor\"");
  }
  TS_RETURN_IF_ERROR(parse_post_processor(post_processor, spec));

  // added_tokens
  array added;
  if (root["added_tokens"].get(added) == simdjson::SUCCESS) {
    for (element e : added) {
      object o;
      std::string_view content;
      uint64_t id = 0;
      if (e.get(o) != simdjson::SUCCESS || o["content"].get(content) != simdjson::SUCCESS ||
          o["id"].get(id) != simdjson::SUCCESS || id > INT32_MAX) {
        return invalid_argument("tokenizer.json: added token needs content and id");
      }
      for (const char* flag : {"single_word", "lstrip", "rstrip", "normalized"}) {
        bool value = false;
        if (o[flag].get(value) == simdjson::SUCCESS && value) {
          return invalid_argument(fmt::format(
              "tokenizer.json: added token '{}' with {}=true is not supported", content, flag));
        }
      }
      if (content.empty()) return invalid_argument("tokenizer.json: added token with no content");
      spec->added_tokens.push_back({std::string(content), static_cast<int32_t>(id)});
    }
  }
  return Status::ok();
}

Status parse_vocab_txt(std::string_view text, TokenizerSpec* spec) {
  if (!valid_utf8(text)) return invalid_argument("vocab.txt is not valid UTF-8");
  std::unordered_map<std::string_view, int32_t> ids;
  std::vector<std::string_view> order;
  int32_t index = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    const size_t next = end == std::string_view::npos ? text.size() : end + 1;
    if (end == std::string_view::npos) end = text.size();
    const std::string_view token = trim_end_whitespace(text.substr(pos, end - pos));
    auto [it, inserted] = ids.try_emplace(token, index);
    if (inserted) {
      order.push_back(token);
    } else {
      it->second = index;  // a repeated line: the last one wins
    }
    ++index;
    pos = next;
  }
  if (index == 0) return invalid_argument("vocab.txt is empty");
  spec->vocab.reserve(order.size());
  for (std::string_view token : order) spec->vocab.emplace_back(std::string(token), ids[token]);
  return Status::ok();
}

// vocab.txt route: BertTokenizerFast's layout (template [CLS] A [SEP] B [SEP], the special
// tokens matched verbatim in the input).
Status finish_vocab_spec(TokenizerSpec* spec, const std::vector<std::string>& special_names,
                         const std::string& cls, const std::string& sep) {
  const auto cls_id = find_id(*spec, cls);
  const auto sep_id = find_id(*spec, sep);
  if (!cls_id || !sep_id) {
    return invalid_argument(fmt::format("vocab.txt has no {} token", !cls_id ? cls : sep));
  }
  spec->single_template = bert_template(*cls_id, *sep_id, false);
  spec->pair_template = bert_template(*cls_id, *sep_id, true);
  for (const std::string& name : special_names) {
    if (auto id = find_id(*spec, name)) spec->added_tokens.push_back({name, *id});
  }
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<Tokenizer::Impl>> Tokenizer::Impl::finish(TokenizerSpec spec) {
  auto impl = std::make_unique<Impl>();
  impl->source = spec.source;
  impl->normalizer_options = spec.normalizer;
  impl->clean_text = spec.normalize && spec.normalizer.clean_text;
  impl->handle_chinese_chars = spec.normalize && spec.normalizer.handle_chinese_chars;
  impl->lowercase = spec.normalize && spec.normalizer.lowercase;
  impl->strip_accents =
      spec.normalize && spec.normalizer.strip_accents.value_or(spec.normalizer.lowercase);
  impl->max_input_chars_per_word = spec.max_input_chars_per_word;

  // Token strings: the vocabulary, then added tokens whose id it lacks.
  int32_t max_id = -1;
  for (const auto& [token, id] : spec.vocab) {
    if (!valid_utf8(token)) return invalid_argument("vocabulary token is not valid UTF-8");
    max_id = std::max(max_id, id);
  }
  for (const AddedToken& t : spec.added_tokens) max_id = std::max(max_id, t.id);
  impl->id_to_span.assign(static_cast<size_t>(max_id + 1), {0, 0});
  size_t pool_size = 0;
  for (const auto& entry : spec.vocab) pool_size += entry.first.size();
  for (const AddedToken& t : spec.added_tokens) pool_size += t.content.size();
  if (pool_size > UINT32_MAX) return invalid_argument("vocabulary too large");
  impl->pool.reserve(pool_size);
  std::vector<bool> has_string(impl->id_to_span.size(), false);
  // Returns where `token` starts in the pool. Two tokens may share an id (a malformed but
  // loadable tokenizer.json): both keep their own string, the id names the last.
  auto add_string = [&](const std::string& token, int32_t id) {
    const auto offset = static_cast<uint32_t>(impl->pool.size());
    impl->id_to_span[id] = {offset, static_cast<uint32_t>(token.size())};
    impl->pool += token;
    has_string[id] = true;
    return offset;
  };
  std::vector<uint32_t> vocab_offsets;
  vocab_offsets.reserve(spec.vocab.size());
  for (const auto& [token, id] : spec.vocab) vocab_offsets.push_back(add_string(token, id));
  for (const AddedToken& t : spec.added_tokens) {
    if (!has_string[t.id]) add_string(t.content, t.id);
  }
  std::vector<std::pair<std::string_view, int32_t>> initial, continuation;
  initial.reserve(spec.vocab.size());
  const std::string_view prefix = spec.continuing_subword_prefix;
  for (size_t v = 0; v < spec.vocab.size(); ++v) {
    const auto& [token, id] = spec.vocab[v];
    const std::string_view view(impl->pool.data() + vocab_offsets[v], token.size());
    impl->token_ids.emplace(view, id);
    initial.emplace_back(view, id);
    if (view.size() > prefix.size() && view.substr(0, prefix.size()) == prefix) {
      continuation.emplace_back(view.substr(prefix.size()), id);
    }
  }
  for (const AddedToken& t : spec.added_tokens) {
    const auto [offset, size] = impl->id_to_span[t.id];
    impl->token_ids.emplace(std::string_view(impl->pool.data() + offset, size), t.id);
  }
  impl->initial_trie.build(std::move(initial));
  impl->continuation_trie.build(std::move(continuation));

  auto unk = impl->token_ids.find(spec.unk_token);
  if (unk == impl->token_ids.end()) {
    return invalid_argument(
        fmt::format("the vocabulary has no unknown token '{}'", spec.unk_token));
  }
  impl->unk_id = unk->second;

  impl->added_tokens = std::move(spec.added_tokens);
  std::stable_sort(
      impl->added_tokens.begin(), impl->added_tokens.end(),
      [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  for (const AddedToken& t : impl->added_tokens) {
    impl->added_first_byte[static_cast<uint8_t>(t.content[0])] = true;
  }

  impl->single_template = std::move(spec.single_template);
  impl->pair_template = std::move(spec.pair_template);
  for (const TemplatePiece& p : impl->single_template) impl->single_specials += !p.is_sequence;
  for (const TemplatePiece& p : impl->pair_template) impl->pair_specials += !p.is_sequence;
  for (const auto* t : {&impl->single_template, &impl->pair_template}) {
    for (const TemplatePiece& p : *t) {
      if (!p.is_sequence && (p.id < 0 || static_cast<size_t>(p.id) >= impl->id_to_span.size())) {
        return invalid_argument(fmt::format("special token id {} is outside the vocabulary", p.id));
      }
    }
  }
  return impl;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_tokenizer_json(std::string_view json) {
  TokenizerSpec spec;
  spec.source = "tokenizer.json";
  TS_RETURN_IF_ERROR(parse_tokenizer_json(json, &spec));
  auto impl = Impl::finish(std::move(spec));
  if (!impl.is_ok()) return impl.status();
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl).value()));
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::from_vocab_txt(std::string_view vocab_txt,
                                                             const BertNormalizerOptions& options) {
  TokenizerSpec spec;
  spec.source = "vocab.txt";
  spec.normalizer = options;
  TS_RETURN_IF_ERROR(parse_vocab_txt(vocab_txt, &spec));
  TS_RETURN_IF_ERROR(
      finish_vocab_spec(&spec, {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}, "[CLS]", "[SEP]"));
  auto impl = Impl::finish(std::move(spec));
  if (!impl.is_ok()) return impl.status();
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl).value()));
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const fs::path dir(model_dir);
  std::error_code ec;
  const fs::path json_path = dir / "tokenizer.json";
  if (fs::exists(json_path, ec)) {
    auto text = read_text_file(json_path.string());
    if (!text.is_ok()) return text.status();
    auto tok = from_tokenizer_json(*text);
    if (!tok.is_ok()) {
      return Status(tok.status().code(),
                    fmt::format("{}: {}", json_path.string(), tok.status().message()));
    }
    return tok;
  }
  const fs::path vocab_path = dir / "vocab.txt";
  if (!fs::exists(vocab_path, ec)) {
    return not_found(fmt::format("{} has neither tokenizer.json nor vocab.txt", model_dir));
  }
  auto vocab_text = read_text_file(vocab_path.string());
  if (!vocab_text.is_ok()) return vocab_text.status();

  TokenizerSpec spec;
  spec.source = "vocab.txt";
  // transformers' BertTokenizer defaults.
  std::string names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  const fs::path config_path = dir / "tokenizer_config.json";
  if (fs::exists(config_path, ec)) {
    auto config_text = read_text_file(config_path.string());
    if (!config_text.is_ok()) return config_text.status();
    simdjson::dom::parser parser;
    element doc;
    object config;
    if (parser.parse(config_text->data(), config_text->size()).get(doc) != simdjson::SUCCESS ||
        doc.get(config) != simdjson::SUCCESS) {
      return invalid_argument(fmt::format("{} is not a JSON object", config_path.string()));
    }
    const std::string where = config_path.string();
    TS_RETURN_IF_ERROR(read_bool(config, "do_lower_case", where, &spec.normalizer.lowercase));
    TS_RETURN_IF_ERROR(
        read_optional_bool(config, "strip_accents", where, &spec.normalizer.strip_accents));
    TS_RETURN_IF_ERROR(
        read_bool(config, "tokenize_chinese_chars", where, &spec.normalizer.handle_chinese_chars));
    const char* keys[5] = {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"};
    for (int k = 0; k < 5; ++k) {
      if (auto name = config_token(config, keys[k])) names[k] = *name;
    }
  }
  spec.unk_token = names[1];
  Status status = parse_vocab_txt(*vocab_text, &spec);
  if (status.is_ok()) {
    status = finish_vocab_spec(&spec, {names, names + 5}, names[2], names[3]);
  }
  if (!status.is_ok()) {
    return Status(status.code(), fmt::format("{}: {}", vocab_path.string(), status.message()));
  }
  auto impl = Impl::finish(std::move(spec));
  if (!impl.is_ok()) {
    return Status(impl.status().code(),
                  fmt::format("{}: {}", vocab_path.string(), impl.status().message()));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl).value()));
}

}  // namespace tideserve::text
