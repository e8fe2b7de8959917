#!/usr/bin/env node
// Hugging Face tokenizers (npm) over the same corpus and settings as tideserve_tokenizer_bench:
// the bundled model's vocab.txt as transformers' BertTokenizerFast builds it (lowercase, strip
// accents, Chinese characters, [CLS] A [SEP]), timed with its batch encode. The thread count is
// RAYON_NUM_THREADS (run.sh sets it).
//
//   RAYON_NUM_THREADS=1 node hf_bench.js --vocab vocab.txt --corpus corpus.jsonl [--seconds S]
'use strict';
const fs = require('fs');
const path = require('path');

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? process.argv[i + 1] : fallback;
}

async function main() {
  let tk;
  try {
    tk = require(path.join(__dirname, '..', '..', 'tests', 'clients', 'node_modules', 'tokenizers'));
  } catch (e) {
    console.error('cannot load npm "tokenizers": run tools/setup-test-clients.sh');
    process.exit(2);
  }
  const vocabPath = arg('vocab');
  const corpusPath = arg('corpus');
  const minSeconds = Number(arg('seconds', '3'));
  const lines = fs.readFileSync(vocabPath, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const vocab = {};
  lines.forEach((t, i) => { vocab[t.replace(/\s+$/u, '')] = i; });
  const tok = new tk.Tokenizer(tk.WordPiece.init(vocab, {unkToken: '[UNK]'}));
  tok.setNormalizer(tk.bertNormalizer({cleanText: true, handleChineseChars: true,
                                       stripAccents: true, lowercase: true}));
  tok.setPreTokenizer(tk.bertPreTokenizer());
  tok.setPostProcessor(tk.bertProcessing(['[SEP]', vocab['[SEP]']], ['[CLS]', vocab['[CLS]']]));
  tok.addSpecialTokens(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
  const texts = fs.readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l !== '')
                    .map((l) => JSON.parse(l));

  const count = (encodings) => encodings.reduce((n, e) => n + e.getLength(), 0);
  const tokensPerPass = count(await tok.encodeBatch(texts));  // warm-up, and the token count
  let passes = 0;
  const start = process.hrtime.bigint();
  let seconds = 0;
  do {
    await tok.encodeBatch(texts);
    passes++;
    seconds = Number(process.hrtime.bigint() - start) / 1e9;
  } while (seconds < minSeconds);
  const tokens = tokensPerPass * passes;
  console.log(JSON.stringify({impl: 'hf-tokenizers', version: require(path.join(__dirname, '..', '..',
    'tests', 'clients', 'node_modules', 'tokenizers', 'package.json')).version,
    threads: Number(process.env.RAYON_NUM_THREADS || 0), texts: texts.length, passes, tokens,
    seconds: Number(seconds.toFixed(3)), tokens_per_second: Math.round(tokens / seconds)}));
}

main().catch((e) => { console.error(e); process.exit(1); });
