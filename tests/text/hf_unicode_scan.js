// Per-code-point behaviour of Hugging Face tokenizers' BertNormalizer and BertPreTokenizer, in
// the line format of tideserve_unicode_props:
//   <hex cp> <D|W|.> <S|P|.> <C|.> [nfd] [nfd without Mn] [lowercase]
// D: dropped by clean_text, W: mapped to a space by clean_text; S: split as whitespace by the
// pre-tokenizer, P: isolated as punctuation; C: spaced as a Chinese character.
'use strict';

function loadTokenizers() {
  try {
    return require('../clients/node_modules/tokenizers');
  } catch (e) {
    console.error('cannot load the npm package "tokenizers" from tests/clients/node_modules: ' +
                  'run tools/setup-test-clients.sh (' + e.message + ')');
    process.exit(2);
  }
}

function hexList(s) {
  return Array.from(s).map((c) => c.codePointAt(0).toString(16)).join(' ');
}

// Returns an array of lines, one per code point (surrogates excluded), in code point order.
function scanCodePoints(tk) {
  const clean = tk.bertNormalizer(
      {cleanText: true, handleChineseChars: false, stripAccents: false, lowercase: false});
  const strip = tk.bertNormalizer(
      {cleanText: false, handleChineseChars: false, stripAccents: true, lowercase: false});
  const lower = tk.bertNormalizer(
      {cleanText: false, handleChineseChars: false, stripAccents: false, lowercase: true});
  const chinese = tk.bertNormalizer(
      {cleanText: false, handleChineseChars: true, stripAccents: false, lowercase: false});
  const nfd = tk.nfdNormalizer();
  const pre = tk.bertPreTokenizer();
  const lines = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const ch = String.fromCodePoint(cp);
    const c = clean.normalizeString(ch);
    const cls = c === '' ? 'D' : c === ' ' ? 'W' : c === ch ? '.' : '?';
    const pieces = pre.preTokenizeString('a' + ch + 'a').length;
    const pc = pieces === 3 ? 'P' : pieces === 2 ? 'S' : pieces === 1 ? '.' : '?';
    const zc = chinese.normalizeString(ch) === ch ? '.' : 'C';
    lines.push(`${cp.toString(16)} ${cls} ${pc} ${zc} [${hexList(nfd.normalizeString(ch))}] ` +
               `[${hexList(strip.normalizeString(ch))}] [${hexList(lower.normalizeString(ch))}]`);
  }
  return lines;
}

function parseLine(line) {
  const m = /^([0-9a-f]+) (\S) (\S) (\S) \[([^\]]*)\] \[([^\]]*)\] \[([^\]]*)\]$/.exec(line);
  if (!m) throw new Error('bad property line: ' + line);
  const list = (s) => (s === '' ? [] : s.split(' ').map((x) => parseInt(x, 16)));
  return {cp: parseInt(m[1], 16), cls: m[2], pc: m[3], zc: m[4], nfd: list(m[5]),
          strip: list(m[6]), lower: list(m[7])};
}

module.exports = {loadTokenizers, scanCodePoints, parseLine};
