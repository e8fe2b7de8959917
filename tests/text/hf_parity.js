#!/usr/bin/env node
// Differential test: tideserve's tokenizer against Hugging Face tokenizers (npm "tokenizers", the
// official binding), on every code point and on the corpus tests/fixtures/tokenizer/corpus.jsonl.
//
//   node hf_parity.js --dump <tideserve_tokenize_dump> --props <tideserve_unicode_props>
//                     --corpus <corpus.jsonl> --vocab <vocab.txt> --work <scratch dir>
//
// For each normalizer setting (lowercase on/off x strip_accents on/off, plus unset strip_accents
// and tokenize_chinese_chars off) and each loading route it writes a model directory:
//   vocab route: vocab.txt + tokenizer_config.json; the reference is built like transformers'
//                BertTokenizerFast (WordPiece.fromFile, BertNormalizer, BertPreTokenizer,
//                BertProcessing, the five special tokens as added tokens);
//   json route:  tokenizer.json saved by the reference itself (BertProcessing or
//                TemplateProcessing) and read back by both sides.
// Each is encoded single, single truncated, and as pairs with longest-first truncation on the
// right and on the left.
// ids, type ids, code point offsets and byte offsets must all be identical. Exit 1 otherwise.
'use strict';
const {execFileSync} = require('child_process');
const fs = require('fs');
const path = require('path');
const scan = require('./hf_unicode_scan.js');

function parseArgs() {
  const args = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  for (const k of ['dump', 'props', 'corpus', 'vocab', 'work']) {
    if (!args[k]) {
      console.error(`missing --${k}`);
      process.exit(2);
    }
  }
  return args;
}

const SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];

const SETTINGS = [
  {name: 'lower+strip', lowercase: true, stripAccents: true, chinese: true, template: false},
  {name: 'lower+keep-accents', lowercase: true, stripAccents: false, chinese: true, template: true},
  {name: 'cased+strip', lowercase: false, stripAccents: true, chinese: true, template: true},
  {name: 'cased+keep-accents', lowercase: false, stripAccents: false, chinese: true, template: false},
  {name: 'lower+unset-strip+no-chinese', lowercase: true, stripAccents: null, chinese: false,
   template: true},
];

const MODES = [
  {name: 'single', dump: [], pairShift: null, maxLength: 0, left: false},
  {name: 'pair/max48', dump: ['--pair-shift', '1', '--max-length', '48'], pairShift: 1,
   maxLength: 48, left: false},
  {name: 'single/max20', dump: ['--max-length', '20'], pairShift: null, maxLength: 20,
   left: false},
  {name: 'pair/max32/left', dump: ['--pair-shift', '7', '--max-length', '32', '--left'],
   pairShift: 7, maxLength: 32, left: true},
];

function buildReference(tk, vocabMap, vocabPath, setting, withTemplate) {
  const model = tk.WordPiece.init(vocabMap, {unkToken: '[UNK]'});
  const tok = new tk.Tokenizer(model);
  // strip_accents unset follows lowercase (BertNormalizer's rule); resolved here explicitly.
  const strip = setting.stripAccents === null ? setting.lowercase : setting.stripAccents;
  tok.setNormalizer(tk.bertNormalizer({cleanText: true, handleChineseChars: setting.chinese,
                                       stripAccents: strip, lowercase: setting.lowercase}));
  tok.setPreTokenizer(tk.bertPreTokenizer());
  const cls = vocabMap['[CLS]'];
  const sep = vocabMap['[SEP]'];
  if (withTemplate) {
    tok.setPostProcessor(tk.templateProcessing('[CLS]:0 $A:0 [SEP]:0',
                                               '[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1',
                                               [['[CLS]', cls], ['[SEP]', sep]]));
  } else {
    tok.setPostProcessor(tk.bertProcessing(['[SEP]', sep], ['[CLS]', cls]));
  }
  tok.addSpecialTokens(SPECIALS);
  return tok;
}

function readVocab(vocabPath) {
  // Same reading as WordPiece::read_file: id = line number, trailing whitespace trimmed.
  const lines = fs.readFileSync(vocabPath, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const map = {};
  lines.forEach((line, i) => { map[line.replace(/\s+$/u, '')] = i; });
  return map;
}

function byteOffsetsFromChars(text, charOffsets) {
  // Prefix sums: UTF-8 byte position of every code point boundary.
  const cps = Array.from(text);
  const pos = new Array(cps.length + 1);
  pos[0] = 0;
  for (let i = 0; i < cps.length; i++) pos[i + 1] = pos[i] + Buffer.byteLength(cps[i], 'utf8');
  return charOffsets.map(([s, e]) => [pos[s], pos[e]]);
}

function sameArray(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (Array.isArray(a[i]) ? !sameArray(a[i], b[i]) : a[i] !== b[i]) return false;
  }
  return true;
}

async function compareRun(label, reference, dumpArgs, args, lines, mode, idToToken) {
  const out = execFileSync(args.dump, dumpArgs, {maxBuffer: 1 << 30}).toString().split('\n');
  out.pop();
  if (out.length !== lines.length) {
    console.log(`${label}: tideserve printed ${out.length} lines for ${lines.length}`);
    return lines.length;
  }
  reference.disableTruncation();
  if (mode.maxLength > 0) {
    reference.setTruncation(mode.maxLength, {direction: mode.left ? 'left' : 'right'});
  }
  const inputs = lines.map((l, i) =>
    mode.pairShift === null ? l : [l, lines[(i + mode.pairShift) % lines.length]]);
  const batch = 1000;
  let mismatches = 0;
  for (let start = 0; start < inputs.length; start += batch) {
    const chunk = inputs.slice(start, start + batch);
    // encodeBatch takes single sequences only in this binding; pairs go through encode().
    const encodings = mode.pairShift === null ? await reference.encodeBatch(chunk)
      : await Promise.all(chunk.map(([a, b]) => reference.encode(a, b)));
    for (let k = 0; k < encodings.length; k++) {
      const i = start + k;
      const e = encodings[k];
      const ours = JSON.parse(out[i]);
      const theirs = {ids: e.getIds(), type_ids: e.getTypeIds(), offsets: e.getOffsets()};
      // Byte offsets: HF's code point offsets mapped through the sequence each token came from.
      const seqIds = e.getSequenceIds();
      const pairText = mode.pairShift === null ? '' : lines[(i + mode.pairShift) % lines.length];
      const firstBytes = byteOffsetsFromChars(lines[i], theirs.offsets);
      const secondBytes = mode.pairShift === null ? [] : byteOffsetsFromChars(pairText, theirs.offsets);
      theirs.bytes = theirs.offsets.map((o, t) =>
        seqIds[t] === null || seqIds[t] === undefined ? [0, 0]
          : seqIds[t] === 0 ? firstBytes[t] : secondBytes[t]);
      const ok = ours.ids && sameArray(ours.ids, theirs.ids) &&
                 sameArray(ours.type_ids, theirs.type_ids) &&
                 sameArray(ours.offsets, theirs.offsets) && sameArray(ours.bytes, theirs.bytes);
      if (!ok) {
        mismatches++;
        if (mismatches <= 3) {
          console.log(`${label}: MISMATCH on corpus line ${i + 1}: ${JSON.stringify(lines[i]).slice(0, 200)}`);
          if (ours.error) console.log(`  tideserve error: ${ours.error}`);
          const show = (o) => (o.ids || []).map((id, t) =>
            `${idToToken[id]}${JSON.stringify(o.offsets[t])}${JSON.stringify(o.bytes[t])}:${o.type_ids[t]}`)
            .join(' ').slice(0, 600);
          console.log(`  hf:        ${show(theirs)}`);
          console.log(`  tideserve: ${show(ours)}`);
        }
      }
    }
  }
  console.log(`${label}: ${lines.length - mismatches}/${lines.length} identical`);
  return mismatches;
}

async function main() {
  const args = parseArgs();
  const tk = scan.loadTokenizers();
  let failures = 0;

  // 1. Every code point: normalizer and pre-tokenizer properties.
  const ours = execFileSync(args.props, [], {maxBuffer: 1 << 28}).toString().split('\n')
                   .filter((l) => l !== '' && !l.startsWith('#'));
  const theirs = scan.scanCodePoints(tk);
  let cpMismatch = 0;
  for (let i = 0; i < theirs.length; i++) {
    if (ours[i] !== theirs[i]) {
      if (++cpMismatch <= 5) console.log(`code point MISMATCH: hf "${theirs[i]}" tideserve "${ours[i]}"`);
    }
  }
  console.log(`code points: ${theirs.length - cpMismatch}/${theirs.length} identical`);
  failures += cpMismatch;

  // 2. The corpus, every setting, both routes, every mode.
  const lines = fs.readFileSync(args.corpus, 'utf8').split('\n').filter((l) => l !== '')
                    .map((l) => JSON.parse(l));
  const vocabMap = readVocab(args.vocab);
  const idToToken = [];
  for (const [t, id] of Object.entries(vocabMap)) idToToken[id] = t;
  fs.mkdirSync(args.work, {recursive: true});
  let runs = 0;
  for (const setting of SETTINGS) {
    for (const route of ['vocab', 'json']) {
      const dir = path.join(args.work, `${route}-${setting.name}`);
      fs.rmSync(dir, {recursive: true, force: true});
      fs.mkdirSync(dir, {recursive: true});
      let reference = buildReference(tk, vocabMap, args.vocab, setting, setting.template);
      if (route === 'vocab') {
        fs.copyFileSync(args.vocab, path.join(dir, 'vocab.txt'));
        fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({
          do_lower_case: setting.lowercase, strip_accents: setting.stripAccents,
          tokenize_chinese_chars: setting.chinese, tokenizer_class: 'BertTokenizer'}, null, 2));
      } else {
        const file = path.join(dir, 'tokenizer.json');
        reference.save(file, true);
        reference = tk.Tokenizer.fromFile(file);  // both sides read the same file
      }
      for (const mode of MODES) {
        const label = `${route} ${setting.name} ${mode.name}`;
        const dumpArgs = ['--model', dir, '--corpus', args.corpus, ...mode.dump];
        failures += await compareRun(label, reference, dumpArgs, args, lines, mode, idToToken);
        runs++;
      }
    }
  }
  if (failures > 0) {
    console.log(`FAILED: ${failures} mismatches`);
    process.exit(1);
  }
  console.log(`PASSED: all ${theirs.length} code points and ${runs} corpus runs x ${lines.length} lines identical`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
