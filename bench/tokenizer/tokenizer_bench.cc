// tideserve_tokenizer_bench: tokens per second of tideserve's tokenizer over a corpus (one JSON
// string per line), single- or multi-threaded. bench/tokenizer/run.sh runs it next to
// hf_bench.js (Hugging Face tokenizers, same corpus, same settings, same thread count).
//
//   tideserve_tokenizer_bench --model DIR --corpus FILE [--threads N] [--seconds S]
// Prints one JSON object: {"impl":"tideserve","threads":N,"texts":...,"tokens":...,
// "seconds":...,"tokens_per_second":...}
#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tideserve/text/tokenizer.h"
#include "tideserve/util/mapped_file.h"

namespace {

using Clock = std::chrono::steady_clock;
using tideserve::text::Encoding;
using tideserve::text::Tokenizer;

// Encodes lines [begin, end) once; returns the number of tokens produced.
size_t encode_range(const Tokenizer& tok, const std::vector<std::string>& lines, size_t begin,
                    size_t end) {
  Encoding encoding;
  size_t tokens = 0;
  for (size_t i = begin; i < end; ++i) {
    if (!tok.encode_into(lines[i], {}, &encoding).is_ok()) std::abort();
    tokens += encoding.size();
  }
  return tokens;
}

// One pass over the corpus with `threads` threads, each on a contiguous share of the lines.
size_t encode_pass(const Tokenizer& tok, const std::vector<std::string>& lines, int threads) {
  if (threads <= 1) return encode_range(tok, lines, 0, lines.size());
  std::atomic<size_t> tokens{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const size_t begin = lines.size() * t / threads;
      const size_t end = lines.size() * (t + 1) / threads;
      tokens += encode_range(tok, lines, begin, end);
    });
  }
  for (auto& th : pool) th.join();
  return tokens;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir, corpus_path;
  int threads = 1;
  double min_seconds = 3.0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--model") {
      model_dir = argv[i + 1];
    } else if (arg == "--corpus") {
      corpus_path = argv[i + 1];
    } else if (arg == "--threads") {
      threads = std::atoi(argv[i + 1]);
    } else if (arg == "--seconds") {
      min_seconds = std::atof(argv[i + 1]);
    }
  }
  if (model_dir.empty() || corpus_path.empty() || threads < 1) {
    std::fprintf(stderr,
                 "usage: tideserve_tokenizer_bench --model DIR --corpus FILE [--threads N] "
                 "[--seconds S]\n");
    return 2;
  }
  auto tok = Tokenizer::load(model_dir);
  if (!tok.is_ok()) {
    std::fprintf(stderr, "%s\n", tok.status().to_string().c_str());
    return 1;
  }
  auto text = tideserve::read_text_file(corpus_path);
  if (!text.is_ok()) {
    std::fprintf(stderr, "%s\n", text.status().to_string().c_str());
    return 1;
  }
  std::vector<std::string> lines;
  simdjson::dom::parser parser;
  for (size_t pos = 0; pos < text->size();) {
    size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    std::string_view line;
    if (parser.parse(text->data() + pos, end - pos).get(line) != simdjson::SUCCESS) {
      std::fprintf(stderr, "%s: line %zu is not a JSON string\n", corpus_path.c_str(),
                   lines.size() + 1);
      return 1;
    }
    lines.emplace_back(line);
    pos = end + 1;
  }

  encode_pass(**tok, lines, threads);  // warm-up: tables, scratch buffers, caches
  size_t passes = 0, tokens = 0;
  const auto start = Clock::now();
  double seconds = 0;
  do {
    tokens += encode_pass(**tok, lines, threads);
    ++passes;
    seconds = std::chrono::duration<double>(Clock::now() - start).count();
  } while (seconds < min_seconds);
  std::printf(
      "{\"impl\":\"tideserve\",\"threads\":%d,\"texts\":%zu,\"passes\":%zu,\"tokens\":%zu,"
      "\"seconds\":%.3f,\"tokens_per_second\":%.0f}\n",
      threads, lines.size(), passes, tokens, seconds, tokens / seconds);
  return 0;
}
