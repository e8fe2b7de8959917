// The ONNX Runtime peer of the engine benchmark (npm onnxruntime-node, its bundled CPU library):
// graph optimizations "all", intra-op threads = N, inter-op 1, sequential execution; each batch
// padded to its longest sequence (as TEI's ORT backend does).
//   node ort_peer.js --model MODEL.onnx --threads N --workload FILE --reps R --out FILE
// Prints one JSON line like engine_bench and writes the CLS vectors to --out.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function args() {
  const a = {};
  for (let i = 2; i + 1 < process.argv.length; i += 2) a[process.argv[i].slice(2)] = process.argv[i + 1];
  return a;
}

function readWorkload(path) {
  const buf = fs.readFileSync(path);
  const w = new Int32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  let pos = 0;
  const batches = [];
  const nb = w[pos++];
  for (let b = 0; b < nb; ++b) {
    const ns = w[pos++];
    const lens = Array.from(w.subarray(pos, pos + ns));
    pos += ns;
    const seqs = [];
    for (const n of lens) { seqs.push(w.subarray(pos, pos + n)); pos += n; }
    batches.push(seqs);
  }
  return batches;
}

function padBatch(seqs) {
  const longest = Math.max(...seqs.map((s) => s.length));
  const ids = new BigInt64Array(seqs.length * longest);
  const mask = new BigInt64Array(seqs.length * longest);
  seqs.forEach((s, i) => {
    for (let t = 0; t < s.length; ++t) { ids[i * longest + t] = BigInt(s[t]); mask[i * longest + t] = 1n; }
  });
  const dims = [seqs.length, longest];
  return {
    input_ids: new ort.Tensor('int64', ids, dims),
    token_type_ids: new ort.Tensor('int64', new BigInt64Array(ids.length), dims),
    attention_mask: new ort.Tensor('int64', mask, dims),
  };
}

async function main() {
  const a = args();
  const threads = Number(a.threads);
  const session = await ort.InferenceSession.create(a.model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  const feeds = readWorkload(a.workload).map(padBatch);
  const cls = [];
  await session.run(feeds[0]);  // warm-up: the first batch
  const times = [];
  for (let r = 0; r < Number(a.reps); ++r) {
    const t0 = process.hrtime.bigint();
    for (const f of feeds) {
      const out = (await session.run(f)).last_hidden_state;
      if (r === 0) {  // the compared output (copying [B, H] floats costs microseconds)
        const [b, l, h] = out.dims;
        for (let i = 0; i < b; ++i) cls.push(Buffer.from(out.data.slice(i * l * h, i * l * h + h).buffer));
      }
    }
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  fs.writeFileSync(a.out, Buffer.concat(cls));
  console.log(JSON.stringify({ engine: 'onnxruntime', threads, version: ort.env.versions.node,
    times_ms: times.map((t) => Math.round(t * 1000) / 1000) }));
}

main().catch((e) => { console.error(e); process.exit(1); });
