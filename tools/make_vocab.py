#!/usr/bin/env python3
"""Writes the vocabulary of tideserve's bundled default model (models/tideserve-tiny-zh/vocab.txt).

It is laid out like bert-base-chinese's: special tokens first, then punctuation and digits, one
token per CJK ideograph (U+4E00..U+9FA5 and the CJK punctuation block), kana and Hangul syllables
used in mixed text, English words and WordPiece "##" continuation pieces. Every entry is synthetic:
nothing is copied from a published vocabulary. Plain python3, no packages needed.
"""
import argparse
import string

SPECIALS = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]

ENGLISH_WORDS = """
the of and to in is was for that on as with by it at from his an were are which this be or
has had not but first one their its new after who they have her she two been other when there
all during into school time may years more most only over city some world would where later up
such used many can state about national out known university united then made through year
high part so between american no long under while him them film also series team season game
album band song music model server service request response batch token tokens text embedding
embeddings vector search query queue latency throughput cloud native kubernetes scale scaling
health ready live metrics predict predictions input output hello world good morning thank you
please data learning machine deep neural network transformer encoder attention layer language
chinese english japanese korean user users client clients time times day days week
run running runs test tests testing fast slow simple small large big little very much
""".split()

# Frequent English sub-word continuations, so that unseen words split into pieces.
SUFFIXES = """
s es ed ing er ers est ly ion ions tion tions ness ment ments able ible al ial ous ive ity
y ies ize ized izes ful less ship ward wards en ern ic ical ism ist ists
""".split()


def build_vocab():
    vocab = []
    seen = set()

    def add(token):
        if token not in seen:
            seen.add(token)
            vocab.append(token)

    for t in SPECIALS:
        add(t)
    for ch in string.punctuation:
        add(ch)
    for d in string.digits:
        add(d)
    for n in range(10, 100):
        add(str(n))
    for ch in string.ascii_lowercase:
        add(ch)
    for ch in string.ascii_uppercase:
        add(ch)
    # Latin-1 letters and common symbols (for cased vocabularies that keep accents).
    for cp in list(range(0xC0, 0x100)):
        if cp not in (0xD7, 0xF7):
            add(chr(cp))
    for ch in "“”‘’…—–·•©®°±×÷€£¥":
        add(ch)
    # CJK symbols and punctuation, full-width forms.
    for cp in range(0x3000, 0x3040):
        add(chr(cp))
    for cp in range(0xFF01, 0xFF5F):
        add(chr(cp))
    # Hiragana, katakana.
    for cp in range(0x3041, 0x3097):
        add(chr(cp))
    for cp in range(0x30A1, 0x30FB):
        add(chr(cp))
    # A band of Hangul syllables (common ones start at U+AC00).
    for cp in range(0xAC00, 0xAC00 + 256):
        add(chr(cp))
    # CJK unified ideographs, one token per character.
    for cp in range(0x4E00, 0x9FA6):
        add(chr(cp))
    for w in ENGLISH_WORDS:
        add(w)
    for ch in string.ascii_lowercase + string.digits:
        add("##" + ch)
    for s in SUFFIXES:
        add("##" + s)
    for cp in range(0x4E00, 0x4E00 + 64):
        add("##" + chr(cp))
    return vocab


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="path of the vocab.txt to write")
    args = parser.parse_args()
    vocab = build_vocab()
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for token in vocab:
            f.write(token + "\n")
    print(f"wrote {args.out}: {len(vocab)} tokens")


if __name__ == "__main__":
    main()
