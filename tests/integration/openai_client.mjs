// The official `openai` npm client against tideserve's /v1/embeddings: what a user of the OpenAI
// SDK sees. Run by server_test.py (ApiKeyTest) from tests/clients, where node_modules lives:
//
//   node openai_client.mjs BASE_URL API_KEY MODEL_ID HIDDEN_SIZE
//
// Prints "openai client: ok" and exits 0, or prints what failed and exits 1.
import assert from 'node:assert/strict';
import {loadClientPackage} from './client_packages.mjs';

const [baseURL, apiKey, modelId, hiddenArg] = process.argv.slice(2);
if (!baseURL || !apiKey || !modelId || !hiddenArg) {
  console.error('usage: node openai_client.mjs BASE_URL API_KEY MODEL_ID HIDDEN_SIZE');
  process.exit(2);
}
const hidden = Number(hiddenArg);

const sdk = loadClientPackage('openai');
const {OpenAI, APIError, BadRequestError, AuthenticationError} = sdk;

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const maxDiff = (a, b) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

function checkEmbedding(item, index) {
  assert.equal(item.object, 'embedding');
  assert.equal(item.index, index);
  assert.ok(Array.isArray(item.embedding), 'embedding is an array');
  assert.equal(item.embedding.length, hidden);
  assert.ok(item.embedding.every((x) => typeof x === 'number' && Number.isFinite(x)));
  assert.ok(Math.abs(norm(item.embedding) - 1) < 1e-5, 'unit norm');
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
  const client = new OpenAI({baseURL, apiKey, maxRetries: 0, timeout: 60_000});

  // One string. The SDK asks for base64 by default and decodes it itself.
  const one = await client.embeddings.create({model: modelId, input: 'hello 你好'});
  assert.equal(one.object, 'list');
  assert.equal(one.model, modelId);
  assert.equal(one.data.length, 1);
  checkEmbedding(one.data[0], 0);
  assert.ok(one.usage.prompt_tokens >= 4, `prompt_tokens ${one.usage.prompt_tokens}`);
  assert.equal(one.usage.total_tokens, one.usage.prompt_tokens);

  // A list; its first item is the same text.
  const texts = ['hello 你好', '世界', 'tideserve serves BERT encoders'];
  const many = await client.embeddings.create({model: modelId, input: texts});
  assert.equal(many.data.length, texts.length);
  many.data.forEach(checkEmbedding);
  assert.ok(maxDiff(many.data[0].embedding, one.data[0].embedding) <= 1e-5, 'list[0] = single');
  assert.ok(maxDiff(many.data[0].embedding, many.data[1].embedding) > 1e-3, 'distinct texts');
  assert.ok(many.usage.prompt_tokens > one.usage.prompt_tokens);

  // Floats asked for explicitly: the same numbers as the base64 the SDK decoded.
  const floats = await client.embeddings.create({model: modelId, input: texts,
                                                  encoding_format: 'float'});
  for (let i = 0; i < texts.length; i++) {
    assert.ok(maxDiff(floats.data[i].embedding, many.data[i].embedding) <= 1e-7,
              `float vs base64, input ${i}`);
  }
  assert.deepEqual(floats.usage, many.usage);

  // Token ids as input ([CLS] 你 好 [SEP]): the same vector as the text.
  const ids = await client.embeddings.create({model: modelId, input: [[101, 1310, 3899, 102]]});
  checkEmbedding(ids.data[0], 0);
  assert.equal(ids.usage.prompt_tokens, 4);
  const text = await client.embeddings.create({model: modelId, input: '你好'});
  assert.ok(maxDiff(ids.data[0].embedding, text.data[0].embedding) <= 1e-5, 'ids = text');

  // Invalid requests surface as the SDK's errors.
  const empty = await expectError(client.embeddings.create({model: modelId, input: []}),
                                  BadRequestError, 400);
  assert.match(empty.message, /empty/);
  assert.equal(empty.error?.type, 'invalid_request_error');
  // dimensions (Matryoshka): the first 7 components, renormalized; more than the model has: 400.
  const full = await client.embeddings.create({model: modelId, input: 'x'});
  const cut = await client.embeddings.create({model: modelId, input: 'x', dimensions: 7});
  const head = full.data[0].embedding.slice(0, 7);
  const headNorm = Math.hypot(...head);
  assert.equal(cut.data[0].embedding.length, 7);
  assert.ok(maxDiff(cut.data[0].embedding, head.map((v) => v / headNorm)) <= 1e-5, 'dimensions');
  await expectError(client.embeddings.create({model: modelId, input: 'x', dimensions: hidden + 1}),
                    BadRequestError, 400);
  const wrongKey = new OpenAI({baseURL, apiKey: apiKey + 'x', maxRetries: 0});
  await expectError(wrongKey.embeddings.create({model: modelId, input: 'x'}),
                    AuthenticationError, 401);

  // The models list.
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  assert.deepEqual(models, [modelId]);

  console.log('openai client: ok');
}

main().catch((e) => {
  console.error('openai client: FAILED');
  console.error(e);
  process.exit(1);
});
