// The files a model directory brings, parsed from arbitrary bytes: tokenizer.json, vocab.txt,
// config.json and safetensors. The first byte chooses the reader. Every malformed input must be
// an error Status.
#include "fuzz_util.h"
#include "tideserve/model/bert_config.h"
#include "tideserve/model/safetensors.h"
#include "tideserve/text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto tokenizer = tideserve::text::Tokenizer::from_tokenizer_json(body);
      if (tokenizer.is_ok()) (void)(*tokenizer)->encode("Hello 你好 wörld!");
      break;
    }
    case 1: {
      auto tokenizer = tideserve::text::Tokenizer::from_vocab_txt(body, {});
      if (tokenizer.is_ok()) (void)(*tokenizer)->encode("Hello 你好 wörld!");
      break;
    }
    case 2:
      (void)tideserve::parse_bert_config(body, "config.json");
      break;
    case 3: {
      const std::string path =
          tideserve::fuzz::scratch_file("model.safetensors", data + 1, size - 1);
      auto file = tideserve::SafetensorsFile::open(path);
      if (file.is_ok()) {
        std::vector<float> values;
        for (const tideserve::TensorView& t : file->tensors()) {
          values.clear();
          (void)tideserve::convert_to_f32(t, values);
        }
      }
      break;
    }
  }
  return 0;
}
