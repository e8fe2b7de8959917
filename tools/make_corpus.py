#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/corpus.jsonl, the text the tokenizer parity test and benchmark use.

One JSON string per line (so a text may hold newlines, tabs and control characters). Two sources:

1. Real sentences from Debian's gettext catalogs (/usr/share/locale/<lang>/LC_MESSAGES/<domain>.mo)
   of packages every Debian 12 system carries: coreutils, dpkg, apt, iso-codes (country and
   language names), libc-l10n, bash, grep, sed, tar, findutils, systemd. Translations give
   simplified and traditional Chinese, Japanese, Korean, Russian/Ukrainian, Arabic, Hebrew, Greek,
   Thai, Vietnamese and accented Latin; the English msgids give command-line help, format strings
   and option syntax. A catalog that is missing is skipped (the script says so); with none at all
   the corpus is synthetic only, still deterministic.
2. Synthetic cases written here: emoji and ZWJ sequences, combining marks, full-width forms,
   control and format characters, tabs/newlines, very long words (around the 100-character
   WordPiece limit), numbers with punctuation, URLs, code, literal special tokens, tricky case
   mappings, CJK compatibility and extension ideographs, and code points drawn from every plane.

Deterministic for a given set of installed catalogs (seeded random, sorted inputs). Plain python3.
"""
import argparse
import gettext
import json
import os
import random
import sys

LANGS = ["zh_CN", "zh_TW", "ja", "ko", "ru", "uk", "ar", "he", "el", "th", "vi", "fr", "de", "es",
         "pt_BR", "pl", "cs", "tr", "sv", "hu"]
DOMAINS = ["coreutils", "dpkg", "apt", "libapt-pkg6.0", "iso_3166-1", "iso_639-2", "libc", "bash",
           "grep", "sed", "tar", "findutils", "systemd"]
LOCALE_DIR = "/usr/share/locale"


def catalog_strings(path):
    with open(path, "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog  # msgid -> msgstr
    out = []
    for msgid in sorted(k for k in catalog if isinstance(k, str)):
        if msgid and catalog[msgid]:
            out.append((msgid, catalog[msgid]))
    return out


def collect_catalog_text(log):
    translated, english = [], []
    found = 0
    for lang in LANGS:
        for domain in DOMAINS:
            path = os.path.join(LOCALE_DIR, lang, "LC_MESSAGES", domain + ".mo")
            if not os.path.exists(path):
                continue
            try:
                pairs = catalog_strings(path)
            except Exception as e:  # a broken catalog is skipped, not fatal
                log(f"skip {path}: {e}")
                continue
            found += 1
            for msgid, msgstr in pairs:
                translated.append(msgstr)
                english.append(msgid)
    log(f"{found} gettext catalogs found under {LOCALE_DIR}")
    return translated, sorted(set(english))


EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "❤️", "🔥", "🎉", "🇨🇳", "🇯🇵", "🏳️‍🌈", "👨‍👩‍👧‍👦",
         "👩🏻‍💻", "🧑‍🚀", "🐱", "🍜", "☕", "✈️", "⚽", "💯", "🙏", "🤖", "🧠", "🫠", "🪐",
         "1️⃣", "#️⃣", "©️", "™", "🅰️"]
COMBINING = ["\u0301", "\u0300", "\u0308", "\u0327", "\u0303", "\u030c", "\u0323", "\u0331",
             "\u20dd", "\u0489", "\u0e31", "\u093f", "\u0903", "\U0001d165", "\u0345", "\u05b4",
             "\u064b", "\u0670", "\u302a", "\u3099"]
CONTROLS = ["\u0000", "\u0001", "\u0007", "\u0008", "\u000b", "\u000c", "\u001b", "\u001f",
            "\u007f", "\u0085", "\u00ad", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f",
            "\u2028", "\u2029", "\u2060", "\ufeff", "\ufffd", "\ue000", "\U000f0000", "\u061c",
            "\u0890", "\U000e0001", "\u180e", "\u3000", "\u00a0", "\u2009", "\u202f"]
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\r\n", " \t ", "\u3000", "\u00a0"]
WORDS_EN = ["tokenizer", "embedding", "Kubernetes", "latency", "throughput", "unbelievable",
            "internationalization", "serving", "model", "BERT", "WordPiece", "McDonald's",
            "don't", "e-mail", "naïve", "café", "résumé", "Straße", "İstanbul", "ΣΊΣΥΦΟΣ",
            "ǅemal", "ﬁnance", "Ǆ", "K", "Ω", "ß", "Å", "ÀÉÎÕÜ", "ĳssel", "ŉ", "ǰ", "ẞ"]
NUMBERS = ["1,234.56", "3.14159", "-0.5e-10", "2024-01-31", "12:30:45", "+86-10-1234-5678",
           "50%", "$99.99", "€1.000,00", "¥500", "1/2", "½", "①②③", "Ⅻ", "٣٤٥", "१२३",
           "v1.2.3-rc.1", "0x7FFF_FFFF", "10^9", "~42", "3×4=12", "２０２４年", "一千二百"]
URLS = ["https://example.com/path?q=1&x=y#frag", "http://例子.测试/路径", "ftp://a.b/c_d-e.f",
        "mailto:user@example.org", "file:///usr/share/doc/README.md", "www.tideserve.dev:8080/v1/embed",
        "https://ja.wikipedia.org/wiki/東京", "git@github.com:org/repo.git"]
CODE = ["for (int i = 0; i < n; ++i) { sum += a[i]; }", "def f(x): return x**2 if x > 0 else -x",
        "SELECT id, name FROM users WHERE age >= 18;", "std::vector<std::string> v{\"a\", \"b\"};",
        "if [ -z \"$HOME\" ]; then echo 'no home' >&2; fi", "{\"key\": [1, 2.5, null, true]}",
        "x = {'a': 1}; y = x.get('b', None)", "<div class=\"c\">&amp; &lt;tag&gt;</div>",
        "printf(\"%5.2f%%\\n\", pct);", "a->b = *c++ ^ ~d | (e << 2) && !f;",
        "λx.x ≡ id ∘ id", "∀ε>0 ∃δ>0: |x−a|<δ ⇒ |f(x)−f(a)|<ε"]
SPECIAL = ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[mask]", "[CLS", "[[SEP]]", "x[MASK]y",
           "[unused1]", "##ing", "##", "[SEP][SEP]"]
FULLWIDTH = ["ＡＢＣ", "ｔｏｋｅｎ", "１２３", "！？", "（全角）", "ｶﾀｶﾅ", "＠＃＄％", "～"]
CJK_EXTRA = ["豈", "更", "車", "賈", "𠀀", "𠮷", "𪚥", "㐀", "㒞", "鿿", "〇", "々", "〆", "ヶ",
             "丶", "⺀", "⼀", "㈱", "㍿"]
KANA = ["ひらがな", "カタカナ", "がぎぐげご", "ぱぴぷぺぽ", "ヴ", "ー", "ゝゞ", "ヽヾ", "ｱｲｳ"]
HANGUL = ["한국어", "안녕하세요", "가나다라", "값", "각", "ㄱㄴㄷ", "뷁", "똠방각하"]
SCRIPTS = ["Привет, мир!", "Ёжик в тумане", "مرحبا بالعالم", "שָׁלוֹם", "Γειά σου Κόσμε",
           "สวัสดีครับ", "नमस्ते दुनिया", "Xin chào thế giới", "Ελληνικά ΐΰ", "Ուրախ", "ქართული",
           "ᎣᏏᏲ", "ᠮᠣᠩᠭᠣᠯ", "ꦗꦮ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝐁𝐨𝐥𝐝", "ℌℑℜ"]


def random_codepoint(rng):
    plane = rng.choice([0, 0, 0, 0, 1, 1, 2, 3, 14, 15])
    while True:
        cp = plane * 0x10000 + rng.randrange(0x10000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def long_word(rng):
    n = rng.choice([99, 100, 101, 150, 300, rng.randrange(20, 120)])
    alphabet = rng.choice(["abcdefghij", "aeiouéè", "ab", "数据", "xyz0123"])
    return "".join(rng.choice(alphabet) for _ in range(n))


def synthetic_fragment(rng):
    kind = rng.randrange(14)
    if kind == 0:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randrange(1, 4)))
    if kind == 1:
        base = rng.choice(["e", "a", "o", "n", "中", "x", "İ", "ﬃ"])
        return base + "".join(rng.choice(COMBINING) for _ in range(rng.randrange(1, 4)))
    if kind == 2:
        return rng.choice(CONTROLS)
    if kind == 3:
        return rng.choice(WORDS_EN)
    if kind == 4:
        return rng.choice(NUMBERS)
    if kind == 5:
        return rng.choice(URLS)
    if kind == 6:
        return rng.choice(CODE)
    if kind == 7:
        return rng.choice(SPECIAL)
    if kind == 8:
        return rng.choice(FULLWIDTH)
    if kind == 9:
        return "".join(rng.choice(CJK_EXTRA) for _ in range(rng.randrange(1, 5)))
    if kind == 10:
        return rng.choice(KANA + HANGUL)
    if kind == 11:
        return rng.choice(SCRIPTS)
    if kind == 12:
        return "".join(random_codepoint(rng) for _ in range(rng.randrange(1, 6)))
    return long_word(rng)


def mixed_line(rng, pools):
    parts = []
    for _ in range(rng.randrange(1, 7)):
        source = rng.random()
        if source < 0.55 and pools["translated"]:
            text = rng.choice(pools["translated"])
        elif source < 0.65 and pools["english"]:
            text = rng.choice(pools["english"])
        else:
            text = synthetic_fragment(rng)
        if rng.random() < 0.15:  # glue without a separator: words touching other scripts
            parts.append(text)
        else:
            parts.append(text + rng.choice(SPACES))
    return "".join(parts)


def clip(text, limit):
    return text if len(text) <= limit else text[:limit]


def build(lines, seed, log):
    rng = random.Random(seed)
    translated, english = collect_catalog_text(log)
    pools = {"translated": translated, "english": english}
    corpus = []
    # Every fixed synthetic item alone once, then edge cases, then mixtures.
    for group in (EMOJI, COMBINING, CONTROLS, WORDS_EN, NUMBERS, URLS, CODE, SPECIAL, FULLWIDTH,
                  CJK_EXTRA, KANA, HANGUL, SCRIPTS):
        corpus.extend(group)
    corpus += ["", " ", "\t\n\r ", "\u3000\u00a0\u2003", "\u0000\u0001\u200b", "a" * 100,
               "a" * 101, "é" * 100, "e\u0301" * 60, "中" * 300, "x" * 5000, "中文 " * 400]
    if translated:
        sample = rng.sample(translated, min(len(translated), lines * 4 // 10))
        corpus += [clip(t, 2000) for t in sample]
    if english:
        sample = rng.sample(english, min(len(english), lines // 10))
        corpus += [clip(t, 2000) for t in sample]
    while len(corpus) < lines:
        corpus.append(clip(mixed_line(rng, pools), 3000))
    corpus = corpus[:lines]
    # Strings a JSON reader cannot carry (lone surrogates) never occur: the sources are str.
    return corpus


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tokenizer",
                                                      "corpus.jsonl"))
    parser.add_argument("--lines", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=20240531)
    args = parser.parse_args()
    log = lambda msg: print("make_corpus: " + msg, file=sys.stderr)
    corpus = build(args.lines, args.seed, log)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for text in corpus:
            f.write(json.dumps(text, ensure_ascii=False) + "\n")
    size = os.path.getsize(args.out)
    log(f"wrote {len(corpus)} lines, {size} bytes to {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
