// tideserve_unicode_props [--raw]: one line per code point (surrogates excluded) with the
// properties BertNormalizer/BertPreTokenizer use, in the format tools/make_hf_unicode_overrides.js
// and tests/text/hf_parity.js read:
//   <hex cp> <D|W|.> <S|P|.> <C|.> [nfd] [nfd without Mn] [lowercase]
// --raw prints utf8proc's data without the HF version overrides. The first line,
// "# utf8proc <version> unicode <version>", names the data.
#include <cstdio>
#include <cstring>
#include <string>

#include <utf8proc.h>

#include "tideserve/text/unicode.h"

namespace {

using namespace tideserve::text;

std::string hex_list(const char32_t* cps, size_t n) {
  std::string out;
  char buf[16];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%s%x", i ? " " : "", static_cast<unsigned>(cps[i]));
    out += buf;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const bool raw = argc > 1 && std::strcmp(argv[1], "--raw") == 0;
  auto flags_of = [&](char32_t cp) { return raw ? raw_char_flags(cp) : char_flags(cp); };
  std::printf("# utf8proc %s unicode %s\n", utf8proc_version(), utf8proc_unicode_version());
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const uint8_t f = flags_of(cp);
    const char cls = (f & kFlagDrop) ? 'D' : (f & kFlagWhitespace) ? 'W' : '.';
    const char pc = (f & kFlagWhitespace) ? 'S' : (f & kFlagPunct) ? 'P' : '.';
    const char zc = (f & kFlagChinese) ? 'C' : '.';
    char32_t nfd[kMaxDecomposition];
    const size_t n = raw ? raw_decompose(cp, nfd) : decompose(cp, nfd);
    char32_t stripped[kMaxDecomposition];
    size_t m = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!(flags_of(nfd[i]) & kFlagNonspacingMark)) stripped[m++] = nfd[i];
    }
    char32_t lower[kMaxLowercase];
    const size_t l = raw ? raw_to_lower(cp, lower) : to_lower(cp, lower);
    std::printf("%x %c %c %c [%s] [%s] [%s]\n", static_cast<unsigned>(cp), cls, pc, zc,
                hex_list(nfd, n).c_str(), hex_list(stripped, m).c_str(),
                hex_list(lower, l).c_str());
  }
  return 0;
}
