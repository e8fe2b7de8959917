// The official `openai` npm client against tideserve's Batch API (/v1/files, /v1/batches): what a
// user of the OpenAI SDK sees. Run by batch_test.py (NodeClientTest) from tests/clients, where
// node_modules lives, against a `tideserve serve --redis ... --jobs`:
//
//   node batch_client.mjs BASE_URL MODEL_ID HIDDEN_SIZE
//
// Prints "batch client: ok" and exits 0, or prints what failed and exits 1.
import assert from 'node:assert/strict';
import {loadClientPackage, requireFromClients} from './client_packages.mjs';

const [baseURL, modelId, hiddenArg] = process.argv.slice(2);
if (!baseURL || !modelId || !hiddenArg) {
  console.error('usage: node batch_client.mjs BASE_URL MODEL_ID HIDDEN_SIZE');
  process.exit(2);
}
const hidden = Number(hiddenArg);

const sdk = loadClientPackage('openai');
const {OpenAI, APIError, NotFoundError} = sdk;
// openai >= 4 exports toFile from the package root; older 4.x had it in openai/uploads.
const toFile = sdk.toFile ?? requireFromClients('openai/uploads').toFile;
assert.equal(typeof toFile, 'function', 'the openai package exports toFile');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function jsonl(n, prefix, inputOf) {
  const lines = [];
  for (let i = 0; i < n; i++) {
    lines.push(JSON.stringify({
      custom_id: `${prefix}-${i}`, method: 'POST', url: '/v1/embeddings',
      body: {model: modelId, input: inputOf(i)},
    }));
  }
  return lines.join('\n') + '\n';
}

async function waitFor(client, id, statuses, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const b = await client.batches.retrieve(id);
    if (statuses.includes(b.status)) return b;
    if (Date.now() > deadline) assert.fail(`batch ${id} still ${b.status} after ${timeoutMs} ms`);
    await sleep(50);  // a poll interval: the API has no push
  }
}

async function expectError(promise, cls, status) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof APIError, `an APIError, got ${e}`);
    assert.ok(e instanceof cls, `a ${cls.name}, got ${e.constructor.name}`);
    assert.equal(e.status, status);
    return e;
  }
  assert.fail(`expected HTTP ${status}`);
}

async function main() {
  const client = new OpenAI({baseURL, apiKey: 'unused', maxRetries: 0, timeout: 60_000});

  // Upload: the SDK sends multipart with purpose=batch.
  const n = 12;
  const text = jsonl(n, 'node',
                     (i) => (i % 3 === 0 ? [`a ${i}`, `b ${i}`] : `node line ${i} 你好`));
  const file = await client.files.create({
    file: await toFile(Buffer.from(text, 'utf-8'), 'batch.jsonl'), purpose: 'batch'});
  assert.equal(file.object, 'file');
  assert.equal(file.purpose, 'batch');
  assert.equal(file.bytes, Buffer.byteLength(text));
  assert.equal(file.filename, 'batch.jsonl');
  const again = await client.files.retrieve(file.id);
  assert.equal(again.id, file.id);
  assert.equal(again.bytes, file.bytes);
  const roundTrip = await (await client.files.content(file.id)).text();
  assert.equal(roundTrip, text, 'file content round trip');

  // Create, then poll to completed.
  const batch = await client.batches.create({
    input_file_id: file.id, endpoint: '/v1/embeddings', completion_window: '24h',
    metadata: {client: 'node'}});
  assert.equal(batch.object, 'batch');
  assert.equal(batch.status, 'in_progress');
  assert.deepEqual(batch.metadata, {client: 'node'});
  const done = await waitFor(client, batch.id, ['completed', 'failed', 'expired', 'cancelled']);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.request_counts, {total: n, completed: n, failed: 0});
  assert.ok(done.output_file_id, 'an output file');

  const out = await (await client.files.content(done.output_file_id)).text();
  const lines = out.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
  assert.equal(lines.length, n);
  const ids = lines.map((l) => l.custom_id).sort();
  const want = [...Array(n).keys()].map((i) => `node-${i}`).sort();
  assert.deepEqual(ids, want, 'every custom_id once');
  for (const l of lines) {
    assert.equal(l.error, null);
    assert.equal(l.response.status_code, 200);
    const i = Number(l.custom_id.split('-')[1]);
    assert.equal(l.response.body.object, 'list');
    assert.equal(l.response.body.model, modelId);
    assert.equal(l.response.body.data.length, i % 3 === 0 ? 2 : 1);
    for (const item of l.response.body.data) {
      assert.equal(item.object, 'embedding');
      assert.equal(item.embedding.length, hidden);
    }
  }

  // List: the SDK's auto-pagination (after=last id while has_more) over small pages.
  const heavy = (i) => Array(8).fill(
      `big line ${i}: the quick brown fox jumps over the lazy dog 你好世界 `.repeat(6));
  const file2 = await client.files.create({
    file: await toFile(Buffer.from(jsonl(400, 'big', heavy)), 'big.jsonl'), purpose: 'batch'});
  const big = await client.batches.create({
    input_file_id: file2.id, endpoint: '/v1/embeddings', completion_window: '24h'});
  const seen = [];
  for await (const b of client.batches.list({limit: 1})) seen.push(b.id);
  assert.ok(seen.includes(batch.id) && seen.includes(big.id), `list: ${seen}`);
  assert.equal(new Set(seen).size, seen.length, 'no batch twice in the list');

  // Cancel the big one while it runs.
  const cancelling = await client.batches.cancel(big.id);
  assert.ok(['cancelling', 'cancelled'].includes(cancelling.status), cancelling.status);
  const cancelled = await waitFor(client, big.id, ['cancelled', 'completed', 'failed', 'expired']);
  assert.equal(cancelled.status, 'cancelled');
  const rc = cancelled.request_counts;
  assert.equal(rc.total, 400);
  assert.ok(rc.completed + rc.failed < 400, `a partial batch: ${JSON.stringify(rc)}`);

  // Errors come back as the SDK's classes.
  await expectError(client.batches.retrieve('batch_does_not_exist'), NotFoundError, 404);
  await expectError(client.files.retrieve('file-does-not-exist'), NotFoundError, 404);
  const deleted = await client.files.delete(file.id);
  assert.equal(deleted.deleted, true);
  await expectError(client.files.retrieve(file.id), NotFoundError, 404);

  console.log('batch client: ok');
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
