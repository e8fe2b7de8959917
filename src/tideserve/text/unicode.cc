#include "tideserve/text/unicode.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <memory>

namespace tideserve::text {
namespace {

struct FlagOverride {
  char32_t cp;
  uint8_t flag;  // one CharFlag
  bool value;
};

struct MapOverride {
  char32_t cp;
  uint8_t count;
  char32_t out[4];
};

#include "tideserve/text/hf_unicode_overrides.inc"

bool is_rust_whitespace(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_chinese(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool is_ascii_punct(char32_t cp) {
  return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
         (cp >= 0x7B && cp <= 0x7E);
}

template <typename T, size_t N>
const T* find_override(const T (&table)[N], char32_t cp) {
  if constexpr (N == 0) {
    return nullptr;
  } else {
    const T* it = std::lower_bound(std::begin(table), std::end(table), cp,
                                   [](const T& e, char32_t c) { return e.cp < c; });
    return (it != std::end(table) && it->cp == cp) ? it : nullptr;
  }
}

uint8_t compute_flags(char32_t cp) {
  uint8_t flags = raw_char_flags(cp);
  // Flag overrides are sorted by code point; a code point may have several.
  const FlagOverride* it =
      std::lower_bound(std::begin(kFlagOverrides), std::end(kFlagOverrides), cp,
                       [](const FlagOverride& e, char32_t c) { return e.cp < c; });
  for (; it != std::end(kFlagOverrides) && it->cp == cp; ++it) {
    flags = it->value ? (flags | it->flag) : (flags & ~it->flag);
  }
  char32_t buf[kMaxDecomposition];
  size_t n = decompose(cp, buf);
  flags &= ~(kFlagDecomposes | kFlagLowerChanges);
  if (n != 1 || buf[0] != cp) flags |= kFlagDecomposes;
  n = to_lower(cp, buf);
  if (n != 1 || buf[0] != cp) flags |= kFlagLowerChanges;
  return flags;
}

// Planes 0-3 (BMP, emoji and symbols, CJK extensions) are tabulated; higher planes are computed.
constexpr char32_t kTabulated = 0x40000;

const uint8_t* flag_table() {
  static const std::unique_ptr<uint8_t[]> table = [] {
    auto t = std::make_unique<uint8_t[]>(kTabulated);
    for (char32_t cp = 0; cp < kTabulated; ++cp) {
      t[cp] = (cp >= 0xD800 && cp <= 0xDFFF) ? 0 : compute_flags(cp);
    }
    return t;
  }();
  return table.get();
}

}  // namespace

uint8_t raw_char_flags(char32_t cp) {
  const utf8proc_category_t cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  uint8_t flags = 0;
  const bool keep_control = cp == '\t' || cp == '\n' || cp == '\r';
  if (cp == 0 || cp == 0xFFFD ||
      (!keep_control && (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
                         cat == UTF8PROC_CATEGORY_CO))) {
    flags |= kFlagDrop;
  }
  if (is_rust_whitespace(cp)) flags |= kFlagWhitespace;
  if (is_ascii_punct(cp) || (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO)) {
    flags |= kFlagPunct;
  }
  if (is_chinese(cp)) flags |= kFlagChinese;
  if (cat == UTF8PROC_CATEGORY_MN) flags |= kFlagNonspacingMark;
  char32_t buf[kMaxDecomposition];
  size_t n = raw_decompose(cp, buf);
  if (n != 1 || buf[0] != cp) flags |= kFlagDecomposes;
  n = raw_to_lower(cp, buf);
  if (n != 1 || buf[0] != cp) flags |= kFlagLowerChanges;
  if (utf8proc_get_property(static_cast<utf8proc_int32_t>(cp))->combining_class != 0) {
    flags |= kFlagCombining;
  }
  return flags;
}

size_t raw_decompose(char32_t cp, char32_t* out) {
  utf8proc_int32_t buf[kMaxDecomposition];
  utf8proc_ssize_t n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), buf,
                                               kMaxDecomposition, UTF8PROC_DECOMPOSE, nullptr);
  if (n <= 0 || static_cast<size_t>(n) > kMaxDecomposition) {
    out[0] = cp;
    return 1;
  }
  for (utf8proc_ssize_t i = 0; i < n; ++i) out[i] = static_cast<char32_t>(buf[i]);
  return static_cast<size_t>(n);
}

size_t raw_to_lower(char32_t cp, char32_t* out) {
  if (cp == 0x130) {  // the one unconditional multi-character lowercase mapping (SpecialCasing)
    out[0] = 'i';
    out[1] = 0x307;
    return 2;
  }
  out[0] = static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
  return 1;
}

uint8_t char_flags(char32_t cp) {
  if (cp < kTabulated) return flag_table()[cp];
  return compute_flags(cp);
}

int combining_class(char32_t cp) {
  return utf8proc_get_property(static_cast<utf8proc_int32_t>(cp))->combining_class;
}

size_t decompose(char32_t cp, char32_t* out) {
  if (const MapOverride* o = find_override(kDecompositionOverrides, cp)) {
    std::copy(o->out, o->out + o->count, out);
    return o->count;
  }
  return raw_decompose(cp, out);
}

size_t to_lower(char32_t cp, char32_t* out) {
  if (const MapOverride* o = find_override(kLowerOverrides, cp)) {
    std::copy(o->out, o->out + o->count, out);
    return o->count;
  }
  return raw_to_lower(cp, out);
}

}  // namespace tideserve::text
